//! What a performance profile says about a model, in the shape every crate reads.
//!
//! `mlops-profile` measures a model under serving configurations and writes a
//! [`ProfileReport`]; `mlops-scale` reads each configuration's [`capacity`](ConfigProfile::capacity_rps)
//! to set autoscaling targets, and a server reads the [`Recommendation`]'s
//! [`ServingConfig`] to run with the settings that were measured. None of them needs the
//! load generator for that: the types live here.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The version of [`ProfileReport`]'s JSON layout. Readers refuse a newer one.
pub const PROFILE_SCHEMA_VERSION: u32 = 1;

/// Where a configuration computes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ComputeDevice {
    /// The host's CPU cores only.
    #[default]
    Cpu,
    /// An NVIDIA GPU, by index, possibly a fraction of it under MPS.
    Gpu {
        /// The GPU's index (`CUDA_VISIBLE_DEVICES` order).
        index: u32,
    },
}

impl ComputeDevice {
    /// Whether this is a GPU.
    pub fn is_gpu(self) -> bool {
        matches!(self, ComputeDevice::Gpu { .. })
    }
}

impl fmt::Display for ComputeDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ComputeDevice::Cpu => f.write_str("cpu"),
            ComputeDevice::Gpu { index } => write!(f, "gpu{index}"),
        }
    }
}

/// One way to serve a model: the hardware budget and the server's settings. A search
/// varies these; a server applies them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServingConfig {
    /// CPU or GPU.
    pub device: ComputeDevice,
    /// CPU cores the server may run on (its affinity), and what a replica is billed for.
    pub cpu_cores: u32,
    /// The share of the GPU's threads under MPS (`1.0`, `0.5`, `0.25`); `None` on CPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_fraction: Option<f64>,
    /// GPU memory the replica may pin under MPS, in bytes; `None` for no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_memory_bytes: Option<u64>,
    /// The batcher's largest batch (`1` disables batching).
    pub max_batch_size: usize,
    /// How long a request may wait for others to batch with, in microseconds.
    pub max_queue_delay_us: u64,
    /// Model instances (sessions, each on its own thread).
    pub instances: usize,
    /// Threads one inference may use inside the runtime (ONNX Runtime's intra-op pool).
    pub intra_op_threads: usize,
}

impl Default for ServingConfig {
    fn default() -> Self {
        ServingConfig {
            device: ComputeDevice::Cpu,
            cpu_cores: 1,
            gpu_fraction: None,
            gpu_memory_bytes: None,
            max_batch_size: 32,
            max_queue_delay_us: 0,
            instances: 1,
            intra_op_threads: 1,
        }
    }
}

impl ServingConfig {
    /// A short stable name: `cpu2-b8-d0-i1-t1`, `gpu0x0.50-c2-b32-d100-i2-t1`.
    pub fn id(&self) -> String {
        let device = match (self.device, self.gpu_fraction) {
            (ComputeDevice::Cpu, _) => format!("cpu{}", self.cpu_cores),
            (ComputeDevice::Gpu { index }, fraction) => {
                format!(
                    "gpu{index}x{:.2}-c{}",
                    fraction.unwrap_or(1.0),
                    self.cpu_cores
                )
            }
        };
        format!(
            "{device}-b{}-d{}-i{}-t{}",
            self.max_batch_size, self.max_queue_delay_us, self.instances, self.intra_op_threads
        )
    }

    /// The GPU share this configuration holds: its fraction on a GPU, 0 on CPU.
    pub fn gpu_share(&self) -> f64 {
        match self.device {
            ComputeDevice::Cpu => 0.0,
            ComputeDevice::Gpu { .. } => self.gpu_fraction.unwrap_or(1.0),
        }
    }
}

/// What hardware costs, per hour. A GPU fraction is billed at its fraction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CostModel {
    /// One CPU core for an hour.
    pub cpu_core_hour: f64,
    /// One whole GPU for an hour.
    pub gpu_hour: f64,
    /// The currency the figures are in.
    pub currency: String,
}

impl Default for CostModel {
    /// Round on-demand cloud prices: 0.04 per vCPU-hour (general-purpose x86 instances),
    /// 2.50 per GPU-hour (a data-centre GPU), in USD. Set your own.
    fn default() -> Self {
        CostModel {
            cpu_core_hour: 0.04,
            gpu_hour: 2.50,
            currency: "USD".to_owned(),
        }
    }
}

