//! Kinesis event → archive service → batch item failures.

use aws_lambda_events::event::kinesis::KinesisEvent;
use aws_lambda_events::event::streams::KinesisEventResponse;
use bytes::Bytes;
use lambda_runtime::LambdaEvent;
use nectar_platform::activity::{record_catalog, record_history};
use nectar_platform::archive::{archive_batch, ArchiveRecord};
use nectar_platform::catalog::{Catalog, CatalogWriter};
use nectar_platform::config::NectarConfig;
use nectar_platform::model_store::{ModelStore, RedisModelStore};
use nectar_platform::object_store::ObjectStore;

/// Maps the Lambda records to archive records: the shard id comes from `eventID`
/// (`shardId-…:sequence`), the writer id of the objects; log subscription deliveries (the
/// served log) are unpacked into their lines.
pub fn records(event: &KinesisEvent) -> Vec<ArchiveRecord> {
    event
        .records
        .iter()
        .map(|r| {
            let shard = r
                .event_id
                .as_deref()
                .and_then(|id| id.split_once(':').map(|(s, _)| s))
                .unwrap_or("shard-unknown");
            ArchiveRecord::from_stream(
                shard.to_string(),
                r.kinesis.sequence_number.clone(),
                Bytes::copy_from_slice(&r.kinesis.data.0),
            )
        })
        .collect()
}

/// Archives one batch; reports the first record neither written nor parked, so Lambda retries
/// from it (the event source mapping has `ReportBatchItemFailures`).
pub async fn handle<O: ObjectStore>(
    store: &O,
    event: LambdaEvent<KinesisEvent>,
) -> Result<KinesisEventResponse, lambda_runtime::Error> {
    handle_with_history::<O, RedisModelStore>(store, None, event).await
}

/// [`handle`], then the users' recent histories in the model store (Redis) when `history` is
/// given. History is best effort: a failure is logged and never fails the batch (the event log
/// is the truth).
pub async fn handle_with_history<O: ObjectStore, M: ModelStore>(
    store: &O,
    history: Option<(&M, &NectarConfig)>,
    event: LambdaEvent<KinesisEvent>,
) -> Result<KinesisEventResponse, lambda_runtime::Error> {
    handle_with_catalog::<O, M, Catalog>(store, history, None, event).await
}

/// The flat event lines of the records.
fn lines(records: &[ArchiveRecord]) -> impl Iterator<Item = &str> {
    records
        .iter()
        .filter_map(|r| std::str::from_utf8(&r.data).ok())
        .flat_map(|t| t.split('\n'))
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
}

