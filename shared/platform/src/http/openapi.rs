//! The OpenAPI 3.1 document of every HTTP route, derived from the code: the answer types'
//! schemas come from the structs the services serialise (`utoipa::ToSchema`), the routes from
//! the `#[utoipa::path]` items below, and each route's error answers from [`ROUTE_ERRORS`]
//! (status → the stable codes of [`AppError::code`](crate::http::error::AppError::code) it
//! can answer). `nectar dev` serves it at [`OPENAPI_PATH`], rendered as HTML at [`DOCS_PATH`];
//! its tests validate every answer they receive against it.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::{json, Value};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::http::answers::{CollectAnswer, UpsertAnswer};
use crate::http::error::{ErrorBody, ErrorDetail, ERROR_CODES};
use crate::recommend::answer::{ModelRef, RecommendAnswer, ScoredItem};
use nectar_model::event::Problem;
use nectar_model::online::metrics::{DailyReport, EndpointReport, Report, VariantReport};

/// Where `nectar dev` serves the document.
pub const OPENAPI_PATH: &str = "/openapi.json";
/// Where `nectar dev` serves the HTML reference.
pub const DOCS_PATH: &str = "/docs";

/// The security scheme of the admin routes (and of key-protected endpoints).
pub const ADMIN_KEY_SCHEME: &str = "admin_key";

/// Each route's error answers: (path, method, [(status, codes)]). The codes are those of
/// `AppError::code`; every error answer has the [`ErrorBody`] shape.
pub const ROUTE_ERRORS: &[(&str, &str, ErrorAnswers)] = &[
    (
        "/v1/collect",
        "post",
        &[
            (
                400,
                &["invalid_payload", "reserved_event_type", "invalid_request"],
            ),
            (403, &["unknown_site", "origin_not_allowed"]),
            (405, &["method_not_allowed"]),
            (408, &["request_timeout"]),
            (413, &["payload_too_large"]),
            (415, &["unsupported_media_type"]),
            (503, &["unavailable"]),
        ],
    ),
    (
        "/v1/collect",
        "options",
        &[
            (400, &["invalid_request"]),
            (403, &["unknown_site", "origin_not_allowed"]),
            (503, &["unavailable"]),
        ],
    ),
    ("/v1/recommend/{endpoint}", "get", RECOMMEND_ERRORS),
    ("/v1/similar/{endpoint}", "get", RECOMMEND_ERRORS),
    ("/v1/session/{endpoint}", "get", RECOMMEND_ERRORS),
    (
        "/v1/items",
        "put",
        &[
            (400, &["invalid_request"]),
            (401, &["unauthorized"]),
            (403, &["unknown_site", "forbidden"]),
            (405, &["method_not_allowed"]),
            (408, &["request_timeout"]),
            (413, &["payload_too_large"]),
            (415, &["unsupported_media_type"]),
            (503, &["unavailable"]),
        ],
    ),
    ("/v1/report", "get", ADMIN_READ_ERRORS),
    ("/v1/users/{user_id}", "delete", ADMIN_READ_ERRORS),
    ("/v1/clients/{client_id}", "delete", ADMIN_READ_ERRORS),
    ("/v1/users/{user_id}/export", "get", ADMIN_READ_ERRORS),
    ("/healthz", "get", GET_ONLY_ERRORS),
    ("/", "get", GET_ONLY_ERRORS),
    (
        "/metrics",
        "get",
        &[
            (400, &["invalid_request"]),
            (404, &["not_found"]),
            (405, &["method_not_allowed"]),
            (503, &["unavailable"]),
        ],
    ),
    ("/openapi.json", "get", GET_ONLY_ERRORS),
    ("/docs", "get", GET_ONLY_ERRORS),
];

