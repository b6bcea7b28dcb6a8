//! Admin keys: random bearer tokens, shown once, stored only as SHA-256 hashes, each bound to
//! one site, compared in constant time.
//!
//! The local key file (`<data-dir>/keys.txt`, one `sha256hex site` per line) is the twin of
//! the DynamoDB keys table (pk `key_hash`).

use std::path::Path;

use rand::Rng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::AppError;

/// The stored form of the keys: `(sha256 of the key, site)`. Clones share the same set, so
/// a reload ([`AdminKeys::replace_with`]) reaches every holder (revocations take effect).
#[derive(Debug, Clone, Default)]
pub struct AdminKeys {
    hashes: std::sync::Arc<std::sync::RwLock<Vec<StoredKey>>>,
}

/// A stored key: its SHA-256 and its site.
type StoredKey = ([u8; 32], String);

/// SHA-256 of a key.
pub fn key_hash(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// A new random key (256 bits).
pub fn new_key() -> String {
    let raw: [u8; 32] = rand::rng().random();
    format!("nk_{}", hex::encode(raw))
}

impl AdminKeys {
    /// No keys: every admin request is refused.
    pub fn none() -> Self {
        Self::default()
    }

    /// Reads a key file (missing file: no keys).
    pub fn load(path: &Path) -> std::io::Result<Self> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::none()),
            Err(e) => return Err(e),
        };
        let mut keys = Self::none();
        for line in text.lines() {
            let mut parts = line.split_whitespace();
            if let (Some(h), Some(site)) = (parts.next(), parts.next()) {
                keys.add_hash(h, site);
            }
        }
        Ok(keys)
    }

    /// Creates a key for `site`, appends its hash to the key file, and returns the key (the
    /// only time it exists in clear).
    pub fn create(path: &Path, site: &str) -> std::io::Result<String> {
        use std::io::Write;
        let key = new_key();
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d)?;
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        writeln!(f, "{} {site}", hex::encode(key_hash(&key)))?;
        Ok(key)
    }

    /// Adds a stored hash (hex); ignored when malformed.
    pub fn add_hash(&mut self, hash_hex: &str, site: &str) {
        if let Ok(bytes) = hex::decode(hash_hex) {
            if let Ok(arr) = <[u8; 32]>::try_from(bytes.as_slice()) {
                self.write().push((arr, site.to_string()));
            }
        }
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Vec<StoredKey>> {
        self.hashes.write().expect("keys lock")
    }

    /// Replaces the set (every clone sees it) with the keys of `fresh`.
    pub fn replace_with(&self, fresh: &AdminKeys) {
        let new = fresh.hashes.read().expect("keys lock").clone();
        *self.write() = new;
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.hashes.read().expect("keys lock").len()
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds a key in memory (tests, and keys created at start-up).
    pub fn add(&mut self, key: &str, site: &str) {
        self.write().push((key_hash(key), site.to_string()));
    }

    /// Whether `key` is a key of `site`; every stored hash is compared in constant time.
    pub fn verify(&self, key: &str, site: &str) -> bool {
        let h = key_hash(key);
        let mut ok = subtle::Choice::from(0);
        for (stored, s) in self.hashes.read().expect("keys lock").iter() {
            let same_site = subtle::Choice::from((s == site) as u8);
            ok |= stored.ct_eq(&h) & same_site;
        }
        ok.into()
    }

    /// Checks `Authorization: Bearer <key>` for `site`.
    pub fn authorize(&self, headers: &http::HeaderMap, site: &str) -> Result<(), AppError> {
        let key = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or(AppError::Unauthorized)?;
        if self.verify(key, site) {
            Ok(())
        } else {
            Err(AppError::Forbidden)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_bound_to_one_site_and_stored_hashed() {
        let path = std::env::temp_dir().join(format!("nectar-keys-{}.txt", std::process::id()));
        let key = AdminKeys::create(&path, "demo").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&key), "the clear key must not be stored");
        let keys = AdminKeys::load(&path).unwrap();
        assert!(keys.verify(&key, "demo"));
        assert!(!keys.verify(&key, "other"));
        assert!(!keys.verify("nk_wrong", "demo"));
        let mut h = http::HeaderMap::new();
        assert!(matches!(
            keys.authorize(&h, "demo"),
            Err(AppError::Unauthorized)
        ));
        h.insert("authorization", format!("Bearer {key}").parse().unwrap());
        assert!(keys.authorize(&h, "demo").is_ok());
        assert!(matches!(
            keys.authorize(&h, "other"),
            Err(AppError::Forbidden)
        ));
        std::fs::remove_file(&path).unwrap();
    }
}
