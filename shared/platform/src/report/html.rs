//! The HTML rendering of a report: one self-contained page (inline CSS and SVG; no script, no
//! font, no image or style sheet loaded from anywhere), every string from the data escaped.

use std::fmt::Write;

use nectar_model::online::metrics::{EndpointReport, CTR_BASIS_DISPLAYED};
use nectar_model::online::stats::{wilson, Counts, SRM_ALPHA};
use nectar_model::online::Report;

use super::charts;
use super::escape_html as esc;
use super::markdown::{basis_text, ci, num, num_ci, p, pct, signed_ci, signed_pct, srm_line};

const STYLE: &str = "
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1040px; color: #222; }
h1 { font-size: 1.6rem; margin-bottom: 0.2rem; }
h2 { font-size: 1.25rem; border-top: 1px solid #ccc; padding-top: 1rem; margin-top: 2rem; }
.meta { color: #555; }
table { border-collapse: collapse; margin: 0.8rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #ddd; padding: 0.3rem 0.55rem; }
th { background: #f3f3f3; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
.ci { color: #666; font-size: 0.85em; }
.srm-bad { color: #a00; font-weight: bold; }
figure { margin: 1rem 0; }
figcaption { color: #555; font-size: 0.85rem; }
svg { max-width: 100%; height: auto; }
footer { margin-top: 2rem; color: #555; font-size: 0.85rem; }
";

fn cell_n(out: &mut String, v: u64) {
    let _ = write!(out, r#"<td class="n">{v}</td>"#);
}

/// A rate and its interval; a dash alone when the rate is undefined (the control's lift).
fn cell_rate(out: &mut String, value: String, interval: Option<String>) {
    match interval {
        Some(i) => {
            let _ = write!(
                out,
                r#"<td class="n">{} <span class="ci">{}</span></td>"#,
                esc(&value),
                esc(&i)
            );
        }
        None => {
            let _ = write!(out, r#"<td class="n">{}</td>"#, esc(&value));
        }
    }
}

fn comparison_table(out: &mut String, e: &EndpointReport) {
    out.push_str(
        "<table><thead><tr><th>variant</th><th>served</th><th>displayed</th><th>clicks</th>\
         <th>CTR [95 % CI]</th><th>lift [95 % CI]</th><th>p</th><th>always-valid p</th></tr>\
         </thead><tbody>",
    );
    for (i, v) in e.variants.iter().enumerate() {
        let control = if i == 0 { " (control)" } else { "" };
        let _ = write!(out, "<tr><td>{}{control}</td>", esc(&v.variant));
        cell_n(out, v.served);
        cell_n(out, v.displayed);
        cell_n(out, v.clicks);
        cell_rate(out, pct(v.ctr), v.ctr.map(|_| ci(v.ctr_ci)));
        cell_rate(
            out,
            signed_pct(v.lift),
            v.lift.map(|_| signed_ci(v.lift_ci)),
        );
        let _ = write!(
            out,
            r#"<td class="n">{}</td><td class="n">{}</td></tr>"#,
            esc(&p(v.p_value)),
            esc(&p(v.p_value_always_valid))
        );
    }
    out.push_str("</tbody></table>");
}

fn engagement_table(out: &mut String, e: &EndpointReport) {
    out.push_str(
        "<table><thead><tr><th>variant</th><th>plays (n = clicks)</th>\
         <th>completion [95 % CI] (n = plays)</th><th>MRR (n = clicks)</th><th>coverage (of the catalog)</th>\
         <th>diversity [95 % CI] (n = lists)</th><th>novelty (n = served)</th><th>fallback share [95 % CI] (n = served)</th></tr>\
         </thead><tbody>",
    );
    for v in &e.variants {
        let _ = write!(
            out,
            r#"<tr><td>{}</td><td class="n">{} <span class="ci">({})</span></td>"#,
            esc(&v.variant),
            v.plays,
            v.clicks
        );
        cell_rate(
            out,
            pct(v.completion),
            Some(format!("{} (n = {})", ci(v.more.completion_ci), v.plays)),
        );
        let _ = write!(
            out,
            r#"<td class="n">{} <span class="ci">(n = {})</span></td><td class="n">{}</td><td class="n">{} <span class="ci">{} (n = {})</span></td><td class="n">{}</td>"#,
            esc(&num(v.mrr)),
            v.clicks,
            esc(&pct(v.coverage)),
            esc(&num(v.diversity)),
            esc(&num_ci(v.more.diversity_ci)),
            v.more.diversity_lists,
            esc(&num(v.novelty)),
        );
        cell_rate(
            out,
            pct(v.fallback_share),
            Some(format!(
                "{} (n = {})",
                ci(v.more.fallback_share_ci),
                v.served
            )),
        );
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
}

/// The daily rows behind the CTR chart, each CTR with its n and Wilson interval.
fn daily_table(out: &mut String, e: &EndpointReport) {
    out.push_str(
        "<details><summary>Daily counts (the CTR chart's points)</summary><table><thead><tr>\
         <th>date (UTC)</th><th>variant</th><th>served</th><th>displayed</th><th>clicks</th>\
         <th>CTR [95 % CI]</th></tr></thead><tbody>",
    );
    let displayed_basis = e.ctr_basis == CTR_BASIS_DISPLAYED;
    for d in &e.daily {
        let n = if displayed_basis {
            d.displayed
        } else {
            d.served
        };
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td>",
            esc(&d.date),
            esc(&d.variant)
        );
        cell_n(out, d.served);
        cell_n(out, d.displayed);
        cell_n(out, d.clicks);
        cell_rate(
            out,
            pct(d.ctr),
            d.ctr
                .map(|_| format!("{} (n = {n})", ci(wilson(Counts::new(d.clicks, n))))),
        );
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></details>");
}

fn figure(out: &mut String, svg: String, caption: &str) {
    let _ = write!(
        out,
        "<figure>{svg}<figcaption>{}</figcaption></figure>",
        esc(caption)
    );
}

fn endpoint_section(out: &mut String, e: &EndpointReport) {
    let _ = write!(out, "<section><h2>Endpoint {}", esc(&e.endpoint));
    if let Some(x) = &e.experiment {
        let _ = write!(out, " <small>(experiment {})</small>", esc(x));
    }
    out.push_str("</h2>");
    let _ = write!(
        out,
        "<p>CTR = {}; 95 % Wilson intervals; lift relative to the control (first row) with its \
         Katz 95 % interval; p: two-proportion z-test; always-valid p: mSPRT over daily looks.</p>",
        esc(basis_text(e))
    );
    let srm_class = if e.srm_p_value.is_some_and(|v| v < SRM_ALPHA) {
        "srm-bad"
    } else {
        "srm"
    };
    let _ = write!(out, r#"<p class="{srm_class}">{}</p>"#, esc(&srm_line(e)));
    comparison_table(out, e);
    engagement_table(out, e);
    let served: u64 = e.variants.iter().map(|v| v.served).sum();
    figure(
        out,
        charts::ctr_per_day(e),
        &format!(
            "CTR per UTC day and variant; the band is the 95 % Wilson interval of each day \
             (n per day in the daily counts below; n over the range in the legend; {served} \
             answers served)."
        ),
    );
    daily_table(out, e);
    figure(
        out,
        charts::lift(e),
        "Relative CTR lift of each variant against the control (hollow marker at 0), with its \
         95 % Katz interval; n per variant in the table above.",
    );
    figure(
        out,
        charts::funnel(e),
        "Answers served, displayed (a display event or a click), clicked, and played within the \
         attribution window after the click, per variant.",
    );
    out.push_str("</section>");
}

/// The report as one self-contained HTML page.
pub fn render_html(r: &Report) -> String {
    let mut out = String::with_capacity(64 * 1024);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Online report: {}</title><style>{STYLE}</style></head><body>",
        esc(&r.site)
    );
    let _ = write!(out, "<h1>Online report: {}</h1>", esc(&r.site));
    let _ = write!(
        out,
        r#"<p class="meta">Answers served from {} to {} (UTC, end exclusive). Orphan hits (clicks on recommendations this log never served, not credited): {}.</p>"#,
        esc(r.since.as_deref().unwrap_or("the start")),
        esc(r.until.as_deref().unwrap_or("now")),
        r.orphan_hits
    );
    if r.endpoints.is_empty() {
        out.push_str("<p>No recommendations were served in this range.</p>");
    }
    for e in &r.endpoints {
        endpoint_section(&mut out, e);
    }
    out.push_str(
        "<footer>Definitions: README, “Online report”, and the <code>online::metrics</code> \
         module of the nectar-model crate. Novelty is the mean popularity percentile of the \
         served items (lower = more novel); coverage and diversity need the catalog.</footer>\
         </body></html>\n",
    );
    out
}
