//! `nectar dev`: one local HTTP server hosting the same services as the Lambdas.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::backends::Backends;
use anyhow::Context;
use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Body as _, Incoming};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use nectar_model::event::Accepted;
use nectar_platform::activity::HistorySink;
use nectar_platform::auth::AdminKeys;
use nectar_platform::catalog::{
    authorize_items_request, handle_items, Catalog, ITEMS_PATH, MAX_ITEMS_BODY,
};
use nectar_platform::collect::kinesis::{KinesisSink, RetryPolicy, SdkKinesis};
use nectar_platform::collect::sink::{EventSink, SinkError};
use nectar_platform::collect::{CollectService, COLLECT_PATH};
use nectar_platform::config::NectarConfig;
use nectar_platform::event_log::local::LocalEventLog;
use nectar_platform::http::error::AppError;
use nectar_platform::http::openapi::{self, DOCS_PATH, OPENAPI_PATH};
use nectar_platform::http::openapi_html;
use nectar_platform::http::response::json_response;
use nectar_platform::model_store::AnyModelStore;
use nectar_platform::object_store::AnyStore;
use nectar_platform::privacy::{route as privacy_route, LocalErasureLog};
use nectar_platform::recommend::{RecommendOptions, RecommendService, HEALTH_PATH};
use nectar_platform::report::route::{self as report_route, REPORT_PATH};

mod conn;

use conn::BODY_READ_TIMEOUT;

/// Flags of `nectar dev`; each has an env twin with the same NECTAR_* naming.
#[derive(Debug, clap::Args)]
pub struct DevArgs {
    /// Address to listen on.
    #[arg(long, env = "NECTAR_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Data dir of the embedded backends (event log, models).
    #[arg(long, env = "NECTAR_DATA_DIR", default_value = "./.nectar")]
    pub data_dir: PathBuf,
    /// Declarative config file; the embedded default when omitted.
    #[arg(long, env = "NECTAR_CONFIG")]
    pub config: Option<PathBuf>,
    /// Send collected events to this Kinesis stream instead of the local event log; an
    /// embedded consumer archives the stream into the event log (the data dir, or --bucket).
    #[arg(long, env = "NECTAR_STREAM_NAME")]
    pub stream: Option<String>,
    /// Keep the event log in this S3 bucket instead of the data dir.
    #[arg(long, env = "NECTAR_BUCKET")]
    pub bucket: Option<String>,
    /// Serve models from this Redis (`redis://…`, `redis-cluster://h:p,h:p`) instead of the
    /// data dir's model store.
    #[arg(long, env = "NECTAR_REDIS_URL")]
    pub redis: Option<String>,
    /// Do not log served recommendations as `recommendation_served` events.
    #[arg(long)]
    pub no_served_log: bool,
    /// Threads that serve connections (each keeps its connections); default: one per CPU.
    #[arg(long, env = "NECTAR_DEV_WORKERS", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub workers: Option<u16>,
}

/// The collect sink chosen by the flags.
enum DevSink {
    Local(LocalEventLog),
    Kinesis(KinesisSink<SdkKinesis>),
    Store(nectar_platform::event_log::store_sink::StoreSink<AnyStore>),
}

impl EventSink for DevSink {
    async fn put(&self, batch: &Accepted) -> Result<(), SinkError> {
        match self {
            Self::Local(s) => s.put(batch).await,
            Self::Kinesis(s) => s.put(batch).await,
            Self::Store(s) => s.put(batch).await,
        }
    }
}

