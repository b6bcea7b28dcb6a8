//! The bandit side of the model store: live counts for Thompson-sampling experiments and the
//! exploration rule, and the served-recommendation lookup that lets a display or a hit (which
//! name only their recommendation id) find the endpoint and variant they belong to.
//!
//! Written by the activity path ([`crate::activity::bandit`]) as events arrive, read by the
//! recommend service at most every reload interval. Every write is idempotent per
//! recommendation id (a `SET NX` marks what was counted), so a batch delivered twice counts
//! once. Redis keys ([`super::redis::RedisModelStore`]):
//!
//! | key | value |
//! |---|---|
//! | `nectar:{<site>:exp:<endpoint>}` | hash `<variant>:served`, `<variant>:displayed`, `<variant>:clicks` (no TTL) |
//! | `nectar:{<site>:rec}:<rec id>` | JSON `{endpoint, variant, items}`, TTL = attribution window |
//! | `nectar:{<site>:rec}:<rec id>:displayed` / `:clicked` | `1`: counted once, same TTL |
//! | `nectar:{<site>:explore}:first` | sorted set item → first seen (ms) |
//! | `nectar:{<site>:explore}:last` | sorted set item → last seen (ms) |
//! | `nectar:{<site>:explore}:counts` | hash `<item>:i` (impressions), `<item>:c` (clicks) |
//!
//! The local store keeps the same in memory (like its hourly counts): a restart of
//! `nectar dev` starts the counts from zero.

use std::collections::HashMap;
use std::future::Future;

use nectar_model::online::bandit::ArmCounts;
use serde::{Deserialize, Serialize};

use super::{AnyModelStore, ModelStoreError};

/// What a served answer was, kept for the attribution window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServedRef {
    /// The endpoint asked.
    pub endpoint: String,
    /// The variant that answered.
    pub variant: String,
    /// The item ids served, in order.
    pub items: Vec<String>,
}

/// A variant's live counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VariantCounts {
    /// Answers served.
    pub served: u64,
    /// Answers displayed (`recommendation_displayed`, once per answer).
    pub displayed: u64,
    /// Answers clicked (`recommendation_hit`, once per answer).
    pub clicks: u64,
}

/// One of a variant's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum VariantCounter {
    /// [`VariantCounts::served`].
    Served,
    /// [`VariantCounts::displayed`].
    Displayed,
    /// [`VariantCounts::clicks`].
    Clicks,
}

impl VariantCounter {
    /// The hash field suffix (`<variant>:<suffix>`).
    pub fn suffix(self) -> &'static str {
        match self {
            Self::Served => "served",
            Self::Displayed => "displayed",
            Self::Clicks => "clicks",
        }
    }

    /// Adds `n` to this counter of `c`.
    pub fn add_to(self, c: &mut VariantCounts, n: u64) {
        match self {
            Self::Served => c.served += n,
            Self::Displayed => c.displayed += n,
            Self::Clicks => c.clicks += n,
        }
    }

    /// The counter a `<variant>:<suffix>` field names, with the variant.
    pub fn parse_field(field: &str) -> Option<(&str, Self)> {
        let (variant, suffix) = field.rsplit_once(':')?;
        let c = match suffix {
            "served" => Self::Served,
            "displayed" => Self::Displayed,
            "clicks" => Self::Clicks,
            _ => return None,
        };
        Some((variant, c))
    }
}

/// What is counted at most once per recommendation id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OnceMark {
    /// The answer was displayed.
    Displayed,
    /// The answer was clicked.
    Clicked,
}

impl OnceMark {
    /// The key suffix.
    pub fn suffix(self) -> &'static str {
        match self {
            Self::Displayed => "displayed",
            Self::Clicked => "clicked",
        }
    }
}

/// An increment of an endpoint's variant counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariantIncrement {
    /// The endpoint.
    pub endpoint: String,
    /// The variant.
    pub variant: String,
    /// Which counter.
    pub counter: VariantCounter,
    /// By how much.
    pub n: u64,
}

/// One batch of exploration updates of a site.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExploreUpdate {
    /// Items seen, with the earliest and the latest time seen in the batch (ms); the store
    /// keeps the earliest and the latest ever.
    pub seen: Vec<(String, i64, i64)>,
    /// Per item: impressions and clicks to add.
    pub counts: Vec<(String, ArmCounts)>,
    /// Items not seen since this (ms) are forgotten, with their counts (an item that keeps
    /// appearing keeps its first-seen time, so it never becomes new again).
    pub keep_since_ms: i64,
}

/// A candidate of the exploration rule, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExploreItem {
    /// The item.
    pub item: String,
    /// When it was first seen (ms).
    pub first_seen_ms: i64,
    /// Its impressions and clicks.
    pub counts: ArmCounts,
}

/// Explore candidates read at most per site (the newest first).
pub const MAX_EXPLORE_ITEMS: usize = 500;

