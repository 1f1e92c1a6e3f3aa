//! A deterministic discrete-event simulation of a request trace served by replicas that a
//! policy scales.
//!
//! Virtual time only: arrivals come from the trace, service times from the
//! [`ReplicaModel`] and a seeded generator; the same trace, model, settings, policy and
//! seed give the same report, bit for bit, but for [`SimReport::wall_s`].
//!
//! ```
//! use mlops_scale::policy::{CapacityConfig, PolicyConfig};
//! use mlops_scale::sim::{ReplicaModel, Simulator};
//! use mlops_scale::trace::{Trace, TraceSpec};
//!
//! // Replicas that serve 50 req/s each; demand steps from 40 to 160 req/s.
//! let replica = ReplicaModel::new(1, 20.0);
//! let trace = Trace::generate(
//!     &TraceSpec::Step { from_rps: 40.0, to_rps: 160.0, at_s: 60.0, duration_s: 300.0 },
//!     7,
//! ).unwrap();
//! let mut policy = PolicyConfig::Capacity(CapacityConfig::new(50.0, 200.0)).build().unwrap();
//! let sim = Simulator::builder(replica).latency_target_ms(200.0).build().unwrap();
//! let report = sim.run(&trace, &mut policy);
//! assert!(report.peak_replicas >= 4);
//! ```

mod replica;
mod report;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::time::Duration;

use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal};
use serde::{Deserialize, Serialize};

pub use replica::ReplicaModel;
pub use report::{SCHEMA_VERSION, ScaleEvent, SeriesPoint, SimReport};

use crate::error::{Error, Result};
use crate::policy::{Action, Bounds, Metrics, Observation, Policy, secs};
use crate::trace::Trace;

/// The simulation's settings besides the replica model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SimConfig {
    /// A request is within the target when answered in this many milliseconds.
    pub latency_target_ms: f64,
    /// The percentile reported to policies and in the time series (default 99).
    pub percentile: u8,
    /// From a replica's start to its first request (default 30 s).
    #[serde(with = "secs")]
    pub cold_start: Duration,
    /// How often metrics are collected (default 1 s).
    #[serde(with = "secs")]
    pub scrape_interval: Duration,
    /// How often replica state is sampled for utilisation and in-flight means (default
    /// 100 ms).
    #[serde(with = "secs")]
    pub sample_interval: Duration,
    /// The time series' interval (default 10 s).
    #[serde(with = "secs")]
    pub report_interval: Duration,
    /// Replicas ready at the start (default: the minimum).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_replicas: Option<u32>,
    /// The replica range the simulated deployment allows, whatever a policy asks.
    #[serde(flatten)]
    pub bounds: Bounds,
    /// The seed for service times and routing.
    pub seed: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            latency_target_ms: 100.0,
            percentile: 99,
            cold_start: Duration::from_secs(30),
            scrape_interval: Duration::from_secs(1),
            sample_interval: Duration::from_millis(100),
            report_interval: Duration::from_secs(10),
            initial_replicas: None,
            bounds: Bounds::default(),
            seed: 0,
        }
    }
}

/// Builds a [`Simulator`].
#[derive(Clone, Debug)]
pub struct SimulatorBuilder {
    replica: ReplicaModel,
    config: SimConfig,
}

impl SimulatorBuilder {
    /// The latency target, in milliseconds.
    pub fn latency_target_ms(mut self, ms: f64) -> Self {
        self.config.latency_target_ms = ms;
        self
    }

    /// The percentile policies see and the series reports (default 99).
    pub fn percentile(mut self, percentile: u8) -> Self {
        self.config.percentile = percentile;
        self
    }

    /// The cold start (default 30 s).
    pub fn cold_start(mut self, d: Duration) -> Self {
        self.config.cold_start = d;
        self
    }

    /// The metric scrape interval (default 1 s).
    pub fn scrape_interval(mut self, d: Duration) -> Self {
        self.config.scrape_interval = d;
        self
    }

    /// The time series' interval (default 10 s).
    pub fn report_interval(mut self, d: Duration) -> Self {
        self.config.report_interval = d;
        self
    }

    /// Replicas ready at the start.
    pub fn initial_replicas(mut self, n: u32) -> Self {
        self.config.initial_replicas = Some(n);
        self
    }

    /// The replica range.
    pub fn bounds(mut self, bounds: Bounds) -> Self {
        self.config.bounds = bounds;
        self
    }

