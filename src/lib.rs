//! mlops: from a trained model to efficient, autoscaled serving.
//!
//! This crate gathers the family under one dependency; each part is its own crate and can
//! be used alone. `cargo run --release --example quickstart` runs the whole lifecycle;
//! `examples/service.rs` composes the crates in a service; the guides are in `docs/`
//! (architecture, registry, serving, profiling, autoscaling, performance, comparison).
//!
//! | module | crate | owns |
//! |---|---|---|
//! | [`core`] | `mlops-core` | model formats, manifests, signatures, tensors, errors |
//! | `registry` | `mlops-registry` | versions, aliases, artifacts, endpoints, validation (feature `registry`) |
//! | `runtime` | `mlops-runtime` | inference sessions, batching, serving (feature `runtime`) |
//! | `profile` | `mlops-profile` | load testing and configuration search (feature `profile`) |
//! | `scale` | `mlops-scale` | autoscaling policies, simulator, backends, manifests (feature `scale`) |
//! | `serving` | this crate | the repository extension over a registry (features `registry`, `runtime`) |

pub use mlops_core as core;

#[cfg(feature = "profile")]
pub use mlops_profile as profile;
#[cfg(feature = "registry")]
pub use mlops_registry as registry;
#[cfg(any(feature = "runtime", feature = "client"))]
pub use mlops_runtime as runtime;
#[cfg(feature = "scale")]
pub use mlops_scale as scale;
#[cfg(all(feature = "registry", feature = "runtime"))]
pub mod serving;
