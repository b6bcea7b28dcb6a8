//! The served-recommendation log: every answer of the recommend service becomes a
//! `recommendation_served` event in the event log, written off the request path.
//!
//! Each answer is built directly as a flat event ([`ServedAnswer::to_event`]): the server's
//! own events never go through the collect validator, so nothing is printed as PEACH text
//! only to be parsed back.
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

use std::borrow::Cow;

use nectar_model::event::{event_id, Accepted, EncodedEvent, FlatEvent};
use serde::Serialize;
use serde_json::value::{to_raw_value, RawValue};

use super::answer::{ModelRef, RecommendAnswer};

use crate::collect::sink::EventSink;
use crate::observe::names::{self, dim};

/// Queue length that triggers a background flush before the timer.
pub const FLUSH_AT: usize = 1_000;
/// Events kept queued at most (when the sink keeps failing).
pub const MAX_QUEUED: usize = 50_000;
/// Events per sink call.
const PUT_EVENTS: usize = 500;

/// `app_id` of the recommend service in its served events' `client` (one home: online
/// evaluation reads it).
pub use nectar_model::online::attribution::SERVED_APP_ID;
/// PEACH schema version the served events are written in.
const SERVED_SCHEMA_VERSION: &str = "1.0.3";
/// Event type of a served answer.
const SERVED_TYPE: &str = "recommendation_served";

/// One answer of the recommend service, as the served log records it.
#[derive(Debug, Clone, Copy)]
pub struct ServedAnswer<'a> {
    /// The site the answer was served for.
    pub site_key: &'a str,
    /// The `user_id` of the request, if any.
    pub user_id: Option<&'a str>,
    /// The `client_id` of the request, if any.
    pub client_id: Option<&'a str>,
    /// What the answer was computed for: logged only for anonymous requests (no user or
    /// client id), where it is the only trace of the subject.
    pub subject: &'a str,
    /// The `context_item` of the request, if any.
    pub context_item: Option<&'a str>,
    /// The response body as sent: `recommendation_id`, `endpoint`, `variant`, `model`,
    /// `items` (`[{id, score}]`) and `fallback`.
    pub body: &'a RecommendAnswer,
}

/// The `client` of a served event (keys in the order a `Value` map writes them).
#[derive(Serialize)]
struct ServedClient<'a> {
    app_id: &'static str,
    device: ServedDevice,
    id: &'a str,
}

#[derive(Serialize)]
struct ServedDevice {
    #[serde(rename = "type")]
    kind: &'static str,
}

/// The `context` of a served event (keys sorted, `null` for what is absent, as before).
#[derive(Serialize)]
struct ServedContext<'a> {
    context_item: Option<&'a str>,
    endpoint: &'a str,
    fallback: bool,
    items: Vec<&'a str>,
    model: &'a ModelRef,
    subject: Option<&'a str>,
    variant: &'a str,
}

