//! KEDA's external scaler for models served by our servers: KEDA asks it (gRPC,
//! `externalscaler.ExternalScaler`) how many replicas a ScaledObject needs, and it answers
//! with the capacity policy's count, from the servers' live metrics and the model's profile.
//!
//! ```text
//! cargo run --release --example keda_scaler --features keda -- \
//!     --listen 0.0.0.0:9090 --metrics dns+http://vision-pods.default.svc:8000/metrics \
//!     [--profile REPORT.json] [--model NAME]
//! ```
//!
//! Flags:
//! - `--listen ADDR`: where KEDA reaches it (default `0.0.0.0:9090`);
//! - `--metrics URL[,URL…]`: the servers' `/metrics` pages; `dns+http://NAME:PORT/metrics`
//!   reads every address a (headless Service) name resolves to, at every scrape;
//! - `--profile REPORT.json`: the model's `mlops-profile` report (default: the bundled
//!   `testdata/profiles/vision.json` of this checkout; give one in a container); its
//!   recommended configuration's capacity and latency target drive the policy;
//! - `--model NAME`: the model (default: the profile's), answered for ScaledObjects whose
//!   trigger metadata names it, or none; a profile of another model is refused;
//! - `--min-replicas N`, `--max-replicas N`: the range answered (default 1..100).
//!
//! It logs each decision once a period. Ctrl-C stops it.

// An example's output is its point.
#![allow(clippy::print_stdout)]

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use mlops::core::ProfileReport;
use mlops::scale::PolicyConfig;
use mlops::scale::keda::KedaScaler;
use mlops::scale::policy::{Bounds, CapacityConfig};
use mlops::scale::scaler::PrometheusSource;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

struct Args {
    listen: SocketAddr,
    metrics: Vec<String>,
    profile: PathBuf,
    model: Option<String>,
    bounds: Bounds,
}

fn parse() -> Result<Args, BoxError> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut args = Args {
        listen: "0.0.0.0:9090".parse()?,
        metrics: Vec::new(),
        profile: root.join("testdata/profiles/vision.json"),
        model: None,
        bounds: Bounds::default(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{flag} needs a value (try --help)"))
        };
        let count = |v: String| {
            v.parse::<u32>()
                .map_err(|_| format!("{flag} takes a count, not '{v}'"))
        };
        match flag.as_str() {
            "--listen" => {
                let v = value()?;
                args.listen = v
                    .parse()
                    .map_err(|_| format!("--listen takes HOST:PORT, not '{v}'"))?;
            }
            "--metrics" => args.metrics.extend(
                value()?
                    .split(',')
                    .filter(|u| !u.is_empty())
                    .map(String::from),
            ),
            "--profile" => args.profile = value()?.into(),
            "--model" => args.model = Some(value()?),
            "--min-replicas" => args.bounds.min_replicas = count(value()?)?,
            "--max-replicas" => args.bounds.max_replicas = count(value()?)?,
            "--help" | "-h" => {
                println!(
                    "usage: keda_scaler [--listen ADDR] --metrics URL[,URL...] [--profile REPORT.json] [--model NAME] [--min-replicas N] [--max-replicas N]"
                );
                std::process::exit(0);
            }
            _ => return Err(format!("unknown flag {flag} (try --help)").into()),
        }
    }
    if args.metrics.is_empty() {
        return Err("--metrics URL[,URL...] is required (try --help)".into());
    }
    args.bounds.validate()?;
    Ok(args)
}

fn main() -> ExitCode {
    common::init_logs("info");
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("keda_scaler: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keda_scaler: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), BoxError> {
    let args = parse()?;
    let text = std::fs::read_to_string(&args.profile)
        .map_err(|e| format!("{}: {e}", args.profile.display()))?;
    let report = ProfileReport::from_json(&text)?;
    let model = args.model.unwrap_or_else(|| report.model.name.clone());
    let mut capacity = CapacityConfig::from_profile_of(&report, &model)?;
    capacity.bounds = args.bounds;
    let source = PrometheusSource::new(&args.metrics, model.clone())?;
    let scaler = KedaScaler::new().with_model(
        model.clone(),
        source,
        &PolicyConfig::Capacity(capacity.clone()),
    )?;
    println!(
        "scaling '{model}' on replicas of {:.1} req/s at p{} <= {} ms, {}..{} replicas; metrics from {}; listening on {}",
        capacity.capacity_rps,
        report.percentile,
        capacity.latency_target_ms,
        args.bounds.min_replicas,
        args.bounds.max_replicas,
        args.metrics.join(", "),
        args.listen
    );
    // Say what it answers, once a period.
    let watcher = scaler.clone();
    let name = model.clone();
    tokio::spawn(async move {
        let mut last = None;
        loop {
            tokio::time::sleep(capacity.period.max(Duration::from_secs(1))).await;
            if let Some(d) = watcher.decision(&name)
                && last.as_ref() != Some(&d.reason)
            {
                println!(
                    "{}: {} replicas ({:?}): {}",
                    name, d.replicas, d.action, d.reason
                );
                last = Some(d.reason);
            }
        }
    });
    scaler
        .serve(args.listen, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