/// [`handle_with_history`], then, when `catalog` is given (`NECTAR_CATALOG_TABLE`), the
/// items' fields from the events' `metadata` merged into the catalog
/// ([`nectar_platform::activity::catalog_updates`]). Best effort as well: a catalog failure is
/// logged and never fails the batch.
pub async fn handle_with_catalog<O: ObjectStore, M: ModelStore, C: CatalogWriter>(
    store: &O,
    history: Option<(&M, &NectarConfig)>,
    catalog: Option<(&C, &NectarConfig)>,
    event: LambdaEvent<KinesisEvent>,
) -> Result<KinesisEventResponse, lambda_runtime::Error> {
    let records = records(&event.payload);
    let outcome = archive_batch(store, &records, nectar_platform::now_ms()).await;
    tracing::info!(
        records = records.len(),
        events = outcome.events_written,
        duplicates = outcome.duplicates,
        objects = outcome.objects,
        parked = outcome.parked,
        "Archived batch."
    );
    if let Some((models, config)) = history {
        if let Err(e) = record_history(models, config, lines(&records)).await {
            tracing::warn!(error = %e, "Recent histories not updated.");
        }
    }
    if let Some((catalog, config)) = catalog {
        if let Err(e) = record_catalog(catalog, config, lines(&records)).await {
            tracing::warn!(error = %e, "Catalog not updated from event metadata.");
        }
    }
    let mut resp = KinesisEventResponse::default();
    if let Some(seq) = outcome.first_failed_sequence {
        resp.add_failure(seq);
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    //! `events/archive-kinesis-batch.json` through the real handler into a local store.
    use super::*;
    use lambda_runtime::{Context, LambdaEvent};
    use nectar_platform::event_log::jsonl::gunzip_text;
    use nectar_platform::event_log::layout::{event_object_key, Hour, PARKED_PREFIX};
    use nectar_platform::object_store::LocalStore;

    #[tokio::test]
    async fn sample_batch_is_archived_as_documented() {
        let event: KinesisEvent =
            serde_json::from_str(include_str!("../../../events/archive-kinesis-batch.json"))
                .unwrap();
        // GIVEN the fixture: two records of one shard carrying three events each, then a
        // truncated record
        let recs = records(&event);
        let mut sent: Vec<serde_json::Value> = lines(&recs[..2])
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!((recs.len(), sent.len()), (3, 6));
        let seqs: Vec<String> = recs.iter().map(|r| r.sequence_number.clone()).collect();
        let dir =
            std::env::temp_dir().join(format!("nectar-archive-fixture-{}", std::process::id()));
        let store = LocalStore::new(&dir);
        // WHEN the batch is handled
        let resp = handle(&store, LambdaEvent::new(event, Context::default()))
            .await
            .unwrap();
        // THEN nothing is retried: the good events are in the log, the bad record parked
        assert!(resp.batch_item_failures.is_empty());
        // AND every object holds events of one site and hour, under the documented key of
        // that partition, named by the shard and one of the batch's sequence numbers
        let keys = store.list("events/").await.unwrap();
        assert!(!keys.is_empty());
        let mut archived = Vec::new();
        for key in &keys {
            let text = gunzip_text(&store.get(key).await.unwrap().unwrap());
            assert!(text.is_clean(), "{key}");
            let events: Vec<serde_json::Value> = text
                .text
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            for e in &events {
                let site = e["site_key"].as_str().unwrap();
                let hour = Hour::of(e["event_timestamp"].as_i64().unwrap());
                assert!(
                    seqs.iter()
                        .any(|s| *key == event_object_key(site, hour, "shardId-000000000000", s)),
                    "{key} does not name the partition of {e}"
                );
            }
            archived.extend(events);
        }
        // AND the objects' lines are exactly the events sent, each once
        let by_id = |v: &serde_json::Value| v["event_id"].as_str().unwrap().to_string();
        archived.sort_by_key(by_id);
        sent.sort_by_key(by_id);
        assert_eq!(archived, sent);
        // AND the truncated record is parked with its line and the reason, named by its
        // sequence number
        let parked = store.list(PARKED_PREFIX).await.unwrap();
        assert_eq!(parked.len(), 1, "{parked:?}");
        assert!(parked[0].contains(&seqs[2]), "{parked:?}");
        let note: serde_json::Value =
            serde_json::from_slice(&store.get(&parked[0]).await.unwrap().unwrap()).unwrap();
        assert_eq!(
            note["lines"],
            serde_json::json!([r#"{"event_id": "truncated"#])
        );
        assert_eq!(note["sequence_number"], seqs[2].as_str());
        assert!(
            note["reason"].as_str().is_some_and(|r| !r.is_empty()),
            "{note}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn served_log_subscription_records_are_archived() {
        // GIVEN the fixture: what the served log's CloudWatch Logs subscription puts to the
        // stream: a gzip'd CONTROL_MESSAGE, then a gzip'd DATA_MESSAGE whose two log events are
        // served flat events (one of a logged-in user, one of an anonymous client)
        let event: KinesisEvent = serde_json::from_str(include_str!(
            "../../../events/archive-logs-subscription.json"
        ))
        .unwrap();
        let recs = records(&event);
        // THEN the records read as the delivered lines: none for the control message
        assert!(recs[0].data.is_empty());
        let sent: Vec<serde_json::Value> = lines(&recs)
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(sent.len(), 2);
        let dir = std::env::temp_dir().join(format!("nectar-archive-cwl-{}", std::process::id()));
        let store = LocalStore::new(&dir);
        // WHEN the batch is handled
        let resp = handle(&store, LambdaEvent::new(event, Context::default()))
            .await
            .unwrap();
        // THEN both served events are in the event log, under their partition, verbatim, and
        // nothing is parked or retried
        assert!(resp.batch_item_failures.is_empty());
        assert!(store.list(PARKED_PREFIX).await.unwrap().is_empty());
        let keys = store.list("events/").await.unwrap();
        let mut archived: Vec<serde_json::Value> = Vec::new();
        for key in &keys {
            assert!(
                key.starts_with("events/site=demo/date=2026-01-15/hour=10/shardId-000000000001-"),
                "{key}"
            );
            let text = gunzip_text(&store.get(key).await.unwrap().unwrap());
            archived.extend(
                text.text
                    .lines()
                    .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()),
            );
        }
        assert_eq!(archived, sent);
        assert!(archived
            .iter()
            .all(|e| e["type"] == "recommendation_served" && e["nectar_served"] == true));
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A catalog that always fails, to show the batch does not.
    struct BrokenCatalog;

    impl CatalogWriter for BrokenCatalog {
        type Error = std::io::Error;

        async fn merge_items(
            &self,
            _: &str,
            _: &[nectar_platform::catalog::ItemMeta],
        ) -> Result<(), std::io::Error> {
            Err(std::io::Error::other("catalog down"))
        }
    }

    fn batch_with_metadata() -> KinesisEvent {
        let mut event: KinesisEvent =
            serde_json::from_str(include_str!("../../../events/archive-kinesis-batch.json"))
                .unwrap();
        let line = serde_json::json!({
            "event_id": "0123456789abcdef0123456789abcdef", "site_key": "demo",
            "type": "media_play", "id": "m-cat", "event_timestamp": 1_763_000_000_000_i64,
            "collect_timestamp": 1_763_000_000_000_i64, "sent_timestamp": 1_763_000_000_000_i64,
            "peach_schema_version": "1.0.3", "client": {"id": "c1", "app_id": "a"},
            "metadata": {"title": "Evening news", "genres": ["news", "politics"]}
        })
        .to_string();
        event.records[0].kinesis.data.0 = line.into_bytes();
        event
    }

    #[tokio::test]
    async fn metadata_reaches_the_catalog_and_a_catalog_failure_does_not_fail_the_batch() {
        let config = NectarConfig::embedded_default();
        let dir =
            std::env::temp_dir().join(format!("nectar-archive-catalog-{}", std::process::id()));
        let store = LocalStore::new(&dir);
        // GIVEN a batch whose first record is a media_play with metadata
        // WHEN it is archived with a catalog
        let catalog = Catalog::in_memory();
        let resp = handle_with_catalog::<_, RedisModelStore, _>(
            &store,
            None,
            Some((&catalog, &config)),
            LambdaEvent::new(batch_with_metadata(), Context::default()),
        )
        .await
        .unwrap();
        // THEN the batch succeeds and the item has the title and the first genre
        assert!(resp.batch_item_failures.is_empty());
        let m = catalog.get("demo", "m-cat").unwrap();
        assert_eq!(
            (m.title.as_deref(), m.category.as_deref()),
            (Some("Evening news"), Some("news"))
        );
        // WHEN the catalog fails
        let resp = handle_with_catalog::<_, RedisModelStore, _>(
            &store,
            None,
            Some((&BrokenCatalog, &config)),
            LambdaEvent::new(batch_with_metadata(), Context::default()),
        )
        .await
        .unwrap();
        // THEN the batch still succeeds
        assert!(resp.batch_item_failures.is_empty());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
