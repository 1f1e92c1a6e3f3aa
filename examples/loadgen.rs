//! Load-tests a running Open Inference Protocol server, as perf_analyzer does: a
//! concurrency or request-rate sweep, measured in windows until stable, with throughput,
//! latency percentiles and the load generator's own CPU time per request.
//!
//! ```text
//! cargo run --release --example loadgen -- --url http://127.0.0.1:8000 --model mlp \
//!     [--protocol http_json|http_binary|grpc] [--concurrency 1,2,4 | --rate 500,1000 [--poisson]] \
//!     [--window-ms 5000] [--input MODEL_OR_REQUESTS.json] [--check] [--json]
//! ```
//!
//! `--input` takes a model file (its golden file, else random data from its signature) or
//! a request file; the default is `testdata/mlp.onnx`. `--check` checks every answer
//! against the expected outputs the input carries (decoding each response costs client
//! CPU; perf_analyzer does not check). `--json` prints one JSON object per
//! measurement instead of the table.

// An example's output is its point.
#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use mlops::core::ModelManifest;
use mlops::profile::input::{self, InputOptions};
use mlops::profile::{
    GrpcTarget, HttpEncoding, HttpTarget, LoadConfig, LoadGenerator, LoadMode, Target,
};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), BoxError> {
    let mut url = "http://127.0.0.1:8000".to_owned();
    let mut model = "mlp".to_owned();
    let mut protocol = "http_json".to_owned();
    let mut modes = Vec::new();
    let mut rates: Option<Vec<f64>> = None;
    let mut poisson = false;
    let mut window_ms = 5000u64;
    let mut input_path = PathBuf::from("testdata/mlp.onnx");
    let mut json = false;
    let mut check = false;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--url" => url = value()?,
            "--model" => model = value()?,
            "--protocol" => protocol = value()?,
            "--concurrency" => {
                for v in value()?.split(',') {
                    modes.push(LoadMode::Concurrency(
                        v.trim()
                            .parse()
                            .map_err(|_| format!("--concurrency: '{v}' is not a number"))?,
                    ));
                }
            }
            "--rate" => {
                rates = Some(
                    value()?
                        .split(',')
                        .map(|v| {
                            v.trim()
                                .parse()
                                .map_err(|_| format!("--rate: '{v}' is not a number"))
                        })
                        .collect::<Result<_, _>>()?,
                );
            }
            "--poisson" => poisson = true,
            "--window-ms" => {
                window_ms = value()?.parse().map_err(|_| "--window-ms takes a number")?
            }
            "--input" => input_path = value()?.into(),
            "--json" => json = true,
            "--check" => check = true,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    if let Some(rates) = rates {
        modes.extend(rates.into_iter().map(|rps| LoadMode::Rate { rps, poisson }));
    }
    if modes.is_empty() {
        modes.push(LoadMode::Concurrency(1));
    }
    let target: Arc<dyn Target> = match protocol.as_str() {
        "http_json" => Arc::new(HttpTarget::new(&url, &model, None, HttpEncoding::Json)?),
        "http_binary" => Arc::new(HttpTarget::new(&url, &model, None, HttpEncoding::Binary)?),
        "grpc" => Arc::new(GrpcTarget::new(&url, &model, None, 4)?),
        other => {
            return Err(
                format!("--protocol takes http_json, http_binary or grpc, not '{other}'").into(),
            );
        }
    };
    let requests = if input_path.extension().is_some_and(|e| e == "json") {
        input::from_file(&input_path)?
    } else {
        let manifest = ModelManifest::from_path(&input_path)?;
        input::for_model(&manifest, &input_path, &InputOptions::default())?
    };
    let config = LoadConfig::default()
        .with_window(Duration::from_millis(window_ms))
        .with_check_outputs(check && requests.expected.is_some());
    let generator = LoadGenerator::new(target.clone(), &requests, config)?;
    if !json {
        println!(
            "{} with requests from {}",
            target.describe(),
            requests.source
        );
        println!(
            "{:<24} {:>10} {:>9} {:>9} {:>9} {:>9} {:>7} {:>7} {:>12}",
            "load",
            "req/s",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "max ms",
            "errors",
            "stable",
            "client µs/req"
        );
    }
    for mode in modes {
        let m = generator.measure(mode).await?.measurement;
        if json {
            println!("{}", serde_json::to_string(&m)?);
        } else {
            println!(
                "{:<24} {:>10.0} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>7} {:>7} {:>12.1}",
                m.load.to_string(),
                m.throughput_rps,
                m.latency.p50_ms,
                m.latency.p90_ms,
                m.latency.p99_ms,
                m.latency.max_ms,
                m.error_count(),
                if m.stable {
                    format!("{}", m.trials)
                } else {
                    "no".into()
                },
                m.client_cpu_us_per_request
            );
        }
    }
    Ok(())
}
