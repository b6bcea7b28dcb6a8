//! Errors as every HTTP surface reports them: one status and one stable code per error, and a
//! message that is safe to show clients. Details of server-side failures go to the logs only.

use bytes::Bytes;
use nectar_model::event::{Problem, Rejection};
use serde::Serialize;

/// An error answered to an HTTP client.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The payload failed validation; nothing was stored.
    #[error("{}", .0.message())]
    InvalidPayload(Rejection),
    /// A query parameter or header is missing or malformed.
    #[error("{field}: {problem}")]
    InvalidRequest {
        /// The parameter, e.g. `s`.
        field: String,
        /// What is wrong.
        problem: String,
    },
    /// The site key is not declared in the config.
    #[error("unknown site key {0:?}")]
    UnknownSite(String),
    /// The browser origin is not allowed for the site.
    #[error("origin {0:?} is not allowed for this site")]
    OriginNotAllowed(String),
    /// No such route.
    #[error("no route for {0}")]
    NotFound(String),
    /// The route exists but not for this method.
    #[error("method {method} is not allowed here; allowed: {allow}")]
    MethodNotAllowed {
        /// The request's method.
        method: String,
        /// The `Allow` header value.
        allow: &'static str,
    },
    /// The body exceeds the limit.
    #[error("the body is larger than {limit} bytes")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The request body did not arrive within the server's body-read timeout.
    #[error("the request body did not arrive within {seconds} s")]
    RequestTimeout {
        /// The timeout in seconds.
        seconds: u64,
    },
    /// Unsupported `Content-Type` or `Content-Encoding`.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The site declares no such endpoint (of this kind).
    #[error("unknown endpoint {0:?}")]
    UnknownEndpoint(String),
    /// Neither the endpoint's model nor its fallback can answer yet; the message says which
    /// task to train.
    #[error("{0}")]
    NoModel(String),
    /// An admin key is required (`Authorization: Bearer <key>`).
    #[error("this route needs Authorization: Bearer <key>")]
    Unauthorized,
    /// The key is not a key of this site.
    #[error("the key is not valid for this site")]
    Forbidden,
    /// A backend did not accept the data in time; the client may retry.
    #[error("the service is temporarily unavailable; retry later")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Every stable code [`AppError::code`] answers (the OpenAPI document lists them).
pub const ERROR_CODES: &[&str] = &[
    "invalid_payload",
    "reserved_event_type",
    "invalid_request",
    "unknown_site",
    "origin_not_allowed",
    "not_found",
    "unknown_endpoint",
    "no_model",
    "unauthorized",
    "forbidden",
    "method_not_allowed",
    "payload_too_large",
    "request_timeout",
    "unsupported_media_type",
    "unavailable",
];

/// The body of every error answer: `{"error": {...}}`.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong, in a stable code and a message safe to show.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    /// The stable machine-readable code; the same for the same mistake in every release.
    pub code: String,
    /// What is wrong, naming the field.
    pub message: String,
    /// Each problem with the JSON path (or parameter) it concerns (`invalid_payload`,
    /// `invalid_request`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Vec<Problem>>,
    /// `true` when the client may send the same request again (`unavailable`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retryable: Option<bool>,
}

