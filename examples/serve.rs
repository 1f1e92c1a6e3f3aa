//! Serves models over the Open Inference Protocol: HTTP/REST on 127.0.0.1:8000, gRPC on
//! :8001 and Prometheus metrics on :8002, as Triton does.
//!
//! ```text
//! cargo run --release --example serve -- testdata
//! cargo run --release --example serve -- --registry ./registry --model mlp@production
//! cargo run --release --example serve -- --registry mlflow+http://127.0.0.1:5000 --model mlp@production
//! ```
//!
//! Flags:
//! - `DIR`: serve every model in a directory (flat, or Triton's `<name>/<version>/` layout);
//! - `--registry DIR --model NAME@ALIAS` (repeatable `--model`): serve registered versions,
//!   downloaded and verified, and announce them in the registry's endpoint directory; the
//!   repository extension (`POST /v2/repository/models/mlp@staging/load`) then loads and
//!   unloads `NAME@ALIAS` and `NAME/N` from the registry, announcing what it loads
//!   while served, and lists what it holds;
//! - `--registry mlflow+http://HOST:PORT` (or `mlflow+https://`): the same from an MLflow
//!   tracking server, models logged with MLflow's own client included (credentials from
//!   `MLFLOW_TRACKING_TOKEN` or `MLFLOW_TRACKING_USERNAME`/`PASSWORD`);
//! - `--http ADDR`, `--grpc ADDR`, `--metrics ADDR`: where to listen;
//! - `--advertise HOST`: the host clients reach this server at, announced in the
//!   registry (default: the listening address's host);
//! - `--instances N`, `--max-batch N`, `--queue-delay-us N`, `--queue N`: batching;
//! - `--io-threads N`: the async runtime's threads (default: the cores the instances
//!   leave, at least one);
//! - `--profile REPORT.json`: serve as an `mlops-profile` report recommends instead (its
//!   instances, batching, intra-op threads and device), for the model it was measured on:
//!   a registered version it does not fit is refused, saying why; in a directory, the
//!   models it fits get its settings and the others the flags'.
//!
//! `--help` lists every flag with its default. A start with no servable model, a model
//! directory or registry that does not exist (unless `--create-registry`), or an address
//! in use is an error that names what is at fault.
//!
//! Ctrl-C stops taking connections, lets requests in flight finish, and exits.

// An example's output is its point.
#![allow(clippy::print_stdout)]

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use mlops::core::{ModelFormat, ModelManifest, ProfileReport};
use mlops::profile::tuned::TunedServing;
use mlops::registry::{Endpoint, Protocol, Registry};
use mlops::runtime::http::{HttpConfig, metrics_router, router, serve};
use mlops::runtime::protocol::{self, DirectoryRepository, Repository};
use mlops::runtime::{BatcherConfig, ModelServer, ModelSpec, OrtOptions, OrtRuntime};
use mlops::serving::RegistryRepository;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

// Small, short-lived allocations on every request (headers, tensors, responses): mimalloc
// serves them for less CPU than glibc's malloc (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Args {
    repository: Option<PathBuf>,
    registry: Option<PathBuf>,
    models: Vec<String>,
    http: SocketAddr,
    grpc: SocketAddr,
    metrics: SocketAddr,
    advertise: Option<String>,
    spec: ModelSpec,
    profile: Option<ProfileReport>,
    create_registry: bool,
    io_threads: Option<usize>,
}

