//! Inference for the mlops family.
//!
//! This crate will own the performance core of serving:
//!
//! - a small runtime trait that loads an [`mlops_core::ModelManifest`] into a session
//!   which runs batches of [`mlops_core::Tensor`]s, checked against the model's
//!   [`mlops_core::Signature`];
//! - ONNX Runtime (`ort`) and `candle` sessions on CPU and GPU;
//! - a dynamic batcher with Triton's semantics (maximum batch size, queue delay, bounded
//!   queue, per-request deadlines) feeding model instances on their own OS threads;
//! - a multi-model server with versions and hot swap, and an Open Inference Protocol
//!   (KServe V2) HTTP/gRPC front end with Prometheus metrics.
//!
//! Nothing is implemented yet; see the project's issue tracker.
