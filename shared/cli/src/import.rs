//! `nectar import`: a MovieLens-style CSV (`user_id,item_id,rating,timestamp`, seconds) → flat
//! `rating` events in the event log (data dir or S3), so a site can start from its history
//! (collect refuses old timestamps on purpose); and/or (`--items FILE`) an items CSV → the
//! item catalog (data dir, or the DynamoDB table with `--catalog-table`), see
//! [`nectar_platform::catalog::csv`].
//!
//! Events get deterministic ids (the collect formula over site, user, `rating`, item and time)
//! and each hour partition a file named after its content, so importing the same file twice
//! rewrites the same objects and readers dedupe anything else.

use std::collections::HashMap;
use std::io::BufRead;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use crate::backends::Backends;
use anyhow::{bail, Context};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use nectar_model::event::{event_id, is_valid_key};
use nectar_model::mapping::WeightRule;
use nectar_platform::activity::HISTORY_LEN;
use nectar_platform::catalog::csv::{import_items_file, ItemsTarget};
use nectar_platform::catalog::Catalog;
use nectar_platform::config::NectarConfig;
use nectar_platform::event_log::layout::Hour;
use nectar_platform::event_log::writer::{put_objects, Partitions};
use nectar_platform::model_store::ModelStore;

/// Flags of `nectar import`: `--csv` (ratings), `--items` (catalog), or both.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("input").required(true).multiple(true).args(["csv", "items"])))]
pub struct ImportArgs {
    /// Site the events and items belong to (must be in the config).
    #[arg(long)]
    pub site: String,
    /// Ratings CSV: `user_id,item_id,rating,timestamp` (seconds), with or without a header.
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// Items CSV with a header: `item_id` (or `id`), `title`, `category`, `genres`
    /// (`|`-separated; the first is the category when there is none), `available_from`,
    /// `available_until` (ms UTC or ISO-8601); other columns are ignored.
    #[arg(long)]
    pub items: Option<PathBuf>,
    /// Data dir of the local event log and catalog.
    #[arg(long, env = "NECTAR_DATA_DIR", default_value = "./.nectar")]
    pub data_dir: PathBuf,
    /// Write the ratings to this S3 bucket instead of the data dir.
    #[arg(long, env = "NECTAR_BUCKET")]
    pub bucket: Option<String>,
    /// Write the items to this DynamoDB catalog table instead of the data dir.
    #[arg(long, env = "NECTAR_CATALOG_TABLE")]
    pub catalog_table: Option<String>,
    /// Declarative config file (the site must be in it); the embedded default when omitted.
    #[arg(long, env = "NECTAR_CONFIG")]
    pub config: Option<PathBuf>,
    /// Record users' recent histories in this Redis (`redis://…`, `rediss-cluster://…`)
    /// instead of the data dir's model store.
    #[arg(long, env = "NECTAR_REDIS_URL")]
    pub redis: Option<String>,
}

/// A parsed CSV row: `(user, item, rating, event time in ms)`; `None` for a header.
fn parse_row(line: &str) -> anyhow::Result<Option<(&str, &str, f64, i64)>> {
    let mut f = line.split(',').map(str::trim);
    let (Some(user), Some(item), Some(rating), Some(ts)) = (f.next(), f.next(), f.next(), f.next())
    else {
        bail!("expected user_id,item_id,rating,timestamp");
    };
    let Ok(secs) = ts.parse::<i64>() else {
        if ts.eq_ignore_ascii_case("timestamp") {
            return Ok(None);
        }
        bail!("timestamp {ts:?} is not a number of seconds");
    };
    let value: f64 = rating
        .parse()
        .with_context(|| format!("rating {rating:?} is not a number"))?;
    if !value.is_finite() {
        bail!("rating {rating:?} is not finite");
    }
    if user.is_empty() || item.is_empty() {
        bail!("empty user or item id");
    }
    Ok(Some((user, item, value, secs * 1000)))
}

/// One rating as a flat event line. `collect_timestamp` is the event time too, so that the same
/// row always gives the same line (and file).
fn event_line(site: &str, user: &str, item: &str, value: f64, ts_ms: i64) -> String {
    let id = event_id(site, user, "rating", item, ts_ms);
    let u = serde_json::to_string(user).expect("strings serialise");
    let i = serde_json::to_string(item).expect("strings serialise");
    format!(
        r#"{{"event_id":"{id}","site_key":"{site}","type":"rating","id":{i},"event_timestamp":{ts_ms},"collect_timestamp":{ts_ms},"sent_timestamp":{ts_ms},"user_id":{u},"peach_schema_version":"1.0.3","client":{{"id":{u},"app_id":"nectar-import"}},"props":{{"value":{value}}}}}"#
    )
}

