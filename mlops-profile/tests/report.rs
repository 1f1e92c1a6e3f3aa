//! The report's Markdown, charts and files, from a profile built by hand.

use std::collections::BTreeMap;

use mlops_core::profile::{
    ComputeDevice, ConfigProfile, ConfigStatus, Confirmation, CostModel, HostInfo, LatencySummary,
    LoadPoint, Measurement, PROFILE_SCHEMA_VERSION, ProfileReport, ProfiledModel, Recommendation,
    ReportError, ResourceSample, SearchSummary, ServingConfig,
};
use mlops_profile::report::{self, ReportFiles};

const TARGET_MS: f64 = 50.0;

fn cpu(cores: u32, batch: usize, delay_us: u64, instances: usize) -> ServingConfig {
    ServingConfig {
        device: ComputeDevice::Cpu,
        cpu_cores: cores,
        gpu_fraction: None,
        gpu_memory_bytes: None,
        max_batch_size: batch,
        max_queue_delay_us: delay_us,
        instances,
        intra_op_threads: 1,
    }
}

fn gpu_half() -> ServingConfig {
    ServingConfig {
        device: ComputeDevice::Gpu { index: 0 },
        cpu_cores: 2,
        gpu_fraction: Some(0.5),
        gpu_memory_bytes: Some(4 << 30),
        max_batch_size: 32,
        max_queue_delay_us: 100,
        instances: 1,
        intra_op_threads: 1,
    }
}

/// A closed-loop measurement at `concurrency` answering `rps` with this p99.
fn point(concurrency: usize, rps: f64, p99_ms: f64) -> Measurement {
    Measurement {
        load: LoadPoint::Concurrency { concurrency },
        throughput_rps: rps,
        latency: LatencySummary {
            mean_ms: p99_ms * 0.4,
            p50_ms: p99_ms * 0.35,
            p90_ms: p99_ms * 0.7,
            p95_ms: p99_ms * 0.85,
            p99_ms,
            max_ms: p99_ms * 1.5,
        },
        requests: (rps * 10.0) as u64,
        errors: BTreeMap::new(),
        stable: true,
        trials: 3,
        client_cpu_us_per_request: 12.5,
        resources: None,
    }
}

fn measured(config: ServingConfig, curve: Vec<Measurement>, at: usize) -> ConfigProfile {
    let cost = CostModel::default();
    ConfigProfile {
        id: config.id(),
        cost_per_hour: cost.hourly(&config),
        capacity_rps: curve.get(at).map(|m| m.throughput_rps),
        capacity_point: Some(at),
        config,
        status: ConfigStatus::Measured,
        curve,
    }
}

fn not_measured(config: ServingConfig, status: ConfigStatus) -> ConfigProfile {
    let cost = CostModel::default();
    ConfigProfile {
        id: config.id(),
        cost_per_hour: cost.hourly(&config),
        capacity_rps: None,
        capacity_point: None,
        config,
        status,
        curve: Vec::new(),
    }
}

fn samples(gpu: bool) -> Vec<ResourceSample> {
    (0..12)
        .map(|i| ResourceSample {
            t_s: f64::from(i) * 0.5,
            config: if i < 6 {
                cpu(2, 8, 0, 1).id()
            } else {
                cpu(4, 16, 500, 2).id()
            },
            server_cpu_cores: 0.5 + f64::from(i % 6) * 0.3,
            server_rss_bytes: (180 + 4 * i as u64) << 20,
            host_cpu_cores: 1.0 + f64::from(i % 6) * 0.35,
            gpu_utilization: gpu.then_some(20.0 + f64::from(i) * 5.0),
            gpu_memory_bytes: gpu.then_some(1 << 30),
            gpu_power_watts: gpu.then_some(90.0),
        })
        .collect()
}