    /// The seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.config.seed = seed;
        self
    }

    /// All settings at once.
    pub fn config(mut self, config: SimConfig) -> Self {
        self.config = config;
        self
    }

    /// The simulator, after checking every setting.
    pub fn build(self) -> Result<Simulator> {
        let c = &self.config;
        self.replica.validate()?;
        c.bounds.validate()?;
        if !(c.latency_target_ms.is_finite() && c.latency_target_ms > 0.0) {
            return Err(Error::config("latency_target_ms", "must be positive"));
        }
        if !(1..=100).contains(&c.percentile) {
            return Err(Error::config("percentile", "must be in 1..=100"));
        }
        for (what, d) in [
            ("scrape_interval", c.scrape_interval),
            ("sample_interval", c.sample_interval),
            ("report_interval", c.report_interval),
        ] {
            if d < Duration::from_millis(1) {
                return Err(Error::config(what, "must be at least 1 ms"));
            }
        }
        if c.scrape_interval < c.sample_interval {
            return Err(Error::config(
                "scrape_interval",
                "must be at least the sample interval",
            ));
        }
        if let Some(n) = c.initial_replicas
            && (n < c.bounds.min_replicas || n > c.bounds.max_replicas)
        {
            return Err(Error::config(
                "initial_replicas",
                format!(
                    "{n} is outside [{}, {}]",
                    c.bounds.min_replicas, c.bounds.max_replicas
                ),
            ));
        }
        let service = if self.replica.service_sigma > 0.0 {
            let sigma = self.replica.service_sigma;
            let mu = (self.replica.service_mean_ms / 1000.0).ln() - sigma * sigma / 2.0;
            Some(
                LogNormal::new(mu, sigma)
                    .map_err(|e| Error::config("service_sigma", e.to_string()))?,
            )
        } else {
            None
        };
        Ok(Simulator {
            replica: self.replica,
            config: self.config,
            service,
        })
    }
}

/// Replays traces against simulated replicas under a policy.
#[derive(Clone, Debug)]
pub struct Simulator {
    replica: ReplicaModel,
    config: SimConfig,
    service: Option<LogNormal<f64>>,
}

#[derive(Debug)]
enum State {
    Starting { ready_at: f64 },
    Ready,
    Draining,
}

#[derive(Debug)]
struct Replica {
    state: State,
    added_at: f64,
    /// When each slot is next free.
    slots: BinaryHeap<Reverse<Ordered>>,
    /// Start times of requests still waiting (non-decreasing).
    waiting: VecDeque<f64>,
    /// (finish, start) of requests not yet finished, earliest finish first.
    finishing: BinaryHeap<Reverse<(Ordered, Ordered)>>,
    /// The last finish time of anything assigned.
    busy_until: f64,
    /// Service time of everything assigned, in slot-seconds.
    assigned: f64,
    /// Slot-seconds served up to the last scrape.
    served_at_scrape: f64,
    /// Since when it has been ready (infinite while starting).
    ready_since: f64,
}

impl Replica {
    fn new(state: State, now: f64, slots: u32, free_at: f64) -> Self {
        Replica {
            added_at: now,
            slots: (0..slots).map(|_| Reverse(Ordered(free_at))).collect(),
            waiting: VecDeque::new(),
            finishing: BinaryHeap::new(),
            busy_until: now,
            assigned: 0.0,
            served_at_scrape: 0.0,
            ready_since: if matches!(state, State::Ready) {
                now
            } else {
                f64::INFINITY
            },
            state,
        }
    }

    /// Slot-seconds served up to `now`: all assigned service less what is still to come.
    fn served(&self, now: f64) -> f64 {
        let future: f64 = self
            .finishing
            .iter()
            .map(|Reverse((f, s))| f.0 - s.0.max(now))
            .filter(|v| *v > 0.0)
            .sum();
        self.assigned - future
    }

    fn advance(&mut self, now: f64) {
        while self.waiting.front().is_some_and(|&s| s <= now) {
            self.waiting.pop_front();
        }
        while self
            .finishing
            .peek()
            .is_some_and(|Reverse((f, _))| f.0 <= now)
        {
            self.finishing.pop();
        }
    }

    fn in_flight(&self) -> usize {
        self.finishing.len()
    }
}

/// An `f64` with a total order, for heaps.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Ordered(f64);

impl Eq for Ordered {}

