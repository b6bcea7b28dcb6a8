//! Observability: the metric names every function emits (issue 12).

pub mod names;
