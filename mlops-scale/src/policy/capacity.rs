//! Capacity: demand against a ratio of the profiled maximum per replica.

use std::time::Duration;

use mlops_core::profile::{ConfigStatus, ProfileReport};
use serde::{Deserialize, Serialize};

use super::{Bounds, Decision, Observation, Policy, Window, fresh, nonzero, positive, secs};
use crate::error::{Error, Result};

/// The capacity policy's settings. [`CapacityConfig::from_profile`] fills the capacity and
/// the latency target from a profile; the rest have defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CapacityConfig {
    /// One replica's capacity at the latency target, in requests per second (the
    /// profile's `capacity_rps`).
    pub capacity_rps: f64,
    /// Requests in flight on one replica at that capacity (capacity × mean latency, by
    /// Little's law); lets in-flight counts drive the decision too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_at_capacity: Option<f64>,
    /// The latency target on the profile's percentile, in milliseconds.
    pub latency_target_ms: f64,
    /// Each replica is given this share of its capacity (default 0.85). The capacity
    /// already meets the latency target and a rising rate is projected over the start-up
    /// time, so the ratio only covers the rate's noise between decisions and arrivals
    /// burstier than the profile's evenly spaced ones.
    pub target_ratio: f64,
    /// The guard: when the observed latency reaches this share of the target (default
    /// 0.95) and no replica is starting, add replicas whatever the rate says.
    pub latency_guard: f64,
    /// How many the guard adds, as a share of the ready replicas (default 0.25, at least 1).
    pub guard_step: f64,
    /// The guard fires only when every scrape over this window was near the target
    /// (default 0 s: the latest scrape alone; a longer window waits for a trend and
    /// reacts later to a burst).
    #[serde(with = "secs")]
    pub guard_window: Duration,

    /// How long a new replica takes to serve its first request (default 30 s): the
    /// horizon over which a rising rate is projected, since replicas asked for now help
    /// only after it.
    #[serde(with = "secs")]
    pub startup_time: Duration,
    /// The rate is the mean over this window (default 5 s)…
    #[serde(with = "secs")]
    pub rate_window: Duration,
    /// …and its trend the least-squares slope over this one (default 20 s).
    #[serde(with = "secs")]
    pub trend_window: Duration,
    /// A trend is projected only when its slope stands this many standard errors above
    /// zero (default 3): noise in the rate is not a rise.
    pub trend_significance: f64,
    /// A queue is to be drained within this time after the start-up, on top of the
    /// arriving rate (default 5 s).
    #[serde(with = "secs")]
    pub drain_time: Duration,
    /// Scale-down stabilisation: the most wanted over this window (default 30 s)…
    #[serde(with = "secs")]
    pub scale_down_window: Duration,
    /// …lengthened up to this (default 300 s, the HPA's) when the target is missed after
    /// a scale-down: the window then covers the time from that scale-down to the miss, so
    /// demand that returns faster than replicas start finds them still there. It falls
    /// back to `scale_down_window` after this long without such a miss. Equal to
    /// `scale_down_window`, the window is fixed.
    #[serde(with = "secs")]
    pub max_scale_down_window: Duration,
    /// What counts as a miss for lengthening the window: the latency at this multiple
    /// of the target with requests queued (default 2). A lesser miss is noise the
    /// reactive path absorbs.
    pub severe_miss: f64,
    /// How often it decides (default 2 s).
    #[serde(with = "secs")]
    pub period: Duration,
    /// Metrics older than this hold the current size (default 10 s).
    #[serde(with = "secs")]
    pub max_metric_age: Duration,
    /// The replica range.
    #[serde(flatten)]
    pub bounds: Bounds,
}

impl Default for CapacityConfig {
    fn default() -> Self {
        CapacityConfig {
            capacity_rps: 0.0,
            concurrency_at_capacity: None,
            latency_target_ms: 0.0,
            target_ratio: 0.85,
            latency_guard: 0.95,
            guard_step: 0.25,
            guard_window: Duration::ZERO,
            startup_time: Duration::from_secs(30),
            rate_window: Duration::from_secs(5),
            trend_window: Duration::from_secs(20),
            trend_significance: 3.0,
            drain_time: Duration::from_secs(5),
            scale_down_window: Duration::from_secs(30),
            max_scale_down_window: Duration::from_secs(300),
            severe_miss: 2.0,
            period: Duration::from_secs(2),
            max_metric_age: Duration::from_secs(10),
            bounds: Bounds::default(),
        }
    }
}

