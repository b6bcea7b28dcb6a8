//! The artifact format: a model version as files another program can write (a notebook,
//! Spark), which `nectar publish` validates, scores on the task's holdout, gates and
//! publishes like a trained candidate.
//!
//! A version is a directory (local, or an S3 prefix `s3://bucket/prefix/`) holding:
//!
//! | file | when | content |
//! |---|---|---|
//! | `manifest.json` | always | `{"format": "nectar-artifacts/1", "kind": "factors" \| "list", "algorithm": "…", "params": {…}, "source": {…}}` |
//! | `item_ids.json` | `factors`: required; `list`: optional | JSON array of item ids (strings), one per factor row |
//! | `item_factors.npy` | `factors`: required | `.npy`, float32 (float64 is converted), shape `[n_items, f]` |
//! | `user_ids.json` | optional, with `user_factors.npy` | JSON array of user ids, one per user row |
//! | `user_factors.npy` | optional, with `user_ids.json` | `.npy`, float32/float64, shape `[n_users, f]`, the same `f` |
//! | `list.json` | `list`: this or `similar.json`; `factors`: optional | `[[item_id, score], …]`, best first: the model-wide list (a list model's ranking, a factor model's fallback) |
//! | `similar.json` | optional | `{item_id: [[item_id, score], …], …}`, best first |
//!
//! Validation refuses, naming the file: a missing required file; unknown files (a typo such
//! as `item_factor.npy` would otherwise be dropped silently; names starting with `.` or `_`,
//! such as `_SUCCESS`, are ignored); empty, duplicate or non-string ids; arrays that are not
//! 2-D, whose rows differ from the id count, whose `f` differs between items and users, whose
//! dtype is not float32/float64 or with a value that is not finite (float64 values beyond
//! f32's range become infinite and are refused); list entries that are not `[id, score]`,
//! name an item not in `item_ids.json` (when given), repeat an item, have a non-finite score
//! or are not sorted best first. `.npy` files may be C or Fortran order (both read as the
//! shape says).
//!
//! `manifest.algorithm` and `params` are recorded with the version; when they name one of
//! Nectar's algorithms (`als` with its params) serving folds new users in with them, else
//! users without factors are served from their history through `similar.json`, or the list.
//! [`encode`] writes the format from [`ModelArtifacts`] (`nectar train --export-artifacts`).

use std::collections::{BTreeMap, HashMap, HashSet};

use bytes::Bytes;
use ndarray::Array2;
use ndarray_npy::{ReadNpyError, ReadNpyExt, WriteNpyExt};
use serde::{Deserialize, Serialize};

use crate::model_store::{Factors, ModelArtifacts, Scored};
use crate::object_store::{ObjectStore, StoreError};

/// The `format` every manifest names.
pub const FORMAT: &str = "nectar-artifacts/1";
/// The manifest.
pub const MANIFEST: &str = "manifest.json";
/// Item ids.
pub const ITEM_IDS: &str = "item_ids.json";
/// Item factors.
pub const ITEM_FACTORS: &str = "item_factors.npy";
/// User ids.
pub const USER_IDS: &str = "user_ids.json";
/// User factors.
pub const USER_FACTORS: &str = "user_factors.npy";
/// The model-wide list.
pub const LIST: &str = "list.json";
/// Similar-item lists.
pub const SIMILAR: &str = "similar.json";
/// Every file of the format.
pub const FILES: [&str; 7] = [
    MANIFEST,
    ITEM_IDS,
    ITEM_FACTORS,
    USER_IDS,
    USER_FACTORS,
    LIST,
    SIMILAR,
];

/// What a version holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArtifactKind {
    /// Item (and optionally user) factors, ranked by dot product.
    Factors,
    /// Lists only: a model-wide list and/or similar-item lists.
    List,
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// What the version holds.
    pub kind: ArtifactKind,
    /// The algorithm's name (free text; Nectar's names enable fold-in).
    pub algorithm: String,
    /// Its parameters.
    #[serde(default)]
    pub params: serde_json::Map<String, serde_json::Value>,
    /// Where the version came from (notebook, git commit…), recorded with the run.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub source: serde_json::Map<String, serde_json::Value>,
}

/// A validated version.
#[derive(Debug, Clone, PartialEq)]
pub struct Artifacts {
    /// The manifest.
    pub manifest: Manifest,
    /// The model, as a trained candidate would be.
    pub model: ModelArtifacts,
    /// What was converted on the way (float64 arrays), for the summary.
    pub notes: Vec<String>,
}

