//! The report's charts, drawn with plotters' SVG backend into strings that the HTML page
//! inlines: CTR per day per variant with Wilson bands, relative lift per variant with its
//! interval, and the funnel served → displayed → clicked → played. Text is SVG text (no fonts
//! are loaded, the browser draws it), escaped by the backend.

use nectar_model::online::metrics::{EndpointReport, CTR_BASIS_DISPLAYED};
use nectar_model::online::stats::{wilson, Counts};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

const WIDTH: u32 = 1000;
const HEIGHT: u32 = 380;
const FONT: &str = "sans-serif";

/// Colour-blind-safe series colours (Okabe–Ito), cycled.
const COLOURS: [RGBColor; 7] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(120, 120, 120),
];

fn colour(i: usize) -> RGBColor {
    COLOURS[i % COLOURS.len()]
}

/// `n` category segments (plotters' integer ranges include their end: `0..n` has n + 1).
fn segments(
    n: usize,
) -> plotters::coord::ranged1d::SegmentedCoord<plotters::coord::types::RangedCoordusize> {
    (0..n.max(1) - 1).into_segmented()
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

/// Runs a drawing into an SVG string; a failure (none is expected from the string backend)
/// becomes a short SVG saying so, so that the page keeps one figure per chart.
fn svg(
    draw: impl FnOnce(&DrawingArea<SVGBackend<'_>, plotters::coord::Shift>) -> DrawResult,
) -> String {
    let mut out = String::new();
    let result = {
        let root = SVGBackend::with_string(&mut out, (WIDTH, HEIGHT)).into_drawing_area();
        let r = root
            .fill(&WHITE)
            .map_err(Into::into)
            .and_then(|()| draw(&root));
        r.and_then(|()| root.present().map_err(Into::into))
    };
    match result {
        Ok(()) => out,
        Err(e) => {
            tracing::warn!(error = %e, "A report chart could not be drawn.");
            format!(
                r#"<svg width="{WIDTH}" height="40" role="img"><text x="10" y="25">chart not drawn: {}</text></svg>"#,
                html_escape::encode_safe(&e.to_string())
            )
        }
    }
}

/// The denominator of an endpoint's CTR for a day's counts.
fn ctr_counts(e: &EndpointReport, clicks: u64, displayed: u64, served: u64) -> Counts {
    if e.ctr_basis == CTR_BASIS_DISPLAYED {
        Counts::new(clicks, displayed)
    } else {
        Counts::new(clicks, served)
    }
}

/// The distinct dates of the daily rows, in order.
fn dates(e: &EndpointReport) -> Vec<&str> {
    let mut d: Vec<&str> = e.daily.iter().map(|r| r.date.as_str()).collect();
    d.dedup();
    d
}

fn label_style(size: u32) -> TextStyle<'static> {
    (FONT, size).into_font().color(&BLACK)
}

/// CTR per UTC day per variant, in percent, each line with its Wilson 95 % band.
pub(crate) fn ctr_per_day(e: &EndpointReport) -> String {
    let days = dates(e);
    // A single day has no line to draw: the variants then stand side by side, each with its
    // interval, instead of on top of each other.
    let one_day = days.len() == 1;
    let mut top: f64 = 0.0;
    let series: Vec<Vec<(usize, f64, f64, f64)>> = e
        .variants
        .iter()
        .enumerate()
        .map(|(vi, v)| {
            e.daily
                .iter()
                .filter(|d| d.variant == v.variant)
                .filter_map(|d| {
                    let day = if one_day {
                        vi
                    } else {
                        days.iter().position(|x| *x == d.date)?
                    };
                    let c = ctr_counts(e, d.clicks, d.displayed, d.served);
                    let [lo, hi] = wilson(c)?;
                    top = top.max(hi);
                    Some((day, c.rate()? * 100.0, lo * 100.0, hi * 100.0))
                })
                .collect()
        })
        .collect();
    let y_top = (top * 100.0 * 1.1).max(1.0);
    svg(|root| {
        let mut chart = ChartBuilder::on(root)
            .caption(
                if one_day {
                    format!(
                        "CTR on {} per variant ({}), 95 % Wilson intervals",
                        days[0],
                        basis_short(e)
                    )
                } else {
                    format!("CTR per day ({}), 95 % Wilson bands", basis_short(e))
                },
                label_style(18),
            )
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(
                segments(if one_day {
                    e.variants.len()
                } else {
                    days.len()
                }),
                0.0..y_top,
            )?;
        let fmt_x = |x: &SegmentValue<usize>| match x {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) if one_day => e
                .variants
                .get(*i)
                .map_or(String::new(), |v| v.variant.clone()),
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
                days.get(*i).map_or(String::new(), |d| d.to_string())
            }
            SegmentValue::Last => String::new(),
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(if one_day {
                e.variants.len()
            } else {
                days.len().min(14)
            })
            .x_label_formatter(&fmt_x)
            .y_desc("CTR (%)")
            .y_label_formatter(&|y| format!("{y:.1}"))
            .label_style(label_style(13))
            .light_line_style(TRANSPARENT)
            .bold_line_style(BLACK.mix(0.12))
            .draw()?;
        for (i, (v, points)) in e.variants.iter().zip(&series).enumerate() {
            let c = colour(i);
            if points.len() > 1 {
                let band: Vec<(SegmentValue<usize>, f64)> = points
                    .iter()
                    .map(|p| (SegmentValue::CenterOf(p.0), p.3))
                    .chain(
                        points
                            .iter()
                            .rev()
                            .map(|p| (SegmentValue::CenterOf(p.0), p.2)),
                    )
                    .collect();
                chart.draw_series(std::iter::once(Polygon::new(band, c.mix(0.15).filled())))?;
            }
            if points.len() == 1 {
                // A lone day has no band to fill: its interval is drawn as a bar.
                chart.draw_series(points.iter().map(|p| {
                    ErrorBar::new_vertical(SegmentValue::CenterOf(p.0), p.2, p.1, p.3, c, 10)
                }))?;
            }
            chart
                .draw_series(LineSeries::new(
                    points.iter().map(|p| (SegmentValue::CenterOf(p.0), p.1)),
                    c.stroke_width(2),
                ))?
                .label(format!(
                    "{} (n = {})",
                    v.variant,
                    n_of(e, v.served, v.displayed)
                ))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(3))
                });
            chart.draw_series(
                points
                    .iter()
                    .map(|p| Circle::new((SegmentValue::CenterOf(p.0), p.1), 3, c.filled())),
            )?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .label_font(label_style(12))
            .draw()?;
        Ok(())
    })
}

