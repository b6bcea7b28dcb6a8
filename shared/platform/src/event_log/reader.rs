//! The event-log reader of training: lists the hour partitions of a window (one listing per
//! day, concurrently), reads and decodes the files concurrently (bounded), maps events to
//! interactions and dedupes them by `event_id` (the log is at-least-once). Days with a
//! compaction manifest are read from their Parquet parts instead (plus any raw object that
//! arrived after the manifest), with the same result (`compact`).

use chrono::{DateTime, Duration, NaiveDate, Utc};
use futures::{StreamExt, TryStreamExt};
use nectar_model::mapping::{
    dedupe_key, map_event_line, Deduper, EventWeights, Interaction, InteractionLog, MapStats, Skip,
};

use crate::event_log::jsonl::gunzip_text;
use crate::event_log::layout::{day_prefix, EVENTS_PREFIX};
use crate::object_store::{ObjectStore, StoreError};
use crate::privacy::ErasureSet;

/// A time window `[since_ms, until_ms)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWindow {
    /// Start, ms UTC, inclusive.
    pub since_ms: i64,
    /// End, ms UTC, exclusive.
    pub until_ms: i64,
}

/// What a read produced.
#[derive(Debug, Clone, Default)]
pub struct ReadOutcome {
    /// Deduplicated interactions in the window, sorted by time (ties in reading order).
    pub interactions: InteractionLog,
    /// Mapping counts (`duplicates` after the global dedupe).
    pub stats: MapStats,
    /// Files read.
    pub files: u64,
    /// Compressed bytes read.
    pub bytes: u64,
    /// Unreadable gzip members skipped (torn by a writer that crashed mid-append: those
    /// events were never acknowledged); the rest of each file is read.
    pub torn_members: u64,
    /// Interactions in the partitions read but outside the window (boundary hours).
    pub out_of_window: u64,
    /// Interactions dropped because their user (or client) was erased
    /// ([`crate::privacy::ErasureSet`]).
    pub erased: u64,
}

pub(crate) const HOUR_MS: i64 = 3_600_000;

/// The suffix of event-log files; anything else under `events/` (such as the `.torn` sidecar
/// of a local file whose tail was cut) is not read.
pub(crate) const LOG_FILE_SUFFIX: &str = ".jsonl.gz";

/// The start (ms UTC) of the hour partition an event-log key belongs to.
pub fn partition_start_ms(key: &str) -> Option<i64> {
    let date = key.split("/date=").nth(1)?.get(..10)?;
    let hour: i64 = key.split("/hour=").nth(1)?.get(..2)?.parse().ok()?;
    let d = NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
    let midnight = d.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis();
    Some(midnight + hour * HOUR_MS)
}

pub(crate) fn dates_of(w: TimeWindow) -> Vec<String> {
    let (Some(start), Some(end)) = (
        DateTime::<Utc>::from_timestamp_millis(w.since_ms),
        DateTime::<Utc>::from_timestamp_millis(w.until_ms - 1),
    ) else {
        return Vec::new();
    };
    let (mut d, last) = (start.date_naive(), end.date_naive());
    let mut out = Vec::new();
    while d <= last {
        out.push(d.format("%Y-%m-%d").to_string());
        d += Duration::days(1);
    }
    out
}

/// The event-log files of `site` whose hour partition overlaps the window, in key order.
pub async fn list_window<O: ObjectStore>(
    store: &O,
    site: &str,
    window: TimeWindow,
    concurrency: usize,
) -> Result<Vec<String>, StoreError> {
    if window.until_ms <= window.since_ms {
        return Ok(Vec::new());
    }
    let lists: Vec<Vec<String>> = futures::stream::iter(dates_of(window))
        .map(|date| async move { store.list(&day_prefix(site, &date)).await })
        .buffered(concurrency.max(1))
        .try_collect()
        .await?;
    let mut keys: Vec<String> = lists
        .into_iter()
        .flatten()
        .filter(|k| {
            k.ends_with(LOG_FILE_SUFFIX)
                && partition_start_ms(k).is_some_and(|start| {
                    start < window.until_ms && start + HOUR_MS > window.since_ms
                })
        })
        .collect();
    keys.sort();
    Ok(keys)
}

/// What one source of a read (a raw file, or a compacted day) decoded to, in reading order.
#[derive(Debug, Default)]
pub(crate) struct FileResult {
    /// Dedupe key and interaction (its `event_id` string dropped to save memory).
    pub(crate) interactions: Vec<(u128, Interaction)>,
    pub(crate) stats: MapStats,
    pub(crate) files: u64,
    pub(crate) bytes: u64,
    pub(crate) torn_members: u64,
}

