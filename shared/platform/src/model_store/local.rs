//! The embedded model store: `<data-dir>/models/site=<site>/model=<task>/v<version>/…` files and
//! a `current` pointer file (the twin of the Redis pointer, which `nectar dev` watches).
//!
//! A version is written into a temporary directory that is renamed to `v<version>` when every
//! file is in place; the pointer is then replaced atomically (temp file + rename). Superseded
//! versions stay on disk until more than `keep_versions` exist (no TTLs on files).
//!
//! Recent histories are served from memory: each site's is read once from
//! `<data-dir>/models/site=<site>/history.json` (a snapshot) plus `history.jsonl` (one line per
//! update, holding the user's whole new list, so replaying is idempotent; a
//! [`RecordFile`], so a line torn by a crash is cut to `history.jsonl.torn` when the site is
//! loaded); an update appends one line, and the log is folded into the snapshot when it grows. Hourly interaction counts
//! (real-time trending) live in memory only: a restart of `nectar dev` forgets them, and the
//! trained trending list is served alone until new events arrive.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::record_file::{Durability, LineFormat, RecordFile};

mod forget;

use super::{
    f32s_to_le, le_to_f32s, Factors, ModelArtifacts, ModelItems, ModelStore, ModelStoreError,
    PublishOptions, Scored, UserState, VersionMeta, COUNTS_TTL_SECS, HOUR_MS, ITEM_CHUNK_ROWS,
    USER_CHUNK_ROWS,
};

/// What tells one version of a file from the next: its modification time alone does not (two
/// writes within the file system's timestamp granularity share it), so the inode (a file
/// written next to it and renamed over it has a new one) and the length go with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    modified: std::time::SystemTime,
    len: u64,
    inode: u64,
}

impl FileStamp {
    fn of(path: &Path) -> Option<Self> {
        let m = std::fs::metadata(path).ok()?;
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(&m);
        #[cfg(not(unix))]
        let inode = 0;
        Some(Self {
            modified: m.modified().ok()?,
            len: m.len(),
            inode,
        })
    }
}

/// How long a cached [`UserIndex`] is served before `meta.json`'s stamp is looked at again
/// (one `stat` per request cost a sixth of a request's system calls). An erasure by this
/// store drops the entry at once; another process's (`nectar forget`) is seen within this.
const USER_INDEX_RECHECK: std::time::Duration = std::time::Duration::from_millis(100);

/// Per-user data of one version, loaded once per version.
#[derive(Debug)]
struct UserIndex {
    /// `meta.json`'s stamp when loaded: an erasure rewrites it last (a new file renamed over
    /// it), so another process's `nectar forget` invalidates this cache.
    meta_stamp: Option<FileStamp>,
    /// When the stamp was last found unchanged.
    checked: Mutex<std::time::Instant>,
    /// foldhash: built once per version from the version's own user list, looked up per request.
    rows: HashMap<String, usize, foldhash::fast::RandomState>,
    factors: Option<Factors>,
    top: Option<Vec<Vec<Scored>>>,
}

/// The file stem of the recent histories.
const HISTORY_LIST: &str = "history";
/// The file stem of the negative-feedback lists (items a user disliked or dismissed).
const REJECTED_LIST: &str = "rejected";

/// Per-user indexes by (site, model, version).
type UserCache = HashMap<(String, String, u64), Arc<UserIndex>>;

/// Recent histories of one site, as loaded: user → items, newest first.
#[derive(Debug)]
struct SiteHistory {
    /// SipHash (std's default): collected events insert these keys, so a client chooses them.
    users: HashMap<String, Vec<String>>,
    /// `history.jsonl`, opened (its torn tail cut) when the site was loaded.
    log: RecordFile,
    /// Lines in `history.jsonl` (folded into the snapshot when it outgrows the users).
    log_lines: usize,
}

/// Hourly counts per site: hour start → item → count.
type SiteCounts = HashMap<String, std::collections::BTreeMap<i64, HashMap<String, u64>>>;

/// Models as files under `<data-dir>/models/`.
#[derive(Debug, Clone)]
pub struct LocalModelStore {
    root: PathBuf,
    users: Arc<Mutex<UserCache>>,
    history: Arc<Mutex<HashMap<String, SiteHistory>>>,
    counts: Arc<Mutex<SiteCounts>>,
    pub(super) bandit: Arc<Mutex<super::local_bandit::LocalBandit>>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ModelStoreError + '_ {
    move |source| ModelStoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn read_opt(path: &Path) -> Result<Option<Vec<u8>>, ModelStoreError> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(path)(e)),
    }
}

