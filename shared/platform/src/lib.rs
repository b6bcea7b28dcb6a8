//! Nectar's platform crate: the services (collect, archive, train, [`recommend`]) written against narrow
//! ports (event sink, object store, [`model_store`], [`registry`]), the adapters (Kinesis, S3,
//! Redis, DynamoDB, and the embedded local twins), the declarative config and the mapping of
//! errors to HTTP answers.
//!
//! Each cloud adapter, and training, is behind a cargo feature (`kinesis`, `s3`, `dynamodb`,
//! `redis`, `secrets`, `csv`, `train`; all on by default) so that a function links only the
//! SDKs it calls.
#![warn(missing_docs)]

pub mod archive;
pub mod catalog;
#[cfg(feature = "csv")]
pub mod catalog_csv;
pub mod collect;
pub mod config;
#[cfg(feature = "dynamodb")]
pub mod dynamo_catalog;
pub mod env;
pub mod error;
pub mod event_log_writer;
pub mod history;
pub mod http_util;
pub mod jsonl;
pub mod keys;
#[cfg(feature = "kinesis")]
pub mod kinesis;
#[cfg(feature = "kinesis")]
pub mod kinesis_consumer;
pub mod layout;
pub mod local_log;
pub mod model_store;
pub mod reader;
pub mod recommend;
pub mod record_file;
#[cfg(feature = "secrets")]
pub mod redis_env;
pub mod registry;
#[cfg(feature = "report")]
pub mod report;
pub mod served_log;
pub mod sink;
pub mod store;
#[cfg(feature = "train")]
pub mod train;
#[cfg(feature = "train")]
pub mod trainers;

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
