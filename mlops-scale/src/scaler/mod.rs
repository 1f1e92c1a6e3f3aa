//! Scalers: what sets the replica count of a real deployment, and the controller loop that
//! ties a policy, a metrics source and a scaler together.
//!
//! A [`Scaler`] reads the replicas (asked for, ready, starting) and sets the count; a
//! [`MetricsSource`] collects [`Metrics`]; the [`Controller`] asks the policy at its period
//! and applies the answer within its bounds, retries a failed set with backoff, and in a
//! dry run only says what it would do. [`MemoryScaler`] and [`MemorySource`] are always
//! compiled: the test doubles for other crates, and the reference every scaler's tests
//! compare against (`testkit::scaler_conformance`). [`PrometheusSource`] reads our
//! servers' `/metrics` pages (Triton's `nv_inference_*` series) and turns two scrapes into
//! a request rate, a mean in-flight count (Little's law over the request-duration counter)
//! and the queue. [`Local`] (feature `local`) grows and shrinks the instances of a model in
//! a `ModelServer` of this process; [`Kubernetes`] (feature `kube`) sets a Deployment's
//! replicas through the scale subresource.

mod controller;
#[cfg(feature = "kube")]
mod kubernetes;
#[cfg(feature = "local")]
mod local;
mod prometheus;

use std::sync::Mutex;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use controller::{Applied, Controller, ControllerConfig, Step};
#[cfg(feature = "kube")]
pub use kubernetes::Kubernetes;
#[cfg(feature = "local")]
pub use local::Local;
pub use prometheus::{PrometheusSource, Totals};

use crate::error::{Error, Result};
use crate::policy::Metrics;

/// The replicas of a deployment, as a scaler sees them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaState {
    /// Replicas asked for.
    pub desired: u32,
    /// Replicas serving traffic.
    pub ready: u32,
    /// Replicas started and not ready yet.
    pub starting: u32,
}

/// Sets the replica count of something that serves a model.
#[async_trait]
pub trait Scaler: Send + Sync {
    /// A short name for logs and errors.
    fn name(&self) -> String;

    /// The replicas now.
    async fn state(&self) -> Result<ReplicaState>;

    /// Asks for `replicas`. Returns once the request is accepted, not once they are ready.
    async fn set_replicas(&self, replicas: u32) -> Result<()>;
}

#[async_trait]
impl<S: Scaler + ?Sized> Scaler for std::sync::Arc<S> {
    fn name(&self) -> String {
        (**self).name()
    }
    async fn state(&self) -> Result<ReplicaState> {
        (**self).state().await
    }
    async fn set_replicas(&self, replicas: u32) -> Result<()> {
        (**self).set_replicas(replicas).await
    }
}

#[async_trait]
impl<S: Scaler + ?Sized> Scaler for &S {
    fn name(&self) -> String {
        (**self).name()
    }
    async fn state(&self) -> Result<ReplicaState> {
        (**self).state().await
    }
    async fn set_replicas(&self, replicas: u32) -> Result<()> {
        (**self).set_replicas(replicas).await
    }
}

/// Collects the metrics a policy decides on.
#[async_trait]
pub trait MetricsSource: Send + Sync {
    /// A short name for logs and errors.
    fn name(&self) -> String;

    /// The latest metrics. Their `at` need not be set: the controller stamps what it
    /// collects with its own clock.
    async fn scrape(&self) -> Result<Metrics>;

    /// The servers the last scrape read, where the source counts them (a scaler that does
    /// not own the replicas, such as KEDA's, learns them this way).
    fn replicas_seen(&self) -> Option<u32> {
        None
    }
}

#[async_trait]
impl<M: MetricsSource + ?Sized> MetricsSource for std::sync::Arc<M> {
    fn name(&self) -> String {
        (**self).name()
    }
    async fn scrape(&self) -> Result<Metrics> {
        (**self).scrape().await
    }
    fn replicas_seen(&self) -> Option<u32> {
        (**self).replicas_seen()
    }
}

#[async_trait]
impl<M: MetricsSource + ?Sized> MetricsSource for &M {
    fn name(&self) -> String {
        (**self).name()
    }
    async fn scrape(&self) -> Result<Metrics> {
        (**self).scrape().await
    }
    fn replicas_seen(&self) -> Option<u32> {
        (**self).replicas_seen()
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere while holding the lock leaves plain data behind: keep using it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A deployment in memory: replicas asked for become ready when [`MemoryScaler::settle`]
/// says so, and a set can be made to fail, to test what drives it.
#[derive(Debug, Default)]
pub struct MemoryScaler {
    state: Mutex<MemoryState>,
}

#[derive(Debug, Default)]
struct MemoryState {
    desired: u32,
    ready: u32,
    fail_next: u32,
    sets: Vec<u32>,
}

impl MemoryScaler {
    /// `replicas` asked for and ready.
    pub fn new(replicas: u32) -> Self {
        MemoryScaler {
            state: Mutex::new(MemoryState {
                desired: replicas,
                ready: replicas,
                ..MemoryState::default()
            }),
        }
    }

    /// Every replica asked for is ready (and removed ones are gone).
    pub fn settle(&self) {
        let mut s = lock(&self.state);
        s.ready = s.desired;
    }

    /// The next `n` sets fail with a temporary error.
    pub fn fail_next(&self, n: u32) {
        lock(&self.state).fail_next = n;
    }

    /// Every count set so far, in order.
    pub fn history(&self) -> Vec<u32> {
        lock(&self.state).sets.clone()
    }
}

#[async_trait]
impl Scaler for MemoryScaler {
    fn name(&self) -> String {
        "memory".to_string()
    }

    async fn state(&self) -> Result<ReplicaState> {
        let s = lock(&self.state);
        // Removed replicas leave at once; added ones start until settled.
        let ready = s.ready.min(s.desired);
        Ok(ReplicaState {
            desired: s.desired,
            ready,
            starting: s.desired - ready,
        })
    }

    async fn set_replicas(&self, replicas: u32) -> Result<()> {
        let mut s = lock(&self.state);
        if s.fail_next > 0 {
            s.fail_next -= 1;
            return Err(Error::Scaler {
                scaler: "memory".to_string(),
                reason: format!("set to {replicas} refused (injected failure)"),
                temporary: true,
            });
        }
        s.desired = replicas;
        s.ready = s.ready.min(replicas);
        s.sets.push(replicas);
        Ok(())
    }
}

/// Metrics set by hand: a test double, and a way to feed metrics collected elsewhere.
#[derive(Debug, Default)]
pub struct MemorySource {
    metrics: Mutex<Option<Metrics>>,
}

impl MemorySource {
    /// No metrics yet.
    pub fn new() -> Self {
        MemorySource::default()
    }

    /// What the next scrapes return.
    pub fn set(&self, metrics: Metrics) {
        *lock(&self.metrics) = Some(metrics);
    }

    /// Scrapes fail from now on, as an endpoint that went down.
    pub fn clear(&self) {
        *lock(&self.metrics) = None;
    }
}

#[async_trait]
impl MetricsSource for MemorySource {
    fn name(&self) -> String {
        "memory".to_string()
    }

    async fn scrape(&self) -> Result<Metrics> {
        lock(&self.metrics).clone().ok_or_else(|| Error::Metrics {
            source_name: "memory".to_string(),
            reason: "no metrics set".to_string(),
        })
    }
}
