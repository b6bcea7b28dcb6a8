//! `nectar export`: a published version's item side in the artifact format (for a notebook
//! to start from, or to republish under another task with `nectar publish`).

use std::path::PathBuf;

use anyhow::{bail, Context};
use nectar_platform::model_store::ModelStore;
use nectar_platform::object_store::{AnyStore, LocalStore};
use nectar_platform::train::artifacts::{self, Location};

use crate::backends::Backends;

/// Flags of `nectar export`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Data dir of the embedded backends.
    #[arg(long, env = "NECTAR_DATA_DIR", default_value = "./.nectar")]
    pub data_dir: PathBuf,
    /// The site.
    #[arg(long)]
    pub site: String,
    /// The task.
    #[arg(long)]
    pub task: String,
    /// The version; the current one when omitted.
    #[arg(long)]
    pub version: Option<u64>,
    /// Where to write: a directory or s3://bucket/prefix/.
    #[arg(long, value_name = "DIR|s3://…")]
    pub out: String,
    /// Read the model from this Redis instead of the data dir.
    #[arg(long, env = "NECTAR_REDIS_URL")]
    pub redis: Option<String>,
}

/// Writes the version's files; returns the version written.
pub async fn run(args: ExportArgs) -> anyhow::Result<u64> {
    let backends = Backends::new(&args.data_dir);
    let models = backends.models(args.redis.as_deref()).await?;
    let version = match args.version {
        Some(v) => v,
        None => match models.current_version(&args.site, &args.task).await? {
            Some(v) => v,
            None => bail!("{}/{} has no published version", args.site, args.task),
        },
    };
    let Some((model, manifest)) =
        artifacts::export_version(&models, &args.site, &args.task, version).await?
    else {
        bail!("{}/{} has no version {version}", args.site, args.task);
    };
    let (store, prefix) = match Location::parse(&args.out)? {
        Location::Dir(d) => (AnyStore::Local(LocalStore::new(d)), String::new()),
        Location::S3 { bucket, prefix } => (backends.events(Some(&bucket)).await, prefix),
    };
    artifacts::write(&store, &prefix, &model, &manifest)
        .await
        .with_context(|| format!("writing {}", args.out))?;
    println!(
        "{}/{} v{version}: {} items ({:?}) written to {} (item side only: user factors are not exported)",
        args.site,
        args.task,
        model.item_ids.len(),
        manifest.kind,
        args.out
    );
    Ok(version)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nectar_platform::model_store::LocalModelStore;
    use nectar_platform::registry::{LocalRegistry, Registry, RunStatus};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_published_version_exports_its_item_side_and_publishes_back() {
        let dir = std::env::temp_dir().join(format!("nectar-export-{}", rand::random::<u64>()));
        let data = dir.join("data");
        crate::train::tests::write_group_events(&LocalStore::new(&data), "demo").await;
        let config = dir.join("nectar.toml");
        let common = "window = { days = 30, anchor = \"latest\" }\nholdout_fraction = 0.2\n";
        std::fs::write(
            &config,
            format!(
                "[sites.demo.tasks.als]\nalgorithm = \"als\"\nparams = {{ factors = 8, iterations = 4, seed = 7 }}\n{common}\
                 [sites.demo.tasks.ext]\nalgorithm = \"external\"\n{common}"
            ),
        )
        .unwrap();
        // GIVEN a trained and published ALS version
        crate::train::run(crate::train::TrainArgs {
            data_dir: data.clone(),
            task: Some("als".into()),
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
        })
        .await
        .unwrap();
        let models = LocalModelStore::new(&data);
        let current = models
            .current_version("demo", "als")
            .await
            .unwrap()
            .unwrap();
        // WHEN it is exported
        let out = dir.join("out");
        let v = run(ExportArgs {
            data_dir: data.clone(),
            site: "demo".into(),
            task: "als".into(),
            version: None,
            out: out.to_str().unwrap().into(),
            redis: None,
        })
        .await
        .unwrap();
        assert_eq!(v, current);
        // THEN the files hold the version's item side and the task's algorithm and params
        let read = artifacts::read(&LocalStore::new(&out), "").await.unwrap();
        let items = models.load_items("demo", "als", v).await.unwrap().unwrap();
        assert_eq!(read.model.item_ids, items.item_ids);
        assert_eq!(read.model.item_factors, items.item_factors);
        assert_eq!(read.model.popular, items.popular);
        assert_eq!(read.manifest.algorithm, "als");
        assert_eq!(read.manifest.params["factors"], 8.0);
        assert_eq!(read.manifest.source["version"], v);
        // AND nectar publish takes them under the external task
        let outcome = crate::publish::run(crate::publish::PublishArgs {
            data_dir: data.clone(),
            site: "demo".into(),
            task: "ext".into(),
            artifacts: out.to_str().unwrap().into(),
            source: None,
            config: Some(config.clone()),
            bucket: None,
            redis: None,
            registry_table: None,
        })
        .await
        .unwrap();
        assert_eq!(outcome.exit_code(), 0, "{outcome:?}");
        let run = LocalRegistry::new(&data)
            .runs("demo", "ext", 1)
            .await
            .unwrap()
            .remove(0);
        assert_eq!(run.status, RunStatus::Published);
        assert!(run.metrics["ndcg@10"] > 0.0);
        // AND a task without a version says so
        let e = run_missing(&data).await;
        assert!(e.contains("has no published version"), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    async fn run_missing(data: &std::path::Path) -> String {
        run(ExportArgs {
            data_dir: data.to_path_buf(),
            site: "demo".into(),
            task: "ext2".into(),
            version: None,
            out: "unused".into(),
            redis: None,
        })
        .await
        .unwrap_err()
        .to_string()
    }
}
