//! Compaction: each finished UTC day of the raw log (`events/site=…/date=…/`, every hour) is
//! rewritten as zstd Parquet under `compacted/site=…/date=…/part-NNNNN.parquet`, deduped by
//! `event_id` (first occurrence in the raw reader's order wins, so the compacted layer is
//! exactly once), sorted by user, with `_manifest.json` written last: a day counts as
//! compacted only once its manifest exists, and the manifest names the parts and their
//! generation (each part carries it in its Parquet metadata), so a reader never mixes two
//! compactions of a day.
//!
//! Late events: a day whose raw objects changed since its manifest (a new object, or a local
//! file that grew) is **recompacted** whole on the next run; until then readers read the
//! compacted parts plus the changed raw objects and dedupe across both ([`window_sources`]).
//! Raw objects that disappeared (a lifecycle rule) never trigger a recompaction, so expiring
//! raw data never shrinks the compacted layer.

use std::collections::{BTreeMap, HashMap, HashSet};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use nectar_model::mapping::{dedupe_key, map_event_fields, EventWeights, Skip};
use serde::{Deserialize, Serialize};

use crate::event_log::jsonl::gunzip_text;
use crate::event_log::layout::{day_prefix, manifest_key, part_key, EVENTS_PREFIX};
use crate::event_log::parquet::{read_mapping, write_part, EventRow, ParquetError};
use crate::event_log::reader::{
    dates_of, decode_file, partition_start_ms, FileResult, Source, TimeWindow, HOUR_MS,
    LOG_FILE_SUFFIX,
};
use crate::object_store::{ObjectMeta, ObjectStore, StoreError};
use crate::privacy::{ErasureLogError, ErasureSet, ErasureSource};

/// The manifest format written by this version.
pub const MANIFEST_FORMAT: u32 = 1;

const DAY_MS: i64 = 24 * HOUR_MS;

/// How to compact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactOptions {
    /// Rows per Parquet part at most.
    pub max_rows_per_part: usize,
    /// Raw objects read at once.
    pub concurrency: usize,
}

impl Default for CompactOptions {
    fn default() -> Self {
        Self {
            max_rows_per_part: 1_000_000,
            concurrency: 16,
        }
    }
}

/// One Parquet part of a compacted day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartMeta {
    /// Object key.
    pub key: String,
    /// Rows (distinct events).
    pub rows: u64,
    /// Size in bytes.
    pub bytes: u64,
}

/// `compacted/site=…/date=…/_manifest.json`: what a compaction of one day read and wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`MANIFEST_FORMAT`].
    pub format: u32,
    /// The site.
    pub site: String,
    /// The UTC day, `YYYY-MM-DD`.
    pub date: String,
    /// Names this compaction; every part carries it (Parquet key-value `nectar.generation`).
    pub generation: String,
    /// When the compaction ran, ms UTC.
    pub compacted_at_ms: i64,
    /// The raw objects compacted, with the size read (a later, larger size means late events).
    pub raw_objects: Vec<ObjectMeta>,
    /// The parts to read, in order.
    pub parts: Vec<PartMeta>,
    /// Non-empty raw lines read.
    pub raw_lines: u64,
    /// Rows written: the day's distinct `event_id`s.
    pub distinct_event_ids: u64,
    /// Raw lines dropped as repeats of an `event_id` already seen.
    pub duplicates: u64,
    /// Raw lines that are no flat event (as the raw reader counts them malformed).
    pub malformed_lines: u64,
    /// Unreadable gzip members skipped in the raw objects.
    pub torn_members: u64,
    /// Compressed raw bytes read.
    pub raw_bytes: u64,
    /// Parquet bytes written.
    pub parquet_bytes: u64,
    /// Records of the site's erasure log applied (their subjects' rows dropped); a day whose
    /// count is below the log's is scrubbed ([`super::compact_erase`]).
    #[serde(default)]
    pub erasures_applied: u64,
    /// Rows dropped because their user or client was erased.
    #[serde(default)]
    pub erased_rows: u64,
}

impl Manifest {
    /// Raw objects listed now that the manifest did not compact: new keys, or objects that
    /// grew (a local file appended to). Objects that disappeared are not changes.
    pub fn late_objects<'a>(&self, raw: &'a [ObjectMeta]) -> Vec<&'a ObjectMeta> {
        let known: HashMap<&str, u64> = self
            .raw_objects
            .iter()
            .map(|o| (o.key.as_str(), o.size))
            .collect();
        raw.iter()
            .filter(|o| known.get(o.key.as_str()).is_none_or(|size| o.size > *size))
            .collect()
    }
}

/// What [`compact_day`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CompactStatus {
    /// First compaction of the day.
    Compacted,
    /// The day had late events: compacted again, whole.
    Recompacted,
    /// The manifest covers every raw object: nothing to do.
    UpToDate,
    /// The day has no raw objects.
    NoRawData,
}

