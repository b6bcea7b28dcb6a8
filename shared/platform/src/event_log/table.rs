//! The event log as a table of flat events (the Lab's `nectar.read_events`): the same sources
//! as training's reader ([`super::reader`]: compacted days from their Parquet parts plus late
//! raw objects, the other days raw), the same global dedupe by `event_id` (first occurrence in
//! reading order wins) and the same erasure filter, but the events themselves rather than the
//! interactions they map to. Columns are the compacted schema's without its bookkeeping
//! (`raw_order`, `hour`): [`TABLE_COLUMNS`].
//!
//! Compacted rows stay Arrow from the Parquet decoder to the caller (filtered, never copied row
//! by row), so a compacted log reads at the decoder's speed.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type};
use arrow_array::{Array, BooleanArray, RecordBatch, StringArray};
use arrow_schema::{Schema, SchemaRef};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use nectar_model::mapping::{dedupe_key, Deduper};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;

use crate::event_log::compact::{
    decode_compacted_parts, split_lines, window_sources, CompactedDay,
};
use crate::event_log::layout::{COMPACTED_PREFIX, EVENTS_PREFIX};
use crate::event_log::parquet::{batch_of, schema, EventRow, ParquetError, GENERATION_KEY};
use crate::event_log::reader::{partition_start_ms, Source, TimeWindow, HOUR_MS};
use crate::object_store::{ObjectStore, StoreError};
use crate::privacy::{ErasureLogError, ErasureSet, ErasureSource};

/// The columns of the event table, in order.
pub const TABLE_COLUMNS: [&str; 17] = [
    "event_id",
    "site_key",
    "type",
    "id",
    "event_timestamp",
    "event_timestamp_original",
    "collect_timestamp",
    "sent_timestamp",
    "session_start_timestamp",
    "user_id",
    "client_id",
    "peach_schema_version",
    "client",
    "context",
    "props",
    "metadata",
    "nectar_served",
];

