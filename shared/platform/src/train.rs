//! The train service: event log → interactions → time holdout → candidate fit → evaluation
//! (candidate and current version on the same holdout) → quality gate → refit on the whole
//! window → publish → registry record.
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
//! Evaluation does not go through the trainer: [`ArtifactScorer`] ranks from the artifacts
//! (user·item dot products, else the user's list, else the popular list, the user's training
//! items excluded), so the candidate and the published version are scored identically.
//! [`BuiltinTrainer`] implements `popular` and `trending`; the real algorithms plug in by
//! implementing [`Trainer`] over the model crate.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

use nectar_model::mapping::InteractionsView;

use crate::config::{Algorithm, Anchor, NectarConfig, TaskConfig};
use crate::model_store::{
    Factors, ModelArtifacts, ModelItems, ModelStore, ModelStoreError, PublishOptions, Scored,
    UserState,
};
use crate::reader::{latest_event_end_ms, read_window, TimeWindow};
use crate::registry::{DataCounts, Registry, RegistryError, RunRecord, RunStatus, WindowRecord};
use crate::store::{ObjectStore, StoreError};

/// The cut-off of the ranking metrics.
pub const K: usize = 10;
/// The gate compares this metric.
pub const GATE_METRIC: &str = "ndcg@10";
/// At most this many holdout users are scored (deterministically chosen), to bound the
/// evaluation time on large windows.
pub const MAX_EVAL_USERS: usize = 5_000;
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
}

/// Popularity (`popular`: interaction counts) and time-decayed popularity (`trending`:
/// weights halved every `half_life_hours`, default 24, before the newest interaction): a
/// dependency-free trainer for tests; [`crate::trainers::ModelTrainer`] runs the model
/// crate's algorithms.
#[derive(Debug, Clone, Copy, Default)]
pub struct BuiltinTrainer;

impl Trainer for BuiltinTrainer {
    fn fit(
        &self,
        task: &TaskConfig,
        data: InteractionsView<'_>,
        progress: &dyn Fn(f64),
    ) -> Result<ModelArtifacts, TrainerError> {
        let half_life_ms = match task.algorithm {
            Algorithm::Popular => None,
            Algorithm::Trending => {
                let hours = task.param_f64("half_life_hours").unwrap_or(24.0);
                if hours <= 0.0 {
                    return Err(TrainerError::InvalidParam {
                        name: "half_life_hours".into(),
                        problem: "must be positive".into(),
                    });
                }
                Some(hours * 3_600_000.0)
            }
            other => return Err(TrainerError::Unsupported(other)),
        };
        let newest = data.rows.iter().map(|r| r.timestamp_ms).max().unwrap_or(0);
        let mut scores = vec![0f64; data.items.len()];
        let mut present = vec![false; data.items.len()];
        for (n, r) in data.rows.iter().enumerate() {
            scores[r.item as usize] += match half_life_ms {
                None => 1.0,
                Some(h) => 0.5f64.powf((newest - r.timestamp_ms) as f64 / h),
            };
            present[r.item as usize] = true;
            if n % 100_000 == 0 {
                progress(n as f64 / data.rows.len() as f64);
            }
        }
        // Only items with interactions in this view are part of the model.
        let rows: Vec<usize> = (0..data.items.len()).filter(|&i| present[i]).collect();
        let item_ids: Vec<String> = rows.iter().map(|&i| data.items[i].clone()).collect();
        let scores: Vec<f64> = rows.iter().map(|&i| scores[i]).collect();
        let mut order: Vec<usize> = (0..item_ids.len()).collect();
        // Ties go to the lower item id (refeval's most-popular).
        order.sort_by(|&a, &b| {
            scores[b]
                .total_cmp(&scores[a])
                .then_with(|| item_ids[a].cmp(&item_ids[b]))
        });
        let popular: Vec<Scored> = order
            .iter()
            .take(task.publish.top_n)
            .map(|&r| (r as u32, scores[r] as f32))
            .collect();
        progress(1.0);
        Ok(ModelArtifacts {
            item_ids,
            popular,
            ..ModelArtifacts::default()
        })
    }
}