/// The outcome of compacting one day.
#[derive(Debug, Clone, Serialize)]
pub struct CompactOutcome {
    /// The site.
    pub site: String,
    /// The day.
    pub date: String,
    /// What happened.
    pub status: CompactStatus,
    /// The day's manifest (the new one, or the current one when up to date).
    pub manifest: Option<Manifest>,
    /// Wall time, ms.
    pub duration_ms: u64,
}

/// A compaction failure.
#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    /// Reading or writing the store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Encoding Parquet failed.
    #[error(transparent)]
    Parquet(#[from] ParquetError),
    /// `date` is not a `YYYY-MM-DD` day.
    #[error("date {0:?} is not a YYYY-MM-DD day")]
    InvalidDate(String),
    /// `date` is today or later (UTC): only finished days are compacted.
    #[error("date {0} is not a finished UTC day")]
    NotFinished(String),
    /// Reading the site's erased subjects failed (nothing was written).
    #[error(transparent)]
    Erasures(#[from] ErasureLogError),
}

impl CompactError {
    /// A stable code for logs and the Lambda's `errorType`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Store(_) => "StoreError",
            Self::Parquet(_) => "ParquetError",
            Self::InvalidDate(_) => "InvalidDate",
            Self::NotFinished(_) => "NotFinished",
            Self::Erasures(_) => "ErasureLogError",
        }
    }
}

/// The day's raw event-log objects with their sizes, in key order.
pub async fn raw_day_objects<O: ObjectStore>(
    store: &O,
    site: &str,
    date: &str,
) -> Result<Vec<ObjectMeta>, StoreError> {
    let mut raw = store.list_meta(&day_prefix(site, date)).await?;
    raw.retain(|o| o.key.ends_with(LOG_FILE_SUFFIX));
    Ok(raw)
}

/// The day's manifest; `None` when the day is not compacted. An unreadable manifest counts as
/// none (readers fall back to the raw day, and the next run recompacts it).
pub async fn load_manifest<O: ObjectStore>(
    store: &O,
    site: &str,
    date: &str,
) -> Result<Option<Manifest>, StoreError> {
    let Some(body) = store.get(&manifest_key(site, date)).await? else {
        return Ok(None);
    };
    match serde_json::from_slice::<Manifest>(&body) {
        Ok(m) if m.format == MANIFEST_FORMAT => Ok(Some(m)),
        _ => {
            tracing::warn!(%site, %date, "Unreadable compaction manifest: the day is read raw.");
            Ok(None)
        }
    }
}

fn day_start_ms(date: &str) -> Result<i64, CompactError> {
    chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d")
        .ok()
        .filter(|d| d.format("%Y-%m-%d").to_string() == date)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp_millis())
        .ok_or_else(|| CompactError::InvalidDate(date.to_string()))
}

/// One raw object read for compaction.
struct RawRead {
    meta: ObjectMeta,
    hour: i32,
    lines: Vec<String>,
    torn_members: u64,
}

pub(crate) fn split_lines(key: &str, body: &[u8]) -> (Vec<String>, u64) {
    let file = gunzip_text(body);
    if !file.is_clean() {
        tracing::warn!(%key, torn_members = file.torn_members, "Skipped unreadable gzip members while compacting.");
    }
    let lines = file
        .text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    (lines, file.torn_members)
}

/// Rewrites one day of `site` into Parquet when it needs it (no manifest, or late raw
/// objects), else reports it up to date. Only finished UTC days (before `now_ms`'s day). The
/// rows of the subjects `erasures` names for the site are dropped.
#[tracing::instrument(skip(store, erasures, opts))]
pub async fn compact_day<O: ObjectStore, E: ErasureSource>(
    store: &O,
    erasures: &E,
    site: &str,
    date: &str,
    opts: CompactOptions,
    now_ms: i64,
) -> Result<CompactOutcome, CompactError> {
    let started = std::time::Instant::now();
    if day_start_ms(date)? + DAY_MS > now_ms {
        return Err(CompactError::NotFinished(date.to_string()));
    }
    let raw = raw_day_objects(store, site, date).await?;
    let current = load_manifest(store, site, date).await?;
    let outcome = |status, manifest| CompactOutcome {
        site: site.to_string(),
        date: date.to_string(),
        status,
        manifest,
        duration_ms: started.elapsed().as_millis() as u64,
    };
    if raw.is_empty() {
        return Ok(outcome(CompactStatus::NoRawData, current));
    }
    if let Some(m) = &current {
        if m.late_objects(&raw).is_empty() {
            return Ok(outcome(CompactStatus::UpToDate, current));
        }
    }
    let status = if current.is_some() {
        CompactStatus::Recompacted
    } else {
        CompactStatus::Compacted
    };
    // Loaded before reading: an erasure recorded later raises the log's count above this
    // manifest's, and the next run scrubs the day.
    let erased = erasures.erasure_set(site).await?;
    let manifest = rewrite_day(store, site, date, &raw, opts, now_ms, &erased).await?;
    tracing::info!(
        %site, %date, ?status, rows = manifest.distinct_event_ids, parts = manifest.parts.len(),
        "Compacted a day of the event log."
    );
    Ok(outcome(status, Some(manifest)))
}

