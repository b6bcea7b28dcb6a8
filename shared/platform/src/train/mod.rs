//! The train service: event log → interactions → time holdout → candidate fit → evaluation
//! (candidate and current version on the same holdout) → quality gate → refit on the whole
//! window → publish → registry record.
//!
//! [`publish_artifacts`] runs the same stages, minus the fits, on a version made outside
//! Nectar ([`artifacts`]: the artifact format), and records its `source`.
//!
//! Failures leave the current model in place; every run, including refused and failed ones,
//! is recorded in the registry with its cause.
//!
//! ## The algorithm seam
//! The service is written against [`Trainer`]: `fit(task, view) -> ModelArtifacts`. The
//! [`InteractionsView`] holds deduplicated rows sorted by time, with users and items interned
//! (`u32` rows into shared id tables, which may also list ids that have no rows in this view);
//! the trainer builds its own matrix (the model crate's `Interactions`), reads `task.params`
//! by name, and fills the artifacts it
//! has: item factors and user factors (ALS/MF), the `popular` list (popular/trending),
//! `similar` lists (item_knn, and ALS item–item cosine for `more-like-this`), optionally
//! `user_top` lists (length `task.publish.top_n`, `task.publish.similar_n`).
//! [`crate::train::trainer::ModelTrainer`] runs the model crate's algorithms.
//!
//! Evaluation does not go through the trainer: [`Holdout`] ranks from the artifacts through
//! the serving model and the one ranker (`nectar_model::rank`), with the warm-only protocol
//! of `nectar eval`, so the candidate, the published version and what is served are ranked
//! identically. The metadata of a published version carries the algorithm's typed params
//! (`spec`), which serving's fold-in uses.

use std::collections::BTreeMap;
use std::time::Instant;

use nectar_model::mapping::InteractionsView;

use crate::config::{Algorithm, Anchor, NectarConfig, TaskConfig};
use crate::event_log::reader::{latest_event_end_ms, read_window, TimeWindow};
use crate::model_store::{ModelArtifacts, ModelStore, ModelStoreError, PublishOptions};
use crate::object_store::{ObjectStore, StoreError};
use crate::privacy::ErasureSource;
use crate::recommend::LoadedModel;
use crate::registry::{DataCounts, Registry, RegistryError, RunRecord, RunStatus, WindowRecord};

/// The cut-off of the ranking metrics.
pub const K: usize = 10;
/// The gate compares this metric.
pub const GATE_METRIC: &str = "ndcg@10";
pub mod artifacts;
pub mod holdout;
pub mod offline;
mod publish;
mod stages;
pub mod trainer;

pub use holdout::{metrics_map, Holdout};
pub use nectar_model::evaluation::MAX_EVAL_USERS;
#[cfg(any(test, feature = "testkit"))]
pub use publish::contract as publish_contract;
pub use publish::{publish_artifacts, PublishRequest};
/// The gate needs at least this many scored users on events the current version has not
/// seen; with fewer it is skipped (and the run says so).
pub const MIN_GATE_USERS: usize = 10;
/// Event-log files read at once.
pub const READ_CONCURRENCY: usize = 32;
const DAY_MS: i64 = 86_400_000;