fn json_opt<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, ModelStoreError> {
    match read_opt(path)? {
        None => Ok(None),
        Some(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| ModelStoreError::Corrupt {
                key: path.display().to_string(),
                problem: e.to_string(),
            }),
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), ModelStoreError> {
    std::fs::write(path, bytes).map_err(io(path))
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ModelStoreError> {
    use std::io::Write;
    let tmp = path.with_extension(format!("tmp-{}", rand::random::<u64>()));
    let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(bytes).map_err(io(&tmp))?;
    f.sync_data().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

fn to_json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("model data serialises to JSON")
}

impl LocalModelStore {
    /// A store under `<data_dir>/models/`.
    pub fn new(data_dir: impl AsRef<Path>) -> Self {
        Self {
            root: data_dir.as_ref().join("models"),
            users: Arc::default(),
            history: Arc::default(),
            counts: Arc::default(),
            bandit: Arc::default(),
        }
    }

    /// `<data-dir>/models/site=<site>/model=<model>`.
    pub fn model_dir(&self, site: &str, model: &str) -> PathBuf {
        self.root
            .join(format!("site={site}"))
            .join(format!("model={model}"))
    }

    /// The pointer file of a model (watch it to pick up new versions).
    pub fn pointer_path(&self, site: &str, model: &str) -> PathBuf {
        self.model_dir(site, model).join("current")
    }

    fn version_dir(&self, site: &str, model: &str, version: u64) -> PathBuf {
        self.model_dir(site, model).join(format!("v{version}"))
    }

    /// A per-user list's snapshot: `history.json` (recent items) or `rejected.json` (negative
    /// feedback), kept the same way.
    fn history_path(&self, site: &str, list: &str) -> PathBuf {
        self.root
            .join(format!("site={site}"))
            .join(format!("{list}.json"))
    }

    fn history_log_path(&self, site: &str, list: &str) -> PathBuf {
        self.root
            .join(format!("site={site}"))
            .join(format!("{list}.jsonl"))
    }

    /// Prepends items to one of a user's lists (newest first), keeping `max_len`.
    fn append_list(
        &self,
        site: &str,
        list: &str,
        user: &str,
        items: &[String],
        max_len: usize,
    ) -> Result<(), ModelStoreError> {
        if items.is_empty() {
            return Ok(());
        }
        self.with_history(site, list, |h| {
            let mut new: Vec<String> = items.iter().rev().cloned().collect();
            if let Some(old) = h.users.get(user) {
                new.extend(old.iter().cloned());
            }
            new.truncate(max_len.max(1));
            let p = self.history_log_path(site, list);
            h.log.append(&(user, &new)).map_err(io(&p))?;
            h.users.insert(user.to_string(), new);
            h.log_lines += 1;
            if h.log_lines > 2 * h.users.len() + 1000 {
                // Fold the log into the snapshot: snapshot first, then drop the log (a crash
                // in between only replays lines the snapshot already has).
                write_atomic(&self.history_path(site, list), &to_json(&h.users))?;
                std::fs::remove_file(&p).map_err(io(&p))?;
                h.log_lines = 0;
            }
            Ok(())
        })
    }

    /// Runs `f` on a site's histories, loading them from disk on first use.
    fn with_history<R>(
        &self,
        site: &str,
        list: &str,
        f: impl FnOnce(&mut SiteHistory) -> Result<R, ModelStoreError>,
    ) -> Result<R, ModelStoreError> {
        let mut all = self.history.lock().expect("history lock");
        let key = format!("{site}/{list}");
        if !all.contains_key(&key) {
            let loaded = self.load_history(site, list)?;
            all.insert(key.clone(), loaded);
        }
        f(all.get_mut(&key).expect("inserted above"))
    }

    fn load_history(&self, site: &str, list: &str) -> Result<SiteHistory, ModelStoreError> {
        let p = self.history_log_path(site, list);
        // Histories are rebuilt from the event log's interactions, so appends are not fsynced
        // (one fsync per user per collect would cost more than the collect itself).
        let log = RecordFile::open(&p, LineFormat::Json, Durability::Buffered).map_err(io(&p))?;
        let mut h = SiteHistory {
            users: json_opt(&self.history_path(site, list))?.unwrap_or_default(),
            log,
            log_lines: 0,
        };
        for (user, items) in h
            .log
            .read::<(String, Vec<String>)>()
            .map_err(io(&p))?
            .records
        {
            h.users.insert(user, items);
            h.log_lines += 1;
        }
        Ok(h)
    }

    /// The versions on disk, newest first.
    pub fn versions(&self, site: &str, model: &str) -> Result<Vec<u64>, ModelStoreError> {
        let dir = self.model_dir(site, model);
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(&dir)(e)),
        };
        let mut out = Vec::new();
        for e in entries {
            let e = e.map_err(io(&dir))?;
            if let Some(v) = e
                .file_name()
                .to_str()
                .and_then(|n| n.strip_prefix('v'))
                .and_then(|n| n.parse::<u64>().ok())
            {
                out.push(v);
            }
        }
        out.sort_unstable_by(|a, b| b.cmp(a));
        Ok(out)
    }

    fn read_current(&self, site: &str, model: &str) -> Result<Option<u64>, ModelStoreError> {
        let p = self.pointer_path(site, model);
        match read_opt(&p)? {
            None => Ok(None),
            Some(b) => String::from_utf8_lossy(&b)
                .trim()
                .parse::<u64>()
                .map(Some)
                .map_err(|e| ModelStoreError::Corrupt {
                    key: p.display().to_string(),
                    problem: e.to_string(),
                }),
        }
    }

    fn publish_blocking(
        &self,
        site: &str,
        model: &str,
        version: u64,
        a: &ModelArtifacts,
        options: &PublishOptions,
    ) -> Result<(), ModelStoreError> {
        a.validate().map_err(ModelStoreError::InvalidArtifacts)?;
        if let Some(current) = self.read_current(site, model)? {
            if current >= version {
                return Err(ModelStoreError::StaleVersion { version, current });
            }
        }
        let mdir = self.model_dir(site, model);
        std::fs::create_dir_all(&mdir).map_err(io(&mdir))?;
        let tmp = mdir.join(format!(".tmp-v{version}-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        let result = (|| {
            write_file(&tmp.join("items.json"), &to_json(&a.item_ids))?;
            if let Some(f) = &a.item_factors {
                write_file(&tmp.join("item_factors.f32"), &f32s_to_le(&f.data))?;
            }
            write_file(&tmp.join("popular.json"), &to_json(&a.popular))?;
            if let Some(s) = &a.similar {
                write_file(&tmp.join("similar.json"), &to_json(s))?;
            }
            write_file(&tmp.join("users.json"), &to_json(&a.user_ids))?;
            if let Some(f) = &a.user_factors {
                write_file(&tmp.join("user_factors.f32"), &f32s_to_le(&f.data))?;
            }
            if let Some(t) = &a.user_top {
                write_file(&tmp.join("user_top.json"), &to_json(t))?;
            }
            let meta = VersionMeta {
                version,
                items: a.item_ids.len(),
                dim: a.item_factors.as_ref().map(|f| f.dim),
                chunk_rows: ITEM_CHUNK_ROWS,
                has_similar: a.similar.is_some(),
                users: a.user_ids.len(),
                user_dim: a.user_factors.as_ref().map(|f| f.dim),
                has_user_top: a.user_top.is_some(),
                user_chunk_rows: USER_CHUNK_ROWS,
                published_ms: crate::now_ms(),
                metadata: a.metadata.clone(),
            };
            write_atomic(&tmp.join("meta.json"), &to_json(&meta))?;
            let dest = self.version_dir(site, model, version);
            if dest.exists() {
                // A leftover of a run that failed before switching the pointer.
                std::fs::remove_dir_all(&dest).map_err(io(&dest))?;
            }
            std::fs::rename(&tmp, &dest).map_err(io(&dest))
        })();
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        result?;
        write_atomic(
            &self.pointer_path(site, model),
            version.to_string().as_bytes(),
        )?;
        // Superseded versions beyond keep_versions go; the pointer never names them.
        let mut replaced = vec![version];
        for old in self
            .versions(site, model)?
            .into_iter()
            .filter(|&v| v != version)
            .skip(options.keep_versions.saturating_sub(1))
        {
            let d = self.version_dir(site, model, old);
            let _ = std::fs::remove_dir_all(&d);
            replaced.push(old);
        }
        // This store's own cache forgets them at once (other processes' within
        // USER_INDEX_RECHECK).
        let mut cache = self.users.lock().expect("cache lock");
        for v in replaced {
            cache.remove(&(site.to_string(), model.to_string(), v));
        }
        Ok(())
    }

    fn load_items_blocking(
        &self,
        site: &str,
        model: &str,
        version: u64,
    ) -> Result<Option<ModelItems>, ModelStoreError> {
        let dir = self.version_dir(site, model, version);
        let Some(meta) = json_opt::<VersionMeta>(&dir.join("meta.json"))? else {
            return Ok(None);
        };
        // Each file may vanish if the version is deleted meanwhile: then the version is gone.
        let Some(item_ids) = json_opt::<Vec<String>>(&dir.join("items.json"))? else {
            return Ok(None);
        };
        let item_factors = match meta.dim {
            None => None,
            Some(dim) => {
                let p = dir.join("item_factors.f32");
                let Some(b) = read_opt(&p)? else {
                    return Ok(None);
                };
                let data = le_to_f32s(&b)
                    .filter(|d| d.len() == dim * meta.items)
                    .ok_or_else(|| ModelStoreError::Corrupt {
                        key: p.display().to_string(),
                        problem: "wrong size".into(),
                    })?;
                Some(Factors { dim, data })
            }
        };
        let Some(popular) = json_opt::<Vec<Scored>>(&dir.join("popular.json"))? else {
            return Ok(None);
        };
        let similar = if meta.has_similar {
            match json_opt::<Vec<Vec<Scored>>>(&dir.join("similar.json"))? {
                None => return Ok(None),
                s => s,
            }
        } else {
            None
        };
        Ok(Some(ModelItems {
            version,
            item_ids,
            item_factors,
            popular,
            similar,
            metadata: meta.metadata,
        }))
    }

    fn user_index(
        &self,
        site: &str,
        model: &str,
        version: u64,
    ) -> Result<Option<Arc<UserIndex>>, ModelStoreError> {
        let key = (site.to_string(), model.to_string(), version);
        let cached = self.users.lock().expect("cache lock").get(&key).cloned();
        if let Some(ix) = &cached {
            if ix.checked.lock().expect("stamp lock").elapsed() < USER_INDEX_RECHECK {
                return Ok(cached);
            }
        }
        let dir = self.version_dir(site, model, version);
        let meta_stamp = FileStamp::of(&dir.join("meta.json"));
        if let Some(ix) = cached {
            // Another process may have deleted the version (or erased a user) since it was
            // cached.
            if meta_stamp.is_some() && ix.meta_stamp == meta_stamp {
                *ix.checked.lock().expect("stamp lock") = std::time::Instant::now();
                return Ok(Some(ix));
            }
        }
        let Some(meta) = json_opt::<VersionMeta>(&dir.join("meta.json"))? else {
            return Ok(None);
        };
        let ids = json_opt::<Vec<String>>(&dir.join("users.json"))?.unwrap_or_default();
        let factors = match meta.user_dim {
            None => None,
            Some(dim) => {
                let p = dir.join("user_factors.f32");
                read_opt(&p)?
                    .and_then(|b| le_to_f32s(&b))
                    .map(|data| Factors { dim, data })
            }
        };
        let top = if meta.has_user_top {
            json_opt::<Vec<Vec<Scored>>>(&dir.join("user_top.json"))?
        } else {
            None
        };
        let ix = Arc::new(UserIndex {
            meta_stamp,
            checked: Mutex::new(std::time::Instant::now()),
            rows: ids.into_iter().enumerate().map(|(i, u)| (u, i)).collect(),
            factors,
            top,
        });
        let mut cache = self.users.lock().expect("cache lock");
        if cache.len() >= 8 {
            cache.clear();
        }
        cache.insert(key, ix.clone());
        Ok(Some(ix))
    }
}

