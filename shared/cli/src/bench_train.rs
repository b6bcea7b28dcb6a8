//! `nectar bench train`: generates a synthetic event log into a data dir, then times the real
//! train task on it (`run_task` on the embedded backends, the call `nectar train` makes).
//!
//! The events come from the model crate's seeded Zipf generator
//! ([`nectar_model::synthetic::SyntheticParams`]: item popularity and user activity each a
//! power law) with taste groups on top (half of a user's draws are shifted into their group's
//! slice of the catalogue, so the fit has structure to find and the holdout something to
//! score). They are written as flat PEACH events (`media_play`, some `media_end` and
//! `page_view`, plus 0.5 % re-deliveries of the same event for the dedupe) in the event-log
//! layout, one gzip JSON Lines file per hour; `--layout compacted` then runs the real
//! compaction over every day. Generation is timed apart and not part of the task's figures;
//! the peak RSS is the task's own (the high-water mark is reset once generation is freed).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{ensure, Context};
use bytes::Bytes;
use nectar_model::synthetic::SyntheticParams;
use nectar_platform::config::NectarConfig;
use nectar_platform::event_log::jsonl::gzip_lines;
use nectar_platform::event_log::layout::{event_object_key, Hour};
use nectar_platform::event_log::reader::TimeWindow;
use nectar_platform::model_store::LocalModelStore;
use nectar_platform::object_store::{LocalStore, ObjectStore};
use nectar_platform::registry::{LocalRegistry, RunRecord, RunStatus};
use nectar_platform::train::trainer::ModelTrainer;
use nectar_platform::train::{run_task, LogObserver, TrainDeps, TrainRequest, WindowChoice};
use rayon::prelude::*;
use serde_json::{json, Value};

const SITE: &str = "bench";
const TASK: &str = "als";
const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 86_400_000;
/// Taste groups: a user's group owns `1 / GROUPS` of the catalogue.
const GROUPS: u64 = 16;
/// One event in this many is written a second time (an SDK re-send after being offline).
const RESEND_EVERY: u64 = 200;
/// Hours generated and written at a time (memory holds one batch of gzip bodies).
const HOURS_PER_BATCH: usize = 24;

/// The event-log layouts the task can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Layout {
    /// Gzip JSON Lines per hour, as the archive function writes them.
    Raw,
    /// Every day compacted into Parquet by `nectar compact`'s code.
    Compacted,
}

impl Layout {
    fn as_str(self) -> &'static str {
        match self {
            Self::Raw => "raw",
            Self::Compacted => "compacted",
        }
    }
}

/// Flags of `nectar bench train`.
#[derive(Debug, Clone, clap::Args)]
pub struct TrainBenchArgs {
    /// Events to generate (lines of the log before re-deliveries).
    #[arg(long)]
    pub events: usize,
    /// Users; events / 20 when omitted.
    #[arg(long)]
    pub users: Option<usize>,
    /// Items; events / 200 when omitted.
    #[arg(long)]
    pub items: Option<usize>,
    /// How the log is stored when the task reads it.
    #[arg(long, value_enum, default_value = "raw")]
    pub layout: Layout,
    /// ALS latent factors.
    #[arg(long, default_value_t = 64)]
    pub factors: usize,
    /// ALS iterations.
    #[arg(long, default_value_t = 15)]
    pub iterations: usize,
    /// Days the events are spread over (the task's window).
    #[arg(long, default_value_t = 30)]
    pub days: u32,
    /// RNG seed of the events (and of the fit).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Generate into DIR and keep it (it must not hold an event log yet); a temporary
    /// directory, removed afterwards, when omitted.
    #[arg(long, value_name = "DIR")]
    pub keep: Option<PathBuf>,
}

/// What the generator wrote.
#[derive(Debug, Default, Clone, Copy)]
struct Written {
    lines: u64,
    resent: u64,
    files: u64,
    bytes: u64,
}

/// The event type of the `n`-th record: mostly plays, some completions and page views.
fn event_type(n: u64) -> &'static str {
    match mix(n) % 20 {
        0 | 1 => "media_end",
        2 => "page_view",
        _ => "media_play",
    }
}