/// Four configurations: two CPU ones measured, one that crashed, a GPU one this host
/// cannot run; two replicas of the 4-core one recommended for 800 req/s, and confirmed.
fn realistic() -> ProfileReport {
    let small = measured(
        cpu(2, 8, 0, 1),
        vec![
            point(1, 60.0, 8.1),
            point(4, 140.0, 21.7),
            point(8, 180.4, 44.9),
            point(16, 190.0, 130.0),
        ],
        2,
    );
    let large = measured(
        cpu(4, 16, 500, 2),
        vec![
            point(1, 80.0, 6.0),
            point(8, 300.0, 18.25),
            point(16, 412.3, 47.126),
            point(32, 430.0, 160.0),
        ],
        2,
    );
    let crashed = not_measured(
        cpu(8, 32, 1000, 4),
        ConfigStatus::Failed {
            reason: "server exited with signal 9 (out of memory)".to_owned(),
        },
    );
    let gpu = not_measured(
        gpu_half(),
        ConfigStatus::Unavailable {
            reason: "no GPU: not compiled with cuda".to_owned(),
        },
    );
    let recommended = large.config.clone();
    let cost = CostModel::default();
    let hourly = cost.hourly(&recommended) * 2.0;
    ProfileReport {
        schema_version: PROFILE_SCHEMA_VERSION,
        model: ProfiledModel {
            name: "resnet-tiny".to_owned(),
            version: Some(3),
            sha256: Some(
                "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".to_owned(),
            ),
            format: "onnx".to_owned(),
        },
        host: HostInfo {
            hostname: "bench-01".to_owned(),
            cpu_cores: 16,
            cpu_model: "AMD EPYC 7B13".to_owned(),
            memory_bytes: 64 << 30,
            gpus: Vec::new(),
            gpu_unavailable: Some("NVML not compiled in".to_owned()),
        },
        protocol: "http_json".to_owned(),
        latency_target_ms: TARGET_MS,
        percentile: 99,
        demand_rps: Some(800.0),
        cost_model: cost.clone(),
        configs: vec![small, crashed, large.clone(), gpu],
        recommendation: Some(Recommendation {
            config_id: large.id.clone(),
            config: recommended,
            replicas: 2,
            capacity_rps: 412.3,
            demand_rps: Some(800.0),
            cost_per_hour: hourly,
            cost_per_million: cost.per_million(&large.config, 412.3),
            meets_target: true,
            reason: "cheapest per request of the 2 configurations that meet p99 ≤ 50 ms".to_owned(),
        }),
        confirmation: Some(Confirmation {
            config_id: large.id.clone(),
            rate_rps: 400.0,
            measurement: Measurement {
                load: LoadPoint::Rate {
                    rps: 400.0,
                    poisson: true,
                },
                ..point(0, 399.2, 41.5)
            },
            window_latency_ms: vec![39.8, 41.5, 40.2],
            passed: true,
            missed_rates_rps: vec![450.0],
        }),
        search: SearchSummary {
            strategy: "brute_force".to_owned(),
            seed: 42,
            space_size: 4,
            measured: 3,
            path: vec![
                cpu(2, 8, 0, 1).id(),
                cpu(8, 32, 1000, 4).id(),
                cpu(4, 16, 500, 2).id(),
            ],
        },
        samples: samples(false),
        started_at: "2026-05-01T10:00:00Z".to_owned(),
        duration_s: 184.2,
        interrupted: false,
    }
}

/// A report in which nothing could be measured.
fn empty() -> ProfileReport {
    let mut report = realistic();
    report.configs = vec![not_measured(
        gpu_half(),
        ConfigStatus::Unavailable {
            reason: "no GPU".to_owned(),
        },
    )];
    report.recommendation = None;
    report.confirmation = None;
    report.samples = Vec::new();
    report.search.space_size = 1;
    report.search.measured = 0;
    report.search.path = Vec::new();
    report
}

/// The table row of a configuration.
fn row<'m>(markdown: &'m str, id: &str) -> &'m str {
    let start = format!("| `{id}` |");
    let rows: Vec<&str> = markdown.lines().filter(|l| l.starts_with(&start)).collect();
    assert_eq!(rows.len(), 1, "one row for {id} in\n{markdown}");
    rows[0]
}

/// The text of every `<text>` element of an SVG written by plotters.
fn texts(svg: &str) -> Vec<String> {
    svg.split("<text")
        .skip(1)
        .filter_map(|t| {
            let body = &t[t.find('>')? + 1..t.find("</text>")?];
            Some(body.trim().to_owned())
        })
        .collect()
}

fn is_svg(svg: &str) {
    assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(200)]);
    assert!(svg.trim_end().ends_with("</svg>"));
}

