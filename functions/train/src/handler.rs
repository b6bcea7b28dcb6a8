//! Scheduled event → train service → run summary.

use lambda_runtime::{Diagnostic, LambdaEvent};
use nectar_platform::catalog::Catalog;
use nectar_platform::config::{Engine, NectarConfig};
use nectar_platform::event_log::compact::{compact_site, CompactError, CompactOptions};
use nectar_platform::model_store::ModelStore;
use nectar_platform::object_store::ObjectStore;
use nectar_platform::privacy::ErasureSource;
use nectar_platform::registry::{Registry, RunRecord};
use nectar_platform::report::{run_report_task, ReportError};
use nectar_platform::train::artifacts::{self, ArtifactError, Location};
use nectar_platform::train::{
    publish_artifacts, run_task, LogObserver, PublishRequest, TrainDeps, TrainError, TrainRequest,
    Trainer, WindowChoice,
};
use serde::Deserialize;
use serde_json::{json, Value};

/// The task to run: the schedule's constant input, or the `detail` of a scheduled event.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TaskInput {
    /// Task name.
    pub task: String,
    /// Site key.
    pub site: String,
}

/// Why an invocation failed.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The event names no task.
    #[error("the event must carry {{\"task\", \"site\"}} at the top level or in detail: {0}")]
    InvalidInput(String),
    /// The run failed (recorded in the registry; the current model stays).
    #[error(transparent)]
    Train(#[from] TrainError),
    /// The `report` job failed.
    #[error(transparent)]
    Report(#[from] ReportError),
    /// The `publish` job's artifacts are missing or invalid (nothing was published).
    #[error(transparent)]
    Artifacts(#[from] ArtifactError),
    /// The `compact` job failed (days compacted before the failure stay compacted).
    #[error(transparent)]
    Compact(#[from] CompactError),
    /// The task has `engine = "spark"`: it is fitted by the Spark job, not natively here.
    #[error(
        "task {task:?} of site {site:?} has engine = \"spark\": the train function does not fit \
         it natively. Its schedule starts the EMR Serverless job (jobs/spark/nectar_als.py), \
         then this function's publish job: {{\"site\": \"{site}\", \"task\": \"{task}\", \
         \"job\": \"publish\", \"artifacts\": \"s3://BUCKET/PREFIX\"}}"
    )]
    SparkTask {
        /// Site key.
        site: String,
        /// Task name.
        task: String,
    },
}

impl From<HandlerError> for Diagnostic {
    fn from(e: HandlerError) -> Self {
        let error_type = match &e {
            HandlerError::InvalidInput(_) => "InvalidInput",
            HandlerError::Train(t) => t.code(),
            HandlerError::Report(r) => r.code(),
            HandlerError::Artifacts(_) => "InvalidArtifacts",
            HandlerError::Compact(c) => c.code(),
            HandlerError::SparkTask { .. } => "SparkTask",
        };
        let mut message = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            message.push_str(": ");
            message.push_str(&s.to_string());
            src = s.source();
        }
        Diagnostic {
            error_type: error_type.to_string(),
            error_message: message,
        }
    }
}

/// Reads the task from the constant input or a scheduled event's `detail`.
pub fn parse_input(event: &Value) -> Result<TaskInput, HandlerError> {
    let direct = serde_json::from_value::<TaskInput>(event.clone());
    match direct {
        Ok(t) => Ok(t),
        Err(e) => match event.get("detail") {
            Some(d) => serde_json::from_value::<TaskInput>(d.clone())
                .map_err(|e| HandlerError::InvalidInput(format!("detail: {e}"))),
            None => Err(HandlerError::InvalidInput(e.to_string())),
        },
    }
}

/// A job other than training, named by the input's `job` (at the top level or in a scheduled
/// event's `detail`): `{"site", "job": "report"}` (the scheduled online report) or
/// `{"site", "task", "job": "publish", "artifacts": "s3://<event bucket>/<prefix>"}` (the
/// Spark state machine's second step) or `{"site", "job": "compact"}` (every finished day of
/// the site's event log that needs it, into `compacted/`). `None` for a training input.
pub fn job_of(event: &Value) -> Option<(&str, &Value)> {
    let input = if event.get("job").is_some() {
        event
    } else {
        event.get("detail").filter(|d| d.get("job").is_some())?
    };
    Some((input.get("job")?.as_str()?, input))
}

fn string_field<'a>(input: &'a Value, name: &str) -> Result<&'a str, HandlerError> {
    input[name]
        .as_str()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            HandlerError::InvalidInput(format!("{name}: a non-empty string is required"))
        })
}

