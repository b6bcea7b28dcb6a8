//! `nectar demo`: the whole flow on the embedded backends, from nothing.
//!
//! A seeded synthetic broadcaster (a catalogue of programmes in categories with availability
//! windows, an audience with category tastes, four weeks of PEACH events) is sent through the
//! collect service into the local event log; the default tasks are trained (progress bar and
//! offline metrics from `nectar train`); sample answers of every endpoint are printed; then the
//! dev server serves everything (unless `--no-serve`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use nectar_platform::catalog::{Catalog, ItemMeta};
use nectar_platform::collect::CollectService;
use nectar_platform::config::{EndpointKind, NectarConfig};
use nectar_platform::history::HistorySink;
use nectar_platform::keys::AdminKeys;
use nectar_platform::local_log::LocalEventLog;
use nectar_platform::model_store::{AnyModelStore, LocalModelStore};
use nectar_platform::recommend::{RecommendOptions, RecommendService};
use rand::{Rng, SeedableRng};
use serde_json::json;

/// Flags of `nectar demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Address the dev server listens on afterwards.
    #[arg(long, env = "NECTAR_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Data dir of the embedded backends (created; a previous demo's data is replaced).
    #[arg(long, env = "NECTAR_DATA_DIR", default_value = "./.nectar-demo")]
    pub data_dir: PathBuf,
    /// Exit after printing instead of serving.
    #[arg(long)]
    pub no_serve: bool,
    /// Seed of the synthetic data.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Audience size.
    #[arg(long, default_value_t = 2000)]
    pub users: usize,
}

const CATEGORIES: [&str; 8] = [
    "news",
    "sport",
    "drama",
    "comedy",
    "documentary",
    "kids",
    "music",
    "science",
];
const ITEMS_PER_CATEGORY: usize = 75;
const DAY_MS: i64 = 86_400_000;

/// The site the demo fills (declared in the embedded default config).
const SITE: &str = "demo";

fn item_id(cat: usize, k: usize) -> String {
    format!("{}-{k:03}", CATEGORIES[cat])
}