#[test]
fn markdown_states_the_target_and_the_recommendation() {
    let report = realistic();
    let md = report::markdown(&report);
    let id = cpu(4, 16, 500, 2).id();
    assert_eq!(id, "cpu4-b16-d500-i2-t1");

    assert!(
        md.starts_with("# Performance profile: resnet-tiny\n"),
        "{md}"
    );
    assert!(md.contains("- **Target:** p99 ≤ 50.00 ms"), "{md}");
    assert!(md.contains("- **Protocol:** http_json"), "{md}");
    assert!(md.contains("- **Demand:** 800 req/s"), "{md}");
    assert!(md.contains("GPUs: none (NVML not compiled in)"), "{md}");
    assert!(md.contains(&format!("**2 × `{id}`**")), "{md}");
    // 412.3 req/s to whole requests, 825 in all; 4 cores × 0.04 × 2 replicas = 0.32 /h;
    // 0.16 / (412.3 × 3600) × 1e6 = 0.10780 per million.
    assert!(
        md.contains("412 req/s per replica (825 req/s with 2 replicas) within p99 ≤ 50.00 ms"),
        "{md}"
    );
    assert!(
        md.contains("0.3200 USD/h, 0.1078 USD per million requests"),
        "{md}"
    );
    assert!(md.contains("- **Meets the target:** yes"), "{md}");
    assert!(
        md.contains("cheapest per request of the 2 configurations"),
        "{md}"
    );

    assert!(
        md.contains(&format!("`{id}` driven at 400 req/s: **passed**")),
        "{md}"
    );
    assert!(
        md.contains("- **Missed first at:** 450 req/s; the rate that held became the capacity"),
        "{md}"
    );
    assert!(
        md.contains("- **p99 per window (ms):** 39.80, 41.50, 40.20"),
        "{md}"
    );

    assert!(md.contains("- **Strategy:** brute_force, seed 42"), "{md}");
    assert!(md.contains("- **Measured:** 3 of 4 configurations"), "{md}");
}

#[test]
fn markdown_has_a_row_per_configuration_by_capacity() {
    let report = realistic();
    let md = report::markdown(&report);
    assert!(
        md.contains(
            "| configuration | device | cores | GPU fraction | max batch | queue delay µs | \
             instances | status | capacity req/s | p99 at capacity ms | cost/h (USD) | \
             cost per million requests (USD) |"
        ),
        "{md}"
    );

    let large = row(&md, "cpu4-b16-d500-i2-t1");
    assert_eq!(
        large,
        "| `cpu4-b16-d500-i2-t1` | cpu | 4 | — | 16 | 500 | 2 | measured | 412 | 47.13 | 0.1600 | 0.1078 |"
    );
    let small = row(&md, "cpu2-b8-d0-i1-t1");
    // 0.08 / (180.4 × 3600) × 1e6 = 0.12318.
    assert_eq!(
        small,
        "| `cpu2-b8-d0-i1-t1` | cpu | 2 | — | 8 | 0 | 1 | measured | 180 | 44.90 | 0.08000 | 0.1232 |"
    );
    let crashed = row(&md, "cpu8-b32-d1000-i4-t1");
    assert!(
        crashed.contains(
            "| failed: server exited with signal 9 (out of memory) | — | — | 0.3200 | — |"
        ),
        "{crashed}"
    );
    let gpu = row(&md, "gpu0x0.50-c2-b32-d100-i1-t1");
    // 2 × 0.04 + 0.5 × 2.50 = 1.33 per hour.
    assert_eq!(
        gpu,
        "| `gpu0x0.50-c2-b32-d100-i1-t1` | gpu0 | 2 | 0.50 | 32 | 100 | 1 | unavailable: no GPU: not compiled with cuda | — | — | 1.330 | — |"
    );

    // Highest capacity first, the unmeasured after, in the report's order.
    let order: Vec<usize> = [large, small, crashed, gpu]
        .iter()
        .map(|r| md.find(r).unwrap_or(usize::MAX))
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
}

#[test]
fn markdown_of_a_report_with_nothing_measured_says_so() {
    let md = report::markdown(&empty());
    assert!(
        md.contains("No configuration could be measured, so nothing is recommended."),
        "{md}"
    );
    assert!(md.contains("## Confirmation\n\nNot run.\n"), "{md}");
    assert!(row(&md, "gpu0x0.50-c2-b32-d100-i1-t1").contains("| unavailable: no GPU |"));
    assert!(md.contains("- **Measured:** 0 of 1 configurations"), "{md}");
}

