//! What one simulation found.

use serde::{Deserialize, Serialize};

use super::{ReplicaModel, SimConfig};
use crate::error::{Error, Result};
use crate::policy::Action;

/// The report format's version; [`SimReport::from_json`] refuses newer ones.
pub const SCHEMA_VERSION: u32 = 1;

/// A change of the replica count.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScaleEvent {
    /// When, in seconds from the start.
    pub t_s: f64,
    /// Replicas asked for before.
    pub from: u32,
    /// Replicas asked for after.
    pub to: u32,
    /// Up or down.
    pub action: Action,
    /// The policy's reason.
    pub reason: String,
}

/// One interval of the time series.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SeriesPoint {
    /// The interval's start, in seconds.
    pub t_s: f64,
    /// Arrivals per second.
    pub demand_rps: f64,
    /// Replicas provisioned (starting, ready or draining), the mean over the interval.
    pub replicas: f64,
    /// Replicas ready, the mean.
    pub ready: f64,
    /// The report's percentile of the latency of requests that arrived in it, in ms.
    pub latency_ms: f64,
    /// Requests dropped.
    pub dropped: u64,
    /// The share of its arrivals answered within the target.
    pub slo_attainment: f64,
}

/// The outcome of one policy on one trace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimReport {
    /// [`SCHEMA_VERSION`] when written.
    pub schema_version: u32,
    /// The policy's name.
    pub policy: String,
    /// The trace's name.
    pub trace: String,
    /// Simulated seconds.
    pub duration_s: f64,
    /// Requests in the trace.
    pub requests: u64,
    /// Requests answered.
    pub answered: u64,
    /// Requests dropped (queue full or no replica ready): misses.
    pub dropped: u64,
    /// The latency target, in milliseconds.
    pub latency_target_ms: f64,
    /// The percentile reported.
    pub percentile: u8,
    /// The share of all requests answered within the target; dropped ones count as misses.
    pub slo_attainment: f64,
    /// Median latency of answered requests, in milliseconds.
    pub latency_p50_ms: f64,
    /// The percentile's latency of answered requests, in milliseconds.
    pub latency_ms: f64,
    /// The slowest answer, in milliseconds.
    pub latency_max_ms: f64,
    /// Replicas × seconds provisioned, cold starts and drains included.
    pub replica_seconds: f64,
    /// Replica-seconds over the duration.
    pub mean_replicas: f64,
    /// The most replicas asked for.
    pub peak_replicas: u32,
    /// Replica-seconds at the replica's price.
    pub cost: f64,
    /// The most requests waiting at once, all replicas together.
    pub queue_peak: u64,
    /// The most requests in flight at once.
    pub in_flight_peak: u64,
    /// Times the policy was asked.
    pub decisions: u64,
    /// Times it held for missing or stale metrics.
    pub stale_decisions: u64,
    /// Changes of the replica count.
    pub scale_events: usize,
    /// Each change, in order.
    pub events: Vec<ScaleEvent>,
    /// Demand, replicas and latency per interval.
    pub series: Vec<SeriesPoint>,
    /// The replica model.
    pub replica: ReplicaModel,
    /// The settings.
    pub config: SimConfig,
    /// Real seconds the simulation took.
    pub wall_s: f64,
}

impl SimReport {
    /// Reads a report, refusing one written by a newer version.
    pub fn from_json(text: &str) -> Result<Self> {
        let report: SimReport =
            serde_json::from_str(text).map_err(|source| Error::ReportJson { source })?;
        if report.schema_version > SCHEMA_VERSION {
            return Err(Error::config(
                "schema_version",
                format!(
                    "{} is newer than this library's {SCHEMA_VERSION}",
                    report.schema_version
                ),
            ));
        }
        Ok(report)
    }

    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        #[allow(clippy::unwrap_used)] // plain data: always serialisable
        serde_json::to_string_pretty(self).unwrap()
    }

    /// How many times faster than real time it ran.
    pub fn speedup(&self) -> f64 {
        self.duration_s / self.wall_s.max(1e-9)
    }

    /// A few lines for a terminal.
    pub fn summary(&self) -> String {
        let on = match (&self.replica.config_id, &self.replica.device) {
            (Some(id), Some(device)) => format!(" ({id} on {device})"),
            (Some(id), None) => format!(" ({id})"),
            _ => String::new(),
        };
        format!(
            "{} on {}{on}: {:.2}% of {} requests within {} ms ({} dropped); p{} {:.1} ms; \
             {:.0} replica-seconds (mean {:.2}, peak {}), cost {:.4}; {} scale events; \
             queue peak {}",
            self.policy,
            self.trace,
            self.slo_attainment * 100.0,
            self.requests,
            self.latency_target_ms,
            self.dropped,
            self.percentile,
            self.latency_ms,
            self.replica_seconds,
            self.mean_replicas,
            self.peak_replicas,
            self.cost,
            self.scale_events,
            self.queue_peak
        )
    }
}
