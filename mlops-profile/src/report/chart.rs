//! The SVG charts of a report, drawn with plotters.
//!
//! Plotters does not clip to the plotting area, so every series is clipped here: a point
//! outside the axes' range (a latency far past the target at saturation) is left out and
//! its line drawn up to the edge. Values that are not finite are skipped.

use mlops_core::profile::{ConfigStatus, LoadPoint, ProfileReport, ResourceSample};
use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::error::{Error, Result};

/// The most curves the capacity chart draws (the best by capacity), besides the
/// recommended configuration's.
const MAX_CURVES: usize = 8;

/// How far above the latency target the capacity chart's latency axis reaches: enough to
/// see a curve cross the target, not so far that a saturated point flattens the rest.
const LATENCY_HEADROOM: f64 = 3.0;

const WIDTH: u32 = 1200;
const CAPACITY_HEIGHT: u32 = 620;
const LEGEND_WIDTH: u32 = 330;
const PANEL_HEIGHT: u32 = 280;
const FONT: &str = "sans-serif";
const MIB: f64 = 1024.0 * 1024.0;
/// The minor grid: faint, so a dense one does not grey the plot.
const LIGHT_LINE: RGBColor = RGBColor(238, 238, 238);

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type Drawn<T = ()> = std::result::Result<T, DrawingAreaErrorKind<std::io::Error>>;

/// SVG: throughput (x, req/s) against the target percentile's latency (y, ms), one line
/// with points per measured configuration in load order, at most the eight best by
/// capacity plus the recommended one (drawn thicker); a dashed line at the latency target;
/// the legend, by configuration id, beside the plot. A report with nothing measured gives a
/// chart that says so.
///
/// # Errors
///
/// [`Error::Chart`] when plotters fails.
pub fn capacity_chart(report: &ProfileReport) -> Result<String> {
    render("capacity", (WIDTH, CAPACITY_HEIGHT), |root| {
        draw_capacity(root, report)
    })
}

/// SVG: resource use over time from the report's samples: the server's and the host's CPU
/// (cores) on one panel, the server's resident memory (MiB) on a second, GPU utilisation
/// (%) on a third when any sample has it. Thin grey lines mark where the configuration
/// being measured changes. No samples gives a chart that says "no resource samples".
///
/// # Errors
///
/// [`Error::Chart`] when plotters fails.
pub fn resources_chart(report: &ProfileReport) -> Result<String> {
    let samples: Vec<&ResourceSample> = report
        .samples
        .iter()
        .filter(|s| s.t_s.is_finite())
        .collect();
    let skipped = report.samples.len() - samples.len();
    if skipped > 0 {
        tracing::warn!(
            skipped,
            "resource samples without a finite time left out of the chart"
        );
    }
    let gpu = samples
        .iter()
        .any(|s| s.gpu_utilization.is_some_and(f64::is_finite));
    let panels: u32 = if gpu { 3 } else { 2 };
    let height = if samples.is_empty() {
        CAPACITY_HEIGHT / 2
    } else {
        PANEL_HEIGHT * panels + 50
    };
    render("resources", (WIDTH, height), |root| {
        draw_resources(root, report, &samples, gpu)
    })
}

/// Draws into an SVG string and maps plotters' errors to [`Error::Chart`].
fn render(chart: &str, size: (u32, u32), draw: impl FnOnce(&Area<'_>) -> Drawn) -> Result<String> {
    let failed = |e: DrawingAreaErrorKind<std::io::Error>| Error::Chart {
        chart: chart.to_owned(),
        reason: e.to_string(),
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(failed)?;
        draw(&root).map_err(failed)?;
        root.present().map_err(failed)?;
    }
    Ok(svg)
}

/// One configuration's curve on the capacity chart.
struct Curve<'r> {
    id: &'r str,
    capacity: f64,
    recommended: bool,
    /// Closed-loop (throughput, latency) in load order, finite and not negative.
    points: Vec<(f64, f64)>,
    /// Open-loop (throughput, latency), by throughput.
    open: Vec<(f64, f64)>,
}

