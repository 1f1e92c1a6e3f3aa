//! The registry's queries, written once for every [`Dialect`]: the SQL, the contract's
//! checks (through [`crate::contract`]), the merges and the audit log.

use std::collections::BTreeMap;
use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use mlops_core::{ModelRef, VersionSelector};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::{
    ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Row, Transaction, Type,
};

use super::{Dialect, SCHEMA_VERSION, SqlRegistry, sealed};
use crate::contract::{
    alias_not_found, check_aliasable, check_deletable, check_expect, check_final_manifest,
    check_transition, model_not_found, no_ready_version, version_not_found,
};
use crate::endpoint::{
    Endpoint, EndpointDirectory, Lease, LiveEndpoint, Protocol, lease_not_found, new_lease_id,
};
use crate::error::{Error, Result};
use crate::model::{
    AuditAction, AuditEvent, AuditQuery, Change, Expect, ModelQuery, ModelVersion, NewVersion,
    RegisteredModel, VersionQuery, VersionStatus, check_alias, check_key, check_name,
};
use crate::registry::{ModelRegistry, VersionUpdate};
use crate::time::{from_micros, now, ttl_to_chrono};
use crate::validation::ValidationReport;

type Tx<D> = Transaction<'static, <D as sealed::Dialect>::Db>;
type DbRow<D> = <<D as sealed::Dialect>::Db as Database>::Row;

fn to_json<T: Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::Corrupt(format!("cannot encode: {e}")))
}

pub(super) fn from_json<T: DeserializeOwned>(text: &str, what: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| Error::Corrupt(format!("{what}: {e}")))
}

pub(super) fn opt_json<T: DeserializeOwned>(text: Option<String>, what: &str) -> Result<Option<T>> {
    text.map(|t| from_json(&t, what)).transpose()
}

fn db_version(v: u64) -> Result<i64> {
    i64::try_from(v).map_err(|_| Error::invalid(format!("version {v} is out of range")))
}

fn row_version(v: i64) -> u64 {
    u64::try_from(v).unwrap_or_default()
}

const VERSION_COLUMNS: &str = "v.name, v.version, v.status, v.status_message, v.description, \
     v.source, v.manifest, v.metrics, v.params, v.tags, v.lineage, v.validation, \
     v.created_at, v.updated_at";

// SQLite numbers `$n` parameters by first appearance, and the inline resolver
// (sqlite.rs) binds by position: each filter below names `$1` before `$2`.
fn version_select(filter: &str) -> String {
    format!(
        "SELECT {VERSION_COLUMNS}, (SELECT string_agg(alias, ',') FROM aliases a \
         WHERE a.name = v.name AND a.version = v.version) AS aliases \
         FROM model_versions v WHERE {filter}"
    )
}

const MODEL_COLUMNS: &str = "name, description, tags, latest_version, created_at, updated_at";

pub(super) static VERSION_BY_NUMBER: LazyLock<String> =
    LazyLock::new(|| version_select("v.name = $1 AND v.version = $2"));
pub(super) static VERSION_BY_ALIAS: LazyLock<String> = LazyLock::new(|| {
    version_select(
        "(v.name, v.version) IN (SELECT name, version FROM aliases WHERE name = $1 AND alias = $2)",
    )
});
pub(super) static VERSION_LATEST: LazyLock<String> = LazyLock::new(|| {
    version_select("v.name = $1 AND v.status = 'READY' ORDER BY v.version DESC LIMIT 1")
});
static VERSION_SEARCH: LazyLock<String> =
    LazyLock::new(|| version_select("($1 IS NULL OR v.name = $1)"));
static MODEL_BY_NAME: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {MODEL_COLUMNS} FROM registered_models WHERE name = $1"));
static MODEL_ALL: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {MODEL_COLUMNS} FROM registered_models"));

