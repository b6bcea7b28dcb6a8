//! A training task (`[sites.<site>.tasks.<task>]`): algorithm, params, window, holdout,
//! gate and publishing, and the site's event weights.

use std::collections::BTreeMap;

use serde::Deserialize;

/// An event weight as written in the config: a number or `"value"` (`props.value`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum WeightSpec {
    /// A fixed weight.
    Number(f64),
    /// A named rule; only `"value"` exists.
    Named(String),
}

/// The training algorithms a task can name.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// Most interacted items.
    Popular,
    /// Time-decayed popularity.
    Trending,
    /// Item-to-item neighbours (cosine / BM25 on co-occurrence).
    ItemKnn,
    /// Implicit ALS.
    Als,
    /// Biased matrix factorisation for explicit ratings.
    Mf,
    /// Versions come from outside (a notebook, Spark) through `nectar publish`; no fit.
    External,
}

impl Algorithm {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Popular => "popular",
            Self::Trending => "trending",
            Self::ItemKnn => "item_knn",
            Self::Als => "als",
            Self::Mf => "mf",
            Self::External => "external",
        }
    }
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a task is trained.
#[derive(Debug, Clone, Copy, Deserialize, serde::Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Engine {
    /// In the train function (or `nectar train`), with the model crate's algorithms.
    #[default]
    Native,
    /// Past one machine: the PySpark ALS job (`jobs/spark/`) on EMR Serverless writes
    /// artifacts, then the train function publishes them. `nectar train` refuses such a task.
    Spark,
}

impl Engine {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Native => "native",
            Self::Spark => "spark",
        }
    }
}

/// A parameter value passed to an algorithm by name.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
#[serde(untagged)]
pub enum ParamValue {
    /// A number (integers are exact up to 2^53).
    Number(f64),
    /// A string, e.g. `confidence = "binary"`.
    Text(String),
}

/// Where a training window ends.
#[derive(Debug, Clone, Copy, Deserialize, serde::Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Anchor {
    /// Now (the default for schedules).
    #[default]
    Now,
    /// The newest event in the log (for imported history).
    Latest,
}

/// A training window: `days` back from the anchor.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WindowConfig {
    /// Length in days.
    pub days: u32,
    /// Where the window ends.
    #[serde(default)]
    pub anchor: Anchor,
}

impl Default for WindowConfig {
    fn default() -> Self {
        Self {
            days: 30,
            anchor: Anchor::Now,
        }
    }
}

/// How a trained model is published.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PublishConfig {
    /// Length of the precomputed lists (popular/trending, per-user top-N).
    #[serde(default = "default_top_n")]
    pub top_n: usize,
    /// Length of each item's similar-items list (0: none).
    #[serde(default = "default_similar_n")]
    pub similar_n: usize,
    /// Whether per-user top-N lists are precomputed too (else served from factors).
    #[serde(default)]
    pub user_lists: bool,
    /// How many versions (the current one included) stay listed; older ones are deleted.
    #[serde(default = "default_keep_versions")]
    pub keep_versions: usize,
    /// TTL given to every key of a version once it is superseded.
    #[serde(default = "default_superseded_ttl")]
    pub superseded_ttl_seconds: u64,
}

fn default_top_n() -> usize {
    100
}
fn default_similar_n() -> usize {
    20
}
fn default_keep_versions() -> usize {
    3
}
fn default_superseded_ttl() -> u64 {
    86_400
}

impl Default for PublishConfig {
    fn default() -> Self {
        Self {
            top_n: default_top_n(),
            similar_n: default_similar_n(),
            user_lists: false,
            keep_versions: default_keep_versions(),
            superseded_ttl_seconds: default_superseded_ttl(),
        }
    }
}

