//! The collect Lambda: `POST /v1/collect?s=SITE` (PEACH payloads) into Kinesis.
//! `main.rs` wires it up; [`handler`] maps Lambda HTTP events to the collect service.

pub mod handler;
