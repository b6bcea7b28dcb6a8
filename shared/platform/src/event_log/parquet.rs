//! The compacted event log's Parquet format: one row per distinct flat event, the flat event's
//! fields as typed columns, the free-form objects (`client`, `context`, `props`, `metadata`)
//! as JSON text, plus where the row came from in the raw day (`raw_order`, `hour`), so that a
//! compacted day reads back in exactly the order the raw reader reads it.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type};
use arrow_array::{
    Array, ArrayRef, BooleanArray, Int32Array, Int64Array, RecordBatch, StringArray,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use bytes::Bytes;
use nectar_model::mapping::EventFields;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;
use serde::Deserialize;
use serde_json::value::RawValue;

/// The Parquet key-value metadata entry naming the compaction a part belongs to.
pub const GENERATION_KEY: &str = "nectar.generation";

/// Rows per Arrow batch handed to the writer (bounds the writer's working set).
const BATCH_ROWS: usize = 64 * 1024;

/// A Parquet encode or decode failure.
#[derive(Debug, thiserror::Error)]
pub enum ParquetError {
    /// The Parquet library failed.
    #[error(transparent)]
    Parquet(#[from] parquet::errors::ParquetError),
    /// Arrow failed to assemble a batch.
    #[error(transparent)]
    Arrow(#[from] arrow_schema::ArrowError),
    /// A column the reader needs is missing or has another type.
    #[error("compacted part has no column {0:?} of the expected type")]
    Column(&'static str),
}

/// One flat event as a compacted row (owned: a day's rows are sorted before writing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRow {
    /// Deterministic event id (dedupe key).
    pub event_id: String,
    /// The site the event was collected for.
    pub site_key: Option<String>,
    /// PEACH event type.
    pub event_type: String,
    /// What the event is about.
    pub id: String,
    /// Event time, ms UTC (skew-corrected).
    pub event_timestamp: i64,
    /// The device's event time when it was corrected.
    pub event_timestamp_original: Option<i64>,
    /// Server receive time, ms UTC.
    pub collect_timestamp: Option<i64>,
    /// Device send time, ms UTC.
    pub sent_timestamp: Option<i64>,
    /// App session start, ms UTC.
    pub session_start_timestamp: Option<i64>,
    /// Logged-in user.
    pub user_id: Option<String>,
    /// `client.id`, extracted for sorting and queries.
    pub client_id: Option<String>,
    /// PEACH schema version of the payload.
    pub peach_schema_version: Option<String>,
    /// `client` as JSON text.
    pub client: Option<String>,
    /// `context` as JSON text.
    pub context: Option<String>,
    /// `props` as JSON text.
    pub props: Option<String>,
    /// `metadata` as JSON text.
    pub metadata: Option<String>,
    /// The recommend service's served marker.
    pub nectar_served: bool,
    /// Position of the event in the raw day's reading order (key order, then line order).
    pub raw_order: i64,
    /// The raw hour partition (0–23) the event was read from.
    pub hour: i32,
}

/// What a raw line must hold to be an event: the fields the mapping requires, typed as it
/// reads them, so that a line is malformed here exactly when the raw reader finds it so.
#[derive(Deserialize)]
struct LineRow<'a> {
    event_id: String,
    #[serde(default)]
    site_key: Option<String>,
    #[serde(rename = "type")]
    event_type: String,
    id: String,
    event_timestamp: i64,
    #[serde(default, borrow)]
    event_timestamp_original: Option<&'a RawValue>,
    #[serde(default, borrow)]
    collect_timestamp: Option<&'a RawValue>,
    #[serde(default, borrow)]
    sent_timestamp: Option<&'a RawValue>,
    #[serde(default, borrow)]
    session_start_timestamp: Option<&'a RawValue>,
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default, borrow)]
    peach_schema_version: Option<&'a RawValue>,
    #[serde(default, borrow)]
    client: Option<&'a RawValue>,
    #[serde(default, borrow)]
    context: Option<&'a RawValue>,
    #[serde(default, borrow)]
    props: Option<&'a RawValue>,
    #[serde(default, borrow)]
    metadata: Option<&'a RawValue>,
    #[serde(default)]
    nectar_served: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct ClientId {
    #[serde(default)]
    id: Option<String>,
}

/// An optional integer field; anything else (collect never writes it) is null.
fn int_of(v: Option<&RawValue>) -> Option<i64> {
    v.and_then(|v| serde_json::from_str::<i64>(v.get()).ok())
}

/// JSON text of an object field; JSON `null` is stored as null.
fn json_of(v: Option<&RawValue>) -> Option<String> {
    v.map(RawValue::get)
        .filter(|t| *t != "null")
        .map(str::to_string)
}

impl EventRow {
    /// Parses one raw event-log line; `None` when the raw reader would count it malformed.
    pub fn parse(line: &str, raw_order: i64, hour: i32) -> Option<Self> {
        let r: LineRow<'_> = serde_json::from_str(line).ok()?;
        let client_id = r
            .client
            .and_then(|c| serde_json::from_str::<ClientId>(c.get()).ok())
            .and_then(|c| c.id);
        Some(Self {
            event_id: r.event_id,
            site_key: r.site_key,
            event_type: r.event_type,
            id: r.id,
            event_timestamp: r.event_timestamp,
            event_timestamp_original: int_of(r.event_timestamp_original),
            collect_timestamp: int_of(r.collect_timestamp),
            sent_timestamp: int_of(r.sent_timestamp),
            session_start_timestamp: int_of(r.session_start_timestamp),
            user_id: r.user_id,
            client_id,
            peach_schema_version: r
                .peach_schema_version
                .and_then(|v| serde_json::from_str::<String>(v.get()).ok()),
            client: json_of(r.client),
            context: json_of(r.context),
            props: json_of(r.props),
            metadata: json_of(r.metadata),
            nectar_served: r.nectar_served == Some(serde_json::Value::Bool(true)),
            raw_order,
            hour,
        })
    }

    /// Who the event is about, as training keys users: `user_id`, else `client.id`.
    pub fn user_key(&self) -> &str {
        self.user_id
            .as_deref()
            .filter(|u| !u.is_empty())
            .or(self.client_id.as_deref())
            .unwrap_or("")
    }
}

/// The compacted schema (the Glue table `events_compacted` declares the same columns).
pub fn schema() -> SchemaRef {
    let s = |name: &str, nullable| Field::new(name, DataType::Utf8, nullable);
    let i = |name: &str, nullable| Field::new(name, DataType::Int64, nullable);
    Arc::new(Schema::new(vec![
        s("event_id", false),
        s("site_key", true),
        s("type", false),
        s("id", false),
        i("event_timestamp", false),
        i("event_timestamp_original", true),
        i("collect_timestamp", true),
        i("sent_timestamp", true),
        i("session_start_timestamp", true),
        s("user_id", true),
        s("client_id", true),
        s("peach_schema_version", true),
        s("client", true),
        s("context", true),
        s("props", true),
        s("metadata", true),
        Field::new("nectar_served", DataType::Boolean, false),
        i("raw_order", false),
        Field::new("hour", DataType::Int32, false),
    ]))
}

pub(crate) fn batch_of(rows: &[EventRow], schema: &SchemaRef) -> Result<RecordBatch, ParquetError> {
    fn text<'a>(rows: &'a [EventRow], f: impl Fn(&'a EventRow) -> Option<&'a str>) -> ArrayRef {
        Arc::new(rows.iter().map(f).collect::<StringArray>())
    }
    fn int(rows: &[EventRow], f: impl Fn(&EventRow) -> Option<i64>) -> ArrayRef {
        Arc::new(rows.iter().map(f).collect::<Int64Array>())
    }
    let columns: Vec<ArrayRef> = vec![
        text(rows, |r| Some(&r.event_id)),
        text(rows, |r| r.site_key.as_deref()),
        text(rows, |r| Some(&r.event_type)),
        text(rows, |r| Some(&r.id)),
        int(rows, |r| Some(r.event_timestamp)),
        int(rows, |r| r.event_timestamp_original),
        int(rows, |r| r.collect_timestamp),
        int(rows, |r| r.sent_timestamp),
        int(rows, |r| r.session_start_timestamp),
        text(rows, |r| r.user_id.as_deref()),
        text(rows, |r| r.client_id.as_deref()),
        text(rows, |r| r.peach_schema_version.as_deref()),
        text(rows, |r| r.client.as_deref()),
        text(rows, |r| r.context.as_deref()),
        text(rows, |r| r.props.as_deref()),
        text(rows, |r| r.metadata.as_deref()),
        Arc::new(
            rows.iter()
                .map(|r| Some(r.nectar_served))
                .collect::<BooleanArray>(),
        ),
        int(rows, |r| Some(r.raw_order)),
        Arc::new(rows.iter().map(|r| Some(r.hour)).collect::<Int32Array>()),
    ];
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// Encodes rows as one zstd Parquet file tagged with the compaction's `generation`.
pub fn write_part(rows: &[EventRow], generation: &str) -> Result<Vec<u8>, ParquetError> {
    let schema = schema();
    let mut props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
        .set_key_value_metadata(Some(vec![KeyValue::new(
            GENERATION_KEY.to_string(),
            generation.to_string(),
        )]));
    // Rows are sorted by user, so a user's times increase: deltas pack them into a few bits,
    // where dictionaries of distinct times would only grow.
    for col in [
        "event_timestamp",
        "event_timestamp_original",
        "collect_timestamp",
        "sent_timestamp",
        "session_start_timestamp",
        "raw_order",
    ] {
        props = props
            .set_column_dictionary_enabled(ColumnPath::from(col), false)
            .set_column_encoding(ColumnPath::from(col), Encoding::DELTA_BINARY_PACKED);
    }
    // Every event id is distinct: a dictionary would be as large as the column.
    let props = props
        .set_column_dictionary_enabled(ColumnPath::from("event_id"), false)
        .build();
    let mut w = ArrowWriter::try_new(Vec::new(), schema.clone(), Some(props))?;
    for chunk in rows.chunks(BATCH_ROWS) {
        w.write(&batch_of(chunk, &schema)?)?;
    }
    Ok(w.into_inner()?)
}

/// The columns training reads (projection: the rest of a part is never decoded).
pub const MAPPING_COLUMNS: [&str; 10] = [
    "event_id",
    "type",
    "id",
    "event_timestamp",
    "user_id",
    "client",
    "context",
    "props",
    "raw_order",
    "hour",
];

/// The mapping columns of one decoded batch, resolved once per batch.
#[derive(Debug)]
pub struct MappingBatch {
    event_id: StringArray,
    event_type: StringArray,
    id: StringArray,
    user_id: StringArray,
    client: StringArray,
    context: StringArray,
    props: StringArray,
    event_timestamp: Int64Array,
    raw_order: Int64Array,
    hour: Int32Array,
}

impl MappingBatch {
    fn new(batch: &RecordBatch) -> Result<Self, ParquetError> {
        let text = |name: &'static str| {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_string_opt::<i32>())
                .cloned()
                .ok_or(ParquetError::Column(name))
        };
        let int = |name: &'static str| {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_primitive_opt::<Int64Type>())
                .cloned()
                .ok_or(ParquetError::Column(name))
        };
        Ok(Self {
            event_id: text("event_id")?,
            event_type: text("type")?,
            id: text("id")?,
            user_id: text("user_id")?,
            client: text("client")?,
            context: text("context")?,
            props: text("props")?,
            event_timestamp: int("event_timestamp")?,
            raw_order: int("raw_order")?,
            hour: batch
                .column_by_name("hour")
                .and_then(|c| c.as_primitive_opt::<Int32Type>())
                .cloned()
                .ok_or(ParquetError::Column("hour"))?,
        })
    }

    /// Rows in the batch.
    pub fn len(&self) -> usize {
        self.event_id.len()
    }

    /// Whether the batch has no rows.
    pub fn is_empty(&self) -> bool {
        self.event_id.is_empty()
    }

    /// Row `i`'s raw order, hour and the fields the mapping reads.
    pub fn row(&self, i: usize) -> (i64, i32, EventFields<'_>) {
        fn opt(a: &StringArray, i: usize) -> Option<&str> {
            (!a.is_null(i)).then(|| a.value(i))
        }
        let (event_id, event_type, id) = (
            opt(&self.event_id, i).unwrap_or(""),
            opt(&self.event_type, i).unwrap_or(""),
            opt(&self.id, i).unwrap_or(""),
        );
        (
            self.raw_order.value(i),
            self.hour.value(i),
            EventFields {
                event_id,
                event_type,
                id,
                event_timestamp: self.event_timestamp.value(i),
                user_id: opt(&self.user_id, i),
                client: opt(&self.client, i),
                context: opt(&self.context, i),
                props: opt(&self.props, i),
            },
        )
    }
}

