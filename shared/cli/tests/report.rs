//! Black-box tests of `nectar report` on a data dir holding the report contract's events
//! (written by the embedded event log writer).

use std::path::PathBuf;
use std::process::{Command, Output};

use nectar_platform::collect::sink::EventSink;
use nectar_platform::event_log::local::LocalEventLog;
use nectar_platform::report::contract;

use crate::common;
use common::openapi_check::openapi_check;

/// The binary, with none of the caller's NECTAR_* or RUST_LOG settings.
fn nectar() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nectar"));
    for (k, _) in std::env::vars() {
        if k.starts_with("NECTAR_") || k == "RUST_LOG" || k == "NO_COLOR" {
            c.env_remove(k);
        }
    }
    c
}

fn run(cmd: &mut Command) -> (Output, String, String) {
    let out = cmd.output().expect("the binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}

/// A data dir with the contract's events, and its config file.
async fn data_dir(name: &str) -> (PathBuf, PathBuf) {
    let d = std::env::temp_dir().join(format!("nectar-cli-report-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    let log = LocalEventLog::start(&d, "w1").unwrap();
    for b in contract::batches() {
        log.put(&b).await.unwrap();
    }
    let config = d.join("nectar.toml");
    std::fs::write(&config, contract::CONFIG).unwrap();
    (d, config)
}

fn report(dir: &PathBuf, config: &PathBuf) -> Command {
    let mut c = nectar();
    c.arg("report")
        .arg("--data-dir")
        .arg(dir)
        .arg("--config")
        .arg(config);
    c
}

#[tokio::test]
async fn markdown_output_holds_the_comparison_table() {
    // GIVEN the contract's events in a data dir
    let (dir, config) = data_dir("md").await;
    // WHEN nectar report prints Markdown for the contract's two days
    let (out, stdout, stderr) = run(report(&dir, &config).args([
        "--since",
        "2026-11-20",
        "--until",
        "2026-11-22",
        "--format",
        "md",
    ]));
    // THEN it succeeds with the table of the endpoint's variants
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("## Endpoint for-you (experiment for-you-test)"),
        "{stdout}"
    );
    assert!(stdout.contains("| variant | served | displayed | clicks | CTR [95 % CI] |"));
    assert!(
        stdout.contains("| a (control) | 4 | 4 | 3 | 75.0 % ["),
        "{stdout}"
    );
    assert!(stdout.contains("| b | 3 | 3 | 1 | 33.3 % ["), "{stdout}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn out_picks_the_format_from_its_extension_and_json_is_the_default() {
    let (dir, config) = data_dir("out").await;
    // WHEN the report goes to an .html file
    let page = dir.join("report.html");
    let (out, _, stderr) = run(report(&dir, &config)
        .args([
            "--since",
            "2026-11-20",
            "--until",
            "2026-11-22T00:00:00Z",
            "--out",
        ])
        .arg(&page));
    assert!(out.status.success(), "{stderr}");
    // THEN the file is the HTML page with its three charts
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert_eq!(html.matches("<svg").count(), 3);
    // AND without --format or --out, stdout is the JSON report of the site
    let (out, stdout, stderr) = run(report(&dir, &config).args([
        "--site",
        "news",
        "--endpoint",
        "for-you",
        "--since",
        "2026-11-20",
        "--until",
        "2026-11-22",
    ]));
    assert!(out.status.success(), "{stderr}");
    // (the JSON report is the body of `GET /v1/report`: it must match that answer's schema)
    openapi_check("/v1/report", "GET", 200, &stdout);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["orphan_hits"], 2);
    assert_eq!(v["endpoints"][0]["variants"][0]["clicks"], 3);
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn bad_flags_fail_with_a_message_naming_them() {
    let (dir, config) = data_dir("bad").await;
    // A --since that is no time
    let (out, _, stderr) = run(report(&dir, &config).args(["--since", "last-week"]));
    assert!(!out.status.success());
    assert!(stderr.contains("--since \"last-week\""), "{stderr}");
    // An unknown site, an unknown endpoint, an unknown format, an empty range
    let (out, _, stderr) = run(report(&dir, &config).args(["--site", "nope"]));
    assert!(!out.status.success());
    assert!(stderr.contains("--site \"nope\": unknown site"), "{stderr}");
    let (out, _, stderr) = run(report(&dir, &config).args(["--endpoint", "nope"]));
    assert!(!out.status.success());
    assert!(stderr.contains("unknown endpoint \"nope\""), "{stderr}");
    let (out, _, stderr) = run(report(&dir, &config).args(["--format", "pdf"]));
    assert!(!out.status.success());
    assert!(stderr.contains("--format"), "{stderr}");
    let (out, _, stderr) =
        run(report(&dir, &config).args(["--since", "2026-11-22", "--until", "2026-11-20"]));
    assert!(!out.status.success());
    assert!(
        stderr.contains("--since must be before --until"),
        "{stderr}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}
