//! collect → Kinesis (moto) → archive → S3 (moto): nothing accepted is lost, nothing is
//! stored twice after dedupe, also when PutRecords records fail, when an archive batch is
//! retried or bisected, and when an app re-sends a payload.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use base64::Engine;
use bytes::Bytes;
use nectar_model::event::event_id;
use nectar_platform::archive::kinesis_reader::{read_shard, shard_ids};
use nectar_platform::collect::kinesis::{
    KinesisSink, PutError, PutRecordsApi, RetryPolicy, SdkKinesis,
};
use nectar_platform::collect::CollectService;
use nectar_platform::config::NectarConfig;
use nectar_platform::event_log::jsonl::gunzip_text;
use nectar_platform::object_store::{ObjectStore, S3Store};
use nectar_tests::{aws_config, unique};
use serde_json::json;

struct Env {
    kinesis: aws_sdk_kinesis::Client,
    store: S3Store,
    stream: String,
}

async fn setup(shards: i32) -> Env {
    let aws = aws_config().await;
    let kinesis = aws_sdk_kinesis::Client::new(&aws);
    let s3 = aws_sdk_s3::Client::new(&aws);
    let stream = unique("events");
    let bucket = unique("nectar-log");
    kinesis
        .create_stream()
        .stream_name(&stream)
        .shard_count(shards)
        .send()
        .await
        .unwrap();
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    Env {
        kinesis,
        store: S3Store::new(s3, bucket),
        stream,
    }
}

fn now_ms() -> i64 {
    nectar_platform::now_ms()
}

/// A payload of `n` events for one client; returns the body and the event ids it must produce.
fn payload(site: &str, client: &str, n: usize, base_ts: i64) -> (String, Vec<String>) {
    let types = [
        "media_play",
        "media_end",
        "page_view",
        "article_start",
        "recommendation_hit",
    ];
    let events: Vec<_> = (0..n)
        .map(|i| {
            json!({
                "type": types[i % types.len()],
                "id": format!("item-{}", i % 97),
                // spread over three hours so several partitions are written
                "event_timestamp": base_ts - (i as i64 % 3) * 3_600_000 - i as i64,
                "context": {"component": {"type": "player", "name": "main"}, "items": ["a", "b"], "hit_index": 1},
                "props": {"playback_position_s": i, "time_spent_s": 12}
            })
        })
        .collect();
    let ids = events
        .iter()
        .map(|e| {
            event_id(
                site,
                client,
                e["type"].as_str().unwrap(),
                e["id"].as_str().unwrap(),
                e["event_timestamp"].as_i64().unwrap(),
            )
        })
        .collect();
    let body = json!({
        "peach_schema_version": "1.0.3",
        "sent_timestamp": now_ms(),
        "user_id": format!("user-{client}"),
        "client": {"id": client, "app_id": "ch.example.app", "type": "mobileapp", "device": {"type": "phone"}},
        "events": events
    });
    (body.to_string(), ids)
}

async fn post<A: PutRecordsApi>(
    svc: &CollectService<KinesisSink<A>>,
    body: &str,
) -> (u16, serde_json::Value) {
    let req = http::Request::builder()
        .method("POST")
        .uri("/v1/collect?s=demo")
        .header("content-type", "application/json")
        .body(Bytes::from(body.to_string()))
        .unwrap();
    let resp = svc.handle(&req, now_ms()).await;
    (
        resp.status().as_u16(),
        serde_json::from_slice(resp.body()).unwrap(),
    )
}

/// The Kinesis event Lambda would deliver for these records.
fn lambda_event(
    stream: &str,
    records: &[nectar_platform::archive::ArchiveRecord],
) -> aws_lambda_events::event::kinesis::KinesisEvent {
    let b64 = base64::engine::general_purpose::STANDARD;
    let recs: Vec<_> = records
        .iter()
        .map(|r| {
            json!({
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": "pk",
                    "sequenceNumber": r.sequence_number,
                    "data": b64.encode(&r.data),
                    "approximateArrivalTimestamp": 1_763_000_000.5
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": format!("{}:{}", r.shard_id, r.sequence_number),
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::123456789012:role/archive",
                "awsRegion": "us-east-1",
                "eventSourceARN": format!("arn:aws:kinesis:us-east-1:123456789012:stream/{stream}")
            })
        })
        .collect();
    serde_json::from_value(json!({ "Records": recs })).unwrap()
}

