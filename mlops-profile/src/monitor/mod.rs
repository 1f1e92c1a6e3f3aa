//! Resource use while a configuration is measured: the server's CPU and memory, the
//! host's CPU, and the GPU.
//!
//! A [`Sampler`] reads them on its own OS thread every [`MonitorConfig::interval`]:
//!
//! - the server process tree from `/proc` ([`procfs::ProcessTree`], always compiled);
//! - the host's CPU from `/proc/stat` ([`procfs::HostCpu`]);
//! - a GPU through a [`GpuMonitor`]: NVIDIA's management library with the `nvml` feature
//!   ([`nvml::NvmlGpu`]); without it [`open_gpu`] says "not compiled with the `nvml`
//!   feature", and every summary says why its GPU figures are missing.
//!
//! GPU figures are the whole device's, never a process's: under MPS, NVML attributes every
//! client's work to the MPS server, so per-process figures would be wrong and are not
//! attempted.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use mlops_profile::monitor::{MonitorConfig, Sampler};
//!
//! let sampler = Sampler::start(MonitorConfig::default().with_interval(Duration::from_millis(10)));
//! sampler.watch(None, "in-process");
//! let since = Instant::now();
//! std::thread::sleep(Duration::from_millis(100));
//! let summary = sampler.summary_since(since);
//! assert!(summary.samples > 0);
//! assert!(summary.server_rss_bytes_max > 0);
//! ```

#[cfg(feature = "nvml")]
pub mod nvml;
pub mod procfs;

use std::fmt;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mlops_core::profile::{HostInfo, ResourceSample, ResourceSummary};

use procfs::{HostCpu, ProcessTree};

/// What a build without the `nvml` feature says when asked for a GPU.
#[cfg(not(feature = "nvml"))]
const NOT_COMPILED: &str = "not compiled with the `nvml` feature";

/// What to sample and how often.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MonitorConfig {
    /// Time between samples (100 ms by default; at least 1 ms is used). Each sample
    /// reads every `/proc/<pid>/stat` to find the server's children: a few milliseconds
    /// with a few hundred processes, so a few percent of a core at the default.
    pub interval: Duration,
    /// The GPU to watch, by NVML index; `None` to watch none.
    pub gpu: Option<u32>,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            interval: Duration::from_millis(100),
            gpu: None,
        }
    }
}

impl MonitorConfig {
    /// Samples every `interval`.
    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Watches GPU `index` (`with_gpu(0)`), or none (`with_gpu(None)`).
    pub fn with_gpu(mut self, index: impl Into<Option<u32>>) -> Self {
        self.gpu = index.into();
        self
    }
}

/// One reading of a GPU.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct GpuSample {
    /// Share of the last sample period in which a kernel ran, in percent.
    pub utilization_percent: f64,
    /// Device memory allocated, in bytes (all processes).
    pub memory_used_bytes: u64,
    /// Device memory installed, in bytes.
    pub memory_total_bytes: u64,
    /// Power draw, in watts; NaN where the device does not report it.
    pub power_watts: f64,
}

/// A source of GPU figures: one backend per file and feature ([`nvml::NvmlGpu`] with
/// `nvml`). The figures are the whole device's.
pub trait GpuMonitor: Send {
    /// Reads the device now; the error says why it could not be read.
    fn sample(&mut self) -> Result<GpuSample, String>;

    /// Which device this is, for logs and reports (`GPU 0 (NVIDIA H100 80GB HBM3)`).
    fn name(&self) -> String;
}

/// Opens GPU `index` through NVML. Without the `nvml` feature the error says "not
/// compiled with the `nvml` feature"; with it but without a GPU or driver, it is NVML's
/// own text (the library not found, no such device).
pub fn open_gpu(index: u32) -> Result<Box<dyn GpuMonitor>, String> {
    #[cfg(feature = "nvml")]
    {
        nvml::NvmlGpu::open(index).map(|gpu| Box::new(gpu) as Box<dyn GpuMonitor>)
    }
    #[cfg(not(feature = "nvml"))]
    {
        Err(format!("GPU {index}: {NOT_COMPILED}"))
    }
}

