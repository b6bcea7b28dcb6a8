//! The item catalog: availability windows and categories the business rules read.
//!
//! Serving reads it from memory on every request. [`Catalog`] is the in-memory view, filled
//! by `PUT /v1/items` (admin key), `nectar import --items FILE` and the `metadata` of collected
//! events (see [`crate::activity::catalog_updates`]) and, in `nectar dev`, persisted as JSON lines under
//! `<data-dir>/catalog/site=<site>/items.jsonl` (a [`crate::record_file::RecordFile`]: torn
//! tails are cut, upserts fsynced) so that it survives restarts.

#[cfg(feature = "csv")]
pub mod csv;
#[cfg(feature = "dynamodb")]
pub mod dynamo;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use http::{Method, StatusCode};
use nectar_model::event::has_control_chars;
use nectar_model::mapping::{metadata_ms, TIMESTAMP_PROBLEM};
use nectar_model::strict_json;
use serde::{Deserialize, Serialize};

use crate::auth::AdminKeys;
use crate::config::NectarConfig;
use crate::http::error::AppError;
use crate::http::request::{decode_body, site_key_param};
use crate::http::response::json_response;
use crate::record_file::{Durability, LineFormat, RecordFile};

/// The catalog route.
pub const ITEMS_PATH: &str = "/v1/items";
/// Largest catalog upsert body.
pub const MAX_ITEMS_BODY: usize = 5 << 20;

/// What the rules know of one item.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemMeta {
    /// The item id.
    pub id: String,
    /// Its category (e.g. genre, programme type).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Available from this time on (ms UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_from: Option<i64>,
    /// Available until this time (ms UTC, exclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_until: Option<i64>,
    /// A display title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
}

impl ItemMeta {
    /// Overwrites the fields `other` sets and keeps the others (the id is not changed).
    pub fn merge(&mut self, other: &ItemMeta) {
        if other.category.is_some() {
            self.category.clone_from(&other.category);
        }
        if other.available_from.is_some() {
            self.available_from = other.available_from;
        }
        if other.available_until.is_some() {
            self.available_until = other.available_until;
        }
        if other.title.is_some() {
            self.title.clone_from(&other.title);
        }
    }

    /// Whether the item can be shown at `now_ms`.
    pub fn available_at(&self, now_ms: i64) -> bool {
        self.available_from.is_none_or(|f| now_ms >= f)
            && self.available_until.is_none_or(|u| now_ms < u)
    }
}

/// Whether `id` is an acceptable item id: 1 to 256 characters, no control characters.
pub fn valid_item_id(id: &str) -> bool {
    !id.is_empty() && id.chars().count() <= 256 && !has_control_chars(id)
}

/// The port through which collected events' metadata reaches a catalog: merge (field by
/// field) rather than replace, so an event never erases what it does not mention.
pub trait CatalogWriter {
    /// The adapter's failure.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Merges items of a site into the catalog: the fields each item sets replace the stored
    /// ones, the others are kept; unknown items are created.
    fn merge_items(
        &self,
        site: &str,
        items: &[ItemMeta],
    ) -> impl std::future::Future<Output = Result<(), Self::Error>> + Send;
}

/// The in-memory catalog of every site, optionally persisted in a directory.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    items: Arc<RwLock<HashMap<String, HashMap<String, ItemMeta>>>>,
    dir: Option<PathBuf>,
}