impl CostModel {
    /// What one replica of `config` costs per hour.
    pub fn hourly(&self, config: &ServingConfig) -> f64 {
        f64::from(config.cpu_cores) * self.cpu_core_hour + config.gpu_share() * self.gpu_hour
    }

    /// What a million requests cost on one replica of `config` serving `rps` requests per
    /// second.
    pub fn per_million(&self, config: &ServingConfig, rps: f64) -> f64 {
        if rps <= 0.0 {
            return f64::INFINITY;
        }
        self.hourly(config) / (rps * 3600.0) * 1e6
    }
}

/// How load was applied in one measurement.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LoadPoint {
    /// A closed loop: this many requests outstanding at all times.
    Concurrency {
        /// Outstanding requests.
        concurrency: usize,
    },
    /// An open loop: requests sent at this rate, whatever the answers.
    Rate {
        /// Requests per second.
        rps: f64,
        /// Poisson arrivals when true, evenly spaced when false.
        poisson: bool,
    },
}

impl fmt::Display for LoadPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadPoint::Concurrency { concurrency } => write!(f, "concurrency {concurrency}"),
            LoadPoint::Rate { rps, poisson } => {
                write!(
                    f,
                    "{rps:.1} req/s{}",
                    if *poisson { " (Poisson)" } else { "" }
                )
            }
        }
    }
}

/// Latency percentiles of one measurement, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Mean.
    pub mean_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// The slowest answer.
    pub max_ms: f64,
}

impl LatencySummary {
    /// The percentile a target is set on (`50`, `90`, `95`, `99`, or anything else for
    /// the maximum).
    pub fn at(&self, percentile: u8) -> f64 {
        match percentile {
            50 => self.p50_ms,
            90 => self.p90_ms,
            95 => self.p95_ms,
            99 => self.p99_ms,
            _ => self.max_ms,
        }
    }
}

/// CPU, memory and GPU use over one measurement.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ResourceSummary {
    /// Samples taken.
    pub samples: usize,
    /// The server process tree's CPU use, in cores (1.0 = one core busy), mean and peak.
    pub server_cpu_cores_mean: f64,
    /// Peak of the same.
    pub server_cpu_cores_max: f64,
    /// The server process tree's resident memory, peak, in bytes.
    pub server_rss_bytes_max: u64,
    /// The whole host's CPU use, in cores, mean.
    pub host_cpu_cores_mean: f64,
    /// GPU utilisation in percent, mean, where a GPU is watched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_utilization_mean: Option<f64>,
    /// GPU memory used, peak, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_memory_bytes_max: Option<u64>,
    /// GPU power draw, mean, in watts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_power_watts_mean: Option<f64>,
    /// Why GPU figures are missing, when they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_unavailable: Option<String>,
}

/// One resource sample, for charts of use over time.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ResourceSample {
    /// Seconds since the profile started.
    pub t_s: f64,
    /// The configuration being measured.
    pub config: String,
    /// The server process tree's CPU use, in cores, since the previous sample.
    pub server_cpu_cores: f64,
    /// Its resident memory, in bytes.
    pub server_rss_bytes: u64,
    /// The host's CPU use, in cores.
    pub host_cpu_cores: f64,
    /// GPU utilisation in percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_utilization: Option<f64>,
    /// GPU memory used, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_memory_bytes: Option<u64>,
    /// GPU power draw, in watts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_power_watts: Option<f64>,
}

/// One load point's result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    /// The load applied.
    pub load: LoadPoint,
    /// Answered requests per second over the reported windows.
    pub throughput_rps: f64,
    /// Latency of the answered requests over the reported windows.
    pub latency: LatencySummary,
    /// Requests answered in the reported windows.
    pub requests: u64,
    /// Requests that failed in the reported windows, by kind (`timeout`, `http_503`, …).
    pub errors: BTreeMap<String, u64>,
    /// Whether the last windows agreed within the stability threshold.
    pub stable: bool,
    /// Windows measured before it was stable (or the limit).
    pub trials: usize,
    /// The load generator's process's CPU time per request, in microseconds (with an
    /// in-process target, the model's too).
    pub client_cpu_us_per_request: f64,
    /// Resource use while it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceSummary>,
}

