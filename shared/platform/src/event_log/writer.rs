//! The event-log writer: the one place where flat events become event-log files, for the
//! archive service, the S3 store sink (`nectar dev --bucket`), the embedded local log and
//! `nectar import`.
//!
//! It owns the four rules every writer follows (README, "The event log"):
//! - **Partitioning** by site and event hour in UTC ([`Partitions`], keys from [`crate::event_log::layout`]).
//! - **One gzip member per flush**: each partition of a flush is one member
//!   ([`Partition::member`]); an object is one member, a local file a sequence of them.
//! - **Deterministic keys** `<writer-id>-<first-seq>.jsonl.gz`: `<first-seq>` is the first
//!   stream sequence number (archive), a zero-padded counter ([`counter_seq`]: store sink,
//!   local log) or a digest of the content ([`Partition::content_seq`]: import), so a
//!   retried write overwrites its own object instead of adding a copy.
//! - **Durability**: objects are written whole with retries ([`put_objects`]); local files are
//!   appended to, and every touched file is fsynced once per flush, with new directories,
//!   before the flush returns ([`AppendFiles`]).

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use sha2::{Digest, Sha256};

use crate::event_log::jsonl::{gunzip_text, gzip_lines};
use crate::event_log::layout::{event_object_key, Hour};
use crate::object_store::{ObjectStore, StoreError};
use crate::record_file::cut_tail;

/// One partition of a flush: the lines of one site and event hour, in arrival order.
#[derive(Debug, Clone)]
pub struct Partition<'a, T> {
    /// The site.
    pub site_key: String,
    /// The event hour (UTC).
    pub hour: Hour,
    /// What the caller tagged the partition's first line with (the archive: its record).
    pub first: T,
    /// The flat events, one JSON line each, without newlines.
    pub lines: Vec<&'a str>,
}

impl<T> Partition<'_, T> {
    /// The partition's object key for a writer and a first sequence.
    pub fn key(&self, writer_id: &str, first_seq: &str) -> String {
        event_object_key(&self.site_key, self.hour, writer_id, first_seq)
    }

    /// The lines as one gzip member of JSON Lines.
    pub fn member(&self) -> Vec<u8> {
        gzip_lines(self.lines.iter().copied())
    }

    /// A `<first-seq>` named after the content (16 hex digits of the lines' SHA-256), for
    /// writers without a sequence: the same lines always get the same key.
    pub fn content_seq(&self) -> String {
        let mut h = Sha256::new();
        for l in &self.lines {
            h.update(l.as_bytes());
        }
        hex::encode(&h.finalize()[..8])
    }
}

/// Flat events grouped by site and event hour, ordered by site then hour.
#[derive(Debug, Clone)]
pub struct Partitions<'a, T = ()> {
    // Nested so that a line finds its site's map by `&str`, without allocating a key.
    by_site: BTreeMap<String, BTreeMap<Hour, Partition<'a, T>>>,
}

impl<T> Default for Partitions<'_, T> {
    fn default() -> Self {
        Self {
            by_site: BTreeMap::new(),
        }
    }
}

impl<'a, T: Copy> Partitions<'a, T> {
    /// Adds one line; `first` tags the partition when the line is its first.
    pub fn push(&mut self, site_key: &str, event_timestamp: i64, line: &'a str, first: T) {
        let hours = match self.by_site.get_mut(site_key) {
            Some(h) => h,
            None => self.by_site.entry(site_key.to_string()).or_default(),
        };
        let hour = Hour::of(event_timestamp);
        hours
            .entry(hour)
            .or_insert_with(|| Partition {
                site_key: site_key.to_string(),
                hour,
                first,
                lines: Vec::new(),
            })
            .lines
            .push(line);
    }
}

impl<'a, T> Partitions<'a, T> {
    /// No partitions.
    pub fn new() -> Self {
        Self::default()
    }

    /// The partitions, by site then hour.
    pub fn iter(&self) -> impl Iterator<Item = &Partition<'a, T>> {
        self.by_site.values().flat_map(BTreeMap::values)
    }

    /// How many partitions there are.
    pub fn len(&self) -> usize {
        self.by_site.values().map(BTreeMap::len).sum()
    }

    /// Whether no line was pushed.
    pub fn is_empty(&self) -> bool {
        self.by_site.is_empty()
    }
}

