//! The whole lifecycle in one run: a researcher's model goes in; out come a validated
//! production version, a server tuned from its own profile, and an autoscaling plan with a
//! price.
//!
//! ```text
//! cargo run --release --example quickstart [-- --out DIR] [--http] [--latency-ms MS]
//! ```
//!
//! 1. *standardize*: learn the bundled MLP's format, signature and files;
//! 2. *register*: version 1 (`production`), version 2 (`staging`) and a badly retrained
//!    version 3, with metrics, params and lineage, in an embedded registry;
//! 3. *validate*: version 2 against production on real inference (promoted), version 3
//!    (refused, the report says why);
//! 4. *profile*: measure four CPU configurations of the production version under a p99
//!    target, and recommend one with its capacity and price;
//! 5. *serve, self-tuned*: serve production with the recommended settings (no hand-set
//!    numbers) over HTTP and gRPC, announced in the registry's endpoint directory, and
//!    check a few answers sent through the model-id client;
//! 6. *scale*: replay traffic in the simulator (a day's curve and a train of spikes, sized
//!    to the profiled capacity) with the HPA's utilisation rule and with the capacity
//!    policy built from step 4's profile;
//! 7. write everything to the report directory (default `target/quickstart`).
//!
//! Flags: `--out DIR`; `--http` to listen on 127.0.0.1:8000 (HTTP) and :8001 (gRPC) and
//! keep serving until Ctrl-C (else on free ports, stopped at the end); `--latency-ms MS`
//! (the p99 target, default 5).

// An example's output is its point.
#![allow(clippy::print_stdout)]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mlops::core::profile::{ComputeDevice, ConfigStatus};
use mlops::core::{Lineage, ModelFormat, ModelManifest, ProfileReport, Tensor};
use mlops::profile::search::{Axes, BruteForce, SearchSpace};
use mlops::profile::tuned::TunedServing;
use mlops::profile::{
    InputOptions, LoadConfig, Profiler, ProfilerConfig, Protocol as LoadProtocol, RequestSet,
    ServerCommand,
};
use mlops::registry::{
    Change, Endpoint, Expect, NewVersion, Promotion, Protocol, Registry, ValidationPolicy,
};
use mlops::runtime::client::{Client, ClientConfig};
use mlops::runtime::http::{HttpConfig, router, serve};
use mlops::runtime::{ModelServer, ModelSpec, OrtRuntime};
use mlops::scale::chart::timeline_chart;
use mlops::scale::policy::{CapacityConfig, PolicyConfig, UtilizationConfig};
use mlops::scale::{ReplicaModel, SimReport, Simulator, Trace, TraceSpec};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const MODEL: &str = "mlp";

struct Args {
    out: PathBuf,
    http: bool,
    latency_ms: f64,
}

fn parse() -> Result<Args, BoxError> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut args = Args {
        out: root.join("target/quickstart"),
        http: false,
        latency_ms: 5.0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{flag} needs a value (try --help)"))
        };
        match flag.as_str() {
            "--out" => args.out = value()?.into(),
            "--http" => args.http = true,
            "--latency-ms" => {
                let v = value()?;
                args.latency_ms = v
                    .parse()
                    .ok()
                    .filter(|ms: &f64| ms.is_finite() && *ms > 0.0)
                    .ok_or_else(|| format!("--latency-ms takes milliseconds, not '{v}'"))?;
            }
            "--help" | "-h" => {
                println!("usage: quickstart [--out DIR] [--http] [--latency-ms MS]");
                std::process::exit(0);
            }
            _ => return Err(format!("unknown flag {flag} (try --help)").into()),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    // Started by the profiler as the server under test: serve, and nothing else.
    if let Some(code) = mlops::profile::server::child_main() {
        return code;
    }
    common::init_logs("warn");
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("quickstart: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("quickstart: {e}");
            ExitCode::FAILURE
        }
    }
}

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name)
}

fn heading(step: usize, what: &str) {
    println!("\n[{step}/7] {what}");
}

fn write(path: &Path, text: impl AsRef<[u8]>) -> Result<(), BoxError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()).into())
}

