//! The recommend service on a real redis-server: ranking from factors, fold-in, rules,
//! fallbacks, A/B variants, the served log, hot reload while serving, and Redis stopped
//! mid-test. Each test has its own site; waits poll a condition ([`wait_until`]) rather than
//! sleep a fixed time.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use nectar_model::event::Accepted;
use nectar_platform::auth::AdminKeys;
use nectar_platform::catalog::{Catalog, ItemMeta};
use nectar_platform::collect::sink::{EventSink, SinkError};
use nectar_platform::config::NectarConfig;
use nectar_platform::model_store::{
    Factors, ModelArtifacts, ModelStore, PublishOptions, RedisModelStore,
};
use nectar_platform::recommend::{RecommendOptions, RecommendService};
use serde_json::Value;

#[derive(Default)]
struct MemorySink(Mutex<Vec<Accepted>>);

impl EventSink for MemorySink {
    async fn put(&self, batch: &Accepted) -> Result<(), SinkError> {
        self.0.lock().unwrap().push(batch.clone());
        Ok(())
    }
}

const N_ITEMS: usize = 10;

fn config(site: &str) -> Arc<NectarConfig> {
    let text = format!(
        r#"
[sites.{site}.tasks.als]
algorithm = "als"
[sites.{site}.tasks.mf]
algorithm = "mf"
[sites.{site}.tasks.trending]
algorithm = "trending"
[sites.{site}.tasks.knn]
algorithm = "item_knn"
[sites.{site}.endpoints.plain]
kind = "user"
model = "als"
fallback = "trending"
rules = {{ availability = false }}
[sites.{site}.endpoints.for-you]
kind = "user"
model = "als"
fallback = "trending"
rules = {{ max_per_category = 2, pinned = [{{ slot = 2, item_id = "promo" }}] }}
[sites.{site}.endpoints.nofb]
kind = "user"
model = "mf"
[sites.{site}.endpoints.ab]
kind = "user"
model = "als"
fallback = "trending"
experiment = {{ name = "exp1", variants = [{{ name = "als", weight = 1, model = "als" }}, {{ name = "pop", weight = 1, strategy = "fallback" }}] }}
[sites.{site}.endpoints.similar]
kind = "similar"
model = "knn"
fallback = "trending"
[sites.{site}.endpoints.visit]
kind = "session"
model = "als"
fallback = "trending"
rules = {{ availability = false }}
"#
    );
    Arc::new(NectarConfig::from_toml(&text, "test").unwrap())
}

/// Items `i0..i9`; version `sign` +1 scores item k as k for user `u0` (so i9 is best), −1
/// reverses the order (i0 best).
fn als(sign: f32) -> ModelArtifacts {
    let item_ids = (0..N_ITEMS).map(|k| format!("i{k}")).collect();
    let data = (0..N_ITEMS).flat_map(|k| [sign * k as f32, 1.0]).collect();
    ModelArtifacts {
        item_ids,
        item_factors: Some(Factors { dim: 2, data }),
        user_ids: vec!["u0".into()],
        user_factors: Some(Factors {
            dim: 2,
            data: vec![1.0, 0.0],
        }),
        metadata: serde_json::json!({"params": {"regularization": 0.1, "alpha": 1.0, "confidence": "binary"}}),
        ..Default::default()
    }
}

fn trending() -> ModelArtifacts {
    ModelArtifacts {
        item_ids: (0..N_ITEMS).map(|k| format!("i{k}")).collect(),
        popular: vec![(3, 9.0), (1, 8.0), (2, 7.0), (5, 6.0)],
        ..Default::default()
    }
}

fn knn() -> ModelArtifacts {
    let mut similar = vec![Vec::new(); N_ITEMS];
    similar[4] = vec![(5, 0.9), (6, 0.8), (4, 0.7)];
    ModelArtifacts {
        item_ids: (0..N_ITEMS).map(|k| format!("i{k}")).collect(),
        similar: Some(similar),
        ..Default::default()
    }
}

fn opts() -> PublishOptions {
    PublishOptions::default()
}

fn site() -> String {
    format!("rec{:08x}", rand::random::<u32>())
}

