//! `nectar forget`: erase a user or a client of a site (GDPR), as `DELETE /v1/users/{user_id}`
//! and `DELETE /v1/clients/{client_id}` do: the request is recorded in the data dir's erasure
//! log and the model store forgets the id at once; training and compaction skip the subject
//! from then on. With `nectar dev` running on the same data dir, use the route instead: the
//! server holds recent histories in memory.

use std::path::PathBuf;

use anyhow::{bail, Context};
use nectar_platform::config::NectarConfig;
use nectar_platform::privacy::{forget, pending, LocalErasureLog, Subject};

use crate::backends::Backends;

/// Flags of `nectar forget`.
#[derive(Debug, clap::Args)]
pub struct ForgetArgs {
    /// Data dir of the embedded backends (model store, erasure log).
    #[arg(long, env = "NECTAR_DATA_DIR", default_value = "./.nectar")]
    pub data_dir: PathBuf,
    /// Forget in this Redis model store instead of the data dir's.
    #[arg(long, env = "NECTAR_REDIS_URL")]
    pub redis: Option<String>,
    /// The site.
    #[arg(long)]
    pub site: String,
    /// The user id (`user_id` of events) to erase.
    #[arg(long)]
    pub user: Option<String>,
    /// The client id (`client.id` of events) to erase.
    #[arg(long)]
    pub client: Option<String>,
    /// Declarative config file; the embedded default when omitted.
    #[arg(long, env = "NECTAR_CONFIG")]
    pub config: Option<PathBuf>,
}

