//! The model registry port: one record per training run (published, refused by the gate, or
//! failed), with its parameters, data window, counts, metrics and durations.
//!
//! Adapters: [`DynamoRegistry`] (table with partition key `pk` = `<site>#<task>` (S) and sort
//! key `sk` = the version zero-padded to 20 digits (S), so a query returns runs in version
//! order) and [`LocalRegistry`] (`<data-dir>/registry/site=<site>/task=<task>/runs.jsonl`).

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::record_file::{Durability, LineFormat, RecordFile};

#[cfg(feature = "dynamodb")]
mod dynamo;
#[cfg(feature = "dynamodb")]
pub use self::dynamo::DynamoRegistry;

/// How a run ended.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// The version was published and is (or was) current.
    Published,
    /// The quality gate refused the candidate; the current version stayed.
    Refused,
    /// The run failed; the current version stayed.
    Failed,
}

impl RunStatus {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Published => "published",
            Self::Refused => "refused",
            Self::Failed => "failed",
        }
    }
}

/// The data window of a run, `[since_ms, until_ms)`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct WindowRecord {
    /// Start, ms UTC (inclusive).
    pub since_ms: i64,
    /// End, ms UTC (exclusive).
    pub until_ms: i64,
    /// Configured length in days.
    pub days: u32,
    /// `now`, `latest` or `explicit` (`--since/--until`).
    pub anchor: String,
}

/// Data counts of a run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct DataCounts {
    /// Event-log files read.
    pub files: u64,
    /// Event lines read.
    pub lines: u64,
    /// Lines dropped as duplicates (same `event_id`).
    pub duplicates: u64,
    /// Lines that were not flat events.
    pub malformed: u64,
    /// Events that are not interactions.
    pub skipped: u64,
    /// Interactions in the window (after dedupe).
    pub interactions: u64,
    /// Distinct users.
    pub users: u64,
    /// Distinct items.
    pub items: u64,
    /// Interactions the candidate was fit on.
    pub train_interactions: u64,
    /// Interactions held out.
    pub holdout_interactions: u64,
    /// Holdout users scored (warm users with warm items).
    pub holdout_users_scored: u64,
    /// Unreadable gzip members skipped in the event log (torn by a writer that crashed
    /// mid-append; their events were never acknowledged).
    #[serde(default)]
    pub torn_members: u64,
}

/// One training run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunRecord {
    /// Site key.
    pub site: String,
    /// Task name (also the model name in the model store).
    pub task: String,
    /// The version (ms timestamp of the run, above the previous version).
    pub version: u64,
    /// As named in the config (`als`, `item_knn`, …).
    pub algorithm: String,
    /// Parameters as configured.
    pub params: serde_json::Value,
    /// Data window.
    pub window: WindowRecord,
    /// Data counts.
    pub counts: DataCounts,
    /// The candidate's holdout metrics (`ndcg@10`, …).
    pub metrics: BTreeMap<String, f64>,
    /// The version that was current, scored on the same holdout.
    pub compared_with: Option<u64>,
    /// That version's metrics on the gate's holdout (the held-out events newer than its own
    /// window).
    pub current_metrics: Option<BTreeMap<String, f64>>,
    /// The candidate's metrics on the gate's holdout.
    #[serde(default)]
    pub gate_metrics: Option<BTreeMap<String, f64>>,
    /// What the gate compared, or why it was skipped.
    #[serde(default)]
    pub gate: Option<String>,
    /// The popularity baseline (most interacted items of the same training part) on the same
    /// holdout: the lift of the candidate over "most popular".
    #[serde(default)]
    pub baseline_metrics: Option<BTreeMap<String, f64>>,
    /// Stage durations in ms (`read`, `split`, `fit`, `evaluate`, `refit`, `publish`, `total`).
    pub durations_ms: BTreeMap<String, u64>,
    /// Outcome.
    pub status: RunStatus,
    /// Why the gate refused or the run failed.
    pub reason: Option<String>,
    /// Whether the published model was refit on the whole window after evaluation.
    pub refit_on_full_window: bool,
    /// Start time, ms UTC.
    pub started_ms: i64,
    /// End time, ms UTC.
    pub finished_ms: i64,
    /// Where a published-from-outside version came from (`nectar publish`: `{"kind":
    /// "artifacts", "uri", "note", "manifest"}`); absent for training runs and old records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<serde_json::Value>,
}

