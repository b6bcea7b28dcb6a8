//! Lambda HTTP request → recommend service → Lambda HTTP response.

use bytes::Bytes;
use lambda_http::{Body, Request, Response};
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
#[tracing::instrument(skip_all, fields(path = %req.uri().path()))]
pub async fn handle<M: ModelStore, S: EventSink + 'static>(
    svc: &RecommendService<M, S>,
    req: Request,
) -> Result<Response<Body>, std::convert::Infallible> {
    let (parts, body) = req.into_parts();
    let req = http::Request::from_parts(parts, body_bytes(&body));
    let resp = svc.handle(&req, nectar_platform::now_ms()).await;
    let (parts, body) = resp.into_parts();
    Ok(Response::from_parts(
        parts,
        Body::Text(String::from_utf8_lossy(&body).into_owned()),
    ))
}
