//! The object store port (the event log's home) with its S3 and local-directory adapters.

use std::future::Future;
use std::path::{Path, PathBuf};

use bytes::Bytes;

#[cfg(feature = "s3")]
mod s3;
#[cfg(feature = "s3")]
pub use self::s3::S3Store;

/// An object store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The key is not usable (absolute, `..`, empty).
    #[error("invalid object key {0:?}")]
    InvalidKey(String),
    /// Local file I/O failed.
    #[error("local object store I/O on {path}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// An S3 call failed.
    #[error("S3 {op} {key} failed")]
    S3 {
        /// The operation.
        op: &'static str,
        /// The key or prefix.
        key: String,
        /// The SDK error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// A listed object: its key and size in bytes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ObjectMeta {
    /// The key.
    pub key: String,
    /// Size in bytes (grows when a local event-log file is appended to).
    pub size: u64,
}

/// A flat key → bytes store.
pub trait ObjectStore: Send + Sync {
    /// Writes (or overwrites) an object atomically.
    fn put(&self, key: &str, body: Bytes) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Reads an object; `None` if it does not exist.
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<Bytes>, StoreError>> + Send;
    /// Lists every key under a prefix, in lexical order.
    fn list(&self, prefix: &str) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;
    /// Lists every object under a prefix with its size, in lexical order. The default reads
    /// each object; the adapters answer from the listing (S3) or the file system.
    fn list_meta(
        &self,
        prefix: &str,
    ) -> impl Future<Output = Result<Vec<ObjectMeta>, StoreError>> + Send {
        async move {
            let mut out = Vec::new();
            for key in self.list(prefix).await? {
                if let Some(body) = self.get(&key).await? {
                    out.push(ObjectMeta {
                        key,
                        size: body.len() as u64,
                    });
                }
            }
            Ok(out)
        }
    }
}

fn check_key(key: &str) -> Result<(), StoreError> {
    if key.is_empty() || key.starts_with('/') || key.split('/').any(|p| p == ".." || p == ".") {
        return Err(StoreError::InvalidKey(key.to_string()));
    }
    Ok(())
}

/// Objects as files under a root directory (the local twin of the S3 bucket).
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    /// A store rooted at `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
        move |source| StoreError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

impl ObjectStore for LocalStore {
    async fn put(&self, key: &str, body: Bytes) -> Result<(), StoreError> {
        check_key(key)?;
        let path = self.root.join(key);
        tokio::task::spawn_blocking(move || {
            use std::io::Write;
            let dir = path
                .parent()
                .expect("a checked key has a parent under the root");
            std::fs::create_dir_all(dir).map_err(LocalStore::io(dir))?;
            let tmp = path.with_extension(format!("tmp-{}", rand::random::<u64>()));
            let mut f = std::fs::File::create(&tmp).map_err(LocalStore::io(&tmp))?;
            f.write_all(&body).map_err(LocalStore::io(&tmp))?;
            f.sync_data().map_err(LocalStore::io(&tmp))?;
            std::fs::rename(&tmp, &path).map_err(LocalStore::io(&path))?;
            Ok(())
        })
        .await
        .expect("local store writer task panicked")
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        check_key(key)?;
        let path = self.root.join(key);
        match tokio::fs::read(&path).await {
            Ok(b) => Ok(Some(Bytes::from(b))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(LocalStore::io(&path)(e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let root = self.root.clone();
        let prefix = prefix.to_string();
        tokio::task::spawn_blocking(move || {
            // Walk only the directory that contains the prefix, then filter.
            let dir_part = prefix.rsplit_once('/').map_or("", |(d, _)| d);
            let start = root.join(dir_part);
            let mut out = Vec::new();
            let mut stack = vec![start];
            while let Some(dir) = stack.pop() {
                let entries = match std::fs::read_dir(&dir) {
                    Ok(e) => e,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(LocalStore::io(&dir)(e)),
                };
                for entry in entries {
                    let entry = entry.map_err(LocalStore::io(&dir))?;
                    let path = entry.path();
                    if entry.file_type().map_err(LocalStore::io(&path))?.is_dir() {
                        stack.push(path);
                    } else if let Ok(rel) = path.strip_prefix(&root) {
                        let key = rel.to_string_lossy().replace('\\', "/");
                        if key.starts_with(&prefix) && !key.contains(".tmp-") {
                            out.push(key);
                        }
                    }
                }
            }
            out.sort();
            Ok(out)
        })
        .await
        .expect("local store lister task panicked")
    }

    async fn list_meta(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        let keys = self.list(prefix).await?;
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::with_capacity(keys.len());
            for key in keys {
                let path = root.join(&key);
                match std::fs::metadata(&path) {
                    Ok(m) => out.push(ObjectMeta { key, size: m.len() }),
                    // Listed then gone: as S3 would not list it.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(LocalStore::io(&path)(e)),
                }
            }
            Ok(out)
        })
        .await
        .expect("local store lister task panicked")
    }
}

/// Either store, chosen at run time (`nectar dev` with or without `--bucket`).
#[derive(Debug, Clone)]
pub enum AnyStore {
    /// Local directory.
    Local(LocalStore),
    /// S3 bucket.
    #[cfg(feature = "s3")]
    S3(S3Store),
}

impl ObjectStore for AnyStore {
    async fn put(&self, key: &str, body: Bytes) -> Result<(), StoreError> {
        match self {
            Self::Local(s) => s.put(key, body).await,
            #[cfg(feature = "s3")]
            Self::S3(s) => s.put(key, body).await,
        }
    }
    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        match self {
            Self::Local(s) => s.get(key).await,
            #[cfg(feature = "s3")]
            Self::S3(s) => s.get(key).await,
        }
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        match self {
            Self::Local(s) => s.list(prefix).await,
            #[cfg(feature = "s3")]
            Self::S3(s) => s.list(prefix).await,
        }
    }
    async fn list_meta(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        match self {
            Self::Local(s) => s.list_meta(prefix).await,
            #[cfg(feature = "s3")]
            Self::S3(s) => s.list_meta(prefix).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_store_round_trips_and_lists_by_prefix() {
        let dir = std::env::temp_dir().join(format!("nectar-store-{}", rand::random::<u64>()));
        let s = LocalStore::new(&dir);
        s.put("events/site=a/x.gz", Bytes::from_static(b"1"))
            .await
            .unwrap();
        s.put("events/site=b/y.gz", Bytes::from_static(b"2"))
            .await
            .unwrap();
        s.put("parked/z.json", Bytes::from_static(b"3"))
            .await
            .unwrap();
        assert_eq!(
            s.get("events/site=a/x.gz").await.unwrap().unwrap(),
            Bytes::from_static(b"1")
        );
        assert!(s.get("events/none").await.unwrap().is_none());
        assert_eq!(
            s.list("events/").await.unwrap(),
            vec!["events/site=a/x.gz", "events/site=b/y.gz"]
        );
        assert_eq!(
            s.list("events/site=b").await.unwrap(),
            vec!["events/site=b/y.gz"]
        );
        assert!(s.list("nothing/").await.unwrap().is_empty());
        assert_eq!(
            s.list_meta("events/site=b").await.unwrap(),
            vec![ObjectMeta {
                key: "events/site=b/y.gz".into(),
                size: 1
            }]
        );
        assert!(matches!(
            s.put("../escape", Bytes::new()).await,
            Err(StoreError::InvalidKey(_))
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
