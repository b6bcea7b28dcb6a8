//! Erasure in the compacted layer (GDPR, issue 15): compaction drops the rows of erased users
//! and clients, and a day compacted before an erasure is scrubbed.
//!
//! Each manifest records how many records of the site's erasure log it applied
//! (`erasures_applied`; the log only grows, so the count is a watermark). A run of
//! [`scrub_site`] (at the end of every `compact_site`) loads the log once and, for every
//! compacted day whose watermark is below the log's count, reads the day's parts and drops the
//! erased subjects' rows: if any went, the day is rewritten from its own parts (not from the
//! raw log, which may have expired) as a new generation; either way the manifest's watermark
//! moves up, so each day is read once per batch of new erasures and never again. Keeping
//! per-day user sets in the manifest would avoid that read, but would copy every user id of
//! the day into the manifest.

use crate::event_log::compact::{load_manifest, write_parts, CompactError, CompactOptions};
use crate::event_log::layout::COMPACTED_PREFIX;
use crate::event_log::parquet::read_rows;
use crate::object_store::ObjectStore;
use crate::privacy::ErasureSource;

/// What [`scrub_site`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ScrubOutcome {
    /// Compacted days checked against new erasures.
    pub days_checked: u64,
    /// Days rewritten without erased rows.
    pub days_rewritten: u64,
    /// Rows dropped.
    pub rows_dropped: u64,
}

/// Drops erased subjects' rows from every compacted day of `site` compacted before their
/// erasure (see the module docs).
pub async fn scrub_site<O: ObjectStore, E: ErasureSource>(
    store: &O,
    erasures: &E,
    site: &str,
    opts: CompactOptions,
    now_ms: i64,
) -> Result<ScrubOutcome, CompactError> {
    let erased = erasures.erasure_set(site).await?;
    let mut out = ScrubOutcome::default();
    if erased.records() == 0 {
        return Ok(out);
    }
    let prefix = format!("{COMPACTED_PREFIX}site={site}/");
    let mut dates: Vec<String> = store
        .list(&prefix)
        .await?
        .iter()
        .filter_map(|k| k.strip_suffix("/_manifest.json"))
        .filter_map(|k| k.rsplit_once("date=").map(|(_, d)| d.to_string()))
        .collect();
    dates.sort();
    for date in dates {
        let Some(mut m) = load_manifest(store, site, &date).await? else {
            continue;
        };
        if m.erasures_applied >= erased.records() {
            continue;
        }
        out.days_checked += 1;
        let mut rows = Vec::new();
        let mut complete = true;
        for part in &m.parts {
            let Some(body) = store.get(&part.key).await? else {
                complete = false;
                break;
            };
            let part_rows = tokio::task::spawn_blocking(move || read_rows(body))
                .await
                .expect("parquet reader task panicked")?;
            rows.extend(part_rows);
        }
        if !complete {
            // A part is missing: the day is read raw until it is recompacted; nothing to scrub.
            tracing::warn!(%site, %date, "A compacted part is missing; the day was not scrubbed.");
            continue;
        }
        let before = rows.len();
        rows.retain(|r| !erased.erases_event(r.user_key(), r.client_id.as_deref()));
        let dropped = (before - rows.len()) as u64;
        m.erasures_applied = erased.records();
        if dropped > 0 {
            out.days_rewritten += 1;
            out.rows_dropped += dropped;
            m.erased_rows += dropped;
            m.generation = format!("{now_ms}-{:08x}", rand::random::<u32>());
            m.compacted_at_ms = now_ms;
            // Rows stay in the order they were written (sorted by user).
            write_parts(store, m, rows, opts).await?;
        } else {
            let body = serde_json::to_vec_pretty(&m).expect("a manifest always serialises");
            store
                .put(
                    &crate::event_log::layout::manifest_key(site, &date),
                    bytes::Bytes::from(body),
                )
                .await?;
        }
    }
    if out.days_rewritten > 0 {
        tracing::info!(%site, days = out.days_rewritten, rows = out.rows_dropped, "Scrubbed erased subjects from the compacted layer.");
    }
    Ok(out)
}

/// The erasure contract of compaction, run on the local store (unit test) and on S3 (moto).
#[cfg(any(test, feature = "testkit"))]
pub mod contract {
    use bytes::Bytes;

    use super::*;
    use crate::event_log::compact::compact_site;
    use crate::event_log::jsonl::gzip_lines;
    use crate::event_log::layout::{event_object_key, Hour};
    use crate::event_log::reader::contract::event_line;
    use crate::event_log::reader::{read_window, TimeWindow};
    use crate::privacy::{ErasureLog, Subject};