fn basis_short(e: &EndpointReport) -> &'static str {
    if e.ctr_basis == CTR_BASIS_DISPLAYED {
        "clicks / displayed"
    } else {
        "clicks / served"
    }
}

/// The CTR denominator of a variant on the endpoint's basis.
fn n_of(e: &EndpointReport, served: u64, displayed: u64) -> u64 {
    if e.ctr_basis == CTR_BASIS_DISPLAYED {
        displayed
    } else {
        served
    }
}

/// Relative CTR lift of each variant against the control (the first, drawn at 0 and marked),
/// in percent, with its Katz 95 % interval.
pub(crate) fn lift(e: &EndpointReport) -> String {
    let names: Vec<String> = e
        .variants
        .iter()
        .enumerate()
        .map(|(i, v)| {
            if i == 0 {
                format!("{} (control)", v.variant)
            } else {
                v.variant.clone()
            }
        })
        .collect();
    let mut lo: f64 = 0.0;
    let mut hi: f64 = 0.0;
    for v in &e.variants {
        for x in v.lift.iter().chain(v.lift_ci.iter().flatten()) {
            lo = lo.min(x * 100.0);
            hi = hi.max(x * 100.0);
        }
    }
    let pad = ((hi - lo) * 0.1).max(1.0);
    let n = e.variants.len();
    svg(|root| {
        let mut chart = ChartBuilder::on(root)
            .caption(
                "Relative CTR lift vs the control, 95 % Katz intervals",
                label_style(18),
            )
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(segments(n), (lo - pad)..(hi + pad))?;
        let fmt_x = |x: &SegmentValue<usize>| match x {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
                names.get(*i).cloned().unwrap_or_default()
            }
            SegmentValue::Last => String::new(),
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n)
            .x_label_formatter(&fmt_x)
            .y_desc("lift (%)")
            .y_label_formatter(&|y| format!("{y:+.0}"))
            .label_style(label_style(13))
            .light_line_style(TRANSPARENT)
            .bold_line_style(BLACK.mix(0.12))
            .draw()?;
        chart.draw_series(DashedLineSeries::new(
            [(SegmentValue::Exact(0), 0.0), (SegmentValue::Last, 0.0)],
            6,
            4,
            BLACK.mix(0.5).stroke_width(1),
        ))?;
        // The control is the reference: a hollow marker at 0.
        chart.draw_series(std::iter::once(Circle::new(
            (SegmentValue::CenterOf(0), 0.0),
            6,
            colour(0).stroke_width(2),
        )))?;
        for (i, v) in e.variants.iter().enumerate().skip(1) {
            let c = colour(i);
            if let (Some(l), Some([a, b])) = (v.lift, v.lift_ci) {
                chart.draw_series(std::iter::once(ErrorBar::new_vertical(
                    SegmentValue::CenterOf(i),
                    a * 100.0,
                    l * 100.0,
                    b * 100.0,
                    c.stroke_width(2),
                    14,
                )))?;
            }
            if let Some(l) = v.lift {
                chart.draw_series(std::iter::once(
                    EmptyElement::at((SegmentValue::CenterOf(i), l * 100.0))
                        + Circle::new((0, 0), 5, c.filled())
                        + Text::new(format!("{:+.1} %", l * 100.0), (10, -8), label_style(12)),
                ))?;
            }
        }
        Ok(())
    })
}

