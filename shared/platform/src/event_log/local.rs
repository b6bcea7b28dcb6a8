//! The embedded event log: the local twin of Kinesis → archive → S3.
//!
//! Events are appended to gzip JSON Lines files in the event log layout under a data dir. One
//! writer thread does all I/O with group commit: every request waiting when the writer wakes
//! is one flush of the event-log writer ([`AppendFiles`]: one gzip member per touched
//! partition file, joined from chunks each request compressed itself, each touched file fsynced once, a torn member left by a crash cut off
//! first), then all those requests are acknowledged. `put` returns only after the fsync, so a
//! `202` means the events are on disk.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use nectar_model::event::Accepted;
use tokio::sync::{mpsc, oneshot};

use crate::background;
use crate::collect::sink::{EventSink, SinkError};
use crate::event_log::jsonl::{join_member, DeflateChunk};
use crate::event_log::layout::Hour;
use crate::event_log::writer::AppendFiles;

struct WriteRequest {
    site_key: String,
    /// The request's lines of each event hour, compressed by the request itself.
    chunks: Vec<(Hour, DeflateChunk)>,
    done: oneshot::Sender<std::io::Result<()>>,
}

/// Handle to the embedded event log writer; cheap to clone.
#[derive(Debug, Clone)]
pub struct LocalEventLog {
    tx: mpsc::UnboundedSender<WriteRequest>,
    root: PathBuf,
}

impl std::fmt::Debug for WriteRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteRequest")
            .field("site_key", &self.site_key)
            .finish()
    }
}

/// One group commit: every waiting request's events, as one flush of the event-log writer
/// (per site and hour, one gzip member joined from the requests' chunks in arrival order).
fn commit(files: &mut AppendFiles, batch: &[WriteRequest]) -> std::io::Result<()> {
    let mut parts: BTreeMap<(&str, Hour), Vec<&DeflateChunk>> = BTreeMap::new();
    for req in batch {
        for (hour, chunk) in &req.chunks {
            parts.entry((&req.site_key, *hour)).or_default().push(chunk);
        }
    }
    files.append_members(parts.into_iter().map(|((site, hour), chunks)| {
        let lines = chunks.iter().map(|c| c.lines()).sum();
        ((site.to_string(), hour), join_member(chunks), lines)
    }))
}

/// A batch's lines compressed per event hour, in arrival order within each hour; in
/// background work (the served log's flush), in chunks of [`background::SLICE`] lines with a
/// [`background::pause`] after each.
fn compress_by_hour(batch: &Accepted) -> Vec<(Hour, DeflateChunk)> {
    let mut by_hour: Vec<(Hour, Vec<&str>)> = Vec::new();
    for e in &batch.events {
        let hour = Hour::of(e.event_timestamp);
        match by_hour.iter_mut().find(|(h, _)| *h == hour) {
            Some((_, lines)) => lines.push(&e.line),
            None => by_hour.push((hour, vec![&e.line])),
        }
    }
    let mut chunks = Vec::with_capacity(by_hour.len());
    for (hour, lines) in by_hour {
        for piece in lines.chunks(background::slice(lines.len())) {
            chunks.push((hour, DeflateChunk::of_lines(piece.iter().copied())));
            background::pause();
        }
    }
    chunks
}

impl LocalEventLog {
    /// Starts the writer thread for a data dir. `writer_id` names this process's files.
    pub fn start(root: impl Into<PathBuf>, writer_id: impl Into<String>) -> std::io::Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(&root)?;
        let (tx, mut rx) = mpsc::unbounded_channel::<WriteRequest>();
        let mut files = AppendFiles::new(&root, writer_id);
        let mut commits = 0u64;
        std::thread::Builder::new().name("nectar-event-log".into()).spawn(move || {
            while let Some(first) = rx.blocking_recv() {
                let mut batch = vec![first];
                while let Ok(more) = rx.try_recv() {
                    batch.push(more);
                }
                let result = commit(&mut files, &batch);
                commits += 1;
                if let Err(e) = &result {
                    tracing::error!(error = %e, requests = batch.len(), "Event log commit failed; requests answered with an error.");
                    // The next commit reopens each file and first cuts what the failed
                    // write left.
                    files.close();
                }
                for req in batch {
                    let r = match &result {
                        Ok(()) => Ok(()),
                        Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
                    };
                    let _ = req.done.send(r);
                }
            }
            tracing::debug!(commits, "Event log writer stopped.");
        })?;
        Ok(Self { tx, root })
    }

    /// The data dir.
    pub fn root(&self) -> &Path {
        &self.root
    }
}

