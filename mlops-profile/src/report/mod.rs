//! A [`ProfileReport`] for people: a Markdown summary, SVG charts, and the JSON beside them.
//!
//! - [`markdown`]: the target, the recommendation and its price, the confirmation, a table
//!   of every configuration by capacity, and how the search went;
//! - [`capacity_chart`]: throughput against the target percentile's latency, one curve per
//!   measured configuration, with the latency target;
//! - [`resources_chart`]: CPU, memory and GPU use over the run;
//! - [`write()`]: all of them into a folder, each file replaced atomically.
//!
//! Figures that are not finite (a NaN from a failed measurement, an infinite cost per
//! request at zero capacity) are shown as `—` in Markdown and left out of charts, so a
//! degenerate report still renders.

mod chart;

use std::fs::{self, File};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use mlops_core::profile::{ConfigProfile, ConfigStatus, ProfileReport};

pub use chart::{capacity_chart, resources_chart};

use crate::error::{Error, Result};

/// The file names [`write()`] uses inside its folder.
const JSON_FILE: &str = "report.json";
const MARKDOWN_FILE: &str = "report.md";
const CAPACITY_FILE: &str = "capacity.svg";
const RESOURCES_FILE: &str = "resources.svg";

/// What a figure that is not a number reads as.
const MISSING: &str = "—";

/// The files written by [`write()`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportFiles {
    /// The report as JSON (`report.json`), readable with [`ProfileReport::from_json`].
    pub json: PathBuf,
    /// The Markdown summary (`report.md`).
    pub markdown: PathBuf,
    /// The SVG charts: `capacity.svg`, then `resources.svg`.
    pub charts: Vec<PathBuf>,
}

/// Creates `dir` if needed and writes `report.json` ([`ProfileReport::to_json`]),
/// `report.md` ([`markdown`]), `capacity.svg` ([`capacity_chart`]) and `resources.svg`
/// ([`resources_chart`]).
///
/// Everything is rendered before anything is written, and each file is written under a
/// temporary name and renamed into place, so an interrupted or failed write never leaves a
/// half file: a reader sees the previous file or the new one.
///
/// ```no_run
/// # fn demo(report: &mlops_core::profile::ProfileReport) -> mlops_profile::Result<()> {
/// let files = mlops_profile::report::write(report, std::path::Path::new("profile-out"))?;
/// assert!(files.json.ends_with("report.json"));
/// # Ok(())
/// # }
/// ```
pub fn write(report: &ProfileReport, dir: &Path) -> Result<ReportFiles> {
    let json = report.to_json();
    let summary = markdown(report);
    let capacity = capacity_chart(report)?;
    let resources = resources_chart(report)?;

    fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("creating report folder {}", dir.display()), e))?;
    let files = ReportFiles {
        json: write_atomic(dir, JSON_FILE, json.as_bytes())?,
        markdown: write_atomic(dir, MARKDOWN_FILE, summary.as_bytes())?,
        charts: vec![
            write_atomic(dir, CAPACITY_FILE, capacity.as_bytes())?,
            write_atomic(dir, RESOURCES_FILE, resources.as_bytes())?,
        ],
    };
    Ok(files)
}

/// Writes `contents` to `dir/name` through a temporary file in the same folder (so the
/// rename stays on one file system and is atomic).
fn write_atomic(dir: &Path, name: &str, contents: &[u8]) -> Result<PathBuf> {
    // Unique per process and call, so concurrent writers never share a temporary file.
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let target = dir.join(name);
    let temp = dir.join(format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        WRITES.fetch_add(1, Ordering::Relaxed)
    ));
    let attempt = || -> std::io::Result<()> {
        let mut file = File::create(&temp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(&temp, &target)
    };
    attempt().map_err(|e| {
        if let Err(cleanup) = fs::remove_file(&temp) {
            tracing::warn!(path = %temp.display(), error = %cleanup, "temporary report file left behind");
        }
        Error::io(format!("writing {}", target.display()), e)
    })?;
    Ok(target)
}

