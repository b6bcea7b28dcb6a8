use super::*;
use crate::event_log::jsonl::gzip_lines;
use crate::event_log::layout::{event_object_key, Hour};
use crate::model_store::LocalModelStore;
use crate::object_store::LocalStore;
use crate::privacy::LocalErasureLog;

const NOW: i64 = 1_780_000_000_000;

fn served(user: &str, ts: i64) -> String {
    format!(
        r#"{{"event_id":"e{ts}{user}","site_key":"demo","type":"recommendation_served","id":"r{ts}","event_timestamp":{ts},"user_id":"{user}","client":{{"id":"dev","app_id":"t"}},"context":{{"items":["i1"]}}}}"#
    )
}

struct Fixture {
    dir: std::path::PathBuf,
    store: LocalModelStore,
    log: LocalErasureLog,
    events: LocalStore,
    config: NectarConfig,
    keys: AdminKeys,
    key: String,
    other_key: String,
}

impl Fixture {
    async fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("nectar-priv-rt-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let events = LocalStore::new(&dir);
        // GIVEN u1's served answers yesterday and 10 days ago, and u2's today
        for (user, ts) in [
            ("u1", NOW - DAY_MS),
            ("u1", NOW - 10 * DAY_MS),
            ("u2", NOW - 1),
        ] {
            let line = served(user, ts);
            let key = event_object_key("demo", Hour::of(ts), "w1", &format!("{ts}"));
            events
                .put(&key, Bytes::from(gzip_lines([line.as_str()])))
                .await
                .unwrap();
        }
        let store = LocalModelStore::new(&dir);
        store
            .append_history("demo", "u1", &["a".into(), "b".into()], 10)
            .await
            .unwrap();
        let mut keys = AdminKeys::none();
        let (key, other_key) = (crate::auth::new_key(), crate::auth::new_key());
        keys.add(&key, "demo");
        keys.add(&other_key, "other");
        Self {
            log: LocalErasureLog::new(&dir),
            store,
            events,
            config: NectarConfig::embedded_default(),
            keys,
            key,
            other_key,
            dir,
        }
    }

    async fn call(&self, method: Method, uri: &str, key: Option<&str>) -> (u16, Value) {
        let mut b = http::Request::builder().method(method).uri(uri);
        if let Some(k) = key {
            b = b.header("authorization", format!("Bearer {k}"));
        }
        let p = Privacy {
            store: &self.store,
            log: &self.log,
            events: &self.events,
            config: &self.config,
            keys: &self.keys,
            raw_log_expiry_days: Some(30),
        };
        let r = handle(&p, &b.body(Bytes::new()).unwrap(), NOW).await;
        let body = serde_json::from_slice(r.body()).unwrap_or(Value::Null);
        (r.status().as_u16(), body)
    }
}

#[tokio::test]
async fn export_then_erase_then_export_shows_the_erasure_and_no_history() {
    let f = Fixture::new().await;
    let key = Some(f.key.as_str());
    // WHEN u1 is exported
    let (s, b) = f.call(Method::GET, "/v1/users/u1/export?s=demo", key).await;
    // THEN history, the served answer of the last 7 days only, and no erasure
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["user_id"], "u1");
    assert_eq!(b["site"], "demo");
    assert_eq!(b["history"], json!(["b", "a"]));
    let served = b["served"].as_array().unwrap();
    assert_eq!(served.len(), 1, "{b}");
    assert_eq!(served[0]["event_timestamp"], NOW - DAY_MS);
    assert_eq!(b["erasure"], json!({"requested_ms": null, "state": "none"}));
    // WHEN u1 is erased THEN 202 with what went and what follows
    let (s, b) = f.call(Method::DELETE, "/v1/users/u1?s=demo", key).await;
    assert_eq!(s, 202, "{b}");
    assert_eq!(b["erased"]["history_items"], 2);
    assert_eq!(
        b["pending"],
        json!(["training", "compaction", "raw log expires in 30 days"])
    );
    let (_, b) = f.call(Method::GET, "/v1/users/u1/export?s=demo", key).await;
    assert_eq!(b["history"], json!([]));
    assert_eq!(
        b["erasure"],
        json!({"requested_ms": NOW, "state": "requested"})
    );
    // AND a client is erased by its own route, recorded as a client subject
    let (s, _) = f
        .call(Method::DELETE, "/v1/clients/dev%201?s=demo", key)
        .await;
    assert_eq!(s, 202);
    let all = f.log.erasures("demo").await.unwrap();
    assert_eq!(all[1].subject, "client:dev 1");
    std::fs::remove_dir_all(&f.dir).unwrap();
}

#[tokio::test]
async fn keys_sites_methods_and_ids_are_checked_before_anything_is_erased() {
    let f = Fixture::new().await;
    let key = Some(f.key.as_str());
    let code = |b: &Value| b["error"]["code"].as_str().unwrap_or("").to_string();
    assert_eq!(
        f.call(Method::DELETE, "/v1/users/u1?s=demo", None).await.0,
        401
    );
    let (s, b) = f
        .call(Method::DELETE, "/v1/users/u1?s=demo", Some(&f.other_key))
        .await;
    assert_eq!((s, code(&b).as_str()), (403, "forbidden"));
    let (s, b) = f.call(Method::DELETE, "/v1/users/u1", key).await;
    assert_eq!(s, 400);
    assert!(b["error"]["message"].as_str().unwrap().contains('s'), "{b}");
    let (s, b) = f.call(Method::DELETE, "/v1/users/%FF?s=demo", key).await;
    assert_eq!(s, 400);
    assert!(
        b["error"]["message"].as_str().unwrap().contains("user_id"),
        "{b}"
    );
    assert_eq!(f.call(Method::GET, "/v1/users/u1?s=demo", key).await.0, 405);
    assert_eq!(
        f.call(Method::POST, "/v1/users/u1/export?s=demo", key)
            .await
            .0,
        405
    );
    assert_eq!(
        f.call(Method::GET, "/v1/users/u1/other?s=demo", key)
            .await
            .0,
        404
    );
    // THEN none of these erased anything
    assert!(f.log.erasures("demo").await.unwrap().is_empty());
    let (_, b) = f.call(Method::GET, "/v1/users/u1/export?s=demo", key).await;
    assert_eq!(b["history"], json!(["b", "a"]));
    std::fs::remove_dir_all(&f.dir).unwrap();
}
