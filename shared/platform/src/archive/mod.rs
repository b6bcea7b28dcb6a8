//! The archive service: Kinesis records → deduped, partitioned gzip JSON Lines in the event log.
//!
//! The objects are written by the event-log writer ([`crate::event_log::writer`]). Object keys
//! are derived from the shard and the first sequence number contributing to each
//! partition, so a retried batch overwrites the same objects instead of adding copies. What
//! cannot be decoded, or written after retries, is parked under `parked/` with the reason;
//! only when parking fails too is the record reported as a batch item failure, so Lambda
//! retries from it. Readers dedupe by `event_id` (the log is at-least-once).

#[cfg(feature = "kinesis")]
pub mod kinesis_reader;
pub mod logs_subscription;

use std::collections::HashSet;

use bytes::Bytes;
use nectar_model::event::is_valid_key;
use serde::Deserialize;
use serde_json::json;

use crate::event_log::layout::{Hour, PARKED_PREFIX};
use crate::event_log::writer::{put_object, put_objects, Partitions};
use crate::object_store::ObjectStore;
use crate::observe::names::{self, dim};

/// One stream record handed to the archive.
#[derive(Debug, Clone)]
pub struct ArchiveRecord {
    /// Shard the record came from: the writer id of the objects it goes into.
    pub shard_id: String,
    /// Its sequence number (opaque; never parsed).
    pub sequence_number: String,
    /// NDJSON flat events.
    pub data: Bytes,
}

impl ArchiveRecord {
    /// A record as read from the stream: a CloudWatch Logs subscription delivery (the served
    /// log) is unpacked into its lines ([`logs_subscription::unpack`]), any other kept as is.
    pub fn from_stream(shard_id: String, sequence_number: String, data: Bytes) -> Self {
        Self {
            shard_id,
            sequence_number,
            data: logs_subscription::unpack(data),
        }
    }
}

/// What one archive call did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ArchiveOutcome {
    /// Events written to the event log.
    pub events_written: usize,
    /// Events dropped as duplicates within the batch.
    pub duplicates: usize,
    /// Objects written.
    pub objects: usize,
    /// Lines or records parked.
    pub parked: usize,
    /// The first record that was neither written nor parked: Lambda must retry from it.
    pub first_failed_sequence: Option<String>,
}

/// The fields the archive needs from each line; the line itself is stored verbatim.
#[derive(Deserialize)]
struct LineHeader<'a> {
    #[serde(borrow)]
    event_id: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    site_key: std::borrow::Cow<'a, str>,
    event_timestamp: i64,
}

struct Parked<'a> {
    record: usize,
    /// The site, when the line named a valid one (the parked metric's label).
    site: Option<String>,
    reason: String,
    lines: Vec<&'a str>,
}

