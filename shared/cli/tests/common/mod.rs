//! What the black-box suites of the `nectar` binary share: the built binary with a clean
//! environment, `nectar dev` on a free loopback port, and one HTTP/1.1 exchange over raw TCP
//! whose answer is checked against the OpenAPI document.
//!
//! Each suite is its own crate (`mod common;`) and uses a part of this: unused items are fine.
#![allow(dead_code)]

pub mod openapi_check;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The built `nectar` binary with `args`, quiet logs, and none of the caller's `NECTAR_*`
/// variables (a suite must not depend on the shell it runs in).
pub fn nectar(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nectar"));
    for (k, _) in std::env::vars() {
        if k.starts_with("NECTAR_") {
            c.env_remove(k);
        }
    }
    c.args(args).env("RUST_LOG", "warn");
    c
}

/// Runs `nectar args` to the end and asserts that it succeeded.
pub fn run_ok(args: &[&str]) -> Output {
    let out = nectar(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {out:?}");
    out
}

/// A fresh, empty temp dir for one test (named after it and the process).
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nectar-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Creates an admin key for `site` in the data dir and returns it.
pub fn create_key(data: &str, site: &str) -> String {
    let out = run_ok(&["key", "create", "--site", site, "--data-dir", data]);
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `nectar dev`, killed (and its scratch dir removed, when it owns one) on drop.
pub struct Dev {
    child: Child,
    /// The loopback port it listens on.
    pub port: u16,
    dir: Option<PathBuf>,
}

impl Dev {
    /// Starts `nectar dev --addr 127.0.0.1:PORT args…` on a free port and waits until it
    /// accepts connections; `owns` is a scratch dir removed with it.
    pub fn start(args: &[&str], owns: Option<PathBuf>) -> Dev {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let mut all = vec!["dev", "--addr", &addr];
        all.extend_from_slice(args);
        let child = nectar(&all).stdout(Stdio::null()).spawn().unwrap();
        let dev = Dev {
            child,
            port,
            dir: owns,
        };
        let t = Instant::now();
        while TcpStream::connect(&addr).is_err() {
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "nectar dev did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        dev
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Sends raw bytes (then, with `half_close`, ends the sending side), reads the answer until
/// the server closes, checks it against the OpenAPI document (the request line names the
/// route) and returns its status and body.
pub fn exchange(port: u16, bytes: &[u8], half_close: bool) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(40))).unwrap();
    // The server may answer and close before reading a body it refuses (413 on the length).
    let _ = s.write_all(bytes);
    if half_close {
        let _ = s.shutdown(Shutdown::Write);
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let (status, body) = parse_answer(&out);
    openapi_check::openapi_check_raw(bytes, status, &body);
    (status, body)
}

/// Status and body of an answer read to the end of the connection.
pub fn parse_answer(raw: &[u8]) -> (u16, String) {
    let text = String::from_utf8_lossy(raw);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body.to_string())
}

/// `method target` with extra header lines and a body, `Connection: close`; see [`exchange`].
pub fn request(
    port: u16,
    method: &str,
    target: &str,
    headers: &[&str],
    body: &str,
) -> (u16, String) {
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    exchange(port, req.as_bytes(), false)
}

/// A body as JSON (`null` when it is not JSON).
pub fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or(Value::Null)
}

/// The `Authorization` header line of an admin key.
pub fn bearer(key: &str) -> String {
    format!("Authorization: Bearer {key}")
}