impl ModelStore for LocalModelStore {
    async fn publish(
        &self,
        site: &str,
        model: &str,
        version: u64,
        artifacts: &ModelArtifacts,
        options: &PublishOptions,
    ) -> Result<(), ModelStoreError> {
        // The embedded twin writes synchronously: it runs on a developer's machine, and the
        // artifacts are borrowed (no copy of the factors into a blocking task).
        self.publish_blocking(site, model, version, artifacts, options)
    }

    async fn current_version(
        &self,
        site: &str,
        model: &str,
    ) -> Result<Option<u64>, ModelStoreError> {
        self.read_current(site, model)
    }

    async fn load_items(
        &self,
        site: &str,
        model: &str,
        version: u64,
    ) -> Result<Option<ModelItems>, ModelStoreError> {
        let this = self.clone();
        let (site, model) = (site.to_string(), model.to_string());
        tokio::task::spawn_blocking(move || this.load_items_blocking(&site, &model, version))
            .await
            .expect("model loader task panicked")
    }

    async fn user_states(
        &self,
        site: &str,
        model: &str,
        version: u64,
        users: &[String],
    ) -> Result<Vec<UserState>, ModelStoreError> {
        let ix = self.user_index(site, model, version)?;
        let lists = |list: &str| -> Result<Vec<Vec<String>>, ModelStoreError> {
            self.with_history(site, list, |h| {
                Ok(users
                    .iter()
                    .map(|u| h.users.get(u).cloned().unwrap_or_default())
                    .collect())
            })
        };
        let histories = lists(HISTORY_LIST)?;
        let rejected = lists(REJECTED_LIST)?;
        Ok(users
            .iter()
            .zip(histories)
            .zip(rejected)
            .map(|((u, history), rejected)| {
                let row = ix.as_ref().and_then(|ix| ix.rows.get(u).copied());
                UserState {
                    factors: row.and_then(|r| {
                        let f = ix.as_ref()?.factors.as_ref()?;
                        Some(f.row(r).to_vec())
                    }),
                    top: row.and_then(|r| ix.as_ref()?.top.as_ref()?.get(r).cloned()),
                    history,
                    rejected,
                }
            })
            .collect())
    }

