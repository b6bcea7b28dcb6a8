//! The served-log extension: an *external* Lambda extension (a second process, shipped in a
//! layer under `/opt/extensions/`) that receives the recommend function's served events over a
//! Unix socket ([`nectar_platform::collect::local_socket`]), batches them across invocations
//! and writes them to the event stream on a timer, when the queue is long, and on `SHUTDOWN`.
//!
//! It asks for its next event as soon as an `INVOKE` arrives, so it never holds the
//! environment after the function has answered; its timer runs while the environment is thawed
//! (during later invocations). On `SHUTDOWN` (Lambda gives external extensions up to 2 s) it
//! writes whatever is queued, so a normal shutdown loses nothing.

use lambda_extension::NextEvent;
use nectar_platform::collect::sink::EventSink;
use nectar_platform::recommend::served_log::{FlushReport, ServedLog};

/// Handles one event of the Extensions API: on `SHUTDOWN`, writes everything queued.
pub async fn on_event<S: EventSink + 'static>(log: &ServedLog<S>, next: &NextEvent) -> FlushReport {
    match next {
        NextEvent::Shutdown(s) => {
            let report = log.flush().await;
            if report.requeued > 0 {
                tracing::error!(reason = ?s.shutdown_reason, lost = report.requeued, "Served events not written before shutdown.");
            } else {
                tracing::info!(reason = ?s.shutdown_reason, written = report.written, "Served log written at shutdown.");
            }
            report
        }
        NextEvent::Invoke(_) => FlushReport::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_extension::{InvokeEvent, ShutdownEvent};
    use nectar_model::event::{Accepted, EncodedEvent};
    use nectar_platform::collect::sink::SinkError;
    use nectar_platform::recommend::served_log::FlushMode;
    use std::sync::{Arc, Mutex};

    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);
    impl EventSink for Recorder {
        async fn put(&self, batch: &Accepted) -> Result<(), SinkError> {
            let mut got = self.0.lock().unwrap();
            got.extend(batch.events.iter().map(|e| e.event_id.clone()));
            Ok(())
        }
    }

    fn queued(log: &ServedLog<Recorder>, ids: &[&str]) {
        for id in ids {
            log.push(Accepted {
                site_key: "demo".into(),
                events: vec![EncodedEvent {
                    mapped: None,
                    event_id: (*id).into(),
                    event_timestamp: 1,
                    line: format!(r#"{{"event_id":"{id}"}}"#),
                }],
            });
        }
    }

    fn event<T: serde::de::DeserializeOwned>(json: &str) -> T {
        serde_json::from_str(json).unwrap()
    }

    #[tokio::test]
    async fn shutdown_writes_the_queue_and_invoke_does_not() {
        // GIVEN three served events queued across invocations, no timer due
        let sink = Arc::new(Recorder::default());
        let log = ServedLog::new(sink.clone(), FlushMode::Deferred);
        queued(&log, &["a", "b", "c"]);
        // WHEN an INVOKE arrives THEN nothing is written (the extension does not hold it)
        let invoke: InvokeEvent = event(
            r#"{"deadlineMs":1,"requestId":"r","invokedFunctionArn":"arn","tracing":{"type":"X-Amzn-Trace-Id","value":"t"}}"#,
        );
        let r = on_event(&log, &NextEvent::Invoke(invoke)).await;
        assert_eq!(r.written, 0);
        assert_eq!(log.pending(), 3);
        // WHEN SHUTDOWN arrives THEN every queued event is in the sink
        let shutdown: ShutdownEvent = event(r#"{"shutdownReason":"spindown","deadlineMs":1}"#);
        let r = on_event(&log, &NextEvent::Shutdown(shutdown)).await;
        assert_eq!(r.written, 3);
        assert_eq!(log.pending(), 0);
        assert_eq!(*sink.0.lock().unwrap(), vec!["a", "b", "c"]);
    }
}