type Svc = RecommendService<RedisModelStore, MemorySink>;

async fn service(
    url: &str,
    site: &str,
    reload: Duration,
    catalog: Catalog,
) -> (Svc, Arc<MemorySink>) {
    let store = RedisModelStore::connect(url).await.unwrap();
    let sink = Arc::new(MemorySink::default());
    let svc = RecommendService::new(
        config(site),
        store,
        sink.clone(),
        catalog,
        AdminKeys::none(),
        RecommendOptions {
            reload_interval: reload,
            ..RecommendOptions::default()
        },
    );
    (svc, sink)
}

async fn get(svc: &Svc, uri: &str) -> (u16, Value) {
    let req = http::Request::get(uri).body(Bytes::new()).unwrap();
    let resp = svc.handle(&req, nectar_platform::now_ms()).await;
    let status = resp.status().as_u16();
    (status, serde_json::from_slice(resp.body()).unwrap())
}

fn ids(v: &Value) -> Vec<String> {
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect()
}

/// Polls `cond` every 5 ms until it holds; panics naming `what` when `timeout` passes first.
async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// How long a publish may take to reach a service that reloads every 10 ms (with jitter).
const RELOADED_WITHIN: Duration = Duration::from_secs(5);

/// A fresh site on the shared Redis, its store, and a service reloading every 10 ms.
struct Fixture {
    site: String,
    store: RedisModelStore,
    svc: Svc,
    sink: Arc<MemorySink>,
    catalog: Catalog,
}

impl Fixture {
    async fn new() -> Self {
        let url = nectar_tests::services().redis_url.clone();
        let site = site();
        let store = RedisModelStore::connect(&url).await.unwrap();
        let catalog = Catalog::in_memory();
        let (svc, sink) = service(&url, &site, Duration::from_millis(10), catalog.clone()).await;
        Self {
            site,
            store,
            svc,
            sink,
            catalog,
        }
    }

    /// `GET path?s=<site>&query`.
    async fn get(&self, path: &str, query: &str) -> (u16, Value) {
        get(&self.svc, &format!("{path}?s={}&{query}", self.site)).await
    }

    /// The trending list, then the ALS model, published and served to `u0`.
    async fn with_als(self) -> Self {
        self.publish("trending", &trending()).await;
        self.publish("als", &als(1.0)).await;
        wait_until("the ALS model is served", RELOADED_WITHIN, || async {
            let (_, b) = self.get("/v1/recommend/plain", "user_id=u0&n=3").await;
            b["model"]["name"] == "als"
        })
        .await;
        self
    }