/// Runs the demo.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let config = Arc::new(NectarConfig::embedded_default());
    if args.data_dir.exists() {
        std::fs::remove_dir_all(&args.data_dir)
            .with_context(|| format!("cannot clear {}", args.data_dir.display()))?;
    }
    std::fs::create_dir_all(&args.data_dir)?;
    let now = nectar_platform::now_ms();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(args.seed);

    // 1. Catalogue: programmes per category, a few expired or not yet available.
    let mut items = Vec::new();
    for (c, cat) in CATEGORIES.iter().enumerate() {
        for k in 0..ITEMS_PER_CATEGORY {
            let r: f64 = rng.random();
            let (from, until) = if r < 0.05 {
                (Some(now - 60 * DAY_MS), Some(now - DAY_MS)) // expired
            } else if r < 0.08 {
                (Some(now + 7 * DAY_MS), None) // announced
            } else {
                (Some(now - 90 * DAY_MS), Some(now + 30 * DAY_MS))
            };
            items.push(ItemMeta {
                id: item_id(c, k),
                category: Some(cat.to_string()),
                available_from: from,
                available_until: until,
                title: Some(format!("{} #{k}", cat.to_uppercase())),
            });
        }
    }
    let catalog = Catalog::open(&args.data_dir)?;
    catalog.upsert(SITE, items.clone())?;

    // 2. Audience: one or two favourite categories; plays follow a Zipf law inside a category.
    let log = LocalEventLog::start(&args.data_dir, format!("demo-{}", args.seed))?;
    // Recent histories are recorded as events arrive, as the archive λ does with Redis.
    let collect = CollectService::new(
        config.clone(),
        HistorySink::new(
            log,
            AnyModelStore::Local(LocalModelStore::new(&args.data_dir)),
            config.clone(),
        ),
    );
    let zipf: Vec<f64> = (1..=ITEMS_PER_CATEGORY)
        .map(|r| 1.0 / (r as f64).powf(0.9))
        .collect();
    let zsum: f64 = zipf.iter().sum();
    let mut n_events = 0usize;
    let bar = indicatif::ProgressBar::new(args.users as u64).with_message("collect");
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg:>8} [{bar:40}] {pos}/{len} users")
            .expect("template")
            .progress_chars("=> "),
    );
    for u in 0..args.users {
        let fav1 = rng.random_range(0..CATEGORIES.len());
        let fav2 = rng.random_range(0..CATEGORIES.len());
        let n = rng.random_range(5..40);
        let mut events = Vec::with_capacity(n * 2);
        for _ in 0..n {
            let r: f64 = rng.random();
            let cat = if r < 0.6 {
                fav1
            } else if r < 0.85 {
                fav2
            } else {
                rng.random_range(0..CATEGORIES.len())
            };
            let mut x = rng.random::<f64>() * zsum;
            let mut k = 0;
            while k + 1 < ITEMS_PER_CATEGORY && x >= zipf[k] {
                x -= zipf[k];
                k += 1;
            }
            let ts = now - rng.random_range(0..28 * DAY_MS);
            let id = item_id(cat, k);
            events.push(json!({"type": "media_play", "id": id, "event_timestamp": ts}));
            if rng.random_bool(0.4) {
                events.push(
                    json!({"type": "media_end", "id": id, "event_timestamp": ts + 1_200_000}),
                );
            }
        }
        n_events += events.len();
        let body = json!({
            "peach_schema_version": "1.0.3",
            "sent_timestamp": now,
            "user_id": format!("user-{u}"),
            "client": {"id": format!("client-{u}"), "app_id": "ch.demo.player", "device": {"type": "phone"}},
            "events": events,
        });
        let req = http::Request::post(format!("/v1/collect?s={SITE}"))
            .header("content-type", "application/json")
            .body(Bytes::from(body.to_string()))?;
        let resp = collect.handle(&req, now).await;
        anyhow::ensure!(
            resp.status() == http::StatusCode::ACCEPTED,
            "collect refused the demo payload: {}",
            String::from_utf8_lossy(resp.body())
        );
        bar.inc(1);
    }
    bar.finish();
    println!(
        "Collected {n_events} PEACH events from {} users over 4 weeks; catalogue of {} programmes in {} categories.",
        args.users,
        items.len(),
        CATEGORIES.len()
    );
    drop(collect);

    // 3. Train every default task (progress bar and offline metrics per task, gated against
    //    the current version, beside the popularity baseline fit on the same split).
    println!("\nTraining the default tasks (ndcg@10 on the newest 10% of each window):");
    crate::train::run(crate::train::TrainArgs {
        data_dir: args.data_dir.clone(),
        task: None,
        site: Some(SITE.to_string()),
        since: None,
        until: None,
        config: None,
        bucket: None,
        redis: None,
        registry_table: None,
    })
    .await?;
    print_metrics(&args.data_dir);

    // 4. Sample answers of every endpoint, through the same service as the server.
    let svc = RecommendService::new(
        config.clone(),
        AnyModelStore::Local(LocalModelStore::new(&args.data_dir)),
        Arc::new(LocalEventLog::start(&args.data_dir, "demo-served")?),
        catalog,
        AdminKeys::none(),
        RecommendOptions::default(),
    );
    println!("\nSample recommendations:");
    let site = config.site(SITE).context("site demo")?;
    for (name, ep) in &site.endpoints {
        let subjects: Vec<String> = match ep.kind {
            EndpointKind::User => vec!["user-1".into(), "user-7".into(), "new-visitor".into()],
            EndpointKind::Similar => vec![item_id(2, 0), item_id(1, 3)],
        };
        for s in subjects {
            let uri = match ep.kind {
                EndpointKind::User => format!("/v1/recommend/{name}?s={SITE}&user_id={s}&n=5"),
                EndpointKind::Similar => format!("/v1/similar/{name}?s={SITE}&item_id={s}&n=5"),
            };
            let req = http::Request::get(&uri).body(Bytes::new())?;
            let resp = svc.handle(&req, nectar_platform::now_ms()).await;
            let v: serde_json::Value = serde_json::from_slice(resp.body())?;
            let list: Vec<String> = v["items"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|i| i["id"].as_str().unwrap_or("?").to_string())
                        .collect()
                })
                .unwrap_or_default();
            println!(
                "  {uri}\n    → [{}]  model {} v{}{}",
                list.join(", "),
                v["model"]["name"].as_str().unwrap_or("-"),
                v["model"]["version"],
                if v["fallback"] == true {
                    "  (fallback)"
                } else {
                    ""
                }
            );
        }
    }
    println!(
        "\nDemo ready in {:.1} s (data in {}).",
        started.elapsed().as_secs_f64(),
        args.data_dir.display()
    );
    if args.no_serve {
        return Ok(());
    }
    crate::dev::run(crate::dev::DevArgs {
        addr: args.addr,
        data_dir: args.data_dir,
        config: None,
        stream: None,
        bucket: None,
        redis: None,
        no_served_log: false,
    })
    .await
}

/// Prints each task's offline metrics from the local registry, when recorded.
fn print_metrics(data_dir: &std::path::Path) {
    let Ok(files) = glob_json(&data_dir.join("registry")) else {
        return;
    };
    let mut rows = Vec::new();
    for f in files {
        let Ok(v) = std::fs::read_to_string(&f)
            .map_err(|_| ())
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).map_err(|_| ()))
        else {
            continue;
        };
        let m = &v["metrics"];
        if let (Some(task), Some(obj)) = (v["task"].as_str(), m.as_object()) {
            let get = |k: &str| obj.get(k).and_then(|x| x.as_f64());
            let base = |k: &str| v["baseline_metrics"][k].as_f64();
            rows.push((
                task.to_string(),
                get("precision@10"),
                get("recall@10"),
                get("ndcg@10"),
                get("coverage@10"),
                (base("precision@10"), base("ndcg@10")),
            ));
        }
    }
    if rows.is_empty() {
        return;
    }
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    let f = |x: Option<f64>| x.map_or("-".to_string(), |x| format!("{x:.4}"));
    println!(
        "\n  {:<10} {:>8} {:>8} {:>8} {:>8}   popularity baseline on the same split: {:>8} {:>8}",
        "task", "P@10", "R@10", "nDCG@10", "cov@10", "P@10", "nDCG@10"
    );
    for (t, p, r, n, c, (bp, bn)) in rows {
        println!(
            "  {t:<10} {:>8} {:>8} {:>8} {:>8}   {:>47} {:>8}",
            f(p),
            f(r),
            f(n),
            f(c),
            f(bp),
            f(bn)
        );
    }
}

fn glob_json(dir: &std::path::Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "json") {
                out.push(p);
            }
        }
    }
    Ok(out)
}
