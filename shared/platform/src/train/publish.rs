//! Publishing a version made outside Nectar ([`artifacts`](super::artifacts), `nectar
//! publish`): the task's window is read and split exactly as training splits it, the
//! artifacts are scored on the holdout beside the popularity baseline and the current
//! version, gated, published atomically through the model store and recorded in the registry
//! with their `source`. Nothing is refit: the artifacts are published as scored, so a fair
//! score needs a model fitted on the older part of the split (`nectar train --export-split`
//! writes it out).

use super::artifacts::Artifacts;
use super::*;

/// What to publish, and where it came from.
#[derive(Debug, Clone)]
pub struct PublishRequest {
    /// Site key.
    pub site: String,
    /// Task name (any task; `algorithm = "external"` declares one with no fit).
    pub task: String,
    /// The window the holdout is cut from.
    pub window: WindowChoice,
    /// Where the artifacts were read (`DIR` or `s3://bucket/prefix/`), recorded.
    pub uri: String,
    /// A free note (`--source`: notebook name, git commit), recorded.
    pub note: Option<String>,
}

/// The run's `source`: `{"kind": "artifacts", "uri", "note"?, "manifest"?}` (`manifest` is
/// the manifest's own `source` object).
fn source_of(req: &PublishRequest, a: &Artifacts) -> serde_json::Value {
    let mut s = serde_json::json!({"kind": "artifacts", "uri": req.uri});
    if let Some(n) = &req.note {
        s["note"] = n.clone().into();
    }
    if !a.manifest.source.is_empty() {
        s["manifest"] = a.manifest.source.clone().into();
    }
    s
}

/// Scores, gates and publishes validated artifacts as the next version of `req.task`, and
/// records the run (published, refused with the reason, or failed) with its source. `deps`'
/// trainer fits only the popularity baseline.
#[tracing::instrument(skip_all, fields(site = %req.site, task = %req.task))]
pub async fn publish_artifacts<O, M, R, T, E>(
    cfg: &NectarConfig,
    req: &PublishRequest,
    deps: TrainDeps<'_, O, M, R, T, E>,
    artifacts: Artifacts,
    observer: &dyn TrainObserver,
    now_ms: i64,
) -> Result<RunRecord, TrainError>
where
    O: ObjectStore,
    M: ModelStore,
    R: Registry,
    T: Trainer,
    E: ErasureSource,
{
    let (task, weights) = task_of(cfg, &req.site, &req.task)?;
    let current = deps.models.current_version(&req.site, &req.task).await?;
    let mut run = new_run(&req.site, &req.task, task, current, now_ms);
    run.algorithm = artifacts.manifest.algorithm.clone();
    run.params = artifacts.manifest.params.clone().into();
    run.source = Some(source_of(req, &artifacts));
    let started = Instant::now();
    let train_req = TrainRequest {
        site: req.site.clone(),
        task: req.task.clone(),
        window: req.window,
    };
    let ctx = stages::Stages {
        req: &train_req,
        task,
        weights: &weights,
        deps: &deps,
        observer,
        now_ms,
        current,
    };
    let result = publish_stages(&ctx, &mut run, artifacts).await;
    finish_run(deps.registry, run, result, started, now_ms).await
}

async fn publish_stages<O, M, R, T, E>(
    ctx: &stages::Stages<'_, '_, O, M, R, T, E>,
    run: &mut RunRecord,
    artifacts: Artifacts,
) -> Result<(), TrainError>
where
    O: ObjectStore,
    M: ModelStore,
    R: Registry,
    T: Trainer,
    E: ErasureSource,
{
    let (all, holdout_n) = ctx.read(run).await?;
    let cut = all.len() - holdout_n;
    let (train, test) = (all.view_rows(0..cut), all.view_rows(cut..all.len()));
    let holdout = ctx.split(run, train, test);
    // Nectar's own algorithm names (`als` and its params) give serving its fold-in params,
    // read as a stored version's are.
    let spec = crate::model_store::algo_spec(&serde_json::json!({
        "algorithm": artifacts.manifest.algorithm,
        "params": artifacts.manifest.params,
    }));
    let mut model = artifacts.model;
    // Scored with the metadata it is served with (fold-in params).
    model.metadata = ctx.metadata(run, spec.as_ref(), run.source.as_ref());
    if holdout.is_empty() {
        tracing::warn!(
            holdout = test.rows.len(),
            "No warm holdout users: publishing without evaluation or gate."
        );
    } else if !ctx
        .evaluate_and_gate(run, &holdout, train, test, &model)
        .await?
    {
        return Ok(());
    }
    drop(holdout);
    model.metadata = ctx.metadata(run, spec.as_ref(), run.source.as_ref());
    ctx.publish(run, &model).await
}

