//! The local store's bandit state: in memory, like its hourly counts (a restart of
//! `nectar dev` starts from zero). The served-recommendation lookup is bounded
//! ([`MAX_LOCAL_SERVED`] answers) and expires like the Redis keys.

use std::collections::{HashMap, VecDeque};

use nectar_model::online::bandit::ArmCounts;

use super::bandit::{
    BanditStore, ExploreItem, ExploreUpdate, OnceMark, ServedRef, VariantCounts, VariantIncrement,
    MAX_EXPLORE_ITEMS,
};
use super::{LocalModelStore, ModelStoreError};

/// Served answers (and once-marks) kept at most.
pub const MAX_LOCAL_SERVED: usize = 200_000;

/// A bounded map with per-entry expiry; entries leave in insertion order (every entry of a
/// site has the same TTL, so that is expiry order too).
#[derive(Debug)]
struct Expiring<K, V> {
    map: HashMap<K, (V, i64)>,
    order: VecDeque<(K, i64)>,
}

impl<K, V> Default for Expiring<K, V> {
    fn default() -> Self {
        Self {
            map: HashMap::new(),
            order: VecDeque::new(),
        }
    }
}

impl<K: std::hash::Hash + Eq + Clone, V> Expiring<K, V> {
    fn purge(&mut self, now_ms: i64) {
        while let Some((k, exp)) = self.order.front() {
            if *exp > now_ms && self.order.len() <= MAX_LOCAL_SERVED {
                break;
            }
            if self.map.get(k).is_some_and(|(_, e)| e == exp) {
                self.map.remove(k);
            }
            self.order.pop_front();
        }
    }

    fn get(&self, k: &K, now_ms: i64) -> Option<&V> {
        self.map.get(k).filter(|(_, e)| *e > now_ms).map(|(v, _)| v)
    }

    /// Inserts unless a live entry exists; whether it was inserted.
    fn insert_new(&mut self, k: K, v: V, expires_ms: i64, now_ms: i64) -> bool {
        if self.get(&k, now_ms).is_some() {
            return false;
        }
        self.order.push_back((k.clone(), expires_ms));
        self.map.insert(k, (v, expires_ms));
        true
    }
}

/// Everything the bandit port keeps, per site.
#[derive(Debug, Default)]
pub(super) struct LocalBandit {
    served: Expiring<(String, String), ServedRef>,
    marks: Expiring<(String, OnceMark, String), ()>,
    variants: HashMap<(String, String), HashMap<String, VariantCounts>>,
    /// Per site: item → (first seen, last seen, counts).
    explore: HashMap<String, HashMap<String, (i64, i64, ArmCounts)>>,
}

fn expiry(ttl_secs: u64) -> (i64, i64) {
    let now = crate::now_ms();
    (
        now,
        now.saturating_add(ttl_secs.max(1).saturating_mul(1000) as i64),
    )
}

impl BanditStore for LocalModelStore {
    async fn remember_served(
        &self,
        site: &str,
        served: &[(String, ServedRef)],
        ttl_secs: u64,
    ) -> Result<Vec<bool>, ModelStoreError> {
        let (now, exp) = expiry(ttl_secs);
        let mut b = self.bandit.lock().expect("bandit lock");
        b.served.purge(now);
        Ok(served
            .iter()
            .map(|(id, r)| {
                b.served
                    .insert_new((site.to_string(), id.clone()), r.clone(), exp, now)
            })
            .collect())
    }

    async fn served_refs(
        &self,
        site: &str,
        rec_ids: &[String],
    ) -> Result<Vec<Option<ServedRef>>, ModelStoreError> {
        let now = crate::now_ms();
        let b = self.bandit.lock().expect("bandit lock");
        Ok(rec_ids
            .iter()
            .map(|id| b.served.get(&(site.to_string(), id.clone()), now).cloned())
            .collect())
    }

