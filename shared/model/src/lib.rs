//! Nectar pure model crate.
