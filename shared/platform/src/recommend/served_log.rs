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

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use std::borrow::Cow;

use nectar_model::event::{event_id, Accepted, EncodedEvent, FlatEvent};
use nectar_model::mapping::{map_event_fields, EventFields, EventWeights, Skip};
use serde::Serialize;
use serde_json::value::{to_raw_value, RawValue};

use super::answer::{ModelRef, RecommendAnswer};

use crate::background;
use crate::collect::sink::EventSink;
use crate::observe::names::{self, dim};

/// Queue length that triggers a background flush before the timer.
pub const FLUSH_AT: usize = 1_000;
/// Events per sink call (one Kinesis `PutRecords` at most).
const PUT_EVENTS: usize = 500;
/// Events kept queued at most (when the sink keeps failing).
pub const MAX_QUEUED: usize = 50_000;

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
        self.build(now_ms, None)
    }

    /// [`Self::to_event`] with the interaction the site's `weights` make of it already
    /// worked out (`mapped`), from the fields at hand, so that nothing downstream (the
    /// recent histories of `nectar dev`) parses the line again: exactly what mapping the line
    /// gives (test `a_served_event_maps_as_its_line_maps`), which is never an interaction.
    pub fn to_mapped_event(&self, now_ms: i64, weights: Option<&EventWeights>) -> EncodedEvent {
        self.build(now_ms, Some(weights))
    }

    fn build(&self, now_ms: i64, weights: Option<Option<&EventWeights>>) -> EncodedEvent {
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
        let mapped = weights.map(|w| {
            // Unknown site: no weights, no interaction (as mapping the line decides).
            let w = w.ok_or(Skip::NotAnInteraction)?;
            map_event_fields(
                &EventFields {
                    event_id: &event.event_id,
                    event_type: SERVED_TYPE,
                    id: rec_id,
                    event_timestamp: now_ms,
                    user_id: self.user_id,
                    client: Some(client.get()),
                    context: Some(context.get()),
                    props: None,
                },
                w,
            )
        });
        EncodedEvent {
            mapped,
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

/// Served events waiting to be written, per site in arrival order.
#[derive(Debug, Default)]
struct Queue {
    /// One entry per site (a handful): no site key is copied per event.
    sites: Vec<(String, Vec<EncodedEvent>)>,
    len: usize,
}

impl Queue {
    fn extend(&mut self, site: &str, events: impl ExactSizeIterator<Item = EncodedEvent>) {
        self.len += events.len();
        match self.sites.iter_mut().find(|(s, _)| s == site) {
            Some((_, queued)) => queued.extend(events),
            None => self.sites.push((site.to_string(), events.collect())),
        }
    }
}

/// The queue of served events in front of an event sink.
#[derive(Debug)]
pub struct ServedLog<S> {
    sink: Arc<S>,
    queue: Mutex<Queue>,
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
            queue: Mutex::new(Queue::default()),
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

    fn queue_events(&self, site: &str, events: impl ExactSizeIterator<Item = EncodedEvent>) {
        let len = {
            let mut q = self.queue.lock().expect("served queue lock");
            q.extend(site, events);
            q.len
        };
        if len >= FLUSH_AT && matches!(self.mode, FlushMode::Background { .. }) {
            self.wake.notify_one();
        }
    }

    /// Queues flat events of one site; never blocks on I/O.
    pub fn push(&self, batch: Accepted) {
        self.queue_events(&batch.site_key, batch.events.into_iter());
    }

    /// Queues one answer as its `recommendation_served` event, mapped with the site's
    /// `weights` ([`ServedAnswer::to_mapped_event`]); never blocks on I/O.
    pub fn record(&self, answer: &ServedAnswer<'_>, now_ms: i64, weights: Option<&EventWeights>) {
        let event = answer.to_mapped_event(now_ms, weights);
        self.queue_events(answer.site_key, std::iter::once(event));
    }

    /// Events waiting to be written.
    pub fn pending(&self) -> usize {
        self.queue.lock().expect("served queue lock").len
    }

    /// Writes everything queued (per site in key order, in puts of [`PUT_EVENTS`]); failures
    /// are logged and requeued. The writing runs as [`background`] work: the local event
    /// log compresses a slice of events at a time and gives the core back between slices
    /// (as do the histories' and bandits' line scans, for events that need one), so a
    /// request thread waiting for this core is not held for a whole flush.
    pub async fn flush(&self) -> FlushReport {
        let _one = self.flushing.lock().await;
        let mut sites = std::mem::take(&mut *self.queue.lock().expect("served queue lock")).sites;
        let mut report = FlushReport::default();
        if sites.is_empty() {
            return report;
        }
        sites.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut failed = Queue::default();
        background::run(async {
            for (site, mut events) in sites {
                while !events.is_empty() {
                    let rest = events.split_off(events.len().min(PUT_EVENTS));
                    let batch = Accepted {
                        site_key: site.clone(),
                        events: std::mem::replace(&mut events, rest),
                    };
                    match self.sink.put(&batch).await {
                        Ok(()) => report.written += batch.events.len(),
                        Err(e) => {
                            tracing::warn!(site = %site, events = batch.events.len(), error = %e, "Served log not written; kept for the next flush.");
                            failed.extend(&site, batch.events.into_iter());
                        }
                    }
                }
            }
        })
        .await;
        if failed.len > 0 {
            report.requeued = failed.len;
            report.dropped = self.requeue(failed);
        }
        report
    }

    /// Puts failed events back before what was queued meanwhile (oldest first); beyond
    /// [`MAX_QUEUED`] the oldest are dropped, counted per site. Returns the number dropped.
    fn requeue(&self, mut failed: Queue) -> usize {
        let mut q = self.queue.lock().expect("served queue lock");
        for (site, events) in std::mem::take(&mut q.sites) {
            failed.extend(&site, events.into_iter());
        }
        let mut dropped = failed.len.saturating_sub(MAX_QUEUED);
        let total = dropped;
        for (site, events) in &mut failed.sites {
            if dropped == 0 {
                break;
            }
            let n = dropped.min(events.len());
            events.drain(..n);
            dropped -= n;
            // Per site, so the alarm and the report's reader know whose answers are missing.
            metrics::counter!(names::SERVED_LOG_DROPPED, dim::SITE => site.clone())
                .increment(n as u64);
        }
        failed.len -= total;
        failed.sites.retain(|(_, e)| !e.is_empty());
        if total > 0 {
            tracing::error!(
                dropped = total,
                "Served log queue full; the oldest served events were dropped."
            );
        }
        *q = failed;
        total
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
        /// Whether every put ran as background work.
        in_background: Mutex<Vec<bool>>,
        /// Fails only the put whose first event has this id.
        fail_at: Mutex<Option<String>>,
        got: Mutex<Vec<(String, usize)>>,
        /// Event ids written, in order.
        ids: Mutex<Vec<String>>,
    }

    impl EventSink for Recorder {
        async fn put(&self, batch: &Accepted) -> Result<(), SinkError> {
            let first = batch.events.first().map(|e| e.event_id.as_str());
            if self.fail.load(Ordering::SeqCst) || self.fail_at.lock().unwrap().as_deref() == first
            {
                return Err(SinkError::Fatal("down".into()));
            }
            self.got
                .lock()
                .unwrap()
                .push((batch.site_key.clone(), batch.events.len()));
            let mut ids = self.ids.lock().unwrap();
            ids.extend(batch.events.iter().map(|e| e.event_id.clone()));
            self.in_background
                .lock()
                .unwrap()
                .push(crate::background::active());
            Ok(())
        }
    }

    /// `n` bare events of `site` with ids `{prefix}{i}`.
    fn bare(site: &str, prefix: &str, n: usize) -> Accepted {
        Accepted {
            site_key: site.into(),
            events: (0..n)
                .map(|i| EncodedEvent {
                    mapped: None,
                    event_id: format!("{prefix}{i}"),
                    event_timestamp: 0,
                    line: "{}".into(),
                })
                .collect(),
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

    #[test]
    fn a_served_event_maps_as_its_line_maps() {
        const T: i64 = 1_795_305_000_000;
        let body = RecommendAnswer::of_ids("r-1", "for-you", "b", ("als", 7), &["m1"], false);
        let answer = |user_id, client_id| ServedAnswer {
            site_key: "demo",
            user_id,
            client_id,
            subject: "s",
            context_item: Some("m0"),
            body: &body,
        };
        let weighing = |rule| {
            let mut w = EventWeights::default();
            w.set(SERVED_TYPE, rule);
            w
        };
        let (fixed, by_value) = (
            weighing(nectar_model::mapping::WeightRule::Fixed(2.0)),
            weighing(nectar_model::mapping::WeightRule::PropsValue),
        );
        let mut skips = std::collections::BTreeSet::new();
        // GIVEN the default weights, weights on served answers (fixed, by value), none
        for weights in [
            Some(&EventWeights::default()),
            Some(&fixed),
            Some(&by_value),
            None,
        ] {
            for a in [
                answer(Some("u"), None),
                answer(None, Some("c")),
                answer(None, None),
            ] {
                // WHEN the event is built with its mapping worked out
                let ev = a.to_mapped_event(T, weights);
                // THEN the mapping is what mapping its line gives, and the line is unchanged
                let want = match weights {
                    Some(w) => nectar_model::mapping::map_event_line(&ev.line, w),
                    None => Err(Skip::NotAnInteraction),
                };
                assert_eq!(ev.mapped.as_ref(), Some(&want), "{a:?}");
                assert_eq!(ev.line, a.to_event(T).line);
                skips.insert(format!("{want:?}"));
            }
        }
        // AND a served answer is never an interaction (its id names the recommendation),
        // whatever the weights say, though not always for the same reason
        assert_eq!(
            skips.into_iter().collect::<Vec<_>>(),
            ["Err(NoValue)", "Err(NotAnInteraction)"]
        );
        assert!(answer(Some("u"), None).to_event(T).mapped.is_none());
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

    #[tokio::test]
    async fn a_flush_puts_in_order_as_background_work_and_requeues_only_the_failed_put() {
        // GIVEN queued events of two sites and a sink that fails the put starting at b500
        let sink = Arc::new(Recorder::default());
        *sink.fail_at.lock().unwrap() = Some("b500".into());
        let log = ServedLog::new(sink.clone(), FlushMode::Deferred);
        log.push(bare("b", "b", 1_001));
        log.push(bare("a", "a", 2));
        log.push(bare("b", "b", 0));
        // WHEN flushed
        let r = log.flush().await;
        // THEN sites are written in key order, in puts of 500, each site's events in order
        assert_eq!(
            *sink.got.lock().unwrap(),
            vec![("a".into(), 2), ("b".into(), 500), ("b".into(), 1)]
        );
        let ids = sink.ids.lock().unwrap().clone();
        assert_eq!(ids[..3], ["a0", "a1", "b0"]);
        assert_eq!(ids[501..], ["b499", "b1000"]);
        // AND every put ran as background work (sliced, pausing), unlike a request's
        assert_eq!(*sink.in_background.lock().unwrap(), [true; 3]);
        assert!(!crate::background::active());
        // AND only the failed put's events are kept, ahead of what is queued meanwhile
        assert_eq!((r.written, r.requeued, r.dropped), (503, 500, 0));
        log.push(bare("b", "late", 1));
        sink.fail_at.lock().unwrap().take();
        assert_eq!(log.flush().await.written, 501);
        let ids = sink.ids.lock().unwrap();
        assert_eq!(ids[503], "b500");
        assert_eq!(ids[1_002..], ["b999", "late0"]);
        assert_eq!(log.pending(), 0);
    }

    #[tokio::test]
    async fn a_full_queue_drops_the_oldest_events_and_says_how_many() {
        // GIVEN a failing sink and more than MAX_QUEUED events over two flushes
        let sink = Arc::new(Recorder::default());
        sink.fail.store(true, Ordering::SeqCst);
        let log = ServedLog::new(sink.clone(), FlushMode::Deferred);
        log.push(bare("a", "old", 30_000));
        assert_eq!(log.flush().await.dropped, 0);
        log.push(bare("a", "new", MAX_QUEUED - 30_000 + 5));
        // WHEN flushed again and still failing
        let r = log.flush().await;
        // THEN the 5 oldest are dropped, the rest kept
        assert_eq!((r.requeued, r.dropped), (MAX_QUEUED + 5, 5));
        assert_eq!(log.pending(), MAX_QUEUED);
        // AND once the sink is back, the oldest written first is the sixth
        sink.fail.store(false, Ordering::SeqCst);
        assert_eq!(log.flush().await.written, MAX_QUEUED);
        let ids = sink.ids.lock().unwrap();
        assert_eq!(ids[0], "old5");
        assert_eq!(
            ids[ids.len() - 1],
            format!("new{}", MAX_QUEUED - 30_000 + 4)
        );
    }
}
