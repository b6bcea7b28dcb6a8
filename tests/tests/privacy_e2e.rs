//! GDPR erasure end to end on the real services, wired as in AWS: the event log in moto's S3,
//! models and histories in redis-server, runs and erasures in moto's DynamoDB.
//!
//! GIVEN two users' events in the S3 log, a trained model in Redis, their histories and a
//! compacted layer, WHEN one is erased through the privacy route (what the recommend Lambda
//! serves) THEN, once training and compaction have run again (as scheduled), no Redis key or
//! value, no model version, no compacted row and no other object outside the raw `events/`
//! (which expires by the bucket's lifecycle rule) mentions the user; their answer is a
//! stranger's; the other user is intact; and the erased user's export shows the recorded
//! erasure.

use crate::common;

use bytes::Bytes;
use nectar_platform::auth::AdminKeys;
use nectar_platform::catalog::Catalog;
use nectar_platform::config::NectarConfig;
use nectar_platform::event_log::compact::{compact_site, CompactOptions};
use nectar_platform::event_log::jsonl::gzip_lines;
use nectar_platform::event_log::layout::{event_object_key, Hour};
use nectar_platform::event_log::local::LocalEventLog;
use nectar_platform::event_log::parquet::read_rows;
use nectar_platform::model_store::{user_state, ModelStore, RedisModelStore};
use nectar_platform::object_store::{ObjectStore, S3Store};
use nectar_platform::privacy::dynamo::DynamoErasureLog;
use nectar_platform::privacy::route::{handle, Privacy};
use nectar_platform::recommend::{RecommendOptions, RecommendService};
use nectar_platform::registry::{DynamoRegistry, RunStatus};
use nectar_platform::train::trainer::ModelTrainer;
use nectar_platform::train::{run_task, LogObserver, TrainDeps, TrainRequest, WindowChoice};
use serde_json::Value;

const DAY_MS: i64 = 86_400_000;
/// 2026-11-20T00:00Z: the events' days are finished, so compaction takes them.
const DAY0: i64 = 1_795_132_800_000;

/// A play of `item` by `user` (logged in; the device id is derived from the user's).
fn play(site: &str, user: &str, item: &str, ts: i64) -> String {
    let eid = nectar_model::event::event_id(site, user, "media_play", item, ts);
    format!(
        r#"{{"event_id":"{eid}","site_key":"{site}","type":"media_play","id":"{item}","event_timestamp":{ts},"collect_timestamp":{ts},"sent_timestamp":{ts},"peach_schema_version":"1.0.3","user_id":"{user}","client":{{"id":"dev-{user}","app_id":"t"}}}}"#
    )
}

/// Three days of plays: the two subjects and 30 other users, each playing 8 of 20 items.
async fn write_log(store: &S3Store, site: &str, users: &[String]) {
    for day in 0..3i64 {
        let mut lines = Vec::new();
        for (u, user) in users.iter().enumerate() {
            for k in 0..8 {
                let item = format!("i{}", (u * 3 + k * 2 + day as usize) % 20);
                let ts = DAY0 + day * DAY_MS + 3_600_000 + (u as i64 * 61 + k as i64) * 1000;
                lines.push(play(site, user, &item, ts));
            }
        }
        let ts = DAY0 + day * DAY_MS + 3_600_000;
        let key = event_object_key(site, Hour::of(ts), "shard-0", &format!("{day}"));
        let body = gzip_lines(lines.iter().map(String::as_str));
        store.put(&key, Bytes::from(body)).await.unwrap();
    }
}

