//! [`InMemoryRegistry`]: the registry in a process's memory.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use mlops_core::{ModelRef, VersionSelector};

use crate::contract::{
    alias_not_found, check_aliasable, check_deletable, check_expect, check_final_manifest,
    check_transition, model_not_found, no_ready_version, version_not_found,
};
use crate::endpoint::{Endpoint, EndpointDirectory, Lease, LiveEndpoint, new_lease_id};
use crate::error::{Error, Result};
use crate::model::{
    AuditAction, AuditEvent, AuditQuery, Change, Expect, ModelQuery, ModelVersion, NewVersion,
    RegisteredModel, VersionQuery, VersionStatus, check_alias, check_name,
};
use crate::registry::{ModelRegistry, VersionUpdate};
use crate::time::{now, ttl_to_chrono};
use crate::validation::ValidationReport;

/// A registry and endpoint directory held in memory: for tests of the crates that use a
/// registry, and for single-process tools. Same behaviour as the persistent backends
/// (it passes the same conformance suite); nothing survives the process.
#[derive(Debug, Default)]
pub struct InMemoryRegistry {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    models: BTreeMap<String, RegisteredModel>,
    versions: BTreeMap<String, BTreeMap<u64, ModelVersion>>,
    audit: Vec<AuditEvent>,
    endpoints: HashMap<String, LiveEndpoint>,
    /// Last version numbers of deleted models: a re-created model continues from there.
    sequences: HashMap<String, u64>,
}

impl State {
    fn log(
        &mut self,
        model: &str,
        action: AuditAction,
        change: &Change,
        report: Option<&ValidationReport>,
    ) {
        let id = self.audit.len() as u64 + 1;
        self.audit.push(AuditEvent {
            id,
            at: now(),
            model: model.to_owned(),
            action,
            change: change.clone(),
            report: report.cloned(),
        });
    }

    fn model_mut(&mut self, name: &str) -> Result<&mut RegisteredModel> {
        self.models
            .get_mut(name)
            .ok_or_else(|| model_not_found(name))
    }

    fn version(&self, name: &str, version: u64) -> Result<ModelVersion> {
        if !self.models.contains_key(name) {
            return Err(model_not_found(name));
        }
        let mut v = self
            .versions
            .get(name)
            .and_then(|vs| vs.get(&version))
            .cloned()
            .ok_or_else(|| version_not_found(name, version))?;
        v.aliases = self.aliases_of(name, version);
        Ok(v)
    }

    fn version_mut(&mut self, name: &str, version: u64) -> Result<&mut ModelVersion> {
        self.versions
            .get_mut(name)
            .and_then(|vs| vs.get_mut(&version))
            .ok_or_else(|| version_not_found(name, version))
    }

