//! `nectar demo`: the whole flow on the embedded backends, from nothing.
//!
//! A seeded synthetic broadcaster (a catalogue of programmes in categories with availability
//! windows, an audience with category tastes, four weeks of PEACH events) is sent through the
//! collect service into the local event log; the default tasks are trained (progress bar and
//! offline metrics from `nectar train`); sample answers of every endpoint are printed; then the
//! dev server serves everything (unless `--no-serve`).

use std::collections::HashMap;
use std::io::{BufWriter, IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use bytes::Bytes;
use futures::StreamExt;
use nectar_model::mapping::InteractionsView;
use nectar_platform::activity::HistorySink;
use nectar_platform::auth::AdminKeys;
use nectar_platform::catalog::{Catalog, ItemMeta};
use nectar_platform::collect::CollectService;
use nectar_platform::config::{EndpointKind, NectarConfig};
use nectar_platform::event_log::local::LocalEventLog;
use nectar_platform::event_log::reader::{read_window, TimeWindow};
use nectar_platform::model_store::{AnyModelStore, LocalModelStore};
use nectar_platform::object_store::LocalStore;
use nectar_platform::privacy::{ErasureSource, LocalErasureLog};
use nectar_platform::recommend::{RecommendOptions, RecommendService};
use nectar_platform::registry::{LocalRegistry, Registry};
use nectar_platform::train::READ_CONCURRENCY;
use rand::{Rng, SeedableRng};
use serde_json::json;

mod clicks;
mod diversity;

/// The recommend service's answer to `GET uri` at `t`, parsed; an error naming the URI and
/// the body unless it succeeded.
async fn get_answer<M, S>(
    svc: &RecommendService<M, S>,
    uri: &str,
    t: i64,
) -> anyhow::Result<serde_json::Value>
where
    M: nectar_platform::model_store::ModelStore,
    S: nectar_platform::collect::sink::EventSink + 'static,
{
    let resp = svc
        .handle(&http::Request::get(uri).body(Bytes::new())?, t)
        .await;
    anyhow::ensure!(
        resp.status().is_success(),
        "{uri} answered {}: {}",
        resp.status(),
        String::from_utf8_lossy(resp.body())
    );
    Ok(serde_json::from_slice(resp.body())?)
}

/// Flags of `nectar demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Address the dev server listens on afterwards.
    #[arg(long, env = "NECTAR_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Data dir of the embedded backends. Created with a marker file; a directory with that
    /// marker (a previous demo's) is cleared first, an empty one is used, any other is refused.
    #[arg(long, env = "NECTAR_DATA_DIR", default_value = "./.nectar-demo")]
    pub data_dir: PathBuf,
    /// Also write the demo's interactions as `train.csv`/`test.csv` (the `nectar eval` input,
    /// split as training splits) and its catalogue as `items.csv` (`nectar import --items`)
    /// into this directory.
    #[arg(long, value_name = "DIR")]
    pub export: Option<PathBuf>,
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

/// Collect requests in flight at once.
const COLLECT_CONCURRENCY: usize = 256;

/// The file that marks a data dir as the demo's own: only a directory holding it is cleared.
pub const DATA_DIR_MARKER: &str = ".nectar-demo-data-dir";

/// Makes `dir` an empty data dir of the demo. A directory the demo created (it holds
/// [`DATA_DIR_MARKER`]) is deleted and re-created; a missing or empty one is created or used;
/// anything else is refused, so a mistyped `--data-dir` never deletes a user's files.
pub fn prepare_data_dir(dir: &Path) -> anyhow::Result<()> {
    match std::fs::read_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(e).with_context(|| format!("--data-dir {}: cannot read it", dir.display()))
        }
        Ok(mut entries) => {
            if dir.join(DATA_DIR_MARKER).is_file() {
                std::fs::remove_dir_all(dir).with_context(|| {
                    format!(
                        "--data-dir {}: cannot clear the previous demo's data",
                        dir.display()
                    )
                })?;
            } else if entries.next().is_some() {
                bail!(
                    "--data-dir {}: the directory is not empty and was not created by nectar \
                     demo (it has no {DATA_DIR_MARKER} file), so the demo will not clear it; \
                     pass a new or empty directory, or delete this one yourself",
                    dir.display()
                );
            }
        }
    }
    std::fs::create_dir_all(dir)
        .with_context(|| format!("--data-dir {}: cannot create it", dir.display()))?;
    std::fs::write(
        dir.join(DATA_DIR_MARKER),
        "Created by `nectar demo`: the next `nectar demo` with this --data-dir deletes this \
         directory and everything in it.\n",
    )
    .with_context(|| format!("--data-dir {}: cannot write its marker", dir.display()))
}

