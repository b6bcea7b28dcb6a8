//! Admin keys: random bearer tokens, shown once, stored only as SHA-256 hashes, each bound to
//! one site, compared in constant time.
//!
//! The local key file (`<data-dir>/keys.txt`, one `sha256hex site` per line, a
//! [`RecordFile`]) is the twin of the DynamoDB keys table (pk `key_hash`).

#[cfg(feature = "dynamodb")]
pub mod dynamo;

use std::path::Path;

use rand::Rng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::http::error::AppError;
use crate::record_file::{Durability, LineFormat, RecordFile};

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

/// Whether a line of the key file is whole: `<64 hex digits> <site key>`.
fn key_line_ok(line: &str) -> bool {
    let mut parts = line.split_whitespace();
    matches!(
        (parts.next(), parts.next(), parts.next()),
        (Some(h), Some(site), None)
            if h.len() == 64
                && h.bytes().all(|b| b.is_ascii_hexdigit())
                && nectar_model::event::is_valid_key(site)
    )
}

const KEY_LINE: LineFormat = LineFormat::Text(key_line_ok);

fn key_file(path: &Path) -> RecordFile {
    RecordFile::new(path, KEY_LINE, Durability::Sync)
}

impl AdminKeys {
    /// No keys: every admin request is refused.
    pub fn none() -> Self {
        Self::default()
    }

    /// Reads a key file (missing file: no keys; a torn last line, left by a crash of
    /// `nectar key create`, is skipped).
    pub fn load(path: &Path) -> std::io::Result<Self> {
        let mut keys = Self::none();
        for line in key_file(path).read_lines()?.records {
            let mut parts = line.split_whitespace();
            if let (Some(h), Some(site)) = (parts.next(), parts.next()) {
                keys.add_hash(h, site);
            }
        }
        Ok(keys)
    }

    /// Creates a key for `site`, appends its hash to the key file (fsynced, after cutting a
    /// torn tail), and returns the key (the only time it exists in clear).
    pub fn create(path: &Path, site: &str) -> std::io::Result<String> {
        let key = new_key();
        let file = RecordFile::open(path, KEY_LINE, Durability::Sync)?;
        file.append_lines(&[format!("{} {site}", hex::encode(key_hash(&key)))])?;
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
    use std::io::Write;

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

    #[test]
    fn a_key_created_after_a_torn_line_is_whole_and_loads() {
        let dir = std::env::temp_dir().join(format!("nectar-keys-{}", rand::random::<u64>()));
        let path = dir.join("keys.txt");
        // GIVEN a key file whose second line was torn by a crash (the site not yet written)
        let first = AdminKeys::create(&path, "demo").unwrap();
        let torn = format!("{} ", hex::encode(key_hash("nk_lost")));
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(torn.as_bytes())
            .unwrap();
        // WHEN another key is created (the next `nectar key create`)
        let second = AdminKeys::create(&path, "other").unwrap();
        // THEN every line is a whole key line, both keys load, the fragment is in the sidecar
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(text.lines().all(key_line_ok));
        let keys = AdminKeys::load(&path).unwrap();
        assert!(keys.verify(&first, "demo") && keys.verify(&second, "other"));
        assert_eq!(keys.len(), 2);
        let side = std::fs::read_to_string(dir.join("keys.txt.torn")).unwrap();
        assert_eq!(side.trim_end(), torn.trim_end());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
