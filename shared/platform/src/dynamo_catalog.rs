//! DynamoDB twins of the local catalog file and key file, for the recommend Lambda.
//!
//! - Catalog table: pk `site`, sk `item_id`; attributes `category`, `available_from`,
//!   `available_until` (numbers, ms UTC), `title`. Loaded whole per site at cold start and
//!   reloaded by [`spawn_refresh`] (the serving path reads the catalog from memory); written whole by `PUT /v1/items` and
//!   `nectar import --items` ([`DynamoCatalog::put_items`]) and merged field by field from
//!   collected events' metadata by the archive function ([`DynamoCatalog::merge_items`]).
//! - Keys table: pk `key_hash` (hex SHA-256 of the key), attribute `site`. Only hashes are
//!   stored; the table is scanned at cold start into [`AdminKeys`],
//!   and again by [`spawn_refresh`].

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};

use crate::catalog::ItemMeta;
use crate::keys::AdminKeys;

/// A DynamoDB failure.
#[derive(Debug, thiserror::Error)]
#[error("DynamoDB {op} on {table} failed")]
pub struct DynamoError {
    op: &'static str,
    table: String,
    #[source]
    source: Box<dyn std::error::Error + Send + Sync>,
}

/// The catalog table.
#[derive(Debug, Clone)]
pub struct DynamoCatalog {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

/// The keys table.
#[derive(Debug, Clone)]
pub struct DynamoKeys {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn get_s(m: &HashMap<String, AttributeValue>, k: &str) -> Option<String> {
    m.get(k).and_then(|v| v.as_s().ok()).cloned()
}

fn get_n(m: &HashMap<String, AttributeValue>, k: &str) -> Option<i64> {
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

impl DynamoCatalog {
    /// The catalog in `table`.
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    fn err(
        &self,
        op: &'static str,
        e: impl std::error::Error + Send + Sync + 'static,
    ) -> DynamoError {
        DynamoError {
            op,
            table: self.table.clone(),
            source: Box::new(e),
        }
    }

    /// Upserts items (batches of 25, unprocessed items retried).
    pub async fn put_items(&self, site: &str, items: &[ItemMeta]) -> Result<(), DynamoError> {
        for chunk in items.chunks(25) {
            let mut writes: Vec<WriteRequest> = chunk
                .iter()
                .map(|it| {
                    let mut m = HashMap::from([
                        ("site".to_string(), s(site)),
                        ("item_id".to_string(), s(&it.id)),
                    ]);
                    if let Some(c) = &it.category {
                        m.insert("category".into(), s(c));
                    }
                    if let Some(t) = &it.title {
                        m.insert("title".into(), s(t));
                    }
                    if let Some(f) = it.available_from {
                        m.insert("available_from".into(), n(f));
                    }
                    if let Some(u) = it.available_until {
                        m.insert("available_until".into(), n(u));
                    }
                    WriteRequest::builder()
                        .put_request(
                            PutRequest::builder()
                                .set_item(Some(m))
                                .build()
                                .expect("item set"),
                        )
                        .build()
                })
                .collect();
            for attempt in 0..8 {
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, writes.clone())
                    .send()
                    .await
                    .map_err(|e| self.err("BatchWriteItem", e))?;
                writes = out
                    .unprocessed_items
                    .and_then(|mut u| u.remove(&self.table))
                    .unwrap_or_default();
                if writes.is_empty() {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50 << attempt)).await;
            }
            if !writes.is_empty() {
                return Err(DynamoError {
                    op: "BatchWriteItem",
                    table: self.table.clone(),
                    source: format!("{} items still unprocessed after retries", writes.len())
                        .into(),
                });
            }
        }
        Ok(())
    }

    /// Merges items field by field, one `UpdateItem` (`SET` of the fields each item sets) per
    /// item, a few at a time: unlike [`Self::put_items`], fields an item does not set are kept.
    pub async fn merge_items(&self, site: &str, items: &[ItemMeta]) -> Result<(), DynamoError> {
        for chunk in items.chunks(8) {
            futures::future::try_join_all(chunk.iter().map(|it| self.update_item(site, it)))
                .await?;
        }
        Ok(())
    }

    async fn update_item(&self, site: &str, it: &ItemMeta) -> Result<(), DynamoError> {
        let fields = [
            ("category", it.category.as_deref().map(s)),
            ("title", it.title.as_deref().map(s)),
            ("available_from", it.available_from.map(n)),
            ("available_until", it.available_until.map(n)),
        ];
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("site", s(site))
            .key("item_id", s(&it.id));
        let mut sets = Vec::new();
        for (name, value) in fields {
            if let Some(v) = value {
                sets.push(format!("#{name} = :{name}"));
                req = req
                    .expression_attribute_names(format!("#{name}"), name)
                    .expression_attribute_values(format!(":{name}"), v);
            }
        }
        // With nothing to set, the key alone still creates an absent item.
        if !sets.is_empty() {
            req = req.update_expression(format!("SET {}", sets.join(", ")));
        }
        req.send().await.map_err(|e| self.err("UpdateItem", e))?;
        Ok(())
    }

    /// Every item of a site.
    pub async fn load_site(&self, site: &str) -> Result<Vec<ItemMeta>, DynamoError> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("site = :s")
                .expression_attribute_values(":s", s(site))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| self.err("Query", e))?;
            for m in page.items() {
                if let Some(id) = get_s(m, "item_id") {
                    out.push(ItemMeta {
                        id,
                        category: get_s(m, "category"),
                        available_from: get_n(m, "available_from"),
                        available_until: get_n(m, "available_until"),
                        title: get_s(m, "title"),
                    });
                }
            }
            start = page.last_evaluated_key;
            if start.is_none() {
                return Ok(out);
            }
        }
    }
}

impl crate::catalog::CatalogWriter for DynamoCatalog {
    type Error = DynamoError;

    fn merge_items(
        &self,
        site: &str,
        items: &[ItemMeta],
    ) -> impl std::future::Future<Output = Result<(), DynamoError>> + Send {
        DynamoCatalog::merge_items(self, site, items)
    }
}

impl DynamoKeys {
    /// The keys in `table`.
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// Stores a new key's hash for `site` and returns the key (shown once).
    pub async fn create(&self, site: &str) -> Result<String, DynamoError> {
        let key = crate::keys::new_key();
        self.client
            .put_item()
            .table_name(&self.table)
            .item("key_hash", s(&hex::encode(crate::keys::key_hash(&key))))
            .item("site", s(site))
            .send()
            .await
            .map_err(|e| DynamoError {
                op: "PutItem",
                table: self.table.clone(),
                source: Box::new(e),
            })?;
        Ok(key)
    }

    /// Every stored key hash, as [`AdminKeys`].
    pub async fn load(&self) -> Result<AdminKeys, DynamoError> {
        let mut keys = AdminKeys::none();
        let mut start = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| DynamoError {
                    op: "Scan",
                    table: self.table.clone(),
                    source: Box::new(e),
                })?;
            for m in page.items() {
                if let (Some(h), Some(site)) = (get_s(m, "key_hash"), get_s(m, "site")) {
                    keys.add_hash(&h, &site);
                }
            }
            start = page.last_evaluated_key;
            if start.is_none() {
                return Ok(keys);
            }
        }
    }
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
