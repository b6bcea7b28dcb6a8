use std::sync::Arc;
use std::time::Duration;

use lambda_http::{run, service_fn, Error};
use nectar_platform::auth::dynamo::DynamoKeys;
use nectar_platform::auth::AdminKeys;
use nectar_platform::catalog::dynamo::DynamoCatalog;
use nectar_platform::catalog::Catalog;
use nectar_platform::collect::kinesis::{KinesisSink, RetryPolicy, SdkKinesis};
use nectar_platform::collect::local_socket::{SocketSink, DEFAULT_SOCKET};
use nectar_platform::collect::log_stream::LogStreamSink;
use nectar_platform::dynamo::spawn_refresh;
use nectar_platform::env;
use nectar_platform::model_store::redis_env;
use nectar_platform::object_store::S3Store;
use nectar_platform::observe::emf::EmfRecorder;
use nectar_platform::privacy::dynamo::DynamoErasureLog;
use nectar_platform::recommend::served_log::FlushMode;
use nectar_platform::recommend::{RecommendOptions, RecommendService};
use recommend::served::{ServedRoute, ServedSink};

/// How often catalog and keys are reloaded from DynamoDB.
const RELOAD_TABLES_EVERY: Duration = Duration::from_secs(60);

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let metrics = EmfRecorder::install_global();
    let config = Arc::new(env::config()?);
    let route = ServedRoute::parse(env::optional(env::NECTAR_SERVED_LOG).as_deref())?;
    let bucket = env::required(env::NECTAR_BUCKET)?;
    let erasures_table = env::required(env::NECTAR_ERASURES_TABLE)?;
    let raw_log_expiry_days = env::events_expiration_days()?;
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let sink = match route {
        ServedRoute::Log => ServedSink::Log(LogStreamSink::stdout()),
        ServedRoute::Extension => {
            let socket = env::optional(env::NECTAR_SERVED_LOG_SOCKET)
                .unwrap_or_else(|| DEFAULT_SOCKET.into());
            ServedRoute::check_socket(socket.as_ref())?;
            ServedSink::Extension(SocketSink::new(socket))
        }
        ServedRoute::Kinesis => ServedSink::Kinesis(KinesisSink::new(
            SdkKinesis::new(
                aws_sdk_kinesis::Client::new(&aws),
                env::required(env::NECTAR_STREAM_NAME)?,
            ),
            RetryPolicy::default(),
        )),
    };
    let models = redis_env::required_model_store_from_env(&aws).await?;
    let dynamo = aws_sdk_dynamodb::Client::new(&aws);
    // Catalog and keys are read whole at cold start, then reloaded in the background.
    let catalog = Catalog::in_memory();
    let catalog_table =
        env::optional(env::NECTAR_CATALOG_TABLE).map(|t| DynamoCatalog::new(dynamo.clone(), t));
    if let Some(table) = &catalog_table {
        for site in config.sites.keys() {
            catalog.upsert(site, table.load_site(site).await?)?;
        }
    }
    let privacy = recommend::handler::PrivacyDeps {
        log: DynamoErasureLog::new(dynamo.clone(), erasures_table),
        events: S3Store::new(aws_sdk_s3::Client::new(&aws), bucket),
        raw_log_expiry_days,
    };
    let keys_table = env::optional(env::NECTAR_KEYS_TABLE).map(|t| DynamoKeys::new(dynamo, t));
    let keys = match &keys_table {
        Some(t) => t.load().await?,
        None => AdminKeys::none(),
    };
    spawn_refresh(
        config.sites.keys().cloned().collect(),
        (catalog.clone(), catalog_table.clone()),
        (keys.clone(), keys_table),
        RELOAD_TABLES_EVERY,
    );
    let options = RecommendOptions {
        served_flush: FlushMode::Deferred,
        ..RecommendOptions::default()
    };
    let svc = RecommendService::new(config, models, Arc::new(sink), catalog, keys, options);
    // Only the Kinesis route needs the internal extension (it writes after the answer); the
    // others write in the invocation, so the environment is free as soon as it answers.
    let (answered, extension) = if route.written_inline() {
        (recommend::flush::Answered::none(), None)
    } else {
        recommend::flush::register(svc.served_log().clone(), Duration::from_millis(200)).await
    };
    let table = catalog_table.as_ref();
    let handler = run(service_fn(|req| {
        let answered = answered.clone();
        let (svc, metrics, privacy) = (&svc, &metrics, &privacy);
        async move {
            let resp = recommend::handler::handle(svc, table, privacy, req).await;
            if route.written_inline() {
                let r = svc.served_log().flush().await;
                if r.requeued > 0 {
                    tracing::warn!(
                        requeued = r.requeued,
                        "Served log kept for the next invocation."
                    );
                }
            }
            metrics.flush_stdout();
            answered.signal();
            resp
        }
    }));
    match extension {
        Some(ext) => {
            tokio::try_join!(handler, ext)?;
        }
        None => handler.await?,
    }
    Ok(())
}