async fn rewrite_day<O: ObjectStore>(
    store: &O,
    site: &str,
    date: &str,
    raw: &[ObjectMeta],
    opts: CompactOptions,
    now_ms: i64,
    erased: &ErasureSet,
) -> Result<Manifest, CompactError> {
    let reads = futures::stream::iter(raw.iter())
        .map(|o| async move {
            let Some(body) = store.get(&o.key).await? else {
                return Ok::<_, StoreError>(None);
            };
            let key = o.key.clone();
            let hour = partition_start_ms(&key).map_or(0, |s| ((s % DAY_MS) / HOUR_MS) as i32);
            let size = body.len() as u64;
            let (lines, torn_members) =
                tokio::task::spawn_blocking(move || split_lines(&key, &body))
                    .await
                    .expect("compaction decoder task panicked");
            Ok(Some(RawRead {
                // The size read, not listed: a file that grew since the listing was read whole.
                meta: ObjectMeta {
                    key: o.key.clone(),
                    size,
                },
                hour,
                lines,
                torn_members,
            }))
        })
        // In key order, as the raw reader reads: the first occurrence of an event wins.
        .buffered(opts.concurrency.max(1));
    let mut reads = std::pin::pin!(reads);
    let mut seen = HashSet::new();
    let mut rows = Vec::new();
    let mut m = Manifest {
        format: MANIFEST_FORMAT,
        site: site.to_string(),
        date: date.to_string(),
        generation: format!("{now_ms}-{:08x}", rand::random::<u32>()),
        compacted_at_ms: now_ms,
        raw_objects: Vec::new(),
        parts: Vec::new(),
        raw_lines: 0,
        distinct_event_ids: 0,
        duplicates: 0,
        malformed_lines: 0,
        torn_members: 0,
        raw_bytes: 0,
        parquet_bytes: 0,
        erasures_applied: 0,
        erased_rows: 0,
    };
    m.erasures_applied = erased.records();
    let mut order = 0i64;
    while let Some(r) = reads.try_next().await? {
        let Some(r) = r else { continue };
        m.raw_bytes += r.meta.size;
        m.torn_members += r.torn_members;
        m.raw_objects.push(r.meta);
        for line in &r.lines {
            m.raw_lines += 1;
            let Some(row) = EventRow::parse(line, order, r.hour) else {
                m.malformed_lines += 1;
                continue;
            };
            order += 1;
            if erased.erases_event(row.user_key(), row.client_id.as_deref()) {
                m.erased_rows += 1;
            } else if seen.insert(dedupe_key(&row.event_id)) {
                rows.push(row);
            } else {
                m.duplicates += 1;
            }
        }
    }
    rows.sort_by(|a, b| {
        a.user_key()
            .cmp(b.user_key())
            .then(a.raw_order.cmp(&b.raw_order))
    });
    write_parts(store, m, rows, opts).await
}

/// Writes `rows` (sorted) as the parts of `m`'s generation, then the manifest, last.
pub(crate) async fn write_parts<O: ObjectStore>(
    store: &O,
    mut m: Manifest,
    rows: Vec<EventRow>,
    opts: CompactOptions,
) -> Result<Manifest, CompactError> {
    let (site, date) = (m.site.clone(), m.date.clone());
    let (site, date) = (site.as_str(), date.as_str());
    m.parts.clear();
    m.parquet_bytes = 0;
    m.distinct_event_ids = rows.len() as u64;
    let rows = std::sync::Arc::new(rows);
    let per_part = opts.max_rows_per_part.max(1);
    let parts = rows.len().div_ceil(per_part);
    for n in 0..parts {
        let (rows, generation) = (rows.clone(), m.generation.clone());
        let range = n * per_part..((n + 1) * per_part).min(rows.len());
        let count = range.len() as u64;
        let body = tokio::task::spawn_blocking(move || write_part(&rows[range], &generation))
            .await
            .expect("parquet writer task panicked")?;
        let key = part_key(site, date, n);
        let bytes = body.len() as u64;
        store.put(&key, Bytes::from(body)).await?;
        m.parquet_bytes += bytes;
        m.parts.push(PartMeta {
            key,
            rows: count,
            bytes,
        });
    }
    // Last: the day counts as compacted only from here on.
    let body = serde_json::to_vec_pretty(&m).expect("a manifest always serialises");
    store
        .put(&manifest_key(site, date), Bytes::from(body))
        .await?;
    // Parts of an earlier, larger generation are not read any more, but may hold erased rows:
    // they are overwritten empty (the port has no delete).
    let named: HashSet<&str> = m.parts.iter().map(|p| p.key.as_str()).collect();
    for key in store
        .list(&crate::event_log::layout::compacted_day_prefix(site, date))
        .await?
    {
        if key.ends_with(".parquet") && !named.contains(key.as_str()) {
            let generation = m.generation.clone();
            let empty = tokio::task::spawn_blocking(move || write_part(&[], &generation))
                .await
                .expect("parquet writer task panicked")?;
            store.put(&key, Bytes::from(empty)).await?;
        }
    }
    Ok(m)
}

