//! Append-only record files: the one home of every local file of records that the embedded
//! backends append to (the model store's histories, the catalog, the admin keys, the
//! registry), one record per line.
//!
//! A crash (kill -9, power loss, a full disk) can leave a partial last line. Appending after
//! it would glue the next record onto the fragment: one line that no reader parses, and a
//! record that was acknowledged is damaged. So the tail is checked before anything is
//! appended: [`RecordFile::open`] cuts a last line that is partial (no newline) or does not
//! parse, and every append first checks that the file still ends with a newline (another
//! process may have crashed mid-append since). What is cut is kept in a sidecar
//! `<file>.torn` (appended to when one exists) and a warning names the file and the bytes cut.
//! Appends and recovery hold an exclusive `flock` on the file, reads a shared one, so another
//! process's append in progress is never mistaken for a torn tail.
//!
//! Durability ([`Durability`]): a write that is acknowledged to someone (an admin key, a
//! catalog upsert, a run record) is fsynced before the call returns, like the event log's
//! group commit; data that can be rebuilt from the event log may be left to the OS.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The suffix of the sidecar that keeps what recovery cut off a file.
pub const TORN_SUFFIX: &str = ".torn";

/// How a complete line of a file is told from a damaged one.
#[derive(Debug, Clone, Copy)]
pub enum LineFormat {
    /// One JSON value per line.
    Json,
    /// Text lines that the function accepts.
    Text(fn(&str) -> bool),
}

impl LineFormat {
    fn accepts(self, line: &[u8]) -> bool {
        match self {
            Self::Json => serde_json::from_slice::<serde::de::IgnoredAny>(line).is_ok(),
            Self::Text(ok) => std::str::from_utf8(line).is_ok_and(ok),
        }
    }
}

/// When an append reaches the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync before the append returns (writes acknowledged to a user).
    Sync,
    /// Left to the OS (data rebuilt from the event log; a crash loses at most the last
    /// appends, never the file).
    Buffered,
}

/// An append-only file of records, one per line; see the module docs.
#[derive(Debug, Clone)]
pub struct RecordFile {
    path: PathBuf,
    format: LineFormat,
    durability: Durability,
}

/// What a read returned: the records, and how many lines were skipped (torn or unparsable).
#[derive(Debug, Clone, PartialEq)]
pub struct Records<T> {
    /// The records, in file order.
    pub records: Vec<T>,
    /// Lines that were not records (a torn tail, a damaged line).
    pub skipped: u64,
}

/// The sidecar of `path` that recovery appends cut bytes to.
pub fn sidecar_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(TORN_SUFFIX);
    PathBuf::from(name)
}

/// Cuts `file` (at `path`) back to its first `keep` bytes, after appending the bytes beyond
/// them to the sidecar `<path>.torn` (a newline is added after a fragment of a line file,
/// `lines`), and logs a warning. Returns the number of bytes cut. The caller holds whatever
/// lock keeps other writers out.
pub fn cut_tail(path: &Path, file: &File, keep: u64, lines: bool) -> io::Result<u64> {
    let len = file.metadata()?.len();
    if keep >= len {
        return Ok(0);
    }
    let mut fragment = vec![0u8; (len - keep) as usize];
    file.read_exact_at(&mut fragment, keep)?;
    if lines && !fragment.ends_with(b"\n") {
        fragment.push(b'\n');
    }
    let side = sidecar_path(path);
    // The sidecar is durable before the file is cut: a crash in between leaves the fragment
    // in both, never in neither.
    let mut s = OpenOptions::new().create(true).append(true).open(&side)?;
    s.write_all(&fragment)?;
    s.sync_data()?;
    file.set_len(keep)?;
    file.sync_all()?;
    let cut = len - keep;
    tracing::warn!(
        file = %path.display(),
        bytes = cut,
        sidecar = %side.display(),
        "Cut a torn tail off a file (a write interrupted by a crash); the bytes are kept in the sidecar."
    );
    Ok(cut)
}

/// The offset of the last `\n` before `end`, reading backwards in chunks.
fn last_newline_before(file: &File, end: u64) -> io::Result<Option<u64>> {
    let mut buf = vec![0u8; 64 << 10];
    let mut hi = end;
    while hi > 0 {
        let lo = hi.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(hi - lo) as usize];
        file.read_exact_at(chunk, lo)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            return Ok(Some(lo + i as u64));
        }
        hi = lo;
    }
    Ok(None)
}

fn ends_with_newline(file: &File, len: u64) -> io::Result<bool> {
    if len == 0 {
        return Ok(true);
    }
    let mut last = [0u8; 1];
    file.read_exact_at(&mut last, len - 1)?;
    Ok(last[0] == b'\n')
}

impl RecordFile {
    /// A handle on `path` (no I/O: appends still check the tail; see [`RecordFile::open`]).
    pub fn new(path: impl Into<PathBuf>, format: LineFormat, durability: Durability) -> Self {
        Self {
            path: path.into(),
            format,
            durability,
        }
    }

