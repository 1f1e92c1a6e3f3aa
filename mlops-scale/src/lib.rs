//! Autoscaling for the mlops family.
//!
//! This crate will hold scaling policies (utilisation as in the Kubernetes HPA,
//! concurrency as in Knative, and capacity: a ratio of the profiled maximum throughput),
//! GPU packing, a trace-driven simulator to compare policies, and backends that act on
//! the decision (local replicas, Kubernetes).
//!
//! Nothing is implemented yet; see the project's issue tracker.