/// A route's error answers: (status, the codes it can carry).
pub type ErrorAnswers = &'static [(u16, &'static [&'static str])];

const RECOMMEND_ERRORS: ErrorAnswers = &[
    (400, &["invalid_request"]),
    (401, &["unauthorized"]),
    (403, &["unknown_site", "forbidden"]),
    (404, &["unknown_endpoint"]),
    (405, &["method_not_allowed"]),
    (408, &["request_timeout"]),
    (413, &["payload_too_large"]),
    (503, &["no_model", "unavailable"]),
];

const ADMIN_READ_ERRORS: ErrorAnswers = &[
    (400, &["invalid_request"]),
    (401, &["unauthorized"]),
    (403, &["unknown_site", "forbidden"]),
    (404, &["unknown_endpoint"]),
    (405, &["method_not_allowed"]),
    (408, &["request_timeout"]),
    (413, &["payload_too_large"]),
    (503, &["unavailable"]),
];

/// Routes without a body still refuse a request whose framing is ambiguous (400), and any
/// route answers 503 when the server is over its connection bound.
const GET_ONLY_ERRORS: ErrorAnswers = &[
    (400, &["invalid_request"]),
    (405, &["method_not_allowed"]),
    (503, &["unavailable"]),
];

/// A PEACH Collect Format v1.0.3 payload: the fields the collect validator reads (others are
/// stored as sent).
#[derive(Serialize, ToSchema)]
pub struct PeachPayload {
    /// The format version, e.g. `1.0.3`.
    pub peach_schema_version: String,
    /// When the device sent the batch (ms UTC); the skew against the server clock corrects
    /// event times.
    pub sent_timestamp: i64,
    /// When the session started (ms UTC).
    pub session_start_timestamp: Option<i64>,
    /// The logged-in user.
    pub user_id: Option<String>,
    /// The device and app.
    pub client: PeachClient,
    /// The events (at most the site's `max_events`).
    pub events: Vec<PeachEvent>,
}

/// The `client` of a PEACH payload.
#[derive(Serialize, ToSchema)]
pub struct PeachClient {
    /// Persistent client id (cookie, advertising id).
    pub id: String,
    /// The app's id.
    pub app_id: String,
    /// The app's type (e.g. `mobileapp`, `web`).
    #[serde(rename = "type")]
    pub client_type: Option<String>,
    /// The app's name.
    pub name: Option<String>,
    /// The app's version.
    pub version: Option<String>,
    /// The device.
    pub device: Option<PeachDevice>,
    /// The operating system (stored as sent).
    pub os: Option<HashMap<String, Value>>,
}

/// The `client.device` of a PEACH payload.
#[derive(Serialize, ToSchema)]
pub struct PeachDevice {
    /// One of console, phone, tablet, desktop, hbbtv, tvbox, wearable, embedded.
    #[serde(rename = "type")]
    pub device_type: DeviceType,
}

/// PEACH device types.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum DeviceType {
    Console,
    Phone,
    Tablet,
    Desktop,
    Hbbtv,
    Tvbox,
    Wearable,
    Embedded,
}

/// One event of a PEACH payload.
#[derive(Serialize, ToSchema)]
pub struct PeachEvent {
    /// The event type (`media_play`, `page_view`, `recommendation_hit`, …; unknown types
    /// are stored; `recommendation_served` is refused: `reserved_event_type`).
    #[serde(rename = "type")]
    pub event_type: String,
    /// What the event is about: the media, article or page, or the recommendation
    /// (`recommendation_id`) for `recommendation_*` events.
    pub id: String,
    /// When it happened on the device (ms UTC).
    pub event_timestamp: i64,
    /// Context (for `recommendation_*`: the items, and the clicked one for a hit).
    pub context: Option<HashMap<String, Value>>,
    /// Properties (`rating`: `props.value`).
    pub props: Option<HashMap<String, Value>>,
    /// Item metadata (category, availability) merged into the catalog.
    pub metadata: Option<HashMap<String, Value>>,
}

/// The body of `PUT /v1/items`.
#[derive(Serialize, ToSchema)]
pub struct ItemsUpsert {
    /// The items to insert or update (fields not sent are kept).
    pub items: Vec<ItemUpsertDoc>,
}

/// One item of `PUT /v1/items`.
#[derive(Serialize, ToSchema)]
pub struct ItemUpsertDoc {
    /// The item id (1–256 characters, no control characters).
    pub id: String,
    /// Its category.
    pub category: Option<String>,
    /// Available from (ms UTC, integer or a string holding one).
    #[schema(value_type = Option<Object>)]
    pub available_from: Option<Value>,
    /// Available until, exclusive (ms UTC, integer or a string holding one).
    #[schema(value_type = Option<Object>)]
    pub available_until: Option<Value>,
    /// A display title.
    pub title: Option<String>,
}