async fn run() -> Result<(), BoxError> {
    let args = parse()?;
    let started = Instant::now();
    let out = &args.out;
    // Each run starts from an empty registry: its versions are this run's.
    let registry_dir = out.join("registry");
    if registry_dir.exists() {
        std::fs::remove_dir_all(&registry_dir)
            .map_err(|e| format!("{}: {e}", registry_dir.display()))?;
    }
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;

    // 1. What the platform learns from the file alone.
    heading(1, "standardize: what the model is");
    let manifest = ModelManifest::from_path(&testdata("mlp.onnx"))?;
    let signature = manifest
        .signature
        .as_ref()
        .ok_or("the bundled model has a signature")?;
    println!(
        "  {} ({}), {} file(s), {} bytes",
        manifest.name,
        manifest.entry.format,
        manifest.files.len(),
        manifest.size_bytes()
    );
    for (kind, specs) in [("input", &signature.inputs), ("output", &signature.outputs)] {
        for spec in specs {
            let shape = spec.shape.as_ref().map_or("any rank".to_string(), |dims| {
                let dims: Vec<String> = dims.iter().map(ToString::to_string).collect();
                format!("[{}]", dims.join(", "))
            });
            println!("  {kind:<6} {} {} {shape}", spec.name, spec.dtype);
        }
    }
    write(
        &out.join("manifest.json"),
        serde_json::to_vec_pretty(&manifest)?,
    )?;

    // 2. The researcher registers three versions.
    heading(2, "register: three versions in an embedded registry");
    let registry = Registry::open(&registry_dir).await?;
    let researcher = Change::by("ana").because("trained on the March data");
    let lineage = Lineage {
        run_id: Some("run-0412".into()),
        dataset: Some("s3://datasets/clicks/2026-03".into()),
        ..Lineage::default()
    };
    let versions = [
        ("mlp.onnx", 0.912, "0.01", "the first model"),
        (
            "mlflow_onnx",
            0.914,
            "0.005",
            "retrained, exported by MLflow",
        ),
        (
            "mlp_retrained.onnx",
            0.95,
            "0.5",
            "retrained with a learning rate 100x",
        ),
    ];
    let mut registered = Vec::new();
    for (file, accuracy, lr, note) in versions {
        let mut new = NewVersion::new()
            .with_metric("accuracy", accuracy)
            .with_param("lr", lr)
            .with_lineage(lineage.clone());
        if let Some(&parent) = registered.last() {
            new = new.with_lineage(Lineage {
                parent_version: Some(parent),
                ..lineage.clone()
            });
        }
        let v = registry
            .register(MODEL, &testdata(file), new, &researcher)
            .await?;
        println!(
            "  {MODEL}/{}: {file} ({note}), accuracy {accuracy}, lr {lr}",
            v.version
        );
        registered.push(v.version);
    }
    let ops = Change::by("ops").because("initial rollout");
    let models = registry.models();
    models
        .set_alias(
            MODEL,
            "production",
            registered[0],
            Expect::Absent,
            &ops,
            None,
        )
        .await?;
    models
        .set_alias(MODEL, "staging", registered[1], Expect::Absent, &ops, None)
        .await?;
    println!(
        "  production -> {MODEL}/{}, staging -> {MODEL}/{}",
        registered[0], registered[1]
    );

    // 3. Each candidate runs against production on real inference.
    heading(
        3,
        "validate: candidates against production, on real inference",
    );
    let scratch = out.join("scratch");
    let cases = common::validation_set()?;
    let policy = ValidationPolicy::default()
        .with_tolerance(1e-5, 1e-4)
        .with_top1_agreement("y", 0.99)
        .with_max_latency_regression(1.0);
    for candidate in [
        format!("{MODEL}@staging"),
        format!("{MODEL}/{}", registered[2]),
    ] {
        let (base_v, baseline) =
            common::open_version(&registry, &format!("{MODEL}@production"), &scratch).await?;
        let (cand_v, cand) = common::open_version(&registry, &candidate, &scratch).await?;
        let outcome = registry
            .promote_if_valid(
                Promotion {
                    model: MODEL,
                    alias: "production",
                    candidate: (cand_v, &cand),
                    baseline: Some((base_v, &baseline)),
                    cases: &cases,
                    policy: &policy,
                },
                &Change::by("ci").because("validation before promotion"),
            )
            .await?;
        println!(
            "  {candidate} (version {cand_v}) against version {base_v}: {}",
            if outcome.promoted {
                "PROMOTED"
            } else {
                "REFUSED"
            }
        );
        println!("    {}", outcome.report.summary());
        write(
            &out.join(format!("validation/{MODEL}-{cand_v}.json")),
            serde_json::to_vec_pretty(&outcome.report)?,
        )?;
        cand.shutdown();
        baseline.shutdown();
    }
    let production = registry.resolve(&format!("{MODEL}@production")).await?;
    println!("  production is now {MODEL}/{}", production.version);

    // 4. How much the production version takes, and on what.
    heading(
        4,
        "profile: the cheapest configuration that meets the target",
    );
    let got = registry
        .download(&format!("{MODEL}@production"), &scratch.join("production"))
        .await?;
    let served_manifest = ModelManifest::from_path(&got.entry)?;
    let requests = golden_requests()?;
    let report = profile(&args, &got.entry, &served_manifest, requests.clone()).await?;
    let files = mlops::profile::report::write(&report, &out.join("profile"))?;
    let recommendation = report
        .recommendation
        .as_ref()
        .ok_or("the profile recommends no configuration")?;
    for c in &report.configs {
        match (&c.status, c.capacity_rps) {
            (ConfigStatus::Measured, Some(capacity)) if capacity > 0.0 => println!(
                "  {:<20} {:>8.0} req/s at p{} <= {} ms, {:.4}/h",
                c.id, capacity, report.percentile, report.latency_target_ms, c.cost_per_hour
            ),
            (ConfigStatus::Measured, _) => println!(
                "  {:<20} misses p{} <= {} ms at every load",
                c.id, report.percentile, report.latency_target_ms
            ),
            (ConfigStatus::Failed { reason } | ConfigStatus::Unavailable { reason }, _) => {
                println!("  {:<20} not measured: {reason}", c.id)
            }
            (ConfigStatus::Skipped, _) => {}
        }
    }
    if !recommendation.meets_target {
        return Err(format!(
            "{}; this machine needs a looser target: try --latency-ms {}",
            recommendation.reason,
            (args.latency_ms * 4.0).ceil()
        )
        .into());
    }
    println!(
        "  recommended: {} x{}, {:.0} req/s each, {:.4}/h, {:.4} per million requests",
        recommendation.config_id,
        recommendation.replicas,
        recommendation.capacity_rps,
        recommendation.cost_per_hour,
        recommendation.cost_per_million
    );

    // 5. Serve production as the profile says, and ask it by model id.
    heading(
        5,
        "serve, self-tuned: the profile's settings, asked by model id",
    );
    let tuned = TunedServing::from_report(&report, &served_manifest, Some(production.version))?;
    tuned.check_device(ComputeDevice::Cpu)?;
    let ort = OrtRuntime::new(tuned.ort_options())?;
    let server = Arc::new(ModelServer::new().with_runtime(ModelFormat::Onnx, Arc::new(ort)));
    let spec = tuned
        .spec()
        .with_name(MODEL)
        .with_version(production.version);
    let (s, entry) = (server.clone(), got.entry.clone());
    tokio::task::spawn_blocking(move || s.load_path(&entry, spec)).await??;
    let batcher = server.get(MODEL, Some(production.version))?;
    println!("  {}", tuned.summary());
    println!(
        "  serving {MODEL}/{} with {} instance(s), batches of up to {}",
        production.version,
        batcher.instances(),
        batcher.max_batch_size()
    );
    let (http_addr, grpc_addr): (SocketAddr, SocketAddr) = if args.http {
        ("127.0.0.1:8000".parse()?, "127.0.0.1:8001".parse()?)
    } else {
        ("127.0.0.1:0".parse()?, "127.0.0.1:0".parse()?)
    };
    let http = tokio::net::TcpListener::bind(http_addr)
        .await
        .map_err(|e| format!("listening on {http_addr}: {e}"))?;
    let grpc = tokio::net::TcpListener::bind(grpc_addr)
        .await
        .map_err(|e| format!("listening on {grpc_addr}: {e}"))?;
    let (http_addr, grpc_addr) = (http.local_addr()?, grpc.local_addr()?);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let app = router(server.clone(), HttpConfig::default());
    let http_task = tokio::spawn(serve(http, app, stopped(stop_rx.clone())));
    let grpc_service = mlops::runtime::grpc::service(server.clone(), None, ModelSpec::default());
    let grpc_task = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(grpc_service)
            .serve_with_incoming_shutdown(mlops::runtime::grpc::incoming(grpc), stopped(stop_rx)),
    );
    let mut heartbeats = Vec::new();
    for (address, protocol) in [
        (http_addr.to_string(), Protocol::OipHttp),
        (grpc_addr.to_string(), Protocol::OipGrpc),
    ] {
        let endpoint = Endpoint::new(MODEL, Some(production.version), address, protocol);
        heartbeats.push(registry.announce(endpoint, Duration::from_secs(15)).await?);
    }
    println!("  Open Inference Protocol on http://{http_addr} and grpc {grpc_addr}, announced");
    let client = Client::new(Arc::new(registry.clone()), ClientConfig::default());
    let expected = requests
        .expected
        .as_ref()
        .ok_or("the golden file has the expected outputs")?;
    let mut worst = 0.0f64;
    let t = Instant::now();
    for (inputs, want) in requests.requests.iter().zip(expected) {
        let answer = client
            .infer(&format!("{MODEL}@production"), inputs.clone())
            .await?;
        worst = worst.max(max_difference(&answer, want)?);
    }
    let sent = requests.requests.len();
    if worst > 1e-4 {
        return Err(format!("the answers differ from the golden outputs by {worst:e}").into());
    }
    println!(
        "  {sent} request(s) by model id '{MODEL}@production' in {:.1} ms: every answer matches the golden outputs (largest difference {worst:.1e})",
        t.elapsed().as_secs_f64() * 1e3
    );

    // 6. What the profile buys in autoscaling.
    heading(
        6,
        "scale: two traces, the HPA's rule against the capacity policy",
    );
    let (table, reports) = simulate(&report)?;
    println!("{table}");
    println!(
        "  Spikes shorter than a replica's start outrun every reactive policy; the HPA keeps its\n  \
         peak for 5 minutes, which pays when spikes come back every minute (docs/autoscaling.md)."
    );
    for pair in reports.chunks(2) {
        let runs: Vec<&SimReport> = pair.iter().collect();
        let name = &pair[0].trace;
        let svg = timeline_chart(&format!("{name}: demand, replicas and latency"), &runs)?;
        write(&out.join(format!("scaling/{name}.svg")), svg)?;
    }
    write(&out.join("scaling/comparison.md"), &table)?;
    let manifests = mlops::scale::manifests::generate(
        &report,
        &mlops::scale::manifests::ManifestConfig::default(),
    )?;
    let written = manifests.write(&out.join("k8s"))?;

    // 7. Where everything went.
    heading(7, "report");
    println!("  {}", out.display());
    println!("    manifest.json                  what the model is");
    println!("    validation/                    each candidate's validation report");
    println!(
        "    profile/                       {} (and {}, {} chart(s))",
        file_name(&files.json),
        file_name(&files.markdown),
        files.charts.len()
    );
    println!("    scaling/                       comparison.md, daily.svg, spikes.svg");
    println!(
        "    k8s/                           {} Kubernetes objects (kubectl apply -f)",
        written.len()
    );
    println!("    registry/                      the registry (SQLite and artifacts)");
    println!("done in {:.0} s", started.elapsed().as_secs_f64());

    if args.http {
        println!(
            "\nserving {MODEL}@production on http://{http_addr} and grpc {grpc_addr}; Ctrl-C stops"
        );
        tokio::signal::ctrl_c().await?;
    }
    server.begin_shutdown();
    for heartbeat in heartbeats {
        heartbeat.stop().await;
    }
    let _ = stop_tx.send(true);
    http_task.await??;
    grpc_task.await??;
    let s = server.clone();
    tokio::task::spawn_blocking(move || s.shutdown()).await?;
    Ok(())
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The bundled golden requests of the MLP, with their expected outputs.
fn golden_requests() -> Result<RequestSet, BoxError> {
    let path = testdata("mlp.onnx");
    let manifest = ModelManifest::from_path(&path)?;
    Ok(mlops::profile::input::for_model(
        &manifest,
        &path,
        &InputOptions::default(),
    )?)
}