/// The finished days of `site` that have raw objects, oldest first, with their objects.
pub async fn raw_days<O: ObjectStore>(
    store: &O,
    site: &str,
    now_ms: i64,
) -> Result<BTreeMap<String, Vec<ObjectMeta>>, StoreError> {
    let today_start = now_ms - now_ms.rem_euclid(DAY_MS);
    let mut days: BTreeMap<String, Vec<ObjectMeta>> = BTreeMap::new();
    for o in store
        .list_meta(&format!("{EVENTS_PREFIX}site={site}/"))
        .await?
    {
        if !o.key.ends_with(LOG_FILE_SUFFIX) {
            continue;
        }
        let Some(start) = partition_start_ms(&o.key) else {
            continue;
        };
        if start < today_start {
            let date = o.key.split("/date=").nth(1).unwrap_or("").get(..10);
            if let Some(date) = date {
                days.entry(date.to_string()).or_default().push(o);
            }
        }
    }
    Ok(days)
}

/// Compacts every finished day of `site` that needs it (the train Lambda's `compact` job and
/// `nectar compact`); days already up to date are skipped without reading their raw objects.
pub async fn compact_site<O: ObjectStore, E: ErasureSource>(
    store: &O,
    erasures: &E,
    site: &str,
    opts: CompactOptions,
    now_ms: i64,
) -> Result<Vec<CompactOutcome>, CompactError> {
    let mut out = Vec::new();
    for (date, raw) in raw_days(store, site, now_ms).await? {
        if let Some(m) = load_manifest(store, site, &date).await? {
            if m.late_objects(&raw).is_empty() {
                continue;
            }
        }
        out.push(compact_day(store, erasures, site, &date, opts, now_ms).await?);
    }
    super::compact_erase::scrub_site(store, erasures, site, opts, now_ms).await?;
    Ok(out)
}

impl FileResult {
    /// Appends another source's result after this one's.
    fn append(&mut self, other: FileResult) {
        self.interactions.extend(other.interactions);
        self.stats.add(&other.stats);
        self.files += other.files;
        self.bytes += other.bytes;
        self.torn_members += other.torn_members;
    }
}

/// A compacted day of a read window: its manifest, the raw objects that arrived after it, and
/// every raw object of the day in the window (read instead if the parts are not the
/// manifest's).
#[derive(Debug, Clone)]
pub struct CompactedDay {
    pub(crate) manifest: Manifest,
    pub(crate) day_start_ms: i64,
    pub(crate) late: Vec<String>,
    pub(crate) raw: Vec<String>,
}

fn overlaps(start: i64, w: TimeWindow) -> bool {
    start < w.until_ms && start + HOUR_MS > w.since_ms
}

/// The sources of a window read, in the raw reader's order: for each day, its compacted parts
/// (plus late raw objects) when it has a manifest, else its raw objects.
pub(crate) async fn window_sources<O: ObjectStore>(
    store: &O,
    site: &str,
    window: TimeWindow,
    concurrency: usize,
) -> Result<Vec<Source>, StoreError> {
    let days: Vec<Vec<Source>> = futures::stream::iter(dates_of(window))
        .map(|date| async move {
            let (raw, manifest) = futures::try_join!(
                raw_day_objects(store, site, &date),
                load_manifest(store, site, &date)
            )?;
            let in_window = |o: &&ObjectMeta| {
                partition_start_ms(&o.key).is_some_and(|start| overlaps(start, window))
            };
            let keys = |v: Vec<&ObjectMeta>| v.into_iter().map(|o| o.key.clone()).collect();
            let mut raw_sorted = raw.iter().filter(in_window).collect::<Vec<_>>();
            raw_sorted.sort_by(|a, b| a.key.cmp(&b.key));
            Ok::<_, StoreError>(match manifest {
                Some(manifest) => {
                    let late = manifest
                        .late_objects(&raw)
                        .into_iter()
                        .filter(|o| in_window(o))
                        .collect();
                    vec![Source::Compacted(Box::new(CompactedDay {
                        day_start_ms: day_start_ms(&date).unwrap_or_default(),
                        late: keys(late),
                        raw: keys(raw_sorted),
                        manifest,
                    }))]
                }
                None => raw_sorted
                    .into_iter()
                    .map(|o| Source::Raw(o.key.clone()))
                    .collect(),
            })
        })
        .buffered(concurrency.max(1))
        .try_collect()
        .await?;
    Ok(days.into_iter().flatten().collect())
}

