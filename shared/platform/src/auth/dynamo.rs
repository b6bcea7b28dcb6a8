//! The DynamoDB twin of the local key file: pk `key_hash` (hex SHA-256 of the key), attribute
//! `site`. Only hashes are stored; the table is scanned at cold start into [`AdminKeys`], and
//! again by [`crate::dynamo::spawn_refresh`].

use crate::auth::AdminKeys;
use crate::dynamo::{get_s, s, DynamoError};

/// The keys table.
#[derive(Debug, Clone)]
pub struct DynamoKeys {
    client: aws_sdk_dynamodb::Client,
    table: String,
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
        let key = crate::auth::new_key();
        self.client
            .put_item()
            .table_name(&self.table)
            .item("key_hash", s(&hex::encode(crate::auth::key_hash(&key))))
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
