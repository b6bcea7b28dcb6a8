//! The sampled request log: a configured share of requests (`[observability]
//! request_log_rate`) is written as one JSON line on stdout (CloudWatch Logs in Lambda) with
//! the route (its template, never the query: it holds user ids), the status, the latency and,
//! for recommendations, the endpoint, variant and fallback reason. Never keys, never a body.

use serde::Serialize;

/// One sampled request.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RequestLine<'a> {
    /// Always `"request"`, so log queries can select these lines.
    pub log: &'static str,
    /// The route template, e.g. `/v1/recommend/{endpoint}`.
    pub route: &'a str,
    /// HTTP status answered.
    pub status: u16,
    /// Time to answer, ms.
    pub latency_ms: f64,
    /// The site, when the request named a configured one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub site: Option<&'a str>,
    /// The recommendation endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<&'a str>,
    /// The variant that answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<&'a str>,
    /// Why a fallback answered (`no_model`, `cold_user`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback_reason: Option<&'a str>,
}

impl<'a> RequestLine<'a> {
    /// A line for `route` with no recommendation fields.
    pub fn new(route: &'a str, status: u16, latency_ms: f64) -> Self {
        Self {
            log: "request",
            route,
            status,
            latency_ms,
            site: None,
            endpoint: None,
            variant: None,
            fallback_reason: None,
        }
    }
}

/// Whether this request is logged, at `rate` (0: never, 1: always).
pub fn sampled(rate: f64) -> bool {
    rate > 0.0 && (rate >= 1.0 || rand::random::<f64>() < rate)
}

/// Writes the line to stdout when [`sampled`] at `rate`.
pub fn maybe_log(rate: f64, line: &RequestLine<'_>) {
    if sampled(rate) {
        println!(
            "{}",
            serde_json::to_string(line).expect("a request line serialises")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_hold_the_route_and_no_empty_fields() {
        let mut l = RequestLine::new("/v1/recommend/{endpoint}", 200, 0.8);
        l.endpoint = Some("for-you");
        l.fallback_reason = Some("cold_user");
        let v: serde_json::Value = serde_json::to_value(&l).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"log": "request", "route": "/v1/recommend/{endpoint}",
                "status": 200, "latency_ms": 0.8, "endpoint": "for-you",
                "fallback_reason": "cold_user"})
        );
    }

    #[test]
    fn sampling_follows_the_rate() {
        assert!(!sampled(0.0));
        assert!(sampled(1.0));
        let n = (0..20_000).filter(|_| sampled(0.1)).count();
        // Binomial(20000, 0.1): sd 42; ± 5 sd.
        assert!((1_790..=2_210).contains(&n), "{n}");
    }
}
