//! Compares autoscaling policies on a request trace, in simulation: the Kubernetes HPA on
//! utilisation and Knative's KPA on concurrency (each at its defaults and at its best
//! hand-tuned target), Ray Serve's rule at its defaults, and the capacity policy built
//! straight from a profile.
//!
//! ```text
//! cargo run --release --example autoscale -- [--trace FILE] [--profile REPORT.json] [--json OUT] [--out DIR]
//! cargo run --release --example autoscale -- --manifests DIR [--profile REPORT.json]
//! ```
//!
//! Flags:
//! - `--manifests DIR`: write the Kubernetes objects for the profile instead (one YAML file
//!   each: Deployment, Service, headless Service, HPA, KEDA ScaledObject, Knative Service;
//!   see docs/autoscaling.md), with `--image IMAGE`, `--namespace NS`, `--name NAME`,
//!   `--max-replicas N`, `--keda-scaler HOST:PORT` and `--scale-to-zero S` (idle seconds
//!   before KEDA and Knative may scale to zero; off unless given);
//! - `--trace FILE`: arrival times in seconds, one per line (default
//!   `testdata/traces/bursty.txt`, ten minutes of bursty traffic);
//! - `--profile REPORT.json`: an `mlops-profile` report (default
//!   `testdata/profiles/vision.json`, `testdata/vision.onnx` profiled on a 2-core VM);
//!   the replicas are modelled on its recommended configuration;
//! - `--generated`: also run generated diurnal and step traces, sized to the profile;
//! - `--stress`: also run two traces no reactive policy follows without headroom:
//!   15-s spikes to twice the demand every 2 minutes, and demand doubling at once;
//! - `--json OUT`: one object per policy run (`trace`, `policy`, `role`, `slo_attainment`,
//!   `replica_seconds`, `scale_events`, ...);
//! - `--out DIR`: where the charts and the table go (default `target/autoscale`);
//! - `--cold-start S`: seconds from a replica's start to its first request (default 10);
//! - `--seed N`: the simulation's seed (default 0);
//! - `--check`: exit with status 2 when the capacity policy misses a target on any trace.

// An example's output is its point.
#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use mlops::core::ProfileReport;
use mlops::scale::chart::timeline_chart;
use mlops::scale::compare::{CompareConfig, Comparison, compare};
use mlops::scale::policy::{CapacityConfig, PolicyConfig, UtilizationConfig};
use mlops::scale::{ReplicaModel, SimReport, Simulator, Trace, TraceSpec};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

struct Args {
    trace: PathBuf,
    profile: PathBuf,
    generated: bool,
    stress: bool,
    json: Option<PathBuf>,
    out: PathBuf,
    cold_start_s: f64,
    seed: u64,
    check: bool,
    manifests: Option<PathBuf>,
    manifest: mlops::scale::manifests::ManifestConfig,
}

