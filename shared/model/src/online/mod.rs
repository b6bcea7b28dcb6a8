//! Online evaluation of served recommendations: from the served log and the events that come
//! back, to per-variant figures with their uncertainty, to traffic that moves toward what works.
//!
//! - [`attribution`]: joins each served answer with its displays, clicks and the clicked
//!   item's consumption (trusted served events only, deduplicated, orphans and foreign clicks
//!   counted, never credited).
//! - [`bandit`]: Thompson sampling over variants (`allocation = "thompson"`) and over new
//!   items (the `explore` rule), with an injected RNG.
//! - [`metrics`]: the report of a site — per endpoint × variant, per UTC day and over the
//!   range — in the JSON shape of the report contract.
//! - [`stats`]: Wilson intervals, lift against the control with its intervals, the
//!   two-proportion z-test, the always-valid (mSPRT) p-value and the sample-ratio-mismatch
//!   check.

pub mod attribution;
pub mod bandit;
#[cfg(test)]
mod fixture;
pub mod metrics;
pub mod stats;

pub use attribution::{attribute, Attribution, Attributor, OnlineEvent, SERVED_MARKER_FIELD};
pub use bandit::{thompson_pick, ArmCounts, ExploreRule};
pub use metrics::{report, Report, ReportInput};
pub use stats::{Counts, Interval};