/// Runs the archive handler over the whole stream in batches of `batch` records, as the
/// event source mapping would; returns how many batch item failures were reported.
async fn archive_stream(env: &Env, batch: usize) -> usize {
    let mut failures = 0;
    for shard in shard_ids(&env.kinesis, &env.stream).await.unwrap() {
        let records = read_shard(&env.kinesis, &env.stream, &shard).await.unwrap();
        for chunk in records.chunks(batch) {
            let event = lambda_runtime::LambdaEvent::new(
                lambda_event(&env.stream, chunk),
                lambda_runtime::Context::default(),
            );
            let resp = archive::handler::handle(&env.store, event).await.unwrap();
            failures += resp.batch_item_failures.len();
        }
    }
    failures
}

/// Every event id in the S3 event log, with repeats.
async fn ids_in_log(store: &S3Store) -> Vec<String> {
    let mut ids = Vec::new();
    for key in store.list("events/").await.unwrap() {
        assert!(key.starts_with("events/site=demo/date="), "{key}");
        assert!(key.ends_with(".jsonl.gz"), "{key}");
        let got = gunzip_text(&store.get(&key).await.unwrap().unwrap());
        let (clean, text) = (got.is_clean(), got.text);
        assert!(clean, "{key} is not a clean gzip file");
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            ids.push(v["event_id"].as_str().unwrap().to_string());
        }
    }
    ids
}

fn config() -> Arc<NectarConfig> {
    Arc::new(NectarConfig::embedded_default())
}

#[tokio::test]
async fn every_accepted_event_reaches_s3_exactly_once_after_dedupe() {
    let env = setup(2).await;
    let sink = KinesisSink::new(
        SdkKinesis::new(env.kinesis.clone(), &env.stream),
        RetryPolicy::default(),
    );
    let svc = CollectService::new(config(), sink);
    let mut expected = BTreeSet::new();
    for (client, n) in [("c1", 1000), ("c2", 1), ("c3", 250), ("c4", 37)] {
        let (body, ids) = payload("demo", client, n, now_ms());
        assert_eq!(post(&svc, &body).await, (202, json!({"accepted": n})));
        expected.extend(ids);
    }
    // GIVEN a payload re-sent by an SDK that did not see the answer
    let (body, ids) = payload("demo", "c5", 20, now_ms() - 1000);
    assert_eq!(post(&svc, &body).await.0, 202);
    assert_eq!(post(&svc, &body).await.0, 202);
    expected.extend(ids);
    // a rejected payload adds nothing
    let (bad, _) = payload("demo", "c6", 3, now_ms() + 48 * 3_600_000);
    assert_eq!(post(&svc, &bad).await.0, 400);

    assert_eq!(archive_stream(&env, 100).await, 0);
    let ids = ids_in_log(&env.store).await;
    let distinct: BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(distinct, expected);
    // the re-sent copies arrived in the same archive batch, which dedupes within itself
    assert_eq!(ids.len(), expected.len());

    // WHEN the archive batches are delivered again (Lambda retry) and bisected
    assert_eq!(archive_stream(&env, 100).await, 0);
    let after_retry = ids_in_log(&env.store).await;
    assert_eq!(
        after_retry.len(),
        ids.len(),
        "a retried batch overwrites its own objects"
    );
    // bisected down to single records, the re-sent copies land in other objects: the log is
    // at-least-once, and readers dedupe by event_id
    assert_eq!(archive_stream(&env, 1).await, 0);
    let all = ids_in_log(&env.store).await;
    assert!(all.len() > expected.len());
    let distinct: BTreeSet<String> = all.into_iter().collect();
    assert_eq!(distinct, expected);
}