/// The curves to draw: the best [`MAX_CURVES`] measured configurations by capacity, plus
/// the recommended one, the recommended one last so it is drawn on top.
fn curves(report: &ProfileReport) -> Vec<Curve<'_>> {
    let recommended = report.recommendation.as_ref().map(|r| r.config_id.as_str());
    let mut skipped = 0usize;
    let mut all: Vec<Curve<'_>> = report
        .configs
        .iter()
        .filter(|c| matches!(c.status, ConfigStatus::Measured))
        .map(|c| {
            let mut points: Vec<(f64, f64)> = Vec::new();
            let mut open: Vec<(f64, f64)> = Vec::new();
            for m in &c.curve {
                let (x, y) = (m.throughput_rps, m.latency_at(report.percentile));
                if !(x.is_finite() && y.is_finite() && x >= 0.0 && y >= 0.0) {
                    skipped += 1;
                    continue;
                }
                match m.load {
                    LoadPoint::Concurrency { .. } => points.push((x, y)),
                    LoadPoint::Rate { .. } => open.push((x, y)),
                }
            }
            open.sort_by(|a, b| a.0.total_cmp(&b.0));
            Curve {
                id: c.id.as_str(),
                capacity: c
                    .capacity_rps
                    .filter(|v| v.is_finite())
                    .unwrap_or(f64::NEG_INFINITY),
                recommended: recommended == Some(c.id.as_str()),
                points,
                open,
            }
        })
        .filter(|c| !c.points.is_empty() || !c.open.is_empty())
        .collect();
    if skipped > 0 {
        tracing::warn!(
            skipped,
            "measurements with non-finite figures left out of the capacity chart"
        );
    }
    all.sort_by(|a, b| b.capacity.total_cmp(&a.capacity));
    let mut shown: Vec<Curve<'_>> = Vec::new();
    let mut best = None;
    for (rank, curve) in all.into_iter().enumerate() {
        if curve.recommended {
            best = Some(curve);
        } else if rank < MAX_CURVES {
            shown.push(curve);
        }
    }
    shown.extend(best);
    shown
}

fn draw_capacity(root: &Area<'_>, report: &ProfileReport) -> Drawn {
    let p = report.percentile;
    let caption = format!("{}: throughput against p{p} latency", report.model.name);
    let area = root.titled(&caption, (FONT, 22))?;
    let curves = curves(report);
    if curves.is_empty() {
        return say(&area, "no configuration could be measured");
    }
    let target = Some(report.latency_target_ms).filter(|t| t.is_finite() && *t > 0.0);

    let x_max = curves
        .iter()
        .flat_map(|c| c.points.iter().chain(&c.open).map(|p| p.0))
        .fold(0.0, f64::max);
    let y_max = curves
        .iter()
        .flat_map(|c| c.points.iter().chain(&c.open).map(|p| p.1))
        .fold(0.0, f64::max);
    let y_max = match target {
        Some(t) => y_max.min(t * LATENCY_HEADROOM).max(t),
        None => y_max,
    };
    let x_top = top(x_max, 1.05);
    let y_top = top(y_max, 1.15);

    let (plot, legend) = area.split_horizontally(WIDTH - LEGEND_WIDTH);
    let mut chart = ChartBuilder::on(&plot)
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(65)
        .build_cartesian_2d(0.0..x_top, 0.0..y_top)?;
    chart
        .configure_mesh()
        .x_desc("throughput (req/s)")
        .y_desc(format!("p{p} latency (ms)"))
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 16))
        .light_line_style(LIGHT_LINE)
        .max_light_lines(4)
        .draw()?;

    let target_style = RED.stroke_width(2);
    let target_label = target.map(|t| format!("target p{p} ≤ {} ms", short(t)));
    if let (Some(t), Some(label)) = (target, &target_label) {
        chart.draw_series(DashedLineSeries::new(
            vec![(0.0, t), (x_top, t)],
            10,
            6,
            target_style,
        ))?;
        let style = TextStyle::from((FONT, 14))
            .color(&RED)
            .pos(Pos::new(HPos::Left, VPos::Bottom));
        chart.draw_series(std::iter::once(Text::new(
            label.clone(),
            (x_top * 0.01, t + y_top * 0.01),
            style,
        )))?;
    }

    let mut entries = Vec::with_capacity(curves.len());
    for (i, curve) in curves.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let width = if curve.recommended { 4 } else { 2 };
        let line = color.stroke_width(width);
        for run in clip_below(&curve.points, y_top) {
            chart.draw_series(LineSeries::new(run, line))?;
        }
        let radius = if curve.recommended { 5 } else { 3 };
        chart.draw_series(
            curve
                .points
                .iter()
                .filter(|p| p.1 <= y_top)
                .map(|&p| Circle::new(p, radius, color.filled())),
        )?;
        // Open-loop rates: dashed, hollow points.
        for run in clip_below(&curve.open, y_top) {
            chart.draw_series(DashedLineSeries::new(run, 6, 4, line))?;
        }
        chart.draw_series(
            curve
                .open
                .iter()
                .filter(|p| p.1 <= y_top)
                .map(|&p| Circle::new(p, radius, color.stroke_width(2))),
        )?;
        let label = if curve.recommended {
            format!("{} (recommended)", curve.id)
        } else {
            curve.id.to_owned()
        };
        entries.push(LegendEntry {
            label,
            style: line,
            dashed: false,
        });
    }
    if curves.iter().any(|c| !c.open.is_empty()) {
        entries.push(LegendEntry {
            label: "closed loop: solid; open loop: dashed".to_owned(),
            style: BLACK.stroke_width(1),
            dashed: true,
        });
    }
    if let Some(label) = target_label {
        entries.push(LegendEntry {
            label,
            style: target_style,
            dashed: true,
        });
    }
    draw_legend(&legend, &entries)
}

