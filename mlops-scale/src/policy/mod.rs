//! Scaling policies: observations in, desired replicas and the reason out.
//!
//! A policy is pure: [`Policy::decide`] reads no clock and does no I/O, so the simulator,
//! a local backend and a cluster scaler run the same code, and tests assert exact replica
//! timelines. Every policy is described by a [`PolicyConfig`], a serde enum tagged by
//! `kind`, so a policy can live in a file:
//!
//! ```
//! use mlops_scale::policy::PolicyConfig;
//!
//! let config: PolicyConfig = serde_json::from_str(
//!     r#"{"kind": "utilization", "target": 0.6, "max_replicas": 20}"#,
//! ).unwrap();
//! let policy = config.build().unwrap();
//! assert_eq!(policy.name(), "utilization 60%");
//! ```

pub(crate) mod capacity;
mod concurrency;
mod ongoing;
mod utilization;

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use capacity::{Capacity, CapacityConfig};
pub use concurrency::{Concurrency, ConcurrencyConfig};
pub use ongoing::{OngoingRequests, OngoingRequestsConfig};
pub use utilization::{Utilization, UtilizationConfig};

use crate::error::{Error, Result};

/// Metrics scraped from the replicas, summed or averaged over all of them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// When they were collected, on the clock `decide` is given.
    #[serde(with = "secs")]
    pub at: Duration,
    /// Over how long the rates and means were taken.
    #[serde(with = "secs")]
    pub window: Duration,
    /// Requests arriving per second, all replicas together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_rate_rps: Option<f64>,
    /// Requests in the system (queued or being served), all replicas together, the mean
    /// over the window: the concurrency Knative and Ray Serve scale on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_flight: Option<f64>,
    /// Requests waiting for a slot, all replicas together, at `at`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_depth: Option<f64>,
    /// The latency percentile the target is set on, over the window, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    /// Utilisation (0 to 1) of each ready replica that reported one; ready replicas
    /// beyond this list's length are missing, as the HPA calls pods without metrics.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub utilization: Vec<f64>,
}

/// What a policy sees at one decision.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    /// Replicas serving traffic.
    pub ready: u32,
    /// Replicas started and not ready yet (cold starts in progress).
    pub starting: u32,
    /// The replica count last asked for (the deployment's spec).
    pub desired: u32,
    /// The latest metrics; `None` when none have arrived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Metrics>,
}

/// What a decision does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Asks for more replicas.
    Up,
    /// Asks for fewer replicas.
    Down,
    /// Keeps the current count.
    Hold,
    /// Keeps the current count because metrics are missing or stale.
    Stale,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Up => "up",
            Action::Down => "down",
            Action::Hold => "hold",
            Action::Stale => "stale",
        })
    }
}

/// A policy's answer: the replica count it wants and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// Desired replicas, within the policy's bounds.
    pub replicas: u32,
    /// Up, down or hold, against [`Observation::desired`].
    pub action: Action,
    /// A sentence naming the figures behind it.
    pub reason: String,
}

impl Decision {
    /// Holds the current count because of `reason`, within `bounds`.
    pub(crate) fn stale(observation: &Observation, bounds: Bounds, reason: String) -> Self {
        let replicas = bounds.clamp(observation.desired);
        Decision {
            action: action(observation.desired, replicas, Action::Stale),
            replicas,
            reason,
        }
    }

    /// Asks for `wanted`, clamped to `bounds`.
    pub(crate) fn to(
        observation: &Observation,
        bounds: Bounds,
        wanted: u32,
        reason: String,
    ) -> Self {
        let replicas = bounds.clamp(wanted);
        let mut reason = reason;
        if replicas != wanted {
            reason.push_str(&format!(
                "; {wanted} clamped to [{}, {}]",
                bounds.min_replicas, bounds.max_replicas
            ));
        }
        Decision {
            action: action(observation.desired, replicas, Action::Hold),
            replicas,
            reason,
        }
    }
}

fn action(current: u32, replicas: u32, same: Action) -> Action {
    match replicas.cmp(&current) {
        std::cmp::Ordering::Greater => Action::Up,
        std::cmp::Ordering::Less => Action::Down,
        std::cmp::Ordering::Equal => same,
    }
}

