//! `nectar publish`'s service on the real backends: artifacts read from a prefix of moto's S3,
//! events on S3, models in redis-server, runs in moto's DynamoDB. The same flow as the local
//! unit test: a trained candidate exported and published back with the same metrics, then a
//! worse version refused by the gate.

use crate::common;

use nectar_platform::model_store::RedisModelStore;
use nectar_platform::object_store::S3Store;
use nectar_platform::registry::DynamoRegistry;
use nectar_platform::train::publish_contract::publish_flow_contract;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_flow_with_artifacts_on_s3() {
    let (redis_url, _) = common::services();
    let s3 = common::s3_client().await;
    let bucket = common::new_bucket(&s3, "nectar-publish").await;
    let lab = common::new_bucket(&s3, "nectar-lab").await;
    let cfg = common::aws_config().await;
    let ddb = aws_sdk_dynamodb::Client::new(&cfg);
    let table = format!("nectar-registry-{:08x}", rand::random::<u32>());
    DynamoRegistry::create_table(&ddb, &table).await.unwrap();
    publish_flow_contract(
        &S3Store::new(s3.clone(), bucket),
        &RedisModelStore::connect(&redis_url).await.unwrap(),
        &DynamoRegistry::new(ddb.clone(), &table),
        &S3Store::new(s3, lab),
        "runs/2026-11-29/",
    )
    .await;
    ddb.delete_table().table_name(&table).send().await.unwrap();
}