/// `GET /healthz`: per endpoint of every site, what it serves.
#[derive(Serialize, ToSchema)]
pub struct HealthAnswer {
    /// `ready` when every endpoint can answer (status 200), else `not_ready` (503).
    pub status: HealthStatus,
    /// Per site.
    pub sites: HashMap<String, SiteHealth>,
}

/// Overall readiness.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum HealthStatus {
    Ready,
    NotReady,
}

/// One site's endpoints.
#[derive(Serialize, ToSchema)]
pub struct SiteHealth {
    /// Per endpoint name.
    pub endpoints: HashMap<String, EndpointHealth>,
}

/// One endpoint's readiness.
#[derive(Serialize, ToSchema)]
pub struct EndpointHealth {
    /// `user`, `similar` or `session`.
    pub kind: String,
    /// Whether every request can get an answer.
    pub ready: bool,
    /// The endpoint's model, when a version is loaded.
    pub model: Option<TaskVersion>,
    /// The fallback list behind it, when loaded.
    pub fallback: Option<TaskVersion>,
    /// Per experiment variant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variants: Option<HashMap<String, VariantHealth>>,
    /// Why it is not ready (the task to train).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A loaded version of a task.
#[derive(Serialize, ToSchema)]
pub struct TaskVersion {
    /// The task.
    pub task: String,
    /// Its version.
    pub version: u64,
    /// Seconds since its training data ended.
    pub age_seconds: Option<i64>,
}

/// One variant's readiness.
#[derive(Serialize, ToSchema)]
pub struct VariantHealth {
    /// Whether it can answer.
    pub ready: bool,
    /// Its model, when loaded.
    pub model: Option<TaskVersion>,
}

/// `GET /`: where things are (each value a route, as text).
#[derive(Serialize, ToSchema)]
pub struct IndexAnswer {
    /// `nectar dev`.
    pub service: String,
    /// The readiness route.
    pub health: String,
    /// The Prometheus route.
    pub metrics: String,
    /// The OpenAPI document's route.
    pub openapi: String,
    /// The HTML reference's route.
    pub docs: String,
    /// The report route.
    pub report: String,
    /// Each API route by name.
    pub routes: HashMap<String, String>,
    /// Per site, its endpoints' example requests.
    pub sites: HashMap<String, IndexSite>,
}

/// A site in the index.
#[derive(Serialize, ToSchema)]
pub struct IndexSite {
    /// Per endpoint name, an example request.
    pub endpoints: HashMap<String, String>,
}

/// What an erasure removed at once (`erased` of `DELETE /v1/users/{user_id}` and
/// `DELETE /v1/clients/{client_id}`).
#[derive(Serialize, ToSchema)]
pub struct Erased {
    /// Items removed from the recent history.
    pub history_items: u64,
    /// Factor vectors removed (one per version of a task that knew the subject).
    pub factors: u64,
    /// Precomputed top lists removed.
    pub top_lists: u64,
    /// The `task:v<version>` versions the subject was removed from.
    pub versions: Vec<String>,
}

/// `DELETE /v1/users/{user_id}` (and `/v1/clients/{client_id}`): accepted; what was removed at
/// once and what follows.
#[derive(Serialize, ToSchema)]
pub struct UserDeleted {
    /// Removed at once.
    pub erased: Erased,
    /// What follows: the next training and compaction skip the subject, the raw log expires.
    pub pending: Vec<String>,
}

/// The erasure state in an export.
#[derive(Serialize, ToSchema)]
pub struct ErasureState {
    /// When erasure was requested (ms UTC), if it was.
    pub requested_ms: Option<i64>,
    /// `none` or `requested`.
    pub state: String,
}

/// `GET /v1/users/{user_id}/export`: what Nectar holds on a user.
#[derive(Serialize, ToSchema)]
pub struct UserExport {
    /// The user.
    pub user_id: String,
    /// The site.
    pub site: String,
    /// The recent history, newest first.
    pub history: Vec<String>,
    /// The user's served recommendations in the raw log of the last `served_days` days, newest
    /// first (flat `recommendation_served` events).
    pub served: Vec<HashMap<String, Value>>,
    /// Days of the raw log read for `served`.
    pub served_days: i64,
    /// The pending erasure state.
    pub erasure: ErasureState,
}

#[utoipa::path(post, path = "/v1/collect", tag = "collect",
    params(("s" = String, Query, description = "Site key")),
    request_body(content = PeachPayload, description = "A PEACH Collect Format v1.0.3 payload \
        (`application/json`, or `text/plain` as `navigator.sendBeacon` sends it; \
        `Content-Encoding: gzip` accepted)", content_type = "application/json"),
    responses(
        (status = 202, description = "Stored (the default)", body = CollectAnswer),
        (status = 201, description = "Stored (sites with `collect_status = 201`)", body = CollectAnswer),
    ))]
