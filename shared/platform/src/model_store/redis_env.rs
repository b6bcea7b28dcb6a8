//! Redis connection settings of the deployed functions, read once at cold start: the URL
//! (`NECTAR_REDIS_URL`), AUTH credentials from a Secrets Manager secret
//! (`NECTAR_REDIS_SECRET_ARN`) and an optional CA bundle (`NECTAR_REDIS_CA_FILE`).
//!
//! The secret's `SecretString` is JSON `{"username": "...", "password": "..."}` (the form the SAM
//! template generates; `username` is optional) or the bare password. Neither the password nor
//! the secret's text ever appears in logs or errors: errors name the variable and the ARN.

use aws_sdk_secretsmanager::error::SdkError;
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError;

use crate::env::{self, NECTAR_REDIS_CA_FILE, NECTAR_REDIS_SECRET_ARN, NECTAR_REDIS_URL};
use crate::model_store::{ModelStoreError, RedisAuth, RedisModelStore, RedisOptions};

/// Why the Redis settings could not be read or the store not reached.
#[derive(Debug, thiserror::Error)]
pub enum RedisSetupError {
    /// A required variable is not set.
    #[error(transparent)]
    Env(#[from] env::EnvError),
    /// Secrets Manager refused or failed to return the secret.
    #[error("cannot read the Redis AUTH secret {arn} (from {NECTAR_REDIS_SECRET_ARN})")]
    SecretRead {
        /// The secret's ARN.
        arn: String,
        /// The SDK error (its code and message, never the secret).
        #[source]
        source: Box<SdkError<GetSecretValueError>>,
    },
    /// The secret was read but is not usable.
    #[error("the Redis AUTH secret {arn} (from {NECTAR_REDIS_SECRET_ARN}) {problem}")]
    SecretFormat {
        /// The secret's ARN.
        arn: String,
        /// What is wrong, without any of the secret's text.
        problem: &'static str,
    },
    /// The CA bundle cannot be read or holds no certificate.
    #[error("cannot use the Redis CA bundle {path} (from {NECTAR_REDIS_CA_FILE}): {problem}")]
    CaFile {
        /// The file.
        path: String,
        /// What is wrong.
        problem: String,
    },
    /// The Redis store could not be reached (or refused the credentials).
    #[error("cannot connect to the Redis model store named by {NECTAR_REDIS_URL}")]
    Connect(#[source] ModelStoreError),
}

/// Parses a secret's `SecretString`: a JSON object with `password` (and optionally `username`),
/// or the bare password. `arn` only names the secret in errors.
pub fn parse_redis_secret(arn: &str, text: &str) -> Result<RedisAuth, RedisSetupError> {
    let bad = |problem| RedisSetupError::SecretFormat {
        arn: arn.to_string(),
        problem,
    };
    // Only a JSON object is the structured form: a bare password may itself parse as JSON
    // (a number, a quoted string).
    let object = match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(o)) => o,
        _ if text.is_empty() => return Err(bad("is empty")),
        _ => {
            return Ok(RedisAuth {
                username: None,
                password: text.to_string(),
            })
        }
    };
    // serde_json's own messages quote the offending value: build ours instead.
    let password = match object.get("password") {
        Some(serde_json::Value::String(p)) if !p.is_empty() => p.clone(),
        Some(serde_json::Value::String(_)) => return Err(bad("has an empty \"password\"")),
        Some(_) => return Err(bad("has a \"password\" that is not a string")),
        None => return Err(bad("is a JSON object without \"password\"")),
    };
    let username = match object.get("username") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(u)) if u.is_empty() => None,
        Some(serde_json::Value::String(u)) => Some(u.clone()),
        Some(_) => return Err(bad("has a \"username\" that is not a string")),
    };
    Ok(RedisAuth { username, password })
}

/// Reads the AUTH credentials from the secret `arn`.
pub async fn redis_auth_from_secret(
    client: &aws_sdk_secretsmanager::Client,
    arn: &str,
) -> Result<RedisAuth, RedisSetupError> {
    let out = client
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|e| RedisSetupError::SecretRead {
            arn: arn.to_string(),
            source: Box::new(e),
        })?;
    let text = out
        .secret_string()
        .ok_or_else(|| RedisSetupError::SecretFormat {
            arn: arn.to_string(),
            problem: "has no SecretString (binary secrets are not supported)",
        })?;
    parse_redis_secret(arn, text)
}

