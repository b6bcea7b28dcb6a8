//! Online metrics: the attributed answers of one site aggregated per endpoint × variant, per
//! UTC day and over the report's range, with the comparisons against the control. The output
//! structs serialise to the report contract (README, "Online evaluation"):
//! `{"site","since","until","orphan_hits","endpoints":[{"endpoint","experiment","ctr_basis",
//! "srm_p_value","variants":[…],"daily":[…]}]}`.
//!
//! Definitions (per endpoint × variant, answers served in `[since, until)`):
//! - `served`: trusted served answers. `displayed`: answers known to have been shown — a
//!   display event from the person served, or a credited click (a click proves the list was
//!   on screen). `clicks`: answers with a credited click (double clicks count once).
//! - `ctr`: clicks / displayed when the endpoint's apps report displays (any credited display
//!   in the range: `ctr_basis = "displayed"`), else clicks / served (`"served"`, and
//!   `displayed` is 0).
//! - `plays`: clicks followed by a play of the clicked item (attribution window);
//!   `completion`: of those, the share finished (`media_end` / `media_play`).
//! - `mrr`: mean of 1/position over clicks whose position is known (1-based), i.e. where in
//!   the list clicks land, not how often they happen.
//! - `coverage`: distinct items served / catalog size. `diversity`: mean over served lists of
//!   distinct categories / list length (an item without a category counts as a category of
//!   its own: nothing says it repeats another). `novelty`: mean popularity percentile of the
//!   served items (the popularity ECDF: share of known items at most as popular; an unknown
//!   item is 0), so **lower means more novel**. `fallback_share`: answers from a fallback list
//!   / served.
//! - Against the control (the experiment's `control`, else its first variant): `lift` is the
//!   relative CTR lift `ctr/ctr_control − 1` with its Katz log 95 % interval, `p_value` the
//!   pooled two-proportion z-test, `p_value_always_valid` the mSPRT p-value over daily
//!   cumulative looks. The control's lift fields are `null`.
//! - `srm_p_value`: chi-square of served counts against the declared weights, for fixed
//!   allocation only (`null` for Thompson sampling, where the split moves by design).
//!
//! Every undefined figure (no denominator, no catalog given) is `null`, never NaN.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, NaiveDate, SecondsFormat};
use serde::{Deserialize, Serialize};

use super::attribution::{AttributedRecommendation, Attribution, ItemId};
use super::stats::{
    always_valid_p_values, compare, mean_interval, srm_p_value, wilson, Counts, Interval,
    DEFAULT_MSPRT_TAU2,
};

/// `ctr_basis` when the endpoint's apps report displays.
pub const CTR_BASIS_DISPLAYED: &str = "displayed";
/// `ctr_basis` when they do not (CTR over served answers).
pub const CTR_BASIS_SERVED: &str = "served";

/// One declared variant of an experiment.
#[derive(Debug, Clone, PartialEq)]
pub struct VariantSpec {
    /// Its name, as served answers carry it.
    pub name: String,
    /// Its declared weight (> 0; weights need not sum to 1).
    pub weight: f64,
}

/// An endpoint's experiment as the config declares it.
#[derive(Debug, Clone, PartialEq)]
pub struct ExperimentSpec {
    /// The experiment's name.
    pub name: String,
    /// Variants in declared order.
    pub variants: Vec<VariantSpec>,
    /// The control's name; the first variant when `None`.
    pub control: Option<String>,
    /// Whether traffic is split by the declared weights (else by Thompson sampling, and the
    /// sample-ratio check does not apply).
    pub fixed_allocation: bool,
}

/// What a report covers, and the catalog data its list metrics need.
#[derive(Debug, Clone)]
pub struct ReportInput {
    /// The site.
    pub site: String,
    /// Answers served at or after this time (ms UTC) count; all when `None`.
    pub since_ms: Option<i64>,
    /// Answers served before this time count; all when `None`.
    pub until_ms: Option<i64>,
    /// Only this endpoint, when set.
    pub endpoint: Option<String>,
    /// Experiments by endpoint name.
    pub experiments: BTreeMap<String, ExperimentSpec>,
    /// Catalog size, for `coverage` (`null` without it).
    pub catalog_size: Option<usize>,
    /// Item → category, for `diversity` (`null` when empty).
    pub categories: HashMap<String, String>,
    /// Item → popularity (e.g. plays over the range), for `novelty` (`null` when empty).
    pub popularity: HashMap<String, f64>,
    /// mSPRT mixing variance ([`DEFAULT_MSPRT_TAU2`] by default).
    pub tau2: f64,
}

