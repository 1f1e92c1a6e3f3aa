//! Knative's KPA rule on concurrency.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Bounds, Decision, Observation, Policy, Window, fresh, nonzero, positive, secs};
use crate::error::{Error, Result};

/// The KPA's settings; the defaults are Knative's own.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConcurrencyConfig {
    /// Requests in flight per replica to aim for (`container-concurrency-target-default`,
    /// default 100).
    pub target: f64,
    /// The share of `target` actually aimed at (`container-concurrency-target-percentage`,
    /// default 0.7).
    pub target_utilization: f64,
    /// The stable window the mean concurrency is taken over (default 60 s).
    #[serde(with = "secs")]
    pub stable_window: Duration,
    /// The panic window as a percentage of the stable window (default 10: 6 s).
    pub panic_window_percentage: f64,
    /// Panic when the panic window wants this multiple of the ready replicas (default 2).
    pub panic_threshold: f64,
    /// At most this multiple of the ready replicas per tick (default 1000).
    pub max_scale_up_rate: f64,
    /// At least the ready replicas divided by this per tick (default 2).
    pub max_scale_down_rate: f64,
    /// The tick (default 2 s).
    #[serde(with = "secs")]
    pub tick: Duration,
    /// Metrics older than this hold the current size (default 10 s).
    #[serde(with = "secs")]
    pub max_metric_age: Duration,
    /// The replica range.
    #[serde(flatten)]
    pub bounds: Bounds,
}

impl Default for ConcurrencyConfig {
    fn default() -> Self {
        ConcurrencyConfig {
            target: 100.0,
            target_utilization: 0.7,
            stable_window: Duration::from_secs(60),
            panic_window_percentage: 10.0,
            panic_threshold: 2.0,
            max_scale_up_rate: 1000.0,
            max_scale_down_rate: 2.0,
            tick: Duration::from_secs(2),
            max_metric_age: Duration::from_secs(10),
            bounds: Bounds::default(),
        }
    }
}

impl ConcurrencyConfig {
    /// The defaults with another concurrency target per replica.
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
        positive("target_utilization", self.target_utilization)?;
        if self.target_utilization > 1.0 {
            return Err(Error::config("target_utilization", "must be at most 1"));
        }
        nonzero("stable_window", self.stable_window)?;
        nonzero("tick", self.tick)?;
        if !(1.0..=100.0).contains(&self.panic_window_percentage) {
            return Err(Error::config(
                "panic_window_percentage",
                format!(
                    "{} is not a percentage in [1, 100]",
                    self.panic_window_percentage
                ),
            ));
        }
        positive("panic_threshold", self.panic_threshold)?;
        if self.max_scale_up_rate < 1.0 || !self.max_scale_up_rate.is_finite() {
            return Err(Error::config("max_scale_up_rate", "must be at least 1"));
        }
        if self.max_scale_down_rate < 1.0 || !self.max_scale_down_rate.is_finite() {
            return Err(Error::config("max_scale_down_rate", "must be at least 1"));
        }
        self.bounds.validate()
    }
}

/// Knative's KPA: mean concurrency over a stable window against `target ×
/// target_utilization` per replica, with a panic mode on a short window that never scales
/// down while it lasts.
#[derive(Debug)]
pub struct Concurrency {
    config: ConcurrencyConfig,
    samples: Window<f64>,
    panic_since: Option<Duration>,
    max_panic_pods: u32,
}

impl Concurrency {
    /// The policy, after checking the settings.
    pub fn new(config: ConcurrencyConfig) -> Result<Self> {
        config.validate()?;
        Ok(Concurrency {
            config,
            samples: Window::default(),
            panic_since: None,
            max_panic_pods: 0,
        })
    }

    fn panic_window(&self) -> Duration {
        self.config
            .stable_window
            .mul_f64(self.config.panic_window_percentage / 100.0)
    }
}

impl Policy for Concurrency {
    fn name(&self) -> String {
        format!("concurrency {}", trim(self.config.target))
    }

    fn period(&self) -> Duration {
        self.config.tick
    }

    fn decide(&mut self, now: Duration, observation: &Observation) -> Decision {
        let c = self.config.clone();
        let (at, in_flight) = match fresh(now, observation, c.max_metric_age) {
            Ok(m) => match m.in_flight {
                Some(v) => (m.at, v),
                None => {
                    return Decision::stale(
                        observation,
                        c.bounds,
                        "no concurrency metric: holding".to_string(),
                    );
                }
            },
            Err(why) => return Decision::stale(observation, c.bounds, why),
        };
        // Each scrape enters the windows once, however often the policy is asked.
        self.samples.push_scrape(at, in_flight);
        self.samples.trim(now, c.stable_window);
        let mean = |span| self.samples.mean(now, span).unwrap_or(0.0);
        let stable = mean(c.stable_window);
        let panic = mean(self.panic_window());
        let per_replica = c.target * c.target_utilization;
        let ready = observation.ready.max(1) as f64;
        let stable_pods = (stable / per_replica).ceil();
        let panic_pods = (panic / per_replica).ceil();
        // Knative compares the rounded-up panic count with the ready replicas.
        let over = panic_pods / ready >= c.panic_threshold;

        let up_limit = (c.max_scale_up_rate * ready).ceil();
        let down_limit = (ready / c.max_scale_down_rate).floor();
        let clamp = |v: f64| v.clamp(down_limit, up_limit) as u32;
        let stable_pods = clamp(stable_pods);
        let panic_pods = clamp(panic_pods);

        match (self.panic_since, over) {
            (None, true) => self.panic_since = Some(now),
            (Some(_), true) => self.panic_since = Some(now),
            (Some(since), false) if now > since + c.stable_window => {
                self.panic_since = None;
                self.max_panic_pods = 0;
            }
            _ => {}
        }
        let summary = format!(
            "concurrency {stable:.1} over {:.0} s, {panic:.1} over {:.0} s, against {per_replica:.2} per replica",
            c.stable_window.as_secs_f64(),
            self.panic_window().as_secs_f64()
        );
        let (wanted, reason) = if self.panic_since.is_some() {
            // The larger of both windows, and never below what panic mode already asked.
            self.max_panic_pods = self
                .max_panic_pods
                .max(panic_pods.max(stable_pods))
                .max(observation.ready);
            (
                self.max_panic_pods,
                format!("{summary}: panicking, no scale-down"),
            )
        } else {
            (stable_pods, summary)
        };
        Decision::to(observation, c.bounds, wanted, reason)
    }
}

/// A number without a trailing `.0`.
pub(crate) fn trim(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}
