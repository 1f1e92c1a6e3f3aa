//! The shared vocabulary of the mlops family.
//!
//! A researcher hands over only a model, in whatever standard format the framework
//! produced; this crate learns everything else from it:
//!
//! - [`detect`] tells the [`ModelFormat`] by content: ONNX, TensorRT plan, TensorFlow
//!   SavedModel, safetensors, an MLflow model directory, TorchScript;
//! - [`ModelManifest::from_path`] reads the model's [`Signature`] (its inputs and outputs as
//!   [`TensorSpec`]s), lists its files with size and sha256, and keeps its metrics, params,
//!   tags and [`Lineage`]; manifests read and write MLflow's `MLmodel` files;
//! - [`Tensor`] carries request and response data as little-endian bytes, with typed views
//!   and the batch concatenation and split a batcher needs;
//! - [`ModelRef`] names a registered model version (`name`, `name/7`, `name@production`),
//!   and [`Infer`] is the inference interface a registry or profiler drives a model through;
//! - [`ProfileReport`] is what a performance profile found: each [`ServingConfig`]'s
//!   capacity at a latency target and the cheapest way to serve a demand;
//! - [`Error`] is the one error type, naming the file or tensor at fault.
//!
//! ```no_run
//! use mlops_core::ModelManifest;
//!
//! let manifest = ModelManifest::from_path("testdata/mlp.onnx".as_ref())?;
//! let signature = manifest.signature.as_ref().expect("ONNX models declare one");
//! println!("{} takes {:?}", manifest.name, signature.inputs);
//! # Ok::<(), mlops_core::Error>(())
//! ```
//!
//! Guide: `docs/architecture.md` in the repository follows a model from file to
//! autoscaled endpoint through every crate; `examples/quickstart.rs` runs it.

mod dtype;
mod error;
pub mod format;
pub mod infer;
mod manifest;
pub mod mlflow;
pub mod profile;
mod reference;
mod signature;
mod tensor;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use dtype::{DataType, Element, UnknownDataType};
pub use error::{Error, Result};
pub use format::{ModelFormat, detect, detect_bytes};
pub use infer::{BoxError, Infer, InferFuture, Replica, ReplicaSource, ReplicasFuture};
pub use manifest::{FileEntry, Lineage, MLMODEL_METADATA_KEY, ModelEntry, ModelManifest};
pub use profile::{
    ComputeDevice, ConfigProfile, ConfigStatus, CostModel, Measurement, ProfileReport,
    Recommendation, ServingConfig,
};
pub use reference::{MAX_NAME_LEN, ModelRef, VersionSelector, validate_alias, validate_model_name};
pub use signature::{Dim, Signature, TensorSpec};
pub use tensor::Tensor;
