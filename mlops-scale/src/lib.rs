//! Autoscaling for the mlops family: policies that turn observations into a replica
//! count, a deterministic simulator that replays request traces against replicas modelled
//! on a profile, and GPU packing.
//!
//! Autoscalers keyed on utilisation fail quietly for inference: a server that tops out at
//! 60% GPU utilisation never reaches a 70% target, so it never scales. With a profile in
//! hand (`mlops-profile`'s [`ProfileReport`](mlops_core::ProfileReport): each
//! configuration's capacity at the latency target) the target is known, and the
//! [`Capacity`](policy::Capacity) policy scales on a ratio of it.
//!
//! - [`policy`]: the [`Policy`](policy::Policy) trait and the Kubernetes HPA
//!   ([`Utilization`](policy::Utilization)), Knative's KPA
//!   ([`Concurrency`](policy::Concurrency)), Ray Serve
//!   ([`OngoingRequests`](policy::OngoingRequests)) and [`Capacity`](policy::Capacity);
//! - [`trace`]: request traces from files or generators;
//! - [`sim`]: the simulator and its report;
//! - [`compare`]: every policy on one trace, with the hand-tuned sweeps;
//! - [`packing`]: replicas onto the fewest GPUs under MPS;
//! - [`chart`]: demand, replicas and latency over time, as SVG;
//! - [`scaler`]: the [`Scaler`](scaler::Scaler) trait, the controller loop that applies a
//!   policy, and in-memory scalers and metrics;
//! - [`manifests`]: the Deployment, HPA, KEDA ScaledObject and Knative Service for a
//!   profile, as YAML;
//! - `keda` (feature `keda`): KEDA's external scaler, answering from live metrics and the
//!   capacity policy;
//! - `testkit` (feature `testkit`): the checks every policy passes.
//!
//! Guide: `docs/autoscaling.md` in the repository (the autoscaling guide); `docs/architecture.md` follows a
//! model from file to autoscaled endpoint, and `examples/quickstart.rs` runs it.

pub mod chart;
pub mod compare;
mod error;
#[cfg(feature = "keda")]
pub mod keda;
pub mod manifests;
pub mod packing;
pub mod policy;
pub mod scaler;
pub mod sim;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod trace;

pub use error::{Error, Result};
pub use policy::{Decision, Observation, Policy, PolicyConfig};
pub use sim::{ReplicaModel, SimReport, Simulator};
pub use trace::{Trace, TraceSpec};
