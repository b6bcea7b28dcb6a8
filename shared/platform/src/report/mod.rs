//! The online report of a site: the event log of a time range streamed through attribution
//! ([`nectar_model::online::Attributor`]) into the per-endpoint × variant figures of
//! [`nectar_model::online::metrics`], rendered as JSON (the contract), Markdown or one
//! self-contained HTML page with charts.
//!
//! - [`build_report`] reads the range from any [`ObjectStore`] (the local data dir or S3),
//!   `nectar report` calls it;
//! - [`run_report_task`] is the scheduled task: it writes
//!   `reports/site=<site>/date=<YYYY-MM-DD>/report.json` and `report.html` to the store.
//!
//! The formulas of every figure are those of the model crate's `online::metrics` module doc.

mod charts;
#[cfg(any(test, feature = "testkit"))]
pub mod contract;
mod html;
mod markdown;
pub mod route;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat};
use futures::{StreamExt, TryStreamExt};
use nectar_model::mapping::Deduper;
use nectar_model::online::attribution::EventKind;
use nectar_model::online::metrics::{ExperimentSpec, VariantSpec};
use nectar_model::online::{report, Attribution, Attributor, OnlineEvent, Report, ReportInput};

use crate::catalog::Catalog;
use crate::config::{Allocation, NectarConfig, SiteConfig};
use crate::event_log::jsonl::gunzip_text;
use crate::event_log::reader::{list_window, TimeWindow};
use crate::object_store::{ObjectStore, StoreError};

pub use html::render_html;
pub use markdown::render_markdown;

/// Top-level prefix of the scheduled reports in the bucket.
pub const REPORTS_PREFIX: &str = "reports/";
/// Event-log files fetched and decompressed at once (S3 latency wants several in flight).
const READ_CONCURRENCY: usize = 8;
/// Decompressed files waiting for attribution: attribution is the slower, single-threaded
/// stage, so a short queue keeps it busy without holding many files' text (hour files of a
/// busy site are tens of MB each).
const QUEUED_TEXTS: usize = 2;
const DAY_MS: i64 = 86_400_000;

/// What to report on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportRequest {
    /// The site.
    pub site: String,
    /// Only this endpoint, when set (it must be declared in the site's config).
    pub endpoint: Option<String>,
    /// Answers served at or after this time (ms UTC) count.
    pub since_ms: i64,
    /// Answers served before this time (ms UTC) count.
    pub until_ms: i64,
}

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The site is not in the config.
    #[error("unknown site {0:?}")]
    UnknownSite(String),
    /// The endpoint is not declared for the site.
    #[error("unknown endpoint {endpoint:?} of site {site:?}")]
    UnknownEndpoint {
        /// The site.
        site: String,
        /// The endpoint asked for.
        endpoint: String,
    },
    /// `since` is not before `until`.
    #[error("the range is empty: since ({since}) must be before until ({until})")]
    EmptyRange {
        /// Start, RFC 3339.
        since: String,
        /// End, RFC 3339.
        until: String,
    },
    /// The scheduled task ran for a site without `[sites.<site>.report]`.
    #[error("site {0:?} has no [report] section: no scheduled report")]
    NotScheduled(String),
    /// Reading the event log or writing the report failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ReportError {
    /// A stable code for the error (for JSON error answers).
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownSite(_) => "unknown_site",
            Self::UnknownEndpoint { .. } => "unknown_endpoint",
            Self::EmptyRange { .. } => "invalid_range",
            Self::NotScheduled(_) => "report_not_scheduled",
            Self::Store(_) => "store_error",
        }
    }
}

/// An output format of the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The JSON contract (pretty-printed).
    Json,
    /// Markdown tables.
    Markdown,
    /// One self-contained HTML page with SVG charts.
    Html,
}

impl Format {
    /// `json`, `md` (or `markdown`) and `html` (or `htm`), as flags and file extensions say it.
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "json" => Some(Self::Json),
            "md" | "markdown" => Some(Self::Markdown),
            "html" | "htm" => Some(Self::Html),
            _ => None,
        }
    }
}

/// The report in a format.
pub fn render(report: &Report, format: Format) -> String {
    match format {
        Format::Json => render_json(report),
        Format::Markdown => render_markdown(report),
        Format::Html => render_html(report),
    }
}

/// The report as pretty-printed JSON (the contract of the README, "Online report").
pub fn render_json(report: &Report) -> String {
    let mut s = serde_json::to_string_pretty(report).expect("a report serialises");
    s.push('\n');
    s
}

fn rfc3339(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_else(|| ms.to_string())
}

/// Checks a request against the config: the site and the endpoint exist, the range is not
/// empty.
fn check_request<'c>(
    config: &'c NectarConfig,
    req: &ReportRequest,
) -> Result<&'c SiteConfig, ReportError> {
    let site = config
        .site(&req.site)
        .ok_or_else(|| ReportError::UnknownSite(req.site.clone()))?;
    if let Some(e) = &req.endpoint {
        if !site.endpoints.contains_key(e) {
            return Err(ReportError::UnknownEndpoint {
                site: req.site.clone(),
                endpoint: e.clone(),
            });
        }
    }
    if req.since_ms >= req.until_ms {
        return Err(ReportError::EmptyRange {
            since: rfc3339(req.since_ms),
            until: rfc3339(req.until_ms),
        });
    }
    Ok(site)
}

