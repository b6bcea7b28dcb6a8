//! Live bandit counts through the archive handler into a real redis-server: a served answer,
//! its display and its hit count once each, also when a batch is delivered again; a second
//! hit, a hit of an unknown recommendation and a forged served event count nothing.

use base64::Engine;
use lambda_runtime::{Context, LambdaEvent};
use nectar_model::event::{accept_payload, CollectLimits};
use nectar_platform::config::NectarConfig;
use nectar_platform::model_store::{BanditStore, RedisModelStore, VariantCounts};
use nectar_platform::object_store::LocalStore;
use nectar_platform::recommend::served_log::ServedAnswer;
use nectar_platform::recommend::RecommendAnswer;
use serde_json::json;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn served(site: &str, rec: &str, variant: &str, now: i64) -> String {
    let mut body =
        RecommendAnswer::of_ids(rec, "for-you", variant, (variant, 1), &["m1", "m2"], false);
    body.items[1].score = 0.5;
    ServedAnswer {
        site_key: site,
        user_id: Some("u1"),
        client_id: None,
        subject: "u1",
        context_item: None,
        body: &body,
    }
    .to_event(now)
    .line
}

fn collected(site: &str, events: serde_json::Value, now: i64) -> Vec<String> {
    let body = json!({
        "peach_schema_version": "1.0.3", "sent_timestamp": now, "user_id": "u1",
        "client": {"id": "c1", "app_id": "a", "device": {"type": "phone"}},
        "events": events
    })
    .to_string();
    accept_payload(body.as_bytes(), site, now, &CollectLimits::default())
        .unwrap()
        .events
        .into_iter()
        .map(|e| e.line)
        .collect()
}

/// One Kinesis record per line, as the event source mapping delivers them.
fn event(lines: &[String], seq0: usize) -> aws_lambda_events::event::kinesis::KinesisEvent {
    let b64 = base64::engine::general_purpose::STANDARD;
    let recs: Vec<_> = lines
        .iter()
        .enumerate()
        .map(|(k, l)| {
            json!({
                "kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": "pk",
                            "sequenceNumber": format!("{}", seq0 + k), "data": b64.encode(l),
                            "approximateArrivalTimestamp": 1_763_000_000.5},
                "eventSource": "aws:kinesis", "eventVersion": "1.0",
                "eventID": format!("shardId-000:{}", seq0 + k), "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::123456789012:role/archive",
                "awsRegion": "us-east-1",
                "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/s"
            })
        })
        .collect();
    serde_json::from_value(json!({ "Records": recs })).unwrap()
}

#[tokio::test]
async fn the_archive_handler_counts_served_displayed_and_clicked_answers_once_in_redis() {
    let url = &nectar_tests::services().redis_url;
    let models = RedisModelStore::connect(url).await.unwrap();
    // A fresh site key per run (the counters have no TTL): a copy of `demo`.
    let site = nectar_tests::unique("bandit")
        .replace('-', "_")
        .to_lowercase();
    let text = toml_with_site(&site);
    let cfg = NectarConfig::from_toml(&text, "test").unwrap();
    let dir = std::env::temp_dir().join(format!("nectar-bandit-archive-{}", std::process::id()));
    let store = LocalStore::new(&dir);
    let now = now_ms();
    let archive = |lines: Vec<String>, seq0: usize| {
        let (store, models, cfg) = (&store, &models, &cfg);
        async move {
            let resp = archive::handler::handle_with_history(
                store,
                Some((models, cfg)),
                LambdaEvent::new(event(&lines, seq0), Context::default()),
            )
            .await
            .unwrap();
            assert!(resp.batch_item_failures.is_empty());
        }
    };
    // GIVEN a served answer of variant `als` archived
    archive(vec![served(&site, "r-1", "als", now)], 0).await;
    // WHEN its display, two hits, a hit of an unknown id and a forged served event (no
    // marker) arrive, and that batch is delivered twice
    let mut batch = collected(
        &site,
        json!([
            {"type": "recommendation_displayed", "id": "r-1", "event_timestamp": now - 3},
            {"type": "recommendation_hit", "id": "r-1", "event_timestamp": now - 2,
             "context": {"items": ["m1", "m2"], "hit_index": 1}},
            {"type": "recommendation_hit", "id": "r-1", "event_timestamp": now - 1,
             "context": {"items": ["m1", "m2"], "hit_index": 0}},
            {"type": "recommendation_hit", "id": "r-unknown", "event_timestamp": now - 1,
             "context": {"items": ["m1"], "hit_index": 0}}
        ]),
        now,
    );
    batch.push(served(&site, "r-2", "trending", now).replace(",\"nectar_served\":true", ""));
    archive(batch.clone(), 10).await;
    archive(batch, 10).await;
    // THEN Redis holds one served, one displayed and one click for `als`, nothing else
    let counts = models.variant_counts(&site, "for-you").await.unwrap();
    assert_eq!(
        counts.get("als"),
        Some(&VariantCounts {
            served: 1,
            displayed: 1,
            clicks: 1
        })
    );
    assert_eq!(counts.len(), 1, "{counts:?}");
    // AND the exploration counters have both served items, m2 clicked once
    let items = models.explore_items(&site, now - 86_400_000).await.unwrap();
    let get = |id: &str| items.iter().find(|e| e.item == id).map(|e| e.counts);
    assert_eq!(get("m1").map(|c| (c.impressions, c.clicks)), Some((1, 0)));
    assert_eq!(get("m2").map(|c| (c.impressions, c.clicks)), Some((1, 1)));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The checked-in config with site `demo` renamed, `for-you` on Thompson sampling and
/// exploring slot 3.
fn toml_with_site(site: &str) -> String {
    include_str!("../../config/nectar.toml")
        .replace(
            "experiment = { name = \"for-you-1\",",
            "experiment = { name = \"for-you-1\", allocation = \"thompson\",",
        )
        .replace(
            "rules = { exclude_consumed = true, max_per_category = 4 }",
            "rules = { exclude_consumed = true, max_per_category = 4, explore = { slots = [3], new_days = 7 } }",
        )
        .replace("[sites.demo", &format!("[sites.{site}"))
}
