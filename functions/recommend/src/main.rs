use std::sync::Arc;

use lambda_http::{run, service_fn, Error};
use nectar_platform::catalog::Catalog;
use nectar_platform::env;
use nectar_platform::keys::AdminKeys;
use nectar_platform::kinesis::{KinesisSink, RetryPolicy, SdkKinesis};
use nectar_platform::model_store::RedisModelStore;
use nectar_platform::recommend::{RecommendOptions, RecommendService};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let config = Arc::new(env::config()?);
    let redis_url = env::required(env::NECTAR_REDIS_URL)?;
    let stream = env::required(env::NECTAR_STREAM_NAME)?;
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let sink = KinesisSink::new(
        SdkKinesis::new(aws_sdk_kinesis::Client::new(&aws), stream),
        RetryPolicy::default(),
    );
    let models = RedisModelStore::connect(&redis_url).await?;
    let svc = RecommendService::new(
        config,
        models,
        Arc::new(sink),
        Catalog::in_memory(),
        AdminKeys::none(),
        RecommendOptions::default(),
    );
    run(service_fn(|req| recommend::handler::handle(&svc, req))).await
}
