#![recursion_limit = "256"]

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use nectar_platform::catalog::dynamo::DynamoCatalog;
use nectar_platform::catalog::Catalog;
use nectar_platform::env;
use nectar_platform::model_store::redis_env;
use nectar_platform::object_store::S3Store;
use nectar_platform::observe::emf::EmfRecorder;
use nectar_platform::privacy::dynamo::DynamoErasureLog;
use nectar_platform::registry::DynamoRegistry;
use nectar_platform::train::trainer::ModelTrainer;
use nectar_platform::train::TrainDeps;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let metrics = EmfRecorder::install_global();
    let cfg = env::config()?;
    let bucket = env::required(env::NECTAR_BUCKET)?;
    let table = env::required(env::NECTAR_REGISTRY_TABLE)?;
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let events = S3Store::new(aws_sdk_s3::Client::new(&aws), bucket);
    let models = redis_env::required_model_store_from_env(&aws).await?;
    let registry = DynamoRegistry::new(aws_sdk_dynamodb::Client::new(&aws), table);
    // The subjects erased through the recommend function's privacy routes.
    let erasures = DynamoErasureLog::new(
        aws_sdk_dynamodb::Client::new(&aws),
        env::required(env::NECTAR_ERASURES_TABLE)?,
    );
    let trainer = ModelTrainer;
    // The report job reads item categories (diversity, coverage) from the catalog table.
    let catalog_table = env::optional(env::NECTAR_CATALOG_TABLE)
        .map(|t| DynamoCatalog::new(aws_sdk_dynamodb::Client::new(&aws), t));
    run(service_fn(|event: LambdaEvent<serde_json::Value>| {
        let deps = TrainDeps {
            events: &events,
            erasures: &erasures,
            models: &models,
            registry: &registry,
            trainer: &trainer,
        };
        let (cfg, metrics, catalog_table) = (&cfg, &metrics, &catalog_table);
        async move {
            let catalog = report_catalog(catalog_table.as_ref(), &event.payload).await;
            let out = train::handler::handle(cfg, deps, catalog.as_ref(), event).await;
            metrics.flush_stdout();
            out
        }
    }))
    .await
}

/// The site's catalog for a report job, when a catalog table is configured; a failed read is
/// logged and the report goes on without it (coverage and diversity are then null).
async fn report_catalog(
    table: Option<&DynamoCatalog>,
    payload: &serde_json::Value,
) -> Option<Catalog> {
    let (job, input) = train::handler::job_of(payload)?;
    let site = input["site"].as_str().filter(|_| job == "report")?;
    match table?.load_site(site).await {
        Ok(items) => {
            let catalog = Catalog::in_memory();
            catalog.replace_site(site, items);
            Some(catalog)
        }
        Err(e) => {
            tracing::warn!(%site, error = %e, "Catalog unavailable; the report has no coverage or diversity.");
            None
        }
    }
}