/// The funnel of each variant: served → displayed → clicked → played, as grouped bars with
/// their counts.
pub(crate) fn funnel(e: &EndpointReport) -> String {
    const STAGES: [&str; 4] = ["served", "displayed", "clicked", "played"];
    let counts: Vec<[u64; 4]> = e
        .variants
        .iter()
        .map(|v| [v.served, v.displayed, v.clicks, v.plays])
        .collect();
    let top = counts.iter().flatten().copied().max().unwrap_or(0).max(1) as f64;
    svg(|root| {
        let mut chart = ChartBuilder::on(root)
            .caption(
                "Funnel: served → displayed → clicked → played (counts)",
                label_style(18),
            )
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(72)
            .build_cartesian_2d(segments(STAGES.len()), 0.0..top * 1.15)?;
        let fmt_x = |x: &SegmentValue<usize>| match x {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
                STAGES.get(*i).map_or(String::new(), |s| s.to_string())
            }
            SegmentValue::Last => String::new(),
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(STAGES.len())
            .x_label_formatter(&fmt_x)
            .y_desc("answers")
            .y_label_formatter(&|y| format!("{y:.0}"))
            .label_style(label_style(13))
            .light_line_style(TRANSPARENT)
            .bold_line_style(BLACK.mix(0.12))
            .draw()?;
        // Bars are laid out in pixels inside each stage's segment: a segmented axis has no
        // coordinate between two segments.
        let k = counts.len().max(1) as i32;
        let base = chart.backend_coord(&(SegmentValue::Exact(0), 0.0)).1;
        for (s, _) in STAGES.iter().enumerate() {
            let x0 = chart.backend_coord(&(SegmentValue::Exact(s), 0.0)).0;
            let right = if s + 1 < STAGES.len() {
                SegmentValue::Exact(s + 1)
            } else {
                SegmentValue::Last
            };
            let x1 = chart.backend_coord(&(right, 0.0)).0;
            let pad = (x1 - x0) / 10;
            let w = ((x1 - x0 - 2 * pad) / k).max(1);
            for (v, c) in counts.iter().enumerate() {
                let y = chart
                    .backend_coord(&(SegmentValue::Exact(0), c[s] as f64))
                    .1;
                let left = x0 + pad + v as i32 * w;
                root.draw(&Rectangle::new(
                    [(left + 1, y), (left + w - 1, base)],
                    colour(v).filled(),
                ))?;
                root.draw(&Text::new(
                    c[s].to_string(),
                    (left + w / 2, y - 4),
                    label_style(11).pos(Pos::new(HPos::Center, VPos::Bottom)),
                ))?;
            }
        }
        for (i, v) in e.variants.iter().enumerate() {
            let c = colour(i);
            chart
                .draw_series(std::iter::empty::<Circle<(SegmentValue<usize>, f64), i32>>())?
                .label(v.variant.clone())
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], c.filled()));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .label_font(label_style(12))
            .draw()?;
        Ok(())
    })
}
