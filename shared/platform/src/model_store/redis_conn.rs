//! Connections to Redis: a single node or a cluster (ElastiCache Serverless), chosen by the URL,
//! with optional AUTH and TLS, and the cluster's key slots.

use redis::aio::ConnectionManager;
use redis::cluster_async::ClusterConnection;
use redis::{Pipeline, Value};

/// A connection to a single node or to a cluster (chosen by the URL at start-up).
#[derive(Clone)]
pub enum RedisConn {
    /// One node, reconnecting on failure.
    Single(ConnectionManager),
    /// A Redis Cluster.
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for RedisConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Single(_) => "RedisConn::Single",
            Self::Cluster(_) => "RedisConn::Cluster",
        })
    }
}

/// Redis AUTH credentials (ACL user and password). `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisAuth {
    /// ACL user name; `None` sends `AUTH <password>` (the `default` user).
    pub username: Option<String>,
    /// Never logged or shown by `Debug`.
    pub password: String,
}

impl std::fmt::Debug for RedisAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisAuth")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// How to connect besides the URL: credentials and the CA certificates to trust.
#[derive(Debug, Clone, Default)]
pub struct RedisOptions {
    /// AUTH credentials; they replace any user/password in the URL.
    pub auth: Option<RedisAuth>,
    /// PEM CA certificates trusted for `rediss://` **instead of** the system roots (self-hosted
    /// Redis, tests). `None`: the system roots, which include the Amazon CAs of ElastiCache.
    pub ca_pem: Option<Vec<u8>>,
}

impl RedisConn {
    /// Connects. `url` is `redis://…` / `rediss://…` for one node;
    /// `redis-cluster://host:port[,host:port…]` (or `rediss-cluster://`) or a comma-separated
    /// list of node URLs for a cluster.
    pub async fn connect(url: &str) -> Result<Self, redis::RedisError> {
        Self::connect_with(url, &RedisOptions::default()).await
    }

    /// Connects with credentials and/or CA certificates (see [`RedisConn::connect`] for the URL
    /// forms). `rediss` URLs use TLS and verify the server's certificate and host name.
    pub async fn connect_with(
        url: &str,
        options: &RedisOptions,
    ) -> Result<Self, redis::RedisError> {
        use redis::IntoConnectionInfo;

        let cluster_nodes: Option<Vec<String>> =
            if let Some(rest) = url.strip_prefix("redis-cluster://") {
                Some(rest.split(',').map(|n| format!("redis://{n}")).collect())
            } else if let Some(rest) = url.strip_prefix("rediss-cluster://") {
                Some(rest.split(',').map(|n| format!("rediss://{n}")).collect())
            } else if url.contains(',') {
                Some(url.split(',').map(str::to_string).collect())
            } else {
                None
            };
        if options.ca_pem.is_some() && !url.starts_with("rediss") {
            return Err(redis::RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "CA certificates were given for a URL without TLS (use rediss:// or rediss-cluster://)",
            )));
        }
        let certs = options.ca_pem.as_ref().map(|pem| redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(pem.clone()),
        });
        match cluster_nodes {
            Some(nodes) => {
                let mut builder = redis::cluster::ClusterClientBuilder::new(nodes);
                if let Some(auth) = &options.auth {
                    builder = builder.password(&auth.password);
                    if let Some(user) = &auth.username {
                        builder = builder.username(user);
                    }
                }
                if let Some(certs) = certs {
                    builder = builder.certs(certs);
                }
                Ok(Self::Cluster(
                    builder.build()?.get_async_connection().await?,
                ))
            }
            None => {
                let mut info = url.into_connection_info()?;
                if let Some(auth) = &options.auth {
                    let mut settings = info.redis_settings().clone().set_password(&auth.password);
                    if let Some(user) = &auth.username {
                        settings = settings.set_username(user);
                    }
                    info = info.set_redis_settings(settings);
                }
                let client = match &certs {
                    Some(certs) => redis::Client::build_with_tls(info, certs.clone())?,
                    None => redis::Client::open(info)?,
                };
                // One attempt and a PING first: the connection manager retries for seconds
                // (too long for a cold start) and a server that wants AUTH refuses only the
                // first command, so wrong or missing credentials fail here, fast, and not on a
                // request (the cluster client checks its nodes the same way).
                let mut probe = client.get_multiplexed_async_connection().await?;
                redis::cmd("PING").query_async::<()>(&mut probe).await?;
                drop(probe);
                Ok(Self::Single(ConnectionManager::new(client).await?))
            }
        }
    }

    /// Whether this is a cluster connection.
    pub fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }

    pub(super) async fn query(&self, pipe: &Pipeline) -> Result<Vec<Value>, redis::RedisError> {
        match self.clone() {
            Self::Single(mut c) => pipe.query_async(&mut c).await,
            Self::Cluster(mut c) => pipe.query_async(&mut c).await,
        }
    }
}

/// The Redis cluster slot of a key (CRC16/XMODEM of the hash tag, mod 16384).
pub fn key_slot(key: &str) -> u16 {
    let b = key.as_bytes();
    let tagged = b.iter().position(|&c| c == b'{').and_then(|open| {
        let close = b[open + 1..].iter().position(|&c| c == b'}')?;
        (close > 0).then(|| &b[open + 1..open + 1 + close])
    });
    crc16_xmodem(tagged.unwrap_or(b)) % 16384
}

fn crc16_xmodem(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in data {
        crc ^= (byte as u16) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_redis_cluster_keyslot() {
        // Known answers of CLUSTER KEYSLOT.
        assert_eq!(crc16_xmodem(b"123456789"), 0x31C3);
        assert_eq!(key_slot("foo"), 12182);
        assert_eq!(key_slot("{foo}:bar"), 12182);
        assert_eq!(
            key_slot("nectar:{demo:als}:v1:items"),
            key_slot("x{demo:als}")
        );
        assert_eq!(key_slot("a{}b"), key_slot("a{}b"));
        assert_ne!(
            key_slot(&super::super::redis::RedisModelStore::user_base(
                "demo", "u1"
            )),
            key_slot(&super::super::redis::RedisModelStore::user_base(
                "demo", "u2"
            ))
        );
    }
}
