//! Real-time history: each user's recent items, kept in the model store
//! (`nectar:{site:u:<user>}:hist` in Redis, newest first, bounded, with a TTL) as events
//! arrive, so that "already seen" is fresh between trainings.
//!
//! The archive function calls [`record_history`] after writing a batch to the event log;
//! `nectar dev` does the same through [`HistorySink`] after each collect.

use std::collections::BTreeMap;

use nectar_model::event::Accepted;
use nectar_model::mapping::map_event_line;

use crate::config::NectarConfig;
use crate::model_store::{ModelStore, ModelStoreError, HOUR_MS};
use crate::sink::{EventSink, SinkError};

/// Items kept per user.
pub const HISTORY_LEN: usize = 100;

/// Per `(site, user)`: the items of their interaction events, oldest first (the order
/// [`ModelStore::append_history`] expects). Events with no weight for the site are skipped.
pub fn history_updates<'a>(
    config: &NectarConfig,
    lines: impl IntoIterator<Item = &'a str>,
) -> BTreeMap<(String, String), Vec<String>> {
    let mut weights = BTreeMap::new();
    let mut out: BTreeMap<(String, String), Vec<(i64, String)>> = BTreeMap::new();
    for line in lines {
        let Some(site) = serde_json::from_str::<serde_json::Value>(line)
            .ok()
            .and_then(|v| v["site_key"].as_str().map(str::to_string))
        else {
            continue;
        };
        let Some(sc) = config.site(&site) else {
            continue;
        };
        let w = weights.entry(site.clone()).or_insert_with(|| sc.weights());
        if let Ok(i) = map_event_line(line, w) {
            out.entry((site, i.user))
                .or_default()
                .push((i.timestamp_ms, i.item));
        }
    }
    out.into_iter()
        .map(|(k, mut v)| {
            v.sort_by_key(|(t, _)| *t);
            (k, v.into_iter().map(|(_, i)| i).collect())
        })
        .collect()
}

/// Per site: `(hour start ms, item, count)` of the interaction events, each distinct
/// (user, item, hour) counted once, as the trending algorithm counts (user, item) cells.
pub fn count_updates<'a>(
    config: &NectarConfig,
    lines: impl IntoIterator<Item = &'a str>,
) -> BTreeMap<String, Vec<(i64, String, u64)>> {
    let mut weights = BTreeMap::new();
    let mut cells: BTreeMap<String, std::collections::BTreeSet<(i64, String, String)>> =
        BTreeMap::new();
    for line in lines {
        let Some(site) = serde_json::from_str::<serde_json::Value>(line)
            .ok()
            .and_then(|v| v["site_key"].as_str().map(str::to_string))
        else {
            continue;
        };
        let Some(sc) = config.site(&site) else {
            continue;
        };
        let w = weights.entry(site.clone()).or_insert_with(|| sc.weights());
        if let Ok(i) = map_event_line(line, w) {
            let hour = i.timestamp_ms.div_euclid(HOUR_MS) * HOUR_MS;
            cells
                .entry(site)
                .or_default()
                .insert((hour, i.item, i.user));
        }
    }
    cells
        .into_iter()
        .map(|(site, cells)| {
            let mut counts: BTreeMap<(i64, String), u64> = BTreeMap::new();
            for (hour, item, _) in cells {
                *counts.entry((hour, item)).or_default() += 1;
            }
            let v = counts.into_iter().map(|((h, i), n)| (h, i, n)).collect();
            (site, v)
        })
        .collect()
}

/// Appends the users' new items to their histories and adds the hourly item counts;
/// returns the number of users updated.
pub async fn record_history<'a, M: ModelStore>(
    models: &M,
    config: &NectarConfig,
    lines: impl IntoIterator<Item = &'a str> + Clone,
) -> Result<usize, ModelStoreError> {
    let updates = history_updates(config, lines.clone());
    for ((site, user), items) in &updates {
        models
            .append_history(site, user, items, HISTORY_LEN)
            .await?;
    }
    for (site, counts) in count_updates(config, lines) {
        models.add_item_counts(&site, &counts).await?;
    }
    Ok(updates.len())
}

/// A sink that also records histories after the inner sink stored a batch (`nectar dev`).
#[derive(Debug)]
pub struct HistorySink<S, M> {
    inner: S,
    models: M,
    config: std::sync::Arc<NectarConfig>,
}

impl<S, M> HistorySink<S, M> {
    /// Wraps `inner`.
    pub fn new(inner: S, models: M, config: std::sync::Arc<NectarConfig>) -> Self {
        Self {
            inner,
            models,
            config,
        }
    }
}

impl<S: EventSink, M: ModelStore> EventSink for HistorySink<S, M> {
    async fn put(&self, batch: &Accepted) -> Result<(), SinkError> {
        self.inner.put(batch).await?;
        // Best effort: the event log is the truth; the history only freshens exclusions.
        if let Err(e) = record_history(
            &self.models,
            &self.config,
            batch.events.iter().map(|e| e.line.as_str()),
        )
        .await
        {
            tracing::warn!(error = %e, "Recent history not updated.");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nectar_model::event::{accept_payload, CollectLimits};

    #[test]
    fn weighted_events_become_history_in_time_order() {
        const T: i64 = 1_763_000_000_000;
        // GIVEN a payload with two plays (out of order), a pause (no weight) and a served log
        let cfg = NectarConfig::embedded_default();
        let body = serde_json::json!({
            "peach_schema_version": "1.0.3", "sent_timestamp": T, "user_id": "u1",
            "client": {"id": "c1", "app_id": "a", "device": {"type": "phone"}},
            "events": [
                {"type": "media_play", "id": "m2", "event_timestamp": T - 1_000},
                {"type": "media_play", "id": "m1", "event_timestamp": T - 2_000},
                {"type": "media_pause", "id": "m3", "event_timestamp": T - 500},
                {"type": "recommendation_served", "id": "r1", "event_timestamp": T - 400}
            ]
        })
        .to_string();
        let a = accept_payload(body.as_bytes(), "demo", T, &CollectLimits::default()).unwrap();
        // WHEN mapped
        let h = history_updates(&cfg, a.events.iter().map(|e| e.line.as_str()));
        // THEN the user's items come oldest first, unweighted types skipped
        assert_eq!(
            h.get(&("demo".to_string(), "u1".to_string())),
            Some(&vec!["m1".to_string(), "m2".to_string()])
        );
        assert_eq!(h.len(), 1);
        // AND each (user, item, hour) counts once in its hourly bucket
        let c = count_updates(&cfg, a.events.iter().map(|e| e.line.as_str()));
        let hour = (T - 2_000).div_euclid(HOUR_MS) * HOUR_MS;
        let mut got = c["demo"].clone();
        got.sort();
        let want_hour = |t: i64| t.div_euclid(HOUR_MS) * HOUR_MS;
        assert_eq!(want_hour(T - 1_000), want_hour(T - 2_000).max(hour));
        assert_eq!(
            got,
            vec![
                (want_hour(T - 2_000), "m1".to_string(), 1),
                (want_hour(T - 1_000), "m2".to_string(), 1)
            ]
        );
    }
}