impl PartialOrd for Ordered {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Ordered {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// The most points a time series holds.
const MAX_SERIES: usize = 100_000;

fn histogram() -> Histogram<u64> {
    // Microseconds from 1 µs to an hour, two significant figures.
    #[allow(clippy::unwrap_used)] // constant, valid bounds
    Histogram::new_with_bounds(1, 3_600_000_000, 2).unwrap()
}

fn micros(seconds: f64) -> u64 {
    (seconds * 1e6).round().clamp(1.0, 3_600_000_000.0) as u64
}

/// Everything that changes during one run.
struct Run<'a> {
    sim: &'a Simulator,
    rng: StdRng,
    replicas: Vec<Replica>,
    /// Indices of the ready replicas, rebuilt when `dirty`.
    ready: Vec<usize>,
    dirty: bool,
    /// The earliest time a starting replica becomes ready.
    next_ready: f64,
    desired: u32,
    retired_seconds: f64,
    // Scrape window.
    arrivals_in_scrape: u64,
    in_flight_sum: f64,
    in_flight_samples: u32,
    latency_by_scrape: HashMap<u64, Histogram<u64>>,
    metrics: Option<Metrics>,
    // Series.
    series: Vec<SeriesBin>,
    series_interval: f64,
    // Totals.
    overall: Histogram<u64>,
    answered: u64,
    within: u64,
    dropped: u64,
    queue_peak: u64,
    in_flight_peak: u64,
    peak_replicas: u32,
    events: Vec<ScaleEvent>,
    stale: u64,
    decisions: u64,
}

struct SeriesBin {
    arrivals: u64,
    dropped: u64,
    within: u64,
    /// Made on the first answer, so idle intervals cost nothing.
    latency: Option<Histogram<u64>>,
    provisioned: f64,
    ready: f64,
    samples: u32,
}

impl SeriesBin {
    fn new() -> Self {
        SeriesBin {
            arrivals: 0,
            dropped: 0,
            within: 0,
            latency: None,
            provisioned: 0.0,
            ready: 0.0,
            samples: 0,
        }
    }
}

impl Simulator {
    /// A builder for replicas like `replica`.
    pub fn builder(replica: ReplicaModel) -> SimulatorBuilder {
        SimulatorBuilder {
            replica,
            config: SimConfig::default(),
        }
    }

    /// The same simulator with metrics collected every `interval` (at least the sample
    /// interval): what another autoscaler's metric pipeline would see.
    pub fn with_scrape_interval(&self, interval: Duration) -> Simulator {
        let mut sim = self.clone();
        if interval < sim.config.sample_interval {
            tracing::warn!(
                asked_ms = interval.as_millis() as u64,
                "scrape interval raised to the sample interval"
            );
        }
        sim.config.scrape_interval = interval.max(sim.config.sample_interval);
        sim
    }

    /// The replica model.
    pub fn replica(&self) -> &ReplicaModel {
        &self.replica
    }

