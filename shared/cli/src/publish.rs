//! `nectar publish`: publishes a version made outside Nectar (the artifact format, see
//! `nectar_platform::train::artifacts`) through the task's holdout, quality gate, atomic
//! publish and registry, on the same backends as `nectar train`.
//!
//! Exit codes: 0 published; 2 the artifacts (or their location) are invalid: the message
//! names the file, nothing is published or recorded; 3 the quality gate refused the version
//! (recorded as `refused` with the reason); 1 anything else (recorded as `failed` once the
//! run started).

use std::path::PathBuf;

use anyhow::bail;
use nectar_platform::config::NectarConfig;
use nectar_platform::object_store::{AnyStore, LocalStore};
use nectar_platform::privacy::LocalErasureLog;
use nectar_platform::registry::{RunRecord, RunStatus};
use nectar_platform::train::artifacts::{self, Location};
use nectar_platform::train::trainer::ModelTrainer;
use nectar_platform::train::{
    publish_artifacts, LogObserver, PublishRequest, TrainDeps, WindowChoice,
};

use crate::backends::Backends;

/// Exit code: the artifacts are invalid.
pub const EXIT_INVALID: i32 = 2;
/// Exit code: the quality gate refused the version.
pub const EXIT_REFUSED: i32 = 3;

/// Flags of `nectar publish`.
#[derive(Debug, clap::Args)]
pub struct PublishArgs {
    /// Data dir of the embedded backends (event log, models, registry).
    #[arg(long, env = "NECTAR_DATA_DIR", default_value = "./.nectar")]
    pub data_dir: PathBuf,
    /// The site.
    #[arg(long)]
    pub site: String,
    /// The task the version is published under (its window, holdout, gate and publish
    /// options apply).
    #[arg(long)]
    pub task: String,
    /// The artifacts: a directory or s3://bucket/prefix/ (see README "Artifact format").
    #[arg(long, value_name = "DIR|s3://…")]
    pub artifacts: String,
    /// Where the version came from (notebook name, git commit…), recorded with the run.
    #[arg(long, value_name = "TEXT")]
    pub source: Option<String>,
    /// Declarative config file; the embedded default when omitted.
    #[arg(long, env = "NECTAR_CONFIG")]
    pub config: Option<PathBuf>,
    /// Read the event log from this S3 bucket instead of the data dir.
    #[arg(long, env = "NECTAR_BUCKET")]
    pub bucket: Option<String>,
    /// Publish to this Redis instead of the data dir.
    #[arg(long, env = "NECTAR_REDIS_URL")]
    pub redis: Option<String>,
    /// Record the run in this DynamoDB table instead of the data dir.
    #[arg(long, env = "NECTAR_REGISTRY_TABLE")]
    pub registry_table: Option<String>,
}

/// What a publish ended with.
#[derive(Debug)]
pub enum Outcome {
    /// The run (published or refused).
    Run(Box<RunRecord>),
    /// The artifacts were refused before any run (the message names the file).
    Invalid(String),
}

impl Outcome {
    /// Says why nothing was published (the summary of a run is printed by [`run`]).
    pub fn report(&self) {
        if let Self::Invalid(message) = self {
            eprintln!("invalid artifacts: {message} (nothing published)");
        }
    }

    /// The process exit code (see the module docs).
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Run(r) if r.status == RunStatus::Published => 0,
            Self::Run(_) => EXIT_REFUSED,
            Self::Invalid(_) => EXIT_INVALID,
        }
    }
}

