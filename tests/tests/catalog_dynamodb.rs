//! The DynamoDB catalog on moto, filled the two new ways: `nectar import --items` (the import
//! function the CLI runs) and the archive handler merging collected events' metadata.

use base64::Engine;
use nectar_platform::catalog::csv::{import_items_file, ItemsTarget};
use nectar_platform::catalog::dynamo::DynamoCatalog;
use nectar_platform::catalog::ItemMeta;
use nectar_platform::config::NectarConfig;
use nectar_platform::dynamo::create_table;
use nectar_platform::model_store::RedisModelStore;
use nectar_platform::object_store::LocalStore;
use serde_json::json;

async fn fresh_catalog() -> (aws_sdk_dynamodb::Client, String, DynamoCatalog) {
    let cfg = nectar_tests::aws_config().await;
    let client = aws_sdk_dynamodb::Client::new(&cfg);
    let table = nectar_tests::unique("nectar-catalog");
    create_table(&client, &table, "site", Some("item_id"))
        .await
        .unwrap();
    let cat = DynamoCatalog::new(client.clone(), &table);
    (client, table, cat)
}

async fn sorted(cat: &DynamoCatalog, site: &str) -> Vec<ItemMeta> {
    let mut items = cat.load_site(site).await.unwrap();
    items.sort_by(|a, b| a.id.cmp(&b.id));
    items
}

/// One Kinesis record holding these flat event lines, as Lambda delivers it.
fn kinesis_event(lines: &[String]) -> aws_lambda_events::event::kinesis::KinesisEvent {
    let data = base64::engine::general_purpose::STANDARD.encode(lines.join("\n"));
    serde_json::from_value(json!({"Records": [{
        "kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": "pk",
                    "sequenceNumber": "1", "data": data,
                    "approximateArrivalTimestamp": 1_763_000_000.5},
        "eventSource": "aws:kinesis", "eventVersion": "1.0",
        "eventID": "shardId-000000000000:1", "eventName": "aws:kinesis:record",
        "invokeIdentityArn": "arn:aws:iam::123456789012:role/archive",
        "awsRegion": "us-east-1",
        "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/s"
    }]}))
    .unwrap()
}

fn event_line(event_type: &str, id: &str, metadata: serde_json::Value) -> String {
    let t = 1_763_000_000_000_i64;
    json!({
        "event_id": nectar_model::event::event_id("demo", "c1", event_type, id, t),
        "site_key": "demo", "type": event_type, "id": id, "event_timestamp": t,
        "collect_timestamp": t, "sent_timestamp": t, "peach_schema_version": "1.0.3",
        "client": {"id": "c1", "app_id": "a"}, "metadata": metadata
    })
    .to_string()
}

