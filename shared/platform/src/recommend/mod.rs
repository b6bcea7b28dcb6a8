//! The recommend service: `GET /v1/recommend/{endpoint}` (per user) and
//! `GET /v1/similar/{endpoint}` (similar items), as declared in the config's endpoints.
//!
//! Serving path: the item side of a model version (ids, factors, lists) is loaded into memory
//! once per version and swapped whole when the store's pointer moves (checked at most every
//! `reload_interval`, with jitter); a request holds one loaded version from start to end, so an
//! answer never mixes versions. Per request there is one store round trip for the user's
//! vector, precomputed list and recent history. Unknown users with history are folded in
//! (ALS); without history they get the endpoint's fallback list, or, while no fallback task
//! has a version, the model's own popularity list. When the store is unreachable the fallback
//! lists already in memory are served, marked `"fallback": true`. [`HEALTH_PATH`] reports,
//! per endpoint, what it would serve.

pub mod answer;
mod bandit;
mod diversity;
mod experiment;
pub mod explain;
mod fresh_trending;
mod model_cache;
mod rules;
pub mod served_log;
pub mod session;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode};
use nectar_model::mapping::EventWeights;
use nectar_model::rank;
use rand::Rng;

use crate::auth::AdminKeys;
use crate::catalog::Catalog;
use crate::collect::sink::EventSink;
use crate::config::{Allocation, EndpointConfig, EndpointKind, NectarConfig};
use crate::http::error::AppError;
use crate::http::request::{query_param, query_param_all, site_key_param};
use crate::http::response::json_response;
use crate::model_store::{user_state, ModelStore, ModelStoreError, UserState};
use crate::observe::request_log;
use crate::recommend::served_log::{FlushMode, ServedAnswer, ServedLog};

mod health;
#[cfg(test)]
mod serving_tests;

pub use answer::{ModelRef, RecommendAnswer, ScoredItem};
pub use experiment::{assign_variant, assignment_point};
use fresh_trending::FreshList;
pub use health::HEALTH_PATH;
pub use model_cache::LoadedModel;
use model_cache::{ModelState, Slot};

/// Prefix of the per-user route.
pub const RECOMMEND_PREFIX: &str = "/v1/recommend/";
/// Prefix of the similar-items route.
pub const SIMILAR_PREFIX: &str = "/v1/similar/";
/// Largest `n`.
pub const MAX_N: usize = 100;
/// Largest number of ids in `exclude`.
const MAX_EXCLUDE: usize = 500;
/// Largest id length.
const MAX_ID_LEN: usize = 256;

/// Tuning of the serving path.
#[derive(Debug, Clone, Copy)]
pub struct RecommendOptions {
    /// How often the pointer is checked at most (plus up to half of it as jitter).
    pub reload_interval: Duration,
    /// Deadline of a per-request store call (user state, pointer check).
    pub request_timeout: Duration,
    /// Deadline of loading a version's item side.
    pub load_timeout: Duration,
    /// Whether answers are logged as `recommendation_served` events.
    pub log_served: bool,
    /// When the served log is written (background timer, or deferred to the caller).
    pub served_flush: FlushMode,
}

impl Default for RecommendOptions {
    fn default() -> Self {
        Self {
            reload_interval: Duration::from_secs(5),
            request_timeout: Duration::from_millis(250),
            load_timeout: Duration::from_secs(60),
            log_served: true,
            served_flush: FlushMode::Background {
                every: Duration::from_millis(200),
            },
        }
    }
}

/// Parsed query of a request.
struct Query {
    site: String,
    endpoint: String,
    subject: String,
    user_id: Option<String>,
    client_id: Option<String>,
    n: usize,
    exclude: Vec<String>,
    context_item: Option<String>,
    /// A session request's items, newest last (empty otherwise).
    session: Vec<String>,
    /// `explain=true`: items carry `because`.
    explain: bool,
}

impl Query {
    /// Whose rejected items (negative feedback) apply: the user of a per-user request, the
    /// `user_id`/`client_id` of a session request when given.
    fn visitor(&self, kind: EndpointKind) -> Option<&str> {
        match kind {
            EndpointKind::User => Some(&self.subject),
            EndpointKind::Session => self.user_id.as_deref().or(self.client_id.as_deref()),
            EndpointKind::Similar => None,
        }
    }
}

