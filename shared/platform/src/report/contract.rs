//! The report contract, run on the local data dir (unit test) and on S3 (moto): a hand-built
//! event set written through a real event-log writer (served events built by the served
//! log's own code path, client events by collect's validator), then [`build_report`] and
//! [`run_report_task`] checked against figures worked out by hand below.
//!
//! ```text
//! day D = 2026-11-20, range [D, D+2), attribution window 30 min, experiment for-you a (control) / b
//! a: ra1 u1 D 10:00 [m1 m2 m3]  displayed (the display delivered twice); hit m2 (idx 1) 10:01,
//!                                again 10:02 (double click); play m2 10:05        -> clicked, played
//!    ra2 u2 D 10:10 [m1 m4]     displayed
//!    ra3 u3 D 11:00 [m2 m5]     displayed; hit m5 (idx 1) 11:01; play m5 11:45 (44 min) -> not played
//!    ra4 u4 D+1 23:45 [m1 m2]   displayed; hit m1 (idx 0) 23:50; play m1 D+2 00:10 (after until,
//!                                inside the window)                               -> played
//!    late u1 D+2 00:05 [m1]      served after until: not reported
//! b: rb1 u5 D 12:00 [m3 m6]     displayed; hit by u9 (foreign)                   -> not clicked
//!    rb2 u6 D+1 10:00 [m6 m7]   displayed; hit m6 (idx 0) 10:01; play 10:03, end 10:20 -> completed
//!    rb3 u7 D+1 11:00 [m7 m8]   fallback; displayed
//! forged: recommendation_served without the marker (u8, b), displayed and hit  -> orphan hit
//! orphan: hit on a recommendation never served (u1, D 14:00)                  -> orphan hit
//! more plays: m2 by u2 D 15:00 (popularity m2 = 2, m5 = 1, m6 = 1; m1's play is after until)
//! catalog: 10 items; m1 m2 m7 news, m3 m4 m9 m10 sport, m5 m6 drama, m8 none
//! ```

use nectar_model::event::{accept_payload, Accepted, EncodedEvent};
use nectar_model::online::Report;
use serde_json::{json, Value};

use super::*;
use crate::catalog::ItemMeta;
use crate::collect::sink::EventSink;
use crate::recommend::served_log::ServedAnswer;
use crate::recommend::RecommendAnswer;

/// The site of the contract.
pub const SITE: &str = "news";
/// 2026-11-20T00:00Z.
pub const DAY0: i64 = 1_795_132_800_000;

/// The config of the contract: one endpoint with a fixed 1:1 experiment, control `a`.
pub const CONFIG: &str = r#"
[sites.news]
attribution_window_minutes = 30
[sites.news.report]
schedule = "rate(1 day)"
days = 2
[sites.news.tasks.als]
algorithm = "als"
[sites.news.tasks.trending]
algorithm = "trending"
[sites.news.endpoints.for-you]
kind = "user"
model = "als"
fallback = "trending"
experiment = { name = "for-you-test", control = "a", variants = [{ name = "a", weight = 1, model = "als" }, { name = "b", weight = 1, model = "trending" }] }
[sites.news.endpoints.more]
kind = "user"
model = "trending"
"#;

/// ms UTC of day `day` after D at hh:mm.
pub fn t(day: i64, h: i64, m: i64) -> i64 {
    DAY0 + day * 86_400_000 + h * 3_600_000 + m * 60_000
}

/// A recommendation id as the recommend service makes them (`r-` and 32 hex digits).
pub fn rec(n: u32) -> String {
    format!("r-{n:032x}")
}

/// A served answer through the served log's own event builder.
fn served(
    rec_id: &str,
    user: &str,
    variant: &str,
    items: &[&str],
    fallback: bool,
    ts: i64,
) -> EncodedEvent {
    let model = if variant == "a" { "als" } else { "trending" };
    let body = RecommendAnswer::of_ids(rec_id, "for-you", variant, (model, 1), items, fallback);
    ServedAnswer {
        site_key: SITE,
        user_id: Some(user),
        client_id: None,
        subject: user,
        context_item: None,
        body: &body,
    }
    .to_event(ts)
}

