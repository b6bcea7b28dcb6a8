//! `nectar dev`: one local HTTP server hosting the same services as the Lambdas.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::body::Body;
use axum::extract::State;
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use nectar_model::event::Accepted;
use nectar_platform::catalog::{handle_items, Catalog, ITEMS_PATH};
use nectar_platform::collect::{CollectService, COLLECT_PATH};
use nectar_platform::config::NectarConfig;
use nectar_platform::error::AppError;
use nectar_platform::history::HistorySink;
use nectar_platform::keys::AdminKeys;
use nectar_platform::kinesis::{KinesisSink, RetryPolicy, SdkKinesis};
use nectar_platform::local_log::LocalEventLog;
use nectar_platform::model_store::{AnyModelStore, LocalModelStore, RedisModelStore};
use nectar_platform::recommend::{RecommendOptions, RecommendService};
use nectar_platform::sink::{EventSink, SinkError};
use nectar_platform::store::{AnyStore, LocalStore, S3Store};

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
}

/// The collect sink chosen by the flags.
enum DevSink {
    Local(LocalEventLog),
    Kinesis(KinesisSink<SdkKinesis>),
    Store(nectar_platform::archive::StoreSink<AnyStore>),
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
    recommend: RecommendService<AnyModelStore, DevSink>,
    config: Arc<NectarConfig>,
    keys: AdminKeys,
}

/// Bodies above this are refused before reading them whole (the collect limit is 1 MiB).
const MAX_REQUEST_BYTES: usize = (1 << 20) + 1;

async fn route(
    State(state): State<Arc<AppState>>,
    req: axum::extract::Request,
) -> axum::response::Response {
    let (parts, body) = req.into_parts();
    let bytes: Bytes = match Limited::new(body, MAX_REQUEST_BYTES).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return to_axum(AppError::PayloadTooLarge { limit: 1 << 20 }.into_response()),
    };
    let req = http::Request::from_parts(parts, bytes);
    let path = req.uri().path();
    let resp = if path == COLLECT_PATH {
        state.collect.handle(&req, nectar_platform::now_ms()).await
    } else if RecommendService::<AnyModelStore, DevSink>::routes(path) {
        state
            .recommend
            .handle(&req, nectar_platform::now_ms())
            .await
    } else if path == ITEMS_PATH {
        handle_items(&state.config, &state.keys, state.recommend.catalog(), &req)
    } else {
        AppError::NotFound(req.uri().path().to_string()).into_response()
    };
    to_axum(resp)
}

fn to_axum(resp: http::Response<Bytes>) -> axum::response::Response {
    resp.map(Body::from)
}

/// Runs the dev server until Ctrl-C.
pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    let config = Arc::new(NectarConfig::load(args.config.as_deref())?);
    let aws = if args.stream.is_some() || args.bucket.is_some() {
        Some(aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await)
    } else {
        None
    };
    let store = match (&args.bucket, &aws) {
        (Some(bucket), Some(aws)) => {
            AnyStore::S3(S3Store::new(aws_sdk_s3::Client::new(aws), bucket))
        }
        _ => AnyStore::Local(LocalStore::new(&args.data_dir)),
    };
    // The banner reads the newest events from wherever the log is kept.
    let banner_events = store.clone();
    let writer_id = format!("dev-{}-{}", std::process::id(), nectar_platform::now_ms());
    let sink = match (&args.stream, &aws) {
        (Some(stream), Some(aws)) => {
            let client = aws_sdk_kinesis::Client::new(aws);
            nectar_platform::kinesis_consumer::spawn_archiver(
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
        _ => match store {
            AnyStore::Local(_) => DevSink::Local(
                LocalEventLog::start(&args.data_dir, &writer_id).with_context(|| {
                    format!("cannot open the data dir {}", args.data_dir.display())
                })?,
            ),
            s3 => DevSink::Store(nectar_platform::archive::StoreSink::new(s3, writer_id)),
        },
    };
    let models = match &args.redis {
        Some(url) => AnyModelStore::Redis(
            RedisModelStore::connect(url)
                .await
                .with_context(|| "cannot connect to --redis".to_string())?,
        ),
        None => AnyModelStore::Local(LocalModelStore::new(&args.data_dir)),
    };
    let keys_path = args.data_dir.join("keys.txt");
    let keys = AdminKeys::load(&keys_path)
        .with_context(|| format!("cannot read {}", keys_path.display()))?;
    let catalog = Catalog::open(&args.data_dir)?;
    let sink = Arc::new(sink);
    let options = RecommendOptions {
        log_served: !args.no_served_log,
        ..RecommendOptions::default()
    };
    let state = Arc::new(AppState {
        collect: CollectService::new(
            config.clone(),
            // Collected events' metadata merges into the catalog the rules read.
            HistorySink::new(sink.clone(), models.clone(), config.clone())
                .with_catalog(catalog.clone()),
        ),
        recommend: RecommendService::new(
            config.clone(),
            models,
            sink,
            catalog,
            keys.clone(),
            options,
        ),
        config: config.clone(),
        keys,
    });
    let app = axum::Router::new()
        .fallback(route)
        .with_state(state.clone());
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
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
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