/// Decodes the mapping columns of one part, with the generation the part was written by.
pub fn read_mapping(part: Bytes) -> Result<(Option<String>, Vec<MappingBatch>), ParquetError> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(part)?;
    let generation = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|k| k.key == GENERATION_KEY))
        .and_then(|k| k.value.clone());
    let mask = ProjectionMask::columns(builder.parquet_schema(), MAPPING_COLUMNS);
    let reader = builder.with_projection(mask).build()?;
    let mut batches = Vec::new();
    for batch in reader {
        let batch = batch?;
        if batch.num_columns() != MAPPING_COLUMNS.len() {
            return Err(ParquetError::Column("(projection)"));
        }
        batches.push(MappingBatch::new(&batch)?);
    }
    Ok((generation, batches))
}

/// Decodes every column of one part back into rows (tests and tools).
pub fn read_rows(part: Bytes) -> Result<Vec<EventRow>, ParquetError> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(part)?.build()?;
    let mut out = Vec::new();
    for batch in reader {
        let b = batch?;
        let text = |name: &'static str| {
            b.column_by_name(name)
                .and_then(|c| c.as_string_opt::<i32>())
                .ok_or(ParquetError::Column(name))
        };
        let int = |name: &'static str| {
            b.column_by_name(name)
                .and_then(|c| c.as_primitive_opt::<Int64Type>())
                .ok_or(ParquetError::Column(name))
        };
        let (event_id, site_key, event_type, id) = (
            text("event_id")?,
            text("site_key")?,
            text("type")?,
            text("id")?,
        );
        let (ts, ts_orig, collect, sent, session) = (
            int("event_timestamp")?,
            int("event_timestamp_original")?,
            int("collect_timestamp")?,
            int("sent_timestamp")?,
            int("session_start_timestamp")?,
        );
        let (user_id, client_id, version) = (
            text("user_id")?,
            text("client_id")?,
            text("peach_schema_version")?,
        );
        let (client, context, props, metadata) = (
            text("client")?,
            text("context")?,
            text("props")?,
            text("metadata")?,
        );
        let served = b
            .column_by_name("nectar_served")
            .and_then(|c| c.as_boolean_opt())
            .ok_or(ParquetError::Column("nectar_served"))?;
        let raw_order = int("raw_order")?;
        let hour = b
            .column_by_name("hour")
            .and_then(|c| c.as_primitive_opt::<Int32Type>())
            .ok_or(ParquetError::Column("hour"))?;
        let s = |a: &StringArray, i: usize| (!a.is_null(i)).then(|| a.value(i).to_string());
        let n = |a: &Int64Array, i: usize| (!a.is_null(i)).then(|| a.value(i));
        for i in 0..b.num_rows() {
            out.push(EventRow {
                event_id: event_id.value(i).to_string(),
                site_key: s(site_key, i),
                event_type: event_type.value(i).to_string(),
                id: id.value(i).to_string(),
                event_timestamp: ts.value(i),
                event_timestamp_original: n(ts_orig, i),
                collect_timestamp: n(collect, i),
                sent_timestamp: n(sent, i),
                session_start_timestamp: n(session, i),
                user_id: s(user_id, i),
                client_id: s(client_id, i),
                peach_schema_version: s(version, i),
                client: s(client, i),
                context: s(context, i),
                props: s(props, i),
                metadata: s(metadata, i),
                nectar_served: served.value(i),
                raw_order: raw_order.value(i),
                hour: hour.value(i),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip_and_keep_every_field() {
        // GIVEN a full flat event and a minimal one
        let full = r#"{"event_id":"e1","site_key":"s","type":"recommendation_hit","id":"r1","event_timestamp":5,"event_timestamp_original":4,"collect_timestamp":6,"sent_timestamp":3,"session_start_timestamp":1,"user_id":"u","peach_schema_version":"1.0.3","client":{"id":"c","app_id":"a"},"context":{"items":["x"],"hit_index":0},"props":{"value":2},"metadata":{"title":"t"},"nectar_served":true}"#;
        let min = r#"{"event_id":"e2","type":"media_play","id":"m","event_timestamp":7,"client":{"id":"c2"}}"#;
        let rows = vec![
            EventRow::parse(full, 0, 1).unwrap(),
            EventRow::parse(min, 1, 2).unwrap(),
        ];
        assert_eq!(rows[0].client_id.as_deref(), Some("c"));
        assert_eq!(rows[0].user_key(), "u");
        assert_eq!(rows[1].user_key(), "c2");
        assert!(rows[0].nectar_served && !rows[1].nectar_served);
        // WHEN written and read back
        let part = write_part(&rows, "g1").unwrap();
        // THEN every field survives, and the projection reads the mapping's fields
        assert_eq!(read_rows(Bytes::from(part.clone())).unwrap(), rows);
        let (generation, batches) = read_mapping(Bytes::from(part)).unwrap();
        assert_eq!(generation.as_deref(), Some("g1"));
        let (order, hour, f) = batches[0].row(0);
        assert_eq!((order, hour), (0, 1));
        assert_eq!(f.context, Some(r#"{"items":["x"],"hit_index":0}"#));
        assert_eq!(f.user_id, Some("u"));
        assert_eq!(batches[0].len(), 2);
    }

    #[test]
    fn lines_the_mapping_finds_malformed_are_no_rows() {
        for line in [
            "not json",
            r#"{"type":"media_play","id":"m","event_timestamp":1}"#,
            r#"{"event_id":"e","type":"media_play","id":7,"event_timestamp":1}"#,
            r#"{"event_id":"e","type":"media_play","id":"m","event_timestamp":1,"user_id":3}"#,
        ] {
            assert!(EventRow::parse(line, 0, 0).is_none(), "{line}");
            assert!(matches!(
                nectar_model::mapping::map_event_line(line, &Default::default()),
                Err(nectar_model::mapping::Skip::Malformed(_))
            ));
        }
    }
}
