//! `nectar bench report`: generates a data dir with an online-evaluation event set of a given
//! size (served answers, displays, hits, plays, the catalog), then times `build_report` on it
//! end to end (list, read, gunzip, parse, attribute, report) and the HTML rendering.
//!
//! The set is the embedded default config's site `demo`: `for-you` (experiment `als` /
//! `trending`, the former clicked 15 % more, the latter 15 % less) gets 80 % of the answers,
//! `more-like-this` the rest. 60 % of answers are displayed; the clicks (`--hits` in
//! expectation) land on displayed answers, biased towards the top of the list; 60 % of clicks
//! are followed by a play a minute later, half of those by an end 10 minutes after; 0.5 % of
//! hits are orphans. Served events are built by the served log's own code, client events by
//! collect's validator, and all are written by the embedded event log writer.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, ensure, Context};
use nectar_model::event::{accept_payload, Accepted, CollectLimits};
use nectar_platform::catalog::{Catalog, ItemMeta};
use nectar_platform::collect::sink::EventSink;
use nectar_platform::config::NectarConfig;
use nectar_platform::event_log::local::LocalEventLog;
use nectar_platform::object_store::LocalStore;
use nectar_platform::recommend::served_log::ServedAnswer;
use nectar_platform::recommend::RecommendAnswer;
use nectar_platform::report::{build_report, render_html, ReportRequest};
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

const SITE: &str = "demo";
const ITEMS: usize = 5_000;
const USERS: u64 = 100_000;
const LIST: usize = 10;
const GENRES: [&str; 12] = [
    "news",
    "sport",
    "drama",
    "comedy",
    "documentary",
    "kids",
    "music",
    "film",
    "series",
    "culture",
    "science",
    "weather",
];
/// Events per write of the embedded log.
const BATCH_EVENTS: usize = 20_000;