/// The names of the GPUs NVML sees, in its order, or why it sees none.
pub fn gpus() -> Result<Vec<String>, String> {
    #[cfg(feature = "nvml")]
    {
        nvml::gpus()
    }
    #[cfg(not(feature = "nvml"))]
    {
        Err(NOT_COMPILED.to_owned())
    }
}

/// The machine: its host name, the CPU cores this process may use (its affinity, which a
/// launcher's `taskset` narrows), the CPU model from `/proc/cpuinfo`, memory from
/// `/proc/meminfo`, and the GPUs NVML sees or why there are none.
///
/// Figures that cannot be read are left empty (`"unknown"`, 0), never an error: a report
/// is still worth writing.
pub fn host_info() -> HostInfo {
    let (gpus, gpu_unavailable) = match gpus() {
        Ok(names) if names.is_empty() => (names, Some("NVML sees no GPU".to_owned())),
        Ok(names) => (names, None),
        Err(reason) => (Vec::new(), Some(reason)),
    };
    HostInfo {
        hostname: hostname().unwrap_or_else(|| "unknown".to_owned()),
        cpu_cores: cpu_cores(),
        cpu_model: cpu_model().unwrap_or_else(|| "unknown".to_owned()),
        memory_bytes: memory_bytes().unwrap_or(0),
        gpus,
        gpu_unavailable,
    }
}

fn hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that much.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let name = if rc == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?
    };
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

/// CPUs in this process's affinity mask: the cores it may run on.
fn cpu_cores() -> usize {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: an all-zero cpu_set_t is a valid empty set, and sched_getaffinity
        // writes at most its size into it.
        let count = unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0 {
                libc::CPU_COUNT(&set)
            } else {
                0
            }
        };
        if let Ok(count @ 1..) = usize::try_from(count) {
            return count;
        }
    }
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn cpu_model() -> Option<String> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    // x86 says "model name"; some ARM kernels only "Hardware" or "Processor".
    ["model name", "Hardware", "Processor", "cpu model"]
        .iter()
        .find_map(|key| {
            text.lines().find_map(|line| {
                let (k, v) = line.split_once(':')?;
                (k.trim() == *key && !v.trim().is_empty()).then(|| v.trim().to_owned())
            })
        })
}

fn memory_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_ascii_whitespace().nth(1)?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

/// A sample and when it was taken.
#[derive(Debug)]
struct Timed {
    at: Instant,
    sample: ResourceSample,
}

/// What the sampling thread and the caller share.
#[derive(Debug)]
struct State {
    tree: ProcessTree,
    label: String,
    samples: Vec<Timed>,
    /// Why the latest GPU reading failed, when it did.
    gpu_error: Option<String>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Whether a GPU is watched at all.
    gpu_wanted: bool,
    /// Why the GPU could not be opened.
    gpu_unavailable: Option<String>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is plain data, consistent after any panic: keep using it.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Samples resource use on its own OS thread until dropped.
///
/// It watches one process tree at a time, labelled with the configuration measured
/// ([`watch`](Self::watch)), and keeps every sample (a few hundred bytes each: about 4 MB
/// an hour at the default interval). Each sample's CPU figures cover the interval that
/// ends when it is taken.
pub struct Sampler {
    shared: Arc<Shared>,
    started: Instant,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl fmt::Debug for Sampler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sampler")
            .field("started", &self.started)
            .field("gpu_unavailable", &self.shared.gpu_unavailable)
            .finish_non_exhaustive()
    }
}