/// Wraps the real client: the first `fail_attempts` sends of a record are withheld from Kinesis
/// and answered as throttled, like a hot shard does.
struct Throttling {
    inner: SdkKinesis,
    fail_attempts: usize,
    every: usize,
    attempts: Mutex<HashMap<String, usize>>,
    withheld: AtomicUsize,
}

impl PutRecordsApi for Throttling {
    async fn put_records(
        &self,
        entries: Vec<PutRecordsRequestEntry>,
    ) -> Result<Vec<Option<String>>, PutError> {
        let mut send = Vec::new();
        let mut plan = Vec::new();
        {
            let mut attempts = self.attempts.lock().unwrap();
            for (i, e) in entries.into_iter().enumerate() {
                let key = e.partition_key().unwrap_or_default().to_string();
                let n = attempts.entry(key).or_default();
                *n += 1;
                if i % self.every == 0 && *n <= self.fail_attempts {
                    self.withheld.fetch_add(1, Ordering::Relaxed);
                    plan.push(false);
                } else {
                    plan.push(true);
                    send.push(e);
                }
            }
        }
        let mut sent = if send.is_empty() {
            Vec::new()
        } else {
            self.inner.put_records(send).await?
        }
        .into_iter();
        Ok(plan
            .into_iter()
            .map(|ok| {
                if ok {
                    sent.next().expect("one result per sent record")
                } else {
                    Some("ProvisionedThroughputExceededException".into())
                }
            })
            .collect())
    }
}

#[tokio::test]
async fn throttled_records_are_retried_and_nothing_is_lost() {
    let env = setup(1).await;
    let api = Throttling {
        inner: SdkKinesis::new(env.kinesis.clone(), &env.stream),
        fail_attempts: 2,
        every: 2,
        attempts: Mutex::default(),
        withheld: AtomicUsize::new(0),
    };
    let svc = CollectService::new(config(), KinesisSink::new(api, RetryPolicy::default()));
    let mut expected = BTreeSet::new();
    // ~1 MiB payloads of 12 KB events, so each spans one or two records; the first record of
    // every call is throttled twice
    for client in ["t1", "t2", "t3", "t4"] {
        let big = "x".repeat(12_000);
        let (body, ids) = payload("demo", client, 80, now_ms());
        let mut v: serde_json::Value = serde_json::from_str(&body).unwrap();
        for e in v["events"].as_array_mut().unwrap() {
            e["metadata"] = json!({ "blob": big });
        }
        assert_eq!(post(&svc, &v.to_string()).await.0, 202);
        expected.extend(ids);
    }
    assert_eq!(archive_stream(&env, 50).await, 0);
    let distinct: BTreeSet<String> = ids_in_log(&env.store).await.into_iter().collect();
    assert_eq!(distinct, expected);
    // and the injection really withheld records from Kinesis
    assert!(svc.sink().api().withheld.load(Ordering::Relaxed) >= 8);
}

#[tokio::test]
async fn records_never_acknowledged_get_a_retryable_503() {
    let env = setup(1).await;
    let api = Throttling {
        inner: SdkKinesis::new(env.kinesis.clone(), &env.stream),
        fail_attempts: usize::MAX,
        every: 1,
        attempts: Mutex::default(),
        withheld: AtomicUsize::new(0),
    };
    let policy = RetryPolicy {
        deadline: Duration::from_millis(400),
        ..RetryPolicy::default()
    };
    let svc = CollectService::new(config(), KinesisSink::new(api, policy));
    let (body, _) = payload("demo", "z1", 10, now_ms());
    let (status, v) = post(&svc, &body).await;
    assert_eq!(status, 503);
    assert_eq!(v["error"]["code"], "unavailable");
    assert_eq!(v["error"]["retryable"], true);
    // a stream that does not exist is a server problem, not the client's: 503 too
    let sink = KinesisSink::new(
        SdkKinesis::new(env.kinesis.clone(), "no-such-stream"),
        policy,
    );
    let svc = CollectService::new(config(), sink);
    assert_eq!(post(&svc, &body).await.0, 503);
}