/// Why artifacts cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// A file is missing, unknown or wrong.
    #[error("{file}: {problem}")]
    Invalid {
        /// The file.
        file: String,
        /// What is wrong.
        problem: String,
    },
    /// The location is neither a directory nor `s3://bucket[/prefix]`.
    #[error("artifacts location {0:?}: expected a directory or s3://bucket/prefix/")]
    Location(String),
    /// Reading or writing the files failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ArtifactError {
    /// A stable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Invalid { .. } => "InvalidArtifacts",
            Self::Location(_) => "InvalidArtifactsLocation",
            Self::Store(_) => "ArtifactStoreError",
        }
    }
}

fn invalid(file: &str, problem: impl Into<String>) -> ArtifactError {
    ArtifactError::Invalid {
        file: file.to_string(),
        problem: problem.into(),
    }
}

/// Where artifacts live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A local directory.
    Dir(std::path::PathBuf),
    /// An S3 bucket and key prefix (empty, or ending in `/`).
    S3 {
        /// The bucket.
        bucket: String,
        /// The prefix.
        prefix: String,
    },
}

impl Location {
    /// Parses `DIR` or `s3://bucket[/prefix]` (a trailing `/` is added to the prefix).
    pub fn parse(s: &str) -> Result<Self, ArtifactError> {
        match s.strip_prefix("s3://") {
            Some(rest) => {
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                if bucket.is_empty() {
                    return Err(ArtifactError::Location(s.to_string()));
                }
                let prefix = match prefix.trim_start_matches('/') {
                    "" => String::new(),
                    p if p.ends_with('/') => p.to_string(),
                    p => format!("{p}/"),
                };
                Ok(Self::S3 {
                    bucket: bucket.to_string(),
                    prefix,
                })
            }
            None if s.is_empty() || s.contains("://") => {
                Err(ArtifactError::Location(s.to_string()))
            }
            None => Ok(Self::Dir(s.into())),
        }
    }
}

/// Reads and validates the artifacts under `prefix` (empty, or ending in `/`) of `store`.
pub async fn read<O: ObjectStore>(store: &O, prefix: &str) -> Result<Artifacts, ArtifactError> {
    let mut files = BTreeMap::new();
    for key in store.list(prefix).await? {
        let name = key.strip_prefix(prefix).unwrap_or(&key);
        let base = name.rsplit('/').next().unwrap_or(name);
        if base.starts_with('.') || base.starts_with('_') || name.starts_with('.') {
            continue;
        }
        if !FILES.contains(&name) {
            return Err(invalid(
                name,
                format!("unknown file (the format has {})", FILES.join(", ")),
            ));
        }
        if let Some(body) = store.get(&key).await? {
            files.insert(name.to_string(), body);
        }
    }
    tokio::task::spawn_blocking(move || parse(&files))
        .await
        .expect("artifact parser panicked")
}

