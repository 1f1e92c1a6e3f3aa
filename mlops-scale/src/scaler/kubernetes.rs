//! A Deployment's replicas, through the Kubernetes scale subresource (feature `kube`).

use async_trait::async_trait;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams};

use super::{ReplicaState, Scaler};
use crate::error::{Error, Result};

/// Scales one Deployment as `kubectl scale` and the HPA do: the count is set through the
/// `scale` subresource (a merge patch of `spec.replicas`, so the rest of the Deployment is
/// left alone), and the ready replicas are read from the Deployment's status.
///
/// Its service account needs `get` on `deployments` and `patch` on `deployments/scale` in
/// the namespace. Do not point it at a Deployment an HPA or KEDA also scales: each would
/// undo the other.
#[derive(Clone)]
pub struct Kubernetes {
    api: Api<Deployment>,
    namespace: String,
    name: String,
}

impl std::fmt::Debug for Kubernetes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kubernetes")
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Kubernetes {
    /// Scales the Deployment `name` in `namespace` with this client.
    pub fn new(client: kube::Client, namespace: &str, name: impl Into<String>) -> Self {
        Kubernetes {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_string(),
            name: name.into(),
        }
    }

    /// The same with the client the environment configures (in a pod: its service
    /// account; elsewhere: the kubeconfig).
    pub async fn from_env(namespace: &str, name: impl Into<String>) -> Result<Self> {
        let name = name.into();
        let client = kube::Client::try_default()
            .await
            .map_err(|e| Error::Scaler {
                scaler: format!("kubernetes {namespace}/{name}"),
                reason: format!("no Kubernetes client configuration: {e}"),
                temporary: false,
            })?;
        Ok(Self::new(client, namespace, name))
    }

    fn failed(&self, what: &str, e: kube::Error) -> Error {
        // Conflicts, throttling, server-side failures and a connection that broke pass; a
        // missing Deployment, a refused permission, bad credentials or configuration, and
        // an answer that is not a Deployment do not.
        let temporary = match &e {
            kube::Error::Api(status) => matches!(status.code, 409 | 429 | 500..=599),
            kube::Error::HyperError(_) | kube::Error::Service(_) => true,
            _ => false,
        };
        Error::Scaler {
            scaler: self.name(),
            reason: format!("{what}: {e}"),
            temporary,
        }
    }
}

#[async_trait]
impl Scaler for Kubernetes {
    fn name(&self) -> String {
        format!("kubernetes deployment {}/{}", self.namespace, self.name)
    }

    async fn state(&self) -> Result<ReplicaState> {
        let deployment = self
            .api
            .get(&self.name)
            .await
            .map_err(|e| self.failed("cannot read the deployment", e))?;
        // A Deployment that leaves the count out runs one.
        let desired = deployment.spec.replicas.unwrap_or(1);
        let status = deployment.status.unwrap_or_default();
        let ready = status.ready_replicas.unwrap_or(0);
        let desired = u32::try_from(desired).unwrap_or(0);
        let ready = u32::try_from(ready).unwrap_or(0);
        Ok(ReplicaState {
            desired,
            ready: ready.min(desired),
            starting: desired.saturating_sub(ready),
        })
    }

    async fn set_replicas(&self, replicas: u32) -> Result<()> {
        let patch = serde_json::json!({ "spec": { "replicas": replicas } });
        let params = PatchParams::default();
        let scale = self
            .api
            .patch_scale(&self.name, &params, &Patch::Merge(&patch))
            .await
            .map_err(|e| self.failed(&format!("cannot set {replicas} replicas"), e))?;
        let set = scale.spec.and_then(|s| s.replicas);
        if set != i32::try_from(replicas).ok() {
            return Err(Error::Scaler {
                scaler: self.name(),
                reason: format!("asked for {replicas} replicas, the API server answered {set:?}"),
                temporary: true,
            });
        }
        Ok(())
    }
}