    async fn set_current(
        &self,
        site: &str,
        model: &str,
        version: u64,
        _options: &PublishOptions,
    ) -> Result<bool, ModelStoreError> {
        let dir = self.version_dir(site, model, version);
        if !dir.join("meta.json").exists() {
            return Ok(false);
        }
        write_atomic(
            &self.pointer_path(site, model),
            version.to_string().as_bytes(),
        )?;
        Ok(true)
    }

    async fn append_history(
        &self,
        site: &str,
        user: &str,
        items: &[String],
        max_len: usize,
    ) -> Result<(), ModelStoreError> {
        self.append_list(site, HISTORY_LIST, user, items, max_len)
    }

    async fn append_rejected(
        &self,
        site: &str,
        user: &str,
        items: &[String],
        max_len: usize,
    ) -> Result<(), ModelStoreError> {
        self.append_list(site, REJECTED_LIST, user, items, max_len)
    }

    async fn add_item_counts(
        &self,
        site: &str,
        counts: &[(i64, String, u64)],
    ) -> Result<(), ModelStoreError> {
        let mut all = self.counts.lock().expect("counts lock");
        let site_counts = all.entry(site.to_string()).or_default();
        for (hour, item, n) in counts {
            *site_counts
                .entry(*hour)
                .or_default()
                .entry(item.clone())
                .or_default() += n;
        }
        // Buckets older than the TTL (after the newest) are dropped, as Redis expires them.
        if let Some(&newest) = site_counts.keys().next_back() {
            let keep_from = newest - COUNTS_TTL_SECS * 1000 + HOUR_MS;
            site_counts.retain(|&h, _| h >= keep_from);
        }
        Ok(())
    }

