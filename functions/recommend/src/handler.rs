//! Lambda HTTP request → recommend service (or the catalog upsert) → Lambda HTTP response.

use bytes::Bytes;
use lambda_http::{Body, Request, Response};
use nectar_platform::catalog::{parse_items_request, upserted_response, ITEMS_PATH};
use nectar_platform::dynamo_catalog::DynamoCatalog;
use nectar_platform::error::AppError;
use nectar_platform::model_store::ModelStore;
use nectar_platform::recommend::RecommendService;
use nectar_platform::sink::EventSink;

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
pub async fn handle<M: ModelStore, S: EventSink + 'static>(
    svc: &RecommendService<M, S>,
    catalog_table: Option<&DynamoCatalog>,
    req: Request,
) -> Result<Response<Body>, std::convert::Infallible> {
    let (parts, body) = req.into_parts();
    let req = http::Request::from_parts(parts, body_bytes(&body));
    let resp = match catalog_table {
        Some(table) if req.uri().path() == ITEMS_PATH => upsert_items(svc, table, &req)
            .await
            .unwrap_or_else(AppError::into_response),
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
    // This instance sees the items at once; others at their next cold start.
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
    use nectar_platform::catalog::Catalog;
    use nectar_platform::config::NectarConfig;
    use nectar_platform::keys::AdminKeys;
    use nectar_platform::local_log::LocalEventLog;
    use nectar_platform::model_store::{
        AnyModelStore, LocalModelStore, ModelArtifacts, PublishOptions,
    };
    use nectar_platform::recommend::RecommendOptions;
    use std::sync::Arc;

    async fn run(
        fixture: &str,
        svc: &RecommendService<AnyModelStore, LocalEventLog>,
    ) -> (u16, serde_json::Value) {
        let req = lambda_http::request::from_str(fixture).expect("fixture is an API Gateway event");
        let resp = handle(svc, None, req).await.unwrap();
        let status = resp.status().as_u16();
        let body = match resp.body() {
            Body::Text(t) => serde_json::from_str(t).unwrap(),
            _ => panic!("text body expected"),
        };
        (status, body)
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
                served_flush: nectar_platform::served_log::FlushMode::Deferred,
                ..RecommendOptions::default()
            },
        );
        // WHEN the sample per-user request comes in (no ALS model yet; m-2044 excluded)
        let (status, body) =
            run(include_str!("../../../events/recommend-for-you.json"), &svc).await;
        // THEN the trending fallback answers, without the excluded item
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["fallback"], true);
        assert_eq!(body["endpoint"], "for-you");
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
