//! Lambda HTTP request → collect service → Lambda HTTP response.

use bytes::Bytes;
use lambda_http::{Body, Request, Response};
use nectar_platform::collect::sink::EventSink;
use nectar_platform::collect::CollectService;

/// Converts a Lambda body into bytes (lambda_http has already decoded base64 bodies).
pub fn body_bytes(body: &Body) -> Bytes {
    match body {
        Body::Empty => Bytes::new(),
        Body::Text(t) => Bytes::copy_from_slice(t.as_bytes()),
        Body::Binary(b) => Bytes::copy_from_slice(b),
        _ => Bytes::new(),
    }
}

/// Answers one request. Never fails: every error is a structured JSON answer.
#[tracing::instrument(skip_all, fields(method = %req.method(), path = %req.uri().path()))]
pub async fn handle<S: EventSink>(
    svc: &CollectService<S>,
    req: Request,
) -> Result<Response<Body>, std::convert::Infallible> {
    let (parts, body) = req.into_parts();
    let req = http::Request::from_parts(parts, body_bytes(&body));
    let resp = svc.handle(&req, nectar_platform::now_ms()).await;
    let (parts, body) = resp.into_parts();
    let body = if body.is_empty() {
        Body::Empty
    } else {
        Body::Text(String::from_utf8_lossy(&body).into_owned())
    };
    Ok(Response::from_parts(parts, body))
}

#[cfg(test)]
mod tests {
    //! The sample events in `events/` through the real handler (the shapes API Gateway sends).
    use super::*;
    use nectar_model::event::Accepted;
    use nectar_platform::collect::sink::SinkError;
    use nectar_platform::config::NectarConfig;
    use std::sync::{Arc, Mutex};

    #[derive(Default)]
    struct Memory(Mutex<Vec<Accepted>>);

    impl EventSink for Memory {
        async fn put(&self, batch: &Accepted) -> Result<(), SinkError> {
            self.0.lock().unwrap().push(batch.clone());
            Ok(())
        }
    }

    /// Status, body, headers and the stored flat events (each checked against its batch's
    /// site and its envelope's id and time).
    async fn run(
        fixture: &str,
    ) -> (
        u16,
        serde_json::Value,
        http::HeaderMap,
        Vec<serde_json::Value>,
    ) {
        run_with(NectarConfig::embedded_default(), fixture).await
    }

    async fn run_with(
        config: NectarConfig,
        fixture: &str,
    ) -> (
        u16,
        serde_json::Value,
        http::HeaderMap,
        Vec<serde_json::Value>,
    ) {
        let svc = CollectService::new(Arc::new(config), Memory::default());
        let req = lambda_http::request::from_str(fixture).expect("fixture is an API Gateway event");
        let resp = handle(&svc, req).await.unwrap();
        let body = match resp.body() {
            Body::Text(t) => serde_json::from_str(t).unwrap(),
            _ => serde_json::Value::Null,
        };
        let mut stored = Vec::new();
        for batch in svc.sink().0.lock().unwrap().iter() {
            for e in &batch.events {
                let flat: serde_json::Value = serde_json::from_str(&e.line).unwrap();
                assert_eq!(flat["site_key"], batch.site_key.as_str());
                assert_eq!(flat["event_id"], e.event_id.as_str());
                assert_eq!(flat["event_timestamp"], e.event_timestamp);
                stored.push(flat);
            }
        }
        (resp.status().as_u16(), body, resp.headers().clone(), stored)
    }

