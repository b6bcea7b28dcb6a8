//! Endpoints of the local services (tests/services.sh): from the environment, else from
//! `tests/.services/env`, else the script's default ports. (The lead dedupes this with
//! `nectar_tests::services()`.)
#![allow(dead_code)]

/// `(redis_url, aws_endpoint)`.
pub fn services() -> (String, String) {
    let mut redis = std::env::var("NECTAR_TEST_REDIS_URL").ok();
    let mut aws = std::env::var("NECTAR_TEST_AWS_ENDPOINT").ok();
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".services/env");
    if let Ok(text) = std::fs::read_to_string(file) {
        for line in text.lines() {
            if let Some((k, v)) = line.split_once('=') {
                match k.trim() {
                    "NECTAR_TEST_REDIS_URL" if redis.is_none() => redis = Some(v.trim().into()),
                    "NECTAR_TEST_AWS_ENDPOINT" if aws.is_none() => aws = Some(v.trim().into()),
                    _ => {}
                }
            }
        }
    }
    (
        redis.unwrap_or_else(|| "redis://127.0.0.1:16379".into()),
        aws.unwrap_or_else(|| "http://127.0.0.1:15000".into()),
    )
}

/// AWS config for moto: fixed test credentials, us-east-1, the moto endpoint.
pub async fn aws_config() -> aws_config::SdkConfig {
    let (_, endpoint) = services();
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "test", "test", None, None, "static",
        ))
        .load()
        .await
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
    let name = format!("{prefix}-{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff);
    client.create_bucket().bucket(&name).send().await.unwrap();
    name
}
