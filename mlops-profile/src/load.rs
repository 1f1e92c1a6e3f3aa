//! The load generator: closed loop at a fixed concurrency, or open loop at a constant or
//! Poisson rate, measured in windows until perf_analyzer's stability rule holds.
//!
//! - **Closed loop** ([`LoadMode::Concurrency`]): `n` workers, each sending its next
//!   request as soon as the previous one is answered.
//! - **Open loop** ([`LoadMode::Rate`]): requests leave at their scheduled times whether
//!   or not earlier ones were answered; latency is measured from when the schedule released
//!   the request (its due time, give or take the pacer's wake-up), not from when a worker
//!   got to send it, so a server that falls behind shows in the figures instead of hiding
//!   the delay (coordinated omission, as `wrk2` and `oha` correct it).
//!
//! After a warm-up, windows of [`LoadConfig::window`] are measured until the last
//! [`LoadConfig::stability_windows`] agree within [`LoadConfig::stability_threshold`] on
//! throughput and on the target percentile's latency, with none at zero throughput, or
//! until [`LoadConfig::max_trials`] windows: perf_analyzer's defaults are 3 windows, 10%
//! and 10 trials. The result merges the last windows.
//!
//! Latencies go into HDR histograms (microsecond resolution, 3 significant digits), one per
//! worker shard, so recording never contends.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mlops_core::Tensor;
use mlops_core::profile::{LatencySummary, LoadPoint, Measurement};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Exp};

use crate::error::{Error, Result};
use crate::input::{RequestSet, check_outputs};
use crate::target::{Prepared, Target};

/// The lowest open-loop rate, in requests per second.
pub const MIN_RATE: f64 = 0.001;
/// The highest open-loop rate: beyond it the pacer's gaps round to nothing.
pub const MAX_RATE: f64 = 10_000_000.0;

/// How load is applied.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LoadMode {
    /// Closed loop: this many requests outstanding at all times.
    Concurrency(usize),
    /// Open loop: requests per second, evenly spaced or with Poisson arrivals.
    Rate {
        /// Requests per second.
        rps: f64,
        /// Exponential gaps between requests instead of even ones.
        poisson: bool,
    },
}

impl LoadMode {
    /// The load point as reports write it.
    pub fn point(self) -> LoadPoint {
        match self {
            LoadMode::Concurrency(concurrency) => LoadPoint::Concurrency { concurrency },
            LoadMode::Rate { rps, poisson } => LoadPoint::Rate { rps, poisson },
        }
    }
}

/// How measurements are taken.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadConfig {
    /// Load before measuring, discarded.
    pub warmup: Duration,
    /// One measurement window (perf_analyzer: 5 s).
    pub window: Duration,
    /// How far apart the last windows may be, as a fraction (0.10).
    pub stability_threshold: f64,
    /// How many windows must agree (3).
    pub stability_windows: usize,
    /// The most windows before giving up on stability (10).
    pub max_trials: usize,
    /// The latency percentile stability and targets are judged on (99).
    pub percentile: u8,
    /// Check every answer against the expected outputs, when the requests have them.
    pub check_outputs: bool,
    /// Absolute tolerance for the check.
    pub atol: f64,
    /// Relative tolerance for the check.
    pub rtol: f64,
    /// A request not answered within this is counted as a `timeout` error.
    pub request_timeout: Duration,
    /// Open loop: the most requests sent and not yet answered (and so the most
    /// connections over HTTP/1.1). A request due while all are busy is sent late, and its
    /// wait counts in its latency, since latency runs from the request's release by the schedule.
    pub max_in_flight: usize,
    /// Seed for Poisson arrivals.
    pub seed: u64,
}

impl Default for LoadConfig {
    fn default() -> Self {
        LoadConfig {
            warmup: Duration::from_secs(1),
            window: Duration::from_secs(5),
            stability_threshold: 0.10,
            stability_windows: 3,
            max_trials: 10,
            percentile: 99,
            check_outputs: false,
            atol: 1e-4,
            rtol: 1e-3,
            request_timeout: Duration::from_secs(30),
            max_in_flight: 256,
            seed: 0,
        }
    }
}

