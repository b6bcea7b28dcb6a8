use std::sync::Arc;

use lambda_http::{run, service_fn, Error};
use nectar_platform::collect::kinesis::{KinesisSink, RetryPolicy, SdkKinesis};
use nectar_platform::collect::CollectService;
use nectar_platform::env;
use nectar_platform::observe::emf::EmfRecorder;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let metrics = EmfRecorder::install_global();
    let config = Arc::new(env::config()?);
    let stream = env::required(env::NECTAR_STREAM_NAME)?;
    let mut policy = RetryPolicy::default();
    if let Some(deadline) = env::optional_ms(env::NECTAR_PUT_DEADLINE_MS)? {
        policy.deadline = deadline;
    }
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let sink = KinesisSink::new(
        SdkKinesis::new(aws_sdk_kinesis::Client::new(&aws), stream),
        policy,
    );
    let svc = CollectService::new(config, sink);
    run(service_fn(|req| {
        let (svc, metrics) = (&svc, &metrics);
        async move {
            let resp = collect::handler::handle(svc, req).await;
            metrics.flush_stdout();
            resp
        }
    }))
    .await
}