/// Validates the files of a version (name → bytes); see the module docs.
pub fn parse(files: &BTreeMap<String, Bytes>) -> Result<Artifacts, ArtifactError> {
    let get = |name: &str| files.get(name);
    let need = |name: &str| get(name).ok_or_else(|| invalid(name, "missing"));
    let manifest: Manifest =
        serde_json::from_slice(need(MANIFEST)?).map_err(|e| invalid(MANIFEST, e.to_string()))?;
    if manifest.format != FORMAT {
        return Err(invalid(
            MANIFEST,
            format!("format is {:?}, expected {FORMAT:?}", manifest.format),
        ));
    }
    if manifest.algorithm.trim().is_empty() {
        return Err(invalid(MANIFEST, "algorithm is empty"));
    }
    let mut notes = Vec::new();
    let mut model = ModelArtifacts::default();
    let explicit_ids = match get(ITEM_IDS) {
        Some(b) => Some(ids(ITEM_IDS, b)?),
        None => None,
    };
    match manifest.kind {
        ArtifactKind::Factors => {
            let item_ids = match explicit_ids.clone() {
                Some(ids) => ids,
                None => return Err(invalid(ITEM_IDS, "missing (a factors version needs it)")),
            };
            let f = factors(
                ITEM_FACTORS,
                need(ITEM_FACTORS)?,
                item_ids.len(),
                ITEM_IDS,
                &mut notes,
            )?;
            model.item_ids = item_ids;
            match (get(USER_IDS), get(USER_FACTORS)) {
                (None, None) => {}
                (Some(_), None) => {
                    return Err(invalid(USER_FACTORS, "missing (user_ids.json is given)"))
                }
                (None, Some(_)) => {
                    return Err(invalid(USER_IDS, "missing (user_factors.npy is given)"))
                }
                (Some(u), Some(uf)) => {
                    let user_ids = ids(USER_IDS, u)?;
                    let g = factors(USER_FACTORS, uf, user_ids.len(), USER_IDS, &mut notes)?;
                    if g.dim != f.dim {
                        return Err(invalid(
                            USER_FACTORS,
                            format!(
                                "has {} factors per row, item_factors.npy has {}",
                                g.dim, f.dim
                            ),
                        ));
                    }
                    model.user_ids = user_ids;
                    model.user_factors = Some(g);
                }
            }
            model.item_factors = Some(f);
        }
        ArtifactKind::List => {
            for name in [ITEM_FACTORS, USER_IDS, USER_FACTORS] {
                if get(name).is_some() {
                    return Err(invalid(
                        name,
                        "a list version has no factors (kind is \"list\")",
                    ));
                }
            }
            if get(LIST).is_none() && get(SIMILAR).is_none() {
                return Err(invalid(
                    LIST,
                    "missing (a list version needs list.json or similar.json)",
                ));
            }
            model.item_ids = explicit_ids.clone().unwrap_or_default();
        }
    }
    // Without item_ids.json (lists only), items are numbered as the lists name them.
    let fixed = explicit_ids.is_some();
    let mut index: HashMap<String, u32> = model
        .item_ids
        .iter()
        .enumerate()
        .map(|(r, id)| (id.clone(), r as u32))
        .collect();
    let list_raw = match get(LIST) {
        Some(b) => Some(scored_list(LIST, b)?),
        None => None,
    };
    let similar_raw: Option<BTreeMap<String, serde_json::Value>> = match get(SIMILAR) {
        Some(b) => Some(
            serde_json::from_slice(b)
                .map_err(|e| invalid(SIMILAR, format!("not an object of item id → list: {e}")))?,
        ),
        None => None,
    };
    let mut intern = |file: &str, at: &str, id: &str, ids: &mut Vec<String>| match index.get(id) {
        Some(&r) => Ok(r),
        None if !fixed => {
            let r = ids.len() as u32;
            ids.push(id.to_string());
            index.insert(id.to_string(), r);
            Ok(r)
        }
        None => Err(invalid(
            file,
            format!("{at}: item {id:?} is not in item_ids.json"),
        )),
    };
    if let Some(list) = list_raw {
        let mut rows = Vec::with_capacity(list.len());
        for (n, (id, s)) in list.into_iter().enumerate() {
            rows.push((
                intern(LIST, &format!("entry {n}"), &id, &mut model.item_ids)?,
                s,
            ));
        }
        model.popular = rows;
    }
    if let Some(sim) = similar_raw {
        let mut by_item: Vec<(u32, Vec<Scored>)> = Vec::with_capacity(sim.len());
        for (key, value) in sim {
            let at = format!("item {key:?}");
            let r = intern(SIMILAR, &at, &key, &mut model.item_ids)?;
            let list = scored_entries(SIMILAR, &at, &value)?;
            let mut rows = Vec::with_capacity(list.len());
            for (n, (id, s)) in list.into_iter().enumerate() {
                rows.push((
                    intern(
                        SIMILAR,
                        &format!("{at} entry {n}"),
                        &id,
                        &mut model.item_ids,
                    )?,
                    s,
                ));
            }
            by_item.push((r, rows));
        }
        let mut similar = vec![Vec::new(); model.item_ids.len()];
        for (r, rows) in by_item {
            similar[r as usize] = rows;
        }
        model.similar = Some(similar);
    }
    if model.item_ids.is_empty() {
        return Err(invalid(ITEM_IDS, "no items"));
    }
    model
        .validate()
        .map_err(|p| invalid(MANIFEST, format!("inconsistent artifacts: {p}")))?;
    Ok(Artifacts {
        manifest,
        model,
        notes,
    })
}