/// The `<first-seq>` of a writer that numbers its events itself: zero-padded to 12 digits so
/// that a partition's files list in write order.
pub fn counter_seq(n: u64) -> String {
    format!("{n:012}")
}

/// Attempts of one object write.
pub const WRITE_ATTEMPTS: u32 = 3;
/// Object writes in flight at once.
pub const WRITE_CONCURRENCY: usize = 16;

/// Writes one object, retrying with jittered backoff up to [`WRITE_ATTEMPTS`] times.
pub async fn put_object<O: ObjectStore>(
    store: &O,
    key: &str,
    body: Bytes,
) -> Result<(), StoreError> {
    let mut attempt = 0;
    loop {
        match store.put(key, body.clone()).await {
            Ok(()) => return Ok(()),
            Err(e) if attempt + 1 >= WRITE_ATTEMPTS => return Err(e),
            Err(e) => {
                attempt += 1;
                tracing::warn!(%key, attempt, error = %e, "Object write failed; retrying.");
                let ceiling = Duration::from_millis(100 << attempt);
                tokio::time::sleep(ceiling.mul_f64(rand::random::<f64>())).await;
            }
        }
    }
}

/// Writes objects [`WRITE_CONCURRENCY`] at a time, each with [`put_object`]'s retries; the
/// results are in the order of `objects`.
pub async fn put_objects<O: ObjectStore>(
    store: &O,
    objects: impl IntoIterator<Item = (String, Bytes)>,
) -> Vec<Result<(), StoreError>> {
    futures::stream::iter(objects)
        .map(|(key, body)| async move { put_object(store, &key, body).await })
        .buffered(WRITE_CONCURRENCY)
        .collect()
        .await
}

/// Files are rolled over past this size.
const MAX_FILE_BYTES: u64 = 128 << 20;
/// Open file handles kept between flushes.
const MAX_OPEN_FILES: usize = 256;

struct OpenFile {
    path: PathBuf,
    file: Option<File>,
    size: u64,
}

/// Appends flushes to local event-log files under a data dir, one file per partition and
/// writer (rolled over past 128 MiB), each flush one gzip member per touched file.
///
/// A file this writer did not just write itself (one left by an earlier process with the same
/// writer id, or one a failed write touched) is checked when it is opened: a torn last member
/// (a crash mid-append; its events were never acknowledged) is cut off into `<file>.torn`
/// before a new member is appended, so the file stays a sequence of whole members.
pub struct AppendFiles {
    root: PathBuf,
    writer_id: String,
    next_seq: u64,
    files: HashMap<(String, Hour), OpenFile>,
}

impl std::fmt::Debug for AppendFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppendFiles")
            .field("root", &self.root)
            .field("writer_id", &self.writer_id)
            .field("open", &self.files.len())
            .finish()
    }
}

/// Cuts a torn last gzip member (and any bytes after the last whole member) off an event-log
/// file, keeping them in its `.torn` sidecar; returns the length kept.
fn cut_torn_member(path: &Path, file: &File, len: u64) -> std::io::Result<u64> {
    let mut data = vec![0u8; len as usize];
    file.read_exact_at(&mut data, 0)?;
    let keep = gunzip_text(&data).complete_len as u64;
    cut_tail(path, file, keep, false)?;
    Ok(keep)
}

impl AppendFiles {
    /// A writer whose files are named `<writer_id>-<first-seq>` under `root`.
    pub fn new(root: impl Into<PathBuf>, writer_id: impl Into<String>) -> Self {
        Self {
            root: root.into(),
            writer_id: writer_id.into(),
            next_seq: 0,
            files: HashMap::new(),
        }
    }

    /// Appends one flush: a gzip member per partition, then one fsync per touched file (and
    /// of each directory or file created), so `Ok` means every line is on disk.
    pub fn append<T>(&mut self, parts: &Partitions<'_, T>) -> std::io::Result<()> {
        self.append_members(parts.iter().map(|part| {
            let at = (part.site_key.clone(), part.hour);
            (at, part.member(), part.lines.len())
        }))
    }

