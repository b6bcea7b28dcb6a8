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
    })
}

/// The services: from `NECTAR_TEST_REDIS_URL`/`NECTAR_TEST_AWS_ENDPOINT`, else started (once,
/// idempotently) with `tests/services.sh start`, which installs them when missing.
pub fn services() -> &'static Services {
    static SERVICES: OnceLock<Services> = OnceLock::new();
    SERVICES.get_or_init(|| {
        if let (Ok(redis_url), Ok(aws_endpoint)) = (
            std::env::var("NECTAR_TEST_REDIS_URL"),
            std::env::var("NECTAR_TEST_AWS_ENDPOINT"),
        ) {
            return Services {
                redis_url,
                aws_endpoint,
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
