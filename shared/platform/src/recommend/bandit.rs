//! Bandits on the serving path: the variant of a Thompson-sampling experiment drawn per
//! request from the live variant counts, and the exploration rule filling fixed slots with new
//! items by their own counts.
//!
//! The counts are read from the model store at most every reload interval (with jitter) per
//! endpoint (variants) or per site and `new_days` (exploration candidates), like fresh
//! trending: between refreshes a request reads memory only; the request that finds the entry
//! stale claims the refresh (others keep using the last value) and the last good value is
//! kept while the store fails.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use nectar_model::online::bandit::{
    apply_exploration, explore_picks, thompson_pick, ArmCounts, ExploreRule, NewItem,
};
use rand::Rng;

use super::RecommendService;
use crate::catalog::Catalog;
use crate::collect::sink::EventSink;
use crate::config::{EndpointConfig, ExperimentConfig, ExploreConfig, VariantConfig};
use crate::model_store::{ExploreItem, ModelStore, ModelStoreError, VariantCounts};

const DAY_MS: i64 = 86_400_000;

/// A value read from the store, and when to read it again.
#[derive(Debug)]
struct Cached<T> {
    next_refresh: Instant,
    value: Arc<T>,
}

type CacheMap<K, T> = Mutex<HashMap<K, Cached<T>>>;

/// An exploration candidate as cached: the stored counts, the first-seen time (the catalog's
/// `available_from` when it has one) and the catalog's availability window.
#[derive(Debug, Clone)]
pub(super) struct Candidate {
    id: String,
    first_seen_ms: i64,
    counts: ArmCounts,
    available_from: Option<i64>,
    available_until: Option<i64>,
}

/// The live counts in memory.
#[derive(Debug, Default)]
pub(super) struct BanditCache {
    variants: CacheMap<(String, String), HashMap<String, VariantCounts>>,
    explore: CacheMap<(String, u32), Vec<Candidate>>,
}

impl<M: ModelStore, S: EventSink + 'static> RecommendService<M, S> {
    /// The cached value of `key`, refreshed from `read` when stale (within the request
    /// timeout); the last good value (or the default) when the store fails.
    async fn cached<K, T, F>(
        &self,
        map: &CacheMap<K, T>,
        key: K,
        read: F,
        what: &'static str,
    ) -> Arc<T>
    where
        K: Hash + Eq + Clone,
        T: Default,
        F: Future<Output = Result<T, ModelStoreError>>,
    {
        let now = Instant::now();
        let last = {
            let mut m = map.lock().expect("bandit cache lock");
            if let Some(c) = m.get(&key).filter(|c| now < c.next_refresh) {
                return c.value.clone();
            }
            // Claim the refresh so concurrent requests keep serving the last value.
            let last = m.get(&key).map_or_else(Arc::default, |c| c.value.clone());
            m.insert(
                key.clone(),
                Cached {
                    next_refresh: now + self.jittered(),
                    value: last.clone(),
                },
            );
            last
        };
        let value = match tokio::time::timeout(self.options.request_timeout, read).await {
            Ok(Ok(v)) => Arc::new(v),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, what, "Bandit counts unavailable; using the last ones.");
                return last;
            }
            Err(_) => {
                tracing::warn!(what, "Bandit counts timed out; using the last ones.");
                return last;
            }
        };
        if let Some(c) = map.lock().expect("bandit cache lock").get_mut(&key) {
            c.value = value.clone();
        }
        value
    }

    /// The variant of a Thompson-sampling experiment for one request: one draw per variant
    /// from its Beta posterior on the cached counts, the highest wins.
    pub(super) async fn thompson_variant<'a>(
        &self,
        site: &str,
        endpoint: &str,
        x: &'a ExperimentConfig,
    ) -> &'a VariantConfig {
        let counts = self
            .cached(
                &self.bandit.variants,
                (site.to_string(), endpoint.to_string()),
                self.models.variant_counts(site, endpoint),
                "variant counts",
            )
            .await;
        let arms = variant_arms(&x.variants, &counts);
        let i = thompson_pick(&arms, &mut rand::rng()).unwrap_or(0);
        &x.variants[i]
    }

    /// Fills the endpoint's `explore` slots with new items; returns the ids placed there.
    pub(super) async fn explore(
        &self,
        site: &str,
        ep: &EndpointConfig,
        excluded: &HashSet<&str>,
        items: &mut Vec<(String, f32)>,
        now_ms: i64,
    ) -> HashSet<String> {
        let Some(rule) = &ep.rules.explore else {
            return HashSet::new();
        };
        let since = now_ms - i64::from(rule.new_days) * DAY_MS;
        let catalog = self.catalog.clone();
        let read = async {
            let stored = self.models.explore_items(site, since).await?;
            Ok(candidates(&catalog, site, stored))
        };
        let cands = self
            .cached(
                &self.bandit.explore,
                (site.to_string(), rule.new_days),
                read,
                "explore items",
            )
            .await;
        let pinned: HashSet<&str> = ep.rules.pinned.iter().map(|p| p.item_id.as_str()).collect();
        let check_availability = ep.rules.availability;
        let new: Vec<NewItem<'_>> = cands
            .iter()
            .filter(|c| {
                !check_availability
                    || (c.available_from.is_none_or(|f| now_ms >= f)
                        && c.available_until.is_none_or(|u| now_ms < u))
            })
            .map(|c| NewItem {
                id: &c.id,
                first_seen_ms: c.first_seen_ms,
                counts: c.counts,
            })
            .collect();
        place_explored(
            items,
            &pinned,
            rule,
            &new,
            now_ms,
            excluded,
            &mut rand::rng(),
        )
    }
}