/// One line of a legend.
struct LegendEntry {
    label: String,
    style: ShapeStyle,
    /// Drawn dashed, as the latency target is.
    dashed: bool,
}

/// The legend beside a plot: a line sample (dashed where asked) and its label per entry.
fn draw_legend(area: &Area<'_>, entries: &[LegendEntry]) -> Drawn {
    let text = TextStyle::from((FONT, 14)).pos(Pos::new(HPos::Left, VPos::Center));
    for (i, entry) in entries.iter().enumerate() {
        let y = 40 + 24 * i as i32;
        let sample = vec![(8, y), (40, y)];
        if entry.dashed {
            area.draw(&DashedPathElement::new(sample, 6, 4, entry.style))?;
        } else {
            area.draw(&PathElement::new(sample, entry.style))?;
        }
        area.draw(&Text::new(entry.label.clone(), (48, y), text.clone()))?;
    }
    Ok(())
}

fn draw_resources(
    root: &Area<'_>,
    report: &ProfileReport,
    samples: &[&ResourceSample],
    gpu: bool,
) -> Drawn {
    let caption = format!("{}: resource use", report.model.name);
    let area = root.titled(&caption, (FONT, 22))?;
    if samples.is_empty() {
        return say(&area, "no resource samples");
    }
    let t0 = samples.iter().map(|s| s.t_s).fold(f64::INFINITY, f64::min);
    let t1 = samples
        .iter()
        .map(|s| s.t_s)
        .fold(f64::NEG_INFINITY, f64::max);
    let t1 = if t1 - t0 > 1e-9 { t1 } else { t0 + 1.0 };
    let times = t0..t1;

    // Where the configuration under measurement changes.
    let mut changes: Vec<(f64, &str)> = Vec::new();
    for s in samples {
        if changes.last().is_none_or(|&(_, id)| id != s.config) {
            changes.push((s.t_s, s.config.as_str()));
        }
    }

    let mut panels = vec![
        Panel {
            title: "CPU (cores)",
            unit: "cores",
            percent: false,
            label_changes: true,
            series: vec![
                Series::over(
                    "server CPU (cores)",
                    BLUE,
                    samples.iter().map(|s| Some((s.t_s, s.server_cpu_cores))),
                ),
                Series::over(
                    "host CPU (cores)",
                    RGBColor(230, 120, 0),
                    samples.iter().map(|s| Some((s.t_s, s.host_cpu_cores))),
                ),
            ],
        },
        Panel {
            title: "server memory (RSS, MiB)",
            unit: "MiB",
            percent: false,
            label_changes: false,
            series: vec![Series::over(
                "server RSS (MiB)",
                RGBColor(30, 160, 60),
                samples
                    .iter()
                    .map(|s| Some((s.t_s, s.server_rss_bytes as f64 / MIB))),
            )],
        },
    ];
    if gpu {
        panels.push(Panel {
            title: "GPU utilisation (%)",
            unit: "%",
            percent: true,
            label_changes: false,
            series: vec![Series::over(
                "GPU utilisation (%)",
                MAGENTA,
                samples
                    .iter()
                    .map(|s| s.gpu_utilization.map(|u| (s.t_s, u))),
            )],
        });
    }
    let areas = area.split_evenly((panels.len(), 1));
    for (panel, area) in panels.iter().zip(&areas) {
        draw_panel(area, panel, times.clone(), &changes)?;
    }
    Ok(())
}

