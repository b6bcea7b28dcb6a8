//! Nectar's pure model crate: no I/O, no async.
//!
//! - [`event`]: the PEACH collect format, its validation and flattening into log events.
//! - [`mapping`]: flat log events → weighted, deduplicated user–item interactions.
#![warn(missing_docs)]

pub mod event;
pub mod mapping;