impl Measurement {
    /// Requests that failed, all kinds together.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// The latency percentile a target is set on (`50`, `90`, `95`, `99`, or anything
    /// else for the maximum).
    pub fn latency_at(&self, percentile: u8) -> f64 {
        self.latency.at(percentile)
    }
}

/// What became of one configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ConfigStatus {
    /// Measured; its capacity is known (possibly zero: even one request misses the target).
    Measured,
    /// Started but could not be measured: the server never became ready, crashed, or
    /// answered errors.
    Failed {
        /// Why.
        reason: String,
    },
    /// Could not run on this host at all (no GPU, not compiled with CUDA, too few cores).
    Unavailable {
        /// Why.
        reason: String,
    },
    /// Part of the space, not measured: the search judged it not worth the time.
    Skipped,
}

/// One configuration's profile: its curve and its capacity at the latency target.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConfigProfile {
    /// The configuration's [`ServingConfig::id`].
    pub id: String,
    /// What was run.
    pub config: ServingConfig,
    /// Whether it was measured.
    pub status: ConfigStatus,
    /// The highest throughput it sustains with the target percentile within the latency
    /// target, in requests per second; `None` unless measured.
    #[serde(default)]
    pub capacity_rps: Option<f64>,
    /// The measurement that set the capacity (index into `curve`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity_point: Option<usize>,
    /// Every load point measured, in order.
    pub curve: Vec<Measurement>,
    /// What one replica costs per hour under the report's cost model.
    pub cost_per_hour: f64,
}

impl ConfigProfile {
    /// The measurement at capacity.
    pub fn at_capacity(&self) -> Option<&Measurement> {
        self.capacity_point.and_then(|i| self.curve.get(i))
    }
}

/// The cheapest way found to serve the demand.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Recommendation {
    /// The configuration's id.
    pub config_id: String,
    /// The configuration each replica runs.
    pub config: ServingConfig,
    /// Replicas needed for the demand (1 with no demand given).
    pub replicas: u32,
    /// One replica's capacity at the latency target, in requests per second.
    pub capacity_rps: f64,
    /// The demand it was sized for, when one was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub demand_rps: Option<f64>,
    /// What all replicas cost per hour.
    pub cost_per_hour: f64,
    /// What a million requests cost with the replicas fully used to capacity.
    pub cost_per_million: f64,
    /// Whether it meets the latency target; false when no configuration does and this is
    /// the closest one.
    pub meets_target: bool,
    /// A sentence on how it was chosen, or why nothing met the target.
    pub reason: String,
}

/// The check that the recommended configuration holds its reported capacity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Confirmation {
    /// The configuration's id.
    pub config_id: String,
    /// The rate it was driven at, in requests per second.
    pub rate_rps: f64,
    /// The measurement (open loop at that rate).
    pub measurement: Measurement,
    /// The target percentile's latency in each window, in milliseconds.
    pub window_latency_ms: Vec<f64>,
    /// Whether every stable window (the last `stability_windows`) met the latency target
    /// with no failed request.
    pub passed: bool,
    /// Higher rates tried first that missed the target, in the order tried; when the
    /// confirmation passed at a lower rate, that rate became the configuration's capacity.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missed_rates_rps: Vec<f64>,
}

/// How the configurations were chosen.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SearchSummary {
    /// `brute_force` or `hill_climb`.
    pub strategy: String,
    /// The seed the search drew with (the load's seed for a strategy that draws nothing).
    pub seed: u64,
    /// Configurations in the space.
    pub space_size: usize,
    /// Configurations measured (or attempted).
    pub measured: usize,
    /// The ids in the order they were measured.
    pub path: Vec<String>,
}

/// The model a report is about.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProfiledModel {
    /// Its name.
    pub name: String,
    /// Its registry version, when it came from one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// The sha256 of its entry file, to tell a report about another build of the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Its format.
    #[serde(default)]
    pub format: String,
}

/// The machine a report was measured on.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HostInfo {
    /// Host name.
    pub hostname: String,
    /// CPU cores the profiler could use.
    pub cpu_cores: usize,
    /// The CPU's model name.
    pub cpu_model: String,
    /// Memory, in bytes.
    pub memory_bytes: u64,
    /// GPUs seen, by name.
    pub gpus: Vec<String>,
    /// Why no GPU was seen, when none was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_unavailable: Option<String>,
}