/// The sort key of a version: zero-padded to 20 digits so that string order is version order.
pub fn version_sort_key(version: u64) -> String {
    format!("{version:020}")
}

/// A registry failure.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A DynamoDB call failed.
    #[error("DynamoDB {op} on table {table} failed")]
    Dynamo {
        /// The operation.
        op: &'static str,
        /// The table.
        table: String,
        /// The SDK error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Local file I/O failed.
    #[error("registry I/O on {path}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A stored record is not a [`RunRecord`].
    #[error("corrupt registry record {key}: {problem}")]
    Corrupt {
        /// Where.
        key: String,
        /// What is wrong.
        problem: String,
    },
}

/// The registry port.
pub trait Registry: Send + Sync {
    /// Stores a run (a later record of the same version replaces it).
    fn record(&self, run: &RunRecord) -> impl Future<Output = Result<(), RegistryError>> + Send;

    /// The newest runs of a task, newest first, at most `limit`.
    fn runs(
        &self,
        site: &str,
        task: &str,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<RunRecord>, RegistryError>> + Send;

    /// The newest published runs, newest first, at most `limit`: `[0]` is the current
    /// version's run, `[1]` the previous one.
    fn published(
        &self,
        site: &str,
        task: &str,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<RunRecord>, RegistryError>> + Send;
}

/// Runs as JSON lines in `<data-dir>/registry/site=<site>/task=<task>/runs.jsonl`, a
/// [`RecordFile`] (a line torn by a crash is cut before the next run is recorded; records are
/// fsynced); a later line of the same version replaces an earlier one. Runs recorded by
/// older versions of Nectar as one `<sk>.json` file each are still read.
#[derive(Debug, Clone)]
pub struct LocalRegistry {
    root: PathBuf,
}

impl LocalRegistry {
    /// A registry under `<data_dir>/registry/`.
    pub fn new(data_dir: impl AsRef<Path>) -> Self {
        Self {
            root: data_dir.as_ref().join("registry"),
        }
    }

    fn dir(&self, site: &str, task: &str) -> PathBuf {
        self.root
            .join(format!("site={site}"))
            .join(format!("task={task}"))
    }

    fn runs_path(&self, site: &str, task: &str) -> PathBuf {
        self.dir(site, task).join("runs.jsonl")
    }

    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RegistryError + '_ {
        move |source| RegistryError::Io {
            path: path.display().to_string(),
            source,
        }
    }

    /// Runs stored one file each (`<sk>.json`) by older versions, by version.
    fn legacy_runs(&self, site: &str, task: &str) -> Result<Vec<RunRecord>, RegistryError> {
        let dir = self.dir(site, task);
        let names: Vec<String> = match std::fs::read_dir(&dir) {
            Ok(entries) => entries
                .filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.ends_with(".json"))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(Self::io(&dir)(e)),
        };
        let mut out = Vec::with_capacity(names.len());
        for n in names {
            let p = dir.join(&n);
            let text = std::fs::read_to_string(&p).map_err(Self::io(&p))?;
            out.push(
                serde_json::from_str(&text).map_err(|e| RegistryError::Corrupt {
                    key: p.display().to_string(),
                    problem: e.to_string(),
                })?,
            );
        }
        Ok(out)
    }

    fn list(
        &self,
        site: &str,
        task: &str,
        limit: usize,
        only_published: bool,
    ) -> Result<Vec<RunRecord>, RegistryError> {
        let p = self.runs_path(site, task);
        let mut by_version = BTreeMap::new();
        let logged = RecordFile::new(&p, LineFormat::Json, Durability::Sync)
            .read::<RunRecord>()
            .map_err(Self::io(&p))?
            .records;
        // The log is newer than any legacy file, and its later lines replace earlier ones.
        for run in self.legacy_runs(site, task)?.into_iter().chain(logged) {
            by_version.insert(run.version, run);
        }
        Ok(by_version
            .into_values()
            .rev()
            .filter(|run| !only_published || run.status == RunStatus::Published)
            .take(limit)
            .collect())
    }
}

impl Registry for LocalRegistry {
    async fn record(&self, run: &RunRecord) -> Result<(), RegistryError> {
        let p = self.runs_path(&run.site, &run.task);
        RecordFile::open(&p, LineFormat::Json, Durability::Sync)
            .and_then(|f| f.append(run))
            .map_err(Self::io(&p))
    }

