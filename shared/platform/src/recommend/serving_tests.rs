//! The recommend service end to end on the local model store: repeated query parameters,
//! the model's own popularity list when its fallback was never trained, the 503 that names
//! the task to train, and readiness.

use std::sync::Arc;

use bytes::Bytes;
use nectar_model::event::Accepted;
use serde_json::{json, Value};

use super::*;
use crate::catalog::ItemMeta;
use crate::collect::sink::SinkError;
use crate::model_store::{LocalModelStore, ModelArtifacts, PublishOptions};
use crate::recommend::served_log::FlushMode;

struct NoSink;

impl EventSink for NoSink {
    async fn put(&self, _: &Accepted) -> Result<(), SinkError> {
        Ok(())
    }
}

const CONFIG: &str = r#"
[sites.demo.tasks.knn]
algorithm = "item_knn"
[sites.demo.tasks.trending]
algorithm = "trending"
[sites.demo.endpoints.for-you]
kind = "user"
model = "knn"
fallback = "trending"
rules = { availability = false }
[sites.demo.endpoints.more]
kind = "similar"
model = "knn"
fallback = "trending"
"#;

struct Fixture {
    dir: std::path::PathBuf,
    store: LocalModelStore,
    svc: RecommendService<LocalModelStore, NoSink>,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn fixture(name: &str, config: &str) -> Fixture {
    let dir = std::env::temp_dir().join(format!("nectar-serve-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = LocalModelStore::new(&dir);
    let svc = RecommendService::new(
        Arc::new(NectarConfig::from_toml(config, "test").unwrap()),
        store.clone(),
        Arc::new(NoSink),
        Catalog::in_memory(),
        AdminKeys::none(),
        RecommendOptions {
            // Every request re-reads the pointer, so a publish is seen at once.
            reload_interval: Duration::ZERO,
            log_served: false,
            served_flush: FlushMode::Deferred,
            ..RecommendOptions::default()
        },
    );
    Fixture { dir, store, svc }
}

/// Items a, b, c; a's neighbour is b; the counts list is c then a.
fn knn() -> ModelArtifacts {
    ModelArtifacts {
        item_ids: vec!["a".into(), "b".into(), "c".into()],
        popular: vec![(2, 5.0), (0, 3.0)],
        similar: Some(vec![vec![(1, 0.9)], vec![], vec![]]),
        metadata: json!({ "algorithm": "item_knn", "trained_ms": 1_000_000 }),
        ..Default::default()
    }
}

async fn get(svc: &RecommendService<LocalModelStore, NoSink>, uri: &str) -> (u16, Value) {
    let req = http::Request::get(uri).body(Bytes::new()).unwrap();
    let resp = svc.handle(&req, 4_000_000).await;
    let body = serde_json::from_slice(resp.body()).unwrap();
    (resp.status().as_u16(), body)
}

fn ids(body: &Value) -> Vec<&str> {
    body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn repeated_singular_parameters_are_refused_and_exclude_repeats_add_up() {
    let f = fixture("repeat", CONFIG);
    f.store
        .publish("demo", "knn", 1, &knn(), &PublishOptions::default())
        .await
        .unwrap();
    // GIVEN each singular parameter given twice, WHEN asked THEN 400 naming it
    for (uri, name) in [
        ("/v1/recommend/for-you?s=demo&s=demo&user_id=u", "s"),
        (
            "/v1/recommend/for-you?s=demo&user_id=u&user_id=v",
            "user_id",
        ),
        (
            "/v1/recommend/for-you?s=demo&client_id=u&client_id=v",
            "client_id",
        ),
        ("/v1/recommend/for-you?s=demo&user_id=u&n=1&n=2", "n"),
        (
            "/v1/recommend/for-you?s=demo&user_id=u&context_item=a&context_item=b",
            "context_item",
        ),
        ("/v1/similar/more?s=demo&item_id=a&item_id=b", "item_id"),
    ] {
        let (status, body) = get(&f.svc, uri).await;
        assert_eq!(status, 400, "{uri}: {body}");
        assert_eq!(body["error"]["code"], "invalid_request", "{uri}");
        assert_eq!(body["error"]["details"][0]["path"], name, "{uri}");
    }
    // AND `exclude` is a list: repeats add up (c and a both left out)
    let (status, body) = get(
        &f.svc,
        "/v1/recommend/for-you?s=demo&user_id=new&exclude=c&exclude=a",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(ids(&body).is_empty(), "{body}");
}

#[tokio::test]
async fn an_untrained_fallback_is_named_and_the_models_own_list_answers_unknown_users() {
    let f = fixture("own-list", CONFIG);
    // GIVEN nothing trained WHEN an unknown user asks THEN 503 no_model, naming both tasks
    // and the command that trains the fallback
    let (status, body) = get(&f.svc, "/v1/recommend/for-you?s=demo&user_id=new").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("no_model"))
    );
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains(r#"task "knn" has no published model"#),
        "{msg}"
    );
    assert!(
        msg.contains(r#"fallback task "trending" was never trained"#),
        "{msg}"
    );
    assert!(
        msg.contains("nectar train --task trending --site demo"),
        "{msg}"
    );
    // GIVEN the model published but not its fallback
    f.store
        .publish("demo", "knn", 7, &knn(), &PublishOptions::default())
        .await
        .unwrap();
    // WHEN an unknown user (no history) asks THEN the model's own popularity list answers,
    // marked as a fallback, from the model's version
    let (status, body) = get(&f.svc, "/v1/recommend/for-you?s=demo&user_id=new&n=5").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(ids(&body), ["c", "a"]);
    assert_eq!(body["fallback"], true);
    assert_eq!(body["model"], json!({ "name": "knn", "version": 7 }));
    // AND an unknown item on the similar endpoint gets the same list
    let (status, body) = get(&f.svc, "/v1/similar/more?s=demo&item_id=zzz").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["fallback"], true);
    // AND a known item still gets its neighbours from the model
    let (_, body) = get(&f.svc, "/v1/similar/more?s=demo&item_id=a").await;
    assert_eq!((ids(&body), &body["fallback"]), (vec!["b"], &json!(false)));
}

#[tokio::test]
async fn an_endpoint_without_fallback_names_its_own_task() {
    let f = fixture(
        "nofb",
        "[sites.demo.tasks.knn]\nalgorithm = \"item_knn\"\n[sites.demo.endpoints.for-you]\nkind = \"user\"\nmodel = \"knn\"\n",
    );
    let (status, body) = get(&f.svc, "/v1/recommend/for-you?s=demo&user_id=new").await;
    assert_eq!(status, 503, "{body}");
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(msg.contains("declares no fallback"), "{msg}");
    assert!(msg.contains("nectar train --task knn --site demo"), "{msg}");
}

#[tokio::test]
async fn readiness_reports_versions_ages_and_reasons() {
    let f = fixture("health", CONFIG);
    // GIVEN nothing trained WHEN readiness is asked THEN 503 not_ready, each endpoint with the
    // reason and the command
    let resp = f.svc.health_response(4_000_000).await;
    assert_eq!(resp.status().as_u16(), 503);
    let body: Value = serde_json::from_slice(resp.body()).unwrap();
    assert_eq!(body["status"], "not_ready");
    let ep = &body["sites"]["demo"]["endpoints"]["for-you"];
    assert_eq!(ep["ready"], false);
    assert_eq!(ep["kind"], "user");
    assert_eq!(ep["model"], Value::Null);
    assert!(
        ep["reason"]
            .as_str()
            .unwrap()
            .contains("nectar train --task trending"),
        "{ep}"
    );
    // GIVEN the model only (trained at 1,000 s, now 4,000 s) THEN ready: its own list
    // answers unknown users; no fallback is loaded
    f.store
        .publish("demo", "knn", 3, &knn(), &PublishOptions::default())
        .await
        .unwrap();
    let (ready, body) = f.svc.health(4_000_000).await;
    assert!(ready, "{body}");
    let ep = &body["sites"]["demo"]["endpoints"]["more"];
    assert_eq!(
        ep["model"],
        json!({ "task": "knn", "version": 3, "age_seconds": 3000 })
    );
    assert_eq!(ep["fallback"], Value::Null);
    assert!(ep.get("reason").is_none());
    // GIVEN the fallback published too THEN it is reported (age unknown without trained_ms)
    let trending = ModelArtifacts {
        item_ids: vec!["a".into()],
        popular: vec![(0, 1.0)],
        ..Default::default()
    };
    f.store
        .publish("demo", "trending", 1, &trending, &PublishOptions::default())
        .await
        .unwrap();
    let resp = f.svc.health_response(4_000_000).await;
    assert_eq!(resp.status().as_u16(), 200);
    let body: Value = serde_json::from_slice(resp.body()).unwrap();
    assert_eq!(body["status"], "ready");
    assert_eq!(
        body["sites"]["demo"]["endpoints"]["for-you"]["fallback"],
        json!({ "task": "trending", "version": 1, "age_seconds": null })
    );
}

#[tokio::test]
async fn readiness_checks_every_experiment_variant() {
    // GIVEN an experiment whose second arm serves the fallback, and only the model trained
    let f = fixture(
        "health-ab",
        &format!(
            "{CONFIG}[sites.demo.endpoints.ab]\nkind = \"user\"\nmodel = \"knn\"\nfallback = \"trending\"\n\
             experiment = {{ name = \"x\", variants = [{{ name = \"m\", weight = 1, model = \"knn\" }}, \
             {{ name = \"fb\", weight = 1, strategy = \"fallback\" }}] }}\n"
        ),
    );
    f.store
        .publish("demo", "knn", 1, &knn(), &PublishOptions::default())
        .await
        .unwrap();
    // WHEN readiness is asked THEN the endpoint is not ready: the fallback arm has no list
    let (ready, body) = f.svc.health(4_000_000).await;
    assert!(!ready);
    let ep = &body["sites"]["demo"]["endpoints"]["ab"];
    assert_eq!(ep["ready"], false);
    assert_eq!(ep["variants"]["m"]["ready"], true);
    assert_eq!(ep["variants"]["fb"]["ready"], false);
    assert!(ep["reason"]
        .as_str()
        .unwrap()
        .contains("serves the fallback"));
    // AND the endpoints without the experiment are ready
    assert_eq!(body["sites"]["demo"]["endpoints"]["for-you"]["ready"], true);
}

#[tokio::test]
async fn disliked_and_dismissed_items_are_never_served_to_that_user() {
    let f = fixture("rejected", CONFIG);
    f.store
        .publish("demo", "knn", 1, &knn(), &PublishOptions::default())
        .await
        .unwrap();
    // GIVEN u1 played a (so item-kNN answers b) and then disliked b
    f.store
        .append_history("demo", "u1", &["a".into()], 10)
        .await
        .unwrap();
    let (_, before) = get(&f.svc, "/v1/recommend/for-you?s=demo&user_id=u1").await;
    assert_eq!(ids(&before)[0], "b");
    f.store
        .append_rejected("demo", "u1", &["b".into()], 10)
        .await
        .unwrap();
    // WHEN u1 asks again THEN b is gone (the model path)
    let (status, body) = get(&f.svc, "/v1/recommend/for-you?s=demo&user_id=u1").await;
    assert_eq!(status, 200);
    assert!(!ids(&body).contains(&"b"), "{body}");
    // GIVEN an unknown device that dismissed c
    f.store
        .append_rejected("demo", "d9", &["c".into()], 10)
        .await
        .unwrap();
    // WHEN it asks THEN the fallback list leaves c out, and another device still gets c
    let (_, body) = get(&f.svc, "/v1/recommend/for-you?s=demo&client_id=d9").await;
    assert_eq!(body["fallback"], true);
    assert_eq!(ids(&body), vec!["a"], "{body}");
    let (_, other) = get(&f.svc, "/v1/recommend/for-you?s=demo&client_id=d8").await;
    assert_eq!(ids(&other), vec!["c", "a"]);
}

#[tokio::test]
async fn session_requests_rank_from_the_visit_and_fall_back_when_nothing_is_known() {
    let config = format!(
        "{CONFIG}[sites.demo.endpoints.visit]\nkind = \"session\"\nmodel = \"knn\"\nfallback = \"trending\"\nrules = {{ availability = false }}\n"
    );
    let f = fixture("session", &config);
    f.store
        .publish("demo", "knn", 1, &knn(), &PublishOptions::default())
        .await
        .unwrap();
    // GIVEN a visit that saw an unknown item and a (whose neighbour is b)
    let (status, body) = get(&f.svc, "/v1/session/visit?s=demo&items=zz,a").await;
    // THEN b is answered by the model, the seen items left out
    assert_eq!(status, 200, "{body}");
    assert_eq!(ids(&body), vec!["b"]);
    assert_eq!(body["fallback"], false);
    // GIVEN a visit of items with no neighbours THEN the fallback, without the visit's items
    let (_, body) = get(&f.svc, "/v1/session/visit?s=demo&items=c").await;
    assert_eq!(body["fallback"], true);
    assert_eq!(ids(&body), vec!["a"]);
    // GIVEN a visitor who dismissed b THEN b is not served to them
    f.store
        .append_rejected("demo", "d1", &["b".into()], 10)
        .await
        .unwrap();
    let (_, body) = get(&f.svc, "/v1/session/visit?s=demo&items=a&client_id=d1").await;
    assert!(!ids(&body).contains(&"b"), "{body}");
    // AND bad input is a 400 naming `items`
    let many = (0..51)
        .map(|i| format!("i{i}"))
        .collect::<Vec<_>>()
        .join(",");
    for uri in [
        "/v1/session/visit?s=demo".to_string(),
        "/v1/session/visit?s=demo&items=,".to_string(),
        format!("/v1/session/visit?s=demo&items={many}"),
        "/v1/session/visit?s=demo&items=a%01".to_string(),
    ] {
        let (status, body) = get(&f.svc, &uri).await;
        assert_eq!(status, 400, "{uri}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains("items"),
            "{body}"
        );
    }
    // AND a session endpoint is not served on the other routes, nor the reverse
    let (status, _) = get(&f.svc, "/v1/recommend/visit?s=demo&user_id=u").await;
    assert_eq!(status, 404);
    let (status, _) = get(&f.svc, "/v1/session/for-you?s=demo&items=a").await;
    assert_eq!(status, 404);
}

fn because(body: &Value) -> Vec<Vec<&str>> {
    body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            i["because"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b.as_str().unwrap())
                .collect()
        })
        .collect()
}

#[tokio::test]
async fn explain_names_the_items_that_led_to_each_answer() {
    let config = format!(
        "{CONFIG}[sites.demo.endpoints.visit]\nkind = \"session\"\nmodel = \"knn\"\nfallback = \"trending\"\n"
    );
    let f = fixture("explain", &config);
    f.store
        .publish("demo", "knn", 1, &knn(), &PublishOptions::default())
        .await
        .unwrap();
    f.store
        .append_history("demo", "u1", &["c".into(), "a".into()], 10)
        .await
        .unwrap();
    // GIVEN u1 played c then a (a's neighbour is b) WHEN asked with explain=true
    let (_, body) = get(
        &f.svc,
        "/v1/recommend/for-you?s=demo&user_id=u1&explain=true",
    )
    .await;
    // THEN b is there because of a (the item-kNN neighbour list that led to it)
    assert_eq!(ids(&body), vec!["b"]);
    assert_eq!(because(&body), vec![vec!["a"]]);
    // AND similar and session answers name their seed items
    let (_, body) = get(&f.svc, "/v1/similar/more?s=demo&item_id=a&explain=true").await;
    assert_eq!(because(&body), vec![vec!["a"]]);
    let (_, body) = get(&f.svc, "/v1/session/visit?s=demo&items=a,c&explain=true").await;
    assert_eq!(because(&body), vec![vec!["a"]]);
    // AND a fallback answer is explained by "trending"
    let (_, body) = get(
        &f.svc,
        "/v1/recommend/for-you?s=demo&user_id=new&explain=true",
    )
    .await;
    assert_eq!(body["fallback"], true);
    assert!(
        because(&body).iter().all(|b| b == &vec!["trending"]),
        "{body}"
    );
    // AND without explain (or explain=false) there is no `because`
    for uri in [
        "/v1/recommend/for-you?s=demo&user_id=u1",
        "/v1/recommend/for-you?s=demo&user_id=u1&explain=false",
    ] {
        let (_, body) = get(&f.svc, uri).await;
        assert!(body["items"][0].get("because").is_none(), "{body}");
    }
    // AND explain must be a boolean
    let (status, body) = get(&f.svc, "/v1/recommend/for-you?s=demo&user_id=u1&explain=1").await;
    assert_eq!(status, 400);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("explain"));
}

