//! The demo's clicking audience: the online half of the loop.
//!
//! Over the last [`DAYS`] simulated days, a sample of the demo's users open the app each day
//! and ask `for-you` for ten programmes, through the same recommend service as the server (so
//! the default config's experiment assigns them to `als` or `trending`, and every answer is
//! logged as a trusted `recommendation_served` event). The app reports what it showed
//! (`recommendation_displayed`, not always: a list can be scrolled past), and the user clicks
//! at most one programme, scanning down the list (the cascade model): an item is clicked with a
//! probability from the user's hidden tastes — the same favourite categories their history was
//! drawn from — times a position discount. A clicked programme is played (`media_play`, with
//! the recommendation id in its context), often to its end (`media_end`). The events go
//! through `POST /v1/collect` like the app's.
//!
//! Nothing here knows which variant is better; whatever the report shows comes from the
//! lists each variant served to these tastes.

use bytes::Bytes;
use futures::StreamExt;
use nectar_platform::collect::sink::EventSink;
use nectar_platform::collect::CollectService;
use nectar_platform::model_store::ModelStore;
use nectar_platform::recommend::RecommendService;
use rand::Rng;
use serde_json::json;

use super::{CATEGORIES, COLLECT_CONCURRENCY, DAY_MS, SITE};

/// Simulated days of app use, ending now.
pub(super) const DAYS: i64 = 7;
/// The endpoint the audience opens.
pub(super) const ENDPOINT: &str = "for-you";
/// Items asked for per visit.
const LIST_LEN: usize = 10;
/// Share of the audience that opens the app on a given day.
const DAILY_SHARE: f64 = 0.2;
/// Chance that a served list is actually on screen (and reported as displayed).
const SHOWN: f64 = 0.9;
/// Click chance of an item at the top of the list, by how it matches the user's tastes.
const ATTRACT_FAVOURITE: f64 = 0.08;
const ATTRACT_SECOND: f64 = 0.035;
const ATTRACT_OTHER: f64 = 0.006;
/// Position discount per rank (cascade: the user may stop looking).
const POSITION_DECAY: f64 = 0.85;
/// Chance that a click is followed by a play, and a play by its end.
const PLAY: f64 = 0.85;
const FINISH: f64 = 0.55;

/// What the audience did, counted by the simulation itself (the report counts it again from
/// the event log).
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Tally {
    pub visits: usize,
    pub displayed: usize,
    pub clicks: usize,
    pub plays: usize,
}

/// The category index of a demo item id (`<category>-<k>`).
fn category_of(item: &str) -> Option<usize> {
    let prefix = item.rsplit_once('-')?.0;
    CATEGORIES.iter().position(|c| *c == prefix)
}

/// The chance that a user with `tastes` clicks `item` at 0-based `position`, if they look.
fn click_chance(tastes: [usize; 2], item: &str, position: usize) -> f64 {
    let attract = match category_of(item) {
        Some(c) if c == tastes[0] => ATTRACT_FAVOURITE,
        Some(c) if c == tastes[1] => ATTRACT_SECOND,
        _ => ATTRACT_OTHER,
    };
    attract * POSITION_DECAY.powi(position as i32)
}