/// The replica range a policy keeps to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Bounds {
    /// The fewest replicas (default 1: nothing scales to zero unless asked to).
    pub min_replicas: u32,
    /// The most replicas (default 100).
    pub max_replicas: u32,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            min_replicas: 1,
            max_replicas: 100,
        }
    }
}

impl Bounds {
    /// `min..=max`.
    pub fn new(min_replicas: u32, max_replicas: u32) -> Result<Self> {
        let bounds = Bounds {
            min_replicas,
            max_replicas,
        };
        bounds.validate()?;
        Ok(bounds)
    }

    /// Refuses an empty range or a maximum of zero.
    pub fn validate(&self) -> Result<()> {
        if self.max_replicas == 0 {
            return Err(Error::config("max_replicas", "must be at least 1"));
        }
        if self.min_replicas > self.max_replicas {
            return Err(Error::config(
                "min_replicas",
                format!(
                    "{} is above max_replicas {}",
                    self.min_replicas, self.max_replicas
                ),
            ));
        }
        Ok(())
    }

    /// `n` within the range.
    pub fn clamp(&self, n: u32) -> u32 {
        n.clamp(self.min_replicas, self.max_replicas)
    }
}

/// A scaling policy.
pub trait Policy: Send {
    /// A short name for tables: the kind and its main setting.
    fn name(&self) -> String;

    /// How often it expects to be asked (the HPA's sync period, Knative's tick).
    fn period(&self) -> Duration;

    /// The replicas wanted now. `now` runs on the same clock as [`Metrics::at`]; a
    /// policy keeps whatever history it needs between calls.
    fn decide(&mut self, now: Duration, observation: &Observation) -> Decision;
}

impl<P: Policy + ?Sized> Policy for Box<P> {
    fn name(&self) -> String {
        (**self).name()
    }
    fn period(&self) -> Duration {
        (**self).period()
    }
    fn decide(&mut self, now: Duration, observation: &Observation) -> Decision {
        (**self).decide(now, observation)
    }
}

/// Any policy, as data: `{"kind": "utilization" | "concurrency" | "ongoing_requests" |
/// "capacity", ...settings}`; settings left out take the defaults of the autoscaler each
/// imitates.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PolicyConfig {
    /// The Kubernetes HPA on utilisation.
    Utilization(UtilizationConfig),
    /// Knative's KPA on concurrency.
    Concurrency(ConcurrencyConfig),
    /// Ray Serve's rule on ongoing requests.
    OngoingRequests(OngoingRequestsConfig),
    /// Demand against a ratio of the profiled capacity.
    Capacity(CapacityConfig),
}

impl PolicyConfig {
    /// The policy, after checking every setting.
    pub fn build(&self) -> Result<Box<dyn Policy>> {
        Ok(match self {
            PolicyConfig::Utilization(c) => Box::new(Utilization::new(c.clone())?),
            PolicyConfig::Concurrency(c) => Box::new(Concurrency::new(c.clone())?),
            PolicyConfig::OngoingRequests(c) => Box::new(OngoingRequests::new(c.clone())?),
            PolicyConfig::Capacity(c) => Box::new(Capacity::new(c.clone())?),
        })
    }

    /// Its `kind` tag: `utilization`, `concurrency`, `ongoing_requests` or `capacity`.
    pub fn kind(&self) -> &'static str {
        match self {
            PolicyConfig::Utilization(_) => "utilization",
            PolicyConfig::Concurrency(_) => "concurrency",
            PolicyConfig::OngoingRequests(_) => "ongoing_requests",
            PolicyConfig::Capacity(_) => "capacity",
        }
    }

    /// The replica range it keeps to.
    pub fn bounds(&self) -> Bounds {
        match self {
            PolicyConfig::Utilization(c) => c.bounds,
            PolicyConfig::Concurrency(c) => c.bounds,
            PolicyConfig::OngoingRequests(c) => c.bounds,
            PolicyConfig::Capacity(c) => c.bounds,
        }
    }

    /// The same policy with other bounds.
    pub fn with_bounds(mut self, bounds: Bounds) -> Self {
        match &mut self {
            PolicyConfig::Utilization(c) => c.bounds = bounds,
            PolicyConfig::Concurrency(c) => c.bounds = bounds,
            PolicyConfig::OngoingRequests(c) => c.bounds = bounds,
            PolicyConfig::Capacity(c) => c.bounds = bounds,
        }
        self
    }
}