impl Sampler {
    /// Starts sampling, watching the current process until [`watch`](Self::watch) says
    /// otherwise. The GPU, when `config.gpu` names one, is opened now; when it cannot be,
    /// the reason is logged, kept in [`gpu_unavailable`](Self::gpu_unavailable) and in every
    /// summary, and sampling goes on without GPU figures.
    pub fn start(config: MonitorConfig) -> Sampler {
        let gpu = config.gpu.map(|index| {
            open_gpu(index).inspect_err(|reason| {
                tracing::warn!(gpu = index, %reason, "GPU figures unavailable");
            })
        });
        Self::spawn(config, gpu)
    }

    /// Starts sampling with `gpu` as the GPU backend (another backend than NVML, or an
    /// in-memory one), in place of opening `config.gpu`.
    pub fn start_with_gpu(config: MonitorConfig, gpu: Box<dyn GpuMonitor>) -> Sampler {
        Self::spawn(config, Some(Ok(gpu)))
    }

    fn spawn(config: MonitorConfig, gpu: Option<Result<Box<dyn GpuMonitor>, String>>) -> Sampler {
        let started = Instant::now();
        let (gpu_wanted, gpu_unavailable, gpu) = match gpu {
            None => (false, None, None),
            Some(Ok(gpu)) => (true, None, Some(gpu)),
            Some(Err(reason)) => (true, Some(reason), None),
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                tree: ProcessTree::single(std::process::id()),
                label: String::new(),
                samples: Vec::new(),
                gpu_error: None,
            }),
            gpu_wanted,
            gpu_unavailable,
        });
        let (stop, stopped) = mpsc::channel();
        let interval = config.interval.max(Duration::from_millis(1));
        let thread = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("mlops-monitor".to_owned())
                .spawn(move || run(&shared, &stopped, interval, gpu, started))
        };
        let thread = match thread {
            Ok(thread) => Some(thread),
            Err(error) => {
                tracing::warn!(%error, "cannot start the resource sampler: no samples will be taken");
                None
            }
        };
        Sampler {
            shared,
            started,
            stop: Some(stop),
            thread,
        }
    }

    /// Watches this process tree from now on: the root `pid` and all its descendants,
    /// found again at every sample so that children started later count, labelled with
    /// the configuration id `label`. `None` means no server process (an in-process
    /// target): server figures are then the current process's (all its threads, the load
    /// generator's included).
    ///
    /// Samples taken after this returns are the new tree's.
    pub fn watch(&self, pid: Option<u32>, label: &str) {
        let tree = match pid {
            Some(pid) => ProcessTree::new(pid),
            None => ProcessTree::single(std::process::id()),
        };
        let mut state = self.shared.lock();
        state.tree = tree;
        label.clone_into(&mut state.label);
    }

    /// A summary of the samples taken since `since`: the server's mean and peak CPU in
    /// cores, its peak resident memory, the host's mean CPU in cores, and the GPU's mean
    /// utilisation, peak memory and mean power, or in `gpu_unavailable` why they are
    /// missing. With no sample in the window every figure is zero.
    pub fn summary_since(&self, since: Instant) -> ResourceSummary {
        let state = self.shared.lock();
        let window: Vec<&ResourceSample> = state
            .samples
            .iter()
            .filter(|timed| timed.at >= since)
            .map(|timed| &timed.sample)
            .collect();
        let mut summary = summarize(&window);
        if self.shared.gpu_wanted && summary.gpu_utilization_mean.is_none() {
            summary.gpu_unavailable = self
                .shared
                .gpu_unavailable
                .clone()
                .or_else(|| state.gpu_error.clone())
                .or_else(|| (!window.is_empty()).then(|| "no GPU reading succeeded".to_owned()));
        }
        summary
    }

    /// Every sample so far, oldest first; `t_s` counts from [`Sampler::start`].
    pub fn samples(&self) -> Vec<ResourceSample> {
        self.shared
            .lock()
            .samples
            .iter()
            .map(|timed| timed.sample.clone())
            .collect()
    }

    /// Why GPU figures are missing, if a GPU was asked for and they are: it could not be
    /// opened, or its latest reading failed.
    pub fn gpu_unavailable(&self) -> Option<String> {
        self.shared
            .gpu_unavailable
            .clone()
            .or_else(|| self.shared.lock().gpu_error.clone())
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        // Closing the channel wakes the thread at once.
        drop(self.stop.take());
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::warn!("the resource sampler's thread panicked");
        }
    }
}