/// One visit's app events after the answer `answer` served at `t`: display, at most one click,
/// play and end.
fn visit_events(
    rng: &mut impl Rng,
    tastes: [usize; 2],
    answer: &serde_json::Value,
    t: i64,
    tally: &mut Tally,
) -> Vec<serde_json::Value> {
    let Some(rec_id) = answer["recommendation_id"].as_str() else {
        return Vec::new();
    };
    let items: Vec<&str> = answer["items"]
        .as_array()
        .map(|a| a.iter().filter_map(|i| i["id"].as_str()).collect())
        .unwrap_or_default();
    if items.is_empty() || !rng.random_bool(SHOWN) {
        return Vec::new();
    }
    tally.displayed += 1;
    let mut events = vec![json!({
        "type": "recommendation_displayed", "id": rec_id, "event_timestamp": t + 800,
        "context": {"items": items, "component": {"type": "carousel", "name": ENDPOINT}},
    })];
    let clicked = items
        .iter()
        .enumerate()
        .find(|(pos, item)| rng.random_bool(click_chance(tastes, item, *pos)));
    if let Some((pos, item)) = clicked {
        tally.clicks += 1;
        let hit_t = t + 3_000 + rng.random_range(0..20_000);
        events.push(json!({
            "type": "recommendation_hit", "id": rec_id, "event_timestamp": hit_t,
            "context": {"items": items, "item_id": item, "hit_index": pos,
                        "component": {"type": "carousel", "name": ENDPOINT}},
        }));
        if rng.random_bool(PLAY) {
            tally.plays += 1;
            let play_t = hit_t + 2_000;
            events.push(json!({
                "type": "media_play", "id": item, "event_timestamp": play_t,
                "context": {"id": rec_id, "type": "recommendation"},
            }));
            if rng.random_bool(FINISH) {
                events.push(json!({
                    "type": "media_end", "id": item, "event_timestamp": play_t + 1_200_000,
                }));
            }
        }
    }
    events
}

/// Runs the audience over the [`DAYS`] days before `now`; `tastes[u]` are user `u`'s two
/// favourite categories. Returns what it did.
pub(super) async fn run<M, S, C>(
    svc: &RecommendService<M, S>,
    collect: &CollectService<C>,
    tastes: &[[usize; 2]],
    now: i64,
    rng: &mut impl Rng,
) -> anyhow::Result<Tally>
where
    M: ModelStore,
    S: EventSink + 'static,
    C: EventSink,
{
    let mut tally = Tally::default();
    for day in (1..=DAYS).rev() {
        let day_start = now - day * DAY_MS;
        // Visits of the day, in time order; each user at most once a day.
        let mut visits: Vec<(usize, i64)> = Vec::new();
        for u in 0..tastes.len() {
            if rng.random_bool(DAILY_SHARE) {
                visits.push((u, day_start + rng.random_range(0..DAY_MS - 1_800_000)));
            }
        }
        visits.sort_by_key(|v| v.1);
        let mut bodies = Vec::with_capacity(visits.len());
        for (u, t) in visits {
            tally.visits += 1;
            let uri = format!("/v1/recommend/{ENDPOINT}?s={SITE}&user_id=user-{u}&n={LIST_LEN}");
            let answer = super::get_answer(svc, &uri, t).await?;
            let events = visit_events(rng, tastes[u], &answer, t, &mut tally);
            if !events.is_empty() {
                let sent = events
                    .iter()
                    .filter_map(|e| e["event_timestamp"].as_i64())
                    .max()
                    .unwrap_or(t);
                bodies.push((super::payload(u, sent, events).to_string(), sent));
            }
        }
        let mut answers = futures::stream::iter(bodies)
            .map(|(body, sent)| async move {
                let req = http::Request::post(format!("/v1/collect?s={SITE}"))
                    .header("content-type", "application/json")
                    .body(Bytes::from(body))?;
                let resp = collect.handle(&req, sent).await;
                anyhow::ensure!(
                    resp.status().is_success(),
                    "collect refused the audience's events: {}",
                    String::from_utf8_lossy(resp.body())
                );
                Ok(())
            })
            .buffer_unordered(COLLECT_CONCURRENCY);
        while let Some(r) = answers.next().await {
            r?;
        }
    }
    svc.served_log().flush().await;
    Ok(tally)
}