#[test]
fn degenerate_figures_render_without_panicking() {
    let mut report = realistic();
    report.demand_rps = None;
    // A configuration whose only point is NaN, one with a single point at zero capacity,
    // one with an infinite latency, and a recommendation that misses the target.
    report.configs[0].curve = vec![point(1, f64::NAN, f64::NAN)];
    report.configs[0].capacity_rps = Some(f64::NAN);
    report.configs[2].curve = vec![point(1, 5.0, 75.0)];
    report.configs[2].capacity_rps = Some(0.0);
    report.configs[2].capacity_point = Some(0);
    report.configs[1] = measured(
        cpu(8, 32, 1000, 4),
        vec![point(1, 3.0, f64::INFINITY), point(2, 6.0, 90.0)],
        1,
    );
    report.latency_target_ms = f64::NAN;
    if let Some(rec) = report.recommendation.as_mut() {
        rec.meets_target = false;
        rec.replicas = 1;
        rec.capacity_rps = 0.0;
        rec.cost_per_million = f64::INFINITY;
        rec.reason = "no configuration meets p99 ≤ 50 ms; the closest is shown".to_owned();
    }
    report.samples[3].server_cpu_cores = f64::NAN;
    report.samples[4].t_s = f64::INFINITY;

    let md = report::markdown(&report);
    assert!(md.contains("- **Target:** p99 ≤ — ms"), "{md}");
    assert!(
        md.contains("- **Demand:** not given (sized for one replica)"),
        "{md}"
    );
    assert!(md.contains("- **Meets the target:** **no**"), "{md}");
    assert!(
        md.contains("0.3200 USD/h, — USD per million requests"),
        "{md}"
    );
    // Zero capacity: a capacity, no cost per request.
    assert!(row(&md, "cpu4-b16-d500-i2-t1").ends_with("| measured | 0 | 75.00 | 0.1600 | — |"));
    // A NaN capacity sorts last among the measured and reads as missing.
    assert!(row(&md, "cpu2-b8-d0-i1-t1").ends_with("| measured | — | — | 0.08000 | — |"));

    let capacity = report::capacity_chart(&report).expect("capacity chart");
    is_svg(&capacity);
    assert!(capacity.contains("cpu4-b16-d500-i2-t1 (recommended)"));
    assert!(capacity.contains("cpu8-b32-d1000-i4-t1"));
    // Nothing finite to draw for it, so it is left out; no target line without a target.
    assert!(!capacity.contains("cpu2-b8-d0-i1-t1"));
    assert!(!capacity.contains("target p99"));
    assert!(!capacity.contains("NaN") && !capacity.contains("inf"));

    let resources = report::resources_chart(&report).expect("resources chart");
    is_svg(&resources);
    assert!(!resources.contains("NaN") && !resources.contains("inf"));
}

#[test]
fn capacity_chart_draws_the_measured_configurations_and_the_target() {
    let report = realistic();
    let svg = report::capacity_chart(&report).expect("capacity chart");
    is_svg(&svg);
    assert!(svg.contains("resnet-tiny: throughput against p99 latency"));
    assert!(svg.contains("throughput (req/s)"));
    assert!(svg.contains("p99 latency (ms)"));
    assert!(svg.contains("target p99 ≤ 50 ms"));
    assert!(svg.contains("cpu4-b16-d500-i2-t1 (recommended)"));
    assert!(svg.contains("cpu2-b8-d0-i1-t1"));
    // Only measured configurations have curves.
    assert!(!svg.contains("cpu8-b32-d1000-i4-t1"));
    assert!(!svg.contains("gpu0x0.50"));
    // The recommended curve is the thicker one.
    assert!(svg.contains("stroke-width=\"4\""));
}

