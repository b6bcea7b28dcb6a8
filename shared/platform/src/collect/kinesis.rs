//! The Kinesis adapter of the event sink: packs flat events into as few records as fit,
//! spreads them over shards, and retries failed records with backoff and jitter until a
//! deadline. `Ok` only when every record is acknowledged.

use std::future::Future;
use std::time::Duration;

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use nectar_model::event::{Accepted, EncodedEvent};
use tokio::time::Instant;

use crate::collect::sink::{EventSink, SinkError};
use crate::observe::names::{self, dim};

/// Kinesis limit on one record (data plus partition key).
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;
/// Kinesis limit on records per PutRecords call.
pub const MAX_RECORDS_PER_CALL: usize = 500;
/// Kinesis limit on the bytes of one PutRecords call.
pub const MAX_BYTES_PER_CALL: usize = 5 * 1024 * 1024;

/// One Kinesis record: newline-delimited flat events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackedRecord {
    /// Partition key: the first event's id, a uniform hash, so records spread over shards.
    pub partition_key: String,
    /// NDJSON data.
    pub data: Vec<u8>,
    /// Events in the record.
    pub events: usize,
}

/// Packs events into as few records as fit under `max_record_bytes` (data + key).
pub fn pack_records(events: &[EncodedEvent], max_record_bytes: usize) -> Vec<PackedRecord> {
    let mut out: Vec<PackedRecord> = Vec::new();
    for ev in events {
        let need = ev.line.len() + 1;
        let fits = out
            .last()
            .is_some_and(|r| r.data.len() + need + r.partition_key.len() <= max_record_bytes);
        if !fits {
            out.push(PackedRecord {
                partition_key: ev.event_id.clone(),
                data: Vec::new(),
                events: 0,
            });
        }
        let rec = out.last_mut().expect("a record was just pushed");
        rec.data.extend_from_slice(ev.line.as_bytes());
        rec.data.push(b'\n');
        rec.events += 1;
    }
    out
}

/// Splits record indices into PutRecords calls within the count and size limits.
pub fn plan_calls(records: &[&PackedRecord]) -> Vec<std::ops::Range<usize>> {
    let mut calls = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, r) in records.iter().enumerate() {
        let size = r.data.len() + r.partition_key.len();
        if i > start && (i - start == MAX_RECORDS_PER_CALL || bytes + size > MAX_BYTES_PER_CALL) {
            calls.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < records.len() {
        calls.push(start..records.len());
    }
    calls
}

/// A PutRecords call's failure as a whole.
#[derive(Debug, thiserror::Error)]
#[error("PutRecords failed ({})", if *.retryable { "retryable" } else { "not retryable" })]
pub struct PutError {
    /// Whether trying again may succeed.
    pub retryable: bool,
    /// The cause.
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

/// The one Kinesis call the sink needs; a seam for failure-injection tests around the real
/// client. Returns, per entry in order, `None` if acknowledged or the error code.
pub trait PutRecordsApi: Send + Sync {
    /// Sends one PutRecords call.
    fn put_records(
        &self,
        entries: Vec<PutRecordsRequestEntry>,
    ) -> impl Future<Output = Result<Vec<Option<String>>, PutError>> + Send;
}

/// The real Kinesis client and stream.
#[derive(Debug, Clone)]
pub struct SdkKinesis {
    client: aws_sdk_kinesis::Client,
    stream_name: String,
}

impl SdkKinesis {
    /// Wraps a client for one stream.
    pub fn new(client: aws_sdk_kinesis::Client, stream_name: impl Into<String>) -> Self {
        Self {
            client,
            stream_name: stream_name.into(),
        }
    }
}

impl PutRecordsApi for SdkKinesis {
    async fn put_records(
        &self,
        entries: Vec<PutRecordsRequestEntry>,
    ) -> Result<Vec<Option<String>>, PutError> {
        let n = entries.len();
        match self
            .client
            .put_records()
            .stream_name(&self.stream_name)
            .set_records(Some(entries))
            .send()
            .await
        {
            Ok(out) => {
                let codes: Vec<Option<String>> = out
                    .records()
                    .iter()
                    .map(|r| r.error_code().map(str::to_string))
                    .collect();
                if codes.len() != n {
                    return Err(PutError {
                        retryable: true,
                        source: format!(
                            "PutRecords answered {} results for {n} records",
                            codes.len()
                        )
                        .into(),
                    });
                }
                Ok(codes)
            }
            Err(e) => {
                let fatal = e.as_service_error().is_some_and(|s| {
                    s.is_resource_not_found_exception()
                        || s.is_invalid_argument_exception()
                        || s.is_access_denied_exception()
                });
                Err(PutError {
                    retryable: !fatal,
                    source: Box::new(e),
                })
            }
        }
    }
}

/// Retry policy: exponential backoff with full jitter, bounded by a deadline.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// First backoff.
    pub base: Duration,
    /// Largest backoff.
    pub cap: Duration,
    /// Total time allowed, from the first attempt.
    pub deadline: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(50),
            cap: Duration::from_millis(1000),
            deadline: Duration::from_millis(3000),
        }
    }
}

