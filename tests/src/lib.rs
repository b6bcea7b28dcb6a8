//! Shared helpers of the integration tests in `tests/tests/`: endpoints of the real services
//! (redis-server, moto_server) started by `tests/services.sh`, and AWS clients pointed at them.

use std::path::PathBuf;
use std::sync::OnceLock;

/// Endpoints of the running test services.
#[derive(Debug, Clone)]
pub struct Services {
    /// `redis://127.0.0.1:PORT`.
    pub redis_url: String,
    /// `http://127.0.0.1:PORT` of moto_server.
    pub aws_endpoint: String,
    /// `redis-cluster://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3`: a 3-master Redis Cluster.
    pub redis_cluster_url: String,
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

fn read_env_file() -> Option<Services> {
    let text = std::fs::read_to_string(repo_root().join("tests/.services/env")).ok()?;
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .map(str::to_string)
    };
    Some(Services {
        redis_url: get("NECTAR_TEST_REDIS_URL")?,
        aws_endpoint: get("NECTAR_TEST_AWS_ENDPOINT")?,
        redis_cluster_url: get("NECTAR_TEST_REDIS_CLUSTER_URL")?,
    })
}

/// The services: from `NECTAR_TEST_REDIS_URL`, `NECTAR_TEST_AWS_ENDPOINT` and
/// `NECTAR_TEST_REDIS_CLUSTER_URL`, else started (once, idempotently) with
/// `tests/services.sh start`, which installs them when missing.
pub fn services() -> &'static Services {
    static SERVICES: OnceLock<Services> = OnceLock::new();
    SERVICES.get_or_init(|| {
        if let (Ok(redis_url), Ok(aws_endpoint), Ok(redis_cluster_url)) = (
            std::env::var("NECTAR_TEST_REDIS_URL"),
            std::env::var("NECTAR_TEST_AWS_ENDPOINT"),
            std::env::var("NECTAR_TEST_REDIS_CLUSTER_URL"),
        ) {
            return Services {
                redis_url,
                aws_endpoint,
                redis_cluster_url,
            };
        }
        let status = std::process::Command::new("bash")
            .arg(repo_root().join("tests/services.sh"))
            .arg("start")
            .status()
            .expect("cannot run tests/services.sh");
        assert!(status.success(), "tests/services.sh start failed");
        read_env_file().expect("tests/services.sh start wrote no tests/.services/env")
    })
}

/// The TLS + AUTH Redis servers started by `tests/services.sh` (the deployed shape: `rediss`,
/// a certificate from a throwaway CA, a `default` user with the template's access string).
#[derive(Debug, Clone)]
pub struct TlsRedis {
    /// `rediss://127.0.0.1:PORT`: one node.
    pub url: String,
    /// `rediss-cluster://127.0.0.1:P1,…`: a 3-master cluster.
    pub cluster_url: String,
    /// PEM file of the CA that signed the servers' certificate.
    pub ca_file: String,
    /// The ACL user.
    pub user: String,
    /// Its password.
    pub password: String,
}

/// The TLS servers: from `NECTAR_TEST_REDIS_TLS_URL`, `…_TLS_CLUSTER_URL`, `…_TLS_CA_FILE`,
/// `…_TLS_USER` and `…_TLS_PASSWORD`, else from what `tests/services.sh start` wrote.
pub fn tls_redis() -> &'static TlsRedis {
    static TLS: OnceLock<TlsRedis> = OnceLock::new();
    TLS.get_or_init(|| {
        let vars = [
            "NECTAR_TEST_REDIS_TLS_URL",
            "NECTAR_TEST_REDIS_TLS_CLUSTER_URL",
            "NECTAR_TEST_REDIS_TLS_CA_FILE",
            "NECTAR_TEST_REDIS_TLS_USER",
            "NECTAR_TEST_REDIS_TLS_PASSWORD",
        ];
        let from_env: Option<Vec<String>> = vars.iter().map(|k| std::env::var(k).ok()).collect();
        let values = from_env.unwrap_or_else(|| {
            services();
            let text = std::fs::read_to_string(repo_root().join("tests/.services/env"))
                .expect("tests/services.sh start wrote no tests/.services/env");
            vars.iter()
                .map(|k| {
                    text.lines()
                        .find_map(|l| l.strip_prefix(&format!("{k}=")))
                        .unwrap_or_else(|| panic!("{k} missing from tests/.services/env"))
                        .to_string()
                })
                .collect()
        });
        let [url, cluster_url, ca_file, user, password] =
            <[String; 5]>::try_from(values).expect("five values");
        TlsRedis {
            url,
            cluster_url,
            ca_file,
            user,
            password,
        }
    })
}

/// SDK config for moto: test credentials, us-east-1, the moto endpoint.
pub async fn aws_config() -> aws_config::SdkConfig {
    let s = services();
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(&s.aws_endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_credential_types::Credentials::new(
            "test",
            "test",
            None,
            None,
            "nectar-tests",
        ))
        .load()
        .await
}

/// A name unique to this test run, safe for streams, buckets and tables.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}-{:08x}", std::process::id(), rand_u32())
}

fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.finish() as u32
}
