//! The [`ModelRegistry`] trait: the metadata every backend stores.

use std::collections::BTreeMap;
use std::fmt::Debug;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mlops_core::{ModelManifest, ModelRef};

use crate::error::{Error, Result};
use crate::model::{
    AuditAction, AuditEvent, AuditQuery, Change, Expect, ModelQuery, ModelVersion, NewVersion,
    RegisteredModel, VersionQuery, VersionStatus,
};
use crate::validation::ValidationReport;

/// Changes to a version's mutable facts. `None` leaves a field as it is.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VersionUpdate {
    /// New description.
    pub description: Option<String>,
    /// Tags to set (`Some`) or delete (`None`).
    pub tags: BTreeMap<String, Option<String>>,
    /// Metrics to add or overwrite (a later evaluation, say).
    pub metrics: BTreeMap<String, f64>,
    /// The final manifest: accepted only while the version is PENDING, so a READY
    /// version's files never change.
    pub manifest: Option<ModelManifest>,
}

impl VersionUpdate {
    pub(crate) fn validate(&self) -> Result<()> {
        for key in self.tags.keys().chain(self.metrics.keys()) {
            crate::model::check_key(key)?;
        }
        if let Some((k, v)) = self.metrics.iter().find(|(_, v)| !v.is_finite()) {
            return Err(Error::invalid(format!(
                "metric '{k}' is {v}, not a finite number"
            )));
        }
        Ok(())
    }
}

/// Registered models, their versions, aliases and audit log.
///
/// Every backend (in memory, SQLite, PostgreSQL) passes the same conformance suite
/// ([`crate::testkit`]), so they are interchangeable. Writes are atomic: a call either
/// happens completely, with its audit event, or not at all.
#[async_trait]
pub trait ModelRegistry: Send + Sync + Debug {
    /// Creates a registered model. [`Error::AlreadyExists`] if the name is taken.
    async fn create_model(
        &self,
        name: &str,
        description: Option<&str>,
        tags: &BTreeMap<String, String>,
    ) -> Result<RegisteredModel>;

    /// One registered model, with its aliases.
    async fn get_model(&self, name: &str) -> Result<RegisteredModel>;

    /// Sets the description, and sets (`Some`) or deletes (`None`) tags.
    async fn update_model(
        &self,
        name: &str,
        description: Option<&str>,
        tags: &BTreeMap<String, Option<String>>,
    ) -> Result<RegisteredModel>;

    /// Registered models matching `query`, by name.
    async fn search_models(&self, query: &ModelQuery) -> Result<Vec<RegisteredModel>>;

    /// Deletes a model with its versions and aliases (the audit log keeps the record).
    /// Artifacts are the caller's to delete ([`crate::Registry::delete_model`] does).
    async fn delete_model(&self, name: &str, change: &Change) -> Result<()>;

    /// Creates the next version of `name` (and the model, if it is new). Concurrent calls
    /// get distinct, consecutive numbers.
    async fn create_version(
        &self,
        name: &str,
        version: NewVersion,
        change: &Change,
    ) -> Result<ModelVersion>;

    /// One version.
    async fn get_version(&self, name: &str, version: u64) -> Result<ModelVersion>;

    /// Changes a version's mutable facts.
    async fn update_version(
        &self,
        name: &str,
        version: u64,
        update: &VersionUpdate,
    ) -> Result<ModelVersion>;

    /// Moves a version to `status` (see [`VersionStatus::can_become`]), recording why.
    /// Archiving a version an alias points at is refused.
    async fn set_version_status(
        &self,
        name: &str,
        version: u64,
        status: VersionStatus,
        message: Option<&str>,
        change: &Change,
    ) -> Result<ModelVersion>;

    /// Attaches a validation report to a version (the candidate it was run on).
    async fn set_validation(
        &self,
        name: &str,
        version: u64,
        report: &ValidationReport,
    ) -> Result<()>;

    /// Versions matching `query`.
    async fn search_versions(&self, query: &VersionQuery) -> Result<Vec<ModelVersion>>;

    /// Deletes a version. Refused while an alias points at it: move the alias first.
    async fn delete_version(&self, name: &str, version: u64, change: &Change) -> Result<()>;

    /// Points `alias` at `version`, if the alias is as `expect` says (compare-and-set);
    /// otherwise [`Error::Conflict`] and nothing changes. The version must be READY.
    /// Returns what the alias pointed at before. The audit event carries `report`, the
    /// validation behind the move, when there was one.
    async fn set_alias(
        &self,
        name: &str,
        alias: &str,
        version: u64,
        expect: Expect,
        change: &Change,
        report: Option<&ValidationReport>,
    ) -> Result<Option<u64>>;

    /// Deletes `alias` if it is as `expect` says; returns the version it pointed at.
    async fn delete_alias(
        &self,
        name: &str,
        alias: &str,
        expect: Expect,
        change: &Change,
    ) -> Result<u64>;

    /// The version a reference means: a number, an alias, or the highest READY version.
    async fn resolve(&self, reference: &ModelRef) -> Result<ModelVersion>;

    /// Audit events matching `query`, oldest first.
    async fn audit_log(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>>;
}

/// Conveniences over any [`ModelRegistry`].
#[async_trait]
pub trait ModelRegistryExt: ModelRegistry {
    /// Parses and resolves a reference: `name`, `name/7`, `name@alias`, `models:/...`.
    async fn resolve_str(&self, reference: &str) -> Result<ModelVersion> {
        let parsed = ModelRef::parse(reference).map_err(|e| Error::invalid(e.to_string()))?;
        self.resolve(&parsed).await
    }

    /// Which version `alias` pointed at, at time `at` (`None` if it did not exist):
    /// answered from the audit log.
    async fn alias_at(&self, name: &str, alias: &str, at: DateTime<Utc>) -> Result<Option<u64>> {
        let query = AuditQuery {
            until: Some(at),
            ..AuditQuery::model(name).with_alias(alias)
        };
        let events = self.audit_log(&query).await?;
        Ok(events
            .iter()
            .rev()
            .find_map(|e| match e.action {
                AuditAction::AliasSet { to, .. } => Some(Some(to)),
                AuditAction::AliasDeleted { .. } => Some(None),
                _ => None,
            })
            .flatten())
    }

    /// Every move of `alias`, oldest first: `(when, version)`, `None` for a deletion.
    async fn alias_history(
        &self,
        name: &str,
        alias: &str,
    ) -> Result<Vec<(DateTime<Utc>, Option<u64>)>> {
        let events = self
            .audit_log(&AuditQuery::model(name).with_alias(alias))
            .await?;
        Ok(events
            .iter()
            .filter_map(|e| match e.action {
                AuditAction::AliasSet { to, .. } => Some((e.at, Some(to))),
                AuditAction::AliasDeleted { .. } => Some((e.at, None)),
                _ => None,
            })
            .collect())
    }
}

impl<T: ModelRegistry + ?Sized> ModelRegistryExt for T {}
