//! GPU figures through NVIDIA's management library (feature `nvml`).
//!
//! NVML is loaded at run time (`libnvidia-ml.so`, installed with the driver): a build with
//! this feature runs on a machine without a GPU, and [`NvmlGpu::open`] then says why there
//! is none.
//!
//! The figures are the whole device's. Under MPS, NVML attributes every client's work to
//! the MPS server process, so per-process GPU figures would be wrong and are not
//! attempted: watch one configuration per GPU at a time.

use nvml_wrapper::Nvml;
use nvml_wrapper::error::NvmlError;

use super::{GpuMonitor, GpuSample};

/// One GPU, watched through NVML.
pub struct NvmlGpu {
    nvml: Nvml,
    index: u32,
    name: String,
}

impl std::fmt::Debug for NvmlGpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NvmlGpu")
            .field("index", &self.index)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl NvmlGpu {
    /// Loads NVML and opens GPU `index` (NVML's order, which is `CUDA_VISIBLE_DEVICES`
    /// order only when `CUDA_DEVICE_ORDER=PCI_BUS_ID`). The error is NVML's own text.
    pub fn open(index: u32) -> Result<NvmlGpu, String> {
        let nvml = Nvml::init().map_err(|e| format!("NVML: {e}"))?;
        let name = {
            let device = nvml
                .device_by_index(index)
                .map_err(|e| format!("NVML: GPU {index}: {e}"))?;
            device
                .name()
                .map_err(|e| format!("NVML: GPU {index}: {e}"))?
        };
        Ok(NvmlGpu { nvml, index, name })
    }
}

impl GpuMonitor for NvmlGpu {
    fn sample(&mut self) -> Result<GpuSample, String> {
        let at = |e: NvmlError| format!("NVML: GPU {}: {e}", self.index);
        // A device handle borrows the library; looking it up again is a table read.
        let device = self.nvml.device_by_index(self.index).map_err(at)?;
        let utilization = device.utilization_rates().map_err(at)?;
        let memory = device.memory_info().map_err(at)?;
        // Some boards (and MIG instances) do not report power: NaN, not a failed sample.
        let power_watts = match device.power_usage() {
            Ok(milliwatts) => f64::from(milliwatts) / 1000.0,
            Err(_) => f64::NAN,
        };
        Ok(GpuSample {
            utilization_percent: f64::from(utilization.gpu),
            memory_used_bytes: memory.used,
            memory_total_bytes: memory.total,
            power_watts,
        })
    }

    fn name(&self) -> String {
        format!("GPU {} ({})", self.index, self.name)
    }
}

/// The names of the GPUs NVML sees, in its order.
pub fn gpus() -> Result<Vec<String>, String> {
    let nvml = Nvml::init().map_err(|e| format!("NVML: {e}"))?;
    let count = nvml.device_count().map_err(|e| format!("NVML: {e}"))?;
    (0..count)
        .map(|index| {
            nvml.device_by_index(index)
                .and_then(|device| device.name())
                .map_err(|e| format!("NVML: GPU {index}: {e}"))
        })
        .collect()
}