#[test]
fn capacity_chart_keeps_the_best_few_and_the_recommended_one() {
    let mut report = realistic();
    report.configs = (1..=12)
        .map(|i| {
            let rps = 50.0 * f64::from(i);
            measured(
                cpu(i, 8, 0, 1),
                vec![point(1, rps / 2.0, 10.0), point(4, rps, 40.0)],
                1,
            )
        })
        .collect();
    // The slowest is recommended (say it is the only one within a memory limit).
    let slowest = report.configs[0].clone();
    if let Some(rec) = report.recommendation.as_mut() {
        rec.config_id = slowest.id.clone();
        rec.config = slowest.config.clone();
    }
    let svg = report::capacity_chart(&report).expect("capacity chart");
    is_svg(&svg);
    let texts = texts(&svg);
    let shown: Vec<u32> = (1..=12)
        .filter(|&i| {
            let id = cpu(i, 8, 0, 1).id();
            texts.contains(&id) || texts.contains(&format!("{id} (recommended)"))
        })
        .collect();
    assert_eq!(shown, vec![1, 5, 6, 7, 8, 9, 10, 11, 12]);
}

#[test]
fn resources_chart_has_a_gpu_panel_only_with_gpu_samples() {
    let mut report = realistic();
    let cpu_only = report::resources_chart(&report).expect("resources chart");
    is_svg(&cpu_only);
    assert!(cpu_only.contains("resnet-tiny: resource use"));
    assert!(cpu_only.contains("CPU (cores)"));
    assert!(cpu_only.contains("server CPU (cores)"));
    assert!(cpu_only.contains("host CPU (cores)"));
    assert!(cpu_only.contains("server memory (RSS, MiB)"));
    assert!(!cpu_only.contains("GPU utilisation"));
    // The configurations measured are marked.
    assert!(cpu_only.contains("cpu2-b8-d0-i1-t1"));
    assert!(cpu_only.contains("cpu4-b16-d500-i2-t1"));

    report.samples = samples(true);
    let with_gpu = report::resources_chart(&report).expect("resources chart");
    is_svg(&with_gpu);
    assert!(with_gpu.contains("GPU utilisation (%)"));
    assert!(with_gpu.contains("server memory (RSS, MiB)"));
}

#[test]
fn charts_of_a_report_with_nothing_measured_say_so() {
    let report = empty();
    let capacity = report::capacity_chart(&report).expect("capacity chart");
    is_svg(&capacity);
    assert!(capacity.contains("no configuration could be measured"));
    let resources = report::resources_chart(&report).expect("resources chart");
    is_svg(&resources);
    assert!(resources.contains("no resource samples"));
}

#[test]
fn write_puts_four_files_in_a_new_folder() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("profiles").join("resnet-tiny");
    let report = realistic();
    let files = report::write(&report, &dir).expect("write");
    assert_eq!(
        files,
        ReportFiles {
            json: dir.join("report.json"),
            markdown: dir.join("report.md"),
            charts: vec![dir.join("capacity.svg"), dir.join("resources.svg")],
        }
    );

    let json = std::fs::read_to_string(&files.json).expect("report.json");
    assert_eq!(ProfileReport::from_json(&json).expect("parses"), report);
    let md = std::fs::read_to_string(&files.markdown).expect("report.md");
    assert_eq!(md, report::markdown(&report));
    for chart in &files.charts {
        is_svg(&std::fs::read_to_string(chart).expect("chart"));
    }

    // Written again over the old files, and no temporary file left behind.
    report::write(&empty(), &dir).expect("write again");
    let json = std::fs::read_to_string(&files.json).expect("report.json");
    assert_eq!(ProfileReport::from_json(&json).expect("parses"), empty());
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["capacity.svg", "report.json", "report.md", "resources.svg"]
    );
}

#[test]
fn write_into_a_file_is_an_io_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("not-a-folder");
    std::fs::write(&file, "x").expect("write");
    let err = report::write(&realistic(), &file).expect_err("a file is not a folder");
    assert!(matches!(err, mlops_profile::Error::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("not-a-folder"), "{err}");
}

#[test]
fn a_newer_schema_is_refused() {
    let mut value: serde_json::Value = serde_json::from_str(&realistic().to_json()).expect("json");
    value["schema_version"] = serde_json::json!(99);
    let err = ProfileReport::from_json(&value.to_string()).expect_err("schema 99");
    assert!(
        matches!(
            err,
            ReportError::SchemaTooNew {
                found: 99,
                supported: PROFILE_SCHEMA_VERSION
            }
        ),
        "{err:?}"
    );
}
