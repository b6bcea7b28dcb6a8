//! The declarative config: one TOML file with the sites (tenants) and their settings.
//!
//! The checked-in default (`config/nectar.toml`) is compiled in; every entry point can load
//! another file instead. Loading validates the whole file and names the place of every error.

use std::collections::BTreeMap;
use std::path::Path;

use nectar_model::event::{is_valid_key, CollectLimits};
use serde::Deserialize;

/// The checked-in default config, compiled in.
pub const DEFAULT_CONFIG_TOML: &str = include_str!("../../../config/nectar.toml");

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The TOML did not parse or did not match the schema; the message names the key and line.
    #[error("{source_name}: {message}")]
    Parse {
        /// Where the text came from.
        source_name: String,
        /// The parser's message, with the key path and position.
        message: String,
    },
    /// A value is not allowed; `place` is the dotted key path.
    #[error("{source_name}: {place}: {problem}")]
    Invalid {
        /// Where the text came from.
        source_name: String,
        /// Dotted key path, e.g. `sites.Demo`.
        place: String,
        /// What is wrong.
        problem: String,
    },
}

/// Collect settings shared by every site.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CollectConfig {
    /// Device clock skew beyond which event times are corrected, in ms.
    #[serde(default = "default_skew")]
    pub clock_skew_threshold_ms: i64,
}

fn default_skew() -> i64 {
    CollectLimits::default().skew_threshold_ms
}

impl Default for CollectConfig {
    fn default() -> Self {
        Self {
            clock_skew_threshold_ms: default_skew(),
        }
    }
}

/// One site (tenant).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    /// Human-readable name.
    #[serde(default)]
    pub name: Option<String>,
    /// Origins allowed to call the collect endpoint from a browser; `"*"` allows any.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
}

impl SiteConfig {
    /// Whether a browser origin may call this site's endpoints.
    pub fn allows_origin(&self, origin: &str) -> bool {
        self.allowed_origins
            .iter()
            .any(|o| o == "*" || o.eq_ignore_ascii_case(origin))
    }
}

/// The whole declarative config.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NectarConfig {
    /// Collect settings.
    #[serde(default)]
    pub collect: CollectConfig,
    /// Sites by site key.
    pub sites: BTreeMap<String, SiteConfig>,
}

impl NectarConfig {
    /// Parses and validates a config text; `source_name` is used in error messages.
    pub fn from_toml(text: &str, source_name: &str) -> Result<Self, ConfigError> {
        let cfg: NectarConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            source_name: source_name.to_string(),
            message: e.to_string().trim_end().to_string(),
        })?;
        cfg.validate(source_name)?;
        Ok(cfg)
    }

    /// The compiled-in default config.
    pub fn embedded_default() -> Self {
        Self::from_toml(DEFAULT_CONFIG_TOML, "config/nectar.toml (embedded)")
            .expect("the checked-in default config is validated by a unit test")
    }

    /// Loads `path`, or the embedded default when `None`.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        match path {
            None => Ok(Self::embedded_default()),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.display().to_string(),
                    source,
                })?;
                Self::from_toml(&text, &p.display().to_string())
            }
        }
    }

    /// The site for a key, if declared.
    pub fn site(&self, key: &str) -> Option<&SiteConfig> {
        self.sites.get(key)
    }

    /// Collect limits with this config's settings applied.
    pub fn collect_limits(&self) -> CollectLimits {
        CollectLimits {
            skew_threshold_ms: self.collect.clock_skew_threshold_ms,
            ..CollectLimits::default()
        }
    }

    fn validate(&self, source_name: &str) -> Result<(), ConfigError> {
        let invalid = |place: String, problem: &str| ConfigError::Invalid {
            source_name: source_name.to_string(),
            place,
            problem: problem.to_string(),
        };
        if self.collect.clock_skew_threshold_ms < 0 {
            return Err(invalid(
                "collect.clock_skew_threshold_ms".into(),
                "must not be negative",
            ));
        }
        if self.sites.is_empty() {
            return Err(invalid(
                "sites".into(),
                "at least one site must be declared",
            ));
        }
        for (key, site) in &self.sites {
            if !is_valid_key(key) {
                return Err(invalid(
                    format!("sites.{key}"),
                    "site keys must match [a-z0-9_-]{1,64}",
                ));
            }
            for (i, origin) in site.allowed_origins.iter().enumerate() {
                let ok = origin == "*"
                    || ((origin.starts_with("https://") || origin.starts_with("http://"))
                        && !origin.ends_with('/')
                        && !origin.contains(char::is_whitespace));
                if !ok {
                    return Err(invalid(
                        format!("sites.{key}.allowed_origins[{i}]"),
                        "an origin is \"*\" or scheme://host[:port] with no path or trailing slash",
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_declares_demo() {
        let cfg = NectarConfig::embedded_default();
        assert!(cfg.site("demo").is_some());
        assert!(cfg
            .site("demo")
            .unwrap()
            .allows_origin("http://localhost:3000"));
    }

    #[test]
    fn errors_name_the_place() {
        let e = NectarConfig::from_toml("[sites.Demo]\n", "f.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("sites.Demo"), "{e}");
        let e = NectarConfig::from_toml("[sites.demo]\nallowed_origin = []\n", "f.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("allowed_origin") && e.contains("line 2"), "{e}");
        let e = NectarConfig::from_toml(
            "[sites.demo]\nallowed_origins = [\"https://a.example/\"]\n",
            "f.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("sites.demo.allowed_origins[0]"), "{e}");
        let e = NectarConfig::from_toml("[collect]\n", "f.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("sites"), "{e}");
        let e = NectarConfig::from_toml(
            "[collect]\nclock_skew_threshold_ms = -1\n[sites.a]\n",
            "f.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("collect.clock_skew_threshold_ms"), "{e}");
    }

    #[test]
    fn origins_match_exactly_unless_wildcard() {
        let site = SiteConfig {
            name: None,
            allowed_origins: vec!["https://www.rts.ch".into()],
        };
        assert!(site.allows_origin("https://www.rts.ch"));
        assert!(!site.allows_origin("https://evil.example"));
        assert!(!site.allows_origin("https://www.rts.ch.evil.example"));
    }
}