// What the queries need of sqlx for a dialect's database: stated on each generic impl
// below, since Rust does not carry a trait's where-clauses to its users.
impl<D: Dialect> SqlRegistry<D>
where
    for<'c> &'c mut <D::Db as Database>::Connection: Executor<'c, Database = D::Db>,
    <D::Db as Database>::Arguments: IntoArguments<D::Db>,
    for<'q> &'q str: Encode<'q, D::Db> + Type<D::Db>,
    for<'q> Option<&'q str>: Encode<'q, D::Db>,
    for<'q> String: Encode<'q, D::Db> + Decode<'q, D::Db> + Type<D::Db>,
    for<'q> Option<String>: Encode<'q, D::Db>,
    for<'q> i64: Encode<'q, D::Db> + Decode<'q, D::Db> + Type<D::Db>,
    for<'q> Option<i64>: Encode<'q, D::Db>,
    for<'q> f64: Decode<'q, D::Db> + Type<D::Db>,
    for<'q> Option<f64>: Encode<'q, D::Db>,
    for<'q> &'q str: ColumnIndex<<D::Db as Database>::Row>,
    usize: ColumnIndex<<D::Db as Database>::Row>,
{
    /// Brings the schema up to date, or refuses a database from a newer library.
    pub(super) async fn migrate(&self) -> Result<()> {
        let (mut tx, _guard) = self.dialect.begin_write(&self.pool).await?;
        self.dialect.lock_for_migration(&mut tx).await?;
        sqlx::query("CREATE TABLE IF NOT EXISTS mlops_schema (version BIGINT NOT NULL)")
            .execute(&mut *tx)
            .await?;
        let found: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM mlops_schema")
            .fetch_one(&mut *tx)
            .await?;
        let found = found.unwrap_or(0);
        if found > SCHEMA_VERSION {
            return Err(Error::SchemaTooNew {
                found,
                supported: SCHEMA_VERSION,
            });
        }
        for m in self
            .dialect
            .migrations()
            .iter()
            .filter(|m| m.version > found)
        {
            sqlx::raw_sql(m.sql).execute(&mut *tx).await?;
            sqlx::query("INSERT INTO mlops_schema (version) VALUES ($1)")
                .bind(m.version)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    fn decode_version(row: &DbRow<D>) -> Result<ModelVersion> {
        let aliases: Option<String> = row.try_get("aliases")?;
        let mut aliases: Vec<String> = aliases
            .map(|a| a.split(',').map(str::to_owned).collect())
            .unwrap_or_default();
        aliases.sort();
        let name: String = row.try_get("name")?;
        Ok(ModelVersion {
            version: row_version(row.try_get("version")?),
            status: VersionStatus::parse(&row.try_get::<String, _>("status")?)?,
            status_message: row.try_get("status_message")?,
            description: row.try_get("description")?,
            source: row.try_get("source")?,
            manifest: opt_json(row.try_get("manifest")?, "manifest")?,
            metrics: from_json(&row.try_get::<String, _>("metrics")?, "metrics")?,
            params: from_json(&row.try_get::<String, _>("params")?, "params")?,
            tags: from_json(&row.try_get::<String, _>("tags")?, "tags")?,
            lineage: from_json(&row.try_get::<String, _>("lineage")?, "lineage")?,
            aliases,
            validation: opt_json(row.try_get("validation")?, "validation report")?,
            created_at: from_micros(row.try_get("created_at")?),
            updated_at: from_micros(row.try_get("updated_at")?),
            name,
        })
    }

    async fn fetch_version<'e, E>(exec: E, name: &str, version: u64) -> Result<Option<ModelVersion>>
    where
        E: Executor<'e, Database = D::Db>,
    {
        let row = sqlx::query(VERSION_BY_NUMBER.as_str())
            .bind(name)
            .bind(db_version(version)?)
            .fetch_optional(exec)
            .await?;
        row.as_ref().map(Self::decode_version).transpose()
    }

    /// Locks the model's row for the rest of the transaction (PostgreSQL; SQLite's write
    /// transaction already excludes other writers). False if there is no such model.
    async fn lock_model(tx: &mut Tx<D>, name: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE registered_models SET latest_version = latest_version WHERE name = $1",
        )
        .bind(name)
        .execute(&mut **tx)
        .await?;
        Ok(D::rows_affected(&done) == 1)
    }

    async fn version_in_tx(tx: &mut Tx<D>, name: &str, version: u64) -> Result<ModelVersion> {
        if !Self::lock_model(tx, name).await? {
            return Err(model_not_found(name));
        }
        Self::fetch_version(&mut **tx, name, version)
            .await?
            .ok_or_else(|| version_not_found(name, version))
    }

    async fn log(
        tx: &mut Tx<D>,
        model: &str,
        action: &AuditAction,
        change: &Change,
        report: Option<&ValidationReport>,
    ) -> Result<()> {
        let alias = match action {
            AuditAction::AliasSet { alias, .. } | AuditAction::AliasDeleted { alias, .. } => {
                Some(alias.as_str())
            }
            _ => None,
        };
        sqlx::query(
            "INSERT INTO audit_log (at, model, alias, action, actor, reason, report) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(now().timestamp_micros())
        .bind(model)
        .bind(alias)
        .bind(to_json(action)?)
        .bind(&change.actor)
        .bind(change.reason.as_deref())
        .bind(report.map(to_json).transpose()?)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    async fn model_aliases<'e, E>(exec: E, name: &str) -> Result<BTreeMap<String, u64>>
    where
        E: Executor<'e, Database = D::Db>,
    {
        let rows = sqlx::query("SELECT alias, version FROM aliases WHERE name = $1")
            .bind(name)
            .fetch_all(exec)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("alias")?, row_version(r.try_get("version")?))))
            .collect()
    }

    fn decode_model(row: &DbRow<D>, aliases: BTreeMap<String, u64>) -> Result<RegisteredModel> {
        Ok(RegisteredModel {
            name: row.try_get("name")?,
            description: row.try_get("description")?,
            tags: from_json(&row.try_get::<String, _>("tags")?, "model tags")?,
            aliases,
            latest_version: row_version(row.try_get("latest_version")?),
            created_at: from_micros(row.try_get("created_at")?),
            updated_at: from_micros(row.try_get("updated_at")?),
        })
    }
}