/// A Markdown summary a person reads: the model, host, target (`p{percentile} ≤ X ms`),
/// protocol and demand; the recommendation (replicas × configuration, capacity, cost per
/// hour and per million requests, whether it meets the target and why); the confirmation;
/// a table of every configuration, by capacity from the highest; and how the search went.
///
/// Capacities are rounded to whole requests per second, latencies to two decimals, costs to
/// four significant figures; a figure that is not finite reads `—`.
pub fn markdown(report: &ProfileReport) -> String {
    let mut out = String::new();
    header(&mut out, report);
    recommendation(&mut out, report);
    confirmation(&mut out, report);
    configurations(&mut out, report);
    search(&mut out, report);
    out
}

fn header(out: &mut String, report: &ProfileReport) {
    let model = &report.model;
    out.push_str(&format!(
        "# Performance profile: {}\n\n",
        inline(&model.name)
    ));

    let mut about = format!("`{}`", inline(&model.name));
    if let Some(version) = model.version {
        about.push_str(&format!(" version {version}"));
    }
    if !model.format.is_empty() {
        about.push_str(&format!(", {}", inline(&model.format)));
    }
    if let Some(sha) = &model.sha256 {
        let short: String = sha.chars().take(12).collect();
        about.push_str(&format!(", sha256 `{short}`"));
    }
    out.push_str(&format!("- **Model:** {about}\n"));

    let host = &report.host;
    let gpus = if host.gpus.is_empty() {
        match &host.gpu_unavailable {
            Some(why) => format!("none ({})", inline(why)),
            None => "none".to_owned(),
        }
    } else {
        inline(&host.gpus.join(", "))
    };
    out.push_str(&format!(
        "- **Host:** {}: {} CPU cores ({}), {} GiB memory; GPUs: {gpus}\n",
        inline(&host.hostname),
        host.cpu_cores,
        inline(&host.cpu_model),
        fixed(host.memory_bytes as f64 / GIB, 1),
    ));
    out.push_str(&format!("- **Target:** {}\n", target(report)));
    out.push_str(&format!("- **Protocol:** {}\n", inline(&report.protocol)));
    match report.demand_rps {
        Some(demand) => out.push_str(&format!("- **Demand:** {} req/s\n", fixed(demand, 0))),
        None => out.push_str("- **Demand:** not given (sized for one replica)\n"),
    }
    let currency = inline(&report.cost_model.currency);
    out.push_str(&format!(
        "- **Prices:** {} {currency} per CPU core-hour, {} {currency} per GPU-hour\n",
        significant(report.cost_model.cpu_core_hour),
        significant(report.cost_model.gpu_hour),
    ));
    out.push_str(&format!(
        "- **Started:** {}, took {} s\n",
        inline(&report.started_at),
        fixed(report.duration_s, 0),
    ));
    if report.interrupted {
        out.push_str(
            "\n> **Interrupted** before the search finished: the figures cover what was measured.\n",
        );
    }
}

fn recommendation(out: &mut String, report: &ProfileReport) {
    out.push_str("\n## Recommendation\n\n");
    let Some(rec) = &report.recommendation else {
        if report.measured().next().is_none() {
            out.push_str("No configuration could be measured, so nothing is recommended.\n");
        } else {
            out.push_str("No recommendation was made.\n");
        }
        return;
    };
    let currency = inline(&report.cost_model.currency);
    out.push_str(&format!("**{} × `{}`**\n\n", rec.replicas, rec.config_id));
    let total = rec.capacity_rps * f64::from(rec.replicas);
    out.push_str(&format!(
        "- **Capacity:** {} req/s per replica ({} req/s with {} replica{}) within {}\n",
        fixed(rec.capacity_rps, 0),
        fixed(total, 0),
        rec.replicas,
        if rec.replicas == 1 { "" } else { "s" },
        target(report),
    ));
    if let Some(demand) = rec.demand_rps {
        out.push_str(&format!("- **Sized for:** {} req/s\n", fixed(demand, 0)));
    }
    out.push_str(&format!(
        "- **Cost:** {} {currency}/h, {} {currency} per million requests\n",
        significant(rec.cost_per_hour),
        significant(rec.cost_per_million),
    ));
    if rec.meets_target {
        out.push_str("- **Meets the target:** yes\n");
    } else {
        out.push_str(
            "- **Meets the target:** **no**: no configuration met it; this is the closest\n",
        );
    }
    out.push_str(&format!("- **Why:** {}\n", inline(&rec.reason)));
}