/// Ranks items for users from published artifacts: `user · item` scores when both factor
/// vectors exist, else the user's precomputed list, else the popular list; items in `exclude`
/// never come back.
#[derive(Debug, Clone)]
pub struct ArtifactScorer {
    item_ids: Vec<String>,
    item_rows: HashMap<String, u32>,
    item_factors: Option<Factors>,
    popular: Vec<Scored>,
    similar: Option<Vec<Vec<Scored>>>,
    users: HashMap<String, UserState>,
}

impl ArtifactScorer {
    /// From in-memory artifacts (the candidate), for every user of the artifacts.
    pub fn from_artifacts(a: &ModelArtifacts) -> Self {
        Self::for_users(a, None)
    }

    /// From in-memory artifacts, keeping per-user data only for `only` (when given): scoring
    /// a few thousand holdout users of a model with a million users copies little.
    pub fn for_users(a: &ModelArtifacts, only: Option<&HashSet<&str>>) -> Self {
        let mut users = HashMap::new();
        for (r, u) in a.user_ids.iter().enumerate() {
            if only.is_some_and(|o| !o.contains(u.as_str())) {
                continue;
            }
            users.insert(
                u.clone(),
                UserState {
                    factors: a.user_factors.as_ref().map(|f| f.row(r).to_vec()),
                    top: a.user_top.as_ref().map(|t| t[r].clone()),
                    history: Vec::new(),
                },
            );
        }
        Self {
            item_rows: rows_of(&a.item_ids),
            item_ids: a.item_ids.clone(),
            item_factors: a.item_factors.clone(),
            popular: a.popular.clone(),
            similar: a.similar.clone(),
            users,
        }
    }

    /// From a stored version and the states of the users to score.
    pub fn from_store(items: ModelItems, users: HashMap<String, UserState>) -> Self {
        Self {
            item_rows: rows_of(&items.item_ids),
            item_ids: items.item_ids,
            item_factors: items.item_factors,
            popular: items.popular,
            similar: items.similar,
            users,
        }
    }

    /// The top `k` item ids for `user`, whose past items are `history` (never returned):
    /// by factors when the user has a vector, else the user's list, else by summed
    /// similarities to the history (item-to-item models), else the popular list.
    pub fn recommend(&self, user: &str, history: &HashSet<&str>, k: usize) -> Vec<String> {
        let exclude = history;
        let state = self.users.get(user);
        if let (Some(f), Some(u)) = (&self.item_factors, state.and_then(|s| s.factors.as_ref())) {
            if u.len() == f.dim && f.rows() > 0 {
                // gemv and top-k run in the optimised ndarray / model crates.
                let v = ndarray::ArrayView2::from_shape((f.rows(), f.dim), &f.data)
                    .expect("factors are rows × dim");
                let mut scores = v.dot(&ndarray::ArrayView1::from(u.as_slice())).to_vec();
                for h in history {
                    if let Some(&r) = self.item_rows.get(*h) {
                        scores[r as usize] = f32::NEG_INFINITY;
                    }
                }
                return nectar_model::topk::top_k(&scores, k, nectar_model::topk::Exclude::None)
                    .into_iter()
                    .map(|(r, _)| self.item_ids[r as usize].clone())
                    .collect();
            }
        }
        if let Some(top) = state
            .and_then(|s| s.top.as_deref())
            .filter(|l| !l.is_empty())
        {
            return self.take_from_list(top, exclude, k, Vec::new());
        }
        if let Some(similar) = &self.similar {
            let mut scores: HashMap<u32, f32> = HashMap::new();
            for h in history {
                if let Some(&r) = self.item_rows.get(*h) {
                    for &(j, s) in &similar[r as usize] {
                        *scores.entry(j).or_default() += s;
                    }
                }
            }
            let mut scored: Vec<(u32, f32)> = scores
                .into_iter()
                .filter(|&(j, _)| !exclude.contains(self.item_ids[j as usize].as_str()))
                .collect();
            scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            scored.truncate(k);
            let recs: Vec<String> = scored
                .into_iter()
                .map(|(j, _)| self.item_ids[j as usize].clone())
                .collect();
            // Short lists are topped up from the popular list.
            return self.take_from_list(&self.popular, exclude, k, recs);
        }
        self.take_from_list(&self.popular, exclude, k, Vec::new())
    }

