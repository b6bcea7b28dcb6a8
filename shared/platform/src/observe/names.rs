//! The one list of metric names (issue 12), a contract with the operators' alarms and dashboards.
//!
//! The functions emit through the `metrics` facade: in Lambda as CloudWatch Embedded Metric
//! Format lines in [`NAMESPACE`], in `nectar dev` as Prometheus text at `GET /metrics`. The SAM
//! template's alarms and dashboard (`infra/template.yaml`, written by `infra/gen_schedules.py`)
//! and the Grafana dashboard (`infra/grafana/nectar-dashboard.json`) refer to these names, and
//! `infra/test_template.py` / `infra/test_grafana.py` read this file (the string literals of its
//! `pub const` lines and the identifiers listed in [`ALL`] and [`DIMENSIONS`]) to check that
//! every metric they use is one the code emits. So rename nothing here without them.
//!
//! Every metric carries the [`dim::SITE`] dimension. Each doc comment names the metric's kind,
//! unit and the dimension sets it is emitted with: CloudWatch aggregates only over the exact
//! dimension sets of a datapoint, and an alarm names one of them, so the sets listed are part of
//! the contract (an EMF line may carry several, e.g. `[["site"],["site","endpoint"]]`).

/// CloudWatch namespace of every Nectar metric (EMF `_aws.CloudWatchMetrics[].Namespace`).
pub const NAMESPACE: &str = "Nectar";

/// Dimension (CloudWatch) and label (Prometheus) keys.
pub mod dim {
    /// The site key of the request, batch or task (`[sites.<site>]`). Input whose site is not a
    /// configured one is counted under [`UNKNOWN_SITE`], so that a client cannot create series.
    pub const SITE: &str = "site";
    /// The recommendation endpoint (`[sites.<site>.endpoints.<endpoint>]`).
    pub const ENDPOINT: &str = "endpoint";
    /// The experiment variant that answered (its task name, or `control`).
    pub const VARIANT: &str = "variant";
    /// The training task (`[sites.<site>.tasks.<task>]`).
    pub const TASK: &str = "task";
    /// The stable error code of a refused payload (`invalid_json`, `unknown_site`, …).
    pub const CODE: &str = "code";
    /// Why recommend fell back (`no_model`, `cold_user`, …).
    pub const REASON: &str = "reason";
    /// A training stage (`read`, `fit`, `evaluate`, `publish`).
    pub const STAGE: &str = "stage";
    /// Outcome: a training run's `published`/`refused`/`failed`, or an HTTP status class.
    pub const STATUS: &str = "status";
    /// The [`SITE`] value for input whose site is unknown (payloads refused `unknown_site`, records
    /// archive could not decode).
    pub const UNKNOWN_SITE: &str = "_unknown";
}

/// Every dimension key, in the order of [`dim`].
pub const DIMENSIONS: &[&str] = &[
    dim::SITE,
    dim::ENDPOINT,
    dim::VARIANT,
    dim::TASK,
    dim::CODE,
    dim::REASON,
    dim::STAGE,
    dim::STATUS,
];

// ---------------------------------------------------------------- collect

/// Counter, events: events collect acknowledged (written to the log). Sets `[site]`.
pub const COLLECT_EVENTS_ACCEPTED: &str = "collect_events_accepted";
/// Counter, payloads: request bodies collect refused with a 4xx. Sets `[site]`, `[site, code]`.
pub const COLLECT_PAYLOADS_REJECTED: &str = "collect_payloads_rejected";
/// Counter, retries: PutRecords entries collect re-sent after a partial failure. Sets `[site]`.
pub const COLLECT_PUT_RETRIES: &str = "collect_put_retries";
/// Histogram, milliseconds: collect's time per request. Sets `[site]`.
pub const COLLECT_REQUEST_MS: &str = "collect_request_ms";

// ---------------------------------------------------------------- archive

/// Counter, events: events archive wrote to the event log. Sets `[site]`.
pub const ARCHIVE_EVENTS_WRITTEN: &str = "archive_events_written";
/// Counter, records: records archive could not decode or write, parked under `parked/`.
/// Sets `[site]` (site [`dim::UNKNOWN_SITE`] when the record was not decodable).
pub const ARCHIVE_RECORDS_PARKED: &str = "archive_records_parked";
/// Gauge, seconds: now minus the newest event time of the batch archive just wrote. Sets `[site]`.
pub const ARCHIVE_LAG_SECONDS: &str = "archive_lag_seconds";
/// Counter, events: events dropped as duplicates of an `event_id` already written. Sets `[site]`.
pub const ARCHIVE_DUPLICATES_DROPPED: &str = "archive_duplicates_dropped";

// ---------------------------------------------------------------- train

/// Counter, runs: training runs by outcome, status `published`, `refused` (quality gate) or
/// `failed`. Sets `[site, task, status]` (the staleness and failure alarms name this set).
pub const TRAIN_RUNS: &str = "train_runs";
/// Gauge, ratio 0..1: the candidate's nDCG@10 on the holdout. Sets `[site, task]`.
pub const TRAIN_NDCG_AT_10: &str = "train_ndcg_at_10";
/// Gauge, ratio 0..1: the popularity baseline's nDCG@10 on the same holdout. Sets `[site, task]`.
pub const TRAIN_BASELINE_NDCG_AT_10: &str = "train_baseline_ndcg_at_10";
/// Gauge, seconds: the duration of one training stage. Sets `[site, task, stage]`.
pub const TRAIN_STAGE_SECONDS: &str = "train_stage_seconds";
/// Gauge, interactions: interactions the run trained on. Sets `[site, task]`.
pub const TRAIN_INTERACTIONS: &str = "train_interactions";