/// The AUTH credentials named by `NECTAR_REDIS_SECRET_ARN` (looked up with `var`), or `None`
/// when it is unset.
pub async fn redis_auth(
    aws: &aws_config::SdkConfig,
    var: impl Fn(&'static str) -> Option<String>,
) -> Result<Option<RedisAuth>, RedisSetupError> {
    match var(NECTAR_REDIS_SECRET_ARN) {
        None => Ok(None),
        Some(arn) => {
            let client = aws_sdk_secretsmanager::Client::new(aws);
            let auth = redis_auth_from_secret(&client, &arn).await?;
            tracing::info!(
                secret_arn = %arn,
                username = auth.username.as_deref().unwrap_or("(default)"),
                "Read the Redis AUTH secret."
            );
            Ok(Some(auth))
        }
    }
}

/// The connection options (credentials from the secret, CA bundle from its file) named by the
/// variables, looked up with `var` (the environment in the functions, a map in tests).
pub async fn redis_options(
    aws: &aws_config::SdkConfig,
    var: impl Fn(&'static str) -> Option<String>,
) -> Result<RedisOptions, RedisSetupError> {
    let ca_pem = match var(NECTAR_REDIS_CA_FILE) {
        None => None,
        Some(path) => {
            let pem = tokio::fs::read(&path)
                .await
                .map_err(|e| RedisSetupError::CaFile {
                    path: path.clone(),
                    problem: e.to_string(),
                })?;
            if !pem
                .windows(b"-----BEGIN CERTIFICATE-----".len())
                .any(|w| w == b"-----BEGIN CERTIFICATE-----")
            {
                return Err(RedisSetupError::CaFile {
                    path,
                    problem: "no PEM certificate in it".into(),
                });
            }
            Some(pem)
        }
    };
    let auth = redis_auth(aws, &var).await?;
    Ok(RedisOptions { auth, ca_pem })
}

/// The model store named by `NECTAR_REDIS_URL` with the options of [`redis_options`], or `None`
/// when the URL is unset: what every function that uses Redis calls at cold start.
pub async fn connect_model_store(
    aws: &aws_config::SdkConfig,
    var: impl Fn(&'static str) -> Option<String>,
) -> Result<Option<RedisModelStore>, RedisSetupError> {
    let Some(url) = var(NECTAR_REDIS_URL) else {
        return Ok(None);
    };
    let options = redis_options(aws, &var).await?;
    let store = RedisModelStore::connect_with(&url, &options)
        .await
        .map_err(RedisSetupError::Connect)?;
    tracing::info!(
        tls = url.starts_with("rediss"),
        cluster = store.conn().is_cluster(),
        auth = options.auth.is_some(),
        "Connected to Redis."
    );
    Ok(Some(store))
}

/// [`connect_model_store`] from the process environment.
pub async fn model_store_from_env(
    aws: &aws_config::SdkConfig,
) -> Result<Option<RedisModelStore>, RedisSetupError> {
    connect_model_store(aws, env::optional).await
}

/// [`model_store_from_env`] for the functions that cannot run without Redis: an unset
/// `NECTAR_REDIS_URL` is an error naming it.
pub async fn required_model_store_from_env(
    aws: &aws_config::SdkConfig,
) -> Result<RedisModelStore, RedisSetupError> {
    model_store_from_env(aws)
        .await?
        .ok_or(RedisSetupError::Env(env::EnvError::Missing(
            NECTAR_REDIS_URL,
        )))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:nectar-redis-AbCdEf";

    #[test]
    fn json_secret_gives_user_and_password() {
        // GIVEN the template's JSON form WHEN parsed THEN both fields are taken
        let auth =
            parse_redis_secret(ARN, r#"{"username":"default","password":"s3cr3t"}"#).unwrap();
        assert_eq!(auth.username.as_deref(), Some("default"));
        assert_eq!(auth.password, "s3cr3t");
        // AND Debug hides the password
        assert!(!format!("{auth:?}").contains("s3cr3t"));
    }

    #[test]
    fn plain_secret_is_the_password() {
        for text in ["s3cr3t", "12345", "\"quoted\"", "{not json"] {
            let auth = parse_redis_secret(ARN, text).unwrap();
            assert_eq!((auth.username, auth.password.as_str()), (None, text));
        }
        // An empty username is the default user.
        let auth = parse_redis_secret(ARN, r#"{"username":"","password":"p"}"#).unwrap();
        assert_eq!(auth.username, None);
    }

    #[test]
    fn bad_secrets_name_the_arn_and_never_the_value() {
        for text in [
            "",
            r#"{"username":"default"}"#,
            r#"{"password":""}"#,
            r#"{"password":987654321}"#,
            r#"{"username":987654321,"password":"s3cr3t"}"#,
        ] {
            let msg = parse_redis_secret(ARN, text).unwrap_err().to_string();
            assert!(msg.contains(ARN), "{msg}");
            assert!(msg.contains(NECTAR_REDIS_SECRET_ARN), "{msg}");
            assert!(
                !msg.contains("987654321") && !msg.contains("s3cr3t"),
                "{msg}"
            );
        }
    }

    #[tokio::test]
    async fn unset_url_is_no_store_and_a_missing_ca_file_is_named() {
        let aws = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build();
        // GIVEN no NECTAR_REDIS_URL THEN no store and no secret read
        assert!(connect_model_store(&aws, |_| None).await.unwrap().is_none());
        // GIVEN a CA file that does not exist THEN the error names the variable and the path
        let err = redis_options(&aws, |k| {
            (k == NECTAR_REDIS_CA_FILE).then(|| "/nonexistent/ca.pem".to_string())
        })
        .await
        .unwrap_err()
        .to_string();
        assert!(err.contains(NECTAR_REDIS_CA_FILE) && err.contains("/nonexistent/ca.pem"));
    }
}
