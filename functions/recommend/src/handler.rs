//! Lambda HTTP request → recommend service (or the catalog upsert, or the privacy routes) →
//! Lambda HTTP response.

use bytes::Bytes;
use lambda_http::{Body, Request, Response};
use nectar_platform::catalog::dynamo::DynamoCatalog;
use nectar_platform::catalog::{parse_items_request, upserted_response, ITEMS_PATH};
use nectar_platform::collect::sink::EventSink;
use nectar_platform::http::error::AppError;
use nectar_platform::model_store::ModelStore;
use nectar_platform::object_store::ObjectStore;
use nectar_platform::privacy::route::{self as privacy_route, Privacy};
use nectar_platform::privacy::ErasureLog;
use nectar_platform::recommend::RecommendService;

/// What the privacy routes need besides the service's model store, config and keys.
#[derive(Debug)]
pub struct PrivacyDeps<L, O> {
    /// Where erasures are recorded (DynamoDB in the Lambda).
    pub log: L,
    /// The event log an export reads served answers from (S3 in the Lambda).
    pub events: O,
    /// The raw event log's lifecycle expiry, stated in the erasure answer.
    pub raw_log_expiry_days: Option<u32>,
}

fn body_bytes(body: &Body) -> Bytes {
    match body {
        Body::Text(t) => Bytes::copy_from_slice(t.as_bytes()),
        Body::Binary(b) => Bytes::copy_from_slice(b),
        _ => Bytes::new(),
    }
}

/// Answers one request. Never fails: every error is a structured JSON answer.
/// `catalog_table`: where `PUT /v1/items` writes (none: the route answers 404).
#[tracing::instrument(skip_all, fields(path = %req.uri().path()))]
pub async fn handle<M: ModelStore, S: EventSink + 'static, L: ErasureLog, O: ObjectStore>(
    svc: &RecommendService<M, S>,
    catalog_table: Option<&DynamoCatalog>,
    privacy: &PrivacyDeps<L, O>,
    req: Request,
) -> Result<Response<Body>, std::convert::Infallible> {
    let (parts, body) = req.into_parts();
    let req = http::Request::from_parts(parts, body_bytes(&body));
    let path = req.uri().path();
    let resp = match catalog_table {
        Some(table) if path == ITEMS_PATH => upsert_items(svc, table, &req)
            .await
            .unwrap_or_else(AppError::into_response),
        // The same routes, checks and answers as `nectar dev`.
        _ if privacy_route::routes(path) => {
            let p = Privacy {
                store: svc.models(),
                log: &privacy.log,
                events: &privacy.events,
                config: svc.config(),
                keys: svc.keys(),
                raw_log_expiry_days: privacy.raw_log_expiry_days,
            };
            privacy_route::handle(&p, &req, nectar_platform::now_ms()).await
        }
        _ => svc.handle(&req, nectar_platform::now_ms()).await,
    };
    let (parts, body) = resp.into_parts();
    Ok(Response::from_parts(
        parts,
        Body::Text(String::from_utf8_lossy(&body).into_owned()),
    ))
}

async fn upsert_items<M: ModelStore, S: EventSink + 'static>(
    svc: &RecommendService<M, S>,
    table: &DynamoCatalog,
    req: &http::Request<Bytes>,
) -> Result<http::Response<Bytes>, AppError> {
    let (site, items) = parse_items_request(svc.config(), svc.keys(), req)?;
    table.put_items(&site, &items).await.map_err(|e| {
        tracing::error!(error = ?e, "Catalog upsert failed.");
        AppError::Unavailable(Box::new(e))
    })?;
    let n = items.len();
    // This instance sees the items at once; the others at their next table reload
    // (`spawn_refresh`, every minute).
    svc.catalog()
        .upsert(&site, items)
        .map_err(|e| AppError::Unavailable(Box::new(e)))?;
    Ok(upserted_response(n))
}