/// A JSON array of unique, non-empty string ids.
fn ids(file: &str, b: &[u8]) -> Result<Vec<String>, ArtifactError> {
    let v: Vec<serde_json::Value> =
        serde_json::from_slice(b).map_err(|e| invalid(file, format!("not a JSON array: {e}")))?;
    let mut seen = HashSet::with_capacity(v.len());
    let mut out = Vec::with_capacity(v.len());
    for (n, id) in v.into_iter().enumerate() {
        let serde_json::Value::String(id) = id else {
            return Err(invalid(file, format!("entry {n} is not a string")));
        };
        if id.is_empty() {
            return Err(invalid(file, format!("entry {n} is empty")));
        }
        if !seen.insert(id.clone()) {
            return Err(invalid(file, format!("duplicate id {id:?} (entry {n})")));
        }
        out.push(id);
    }
    Ok(out)
}

/// A 2-D float32 (or float64, converted) `.npy` of `rows` finite rows.
fn factors(
    file: &str,
    b: &[u8],
    rows: usize,
    ids_file: &str,
    notes: &mut Vec<String>,
) -> Result<Factors, ArtifactError> {
    let read_err = |e: ReadNpyError| match e {
        ReadNpyError::WrongNdim(_, n) => {
            invalid(file, format!("a {n}-D array; expected 2-D [rows, factors]"))
        }
        ReadNpyError::WrongDescriptor(d) => invalid(
            file,
            format!("dtype {d} is not supported: expected float32 ('<f4') or float64 ('<f8')"),
        ),
        other => invalid(file, format!("not a readable .npy file: {other}")),
    };
    let a = match Array2::<f32>::read_npy(b) {
        Ok(a) => a,
        Err(ReadNpyError::WrongDescriptor(_)) => match Array2::<f64>::read_npy(b) {
            Ok(a) => {
                notes.push(format!("{file}: float64 converted to float32"));
                a.mapv(|x| x as f32)
            }
            Err(e) => return Err(read_err(e)),
        },
        Err(e) => return Err(read_err(e)),
    };
    let (n, dim) = a.dim();
    if n != rows {
        return Err(invalid(
            file,
            format!("shape [{n}, {dim}]: {n} rows, but {ids_file} has {rows} ids"),
        ));
    }
    if dim == 0 {
        return Err(invalid(file, format!("shape [{n}, 0]: no factors")));
    }
    if let Some(((r, c), x)) = a.indexed_iter().find(|(_, x)| !x.is_finite()) {
        return Err(invalid(
            file,
            format!("value at row {r}, column {c} is {x} (values must be finite)"),
        ));
    }
    Ok(Factors {
        dim,
        data: a.iter().copied().collect(),
    })
}

fn scored_list(file: &str, b: &[u8]) -> Result<Vec<(String, f32)>, ArtifactError> {
    let v: serde_json::Value =
        serde_json::from_slice(b).map_err(|e| invalid(file, format!("not JSON: {e}")))?;
    scored_entries(file, "list", &v)
}

/// `[[item_id, score], …]`: unique items, finite scores, best first.
fn scored_entries(
    file: &str,
    at: &str,
    v: &serde_json::Value,
) -> Result<Vec<(String, f32)>, ArtifactError> {
    let arr = v
        .as_array()
        .ok_or_else(|| invalid(file, format!("{at}: not an array of [item_id, score]")))?;
    let mut out: Vec<(String, f32)> = Vec::with_capacity(arr.len());
    let mut seen = HashSet::with_capacity(arr.len());
    for (n, e) in arr.iter().enumerate() {
        let bad = || invalid(file, format!("{at}: entry {n} is not [item_id, score]"));
        let pair = e.as_array().filter(|p| p.len() == 2).ok_or_else(bad)?;
        let id = pair[0].as_str().filter(|s| !s.is_empty()).ok_or_else(bad)?;
        let score = pair[1].as_f64().ok_or_else(bad)? as f32;
        if !score.is_finite() {
            return Err(invalid(
                file,
                format!("{at}: entry {n} has a non-finite score"),
            ));
        }
        if !seen.insert(id) {
            return Err(invalid(file, format!("{at}: item {id:?} appears twice")));
        }
        if let Some((_, prev)) = out.last() {
            if score > *prev {
                return Err(invalid(
                    file,
                    format!("{at}: entry {n} scores {score} above the entry before ({prev}): lists are best first"),
                ));
            }
        }
        out.push((id.to_string(), score));
    }
    Ok(out)
}