/// The experiments of a site's endpoints, as the report compares them.
fn experiments(site: &SiteConfig) -> BTreeMap<String, ExperimentSpec> {
    site.endpoints
        .iter()
        .filter_map(|(name, ep)| {
            let x = ep.experiment.as_ref()?;
            Some((
                name.clone(),
                ExperimentSpec {
                    name: x.name.clone(),
                    variants: x
                        .variants
                        .iter()
                        .map(|v| VariantSpec {
                            name: v.name.clone(),
                            weight: v.weight,
                        })
                        .collect(),
                    control: Some(x.control_name().to_string()).filter(|c| !c.is_empty()),
                    fixed_allocation: x.allocation == Allocation::Fixed,
                },
            ))
        })
        .collect()
}

/// Everything one pass over the event log gathers: the attribution, and the plays that
/// measure popularity.
struct Pass {
    attributor: Attributor,
    range: TimeWindow,
    plays: HashMap<String, f64>,
    play_ids: Deduper,
    malformed: u64,
    lines: u64,
}

impl Pass {
    fn new(window_minutes: u32, range: TimeWindow) -> Self {
        Self {
            attributor: Attributor::new(window_minutes),
            range,
            plays: HashMap::new(),
            play_ids: Deduper::new(),
            malformed: 0,
            lines: 0,
        }
    }

    /// Reads one decompressed file; its text is dropped by the caller right after.
    fn push_text(&mut self, text: &str) {
        for line in text.lines() {
            if line.trim().is_empty() {
                continue;
            }
            self.lines += 1;
            let Ok(ev) = OnlineEvent::parse(line) else {
                self.malformed += 1;
                continue;
            };
            if ev.kind == EventKind::Play
                && ev.timestamp_ms >= self.range.since_ms
                && ev.timestamp_ms < self.range.until_ms
                && self.play_ids.first_time(&ev.event_id)
            {
                *self.plays.entry(ev.id.to_string()).or_default() += 1.0;
            }
            self.attributor.push(ev);
        }
    }
}

/// What reading the event log of a report produced.
struct Read {
    attribution: Attribution,
    /// Item → distinct plays in the range.
    plays: HashMap<String, f64>,
}