/// Why a trainer could not fit.
#[derive(Debug, thiserror::Error)]
pub enum TrainerError {
    /// The trainer does not implement this algorithm.
    #[error("algorithm {0} is not available in this build")]
    Unsupported(Algorithm),
    /// A parameter is invalid for the algorithm.
    #[error("invalid parameter {name}: {problem}")]
    InvalidParam {
        /// The parameter.
        name: String,
        /// What is wrong.
        problem: String,
    },
    /// The fit failed.
    #[error("fit failed")]
    Fit(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The algorithm seam (see the module docs).
pub trait Trainer: Send + Sync {
    /// Fits `task.algorithm` with `task.params` on time-sorted, deduplicated interactions.
    /// `progress` takes the fraction done (0..=1) for progress bars on long fits.
    fn fit(
        &self,
        task: &TaskConfig,
        data: InteractionsView<'_>,
        progress: &dyn Fn(f64),
    ) -> Result<ModelArtifacts, TrainerError>;

    /// Fits the whole window after `candidate` was fitted on its older part (the refit of a
    /// run): a trainer may start from the candidate (ALS warm-starts from its factors). By
    /// default it fits from scratch.
    fn refit(
        &self,
        task: &TaskConfig,
        data: InteractionsView<'_>,
        candidate: &ModelArtifacts,
        progress: &dyn Fn(f64),
    ) -> Result<ModelArtifacts, TrainerError> {
        let _ = candidate;
        self.fit(task, data, progress)
    }
}

/// Which window to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowChoice {
    /// The task's configured window (`days` back from its anchor).
    Configured,
    /// Explicit bounds (`nectar train --since/--until`).
    Explicit(TimeWindow),
}

/// What to train.
#[derive(Debug, Clone)]
pub struct TrainRequest {
    /// Site key.
    pub site: String,
    /// Task name.
    pub task: String,
    /// Window.
    pub window: WindowChoice,
}

/// Stage and progress reports, for progress bars and logs.
pub trait TrainObserver: Send + Sync {
    /// A stage starts (`read`, `fit`, `evaluate`, `refit`, `publish`).
    fn stage(&self, name: &str);
    /// Fraction of the current stage done.
    fn progress(&self, fraction: f64);
    /// The time split the candidate is fitted and evaluated on (`nectar train
    /// --export-split` writes it out); called once per run that splits.
    fn split(&self, _train: InteractionsView<'_>, _test: InteractionsView<'_>) {}
    /// The candidate fitted on the older part of the split, before it is scored (`nectar
    /// train --export-artifacts` writes it in the artifact format).
    fn candidate(&self, _artifacts: &ModelArtifacts) {}
}

/// An observer that only logs stages.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogObserver;

impl TrainObserver for LogObserver {
    fn stage(&self, name: &str) {
        tracing::debug!(stage = name, "Training stage.");
    }
    fn progress(&self, _fraction: f64) {}
}

/// The train service's backends.
#[derive(Debug)]
pub struct TrainDeps<'a, O, M, R, T, E> {
    /// The event log.
    pub events: &'a O,
    /// The erased subjects, read at the start of a run: their events are not trained on.
    pub erasures: &'a E,
    /// The model store.
    pub models: &'a M,
    /// The registry.
    pub registry: &'a R,
    /// The algorithms.
    pub trainer: &'a T,
}

