//! Serving as a profile recommends: the batcher, the instances, the threads and the device
//! of the report's recommended configuration, for the model it was measured on.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::path::Path;
//! use mlops_core::{ModelManifest, ProfileReport};
//! use mlops_profile::tuned::TunedServing;
//!
//! let report = ProfileReport::from_json(&std::fs::read_to_string("report.json")?)?;
//! let manifest = ModelManifest::from_path(Path::new("mlp.onnx"))?;
//! let tuned = TunedServing::from_report(&report, &manifest, None)?;
//! let runtime = mlops_runtime::OrtRuntime::new(tuned.ort_options())?;
//! let spec = tuned.spec(); // instances and batching, no hand-set numbers
//! # let _ = (runtime, spec);
//! # Ok(()) }
//! ```

use std::time::Duration;

use mlops_core::ModelManifest;
use mlops_core::profile::{ComputeDevice, ProfileReport, ServingConfig};
use mlops_runtime::{BatcherConfig, ExecutionProvider, ModelSpec, OrtOptions};

use crate::error::{Error, Result};

/// The recommended configuration of a profile, checked against the model to serve.
#[derive(Clone, Debug, PartialEq)]
pub struct TunedServing {
    /// The configuration's id in the report (`cpu1-b4-d0-i1-t1`).
    pub config_id: String,
    /// What it sets.
    pub config: ServingConfig,
    /// One replica's capacity at the target, in requests per second.
    pub capacity_rps: f64,
    /// The latency target it was measured against, in milliseconds.
    pub latency_target_ms: f64,
    /// The percentile the target is on.
    pub percentile: u8,
}

fn mismatch(reason: String) -> Error {
    Error::Mismatch(reason)
}

impl TunedServing {
    /// The recommendation of `report`, for `model` (the manifest of the files to serve) at
    /// `version` when known. Refused, saying which, when the report was made for another
    /// model (its entry file's SHA-256, or its name when the report has no hash), another
    /// version, or recommends nothing that meets its target.
    pub fn from_report(
        report: &ProfileReport,
        model: &ModelManifest,
        version: Option<u64>,
    ) -> Result<Self> {
        let profiled = &report.model;
        let sha256 = model
            .files
            .iter()
            .find(|f| f.path == model.entry.path)
            .map(|f| f.sha256.as_str());
        match (profiled.sha256.as_deref(), sha256) {
            (Some(theirs), Some(ours)) if !theirs.eq_ignore_ascii_case(ours) => {
                let short = |h: &str| h.get(..12).unwrap_or(h).to_string();
                return Err(mismatch(format!(
                    "it was measured on model '{}' (sha256 {}…), not on '{}' (sha256 {}…)",
                    profiled.name,
                    short(theirs),
                    model.name,
                    short(ours)
                )));
            }
            (Some(_), Some(_)) => {}
            _ if profiled.name != model.name => {
                return Err(mismatch(format!(
                    "it was measured on model '{}', not '{}'",
                    profiled.name, model.name
                )));
            }
            _ => {}
        }
        if let (Some(theirs), Some(ours)) = (profiled.version, version)
            && theirs != ours
        {
            return Err(mismatch(format!(
                "it was measured on {} version {theirs}, not version {ours}",
                profiled.name
            )));
        }
        Self::recommended(report)
    }

    /// The report's recommendation without checking which model it was made for: the
    /// settings a process shares across models (ONNX Runtime's threads and device).
    /// [`from_report`](Self::from_report) is the check before serving a model with it.
    pub fn recommended(report: &ProfileReport) -> Result<Self> {
        let Some(recommendation) = &report.recommendation else {
            return Err(mismatch(
                "it recommends no configuration: none was measured".to_string(),
            ));
        };
        if !recommendation.meets_target {
            return Err(mismatch(format!(
                "no configuration meets its target of {} ms at p{}: {}",
                report.latency_target_ms, report.percentile, recommendation.reason
            )));
        }
        Ok(TunedServing {
            config_id: recommendation.config_id.clone(),
            config: recommendation.config.clone(),
            capacity_rps: recommendation.capacity_rps,
            latency_target_ms: report.latency_target_ms,
            percentile: report.percentile,
        })
    }

    /// Refuses a configuration for another kind of device than the one to serve on (a GPU
    /// configuration on a CPU-only server, or the reverse), saying which.
    pub fn check_device(&self, device: ComputeDevice) -> Result<()> {
        if self.config.device.is_gpu() != device.is_gpu() {
            return Err(mismatch(format!(
                "its recommendation {} runs on {}, this server on {device}",
                self.config_id, self.config.device
            )));
        }
        Ok(())
    }

    /// The batcher: the largest batch and the queue delay measured, and no idle spin, as
    /// the profiled server ran (behind a network a spin costs more CPU than it saves).
    pub fn batcher(&self) -> BatcherConfig {
        BatcherConfig::default()
            .with_max_batch_size(self.config.max_batch_size.max(1))
            .with_max_queue_delay(Duration::from_micros(self.config.max_queue_delay_us))
            .with_idle_spin(Duration::ZERO)
    }

    /// The model's spec: the instances and the batcher measured.
    pub fn spec(&self) -> ModelSpec {
        ModelSpec::default()
            .with_instances(self.config.instances.max(1))
            .with_batcher(self.batcher())
    }

    /// ONNX Runtime's options: the intra-op threads and the device measured (the GPU by
    /// the index it had when profiled).
    pub fn ort_options(&self) -> OrtOptions {
        let provider = match self.config.device {
            ComputeDevice::Cpu => ExecutionProvider::Cpu,
            ComputeDevice::Gpu { index } => ExecutionProvider::Cuda {
                device_id: i32::try_from(index).unwrap_or(0),
            },
        };
        OrtOptions::default()
            .with_intra_threads(self.config.intra_op_threads.max(1))
            .with_provider(provider)
    }

    /// One line: the configuration and what it sets.
    pub fn summary(&self) -> String {
        let c = &self.config;
        format!(
            "{} on {}: {} instance(s), batches of up to {}, {} µs queue delay, {} intra-op thread(s), {} core(s){}; {:.0} req/s per replica at p{} <= {} ms",
            self.config_id,
            c.device,
            c.instances,
            c.max_batch_size,
            c.max_queue_delay_us,
            c.intra_op_threads,
            c.cpu_cores,
            c.gpu_fraction
                .map(|f| format!(", {:.0}% of the GPU", f * 100.0))
                .unwrap_or_default(),
            self.capacity_rps,
            self.percentile,
            self.latency_target_ms
        )
    }
}
