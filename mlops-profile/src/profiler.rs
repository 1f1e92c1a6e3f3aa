//! The profiler: for each configuration a search picks, launch the server under that
//! budget, find its capacity at the latency target, and in the end recommend the cheapest
//! way to serve the demand and confirm it holds.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use mlops_core::ModelManifest;
use mlops_core::profile::{
    ComputeDevice, ConfigProfile, ConfigStatus, Confirmation, CostModel, HostInfo, LoadPoint,
    Measurement, PROFILE_SCHEMA_VERSION, ProfileReport, ProfiledModel, Recommendation,
    SearchSummary, ServingConfig,
};

use crate::error::{Error, Result};
use crate::input::RequestSet;
use crate::launch::{Budget, ClientPinning, ServerCommand, ServerProcess, allowed_cpus};
use crate::load::{LoadConfig, LoadGenerator, LoadMode};
use crate::monitor::{MonitorConfig, Sampler};
use crate::search::{Scores, SearchSpace, Strategy, objective};
use crate::target::{GrpcTarget, HttpEncoding, HttpTarget, Target};

/// How the profiler reaches the servers it launches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP with JSON tensors, as most clients send.
    #[default]
    HttpJson,
    /// HTTP with the binary tensor extension.
    HttpBinary,
    /// gRPC with raw tensor contents.
    Grpc,
}

impl Protocol {
    /// The name reports use.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::HttpJson => "http_json",
            Protocol::HttpBinary => "http_binary",
            Protocol::Grpc => "grpc",
        }
    }
}

/// What the profiler aims for and how it measures.
#[derive(Clone, Debug)]
pub struct ProfilerConfig {
    /// The latency target, in milliseconds, on [`LoadConfig::percentile`].
    pub latency_target_ms: f64,
    /// The demand to serve, in requests per second; `None` ranks by throughput per cost.
    pub demand_rps: Option<f64>,
    /// Prices.
    pub cost: CostModel,
    /// Windows, stability, percentile.
    pub load: LoadConfig,
    /// How requests reach the server.
    pub protocol: Protocol,
    /// The highest concurrency a capacity sweep goes to.
    pub max_concurrency: usize,
    /// A sweep stops once this many steps in a row gained less than 5% throughput.
    pub saturation_steps: usize,
    /// Open-loop rates tried per configuration, bisecting between a quarter of and the
    /// best closed-loop throughput within the target.
    pub open_loop_steps: usize,
    /// Drive the recommendation at its capacity once more to confirm it.
    pub confirm: bool,
    /// How often resources are sampled.
    pub sample_interval: Duration,
    /// A memory limit for every launched server.
    pub memory_limit_bytes: Option<u64>,
}

impl Default for ProfilerConfig {
    fn default() -> Self {
        ProfilerConfig {
            latency_target_ms: 10.0,
            demand_rps: None,
            cost: CostModel::default(),
            load: LoadConfig::default(),
            protocol: Protocol::default(),
            max_concurrency: 64,
            saturation_steps: 2,
            open_loop_steps: 4,
            confirm: true,
            sample_interval: Duration::from_millis(100),
            memory_limit_bytes: None,
        }
    }
}

impl ProfilerConfig {
    /// Sets the latency target in milliseconds.
    pub fn with_latency_target_ms(mut self, ms: f64) -> Self {
        self.latency_target_ms = ms;
        self
    }

    /// Sets the demand in requests per second.
    pub fn with_demand_rps(mut self, rps: f64) -> Self {
        self.demand_rps = Some(rps);
        self
    }

    /// Sets the cost model.
    pub fn with_cost(mut self, cost: CostModel) -> Self {
        self.cost = cost;
        self
    }

    /// Sets how measurements are taken.
    pub fn with_load(mut self, load: LoadConfig) -> Self {
        self.load = load;
        self
    }

