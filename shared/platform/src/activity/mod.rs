//! Real-time history: each user's recent items, kept in the model store
//! (`nectar:{site:u:<user>}:hist` in Redis, newest first, bounded, with a TTL) as events
//! arrive, so that "already seen" is fresh between trainings.
//!
//! The archive function calls [`record_history`] after writing a batch to the event log;
//! `nectar dev` does the same through [`HistorySink`] after each collect.
//!
//! The same two paths fill the item catalog from the events' `metadata`
//! ([`catalog_updates`], [`record_catalog`]), so titles, categories and availability windows
//! sent by the apps reach the business rules without a separate catalog feed.
//!
//! [`record_history`] also keeps the live bandit counts ([`bandit`]).

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use nectar_model::event::Accepted;
use nectar_model::mapping::{id_names_item, map_site_event_line, EventWeights, Interaction, Skip};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::background;
use crate::catalog::{valid_item_id, Catalog, CatalogWriter, ItemMeta};
use crate::collect::sink::{EventSink, SinkError};
use crate::config::NectarConfig;
use crate::model_store::{ModelStore, ModelStoreError, HOUR_MS};

pub mod bandit;
pub mod feedback;

/// Items kept per user.
pub const HISTORY_LEN: usize = 100;

/// The interaction events of `lines` with their site; lines of unknown sites and events with
/// no weight for their site are skipped. Each line is mapped once for every use below.
fn site_interactions<'a>(
    config: &NectarConfig,
    lines: impl IntoIterator<Item = &'a str>,
) -> Vec<(String, Interaction)> {
    let mut weights: BTreeMap<String, EventWeights> = BTreeMap::new();
    let mut out = Vec::new();
    for (n, line) in lines.into_iter().enumerate() {
        // In background work (the served log's flush, for events not mapped when built)
        // the core is given back every slice of lines.
        background::pause_at(n);
        // One parse per line (every collect runs this for every event): the line's site
        // picks the weights as it is mapped.
        let cache = &mut weights;
        let mapped = map_site_event_line(line, move |site| {
            if !cache.contains_key(site) {
                cache.insert(site.to_string(), config.site(site)?.weights());
            }
            let cache: &BTreeMap<String, EventWeights> = cache;
            cache.get(site)
        });
        if let Ok(pair) = mapped {
            out.push(pair);
        }
    }
    out
}

/// Per `(site, user)`: the items of their interaction events, oldest first (the order
/// [`ModelStore::append_history`] expects). Events with no weight for the site are skipped.
pub fn history_updates<'a>(
    config: &NectarConfig,
    lines: impl IntoIterator<Item = &'a str>,
) -> BTreeMap<(String, String), Vec<String>> {
    histories_of(&feedback::split_negative(site_interactions(config, lines)).0)
}

fn histories_of(interactions: &[(String, Interaction)]) -> BTreeMap<(String, String), Vec<String>> {
    let mut out: BTreeMap<(String, String), Vec<(i64, String)>> = BTreeMap::new();
    for (site, i) in interactions {
        out.entry((site.clone(), i.user.clone()))
            .or_default()
            .push((i.timestamp_ms, i.item.clone()));
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
    counts_of(&feedback::split_negative(site_interactions(config, lines)).0)
}

fn counts_of(interactions: &[(String, Interaction)]) -> BTreeMap<String, Vec<(i64, String, u64)>> {
    let mut cells: BTreeMap<&str, BTreeSet<(i64, &str, &str)>> = BTreeMap::new();
    for (site, i) in interactions {
        let hour = i.timestamp_ms.div_euclid(HOUR_MS) * HOUR_MS;
        cells
            .entry(site.as_str())
            .or_default()
            .insert((hour, i.item.as_str(), i.user.as_str()));
    }
    cells
        .into_iter()
        .map(|(site, cells)| {
            let mut counts: BTreeMap<(i64, &str), u64> = BTreeMap::new();
            for (hour, item, _) in cells {
                *counts.entry((hour, item)).or_default() += 1;
            }
            let v = counts
                .into_iter()
                .map(|((h, i), n)| (h, i.to_string(), n))
                .collect();
            (site.to_string(), v)
        })
        .collect()
}

/// Appends the users' new items to their histories, adds the hourly item counts and records
/// negative feedback ([`feedback`]: dislikes and dismissals, kept out of both), then the
/// live bandit counts ([`bandit::record_bandit`], best effort: a failure is logged); returns
/// the number of users updated.
pub async fn record_history<'a, M: ModelStore>(
    models: &M,
    config: &NectarConfig,
    lines: impl IntoIterator<Item = &'a str>,
) -> Result<usize, ModelStoreError> {
    let lines: Vec<&str> = lines.into_iter().collect();
    let mapped = site_interactions(config, lines.iter().copied());
    record_mapped(models, config, &lines, mapped).await
}