/// Flags of `nectar bench report`.
#[derive(Debug, clap::Args)]
pub struct ReportBenchArgs {
    /// The data dir to generate (new or empty; kept afterwards, so `nectar report --data-dir`
    /// can render it).
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Served answers.
    #[arg(long, default_value_t = 1_000_000)]
    pub served: u64,
    /// Clicks (`recommendation_hit`), in expectation.
    #[arg(long, default_value_t = 100_000)]
    pub hits: u64,
    /// Days the answers are spread over, ending now.
    #[arg(long, default_value_t = 7)]
    pub days: u32,
    /// RNG seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

/// What the generator wrote.
#[derive(Debug, Default)]
struct Written {
    served: u64,
    displays: u64,
    hits: u64,
    plays: u64,
    events: u64,
}

fn item(i: usize) -> String {
    format!("m-{i:05}")
}

/// One answer and what its user did with it, as a served event and one collect payload.
fn answer(
    rng: &mut impl Rng,
    ts: i64,
    click_rate: f64,
    out: &mut Accepted,
    w: &mut Written,
) -> anyhow::Result<()> {
    let user = format!("u-{}", rng.random_range(0..USERS));
    let (endpoint, variant, model) = if rng.random::<f64>() < 0.8 {
        if rng.random::<bool>() {
            ("for-you", "als", "als")
        } else {
            ("for-you", "trending", "trending")
        }
    } else {
        ("more-like-this", "default", "item_knn")
    };
    // Popular items are served far more often (a cubic skew over the catalog).
    let items: Vec<String> = (0..LIST)
        .map(|_| item((rng.random::<f64>().powi(3) * ITEMS as f64) as usize))
        .collect();
    let rec_id = format!("r-{:032x}", rng.random::<u128>());
    let fallback = rng.random::<f64>() < 0.05;
    let body = RecommendAnswer::of_ids(&rec_id, endpoint, variant, (model, 1), &items, fallback);
    out.events.push(
        ServedAnswer {
            site_key: SITE,
            user_id: Some(&user),
            client_id: None,
            subject: &user,
            context_item: None,
            body: &body,
        }
        .to_event(ts),
    );
    w.served += 1;
    let lift = match variant {
        "als" => 1.15,
        "trending" => 0.85,
        _ => 1.0,
    };
    let mut events: Vec<Value> = Vec::new();
    if rng.random::<f64>() < 0.6 {
        events.push(json!({ "type": "recommendation_displayed", "id": rec_id, "event_timestamp": ts + 2_000, "context": { "items": items } }));
        w.displays += 1;
        if rng.random::<f64>() < (click_rate * lift / 0.6).min(1.0) {
            let index = (rng.random::<f64>().powi(2) * LIST as f64) as usize;
            let orphan = rng.random::<f64>() < 0.005;
            let id = if orphan {
                format!("r-{:032x}", rng.random::<u128>())
            } else {
                rec_id.clone()
            };
            events.push(json!({ "type": "recommendation_hit", "id": id, "event_timestamp": ts + 20_000, "context": { "items": items, "hit_index": index } }));
            w.hits += 1;
            if rng.random::<f64>() < 0.6 {
                events.push(json!({ "type": "media_play", "id": items[index], "event_timestamp": ts + 80_000 }));
                w.plays += 1;
                if rng.random::<bool>() {
                    events.push(json!({ "type": "media_end", "id": items[index], "event_timestamp": ts + 680_000 }));
                }
            }
        }
    }
    if let Some(last) = events.last() {
        let sent = last["event_timestamp"].as_i64().unwrap_or(ts);
        let payload = json!({
            "peach_schema_version": "1.0.3",
            "sent_timestamp": sent,
            "user_id": user,
            "client": { "id": format!("c-{user}"), "type": "mobileapp", "app_id": "bench" },
            "events": events,
        });
        let accepted = accept_payload(
            payload.to_string().as_bytes(),
            SITE,
            sent,
            &CollectLimits::default(),
        )
        .map_err(|r| anyhow::anyhow!("a generated payload was refused: {}", r.message()))?;
        out.events.extend(accepted.events);
    }
    Ok(())
}

async fn generate(a: &ReportBenchArgs, since_ms: i64, until_ms: i64) -> anyhow::Result<Written> {
    let catalog = Catalog::open(&a.data_dir)?;
    let items: Vec<ItemMeta> = (0..ITEMS)
        .map(|i| ItemMeta {
            id: item(i),
            category: Some(GENRES[i % GENRES.len()].to_string()),
            ..ItemMeta::default()
        })
        .collect();
    catalog.upsert(SITE, items)?;
    let log = LocalEventLog::start(&a.data_dir, "bench")?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(a.seed);
    let click_rate = a.hits as f64 / a.served as f64;
    let step = (until_ms - since_ms) as f64 / a.served as f64;
    let mut w = Written::default();
    let mut batch = Accepted {
        site_key: SITE.to_string(),
        events: Vec::new(),
    };
    for i in 0..a.served {
        // The last answers' plays and ends may fall after `until`: inside the attribution
        // window, as in a live log.
        let ts = since_ms + (i as f64 * step) as i64;
        answer(&mut rng, ts, click_rate, &mut batch, &mut w)?;
        if batch.events.len() >= BATCH_EVENTS {
            w.events += batch.events.len() as u64;
            log.put(&batch).await?;
            batch.events.clear();
        }
    }
    w.events += batch.events.len() as u64;
    log.put(&batch).await?;
    Ok(w)
}

/// Generates the data dir, times the report, and returns the figures.
pub async fn run(a: &ReportBenchArgs) -> anyhow::Result<Value> {
    ensure!(a.served > 0, "--served must be at least 1");
    ensure!(
        a.hits <= a.served / 2,
        "--hits must be at most half of --served"
    );
    ensure!(a.days > 0, "--days must be at least 1");
    if a.data_dir.join("events").exists() {
        bail!(
            "--data-dir {}: it already holds an event log; pass a new or empty directory",
            a.data_dir.display()
        );
    }
    std::fs::create_dir_all(&a.data_dir)
        .with_context(|| format!("--data-dir {}: cannot create it", a.data_dir.display()))?;
    let until_ms = nectar_platform::now_ms();
    let since_ms = until_ms - i64::from(a.days) * 86_400_000;
    let t = Instant::now();
    let w = generate(a, since_ms, until_ms).await?;
    let generate_s = t.elapsed().as_secs_f64();

    let cfg = NectarConfig::embedded_default();
    let store = LocalStore::new(&a.data_dir);
    let req = ReportRequest {
        site: SITE.to_string(),
        endpoint: None,
        since_ms,
        until_ms,
    };
    let t = Instant::now();
    let catalog = Catalog::open(&a.data_dir)?;
    let report = build_report(&store, Some(&catalog), &cfg, &req).await?;
    let report_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let html = render_html(&report);
    let html_s = t.elapsed().as_secs_f64();
    let served: u64 = report
        .endpoints
        .iter()
        .flat_map(|e| &e.variants)
        .map(|v| v.served)
        .sum();
    let clicks: u64 = report
        .endpoints
        .iter()
        .flat_map(|e| &e.variants)
        .map(|v| v.clicks)
        .sum();
    let r3 = |x: f64| (x * 1000.0).round() / 1000.0;
    Ok(json!({
        "bench": "report",
        "what": "build_report end to end on a generated data dir (list, read, gunzip, parse, attribute, report, with the catalog), then render_html",
        "profile": super::bench::profile(),
        "data_dir": a.data_dir.display().to_string(),
        "generated": {
            "served": w.served, "displays": w.displays, "hits": w.hits, "plays": w.plays,
            "events": w.events, "seconds": r3(generate_s),
        },
        "report": {
            "served": served, "clicks": clicks, "orphan_hits": report.orphan_hits,
            "endpoints": report.endpoints.len(),
        },
        "build_report_s": r3(report_s),
        "render_html_s": r3(html_s),
        "html_bytes": html.len(),
    }))
}
