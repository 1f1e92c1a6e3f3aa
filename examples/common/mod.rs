//! What several examples share. Each uses part of it.
#![allow(dead_code)]

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Logs on stderr; `RUST_LOG` picks what (else `default`, such as `info`).
pub(crate) fn init_logs(default: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default)),
        )
        .with_writer(std::io::stderr)
        .init();
}

/// Downloads a registered version into `scratch` (every file verified; an earlier copy
/// there is replaced) and serves it with ONNX Runtime.
#[cfg(all(feature = "registry", feature = "runtime"))]
pub(crate) async fn open_version(
    registry: &mlops::registry::Registry,
    reference: &str,
    scratch: &std::path::Path,
) -> Result<(u64, mlops::runtime::Batcher), BoxError> {
    use mlops::runtime::{Batcher, BatcherConfig, OrtOptions, OrtRuntime};
    let dest = scratch.join(reference.replace(['/', '@'], "_"));
    if dest.exists() {
        std::fs::remove_dir_all(&dest).map_err(|e| format!("{}: {e}", dest.display()))?;
    }
    let got = registry.download(reference, &dest).await?;
    let session = OrtRuntime::new(OrtOptions::default())?.open(&got.entry)?;
    let batcher = Batcher::start(reference, vec![Box::new(session)], BatcherConfig::default())?;
    Ok((got.version.version, batcher))
}

/// 16 batches of 8 deterministic inputs for the bundled MLP (64 features).
#[cfg(feature = "registry")]
pub(crate) fn validation_set() -> Result<Vec<mlops::registry::ValidationCase>, BoxError> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    (0..16)
        .map(|_| {
            let values: Vec<f32> = (0..8 * 64)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (state % 2000) as f32 / 1000.0 - 1.0
                })
                .collect();
            Ok(mlops::registry::ValidationCase::new(vec![
                mlops::core::Tensor::from_vec("x", vec![8, 64], values)?,
            ]))
        })
        .collect()
}