    async fn mark_once(
        &self,
        site: &str,
        mark: OnceMark,
        rec_ids: &[String],
        ttl_secs: u64,
    ) -> Result<Vec<bool>, ModelStoreError> {
        let (now, exp) = expiry(ttl_secs);
        let mut b = self.bandit.lock().expect("bandit lock");
        b.marks.purge(now);
        Ok(rec_ids
            .iter()
            .map(|id| {
                b.marks
                    .insert_new((site.to_string(), mark, id.clone()), (), exp, now)
            })
            .collect())
    }

    async fn add_variant_counts(
        &self,
        site: &str,
        increments: &[VariantIncrement],
    ) -> Result<(), ModelStoreError> {
        let mut b = self.bandit.lock().expect("bandit lock");
        for inc in increments {
            let c = b
                .variants
                .entry((site.to_string(), inc.endpoint.clone()))
                .or_default()
                .entry(inc.variant.clone())
                .or_default();
            inc.counter.add_to(c, inc.n);
        }
        Ok(())
    }

    async fn variant_counts(
        &self,
        site: &str,
        endpoint: &str,
    ) -> Result<HashMap<String, VariantCounts>, ModelStoreError> {
        let b = self.bandit.lock().expect("bandit lock");
        Ok(b.variants
            .get(&(site.to_string(), endpoint.to_string()))
            .cloned()
            .unwrap_or_default())
    }

    async fn add_explore(&self, site: &str, update: &ExploreUpdate) -> Result<(), ModelStoreError> {
        let mut b = self.bandit.lock().expect("bandit lock");
        let items = b.explore.entry(site.to_string()).or_default();
        for (item, first, last) in &update.seen {
            let e = items
                .entry(item.clone())
                .or_insert((*first, *last, ArmCounts::default()));
            e.0 = e.0.min(*first);
            e.1 = e.1.max(*last);
        }
        for (item, c) in &update.counts {
            if let Some(e) = items.get_mut(item) {
                e.2.impressions += c.impressions;
                e.2.clicks += c.clicks;
            }
        }
        items.retain(|_, (_, last, _)| *last >= update.keep_since_ms);
        Ok(())
    }

    async fn explore_items(
        &self,
        site: &str,
        since_ms: i64,
    ) -> Result<Vec<ExploreItem>, ModelStoreError> {
        let b = self.bandit.lock().expect("bandit lock");
        let mut out: Vec<ExploreItem> = b
            .explore
            .get(site)
            .into_iter()
            .flatten()
            .filter(|(_, (t, _, _))| *t >= since_ms)
            .map(|(item, (t, _, c))| ExploreItem {
                item: item.clone(),
                first_seen_ms: *t,
                counts: *c,
            })
            .collect();
        out.sort_by(|a, b| {
            b.first_seen_ms
                .cmp(&a.first_seen_ms)
                .then_with(|| a.item.cmp(&b.item))
        });
        out.truncate(MAX_EXPLORE_ITEMS);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_store_passes_the_bandit_contract() {
        let store = LocalModelStore::new(std::env::temp_dir().join("nectar-bandit-unused"));
        super::super::bandit_contract::bandit_store_contract(&store).await;
    }

    #[test]
    fn the_served_lookup_expires_and_stays_bounded() {
        // GIVEN an expiring map
        let mut m: Expiring<u32, ()> = Expiring::default();
        // WHEN an entry expires THEN it reads as absent and can be inserted again
        assert!(m.insert_new(1, (), 100, 0));
        assert!(!m.insert_new(1, (), 100, 50));
        assert!(m.get(&1, 100).is_none());
        assert!(m.insert_new(1, (), 300, 100));
        m.purge(150);
        assert!(m.get(&1, 150).is_some());
        // AND beyond the bound the oldest entries leave
        for k in 0..(MAX_LOCAL_SERVED as u32 + 10) {
            m.insert_new(k + 10, (), i64::MAX, 0);
        }
        m.purge(0);
        assert_eq!(m.order.len(), MAX_LOCAL_SERVED);
        assert!(m.get(&10, 0).is_none());
        assert!(m.get(&(MAX_LOCAL_SERVED as u32 + 19), 0).is_some());
    }
}
