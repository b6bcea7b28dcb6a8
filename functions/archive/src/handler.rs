//! Kinesis event → archive service → batch item failures.

use aws_lambda_events::event::kinesis::KinesisEvent;
use aws_lambda_events::event::streams::KinesisEventResponse;
use bytes::Bytes;
use lambda_runtime::LambdaEvent;
use nectar_platform::archive::{archive_batch, ArchiveRecord};
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
    let mut resp = KinesisEventResponse::default();
    if let Some(seq) = outcome.first_failed_sequence {
        resp.add_failure(seq);
    }
    Ok(resp)
}