    /// Sets the protocol.
    pub fn with_protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = protocol;
        self
    }

    /// Sets the highest concurrency.
    pub fn with_max_concurrency(mut self, n: usize) -> Self {
        self.max_concurrency = n;
        self
    }

    /// Sets how many steps without a 5% gain end a concurrency sweep.
    pub fn with_saturation_steps(mut self, steps: usize) -> Self {
        self.saturation_steps = steps.max(1);
        self
    }

    /// Sets how many open-loop rates are tried per configuration.
    pub fn with_open_loop_steps(mut self, steps: usize) -> Self {
        self.open_loop_steps = steps.max(1);
        self
    }

    /// Whether to run the confirmation.
    pub fn with_confirm(mut self, confirm: bool) -> Self {
        self.confirm = confirm;
        self
    }

    /// Limits every launched server's memory.
    pub fn with_memory_limit(mut self, bytes: u64) -> Self {
        self.memory_limit_bytes = Some(bytes);
        self
    }
}

/// Profiles one model over a space of configurations.
pub struct Profiler {
    model_path: PathBuf,
    model: ProfiledModel,
    command: ServerCommand,
    requests: RequestSet,
    config: ProfilerConfig,
    interrupt: Arc<AtomicBool>,
    progress: Option<ProgressBar>,
}

impl Profiler {
    /// A profiler for the model at `path`, launched with `command`, sending `requests`.
    pub fn new(
        path: &Path,
        manifest: &ModelManifest,
        command: ServerCommand,
        requests: RequestSet,
        config: ProfilerConfig,
    ) -> Result<Profiler> {
        if !(config.latency_target_ms > 0.0 && config.latency_target_ms.is_finite()) {
            return Err(Error::Config(format!(
                "the latency target must be a positive number of milliseconds, not {}",
                config.latency_target_ms
            )));
        }
        if let Some(d) = config.demand_rps
            && !(d > 0.0 && d.is_finite())
        {
            return Err(Error::Config(format!(
                "the demand must be above 0 req/s, not {d}"
            )));
        }
        if config.max_concurrency == 0 {
            return Err(Error::Config("max_concurrency must be at least 1".into()));
        }
        let sha256 = manifest
            .files
            .iter()
            .find(|f| f.path == manifest.entry.path)
            .map(|f| f.sha256.clone());
        Ok(Profiler {
            model_path: path.to_path_buf(),
            model: ProfiledModel {
                name: manifest.name.clone(),
                version: None,
                sha256,
                format: manifest.entry.format.to_string(),
            },
            command,
            requests,
            config,
            interrupt: Arc::new(AtomicBool::new(false)),
            progress: None,
        })
    }

    /// Sets the registry version the report names.
    pub fn with_version(mut self, version: u64) -> Self {
        self.model.version = Some(version);
        self
    }

    /// Shows progress on this bar (one step per configuration).
    pub fn with_progress(mut self, bar: ProgressBar) -> Self {
        self.progress = Some(bar);
        self
    }