/// Ids an answer never lists: the request's `exclude`, the user's consumed items (when the
/// rules exclude them), the items they disliked or dismissed (always) and, for similar items,
/// the item itself.
fn excluded_ids<'a>(
    q: &'a Query,
    ep: &EndpointConfig,
    kind: EndpointKind,
    history: &'a [String],
    rejected: &'a [String],
) -> HashSet<&'a str> {
    q.exclude
        .iter()
        .map(String::as_str)
        .chain(rejected.iter().map(String::as_str))
        .chain(
            (ep.rules.exclude_consumed && kind == EndpointKind::User)
                .then_some(history.iter().map(String::as_str))
                .into_iter()
                .flatten(),
        )
        .chain((kind == EndpointKind::Similar).then_some(q.subject.as_str()))
        .chain(q.session.iter().map(String::as_str))
        .collect()
}

fn check_id(field: &str, v: &str) -> Result<(), AppError> {
    if v.is_empty() || v.len() > MAX_ID_LEN || v.chars().any(char::is_control) {
        return Err(AppError::invalid(
            field,
            format!("ids are 1 to {MAX_ID_LEN} characters with no control characters"),
        ));
    }
    Ok(())
}

/// The recommend service over a model store, a served-log sink, a catalog and admin keys.
pub struct RecommendService<M, S> {
    config: Arc<NectarConfig>,
    models: M,
    served: Arc<ServedLog<S>>,
    catalog: Catalog,
    keys: AdminKeys,
    options: RecommendOptions,
    cache: Mutex<HashMap<(String, String), Slot>>,
    fresh: Mutex<HashMap<(String, String), FreshList>>,
    /// When `model_age_seconds` was last emitted per (site, task).
    age_emitted: Mutex<HashMap<(String, String), Instant>>,
    bandit: bandit::BanditCache,
    /// Each site's event weights, for mapping its served events once, when built.
    weights: HashMap<String, EventWeights>,
}