impl LoadConfig {
    /// Sets the warm-up.
    pub fn with_warmup(mut self, warmup: Duration) -> Self {
        self.warmup = warmup;
        self
    }

    /// Sets the window length.
    pub fn with_window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// Sets the stability threshold (a fraction).
    pub fn with_stability_threshold(mut self, threshold: f64) -> Self {
        self.stability_threshold = threshold;
        self
    }

    /// Sets how many windows must agree.
    pub fn with_stability_windows(mut self, windows: usize) -> Self {
        self.stability_windows = windows;
        self
    }

    /// Sets the most windows per measurement.
    pub fn with_max_trials(mut self, trials: usize) -> Self {
        self.max_trials = trials;
        self
    }

    /// Sets the percentile latency is judged on.
    pub fn with_percentile(mut self, percentile: u8) -> Self {
        self.percentile = percentile;
        self
    }

    /// Checks every answer against the expected outputs.
    pub fn with_check_outputs(mut self, check: bool) -> Self {
        self.check_outputs = check;
        self
    }

    /// Sets the request timeout.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sets the open loop's most requests in flight.
    pub fn with_max_in_flight(mut self, requests: usize) -> Self {
        self.max_in_flight = requests;
        self
    }

    /// Seeds Poisson arrivals.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    fn validate(&self) -> Result<()> {
        if self.window.is_zero() {
            return Err(Error::Config(
                "the measurement window must be longer than 0".into(),
            ));
        }
        if self.stability_windows == 0 || self.max_trials < self.stability_windows {
            return Err(Error::Config(format!(
                "max_trials ({}) must be at least stability_windows ({}), which must be at least 1",
                self.max_trials, self.stability_windows
            )));
        }
        if ![50, 90, 95, 99].contains(&self.percentile) {
            return Err(Error::Config(format!(
                "the percentile must be 50, 90, 95 or 99, not {}",
                self.percentile
            )));
        }
        if self.max_in_flight == 0 {
            return Err(Error::Config("max_in_flight must be at least 1".into()));
        }
        if self.stability_threshold.is_nan() || self.stability_threshold < 0.0 {
            return Err(Error::Config(
                "the stability threshold must be 0 or more".into(),
            ));
        }
        Ok(())
    }
}

/// One window's figures.
#[derive(Clone, Debug, PartialEq)]
pub struct WindowStats {
    /// Answered requests per second.
    pub throughput_rps: f64,
    /// Latency of the answered requests.
    pub latency: LatencySummary,
    /// Answered requests.
    pub requests: u64,
    /// Failed requests by kind.
    pub errors: BTreeMap<String, u64>,
    /// The window's length.
    pub elapsed: Duration,
}

/// A measurement with its windows.
#[derive(Clone, Debug, PartialEq)]
pub struct MeasureOutcome {
    /// The merged result over the last windows.
    pub measurement: Measurement,
    /// Every window, in order (the last ones were merged).
    pub windows: Vec<WindowStats>,
}

/// One shard of results: a worker (closed loop) or a slice of the requests (open loop)
/// records here.
struct Shard {
    histogram: Histogram<u64>,
    ok: u64,
    errors: BTreeMap<String, u64>,
}

impl Shard {
    fn new() -> Shard {
        Shard {
            histogram: new_histogram(),
            ok: 0,
            errors: BTreeMap::new(),
        }
    }
}