/// Reads, validates, scores, gates and publishes; prints a summary. Failures of the run
/// itself (backends) are errors.
pub async fn run(args: PublishArgs) -> anyhow::Result<Outcome> {
    let cfg = NectarConfig::load(args.config.as_deref())?;
    if cfg.task(&args.site, &args.task).is_none() {
        bail!(
            "no task {:?} for site {:?} in the config (declare one, e.g. algorithm = \"external\")",
            args.task,
            args.site
        );
    }
    let backends = Backends::new(&args.data_dir);
    let (store, prefix) = match Location::parse(&args.artifacts) {
        Ok(Location::Dir(d)) => (AnyStore::Local(LocalStore::new(d)), String::new()),
        Ok(Location::S3 { bucket, prefix }) => (backends.events(Some(&bucket)).await, prefix),
        Err(e) => return Ok(invalid(&e.to_string())),
    };
    let read = match artifacts::read(&store, &prefix).await {
        Ok(a) => a,
        Err(e @ artifacts::ArtifactError::Invalid { .. }) => {
            return Ok(invalid(&format!("{}: {e}", args.artifacts)))
        }
        Err(e) => return Err(anyhow::Error::new(e).context(format!("reading {}", args.artifacts))),
    };
    for note in &read.notes {
        println!("  {note}");
    }
    let events = backends.events(args.bucket.as_deref()).await;
    let models = backends.models(args.redis.as_deref()).await?;
    let registry = backends.registry(args.registry_table.as_deref()).await;
    let req = PublishRequest {
        site: args.site.clone(),
        task: args.task.clone(),
        window: WindowChoice::Configured,
        uri: args.artifacts.clone(),
        note: args.source.clone(),
    };
    let erasures = LocalErasureLog::new(&args.data_dir);
    let deps = TrainDeps {
        events: &events,
        erasures: &erasures,
        models: &models,
        registry: &registry,
        trainer: &ModelTrainer,
    };
    let kind = read.manifest.kind;
    let result = publish_artifacts(
        &cfg,
        &req,
        deps,
        read,
        &LogObserver,
        nectar_platform::now_ms(),
    )
    .await;
    let run = match result {
        Ok(run) => run,
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!(
                "{}/{}: publish failed; the current model stays in place",
                args.site, args.task
            )))
        }
    };
    let metric = |m: Option<&std::collections::BTreeMap<String, f64>>| {
        m.and_then(|m| m.get("ndcg@10"))
            .map_or("-".to_string(), |v| format!("{v:.4}"))
    };
    println!(
        "{}/{}: {} v{} from {} ({:?}, algorithm {}; ndcg@10 {} vs current {}, popularity baseline {}; {} holdout users){}",
        run.site,
        run.task,
        run.status.as_str(),
        run.version,
        args.artifacts,
        kind,
        run.algorithm,
        metric(Some(&run.metrics)),
        metric(run.current_metrics.as_ref()),
        metric(run.baseline_metrics.as_ref()),
        run.counts.holdout_users_scored,
        run.reason
            .as_ref()
            .map(|r| format!(": {r}"))
            .unwrap_or_default()
    );
    Ok(Outcome::Run(Box::new(run)))
}

