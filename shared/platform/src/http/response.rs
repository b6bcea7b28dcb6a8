//! JSON responses.

use bytes::Bytes;
use http::{HeaderValue, StatusCode};

/// A JSON response with the given status.
pub fn json_response(status: StatusCode, body: &serde_json::Value) -> http::Response<Bytes> {
    let mut resp = http::Response::new(Bytes::from(body.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}