/// A training task (`[sites.<site>.tasks.<task>]`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TaskConfig {
    /// What is trained (with [`TaskConfig::params`]).
    pub algorithm: Algorithm,
    /// Where it is trained: `native` (default) or `spark`.
    #[serde(default)]
    pub engine: Engine,
    /// EventBridge schedule expression, `rate(…)` or `cron(…)`; none: run on demand only.
    #[serde(default)]
    pub schedule: Option<String>,
    /// Parameters passed to the algorithm by name.
    #[serde(default)]
    pub params: BTreeMap<String, ParamValue>,
    /// The data window.
    #[serde(default)]
    pub window: WindowConfig,
    /// Newest fraction of the window held out to evaluate and gate (0: no evaluation).
    #[serde(default = "default_holdout")]
    pub holdout_fraction: f64,
    /// Largest allowed relative drop of the gate metric against the current version.
    #[serde(default = "default_gate_drop")]
    pub gate_max_drop: f64,
    /// Publish options.
    #[serde(default)]
    pub publish: PublishConfig,
}

fn default_holdout() -> f64 {
    0.1
}
fn default_gate_drop() -> f64 {
    0.05
}

impl TaskConfig {
    /// Checks the task; errors are `(place, problem)` with `at` the task's dotted path.
    pub(super) fn validate(&self, at: &str) -> Result<(), (String, String)> {
        let err = |field: &str, problem: &str| Err((format!("{at}.{field}"), problem.to_string()));
        if self.engine == Engine::Spark && self.algorithm != Algorithm::Als {
            // The Spark job fits MLlib ALS only.
            return err(
                "engine",
                "\"spark\" trains ALS only: set algorithm = \"als\" or engine = \"native\"",
            );
        }
        if let Some(s) = &self.schedule {
            if self.algorithm == Algorithm::External {
                return err(
                    "schedule",
                    "an external task has no fit to schedule: its versions come from nectar publish",
                );
            }
            check_schedule(s).map_err(|p| (format!("{at}.schedule"), p))?;
        }
        if self.window.days == 0 || self.window.days > 3650 {
            return err("window.days", "must be between 1 and 3650");
        }
        if !(0.0..=0.5).contains(&self.holdout_fraction) {
            return err("holdout_fraction", "must be between 0 and 0.5");
        }
        if !(0.0..=1.0).contains(&self.gate_max_drop) {
            return err("gate_max_drop", "must be a fraction between 0 and 1");
        }
        if self.publish.top_n == 0 || self.publish.top_n > 10_000 {
            return err("publish.top_n", "must be between 1 and 10000");
        }
        if self.publish.similar_n > 1_000 {
            return err("publish.similar_n", "must be at most 1000");
        }
        if self.publish.keep_versions == 0 {
            return err("publish.keep_versions", "must be at least 1");
        }
        if self.publish.superseded_ttl_seconds < 60 {
            return err(
                "publish.superseded_ttl_seconds",
                "must be at least 60 (warm readers finish with the old version)",
            );
        }
        for (name, value) in &self.params {
            if let ParamValue::Number(n) = value {
                if !n.is_finite() {
                    return err(&format!("params.{name}"), "must be a finite number");
                }
            }
        }
        if self.algorithm == Algorithm::External {
            // Its params are the artifacts' own (their manifest), not the config's.
            if !self.params.is_empty() {
                return err(
                    "params",
                    "an external task takes no params: its artifacts' manifest carries them",
                );
            }
            return Ok(());
        }
        // The model crate parses the parameters by name: one source of truth for names,
        // types and ranges.
        nectar_model::algo::spec::AlgoSpec::parse(self.algorithm.as_str(), &self.param_strings())
            .map_err(|e| match e {
            nectar_model::ModelError::InvalidParam { name, reason } => {
                (format!("{at}.params.{name}"), reason)
            }
            other => (format!("{at}.params"), other.to_string()),
        })?;
        Ok(())
    }