    async fn item_counts(
        &self,
        site: &str,
        hours: &[i64],
    ) -> Result<Vec<HashMap<String, u64>>, ModelStoreError> {
        let all = self.counts.lock().expect("counts lock");
        let site_counts = all.get(site);
        Ok(hours
            .iter()
            .map(|h| {
                site_counts
                    .and_then(|c| c.get(h))
                    .cloned()
                    .unwrap_or_default()
            })
            .collect())
    }

    async fn forget_user(
        &self,
        site: &str,
        user: &str,
    ) -> Result<super::ForgetReport, ModelStoreError> {
        self.forget_blocking(site, user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn local_store_passes_the_contract() {
        let dir = std::env::temp_dir().join(format!("nectar-ms-{}", rand::random::<u64>()));
        let store = LocalModelStore::new(&dir);
        super::super::contract::model_store_contract(&store, "contract").await;
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn local_store_passes_the_forget_contract_and_no_file_names_the_user() {
        let dir = std::env::temp_dir().join(format!("nectar-ms-{}", rand::random::<u64>()));
        let store = LocalModelStore::new(&dir);
        super::super::forget_contract::forget_contract(&store).await;
        // THEN no file under models/ still holds the erased id (as a JSON string)
        let mut stack = vec![dir.join("models")];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    let text = String::from_utf8_lossy(&std::fs::read(&p).unwrap()).to_string();
                    assert!(!text.contains("\"u1\""), "{} names u1", p.display());
                }
            }
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_forget_by_another_process_is_seen_by_a_store_that_cached_the_version() {
        let dir = std::env::temp_dir().join(format!("nectar-ms-{}", rand::random::<u64>()));
        let serving = LocalModelStore::new(&dir);
        let a = super::super::contract::artifacts(1, 5, 3);
        serving
            .publish("demo", "als", 1, &a, &PublishOptions::default())
            .await
            .unwrap();
        // GIVEN a serving store that has loaded u1's factors
        let u1 = || super::super::user_state(&serving, "demo", "als", 1, "u1");
        assert!(u1().await.unwrap().factors.is_some());
        // WHEN another store (nectar forget) erases u1
        LocalModelStore::new(&dir)
            .forget_user("demo", "u1")
            .await
            .unwrap();
        // THEN once the cache's re-check interval has passed, the serving store no longer
        // answers with them
        tokio::time::sleep(USER_INDEX_RECHECK).await;
        assert_eq!(u1().await.unwrap().factors, None);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn local_readers_see_one_complete_version_while_publishing() {
        let dir = std::env::temp_dir().join(format!("nectar-ms-{}", rand::random::<u64>()));
        let store = LocalModelStore::new(&dir);
        super::super::contract::concurrent_publish_contract(&store, "concurrent", 12).await;
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_torn_history_line_is_cut_on_restart_and_the_next_update_is_intact() {
        let dir = std::env::temp_dir().join(format!("nectar-ms-{}", rand::random::<u64>()));
        let hist = |s: &LocalModelStore, u: &str, items: &[&str]| {
            let s = s.clone();
            let (u, items) = (
                u.to_string(),
                items.iter().map(|i| i.to_string()).collect::<Vec<_>>(),
            );
            async move { s.append_history("demo", &u, &items, 10).await.unwrap() }
        };
        // GIVEN two users' updates, the second torn mid-line by a crash
        let store = LocalModelStore::new(&dir);
        hist(&store, "u1", &["a"]).await;
        hist(&store, "u2", &["b"]).await;
        let path = dir.join("models/site=demo/history.jsonl");
        let len = std::fs::metadata(&path).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 4)
            .unwrap();
        // WHEN nectar dev restarts and a third user's update is appended
        let store = LocalModelStore::new(&dir);
        hist(&store, "u3", &["c", "d"]).await;
        // THEN every line parses, the new record is intact, the fragment is in the sidecar
        let text = std::fs::read_to_string(&path).unwrap();
        let users: Vec<String> = text
            .lines()
            .map(|l| serde_json::from_str::<(String, Vec<String>)>(l).unwrap().0)
            .collect();
        assert_eq!(users, vec!["u1", "u3"]);
        assert!(dir.join("models/site=demo/history.jsonl.torn").exists());
        let again = LocalModelStore::new(&dir);
        let states = again
            .user_states("demo", "als", 1, &["u1".into(), "u2".into(), "u3".into()])
            .await
            .unwrap();
        let h: Vec<Vec<String>> = states.into_iter().map(|s| s.history).collect();
        assert_eq!(h, vec![vec!["a"], vec![], vec!["d", "c"]]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn local_layout_has_pointer_and_version_dirs() {
        let dir = std::env::temp_dir().join(format!("nectar-ms-{}", rand::random::<u64>()));
        let store = LocalModelStore::new(&dir);
        let a = super::super::contract::artifacts(7, 5, 3);
        store
            .publish("demo", "als", 7, &a, &PublishOptions::default())
            .await
            .unwrap();
        let m = dir.join("models/site=demo/model=als");
        assert_eq!(std::fs::read_to_string(m.join("current")).unwrap(), "7");
        assert!(m.join("v7/meta.json").exists());
        assert_eq!(
            std::fs::metadata(m.join("v7/item_factors.f32"))
                .unwrap()
                .len(),
            5 * 3 * 4
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
