//! The declarative config: one TOML file with the sites (tenants) and their settings.
//!
//! The checked-in default (`config/nectar.toml`) is compiled in; every entry point can load
//! another file instead. Loading validates the whole file and names the place of every error.

use std::collections::BTreeMap;
use std::path::Path;

use nectar_model::event::{is_valid_key, CollectLimits};
use nectar_model::mapping::{EventWeights, WeightRule};
use serde::Deserialize;

mod endpoint;
mod task;

use endpoint::validate_endpoint;
pub use endpoint::*;
pub use task::*;

/// The checked-in default config, compiled in.
pub const DEFAULT_CONFIG_TOML: &str = include_str!("../../../../config/nectar.toml");

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
    /// Interaction weight per event type, over [`EventWeights::default`]: a number, or
    /// `"value"` for the event's `props.value` (ratings). Weight 0 drops a type.
    #[serde(default)]
    pub event_weights: BTreeMap<String, WeightSpec>,
    /// Training tasks by name (`[sites.<site>.tasks.<task>]`).
    #[serde(default)]
    pub tasks: BTreeMap<String, TaskConfig>,
    /// Recommendation endpoints by name (`[sites.<site>.endpoints.<name>]`).
    #[serde(default)]
    pub endpoints: BTreeMap<String, EndpointConfig>,
    /// The status answered to an accepted collect batch: 202 (the default) or 201. The EBU
    /// PEACH collector SDKs count any answer but 201 as a failure and re-send the batch, so
    /// sites whose apps use them declare 201. An `i64`, TOML's integer, so that any number
    /// reaches the check that names this key.
    #[serde(default = "default_collect_status")]
    pub collect_status: i64,
    /// How long after a click the clicked item's consumption (play, article read) by the same
    /// user or client is credited to the recommendation, in minutes (online report, bandits).
    #[serde(default = "default_attribution_window")]
    pub attribution_window_minutes: u32,
    /// The scheduled online report (`[sites.<site>.report]`); none: no scheduled report.
    #[serde(default)]
    pub report: Option<ReportConfig>,
}

/// The scheduled online report of a site.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ReportConfig {
    /// EventBridge schedule, `rate(…)` or `cron(…)`, e.g. `"rate(1 day)"`.
    pub schedule: String,
    /// Days of events the report covers, ending at the run (default 7).
    #[serde(default = "default_report_days")]
    pub days: u32,
}

fn default_report_days() -> u32 {
    7
}

fn default_attribution_window() -> u32 {
    nectar_model::online::attribution::DEFAULT_ATTRIBUTION_WINDOW_MINUTES
}

/// What a site answers an accepted collect batch unless it declares `collect_status`.
pub const DEFAULT_COLLECT_STATUS: i64 = 202;

fn default_collect_status() -> i64 {
    DEFAULT_COLLECT_STATUS
}

impl SiteConfig {
    /// The site's event weights: the defaults overlaid with the configured ones.
    pub fn weights(&self) -> EventWeights {
        let mut w = EventWeights::default();
        for (t, spec) in &self.event_weights {
            w.set(
                t.clone(),
                match spec {
                    WeightSpec::Number(n) => WeightRule::Fixed(*n as f32),
                    WeightSpec::Named(_) => WeightRule::PropsValue,
                },
            );
        }
        w
    }

    /// The status of an accepted collect batch (`collect_status`: 201 or 202).
    pub fn collect_status(&self) -> http::StatusCode {
        if self.collect_status == 201 {
            http::StatusCode::CREATED
        } else {
            http::StatusCode::ACCEPTED
        }
    }

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
    /// Logs and metrics settings.
    #[serde(default)]
    pub observability: ObservabilityConfig,
}

/// `[observability]`: logs and metrics settings shared by every function.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct ObservabilityConfig {
    /// Share of requests written to the sampled request log (0 to 1; default 0: none).
    #[serde(default)]
    pub request_log_rate: f64,
}

/// `sites.demo.tasks.als.bogus: unknown field `bogus`, expected … (line 3, column 1)`: the
/// dotted path of the key, the parser's message, and where the key is.
fn schema_error_message(text: &str, e: &serde_path_to_error::Error<toml::de::Error>) -> String {
    let inner = e.inner();
    let mut msg = format!("{}: {}", e.path(), inner.message().trim_end());
    if let Some(span) = inner.span() {
        let before = text.get(..span.start).unwrap_or(text);
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        msg.push_str(&format!(" (line {line}, column {column})"));
    }
    msg
}