/// Reads the week back through the online report (the same code as `nectar report` and the
/// report task), prints the experiment's summary and writes the HTML page into the data dir.
pub(super) async fn print_report(
    data_dir: &std::path::Path,
    config: &nectar_platform::config::NectarConfig,
    now: i64,
) -> anyhow::Result<()> {
    use nectar_platform::report::{build_report, render, Format, ReportRequest};
    let store = nectar_platform::object_store::LocalStore::new(data_dir);
    let catalog = nectar_platform::catalog::Catalog::open(data_dir)?;
    let req = ReportRequest {
        site: SITE.to_string(),
        endpoint: Some(ENDPOINT.to_string()),
        since_ms: now - DAYS * DAY_MS,
        until_ms: now,
    };
    let report = build_report(&store, Some(&catalog), config, &req).await?;
    let pct = |x: Option<f64>| x.map_or("–".to_string(), |v| format!("{:.1} %", v * 100.0));
    let ci = |x: Option<[f64; 2]>| {
        x.map_or(String::new(), |[lo, hi]| {
            format!(" [{:.1}, {:.1}]", lo * 100.0, hi * 100.0)
        })
    };
    let p = |x: Option<f64>| x.map_or("–".to_string(), |v| format!("{v:.2e}"));
    println!("\nOnline report of {ENDPOINT} (nectar report; 95 % intervals):");
    for ep in &report.endpoints {
        println!(
            "  experiment {} (CTR over {} answers), sample-ratio p = {}",
            ep.experiment.as_deref().unwrap_or("-"),
            ep.ctr_basis,
            p(ep.srm_p_value)
        );
        for v in &ep.variants {
            let lift = match v.lift {
                None => "control".to_string(),
                Some(_) => format!(
                    "lift {}{}, p = {}, always-valid p = {}",
                    pct(v.lift),
                    ci(v.lift_ci),
                    p(v.p_value),
                    p(v.p_value_always_valid)
                ),
            };
            println!(
                "    {:<10} CTR {}{} ({} clicks / {} displayed, {} served); {lift}",
                v.variant,
                pct(v.ctr),
                ci(v.ctr_ci),
                v.clicks,
                v.displayed,
                v.served
            );
        }
    }
    let html = data_dir.join("report.html");
    std::fs::write(&html, render(&report, Format::Html))?;
    println!("  HTML report (charts): {}", html.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn clicks_follow_tastes_and_position() {
        let tastes = [2, 5];
        let fav = format!("{}-001", CATEGORIES[2]);
        let other = format!("{}-001", CATEGORIES[0]);
        assert_eq!(category_of(&fav), Some(2));
        assert_eq!(category_of("nope"), None);
        assert!(click_chance(tastes, &fav, 0) > click_chance(tastes, &other, 0));
        assert!(click_chance(tastes, &fav, 0) > click_chance(tastes, &fav, 5));
        assert!((click_chance(tastes, &fav, 1) - ATTRACT_FAVOURITE * POSITION_DECAY).abs() < 1e-12);
    }

    #[test]
    fn a_visit_reports_display_click_and_play_of_the_served_list() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let fav_items: Vec<_> = (0..10)
            .map(|k| format!("{}-{k:03}", CATEGORIES[3]))
            .collect();
        let answer = json!({
            "recommendation_id": "r1",
            "items": fav_items.iter().map(|i| json!({"id": i})).collect::<Vec<_>>(),
        });
        let mut tally = Tally::default();
        let mut clicked = 0;
        for _ in 0..1000 {
            let ev = visit_events(&mut rng, [3, 4], &answer, 1_000, &mut tally);
            for e in &ev {
                assert!(e["event_timestamp"].as_i64().unwrap() > 1_000);
                if e["type"] == "recommendation_hit" {
                    clicked += 1;
                    let pos = e["context"]["hit_index"].as_u64().unwrap() as usize;
                    assert_eq!(e["context"]["item_id"], fav_items[pos].as_str());
                    assert_eq!(e["id"], "r1");
                }
            }
        }
        // All ten are favourites: P(click | shown) = 1 − Π_k (1 − a·d^k), the cascade model.
        let expected = 1.0
            - (0..10)
                .map(|k| 1.0 - ATTRACT_FAVOURITE * POSITION_DECAY.powi(k))
                .product::<f64>();
        assert_eq!(tally.clicks, clicked);
        let rate = clicked as f64 / tally.displayed as f64;
        // ± 4 standard errors of a proportion over ~900 displays.
        let se = (expected * (1.0 - expected) / tally.displayed as f64).sqrt();
        assert!((rate - expected).abs() < 4.0 * se, "{rate} vs {expected}");
        assert!(tally.plays <= tally.clicks);
        // No recommendation id, no events.
        assert!(visit_events(&mut rng, [3, 4], &json!({}), 0, &mut tally).is_empty());
    }
}