const USAGE: &str = "usage: serve [DIR] [--registry DIR --model NAME@ALIAS ...] [flags]

  DIR                    serve every model in a directory (flat, or Triton's <name>/<version>/)
  --registry DIR         a registry made by mlops (it must exist; see --create-registry),
                         or mlflow+http://HOST:PORT for an MLflow tracking server
  --create-registry      create the --registry directory if it does not exist
  --model REF            serve a registered version: NAME, NAME/N or NAME@ALIAS (repeatable)
  --http ADDR            HTTP/REST address (default 127.0.0.1:8000)
  --grpc ADDR            gRPC address (default 127.0.0.1:8001)
  --metrics ADDR         Prometheus /metrics address (default 127.0.0.1:8002)
  --advertise HOST       the host announced in the registry (default: the HTTP address's)
  --instances N          instances per model (default 1)
  --max-batch N          the largest batch (default 32)
  --queue N              the most requests waiting per model (default 1024)
  --queue-delay-us N     how long a request may wait for a batch (default 0)
  --idle-spin-us N       how long an idle instance polls before sleeping (default 0)
  --io-threads N         threads for connections and protocol work (default: the cores
                         the instances leave, at least 1)
  --profile REPORT.json  serve as an mlops-profile report recommends: its instances, largest
                         batch, queue delay, threads and device replace the flags'
  -h, --help             this text";

fn parse() -> Result<Args, BoxError> {
    let mut args = Args {
        repository: None,
        registry: None,
        models: Vec::new(),
        http: "127.0.0.1:8000".parse()?,
        grpc: "127.0.0.1:8001".parse()?,
        metrics: "127.0.0.1:8002".parse()?,
        advertise: None,
        spec: ModelSpec::default(),
        profile: None,
        create_registry: false,
        io_threads: None,
    };
    // Behind a network round trip an idle spin costs more CPU than the latency it saves
    // (docs/performance.md): a server does not spin unless asked.
    let mut batcher = BatcherConfig::default().with_idle_spin(Duration::ZERO);
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{arg} needs a value (try --help)"))
        };
        let flag = arg.clone();
        let address = |v: String| -> Result<SocketAddr, BoxError> {
            v.parse()
                .map_err(|_| format!("{flag} takes HOST:PORT, not '{v}'").into())
        };
        let count = |v: String| -> Result<usize, BoxError> {
            v.parse().ok().filter(|n: &usize| *n >= 1).ok_or_else(|| {
                format!("{flag} takes a whole number of 1 or more, not '{v}'").into()
            })
        };
        match arg.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            "--registry" => args.registry = Some(value()?.into()),
            "--create-registry" => args.create_registry = true,
            "--model" => args.models.push(value()?),
            "--http" => args.http = address(value()?)?,
            "--grpc" => args.grpc = address(value()?)?,
            "--metrics" => args.metrics = address(value()?)?,
            "--advertise" => args.advertise = Some(value()?),
            "--profile" => {
                let path = value()?;
                let text =
                    std::fs::read_to_string(&path).map_err(|e| format!("--profile {path}: {e}"))?;
                args.profile = Some(
                    ProfileReport::from_json(&text)
                        .map_err(|e| format!("--profile {path}: {e}"))?,
                );
            }
            "--instances" => args.spec = args.spec.with_instances(count(value()?)?),
            "--io-threads" => args.io_threads = Some(count(value()?)?),
            "--max-batch" => batcher = batcher.with_max_batch_size(count(value()?)?),
            "--queue" => batcher = batcher.with_max_queue_size(count(value()?)?),
            "--idle-spin-us" => {
                let v = value()?;
                let us: u64 = v
                    .parse()
                    .map_err(|_| format!("--idle-spin-us takes microseconds, not '{v}'"))?;
                batcher = batcher.with_idle_spin(Duration::from_micros(us));
            }
            "--queue-delay-us" => {
                let v = value()?;
                let us: u64 = v
                    .parse()
                    .map_err(|_| format!("--queue-delay-us takes microseconds, not '{v}'"))?;
                batcher = batcher.with_max_queue_delay(Duration::from_micros(us));
            }
            flag if flag.starts_with('-') => {
                return Err(format!("unknown flag {flag} (try --help)").into());
            }
            dir => {
                if args.repository.is_some() {
                    return Err(format!("one model directory at a time, not also '{dir}'").into());
                }
                args.repository = Some(dir.into());
            }
        }
    }
    if args.repository.is_none() && args.models.is_empty() {
        return Err(
            "give a model directory, or --registry DIR --model NAME@ALIAS (try --help)".into(),
        );
    }
    if !args.models.is_empty() && args.registry.is_none() {
        return Err("--model needs --registry DIR".into());
    }
    if let Some(dir) = &args.repository
        && !dir.is_dir()
    {
        return Err(format!("{}: not a directory", dir.display()).into());
    }
    if let Some(dir) = &args.registry
        && !dir.to_string_lossy().starts_with("mlflow+")
        && !dir.exists()
        && !args.create_registry
    {
        return Err(format!(
            "--registry {}: no such directory (a mistyped path would make an empty registry; --create-registry makes one)",
            dir.display()
        )
        .into());
    }
    args.spec = args.spec.with_batcher(batcher);
    Ok(args)
}