/// The largest absolute difference between two answers, output by output.
fn max_difference(got: &[Tensor], want: &[Tensor]) -> Result<f64, BoxError> {
    if got.len() != want.len() {
        return Err(format!("{} outputs, {} expected", got.len(), want.len()).into());
    }
    let mut worst = 0.0f64;
    for (g, w) in got.iter().zip(want) {
        let (g, w) = (g.to_vec::<f32>()?, w.to_vec::<f32>()?);
        if g.len() != w.len() {
            return Err(format!("{} values, {} expected", g.len(), w.len()).into());
        }
        for (a, b) in g.iter().zip(&w) {
            let d = f64::from((a - b).abs());
            // A NaN answer is no match (and f64::max would pass over it).
            if !d.is_finite() {
                return Err(format!("an answer is {a}, expected {b}").into());
            }
            worst = worst.max(d);
        }
    }
    Ok(worst)
}

/// Four CPU configurations (1 or 2 cores, batches of 1 or 8), each measured in short
/// windows, and the recommendation confirmed at its capacity.
async fn profile(
    args: &Args,
    path: &Path,
    manifest: &ModelManifest,
    requests: RequestSet,
) -> Result<ProfileReport, BoxError> {
    let load = LoadConfig::default()
        .with_window(Duration::from_millis(300))
        .with_warmup(Duration::from_millis(300))
        .with_max_trials(3)
        .with_check_outputs(requests.expected.is_some());
    let config = ProfilerConfig::default()
        .with_latency_target_ms(args.latency_ms)
        .with_load(load)
        .with_protocol(LoadProtocol::HttpBinary)
        .with_saturation_steps(1)
        .with_open_loop_steps(2);
    let profiler = Profiler::new(
        path,
        manifest,
        ServerCommand::current_exe()?,
        requests,
        config,
    )?
    .with_progress_bar();
    let axes = Axes {
        devices: vec![ComputeDevice::Cpu],
        cpu_cores: vec![1, 2],
        gpu_fractions: vec![1.0],
        max_batch_sizes: vec![1, 8],
        queue_delays_us: vec![0],
        instances: vec![1],
        intra_op_threads: vec![1],
    };
    Ok(profiler
        .run(SearchSpace::grid(&axes), &mut BruteForce)
        .await?)
}