impl EventSink for LocalEventLog {
    async fn put(&self, batch: &Accepted) -> Result<(), SinkError> {
        let (done, wait) = oneshot::channel();
        // Compressed here, so that concurrent requests compress in parallel and the writer
        // thread only writes and fsyncs: it used to compress every request of a group commit
        // itself, one after another, while the next commit's requests waited (the profile's
        // bound on ingest).
        let req = WriteRequest {
            site_key: batch.site_key.clone(),
            chunks: compress_by_hour(batch),
            done,
        };
        self.tx
            .send(req)
            .map_err(|_| std::io::Error::other("the event log writer has stopped"))?;
        wait.await
            .map_err(|_| std::io::Error::other("the event log writer has stopped"))??;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event_log::jsonl::{gunzip_text, gzip_lines};
    use crate::event_log::layout::Hour;
    use nectar_model::event::EncodedEvent;
    use std::io::Write;

    fn batch(ids: std::ops::Range<u32>, ts: i64) -> Accepted {
        Accepted {
            site_key: "demo".into(),
            events: ids
                .map(|i| EncodedEvent {
                    mapped: None,
                    event_id: i.to_string(),
                    event_timestamp: ts,
                    line: format!("{{\"event_id\":\"{i}\"}}"),
                })
                .collect(),
        }
    }

    #[tokio::test]
    async fn a_torn_member_left_by_a_crash_is_cut_before_the_restarted_writer_appends() {
        let dir = std::env::temp_dir().join(format!("nectar-log-{}", rand::random::<u64>()));
        let ts = 1_795_305_000_000i64;
        // GIVEN a file whose last member was torn by a crash (kill -9 mid-append)
        let log = LocalEventLog::start(&dir, "demo-42").unwrap();
        log.put(&batch(0..3, ts)).await.unwrap();
        drop(log);
        let key = crate::event_log::layout::event_object_key(
            "demo",
            Hour::of(ts),
            "demo-42",
            "000000000000",
        );
        let path = dir.join(&key);
        let whole = std::fs::metadata(&path).unwrap().len();
        let member = gzip_lines(["{\"event_id\":\"never acknowledged\"}"; 40]);
        let torn = &member[..member.len() / 2];
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(torn)
            .unwrap();
        // WHEN a writer with the same id restarts and appends to the same file
        let log = LocalEventLog::start(&dir, "demo-42").unwrap();
        log.put(&batch(3..5, ts)).await.unwrap();
        // THEN the file is whole members only, with every acknowledged event, and the torn
        // bytes are in the sidecar
        let got = gunzip_text(&std::fs::read(&path).unwrap());
        assert!(got.is_clean(), "{got:?}");
        assert_eq!(got.members, 2);
        let ids: Vec<&str> = got.text.lines().collect();
        assert_eq!(ids.len(), 5);
        assert_eq!(ids[4], "{\"event_id\":\"4\"}");
        assert_eq!(
            std::fs::read(dir.join(format!("{key}.torn"))).unwrap(),
            torn
        );
        assert!(std::fs::metadata(&path).unwrap().len() > whole);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn concurrent_puts_land_in_the_layout_and_share_commits() {
        let dir = std::env::temp_dir().join(format!("nectar-log-{}", rand::random::<u64>()));
        let log = LocalEventLog::start(&dir, "test").unwrap();
        // two hours: 2026-11-21T23:xx and 2026-11-22T00:xx
        let ts = [1_795_305_000_000i64, 1_795_305_700_000];
        let mut tasks = Vec::new();
        for r in 0..50 {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                let events = (0..20)
                    .map(|i| EncodedEvent {
                        mapped: None,
                        event_id: format!("{r}-{i}"),
                        event_timestamp: ts[i % 2],
                        line: format!("{{\"event_id\":\"{r}-{i}\"}}"),
                    })
                    .collect();
                log.put(&Accepted {
                    site_key: "demo".into(),
                    events,
                })
                .await
                .unwrap();
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let store = crate::object_store::LocalStore::new(&dir);
        use crate::object_store::ObjectStore;
        let keys = store.list("events/site=demo/").await.unwrap();
        assert_eq!(keys.len(), 2, "{keys:?}");
        assert!(keys[0].starts_with("events/site=demo/date=2026-11-21/hour=23/test-"));
        assert!(keys[1].starts_with("events/site=demo/date=2026-11-22/hour=00/test-"));
        let mut lines = 0;
        for k in keys {
            let got = gunzip_text(&std::fs::read(dir.join(k)).unwrap());
            assert!(got.is_clean());
            lines += got.text.lines().count();
        }
        assert_eq!(lines, 1000);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn background_work_compresses_in_slices_that_join_to_the_same_text() {
        // GIVEN 150 events in one hour and 10 in the next
        let ts = 1_795_305_000_000i64;
        let mut b = batch(0..150, ts);
        b.events.extend(batch(150..160, ts + 3_600_000).events);
        let text = |chunks: &[(Hour, DeflateChunk)], hour: Hour| {
            let member = join_member(chunks.iter().filter(|(h, _)| *h == hour).map(|(_, c)| c));
            gunzip_text(&member).text
        };
        // WHEN compressed for a request and as background work
        let whole = compress_by_hour(&b);
        let sliced = crate::background::run(async { compress_by_hour(&b) }).await;
        // THEN the request's batch is one chunk per hour, the background's slices of 64
        let sizes =
            |c: &[(Hour, DeflateChunk)]| c.iter().map(|(_, c)| c.lines()).collect::<Vec<_>>();
        assert_eq!(sizes(&whole), [150, 10]);
        assert_eq!(sizes(&sliced), [64, 64, 22, 10]);
        // AND both join into the same lines, per hour
        for hour in [Hour::of(ts), Hour::of(ts + 3_600_000)] {
            assert_eq!(text(&sliced, hour), text(&whole, hour));
        }
        assert_eq!(text(&sliced, Hour::of(ts)).lines().count(), 150);
    }
}