/// Progress of the collect phase: a bar on a terminal, else a plain line every tenth of the
/// users (a log file or CI gets a few lines, not a redrawn bar).
enum Progress {
    Bar(indicatif::ProgressBar),
    Lines {
        total: usize,
        started: std::time::Instant,
    },
}

impl Progress {
    fn new(total: usize) -> Self {
        if std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::new(total as u64).with_message("collect");
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg:>8} [{bar:40}] {pos}/{len} users ({eta} left)",
                )
                .expect("template")
                .progress_chars("=> "),
            );
            Self::Bar(bar)
        } else {
            Self::Lines {
                total,
                started: std::time::Instant::now(),
            }
        }
    }

    /// `done` users (and `events` events) collected so far.
    fn update(&self, done: usize, events: usize) {
        match self {
            Self::Bar(b) => b.set_position(done as u64),
            Self::Lines { total, started } => {
                if done * 10 / (*total).max(1) > (done - 1) * 10 / (*total).max(1) {
                    eprintln!(
                        "collect: {done}/{total} users, {events} events ({:.1} s)",
                        started.elapsed().as_secs_f64()
                    );
                }
            }
        }
    }

    fn finish(self) {
        if let Self::Bar(b) = self {
            b.finish_and_clear();
        }
    }
}

fn item_id(cat: usize, k: usize) -> String {
    format!("{}-{k:03}", CATEGORIES[cat])
}

/// The synthetic audience: each user has one or two favourite categories; plays follow a Zipf
/// law inside a category.
struct Audience {
    zipf: Vec<f64>,
    zsum: f64,
}

impl Audience {
    fn new() -> Self {
        let zipf: Vec<f64> = (1..=ITEMS_PER_CATEGORY)
            .map(|r| 1.0 / (r as f64).powf(0.9))
            .collect();
        let zsum = zipf.iter().sum();
        Self { zipf, zsum }
    }

    /// One user's PEACH events over the four weeks before `now`: 5–39 plays, 40 % of them
    /// followed by a `media_end` 20 minutes later; and the user's two favourite categories
    /// (their hidden tastes, which the clicking audience of [`clicks`] uses again).
    fn user_events(&self, rng: &mut impl Rng, now: i64) -> (Vec<serde_json::Value>, [usize; 2]) {
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
            let mut x = rng.random::<f64>() * self.zsum;
            let mut k = 0;
            while k + 1 < ITEMS_PER_CATEGORY && x >= self.zipf[k] {
                x -= self.zipf[k];
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
        (events, [fav1, fav2])
    }
}

/// The collect payload the demo's player app sends for user `u`.
fn payload(u: usize, now: i64, events: Vec<serde_json::Value>) -> serde_json::Value {
    json!({
        "peach_schema_version": "1.0.3",
        "sent_timestamp": now,
        "user_id": format!("user-{u}"),
        "client": {"id": format!("client-{u}"), "app_id": "ch.demo.player", "device": {"type": "phone"}},
        "events": events,
    })
}

/// One payload of exactly `events` demo events (several users' worth, sent as one user), for
/// `nectar bench collect`.
pub fn synthetic_payload(events: usize, now: i64, seed: u64) -> Vec<u8> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let audience = Audience::new();
    let mut all = Vec::with_capacity(events + 80);
    while all.len() < events {
        all.extend(audience.user_events(&mut rng, now).0);
    }
    all.truncate(events);
    payload(0, now, all).to_string().into_bytes()
}