/// A whole profile: every measurement, each configuration's capacity, the resource samples
/// and the recommendation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProfileReport {
    /// [`PROFILE_SCHEMA_VERSION`] when written.
    pub schema_version: u32,
    /// The model.
    pub model: ProfiledModel,
    /// Where it was measured.
    pub host: HostInfo,
    /// How the load was sent (`in_process`, `http_json`, `http_binary`, `grpc`).
    pub protocol: String,
    /// The latency target, in milliseconds.
    pub latency_target_ms: f64,
    /// The percentile the target applies to (99 by default).
    pub percentile: u8,
    /// The demand to serve, in requests per second, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub demand_rps: Option<f64>,
    /// The prices the costs come from.
    pub cost_model: CostModel,
    /// Every configuration of the space, measured or not.
    pub configs: Vec<ConfigProfile>,
    /// The choice; `None` only when nothing could be measured at all.
    #[serde(default)]
    pub recommendation: Option<Recommendation>,
    /// The recommended configuration driven at its capacity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmation: Option<Confirmation>,
    /// How the search went.
    pub search: SearchSummary,
    /// Resource samples over the whole run.
    #[serde(default)]
    pub samples: Vec<ResourceSample>,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// How long it took, in seconds.
    pub duration_s: f64,
    /// Whether it was interrupted before the search finished.
    #[serde(default)]
    pub interrupted: bool,
}

/// Why a profile could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// Not JSON of this shape.
    #[error("not a profile report: {0}")]
    Malformed(#[from] serde_json::Error),
    /// Written by a newer version.
    #[error("profile report schema {found} is newer than this build reads ({supported})")]
    SchemaTooNew {
        /// The report's schema version.
        found: u32,
        /// The newest this build reads.
        supported: u32,
    },
}

impl ProfileReport {
    /// Reads a report from JSON, refusing a newer schema.
    pub fn from_json(text: &str) -> Result<ProfileReport, ReportError> {
        #[derive(Deserialize)]
        struct Version {
            schema_version: u32,
        }
        let version: Version = serde_json::from_str(text)?;
        if version.schema_version > PROFILE_SCHEMA_VERSION {
            return Err(ReportError::SchemaTooNew {
                found: version.schema_version,
                supported: PROFILE_SCHEMA_VERSION,
            });
        }
        Ok(serde_json::from_str(text)?)
    }

    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        // Every field is a plain value: serialisation cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// The profile of a configuration, by id.
    pub fn config(&self, id: &str) -> Option<&ConfigProfile> {
        self.configs.iter().find(|c| c.id == id)
    }

    /// The configurations measured, with their capacities.
    pub fn measured(&self) -> impl Iterator<Item = (&ConfigProfile, f64)> {
        self.configs
            .iter()
            .filter_map(|c| c.capacity_rps.map(|cap| (c, cap)))
    }

    /// A few lines a person reads: the target, the recommendation, its price.
    pub fn summary(&self) -> String {
        let mut out = format!(
            "{}: p{} within {} ms, {} of {} configurations measured ({})",
            self.model.name,
            self.percentile,
            self.latency_target_ms,
            self.search.measured,
            self.search.space_size,
            self.search.strategy,
        );
        match &self.recommendation {
            Some(r) => {
                out.push_str(&format!(
                    "\n{} {} × {} at {:.0} req/s each: {:.4} {}/h, {:.4} {} per million requests",
                    if r.meets_target {
                        "recommended:"
                    } else {
                        "closest (misses the target):"
                    },
                    r.replicas,
                    r.config_id,
                    r.capacity_rps,
                    r.cost_per_hour,
                    self.cost_model.currency,
                    r.cost_per_million,
                    self.cost_model.currency,
                ));
                out.push_str(&format!("\n{}", r.reason));
            }
            None => out.push_str("\nno configuration could be measured"),
        }
        if let Some(c) = &self.confirmation {
            out.push_str(&format!(
                "\nconfirmation at {:.0} req/s: {}",
                c.rate_rps,
                if c.passed {
                    "met the target in every stable window"
                } else {
                    "missed the target"
                }
            ));
        }
        out
    }
}