/// End-to-end checks of `nectar publish`'s service, run on the local backends (unit tests) and
/// on S3, Redis and DynamoDB (`tests/tests/publish_s3.rs`).
#[cfg(any(test, feature = "testkit"))]
pub mod contract {
    use super::*;
    use crate::privacy::NoErasures;
    use crate::train::artifacts::{self, ArtifactKind, Manifest};
    use crate::train::contract::{write_events, write_events_before, T0};
    use crate::train::trainer::ModelTrainer;
    use std::sync::Mutex;

    /// Keeps the candidate a training run scored.
    #[derive(Default)]
    struct Capture(Mutex<Option<ModelArtifacts>>);

    impl TrainObserver for Capture {
        fn stage(&self, _: &str) {}
        fn progress(&self, _: f64) {}
        fn candidate(&self, a: &ModelArtifacts) {
            *self.0.lock().unwrap() = Some(a.clone());
        }
    }

    fn manifest(kind: ArtifactKind, algorithm: &str, params: serde_json::Value) -> Manifest {
        Manifest {
            format: artifacts::FORMAT.into(),
            kind,
            algorithm: algorithm.into(),
            params: params.as_object().cloned().unwrap_or_default(),
            source: serde_json::Map::from_iter([("notebook".to_string(), "lab.ipynb".into())]),
        }
    }