/// A catalog failure.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// Reading or writing the local catalog failed.
    #[error("catalog I/O on {path}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl Catalog {
    /// An empty in-memory catalog.
    pub fn in_memory() -> Self {
        Self::default()
    }

    /// A catalog persisted under `<data_dir>/catalog/`, loaded now.
    pub fn open(data_dir: &Path) -> Result<Self, CatalogError> {
        let dir = data_dir.join("catalog");
        let cat = Self {
            items: Arc::default(),
            dir: Some(dir.clone()),
        };
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(cat);
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(site) = name.strip_prefix("site=") else {
                continue;
            };
            let path = e.path().join("items.jsonl");
            let io = |source| CatalogError::Io {
                path: path.display().to_string(),
                source,
            };
            // Opening cuts a torn tail (a crash mid-append) before anything is appended.
            let items = RecordFile::open(&path, LineFormat::Json, Durability::Sync)
                .and_then(|f| f.read::<ItemMeta>())
                .map_err(io)?
                .records;
            cat.insert(site, items);
        }
        Ok(cat)
    }

    fn insert(&self, site: &str, items: Vec<ItemMeta>) {
        let mut all = self.items.write().expect("catalog lock");
        let m = all.entry(site.to_string()).or_default();
        for it in items {
            m.insert(it.id.clone(), it);
        }
    }

    /// Upserts items of a site (and appends them to the local file when persisted).
    pub fn upsert(&self, site: &str, items: Vec<ItemMeta>) -> Result<(), CatalogError> {
        self.append(site, &items)?;
        self.insert(site, items);
        Ok(())
    }

    /// Merges items of a site field by field (see [`ItemMeta::merge`]); when persisted, the
    /// merged items are appended, so a reload gives the same result.
    pub fn merge(&self, site: &str, items: &[ItemMeta]) -> Result<(), CatalogError> {
        // One write lock over read-merge-append-insert, so concurrent merges do not lose fields.
        let mut all = self.items.write().expect("catalog lock");
        let m = all.entry(site.to_string()).or_default();
        // Merged copies first (a repeated id merges onto its earlier copy), so that a failed
        // append leaves memory untouched.
        let mut merged: Vec<ItemMeta> = Vec::with_capacity(items.len());
        let mut at: HashMap<&str, usize> = HashMap::new();
        for it in items {
            if let Some(&i) = at.get(it.id.as_str()) {
                merged[i].merge(it);
                continue;
            }
            let mut cur = m.get(&it.id).cloned().unwrap_or_else(|| ItemMeta {
                id: it.id.clone(),
                ..ItemMeta::default()
            });
            cur.merge(it);
            at.insert(&it.id, merged.len());
            merged.push(cur);
        }
        self.append(site, &merged)?;
        for it in merged {
            m.insert(it.id.clone(), it);
        }
        Ok(())
    }

    fn append(&self, site: &str, items: &[ItemMeta]) -> Result<(), CatalogError> {
        if let Some(dir) = &self.dir {
            let path = dir.join(format!("site={site}")).join("items.jsonl");
            RecordFile::new(&path, LineFormat::Json, Durability::Sync)
                .append_all(items)
                .map_err(|source| CatalogError::Io {
                    path: path.display().to_string(),
                    source,
                })?;
        }
        Ok(())
    }

    /// One item's metadata, if known.
    pub fn get(&self, site: &str, id: &str) -> Option<ItemMeta> {
        self.items
            .read()
            .expect("catalog lock")
            .get(site)?
            .get(id)
            .cloned()
    }

    /// Runs `f` over a site's items (`None`: none known) under one read lock: what a caller
    /// that looks up many items per request uses instead of [`Self::get`]'s lock and copy
    /// per item.
    pub fn with_site<R>(
        &self,
        site: &str,
        f: impl FnOnce(Option<&HashMap<String, ItemMeta>>) -> R,
    ) -> R {
        f(self.items.read().expect("catalog lock").get(site))
    }

    /// Number of items of a site.
    pub fn len(&self, site: &str) -> usize {
        self.items
            .read()
            .expect("catalog lock")
            .get(site)
            .map_or(0, HashMap::len)
    }

    /// Replaces a site's items in memory with a fresh full read of the source of truth
    /// (the Lambda's periodic reload of the DynamoDB table; deletions take effect too).
    pub fn replace_site(&self, site: &str, items: Vec<ItemMeta>) {
        let fresh: HashMap<String, ItemMeta> =
            items.into_iter().map(|it| (it.id.clone(), it)).collect();
        self.items
            .write()
            .expect("catalog lock")
            .insert(site.to_string(), fresh);
    }
}

impl CatalogWriter for Catalog {
    type Error = CatalogError;