/// One source of a window read, in reading order.
pub(crate) enum Source {
    /// A raw event-log file.
    Raw(String),
    /// A compacted day.
    #[cfg(feature = "parquet")]
    Compacted(Box<crate::event_log::compact::CompactedDay>),
}

pub(crate) fn decode_file(key: &str, data: &[u8], weights: &EventWeights) -> FileResult {
    let file = gunzip_text(data);
    if !file.is_clean() {
        tracing::warn!(
            %key,
            torn_members = file.torn_members,
            members_read = file.members,
            "Skipped unreadable gzip members (a writer crashed mid-append); the rest of the file was read."
        );
    }
    let mut stats = MapStats::default();
    let mut interactions = Vec::new();
    for line in file.text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        stats.lines += 1;
        match map_event_line(line, weights) {
            Ok(mut i) => {
                let key = dedupe_key(&i.event_id);
                i.event_id = String::new();
                interactions.push((key, i));
            }
            Err(Skip::Malformed(_)) => stats.malformed += 1,
            Err(_) => stats.skipped += 1,
        }
    }
    FileResult {
        interactions,
        stats,
        files: 1,
        bytes: data.len() as u64,
        torn_members: file.torn_members,
    }
}

/// Reads the given files concurrently (at most `concurrency` in flight), maps and dedupes.
/// Interactions outside `window` are dropped and counted.
pub async fn read_files<O: ObjectStore>(
    store: &O,
    keys: &[String],
    window: TimeWindow,
    weights: &EventWeights,
    concurrency: usize,
) -> Result<ReadOutcome, StoreError> {
    let sources: Vec<Source> = keys.iter().cloned().map(Source::Raw).collect();
    read_sources(
        store,
        &sources,
        window,
        weights,
        concurrency,
        &ErasureSet::default(),
    )
    .await
}

// Only compacted days filter by the window here (raw files are listed by it).
#[cfg_attr(not(feature = "parquet"), allow(unused_variables))]
async fn read_source<O: ObjectStore>(
    store: &O,
    source: &Source,
    window: TimeWindow,
    weights: &EventWeights,
) -> Result<Option<FileResult>, StoreError> {
    match source {
        Source::Raw(key) => {
            let Some(body) = store.get(key).await? else {
                // Listed then gone (lifecycle rule): nothing to read.
                return Ok(None);
            };
            let (w, key) = (weights.clone(), key.clone());
            let r = tokio::task::spawn_blocking(move || decode_file(&key, &body, &w))
                .await
                .expect("decoder task panicked");
            Ok(Some(r))
        }
        #[cfg(feature = "parquet")]
        Source::Compacted(day) => {
            crate::event_log::compact::read_compacted_day(store, day, window, weights)
                .await
                .map(Some)
        }
    }
}

async fn read_sources<O: ObjectStore>(
    store: &O,
    sources: &[Source],
    window: TimeWindow,
    weights: &EventWeights,
    concurrency: usize,
    erased: &ErasureSet,
) -> Result<ReadOutcome, StoreError> {
    let mut files = futures::stream::iter(sources.iter())
        .map(|source| read_source(store, source, window, weights))
        // `buffered` keeps source order, so the dedupe (first occurrence wins) is
        // deterministic; each source is merged as it arrives, so memory holds the interned
        // log plus the sources in flight only.
        .buffered(concurrency.max(1));
    let mut out = ReadOutcome::default();
    let mut dedupe = Deduper::new();
    while let Some(f) = files.try_next().await? {
        let Some(f) = f else { continue };
        out.files += f.files;
        out.bytes += f.bytes;
        out.torn_members += f.torn_members;
        out.stats.add(&f.stats);
        for (key, i) in f.interactions {
            if !dedupe.first_time_key(key) {
                out.stats.duplicates += 1;
            } else if i.timestamp_ms < window.since_ms || i.timestamp_ms >= window.until_ms {
                out.out_of_window += 1;
            } else if erased.erases(&i.user) {
                out.erased += 1;
            } else {
                out.interactions.push(i);
            }
        }
    }
    out.stats.interactions = out.interactions.len() as u64;
    out.interactions.sort_by_time();
    Ok(out)
}