/// The services behind the dev server.
struct AppState {
    collect: CollectService<HistorySink<Arc<DevSink>, AnyModelStore>>,
    recommend: RecommendService<AnyModelStore, HistorySink<Arc<DevSink>, AnyModelStore>>,
    config: Arc<NectarConfig>,
    keys: AdminKeys,
    /// The collect limit, also applied to the bodies of the routes that take none.
    max_body_bytes: usize,
    /// The Prometheus view of the metrics (`GET /metrics`), when this process installed it.
    metrics: Option<PrometheusHandle>,
    /// The event log the online report reads (`GET /v1/report`).
    events: AnyStore,
    /// The OpenAPI document (`GET /openapi.json`) and its HTML rendering (`GET /docs`),
    /// built once.
    openapi: serde_json::Value,
    docs: Bytes,
    /// The model store the privacy routes erase from and export.
    models: AnyModelStore,
    /// The erasure log of the privacy routes.
    erasures: LocalErasureLog,
}

/// The Prometheus scrape route.
pub const METRICS_PATH: &str = "/metrics";

/// Every route `nectar dev` serves: the router answers those that take no body before reading
/// any, and a test checks that each is in the OpenAPI document.
pub const ROUTES: &[Route] = &[
    Route::body("post", COLLECT_PATH),
    Route::body("options", COLLECT_PATH),
    Route::body("get", "/v1/recommend/{endpoint}"),
    Route::body("get", "/v1/similar/{endpoint}"),
    Route::body("get", "/v1/session/{endpoint}"),
    Route::body("put", ITEMS_PATH),
    Route::body("get", REPORT_PATH),
    Route::body("delete", "/v1/users/{user_id}"),
    Route::body("delete", "/v1/clients/{client_id}"),
    Route::body("get", "/v1/users/{user_id}/export"),
    Route::no_body("get", "/"),
    Route::no_body("get", HEALTH_PATH),
    Route::no_body("get", METRICS_PATH),
    Route::no_body("get", OPENAPI_PATH),
    Route::no_body("get", DOCS_PATH),
];

/// One route of [`ROUTES`].
#[derive(Debug, Clone, Copy)]
pub struct Route {
    /// The method, lower case as in OpenAPI.
    pub method: &'static str,
    /// The path template, as in the OpenAPI document.
    pub path: &'static str,
    /// Whether the route reads a request body (GET-only routes without one answer first).
    pub reads_body: bool,
}

impl Route {
    const fn body(method: &'static str, path: &'static str) -> Self {
        Self {
            method,
            path,
            reads_body: true,
        }
    }

    const fn no_body(method: &'static str, path: &'static str) -> Self {
        Self {
            method,
            path,
            reads_body: false,
        }
    }
}

/// Histogram buckets of the `*_ms` metrics (latencies), in milliseconds.
const LATENCY_BUCKETS_MS: &[f64] = &[
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0,
];

/// Installs the Prometheus recorder as the process's metrics recorder; `None` (logged) when
/// another recorder is already installed.
pub(crate) fn install_prometheus() -> Option<PrometheusHandle> {
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_ms".into()), LATENCY_BUCKETS_MS)
        .expect("buckets are not empty")
        .build_recorder();
    let handle = recorder.handle();
    match metrics::set_global_recorder(recorder) {
        Ok(()) => Some(handle),
        Err(_) => {
            tracing::warn!("A metrics recorder is already installed; GET /metrics is off.");
            None
        }
    }
}

/// Counters whose alerts test "> 0" start at 0 for every site, so a dashboard or an alert
/// tells "none" from "not reported".
fn zero_counters(config: &NectarConfig) {
    use nectar_platform::observe::names::{self, dim};
    for site in config.sites.keys() {
        for name in [names::SERVED_LOG_DROPPED, names::ARCHIVE_RECORDS_PARKED] {
            metrics::counter!(name, dim::SITE => site.clone()).absolute(0);
        }
    }
}

/// `GET /metrics`: every metric in the Prometheus text format.
fn metrics_response(handle: Option<&PrometheusHandle>) -> http::Response<Bytes> {
    let Some(handle) = handle else {
        return AppError::NotFound(METRICS_PATH.into()).into_response();
    };
    let mut resp = http::Response::new(Bytes::from(handle.render()));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    resp
}