/// Five minutes of traffic sized to the profiled capacity, twice: a day's curve compressed
/// into five minutes, and 15-s spikes to 2.25 times the base every minute. Each under the
/// HPA's default utilisation rule and under the capacity policy from the same profile.
fn simulate(report: &ProfileReport) -> Result<(String, Vec<SimReport>), BoxError> {
    let capacity = CapacityConfig::from_profile(report)?.with_startup_time(Duration::from_secs(10));
    let replica = ReplicaModel::from_profile(report)?;
    let c = capacity.capacity_rps;
    let traces = [
        Trace::generate(
            &TraceSpec::Diurnal {
                mean_rps: 3.0 * c,
                amplitude: 0.7,
                period_s: 300.0,
                duration_s: 300.0,
            },
            7,
        )?
        .with_name("daily"),
        Trace::generate(
            &TraceSpec::Spikes {
                base_rps: 2.0 * c,
                spike_rps: 4.5 * c,
                every_s: 60.0,
                spike_s: 15.0,
                first_s: 20.0,
                duration_s: 300.0,
            },
            7,
        )?
        .with_name("spikes"),
    ];
    let sim = Simulator::builder(replica)
        .latency_target_ms(report.latency_target_ms)
        .percentile(report.percentile)
        .cold_start(Duration::from_secs(10))
        .initial_replicas(2)
        .seed(7)
        .build()?;
    let price = report
        .recommendation
        .as_ref()
        .map_or(0.0, |r| r.cost_per_hour / f64::from(r.replicas.max(1)));
    let mut table = format!(
        "  replicas of {:.0} req/s at {:.4}/h each, starting in 10 s\n\n  | trace | policy | within target | replica-seconds | peak replicas | price of the run |\n  |---|---|--:|--:|--:|--:|\n",
        c, price
    );
    let mut reports = Vec::new();
    for trace in &traces {
        for policy in [
            PolicyConfig::Utilization(UtilizationConfig::default()),
            PolicyConfig::Capacity(capacity.clone()),
        ] {
            let mut built = policy.build()?;
            let run = match policy {
                // The HPA reads utilisation from a metrics pipeline scraped every 15 s.
                PolicyConfig::Utilization(_) => sim
                    .with_scrape_interval(Duration::from_secs(15))
                    .run(trace, &mut built),
                _ => sim.run(trace, &mut built),
            };
            table.push_str(&format!(
                "  | {} ({:.0} req/s mean) | {} | {:.2}% | {:.0} | {} | {:.4} |\n",
                trace.name(),
                trace.mean_rps(),
                run.policy,
                run.slo_attainment * 100.0,
                run.replica_seconds,
                run.peak_replicas,
                run.replica_seconds / 3600.0 * price
            ));
            reports.push(run);
        }
    }
    Ok((table, reports))
}
