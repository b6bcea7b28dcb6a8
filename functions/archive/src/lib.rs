//! The archive Lambda: Kinesis batches → the S3 event log (`events/`, `parked/`).
//! `main.rs` wires it up; [`handler`] maps the Kinesis event to the archive service.

pub mod handler;