/// A client event of a logged-in user, through collect's validator.
fn client(user: &str, kind: &str, id: &str, ts: i64, context: Value) -> Accepted {
    let mut event = json!({ "type": kind, "id": id, "event_timestamp": ts });
    if !context.is_null() {
        event["context"] = context;
    }
    let payload = json!({
        "peach_schema_version": "1.0.3",
        "sent_timestamp": ts,
        "user_id": user,
        "client": { "id": format!("c-{user}"), "type": "mobileapp", "app_id": "app" },
        "events": [event],
    });
    let limits = nectar_model::event::CollectLimits::default();
    accept_payload(payload.to_string().as_bytes(), SITE, ts, &limits)
        .unwrap_or_else(|e| panic!("collect refused the contract's {kind}: {}", e.message()))
}

fn displayed(user: &str, rec_id: &str, items: &[&str], ts: i64) -> Accepted {
    client(
        user,
        "recommendation_displayed",
        rec_id,
        ts,
        json!({ "items": items }),
    )
}

fn hit(user: &str, rec_id: &str, items: &[&str], index: usize, ts: i64) -> Accepted {
    client(
        user,
        "recommendation_hit",
        rec_id,
        ts,
        json!({ "items": items, "hit_index": index }),
    )
}

/// Every batch of the hand-built set, in the order written.
pub fn batches() -> Vec<Accepted> {
    let (ra1, ra2, ra3, ra4, late) = (rec(1), rec(2), rec(3), rec(4), rec(5));
    let (rb1, rb2, rb3, forged_id, unknown) = (rec(11), rec(12), rec(13), rec(21), rec(99));
    let served_batch = Accepted {
        site_key: SITE.to_string(),
        events: vec![
            served(&ra1, "u1", "a", &["m1", "m2", "m3"], false, t(0, 10, 0)),
            served(&ra2, "u2", "a", &["m1", "m4"], false, t(0, 10, 10)),
            served(&ra3, "u3", "a", &["m2", "m5"], false, t(0, 11, 0)),
            served(&ra4, "u4", "a", &["m1", "m2"], false, t(1, 23, 45)),
            served(&late, "u1", "a", &["m1"], false, t(2, 0, 5)),
            served(&rb1, "u5", "b", &["m3", "m6"], false, t(0, 12, 0)),
            served(&rb2, "u6", "b", &["m6", "m7"], false, t(1, 10, 0)),
            served(&rb3, "u7", "b", &["m7", "m8"], true, t(1, 11, 0)),
        ],
    };
    // A served event without the marker: what a forged or pre-marker event looks like.
    let mut forged: Value =
        serde_json::from_str(&served(&forged_id, "u8", "b", &["m1"], false, t(0, 13, 0)).line)
            .expect("a served line is JSON");
    forged
        .as_object_mut()
        .expect("an object")
        .remove(nectar_model::online::SERVED_MARKER_FIELD);
    let forged_batch = Accepted {
        site_key: SITE.to_string(),
        events: vec![EncodedEvent {
            mapped: None,
            line: forged.to_string(),
            event_id: forged["event_id"].as_str().unwrap_or_default().to_string(),
            event_timestamp: t(0, 13, 0),
        }],
    };
    vec![
        served_batch,
        forged_batch,
        displayed("u1", &ra1, &["m1", "m2", "m3"], t(0, 10, 0) + 5_000),
        // At-least-once: the same display delivered again.
        displayed("u1", &ra1, &["m1", "m2", "m3"], t(0, 10, 0) + 5_000),
        hit("u1", &ra1, &["m1", "m2", "m3"], 1, t(0, 10, 1)),
        hit("u1", &ra1, &["m1", "m2", "m3"], 1, t(0, 10, 2)),
        client("u1", "media_play", "m2", t(0, 10, 5), Value::Null),
        displayed("u2", &ra2, &["m1", "m4"], t(0, 10, 10) + 5_000),
        displayed("u3", &ra3, &["m2", "m5"], t(0, 11, 0) + 5_000),
        hit("u3", &ra3, &["m2", "m5"], 1, t(0, 11, 1)),
        client("u3", "media_play", "m5", t(0, 11, 45), Value::Null),
        displayed("u4", &ra4, &["m1", "m2"], t(1, 23, 45) + 5_000),
        hit("u4", &ra4, &["m1", "m2"], 0, t(1, 23, 50)),
        client("u4", "media_play", "m1", t(2, 0, 10), Value::Null),
        displayed("u1", &late, &["m1"], t(2, 0, 5) + 5_000),
        hit("u1", &late, &["m1"], 0, t(2, 0, 6)),
        displayed("u5", &rb1, &["m3", "m6"], t(0, 12, 0) + 5_000),
        hit("u9", &rb1, &["m3", "m6"], 0, t(0, 12, 1)),
        displayed("u6", &rb2, &["m6", "m7"], t(1, 10, 0) + 5_000),
        hit("u6", &rb2, &["m6", "m7"], 0, t(1, 10, 1)),
        client("u6", "media_play", "m6", t(1, 10, 3), Value::Null),
        client("u6", "media_end", "m6", t(1, 10, 20), Value::Null),
        displayed("u7", &rb3, &["m7", "m8"], t(1, 11, 0) + 5_000),
        displayed("u8", &forged_id, &["m1"], t(0, 13, 0) + 5_000),
        hit("u8", &forged_id, &["m1"], 0, t(0, 13, 1)),
        hit("u1", &unknown, &["m9"], 0, t(0, 14, 0)),
        client("u2", "media_play", "m2", t(0, 15, 0), Value::Null),
    ]
}

