//! The server the profiler launches by default: one model behind mlops-runtime's batcher,
//! served over the Open Inference Protocol's HTTP and gRPC front ends, with the settings of
//! one [`ServingConfig`](mlops_core::profile::ServingConfig).
//!
//! A program becomes that server when its first argument is
//! [`SERVE_FLAG`](crate::launch::SERVE_FLAG): call [`child_main`] first thing in `main`,
//! as the `profile` example and the `mlops-profile-server` binary do.
//!
//! ```text
//! --mlops-profile-serve --model PATH [--name NAME] --http ADDR --grpc ADDR
//!     [--threads N] [--instances N] [--max-batch N] [--queue-delay-us N]
//!     [--device cpu|cuda:N] [--cores N]
//! ```
//!
//! It stops gracefully on `SIGTERM` or `SIGINT`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use mlops_core::ModelFormat;
use mlops_runtime::http::{HttpConfig, router, serve};
use mlops_runtime::{
    BatcherConfig, ExecutionProvider, ModelServer, ModelSpec, OrtOptions, OrtRuntime,
};

use crate::error::{Error, Result};
use crate::launch::SERVE_FLAG;

/// What the child server was asked to run.
#[derive(Clone, Debug, PartialEq)]
pub struct ChildArgs {
    /// The model file or directory.
    pub model: PathBuf,
    /// The name to serve it under.
    pub name: Option<String>,
    /// HTTP listen address.
    pub http: SocketAddr,
    /// gRPC listen address.
    pub grpc: SocketAddr,
    /// Intra-op threads.
    pub threads: usize,
    /// Instances.
    pub instances: usize,
    /// Largest batch.
    pub max_batch: usize,
    /// Queue delay in microseconds.
    pub queue_delay_us: u64,
    /// `None` for the CPU, else the CUDA ordinal.
    pub cuda: Option<i32>,
    /// Runtime worker threads (the cores it was given).
    pub cores: usize,
}

impl ChildArgs {
    /// Parses the arguments after [`SERVE_FLAG`].
    pub fn parse(args: &[String]) -> Result<ChildArgs> {
        let mut out = ChildArgs {
            model: PathBuf::new(),
            name: None,
            http: ([127, 0, 0, 1], 8000).into(),
            grpc: ([127, 0, 0, 1], 8001).into(),
            threads: 1,
            instances: 1,
            max_batch: 32,
            queue_delay_us: 0,
            cuda: None,
            cores: std::thread::available_parallelism().map_or(1, usize::from),
        };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let value = it
                .next()
                .ok_or_else(|| Error::Config(format!("{flag} needs a value")))?;
            let number = |what: &str| -> Result<u64> {
                value.parse::<u64>().map_err(|_| {
                    Error::Config(format!("{what} takes a whole number, not '{value}'"))
                })
            };
            let addr = |what: &str| -> Result<SocketAddr> {
                value
                    .parse()
                    .map_err(|_| Error::Config(format!("{what} takes HOST:PORT, not '{value}'")))
            };
            match flag.as_str() {
                "--model" => out.model = PathBuf::from(value),
                "--name" => out.name = Some(value.clone()).filter(|n| !n.is_empty()),
                "--http" => out.http = addr("--http")?,
                "--grpc" => out.grpc = addr("--grpc")?,
                "--threads" => out.threads = number("--threads")? as usize,
                "--instances" => out.instances = number("--instances")? as usize,
                "--max-batch" => out.max_batch = number("--max-batch")? as usize,
                "--queue-delay-us" => out.queue_delay_us = number("--queue-delay-us")?,
                "--cores" => out.cores = number("--cores")?.max(1) as usize,
                "--device" => {
                    out.cuda = match value.as_str() {
                        "cpu" => None,
                        other => Some(
                            other
                                .strip_prefix("cuda:")
                                .and_then(|n| n.parse().ok())
                                .ok_or_else(|| {
                                    Error::Config(format!(
                                        "--device takes cpu or cuda:N, not '{other}'"
                                    ))
                                })?,
                        ),
                    };
                }
                other => return Err(Error::Config(format!("unknown flag {other}"))),
            }
        }
        if out.model.as_os_str().is_empty() {
            return Err(Error::Config("--model PATH is required".into()));
        }
        if out.max_batch == 0 || out.instances == 0 {
            return Err(Error::Config(
                "--max-batch and --instances must be at least 1".into(),
            ));
        }
        Ok(out)
    }
}

/// Runs the server if this program was started as one (its first argument is
/// [`SERVE_FLAG`]): returns its exit code; `None` when it was not, so `main` carries on.
pub fn child_main() -> Option<ExitCode> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) != Some(SERVE_FLAG) {
        return None;
    }
    let code = match ChildArgs::parse(&args[1..]).and_then(run_child) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mlops-profile server: {e}");
            ExitCode::FAILURE
        }
    };
    Some(code)
}

/// Serves the model until `SIGTERM` or `SIGINT`.
pub fn run_child(args: ChildArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.cores.max(1))
        .enable_all()
        .build()
        .map_err(|e| Error::io("starting the async runtime", e))?;
    runtime.block_on(serve_child(args))
}

async fn serve_child(args: ChildArgs) -> Result<()> {
    let provider = match args.cuda {
        None => ExecutionProvider::Cpu,
        Some(device_id) => ExecutionProvider::Cuda { device_id },
    };
    let ort = OrtRuntime::new(
        OrtOptions::default()
            .with_intra_threads(args.threads)
            .with_provider(provider),
    )?;
    let server = Arc::new(ModelServer::new().with_runtime(ModelFormat::Onnx, Arc::new(ort)));
    let batcher = BatcherConfig::default()
        .with_max_batch_size(args.max_batch)
        .with_max_queue_delay(Duration::from_micros(args.queue_delay_us))
        // A launched server is measured over the network, where the idle spin costs more
        // CPU than the latency it saves; it would also inflate the CPU figures.
        .with_idle_spin(Duration::ZERO);
    let mut spec = ModelSpec::default()
        .with_instances(args.instances)
        .with_batcher(batcher);
    if let Some(name) = &args.name {
        spec = spec.with_name(name.clone());
    }
    let (s, model) = (server.clone(), args.model.clone());
    let (name, version) = tokio::task::spawn_blocking(move || s.load_path(&model, spec))
        .await
        .map_err(|e| Error::Config(format!("loading the model: {e}")))??;
    let http = tokio::net::TcpListener::bind(args.http)
        .await
        .map_err(|e| Error::io(format!("listening on {}", args.http), e))?;
    let grpc = tokio::net::TcpListener::bind(args.grpc)
        .await
        .map_err(|e| Error::io(format!("listening on {}", args.grpc), e))?;
    eprintln!(
        "serving {name}/{version} on http://{} and grpc {} ({} instance(s), batch {}, {} thread(s))",
        args.http, args.grpc, args.instances, args.max_batch, args.threads
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let app = router(server.clone(), HttpConfig::default());
    let http_task = tokio::spawn(serve(http, app, stopped(stop_rx.clone())));
    let grpc_service = mlops_runtime::grpc::service(server.clone(), None, ModelSpec::default());
    let grpc_task = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(grpc_service)
            .serve_with_incoming_shutdown(mlops_runtime::grpc::incoming(grpc), stopped(stop_rx)),
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| Error::io("watching SIGTERM", e))?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    server.begin_shutdown();
    let _ = stop_tx.send(true);
    let _ = http_task.await;
    let _ = grpc_task.await;
    let s = server.clone();
    let _ = tokio::task::spawn_blocking(move || s.shutdown()).await;
    Ok(())
}