/// Runs the demo.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let config = Arc::new(diversity::with_diverse_endpoint(
        NectarConfig::embedded_default(),
    ));
    prepare_data_dir(&args.data_dir)?;
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

    // 2. Audience (see `Audience`), each user's events sent as one collect request.
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
    let audience = Audience::new();
    println!(
        "Collecting four weeks of PEACH events from {} users through POST /v1/collect \
         (each batch fsynced, as nectar dev acknowledges it)…",
        args.users
    );
    let progress = Progress::new(args.users);
    // Bodies are drawn in user order (the data depend on the seed only); several requests are
    // in flight at once, as from many apps, so the log's group commit shares the fsyncs.
    let mut tastes = Vec::with_capacity(args.users);
    let bodies: Vec<_> = (0..args.users)
        .map(|u| {
            let (events, fav) = audience.user_events(&mut rng, now);
            tastes.push(fav);
            (events.len(), payload(u, now, events).to_string())
        })
        .collect();
    let mut answers = futures::stream::iter(bodies)
        .map(|(n, body)| {
            let collect = &collect;
            async move {
                let req = http::Request::post(format!("/v1/collect?s={SITE}"))
                    .header("content-type", "application/json")
                    .body(Bytes::from(body))?;
                let resp = collect.handle(&req, now).await;
                anyhow::ensure!(
                    resp.status().is_success(),
                    "collect refused the demo payload: {}",
                    String::from_utf8_lossy(resp.body())
                );
                Ok(n)
            }
        })
        .buffer_unordered(COLLECT_CONCURRENCY);
    let (mut users_done, mut n_events) = (0usize, 0usize);
    while let Some(n) = answers.next().await {
        users_done += 1;
        n_events += n?;
        progress.update(users_done, n_events);
    }
    drop(answers);
    progress.finish();
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
        export_split: None,
        export_artifacts: None,
        metrics_file: None,
    })
    .await?;
    print_metrics(&args.data_dir, &config).await;
    if let Some(dir) = &args.export {
        export(&args.data_dir, &config, &items, dir).await?;
    }

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
            EndpointKind::Session => vec![format!("{},{}", item_id(2, 0), item_id(1, 3))],
        };
        for s in subjects {
            let uri = match ep.kind {
                EndpointKind::User => format!("/v1/recommend/{name}?s={SITE}&user_id={s}&n=5"),
                EndpointKind::Similar => format!("/v1/similar/{name}?s={SITE}&item_id={s}&n=5"),
                EndpointKind::Session => format!("/v1/session/{name}?s={SITE}&items={s}&n=5"),
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
                "  {uri}\n    → [{}]  variant {}, model {} v{}{}",
                list.join(", "),
                v["variant"].as_str().unwrap_or("-"),
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
    // 5. The audience uses the app for a week: the for-you experiment (als against trending)
    //    is served, displayed, clicked and played; then the online report reads it back.
    println!(
        "\nSimulating {} days of app use: users open {}, see ten programmes, click what \
         matches their tastes and play it (the default config's experiment: als against \
         trending)…",
        clicks::DAYS,
        clicks::ENDPOINT
    );
    let app = CollectService::new(
        config.clone(),
        HistorySink::new(
            LocalEventLog::start(&args.data_dir, "demo-app")?,
            AnyModelStore::Local(LocalModelStore::new(&args.data_dir)),
            config.clone(),
        ),
    );
    let tally = clicks::run(&svc, &app, &tastes, now, &mut rng).await?;
    drop(app);
    println!(
        "  {} visits, {} lists displayed, {} clicks, {} plays",
        tally.visits, tally.displayed, tally.clicks, tally.plays
    );
    clicks::print_report(&args.data_dir, &config, now).await?;
    // 6. The same ALS lists with the diversity rule, for the same users.
    diversity::serve(&svc, tastes.len(), now - 60_000).await?;
    let since = now - clicks::DAYS * DAY_MS;
    diversity::print(&diversity::report(&args.data_dir, &config, since, now).await?);
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
        workers: None,
    })
    .await
}

/// The task whose split `--export` reproduces (the `for-you` endpoint's model).
const EXPORT_TASK: &str = "als";