/// Answers one request. Bodies are read here, after every check that needs none, within
/// [`BODY_READ_TIMEOUT`] and the route's size limit.
async fn route(
    state: Arc<AppState>,
    req: http::Request<Incoming>,
    ambiguous_length: bool,
) -> conn::DevResponse {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let resp = if ambiguous_length {
        // hyper would read it as chunked; a client and a proxy may disagree on where it ends.
        close(AppError::invalid(
            "Content-Length",
            "a request with both Content-Length and Transfer-Encoding is ambiguous; send one",
        ))
    } else if ROUTES
        .iter()
        .any(|r| !r.reads_body && r.method == "get" && r.path == path)
    {
        if parts.method != Method::GET && parts.method != Method::HEAD {
            AppError::MethodNotAllowed {
                method: parts.method.to_string(),
                allow: "GET, HEAD",
            }
            .into_response()
        } else if path == "/" {
            index(&state.config)
        } else if path == METRICS_PATH {
            metrics_response(state.metrics.as_ref())
        } else if path == OPENAPI_PATH {
            json_response(StatusCode::OK, &state.openapi)
        } else if path == DOCS_PATH {
            html_response(&state.docs)
        } else {
            state
                .recommend
                .health_response(nectar_platform::now_ms())
                .await
        }
    } else {
        let limit = if path == ITEMS_PATH {
            // The key before the body: a caller without one cannot make the server read
            // (or wait for) a body, nor learn from its problems.
            if let Err(e) = authorize_items_request(
                &state.config,
                &state.keys,
                &parts.method,
                &parts.uri,
                &parts.headers,
            ) {
                return full(close(e));
            }
            MAX_ITEMS_BODY
        } else {
            state.max_body_bytes
        };
        match read_body(body, limit).await {
            Err(e) => close(e),
            Ok(bytes) => {
                let req = http::Request::from_parts(parts, bytes);
                if path == COLLECT_PATH {
                    state.collect.handle(&req, nectar_platform::now_ms()).await
                } else if RecommendService::<AnyModelStore, DevSink>::routes(&path) {
                    state
                        .recommend
                        .handle(&req, nectar_platform::now_ms())
                        .await
                } else if path == ITEMS_PATH {
                    handle_items(&state.config, &state.keys, state.recommend.catalog(), &req)
                } else if path == REPORT_PATH {
                    report_route::handle(
                        &state.events,
                        Some(state.recommend.catalog()),
                        &state.config,
                        &state.keys,
                        &req,
                        nectar_platform::now_ms(),
                    )
                    .await
                } else if privacy_route::routes(&path) {
                    let p = privacy_route::Privacy {
                        store: &state.models,
                        log: &state.erasures,
                        events: &state.events,
                        config: &state.config,
                        keys: &state.keys,
                        // The local event log has no lifecycle rule.
                        raw_log_expiry_days: None,
                    };
                    privacy_route::handle(&p, &req, nectar_platform::now_ms()).await
                } else {
                    AppError::NotFound(path).into_response()
                }
            }
        }
    };
    full(resp)
}

/// The body, whole: `413 payload_too_large` over `limit`, `408 request_timeout` after
/// [`BODY_READ_TIMEOUT`], and `400 invalid_request` when it cannot be read (a
/// `Content-Length` longer than what arrives, broken chunked framing).
async fn read_body(body: Incoming, limit: usize) -> Result<Bytes, AppError> {
    // A declared length over the limit is refused before reading a byte of it.
    if body.size_hint().lower() > limit as u64 {
        return Err(AppError::PayloadTooLarge { limit });
    }
    let read = tokio::time::timeout(BODY_READ_TIMEOUT, Limited::new(body, limit).collect());
    match read.await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(AppError::PayloadTooLarge { limit })
        }
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "Request body could not be read.");
            Err(AppError::invalid(
                "body",
                "the request body could not be read",
            ))
        }
        Err(_) => Err(AppError::RequestTimeout {
            seconds: BODY_READ_TIMEOUT.as_secs(),
        }),
    }
}