fn parse() -> Result<Args, BoxError> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut args = Args {
        trace: root.join("testdata/traces/bursty.txt"),
        profile: root.join("testdata/profiles/vision.json"),
        generated: false,
        stress: false,
        json: None,
        out: root.join("target/autoscale"),
        cold_start_s: 10.0,
        seed: 0,
        check: false,
        manifests: None,
        manifest: mlops::scale::manifests::ManifestConfig::default(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{flag} needs a value (try --help)"))
        };
        match flag.as_str() {
            "--trace" => args.trace = value()?.into(),
            "--profile" => args.profile = value()?.into(),
            "--generated" => args.generated = true,
            "--stress" => args.stress = true,
            "--check" => args.check = true,
            "--json" => args.json = Some(value()?.into()),
            "--manifests" => args.manifests = Some(value()?.into()),
            "--image" => args.manifest.image = value()?,
            "--namespace" => args.manifest.namespace = value()?,
            "--name" => args.manifest.name = Some(value()?),
            "--keda-scaler" => args.manifest.keda_scaler_address = value()?,
            "--max-replicas" => {
                let v = value()?;
                args.manifest.bounds.max_replicas =
                    v.parse().ok().filter(|n| *n >= 1).ok_or_else(|| {
                        format!("--max-replicas takes a count of 1 or more, not '{v}'")
                    })?;
            }
            "--scale-to-zero" => {
                let v = value()?;
                let s: u64 = v.parse().ok().filter(|s| *s >= 1).ok_or_else(|| {
                    format!("--scale-to-zero takes idle seconds (1 or more), not '{v}'")
                })?;
                args.manifest.scale_to_zero_after = Some(Duration::from_secs(s));
            }
            "--out" => args.out = value()?.into(),
            "--cold-start" => {
                let v = value()?;
                args.cold_start_s = v
                    .parse()
                    .ok()
                    .filter(|s: &f64| s.is_finite() && *s >= 0.0 && *s <= 3600.0)
                    .ok_or_else(|| {
                        format!("--cold-start takes seconds from 0 to 3600, not '{v}'")
                    })?;
            }
            "--seed" => {
                let v = value()?;
                args.seed = v
                    .parse()
                    .map_err(|_| format!("--seed takes a number, not '{v}'"))?;
            }
            "--help" | "-h" => {
                println!(
                    "usage: autoscale [--trace FILE] [--profile REPORT.json] [--generated] [--stress] [--json OUT] [--out DIR] [--cold-start S] [--seed N] [--check]\n       autoscale --manifests DIR [--profile REPORT.json] [--image IMAGE] [--namespace NS] [--name NAME] [--max-replicas N] [--keda-scaler HOST:PORT] [--scale-to-zero S]"
                );
                std::process::exit(0);
            }
            _ => return Err(format!("unknown flag {flag} (try --help)").into()),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(2),
        Err(e) => {
            eprintln!("autoscale: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs every comparison; `Ok(false)` when the capacity policy misses a target and
/// `--check` asks for that to fail the run.
fn run() -> Result<bool, BoxError> {
    let args = parse()?;
    let text = std::fs::read_to_string(&args.profile)
        .map_err(|e| format!("{}: {e}", args.profile.display()))?;
    let report = ProfileReport::from_json(&text)?;
    if let Some(dir) = &args.manifests {
        let manifests = mlops::scale::manifests::generate(&report, &args.manifest)?;
        let recommendation = report
            .recommendation
            .as_ref()
            .ok_or("the profile recommends nothing")?;
        println!(
            "{} in {} as {}: {:.1} req/s per pod at p{} <= {} ms; autoscalers aim at {:.1} req/s per pod ({:.0}%)",
            report.model.name,
            args.manifest.namespace,
            recommendation.config_id,
            recommendation.capacity_rps,
            report.percentile,
            report.latency_target_ms,
            manifests.target_rps,
            args.manifest.target_ratio * 100.0
        );
        for path in manifests.write(dir)? {
            println!("wrote {}", path.display());
        }
        return Ok(true);
    }
    let capacity = CapacityConfig::from_profile(&report)?
        .with_startup_time(Duration::from_secs_f64(args.cold_start_s));
    let replica = ReplicaModel::from_profile(&report)?;
    println!(
        "profile: {} on {} ({}), p{} <= {} ms; replicas of {} at {:.1} req/s each",
        report.model.name,
        report.host.hostname,
        report.host.cpu_model,
        report.percentile,
        report.latency_target_ms,
        replica.config_id.as_deref().unwrap_or("?"),
        capacity.capacity_rps
    );
    println!(
        "replica model: {} slot(s), service {:.1} ms (log-normal sigma {:.2}), queue {}, utilisation {:.0}% when saturated",
        replica.slots,
        replica.service_mean_ms,
        replica.service_sigma,
        replica.max_queue,
        replica.utilization_at_saturation * 100.0
    );

    let mut traces = vec![Trace::from_file(&args.trace)?];
    if args.generated {
        // Sized to the profile: the diurnal peak and the step's top need several replicas.
        let c = capacity.capacity_rps;
        traces.push(Trace::generate(
            &TraceSpec::Diurnal {
                mean_rps: 3.0 * c,
                amplitude: 0.7,
                period_s: 600.0,
                duration_s: 600.0,
            },
            args.seed,
        )?);
        traces.push(Trace::generate(
            &TraceSpec::Step {
                from_rps: 2.5 * c,
                to_rps: 4.0 * c,
                at_s: 120.0,
                duration_s: 600.0,
            },
            args.seed,
        )?);
    }

    if args.stress {
        let c = capacity.capacity_rps;
        traces.push(
            Trace::generate(
                &TraceSpec::Spikes {
                    base_rps: 3.0 * c,
                    spike_rps: 6.0 * c,
                    every_s: 120.0,
                    spike_s: 15.0,
                    first_s: 30.0,
                    duration_s: 600.0,
                },
                args.seed,
            )?
            .with_name("spikes"),
        );
        traces.push(
            Trace::generate(
                &TraceSpec::Step {
                    from_rps: 2.0 * c,
                    to_rps: 4.0 * c,
                    at_s: 120.0,
                    duration_s: 600.0,
                },
                args.seed,
            )?
            .with_name("doubling"),
        );
    }

    std::fs::create_dir_all(&args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;
    let mut all_met = true;
    let mut rows = Vec::new();
    let mut markdown = String::new();
    for trace in &traces {
        println!(
            "\ntrace {}: {} requests over {:.0} s (mean {:.1} req/s, peak {:.1} req/s over 10 s)",
            trace.name(),
            trace.len(),
            trace.duration_s(),
            trace.mean_rps(),
            trace.peak_rps(10.0)
        );
        let sim = simulator(replica.clone(), &report, &args, &capacity, trace)?;
        let comparison = compare(&sim, trace, &capacity, &CompareConfig::default())?;
        let table = comparison.table();
        println!("{table}");
        let verdict = verdict(&comparison);
        println!("{}", verdict.0);
        all_met &= verdict.1;
        markdown.push_str(&format!(
            "## {}\n\n{} requests over {:.0} s\n\n{table}\n{}\n\n",
            trace.name(),
            trace.len(),
            trace.duration_s(),
            verdict.0
        ));

        let headline: Vec<&SimReport> = comparison.headline().map(|r| &r.report).collect();
        let svg = timeline_chart(
            &format!("{}: demand, replicas and latency", trace.name()),
            &headline,
        )?;
        let path = args.out.join(format!("{}.svg", trace.name()));
        std::fs::write(&path, svg).map_err(|e| format!("{}: {e}", path.display()))?;
        println!("chart: {}", path.display());
        for run in &comparison.runs {
            let r = &run.report;
            rows.push(serde_json::json!({
                "trace": r.trace,
                "policy": r.policy,
                "role": run.role,
                "config": run.config,
                "slo_attainment": r.slo_attainment,
                "replica_seconds": r.replica_seconds,
                "scale_events": r.scale_events,
                "mean_replicas": r.mean_replicas,
                "peak_replicas": r.peak_replicas,
                "dropped": r.dropped,
                "latency_p99_ms": r.latency_ms,
                "cost": r.cost,
                "wall_s": r.wall_s,
            }));
        }
    }
    // The classic failure: the same replicas, had their utilisation topped out at 60% (a
    // GPU server that cannot drive its GPU harder), under the HPA's default 70% target.
    let trace = &traces[0];
    let capped = simulator(
        replica.clone().with_utilization_at_saturation(0.6),
        &report,
        &args,
        &capacity,
        trace,
    )?;
    println!(
        "
the same replicas with utilisation topping out at 60%, on {}:",
        trace.name()
    );
    let mut failure = String::from(
        "## Utilisation that tops out at 60%

",
    );
    for policy in [
        PolicyConfig::Utilization(UtilizationConfig::default()),
        PolicyConfig::Capacity(capacity.clone()),
    ] {
        let mut built = policy.build()?;
        let sim = match policy {
            PolicyConfig::Utilization(_) => {
                capped.with_scrape_interval(CompareConfig::default().utilization_scrape)
            }
            _ => capped.clone(),
        };
        let r = sim.run(trace, &mut built);
        println!("  {}", r.summary());
        failure.push_str(&format!("- {}\n", r.summary()));
    }
    markdown.push_str(&failure);

    let table = args.out.join("comparison.md");
    std::fs::write(&table, markdown).map_err(|e| format!("{}: {e}", table.display()))?;
    println!("table: {}", table.display());
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&rows)?;
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        println!("json: {}", path.display());
    }
    Ok(all_met || !args.check)
}

/// A simulator of `replica` for `trace`. Every run starts from the same steady state: the
/// replicas the first 30 s need at the profiled capacity, so no policy pays for a cold
/// fleet at time zero.
fn simulator(
    replica: ReplicaModel,
    report: &ProfileReport,
    args: &Args,
    capacity: &CapacityConfig,
    trace: &Trace,
) -> Result<Simulator, BoxError> {
    let opening = trace.arrivals().iter().take_while(|t| **t < 30.0).count() as f64 / 30.0;
    let initial = ((opening / capacity.capacity_rps).ceil() as u32).max(1);
    Ok(Simulator::builder(replica)
        .latency_target_ms(report.latency_target_ms)
        .percentile(report.percentile)
        .cold_start(Duration::from_secs_f64(args.cold_start_s))
        .initial_replicas(initial)
        .seed(args.seed)
        .build()?)
}

/// The targets: the capacity policy keeps 99% within the latency target, on at most 75%
/// of the best hand-tuned HPA's replica-seconds and no more than the best hand-tuned KPA's.
fn verdict(c: &Comparison) -> (String, bool) {
    let Some(capacity) = c.capacity() else {
        return ("no capacity run".to_string(), false);
    };
    let attained = capacity.report.slo_attainment >= c.goal;
    let hpa = c.ratio_to("utilization");
    let kpa = c.ratio_to("concurrency");
    let fmt = |r: Option<f64>| match r {
        Some(r) => format!("{:.0}%", r * 100.0),
        None => "n/a (no target reached the goal)".to_string(),
    };
    let met = attained && hpa.is_none_or(|r| r <= 0.75) && kpa.is_none_or(|r| r <= 1.0);
    (
        format!(
            "capacity: {:.2}% within target ({}); replica-seconds {} of the best HPA's (target <= 75%), {} of the best KPA's (target <= 100%): {}",
            capacity.report.slo_attainment * 100.0,
            if attained { "goal met" } else { "goal missed" },
            fmt(hpa),
            fmt(kpa),
            if met { "met" } else { "MISSED" }
        ),
        met,
    )
}
