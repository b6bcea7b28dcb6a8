//! The CLI's choice of backends, made once for every command (`dev`, `train`, `import`,
//! `report`): the data dir's embedded twins, unless a flag names the real service — an S3
//! bucket for the event log, a Redis URL for the model store, DynamoDB tables for the registry
//! and the catalog, a Kinesis stream. The AWS configuration (environment, profile, and
//! `AWS_ENDPOINT_URL` for moto) is loaded once, and only when a flag asks for AWS.

use std::path::{Path, PathBuf};

use anyhow::Context;
use nectar_platform::catalog::dynamo::DynamoCatalog;
use nectar_platform::model_store::{AnyModelStore, LocalModelStore, RedisModelStore};
use nectar_platform::object_store::{AnyStore, LocalStore, S3Store};
use nectar_platform::registry::{AnyRegistry, DynamoRegistry, LocalRegistry};
use tokio::sync::OnceCell;

/// The backends of one command run.
#[derive(Debug)]
pub struct Backends {
    data_dir: PathBuf,
    endpoint_url: Option<String>,
    aws: OnceCell<aws_config::SdkConfig>,
}

impl Backends {
    /// Embedded backends under `data_dir` unless a flag says otherwise.
    pub fn new(data_dir: &Path) -> Self {
        Self {
            data_dir: data_dir.to_path_buf(),
            endpoint_url: None,
            aws: OnceCell::new(),
        }
    }

    /// Sends every AWS call to `url` (e.g. a local moto server; S3 then uses path-style
    /// addressing) instead of the endpoint the environment names (`AWS_ENDPOINT_URL`).
    pub fn with_endpoint_url(mut self, url: Option<String>) -> Self {
        self.endpoint_url = url;
        self
    }

    /// The AWS configuration, loaded on first use.
    pub async fn aws(&self) -> &aws_config::SdkConfig {
        self.aws
            .get_or_init(|| async {
                let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
                if let Some(url) = &self.endpoint_url {
                    loader = loader.endpoint_url(url);
                }
                loader.load().await
            })
            .await
    }

    /// The event log: the S3 bucket `bucket`, else the data dir.
    pub async fn events(&self, bucket: Option<&str>) -> AnyStore {
        match bucket {
            Some(b) => {
                let conf = aws_sdk_s3::config::Builder::from(self.aws().await)
                    .force_path_style(self.endpoint_url.is_some())
                    .build();
                AnyStore::S3(S3Store::new(aws_sdk_s3::Client::from_conf(conf), b))
            }
            None => AnyStore::Local(LocalStore::new(&self.data_dir)),
        }
    }

    /// The model store: Redis at `redis`, else the data dir.
    pub async fn models(&self, redis: Option<&str>) -> anyhow::Result<AnyModelStore> {
        Ok(match redis {
            Some(url) => AnyModelStore::Redis(
                RedisModelStore::connect(url)
                    .await
                    .context("cannot connect to --redis")?,
            ),
            None => AnyModelStore::Local(LocalModelStore::new(&self.data_dir)),
        })
    }

    /// The model registry: the DynamoDB table `table`, else the data dir.
    pub async fn registry(&self, table: Option<&str>) -> AnyRegistry {
        match table {
            Some(t) => AnyRegistry::Dynamo(DynamoRegistry::new(
                aws_sdk_dynamodb::Client::new(self.aws().await),
                t,
            )),
            None => AnyRegistry::Local(LocalRegistry::new(&self.data_dir)),
        }
    }

    /// The DynamoDB catalog table `table`.
    pub async fn catalog_table(&self, table: &str) -> DynamoCatalog {
        DynamoCatalog::new(aws_sdk_dynamodb::Client::new(self.aws().await), table)
    }

    /// A Kinesis client.
    pub async fn kinesis(&self) -> aws_sdk_kinesis::Client {
        aws_sdk_kinesis::Client::new(self.aws().await)
    }
}