    /// Shows a progress bar on the terminal (hidden when stderr is not one).
    pub fn with_progress_bar(self) -> Self {
        let bar = ProgressBar::new(0);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] {pos}/{len} configurations  {msg}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.enable_steady_tick(Duration::from_millis(200));
        self.with_progress(bar)
    }

    /// A flag that, once set (on Ctrl-C, say), stops the run after the measurement in
    /// progress; the report keeps what was measured and says it was interrupted.
    pub fn interrupt_flag(&self) -> Arc<AtomicBool> {
        self.interrupt.clone()
    }

    fn interrupted(&self) -> bool {
        self.interrupt.load(Ordering::Acquire)
    }

    fn say(&self, message: String) {
        if let Some(bar) = &self.progress {
            bar.set_message(message);
        }
    }

    /// Why `config` cannot run on this host, if it cannot.
    pub fn unavailable_reason(config: &ServingConfig, host: &HostInfo) -> Option<String> {
        let cores = allowed_cpus().len();
        if config.cpu_cores as usize > cores {
            return Some(format!(
                "{} CPU cores asked for, {cores} available",
                config.cpu_cores
            ));
        }
        if let ComputeDevice::Gpu { index } = config.device {
            let cuda = if cfg!(feature = "cuda") {
                ""
            } else {
                "; and this build has no `cuda` feature"
            };
            if host.gpus.is_empty() {
                return Some(format!(
                    "no GPU seen ({}){cuda}",
                    host.gpu_unavailable
                        .clone()
                        .unwrap_or_else(|| "none found".into())
                ));
            }
            if index as usize >= host.gpus.len() {
                return Some(format!(
                    "GPU {index} asked for, {} present{cuda}",
                    host.gpus.len()
                ));
            }
            if !cuda.is_empty() {
                return Some("not compiled with the `cuda` feature".into());
            }
        }
        None
    }

    /// Runs the search over `space` with `strategy`, measures what it picks, recommends
    /// and confirms. Configurations that cannot run here are listed as unavailable with
    /// the reason; ones that fail are marked failed and the search goes on.
    pub async fn run(
        &self,
        mut space: SearchSpace,
        strategy: &mut dyn Strategy,
    ) -> Result<ProfileReport> {
        let started = Instant::now();
        let started_at = chrono::Utc::now().to_rfc3339();
        let host = crate::monitor::host_info();
        let space_size = space.len();
        let mut profiles: Vec<ConfigProfile> = Vec::new();
        let removed = space.retain(|c| Self::unavailable_reason(c, &host).is_none());
        for config in removed {
            let reason = Self::unavailable_reason(&config, &host).unwrap_or_default();
            profiles.push(ConfigProfile {
                id: config.id(),
                cost_per_hour: self.config.cost.hourly(&config),
                config,
                status: ConfigStatus::Unavailable { reason },
                capacity_rps: None,
                capacity_point: None,
                curve: Vec::new(),
            });
        }
        let mut sampler_config =
            MonitorConfig::default().with_interval(self.config.sample_interval);
        if let Some(gpu) = space.configs().iter().find_map(|c| match c.device {
            ComputeDevice::Gpu { index } => Some(index),
            ComputeDevice::Cpu => None,
        }) {
            sampler_config = sampler_config.with_gpu(gpu);
        }
        let sampler = Sampler::start(sampler_config);
        if let Some(bar) = &self.progress {
            bar.set_length(space.len() as u64);
        }
        let mut scores = Scores::new();
        let mut measured: Vec<(usize, ConfigProfile)> = Vec::new();
        let mut path = Vec::new();
        let mut interrupted = false;
        while let Some(i) = strategy.next(&space, &scores) {
            if self.interrupted() {
                interrupted = true;
                break;
            }
            if i >= space.len() || scores.contains_key(&i) {
                tracing::warn!(
                    strategy = strategy.name(),
                    index = i,
                    "the search strategy repeated or overran the space; stopping it"
                );
                break;
            }
            let config = space.config(i).clone();
            path.push(config.id());
            let profile = self.measure_config(&config, &sampler).await;
            let score = profile
                .capacity_rps
                .map(|cap| objective(&self.config.cost, &config, cap, self.config.demand_rps));
            scores.insert(i, score);
            measured.push((i, profile));
            if let Some(bar) = &self.progress {
                bar.inc(1);
            }
        }
        let measured_count = measured.len();
        for (i, config) in space.configs().iter().enumerate() {
            if let Some(pos) = measured.iter().position(|(j, _)| *j == i) {
                profiles.push(measured[pos].1.clone());
            } else {
                profiles.push(ConfigProfile {
                    id: config.id(),
                    cost_per_hour: self.config.cost.hourly(config),
                    config: config.clone(),
                    status: ConfigStatus::Skipped,
                    capacity_rps: None,
                    capacity_point: None,
                    curve: Vec::new(),
                });
            }
        }
        interrupted |= self.interrupted();
        let mut recommendation = self.recommend(&profiles);
        let mut confirmation = None;
        if self.config.confirm && !interrupted {
            (recommendation, confirmation) = self
                .confirm_recommendation(recommendation, &mut profiles, &sampler)
                .await;
        }
        if let Some(bar) = &self.progress {
            bar.finish_and_clear();
        }
        Ok(ProfileReport {
            schema_version: PROFILE_SCHEMA_VERSION,
            model: self.model.clone(),
            host,
            protocol: self.config.protocol.name().to_owned(),
            latency_target_ms: self.config.latency_target_ms,
            percentile: self.config.load.percentile,
            demand_rps: self.config.demand_rps,
            cost_model: self.config.cost.clone(),
            configs: profiles,
            recommendation,
            confirmation,
            search: SearchSummary {
                strategy: strategy.name().to_owned(),
                seed: strategy.seed().unwrap_or(self.config.load.seed),
                space_size,
                measured: measured_count,
                path,
            },
            samples: sampler.samples(),
            started_at,
            duration_s: started.elapsed().as_secs_f64(),
            interrupted,
        })
    }

    fn target_for(&self, server: &ServerProcess) -> Result<Arc<dyn Target>> {
        let name = &self.model.name;
        Ok(match self.config.protocol {
            Protocol::HttpJson => Arc::new(HttpTarget::new(
                &server.http_url(),
                name,
                None,
                HttpEncoding::Json,
            )?),
            Protocol::HttpBinary => Arc::new(HttpTarget::new(
                &server.http_url(),
                name,
                None,
                HttpEncoding::Binary,
            )?),
            Protocol::Grpc => Arc::new(GrpcTarget::new(&server.grpc_url(), name, None, 4)?),
        })
    }

    /// Launches `config`, and moves this process off the server's CPUs while it runs.
    async fn launch(&self, config: &ServingConfig) -> Result<(ServerProcess, ClientPinning)> {
        let mut budget = Budget::for_config(config)?;
        if let Some(limit) = self.config.memory_limit_bytes {
            budget = budget.with_memory_limit(limit);
        }
        let pinning = ClientPinning::away_from(budget.cpus.as_deref().unwrap_or(&[]));
        let server = ServerProcess::launch(
            &self.command,
            &budget,
            config,
            &self.model_path,
            &self.model.name,
        )
        .await?;
        Ok((server, pinning))
    }

    /// Launches `config`, sweeps concurrency to find its capacity at the target, and stops
    /// the server. Never fails: a failure is the profile's status.
    pub async fn measure_config(&self, config: &ServingConfig, sampler: &Sampler) -> ConfigProfile {
        let id = config.id();
        let mut profile = ConfigProfile {
            id: id.clone(),
            cost_per_hour: self.config.cost.hourly(config),
            config: config.clone(),
            status: ConfigStatus::Measured,
            capacity_rps: None,
            capacity_point: None,
            curve: Vec::new(),
        };
        self.say(format!("{id}: starting the server"));
        let (server, pinning) = match self.launch(config).await {
            Ok(s) => s,
            Err(e) => {
                profile.status = ConfigStatus::Failed {
                    reason: e.to_string(),
                };
                return profile;
            }
        };
        sampler.watch(Some(server.pid()), &id);
        let result = self.sweep(&id, &server, sampler, &mut profile.curve).await;
        sampler.watch(None, "");
        match result {
            // Its capacity was not found: a closed-loop figure alone would overstate it.
            Ok(()) if self.interrupted() => {
                profile.status = ConfigStatus::Failed {
                    reason: "interrupted before its capacity was found".into(),
                };
            }
            Ok(()) => {
                let (capacity, point) = capacity_of(
                    &profile.curve,
                    self.config.latency_target_ms,
                    self.config.load.percentile,
                );
                profile.capacity_rps = Some(capacity);
                profile.capacity_point = point;
            }
            Err(reason) => profile.status = ConfigStatus::Failed { reason },
        }
        stop(server, pinning).await;
        profile
    }

    /// Concurrency 1, 2, 4, … until the target percentile passes the target, throughput
    /// stops growing, or `max_concurrency`; then one step between the last good and the
    /// first bad concurrency.
    async fn sweep(
        &self,
        id: &str,
        server: &ServerProcess,
        sampler: &Sampler,
        curve: &mut Vec<Measurement>,
    ) -> std::result::Result<(), String> {
        let target = self.target_for(server).map_err(|e| e.to_string())?;
        let generator = LoadGenerator::new(target, &self.requests, self.config.load.clone())
            .map_err(|e| e.to_string())?;
        let percentile = self.config.load.percentile;
        let limit = self.config.latency_target_ms;
        let mut concurrency = 1usize;
        let mut best = 0.0f64;
        let mut flat_steps = 0;
        let mut last_good: Option<usize> = None;
        let mut first_bad: Option<usize> = None;
        loop {
            if self.interrupted() {
                return Ok(());
            }
            self.say(format!("{id}: concurrency {concurrency}"));
            let m = self
                .point(
                    &generator,
                    server,
                    sampler,
                    LoadMode::Concurrency(concurrency),
                )
                .await?;
            let good = sustains(&m, limit, percentile);
            let throughput = m.throughput_rps;
            curve.push(m);
            if curve.len() == 1 && throughput == 0.0 {
                let errors = &curve[0].errors;
                return Err(format!(
                    "no request was answered at concurrency 1 (errors: {errors:?})"
                ));
            }
            if good {
                last_good = Some(concurrency);
            } else {
                first_bad = Some(concurrency);
                break;
            }
            if throughput < best * 1.05 {
                flat_steps += 1;
            } else {
                flat_steps = 0;
            }
            best = best.max(throughput);
            if flat_steps >= self.config.saturation_steps
                || concurrency >= self.config.max_concurrency
            {
                break;
            }
            concurrency = (concurrency * 2).min(self.config.max_concurrency);
        }
        if let (Some(good), Some(bad)) = (last_good, first_bad) {
            let middle = good + (bad - good) / 2;
            if middle > good && middle < bad && !self.interrupted() {
                self.say(format!("{id}: concurrency {middle}"));
                let m = self
                    .point(&generator, server, sampler, LoadMode::Concurrency(middle))
                    .await?;
                curve.push(m);
            }
        }
        // A closed loop slows down with the server; real traffic does not. Below the best
        // closed-loop throughput within the target, T, the highest open-loop rate that holds
        // the target is the capacity.
        let closed_best = curve
            .iter()
            .filter(|m| sustains(m, limit, percentile))
            .map(|m| m.throughput_rps)
            .fold(0.0, f64::max);
        if closed_best <= 0.0 {
            return Ok(());
        }
        // Bisection over [T/4, T]; if even T/4 misses, one try at T/10.
        let (mut lo, mut hi) = (0.25, 1.0);
        let mut any_passed = false;
        for _ in 0..self.config.open_loop_steps {
            if self.interrupted() {
                return Ok(());
            }
            let factor = (lo + hi) / 2.0;
            let m = self
                .open_point(id, &generator, server, sampler, closed_best * factor)
                .await?;
            if sustains(&m, limit, percentile) {
                lo = factor;
                any_passed = true;
            } else {
                hi = factor;
            }
            curve.push(m);
        }
        if !any_passed && !self.interrupted() {
            let m = self
                .open_point(id, &generator, server, sampler, closed_best * 0.1)
                .await?;
            curve.push(m);
        }
        Ok(())
    }

    /// One open-loop point at `rps`, evenly spaced.
    async fn open_point(
        &self,
        id: &str,
        generator: &LoadGenerator,
        server: &ServerProcess,
        sampler: &Sampler,
        rps: f64,
    ) -> std::result::Result<Measurement, String> {
        self.say(format!("{id}: {rps:.0} req/s open loop"));
        let mode = LoadMode::Rate {
            rps,
            poisson: false,
        };
        self.point(generator, server, sampler, mode).await
    }

    async fn point(
        &self,
        generator: &LoadGenerator,
        server: &ServerProcess,
        sampler: &Sampler,
        mode: LoadMode,
    ) -> std::result::Result<Measurement, String> {
        let since = Instant::now();
        let outcome = generator.measure(mode).await.map_err(|e| e.to_string())?;
        if let Some(status) = server.exit_status() {
            return Err(format!(
                "the server exited ({status}) during {}; its output ends:\n{}",
                mode.point(),
                server.log_tail(1500)
            ));
        }
        let mut m = outcome.measurement;
        m.resources = Some(sampler.summary_since(since));
        Ok(m)
    }

    /// The cheapest configuration for the demand (or the best throughput per cost), or the
    /// closest one when none meets the target.
    pub fn recommend(&self, profiles: &[ConfigProfile]) -> Option<Recommendation> {
        recommend(
            profiles,
            &self.config.cost,
            self.config.demand_rps,
            self.config.latency_target_ms,
            self.config.load.percentile,
        )
    }

    /// Launches `config` again and drives it at `rate_rps` (open loop, evenly spaced);
    /// passes when every stable window meets the target with no failed request and the
    /// server is still up.
    pub async fn confirm(
        &self,
        config: &ServingConfig,
        rate_rps: f64,
        sampler: &Sampler,
    ) -> Confirmation {
        let id = config.id();
        let failed = |reason: String| Confirmation {
            config_id: id.clone(),
            rate_rps,
            measurement: Measurement {
                load: LoadMode::Rate {
                    rps: rate_rps,
                    poisson: false,
                }
                .point(),
                throughput_rps: 0.0,
                latency: Default::default(),
                requests: 0,
                errors: [(reason, 1)].into_iter().collect(),
                stable: false,
                trials: 0,
                client_cpu_us_per_request: 0.0,
                resources: None,
            },
            window_latency_ms: Vec::new(),
            passed: false,
            missed_rates_rps: Vec::new(),
        };
        let (server, pinning) = match self.launch(config).await {
            Ok(s) => s,
            Err(e) => return failed(e.to_string()),
        };
        sampler.watch(Some(server.pid()), &format!("{id} (confirmation)"));
        let driven = self.drive_at(&server, rate_rps, sampler).await;
        sampler.watch(None, "");
        let exited = server.exit_status().is_some();
        stop(server, pinning).await;
        match driven {
            Ok((measurement, window_latency_ms, held)) => Confirmation {
                config_id: id,
                rate_rps,
                measurement,
                window_latency_ms,
                passed: held && !exited,
                missed_rates_rps: Vec::new(),
            },
            Err(reason) => failed(reason),
        }
    }

    /// Drives `server` open loop at `rate_rps`: the measurement, the percentile's latency
    /// per window, and whether every stable window met the target with no failed request.
    async fn drive_at(
        &self,
        server: &ServerProcess,
        rate_rps: f64,
        sampler: &Sampler,
    ) -> std::result::Result<(Measurement, Vec<f64>, bool), String> {
        let generator = self
            .target_for(server)
            .and_then(|t| LoadGenerator::new(t, &self.requests, self.config.load.clone()))
            .map_err(|e| e.to_string())?;
        let since = Instant::now();
        let outcome = generator
            .measure(LoadMode::Rate {
                rps: rate_rps,
                poisson: false,
            })
            .await
            .map_err(|e| e.to_string())?;
        let percentile = self.config.load.percentile;
        let window_latency_ms: Vec<f64> = outcome
            .windows
            .iter()
            .map(|w| w.latency.at(percentile))
            .collect();
        let k = self
            .config
            .load
            .stability_windows
            .min(outcome.windows.len());
        let reported = &outcome.windows[outcome.windows.len() - k..];
        let held = !reported.is_empty()
            && reported.iter().all(|w| {
                w.errors.values().sum::<u64>() == 0
                    && w.latency.at(percentile) <= self.config.latency_target_ms
            });
        let mut measurement = outcome.measurement;
        measurement.resources = Some(sampler.summary_since(since));
        Ok((measurement, window_latency_ms, held))
    }

    /// Confirms the recommendation at its capacity on a freshly launched server. A miss is
    /// retried at 90% and 80% of the rate; a lower rate that holds becomes the
    /// configuration's capacity (its measurement joins the curve), and the recommendation
    /// is made again from the corrected figures, confirming the new choice if it changed.
    async fn confirm_recommendation(
        &self,
        mut recommendation: Option<Recommendation>,
        profiles: &mut [ConfigProfile],
        sampler: &Sampler,
    ) -> (Option<Recommendation>, Option<Confirmation>) {
        let mut last = None;
        // Confirmations that held, at the rate each configuration's capacity now is.
        let mut held: Vec<Confirmation> = Vec::new();
        for _round in 0..3 {
            let Some(r) = recommendation.clone().filter(|r| r.meets_target) else {
                return (recommendation, last);
            };
            // The choice came back to a configuration confirmed at its capacity: done.
            if let Some(c) = held
                .iter()
                .find(|c| c.config_id == r.config_id && c.rate_rps == r.capacity_rps)
            {
                return (recommendation, Some(c.clone()));
            }
            let mut missed = Vec::new();
            let mut confirmed = None;
            for factor in [1.0, 0.9, 0.8] {
                if self.interrupted() {
                    break;
                }
                let rate = r.capacity_rps * factor;
                self.say(format!("confirming {} at {rate:.0} req/s", r.config_id));
                let c = self.confirm(&r.config, rate, sampler).await;
                if c.passed {
                    confirmed = Some(c);
                    break;
                }
                missed.push(rate);
                last = Some(Confirmation {
                    missed_rates_rps: missed.clone(),
                    ..c
                });
            }
            let Some(mut c) = confirmed else {
                return (recommendation, last);
            };
            c.missed_rates_rps = missed.clone();
            let lowered = !missed.is_empty();
            last = Some(c.clone());
            held.push(c.clone());
            if !lowered {
                return (recommendation, last);
            }
            // The confirmed rate is the capacity now.
            if let Some(p) = profiles.iter_mut().find(|p| p.id == r.config_id) {
                p.curve.push(c.measurement.clone());
                p.capacity_rps = Some(c.rate_rps);
                p.capacity_point = Some(p.curve.len() - 1);
            }
            recommendation = self.recommend(profiles).map(|mut n| {
                n.reason.push_str(&format!(
                    "; {}'s capacity lowered from {:.0} to {:.0} req/s by the confirmation",
                    r.config_id, r.capacity_rps, c.rate_rps
                ));
                n
            });
            if recommendation.as_ref().map(|n| &n.config_id) == Some(&r.config_id) {
                return (recommendation, last);
            }
        }
        // The choice kept moving: say that the final one was not confirmed itself.
        if let (Some(r), Some(c)) = (recommendation.as_mut(), &last)
            && r.config_id != c.config_id
        {
            r.reason.push_str(
                "; not confirmed itself (the confirmation above is of another configuration)",
            );
        }
        (recommendation, last)
    }
}