/// Runs a non-training job; see [`job_of`].
pub async fn run_job<O, M, R, T, E>(
    cfg: &NectarConfig,
    deps: TrainDeps<'_, O, M, R, T, E>,
    catalog: Option<&Catalog>,
    job: &str,
    input: &Value,
) -> Result<Value, HandlerError>
where
    O: ObjectStore,
    M: ModelStore,
    R: Registry,
    T: Trainer,
    E: ErasureSource,
{
    let site = string_field(input, "site")?;
    if cfg.site(site).is_none() {
        return Err(HandlerError::InvalidInput(format!(
            "site {site:?} is not in the config"
        )));
    }
    let now = nectar_platform::now_ms();
    match job {
        "report" => {
            let report = run_report_task(deps.events, catalog, cfg, site, now).await?;
            Ok(json!({
                "site": site,
                "job": "report",
                "endpoints": report.endpoints.len(),
                "orphan_hits": report.orphan_hits,
            }))
        }
        "compact" => {
            let opts = CompactOptions::default();
            let days = compact_site(deps.events, deps.erasures, site, opts, now).await?;
            Ok(json!({"site": site, "job": "compact", "days": days}))
        }
        "publish" => {
            let task = string_field(input, "task")?;
            let uri = string_field(input, "artifacts")?;
            // The Spark job writes its artifacts into the event bucket (artifacts/ prefix),
            // which is the store this function reads.
            let prefix = match Location::parse(uri) {
                Ok(Location::S3 { prefix, .. }) => prefix,
                _ => {
                    return Err(HandlerError::InvalidInput(format!(
                        "artifacts: an s3://<event bucket>/<prefix> URI is required, not {uri:?}"
                    )))
                }
            };
            let artifacts = artifacts::read(deps.events, &prefix).await?;
            let req = PublishRequest {
                site: site.to_string(),
                task: task.to_string(),
                window: WindowChoice::Configured,
                uri: uri.to_string(),
                note: input["note"].as_str().map(str::to_string),
            };
            let run = publish_artifacts(cfg, &req, deps, artifacts, &LogObserver, now).await?;
            Ok(summary(&run))
        }
        other => Err(HandlerError::InvalidInput(format!(
            "job: {other:?} is not a job of this function (report, publish, compact)"
        ))),
    }
}

/// The summary returned to the invoker (and visible in the Lambda console).
pub fn summary(run: &RunRecord) -> Value {
    json!({
        "site": run.site,
        "task": run.task,
        "version": run.version,
        "status": run.status,
        "reason": run.reason,
        "metrics": run.metrics,
        "current_metrics": run.current_metrics,
        "counts": run.counts,
        "durations_ms": run.durations_ms,
    })
}

