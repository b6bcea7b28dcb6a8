//! The model store port: where trained models are published and where serving reads them.
//!
//! Publishing is atomic for readers: every key (file) of a new version is written first, then
//! the `current` pointer is switched, then superseded versions are given a TTL (Redis) or
//! deleted beyond `keep_versions`. A reader that resolves the pointer and then loads that
//! version sees exactly one complete version, or `None` when the version was removed in
//! between (then it resolves the pointer again).
//!
//! Adapters: [`redis::RedisModelStore`] (single node or Redis Cluster) and
//! [`local::LocalModelStore`] (the embedded twin under `<data-dir>/models/`), with
//! [`AnyModelStore`] to choose at run time.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub mod bandit;
mod forget;
pub mod local;
mod local_bandit;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(feature = "redis")]
mod redis_bandit;
#[cfg(feature = "redis")]
mod redis_conn;
#[cfg(feature = "secrets")]
pub mod redis_env;

#[cfg(any(test, feature = "testkit"))]
pub mod bandit_contract;
#[cfg(any(test, feature = "testkit"))]
pub mod contract;
#[cfg(any(test, feature = "testkit"))]
pub mod forget_contract;

pub use self::bandit::{
    BanditStore, ExploreItem, ExploreUpdate, OnceMark, ServedRef, VariantCounter, VariantCounts,
    VariantIncrement,
};
pub use self::forget::ForgetReport;
pub use self::local::LocalModelStore;
#[cfg(feature = "redis")]
pub use self::redis::{RedisAuth, RedisModelStore, RedisOptions};

pub use nectar_model::rank::{Factors, Scored};

/// Everything a training run publishes for one version.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelArtifacts {
    /// Item ids; every other item reference is a row in this list.
    pub item_ids: Vec<String>,
    /// Item factors, one row per item (ALS/MF).
    pub item_factors: Option<Factors>,
    /// User ids of the per-user data.
    pub user_ids: Vec<String>,
    /// User factors, one row per user in `user_ids`.
    pub user_factors: Option<Factors>,
    /// The model-wide list (popular / trending), best first.
    pub popular: Vec<Scored>,
    /// Per item (row in `item_ids`): its similar items, best first.
    pub similar: Option<Vec<Vec<Scored>>>,
    /// Per user (row in `user_ids`): precomputed top-N, best first.
    pub user_top: Option<Vec<Vec<Scored>>>,
    /// Free-form metadata (algorithm, params, metrics…), stored with the version.
    pub metadata: serde_json::Value,
}

impl ModelArtifacts {
    /// Checks the internal consistency (sizes, references) before publishing.
    pub fn validate(&self) -> Result<(), String> {
        let n = self.item_ids.len();
        if let Some(f) = &self.item_factors {
            if f.dim == 0 || f.data.len() != n * f.dim {
                return Err(format!(
                    "item factors have {} values, expected {} items × dim {}",
                    f.data.len(),
                    n,
                    f.dim
                ));
            }
        }
        if let Some(f) = &self.user_factors {
            if f.dim == 0 || f.data.len() != self.user_ids.len() * f.dim {
                return Err(format!(
                    "user factors have {} values, expected {} users × dim {}",
                    f.data.len(),
                    self.user_ids.len(),
                    f.dim
                ));
            }
        }
        if let Some(s) = &self.similar {
            if s.len() != n {
                return Err(format!("{} similar lists for {n} items", s.len()));
            }
        }
        if let Some(t) = &self.user_top {
            if t.len() != self.user_ids.len() {
                return Err(format!(
                    "{} user lists for {} users",
                    t.len(),
                    self.user_ids.len()
                ));
            }
        }
        let refs_ok = |l: &[Scored]| l.iter().all(|&(i, s)| (i as usize) < n && s.is_finite());
        let all_lists = std::iter::once(self.popular.as_slice())
            .chain(self.similar.iter().flatten().map(Vec::as_slice))
            .chain(self.user_top.iter().flatten().map(Vec::as_slice));
        for l in all_lists {
            if !refs_ok(l) {
                return Err("a list refers to an item row out of range or has a NaN score".into());
            }
        }
        Ok(())
    }
}

impl ModelArtifacts {
    /// The item side of these artifacts as `version` (what serving would load).
    pub fn items(&self, version: u64) -> ModelItems {
        ModelItems {
            version,
            item_ids: self.item_ids.clone(),
            item_factors: self.item_factors.clone(),
            popular: self.popular.clone(),
            similar: self.similar.clone(),
            metadata: self.metadata.clone(),
        }
    }

