//! Redis as deployed: TLS (`rediss://`, `rediss-cluster://`) with AUTH credentials read from a
//! Secrets Manager secret (moto), through the functions' own cold-start path
//! (`redis_env::connect_model_store`), against servers whose `default` user has exactly the
//! SAM template's RBAC access string (tests/services.sh).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use nectar_platform::env::{NECTAR_REDIS_CA_FILE, NECTAR_REDIS_SECRET_ARN, NECTAR_REDIS_URL};
use nectar_platform::model_store::contract::{artifacts, model_store_contract};
use nectar_platform::model_store::redis_env::{self, RedisSetupError};
use nectar_platform::model_store::{ModelStore, PublishOptions, RedisModelStore};

async fn secrets() -> aws_sdk_secretsmanager::Client {
    aws_sdk_secretsmanager::Client::new(&nectar_tests::aws_config().await)
}

/// Stores `text` as a new secret on moto and returns its ARN.
async fn put_secret(text: &str) -> String {
    secrets()
        .await
        .create_secret()
        .name(nectar_tests::unique("nectar-redis"))
        .secret_string(text)
        .send()
        .await
        .expect("moto creates the secret")
        .arn()
        .expect("an ARN")
        .to_string()
}

/// The functions' variables, as a lookup (the process environment is shared by the tests).
fn vars(url: &str, arn: Option<&str>) -> impl Fn(&'static str) -> Option<String> {
    let mut m: HashMap<&'static str, String> = HashMap::new();
    m.insert(NECTAR_REDIS_URL, url.to_string());
    m.insert(
        NECTAR_REDIS_CA_FILE,
        nectar_tests::tls_redis().ca_file.clone(),
    );
    if let Some(arn) = arn {
        m.insert(NECTAR_REDIS_SECRET_ARN, arn.to_string());
    }
    move |k| m.get(k).cloned()
}

async fn connect(url: &str, arn: Option<&str>) -> Result<RedisModelStore, RedisSetupError> {
    let aws = nectar_tests::aws_config().await;
    redis_env::connect_model_store(&aws, vars(url, arn))
        .await
        .map(|s| s.expect("NECTAR_REDIS_URL is set"))
}

/// The error and its sources, one per line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(&format!("\n  caused by: {s}"));
        cur = s.source();
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_secret_over_tls_publishes_and_reads_back() {
    let tls = nectar_tests::tls_redis();
    // GIVEN the template's secret form {"username","password"} on Secrets Manager
    let arn = put_secret(&format!(
        r#"{{"username":"{}","password":"{}"}}"#,
        tls.user, tls.password
    ))
    .await;
    // WHEN a function connects at cold start with rediss:// and the test CA
    let store = connect(&tls.url, Some(&arn)).await.expect("TLS + AUTH");
    assert!(!store.conn().is_cluster());
    // THEN a tiny version publishes and its pointer and history read back
    let site = format!("tls{:08x}", rand::random::<u32>());
    store
        .publish(
            &site,
            "als",
            1,
            &artifacts(1, 3, 4),
            &PublishOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(store.current_version(&site, "als").await.unwrap(), Some(1));
    store
        .append_history(&site, "u0", &["i1".to_string()], 10)
        .await
        .unwrap();
    let states = store
        .user_states(&site, "als", 1, &["u0".to_string()])
        .await
        .unwrap();
    assert_eq!(states[0].history, vec!["i1".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_secret_over_tls_cluster_passes_the_contract_within_the_acl() {
    let tls = nectar_tests::tls_redis();
    // GIVEN a secret that is the bare password (AUTH <password> = the default user)
    let arn = put_secret(&tls.password).await;
    // WHEN connecting to the TLS cluster the way the template's URL says
    let store = connect(&tls.cluster_url, Some(&arn))
        .await
        .expect("TLS cluster + AUTH");
    assert!(store.conn().is_cluster());
    // THEN every store operation (publish, retire, rollback, history) works with the commands
    // the deployed access string allows
    model_store_contract(&store, "tlscontract").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_a_clear_error() {
    let tls = nectar_tests::tls_redis();
    let arn = put_secret(r#"{"username":"default","password":"not-the-password"}"#).await;
    for url in [&tls.url, &tls.cluster_url] {
        let started = Instant::now();
        // WHEN the password is wrong THEN connecting fails (no panic) and says why
        let err = connect(url, Some(&arn)).await.unwrap_err();
        let text = chain(&err);
        eprintln!("{url}: {:?}\n{text}", started.elapsed());
        assert!(matches!(err, RedisSetupError::Connect(_)), "{text}");
        assert!(text.contains(NECTAR_REDIS_URL), "{text}");
        let lower = text.to_lowercase();
        assert!(
            lower.contains("wrongpass") || lower.contains("authentication"),
            "{text}"
        );
        // AND never shows the password
        assert!(!text.contains("not-the-password"), "{text}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{url}: {:?}",
            started.elapsed()
        );
    }
    // AND without any credentials the ACL'd server refuses too
    let started = Instant::now();
    let err = connect(&tls.url, None).await.unwrap_err();
    eprintln!("no auth: {:?}\n{}", started.elapsed(), chain(&err));
    assert!(
        matches!(err, RedisSetupError::Connect(_)),
        "{}",
        chain(&err)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_secret_names_the_arn() {
    let tls = nectar_tests::tls_redis();
    let arn = format!(
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:{}",
        nectar_tests::unique("nectar-missing")
    );
    let err = connect(&tls.url, Some(&arn)).await.unwrap_err();
    let text = chain(&err);
    assert!(matches!(err, RedisSetupError::SecretRead { .. }), "{text}");
    assert!(err.to_string().contains(&arn), "{text}");
    assert!(err.to_string().contains(NECTAR_REDIS_SECRET_ARN), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_without_the_ca_is_refused() {
    let tls = nectar_tests::tls_redis();
    // GIVEN the system roots only (the throwaway CA is not among them)
    let options = nectar_platform::model_store::RedisOptions {
        auth: Some(nectar_platform::model_store::RedisAuth {
            username: Some(tls.user.clone()),
            password: tls.password.clone(),
        }),
        ca_pem: None,
    };
    // THEN the certificate is not trusted
    let err = RedisModelStore::connect_with(&tls.url, &options)
        .await
        .unwrap_err();
    assert!(
        chain(&err).to_lowercase().contains("certificate"),
        "{}",
        chain(&err)
    );
}