    fn take_from_list(
        &self,
        list: &[Scored],
        exclude: &HashSet<&str>,
        k: usize,
        mut out: Vec<String>,
    ) -> Vec<String> {
        for &(r, _) in list {
            if out.len() >= k {
                break;
            }
            let id = self.item_ids[r as usize].as_str();
            if !exclude.contains(id) && !out.iter().any(|o| o == id) {
                out.push(id.to_string());
            }
        }
        out
    }
}

fn rows_of(ids: &[String]) -> HashMap<String, u32> {
    ids.iter()
        .enumerate()
        .map(|(r, id)| (id.clone(), r as u32))
        .collect()
}

/// A holdout prepared for scoring: per scored user, the training items to exclude and the
/// warm held-out items (user and item both seen in training), as refeval §4 defines them.
#[derive(Debug, Clone, Default)]
pub struct Holdout {
    users: Vec<(String, HashSet<String>, HashSet<String>)>,
    train_items: usize,
}

impl Holdout {
    /// Builds the holdout from the split.
    pub fn new(train: InteractionsView<'_>, test: InteractionsView<'_>) -> Self {
        // Flags over the interned rows keep this linear and light on tens of millions of rows.
        let mut train_user = vec![false; train.users.len()];
        let mut train_item = vec![false; train.items.len()];
        for r in train.rows {
            train_user[r.user as usize] = true;
            train_item[r.item as usize] = true;
        }
        let warm = |r: &&nectar_model::mapping::Row| {
            train_user[r.user as usize] && train_item[r.item as usize]
        };
        let mut scored = vec![false; train.users.len()];
        let mut candidates: Vec<u32> = Vec::new();
        for r in test.rows.iter().filter(warm) {
            if !scored[r.user as usize] {
                scored[r.user as usize] = true;
                candidates.push(r.user);
            }
        }
        // Deterministic subsample of large holdouts: every n-th user in id order.
        candidates.sort_by(|a, b| train.users[*a as usize].cmp(&train.users[*b as usize]));
        let step = candidates.len().div_ceil(MAX_EVAL_USERS).max(1);
        scored.iter_mut().for_each(|s| *s = false);
        let chosen: Vec<u32> = candidates.into_iter().step_by(step).collect();
        for &u in &chosen {
            scored[u as usize] = true;
        }
        let mut seen: HashMap<u32, HashSet<u32>> = HashMap::new();
        for r in train.rows.iter().filter(|r| scored[r.user as usize]) {
            seen.entry(r.user).or_default().insert(r.item);
        }
        let mut truth: HashMap<u32, HashSet<u32>> = HashMap::new();
        for r in test
            .rows
            .iter()
            .filter(warm)
            .filter(|r| scored[r.user as usize])
        {
            truth.entry(r.user).or_default().insert(r.item);
        }
        let ids = |set: Option<&HashSet<u32>>| -> HashSet<String> {
            set.into_iter()
                .flatten()
                .map(|&i| train.items[i as usize].clone())
                .collect()
        };
        let users = chosen
            .iter()
            .map(|u| {
                (
                    train.users[*u as usize].clone(),
                    ids(seen.get(u)),
                    ids(truth.get(u)),
                )
            })
            .collect();
        Self {
            users,
            train_items: train_item.iter().filter(|&&b| b).count(),
        }
    }

    /// Users scored.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether no user can be scored.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// A scorer over in-memory artifacts holding only this holdout's users.
    pub fn scorer(&self, a: &ModelArtifacts) -> ArtifactScorer {
        let only: HashSet<&str> = self.users.iter().map(|(u, _, _)| u.as_str()).collect();
        ArtifactScorer::for_users(a, Some(&only))
    }

    /// The users scored.
    pub fn user_ids(&self) -> Vec<String> {
        self.users.iter().map(|(u, _, _)| u.clone()).collect()
    }

