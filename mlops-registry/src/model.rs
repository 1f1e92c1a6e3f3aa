//! The registry's entities: registered models, versions, aliases, the audit log and the
//! queries over them. Their names follow MLflow's model registry.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use mlops_core::{Lineage, ModelManifest};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::validation::ValidationReport;

/// A named model: the container of its versions and aliases.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RegisteredModel {
    /// Unique name (see [`mlops_core::validate_model_name`]).
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// Key/value tags.
    pub tags: BTreeMap<String, String>,
    /// Alias → version number.
    pub aliases: BTreeMap<String, u64>,
    /// The highest version number ever given (deleted versions' numbers are not reused).
    pub latest_version: u64,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When its description or tags last changed.
    pub updated_at: DateTime<Utc>,
}

/// Where a version is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum VersionStatus {
    /// Created; its artifacts are being stored. Not resolvable as `latest`, not aliasable.
    Pending,
    /// Complete: artifacts stored and verified.
    Ready,
    /// Registration failed; kept for the record.
    Failed,
    /// Retired by a user: still readable, no longer aliasable or `latest`.
    Archived,
}

impl VersionStatus {
    /// The stored name, as MLflow spells the first three (`READY`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            VersionStatus::Pending => "PENDING",
            VersionStatus::Ready => "READY",
            VersionStatus::Failed => "FAILED",
            VersionStatus::Archived => "ARCHIVED",
        }
    }

    /// Parses [`as_str`](Self::as_str)'s names.
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "PENDING" => VersionStatus::Pending,
            "READY" => VersionStatus::Ready,
            "FAILED" => VersionStatus::Failed,
            "ARCHIVED" => VersionStatus::Archived,
            other => return Err(Error::Corrupt(format!("unknown version status '{other}'"))),
        })
    }

    /// Which moves are allowed: PENDING → READY | FAILED; READY ↔ ARCHIVED.
    pub fn can_become(self, next: VersionStatus) -> bool {
        use VersionStatus::*;
        matches!(
            (self, next),
            (Pending, Ready) | (Pending, Failed) | (Ready, Archived) | (Archived, Ready)
        )
    }
}

impl fmt::Display for VersionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One version of a registered model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelVersion {
    /// The registered model's name.
    pub name: String,
    /// 1, 2, 3, ... per model, in registration order.
    pub version: u64,
    /// Where it is in its life.
    pub status: VersionStatus,
    /// Why it has that status (a registration error, an archive reason).
    pub status_message: Option<String>,
    /// Free text.
    pub description: Option<String>,
    /// Where the artifacts came from (a path or URI), as MLflow's `source`.
    pub source: Option<String>,
    /// What the model is: format, signature, files with sizes and digests.
    pub manifest: Option<ModelManifest>,
    /// Evaluation results (accuracy, latency, ...).
    pub metrics: BTreeMap<String, f64>,
    /// Hyperparameters.
    pub params: BTreeMap<String, String>,
    /// Key/value tags.
    pub tags: BTreeMap<String, String>,
    /// Training run, data set, parent version.
    pub lineage: Lineage,
    /// The aliases that point here.
    pub aliases: Vec<String>,
    /// The last validation run against this version as a candidate.
    pub validation: Option<ValidationReport>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When anything about it last changed.
    pub updated_at: DateTime<Utc>,
}

impl ModelVersion {
    /// `name/version`.
    pub fn reference(&self) -> mlops_core::ModelRef {
        mlops_core::ModelRef::version(self.name.clone(), self.version)
    }
}

/// What a caller knows when registering a version. Everything is optional; a manifest's
/// metrics, params, tags and lineage are merged under the ones given here.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NewVersion {
    /// See [`ModelVersion::description`].
    pub description: Option<String>,
    /// See [`ModelVersion::source`].
    pub source: Option<String>,
    /// See [`ModelVersion::manifest`].
    pub manifest: Option<ModelManifest>,
    /// See [`ModelVersion::metrics`].
    pub metrics: BTreeMap<String, f64>,
    /// See [`ModelVersion::params`].
    pub params: BTreeMap<String, String>,
    /// See [`ModelVersion::tags`].
    pub tags: BTreeMap<String, String>,
    /// See [`ModelVersion::lineage`].
    pub lineage: Lineage,
    /// Create it READY (metadata only, no artifacts to wait for) instead of PENDING.
    pub ready: bool,
}

impl NewVersion {
    /// Nothing known yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the description.
    pub fn with_description(mut self, text: impl Into<String>) -> Self {
        self.description = Some(text.into());
        self
    }

    /// Sets the source URI.
    pub fn with_source(mut self, source: impl Into<String>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Sets the manifest.
    pub fn with_manifest(mut self, manifest: ModelManifest) -> Self {
        self.manifest = Some(manifest);
        self
    }

    /// Adds a metric.
    pub fn with_metric(mut self, key: impl Into<String>, value: f64) -> Self {
        self.metrics.insert(key.into(), value);
        self
    }

    /// Adds a hyperparameter.
    pub fn with_param(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.insert(key.into(), value.into());
        self
    }

    /// Adds a tag.
    pub fn with_tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.tags.insert(key.into(), value.into());
        self
    }

