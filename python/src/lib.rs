//! `nectar._native`: the Rust side of the Lab's Python package. A thin binding: the event log
//! is read by the platform's table reader (`event_log::table`), events map to interactions with
//! the model crate's mapping, the algorithms are the model crate's (`AlgoSpec`), `evaluate` is
//! `nectar eval`'s bench (`train::offline`) and `publish` is `nectar publish`'s flow
//! (`train::publish_artifacts`). The Python side (`nectar/__init__.py`) turns the bytes handed
//! over here into pyarrow tables and numpy arrays.
#![warn(missing_docs)]

use std::path::Path;
use std::sync::{Arc, OnceLock};

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Array, RecordBatch, StringArray};
use nectar_model::algo::{AlgoSpec, FittedModel, Target, UserHistory};
use nectar_model::interactions::{from_rating_rows, parse_ratings_csv, RatingRow, ValueMode};
use nectar_model::mapping::{
    dedupe_key, map_event_fields, Deduper, EventFields, EventWeights, InteractionLog, MapStats,
    Skip, WeightRule,
};
use nectar_model::{Interactions as Matrix, InteractionsBuilder, ModelError};
use nectar_platform::config::{NectarConfig, PublishConfig};
use nectar_platform::event_log::reader::TimeWindow;
use nectar_platform::event_log::table::{full_window, read_event_table};
use nectar_platform::model_store::{AnyModelStore, LocalModelStore, RedisModelStore};
use nectar_platform::object_store::{AnyStore, LocalStore, S3Store};
use nectar_platform::privacy::dynamo::DynamoErasureLog;
use nectar_platform::privacy::{ErasureSet, ErasureSource, LocalErasureLog};
use nectar_platform::registry::{AnyRegistry, DynamoRegistry, LocalRegistry};
use nectar_platform::train::artifacts::{self, ArtifactError, ArtifactKind, Location, Manifest};
use nectar_platform::train::offline;
use nectar_platform::train::trainer::{artifacts as model_artifacts, ModelTrainer};
use nectar_platform::train::{
    publish_artifacts, LogObserver, PublishRequest, TrainDeps, WindowChoice, READ_CONCURRENCY,
};
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

pyo3::create_exception!(
    _native,
    NectarError,
    PyException,
    "A failure in Nectar's Rust code; the message is the Rust error's."
);
pyo3::create_exception!(
    _native,
    InvalidArtifacts,
    NectarError,
    "The artifacts were refused; the message names the file and the problem."
);

/// One runtime for the blocking calls (the platform's readers and stores are async).
fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("tokio runtime")
    })
}

fn err(e: impl std::fmt::Display) -> PyErr {
    NectarError::new_err(e.to_string())
}

fn model_err(e: ModelError) -> PyErr {
    match e {
        ModelError::InvalidParam { .. } | ModelError::InvalidInput(_) => {
            PyValueError::new_err(e.to_string())
        }
        other => err(other),
    }
}

/// The AWS configuration from the environment; S3 is addressed by path when an endpoint
/// override (`AWS_ENDPOINT_URL`, e.g. moto) is set.
async fn s3_store(bucket: &str) -> S3Store {
    let aws = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    let conf = aws_sdk_s3::config::Builder::from(&aws)
        .force_path_style(std::env::var_os("AWS_ENDPOINT_URL").is_some())
        .build();
    S3Store::new(aws_sdk_s3::Client::from_conf(conf), bucket)
}

/// `DIR` or `s3://bucket` (a prefix after the bucket is refused: the event log is at the root).
async fn event_store(source: &str) -> PyResult<AnyStore> {
    match source.strip_prefix("s3://") {
        Some(rest) => {
            let bucket = rest.trim_end_matches('/');
            if bucket.is_empty() || bucket.contains('/') {
                return Err(PyValueError::new_err(format!(
                    "source: {source:?}: expected a data dir or s3://bucket"
                )));
            }
            Ok(AnyStore::S3(s3_store(bucket).await))
        }
        None => {
            if !Path::new(source).is_dir() {
                return Err(PyValueError::new_err(format!(
                    "source: {source:?} is not a directory (expected a data dir or s3://bucket)"
                )));
            }
            Ok(AnyStore::Local(LocalStore::new(source)))
        }
    }
}