    const DAY_MS: i64 = 86_400_000;
    // 2026-11-20T00:00Z
    const DAY0: i64 = 1_795_132_800_000;

    async fn put_day<O: ObjectStore>(store: &O, site: &str, day: i64) {
        let ts = DAY0 + day * DAY_MS + 3_600_000;
        let lines: Vec<String> = ["u1", "u2", "u3"]
            .iter()
            .flat_map(|u| {
                [
                    event_line(site, "media_play", &format!("i{day}"), u, ts),
                    event_line(site, "recommendation_served", "r1", u, ts + 1),
                ]
            })
            .collect();
        let key = event_object_key(site, Hour::of(ts), "w", "1");
        let body = gzip_lines(lines.iter().map(String::as_str));
        store.put(&key, Bytes::from(body)).await.unwrap();
    }

    /// The users of every row of every Parquet file under the site's compacted prefix.
    async fn compacted_users<O: ObjectStore>(store: &O, site: &str) -> Vec<String> {
        let mut users = Vec::new();
        for key in store
            .list(&format!("{COMPACTED_PREFIX}site={site}/"))
            .await
            .unwrap()
        {
            if key.ends_with(".parquet") {
                let body = store.get(&key).await.unwrap().unwrap();
                for r in read_rows(body).unwrap() {
                    users.push(r.user_key().to_string());
                    users.extend(r.client_id.clone());
                }
            }
        }
        users.sort();
        users.dedup();
        users
    }

    /// GIVEN day 0 compacted with u1, u2, u3, WHEN client u1 is erased and compaction runs
    /// (with day 1 new) THEN no Parquet file holds a u1 row, the others' rows are intact, a
    /// second run reads nothing again, and training's read skips u1 on raw days too. The
    /// erasure is recorded in `log`, which compaction and the read go through.
    pub async fn erasure_compaction_contract<O: ObjectStore, L: ErasureLog>(store: &O, log: &L) {
        let site = format!("e{:08x}", rand::random::<u32>());
        let site = site.as_str();
        let opts = CompactOptions {
            max_rows_per_part: 2,
            ..CompactOptions::default()
        };
        let now = DAY0 + 3 * DAY_MS;
        put_day(store, site, 0).await;
        compact_site(store, log, site, opts, now).await.unwrap();
        assert_eq!(compacted_users(store, site).await, ["u1", "u2", "u3"]);
        let before = load_manifest(store, site, "2026-11-20")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(before.parts.len(), 3);

        log.record(site, &Subject::Client("u1".into()), now)
            .await
            .unwrap();
        put_day(store, site, 1).await;
        compact_site(store, log, site, opts, now).await.unwrap();

        assert_eq!(compacted_users(store, site).await, ["u2", "u3"]);
        let m0 = load_manifest(store, site, "2026-11-20")
            .await
            .unwrap()
            .unwrap();
        assert_eq!((m0.erased_rows, m0.erasures_applied), (2, 1));
        assert_eq!(m0.parts.len(), 2);
        let m1 = load_manifest(store, site, "2026-11-21")
            .await
            .unwrap()
            .unwrap();
        assert_eq!((m1.erased_rows, m1.distinct_event_ids), (2, 4));
        // Nothing new: a second run scrubs nothing.
        let again = scrub_site(store, log, site, opts, now).await.unwrap();
        assert_eq!(again, ScrubOutcome::default());
        // Training's read of both days (compacted) and of a raw day knows no u1.
        put_day(store, site, 2).await;
        let window = TimeWindow {
            since_ms: DAY0,
            until_ms: DAY0 + 3 * DAY_MS,
        };
        let read = read_window(
            store,
            site,
            window,
            &nectar_model::mapping::EventWeights::default(),
            4,
            &log.erasure_set(site).await.unwrap(),
        )
        .await
        .unwrap();
        assert_eq!(read.erased, 1, "the raw day's u1 play");
        assert!(read.interactions.user_row("u1").is_none());
        assert!(read.interactions.user_row("u2").is_some());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_local_store_passes_the_erasure_compaction_contract() {
        let dir = std::env::temp_dir().join(format!("nectar-scrub-{}", rand::random::<u64>()));
        erasure_compaction_contract(
            &crate::object_store::LocalStore::new(&dir),
            &crate::privacy::LocalErasureLog::new(&dir),
        )
        .await;
        std::fs::remove_dir_all(dir).unwrap();
    }
}