/// The contract's catalog: ten items, eight of them with a category.
pub fn catalog() -> Catalog {
    let c = Catalog::in_memory();
    let cat = |id: &str, category: Option<&str>| ItemMeta {
        id: id.to_string(),
        category: category.map(str::to_string),
        ..ItemMeta::default()
    };
    let items = vec![
        cat("m1", Some("news")),
        cat("m2", Some("news")),
        cat("m3", Some("sport")),
        cat("m4", Some("sport")),
        cat("m5", Some("drama")),
        cat("m6", Some("drama")),
        cat("m7", Some("news")),
        cat("m8", None),
        cat("m9", Some("sport")),
        cat("m10", Some("sport")),
    ];
    c.upsert(SITE, items).expect("an in-memory upsert");
    c
}

/// erfc with the Numerical Recipes Chebyshev fit (|error| < 1.2e-7): independent of the model
/// crate's statistics.
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// Wilson 95 % interval, written out again here.
fn wilson95(k: f64, n: f64) -> [f64; 2] {
    let z: f64 = 1.959_963_984_540_054;
    let p = k / n;
    let d = 1.0 + z * z / n;
    let c = (p + z * z / (2.0 * n)) / d;
    let h = z / d * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt();
    [c - h, c + h]
}

fn close(got: Option<f64>, want: f64, what: &str) {
    let g = got.unwrap_or_else(|| panic!("{what}: null, want {want}"));
    assert!((g - want).abs() < 1e-6, "{what}: got {g}, want {want}");
}

fn close_ci(got: Option<[f64; 2]>, want: [f64; 2], what: &str) {
    let g = got.unwrap_or_else(|| panic!("{what}: null"));
    close(Some(g[0]), want[0], what);
    close(Some(g[1]), want[1], what);
}

