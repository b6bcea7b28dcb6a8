//! The DynamoDB erasure log: table `nectar-erasures`, `pk` = site, `sk` = the subject
//! (`user:<id>` / `client:<id>`), `requested_ms`. One item per subject: a repeated request
//! keeps the first time (conditional put), so the item count is the site's watermark too.

use aws_sdk_dynamodb::types::AttributeValue;

use super::{Erasure, ErasureLog, ErasureLogError, Subject};
use crate::dynamo::{get_n, get_s, s};

/// Erasures in DynamoDB.
#[derive(Debug, Clone)]
pub struct DynamoErasureLog {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoErasureLog {
    /// A log over `table`.
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// Creates the table (on demand); for tests and local setups.
    pub async fn create_table(
        client: &aws_sdk_dynamodb::Client,
        table: &str,
    ) -> Result<(), ErasureLogError> {
        crate::dynamo::create_table(client, table, "pk", Some("sk"))
            .await
            .map_err(|e| ErasureLogError::Dynamo {
                op: "CreateTable",
                source: Box::new(e),
            })
    }
}

impl ErasureLog for DynamoErasureLog {
    async fn record(
        &self,
        site: &str,
        subject: &Subject,
        requested_ms: i64,
    ) -> Result<(), ErasureLogError> {
        let r = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(site))
            .item("sk", s(&subject.key()))
            .item("requested_ms", AttributeValue::N(requested_ms.to_string()))
            .condition_expression("attribute_not_exists(sk)")
            .send()
            .await;
        match r {
            Ok(_) => Ok(()),
            // Already erased: the first request's time stands.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(ErasureLogError::Dynamo {
                op: "PutItem",
                source: Box::new(e),
            }),
        }
    }

    async fn erasures(&self, site: &str) -> Result<Vec<Erasure>, ErasureLogError> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let resp = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(site))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| ErasureLogError::Dynamo {
                    op: "Query",
                    source: Box::new(e),
                })?;
            for item in resp.items() {
                if let (Some(subject), Some(requested_ms)) =
                    (get_s(item, "sk"), get_n(item, "requested_ms"))
                {
                    out.push(Erasure {
                        subject,
                        requested_ms,
                    });
                }
            }
            match resp.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        Ok(out)
    }
}