/// Archives one batch of records (all from one shard, in sequence order, as Lambda delivers).
#[tracing::instrument(skip_all, fields(records = records.len()))]
pub async fn archive_batch<O: ObjectStore>(
    store: &O,
    records: &[ArchiveRecord],
    now_ms: i64,
) -> ArchiveOutcome {
    let mut outcome = ArchiveOutcome::default();
    let mut seen: HashSet<&str> = HashSet::new();
    // Each partition is tagged with the first record contributing to it: its object is
    // named after that record, so a retried batch rewrites the same objects.
    let mut groups: Partitions<'_, usize> = Partitions::new();
    let mut parked: Vec<Parked<'_>> = Vec::new();
    let mut newest_by_site: std::collections::HashMap<String, i64> = Default::default();

    for (idx, rec) in records.iter().enumerate() {
        let Ok(text) = std::str::from_utf8(&rec.data) else {
            parked.push(Parked {
                record: idx,
                site: None,
                reason: "record data is not UTF-8".into(),
                lines: Vec::new(),
            });
            continue;
        };
        for line in text
            .split('\n')
            .map(str::trim_end)
            .filter(|l| !l.is_empty())
        {
            let header = match serde_json::from_str::<LineHeader<'_>>(line) {
                Ok(h) => h,
                Err(e) => {
                    parked.push(Parked {
                        record: idx,
                        site: None,
                        reason: format!("line is not a flat event: {e}"),
                        lines: vec![line],
                    });
                    continue;
                }
            };
            if !is_valid_key(&header.site_key) {
                parked.push(Parked {
                    record: idx,
                    site: None,
                    reason: "site_key is not a valid key".into(),
                    lines: vec![line],
                });
                continue;
            }
            // `line` outlives `header`; dedupe on a slice of the line itself.
            let id_start = line.find(header.event_id.as_ref());
            let id: &str = match id_start {
                Some(s) => &line[s..s + header.event_id.len()],
                None => {
                    parked.push(Parked {
                        record: idx,
                        site: Some(header.site_key.to_string()),
                        reason: "event_id is escaped".into(),
                        lines: vec![line],
                    });
                    continue;
                }
            };
            if !seen.insert(id) {
                outcome.duplicates += 1;
                metrics::counter!(names::ARCHIVE_DUPLICATES_DROPPED,
                    dim::SITE => header.site_key.to_string())
                .increment(1);
                continue;
            }
            let newest = newest_by_site
                .entry(header.site_key.to_string())
                .or_insert(i64::MIN);
            *newest = (*newest).max(header.event_timestamp);
            groups.push(&header.site_key, header.event_timestamp, line, idx);
        }
    }

    let objects: Vec<(String, Bytes)> = groups
        .iter()
        .map(|g| {
            let rec = &records[g.first];
            (
                g.key(&rec.shard_id, &rec.sequence_number),
                Bytes::from(g.member()),
            )
        })
        .collect();
    let keys: Vec<String> = objects.iter().map(|(k, _)| k.clone()).collect();
    let results = put_objects(store, objects).await;
    let mut written_sites: HashSet<String> = HashSet::new();
    for ((g, key), result) in groups.iter().zip(keys).zip(results) {
        match result {
            Ok(()) => {
                outcome.objects += 1;
                outcome.events_written += g.lines.len();
                metrics::counter!(names::ARCHIVE_EVENTS_WRITTEN, dim::SITE => g.site_key.clone())
                    .increment(g.lines.len() as u64);
                written_sites.insert(g.site_key.clone());
            }
            Err(e) => {
                tracing::warn!(%key, error = %e, "Object not written after retries; parking its events.");
                parked.push(Parked {
                    record: g.first,
                    site: Some(g.site_key.clone()),
                    reason: format!("writing {key} failed: {e}"),
                    lines: g.lines.clone(),
                });
            }
        }
    }

    for site in &written_sites {
        if let Some(&newest) = newest_by_site.get(site) {
            metrics::gauge!(names::ARCHIVE_LAG_SECONDS, dim::SITE => site.clone())
                .set((now_ms - newest).max(0) as f64 / 1e3);
        }
    }

    let mut first_failed: Option<usize> = None;
    for (n, p) in parked.iter().enumerate() {
        let rec = &records[p.record];
        let body = if p.lines.is_empty() {
            json!({"reason": p.reason, "shard_id": rec.shard_id, "sequence_number": rec.sequence_number,
                   "data_base64": base64_encode(&rec.data), "parked_at": now_ms})
        } else {
            json!({"reason": p.reason, "shard_id": rec.shard_id, "sequence_number": rec.sequence_number,
                   "lines": p.lines, "parked_at": now_ms})
        };
        let key = format!(
            "{PARKED_PREFIX}date={}/{}-{}-{n}.json",
            Hour::of(now_ms).date(),
            rec.shard_id,
            rec.sequence_number
        );
        match put_object(store, &key, Bytes::from(body.to_string())).await {
            Ok(()) => {
                outcome.parked += p.lines.len().max(1);
                let site = p
                    .site
                    .clone()
                    .unwrap_or_else(|| dim::UNKNOWN_SITE.to_string());
                metrics::counter!(names::ARCHIVE_RECORDS_PARKED, dim::SITE => site)
                    .increment(p.lines.len().max(1) as u64);
                tracing::warn!(%key, reason = %p.reason, "Parked undeliverable events.");
            }
            Err(e) => {
                tracing::error!(%key, error = %e, "Could not park events; the batch will be retried from this record.");
                first_failed = Some(first_failed.map_or(p.record, |f| f.min(p.record)));
            }
        }
    }
    outcome.first_failed_sequence = first_failed.map(|i| records[i].sequence_number.clone());
    outcome
}

