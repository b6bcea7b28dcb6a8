//! Online evaluation of served recommendations: statistics for proportions and experiments.
//!
//! - [`stats`]: Wilson intervals, lift against the control with its intervals, the
//!   two-proportion z-test, the always-valid (mSPRT) p-value and the sample-ratio-mismatch
//!   check.

pub mod stats;

pub use stats::{Counts, Interval};