#[async_trait]
impl<D: Dialect> ModelRegistry for SqlRegistry<D>
where
    for<'c> &'c mut <D::Db as Database>::Connection: Executor<'c, Database = D::Db>,
    <D::Db as Database>::Arguments: IntoArguments<D::Db>,
    for<'q> &'q str: Encode<'q, D::Db> + Type<D::Db>,
    for<'q> Option<&'q str>: Encode<'q, D::Db>,
    for<'q> String: Encode<'q, D::Db> + Decode<'q, D::Db> + Type<D::Db>,
    for<'q> Option<String>: Encode<'q, D::Db>,
    for<'q> i64: Encode<'q, D::Db> + Decode<'q, D::Db> + Type<D::Db>,
    for<'q> Option<i64>: Encode<'q, D::Db>,
    for<'q> f64: Decode<'q, D::Db> + Type<D::Db>,
    for<'q> Option<f64>: Encode<'q, D::Db>,
    for<'q> &'q str: ColumnIndex<<D::Db as Database>::Row>,
    usize: ColumnIndex<<D::Db as Database>::Row>,
{
    async fn create_model(
        &self,
        name: &str,
        description: Option<&str>,
        tags: &BTreeMap<String, String>,
    ) -> Result<RegisteredModel> {
        check_name(name)?;
        for k in tags.keys() {
            check_key(k)?;
        }
        let t = now().timestamp_micros();
        let (mut tx, _guard) = self.dialect.begin_write(&self.pool).await?;
        let done = sqlx::query(
            "INSERT INTO registered_models (name, description, tags, latest_version, \
             created_at, updated_at) VALUES ($1, $2, $3, \
             COALESCE((SELECT last_version FROM model_sequences WHERE name = $1), 0), $4, $4) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(description)
        .bind(to_json(tags)?)
        .bind(t)
        .execute(&mut *tx)
        .await?;
        if D::rows_affected(&done) == 0 {
            return Err(Error::AlreadyExists {
                what: format!("model '{name}'"),
            });
        }
        tx.commit().await?;
        self.get_model(name).await
    }

    async fn get_model(&self, name: &str) -> Result<RegisteredModel> {
        let row = sqlx::query(MODEL_BY_NAME.as_str())
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| model_not_found(name))?;
        Self::decode_model(&row, Self::model_aliases(&self.pool, name).await?)
    }

    async fn update_model(
        &self,
        name: &str,
        description: Option<&str>,
        tags: &BTreeMap<String, Option<String>>,
    ) -> Result<RegisteredModel> {
        for k in tags.keys() {
            check_key(k)?;
        }
        let (mut tx, _guard) = self.dialect.begin_write(&self.pool).await?;
        if !Self::lock_model(&mut tx, name).await? {
            return Err(model_not_found(name));
        }
        let current: String =
            sqlx::query_scalar("SELECT tags FROM registered_models WHERE name = $1")
                .bind(name)
                .fetch_one(&mut *tx)
                .await?;
        let mut merged: BTreeMap<String, String> = from_json(&current, "model tags")?;
        for (k, v) in tags {
            match v {
                Some(v) => merged.insert(k.clone(), v.clone()),
                None => merged.remove(k),
            };
        }
        sqlx::query(
            "UPDATE registered_models SET description = COALESCE($2, description), tags = $3, \
             updated_at = $4 WHERE name = $1",
        )
        .bind(name)
        .bind(description)
        .bind(to_json(&merged)?)
        .bind(now().timestamp_micros())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.get_model(name).await
    }

    async fn search_models(&self, query: &ModelQuery) -> Result<Vec<RegisteredModel>> {
        let rows = sqlx::query(MODEL_ALL.as_str())
            .fetch_all(&self.pool)
            .await?;
        let alias_rows = sqlx::query("SELECT name, alias, version FROM aliases")
            .fetch_all(&self.pool)
            .await?;
        let mut aliases: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        for r in &alias_rows {
            aliases
                .entry(r.try_get("name")?)
                .or_default()
                .insert(r.try_get("alias")?, row_version(r.try_get("version")?));
        }
        let mut out = Vec::new();
        for row in &rows {
            let name: String = row.try_get("name")?;
            let m = Self::decode_model(row, aliases.remove(&name).unwrap_or_default())?;
            if query.matches(&m) {
                out.push(m);
            }
        }
        // Byte order, as every backend sorts: a database's collation would differ.
        out.sort_by(|a, b| a.name.cmp(&b.name));
        if let Some(limit) = query.limit {
            out.truncate(limit);
        }
        Ok(out)
    }

    async fn delete_model(&self, name: &str, change: &Change) -> Result<()> {
        let (mut tx, _guard) = self.dialect.begin_write(&self.pool).await?;
        if !Self::lock_model(&mut tx, name).await? {
            return Err(model_not_found(name));
        }
        // The aliases go first, each on the record, so that the log answers "which version
        // did production point at" correctly after the model is gone.
        for (alias, from) in Self::model_aliases(&mut *tx, name).await? {
            Self::log(
                &mut tx,
                name,
                &AuditAction::AliasDeleted { alias, from },
                change,
                None,
            )
            .await?;
        }
        sqlx::query(
            "INSERT INTO model_sequences (name, last_version) \
             SELECT name, latest_version FROM registered_models WHERE name = $1 \
             ON CONFLICT (name) DO UPDATE SET last_version = excluded.last_version",
        )
        .bind(name)
        .execute(&mut *tx)
        .await?;
        for sql in [
            "DELETE FROM aliases WHERE name = $1",
            "DELETE FROM model_versions WHERE name = $1",
            "DELETE FROM registered_models WHERE name = $1",
        ] {
            sqlx::query(sql).bind(name).execute(&mut *tx).await?;
        }
        Self::log(&mut tx, name, &AuditAction::ModelDeleted, change, None).await?;
        tx.commit().await?;
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
        let t = now().timestamp_micros();
        let status = if new.ready {
            VersionStatus::Ready
        } else {
            VersionStatus::Pending
        };
        let (mut tx, _guard) = self.dialect.begin_write(&self.pool).await?;
        sqlx::query(
            "INSERT INTO registered_models (name, description, tags, latest_version, \
             created_at, updated_at) VALUES ($1, NULL, '{}', \
             COALESCE((SELECT last_version FROM model_sequences WHERE name = $1), 0), $2, $2) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(t)
        .execute(&mut *tx)
        .await?;
        // The row lock this takes is what keeps concurrent numbers consecutive.
        let number: i64 = sqlx::query_scalar(
            "UPDATE registered_models SET latest_version = latest_version + 1 WHERE name = $1 \
             RETURNING latest_version",
        )
        .bind(name)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO model_versions (name, version, status, status_message, description, \
             source, manifest, metrics, params, tags, lineage, validation, created_at, updated_at) \
             VALUES ($1, $2, $3, NULL, $4, $5, $6, $7, $8, $9, $10, NULL, $11, $11)",
        )
        .bind(name)
        .bind(number)
        .bind(status.as_str())
        .bind(new.description.as_deref())
        .bind(new.source.as_deref())
        .bind(new.manifest.as_ref().map(to_json).transpose()?)
        .bind(to_json(&new.metrics)?)
        .bind(to_json(&new.params)?)
        .bind(to_json(&new.tags)?)
        .bind(to_json(&new.lineage)?)
        .bind(t)
        .execute(&mut *tx)
        .await?;
        let version = row_version(number);
        Self::log(
            &mut tx,
            name,
            &AuditAction::VersionCreated { version },
            change,
            None,
        )
        .await?;
        let created = Self::fetch_version(&mut *tx, name, version)
            .await?
            .ok_or_else(|| version_not_found(name, version))?;
        tx.commit().await?;
        Ok(created)
    }

    async fn get_version(&self, name: &str, version: u64) -> Result<ModelVersion> {
        match Self::fetch_version(&self.pool, name, version).await? {
            Some(v) => Ok(v),
            None => {
                self.get_model(name).await?;
                Err(version_not_found(name, version))
            }
        }
    }

    async fn update_version(
        &self,
        name: &str,
        version: u64,
        update: &VersionUpdate,
    ) -> Result<ModelVersion> {
        update.validate()?;
        let (mut tx, _guard) = self.dialect.begin_write(&self.pool).await?;
        let mut v = Self::version_in_tx(&mut tx, name, version).await?;
        check_final_manifest(&v, update)?;
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
        sqlx::query(
            "UPDATE model_versions SET description = $3, tags = $4, metrics = $5, manifest = $6, \
             updated_at = $7 WHERE name = $1 AND version = $2",
        )
        .bind(name)
        .bind(db_version(version)?)
        .bind(v.description.as_deref())
        .bind(to_json(&v.tags)?)
        .bind(to_json(&v.metrics)?)
        .bind(v.manifest.as_ref().map(to_json).transpose()?)
        .bind(now().timestamp_micros())
        .execute(&mut *tx)
        .await?;
        let updated = Self::fetch_version(&mut *tx, name, version)
            .await?
            .ok_or_else(|| version_not_found(name, version))?;
        tx.commit().await?;
        Ok(updated)
    }

    async fn set_version_status(
        &self,
        name: &str,
        version: u64,
        status: VersionStatus,
        message: Option<&str>,
        change: &Change,
    ) -> Result<ModelVersion> {
        let (mut tx, _guard) = self.dialect.begin_write(&self.pool).await?;
        let current = Self::version_in_tx(&mut tx, name, version).await?;
        check_transition(&current, status)?;
        sqlx::query(
            "UPDATE model_versions SET status = $3, status_message = $4, updated_at = $5 \
             WHERE name = $1 AND version = $2",
        )
        .bind(name)
        .bind(db_version(version)?)
        .bind(status.as_str())
        .bind(message)
        .bind(now().timestamp_micros())
        .execute(&mut *tx)
        .await?;
        if current.status != status {
            let action = AuditAction::StatusChanged {
                version,
                from: current.status,
                to: status,
            };
            Self::log(&mut tx, name, &action, change, None).await?;
        }
        let updated = Self::fetch_version(&mut *tx, name, version)
            .await?
            .ok_or_else(|| version_not_found(name, version))?;
        tx.commit().await?;
        Ok(updated)
    }

    async fn set_validation(
        &self,
        name: &str,
        version: u64,
        report: &ValidationReport,
    ) -> Result<()> {
        let (mut tx, _guard) = self.dialect.begin_write(&self.pool).await?;
        Self::version_in_tx(&mut tx, name, version).await?;
        sqlx::query(
            "UPDATE model_versions SET validation = $3, updated_at = $4 \
             WHERE name = $1 AND version = $2",
        )
        .bind(name)
        .bind(db_version(version)?)
        .bind(to_json(report)?)
        .bind(now().timestamp_micros())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn search_versions(&self, query: &VersionQuery) -> Result<Vec<ModelVersion>> {
        let rows = sqlx::query(VERSION_SEARCH.as_str())
            .bind(query.name.as_deref())
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::new();
        for row in &rows {
            let v = Self::decode_version(row)?;
            if query.matches(&v) {
                out.push(v);
            }
        }
        Ok(query.finish(out))
    }

    async fn delete_version(&self, name: &str, version: u64, change: &Change) -> Result<()> {
        let (mut tx, _guard) = self.dialect.begin_write(&self.pool).await?;
        let v = Self::version_in_tx(&mut tx, name, version).await?;
        check_deletable(name, version, &v.aliases)?;
        sqlx::query("DELETE FROM model_versions WHERE name = $1 AND version = $2")
            .bind(name)
            .bind(db_version(version)?)
            .execute(&mut *tx)
            .await?;
        Self::log(
            &mut tx,
            name,
            &AuditAction::VersionDeleted { version },
            change,
            None,
        )
        .await?;
        tx.commit().await?;
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
        let (mut tx, _guard) = self.dialect.begin_write(&self.pool).await?;
        let target = Self::version_in_tx(&mut tx, name, version).await?;
        check_aliasable(&target)?;
        let previous: Option<i64> =
            sqlx::query_scalar("SELECT version FROM aliases WHERE name = $1 AND alias = $2")
                .bind(name)
                .bind(alias)
                .fetch_optional(&mut *tx)
                .await?;
        let previous = previous.map(row_version);
        check_expect(name, alias, previous, expect)?;
        let written = sqlx::query(
            "INSERT INTO aliases (name, alias, version, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (name, alias) DO UPDATE SET version = $3, updated_at = $4",
        )
        .bind(name)
        .bind(alias)
        .bind(db_version(version)?)
        .bind(now().timestamp_micros())
        .execute(&mut *tx)
        .await;
        if let Err(e) = &written
            && matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
        {
            return Err(Error::Conflict(format!(
                "alias '{name}@{alias}' moved concurrently"
            )));
        }
        written?;
        let action = AuditAction::AliasSet {
            alias: alias.to_owned(),
            from: previous,
            to: version,
        };
        Self::log(&mut tx, name, &action, change, report).await?;
        tx.commit().await?;
        Ok(previous)
    }

    async fn delete_alias(
        &self,
        name: &str,
        alias: &str,
        expect: Expect,
        change: &Change,
    ) -> Result<u64> {
        let (mut tx, _guard) = self.dialect.begin_write(&self.pool).await?;
        if !Self::lock_model(&mut tx, name).await? {
            return Err(model_not_found(name));
        }
        let current: Option<i64> =
            sqlx::query_scalar("SELECT version FROM aliases WHERE name = $1 AND alias = $2")
                .bind(name)
                .bind(alias)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(from) = current.map(row_version) else {
            return Err(alias_not_found(name, alias));
        };
        check_expect(name, alias, Some(from), expect)?;
        sqlx::query("DELETE FROM aliases WHERE name = $1 AND alias = $2")
            .bind(name)
            .bind(alias)
            .execute(&mut *tx)
            .await?;
        let action = AuditAction::AliasDeleted {
            alias: alias.to_owned(),
            from,
        };
        Self::log(&mut tx, name, &action, change, None).await?;
        tx.commit().await?;
        Ok(from)
    }

    async fn resolve(&self, reference: &ModelRef) -> Result<ModelVersion> {
        let name = reference.name.as_str();
        if let Some(v) = self.dialect.resolve_inline(reference) {
            return Ok(v);
        }
        let found = match &reference.selector {
            VersionSelector::Version(v) => Self::fetch_version(&self.pool, name, *v).await?,
            VersionSelector::Alias(alias) => {
                let row = sqlx::query(VERSION_BY_ALIAS.as_str())
                    .bind(name)
                    .bind(alias)
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(Self::decode_version).transpose()?
            }
            VersionSelector::Latest => {
                let row = sqlx::query(VERSION_LATEST.as_str())
                    .bind(name)
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(Self::decode_version).transpose()?
            }
        };
        if let Some(v) = found {
            return Ok(v);
        }
        // Only on the miss: say which part was missing.
        self.get_model(name).await?;
        Err(match &reference.selector {
            VersionSelector::Version(v) => version_not_found(name, *v),
            VersionSelector::Alias(a) => alias_not_found(name, a),
            VersionSelector::Latest => no_ready_version(name),
        })
    }

    async fn audit_log(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>> {
        let limit = query
            .limit
            .map_or(i64::MAX, |l| i64::try_from(l).unwrap_or(i64::MAX));
        let rows = sqlx::query(
            "SELECT id, at, model, action, actor, reason, report FROM audit_log \
             WHERE ($1 IS NULL OR model = $1) AND ($2 IS NULL OR alias = $2) \
             AND ($3 IS NULL OR at >= $3) AND ($4 IS NULL OR at <= $4) ORDER BY id LIMIT $5",
        )
        .bind(query.model.as_deref())
        .bind(query.alias.as_deref())
        .bind(query.since.map(|t| t.timestamp_micros()))
        .bind(query.until.map(|t| t.timestamp_micros()))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditEvent {
                    id: row_version(r.try_get("id")?),
                    at: from_micros(r.try_get("at")?),
                    model: r.try_get("model")?,
                    action: from_json(&r.try_get::<String, _>("action")?, "audit action")?,
                    change: Change {
                        actor: r.try_get("actor")?,
                        reason: r.try_get("reason")?,
                    },
                    report: opt_json(r.try_get("report")?, "audit report")?,
                })
            })
            .collect()
    }
}

