//! Environment variable names shared by the functions and the `nectar` CLI (one naming scheme
//! for every backend), and helpers that fail fast naming the missing variable.

use std::path::PathBuf;
use std::time::Duration;

use crate::config::{ConfigError, NectarConfig};

/// Path of the declarative config file; the embedded default when unset.
pub const NECTAR_CONFIG: &str = "NECTAR_CONFIG";
/// Kinesis stream that collect writes to.
pub const NECTAR_STREAM_NAME: &str = "NECTAR_STREAM_NAME";
/// S3 bucket of the event log.
pub const NECTAR_BUCKET: &str = "NECTAR_BUCKET";
/// Local data dir of the embedded backends.
pub const NECTAR_DATA_DIR: &str = "NECTAR_DATA_DIR";
/// Redis URL of the model store: `redis://…`, `rediss://…`, or `redis-cluster://h:p[,h:p…]`
/// (`rediss-cluster://` with TLS) for a cluster (ElastiCache, Serverless included, is a cluster).
pub const NECTAR_REDIS_URL: &str = "NECTAR_REDIS_URL";
/// ARN of the Secrets Manager secret with the Redis AUTH credentials: JSON
/// `{"username": "...", "password": "..."}` or the bare password (optional).
pub const NECTAR_REDIS_SECRET_ARN: &str = "NECTAR_REDIS_SECRET_ARN";
/// PEM file of CA certificates trusted for `rediss://` instead of the system roots (self-hosted
/// Redis, tests; optional).
pub const NECTAR_REDIS_CA_FILE: &str = "NECTAR_REDIS_CA_FILE";
/// DynamoDB table of the item catalog (pk `site`, sk `item_id`).
pub const NECTAR_CATALOG_TABLE: &str = "NECTAR_CATALOG_TABLE";
/// DynamoDB table of admin key hashes (pk `key_hash`).
pub const NECTAR_KEYS_TABLE: &str = "NECTAR_KEYS_TABLE";
/// DynamoDB table of the model registry (pk `pk` = `<site>#<task>`, sk `sk` = version).
pub const NECTAR_REGISTRY_TABLE: &str = "NECTAR_REGISTRY_TABLE";
/// DynamoDB table of GDPR erasure requests (pk `pk` = site, sk `sk` = `user:<id>` /
/// `client:<id>`): written by the privacy routes, read by training and compaction.
pub const NECTAR_ERASURES_TABLE: &str = "NECTAR_ERASURES_TABLE";
/// Days before the bucket's lifecycle rule deletes raw event-log objects (`0` or unset: never);
/// the erasure answer states it.
pub const NECTAR_EVENTS_EXPIRATION_DAYS: &str = "NECTAR_EVENTS_EXPIRATION_DAYS";
/// Deadline in ms for collect's retries of unacknowledged Kinesis records.
pub const NECTAR_PUT_DEADLINE_MS: &str = "NECTAR_PUT_DEADLINE_MS";
/// Where the recommend function writes its served log: `log` (default: JSON lines on stdout,
/// delivered by a CloudWatch Logs subscription), `extension` (the served-log extension's
/// socket) or `kinesis` (PutRecords after each invocation, from an internal extension).
pub const NECTAR_SERVED_LOG: &str = "NECTAR_SERVED_LOG";
/// Unix socket of the served-log extension (default `/tmp/nectar-served-log.sock`).
pub const NECTAR_SERVED_LOG_SOCKET: &str = "NECTAR_SERVED_LOG_SOCKET";

/// A missing or malformed environment variable.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    /// A required variable is not set.
    #[error("environment variable {0} is required")]
    Missing(&'static str),
    /// A variable is set but malformed.
    #[error("environment variable {name} is invalid: {problem}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// The config file named by `NECTAR_CONFIG` is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// A required variable.
pub fn required(name: &'static str) -> Result<String, EnvError> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .ok_or(EnvError::Missing(name))
}

/// An optional variable.
pub fn optional(name: &'static str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// An optional duration in ms.
pub fn optional_ms(name: &'static str) -> Result<Option<Duration>, EnvError> {
    optional(name)
        .map(|v| {
            v.parse::<u64>()
                .map(Duration::from_millis)
                .map_err(|e| EnvError::Invalid {
                    name,
                    problem: e.to_string(),
                })
        })
        .transpose()
}

/// The config named by `NECTAR_CONFIG`, or the embedded default.
pub fn config() -> Result<NectarConfig, EnvError> {
    Ok(NectarConfig::load(
        optional(NECTAR_CONFIG).map(PathBuf::from).as_deref(),
    )?)
}

/// The raw event log's lifecycle expiry from `NECTAR_EVENTS_EXPIRATION_DAYS` (none when unset
/// or `0`, the template's "never").
pub fn events_expiration_days() -> Result<Option<u32>, EnvError> {
    parse_expiration_days(optional(NECTAR_EVENTS_EXPIRATION_DAYS).as_deref())
}

fn parse_expiration_days(v: Option<&str>) -> Result<Option<u32>, EnvError> {
    match v.map(str::parse::<u32>) {
        None | Some(Ok(0)) => Ok(None),
        Some(Ok(d)) => Ok(Some(d)),
        Some(Err(e)) => Err(EnvError::Invalid {
            name: NECTAR_EVENTS_EXPIRATION_DAYS,
            problem: e.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiration_days_zero_and_unset_mean_never() {
        assert_eq!(parse_expiration_days(None).unwrap(), None);
        assert_eq!(parse_expiration_days(Some("0")).unwrap(), None);
        assert_eq!(parse_expiration_days(Some("30")).unwrap(), Some(30));
        let e = parse_expiration_days(Some("-1")).unwrap_err().to_string();
        assert!(e.contains(NECTAR_EVENTS_EXPIRATION_DAYS), "{e}");
    }
}
