//! The crates composed in a service of your own: serve the registry's production version
//! as its profile recommends, over the Open Inference Protocol, and let the capacity policy
//! grow and shrink its instances from the server's own metrics.
//!
//! ```text
//! cargo run --release --example quickstart          # makes the registry and the profile
//! cargo run --release --example service [-- --registry DIR --profile REPORT.json --http ADDR]
//! ```
//!
//! Defaults: the quickstart's `target/quickstart/registry`, its
//! `target/quickstart/profile/report.json`, and `127.0.0.1:8000`. Ctrl-C stops.

// An example's output is its point.
#![allow(clippy::print_stdout)]

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use mlops::core::{ModelFormat, ModelManifest, ProfileReport};
use mlops::profile::tuned::TunedServing;
use mlops::registry::Registry;
use mlops::runtime::http::{HttpConfig, router, serve};
use mlops::runtime::{ModelServer, OrtRuntime};
use mlops::scale::policy::{Bounds, Capacity, CapacityConfig};
use mlops::scale::scaler::{Controller, ControllerConfig, Local, PrometheusSource};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    common::init_logs("info");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/quickstart");
    let (mut registry_dir, mut profile, mut http) = (
        root.join("registry"),
        root.join("profile/report.json"),
        "127.0.0.1:8000".to_string(),
    );
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--registry" => registry_dir = value.into(),
            "--profile" => profile = value.into(),
            "--http" => http = value,
            _ => return Err(format!("unknown flag {flag}").into()),
        }
    }
    let report = ProfileReport::from_json(
        &std::fs::read_to_string(&profile).map_err(|e| format!("{}: {e}", profile.display()))?,
    )?;

    // The production version, served as its profile says (refused if it is another model).
    let registry = Registry::open(&registry_dir).await?;
    let scratch = tempfile::tempdir()?;
    let got = registry.download("mlp@production", scratch.path()).await?;
    let version = got.version.version;
    let tuned = TunedServing::from_report(
        &report,
        &ModelManifest::from_path(&got.entry)?,
        Some(version),
    )?;
    let ort = OrtRuntime::new(tuned.ort_options())?;
    let server = Arc::new(ModelServer::new().with_runtime(ModelFormat::Onnx, Arc::new(ort)));
    let spec = tuned.spec().with_name("mlp").with_version(version);
    let (s, entry) = (server.clone(), got.entry.clone());
    tokio::task::spawn_blocking(move || s.load_path(&entry, spec)).await??;

    // The capacity policy from the same profile, on the server's own /metrics.
    let policy = Capacity::new(CapacityConfig::from_profile(&report)?)?;
    let source = PrometheusSource::new([format!("http://{http}/metrics")], "mlp")?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
    let mut controller = Controller::new(policy, source, Local::new(server.clone(), "mlp")?)
        .with_config(ControllerConfig {
            bounds: Bounds::new(1, cores)?,
            ..ControllerConfig::default()
        });
    tokio::spawn(async move { controller.run(std::future::pending()).await });

    println!(
        "serving mlp/{version} on http://{http}: {}",
        tuned.summary()
    );
    let listener = tokio::net::TcpListener::bind(&http).await?;
    let app = router(server.clone(), HttpConfig::default());
    serve(listener, app, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    let s = server.clone();
    tokio::task::spawn_blocking(move || s.shutdown()).await?;
    Ok(())
}
