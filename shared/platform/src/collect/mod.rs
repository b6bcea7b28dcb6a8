//! The collect service: `POST /v1/collect?s=SITE` and its CORS preflight.

#[cfg(feature = "kinesis")]
pub mod kinesis;
pub mod local_socket;
pub mod log_stream;
pub mod sink;

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode};
use nectar_model::event::{accept_site_payload, CollectLimits};
use nectar_model::mapping::EventWeights;

use crate::collect::sink::{EventSink, SinkError};
use crate::config::{NectarConfig, SiteConfig};
use crate::http::error::AppError;
use crate::http::request::{decode_body, header, site_key_param};
use crate::http::response::json_response;
use crate::observe::names::{self, dim};
use crate::observe::request_log::{self, RequestLine};

/// The collect route.
pub const COLLECT_PATH: &str = "/v1/collect";

/// The collect service over an event sink.
#[derive(Debug)]
pub struct CollectService<S> {
    config: Arc<NectarConfig>,
    limits: CollectLimits,
    /// Each site's event weights, resolved once: a `"value"` rule makes `props.value` required.
    weights: HashMap<String, EventWeights>,
    sink: S,
}

impl<S: EventSink> CollectService<S> {
    /// A service over a config and a sink.
    pub fn new(config: Arc<NectarConfig>, sink: S) -> Self {
        let limits = config.collect_limits();
        let weights = config.site_weights();
        Self {
            config,
            limits,
            weights,
            sink,
        }
    }

    /// Where accepted batches go (tests read a memory sink back through it).
    pub fn sink(&self) -> &S {
        &self.sink
    }

    /// Answers one HTTP request for `/v1/collect`; `now_ms` is the collect timestamp.
    pub async fn handle(&self, req: &http::Request<Bytes>, now_ms: i64) -> http::Response<Bytes> {
        let started = std::time::Instant::now();
        let origin = header(req.headers(), http::header::ORIGIN).map(str::to_string);
        let site = site_key_param(req.uri().query())
            .ok()
            .and_then(|k| self.config.site(&k).cloned());
        let result = if req.uri().path() != COLLECT_PATH {
            Err(AppError::NotFound(req.uri().path().to_string()))
        } else if req.method() == Method::OPTIONS {
            self.preflight(req, origin.as_deref())
        } else if req.method() == Method::POST {
            self.collect(req, origin.as_deref(), now_ms).await
        } else {
            Err(AppError::MethodNotAllowed {
                method: req.method().to_string(),
                allow: "POST, OPTIONS",
            })
        };
        let site_label = match &site {
            Some(_) => site_key_param(req.uri().query()).unwrap_or_default(),
            None => dim::UNKNOWN_SITE.to_string(),
        };
        if let Err(e) = &result {
            if e.status().is_client_error() {
                metrics::counter!(names::COLLECT_PAYLOADS_REJECTED,
                    dim::SITE => site_label.clone(), dim::CODE => e.code())
                .increment(1);
            }
        }
        let mut resp = result.unwrap_or_else(AppError::into_response);
        let latency_ms = started.elapsed().as_secs_f64() * 1e3;
        metrics::histogram!(names::COLLECT_REQUEST_MS, dim::SITE => site_label.clone())
            .record(latency_ms);
        let mut line = RequestLine::new(COLLECT_PATH, resp.status().as_u16(), latency_ms);
        line.site = site.is_some().then_some(site_label.as_str());
        request_log::maybe_log(self.config.observability.request_log_rate, &line);
        // Browsers only read answers (errors included) that carry the CORS header.
        if let (Some(origin), Some(site)) = (origin.as_deref(), site.as_ref()) {
            if site.allows_origin(origin) {
                add_cors(&mut resp, origin);
            }
        }
        resp
    }

    fn site(&self, req: &http::Request<Bytes>) -> Result<(String, &SiteConfig), AppError> {
        let key = site_key_param(req.uri().query())?;
        let site = self
            .config
            .site(&key)
            .ok_or_else(|| AppError::UnknownSite(key.clone()))?;
        Ok((key, site))
    }

