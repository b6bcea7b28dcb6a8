//! `nectar train`: runs training tasks on the local event log into the local model store and
//! registry (the embedded twins of S3, Redis and DynamoDB), with a progress bar; `--bucket`,
//! `--redis` and `--registry-table` switch each to the real backend, like the train Lambda.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::backends::Backends;
use anyhow::{bail, Context};
use chrono::{NaiveDate, NaiveTime};
use indicatif::{ProgressBar, ProgressStyle};
use nectar_model::mapping::InteractionsView;
use nectar_platform::config::{Algorithm, Engine, NectarConfig};
use nectar_platform::event_log::reader::TimeWindow;
use nectar_platform::model_store::{AnyModelStore, ModelArtifacts};
use nectar_platform::privacy::LocalErasureLog;
use nectar_platform::registry::RunStatus;
use nectar_platform::train::artifacts;
use nectar_platform::train::trainer::ModelTrainer;
use nectar_platform::train::{
    run_task, TrainDeps, TrainError, TrainObserver, TrainRequest, WindowChoice,
};

use crate::demo::write_ratings;

/// Flags of `nectar train`.
#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// Data dir of the embedded backends (event log, models, registry).
    #[arg(long, env = "NECTAR_DATA_DIR", default_value = "./.nectar")]
    pub data_dir: PathBuf,
    /// The task to run; every task of the site(s) when omitted.
    #[arg(long)]
    pub task: Option<String>,
    /// The site; every site with the task when omitted.
    #[arg(long)]
    pub site: Option<String>,
    /// Window start: a date (UTC midnight) or an RFC 3339 time; overrides the task's window.
    #[arg(long)]
    pub since: Option<String>,
    /// Window end: a date (the whole day is included) or an RFC 3339 time (exclusive).
    #[arg(long)]
    pub until: Option<String>,
    /// Declarative config file; the embedded default when omitted.
    #[arg(long, env = "NECTAR_CONFIG")]
    pub config: Option<PathBuf>,
    /// Read the event log from this S3 bucket instead of the data dir.
    #[arg(long, env = "NECTAR_BUCKET")]
    pub bucket: Option<String>,
    /// Publish to this Redis (see the train Lambda's NECTAR_REDIS_URL) instead of the data dir.
    #[arg(long, env = "NECTAR_REDIS_URL")]
    pub redis: Option<String>,
    /// Record runs in this DynamoDB table instead of the data dir.
    #[arg(long, env = "NECTAR_REGISTRY_TABLE")]
    pub registry_table: Option<String>,
    /// Write the run's time split into DIR as `train.csv` and `test.csv` (the `nectar eval`
    /// input): `nectar eval` on them with the task's params reports the run's candidate
    /// metrics. Needs a single task.
    #[arg(long, value_name = "DIR")]
    pub export_split: Option<PathBuf>,
    /// Write the run's candidate (fitted on the older part of the split, the model the run's
    /// metrics score) into DIR in the artifact format: `nectar publish --artifacts DIR`
    /// scores it the same on the same holdout. Needs a single task.
    #[arg(long, value_name = "DIR")]
    pub export_artifacts: Option<PathBuf>,
    /// Write the runs' metrics (`train_runs`, nDCG@10 beside the baseline, stage seconds,
    /// interactions) to FILE in the Prometheus text format when done, for node_exporter's
    /// textfile collector (self-hosted schedules: cron + `nectar train`).
    #[arg(long, value_name = "FILE")]
    pub metrics_file: Option<PathBuf>,
}

/// Parses `--since/--until`: `YYYY-MM-DD` or RFC 3339. Dates as `--until` include the day.
pub(crate) fn parse_time(s: &str, is_until: bool) -> anyhow::Result<i64> {
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        let d = if is_until {
            d.succ_opt().context("date out of range")?
        } else {
            d
        };
        return Ok(d.and_time(NaiveTime::MIN).and_utc().timestamp_millis());
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .with_context(|| format!("{s:?} is neither YYYY-MM-DD nor an RFC 3339 time"))
}

struct Bar {
    bar: ProgressBar,
    /// `--export-artifacts` DIR and the manifest written with the candidate.
    export_artifacts: Option<(PathBuf, artifacts::Manifest)>,
    /// `--export-split` DIR, and what went wrong writing it.
    export: Option<PathBuf>,
    export_error: std::sync::Mutex<Option<anyhow::Error>>,
}