impl RetryPolicy {
    /// The sleep before retry number `attempt` (1-based): uniform in [0, min(cap, base·2^attempt)).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.cap);
        ceiling.mul_f64(rand::random::<f64>())
    }
}

/// The event sink over Kinesis.
#[derive(Debug, Clone)]
pub struct KinesisSink<A = SdkKinesis> {
    api: A,
    policy: RetryPolicy,
}

impl<A: PutRecordsApi> KinesisSink<A> {
    /// A sink over `api` with a retry policy.
    pub fn new(api: A, policy: RetryPolicy) -> Self {
        Self { api, policy }
    }

    /// The Kinesis API the sink sends through.
    pub fn api(&self) -> &A {
        &self.api
    }
}

impl<A: PutRecordsApi> EventSink for KinesisSink<A> {
    #[tracing::instrument(skip_all, fields(site = %batch.site_key, events = batch.events.len()))]
    async fn put(&self, batch: &Accepted) -> Result<(), SinkError> {
        let started = Instant::now();
        let records = pack_records(&batch.events, MAX_RECORD_BYTES);
        let total = records.len();
        let mut pending: Vec<&PackedRecord> = records.iter().collect();
        let mut attempt = 0u32;
        loop {
            let mut failed: Vec<&PackedRecord> = Vec::new();
            let mut last_error: Option<Box<dyn std::error::Error + Send + Sync>> = None;
            for call in plan_calls(&pending) {
                let chunk = &pending[call];
                let entries = chunk
                    .iter()
                    .map(|r| {
                        PutRecordsRequestEntry::builder()
                            .partition_key(&r.partition_key)
                            .data(Blob::new(r.data.clone()))
                            .build()
                            .expect("partition key and data are set")
                    })
                    .collect();
                match self.api.put_records(entries).await {
                    Ok(codes) => {
                        for (r, code) in chunk.iter().zip(codes) {
                            if let Some(code) = code {
                                last_error = Some(format!("record failed with {code}").into());
                                failed.push(r);
                            }
                        }
                    }
                    Err(e) if e.retryable => {
                        failed.extend_from_slice(chunk);
                        last_error = Some(Box::new(e));
                    }
                    Err(e) => {
                        tracing::error!(error = %e, source = ?e.source, "Kinesis refused PutRecords; events not stored.");
                        return Err(SinkError::Fatal(Box::new(e)));
                    }
                }
            }
            if failed.is_empty() {
                if attempt > 0 {
                    tracing::info!(
                        attempts = attempt + 1,
                        records = total,
                        "All records acknowledged after retries."
                    );
                }
                return Ok(());
            }
            attempt += 1;
            let pause = self.policy.backoff(attempt);
            if started.elapsed() + pause > self.policy.deadline {
                tracing::warn!(
                    failed = failed.len(),
                    records = total,
                    attempts = attempt,
                    "Records unacknowledged at the deadline."
                );
                return Err(SinkError::Incomplete {
                    failed: failed.len(),
                    total,
                    last: last_error,
                });
            }
            tokio::time::sleep(pause).await;
            metrics::counter!(names::COLLECT_PUT_RETRIES, dim::SITE => batch.site_key.clone())
                .increment(failed.len() as u64);
            pending = failed;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn ev(i: usize, size: usize) -> EncodedEvent {
        EncodedEvent {
            mapped: None,
            event_id: format!("{i:032x}"),
            event_timestamp: 0,
            line: "x".repeat(size),
        }
    }

    #[test]
    fn packing_uses_as_few_records_as_fit() {
        // GIVEN 1000 events of 250 bytes WHEN packed THEN one record holds them all
        let events: Vec<_> = (0..1000).map(|i| ev(i, 250)).collect();
        let recs = pack_records(&events, MAX_RECORD_BYTES);
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].events, 1000);
        assert_eq!(recs[0].data.iter().filter(|&&b| b == b'\n').count(), 1000);
        // GIVEN events that overflow a record THEN records stay under the limit and keep all events
        let events: Vec<_> = (0..100).map(|i| ev(i, 30_000)).collect();
        let recs = pack_records(&events, MAX_RECORD_BYTES);
        assert!(recs.len() > 2);
        assert!(recs
            .iter()
            .all(|r| r.data.len() + r.partition_key.len() <= MAX_RECORD_BYTES));
        assert_eq!(recs.iter().map(|r| r.events).sum::<usize>(), 100);
        // partition keys differ, so records spread over shards
        let keys: std::collections::HashSet<_> = recs.iter().map(|r| &r.partition_key).collect();
        assert_eq!(keys.len(), recs.len());
    }