    fn merge_items(
        &self,
        site: &str,
        items: &[ItemMeta],
    ) -> impl std::future::Future<Output = Result<(), CatalogError>> + Send {
        std::future::ready(self.merge(site, items))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ItemsBody {
    items: Vec<ItemUpsert>,
}

/// One item as an upsert sends it: the availability bounds as collected metadata gives them
/// (ms, or a string holding ms; see [`metadata_ms`]), checked with their path.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ItemUpsert {
    id: String,
    #[serde(default)]
    category: Option<String>,
    #[serde(default)]
    available_from: Option<serde_json::Value>,
    #[serde(default)]
    available_until: Option<serde_json::Value>,
    #[serde(default)]
    title: Option<String>,
}

/// The items of an upsert body, each problem named by its path (`items[3].available_from`).
fn parse_items_body(body: &[u8]) -> Result<Vec<ItemMeta>, AppError> {
    let text = std::str::from_utf8(body)
        .map_err(|e| AppError::invalid("body", format!("is not valid UTF-8: {e}")))?;
    // The catalog file and table must stay readable: refuse what no reader decodes back.
    let mut flaw = None;
    strict_json::scan(text, |path, f| {
        flaw.get_or_insert_with(|| (path.to_string(), f));
    });
    if let Some((path, f)) = flaw {
        return Err(AppError::invalid(&path, f.problem()));
    }
    let body: ItemsBody = serde_json::from_str(text)
        .map_err(|e| AppError::invalid("body", format!("not a valid items document: {e}")))?;
    let mut items = Vec::with_capacity(body.items.len());
    for (i, it) in body.items.into_iter().enumerate() {
        if !valid_item_id(&it.id) {
            return Err(AppError::invalid(
                &format!("items[{i}].id"),
                "ids are 1 to 256 characters with no control characters",
            ));
        }
        let time = |field: &str, v: Option<serde_json::Value>| match v {
            None => Ok(None),
            Some(v) => metadata_ms(&v).map(Some).ok_or_else(|| {
                AppError::invalid(&format!("items[{i}].{field}"), TIMESTAMP_PROBLEM)
            }),
        };
        let available_from = time("available_from", it.available_from)?;
        let available_until = time("available_until", it.available_until)?;
        if let (Some(f), Some(u)) = (available_from, available_until) {
            if u <= f {
                return Err(AppError::invalid(
                    &format!("items[{i}].available_until"),
                    "must be after available_from",
                ));
            }
        }
        items.push(ItemMeta {
            id: it.id,
            category: it.category,
            available_from,
            available_until,
            title: it.title,
        });
    }
    Ok(items)
}

/// Checks a `PUT /v1/items?s=SITE` request (route, method, site, `Authorization: Bearer
/// <admin key of the site>`, body `{"items": [{"id", "category"?, "available_from"?,
/// "available_until"?, "title"?}]}`, gzip when `Content-Encoding` says so, decoded and bounded
/// as collect's) and returns the site and the items to upsert.
pub fn parse_items_request(
    config: &NectarConfig,
    keys: &AdminKeys,
    req: &http::Request<Bytes>,
) -> Result<(String, Vec<ItemMeta>), AppError> {
    let site = authorize_items_request(config, keys, req.method(), req.uri(), req.headers())?;
    let body = decode_body(req.headers(), req.body(), MAX_ITEMS_BODY)?;
    Ok((site, parse_items_body(&body)?))
}

/// The checks of `PUT /v1/items` that need no body (route, method, site, the site's admin
/// key); returns the site. A server reading the body itself runs them first, so that a caller
/// without a key can neither make it read a body nor learn anything from the body's problems.
pub fn authorize_items_request(
    config: &NectarConfig,
    keys: &AdminKeys,
    method: &Method,
    uri: &http::Uri,
    headers: &http::HeaderMap,
) -> Result<String, AppError> {
    if uri.path() != ITEMS_PATH {
        return Err(AppError::NotFound(uri.path().to_string()));
    }
    if method != Method::PUT {
        return Err(AppError::MethodNotAllowed {
            method: method.to_string(),
            allow: "PUT",
        });
    }
    let site = site_key_param(uri.query())?;
    if config.site(&site).is_none() {
        return Err(AppError::UnknownSite(site));
    }
    keys.authorize(headers, &site)?;
    Ok(site)
}

/// The answer to a successful upsert of `n` items.
pub fn upserted_response(n: usize) -> http::Response<Bytes> {
    json_response(
        StatusCode::OK,
        &crate::http::answers::to_json(&crate::http::answers::UpsertAnswer { upserted: n }),
    )
}

/// `PUT /v1/items` on the local catalog (`nectar dev`).
pub fn handle_items(
    config: &NectarConfig,
    keys: &AdminKeys,
    catalog: &Catalog,
    req: &http::Request<Bytes>,
) -> http::Response<Bytes> {
    let r = parse_items_request(config, keys, req).and_then(|(site, items)| {
        let n = items.len();
        catalog.upsert(&site, items).map_err(|e| {
            tracing::error!(error = ?e, "Catalog upsert failed.");
            AppError::Unavailable(Box::new(e))
        })?;
        Ok(upserted_response(n))
    });
    r.unwrap_or_else(AppError::into_response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const KEY: &str = "admin-key-of-demo";

    fn put(body: impl Into<Bytes>, gzip: bool) -> http::Request<Bytes> {
        let mut b = http::Request::builder()
            .method("PUT")
            .uri("/v1/items?s=demo")
            .header("authorization", format!("Bearer {KEY}"))
            .header("content-type", "application/json");
        if gzip {
            b = b.header("content-encoding", "gzip");
        }
        b.body(body.into()).unwrap()
    }

    /// The items, or the error as `(status, code, details[0].path, message)`.
    fn parse(req: &http::Request<Bytes>) -> Result<Vec<ItemMeta>, (u16, String, String, String)> {
        let config = NectarConfig::from_toml("[sites.demo]\n", "test").unwrap();
        let mut keys = AdminKeys::none();
        keys.add(KEY, "demo");
        parse_items_request(&config, &keys, req)
            .map(|(_, items)| items)
            .map_err(|e| {
                let b = e.body();
                (
                    e.status().as_u16(),
                    e.code().to_string(),
                    b["error"]["details"][0]["path"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                    b["error"]["message"].as_str().unwrap_or("").to_string(),
                )
            })
    }

    fn gz(data: &[u8]) -> Vec<u8> {
        use flate2::{write::GzEncoder, Compression};
        let mut e = GzEncoder::new(Vec::new(), Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn gzip_upserts_are_decoded_as_collect_decodes_them() {
        let doc = br#"{"items": [{"id": "a", "category": "news"}]}"#;
        // GIVEN the same document plain and gzipped WHEN parsed THEN the items are the same
        let plain = parse(&put(&doc[..], false)).unwrap();
        assert_eq!(parse(&put(gz(doc), true)).unwrap(), plain);
        assert_eq!(plain[0].category.as_deref(), Some("news"));
        // gzip with trailing garbage, or not gzip at all: 400 invalid_request on the body
        let garbage = [gz(doc), b"garbage".to_vec()].concat();
        let e = parse(&put(garbage, true)).unwrap_err();
        assert_eq!(
            (e.0, e.1.as_str(), e.2.as_str()),
            (400, "invalid_request", "body")
        );
        assert_eq!(
            parse(&put(&doc[..], true)).unwrap_err().1,
            "invalid_request"
        );
        // the limit bounds the decoded size (a small gzip expanding past it is refused)
        let big = format!(
            r#"{{"items": [{{"id": "a", "title": "{}"}}]}}"#,
            "x".repeat(MAX_ITEMS_BODY)
        );
        let e = parse(&put(gz(big.as_bytes()), true)).unwrap_err();
        assert_eq!((e.0, e.1.as_str()), (413, "payload_too_large"));
        // an unknown encoding is refused as collect refuses it
        let mut r = put(&doc[..], false);
        r.headers_mut()
            .insert("content-encoding", http::HeaderValue::from_static("br"));
        assert_eq!(parse(&r).unwrap_err().1, "unsupported_media_type");
    }

    #[test]
    fn availability_must_be_a_timestamp_named_by_its_path() {
        for (doc, path) in [
            (
                r#"{"items": [{"id": "a"}, {"id": "b", "available_from": "tomorrow"}]}"#,
                "items[1].available_from",
            ),
            (
                r#"{"items": [{"id": "a", "available_until": 1.5e12}]}"#,
                "items[0].available_until",
            ),
            (
                r#"{"items": [{"id": "a", "available_until": true}]}"#,
                "items[0].available_until",
            ),
        ] {
            let e = parse(&put(doc, false)).unwrap_err();
            assert_eq!(
                (e.0, e.1.as_str(), e.2.as_str()),
                (400, "invalid_request", path),
                "{doc}"
            );
            assert!(e.3.contains("timestamp"), "{}", e.3);
        }
        // what collected metadata may carry is accepted here too: ms, a string of ms, null
        let items = parse(&put(
            r#"{"items": [{"id": "a", "available_from": "1700000000000", "available_until": 1800000000000, "title": null}]}"#,
            false,
        ))
        .unwrap();
        assert_eq!(items[0].available_from, Some(1_700_000_000_000));
        assert_eq!(items[0].available_until, Some(1_800_000_000_000));
    }

    #[test]
    fn unreadable_values_and_control_characters_are_refused_with_their_path() {
        for (doc, path, says) in [
            (
                r#"{"items": [{"id": "a", "available_from": 1e400}]}"#,
                "items[0].available_from",
                "out of range",
            ),
            (
                r#"{"items": [{"id": "a", "title": "\ud800"}]}"#,
                "items[0].title",
                "lone UTF-16 surrogate",
            ),
            (
                r#"{"items": [{"id": "a\u0000"}]}"#,
                "items[0].id",
                "control characters",
            ),
            (
                r#"{"items": [{"id": "\u001b[2J"}]}"#,
                "items[0].id",
                "control characters",
            ),
        ] {
            let e = parse(&put(doc, false)).unwrap_err();
            assert_eq!(
                (e.0, e.1.as_str(), e.2.as_str()),
                (400, "invalid_request", path),
                "{doc}"
            );
            assert!(e.3.contains(says), "{}", e.3);
        }
    }

    #[test]
    fn availability_windows() {
        let m = ItemMeta {
            id: "a".into(),
            available_from: Some(10),
            available_until: Some(20),
            ..Default::default()
        };
        assert!(!m.available_at(9));
        assert!(m.available_at(10));
        assert!(!m.available_at(20));
    }

    #[test]
    fn persisted_catalog_reloads() {
        let dir = std::env::temp_dir().join(format!("nectar-cat-{}", std::process::id()));
        let c = Catalog::open(&dir).unwrap();
        c.upsert(
            "demo",
            vec![ItemMeta {
                id: "x".into(),
                category: Some("news".into()),
                ..Default::default()
            }],
        )
        .unwrap();
        let again = Catalog::open(&dir).unwrap();
        assert_eq!(
            again.get("demo", "x").unwrap().category.as_deref(),
            Some("news")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_torn_catalog_tail_is_cut_on_reopen_and_the_next_upsert_is_intact() {
        let dir = std::env::temp_dir().join(format!("nectar-cat-torn-{}", rand::random::<u64>()));
        let item = |id: &str, cat: &str| ItemMeta {
            id: id.into(),
            category: Some(cat.into()),
            ..Default::default()
        };
        // GIVEN two upserts, the second torn mid-line by a crash
        let c = Catalog::open(&dir).unwrap();
        c.upsert("demo", vec![item("a", "news")]).unwrap();
        c.upsert("demo", vec![item("b", "sport")]).unwrap();
        let path = dir.join("catalog/site=demo/items.jsonl");
        let len = std::fs::metadata(&path).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 6)
            .unwrap();
        // WHEN nectar dev restarts and an item is upserted
        let again = Catalog::open(&dir).unwrap();
        again.upsert("demo", vec![item("c", "film")]).unwrap();
        // THEN every line parses, the new item is intact, the fragment is in the sidecar
        let text = std::fs::read_to_string(&path).unwrap();
        let ids: Vec<String> = text
            .lines()
            .map(|l| serde_json::from_str::<ItemMeta>(l).unwrap().id)
            .collect();
        assert_eq!(ids, vec!["a", "c"]);
        let third = Catalog::open(&dir).unwrap();
        assert_eq!(third.get("demo", "c").unwrap(), item("c", "film"));
        assert!(third.get("demo", "b").is_none());
        assert!(dir.join("catalog/site=demo/items.jsonl.torn").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn merge_keeps_fields_the_update_does_not_set_and_survives_a_reload() {
        let dir = std::env::temp_dir().join(format!("nectar-cat-merge-{}", std::process::id()));
        // GIVEN a persisted item with a category and a window
        let c = Catalog::open(&dir).unwrap();
        c.upsert(
            "demo",
            vec![ItemMeta {
                id: "x".into(),
                category: Some("news".into()),
                available_from: Some(10),
                ..Default::default()
            }],
        )
        .unwrap();
        // WHEN an update sets only the title, and another creates a new item
        c.merge(
            "demo",
            &[
                ItemMeta {
                    id: "x".into(),
                    title: Some("Evening news".into()),
                    ..Default::default()
                },
                ItemMeta {
                    id: "y".into(),
                    category: Some("sport".into()),
                    ..Default::default()
                },
            ],
        )
        .unwrap();
        // THEN the old fields stay, the new one is added, in memory and after a reload
        let want = ItemMeta {
            id: "x".into(),
            category: Some("news".into()),
            available_from: Some(10),
            title: Some("Evening news".into()),
            ..Default::default()
        };
        assert_eq!(c.get("demo", "x").unwrap(), want);
        let again = Catalog::open(&dir).unwrap();
        assert_eq!(again.get("demo", "x").unwrap(), want);
        assert_eq!(
            again.get("demo", "y").unwrap().category.as_deref(),
            Some("sport")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
