//! The privacy routes of `nectar dev` over HTTP: `DELETE /v1/users/{user_id}`,
//! `DELETE /v1/clients/{client_id}` and `GET /v1/users/{user_id}/export` are routed, under the
//! site's admin key, and an erasure is recorded in the data dir's erasure log.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

struct Dev(Child, std::path::PathBuf);

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

fn nectar(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nectar"));
    c.args(args).env("RUST_LOG", "warn");
    c
}

/// One HTTP/1.1 request without a body (`Connection: close`); status and JSON body.
fn http(port: u16, method: &str, path: &str, key: Option<&str>) -> (u16, Value) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let auth = key.map_or(String::new(), |k| format!("Authorization: Bearer {k}\r\n"));
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}Content-Length: 0\r\n\r\n"
    );
    s.write_all(head.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw);
    let status = text[9..12].parse().unwrap();
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    // Every answer matches the OpenAPI document (status, schema, error shape).
    openapi_check::openapi_check(path, &method.to_ascii_lowercase(), status, body);
    let json = serde_json::from_str(body).unwrap_or(Value::Null);
    (status, json)
}

mod openapi_check;

#[test]
fn dev_routes_erasure_and_export_under_the_admin_key() {
    let dir = std::env::temp_dir().join(format!("nectar-devpriv-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let data = dir.to_str().unwrap();
    let out = nectar(&["key", "create", "--site", "demo", "--data-dir", data])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let key = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let child = nectar(&["dev", "--addr", &addr, "--data-dir", data])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let _dev = Dev(child, dir.clone());
    let t = Instant::now();
    while TcpStream::connect(&addr).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "nectar dev did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
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