#[tokio::test]
async fn the_diversity_rule_raises_intra_list_diversity_with_lambda() {
    // GIVEN a popularity list whose four best items are news, then sport, music and film
    let ids_cats = [
        ("n1", "news"),
        ("n2", "news"),
        ("n3", "news"),
        ("n4", "news"),
        ("s1", "sport"),
        ("m1", "music"),
        ("f1", "film"),
    ];
    let arts = ModelArtifacts {
        item_ids: ids_cats.iter().map(|(i, _)| i.to_string()).collect(),
        popular: (0..7).map(|r| (r as u32, 10.0 - r as f32)).collect(),
        metadata: json!({ "algorithm": "popular", "trained_ms": 1_000_000 }),
        ..Default::default()
    };
    let mut ild = Vec::new();
    for lambda in [0.0, 0.3, 0.9] {
        let config = format!(
            "[sites.demo.tasks.pop]\nalgorithm = \"popular\"\n[sites.demo.endpoints.home]\nkind = \"user\"\nmodel = \"pop\"\nrules = {{ availability = false, diversity = {{ lambda = {lambda} }} }}\n"
        );
        let f = fixture(&format!("div{}", (lambda * 10.0) as u32), &config);
        f.store
            .publish("demo", "pop", 1, &arts, &PublishOptions::default())
            .await
            .unwrap();
        f.svc
            .catalog()
            .upsert(
                "demo",
                ids_cats
                    .iter()
                    .map(|(id, c)| ItemMeta {
                        id: id.to_string(),
                        category: Some(c.to_string()),
                        ..Default::default()
                    })
                    .collect(),
            )
            .unwrap();
        // WHEN the top 4 is asked
        let (status, body) = get(&f.svc, "/v1/recommend/home?s=demo&user_id=u&n=4").await;
        assert_eq!(status, 200, "{body}");
        let cats: Vec<Option<&str>> = ids(&body)
            .iter()
            .map(|id| ids_cats.iter().find(|(i, _)| i == id).map(|(_, c)| *c))
            .collect();
        ild.push(nectar_model::diversity::category_diversity(&cats));
    }
    // THEN distinct categories / length rises with lambda (0: the plain ranking, all news)
    assert_eq!(ild[0], 0.25);
    assert!(ild[1] > ild[0] && ild[2] >= ild[1], "{ild:?}");
}