#[allow(dead_code)]
fn collect() {}

#[utoipa::path(options, path = "/v1/collect", tag = "collect",
    params(("s" = String, Query, description = "Site key")),
    responses((status = 204, description = "CORS preflight allowed for the request's Origin")))]
#[allow(dead_code)]
fn collect_preflight() {}

#[utoipa::path(get, path = "/v1/recommend/{endpoint}", tag = "recommend",
    params(
        ("endpoint" = String, Path, description = "A `user` endpoint of the site"),
        ("s" = String, Query, description = "Site key"),
        ("user_id" = Option<String>, Query, description = "The logged-in user (this or client_id)"),
        ("client_id" = Option<String>, Query, description = "The client id (this or user_id)"),
        ("n" = Option<u32>, Query, description = "How many items, 1–100 (default 10)"),
        ("exclude" = Option<String>, Query, description = "Item ids to leave out, comma-separated; repeats add up (at most 500)"),
        ("context_item" = Option<String>, Query, description = "The item being viewed"),
        ("explain" = Option<bool>, Query, description = "Add `because` (the user's items behind each)"),
    ),
    responses((status = 200, description = "Recommendations", body = RecommendAnswer)),
    security((), ("admin_key" = [])))]
#[allow(dead_code)]
fn recommend() {}

#[utoipa::path(get, path = "/v1/similar/{endpoint}", tag = "recommend",
    params(
        ("endpoint" = String, Path, description = "A `similar` endpoint of the site"),
        ("s" = String, Query, description = "Site key"),
        ("item_id" = String, Query, description = "The item to find similar ones for"),
        ("user_id" = Option<String>, Query, description = "The logged-in user (experiment assignment, served log)"),
        ("client_id" = Option<String>, Query, description = "The client id"),
        ("n" = Option<u32>, Query, description = "How many items, 1–100 (default 10)"),
        ("exclude" = Option<String>, Query, description = "Item ids to leave out, comma-separated; repeats add up (at most 500)"),
        ("context_item" = Option<String>, Query, description = "The item being viewed"),
        ("explain" = Option<bool>, Query, description = "Add `because` to each item"),
    ),
    responses((status = 200, description = "Similar items", body = RecommendAnswer)),
    security((), ("admin_key" = [])))]
#[allow(dead_code)]
fn similar() {}

#[utoipa::path(get, path = "/v1/session/{endpoint}", tag = "recommend",
    params(
        ("endpoint" = String, Path, description = "A `session` endpoint of the site"),
        ("s" = String, Query, description = "Site key"),
        ("items" = String, Query, description = "The session's items so far, comma-separated, oldest first"),
        ("user_id" = Option<String>, Query, description = "The logged-in user"),
        ("client_id" = Option<String>, Query, description = "The client id"),
        ("n" = Option<u32>, Query, description = "How many items, 1–100 (default 10)"),
        ("exclude" = Option<String>, Query, description = "Item ids to leave out, comma-separated"),
        ("explain" = Option<bool>, Query, description = "Add `because` (the session items behind each)"),
    ),
    responses((status = 200, description = "Next items for the session", body = RecommendAnswer)),
    security((), ("admin_key" = [])))]
#[allow(dead_code)]
fn session() {}

#[utoipa::path(put, path = "/v1/items", tag = "admin",
    params(("s" = String, Query, description = "Site key")),
    request_body(content = ItemsUpsert, description = "Items to upsert (gzip accepted, 5 MiB)",
        content_type = "application/json"),
    responses((status = 200, description = "Upserted", body = UpsertAnswer)),
    security(("admin_key" = [])))]
#[allow(dead_code)]
fn items() {}

