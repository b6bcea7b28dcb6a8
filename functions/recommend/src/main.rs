use std::sync::Arc;

use lambda_http::{run, service_fn, Error};
use nectar_platform::catalog::Catalog;
use nectar_platform::dynamo_catalog::{DynamoCatalog, DynamoKeys};
use nectar_platform::env;
use nectar_platform::keys::AdminKeys;
use nectar_platform::kinesis::{KinesisSink, RetryPolicy, SdkKinesis};
use nectar_platform::recommend::{RecommendOptions, RecommendService};
use nectar_platform::redis_env;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let config = Arc::new(env::config()?);
    let stream = env::required(env::NECTAR_STREAM_NAME)?;
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let sink = KinesisSink::new(
        SdkKinesis::new(aws_sdk_kinesis::Client::new(&aws), stream),
        RetryPolicy::default(),
    );
    let models = redis_env::required_model_store_from_env(&aws).await?;
    let dynamo = aws_sdk_dynamodb::Client::new(&aws);
    // Catalog and keys are read whole at cold start (serving reads them from memory).
    let catalog = Catalog::in_memory();
    let catalog_table =
        env::optional(env::NECTAR_CATALOG_TABLE).map(|t| DynamoCatalog::new(dynamo.clone(), t));
    if let Some(table) = &catalog_table {
        for site in config.sites.keys() {
            catalog.upsert(site, table.load_site(site).await?)?;
        }
    }
    let keys = match env::optional(env::NECTAR_KEYS_TABLE) {
        Some(t) => DynamoKeys::new(dynamo, t).load().await?,
        None => AdminKeys::none(),
    };
    let svc = RecommendService::new(
        config,
        models,
        Arc::new(sink),
        catalog,
        keys,
        RecommendOptions::default(),
    );
    let table = catalog_table.as_ref();
    run(service_fn(|req| {
        recommend::handler::handle(&svc, table, req)
    }))
    .await
}
