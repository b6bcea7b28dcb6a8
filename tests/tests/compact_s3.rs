//! Compaction on moto's S3: the shared compaction contract (conservation of distinct event ids,
//! exactly-once parts, late events recompacted, reads equal to the raw read) on a fresh bucket.

use crate::common;

use nectar_platform::event_log::compact::contract::compaction_contract;
use nectar_platform::object_store::S3Store;
use nectar_platform::privacy::dynamo::DynamoErasureLog;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_compaction_passes_the_contract() {
    let client = common::s3_client().await;
    let bucket = common::new_bucket(&client, "nectar-compact").await;
    compaction_contract(&S3Store::new(client, bucket)).await;
}

/// The compaction measurement on moto's S3 (`NECTAR_MEASURE_DAYS`, default 30, of
/// `NECTAR_MEASURE_EVENTS`, default 5000):
/// `cargo test -p nectar-tests --test integration compact_s3 -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check"]
async fn measure_compaction_on_s3() {
    let env = |k: &str, d: i64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let client = common::s3_client().await;
    let bucket = common::new_bucket(&client, "nectar-measure").await;
    let store = S3Store::new(client, bucket);
    let report = nectar_platform::event_log::compact::contract::measure(
        &store,
        env("NECTAR_MEASURE_DAYS", 30),
        env("NECTAR_MEASURE_EVENTS", 5000),
    )
    .await;
    println!("moto S3: {report}");
}

/// As the train Lambda compacts: the event log in S3, the erasures in DynamoDB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_compaction_drops_subjects_erased_in_dynamodb_and_scrubs_days_compacted_before() {
    let client = common::s3_client().await;
    let bucket = common::new_bucket(&client, "nectar-erase").await;
    let dynamo = aws_sdk_dynamodb::Client::new(&common::aws_config().await);
    let table = format!("nectar-erasures-{:08x}", rand::random::<u32>());
    DynamoErasureLog::create_table(&dynamo, &table)
        .await
        .unwrap();
    nectar_platform::event_log::compact_erase::contract::erasure_compaction_contract(
        &S3Store::new(client, bucket),
        &DynamoErasureLog::new(dynamo, table),
    )
    .await;
}
