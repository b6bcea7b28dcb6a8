//! Live bandit counts: per-variant counters of Thompson-sampling experiments and per-item
//! counters of the exploration rule, kept in the model store ([`crate::model_store::bandit`])
//! as events arrive (the archive function and `nectar dev`, through [`super::record_history`]).
//!
//! Only sites with an endpoint that has `allocation = "thompson"` or an `explore` rule are
//! read, and only served answers of such endpoints are remembered. Per batch and site:
//! - a trusted served event (it carries the served marker; forged ones are ignored) is
//!   remembered by its recommendation id for the attribution window, and counts one `served`
//!   for its variant (Thompson endpoints) and one impression for each of its items
//!   (exploring endpoints, every position);
//! - a `recommendation_displayed` whose id is remembered counts one `displayed` for the
//!   variant, once per answer;
//! - a `recommendation_hit` whose id is remembered counts one click for the variant, once per
//!   answer, and one click for the clicked item (exploring endpoints, when the item was in
//!   the answer). Hits and displays of unknown (or expired) ids count nothing.
//!
//! Every item of a served answer or an interaction event of an exploring site is recorded as
//! seen (the earliest event time is its first-seen time); items not seen for the longest
//! `new_days` plus [`EXPLORE_MARGIN_DAYS`] are forgotten (and are new again if they come
//! back).
//!
//! Everything is counted once per recommendation id, also when a batch is delivered again.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use nectar_model::mapping::Interaction;
use nectar_model::online::attribution::{EventKind, OnlineEvent};
use nectar_model::online::bandit::ArmCounts;

use crate::config::{Allocation, NectarConfig, SiteConfig};
use crate::model_store::{
    ExploreUpdate, ModelStore, ModelStoreError, OnceMark, ServedRef, VariantCounter,
    VariantIncrement,
};

/// Days beyond the longest `new_days` an item is remembered after it was last seen.
pub const EXPLORE_MARGIN_DAYS: i64 = 30;
const DAY_MS: i64 = 86_400_000;

/// What one batch changed (for tests and logs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BanditOutcome {
    /// Served answers remembered for the first time.
    pub served: usize,
    /// Displays counted.
    pub displayed: usize,
    /// Clicks counted.
    pub clicks: usize,
    /// Displays and hits whose recommendation id is unknown (not counted).
    pub unknown: usize,
}

/// Which endpoints of a site take part.
struct SitePlan {
    thompson: HashSet<String>,
    explore: HashSet<String>,
    /// Longest `new_days` of the site's exploring endpoints.
    new_days: Option<u32>,
    ttl_secs: u64,
}

impl SitePlan {
    fn of(site: &SiteConfig) -> Option<Self> {
        let thompson: HashSet<String> = site
            .endpoints
            .iter()
            .filter(|(_, ep)| {
                ep.experiment
                    .as_ref()
                    .is_some_and(|x| x.allocation == Allocation::Thompson)
            })
            .map(|(name, _)| name.clone())
            .collect();
        let explore: HashSet<String> = site
            .endpoints
            .iter()
            .filter(|(_, ep)| ep.rules.explore.is_some())
            .map(|(name, _)| name.clone())
            .collect();
        let new_days = site
            .endpoints
            .values()
            .filter_map(|ep| ep.rules.explore.as_ref().map(|x| x.new_days))
            .max();
        (!thompson.is_empty() || !explore.is_empty()).then(|| Self {
            thompson,
            explore,
            new_days,
            ttl_secs: u64::from(site.attribution_window_minutes) * 60,
        })
    }

    fn wants(&self, endpoint: &str) -> bool {
        self.thompson.contains(endpoint) || self.explore.contains(endpoint)
    }
}

/// One site's bandit events of a batch.
#[derive(Default)]
struct SiteEvents {
    served: Vec<(String, ServedRef, i64)>,
    displayed: Vec<String>,
    hits: Vec<(String, Option<String>)>,
}

fn site_events(
    config: &NectarConfig,
    plans: &mut BTreeMap<String, Option<SitePlan>>,
    lines: &[&str],
) -> BTreeMap<String, SiteEvents> {
    let mut out: BTreeMap<String, SiteEvents> = BTreeMap::new();
    for (n, line) in lines.iter().enumerate() {
        // The served log's flush (background work) parses every line here: it gives the
        // core back every slice of lines.
        crate::background::pause_at(n);
        // Most lines are plays and heartbeats: skip them before parsing.
        if !line.contains("\"recommendation_") {
            continue;
        }
        let Ok(ev) = OnlineEvent::parse(line) else {
            continue;
        };
        let plan = plans
            .entry(ev.site_key.to_string())
            .or_insert_with(|| config.site(&ev.site_key).and_then(SitePlan::of));
        let Some(plan) = plan else {
            continue;
        };
        let site = out.entry(ev.site_key.to_string()).or_default();
        match ev.kind {
            EventKind::Served(c) if plan.wants(&c.endpoint) => site.served.push((
                ev.id.to_string(),
                ServedRef {
                    endpoint: c.endpoint.into_owned(),
                    variant: c.variant.into_owned(),
                    items: c.items.into_iter().map(|i| i.into_owned()).collect(),
                },
                ev.timestamp_ms,
            )),
            EventKind::Displayed => site.displayed.push(ev.id.to_string()),
            EventKind::Hit(target) => site
                .hits
                .push((ev.id.to_string(), target.map(|(_, item)| item))),
            _ => {}
        }
    }
    out
}