    /// The state of the user in row `r` of `user_ids` (no history: it is not a model's).
    pub fn user_state(&self, r: usize) -> UserState {
        UserState {
            factors: self.user_factors.as_ref().map(|f| f.row(r).to_vec()),
            top: self.user_top.as_ref().map(|t| t[r].clone()),
            history: Vec::new(),
            rejected: Vec::new(),
        }
    }
}

/// The algorithm and typed params a version was trained with: the `spec` its metadata
/// carries, else (versions published before it was stored) its `algorithm` and `params`
/// parsed as training parses them; `None` when neither reads.
pub fn algo_spec(metadata: &serde_json::Value) -> Option<nectar_model::algo::AlgoSpec> {
    if let Ok(spec) = serde_json::from_value(metadata["spec"].clone()) {
        return Some(spec);
    }
    let algo = metadata["algorithm"].as_str()?;
    let params: Vec<(String, String)> = metadata["params"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| {
            let v = match v {
                // As `TaskConfig::param_strings` writes whole numbers.
                serde_json::Value::Number(n) => match n.as_f64() {
                    Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
                    _ => n.to_string(),
                },
                serde_json::Value::String(t) => t.clone(),
                other => other.to_string(),
            };
            (k.clone(), v)
        })
        .collect();
    nectar_model::algo::AlgoSpec::parse(algo, &params).ok()
}

/// The item side of a version, as serving loads it into memory.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelItems {
    /// The version.
    pub version: u64,
    /// Item ids.
    pub item_ids: Vec<String>,
    /// Item factors.
    pub item_factors: Option<Factors>,
    /// The model-wide list.
    pub popular: Vec<Scored>,
    /// Per-item similar lists.
    pub similar: Option<Vec<Vec<Scored>>>,
    /// The metadata given at publish time.
    pub metadata: serde_json::Value,
}

/// One user's data for a version, fetched in one round trip.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserState {
    /// The user's factor vector in that version (users seen at training time).
    pub factors: Option<Vec<f32>>,
    /// The user's precomputed top-N, when published.
    pub top: Option<Vec<Scored>>,
    /// Recent item history, newest first (version independent).
    pub history: Vec<String>,
    /// Items the user disliked or dismissed (negative feedback), newest first: never
    /// recommended to them again (version independent, kept like the history).
    pub rejected: Vec<String>,
}

/// Publish options (from the task's `publish` config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishOptions {
    /// Versions kept listed, the new one included; older ones are deleted.
    pub keep_versions: usize,
    /// TTL of a superseded version's keys.
    pub superseded_ttl: Duration,
}

impl Default for PublishOptions {
    fn default() -> Self {
        Self {
            keep_versions: 3,
            superseded_ttl: Duration::from_secs(86_400),
        }
    }
}

impl From<&crate::config::PublishConfig> for PublishOptions {
    fn from(p: &crate::config::PublishConfig) -> Self {
        Self {
            keep_versions: p.keep_versions,
            superseded_ttl: Duration::from_secs(p.superseded_ttl_seconds),
        }
    }
}

/// A model store failure.
#[derive(Debug, thiserror::Error)]
pub enum ModelStoreError {
    /// The artifacts are inconsistent; nothing was written.
    #[error("invalid model artifacts: {0}")]
    InvalidArtifacts(String),
    /// The version is not newer than the current one.
    #[error("version {version} is not newer than the current version {current}")]
    StaleVersion {
        /// The version being published.
        version: u64,
        /// The current version.
        current: u64,
    },
    /// Stored data is not what this code wrote.
    #[error("corrupt model data at {key}: {problem}")]
    Corrupt {
        /// The key or file.
        key: String,
        /// What is wrong.
        problem: String,
    },
    /// Redis failed.
    #[cfg(feature = "redis")]
    #[error("redis {op} failed")]
    Redis {
        /// What was being done.
        op: &'static str,
        /// The cause.
        #[source]
        source: ::redis::RedisError,
    },
    /// Local file I/O failed.
    #[error("model store I/O on {path}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// The model store port (with the live bandit counts, [`BanditStore`]).
pub trait ModelStore: BanditStore + Send + Sync {
    /// Publishes `version` of `model` (a task name) for `site`: every key, then the pointer,
    /// then TTLs (or deletion) for superseded versions.
    fn publish(
        &self,
        site: &str,
        model: &str,
        version: u64,
        artifacts: &ModelArtifacts,
        options: &PublishOptions,
    ) -> impl Future<Output = Result<(), ModelStoreError>> + Send;

