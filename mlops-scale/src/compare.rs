//! Every policy on one trace: the utilisation and concurrency policies at their defaults
//! and at their best hand-tuned targets (swept, the cheapest that meets the attainment
//! goal), Ray Serve's at its default, and capacity from the profile.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::policy::{
    Bounds, CapacityConfig, ConcurrencyConfig, OngoingRequestsConfig, PolicyConfig,
    UtilizationConfig,
};
use crate::sim::{SimReport, Simulator};
use crate::trace::Trace;

/// What a run stands for in the comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The policy at its autoscaler's defaults.
    Default,
    /// One point of a target sweep.
    Sweep,
    /// The cheapest point of a sweep that met the goal: the best a hand-tuner finds.
    HandTuned,
    /// The capacity policy, straight from the profile.
    Capacity,
}

/// One policy's run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PolicyRun {
    /// What it stands for.
    pub role: Role,
    /// The policy as configured.
    pub config: PolicyConfig,
    /// What happened.
    pub report: SimReport,
}

/// The comparison's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CompareConfig {
    /// The attainment a hand-tuned target must reach (default 0.99).
    pub goal: f64,
    /// HPA targets to sweep (default 10% to 90% by 10).
    pub utilization_targets: Vec<f64>,
    /// KPA concurrency targets to sweep, as multiples of one replica's concurrency at
    /// capacity (default 16 steps from 1/4 to 4, geometric).
    pub concurrency_multiples: Vec<f64>,
    /// How often the utilisation policy's metrics are collected (default 15 s, the
    /// Kubernetes metrics server's resolution).
    #[serde(with = "crate::policy::secs")]
    pub utilization_scrape: Duration,
    /// How often Ray Serve's metrics are collected (default 10 s, its
    /// `metrics_interval_s`).
    #[serde(with = "crate::policy::secs")]
    pub ongoing_scrape: Duration,
    /// The replica range every policy gets.
    pub bounds: Bounds,
}

impl Default for CompareConfig {
    fn default() -> Self {
        CompareConfig {
            goal: 0.99,
            utilization_targets: (1..=9).map(|i| i as f64 / 10.0).collect(),
            concurrency_multiples: (0..16)
                .map(|i| 0.25 * 16f64.powf(i as f64 / 15.0))
                .collect(),
            utilization_scrape: Duration::from_secs(15),
            ongoing_scrape: Duration::from_secs(10),
            bounds: Bounds::default(),
        }
    }
}

/// All runs on one trace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// The trace's name.
    pub trace: String,
    /// The goal the hand-tuned targets had to meet.
    pub goal: f64,
    /// Every run, sweeps included.
    pub runs: Vec<PolicyRun>,
}

impl Comparison {
    /// The runs a table shows: all but the sweep points.
    pub fn headline(&self) -> impl Iterator<Item = &PolicyRun> {
        self.runs.iter().filter(|r| r.role != Role::Sweep)
    }

    /// The capacity policy's run.
    pub fn capacity(&self) -> Option<&PolicyRun> {
        self.runs.iter().find(|r| r.role == Role::Capacity)
    }

    /// The best hand-tuned run of one kind (`utilization` or `concurrency`).
    pub fn hand_tuned(&self, kind: &str) -> Option<&PolicyRun> {
        self.runs
            .iter()
            .find(|r| r.role == Role::HandTuned && r.config.kind() == kind)
    }

    /// The capacity policy's replica-seconds over a hand-tuned run's, when both exist.
    pub fn ratio_to(&self, kind: &str) -> Option<f64> {
        let capacity = self.capacity()?;
        let tuned = self.hand_tuned(kind)?;
        Some(capacity.report.replica_seconds / tuned.report.replica_seconds)
    }

    /// A Markdown table of the headline runs.
    pub fn table(&self) -> String {
        let mut out = String::from(
            "| policy | role | within target | dropped | p99 ms | replica-seconds | mean replicas | peak | scale events |\n\
             |---|---|--:|--:|--:|--:|--:|--:|--:|\n",
        );
        for run in self.headline() {
            let r = &run.report;
            out.push_str(&format!(
                "| {} | {} | {:.2}% | {} | {:.1} | {:.0} | {:.2} | {} | {} |\n",
                r.policy,
                role_name(run.role),
                r.slo_attainment * 100.0,
                r.dropped,
                r.latency_ms,
                r.replica_seconds,
                r.mean_replicas,
                r.peak_replicas,
                r.scale_events
            ));
        }
        for kind in ["utilization", "concurrency"] {
            if self.hand_tuned(kind).is_none() {
                out.push_str(&format!(
                    "\nNo {kind} target in the sweep reached {:.1}%.\n",
                    self.goal * 100.0
                ));
            }
        }
        out
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Default => "defaults",
        Role::Sweep => "sweep",
        Role::HandTuned => "best hand-tuned",
        Role::Capacity => "from the profile",
    }
}

