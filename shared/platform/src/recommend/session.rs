//! Session recommendations (`GET /v1/session/{endpoint}?s=SITE&items=a,b,c`): the current
//! visit's items, newest last, for anonymous visitors. The ranking is
//! [`nectar_model::session::rank_session`] (similar items summed with recency weights); this
//! file reads the request's `items` and maps them to the model's rows.

use nectar_model::session::{rank_session, MAX_SESSION_ITEMS};

use super::model_cache::LoadedModel;
use crate::http::error::AppError;
use crate::http::request::query_param;

/// Prefix of the session route.
pub const SESSION_PREFIX: &str = "/v1/session/";

/// The `items` parameter: comma-separated ids, newest last, 1 to [`MAX_SESSION_ITEMS`], each
/// checked like every other id (`check` names the field).
pub(super) fn session_items(
    query: Option<&str>,
    check: impl Fn(&str, &str) -> Result<(), AppError>,
) -> Result<Vec<String>, AppError> {
    let raw = query_param(query, "items")?.ok_or_else(|| {
        AppError::invalid(
            "items",
            "items is required (the visit's item ids, newest last)",
        )
    })?;
    let items: Vec<String> = raw
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if items.is_empty() || items.len() > MAX_SESSION_ITEMS {
        return Err(AppError::invalid(
            "items",
            format!("from 1 to {MAX_SESSION_ITEMS} comma-separated ids"),
        ));
    }
    for id in &items {
        check("items", id)?;
    }
    Ok(items)
}

/// The top `want` rows of `m` for a session (`items` newest last; ids the version does not
/// know are skipped); `None` when none is known or nothing is similar (the caller falls back).
pub(super) fn rank(
    m: &LoadedModel,
    items: &[String],
    excluded: &[u32],
    want: usize,
) -> Option<Vec<(u32, f32)>> {
    let seen: Vec<u32> = items
        .iter()
        .filter_map(|id| m.index.get(id).copied())
        .collect();
    rank_session(&m.item_side(), &seen, excluded, want)
}