fn invalid(message: &str) -> Outcome {
    Outcome::Invalid(message.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nectar_platform::object_store::LocalStore;
    use nectar_platform::registry::{LocalRegistry, Registry};

    fn args(data: &std::path::Path, config: &std::path::Path, artifacts: &str) -> PublishArgs {
        PublishArgs {
            data_dir: data.to_path_buf(),
            site: "demo".into(),
            task: "ext".into(),
            artifacts: artifacts.into(),
            source: Some("lab.ipynb@abc123".into()),
            config: Some(config.to_path_buf()),
            bucket: None,
            redis: None,
            registry_table: None,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_trained_candidate_exported_and_published_scores_the_same() {
        let dir = std::env::temp_dir().join(format!("nectar-pub-{}", rand::random::<u64>()));
        let data = dir.join("data");
        crate::train::tests::write_group_events(&LocalStore::new(&data), "demo").await;
        let config = dir.join("nectar.toml");
        let common = "window = { days = 30, anchor = \"latest\" }\nholdout_fraction = 0.2\n";
        std::fs::write(
            &config,
            format!(
                "[sites.demo.tasks.als]\nalgorithm = \"als\"\nparams = {{ factors = 8, iterations = 4, seed = 7 }}\n{common}\
                 [sites.demo.tasks.knn]\nalgorithm = \"item_knn\"\nparams = {{ k = 10 }}\n{common}\
                 [sites.demo.tasks.ext]\nalgorithm = \"external\"\n{common}"
            ),
        )
        .unwrap();
        let registry = LocalRegistry::new(&data);
        for task in ["als", "knn"] {
            // GIVEN a task trained with --export-artifacts
            let out = dir.join(format!("{task}-artifacts"));
            crate::train::run(crate::train::TrainArgs {
                data_dir: data.clone(),
                task: Some(task.into()),
                site: Some("demo".into()),
                since: None,
                until: None,
                config: Some(config.clone()),
                bucket: None,
                redis: None,
                registry_table: None,
                export_split: None,
                export_artifacts: Some(out.clone()),
                metrics_file: None,
            })
            .await
            .unwrap();
            let trained = registry.runs("demo", task, 1).await.unwrap().remove(0);
            // WHEN nectar publish takes the files under the external task
            let outcome = run(args(&data, &config, out.to_str().unwrap()))
                .await
                .unwrap();
            // THEN it is published (exit 0) with the trained run's nDCG@10, and recorded
            // with its source
            assert_eq!(outcome.exit_code(), 0, "{outcome:?}");
            let published = registry.runs("demo", "ext", 1).await.unwrap().remove(0);
            assert_eq!(published.status, RunStatus::Published);
            let (a, b) = (trained.metrics["ndcg@10"], published.metrics["ndcg@10"]);
            assert!(
                a > 0.0 && (a - b).abs() < 1e-9,
                "{task}: trained {a}, published {b}"
            );
            let source = published.source.unwrap();
            assert_eq!(source["note"], "lab.ipynb@abc123");
            assert_eq!(source["manifest"]["task"], task);
        }
        // AND bad artifacts exit 2 naming the file, and nothing is recorded
        let bad = dir.join("als-artifacts");
        std::fs::write(bad.join("item_ids.json"), "[\"i1\", \"i1\"]").unwrap();
        let before = registry.runs("demo", "ext", 10).await.unwrap().len();
        let outcome = run(args(&data, &config, bad.to_str().unwrap()))
            .await
            .unwrap();
        assert_eq!(outcome.exit_code(), EXIT_INVALID);
        let Outcome::Invalid(message) = outcome else {
            unreachable!()
        };
        assert!(
            message.contains("item_ids.json: duplicate id \"i1\""),
            "{message}"
        );
        assert_eq!(
            registry.runs("demo", "ext", 10).await.unwrap().len(),
            before
        );
        // AND a refused run exits 3
        let mut refused = registry.runs("demo", "ext", 1).await.unwrap().remove(0);
        refused.status = RunStatus::Refused;
        assert_eq!(Outcome::Run(Box::new(refused)).exit_code(), EXIT_REFUSED);
        // AND nectar train skips the external task when training every task, and refuses it
        // by name, pointing at nectar publish
        let train = |task: Option<&str>| crate::train::TrainArgs {
            data_dir: data.clone(),
            task: task.map(str::to_string),
            site: Some("demo".into()),
            since: None,
            until: None,
            config: Some(config.clone()),
            bucket: None,
            redis: None,
            registry_table: None,
            export_split: None,
            export_artifacts: None,
            metrics_file: None,
        };
        let ext_runs = registry.runs("demo", "ext", 10).await.unwrap().len();
        crate::train::run(train(None)).await.unwrap();
        assert_eq!(
            registry.runs("demo", "ext", 10).await.unwrap().len(),
            ext_runs
        );
        let e = crate::train::run(train(Some("ext"))).await.unwrap_err();
        assert!(e.to_string().contains("1 task(s) failed"), "{e}");
        // AND an unknown task is an error before anything is read
        let mut a = args(&data, &config, bad.to_str().unwrap());
        a.task = "nope".into();
        assert!(run(a)
            .await
            .unwrap_err()
            .to_string()
            .contains("no task \"nope\""));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
