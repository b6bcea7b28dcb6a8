//! Nectar platform crate.