impl NectarConfig {
    /// Parses and validates a config text; `source_name` is used in error messages.
    pub fn from_toml(text: &str, source_name: &str) -> Result<Self, ConfigError> {
        let parse_error = |message: String| ConfigError::Parse {
            source_name: source_name.to_string(),
            message,
        };
        // TOML syntax errors: the parser's own message shows the line and a caret.
        let de = toml::Deserializer::parse(text)
            .map_err(|e| parse_error(e.to_string().trim_end().to_string()))?;
        // Schema errors (unknown key, wrong type): the parser says neither which table the key
        // is in nor, for unknown keys, its full path, so the path is tracked on the way down.
        let cfg: NectarConfig = serde_path_to_error::deserialize(de)
            .map_err(|e| parse_error(schema_error_message(text, &e)))?;
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

    /// A task of a site, if declared.
    pub fn task(&self, site: &str, task: &str) -> Option<&TaskConfig> {
        self.sites.get(site)?.tasks.get(task)
    }

    /// The site for a key, if declared.
    pub fn site(&self, key: &str) -> Option<&SiteConfig> {
        self.sites.get(key)
    }

    /// Every site's event weights, resolved once (services keep this rather than resolve a
    /// site's weights per event).
    pub fn site_weights(&self) -> std::collections::HashMap<String, EventWeights> {
        self.sites
            .iter()
            .map(|(key, site)| (key.clone(), site.weights()))
            .collect()
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
        let rate = self.observability.request_log_rate;
        if !(0.0..=1.0).contains(&rate) {
            return Err(invalid(
                "observability.request_log_rate".into(),
                "must be a number from 0 to 1",
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
            if !matches!(site.collect_status, 201 | 202) {
                return Err(invalid(
                    format!("sites.{key}.collect_status"),
                    "must be 202 (the default) or 201 (for apps on the EBU PEACH collector SDKs, which re-send on any other answer)",
                ));
            }
            if !(1..=1440).contains(&site.attribution_window_minutes) {
                return Err(invalid(
                    format!("sites.{key}.attribution_window_minutes"),
                    "must be between 1 and 1440 (a day)",
                ));
            }
            if let Some(r) = &site.report {
                if let Err(p) = check_schedule(&r.schedule) {
                    return Err(invalid(format!("sites.{key}.report.schedule"), &p));
                }
                if !(1..=92).contains(&r.days) {
                    return Err(invalid(
                        format!("sites.{key}.report.days"),
                        "must be between 1 and 92",
                    ));
                }
            }
            for (t, spec) in &site.event_weights {
                let place = format!("sites.{key}.event_weights.{t}");
                let negative = nectar_model::mapping::is_negative_type(t);
                match spec {
                    WeightSpec::Number(n) if negative && (!n.is_finite() || *n > 0.0) => {
                        return Err(invalid(
                            place,
                            "negative feedback weighs a finite number <= 0 (0: not counted)",
                        ))
                    }
                    WeightSpec::Number(n) if !negative && (!n.is_finite() || *n < 0.0) => {
                        return Err(invalid(
                            place,
                            "a weight is a finite number >= 0 (only media_dislike and recommendation_dismissed may be negative)",
                        ))
                    }
                    WeightSpec::Named(_) if negative => {
                        return Err(invalid(place, "negative feedback weighs a number <= 0"))
                    }
                    WeightSpec::Named(name) if name != "value" => {
                        return Err(invalid(
                            place,
                            "a weight is a number or \"value\" (the event's props.value)",
                        ))
                    }
                    _ => {}
                }
            }
            for (name, task) in &site.tasks {
                let at = format!("sites.{key}.tasks.{name}");
                if !is_valid_key(name) {
                    return Err(invalid(at, "task names must match [a-z0-9_-]{1,64}"));
                }
                task.validate(&at)
                    .map_err(|(place, problem)| ConfigError::Invalid {
                        source_name: source_name.to_string(),
                        place,
                        problem,
                    })?;
            }
            for (name, ep) in &site.endpoints {
                let at = format!("sites.{key}.endpoints.{name}");
                validate_endpoint(name, ep, site, &at).map_err(|(place, problem)| {
                    ConfigError::Invalid {
                        source_name: source_name.to_string(),
                        place,
                        problem,
                    }
                })?;
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
    fn unknown_keys_are_named_by_dotted_path_and_line() {
        // GIVEN a task table with a key the schema does not know, on line 4
        let text = "[sites.demo]\nname = \"Demo\"\n[sites.demo.tasks.als]\nbogus = 1\nalgorithm = \"als\"\n";
        // WHEN it is loaded
        let e = NectarConfig::from_toml(text, "f.toml")
            .unwrap_err()
            .to_string();
        // THEN the error names the key by its full dotted path, and its line
        assert!(
            e.starts_with("f.toml: sites.demo.tasks.als.bogus: unknown field `bogus`"),
            "{e}"
        );
        assert!(e.contains("(line 4, column 1)"), "{e}");
        // AND an unknown key in an inline table and an array element are named the same way
        let e = NectarConfig::from_toml(
            "[sites.demo.tasks.als]\nalgorithm = \"als\"\nwindow = { days = 3, anker = \"now\" }\n",
            "f.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("sites.demo.tasks.als.window.anker") && e.contains("line 3"),
            "{e}"
        );
        let e = NectarConfig::from_toml(
            "[sites.demo.endpoints.e]\nkind = \"user\"\nmodel = \"m\"\n[sites.demo.endpoints.e.rules]\npinned = [{ slot = 1, item = \"x\" }]\n",
            "f.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("sites.demo.endpoints.e.rules.pinned[0].item") && e.contains("line 5"),
            "{e}"
        );
        // AND a syntax error keeps the parser's own position
        let e = NectarConfig::from_toml("[sites.demo\n", "f.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 1"), "{e}");
    }

    #[test]
    fn collect_status_is_202_unless_a_site_asks_for_201() {
        // GIVEN a site without the key and one that declares 201
        let cfg = NectarConfig::from_toml(
            "[sites.plain]\n[sites.peach]\ncollect_status = 201\n",
            "f.toml",
        )
        .unwrap();
        // THEN the first answers 202 and the second 201
        assert_eq!(cfg.site("plain").unwrap().collect_status(), 202);
        assert_eq!(cfg.site("peach").unwrap().collect_status(), 201);
        // WHEN any other value is declared THEN the error names the key
        for bad in ["200", "204", "-1", "99999999999"] {
            let e = NectarConfig::from_toml(
                &format!("[sites.demo]\ncollect_status = {bad}\n"),
                "f.toml",
            )
            .unwrap_err()
            .to_string();
            assert!(e.contains("sites.demo.collect_status"), "{bad}: {e}");
            assert!(e.contains("201"), "{e}");
        }
        let e = NectarConfig::from_toml("[sites.demo]\ncollect_status = \"201\"\n", "f.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("collect_status"), "{e}");
    }

    #[test]
    fn embedded_default_declares_the_demo_tasks() {
        let cfg = NectarConfig::embedded_default();
        let als = cfg.task("demo", "als").expect("task als for demo");
        assert_eq!(als.algorithm, Algorithm::Als);
        assert!(als.schedule.is_some());
        assert_eq!(als.param_f64("factors"), Some(64.0));
        for t in ["trending", "item_knn"] {
            assert!(cfg.task("demo", t).is_some(), "{t}");
        }
        let w = cfg.site("demo").unwrap().weights();
        assert_eq!(w.rule("rating"), Some(WeightRule::PropsValue));
        assert_eq!(w.rule("media_end"), Some(WeightRule::Fixed(3.0)));
    }

    #[test]
    fn task_defaults_apply() {
        let cfg = NectarConfig::from_toml("[sites.a.tasks.t]\nalgorithm = \"popular\"\n", "f.toml")
            .unwrap();
        let t = cfg.task("a", "t").unwrap();
        assert_eq!(t.holdout_fraction, 0.1);
        assert_eq!(t.gate_max_drop, 0.05);
        assert_eq!(t.window, WindowConfig::default());
        assert_eq!(t.publish, PublishConfig::default());
        assert!(t.schedule.is_none());
    }

    #[test]
    fn task_errors_name_the_place() {
        let cases = [
            ("window = { days = 0 }", "sites.demo.tasks.als.window.days"),
            ("window = { days = 3, anchor = \"soon\" }", "anchor"),
            ("schedule = \"every day\"", "sites.demo.tasks.als.schedule"),
            (
                "schedule = \"rate(1 days)\"",
                "sites.demo.tasks.als.schedule",
            ),
            (
                "schedule = \"cron(0 3 * * ?)\"",
                "sites.demo.tasks.als.schedule",
            ),
            (
                "holdout_fraction = 0.9",
                "sites.demo.tasks.als.holdout_fraction",
            ),
            ("gate_max_drop = -0.1", "sites.demo.tasks.als.gate_max_drop"),
            (
                "params = { factors = 0 }",
                "sites.demo.tasks.als.params.factors",
            ),
            (
                "params = { factor = 8 }",
                "sites.demo.tasks.als.params.factor",
            ),
            (
                "params = { alpha = \"high\" }",
                "sites.demo.tasks.als.params.alpha",
            ),
            (
                "params = { confidence = \"cubic\" }",
                "sites.demo.tasks.als.params.confidence",
            ),
            (
                "publish = { keep_versions = 0 }",
                "sites.demo.tasks.als.publish.keep_versions",
            ),
            (
                "publish = { top_n = 0 }",
                "sites.demo.tasks.als.publish.top_n",
            ),
            (
                "publish = { superseded_ttl_seconds = 1 }",
                "superseded_ttl_seconds",
            ),
            ("algorithm_x = 1", "algorithm_x"),
        ];
        for (line, place) in cases {
            let text = format!("[sites.demo.tasks.als]\nalgorithm = \"als\"\n{line}\n");
            let e = NectarConfig::from_toml(&text, "f.toml")
                .unwrap_err()
                .to_string();
            assert!(e.contains(place), "{line}: {e}");
        }
        let ok = "[sites.demo.tasks.als]\nalgorithm = \"als\"\nschedule = \"cron(0 3 * * ? *)\"\n\
                  params = { factors = 8, confidence = \"binary\" }\n";
        NectarConfig::from_toml(ok, "f.toml").unwrap();
        let e =
            NectarConfig::from_toml("[sites.demo.event_weights]\nrating = \"stars\"\n", "f.toml")
                .unwrap_err()
                .to_string();
        assert!(e.contains("sites.demo.event_weights.rating"), "{e}");
        // Negative weights only for negative feedback, and never positive there.
        for (line, ok) in [
            ("media_dislike = -2", true),
            ("recommendation_dismissed = 0", true),
            ("media_play = -1", false),
            ("media_dislike = 1", false),
            ("media_dislike = \"value\"", false),
        ] {
            let r = NectarConfig::from_toml(&format!("[sites.demo.event_weights]\n{line}\n"), "f");
            match (r, ok) {
                (Ok(c), true) => {
                    let t = line.split(' ').next().unwrap();
                    assert!(c.site("demo").unwrap().weights().rule(t).is_some());
                }
                (Err(e), false) => {
                    let t = line.split(' ').next().unwrap();
                    assert!(e.to_string().contains(&format!("event_weights.{t}")), "{e}");
                }
                (r, _) => panic!("{line}: {:?}", r.map(|_| ())),
            }
        }
        let e = NectarConfig::from_toml("[sites.demo.tasks.Bad]\nalgorithm = \"als\"\n", "f")
            .unwrap_err()
            .to_string();
        assert!(e.contains("sites.demo.tasks.Bad"), "{e}");
        let e = NectarConfig::from_toml("[sites.demo.tasks.x]\nalgorithm = \"svd\"\n", "f")
            .unwrap_err()
            .to_string();
        assert!(e.contains("algorithm") && e.contains("line"), "{e}");
    }

    #[test]
    fn schedules_follow_eventbridge() {
        for ok in [
            "rate(1 day)",
            "rate(6 hours)",
            "rate(15 minutes)",
            "cron(0 3 * * ? *)",
        ] {
            assert!(check_schedule(ok).is_ok(), "{ok}");
        }
        for bad in [
            "rate(0 days)",
            "rate(2 day)",
            "rate(1 week)",
            "cron(0 3 * *)",
            "daily",
        ] {
            assert!(check_schedule(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn origins_match_exactly_unless_wildcard() {
        let site = SiteConfig {
            name: None,
            allowed_origins: vec!["https://www.rts.ch".into()],
            event_weights: BTreeMap::new(),
            tasks: BTreeMap::new(),
            endpoints: BTreeMap::new(),
            collect_status: DEFAULT_COLLECT_STATUS,
            attribution_window_minutes: 30,
            report: None,
        };
        assert!(site.allows_origin("https://www.rts.ch"));
        assert!(!site.allows_origin("https://evil.example"));
        assert!(!site.allows_origin("https://www.rts.ch.evil.example"));
    }

    #[test]
    fn embedded_default_declares_the_demo_endpoints() {
        let cfg = NectarConfig::embedded_default();
        let site = cfg.site("demo").unwrap();
        let fy = &site.endpoints["for-you"];
        assert_eq!(fy.kind, EndpointKind::User);
        assert_eq!(fy.model, "als");
        assert_eq!(fy.fallback_tasks(), vec!["trending".to_string()]);
        assert!(fy.rules.exclude_consumed);
        let mlt = &site.endpoints["more-like-this"];
        assert_eq!(mlt.kind, EndpointKind::Similar);
    }

    #[test]
    fn endpoint_errors_name_the_place() {
        let base = "[sites.d.tasks.als]\nalgorithm = \"als\"\n[sites.d.tasks.pop]\nalgorithm = \"popular\"\n[sites.d.endpoints.e]\n";
        let cases = [
            ("kind = \"user\"\nmodel = \"nope\"", "sites.d.endpoints.e.model"),
            ("kind = \"users\"\nmodel = \"als\"", "kind"),
            ("kind = \"similar\"\nmodel = \"pop\"", "sites.d.endpoints.e.model"),
            ("kind = \"session\"\nmodel = \"pop\"", "sites.d.endpoints.e.model"),
            ("kind = \"user\"\nmodel = \"als\"\nrules = { diversity = { lambda = 1.5 } }", "sites.d.endpoints.e.rules.diversity.lambda"),
            ("kind = \"user\"\nmodel = \"als\"\nrules = { diversity = { lambda = -0.1 } }", "sites.d.endpoints.e.rules.diversity.lambda"),
            ("kind = \"user\"\nmodel = \"als\"\nrules = { diversity = { l = 0.3 } }", "diversity"),
            ("kind = \"user\"\nmodel = \"als\"\nfallback = \"als\"", "sites.d.endpoints.e.fallback"),
            ("kind = \"user\"\nmodel = \"als\"\nfallback = [\"pop\", \"x\"]", "sites.d.endpoints.e.fallback[1]"),
            ("kind = \"user\"\nmodel = \"als\"\nrules = { max_per_category = 0 }", "sites.d.endpoints.e.rules.max_per_category"),
            ("kind = \"user\"\nmodel = \"als\"\nrules = { pinned = [{ slot = 0, item_id = \"a\" }] }", "sites.d.endpoints.e.rules.pinned[0].slot"),
            ("kind = \"user\"\nmodel = \"als\"\nexperiment = { name = \"x\", variants = [{ name = \"a\", weight = 0, model = \"als\" }] }", "sites.d.endpoints.e.experiment.variants[0].weight"),
            ("kind = \"user\"\nmodel = \"als\"\nexperiment = { name = \"x\", variants = [{ name = \"a\", weight = 1 }] }", "sites.d.endpoints.e.experiment.variants[0]"),
            ("kind = \"user\"\nmodel = \"als\"\nexperiment = { name = \"x\", variants = [{ name = \"a\", weight = 1, strategy = \"fallback\" }] }", "sites.d.endpoints.e.experiment.variants[0].strategy"),
            ("kind = \"user\"\nmodel = \"als\"\nrules = { exclude_seen = true }", "exclude_seen"),
            ("kind = \"user\"\nmodel = \"als\"\nexperiment = { name = \"x\", control = \"c\", variants = [{ name = \"a\", weight = 1, model = \"als\" }] }", "sites.d.endpoints.e.experiment.control"),
            ("kind = \"user\"\nmodel = \"als\"\nexperiment = { name = \"x\", allocation = \"greedy\", variants = [{ name = \"a\", weight = 1, model = \"als\" }] }", "allocation"),
            ("kind = \"user\"\nmodel = \"als\"\nrules = { pinned = [{ slot = 3, item_id = \"p\" }], explore = { slots = [3] } }", "sites.d.endpoints.e.rules.explore.slots[0]"),
            ("kind = \"user\"\nmodel = \"als\"\nrules = { explore = { slots = [] } }", "sites.d.endpoints.e.rules.explore.slots"),
            ("kind = \"user\"\nmodel = \"als\"\nrules = { explore = { slots = [2], new_days = 0 } }", "sites.d.endpoints.e.rules.explore.new_days"),
        ];
        for (body, place) in cases {
            let e = NectarConfig::from_toml(&format!("{base}{body}\n"), "f.toml")
                .unwrap_err()
                .to_string();
            assert!(e.contains(place), "{body}: {e}");
        }
        let ok = format!("{base}kind = \"user\"\nmodel = \"als\"\nfallback = [\"pop\"]\nrequire_key = true\nrules = {{ max_per_category = 2, pinned = [{{ slot = 1, item_id = \"promo\" }}] }}\nexperiment = {{ name = \"x1\", variants = [{{ name = \"a\", weight = 1, model = \"als\" }}, {{ name = \"b\", weight = 1, strategy = \"fallback\" }}] }}\n");
        let cfg = NectarConfig::from_toml(&ok, "f.toml").unwrap();
        let ep = &cfg.site("d").unwrap().endpoints["e"];
        assert!(ep.require_key);
        assert_eq!(ep.rules.pinned[0].slot, 1);
        assert_eq!(ep.experiment.as_ref().unwrap().variants.len(), 2);
    }
}
