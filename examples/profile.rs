//! Finds the smallest hardware a model needs: launches the model's server under each
//! budget the search picks, raises the load until latency breaks, and recommends the
//! cheapest configuration that meets the latency target, with its capacity and price.
//!
//! ```text
//! cargo run --release --example profile -- [MODEL] [--latency-ms MS] [--demand RPS] [--out DIR]
//! ```
//!
//! Flags:
//! - `MODEL`: a model file or directory (default `testdata/mlp.onnx`);
//! - `--latency-ms MS`: the target on the 99th percentile (default 5);
//! - `--demand RPS`: the request rate to size a fleet for (default: best throughput per cost);
//! - `--out DIR`: where `report.json`, `report.md` and the charts go (default
//!   `target/profile`);
//! - `--protocol http_json|http_binary|grpc` (default `http_json`);
//! - `--brute-force`: measure every configuration instead of searching;
//! - `--budget F`: the share of the space the search may measure (default 0.3);
//! - `--seed N`: the search's and the inputs' seed (default 0);
//! - `--window-ms MS`: one measurement window (default 500; perf_analyzer uses 5000);
//! - `--max-trials N`: windows per load point before giving up on stability (default 5;
//!   perf_analyzer uses 10);
//! - `--devices LIST`: `cpu`, `gpu` or `gpuN`, comma-separated (default `cpu,gpu0`);
//! - `--cores LIST`, `--batch LIST`, `--instances LIST`, `--queue-delay-us LIST`,
//!   `--gpu-fractions LIST`: the space (comma-separated);
//! - `--memory-mb N`: a memory limit for every server launched (cgroup v2 `memory.max` where
//!   writable, else `RLIMIT_AS`, which counts address space: give it room);
//! - `--input-data FILE`: requests to send (Open Inference Protocol JSON); else the model's
//!   golden file, else random data from its signature;
//! - `--shape NAME:D1,D2,...`: the shape of an input with dynamic dimensions;
//! - `--cost-core-hour X`, `--cost-gpu-hour X`: prices (defaults 0.04 and 2.50).
//!
//! Ctrl-C stops after the measurement in progress and still writes the report.

// An example's output is its point.
#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use mlops::core::ModelManifest;
use mlops::core::profile::ComputeDevice;
use mlops::profile::search::{Axes, BruteForce, HillClimb, SearchSpace, Strategy};
use mlops::profile::{
    CostModel, InputOptions, LoadConfig, Profiler, ProfilerConfig, Protocol, ServerCommand,
};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

struct Args {
    model: PathBuf,
    latency_ms: f64,
    demand: Option<f64>,
    out: PathBuf,
    protocol: Protocol,
    brute_force: bool,
    budget: f64,
    seed: u64,
    window_ms: u64,
    max_trials: usize,
    memory_mb: Option<u64>,
    axes: Axes,
    inputs: InputOptions,
    cost: CostModel,
}

fn list<T: std::str::FromStr>(flag: &str, value: &str) -> Result<Vec<T>, BoxError> {
    value
        .split(',')
        .map(|v| {
            v.trim().parse().map_err(|_| {
                format!("{flag} takes a comma-separated list of numbers, not '{value}'").into()
            })
        })
        .collect()
}

fn number<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, BoxError> {
    value
        .parse()
        .map_err(|_| format!("{flag} takes a number, not '{value}'").into())
}

