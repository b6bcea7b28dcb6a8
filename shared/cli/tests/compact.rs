//! `nectar compact` as a black box on a demo data dir: every finished day gets Parquet parts
//! and a manifest, a second run has nothing to do, and bad flags fail with a message.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn nectar(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nectar"))
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("NECTAR_DATA_DIR")
        .env_remove("NECTAR_BUCKET")
        .env_remove("NECTAR_CONFIG")
        .output()
        .expect("the binary runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn dirs(p: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(p)
        .map(|r| {
            r.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn compact_turns_every_finished_demo_day_into_parquet_once() {
    let dir: PathBuf =
        std::env::temp_dir().join(format!("nectar-cli-compact-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let data = dir.to_str().unwrap();
    // GIVEN a demo data dir (four weeks of events up to now)
    let out = nectar(&[
        "demo",
        "--no-serve",
        "--users",
        "40",
        "--seed",
        "3",
        "--data-dir",
        data,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let raw_days = dirs(&dir.join("events/site=demo"));
    assert!(raw_days.len() > 20, "{raw_days:?}");
    let today = format!("date={}", chrono::Utc::now().format("%Y-%m-%d"));

    // WHEN compacted
    let out = nectar(&["compact", "--data-dir", data]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));

    // THEN every finished day has a manifest and parts, today has none
    let compacted = dirs(&dir.join("compacted/site=demo"));
    let finished: Vec<&String> = raw_days.iter().filter(|d| **d < today).collect();
    assert_eq!(compacted.iter().collect::<Vec<_>>(), finished);
    for day in &compacted {
        let files = dirs(&dir.join("compacted/site=demo").join(day));
        assert_eq!(files[0], "_manifest.json", "{files:?}");
        assert_eq!(files[1], "part-00000.parquet");
        let m: serde_json::Value = serde_json::from_slice(
            &std::fs::read(
                dir.join("compacted/site=demo")
                    .join(day)
                    .join("_manifest.json"),
            )
            .unwrap(),
        )
        .unwrap();
        assert!(m["distinct_event_ids"].as_u64().unwrap() > 0);
    }
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.contains(" compacted: "))
            .count(),
        finished.len(),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("{} day(s) compacted", finished.len())));

    // AND a second run finds nothing to do
    let out = nectar(&["compact", "--data-dir", data]);
    assert!(
        text(&out.stdout).contains("0 day(s) compacted"),
        "{}",
        text(&out.stdout)
    );
    // AND one day on request reports it up to date
    let day = &compacted[0]["date=".len()..];
    let out = nectar(&[
        "compact",
        "--data-dir",
        data,
        "--site",
        "demo",
        "--date",
        day,
    ]);
    assert!(
        text(&out.stdout).contains("up_to_date"),
        "{}",
        text(&out.stdout)
    );

    // AND bad flags fail with a message naming the problem
    let out = nectar(&[
        "compact",
        "--data-dir",
        data,
        "--date",
        &today["date=".len()..],
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("not a finished UTC day"),
        "{}",
        text(&out.stderr)
    );
    let out = nectar(&["compact", "--data-dir", data, "--site", "nosuch"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("not in the config"));
    std::fs::remove_dir_all(&dir).unwrap();
}
