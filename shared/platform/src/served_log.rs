//! The served-recommendation log: every answer of the recommend service becomes a
//! `recommendation_served` event in the event log, written off the request path.
//!
//! Answers are queued in memory and written in batches (one sink call per site per flush):
//! - [`FlushMode::Background`] (`nectar dev`, long-lived servers): a task flushes every
//!   `every`, or at once when the queue reaches [`FLUSH_AT`] events.
//! - [`FlushMode::Deferred`] (Lambda): the caller flushes after the response is sent; the
//!   recommend function does it from an internal extension, so the execution environment is
//!   not frozen with events still queued.
//!
//! A failed flush is logged and its events go back to the queue (bounded by [`MAX_QUEUED`];
//! beyond it the oldest are dropped, and the drop is logged with the count).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use nectar_model::event::{Accepted, EncodedEvent};

use crate::sink::EventSink;

/// Queue length that triggers a background flush before the timer.
pub const FLUSH_AT: usize = 1_000;
/// Events kept queued at most (when the sink keeps failing).
pub const MAX_QUEUED: usize = 50_000;
/// Events per sink call.
const PUT_EVENTS: usize = 500;

/// When queued answers are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushMode {
    /// A background task flushes every `every` (and when the queue is long).
    Background {
        /// Flush period.
        every: Duration,
    },
    /// Only [`ServedLog::flush`] writes (the Lambda's extension calls it after each
    /// invocation).
    Deferred,
}

/// What a flush did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlushReport {
    /// Events written.
    pub written: usize,
    /// Events put back in the queue after a failed write.
    pub requeued: usize,
    /// Events dropped because the queue was full.
    pub dropped: usize,
}

/// The queue of served events in front of an event sink.
#[derive(Debug)]
pub struct ServedLog<S> {
    sink: Arc<S>,
    queue: Mutex<Vec<(String, EncodedEvent)>>,
    wake: tokio::sync::Notify,
    /// One flush at a time (keeps batches whole and ordered).
    flushing: tokio::sync::Mutex<()>,
    mode: FlushMode,
}

impl<S: EventSink + 'static> ServedLog<S> {
    /// A log over `sink`; in background mode this spawns the flusher on the current Tokio
    /// runtime (it stops when the log is dropped).
    pub fn new(sink: Arc<S>, mode: FlushMode) -> Arc<Self> {
        let log = Arc::new(Self {
            sink,
            queue: Mutex::new(Vec::new()),
            wake: tokio::sync::Notify::new(),
            flushing: tokio::sync::Mutex::new(()),
            mode,
        });
        if let FlushMode::Background { every } = mode {
            log.spawn_flusher(every);
        }
        log
    }

    /// Starts the background flusher (every `every`, or at once when [`FLUSH_AT`] events are
    /// queued); it stops when the log is dropped. Background mode starts it in [`Self::new`];
    /// a deferred log whose caller cannot flush (no Extensions API) starts it here.
    pub fn spawn_flusher(self: &Arc<Self>, every: Duration) {
        tokio::spawn(flusher(Arc::downgrade(self), every));
    }

    /// The flush mode.
    pub fn mode(&self) -> FlushMode {
        self.mode
    }

    /// Queues a validated payload's events; never blocks on I/O.
    pub fn push(&self, batch: Accepted) {
        let len = {
            let mut q = self.queue.lock().expect("served queue lock");
            let site = batch.site_key;
            q.extend(batch.events.into_iter().map(|e| (site.clone(), e)));
            q.len()
        };
        if len >= FLUSH_AT && matches!(self.mode, FlushMode::Background { .. }) {
            self.wake.notify_one();
        }
    }

    /// Events waiting to be written.
    pub fn pending(&self) -> usize {
        self.queue.lock().expect("served queue lock").len()
    }

    /// Writes everything queued (per site, in batches); failures are logged and requeued.
    pub async fn flush(&self) -> FlushReport {
        let _one = self.flushing.lock().await;
        let taken = std::mem::take(&mut *self.queue.lock().expect("served queue lock"));
        let mut report = FlushReport::default();
        if taken.is_empty() {
            return report;
        }
        let mut by_site: BTreeMap<String, Vec<EncodedEvent>> = BTreeMap::new();
        for (site, e) in taken {
            by_site.entry(site).or_default().push(e);
        }
        let mut failed: Vec<(String, EncodedEvent)> = Vec::new();
        for (site, events) in by_site {
            let mut rest = events;
            while !rest.is_empty() {
                let tail = rest.split_off(rest.len().min(PUT_EVENTS));
                let batch = Accepted {
                    site_key: site.clone(),
                    events: std::mem::replace(&mut rest, tail),
                };
                match self.sink.put(&batch).await {
                    Ok(()) => report.written += batch.events.len(),
                    Err(e) => {
                        tracing::warn!(site = %site, events = batch.events.len(), error = %e, "Served log not written; kept for the next flush.");
                        failed.extend(batch.events.into_iter().map(|ev| (site.clone(), ev)));
                    }
                }
            }
        }
        if !failed.is_empty() {
            let mut q = self.queue.lock().expect("served queue lock");
            report.requeued = failed.len();
            // Oldest first: the failed ones go before what was queued meanwhile.
            failed.append(&mut q);
            if failed.len() > MAX_QUEUED {
                report.dropped = failed.len() - MAX_QUEUED;
                failed.drain(..report.dropped);
                tracing::error!(
                    dropped = report.dropped,
                    "Served log queue full; the oldest served events were dropped."
                );
            }
            *q = failed;
        }
        report
    }
}