#[cfg(test)]
mod tests {
    //! `events/recommend-for-you.json` and `events/similar-more-like-this.json` through the
    //! real handler, on the local model store.
    use super::*;
    use nectar_platform::auth::AdminKeys;
    use nectar_platform::catalog::Catalog;
    use nectar_platform::config::NectarConfig;
    use nectar_platform::event_log::local::LocalEventLog;
    use nectar_platform::model_store::{
        AnyModelStore, LocalModelStore, ModelArtifacts, PublishOptions,
    };
    use nectar_platform::object_store::LocalStore;
    use nectar_platform::privacy::LocalErasureLog;
    use nectar_platform::recommend::RecommendOptions;
    use std::sync::Arc;

    async fn run(
        fixture: &str,
        svc: &RecommendService<AnyModelStore, LocalEventLog>,
    ) -> (u16, serde_json::Value) {
        let req = lambda_http::request::from_str(fixture).expect("fixture is an API Gateway event");
        let resp = handle(svc, None, &local_privacy(&std::env::temp_dir()), req)
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let body = match resp.body() {
            Body::Text(t) => serde_json::from_str(t).unwrap(),
            _ => panic!("text body expected"),
        };
        (status, body)
    }

    /// Privacy backends in `dir` (the routes these tests call never reach them).
    pub(super) fn local_privacy(dir: &std::path::Path) -> PrivacyDeps<LocalErasureLog, LocalStore> {
        PrivacyDeps {
            log: LocalErasureLog::new(dir),
            events: LocalStore::new(dir),
            raw_log_expiry_days: None,
        }
    }

    pub(super) fn service(
        dir: &std::path::Path,
        keys: AdminKeys,
    ) -> RecommendService<AnyModelStore, LocalEventLog> {
        RecommendService::new(
            Arc::new(NectarConfig::embedded_default()),
            AnyModelStore::Local(LocalModelStore::new(dir)),
            Arc::new(LocalEventLog::start(dir, "test").unwrap()),
            Catalog::in_memory(),
            keys,
            RecommendOptions {
                served_flush: nectar_platform::recommend::served_log::FlushMode::Deferred,
                ..RecommendOptions::default()
            },
        )
    }

    /// A sample event with its raw query string (what lambda_http builds the URI from) and,
    /// when given, its body and authorization header replaced.
    fn event(fixture: &str, query: &str, body: Option<&str>, auth: Option<&str>) -> Request {
        let mut ev: serde_json::Value = serde_json::from_str(fixture).unwrap();
        ev["rawQueryString"] = query.into();
        if let Some(b) = body {
            ev["body"] = b.into();
            ev["headers"]["content-length"] = b.len().to_string().into();
        }
        if let Some(a) = auth {
            ev["headers"]["authorization"] = a.into();
        }
        lambda_http::request::from_str(&ev.to_string()).unwrap()
    }

    async fn answer(
        svc: &RecommendService<AnyModelStore, LocalEventLog>,
        table: Option<&DynamoCatalog>,
        req: Request,
    ) -> (u16, serde_json::Value) {
        let resp = handle(svc, table, &local_privacy(&std::env::temp_dir()), req)
            .await
            .unwrap();
        let body = match resp.body() {
            Body::Text(t) => serde_json::from_str(t).unwrap(),
            _ => panic!("text body expected"),
        };
        (resp.status().as_u16(), body)
    }