    /// Sets the lineage.
    pub fn with_lineage(mut self, lineage: Lineage) -> Self {
        self.lineage = lineage;
        self
    }

    /// Creates the version READY at once: for metadata-only registrations whose artifacts
    /// live elsewhere (`source`).
    pub fn ready(mut self) -> Self {
        self.ready = true;
        self
    }

    /// Folds the manifest's metrics, params, tags and lineage in under the explicit ones.
    pub(crate) fn merged(mut self) -> Self {
        if let Some(m) = &self.manifest {
            for (k, v) in &m.metrics {
                self.metrics.entry(k.clone()).or_insert(*v);
            }
            for (k, v) in &m.params {
                self.params.entry(k.clone()).or_insert_with(|| v.clone());
            }
            for (k, v) in &m.tags {
                self.tags.entry(k.clone()).or_insert_with(|| v.clone());
            }
            let l = &mut self.lineage;
            l.run_id = l.run_id.take().or_else(|| m.lineage.run_id.clone());
            l.dataset = l.dataset.take().or_else(|| m.lineage.dataset.clone());
            l.parent_version = l.parent_version.or(m.lineage.parent_version);
            l.source = l.source.take().or_else(|| m.lineage.source.clone());
        }
        self
    }

    pub(crate) fn validate(&self) -> Result<()> {
        for key in self
            .tags
            .keys()
            .chain(self.params.keys())
            .chain(self.metrics.keys())
        {
            check_key(key)?;
        }
        if let Some((k, v)) = self.metrics.iter().find(|(_, v)| !v.is_finite()) {
            return Err(Error::invalid(format!(
                "metric '{k}' is {v}, not a finite number"
            )));
        }
        Ok(())
    }
}

/// The longest tag, param or metric key accepted.
pub const MAX_KEY_LEN: usize = 250;

/// Checks a tag, param or metric key: 1 to [`MAX_KEY_LEN`] bytes, no control characters.
pub fn check_key(key: &str) -> Result<()> {
    if key.is_empty() || key.len() > MAX_KEY_LEN || key.chars().any(char::is_control) {
        return Err(Error::invalid(format!(
            "key {key:?}: keys have 1 to {MAX_KEY_LEN} bytes and no control characters"
        )));
    }
    Ok(())
}

/// Checks a model name, as [`mlops_core::validate_model_name`], as this crate's error.
pub fn check_name(name: &str) -> Result<()> {
    mlops_core::validate_model_name(name).map_err(|e| Error::invalid(e.to_string()))
}

/// Checks an alias, as [`mlops_core::validate_alias`], as this crate's error.
pub fn check_alias(alias: &str) -> Result<()> {
    mlops_core::validate_alias(alias).map_err(|e| Error::invalid(e.to_string()))
}

/// Who did something, and why: recorded in the audit log with every alias move and
/// status change.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// A user, service or pipeline name.
    pub actor: String,
    /// Free text.
    pub reason: Option<String>,
}

impl Change {
    /// A change by `actor`.
    pub fn by(actor: impl Into<String>) -> Self {
        Change {
            actor: actor.into(),
            reason: None,
        }
    }

    /// Adds the reason.
    pub fn because(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }
}

/// What an alias must point at for a move to go ahead: the compare in compare-and-set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Expect {
    /// Move whatever it points at now.
    Any,
    /// Only if the alias does not exist yet.
    Absent,
    /// Only if it points at this version now.
    Version(u64),
}

/// What happened, in an [`AuditEvent`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuditAction {
    /// An alias was created or moved.
    AliasSet {
        /// The alias.
        alias: String,
        /// The version it pointed at before (none if it was new).
        from: Option<u64>,
        /// The version it points at now.
        to: u64,
    },
    /// An alias was deleted.
    AliasDeleted {
        /// The alias.
        alias: String,
        /// The version it pointed at.
        from: u64,
    },
    /// A version's status changed.
    StatusChanged {
        /// The version.
        version: u64,
        /// Before.
        from: VersionStatus,
        /// After.
        to: VersionStatus,
    },
    /// A version was created.
    VersionCreated {
        /// The version.
        version: u64,
    },
    /// A version was deleted.
    VersionDeleted {
        /// The version.
        version: u64,
    },
    /// A model (and all its versions) was deleted.
    ModelDeleted,
}

/// One entry of the audit log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Increasing with time, unique in the registry.
    pub id: u64,
    /// When.
    pub at: DateTime<Utc>,
    /// The model.
    pub model: String,
    /// What.
    pub action: AuditAction,
    /// Who, and why.
    pub change: Change,
    /// The validation report behind a promotion.
    pub report: Option<ValidationReport>,
}

/// Which audit events to list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only this model's.
    pub model: Option<String>,
    /// Only events about this alias.
    pub alias: Option<String>,
    /// Only events at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only events at or before this time.
    pub until: Option<DateTime<Utc>>,
    /// At most this many, oldest first (all when `None`).
    pub limit: Option<usize>,
}