/// [`record_history`] for one accepted batch: when every event's mapping was worked out as
/// it was accepted (a collected payload), no line is parsed again; otherwise (the served log,
/// `accept_payload`) the lines are mapped as [`record_history`] maps them.
pub async fn record_batch_history<M: ModelStore>(
    models: &M,
    config: &NectarConfig,
    batch: &Accepted,
) -> Result<usize, ModelStoreError> {
    let lines: Vec<&str> = batch.events.iter().map(|e| e.line.as_str()).collect();
    let worked_out: Option<Vec<&Result<Interaction, Skip>>> =
        batch.events.iter().map(|e| e.mapped.as_ref()).collect();
    let mapped = match worked_out {
        Some(all) => all
            .into_iter()
            .filter_map(|m| m.as_ref().ok())
            .map(|i| (batch.site_key.clone(), i.clone()))
            .collect(),
        None => site_interactions(config, lines.iter().copied()),
    };
    record_mapped(models, config, &lines, mapped).await
}

async fn record_mapped<M: ModelStore>(
    models: &M,
    config: &NectarConfig,
    lines: &[&str],
    mapped: Vec<(String, Interaction)>,
) -> Result<usize, ModelStoreError> {
    let (interactions, negative) = feedback::split_negative(mapped);
    let updates = histories_of(&interactions);
    for ((site, user), items) in &updates {
        models
            .append_history(site, user, items, HISTORY_LEN)
            .await?;
    }
    for (site, counts) in counts_of(&interactions) {
        models.add_item_counts(&site, &counts).await?;
    }
    feedback::record_rejected(models, &negative).await?;
    if let Err(e) =
        bandit::record_bandit(models, config, lines, &interactions, crate::now_ms()).await
    {
        tracing::warn!(error = %e, "Bandit counts not updated.");
    }
    Ok(updates.len())
}

/// The fields of a flat event line the catalog reads.
#[derive(Deserialize)]
struct MetaLine<'a> {
    #[serde(borrow)]
    site_key: Cow<'a, str>,
    #[serde(rename = "type", borrow)]
    event_type: Cow<'a, str>,
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(default, borrow)]
    metadata: Option<&'a RawValue>,
}

fn meta_string(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str)
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
}

fn meta_ms(v: Option<&Value>) -> Option<i64> {
    nectar_model::mapping::metadata_ms(v?)
}

/// What one event's `metadata` says about its item, if anything.
fn item_from_metadata(id: &str, metadata: &RawValue) -> Option<ItemMeta> {
    let Ok(Value::Object(m)) = serde_json::from_str::<Value>(metadata.get()) else {
        return None;
    };
    let category = meta_string(m.get("category"))
        .or_else(|| meta_string(m.get("genre")))
        .or_else(|| meta_string(m.get("genres").and_then(|g| g.as_array()?.first())));
    let (mut from, mut until) = (
        meta_ms(m.get("available_from")),
        meta_ms(m.get("available_until")),
    );
    if let (Some(f), Some(u)) = (from, until) {
        if u <= f {
            // An empty window is a client bug: keep neither bound rather than hide the item.
            (from, until) = (None, None);
        }
    }
    let it = ItemMeta {
        id: id.to_string(),
        category,
        available_from: from,
        available_until: until,
        title: meta_string(m.get("title")),
    };
    (it != ItemMeta {
        id: it.id.clone(),
        ..ItemMeta::default()
    })
    .then_some(it)
}

