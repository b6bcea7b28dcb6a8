//! The embedded model store: `<data-dir>/models/site=<site>/model=<task>/v<version>/…` files and
//! a `current` pointer file (the twin of the Redis pointer, which `nectar dev` watches).
//!
//! A version is written into a temporary directory that is renamed to `v<version>` when every
//! file is in place; the pointer is then replaced atomically (temp file + rename). Superseded
//! versions stay on disk until more than `keep_versions` exist (no TTLs on files).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::{
    f32s_to_le, le_to_f32s, Factors, ModelArtifacts, ModelItems, ModelStore, ModelStoreError,
    PublishOptions, Scored, UserState, VersionMeta, ITEM_CHUNK_ROWS, USER_CHUNK_ROWS,
};

/// Per-user data of one version, loaded once per version.
#[derive(Debug)]
struct UserIndex {
    rows: HashMap<String, usize>,
    factors: Option<Factors>,
    top: Option<Vec<Vec<Scored>>>,
}

/// Per-user indexes by (site, model, version).
type UserCache = HashMap<(String, String, u64), Arc<UserIndex>>;

/// Models as files under `<data-dir>/models/`.
#[derive(Debug, Clone)]
pub struct LocalModelStore {
    root: PathBuf,
    users: Arc<Mutex<UserCache>>,
    history_lock: Arc<tokio::sync::Mutex<()>>,
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
            history_lock: Arc::default(),
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

    fn history_path(&self, site: &str) -> PathBuf {
        self.root.join(format!("site={site}")).join("history.json")
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
        for old in self
            .versions(site, model)?
            .into_iter()
            .filter(|&v| v != version)
            .skip(options.keep_versions.saturating_sub(1))
        {
            let d = self.version_dir(site, model, old);
            let _ = std::fs::remove_dir_all(&d);
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
        let dir = self.version_dir(site, model, version);
        if let Some(ix) = self.users.lock().expect("cache lock").get(&key) {
            // Another process may have deleted the version since it was cached.
            if dir.join("meta.json").exists() {
                return Ok(Some(ix.clone()));
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

    fn read_history(&self, site: &str) -> Result<HashMap<String, Vec<String>>, ModelStoreError> {
        Ok(json_opt(&self.history_path(site))?.unwrap_or_default())
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
        let history = self.read_history(site)?;
        Ok(users
            .iter()
            .map(|u| {
                let row = ix.as_ref().and_then(|ix| ix.rows.get(u).copied());
                UserState {
                    factors: row.and_then(|r| {
                        let f = ix.as_ref()?.factors.as_ref()?;
                        Some(f.row(r).to_vec())
                    }),
                    top: row.and_then(|r| ix.as_ref()?.top.as_ref()?.get(r).cloned()),
                    history: history.get(u).cloned().unwrap_or_default(),
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
        let _guard = self.history_lock.lock().await;
        let mut all = self.read_history(site)?;
        let h = all.entry(user.to_string()).or_default();
        let mut new: Vec<String> = items.iter().rev().cloned().collect();
        new.append(h);
        new.truncate(max_len);
        *h = new;
        let p = self.history_path(site);
        let dir = p.parent().expect("history has a parent");
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        write_atomic(&p, &to_json(&all))
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn local_readers_see_one_complete_version_while_publishing() {
        let dir = std::env::temp_dir().join(format!("nectar-ms-{}", rand::random::<u64>()));
        let store = LocalModelStore::new(&dir);
        super::super::contract::concurrent_publish_contract(&store, "concurrent", 12).await;
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
