//! The privacy routes, under the site's admin key (`Authorization: Bearer`):
//!
//! - `DELETE /v1/users/{user_id}?s=SITE` and `DELETE /v1/clients/{client_id}?s=SITE`: erase a
//!   user or a client → `202 {"erased": {…}, "pending": [...]}`.
//! - `GET /v1/users/{user_id}/export?s=SITE`: what Nectar holds on the user →
//!   `{"user_id", "site", "history", "served", "erasure": {"requested_ms", "state"}}`, where
//!   `served` is the user's `recommendation_served` events of the raw event log over the last
//!   [`EXPORT_SERVED_DAYS`] days (newest first, at most [`EXPORT_SERVED_MAX`]).

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use http::{Method, StatusCode};
use serde_json::{json, Value};

use super::{erasure_of, forget, pending, ErasureLog, Subject};
use crate::auth::AdminKeys;
use crate::config::NectarConfig;
use crate::event_log::jsonl::gunzip_text;
use crate::event_log::reader::{list_window, TimeWindow};
use crate::http::error::AppError;
use crate::http::request::site_key_param;
use crate::http::response::json_response;
use crate::model_store::ModelStore;
use crate::object_store::ObjectStore;

/// The prefix of the user routes.
pub const USERS_PATH: &str = "/v1/users/";
/// The prefix of the client erasure route.
pub const CLIENTS_PATH: &str = "/v1/clients/";
/// Days of the raw event log an export scans for served recommendations.
pub const EXPORT_SERVED_DAYS: i64 = 7;
/// Served events an export returns at most.
pub const EXPORT_SERVED_MAX: usize = 500;
/// The longest id accepted in a path.
const MAX_ID_LEN: usize = 512;
const DAY_MS: i64 = 86_400_000;
/// Event-log files fetched at once by an export.
const READ_CONCURRENCY: usize = 8;

/// What the privacy routes need.
#[derive(Debug, Clone, Copy)]
pub struct Privacy<'a, S, L, O> {
    /// The model store (histories, per-user factors and lists).
    pub store: &'a S,
    /// The erasure log.
    pub log: &'a L,
    /// The event log (for the served recommendations of an export).
    pub events: &'a O,
    /// Sites.
    pub config: &'a NectarConfig,
    /// Admin keys.
    pub keys: &'a AdminKeys,
    /// The raw event log's lifecycle expiry, when one is configured.
    pub raw_log_expiry_days: Option<u32>,
}

/// Whether `path` is one of the privacy routes' paths.
pub fn routes(path: &str) -> bool {
    path.starts_with(USERS_PATH) || path.starts_with(CLIENTS_PATH)
}

enum Action {
    Erase(Subject),
    Export(String),
}

fn path_id(raw: &str, field: &str) -> Result<String, AppError> {
    let id = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| AppError::invalid(field, "the id is not UTF-8"))?;
    if id.is_empty() || id.len() > MAX_ID_LEN || id.chars().any(char::is_control) {
        return Err(AppError::invalid(
            field,
            format!("an id of 1 to {MAX_ID_LEN} bytes without control characters"),
        ));
    }
    Ok(id.into_owned())
}

fn action(method: &Method, path: &str) -> Result<Action, AppError> {
    let not_found = || AppError::NotFound(path.to_string());
    let wrong_method = |allow| AppError::MethodNotAllowed {
        method: method.to_string(),
        allow,
    };
    if let Some(rest) = path.strip_prefix(CLIENTS_PATH) {
        if rest.contains('/') {
            return Err(not_found());
        }
        if method != Method::DELETE {
            return Err(wrong_method("DELETE"));
        }
        return Ok(Action::Erase(Subject::Client(path_id(rest, "client_id")?)));
    }
    let rest = path.strip_prefix(USERS_PATH).ok_or_else(not_found)?;
    match rest.split_once('/') {
        None => {
            if method != Method::DELETE {
                return Err(wrong_method("DELETE"));
            }
            Ok(Action::Erase(Subject::User(path_id(rest, "user_id")?)))
        }
        Some((id, "export")) => {
            if method != Method::GET {
                return Err(wrong_method("GET"));
            }
            Ok(Action::Export(path_id(id, "user_id")?))
        }
        Some(_) => Err(not_found()),
    }
}

