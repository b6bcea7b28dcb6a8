//! The OpenAPI document against what `nectar dev` answers: every route, its success and its
//! main errors, on a data dir before and after training; each answer must match the document
//! (status documented for the route, body valid against its schema).

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common;
use common::openapi_check::check;
use common::{create_key, nectar, request, scratch, Dev};

/// `nectar dev` on a free port with a fresh data dir (returned) and an admin key for `demo`.
fn start() -> (Dev, String, String) {
    let dir = scratch("openapi");
    let data = dir.to_str().unwrap().to_string();
    let key = create_key(&data, "demo");
    (Dev::start(&["--data-dir", &data], Some(dir)), key, data)
}

/// Sends `method target` with `headers` and `body`; the answer is checked against the
/// document by [`request`].
fn call(port: u16, method: &str, target: &str, headers: &[&str], body: &str) -> (u16, String) {
    request(port, method, target, headers, body)
}

fn code(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    v["error"]["code"].as_str().unwrap_or("").to_string()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

const JSON: &str = "Content-Type: application/json";

#[test]
fn every_route_answers_as_the_openapi_document_says() {
    let (dev, key, data) = start();
    let p = dev.port;
    let bearer = format!("Authorization: Bearer {key}");
    let wrong = "Authorization: Bearer not-a-key";

    // GIVEN a fresh server: not ready, nothing to serve
    assert_eq!(call(p, "GET", "/healthz", &[], "").0, 503);
    let (s, b) = call(p, "GET", "/v1/recommend/for-you?s=demo&user_id=u1", &[], "");
    assert_eq!((s, code(&b).as_str()), (503, "no_model"), "{b}");
    // AND the index, the document, its HTML rendering and the metrics
    let (s, b) = call(p, "GET", "/", &[], "");
    assert_eq!(s, 200);
    assert!(b.contains("/openapi.json") && b.contains("/docs"), "{b}");
    let (s, b) = call(p, "GET", "/openapi.json", &[], "");
    assert_eq!(s, 200);
    let served: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(served, nectar_platform::http::openapi::document());
    let (s, b) = call(p, "GET", "/docs", &[], "");
    assert_eq!(s, 200);
    assert!(b.contains("<code>/v1/recommend/{endpoint}</code>"), "{b}");
    assert_eq!(call(p, "GET", "/metrics", &[], "").0, 200);
    assert_eq!(call(p, "POST", "/docs", &[], "").0, 405);

    // WHEN 12 users' plays are collected
    let now = now_ms();
    for u in 0..12 {
        let events: Vec<String> = (0..4)
            .map(|k| {
                format!(
                    r#"{{"type":"media_play","id":"m-{}","event_timestamp":{}}}"#,
                    (u + k) % 6,
                    now - 3_600_000 + (u * 10 + k) as i64 * 1000
                )
            })
            .collect();
        let payload = format!(
            r#"{{"peach_schema_version":"1.0.3","sent_timestamp":{now},"user_id":"u{u}","client":{{"id":"c{u}","app_id":"t","device":{{"type":"phone"}}}},"events":[{}]}}"#,
            events.join(",")
        );
        let (s, b) = call(p, "POST", "/v1/collect?s=demo", &[JSON], &payload);
        assert_eq!(s, 202, "{b}");
    }
    // THEN collect's errors are the documented ones
    let c = "/v1/collect?s=demo";
    let (s, b) = call(p, "POST", c, &[JSON], r#"{"sent_timestamp":1}"#);
    assert_eq!((s, code(&b).as_str()), (400, "invalid_payload"), "{b}");
    let (s, b) = call(p, "POST", "/v1/collect?s=nope", &[JSON], "{}");
    assert_eq!((s, code(&b).as_str()), (403, "unknown_site"), "{b}");
    assert_eq!(call(p, "GET", c, &[], "").0, 405);
    let (s, _) = call(p, "POST", c, &["Content-Type: image/png"], "{}");
    assert_eq!(s, 415);
    let big = "x".repeat(2 << 20);
    assert_eq!(call(p, "POST", c, &[JSON], &big).0, 413);
    let preflight = [
        "Origin: https://app.example",
        "Access-Control-Request-Method: POST",
    ];
    assert_eq!(call(p, "OPTIONS", c, &preflight, "").0, 204);

    // WHEN every task is trained
    for task in ["trending", "item_knn", "als"] {
        let out = nectar(&[
            "train",
            "--task",
            task,
            "--site",
            "demo",
            "--data-dir",
            &data,
        ])
        .output()
        .unwrap();
        assert!(out.status.success(), "{task}: {out:?}");
    }
    let t = Instant::now();
    while call(p, "GET", "/healthz", &[], "").0 != 200 {
        assert!(t.elapsed() < Duration::from_secs(30), "never ready");
        std::thread::sleep(Duration::from_millis(250));
    }
    // THEN the recommendation routes answer, and refuse what the document says
    let (s, b) = call(
        p,
        "GET",
        "/v1/recommend/for-you?s=demo&user_id=u1&n=3",
        &[],
        "",
    );
    assert_eq!(s, 200, "{b}");
    let (s, b) = call(
        p,
        "GET",
        "/v1/recommend/for-you?s=demo&client_id=new",
        &[],
        "",
    );
    assert_eq!(s, 200, "{b}");
    let (s, b) = call(
        p,
        "GET",
        "/v1/similar/more-like-this?s=demo&item_id=m-1",
        &[],
        "",
    );
    assert_eq!(s, 200, "{b}");
    let (s, b) = call(
        p,
        "GET",
        "/v1/recommend/for-you?s=demo&user_id=u1&n=0",
        &[],
        "",
    );
    assert_eq!((s, code(&b).as_str()), (400, "invalid_request"), "{b}");
    let (s, b) = call(p, "GET", "/v1/recommend/nope?s=demo&user_id=u1", &[], "");
    assert_eq!((s, code(&b).as_str()), (404, "unknown_endpoint"), "{b}");
    let (s, b) = call(p, "GET", "/v1/similar/for-you?s=demo&item_id=m-1", &[], "");
    assert_eq!((s, code(&b).as_str()), (404, "unknown_endpoint"), "{b}");
    let (s, b) = call(p, "GET", "/v1/recommend/for-you?s=nope&user_id=u1", &[], "");
    assert_eq!((s, code(&b).as_str()), (403, "unknown_site"), "{b}");
    assert_eq!(
        call(p, "POST", "/v1/recommend/for-you?s=demo", &[], "").0,
        405
    );

    // AND the catalog upsert needs the key, then takes items
    let items = r#"{"items":[{"id":"m-1","category":"news","title":"One"}]}"#;
    let i = "/v1/items?s=demo";
    let (s, b) = call(p, "PUT", i, &[JSON], items);
    assert_eq!((s, code(&b).as_str()), (401, "unauthorized"), "{b}");
    let (s, b) = call(p, "PUT", i, &[JSON, wrong], items);
    assert_eq!((s, code(&b).as_str()), (403, "forbidden"), "{b}");
    let (s, b) = call(p, "PUT", i, &[JSON, &bearer], r#"{"items":[{"id":""}]}"#);
    assert_eq!((s, code(&b).as_str()), (400, "invalid_request"), "{b}");
    let (s, b) = call(p, "PUT", i, &[JSON, &bearer], items);
    assert_eq!(s, 200, "{b}");
    assert_eq!(call(p, "GET", i, &[&bearer], "").0, 405);

    // AND the report, in each format, needs the key
    let (s, b) = call(p, "GET", "/v1/report?s=demo", &[], "");
    assert_eq!((s, code(&b).as_str()), (401, "unauthorized"), "{b}");
    for format in ["json", "html", "md"] {
        let (s, b) = call(
            p,
            "GET",
            &format!("/v1/report?s=demo&format={format}"),
            &[&bearer],
            "",
        );
        assert_eq!(s, 200, "{format}: {b}");
    }
    let (s, b) = call(p, "GET", "/v1/report?s=demo&format=pdf", &[&bearer], "");
    assert_eq!((s, code(&b).as_str()), (400, "invalid_request"), "{b}");

    // AND an unknown route is a 404 error body
    let (s, b) = call(p, "GET", "/v2/nothing", &[], "");
    assert_eq!((s, code(&b).as_str()), (404, "not_found"), "{b}");
    drop(dev);
}

#[test]
fn the_check_refuses_answers_the_document_does_not_allow() {
    // An answer without its required keys
    let r = check("/v1/recommend/x?s=demo", "GET", 200, r#"{"items": []}"#);
    assert!(r.is_err(), "{r:?}");
    // A status the route does not document
    assert!(check("/v1/items", "PUT", 418, "{}").is_err());
    // An error body that is not the error shape
    assert!(check("/v1/items", "PUT", 401, r#"{"message": "no"}"#).is_err());
    // An error code outside the stable list
    let e = r#"{"error": {"code": "oops", "message": "m"}}"#;
    assert!(check("/v1/items", "PUT", 401, e).is_err());
    // A well-formed answer passes
    let ok = r#"{"recommendation_id": "r-1", "endpoint": "x", "variant": "default",
        "model": {"name": "als", "version": 1}, "items": [{"id": "a", "score": 0.5},
        {"id": "p", "score": null}], "fallback": false}"#;
    assert_eq!(check("/v1/recommend/x", "GET", 200, ok), Ok(()));
}
