//! `nectar dev`'s observability as a black box: readiness before and after training, and
//! `GET /metrics` (Prometheus text) after known traffic showing the exact counts.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::common;
use common::{create_key, exchange, nectar, scratch, Dev};

/// Status and body of `head` (request line and header lines) with `body`.
fn request(port: u16, head: &str, body: &str) -> (u16, String) {
    let req = format!(
        "{head}\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    exchange(port, req.as_bytes(), false)
}

fn get(port: u16, path: &str) -> (u16, String) {
    request(port, &format!("GET {path} HTTP/1.1"), "")
}

/// The value of the Prometheus sample `name{labels}` whose labels include all of `want`.
fn sample(text: &str, name: &str, want: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            (n == name
                && want
                    .iter()
                    .all(|(k, v)| labels.split(',').any(|kv| kv == format!("{k}=\"{v}\""))))
            .then(|| value.parse().unwrap())
        })
        .reduce(|a, b| a + b)
}

/// Users whose plays are collected (enough for the quality gate's holdout to score some).
const USERS: usize = 60;

#[test]
fn readiness_and_metrics_after_known_traffic() {
    let dir = scratch("devmetrics");
    let data = dir.to_str().unwrap();

    // GIVEN a site admin key and a fresh server: not ready
    let key = create_key(data, "demo");
    let dev = Dev::start(&["--data-dir", data], None);
    let (status, body) = get(dev.port, "/healthz");
    assert_eq!(status, 503, "{body}");
    // AND 12 users' plays collected, then one payload refused (no events array)
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut accepted = 0;
    for u in 0..USERS {
        let events: Vec<String> = (0..4)
            .map(|k| {
                let item = (u + k) % 8;
                format!(
                    r#"{{"type":"media_play","id":"m-{item}","event_timestamp":{}}}"#,
                    now - 3_600_000 + (k * USERS + u) as i64 * 1000
                )
            })
            .collect();
        accepted += events.len();
        let payload = format!(
            r#"{{"peach_schema_version":"1.0.3","sent_timestamp":{now},"user_id":"u{u}","client":{{"id":"c{u}","app_id":"t"}},"events":[{}]}}"#,
            events.join(",")
        );
        let (s, b) = request(
            dev.port,
            "POST /v1/collect?s=demo HTTP/1.1\r\nContent-Type: application/json",
            &payload,
        );
        assert!(s == 202, "{s} {b}");
    }
    let (s, _) = request(
        dev.port,
        "POST /v1/collect?s=demo HTTP/1.1\r\nContent-Type: application/json",
        r#"{"peach_schema_version":"1.0.3","sent_timestamp":1}"#,
    );
    assert_eq!(s, 400);
    // WHEN every task is trained (the server reads the published versions on first use)
    let mut train_metrics = String::new();
    for task in ["trending", "item_knn", "als"] {
        let prom = dir.join(format!("train-{task}.prom"));
        let out = nectar(&[
            "train",
            "--task",
            task,
            "--site",
            "demo",
            "--data-dir",
            data,
            "--metrics-file",
            prom.to_str().unwrap(),
        ])
        .output()
        .unwrap();
        assert!(out.status.success(), "{task}: {out:?}");
        train_metrics += &std::fs::read_to_string(&prom).unwrap();
    }
    // AND each run's metrics file says it published
    for task in ["trending", "item_knn", "als"] {
        let runs = sample(
            &train_metrics,
            "train_runs",
            &[("task", task), ("status", "published")],
        );
        assert_eq!(runs, Some(1.0), "{task}: {train_metrics}");
    }
    // THEN the server becomes ready with every model loaded (it checks each task's pointer
    // every 5–7.5 s, each on its own jitter: ready can come from a fallback list first)
    let t = Instant::now();
    loop {
        let (status, body) = get(dev.port, "/healthz");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let loaded = |ep: &str| !v["sites"]["demo"]["endpoints"][ep]["model"].is_null();
        if status == 200 && loaded("more-like-this") {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "{status} {body}");
        std::thread::sleep(Duration::from_millis(250));
    }
    // WHEN 5 similar-items requests for known items and 2 for unknown ones are answered
    for (k, item) in ["m-0", "m-1", "m-2", "m-3", "m-4", "nope-1", "nope-2"]
        .iter()
        .enumerate()
    {
        let (s, b) = get(
            dev.port,
            &format!("/v1/similar/more-like-this?s=demo&item_id={item}&n=3"),
        );
        assert_eq!(s, 200, "{k}: {b}");
        assert_eq!(
            b.contains("\"fallback\":true"),
            item.starts_with("nope"),
            "{b}"
        );
    }
    // AND the online report is asked for once the served log has written the 7 answers (it
    // flushes every 200 ms); its per-variant gauges follow the latest report
    let t = Instant::now();
    loop {
        let (s, b) = request(
            dev.port,
            &format!("GET /v1/report?s=demo&endpoint=more-like-this HTTP/1.1\r\nAuthorization: Bearer {key}"),
            "",
        );
        assert_eq!(s, 200, "{b}");
        let v: serde_json::Value = serde_json::from_str(&b).unwrap();
        if v["endpoints"][0]["variants"][0]["served"] == 7 {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "{b}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // THEN /metrics shows exactly that traffic
    let (s, text) = get(dev.port, "/metrics");
    assert_eq!(s, 200);
    let mlt = [("site", "demo"), ("endpoint", "more-like-this")];
    let requests = sample(
        &text,
        "recommend_requests",
        &[mlt[0], mlt[1], ("variant", "default"), ("status", "200")],
    );
    assert_eq!(requests, Some(7.0), "{text}");
    let fallbacks = sample(
        &text,
        "recommend_fallbacks",
        &[mlt[0], mlt[1], ("reason", "cold_subject")],
    );
    assert_eq!(fallbacks, Some(2.0), "{text}");
    assert_eq!(sample(&text, "recommend_latency_ms_count", &mlt), Some(7.0));
    assert_eq!(
        sample(&text, "collect_events_accepted", &[("site", "demo")]),
        Some(accepted as f64)
    );
    assert_eq!(
        sample(
            &text,
            "collect_payloads_rejected",
            &[("site", "demo"), ("code", "invalid_payload")]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "collect_request_ms_count", &[("site", "demo")]),
        Some(USERS as f64 + 1.0)
    );
    // AND the model age of the served item_knn version, emitted on its first answer
    let age = sample(
        &text,
        "model_age_seconds",
        &[("site", "demo"), ("task", "item_knn")],
    );
    assert!(age.is_some_and(|a| (0.0..600.0).contains(&a)), "{age:?}");
    assert_eq!(
        sample(
            &text,
            "report_served",
            &[("endpoint", "more-like-this"), ("variant", "default")]
        ),
        Some(7.0),
        "{text}"
    );
    // AND every metric a panel of the Grafana dashboard queries is exported: by the server's
    // /metrics, or by `nectar train --metrics-file` for the training runs. The one exception
    // is archive_lag_seconds, reported by the archive (the Lambda, or `nectar dev --stream`'s
    // archiver) once it has written a batch.
    let names = Command::new("python3")
        .args([workspace_file("infra/test_grafana.py").as_str(), "--names"])
        .output()
        .unwrap();
    assert!(names.status.success(), "{names:?}");
    let exported = format!("{text}\n{train_metrics}");
    let mut checked = 0;
    for name in String::from_utf8(names.stdout).unwrap().lines() {
        if name == "archive_lag_seconds" {
            continue;
        }
        let present = exported.lines().any(|l| {
            !l.starts_with('#')
                && (l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        });
        assert!(
            present,
            "the Grafana dashboard queries {name}, which is not exported"
        );
        checked += 1;
    }
    assert!(checked >= 10, "{checked}");
    drop(dev);
    let _ = std::fs::remove_dir_all(&dir);
}

fn workspace_file(rel: &str) -> String {
    format!("{}/../../{rel}", env!("CARGO_MANIFEST_DIR"))
}