    /// The settings.
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// Replays `trace` with `policy` deciding every `policy.period()`.
    pub fn run(&self, trace: &Trace, policy: &mut dyn Policy) -> SimReport {
        let started = std::time::Instant::now();
        let c = &self.config;
        let initial = c.initial_replicas.unwrap_or(c.bounds.min_replicas);
        let duration = trace.duration_s();
        // At most MAX_SERIES points: a long trace gets a coarser series.
        let mut interval = c.report_interval.as_secs_f64();
        if duration / interval > MAX_SERIES as f64 {
            interval = duration / MAX_SERIES as f64;
            tracing::warn!(
                interval_s = interval,
                "the time series' interval widened to keep {MAX_SERIES} points"
            );
        }
        let bins = (duration / interval).ceil().max(1.0) as usize;
        let mut run = Run {
            sim: self,
            rng: StdRng::seed_from_u64(c.seed),
            replicas: (0..initial)
                .map(|_| Replica::new(State::Ready, 0.0, self.replica.slots, 0.0))
                .collect(),
            ready: Vec::new(),
            dirty: true,
            next_ready: f64::INFINITY,
            desired: initial,
            retired_seconds: 0.0,
            arrivals_in_scrape: 0,
            in_flight_sum: 0.0,
            in_flight_samples: 0,
            latency_by_scrape: HashMap::new(),
            metrics: None,
            series: (0..bins).map(|_| SeriesBin::new()).collect(),
            series_interval: interval,
            overall: histogram(),
            answered: 0,
            within: 0,
            dropped: 0,
            queue_peak: 0,
            in_flight_peak: 0,
            peak_replicas: initial,
            events: Vec::new(),
            stale: 0,
            decisions: 0,
        };

        let sample = c.sample_interval.as_secs_f64();
        let scrape = c.scrape_interval.as_secs_f64();
        // Timers run on whole microseconds, so ones that coincide (a sample and a tick at
        // 20 s) fire at the same instant, in a fixed order, with no drift.
        let micros_of = |d: Duration| (d.as_micros() as u64).max(1);
        let timer = |us: u64, k: u64| (us * k) as f64 / 1e6;
        let (sample_us, scrape_us) = (micros_of(c.sample_interval), micros_of(c.scrape_interval));
        let period_us = micros_of(policy.period()).max(1000);
        let (mut samples, mut scrapes, mut ticks) = (1u64, 1u64, 1u64);
        let mut arrivals = trace.arrivals().iter().copied().peekable();
        loop {
            let next_arrival = arrivals.peek().copied().unwrap_or(f64::INFINITY);
            let next_sample = timer(sample_us, samples);
            let next_scrape = timer(scrape_us, scrapes);
            let next_tick = timer(period_us, ticks);
            let next_timer = next_sample.min(next_scrape).min(next_tick);
            if next_arrival.min(next_timer) > duration {
                break;
            }
            // At the same instant an arrival goes first: the state sampled at t includes it.
            if next_timer < next_arrival {
                let now = next_timer;
                run.ready_up_to(now);
                if next_sample <= now {
                    run.sample(now, sample);
                    samples += 1;
                }
                if next_scrape <= now {
                    run.scrape(now, scrape);
                    scrapes += 1;
                }
                if next_tick <= now {
                    run.tick(now, policy);
                    ticks += 1;
                }
            } else {
                arrivals.next();
                run.ready_up_to(next_arrival);
                run.arrive(next_arrival);
            }
        }
        run.finish(
            trace,
            policy.name(),
            duration,
            started.elapsed().as_secs_f64(),
        )
    }
}

impl Run<'_> {
    fn bin(&self, t: f64) -> usize {
        ((t / self.series_interval) as usize).min(self.series.len() - 1)
    }

    fn ready_up_to(&mut self, now: f64) {
        if now < self.next_ready {
            return;
        }
        self.next_ready = f64::INFINITY;
        for r in &mut self.replicas {
            if let State::Starting { ready_at } = r.state {
                if ready_at <= now {
                    r.state = State::Ready;
                    r.ready_since = ready_at;
                } else {
                    self.next_ready = self.next_ready.min(ready_at);
                }
            }
        }
        self.dirty = true;
    }

    fn service_time(&mut self) -> f64 {
        match &self.sim.service {
            Some(d) => d.sample(&mut self.rng),
            None => self.sim.replica.service_mean_ms / 1000.0,
        }
    }

    /// Routes one arrival: the less loaded of two ready replicas drawn at random (the
    /// power of two choices, Envoy's least-request balancing).
    fn arrive(&mut self, t: f64) {
        self.arrivals_in_scrape += 1;
        let bin = self.bin(t);
        self.series[bin].arrivals += 1;
        if self.dirty {
            self.ready.clear();
            self.ready.extend(
                self.replicas
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| matches!(r.state, State::Ready))
                    .map(|(i, _)| i),
            );
            self.dirty = false;
        }
        let ready = &self.ready;
        let chosen = match ready.len() {
            0 => None,
            1 => Some(ready[0]),
            n => {
                let a = self.rng.random_range(0..n);
                let mut b = self.rng.random_range(0..n - 1);
                if b >= a {
                    b += 1;
                }
                let (a, b) = (ready[a], ready[b]);
                self.replicas[a].advance(t);
                self.replicas[b].advance(t);
                Some(
                    if self.replicas[b].in_flight() < self.replicas[a].in_flight() {
                        b
                    } else {
                        a
                    },
                )
            }
        };
        let Some(i) = chosen else {
            self.drop_request(bin);
            return;
        };
        self.replicas[i].advance(t);
        let free_now = self.replicas[i]
            .slots
            .peek()
            .is_some_and(|Reverse(Ordered(free))| *free <= t);
        if !free_now && self.replicas[i].waiting.len() >= self.sim.replica.max_queue as usize {
            self.drop_request(bin);
            return;
        }
        let service = self.service_time();
        let r = &mut self.replicas[i];
        let Some(Reverse(Ordered(free))) = r.slots.pop() else {
            self.drop_request(bin);
            return;
        };
        let start = free.max(t);
        let finish = start + service;
        r.slots.push(Reverse(Ordered(finish)));
        if start > t {
            r.waiting.push_back(start);
        }
        r.finishing.push(Reverse((Ordered(finish), Ordered(start))));
        r.busy_until = r.busy_until.max(finish);
        r.assigned += service;