    fn preflight(
        &self,
        req: &http::Request<Bytes>,
        origin: Option<&str>,
    ) -> Result<http::Response<Bytes>, AppError> {
        let (_, site) = self.site(req)?;
        let origin = origin.ok_or_else(|| {
            AppError::invalid("Origin", "a CORS preflight needs an Origin header")
        })?;
        if !site.allows_origin(origin) {
            return Err(AppError::OriginNotAllowed(origin.to_string()));
        }
        let mut resp = http::Response::new(Bytes::new());
        *resp.status_mut() = StatusCode::NO_CONTENT;
        let h = resp.headers_mut();
        h.insert(
            "access-control-allow-methods",
            HeaderValue::from_static("POST, OPTIONS"),
        );
        h.insert(
            "access-control-allow-headers",
            HeaderValue::from_static("content-type, content-encoding"),
        );
        h.insert("access-control-max-age", HeaderValue::from_static("86400"));
        Ok(resp)
    }

    async fn collect(
        &self,
        req: &http::Request<Bytes>,
        origin: Option<&str>,
        now_ms: i64,
    ) -> Result<http::Response<Bytes>, AppError> {
        let (site_key, site) = self.site(req)?;
        if let Some(origin) = origin {
            if !site.allows_origin(origin) {
                return Err(AppError::OriginNotAllowed(origin.to_string()));
            }
        }
        check_content_type(req.headers())?;
        let body = decode_body(req.headers(), req.body(), self.limits.max_body_bytes)?;
        let no_rules = EventWeights::empty();
        let weights = self.weights.get(&site_key).unwrap_or(&no_rules);
        let accepted = accept_site_payload(&body, &site_key, now_ms, &self.limits, weights)
            .map_err(AppError::InvalidPayload)?;
        let n = accepted.events.len();
        self.sink.put(&accepted).await.map_err(|e| {
            match &e {
                SinkError::Incomplete { .. } => tracing::warn!(site = %site_key, events = n, error = %e, "Events not stored; client asked to retry."),
                _ => tracing::error!(site = %site_key, events = n, error = ?e, "Events not stored; client asked to retry."),
            }
            AppError::Unavailable(Box::new(e))
        })?;
        metrics::counter!(names::COLLECT_EVENTS_ACCEPTED, dim::SITE => site_key.clone())
            .increment(n as u64);
        tracing::debug!(site = %site_key, events = n, "Collected events.");
        Ok(json_response(
            site.collect_status(),
            &crate::http::answers::to_json(&crate::http::answers::CollectAnswer { accepted: n }),
        ))
    }
}

/// JSON as `application/json`, or as `text/plain` the way `navigator.sendBeacon` sends a string.
fn check_content_type(headers: &http::HeaderMap) -> Result<(), AppError> {
    let ct = header(headers, http::header::CONTENT_TYPE).ok_or_else(|| {
        AppError::UnsupportedMediaType(
            "Content-Type is required: application/json or text/plain".into(),
        )
    })?;
    let mime = ct.split(';').next().unwrap_or("").trim();
    if mime.eq_ignore_ascii_case("application/json") || mime.eq_ignore_ascii_case("text/plain") {
        Ok(())
    } else {
        Err(AppError::UnsupportedMediaType(format!(
            "Content-Type {mime:?} is not supported: use application/json or text/plain"
        )))
    }
}