    /// The version the pointer names, if any.
    fn current_version(
        &self,
        site: &str,
        model: &str,
    ) -> impl Future<Output = Result<Option<u64>, ModelStoreError>> + Send;

    /// The item side of a version; `None` if it does not exist (anymore).
    fn load_items(
        &self,
        site: &str,
        model: &str,
        version: u64,
    ) -> impl Future<Output = Result<Option<ModelItems>, ModelStoreError>> + Send;

    /// Several users' state for a version (one pipelined round trip per slot).
    fn user_states(
        &self,
        site: &str,
        model: &str,
        version: u64,
        users: &[String],
    ) -> impl Future<Output = Result<Vec<UserState>, ModelStoreError>> + Send;

    /// Points the model back (or forward) at an existing, complete version (rollback): its
    /// keys lose their TTL, then the pointer moves, then the version it replaces gets the
    /// superseded TTL. Returns `false` (and changes nothing) if the version does not exist.
    /// A later training run publishes a newer version as usual.
    fn set_current(
        &self,
        site: &str,
        model: &str,
        version: u64,
        options: &PublishOptions,
    ) -> impl Future<Output = Result<bool, ModelStoreError>> + Send;

    /// Prepends items to a user's recent history (newest first), keeping `max_len`.
    fn append_history(
        &self,
        site: &str,
        user: &str,
        items: &[String],
        max_len: usize,
    ) -> impl Future<Output = Result<(), ModelStoreError>> + Send;

    /// Prepends items to a user's negative-feedback list ([`UserState::rejected`], newest
    /// first), keeping `max_len`; stored and expired like the history.
    fn append_rejected(
        &self,
        site: &str,
        user: &str,
        items: &[String],
        max_len: usize,
    ) -> impl Future<Output = Result<(), ModelStoreError>> + Send;

    /// Adds interaction counts to a site's hourly buckets (real-time trending):
    /// `(hour start in ms, item, count)`. Buckets expire after [`COUNTS_TTL_SECS`].
    fn add_item_counts(
        &self,
        site: &str,
        counts: &[(i64, String, u64)],
    ) -> impl Future<Output = Result<(), ModelStoreError>> + Send;

    /// The counts of the given hourly buckets (hour starts in ms), item → count, in the order
    /// given (one round trip).
    fn item_counts(
        &self,
        site: &str,
        hours: &[i64],
    ) -> impl Future<Output = Result<Vec<HashMap<String, u64>>, ModelStoreError>> + Send;

    /// Erases a user (GDPR): their recent history, and their factors, top list and user-list
    /// entry in every kept version of every task of the site. Idempotent.
    fn forget_user(
        &self,
        site: &str,
        user: &str,
    ) -> impl Future<Output = Result<ForgetReport, ModelStoreError>> + Send;
}

/// How long hourly interaction counts are kept (8 days: a week of trending and a margin).
pub const COUNTS_TTL_SECS: i64 = 8 * 86_400;
/// One hourly bucket.
pub const HOUR_MS: i64 = 3_600_000;

/// One user's state: factor vector, top-N and recent history in one round trip.
pub async fn user_state<S: ModelStore>(
    store: &S,
    site: &str,
    model: &str,
    version: u64,
    user: &str,
) -> Result<UserState, ModelStoreError> {
    let mut v = store
        .user_states(site, model, version, &[user.to_string()])
        .await?;
    Ok(v.pop().unwrap_or_default())
}

/// The metadata document stored with each version (`…:meta` / `meta.json`); written last,
/// so its presence marks a complete version.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct VersionMeta {
    pub version: u64,
    pub items: usize,
    pub dim: Option<usize>,
    pub chunk_rows: usize,
    pub has_similar: bool,
    pub users: usize,
    pub user_dim: Option<usize>,
    pub has_user_top: bool,
    pub user_chunk_rows: usize,
    pub published_ms: i64,
    pub metadata: serde_json::Value,
}

// Only Redis stores versions in chunks.
#[cfg(feature = "redis")]
impl VersionMeta {
    pub(crate) fn item_chunks(&self) -> usize {
        self.items.div_ceil(self.chunk_rows)
    }
    pub(crate) fn user_chunks(&self) -> usize {
        self.users.div_ceil(self.user_chunk_rows)
    }
}

