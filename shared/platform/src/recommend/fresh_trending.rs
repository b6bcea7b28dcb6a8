//! Fresh trending: a trending fallback's published list brought up to date with the hourly
//! counts the archive function records after the training window, so new and rising items
//! show up between trainings.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use super::model_cache::LoadedModel;
use super::RecommendService;
use crate::collect::sink::EventSink;
use crate::model_store::{ModelStore, HOUR_MS};

/// A trending list brought up to date with the hourly counts recorded since training.
#[derive(Debug)]
pub(super) struct FreshList {
    version: u64,
    next_refresh: Instant,
    list: Arc<Vec<(String, f32)>>,
}

/// Hourly buckets read at most for a fresh trending list (older training: the newest 48).
pub(super) const FRESH_MAX_HOURS: usize = 48;
/// Length of a fresh trending list.
pub(super) const FRESH_LIST_LEN: usize = 500;

impl<M: ModelStore, S: EventSink + 'static> RecommendService<M, S> {
    /// The list a fallback task serves: its published list, and for a trending task that
    /// list brought up to date with the hourly counts recorded since its training window
    /// ended (the archive function keeps them), so new and rising items show up between
    /// trainings. Recomputed at most every reload interval; the last good list is kept while
    /// the store is unreachable.
    pub(super) async fn fallback_list(
        &self,
        site: &str,
        m: &Arc<LoadedModel>,
        now_ms: i64,
    ) -> Arc<Vec<(String, f32)>> {
        if m.items.metadata["algorithm"].as_str() != Some("trending") {
            return m.list.clone();
        }
        let key = (site.to_string(), m.task.clone());
        let now = Instant::now();
        let cached = {
            let fresh = self.fresh.lock().expect("fresh lock");
            match fresh.get(&key) {
                Some(f) if f.version == m.version() && now < f.next_refresh => {
                    return f.list.clone()
                }
                Some(f) if f.version == m.version() => Some(f.list.clone()),
                _ => None,
            }
        };
        // Claim the refresh so concurrent requests keep serving the cached list.
        {
            let mut fresh = self.fresh.lock().expect("fresh lock");
            let list = cached.clone().unwrap_or_else(|| m.list.clone());
            fresh.insert(
                key.clone(),
                FreshList {
                    version: m.version(),
                    next_refresh: now + self.jittered(),
                    list,
                },
            );
        }
        let meta = &m.items.metadata;
        let half_life_ms = meta["params"]["half_life_hours"].as_f64().unwrap_or(24.0) * 3.6e6;
        let until = meta["window"]["until_ms"]
            .as_i64()
            .or_else(|| meta["trained_ms"].as_i64())
            .unwrap_or(now_ms);
        let hours = fresh_hours(until, now_ms);
        let counts = tokio::time::timeout(
            self.options.request_timeout,
            self.models.item_counts(site, &hours),
        )
        .await;
        let counts = match counts {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                tracing::warn!(%site, task = %m.task, error = %e, "Trending counts unavailable; serving the trained list.");
                return cached.unwrap_or_else(|| m.list.clone());
            }
            Err(_) => {
                tracing::warn!(%site, task = %m.task, "Trending counts timed out; serving the trained list.");
                return cached.unwrap_or_else(|| m.list.clone());
            }
        };
        let list = Arc::new(fresh_trending(
            &m.list,
            until,
            &hours,
            &counts,
            half_life_ms,
            now_ms,
        ));
        if let Some(f) = self.fresh.lock().expect("fresh lock").get_mut(&key) {
            if f.version == m.version() {
                f.list = list.clone();
            }
        }
        list
    }
}

/// The hourly buckets (starts, ms) from the one holding `until_ms` to the current one, at
/// most the newest [`FRESH_MAX_HOURS`].
pub(super) fn fresh_hours(until_ms: i64, now_ms: i64) -> Vec<i64> {
    let first = until_ms.div_euclid(HOUR_MS) * HOUR_MS;
    let last = now_ms.div_euclid(HOUR_MS) * HOUR_MS;
    let mut hours: Vec<i64> = (0..)
        .map(|i| last - i * HOUR_MS)
        .take_while(|&h| h >= first)
        .take(FRESH_MAX_HOURS)
        .collect();
    hours.reverse();
    hours
}

/// Trending at `now_ms`: the trained scores (decayed counts at `until_ms`) decayed further to
/// now, plus each later hour's counts decayed from the middle of their hour, as the trending
/// algorithm decays each (user, item) cell. The hour holding `until_ms` counts only for its
/// part after `until_ms` (its earlier part is in the trained scores).
pub(super) fn fresh_trending(
    trained: &[(String, f32)],
    until_ms: i64,
    hours: &[i64],
    counts: &[HashMap<String, u64>],
    half_life_ms: f64,
    now_ms: i64,
) -> Vec<(String, f32)> {
    let decay = |age_ms: f64| 0.5f64.powf(age_ms.max(0.0) / half_life_ms);
    let mut acc: HashMap<&str, f64> = HashMap::with_capacity(trained.len());
    let d0 = decay((now_ms - until_ms) as f64);
    for (id, s) in trained {
        *acc.entry(id.as_str()).or_default() += f64::from(*s) * d0;
    }
    for (&h, c) in hours.iter().zip(counts) {
        let end = h + HOUR_MS;
        let from = h.max(until_ms);
        if from >= end {
            continue;
        }
        let part = (end - from) as f64 / HOUR_MS as f64;
        let mid = (from + end.min(now_ms.max(from))) as f64 / 2.0;
        let w = part * decay(now_ms as f64 - mid);
        for (id, &n) in c {
            *acc.entry(id.as_str()).or_default() += n as f64 * w;
        }
    }
    let mut v: Vec<(String, f32)> = acc
        .into_iter()
        .map(|(id, s)| (id.to_string(), s as f32))
        .collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v.truncate(FRESH_LIST_LEN.max(trained.len()));
    v
}