/// Runs every policy on `trace`. `capacity` is the capacity policy's configuration (from
/// the profile); the KPA sweep is scaled to its concurrency at capacity (or, without one,
/// to capacity × the latency target).
pub fn compare(
    sim: &Simulator,
    trace: &Trace,
    capacity: &CapacityConfig,
    config: &CompareConfig,
) -> crate::Result<Comparison> {
    let bounds = config.bounds;
    if !(config.goal > 0.0 && config.goal <= 1.0) {
        return Err(crate::Error::InvalidConfig {
            what: "goal",
            reason: format!("{} is not a share in (0, 1]", config.goal),
        });
    }
    if let Some(m) = config
        .concurrency_multiples
        .iter()
        .find(|m| !(m.is_finite() && **m > 0.0))
    {
        return Err(crate::Error::InvalidConfig {
            what: "concurrency_multiples",
            reason: format!("{m} is not a positive multiple"),
        });
    }
    let mut runs = Vec::new();
    let mut run = |role: Role, policy: PolicyConfig| -> crate::Result<()> {
        let policy = policy.with_bounds(bounds);
        let mut built = policy.build()?;
        // Each autoscaler sees metrics as its own pipeline collects them; the concurrency
        // and capacity policies at the simulator's interval.
        let report = match &policy {
            PolicyConfig::Utilization(_) => sim
                .with_scrape_interval(config.utilization_scrape)
                .run(trace, &mut built),
            PolicyConfig::OngoingRequests(_) => sim
                .with_scrape_interval(config.ongoing_scrape)
                .run(trace, &mut built),
            _ => sim.run(trace, &mut built),
        };
        runs.push(PolicyRun {
            role,
            config: policy,
            report,
        });
        Ok(())
    };
    run(Role::Capacity, PolicyConfig::Capacity(capacity.clone()))?;
    run(
        Role::Default,
        PolicyConfig::Utilization(UtilizationConfig::default()),
    )?;
    for &target in &config.utilization_targets {
        run(
            Role::Sweep,
            PolicyConfig::Utilization(UtilizationConfig::default().with_target(target)),
        )?;
    }
    run(
        Role::Default,
        PolicyConfig::Concurrency(ConcurrencyConfig::default()),
    )?;
    let per_replica = capacity
        .concurrency_at_capacity
        .unwrap_or(capacity.capacity_rps * capacity.latency_target_ms / 1000.0);
    for &m in &config.concurrency_multiples {
        let target = round3(per_replica * m);
        run(
            Role::Sweep,
            PolicyConfig::Concurrency(ConcurrencyConfig::default().with_target(target)),
        )?;
    }
    run(
        Role::Default,
        PolicyConfig::OngoingRequests(OngoingRequestsConfig::default()),
    )?;

    // The best hand-tuned point of each sweep: the fewest replica-seconds that met the goal.
    for kind in ["utilization", "concurrency"] {
        let best = runs
            .iter()
            .enumerate()
            .filter(|(_, r)| {
                r.role == Role::Sweep
                    && r.config.kind() == kind
                    && r.report.slo_attainment >= config.goal
            })
            .min_by(|(_, a), (_, b)| {
                a.report
                    .replica_seconds
                    .total_cmp(&b.report.replica_seconds)
            })
            .map(|(i, _)| i);
        if let Some(i) = best {
            let mut tuned = runs[i].clone();
            tuned.role = Role::HandTuned;
            runs.push(tuned);
        }
    }
    Ok(Comparison {
        trace: trace.name().to_string(),
        goal: config.goal,
        runs,
    })
}

fn round3(v: f64) -> f64 {
    if !(v.is_finite() && v > 0.0) {
        return v;
    }
    let scale = 10f64.powi(2 - v.abs().log10().floor() as i32);
    (v * scale).round() / scale
}
