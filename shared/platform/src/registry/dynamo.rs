//! The DynamoDB adapter of the registry port.

use aws_sdk_dynamodb::types::AttributeValue;

use super::{version_sort_key, Registry, RegistryError, RunRecord, RunStatus};

/// Runs in DynamoDB: `pk` = `<site>#<task>`, `sk` = [`version_sort_key`]; the record is the
/// `record` attribute (JSON), with `status`, `version`, `algorithm`, `started_ms` alongside
/// for the console and queries.
#[derive(Debug, Clone)]
pub struct DynamoRegistry {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

fn partition_key(site: &str, task: &str) -> String {
    format!("{site}#{task}")
}

impl DynamoRegistry {
    /// A registry over `table`.
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// Creates the table (on-demand billing) with the key schema above; for tests and local
    /// setups (the SAM template declares it in AWS).
    pub async fn create_table(
        client: &aws_sdk_dynamodb::Client,
        table: &str,
    ) -> Result<(), RegistryError> {
        crate::dynamo::create_table(client, table, "pk", Some("sk"))
            .await
            .map_err(|e| RegistryError::Dynamo {
                op: "CreateTable",
                table: table.to_string(),
                source: Box::new(e),
            })
    }

    fn err(
        &self,
        op: &'static str,
    ) -> impl FnOnce(Box<dyn std::error::Error + Send + Sync>) -> RegistryError + '_ {
        move |source| RegistryError::Dynamo {
            op,
            table: self.table.clone(),
            source,
        }
    }

    async fn query(
        &self,
        site: &str,
        task: &str,
        limit: usize,
        only_published: bool,
    ) -> Result<Vec<RunRecord>, RegistryError> {
        let mut out = Vec::new();
        let mut start: Option<std::collections::HashMap<String, AttributeValue>> = None;
        loop {
            let mut q = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", AttributeValue::S(partition_key(site, task)))
                .scan_index_forward(false)
                .limit(limit.clamp(1, 100) as i32)
                .set_exclusive_start_key(start.take());
            if only_published {
                q = q
                    .filter_expression("#s = :published")
                    .expression_attribute_names("#s", "status")
                    .expression_attribute_values(
                        ":published",
                        AttributeValue::S(RunStatus::Published.as_str().into()),
                    );
            }
            let resp = q.send().await.map_err(|e| self.err("Query")(Box::new(e)))?;
            for item in resp.items() {
                let sk = item
                    .get("sk")
                    .and_then(|v| v.as_s().ok())
                    .cloned()
                    .unwrap_or_default();
                let json = item
                    .get("record")
                    .and_then(|v| v.as_s().ok())
                    .ok_or_else(|| RegistryError::Corrupt {
                        key: sk.clone(),
                        problem: "no record attribute".into(),
                    })?;
                out.push(
                    serde_json::from_str(json).map_err(|e| RegistryError::Corrupt {
                        key: sk,
                        problem: e.to_string(),
                    })?,
                );
                if out.len() >= limit {
                    return Ok(out);
                }
            }
            match resp.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok(out),
            }
        }
    }
}

impl Registry for DynamoRegistry {
    #[tracing::instrument(skip(self, run), fields(site = %run.site, task = %run.task, version = run.version))]
    async fn record(&self, run: &RunRecord) -> Result<(), RegistryError> {
        let json = serde_json::to_string(run).expect("a run record serialises");
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", AttributeValue::S(partition_key(&run.site, &run.task)))
            .item("sk", AttributeValue::S(version_sort_key(run.version)))
            .item("version", AttributeValue::N(run.version.to_string()))
            .item("status", AttributeValue::S(run.status.as_str().into()))
            .item("algorithm", AttributeValue::S(run.algorithm.clone()))
            .item("started_ms", AttributeValue::N(run.started_ms.to_string()))
            .item("record", AttributeValue::S(json))
            .send()
            .await
            .map_err(|e| self.err("PutItem")(Box::new(e)))?;
        Ok(())
    }

    async fn runs(
        &self,
        site: &str,
        task: &str,
        limit: usize,
    ) -> Result<Vec<RunRecord>, RegistryError> {
        self.query(site, task, limit, false).await
    }

    async fn published(
        &self,
        site: &str,
        task: &str,
        limit: usize,
    ) -> Result<Vec<RunRecord>, RegistryError> {
        self.query(site, task, limit, true).await
    }
}