impl Bar {
    fn export(
        &self,
        dir: &Path,
        train: InteractionsView<'_>,
        test: InteractionsView<'_>,
    ) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("--export-split {}: cannot create it", dir.display()))?;
        let n_train = write_ratings(&dir.join("train.csv"), train)?;
        let n_test = write_ratings(&dir.join("test.csv"), test)?;
        self.bar.println(format!(
            "  split: {} (train.csv {n_train} rows, test.csv {n_test} rows)",
            dir.display()
        ));
        Ok(())
    }
}

impl TrainObserver for Bar {
    fn stage(&self, name: &str) {
        self.bar.set_position(0);
        self.bar.set_message(name.to_string());
    }
    fn progress(&self, fraction: f64) {
        self.bar
            .set_position((fraction.clamp(0.0, 1.0) * 1000.0) as u64);
    }
    fn split(&self, train: InteractionsView<'_>, test: InteractionsView<'_>) {
        if let Some(dir) = &self.export {
            if let Err(e) = self.export(dir, train, test) {
                *self.export_error.lock().expect("export lock") = Some(e);
            }
        }
    }
    fn candidate(&self, a: &ModelArtifacts) {
        if let Some((dir, manifest)) = &self.export_artifacts {
            let written = artifacts::encode(a, manifest)
                .map_err(anyhow::Error::new)
                .and_then(|files| {
                    std::fs::create_dir_all(dir)?;
                    for (name, body) in &files {
                        std::fs::write(dir.join(name), body)?;
                    }
                    Ok(files.len())
                });
            match written {
                Ok(n) => self
                    .bar
                    .println(format!("  candidate: {} ({n} files)", dir.display())),
                Err(e) => {
                    *self.export_error.lock().expect("export lock") =
                        Some(e.context(format!("--export-artifacts {}", dir.display())))
                }
            }
        }
    }
}

/// Runs the selected tasks; fails if any run failed.
pub async fn run(args: TrainArgs) -> anyhow::Result<()> {
    let metrics = match &args.metrics_file {
        Some(_) => Some(
            crate::dev::install_prometheus()
                .context("--metrics-file: another metrics recorder is installed")?,
        ),
        None => None,
    };
    let result = run_tasks(&args).await;
    if let (Some(path), Some(handle)) = (&args.metrics_file, &metrics) {
        // Atomic for the collector, which may read at any time.
        let tmp = path.with_extension("prom.tmp");
        std::fs::write(&tmp, handle.render())
            .and_then(|()| std::fs::rename(&tmp, path))
            .with_context(|| format!("--metrics-file {}", path.display()))?;
    }
    result
}

