//! `nectar dev` as a black box over raw TCP: unreadable bodies, the admin key before the body,
//! repeated query parameters, readiness, slow and idle connections, and the connection bound.
//!
//! Each test starts its own server (the built binary, a free loopback port, a temp data dir)
//! and stops it when done. Timing assertions are generous on purpose: they separate "closed by
//! a timeout of about 10 s" from "never closed", not one second from the next.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common;
use common::{create_key, exchange, json, scratch, Dev};

/// `HEADER_READ_TIMEOUT` and `BODY_READ_TIMEOUT` of `nectar dev` (shared/cli/src/dev/conn.rs).
const SERVER_TIMEOUT: Duration = Duration::from_secs(10);
/// `MAX_CONNECTIONS` of `nectar dev`.
const MAX_CONNECTIONS: usize = 512;

/// Starts `nectar dev` on a free port with a fresh data dir; with an admin key for `demo`
/// when `with_key` (returned).
fn start(name: &str, with_key: bool) -> (Dev, Option<String>) {
    let dir = scratch(&format!("devhttp-{name}"));
    let data = dir.to_str().unwrap().to_string();
    let key = with_key.then(|| create_key(&data, "demo"));
    let dev = Dev::start(&["--data-dir", &data, "--no-served-log"], Some(dir));
    (dev, key)
}

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(40))).unwrap();
    s
}

/// Sends raw bytes (then, with `half_close`, ends the sending side); status and JSON body.
fn raw(port: u16, bytes: &[u8], half_close: bool) -> (u16, Value) {
    let (status, body) = exchange(port, bytes, half_close);
    (status, json(&body))
}

fn get(port: u16, path: &str) -> (u16, Value) {
    raw(
        port,
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        false,
    )
}

fn assert_unreadable(case: &str, (status, body): (u16, Value)) {
    assert_eq!(status, 400, "{case}: {body}");
    assert_eq!(body["error"]["code"], "invalid_request", "{case}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("the request body could not be read"),
        "{case}: {body}"
    );
}

const COLLECT: &str =
    "POST /v1/collect?s=demo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n";