        let latency = finish - t;
        let us = micros(latency);
        let within = latency * 1000.0 <= self.sim.config.latency_target_ms;
        self.answered += 1;
        self.within += within as u64;
        self.overall.saturating_record(us);
        let series = &mut self.series[bin];
        series
            .latency
            .get_or_insert_with(histogram)
            .saturating_record(us);
        series.within += within as u64;
        let window = (finish / self.sim.config.scrape_interval.as_secs_f64()) as u64;
        self.latency_by_scrape
            .entry(window)
            .or_insert_with(histogram)
            .saturating_record(us);
    }

    fn drop_request(&mut self, bin: usize) {
        self.dropped += 1;
        self.series[bin].dropped += 1;
    }

    fn sample(&mut self, now: f64, dt: f64) {
        let mut in_flight = 0usize;
        let mut queued = 0usize;
        let mut ready = 0u32;
        let mut provisioned = 0u32;
        let mut retired = 0.0;
        self.replicas.retain_mut(|r| {
            r.advance(now);
            in_flight += r.in_flight();
            queued += r.waiting.len();
            match r.state {
                State::Ready => {
                    ready += 1;
                    provisioned += 1;
                    true
                }
                State::Starting { .. } => {
                    provisioned += 1;
                    true
                }
                State::Draining => {
                    if r.busy_until <= now {
                        retired += r.busy_until.max(r.added_at) - r.added_at;
                        false
                    } else {
                        provisioned += 1;
                        true
                    }
                }
            }
        });
        self.retired_seconds += retired;
        self.dirty = true;
        self.in_flight_sum += in_flight as f64;
        self.in_flight_samples += 1;
        self.queue_peak = self.queue_peak.max(queued as u64);
        self.in_flight_peak = self.in_flight_peak.max(in_flight as u64);
        let bin = self.bin((now - dt / 2.0).max(0.0));
        let series = &mut self.series[bin];
        series.provisioned += provisioned as f64;
        series.ready += ready as f64;
        series.samples += 1;
    }

    fn scrape(&mut self, now: f64, window: f64) {
        let index = ((now / window).round() as u64).saturating_sub(1);
        let latency = self.latency_by_scrape.remove(&index).and_then(|h| {
            (!h.is_empty()).then(|| {
                h.value_at_quantile(self.sim.config.percentile as f64 / 100.0) as f64 / 1000.0
            })
        });
        // Histograms of windows already past (rounding at the edges) are dropped.
        self.latency_by_scrape.retain(|k, _| *k > index);
        let ceiling = self.sim.replica.utilization_at_saturation;
        let slots = self.sim.replica.slots as f64;
        let mut utilization = Vec::new();
        let mut queue = 0usize;
        for r in &mut self.replicas {
            r.advance(now);
            queue += r.waiting.len();
            let served = r.served(now);
            let busy = served - r.served_at_scrape;
            r.served_at_scrape = served;
            // The busy share of its slots over the part of the window it was ready.
            let span = now - (now - window).max(r.ready_since);
            if matches!(r.state, State::Ready) && span > 0.0 {
                utilization.push((busy / (slots * span)).clamp(0.0, 1.0) * ceiling);
            }
        }
        let in_flight = if self.in_flight_samples > 0 {
            self.in_flight_sum / self.in_flight_samples as f64
        } else {
            0.0
        };
        self.metrics = Some(Metrics {
            at: Duration::from_secs_f64(now),
            window: Duration::from_secs_f64(window),
            request_rate_rps: Some(self.arrivals_in_scrape as f64 / window),
            in_flight: Some(in_flight),
            queue_depth: Some(queue as f64),
            latency_ms: latency,
            utilization,
        });
        self.arrivals_in_scrape = 0;
        self.in_flight_sum = 0.0;
        self.in_flight_samples = 0;
    }

    fn tick(&mut self, now: f64, policy: &mut dyn Policy) {
        let mut ready = 0;
        let mut starting = 0;
        for r in &self.replicas {
            match r.state {
                State::Ready => ready += 1,
                State::Starting { .. } => starting += 1,
                State::Draining => {}
            }
        }
        let observation = Observation {
            ready,
            starting,
            desired: self.desired,
            metrics: self.metrics.clone(),
        };
        let decision = policy.decide(Duration::from_secs_f64(now), &observation);
        self.decisions += 1;
        if decision.action == Action::Stale {
            self.stale += 1;
            tracing::debug!(t_s = now, reason = %decision.reason, "policy held on stale metrics");
        }
        let wanted = self.sim.config.bounds.clamp(decision.replicas);
        if wanted == self.desired {
            return;
        }
        self.events.push(ScaleEvent {
            t_s: now,
            from: self.desired,
            to: wanted,
            action: if wanted > self.desired {
                Action::Up
            } else {
                Action::Down
            },
            reason: decision.reason,
        });
        self.apply(now, wanted);
        self.peak_replicas = self.peak_replicas.max(wanted);
    }

    fn apply(&mut self, now: f64, wanted: u32) {
        let live = self
            .replicas
            .iter()
            .filter(|r| !matches!(r.state, State::Draining))
            .count() as u32;
        if wanted > live {
            let ready_at = now + self.sim.config.cold_start.as_secs_f64();
            for _ in live..wanted {
                let state = if ready_at <= now {
                    State::Ready
                } else {
                    State::Starting { ready_at }
                };
                self.replicas
                    .push(Replica::new(state, now, self.sim.replica.slots, ready_at));
                self.next_ready = self.next_ready.min(ready_at);
            }
        } else {
            let mut excess = live - wanted;
            // Starting replicas go first, the newest first; then the least loaded ready ones.
            for r in self.replicas.iter_mut().rev() {
                if excess == 0 {
                    break;
                }
                if matches!(r.state, State::Starting { .. }) {
                    r.state = State::Draining;
                    r.busy_until = now;
                    excess -= 1;
                }
            }
            for r in &mut self.replicas {
                r.advance(now);
            }
            while excess > 0 {
                let Some(r) = self
                    .replicas
                    .iter_mut()
                    .filter(|r| matches!(r.state, State::Ready))
                    .min_by_key(|r| r.in_flight())
                else {
                    break;
                };
                r.state = State::Draining;
                r.busy_until = r.busy_until.max(now);
                excess -= 1;
            }
        }
        self.desired = wanted;
        self.dirty = true;
    }

    fn finish(self, trace: &Trace, policy: String, duration: f64, wall_s: f64) -> SimReport {
        let c = &self.sim.config;
        let live: f64 = self
            .replicas
            .iter()
            .map(|r| match r.state {
                State::Draining => r.busy_until.min(duration).max(r.added_at) - r.added_at,
                _ => duration - r.added_at,
            })
            .sum();
        let replica_seconds = self.retired_seconds + live;
        let requests = self.answered + self.dropped;
        let q = c.percentile as f64 / 100.0;
        let ms = |h: &Histogram<u64>, q: f64| {
            if h.is_empty() {
                0.0
            } else {
                h.value_at_quantile(q) as f64 / 1000.0
            }
        };
        let interval = self.series_interval;
        let series = self
            .series
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let span = interval.min(duration - i as f64 * interval).max(1e-9);
                let samples = b.samples.max(1) as f64;
                SeriesPoint {
                    t_s: i as f64 * interval,
                    demand_rps: b.arrivals as f64 / span,
                    replicas: b.provisioned / samples,
                    ready: b.ready / samples,
                    latency_ms: b.latency.as_ref().map_or(0.0, |h| ms(h, q)),
                    dropped: b.dropped,
                    slo_attainment: if b.arrivals == 0 {
                        1.0
                    } else {
                        b.within as f64 / b.arrivals as f64
                    },
                }
            })
            .collect();
        SimReport {
            schema_version: SCHEMA_VERSION,
            policy,
            trace: trace.name().to_string(),
            duration_s: duration,
            requests,
            answered: self.answered,
            dropped: self.dropped,
            latency_target_ms: c.latency_target_ms,
            percentile: c.percentile,
            slo_attainment: if requests == 0 {
                1.0
            } else {
                self.within as f64 / requests as f64
            },
            latency_p50_ms: ms(&self.overall, 0.5),
            latency_ms: ms(&self.overall, q),
            latency_max_ms: self.overall.max() as f64 / 1000.0,
            replica_seconds,
            mean_replicas: replica_seconds / duration.max(1e-9),
            peak_replicas: self.peak_replicas,
            cost: replica_seconds / 3600.0 * self.sim.replica.cost_per_hour,
            queue_peak: self.queue_peak,
            in_flight_peak: self.in_flight_peak,
            decisions: self.decisions,
            stale_decisions: self.stale,
            scale_events: self.events.len(),
            events: self.events,
            series,
            replica: self.sim.replica.clone(),
            config: c.clone(),
            wall_s,
        }
    }
}