impl ReportInput {
    /// A report of every endpoint of `site` over all time, without catalog data.
    pub fn new(site: impl Into<String>) -> Self {
        Self {
            site: site.into(),
            since_ms: None,
            until_ms: None,
            endpoint: None,
            experiments: BTreeMap::new(),
            catalog_size: None,
            categories: HashMap::new(),
            popularity: HashMap::new(),
            tau2: DEFAULT_MSPRT_TAU2,
        }
    }
}

/// The online report of one site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Report {
    /// The site.
    pub site: String,
    /// Start of the range (RFC 3339, UTC), `null` for open.
    pub since: Option<String>,
    /// End of the range (exclusive), `null` for open.
    pub until: Option<String>,
    /// Hits on recommendations never served on this site, in the range (never credited).
    pub orphan_hits: u64,
    /// Per endpoint, by name.
    pub endpoints: Vec<EndpointReport>,
}

/// One endpoint's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EndpointReport {
    /// The endpoint.
    pub endpoint: String,
    /// Its experiment's name, if it has one.
    pub experiment: Option<String>,
    /// [`CTR_BASIS_DISPLAYED`] or [`CTR_BASIS_SERVED`].
    pub ctr_basis: String,
    /// Sample-ratio-mismatch p-value (fixed allocation with two or more variants only).
    pub srm_p_value: Option<f64>,
    /// Per variant: declared variants first (control first), then any other seen.
    pub variants: Vec<VariantReport>,
    /// Per UTC day (by serving time) and variant.
    pub daily: Vec<DailyReport>,
}

/// One variant's figures over the range.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VariantReport {
    /// The variant.
    pub variant: String,
    /// Served answers.
    pub served: u64,
    /// Answers known to have been shown (see the module doc).
    pub displayed: u64,
    /// Answers clicked.
    pub clicks: u64,
    /// Click-through rate on the endpoint's basis.
    pub ctr: Option<f64>,
    /// Its Wilson 95 % interval.
    #[cfg_attr(
        feature = "openapi",
        schema(value_type = Option<Vec<f64>>, min_items = 2, max_items = 2)
    )]
    pub ctr_ci: Option<Interval>,
    /// Clicks followed by a play.
    pub plays: u64,
    /// Completed plays / plays.
    pub completion: Option<f64>,
    /// Mean reciprocal rank of clicked positions.
    pub mrr: Option<f64>,
    /// Distinct items served / catalog size.
    pub coverage: Option<f64>,
    /// Mean intra-list category diversity.
    pub diversity: Option<f64>,
    /// Mean popularity percentile of served items (lower = more novel).
    pub novelty: Option<f64>,
    /// Share of answers from a fallback list.
    pub fallback_share: Option<f64>,
    /// Relative CTR lift against the control (`null` for the control).
    pub lift: Option<f64>,
    /// Its Katz log 95 % interval.
    #[cfg_attr(
        feature = "openapi",
        schema(value_type = Option<Vec<f64>>, min_items = 2, max_items = 2)
    )]
    pub lift_ci: Option<Interval>,
    /// Two-proportion z-test p-value against the control.
    pub p_value: Option<f64>,
    /// mSPRT always-valid p-value against the control, over daily looks.
    pub p_value_always_valid: Option<f64>,
    /// Figures outside the JSON contract, for the HTML and Markdown renderings.
    #[serde(skip)]
    #[cfg_attr(feature = "openapi", schema(ignore))]
    pub more: VariantExtras,
}

/// A variant's figures that the JSON report does not carry.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct VariantExtras {
    /// Completed plays.
    pub completed: u64,
    /// Wilson 95 % interval of `completion`.
    pub completion_ci: Option<Interval>,
    /// Wilson 95 % interval of `fallback_share`.
    pub fallback_share_ci: Option<Interval>,
    /// Absolute CTR lift `ctr − ctr_control`.
    pub abs_lift: Option<f64>,
    /// Its Wald 95 % interval.
    pub abs_lift_ci: Option<Interval>,
    /// Served lists `diversity` is the mean of (its sample size).
    pub diversity_lists: u64,
    /// Normal 95 % interval of `diversity` (`None` without categories or below two lists).
    pub diversity_ci: Option<Interval>,
}

