//! `nectar import`: a MovieLens-style CSV (`user_id,item_id,rating,timestamp`, seconds) → flat
//! `rating` events in the event log (data dir or S3), so a site can start from its history
//! (collect refuses old timestamps on purpose).
//!
//! Events get deterministic ids (the collect formula over site, user, `rating`, item and time)
//! and each hour partition a file named after its content, so importing the same file twice
//! rewrites the same objects and readers dedupe anything else.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use nectar_model::event::{event_id, is_valid_key};
use nectar_platform::jsonl::gzip_lines;
use nectar_platform::layout::{event_object_key, Hour};
use nectar_platform::store::{AnyStore, LocalStore, ObjectStore, S3Store};
use sha2::{Digest, Sha256};

/// Flags of `nectar import`.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// Site the events belong to.
    #[arg(long)]
    pub site: String,
    /// The CSV: `user_id,item_id,rating,timestamp` (seconds), with or without a header.
    #[arg(long)]
    pub csv: PathBuf,
    /// Data dir of the local event log.
    #[arg(long, env = "NECTAR_DATA_DIR", default_value = "./.nectar")]
    pub data_dir: PathBuf,
    /// Write to this S3 bucket instead of the data dir.
    #[arg(long, env = "NECTAR_BUCKET")]
    pub bucket: Option<String>,
}

/// One CSV row as a flat event line; `None` for a header. `collect_timestamp` is the event
/// time too, so that the same row always gives the same line (and file).
fn event_line(site: &str, line: &str) -> anyhow::Result<Option<(i64, String)>> {
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
    if user.is_empty() || item.is_empty() {
        bail!("empty user or item id");
    }
    let ts_ms = secs * 1000;
    let id = event_id(site, user, "rating", item, ts_ms);
    let (u, i) = (serde_json::to_string(user)?, serde_json::to_string(item)?);
    Ok(Some((
        ts_ms,
        format!(
            r#"{{"event_id":"{id}","site_key":"{site}","type":"rating","id":{i},"event_timestamp":{ts_ms},"collect_timestamp":{ts_ms},"sent_timestamp":{ts_ms},"user_id":{u},"peach_schema_version":"1.0.3","client":{{"id":{u},"app_id":"nectar-import"}},"props":{{"value":{value}}}}}"#
        ),
    )))
}

/// Runs the import.
pub async fn run(args: ImportArgs) -> anyhow::Result<()> {
    if !is_valid_key(&args.site) {
        bail!("site keys must match [a-z0-9_-]{{1,64}}");
    }
    let started = Instant::now();
    let text = std::fs::read_to_string(&args.csv)
        .with_context(|| format!("cannot read {}", args.csv.display()))?;
    let mut by_hour: BTreeMap<Hour, Vec<String>> = BTreeMap::new();
    let mut rows = 0u64;
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let parsed = event_line(&args.site, line)
            .with_context(|| format!("{}:{}", args.csv.display(), n + 1))?;
        if let Some((ts, ev)) = parsed {
            by_hour.entry(Hour::of(ts)).or_default().push(ev);
            rows += 1;
        }
    }
    let store = match &args.bucket {
        Some(b) => {
            let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
            AnyStore::S3(S3Store::new(aws_sdk_s3::Client::new(&aws), b.clone()))
        }
        None => AnyStore::Local(LocalStore::new(&args.data_dir)),
    };
    let site = args.site.as_str();
    let files = by_hour.len();
    let compressed: Vec<(String, Vec<u8>)> = tokio::task::spawn_blocking({
        let site = site.to_string();
        move || {
            by_hour
                .into_iter()
                .map(|(hour, lines)| {
                    let mut h = Sha256::new();
                    for l in &lines {
                        h.update(l.as_bytes());
                    }
                    let digest = hex::encode(&h.finalize()[..8]);
                    let key = event_object_key(&site, hour, "import", &digest);
                    (key, gzip_lines(lines.iter().map(String::as_str)))
                })
                .collect()
        }
    })
    .await?;
    let bytes: usize = compressed.iter().map(|(_, b)| b.len()).sum();
    futures::stream::iter(compressed)
        .map(|(key, body)| {
            let store = &store;
            async move { store.put(&key, Bytes::from(body)).await }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<()>>()
        .await?;
    let target = args.bucket.as_ref().map_or_else(
        || args.data_dir.display().to_string(),
        |b| format!("s3://{b}"),
    );
    println!(
        "imported {rows} rating events for site {site} into {target}: {files} hour files, {:.1} MB, {:.2} s",
        bytes as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nectar_model::mapping::{map_event_line, EventWeights};

    #[test]
    fn rows_become_rating_events_that_map_back() {
        assert!(event_line("demo", "user_id,item_id,rating,timestamp")
            .unwrap()
            .is_none());
        let (ts, line) = event_line("demo", "196,242,3,881250949").unwrap().unwrap();
        assert_eq!(ts, 881_250_949_000);
        let i = map_event_line(&line, &EventWeights::default()).unwrap();
        assert_eq!(
            (i.user.as_str(), i.item.as_str(), i.weight),
            ("196", "242", 3.0)
        );
        assert_eq!(i.event_id, event_id("demo", "196", "rating", "242", ts));
        // the same row gives the same line (same event id, same file on re-import)
        let again = event_line("demo", "196,242,3,881250949").unwrap().unwrap();
        assert_eq!(again.1, line);
        assert!(event_line("demo", "1,2,x,3").is_err());
        assert!(event_line("demo", "1,2").is_err());
    }
}
