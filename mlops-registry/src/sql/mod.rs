//! The SQL backends: SQLite (embedded, the default) and PostgreSQL (feature `postgres`).
//!
//! Both run the same queries (`imp.rs`, compiled once per database with its concrete
//! types) over the same schema; only the migrations' DDL and how a write transaction
//! starts differ. Migrations live in `migrations/<database>/` and are embedded in the
//! binary; the schema version is kept in the `mlops_schema` table.

pub(crate) mod sqlite;

#[cfg(feature = "postgres")]
pub(crate) mod postgres;

/// A schema migration: its version and DDL.
pub(crate) struct Migration {
    pub(crate) version: i64,
    pub(crate) sql: &'static str,
}

/// The highest schema version this build understands.
pub(crate) const SCHEMA_VERSION: i64 = 1;
