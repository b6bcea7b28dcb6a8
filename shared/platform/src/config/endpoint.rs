//! An endpoint of a site (`[sites.<site>.endpoints.<name>]`): what it serves, its fallback,
//! its business rules and its experiment, and their checks against the site's tasks.

use serde::Deserialize;

use super::{is_valid_key, Algorithm, SiteConfig};

/// What an endpoint recommends.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum EndpointKind {
    /// Per user (`GET /v1/recommend/{endpoint}`).
    User,
    /// Items similar to one item (`GET /v1/similar/{endpoint}`).
    Similar,
    /// Items for a visit from the items seen in it (`GET /v1/session/{endpoint}`).
    Session,
}

/// One task name or a list of them, tried in order.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum OneOrMany {
    /// `model = "als"`.
    One(String),
    /// Several names, in order.
    Many(Vec<String>),
}

impl OneOrMany {
    /// The names in order.
    pub fn names(&self) -> Vec<String> {
        match self {
            Self::One(s) => vec![s.clone()],
            Self::Many(v) => v.clone(),
        }
    }
}

/// A promoted item pinned to a fixed slot.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PinnedItem {
    /// 1-based position in the answer.
    pub slot: usize,
    /// Pinned whether or not the catalog knows it or the rules would drop it.
    pub item_id: String,
}

/// Business rules of an endpoint.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RulesConfig {
    /// Leave out what the user already consumed (training history and recent history).
    #[serde(default = "yes")]
    pub exclude_consumed: bool,
    /// At most this many items of one catalog category (none: no limit).
    #[serde(default)]
    pub max_per_category: Option<usize>,
    /// Leave out items outside their catalog availability window.
    #[serde(default = "yes")]
    pub availability: bool,
    /// Promotions in fixed slots.
    #[serde(default)]
    pub pinned: Vec<PinnedItem>,
    /// Exploration of new items in fixed slots (Thompson sampling over their own impressions
    /// and clicks).
    #[serde(default)]
    pub explore: Option<ExploreConfig>,
    /// Re-rank by maximal marginal relevance before pins and exploration.
    #[serde(default)]
    pub diversity: Option<DiversityConfig>,
}

/// `diversity = { lambda = 0.3 }`: MMR with `lambda` the weight of diversity (0 = none, 1 =
/// only diversity); similarity is the cosine of item factors, else same catalog category.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DiversityConfig {
    /// The weight of diversity against relevance, 0 to 1.
    pub lambda: f64,
}

/// `explore = { slots = [3, 7], new_days = 7 }`: the given 1-based positions are filled by
/// Thompson sampling over items first seen in the last `new_days` days.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExploreConfig {
    /// 1-based positions filled by exploration.
    pub slots: Vec<usize>,
    /// An item is new for this many days after it was first seen (default 7).
    #[serde(default = "default_new_days")]
    pub new_days: u32,
}

fn default_new_days() -> u32 {
    7
}

fn yes() -> bool {
    true
}

impl Default for RulesConfig {
    fn default() -> Self {
        Self {
            exclude_consumed: true,
            max_per_category: None,
            availability: true,
            pinned: Vec::new(),
            explore: None,
            diversity: None,
        }
    }
}

/// One arm of an experiment: a model (task) or a strategy.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VariantConfig {
    /// The variant's name, reported in answers and served logs.
    pub name: String,
    /// Relative weight (> 0); weights need not sum to 1.
    pub weight: f64,
    /// The task whose model this variant serves.
    #[serde(default)]
    pub model: Option<String>,
    /// A strategy instead of a model: `"fallback"` serves the endpoint's fallback list.
    #[serde(default)]
    pub strategy: Option<String>,
}

/// An A/B experiment of an endpoint.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExperimentConfig {
    /// The experiment's name; part of the assignment hash, so renaming reshuffles users.
    pub name: String,
    /// The arms.
    pub variants: Vec<VariantConfig>,
    /// The variant the others are compared with in the online report (default: the first).
    #[serde(default)]
    pub control: Option<String>,
    /// How requests are split between the arms.
    #[serde(default)]
    pub allocation: Allocation,
}

/// How an experiment splits traffic.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Allocation {
    /// By the declared weights, with a stable hash of the user (sticky).
    #[default]
    Fixed,
    /// Thompson sampling on live impressions and clicks per variant (not sticky).
    Thompson,
}

impl ExperimentConfig {
    /// The control variant's name: `control`, else the first variant.
    pub fn control_name(&self) -> &str {
        self.control
            .as_deref()
            .or_else(|| self.variants.first().map(|v| v.name.as_str()))
            .unwrap_or("")
    }
}

/// A recommendation endpoint (`[sites.<site>.endpoints.<name>]`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    /// Per user or similar items.
    pub kind: EndpointKind,
    /// The task whose model is served.
    pub model: String,
    /// List tasks (popular/trending) served when the model cannot answer.
    #[serde(default)]
    pub fallback: Option<OneOrMany>,
    /// Business rules.
    #[serde(default)]
    pub rules: RulesConfig,
    /// An A/B experiment; without one every request gets variant `"default"` and `model`.
    #[serde(default)]
    pub experiment: Option<ExperimentConfig>,
    /// Whether callers need an `Authorization: Bearer` key of the site (server-to-server).
    #[serde(default)]
    pub require_key: bool,
}

impl EndpointConfig {
    /// The fallback task names, in order.
    pub fn fallback_tasks(&self) -> Vec<String> {
        self.fallback
            .as_ref()
            .map(OneOrMany::names)
            .unwrap_or_default()
    }
}