fn confirmation(out: &mut String, report: &ProfileReport) {
    out.push_str("\n## Confirmation\n\n");
    let Some(c) = &report.confirmation else {
        out.push_str("Not run.\n");
        return;
    };
    let p = report.percentile;
    let verdict = if c.passed {
        format!(
            "**passed**: every stable window (the last ones measured) met {} with no failed request",
            target(report)
        )
    } else {
        format!(
            "**failed**: a stable window (the last ones measured) missed {} or a request failed",
            target(report)
        )
    };
    out.push_str(&format!(
        "`{}` driven at {} req/s: {verdict}.\n\n",
        c.config_id,
        fixed(c.rate_rps, 0),
    ));
    if !c.missed_rates_rps.is_empty() {
        let rates: Vec<String> = c.missed_rates_rps.iter().map(|r| fixed(*r, 0)).collect();
        out.push_str(&format!(
            "- **Missed first at:** {} req/s{}\n",
            rates.join(", "),
            if c.passed {
                "; the rate that held became the capacity"
            } else {
                ""
            },
        ));
    }
    let m = &c.measurement;
    out.push_str(&format!(
        "- **Answered:** {} req/s, p{p} {} ms, {} requests, {} failed\n",
        fixed(m.throughput_rps, 0),
        fixed(m.latency_at(p), 2),
        m.requests,
        m.error_count(),
    ));
    if !m.errors.is_empty() {
        let kinds: Vec<String> = m
            .errors
            .iter()
            .map(|(kind, n)| format!("{} × {n}", inline(kind)))
            .collect();
        out.push_str(&format!("- **Failures:** {}\n", kinds.join(", ")));
    }
    if !c.window_latency_ms.is_empty() {
        let windows: Vec<String> = c.window_latency_ms.iter().map(|&l| fixed(l, 2)).collect();
        out.push_str(&format!(
            "- **p{p} per window (ms):** {}\n",
            windows.join(", ")
        ));
    }
}

fn configurations(out: &mut String, report: &ProfileReport) {
    out.push_str("\n## Configurations\n\n");
    if report.configs.is_empty() {
        out.push_str("The search space held no configuration.\n");
        return;
    }
    let p = report.percentile;
    let currency = inline(&report.cost_model.currency);
    out.push_str(&format!(
        "| configuration | device | cores | GPU fraction | max batch | queue delay µs | instances \
         | status | capacity req/s | p{p} at capacity ms | cost/h ({currency}) \
         | cost per million requests ({currency}) |\n"
    ));
    out.push_str("|---|---|--:|--:|--:|--:|--:|---|--:|--:|--:|--:|\n");

    let mut rows: Vec<&ConfigProfile> = report.configs.iter().collect();
    // Highest capacity first; unmeasured (and non-finite) last, in the report's order.
    rows.sort_by(|a, b| capacity_key(b).total_cmp(&capacity_key(a)));
    for c in rows {
        let cfg = &c.config;
        let fraction = if cfg.device.is_gpu() {
            fixed(cfg.gpu_fraction.unwrap_or(1.0), 2)
        } else {
            MISSING.to_owned()
        };
        let capacity = c.capacity_rps;
        let latency = c.at_capacity().map(|m| m.latency_at(p));
        let per_million = capacity
            .filter(|&cap| cap > 0.0)
            .map(|cap| c.cost_per_hour / (cap * 3600.0) * 1e6);
        out.push_str(&format!(
            "| `{}` | {} | {} | {fraction} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            c.id,
            cfg.device,
            cfg.cpu_cores,
            cfg.max_batch_size,
            cfg.max_queue_delay_us,
            cfg.instances,
            cell(&status(&c.status)),
            capacity.map_or_else(|| MISSING.to_owned(), |v| fixed(v, 0)),
            latency.map_or_else(|| MISSING.to_owned(), |v| fixed(v, 2)),
            significant(c.cost_per_hour),
            per_million.map_or_else(|| MISSING.to_owned(), significant),
        ));
    }
}