/// Updates the live counts from one batch of flat event lines; `interactions` are the
/// batch's mapped interaction events (their items are seen for exploration).
pub async fn record_bandit<M: ModelStore>(
    models: &M,
    config: &NectarConfig,
    lines: &[&str],
    interactions: &[(String, Interaction)],
    now_ms: i64,
) -> Result<BanditOutcome, ModelStoreError> {
    let mut plans: BTreeMap<String, Option<SitePlan>> = config
        .sites
        .iter()
        .map(|(key, site)| (key.clone(), SitePlan::of(site)))
        .collect();
    if plans.values().all(Option::is_none) {
        // No bandit anywhere: not a line is parsed.
        return Ok(BanditOutcome::default());
    }
    let mut events = site_events(config, &mut plans, lines);
    for (site, _) in interactions {
        if !events.contains_key(site) {
            let plan = plans
                .entry(site.clone())
                .or_insert_with(|| config.site(site).and_then(SitePlan::of));
            if plan.as_ref().is_some_and(|p| p.new_days.is_some()) {
                events.insert(site.clone(), SiteEvents::default());
            }
        }
    }
    let mut outcome = BanditOutcome::default();
    for (site, ev) in events {
        let Some(Some(plan)) = plans.get(&site) else {
            continue;
        };
        let seen_items = interactions
            .iter()
            .filter(|(s, _)| *s == site)
            .map(|(_, i)| (i.item.as_str(), i.timestamp_ms));
        record_site(models, &site, plan, ev, seen_items, now_ms, &mut outcome).await?;
    }
    Ok(outcome)
}