/// The files of `model` in the format (the exporter; `nectar train --export-artifacts`).
/// Per-user lists (`user_top`, MF) are not part of the format and are refused.
pub fn encode(
    model: &ModelArtifacts,
    manifest: &Manifest,
) -> Result<Vec<(&'static str, Bytes)>, ArtifactError> {
    if model.user_top.is_some() {
        return Err(invalid(
            MANIFEST,
            "per-user lists (mf, publish.user_lists) have no place in the artifact format",
        ));
    }
    model
        .validate()
        .map_err(|p| invalid(MANIFEST, format!("inconsistent artifacts: {p}")))?;
    let mut out = vec![(MANIFEST, json(manifest))];
    out.push((ITEM_IDS, json(&model.item_ids)));
    let npy = |file: &'static str, f: &Factors, rows: usize| -> Result<_, ArtifactError> {
        let a = Array2::from_shape_vec((rows, f.dim), f.data.clone())
            .map_err(|e| invalid(file, e.to_string()))?;
        let mut buf = Vec::new();
        a.write_npy(&mut buf)
            .map_err(|e| invalid(file, e.to_string()))?;
        Ok((file, Bytes::from(buf)))
    };
    if let Some(f) = &model.item_factors {
        out.push(npy(ITEM_FACTORS, f, model.item_ids.len())?);
    }
    if let Some(f) = &model.user_factors {
        out.push((USER_IDS, json(&model.user_ids)));
        out.push(npy(USER_FACTORS, f, model.user_ids.len())?);
    }
    let named = |l: &[Scored]| -> Vec<(&str, f32)> {
        l.iter()
            .map(|&(r, s)| (model.item_ids[r as usize].as_str(), s))
            .collect()
    };
    if !model.popular.is_empty() {
        out.push((LIST, json(&named(&model.popular))));
    }
    if let Some(sim) = &model.similar {
        let map: BTreeMap<&str, Vec<(&str, f32)>> = sim
            .iter()
            .enumerate()
            .filter(|(_, l)| !l.is_empty())
            .map(|(r, l)| (model.item_ids[r].as_str(), named(l)))
            .collect();
        out.push((SIMILAR, json(&map)));
    }
    Ok(out)
}

fn json<T: Serialize + ?Sized>(v: &T) -> Bytes {
    Bytes::from(serde_json::to_vec(v).expect("artifacts serialise"))
}

/// Writes `model` in the format under `prefix` (empty, or ending in `/`) of `store`.
pub async fn write<O: ObjectStore>(
    store: &O,
    prefix: &str,
    model: &ModelArtifacts,
    manifest: &Manifest,
) -> Result<(), ArtifactError> {
    for (name, body) in encode(model, manifest)? {
        store.put(&format!("{prefix}{name}"), body).await?;
    }
    Ok(())
}