    #[test]
    fn calls_respect_count_and_size_limits() {
        let small: Vec<PackedRecord> = (0..1201)
            .map(|i| PackedRecord {
                partition_key: format!("{i}"),
                data: vec![1; 10],
                events: 1,
            })
            .collect();
        let refs: Vec<&PackedRecord> = small.iter().collect();
        let calls = plan_calls(&refs);
        assert_eq!(
            calls.iter().map(|c| c.len()).collect::<Vec<_>>(),
            vec![500, 500, 201]
        );
        let big: Vec<PackedRecord> = (0..12)
            .map(|i| PackedRecord {
                partition_key: format!("{i}"),
                data: vec![1; 1_000_000],
                events: 1,
            })
            .collect();
        let refs: Vec<&PackedRecord> = big.iter().collect();
        let calls = plan_calls(&refs);
        for c in &calls {
            let bytes: usize = refs[c.clone()]
                .iter()
                .map(|r| r.data.len() + r.partition_key.len())
                .sum();
            assert!(bytes <= MAX_BYTES_PER_CALL);
        }
        assert_eq!(calls.iter().map(|c| c.len()).sum::<usize>(), 12);
    }

    /// Fails the first `fail_first` attempts of every record, then acknowledges.
    struct Flaky {
        fail_attempts: usize,
        seen: Mutex<std::collections::HashMap<String, usize>>,
        acked: Mutex<Vec<String>>,
    }

    impl PutRecordsApi for Flaky {
        async fn put_records(
            &self,
            entries: Vec<PutRecordsRequestEntry>,
        ) -> Result<Vec<Option<String>>, PutError> {
            let mut seen = self.seen.lock().unwrap();
            Ok(entries
                .iter()
                .map(|e| {
                    let n = seen
                        .entry(e.partition_key().unwrap_or_default().to_string())
                        .or_default();
                    *n += 1;
                    if *n <= self.fail_attempts {
                        Some("ProvisionedThroughputExceededException".to_string())
                    } else {
                        self.acked
                            .lock()
                            .unwrap()
                            .push(e.partition_key().unwrap_or_default().to_string());
                        None
                    }
                })
                .collect())
        }
    }

    fn batch(n: usize, size: usize) -> Accepted {
        Accepted {
            site_key: "demo".into(),
            events: (0..n).map(|i| ev(i, size)).collect(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn failed_records_are_retried_until_acknowledged() {
        let api = Flaky {
            fail_attempts: 2,
            seen: Default::default(),
            acked: Default::default(),
        };
        let sink = KinesisSink::new(api, RetryPolicy::default());
        sink.put(&batch(200, 20_000)).await.unwrap();
        let acked = sink.api.acked.lock().unwrap().len();
        assert_eq!(
            acked,
            pack_records(&batch(200, 20_000).events, MAX_RECORD_BYTES).len()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn records_still_failing_at_the_deadline_are_reported() {
        let api = Flaky {
            fail_attempts: usize::MAX,
            seen: Default::default(),
            acked: Default::default(),
        };
        let sink = KinesisSink::new(api, RetryPolicy::default());
        let err = sink.put(&batch(10, 10)).await.unwrap_err();
        assert!(
            matches!(
                err,
                SinkError::Incomplete {
                    failed: 1,
                    total: 1,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn backoff_is_jittered_and_capped() {
        let p = RetryPolicy::default();
        for attempt in 1..20 {
            let b = p.backoff(attempt);
            assert!(b <= p.cap);
        }
    }
}
