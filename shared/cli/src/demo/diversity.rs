//! The demo's diversity comparison: the `for-you` endpoint's ALS lists with and without the
//! `diversity` rule (maximal marginal relevance, issue 15).
//!
//! The demo's config adds [`ENDPOINT`], a twin of `for-you`'s `als` arm (same model, same
//! rules) with `diversity = { lambda = 0.3 }`. After the audience's week, the same users ask
//! it for ten programmes; the online report then gives the intra-list diversity (distinct
//! categories per list item) of both, each with its number of lists and 95 % interval.

use nectar_model::online::Report;
use nectar_platform::collect::sink::EventSink;
use nectar_platform::config::{DiversityConfig, NectarConfig};
use nectar_platform::model_store::ModelStore;
use nectar_platform::recommend::RecommendService;

use super::SITE;

/// The endpoint with the rule.
pub(super) const ENDPOINT: &str = "for-you-diverse";
/// Its diversity weight (the example).
const LAMBDA: f64 = 0.3;
/// The served lists compared without the rule: `for-you`'s `als` arm.
const PLAIN: (&str, &str) = (super::clicks::ENDPOINT, "als");

/// `config` with [`ENDPOINT`] added to the demo site: `for-you` without its experiment,
/// serving its `als` arm with the diversity rule.
pub(super) fn with_diverse_endpoint(mut config: NectarConfig) -> NectarConfig {
    if let Some(site) = config.sites.get_mut(SITE) {
        if let Some(plain) = site.endpoints.get(PLAIN.0) {
            let mut ep = plain.clone();
            ep.experiment = None;
            ep.model = PLAIN.1.to_string();
            ep.rules.diversity = Some(DiversityConfig { lambda: LAMBDA });
            site.endpoints.insert(ENDPOINT.to_string(), ep);
        }
    }
    config
}

/// Asks [`ENDPOINT`] for ten programmes for `users` demo users at `t` (logged as served, like
/// any answer).
pub(super) async fn serve<M, S>(
    svc: &RecommendService<M, S>,
    users: usize,
    t: i64,
) -> anyhow::Result<()>
where
    M: ModelStore,
    S: EventSink + 'static,
{
    for u in 0..users {
        let uri = format!("/v1/recommend/{ENDPOINT}?s={SITE}&user_id=user-{u}&n=10");
        super::get_answer(svc, &uri, t).await?;
    }
    svc.served_log().flush().await;
    Ok(())
}

/// The online report of every endpoint of the demo site over `[since_ms, until_ms)` (the
/// same code as `nectar report`).
pub(super) async fn report(
    data_dir: &std::path::Path,
    config: &NectarConfig,
    since_ms: i64,
    until_ms: i64,
) -> anyhow::Result<Report> {
    use nectar_platform::report::{build_report, ReportRequest};
    let store = nectar_platform::object_store::LocalStore::new(data_dir);
    let catalog = nectar_platform::catalog::Catalog::open(data_dir)?;
    let req = ReportRequest {
        site: SITE.to_string(),
        endpoint: None,
        since_ms,
        until_ms,
    };
    Ok(build_report(&store, Some(&catalog), config, &req).await?)
}

/// One side of the comparison from the report: (label, diversity, interval, lists).
pub(super) type Figure = (String, Option<f64>, Option<[f64; 2]>, u64);

/// The diversity of the plain and the diverse lists in `report`, in that order.
pub(super) fn figures(report: &Report) -> Vec<Figure> {
    let mut out = Vec::new();
    for (endpoint, variant, label) in [
        (
            PLAIN.0,
            PLAIN.1,
            format!("{} / {} (no rule)", PLAIN.0, PLAIN.1),
        ),
        (
            ENDPOINT,
            "default",
            format!("{ENDPOINT} (diversity lambda {LAMBDA})"),
        ),
    ] {
        let v = report
            .endpoints
            .iter()
            .filter(|e| e.endpoint == endpoint)
            .flat_map(|e| &e.variants)
            .find(|v| v.variant == variant);
        out.push(match v {
            Some(v) => (
                label,
                v.diversity,
                v.more.diversity_ci,
                v.more.diversity_lists,
            ),
            None => (label, None, None, 0),
        });
    }
    out
}

/// Prints [`figures`].
pub(super) fn print(report: &Report) {
    println!(
        "\nIntra-list diversity of the served ALS lists (distinct categories per list item; \
         95 % intervals):"
    );
    for (label, d, ci, n) in figures(report) {
        let d = d.map_or("–".to_string(), |d| format!("{d:.3}"));
        let ci = ci.map_or(String::new(), |[lo, hi]| format!(" [{lo:.3}, {hi:.3}]"));
        println!("  {label:<42} {d}{ci} over {n} lists");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_diverse_twin_serves_for_you_als_with_the_rule() {
        let base = NectarConfig::embedded_default();
        let config = with_diverse_endpoint(base.clone());
        let site = config.site(SITE).unwrap();
        let (plain, diverse) = (&site.endpoints[PLAIN.0], &site.endpoints[ENDPOINT]);
        assert_eq!(diverse.model, "als");
        assert!(diverse.experiment.is_none());
        assert_eq!(
            diverse.rules.diversity,
            Some(DiversityConfig { lambda: 0.3 })
        );
        assert_eq!(diverse.rules.max_per_category, plain.rules.max_per_category);
        assert_eq!(plain.rules.diversity, None, "for-you itself is unchanged");
        assert_eq!(
            site.endpoints.len(),
            base.site(SITE).unwrap().endpoints.len() + 1
        );
    }
}