/// Writes `train.csv`, `test.csv` and `items.csv` into `dir`. The interactions are those of
/// the window the `als` task just trained on, read as training reads them (deduplicated,
/// sorted by time) and split as it splits them: the newest `holdout_fraction` is the test set.
/// Each file has one row per (user, item) pair: the summed event weight as `rating` and the
/// pair's newest time, i.e. the cells of the training matrix.
async fn export(
    data_dir: &Path,
    config: &NectarConfig,
    items: &[ItemMeta],
    dir: &Path,
) -> anyhow::Result<()> {
    let task = config
        .task(SITE, EXPORT_TASK)
        .context("the default config has no als task")?;
    let run = LocalRegistry::new(data_dir)
        .runs(SITE, EXPORT_TASK, 1)
        .await?
        .into_iter()
        .next()
        .context("the als task recorded no run")?;
    let window = TimeWindow {
        since_ms: run.window.since_ms,
        until_ms: run.window.until_ms,
    };
    let weights = config.site(SITE).context("site demo")?.weights();
    // The window as training read it, erasures included.
    let erased = LocalErasureLog::new(data_dir).erasure_set(SITE).await?;
    let log = read_window(
        &LocalStore::new(data_dir),
        SITE,
        window,
        &weights,
        READ_CONCURRENCY,
        &erased,
    )
    .await?
    .interactions;
    // The same cut as the train service's time holdout.
    let cut = log.len() - (log.len() as f64 * task.holdout_fraction).floor() as usize;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("--export {}: cannot create it", dir.display()))?;
    let n_train = write_ratings(&dir.join("train.csv"), log.view_rows(0..cut))?;
    let n_test = write_ratings(&dir.join("test.csv"), log.view_rows(cut..log.len()))?;
    write_items(&dir.join("items.csv"), items)?;
    println!(
        "\nExported to {d}: train.csv ({n_train} rows) and test.csv ({n_test} rows, the newest \
         {:.0} % of the interactions), items.csv ({} items). Try:\n  nectar eval --train \
         {d}/train.csv --test {d}/test.csv --algo item_knn",
        task.holdout_fraction * 100.0,
        items.len(),
        d = dir.display()
    );
    Ok(())
}

/// `user_id,item_id,rating,timestamp` (seconds), one row per pair, oldest first; returns the
/// row count.
pub(crate) fn write_ratings(path: &Path, view: InteractionsView<'_>) -> anyhow::Result<usize> {
    let mut cells: HashMap<(u32, u32), (f32, i64)> = HashMap::new();
    for r in view.rows {
        let c = cells.entry((r.user, r.item)).or_insert((0.0, i64::MIN));
        c.0 += r.weight;
        c.1 = c.1.max(r.timestamp_ms);
    }
    let mut cells: Vec<_> = cells.into_iter().collect();
    cells.sort_by_key(|&((u, i), (_, t))| (t, u, i));
    let mut w = BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
    );
    writeln!(w, "user_id,item_id,rating,timestamp")?;
    for ((u, i), (rating, t)) in &cells {
        let (user, item) = (&view.users[*u as usize], &view.items[*i as usize]);
        // The eval reader splits on commas and has no quoting.
        if [user, item].iter().any(|id| id.contains([',', '\n', '\r'])) {
            bail!("id {user:?} or {item:?} cannot be written to a ratings CSV");
        }
        writeln!(w, "{user},{item},{rating},{}", t.div_euclid(1000))?;
    }
    w.flush()?;
    Ok(cells.len())
}