#[utoipa::path(get, path = "/v1/report", tag = "admin",
    params(
        ("s" = String, Query, description = "Site key"),
        ("format" = Option<String>, Query, description = "json (default), html or md"),
        ("endpoint" = Option<String>, Query, description = "Only this endpoint"),
        ("since" = Option<String>, Query, description = "Start: YYYY-MM-DD (UTC) or RFC 3339 (default: until − 7 days)"),
        ("until" = Option<String>, Query, description = "End, exclusive (default: now)"),
    ),
    responses((status = 200, description = "The online report", content(
        (Report = "application/json"),
        (String = "text/html"),
        (String = "text/markdown"),
    ))),
    security(("admin_key" = [])))]
#[allow(dead_code)]
fn report() {}

#[utoipa::path(delete, path = "/v1/users/{user_id}", tag = "admin",
    params(
        ("user_id" = String, Path, description = "The user to erase"),
        ("s" = String, Query, description = "Site key"),
    ),
    responses((status = 202, description = "Erased at once; training and compaction follow", body = UserDeleted)),
    security(("admin_key" = [])))]
#[allow(dead_code)]
fn user_delete() {}

#[utoipa::path(delete, path = "/v1/clients/{client_id}", tag = "admin",
    params(
        ("client_id" = String, Path, description = "The client (device) to erase"),
        ("s" = String, Query, description = "Site key"),
    ),
    responses((status = 202, description = "Erased at once; training and compaction follow", body = UserDeleted)),
    security(("admin_key" = [])))]
#[allow(dead_code)]
fn client_delete() {}

#[utoipa::path(get, path = "/v1/users/{user_id}/export", tag = "admin",
    params(
        ("user_id" = String, Path, description = "The user"),
        ("s" = String, Query, description = "Site key"),
    ),
    responses((status = 200, description = "Everything kept about the user", body = UserExport)),
    security(("admin_key" = [])))]
#[allow(dead_code)]
fn user_export() {}

#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses(
        (status = 200, description = "Every endpoint can answer", body = HealthAnswer),
        (status = 503, description = "Some endpoint cannot answer yet (`reason` says which task to train)", body = HealthAnswer),
    ))]
#[allow(dead_code)]
fn health() {}

#[utoipa::path(get, path = "/", tag = "operations",
    responses((status = 200, description = "Where things are: routes and each site's endpoints",
        body = IndexAnswer)))]
#[allow(dead_code)]
fn index() {}

#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Every metric, Prometheus text format 0.0.4",
        body = String, content_type = "text/plain")))]
#[allow(dead_code)]
fn metrics() {}

#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "This document", body = Object)))]
#[allow(dead_code)]
fn openapi() {}

#[utoipa::path(get, path = "/docs", tag = "operations",
    responses((status = 200, description = "This document as a self-contained HTML page",
        body = String, content_type = "text/html")))]
#[allow(dead_code)]
fn docs() {}

struct AdminKey;

impl Modify for AdminKey {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            ADMIN_KEY_SCHEME,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An admin key of the site (`nectar key create --site SITE`)",
                    ))
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Nectar", description = "Recommendations for broadcasters: the collect API \
        (EBU PEACH format), the recommendation endpoints, admin and operations routes."),
    paths(collect, collect_preflight, recommend, similar, session, items, report,
        user_delete, client_delete, user_export, health, index, metrics, openapi, docs),
    components(schemas(ErrorBody, ErrorDetail, Problem, RecommendAnswer, ModelRef, ScoredItem,
        CollectAnswer, UpsertAnswer, PeachPayload, PeachClient, PeachDevice, DeviceType,
        PeachEvent, ItemsUpsert, ItemUpsertDoc, HealthAnswer, HealthStatus, SiteHealth,
        EndpointHealth, TaskVersion, VariantHealth, IndexAnswer, IndexSite, Erased, UserDeleted, ErasureState, UserExport, Report,
        EndpointReport, VariantReport, DailyReport)),
    modifiers(&AdminKey),
)]
struct Doc;