    fn aliases_of(&self, name: &str, version: u64) -> Vec<String> {
        self.models
            .get(name)
            .map(|m| {
                m.aliases
                    .iter()
                    .filter(|(_, v)| **v == version)
                    .map(|(a, _)| a.clone())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl InMemoryRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-applied change: every
        // method checks before it mutates. So the state is still consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl ModelRegistry for InMemoryRegistry {
    async fn create_model(
        &self,
        name: &str,
        description: Option<&str>,
        tags: &BTreeMap<String, String>,
    ) -> Result<RegisteredModel> {
        check_name(name)?;
        for k in tags.keys() {
            crate::model::check_key(k)?;
        }
        let mut s = self.lock();
        if s.models.contains_key(name) {
            return Err(Error::AlreadyExists {
                what: format!("model '{name}'"),
            });
        }
        let t = now();
        let model = RegisteredModel {
            name: name.to_owned(),
            description: description.map(str::to_owned),
            tags: tags.clone(),
            aliases: BTreeMap::new(),
            latest_version: s.sequences.get(name).copied().unwrap_or(0),
            created_at: t,
            updated_at: t,
        };
        s.models.insert(name.to_owned(), model.clone());
        Ok(model)
    }

    async fn get_model(&self, name: &str) -> Result<RegisteredModel> {
        self.lock()
            .models
            .get(name)
            .cloned()
            .ok_or_else(|| model_not_found(name))
    }

    async fn update_model(
        &self,
        name: &str,
        description: Option<&str>,
        tags: &BTreeMap<String, Option<String>>,
    ) -> Result<RegisteredModel> {
        for k in tags.keys() {
            crate::model::check_key(k)?;
        }
        let mut s = self.lock();
        let m = s.model_mut(name)?;
        if let Some(d) = description {
            m.description = Some(d.to_owned());
        }
        for (k, v) in tags {
            match v {
                Some(v) => m.tags.insert(k.clone(), v.clone()),
                None => m.tags.remove(k),
            };
        }
        m.updated_at = now();
        Ok(m.clone())
    }

    async fn search_models(&self, query: &ModelQuery) -> Result<Vec<RegisteredModel>> {
        let s = self.lock();
        let mut out: Vec<_> = s
            .models
            .values()
            .filter(|m| query.matches(m))
            .cloned()
            .collect();
        if let Some(limit) = query.limit {
            out.truncate(limit);
        }
        Ok(out)
    }

    async fn delete_model(&self, name: &str, change: &Change) -> Result<()> {
        let mut s = self.lock();
        let model = s.models.remove(name).ok_or_else(|| model_not_found(name))?;
        s.versions.remove(name);
        for (alias, from) in model.aliases {
            s.log(
                name,
                AuditAction::AliasDeleted { alias, from },
                change,
                None,
            );
        }
        s.sequences.insert(name.to_owned(), model.latest_version);
        s.log(name, AuditAction::ModelDeleted, change, None);
        Ok(())
    }

    async fn create_version(
        &self,
        name: &str,
        version: NewVersion,
        change: &Change,
    ) -> Result<ModelVersion> {
        check_name(name)?;
        let new = version.merged();
        new.validate()?;
        let mut s = self.lock();
        let t = now();
        let start = s.sequences.get(name).copied().unwrap_or(0);
        let model = s
            .models
            .entry(name.to_owned())
            .or_insert_with(|| RegisteredModel {
                name: name.to_owned(),
                description: None,
                tags: BTreeMap::new(),
                aliases: BTreeMap::new(),
                latest_version: start,
                created_at: t,
                updated_at: t,
            });
        model.latest_version += 1;
        let number = model.latest_version;
        let v = ModelVersion {
            name: name.to_owned(),
            version: number,
            status: if new.ready {
                VersionStatus::Ready
            } else {
                VersionStatus::Pending
            },
            status_message: None,
            description: new.description,
            source: new.source,
            manifest: new.manifest,
            metrics: new.metrics,
            params: new.params,
            tags: new.tags,
            lineage: new.lineage,
            aliases: Vec::new(),
            validation: None,
            created_at: t,
            updated_at: t,
        };
        s.versions
            .entry(name.to_owned())
            .or_default()
            .insert(number, v.clone());
        s.log(
            name,
            AuditAction::VersionCreated { version: number },
            change,
            None,
        );
        Ok(v)
    }

    async fn get_version(&self, name: &str, version: u64) -> Result<ModelVersion> {
        self.lock().version(name, version)
    }

    async fn update_version(
        &self,
        name: &str,
        version: u64,
        update: &VersionUpdate,
    ) -> Result<ModelVersion> {
        update.validate()?;
        let mut s = self.lock();
        let current = s.version(name, version)?;
        check_final_manifest(&current, update)?;
        let v = s.version_mut(name, version)?;
        if let Some(d) = &update.description {
            v.description = Some(d.clone());
        }
        for (k, val) in &update.tags {
            match val {
                Some(val) => v.tags.insert(k.clone(), val.clone()),
                None => v.tags.remove(k),
            };
        }
        for (k, val) in &update.metrics {
            v.metrics.insert(k.clone(), *val);
        }
        if let Some(m) = &update.manifest {
            v.manifest = Some(m.clone());
        }
        v.updated_at = now();
        s.version(name, version)
    }

    async fn set_version_status(
        &self,
        name: &str,
        version: u64,
        status: VersionStatus,
        message: Option<&str>,
        change: &Change,
    ) -> Result<ModelVersion> {
        let mut s = self.lock();
        let current = s.version(name, version)?;
        check_transition(&current, status)?;
        let v = s.version_mut(name, version)?;
        v.status = status;
        v.status_message = message.map(str::to_owned);
        v.updated_at = now();
        if current.status != status {
            let action = AuditAction::StatusChanged {
                version,
                from: current.status,
                to: status,
            };
            s.log(name, action, change, None);
        }
        s.version(name, version)
    }

    async fn set_validation(
        &self,
        name: &str,
        version: u64,
        report: &ValidationReport,
    ) -> Result<()> {
        let mut s = self.lock();
        let v = s.version_mut(name, version)?;
        v.validation = Some(report.clone());
        v.updated_at = now();
        Ok(())
    }

    async fn search_versions(&self, query: &VersionQuery) -> Result<Vec<ModelVersion>> {
        let s = self.lock();
        let mut out = Vec::new();
        for (name, versions) in &s.versions {
            if query.name.as_ref().is_some_and(|n| n != name) {
                continue;
            }
            for v in versions.values() {
                let mut v = v.clone();
                v.aliases = s.aliases_of(name, v.version);
                if query.matches(&v) {
                    out.push(v);
                }
            }
        }
        Ok(query.finish(out))
    }

    async fn delete_version(&self, name: &str, version: u64, change: &Change) -> Result<()> {
        let mut s = self.lock();
        let v = s.version(name, version)?;
        check_deletable(name, version, &v.aliases)?;
        if let Some(vs) = s.versions.get_mut(name) {
            vs.remove(&version);
        }
        s.log(name, AuditAction::VersionDeleted { version }, change, None);
        Ok(())
    }

    async fn set_alias(
        &self,
        name: &str,
        alias: &str,
        version: u64,
        expect: Expect,
        change: &Change,
        report: Option<&ValidationReport>,
    ) -> Result<Option<u64>> {
        check_alias(alias)?;
        let mut s = self.lock();
        let target = s.version(name, version)?;
        check_aliasable(&target)?;
        let m = s.model_mut(name)?;
        let previous = m.aliases.get(alias).copied();
        check_expect(name, alias, previous, expect)?;
        m.aliases.insert(alias.to_owned(), version);
        let action = AuditAction::AliasSet {
            alias: alias.to_owned(),
            from: previous,
            to: version,
        };
        s.log(name, action, change, report);
        Ok(previous)
    }

    async fn delete_alias(
        &self,
        name: &str,
        alias: &str,
        expect: Expect,
        change: &Change,
    ) -> Result<u64> {
        let mut s = self.lock();
        let m = s.model_mut(name)?;
        let current = m.aliases.get(alias).copied();
        let Some(from) = current else {
            return Err(alias_not_found(name, alias));
        };
        check_expect(name, alias, current, expect)?;
        m.aliases.remove(alias);
        let action = AuditAction::AliasDeleted {
            alias: alias.to_owned(),
            from,
        };
        s.log(name, action, change, None);
        Ok(from)
    }

    async fn resolve(&self, reference: &ModelRef) -> Result<ModelVersion> {
        let s = self.lock();
        let model = s
            .models
            .get(&reference.name)
            .ok_or_else(|| model_not_found(&reference.name))?;
        let number = match &reference.selector {
            VersionSelector::Version(v) => *v,
            VersionSelector::Alias(a) => *model
                .aliases
                .get(a)
                .ok_or_else(|| alias_not_found(&reference.name, a))?,
            VersionSelector::Latest => s
                .versions
                .get(&reference.name)
                .and_then(|vs| {
                    vs.values()
                        .rev()
                        .find(|v| v.status == VersionStatus::Ready)
                        .map(|v| v.version)
                })
                .ok_or_else(|| no_ready_version(&reference.name))?,
        };
        s.version(&reference.name, number)
    }

    async fn audit_log(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>> {
        let s = self.lock();
        let mut out: Vec<_> = s
            .audit
            .iter()
            .filter(|e| query.matches(e))
            .cloned()
            .collect();
        if let Some(limit) = query.limit {
            out.truncate(limit);
        }
        Ok(out)
    }
}

#[async_trait]
impl EndpointDirectory for InMemoryRegistry {
    async fn register_endpoint(&self, endpoint: &Endpoint, ttl: Duration) -> Result<Lease> {
        endpoint.validate()?;
        let ttl = ttl_to_chrono(ttl)?;
        let t = now();
        let lease = Lease {
            id: new_lease_id(),
            expires_at: t + ttl,
        };
        let mut s = self.lock();
        s.endpoints.retain(|_, e| e.lease.expires_at > t);
        s.endpoints.insert(
            lease.id.clone(),
            LiveEndpoint {
                lease: lease.clone(),
                endpoint: endpoint.clone(),
                registered_at: t,
            },
        );
        Ok(lease)
    }

    async fn renew(&self, lease_id: &str, ttl: Duration) -> Result<Lease> {
        let ttl = ttl_to_chrono(ttl)?;
        let t = now();
        let mut s = self.lock();
        match s.endpoints.get_mut(lease_id) {
            Some(e) if e.lease.expires_at > t => {
                e.lease.expires_at = t + ttl;
                Ok(e.lease.clone())
            }
            _ => {
                s.endpoints.remove(lease_id);
                Err(crate::endpoint::lease_not_found(lease_id))
            }
        }
    }

    async fn deregister(&self, lease_id: &str) -> Result<()> {
        self.lock()
            .endpoints
            .remove(lease_id)
            .map(|_| ())
            .ok_or_else(|| crate::endpoint::lease_not_found(lease_id))
    }

    async fn endpoints(&self, model: &str, version: Option<u64>) -> Result<Vec<LiveEndpoint>> {
        let t = now();
        let s = self.lock();
        let mut out: Vec<_> = s
            .endpoints
            .values()
            .filter(|e| e.lease.expires_at > t && e.endpoint.serves(model, version))
            .cloned()
            .collect();
        crate::endpoint::sort_endpoints(&mut out);
        Ok(out)
    }
}