/// Why the table cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// A requested column is not one of [`TABLE_COLUMNS`].
    #[error("columns: unknown column {0:?} (expected some of {cols})", cols = TABLE_COLUMNS.join(", "))]
    UnknownColumn(String),
    /// The window is empty or reversed.
    #[error("since ({since_ms}) must be before until ({until_ms})")]
    Window {
        /// Start, ms.
        since_ms: i64,
        /// End, ms.
        until_ms: i64,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Arrow or Parquet failed.
    #[error(transparent)]
    Parquet(#[from] ParquetError),
    /// Reading the site's erased subjects failed.
    #[error(transparent)]
    Erasures(#[from] ErasureLogError),
}

impl From<arrow_schema::ArrowError> for TableError {
    fn from(e: arrow_schema::ArrowError) -> Self {
        Self::Parquet(ParquetError::Arrow(e))
    }
}

/// What a table read counted, beside the rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableStats {
    /// Raw objects read.
    pub raw_objects: u64,
    /// Compacted days read from their parts.
    pub compacted_days: u64,
    /// Rows (raw lines and compacted rows) looked at.
    pub rows_read: u64,
    /// Rows dropped as repeats of an `event_id` read before.
    pub duplicates: u64,
    /// Raw lines that are not events.
    pub malformed: u64,
    /// Rows of erased users or clients dropped.
    pub erased: u64,
}

/// The events of a read, as Arrow batches of one schema.
#[derive(Debug, Clone)]
pub struct EventTable {
    /// The schema (the requested columns, in the requested order).
    pub schema: SchemaRef,
    /// The rows.
    pub batches: Vec<RecordBatch>,
    /// What was read.
    pub stats: TableStats,
}

impl EventTable {
    /// Rows in the table.
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// The window spanning every day of `site` that has raw objects or a compacted part (for
/// reads without bounds); `None` when the site has no events.
pub async fn full_window<O: ObjectStore>(
    store: &O,
    site: &str,
) -> Result<Option<TimeWindow>, StoreError> {
    let (raw_prefix, compacted_prefix) = (
        format!("{EVENTS_PREFIX}site={site}/"),
        format!("{COMPACTED_PREFIX}site={site}/"),
    );
    let (raw, compacted) =
        futures::try_join!(store.list(&raw_prefix), store.list(&compacted_prefix))?;
    let starts = raw
        .iter()
        .filter_map(|k| partition_start_ms(k))
        .chain(compacted.iter().filter_map(|k| day_of(k)));
    let (lo, hi) = starts.fold((i64::MAX, i64::MIN), |(lo, hi), s| (lo.min(s), hi.max(s)));
    Ok((lo <= hi).then(|| TimeWindow {
        since_ms: lo - lo.rem_euclid(24 * HOUR_MS),
        until_ms: hi - hi.rem_euclid(24 * HOUR_MS) + 24 * HOUR_MS,
    }))
}

/// The start (ms UTC) of the day a compacted key belongs to.
fn day_of(key: &str) -> Option<i64> {
    let date = key.split("/date=").nth(1)?.get(..10)?;
    let d = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
    Some(d.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis())
}

/// The indices of `columns` in [`TABLE_COLUMNS`] (all of them when `None`).
fn column_indices(columns: Option<&[String]>) -> Result<Vec<usize>, TableError> {
    match columns {
        None => Ok((0..TABLE_COLUMNS.len()).collect()),
        Some(cols) => cols
            .iter()
            .map(|c| {
                TABLE_COLUMNS
                    .iter()
                    .position(|t| t == c)
                    .ok_or_else(|| TableError::UnknownColumn(c.clone()))
            })
            .collect(),
    }
}

/// One source's rows, filtered (window, erasure) but not yet deduped.
struct SourceRows {
    batches: Vec<RecordBatch>,
    stats: TableStats,
}

/// Reads the events of `site` in `window` (every day the log has when `None`), deduped by
/// `event_id`, with only `columns` (all of [`TABLE_COLUMNS`] when `None`); the events of the
/// subjects `erasures` names are left out, as training leaves them out.
pub async fn read_event_table<O: ObjectStore, E: ErasureSource>(
    store: &O,
    erasures: &E,
    site: &str,
    window: Option<TimeWindow>,
    columns: Option<&[String]>,
    concurrency: usize,
) -> Result<EventTable, TableError> {
    let wanted = column_indices(columns)?;
    let full = Arc::new(table_schema());
    let out_schema = Arc::new(full.project(&wanted)?);
    let mut table = EventTable {
        schema: out_schema.clone(),
        batches: Vec::new(),
        stats: TableStats::default(),
    };
    if let Some(w) = window {
        if w.until_ms <= w.since_ms {
            return Err(TableError::Window {
                since_ms: w.since_ms,
                until_ms: w.until_ms,
            });
        }
    }
    let window = match window {
        Some(w) => w,
        None => match full_window(store, site).await? {
            Some(w) => w,
            None => return Ok(table),
        },
    };
    let sources = window_sources(store, site, window, concurrency).await?;
    let erased = Arc::new(erasures.erasure_set(site).await?);
    let mut reads = futures::stream::iter(sources)
        .map(|source| {
            let erased = erased.clone();
            async move { read_source(store, source, window, erased).await }
        })
        // In order: the first occurrence of an event in reading order wins, as in training.
        .buffered(concurrency.max(1));
    let mut dedupe = Deduper::new();
    while let Some(rows) = reads.try_next().await? {
        add_stats(&mut table.stats, &rows.stats);
        for batch in rows.batches {
            let ids = batch.column(0).as_string::<i32>();
            let keep: BooleanArray = (0..ids.len())
                .map(|i| Some(dedupe.first_time_key(dedupe_key(ids.value(i)))))
                .collect();
            let kept = keep.true_count();
            table.stats.duplicates += (batch.num_rows() - kept) as u64;
            if kept == 0 {
                continue;
            }
            let batch = if kept == batch.num_rows() {
                batch
            } else {
                arrow_select::filter::filter_record_batch(&batch, &keep)?
            };
            // Source batches carry the full table schema; the caller's projection is last.
            table.batches.push(batch.project(&wanted)?);
        }
    }
    Ok(table)
}

fn add_stats(a: &mut TableStats, b: &TableStats) {
    a.raw_objects += b.raw_objects;
    a.compacted_days += b.compacted_days;
    a.rows_read += b.rows_read;
    a.duplicates += b.duplicates;
    a.malformed += b.malformed;
    a.erased += b.erased;
}

/// The table schema: the compacted schema without its bookkeeping columns.
fn table_schema() -> Schema {
    let s = schema();
    let fields: Vec<_> = TABLE_COLUMNS
        .iter()
        .map(|c| {
            s.field_with_name(c)
                .expect("table column in schema")
                .clone()
        })
        .collect();
    Schema::new(fields)
}

async fn read_source<O: ObjectStore>(
    store: &O,
    source: Source,
    window: TimeWindow,
    erased: Arc<ErasureSet>,
) -> Result<SourceRows, TableError> {
    match source {
        Source::Raw(key) => read_raw(store, vec![key], window, erased).await,
        Source::Compacted(day) => {
            let e = erased.clone();
            let decoded = decode_compacted_parts(store, &day, move |parts, d| {
                decode_parts(parts, d, window, &e)
            })
            .await?;
            match decoded {
                Some(mut rows) => {
                    let late = read_raw(store, day.late.clone(), window, erased).await?;
                    add_stats(&mut rows.stats, &late.stats);
                    rows.batches.extend(late.batches);
                    Ok(rows)
                }
                None => read_raw(store, day.raw.clone(), window, erased).await,
            }
        }
    }
}

/// Raw objects, in order, as table batches (one per object).
async fn read_raw<O: ObjectStore>(
    store: &O,
    keys: Vec<String>,
    window: TimeWindow,
    erased: Arc<ErasureSet>,
) -> Result<SourceRows, TableError> {
    let mut out = SourceRows {
        batches: Vec::new(),
        stats: TableStats::default(),
    };
    for key in keys {
        let Some(body) = store.get(&key).await? else {
            // Listed then gone (lifecycle rule): nothing to read.
            continue;
        };
        let erased = erased.clone();
        let (batch, stats) =
            tokio::task::spawn_blocking(move || raw_batch(&key, &body, window, &erased))
                .await
                .expect("decoder task panicked")?;
        add_stats(&mut out.stats, &stats);
        out.batches.push(batch);
    }
    Ok(out)
}

fn raw_batch(
    key: &str,
    body: &Bytes,
    window: TimeWindow,
    erased: &ErasureSet,
) -> Result<(RecordBatch, TableStats), TableError> {
    let (lines, _torn) = split_lines(key, body);
    let mut stats = TableStats {
        raw_objects: 1,
        rows_read: lines.len() as u64,
        ..TableStats::default()
    };
    let mut rows = Vec::with_capacity(lines.len());
    for (n, line) in lines.iter().enumerate() {
        let Some(row) = EventRow::parse(line, n as i64, 0) else {
            stats.malformed += 1;
            continue;
        };
        if row.event_timestamp < window.since_ms || row.event_timestamp >= window.until_ms {
            continue;
        }
        if erased.erases_event(row.user_key(), row.client_id.as_deref()) {
            stats.erased += 1;
            continue;
        }
        rows.push(row);
    }
    let full = batch_of(&rows, &schema())?;
    let table = table_indices();
    Ok((full.project(&table)?, stats))
}

/// The positions of [`TABLE_COLUMNS`] in the compacted schema.
fn table_indices() -> Vec<usize> {
    let s = schema();
    TABLE_COLUMNS
        .iter()
        .map(|c| s.index_of(c).expect("table column in schema"))
        .collect()
}

/// A compacted day's rows in the window, as table batches; `None` when a part is of another
/// generation (overwritten since the manifest was read: the caller reads the raw day).
fn decode_parts(
    parts: Vec<Bytes>,
    day: &CompactedDay,
    window: TimeWindow,
    erased: &ErasureSet,
) -> Result<Option<SourceRows>, TableError> {
    let mut out = SourceRows {
        batches: Vec::new(),
        stats: TableStats {
            compacted_days: 1,
            ..TableStats::default()
        },
    };
    let mut read: Vec<&str> = TABLE_COLUMNS.to_vec();
    read.push("hour");
    for part in parts {
        let builder = ParquetRecordBatchReaderBuilder::try_new(part).map_err(ParquetError::from)?;
        let generation = builder
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .and_then(|kv| kv.iter().find(|k| k.key == GENERATION_KEY))
            .and_then(|k| k.value.clone());
        if generation.as_deref() != Some(day.manifest.generation.as_str()) {
            return Ok(None);
        }
        let mask = ProjectionMask::columns(builder.parquet_schema(), read.iter().copied());
        let reader = builder
            .with_projection(mask)
            .with_batch_size(64 * 1024)
            .build()
            .map_err(ParquetError::from)?;
        for batch in reader {
            let batch = batch?;
            out.stats.rows_read += batch.num_rows() as u64;
            let keep = keep_mask(&batch, day.day_start_ms, window, erased)?;
            let kept = keep.true_count();
            let batch = if kept == batch.num_rows() {
                batch
            } else {
                arrow_select::filter::filter_record_batch(&batch, &keep)?
            };
            // The projection keeps file order, which is the compacted schema's, so the table
            // columns are found by name.
            let s = batch.schema();
            let idx: Vec<usize> = TABLE_COLUMNS
                .iter()
                .map(|c| s.index_of(c))
                .collect::<Result<_, _>>()?;
            out.batches.push(batch.project(&idx)?);
        }
    }
    Ok(Some(out))
}

/// Rows of a compacted batch inside the window (hour partition and event time, as the raw
/// reader filters) and not erased (compaction already left out subjects erased before it ran;
/// this drops those erased since).
fn keep_mask(
    batch: &RecordBatch,
    day_start_ms: i64,
    window: TimeWindow,
    erased: &ErasureSet,
) -> Result<BooleanArray, TableError> {
    let col = |name: &'static str| {
        batch
            .column_by_name(name)
            .ok_or(TableError::Parquet(ParquetError::Column(name)))
    };
    let hour = col("hour")?
        .as_primitive_opt::<Int32Type>()
        .ok_or(ParquetError::Column("hour"))?;
    let ts = col("event_timestamp")?
        .as_primitive_opt::<Int64Type>()
        .ok_or(ParquetError::Column("event_timestamp"))?;
    let user: &StringArray = col("user_id")?
        .as_string_opt::<i32>()
        .ok_or(ParquetError::Column("user_id"))?;
    let client: &StringArray = col("client_id")?
        .as_string_opt::<i32>()
        .ok_or(ParquetError::Column("client_id"))?;
    let check_erased = !erased.is_empty();
    Ok((0..batch.num_rows())
        .map(|i| {
            let start = day_start_ms + i64::from(hour.value(i)) * HOUR_MS;
            let t = ts.value(i);
            let in_window = start < window.until_ms
                && start + HOUR_MS > window.since_ms
                && t >= window.since_ms
                && t < window.until_ms;
            let gone = check_erased && {
                let c = (!client.is_null(i)).then(|| client.value(i));
                let u = (!user.is_null(i))
                    .then(|| user.value(i))
                    .filter(|u| !u.is_empty())
                    .or(c)
                    .unwrap_or("");
                erased.erases_event(u, c)
            };
            Some(in_window && !gone)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event_log::compact::{compact_day, CompactOptions};
    use crate::event_log::jsonl::gzip_lines;
    use crate::event_log::layout::{event_object_key, Hour};
    use crate::event_log::reader::contract::event_line;
    use crate::event_log::reader::read_window;
    use crate::object_store::LocalStore;
    use nectar_model::mapping::EventWeights;

    // 2026-11-20T00:00Z
    const DAY0: i64 = 1_795_132_800_000;
    const DAY: i64 = 24 * HOUR_MS;

    fn temp_store() -> LocalStore {
        let dir = std::env::temp_dir().join(format!("nectar-table-{:016x}", rand::random::<u64>()));
        LocalStore::new(dir)
    }

    async fn put(store: &LocalStore, ts: i64, writer: &str, lines: &[String]) {
        let key = event_object_key("s", Hour::of(ts), writer, "1");
        let body = gzip_lines(lines.iter().map(String::as_str));
        store.put(&key, Bytes::from(body)).await.unwrap();
    }

    fn ids(t: &EventTable) -> Vec<String> {
        let mut out: Vec<String> = t
            .batches
            .iter()
            .flat_map(|b| {
                let c = b.column_by_name("event_id").unwrap().as_string::<i32>();
                (0..c.len())
                    .map(|i| c.value(i).to_string())
                    .collect::<Vec<_>>()
            })
            .collect();
        out.sort();
        out
    }

    /// Two days: day 0 has a re-delivered event (two writers) and a line that is no event; day
    /// 1 a media_end and a non-interaction.
    async fn two_days(store: &LocalStore) {
        let a = event_line("s", "media_play", "a", "u1", DAY0 + 60_000);
        put(store, DAY0, "w1", &[a.clone(), "not json".into()]).await;
        put(store, DAY0, "w2", &[a]).await;
        put(
            store,
            DAY0 + 5 * HOUR_MS,
            "w1",
            &[event_line(
                "s",
                "media_end",
                "b",
                "u2",
                DAY0 + 5 * HOUR_MS + 1,
            )],
        )
        .await;
        put(
            store,
            DAY0 + DAY,
            "w1",
            &[
                event_line("s", "media_play", "c", "u2", DAY0 + DAY + 1),
                event_line("s", "recommendation_displayed", "r", "u2", DAY0 + DAY + 2),
            ],
        )
        .await;
    }

    #[tokio::test]
    async fn raw_and_compacted_read_the_same_deduped_events() {
        // GIVEN a raw log with a duplicated event and a malformed line
        let store = temp_store();
        two_days(&store).await;
        // WHEN the whole log is read raw
        let raw = read_event_table(&store, &crate::privacy::NoErasures, "s", None, None, 4)
            .await
            .unwrap();
        // THEN each distinct event is one row, the repeat and the bad line counted
        assert_eq!(raw.num_rows(), 4);
        assert_eq!(raw.stats.duplicates, 1);
        assert_eq!(raw.stats.malformed, 1);
        assert_eq!(raw.schema.fields().len(), TABLE_COLUMNS.len());
        // AND training's reader maps the same events (three interactions: the display is none)
        let w = full_window(&store, "s").await.unwrap().unwrap();
        assert_eq!((w.since_ms, w.until_ms), (DAY0, DAY0 + 2 * DAY));
        let trained = read_window(
            &store,
            "s",
            w,
            &EventWeights::default(),
            4,
            &ErasureSet::default(),
        )
        .await
        .unwrap();
        assert_eq!(trained.interactions.len(), 3);

        // WHEN day 0 is compacted and a late object re-delivers its event beside a new one
        compact_day(
            &store,
            &crate::privacy::NoErasures,
            "s",
            "2026-11-20",
            CompactOptions::default(),
            DAY0 + 3 * DAY,
        )
        .await
        .unwrap();
        put(
            &store,
            DAY0 + 7 * HOUR_MS,
            "late",
            &[
                event_line("s", "media_play", "a", "u1", DAY0 + 60_000),
                event_line("s", "media_play", "d", "u3", DAY0 + 7 * HOUR_MS),
            ],
        )
        .await;
        let mixed = read_event_table(&store, &crate::privacy::NoErasures, "s", None, None, 4)
            .await
            .unwrap();
        // THEN the compacted day is read from its parts, plus the late object, deduped
        assert_eq!(mixed.stats.compacted_days, 1);
        assert_eq!(mixed.num_rows(), 5);
        let mut want = ids(&raw);
        want.push(nectar_model::event::event_id(
            "s",
            "u3",
            "media_play",
            "d",
            DAY0 + 7 * HOUR_MS,
        ));
        want.sort();
        assert_eq!(ids(&mixed), want);
    }

    #[tokio::test]
    async fn window_and_columns_select() {
        // GIVEN the two days
        let store = temp_store();
        two_days(&store).await;
        // WHEN only day 1 is asked for, with two columns
        let cols = vec!["type".to_string(), "event_id".to_string()];
        let w = TimeWindow {
            since_ms: DAY0 + DAY,
            until_ms: DAY0 + 2 * DAY,
        };
        let t = read_event_table(
            &store,
            &crate::privacy::NoErasures,
            "s",
            Some(w),
            Some(&cols),
            4,
        )
        .await
        .unwrap();
        // THEN day 1's two events come back with those columns, in that order
        assert_eq!(t.num_rows(), 2);
        let names: Vec<&str> = t
            .schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        assert_eq!(names, ["type", "event_id"]);
        // AND an unknown column or a reversed window is an error naming it
        let bad = vec!["evnt_id".to_string()];
        let e = read_event_table(
            &store,
            &crate::privacy::NoErasures,
            "s",
            None,
            Some(&bad),
            4,
        )
        .await
        .unwrap_err();
        assert!(e.to_string().contains("\"evnt_id\""), "{e}");
        let rev = TimeWindow {
            since_ms: 2,
            until_ms: 1,
        };
        let e = read_event_table(&store, &crate::privacy::NoErasures, "s", Some(rev), None, 4)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("since"), "{e}");
        // AND a site without events is an empty table of the schema
        let t = read_event_table(&store, &crate::privacy::NoErasures, "none", None, None, 4)
            .await
            .unwrap();
        assert_eq!((t.num_rows(), t.schema.fields().len()), (0, 17));
    }
}
