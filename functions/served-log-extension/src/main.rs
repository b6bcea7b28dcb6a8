use std::sync::Arc;
use std::time::Duration;

use lambda_extension::{service_fn, Error, Extension, LambdaEvent};
use nectar_platform::collect::kinesis::{KinesisSink, RetryPolicy, SdkKinesis};
use nectar_platform::collect::local_socket::{self, DEFAULT_SOCKET};
use nectar_platform::env;
use nectar_platform::recommend::served_log::{FlushMode, ServedLog};

/// How often the queue is written while the environment is thawed (and at once at
/// `served_log::FLUSH_AT` events).
const FLUSH_EVERY: Duration = Duration::from_secs(1);

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_extension::tracing::init_default_subscriber();
    let stream = env::required(env::NECTAR_STREAM_NAME)?;
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let sink = KinesisSink::new(
        SdkKinesis::new(aws_sdk_kinesis::Client::new(&aws), stream),
        RetryPolicy::default(),
    );
    let log = ServedLog::new(Arc::new(sink), FlushMode::Background { every: FLUSH_EVERY });
    // Bound before registering: Lambda starts the function's init only after every external
    // extension has registered, so the socket exists before the first answer.
    let path =
        env::optional(env::NECTAR_SERVED_LOG_SOCKET).unwrap_or_else(|| DEFAULT_SOCKET.into());
    let listener = local_socket::bind(path.as_ref())?;
    let queue = log.clone();
    tokio::spawn(local_socket::serve(listener, move |a| queue.push(a)));
    let processor = service_fn(move |event: LambdaEvent| {
        let log = log.clone();
        async move {
            nectar_served_log::on_event(&log, &event.next).await;
            Ok::<(), Error>(())
        }
    });
    Extension::new()
        .with_events(&["INVOKE", "SHUTDOWN"])
        .with_events_processor(processor)
        .run()
        .await
}