/// A cheap, well-spread hash of a record number (splitmix64's finaliser).
fn mix(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One flat event as the collect service stores it.
fn event_line(user: u32, item: u32, ts: i64, n: u64) -> String {
    let (user, item, kind) = (format!("u{user}"), format!("m{item}"), event_type(n));
    let eid = nectar_model::event::event_id(SITE, &user, kind, &item, ts);
    format!(
        r#"{{"event_id":"{eid}","site_key":"{SITE}","type":"{kind}","id":"{item}","event_timestamp":{ts},"collect_timestamp":{ts},"sent_timestamp":{ts},"peach_schema_version":"1.0.3","user_id":"{user}","client":{{"id":"c{user}","app_id":"bench","type":"mobileapp"}}}}"#
    )
}

/// The records `(user, item, time, record number)`, sorted by time: the Zipf draws, half of
/// each user's shifted into their taste group's slice of the catalogue.
fn records(p: &SyntheticParams) -> anyhow::Result<Vec<(u32, u32, i64, u64)>> {
    let slice = (p.n_items as u64 / GROUPS).max(1);
    let mut out: Vec<(u32, u32, i64, u64)> = p
        .records()?
        .enumerate()
        .map(|(n, (u, i, t))| {
            let n = n as u64;
            let i = if mix(n ^ 0x5555) & 1 == 0 {
                ((u64::from(i) + (u64::from(u) % GROUPS) * slice) % p.n_items as u64) as u32
            } else {
                i
            };
            (u, i, t, n)
        })
        .collect();
    out.par_sort_unstable_by_key(|r| (r.2, r.3));
    Ok(out)
}

/// Writes the records as the event log: one gzip JSON Lines file per hour partition.
async fn write_log(
    store: &LocalStore,
    records: &[(u32, u32, i64, u64)],
) -> anyhow::Result<Written> {
    let mut hours: Vec<&[(u32, u32, i64, u64)]> = records
        .chunk_by(|a, b| a.2.div_euclid(HOUR_MS) == b.2.div_euclid(HOUR_MS))
        .collect();
    let mut w = Written::default();
    for batch in hours.chunks_mut(HOURS_PER_BATCH) {
        let files: Vec<(String, Vec<u8>, u64, u64)> = batch
            .par_iter()
            .map(|hour| {
                let mut lines = Vec::with_capacity(hour.len() + hour.len() / 100);
                let mut resent = 0;
                for &(u, i, t, n) in *hour {
                    let line = event_line(u, i, t, n);
                    if mix(n ^ 0xAAAA).is_multiple_of(RESEND_EVERY) {
                        lines.push(line.clone());
                        resent += 1;
                    }
                    lines.push(line);
                }
                let key = event_object_key(SITE, Hour::of(hour[0].2), "bench", "000000000000");
                let body = gzip_lines(lines.iter().map(String::as_str));
                (key, body, lines.len() as u64, resent)
            })
            .collect();
        for (key, body, lines, resent) in files {
            w.files += 1;
            w.bytes += body.len() as u64;
            w.lines += lines;
            w.resent += resent;
            store.put(&key, Bytes::from(body)).await?;
        }
    }
    Ok(w)
}

/// The task: ALS with the given params over the whole generated span, the platform's default
/// holdout and publishing.
fn config(a: &TrainBenchArgs) -> anyhow::Result<NectarConfig> {
    let toml = format!(
        "[sites.{SITE}.tasks.{TASK}]\nalgorithm = \"als\"\n\
         params = {{ factors = {}, iterations = {}, seed = {} }}\n\
         window = {{ days = {}, anchor = \"latest\" }}\n",
        a.factors, a.iterations, a.seed, a.days
    );
    Ok(NectarConfig::from_toml(&toml, "nectar bench train")?)
}

/// The process's resident set: (current, peak) in bytes, from `/proc/self/status`.
fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Resets the peak RSS to the current RSS (Linux `clear_refs` 5), so that the peak measured
/// afterwards is the task's, not the generator's; `false` when the kernel does not allow it.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn mib(b: u64) -> f64 {
    (b as f64 / 1_048_576.0 * 10.0).round() / 10.0
}

