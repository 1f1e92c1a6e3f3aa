//! Model registry: versions with metrics, params, tags and lineage; aliases that move
//! atomically; artifact storage; where each model is served; and validation that gates
//! promotion.
//!
//! The pieces are traits with interchangeable backends, all held to one conformance suite
//! (`testkit`, feature `testkit`):
//!
//! | trait | backends |
//! |---|---|
//! | [`ModelRegistry`]: models, versions, aliases, audit log | [`InMemoryRegistry`], [`SqliteRegistry`] (the default), `PostgresRegistry` (feature `postgres`), `MlflowRegistry` (feature `mlflow`: an MLflow tracking server) |
//! | [`EndpointDirectory`]: live serving endpoints, by lease | the same three |
//! | [`ArtifactStore`]: model files | [`OpendalStore`]: local disk, memory, S3 (feature `s3`), HDFS (feature `hdfs`); `MlflowArtifacts` (feature `mlflow`: MLflow's artifact proxy) |
//!
//! [`Registry`] puts them together: register a model directory or file in one call,
//! download a version with every file verified, promote a candidate only if it passes
//! [`validation`], and find the endpoints serving a model id.
//!
//! ```no_run
//! # async fn demo() -> mlops_registry::Result<()> {
//! use mlops_registry::{Change, Expect, NewVersion, Registry};
//!
//! let registry = Registry::open("registry").await?;
//! let v = registry
//!     .register(
//!         "fraud",
//!         "model.onnx".as_ref(),
//!         NewVersion::new().with_metric("auc", 0.93).with_param("lr", "0.01"),
//!         &Change::by("ci"),
//!     )
//!     .await?;
//! registry
//!     .models()
//!     .set_alias("fraud", "staging", v.version, Expect::Any, &Change::by("ci"), None)
//!     .await?;
//! let staging = registry.resolve("fraud@staging").await?;
//! assert_eq!(staging.version, v.version);
//! # Ok(()) }
//! ```
//!
//! Guide: `docs/registry.md` in the repository (the registry guide); `docs/architecture.md` follows a
//! model from file to autoscaled endpoint, and `examples/quickstart.rs` runs it.

mod artifact;
pub mod contract;
mod endpoint;
mod error;
mod memory;
#[cfg(feature = "mlflow")]
mod mlflow;
mod model;
mod registry;
pub mod sql;
#[cfg(feature = "testkit")]
pub mod testkit;
mod time;
pub mod validation;
mod workflow;

pub use artifact::{
    ArtifactStore, ByteStream, CHUNK_SIZE, OpendalStore, StoredFile, check_store_path,
    version_prefix,
};
pub use endpoint::{Endpoint, EndpointDirectory, Lease, LiveEndpoint, Protocol};
pub use error::{Error, Result};
pub use memory::InMemoryRegistry;
#[cfg(feature = "mlflow")]
pub use mlflow::{MlflowArtifacts, MlflowRegistry};
pub use model::{
    AuditAction, AuditEvent, AuditQuery, Change, Compare, Expect, MAX_KEY_LEN, ModelQuery,
    ModelVersion, NewVersion, RegisteredModel, VersionQuery, VersionStatus, check_alias, check_key,
    check_name,
};
pub use registry::{ModelRegistry, ModelRegistryExt, VersionUpdate};
#[cfg(feature = "postgres")]
pub use sql::postgres::PostgresRegistry;
pub use sql::sqlite::SqliteRegistry;
pub use validation::{ValidationCase, ValidationPolicy, ValidationReport};
pub use workflow::{Downloaded, Heartbeat, Promotion, PromotionOutcome, Registry};

pub use mlops_core::{ModelRef, VersionSelector};
