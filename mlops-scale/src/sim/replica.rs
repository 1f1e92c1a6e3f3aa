//! How a simulated replica serves: parallel slots, a service-time distribution, a bounded
//! queue and the utilisation it reports, taken from a profile.

use mlops_core::profile::{ConfigStatus, LoadPoint, ProfileReport};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One replica's behaviour in the simulator.
///
/// A replica serves up to `slots` requests at once, first come first served; each takes a
/// log-normal service time with the given mean and shape; at most `max_queue` wait, and
/// the rest are dropped (answered with 429, a miss for the latency target). Its reported
/// utilisation is the busy share of its slots times `utilization_at_saturation`: a server
/// that cannot drive its GPU past 60% reports 0.6 when saturated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReplicaModel {
    /// Requests served at once.
    pub slots: u32,
    /// Mean service time, in milliseconds.
    pub service_mean_ms: f64,
    /// The log-normal shape (the standard deviation of the log of the service time); 0 is
    /// a fixed time.
    pub service_sigma: f64,
    /// Requests that may wait for a slot before more are dropped.
    pub max_queue: u32,
    /// The utilisation metric when every slot is busy (0 to 1).
    pub utilization_at_saturation: f64,
    /// What one replica costs per hour.
    pub cost_per_hour: f64,
    /// The profiled configuration it stands for, when it came from a profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_id: Option<String>,
    /// The device that configuration ran on (`cpu`, `gpu0`), when it came from a profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
}

impl ReplicaModel {
    /// A replica of `slots` slots at `service_mean_ms` each, a fixed service time, a queue
    /// of 256, full utilisation when saturated and a cost of 1 per hour.
    pub fn new(slots: u32, service_mean_ms: f64) -> Self {
        ReplicaModel {
            slots,
            service_mean_ms,
            service_sigma: 0.0,
            max_queue: 256,
            utilization_at_saturation: 1.0,
            cost_per_hour: 1.0,
            config_id: None,
            device: None,
        }
    }

    /// The same with a log-normal spread of service times.
    pub fn with_sigma(mut self, sigma: f64) -> Self {
        self.service_sigma = sigma;
        self
    }

    /// The same with another queue bound.
    pub fn with_max_queue(mut self, max_queue: u32) -> Self {
        self.max_queue = max_queue;
        self
    }

    /// The same with another utilisation ceiling.
    pub fn with_utilization_at_saturation(mut self, ceiling: f64) -> Self {
        self.utilization_at_saturation = ceiling;
        self
    }

    /// The same with another price.
    pub fn with_cost_per_hour(mut self, cost: f64) -> Self {
        self.cost_per_hour = cost;
        self
    }

    /// Requests per second it serves when saturated.
    pub fn saturation_rps(&self) -> f64 {
        self.slots as f64 * 1000.0 / self.service_mean_ms
    }

    /// The replica of a profile's recommended configuration.
    pub fn from_profile(report: &ProfileReport) -> Result<Self> {
        let id = report
            .recommendation
            .as_ref()
            .map(|r| r.config_id.clone())
            .ok_or_else(|| Error::Profile("the report recommends no configuration".to_string()))?;
        Self::from_profile_config(report, &id)
    }