    async fn runs(
        &self,
        site: &str,
        task: &str,
        limit: usize,
    ) -> Result<Vec<RunRecord>, RegistryError> {
        self.list(site, task, limit, false)
    }

    async fn published(
        &self,
        site: &str,
        task: &str,
        limit: usize,
    ) -> Result<Vec<RunRecord>, RegistryError> {
        self.list(site, task, limit, true)
    }
}

/// Either registry, chosen at run time.
#[derive(Debug, Clone)]
pub enum AnyRegistry {
    /// Local files.
    Local(LocalRegistry),
    /// DynamoDB.
    #[cfg(feature = "dynamodb")]
    Dynamo(DynamoRegistry),
}

impl Registry for AnyRegistry {
    async fn record(&self, run: &RunRecord) -> Result<(), RegistryError> {
        match self {
            Self::Local(r) => r.record(run).await,
            #[cfg(feature = "dynamodb")]
            Self::Dynamo(r) => r.record(run).await,
        }
    }
    async fn runs(
        &self,
        site: &str,
        task: &str,
        limit: usize,
    ) -> Result<Vec<RunRecord>, RegistryError> {
        match self {
            Self::Local(r) => r.runs(site, task, limit).await,
            #[cfg(feature = "dynamodb")]
            Self::Dynamo(r) => r.runs(site, task, limit).await,
        }
    }
    async fn published(
        &self,
        site: &str,
        task: &str,
        limit: usize,
    ) -> Result<Vec<RunRecord>, RegistryError> {
        match self {
            Self::Local(r) => r.published(site, task, limit).await,
            #[cfg(feature = "dynamodb")]
            Self::Dynamo(r) => r.published(site, task, limit).await,
        }
    }
}

/// The contract every [`Registry`] adapter passes (panics on a violation).
#[cfg(any(test, feature = "testkit"))]
pub mod contract {
    use super::*;

    /// A run record for tests.
    pub fn run(site: &str, task: &str, version: u64, status: RunStatus) -> RunRecord {
        RunRecord {
            site: site.into(),
            task: task.into(),
            version,
            algorithm: "als".into(),
            params: serde_json::json!({ "factors": 64, "alpha": 1.0 }),
            window: WindowRecord {
                since_ms: 1_000,
                until_ms: 2_000,
                days: 30,
                anchor: "now".into(),
            },
            counts: DataCounts {
                interactions: version * 10,
                users: 3,
                items: 4,
                ..DataCounts::default()
            },
            metrics: BTreeMap::from([("ndcg@10".to_string(), 0.25 + version as f64 / 1000.0)]),
            compared_with: version.checked_sub(1),
            current_metrics: None,
            gate_metrics: None,
            gate: None,
            baseline_metrics: None,
            durations_ms: BTreeMap::from([("fit".to_string(), 12)]),
            status,
            reason: (status != RunStatus::Published).then(|| format!("reason {version}")),
            refit_on_full_window: status == RunStatus::Published,
            started_ms: version as i64,
            finished_ms: version as i64 + 5,
            // One run published from outside (`nectar publish`), to round-trip its source.
            source: (version == 9).then(
                || serde_json::json!({"kind": "artifacts", "uri": "s3://lab/run-9/", "note": "nb"}),
            ),
        }
    }

