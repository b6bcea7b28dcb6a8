//! Lambda HTTP request → collect service → Lambda HTTP response.

use bytes::Bytes;
use lambda_http::{Body, Request, Response};
use nectar_platform::collect::CollectService;
use nectar_platform::sink::EventSink;

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