/// The metrics, or why a decision cannot use them.
pub(crate) fn fresh(
    now: Duration,
    observation: &Observation,
    max_age: Duration,
) -> std::result::Result<&Metrics, String> {
    let Some(metrics) = &observation.metrics else {
        return Err("no metrics yet: holding".to_string());
    };
    let age = now.saturating_sub(metrics.at);
    if age > max_age {
        return Err(format!(
            "metrics are {:.1} s old (limit {:.1} s): holding",
            age.as_secs_f64(),
            max_age.as_secs_f64()
        ));
    }
    // A broken exporter must not read as an idle service.
    let bad = |v: Option<f64>| v.is_some_and(|v| !(v.is_finite() && v >= 0.0));
    for (name, value) in [
        ("request rate", metrics.request_rate_rps),
        ("in-flight count", metrics.in_flight),
        ("queue depth", metrics.queue_depth),
        ("latency", metrics.latency_ms),
    ] {
        if bad(value) {
            return Err(format!(
                "the {name} metric is {}: holding",
                value.unwrap_or_default()
            ));
        }
    }
    if let Some(u) = metrics.utilization.iter().find(|u| bad(Some(**u))) {
        return Err(format!("a utilisation of {u}: holding"));
    }
    Ok(metrics)
}

pub(crate) fn positive(what: &'static str, value: f64) -> Result<()> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(Error::config(
            what,
            format!("must be a positive number, not {value}"),
        ))
    }
}

pub(crate) fn nonzero(what: &'static str, value: Duration) -> Result<()> {
    if value.is_zero() {
        Err(Error::config(what, "must be longer than zero"))
    } else {
        Ok(())
    }
}

/// Values kept over a sliding time window.
#[derive(Clone, Debug, Default)]
pub(crate) struct Window<T> {
    items: VecDeque<(Duration, T)>,
}

impl Window<f64> {
    /// The mean of the values at or after `now - span`, if there are any.
    pub(crate) fn mean(&self, now: Duration, span: Duration) -> Option<f64> {
        let (sum, n) = self
            .since(now, span)
            .fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
        (n > 0).then(|| sum / n as f64)
    }
}

impl<T: Copy> Window<T> {
    pub(crate) fn push(&mut self, at: Duration, value: T) {
        self.items.push_back((at, value));
    }

    /// Pushes a scraped value once: a policy asked several times per scrape must not
    /// count the same sample twice.
    pub(crate) fn push_scrape(&mut self, at: Duration, value: T) {
        if self.items.back().is_none_or(|(t, _)| *t != at) {
            self.items.push_back((at, value));
        }
    }

    /// Drops what is older than `span` before `now`.
    pub(crate) fn trim(&mut self, now: Duration, span: Duration) {
        let start = now.saturating_sub(span);
        while self.items.front().is_some_and(|(t, _)| *t < start) {
            self.items.pop_front();
        }
    }

    /// Every value with its time, oldest first.
    pub(crate) fn items(&self) -> impl Iterator<Item = (Duration, T)> + '_ {
        self.items.iter().copied()
    }

    /// Values at or after `now - span`.
    pub(crate) fn since(&self, now: Duration, span: Duration) -> impl Iterator<Item = T> + '_ {
        let start = now.saturating_sub(span);
        self.items
            .iter()
            .filter(move |(t, _)| *t >= start)
            .map(|(_, v)| *v)
    }
}

pub(crate) mod secs {
    //! A `Duration` as seconds (a float) in JSON.
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let v = f64::deserialize(d)?;
        Duration::try_from_secs_f64(v).map_err(serde::de::Error::custom)
    }
}