/// The erased subjects of `site` for a read of `source`: the data dir's erasure log, or for
/// `s3://` the stack's DynamoDB erasures table named by `NECTAR_ERASURES_TABLE` (required: a
/// read of the raw log without it would hand erased users' events to the notebook).
async fn erasure_set(source: &str, site: &str) -> PyResult<ErasureSet> {
    if source.starts_with("s3://") {
        let Some(table) = std::env::var("NECTAR_ERASURES_TABLE")
            .ok()
            .filter(|t| !t.is_empty())
        else {
            return Err(PyValueError::new_err(
                "source: reading s3:// needs the erasures table: set NECTAR_ERASURES_TABLE \
                 (the stack's ErasuresTableName output) so that erased users stay out",
            ));
        };
        let aws = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .load()
            .await;
        DynamoErasureLog::new(aws_sdk_dynamodb::Client::new(&aws), table)
            .erasure_set(site)
            .await
            .map_err(err)
    } else {
        LocalErasureLog::new(source)
            .erasure_set(site)
            .await
            .map_err(err)
    }
}

/// Reads the events of `site` as an Arrow IPC stream (see `nectar.read_events`).
#[pyfunction]
#[pyo3(signature = (source, site, since_ms=None, until_ms=None, columns=None))]
fn read_events_ipc(
    py: Python<'_>,
    source: String,
    site: String,
    since_ms: Option<i64>,
    until_ms: Option<i64>,
    columns: Option<Vec<String>>,
) -> PyResult<Py<PyBytes>> {
    let bytes = py.detach(|| {
        runtime().block_on(async {
            let store = event_store(&source).await?;
            let erased = erasure_set(&source, &site).await?;
            let window = match (since_ms, until_ms) {
                (None, None) => None,
                (since, until) => {
                    let full = full_window(&store, &site).await.map_err(err)?;
                    let (lo, hi) = full.map_or((0, 0), |w| (w.since_ms, w.until_ms));
                    let w = TimeWindow {
                        since_ms: since.unwrap_or(lo),
                        until_ms: until.unwrap_or(hi.max(since.unwrap_or(lo) + 1)),
                    };
                    Some(w)
                }
            };
            let table = read_event_table(
                &store,
                &erased,
                &site,
                window,
                columns.as_deref(),
                READ_CONCURRENCY,
            )
            .await
            .map_err(|e| match e {
                nectar_platform::event_log::table::TableError::UnknownColumn(_)
                | nectar_platform::event_log::table::TableError::Window { .. } => {
                    PyValueError::new_err(e.to_string())
                }
                other => err(other),
            })?;
            let mut w =
                arrow_ipc::writer::StreamWriter::try_new(Vec::new(), &table.schema).map_err(err)?;
            for b in &table.batches {
                w.write(b).map_err(err)?;
            }
            w.into_inner().map_err(err)
        })
    })?;
    Ok(PyBytes::new(py, &bytes).unbind())
}

/// Event weights from a dict of `type -> number | "value"`; the defaults when `None`.
fn weights_of(weights: Option<Vec<(String, WeightArg)>>) -> PyResult<EventWeights> {
    let Some(pairs) = weights else {
        return Ok(EventWeights::default());
    };
    let mut w = EventWeights::empty();
    for (t, v) in pairs {
        let rule = match v {
            WeightArg::Number(x) if x.is_finite() => WeightRule::Fixed(x as f32),
            WeightArg::Text(s) if s == "value" => WeightRule::PropsValue,
            _ => {
                return Err(PyValueError::new_err(format!(
                    "weights[{t:?}]: expected a finite number or \"value\" (props.value)"
                )))
            }
        };
        w.set(t, rule);
    }
    Ok(w)
}