/// The report's recommendation, if it meets the report's target: what the capacity policy
/// and the cluster manifests are built from.
pub(crate) fn usable_recommendation(
    report: &ProfileReport,
) -> Result<&mlops_core::profile::Recommendation> {
    let Some(recommendation) = &report.recommendation else {
        return Err(Error::Profile(
            "the report recommends no configuration: none was measured".to_string(),
        ));
    };
    if !recommendation.meets_target {
        return Err(Error::Profile(format!(
            "no configuration meets the target of {} ms at p{}: {}",
            report.latency_target_ms, report.percentile, recommendation.reason
        )));
    }
    Ok(recommendation)
}

impl CapacityConfig {
    /// A policy for replicas of `capacity_rps` each, against `latency_target_ms`.
    pub fn new(capacity_rps: f64, latency_target_ms: f64) -> Self {
        CapacityConfig {
            capacity_rps,
            latency_target_ms,
            ..CapacityConfig::default()
        }
    }

    /// From a profile: the recommended configuration's capacity and the report's latency
    /// target. A report whose recommendation misses the target, or has none, is refused.
    pub fn from_profile(report: &ProfileReport) -> Result<Self> {
        let recommendation = usable_recommendation(report)?;
        Self::from_profile_config(report, &recommendation.config_id)
    }

    /// [`from_profile`](Self::from_profile) for a profile that must be of `model`: a
    /// profile of another model is refused, since its capacity says nothing of this one.
    pub fn from_profile_of(report: &ProfileReport, model: &str) -> Result<Self> {
        if report.model.name != model {
            return Err(Error::Profile(format!(
                "the profile is of model '{}', not '{model}'",
                report.model.name
            )));
        }
        Self::from_profile(report)
    }

    /// From one configuration of a profile, by its id.
    pub fn from_profile_config(report: &ProfileReport, config_id: &str) -> Result<Self> {
        let profile = report.config(config_id).ok_or_else(|| {
            Error::Profile(format!("the report has no configuration '{config_id}'"))
        })?;
        if profile.status != ConfigStatus::Measured {
            return Err(Error::Profile(format!(
                "configuration '{config_id}' was not measured ({:?})",
                profile.status
            )));
        }
        let capacity = profile.capacity_rps.unwrap_or(0.0);
        if capacity <= 0.0 {
            return Err(Error::Profile(format!(
                "configuration '{config_id}' misses the target of {} ms at p{} even at the lowest load",
                report.latency_target_ms, report.percentile
            )));
        }
        let concurrency = profile
            .at_capacity()
            .map(|m| m.throughput_rps * m.latency.mean_ms / 1000.0)
            .filter(|c| *c > 0.0);
        Ok(CapacityConfig {
            capacity_rps: capacity,
            concurrency_at_capacity: concurrency,
            latency_target_ms: report.latency_target_ms,
            ..CapacityConfig::default()
        })
    }

    /// The same with another target ratio.
    pub fn with_target_ratio(mut self, ratio: f64) -> Self {
        self.target_ratio = ratio;
        self
    }

    /// The same with another start-up time.
    pub fn with_startup_time(mut self, startup: Duration) -> Self {
        self.startup_time = startup;
        self
    }

    /// The same with another replica range.
    pub fn with_bounds(mut self, bounds: Bounds) -> Self {
        self.bounds = bounds;
        self
    }

    fn validate(&self) -> Result<()> {
        nonzero("rate_window", self.rate_window)?;
        nonzero("trend_window", self.trend_window)?;
        if !(self.trend_significance.is_finite() && self.trend_significance >= 0.0) {
            return Err(Error::config("trend_significance", "must be >= 0"));
        }
        positive("capacity_rps", self.capacity_rps)?;
        positive("latency_target_ms", self.latency_target_ms)?;
        positive("target_ratio", self.target_ratio)?;
        if self.target_ratio > 1.0 {
            return Err(Error::config(
                "target_ratio",
                format!(
                    "{} would load replicas past their profiled capacity",
                    self.target_ratio
                ),
            ));
        }
        if let Some(c) = self.concurrency_at_capacity {
            positive("concurrency_at_capacity", c)?;
        }
        positive("latency_guard", self.latency_guard)?;
        positive("guard_step", self.guard_step)?;

        nonzero("drain_time", self.drain_time)?;
        nonzero("period", self.period)?;
        positive("severe_miss", self.severe_miss)?;
        if self.max_scale_down_window < self.scale_down_window {
            return Err(Error::config(
                "max_scale_down_window",
                "must be at least scale_down_window",
            ));
        }
        self.bounds.validate()
    }
}