    /// Train → export → publish under an external task (same metrics), then a worse version
    /// refused by the gate; artifacts are written to and read from `files` under `prefix`.
    pub async fn publish_flow_contract<O, M, R, F>(
        events: &O,
        models: &M,
        registry: &R,
        files: &F,
        prefix: &str,
    ) where
        O: ObjectStore,
        M: ModelStore,
        R: Registry,
        F: ObjectStore,
    {
        let site = format!("p{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff);
        let common = "window = { days = 30, anchor = \"latest\" }\nholdout_fraction = 0.2\n";
        let cfg = NectarConfig::from_toml(
            &format!(
                "[sites.{site}.tasks.als]\nalgorithm = \"als\"\nparams = {{ factors = 4, iterations = 3 }}\n{common}\
                 [sites.{site}.tasks.ext]\nalgorithm = \"external\"\n{common}"
            ),
            "test",
        )
        .unwrap();
        write_events(events, &site).await;
        let deps = || TrainDeps {
            events,
            erasures: &NoErasures,
            models,
            registry,
            trainer: &ModelTrainer,
        };
        // GIVEN an ALS task trained, its candidate exported in the artifact format
        let req = TrainRequest {
            site: site.clone(),
            task: "als".into(),
            window: WindowChoice::Configured,
        };
        let capture = Capture::default();
        let trained = run_task(&cfg, &req, deps(), &capture, T0).await.unwrap();
        let cand = capture.0.lock().unwrap().take().expect("a candidate");
        let m = manifest(
            ArtifactKind::Factors,
            "als",
            serde_json::json!({"factors": 4, "iterations": 3}),
        );
        artifacts::write(files, prefix, &cand, &m).await.unwrap();
        let read = artifacts::read(files, prefix).await.unwrap();
        assert_eq!(read.model, cand, "the format round-trips the candidate");
        assert_eq!(read.manifest, m);
        // WHEN it is published under the external task
        let preq = PublishRequest {
            site: site.clone(),
            task: "ext".into(),
            window: WindowChoice::Configured,
            uri: format!("test://{prefix}"),
            note: Some("commit abc123".into()),
        };
        let run = publish_artifacts(&cfg, &preq, deps(), read, &LogObserver, T0 + 1)
            .await
            .unwrap();
        // THEN it scores what training scored, on the same holdout, and is published
        assert_eq!(run.status, RunStatus::Published, "{:?}", run.reason);
        let (a, b) = (trained.metrics[GATE_METRIC], run.metrics[GATE_METRIC]);
        assert!(
            a > 0.0 && (a - b).abs() < 1e-9,
            "trained {a} vs published {b}"
        );
        assert_eq!(trained.metrics["users_scored"], run.metrics["users_scored"]);
        assert_eq!(run.counts, trained.counts);
        assert!(!run.refit_on_full_window);
        assert!(run.baseline_metrics.is_some());
        assert_eq!(run.algorithm, "als");
        let v1 = run.version;
        assert_eq!(
            models.current_version(&site, "ext").await.unwrap(),
            Some(v1)
        );
        let items = models.load_items(&site, "ext", v1).await.unwrap().unwrap();
        assert_eq!(items.item_factors, cand.item_factors);
        assert_eq!(items.metadata["source"]["note"], "commit abc123");
        let recorded = registry.runs(&site, "ext", 1).await.unwrap().remove(0);
        let source = recorded.source.expect("a source");
        assert_eq!(source["kind"], "artifacts");
        assert_eq!(source["uri"], format!("test://{prefix}"));
        assert_eq!(source["manifest"]["notebook"], "lab.ipynb");
        // AND training the external task says how it gets versions
        let ext_req = TrainRequest {
            task: "ext".into(),
            ..req.clone()
        };
        let e = run_task(&cfg, &ext_req, deps(), &LogObserver, T0 + 2)
            .await
            .unwrap_err();
        assert_eq!(e.code(), "ExternalTask");
        assert!(e.to_string().contains("nectar publish"), "{e}");

        // WHEN ten more days arrive and a worse version (popularity backwards) is published
        write_events_before(events, &site, T0 + 10 * DAY_MS, 20).await;
        let ids: Vec<String> = (0..20).rev().map(|j| format!("i{j}")).collect();
        let list: Vec<(String, f32)> = ids
            .iter()
            .enumerate()
            .map(|(n, id)| (id.clone(), 20.0 - n as f32))
            .collect();
        let files_of = std::collections::BTreeMap::from([
            (
                artifacts::MANIFEST.to_string(),
                bytes::Bytes::from(
                    serde_json::to_vec(&manifest(
                        ArtifactKind::List,
                        "notebook-pop",
                        serde_json::json!({}),
                    ))
                    .unwrap(),
                ),
            ),
            (
                artifacts::LIST.to_string(),
                bytes::Bytes::from(serde_json::to_vec(&list).unwrap()),
            ),
        ]);
        let worse = artifacts::parse(&files_of).unwrap();
        let run = publish_artifacts(&cfg, &preq, deps(), worse, &LogObserver, T0 + 3)
            .await
            .unwrap();
        // THEN the gate compares it with v1 on the newer events, refuses, and v1 stays
        assert!(
            run.gate.as_deref().unwrap().starts_with("compared with"),
            "{:?}",
            run.gate
        );
        assert_eq!(run.status, RunStatus::Refused, "{:?}", run.gate_metrics);
        assert!(run.reason.as_deref().unwrap().contains(GATE_METRIC));
        assert_eq!(
            models.current_version(&site, "ext").await.unwrap(),
            Some(v1)
        );
        let recorded = registry.runs(&site, "ext", 1).await.unwrap().remove(0);
        assert_eq!(recorded.status, RunStatus::Refused);
        assert_eq!(recorded.algorithm, "notebook-pop");
        assert!(recorded.source.is_some());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn local_publish_flow_matches_training_and_gates() {
        let dir = std::env::temp_dir().join(format!("nectar-publish-{}", rand::random::<u64>()));
        contract::publish_flow_contract(
            &crate::object_store::LocalStore::new(&dir),
            &crate::model_store::LocalModelStore::new(&dir),
            &crate::registry::LocalRegistry::new(&dir),
            &crate::object_store::LocalStore::new(dir.join("artifacts")),
            "",
        )
        .await;
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn external_tasks_take_no_schedule_and_no_params() {
        let parse = |extra: &str| {
            NectarConfig::from_toml(
                &format!("[sites.s.tasks.t]\nalgorithm = \"external\"\n{extra}"),
                "t",
            )
        };
        assert!(parse("").is_ok());
        let e = parse("schedule = \"rate(1 day)\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("sites.s.tasks.t.schedule"), "{e}");
        let e = parse("params = { factors = 4 }\n").unwrap_err().to_string();
        assert!(e.contains("sites.s.tasks.t.params"), "{e}");
    }
}