#[cfg(any(test, feature = "testkit"))]
impl<'a, O, M, R, T, E> TrainDeps<'a, O, M, R, T, E> {
    /// The same stores and erasures with other algorithms (contract tests train a store
    /// with several trainers in turn).
    pub fn with_trainer<U>(&self, trainer: &'a U) -> TrainDeps<'a, O, M, R, U, E> {
        TrainDeps {
            events: self.events,
            erasures: self.erasures,
            models: self.models,
            registry: self.registry,
            trainer,
        }
    }
}

/// Why a run failed (the current model stays in place).
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The site or task is not in the config.
    #[error("no task {task:?} for site {site:?} in the config")]
    UnknownTask {
        /// Site key.
        site: String,
        /// Task name.
        task: String,
    },
    /// The task's versions come from outside (`algorithm = "external"`): it has no fit, and
    /// `nectar publish` gives it versions.
    #[error(
        "task {task:?} of site {site:?} is external (algorithm = \"external\"): it has no fit; \
         publish its versions with nectar publish --site {site} --task {task} --artifacts DIR"
    )]
    External {
        /// Site key.
        site: String,
        /// Task name.
        task: String,
    },
    /// The window holds no interactions.
    #[error("{}", no_data_message(*events, window.as_ref()))]
    NoData {
        /// Lines read.
        events: u64,
        /// The window read; `None` when it is anchored at the newest event and the site has
        /// none.
        window: Option<WindowRecord>,
    },
    /// Reading the event log failed.
    #[error(transparent)]
    Events(#[from] StoreError),
    /// The model store failed.
    #[error(transparent)]
    Models(#[from] ModelStoreError),
    /// The registry failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The algorithm failed.
    #[error(transparent)]
    Trainer(#[from] TrainerError),
    /// Reading the erased subjects failed (nothing was trained on).
    #[error(transparent)]
    Erasures(#[from] crate::privacy::ErasureLogError),
}

/// Names the window in dates, so that an empty run says where it looked.
fn no_data_message(events: u64, window: Option<&WindowRecord>) -> String {
    let Some(w) = window else {
        return "no events for the site in the event log (the window is anchored at the newest \
                event)"
            .to_string();
    };
    let at = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms).map_or_else(
            || ms.to_string(),
            |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        )
    };
    let how = match w.anchor.as_str() {
        "explicit" => "--since/--until".to_string(),
        a => format!("{} days back from {a}", w.days),
    };
    format!(
        "no interactions in the window [{}, {}) ({how}; {events} event lines read)",
        at(w.since_ms),
        at(w.until_ms)
    )
}

impl TrainError {
    /// A stable code (the Lambda `errorType`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownTask { .. } => "UnknownTask",
            Self::External { .. } => "ExternalTask",
            Self::NoData { .. } => "NoData",
            Self::Events(_) => "EventLogError",
            Self::Models(_) => "ModelStoreError",
            Self::Registry(_) => "RegistryError",
            Self::Trainer(_) => "TrainerError",
            Self::Erasures(_) => "ErasureLogError",
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

fn run_cpu<R>(f: impl FnOnce() -> R) -> R {
    // Fits are CPU bound: keep the runtime's other tasks moving when it has worker threads.
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

fn ms_since(t: Instant) -> u64 {
    t.elapsed().as_millis() as u64
}

/// The run's metrics (`train_runs`, nDCG@10 beside the baseline's, stage durations,
/// interactions), emitted once per run whatever its outcome.
fn emit_run_metrics(run: &RunRecord) {
    use crate::observe::names::{self, dim};
    let (site, task) = (run.site.clone(), run.task.clone());
    let status = match run.status {
        RunStatus::Published => "published",
        RunStatus::Refused => "refused",
        RunStatus::Failed => "failed",
    };
    metrics::counter!(names::TRAIN_RUNS,
        dim::SITE => site.clone(), dim::TASK => task.clone(), dim::STATUS => status)
    .increment(1);
    if let Some(n) = run.metrics.get(GATE_METRIC) {
        metrics::gauge!(names::TRAIN_NDCG_AT_10, dim::SITE => site.clone(), dim::TASK => task.clone())
            .set(*n);
    }
    if let Some(n) = run
        .baseline_metrics
        .as_ref()
        .and_then(|m| m.get(GATE_METRIC))
    {
        metrics::gauge!(names::TRAIN_BASELINE_NDCG_AT_10,
            dim::SITE => site.clone(), dim::TASK => task.clone())
        .set(*n);
    }
    for (stage, ms) in &run.durations_ms {
        metrics::gauge!(names::TRAIN_STAGE_SECONDS,
            dim::SITE => site.clone(), dim::TASK => task.clone(), dim::STAGE => stage.clone())
        .set(*ms as f64 / 1e3);
    }
    metrics::gauge!(names::TRAIN_INTERACTIONS, dim::SITE => site, dim::TASK => task)
        .set(run.counts.interactions as f64);
}

/// Runs one training task; see the module docs. Returns the run's record (published or
/// refused); a failed run is recorded and returned as the error.
#[tracing::instrument(skip_all, fields(site = %req.site, task = %req.task))]
pub async fn run_task<O, M, R, T, E>(
    cfg: &NectarConfig,
    req: &TrainRequest,
    deps: TrainDeps<'_, O, M, R, T, E>,
    observer: &dyn TrainObserver,
    now_ms: i64,
) -> Result<RunRecord, TrainError>
where
    O: ObjectStore,
    M: ModelStore,
    R: Registry,
    T: Trainer,
    E: ErasureSource,
{
    let (task, weights) = task_of(cfg, &req.site, &req.task)?;
    if task.algorithm == Algorithm::External {
        return Err(TrainError::External {
            site: req.site.clone(),
            task: req.task.clone(),
        });
    }
    let current = deps.models.current_version(&req.site, &req.task).await?;
    let mut run = new_run(&req.site, &req.task, task, current, now_ms);
    let started = Instant::now();
    let ctx = stages::Stages {
        req,
        task,
        weights: &weights,
        deps: &deps,
        observer,
        now_ms,
        current,
    };
    let result = ctx.run(&mut run).await;
    finish_run(deps.registry, run, result, started, now_ms).await
}

/// The task's config and its site's event weights.
fn task_of<'c>(
    cfg: &'c NectarConfig,
    site: &str,
    task: &str,
) -> Result<(&'c TaskConfig, nectar_model::mapping::EventWeights), TrainError> {
    let site_cfg = cfg.site(site);
    let t = site_cfg
        .and_then(|s| s.tasks.get(task))
        .ok_or_else(|| TrainError::UnknownTask {
            site: site.to_string(),
            task: task.to_string(),
        })?;
    Ok((t, site_cfg.map(|s| s.weights()).unwrap_or_default()))
}

/// A run's record before its stages: failed until they say otherwise; its version is the
/// run's start, above the current version.
fn new_run(
    site: &str,
    task_name: &str,
    task: &TaskConfig,
    current: Option<u64>,
    now_ms: i64,
) -> RunRecord {
    RunRecord {
        site: site.to_string(),
        task: task_name.to_string(),
        version: (now_ms.max(0) as u64).max(current.map_or(0, |c| c + 1)),
        algorithm: task.algorithm.as_str().to_string(),
        params: serde_json::to_value(&task.params).expect("params serialise"),
        window: WindowRecord::default(),
        counts: DataCounts::default(),
        metrics: BTreeMap::new(),
        compared_with: current,
        current_metrics: None,
        gate_metrics: None,
        gate: None,
        baseline_metrics: None,
        durations_ms: BTreeMap::new(),
        status: RunStatus::Failed,
        reason: None,
        refit_on_full_window: false,
        started_ms: now_ms,
        finished_ms: now_ms,
        source: None,
    }
}

/// Times, emits and records a run whatever its outcome; a failed run is returned as its
/// error (after it is recorded).
async fn finish_run<R: Registry>(
    registry: &R,
    mut run: RunRecord,
    result: Result<(), TrainError>,
    started: Instant,
    now_ms: i64,
) -> Result<RunRecord, TrainError> {
    let version = run.version;
    run.durations_ms.insert("total".into(), ms_since(started));
    run.finished_ms = now_ms + ms_since(started) as i64;
    if result.is_err() {
        run.status = RunStatus::Failed;
    }
    emit_run_metrics(&run);
    match result {
        Ok(()) => {
            registry.record(&run).await?;
            match run.status {
                RunStatus::Published => tracing::info!(
                    version,
                    interactions = run.counts.interactions,
                    ndcg = run.metrics.get(GATE_METRIC).copied(),
                    "Published model."
                ),
                _ => tracing::warn!(
                    version,
                    reason = run.reason.as_deref().unwrap_or(""),
                    "Quality gate refused the candidate; the current model stays."
                ),
            }
            Ok(run)
        }
        Err(e) => {
            run.reason = Some(error_chain(&e));
            tracing::error!(
                version,
                error = run.reason.as_deref().unwrap_or(""),
                "Training failed; the current model stays."
            );
            if let Err(re) = registry.record(&run).await {
                tracing::error!(error = %error_chain(&re), "Could not record the failed run.");
            }
            Err(e)
        }
    }
}

/// End-to-end checks of the service, run on the local backends (unit tests) and on S3, Redis
/// and DynamoDB (`tests/tests/train_s3.rs`).
#[cfg(any(test, feature = "testkit"))]
pub mod contract {
    use super::*;
    use crate::event_log::jsonl::gzip_lines;
    use crate::event_log::layout::{event_object_key, Hour};
    use crate::event_log::reader::contract::event_line;
    use crate::model_store::Scored;
    use crate::privacy::NoErasures;
    use crate::train::trainer::ModelTrainer;
    use bytes::Bytes;
    use std::collections::HashMap;

    /// A config with one site `site` and a `popular` task `pop` (window 30 days back from the
    /// newest event, holdout 20 %).
    pub fn config(site: &str) -> NectarConfig {
        NectarConfig::from_toml(
            &format!(
                "[sites.{site}.tasks.pop]\nalgorithm = \"popular\"\nwindow = {{ days = 30, anchor = \"latest\" }}\n\
                 holdout_fraction = 0.2\npublish = {{ top_n = 50, keep_versions = 2 }}\n"
            ),
            "test",
        )
        .expect("test config")
    }

    /// The end of the ten days of events of [`write_events`].
    pub const T0: i64 = 1_795_132_800_000;

    /// Writes a log where item `i<j>` (j in 0..20) is played by users `0..(40 - 2j)` at
    /// scattered times over the ten days before [`T0`], so popularity decreases with j.
    pub async fn write_events<O: ObjectStore>(store: &O, site: &str) -> usize {
        write_events_before(store, site, T0, 0).await
    }

    /// [`write_events`] for the ten days before `end_ms`, user `u` renamed `(u + shift) % 40`
    /// (so that users meet items they have not played yet).
    pub async fn write_events_before<O: ObjectStore>(
        store: &O,
        site: &str,
        end_ms: i64,
        shift: i64,
    ) -> usize {
        let mut by_hour: BTreeMap<Hour, Vec<String>> = BTreeMap::new();
        let mut n = 0;
        for j in 0..20i64 {
            for u in 0..(40 - 2 * j) {
                let minute = (u * 7919 + j * 104_729) % (10 * 24 * 60);
                let ts = end_ms - 10 * DAY_MS + minute * 60_000;
                by_hour.entry(Hour::of(ts)).or_default().push(event_line(
                    site,
                    "media_play",
                    &format!("i{j}"),
                    &format!("u{}", (u + shift) % 40),
                    ts,
                ));
                n += 1;
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
        n
    }

    /// A trainer that ranks popularity backwards: a worse model for the gate.
    #[derive(Debug, Default)]
    pub struct BackwardsTrainer;

    impl Trainer for BackwardsTrainer {
        fn fit(
            &self,
            task: &TaskConfig,
            data: InteractionsView<'_>,
            progress: &dyn Fn(f64),
        ) -> Result<ModelArtifacts, TrainerError> {
            let mut a = ModelTrainer.fit(task, data, progress)?;
            let mut all: Vec<Scored> = (0..a.item_ids.len() as u32).map(|r| (r, 0.0)).collect();
            let pos: HashMap<u32, f32> = a.popular.iter().copied().collect();
            all.sort_by(|x, y| pos[&x.0].total_cmp(&pos[&y.0]));
            a.popular = all;
            Ok(a)
        }
    }

    /// A trainer that always fails.
    #[derive(Debug, Default)]
    pub struct FailingTrainer;

    impl Trainer for FailingTrainer {
        fn fit(
            &self,
            _: &TaskConfig,
            _: InteractionsView<'_>,
            _: &dyn Fn(f64),
        ) -> Result<ModelArtifacts, TrainerError> {
            Err(TrainerError::Fit("out of memory (test)".into()))
        }
    }

    /// Publish, refuse, fail: the whole flow on the given backends.
    pub async fn train_flow_contract<O, M, R>(events: &O, models: &M, registry: &R)
    where
        O: ObjectStore,
        M: ModelStore,
        R: Registry,
    {
        let site = format!("t{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff);
        let cfg = config(&site);
        let written = write_events(events, &site).await;
        let req = TrainRequest {
            site: site.clone(),
            task: "pop".into(),
            window: WindowChoice::Configured,
        };
        let now = T0 + 5 * DAY_MS;
        // WHEN the task first runs THEN the popularity model is published, refit on all data
        let stores = TrainDeps {
            events,
            erasures: &NoErasures,
            models,
            registry,
            trainer: &ModelTrainer,
        };
        let run = run_task(
            &cfg,
            &req,
            stores.with_trainer(&ModelTrainer),
            &LogObserver,
            now,
        )
        .await
        .unwrap();
        assert_eq!(run.status, RunStatus::Published, "{:?}", run.reason);
        assert!(run.refit_on_full_window);
        assert_eq!(run.counts.interactions as usize, written);
        assert_eq!(run.counts.items, 20);
        assert_eq!(run.counts.users, 40);
        assert_eq!(run.window.anchor, "latest");
        assert_eq!(
            run.counts.holdout_interactions as usize,
            (written as f64 * 0.2).floor() as usize
        );
        assert!(run.counts.holdout_users_scored > 0);
        let ndcg = run.metrics[GATE_METRIC];
        assert!(ndcg > 0.0 && ndcg <= 1.0, "{ndcg}");
        assert_eq!(run.compared_with, None);
        let v1 = run.version;
        assert_eq!(
            models.current_version(&site, "pop").await.unwrap(),
            Some(v1)
        );
        let items = models.load_items(&site, "pop", v1).await.unwrap().unwrap();
        let top: Vec<&str> = items
            .popular
            .iter()
            .take(3)
            .map(|&(r, _)| items.item_ids[r as usize].as_str())
            .collect();
        assert_eq!(top, vec!["i0", "i1", "i2"]);
        assert_eq!(items.popular[0].1, 40.0, "refit on the whole window");
        assert_eq!(items.metadata["version"], v1);

        // WHEN ten more days of events arrive and a worse candidate is trained THEN the gate
        // compares both on the held-out events v1 has not seen, refuses, and v1 stays current
        let more = write_events_before(events, &site, T0 + 10 * DAY_MS, 20).await;
        let run = run_task(
            &cfg,
            &req,
            stores.with_trainer(&BackwardsTrainer),
            &LogObserver,
            now + 1,
        )
        .await
        .unwrap();
        assert_eq!(run.counts.interactions as usize, written + more);
        assert!(
            run.gate.as_deref().unwrap().starts_with("compared with"),
            "{:?}",
            run.gate
        );
        assert_eq!(run.status, RunStatus::Refused, "{:?}", run.gate);
        assert_eq!(run.compared_with, Some(v1));
        let cur = run.current_metrics.as_ref().unwrap()[GATE_METRIC];
        assert!(cur > 0.0);
        assert!(run.gate_metrics.as_ref().unwrap()[GATE_METRIC] < cur * 0.95);
        assert!(run.reason.as_deref().unwrap().contains(GATE_METRIC));
        assert_eq!(
            models.current_version(&site, "pop").await.unwrap(),
            Some(v1)
        );

        // WHEN the fit fails THEN the run is recorded as failed with its cause, v1 stays
        let err = run_task(
            &cfg,
            &req,
            stores.with_trainer(&FailingTrainer),
            &LogObserver,
            now + 2,
        )
        .await
        .unwrap_err();
        assert_eq!(err.code(), "TrainerError");
        assert_eq!(
            models.current_version(&site, "pop").await.unwrap(),
            Some(v1)
        );

        // WHEN a model as good as v1 is trained THEN it passes the gate and is published
        let run = run_task(
            &cfg,
            &req,
            stores.with_trainer(&ModelTrainer),
            &LogObserver,
            now + 3,
        )
        .await
        .unwrap();
        assert_eq!(run.status, RunStatus::Published, "{:?}", run.reason);
        assert!(run.version > v1);
        let v2 = run.version;
        assert_eq!(
            models.current_version(&site, "pop").await.unwrap(),
            Some(v2)
        );

        // WHEN nothing new arrived THEN the current version has seen the whole holdout: the
        // gate is skipped (and says so) rather than favour it
        let run = run_task(
            &cfg,
            &req,
            stores.with_trainer(&ModelTrainer),
            &LogObserver,
            now + 4,
        )
        .await
        .unwrap();
        assert!(
            run.gate.as_deref().unwrap().starts_with("skipped"),
            "{:?}",
            run.gate
        );
        assert_eq!(run.current_metrics, None);
        assert_eq!(run.status, RunStatus::Published);
        assert_eq!(run.compared_with, Some(v2));

        let runs = registry.runs(&site, "pop", 10).await.unwrap();
        let statuses: Vec<RunStatus> = runs.iter().map(|r| r.status).collect();
        assert_eq!(
            statuses,
            vec![
                RunStatus::Published,
                RunStatus::Published,
                RunStatus::Failed,
                RunStatus::Refused,
                RunStatus::Published
            ]
        );
        assert!(runs[2]
            .reason
            .as_deref()
            .unwrap()
            .contains("out of memory (test)"));
        let published = registry.published(&site, "pop", 2).await.unwrap();
        assert_eq!(published[1].version, v2);

        // an unknown task and an empty site fail clearly
        let deps = TrainDeps {
            events,
            erasures: &NoErasures,
            models,
            registry,
            trainer: &ModelTrainer,
        };
        let bad = TrainRequest {
            task: "nope".into(),
            ..req.clone()
        };
        assert_eq!(
            run_task(&cfg, &bad, deps, &LogObserver, now)
                .await
                .unwrap_err()
                .code(),
            "UnknownTask"
        );
        let empty_cfg = config("empty-site");
        let deps = TrainDeps {
            events,
            erasures: &NoErasures,
            models,
            registry,
            trainer: &ModelTrainer,
        };
        let empty = TrainRequest {
            site: "empty-site".into(),
            ..req.clone()
        };
        let e = run_task(&empty_cfg, &empty, deps, &LogObserver, now)
            .await
            .unwrap_err();
        assert_eq!(e.code(), "NoData");
        // (anchored at the newest event, and there is none: it says so)
        assert!(e.to_string().contains("no events for the site"), "{e}");
        // AND with an explicit window the message names it in dates
        let w = TimeWindow {
            since_ms: T0 - 2 * DAY_MS,
            until_ms: T0 - DAY_MS,
        };
        let deps = TrainDeps {
            events,
            erasures: &NoErasures,
            models,
            registry,
            trainer: &ModelTrainer,
        };
        let e = run_task(
            &empty_cfg,
            &TrainRequest {
                window: WindowChoice::Explicit(w),
                ..empty
            },
            deps,
            &LogObserver,
            now,
        )
        .await
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "no interactions in the window [2026-11-18T00:00:00Z, 2026-11-19T00:00:00Z) \
             (--since/--until; 0 event lines read)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::privacy::NoErasures;
    use crate::train::trainer::ModelTrainer;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_torn_member_in_the_log_is_skipped_and_counted_in_the_run_record() {
        use crate::event_log::jsonl::gzip_lines;
        use crate::event_log::reader::contract::event_line;
        use crate::object_store::ObjectStore;
        use crate::registry::Registry;
        use bytes::Bytes;
        use contract::T0;
        let dir = std::env::temp_dir().join(format!("nectar-train-{}", rand::random::<u64>()));
        let (events, registry) = (
            crate::object_store::LocalStore::new(&dir),
            crate::registry::LocalRegistry::new(&dir),
        );
        // GIVEN the test log, one of whose files holds a torn member before a valid one
        let written = contract::write_events(&events, "demo").await;
        let key = events.list("events/site=demo/").await.unwrap()[0].clone();
        let mut body = events.get(&key).await.unwrap().unwrap().to_vec();
        let extra = event_line("demo", "media_play", "i0", "u39", T0 - DAY_MS);
        let torn =
            gzip_lines([event_line("demo", "media_play", "lost", "u1", T0 - DAY_MS).as_str()]);
        body.extend_from_slice(&torn[..torn.len() / 2]);
        body.extend(gzip_lines([extra.as_str()]));
        events.put(&key, Bytes::from(body)).await.unwrap();
        // WHEN the task runs
        let deps = TrainDeps {
            events: &events,
            erasures: &NoErasures,
            models: &crate::model_store::LocalModelStore::new(&dir),
            registry: &registry,
            trainer: &ModelTrainer,
        };
        let req = TrainRequest {
            site: "demo".into(),
            task: "pop".into(),
            window: WindowChoice::Configured,
        };
        let run = run_task(&contract::config("demo"), &req, deps, &LogObserver, T0)
            .await
            .unwrap();
        // THEN the member after the torn one is read, and the torn one is counted and recorded
        assert_eq!(run.counts.interactions as usize, written + 1);
        assert_eq!(run.counts.torn_members, 1);
        let recorded = registry.runs("demo", "pop", 1).await.unwrap();
        assert_eq!(recorded[0].counts.torn_members, 1);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn serving_folds_in_with_the_params_training_used() {
        use crate::model_store::{LocalModelStore, ModelStore};
        use nectar_model::algo::als::AlsParams;
        let dir = std::env::temp_dir().join(format!("nectar-train-{}", rand::random::<u64>()));
        let (events, models, registry) = (
            crate::object_store::LocalStore::new(&dir),
            LocalModelStore::new(&dir),
            crate::registry::LocalRegistry::new(&dir),
        );
        contract::write_events(&events, "demo").await;
        // GIVEN an ALS task that leaves `regularization` unset (training's default is 20)
        let cfg = NectarConfig::from_toml(
            "[sites.demo.tasks.als]\nalgorithm = \"als\"\nparams = { factors = 4, iterations = 2 }\n\
             window = { days = 30, anchor = \"latest\" }\n",
            "test",
        )
        .unwrap();
        let req = TrainRequest {
            site: "demo".into(),
            task: "als".into(),
            window: WindowChoice::Configured,
        };
        let deps = TrainDeps {
            events: &events,
            erasures: &NoErasures,
            models: &models,
            registry: &registry,
            trainer: &ModelTrainer,
        };
        // WHEN it is trained, published and loaded for serving
        let run = run_task(&cfg, &req, deps, &LogObserver, contract::T0)
            .await
            .unwrap();
        let items = models
            .load_items("demo", "als", run.version)
            .await
            .unwrap()
            .unwrap();
        let expected = AlsParams::new().factors(4).iterations(2).check().unwrap();
        assert_eq!(items.metadata["spec"]["Als"], serde_json::json!(expected));
        let served = crate::recommend::LoadedModel::new("als", items.clone());
        // THEN fold-in uses training's default λ, and folds exactly as training's params do
        let fold = served.fold_in().unwrap();
        assert_eq!(fold.regularization(), 20.0);
        let f = items.item_factors.as_ref().unwrap();
        let by_training = expected.fold_in_model(f.dim, f.data.clone()).unwrap();
        assert_eq!(
            fold.fold_in(&[(0, 1.0), (3, 1.0)]).unwrap(),
            by_training.fold_in(&[(0, 1.0), (3, 1.0)]).unwrap()
        );
        // AND a version published before the spec was stored reads its algorithm and params,
        // and without params takes the algorithm's defaults (not numbers of serving's own)
        let mut old = items.clone();
        old.metadata = serde_json::json!({"algorithm": "als", "params": {"regularization": 0.5}});
        let m = crate::recommend::LoadedModel::new("als", old.clone());
        assert_eq!(m.fold_in().unwrap().regularization(), 0.5);
        old.metadata = serde_json::json!({"params": {}});
        let m = crate::recommend::LoadedModel::new("als", old);
        assert_eq!(m.fold_in().unwrap().regularization(), 20.0);
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// The train flow contract on the local stores of a fresh data dir.
    async fn local_train_flow() {
        let dir = std::env::temp_dir().join(format!("nectar-train-{}", rand::random::<u64>()));
        contract::train_flow_contract(
            &crate::object_store::LocalStore::new(&dir),
            &crate::model_store::LocalModelStore::new(&dir),
            &crate::registry::LocalRegistry::new(&dir),
        )
        .await;
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn the_flow_runs_in_turn_on_a_runtime_without_worker_threads() {
        // GIVEN a current-thread runtime (no block_in_place): evaluation and refit in turn
        local_train_flow().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn local_train_flow_publishes_refuses_and_fails_safely() {
        local_train_flow().await;
    }
}