/// The sampling loop: one sample per interval until the channel closes.
fn run(
    shared: &Shared,
    stopped: &mpsc::Receiver<()>,
    interval: Duration,
    mut gpu: Option<Box<dyn GpuMonitor>>,
    started: Instant,
) {
    let mut host = HostCpu::new();
    let mut last_error: Option<String> = None;
    let mut next = Instant::now() + interval;
    loop {
        match stopped.recv_timeout(next.saturating_duration_since(Instant::now())) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
        // After a stall, resume the cadence from now rather than catching up in a burst.
        next += interval;
        let now = Instant::now();
        if next < now {
            next = now + interval;
        }

        let host_cores = host.sample();
        let gpu_reading = gpu.as_mut().map(|g| g.sample());
        let mut state = shared.lock();
        let server = state.tree.sample();
        let at = Instant::now();
        let mut sample = ResourceSample {
            t_s: at.duration_since(started).as_secs_f64(),
            config: state.label.clone(),
            ..ResourceSample::default()
        };
        match gpu_reading {
            Some(Ok(reading)) => {
                sample.gpu_utilization = Some(reading.utilization_percent);
                sample.gpu_memory_bytes = Some(reading.memory_used_bytes);
                sample.gpu_power_watts = reading
                    .power_watts
                    .is_finite()
                    .then_some(reading.power_watts);
                state.gpu_error = None;
            }
            Some(Err(reason)) => {
                if state.gpu_error.as_ref() != Some(&reason) {
                    tracing::warn!(%reason, "GPU reading failed");
                }
                state.gpu_error = Some(reason);
            }
            None => {}
        }
        match (server, host_cores) {
            (Ok(server), Ok(host_cores)) => {
                last_error = None;
                // The first reading after a failed one has nothing to compare with.
                if let (Some(server_cores), Some(host_cores)) = (server.cpu_cores, host_cores) {
                    sample.server_cpu_cores = server_cores;
                    sample.server_rss_bytes = server.rss_bytes;
                    sample.host_cpu_cores = host_cores;
                    state.samples.push(Timed { at, sample });
                }
            }
            (Err(error), _) | (_, Err(error)) => {
                let message = error.to_string();
                if last_error.as_ref() != Some(&message) {
                    tracing::warn!(error = %message, "cannot read /proc: sample skipped");
                }
                last_error = Some(message);
            }
        }
    }
}

/// Means and peaks over `window`.
fn summarize(window: &[&ResourceSample]) -> ResourceSummary {
    fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
        let (sum, count) = values.fold((0.0, 0u32), |(sum, n), v| (sum + v, n + 1));
        (count > 0).then(|| sum / f64::from(count))
    }
    ResourceSummary {
        samples: window.len(),
        server_cpu_cores_mean: mean(window.iter().map(|s| s.server_cpu_cores)).unwrap_or(0.0),
        server_cpu_cores_max: window
            .iter()
            .map(|s| s.server_cpu_cores)
            .fold(0.0, f64::max),
        server_rss_bytes_max: window.iter().map(|s| s.server_rss_bytes).max().unwrap_or(0),
        host_cpu_cores_mean: mean(window.iter().map(|s| s.host_cpu_cores)).unwrap_or(0.0),
        gpu_utilization_mean: mean(window.iter().filter_map(|s| s.gpu_utilization)),
        gpu_memory_bytes_max: window.iter().filter_map(|s| s.gpu_memory_bytes).max(),
        gpu_power_watts_mean: mean(window.iter().filter_map(|s| s.gpu_power_watts)),
        gpu_unavailable: None,
    }
}