/// One variant's counts on one UTC day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DailyReport {
    /// `YYYY-MM-DD`.
    pub date: String,
    /// The variant.
    pub variant: String,
    /// Served answers that day.
    pub served: u64,
    /// Shown answers.
    pub displayed: u64,
    /// Clicked answers.
    pub clicks: u64,
    /// Click-through rate on the endpoint's basis.
    pub ctr: Option<f64>,
}

/// Counts of one endpoint × variant (× day).
#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    served: u64,
    display_events: u64,
    shown: u64,
    clicks: u64,
}

impl Tally {
    fn add(&mut self, r: &AttributedRecommendation) {
        let o = &r.outcome;
        self.served += 1;
        self.display_events += u64::from(o.displayed);
        self.shown += u64::from(o.displayed || o.click.is_some());
        self.clicks += u64::from(o.click.is_some());
    }

    /// `(displayed, CTR counts)` on the endpoint's basis.
    fn on_basis(&self, displayed_basis: bool) -> (u64, Counts) {
        if displayed_basis {
            (self.shown, Counts::new(self.clicks, self.shown))
        } else {
            (0, Counts::new(self.clicks, self.served))
        }
    }
}

/// Everything else summed over the range for one endpoint × variant.
#[derive(Debug, Default)]
struct ListTally {
    plays: u64,
    completed: u64,
    rr_sum: f64,
    rr_n: u64,
    fallback: u64,
    items: HashSet<ItemId>,
    diversity_sum: f64,
    diversity_sq_sum: f64,
    lists: u64,
    novelty_sum: f64,
    slots: u64,
}

/// Catalog data looked up by [`ItemId`].
struct ItemData {
    category: Vec<Option<u32>>,
    percentile: Vec<f64>,
    has_categories: bool,
    has_popularity: bool,
}

impl ItemData {
    fn new(a: &Attribution, input: &ReportInput) -> Self {
        let mut names: HashMap<&str, u32> = HashMap::new();
        let category = a
            .items
            .iter()
            .map(|i| {
                input.categories.get(i.as_ref()).map(|c| {
                    let n = names.len() as u32;
                    *names.entry(c.as_str()).or_insert(n)
                })
            })
            .collect();
        let mut pops: Vec<f64> = input
            .popularity
            .values()
            .copied()
            .filter(|p| p.is_finite())
            .collect();
        pops.sort_by(f64::total_cmp);
        let n = pops.len().max(1) as f64;
        let percentile = a
            .items
            .iter()
            .map(|i| match input.popularity.get(i.as_ref()) {
                // ECDF: the share of known items at most as popular as this one.
                Some(&p) if p.is_finite() => pops.partition_point(|&q| q <= p) as f64 / n,
                _ => 0.0,
            })
            .collect();
        Self {
            category,
            percentile,
            has_categories: !input.categories.is_empty(),
            has_popularity: !pops.is_empty(),
        }
    }

    fn diversity(&self, items: &[ItemId]) -> f64 {
        let mut seen = BTreeSet::new();
        let mut uncategorised = 0usize;
        for &i in items {
            match self.category[i as usize] {
                Some(c) => {
                    seen.insert(c);
                }
                None => uncategorised += 1,
            }
        }
        (seen.len() + uncategorised) as f64 / items.len() as f64
    }
}

impl ListTally {
    fn add(&mut self, r: &AttributedRecommendation, data: &ItemData) {
        let o = &r.outcome;
        self.plays += u64::from(o.played);
        self.completed += u64::from(o.played && o.completed);
        if let Some(pos) = o.click.and_then(|c| c.position) {
            self.rr_sum += 1.0 / f64::from(pos);
            self.rr_n += 1;
        }
        self.fallback += u64::from(r.fallback);
        self.items.extend(r.items.iter().copied());
        if !r.items.is_empty() {
            let d = data.diversity(&r.items);
            self.diversity_sum += d;
            self.diversity_sq_sum += d * d;
            self.lists += 1;
        }
        self.novelty_sum += r
            .items
            .iter()
            .map(|&i| data.percentile[i as usize])
            .sum::<f64>();
        self.slots += r.items.len() as u64;
    }
}

fn ratio(num: f64, den: u64) -> Option<f64> {
    (den > 0).then(|| num / den as f64)
}

fn rfc3339(ms: i64) -> Option<String> {
    DateTime::from_timestamp_millis(ms).map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
}

fn utc_date(ms: i64) -> NaiveDate {
    DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .date_naive()
}

