//! Black-box tests of the newcomer's path: the `nectar` binary run as a user runs it (no
//! terminal, output captured), `nectar demo` and `nectar dev` serving on a free port, and the
//! README's own collect example pasted against both.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

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

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("nectar-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run(cmd: &mut Command) -> (Output, String, String) {
    let out = cmd.output().expect("the binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A server started by the test; killed when dropped.
struct Server {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Server {
    fn start(cmd: &mut Command) -> Self {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the binary starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }

    /// Stdout lines up to and including the banner's last line (the items upsert command).
    fn banner(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut last = false;
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(300))
                .unwrap_or_else(|_| panic!("no complete banner; got:\n{}", out.join("\n")));
            let done = last;
            last = line.starts_with("  upsert catalogue items");
            out.push(line);
            if done {
                return out;
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The port of the banner's `listening on http://127.0.0.1:PORT` line.
fn bound_port(banner: &[String]) -> u16 {
    let l = banner
        .iter()
        .find(|l| l.starts_with("nectar dev listening on http://127.0.0.1:"))
        .expect("listening line");
    let rest = &l["nectar dev listening on http://127.0.0.1:".len()..];
    rest[..rest.find(' ').unwrap()].parse().unwrap()
}

fn bash(script: &str, cwd: &Path) -> String {
    let out = Command::new("bash")
        .arg("-c")
        .arg(script)
        .current_dir(cwd)
        .output()
        .expect("bash runs");
    assert!(out.status.success(), "{script}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The README's collect example (the bash block that posts to `/v1/collect`), as printed.
fn readme_collect_example() -> String {
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).unwrap();
    readme
        .split("```bash\n")
        .skip(1)
        .map(|b| &b[..b.find("```").unwrap()])
        .find(|b| b.contains("/v1/collect?s=demo") && b.contains("find "))
        .expect("a bash block with the collect example")
        .to_string()
}

/// Runs the README example in `cwd` against `port`, with the data dir the README names for
/// the server (`.nectar` for dev, `.nectar-demo` for demo), and checks it worked.
fn readme_example_works(cwd: &Path, port: u16, data: &str) {
    let example = readme_collect_example();
    assert!(example.contains("PORT=8080 DATA=.nectar "), "{example}");
    let script = example.replace(
        "PORT=8080 DATA=.nectar ",
        &format!("PORT={port} DATA={data} "),
    );
    let out = bash(&script, cwd);
    assert!(
        out.contains(" 202 ") && out.contains("{\"accepted\":1}"),
        "{out}"
    );
    assert!(
        out.lines().any(
            |l| l.starts_with(&format!("{data}/events/site=demo/")) && l.ends_with(".jsonl.gz")
        ),
        "{out}"
    );
}

#[test]
fn demo_without_a_terminal_prints_progress_no_colour_and_exports_offline_data() {
    // GIVEN no terminal (output captured), WHEN the demo runs with --export
    let dir = scratch("demo-export");
    let (data, export) = (dir.join("data"), dir.join("export"));
    let (out, stdout, stderr) = run(nectar()
        .args(["demo", "--no-serve", "--users", "40", "--seed", "3"])
        .arg("--data-dir")
        .arg(&data)
        .arg("--export")
        .arg(&export));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    // THEN it prints plain progress lines, no ANSI escapes, and no log line repeating the
    // tables (the published versions, the loaded models)
    assert!(stderr.contains("collect: 40/40 users, "), "{stderr}");
    assert!(stderr.contains("collect: 4/40 users, "), "{stderr}");
    for text in [&stdout, &stderr] {
        assert!(!text.contains('\u{1b}'), "{text}");
        assert!(!text.contains("Published model."), "{text}");
        assert!(!text.contains("Loaded model version."), "{text}");
    }
    assert!(stdout.contains("  als "), "{stdout}");
    assert!(data.join(".nectar-demo-data-dir").is_file());

    // AND the export feeds `nectar eval` (finite metrics, no duplicate-row warning) ...
    for f in ["train.csv", "test.csv", "items.csv"] {
        assert!(export.join(f).is_file(), "{f}");
    }
    let (out, stdout, stderr) = run(nectar()
        .args(["eval", "--algo", "item_knn", "--json", "--train"])
        .arg(export.join("train.csv"))
        .arg("--test")
        .arg(export.join("test.csv")));
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
    let m: Value = serde_json::from_str(&stdout).unwrap();
    for k in ["precision@10", "recall@10", "ndcg@10"] {
        let v = m[k].as_f64().unwrap();
        assert!(v.is_finite() && (0.0..=1.0).contains(&v), "{k}: {m}");
    }
    assert!(m["users_scored"].as_u64().unwrap() > 0, "{m}");
    // ... and `nectar import --items` (the catalogue, 600 programmes)
    let imported = dir.join("imported");
    let (out, stdout, stderr) = run(nectar()
        .args(["import", "--site", "demo", "--items"])
        .arg(export.join("items.csv"))
        .arg("--data-dir")
        .arg(&imported));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let catalog = std::fs::read_to_string(imported.join("catalog/site=demo/items.jsonl")).unwrap();
    assert_eq!(catalog.lines().count(), 600, "{stdout}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn demo_refuses_a_data_dir_it_did_not_create() {
    // GIVEN a non-empty directory the demo did not create
    let dir = scratch("demo-foreign");
    std::fs::write(dir.join("notes.txt"), "keep me").unwrap();
    // WHEN the demo is pointed at it
    let (out, _, stderr) = run(nectar()
        .args(["demo", "--no-serve", "--users", "1", "--data-dir"])
        .arg(&dir));
    // THEN it fails naming the flag, and the file is still there
    assert!(!out.status.success());
    assert!(
        stderr.contains("--data-dir ") && stderr.contains("not created by nectar demo"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("notes.txt")).unwrap(),
        "keep me"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn demo_banner_curl_lines_answer_with_real_ids_and_the_readme_example_works() {
    // GIVEN the demo serving on a free port, run from a fresh directory (default data dir)
    let cwd = scratch("demo-serve");
    let server = Server::start(
        nectar()
            .args([
                "demo",
                "--users",
                "40",
                "--seed",
                "5",
                "--addr",
                "127.0.0.1:0",
            ])
            .current_dir(&cwd),
    );
    let banner = server.banner();
    let text = banner.join("\n");
    // THEN the banner names the port actually bound, and no placeholder ids
    let port = bound_port(&banner);
    assert_ne!(port, 0);
    assert!(!text.contains("USER") && !text.contains("=ITEM"), "{text}");
    let curls: Vec<&str> = banner
        .iter()
        .map(|l| l.trim())
        .filter(|l| l.starts_with("curl '"))
        .collect();
    assert_eq!(curls.len(), 2, "{text}");
    let data = cwd.join(".nectar-demo");
    // Recent histories: the append-only log, and the snapshot it is folded into as it grows.
    let history = ["history.jsonl", "history.json"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(data.join("models/site=demo").join(f)).ok())
        .collect::<String>();
    let catalog = std::fs::read_to_string(data.join("catalog/site=demo/items.jsonl")).unwrap();
    for line in curls {
        assert!(
            line.contains(&format!("http://127.0.0.1:{port}/")),
            "{line}"
        );
        let url = &line["curl '".len()..line.len() - 1];
        let query = &url[url.find('?').unwrap() + 1..];
        let param = |k: &str| {
            query
                .split('&')
                .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
                .map(str::to_string)
        };
        // AND each line, pasted as is, gets a list from a trained model
        let answer: Value = serde_json::from_str(&bash(line, &cwd)).unwrap();
        assert!(
            !answer["items"].as_array().unwrap().is_empty(),
            "{line}: {answer}"
        );
        assert_eq!(answer["fallback"], false, "{line}: {answer}");
        // AND its id is in the data: the user has a recorded history, the item is catalogued
        if let Some(user) = param("user_id") {
            assert!(history.contains(&format!("\"{user}\"")), "{user}");
        } else {
            let item = param("item_id").unwrap();
            assert!(catalog.contains(&format!("\"id\":\"{item}\"")), "{item}");
        }
    }
    // AND the README's collect example works against it with the demo's data dir
    readme_example_works(&cwd, port, ".nectar-demo");
    drop(server);
    std::fs::remove_dir_all(&cwd).unwrap();
}

#[test]
fn readme_collect_example_works_against_nectar_dev() {
    // GIVEN nectar dev on a free port with its default data dir, and no data yet
    let cwd = scratch("dev-serve");
    let server = Server::start(
        nectar()
            .args(["dev", "--addr", "127.0.0.1:0"])
            .current_dir(&cwd),
    );
    let banner = server.banner();
    let text = banner.join("\n");
    // THEN the banner says which ids its lines use when there are no events
    assert!(text.contains("user_id=cookie-1&n=10'"), "{text}");
    // AND the README example, pasted with the port, is accepted and lands in the data dir
    readme_example_works(&cwd, bound_port(&banner), ".nectar");
    drop(server);
    std::fs::remove_dir_all(&cwd).unwrap();
}

#[test]
fn help_lists_only_commands_that_exist() {
    // GIVEN `nectar --help`
    let (out, stdout, _) = run(nectar().arg("--help"));
    assert!(out.status.success());
    let commands: Vec<&str> = stdout
        .split("Commands:\n")
        .nth(1)
        .unwrap()
        .lines()
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(commands.contains(&"bench"), "{stdout}");
    // THEN every command it lists, and every one the description names, answers --help
    let about = stdout.lines().next().unwrap();
    for c in &commands {
        let (out, _, stderr) = run(nectar().args([c, "--help"]));
        assert!(out.status.success(), "{c}: {stderr}");
    }
    for word in ["demo", "import", "train", "eval", "bench", "dev"] {
        if about.contains(word) {
            assert!(commands.contains(&word), "{about}");
        }
    }
}

#[test]
fn bench_commands_print_their_figures_as_json() {
    // WHEN the collect benchmark runs on a small payload THEN its JSON has the figures
    let (out, stdout, stderr) =
        run(nectar().args(["bench", "collect", "--events", "50", "--iterations", "3"]));
    assert!(out.status.success(), "{stderr}");
    let v: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["bench"], "collect");
    assert_eq!(v["events"], 50);
    assert!(v["payload_bytes"].as_u64().unwrap() > 1000, "{v}");
    assert!(v["events_per_second"].as_f64().unwrap() > 0.0, "{v}");
    for k in ["p50", "p99", "max", "mean"] {
        assert!(v["latency_us"][k].as_f64().unwrap() > 0.0, "{k}: {v}");
    }
    // WHEN top-k runs below and above the quantisation threshold THEN each says its method
    for (items, method) in [("2000", "exact f32 scan"), ("20000", "2-bit scan")] {
        let (out, stdout, stderr) = run(nectar().args([
            "bench",
            "topk",
            "--items",
            items,
            "--dim",
            "8",
            "--exclude",
            "10",
            "--queries",
            "5",
        ]));
        assert!(out.status.success(), "{stderr}");
        let v: Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(v["bench"], "topk");
        assert_eq!(v["items"].as_u64().unwrap().to_string(), items);
        assert_eq!(
            (v["dim"].clone(), v["exclude"].clone(), v["n"].clone()),
            (8.into(), 10.into(), 10.into())
        );
        assert!(v["method"].as_str().unwrap().starts_with(method), "{v}");
        assert!(v["latency_us"]["p99"].as_f64().unwrap() > 0.0, "{v}");
    }
    // AND bad sizes are refused, naming the flag
    let (out, _, stderr) = run(nectar().args(["bench", "collect", "--events", "5000"]));
    assert!(
        !out.status.success() && stderr.contains("--events"),
        "{stderr}"
    );
}

#[test]
fn train_with_an_empty_window_names_it_and_suggests_what_to_do() {
    // GIVEN a data dir with no events
    let dir = scratch("train-empty");
    // WHEN a task with an explicit window is trained
    let (out, _, stderr) = run(nectar()
        .args(["train", "--site", "demo", "--task", "trending"])
        .args(["--since", "1998-01-01", "--until", "1998-01-31"])
        .arg("--data-dir")
        .arg(&dir));
    // THEN it fails naming the window in dates and the ways to pick another one
    assert!(!out.status.success());
    assert!(
        stderr
            .contains("no interactions in the window [1998-01-01T00:00:00Z, 1998-02-01T00:00:00Z)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("--since/--until") && stderr.contains("anchor = \"latest\""),
        "{stderr}"
    );
    // AND with the configured window (90 days back from now) it names that one
    let (_, _, stderr) = run(nectar()
        .args(["train", "--site", "demo", "--task", "als", "--data-dir"])
        .arg(&dir));
    assert!(stderr.contains("(90 days back from now;"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn config_check_names_unknown_keys_by_dotted_path_and_line() {
    // GIVEN a config with an unknown key in a task, on line 5
    let dir = scratch("config-check");
    let file = dir.join("nectar.toml");
    std::fs::write(
        &file,
        "[sites.demo]\nname = \"Demo\"\n\n[sites.demo.tasks.als]\nbogus = 1\nalgorithm = \"als\"\n",
    )
    .unwrap();
    // WHEN checked THEN the error names `sites.demo.tasks.als.bogus` and its line
    let (out, _, stderr) = run(nectar().args(["config", "check"]).arg(&file));
    assert!(!out.status.success());
    assert!(
        stderr.contains("sites.demo.tasks.als.bogus: unknown field `bogus`"),
        "{stderr}"
    );
    assert!(stderr.contains("(line 5, column 1)"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn gitignore_covers_the_default_data_dirs() {
    // GIVEN the repository's .gitignore WHEN git is asked about the CLI's default data dirs,
    // at the root and wherever the CLI may be run from THEN they are ignored
    let root = workspace_root();
    if !root.join(".git").exists() {
        return; // a source tarball: no git to ask
    }
    let out = Command::new("git")
        .arg("-C")
        .arg(&root)
        .args([
            "check-ignore",
            "--no-index",
            ".nectar/events/x.jsonl.gz",
            ".nectar-demo/models/current",
            "shared/cli/.nectar/keys.txt",
        ])
        .output();
    let Ok(out) = out else { return }; // no git installed
    let listed = String::from_utf8_lossy(&out.stdout);
    assert_eq!(listed.lines().count(), 3, "{listed}");
}