async fn run_tasks(args: &TrainArgs) -> anyhow::Result<()> {
    let cfg = NectarConfig::load(args.config.as_deref())?;
    let mut jobs = Vec::new();
    for (site, sc) in &cfg.sites {
        if args.site.as_ref().is_some_and(|s| s != site) {
            continue;
        }
        for (name, task) in &sc.tasks {
            if args.task.as_ref().is_none_or(|t| t == name) {
                if task.engine == Engine::Spark {
                    // Spark tasks are fitted past one machine; asking for one by name is a
                    // mistake to report, running "every task" just passes over it.
                    let why = spark_task_note(site, name);
                    if args.task.is_some() {
                        bail!("{why}");
                    }
                    eprintln!("skipped: {why}");
                    continue;
                }
                jobs.push((site.clone(), name.clone()));
            }
        }
    }
    if jobs.is_empty() {
        bail!(
            "no task matches (site {:?}, task {:?}) in the config",
            args.site.as_deref().unwrap_or("any"),
            args.task.as_deref().unwrap_or("any")
        );
    }
    if args.task.is_none() {
        // External tasks get their versions from `nectar publish`; training them all skips
        // them (naming one with --task says why it cannot).
        jobs.retain(|(site, task)| {
            let external = cfg
                .task(site, task)
                .is_some_and(|t| t.algorithm == Algorithm::External);
            if external {
                println!("{site}/{task}: external (versions come from nectar publish); skipped");
            }
            !external
        });
    }
    if (args.export_split.is_some() || args.export_artifacts.is_some()) && jobs.len() > 1 {
        bail!(
            "--export-split and --export-artifacts write one run's files: select a single task \
             with --task and --site ({} tasks match)",
            jobs.len()
        );
    }
    let now = nectar_platform::now_ms();
    let window = match (&args.since, &args.until) {
        (None, None) => None,
        (since, until) => {
            let until_ms = until
                .as_deref()
                .map(|u| parse_time(u, true))
                .transpose()?
                .unwrap_or(now);
            let since_ms = match since {
                Some(s) => parse_time(s, false)?,
                None => i64::MIN / 2,
            };
            if since_ms >= until_ms {
                bail!("--since must be before --until");
            }
            Some((since_ms, until_ms))
        }
    };
    let backends = Backends::new(&args.data_dir);
    let events = backends.events(args.bucket.as_deref()).await;
    let models = backends.models(args.redis.as_deref()).await?;
    let registry = backends.registry(args.registry_table.as_deref()).await;
    // The erasures `nectar forget` and `nectar dev` record in the data dir.
    let erasures = LocalErasureLog::new(&args.data_dir);
    let mut failed = 0;
    for (site, task) in jobs {
        let task_cfg = cfg.task(&site, &task).expect("listed from the config");
        let window = match window {
            None => WindowChoice::Configured,
            Some((s, u)) => WindowChoice::Explicit(TimeWindow {
                // Only --until given: the task's length back from it.
                since_ms: if s == i64::MIN / 2 {
                    u - i64::from(task_cfg.window.days) * 86_400_000
                } else {
                    s
                },
                until_ms: u,
            }),
        };
        let bar = ProgressBar::new(1000);
        bar.set_style(
            ProgressStyle::with_template("{prefix} {spinner} {msg:8} [{bar:30}] {elapsed}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix(format!("{site}/{task}"));
        bar.enable_steady_tick(Duration::from_millis(120));
        let req = TrainRequest {
            site: site.clone(),
            task: task.clone(),
            window,
        };
        let deps = TrainDeps {
            events: &events,
            erasures: &erasures,
            models: &models,
            registry: &registry,
            trainer: &ModelTrainer,
        };
        let observer = Bar {
            bar: bar.clone(),
            export: args.export_split.clone(),
            export_artifacts: args.export_artifacts.clone().map(|d| {
                let manifest = artifacts::Manifest {
                    format: artifacts::FORMAT.to_string(),
                    kind: if task_cfg.algorithm == Algorithm::Als {
                        artifacts::ArtifactKind::Factors
                    } else {
                        artifacts::ArtifactKind::List
                    },
                    algorithm: task_cfg.algorithm.as_str().to_string(),
                    params: serde_json::to_value(&task_cfg.params)
                        .ok()
                        .and_then(|v| v.as_object().cloned())
                        .unwrap_or_default(),
                    source: serde_json::Map::from_iter([
                        ("kind".to_string(), "nectar train".into()),
                        ("site".to_string(), site.clone().into()),
                        ("task".to_string(), task.clone().into()),
                    ]),
                };
                (d, manifest)
            }),
            export_error: std::sync::Mutex::new(None),
        };
        let result = run_task(&cfg, &req, deps, &observer, nectar_platform::now_ms()).await;
        bar.finish_and_clear();
        if let Some(e) = observer.export_error.lock().expect("export lock").take() {
            return Err(e);
        }
        match result {
            Ok(run) => {
                let metric = |m: Option<&std::collections::BTreeMap<String, f64>>| {
                    m.and_then(|m| m.get("ndcg@10"))
                        .map_or("-".to_string(), |v| format!("{v:.4}"))
                };
                println!(
                    "{site}/{task}: {} v{} ({} interactions, {} users, {} items; ndcg@10 {} vs current {}, popularity baseline {}; {} ms){}",
                    run.status.as_str(),
                    run.version,
                    run.counts.interactions,
                    run.counts.users,
                    run.counts.items,
                    metric(Some(&run.metrics)),
                    metric(run.current_metrics.as_ref()),
                    metric(run.baseline_metrics.as_ref()),
                    run.durations_ms.get("total").copied().unwrap_or(0),
                    run.reason.map(|r| format!(": {r}")).unwrap_or_default()
                );
                if run.counts.torn_members > 0 {
                    println!(
                        "  {} torn member{} skipped in the event log (a writer crashed mid-append; see the warnings for the files)",
                        run.counts.torn_members,
                        if run.counts.torn_members == 1 { "" } else { "s" }
                    );
                }
                if let (RunStatus::Published, AnyModelStore::Local(m)) = (run.status, &models) {
                    println!(
                        "  model: {}",
                        m.model_dir(&site, &task)
                            .join(format!("v{}", run.version))
                            .display()
                    );
                }
            }
            Err(e) => {
                failed += 1;
                let hint = no_data_hint(&e);
                eprintln!("{site}/{task}: failed: {:#}", anyhow::Error::new(e));
                if let Some(hint) = hint {
                    eprintln!("  {hint}");
                }
            }
        }
    }
    if failed > 0 {
        bail!("{failed} task(s) failed; the current models stay in place");
    }
    Ok(())
}

/// Why `nectar train` does not fit a task with `engine = "spark"`, and what trains it.
fn spark_task_note(site: &str, task: &str) -> String {
    format!(
        "{site}/{task} has engine = \"spark\": nectar train does not fit it. The PySpark job \
         jobs/spark/nectar_als.py trains it (on EMR Serverless by its schedule, or locally: see \
         README \"Spark\"), and its artifacts are published with \
         nectar publish --site {site} --task {task} --artifacts DIR"
    )
}

/// What to try when a window held nothing: most often the history is older than the window
/// (an import of past ratings), or nothing was collected yet.
fn no_data_hint(e: &TrainError) -> Option<&'static str> {
    match e {
        TrainError::NoData { window: None, .. } => Some(
            "hint: the site has no events yet: send some to POST /v1/collect (nectar dev) or \
             import a history (nectar import --csv FILE)",
        ),
        TrainError::NoData { .. } => Some(
            "hint: pick the window with --since/--until (dates, e.g. --since 1997-09-01 \
             --until 1998-05-01), or, for imported history, anchor the task's window at its \
             newest event: window = { days = N, anchor = \"latest\" } in a config file \
             (--config)",
        ),
        _ => None,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use bytes::Bytes;
    use nectar_model::algo::AlgoSpec;
    use nectar_platform::event_log::jsonl::gzip_lines;
    use nectar_platform::event_log::layout::{event_object_key, Hour};
    use nectar_platform::object_store::LocalStore;
    use nectar_platform::object_store::ObjectStore;
    use nectar_platform::registry::LocalRegistry;
    use nectar_platform::registry::Registry;

    /// Four taste groups of 10 items; every user plays about 7 items of their group and one
    /// other, at scattered times over ten days.
    pub(crate) async fn write_group_events(store: &LocalStore, site: &str) {
        let end = 1_795_132_800_000i64;
        let mut by_hour: std::collections::BTreeMap<Hour, Vec<String>> = Default::default();
        for u in 0..80i64 {
            let g = u % 4;
            let picks = (0..10)
                .filter(|j| (u * 31 + j * 17) % 10 < 7)
                .map(|j| g * 10 + j)
                .chain([(u * 7) % 40]);
            for (n, item) in picks.enumerate() {
                let ts =
                    end - 10 * 86_400_000 + ((u * 7919 + n as i64 * 104_729) % 14_400) * 60_000;
                let (id, user) = (format!("i{item}"), format!("u{u}"));
                let eid = nectar_model::event::event_id(site, &user, "media_play", &id, ts);
                by_hour.entry(Hour::of(ts)).or_default().push(format!(
                    r#"{{"event_id":"{eid}","site_key":"{site}","type":"media_play","id":"{id}","event_timestamp":{ts},"collect_timestamp":{ts},"sent_timestamp":{ts},"peach_schema_version":"1.0.3","client":{{"id":"{user}","app_id":"t"}}}}"#
                ));
            }
        }
        for (hour, lines) in by_hour {
            let body = gzip_lines(lines.iter().map(String::as_str));
            store
                .put(
                    &event_object_key(site, hour, "test", "1"),
                    Bytes::from(body),
                )
                .await
                .unwrap();
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn eval_on_the_exported_split_reports_the_run_records_candidate_metrics() {
        let dir = std::env::temp_dir().join(format!("nectar-split-{}", rand::random::<u64>()));
        let data = dir.join("data");
        write_group_events(&LocalStore::new(&data), "demo").await;
        let config = dir.join("nectar.toml");
        let common = "window = { days = 30, anchor = \"latest\" }\nholdout_fraction = 0.2\n";
        std::fs::write(
            &config,
            format!(
                "[sites.demo.tasks.als]\nalgorithm = \"als\"\nparams = {{ factors = 8, iterations = 4, seed = 7 }}\n{common}\
                 [sites.demo.tasks.knn]\nalgorithm = \"item_knn\"\nparams = {{ k = 10 }}\n{common}\
                 [sites.demo.tasks.pop]\nalgorithm = \"popular\"\n{common}"
            ),
        )
        .unwrap();
        let cfg = NectarConfig::load(Some(&config)).unwrap();
        for task in ["als", "knn", "pop"] {
            // GIVEN a task trained with --export-split
            let split = dir.join(task);
            run(TrainArgs {
                data_dir: data.clone(),
                task: Some(task.into()),
                site: Some("demo".into()),
                since: None,
                until: None,
                config: Some(config.clone()),
                bucket: None,
                redis: None,
                registry_table: None,
                export_split: Some(split.clone()),
                export_artifacts: None,
                metrics_file: None,
            })
            .await
            .unwrap();
            let recorded = LocalRegistry::new(&data)
                .runs("demo", task, 1)
                .await
                .unwrap()
                .remove(0);
            // WHEN nectar eval runs on the exported files with the task's params (and seed)
            let t = cfg.task("demo", task).unwrap();
            let spec = AlgoSpec::parse(t.algorithm.as_str(), &t.param_strings()).unwrap();
            let report = crate::eval::evaluate(
                &spec,
                &crate::eval::read_rows(&split.join("train.csv")).unwrap(),
                &crate::eval::read_rows(&split.join("test.csv")).unwrap(),
                10,
            )
            .unwrap();
            // THEN it scores the same users and reports the run's candidate nDCG@10
            let ndcg = recorded.metrics["ndcg@10"];
            assert!(ndcg > 0.0, "{task}: {ndcg}");
            assert_eq!(
                report.ranking.users_scored as f64, recorded.metrics["users_scored"],
                "{task}"
            );
            assert!(
                (report.ranking.ndcg - ndcg).abs() < 1e-9,
                "{task}: eval {} vs run {ndcg}",
                report.ranking.ndcg
            );
            assert!((report.ranking.map - recorded.metrics["map@10"]).abs() < 1e-9);
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn a_spark_task_is_refused_by_name_and_passed_over_otherwise() {
        // GIVEN a config with one spark task and no events
        let dir = std::env::temp_dir().join(format!("nectar-spark-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("nectar.toml");
        std::fs::write(
            &config,
            "[sites.s.tasks.big]\nalgorithm = \"als\"\nengine = \"spark\"\n",
        )
        .unwrap();
        let args = |task: Option<&str>| TrainArgs {
            data_dir: dir.join("data"),
            task: task.map(str::to_string),
            site: Some("s".into()),
            since: None,
            until: None,
            config: Some(config.clone()),
            bucket: None,
            redis: None,
            registry_table: None,
            export_split: None,
            export_artifacts: None,
            metrics_file: None,
        };
        // WHEN it is asked for by name THEN the refusal points at the job and at publish
        let e = format!("{:#}", run(args(Some("big"))).await.unwrap_err());
        assert!(
            e.contains("s/big has engine = \"spark\"")
                && e.contains("jobs/spark/nectar_als.py")
                && e.contains("nectar publish --site s --task big"),
            "{e}"
        );
        // WHEN every task is run THEN it is passed over, leaving nothing to run
        let e = format!("{:#}", run(args(None)).await.unwrap_err());
        assert!(e.contains("no task matches"), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn window_flags_parse_dates_and_times() {
        assert_eq!(parse_time("2026-11-22", false).unwrap(), 1_795_305_600_000);
        assert_eq!(
            parse_time("2026-11-22", true).unwrap(),
            1_795_305_600_000 + 86_400_000
        );
        assert_eq!(
            parse_time("2026-11-22T01:00:00Z", true).unwrap(),
            1_795_305_600_000 + 3_600_000
        );
        assert!(parse_time("yesterday", false).is_err());
    }
}
