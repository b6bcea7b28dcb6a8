//! `nectar demo` reports the intra-list diversity of the ALS lists served with and without the
//! `diversity` rule (issue 15, item 4), from the online report of its own served log.

use std::process::Command;

/// (diversity, [low, high], lists) of the demo's line starting with `label`.
fn figure(stdout: &str, label: &str) -> (f64, [f64; 2], u64) {
    let line = stdout
        .lines()
        .map(str::trim_start)
        .find(|l| l.starts_with(label))
        .unwrap_or_else(|| panic!("no line {label:?} in:\n{stdout}"));
    // "<label>   0.567 [0.553, 0.580] over 231 lists"
    let rest = line[label.len()..].trim();
    let nums: Vec<f64> = rest
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(nums.len(), 4, "{line}");
    (nums[0], [nums[1], nums[2]], nums[3] as u64)
}

#[test]
fn the_diversity_rule_raises_the_intra_list_diversity_the_demo_reports() {
    let dir = std::env::temp_dir().join(format!("nectar-cli-demo-div-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // WHEN the demo runs with 300 users
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nectar"));
    for (k, _) in std::env::vars() {
        if k.starts_with("NECTAR_") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    let out = cmd
        .args([
            "demo",
            "--no-serve",
            "--users",
            "300",
            "--seed",
            "3",
            "--data-dir",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    // THEN both figures come with their interval and sample size, and the lists served with
    // the rule are more diverse, beyond both intervals
    let (plain, plain_ci, plain_n) = figure(&stdout, "for-you / als (no rule)");
    let (diverse, diverse_ci, diverse_n) =
        figure(&stdout, "for-you-diverse (diversity lambda 0.3)");
    assert!(plain_n > 50 && diverse_n == 300, "{stdout}");
    assert!(plain_ci[0] <= plain && plain <= plain_ci[1]);
    assert!(diverse_ci[0] <= diverse && diverse <= diverse_ci[1]);
    assert!(
        diverse_ci[0] > plain_ci[1],
        "{plain} {plain_ci:?} vs {diverse} {diverse_ci:?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
