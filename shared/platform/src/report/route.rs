//! `GET /v1/report?s=SITE[&format=html|json|md][&endpoint=E][&since=T][&until=T]`: the online
//! report of a site over its event log, under the site's admin key (`Authorization: Bearer`).
//! `since`/`until` are `YYYY-MM-DD` (UTC midnight) or RFC 3339; by default the 7 days before
//! now. Served by `nectar dev`; in AWS the scheduled task writes the same report to the bucket.

use bytes::Bytes;
use chrono::{DateTime, NaiveDate};
use http::{Method, StatusCode};

use super::{build_report, render, Format, ReportError, ReportRequest, DAY_MS};
use crate::auth::AdminKeys;
use crate::catalog::Catalog;
use crate::config::NectarConfig;
use crate::http::error::AppError;
use crate::http::request::{query_param, site_key_param};
use crate::object_store::ObjectStore;

/// The report route.
pub const REPORT_PATH: &str = "/v1/report";

/// Days a report covers unless `since` says otherwise.
const DEFAULT_DAYS: i64 = 7;

fn time_param(q: Option<&str>, name: &str) -> Result<Option<i64>, AppError> {
    let Some(v) = query_param(q, name)? else {
        return Ok(None);
    };
    if let Ok(d) = NaiveDate::parse_from_str(&v, "%Y-%m-%d") {
        let t = d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc();
        return Ok(Some(t.timestamp_millis()));
    }
    DateTime::parse_from_rfc3339(&v)
        .map(|t| Some(t.timestamp_millis()))
        .map_err(|_| AppError::invalid(name, "a date YYYY-MM-DD (UTC) or an RFC 3339 time"))
}

fn to_app_error(e: ReportError) -> AppError {
    match e {
        ReportError::UnknownSite(s) => AppError::UnknownSite(s),
        ReportError::UnknownEndpoint { endpoint, .. } => AppError::UnknownEndpoint(endpoint),
        e @ ReportError::EmptyRange { .. } => AppError::invalid("since", e.to_string()),
        e @ ReportError::NotScheduled(_) => AppError::invalid("s", e.to_string()),
        ReportError::Store(e) => AppError::Unavailable(Box::new(e)),
    }
}

/// Answers a report request: checks method, site and key before reading any event.
pub async fn handle<O: ObjectStore>(
    store: &O,
    catalog: Option<&Catalog>,
    config: &NectarConfig,
    keys: &AdminKeys,
    req: &http::Request<Bytes>,
    now_ms: i64,
) -> http::Response<Bytes> {
    match answer(store, catalog, config, keys, req, now_ms).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn answer<O: ObjectStore>(
    store: &O,
    catalog: Option<&Catalog>,
    config: &NectarConfig,
    keys: &AdminKeys,
    req: &http::Request<Bytes>,
    now_ms: i64,
) -> Result<http::Response<Bytes>, AppError> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Err(AppError::MethodNotAllowed {
            method: req.method().to_string(),
            allow: "GET, HEAD",
        });
    }
    let q = req.uri().query();
    let site = site_key_param(q)?;
    if config.site(&site).is_none() {
        return Err(AppError::UnknownSite(site));
    }
    keys.authorize(req.headers(), &site)?;
    let format = match query_param(q, "format")? {
        None => Format::Json,
        Some(f) => {
            Format::parse(&f).ok_or_else(|| AppError::invalid("format", "one of json, html, md"))?
        }
    };
    let until_ms = time_param(q, "until")?.unwrap_or(now_ms);
    let since_ms = time_param(q, "since")?.unwrap_or(until_ms - DEFAULT_DAYS * DAY_MS);
    let report_req = ReportRequest {
        site,
        endpoint: query_param(q, "endpoint")?.map(|e| e.into_owned()),
        since_ms,
        until_ms,
    };
    let report = build_report(store, catalog, config, &report_req)
        .await
        .map_err(to_app_error)?;
    let content_type = match format {
        Format::Json => "application/json",
        Format::Markdown => "text/markdown; charset=utf-8",
        Format::Html => "text/html; charset=utf-8",
    };
    let mut resp = http::Response::new(Bytes::from(render(&report, format)));
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    resp.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object_store::LocalStore;

    fn get(uri: &str, key: Option<&str>) -> http::Request<Bytes> {
        let mut b = http::Request::get(uri);
        if let Some(k) = key {
            b = b.header("authorization", format!("Bearer {k}"));
        }
        b.body(Bytes::new()).unwrap()
    }

    #[tokio::test]
    async fn the_key_is_checked_before_the_log_is_read_and_errors_name_the_field() {
        let dir = std::env::temp_dir().join(format!("nectar-report-route-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let store = LocalStore::new(&dir);
        let config = NectarConfig::embedded_default();
        let mut keys = AdminKeys::none();
        let key = crate::auth::new_key();
        keys.add(&key, "demo");
        let call = |uri: &'static str, key: Option<String>| {
            let (store, config, keys) = (&store, &config, &keys);
            async move {
                let r = handle(store, None, config, keys, &get(uri, key.as_deref()), 0).await;
                let body: serde_json::Value =
                    serde_json::from_slice(r.body()).unwrap_or(serde_json::Value::Null);
                (r.status().as_u16(), body)
            }
        };
        // no key: 401; unknown site: 403 unknown_site; bad format and since: 400 naming the field
        assert_eq!(call("/v1/report?s=demo", None).await.0, 401);
        let (s, b) = call("/v1/report?s=nope", Some(key.clone())).await;
        assert_eq!(
            (s, b["error"]["code"].as_str()),
            (403, Some("unknown_site"))
        );
        let (s, b) = call("/v1/report?s=demo&format=pdf", Some(key.clone())).await;
        assert_eq!(s, 400);
        assert!(
            b["error"]["message"].as_str().unwrap().contains("format"),
            "{b}"
        );
        let (s, b) = call("/v1/report?s=demo&since=yesterday", Some(key.clone())).await;
        assert_eq!(s, 400);
        assert!(
            b["error"]["message"].as_str().unwrap().contains("since"),
            "{b}"
        );
        let (s, b) = call(
            "/v1/report?s=demo&since=2026-01-02&until=2026-01-01",
            Some(key.clone()),
        )
        .await;
        assert_eq!(s, 400, "{b}");
        // an empty log: a report with the site and no served answers
        let (s, b) = call(
            "/v1/report?s=demo&since=2026-01-01&until=2026-01-08",
            Some(key),
        )
        .await;
        assert_eq!(s, 200, "{b}");
        assert_eq!(b["site"], "demo");
        assert_eq!(b["orphan_hits"], 0);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