fn base64_encode(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event_log::jsonl::gunzip_text;
    use crate::object_store::{LocalStore, StoreError};
    use std::sync::atomic::{AtomicUsize, Ordering};

    const T: i64 = 1_795_305_000_000; // 2026-11-21T23:50Z

    fn line(id: &str, site: &str, ts: i64) -> String {
        format!(
            r#"{{"event_id":"{id}","site_key":"{site}","type":"media_play","id":"m","event_timestamp":{ts}}}"#
        )
    }

    fn rec(seq: &str, lines: &[String]) -> ArchiveRecord {
        ArchiveRecord {
            shard_id: "shardId-000000000000".into(),
            sequence_number: seq.into(),
            data: Bytes::from(lines.join("\n") + "\n"),
        }
    }

    fn temp_store() -> (LocalStore, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("nectar-archive-{}", rand::random::<u64>()));
        (LocalStore::new(&dir), dir)
    }

    async fn all_ids(store: &LocalStore, prefix: &str) -> Vec<String> {
        let mut ids = Vec::new();
        for k in store.list(prefix).await.unwrap() {
            let text = gunzip_text(&store.get(&k).await.unwrap().unwrap()).text;
            for l in text.lines() {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                ids.push(v["event_id"].as_str().unwrap().to_string());
            }
        }
        ids.sort();
        ids
    }

    #[tokio::test]
    async fn groups_by_site_and_hour_dedupes_and_is_idempotent_on_retry() {
        let (store, dir) = temp_store();
        let records = vec![
            rec(
                "100",
                &[
                    line("a", "demo", T),
                    line("b", "demo", T + 3_600_000),
                    line("a", "demo", T),
                ],
            ),
            rec(
                "101",
                &[line("c", "other", T), line("b", "demo", T + 3_600_000)],
            ),
        ];
        let out = archive_batch(&store, &records, T).await;
        assert_eq!(
            out,
            ArchiveOutcome {
                events_written: 3,
                duplicates: 2,
                objects: 3,
                parked: 0,
                first_failed_sequence: None
            }
        );
        let keys = store.list("events/").await.unwrap();
        assert_eq!(
            keys,
            vec![
                "events/site=demo/date=2026-11-21/hour=23/shardId-000000000000-100.jsonl.gz",
                "events/site=demo/date=2026-11-22/hour=00/shardId-000000000000-100.jsonl.gz",
                "events/site=other/date=2026-11-21/hour=23/shardId-000000000000-101.jsonl.gz",
            ]
        );
        // WHEN the same batch is delivered again THEN the same objects are rewritten, no copies
        archive_batch(&store, &records, T).await;
        assert_eq!(store.list("events/").await.unwrap().len(), 3);
        assert_eq!(all_ids(&store, "events/").await, vec!["a", "b", "c"]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn undecodable_lines_are_parked_with_the_reason() {
        let (store, dir) = temp_store();
        let records = vec![
            rec(
                "1",
                &[
                    line("a", "demo", T),
                    "not json".into(),
                    line("x", "../evil", T),
                ],
            ),
            ArchiveRecord {
                shard_id: "s".into(),
                sequence_number: "2".into(),
                data: Bytes::from_static(&[0xff, 0xfe]),
            },
        ];
        let out = archive_batch(&store, &records, T).await;
        assert_eq!(out.events_written, 1);
        assert_eq!(out.parked, 3);
        assert!(out.first_failed_sequence.is_none());
        let parked = store.list("parked/").await.unwrap();
        assert_eq!(parked.len(), 3);
        let bodies: Vec<serde_json::Value> =
            futures::future::join_all(parked.iter().map(|k| store.get(k)))
                .await
                .into_iter()
                .map(|b| serde_json::from_slice(&b.unwrap().unwrap()).unwrap())
                .collect();
        assert!(bodies
            .iter()
            .any(|b| b["reason"].as_str().unwrap().contains("not a flat event")));
        assert!(bodies.iter().any(|b| b["data_base64"] == "//4="));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn the_store_sink_writes_one_object_per_hour_named_after_its_first_event() {
        use crate::collect::sink::EventSink;
        use nectar_model::event::{Accepted, EncodedEvent};
        let (store, dir) = temp_store();
        let sink = crate::event_log::store_sink::StoreSink::new(store.clone(), "dev-1");
        let batch = |ids: &[&str], ts: &[i64]| Accepted {
            site_key: "demo".into(),
            events: ids
                .iter()
                .zip(ts)
                .map(|(id, &t)| EncodedEvent {
                    mapped: None,
                    event_id: id.to_string(),
                    event_timestamp: t,
                    line: line(id, "demo", t),
                })
                .collect(),
        };
        // GIVEN a batch across an hour boundary, then a second batch
        sink.put(&batch(&["a", "b", "c"], &[T, T + 3_600_000, T]))
            .await
            .unwrap();
        sink.put(&batch(&["d"], &[T])).await.unwrap();
        // THEN each batch wrote one object per hour, keyed by the batch's first event number
        assert_eq!(
            store.list("events/").await.unwrap(),
            vec![
                "events/site=demo/date=2026-11-21/hour=23/dev-1-000000000000.jsonl.gz",
                "events/site=demo/date=2026-11-21/hour=23/dev-1-000000000003.jsonl.gz",
                "events/site=demo/date=2026-11-22/hour=00/dev-1-000000000000.jsonl.gz",
            ]
        );
        assert_eq!(all_ids(&store, "events/").await, vec!["a", "b", "c", "d"]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// Fails writes under `events/` (and under `parked/` too when `park_fails`).
    struct Failing {
        inner: LocalStore,
        park_fails: bool,
        calls: AtomicUsize,
    }

    impl ObjectStore for Failing {
        async fn put(&self, key: &str, body: Bytes) -> Result<(), StoreError> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            if key.starts_with("events/site=demo/date=2026-11-22")
                || (self.park_fails && key.starts_with("parked/"))
            {
                return Err(StoreError::InvalidKey(format!(
                    "injected failure for {key}"
                )));
            }
            self.inner.put(key, body).await
        }
        async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
            self.inner.get(key).await
        }
        async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
            self.inner.list(prefix).await
        }
    }

    #[tokio::test(start_paused = true)]
    async fn unwritable_partitions_are_parked_or_reported_for_retry() {
        let (inner, dir) = temp_store();
        let records = vec![
            rec("7", &[line("a", "demo", T)]),
            rec("8", &[line("b", "demo", T + 3_600_000)]),
            rec("9", &[line("c", "demo", T)]),
        ];
        // GIVEN the 00:00 partition cannot be written WHEN archived THEN its events are parked
        let store = Failing {
            inner: inner.clone(),
            park_fails: false,
            calls: AtomicUsize::new(0),
        };
        let out = archive_batch(&store, &records, T).await;
        assert_eq!(
            (
                out.events_written,
                out.parked,
                out.first_failed_sequence.as_deref()
            ),
            (2, 1, None)
        );
        // GIVEN parking fails too THEN Lambda is told to retry from the first unwritten record
        let store = Failing {
            inner,
            park_fails: true,
            calls: AtomicUsize::new(0),
        };
        let out = archive_batch(&store, &records, T).await;
        assert_eq!(out.first_failed_sequence.as_deref(), Some("8"));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