impl<M: ModelStore, S: EventSink + 'static> RecommendService<M, S> {
    /// A service; `sink` receives the `recommendation_served` events.
    pub fn new(
        config: Arc<NectarConfig>,
        models: M,
        sink: Arc<S>,
        catalog: Catalog,
        keys: AdminKeys,
        options: RecommendOptions,
    ) -> Self {
        let weights = config.site_weights();
        Self {
            weights,
            config,
            models,
            served: ServedLog::new(sink, options.served_flush),
            catalog,
            keys,
            options,
            cache: Mutex::new(HashMap::new()),
            fresh: Mutex::new(HashMap::new()),
            age_emitted: Mutex::new(HashMap::new()),
            bandit: bandit::BanditCache::default(),
        }
    }

    /// The config.
    pub fn config(&self) -> &NectarConfig {
        &self.config
    }

    /// The served-recommendation log (the Lambda flushes it after each invocation).
    pub fn served_log(&self) -> &Arc<ServedLog<S>> {
        &self.served
    }

    /// The admin keys.
    pub fn keys(&self) -> &AdminKeys {
        &self.keys
    }

    /// The model store (the privacy routes erase from and export it).
    pub fn models(&self) -> &M {
        &self.models
    }

    /// The catalog (shared with the items route).
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Whether a path is served here.
    pub fn routes(path: &str) -> bool {
        path.starts_with(RECOMMEND_PREFIX)
            || path.starts_with(SIMILAR_PREFIX)
            || path.starts_with(session::SESSION_PREFIX)
    }

    /// Answers one HTTP request; `now_ms` dates the answer and the availability rules.
    pub async fn handle(&self, req: &http::Request<Bytes>, now_ms: i64) -> http::Response<Bytes> {
        let started = Instant::now();
        let mut meta = AnswerMeta::default();
        let path = req.uri().path();
        let kind = if let Some(e) = path.strip_prefix(RECOMMEND_PREFIX) {
            Some((EndpointKind::User, e))
        } else {
            path.strip_prefix(SIMILAR_PREFIX)
                .map(|e| (EndpointKind::Similar, e))
                .or_else(|| {
                    path.strip_prefix(session::SESSION_PREFIX)
                        .map(|e| (EndpointKind::Session, e))
                })
        };
        let result = match kind {
            None => Err(AppError::NotFound(path.to_string())),
            Some(_) if req.method() != Method::GET && req.method() != Method::HEAD => {
                Err(AppError::MethodNotAllowed {
                    method: req.method().to_string(),
                    allow: "GET",
                })
            }
            Some((kind, endpoint)) => self.answer(req, kind, endpoint, now_ms, &mut meta).await,
        };
        let mut resp = result.unwrap_or_else(AppError::into_response);
        self.observe(&meta, kind.map(|k| k.0), resp.status(), started);
        resp.headers_mut().insert(
            http::header::CACHE_CONTROL,
            http::HeaderValue::from_static("no-store"),
        );
        resp
    }

    fn parse(
        &self,
        req: &http::Request<Bytes>,
        kind: EndpointKind,
        endpoint: &str,
    ) -> Result<Query, AppError> {
        let q = req.uri().query();
        let site = site_key_param(q)?;
        if self.config.site(&site).is_none() {
            return Err(AppError::UnknownSite(site));
        }
        let n = match query_param(q, "n")? {
            None => 10,
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_N).contains(n))
                .ok_or_else(|| {
                    AppError::invalid("n", format!("must be an integer from 1 to {MAX_N}"))
                })?,
        };
        // `exclude` is a list: repeats add to it (`exclude=a&exclude=b` is `exclude=a,b`).
        let mut exclude = Vec::new();
        for v in query_param_all(q, "exclude") {
            for id in v.split(',').filter(|s| !s.is_empty()) {
                check_id("exclude", id)?;
                exclude.push(id.to_string());
            }
        }
        if exclude.len() > MAX_EXCLUDE {
            return Err(AppError::invalid(
                "exclude",
                format!("at most {MAX_EXCLUDE} ids"),
            ));
        }
        let get = |name: &str| -> Result<Option<String>, AppError> {
            match query_param(q, name)? {
                None => Ok(None),
                Some(v) => {
                    check_id(name, &v)?;
                    Ok(Some(v.into_owned()))
                }
            }
        };
        let user_id = get("user_id")?;
        let client_id = get("client_id")?;
        let context_item = get("context_item")?;
        let item_id = get("item_id")?;
        let subject = match kind {
            EndpointKind::User => user_id
                .clone()
                .or_else(|| client_id.clone())
                .ok_or_else(|| AppError::invalid("user_id", "user_id or client_id is required"))?,
            EndpointKind::Similar => {
                item_id.ok_or_else(|| AppError::invalid("item_id", "item_id is required"))?
            }
            // Set below from the items: anonymous visits are logged under their newest item.
            EndpointKind::Session => String::new(),
        };
        let session = if kind == EndpointKind::Session {
            session::session_items(q, check_id)?
        } else {
            Vec::new()
        };
        let subject = match (kind, session.last()) {
            (EndpointKind::Session, Some(newest)) => user_id
                .clone()
                .or_else(|| client_id.clone())
                .unwrap_or_else(|| format!("session:{newest}")),
            _ => subject,
        };
        Ok(Query {
            site,
            endpoint: endpoint.to_string(),
            subject,
            user_id,
            client_id,
            n,
            exclude,
            context_item,
            session,
            explain: explain::explain_param(q)?,
        })
    }

    async fn answer(
        &self,
        req: &http::Request<Bytes>,
        kind: EndpointKind,
        endpoint: &str,
        now_ms: i64,
        meta: &mut AnswerMeta,
    ) -> Result<http::Response<Bytes>, AppError> {
        let q = self.parse(req, kind, endpoint)?;
        let site = self.config.site(&q.site).expect("checked in parse");
        meta.site = Some(q.site.clone());
        let ep = site
            .endpoints
            .get(&q.endpoint)
            .filter(|ep| ep.kind == kind)
            .ok_or_else(|| AppError::UnknownEndpoint(q.endpoint.clone()))?;
        meta.endpoint = Some(q.endpoint.clone());
        if ep.require_key {
            self.keys.authorize(req.headers(), &q.site)?;
        }
        let (variant, target) = match &ep.experiment {
            None => ("default".to_string(), Some(ep.model.clone())),
            Some(x) if x.allocation == Allocation::Thompson => {
                let v = self.thompson_variant(&q.site, &q.endpoint, x).await;
                (v.name.clone(), v.model.clone())
            }
            Some(x) => {
                // Logged-in users keep their variant across devices.
                let id = q.user_id.as_deref().unwrap_or(&q.subject);
                let v = assign_variant(&x.name, &x.variants, id);
                (v.name.clone(), v.model.clone())
            }
        };
        meta.variant = Some(variant.clone());
        let mut out = Answer::default();
        if let Some(task) = &target {
            match self.model(&q.site, task).await {
                ModelState::Ready(m) => {
                    out.model = Some((task.clone(), m.version()));
                    out.own = Some(m.clone());
                    let state = if let Some(v) = q.visitor(kind) {
                        self.user_at(&q.site, &m.task, m.version(), v).await
                    } else {
                        Ok(UserState::default())
                    };
                    meta.model_age = Some((task.clone(), m.trained_ms()));
                    match state {
                        Ok(state) => {
                            out.items = self.rank(&m, ep, kind, &q, &state, now_ms);
                            out.history = state.history;
                            out.rejected = state.rejected;
                            out.history_fetched = q.visitor(kind).is_some();
                        }
                        Err(e) => {
                            tracing::warn!(site = %q.site, model = %task, error = %e, "User state unavailable; serving the fallback.");
                            out.model = None;
                        }
                    }
                }
                ModelState::NoModel => {}
                ModelState::Unreachable => out.unreachable = true,
            }
        }
        let use_fallback = out.items.as_ref().is_none_or(Vec::is_empty);
        let reason = if !use_fallback {
            None
        } else if target.is_none() {
            Some(FallbackReason::Strategy)
        } else if out.unreachable {
            Some(FallbackReason::StoreUnreachable)
        } else if out.own.is_none() {
            Some(FallbackReason::NoModel)
        } else if out.model.is_none() {
            Some(FallbackReason::UserStateUnavailable)
        } else {
            Some(FallbackReason::CannotAnswer)
        };
        if !use_fallback {
            // Keep the fallback lists warm in memory: they are what is served when the store
            // becomes unreachable. Costs nothing between pointer checks.
            for task in ep.fallback_tasks() {
                let _ = self.model(&q.site, &task).await;
            }
        }
        let mut fallback_used = false;
        let visitor = q.visitor(kind).filter(|_| !out.history_fetched);
        if let Some(v) = visitor.filter(|_| use_fallback && !out.unreachable) {
            // No model answered (none yet, or unknown user): the fallback still leaves out
            // what the user consumed and rejected. History does not depend on a model version.
            let task = target.as_deref().unwrap_or(&ep.model);
            match self.user_at(&q.site, task, 0, v).await {
                Ok(state) => {
                    out.history = state.history;
                    out.rejected = state.rejected;
                }
                Err(e) => {
                    tracing::warn!(site = %q.site, error = %e, "Recent history unavailable for the fallback.")
                }
            }
        }
        let mut fallback_tasks_missing = false;
        if use_fallback {
            let exclude = excluded_ids(&q, ep, kind, &out.history, &out.rejected);
            for task in ep.fallback_tasks() {
                match self.model(&q.site, &task).await {
                    ModelState::Ready(m) => {
                        let list = self.fallback_list(&q.site, &m, now_ms).await;
                        let cands: Vec<(String, f32)> = list
                            .iter()
                            .filter(|(id, _)| !exclude.contains(id.as_str()))
                            .cloned()
                            .collect();
                        out.items =
                            Some(self.apply_rules(&q.site, ep, Some(&m), cands, q.n, now_ms));
                        out.model = Some((task.clone(), m.version()));
                        fallback_used = true;
                        break;
                    }
                    ModelState::Unreachable => out.unreachable = true,
                    ModelState::NoModel => fallback_tasks_missing = true,
                }
            }
            if !fallback_used {
                // The model is published but cannot answer this subject (unknown user with no
                // history, unknown item) and no fallback task has a version: the model's own
                // popularity list (every published model carries one) beats a 503.
                if let Some(m) = out.own.as_ref().filter(|m| !m.list.is_empty()) {
                    let cands: Vec<(String, f32)> = m
                        .list
                        .iter()
                        .filter(|(id, _)| !exclude.contains(id.as_str()))
                        .cloned()
                        .collect();
                    out.items = Some(self.apply_rules(&q.site, ep, Some(m), cands, q.n, now_ms));
                    fallback_used = true;
                }
            }
        }
        let Some(mut items) = out.items else {
            return Err(if out.unreachable {
                AppError::Unavailable(
                    "the model store is unreachable and no list is in memory".into(),
                )
            } else {
                AppError::NoModel(no_model_message(
                    &q.site,
                    &q.endpoint,
                    target.as_deref(),
                    out.own.is_some(),
                    &ep.fallback_tasks(),
                    fallback_tasks_missing,
                ))
            });
        };
        if fallback_used {
            meta.fallback_reason = reason;
        }
        meta.short = items.len() < q.n;
        if fallback_used && out.unreachable {
            tracing::warn!(site = %q.site, endpoint = %q.endpoint, "Model store unreachable; served the in-memory fallback.");
        }
        let explored = if ep.rules.explore.is_some() {
            let excluded = excluded_ids(&q, ep, kind, &out.history, &out.rejected);
            self.explore(&q.site, ep, &excluded, &mut items, now_ms)
                .await
        } else {
            HashSet::new()
        };
        let rec_id = new_recommendation_id();
        let (model_name, version) = out.model.unwrap_or_default();
        let mut body = RecommendAnswer {
            recommendation_id: rec_id,
            endpoint: q.endpoint.clone(),
            variant,
            model: ModelRef {
                name: model_name,
                version,
            },
            items: items
                .iter()
                .map(|(id, s)| ScoredItem {
                    explore: explored.contains(id).then_some(true),
                    ..ScoredItem::new(id, *s)
                })
                .collect(),
            fallback: fallback_used,
        };
        if self.options.log_served {
            self.log_served(&q, &body, now_ms);
        }
        if q.explain {
            let seeds: Vec<&str> = match kind {
                EndpointKind::User => q
                    .context_item
                    .iter()
                    .chain(out.history.iter())
                    .map(String::as_str)
                    .collect(),
                EndpointKind::Session => q.session.iter().rev().map(String::as_str).collect(),
                EndpointKind::Similar => vec![q.subject.as_str()],
            };
            explain::annotate(&mut body, out.own.as_deref(), &seeds);
        }
        Ok(json_response(StatusCode::OK, &body))
    }

    /// The served-recommendation log, off the hot path.
    fn log_served(&self, q: &Query, body: &RecommendAnswer, now_ms: i64) {
        let answer = ServedAnswer {
            site_key: &q.site,
            user_id: q.user_id.as_deref(),
            client_id: q.client_id.as_deref(),
            subject: &q.subject,
            context_item: q.context_item.as_deref(),
            body,
        };
        self.served
            .record(&answer, now_ms, self.weights.get(&q.site));
    }

    /// A user's state in `version` of `task` (version 0: history only), within the request
    /// timeout.
    async fn user_at(
        &self,
        site: &str,
        task: &str,
        version: u64,
        user: &str,
    ) -> Result<UserState, ModelStoreError> {
        match tokio::time::timeout(
            self.options.request_timeout,
            user_state(&self.models, site, task, version, user),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(ModelStoreError::Corrupt {
                key: format!("user state of {site}/{task}"),
                problem: "timed out".into(),
            }),
        }
    }

    /// Ranks candidates from one loaded model; `None` when the model cannot answer this
    /// subject (the caller falls back).
    fn rank(
        &self,
        m: &LoadedModel,
        ep: &EndpointConfig,
        kind: EndpointKind,
        q: &Query,
        state: &UserState,
        now_ms: i64,
    ) -> Option<Vec<(String, f32)>> {
        let n_items = m.items.item_ids.len();
        let mut excluded: Vec<u32> = q
            .exclude
            .iter()
            .filter_map(|id| m.index.get(id).copied())
            .collect();
        if kind == EndpointKind::User && ep.rules.exclude_consumed {
            excluded.extend(
                state
                    .history
                    .iter()
                    .filter_map(|id| m.index.get(id).copied()),
            );
        }
        // Negative feedback applies whatever the rules say.
        excluded.extend(
            state
                .rejected
                .iter()
                .filter_map(|id| m.index.get(id).copied()),
        );
        let subject_row = m.index.get(&q.subject).copied();
        if kind == EndpointKind::Similar {
            excluded.extend(subject_row);
        }
        excluded.extend(q.session.iter().filter_map(|id| m.index.get(id).copied()));
        excluded.sort_unstable();
        excluded.dedup();
        let catalog_rules = ep.rules.max_per_category.is_some()
            || ep.rules.availability
            || ep.rules.diversity.is_some();
        let want = if catalog_rules {
            (q.n * 4 + 20).min(n_items)
        } else {
            q.n
        };
        let rows = match kind {
            EndpointKind::Similar => {
                rank::similar_to(&m.item_side(), subject_row?, &excluded, want)?
            }
            EndpointKind::User => m.rank_user(state, q.context_item.as_deref(), &excluded, want)?,
            EndpointKind::Session => session::rank(m, &q.session, &excluded, want)?,
        };
        let cands: Vec<(&str, f32)> = rows
            .into_iter()
            .map(|(r, s)| (m.items.item_ids[r as usize].as_str(), s))
            .collect();
        Some(self.apply_rules(&q.site, ep, Some(m), cands, q.n, now_ms))
    }
}