/// A row kept compactly until its hour is written (24 bytes, ids interned).
#[derive(Clone, Copy)]
struct Rec {
    ts_ms: i64,
    value: f64,
    user: u32,
    item: u32,
}

#[derive(Default)]
struct Ids {
    names: Vec<String>,
    rows: HashMap<String, u32>,
}

impl Ids {
    fn intern(&mut self, id: &str) -> u32 {
        if let Some(&r) = self.rows.get(id) {
            return r;
        }
        let r = self.names.len() as u32;
        self.names.push(id.to_string());
        self.rows.insert(id.to_string(), r);
        r
    }
}

/// Hour files built and written per batch, to bound memory on large imports.
const BATCH_EVENTS: usize = 500_000;

/// Runs the import: the items first (every row is checked before any is written), then the
/// ratings.
pub async fn run(args: ImportArgs) -> anyhow::Result<()> {
    if !is_valid_key(&args.site) {
        bail!("site keys must match [a-z0-9_-]{{1,64}}");
    }
    let config = NectarConfig::load(args.config.as_deref())?;
    if config.site(&args.site).is_none() {
        bail!(
            "site {} is not in the config (sites: {})",
            args.site,
            config.sites.keys().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    if let Some(items) = &args.items {
        import_items(&args, items).await?;
    }
    if let Some(csv) = &args.csv {
        import_ratings(&args, &config, csv).await?;
    }
    Ok(())
}

/// Per user (row in the interned ids): the newest [`HISTORY_LEN`] items, newest first, of
/// time-sorted rows — what the archive function keeps for streamed events.
fn recent_histories(recs: &[Rec], n_users: usize) -> Vec<Vec<u32>> {
    let mut out = vec![Vec::new(); n_users];
    for r in recs.iter().rev() {
        let h: &mut Vec<u32> = &mut out[r.user as usize];
        if h.len() < HISTORY_LEN {
            h.push(r.item);
        }
    }
    out
}

/// Records the imported users' recent histories in the model store (so `exclude_consumed`
/// knows what they rated), when `rating` events are interactions for the site. Returns the
/// number of users recorded.
async fn record_histories(
    args: &ImportArgs,
    config: &NectarConfig,
    recs: &[Rec],
    names: &(Vec<String>, Vec<String>),
) -> anyhow::Result<Option<usize>> {
    let weights = config.site(&args.site).map(|s| s.weights());
    let counts = match weights.as_ref().and_then(|w| w.rule("rating")) {
        Some(WeightRule::Fixed(w)) => w > 0.0,
        Some(WeightRule::PropsValue) => true,
        None => false,
    };
    if !counts {
        return Ok(None);
    }
    if args.redis.is_none() && args.bucket.is_some() {
        // An S3 import without --redis has no model store to feed.
        return Ok(None);
    }
    let models = Backends::new(&args.data_dir)
        .models(args.redis.as_deref())
        .await?;
    let histories = recent_histories(recs, names.0.len());
    let n = histories.iter().filter(|h| !h.is_empty()).count();
    futures::stream::iter(histories.into_iter().enumerate())
        .filter(|(_, h)| std::future::ready(!h.is_empty()))
        .map(|(u, h)| {
            let models = &models;
            // Oldest first, as append_history expects.
            let items: Vec<String> = h
                .iter()
                .rev()
                .map(|&i| names.1[i as usize].clone())
                .collect();
            let user = &names.0[u];
            async move {
                models
                    .append_history(&args.site, user, &items, HISTORY_LEN)
                    .await
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<()>>()
        .await
        .context("cannot record the users' recent histories")?;
    Ok(Some(n))
}

async fn import_items(args: &ImportArgs, path: &std::path::Path) -> anyhow::Result<()> {
    let started = Instant::now();
    let (target, name) = match &args.catalog_table {
        Some(t) => (
            ItemsTarget::Dynamo(Backends::new(&args.data_dir).catalog_table(t).await),
            format!("DynamoDB table {t}"),
        ),
        None => (
            ItemsTarget::Local(Catalog::open(&args.data_dir)?),
            args.data_dir.join("catalog").display().to_string(),
        ),
    };
    let n = import_items_file(path, &args.site, &target).await?;
    println!(
        "imported {n} items for site {} into {name}, {:.2} s",
        args.site,
        started.elapsed().as_secs_f64()
    );
    if args.catalog_table.is_none() {
        eprintln!("A running nectar dev loads the catalog at start-up: restart it to see them.");
    }
    Ok(())
}

async fn import_ratings(
    args: &ImportArgs,
    config: &NectarConfig,
    csv: &std::path::Path,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let file =
        std::fs::File::open(csv).with_context(|| format!("cannot read {}", csv.display()))?;
    let (mut users, mut items) = (Ids::default(), Ids::default());
    let mut recs: Vec<Rec> = Vec::new();
    for (n, line) in std::io::BufReader::with_capacity(1 << 20, file)
        .lines()
        .enumerate()
    {
        let line = line.with_context(|| format!("cannot read {}", csv.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let parsed = parse_row(&line).with_context(|| format!("{}:{}", csv.display(), n + 1))?;
        if let Some((user, item, value, ts_ms)) = parsed {
            recs.push(Rec {
                ts_ms,
                value,
                user: users.intern(user),
                item: items.intern(item),
            });
        }
    }
    // Stable: rows of the same millisecond keep their file order, so files are reproducible.
    recs.sort_by_key(|r| r.ts_ms);
    let store = Backends::new(&args.data_dir)
        .events(args.bucket.as_deref())
        .await;
    let rows = recs.len();
    let recs = Arc::new(recs);
    let names = Arc::new((users.names, items.names));
    let (mut files, mut bytes, mut start) = (0usize, 0usize, 0usize);
    while start < rows {
        // A batch ends on an hour boundary once it holds BATCH_EVENTS rows.
        let mut end = (start + BATCH_EVENTS).min(rows);
        let last_hour = Hour::of(recs[end - 1].ts_ms);
        while end < rows && Hour::of(recs[end].ts_ms) == last_hour {
            end += 1;
        }
        let built: Vec<(String, Vec<u8>)> = tokio::task::spawn_blocking({
            let (recs, names, site) = (recs.clone(), names.clone(), args.site.clone());
            move || build_files(&site, &recs[start..end], &names.0, &names.1)
        })
        .await?;
        files += built.len();
        bytes += built.iter().map(|(_, b)| b.len()).sum::<usize>();
        let objects: Vec<(String, Bytes)> = built
            .into_iter()
            .map(|(key, body)| (key, Bytes::from(body)))
            .collect();
        for result in put_objects(&store, objects).await {
            result?;
        }
        start = end;
    }
    let target = args.bucket.as_ref().map_or_else(
        || args.data_dir.display().to_string(),
        |b| format!("s3://{b}"),
    );
    println!(
        "imported {rows} rating events for site {} into {target}: {files} hour files, {:.1} MB, {:.2} s",
        args.site,
        bytes as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    if let Some(n) = record_histories(args, config, &recs, &names).await? {
        println!(
            "recorded the recent histories of {n} users (newest {HISTORY_LEN} items each) in {}",
            args.redis.as_deref().map_or_else(
                || "the data dir's model store".to_string(),
                |_| "Redis".to_string()
            )
        );
    }
    Ok(())
}

/// The hour files of time-sorted rows: key (named after the content) and gzip body.
fn build_files(
    site: &str,
    recs: &[Rec],
    users: &[String],
    items: &[String],
) -> Vec<(String, Vec<u8>)> {
    let lines: Vec<String> = recs
        .iter()
        .map(|r| {
            event_line(
                site,
                &users[r.user as usize],
                &items[r.item as usize],
                r.value,
                r.ts_ms,
            )
        })
        .collect();
    let mut parts = Partitions::new();
    for (r, line) in recs.iter().zip(&lines) {
        parts.push(site, r.ts_ms, line, ());
    }
    parts
        .iter()
        .map(|p| (p.key("import", &p.content_seq()), p.member()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use nectar_model::mapping::{map_event_line, EventWeights};
    use nectar_platform::model_store::LocalModelStore;

    #[test]
    fn rows_become_rating_events_that_map_back() {
        assert!(parse_row("user_id,item_id,rating,timestamp")
            .unwrap()
            .is_none());
        let (u, i, v, ts) = parse_row("196,242,3,881250949").unwrap().unwrap();
        assert_eq!((u, i, v, ts), ("196", "242", 3.0, 881_250_949_000));
        let line = event_line("demo", u, i, v, ts);
        let x = map_event_line(&line, &EventWeights::default()).unwrap();
        assert_eq!(
            (x.user.as_str(), x.item.as_str(), x.weight),
            ("196", "242", 3.0)
        );
        assert_eq!(x.event_id, event_id("demo", "196", "rating", "242", ts));
        assert_eq!(x.timestamp_ms, ts);
        // the same row gives the same line (same event id, same file on re-import)
        assert_eq!(event_line("demo", u, i, v, ts), line);
        assert!(line.contains(r#""props":{"value":3}"#), "{line}");
        assert!(parse_row("1,2,x,3").is_err());
        assert!(parse_row("1,2").is_err());
        assert!(parse_row(",2,1,3").is_err());
    }

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: ImportArgs,
    }

    fn parse(argv: &[&str]) -> Result<ImportArgs, clap::Error> {
        use clap::Parser;
        Cli::try_parse_from(["import"].iter().chain(argv)).map(|c| c.args)
    }

    #[test]
    fn items_and_ratings_flags_work_alone_or_together() {
        // GIVEN the flag sets of an items import, a ratings import, and both
        // WHEN parsed
        let a = parse(&["--site", "demo", "--items", "i.csv"]).unwrap();
        let b = parse(&["--site", "demo", "--csv", "r.csv"]).unwrap();
        let c = parse(&["--site", "demo", "--csv", "r.csv", "--items", "i.csv"]).unwrap();
        // THEN each names what it imports, and neither is an error
        assert_eq!(
            (a.items.as_deref(), a.csv.as_deref()),
            (Some(std::path::Path::new("i.csv")), None)
        );
        assert_eq!(
            (b.items.as_deref(), b.csv.as_deref()),
            (None, Some(std::path::Path::new("r.csv")))
        );
        assert!(c.items.is_some() && c.csv.is_some());
        assert!(parse(&["--site", "demo"]).is_err());
    }

    #[tokio::test]
    async fn a_site_missing_from_the_config_is_refused() {
        // GIVEN a valid site key that the embedded config does not know
        let args = parse(&["--site", "nope", "--items", "/nonexistent.csv"]).unwrap();
        // WHEN imported
        let e = run(args).await.unwrap_err().to_string();
        // THEN the error says so before any file is read
        assert!(e.contains("site nope is not in the config"), "{e}");
    }

    #[tokio::test]
    async fn imported_ratings_become_the_users_recent_histories() {
        // GIVEN a ratings CSV (out of time order) and an empty data dir
        let dir = std::env::temp_dir().join(format!("nectar-import-hist-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let csv = dir.join("r.csv");
        std::fs::write(
            &csv,
            "user_id,item_id,rating,timestamp\n1,a,4,1000\n1,c,5,3000\n2,a,3,1500\n1,b,2,2000\n",
        )
        .unwrap();
        let args = parse(&[
            "--site",
            "demo",
            "--csv",
            csv.to_str().unwrap(),
            "--data-dir",
            dir.to_str().unwrap(),
        ])
        .unwrap();
        // WHEN imported
        run(args).await.unwrap();
        // THEN each user's history holds their items, newest first, in the model store
        let store = LocalModelStore::new(&dir);
        let st = store
            .user_states("demo", "als", 0, &["1".into(), "2".into(), "3".into()])
            .await
            .unwrap();
        assert_eq!(st[0].history, ["c", "b", "a"]);
        assert_eq!(st[1].history, ["a"]);
        assert!(st[2].history.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn recent_histories_keep_the_newest_items() {
        let recs: Vec<Rec> = (0..150)
            .map(|i| Rec {
                ts_ms: i,
                value: 1.0,
                user: 0,
                item: i as u32,
            })
            .collect();
        let h = recent_histories(&recs, 2);
        assert_eq!(h[0].len(), HISTORY_LEN);
        assert_eq!(h[0][0], 149);
        assert_eq!(h[0][HISTORY_LEN - 1], 50);
        assert!(h[1].is_empty());
    }

    #[test]
    fn hour_files_are_named_after_their_content() {
        let users = vec!["u".to_string()];
        let items = vec!["a".to_string(), "b".to_string()];
        let hour0 = 1_795_305_600_000;
        let recs = [
            Rec {
                ts_ms: hour0,
                value: 1.0,
                user: 0,
                item: 0,
            },
            Rec {
                ts_ms: hour0 + 1000,
                value: 2.0,
                user: 0,
                item: 1,
            },
            Rec {
                ts_ms: hour0 + 3_600_000,
                value: 4.5,
                user: 0,
                item: 1,
            },
        ];
        let files = build_files("demo", &recs, &users, &items);
        assert_eq!(files.len(), 2);
        assert!(files[0]
            .0
            .starts_with("events/site=demo/date=2026-11-22/hour=00/import-"));
        assert!(files[1]
            .0
            .starts_with("events/site=demo/date=2026-11-22/hour=01/import-"));
        assert_eq!(build_files("demo", &recs, &users, &items)[0].0, files[0].0);
        let other = build_files("demo", &recs[..1], &users, &items);
        assert_ne!(other[0].0, files[0].0);
    }
}