impl ServedAnswer<'_> {
    /// The answer as a flat `recommendation_served` event, with the fields a collected event
    /// has (`collect_timestamp`, `sent_timestamp` and `event_timestamp` are all `now_ms`; the
    /// `client` is the user or client id, else [`SERVED_APP_ID`]; `context` holds the
    /// endpoint, variant, model, item ids, fallback flag, context item and, for anonymous
    /// requests, the subject).
    pub fn to_event(&self, now_ms: i64) -> EncodedEvent {
        let b = self.body;
        let client_id = self.client_id.or(self.user_id).unwrap_or(SERVED_APP_ID);
        let anonymous = self.user_id.is_none() && self.client_id.is_none();
        let client = ServedClient {
            app_id: SERVED_APP_ID,
            device: ServedDevice { kind: "embedded" },
            id: client_id,
        };
        let context = ServedContext {
            context_item: self.context_item,
            endpoint: &b.endpoint,
            fallback: b.fallback,
            items: b.items.iter().map(|i| i.id.as_str()).collect(),
            model: &b.model,
            subject: anonymous.then_some(self.subject),
            variant: &b.variant,
        };
        let client: Box<RawValue> = to_raw_value(&client).expect("a served client serialises");
        let context: Box<RawValue> = to_raw_value(&context).expect("a served context serialises");
        let rec_id = b.recommendation_id.as_str();
        let event = FlatEvent {
            event_id: Cow::Owned(event_id(
                self.site_key,
                client_id,
                SERVED_TYPE,
                rec_id,
                now_ms,
            )),
            site_key: Cow::Borrowed(self.site_key),
            event_type: Cow::Borrowed(SERVED_TYPE),
            id: Cow::Borrowed(rec_id),
            event_timestamp: now_ms,
            event_timestamp_original: None,
            collect_timestamp: now_ms,
            sent_timestamp: now_ms,
            session_start_timestamp: None,
            user_id: self.user_id.map(Cow::Borrowed),
            peach_schema_version: Cow::Borrowed(SERVED_SCHEMA_VERSION),
            client: &client,
            context: Some(&context),
            props: None,
            metadata: None,
            // The marker online evaluation trusts: collect never sets it, and refuses this
            // event type from clients (`reserved_event_type`).
            nectar_served: true,
        };
        EncodedEvent {
            mapped: None,
            line: serde_json::to_string(&event).expect("a flat event serialises"),
            event_id: event.event_id.into_owned(),
            event_timestamp: now_ms,
        }
    }
}

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

    /// Queues flat events of one site; never blocks on I/O.
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

    /// Queues one answer as its `recommendation_served` event; never blocks on I/O.
    pub fn record(&self, answer: &ServedAnswer<'_>, now_ms: i64) {
        self.push(Accepted {
            site_key: answer.site_key.to_string(),
            events: vec![answer.to_event(now_ms)],
        });
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
                // Per site, so the alarm and the report's reader know whose answers are missing.
                for (site, _) in failed.drain(..report.dropped) {
                    metrics::counter!(names::SERVED_LOG_DROPPED, dim::SITE => site).increment(1);
                }
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
    use crate::collect::sink::SinkError;
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
                serde_json::json!({"type": "served_test", "id": format!("r{i}"), "event_timestamp": T})
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

    /// The served event as it was built before issue 10: PEACH text parsed back by the
    /// collect validator. Kept as the oracle of the direct builder. Collect now refuses the
    /// served type from clients, so the oracle goes through it under a neutral type and then
    /// gets what only the server writes: the served type, the event id over it, and the
    /// served marker.
    fn round_tripped(a: &ServedAnswer<'_>, now_ms: i64) -> serde_json::Value {
        let body = &a.body.to_json();
        let client = a
            .client_id
            .or(a.user_id)
            .unwrap_or("nectar-recommend")
            .to_string();
        let mut payload = serde_json::json!({
            "peach_schema_version": "1.0.3",
            "sent_timestamp": now_ms,
            "client": { "id": client, "app_id": "nectar-recommend", "device": { "type": "embedded" } },
            "events": [{
                "type": "served_reference",
                "id": body["recommendation_id"],
                "event_timestamp": now_ms,
                "context": {
                    "endpoint": body["endpoint"],
                    "variant": body["variant"],
                    "model": body["model"],
                    "fallback": body["fallback"],
                    "items": body["items"].as_array().map(|a| a.iter().map(|i| i["id"].clone()).collect::<Vec<_>>()),
                    "context_item": a.context_item,
                    "subject": if a.user_id.is_none() && a.client_id.is_none() { Some(a.subject) } else { None },
                }
            }]
        });
        if let Some(u) = a.user_id {
            payload["user_id"] = serde_json::json!(u);
        }
        let text = payload.to_string();
        let mut got = accept_payload(
            text.as_bytes(),
            a.site_key,
            now_ms,
            &CollectLimits::default(),
        )
        .unwrap();
        assert_eq!(got.events.len(), 1);
        let mut v: serde_json::Value = serde_json::from_str(&got.events.remove(0).line).unwrap();
        v["type"] = serde_json::json!(SERVED_TYPE);
        v["event_id"] = serde_json::json!(event_id(
            a.site_key,
            &client,
            SERVED_TYPE,
            body["recommendation_id"].as_str().unwrap(),
            now_ms
        ));
        v["nectar_served"] = serde_json::json!(true);
        v
    }

    #[test]
    fn served_events_are_built_exactly_as_the_collect_round_trip_built_them() {
        const T: i64 = 1_795_305_000_000;
        let body = |fallback: bool, items: &[&str]| {
            let mut a = RecommendAnswer::of_ids(
                "r-0123456789abcdef",
                "for-you",
                "b",
                ("als", 7),
                items,
                fallback,
            );
            for (i, item) in a.items.iter_mut().enumerate() {
                item.score = 1.0 / (i as f32 + 1.0);
            }
            a
        };
        let (plain, odd, empty) = (
            body(false, &["m1", "m2", "m3"]),
            body(true, &["quote\"d", "é/ü", "tab\there"]),
            body(false, &[]),
        );
        // GIVEN answers for a user, a client, both, and an anonymous subject, with odd ids
        let answers = [
            ServedAnswer {
                site_key: "demo",
                user_id: Some("u-1"),
                client_id: None,
                subject: "u-1",
                context_item: None,
                body: &plain,
            },
            ServedAnswer {
                site_key: "demo",
                user_id: None,
                client_id: Some("c-9"),
                subject: "c-9",
                context_item: Some("m0"),
                body: &odd,
            },
            ServedAnswer {
                site_key: "other_site",
                user_id: Some("ü\"ser"),
                client_id: Some("c-2"),
                subject: "ü\"ser",
                context_item: Some("it\"em"),
                body: &plain,
            },
            ServedAnswer {
                site_key: "demo",
                user_id: None,
                client_id: None,
                subject: "item:m5",
                context_item: Some("m5"),
                body: &empty,
            },
        ];
        for a in &answers {
            // WHEN built directly THEN it is what the round trip produced, field for field
            let ev = a.to_event(T);
            let v: serde_json::Value = serde_json::from_str(&ev.line).unwrap();
            assert_eq!(v, round_tripped(a, T), "{a:?}");
            assert_eq!(ev.event_id, v["event_id"].as_str().unwrap());
            assert_eq!(ev.event_timestamp, T);
        }
        // AND the event reads back as a flat event with the answer's fields
        let ev = answers[1].to_event(T);
        let v: serde_json::Value = serde_json::from_str(&ev.line).unwrap();
        assert_eq!(v["type"], "recommendation_served");
        assert_eq!(v["client"]["id"], "c-9");
        assert_eq!(v["context"]["items"][0], "quote\"d");
        assert_eq!(v["context"]["fallback"], true);
        assert!(v.get("user_id").is_none());
        // AND it carries the served marker that online evaluation trusts
        assert_eq!(
            v[nectar_model::online::attribution::SERVED_MARKER_FIELD],
            true
        );
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