    /// A handle on `path` whose tail is recovered now if the file exists (see
    /// [`RecordFile::recover`]): call it where a process starts using a file, so a torn tail
    /// left by a crash is reported at start-up.
    pub fn open(
        path: impl Into<PathBuf>,
        format: LineFormat,
        durability: Durability,
    ) -> io::Result<Self> {
        let f = Self::new(path, format, durability);
        f.recover()?;
        Ok(f)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Cuts a partial or unparsable last line off the file (kept in `<file>.torn`); returns
    /// the bytes cut (0 for a sound or missing file).
    pub fn recover(&self) -> io::Result<u64> {
        let file = match OpenOptions::new().read(true).write(true).open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        file.lock()?;
        self.recover_locked(&file)
    }

    fn recover_locked(&self, file: &File) -> io::Result<u64> {
        let len = file.metadata()?.len();
        if len == 0 {
            return Ok(0);
        }
        let complete_end = if ends_with_newline(file, len)? {
            len
        } else {
            last_newline_before(file, len)?.map_or(0, |p| p + 1)
        };
        let mut keep = complete_end;
        if complete_end > 0 {
            // A whole last line that does not parse is damage too (e.g. a fragment that a
            // record was once glued onto): it goes to the sidecar rather than stay last.
            let start = last_newline_before(file, complete_end - 1)?.map_or(0, |p| p + 1);
            let mut line = vec![0u8; (complete_end - 1 - start) as usize];
            file.read_exact_at(&mut line, start)?;
            if !line.trim_ascii().is_empty() && !self.format.accepts(&line) {
                keep = start;
            }
        }
        cut_tail(&self.path, file, keep, true)
    }

    /// Appends lines (each without its newline) in one write, after checking the tail.
    pub fn append_lines<S: AsRef<str>>(&self, lines: &[S]) -> io::Result<()> {
        let mut buf = Vec::new();
        for l in lines {
            let l = l.as_ref();
            if l.contains('\n') {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "a record line cannot contain a newline",
                ));
            }
            buf.extend_from_slice(l.as_bytes());
            buf.push(b'\n');
        }
        self.append_bytes(&buf)
    }

    /// Appends one record as a JSON line.
    pub fn append<T: Serialize + ?Sized>(&self, record: &T) -> io::Result<()> {
        self.append_all(std::iter::once(record))
    }

    /// Appends records as JSON lines, in one write (one fsync).
    pub fn append_all<'a, T: Serialize + ?Sized + 'a>(
        &self,
        records: impl IntoIterator<Item = &'a T>,
    ) -> io::Result<()> {
        let mut buf = Vec::new();
        for r in records {
            // serde_json escapes newlines inside strings, so one record is one line.
            serde_json::to_writer(&mut buf, r).map_err(io::Error::other)?;
            buf.push(b'\n');
        }
        self.append_bytes(&buf)
    }

    fn append_bytes(&self, buf: &[u8]) -> io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let dir = self.path.parent().filter(|d| !d.as_os_str().is_empty());
        if let Some(d) = dir {
            std::fs::create_dir_all(d)?;
        }
        let existed = self.path.exists();
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&self.path)?;
        file.lock()?;
        let len = file.metadata()?.len();
        if !ends_with_newline(&file, len)? {
            self.recover_locked(&file)?;
        }
        file.write_all(buf)?;
        if self.durability == Durability::Sync {
            file.sync_data()?;
            if !existed {
                // The new directory entry must be durable too.
                if let Some(d) = dir {
                    File::open(d)?.sync_all()?;
                }
            }
        }
        Ok(())
    }

    /// Every complete line that the format accepts; a missing file has none. Partial and
    /// unparsable lines are skipped, counted and reported in one warning; the file is not
    /// changed.
    pub fn read_lines(&self) -> io::Result<Records<String>> {
        self.read_with(|line| {
            self.format
                .accepts(line)
                .then(|| String::from_utf8_lossy(line).into_owned())
        })
    }

    /// Every complete line that parses as a `T` (JSON files).
    pub fn read<T: DeserializeOwned>(&self) -> io::Result<Records<T>> {
        self.read_with(|line| serde_json::from_slice(line).ok())
    }

    fn read_with<T>(&self, parse: impl Fn(&[u8]) -> Option<T>) -> io::Result<Records<T>> {
        let mut out = Records {
            records: Vec::new(),
            skipped: 0,
        };
        let file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e),
        };
        file.lock_shared()?;
        let mut bytes = Vec::new();
        (&file).read_to_end(&mut bytes)?;
        let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
        if complete < bytes.len() {
            out.skipped += 1;
        }
        for line in bytes[..complete].split(|&b| b == b'\n') {
            if line.trim_ascii().is_empty() {
                continue;
            }
            match parse(line) {
                Some(r) => out.records.push(r),
                None => out.skipped += 1,
            }
        }
        if out.skipped > 0 {
            tracing::warn!(
                file = %self.path.display(),
                skipped = out.skipped,
                "Skipped lines that are not whole records (a torn or damaged line)."
            );
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("nectar-rf-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[derive(Debug, Serialize, serde::Deserialize, PartialEq)]
    struct Rec {
        id: String,
        n: u32,
    }

    fn rec(id: &str, n: u32) -> Rec {
        Rec { id: id.into(), n }
    }

    fn cut_mid_line(path: &Path, drop: u64) {
        let len = std::fs::metadata(path).unwrap().len();
        let f = OpenOptions::new().write(true).open(path).unwrap();
        f.set_len(len - drop).unwrap();
    }

    #[test]
    fn a_torn_last_line_is_cut_to_the_sidecar_before_the_next_append() {
        let dir = temp_dir();
        let path = dir.join("items.jsonl");
        // GIVEN three records, the last one torn by a crash mid-append
        let f = RecordFile::open(&path, LineFormat::Json, Durability::Sync).unwrap();
        f.append_all(&[rec("a", 1), rec("b", 2)]).unwrap();
        f.append(&rec("c", 3)).unwrap();
        cut_mid_line(&path, 5);
        // WHEN the file is reopened (a restart) and a record is appended
        let f = RecordFile::open(&path, LineFormat::Json, Durability::Sync).unwrap();
        f.append(&rec("d", 4)).unwrap();
        // THEN every line parses, the new record is intact, the fragment is in the sidecar
        let text = std::fs::read_to_string(&path).unwrap();
        for line in text.lines() {
            serde_json::from_str::<Rec>(line).unwrap();
        }
        let got = f.read::<Rec>().unwrap();
        assert_eq!(got.records, vec![rec("a", 1), rec("b", 2), rec("d", 4)]);
        assert_eq!(got.skipped, 0);
        let torn = std::fs::read_to_string(sidecar_path(&path)).unwrap();
        assert_eq!(torn, "{\"id\":\"c\",\"n\n");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn an_append_recovers_a_tail_torn_after_the_file_was_opened() {
        let dir = temp_dir();
        let path = dir.join("runs.jsonl");
        // GIVEN a handle opened on a sound file, then another process crashes mid-append
        let f = RecordFile::open(&path, LineFormat::Json, Durability::Buffered).unwrap();
        f.append(&rec("a", 1)).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"id\":\"x")
            .unwrap();
        // WHEN the handle appends again
        f.append(&rec("b", 2)).unwrap();
        // THEN the fragment went to the sidecar and both records are whole; a second
        // recovery appends to the sidecar
        assert_eq!(
            f.read::<Rec>().unwrap().records,
            vec![rec("a", 1), rec("b", 2)]
        );
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"id\":\"y")
            .unwrap();
        assert_eq!(f.recover().unwrap(), 8);
        let torn = std::fs::read_to_string(sidecar_path(&path)).unwrap();
        assert_eq!(torn, "{\"id\":\"x\n{\"id\":\"y\n");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn an_unparsable_whole_last_line_is_cut_and_a_sound_file_is_left_alone() {
        let dir = temp_dir();
        let path = dir.join("history.jsonl");
        // GIVEN a fragment that a record was glued onto (the damage of the old appender)
        std::fs::write(
            &path,
            "{\"id\":\"a\",\"n\":1}\n{\"id\":\"b{\"id\":\"c\",\"n\":3}\n",
        )
        .unwrap();
        let f = RecordFile::new(&path, LineFormat::Json, Durability::Sync);
        // WHEN read: the damaged line is skipped and counted, the file unchanged
        let got = f.read::<Rec>().unwrap();
        assert_eq!((got.records.len(), got.skipped), (1, 1));
        // WHEN recovered: the damaged line goes to the sidecar; again: nothing to cut
        assert_eq!(f.recover().unwrap(), 25);
        assert_eq!(f.recover().unwrap(), 0);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"id\":\"a\",\"n\":1}\n"
        );
        // a missing file is not an error and has no records
        let none =
            RecordFile::open(dir.join("nope.jsonl"), LineFormat::Json, Durability::Sync).unwrap();
        assert!(none.read::<Rec>().unwrap().records.is_empty());
        assert!(!dir.join("nope.jsonl").exists());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn text_files_use_their_own_line_check() {
        let dir = temp_dir();
        let path = dir.join("keys.txt");
        let f = RecordFile::new(
            &path,
            LineFormat::Text(|l| l.split_whitespace().count() == 2),
            Durability::Sync,
        );
        f.append_lines(&["h1 demo", "h2 demo"]).unwrap();
        // GIVEN a torn line with no field separator yet
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"h3")
            .unwrap();
        assert_eq!(f.read_lines().unwrap().skipped, 1);
        f.append_lines(&["h4 other"]).unwrap();
        assert_eq!(
            f.read_lines().unwrap().records,
            vec!["h1 demo", "h2 demo", "h4 other"]
        );
        assert!(f.append_lines(&["a\nb"]).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_file_torn_inside_its_only_line_is_emptied() {
        let dir = temp_dir();
        let path = dir.join("one.jsonl");
        std::fs::write(&path, "{\"id\":").unwrap();
        let f = RecordFile::open(&path, LineFormat::Json, Durability::Sync).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
        f.append(&rec("a", 1)).unwrap();
        assert_eq!(f.read::<Rec>().unwrap().records, vec![rec("a", 1)]);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