/// One panel of the resources chart.
struct Panel<'a> {
    title: &'a str,
    unit: &'a str,
    /// A percentage: the axis reaches at least 100.
    percent: bool,
    /// Name the configurations at their changes (on one panel only, to keep the rest clear).
    label_changes: bool,
    series: Vec<Series<'a>>,
}

/// One line over time; `None` where a sample lacks the figure.
struct Series<'a> {
    label: &'a str,
    style: ShapeStyle,
    points: Vec<Option<(f64, f64)>>,
}

impl<'a> Series<'a> {
    fn over(
        label: &'a str,
        color: RGBColor,
        points: impl Iterator<Item = Option<(f64, f64)>>,
    ) -> Self {
        Series {
            label,
            style: color.stroke_width(2),
            points: points.collect(),
        }
    }
}

/// Draws a panel: its series, a missing or non-finite value breaking a line, and the
/// configuration changes as grey lines (labelled when asked and few enough to read).
fn draw_panel(
    area: &Area<'_>,
    panel: &Panel<'_>,
    times: std::ops::Range<f64>,
    changes: &[(f64, &str)],
) -> Drawn {
    let y_max = panel
        .series
        .iter()
        .flat_map(|s| s.points.iter().flatten())
        .map(|p| p.1)
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);
    let y_top = if panel.percent {
        top(y_max.max(100.0), 1.05)
    } else {
        top(y_max, 1.15)
    };
    let (plot, legend) = area.split_horizontally(WIDTH - LEGEND_WIDTH);
    let mut chart = ChartBuilder::on(&plot)
        .caption(panel.title, (FONT, 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(65)
        .build_cartesian_2d(times.clone(), 0.0..y_top)?;
    chart
        .configure_mesh()
        .x_desc("time (s)")
        .y_desc(panel.unit)
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 15))
        .light_line_style(LIGHT_LINE)
        .max_light_lines(4)
        .draw()?;

    let grey = RGBColor(160, 160, 160).stroke_width(1);
    for &(t, _) in changes.iter().skip(1) {
        chart.draw_series(LineSeries::new(vec![(t, 0.0), (t, y_top)], grey))?;
    }
    if panel.label_changes && changes.len() <= MAX_CURVES {
        let style = TextStyle::from((FONT, 13))
            .color(&RGBColor(110, 110, 110))
            .pos(Pos::new(HPos::Left, VPos::Bottom));
        let pad = (times.end - times.start) * 0.005;
        chart.draw_series(
            changes
                .iter()
                .map(|&(t, id)| Text::new(id.to_owned(), (t + pad, y_top * 0.02), style.clone())),
        )?;
    }

    for series in &panel.series {
        for run in split_runs(&series.points) {
            chart.draw_series(LineSeries::new(run, series.style))?;
        }
    }
    let entries: Vec<LegendEntry> = panel
        .series
        .iter()
        .map(|s| LegendEntry {
            label: s.label.to_owned(),
            style: s.style,
            dashed: false,
        })
        .collect();
    draw_legend(&legend, &entries)
}

