//! Runtimes load models into sessions; sessions run batches of tensors.

use std::fmt;
use std::path::Path;

use mlops_core::{ModelManifest, Signature, Tensor};

use crate::error::Result;

/// Where a session computes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Device {
    /// The host CPU.
    #[default]
    Cpu,
    /// A CUDA GPU, by ordinal.
    Cuda(usize),
}

impl Device {
    /// Whether this is a GPU.
    pub fn is_gpu(self) -> bool {
        matches!(self, Device::Cuda(_))
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(ordinal) => write!(f, "cuda:{ordinal}"),
        }
    }
}

/// A model loaded for inference: one instance, driven by one thread at a time.
///
/// `run` takes `&mut self` because backends keep per-run state (ONNX Runtime's session,
/// scratch buffers); the batcher gives each instance its own OS thread.
pub trait ModelSession: Send {
    /// What the session takes and returns.
    fn signature(&self) -> &Signature;

    /// Where it computes.
    fn device(&self) -> Device;

    /// The largest batch (first dimension) one run accepts: `0` when the model has no
    /// batch dimension, `usize::MAX` when any size runs.
    fn max_batch_size(&self) -> usize {
        if self.signature().is_batchable() {
            usize::MAX
        } else {
            0
        }
    }

    /// Whether the session can take work (a device lost, a library unloaded: not).
    fn is_healthy(&self) -> bool {
        true
    }

    /// Runs one batch. Inputs come in signature order and have been checked against the
    /// signature; outputs are returned in signature order.
    fn run(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>>;
}

/// A backend that turns a model package into sessions.
pub trait InferenceRuntime: Send + Sync {
    /// The backend's name (`onnxruntime`, `echo`, …).
    fn name(&self) -> &'static str;

    /// Loads the package described by `manifest`, whose files are under `root`, into a new
    /// session. Call it once per model instance.
    fn load(&self, manifest: &ModelManifest, root: &Path) -> Result<Box<dyn ModelSession>>;
}