fn new_histogram() -> Histogram<u64> {
    // 1 µs to 1 hour at 3 significant digits: fixed bounds, so this cannot fail.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

struct Recorder {
    shards: Vec<Mutex<Shard>>,
}

impl Recorder {
    fn new(shards: usize) -> Recorder {
        Recorder {
            shards: (0..shards.max(1))
                .map(|_| Mutex::new(Shard::new()))
                .collect(),
        }
    }

    fn record(&self, shard: usize, outcome: std::result::Result<Duration, String>) {
        let mut s = self.shards[shard % self.shards.len()]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match outcome {
            Ok(latency) => {
                let us = u64::try_from(latency.as_micros())
                    .unwrap_or(u64::MAX)
                    .max(1);
                s.histogram.saturating_record(us);
                s.ok += 1;
            }
            Err(kind) => *s.errors.entry(kind).or_insert(0) += 1,
        }
    }

    /// Everything recorded since the last call, merged; the shards start afresh.
    fn take(&self) -> Shard {
        let mut merged = Shard::new();
        for shard in &self.shards {
            let taken = std::mem::replace(
                &mut *shard.lock().unwrap_or_else(|p| p.into_inner()),
                Shard::new(),
            );
            merge(&mut merged, &taken);
        }
        merged
    }
}

fn merge(into: &mut Shard, from: &Shard) {
    // Same bounds on both sides: adding cannot fail.
    let _ = into.histogram.add(&from.histogram);
    into.ok += from.ok;
    for (k, v) in &from.errors {
        *into.errors.entry(k.clone()).or_insert(0) += v;
    }
}

fn summarise(h: &Histogram<u64>) -> LatencySummary {
    if h.is_empty() {
        return LatencySummary::default();
    }
    let ms = |us: u64| us as f64 / 1000.0;
    LatencySummary {
        mean_ms: h.mean() / 1000.0,
        p50_ms: ms(h.value_at_quantile(0.50)),
        p90_ms: ms(h.value_at_quantile(0.90)),
        p95_ms: ms(h.value_at_quantile(0.95)),
        p99_ms: ms(h.value_at_quantile(0.99)),
        max_ms: ms(h.max()),
    }
}

/// perf_analyzer's rule: over the last `k` windows, max/min of throughput and of latency
/// within `1 + threshold`, and no window without an answer.
pub fn is_stable(windows: &[WindowStats], k: usize, threshold: f64, percentile: u8) -> bool {
    if k == 0 || windows.len() < k {
        return false;
    }
    let last = &windows[windows.len() - k..];
    let within = |values: Vec<f64>| {
        let max = values.iter().copied().fold(f64::MIN, f64::max);
        let min = values.iter().copied().fold(f64::MAX, f64::min);
        min > 0.0 && max / min <= 1.0 + threshold + 1e-12
    };
    within(last.iter().map(|w| w.throughput_rps).collect())
        && within(last.iter().map(|w| w.latency.at(percentile)).collect())
}

/// The process's CPU time (user + system) so far.
fn process_cpu() -> Duration {
    // SAFETY: getrusage writes into the struct we pass and reads nothing else.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF with a valid pointer.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    if rc != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| {
        Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

struct Shared {
    target: Arc<dyn Target>,
    requests: Vec<Prepared>,
    expected: Option<Vec<Vec<Tensor>>>,
    config: LoadConfig,
    recorder: Recorder,
    stop: AtomicBool,
}

impl Shared {
    /// Sends request `i` and returns its outcome: the latency, or the error's kind.
    async fn one(&self, i: usize) -> std::result::Result<(), String> {
        let index = i % self.requests.len();
        let check = self.config.check_outputs && self.expected.is_some();
        let sent = tokio::time::timeout(
            self.config.request_timeout,
            self.target.send(&self.requests[index], check),
        )
        .await;
        match sent {
            Err(_) => Err("timeout".into()),
            Ok(Err(e)) => Err(e.kind),
            Ok(Ok(outputs)) => {
                if let (true, Some(expected), Some(got)) = (check, &self.expected, outputs) {
                    check_outputs(&got, &expected[index], self.config.atol, self.config.rtol)
                        .map_err(|_| "mismatch".to_owned())?;
                }
                Ok(())
            }
        }
    }
}

/// Sets a run's stop flag when dropped.
struct StopOnDrop(Arc<Shared>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop.store(true, Ordering::Release);
    }
}

/// Closes the open loop's semaphore when dropped, so the workers end even if the pacer
/// thread panics.
struct CloseOnDrop(Arc<tokio::sync::Semaphore>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// Drives load at one target with one set of requests.
pub struct LoadGenerator {
    shared: Arc<Shared>,
}

impl LoadGenerator {
    /// Prepares every request for `target` once.
    pub fn new(target: Arc<dyn Target>, requests: &RequestSet, config: LoadConfig) -> Result<Self> {
        config.validate()?;
        if requests.requests.is_empty() {
            return Err(Error::Config("no requests to send".into()));
        }
        if let Some(expected) = &requests.expected
            && expected.len() != requests.requests.len()
        {
            return Err(Error::Config(format!(
                "{} requests but {} expected answers",
                requests.requests.len(),
                expected.len()
            )));
        }
        let prepared = requests
            .requests
            .iter()
            .map(|r| target.prepare(r))
            .collect::<Result<Vec<_>>>()?;
        Ok(LoadGenerator {
            shared: Arc::new(Shared {
                target,
                requests: prepared,
                expected: requests.expected.clone(),
                config,
                recorder: Recorder::new(16),
                stop: AtomicBool::new(false),
            }),
        })
    }

    /// The settings.
    pub fn config(&self) -> &LoadConfig {
        &self.shared.config
    }

    /// The target.
    pub fn target(&self) -> &Arc<dyn Target> {
        &self.shared.target
    }

    /// A generator for the same target and requests with other settings.
    pub fn with_config(&self, config: LoadConfig) -> Result<LoadGenerator> {
        config.validate()?;
        Ok(LoadGenerator {
            shared: Arc::new(Shared {
                target: self.shared.target.clone(),
                requests: self.shared.requests.clone(),
                expected: self.shared.expected.clone(),
                config,
                recorder: Recorder::new(16),
                stop: AtomicBool::new(false),
            }),
        })
    }

    /// Measures one load point: warm-up, then windows until stable or the trial limit.
    pub async fn measure(&self, mode: LoadMode) -> Result<MeasureOutcome> {
        let shards = match mode {
            LoadMode::Concurrency(0) => {
                return Err(Error::Config("concurrency must be at least 1".into()));
            }
            LoadMode::Concurrency(n) => n,
            LoadMode::Rate { rps, .. } if !(MIN_RATE..=MAX_RATE).contains(&rps) => {
                return Err(Error::Config(format!(
                    "request rate must be between {MIN_RATE} and {MAX_RATE} req/s, not {rps}"
                )));
            }
            LoadMode::Rate { .. } => self.shared.config.max_in_flight,
        };
        // A fresh run state over the prepared requests.
        let run = Arc::new(Shared {
            target: self.shared.target.clone(),
            requests: self.shared.requests.clone(),
            expected: self.shared.expected.clone(),
            config: self.shared.config.clone(),
            // Workers share shards beyond 16: contention stays negligible, and each shard's
            // histogram is ~0.1 MiB, renewed every window.
            recorder: Recorder::new(shards.min(16)),
            stop: AtomicBool::new(false),
        });
        // Dropping this future (a caller's timeout, a select) stops the load too.
        let stop_guard = StopOnDrop(run.clone());
        let driver = match mode {
            LoadMode::Concurrency(n) => tokio::spawn(closed_loop(run.clone(), n)),
            LoadMode::Rate { rps, poisson } => tokio::spawn(open_loop(run.clone(), rps, poisson)),
        };
        let config = &run.config;
        tokio::time::sleep(config.warmup).await;
        run.recorder.take();
        let cpu_start = process_cpu();
        let mut windows = Vec::new();
        let mut taken: Vec<Shard> = Vec::new();
        let mut stable = false;
        for _ in 0..config.max_trials {
            let started = Instant::now();
            tokio::time::sleep(config.window).await;
            let shard = run.recorder.take();
            let elapsed = started.elapsed();
            windows.push(WindowStats {
                throughput_rps: shard.ok as f64 / elapsed.as_secs_f64(),
                latency: summarise(&shard.histogram),
                requests: shard.ok,
                errors: shard.errors.clone(),
                elapsed,
            });
            taken.push(shard);
            if is_stable(
                &windows,
                config.stability_windows,
                config.stability_threshold,
                config.percentile,
            ) {
                stable = true;
                break;
            }
        }
        let cpu = process_cpu().saturating_sub(cpu_start);
        drop(stop_guard);
        // Workers finish the request they are on (bounded by the request timeout).
        let _ = tokio::time::timeout(config.request_timeout + Duration::from_secs(1), driver).await;
        let k = config.stability_windows.min(taken.len());
        let mut merged = Shard::new();
        let mut elapsed = Duration::ZERO;
        for (shard, window) in taken[taken.len() - k..]
            .iter()
            .zip(&windows[windows.len() - k..])
        {
            merge(&mut merged, shard);
            elapsed += window.elapsed;
        }
        let all_requests: u64 = taken
            .iter()
            .map(|s| s.ok + s.errors.values().sum::<u64>())
            .sum();
        let measurement = Measurement {
            load: mode.point(),
            throughput_rps: merged.ok as f64 / elapsed.as_secs_f64().max(1e-9),
            latency: summarise(&merged.histogram),
            requests: merged.ok,
            errors: merged.errors,
            stable,
            trials: windows.len(),
            client_cpu_us_per_request: if all_requests == 0 {
                0.0
            } else {
                cpu.as_secs_f64() * 1e6 / all_requests as f64
            },
            resources: None,
        };
        Ok(MeasureOutcome {
            measurement,
            windows,
        })
    }

    /// Measures each concurrency in turn.
    pub async fn sweep_concurrency(&self, levels: &[usize]) -> Result<Vec<MeasureOutcome>> {
        let mut out = Vec::with_capacity(levels.len());
        for &n in levels {
            out.push(self.measure(LoadMode::Concurrency(n)).await?);
        }
        Ok(out)
    }

    /// Measures each rate in turn.
    pub async fn sweep_rate(&self, rates: &[f64], poisson: bool) -> Result<Vec<MeasureOutcome>> {
        let mut out = Vec::with_capacity(rates.len());
        for &rps in rates {
            out.push(self.measure(LoadMode::Rate { rps, poisson }).await?);
        }
        Ok(out)
    }

    /// Sends exactly `count` requests at `concurrency` (as perf_analyzer's
    /// `--request-count`), recording each as a measurement does, and returns how long they
    /// took, how many failed, and their latency.
    pub async fn run_requests(
        &self,
        concurrency: usize,
        count: u64,
    ) -> (Duration, u64, LatencySummary) {
        let next = Arc::new(AtomicU64::new(0));
        let shared = self.shared.clone();
        shared.recorder.take();
        let started = Instant::now();
        let mut workers = Vec::with_capacity(concurrency.max(1));
        for worker in 0..concurrency.max(1) {
            let (shared, next) = (shared.clone(), next.clone());
            workers.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        break;
                    }
                    let sent = Instant::now();
                    let outcome = shared.one(i as usize).await;
                    shared
                        .recorder
                        .record(worker, outcome.map(|()| sent.elapsed()));
                }
            }));
        }
        for w in workers {
            let _ = w.await;
        }
        let took = started.elapsed();
        let done = shared.recorder.take();
        (took, done.errors.values().sum(), summarise(&done.histogram))
    }
}