    /// Records runs of two tasks and reads them back in version order.
    pub async fn registry_contract<R: Registry>(registry: &R) {
        let site = format!("r{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff);
        let site = site.as_str();
        // GIVEN nothing recorded
        assert!(registry.runs(site, "als", 10).await.unwrap().is_empty());
        assert!(registry.published(site, "als", 1).await.unwrap().is_empty());
        // WHEN runs are recorded out of order (versions 9 and 10 compare as numbers, not text)
        let statuses = [
            (10, RunStatus::Published),
            (2, RunStatus::Published),
            (9, RunStatus::Refused),
            (11, RunStatus::Failed),
            (1, RunStatus::Published),
        ];
        for (v, s) in statuses {
            registry.record(&run(site, "als", v, s)).await.unwrap();
        }
        registry
            .record(&run(site, "trending", 50, RunStatus::Published))
            .await
            .unwrap();
        // THEN runs come back newest first, whole
        let runs = registry.runs(site, "als", 10).await.unwrap();
        let versions: Vec<u64> = runs.iter().map(|r| r.version).collect();
        assert_eq!(versions, vec![11, 10, 9, 2, 1]);
        assert_eq!(runs[2], run(site, "als", 9, RunStatus::Refused));
        assert_eq!(registry.runs(site, "als", 2).await.unwrap().len(), 2);
        // the current and previous published runs skip refused and failed ones
        let published = registry.published(site, "als", 2).await.unwrap();
        let versions: Vec<u64> = published.iter().map(|r| r.version).collect();
        assert_eq!(versions, vec![10, 2]);
        assert!(published[0].refit_on_full_window);
        // recording a version again replaces it
        let mut again = run(site, "als", 11, RunStatus::Failed);
        again.reason = Some("replaced".into());
        registry.record(&again).await.unwrap();
        let runs = registry.runs(site, "als", 1).await.unwrap();
        assert_eq!(runs[0].reason.as_deref(), Some("replaced"));
        assert_eq!(registry.runs(site, "als", 100).await.unwrap().len(), 5);
        // tasks are separate
        let other = registry.runs(site, "trending", 10).await.unwrap();
        assert_eq!(other.len(), 1);
        assert_eq!(other[0].version, 50);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_registry_passes_the_contract() {
        let dir = std::env::temp_dir().join(format!("nectar-reg-{}", rand::random::<u64>()));
        contract::registry_contract(&LocalRegistry::new(&dir)).await;
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn a_torn_run_record_is_cut_before_the_next_run_and_legacy_files_still_read() {
        let dir = std::env::temp_dir().join(format!("nectar-reg-{}", rand::random::<u64>()));
        let reg = LocalRegistry::new(&dir);
        // GIVEN a run recorded by an older Nectar (one file), one in the log, and a third
        // torn mid-line by a crash
        let task_dir = dir.join("registry/site=demo/task=als");
        std::fs::create_dir_all(&task_dir).unwrap();
        let old = contract::run("demo", "als", 1, RunStatus::Published);
        std::fs::write(
            task_dir.join(format!("{}.json", version_sort_key(1))),
            serde_json::to_string_pretty(&old).unwrap(),
        )
        .unwrap();
        reg.record(&contract::run("demo", "als", 2, RunStatus::Published))
            .await
            .unwrap();
        reg.record(&contract::run("demo", "als", 3, RunStatus::Refused))
            .await
            .unwrap();
        let path = task_dir.join("runs.jsonl");
        let len = std::fs::metadata(&path).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 40)
            .unwrap();
        // WHEN the next run is recorded (a new process)
        let reg = LocalRegistry::new(&dir);
        let new = contract::run("demo", "als", 4, RunStatus::Published);
        reg.record(&new).await.unwrap();
        // THEN every line parses, the new run is intact, the torn one is in the sidecar
        let text = std::fs::read_to_string(&path).unwrap();
        let versions: Vec<u64> = text
            .lines()
            .map(|l| serde_json::from_str::<RunRecord>(l).unwrap().version)
            .collect();
        assert_eq!(versions, vec![2, 4]);
        let runs = reg.runs("demo", "als", 10).await.unwrap();
        assert_eq!(
            runs.iter().map(|r| r.version).collect::<Vec<_>>(),
            [4, 2, 1]
        );
        assert_eq!(runs[0], new);
        assert_eq!(runs[2], old);
        assert!(task_dir.join("runs.jsonl.torn").exists());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn records_without_a_source_still_load_and_training_runs_write_none() {
        // GIVEN a record written before runs had a source
        let mut old =
            serde_json::to_value(contract::run("demo", "als", 3, RunStatus::Published)).unwrap();
        assert!(old.get("source").is_none(), "None is not written");
        old.as_object_mut().unwrap().remove("source");
        // WHEN it is read THEN it loads, without a source
        let r: RunRecord = serde_json::from_value(old).unwrap();
        assert_eq!(r.source, None);
        // AND a published-from-outside run keeps its source
        let ext = contract::run("demo", "als", 9, RunStatus::Refused);
        let back: RunRecord = serde_json::from_str(&serde_json::to_string(&ext).unwrap()).unwrap();
        assert_eq!(back.source.unwrap()["uri"], "s3://lab/run-9/");
    }

    #[test]
    fn sort_keys_order_like_versions() {
        assert!(version_sort_key(9) < version_sort_key(10));
        assert_eq!(version_sort_key(1_795_305_600_000).len(), 20);
    }
}