/// An error answer after which the connection is closed: the rest of the body is unread (or
/// unreadable), so the stream is no longer at the start of a request.
fn close(e: AppError) -> http::Response<Bytes> {
    let mut resp = e.into_response();
    resp.headers_mut().insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("close"),
    );
    resp
}

fn full(resp: http::Response<Bytes>) -> conn::DevResponse {
    resp.map(Full::new)
}

/// `GET /docs`: a static page.
fn html_response(page: &Bytes) -> http::Response<Bytes> {
    let mut resp = http::Response::new(page.clone());
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/html; charset=utf-8"),
    );
    resp
}

/// `GET /`: where things are.
fn index(config: &NectarConfig) -> http::Response<Bytes> {
    let sites: serde_json::Map<String, serde_json::Value> = config
        .sites
        .iter()
        .map(|(site, sc)| {
            let endpoints: serde_json::Map<String, serde_json::Value> = sc
                .endpoints
                .iter()
                .map(|(name, ep)| {
                    let route = match ep.kind {
                        nectar_platform::config::EndpointKind::User => {
                            format!("GET /v1/recommend/{name}?s={site}&user_id=USER&n=10")
                        }
                        nectar_platform::config::EndpointKind::Similar => {
                            format!("GET /v1/similar/{name}?s={site}&item_id=ITEM&n=10")
                        }
                        nectar_platform::config::EndpointKind::Session => {
                            format!("GET /v1/session/{name}?s={site}&items=ITEM,ITEM&n=10")
                        }
                    };
                    (name.clone(), serde_json::json!(route))
                })
                .collect();
            (site.clone(), serde_json::json!({ "endpoints": endpoints }))
        })
        .collect();
    json_response(
        StatusCode::OK,
        &serde_json::json!({
            "service": "nectar dev",
            "health": HEALTH_PATH,
            "metrics": METRICS_PATH,
            "openapi": OPENAPI_PATH,
            "docs": DOCS_PATH,
            "report": "GET /v1/report?s=SITE&format=json|html|md (Authorization: Bearer KEY)",
            "routes": {
                "collect": "POST /v1/collect?s=SITE",
                "recommend": "GET /v1/recommend/{endpoint}?s=SITE&user_id=USER&n=10",
                "similar": "GET /v1/similar/{endpoint}?s=SITE&item_id=ITEM&n=10",
                "items": "PUT /v1/items?s=SITE (Authorization: Bearer KEY)",
                "erase": "DELETE /v1/users/{user_id}?s=SITE, DELETE /v1/clients/{client_id}?s=SITE (Authorization: Bearer KEY)",
                "export": "GET /v1/users/{user_id}/export?s=SITE (Authorization: Bearer KEY)",
                "health": "GET /healthz",
            },
            "sites": sites,
        }),
    )
}