/// Rows of item factors (and similar lists) per chunk: 4,096 × 64 f32 = 1 MiB values.
pub(crate) const ITEM_CHUNK_ROWS: usize = 4096;
/// User ids per chunk of the version's user list.
pub(crate) const USER_CHUNK_ROWS: usize = 10_000;

pub(crate) fn f32s_to_le(v: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len() * 4);
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
    out
}

pub(crate) fn le_to_f32s(b: &[u8]) -> Option<Vec<f32>> {
    if !b.len().is_multiple_of(4) {
        return None;
    }
    Some(
        b.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

/// Either model store, chosen at run time.
#[derive(Debug, Clone)]
pub enum AnyModelStore {
    /// The embedded local store.
    Local(LocalModelStore),
    /// Redis.
    #[cfg(feature = "redis")]
    Redis(RedisModelStore),
}

impl ModelStore for AnyModelStore {
    async fn publish(
        &self,
        site: &str,
        model: &str,
        version: u64,
        artifacts: &ModelArtifacts,
        options: &PublishOptions,
    ) -> Result<(), ModelStoreError> {
        match self {
            Self::Local(s) => s.publish(site, model, version, artifacts, options).await,
            #[cfg(feature = "redis")]
            Self::Redis(s) => s.publish(site, model, version, artifacts, options).await,
        }
    }
    async fn current_version(
        &self,
        site: &str,
        model: &str,
    ) -> Result<Option<u64>, ModelStoreError> {
        match self {
            Self::Local(s) => s.current_version(site, model).await,
            #[cfg(feature = "redis")]
            Self::Redis(s) => s.current_version(site, model).await,
        }
    }
    async fn load_items(
        &self,
        site: &str,
        model: &str,
        version: u64,
    ) -> Result<Option<ModelItems>, ModelStoreError> {
        match self {
            Self::Local(s) => s.load_items(site, model, version).await,
            #[cfg(feature = "redis")]
            Self::Redis(s) => s.load_items(site, model, version).await,
        }
    }
    async fn user_states(
        &self,
        site: &str,
        model: &str,
        version: u64,
        users: &[String],
    ) -> Result<Vec<UserState>, ModelStoreError> {
        match self {
            Self::Local(s) => s.user_states(site, model, version, users).await,
            #[cfg(feature = "redis")]
            Self::Redis(s) => s.user_states(site, model, version, users).await,
        }
    }
    async fn set_current(
        &self,
        site: &str,
        model: &str,
        version: u64,
        options: &PublishOptions,
    ) -> Result<bool, ModelStoreError> {
        match self {
            Self::Local(s) => s.set_current(site, model, version, options).await,
            #[cfg(feature = "redis")]
            Self::Redis(s) => s.set_current(site, model, version, options).await,
        }
    }
    async fn append_history(
        &self,
        site: &str,
        user: &str,
        items: &[String],
        max_len: usize,
    ) -> Result<(), ModelStoreError> {
        match self {
            Self::Local(s) => s.append_history(site, user, items, max_len).await,
            #[cfg(feature = "redis")]
            Self::Redis(s) => s.append_history(site, user, items, max_len).await,
        }
    }
    async fn append_rejected(
        &self,
        site: &str,
        user: &str,
        items: &[String],
        max_len: usize,
    ) -> Result<(), ModelStoreError> {
        match self {
            Self::Local(s) => s.append_rejected(site, user, items, max_len).await,
            #[cfg(feature = "redis")]
            Self::Redis(s) => s.append_rejected(site, user, items, max_len).await,
        }
    }
    async fn add_item_counts(
        &self,
        site: &str,
        counts: &[(i64, String, u64)],
    ) -> Result<(), ModelStoreError> {
        match self {
            Self::Local(s) => s.add_item_counts(site, counts).await,
            #[cfg(feature = "redis")]
            Self::Redis(s) => s.add_item_counts(site, counts).await,
        }
    }
    async fn item_counts(
        &self,
        site: &str,
        hours: &[i64],
    ) -> Result<Vec<HashMap<String, u64>>, ModelStoreError> {
        match self {
            Self::Local(s) => s.item_counts(site, hours).await,
            #[cfg(feature = "redis")]
            Self::Redis(s) => s.item_counts(site, hours).await,
        }
    }
    async fn forget_user(&self, site: &str, user: &str) -> Result<ForgetReport, ModelStoreError> {
        match self {
            Self::Local(s) => s.forget_user(site, user).await,
            #[cfg(feature = "redis")]
            Self::Redis(s) => s.forget_user(site, user).await,
        }
    }
}