/// Stops a server and gives the load generator its CPUs back. Stopping waits (up to the
/// grace period) for the server to exit: off the executor.
async fn stop(server: ServerProcess, pinning: ClientPinning) {
    let _ = tokio::task::spawn_blocking(move || {
        drop(server);
        drop(pinning);
    })
    .await;
}

/// Whether a measurement meets the target: the percentile within it and under 1% failed.
fn meets(m: &Measurement, limit_ms: f64, percentile: u8) -> bool {
    let total = m.requests + m.error_count();
    m.requests > 0
        && m.latency_at(percentile) <= limit_ms
        && (m.error_count() as f64) < 0.01 * total as f64
}

/// Whether a load point was sustained within the target: it meets it, and an open-loop
/// point was answered at (within 1% of) the rate it was sent at: a server that falls
/// behind by more builds a queue that a longer run would show.
fn sustains(m: &Measurement, limit_ms: f64, percentile: u8) -> bool {
    let kept_up = match m.load {
        // Within 1%, or two requests' worth where a few seconds hold only a few hundred.
        LoadPoint::Rate { rps, .. } => {
            let slack = 0.01f64.max(2.0 / (m.requests.max(1) as f64));
            m.throughput_rps >= (1.0 - slack) * rps
        }
        LoadPoint::Concurrency { .. } => true,
    };
    kept_up && meets(m, limit_ms, percentile)
}