    #[tokio::test]
    async fn json_payload_is_stored_as_flat_events() {
        let fixture = include_str!("../../../events/collect-post-json.json");
        let (status, body, headers, stored) = run(fixture).await;
        assert_eq!((status, stored.len()), (202, 5));
        assert_eq!(body["accepted"], 5);
        assert_eq!(
            headers["access-control-allow-origin"],
            "https://www.demo.example"
        );
        // Each stored event is the payload's event, in order, flattened with the envelope's
        // fields, the site from `?s=`, an id and the collect time; the fixture's device clock
        // is far behind, so its time is corrected by the skew and the original kept.
        let api: serde_json::Value = serde_json::from_str(fixture).unwrap();
        let payload: serde_json::Value =
            serde_json::from_str(api["body"].as_str().unwrap()).unwrap();
        let sent = payload["events"].as_array().unwrap();
        let mut ids = std::collections::HashSet::new();
        for (flat, ev) in stored.iter().zip(sent) {
            for field in ["type", "id", "context"] {
                assert_eq!(flat[field], ev[field], "{field} of {flat}");
            }
            for field in [
                "peach_schema_version",
                "sent_timestamp",
                "user_id",
                "client",
            ] {
                assert_eq!(flat[field], payload[field], "{field} of {flat}");
            }
            assert_eq!(flat["site_key"], "demo");
            let id = flat["event_id"].as_str().unwrap();
            assert!(
                id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
                "{id}"
            );
            assert!(ids.insert(id.to_string()), "event id {id} repeated");
            assert!(
                flat["collect_timestamp"].as_i64().is_some_and(|t| t > 0),
                "{flat}"
            );
        }
    }

    #[tokio::test]
    async fn a_site_declaring_collect_status_201_answers_201() {
        // GIVEN the default config with `collect_status = 201` on the demo site (for apps on
        // the EBU PEACH collector SDKs, which re-send on any answer but 201)
        let toml = nectar_platform::config::DEFAULT_CONFIG_TOML.replacen(
            "[sites.demo]\n",
            "[sites.demo]\ncollect_status = 201\n",
            1,
        );
        assert_ne!(toml, nectar_platform::config::DEFAULT_CONFIG_TOML);
        let config = NectarConfig::from_toml(&toml, "test").unwrap();
        // WHEN API Gateway delivers a batch THEN it is stored and answered 201
        for fixture in [
            include_str!("../../../events/collect-post-json.json"),
            include_str!("../../../events/collect-post-gzip.json"),
        ] {
            let (status, body, _, stored) = run_with(config.clone(), fixture).await;
            assert_eq!(status, 201, "{body}");
            assert!(!stored.is_empty());
            assert_eq!(body["accepted"], stored.len());
        }
        // and a rejected batch keeps its error status
        let (status, _, _, stored) = run_with(
            config,
            include_str!("../../../events/collect-post-invalid.json"),
        )
        .await;
        assert_eq!((status, stored.len()), (400, 0));
    }

    #[tokio::test]
    async fn beacon_and_gzip_payloads_are_accepted() {
        for fixture in [
            include_str!("../../../events/collect-post-beacon.json"),
            include_str!("../../../events/collect-post-gzip.json"),
        ] {
            let (status, body, _, stored) = run(fixture).await;
            assert_eq!(status, 202, "{body}");
            assert!(!stored.is_empty());
        }
    }

    #[tokio::test]
    async fn invalid_payload_is_rejected_with_paths() {
        let (status, body, _, stored) =
            run(include_str!("../../../events/collect-post-invalid.json")).await;
        assert_eq!((status, stored.len()), (400, 0));
        assert_eq!(body["error"]["code"], "invalid_payload");
        assert!(!body["error"]["details"].as_array().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_repeated_site_key_is_refused_naming_it() {
        // GIVEN the sample payload with `s` given twice in the raw query
        let mut ev: serde_json::Value =
            serde_json::from_str(include_str!("../../../events/collect-post-json.json")).unwrap();
        ev["rawQueryString"] = "s=demo&s=other".into();
        // WHEN handled THEN 400 invalid_request naming `s`, and nothing is stored
        let (status, body, _, stored) = run(&ev.to_string()).await;
        assert_eq!((status, stored.len()), (400, 0), "{body}");
        assert_eq!(body["error"]["code"], "invalid_request");
        assert_eq!(body["error"]["details"][0]["path"], "s");
    }

    #[tokio::test]
    async fn preflight_is_answered() {
        let (status, _, headers, _) = run(include_str!(
            "../../../events/collect-options-preflight.json"
        ))
        .await;
        assert_eq!(status, 204);
        assert!(headers.contains_key("access-control-allow-origin"));
    }
}