/// Runs the named task on the injected backends.
#[tracing::instrument(skip_all)]
pub async fn handle<O, M, R, T, E>(
    cfg: &NectarConfig,
    deps: TrainDeps<'_, O, M, R, T, E>,
    catalog: Option<&Catalog>,
    event: LambdaEvent<Value>,
) -> Result<Value, HandlerError>
where
    O: ObjectStore,
    M: ModelStore,
    R: Registry,
    T: Trainer,
    E: ErasureSource,
{
    if let Some((job, input)) = job_of(&event.payload) {
        return run_job(cfg, deps, catalog, job, input).await;
    }
    let input = parse_input(&event.payload)?;
    if cfg
        .task(&input.site, &input.task)
        .is_some_and(|t| t.engine == Engine::Spark)
    {
        return Err(HandlerError::SparkTask {
            site: input.site,
            task: input.task,
        });
    }
    let req = TrainRequest {
        site: input.site,
        task: input.task,
        window: WindowChoice::Configured,
    };
    let run = run_task(cfg, &req, deps, &LogObserver, nectar_platform::now_ms()).await?;
    Ok(summary(&run))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nectar_platform::model_store::LocalModelStore;
    use nectar_platform::object_store::LocalStore;
    use nectar_platform::privacy::{ErasureLog, LocalErasureLog, Subject};
    use nectar_platform::registry::LocalRegistry;
    use nectar_platform::train::contract;
    use nectar_platform::train::trainer::ModelTrainer;

    const SCHEDULED: &str = r#"{
        "version": "0", "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
        "detail-type": "Scheduled Event", "source": "aws.events",
        "account": "123456789012", "time": "2026-11-22T03:00:00Z", "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/nectar-train-demo-als"],
        "detail": {"task": "als", "site": "demo"}
    }"#;

    #[test]
    fn input_is_the_constant_or_the_detail() {
        let want = TaskInput {
            task: "als".into(),
            site: "demo".into(),
        };
        let direct: Value = serde_json::from_str(r#"{"task":"als","site":"demo"}"#).unwrap();
        assert_eq!(parse_input(&direct).unwrap(), want);
        let scheduled: Value = serde_json::from_str(SCHEDULED).unwrap();
        assert_eq!(parse_input(&scheduled).unwrap(), want);
        // the samples in events/ (what `sam local invoke -e` sends)
        for sample in [
            include_str!("../../../events/train-schedule-input.json"),
            include_str!("../../../events/train-scheduled-event.json"),
        ] {
            let v: Value = serde_json::from_str(sample).unwrap();
            assert_eq!(parse_input(&v).unwrap(), want);
        }
        let bad: Value = serde_json::from_str(r#"{"detail":{"task":"als"}}"#).unwrap();
        let d: Diagnostic = parse_input(&bad).unwrap_err().into();
        assert_eq!(d.error_type, "InvalidInput");
        assert!(d.error_message.contains("site"), "{}", d.error_message);
    }

    #[tokio::test]
    async fn a_spark_task_is_refused_before_any_read() {
        // GIVEN a config whose task has engine = "spark", and an empty data dir
        let dir = std::env::temp_dir().join(format!("nectar-fn-spark-{}", rand::random::<u64>()));
        let (events, models, registry) = (
            LocalStore::new(&dir),
            LocalModelStore::new(&dir),
            LocalRegistry::new(&dir),
        );
        let cfg = NectarConfig::from_toml(
            "[sites.s1.tasks.big]\nalgorithm = \"als\"\nengine = \"spark\"\n",
            "test",
        )
        .unwrap();
        let deps = TrainDeps {
            events: &events,
            models: &models,
            registry: &registry,
            trainer: &ModelTrainer,
            erasures: &nectar_platform::privacy::NoErasures,
        };
        // WHEN its schedule input reaches the train function
        let payload = json!({"task": "big", "site": "s1"});
        let err = handle(
            &cfg,
            deps,
            None,
            LambdaEvent::new(payload, Default::default()),
        )
        .await
        .unwrap_err();
        // THEN it is refused with a stable code and a message naming the task, the job and
        // the publish step; nothing was recorded
        let d = Diagnostic::from(err);
        assert_eq!(d.error_type, "SparkTask");
        assert!(
            d.error_message
                .contains("\"big\" of site \"s1\" has engine = \"spark\"")
                && d.error_message.contains("jobs/spark/nectar_als.py")
                && d.error_message.contains("\"job\": \"publish\""),
            "{}",
            d.error_message
        );
        assert!(registry.runs("s1", "big", 1).await.unwrap().is_empty());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_scheduled_event_runs_the_task() {
        // GIVEN a local log with events of site s1 and a config with task pop
        let dir = std::env::temp_dir().join(format!("nectar-fn-train-{}", rand::random::<u64>()));
        let (events, models, registry) = (
            LocalStore::new(&dir),
            LocalModelStore::new(&dir),
            LocalRegistry::new(&dir),
        );
        contract::write_events(&events, "s1").await;
        let cfg = contract::config("s1");
        // AND user u0 erased in an erasure log that is not the event store (as the Lambda's
        // DynamoDB table is not its bucket)
        let erasures = LocalErasureLog::new(dir.join("elsewhere"));
        erasures
            .record("s1", &Subject::User("u0".into()), 1)
            .await
            .unwrap();
        let deps = || TrainDeps {
            events: &events,
            erasures: &erasures,
            models: &models,
            registry: &registry,
            trainer: &ModelTrainer,
        };
        // WHEN the schedule fires with detail {"task": "pop", "site": "s1"}
        let payload: Value = serde_json::from_str(
            &SCHEDULED
                .replace("\"als\"", "\"pop\"")
                .replace("\"demo\"", "\"s1\""),
        )
        .unwrap();
        let out = handle(
            &cfg,
            deps(),
            None,
            LambdaEvent::new(payload, Default::default()),
        )
        .await
        .unwrap();
        // THEN the model is published and the summary says so, trained without u0
        assert_eq!(out["status"], "published");
        assert!(out["metrics"]["ndcg@10"].as_f64().unwrap() > 0.0);
        assert_eq!(out["counts"]["users"], 39, "{out}");
        // AND an unknown task is a diagnosable error
        let payload = json!({"task": "nope", "site": "s1"});
        let err = handle(
            &cfg,
            deps(),
            None,
            LambdaEvent::new(payload, Default::default()),
        )
        .await
        .unwrap_err();
        assert_eq!(Diagnostic::from(err).error_type, "UnknownTask");

        // WHEN the published version is exported into the bucket's artifacts/ prefix and the
        // Spark state machine's publish job names it
        let version = models.current_version("s1", "pop").await.unwrap().unwrap();
        let (model, manifest) = artifacts::export_version(&models, "s1", "pop", version)
            .await
            .unwrap()
            .unwrap();
        artifacts::write(&events, "artifacts/run-1/", &model, &manifest)
            .await
            .unwrap();
        let payload = json!({"site": "s1", "task": "pop", "job": "publish",
                             "artifacts": "s3://bucket/artifacts/run-1"});
        let out = handle(
            &cfg,
            deps(),
            None,
            LambdaEvent::new(payload, Default::default()),
        )
        .await
        .unwrap();
        // THEN it goes through the gate and is published as a new version with its source
        assert_eq!(out["status"], "published", "{out}");
        assert!(out["version"].as_u64().unwrap() > version);
        // AND missing artifacts are refused as invalid, naming the file
        let payload = json!({"site": "s1", "task": "pop", "job": "publish",
                             "artifacts": "s3://bucket/artifacts/none"});
        let err = handle(
            &cfg,
            deps(),
            None,
            LambdaEvent::new(payload, Default::default()),
        )
        .await
        .unwrap_err();
        let d = Diagnostic::from(err);
        assert_eq!(d.error_type, "InvalidArtifacts");
        assert!(
            d.error_message.contains("manifest.json"),
            "{}",
            d.error_message
        );

        // WHEN the report job runs for a site without [report] THEN it says so
        let payload = json!({"detail": {"site": "s1", "job": "report"}});
        let err = handle(
            &cfg,
            deps(),
            None,
            LambdaEvent::new(payload.clone(), Default::default()),
        )
        .await
        .unwrap_err();
        assert_eq!(Diagnostic::from(err).error_type, "report_not_scheduled");
        // AND with a [report] section it writes reports/site=s1/date=…/report.{json,html}
        let mut cfg = cfg.clone();
        cfg.sites.get_mut("s1").unwrap().report = Some(nectar_platform::config::ReportConfig {
            schedule: "rate(1 day)".into(),
            days: 7,
        });
        let out = handle(
            &cfg,
            deps(),
            None,
            LambdaEvent::new(payload, Default::default()),
        )
        .await
        .unwrap();
        assert_eq!(out["job"], "report", "{out}");
        let written = events.list("reports/site=s1/").await.unwrap();
        assert_eq!(written.len(), 2, "{written:?}");
        assert!(written.iter().any(|k| k.ends_with("/report.json")));
        assert!(written.iter().any(|k| k.ends_with("/report.html")));
        // AND an unknown job or site is refused
        for payload in [
            json!({"site": "s1", "job": "dance"}),
            json!({"site": "nope", "job": "report"}),
        ] {
            let err = handle(
                &cfg,
                deps(),
                None,
                LambdaEvent::new(payload, Default::default()),
            )
            .await
            .unwrap_err();
            assert_eq!(Diagnostic::from(err).error_type, "InvalidInput");
        }
        // AND the compact job (the schedule's input) compacts the site's finished days
        let payload: Value =
            serde_json::from_str(include_str!("../../../events/train-compact-input.json")).unwrap();
        let payload = json!({"site": "s1", "job": payload["job"]});
        let out = handle(
            &cfg,
            deps(),
            None,
            LambdaEvent::new(payload.clone(), Default::default()),
        )
        .await
        .unwrap();
        let days = out["days"].as_array().unwrap();
        assert!(!days.is_empty(), "{out}");
        assert!(days.iter().all(|d| d["status"] == "compacted"), "{out}");
        assert!(dir.join("compacted/site=s1").is_dir());
        // AND the compacted days dropped u0's rows (the injected erasure log)
        let erased: u64 = days
            .iter()
            .map(|d| d["manifest"]["erased_rows"].as_u64().unwrap())
            .sum();
        assert_eq!(erased, 20, "u0 played each of the 20 items once: {out}");
        // AND a second run has nothing left to do
        let out = handle(
            &cfg,
            deps(),
            None,
            LambdaEvent::new(payload, Default::default()),
        )
        .await
        .unwrap();
        assert_eq!(out["days"], json!([]));
        // AND an unknown site is refused
        let payload = json!({"detail": {"site": "nope", "job": "compact"}});
        let err = handle(
            &cfg,
            deps(),
            None,
            LambdaEvent::new(payload, Default::default()),
        )
        .await
        .unwrap_err();
        assert_eq!(Diagnostic::from(err).error_type, "InvalidInput");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