/// Maps a compacted day's rows in the window, in raw order.
fn decode_parts(
    parts: Vec<Bytes>,
    day: &CompactedDay,
    window: TimeWindow,
    weights: &EventWeights,
) -> Result<Option<FileResult>, ParquetError> {
    let mut out = FileResult::default();
    let mut mapped = Vec::new();
    for part in parts {
        out.bytes += part.len() as u64;
        out.files += 1;
        let (generation, batches) = read_mapping(part)?;
        if generation.as_deref() != Some(day.manifest.generation.as_str()) {
            // Overwritten by a newer compaction since the manifest was read.
            return Ok(None);
        }
        for b in &batches {
            for i in 0..b.len() {
                let (order, hour, fields) = b.row(i);
                if !overlaps(day.day_start_ms + i64::from(hour) * HOUR_MS, window) {
                    continue;
                }
                out.stats.lines += 1;
                match map_event_fields(&fields, weights) {
                    Ok(mut i) => {
                        let key = dedupe_key(&i.event_id);
                        i.event_id = String::new();
                        mapped.push((order, key, i));
                    }
                    Err(Skip::Malformed(_)) => out.stats.malformed += 1,
                    Err(_) => out.stats.skipped += 1,
                }
            }
        }
    }
    mapped.sort_by_key(|(order, _, _)| *order);
    out.interactions = mapped.into_iter().map(|(_, k, i)| (k, i)).collect();
    Ok(Some(out))
}

/// Fetches every part of a compacted day and decodes them off the async threads with `decode`
/// (training's interactions, the Lab's Arrow rows); `None` when a part is missing, of another
/// generation (`decode` says so) or unreadable — the caller then reads the raw day.
pub(crate) async fn decode_compacted_parts<O, T, E>(
    store: &O,
    day: &CompactedDay,
    decode: impl FnOnce(Vec<Bytes>, &CompactedDay) -> Result<Option<T>, E> + Send + 'static,
) -> Result<Option<T>, StoreError>
where
    O: ObjectStore,
    T: Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    let mut parts = Vec::with_capacity(day.manifest.parts.len());
    for p in &day.manifest.parts {
        match store.get(&p.key).await? {
            Some(b) => parts.push(b),
            None => return Ok(None),
        }
    }
    let d = day.clone();
    let decoded = tokio::task::spawn_blocking(move || decode(parts, &d))
        .await
        .expect("parquet decoder task panicked");
    Ok(decoded.unwrap_or_else(|e| {
        tracing::warn!(date = %day.manifest.date, error = %e, "Unreadable compacted part: the day is read raw.");
        None
    }))
}

/// Reads a compacted day: its parts, then its late raw objects; the raw day instead when a
/// part is missing, unreadable or of another generation.
pub(crate) async fn read_compacted_day<O: ObjectStore>(
    store: &O,
    day: &CompactedDay,
    window: TimeWindow,
    weights: &EventWeights,
) -> Result<FileResult, StoreError> {
    let w = weights.clone();
    let decoded = decode_compacted_parts(store, day, move |parts, d| {
        decode_parts(parts, d, window, &w)
    })
    .await?;
    let (mut out, extra) = match decoded {
        Some(out) => (out, &day.late),
        None => (FileResult::default(), &day.raw),
    };
    for key in extra {
        let Some(body) = store.get(key).await? else {
            continue;
        };
        let (k, w) = (key.clone(), weights.clone());
        let f = tokio::task::spawn_blocking(move || decode_file(&k, &body, &w))
            .await
            .expect("decoder task panicked");
        out.append(f);
    }
    Ok(out)
}

/// The compaction contract, run on the local store (unit test) and on S3 (moto).
#[cfg(any(test, feature = "testkit"))]
pub mod contract {
    use super::*;
    use crate::event_log::jsonl::gzip_lines;
    use crate::event_log::layout::{event_object_key, Hour};
    use crate::event_log::parquet::read_rows;
    use crate::event_log::reader::contract::event_line;
    use crate::event_log::reader::{read_window, ReadOutcome};

    // 2026-11-20T00:00Z
    const DAY0: i64 = 1_795_132_800_000;
    /// "Now" of the contract: 2026-11-23T12:00Z, so days 0–2 are finished and day 3 is not.
    const NOW: i64 = DAY0 + 3 * DAY_MS + 12 * HOUR_MS;

    fn at(day: i64, hour: i64, min: i64) -> i64 {
        DAY0 + day * DAY_MS + hour * HOUR_MS + min * 60_000
    }

    async fn put<O: ObjectStore>(store: &O, site: &str, ts: i64, writer: &str, body: Vec<u8>) {
        let key = event_object_key(site, Hour::of(ts), writer, "1");
        store.put(&key, Bytes::from(body)).await.unwrap();
    }

    async fn put_lines<O: ObjectStore>(store: &O, site: &str, ts: i64, writer: &str, l: &[String]) {
        put(
            store,
            site,
            ts,
            writer,
            gzip_lines(l.iter().map(String::as_str)),
        )
        .await;
    }

