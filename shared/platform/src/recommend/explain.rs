//! `explain=true`: each answered item gets `"because": [ids]`, the items that led to it
//! ([`nectar_model::explain::because`]: factor models by contribution, item-kNN by the
//! neighbour lists; at most the 20 newest seeds, 3 ids), `["trending"]` when a fallback list
//! answered, `[]` for pinned and exploration items (no model placed them). Added after the
//! served event is recorded, so the served log keeps its format.

use super::answer::RecommendAnswer;
use super::model_cache::LoadedModel;
use crate::http::error::AppError;
use crate::http::request::query_param;

/// What a fallback answer's items are explained by (the literal).
pub const FALLBACK_BECAUSE: &str = "trending";

/// The `explain` parameter: `true` or `false` (default `false`).
pub(super) fn explain_param(query: Option<&str>) -> Result<bool, AppError> {
    match query_param(query, "explain")?.as_deref() {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(AppError::invalid("explain", "must be true or false")),
    }
}

/// Adds `because` to every item of `body`. `seeds` are the subject's items, newest first (the
/// context item, then the history; a visit's items; the similar endpoint's item).
pub(super) fn annotate(body: &mut RecommendAnswer, model: Option<&LoadedModel>, seeds: &[&str]) {
    let fallback = body.fallback;
    let seed_rows: Vec<u32> = match model.filter(|_| !fallback) {
        Some(m) => seeds
            .iter()
            .filter_map(|id| m.index.get(*id).copied())
            .take(nectar_model::explain::MAX_SEEDS)
            .collect(),
        None => Vec::new(),
    };
    for item in &mut body.items {
        // Pinned items have no score (written as `null`); explored ones were placed by chance.
        let placed = item.score.is_finite() && item.explore.is_none();
        let because: Vec<String> = match (placed, fallback, model) {
            (false, _, _) => Vec::new(),
            (true, true, _) => vec![FALLBACK_BECAUSE.to_string()],
            (true, false, Some(m)) => m
                .index
                .get(item.id.as_str())
                .map(|&r| nectar_model::explain::because(&m.item_side(), &seed_rows, r))
                .unwrap_or_default()
                .into_iter()
                .map(|r| m.items.item_ids[r as usize].clone())
                .collect(),
            (true, false, None) => Vec::new(),
        };
        item.because = Some(because);
    }
}