fn parse() -> Result<Args, BoxError> {
    let mut args = Args {
        model: PathBuf::from("testdata/mlp.onnx"),
        latency_ms: 5.0,
        demand: None,
        out: PathBuf::from("target/profile"),
        protocol: Protocol::HttpJson,
        brute_force: false,
        budget: 0.3,
        seed: 0,
        window_ms: 500,
        max_trials: 5,
        memory_mb: None,
        axes: Axes {
            devices: vec![ComputeDevice::Cpu, ComputeDevice::Gpu { index: 0 }],
            cpu_cores: vec![1, 2],
            gpu_fractions: vec![1.0, 0.5, 0.25],
            max_batch_sizes: vec![1, 4, 8, 32],
            queue_delays_us: vec![0],
            instances: vec![1, 2],
            intra_op_threads: vec![1],
        },
        inputs: InputOptions::default(),
        cost: CostModel::default(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--latency-ms" => args.latency_ms = number(&arg, &value()?)?,
            "--demand" => args.demand = Some(number(&arg, &value()?)?),
            "--out" => args.out = value()?.into(),
            "--protocol" => {
                args.protocol = match value()?.as_str() {
                    "http_json" => Protocol::HttpJson,
                    "http_binary" => Protocol::HttpBinary,
                    "grpc" => Protocol::Grpc,
                    other => {
                        return Err(format!(
                            "--protocol takes http_json, http_binary or grpc, not '{other}'"
                        )
                        .into());
                    }
                }
            }
            "--brute-force" => args.brute_force = true,
            "--budget" => args.budget = number(&arg, &value()?)?,
            "--seed" => args.seed = number(&arg, &value()?)?,
            "--window-ms" => args.window_ms = number(&arg, &value()?)?,
            "--max-trials" => args.max_trials = number(&arg, &value()?)?,
            "--memory-mb" => args.memory_mb = Some(number(&arg, &value()?)?),
            "--devices" => {
                let v = value()?;
                args.axes.devices = v
                    .split(',')
                    .map(|d| match d.trim() {
                        "cpu" => Ok(ComputeDevice::Cpu),
                        gpu => gpu
                            .strip_prefix("gpu")
                            .and_then(|i| {
                                if i.is_empty() {
                                    Some(0)
                                } else {
                                    i.parse().ok()
                                }
                            })
                            .map(|index| ComputeDevice::Gpu { index })
                            .ok_or_else(|| {
                                format!("--devices takes cpu, gpu or gpuN, not '{gpu}'")
                            }),
                    })
                    .collect::<Result<_, _>>()?;
            }
            "--cores" => args.axes.cpu_cores = list(&arg, &value()?)?,
            "--batch" => args.axes.max_batch_sizes = list(&arg, &value()?)?,
            "--instances" => args.axes.instances = list(&arg, &value()?)?,
            "--queue-delay-us" => args.axes.queue_delays_us = list(&arg, &value()?)?,
            "--gpu-fractions" => args.axes.gpu_fractions = list(&arg, &value()?)?,
            "--input-data" => args.inputs = args.inputs.clone().with_file(value()?),
            "--shape" => {
                let v = value()?;
                let (name, dims) = v
                    .split_once(':')
                    .ok_or_else(|| format!("--shape takes NAME:D1,D2,..., not '{v}'"))?;
                args.inputs = args.inputs.clone().with_shape(name, list(&arg, dims)?);
            }
            "--cost-core-hour" => args.cost.cpu_core_hour = number(&arg, &value()?)?,
            "--cost-gpu-hour" => args.cost.gpu_hour = number(&arg, &value()?)?,
            "--help" | "-h" => {
                println!(
                    "usage: profile [MODEL] [--latency-ms MS] [--demand RPS] [--out DIR] [--protocol P] [--devices LIST] [--brute-force] [--budget F] [--seed N] [--window-ms MS] [--max-trials N] [--memory-mb N] [--cores LIST] [--batch LIST] [--instances LIST] [--queue-delay-us LIST] [--gpu-fractions LIST] [--input-data FILE] [--shape NAME:DIMS] [--cost-core-hour X] [--cost-gpu-hour X]"
                );
                std::process::exit(0);
            }
            flag if flag.starts_with("--") => {
                return Err(format!("unknown flag {flag} (try --help)").into());
            }
            model => args.model = model.into(),
        }
    }
    args.inputs = args.inputs.clone().with_seed(args.seed);
    Ok(args)
}

fn main() -> ExitCode {
    // Started by the profiler as the server under test: serve, and nothing else.
    if let Some(code) = mlops::profile::server::child_main() {
        return code;
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("profile: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("profile: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), BoxError> {
    let args = parse()?;
    let manifest = ModelManifest::from_path(&args.model)?;
    let requests = mlops::profile::input::for_model(&manifest, &args.model, &args.inputs)?;
    println!(
        "profiling {} ({}) with p99 <= {} ms over {}; requests from {}",
        manifest.name,
        manifest.entry.format,
        args.latency_ms,
        args.protocol.name(),
        requests.source
    );
    let load = LoadConfig::default()
        .with_window(Duration::from_millis(args.window_ms))
        .with_warmup(Duration::from_millis(args.window_ms.min(1000)))
        .with_seed(args.seed)
        .with_max_trials(args.max_trials)
        .with_check_outputs(requests.expected.is_some());
    let mut config = ProfilerConfig::default()
        .with_latency_target_ms(args.latency_ms)
        .with_cost(args.cost.clone())
        .with_load(load)
        .with_protocol(args.protocol)
        // A short run: one flat step ends a sweep, three open-loop rates bound the capacity
        // within about a tenth.
        .with_saturation_steps(1)
        .with_open_loop_steps(3);
    if let Some(d) = args.demand {
        config = config.with_demand_rps(d);
    }
    if let Some(mb) = args.memory_mb {
        config = config.with_memory_limit(mb << 20);
    }
    let profiler = Profiler::new(
        &args.model,
        &manifest,
        ServerCommand::current_exe()?,
        requests,
        config,
    )?
    .with_progress_bar();
    let flag = profiler.interrupt_flag();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!(
                "interrupted: finishing the measurement in progress, then writing the report"
            );
            flag.store(true, std::sync::atomic::Ordering::Release);
        }
    });
    let space = SearchSpace::grid(&args.axes);
    let mut strategy: Box<dyn Strategy> = if args.brute_force {
        Box::new(BruteForce)
    } else {
        Box::new(HillClimb::new(args.seed).with_budget_fraction(args.budget))
    };
    let report = profiler.run(space, strategy.as_mut()).await?;
    let files = mlops::profile::report::write(&report, &args.out)?;
    println!("{}", report.summary());
    println!();
    let mut unavailable: std::collections::BTreeMap<&str, usize> = Default::default();
    for c in &report.configs {
        let status = match &c.status {
            mlops::core::ConfigStatus::Measured => {
                format!("{:>8.0} req/s", c.capacity_rps.unwrap_or(0.0))
            }
            mlops::core::ConfigStatus::Failed { reason } => {
                format!("failed: {}", reason.lines().next().unwrap_or(""))
            }
            mlops::core::ConfigStatus::Unavailable { reason } => {
                *unavailable.entry(reason.as_str()).or_insert(0) += 1;
                continue;
            }
            mlops::core::ConfigStatus::Skipped => "not measured".to_owned(),
        };
        println!("  {:<28} {status}", c.id);
    }
    for (reason, n) in unavailable {
        println!("  {n} configuration(s) unavailable: {reason}");
    }
    println!();
    println!("report: {}", files.json.display());
    println!("summary: {}", files.markdown.display());
    for chart in &files.charts {
        println!("chart: {}", chart.display());
    }
    Ok(())
}
