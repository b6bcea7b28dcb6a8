//! The Redis model store on a real redis-server: the shared contract, concurrent reads during
//! publishes, the key layout and TTLs on superseded versions only.

use crate::common;

use nectar_platform::model_store::contract::{
    artifacts, concurrent_publish_contract, model_store_contract,
};
use nectar_platform::model_store::{ModelStore, PublishOptions, RedisModelStore};

async fn store() -> RedisModelStore {
    let (url, _) = common::services();
    RedisModelStore::connect(&url)
        .await
        .expect("redis-server from tests/services.sh")
}

async fn client() -> redis::aio::MultiplexedConnection {
    let (url, _) = common::services();
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_passes_the_contract() {
    model_store_contract(&store().await, "contract").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_readers_see_one_complete_version_while_publishing() {
    concurrent_publish_contract(&store().await, "concurrent", 10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_layout_pointer_and_ttl_on_superseded_versions_only() {
    let s = store().await;
    let site = format!("ttl{:08x}", rand::random::<u32>());
    let opts = PublishOptions {
        keep_versions: 3,
        superseded_ttl: std::time::Duration::from_secs(600),
    };
    // GIVEN two published versions
    s.publish(&site, "als", 10, &artifacts(10, 5000, 8), &opts)
        .await
        .unwrap();
    s.publish(&site, "als", 11, &artifacts(11, 3, 8), &opts)
        .await
        .unwrap();
    let mut c = client().await;
    let base = format!("nectar:{{{site}:als}}");
    // THEN the pointer is a plain number under the {site:model} tag
    let cur: String = redis::cmd("GET")
        .arg(format!("{base}:current"))
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(cur, "11");
    // item factors are chunked little-endian f32 (5000 rows → chunks of 4096 and 904)
    let chunk: Vec<u8> = redis::cmd("GET")
        .arg(format!("{base}:v10:if:1"))
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(chunk.len(), 904 * 8 * 4);
    assert_eq!(f32::from_le_bytes(chunk[4..8].try_into().unwrap()), 10.0);
    let ttl = |key: String| {
        let mut c = c.clone();
        async move {
            redis::cmd("TTL")
                .arg(key)
                .query_async::<i64>(&mut c)
                .await
                .unwrap()
        }
    };
    // the superseded version's keys (item side and per user) expire, the current ones do not
    for key in [
        format!("{base}:v10:meta"),
        format!("{base}:v10:items"),
        format!("{base}:v10:if:0"),
        format!("{base}:v10:sim:1"),
        format!("{base}:v10:users:0"),
        format!("nectar:{{{site}:u:u1}}:als:v10"),
        format!("nectar:{{{site}:u:u1}}:als:v10:top"),
    ] {
        let t = ttl(key.clone()).await;
        assert!(t > 0 && t <= 600, "{key}: ttl {t}");
    }
    for key in [
        format!("{base}:current"),
        format!("{base}:v11:meta"),
        format!("{base}:v11:if:0"),
        format!("nectar:{{{site}:u:u1}}:als:v11"),
    ] {
        assert_eq!(ttl(key.clone()).await, -1, "{key}");
    }
    // a rollback to v10 removes its TTLs and gives v11 one
    assert!(s.set_current(&site, "als", 10, &opts).await.unwrap());
    assert_eq!(ttl(format!("{base}:v10:if:1")).await, -1);
    assert_eq!(ttl(format!("nectar:{{{site}:u:u1}}:als:v10")).await, -1);
    let t = ttl(format!("{base}:v11:meta")).await;
    assert!(t > 0 && t <= 600, "v11 meta ttl {t}");
    assert!(s.set_current(&site, "als", 11, &opts).await.unwrap());
    assert_eq!(ttl(format!("{base}:v11:meta")).await, -1);

    // one user's state for the current version, in one call
    s.append_history(&site, "u1", &["x".into()], 10)
        .await
        .unwrap();
    let st = nectar_platform::model_store::user_state(&s, &site, "als", 11, "u1")
        .await
        .unwrap();
    assert_eq!(st.factors.as_ref().map(Vec::len), Some(8));
    assert_eq!(st.history, vec!["x"]);
}

/// The 3-master Redis Cluster that tests/services.sh starts.
async fn cluster_store() -> RedisModelStore {
    let url = &nectar_tests::services().redis_cluster_url;
    let s = RedisModelStore::connect(url).await.expect("redis cluster");
    assert!(s.conn().is_cluster());
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_store_passes_the_contract() {
    let s = cluster_store().await;
    model_store_contract(&s, "contract").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_cluster_readers_see_one_complete_version_while_publishing() {
    let s = cluster_store().await;
    concurrent_publish_contract(&s, "concurrent", 6).await;
}

#[tokio::test]
async fn redis_store_passes_the_bandit_contract() {
    nectar_platform::model_store::bandit_contract::bandit_store_contract(&store().await).await;
}

#[tokio::test]
async fn redis_cluster_store_passes_the_bandit_contract() {
    let s = cluster_store().await;
    nectar_platform::model_store::bandit_contract::bandit_store_contract(&s).await;
}

#[tokio::test]
async fn redis_bandit_keys_are_as_documented_with_a_ttl_on_served_answers_only() {
    use nectar_platform::model_store::{
        BanditStore, OnceMark, ServedRef, VariantCounter, VariantIncrement,
    };
    use redis::AsyncCommands;
    let s = store().await;
    let site = format!("t{:016x}", rand::random::<u64>());
    // GIVEN an answer remembered for 30 minutes, clicked once, and a variant counter
    let r = ServedRef {
        endpoint: "home".into(),
        variant: "als".into(),
        items: vec!["m1".into()],
    };
    s.remember_served(&site, &[("r-1".into(), r)], 1800)
        .await
        .unwrap();
    s.mark_once(&site, OnceMark::Clicked, &["r-1".into()], 1800)
        .await
        .unwrap();
    s.add_variant_counts(
        &site,
        &[VariantIncrement {
            endpoint: "home".into(),
            variant: "als".into(),
            counter: VariantCounter::Clicks,
            n: 2,
        }],
    )
    .await
    .unwrap();
    let mut c = client().await;
    // THEN the answer and its mark expire with the attribution window
    let ttl: i64 = c.ttl(format!("nectar:{{{site}:rec}}:r-1")).await.unwrap();
    assert!((1790..=1800).contains(&ttl), "{ttl}");
    let ttl: i64 = c
        .ttl(format!("nectar:{{{site}:rec}}:r-1:clicked"))
        .await
        .unwrap();
    assert!((1790..=1800).contains(&ttl), "{ttl}");
    // AND the variant counters are a hash without TTL
    let key = format!("nectar:{{{site}:exp:home}}");
    let n: u64 = c.hget(&key, "als:clicks").await.unwrap();
    assert_eq!(n, 2);
    let ttl: i64 = c.ttl(&key).await.unwrap();
    assert_eq!(ttl, -1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_passes_the_forget_contract() {
    nectar_platform::model_store::forget_contract::forget_contract(&store().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_store_passes_the_forget_contract() {
    // The user's keys live on one of three masters: the SCAN must reach that node.
    nectar_platform::model_store::forget_contract::forget_contract(&cluster_store().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_forget_no_redis_key_or_user_list_names_the_user() {
    use redis::AsyncCommands;
    let s = store().await;
    let site = format!("f{:08x}", rand::random::<u32>());
    let opts = PublishOptions::default();
    s.publish(&site, "als", 1, &artifacts(1, 5, 3), &opts)
        .await
        .unwrap();
    s.append_history(&site, "u1", &["a".into()], 10)
        .await
        .unwrap();
    s.forget_user(&site, "u1").await.unwrap();
    let mut c = client().await;
    let keys: Vec<String> = c.keys(format!("nectar:{{{site}*")).await.unwrap();
    for k in keys {
        assert!(!k.contains(":u:u1}"), "{k} is left");
        let t: String = redis::cmd("TYPE")
            .arg(&k)
            .query_async(&mut c)
            .await
            .unwrap();
        if t == "string" {
            let v: Vec<u8> = c.get(&k).await.unwrap();
            assert!(
                !String::from_utf8_lossy(&v).contains("\"u1\""),
                "{k} names u1"
            );
        }
    }
}
