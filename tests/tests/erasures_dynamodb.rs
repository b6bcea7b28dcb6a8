//! The DynamoDB erasure log on moto: the shared erasure-log contract on a fresh table.

use crate::common;

use nectar_platform::privacy::dynamo::DynamoErasureLog;
use nectar_platform::privacy::erasure_log_contract;

#[tokio::test]
async fn dynamodb_erasure_log_passes_the_contract() {
    let cfg = common::aws_config().await;
    let client = aws_sdk_dynamodb::Client::new(&cfg);
    let table = format!("nectar-erasures-{:08x}", rand::random::<u32>());
    DynamoErasureLog::create_table(&client, &table)
        .await
        .unwrap();
    erasure_log_contract(&DynamoErasureLog::new(client.clone(), &table)).await;
    client
        .delete_table()
        .table_name(&table)
        .send()
        .await
        .unwrap();
}