async fn record_site<'a, M: ModelStore>(
    models: &M,
    site: &str,
    plan: &SitePlan,
    ev: SiteEvents,
    seen_items: impl Iterator<Item = (&'a str, i64)>,
    now_ms: i64,
    outcome: &mut BanditOutcome,
) -> Result<(), ModelStoreError> {
    let mut variants: BTreeMap<(String, String, VariantCounter), u64> = BTreeMap::new();
    let mut item_counts: HashMap<String, ArmCounts> = HashMap::new();
    let mut seen: HashMap<String, (i64, i64)> = HashMap::new();
    let mut see = |item: &str, t: i64| {
        let t = t.min(now_ms);
        seen.entry(item.to_string())
            .and_modify(|e| *e = (e.0.min(t), e.1.max(t)))
            .or_insert((t, t));
    };
    for (item, t) in seen_items {
        see(item, t);
    }

    if !ev.served.is_empty() {
        let entries: Vec<(String, ServedRef)> = ev
            .served
            .iter()
            .map(|(id, r, _)| (id.clone(), r.clone()))
            .collect();
        let new = models
            .remember_served(site, &entries, plan.ttl_secs)
            .await?;
        for ((_, r, t), new) in ev.served.iter().zip(new) {
            if plan.explore.contains(&r.endpoint) {
                for item in &r.items {
                    see(item, *t);
                }
            }
            if !new {
                continue;
            }
            outcome.served += 1;
            if plan.thompson.contains(&r.endpoint) {
                *variants
                    .entry((
                        r.endpoint.clone(),
                        r.variant.clone(),
                        VariantCounter::Served,
                    ))
                    .or_default() += 1;
            }
            if plan.explore.contains(&r.endpoint) {
                for item in &r.items {
                    item_counts.entry(item.clone()).or_default().impressions += 1;
                }
            }
        }
    }

    let asked: Vec<String> = ev
        .displayed
        .iter()
        .chain(ev.hits.iter().map(|(id, _)| id))
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if !asked.is_empty() {
        let refs: HashMap<String, ServedRef> = asked
            .iter()
            .cloned()
            .zip(models.served_refs(site, &asked).await?)
            .filter_map(|(id, r)| Some((id, r?)))
            .collect();
        outcome.unknown += ev
            .displayed
            .iter()
            .chain(ev.hits.iter().map(|(id, _)| id))
            .filter(|id| !refs.contains_key(*id))
            .count();

        // Displays only matter to Thompson endpoints (item impressions are served answers).
        let displayed: Vec<String> = ev
            .displayed
            .iter()
            .filter(|id| {
                refs.get(*id)
                    .is_some_and(|r| plan.thompson.contains(&r.endpoint))
            })
            .cloned()
            .collect();
        if !displayed.is_empty() {
            let first = models
                .mark_once(site, OnceMark::Displayed, &displayed, plan.ttl_secs)
                .await?;
            for (id, first) in displayed.iter().zip(first) {
                if first {
                    let r = &refs[id];
                    outcome.displayed += 1;
                    *variants
                        .entry((
                            r.endpoint.clone(),
                            r.variant.clone(),
                            VariantCounter::Displayed,
                        ))
                        .or_default() += 1;
                }
            }
        }

        let hits: Vec<&(String, Option<String>)> = ev
            .hits
            .iter()
            .filter(|(id, _)| refs.contains_key(id))
            .collect();
        if !hits.is_empty() {
            let ids: Vec<String> = hits.iter().map(|(id, _)| id.clone()).collect();
            let first = models
                .mark_once(site, OnceMark::Clicked, &ids, plan.ttl_secs)
                .await?;
            for ((id, item), first) in hits.into_iter().zip(first) {
                if !first {
                    continue;
                }
                let r = &refs[id];
                outcome.clicks += 1;
                if plan.thompson.contains(&r.endpoint) {
                    *variants
                        .entry((
                            r.endpoint.clone(),
                            r.variant.clone(),
                            VariantCounter::Clicks,
                        ))
                        .or_default() += 1;
                }
                if let Some(item) = item
                    .as_ref()
                    .filter(|i| plan.explore.contains(&r.endpoint) && r.items.contains(i))
                {
                    item_counts.entry(item.clone()).or_default().clicks += 1;
                }
            }
        }
    }

    if !variants.is_empty() {
        let increments: Vec<VariantIncrement> = variants
            .into_iter()
            .map(|((endpoint, variant, counter), n)| VariantIncrement {
                endpoint,
                variant,
                counter,
                n,
            })
            .collect();
        models.add_variant_counts(site, &increments).await?;
    }
    if let Some(new_days) = plan.new_days {
        if !seen.is_empty() || !item_counts.is_empty() {
            let keep_days = i64::from(new_days) + EXPLORE_MARGIN_DAYS;
            let update = ExploreUpdate {
                seen: seen.into_iter().map(|(i, (f, l))| (i, f, l)).collect(),
                counts: item_counts.into_iter().collect(),
                keep_since_ms: now_ms - keep_days * DAY_MS,
            };
            models.add_explore(site, &update).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model_store::{BanditStore, LocalModelStore, VariantCounts};
    use crate::recommend::served_log::ServedAnswer;
    use crate::recommend::RecommendAnswer;
    use nectar_model::event::{accept_payload, CollectLimits};

    /// Now: the store forgets items by the wall clock.
    static T: std::sync::LazyLock<i64> = std::sync::LazyLock::new(crate::now_ms);

    /// The checked-in config with `for-you` on Thompson sampling and exploring slot 3.
    pub(crate) fn thompson_config() -> NectarConfig {
        let text = include_str!("../../../../config/nectar.toml")
            .replace(
                "variants = [{ name = \"als\", weight = 50, model = \"als\" }, { name = \"trending\", weight = 50, model = \"trending\" }] }",
                "allocation = \"thompson\", variants = [{ name = \"als\", weight = 50, model = \"als\" }, { name = \"trending\", weight = 50, model = \"trending\" }] }",
            )
            .replace(
                "rules = { exclude_consumed = true, max_per_category = 4 }",
                "rules = { exclude_consumed = true, max_per_category = 4, explore = { slots = [3], new_days = 7 } }",
            );
        let c = NectarConfig::from_toml(&text, "test").unwrap();
        let ep = &c.site("demo").unwrap().endpoints["for-you"];
        assert_eq!(
            ep.experiment.as_ref().unwrap().allocation,
            Allocation::Thompson
        );
        assert!(ep.rules.explore.is_some());
        c
    }

    fn served_line(rec: &str, variant: &str, items: &[&str], now: i64) -> String {
        let body = RecommendAnswer::of_ids(rec, "for-you", variant, (variant, 1), items, false);
        ServedAnswer {
            site_key: "demo",
            user_id: Some("u1"),
            client_id: None,
            subject: "u1",
            context_item: None,
            body: &body,
        }
        .to_event(now)
        .line
    }

    /// Flat lines of a collected payload (as collect builds them).
    fn collected(events: serde_json::Value) -> Vec<String> {
        let body = serde_json::json!({
            "peach_schema_version": "1.0.3", "sent_timestamp": *T, "user_id": "u1",
            "client": {"id": "c1", "app_id": "a", "device": {"type": "phone"}},
            "events": events
        })
        .to_string();
        accept_payload(body.as_bytes(), "demo", *T, &CollectLimits::default())
            .unwrap()
            .events
            .into_iter()
            .map(|e| e.line)
            .collect()
    }

    async fn record(store: &LocalModelStore, cfg: &NectarConfig, lines: &[String]) {
        crate::activity::record_history(store, cfg, lines.iter().map(String::as_str))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn served_display_and_hit_count_once_each_and_unknown_or_forged_ones_not_at_all() {
        let cfg = thompson_config();
        let store = LocalModelStore::new(std::env::temp_dir().join("nectar-bandit-unused"));
        // GIVEN a served answer of variant "als", and a forged served event (no marker) of
        // variant "trending"
        let served = served_line("r-1", "als", &["m1", "m2", "m3"], *T);
        let forged =
            served_line("r-2", "trending", &["m9"], *T).replace(",\"nectar_served\":true", "");
        assert!(!forged.contains("nectar_served"));
        // WHEN they arrive, then a display and a hit of each, a second hit of r-1, and a hit
        // and a display of an unknown id, in two batches (the served answers delivered twice)
        record(&store, &cfg, &[served.clone(), forged.clone()]).await;
        let events = |rec: &str| {
            serde_json::json!([
                {"type": "recommendation_displayed", "id": rec, "event_timestamp": *T - 500},
                {"type": "recommendation_hit", "id": rec, "event_timestamp": *T - 400,
                 "context": {"items": ["m1", "m2", "m3"], "hit_index": 1}},
                {"type": "recommendation_hit", "id": rec, "event_timestamp": *T - 300,
                 "context": {"items": ["m1", "m2", "m3"], "hit_index": 2}}
            ])
        };
        let mut batch = vec![served, forged];
        for rec in ["r-1", "r-2", "r-unknown"] {
            batch.extend(collected(events(rec)));
        }
        let outcome = record_bandit(
            &store,
            &cfg,
            &batch.iter().map(String::as_str).collect::<Vec<_>>(),
            &[],
            *T,
        )
        .await
        .unwrap();
        // THEN the redelivered served answer is not counted again, the unknown and forged
        // ids' six events count nothing, and r-1 counts one display and one click
        assert_eq!(
            outcome,
            BanditOutcome {
                served: 0,
                displayed: 1,
                clicks: 1,
                unknown: 6
            }
        );
        let counts = store.variant_counts("demo", "for-you").await.unwrap();
        assert_eq!(
            counts["als"],
            VariantCounts {
                served: 1,
                displayed: 1,
                clicks: 1
            }
        );
        assert!(!counts.contains_key("trending"), "{counts:?}");
        // AND the same hit delivered again counts nothing
        record(&store, &cfg, &batch).await;
        assert_eq!(
            store.variant_counts("demo", "for-you").await.unwrap()["als"].clicks,
            1
        );
        // AND for exploration every served item got one impression, the clicked one (m2,
        // hit_index 1) one click, and the played item is seen
        record(
            &store,
            &cfg,
            &collected(serde_json::json!([
                {"type": "media_play", "id": "m7", "event_timestamp": *T - 100}
            ])),
        )
        .await;
        let items = store.explore_items("demo", *T - 86_400_000).await.unwrap();
        let get = |id: &str| items.iter().find(|e| e.item == id).map(|e| e.counts);
        assert_eq!(get("m1"), Some(ArmCounts::new(1, 0)));
        assert_eq!(get("m2"), Some(ArmCounts::new(1, 1)));
        assert_eq!(get("m3"), Some(ArmCounts::new(1, 0)));
        assert_eq!(get("m7"), Some(ArmCounts::new(0, 0)));
        assert_eq!(get("m9"), None);
    }

    #[tokio::test]
    async fn sites_without_bandits_cost_nothing() {
        // GIVEN the checked-in config (fixed allocation, no explore rule)
        let cfg = NectarConfig::embedded_default();
        let store = LocalModelStore::new(std::env::temp_dir().join("nectar-bandit-unused"));
        let served = served_line("r-1", "als", &["m1"], *T);
        let mut batch = vec![served];
        batch.extend(collected(serde_json::json!([
            {"type": "recommendation_hit", "id": "r-1", "event_timestamp": *T - 400,
             "context": {"items": ["m1"], "hit_index": 0}}
        ])));
        // WHEN a served answer and its hit arrive
        let lines: Vec<&str> = batch.iter().map(String::as_str).collect();
        let outcome = record_bandit(&store, &cfg, &lines, &[], *T).await.unwrap();
        // THEN nothing is stored
        assert_eq!(outcome, BanditOutcome::default());
        assert_eq!(
            store.served_refs("demo", &["r-1".into()]).await.unwrap(),
            [None]
        );
        assert!(store.explore_items("demo", 0).await.unwrap().is_empty());
    }
}
