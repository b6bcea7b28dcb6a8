//! Erasure of one user from the model store (GDPR, issue 15): what
//! [`super::ModelStore::forget_user`] removed.
//!
//! Per-user data is the recent history and, in every kept version of every task of the site,
//! the user's factor vector, precomputed top list and entry in the version's user list. The
//! bandit counters and served-answer lookups name no user (they are keyed by endpoint, variant,
//! item and recommendation id), and the hourly counts are per item, so there are no per-user
//! counters to remove.

use serde::Serialize;

/// What one erasure removed from the model store.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ForgetReport {
    /// Items removed from the user's recent history.
    pub history_items: usize,
    /// Factor vectors removed (one per version of a task that knew the user).
    pub factors: usize,
    /// Precomputed top lists removed.
    pub top_lists: usize,
    /// The `task:v<version>` versions the user was removed from, sorted.
    pub versions: Vec<String>,
}

impl ForgetReport {
    /// Records that `version` of `model` held the user.
    pub(crate) fn add_version(&mut self, model: &str, version: u64) {
        let v = format!("{model}:v{version}");
        if let Err(at) = self.versions.binary_search(&v) {
            self.versions.insert(at, v);
        }
    }
}
