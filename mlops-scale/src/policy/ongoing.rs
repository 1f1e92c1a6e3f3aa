//! Ray Serve's rule on ongoing requests.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::concurrency::trim;
use super::{Bounds, Decision, Observation, Policy, Window, fresh, nonzero, positive, secs};
use crate::error::Result;

/// Ray Serve's autoscaling settings; the defaults are Ray's own.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OngoingRequestsConfig {
    /// Ongoing requests per replica to aim for (`target_ongoing_requests`, default 2).
    pub target_ongoing_requests: f64,
    /// A change up must be wanted this long before it is made (default 30 s).
    #[serde(with = "secs")]
    pub upscale_delay: Duration,
    /// A change down must be wanted this long before it is made (default 600 s).
    #[serde(with = "secs")]
    pub downscale_delay: Duration,
    /// Ongoing requests are averaged over this window (default 30 s).
    #[serde(with = "secs")]
    pub look_back_period: Duration,
    /// How often the controller decides (default 0.1 s, Ray's control loop).
    #[serde(with = "secs")]
    pub control_loop_interval: Duration,
    /// Metrics older than this hold the current size (default 30 s).
    #[serde(with = "secs")]
    pub max_metric_age: Duration,
    /// The replica range.
    #[serde(flatten)]
    pub bounds: Bounds,
}

impl Default for OngoingRequestsConfig {
    fn default() -> Self {
        OngoingRequestsConfig {
            target_ongoing_requests: 2.0,
            upscale_delay: Duration::from_secs(30),
            downscale_delay: Duration::from_secs(600),
            look_back_period: Duration::from_secs(30),
            control_loop_interval: Duration::from_millis(100),
            max_metric_age: Duration::from_secs(30),
            bounds: Bounds::default(),
        }
    }
}

impl OngoingRequestsConfig {
    /// The defaults with another target per replica.
    pub fn with_target(mut self, target: f64) -> Self {
        self.target_ongoing_requests = target;
        self
    }

    /// The same with another replica range.
    pub fn with_bounds(mut self, bounds: Bounds) -> Self {
        self.bounds = bounds;
        self
    }

    fn validate(&self) -> Result<()> {
        positive("target_ongoing_requests", self.target_ongoing_requests)?;
        nonzero("look_back_period", self.look_back_period)?;
        nonzero("control_loop_interval", self.control_loop_interval)?;
        self.bounds.validate()
    }
}

/// Ray Serve: the mean ongoing requests over the look-back window divided by the target,
/// applied once the same direction has been wanted for the upscale or downscale delay.
#[derive(Debug)]
pub struct OngoingRequests {
    config: OngoingRequestsConfig,
    samples: Window<f64>,
    /// Since when the current direction has been wanted: positive up, negative down.
    wanted_since: Option<(Duration, bool)>,
}

impl OngoingRequests {
    /// The policy, after checking the settings.
    pub fn new(config: OngoingRequestsConfig) -> Result<Self> {
        config.validate()?;
        Ok(OngoingRequests {
            config,
            samples: Window::default(),
            wanted_since: None,
        })
    }
}

impl Policy for OngoingRequests {
    fn name(&self) -> String {
        format!(
            "ongoing requests {}",
            trim(self.config.target_ongoing_requests)
        )
    }

    fn period(&self) -> Duration {
        self.config.control_loop_interval
    }

    fn decide(&mut self, now: Duration, observation: &Observation) -> Decision {
        let c = self.config.clone();
        let (at, in_flight) = match fresh(now, observation, c.max_metric_age) {
            Ok(m) => match m.in_flight {
                Some(v) => (m.at, v),
                None => {
                    self.wanted_since = None;
                    return Decision::stale(
                        observation,
                        c.bounds,
                        "no ongoing-requests metric: holding".to_string(),
                    );
                }
            },
            Err(why) => {
                self.wanted_since = None;
                return Decision::stale(observation, c.bounds, why);
            }
        };
        self.samples.push_scrape(at, in_flight);
        self.samples.trim(now, c.look_back_period);
        let ongoing = self.samples.mean(now, c.look_back_period).unwrap_or(0.0);
        let current = observation.desired;
        let raw = c
            .bounds
            .clamp((ongoing / c.target_ongoing_requests).ceil() as u32);
        let summary = format!(
            "{ongoing:.1} ongoing requests over {:.0} s against {} per replica",
            c.look_back_period.as_secs_f64(),
            trim(c.target_ongoing_requests)
        );
        if raw == current {
            self.wanted_since = None;
            return Decision::to(observation, c.bounds, current, summary);
        }
        let up = raw > current;
        let since = match self.wanted_since {
            Some((t, dir)) if dir == up => t,
            _ => {
                self.wanted_since = Some((now, up));
                now
            }
        };
        let delay = if up {
            c.upscale_delay
        } else {
            c.downscale_delay
        };
        let held = now.saturating_sub(since);
        if held >= delay {
            self.wanted_since = None;
            Decision::to(
                observation,
                c.bounds,
                raw,
                format!("{summary}: wanted {raw} for {:.0} s", held.as_secs_f64()),
            )
        } else {
            Decision::to(
                observation,
                c.bounds,
                current,
                format!(
                    "{summary}: {raw} wanted for {:.1} s of the {:.0} s delay",
                    held.as_secs_f64(),
                    delay.as_secs_f64()
                ),
            )
        }
    }
}