async fn flusher<S: EventSink + 'static>(log: Weak<ServedLog<S>>, every: Duration) {
    loop {
        let wake = match log.upgrade() {
            Some(l) => l,
            None => return,
        };
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = wake.wake.notified() => {}
        }
        wake.flush().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::SinkError;
    use nectar_model::event::{accept_payload, CollectLimits};
    use std::sync::atomic::{AtomicBool, Ordering};

    #[derive(Default)]
    struct Recorder {
        fail: AtomicBool,
        got: Mutex<Vec<(String, usize)>>,
    }

    impl EventSink for Recorder {
        async fn put(&self, batch: &Accepted) -> Result<(), SinkError> {
            if self.fail.load(Ordering::SeqCst) {
                return Err(SinkError::Fatal("down".into()));
            }
            self.got
                .lock()
                .unwrap()
                .push((batch.site_key.clone(), batch.events.len()));
            Ok(())
        }
    }

    fn served(site: &str, n: usize) -> Accepted {
        const T: i64 = 1_763_000_000_000;
        let events: Vec<_> = (0..n)
            .map(|i| {
                serde_json::json!({"type": "recommendation_served", "id": format!("r{i}"), "event_timestamp": T})
            })
            .collect();
        let body = serde_json::json!({
            "peach_schema_version": "1.0.3", "sent_timestamp": T,
            "client": {"id": "c", "app_id": "nectar-recommend", "device": {"type": "embedded"}},
            "events": events,
        })
        .to_string();
        accept_payload(body.as_bytes(), site, T, &CollectLimits::default()).unwrap()
    }

    #[tokio::test]
    async fn deferred_writes_nothing_until_flushed_then_everything_per_site() {
        // GIVEN a deferred log and answers for two sites
        let sink = Arc::new(Recorder::default());
        let log = ServedLog::new(sink.clone(), FlushMode::Deferred);
        log.push(served("a", 2));
        log.push(served("b", 1));
        log.push(served("a", 1));
        tokio::time::sleep(Duration::from_millis(20)).await;
        // THEN nothing is written before the flush
        assert!(sink.got.lock().unwrap().is_empty());
        assert_eq!(log.pending(), 4);
        // WHEN flushed
        let r = log.flush().await;
        // THEN one write per site, all events, queue empty
        assert_eq!(r.written, 4);
        assert_eq!(
            *sink.got.lock().unwrap(),
            vec![("a".to_string(), 3), ("b".to_string(), 1)]
        );
        assert_eq!(log.pending(), 0);
    }

    #[tokio::test]
    async fn failed_writes_are_kept_for_the_next_flush() {
        // GIVEN a sink that fails
        let sink = Arc::new(Recorder::default());
        sink.fail.store(true, Ordering::SeqCst);
        let log = ServedLog::new(sink.clone(), FlushMode::Deferred);
        log.push(served("a", 3));
        // WHEN flushed
        let r = log.flush().await;
        // THEN nothing is lost: the events are queued again
        assert_eq!((r.written, r.requeued), (0, 3));
        assert_eq!(log.pending(), 3);
        // AND the next flush, with the sink back, writes them
        sink.fail.store(false, Ordering::SeqCst);
        log.push(served("a", 1));
        assert_eq!(log.flush().await.written, 4);
        assert_eq!(log.pending(), 0);
    }

    #[tokio::test]
    async fn background_mode_flushes_on_its_own() {
        // GIVEN a background log flushing every 20 ms
        let sink = Arc::new(Recorder::default());
        let log = ServedLog::new(
            sink.clone(),
            FlushMode::Background {
                every: Duration::from_millis(20),
            },
        );
        // WHEN an answer is queued and time passes
        log.push(served("a", 2));
        for _ in 0..100 {
            if log.pending() == 0 && !sink.got.lock().unwrap().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // THEN it was written without an explicit flush
        assert_eq!(*sink.got.lock().unwrap(), vec![("a".to_string(), 2)]);
    }
}