    /// [`AppendFiles::append`] with the members already built (one per site and hour, with
    /// how many lines each holds): the embedded log compresses in the requests, in parallel,
    /// and joins their chunks ([`crate::event_log::jsonl::join_member`]).
    pub fn append_members(
        &mut self,
        members: impl IntoIterator<Item = ((String, Hour), Vec<u8>, usize)>,
    ) -> std::io::Result<()> {
        let mut touched = Vec::new();
        for (at, member, lines) in members {
            let rolled = self
                .files
                .get(&at)
                .is_some_and(|f| f.size >= MAX_FILE_BYTES);
            if rolled || !self.files.contains_key(&at) {
                let path = self.root.join(event_object_key(
                    &at.0,
                    at.1,
                    &self.writer_id,
                    &counter_seq(self.next_seq),
                ));
                self.files.insert(
                    at.clone(),
                    OpenFile {
                        path,
                        file: None,
                        size: 0,
                    },
                );
            }
            self.next_seq += lines as u64;
            let entry = self.files.get_mut(&at).expect("inserted above");
            if entry.file.is_none() {
                entry.file = Some(open_for_append(&entry.path, &mut entry.size)?);
            }
            let file = entry.file.as_mut().expect("opened above");
            file.write_all(&member)?;
            entry.size += member.len() as u64;
            touched.push(at);
        }
        let files: Vec<&File> = touched
            .iter()
            .filter_map(|at| self.files.get(at).and_then(|f| f.file.as_ref()))
            .collect();
        sync_data_concurrently(&files)?;
        if self.files.len() > MAX_OPEN_FILES {
            self.close();
        }
        Ok(())
    }

    /// Closes every file handle; paths stay, so later flushes append to the same files. After
    /// a failed flush this makes the next one reopen each file and first cut what the
    /// failed write left.
    pub fn close(&mut self) {
        for f in self.files.values_mut() {
            f.file = None;
        }
    }
}

/// Threads that fsync one flush's files: a flush of a month of events touches hundreds of
/// hour files, and the filesystem folds concurrent fsyncs into shared journal commits, where
/// fsyncs one after another each wait for their own.
const SYNC_THREADS: usize = 16;

/// `sync_data` on every file, spread over up to [`SYNC_THREADS`] threads; the first error
/// wins (the caller fails the whole flush, so which one does not matter).
fn sync_data_concurrently(files: &[&File]) -> std::io::Result<()> {
    if files.len() <= 1 {
        return files.iter().try_for_each(|f| f.sync_data());
    }
    let per_thread = files.len().div_ceil(SYNC_THREADS);
    std::thread::scope(|s| {
        let threads: Vec<_> = files
            .chunks(per_thread)
            .map(|chunk| s.spawn(move || chunk.iter().try_for_each(|f| f.sync_data())))
            .collect();
        threads.into_iter().try_for_each(|t| {
            t.join()
                .unwrap_or_else(|_| Err(std::io::Error::other("an fsync thread panicked")))
        })
    })
}

