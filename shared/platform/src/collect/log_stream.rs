//! An event sink that writes each flat event as one JSON line to the process's standard
//! output: on Lambda, the function's CloudWatch Logs stream, from which a subscription filter
//! (`infra/template.yaml`, `RecommendServedSubscription`) delivers the served events to the
//! event stream.
//!
//! Why: a write to stdout is a few microseconds and needs no network, so the served log no
//! longer keeps the execution environment busy after each answer (the time Lambda bills and
//! during which the instance cannot take the next request). Lambda's log agent owns delivery
//! from then on, so nothing is left queued when the environment shuts down.
//!
//! The lines are the flat events themselves; the subscription's filter pattern
//! [`SERVED_FILTER_PATTERN`] selects them by their `nectar_served` marker, which only the
//! recommend service sets (and collect never copies from clients), so the function's other log
//! lines (tracing, EMF metrics) never reach the event stream.

use std::io::Write;
use std::sync::Mutex;

use nectar_model::event::Accepted;

use super::sink::{EventSink, SinkError};

/// The CloudWatch Logs filter pattern of the served-event lines (the template's
/// `AWS::Logs::SubscriptionFilter` uses exactly this; `infra/test_template.py` compares them).
pub const SERVED_FILTER_PATTERN: &str = "{ $.nectar_served IS TRUE }";

/// Writes flat events as JSON lines to a writer (stdout in the function).
#[derive(Debug)]
pub struct LogStreamSink<W> {
    out: Mutex<W>,
}

impl LogStreamSink<std::io::Stdout> {
    /// The sink over the process's standard output.
    pub fn stdout() -> Self {
        Self::new(std::io::stdout())
    }
}

impl<W: Write + Send> LogStreamSink<W> {
    /// The sink over `out`.
    pub fn new(out: W) -> Self {
        Self {
            out: Mutex::new(out),
        }
    }

    /// The writer back (tests read what was written).
    pub fn into_inner(self) -> W {
        self.out.into_inner().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self, batch: &Accepted) -> std::io::Result<()> {
        // One write per batch: the log agent splits on newlines, and a single `write_all`
        // keeps other threads' log lines from landing inside an event line.
        let mut buf = String::with_capacity(batch.events.iter().map(|e| e.line.len() + 1).sum());
        for e in &batch.events {
            buf.push_str(&e.line);
            buf.push('\n');
        }
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        out.write_all(buf.as_bytes())?;
        out.flush()
    }
}

impl<W: Write + Send> EventSink for LogStreamSink<W> {
    async fn put(&self, batch: &Accepted) -> Result<(), SinkError> {
        Ok(self.write(batch)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nectar_model::event::EncodedEvent;

    fn event(id: &str) -> EncodedEvent {
        EncodedEvent {
            mapped: None,
            event_id: id.into(),
            event_timestamp: 1,
            line: format!(r#"{{"event_id":"{id}","site_key":"demo","nectar_served":true}}"#),
        }
    }

    #[tokio::test]
    async fn each_event_is_one_line() {
        // GIVEN a sink over a buffer
        let sink = LogStreamSink::new(Vec::new());
        // WHEN a batch of two events is put
        let batch = Accepted {
            site_key: "demo".into(),
            events: vec![event("a"), event("b")],
        };
        sink.put(&batch).await.unwrap();
        // THEN the buffer holds exactly their lines, newline-terminated
        let text = String::from_utf8(sink.into_inner()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            vec![batch.events[0].line.as_str(), batch.events[1].line.as_str()]
        );
        assert!(text.ends_with('\n'));
    }

    #[tokio::test]
    async fn a_failing_writer_is_an_io_error() {
        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("pipe full"))
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        // GIVEN a writer that fails
        let sink = LogStreamSink::new(Full);
        // WHEN a batch is put THEN the error is reported (the served log requeues it)
        let batch = Accepted {
            site_key: "demo".into(),
            events: vec![event("a")],
        };
        assert!(matches!(sink.put(&batch).await, Err(SinkError::Io(_))));
    }
}
