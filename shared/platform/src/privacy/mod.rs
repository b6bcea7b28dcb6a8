//! Privacy (GDPR, issue 15): erasure and access for one user or client of a site.
//!
//! An erasure ([`forget`]) removes the subject's data from the model store at once
//! ([`ModelStore::forget_user`]) and records the request in the [`ErasureLog`], so that
//! training skips the subject's events from then on ([`ErasureSet`], read through the
//! [`ErasureSource`] port and applied by the event-log reader and compaction). The raw event log is not rewritten: it expires by the bucket's lifecycle rule.
//! An export ([`route`]) returns what Nectar holds on a user.
//!
//! Subjects: a `user:<id>` is the `user_id` of events; a `client:<id>` is the `client.id` of
//! events. The model store keys a user by `user_id`, else `client.id` (as training does), so
//! either kind of subject is removed from the store under its id.

use std::collections::HashSet;
use std::future::Future;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::model_store::{ForgetReport, ModelStore, ModelStoreError};
use crate::record_file::{Durability, LineFormat, RecordFile};

#[cfg(feature = "dynamodb")]
pub mod dynamo;
pub mod route;
mod source;

pub use source::{ErasureSource, NoErasures};

/// Who is erased.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subject {
    /// A logged-in user (`user_id`).
    User(String),
    /// A device (`client.id`).
    Client(String),
}

impl Subject {
    /// The subject as stored: `user:<id>` or `client:<id>`.
    pub fn key(&self) -> String {
        match self {
            Self::User(id) => format!("user:{id}"),
            Self::Client(id) => format!("client:{id}"),
        }
    }

    /// Parses [`Subject::key`].
    pub fn from_key(key: &str) -> Option<Self> {
        if let Some(id) = key.strip_prefix("user:") {
            Some(Self::User(id.to_string()))
        } else {
            key.strip_prefix("client:")
                .map(|id| Self::Client(id.to_string()))
        }
    }

    /// The id, whichever the kind.
    pub fn id(&self) -> &str {
        match self {
            Self::User(id) | Self::Client(id) => id,
        }
    }
}

/// One recorded erasure request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Erasure {
    /// `user:<id>` or `client:<id>` ([`Subject::key`]).
    pub subject: String,
    /// When it was requested, ms UTC.
    pub requested_ms: i64,
}

