//! Model registry for the mlops family.
//!
//! This crate will own what connects the researcher and the engineer:
//!
//! - registered models and their versions, with metrics, params, tags and lineage
//!   (run id, dataset, parent version), each version described by an
//!   [`mlops_core::ModelManifest`];
//! - aliases such as `production` and `staging` that move atomically, with an audit log
//!   of every move;
//! - artifact storage (local disk by default, S3 and HDFS behind features), streamed and
//!   verified by sha256;
//! - the endpoint directory: where each model version is served, kept alive by leases;
//! - validation before promotion: a candidate is compared with the baseline on a
//!   validation set, and the alias moves only when it passes.
//!
//! Backends: in memory, embedded SQLite (the default) and PostgreSQL.
//! Nothing is implemented yet; see the project's issue tracker.
