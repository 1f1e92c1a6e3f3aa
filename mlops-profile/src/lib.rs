//! Performance testing for the mlops family: how much load a model takes under a given
//! hardware budget, and the cheapest budget that meets a latency target.
//!
//! - [`load`] drives load at a [`Target`] (the in-process server, or a remote Open
//!   Inference Protocol endpoint over HTTP JSON, HTTP binary or gRPC): closed loop at a
//!   fixed concurrency, or open loop at a constant or Poisson rate, in measurement windows
//!   until perf_analyzer's stability rule holds, with percentiles from an HDR histogram;
//! - [`input`] makes the requests: the model's bundled golden input, random data shaped
//!   from its signature, or a file of requests;
//! - [`launch`] starts a server as a child process under a [`Budget`] (CPU affinity,
//!   intra-op threads, a memory limit, a GPU and its MPS share), waits until it is ready,
//!   and always tears it down;
//! - [`monitor`] samples the server's CPU and memory, the host's CPU, and the GPU through
//!   NVML (feature `nvml`);
//! - [`search`] walks a space of [`ServingConfig`]s, by brute force or by hill climbing,
//!   and [`Profiler`] measures each configuration's capacity, recommends the cheapest way
//!   to serve a demand, and confirms it;
//! - [`report`] writes the [`ProfileReport`] as JSON, a Markdown table and SVG charts;
//! - [`tuned`] serves as a report recommends: [`TunedServing`](tuned::TunedServing) gives
//!   the batcher, instances, threads and device, for the model it was measured on.
//!
//! The report types live in `mlops-core` ([`mlops_core::profile`]) so that `mlops-scale`
//! reads a profile without this crate.
//!
//! Guide: `docs/profiling.md` in the repository (the profiling guide); `docs/architecture.md` follows a
//! model from file to autoscaled endpoint, and `examples/quickstart.rs` runs it.

mod error;
pub mod input;
pub mod launch;
pub mod load;
pub mod monitor;
mod profiler;
pub mod report;
pub mod search;
pub mod server;
pub mod target;
pub mod tuned;
mod wire;

pub use error::{Error, Result};
pub use input::{InputOptions, RequestSet};
pub use launch::{Budget, ServerCommand, ServerProcess};
pub use load::{LoadConfig, LoadGenerator, LoadMode};
pub use mlops_core::profile::{
    ComputeDevice, ConfigProfile, ConfigStatus, CostModel, Measurement, ProfileReport,
    Recommendation, ServingConfig,
};
pub use profiler::{Profiler, ProfilerConfig, Protocol, capacity_of, recommend};
pub use target::{
    GrpcTarget, HttpEncoding, HttpTarget, InferTarget, Prepared, ServerTarget, Target, TargetError,
};
