//! Where each model is served: endpoints announced with a heartbeat, and found by model id.

use std::sync::Arc;
use std::time::Duration;

use mlops_core::{ModelRef, VersionSelector};

use super::Registry;
use crate::endpoint::{Endpoint, Lease, LiveEndpoint};
use crate::error::{Error, Result};

impl Registry {
    /// The live endpoints serving a model id: every replica of `name`; those serving
    /// version 7 for `name/7`; those serving the alias's current version for
    /// `name@alias`.
    pub async fn endpoints_for(&self, reference: &str) -> Result<Vec<LiveEndpoint>> {
        let parsed = ModelRef::parse(reference).map_err(|e| Error::invalid(e.to_string()))?;
        let version = match &parsed.selector {
            VersionSelector::Latest => None,
            VersionSelector::Version(v) => Some(*v),
            VersionSelector::Alias(_) => Some(self.models.resolve(&parsed).await?.version),
        };
        self.endpoints.endpoints(&parsed.name, version).await
    }

    /// Registers `endpoint` and keeps its lease alive from a background task, renewing
    /// every third of `ttl` (and registering again if the lease was lost, say after a
    /// network partition). Dropping or [`stop`](Heartbeat::stop)ping the handle ends it.
    pub async fn announce(&self, endpoint: Endpoint, ttl: Duration) -> Result<Heartbeat> {
        let lease = self.endpoints.register_endpoint(&endpoint, ttl).await?;
        let directory = self.endpoints.clone();
        let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
        let current = Arc::new(std::sync::Mutex::new(lease.clone()));
        let shared = current.clone();
        let task = tokio::spawn(async move {
            let period = ttl / 3;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(period) => {}
                    _ = stop_rx.changed() => break,
                }
                let id = lock(&shared).id.clone();
                let renewed = match directory.renew(&id, ttl).await {
                    Ok(l) => Ok(l),
                    Err(Error::NotFound { .. }) => {
                        directory.register_endpoint(&endpoint, ttl).await
                    }
                    Err(e) => Err(e),
                };
                // A failed renewal is retried at the next tick; the lease may still be live.
                match renewed {
                    Ok(l) => *lock(&shared) = l,
                    Err(e) => {
                        tracing::warn!(error = %e, "endpoint lease renewal failed: retrying at the next beat")
                    }
                }
            }
            let id = lock(&shared).id.clone();
            let _ = directory.deregister(&id).await;
        });
        Ok(Heartbeat {
            lease: current,
            stop: Some(stop_tx),
            task: Some(task),
        })
    }
}

fn lock(m: &std::sync::Mutex<Lease>) -> std::sync::MutexGuard<'_, Lease> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Keeps an endpoint's lease alive; see [`Registry::announce`].
#[derive(Debug)]
pub struct Heartbeat {
    lease: Arc<std::sync::Mutex<Lease>>,
    stop: Option<tokio::sync::watch::Sender<bool>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Heartbeat {
    /// The current lease.
    pub fn lease(&self) -> Lease {
        lock(&self.lease).clone()
    }

    /// Stops renewing and deregisters the endpoint, waiting until it is gone.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        // The task deregisters on its own once told to stop.
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
    }
}

/// The client side of the endpoint directory: the live replicas of a model id.
impl mlops_core::ReplicaSource for Registry {
    fn replicas<'a>(&'a self, model_id: &'a str) -> mlops_core::ReplicasFuture<'a> {
        Box::pin(async move {
            let live = self.endpoints_for(model_id).await?;
            Ok(live
                .into_iter()
                .map(|e| mlops_core::Replica {
                    address: e.endpoint.address,
                    protocol: e.endpoint.protocol.as_str().to_owned(),
                    model: e.endpoint.model,
                    version: e.endpoint.version,
                })
                .collect())
        })
    }
}