    /// The parameters as `(name, value)` strings, as the model crate's `AlgoSpec::parse` takes
    /// them (integral numbers without a fraction).
    pub fn param_strings(&self) -> Vec<(String, String)> {
        self.params
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    ParamValue::Number(n) if n.fract() == 0.0 && n.abs() < 1e15 => {
                        format!("{}", *n as i64)
                    }
                    ParamValue::Number(n) => n.to_string(),
                    ParamValue::Text(t) => t.clone(),
                };
                (k.clone(), v)
            })
            .collect()
    }

    /// A number parameter, if set.
    pub fn param_f64(&self, name: &str) -> Option<f64> {
        match self.params.get(name)? {
            ParamValue::Number(n) => Some(*n),
            ParamValue::Text(_) => None,
        }
    }
}

/// Whether `s` is an EventBridge schedule expression: `rate(N unit)` (unit minute(s), hour(s),
/// day(s), singular exactly when N is 1) or `cron(…)` with six fields.
pub fn check_schedule(s: &str) -> Result<(), String> {
    if let Some(inner) = s.strip_prefix("rate(").and_then(|r| r.strip_suffix(')')) {
        let mut parts = inner.split(' ');
        let (Some(n), Some(unit), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err("rate(…) takes \"N unit\", e.g. rate(1 day), rate(6 hours)".into());
        };
        let n: u64 = n
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .ok_or("the rate must be a positive integer")?;
        let ok = match unit {
            "minute" | "hour" | "day" => n == 1,
            "minutes" | "hours" | "days" => n > 1,
            _ => return Err("the unit is minute(s), hour(s) or day(s)".into()),
        };
        if !ok {
            return Err("use the singular unit for 1 and the plural otherwise".into());
        }
        return Ok(());
    }
    if let Some(inner) = s.strip_prefix("cron(").and_then(|r| r.strip_suffix(')')) {
        if inner.split_whitespace().count() != 6 {
            return Err(
                "cron(…) takes six fields: minutes hours day-of-month month day-of-week year"
                    .into(),
            );
        }
        return Ok(());
    }
    Err("an EventBridge schedule is rate(…) or cron(…)".into())
}

#[cfg(test)]
mod tests {
    use crate::config::{Engine, NectarConfig};

    const SPARK_TASK: &str = "[sites.s.tasks.big]\nalgorithm = \"als\"\nengine = \"spark\"\nschedule = \"rate(1 day)\"\nparams = { factors = 32 }\n";

    #[test]
    fn engine_defaults_to_native_and_spark_is_read() {
        // GIVEN a task without `engine` and one with engine = "spark"
        let cfg = NectarConfig::from_toml(
            &format!("{SPARK_TASK}[sites.s.tasks.small]\nalgorithm = \"als\"\n"),
            "f.toml",
        )
        .unwrap();
        // THEN the first is native and the second spark
        assert_eq!(cfg.task("s", "small").unwrap().engine, Engine::Native);
        assert_eq!(cfg.task("s", "big").unwrap().engine, Engine::Spark);
        assert_eq!(Engine::Spark.as_str(), "spark");
    }

    #[test]
    fn engine_is_validated_by_name_and_spark_trains_als_only() {
        // WHEN the engine is unknown THEN the error names the key and the choices
        let e = NectarConfig::from_toml(
            "[sites.s.tasks.t]\nalgorithm = \"als\"\nengine = \"flink\"\n",
            "f.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("sites.s.tasks.t.engine") && e.contains("native") && e.contains("spark"),
            "{e}"
        );
        // WHEN a spark task names another algorithm THEN it is refused at its engine key
        let e = NectarConfig::from_toml(
            "[sites.s.tasks.t]\nalgorithm = \"item_knn\"\nengine = \"spark\"\n",
            "f.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("sites.s.tasks.t.engine") && e.contains("ALS only"),
            "{e}"
        );
        // AND a spark task's params are checked like a native ALS task's
        let e = NectarConfig::from_toml(
            "[sites.s.tasks.t]\nalgorithm = \"als\"\nengine = \"spark\"\nparams = { rank = 8 }\n",
            "f.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("sites.s.tasks.t.params.rank"), "{e}");
    }
}