/// A weight as Python passes it.
#[derive(FromPyObject)]
enum WeightArg {
    Number(f64),
    Text(String),
}

/// Interactions mapped from events (training's mapping and dedupe), in time order.
#[pyclass(module = "nectar._native", frozen)]
struct Interactions {
    log: InteractionLog,
    stats: MapStats,
}

fn column<'a>(b: &'a RecordBatch, name: &str) -> PyResult<&'a StringArray> {
    b.column_by_name(name)
        .and_then(|c| c.as_string_opt::<i32>())
        .ok_or_else(|| {
            PyValueError::new_err(format!(
                "table: no string column {name:?} (read_events with the default columns has it)"
            ))
        })
}

fn opt(a: &StringArray, i: usize) -> Option<&str> {
    (!a.is_null(i)).then(|| a.value(i))
}

/// Maps the events of an Arrow IPC stream (a `read_events` table) to interactions.
#[pyfunction]
#[pyo3(signature = (ipc, weights=None))]
fn interactions_from_ipc(
    py: Python<'_>,
    ipc: &[u8],
    weights: Option<Vec<(String, WeightArg)>>,
) -> PyResult<Interactions> {
    let weights = weights_of(weights)?;
    py.detach(|| {
        let reader = arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(ipc), None)
            .map_err(err)?;
        let mut stats = MapStats::default();
        let mut log = InteractionLog::new();
        let mut dedupe = Deduper::new();
        for batch in reader {
            let b = batch.map_err(err)?;
            let (event_id, event_type, id, user_id, client, context, props) = (
                column(&b, "event_id")?,
                column(&b, "type")?,
                column(&b, "id")?,
                column(&b, "user_id")?,
                column(&b, "client")?,
                column(&b, "context")?,
                column(&b, "props")?,
            );
            let ts = b
                .column_by_name("event_timestamp")
                .and_then(|c| c.as_primitive_opt::<Int64Type>())
                .ok_or_else(|| {
                    PyValueError::new_err("table: no int64 column \"event_timestamp\"")
                })?;
            for i in 0..b.num_rows() {
                stats.lines += 1;
                let fields = EventFields {
                    event_id: opt(event_id, i).unwrap_or(""),
                    event_type: opt(event_type, i).unwrap_or(""),
                    id: opt(id, i).unwrap_or(""),
                    event_timestamp: ts.value(i),
                    user_id: opt(user_id, i),
                    client: opt(client, i),
                    context: opt(context, i),
                    props: opt(props, i),
                };
                if !dedupe.first_time_key(dedupe_key(fields.event_id)) {
                    stats.duplicates += 1;
                    continue;
                }
                match map_event_fields(&fields, &weights) {
                    Ok(mut it) => {
                        it.event_id = String::new();
                        log.push(it);
                    }
                    Err(Skip::Malformed(_)) => stats.malformed += 1,
                    Err(_) => stats.skipped += 1,
                }
            }
        }
        stats.interactions = log.len() as u64;
        log.sort_by_time();
        Ok(Interactions { log, stats })
    })
}

#[pymethods]
impl Interactions {
    fn __len__(&self) -> usize {
        self.log.len()
    }

    /// Distinct users.
    #[getter]
    fn n_users(&self) -> usize {
        self.log.users.len()
    }

    /// Distinct items.
    #[getter]
    fn n_items(&self) -> usize {
        self.log.items.len()
    }

    /// The mapping's counts: lines, duplicates, malformed, skipped, interactions.
    #[getter]
    fn stats(&self) -> Vec<(&'static str, u64)> {
        let s = &self.stats;
        vec![
            ("lines", s.lines),
            ("duplicates", s.duplicates),
            ("malformed", s.malformed),
            ("skipped", s.skipped),
            ("interactions", s.interactions),
        ]
    }