/// The whole document as JSON: the derived paths and schemas, plus each route's error
/// answers from [`ROUTE_ERRORS`] and the enumeration of error codes.
pub fn document() -> Value {
    let mut doc = serde_json::to_value(Doc::openapi()).expect("the document serialises");
    doc["components"]["schemas"]["ErrorDetail"]["properties"]["code"]["enum"] = json!(ERROR_CODES);
    for (path, method, errors) in ROUTE_ERRORS {
        let Some(op) = doc["paths"][*path].get_mut(*method) else {
            // A table row without its route is caught by the tests.
            continue;
        };
        for (status, codes) in *errors {
            let codes = codes
                .iter()
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(", ");
            let error = json!({"$ref": "#/components/schemas/ErrorBody"});
            let answer = &mut op["responses"][status.to_string()];
            if answer.is_object() {
                // The route's own answer with this status (the readiness 503): either body.
                let own = answer["content"]["application/json"]["schema"].take();
                answer["content"]["application/json"]["schema"] = json!({"anyOf": [own, error]});
                let d = format!(
                    "{}; or an error ({codes})",
                    answer["description"].as_str().unwrap_or("")
                );
                answer["description"] = json!(d);
            } else {
                *answer = json!({
                    "description": format!("{} ({codes})", reason(*status)),
                    "content": {"application/json": {"schema": error}},
                });
            }
        }
    }
    doc
}

fn reason(status: u16) -> &'static str {
    http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error")
}

/// The document's path template that `path` matches (`/v1/recommend/for-you` →
/// `/v1/recommend/{endpoint}`), if any.
pub fn path_template<'a>(doc: &'a Value, path: &str) -> Option<&'a str> {
    let paths = doc["paths"].as_object()?;
    let want: Vec<&str> = path.split('/').collect();
    paths.keys().map(String::as_str).find(|t| {
        let segs: Vec<&str> = t.split('/').collect();
        segs.len() == want.len()
            && segs
                .iter()
                .zip(&want)
                .all(|(s, w)| (s.starts_with('{') && !w.is_empty()) || s == w)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_openapi_3_1_with_every_route_and_its_errors() {
        // GIVEN the document
        let doc = document();
        // THEN it is OpenAPI 3.1
        assert!(
            doc["openapi"].as_str().unwrap().starts_with("3.1"),
            "{}",
            doc["openapi"]
        );
        // AND every row of the error table names a documented operation, whose error answers
        // are the error body
        for (path, method, errors) in ROUTE_ERRORS {
            let op = &doc["paths"][*path][*method];
            assert!(op.is_object(), "{method} {path} is not in the document");
            for (status, codes) in *errors {
                let r = &op["responses"][status.to_string()];
                let schema = &r["content"]["application/json"]["schema"];
                let error = "#/components/schemas/ErrorBody";
                assert!(
                    schema["$ref"] == error || schema["anyOf"][1]["$ref"] == error,
                    "{method} {path} {status}"
                );
                for c in *codes {
                    assert!(ERROR_CODES.contains(c), "{c}");
                    assert!(r["description"].as_str().unwrap().contains(c));
                }
            }
        }
        // AND every operation has a success answer and an error table row
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let ok = op["responses"]
                    .as_object()
                    .unwrap()
                    .keys()
                    .any(|s| s.starts_with('2'));
                assert!(ok, "{method} {path} has no success answer");
                assert!(
                    ROUTE_ERRORS
                        .iter()
                        .any(|(p, m, _)| p == path && m == method),
                    "{method} {path} has no row in ROUTE_ERRORS"
                );
            }
        }
        // AND the error codes are enumerated, the admin key is a bearer scheme
        assert_eq!(
            doc["components"]["schemas"]["ErrorDetail"]["properties"]["code"]["enum"]
                .as_array()
                .unwrap()
                .len(),
            ERROR_CODES.len()
        );
        assert_eq!(
            doc["components"]["securitySchemes"][ADMIN_KEY_SCHEME]["scheme"],
            "bearer"
        );
        assert!(doc["paths"]["/v1/items"]["put"]["security"][0][ADMIN_KEY_SCHEME].is_array());
    }

    #[test]
    fn paths_match_their_templates() {
        let doc = document();
        assert_eq!(
            path_template(&doc, "/v1/recommend/for-you"),
            Some("/v1/recommend/{endpoint}")
        );
        assert_eq!(
            path_template(&doc, "/v1/users/u1/export"),
            Some("/v1/users/{user_id}/export")
        );
        assert_eq!(
            path_template(&doc, "/v1/users/u1"),
            Some("/v1/users/{user_id}")
        );
        assert_eq!(path_template(&doc, "/"), Some("/"));
        assert_eq!(path_template(&doc, "/v1/recommend/"), None);
        assert_eq!(path_template(&doc, "/nope"), None);
    }
}
