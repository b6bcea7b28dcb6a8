//! Handing events to a process on the same machine over a Unix socket: the recommend function's
//! side ([`SocketSink`]) and the served-log extension's side ([`serve`]) of one small protocol.
//!
//! A batch is its flat event lines, each ending in `\n`, then an empty line; the receiver
//! answers one byte, [`ACK`], once the batch is in its queue. The sender counts a batch as put
//! only on that byte, so an event is either acknowledged (and the receiver owns it) or reported
//! as failed (and the served log keeps it): at least once across the hand-over.

use std::io;
use std::path::{Path, PathBuf};

use nectar_model::event::{Accepted, EncodedEvent};
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use super::sink::{EventSink, SinkError};

/// The receiver's answer to a queued batch.
pub const ACK: u8 = b'+';
/// Where the served-log extension listens unless `NECTAR_SERVED_LOG_SOCKET` says otherwise
/// (`/tmp` is the one writable place on Lambda, shared by the function and its extensions).
pub const DEFAULT_SOCKET: &str = "/tmp/nectar-served-log.sock";
/// Longest batch a receiver reads before giving up on a connection (a runaway sender).
const MAX_BATCH_LINES: usize = 100_000;
/// Longest wait for the receiver's acknowledgement: a stuck receiver must not hold the answer
/// (the batch stays in the sender's queue, and may arrive twice: the log is at-least-once).
const SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(200);

/// Sends batches to a local receiver; keeps one connection and reconnects once on failure.
#[derive(Debug)]
pub struct SocketSink {
    path: PathBuf,
    conn: tokio::sync::Mutex<Option<UnixStream>>,
}

impl SocketSink {
    /// A sink for the receiver listening at `path` (connects on the first put).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            conn: tokio::sync::Mutex::new(None),
        }
    }

    async fn send(conn: &mut UnixStream, payload: &[u8]) -> io::Result<()> {
        let exchange = async {
            conn.write_all(payload).await?;
            let mut ack = [0u8; 1];
            conn.read_exact(&mut ack).await?;
            Ok::<u8, io::Error>(ack[0])
        };
        match tokio::time::timeout(SEND_TIMEOUT, exchange).await {
            Ok(Ok(ACK)) => Ok(()),
            Ok(Ok(_)) => Err(io::Error::other(
                "the receiver did not acknowledge the batch",
            )),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the receiver did not acknowledge the batch in time",
            )),
        }
    }
}

impl EventSink for SocketSink {
    async fn put(&self, batch: &Accepted) -> Result<(), SinkError> {
        let mut payload = Vec::with_capacity(batch.events.iter().map(|e| e.line.len() + 1).sum());
        for e in &batch.events {
            payload.extend_from_slice(e.line.as_bytes());
            payload.push(b'\n');
        }
        payload.push(b'\n');
        let mut conn = self.conn.lock().await;
        // A kept connection may have been closed by the receiver (restart): one fresh retry.
        for attempt in 0..2 {
            if conn.is_none() {
                *conn = Some(UnixStream::connect(&self.path).await?);
            }
            let stream = conn.as_mut().expect("connected above");
            match Self::send(stream, &payload).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    *conn = None;
                    if attempt == 1 {
                        return Err(e.into());
                    }
                }
            }
        }
        unreachable!("the second attempt returns")
    }
}

/// The fields of a flat event line the receiver needs to queue it.
#[derive(Deserialize)]
struct LineHeader {
    event_id: String,
    site_key: String,
    event_timestamp: i64,
}

/// One received line as a site's encoded event; `None` when it is not a flat event.
pub fn decode_line(line: String) -> Option<Accepted> {
    let h: LineHeader = serde_json::from_str(&line).ok()?;
    Some(Accepted {
        site_key: h.site_key,
        events: vec![EncodedEvent {
            mapped: None,
            event_id: h.event_id,
            event_timestamp: h.event_timestamp,
            line,
        }],
    })
}

/// Binds the receiver's socket at `path`, replacing a stale one from an earlier process.
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    UnixListener::bind(path)
}