#[test]
fn unreadable_bodies_are_400_and_only_bodies_over_the_limit_are_413() {
    let (dev, _) = start("bodies", false);
    let p = dev.port;
    // GIVEN a Content-Length larger than what arrives before the client stops sending
    assert_unreadable(
        "short body",
        raw(
            p,
            format!("{COLLECT}Content-Length: 100\r\n\r\n{{\"a\":").as_bytes(),
            true,
        ),
    );
    // GIVEN a chunk size that is not hex
    assert_unreadable(
        "bad chunk size",
        raw(
            p,
            format!("{COLLECT}Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n")
                .as_bytes(),
            false,
        ),
    );
    // GIVEN a chunked body without its final chunk
    assert_unreadable(
        "missing final chunk",
        raw(
            p,
            format!("{COLLECT}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n").as_bytes(),
            true,
        ),
    );
    // GIVEN chunk lines ended by a bare LF
    assert_unreadable(
        "bare LF",
        raw(
            p,
            format!("{COLLECT}Transfer-Encoding: chunked\r\n\r\n5\nhello\n0\n\n").as_bytes(),
            false,
        ),
    );
    // GIVEN both Content-Length and Transfer-Encoding, in either order THEN 400 naming them
    for headers in [
        "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
    ] {
        let (status, body) = raw(
            p,
            format!("{COLLECT}{headers}\r\n0\r\n\r\n").as_bytes(),
            false,
        );
        assert_eq!(status, 400, "{headers}: {body}");
        assert_eq!(body["error"]["code"], "invalid_request");
        assert_eq!(body["error"]["details"][0]["path"], "Content-Length");
    }
    // AND the same connection kept alive for a well-framed request is served (the scan of
    // the stream does not flag ordinary requests); here: a chunked empty body, then a GET
    let mut s = connect(p);
    s.write_all(
        format!("{COLLECT}Transfer-Encoding: chunked\r\n\r\n2\r\n{{}}\r\n0\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(text.contains("invalid_payload"), "{text}");
    assert!(text.contains("HTTP/1.1 200"), "{text}");
    // GIVEN a declared length over the 1 MiB collect limit THEN 413, before any body byte
    let (status, body) = raw(
        p,
        format!("{COLLECT}Content-Length: 2000000\r\n\r\n").as_bytes(),
        false,
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (413, Some("payload_too_large"))
    );
}

#[test]
fn items_checks_the_admin_key_before_the_body() {
    let (dev, key) = start("items", true);
    let (p, key) = (dev.port, key.unwrap());
    let put = "PUT /v1/items?s=demo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n";
    // GIVEN no key and an oversized declared body THEN 401, not 413
    let (status, body) = raw(
        p,
        format!("{put}Content-Length: 99999999\r\n\r\n").as_bytes(),
        false,
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    // GIVEN a wrong key and a broken chunked body THEN 403, not 400
    let (status, body) = raw(
        p,
        format!("{put}Authorization: Bearer wrong\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
            .as_bytes(),
        false,
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    // GIVEN the right key: an oversized body is 413 and a broken one 400
    let auth = format!("Authorization: Bearer {key}\r\n");
    let (status, _) = raw(
        p,
        format!("{put}{auth}Content-Length: 99999999\r\n\r\n").as_bytes(),
        false,
    );
    assert_eq!(status, 413);
    assert_unreadable(
        "items bad chunk",
        raw(
            p,
            format!("{put}{auth}Transfer-Encoding: chunked\r\n\r\nzz\r\n").as_bytes(),
            false,
        ),
    );
    // AND a good upsert is accepted
    let doc = r#"{"items":[{"id":"urn:a","category":"news"}]}"#;
    let (status, body) = raw(
        p,
        format!(
            "{put}{auth}Connection: close\r\nContent-Length: {}\r\n\r\n{doc}",
            doc.len()
        )
        .as_bytes(),
        false,
    );
    assert_eq!(
        (status, &body["upserted"]),
        (200, &serde_json::json!(1)),
        "{body}"
    );
}

#[test]
fn repeated_query_parameters_are_refused_on_every_route() {
    let (dev, _) = start("query", false);
    let p = dev.port;
    for (request, name) in [
        (
            "POST /v1/collect?s=demo&s=demo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Content-Length: 2\r\nConnection: close\r\n\r\n{}",
            "s",
        ),
        (
            "GET /v1/recommend/for-you?s=demo&user_id=a&user_id=b HTTP/1.1\r\nHost: x\r\n\
             Connection: close\r\n\r\n",
            "user_id",
        ),
        (
            "GET /v1/similar/more-like-this?s=demo&item_id=a&n=2&n=3 HTTP/1.1\r\nHost: x\r\n\
             Connection: close\r\n\r\n",
            "n",
        ),
        (
            "PUT /v1/items?s=demo&s=other HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\
             Connection: close\r\n\r\n",
            "s",
        ),
    ] {
        let (status, body) = raw(p, request.as_bytes(), false);
        assert_eq!(status, 400, "{request}: {body}");
        assert_eq!(body["error"]["code"], "invalid_request");
        assert_eq!(body["error"]["details"][0]["path"], name, "{request}");
    }
}

#[test]
fn root_points_at_readiness_which_names_what_to_train() {
    let (dev, _) = start("health", false);
    // GIVEN a fresh data dir WHEN / is asked THEN it points at /healthz and the routes
    let (status, body) = get(dev.port, "/");
    assert_eq!(status, 200);
    assert_eq!(body["health"], "/healthz");
    assert!(
        body["sites"]["demo"]["endpoints"]["for-you"].is_string(),
        "{body}"
    );
    // WHEN /healthz is asked THEN 503 not_ready, each endpoint saying what to train
    let (status, body) = get(dev.port, "/healthz");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "not_ready");
    let ep = &body["sites"]["demo"]["endpoints"]["for-you"];
    assert_eq!(ep["ready"], false);
    assert!(
        ep["reason"]
            .as_str()
            .unwrap()
            .contains("nectar train --task trending"),
        "{ep}"
    );
    // AND the recommend route's 503 says the same
    let (status, body) = get(dev.port, "/v1/recommend/for-you?s=demo&user_id=u1");
    assert_eq!(status, 503);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nectar train --task trending"),
        "{body}"
    );
}

#[test]
fn slow_heads_and_idle_connections_are_closed_while_requests_keep_being_answered() {
    let (dev, _) = start("slowloris", false);
    let p = dev.port;
    // GIVEN 50 connections each sending a head one byte every 500 ms (bounded: 40 s at most)
    let slow: Vec<_> = (0..50)
        .map(|_| {
            std::thread::spawn(move || {
                let mut s = connect(p);
                let start = Instant::now();
                let head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
                for b in head.iter().cycle() {
                    if start.elapsed() > Duration::from_secs(40) {
                        return None;
                    }
                    if s.write_all(&[*b]).is_err() {
                        return Some(start.elapsed());
                    }
                    std::thread::sleep(Duration::from_millis(500));
                }
                None
            })
        })
        .collect();
    // AND an idle keep-alive connection after one answered request
    let idle = std::thread::spawn(move || {
        let mut s = connect(p);
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 65536];
        // The whole answer (head, then as many bytes as its content-length says).
        loop {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "closed before the answer");
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got).to_ascii_lowercase();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map(|v| v.trim().parse().unwrap())
                    .unwrap();
                if body.len() >= len {
                    assert!(text.starts_with("http/1.1 200"), "{text}");
                    break;
                }
            }
        }
        let start = Instant::now();
        // EOF (0) when the server closes; an error if the 40 s read timeout passes first
        let closed = matches!(s.read(&mut buf), Ok(0));
        (closed, start.elapsed())
    });
    // WHEN normal requests come in meanwhile THEN each is answered promptly
    let t = Instant::now();
    let mut answered = 0;
    while t.elapsed() < SERVER_TIMEOUT + Duration::from_secs(2) {
        let start = Instant::now();
        let (status, _) = get(p, "/");
        assert_eq!(status, 200);
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
        answered += 1;
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(answered > 10, "{answered}");
    // THEN every slow connection was closed by the server, after about the header timeout
    for h in slow {
        let closed_after = h.join().unwrap().expect("slow connection never closed");
        assert!(
            closed_after >= SERVER_TIMEOUT / 2 && closed_after < Duration::from_secs(30),
            "{closed_after:?}"
        );
    }
    // AND the idle keep-alive connection too
    let (closed, after) = idle.join().unwrap();
    assert!(closed, "idle connection not closed after {after:?}");
    assert!(
        after >= SERVER_TIMEOUT / 2 && after < Duration::from_secs(30),
        "{after:?}"
    );
}