/// The item side of a published version as artifacts and their manifest (`nectar export`):
/// item ids and factors, the model-wide list, similar lists. User factors are left out: the
/// model store serves them per user and does not list a version's users, so a republished
/// export folds users in from their history. `None` when the version does not exist.
pub async fn export_version<M: crate::model_store::ModelStore>(
    models: &M,
    site: &str,
    task: &str,
    version: u64,
) -> Result<Option<(ModelArtifacts, Manifest)>, crate::model_store::ModelStoreError> {
    let Some(items) = models.load_items(site, task, version).await? else {
        return Ok(None);
    };
    let meta = &items.metadata;
    let manifest = Manifest {
        format: FORMAT.to_string(),
        kind: if items.item_factors.is_some() {
            ArtifactKind::Factors
        } else {
            ArtifactKind::List
        },
        algorithm: meta["algorithm"].as_str().unwrap_or("unknown").to_string(),
        params: meta["params"].as_object().cloned().unwrap_or_default(),
        source: serde_json::Map::from_iter([
            ("kind".to_string(), "nectar export".into()),
            ("site".to_string(), site.into()),
            ("task".to_string(), task.into()),
            ("version".to_string(), version.into()),
        ]),
    };
    let model = ModelArtifacts {
        item_ids: items.item_ids,
        item_factors: items.item_factors,
        popular: items.popular,
        similar: items.similar,
        ..ModelArtifacts::default()
    };
    Ok(Some((model, manifest)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy<T: ndarray_npy::WritableElement>(rows: usize, cols: usize, v: Vec<T>) -> Bytes {
        let mut buf = Vec::new();
        Array2::from_shape_vec((rows, cols), v)
            .unwrap()
            .write_npy(&mut buf)
            .unwrap();
        Bytes::from(buf)
    }

    fn model() -> ModelArtifacts {
        ModelArtifacts {
            item_ids: vec!["a".into(), "b".into(), "c".into()],
            item_factors: Some(Factors {
                dim: 2,
                data: vec![0.1, 0.2, 0.3, -0.4, 1e-7, 5.0],
            }),
            user_ids: vec!["u1".into(), "u2".into()],
            user_factors: Some(Factors {
                dim: 2,
                data: vec![1.0, 2.0, -3.0, 0.333_333_34],
            }),
            popular: vec![(2, 7.5), (0, 3.1), (1, 3.1)],
            similar: Some(vec![vec![(1, 0.9), (2, 0.1)], vec![], vec![(0, 0.5)]]),
            ..ModelArtifacts::default()
        }
    }

    fn manifest(kind: ArtifactKind) -> Manifest {
        Manifest {
            format: FORMAT.into(),
            kind,
            algorithm: "als".into(),
            params: serde_json::Map::new(),
            source: serde_json::Map::new(),
        }
    }

    fn files() -> BTreeMap<String, Bytes> {
        encode(&model(), &manifest(ArtifactKind::Factors))
            .unwrap()
            .into_iter()
            .map(|(n, b)| (n.to_string(), b))
            .collect()
    }

    fn problem(files: &BTreeMap<String, Bytes>) -> String {
        parse(files).unwrap_err().to_string()
    }

    #[test]
    fn encoded_artifacts_read_back_identically() {
        // GIVEN a factor model with users, a list and similar lists WHEN encoded and parsed
        let a = parse(&files()).unwrap();
        // THEN every value comes back bit for bit
        assert_eq!(a.model, model());
        assert_eq!(a.manifest, manifest(ArtifactKind::Factors));
        assert!(a.notes.is_empty());
    }

    #[test]
    fn bad_artifacts_are_refused_naming_the_file() {
        let cases: Vec<(&str, Bytes, &str)> = vec![
            // duplicate id
            (
                ITEM_IDS,
                Bytes::from(r#"["a","b","a"]"#),
                "item_ids.json: duplicate id \"a\"",
            ),
            (
                ITEM_IDS,
                Bytes::from(r#"["a","","c"]"#),
                "item_ids.json: entry 1 is empty",
            ),
            // wrong shape: 2 rows for 3 ids
            (
                ITEM_FACTORS,
                npy(2, 2, vec![0f32; 4]),
                "item_factors.npy: shape [2, 2]: 2 rows, but item_ids.json has 3 ids",
            ),
            // NaN
            (
                ITEM_FACTORS,
                npy(3, 2, vec![0.0, 0.0, 0.0, f32::NAN, 0.0, 0.0]),
                "item_factors.npy: value at row 1, column 1 is NaN",
            ),
            // wrong dtype
            (
                ITEM_FACTORS,
                npy(3, 2, vec![1i64; 6]),
                "item_factors.npy: dtype '<i8' is not supported",
            ),
            // the users' factor count differs from the items'
            (
                USER_FACTORS,
                npy(2, 3, vec![0f32; 6]),
                "user_factors.npy: has 3 factors per row, item_factors.npy has 2",
            ),
            (
                LIST,
                Bytes::from(r#"[["a", 1.0], ["b", 2.0]]"#),
                "list.json: list: entry 1 scores 2 above the entry before (1)",
            ),
            (
                LIST,
                Bytes::from(r#"[["a", 1.0], ["zz", 0.5]]"#),
                "list.json: entry 1: item \"zz\" is not in item_ids.json",
            ),
            (
                SIMILAR,
                Bytes::from(r#"{"a": [["b", 1.0], ["b", 0.5]]}"#),
                "similar.json: item \"a\": item \"b\" appears twice",
            ),
            (
                MANIFEST,
                Bytes::from(r#"{"format":"nectar-artifacts/2","kind":"factors","algorithm":"x"}"#),
                "manifest.json: format is \"nectar-artifacts/2\"",
            ),
        ];
        for (file, body, expected) in cases {
            // GIVEN valid artifacts with one file replaced WHEN parsed THEN refused, named
            let mut f = files();
            f.insert(file.to_string(), body);
            let p = problem(&f);
            assert!(p.starts_with(expected), "{file}: {p}");
        }
        // a missing file
        let mut f = files();
        f.remove(ITEM_FACTORS);
        assert_eq!(problem(&f), "item_factors.npy: missing");
        let mut f = files();
        f.remove(USER_IDS);
        assert_eq!(
            problem(&f),
            "user_ids.json: missing (user_factors.npy is given)"
        );
        // a 1-D array
        let mut f = files();
        let mut buf = Vec::new();
        ndarray::Array1::<f32>::zeros(3)
            .write_npy(&mut buf)
            .unwrap();
        f.insert(ITEM_FACTORS.into(), Bytes::from(buf));
        assert!(
            problem(&f).starts_with("item_factors.npy: a 1-D array"),
            "{}",
            problem(&f)
        );
    }

    #[test]
    fn float64_factors_are_converted_and_said_so() {
        let mut f = files();
        f.insert(
            ITEM_FACTORS.into(),
            npy(3, 2, vec![0.1f64, 0.2, 0.3, -0.4, 1e-7, 5.0]),
        );
        let a = parse(&f).unwrap();
        assert_eq!(a.model.item_factors, model().item_factors);
        assert_eq!(
            a.notes,
            vec!["item_factors.npy: float64 converted to float32"]
        );
        // beyond f32's range: infinite, refused
        f.insert(ITEM_FACTORS.into(), npy(3, 2, vec![1e300f64; 6]));
        assert!(problem(&f).contains("inf"), "{}", problem(&f));
    }

    #[test]
    fn list_versions_number_items_as_their_lists_name_them() {
        // GIVEN a list version without item_ids.json
        let f = BTreeMap::from([
            (
                MANIFEST.to_string(),
                Bytes::from(serde_json::to_vec(&manifest(ArtifactKind::List)).unwrap()),
            ),
            (LIST.to_string(), Bytes::from(r#"[["x", 3], ["y", 2]]"#)),
            (SIMILAR.to_string(), Bytes::from(r#"{"z": [["x", 1]]}"#)),
        ]);
        let a = parse(&f).unwrap().model;
        // THEN ids come from the lists, in order
        assert_eq!(a.item_ids, vec!["x", "y", "z"]);
        assert_eq!(a.popular, vec![(0, 3.0), (1, 2.0)]);
        assert_eq!(a.similar.unwrap()[2], vec![(0, 1.0)]);
        // AND a list version with factors is refused
        let mut g = f.clone();
        g.insert(ITEM_FACTORS.into(), npy(1, 1, vec![1f32]));
        assert!(problem(&g).starts_with("item_factors.npy: a list version has no factors"));
    }

    #[tokio::test]
    async fn unknown_files_are_refused_and_markers_ignored() {
        let dir = std::env::temp_dir().join(format!("nectar-art-{}", rand::random::<u64>()));
        let store = crate::object_store::LocalStore::new(&dir);
        write(&store, "v1/", &model(), &manifest(ArtifactKind::Factors))
            .await
            .unwrap();
        store.put("v1/_SUCCESS", Bytes::new()).await.unwrap();
        assert_eq!(read(&store, "v1/").await.unwrap().model, model());
        // a typo is not silently dropped
        store
            .put("v1/similar.jsn", Bytes::from("{}"))
            .await
            .unwrap();
        let e = read(&store, "v1/").await.unwrap_err();
        assert_eq!(e.code(), "InvalidArtifacts");
        assert!(
            e.to_string().starts_with("similar.jsn: unknown file"),
            "{e}"
        );
        // nothing there
        let e = read(&store, "none/").await.unwrap_err();
        assert_eq!(e.to_string(), "manifest.json: missing");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn locations_are_dirs_or_s3_prefixes() {
        assert_eq!(
            Location::parse("s3://b/lab/run1").unwrap(),
            Location::S3 {
                bucket: "b".into(),
                prefix: "lab/run1/".into()
            }
        );
        assert_eq!(
            Location::parse("s3://b").unwrap(),
            Location::S3 {
                bucket: "b".into(),
                prefix: String::new()
            }
        );
        assert_eq!(
            Location::parse("out/v1").unwrap(),
            Location::Dir("out/v1".into())
        );
        assert!(Location::parse("s3:///x").is_err());
        assert!(Location::parse("gs://b/x").is_err());
    }
}