/// Why a fallback list answered (the `reason` of `recommend_fallbacks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FallbackReason {
    /// The variant's strategy is the fallback.
    Strategy,
    /// The endpoint's model has no published version.
    NoModel,
    /// The model store could not be read.
    StoreUnreachable,
    /// The user's state could not be read in time.
    UserStateUnavailable,
    /// The model has nothing for this subject (unknown user without history, unknown item).
    CannotAnswer,
}

impl FallbackReason {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Strategy => "strategy",
            Self::NoModel => "no_model",
            Self::StoreUnreachable => "store_unreachable",
            Self::UserStateUnavailable => "user_state_unavailable",
            Self::CannotAnswer => "cold_subject",
        }
    }
}

/// What a request's metrics and its request-log line need from its answer.
#[derive(Debug, Default)]
struct AnswerMeta {
    site: Option<String>,
    endpoint: Option<String>,
    variant: Option<String>,
    fallback_reason: Option<FallbackReason>,
    short: bool,
    /// The served task and its training end (ms), for `model_age_seconds`.
    model_age: Option<(String, Option<i64>)>,
}

/// `model_age_seconds` is emitted at most this often per (site, task) and instance.
const MODEL_AGE_EVERY: Duration = Duration::from_secs(60);

impl<M: ModelStore, S: EventSink + 'static> RecommendService<M, S> {
    /// Records the request's metrics and, when sampled, its request-log line.
    fn observe(
        &self,
        meta: &AnswerMeta,
        kind: Option<EndpointKind>,
        status: StatusCode,
        started: Instant,
    ) {
        use crate::observe::names::{self, dim};
        let latency_ms = started.elapsed().as_secs_f64() * 1e3;
        let site = meta
            .site
            .as_deref()
            .unwrap_or(dim::UNKNOWN_SITE)
            .to_string();
        // Only configured endpoints become labels: a client cannot create series.
        let endpoint = meta
            .endpoint
            .as_deref()
            .unwrap_or(dim::UNKNOWN_SITE)
            .to_string();
        let variant = meta.variant.as_deref().unwrap_or("none").to_string();
        metrics::counter!(names::RECOMMEND_REQUESTS,
            dim::SITE => site.clone(), dim::ENDPOINT => endpoint.clone(),
            dim::VARIANT => variant, dim::STATUS => status.as_str().to_string())
        .increment(1);
        metrics::histogram!(names::RECOMMEND_LATENCY_MS,
            dim::SITE => site.clone(), dim::ENDPOINT => endpoint.clone())
        .record(latency_ms);
        if let Some(r) = meta.fallback_reason {
            metrics::counter!(names::RECOMMEND_FALLBACKS,
                dim::SITE => site.clone(), dim::ENDPOINT => endpoint.clone(),
                dim::REASON => r.as_str())
            .increment(1);
        }
        if meta.short && status.is_success() {
            metrics::counter!(names::RECOMMEND_SHORT_ANSWERS,
                dim::SITE => site.clone(), dim::ENDPOINT => endpoint.clone())
            .increment(1);
        }
        if let Some((task, Some(trained_ms))) = &meta.model_age {
            let key = (site.clone(), task.clone());
            let now = Instant::now();
            let due = {
                let mut last = self.age_emitted.lock().expect("age lock");
                match last.get(&key) {
                    Some(t) if now.duration_since(*t) < MODEL_AGE_EVERY => false,
                    _ => {
                        last.insert(key, now);
                        true
                    }
                }
            };
            if due {
                let age = (crate::now_ms() - trained_ms).max(0) as f64 / 1e3;
                metrics::gauge!(names::MODEL_AGE_SECONDS,
                    dim::SITE => site.clone(), dim::TASK => task.clone())
                .set(age);
            }
        }
        let route = match kind {
            Some(EndpointKind::User) => "/v1/recommend/{endpoint}",
            Some(EndpointKind::Similar) => "/v1/similar/{endpoint}",
            Some(EndpointKind::Session) => "/v1/session/{endpoint}",
            None => "other",
        };
        let mut line = request_log::RequestLine::new(route, status.as_u16(), latency_ms);
        line.site = meta.site.as_deref();
        line.endpoint = meta.endpoint.as_deref();
        line.variant = meta.variant.as_deref();
        line.fallback_reason = meta.fallback_reason.map(FallbackReason::as_str);
        request_log::maybe_log(self.config.observability.request_log_rate, &line);
    }
}

