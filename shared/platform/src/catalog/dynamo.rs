//! The DynamoDB twin of the local catalog file, for the recommend Lambda.
//!
//! Catalog table: pk `site`, sk `item_id`; attributes `category`, `available_from`,
//! `available_until` (numbers, ms UTC), `title`. Loaded whole per site at cold start and
//! reloaded by [`crate::dynamo::spawn_refresh`] (the serving path reads the catalog from memory); written whole by `PUT /v1/items` and
//! `nectar import --items` ([`DynamoCatalog::put_items`]) and merged field by field from
//! collected events' metadata by the archive function ([`DynamoCatalog::merge_items`]).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};

use crate::catalog::ItemMeta;
use crate::dynamo::{get_n, get_s, n, s, DynamoError};

/// The catalog table.
#[derive(Debug, Clone)]
pub struct DynamoCatalog {
    client: aws_sdk_dynamodb::Client,
    table: String,
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
