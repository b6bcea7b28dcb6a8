//! The Markdown rendering of a report: per endpoint, a table of the CTR comparison (every rate
//! with its n and 95 % interval) and one of engagement, then the sample-ratio line.

use std::fmt::Write;

use nectar_model::online::metrics::{EndpointReport, CTR_BASIS_DISPLAYED};
use nectar_model::online::stats::SRM_ALPHA;
use nectar_model::online::{Interval, Report};

/// A share as a percentage with one decimal, `–` when undefined.
pub(crate) fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_string(), |v| format!("{:.1} %", v * 100.0))
}

/// A signed percentage (a lift), `–` when undefined.
pub(crate) fn signed_pct(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_string(), |v| format!("{:+.1} %", v * 100.0))
}

/// An interval of shares as `[low, high]` in percent, `–` when undefined.
pub(crate) fn ci(v: Option<Interval>) -> String {
    v.map_or_else(
        || "–".to_string(),
        |[l, h]| format!("[{:.1}, {:.1}] %", l * 100.0, h * 100.0),
    )
}

/// An interval of plain numbers (three decimals), `–` when undefined.
pub(crate) fn num_ci(v: Option<Interval>) -> String {
    v.map_or_else(|| "–".to_string(), |[l, h]| format!("[{l:.3}, {h:.3}]"))
}

/// A signed interval (of a lift) in percent.
pub(crate) fn signed_ci(v: Option<Interval>) -> String {
    v.map_or_else(
        || "–".to_string(),
        |[l, h]| format!("[{:+.1}, {:+.1}] %", l * 100.0, h * 100.0),
    )
}

/// A figure followed by its interval; the figure alone (`–`) when it is undefined.
pub(crate) fn with_ci(value: String, interval: Option<String>) -> String {
    match interval {
        Some(i) => format!("{value} {i}"),
        None => value,
    }
}

/// A p-value with four decimals (`< 0.0001` below), `–` when undefined.
pub(crate) fn p(v: Option<f64>) -> String {
    match v {
        None => "–".to_string(),
        Some(v) if v < 1e-4 => "< 0.0001".to_string(),
        Some(v) => format!("{v:.4}"),
    }
}

/// A plain number with three decimals, `–` when undefined.
pub(crate) fn num(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_string(), |v| format!("{v:.3}"))
}

/// The sample-ratio line of an endpoint.
pub(crate) fn srm_line(e: &EndpointReport) -> String {
    match e.srm_p_value {
        None if e.experiment.is_none() => "no experiment: no sample-ratio check".to_string(),
        None => {
            "sample-ratio check: not applicable (Thompson allocation, or one variant)".to_string()
        }
        Some(v) if v < SRM_ALPHA => format!(
            "sample-ratio mismatch: p = {} < {SRM_ALPHA}: the split does not match the declared \
             weights, so the comparisons below cannot be trusted",
            p(Some(v))
        ),
        Some(v) => format!(
            "sample-ratio check: p = {} (served counts match the declared weights)",
            p(Some(v))
        ),
    }
}

/// What `ctr_basis` means for the table heading.
pub(crate) fn basis_text(e: &EndpointReport) -> &'static str {
    if e.ctr_basis == CTR_BASIS_DISPLAYED {
        "clicks / displayed"
    } else {
        "clicks / served (the apps send no displays)"
    }
}

/// Escapes text from the data for a Markdown table cell (CommonMark backslash escapes, so no
/// name can end a cell, open a link or inject HTML).
fn md(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(
            c,
            '\\' | '|' | '*' | '_' | '`' | '[' | ']' | '<' | '>' | '#' | '&' | '!'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The report as Markdown.
pub fn render_markdown(r: &Report) -> String {
    let mut out = String::new();
    let range = format!(
        "{} – {}",
        r.since.as_deref().unwrap_or("start"),
        r.until.as_deref().unwrap_or("now")
    );
    let _ = writeln!(out, "# Online report: {}\n", md(&r.site));
    let _ = writeln!(out, "Served from {range} (UTC, end exclusive).\n");
    let _ = writeln!(
        out,
        "Orphan hits (clicks on recommendations this log never served, not credited): {}\n",
        r.orphan_hits
    );
    if r.endpoints.is_empty() {
        let _ = writeln!(out, "No recommendations were served in this range.");
    }
    for e in &r.endpoints {
        let _ = write!(out, "## Endpoint {}", md(&e.endpoint));
        if let Some(x) = &e.experiment {
            let _ = write!(out, " (experiment {})", md(x));
        }
        let _ = writeln!(out, "\n\nCTR = {}; 95 % Wilson intervals; lift relative to the control (first row), Katz 95 % interval; p: two-proportion z-test; always-valid p: mSPRT over daily looks.\n", basis_text(e));
        let _ = writeln!(
            out,
            "| variant | served | displayed | clicks | CTR [95 % CI] | lift [95 % CI] | p | always-valid p |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---|---|---:|---:|");
        for (i, v) in e.variants.iter().enumerate() {
            let name = if i == 0 {
                format!("{} (control)", md(&v.variant))
            } else {
                md(&v.variant)
            };
            let _ = writeln!(
                out,
                "| {name} | {} | {} | {} | {} | {} | {} | {} |",
                v.served,
                v.displayed,
                v.clicks,
                with_ci(pct(v.ctr), v.ctr.map(|_| ci(v.ctr_ci))),
                with_ci(signed_pct(v.lift), v.lift.map(|_| signed_ci(v.lift_ci))),
                p(v.p_value),
                p(v.p_value_always_valid),
            );
        }
        let _ = writeln!(out, "\n{}\n", srm_line(e));
        let _ = writeln!(
            out,
            "| variant | plays (n = clicks) | completion [95 % CI] (n = plays) | MRR (n = clicks) | coverage (of the catalog) | diversity [95 % CI] (n = lists) | novelty (n = served) | fallback share [95 % CI] (n = served) |"
        );
        let _ = writeln!(out, "|---|---:|---|---:|---:|---:|---:|---|");
        for v in &e.variants {
            let _ = writeln!(
                out,
                "| {} | {} ({}) | {} {} ({}) | {} ({}) | {} | {} {} ({}) | {} | {} {} ({}) |",
                md(&v.variant),
                v.plays,
                v.clicks,
                pct(v.completion),
                ci(v.more.completion_ci),
                v.plays,
                num(v.mrr),
                v.clicks,
                pct(v.coverage),
                num(v.diversity),
                num_ci(v.more.diversity_ci),
                v.more.diversity_lists,
                num(v.novelty),
                pct(v.fallback_share),
                ci(v.more.fallback_share_ci),
                v.served,
            );
        }
        let _ = writeln!(out);
    }
    out
}