/// A configuration's capacity from its curve: the highest throughput among the points
/// sustained within the target, and which point it was. Once the curve has open-loop
/// points, only they count: a closed loop's figure holds only while clients wait for
/// answers, an open loop's holds for traffic that does not.
pub fn capacity_of(curve: &[Measurement], limit_ms: f64, percentile: u8) -> (f64, Option<usize>) {
    let open = curve
        .iter()
        .any(|m| matches!(m.load, LoadPoint::Rate { .. }));
    curve
        .iter()
        .enumerate()
        .filter(|(_, m)| !open || matches!(m.load, LoadPoint::Rate { .. }))
        .filter(|(_, m)| sustains(m, limit_ms, percentile))
        .max_by(|a, b| a.1.throughput_rps.total_cmp(&b.1.throughput_rps))
        .map_or((0.0, None), |(i, m)| (m.throughput_rps, Some(i)))
}

/// The recommendation over measured profiles: the best [`objective`]; when nothing meets
/// the target, the configuration with the lowest latency at its lightest load.
pub fn recommend(
    profiles: &[ConfigProfile],
    cost: &CostModel,
    demand_rps: Option<f64>,
    limit_ms: f64,
    percentile: u8,
) -> Option<Recommendation> {
    let best = profiles
        .iter()
        .filter_map(|p| p.capacity_rps.filter(|c| *c > 0.0).map(|c| (p, c)))
        .max_by(|a, b| {
            objective(cost, &a.0.config, a.1, demand_rps).total_cmp(&objective(
                cost,
                &b.0.config,
                b.1,
                demand_rps,
            ))
        });
    if let Some((p, capacity)) = best {
        let replicas = demand_rps.map_or(1, |d| (d / capacity).ceil().max(1.0) as u32);
        let hourly = cost.hourly(&p.config);
        let reason = match demand_rps {
            Some(d) => format!(
                "the cheapest fleet for {d:.0} req/s among {} measured configurations: {replicas} replica(s) of {:.0} req/s each",
                profiles.iter().filter(|p| p.capacity_rps.is_some()).count(),
                capacity
            ),
            None => format!(
                "the most requests per unit of cost among {} measured configurations ({:.0} req/s for {:.4}/h)",
                profiles.iter().filter(|p| p.capacity_rps.is_some()).count(),
                capacity,
                hourly
            ),
        };
        return Some(Recommendation {
            config_id: p.id.clone(),
            config: p.config.clone(),
            replicas,
            capacity_rps: capacity,
            demand_rps,
            cost_per_hour: hourly * f64::from(replicas),
            cost_per_million: cost.per_million(&p.config, capacity),
            meets_target: true,
            reason,
        });
    }
    // Nothing meets the target: the closest measured one, by its lowest latency anywhere on
    // its curve (a failed configuration is never recommended).
    let closest = profiles
        .iter()
        .filter(|p| p.status == ConfigStatus::Measured)
        .filter_map(|p| {
            p.curve
                .iter()
                .filter(|m| m.requests > 0)
                .map(|m| m.latency_at(percentile))
                .min_by(f64::total_cmp)
                .map(|l| (p, l))
        })
        .min_by(|a, b| a.1.total_cmp(&b.1))?;
    let (p, latency) = closest;
    let throughput = p.curve.iter().map(|m| m.throughput_rps).fold(0.0, f64::max);
    Some(Recommendation {
        config_id: p.id.clone(),
        config: p.config.clone(),
        replicas: demand_rps.map_or(1, |d| (d / throughput.max(1e-9)).ceil().max(1.0) as u32),
        capacity_rps: 0.0,
        demand_rps,
        cost_per_hour: cost.hourly(&p.config),
        cost_per_million: cost.per_million(&p.config, throughput),
        meets_target: false,
        reason: format!(
            "no configuration meets p{percentile} <= {limit_ms} ms; the closest, {}, answers in {latency:.2} ms at its lightest load",
            p.id
        ),
    })
}
