//! Nectar's pure model crate: no I/O, no async.
//!
//! - [`event`]: the PEACH collect format, its validation and flattening into log events.
#![warn(missing_docs)]

pub mod event;
