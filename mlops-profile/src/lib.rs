//! Performance testing for the mlops family.
//!
//! This crate will drive load against a served model at rising concurrency or request
//! rate (closed and open loop, as perf_analyzer does), watch CPU, GPU and memory, and
//! search serving configurations (CPU or GPU, GPU fraction under MPS, batch size,
//! instances) for the cheapest one that meets a latency target. Its profiles give the
//! capacity figures that `mlops-scale` scales on.
//!
//! Nothing is implemented yet; see the project's issue tracker.