/// Accepts senders forever; every line of a batch is decoded and handed to `queue` before the
/// batch is acknowledged. Lines that are not flat events are dropped with a warning (only the
/// recommend service writes here).
pub async fn serve<F>(listener: UnixListener, queue: F) -> io::Result<()>
where
    F: Fn(Accepted) + Clone + Send + 'static,
{
    loop {
        let (stream, _) = listener.accept().await?;
        let queue = queue.clone();
        tokio::spawn(async move {
            if let Err(e) = connection(stream, queue).await {
                tracing::warn!(error = %e, "Served-log sender disconnected.");
            }
        });
    }
}

async fn connection<F: Fn(Accepted)>(stream: UnixStream, queue: F) -> io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let mut batch: Vec<String> = Vec::new();
    while let Some(line) = lines.next_line().await? {
        if !line.is_empty() {
            if batch.len() >= MAX_BATCH_LINES {
                return Err(io::Error::other("batch too long"));
            }
            batch.push(line);
            continue;
        }
        let mut bad = 0usize;
        for line in batch.drain(..) {
            match decode_line(line) {
                Some(accepted) => queue(accepted),
                None => bad += 1,
            }
        }
        if bad > 0 {
            tracing::warn!(lines = bad, "Lines that are not flat events were dropped.");
        }
        write.write_all(&[ACK]).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn line(id: &str) -> EncodedEvent {
        EncodedEvent {
            mapped: None,
            event_id: id.into(),
            event_timestamp: 7,
            line: format!(r#"{{"event_id":"{id}","site_key":"demo","event_timestamp":7}}"#),
        }
    }

    #[tokio::test]
    async fn a_batch_is_queued_before_it_is_acknowledged() {
        // GIVEN a receiver on a temporary socket that records what it queues
        let dir = std::env::temp_dir().join(format!("nectar-sock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        let got: Arc<Mutex<Vec<Accepted>>> = Arc::default();
        let g = got.clone();
        tokio::spawn(serve(bind(&path).unwrap(), move |a| {
            g.lock().unwrap().push(a)
        }));
        // WHEN two batches are put through one sink (one kept connection), the second with a
        // line that is not a flat event
        let sink = SocketSink::new(&path);
        let first = Accepted {
            site_key: "demo".into(),
            events: vec![line("a"), line("b")],
        };
        sink.put(&first).await.unwrap();
        // THEN the first is queued, field for field, by the time put returns
        assert_eq!(got.lock().unwrap().len(), 2);
        assert_eq!(got.lock().unwrap()[1].events, vec![line("b")]);
        let mut junk = line("c");
        junk.line = "not json".into();
        let second = Accepted {
            site_key: "demo".into(),
            events: vec![junk, line("d")],
        };
        sink.put(&second).await.unwrap();
        // AND the junk line is dropped, the good one queued
        let ids: Vec<String> = got
            .lock()
            .unwrap()
            .iter()
            .map(|a| a.events[0].event_id.clone())
            .collect();
        assert_eq!(ids, vec!["a", "b", "d"]);
        std::fs::remove_dir_all(dir).ok();
    }

    #[tokio::test]
    async fn a_receiver_that_never_acknowledges_times_out() {
        // GIVEN a listener that accepts but never reads or answers
        let dir = std::env::temp_dir().join(format!("nectar-sock-mute-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        let listener = bind(&path).unwrap();
        let held = tokio::spawn(async move { listener.accept().await.map(|(s, _)| s) });
        // WHEN a batch is put THEN it fails within the timeout instead of holding the caller
        let sink = SocketSink::new(&path);
        let batch = Accepted {
            site_key: "demo".into(),
            events: vec![line("a")],
        };
        let started = std::time::Instant::now();
        assert!(matches!(sink.put(&batch).await, Err(SinkError::Io(_))));
        assert!(
            started.elapsed() < SEND_TIMEOUT * 4,
            "{:?}",
            started.elapsed()
        );
        drop(held);
        std::fs::remove_dir_all(dir).ok();
    }

    #[tokio::test]
    async fn no_receiver_is_an_error() {
        // GIVEN no receiver WHEN a batch is put THEN it fails (the served log keeps it)
        let sink = SocketSink::new("/nonexistent/nectar.sock");
        let batch = Accepted {
            site_key: "demo".into(),
            events: vec![line("a")],
        };
        assert!(matches!(sink.put(&batch).await, Err(SinkError::Io(_))));
    }
}
