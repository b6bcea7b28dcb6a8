//! Small helpers of the train-side integration tests over `nectar_tests` (services, AWS config).
#![allow(dead_code)]

/// `(redis_url, aws_endpoint)` of the running test services.
pub fn services() -> (String, String) {
    let s = nectar_tests::services();
    (s.redis_url.clone(), s.aws_endpoint.clone())
}

/// AWS config for moto.
pub async fn aws_config() -> aws_config::SdkConfig {
    nectar_tests::aws_config().await
}

/// An S3 client for moto (path-style addressing).
pub async fn s3_client() -> aws_sdk_s3::Client {
    let cfg = aws_config().await;
    let conf = aws_sdk_s3::config::Builder::from(&cfg)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// A fresh bucket on moto.
pub async fn new_bucket(client: &aws_sdk_s3::Client, prefix: &str) -> String {
    let name = nectar_tests::unique(prefix);
    client.create_bucket().bucket(&name).send().await.unwrap();
    name
}