    async fn publish(&self, model: &str, artifacts: &ModelArtifacts) {
        self.store
            .publish(&self.site, model, 1, artifacts, &opts())
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_published_answers_503_no_model() {
    let f = Fixture::new().await;
    let (s, b) = f.get("/v1/recommend/plain", "user_id=u0").await;
    assert_eq!((s, b["error"]["code"].as_str()), (503, Some("no_model")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_trending_list_answers_as_the_fallback() {
    // GIVEN only the trending list
    let f = Fixture::new().await;
    f.publish("trending", &trending()).await;
    // WHEN the ALS endpoint is asked THEN it answers with its fallback
    wait_until("the trending list is served", RELOADED_WITHIN, || async {
        f.get("/v1/recommend/plain", "user_id=u0&n=3").await.0 == 200
    })
    .await;
    let (s, b) = f.get("/v1/recommend/plain", "user_id=u0&n=3").await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["fallback"], true);
    assert_eq!(b["model"]["name"], "trending");
    assert_eq!(ids(&b), ["i3", "i1", "i2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_user_is_ranked_by_the_dot_product_and_the_answer_is_logged() {
    let f = Fixture::new().await.with_als().await;
    let (s, b) = f.get("/v1/recommend/plain", "user_id=u0&n=3").await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["fallback"], false);
    assert_eq!(b["variant"], "default");
    assert_eq!(b["model"], serde_json::json!({"name": "als", "version": 1}));
    assert_eq!(ids(&b), ["i9", "i8", "i7"]);
    let score0 = b["items"][0]["score"].as_f64().unwrap();
    assert!((score0 - 9.0).abs() < 1e-5, "{score0}");
    // AND the answer is logged as a recommendation_served event, off the hot path
    let rec_id = b["recommendation_id"].as_str().unwrap().to_string();
    f.svc.served_log().flush().await;
    let logged = f.sink.0.lock().unwrap().clone();
    let ev = logged
        .iter()
        .flat_map(|a| a.events.iter())
        .map(|e| serde_json::from_str::<Value>(&e.line).unwrap())
        .find(|e| e["id"] == rec_id.as_str())
        .expect("served event logged");
    assert_eq!(ev["type"], "recommendation_served");
    assert_eq!(ev["site_key"], f.site.as_str());
    assert_eq!(
        ev["context"]["items"],
        serde_json::json!(["i9", "i8", "i7"])
    );
    assert_eq!(ev["context"]["model"]["version"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recent_history_and_exclude_are_left_out() {
    // GIVEN u0 consumed i9 recently
    let f = Fixture::new().await.with_als().await;
    f.store
        .append_history(&f.site, "u0", &["i9".to_string()], 50)
        .await
        .unwrap();
    // WHEN u0 asks to exclude i8 (and an unknown id)
    let (_, b) = f
        .get("/v1/recommend/plain", "user_id=u0&n=3&exclude=i8,nope")
        .await;
    // THEN both are left out
    assert_eq!(ids(&b), ["i7", "i6", "i5"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unseen_user_is_folded_in_and_an_anonymous_client_gets_the_fallback() {
    // GIVEN a user unseen at training time with a recent history
    let f = Fixture::new().await.with_als().await;
    f.store
        .append_history(&f.site, "newbie", &["i8".to_string(), "i9".to_string()], 50)
        .await
        .unwrap();
    // THEN they are folded in
    let (_, b) = f.get("/v1/recommend/plain", "user_id=newbie&n=2").await;
    assert_eq!(b["fallback"], false, "{b}");
    assert_eq!(ids(&b), ["i7", "i6"]);
    // AND a client with neither factors nor history gets the fallback
    let (_, b) = f.get("/v1/recommend/plain", "client_id=c-1&n=2").await;
    assert_eq!(b["fallback"], true);
    assert_eq!(ids(&b), ["i3", "i1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_rules_drop_unavailable_cap_categories_and_pin() {
    // GIVEN u0 consumed i9; i8 unavailable, i7 i6 i5 in one category (max 2), promo in slot 2
    let f = Fixture::new().await.with_als().await;
    f.store
        .append_history(&f.site, "u0", &["i9".to_string()], 50)
        .await
        .unwrap();
    let cat = |id: &str, c: &str| ItemMeta {
        id: id.into(),
        category: Some(c.into()),
        ..Default::default()
    };
    f.catalog
        .upsert(
            &f.site,
            vec![
                ItemMeta {
                    id: "i8".into(),
                    available_until: Some(1),
                    ..Default::default()
                },
                cat("i7", "drama"),
                cat("i6", "drama"),
                cat("i5", "drama"),
                cat("i4", "news"),
            ],
        )
        .unwrap();
    // WHEN u0 asks the endpoint with rules THEN they are applied
    let (_, b) = f.get("/v1/recommend/for-you", "user_id=u0&n=4").await;
    assert_eq!(ids(&b), ["i7", "promo", "i6", "i4"]);
    assert!(b["items"][1]["score"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn similar_items_come_from_the_item_knn_lists() {
    // GIVEN the trending list and the item_knn lists
    let f = Fixture::new().await;
    f.publish("trending", &trending()).await;
    f.publish("knn", &knn()).await;
    wait_until("the item_knn lists are served", RELOADED_WITHIN, || async {
        let (_, b) = f.get("/v1/similar/similar", "item_id=i4&n=5").await;
        b["fallback"] == false
    })
    .await;
    // THEN an item's neighbours are answered, the item itself excluded
    let (s, b) = f.get("/v1/similar/similar", "item_id=i4&n=5").await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(ids(&b), ["i5", "i6"]);
    // AND an unknown item gets the fallback
    let (_, b) = f.get("/v1/similar/similar", "item_id=unknown&n=2").await;
    assert_eq!(b["fallback"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ab_variants_both_occur_and_a_user_keeps_theirs() {
    let f = Fixture::new().await.with_als().await;
    let mut seen = std::collections::HashSet::new();
    for i in 0..40 {
        let (s, b) = f.get("/v1/recommend/ab", &format!("user_id=user{i}")).await;
        assert_eq!(s, 200);
        let v = b["variant"].as_str().unwrap().to_string();
        if v == "pop" {
            assert_eq!(b["fallback"], true);
        }
        let (_, again) = f.get("/v1/recommend/ab", &format!("user_id=user{i}")).await;
        assert_eq!(again["variant"], v.as_str());
        seen.insert(v);
    }
    assert_eq!(seen.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_mistakes_are_4xx_with_a_code_never_500() {
    let f = Fixture::new().await.with_als().await;
    let site = &f.site;
    let cases = [
        (
            format!("/v1/recommend/plain?s={site}"),
            400,
            "invalid_request",
        ),
        (
            format!("/v1/recommend/plain?s={site}&user_id=u0&n=0"),
            400,
            "invalid_request",
        ),
        (
            format!("/v1/recommend/plain?s={site}&user_id=u0&n=101"),
            400,
            "invalid_request",
        ),
        (
            format!("/v1/recommend/plain?s={site}&user_id=u0&n=x"),
            400,
            "invalid_request",
        ),
        (
            format!("/v1/recommend/plain?s={site}&user_id=u%00"),
            400,
            "invalid_request",
        ),
        (
            format!("/v1/similar/similar?s={site}"),
            400,
            "invalid_request",
        ),
        (
            "/v1/recommend/plain?s=nosuchsite&user_id=u0".to_string(),
            403,
            "unknown_site",
        ),
        (
            "/v1/recommend/plain?user_id=u0".to_string(),
            400,
            "invalid_request",
        ),
        (
            format!("/v1/recommend/nope?s={site}&user_id=u0"),
            404,
            "unknown_endpoint",
        ),
        (
            format!("/v1/recommend/similar?s={site}&user_id=u0"),
            404,
            "unknown_endpoint",
        ),
        (
            format!("/v1/similar/plain?s={site}&item_id=i1"),
            404,
            "unknown_endpoint",
        ),
        (
            format!("/v1/recommend/nofb?s={site}&user_id=u0"),
            503,
            "no_model",
        ),
    ];
    for (uri, status, code) in cases {
        let (s, b) = get(&f.svc, &uri).await;
        assert_eq!(
            (s, b["error"]["code"].as_str()),
            (status, Some(code)),
            "{uri}: {b}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hot_reload_switches_versions_without_mixing() {
    let url = nectar_tests::services().redis_url.clone();
    let site = site();
    let store = RedisModelStore::connect(&url).await.unwrap();
    store
        .publish(&site, "als", 1, &als(1.0), &opts())
        .await
        .unwrap();
    store
        .publish(&site, "trending", 1, &trending(), &opts())
        .await
        .unwrap();
    let (svc, _) = service(
        &url,
        &site,
        Duration::from_millis(100),
        Catalog::in_memory(),
    )
    .await;
    let svc = Arc::new(svc);
    let v1 = ["i9", "i8", "i7"];
    let v2 = ["i0", "i1", "i2"];
    // WHEN readers run while v2 is published
    let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut readers = Vec::new();
    for _ in 0..4 {
        let svc = svc.clone();
        let site = site.clone();
        let answered = answered.clone();
        readers.push(tokio::spawn(async move {
            let mut versions = Vec::new();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            // Each reader runs until it has seen v2 a few times.
            while versions.iter().filter(|v| **v == 2).count() < 5 {
                assert!(tokio::time::Instant::now() < deadline, "v2 never served");
                let (s, b) = get(
                    &svc,
                    &format!("/v1/recommend/plain?s={site}&user_id=u0&n=3"),
                )
                .await;
                assert_eq!(s, 200, "{b}");
                assert_eq!(b["model"]["name"], "als", "{b}");
                let version = b["model"]["version"].as_u64().unwrap();
                // THEN every answer is wholly the version it names
                let expect = if version == 1 { v1 } else { v2 };
                assert_eq!(ids(&b), expect, "version {version}");
                assert_eq!(b["fallback"], false);
                versions.push(version);
                answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            versions
        }));
    }
    wait_until(
        "the readers have been answered v1",
        RELOADED_WITHIN,
        || async { answered.load(std::sync::atomic::Ordering::Relaxed) >= 20 },
    )
    .await;
    store
        .publish(&site, "als", 2, &als(-1.0), &opts())
        .await
        .unwrap();
    let mut all = Vec::new();
    for r in readers {
        all.extend(r.await.unwrap());
    }
    // AND answers switched to v2 without a restart, within the reload interval plus jitter
    assert!(all.contains(&1) && all.contains(&2), "{all:?}");
    let (_, b) = get(
        &svc,
        &format!("/v1/recommend/plain?s={site}&user_id=u0&n=3"),
    )
    .await;
    assert_eq!(b["model"]["version"], 2);
    assert_eq!(ids(&b), v2);
}

/// A private redis-server on its own port, killed mid-test.
struct PrivateRedis {
    child: std::process::Child,
    dir: std::path::PathBuf,
}

impl PrivateRedis {
    /// Starts a redis-server on a random free port and connects to it. A port another
    /// process holds makes the server exit at once: another port is tried. A slow start
    /// (a loaded machine, other tests in parallel) is waited for up to 20 s.
    async fn start() -> (Self, String, RedisModelStore) {
        for _ in 0..5 {
            let port = 20_000 + (rand::random::<u16>() % 20_000);
            let dir = std::env::temp_dir().join(format!("nectar-redis-{port}"));
            std::fs::create_dir_all(&dir).unwrap();
            let child = std::process::Command::new("redis-server")
                .args([
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .arg("--dir")
                .arg(&dir)
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("redis-server (tests/services.sh installs it)");
            let mut redis = PrivateRedis { child, dir };
            let url = format!("redis://127.0.0.1:{port}");
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            while tokio::time::Instant::now() < deadline {
                if let Ok(s) = RedisModelStore::connect(&url).await {
                    return (redis, url, s);
                }
                if redis.child.try_wait().ok().flatten().is_some() {
                    break; // exited: most likely the port is taken
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        panic!("no private redis-server started on 5 random ports");
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_mid_test_serves_the_fallback_not_500() {
    let (mut redis, url, store) = PrivateRedis::start().await;
    let site = site();
    store
        .publish(&site, "als", 1, &als(1.0), &opts())
        .await
        .unwrap();
    store
        .publish(&site, "trending", 1, &trending(), &opts())
        .await
        .unwrap();
    let (svc, _) = service(&url, &site, Duration::from_millis(50), Catalog::in_memory()).await;
    let (s, b) = get(
        &svc,
        &format!("/v1/recommend/plain?s={site}&user_id=u0&n=3"),
    )
    .await;
    assert_eq!((s, b["fallback"].as_bool()), (200, Some(false)), "{b}");

    // WHEN Redis stops
    redis.child.kill().unwrap();
    redis.child.wait().unwrap();
    wait_until("the fallback is served", RELOADED_WITHIN, || async {
        let (s, b) = get(
            &svc,
            &format!("/v1/recommend/plain?s={site}&user_id=u0&n=3"),
        )
        .await;
        s == 200 && b["fallback"] == true
    })
    .await;

    // THEN answers come from the in-memory fallback list, marked, and fast enough
    for _ in 0..5 {
        let t = std::time::Instant::now();
        let (s, b) = get(
            &svc,
            &format!("/v1/recommend/plain?s={site}&user_id=u0&n=3"),
        )
        .await;
        assert_eq!(s, 200, "{b}");
        assert_eq!(b["fallback"], true);
        assert_eq!(ids(&b), ["i3", "i1", "i2"]);
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    }
    // AND a fresh instance with nothing in memory answers 503, not 500
    let (svc2, _) = service_unconnected(&url, &site).await;
    if let Some(svc2) = svc2 {
        let (s, b) = get(&svc2, &format!("/v1/recommend/plain?s={site}&user_id=u0")).await;
        assert_eq!(s, 503, "{b}");
    }
}

/// A service for a Redis that may be down: `None` when even connecting fails (that is the
/// Lambda's cold start failing, not a request).
async fn service_unconnected(url: &str, site: &str) -> (Option<Svc>, ()) {
    match RedisModelStore::connect(url).await {
        Ok(store) => (
            Some(RecommendService::new(
                config(site),
                store,
                Arc::new(MemorySink::default()),
                Catalog::in_memory(),
                AdminKeys::none(),
                RecommendOptions::default(),
            )),
            (),
        ),
        Err(_) => (None, ()),
    }
}

/// The DynamoDB catalog and keys tables on moto: upsert, load per site, key hashes only.
#[tokio::test]
async fn dynamodb_catalog_and_keys_on_moto() {
    use nectar_platform::auth::dynamo::DynamoKeys;
    use nectar_platform::catalog::dynamo::DynamoCatalog;
    use nectar_platform::dynamo::create_table;
    let cfg = nectar_tests::aws_config().await;
    let client = aws_sdk_dynamodb::Client::new(&cfg);
    let tag = format!("{:08x}", rand::random::<u32>());
    let cat_table = format!("nectar-catalog-{tag}");
    let keys_table = format!("nectar-keys-{tag}");
    create_table(&client, &cat_table, "site", Some("item_id"))
        .await
        .unwrap();
    create_table(&client, &keys_table, "key_hash", None)
        .await
        .unwrap();
    // GIVEN 60 items of one site (three batches) and one of another
    let cat = DynamoCatalog::new(client.clone(), &cat_table);
    let items: Vec<ItemMeta> = (0..60)
        .map(|i| ItemMeta {
            id: format!("m-{i}"),
            category: Some(if i % 2 == 0 { "news" } else { "sport" }.into()),
            available_from: Some(1_000),
            available_until: (i == 7).then_some(2_000),
            title: None,
        })
        .collect();
    cat.put_items("a", &items).await.unwrap();
    cat.put_items("b", &items[..1]).await.unwrap();
    // WHEN loading site a
    let mut loaded = cat.load_site("a").await.unwrap();
    loaded.sort_by_key(|m| m.id[2..].parse::<u32>().unwrap());
    // THEN exactly its items come back, fields intact
    assert_eq!(loaded, items);
    // AND keys are stored as hashes, bound to their site
    let keys = DynamoKeys::new(client.clone(), &keys_table);
    let k = keys.create("a").await.unwrap();
    let scan = client.scan().table_name(&keys_table).send().await.unwrap();
    let dump = format!("{:?}", scan.items());
    assert!(!dump.contains(&k), "clear key stored");
    let loaded = keys.load().await.unwrap();
    assert!(loaded.verify(&k, "a"));
    assert!(!loaded.verify(&k, "b"));
    for t in [cat_table, keys_table] {
        client.delete_table().table_name(t).send().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_trending_counts_reach_the_fallback_between_trainings() {
    use nectar_model::event::{accept_payload, CollectLimits};
    let url = nectar_tests::services().redis_url.clone();
    let site = site();
    let store = RedisModelStore::connect(&url).await.unwrap();
    let now = nectar_platform::now_ms();
    // GIVEN a trending list trained on data up to two hours ago, where i3 leads
    let mut t = trending();
    t.metadata = serde_json::json!({
        "algorithm": "trending",
        "params": {"half_life_hours": 24},
        "window": {"until_ms": now - 2 * 3_600_000},
    });
    store
        .publish(&site, "trending", 1, &t, &opts())
        .await
        .unwrap();
    let (svc, _) = service(&url, &site, Duration::from_millis(10), Catalog::in_memory()).await;
    let uri = format!("/v1/recommend/plain?s={site}&user_id=nobody&n=3");
    let (s, b) = get(&svc, &uri).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(ids(&b), ["i3", "i1", "i2"]);
    // WHEN 20 users play a brand-new item now, recorded as the archive function records
    // each archived batch (recent histories and hourly counts in Redis)
    let lines: Vec<String> = (0..20)
        .flat_map(|u| {
            let body = serde_json::json!({
                "peach_schema_version": "1.0.3", "sent_timestamp": now, "user_id": format!("v{u}"),
                "client": {"id": format!("c{u}"), "app_id": "a", "device": {"type": "phone"}},
                "events": [{"type": "media_play", "id": "brand-new", "event_timestamp": now - 1000}]
            })
            .to_string();
            accept_payload(body.as_bytes(), &site, now, &CollectLimits::default())
                .unwrap()
                .events
                .into_iter()
                .map(|e| e.line)
        })
        .collect();
    nectar_platform::activity::record_history(
        &store,
        &config(&site),
        lines.iter().map(String::as_str),
    )
    .await
    .unwrap();
    wait_until(
        "the fresh counts reach the fallback",
        RELOADED_WITHIN,
        || async { ids(&get(&svc, &uri).await.1).first().map(String::as_str) == Some("brand-new") },
    )
    .await;
    // THEN the fallback list, brought up to date, leads with the new item (20 fresh plays
    // outweigh i3's 9 trained points decayed by two hours), without a new training
    let (s, b) = get(&svc, &uri).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["fallback"], true);
    assert_eq!(b["model"]["version"], 1);
    assert_eq!(ids(&b), ["brand-new", "i3", "i1"]);
    // AND the player's own history excludes it for them
    let (_, b) = get(
        &svc,
        &format!("/v1/recommend/plain?s={site}&user_id=v0&n=3"),
    )
    .await;
    assert_eq!(ids(&b), ["i3", "i1", "i2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dislike_recorded_through_redis_is_never_served_again_and_sessions_answer() {
    use nectar_model::event::{accept_payload, CollectLimits};
    let f = Fixture::new().await.with_als().await;
    let now = nectar_platform::now_ms();
    // GIVEN u0 dislikes i9 (their best item), recorded as the archive function records it
    let body = serde_json::json!({
        "peach_schema_version": "1.0.3", "sent_timestamp": now, "user_id": "u0",
        "client": {"id": "c0", "app_id": "a", "device": {"type": "phone"}},
        "events": [{"type": "media_dislike", "id": "i9", "event_timestamp": now - 1000}]
    })
    .to_string();
    let lines: Vec<String> =
        accept_payload(body.as_bytes(), &f.site, now, &CollectLimits::default())
            .unwrap()
            .events
            .into_iter()
            .map(|e| e.line)
            .collect();
    nectar_platform::activity::record_history(
        &f.store,
        &config(&f.site),
        lines.iter().map(String::as_str),
    )
    .await
    .unwrap();
    // WHEN u0 asks THEN i9 is gone, on the model path
    let (s, b) = f.get("/v1/recommend/plain", "user_id=u0&n=3").await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(ids(&b), ["i8", "i7", "i6"]);
    // AND a session of i1 then i2 is answered from the factors, its items left out, and
    // explained; with u0's id, i9 is left out there too
    let (s, b) = f
        .get("/v1/session/visit", "items=i1,i2&n=3&explain=true")
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["fallback"], false);
    assert_eq!(ids(&b), ["i9", "i8", "i7"]);
    assert_eq!(b["items"][0]["because"], serde_json::json!(["i2", "i1"]));
    let (_, b) = f
        .get("/v1/session/visit", "items=i1,i2&n=3&user_id=u0")
        .await;
    assert_eq!(ids(&b), ["i8", "i7", "i6"]);
    // AND the served log names the session endpoint and keeps its format (no `because`)
    f.svc.served_log().flush().await;
    let logged = f.sink.0.lock().unwrap().clone();
    let ev: Vec<Value> = logged
        .iter()
        .flat_map(|a| a.events.iter())
        .map(|e| serde_json::from_str::<Value>(&e.line).unwrap())
        .filter(|e| e["context"]["endpoint"] == "visit")
        .collect();
    assert_eq!(ev.len(), 2);
    assert_eq!(
        ev[0]["context"]["items"],
        serde_json::json!(["i9", "i8", "i7"])
    );
    assert!(!ev[0].to_string().contains("because"));
}
