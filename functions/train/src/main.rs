#![recursion_limit = "256"]

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use nectar_platform::env;
use nectar_platform::model_store::redis_env;
use nectar_platform::object_store::S3Store;
use nectar_platform::observe::emf::EmfRecorder;
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
    let trainer = ModelTrainer;
    run(service_fn(|event: LambdaEvent<serde_json::Value>| {
        let deps = TrainDeps {
            events: &events,
            models: &models,
            registry: &registry,
            trainer: &trainer,
        };
        let (cfg, metrics) = (&cfg, &metrics);
        async move {
            let out = train::handler::handle(cfg, deps, event).await;
            metrics.flush_stdout();
            out
        }
    }))
    .await
}