/// An erasure log failure.
#[derive(Debug, thiserror::Error)]
pub enum ErasureLogError {
    /// The local file failed.
    #[error("erasure log I/O on {path}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// DynamoDB failed.
    #[error("erasure log DynamoDB {op} failed")]
    Dynamo {
        /// The operation.
        op: &'static str,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Where erasure requests are recorded (read by training and compaction).
pub trait ErasureLog: Send + Sync {
    /// Records that `subject` of `site` was erased at `requested_ms` (idempotent: a repeated
    /// request records again; the earliest time is the one that counts).
    fn record(
        &self,
        site: &str,
        subject: &Subject,
        requested_ms: i64,
    ) -> impl Future<Output = Result<(), ErasureLogError>> + Send;

    /// Every erasure of `site`.
    fn erasures(
        &self,
        site: &str,
    ) -> impl Future<Output = Result<Vec<Erasure>, ErasureLogError>> + Send;
}

/// The local erasure log: `<data-dir>/erasures/site=<site>.jsonl`, one [`Erasure`] a line.
#[derive(Debug, Clone)]
pub struct LocalErasureLog {
    data_dir: PathBuf,
}

impl LocalErasureLog {
    /// The log under `<data_dir>/erasures/`.
    pub fn new(data_dir: impl AsRef<Path>) -> Self {
        Self {
            data_dir: data_dir.as_ref().to_path_buf(),
        }
    }

    fn file(&self, site: &str) -> RecordFile {
        // Synced: an acknowledged erasure must survive a crash.
        RecordFile::new(
            self.data_dir.join(erasures_key(site)),
            LineFormat::Json,
            Durability::Sync,
        )
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ErasureLogError + '_ {
    move |source| ErasureLogError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl ErasureLog for LocalErasureLog {
    async fn record(
        &self,
        site: &str,
        subject: &Subject,
        requested_ms: i64,
    ) -> Result<(), ErasureLogError> {
        let dir = self.data_dir.join("erasures");
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let f = self.file(site);
        f.append(&Erasure {
            subject: subject.key(),
            requested_ms,
        })
        .map_err(io_err(f.path()))
    }

    async fn erasures(&self, site: &str) -> Result<Vec<Erasure>, ErasureLogError> {
        let f = self.file(site);
        match f.read::<Erasure>() {
            Ok(r) => Ok(r.records),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(io_err(f.path())(e)),
        }
    }
}

/// The key of a site's erasure log relative to the data dir.
pub fn erasures_key(site: &str) -> String {
    format!("erasures/site={site}.jsonl")
}

/// The erased subjects of a site, loaded once at the start of a training or compaction run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErasureSet {
    users: HashSet<String>,
    clients: HashSet<String>,
    records: u64,
}

impl ErasureSet {
    /// The set of these erasures.
    pub fn new(erasures: &[Erasure]) -> Self {
        let mut s = Self {
            records: erasures.len() as u64,
            ..Self::default()
        };
        for e in erasures {
            match Subject::from_key(&e.subject) {
                Some(Subject::User(u)) => s.users.insert(u),
                Some(Subject::Client(c)) => s.clients.insert(c),
                None => false,
            };
        }
        s
    }

    /// Whether nobody is erased.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty() && self.clients.is_empty()
    }

    /// The erasure records the set was built from (the log is append-only, so a larger count
    /// means new erasures: compaction's watermark).
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Whether an event is erased: its user (`user_id`, else `client.id`) or its client.
    pub fn erases_event(&self, user_key: &str, client_id: Option<&str>) -> bool {
        self.erases(user_key) || client_id.is_some_and(|c| self.clients.contains(c))
    }

    /// Whether an interaction's user (its `user_id`, else its `client.id`) is erased.
    pub fn erases(&self, interaction_user: &str) -> bool {
        self.users.contains(interaction_user) || self.clients.contains(interaction_user)
    }
}

/// The contract every [`ErasureLog`] passes (local unit test, moto DynamoDB in
/// `tests/tests/erasures_dynamodb.rs`). Panics on a violation.
#[cfg(any(test, feature = "testkit"))]
pub async fn erasure_log_contract<L: ErasureLog>(log: &L) {
    let site = format!("t{:08x}", rand::random::<u32>());
    assert!(log.erasures(&site).await.unwrap().is_empty());
    log.record(&site, &Subject::User("u1".into()), 10)
        .await
        .unwrap();
    log.record(&site, &Subject::Client("u1".into()), 20)
        .await
        .unwrap();
    // A repeated request: the first time still counts.
    log.record(&site, &Subject::User("u1".into()), 30)
        .await
        .unwrap();
    log.record("other-site", &Subject::User("u9".into()), 5)
        .await
        .unwrap();
    let all = log.erasures(&site).await.unwrap();
    assert_eq!(erasure_of(&all, &Subject::User("u1".into())), Some(10));
    assert_eq!(erasure_of(&all, &Subject::Client("u1".into())), Some(20));
    assert_eq!(erasure_of(&all, &Subject::User("u9".into())), None);
    let set = ErasureSet::new(&all);
    assert!(set.erases("u1") && !set.erases("u9"));
    // The read side training and compaction use gives the same set, one record per subject
    // at least (the DynamoDB log keeps one item per subject, the local file every request).
    let read = log.erasure_set(&site).await.unwrap();
    assert!(read.erases("u1") && !read.erases("u9"));
    assert!(read.records() >= 2);
    assert!(log.erasure_set("never-erased").await.unwrap().is_empty());
}

/// The earliest erasure of `subject`, if any.
pub fn erasure_of(erasures: &[Erasure], subject: &Subject) -> Option<i64> {
    let key = subject.key();
    erasures
        .iter()
        .filter(|e| e.subject == key)
        .map(|e| e.requested_ms)
        .min()
}

/// A failed erasure.
#[derive(Debug, thiserror::Error)]
pub enum ForgetError {
    /// The model store failed.
    #[error(transparent)]
    Store(#[from] ModelStoreError),
    /// The erasure log failed.
    #[error(transparent)]
    Log(#[from] ErasureLogError),
}

/// Erases `subject` of `site`: the request is recorded first (so a failure after it still
/// leaves training and compaction to skip the subject, and a retry completes the rest), then
/// the model store forgets the subject's id.
pub async fn forget<S: ModelStore, L: ErasureLog>(
    store: &S,
    log: &L,
    site: &str,
    subject: &Subject,
    now_ms: i64,
) -> Result<ForgetReport, ForgetError> {
    log.record(site, subject, now_ms).await?;
    Ok(store.forget_user(site, subject.id()).await?)
}

/// What an erasure leaves to later steps, for the answer and the CLI.
pub fn pending(raw_log_expiry_days: Option<u32>) -> Vec<String> {
    let raw = match raw_log_expiry_days {
        Some(d) => format!("raw log expires in {d} days"),
        None => "raw log is kept (no expiry configured)".to_string(),
    };
    vec!["training".to_string(), "compaction".to_string(), raw]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model_store::{LocalModelStore, ModelStore};

    #[tokio::test]
    async fn forget_records_the_request_and_empties_the_history() {
        let dir = std::env::temp_dir().join(format!("nectar-priv-{}", rand::random::<u64>()));
        let (store, log) = (LocalModelStore::new(&dir), LocalErasureLog::new(&dir));
        store
            .append_history("demo", "u1", &["a".into()], 10)
            .await
            .unwrap();
        // WHEN user u1 and client c9 are erased
        let r = forget(&store, &log, "demo", &Subject::User("u1".into()), 5)
            .await
            .unwrap();
        forget(&store, &log, "demo", &Subject::Client("c9".into()), 7)
            .await
            .unwrap();
        // THEN the history went, both requests are recorded and the set erases both ids
        assert_eq!(r.history_items, 1);
        let all = log.erasures("demo").await.unwrap();
        assert_eq!(erasure_of(&all, &Subject::User("u1".into())), Some(5));
        assert_eq!(erasure_of(&all, &Subject::User("c9".into())), None);
        let set = ErasureSet::new(&all);
        assert!(set.erases("u1") && set.erases("c9") && !set.erases("u2"));
        assert!(dir.join("erasures/site=demo.jsonl").exists());
        assert!(log.erasures("other").await.unwrap().is_empty());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn the_local_log_passes_the_erasure_log_contract() {
        let dir = std::env::temp_dir().join(format!("nectar-elog-{}", rand::random::<u64>()));
        erasure_log_contract(&LocalErasureLog::new(&dir)).await;
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn subjects_round_trip_and_pending_names_the_expiry() {
        for s in [Subject::User("a:b".into()), Subject::Client("c".into())] {
            assert_eq!(Subject::from_key(&s.key()), Some(s));
        }
        assert_eq!(Subject::from_key("x:1"), None);
        assert_eq!(pending(Some(30))[2], "raw log expires in 30 days");
    }
}
