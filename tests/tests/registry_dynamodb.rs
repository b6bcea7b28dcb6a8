//! The DynamoDB registry on moto: the shared registry contract on a fresh table.

use crate::common;

use nectar_platform::registry::{contract::registry_contract, DynamoRegistry};

#[tokio::test]
async fn dynamodb_registry_passes_the_contract() {
    let cfg = common::aws_config().await;
    let client = aws_sdk_dynamodb::Client::new(&cfg);
    let table = format!("nectar-registry-{:08x}", rand::random::<u32>());
    DynamoRegistry::create_table(&client, &table).await.unwrap();
    registry_contract(&DynamoRegistry::new(client.clone(), &table)).await;
    client
        .delete_table()
        .table_name(&table)
        .send()
        .await
        .unwrap();
}
