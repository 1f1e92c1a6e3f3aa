//! Demand, replicas and latency over time, as SVG (plotters).

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::error::{Error, Result};
use crate::sim::SimReport;

const WIDTH: u32 = 1200;
const PANEL: u32 = 300;
const FONT: &str = "sans-serif";
/// The latency panel reaches this multiple of the target, so a collapse shows without
/// flattening the rest.
const LATENCY_HEADROOM: f64 = 3.0;
/// The replicas panel clips runs that peak above this multiple of the median run's peak.
const CLIP: f64 = 3.0;
const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type Drawn = std::result::Result<(), DrawingAreaErrorKind<std::io::Error>>;

/// Three panels over time for runs on the same trace: the demand (req/s, from the first
/// run), each run's provisioned replicas, and each run's latency percentile per interval
/// against a dashed target line (clipped at three times the target). At most eight runs
/// are drawn; no runs give a chart that says so.
pub fn timeline_chart(title: &str, runs: &[&SimReport]) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, PANEL * 3 + 40)).into_drawing_area();
        draw(&root, title, runs).map_err(|e| Error::Chart(e.to_string()))?;
        root.present().map_err(|e| Error::Chart(e.to_string()))?;
    }
    Ok(svg)
}

fn draw(root: &Area<'_>, title: &str, runs: &[&SimReport]) -> Drawn {
    root.fill(&WHITE)?;
    let area = root.titled(title, (FONT, 22))?;
    let Some(first) = runs.first() else {
        area.draw(&Text::new("no runs", (20, 20), (FONT, 18)))?;
        return Ok(());
    };
    let runs = &runs[..runs.len().min(COLORS.len())];
    let panels = area.split_evenly((3, 1));
    let end = first.duration_s.max(1.0);
    let interval = first.config.report_interval.as_secs_f64();
    let mid = |t: f64| (t + interval / 2.0).min(end);

    // Demand.
    let peak = first
        .series
        .iter()
        .map(|p| p.demand_rps)
        .fold(0.0, f64::max)
        .max(1.0);
    let mut chart = ChartBuilder::on(&panels[0])
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..end, 0.0..peak * 1.1)?;
    chart
        .configure_mesh()
        .y_desc("demand (req/s)")
        .light_line_style(RGBColor(238, 238, 238))
        .draw()?;
    chart.draw_series(LineSeries::new(
        first.series.iter().map(|p| (mid(p.t_s), p.demand_rps)),
        BLACK.stroke_width(2),
    ))?;

    // Replicas. A run far above the others (a policy that ran to its maximum) is clipped
    // at the top, so the rest stay readable.
    let mut peaks: Vec<f64> = runs
        .iter()
        .map(|r| r.series.iter().map(|p| p.replicas).fold(1.0, f64::max))
        .collect();
    peaks.sort_by(f64::total_cmp);
    let median = peaks[peaks.len() / 2];
    let most = peaks
        .iter()
        .copied()
        .filter(|p| *p <= median * CLIP)
        .fold(1.0, f64::max);
    let mut chart = ChartBuilder::on(&panels[1])
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..end, 0.0..most * 1.15)?;
    chart
        .configure_mesh()
        .y_desc("replicas")
        .light_line_style(RGBColor(238, 238, 238))
        .draw()?;
    let top = most * 1.15;
    for (run, color) in runs.iter().zip(COLORS) {
        let clipped = run.series.iter().any(|p| p.replicas > top);
        let label = if clipped {
            format!("{} (clipped)", run.policy)
        } else {
            run.policy.clone()
        };
        chart
            .draw_series(LineSeries::new(
                run.series.iter().map(|p| (mid(p.t_s), p.replicas.min(top))),
                color.stroke_width(2),
            ))?
            .label(label)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(3)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FONT, 14))
        .draw()?;

    // Latency.
    let target = first.latency_target_ms;
    let top = target * LATENCY_HEADROOM;
    let mut chart = ChartBuilder::on(&panels[2])
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..end, 0.0..top)?;
    chart
        .configure_mesh()
        .x_desc("time (s)")
        .y_desc(format!("p{} latency (ms)", first.percentile))
        .light_line_style(RGBColor(238, 238, 238))
        .draw()?;
    chart.draw_series(DashedLineSeries::new(
        [(0.0, target), (end, target)],
        8,
        5,
        BLACK.stroke_width(1),
    ))?;
    for (run, color) in runs.iter().zip(COLORS) {
        chart.draw_series(LineSeries::new(
            run.series
                .iter()
                .filter(|p| p.latency_ms.is_finite())
                .map(|p| (mid(p.t_s), p.latency_ms.min(top))),
            color.stroke_width(2),
        ))?;
    }
    Ok(())
}
