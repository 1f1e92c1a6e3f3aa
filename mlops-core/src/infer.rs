//! The one inference interface the other crates share.
//!
//! A registry validates a candidate model by running it; a profiler drives load through a
//! model; neither should depend on the runtime that serves it. [`Infer`] is the small
//! interface between them: the runtime's batcher implements it, as can a remote client or
//! a test double.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::tensor::Tensor;

/// Any error an inference backend returns.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The future [`Infer::infer`] returns.
pub type InferFuture<'a> = Pin<Box<dyn Future<Output = Result<Vec<Tensor>, BoxError>> + Send + 'a>>;

/// Runs one request through a model: named input tensors in, named output tensors out.
///
/// Implementations must be safe to call concurrently; callers may issue many requests at
/// once.
pub trait Infer: Send + Sync {
    /// Runs `inputs` through the model and returns its outputs.
    fn infer(&self, inputs: Vec<Tensor>) -> InferFuture<'_>;
}

impl<T: Infer + ?Sized> Infer for Arc<T> {
    fn infer(&self, inputs: Vec<Tensor>) -> InferFuture<'_> {
        (**self).infer(inputs)
    }
}

impl<T: Infer + ?Sized> Infer for Box<T> {
    fn infer(&self, inputs: Vec<Tensor>) -> InferFuture<'_> {
        (**self).infer(inputs)
    }
}

/// One server replica of a model, as a client needs to reach it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Replica {
    /// Where: `host:port`.
    pub address: String,
    /// How to talk to it: `oip_grpc`, `oip_http`, or another protocol's name.
    pub protocol: String,
    /// The model's name on that server.
    pub model: String,
    /// The version it serves, when it says.
    pub version: Option<u64>,
}

/// The future [`ReplicaSource::replicas`] returns.
pub type ReplicasFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Vec<Replica>, BoxError>> + Send + 'a>>;

/// Where a model id (`name`, `name/7`, `name@production`) is served right now: the
/// registry's endpoint directory implements it, so a client needs only the model id.
pub trait ReplicaSource: Send + Sync {
    /// The live replicas serving `model_id`.
    fn replicas<'a>(&'a self, model_id: &'a str) -> ReplicasFuture<'a>;
}

impl<T: ReplicaSource + ?Sized> ReplicaSource for Arc<T> {
    fn replicas<'a>(&'a self, model_id: &'a str) -> ReplicasFuture<'a> {
        (**self).replicas(model_id)
    }
}
