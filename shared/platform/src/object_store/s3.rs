//! The S3 adapter of the object store port.

use bytes::Bytes;

use super::{check_key, ObjectMeta, ObjectStore, StoreError};

/// Objects in an S3 bucket.
#[derive(Debug, Clone)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3Store {
    /// A store over `bucket`.
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
        }
    }
}

impl ObjectStore for S3Store {
    #[tracing::instrument(skip(self, body), fields(bucket = %self.bucket, bytes = body.len()))]
    async fn put(&self, key: &str, body: Bytes) -> Result<(), StoreError> {
        check_key(key)?;
        let content_type = if key.ends_with(".gz") {
            "application/gzip"
        } else if key.ends_with(".parquet") {
            "application/vnd.apache.parquet"
        } else {
            "application/json"
        };
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(body.into())
            .send()
            .await
            .map_err(|e| StoreError::S3 {
                op: "PutObject",
                key: key.to_string(),
                source: Box::new(e),
            })?;
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        check_key(key)?;
        let resp = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(None),
            Err(e) => {
                return Err(StoreError::S3 {
                    op: "GetObject",
                    key: key.to_string(),
                    source: Box::new(e),
                })
            }
        };
        let body = resp.body.collect().await.map_err(|e| StoreError::S3 {
            op: "GetObject",
            key: key.to_string(),
            source: Box::new(e),
        })?;
        Ok(Some(body.into_bytes()))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| StoreError::S3 {
                op: "ListObjectsV2",
                key: prefix.to_string(),
                source: Box::new(e),
            })?;
            out.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_string)),
            );
        }
        out.sort();
        Ok(out)
    }

    async fn list_meta(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        let mut out = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| StoreError::S3 {
                op: "ListObjectsV2",
                key: prefix.to_string(),
                source: Box::new(e),
            })?;
            out.extend(page.contents().iter().filter_map(|o| {
                Some(ObjectMeta {
                    key: o.key()?.to_string(),
                    size: o.size().unwrap_or(0).max(0) as u64,
                })
            }));
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }
}