// ---------------------------------------------------------------- recommend

/// Counter, requests: recommend and similar requests. Sets `[site]` (fallback-share alarm),
/// `[site, endpoint, variant, status]`.
pub const RECOMMEND_REQUESTS: &str = "recommend_requests";
/// Histogram, milliseconds: time to answer a recommend or similar request. Sets `[site, endpoint]`.
pub const RECOMMEND_LATENCY_MS: &str = "recommend_latency_ms";
/// Counter, requests: answers served by a fallback instead of the endpoint's model. Sets `[site]`
/// (fallback-share alarm), `[site, endpoint, reason]`.
pub const RECOMMEND_FALLBACKS: &str = "recommend_fallbacks";
/// Counter, requests: answers with fewer items than asked. Sets `[site, endpoint]`.
pub const RECOMMEND_SHORT_ANSWERS: &str = "recommend_short_answers";
/// Gauge, seconds: now minus the training end of the version served. Sets `[site, task]`.
pub const MODEL_AGE_SECONDS: &str = "model_age_seconds";
/// Counter, events: `recommendation_served` events recommend could not log (dropped, so the
/// online report under-counts). Sets `[site]`.
pub const SERVED_LOG_DROPPED: &str = "served_log_dropped";

// ---------------------------------------------------------------- report (issue 11)

/// Gauge, ratio 0..1: click-through rate of the report's range. Sets `[site, endpoint, variant]`.
pub const REPORT_CTR: &str = "report_ctr";
/// Gauge, recommendations: served in the report's range. Sets `[site, endpoint, variant]`.
pub const REPORT_SERVED: &str = "report_served";
/// Gauge, clicks: attributed clicks in the report's range. Sets `[site, endpoint, variant]`.
pub const REPORT_CLICKS: &str = "report_clicks";

/// Every metric name, grouped by function as above.
pub const ALL: &[&str] = &[
    COLLECT_EVENTS_ACCEPTED,
    COLLECT_PAYLOADS_REJECTED,
    COLLECT_PUT_RETRIES,
    COLLECT_REQUEST_MS,
    ARCHIVE_EVENTS_WRITTEN,
    ARCHIVE_RECORDS_PARKED,
    ARCHIVE_LAG_SECONDS,
    ARCHIVE_DUPLICATES_DROPPED,
    TRAIN_RUNS,
    TRAIN_NDCG_AT_10,
    TRAIN_BASELINE_NDCG_AT_10,
    TRAIN_STAGE_SECONDS,
    TRAIN_INTERACTIONS,
    RECOMMEND_REQUESTS,
    RECOMMEND_LATENCY_MS,
    RECOMMEND_FALLBACKS,
    RECOMMEND_SHORT_ANSWERS,
    MODEL_AGE_SECONDS,
    SERVED_LOG_DROPPED,
    REPORT_CTR,
    REPORT_SERVED,
    REPORT_CLICKS,
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// `^[a-z][a-z0-9_]*$`: valid as a CloudWatch metric name and a Prometheus one, unchanged by
    /// the exporter's sanitising.
    fn is_snake(name: &str) -> bool {
        let mut chars = name.chars();
        chars.next().is_some_and(|c| c.is_ascii_lowercase())
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    }

    #[test]
    fn names_are_unique_and_snake_case() {
        // GIVEN the list; THEN no name twice and each one matches ^[a-z][a-z0-9_]*$
        let unique: HashSet<_> = ALL.iter().collect();
        assert_eq!(unique.len(), ALL.len(), "a name is listed twice");
        for name in ALL.iter().chain(DIMENSIONS) {
            assert!(is_snake(name), "{name:?} is not ^[a-z][a-z0-9_]*$");
        }
        let dims: HashSet<_> = DIMENSIONS.iter().collect();
        assert_eq!(dims.len(), DIMENSIONS.len(), "a dimension is listed twice");
    }

    #[test]
    fn the_checker_refuses_what_prometheus_or_cloudwatch_would_change() {
        // GIVEN names the exporter would rewrite or that break the convention; THEN refused
        for bad in ["", "Collect", "1x", "_x", "a-b", "a.b", "a b", "ä"] {
            assert!(!is_snake(bad), "{bad:?}");
        }
        assert!(is_snake("train_ndcg_at_10"));
    }

    #[test]
    fn the_list_holds_every_contract_name() {
        // GIVEN the 22 names by function; THEN each is in ALL (a constant added without
        // listing it would escape the template and Grafana checks)
        assert_eq!(ALL.len(), 22);
        for name in [
            "collect_events_accepted",
            "collect_payloads_rejected",
            "archive_lag_seconds",
            "train_runs",
            "recommend_fallbacks",
            "served_log_dropped",
            "report_ctr",
        ] {
            assert!(ALL.contains(&name), "{name}");
        }
        assert!(!DIMENSIONS.contains(&dim::UNKNOWN_SITE));
    }
}