/// The bandit port (every [`super::ModelStore`] is one).
pub trait BanditStore: Send + Sync {
    /// Stores each `(rec id, answer)` for `ttl_secs` unless that id is already stored; returns,
    /// per entry, whether it was new (only new answers are counted).
    fn remember_served(
        &self,
        site: &str,
        served: &[(String, ServedRef)],
        ttl_secs: u64,
    ) -> impl Future<Output = Result<Vec<bool>, ModelStoreError>> + Send;

    /// The stored answers of these rec ids (`None`: unknown or expired), in order.
    fn served_refs(
        &self,
        site: &str,
        rec_ids: &[String],
    ) -> impl Future<Output = Result<Vec<Option<ServedRef>>, ModelStoreError>> + Send;

    /// Marks each rec id with `mark` for `ttl_secs`; returns, per id, whether this was the
    /// first time (a second display or hit of one answer is not counted).
    fn mark_once(
        &self,
        site: &str,
        mark: OnceMark,
        rec_ids: &[String],
        ttl_secs: u64,
    ) -> impl Future<Output = Result<Vec<bool>, ModelStoreError>> + Send;

    /// Adds to endpoints' variant counters.
    fn add_variant_counts(
        &self,
        site: &str,
        increments: &[VariantIncrement],
    ) -> impl Future<Output = Result<(), ModelStoreError>> + Send;

    /// An endpoint's variant counters, variant → counts (one round trip).
    fn variant_counts(
        &self,
        site: &str,
        endpoint: &str,
    ) -> impl Future<Output = Result<HashMap<String, VariantCounts>, ModelStoreError>> + Send;

    /// Records items' first- and last-seen times and adds their counts; forgets items last
    /// seen before `keep_since_ms`.
    fn add_explore(
        &self,
        site: &str,
        update: &ExploreUpdate,
    ) -> impl Future<Output = Result<(), ModelStoreError>> + Send;

    /// Items first seen at or after `since_ms`, newest first, at most [`MAX_EXPLORE_ITEMS`],
    /// with their counts.
    fn explore_items(
        &self,
        site: &str,
        since_ms: i64,
    ) -> impl Future<Output = Result<Vec<ExploreItem>, ModelStoreError>> + Send;
}

impl BanditStore for AnyModelStore {
    async fn remember_served(
        &self,
        site: &str,
        served: &[(String, ServedRef)],
        ttl_secs: u64,
    ) -> Result<Vec<bool>, ModelStoreError> {
        match self {
            Self::Local(s) => s.remember_served(site, served, ttl_secs).await,
            #[cfg(feature = "redis")]
            Self::Redis(s) => s.remember_served(site, served, ttl_secs).await,
        }
    }
    async fn served_refs(
        &self,
        site: &str,
        rec_ids: &[String],
    ) -> Result<Vec<Option<ServedRef>>, ModelStoreError> {
        match self {
            Self::Local(s) => s.served_refs(site, rec_ids).await,
            #[cfg(feature = "redis")]
            Self::Redis(s) => s.served_refs(site, rec_ids).await,
        }
    }
    async fn mark_once(
        &self,
        site: &str,
        mark: OnceMark,
        rec_ids: &[String],
        ttl_secs: u64,
    ) -> Result<Vec<bool>, ModelStoreError> {
        match self {
            Self::Local(s) => s.mark_once(site, mark, rec_ids, ttl_secs).await,
            #[cfg(feature = "redis")]
            Self::Redis(s) => s.mark_once(site, mark, rec_ids, ttl_secs).await,
        }
    }
    async fn add_variant_counts(
        &self,
        site: &str,
        increments: &[VariantIncrement],
    ) -> Result<(), ModelStoreError> {
        match self {
            Self::Local(s) => s.add_variant_counts(site, increments).await,
            #[cfg(feature = "redis")]
            Self::Redis(s) => s.add_variant_counts(site, increments).await,
        }
    }
    async fn variant_counts(
        &self,
        site: &str,
        endpoint: &str,
    ) -> Result<HashMap<String, VariantCounts>, ModelStoreError> {
        match self {
            Self::Local(s) => s.variant_counts(site, endpoint).await,
            #[cfg(feature = "redis")]
            Self::Redis(s) => s.variant_counts(site, endpoint).await,
        }
    }
    async fn add_explore(&self, site: &str, update: &ExploreUpdate) -> Result<(), ModelStoreError> {
        match self {
            Self::Local(s) => s.add_explore(site, update).await,
            #[cfg(feature = "redis")]
            Self::Redis(s) => s.add_explore(site, update).await,
        }
    }
    async fn explore_items(
        &self,
        site: &str,
        since_ms: i64,
    ) -> Result<Vec<ExploreItem>, ModelStoreError> {
        match self {
            Self::Local(s) => s.explore_items(site, since_ms).await,
            #[cfg(feature = "redis")]
            Self::Redis(s) => s.explore_items(site, since_ms).await,
        }
    }
}