fn secs(ms: u64) -> f64 {
    ms as f64 / 1e3
}

/// The stage seconds of a run record, in stage order.
fn stages(run: &RunRecord) -> Value {
    let mut out = serde_json::Map::new();
    for stage in ["read", "split", "fit", "evaluate", "refit", "publish"] {
        if let Some(&ms) = run.durations_ms.get(stage) {
            out.insert(stage.into(), json!(secs(ms)));
        }
    }
    Value::Object(out)
}

/// Generates, runs the task, and returns the figures.
pub async fn run(a: &TrainBenchArgs) -> anyhow::Result<Value> {
    ensure!(a.events > 0, "--events must be at least 1");
    let users = a.users.unwrap_or((a.events / 20).max(1));
    let items = a.items.unwrap_or((a.events / 200).max(1));
    ensure!(
        users > 0 && items > 0,
        "--users and --items must be at least 1"
    );
    ensure!(a.days > 0, "--days must be at least 1");
    let cfg = config(a)?;
    let (dir, temporary) = match &a.keep {
        Some(d) => {
            ensure!(
                !d.join("events").exists(),
                "--keep {}: it already holds an event log; pass a new or empty directory",
                d.display()
            );
            (d.clone(), false)
        }
        None => (
            std::env::temp_dir().join(format!("nectar-bench-train-{}", rand::random::<u64>())),
            true,
        ),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let result = generate_and_train(a, &cfg, &dir, users, items).await;
    if temporary {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let mut out = result?;
    if !temporary {
        out["data_dir"] = json!(dir.display().to_string());
    }
    Ok(out)
}

async fn generate_and_train(
    a: &TrainBenchArgs,
    cfg: &NectarConfig,
    dir: &std::path::Path,
    users: usize,
    items: usize,
) -> anyhow::Result<Value> {
    let store = LocalStore::new(dir);
    // Finished days (compaction only takes those): the span ends at last midnight, UTC.
    let until_ms = nectar_platform::now_ms().div_euclid(DAY_MS) * DAY_MS;
    let span_ms = i64::from(a.days) * DAY_MS;
    let p = SyntheticParams {
        start_ms: until_ms - span_ms,
        span_ms,
        seed: a.seed,
        ..SyntheticParams::new(a.events, users, items)
    };
    let t = Instant::now();
    let recs = records(&p)?;
    let written = write_log(&store, &recs).await?;
    drop(recs);
    let generate_s = t.elapsed().as_secs_f64();
    let mut compact_s = None;
    if a.layout == Layout::Compacted {
        let t = Instant::now();
        let outcomes = nectar_platform::event_log::compact::compact_site(
            &store,
            &nectar_platform::privacy::NoErasures,
            SITE,
            Default::default(),
            nectar_platform::now_ms(),
        )
        .await
        .context("compacting the generated log")?;
        ensure!(!outcomes.is_empty(), "compaction compacted no day");
        compact_s = Some(t.elapsed().as_secs_f64());
    }

    let peak_reset = reset_peak_rss();
    let (rss_before, _) = rss();
    let models = LocalModelStore::new(dir);
    let registry = LocalRegistry::new(dir);
    let deps = TrainDeps {
        events: &store,
        models: &models,
        registry: &registry,
        trainer: &ModelTrainer,
        // Synthetic users: none was erased.
        erasures: &nectar_platform::privacy::NoErasures,
    };
    let req = TrainRequest {
        site: SITE.into(),
        task: TASK.into(),
        window: WindowChoice::Explicit(TimeWindow {
            since_ms: p.start_ms,
            until_ms,
        }),
    };
    let t = Instant::now();
    let run = run_task(cfg, &req, deps, &LogObserver, nectar_platform::now_ms()).await?;
    let task_s = t.elapsed().as_secs_f64();
    let (_, peak) = rss();
    ensure!(
        run.status == RunStatus::Published,
        "the task did not publish: {}",
        run.reason.as_deref().unwrap_or("no reason recorded")
    );
    let r3 = |x: f64| (x * 1000.0).round() / 1000.0;
    Ok(json!({
        "bench": "train",
        "what": "the train task (read, split, fit, evaluate, refit, publish) on a generated event log, through run_task on the embedded backends",
        "profile": super::bench::profile(),
        "threads": rayon::current_num_threads(),
        "events": a.events,
        "users": users,
        "items": items,
        "layout": a.layout.as_str(),
        "factors": a.factors,
        "iterations": a.iterations,
        "generated": {
            "lines": written.lines,
            "resent": written.resent,
            "files": written.files,
            "bytes": written.bytes,
            "seconds": r3(generate_s),
            "compact_seconds": compact_s.map(r3),
        },
        "task": {
            "version": run.version,
            "status": run.status.as_str(),
            "interactions": run.counts.interactions,
            "users": run.counts.users,
            "items": run.counts.items,
            "duplicates": run.counts.duplicates,
            "holdout_users_scored": run.counts.holdout_users_scored,
            "ndcg@10": run.metrics.get("ndcg@10"),
            "baseline_ndcg@10": run.baseline_metrics.as_ref().and_then(|m| m.get("ndcg@10")),
        },
        "stages_s": stages(&run),
        "total_s": r3(task_s),
        "peak_rss_mib": mib(peak),
        "rss_before_task_mib": mib(rss_before),
        "peak_rss_is_task_only": peak_reset,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_small_run_reports_every_stage_and_publishes() {
        for layout in [Layout::Raw, Layout::Compacted] {
            // GIVEN 20k events over 1,000 users and 200 items, kept in a dir
            let dir = std::env::temp_dir().join(format!("nectar-bt-{}", rand::random::<u64>()));
            let a = TrainBenchArgs {
                events: 20_000,
                users: Some(1_000),
                items: Some(200),
                layout,
                factors: 8,
                iterations: 3,
                days: 3,
                seed: 7,
                keep: Some(dir.clone()),
            };
            // WHEN the bench runs
            let v = run(&a).await.unwrap();
            // THEN the JSON has its shape, the task read what was generated (minus the
            // re-sends), and a version was published in the data dir
            assert_eq!(v["bench"], "train");
            assert_eq!(v["layout"], layout.as_str());
            assert_eq!(
                (v["events"].as_u64(), v["users"].as_u64()),
                (Some(20_000), Some(1_000))
            );
            let g = &v["generated"];
            assert_eq!(
                g["lines"].as_u64().unwrap(),
                20_000 + g["resent"].as_u64().unwrap()
            );
            assert!(g["resent"].as_u64().unwrap() > 0);
            let lines_read = v["task"]["interactions"].as_u64().unwrap();
            // page views are interactions too; every distinct event is one
            assert!(lines_read <= 20_000 && lines_read > 19_000, "{lines_read}");
            for stage in ["read", "split", "fit", "evaluate", "refit", "publish"] {
                assert!(
                    v["stages_s"][stage].as_f64().unwrap() >= 0.0,
                    "{stage}: {v}"
                );
            }
            assert!(v["total_s"].as_f64().unwrap() > 0.0);
            assert!(v["peak_rss_mib"].as_f64().unwrap() > 1.0);
            assert!(v["task"]["ndcg@10"].as_f64().unwrap() > 0.0);
            let version = v["task"]["version"].as_u64().unwrap();
            let current = std::fs::read_to_string(
                dir.join(format!("models/site={SITE}/model={TASK}/current")),
            )
            .unwrap();
            assert_eq!(current.trim(), version.to_string());
            // AND a second run into the same dir is refused (it holds an event log)
            assert!(run(&a).await.is_err());
            std::fs::remove_dir_all(dir).unwrap();
        }
    }

    #[test]
    fn the_same_seed_writes_the_same_records() {
        let p = SyntheticParams::new(5_000, 100, 50);
        let (a, b) = (records(&p).unwrap(), records(&p).unwrap());
        assert_eq!(a, b);
        assert!(a.windows(2).all(|w| w[0].2 <= w[1].2), "sorted by time");
    }
}