/// Answers a privacy request: route, method, site and key are checked before anything is read
/// or erased.
pub async fn handle<S: ModelStore, L: ErasureLog, O: ObjectStore>(
    p: &Privacy<'_, S, L, O>,
    req: &http::Request<Bytes>,
    now_ms: i64,
) -> http::Response<Bytes> {
    match answer(p, req, now_ms).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn answer<S: ModelStore, L: ErasureLog, O: ObjectStore>(
    p: &Privacy<'_, S, L, O>,
    req: &http::Request<Bytes>,
    now_ms: i64,
) -> Result<http::Response<Bytes>, AppError> {
    let action = action(req.method(), req.uri().path())?;
    let site = site_key_param(req.uri().query())?;
    if p.config.site(&site).is_none() {
        return Err(AppError::UnknownSite(site));
    }
    p.keys.authorize(req.headers(), &site)?;
    match action {
        Action::Erase(subject) => {
            let erased = forget(p.store, p.log, &site, &subject, now_ms)
                .await
                .map_err(|e| {
                    tracing::error!(error = ?e, %site, "Erasure failed.");
                    AppError::Unavailable(Box::new(e))
                })?;
            tracing::info!(%site, "Erased a subject.");
            Ok(json_response(
                StatusCode::ACCEPTED,
                &json!({ "erased": erased, "pending": pending(p.raw_log_expiry_days) }),
            ))
        }
        Action::Export(user) => export(p, &site, &user, now_ms)
            .await
            .map(|body| json_response(StatusCode::OK, &body)),
    }
}

async fn export<S: ModelStore, L: ErasureLog, O: ObjectStore>(
    p: &Privacy<'_, S, L, O>,
    site: &str,
    user: &str,
    now_ms: i64,
) -> Result<Value, AppError> {
    // History is version independent: no model is named.
    let state = crate::model_store::user_state(p.store, site, "", 0, user)
        .await
        .map_err(|e| AppError::Unavailable(Box::new(e)))?;
    let erasures = p
        .log
        .erasures(site)
        .await
        .map_err(|e| AppError::Unavailable(Box::new(e)))?;
    let requested = erasure_of(&erasures, &Subject::User(user.to_string()));
    let window = TimeWindow {
        since_ms: now_ms - EXPORT_SERVED_DAYS * DAY_MS,
        until_ms: now_ms + 1,
    };
    let served = served_events(p.events, site, user, window)
        .await
        .map_err(|e| AppError::Unavailable(Box::new(e)))?;
    Ok(json!({
        "user_id": user,
        "site": site,
        "history": state.history,
        "served": served,
        "served_days": EXPORT_SERVED_DAYS,
        "erasure": {
            "requested_ms": requested,
            "state": if requested.is_some() { "requested" } else { "none" },
        },
    }))
}

/// The user's `recommendation_served` events in the raw log of `window`, newest first.
async fn served_events<O: ObjectStore>(
    events: &O,
    site: &str,
    user: &str,
    window: TimeWindow,
) -> Result<Vec<Value>, crate::object_store::StoreError> {
    let keys = list_window(events, site, window, READ_CONCURRENCY).await?;
    // Each file is filtered as it arrives and dropped: memory holds the files in flight and
    // the user's events, never the days' text.
    let mut texts = futures::stream::iter(keys)
        .map(|key: String| async move {
            let body = events.get(&key).await?;
            Ok::<_, crate::object_store::StoreError>(body.map(|b| gunzip_text(&b).text))
        })
        .buffered(READ_CONCURRENCY);
    let mut out: Vec<Value> = Vec::new();
    while let Some(text) = texts.try_next().await? {
        let Some(text) = text else { continue };
        // The id must appear in the line for it to be the user's: skip parsing the others.
        for line in text.lines().filter(|l| l.contains(user)) {
            let Ok(v) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            let ts = v["event_timestamp"].as_i64().unwrap_or(0);
            if v["type"] == "recommendation_served"
                && event_user(&v) == Some(user)
                && ts >= window.since_ms
                && ts < window.until_ms
            {
                out.push(v);
            }
        }
        if out.len() > 2 * EXPORT_SERVED_MAX {
            // A very active user: keep memory bounded to the newest answers.
            newest_first(&mut out);
        }
    }
    newest_first(&mut out);
    Ok(out)
}

/// Sorts served events newest first and keeps [`EXPORT_SERVED_MAX`].
fn newest_first(events: &mut Vec<Value>) {
    events.sort_by_key(|v| std::cmp::Reverse(v["event_timestamp"].as_i64().unwrap_or(0)));
    events.truncate(EXPORT_SERVED_MAX);
}

/// An event's user as training reads it: `user_id`, else `client.id`.
fn event_user(v: &Value) -> Option<&str> {
    v["user_id"]
        .as_str()
        .filter(|u| !u.is_empty())
        .or_else(|| v["client"]["id"].as_str())
}

#[cfg(test)]
mod tests;