/// Lists and reads the window of `site`: compacted days from their Parquet parts (with the
/// `parquet` feature), the others from their raw files. The interactions of the users and
/// clients in `erased` are dropped (the site's erasure set, loaded by the caller before the
/// read through [`crate::privacy::ErasureSource`]).
pub async fn read_window<O: ObjectStore>(
    store: &O,
    site: &str,
    window: TimeWindow,
    weights: &EventWeights,
    concurrency: usize,
    erased: &ErasureSet,
) -> Result<ReadOutcome, StoreError> {
    if window.until_ms <= window.since_ms {
        return Ok(ReadOutcome::default());
    }
    #[cfg(feature = "parquet")]
    let sources =
        crate::event_log::compact::window_sources(store, site, window, concurrency).await?;
    #[cfg(not(feature = "parquet"))]
    let sources: Vec<Source> = list_window(store, site, window, concurrency)
        .await?
        .into_iter()
        .map(Source::Raw)
        .collect();
    read_sources(store, &sources, window, weights, concurrency, erased).await
}

/// The time just after the newest event of `site` (for windows anchored at `latest`): the
/// newest hour partition is found by listing, then read for its newest event time.
pub async fn latest_event_end_ms<O: ObjectStore>(
    store: &O,
    site: &str,
    concurrency: usize,
) -> Result<Option<i64>, StoreError> {
    let keys = store.list(&format!("{EVENTS_PREFIX}site={site}/")).await?;
    let keys: Vec<String> = keys
        .into_iter()
        .filter(|k| k.ends_with(LOG_FILE_SUFFIX))
        .collect();
    let Some(newest) = keys.iter().filter_map(|k| partition_start_ms(k)).max() else {
        return Ok(None);
    };
    let hour_keys: Vec<String> = keys
        .into_iter()
        .filter(|k| partition_start_ms(k) == Some(newest))
        .collect();
    // Any event type counts here, interaction or not.
    let newest_ts = futures::stream::iter(hour_keys.iter())
        .map(|k| async move { store.get(k).await })
        .buffer_unordered(concurrency.max(1))
        .try_fold(None::<i64>, |acc, body| async move {
            let Some(body) = body else { return Ok(acc) };
            let m = gunzip_text(&body)
                .text
                .lines()
                .filter_map(|l| {
                    serde_json::from_str::<TsOnly>(l)
                        .ok()
                        .map(|t| t.event_timestamp)
                })
                .max();
            Ok(acc.max(m))
        })
        .await?;
    Ok(Some(newest_ts.map_or(newest + HOUR_MS, |t| t + 1)))
}

#[derive(serde::Deserialize)]
struct TsOnly {
    event_timestamp: i64,
}

/// The reader contract, run on the local store (unit test) and on S3 (moto).
#[cfg(any(test, feature = "testkit"))]
pub mod contract {
    use super::*;
    use crate::event_log::jsonl::gzip_lines;
    use crate::event_log::layout::{event_object_key, Hour};
    use bytes::Bytes;

    /// A flat event line as the collect service stores it.
    pub fn event_line(site: &str, event_type: &str, id: &str, user: &str, ts: i64) -> String {
        let eid = nectar_model::event::event_id(site, user, event_type, id, ts);
        format!(
            r#"{{"event_id":"{eid}","site_key":"{site}","type":"{event_type}","id":"{id}","event_timestamp":{ts},"collect_timestamp":{ts},"sent_timestamp":{ts},"peach_schema_version":"1.0.3","client":{{"id":"{user}","app_id":"t"}}}}"#
        )
    }

