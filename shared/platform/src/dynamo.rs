//! What the DynamoDB adapters share (the catalog, keys and registry tables): the error, the
//! attribute helpers, table creation for tests and local setups, and the refresh loop of the
//! tables serving reads from memory.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use crate::auth::dynamo::DynamoKeys;
use crate::auth::AdminKeys;
use crate::catalog::dynamo::DynamoCatalog;
/// A DynamoDB failure.
#[derive(Debug, thiserror::Error)]
#[error("DynamoDB {op} on {table} failed")]
pub struct DynamoError {
    pub(crate) op: &'static str,
    pub(crate) table: String,
    #[source]
    pub(crate) source: Box<dyn std::error::Error + Send + Sync>,
}

pub(crate) fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}

pub(crate) fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(crate) fn get_s(m: &HashMap<String, AttributeValue>, k: &str) -> Option<String> {
    m.get(k).and_then(|v| v.as_s().ok()).cloned()
}

pub(crate) fn get_n(m: &HashMap<String, AttributeValue>, k: &str) -> Option<i64> {
    m.get(k)
        .and_then(|v| v.as_n().ok())
        .and_then(|x| x.parse().ok())
}

/// Creates a table with a string hash key (and optional string range key), on demand; for
/// tests and local setups (the SAM template declares the tables in AWS).
pub async fn create_table(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    hash: &str,
    range: Option<&str>,
) -> Result<(), DynamoError> {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    };
    let attr = |n: &str| {
        AttributeDefinition::builder()
            .attribute_name(n)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .expect("name and type are set")
    };
    let key = |n: &str, t: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(n)
            .key_type(t)
            .build()
            .expect("name and type are set")
    };
    let mut req = client
        .create_table()
        .table_name(table)
        .attribute_definitions(attr(hash))
        .key_schema(key(hash, KeyType::Hash))
        .billing_mode(BillingMode::PayPerRequest);
    if let Some(r) = range {
        req = req
            .attribute_definitions(attr(r))
            .key_schema(key(r, KeyType::Range));
    }
    req.send().await.map_err(|e| DynamoError {
        op: "CreateTable",
        table: table.to_string(),
        source: Box::new(e),
    })?;
    Ok(())
}

/// Keeps a Lambda's in-memory catalog and admin keys fresh: reloads both tables every `every`
/// (catalog upserts made through other instances, and key revocations, reach this one within
/// that time). A failed reload keeps what is in memory and is logged.
pub fn spawn_refresh(
    sites: Vec<String>,
    catalog: (crate::catalog::Catalog, Option<DynamoCatalog>),
    keys: (AdminKeys, Option<DynamoKeys>),
    every: std::time::Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            if let Some(table) = &catalog.1 {
                for site in &sites {
                    match table.load_site(site).await {
                        Ok(items) => catalog.0.replace_site(site, items),
                        Err(e) => {
                            tracing::warn!(%site, error = %e, "Catalog reload failed; keeping the loaded one.")
                        }
                    }
                }
            }
            if let Some(table) = &keys.1 {
                match table.load().await {
                    Ok(fresh) => keys.0.replace_with(&fresh),
                    Err(e) => {
                        tracing::warn!(error = %e, "Keys reload failed; keeping the loaded ones.")
                    }
                }
            }
        }
    })
}