fn add_cors(resp: &mut http::Response<Bytes>, origin: &str) {
    if let Ok(v) = HeaderValue::from_str(origin) {
        resp.headers_mut().insert("access-control-allow-origin", v);
        resp.headers_mut()
            .append(http::header::VARY, HeaderValue::from_static("Origin"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nectar_model::event::Accepted;
    use serde_json::json;
    use std::sync::Mutex;

    /// GIVEN-style in-memory sink for handler tests.
    #[derive(Default)]
    struct MemorySink {
        batches: Mutex<Vec<Accepted>>,
        fail: bool,
    }

    impl EventSink for MemorySink {
        async fn put(&self, batch: &Accepted) -> Result<(), SinkError> {
            if self.fail {
                return Err(SinkError::Incomplete {
                    failed: 1,
                    total: 1,
                    last: None,
                });
            }
            self.batches.lock().unwrap().push(batch.clone());
            Ok(())
        }
    }

    const NOW: i64 = 1_763_000_000_000;

    fn config() -> Arc<NectarConfig> {
        Arc::new(
            NectarConfig::from_toml(
                "[sites.demo]\nallowed_origins = [\"https://www.example.ch\"]\n[sites.open]\nallowed_origins = [\"*\"]\n",
                "test",
            )
            .unwrap(),
        )
    }

    fn body() -> String {
        json!({
            "peach_schema_version": "1.0.3", "sent_timestamp": NOW,
            "client": {"id": "c1", "app_id": "a", "device": {"type": "desktop"}},
            "events": [{"type": "page_view", "id": "p1", "event_timestamp": NOW - 10}]
        })
        .to_string()
    }

    fn req(
        method: &str,
        uri: &str,
        ct: Option<&str>,
        body: impl Into<Bytes>,
    ) -> http::Request<Bytes> {
        let mut b = http::Request::builder().method(method).uri(uri);
        if let Some(ct) = ct {
            b = b.header("content-type", ct);
        }
        b.body(body.into()).unwrap()
    }

    async fn call(
        svc: &CollectService<MemorySink>,
        r: http::Request<Bytes>,
    ) -> (u16, serde_json::Value) {
        let resp = svc.handle(&r, NOW).await;
        let v = if resp.body().is_empty() {
            json!(null)
        } else {
            serde_json::from_slice(resp.body()).unwrap()
        };
        (resp.status().as_u16(), v)
    }

    #[tokio::test]
    async fn accepted_payload_answers_202_and_reaches_the_sink() {
        let svc = CollectService::new(config(), MemorySink::default());
        let (status, v) = call(
            &svc,
            req(
                "POST",
                "/v1/collect?s=demo",
                Some("application/json"),
                body(),
            ),
        )
        .await;
        assert_eq!((status, v), (202, json!({"accepted": 1})));
        // sendBeacon's text/plain is JSON too
        let (status, _) = call(
            &svc,
            req(
                "POST",
                "/v1/collect?s=demo",
                Some("text/plain;charset=UTF-8"),
                body(),
            ),
        )
        .await;
        assert_eq!(status, 202);
        assert_eq!(svc.sink.batches.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn gzip_bodies_are_accepted() {
        use flate2::{write::GzEncoder, Compression};
        use std::io::Write;
        let svc = CollectService::new(config(), MemorySink::default());
        let mut enc = GzEncoder::new(Vec::new(), Compression::default());
        enc.write_all(body().as_bytes()).unwrap();
        let mut r = req(
            "POST",
            "/v1/collect?s=demo",
            Some("application/json"),
            enc.finish().unwrap(),
        );
        r.headers_mut()
            .insert("content-encoding", HeaderValue::from_static("gzip"));
        assert_eq!(call(&svc, r).await.0, 202);
    }

    #[tokio::test]
    async fn client_mistakes_get_structured_errors_and_store_nothing() {
        let svc = CollectService::new(config(), MemorySink::default());
        let json = Some("application/json");
        let cases = vec![
            (
                req("POST", "/v1/collect?s=nope", json, body()),
                403,
                "unknown_site",
            ),
            (
                req("POST", "/v1/collect", json, body()),
                400,
                "invalid_request",
            ),
            (
                req("POST", "/v1/collect?s=Bad%20Key", json, body()),
                400,
                "invalid_request",
            ),
            (
                req(
                    "POST",
                    "/v1/collect?s=demo",
                    Some("application/xml"),
                    body(),
                ),
                415,
                "unsupported_media_type",
            ),
            (
                req("POST", "/v1/collect?s=demo", None, body()),
                415,
                "unsupported_media_type",
            ),
            (
                req(
                    "POST",
                    "/v1/collect?s=demo",
                    json,
                    vec![b' '; (1 << 20) + 1],
                ),
                413,
                "payload_too_large",
            ),
            (
                req("POST", "/v1/collect?s=demo", json, "{not json"),
                400,
                "invalid_payload",
            ),
            (
                req("GET", "/v1/collect?s=demo", None, ""),
                405,
                "method_not_allowed",
            ),
            (
                req("DELETE", "/v1/collect?s=demo", None, ""),
                405,
                "method_not_allowed",
            ),
            (
                req("POST", "/v1/elsewhere?s=demo", json, body()),
                404,
                "not_found",
            ),
        ];
        for (r, status, code) in cases {
            let label = format!("{} {}", r.method(), r.uri());
            let (s, v) = call(&svc, r).await;
            assert_eq!(
                (s, v["error"]["code"].as_str().unwrap()),
                (status, code),
                "{label}: {v}"
            );
            assert!(v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()));
        }
        let mut bad: serde_json::Value = serde_json::from_str(&body()).unwrap();
        bad["events"][0]["event_timestamp"] = json!("yesterday");
        let (s, v) = call(
            &svc,
            req("POST", "/v1/collect?s=demo", json, bad.to_string()),
        )
        .await;
        assert_eq!(s, 400);
        assert_eq!(
            v["error"]["details"][0]["path"],
            "events[0].event_timestamp"
        );
        assert!(svc.sink.batches.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn strict_input_is_refused_naming_the_path() {
        let svc = CollectService::new(config(), MemorySink::default());
        let json = Some("application/json");
        // GIVEN the issue's inputs spliced into an otherwise valid payload
        let base = body();
        let cases = [
            (
                base.replace(
                    r#""type":"page_view""#,
                    r#""type":"page_view","props":{"x":1e400}"#,
                ),
                "events[0].props.x",
                "out of range",
            ),
            (
                base.replace(
                    r#""type":"page_view""#,
                    r#""type":"page_view","context":{"x":-1e400}"#,
                ),
                "events[0].context.x",
                "out of range",
            ),
            (
                base.replace(r#""id":"c1""#, r#""id":"c1\u0000""#),
                "client.id",
                "control characters",
            ),
            (
                base.replace(r#""id":"p1""#, r#""id":"p\u001b1""#),
                "events[0].id",
                "control characters",
            ),
            (
                base.replace(r#""id":"p1""#, r#""id":"\ud800""#),
                "events[0].id",
                "lone UTF-16 surrogate",
            ),
            (
                // the site's weights say rating = "value" (the default): a rating needs one
                base.replace(
                    r#""type":"page_view""#,
                    r#""type":"rating","props":{"value":"great"}"#,
                ),
                "events[0].props.value",
                "finite number",
            ),
            (
                base.replace(r#""type":"page_view""#, r#""type":"rating""#),
                "events[0].props.value",
                "required",
            ),
            (
                base.replace(
                    r#""type":"page_view""#,
                    r#""type":"page_view","metadata":{"available_from":"next week"}"#,
                ),
                "events[0].metadata.available_from",
                "timestamp",
            ),
        ];
        for (text, path, says) in cases {
            assert_ne!(text, base, "{path}: the splice must change the body");
            // WHEN posted THEN 400 invalid_payload names the path and says what is wrong
            let (s, v) = call(&svc, req("POST", "/v1/collect?s=demo", json, text)).await;
            assert_eq!(
                (s, v["error"]["code"].as_str()),
                (400, Some("invalid_payload")),
                "{v}"
            );
            assert_eq!(v["error"]["details"][0]["path"], path, "{v}");
            let problem = v["error"]["details"][0]["problem"].as_str().unwrap();
            assert!(problem.contains(says), "{path}: {problem}");
        }
        // and nothing was stored
        assert!(svc.sink.batches.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_client_cannot_send_served_events() {
        // GIVEN a payload whose event claims to be a served recommendation, even with
        // the served marker spliced in
        let svc = CollectService::new(config(), MemorySink::default());
        let text = body().replace(
            r#""type":"page_view""#,
            r#""type":"recommendation_served","nectar_served":true"#,
        );
        assert_ne!(text, body());
        // WHEN posted
        let (s, v) = call(
            &svc,
            req("POST", "/v1/collect?s=demo", Some("application/json"), text),
        )
        .await;
        // THEN 400 reserved_event_type names the event's type, and nothing is stored
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (400, Some("reserved_event_type")),
            "{v}"
        );
        assert_eq!(v["error"]["details"][0]["path"], "events[0].type", "{v}");
        assert!(svc.sink.batches.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn gzip_with_trailing_garbage_is_an_invalid_request_and_multi_member_gzip_is_fine() {
        use flate2::{write::GzEncoder, Compression};
        use std::io::Write;
        let gz = |data: &[u8]| {
            let mut enc = GzEncoder::new(Vec::new(), Compression::default());
            enc.write_all(data).unwrap();
            enc.finish().unwrap()
        };
        let gzip_req = |bytes: Vec<u8>| {
            let mut r = req(
                "POST",
                "/v1/collect?s=demo",
                Some("application/json"),
                bytes,
            );
            r.headers_mut()
                .insert("content-encoding", HeaderValue::from_static("gzip"));
            r
        };
        let svc = CollectService::new(config(), MemorySink::default());
        // GIVEN gzip + "garbage" WHEN posted THEN 400 invalid_request on the body
        let garbage = [gz(body().as_bytes()), b"garbage".to_vec()].concat();
        let (s, v) = call(&svc, gzip_req(garbage)).await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (400, Some("invalid_request")),
            "{v}"
        );
        assert_eq!(v["error"]["details"][0]["path"], "body");
        assert!(svc.sink.batches.lock().unwrap().is_empty());
        // GIVEN the payload split over two gzip members THEN it is one body, accepted whole
        let text = body();
        let (a, b) = text.split_at(text.len() / 2);
        let (s, v) = call(
            &svc,
            gzip_req([gz(a.as_bytes()), gz(b.as_bytes())].concat()),
        )
        .await;
        assert_eq!((s, v), (202, json!({"accepted": 1})));
    }

    #[tokio::test]
    async fn a_site_may_answer_201_for_the_peach_sdks() {
        // GIVEN a site that declares collect_status = 201 beside one that keeps the default
        let config = Arc::new(
            NectarConfig::from_toml(
                "[sites.peach]\ncollect_status = 201\n[sites.plain]\n",
                "test",
            )
            .unwrap(),
        );
        let svc = CollectService::new(config, MemorySink::default());
        let post = |site: &str| {
            req(
                "POST",
                &format!("/v1/collect?s={site}"),
                Some("application/json"),
                body(),
            )
        };
        // WHEN each posts an accepted batch THEN the first answers 201, the second 202
        assert_eq!(
            call(&svc, post("peach")).await,
            (201, json!({"accepted": 1}))
        );
        assert_eq!(
            call(&svc, post("plain")).await,
            (202, json!({"accepted": 1}))
        );
        // and errors keep their own status
        let mut bad: serde_json::Value = serde_json::from_str(&body()).unwrap();
        bad["events"] = json!([]);
        let r = req(
            "POST",
            "/v1/collect?s=peach",
            Some("application/json"),
            bad.to_string(),
        );
        assert_eq!(call(&svc, r).await.0, 400);
        assert_eq!(svc.sink.batches.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn sink_failure_is_a_retryable_503() {
        let svc = CollectService::new(
            config(),
            MemorySink {
                fail: true,
                ..Default::default()
            },
        );
        let (s, v) = call(
            &svc,
            req(
                "POST",
                "/v1/collect?s=demo",
                Some("application/json"),
                body(),
            ),
        )
        .await;
        assert_eq!(s, 503);
        assert_eq!(
            v,
            json!({"error": {"code": "unavailable", "message": "the service is temporarily unavailable; retry later", "retryable": true}})
        );
    }

    #[tokio::test]
    async fn preflight_answers_with_the_sites_origins() {
        let svc = CollectService::new(config(), MemorySink::default());
        let mut r = req("OPTIONS", "/v1/collect?s=demo", None, "");
        r.headers_mut()
            .insert("origin", HeaderValue::from_static("https://www.example.ch"));
        let resp = svc.handle(&r, NOW).await;
        assert_eq!(resp.status(), 204);
        assert_eq!(
            resp.headers()["access-control-allow-origin"],
            "https://www.example.ch"
        );
        assert!(resp.headers()["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("POST"));
        r.headers_mut()
            .insert("origin", HeaderValue::from_static("https://evil.example"));
        let resp = svc.handle(&r, NOW).await;
        assert_eq!(resp.status(), 403);
        assert!(resp.headers().get("access-control-allow-origin").is_none());
        // a wildcard site echoes any origin
        let mut r = req("OPTIONS", "/v1/collect?s=open", None, "");
        r.headers_mut()
            .insert("origin", HeaderValue::from_static("https://anyone.example"));
        assert_eq!(
            svc.handle(&r, NOW).await.headers()["access-control-allow-origin"],
            "https://anyone.example"
        );
        // a POST from a disallowed origin is refused and stores nothing
        let mut r = req(
            "POST",
            "/v1/collect?s=demo",
            Some("application/json"),
            body(),
        );
        r.headers_mut()
            .insert("origin", HeaderValue::from_static("https://evil.example"));
        assert_eq!(call(&svc, r).await.0, 403);
        assert!(svc.sink.batches.lock().unwrap().is_empty());
    }
}
