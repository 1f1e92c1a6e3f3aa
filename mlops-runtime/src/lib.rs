//! Inference for the mlops family.
//!
//! An engineer receives a standardized model (an [`mlops_core::ModelManifest`]) and serves
//! it without model-specific code:
//!
//! - an [`InferenceRuntime`] loads a manifest into [`ModelSession`]s, one per model
//!   instance: ONNX Runtime (`OrtRuntime`, feature `ort`, on by default) on CPU or GPU,
//!   models written in Rust with candle (`CandleRuntime`, feature `candle`), and
//!   [`EchoRuntime`], always compiled, for tests;
//! - a [`Batcher`] queues requests for one model and stacks them into batches for its
//!   instances, each on its own OS thread, with Triton's semantics (maximum batch size,
//!   queue delay, preferred sizes, a bounded queue, per-request deadlines);
//! - a [`ModelServer`] holds many models by name and version, loads, unloads and hot-swaps
//!   them, and reports per-model statistics;
//! - [`protocol`] answers the Open Inference Protocol's questions over a server, with
//!   the repository extension over a [`protocol::Repository`];
//! - `http` (feature `http`) serves it over the Open Inference Protocol's REST API, with
//!   the binary tensor extension, Triton's configuration and statistics, and Prometheus
//!   metrics; `grpc` (feature `grpc`) over its gRPC API;
//! - `client` (feature `client`) infers by model id across the replicas a registry lists.
//!
//! Inference never runs on the async executor: callers await an answer that an instance
//! thread sends back.
//!
//! Guide: `docs/serving.md` in the repository (the serving guide); `docs/architecture.md` follows a
//! model from file to autoscaled endpoint, and `examples/quickstart.rs` runs it.

mod batcher;
#[cfg(feature = "candle")]
mod candle;
#[cfg(feature = "client")]
pub mod client;
mod echo;
mod error;
#[cfg(feature = "grpc")]
pub mod grpc;
#[cfg(feature = "http")]
pub mod http;
mod limits;
#[cfg(feature = "ort")]
mod onnx;
pub mod protocol;
mod server;
mod session;
mod stats;

pub use batcher::{Batcher, BatcherConfig};
#[cfg(feature = "candle")]
pub use candle::{ArchitectureFn, CandleModel, CandleRuntime, CandleSession, CandleWeights};
pub use echo::{EchoRuntime, EchoSession};
pub use error::{BoxError, Code, Error, Result};
pub use limits::ConnectionLimits;
#[cfg(feature = "ort")]
pub use onnx::{
    ExecutionProvider, OptimizationLevel, OrtOptions, OrtRuntime, OrtSession, library_path,
};
pub use server::{ModelServer, ModelSpec, RepositoryReport};
pub use session::{Device, InferenceRuntime, ModelSession};
pub use stats::StatsSnapshot;
