#![recursion_limit = "256"]

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use nectar_platform::catalog::dynamo::DynamoCatalog;
use nectar_platform::env;
use nectar_platform::model_store::redis_env;
use nectar_platform::object_store::S3Store;
use nectar_platform::observe::emf::EmfRecorder;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let metrics = EmfRecorder::install_global();
    let bucket = env::required(env::NECTAR_BUCKET)?;
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let store = S3Store::new(aws_sdk_s3::Client::new(&aws), bucket);
    // With a model store, users' recent histories and hourly item counts (real-time
    // trending) are kept fresh in Redis too.
    let config = env::config()?;
    let models = redis_env::model_store_from_env(&aws).await?;
    let history = models.as_ref().map(|m| (m, &config));
    // With a catalog table, items' metadata from the events is merged into the catalog.
    let catalog = env::optional(env::NECTAR_CATALOG_TABLE)
        .map(|t| DynamoCatalog::new(aws_sdk_dynamodb::Client::new(&aws), t));
    let catalog = catalog.as_ref().map(|c| (c, &config));
    run(service_fn(|event: LambdaEvent<_>| {
        let (store, metrics) = (&store, &metrics);
        async move {
            let out = archive::handler::handle_with_catalog(store, history, catalog, event).await;
            metrics.flush_stdout();
            out
        }
    }))
    .await
}