/// Runs the dev server until Ctrl-C.
pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    let config = Arc::new(NectarConfig::load(args.config.as_deref())?);
    let backends = Backends::new(&args.data_dir);
    let store = backends.events(args.bucket.as_deref()).await;
    // The banner reads the newest events from wherever the log is kept.
    let banner_events = store.clone();
    let writer_id = format!("dev-{}-{}", std::process::id(), nectar_platform::now_ms());
    let sink = match &args.stream {
        Some(stream) => {
            let client = backends.kinesis().await;
            nectar_platform::archive::kinesis_reader::spawn_archiver(
                client.clone(),
                stream.clone(),
                store.clone(),
                // A little before now, so nothing sent while the consumer starts is missed.
                nectar_platform::now_ms() - 5_000,
            );
            DevSink::Kinesis(KinesisSink::new(
                SdkKinesis::new(client, stream),
                RetryPolicy::default(),
            ))
        }
        None => match store {
            AnyStore::Local(_) => DevSink::Local(
                LocalEventLog::start(&args.data_dir, &writer_id).with_context(|| {
                    format!("cannot open the data dir {}", args.data_dir.display())
                })?,
            ),
            s3 => DevSink::Store(nectar_platform::event_log::store_sink::StoreSink::new(
                s3, writer_id,
            )),
        },
    };
    let models = backends.models(args.redis.as_deref()).await?;
    let keys_path = args.data_dir.join("keys.txt");
    let keys = AdminKeys::load(&keys_path)
        .with_context(|| format!("cannot read {}", keys_path.display()))?;
    let catalog = Catalog::open(&args.data_dir)?;
    let sink = Arc::new(sink);
    let options = RecommendOptions {
        log_served: !args.no_served_log,
        ..RecommendOptions::default()
    };
    let api_doc = openapi::document();
    let state = Arc::new(AppState {
        collect: CollectService::new(
            config.clone(),
            // Collected events' metadata merges into the catalog the rules read.
            HistorySink::new(sink.clone(), models.clone(), config.clone())
                .with_catalog(catalog.clone()),
        ),
        recommend: RecommendService::new(
            config.clone(),
            models.clone(),
            // Served answers update the live bandit counts, as the archive function does.
            Arc::new(HistorySink::new(sink, models.clone(), config.clone())),
            catalog,
            keys.clone(),
            options,
        ),
        config: config.clone(),
        keys,
        max_body_bytes: config.collect_limits().max_body_bytes,
        metrics: install_prometheus().inspect(|_| zero_counters(&config)),
        events: banner_events.clone(),
        docs: Bytes::from(openapi_html::render(&api_doc)),
        openapi: api_doc,
        models,
        erasures: LocalErasureLog::new(&args.data_dir),
    });
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("cannot listen on {}", args.addr))?;
    let sites = config.sites.keys().cloned().collect::<Vec<_>>().join(", ");
    let backend = match (&args.stream, &args.bucket) {
        (Some(s), Some(b)) => format!("Kinesis stream {s} → S3 bucket {b}"),
        (Some(s), None) => format!("Kinesis stream {s} → {}", args.data_dir.display()),
        (None, Some(b)) => format!("S3 bucket {b}"),
        (None, None) => format!("local event log in {}", args.data_dir.display()),
    };
    // The bound address (`--addr` may say port 0), and ids from the data.
    let bound = listener.local_addr()?;
    println!("nectar dev listening on http://{bound}  (sites: {sites}; events: {backend})");
    let samples = crate::banner::samples(&banner_events, &config).await;
    for line in crate::banner::request_lines(bound, &config, &samples, &args.data_dir) {
        println!("{line}");
    }
    let models_at = args.redis.as_deref().map_or_else(
        || format!("{}/models", args.data_dir.display()),
        |_| "Redis".to_string(),
    );
    println!("  models from {models_at}");
    let app = state.clone();
    let workers = args.workers.map_or_else(
        || std::thread::available_parallelism().map_or(2, |n| n.get()),
        usize::from,
    );
    conn::serve(
        listener,
        workers,
        move |req, ambiguous| route(app.clone(), req, ambiguous),
        shutdown_signal(),
    )
    .await?;
    // Answers still queued in the served log are written before exit.
    let r = state.recommend.served_log().flush().await;
    if r.requeued > 0 {
        eprintln!(
            "nectar dev: {} served events could not be written at shutdown",
            r.requeued
        );
    }
    // Let in-flight commits finish before exit.
    tokio::time::sleep(Duration::from_millis(50)).await;
    Ok(())
}

/// Ctrl-C or SIGTERM (what `kill` and service managers send).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_served_is_in_the_openapi_document() {
        // GIVEN the document
        let doc = openapi::document();
        // THEN each route of the router has an operation there, and a path is not listed twice
        for r in ROUTES {
            assert!(
                doc["paths"][r.path][r.method].is_object(),
                "{} {} is served but not documented",
                r.method,
                r.path
            );
            assert_eq!(
                ROUTES
                    .iter()
                    .filter(|o| o.path == r.path && o.method == r.method)
                    .count(),
                1
            );
        }
    }
}