impl AppError {
    /// The HTTP status.
    pub fn status(&self) -> http::StatusCode {
        use http::StatusCode as S;
        match self {
            Self::InvalidPayload(_) | Self::InvalidRequest { .. } => S::BAD_REQUEST,
            Self::UnknownSite(_) | Self::OriginNotAllowed(_) | Self::Forbidden => S::FORBIDDEN,
            Self::NotFound(_) | Self::UnknownEndpoint(_) => S::NOT_FOUND,
            Self::Unauthorized => S::UNAUTHORIZED,
            Self::NoModel(_) => S::SERVICE_UNAVAILABLE,
            Self::MethodNotAllowed { .. } => S::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge { .. } => S::PAYLOAD_TOO_LARGE,
            Self::RequestTimeout { .. } => S::REQUEST_TIMEOUT,
            Self::UnsupportedMediaType(_) => S::UNSUPPORTED_MEDIA_TYPE,
            Self::Unavailable(_) => S::SERVICE_UNAVAILABLE,
        }
    }

    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidPayload(r) if r.reserved_type => "reserved_event_type",
            Self::InvalidPayload(_) => "invalid_payload",
            Self::InvalidRequest { .. } => "invalid_request",
            Self::UnknownSite(_) => "unknown_site",
            Self::OriginNotAllowed(_) => "origin_not_allowed",
            Self::NotFound(_) => "not_found",
            Self::UnknownEndpoint(_) => "unknown_endpoint",
            Self::NoModel(_) => "no_model",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::RequestTimeout { .. } => "request_timeout",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::Unavailable(_) => "unavailable",
        }
    }

    /// Builds an invalid-request error for `field`.
    pub fn invalid(field: &str, problem: impl Into<String>) -> Self {
        Self::InvalidRequest {
            field: field.to_string(),
            problem: problem.into(),
        }
    }

    /// The JSON body: `{"error": {"code", "message", "details"?, "retryable"?}}`.
    pub fn body(&self) -> serde_json::Value {
        let mut error = ErrorDetail {
            code: self.code().to_string(),
            message: self.to_string(),
            details: None,
            retryable: None,
        };
        match self {
            Self::InvalidPayload(r) => error.details = Some(r.problems.clone()),
            Self::InvalidRequest { field, problem } => {
                error.details = Some(vec![Problem {
                    path: field.clone(),
                    problem: problem.clone(),
                }])
            }
            Self::Unavailable(_) => error.retryable = Some(true),
            _ => {}
        }
        serde_json::to_value(ErrorBody { error }).expect("plain data serialises")
    }

    /// The whole HTTP response.
    pub fn into_response(self) -> http::Response<Bytes> {
        let mut resp = super::response::json_response(self.status(), &self.body());
        if let Self::MethodNotAllowed { allow, .. } = &self {
            resp.headers_mut()
                .insert(http::header::ALLOW, http::HeaderValue::from_static(allow));
        }
        if matches!(self, Self::Unavailable(_)) {
            resp.headers_mut().insert(
                http::header::RETRY_AFTER,
                http::HeaderValue::from_static("1"),
            );
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_status_code_and_json_body() {
        let cases: Vec<(AppError, u16, &str)> = vec![
            (
                AppError::invalid("s", "is required"),
                400,
                "invalid_request",
            ),
            (AppError::UnknownSite("x".into()), 403, "unknown_site"),
            (AppError::NotFound("/x".into()), 404, "not_found"),
            (
                AppError::UnknownEndpoint("x".into()),
                404,
                "unknown_endpoint",
            ),
            (AppError::NoModel("demo/x".into()), 503, "no_model"),
            (AppError::Unauthorized, 401, "unauthorized"),
            (AppError::Forbidden, 403, "forbidden"),
            (
                AppError::MethodNotAllowed {
                    method: "GET".into(),
                    allow: "POST, OPTIONS",
                },
                405,
                "method_not_allowed",
            ),
            (
                AppError::PayloadTooLarge { limit: 1 },
                413,
                "payload_too_large",
            ),
            (
                AppError::RequestTimeout { seconds: 10 },
                408,
                "request_timeout",
            ),
            (
                AppError::UnsupportedMediaType("x".into()),
                415,
                "unsupported_media_type",
            ),
            (
                AppError::Unavailable("kinesis down".into()),
                503,
                "unavailable",
            ),
        ];
        for (err, status, code) in cases {
            let body = err.body();
            assert_eq!(body["error"]["code"], code);
            assert!(ERROR_CODES.contains(&code), "{code} is not in ERROR_CODES");
            let resp = err.into_response();
            assert_eq!(resp.status().as_u16(), status);
            let parsed: serde_json::Value = serde_json::from_slice(resp.body()).unwrap();
            assert_eq!(parsed["error"]["code"], code);
        }
        let body = AppError::Unavailable("secret detail".into()).body();
        assert_eq!(body["error"]["retryable"], true);
        assert!(!body.to_string().contains("secret detail"));
        let body = AppError::invalid("n", "must be 1..=100").body();
        assert_eq!(body["error"]["details"][0]["path"], "n");
    }
}
