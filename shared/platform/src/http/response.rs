//! JSON responses.

use bytes::Bytes;
use http::{HeaderValue, StatusCode};

/// A JSON response with the given status (a `serde_json::Value` or a typed body, written
/// straight to bytes).
pub fn json_response(status: StatusCode, body: &impl serde::Serialize) -> http::Response<Bytes> {
    let bytes = serde_json::to_vec(body).expect("a response body serialises");
    let mut resp = http::Response::new(Bytes::from(bytes));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}