/// A chart with nothing to plot: the reason, centred.
fn say(area: &Area<'_>, message: &str) -> Drawn {
    let (w, h) = area.dim_in_pixel();
    let style = TextStyle::from((FONT, 20))
        .color(&RGBColor(90, 90, 90))
        .pos(Pos::new(HPos::Center, VPos::Center));
    area.draw(&Text::new(
        message.to_owned(),
        (w as i32 / 2, h as i32 / 2),
        style,
    ))
}

/// The top of an axis from 0 over values up to `max`: `max` with some room, or 1 when
/// there is nothing above zero.
fn top(max: f64, room: f64) -> f64 {
    if max.is_finite() && max > 0.0 {
        max * room
    } else {
        1.0
    }
}

/// A target for a label: `50`, `12.5`, `0.75`.
fn short(value: f64) -> String {
    let text = format!("{value:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// Splits a polyline (y not negative) into the runs that lie at or below `limit`, each
/// ending or starting where it crosses the limit, so no line leaves the plotting area.
fn clip_below(points: &[(f64, f64)], limit: f64) -> Vec<Vec<(f64, f64)>> {
    let mut runs = Vec::new();
    let mut run: Vec<(f64, f64)> = Vec::new();
    let crossing = |a: (f64, f64), b: (f64, f64)| {
        let share = (limit - a.1) / (b.1 - a.1);
        (a.0 + (b.0 - a.0) * share, limit)
    };
    let mut previous: Option<(f64, f64)> = None;
    for &point in points {
        let inside = point.1 <= limit;
        match previous {
            None if inside => run.push(point),
            None => {}
            Some(prev) => match (prev.1 <= limit, inside) {
                (true, true) => run.push(point),
                (true, false) => {
                    run.push(crossing(prev, point));
                    runs.push(std::mem::take(&mut run));
                }
                (false, true) => {
                    run.push(crossing(prev, point));
                    run.push(point);
                }
                (false, false) => {}
            },
        }
        previous = Some(point);
    }
    if !run.is_empty() {
        runs.push(run);
    }
    runs
}

/// Splits a series into runs of consecutive present, finite points.
fn split_runs(points: &[Option<(f64, f64)>]) -> Vec<Vec<(f64, f64)>> {
    let mut runs = Vec::new();
    let mut run = Vec::new();
    for point in points {
        match point {
            Some((x, y)) if x.is_finite() && y.is_finite() => run.push((*x, *y)),
            _ if !run.is_empty() => runs.push(std::mem::take(&mut run)),
            _ => {}
        }
    }
    if !run.is_empty() {
        runs.push(run);
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clipping_stops_lines_at_the_edge() {
        let runs = clip_below(&[(0.0, 1.0), (10.0, 3.0), (20.0, 1.0), (30.0, 5.0)], 2.0);
        assert_eq!(
            runs,
            vec![
                vec![(0.0, 1.0), (5.0, 2.0)],
                vec![(15.0, 2.0), (20.0, 1.0), (22.5, 2.0)],
            ]
        );
        assert!(clip_below(&[(1.0, 9.0), (2.0, 8.0)], 2.0).is_empty());
    }

    #[test]
    fn runs_break_at_gaps() {
        let runs = split_runs(&[
            Some((0.0, 1.0)),
            None,
            Some((2.0, f64::NAN)),
            Some((3.0, 2.0)),
            Some((4.0, 3.0)),
        ]);
        assert_eq!(runs, vec![vec![(0.0, 1.0)], vec![(3.0, 2.0), (4.0, 3.0)]]);
    }

    #[test]
    fn target_labels_drop_trailing_zeros() {
        assert_eq!(short(50.0), "50");
        assert_eq!(short(12.5), "12.5");
        assert_eq!(short(0.75), "0.75");
    }
}