/// Scales on observed demand against `target_ratio × capacity` per replica; scales up at
/// once and down only to the most wanted over the scale-down window; a latency guard adds
/// replicas when the target nears, unless replicas are already starting.
#[derive(Debug)]
pub struct Capacity {
    config: CapacityConfig,
    recommendations: Window<u32>,
    /// Observed rates, one per scrape.
    rates: Window<f64>,
    /// Observed latencies, one per scrape.
    latencies: Window<f64>,
    /// The scale-down window in force, and when it was last lengthened.
    down_window: Duration,
    lengthened_at: Option<Duration>,
    /// When it last scaled down, and when the replicas it removed were last wanted.
    last_down: Option<(Duration, Duration)>,
}

impl Capacity {
    /// The policy, after checking the settings.
    pub fn new(config: CapacityConfig) -> Result<Self> {
        config.validate()?;
        Ok(Capacity {
            recommendations: Window::default(),
            rates: Window::default(),
            latencies: Window::default(),
            down_window: config.scale_down_window,
            lengthened_at: None,
            last_down: None,
            config,
        })
    }

    /// The policy for a profile's recommended configuration, with the default ratio.
    pub fn from_profile(report: &ProfileReport) -> Result<Self> {
        Self::new(CapacityConfig::from_profile(report)?)
    }

    /// Its settings.
    pub fn config(&self) -> &CapacityConfig {
        &self.config
    }
}

impl Capacity {
    /// Whether every latency scraped over the guard window, this one included, reached
    /// `near`.
    fn latency_near(&mut self, at: Duration, latency: f64, near: f64) -> bool {
        self.latencies.push_scrape(at, latency);
        self.latencies.trim(at, self.config.guard_window);
        let (n, all) = self
            .latencies
            .since(at, self.config.guard_window)
            .fold((0, true), |(n, all), l| (n + 1, all && l >= near));
        n >= 1 && all
    }

    /// The rate's level (its mean over the rate window) and where a rising trend takes it
    /// by the time a replica asked for now is ready.
    fn forecast(&mut self, at: Duration, rate: f64) -> (f64, f64) {
        let c = &self.config;
        self.rates.push_scrape(at, rate);
        self.rates.trim(at, c.trend_window.max(c.rate_window));
        let level = self.rates.mean(at, c.rate_window).unwrap_or(rate);
        // Least squares over the trend window, in seconds before `at`.
        let points: Vec<(f64, f64)> = self
            .rates
            .items()
            .filter(|(t, _)| *t + c.trend_window >= at)
            .map(|(t, v)| (t.as_secs_f64() - at.as_secs_f64(), v))
            .collect();
        let n = points.len() as f64;
        if n < 3.0 {
            return (level, level);
        }
        let mean_t = points.iter().map(|p| p.0).sum::<f64>() / n;
        let mean_v = points.iter().map(|p| p.1).sum::<f64>() / n;
        let var: f64 = points.iter().map(|p| (p.0 - mean_t).powi(2)).sum();
        if var <= 0.0 {
            return (level, level);
        }
        let slope = points
            .iter()
            .map(|p| (p.0 - mean_t) * (p.1 - mean_v))
            .sum::<f64>()
            / var;
        // Only a rise the noise cannot explain is projected: the slope must stand
        // `trend_significance` standard errors above zero.
        let residual: f64 = points
            .iter()
            .map(|p| (p.1 - mean_v - slope * (p.0 - mean_t)).powi(2))
            .sum::<f64>()
            / (n - 2.0);
        let error = (residual / var).sqrt();
        if slope <= c.trend_significance * error {
            return (level, level);
        }
        let horizon = (c.startup_time + c.period).as_secs_f64();
        (level, level + slope * horizon)
    }
}

impl Policy for Capacity {
    fn name(&self) -> String {
        format!("capacity {:.0}%", self.config.target_ratio * 100.0)
    }

    fn period(&self) -> Duration {
        self.config.period
    }