fn in_range(ms: i64, input: &ReportInput) -> bool {
    input.since_ms.is_none_or(|s| ms >= s) && input.until_ms.is_none_or(|u| ms < u)
}

/// Builds the report of `input.site` from attributed answers.
pub fn report(a: &Attribution, input: &ReportInput) -> Report {
    let data = ItemData::new(a, input);
    let mut by_endpoint: BTreeMap<&str, Vec<&AttributedRecommendation>> = BTreeMap::new();
    for r in &a.recommendations {
        if &*r.site_key != input.site.as_str() || !in_range(r.timestamp_ms, input) {
            continue;
        }
        if input.endpoint.as_deref().is_some_and(|e| e != &*r.endpoint) {
            continue;
        }
        by_endpoint.entry(&r.endpoint).or_default().push(r);
    }
    let endpoints = by_endpoint
        .into_iter()
        .map(|(name, recs)| endpoint_report(name, &recs, input.experiments.get(name), &data, input))
        .collect();
    let orphan_hits = a
        .orphan_hits
        .iter()
        .filter(|o| &*o.site_key == input.site.as_str() && in_range(o.timestamp_ms, input))
        .count() as u64;
    Report {
        site: input.site.clone(),
        since: input.since_ms.and_then(rfc3339),
        until: input.until_ms.and_then(rfc3339),
        orphan_hits,
        endpoints,
    }
}

/// Variant names in report order, the control first: the declared variants (control, then the
/// others in declared order), then any other variant seen, by name (without an experiment the
/// first seen by name is the control).
fn variant_order(recs: &[&AttributedRecommendation], x: Option<&ExperimentSpec>) -> Vec<String> {
    let mut order: Vec<String> = Vec::new();
    if let Some(x) = x {
        let control = x
            .control
            .as_ref()
            .filter(|c| x.variants.iter().any(|v| &v.name == *c))
            .or(x.variants.first().map(|v| &v.name));
        order.extend(control.cloned());
        for v in &x.variants {
            if !order.contains(&v.name) {
                order.push(v.name.clone());
            }
        }
    }
    let seen: BTreeSet<&str> = recs.iter().map(|r| &*r.variant).collect();
    for v in seen {
        if !order.iter().any(|o| o == v) {
            order.push(v.to_string());
        }
    }
    order
}