/// Checks a report of the contract's set over `[D, D+2)` against the figures worked out by
/// hand (module doc).
pub fn check_report(r: &Report) {
    assert_eq!(r.site, SITE);
    assert_eq!(r.since.as_deref(), Some("2026-11-20T00:00:00Z"));
    assert_eq!(r.until.as_deref(), Some("2026-11-22T00:00:00Z"));
    // The forged answer's hit and the hit on a never-served id; u9's hit is foreign, not orphan.
    assert_eq!(r.orphan_hits, 2, "orphan hits");
    assert_eq!(r.endpoints.len(), 1, "only for-you served answers");
    let e = &r.endpoints[0];
    assert_eq!(e.endpoint, "for-you");
    assert_eq!(e.experiment.as_deref(), Some("for-you-test"));
    assert_eq!(e.ctr_basis, "displayed");
    let names: Vec<&str> = e.variants.iter().map(|v| v.variant.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    let (a, b) = (&e.variants[0], &e.variants[1]);
    // a: ra1..ra4 shown; ra1 (once, despite the double click), ra3, ra4 clicked; ra1 and ra4
    // (late play after until, inside the window) played; ra3's play is 44 min after the click.
    assert_eq!(
        (a.served, a.displayed, a.clicks, a.plays),
        (4, 4, 3, 2),
        "a counts"
    );
    assert_eq!(
        (b.served, b.displayed, b.clicks, b.plays),
        (3, 3, 1, 1),
        "b counts"
    );
    close(a.ctr, 0.75, "a ctr");
    close(b.ctr, 1.0 / 3.0, "b ctr");
    close_ci(a.ctr_ci, wilson95(3.0, 4.0), "a ctr_ci");
    close_ci(b.ctr_ci, wilson95(1.0, 3.0), "b ctr_ci");
    close(a.completion, 0.0, "a completion");
    close(b.completion, 1.0, "b completion");
    close(a.mrr, (0.5 + 0.5 + 1.0) / 3.0, "a mrr");
    close(b.mrr, 1.0, "b mrr");
    close(a.coverage, 0.5, "a coverage");
    close(b.coverage, 0.4, "b coverage");
    close(a.diversity, 19.0 / 24.0, "a diversity");
    close(b.diversity, 1.0, "b diversity");
    // Popularity ECDF from the range's plays: m2 (2 plays) 1, m5 and m6 (1 play) 2/3.
    close(a.novelty, 11.0 / 27.0, "a novelty");
    close(b.novelty, 2.0 / 9.0, "b novelty");
    close(a.fallback_share, 0.0, "a fallback_share");
    close(b.fallback_share, 1.0 / 3.0, "b fallback_share");
    // The control's comparison fields are null.
    assert!(a.lift.is_none() && a.lift_ci.is_none() && a.p_value.is_none());
    assert!(a.p_value_always_valid.is_none());
    // b against a: relative lift with its Katz interval, pooled z-test.
    let rr: f64 = (1.0 / 3.0) / 0.75;
    close(b.lift, rr - 1.0, "b lift");
    let se_log = (1.0 - 1.0 / 3.0 + 1.0 / 3.0 - 1.0 / 4.0_f64).sqrt();
    let z95 = 1.959_963_984_540_054;
    close_ci(
        b.lift_ci,
        [
            (rr.ln() - z95 * se_log).exp() - 1.0,
            (rr.ln() + z95 * se_log).exp() - 1.0,
        ],
        "b lift_ci",
    );
    let pooled: f64 = 4.0 / 7.0;
    let z = (1.0 / 3.0 - 0.75) / (pooled * (1.0 - pooled) * (1.0 / 3.0 + 1.0 / 4.0)).sqrt();
    close(b.p_value, erfc(z.abs() / 2f64.sqrt()), "b p_value");
    let av = b.p_value_always_valid.expect("b always-valid p");
    assert!((0.0..=1.0).contains(&av), "always-valid p {av}");
    // Served 4 : 3 against weights 1 : 1: chi-square 1/7 on one degree of freedom.
    close(e.srm_p_value, erfc((1.0f64 / 14.0).sqrt()), "srm_p_value");
    let daily: Vec<(&str, &str, u64, u64, u64)> = e
        .daily
        .iter()
        .map(|d| {
            (
                d.date.as_str(),
                d.variant.as_str(),
                d.served,
                d.displayed,
                d.clicks,
            )
        })
        .collect();
    assert_eq!(
        daily,
        [
            ("2026-11-20", "a", 3, 3, 2),
            ("2026-11-20", "b", 1, 1, 0),
            ("2026-11-21", "a", 1, 1, 1),
            ("2026-11-21", "b", 2, 2, 1),
        ]
    );
    close(e.daily[0].ctr, 2.0 / 3.0, "daily a ctr");
    close(e.daily[3].ctr, 0.5, "daily b ctr");
}

/// Writes the hand-built set through `sink` (a real event-log writer over `store`), then
/// checks [`build_report`], its errors, and [`run_report_task`]'s objects.
pub async fn report_contract<S: EventSink, O: ObjectStore>(sink: &S, store: &O) {
    let config = NectarConfig::from_toml(CONFIG, "report contract").expect("contract config");
    for batch in batches() {
        sink.put(&batch).await.expect("the writer stores the batch");
    }
    let catalog = catalog();
    let req = ReportRequest {
        site: SITE.to_string(),
        endpoint: None,
        since_ms: t(0, 0, 0),
        until_ms: t(2, 0, 0),
    };
    let r = build_report(store, Some(&catalog), &config, &req)
        .await
        .expect("report");
    check_report(&r);

    // The endpoint filter keeps the same endpoint; an undeclared one or site is refused.
    let only = ReportRequest {
        endpoint: Some("for-you".into()),
        ..req.clone()
    };
    let filtered = build_report(store, Some(&catalog), &config, &only)
        .await
        .expect("filtered report");
    assert_eq!(filtered, r);
    let bad = ReportRequest {
        endpoint: Some("nope".into()),
        ..req.clone()
    };
    let err = build_report(store, None, &config, &bad).await.unwrap_err();
    assert_eq!(err.code(), "unknown_endpoint");
    assert!(err.to_string().contains("nope"), "{err}");
    let bad = ReportRequest {
        site: "other".into(),
        ..req.clone()
    };
    let err = build_report(store, None, &config, &bad).await.unwrap_err();
    assert_eq!(err.code(), "unknown_site");
    let empty = ReportRequest {
        since_ms: req.until_ms,
        ..req.clone()
    };
    let err = build_report(store, None, &config, &empty)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "invalid_range");

    // Without a catalog, coverage and diversity are null; the rest does not change.
    let bare = build_report(store, None, &config, &req)
        .await
        .expect("report");
    let v = &bare.endpoints[0].variants[0];
    assert_eq!((v.coverage, v.diversity), (None, None));
    assert_eq!(v.clicks, 3);

    // The task: the configured 2 days ending at D+2, JSON then HTML under reports/.
    let task = run_report_task(store, Some(&catalog), &config, SITE, t(2, 0, 0))
        .await
        .expect("report task");
    assert_eq!(task, r);
    let json = store
        .get("reports/site=news/date=2026-11-22/report.json")
        .await
        .expect("get")
        .expect("report.json written");
    let _: Report = serde_json::from_slice(&json).expect("report.json parses as a report");
    assert_eq!(
        json,
        render_json(&r).as_bytes(),
        "report.json is the report"
    );
    let html = store
        .get("reports/site=news/date=2026-11-22/report.html")
        .await
        .expect("get")
        .expect("report.html written");
    let html = String::from_utf8(html.to_vec()).expect("UTF-8");
    assert!(html.starts_with("<!DOCTYPE html>") && html.contains("for-you"));
}