    /// The rows as columns: user ids, item ids, weights, times (ms).
    fn columns(&self) -> (Vec<String>, Vec<String>, Vec<f32>, Vec<i64>) {
        let l = &self.log;
        (
            l.rows
                .iter()
                .map(|r| l.users[r.user as usize].clone())
                .collect(),
            l.rows
                .iter()
                .map(|r| l.items[r.item as usize].clone())
                .collect(),
            l.rows.iter().map(|r| r.weight).collect(),
            l.rows.iter().map(|r| r.timestamp_ms).collect(),
        )
    }

    fn __repr__(&self) -> String {
        format!(
            "Interactions({} rows, {} users, {} items)",
            self.log.len(),
            self.log.users.len(),
            self.log.items.len()
        )
    }
}

impl Interactions {
    /// The training matrix, built as the train task builds it.
    fn matrix(&self, mode: ValueMode) -> Result<Matrix, ModelError> {
        let mut b = InteractionsBuilder::with_capacity(self.log.len()).value_mode(mode);
        for r in &self.log.rows {
            b.push(
                &self.log.users[r.user as usize],
                &self.log.items[r.item as usize],
                r.weight,
                r.timestamp_ms,
            );
        }
        b.build()
    }
}

fn read_ratings(path: &str) -> PyResult<Vec<RatingRow>> {
    let text =
        std::fs::read_to_string(path).map_err(|e| PyValueError::new_err(format!("{path}: {e}")))?;
    parse_ratings_csv(&text).map_err(|e| PyValueError::new_err(format!("{path}: {e}")))
}

/// A fitted model with the matrix it was fitted on.
struct Fitted {
    matrix: Arc<Matrix>,
    model: FittedModel,
}

/// An algorithm with validated parameters, fitted or not.
#[pyclass(module = "nectar._native")]
struct Model {
    algo: String,
    params: Vec<(String, String)>,
    spec: AlgoSpec,
    fitted: Option<Fitted>,
    fit_seconds: Option<f64>,
}

fn names(ids: &[String], list: Vec<(u32, f32)>) -> Vec<(String, f32)> {
    list.into_iter()
        .map(|(i, s)| (ids[i as usize].clone(), s))
        .collect()
}

#[pymethods]
impl Model {
    #[new]
    fn new(algo: String, params: Vec<(String, String)>) -> PyResult<Self> {
        let spec = AlgoSpec::parse(&algo, &params).map_err(model_err)?;
        Ok(Self {
            algo,
            params,
            spec,
            fitted: None,
            fit_seconds: None,
        })
    }

    /// The algorithm's name.
    #[getter]
    fn algo(&self) -> &str {
        &self.algo
    }

    /// The parameters as given.
    #[getter]
    fn params(&self) -> Vec<(String, String)> {
        self.params.clone()
    }

    /// Seconds the last fit took (matrix building excluded, as `nectar eval` times it).
    #[getter]
    fn fit_seconds(&self) -> Option<f64> {
        self.fit_seconds
    }