fn search(out: &mut String, report: &ProfileReport) {
    let s = &report.search;
    out.push_str("\n## Search\n\n");
    out.push_str(&format!(
        "- **Strategy:** {}, seed {}\n",
        inline(&s.strategy),
        s.seed
    ));
    out.push_str(&format!(
        "- **Measured:** {} of {} configurations\n",
        s.measured, s.space_size
    ));
    if !s.path.is_empty() {
        let path: Vec<String> = s.path.iter().map(|id| format!("`{id}`")).collect();
        out.push_str(&format!("- **Order:** {}\n", path.join(" → ")));
    }
}

/// `p99 ≤ 50.00 ms`.
fn target(report: &ProfileReport) -> String {
    format!(
        "p{} ≤ {} ms",
        report.percentile,
        fixed(report.latency_target_ms, 2)
    )
}

/// What became of a configuration, in the table's words.
fn status(status: &ConfigStatus) -> String {
    match status {
        ConfigStatus::Measured => "measured".to_owned(),
        ConfigStatus::Failed { reason } => format!("failed: {reason}"),
        ConfigStatus::Unavailable { reason } => format!("unavailable: {reason}"),
        ConfigStatus::Skipped => "skipped".to_owned(),
    }
}

/// Sort key: the capacity, or below every capacity when there is none or it is not finite.
fn capacity_key(c: &ConfigProfile) -> f64 {
    c.capacity_rps
        .filter(|v| v.is_finite())
        .unwrap_or(f64::NEG_INFINITY)
}

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// `value` with `decimals` decimals, or `—` when it is not finite.
fn fixed(value: f64, decimals: usize) -> String {
    if value.is_finite() {
        format!("{value:.decimals$}")
    } else {
        MISSING.to_owned()
    }
}

/// `value` to four significant figures (`0.3200`, `0.0001778`, `1235`, `123500`; in
/// exponent form when very small or large), or `—` when it is not finite.
fn significant(value: f64) -> String {
    const FIGURES: i32 = 4;
    if !value.is_finite() {
        return MISSING.to_owned();
    }
    if value == 0.0 {
        return "0".to_owned();
    }
    if !(1e-9..1e15).contains(&value.abs()) {
        // Too many zeros to read (and past what a power of ten below holds exactly).
        return format!("{value:.3e}");
    }
    let decimals = |v: f64| FIGURES - 1 - v.abs().log10().floor() as i32;
    let places = decimals(value);
    // Divide by a whole power of ten rather than multiply by a fraction, which is inexact.
    let rounded = if places >= 0 {
        let scale = 10f64.powi(places);
        (value * scale).round() / scale
    } else {
        let scale = 10f64.powi(-places);
        (value / scale).round() * scale
    };
    // Rounding may carry into a new digit (9.9996 → 10.00): count from the rounded value.
    let places = decimals(rounded);
    if places > 0 {
        format!("{rounded:.*}", places as usize)
    } else {
        format!("{rounded:.0}")
    }
}

/// Text that goes into a table cell: no line breaks, pipes escaped.
fn cell(text: &str) -> String {
    inline(text).replace('|', "\\|")
}

/// Text that goes on one Markdown line.
fn inline(text: &str) -> String {
    text.split(['\r', '\n'])
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn significant_keeps_four_figures() {
        assert_eq!(significant(0.32), "0.3200");
        assert_eq!(significant(0.000_177_777), "0.0001778");
        assert_eq!(significant(1234.5), "1235");
        assert_eq!(significant(123_456.0), "123500");
        assert_eq!(significant(9.9996), "10.00");
        assert_eq!(significant(-2.5), "-2.500");
        assert_eq!(significant(0.0), "0");
        assert_eq!(significant(1.5e-310), "1.500e-310");
        assert_eq!(significant(2.0e20), "2.000e20");
        assert_eq!(significant(f64::INFINITY), MISSING);
        assert_eq!(significant(f64::NAN), MISSING);
    }

    #[test]
    fn fixed_hides_non_finite() {
        assert_eq!(fixed(12.345, 2), "12.35");
        assert_eq!(fixed(249.6, 0), "250");
        assert_eq!(fixed(f64::NAN, 2), MISSING);
    }

    #[test]
    fn cells_stay_on_one_line() {
        assert_eq!(cell("exit 1 | oom\nkilled"), "exit 1 \\| oom killed");
    }
}
