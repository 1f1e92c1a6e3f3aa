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