#[tokio::test]
async fn undecodable_records_are_parked_not_dropped() {
    let env = setup(1).await;
    env.kinesis
        .put_record()
        .stream_name(&env.stream)
        .partition_key("x")
        .data(aws_sdk_kinesis::primitives::Blob::new(
            b"garbage that is not json\n".to_vec(),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(archive_stream(&env, 10).await, 0);
    let parked = env.store.list("parked/").await.unwrap();
    assert_eq!(parked.len(), 1);
    let body: serde_json::Value =
        serde_json::from_slice(&env.store.get(&parked[0]).await.unwrap().unwrap()).unwrap();
    assert_eq!(body["lines"][0], "garbage that is not json");
    assert!(body["reason"]
        .as_str()
        .unwrap()
        .contains("not a flat event"));
}

#[tokio::test]
async fn dev_twin_consumer_archives_what_collect_sends() {
    // GIVEN `nectar dev --stream`'s wiring: collect → Kinesis, and the embedded consumer
    // archiving the stream into a local event log
    let env = setup(2).await;
    let dir = std::env::temp_dir().join(unique("nectar-dev-twin"));
    let local = nectar_platform::object_store::LocalStore::new(&dir);
    nectar_platform::archive::kinesis_reader::spawn_archiver(
        env.kinesis.clone(),
        env.stream.clone(),
        local.clone(),
        now_ms() - 5_000,
    );
    let sink = KinesisSink::new(
        SdkKinesis::new(env.kinesis.clone(), &env.stream),
        RetryPolicy::default(),
    );
    let svc = CollectService::new(config(), sink);
    let (body, ids) = payload("demo", "dev1", 200, now_ms());
    assert_eq!(post(&svc, &body).await.0, 202);
    let expected: BTreeSet<String> = ids.into_iter().collect();
    // THEN every event shows up in the local log within a few polls
    let mut found = BTreeSet::new();
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        found.clear();
        for key in local.list("events/").await.unwrap() {
            let text = gunzip_text(&local.get(&key).await.unwrap().unwrap()).text;
            for line in text.lines() {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                found.insert(v["event_id"].as_str().unwrap().to_string());
            }
        }
        if found == expected {
            break;
        }
    }
    assert_eq!(found, expected);
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn served_log_subscription_deliveries_are_archived() {
    // GIVEN the stream holding what the served log's CloudWatch Logs subscription puts there
    // (the fixture's gzip'd control message and data message, byte for byte) beside a plain
    // record as collect writes it
    let env = setup(1).await;
    let fixture: serde_json::Value =
        serde_json::from_str(include_str!("../../events/archive-logs-subscription.json")).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut served_ids = Vec::new();
    for rec in fixture["Records"].as_array().unwrap() {
        let data = b64
            .decode(rec["kinesis"]["data"].as_str().unwrap())
            .unwrap();
        served_ids.extend(
            nectar_platform::archive::logs_subscription::unpack(Bytes::from(data.clone()))
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .map(|l| {
                    serde_json::from_slice::<serde_json::Value>(l).unwrap()["event_id"]
                        .as_str()
                        .unwrap()
                        .to_string()
                }),
        );
        env.kinesis
            .put_record()
            .stream_name(&env.stream)
            .partition_key("served")
            .data(aws_sdk_kinesis::primitives::Blob::new(data))
            .send()
            .await
            .unwrap();
    }
    assert_eq!(served_ids.len(), 2);
    let sink = KinesisSink::new(
        SdkKinesis::new(env.kinesis.clone(), &env.stream),
        RetryPolicy::default(),
    );
    let svc = CollectService::new(config(), sink);
    let (body, collected) = payload("demo", "c1", 3, now_ms());
    assert_eq!(post(&svc, &body).await.0, 202);
    // WHEN the stream is archived as the event source mapping would
    assert_eq!(archive_stream(&env, 10).await, 0);
    // THEN the served events and the collected ones are each in the log once, nothing parked
    let mut want: Vec<String> = served_ids.into_iter().chain(collected).collect();
    want.sort();
    let mut got = ids_in_log(&env.store).await;
    got.sort();
    assert_eq!(got, want);
    assert!(env.store.list("parked/").await.unwrap().is_empty());
}