    /// precision@10, recall@10, ndcg@10, map@10, hr@10, coverage@10 (refeval §4).
    pub fn evaluate(&self, scorer: &ArtifactScorer) -> BTreeMap<String, f64> {
        use rayon::prelude::*;
        // Users are scored in parallel (a gemv over the catalog each), summed in order.
        let per_user: Vec<([f64; 5], Vec<String>)> = self
            .users
            .par_iter()
            .map(|(u, excl, truth)| {
                let ex: HashSet<&str> = excl.iter().map(String::as_str).collect();
                let recs = scorer.recommend(u, &ex, K);
                let mut hits = 0usize;
                let (mut dcg, mut ap) = (0f64, 0f64);
                for (i, r) in recs.iter().enumerate() {
                    if truth.contains(r) {
                        hits += 1;
                        dcg += 1.0 / ((i + 2) as f64).log2();
                        ap += hits as f64 / (i + 1) as f64;
                    }
                }
                let ideal = truth.len().min(K);
                let idcg: f64 = (0..ideal).map(|i| 1.0 / ((i + 2) as f64).log2()).sum();
                let m = [
                    hits as f64 / K as f64,
                    hits as f64 / truth.len() as f64,
                    dcg / idcg,
                    ap / ideal as f64,
                    f64::from(u8::from(hits > 0)),
                ];
                (m, recs)
            })
            .collect();
        let mut sums = [0f64; 5];
        let mut covered: HashSet<String> = HashSet::new();
        for (m, recs) in per_user {
            for (s, x) in sums.iter_mut().zip(m) {
                *s += x;
            }
            covered.extend(recs);
        }
        let n = self.users.len().max(1) as f64;
        let mut m = BTreeMap::new();
        for (name, s) in ["precision@10", "recall@10", "ndcg@10", "map@10", "hr@10"]
            .iter()
            .zip(sums)
        {
            m.insert((*name).to_string(), s / n);
        }
        m.insert(
            "coverage@10".into(),
            covered.len() as f64 / self.train_items.max(1) as f64,
        );
        m.insert("users_scored".into(), self.users.len() as f64);
        m
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
pub struct TrainDeps<'a, O, M, R, T> {
    /// The event log.
    pub events: &'a O,
    /// The model store.
    pub models: &'a M,
    /// The registry.
    pub registry: &'a R,
    /// The algorithms.
    pub trainer: &'a T,
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
            Self::NoData { .. } => "NoData",
            Self::Events(_) => "EventLogError",
            Self::Models(_) => "ModelStoreError",
            Self::Registry(_) => "RegistryError",
            Self::Trainer(_) => "TrainerError",
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

/// Runs one training task; see the module docs. Returns the run's record (published or
/// refused); a failed run is recorded and returned as the error.
#[tracing::instrument(skip_all, fields(site = %req.site, task = %req.task))]
pub async fn run_task<O, M, R, T>(
    cfg: &NectarConfig,
    req: &TrainRequest,
    deps: TrainDeps<'_, O, M, R, T>,
    observer: &dyn TrainObserver,
    now_ms: i64,
) -> Result<RunRecord, TrainError>
where
    O: ObjectStore,
    M: ModelStore,
    R: Registry,
    T: Trainer,
{
    let site_cfg = cfg.site(&req.site);
    let task = site_cfg
        .and_then(|s| s.tasks.get(&req.task))
        .ok_or_else(|| TrainError::UnknownTask {
            site: req.site.clone(),
            task: req.task.clone(),
        })?;
    let weights = site_cfg.map(|s| s.weights()).unwrap_or_default();
    let current = deps.models.current_version(&req.site, &req.task).await?;
    let version = (now_ms.max(0) as u64).max(current.map_or(0, |c| c + 1));
    let mut run = RunRecord {
        site: req.site.clone(),
        task: req.task.clone(),
        version,
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
    };
    let started = Instant::now();
    let result = run_stages(
        req, task, &weights, &deps, observer, now_ms, current, &mut run,
    )
    .await;
    run.durations_ms.insert("total".into(), ms_since(started));
    run.finished_ms = now_ms + ms_since(started) as i64;
    match result {
        Ok(()) => {
            deps.registry.record(&run).await?;
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
            run.status = RunStatus::Failed;
            run.reason = Some(error_chain(&e));
            tracing::error!(
                version,
                error = run.reason.as_deref().unwrap_or(""),
                "Training failed; the current model stays."
            );
            if let Err(re) = deps.registry.record(&run).await {
                tracing::error!(error = %error_chain(&re), "Could not record the failed run.");
            }
            Err(e)
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_stages<O, M, R, T>(
    req: &TrainRequest,
    task: &TaskConfig,
    weights: &nectar_model::mapping::EventWeights,
    deps: &TrainDeps<'_, O, M, R, T>,
    observer: &dyn TrainObserver,
    now_ms: i64,
    current: Option<u64>,
    run: &mut RunRecord,
) -> Result<(), TrainError>
where
    O: ObjectStore,
    M: ModelStore,
    R: Registry,
    T: Trainer,
{
    // 1. Window and data.
    observer.stage("read");
    let t = Instant::now();
    let days = task.window.days;
    let (window, anchor) = match req.window {
        WindowChoice::Explicit(w) => (w, "explicit"),
        WindowChoice::Configured => {
            let (until, anchor) = match task.window.anchor {
                Anchor::Now => (now_ms, "now"),
                Anchor::Latest => (
                    latest_event_end_ms(deps.events, &req.site, READ_CONCURRENCY)
                        .await?
                        .ok_or(TrainError::NoData {
                            events: 0,
                            window: None,
                        })?,
                    "latest",
                ),
            };
            (
                TimeWindow {
                    since_ms: until - i64::from(days) * DAY_MS,
                    until_ms: until,
                },
                anchor,
            )
        }
    };
    run.window = WindowRecord {
        since_ms: window.since_ms,
        until_ms: window.until_ms,
        days,
        anchor: anchor.into(),
    };
    let read = read_window(deps.events, &req.site, window, weights, READ_CONCURRENCY).await?;
    let all = read.interactions;
    run.counts.files = read.files;
    run.counts.lines = read.stats.lines;
    run.counts.duplicates = read.stats.duplicates;
    run.counts.malformed = read.stats.malformed;
    run.counts.skipped = read.stats.skipped + read.out_of_window;
    run.counts.torn_members = read.torn_members;
    run.counts.interactions = all.len() as u64;
    run.counts.users = all.users.len() as u64;
    run.counts.items = all.items.len() as u64;
    run.durations_ms.insert("read".into(), ms_since(t));
    if all.is_empty() {
        return Err(TrainError::NoData {
            events: read.stats.lines,
            window: Some(run.window.clone()),
        });
    }

    // 2. Time holdout: the newest fraction of the window.
    let t = Instant::now();
    let holdout_n = (all.len() as f64 * task.holdout_fraction).floor() as usize;
    let cut = all.len() - holdout_n;
    let (train, test) = (all.view_rows(0..cut), all.view_rows(cut..all.len()));
    run.counts.train_interactions = train.rows.len() as u64;
    run.counts.holdout_interactions = test.rows.len() as u64;
    let holdout = Holdout::new(train, test);
    run.counts.holdout_users_scored = holdout.len() as u64;
    run.durations_ms.insert("split".into(), ms_since(t));

    let progress = |f: f64| observer.progress(f);
    let mut candidate = None;
    if !holdout.is_empty() {
        // 3. Candidate on the older part, scored on the holdout.
        observer.stage("fit");
        let t = Instant::now();
        let cand = run_cpu(|| deps.trainer.fit(task, train, &progress))?;
        cand.validate()
            .map_err(|p| TrainError::Models(ModelStoreError::InvalidArtifacts(p)))?;
        run.durations_ms.insert("fit".into(), ms_since(t));
        observer.stage("evaluate");
        let t = Instant::now();
        run.metrics = run_cpu(|| holdout.evaluate(&holdout.scorer(&cand)));
        if task.algorithm != crate::config::Algorithm::Popular {
            // The popularity baseline on the same split (cheap: one count per item).
            let pop_task = crate::config::TaskConfig {
                algorithm: crate::config::Algorithm::Popular,
                params: BTreeMap::new(),
                ..task.clone()
            };
            let baseline = run_cpu(|| {
                deps.trainer
                    .fit(&pop_task, train, &|_| {})
                    .map(|pop| holdout.evaluate(&holdout.scorer(&pop)))
            });
            match baseline {
                Ok(m) => run.baseline_metrics = Some(m),
                Err(e) => tracing::warn!(error = %e, "Popularity baseline not evaluated."),
            }
        }
        // 4. The current version, scored on the held-out events it was not trained on (its
        //    own window ends at `metadata.window.until_ms`; it has seen anything older, and
        //    scoring it there would favour it), and the candidate on the same events.
        if let Some(cur) = current {
            if let Some(items) = deps.models.load_items(&req.site, &req.task, cur).await? {
                let seen_until = items.metadata["window"]["until_ms"].as_i64();
                let start =
                    seen_until.map_or(0, |u| test.rows.partition_point(|r| r.timestamp_ms < u));
                let gate_holdout = if start == 0 {
                    holdout.clone()
                } else {
                    Holdout::new(
                        train,
                        InteractionsView {
                            rows: &test.rows[start..],
                            ..test
                        },
                    )
                };
                if gate_holdout.len() >= MIN_GATE_USERS {
                    let users = gate_holdout.user_ids();
                    let states = deps
                        .models
                        .user_states(&req.site, &req.task, cur, &users)
                        .await?;
                    let scorer =
                        ArtifactScorer::from_store(items, users.into_iter().zip(states).collect());
                    run.current_metrics = Some(run_cpu(|| gate_holdout.evaluate(&scorer)));
                    run.gate_metrics = Some(if start == 0 {
                        run.metrics.clone()
                    } else {
                        run_cpu(|| gate_holdout.evaluate(&gate_holdout.scorer(&cand)))
                    });
                    run.gate = Some(format!(
                        "compared with v{cur} on {} held-out events newer than its window ({} users)",
                        test.rows.len() - start,
                        gate_holdout.len()
                    ));
                } else {
                    run.gate = Some(format!(
                        "skipped: {} users have held-out events newer than v{cur}'s window, \
                         fewer than {MIN_GATE_USERS}",
                        gate_holdout.len()
                    ));
                    tracing::warn!(gate = run.gate.as_deref().unwrap_or(""), "Gate skipped.");
                }
            }
        }
        run.durations_ms.insert("evaluate".into(), ms_since(t));
        // 5. The gate.
        if let (Some(cur), Some(cand_m)) = (&run.current_metrics, &run.gate_metrics) {
            let (c, n) = (
                cur.get(GATE_METRIC).copied().unwrap_or(0.0),
                cand_m.get(GATE_METRIC).copied().unwrap_or(0.0),
            );
            if n < c * (1.0 - task.gate_max_drop) {
                run.status = RunStatus::Refused;
                run.reason = Some(format!(
                    "{GATE_METRIC} {n:.4} is below the current version's {c:.4} by more than \
                     {:.1}%",
                    task.gate_max_drop * 100.0
                ));
                return Ok(());
            }
        }
        candidate = Some(cand);
    } else {
        tracing::warn!(
            holdout = test.rows.len(),
            "No warm holdout users: publishing without evaluation or gate."
        );
    }

    // 6. Refit on the whole window (the candidate is reused when nothing was held out).
    let artifacts = if holdout_n == 0 {
        match candidate {
            Some(c) => c,
            None => {
                observer.stage("fit");
                let t = Instant::now();
                let a = run_cpu(|| deps.trainer.fit(task, all.view(), &progress))?;
                run.durations_ms.insert("fit".into(), ms_since(t));
                a
            }
        }
    } else {
        observer.stage("refit");
        let t = Instant::now();
        let a = run_cpu(|| deps.trainer.fit(task, all.view(), &progress))?;
        run.durations_ms.insert("refit".into(), ms_since(t));
        run.refit_on_full_window = true;
        a
    };
    let mut artifacts = artifacts;
    artifacts.metadata = serde_json::json!({
        "site": run.site,
        "task": run.task,
        "version": run.version,
        "algorithm": run.algorithm,
        "params": run.params,
        "window": run.window,
        "metrics": run.metrics,
        "refit_on_full_window": run.refit_on_full_window,
        "trained_ms": now_ms,
    });

    // 7. Publish: every key, then the pointer, then TTLs for the superseded version.
    observer.stage("publish");
    let t = Instant::now();
    deps.models
        .publish(
            &req.site,
            &req.task,
            run.version,
            &artifacts,
            &PublishOptions::from(&task.publish),
        )
        .await?;
    run.durations_ms.insert("publish".into(), ms_since(t));
    run.status = RunStatus::Published;
    Ok(())
}

/// End-to-end checks of the service, run on the local backends (unit tests) and on S3, Redis
/// and DynamoDB (`tests/tests/train_s3.rs`).
#[cfg(any(test, feature = "testkit"))]
pub mod contract {
    use super::*;
    use crate::jsonl::gzip_lines;
    use crate::layout::{event_object_key, Hour};
    use crate::reader::contract::event_line;
    use bytes::Bytes;

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
            let mut a = BuiltinTrainer.fit(task, data, progress)?;
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
        let deps = TrainDeps {
            events,
            models,
            registry,
            trainer: &BuiltinTrainer,
        };
        let run = run_task(&cfg, &req, deps, &LogObserver, now).await.unwrap();
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
        let deps = TrainDeps {
            events,
            models,
            registry,
            trainer: &BackwardsTrainer,
        };
        let run = run_task(&cfg, &req, deps, &LogObserver, now + 1)
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
        let deps = TrainDeps {
            events,
            models,
            registry,
            trainer: &FailingTrainer,
        };
        let err = run_task(&cfg, &req, deps, &LogObserver, now + 2)
            .await
            .unwrap_err();
        assert_eq!(err.code(), "TrainerError");
        assert_eq!(
            models.current_version(&site, "pop").await.unwrap(),
            Some(v1)
        );

        // WHEN a model as good as v1 is trained THEN it passes the gate and is published
        let deps = TrainDeps {
            events,
            models,
            registry,
            trainer: &BuiltinTrainer,
        };
        let run = run_task(&cfg, &req, deps, &LogObserver, now + 3)
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
        let deps = TrainDeps {
            events,
            models,
            registry,
            trainer: &BuiltinTrainer,
        };
        let run = run_task(&cfg, &req, deps, &LogObserver, now + 4)
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
            models,
            registry,
            trainer: &BuiltinTrainer,
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
            models,
            registry,
            trainer: &BuiltinTrainer,
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
            models,
            registry,
            trainer: &BuiltinTrainer,
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
    use nectar_model::mapping::{Interaction, InteractionLog};

    fn log(rows: &[(&str, &str, i64)]) -> InteractionLog {
        let mut log = InteractionLog::new();
        for &(user, item, ts) in rows {
            log.push(Interaction {
                user: user.into(),
                item: item.into(),
                weight: 1.0,
                timestamp_ms: ts,
                event_id: format!("{user}-{item}-{ts}"),
            });
        }
        log.sort_by_time();
        log
    }

    #[test]
    fn factor_scores_rank_excluding_training_items() {
        // GIVEN items on two axes and a user pointing along the first
        let a = ModelArtifacts {
            item_ids: vec!["x1".into(), "x2".into(), "y1".into()],
            item_factors: Some(Factors {
                dim: 2,
                data: vec![1.0, 0.0, 0.9, 0.1, 0.0, 1.0],
            }),
            user_ids: vec!["u".into()],
            user_factors: Some(Factors {
                dim: 2,
                data: vec![1.0, 0.2],
            }),
            popular: vec![(2, 5.0)],
            ..ModelArtifacts::default()
        };
        let s = ArtifactScorer::from_artifacts(&a);
        // WHEN u is scored THEN x1 > x2 > y1; excluding x1 leaves x2 first
        assert_eq!(s.recommend("u", &HashSet::new(), 3), vec!["x1", "x2", "y1"]);
        assert_eq!(s.recommend("u", &HashSet::from(["x1"]), 1), vec!["x2"]);
        // an unknown user gets the popular list
        assert_eq!(s.recommend("other", &HashSet::new(), 3), vec!["y1"]);
    }

    #[test]
    fn similar_lists_score_by_summed_similarity_to_the_history() {
        // GIVEN item-to-item lists: a ~ b (0.9), a ~ c (0.2), d ~ c (0.5); popular: e
        let a = ModelArtifacts {
            item_ids: ["a", "b", "c", "d", "e"].map(String::from).to_vec(),
            popular: vec![(4, 9.0), (1, 1.0)],
            similar: Some(vec![
                vec![(1, 0.9), (2, 0.2)],
                vec![(0, 0.9)],
                vec![(0, 0.2), (3, 0.5)],
                vec![(2, 0.5)],
                vec![],
            ]),
            ..ModelArtifacts::default()
        };
        let s = ArtifactScorer::from_artifacts(&a);
        // WHEN a user who had a and d is scored THEN b (0.9) comes first, c (0.2 + 0.5 = 0.7)
        // second, and the popular list tops up the rest
        assert_eq!(
            s.recommend("u", &HashSet::from(["a", "d"]), 4),
            vec!["b", "c", "e"]
        );
        assert_eq!(s.recommend("u", &HashSet::from(["a", "d"]), 1), vec!["b"]);
        // no history: popular
        assert_eq!(s.recommend("u", &HashSet::new(), 2), vec!["e", "b"]);
    }

    #[test]
    fn metrics_follow_refeval_formulas() {
        // GIVEN a user whose held-out items are b and c, and a popular list [a, b, d, c]
        let all = log(&[
            ("u", "a", 1),
            ("v", "b", 2),
            ("v", "c", 3),
            ("v", "d", 4),
            ("u", "b", 5),
            ("u", "c", 6),
            ("u", "zzz", 7),
            ("new", "a", 8),
        ]);
        let h = Holdout::new(all.view_rows(0..4), all.view_rows(4..8));
        assert_eq!(h.len(), 1, "only warm users with warm items are scored");
        let a = ModelArtifacts {
            item_ids: vec!["a".into(), "b".into(), "c".into(), "d".into()],
            popular: vec![(0, 4.0), (1, 3.0), (3, 2.0), (2, 1.0)],
            ..ModelArtifacts::default()
        };
        let m = h.evaluate(&ArtifactScorer::from_artifacts(&a));
        // THEN recs = [b, d, c] (a excluded): hits at ranks 1 and 3
        let dcg = 1.0 + 1.0 / 4f64.log2();
        let idcg = 1.0 + 1.0 / 3f64.log2();
        assert!((m["ndcg@10"] - dcg / idcg).abs() < 1e-12);
        assert!((m["precision@10"] - 0.2).abs() < 1e-12);
        assert!((m["recall@10"] - 1.0).abs() < 1e-12);
        assert!((m["map@10"] - (1.0 + 2.0 / 3.0) / 2.0).abs() < 1e-12);
        assert_eq!(m["hr@10"], 1.0);
        assert!((m["coverage@10"] - 0.75).abs() < 1e-12);
    }

    #[test]
    fn builtin_trending_decays_old_interactions() {
        let mut task = config_task("trending");
        task.params.insert(
            "half_life_hours".into(),
            crate::config::ParamValue::Number(24.0),
        );
        // old: 3 plays 3 days before the newest; new: 1 play now
        let data = log(&[
            ("a", "old", 0),
            ("b", "old", 0),
            ("c", "old", 0),
            ("d", "new", 3 * DAY_MS),
        ]);
        let a = BuiltinTrainer.fit(&task, data.view(), &|_| {}).unwrap();
        // only items with rows in the view are in the model
        let part = BuiltinTrainer
            .fit(&config_task("popular"), data.view_rows(0..3), &|_| {})
            .unwrap();
        assert_eq!(part.item_ids, vec!["old"]);
        let first = &a.item_ids[a.popular[0].0 as usize];
        assert_eq!(first, "new");
        assert!((a.popular[1].1 - 3.0 / 8.0).abs() < 1e-6);
        let pop = BuiltinTrainer
            .fit(&config_task("popular"), data.view(), &|_| {})
            .unwrap();
        assert_eq!(pop.item_ids[pop.popular[0].0 as usize], "old");
        assert!(matches!(
            BuiltinTrainer.fit(&config_task("als"), data.view(), &|_| {}),
            Err(TrainerError::Unsupported(Algorithm::Als))
        ));
    }

    fn config_task(algo: &str) -> TaskConfig {
        NectarConfig::from_toml(&format!("[sites.s.tasks.t]\nalgorithm = \"{algo}\"\n"), "t")
            .unwrap()
            .task("s", "t")
            .unwrap()
            .clone()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_torn_member_in_the_log_is_skipped_and_counted_in_the_run_record() {
        use crate::jsonl::gzip_lines;
        use crate::reader::contract::event_line;
        use crate::registry::Registry;
        use crate::store::ObjectStore;
        use bytes::Bytes;
        use contract::T0;
        let dir = std::env::temp_dir().join(format!("nectar-train-{}", rand::random::<u64>()));
        let (events, registry) = (
            crate::store::LocalStore::new(&dir),
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
            models: &crate::model_store::LocalModelStore::new(&dir),
            registry: &registry,
            trainer: &BuiltinTrainer,
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
    async fn local_train_flow_publishes_refuses_and_fails_safely() {
        let dir = std::env::temp_dir().join(format!("nectar-train-{}", rand::random::<u64>()));
        contract::train_flow_contract(
            &crate::store::LocalStore::new(&dir),
            &crate::model_store::LocalModelStore::new(&dir),
            &crate::registry::LocalRegistry::new(&dir),
        )
        .await;
        std::fs::remove_dir_all(dir).unwrap();
    }
}