#[test]
fn a_body_that_stops_arriving_times_out_with_408() {
    let (dev, _) = start("bodytimeout", false);
    // GIVEN a declared body of 100 bytes of which 10 arrive, the connection left open
    let mut s = connect(dev.port);
    s.write_all(format!("{COLLECT}Content-Length: 100\r\n\r\n{{\"events\":").as_bytes())
        .unwrap();
    let start = Instant::now();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    // THEN 408 request_timeout after about the body timeout, and the connection is closed
    let (status, body) = common::parse_answer(&out);
    let body = json(&body);
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (408, Some("request_timeout"))
    );
    assert!(
        start.elapsed() >= SERVER_TIMEOUT / 2,
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn connections_over_the_bound_are_refused_at_once_with_503() {
    let (dev, _) = start("bound", false);
    // GIVEN every connection slot held by an idle client
    let held: Vec<TcpStream> = (0..MAX_CONNECTIONS).map(|_| connect(dev.port)).collect();
    std::thread::sleep(Duration::from_millis(500));
    // WHEN one more connects THEN it is answered 503 unavailable at once
    let start = Instant::now();
    let (status, body) = get(dev.port, "/");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("unavailable")),
        "{body}"
    );
    assert!(start.elapsed() < Duration::from_secs(5));
    // AND once the held connections are gone, requests are served again
    drop(held);
    let t = Instant::now();
    loop {
        let (status, _) = get(dev.port, "/");
        if status == 200 {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "still refused");
        std::thread::sleep(Duration::from_millis(100));
    }
}