/// Streams the site's event-log files overlapping `window` through attribution: files are
/// fetched and decompressed concurrently (bounded, in key order), and each file's text is
/// attributed on a blocking thread and dropped before the next, so memory holds the
/// attribution plus the files in flight, never the whole log as text.
async fn read_log<O: ObjectStore>(
    store: &O,
    site: &str,
    window: TimeWindow,
    mut pass: Pass,
) -> Result<Read, StoreError> {
    let keys = list_window(store, site, window, READ_CONCURRENCY).await?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(QUEUED_TEXTS);
    let consumer = tokio::task::spawn_blocking(move || {
        while let Some(text) = rx.blocking_recv() {
            pass.push_text(&text);
        }
        pass
    });
    // Owned keys: a stream of futures borrowing `&String` items is not `Send` for every
    // lifetime, which a server's spawned request task needs.
    let n_files = keys.len();
    let mut files = futures::stream::iter(keys)
        .map(|key: String| async move {
            let Some(body) = store.get(&key).await? else {
                // Listed then gone (lifecycle rule): nothing to read.
                return Ok(None);
            };
            let text = tokio::task::spawn_blocking(move || {
                let file = gunzip_text(&body);
                if !file.is_clean() {
                    tracing::warn!(
                        %key,
                        torn_members = file.torn_members,
                        "Skipped unreadable gzip members (a writer crashed mid-append); the rest of the file was read."
                    );
                }
                file.text
            })
            .await
            .expect("decoder task panicked");
            Ok::<_, StoreError>(Some(text))
        })
        .buffered(READ_CONCURRENCY);
    let mut failure = None;
    loop {
        match files.try_next().await {
            Ok(Some(Some(text))) => {
                if tx.send(text).await.is_err() {
                    break;
                }
            }
            Ok(Some(None)) => {}
            Ok(None) => break,
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    drop(tx);
    let pass = consumer.await.expect("attribution task panicked");
    if let Some(e) = failure {
        return Err(e);
    }
    if pass.malformed > 0 {
        tracing::warn!(
            %site,
            malformed = pass.malformed,
            lines = pass.lines,
            "Skipped event-log lines that are not flat events."
        );
    }
    tracing::debug!(%site, files = n_files, lines = pass.lines, "Read the event log for the report.");
    Ok(Read {
        attribution: pass.attributor.finish(),
        plays: pass.plays,
    })
}

/// Builds the online report of `req.site` over `[since, until)`.
///
/// - **Events read**: the site's event log from `since` to `until` plus the site's
///   attribution window, so that the clicks and plays that follow an answer served just
///   before `until` are credited to it (only answers served in the range are reported).
/// - **Experiments** (variants, weights, control, fixed or Thompson allocation) come from the
///   config of each endpoint.
/// - **Catalog** (`coverage`, `diversity`): the catalog's size and the categories of the items
///   served, when a catalog is given and holds the site; else those figures are `null`.
/// - **Popularity** (`novelty`): distinct plays (`media_play`, `article_start`) of each item in
///   the range, counted from the same events. Not the published popularity list: that is a
///   model of another window (and may not be published at all, or lives in a store the report
///   does not otherwise need), while the range's own plays measure what this audience
///   consumed while these answers were served, in the local data dir and in S3 alike.
pub async fn build_report<O: ObjectStore>(
    store: &O,
    catalog: Option<&Catalog>,
    config: &NectarConfig,
    req: &ReportRequest,
) -> Result<Report, ReportError> {
    let site = check_request(config, req)?;
    let window_ms = i64::from(site.attribution_window_minutes) * 60_000;
    let range = TimeWindow {
        since_ms: req.since_ms,
        until_ms: req.until_ms,
    };
    let read_window = TimeWindow {
        since_ms: req.since_ms,
        until_ms: req.until_ms.saturating_add(window_ms),
    };
    let pass = Pass::new(site.attribution_window_minutes, range);
    let read = read_log(store, &req.site, read_window, pass).await?;

    let mut input = ReportInput::new(req.site.clone());
    input.since_ms = Some(req.since_ms);
    input.until_ms = Some(req.until_ms);
    input.endpoint = req.endpoint.clone();
    input.experiments = experiments(site);
    if let Some(c) = catalog.filter(|c| c.len(&req.site) > 0) {
        input.catalog_size = Some(c.len(&req.site));
        input.categories = read
            .attribution
            .items
            .iter()
            .filter_map(|id| {
                let category = c.get(&req.site, id)?.category?;
                Some((id.to_string(), category))
            })
            .collect();
    }
    input.popularity = read.plays;
    let report = report(&read.attribution, &input);
    emit_report_metrics(&report);
    Ok(report)
}

/// The key of a scheduled report file: `reports/site=<site>/date=<YYYY-MM-DD>/report.<ext>`.
pub fn report_key(site: &str, date: &str, ext: &str) -> String {
    format!("{REPORTS_PREFIX}site={site}/date={date}/report.{ext}")
}

/// The scheduled report task: the report of the `[sites.<site>.report] days` days ending at
/// `now_ms`, written to the store as `report.json` then `report.html` under
/// [`report_key`] (dated by the UTC day of `now_ms`; a second run that day overwrites both).
/// JSON first: it is the contract other tools read, the HTML only a view of it.
pub async fn run_report_task<O: ObjectStore>(
    store: &O,
    catalog: Option<&Catalog>,
    config: &NectarConfig,
    site: &str,
    now_ms: i64,
) -> Result<Report, ReportError> {
    let sc = config
        .site(site)
        .ok_or_else(|| ReportError::UnknownSite(site.to_string()))?;
    let days = sc
        .report
        .as_ref()
        .ok_or_else(|| ReportError::NotScheduled(site.to_string()))?
        .days;
    let req = ReportRequest {
        site: site.to_string(),
        endpoint: None,
        since_ms: now_ms - i64::from(days) * DAY_MS,
        until_ms: now_ms,
    };
    let report = build_report(store, catalog, config, &req).await?;
    let date = DateTime::from_timestamp_millis(now_ms)
        .unwrap_or_default()
        .format("%Y-%m-%d")
        .to_string();
    store
        .put(
            &report_key(site, &date, "json"),
            Bytes::from(render_json(&report)),
        )
        .await?;
    store
        .put(
            &report_key(site, &date, "html"),
            Bytes::from(render_html(&report)),
        )
        .await?;
    tracing::info!(%site, %date, endpoints = report.endpoints.len(), "Wrote the online report.");
    Ok(report)
}

/// The report's per-variant figures as metrics (`report_ctr`, `report_served`,
/// `report_clicks`), for the dashboard's CTR per variant: set by every report built (the
/// scheduled task, `GET /v1/report`), so the gauges hold the latest report's figures.
fn emit_report_metrics(report: &Report) {
    use crate::observe::names::{self, dim};
    for ep in &report.endpoints {
        for v in &ep.variants {
            let labels = [
                (dim::SITE, report.site.clone()),
                (dim::ENDPOINT, ep.endpoint.clone()),
                (dim::VARIANT, v.variant.clone()),
            ];
            metrics::gauge!(names::REPORT_SERVED, &labels).set(v.served as f64);
            metrics::gauge!(names::REPORT_CLICKS, &labels).set(v.clicks as f64);
            if let Some(ctr) = v.ctr {
                metrics::gauge!(names::REPORT_CTR, &labels).set(ctr);
            }
        }
    }
}

/// Escapes text from the data (site, endpoint, variant names) for HTML content and attributes.
pub(crate) fn escape_html(s: &str) -> std::borrow::Cow<'_, str> {
    html_escape::encode_safe(s)
}