/// Checks an endpoint against its site's tasks; errors are `(place, problem)`.
pub(super) fn validate_endpoint(
    name: &str,
    ep: &EndpointConfig,
    site: &SiteConfig,
    at: &str,
) -> Result<(), (String, String)> {
    let err = |field: &str, problem: String| {
        Err((
            if field.is_empty() {
                at.to_string()
            } else {
                format!("{at}.{field}")
            },
            problem,
        ))
    };
    if !is_valid_key(name) {
        return err("", "endpoint names must match [a-z0-9_-]{1,64}".into());
    }
    let check_model = |field: &str, task: &str| -> Result<(), (String, String)> {
        let Some(t) = site.tasks.get(task) else {
            return err(field, format!("no task {task:?} is declared for this site"));
        };
        if matches!(ep.kind, EndpointKind::Similar | EndpointKind::Session)
            && !matches!(
                t.algorithm,
                Algorithm::ItemKnn | Algorithm::Als | Algorithm::Mf | Algorithm::External
            )
        {
            return err(
                field,
                format!(
                    "a similar-items or session endpoint needs an item_knn, als, mf or external task; {task:?} is {}",
                    t.algorithm
                ),
            );
        }
        Ok(())
    };
    check_model("model", &ep.model)?;
    for (i, f) in ep.fallback_tasks().iter().enumerate() {
        let field = match &ep.fallback {
            Some(OneOrMany::Many(_)) => format!("fallback[{i}]"),
            _ => "fallback".to_string(),
        };
        match site.tasks.get(f) {
            None => return err(&field, format!("no task {f:?} is declared for this site")),
            Some(t) if !matches!(t.algorithm, Algorithm::Popular | Algorithm::Trending) => {
                return err(
                    &field,
                    format!(
                        "a fallback is a popular or trending task; {f:?} is {}",
                        t.algorithm
                    ),
                )
            }
            _ => {}
        }
    }
    if ep.rules.max_per_category == Some(0) {
        return err("rules.max_per_category", "must be at least 1".into());
    }
    let mut slots = std::collections::BTreeSet::new();
    for (i, p) in ep.rules.pinned.iter().enumerate() {
        if !(1..=100).contains(&p.slot) {
            return err(
                &format!("rules.pinned[{i}].slot"),
                "must be between 1 and 100".into(),
            );
        }
        if !slots.insert(p.slot) {
            return err(
                &format!("rules.pinned[{i}].slot"),
                "slot pinned twice".into(),
            );
        }
        if p.item_id.is_empty() || p.item_id.len() > 256 {
            return err(
                &format!("rules.pinned[{i}].item_id"),
                "must be 1 to 256 characters".into(),
            );
        }
    }
    if let Some(x) = &ep.rules.explore {
        if x.slots.is_empty() {
            return err("rules.explore.slots", "at least one slot is needed".into());
        }
        for (i, slot) in x.slots.iter().enumerate() {
            if !(1..=100).contains(slot) {
                return err(
                    &format!("rules.explore.slots[{i}]"),
                    "must be between 1 and 100".into(),
                );
            }
            if !slots.insert(*slot) {
                return err(
                    &format!("rules.explore.slots[{i}]"),
                    "slot already pinned or explored".into(),
                );
            }
        }
        if !(1..=365).contains(&x.new_days) {
            return err("rules.explore.new_days", "must be between 1 and 365".into());
        }
    }
    if let Some(d) = &ep.rules.diversity {
        if !(0.0..=1.0).contains(&d.lambda) {
            return err("rules.diversity.lambda", "must be between 0 and 1".into());
        }
    }
    if let Some(x) = &ep.experiment {
        if let Some(c) = &x.control {
            if !x.variants.iter().any(|v| &v.name == c) {
                return err(
                    "experiment.control",
                    format!("no variant {c:?} in this experiment"),
                );
            }
        }
        if !is_valid_key(&x.name) {
            return err("experiment.name", "must match [a-z0-9_-]{1,64}".into());
        }
        if x.variants.is_empty() {
            return err(
                "experiment.variants",
                "at least one variant is needed".into(),
            );
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, v) in x.variants.iter().enumerate() {
            let vat = format!("experiment.variants[{i}]");
            if !is_valid_key(&v.name) {
                return err(&format!("{vat}.name"), "must match [a-z0-9_-]{1,64}".into());
            }
            if !names.insert(v.name.as_str()) {
                return err(
                    &format!("{vat}.name"),
                    "variant names must be unique".into(),
                );
            }
            if !(v.weight.is_finite() && v.weight > 0.0) {
                return err(&format!("{vat}.weight"), "must be a number > 0".into());
            }
            match (&v.model, &v.strategy) {
                (Some(m), None) => check_model(&format!("{vat}.model"), m)?,
                (None, Some(s)) if s == "fallback" => {
                    if ep.fallback_tasks().is_empty() {
                        return err(
                            &format!("{vat}.strategy"),
                            "strategy \"fallback\" needs the endpoint's fallback".into(),
                        );
                    }
                }
                (None, Some(_)) => {
                    return err(
                        &format!("{vat}.strategy"),
                        "the only strategy is \"fallback\"".into(),
                    )
                }
                _ => {
                    return err(
                        &vat,
                        "a variant names exactly one of model or strategy".into(),
                    )
                }
            }
        }
    }
    Ok(())
}