    #[tokio::test]
    async fn repeated_query_parameters_are_refused_naming_them() {
        let dir = std::env::temp_dir().join(format!("nectar-reco-repeat-{}", std::process::id()));
        let svc = service(&dir, AdminKeys::none());
        // GIVEN API Gateway events whose raw query repeats a singular parameter
        for (fixture, query, name) in [
            (
                include_str!("../../../events/recommend-for-you.json"),
                "s=demo&user_id=a&user_id=b",
                "user_id",
            ),
            (
                include_str!("../../../events/recommend-for-you.json"),
                "s=demo&s=other&user_id=a",
                "s",
            ),
            (
                include_str!("../../../events/similar-more-like-this.json"),
                "s=demo&item_id=a&item_id=b",
                "item_id",
            ),
        ] {
            // WHEN handled THEN 400 invalid_request naming the parameter
            let (status, body) = answer(&svc, None, event(fixture, query, None, None)).await;
            assert_eq!(status, 400, "{query}: {body}");
            assert_eq!(body["error"]["code"], "invalid_request");
            assert_eq!(body["error"]["details"][0]["path"], name, "{query}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn items_upsert_checks_the_key_before_the_body() {
        let dir = std::env::temp_dir().join(format!("nectar-reco-items-{}", std::process::id()));
        let mut keys = AdminKeys::none();
        keys.add("right-key", "demo");
        let svc = service(&dir, keys);
        // A table nobody answers at: nothing here may reach it.
        let conf = aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
            .endpoint_url("http://127.0.0.1:9")
            .build();
        let table = DynamoCatalog::new(aws_sdk_dynamodb::Client::from_conf(conf), "catalog");
        let fixture = include_str!("../../../events/items-put.json");
        let oversized = "x".repeat(6 << 20);
        // GIVEN a wrong key with an oversized or broken body THEN 403, not 413 or 400
        for body in [oversized.as_str(), "{not json"] {
            let req = event(fixture, "s=demo", Some(body), Some("Bearer wrong-key"));
            let (status, b) = answer(&svc, Some(&table), req).await;
            assert_eq!(
                (status, b["error"]["code"].as_str()),
                (403, Some("forbidden"))
            );
        }
        // GIVEN the right key THEN the body's own problems are reported
        let req = event(
            fixture,
            "s=demo",
            Some(&oversized),
            Some("Bearer right-key"),
        );
        assert_eq!(answer(&svc, Some(&table), req).await.0, 413);
        let req = event(
            fixture,
            "s=demo",
            Some("{not json"),
            Some("Bearer right-key"),
        );
        assert_eq!(answer(&svc, Some(&table), req).await.0, 400);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn sample_requests_are_answered() {
        // GIVEN the default config and a published trending list only
        let dir = std::env::temp_dir().join(format!("nectar-reco-fixture-{}", std::process::id()));
        let store = LocalModelStore::new(&dir);
        let artifacts = ModelArtifacts {
            item_ids: vec!["m-1".into(), "m-2".into(), "m-2044".into()],
            popular: vec![(2, 3.0), (0, 2.0), (1, 1.0)],
            ..Default::default()
        };
        store
            .publish(
                "demo",
                "trending",
                1,
                &artifacts,
                &PublishOptions::default(),
            )
            .await
            .unwrap();
        let svc = RecommendService::new(
            Arc::new(NectarConfig::embedded_default()),
            AnyModelStore::Local(store),
            Arc::new(LocalEventLog::start(&dir, "test").unwrap()),
            Catalog::in_memory(),
            AdminKeys::none(),
            RecommendOptions {
                served_flush: nectar_platform::recommend::served_log::FlushMode::Deferred,
                ..RecommendOptions::default()
            },
        );
        // WHEN the sample per-user request comes in (no ALS model yet; m-2044 excluded)
        let (status, body) =
            run(include_str!("../../../events/recommend-for-you.json"), &svc).await;
        // THEN the trending list answers, without the excluded item: as the fallback of the
        // `als` arm of the default config's experiment, or as the `trending` arm's own model
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["endpoint"], "for-you");
        assert_eq!(body["model"]["name"], "trending", "{body}");
        match body["variant"].as_str() {
            Some("als") => assert_eq!(body["fallback"], true),
            Some("trending") => assert_eq!(body["fallback"], false),
            v => panic!("unexpected variant {v:?}"),
        }
        let ids: Vec<&str> = body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["m-1", "m-2"]);
        // AND the similar-items sample gets the fallback too (no item_knn model yet)
        let (status, body) = run(
            include_str!("../../../events/similar-more-like-this.json"),
            &svc,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["fallback"], true);
        // AND both answers wait in the served log (the Lambda's extension flushes it after
        // the response), and a flush writes them to the event log
        assert_eq!(svc.served_log().pending(), 2);
        assert_eq!(svc.served_log().flush().await.written, 2);
        assert_eq!(svc.served_log().pending(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[cfg(test)]
#[path = "privacy_tests.rs"]
mod privacy_tests;
