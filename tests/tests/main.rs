//! The integration tests against the real services (redis-server, moto_server), one test
//! binary: each module below was its own binary, each linking the AWS SDK (about 170 MB in
//! debug). Run one module with `cargo test -p nectar-tests --test integration <module>`.

mod common;

mod bandit_redis;
mod catalog_dynamodb;
mod collect_archive;
mod compact_s3;
mod erasures_dynamodb;
mod model_store_redis;
mod privacy_e2e;
mod publish_s3;
mod reader_s3;
mod recommend_redis;
mod redis_tls_auth;
mod registry_dynamodb;
mod report_s3;
mod train_s3;