    /// The replica of one profiled configuration. The saturation throughput is the
    /// highest measured, capped by the lowest rate at which the target was missed (in the
    /// curve or in the confirmation); the service time and its spread come from the lightest load
    /// measured (its mean, and its p99 over its median); the slots are what Little's law
    /// needs for that service time to reach that throughput; the utilisation ceiling is
    /// the server's CPU (or GPU) use at the highest throughput.
    pub fn from_profile_config(report: &ProfileReport, config_id: &str) -> Result<Self> {
        let profile = report.config(config_id).ok_or_else(|| {
            Error::Profile(format!("the report has no configuration '{config_id}'"))
        })?;
        if profile.status != ConfigStatus::Measured || profile.curve.is_empty() {
            return Err(Error::Profile(format!(
                "configuration '{config_id}' has no measurements"
            )));
        }
        let busiest = profile
            .curve
            .iter()
            .max_by(|a, b| a.throughput_rps.total_cmp(&b.throughput_rps))
            .ok_or_else(|| Error::Profile(format!("'{config_id}' has no measurements")))?;
        let lightest = profile
            .curve
            .iter()
            .filter(|m| m.requests > 0)
            .min_by(|a, b| a.throughput_rps.total_cmp(&b.throughput_rps))
            .ok_or_else(|| Error::Profile(format!("'{config_id}' answered no request")))?;
        // The profile's open-loop points and its confirmation say where the target broke:
        // a replica that missed it at some rate cannot be modelled as serving more.
        let missed = profile
            .curve
            .iter()
            .filter(|m| {
                matches!(m.load, LoadPoint::Rate { .. })
                    && (m.latency_at(report.percentile) > report.latency_target_ms
                        || m.error_count() > 0)
            })
            .map(|m| m.throughput_rps)
            .chain(
                report
                    .confirmation
                    .iter()
                    .filter(|c| c.config_id == config_id)
                    .flat_map(|c| c.missed_rates_rps.iter().copied()),
            )
            .filter(|r| *r > 0.0)
            .fold(f64::INFINITY, f64::min);
        let saturation = busiest.throughput_rps.min(missed);
        let latency = lightest.latency;
        if !(saturation > 0.0 && latency.mean_ms > 0.0 && latency.p50_ms > 0.0) {
            return Err(Error::Profile(format!(
                "'{config_id}' has no throughput or latency to model"
            )));
        }
        let slots = (saturation * latency.mean_ms / 1000.0).round().max(1.0);
        let service_mean_ms = slots * 1000.0 / saturation;
        // The 99th percentile of a log-normal sits 2.326 sigma above its median.
        let sigma = ((latency.p99_ms / latency.p50_ms).ln() / 2.326).clamp(0.0, 1.5);
        let utilization = busiest
            .resources
            .as_ref()
            .and_then(|r| {
                if profile.config.device.is_gpu() {
                    r.gpu_utilization_mean.map(|u| u / 100.0)
                } else if profile.config.cpu_cores > 0 {
                    Some(r.server_cpu_cores_mean / profile.config.cpu_cores as f64)
                } else {
                    None
                }
            })
            .filter(|u| u.is_finite() && *u > 0.0);
        let utilization = match utilization {
            Some(u) => u.clamp(0.05, 1.0),
            None => {
                tracing::warn!(
                    config = config_id,
                    "the profile has no utilisation at its busiest point: modelled as 100% when saturated"
                );
                1.0
            }
        };
        Ok(ReplicaModel {
            slots: slots as u32,
            service_mean_ms,
            service_sigma: sigma,
            max_queue: 256,
            utilization_at_saturation: utilization,
            cost_per_hour: profile.cost_per_hour,
            config_id: Some(config_id.to_string()),
            device: Some(profile.config.device.to_string()),
        })
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.slots == 0 {
            return Err(Error::config("slots", "a replica needs at least one"));
        }
        if !(self.service_mean_ms.is_finite() && self.service_mean_ms > 0.0) {
            return Err(Error::config("service_mean_ms", "must be positive"));
        }
        if !(self.service_sigma.is_finite() && (0.0..=3.0).contains(&self.service_sigma)) {
            return Err(Error::config("service_sigma", "must be in [0, 3]"));
        }
        if !(self.utilization_at_saturation > 0.0 && self.utilization_at_saturation <= 1.0) {
            return Err(Error::config(
                "utilization_at_saturation",
                "must be in (0, 1]",
            ));
        }
        if !(self.cost_per_hour.is_finite() && self.cost_per_hour >= 0.0) {
            return Err(Error::config("cost_per_hour", "must be >= 0"));
        }
        Ok(())
    }
}