/// The arms of an experiment's variants, in config order. Impressions are the answers
/// displayed when any variant of the endpoint has displays (the apps report them), else the
/// answers served: the same basis for every arm.
pub(super) fn variant_arms(
    variants: &[VariantConfig],
    counts: &HashMap<String, VariantCounts>,
) -> Vec<ArmCounts> {
    let displays = counts.values().any(|c| c.displayed > 0);
    variants
        .iter()
        .map(|v| {
            let c = counts.get(&v.name).copied().unwrap_or_default();
            ArmCounts::new(if displays { c.displayed } else { c.served }, c.clicks)
        })
        .collect()
}

fn candidates(catalog: &Catalog, site: &str, stored: Vec<ExploreItem>) -> Vec<Candidate> {
    stored
        .into_iter()
        .map(|e| {
            let meta = catalog.get(site, &e.item);
            let (from, until) = meta
                .map(|m| (m.available_from, m.available_until))
                .unwrap_or_default();
            Candidate {
                first_seen_ms: from.unwrap_or(e.first_seen_ms),
                id: e.item,
                counts: e.counts,
                available_from: from,
                available_until: until,
            }
        })
        .collect()
}

/// Puts exploration picks into the endpoint's slots of a ranked list. Pinned promotions keep
/// their positions: picks go among the other items, whose slots are counted around the pins.
/// Candidates already in the list, pinned or `excluded` are not picked. Explored items get
/// score NaN (`null` in the answer).
pub(super) fn place_explored<R: Rng + ?Sized>(
    items: &mut Vec<(String, f32)>,
    pinned: &HashSet<&str>,
    rule: &ExploreConfig,
    cands: &[NewItem<'_>],
    now_ms: i64,
    excluded: &HashSet<&str>,
    rng: &mut R,
) -> HashSet<String> {
    let in_list: HashSet<String> = items.iter().map(|(id, _)| id.clone()).collect();
    let mut pins: Vec<(usize, (String, f32))> = Vec::new();
    let mut organic = Vec::with_capacity(items.len());
    for (pos, it) in std::mem::take(items).into_iter().enumerate() {
        if pinned.contains(it.0.as_str()) {
            pins.push((pos, it));
        } else {
            organic.push(it);
        }
    }
    let slots = rule
        .slots
        .iter()
        .filter(|&&s| s >= 1 && !pins.iter().any(|(p, _)| *p == s - 1))
        .map(|&s| s - pins.iter().filter(|(p, _)| *p < s - 1).count())
        .collect();
    let organic_rule = ExploreRule {
        slots,
        new_days: rule.new_days,
    };
    let picks = explore_picks(
        &organic_rule,
        cands,
        organic.len(),
        now_ms,
        |id| in_list.contains(id) || pinned.contains(id) || excluded.contains(id),
        rng,
    );
    let explored: HashSet<String> = picks.iter().map(|(_, id)| id.to_string()).collect();
    apply_exploration(
        &mut organic,
        picks
            .into_iter()
            .map(|(pos, id)| (pos, (id.to_string(), f32::NAN))),
    );
    for (pos, it) in pins {
        let at = pos.min(organic.len());
        organic.insert(at, it);
    }
    *items = organic;
    explored
}

#[cfg(test)]
#[path = "bandit_tests.rs"]
mod tests;