    /// Writes a small log over three days (with duplicates across files, a non-interaction, a
    /// torn file and events in the boundary hours) and checks what the reader returns.
    pub async fn reader_contract<O: ObjectStore>(store: &O) {
        let site = format!("r{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff);
        let site = site.as_str();
        // 2026-11-20T00:00Z
        let day0 = 1_795_132_800_000i64;
        let h =
            |day: i64, hour: i64, min: i64| day0 + day * 86_400_000 + hour * HOUR_MS + min * 60_000;
        let put = |ts_hour: i64, writer: &str, lines: Vec<String>| {
            let key = event_object_key(site, Hour::of(ts_hour), writer, "1");
            let body = gzip_lines(lines.iter().map(String::as_str));
            async move { store.put(&key, Bytes::from(body)).await.unwrap() }
        };
        // day 0, 23:xx: before the window (which starts at day 0 23:30)
        put(
            h(0, 23, 0),
            "w1",
            vec![
                event_line(site, "media_play", "early", "u1", h(0, 23, 10)),
                event_line(site, "media_play", "a", "u1", h(0, 23, 40)),
            ],
        )
        .await;
        // day 1: a duplicate of the previous file's in-window event, plus new ones
        put(
            h(1, 5, 0),
            "w1",
            vec![
                event_line(site, "media_play", "a", "u1", h(0, 23, 40)),
                event_line(site, "media_end", "b", "u2", h(1, 5, 1)),
                event_line(site, "recommendation_displayed", "r1", "u2", h(1, 5, 2)),
                "not json".to_string(),
            ],
        )
        .await;
        // a second writer re-delivered the same batch
        put(
            h(1, 5, 0),
            "w2",
            vec![event_line(site, "media_end", "b", "u2", h(1, 5, 1))],
        )
        .await;
        // day 2: a file with a torn member (cut in half by a crash) between two valid ones (a
        // restarted writer appended), the `.torn` sidecar of a cut local file (never read),
        // and an event after the window end
        let mut torn = gzip_lines([event_line(site, "media_play", "c", "u3", h(2, 1, 0)).as_str()]);
        let tail = gzip_lines([event_line(site, "media_play", "lost", "u3", h(2, 1, 1)).as_str()]);
        torn.extend_from_slice(&tail[..tail.len() / 2]);
        torn.extend(gzip_lines([event_line(
            site,
            "media_play",
            "e",
            "u3",
            h(2, 1, 2),
        )
        .as_str()]));
        let torn_key = event_object_key(site, Hour::of(h(2, 1, 0)), "w3", "1");
        store.put(&torn_key, Bytes::from(torn)).await.unwrap();
        store
            .put(
                &format!("{torn_key}.torn"),
                Bytes::from(tail[..tail.len() / 2].to_vec()),
            )
            .await
            .unwrap();
        put(
            h(2, 6, 0),
            "w1",
            vec![
                event_line(site, "media_play", "d", "u1", h(2, 6, 10)),
                event_line(site, "media_play", "late", "u1", h(2, 6, 50)),
            ],
        )
        .await;
        // another site's events are never read
        let other = event_object_key("other-site", Hour::of(h(1, 5, 0)), "w1", "1");
        store
            .put(
                &other,
                Bytes::from(gzip_lines([event_line(
                    "other-site",
                    "media_play",
                    "x",
                    "u",
                    h(1, 5, 0),
                )
                .as_str()])),
            )
            .await
            .unwrap();

        let window = TimeWindow {
            since_ms: h(0, 23, 30),
            until_ms: h(2, 6, 30),
        };
        let w = EventWeights::default();
        let keys = list_window(store, site, window, 4).await.unwrap();
        assert_eq!(keys.len(), 5, "{keys:?}");
        let out = read_window(store, site, window, &w, 4, &ErasureSet::default())
            .await
            .unwrap();
        let log = &out.interactions;
        let items: Vec<&str> = log
            .rows
            .iter()
            .map(|r| log.items[r.item as usize].as_str())
            .collect();
        assert_eq!(items, vec!["a", "b", "c", "e", "d"]);
        assert_eq!(out.files, 5);
        assert_eq!(out.stats.duplicates, 2);
        assert_eq!(out.stats.malformed, 1);
        assert_eq!(out.stats.skipped, 1);
        assert_eq!(out.out_of_window, 2);
        assert_eq!(out.torn_members, 1);
        assert_eq!(out.stats.interactions, 5);
        assert_eq!(log.rows[1].weight, 3.0);
        assert_eq!(log.users[log.rows[1].user as usize], "u2");
        // the newest event ends the `latest` window
        assert_eq!(
            latest_event_end_ms(store, site, 4).await.unwrap(),
            Some(h(2, 6, 50) + 1)
        );
        assert_eq!(
            latest_event_end_ms(store, "nosuchsite", 4).await.unwrap(),
            None
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_and_dates_of_a_window() {
        let k = "events/site=demo/date=2026-11-22/hour=07/w-1.jsonl.gz";
        assert_eq!(partition_start_ms(k), Some(1_795_305_600_000 + 7 * HOUR_MS));
        assert_eq!(partition_start_ms("events/site=demo/x"), None);
        let w = TimeWindow {
            since_ms: 1_795_305_600_000 - 1,
            until_ms: 1_795_305_600_000 + 86_400_000,
        };
        assert_eq!(dates_of(w), vec!["2026-11-21", "2026-11-22"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn local_reader_passes_the_contract() {
        let dir = std::env::temp_dir().join(format!("nectar-rd-{}", rand::random::<u64>()));
        contract::reader_contract(&crate::object_store::LocalStore::new(&dir)).await;
        std::fs::remove_dir_all(dir).unwrap();
    }
}
