//! Kinesis event → archive service → batch item failures.

use aws_lambda_events::event::kinesis::KinesisEvent;
use aws_lambda_events::event::streams::KinesisEventResponse;
use bytes::Bytes;
use lambda_runtime::LambdaEvent;
use nectar_platform::archive::{archive_batch, ArchiveRecord};
use nectar_platform::config::NectarConfig;
use nectar_platform::history::record_history;
use nectar_platform::model_store::{ModelStore, RedisModelStore};
use nectar_platform::store::ObjectStore;

/// Maps the Lambda records to archive records: the shard id comes from `eventID`
/// (`shardId-…:sequence`), the writer id of the objects.
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
            ArchiveRecord {
                shard_id: shard.to_string(),
                sequence_number: r.kinesis.sequence_number.clone(),
                data: Bytes::copy_from_slice(&r.kinesis.data.0),
            }
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
        let lines = records
            .iter()
            .filter_map(|r| std::str::from_utf8(&r.data).ok())
            .flat_map(|t| t.split('\n'))
            .map(str::trim_end)
            .filter(|l| !l.is_empty());
        if let Err(e) = record_history(models, config, lines).await {
            tracing::warn!(error = %e, "Recent histories not updated.");
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
    use nectar_platform::store::LocalStore;

    #[tokio::test]
    async fn sample_batch_is_archived_without_failures() {
        let event: KinesisEvent =
            serde_json::from_str(include_str!("../../../events/archive-kinesis-batch.json"))
                .unwrap();
        let n_records = event.records.len();
        assert!(n_records > 0);
        let dir =
            std::env::temp_dir().join(format!("nectar-archive-fixture-{}", std::process::id()));
        let store = LocalStore::new(&dir);
        let resp = handle(&store, LambdaEvent::new(event, Context::default()))
            .await
            .unwrap();
        assert!(resp.batch_item_failures.is_empty());
        let keys = store.list("events/").await.unwrap();
        assert!(!keys.is_empty());
        assert!(
            keys.iter()
                .all(|k| k.contains("/shardId-") && k.ends_with(".jsonl.gz")),
            "{keys:?}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