fn endpoint_report(
    endpoint: &str,
    recs: &[&AttributedRecommendation],
    x: Option<&ExperimentSpec>,
    data: &ItemData,
    input: &ReportInput,
) -> EndpointReport {
    let order = variant_order(recs, x);
    let index: HashMap<&str, usize> = order
        .iter()
        .enumerate()
        .map(|(i, v)| (v.as_str(), i))
        .collect();
    let mut totals = vec![Tally::default(); order.len()];
    let mut lists: Vec<ListTally> = order.iter().map(|_| ListTally::default()).collect();
    let mut days: BTreeMap<NaiveDate, Vec<Tally>> = BTreeMap::new();
    for r in recs {
        let v = index[&*r.variant];
        totals[v].add(r);
        lists[v].add(r, data);
        days.entry(utc_date(r.timestamp_ms))
            .or_insert_with(|| vec![Tally::default(); order.len()])[v]
            .add(r);
    }
    let displayed_basis = totals.iter().any(|t| t.display_events > 0);

    // Cumulative CTR counts at the end of each day, per variant: the looks of the mSPRT.
    let mut cumulative = vec![Tally::default(); order.len()];
    let looks: Vec<Vec<Counts>> = days
        .values()
        .map(|day| {
            for (c, d) in cumulative.iter_mut().zip(day) {
                c.served += d.served;
                c.shown += d.shown;
                c.clicks += d.clicks;
            }
            cumulative
                .iter()
                .map(|c| c.on_basis(displayed_basis).1)
                .collect()
        })
        .collect();

    let control = totals[0].on_basis(displayed_basis).1;
    let variants = order
        .iter()
        .enumerate()
        .map(|(v, name)| {
            let (t, l) = (&totals[v], &lists[v]);
            let (displayed, ctr) = t.on_basis(displayed_basis);
            let cmp = (v > 0).then(|| compare(ctr, control)).flatten();
            let always_valid = (v > 0).then(|| {
                let seq: Vec<(Counts, Counts)> = looks.iter().map(|l| (l[v], l[0])).collect();
                always_valid_p_values(&seq, input.tau2).last().copied()
            });
            let completion = Counts::new(l.completed, l.plays);
            let fallback = Counts::new(l.fallback, t.served);
            VariantReport {
                variant: name.clone(),
                served: t.served,
                displayed,
                clicks: t.clicks,
                ctr: ctr.rate(),
                ctr_ci: wilson(ctr),
                plays: l.plays,
                completion: completion.rate(),
                mrr: ratio(l.rr_sum, l.rr_n),
                coverage: input
                    .catalog_size
                    .filter(|&n| n > 0)
                    .filter(|_| t.served > 0)
                    .map(|n| l.items.len() as f64 / n as f64),
                diversity: ratio(l.diversity_sum, l.lists).filter(|_| data.has_categories),
                novelty: ratio(l.novelty_sum, l.slots).filter(|_| data.has_popularity),
                fallback_share: fallback.rate(),
                lift: cmp.and_then(|c| c.rel_lift),
                lift_ci: cmp.and_then(|c| c.rel_lift_ci),
                p_value: cmp.map(|c| c.p_value),
                p_value_always_valid: always_valid.flatten(),
                more: VariantExtras {
                    completed: l.completed,
                    completion_ci: wilson(completion),
                    fallback_share_ci: wilson(fallback),
                    abs_lift: cmp.map(|c| c.abs_lift),
                    abs_lift_ci: cmp.map(|c| c.abs_lift_ci),
                    diversity_lists: l.lists,
                    diversity_ci: mean_interval(l.diversity_sum, l.diversity_sq_sum, l.lists)
                        .filter(|_| data.has_categories),
                },
            }
        })
        .collect();

    let srm_p_value = x.filter(|x| x.fixed_allocation).and_then(|x| {
        let counts: Vec<u64> = x
            .variants
            .iter()
            .map(|v| totals[index[v.name.as_str()]].served)
            .collect();
        let weights: Vec<f64> = x.variants.iter().map(|v| v.weight).collect();
        srm_p_value(&counts, &weights)
    });

    let daily = days
        .iter()
        .flat_map(|(date, day)| {
            order.iter().zip(day).map(move |(name, t)| {
                let (displayed, ctr) = t.on_basis(displayed_basis);
                DailyReport {
                    date: date.format("%Y-%m-%d").to_string(),
                    variant: name.clone(),
                    served: t.served,
                    displayed,
                    clicks: t.clicks,
                    ctr: ctr.rate(),
                }
            })
        })
        .collect();

    EndpointReport {
        endpoint: endpoint.to_string(),
        experiment: x.map(|x| x.name.clone()),
        ctr_basis: if displayed_basis {
            CTR_BASIS_DISPLAYED
        } else {
            CTR_BASIS_SERVED
        }
        .to_string(),
        srm_p_value,
        variants,
        daily,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::online::attribution::Attributor;
    use crate::online::fixture::{forged, lines, t};
    use crate::online::stats::Z95;
    use serde_json::{json, Value};

    fn attribution(lines: &[String]) -> Attribution {
        let mut a = Attributor::new(30);
        for l in lines {
            a.push_line(l);
        }
        a.finish()
    }

    fn experiment(control: Option<&str>, fixed: bool) -> ExperimentSpec {
        ExperimentSpec {
            name: "x1".into(),
            variants: vec![
                VariantSpec {
                    name: "a".into(),
                    weight: 1.0,
                },
                VariantSpec {
                    name: "b".into(),
                    weight: 1.0,
                },
            ],
            control: control.map(str::to_string),
            fixed_allocation: fixed,
        }
    }

    /// Days 1–2 of site s1, `for-you` running x1, a catalog of 10 items.
    fn input() -> ReportInput {
        let mut i = ReportInput::new("s1");
        i.since_ms = Some(t(1, 0, 0));
        i.until_ms = Some(t(3, 0, 0));
        i.experiments
            .insert("for-you".into(), experiment(None, true));
        i.catalog_size = Some(10);
        for (item, cat) in [
            ("m1", "news"),
            ("m2", "news"),
            ("m3", "sport"),
            ("m4", "drama"),
            ("m5", "drama"),
            ("m6", "sport"),
            ("m7", "kids"),
            ("m8", "kids"),
        ] {
            i.categories.insert(item.into(), cat.into());
        }
        for (item, pop) in [
            ("m1", 100.0),
            ("m2", 50.0),
            ("m3", 50.0),
            ("m4", 10.0),
            ("m5", 5.0),
            ("m6", 20.0),
            ("m7", 1.0),
            ("m8", 2.0),
        ] {
            i.popularity.insert(item.into(), pop);
        }
        i
    }

    /// Equal JSON, numbers to 1e-9.
    fn assert_json_close(got: &Value, want: &Value, path: &str) {
        match (got, want) {
            (Value::Number(g), Value::Number(w)) => {
                let (g, w) = (g.as_f64().unwrap(), w.as_f64().unwrap());
                assert!((g - w).abs() <= 1e-9, "{path}: {g} != {w}");
            }
            (Value::Object(g), Value::Object(w)) => {
                let (gk, wk): (Vec<_>, Vec<_>) = (g.keys().collect(), w.keys().collect());
                assert_eq!(gk, wk, "{path}: keys");
                for (k, v) in w {
                    assert_json_close(&g[k], v, &format!("{path}.{k}"));
                }
            }
            (Value::Array(g), Value::Array(w)) => {
                assert_eq!(g.len(), w.len(), "{path}: length");
                for (i, (g, w)) in g.iter().zip(w).enumerate() {
                    assert_json_close(g, w, &format!("{path}[{i}]"));
                }
            }
            _ => assert_eq!(got, want, "{path}"),
        }
    }

    #[test]
    fn the_report_of_the_hand_built_set_has_the_figures_worked_out_by_hand() {
        // GIVEN the hand-built set (fixture.rs) attributed with a 30-minute window
        let a = attribution(&lines());
        // WHEN the report of s1 over 2026-11-01..03 is built
        let got = serde_json::to_value(report(&a, &input())).unwrap();
        // THEN every figure is the one worked out by hand:
        // for-you has displays, so CTR is over displayed answers (shown or clicked).
        //   a: r1 r2 r12 (day 1), r5 r11 (day 2); r13 is on day 3, outside the range.
        //      displayed r1 r2 r11 + r5 (clicked) = 4; clicks r1 (pos 2) r2 (pos 3) r5 (pos 1).
        //      plays r1 r2; completed r1 -> 1/2. mrr (1/2 + 1/3 + 1)/3 = 11/18.
        //      items {m1 m2 m3 m4 m5 m7} = 6 of 10. Diversity: r12 has 3 categories in 3,
        //      the others 2 in 3: (4·2/3 + 1)/5 = 11/15. Popularity ECDF (8 items): m1 1,
        //      m2 m3 7/8, m6 5/8, m4 1/2, m5 3/8, m8 1/4, m7 1/8; novelty = (2.75 + 1.875 +
        //      1.5 + 2.75 + 2)/15 = 0.725. Fallback r2: 1/5.
        //   b: r3 (day 1), r4 r6 (day 2); the forged r9 is not there. Displayed r3 r6 + r4
        //      (clicked; its display came from u9) = 3; clicks r4 (pos 1) r6 (pos 3), r3's hit
        //      was foreign. plays r4 r6, neither completed. mrr (1 + 1/3)/2. items {m2 m3 m4
        //      m5 m6 m7 m8} = 7. Diversity 2/3 each. Novelty (2.375 + 1 + 1.5)/9.
        //   Lift b vs a: (2/3)/(3/4) - 1 = -1/9; Katz interval and z-test p-value from
        //   statsmodels confint_proportions_2indep(2, 3, 3, 4, method='log',
        //   compare='ratio') (minus 1) and proportions_ztest(count=[2, 3], nobs=[3, 4]).
        //   Always valid: day 1 looks at b 0/1 vs a 2/2 (V = 0: p = 1), day 2 at 2/3 vs 3/4
        //   (Λ ≈ 0.9996 < 1: p = 1). CTR intervals: proportion_confint(k, n,
        //   method='wilson'). SRM: scipy.stats.chisquare([5, 3], [4, 4]).pvalue.
        // more has no displays: CTR over served, displayed 0. r7 clicked at position 2; r8
        //   a fallback. m9 has no category (a category of its own) and no popularity (0).
        // Orphans in range: the hits on r-unknown (day 1) and on s2's r10 (day 2); r-old's
        //   is on day 0.
        let want = json!({
            "site": "s1",
            "since": "2026-11-01T00:00:00Z",
            "until": "2026-11-03T00:00:00Z",
            "orphan_hits": 2,
            "endpoints": [
                {
                    "endpoint": "for-you",
                    "experiment": "x1",
                    "ctr_basis": "displayed",
                    "srm_p_value": 0.47950012218695337,
                    "variants": [
                        {
                            "variant": "a", "served": 5, "displayed": 4, "clicks": 3,
                            "ctr": 0.75, "ctr_ci": [0.30064184258240184, 0.9544127391902995],
                            "plays": 2, "completion": 0.5, "mrr": 11.0 / 18.0,
                            "coverage": 0.6, "diversity": 11.0 / 15.0, "novelty": 0.725,
                            "fallback_share": 0.2,
                            "lift": null, "lift_ci": null, "p_value": null,
                            "p_value_always_valid": null
                        },
                        {
                            "variant": "b", "served": 3, "displayed": 3, "clicks": 2,
                            "ctr": 2.0 / 3.0, "ctr_ci": [0.2076596008020477, 0.9385080552796037],
                            "plays": 2, "completion": 0.0, "mrr": 2.0 / 3.0,
                            "coverage": 0.7, "diversity": 2.0 / 3.0, "novelty": 4.875 / 9.0,
                            "fallback_share": 0.0,
                            "lift": -1.0 / 9.0,
                            "lift_ci": [0.33361587325615677 - 1.0, 2.368362899158132 - 1.0],
                            "p_value": 0.8091498346314979,
                            "p_value_always_valid": 1.0
                        }
                    ],
                    "daily": [
                        { "date": "2026-11-01", "variant": "a", "served": 3, "displayed": 2, "clicks": 2, "ctr": 1.0 },
                        { "date": "2026-11-01", "variant": "b", "served": 1, "displayed": 1, "clicks": 0, "ctr": 0.0 },
                        { "date": "2026-11-02", "variant": "a", "served": 2, "displayed": 2, "clicks": 1, "ctr": 0.5 },
                        { "date": "2026-11-02", "variant": "b", "served": 2, "displayed": 2, "clicks": 2, "ctr": 1.0 }
                    ]
                },
                {
                    "endpoint": "more",
                    "experiment": null,
                    "ctr_basis": "served",
                    "srm_p_value": null,
                    "variants": [
                        {
                            "variant": "default", "served": 2, "displayed": 0, "clicks": 1,
                            "ctr": 0.5, "ctr_ci": [0.09453120573423068, 0.9054687942657693],
                            "plays": 0, "completion": null, "mrr": 0.5,
                            "coverage": 0.3, "diversity": 1.0, "novelty": 0.46875,
                            "fallback_share": 0.5,
                            "lift": null, "lift_ci": null, "p_value": null,
                            "p_value_always_valid": null
                        }
                    ],
                    "daily": [
                        { "date": "2026-11-01", "variant": "default", "served": 1, "displayed": 0, "clicks": 1, "ctr": 1.0 },
                        { "date": "2026-11-02", "variant": "default", "served": 1, "displayed": 0, "clicks": 0, "ctr": 0.0 }
                    ]
                }
            ]
        });
        assert_json_close(&got, &want, "report");
    }

    #[test]
    fn diversity_has_its_sample_size_and_interval() {
        // GIVEN the hand-built set: for-you's a served 5 lists (diversities 2/3 four times
        // and 1 once), b 3 lists of 2/3
        let r = report(&attribution(&lines()), &input());
        let v = &r.endpoints[0].variants;
        assert_eq!(
            (v[0].more.diversity_lists, v[1].more.diversity_lists),
            (5, 3)
        );
        // THEN a's interval is 11/15 ± z·s/√5, s² = (4·(1/15)² + (4/15)²)/4 = 1/45
        let [lo, hi] = v[0].more.diversity_ci.unwrap();
        let half = Z95 * (1.0f64 / 45.0 / 5.0).sqrt();
        assert!((lo - (11.0 / 15.0 - half)).abs() < 1e-12, "{lo}");
        assert!((hi - (11.0 / 15.0 + half)).abs() < 1e-12, "{hi}");
        // AND identical lists have no spread; without categories there is no interval
        let [lo, hi] = v[1].more.diversity_ci.unwrap();
        assert!((lo - 2.0 / 3.0).abs() < 1e-12 && (hi - 2.0 / 3.0).abs() < 1e-12);
        let bare = ReportInput {
            categories: Default::default(),
            ..input()
        };
        let r = report(&attribution(&lines()), &bare);
        assert_eq!(r.endpoints[0].variants[0].more.diversity_ci, None);
        assert_eq!(r.endpoints[0].variants[0].more.diversity_lists, 5);
    }

    #[test]
    fn a_forged_served_event_changes_no_figure() {
        // GIVEN the set with and without a served event sent without the marker
        let mut with = lines();
        with.push(forged());
        // THEN the reports are equal
        let (a, b) = (attribution(&lines()), attribution(&with));
        assert_eq!(report(&a, &input()), report(&b, &input()));
    }

    #[test]
    fn the_json_keys_are_exactly_the_contract() {
        let r = report(&attribution(&lines()), &input());
        let v = serde_json::to_value(&r).unwrap();
        let keys = |v: &Value| -> Vec<String> {
            let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            k.sort();
            k
        };
        let sorted = |s: &[&str]| -> Vec<String> {
            let mut k: Vec<String> = s.iter().map(|s| s.to_string()).collect();
            k.sort();
            k
        };
        assert_eq!(
            keys(&v),
            sorted(&["site", "since", "until", "orphan_hits", "endpoints"])
        );
        let ep = &v["endpoints"][0];
        assert_eq!(
            keys(ep),
            sorted(&[
                "endpoint",
                "experiment",
                "ctr_basis",
                "srm_p_value",
                "variants",
                "daily"
            ])
        );
        assert_eq!(
            keys(&ep["variants"][1]),
            sorted(&[
                "variant",
                "served",
                "displayed",
                "clicks",
                "ctr",
                "ctr_ci",
                "plays",
                "completion",
                "mrr",
                "coverage",
                "diversity",
                "novelty",
                "fallback_share",
                "lift",
                "lift_ci",
                "p_value",
                "p_value_always_valid",
            ])
        );
        assert_eq!(
            keys(&ep["daily"][0]),
            sorted(&["date", "variant", "served", "displayed", "clicks", "ctr"])
        );
        // AND a report reads back from its JSON
        let back: Report = serde_json::from_value(v).unwrap();
        assert_eq!(
            back.endpoints[0].variants[1].lift,
            r.endpoints[0].variants[1].lift
        );
    }

    #[test]
    fn a_named_control_comes_first_and_is_compared_against() {
        // GIVEN control = "b"
        let mut i = input();
        i.experiments
            .insert("for-you".into(), experiment(Some("b"), true));
        let r = report(&attribution(&lines()), &i);
        let v = &r.endpoints[0].variants;
        // THEN b is first with no lift, and a's lift is (3/4)/(2/3) - 1 = 1/8
        assert_eq!((v[0].variant.as_str(), v[0].lift), ("b", None));
        assert_eq!(v[1].variant, "a");
        assert!((v[1].lift.unwrap() - 0.125).abs() < 1e-12);
        assert!((v[1].more.abs_lift.unwrap() - (0.75 - 2.0 / 3.0)).abs() < 1e-12);
        // AND the SRM check still uses the declared order and weights
        assert!((r.endpoints[0].srm_p_value.unwrap() - 0.47950012218695337).abs() < 1e-9);
    }

    #[test]
    fn thompson_allocation_has_no_sample_ratio_check_and_filters_apply() {
        // GIVEN a Thompson-sampled experiment, only the for-you endpoint, and no catalog data
        let mut i = input();
        i.experiments
            .insert("for-you".into(), experiment(None, false));
        i.endpoint = Some("for-you".into());
        i.catalog_size = None;
        i.categories.clear();
        i.popularity.clear();
        let r = report(&attribution(&lines()), &i);
        // THEN there is no SRM p-value, one endpoint, and the list metrics are null
        assert_eq!(r.endpoints.len(), 1);
        assert_eq!(r.endpoints[0].srm_p_value, None);
        let a = &r.endpoints[0].variants[0];
        assert_eq!((a.coverage, a.diversity, a.novelty), (None, None, None));
        // AND without a range, r13 (day 3) counts for a and every orphan is reported
        i.since_ms = None;
        i.until_ms = None;
        let r = report(&attribution(&lines()), &i);
        assert_eq!((r.since.as_deref(), r.orphan_hits), (None, 3));
        assert_eq!(r.endpoints[0].variants[0].served, 6);
        // AND another site's report has no endpoints from s1
        i.site = "s2".into();
        let r = report(&attribution(&lines()), &i);
        assert_eq!((r.endpoints[0].variants[0].served, r.orphan_hits), (1, 0));
    }
}
