//! The loop that asks a policy and applies its answer.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{MetricsSource, ReplicaState, Scaler};
use crate::policy::{Bounds, Decision, Metrics, Observation, Policy};

/// How the controller applies decisions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ControllerConfig {
    /// Log what it would do and change nothing.
    pub dry_run: bool,
    /// The replica range, whatever the policy asks.
    pub bounds: Bounds,
    /// The wait before retrying a failed set (default 1 s)…
    #[serde(with = "crate::policy::secs")]
    pub backoff: Duration,
    /// …doubled after each failure up to this (default 60 s).
    #[serde(with = "crate::policy::secs")]
    pub max_backoff: Duration,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            dry_run: false,
            bounds: Bounds::default(),
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
        }
    }
}

/// What one step did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Applied {
    /// The count stays.
    Unchanged,
    /// The count was set.
    Set {
        /// Replicas asked for before.
        from: u32,
        /// Replicas asked for now.
        to: u32,
    },
    /// A dry run: the count it would have set.
    DryRun {
        /// Replicas asked for before.
        from: u32,
        /// Replicas it would ask for.
        to: u32,
    },
    /// The set failed; it is retried after `retry_in`.
    Failed {
        /// The count it tried to set.
        to: u32,
        /// Why it failed.
        error: String,
        /// The wait before the next try.
        #[serde(with = "crate::policy::secs")]
        retry_in: Duration,
    },
    /// Backing off after a failed set: not tried this step.
    Waiting {
        /// The count it will try to set.
        to: u32,
        /// The time left before the next try.
        #[serde(with = "crate::policy::secs")]
        retry_in: Duration,
    },
    /// The replicas could not be read: nothing was decided.
    NoState {
        /// Why.
        error: String,
    },
}

/// One step: what the scaler reported, what the policy decided, what was done.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// When, on the controller's clock.
    #[serde(with = "crate::policy::secs")]
    pub at: Duration,
    /// The replicas as read before deciding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<ReplicaState>,
    /// The policy's answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    /// What was done with it.
    pub applied: Applied,
}

/// Asks a policy at its period, with the latest metrics and the scaler's replicas, and
/// applies the answer within its bounds.
///
/// A failed scrape keeps the last metrics, which then age until the policy holds on them
/// as stale; metrics are stamped with the controller's clock when collected. A failed set
/// is retried after a backoff that doubles up to its maximum, and the policy keeps
/// deciding meanwhile (the retry sets its latest answer).
pub struct Controller<P, M, S> {
    policy: P,
    source: M,
    scaler: S,
    config: ControllerConfig,
    metrics: Option<Metrics>,
    backoff: Duration,
    retry_at: Option<Duration>,
    /// In a dry run, the count it would have set, so the policy sees its own answers.
    dry_desired: Option<u32>,
}

impl<P: Policy, M: MetricsSource, S: Scaler> Controller<P, M, S> {
    /// A controller with the default settings.
    pub fn new(policy: P, source: M, scaler: S) -> Self {
        let config = ControllerConfig::default();
        Controller {
            policy,
            source,
            scaler,
            backoff: config.backoff,
            config,
            metrics: None,
            retry_at: None,
            dry_desired: None,
        }
    }

    /// The same with other settings.
    pub fn with_config(mut self, config: ControllerConfig) -> Self {
        self.backoff = config.backoff;
        self.config = config;
        self
    }

    /// How often to step: the policy's period.
    pub fn period(&self) -> Duration {
        self.policy.period()
    }

    /// The scaler it drives.
    pub fn scaler(&self) -> &S {
        &self.scaler
    }

    /// The last metrics collected (stamped with the step's clock), if any.
    pub fn metrics(&self) -> Option<&Metrics> {
        self.metrics.as_ref()
    }

    /// One step at `now` (any clock, the same at every call).
    pub async fn step(&mut self, now: Duration) -> Step {
        match self.source.scrape().await {
            Ok(mut metrics) => {
                metrics.at = now;
                self.metrics = Some(metrics);
            }
            Err(e) => tracing::warn!(
                source = %self.source.name(),
                error = %e,
                "scrape failed: deciding on the last metrics, which age until the policy holds"
            ),
        }
        let state = match self.scaler.state().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(scaler = %self.scaler.name(), error = %e, "cannot read the replicas: holding");
                return Step {
                    at: now,
                    state: None,
                    decision: None,
                    applied: Applied::NoState {
                        error: e.to_string(),
                    },
                };
            }
        };
        let desired = match (self.config.dry_run, self.dry_desired) {
            (true, Some(d)) => d,
            _ => state.desired,
        };
        let observation = Observation {
            ready: state.ready,
            starting: state.starting,
            desired,
            metrics: self.metrics.clone(),
        };
        let decision = self.policy.decide(now, &observation);
        let to = self.config.bounds.clamp(decision.replicas);
        let applied = self.apply(now, desired, to, &decision).await;
        Step {
            at: now,
            state: Some(state),
            decision: Some(decision),
            applied,
        }
    }

    async fn apply(&mut self, now: Duration, from: u32, to: u32, decision: &Decision) -> Applied {
        if to == from {
            self.retry_at = None;
            self.backoff = self.config.backoff;
            return Applied::Unchanged;
        }
        if self.config.dry_run {
            tracing::info!(from, to, reason = %decision.reason, "dry run: would scale");
            self.dry_desired = Some(to);
            return Applied::DryRun { from, to };
        }
        if let Some(at) = self.retry_at
            && now < at
        {
            return Applied::Waiting {
                to,
                retry_in: at - now,
            };
        }
        match self.scaler.set_replicas(to).await {
            Ok(()) => {
                tracing::info!(from, to, reason = %decision.reason, "scaled");
                self.retry_at = None;
                self.backoff = self.config.backoff;
                Applied::Set { from, to }
            }
            Err(e) => {
                let retry_in = self.backoff;
                self.retry_at = Some(now + retry_in);
                self.backoff = (self.backoff * 2).min(self.config.max_backoff);
                tracing::warn!(
                    scaler = %self.scaler.name(),
                    to,
                    error = %e,
                    retry_in_s = retry_in.as_secs_f64(),
                    "set failed"
                );
                Applied::Failed {
                    to,
                    error: e.to_string(),
                    retry_in,
                }
            }
        }
    }

    /// Steps every period until `shutdown` completes, on tokio's clock from now; returns
    /// the steps that changed something (or failed).
    pub async fn run(&mut self, shutdown: impl std::future::Future<Output = ()>) -> Vec<Step> {
        let start = tokio::time::Instant::now();
        let mut ticks = tokio::time::interval(self.period());
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut notable = Vec::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => return notable,
                _ = ticks.tick() => {
                    let step = self.step(start.elapsed()).await;
                    if step.applied != Applied::Unchanged {
                        notable.push(step);
                    }
                }
            }
        }
    }
}