async fn closed_loop(run: Arc<Shared>, concurrency: usize) {
    let mut workers = Vec::with_capacity(concurrency);
    for worker in 0..concurrency {
        let run = run.clone();
        workers.push(tokio::spawn(async move {
            let mut i = worker;
            while !run.stop.load(Ordering::Acquire) {
                let started = Instant::now();
                let outcome = run.one(i).await;
                let failed_to_connect = matches!(&outcome, Err(k) if k == "connect");
                run.recorder
                    .record(worker, outcome.map(|()| started.elapsed()));
                i = i.wrapping_add(concurrency);
                if failed_to_connect {
                    // A server that is down answers at once: do not spin on it.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
}

/// The open loop's schedule: the due time of each request in order, evenly spaced or
/// with exponential gaps from a seeded RNG, the same sequence for the same seed.
struct Schedule {
    next_due: Instant,
    rng: StdRng,
    gap: Option<Exp<f64>>,
    even: Duration,
}

impl Schedule {
    fn take(&mut self) -> Instant {
        let due = self.next_due;
        let gap = match &self.gap {
            Some(e) => Duration::from_secs_f64(e.sample(&mut self.rng)),
            None => self.even,
        };
        self.next_due += gap;
        due
    }
}

/// How early the pacer may release a request instead of sleeping again.
const PACER_QUANTUM: Duration = Duration::from_micros(20);

/// Requests released by the pacer, oldest first: when each left the schedule.
type Released = Mutex<std::collections::VecDeque<Instant>>;

/// A pacer thread releases requests at their due times with the operating system's
/// high-resolution sleep (tokio's timer has millisecond ticks, which would send a
/// millisecond's requests in one burst); `max_in_flight` workers take the released
/// requests and send them. A request released while every worker is busy waits, and the
/// wait is in its latency, which runs from its release (no coordinated omission); no task
/// is spawned per request, which keeps the client cheap.
async fn open_loop(run: Arc<Shared>, rps: f64, poisson: bool) {
    let mut schedule = Schedule {
        next_due: Instant::now(),
        rng: StdRng::seed_from_u64(run.config.seed),
        gap: if poisson { Exp::new(rps).ok() } else { None },
        even: Duration::from_secs_f64(1.0 / rps),
    };
    let released: Arc<Released> = Arc::new(Mutex::new(std::collections::VecDeque::new()));
    let ready = Arc::new(tokio::sync::Semaphore::new(0));
    let pacer = {
        let (run, released, ready) = (run.clone(), released.clone(), ready.clone());
        std::thread::Builder::new()
            .name("mlops-profile-pacer".into())
            .spawn(move || {
                // Sleep precisely: the default 50 µs timer slack would blur the schedule.
                // SAFETY: PR_SET_TIMERSLACK takes a plain integer for the calling thread.
                unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1_000) };
                let _close = CloseOnDrop(ready.clone());
                let mut due = schedule.take();
                while !run.stop.load(Ordering::Acquire) {
                    let now = Instant::now();
                    // What falls due within a few microseconds leaves now: a wake-up costs
                    // more than that much precision is worth.
                    if due > now + PACER_QUANTUM {
                        // At most 50 ms at a time, so a stop is noticed.
                        std::thread::sleep((due - now).min(Duration::from_millis(50)));
                        continue;
                    }
                    let mut n = 0;
                    {
                        let mut queue = released.lock().unwrap_or_else(|p| p.into_inner());
                        while due <= now + PACER_QUANTUM {
                            queue.push_back(now);
                            due = schedule.take();
                            n += 1;
                        }
                    }
                    ready.add_permits(n);
                }
            })
    };
    let Ok(pacer) = pacer else {
        tracing::warn!("cannot start the open loop's pacer thread");
        return;
    };
    let seq = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::with_capacity(run.config.max_in_flight);
    for worker in 0..run.config.max_in_flight {
        let (run, released, ready, seq) =
            (run.clone(), released.clone(), ready.clone(), seq.clone());
        workers.push(tokio::spawn(async move {
            while let Ok(permit) = ready.acquire().await {
                permit.forget();
                let Some(start) = released
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .pop_front()
                else {
                    continue;
                };
                let i = seq.fetch_add(1, Ordering::Relaxed);
                let outcome = run.one(i).await;
                run.recorder
                    .record(worker, outcome.map(|()| start.elapsed()));
            }
        }));
    }
    // The pacer stops on the run's stop flag and closes the semaphore; workers then finish
    // the request they are on.
    let _ = tokio::task::spawn_blocking(move || pacer.join()).await;
    for w in workers {
        let _ = w.await;
    }
}
