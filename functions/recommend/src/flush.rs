//! Writes the served-recommendation log after each invocation, before Lambda freezes the
//! execution environment.
//!
//! A Lambda environment is frozen as soon as the runtime has posted the response and every
//! extension has asked for its next event; work left in background tasks then waits, frozen,
//! until the next invocation (or is lost when the environment is shut down). So the function
//! registers an *internal extension* for `INVOKE` events: on each invocation it waits until the
//! handler has answered (the response goes to the caller at once), then flushes the served
//! log, and only then asks for its next event. Where the Extensions API is missing (some
//! local emulators), a background timer flushes instead.

use std::sync::Arc;
use std::time::Duration;

use lambda_extension::{service_fn, Extension, LambdaEvent, NextEvent, RegisteredExtension};
use nectar_platform::collect::sink::EventSink;
use nectar_platform::recommend::served_log::ServedLog;
use tokio::sync::{watch, Mutex};

/// The handler's side: counts answered invocations.
#[derive(Debug, Clone)]
pub struct Answered(Option<Arc<watch::Sender<u64>>>);

impl Answered {
    /// No extension to tell (the served log is written in the invocation).
    pub fn none() -> Self {
        Self(None)
    }

    /// Tells the extension that one more invocation's answer (and its served event) is ready.
    pub fn signal(&self) {
        if let Some(tx) = &self.0 {
            tx.send_modify(|n| *n += 1);
        }
    }
}

/// Longest wait for the handler's answer when the invocation's deadline does not bound it (an
/// event the runtime could not hand to the handler never answers).
const MAX_WAIT: Duration = Duration::from_secs(10);

/// Registers the flushing extension; call before the runtime starts. On failure (no
/// Extensions API) falls back to flushing every `fallback_every` from a background task.
///
/// The k-th INVOKE event waits until k answers were counted, then flushes. If an invocation
/// never answers (the runtime refused its event), the wait ends at the deadline and the count
/// is resynchronised, so later invocations are not thrown off by one.
pub async fn register<S: EventSink + 'static>(
    log: Arc<ServedLog<S>>,
    fallback_every: Duration,
) -> (
    Answered,
    Option<impl std::future::Future<Output = Result<(), lambda_extension::Error>>>,
) {
    let (tx, rx) = watch::channel(0u64);
    let invokes = Arc::new(Mutex::new(0u64));
    let ext_log = log.clone();
    let processor = service_fn(move |event: LambdaEvent| {
        let (log, mut rx, invokes) = (ext_log.clone(), rx.clone(), invokes.clone());
        async move {
            if let NextEvent::Invoke(inv) = event.next {
                let mut seen = invokes.lock().await;
                *seen += 1;
                let target = *seen;
                let now = nectar_platform::now_ms().max(0) as u64;
                // A deadline in the past (some emulators send none) falls back to MAX_WAIT.
                let wait = match inv.deadline_ms.checked_sub(now) {
                    Some(left) if left > 0 => Duration::from_millis(left).min(MAX_WAIT),
                    _ => MAX_WAIT,
                };
                let answered = tokio::time::timeout(wait, rx.wait_for(|&n| n >= target))
                    .await
                    .is_ok_and(|r| r.is_ok());
                if !answered {
                    let n = *rx.borrow();
                    tracing::warn!(request_id = %inv.request_id, deadline_ms = inv.deadline_ms, answered = n, expected = target, "No answer counted for this invocation; flushing the served log anyway.");
                    *seen = n;
                }
                drop(seen);
                let r = log.flush().await;
                if r.requeued > 0 {
                    tracing::warn!(
                        requeued = r.requeued,
                        "Served log kept for the next invocation."
                    );
                }
            }
            Ok::<(), lambda_extension::Error>(())
        }
    });
    let registered = Extension::new()
        .with_events(&["INVOKE"])
        .with_events_processor(processor)
        .with_extension_name("nectar-served-flush")
        .register()
        .await;
    match registered {
        Ok(ext) => (Answered(Some(Arc::new(tx))), Some(run(ext))),
        Err(e) => {
            tracing::warn!(error = %e, "Extensions API unavailable; the served log is flushed on a timer.");
            log.spawn_flusher(fallback_every);
            (Answered(None), None)
        }
    }
}

/// Runs the registered extension (its INVOKE loop) until the environment shuts down.
async fn run<E>(ext: RegisteredExtension<E>) -> Result<(), lambda_extension::Error>
where
    E: lambda_extension::Service<LambdaEvent>,
    E::Future: std::future::Future<Output = Result<(), E::Error>>,
    E::Error: Into<lambda_extension::Error> + std::fmt::Display + std::fmt::Debug,
{
    ext.run().await
}
