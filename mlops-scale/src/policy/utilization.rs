//! The Kubernetes HPA's rule on utilisation.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Bounds, Decision, Observation, Policy, Window, fresh, nonzero, positive, secs};
use crate::error::{Error, Result};

/// The HPA's settings; the defaults are Kubernetes' own.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct UtilizationConfig {
    /// Target utilisation per replica, 0 to 1 (the HPA's `averageUtilization` / 100).
    pub target: f64,
    /// No change while `current / target` is within this of 1 (default 0.1).
    pub tolerance: f64,
    /// How often it decides (default 15 s).
    #[serde(with = "secs")]
    pub sync_period: Duration,
    /// Scale-up stabilisation: the lowest recommendation over this window (default 0 s).
    #[serde(with = "secs")]
    pub scale_up_stabilization: Duration,
    /// Scale-down stabilisation: the highest recommendation over this window (default 300 s).
    #[serde(with = "secs")]
    pub scale_down_stabilization: Duration,
    /// Scale-up limit: this share of the current replicas per period (default 1.0 = 100%)…
    pub scale_up_percent: f64,
    /// …or this many pods per period, whichever is more (default 4).
    pub scale_up_pods: u32,
    /// Scale-down limit: this share of the current replicas per period (default 1.0).
    pub scale_down_percent: f64,
    /// The period the limits apply to (default 15 s).
    #[serde(with = "secs")]
    pub limit_period: Duration,
    /// Metrics older than this hold the current size (default 60 s).
    #[serde(with = "secs")]
    pub max_metric_age: Duration,
    /// The replica range.
    #[serde(flatten)]
    pub bounds: Bounds,
}

impl Default for UtilizationConfig {
    fn default() -> Self {
        UtilizationConfig {
            target: 0.7,
            tolerance: 0.1,
            sync_period: Duration::from_secs(15),
            scale_up_stabilization: Duration::ZERO,
            scale_down_stabilization: Duration::from_secs(300),
            scale_up_percent: 1.0,
            scale_up_pods: 4,
            scale_down_percent: 1.0,
            limit_period: Duration::from_secs(15),
            max_metric_age: Duration::from_secs(60),
            bounds: Bounds::default(),
        }
    }
}

impl UtilizationConfig {
    /// The defaults with another target (0 to 1).
    pub fn with_target(mut self, target: f64) -> Self {
        self.target = target;
        self
    }

    /// The same with another replica range.
    pub fn with_bounds(mut self, bounds: Bounds) -> Self {
        self.bounds = bounds;
        self
    }

    fn validate(&self) -> Result<()> {
        positive("target", self.target)?;
        if self.target > 1.0 {
            return Err(Error::config(
                "target",
                format!("utilisation is a share (0 to 1], not {}", self.target),
            ));
        }
        if !(0.0..1.0).contains(&self.tolerance) {
            return Err(Error::config("tolerance", "must be in [0, 1)"));
        }
        nonzero("sync_period", self.sync_period)?;
        nonzero("limit_period", self.limit_period)?;
        positive("scale_up_percent", self.scale_up_percent)?;
        positive("scale_down_percent", self.scale_down_percent)?;
        self.bounds.validate()
    }
}

/// The Kubernetes HPA on one utilisation metric (CPU or GPU), with its tolerance,
/// treatment of missing and unready pods, stabilisation windows and rate limits.
#[derive(Debug)]
pub struct Utilization {
    config: UtilizationConfig,
    recommendations: Window<u32>,
    /// Scale events (time, replicas before, replicas after) for the rate limits.
    events: Window<(u32, u32)>,
}

impl Utilization {
    /// The policy, after checking the settings.
    pub fn new(config: UtilizationConfig) -> Result<Self> {
        config.validate()?;
        Ok(Utilization {
            config,
            recommendations: Window::default(),
            events: Window::default(),
        })
    }