impl AuditQuery {
    /// Events of one model.
    pub fn model(name: impl Into<String>) -> Self {
        AuditQuery {
            model: Some(name.into()),
            ..Self::default()
        }
    }

    /// Only events about `alias`.
    pub fn with_alias(mut self, alias: impl Into<String>) -> Self {
        self.alias = Some(alias.into());
        self
    }

    /// Whether `event` matches; every backend filters with this, so they agree.
    pub fn matches(&self, event: &AuditEvent) -> bool {
        let alias_ok = match (&self.alias, &event.action) {
            (None, _) => true,
            (Some(a), AuditAction::AliasSet { alias, .. })
            | (Some(a), AuditAction::AliasDeleted { alias, .. }) => a == alias,
            _ => false,
        };
        alias_ok
            && self.model.as_ref().is_none_or(|m| *m == event.model)
            && self.since.is_none_or(|t| event.at >= t)
            && self.until.is_none_or(|t| event.at <= t)
    }
}

/// A comparison in a metric filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Compare {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `==`
    Eq,
}

impl Compare {
    fn holds(self, a: f64, b: f64) -> bool {
        match self {
            Compare::Lt => a < b,
            Compare::Le => a <= b,
            Compare::Gt => a > b,
            Compare::Ge => a >= b,
            Compare::Eq => a == b,
        }
    }
}

/// Which versions to list: every condition must hold.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VersionQuery {
    /// Only this model's versions.
    pub name: Option<String>,
    /// Only models whose name starts with this.
    pub name_prefix: Option<String>,
    /// Only versions in one of these states (any state when empty).
    pub status: Vec<VersionStatus>,
    /// Only versions with every one of these tags (key, value).
    pub tags: Vec<(String, String)>,
    /// Only versions whose metric compares as given (versions without it are left out).
    pub metrics: Vec<(String, Compare, f64)>,
    /// Order by this metric, highest first (else by name, then version, newest first).
    pub order_by_metric: Option<String>,
    /// At most this many.
    pub limit: Option<usize>,
}

impl VersionQuery {
    /// Versions of one model.
    pub fn model(name: impl Into<String>) -> Self {
        VersionQuery {
            name: Some(name.into()),
            ..Self::default()
        }
    }

    /// Adds a tag condition.
    pub fn with_tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.tags.push((key.into(), value.into()));
        self
    }

    /// Adds a metric condition.
    pub fn with_metric(mut self, key: impl Into<String>, cmp: Compare, value: f64) -> Self {
        self.metrics.push((key.into(), cmp, value));
        self
    }

    /// Adds a status condition.
    pub fn with_status(mut self, status: VersionStatus) -> Self {
        self.status.push(status);
        self
    }

    /// Orders by a metric, highest first.
    pub fn order_by(mut self, metric: impl Into<String>) -> Self {
        self.order_by_metric = Some(metric.into());
        self
    }

    /// Whether one version matches; every backend filters with this, so they agree.
    pub fn matches(&self, v: &ModelVersion) -> bool {
        self.name.as_ref().is_none_or(|n| *n == v.name)
            && self
                .name_prefix
                .as_ref()
                .is_none_or(|p| v.name.starts_with(p.as_str()))
            && (self.status.is_empty() || self.status.contains(&v.status))
            && self.tags.iter().all(|(k, val)| v.tags.get(k) == Some(val))
            && self
                .metrics
                .iter()
                .all(|(k, cmp, val)| v.metrics.get(k).is_some_and(|m| cmp.holds(*m, *val)))
    }

    /// Sorts and truncates matching versions; shared by every backend.
    pub fn finish(&self, mut versions: Vec<ModelVersion>) -> Vec<ModelVersion> {
        match &self.order_by_metric {
            Some(metric) => versions.sort_by(|a, b| {
                let (x, y) = (a.metrics.get(metric), b.metrics.get(metric));
                y.partial_cmp(&x)
                    .unwrap_or(std::cmp::Ordering::Equal)
                    .then_with(|| a.name.cmp(&b.name))
                    .then_with(|| b.version.cmp(&a.version))
            }),
            None => versions.sort_by(|a, b| a.name.cmp(&b.name).then(b.version.cmp(&a.version))),
        }
        if let Some(limit) = self.limit {
            versions.truncate(limit);
        }
        versions
    }
}

/// Which registered models to list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModelQuery {
    /// Only names starting with this.
    pub name_prefix: Option<String>,
    /// Only models with every one of these tags.
    pub tags: Vec<(String, String)>,
    /// At most this many, by name.
    pub limit: Option<usize>,
}

impl ModelQuery {
    /// Whether one model matches; shared by every backend.
    pub fn matches(&self, m: &RegisteredModel) -> bool {
        self.name_prefix
            .as_ref()
            .is_none_or(|p| m.name.starts_with(p.as_str()))
            && self.tags.iter().all(|(k, v)| m.tags.get(k) == Some(v))
    }
}