/// The catalogue in `nectar import --items` columns (times in ms UTC).
fn write_items(path: &Path, items: &[ItemMeta]) -> anyhow::Result<()> {
    let mut w = csv::Writer::from_path(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    w.write_record([
        "item_id",
        "title",
        "category",
        "available_from",
        "available_until",
    ])?;
    let opt = |t: Option<i64>| t.map(|t| t.to_string()).unwrap_or_default();
    for it in items {
        w.write_record([
            it.id.as_str(),
            it.title.as_deref().unwrap_or(""),
            it.category.as_deref().unwrap_or(""),
            &opt(it.available_from),
            &opt(it.available_until),
        ])?;
    }
    w.flush()?;
    Ok(())
}

/// Prints each task's offline metrics from the local registry, when recorded.
/// The offline metrics of each task's newest run, read through the registry (as `nectar
/// train` recorded them), beside the popularity baseline of the same split.
async fn print_metrics(data_dir: &std::path::Path, config: &NectarConfig) {
    let registry = LocalRegistry::new(data_dir);
    let Some(site) = config.site(SITE) else {
        return;
    };
    let mut rows = Vec::new();
    for task in site.tasks.keys() {
        let Ok(runs) = registry.runs(SITE, task, 1).await else {
            continue;
        };
        for run in runs {
            let get = |k: &str| run.metrics.get(k).copied();
            let base = |k: &str| {
                run.baseline_metrics
                    .as_ref()
                    .and_then(|m| m.get(k).copied())
            };
            rows.push((
                task.clone(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("nectar-demo-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn data_dir_is_cleared_only_when_the_demo_made_it() {
        // GIVEN a directory with someone's file in it
        let dir = scratch("foreign");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("thesis.tex"), "precious").unwrap();
        // WHEN the demo is pointed at it THEN it refuses, naming the flag, and deletes nothing
        let e = format!("{:#}", prepare_data_dir(&dir).unwrap_err());
        assert!(
            e.starts_with("--data-dir ") && e.contains("not created by nectar demo"),
            "{e}"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("thesis.tex")).unwrap(),
            "precious"
        );
        assert!(!dir.join(DATA_DIR_MARKER).exists());

        // GIVEN a missing directory WHEN prepared THEN it is created with the marker
        let own = scratch("own");
        prepare_data_dir(&own).unwrap();
        assert!(own.join(DATA_DIR_MARKER).is_file());
        // AND a previous demo's data in it is cleared on the next run
        std::fs::create_dir_all(own.join("events")).unwrap();
        std::fs::write(own.join("events/old.jsonl.gz"), "x").unwrap();
        prepare_data_dir(&own).unwrap();
        assert!(!own.join("events").exists());
        assert!(own.join(DATA_DIR_MARKER).is_file());

        // GIVEN an empty existing directory WHEN prepared THEN it is adopted (marked)
        let empty = scratch("empty");
        std::fs::create_dir_all(&empty).unwrap();
        prepare_data_dir(&empty).unwrap();
        assert!(empty.join(DATA_DIR_MARKER).is_file());

        // GIVEN a file where the directory should be THEN it is refused, naming the flag
        let file = scratch("file");
        std::fs::write(&file, "x").unwrap();
        let e = format!("{:#}", prepare_data_dir(&file).unwrap_err());
        assert!(e.starts_with("--data-dir "), "{e}");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "x");

        for d in [&dir, &own, &empty] {
            std::fs::remove_dir_all(d).unwrap();
        }
        std::fs::remove_file(&file).unwrap();
    }

    #[test]
    fn exported_files_read_back_through_the_eval_and_import_parsers() {
        // GIVEN a log with a pair seen twice (a play and its end) and a second user
        let mut log = nectar_model::mapping::InteractionLog::new();
        for (user, item, weight, ts) in [
            ("user-1", "news-001", 1.0, 1_000_000),
            ("user-1", "news-001", 3.0, 2_000_000),
            ("user-2", "sport-002", 1.0, 1_500_000),
        ] {
            log.push(nectar_model::mapping::Interaction {
                user: user.into(),
                item: item.into(),
                weight,
                timestamp_ms: ts,
                event_id: String::new(),
            });
        }
        let dir = scratch("export");
        std::fs::create_dir_all(&dir).unwrap();
        // WHEN written as a ratings CSV
        let n = write_ratings(&dir.join("train.csv"), log.view()).unwrap();
        // THEN the pair is one row with the summed weight and its newest time, in seconds
        assert_eq!(n, 2);
        let text = std::fs::read_to_string(dir.join("train.csv")).unwrap();
        let rows = nectar_model::interactions::parse_ratings_csv(&text).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[1].user_id.as_str(), rows[1].rating, rows[1].timestamp),
            ("user-1", 4.0, 2000)
        );
        assert_eq!(
            (rows[0].item_id.as_str(), rows[0].timestamp),
            ("sport-002", 1500)
        );

        // AND items (a title with a comma, an open window) read back as the import reads them
        let items = vec![
            ItemMeta {
                id: "news-001".into(),
                category: Some("news".into()),
                available_from: Some(5),
                available_until: None,
                title: Some("News, late".into()),
            },
            ItemMeta {
                id: "sport-002".into(),
                category: None,
                available_from: None,
                available_until: Some(9),
                title: None,
            },
        ];
        write_items(&dir.join("items.csv"), &items).unwrap();
        let back = nectar_platform::catalog::csv::parse_items_csv(
            std::fs::File::open(dir.join("items.csv")).unwrap(),
        )
        .unwrap();
        assert_eq!(back, items);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn synthetic_payload_has_the_asked_event_count_and_is_accepted() {
        // GIVEN a 250-event payload WHEN collect parses it THEN all 250 are accepted
        let now = 1_795_000_000_000;
        let body = synthetic_payload(250, now, 1);
        let limits = nectar_model::event::CollectLimits::default();
        let acc = nectar_model::event::accept_payload(&body, "demo", now, &limits).unwrap();
        assert_eq!(acc.events.len(), 250);
    }
}