    /// What the replica calculator wants, before stabilisation and limits.
    fn calculate(&self, observation: &Observation, utilization: &[f64]) -> (u32, String) {
        let c = &self.config;
        let current = observation.desired;
        let with_metrics = utilization.len() as f64;
        let sum: f64 = utilization.iter().sum();
        let ratio = sum / (c.target * with_metrics);
        let mean = sum / with_metrics;
        let missing = observation.ready.saturating_sub(utilization.len() as u32) as f64;
        let unready = observation.starting as f64;
        let summary = format!(
            "utilisation {:.0}% against {:.0}% on {} replicas",
            mean * 100.0,
            c.target * 100.0,
            utilization.len()
        );
        // As the HPA's replica calculator: unready replicas are rebalanced only when
        // scaling up, missing ones whichever way the ratio points.
        let rebalance_unready = unready > 0.0 && ratio > 1.0;
        if !rebalance_unready && missing == 0.0 {
            if (ratio - 1.0).abs() <= c.tolerance {
                return (current, format!("{summary}: within tolerance"));
            }
            return ((ratio * with_metrics).ceil() as u32, summary);
        }
        // Missing replicas count as at the target when scaling down and as idle when
        // scaling up; unready ones as idle when scaling up.
        let mut total = sum;
        let mut pods = with_metrics;
        if missing > 0.0 {
            if ratio < 1.0 {
                total += missing * c.target;
                pods += missing;
            } else if ratio > 1.0 {
                pods += missing;
            }
        }
        if rebalance_unready {
            pods += unready;
        }
        let new_ratio = total / (c.target * pods);
        if (new_ratio - 1.0).abs() <= c.tolerance
            || (ratio < 1.0 && new_ratio > 1.0)
            || (ratio > 1.0 && new_ratio < 1.0)
        {
            return (
                current,
                format!("{summary}: holding, counting missing and unready replicas"),
            );
        }
        let wanted = (new_ratio * pods).ceil() as u32;
        if (new_ratio < 1.0 && wanted > current) || (new_ratio > 1.0 && wanted < current) {
            return (
                current,
                format!("{summary}: holding, the count would move against the ratio"),
            );
        }
        (
            wanted,
            format!("{summary} (missing and unready replicas counted)"),
        )
    }
}

impl Policy for Utilization {
    fn name(&self) -> String {
        format!("utilization {:.0}%", self.config.target * 100.0)
    }

    fn period(&self) -> Duration {
        self.config.sync_period
    }

    fn decide(&mut self, now: Duration, observation: &Observation) -> Decision {
        let c = self.config.clone();
        let metrics = match fresh(now, observation, c.max_metric_age) {
            Ok(m) if !m.utilization.is_empty() => m,
            Ok(_) => {
                return Decision::stale(
                    observation,
                    c.bounds,
                    "no replica reported utilisation: holding".to_string(),
                );
            }
            Err(why) => return Decision::stale(observation, c.bounds, why),
        };
        let current = observation.desired;
        let (raw, mut reason) = self.calculate(observation, &metrics.utilization);

        // Stabilisation: scale up to the lowest recommendation over its window, down to the
        // highest over its window (the current one included).
        let window = c.scale_up_stabilization.max(c.scale_down_stabilization);
        self.recommendations.push(now, raw);
        self.recommendations.trim(now, window);
        let mut wanted = raw;
        if raw > current {
            let lowest = self
                .recommendations
                .since(now, c.scale_up_stabilization)
                .min()
                .unwrap_or(raw);
            wanted = lowest.max(current);
        } else if raw < current {
            let highest = self
                .recommendations
                .since(now, c.scale_down_stabilization)
                .max()
                .unwrap_or(raw);
            if highest > raw {
                reason.push_str(&format!(
                    "; scale-down stabilised at {highest} (the most wanted over {:.0} s)",
                    c.scale_down_stabilization.as_secs_f64()
                ));
            }
            wanted = highest.min(current);
        }

        // Rate limits, against the replica count at the start of the limit period.
        self.events.trim(now, c.limit_period);
        if wanted > current {
            let added: u32 = self
                .events
                .since(now, c.limit_period)
                .map(|(from, to)| to.saturating_sub(from))
                .sum();
            let start = current.saturating_sub(added);
            let by_percent = (start as f64 * (1.0 + c.scale_up_percent)).ceil() as u32;
            let limit = by_percent.max(start + c.scale_up_pods);
            if wanted > limit {
                reason.push_str(&format!("; scale-up limited to {limit}"));
                wanted = limit;
            }
        } else if wanted < current {
            let removed: u32 = self
                .events
                .since(now, c.limit_period)
                .map(|(from, to)| from.saturating_sub(to))
                .sum();
            let start = current + removed;
            // Truncated, as Kubernetes does.
            let limit = (start as f64 * (1.0 - c.scale_down_percent)).max(0.0) as u32;
            if wanted < limit {
                reason.push_str(&format!("; scale-down limited to {limit}"));
                wanted = limit;
            }
        }
        let decision = Decision::to(observation, c.bounds, wanted, reason);
        if decision.replicas != current {
            self.events.push(now, (current, decision.replicas));
        }
        decision
    }
}
