//! The privacy routes of `nectar dev` over HTTP: `DELETE /v1/users/{user_id}`,
//! `DELETE /v1/clients/{client_id}` and `GET /v1/users/{user_id}/export` are routed, under the
//! site's admin key, and an erasure is recorded in the data dir's erasure log.

use serde_json::{json, Value};

use crate::common;
use common::{bearer, create_key, json, request, scratch, Dev};

/// One request without a body; status and JSON body (checked against the OpenAPI document).
fn http(port: u16, method: &str, path: &str, key: Option<&str>) -> (u16, Value) {
    let auth: Vec<String> = key.map(bearer).into_iter().collect();
    let auth: Vec<&str> = auth.iter().map(String::as_str).collect();
    let (status, body) = request(port, method, path, &auth, "");
    (status, json(&body))
}

#[test]
fn dev_routes_erasure_and_export_under_the_admin_key() {
    let dir = scratch("devpriv");
    let data = dir.to_str().unwrap().to_string();
    let key = create_key(&data, "demo");
    let dev = Dev::start(&["--data-dir", &data], Some(dir.clone()));
    let port = dev.port;
    let k = Some(key.as_str());
    // GIVEN no key THEN 401, and nothing is recorded
    assert_eq!(http(port, "DELETE", "/v1/users/u1?s=demo", None).0, 401);
    assert!(!dir.join("erasures/site=demo.jsonl").exists());
    // WHEN u1 and a client are erased THEN 202 each, and both are recorded
    let (s, b) = http(port, "DELETE", "/v1/users/u1?s=demo", k);
    assert_eq!(s, 202, "{b}");
    assert_eq!(b["pending"][0], "training");
    assert_eq!(http(port, "DELETE", "/v1/clients/c1?s=demo", k).0, 202);
    let log = std::fs::read_to_string(dir.join("erasures/site=demo.jsonl")).unwrap();
    assert!(
        log.contains("\"user:u1\"") && log.contains("\"client:c1\""),
        "{log}"
    );
    // THEN the export says so
    let (s, b) = http(port, "GET", "/v1/users/u1/export?s=demo", k);
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["erasure"]["state"], "requested");
    assert_eq!(b["history"], json!([]));
    assert_eq!(b["served"], json!([]));
}