#[derive(Default)]
struct Answer {
    items: Option<Vec<(String, f32)>>,
    model: Option<(String, u64)>,
    /// The endpoint's (or variant's) own model, when one is loaded.
    own: Option<Arc<LoadedModel>>,
    history: Vec<String>,
    /// Whether `history` was read (a model's user state includes it).
    history_fetched: bool,
    /// Items the user disliked or dismissed (read with the history).
    rejected: Vec<String>,
    unreachable: bool,
}

/// Why an endpoint has nothing to serve, and the command that fixes it: the first run of
/// `nectar dev` meets this before any training, so the answer says which task to train.
fn no_model_message(
    site: &str,
    endpoint: &str,
    model: Option<&str>,
    model_published: bool,
    fallbacks: &[String],
    fallbacks_unpublished: bool,
) -> String {
    let train = |task: &str| {
        format!(
            "`nectar train --task {task} --site {site}` (deployed: the train function with \
             {{\"site\":\"{site}\",\"task\":\"{task}\"}})"
        )
    };
    let quoted = fallbacks
        .iter()
        .map(|t| format!("{t:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let model_part = match (model, model_published) {
        (Some(t), false) => format!("task {t:?} has no published model"),
        (Some(t), true) => format!("the model of task {t:?} has nothing for this request"),
        (None, _) => "this variant serves the fallback".to_string(),
    };
    match fallbacks.first() {
        None => {
            let task = model.unwrap_or_default();
            format!(
                "{site}/{endpoint} cannot answer: {model_part} and the endpoint declares no \
                 fallback; train it with {}",
                train(task)
            )
        }
        Some(first) if fallbacks_unpublished => {
            let (noun, verb) = if fallbacks.len() == 1 {
                ("fallback task", "was")
            } else {
                ("fallback tasks", "were")
            };
            format!(
                "{site}/{endpoint} cannot answer: {model_part}, and its {noun} {quoted} {verb} \
                 never trained (no published version); train it with {}",
                train(first)
            )
        }
        Some(_) => format!(
            "{site}/{endpoint} cannot answer: {model_part}, and its fallback {quoted} has no \
             list for it"
        ),
    }
}

fn new_recommendation_id() -> String {
    let x: u128 = rand::rng().random();
    format!("r-{x:032x}")
}

#[cfg(test)]
mod tests {
    use super::fresh_trending::{fresh_hours, fresh_trending, FRESH_MAX_HOURS};
    use super::*;
    use crate::config::VariantConfig;
    use crate::model_store::{Factors, ModelItems, HOUR_MS};
    use nectar_model::topk::{dot_scores, top_k, Exclude};
    use serde_json::json;

    #[test]
    fn large_catalogues_scan_quantised_and_agree_with_the_exact_ranking() {
        // GIVEN a factor model of 20,000 items (above the quantisation threshold) and a vector
        let (n, dim) = (20_000usize, 16usize);
        let data: Vec<f32> = (0..n * dim)
            .map(|i| ((i * 2_654_435_761usize % 1000) as f32 / 1000.0 - 0.5) * 0.6)
            .collect();
        let items = ModelItems {
            version: 1,
            item_ids: (0..n).map(|i| format!("i{i}")).collect(),
            item_factors: Some(Factors { dim, data }),
            popular: Vec::new(),
            similar: None,
            metadata: json!({}),
        };
        let m = LoadedModel::new("als", items);
        assert!(m.prepared.is_quantised());
        let f = m.items.item_factors.as_ref().unwrap();
        let x: Vec<f32> = (0..dim).map(|i| (i as f32 / dim as f32) - 0.5).collect();
        // WHEN the serving scan asks for 10, excluding the exact winner
        let mut scores = vec![0f32; n];
        dot_scores(&f.data, dim, &x, &mut scores);
        let best = top_k(&scores, 1, Exclude::None)[0].0;
        let got = m.scan(f, &x, 10, &[best]);
        // THEN it is the exact top-10 without the excluded item, with exact scores
        let exact = top_k(&scores, 10, Exclude::Sorted(&[best]));
        let ids = |v: &[(u32, f32)]| v.iter().map(|p| p.0).collect::<Vec<_>>();
        assert_eq!(ids(&got), ids(&exact));
        for (a, b) in got.iter().zip(&exact) {
            assert!((a.1 - b.1).abs() < 1e-5, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn fresh_trending_adds_the_hours_since_training() {
        const H: i64 = HOUR_MS;
        // GIVEN a trained list ending at 10:30 (half-life 1 h) and counts for 10:00 and 11:00
        let until = 10 * H + H / 2;
        let now = 12 * H;
        let trained = vec![("old".to_string(), 8.0f32), ("mid".to_string(), 2.0)];
        let hours = fresh_hours(until, now);
        assert_eq!(hours, vec![10 * H, 11 * H, 12 * H]);
        let counts = vec![
            HashMap::from([("mid".to_string(), 4u64)]),
            HashMap::from([("new".to_string(), 10u64)]),
            HashMap::new(),
        ];
        // WHEN brought up to now
        let v = fresh_trending(&trained, until, &hours, &counts, H as f64, now);
        // THEN trained scores decay by the 1.5 h since training, the 10:00 bucket counts for
        // its half after 10:30 (mid 10:45), the 11:00 bucket from its middle (11:30)
        let d = |age_h: f64| 0.5f64.powf(age_h);
        let score = |id: &str| v.iter().find(|p| p.0 == id).unwrap().1 as f64;
        assert!((score("old") - 8.0 * d(1.5)).abs() < 1e-4);
        assert!((score("mid") - (2.0 * d(1.5) + 4.0 * 0.5 * d(1.25))).abs() < 1e-4);
        assert!((score("new") - 10.0 * d(0.5)).abs() < 1e-4);
        // AND the new, rising item leads
        assert_eq!(v[0].0, "new");
        // AND at most 48 hours are read after a long gap
        assert_eq!(fresh_hours(0, 1000 * H).len(), FRESH_MAX_HOURS);
    }

    #[test]
    fn ab_split_is_within_one_point_of_the_weights() {
        // GIVEN three variants weighted 50/30/20
        let vs: Vec<VariantConfig> = [("a", 5.0), ("b", 3.0), ("c", 2.0)]
            .iter()
            .map(|(n, w)| VariantConfig {
                name: n.to_string(),
                weight: *w,
                model: Some("m".into()),
                strategy: None,
            })
            .collect();
        // WHEN 100k distinct ids are assigned
        let mut counts = HashMap::new();
        for i in 0..100_000 {
            *counts
                .entry(
                    assign_variant("exp1", &vs, &format!("user-{i}"))
                        .name
                        .clone(),
                )
                .or_insert(0usize) += 1;
        }
        // THEN each share is within ±1 percentage point of its weight
        for (n, w) in [("a", 0.5), ("b", 0.3), ("c", 0.2)] {
            let share = counts[n] as f64 / 100_000.0;
            assert!((share - w).abs() < 0.01, "{n}: {share}");
        }
        // AND assignment is stable, and depends on the experiment
        assert_eq!(
            assign_variant("exp1", &vs, "u1").name,
            assign_variant("exp1", &vs, "u1").name
        );
        let moved = (0..1000)
            .filter(|i| {
                let id = format!("user-{i}");
                assign_variant("exp1", &vs, &id).name != assign_variant("exp2", &vs, &id).name
            })
            .count();
        assert!(moved > 300, "{moved}");
    }
}