/// Every Redis key of the site whose name or value mentions `needle`.
async fn redis_mentions(url: &str, site: &str, needle: &str) -> Vec<String> {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("nectar:{{{site}:*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut hits = Vec::new();
    for key in keys {
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        // Every value the key holds, whatever its type (a string is one value).
        let (read, whole_range) = match kind.as_str() {
            "string" => ("GET", false),
            "hash" => ("HGETALL", false),
            "list" => ("LRANGE", true),
            "set" => ("SMEMBERS", false),
            "zset" => ("ZRANGE", true),
            other => panic!("{key}: unexpected Redis type {other}"),
        };
        let mut cmd = redis::cmd(read);
        cmd.arg(&key);
        if whole_range {
            cmd.arg(0).arg(-1);
        }
        let values: Vec<Vec<u8>> = if kind == "string" {
            vec![cmd.query_async(&mut conn).await.unwrap()]
        } else {
            cmd.query_async(&mut conn).await.unwrap()
        };
        let n = needle.as_bytes();
        if key.contains(needle) || values.iter().any(|v| v.windows(n.len()).any(|w| w == n)) {
            hits.push(key);
        }
    }
    hits
}

/// The users and devices of every compacted row of the site, and the keys of the other
/// objects outside `events/` whose bytes mention `needle`.
async fn s3_mentions(store: &S3Store, site: &str, needle: &str) -> (Vec<String>, Vec<String>) {
    let mut subjects = Vec::new();
    let mut objects = Vec::new();
    for key in store.list("").await.unwrap() {
        if key.starts_with("events/") || !key.contains(&format!("site={site}")) {
            continue;
        }
        let body = store.get(&key).await.unwrap().unwrap();
        if key.ends_with(".parquet") {
            for r in read_rows(body).unwrap() {
                subjects.push(r.user_key().to_string());
                subjects.extend(r.client_id.clone());
            }
        } else if body.windows(needle.len()).any(|w| w == needle.as_bytes()) {
            objects.push(key);
        }
    }
    subjects.sort();
    subjects.dedup();
    (subjects, objects)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erased_user_is_gone_from_redis_s3_and_every_model_version() {
    let (redis_url, _) = common::services();
    let s3 = common::s3_client().await;
    let bucket = common::new_bucket(&s3, "nectar-gdpr").await;
    let events = S3Store::new(s3, bucket);
    let ddb = aws_sdk_dynamodb::Client::new(&common::aws_config().await);
    let (runs, erasures_table) = (
        nectar_tests::unique("nectar-registry"),
        nectar_tests::unique("nectar-erasures"),
    );
    DynamoRegistry::create_table(&ddb, &runs).await.unwrap();
    DynamoErasureLog::create_table(&ddb, &erasures_table)
        .await
        .unwrap();
    let (registry, erasures) = (
        DynamoRegistry::new(ddb.clone(), &runs),
        DynamoErasureLog::new(ddb.clone(), &erasures_table),
    );
    let models = RedisModelStore::connect(&redis_url).await.unwrap();
    let site = format!("g{:08x}", rand::random::<u32>());
    let (gone, kept) = (format!("erase-me-{site}"), format!("keep-me-{site}"));
    let config = NectarConfig::from_toml(
        &format!(
            "[sites.{site}.tasks.als]\nalgorithm = \"als\"\nparams = {{ factors = 4, iterations = 3 }}\n\
             window = {{ days = 30, anchor = \"latest\" }}\nholdout_fraction = 0.2\n\
             publish = {{ top_n = 5, keep_versions = 2 }}\n\
             [sites.{site}.tasks.pop]\nalgorithm = \"popular\"\nwindow = {{ days = 30, anchor = \"latest\" }}\n\
             [sites.{site}.endpoints.for-you]\nkind = \"user\"\nmodel = \"als\"\nfallback = \"pop\"\n\
             rules = {{ exclude_consumed = false }}\n"
        ),
        "test",
    )
    .unwrap();
    let mut users = vec![gone.clone(), kept.clone()];
    users.extend((0..30).map(|u| format!("f{u:02}-{site}")));
    write_log(&events, &site, &users).await;
    let (ev, er, mo, re, si, co) = (&events, &erasures, &models, &registry, &site, &config);
    let train_task = move |task: &'static str| async move {
        let deps = TrainDeps {
            events: ev,
            erasures: er,
            models: mo,
            registry: re,
            trainer: &ModelTrainer,
        };
        let req = TrainRequest {
            site: si.clone(),
            task: task.into(),
            window: WindowChoice::Configured,
        };
        run_task(co, &req, deps, &LogObserver, nectar_platform::now_ms())
            .await
            .unwrap()
    };
    let train = move || train_task("als");
    let compact = || async {
        compact_site(
            &events,
            &erasures,
            &site,
            CompactOptions::default(),
            nectar_platform::now_ms(),
        )
        .await
        .unwrap()
    };

    // The recommend service as the Lambda builds it, on the same Redis.
    let answers_dir = std::env::temp_dir().join(format!("nectar-e2e-served-{site}"));
    let svc = RecommendService::new(
        std::sync::Arc::new(config.clone()),
        RedisModelStore::connect(&redis_url).await.unwrap(),
        std::sync::Arc::new(LocalEventLog::start(&answers_dir, "e2e").unwrap()),
        Catalog::in_memory(),
        AdminKeys::none(),
        RecommendOptions::default(),
    );
    let items_for = |user: String| {
        let svc = &svc;
        let site = &site;
        async move {
            let uri = format!("/v1/recommend/for-you?s={site}&user_id={user}&n=5");
            let r = svc
                .handle(&http::Request::get(&uri).body(Bytes::new()).unwrap(), 0)
                .await;
            let body: Value = serde_json::from_slice(r.body()).unwrap();
            assert_eq!(r.status(), 200, "{body}");
            (body["items"].clone(), body["fallback"].clone())
        }
    };

    // GIVEN a trained version, both histories and the compacted days, all knowing both users
    train_task("pop").await;
    let v1 = train().await;
    assert_eq!(v1.counts.users, 32);
    for u in [&gone, &kept] {
        models
            .append_history(&site, u, &["i1".into(), "i2".into()], 10)
            .await
            .unwrap();
        let s = user_state(&models, &site, "als", v1.version, u)
            .await
            .unwrap();
        assert!(s.factors.is_some(), "{u} before erasure");
    }
    assert_eq!(compact().await.len(), 3);
    // AND the user's answer is personal: not the stranger's fallback list
    let stranger = items_for(format!("stranger-{site}")).await;
    assert_eq!(stranger.1, true, "{stranger:?}");
    let before = items_for(gone.clone()).await;
    assert_eq!(before.1, false);
    assert!(s3_mentions(&events, &site, &gone).await.0.contains(&gone));
    assert!(!redis_mentions(&redis_url, &site, &gone).await.is_empty());

    // WHEN the user is erased through the privacy route, under the site's admin key
    let mut keys = AdminKeys::none();
    let key = nectar_platform::auth::new_key();
    keys.add(&key, &site);
    let privacy = Privacy {
        store: &models,
        log: &erasures,
        events: &events,
        config: &config,
        keys: &keys,
        raw_log_expiry_days: Some(30),
    };
    let call = |method: &str, path: String| {
        let req = http::Request::builder()
            .method(method)
            .uri(format!("{path}?s={site}"))
            .header("authorization", format!("Bearer {key}"))
            .body(Bytes::new())
            .unwrap();
        let privacy = &privacy;
        async move {
            let r = handle(privacy, &req, nectar_platform::now_ms()).await;
            let body: Value = serde_json::from_slice(r.body()).unwrap();
            (r.status().as_u16(), body)
        }
    };
    let (status, body) = call("DELETE", format!("/v1/users/{gone}")).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["erased"]["history_items"], 2, "{body}");
    // AND training and compaction run again, as scheduled
    let v2 = train().await;
    compact().await;

    // THEN training read the erasure from DynamoDB and skipped the user
    assert_eq!(v2.counts.users, 31, "{v2:?}");
    // AND the user now gets what a stranger gets: nothing of theirs shapes an answer
    assert_eq!(items_for(gone.clone()).await, stranger);
    assert_eq!(
        items_for(kept.clone()).await.1,
        false,
        "the other user's answer stays personal"
    );
    // AND no Redis key or value of the site names the user, in any kept version
    assert_eq!(
        redis_mentions(&redis_url, &site, &gone).await,
        Vec::<String>::new()
    );
    // (the retrained version is checked when the gate let it through)
    let mut versions = vec![v1.version];
    if v2.status == RunStatus::Published {
        versions.push(v2.version);
    }
    for v in versions {
        let s = user_state(&models, &site, "als", v, &gone).await.unwrap();
        assert_eq!((s.factors, s.top, s.history.len()), (None, None, 0), "v{v}");
        let other = user_state(&models, &site, "als", v, &kept).await.unwrap();
        assert!(
            other.factors.is_some(),
            "the other user keeps v{v}'s factors"
        );
    }
    // AND no compacted row and no object outside the raw log names the user or their device
    let (subjects, objects) = s3_mentions(&events, &site, &gone).await;
    assert!(!subjects.iter().any(|s| s.contains(&gone)), "{subjects:?}");
    assert_eq!(objects, Vec::<String>::new());
    assert!(subjects.contains(&kept), "the other user's rows stay");
    // AND the other user's history is intact
    let other = user_state(&models, &site, "als", v1.version, &kept)
        .await
        .unwrap();
    assert_eq!(other.history, ["i2", "i1"]);

    // AND the exports show the recorded erasure, and none for the other user
    let (status, body) = call("GET", format!("/v1/users/{gone}/export")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["erasure"]["state"], "requested", "{body}");
    assert!(body["erasure"]["requested_ms"].is_i64());
    assert_eq!(body["history"], serde_json::json!([]));
    let (_, body) = call("GET", format!("/v1/users/{kept}/export")).await;
    assert_eq!(body["erasure"]["state"], "none", "{body}");
    assert_eq!(body["history"].as_array().unwrap().len(), 2);

    drop(svc);
    let _ = std::fs::remove_dir_all(&answers_dir);
    for t in [&runs, &erasures_table] {
        ddb.delete_table().table_name(t).send().await.unwrap();
    }
}
