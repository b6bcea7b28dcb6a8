//! Tests of the report module on the local data dir (the S3 run of the contract is in
//! tests/tests/report_s3.rs).

use serde_json::{json, Value};

use super::contract::{self, report_contract, t, CONFIG, SITE};
use super::*;
use crate::collect::sink::EventSink;
use crate::event_log::local::LocalEventLog;
use crate::object_store::LocalStore;

fn temp_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("nectar-report-{:016x}", rand::random::<u64>()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The contract's set in a fresh data dir, through the embedded event log writer.
async fn local_report() -> (Report, std::path::PathBuf) {
    let dir = temp_dir();
    let log = LocalEventLog::start(&dir, "w1").unwrap();
    for b in contract::batches() {
        log.put(&b).await.unwrap();
    }
    let config = NectarConfig::from_toml(CONFIG, "test").unwrap();
    let req = ReportRequest {
        site: SITE.into(),
        endpoint: None,
        since_ms: t(0, 0, 0),
        until_ms: t(2, 0, 0),
    };
    let r = build_report(
        &LocalStore::new(&dir),
        Some(&contract::catalog()),
        &config,
        &req,
    )
    .await
    .unwrap();
    (r, dir)
}

#[tokio::test]
async fn the_local_data_dir_passes_the_report_contract() {
    // GIVEN a data dir written by the embedded event log writer
    let dir = temp_dir();
    let log = LocalEventLog::start(&dir, "w1").unwrap();
    // WHEN / THEN the hand-built set reports the figures worked out by hand
    report_contract(&log, &LocalStore::new(&dir)).await;
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn the_task_refuses_a_site_without_a_report_section() {
    // GIVEN the contract's config without [sites.news.report]
    let text = CONFIG.replace(
        "[sites.news.report]\nschedule = \"rate(1 day)\"\ndays = 2\n",
        "",
    );
    let config = NectarConfig::from_toml(&text, "test").unwrap();
    let dir = temp_dir();
    // WHEN the task runs for it THEN it says so and writes nothing
    let err = run_report_task(&LocalStore::new(&dir), None, &config, SITE, t(2, 0, 0))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "report_not_scheduled");
    assert!(!dir.join(REPORTS_PREFIX).exists());
    std::fs::remove_dir_all(dir).unwrap();
}

/// Compares the key sets of `got` and `want` recursively; each element of an array of objects
/// is compared with `want`'s first element.
fn same_keys(got: &Value, want: &Value, path: &str) {
    match (got, want) {
        (Value::Object(g), Value::Object(w)) => {
            let gk: Vec<&String> = g.keys().collect();
            let wk: Vec<&String> = w.keys().collect();
            let (mut gs, mut ws) = (gk.clone(), wk.clone());
            gs.sort();
            ws.sort();
            assert_eq!(gs, ws, "keys of {path}");
            for (k, v) in w {
                same_keys(&g[k], v, &format!("{path}.{k}"));
            }
        }
        (Value::Array(g), Value::Array(w)) if w.first().is_some_and(Value::is_object) => {
            assert!(!g.is_empty(), "{path} is empty");
            for (i, e) in g.iter().enumerate() {
                same_keys(e, &w[0], &format!("{path}[{i}]"));
            }
        }
        (Value::Array(g), Value::Array(_)) => {
            assert_eq!(g.len(), 2, "{path} is [low, high]");
            assert!(g.iter().all(Value::is_number), "{path} holds numbers");
        }
        _ => {}
    }
}

#[tokio::test]
async fn the_json_has_exactly_the_contract_keys() {
    // GIVEN the contract's report, rendered as JSON
    let (r, dir) = local_report().await;
    let got: Value = serde_json::from_str(&render(&r, Format::Json)).unwrap();
    // THEN its keys are exactly those of the issue, at every level
    let want = json!({
        "site": "", "since": "", "until": "", "orphan_hits": 0,
        "endpoints": [{
            "endpoint": "", "experiment": "", "ctr_basis": "", "srm_p_value": 0,
            "variants": [{
                "variant": "", "served": 0, "displayed": 0, "clicks": 0, "ctr": 0,
                "ctr_ci": [0, 1], "plays": 0, "completion": 0, "mrr": 0, "coverage": 0,
                "diversity": 0, "novelty": 0, "fallback_share": 0, "lift": 0,
                "lift_ci": [0, 1], "p_value": 0, "p_value_always_valid": 0
            }],
            "daily": [{ "date": "", "variant": "", "served": 0, "displayed": 0, "clicks": 0, "ctr": 0 }]
        }]
    });
    same_keys(&got, &want, "report");
    // AND the control's lift fields are null, the treatment's interval a pair
    let v = &got["endpoints"][0]["variants"];
    assert!(v[0]["lift"].is_null() && v[0]["lift_ci"].is_null() && v[0]["p_value"].is_null());
    assert_eq!(v[1]["lift_ci"].as_array().map(Vec::len), Some(2));
    std::fs::remove_dir_all(dir).unwrap();
}

/// Whether a page loads anything from the network: an `http(s)://` anywhere but the SVG
/// namespace name (an identifier, never fetched), or a script.
fn loads_resources(html: &str) -> bool {
    let stripped = html.replace(r#"xmlns="http://www.w3.org/2000/svg""#, "");
    stripped.contains("http://")
        || stripped.contains("https://")
        || stripped.contains("<script")
        || stripped.contains("<link")
        || stripped.contains("@import")
        || stripped.contains("url(")
}

#[tokio::test]
async fn the_html_is_one_self_contained_page_with_three_charts_per_endpoint() {
    // GIVEN the contract's report
    let (r, dir) = local_report().await;
    // WHEN it is rendered as HTML
    let html = render(&r, Format::Html);
    // THEN there is one <svg per chart (CTR per day, lift, funnel) of the one endpoint
    assert_eq!(html.matches("<svg").count(), 3, "three charts");
    assert!(!loads_resources(&html), "the page loads nothing");
    // AND every figure carries its n and interval: the CTR cell of a and the legend's n
    assert!(html.contains("75.0 %"), "a's CTR");
    assert!(html.contains("a (n = 4)"), "the legend's n");
    let [lo, hi] = r.endpoints[0].variants[0].ctr_ci.unwrap();
    assert!(html.contains(&format!("[{:.1}, {:.1}] %", lo * 100.0, hi * 100.0)));
    // AND each day's CTR is listed with its n: a on day 1, 2 clicks of 3 displayed
    let [lo, hi] =
        nectar_model::online::stats::wilson(nectar_model::online::Counts::new(2, 3)).unwrap();
    let day = format!(
        "66.7 % <span class=\"ci\">[{:.1}, {:.1}] % (n = 3)</span>",
        lo * 100.0,
        hi * 100.0
    );
    assert!(html.contains(&day), "no {day:?}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn names_from_the_data_are_escaped_in_html_and_markdown() {
    // GIVEN the contract's report with markup in its site, endpoint and variant names
    let (mut r, dir) = local_report().await;
    r.site = "<i>site</i>".into();
    r.endpoints[0].endpoint = "<script>alert(1)</script>".into();
    for v in &mut r.endpoints[0].variants {
        v.variant = format!("<b>{}", v.variant);
    }
    for d in &mut r.endpoints[0].daily {
        d.variant = format!("<b>{}", d.variant);
    }
    // WHEN it is rendered
    let html = render(&r, Format::Html);
    let md = render(&r, Format::Markdown);
    // THEN no tag from the data survives, in the page or in the charts' text
    for tag in ["<b>", "<i>", "<script"] {
        assert!(!html.contains(tag), "HTML holds {tag}");
    }
    // (Markdown: every `<` is backslash-escaped, so it renders as text.)
    let bare = md
        .char_indices()
        .filter(|&(i, c)| c == '<' && !md[..i].ends_with('\\'));
    assert_eq!(bare.count(), 0, "Markdown holds an unescaped <:\n{md}");
    assert!(html.contains("&lt;b&gt;a"));
    assert!(md.contains("\\<b\\>a"));
    assert_eq!(html.matches("<svg").count(), 3);
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn the_markdown_has_a_table_per_endpoint_with_the_srm_line_and_orphans() {
    // GIVEN the contract's report
    let (r, dir) = local_report().await;
    // WHEN it is rendered as Markdown
    let md = render(&r, Format::Markdown);
    // THEN the comparison table lists both variants with n, CTR, interval, lift and p-values
    assert!(md.contains(
        "| variant | served | displayed | clicks | CTR [95 % CI] | lift [95 % CI] | p | always-valid p |"
    ));
    let b = &r.endpoints[0].variants[1];
    let row = format!(
        "| b | 3 | 3 | 1 | 33.3 % [{:.1}, {:.1}] % | -55.6 % ",
        b.ctr_ci.unwrap()[0] * 100.0,
        b.ctr_ci.unwrap()[1] * 100.0
    );
    assert!(md.contains(&row), "no row {row:?} in\n{md}");
    assert!(md.contains("| a (control) | 4 | 4 | 3 | 75.0 %"));
    assert!(md.contains("sample-ratio check: p = 0.7055"), "{md}");
    assert!(md.contains(
        "Orphan hits (clicks on recommendations this log never served, not credited): 2"
    ));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn formats_parse_from_flags_and_extensions() {
    assert_eq!(Format::parse("json"), Some(Format::Json));
    assert_eq!(Format::parse("MD"), Some(Format::Markdown));
    assert_eq!(Format::parse("htm"), Some(Format::Html));
    assert_eq!(Format::parse("pdf"), None);
    assert_eq!(
        report_key("demo", "2026-11-22", "json"),
        "reports/site=demo/date=2026-11-22/report.json"
    );
}

#[tokio::test]
async fn a_single_day_puts_the_variants_side_by_side() {
    // GIVEN the contract's report cut to its first day
    let (mut r, dir) = local_report().await;
    r.endpoints[0].daily.retain(|d| d.date == "2026-11-20");
    // WHEN it is rendered THEN the CTR chart is per variant for that day, with both names
    let html = render(&r, Format::Html);
    assert!(
        html.contains("CTR on 2026-11-20 per variant"),
        "one-day caption"
    );
    assert!(!html.contains("CTR per day ("));
    assert_eq!(html.matches("<svg").count(), 3);
    std::fs::remove_dir_all(dir).unwrap();
}