    fn decide(&mut self, now: Duration, observation: &Observation) -> Decision {
        let c = self.config.clone();
        let metrics = match fresh(now, observation, c.max_metric_age) {
            Ok(m) => m,
            Err(why) => return Decision::stale(observation, c.bounds, why),
        };
        let per_replica = c.target_ratio * c.capacity_rps;
        let queue = metrics.queue_depth.unwrap_or(0.0).max(0.0);
        let (mut raw, mut reason) = match (metrics.request_rate_rps, metrics.in_flight) {
            (Some(rate), _) => {
                let (level, projected) = self.forecast(metrics.at, rate.max(0.0));
                // Replicas asked for now serve only after the start-up, so the queue is
                // drained over the start-up and the drain time together.
                let drain = (c.startup_time + c.drain_time).as_secs_f64();
                let demand = projected + queue / drain;
                let mut reason = format!(
                    "demand {demand:.1} req/s ({level:.1} arriving, {queue:.0} queued) against {per_replica:.1} per replica"
                );
                if projected > level {
                    reason.push_str(&format!(
                        "; rising to {projected:.1} req/s within the {:.0} s start-up",
                        c.startup_time.as_secs_f64()
                    ));
                }
                ((demand / per_replica).ceil() as u32, reason)
            }
            // Without a rate, in-flight requests stand for it by Little's law. Only then:
            // in flight counts the queue, which grows without bound when replicas fall
            // behind, and would ask for far more than the demand needs.
            (None, Some(in_flight)) => match c.concurrency_at_capacity {
                Some(per) => (
                    (in_flight.max(0.0) / (c.target_ratio * per)).ceil() as u32,
                    format!(
                        "{in_flight:.1} in flight against {:.2} per replica (no request rate)",
                        c.target_ratio * per
                    ),
                ),
                None => {
                    return Decision::stale(
                        observation,
                        c.bounds,
                        "no request rate, and no concurrency at capacity to read in-flight counts against: holding"
                            .to_string(),
                    );
                }
            },
            (None, None) => {
                return Decision::stale(
                    observation,
                    c.bounds,
                    "neither a request rate nor an in-flight count: holding".to_string(),
                );
            }
        };
        let current = observation.desired;
        // The guard needs a queue as well: latency from a backlog already drained says
        // nothing about the replicas needed now.
        let near = c.latency_guard * c.latency_target_ms;
        if let Some(latency) = metrics.latency_ms
            && self.latency_near(metrics.at, latency, near)
            && (metrics.queue_depth.is_none() || queue >= 1.0)
        {
            if observation.starting == 0 {
                let step = ((observation.ready as f64 * c.guard_step).ceil() as u32).max(1);
                let guarded = observation.ready.max(current) + step;
                if guarded > raw {
                    raw = guarded;
                    reason.push_str(&format!(
                        "; latency {latency:.1} ms is near the {:.0} ms target: adding {step}",
                        c.latency_target_ms
                    ));
                }
            } else {
                reason.push_str(&format!(
                    "; latency {latency:.1} ms is near the target, {} replicas already starting",
                    observation.starting
                ));
            }
        }

        // A miss soon after a scale-down: that scale-down came too early.
        // A severe miss with requests still waiting: too few replicas, not a slow answer
        // or a moment's noise.
        let missed = metrics
            .latency_ms
            .is_some_and(|l| l >= c.severe_miss * c.latency_target_ms)
            && queue >= 1.0;
        if let Some((down, wanted_at)) = self.last_down
            && missed
        {
            // Long enough that the replicas removed then would still be here now, with a
            // start-up to spare: the demand came back a little before the miss showed it.
            let needed = (now.saturating_sub(wanted_at) + c.startup_time + c.period)
                .min(c.max_scale_down_window);
            if needed > self.down_window {
                self.down_window = needed;
                reason.push_str(&format!(
                    "; missed the target {:.0} s after scaling down: holding replicas for {:.0} s from now on",
                    now.saturating_sub(down).as_secs_f64(),
                    needed.as_secs_f64()
                ));
            }
            self.lengthened_at = Some(now);
            self.last_down = None;
        }
        // The longer window stays while it pays: while the demand keeps coming back to
        // what it holds.
        if self.down_window > c.scale_down_window && raw >= current {
            self.lengthened_at = Some(now);
        }
        if self
            .lengthened_at
            .is_some_and(|t| now.saturating_sub(t) > c.max_scale_down_window)
        {
            self.down_window = c.scale_down_window;
            self.lengthened_at = None;
        }

        let window = self.down_window;
        self.recommendations.push(now, raw);
        self.recommendations.trim(now, c.max_scale_down_window);
        let mut wanted = raw;
        if raw < current {
            let highest = self.recommendations.since(now, window).max().unwrap_or(raw);
            wanted = highest.min(current);
            if wanted > raw {
                reason.push_str(&format!(
                    "; scale-down held at {wanted} (the most wanted over {:.0} s)",
                    window.as_secs_f64()
                ));
            }
        }
        let decision = Decision::to(observation, c.bounds, wanted, reason);
        if decision.replicas < current {
            let wanted_at = self
                .recommendations
                .items()
                .filter(|(_, n)| *n >= current)
                .map(|(t, _)| t)
                .last()
                .unwrap_or(now);
            self.last_down = Some((now, wanted_at));
        }
        decision
    }
}