#[async_trait]
impl<D: Dialect> EndpointDirectory for SqlRegistry<D>
where
    for<'c> &'c mut <D::Db as Database>::Connection: Executor<'c, Database = D::Db>,
    <D::Db as Database>::Arguments: IntoArguments<D::Db>,
    for<'q> &'q str: Encode<'q, D::Db> + Type<D::Db>,
    for<'q> Option<&'q str>: Encode<'q, D::Db>,
    for<'q> String: Encode<'q, D::Db> + Decode<'q, D::Db> + Type<D::Db>,
    for<'q> Option<String>: Encode<'q, D::Db>,
    for<'q> i64: Encode<'q, D::Db> + Decode<'q, D::Db> + Type<D::Db>,
    for<'q> Option<i64>: Encode<'q, D::Db>,
    for<'q> f64: Decode<'q, D::Db> + Type<D::Db>,
    for<'q> Option<f64>: Encode<'q, D::Db>,
    for<'q> &'q str: ColumnIndex<<D::Db as Database>::Row>,
    usize: ColumnIndex<<D::Db as Database>::Row>,
{
    async fn register_endpoint(&self, endpoint: &Endpoint, ttl: Duration) -> Result<Lease> {
        endpoint.validate()?;
        let ttl = ttl_to_chrono(ttl)?;
        let t = now();
        let lease = Lease {
            id: new_lease_id(),
            expires_at: t + ttl,
        };
        let (mut tx, _guard) = self.dialect.begin_write(&self.pool).await?;
        sqlx::query("DELETE FROM endpoints WHERE expires_at <= $1")
            .bind(t.timestamp_micros())
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO endpoints (lease_id, model, version, address, protocol, capacity, \
             labels, registered_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&lease.id)
        .bind(&endpoint.model)
        .bind(endpoint.version.map(db_version).transpose()?)
        .bind(&endpoint.address)
        .bind(endpoint.protocol.as_str())
        .bind(endpoint.capacity)
        .bind(to_json(&endpoint.labels)?)
        .bind(t.timestamp_micros())
        .bind(lease.expires_at.timestamp_micros())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(lease)
    }

    async fn renew(&self, lease_id: &str, ttl: Duration) -> Result<Lease> {
        let ttl = ttl_to_chrono(ttl)?;
        let t = now();
        let expires_at = t + ttl;
        let (mut tx, _guard) = self.dialect.begin_write(&self.pool).await?;
        let done = sqlx::query(
            "UPDATE endpoints SET expires_at = $2 WHERE lease_id = $1 AND expires_at > $3",
        )
        .bind(lease_id)
        .bind(expires_at.timestamp_micros())
        .bind(t.timestamp_micros())
        .execute(&mut *tx)
        .await?;
        if D::rows_affected(&done) == 0 {
            sqlx::query("DELETE FROM endpoints WHERE lease_id = $1")
                .bind(lease_id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            return Err(lease_not_found(lease_id));
        }
        tx.commit().await?;
        Ok(Lease {
            id: lease_id.to_owned(),
            expires_at,
        })
    }

    async fn deregister(&self, lease_id: &str) -> Result<()> {
        let (mut tx, _guard) = self.dialect.begin_write(&self.pool).await?;
        let done = sqlx::query("DELETE FROM endpoints WHERE lease_id = $1")
            .bind(lease_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        if D::rows_affected(&done) == 0 {
            return Err(lease_not_found(lease_id));
        }
        Ok(())
    }

    async fn endpoints(&self, model: &str, version: Option<u64>) -> Result<Vec<LiveEndpoint>> {
        let rows = sqlx::query(
            "SELECT lease_id, model, version, address, protocol, capacity, labels, \
             registered_at, expires_at FROM endpoints \
             WHERE model = $1 AND ($2 IS NULL OR version = $2) AND expires_at > $3 \
             ORDER BY registered_at, lease_id",
        )
        .bind(model)
        .bind(version.map(db_version).transpose()?)
        .bind(now().timestamp_micros())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(LiveEndpoint {
                    lease: Lease {
                        id: r.try_get("lease_id")?,
                        expires_at: from_micros(r.try_get("expires_at")?),
                    },
                    endpoint: Endpoint {
                        model: r.try_get("model")?,
                        version: r.try_get::<Option<i64>, _>("version")?.map(row_version),
                        address: r.try_get("address")?,
                        protocol: Protocol::parse(&r.try_get::<String, _>("protocol")?),
                        capacity: r.try_get("capacity")?,
                        labels: from_json(&r.try_get::<String, _>("labels")?, "endpoint labels")?,
                    },
                    registered_at: from_micros(r.try_get("registered_at")?),
                })
            })
            .collect()
    }
}