/// The flags' spec with what the profile measured in place of theirs: instances, the
/// largest batch and the queue delay; the queue's size and the idle spin stay the flags'.
fn profiled(flags: &ModelSpec, tuned: &TunedServing) -> ModelSpec {
    let measured = tuned.spec();
    let mut batcher = flags.batcher.clone();
    batcher.max_batch_size = measured.batcher.max_batch_size;
    batcher.max_queue_delay = measured.batcher.max_queue_delay;
    ModelSpec {
        instances: measured.instances,
        batcher,
        ..flags.clone()
    }
}

fn main() -> ExitCode {
    common::init_logs("info");
    let outcome = parse().and_then(|args| {
        // Each instance runs on a thread of its own; the protocol's threads take the cores
        // left. More would only trade places with the instances on the same cores: every
        // switch costs more CPU than the request it serves (docs/performance.md).
        let instances = match &args.profile {
            Some(report) => TunedServing::recommended(report)?.spec().instances,
            None => args.spec.instances,
        };
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let io_threads = args
            .io_threads
            .unwrap_or_else(|| cores.saturating_sub(instances).max(1));
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(io_threads)
            .enable_all()
            .build()?
            .block_on(run(args))
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("serve: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), BoxError> {
    // With a profile, the runtime's threads and device are the recommendation's.
    let options = match &args.profile {
        Some(report) => TunedServing::recommended(report)?.ort_options(),
        None => OrtOptions::default().with_intra_threads(1),
    };
    let ort = OrtRuntime::new(options)?;
    let server = Arc::new(ModelServer::new().with_runtime(ModelFormat::Onnx, Arc::new(ort)));

    if let Some(dir) = &args.repository {
        let (s, dir2, spec) = (server.clone(), dir.clone(), args.spec.clone());
        let report = tokio::task::spawn_blocking(move || s.load_repository(&dir2, &spec)).await??;
        for (name, version) in &report.loaded {
            // Models the profile fits are served as it recommends; others keep the flags'.
            if let Some(profile) = &args.profile
                && let Some((manifest, root)) = server.source(name, *version)
                && let Ok(tuned) = TunedServing::from_report(profile, &manifest, None)
            {
                let spec = profiled(&args.spec, &tuned)
                    .with_name(name.clone())
                    .with_version(*version);
                let s = server.clone();
                tokio::task::spawn_blocking(move || s.load_manifest(&manifest, &root, spec))
                    .await??;
                println!("serving {name}/{version} as profiled: {}", tuned.summary());
                continue;
            }
            println!("serving {name}/{version}");
        }
        if let Some(profile) = &args.profile
            && !report.loaded.iter().any(|(n, v)| {
                server
                    .source(n, *v)
                    .is_some_and(|(m, _)| TunedServing::from_report(profile, &m, None).is_ok())
            })
        {
            return Err(format!(
                "the profile was measured on '{}', which {} does not hold",
                profile.model.name,
                dir.display()
            )
            .into());
        }
        for (entry, why) in &report.skipped {
            let short: String = why.chars().take(100).collect();
            println!("skipped {entry}: {short}");
        }
    }

    // Registered versions: downloaded (verified), served, and announced by heartbeat.
    // Without a model directory, the repository extension loads from the registry too,
    // and announces those versions as it announces what it loads later, so that an
    // unload through it withdraws them.
    let mut heartbeats = Vec::new();
    let scratch = tempfile::tempdir()?;
    let registry = match &args.registry {
        Some(place) => Some(open_registry(place).await?),
        None => None,
    };
    let registry_repository = match (&args.repository, &registry) {
        (None, Some(registry)) => Some(Arc::new(
            RegistryRepository::new(
                registry.clone(),
                scratch.path().join("loaded"),
                args.spec.clone(),
            )
            .with_announcements(advertised(&args), Duration::from_secs(15)),
        )),
        _ => None,
    };
    if !args.models.is_empty() {
        let registry = registry.as_ref().ok_or("--model needs --registry DIR")?;
        for reference in &args.models {
            let dest = scratch.path().join(reference.replace(['/', '@'], "_"));
            let got = registry.download(reference, &dest).await?;
            let (name, version) = (got.version.name.clone(), got.version.version);
            let spec = match &args.profile {
                Some(profile) => {
                    let manifest = ModelManifest::from_path(&got.entry)?;
                    let tuned = TunedServing::from_report(profile, &manifest, Some(version))
                        .map_err(|e| format!("{reference}: {e}"))?;
                    println!("{reference} as profiled: {}", tuned.summary());
                    profiled(&args.spec, &tuned)
                }
                None => args.spec.clone(),
            }
            .with_name(name.clone())
            .with_version(version);
            let s = server.clone();
            tokio::task::spawn_blocking(move || s.load_path(&got.entry, spec)).await??;
            println!("serving {reference} as {name}/{version}");
            if let Some(repository) = &registry_repository {
                repository.announce(&name, version).await?;
                continue;
            }
            for (address, protocol) in advertised(&args) {
                let endpoint = Endpoint::new(&name, Some(version), address, protocol);
                heartbeats.push(registry.announce(endpoint, Duration::from_secs(15)).await?);
            }
        }
    }

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    if server.models().is_empty() {
        return Err(
            "no model could be served: nothing to listen for (see the skipped entries above)"
                .into(),
        );
    }
    let bind = |flag: &'static str, addr: SocketAddr| async move {
        tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("{flag} {addr}: cannot listen: {e}"))
    };
    let http = bind("--http", args.http).await?;
    let metrics = bind("--metrics", args.metrics).await?;
    let grpc = bind("--grpc", args.grpc).await?;
    println!(
        "HTTP on {}, gRPC on {}, metrics on {}/metrics; Ctrl-C stops",
        args.http, args.grpc, args.metrics
    );
    // The repository extension loads from the model directory; in registry mode from the
    // registry, by alias or version (`mlp@staging`, `mlp/3`). HTTP and gRPC share it.
    let repository: Arc<dyn Repository> = match (&args.repository, &registry_repository) {
        (Some(dir), _) => Arc::new(DirectoryRepository::new(dir.clone(), args.spec.clone())),
        (None, Some(repository)) => repository.clone(),
        (None, None) => return Err("give a model directory or --registry DIR".into()),
    };
    let app = router(
        server.clone(),
        HttpConfig::default().with_model_repository(repository.clone()),
    );
    let http_task = tokio::spawn(serve(http, app, stopped(stop_rx.clone())));
    let metrics_task = tokio::spawn(serve(
        metrics,
        metrics_router(server.clone()),
        stopped(stop_rx.clone()),
    ));
    let grpc_service = mlops::runtime::grpc::service_for(
        protocol::Protocol::new(server.clone()).with_repository(repository),
    );
    let grpc_task = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(grpc_service)
            .serve_with_incoming_shutdown(mlops::runtime::grpc::incoming(grpc), stopped(stop_rx)),
    );

    tokio::signal::ctrl_c().await?;
    println!("stopping: finishing requests in flight");
    // Not ready any more (load balancers stop sending), still serving what arrives.
    server.begin_shutdown();
    for heartbeat in heartbeats {
        heartbeat.stop().await;
    }
    if let Some(repository) = &registry_repository {
        repository.withdraw_all().await;
    }
    let _ = stop_tx.send(true);
    http_task.await??;
    metrics_task.await??;
    grpc_task.await??;
    let s = server.clone();
    tokio::task::spawn_blocking(move || s.shutdown()).await?;
    println!("stopped");
    Ok(())
}

/// Where clients reach this server, as announced in the registry: the HTTP and gRPC
/// ports at `--advertise` (default: the HTTP address's host).
fn advertised(args: &Args) -> [(String, Protocol); 2] {
    let host = args
        .advertise
        .clone()
        .unwrap_or_else(|| args.http.ip().to_string());
    [
        (format!("{host}:{}", args.http.port()), Protocol::OipHttp),
        (format!("{host}:{}", args.grpc.port()), Protocol::OipGrpc),
    ]
}

/// A registry directory made by mlops, or an MLflow tracking server named
/// `mlflow+http://HOST:PORT`.
async fn open_registry(place: &std::path::Path) -> Result<Registry, BoxError> {
    let text = place.to_string_lossy();
    if let Some(uri) = text.strip_prefix("mlflow+") {
        return Ok(Registry::mlflow(uri)?);
    }
    Ok(Registry::open(place).await?)
}