/// Runs `nectar forget`: prints `{"erased": {user|client: …}, "pending": […]}`.
pub async fn run(args: ForgetArgs) -> anyhow::Result<serde_json::Value> {
    let config = NectarConfig::load(args.config.as_deref())?;
    if config.site(&args.site).is_none() {
        bail!("--site {:?}: unknown site", args.site);
    }
    let mut subjects = Vec::new();
    if let Some(u) = args.user.filter(|u| !u.is_empty()) {
        subjects.push(Subject::User(u));
    }
    if let Some(c) = args.client.filter(|c| !c.is_empty()) {
        subjects.push(Subject::Client(c));
    }
    if subjects.is_empty() {
        bail!("give --user or --client (or both)");
    }
    let backends = Backends::new(&args.data_dir);
    let models = backends.models(args.redis.as_deref()).await?;
    let log = LocalErasureLog::new(&args.data_dir);
    let mut erased = serde_json::Map::new();
    for s in &subjects {
        let report = forget(&models, &log, &args.site, s, nectar_platform::now_ms())
            .await
            .with_context(|| format!("erasing {}", s.key()))?;
        let kind = match s {
            Subject::User(_) => "user",
            Subject::Client(_) => "client",
        };
        erased.insert(kind.to_string(), serde_json::to_value(report)?);
    }
    // The local event log never expires by itself.
    let out = serde_json::json!({ "erased": erased, "pending": pending(None) });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::tests::write_group_events;
    use crate::train::{run as train, TrainArgs};
    use nectar_platform::event_log::compact::{compact_site, CompactOptions};
    use nectar_platform::event_log::parquet::read_rows;
    use nectar_platform::model_store::{user_state, LocalModelStore, ModelStore};
    use nectar_platform::object_store::LocalStore;

    /// Every text file under `dir` that names `id` as a JSON string.
    fn files_naming(dir: &std::path::Path, id: &str) -> Vec<String> {
        let needle = format!("\"{id}\"");
        let mut found = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in entries {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else if String::from_utf8_lossy(&std::fs::read(&p).unwrap()).contains(&needle) {
                    found.push(p.display().to_string());
                }
            }
        }
        found
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn after_forget_no_model_file_or_compacted_row_names_the_user_and_training_skips_them() {
        let dir = std::env::temp_dir().join(format!("nectar-forget-{}", rand::random::<u64>()));
        let data = dir.join("data");
        write_group_events(&LocalStore::new(&data), "demo").await;
        let config = dir.join("nectar.toml");
        std::fs::write(
            &config,
            "[sites.demo.tasks.als]\nalgorithm = \"als\"\nparams = { factors = 8, iterations = 4, seed = 7 }\nwindow = { days = 30, anchor = \"latest\" }\nholdout_fraction = 0.2\n",
        )
        .unwrap();
        let train_args = || TrainArgs {
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
        };
        // GIVEN a compacted log and a trained model that know u7 (a client id in these
        // events), and u7's history
        let events = LocalStore::new(&data);
        let compact = || async {
            compact_site(
                &events,
                &nectar_platform::privacy::LocalErasureLog::new(&data),
                "demo",
                CompactOptions::default(),
                nectar_platform::now_ms(),
            )
            .await
            .unwrap()
        };
        assert!(!compact().await.is_empty());
        assert!(compacted_users(&data).contains("u7"));
        train(train_args()).await.unwrap();
        let store = LocalModelStore::new(&data);
        store
            .append_history("demo", "u7", &["i1".into()], 10)
            .await
            .unwrap();
        let v1 = store.current_version("demo", "als").await.unwrap().unwrap();
        let before = user_state(&store, "demo", "als", v1, "u7").await.unwrap();
        assert!(before.factors.is_some());
        assert!(!files_naming(&data.join("models"), "u7").is_empty());
        // WHEN nectar forget --site demo --client u7 runs
        let out = run(ForgetArgs {
            data_dir: data.clone(),
            redis: None,
            site: "demo".into(),
            user: None,
            client: Some("u7".into()),
            config: Some(config.clone()),
        })
        .await
        .unwrap();
        // THEN the answer says what went; no model file names u7; no factors, no history
        assert_eq!(out["erased"]["client"]["factors"], 1, "{out}");
        assert_eq!(out["erased"]["client"]["history_items"], 1, "{out}");
        assert_eq!(
            files_naming(&data.join("models"), "u7"),
            Vec::<String>::new()
        );
        let store = LocalModelStore::new(&data);
        let after = user_state(&store, "demo", "als", v1, "u7").await.unwrap();
        assert_eq!(
            (after.factors, after.top, after.history.len()),
            (None, None, 0)
        );
        // WHEN training runs again THEN the new version does not know u7 either (its events
        // were skipped), while other users are still modelled
        train(train_args()).await.unwrap();
        let v2 = store.current_version("demo", "als").await.unwrap().unwrap();
        assert!(v2 > v1);
        assert_eq!(
            user_state(&store, "demo", "als", v2, "u7")
                .await
                .unwrap()
                .factors,
            None
        );
        assert!(user_state(&store, "demo", "als", v2, "u8")
            .await
            .unwrap()
            .factors
            .is_some());
        assert_eq!(
            files_naming(&data.join("models"), "u7"),
            Vec::<String>::new()
        );
        // WHEN compaction runs THEN no compacted row is u7's, the others' are there
        compact().await;
        let users = compacted_users(&data);
        assert!(!users.contains("u7") && users.contains("u8"), "{users:?}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// The user keys and client ids of every row of every compacted part of the data dir.
    fn compacted_users(data: &std::path::Path) -> std::collections::BTreeSet<String> {
        let mut out = std::collections::BTreeSet::new();
        let mut stack = vec![data.join("compacted")];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "parquet") {
                    let body = bytes::Bytes::from(std::fs::read(&p).unwrap());
                    for r in read_rows(body).unwrap() {
                        out.insert(r.user_key().to_string());
                        out.extend(r.client_id);
                    }
                }
            }
        }
        out
    }

    #[tokio::test]
    async fn forget_needs_a_subject_and_a_known_site() {
        let args = |site: &str, user: Option<&str>| ForgetArgs {
            data_dir: std::env::temp_dir().join("nectar-forget-none"),
            redis: None,
            site: site.into(),
            user: user.map(str::to_string),
            client: None,
            config: None,
        };
        let e = run(args("demo", None)).await.unwrap_err().to_string();
        assert!(e.contains("--user"), "{e}");
        let e = run(args("nope", Some("u1"))).await.unwrap_err().to_string();
        assert!(e.contains("--site"), "{e}");
    }
}
