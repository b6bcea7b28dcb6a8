//! `nectar dev` as a black box with a Thompson-sampling experiment: answers name a drawn
//! variant, the served log and collected displays and hits feed the live counts, and traffic
//! moves to the variant that gets clicked once the counts are re-read.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::common;
use common::{json, request, run_ok, scratch, Dev};

const CONFIG: &str = r#"
[sites.demo]
name = "bandit"
allowed_origins = ["*"]
[sites.demo.event_weights]
rating = 1
[sites.demo.tasks.a]
algorithm = "popular"
window = { days = 3650, anchor = "latest" }
holdout_fraction = 0
[sites.demo.tasks.b]
algorithm = "popular"
window = { days = 3650, anchor = "latest" }
holdout_fraction = 0
[sites.demo.endpoints.home]
kind = "user"
model = "a"
rules = { availability = false }
experiment = { name = "x", allocation = "thompson", variants = [{ name = "a", weight = 1, model = "a" }, { name = "b", weight = 1, model = "b" }] }
"#;

fn run(args: &[&str]) {
    run_ok(args);
}

/// One request with an optional JSON body; status and JSON body (checked against the
/// OpenAPI document).
fn http(port: u16, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let body = body.map(Value::to_string).unwrap_or_default();
    let (status, answer) = request(
        port,
        method,
        path,
        &["Content-Type: application/json"],
        &body,
    );
    (status, json(&answer))
}

fn start(dir: &Path) -> (Dev, u16) {
    let data = dir.join("data");
    let config = dir.join("nectar.toml");
    let (data, config) = (data.to_str().unwrap(), config.to_str().unwrap());
    let dev = Dev::start(
        &["--data-dir", data, "--config", config],
        Some(dir.to_path_buf()),
    );
    let port = dev.port;
    (dev, port)
}

#[test]
fn a_thompson_experiment_moves_traffic_to_the_variant_that_gets_clicked() {
    // GIVEN two popularity models of a small imported history, and `nectar dev` serving
    // endpoint `home` with a Thompson experiment over them
    let dir = scratch("devbandit");
    std::fs::write(dir.join("nectar.toml"), CONFIG).unwrap();
    let mut csv = String::from("user_id,item_id,rating,timestamp\n");
    for u in 0..20 {
        for i in 0..5 {
            csv += &format!("u{u},i{i},4,{}\n", 1_700_000_000 + u * 60 + i);
        }
    }
    std::fs::write(dir.join("ratings.csv"), csv).unwrap();
    let (data, config) = (dir.join("data"), dir.join("nectar.toml"));
    let (data, config) = (data.to_str().unwrap(), config.to_str().unwrap());
    let ratings = dir.join("ratings.csv");
    run(&[
        "import",
        "--site",
        "demo",
        "--csv",
        ratings.to_str().unwrap(),
        "--config",
        config,
        "--data-dir",
        data,
    ]);
    run(&[
        "train",
        "--site",
        "demo",
        "--config",
        config,
        "--data-dir",
        data,
    ]);
    let (_dev, port) = start(&dir);

    // WHEN 60 new clients ask, and after the served log is written, every answer of `b` is
    // displayed and clicked and every answer of `a` only displayed
    let mut answers = Vec::new();
    for c in 0..60 {
        let (status, body) = http(
            port,
            "GET",
            &format!("/v1/recommend/home?s=demo&client_id=c{c}"),
            None,
        );
        assert_eq!(status, 200, "{body}");
        answers.push((c, body));
    }
    let variants: Vec<&str> = answers
        .iter()
        .map(|(_, b)| b["variant"].as_str().unwrap())
        .collect();
    assert!(
        variants.contains(&"a") && variants.contains(&"b"),
        "{variants:?}"
    );
    // The served log is written every 200 ms.
    std::thread::sleep(Duration::from_secs(1));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    for (c, body) in &answers {
        let rec = body["recommendation_id"].as_str().unwrap();
        let mut events = vec![
            json!({"type": "recommendation_displayed", "id": rec, "event_timestamp": now - 2}),
        ];
        if body["variant"] == "b" {
            events.push(
                json!({"type": "recommendation_hit", "id": rec, "event_timestamp": now - 1,
                               "context": {"items": [body["items"][0]["id"]], "hit_index": 0}}),
            );
        }
        let payload = json!({
            "peach_schema_version": "1.0.3", "sent_timestamp": now,
            "client": {"id": format!("c{c}"), "app_id": "a", "device": {"type": "phone"}},
            "events": events
        });
        let (status, resp) = http(port, "POST", "/v1/collect?s=demo", Some(&payload));
        assert_eq!(status, 202, "{resp}");
    }
    // THEN once the counts are re-read (at most every 5 s plus 50 % jitter), nearly every
    // request gets `b`
    std::thread::sleep(Duration::from_secs(8));
    let b = (0..100)
        .filter(|u| {
            let (_, body) = http(
                port,
                "GET",
                &format!("/v1/recommend/home?s=demo&user_id=n{u}"),
                None,
            );
            body["variant"] == "b"
        })
        .count();
    assert!(b > 90, "{b} of 100 answers were variant b");
}
