//! A Kinesis reader: the local twin of the Lambda event source mapping (`nectar dev
//! --stream`), and the way integration tests read what collect wrote.

use std::time::Duration;

use aws_sdk_kinesis::types::ShardIteratorType;
use bytes::Bytes;

use crate::archive::{archive_batch, ArchiveRecord};
use crate::object_store::ObjectStore;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The ids of the stream's shards.
pub async fn shard_ids(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
) -> Result<Vec<String>, BoxError> {
    let out = client.list_shards().stream_name(stream).send().await?;
    Ok(out
        .shards()
        .iter()
        .map(|s| s.shard_id().to_string())
        .collect())
}

/// Reads every record of one shard from `TRIM_HORIZON` until caught up.
pub async fn read_shard(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
    shard: &str,
) -> Result<Vec<ArchiveRecord>, BoxError> {
    let mut iterator = client
        .get_shard_iterator()
        .stream_name(stream)
        .shard_id(shard)
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await?
        .shard_iterator
        .ok_or("no shard iterator")?;
    let mut out = Vec::new();
    loop {
        let page = client
            .get_records()
            .shard_iterator(&iterator)
            .limit(10_000)
            .send()
            .await?;
        let n = page.records().len();
        out.extend(page.records().iter().map(|r| {
            ArchiveRecord::from_stream(
                shard.to_string(),
                r.sequence_number().to_string(),
                Bytes::copy_from_slice(r.data().as_ref()),
            )
        }));
        match page.next_shard_iterator {
            Some(next) if n > 0 && page.millis_behind_latest.unwrap_or(0) >= 0 => iterator = next,
            _ => break,
        }
    }
    Ok(out)
}

/// Polls every shard from the records that arrived since `since_ms` and archives them into
/// `store`, retrying a batch from the first record the archive could not handle. Runs until
/// the process ends. (Starting from a timestamp rather than `LATEST` closes the race between
/// start-up and the first events.)
pub fn spawn_archiver<O: ObjectStore + Clone + 'static>(
    client: aws_sdk_kinesis::Client,
    stream: String,
    store: O,
    since_ms: i64,
) {
    tokio::spawn(async move {
        let shards = loop {
            match shard_ids(&client, &stream).await {
                Ok(s) => break s,
                Err(e) => {
                    tracing::warn!(%stream, error = %e, "Cannot list shards; retrying.");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        };
        for shard in shards {
            let (client, stream, store) = (client.clone(), stream.clone(), store.clone());
            tokio::spawn(async move {
                if let Err(e) = poll_shard(&client, &stream, &shard, &store, since_ms).await {
                    tracing::error!(%shard, error = %e, "Shard archiver stopped; restart nectar dev.");
                }
            });
        }
    });
}

async fn poll_shard<O: ObjectStore>(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
    shard: &str,
    store: &O,
    since_ms: i64,
) -> Result<(), BoxError> {
    let mut iterator = client
        .get_shard_iterator()
        .stream_name(stream)
        .shard_id(shard)
        .shard_iterator_type(ShardIteratorType::AtTimestamp)
        .timestamp(aws_smithy_types::DateTime::from_millis(since_ms))
        .send()
        .await?
        .shard_iterator;
    while let Some(it) = iterator {
        let page = client.get_records().shard_iterator(&it).send().await?;
        let records: Vec<ArchiveRecord> = page
            .records()
            .iter()
            .map(|r| {
                ArchiveRecord::from_stream(
                    shard.to_string(),
                    r.sequence_number().to_string(),
                    Bytes::copy_from_slice(r.data().as_ref()),
                )
            })
            .collect();
        iterator = page.next_shard_iterator;
        if !records.is_empty() {
            let outcome = archive_batch(store, &records, crate::now_ms()).await;
            if let Some(seq) = outcome.first_failed_sequence {
                // Re-read from the first unhandled record, as Lambda would.
                iterator = client
                    .get_shard_iterator()
                    .stream_name(stream)
                    .shard_id(shard)
                    .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
                    .starting_sequence_number(seq)
                    .send()
                    .await?
                    .shard_iterator;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}
