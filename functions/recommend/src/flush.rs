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

async fn run<E>(ext: RegisteredExtension<E>) -> Result<(), lambda_extension::Error>
where
    E: lambda_extension::Service<LambdaEvent>,
    E::Future: std::future::Future<Output = Result<(), E::Error>>,
    E::Error: Into<lambda_extension::Error> + std::fmt::Display + std::fmt::Debug,
{
    ext.run().await
}
use nectar_platform::served_log::ServedLog;
use nectar_platform::sink::EventSink;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::sync::Mutex;

/// The handler's side: one signal per answered invocation.
#[derive(Debug, Clone)]
pub struct Answered(Option<UnboundedSender<()>>);

impl Answered {
    /// Tells the extension that this invocation's answer (and its served event) is ready.
    pub fn signal(&self) {
        if let Some(tx) = &self.0 {
            let _ = tx.send(());
        }
    }
}

/// Longest wait for the handler's signal (the invocation's deadline bounds it too): an event
/// the runtime could not hand to the handler never signals.
const MAX_WAIT: Duration = Duration::from_secs(10);

/// Registers the flushing extension; call before the runtime starts. On failure (no
/// Extensions API) falls back to flushing every `fallback_every` from a background task.
pub async fn register<S: EventSink + 'static>(
    log: Arc<ServedLog<S>>,
    fallback_every: Duration,
) -> (
    Answered,
    Option<impl std::future::Future<Output = Result<(), lambda_extension::Error>>>,
) {
    let (tx, rx) = unbounded_channel::<()>();
    let rx: Arc<Mutex<UnboundedReceiver<()>>> = Arc::new(Mutex::new(rx));
    let ext_log = log.clone();
    let processor = service_fn(move |event: LambdaEvent| {
        let (log, rx) = (ext_log.clone(), rx.clone());
        async move {
            if let NextEvent::Invoke(inv) = event.next {
                let left = Duration::from_millis(
                    inv.deadline_ms
                        .saturating_sub(nectar_platform::now_ms().max(0) as u64),
                );
                let wait = left.min(MAX_WAIT);
                if tokio::time::timeout(wait, rx.lock().await.recv())
                    .await
                    .is_err()
                {
                    tracing::warn!(request_id = %inv.request_id, "No answer signalled; flushing the served log anyway.");
                }
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
        .with_extension_name("nectar-served-log")
        .register()
        .await;
    match registered {
        Ok(ext) => (Answered(Some(tx)), Some(run(ext))),
        Err(e) => {
            tracing::warn!(error = %e, "Extensions API unavailable; the served log is flushed on a timer.");
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(fallback_every).await;
                    log.flush().await;
                }
            });
            (Answered(None), None)
        }
    }
}
