//! The train service on the real backends: events on moto's S3, models in redis-server, runs in
//! moto's DynamoDB. The same flow as the local unit test: publish, gate refusal, failure.

use crate::common;

use nectar_platform::model_store::RedisModelStore;
use nectar_platform::object_store::S3Store;
use nectar_platform::registry::DynamoRegistry;
use nectar_platform::train::contract::train_flow_contract;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn train_flow_on_s3_redis_and_dynamodb() {
    let (redis_url, _) = common::services();
    let s3 = common::s3_client().await;
    let bucket = common::new_bucket(&s3, "nectar-train").await;
    let cfg = common::aws_config().await;
    let ddb = aws_sdk_dynamodb::Client::new(&cfg);
    let table = format!("nectar-registry-{:08x}", rand::random::<u32>());
    DynamoRegistry::create_table(&ddb, &table).await.unwrap();
    train_flow_contract(
        &S3Store::new(s3, bucket),
        &RedisModelStore::connect(&redis_url).await.unwrap(),
        &DynamoRegistry::new(ddb.clone(), &table),
    )
    .await;
    ddb.delete_table().table_name(&table).send().await.unwrap();
}