    /// The distinct `event_id`s of a raw day, counted straight from its lines.
    pub async fn raw_distinct_ids<O: ObjectStore>(
        store: &O,
        site: &str,
        date: &str,
    ) -> HashSet<String> {
        let mut ids = HashSet::new();
        for o in raw_day_objects(store, site, date).await.unwrap() {
            let body = store.get(&o.key).await.unwrap().unwrap();
            for line in gunzip_text(&body).text.lines() {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
                    if let Some(id) = v.get("event_id").and_then(|i| i.as_str()) {
                        ids.insert(id.to_string());
                    }
                }
            }
        }
        ids
    }

    /// The `event_id`s of a compacted day, from the parts its manifest names (asserting that
    /// no id appears twice: the compacted layer is exactly once).
    pub async fn compacted_ids<O: ObjectStore>(
        store: &O,
        site: &str,
        date: &str,
    ) -> HashSet<String> {
        let m = load_manifest(store, site, date)
            .await
            .unwrap()
            .expect("a manifest");
        let mut ids = HashSet::new();
        let mut rows_total = 0;
        for p in &m.parts {
            let rows = read_rows(store.get(&p.key).await.unwrap().unwrap()).unwrap();
            assert_eq!(rows.len() as u64, p.rows);
            rows_total += rows.len();
            ids.extend(rows.into_iter().map(|r| r.event_id));
        }
        assert_eq!(ids.len(), rows_total, "an event_id appears twice");
        assert_eq!(m.distinct_event_ids, rows_total as u64);
        ids
    }

    fn named(r: &ReadOutcome) -> Vec<(String, String, i64)> {
        let log = &r.interactions;
        let mut v: Vec<_> = log
            .rows
            .iter()
            .map(|x| {
                (
                    log.users[x.user as usize].clone(),
                    log.items[x.item as usize].clone(),
                    x.timestamp_ms,
                )
            })
            .collect();
        v.sort();
        v
    }

    fn same_interactions(a: &ReadOutcome, b: &ReadOutcome) {
        let (x, y) = (&a.interactions, &b.interactions);
        assert_eq!(x.users, y.users);
        assert_eq!(x.items, y.items);
        assert_eq!(x.rows.len(), y.rows.len());
        for (r, s) in x.rows.iter().zip(&y.rows) {
            assert_eq!(
                (r.user, r.item, r.weight, r.timestamp_ms),
                (s.user, s.item, s.weight, s.timestamp_ms)
            );
        }
        assert_eq!(a.stats.interactions, b.stats.interactions);
        assert_eq!(a.out_of_window, b.out_of_window);
    }

    /// Writes `days` synthetic days of `per_day` events (two writers' files per hour, 2 % of
    /// the events re-delivered), reads the whole window raw, compacts, reads it again, and says
    /// how long each took and how large the raw and Parquet days are.
    pub async fn measure<O: ObjectStore>(store: &O, days: i64, per_day: i64) -> String {
        use crate::event_log::reader::read_window;
        let day0 = DAY0 - days * DAY_MS;
        let types = [
            "media_play",
            "media_end",
            "page_view",
            "recommendation_displayed",
        ];
        let n = (per_day / 24).max(1);
        for d in 0..days {
            for h in 0..24 {
                let lines: Vec<String> = (0..n)
                    .map(|i| {
                        let k = d * per_day + h * n + i;
                        let ts = day0 + d * DAY_MS + h * HOUR_MS + i * (HOUR_MS / n);
                        let item = format!("item-{}", (k * 7919) % 5000);
                        let user = format!("user-{}", (k * 104_729) % 20_000);
                        event_line("m", types[(k % 4) as usize], &item, &user, ts)
                    })
                    .collect();
                for (w, chunk) in lines.chunks(lines.len().div_ceil(2)).enumerate() {
                    let mut chunk: Vec<&str> = chunk.iter().map(String::as_str).collect();
                    chunk.extend(chunk.clone().into_iter().step_by(50));
                    let hour = Hour::of(day0 + d * DAY_MS + h * HOUR_MS);
                    let key = event_object_key("m", hour, &format!("shardId-{w}"), "1");
                    store
                        .put(&key, Bytes::from(gzip_lines(chunk)))
                        .await
                        .unwrap();
                }
            }
        }
        let window = TimeWindow {
            since_ms: day0,
            until_ms: day0 + days * DAY_MS,
        };
        let w = EventWeights::default();
        let t = std::time::Instant::now();
        let raw = read_window(store, "m", window, &w, 8, &ErasureSet::default())
            .await
            .unwrap();
        let raw_ms = t.elapsed().as_millis();
        let t = std::time::Instant::now();
        let now = day0 + (days + 1) * DAY_MS;
        let done = compact_site(
            store,
            &ErasureSet::default(),
            "m",
            CompactOptions::default(),
            now,
        )
        .await
        .unwrap();
        let compact_ms = t.elapsed().as_millis();
        let (raw_bytes, pq_bytes) = done.iter().fold((0, 0), |(r, p), o| {
            let m = o.manifest.as_ref().unwrap();
            (r + m.raw_bytes, p + m.parquet_bytes)
        });
        let t = std::time::Instant::now();
        let compacted = read_window(store, "m", window, &w, 8, &ErasureSet::default())
            .await
            .unwrap();
        let pq_ms = t.elapsed().as_millis();
        same_interactions(&raw, &compacted);
        format!(
            "{days} days x {per_day} events: compaction {compact_ms} ms ({} ms/day), raw gz {raw_bytes} B -> parquet {pq_bytes} B (ratio {:.2}); window read raw {raw_ms} ms ({} files) vs compacted {pq_ms} ms ({} files), {} interactions",
            compact_ms / days.max(1) as u128,
            pq_bytes as f64 / raw_bytes.max(1) as f64,
            raw.files,
            compacted.files,
            raw.interactions.rows.len()
        )
    }

    /// Writes three finished days and today (with duplicates, a malformed line, a torn member,
    /// several users and hours), compacts, and checks conservation, exactly-once, the sort,
    /// the parts, reads equal to the raw read, late events and the generation guard.
    pub async fn compaction_contract<O: ObjectStore>(store: &O) {
        let site = format!("c{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff);
        let site = site.as_str();
        let ev = |t: &str, id: &str, user: &str, ts: i64| event_line(site, t, id, user, ts);
        for day in 0..=3 {
            for (n, hour) in [1i64, 7, 22].into_iter().enumerate() {
                let mut lines: Vec<String> = (0..6)
                    .map(|i| {
                        let t = if i % 3 == 2 {
                            "media_end"
                        } else {
                            "media_play"
                        };
                        ev(
                            t,
                            &format!("m{}", (i + n) % 5),
                            &format!("u{}", (i * 7 + day as usize) % 4),
                            at(day, hour, i as i64),
                        )
                    })
                    .collect();
                lines.push(ev(
                    "recommendation_displayed",
                    "r1",
                    "u1",
                    at(day, hour, 30),
                ));
                lines.push("not json".to_string());
                put_lines(store, site, at(day, hour, 0), "w1", &lines).await;
                // a second writer re-delivered part of the batch
                put_lines(store, site, at(day, hour, 0), "w2", &lines[1..3]).await;
            }
        }
        // day 1: a torn member between two valid ones
        let mut torn = gzip_lines([ev("media_play", "t1", "u9", at(1, 9, 0)).as_str()]);
        let tail = gzip_lines([ev("media_play", "lost", "u9", at(1, 9, 1)).as_str()]);
        torn.extend_from_slice(&tail[..tail.len() / 2]);
        torn.extend(gzip_lines([
            ev("media_play", "t2", "u9", at(1, 9, 2)).as_str()
        ]));
        put(store, site, at(1, 9, 0), "w3", torn).await;

        let w = EventWeights::default();
        let window = TimeWindow {
            since_ms: at(0, 5, 0),
            until_ms: at(3, 8, 0),
        };
        // GIVEN the raw read of a window over compacted-to-be days and today
        let raw_read = read_window(store, site, window, &w, 4, &ErasureSet::default())
            .await
            .unwrap();
        assert!(raw_read.stats.interactions > 30);

        // WHEN the site is compacted (finished days only)
        let opts = CompactOptions {
            max_rows_per_part: 7,
            concurrency: 4,
        };
        let done = compact_site(store, &ErasureSet::default(), site, opts, NOW)
            .await
            .unwrap();
        let dates: Vec<&str> = done.iter().map(|o| o.date.as_str()).collect();
        assert_eq!(dates, ["2026-11-20", "2026-11-21", "2026-11-22"]);
        assert!(done.iter().all(|o| o.status == CompactStatus::Compacted));
        assert!(load_manifest(store, site, "2026-11-23")
            .await
            .unwrap()
            .is_none());

        // THEN conservation: each compacted day holds exactly the raw day's distinct ids
        for d in &dates {
            assert_eq!(
                compacted_ids(store, site, d).await,
                raw_distinct_ids(store, site, d).await,
                "{d}"
            );
        }
        let m = done[1].manifest.clone().unwrap();
        assert_eq!((m.torn_members, m.malformed_lines), (1, 3));
        assert_eq!(m.duplicates, 6);
        assert!(m.raw_objects.iter().any(|o| o.key.contains("hour=09")));
        assert_eq!(m.parts.len(), (m.distinct_event_ids as usize).div_ceil(7));
        assert_eq!(
            m.parts[0].key,
            format!("compacted/site={site}/date=2026-11-21/part-00000.parquet")
        );
        // sorted by user across the parts
        let mut users = Vec::new();
        for p in &m.parts {
            users.extend(
                read_rows(store.get(&p.key).await.unwrap().unwrap())
                    .unwrap()
                    .iter()
                    .map(|r| r.user_key().to_string()),
            );
        }
        assert!(users.windows(2).all(|u| u[0] <= u[1]), "{users:?}");
        // a second run has nothing to do
        assert!(compact_site(store, &ErasureSet::default(), site, opts, NOW)
            .await
            .unwrap()
            .is_empty());
        assert_eq!(
            compact_day(store, &ErasureSet::default(), site, "2026-11-21", opts, NOW)
                .await
                .unwrap()
                .status,
            CompactStatus::UpToDate
        );
        assert!(matches!(
            compact_day(store, &ErasureSet::default(), site, "2026-11-23", opts, NOW).await,
            Err(CompactError::NotFinished(_))
        ));
        assert!(matches!(
            compact_day(store, &ErasureSet::default(), site, "2026-13-01", opts, NOW).await,
            Err(CompactError::InvalidDate(_))
        ));

        // AND the window read from Parquet equals the raw read
        let compacted_read = read_window(store, site, window, &w, 4, &ErasureSet::default())
            .await
            .unwrap();
        same_interactions(&raw_read, &compacted_read);
        assert_ne!(raw_read.files, compacted_read.files, "the parts were read");

        // WHEN a late event (and a re-delivered old one) arrives for a compacted day
        put_lines(
            store,
            site,
            at(1, 7, 0),
            "late",
            &[
                ev("media_play", "late1", "u2", at(1, 7, 45)),
                ev("media_play", "m1", "u1", at(1, 7, 0)),
            ],
        )
        .await;
        // THEN training sees it before any recompaction, deduped against the Parquet rows
        let before = read_window(store, site, window, &w, 4, &ErasureSet::default())
            .await
            .unwrap();
        let raw_again = {
            let keys = crate::event_log::reader::list_window(store, site, window, 4)
                .await
                .unwrap();
            crate::event_log::reader::read_files(store, &keys, window, &w, 4)
                .await
                .unwrap()
        };
        // (the same interactions; a late object is read after the day's parts, so the order of
        // first sight, and with it the interning order, may differ until the recompaction)
        assert_eq!(named(&raw_again), named(&before));
        assert_eq!(before.stats.interactions, raw_read.stats.interactions + 1);
        // AND the next run recompacts that day only, and conservation holds again
        let again = compact_site(store, &ErasureSet::default(), site, opts, NOW)
            .await
            .unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(
            (again[0].date.as_str(), again[0].status),
            ("2026-11-21", CompactStatus::Recompacted)
        );
        assert_ne!(again[0].manifest.as_ref().unwrap().generation, m.generation);
        assert_eq!(
            compacted_ids(store, site, "2026-11-21").await,
            raw_distinct_ids(store, site, "2026-11-21").await
        );
        same_interactions(
            &raw_again,
            &read_window(store, site, window, &w, 4, &ErasureSet::default())
                .await
                .unwrap(),
        );

        // WHEN a part is overwritten by another compaction than the manifest names
        let m2 = load_manifest(store, site, "2026-11-22")
            .await
            .unwrap()
            .unwrap();
        let rows = read_rows(store.get(&m2.parts[0].key).await.unwrap().unwrap()).unwrap();
        let foreign = crate::event_log::parquet::write_part(&rows[..1], "another").unwrap();
        store
            .put(&m2.parts[0].key, Bytes::from(foreign))
            .await
            .unwrap();
        // THEN the day is read raw, never mixed: the read still equals the raw read
        same_interactions(
            &raw_again,
            &read_window(store, site, window, &w, 4, &ErasureSet::default())
                .await
                .unwrap(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn local_compaction_passes_the_contract() {
        let dir = std::env::temp_dir().join(format!("nectar-compact-{}", rand::random::<u64>()));
        contract::compaction_contract(&crate::object_store::LocalStore::new(&dir)).await;
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// Compaction time, size ratio and read time of a window, raw vs compacted, on synthetic
    /// days (`NECTAR_MEASURE_DAYS`, default 90, of `NECTAR_MEASURE_EVENTS` events each, default
    /// 5000). Run: `cargo test -p nectar-platform --lib measure_compaction -- --ignored --nocapture`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "a measurement, not a check"]
    async fn measure_compaction() {
        let env = |k: &str, d: i64| {
            std::env::var(k)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(d)
        };
        let dir = std::env::temp_dir().join(format!("nectar-measure-{}", rand::random::<u64>()));
        let store = crate::object_store::LocalStore::new(&dir);
        let report = contract::measure(
            &store,
            env("NECTAR_MEASURE_DAYS", 90),
            env("NECTAR_MEASURE_EVENTS", 5000),
        )
        .await;
        println!("local dir: {report}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn late_objects_are_new_or_grown_never_gone() {
        let meta = |key: &str, size| ObjectMeta {
            key: key.into(),
            size,
        };
        let m = Manifest {
            format: MANIFEST_FORMAT,
            site: "s".into(),
            date: "2026-11-20".into(),
            generation: "g".into(),
            compacted_at_ms: 0,
            raw_objects: vec![meta("a", 10), meta("b", 10), meta("gone", 5)],
            parts: Vec::new(),
            raw_lines: 0,
            distinct_event_ids: 0,
            duplicates: 0,
            malformed_lines: 0,
            torn_members: 0,
            raw_bytes: 0,
            parquet_bytes: 0,
            erasures_applied: 0,
            erased_rows: 0,
        };
        let now = [meta("a", 10), meta("b", 12), meta("c", 1)];
        let late: Vec<&str> = m
            .late_objects(&now)
            .iter()
            .map(|o| o.key.as_str())
            .collect();
        assert_eq!(late, ["b", "c"]);
        assert!(m.late_objects(&[meta("a", 10)]).is_empty());
    }
}