/// Per site: the catalog fields that the events' `metadata` gives their items, one entry per
/// item (fields of later lines win, field by field), sorted by id.
///
/// Only events whose `id` names the item ([`id_names_item`]: `media_*`, `article_*`,
/// `page_view`, `rating`, weighted custom types; never `recommendation_*`) of a configured
/// site count. Read from `metadata`: `title`; `category`, else `genre`, else the first of
/// `genres` (an array); `available_from` / `available_until` (ms UTC; an empty window is
/// dropped). Absent fields stay `None`, so merging the entries never erases anything.
pub fn catalog_updates<'a>(
    config: &NectarConfig,
    lines: impl IntoIterator<Item = &'a str>,
) -> BTreeMap<String, Vec<ItemMeta>> {
    let mut weights = BTreeMap::new();
    let mut out: BTreeMap<String, BTreeMap<String, ItemMeta>> = BTreeMap::new();
    for line in lines {
        // Most events carry no metadata: skip them without parsing.
        if !line.contains("\"metadata\"") {
            continue;
        }
        let Ok(ev) = serde_json::from_str::<MetaLine<'_>>(line) else {
            continue;
        };
        let Some(metadata) = ev.metadata else {
            continue;
        };
        let Some(sc) = config.site(&ev.site_key) else {
            continue;
        };
        let w = weights
            .entry(ev.site_key.to_string())
            .or_insert_with(|| sc.weights());
        if !id_names_item(&ev.event_type, w) || !valid_item_id(&ev.id) {
            continue;
        }
        let Some(it) = item_from_metadata(&ev.id, metadata) else {
            continue;
        };
        out.entry(ev.site_key.into_owned())
            .or_default()
            .entry(it.id.clone())
            .and_modify(|cur| cur.merge(&it))
            .or_insert(it);
    }
    out.into_iter()
        .map(|(site, items)| (site, items.into_values().collect()))
        .collect()
}

/// Merges the catalog fields of the events' metadata ([`catalog_updates`]) into a catalog;
/// returns the number of items updated.
pub async fn record_catalog<'a, C: CatalogWriter>(
    catalog: &C,
    config: &NectarConfig,
    lines: impl IntoIterator<Item = &'a str>,
) -> Result<usize, C::Error> {
    let updates = catalog_updates(config, lines);
    let mut n = 0;
    for (site, items) in &updates {
        catalog.merge_items(site, items).await?;
        n += items.len();
    }
    Ok(n)
}

/// A sink that also records histories (and, given a catalog, the items' metadata) after the
/// inner sink stored a batch (`nectar dev`).
#[derive(Debug)]
pub struct HistorySink<S, M> {
    inner: S,
    models: M,
    config: std::sync::Arc<NectarConfig>,
    catalog: Option<Catalog>,
}

impl<S, M> HistorySink<S, M> {
    /// Wraps `inner`.
    pub fn new(inner: S, models: M, config: std::sync::Arc<NectarConfig>) -> Self {
        Self {
            inner,
            models,
            config,
            catalog: None,
        }
    }

    /// Also merges collected events' metadata into `catalog` (pass the instance the recommend
    /// service reads, so rules see new items at once).
    pub fn with_catalog(mut self, catalog: Catalog) -> Self {
        self.catalog = Some(catalog);
        self
    }
}