#[tokio::test]
async fn items_csv_import_then_event_metadata_merge_into_dynamodb() {
    let (client, table, cat) = fresh_catalog().await;
    let dir = std::env::temp_dir().join(nectar_tests::unique("nectar-catalog-import"));
    std::fs::create_dir_all(&dir).unwrap();

    // GIVEN an items CSV in refeval's MovieLens format, 60 rows (more than one batch of 25),
    // one title quoted with a comma
    let mut csv = String::from("item_id,title,year,genres\n");
    csv.push_str("1,\"American President, The\",1995,Comedy|Drama\n");
    for i in 2..=60 {
        csv.push_str(&format!("{i},Film {i},1995,Action|Thriller\n"));
    }
    let path = dir.join("items.csv");
    std::fs::write(&path, csv).unwrap();
    // WHEN it is imported into the DynamoDB catalog, as `nectar import --items
    // --catalog-table` does
    let n = import_items_file(&path, "demo", &ItemsTarget::Dynamo(cat.clone()))
        .await
        .unwrap();
    // THEN every item reads back with its title and first genre
    assert_eq!(n, 60);
    let items = sorted(&cat, "demo").await;
    assert_eq!(items.len(), 60);
    assert_eq!(
        items[0],
        ItemMeta {
            id: "1".into(),
            category: Some("Comedy".into()),
            title: Some("American President, The".into()),
            ..Default::default()
        }
    );
    assert!(cat.load_site("other").await.unwrap().is_empty());

    // GIVEN a batch of events: item 1 gets a new title and a window, a new item m-9 a
    // category, and a recommendation hit carries metadata that must not count
    let lines = vec![
        event_line(
            "media_play",
            "1",
            json!({"title": "The American President", "available_from": 1000, "available_until": 2000}),
        ),
        event_line("article_start", "m-9", json!({"genres": ["news"]})),
        event_line(
            "recommendation_hit",
            "reco-1",
            json!({"title": "For you", "category": "rail"}),
        ),
    ];
    // WHEN the archive handler runs with the catalog table
    let config = NectarConfig::embedded_default();
    let store = LocalStore::new(dir.join("log"));
    let resp = archive::handler::handle_with_catalog::<_, RedisModelStore, _>(
        &store,
        None,
        Some((&cat, &config)),
        lambda_runtime::LambdaEvent::new(kinesis_event(&lines), lambda_runtime::Context::default()),
    )
    .await
    .unwrap();
    // THEN the batch succeeds, item 1 keeps its imported category while taking the new
    // title and window, m-9 exists, and nothing names the recommendation
    assert!(resp.batch_item_failures.is_empty());
    let items = sorted(&cat, "demo").await;
    assert_eq!(items.len(), 61);
    assert_eq!(
        items[0],
        ItemMeta {
            id: "1".into(),
            category: Some("Comedy".into()),
            available_from: Some(1000),
            available_until: Some(2000),
            title: Some("The American President".into()),
        }
    );
    let m9 = items.iter().find(|i| i.id == "m-9").unwrap();
    assert_eq!(m9.category.as_deref(), Some("news"));
    assert!(items.iter().all(|i| i.id != "reco-1"));

    client
        .delete_table()
        .table_name(&table)
        .send()
        .await
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_missing_catalog_table_does_not_fail_the_archive_batch() {
    // GIVEN a catalog whose table does not exist
    let cfg = nectar_tests::aws_config().await;
    let cat = DynamoCatalog::new(
        aws_sdk_dynamodb::Client::new(&cfg),
        nectar_tests::unique("nectar-no-table"),
    );
    let dir = std::env::temp_dir().join(nectar_tests::unique("nectar-catalog-missing"));
    let store = LocalStore::new(&dir);
    let config = NectarConfig::embedded_default();
    let lines = vec![event_line("media_play", "m1", json!({"category": "news"}))];
    // WHEN a batch with metadata is archived
    let resp = archive::handler::handle_with_catalog::<_, RedisModelStore, _>(
        &store,
        None,
        Some((&cat, &config)),
        lambda_runtime::LambdaEvent::new(kinesis_event(&lines), lambda_runtime::Context::default()),
    )
    .await
    .unwrap();
    // THEN the batch succeeds and the event is in the log
    assert!(resp.batch_item_failures.is_empty());
    use nectar_platform::object_store::ObjectStore;
    assert_eq!(store.list("events/").await.unwrap().len(), 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn warm_instances_reload_catalog_and_keys_from_dynamodb() {
    use nectar_platform::auth::dynamo::DynamoKeys;
    use nectar_platform::auth::AdminKeys;
    use nectar_platform::catalog::Catalog;
    use nectar_platform::dynamo::spawn_refresh;
    // GIVEN a catalog table with one item and a keys table with one key, loaded as at a
    // cold start
    let (client, _table, cat) = fresh_catalog().await;
    let keys_table = nectar_tests::unique("nectar-keys");
    create_table(&client, &keys_table, "key_hash", None)
        .await
        .unwrap();
    let keys_db = DynamoKeys::new(client.clone(), &keys_table);
    let key = keys_db.create("demo").await.unwrap();
    let item = |id: &str, cat: &str| ItemMeta {
        id: id.into(),
        category: Some(cat.into()),
        ..ItemMeta::default()
    };
    cat.put_items("demo", &[item("a", "news")]).await.unwrap();
    let catalog = Catalog::in_memory();
    catalog
        .upsert("demo", cat.load_site("demo").await.unwrap())
        .unwrap();
    let keys = keys_db.load().await.unwrap();
    assert!(keys.verify(&key, "demo"));
    let held_by_service: AdminKeys = keys.clone();
    // WHEN another instance upserts an item, the key is revoked, and the reload runs
    let task = spawn_refresh(
        vec!["demo".into()],
        (catalog.clone(), Some(cat.clone())),
        (keys.clone(), Some(keys_db.clone())),
        std::time::Duration::from_millis(50),
    );
    cat.put_items("demo", &[item("b", "sport")]).await.unwrap();
    client
        .delete_item()
        .table_name(&keys_table)
        .key(
            "key_hash",
            aws_sdk_dynamodb::types::AttributeValue::S(hex::encode(
                nectar_platform::auth::key_hash(&key),
            )),
        )
        .send()
        .await
        .unwrap();
    let mut ok = false;
    for _ in 0..100 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        if catalog.get("demo", "b").is_some() && !held_by_service.verify(&key, "demo") {
            ok = true;
            break;
        }
    }
    task.abort();
    // THEN the warm instance sees the new item, and every holder of the keys refuses the
    // revoked one
    assert!(ok, "reload did not reach the in-memory catalog and keys");
    assert_eq!(
        catalog.get("demo", "b").unwrap().category.as_deref(),
        Some("sport")
    );
    assert!(keys.is_empty());
}
