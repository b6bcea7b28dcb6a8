//! Nectar's platform crate: the services (collect, archive, train, [`recommend`]) written against narrow
//! ports (event sink, object store, [`model_store`], [`registry`]), the adapters (Kinesis, S3,
//! Redis, DynamoDB, and the embedded local twins), the declarative config and the mapping of
//! errors to HTTP answers.
//!
//! Each cloud adapter, and training, is behind a cargo feature (`kinesis`, `s3`, `dynamodb`,
//! `redis`, `secrets`, `csv`, `train`, `parquet`; all on by default) so that a function links only the
//! SDKs it calls.
#![warn(missing_docs)]

pub mod activity;
pub mod archive;
pub mod auth;
pub mod background;
pub mod catalog;
pub mod collect;
pub mod config;
#[cfg(feature = "dynamodb")]
pub mod dynamo;
pub mod env;
pub mod event_log;
pub mod http;
pub mod model_store;
pub mod object_store;
pub mod observe;
pub mod privacy;
pub mod recommend;
pub mod record_file;
pub mod registry;
#[cfg(feature = "report")]
pub mod report;
#[cfg(feature = "train")]
pub mod train;

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