    /// Fits on `Interactions` or a ratings CSV path (the `nectar eval` format), with the GIL
    /// released.
    fn fit(&mut self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let mode = self.spec.value_mode();
        let matrix = if let Ok(i) = data.extract::<PyRef<'_, Interactions>>() {
            let i = &*i;
            py.detach(|| i.matrix(mode)).map_err(model_err)?
        } else if let Ok(path) = data.extract::<String>() {
            let rows = read_ratings(&path)?;
            py.detach(|| from_rating_rows(&rows, mode))
                .map_err(model_err)?
        } else {
            return Err(PyValueError::new_err(
                "data: expected nectar.interactions(...) or a ratings CSV path",
            ));
        };
        let spec = &self.spec;
        let (model, secs) = py
            .detach(|| {
                let t0 = std::time::Instant::now();
                spec.fit(&matrix).map(|m| (m, t0.elapsed().as_secs_f64()))
            })
            .map_err(model_err)?;
        self.fitted = Some(Fitted {
            matrix: Arc::new(matrix),
            model,
        });
        self.fit_seconds = Some(secs);
        Ok(())
    }

    /// Top `n` per user id (unknown users get an empty list).
    fn recommend(
        &self,
        py: Python<'_>,
        user_ids: Vec<String>,
        n: usize,
        exclude_consumed: bool,
    ) -> PyResult<Vec<Vec<(String, f32)>>> {
        let f = self.fitted()?;
        py.detach(|| {
            let rec = f.model.as_recommender();
            let items = f.matrix.item_ids();
            user_ids
                .iter()
                .map(|u| match f.matrix.user_index(u) {
                    Some(ui) => {
                        let (it, v) = f.matrix.user_row(ui);
                        rec.recommend(
                            Target::Known(ui, UserHistory::new(it, v)),
                            n,
                            exclude_consumed,
                            &[],
                        )
                        .map(|l| names(items, l))
                    }
                    None => Ok(Vec::new()),
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(model_err)
    }

    /// The `n` most similar items per item id (unknown items get an empty list).
    fn similar_items(
        &self,
        py: Python<'_>,
        ids: Vec<String>,
        n: usize,
    ) -> PyResult<Vec<Vec<(String, f32)>>> {
        let f = self.fitted()?;
        py.detach(|| {
            let rec = f.model.as_recommender();
            let items = f.matrix.item_ids();
            ids.iter()
                .map(|i| match f.matrix.item_index(i) {
                    Some(ii) => rec.similar_items(ii, n).map(|l| names(items, l)),
                    None => Ok(Vec::new()),
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(model_err)
    }

    /// The user ids, one per row of the user factors.
    #[getter]
    fn user_ids(&self) -> PyResult<Vec<String>> {
        Ok(self.fitted()?.matrix.user_ids().to_vec())
    }

    /// The item ids, one per row of the item factors.
    #[getter]
    fn item_ids(&self) -> PyResult<Vec<String>> {
        Ok(self.fitted()?.matrix.item_ids().to_vec())
    }

    /// `(float32 bytes, rows, columns)` of the user factors; `None` for models without.
    fn user_factors_raw(&self, py: Python<'_>) -> PyResult<Option<(Py<PyBytes>, usize, usize)>> {
        self.factors_raw(py, true)
    }

    /// `(float32 bytes, rows, columns)` of the item factors; `None` for models without.
    fn item_factors_raw(&self, py: Python<'_>) -> PyResult<Option<(Py<PyBytes>, usize, usize)>> {
        self.factors_raw(py, false)
    }

    /// Writes the fitted model in the artifact format into `dir` (what training would
    /// publish: default publish settings), with `source` (JSON object text) in the manifest.
    fn write_artifacts(&self, py: Python<'_>, dir: String, source_json: String) -> PyResult<()> {
        let f = self.fitted()?;
        let source: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&source_json).map_err(|e| PyValueError::new_err(e.to_string()))?;
        let params = self
            .params
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        py.detach(|| {
            let a = model_artifacts(&PublishConfig::default(), &f.matrix, &f.model)
                .map_err(model_err)?;
            let manifest = Manifest {
                format: artifacts::FORMAT.to_string(),
                kind: if a.item_factors.is_some() {
                    ArtifactKind::Factors
                } else {
                    ArtifactKind::List
                },
                algorithm: self.algo.clone(),
                params,
                source,
            };
            std::fs::create_dir_all(&dir).map_err(err)?;
            runtime()
                .block_on(artifacts::write(&LocalStore::new(&dir), "", &a, &manifest))
                .map_err(|e| match e {
                    e @ ArtifactError::Invalid { .. } => InvalidArtifacts::new_err(e.to_string()),
                    other => err(other),
                })
        })
    }

    fn __repr__(&self) -> String {
        let p: Vec<String> = self
            .params
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!(
            "Model({}, {}{})",
            self.algo,
            p.join(", "),
            if self.fitted.is_some() {
                ", fitted"
            } else {
                ""
            }
        )
    }
}

impl Model {
    fn fitted(&self) -> PyResult<&Fitted> {
        self.fitted.as_ref().ok_or_else(|| {
            NectarError::new_err(format!("{} is not fitted: call fit first", self.algo))
        })
    }

    fn factors_raw(
        &self,
        py: Python<'_>,
        users: bool,
    ) -> PyResult<Option<(Py<PyBytes>, usize, usize)>> {
        let f = self.fitted()?;
        let FittedModel::Als(m) = &f.model else {
            return Ok(None);
        };
        let v = if users {
            m.user_factors()
        } else {
            m.item_factors()
        };
        let data: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        Ok(Some((
            PyBytes::new(py, &data).unbind(),
            v.nrows(),
            v.ncols(),
        )))
    }
}

/// `nectar eval --json`'s object for `model`'s algorithm and parameters fitted on `train` and
/// scored on `test` (ratings CSV paths), as JSON text.
#[pyfunction]
fn evaluate_model(
    py: Python<'_>,
    model: PyRef<'_, Model>,
    train: String,
    test: String,
    k: usize,
) -> PyResult<String> {
    let (train_rows, test_rows) = (read_ratings(&train)?, read_ratings(&test)?);
    let spec = &model.spec;
    let report = py
        .detach(|| offline::evaluate(spec, &train_rows, &test_rows, k))
        .map_err(model_err)?;
    let mut o = serde_json::Map::new();
    o.insert("algo".into(), model.algo.clone().into());
    o.insert(
        "params".into(),
        serde_json::Value::Object(
            model
                .params
                .iter()
                .map(|(k, v)| (k.clone(), v.clone().into()))
                .collect(),
        ),
    );
    o.extend(offline::report_json(&report, k));
    Ok(serde_json::Value::Object(o).to_string())
}

/// Scores the artifacts in `dir` on `test` with `train` (ratings CSV paths) as history, with
/// `nectar eval`'s protocol; the ranking metrics as JSON text.
#[pyfunction]
fn evaluate_artifacts(
    py: Python<'_>,
    dir: String,
    train: String,
    test: String,
    k: usize,
) -> PyResult<String> {
    let (train_rows, test_rows) = (read_ratings(&train)?, read_ratings(&test)?);
    py.detach(|| {
        let read = runtime()
            .block_on(artifacts::read(&LocalStore::new(&dir), ""))
            .map_err(|e| match e {
                e @ ArtifactError::Invalid { .. } => InvalidArtifacts::new_err(e.to_string()),
                other => err(other),
            })?;
        let m = from_rating_rows(&train_rows, ValueMode::Binary).map_err(model_err)?;
        let s =
            offline::score_artifacts(Arc::new(m), &read.model, &test_rows, k).map_err(model_err)?;
        let mut o = serde_json::Map::new();
        o.insert("algo".into(), read.manifest.algorithm.clone().into());
        o.insert("params".into(), read.manifest.params.clone().into());
        o.extend(offline::ranking_json(&s.ranking, k));
        o.insert("recommend_seconds".into(), s.recommend_seconds.into());
        Ok(serde_json::Value::Object(o).to_string())
    })
}

/// `nectar publish`: validates the artifacts at `location` (a directory or s3://…), scores,
/// gates, publishes and records the run; returns the run record as JSON text.
#[pyfunction]
#[pyo3(signature = (site, task, location, data_dir, redis=None, registry=None, note=None, config=None, bucket=None))]
#[allow(clippy::too_many_arguments)] // the Python keyword arguments, one for one
fn publish(
    py: Python<'_>,
    site: String,
    task: String,
    location: String,
    data_dir: String,
    redis: Option<String>,
    registry: Option<String>,
    note: Option<String>,
    config: Option<String>,
    bucket: Option<String>,
) -> PyResult<String> {
    py.detach(|| {
        let cfg = NectarConfig::load(config.as_deref().map(Path::new))
            .map_err(|e| PyValueError::new_err(format!("config: {e}")))?;
        if cfg.task(&site, &task).is_none() {
            return Err(PyValueError::new_err(format!(
                "no task {task:?} for site {site:?} in the config (declare one, e.g. algorithm = \"external\")"
            )));
        }
        runtime().block_on(async {
            let (store, prefix) = match Location::parse(&location) {
                Ok(Location::Dir(d)) => (AnyStore::Local(LocalStore::new(d)), String::new()),
                Ok(Location::S3 { bucket, prefix }) => {
                    (AnyStore::S3(s3_store(&bucket).await), prefix)
                }
                Err(e) => return Err(InvalidArtifacts::new_err(e.to_string())),
            };
            let read = artifacts::read(&store, &prefix).await.map_err(|e| match e {
                e @ ArtifactError::Invalid { .. } => {
                    InvalidArtifacts::new_err(format!("{location}: {e}"))
                }
                other => err(format!("reading {location}: {other}")),
            })?;
            let events = match &bucket {
                Some(b) => AnyStore::S3(s3_store(b).await),
                None => AnyStore::Local(LocalStore::new(&data_dir)),
            };
            let models = match &redis {
                Some(url) => AnyModelStore::Redis(
                    RedisModelStore::connect(url)
                        .await
                        .map_err(|e| err(format!("redis: {e}")))?,
                ),
                None => AnyModelStore::Local(LocalModelStore::new(&data_dir)),
            };
            let registry = match &registry {
                Some(t) => {
                    let aws = aws_config::defaults(aws_config::BehaviorVersion::latest())
                        .load()
                        .await;
                    AnyRegistry::Dynamo(DynamoRegistry::new(aws_sdk_dynamodb::Client::new(&aws), t))
                }
                None => AnyRegistry::Local(LocalRegistry::new(&data_dir)),
            };
            let req = PublishRequest {
                site: site.clone(),
                task: task.clone(),
                window: WindowChoice::Configured,
                uri: location.clone(),
                note,
            };
            // The holdout that scores the candidate leaves erased users out, as training does.
            let log_source = match &bucket {
                Some(b) => format!("s3://{b}"),
                None => data_dir.clone(),
            };
            let erasures = erasure_set(&log_source, &site).await?;
            let deps = TrainDeps {
                events: &events,
                models: &models,
                registry: &registry,
                trainer: &ModelTrainer,
                erasures: &erasures,
            };
            let run = publish_artifacts(
                &cfg,
                &req,
                deps,
                read,
                &LogObserver,
                nectar_platform::now_ms(),
            )
            .await
            .map_err(|e| {
                err(format!(
                    "{site}/{task}: publish failed; the current model stays in place: {e}"
                ))
            })?;
            serde_json::to_string(&run).map_err(err)
        })
    })
}

/// The native module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("NectarError", m.py().get_type::<NectarError>())?;
    m.add("InvalidArtifacts", m.py().get_type::<InvalidArtifacts>())?;
    m.add_class::<Interactions>()?;
    m.add_class::<Model>()?;
    m.add_function(wrap_pyfunction!(read_events_ipc, m)?)?;
    m.add_function(wrap_pyfunction!(interactions_from_ipc, m)?)?;
    m.add_function(wrap_pyfunction!(evaluate_model, m)?)?;
    m.add_function(wrap_pyfunction!(evaluate_artifacts, m)?)?;
    m.add_function(wrap_pyfunction!(publish, m)?)?;
    Ok(())
}