impl<S: EventSink, M: ModelStore> EventSink for HistorySink<S, M> {
    async fn put(&self, batch: &Accepted) -> Result<(), SinkError> {
        self.inner.put(batch).await?;
        // Best effort: the event log is the truth; the history only freshens exclusions.
        if let Err(e) = record_batch_history(&self.models, &self.config, batch).await {
            tracing::warn!(error = %e, "Recent history not updated.");
        }
        if let Some(catalog) = &self.catalog {
            // Best effort too: the events stay in the log whatever the catalog does.
            if let Err(e) = record_catalog(
                catalog,
                &self.config,
                batch.events.iter().map(|e| e.line.as_str()),
            )
            .await
            {
                tracing::warn!(error = %e, "Catalog not updated from event metadata.");
            }
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
        // GIVEN a payload with two plays (out of order), a pause (no weight) and a served log
        let cfg = NectarConfig::embedded_default();
        let body = plays_of_u1(serde_json::json!(
            {"type": "recommendation_displayed", "id": "r1", "event_timestamp": T - 400}
        ));
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

    fn accepted(events: serde_json::Value) -> Accepted {
        let body = serde_json::json!({
            "peach_schema_version": "1.0.3", "sent_timestamp": T, "user_id": "u1",
            "client": {"id": "c1", "app_id": "a", "device": {"type": "phone"}},
            "events": events
        })
        .to_string();
        accept_payload(body.as_bytes(), "demo", T, &CollectLimits::default()).unwrap()
    }

    const T: i64 = 1_763_000_000_000;

    /// User u1's payload: plays of m2 and m1 (out of order), a pause of m3, then `last`.
    fn plays_of_u1(last: serde_json::Value) -> String {
        serde_json::json!({
            "peach_schema_version": "1.0.3", "sent_timestamp": T, "user_id": "u1",
            "client": {"id": "c1", "app_id": "a", "device": {"type": "phone"}},
            "events": [
                {"type": "media_play", "id": "m2", "event_timestamp": T - 1_000},
                {"type": "media_play", "id": "m1", "event_timestamp": T - 2_000},
                {"type": "media_pause", "id": "m3", "event_timestamp": T - 500},
                last
            ]
        })
        .to_string()
    }

    fn updates(a: &Accepted) -> BTreeMap<String, Vec<ItemMeta>> {
        let cfg = NectarConfig::embedded_default();
        catalog_updates(&cfg, a.events.iter().map(|e| e.line.as_str()))
    }

    #[test]
    fn metadata_of_item_events_becomes_catalog_entries() {
        // GIVEN a media play with full metadata and an article with a genres array
        let a = accepted(serde_json::json!([
            {"type": "media_play", "id": "m1", "event_timestamp": T - 1_000,
             "metadata": {"title": "Evening news", "category": "news", "genre": "ignored",
                          "available_from": T - 86_400_000, "available_until": T + 86_400_000,
                          "duration": 1800}},
            {"type": "article_start", "id": "a1", "event_timestamp": T - 900,
             "metadata": {"genres": ["sport", "football"]}},
            {"type": "media_pause", "id": "m2", "event_timestamp": T - 800,
             "metadata": {"genre": "drama", "available_from": "1700000000000"}}
        ]));
        // WHEN mapped
        let u = updates(&a);
        // THEN each item gets the fields its event gives, the category falling back to
        // genre and then to the first of genres
        let items = &u["demo"];
        assert_eq!(
            items,
            &vec![
                ItemMeta {
                    id: "a1".into(),
                    category: Some("sport".into()),
                    ..Default::default()
                },
                ItemMeta {
                    id: "m1".into(),
                    category: Some("news".into()),
                    available_from: Some(T - 86_400_000),
                    available_until: Some(T + 86_400_000),
                    title: Some("Evening news".into()),
                },
                ItemMeta {
                    id: "m2".into(),
                    category: Some("drama".into()),
                    available_from: Some(1_700_000_000_000),
                    ..Default::default()
                },
            ]
        );
    }

    #[test]
    fn recommendation_events_and_events_without_catalog_fields_give_nothing() {
        // GIVEN recommendation events with metadata, a media event with only unrelated
        // metadata, one with none, and one with an empty availability window
        let a = accepted(serde_json::json!([
            {"type": "recommendation_hit", "id": "reco-1", "event_timestamp": T - 1_000,
             "context": {"items": ["m1"], "hit_index": 0}, "metadata": {"title": "For you"}},
            {"type": "recommendation_displayed", "id": "reco-1", "event_timestamp": T - 999,
             "metadata": {"category": "rail"}},
            {"type": "media_play", "id": "m1", "event_timestamp": T - 900,
             "metadata": {"duration": 30}},
            {"type": "media_play", "id": "m2", "event_timestamp": T - 800},
            {"type": "media_play", "id": "m3", "event_timestamp": T - 700,
             "metadata": {"available_from": 20, "available_until": 10}},
            {"type": "app_open", "id": "x", "event_timestamp": T - 600,
             "metadata": {"title": "Not an item"}}
        ]));
        // WHEN mapped
        let u = updates(&a);
        // THEN no catalog entry comes out
        assert!(u.is_empty(), "{u:?}");
    }

    #[test]
    fn repeated_items_in_a_batch_merge_with_the_last_value_winning() {
        // GIVEN three events of one item: a title, then a category, then a new title
        let a = accepted(serde_json::json!([
            {"type": "media_play", "id": "m1", "event_timestamp": T - 3_000,
             "metadata": {"title": "Old", "category": "news"}},
            {"type": "media_heartbeat", "id": "m1", "event_timestamp": T - 2_000,
             "metadata": {"category": "sport"}},
            {"type": "media_end", "id": "m1", "event_timestamp": T - 1_000,
             "metadata": {"title": "New"}}
        ]));
        // WHEN mapped
        let u = updates(&a);
        // THEN one entry, each field from the last event that set it
        assert_eq!(
            u["demo"],
            vec![ItemMeta {
                id: "m1".into(),
                category: Some("sport".into()),
                title: Some("New".into()),
                ..Default::default()
            }]
        );
    }

    #[tokio::test]
    async fn collect_through_the_dev_sink_merges_metadata_into_the_shared_catalog() {
        use crate::model_store::LocalModelStore;
        // GIVEN a history sink over a catalog that already knows m1's window
        let dir = std::env::temp_dir().join(format!("nectar-hist-cat-{}", std::process::id()));
        let catalog = Catalog::in_memory();
        catalog
            .upsert(
                "demo",
                vec![ItemMeta {
                    id: "m1".into(),
                    available_until: Some(T + 1),
                    ..Default::default()
                }],
            )
            .unwrap();
        let sink = HistorySink::new(
            NullSink,
            LocalModelStore::new(&dir),
            std::sync::Arc::new(NectarConfig::embedded_default()),
        )
        .with_catalog(catalog.clone());
        let collect = crate::collect::CollectService::new(
            std::sync::Arc::new(NectarConfig::embedded_default()),
            sink,
        );
        // WHEN a payload with m1's category is collected (as `nectar dev` wires it)
        let body = serde_json::json!({
            "peach_schema_version": "1.0.3", "sent_timestamp": T,
            "client": {"id": "c1", "app_id": "a", "device": {"type": "phone"}},
            "events": [{"type": "media_play", "id": "m1", "event_timestamp": T - 1_000,
                        "metadata": {"category": "news"}}]
        })
        .to_string();
        let req = http::Request::builder()
            .method("POST")
            .uri("/v1/collect?s=demo")
            .header("content-type", "application/json")
            .body(bytes::Bytes::from(body))
            .unwrap();
        let resp = collect.handle(&req, T).await;
        assert_eq!(resp.status(), http::StatusCode::ACCEPTED);
        // THEN the same catalog instance (the one the recommend service reads) sees the
        // category at once, and the window is kept
        let m1 = catalog.get("demo", "m1").unwrap();
        assert_eq!(m1.category.as_deref(), Some("news"));
        assert_eq!(m1.available_until, Some(T + 1));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_batch_records_the_same_history_from_its_worked_out_mapping_as_from_its_lines() {
        use crate::model_store::{user_state, LocalModelStore};
        use nectar_model::event::accept_site_payload;
        // GIVEN one payload accepted with demo's weights (mapping worked out) and without
        let cfg = NectarConfig::embedded_default();
        let body = plays_of_u1(serde_json::json!(
            {"type": "media_dislike", "id": "m4", "event_timestamp": T - 400}
        ));
        let limits = CollectLimits::default();
        let weights = cfg.site("demo").unwrap().weights();
        let worked = accept_site_payload(body.as_bytes(), "demo", T, &limits, &weights).unwrap();
        assert!(worked.events.iter().all(|e| e.mapped.is_some()));
        let bare = accept_payload(body.as_bytes(), "demo", T, &limits).unwrap();
        let dirs: Vec<_> = (0..3)
            .map(|i| std::env::temp_dir().join(format!("nectar-batch-{}-{i}", std::process::id())))
            .collect();
        let stores: Vec<_> = dirs.iter().map(LocalModelStore::new).collect();
        // WHEN recorded from the batch, from the batch without mappings, and from its lines
        record_batch_history(&stores[0], &cfg, &worked)
            .await
            .unwrap();
        record_batch_history(&stores[1], &cfg, &bare).await.unwrap();
        record_history(
            &stores[2],
            &cfg,
            worked.events.iter().map(|e| e.line.as_str()),
        )
        .await
        .unwrap();
        // THEN all three hold the same history (newest first, the pause left out) and the
        // same rejected item
        for s in &stores {
            let st = user_state(s, "demo", "als", 0, "u1").await.unwrap();
            assert_eq!(st.history, vec!["m2".to_string(), "m1".to_string()]);
            assert_eq!(st.rejected, vec!["m4".to_string()]);
        }
        for d in dirs {
            let _ = std::fs::remove_dir_all(d);
        }
    }

    struct NullSink;

    impl EventSink for NullSink {
        async fn put(&self, _: &Accepted) -> Result<(), SinkError> {
            Ok(())
        }
    }
}