/// Opens an event-log file for appending, creating it and its directory (durably) if needed;
/// `size` is what this writer believes the file holds, and becomes what it does.
fn open_for_append(path: &Path, size: &mut u64) -> std::io::Result<File> {
    let dir = path.parent().expect("event keys have a directory");
    let new_dir = !dir.exists();
    std::fs::create_dir_all(dir)?;
    let file = OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)?;
    let len = file.metadata()?.len();
    if len != *size {
        // Bytes this writer has not written (an earlier process's file) or a write that
        // failed: a torn last member must not get members after it.
        *size = cut_torn_member(path, &file, len)?;
    }
    if new_dir || len == 0 {
        // Make the new directory entries durable too.
        if let Ok(d) = File::open(dir) {
            d.sync_all()?;
        }
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object_store::LocalStore;

    const T: i64 = 1_795_305_000_000; // 2026-11-21T23:50Z
    const HOUR: i64 = 3_600_000;

    #[test]
    fn lines_are_grouped_by_site_and_event_hour_in_arrival_order() {
        // GIVEN lines of two sites across an hour boundary, interleaved
        let mut parts = Partitions::new();
        parts.push("demo", T + HOUR, "d2", 1);
        parts.push("other", T, "o1", 2);
        parts.push("demo", T, "d1", 3);
        parts.push("demo", T + HOUR, "d3", 4);
        // WHEN listed
        let got: Vec<(String, &str, usize, Vec<&str>)> = parts
            .iter()
            .map(|p| (p.key("w", "7"), &*p.site_key, p.first, p.lines.clone()))
            .collect();
        // THEN by site then hour, each with its lines in order and its first line's tag
        assert_eq!(parts.len(), 3);
        assert_eq!(
            got,
            vec![
                (
                    "events/site=demo/date=2026-11-21/hour=23/w-7.jsonl.gz".to_string(),
                    "demo",
                    3,
                    vec!["d1"]
                ),
                (
                    "events/site=demo/date=2026-11-22/hour=00/w-7.jsonl.gz".to_string(),
                    "demo",
                    1,
                    vec!["d2", "d3"]
                ),
                (
                    "events/site=other/date=2026-11-21/hour=23/w-7.jsonl.gz".to_string(),
                    "other",
                    2,
                    vec!["o1"]
                ),
            ]
        );
        // AND each partition is one gzip member of its lines
        let second = parts.iter().nth(1).unwrap();
        let m = gunzip_text(&second.member());
        assert_eq!((m.members, m.text.as_str()), (1, "d2\nd3\n"));
        assert_eq!(counter_seq(42), "000000000042");
    }

    #[test]
    fn content_seqs_depend_on_the_lines_only() {
        let mut a = Partitions::new();
        a.push("demo", T, "x", ());
        a.push("demo", T, "y", ());
        let mut b = Partitions::new();
        b.push("demo", T + 1, "x", ());
        b.push("demo", T + 2, "y", ());
        let mut c = Partitions::new();
        c.push("demo", T, "y", ());
        c.push("demo", T, "x", ());
        let seq = |p: &Partitions<'_>| p.iter().next().unwrap().content_seq();
        assert_eq!(seq(&a), seq(&b));
        assert_ne!(seq(&a), seq(&c));
        // the formula `nectar import` has always used (SHA-256 of the lines, unseparated), so
        // re-importing a file imported by an older version rewrites the same objects
        assert_eq!(seq(&a), "769a4e6d0003189c");
    }

    #[tokio::test]
    async fn objects_are_written_in_order_with_one_result_each() {
        let dir = std::env::temp_dir().join(format!("nectar-elw-{}", rand::random::<u64>()));
        let store = LocalStore::new(&dir);
        let results = put_objects(
            &store,
            vec![
                ("events/a.jsonl.gz".to_string(), Bytes::from_static(b"1")),
                ("../bad".to_string(), Bytes::new()),
                ("events/b.jsonl.gz".to_string(), Bytes::from_static(b"2")),
            ],
        )
        .await;
        assert!(results[0].is_ok() && results[2].is_ok());
        assert!(matches!(results[1], Err(StoreError::InvalidKey(_))));
        assert_eq!(
            store.get("events/b.jsonl.gz").await.unwrap().unwrap(),
            Bytes::from_static(b"2")
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn appends_add_one_member_per_flush_to_the_partition_file() {
        // GIVEN a local writer
        let dir = std::env::temp_dir().join(format!("nectar-elw-{}", rand::random::<u64>()));
        let mut files = AppendFiles::new(&dir, "w");
        // WHEN two flushes touch the same hour, the second also a new one
        let mut one = Partitions::new();
        one.push("demo", T, "a", ());
        one.push("demo", T, "b", ());
        files.append(&one).unwrap();
        let mut two = Partitions::new();
        two.push("demo", T, "c", ());
        two.push("demo", T + HOUR, "d", ());
        files.append(&two).unwrap();
        // THEN the first hour's file (named after the first event) holds two members, and the
        // new hour's file starts at the writer's event count
        let first = dir.join("events/site=demo/date=2026-11-21/hour=23/w-000000000000.jsonl.gz");
        let got = gunzip_text(&std::fs::read(first).unwrap());
        assert_eq!((got.members, got.text.as_str()), (2, "a\nb\nc\n"));
        let second = dir.join("events/site=demo/date=2026-11-22/hour=00/w-000000000003.jsonl.gz");
        assert_eq!(gunzip_text(&std::fs::read(second).unwrap()).text, "d\n");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
