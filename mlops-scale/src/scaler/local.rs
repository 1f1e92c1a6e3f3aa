//! Instances of a model in a [`ModelServer`] of this process.

use std::sync::Arc;

use async_trait::async_trait;
use mlops_runtime::ModelServer;

use super::{ReplicaState, Scaler};
use crate::error::{Error, Result};

/// Grows and shrinks the instances of one model in a running [`ModelServer`]: a replica is
/// an instance (a session on its own thread) behind the model's one queue.
///
/// Instances are added to and retired from the running batcher
/// ([`ModelServer::set_instances`]), so nothing queued or running is dropped and the
/// model's counters (and so the metrics its `/metrics` page shows) carry on. A set returns
/// once the new sessions are loaded: the replicas it reports are always ready. Instances
/// share the machine's cores: a profile measured with one instance per core (`cpu1-…`)
/// gives the capacity of each as long as there are cores for them; set the bounds' maximum
/// to the cores (or GPU share) the model may take.
#[derive(Clone)]
pub struct Local {
    server: Arc<ModelServer>,
    model: String,
    version: Option<u64>,
}

impl Local {
    /// Scales `model` (its latest version) in `server`. The model must be served.
    pub fn new(server: Arc<ModelServer>, model: impl Into<String>) -> Result<Self> {
        let model = model.into();
        server.get(&model, None).map_err(|e| Error::Scaler {
            scaler: format!("local {model}"),
            reason: e.to_string(),
            temporary: false,
        })?;
        Ok(Local {
            server,
            model,
            version: None,
        })
    }

    /// Scales this version instead of the latest.
    pub fn with_version(mut self, version: u64) -> Self {
        self.version = Some(version);
        self
    }

    fn failed(&self, e: mlops_runtime::Error) -> Error {
        Error::Scaler {
            scaler: self.name(),
            temporary: e.is_temporary(),
            reason: e.to_string(),
        }
    }
}

impl std::fmt::Debug for Local {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Local")
            .field("model", &self.model)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Scaler for Local {
    fn name(&self) -> String {
        match self.version {
            Some(v) => format!("local {}/{v}", self.model),
            None => format!("local {}", self.model),
        }
    }

    async fn state(&self) -> Result<ReplicaState> {
        let batcher = self
            .server
            .get(&self.model, self.version)
            .map_err(|e| self.failed(e))?;
        let n = u32::try_from(batcher.instances()).unwrap_or(u32::MAX);
        Ok(ReplicaState {
            desired: n,
            ready: n,
            starting: 0,
        })
    }

    /// Loads the new instances' sessions on a blocking thread. Zero is refused: a model in
    /// a server keeps one instance (unload it to stop serving it).
    async fn set_replicas(&self, replicas: u32) -> Result<()> {
        if replicas == 0 {
            return Err(Error::Scaler {
                scaler: self.name(),
                reason: "a served model keeps at least one instance".to_string(),
                temporary: false,
            });
        }
        let (server, model, version) = (Arc::clone(&self.server), self.model.clone(), self.version);
        let resized = tokio::task::spawn_blocking(move || {
            server.set_instances(&model, version, replicas as usize)
        })
        .await
        .map_err(|e| Error::Scaler {
            scaler: self.name(),
            reason: format!("the loading thread failed: {e}"),
            temporary: true,
        })?;
        resized.map(|_| ()).map_err(|e| self.failed(e))
    }
}
