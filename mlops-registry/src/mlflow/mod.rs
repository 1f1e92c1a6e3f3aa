//! [`MlflowRegistry`]: the [`ModelRegistry`] trait over an MLflow tracking server's REST
//! API, and [`MlflowArtifacts`]: the [`ArtifactStore`] trait over its artifact proxy
//! (`mlflow-artifacts:`). Feature `mlflow`.
//!
//! How our entities map onto MLflow's:
//!
//! | ours | MLflow |
//! |---|---|
//! | model name, description, tags, aliases | the registered model's own |
//! | version number, description, tags, aliases | the model version's own |
//! | metrics, params | the version's run (`runs/get`); a version we create gets a run of its own in the `Default` experiment, and its files go in that run's artifacts under `model/` (where MLflow 2's `log_model` put them) |
//! | lineage | the version's `run_id` and the run's dataset inputs; ours is kept whole in the tag `mlops.lineage` |
//! | status and its message | the tags `mlops.status`, `mlops.status_message`; without them MLflow's status (and the stage `Archived`) |
//! | manifest, validation report | the tags `mlops.manifest`, `mlops.validation` (JSON) |
//! | source | where the files are: `get-download-uri`'s answer for `models:/` and `runs:/` sources; `mlflow-artifacts:/path` and `mlflow-artifacts://this-host:port/path` are this server's proxy, one naming another server is not fetched (a download says the source is outside this store) |
//!
//! Tags whose keys start with `mlops.` are this backend's own and hidden from
//! [`ModelVersion::tags`]; setting one through the trait is refused.
//!
//! What MLflow cannot do, and what this backend does instead:
//! - **No audit log**: [`ModelRegistry::audit_log`] is [`Error::Unsupported`] (and so are
//!   `alias_at` and `alias_history`).
//! - **Alias compare-and-set is not atomic on the server**: MLflow sets an alias
//!   unconditionally. Moves made through one [`MlflowRegistry`] (and its clones) are
//!   serialized, so the compare and the set cannot interleave between them; another
//!   process, or MLflow's own client, moving the same alias between our read and our
//!   write wins silently.
//! - **Several writes per call**: a version's tags, run and status are separate requests; a
//!   failure half-way can leave some of them written. Versions are created PENDING and
//!   become READY last, so a half-registered version never resolves as `latest` or takes
//!   an alias.
//! - **Runs**: a version we create gets a run of its own, tagged `mlops.registration`.
//!   Deleting a version or model whose run carries that tag deletes the run, MLflow's way
//!   (marked deleted until `mlflow gc`), unless a version this client can see was
//!   registered from it. A registration MLflow refuses deletes its run at once.
//! - **`latest_version`** is the highest version MLflow still lists: deleting the highest
//!   version lowers it (MLflow never reuses the number, though).

mod artifacts;
mod client;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use mlops_core::{Lineage, ModelRef, VersionSelector};
use reqwest::Method;
use serde_json::{Value, json};

pub use artifacts::MlflowArtifacts;
use client::{Auth, Client};

use crate::contract::{
    alias_not_found, check_aliasable, check_deletable, check_expect, check_final_manifest,
    check_transition, model_not_found, no_ready_version, version_not_found,
};
use crate::error::{Error, Result};
use crate::model::{
    AuditEvent, AuditQuery, Change, Expect, ModelQuery, ModelVersion, NewVersion, RegisteredModel,
    VersionQuery, VersionStatus, check_alias, check_name,
};
use crate::registry::{ModelRegistry, VersionUpdate};
use crate::validation::ValidationReport;

/// Prefix of the tags this backend keeps its own fields in.
pub(crate) const TAG_PREFIX: &str = "mlops.";
const STATUS: &str = "mlops.status";
const STATUS_MESSAGE: &str = "mlops.status_message";
const MANIFEST: &str = "mlops.manifest";
const VALIDATION: &str = "mlops.validation";
const LINEAGE: &str = "mlops.lineage";
const METRICS: &str = "mlops.metrics";
const CREATED_BY: &str = "mlops.created_by";
/// On the runs this backend creates, one per version: the model's name.
const REGISTRATION: &str = "mlops.registration";
/// MLflow's default experiment, where the runs of versions we create go.
const EXPERIMENT: &str = "0";
/// How many versions or models one search page asks for: small enough that a page of
/// versions carrying large tags stays under the client's answer limit.
const PAGE: &str = "200";
/// How many version reads run at once when a search converts its page.
const CONVERT_AHEAD: usize = 16;

/// A [`ModelRegistry`] kept in an MLflow tracking server. Cheap to clone.
///
/// ```no_run
/// # async fn demo() -> mlops_registry::Result<()> {
/// use mlops_registry::{MlflowRegistry, ModelRegistryExt};
/// let mlflow = MlflowRegistry::new("http://127.0.0.1:5000")?;
/// let production = mlflow.resolve_str("fraud@production").await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct MlflowRegistry {
    client: Client,
    /// Serializes alias moves made through this handle (see the module's notes).
    alias_moves: Arc<tokio::sync::Mutex<()>>,
}

impl MlflowRegistry {
    /// The tracking server at `uri` (`http://host:5000`, `https://...`), with credentials
    /// from `MLFLOW_TRACKING_TOKEN`, or `MLFLOW_TRACKING_USERNAME` and
    /// `MLFLOW_TRACKING_PASSWORD`. Makes no request.
    pub fn new(uri: &str) -> Result<Self> {
        Ok(MlflowRegistry {
            client: Client::new(uri, Auth::from_env())?,
            alias_moves: Arc::default(),
        })
    }

    /// Gives each metadata call at most `timeout` (default 30 s) before it fails as
    /// [`Error::Unavailable`]. Artifact transfers are bounded by a minute without a byte
    /// instead, whatever their length.
    pub fn with_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.client = self.client.with_timeout(timeout);
        self
    }

    /// The artifact store of the same server (its `mlflow-artifacts:` proxy).
    pub fn artifacts(&self) -> MlflowArtifacts {
        MlflowArtifacts::new(self.client.clone())
    }

    /// The server's address.
    pub fn uri(&self) -> String {
        self.client.base().as_str().trim_end_matches('/').to_owned()
    }

    async fn get(&self, endpoint: &str, query: &[(&str, &str)]) -> Result<Value> {
        self.client.call(Method::GET, endpoint, query, None).await
    }

    async fn send(&self, method: Method, endpoint: &str, body: Value) -> Result<Value> {
        self.client.call(method, endpoint, &[], Some(&body)).await
    }

    async fn raw_model(&self, name: &str) -> Result<Value> {
        match self.get("registered-models/get", &[("name", name)]).await {
            Ok(v) => Ok(v["registered_model"].clone()),
            Err(Error::NotFound { .. }) => Err(model_not_found(name)),
            Err(e) => Err(e),
        }
    }

    async fn raw_version(&self, name: &str, version: u64) -> Result<Value> {
        let number = version.to_string();
        match self
            .get(
                "model-versions/get",
                &[("name", name), ("version", number.as_str())],
            )
            .await
        {
            Ok(v) => Ok(v["model_version"].clone()),
            Err(Error::NotFound { .. }) => Err(version_not_found(name, version)),
            Err(e) => Err(e),
        }
    }

    /// Every item of a search (`model-versions/search`, `registered-models/search`), page
    /// by page; `key` names the answer's list.
    async fn search_all(
        &self,
        endpoint: &str,
        key: &str,
        query: &[(&str, &str)],
    ) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let mut q = query.to_vec();
            q.push(("max_results", PAGE));
            if !token.is_empty() {
                q.push(("page_token", token.as_str()));
            }
            let page = self.get(endpoint, &q).await?;
            if let Some(items) = page[key].as_array() {
                out.extend(items.iter().cloned());
            }
            match page["next_page_token"].as_str() {
                // A server repeating its token would page forever.
                Some(t) if !t.is_empty() && t != token => token = t.to_owned(),
                _ => return Ok(out),
            }
        }
    }

    /// Every version matching an MLflow filter.
    async fn raw_versions(&self, filter: &str) -> Result<Vec<Value>> {
        self.search_all(
            "model-versions/search",
            "model_versions",
            &[("filter", filter)],
        )
        .await
    }

    async fn highest_version(&self, name: &str) -> Result<u64> {
        let filter = name_filter(name);
        let page = self
            .get(
                "model-versions/search",
                &[
                    ("filter", filter.as_str()),
                    ("max_results", "1"),
                    ("order_by", "version_number DESC"),
                ],
            )
            .await?;
        Ok(page["model_versions"]
            .as_array()
            .and_then(|a| a.first())
            .map(|v| number(&v["version"]))
            .unwrap_or(0))
    }

    async fn model_from(&self, raw: &Value) -> Result<RegisteredModel> {
        let name = text(&raw["name"]).unwrap_or_default();
        let aliases = raw["aliases"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|x| (text(&x["alias"]).unwrap_or_default(), number(&x["version"])))
                    .collect()
            })
            .unwrap_or_default();
        Ok(RegisteredModel {
            latest_version: self.highest_version(&name).await?,
            description: text(&raw["description"]),
            tags: user_tags(&tags_of(raw)),
            aliases,
            created_at: millis(&raw["creation_timestamp"]),
            updated_at: millis(&raw["last_updated_timestamp"]),
            name,
        })
    }

    /// An MLflow model version as ours, with its run's metrics and params.
    async fn version_from(&self, raw: &Value) -> Result<ModelVersion> {
        let name = text(&raw["name"]).unwrap_or_default();
        let version = number(&raw["version"]);
        let tags = tags_of(raw);
        let run_id = text(&raw["run_id"]);
        let (mut metrics, params, dataset) = match &run_id {
            Some(id) => self.run_facts(id).await?,
            None => Default::default(),
        };
        if let Some(extra) = tags.get(METRICS) {
            let extra: BTreeMap<String, f64> = decode(METRICS, extra)?;
            metrics.extend(extra);
        }
        let lineage = match tags.get(LINEAGE) {
            Some(l) => {
                let mut ours: Lineage = decode(LINEAGE, l)?;
                if ours.run_id.is_none() {
                    ours.run_id = run_id.clone();
                }
                ours
            }
            None => Lineage {
                run_id: run_id.clone(),
                dataset,
                parent_version: None,
                source: None,
            },
        };
        let status = match tags.get(STATUS) {
            Some(s) => VersionStatus::parse(s)?,
            None if raw["current_stage"].as_str() == Some("Archived") => VersionStatus::Archived,
            None => match raw["status"].as_str() {
                Some("PENDING_REGISTRATION") => VersionStatus::Pending,
                Some("FAILED_REGISTRATION") => VersionStatus::Failed,
                _ => VersionStatus::Ready,
            },
        };
        let status_message = match tags.get(STATUS_MESSAGE) {
            Some(m) => Some(m.clone()),
            None if tags.contains_key(STATUS) => None,
            None => text(&raw["status_message"]),
        };
        let source = match text(&raw["source"]) {
            Some(s) if s.starts_with("models:/") || s.starts_with("runs:/") => {
                Some(self.download_uri(&name, version).await?)
            }
            other => other,
        };
        let mut aliases: Vec<String> = raw["aliases"]
            .as_array()
            .map(|a| a.iter().filter_map(text).collect())
            .unwrap_or_default();
        aliases.sort();
        Ok(ModelVersion {
            status,
            status_message,
            description: text(&raw["description"]),
            source,
            manifest: tags
                .get(MANIFEST)
                .map(|m| decode(MANIFEST, m))
                .transpose()?,
            metrics,
            params,
            lineage,
            aliases,
            validation: tags
                .get(VALIDATION)
                .map(|r| decode(VALIDATION, r))
                .transpose()?,
            created_at: millis(&raw["creation_timestamp"]),
            updated_at: millis(&raw["last_updated_timestamp"]),
            tags: user_tags(&tags),
            name,
            version,
        })
    }

    /// A run's latest metrics, its params and the first dataset it took as input. A run
    /// that is gone (deleted by its owner) has none.
    async fn run_facts(
        &self,
        run_id: &str,
    ) -> Result<(
        BTreeMap<String, f64>,
        BTreeMap<String, String>,
        Option<String>,
    )> {
        let run = match self.get("runs/get", &[("run_id", run_id)]).await {
            Ok(r) => r,
            Err(Error::NotFound { .. }) => return Ok(Default::default()),
            Err(e) => return Err(e),
        };
        let run = &run["run"];
        let metrics = run["data"]["metrics"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|m| Some((text(&m["key"])?, m["value"].as_f64()?)))
                    .collect()
            })
            .unwrap_or_default();
        let params = run["data"]["params"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|p| Some((text(&p["key"])?, text(&p["value"]).unwrap_or_default())))
                    .collect()
            })
            .unwrap_or_default();
        let dataset = run["inputs"]["dataset_inputs"]
            .as_array()
            .and_then(|a| a.first())
            .and_then(|d| text(&d["dataset"]["source"]).or_else(|| text(&d["dataset"]["name"])));
        Ok((metrics, params, dataset))
    }

    async fn download_uri(&self, name: &str, version: u64) -> Result<String> {
        let number = version.to_string();
        let answer = self
            .get(
                "model-versions/get-download-uri",
                &[("name", name), ("version", number.as_str())],
            )
            .await?;
        text(&answer["artifact_uri"]).ok_or_else(|| {
            Error::Corrupt(format!(
                "MLflow gave no download URI for model '{name}' version {version}"
            ))
        })
    }

    async fn set_version_tag(
        &self,
        name: &str,
        version: u64,
        key: &str,
        value: &str,
    ) -> Result<()> {
        self.send(
            Method::POST,
            "model-versions/set-tag",
            json!({"name": name, "version": version.to_string(), "key": key, "value": value}),
        )
        .await
        .map(drop)
    }

    async fn delete_version_tag(&self, name: &str, version: u64, key: &str) -> Result<()> {
        match self
            .send(
                Method::DELETE,
                "model-versions/delete-tag",
                json!({"name": name, "version": version.to_string(), "key": key}),
            )
            .await
        {
            Ok(_) | Err(Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// A run for a version we create, holding its metrics, params and files: its id and
    /// artifact URI.
    async fn create_run(&self, name: &str, new: &NewVersion) -> Result<(String, String)> {
        let now = Utc::now().timestamp_millis();
        let run = self
            .send(
                Method::POST,
                "runs/create",
                json!({
                    "experiment_id": EXPERIMENT,
                    "start_time": now,
                    "run_name": format!("{name} (mlops registration)"),
                    "tags": [
                        {"key": "mlflow.runName", "value": format!("{name} (mlops registration)")},
                        {"key": REGISTRATION, "value": name},
                    ],
                }),
            )
            .await?;
        let run_id = text(&run["run"]["info"]["run_id"])
            .ok_or_else(|| Error::Corrupt("MLflow created a run without an id".into()))?;
        let filled = async {
            let artifact_uri = text(&run["run"]["info"]["artifact_uri"]).ok_or_else(|| {
                Error::Corrupt(format!(
                    "MLflow created run {run_id} without an artifact URI"
                ))
            })?;
            self.log_metrics(&run_id, &new.metrics, &new.params).await?;
            self.send(
                Method::POST,
                "runs/update",
                json!({"run_id": run_id, "status": "FINISHED", "end_time": Utc::now().timestamp_millis()}),
            )
            .await?;
            Ok(artifact_uri)
        };
        match filled.await {
            Ok(artifact_uri) => Ok((run_id, artifact_uri)),
            Err(e) => {
                self.delete_run(&run_id).await;
                Err(e)
            }
        }
    }

    /// Deletes a run this backend created (MLflow marks it deleted; `mlflow gc` removes
    /// it and its files for good), unless a version this client can see was registered
    /// from it. Runs made by anyone else are left alone. Best effort: called once the
    /// version it held is gone or was refused, so a failure is logged, not returned.
    async fn delete_run(&self, run_id: &str) {
        let ours = match self.get("runs/get", &[("run_id", run_id)]).await {
            Ok(run) => run["run"]["data"]["tags"]
                .as_array()
                .is_some_and(|tags| tags.iter().any(|t| t["key"].as_str() == Some(REGISTRATION))),
            Err(Error::NotFound { .. }) => return,
            Err(e) => {
                tracing::warn!(run_id, error = %e, "cannot read this MLflow run to clean it up: it stays");
                return;
            }
        };
        if !ours {
            return;
        }
        // A version registered from it elsewhere (`runs:/<id>/model`) still needs it.
        match self
            .raw_versions(&format!("run_id = '{}'", quote(run_id)))
            .await
        {
            Ok(others) if others.is_empty() => {}
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(run_id, error = %e, "cannot tell whether an MLflow version uses this run: it stays");
                return;
            }
        }
        if let Err(e) = self
            .send(Method::POST, "runs/delete", json!({"run_id": run_id}))
            .await
        {
            tracing::warn!(run_id, error = %e, "cannot delete this MLflow run: it stays");
        }
    }

    /// Logs metrics and params in as many `runs/log-batch` calls as MLflow's batch
    /// limits need (100 params, 1000 entries in all, per call).
    async fn log_metrics(
        &self,
        run_id: &str,
        metrics: &BTreeMap<String, f64>,
        params: &BTreeMap<String, String>,
    ) -> Result<()> {
        const PARAMS_PER_BATCH: usize = 100;
        const ENTRIES_PER_BATCH: usize = 1000;
        let now = Utc::now().timestamp_millis();
        let metrics: Vec<Value> = metrics
            .iter()
            .map(|(k, v)| json!({"key": k, "value": v, "timestamp": now, "step": 0}))
            .collect();
        let params: Vec<Value> = params
            .iter()
            .map(|(k, v)| json!({"key": k, "value": v}))
            .collect();
        let (mut m, mut p) = (0, 0);
        while m < metrics.len() || p < params.len() {
            let p_end = (p + PARAMS_PER_BATCH).min(params.len());
            let m_end = (m + ENTRIES_PER_BATCH - (p_end - p)).min(metrics.len());
            self.send(
                Method::POST,
                "runs/log-batch",
                json!({"run_id": run_id, "metrics": &metrics[m..m_end], "params": &params[p..p_end]}),
            )
            .await?;
            (m, p) = (m_end, p_end);
        }
        Ok(())
    }

    /// The version `alias` points at, from the model's alias list (MLflow answers a
    /// missing alias as a bad parameter, indistinguishable from a bad name).
    async fn current_alias(&self, name: &str, alias: &str) -> Result<Option<u64>> {
        let raw = self.raw_model(name).await?;
        Ok(raw["aliases"].as_array().and_then(|a| {
            a.iter()
                .find(|x| x["alias"].as_str() == Some(alias))
                .map(|x| number(&x["version"]))
        }))
    }
}

#[async_trait]
impl ModelRegistry for MlflowRegistry {
    async fn create_model(
        &self,
        name: &str,
        description: Option<&str>,
        tags: &BTreeMap<String, String>,
    ) -> Result<RegisteredModel> {
        check_name(name)?;
        check_user_tags(tags.keys())?;
        let tags: Vec<Value> = tags
            .iter()
            .map(|(k, v)| json!({"key": k, "value": v}))
            .collect();
        let mut body = json!({"name": name, "tags": tags});
        if let Some(d) = description {
            body["description"] = json!(d);
        }
        match self
            .send(Method::POST, "registered-models/create", body)
            .await
        {
            Ok(created) => self.model_from(&created["registered_model"]).await,
            Err(Error::AlreadyExists { .. }) => Err(Error::AlreadyExists {
                what: format!("model '{name}'"),
            }),
            Err(e) => Err(e),
        }
    }

    async fn get_model(&self, name: &str) -> Result<RegisteredModel> {
        let raw = self.raw_model(name).await?;
        self.model_from(&raw).await
    }

    async fn update_model(
        &self,
        name: &str,
        description: Option<&str>,
        tags: &BTreeMap<String, Option<String>>,
    ) -> Result<RegisteredModel> {
        check_user_tags(tags.keys())?;
        self.raw_model(name).await?;
        if let Some(d) = description {
            self.send(
                Method::PATCH,
                "registered-models/update",
                json!({"name": name, "description": d}),
            )
            .await?;
        }
        for (key, value) in tags {
            match value {
                Some(v) => {
                    self.send(
                        Method::POST,
                        "registered-models/set-tag",
                        json!({"name": name, "key": key, "value": v}),
                    )
                    .await?;
                }
                None => match self
                    .send(
                        Method::DELETE,
                        "registered-models/delete-tag",
                        json!({"name": name, "key": key}),
                    )
                    .await
                {
                    Ok(_) | Err(Error::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                },
            }
        }
        self.get_model(name).await
    }

    async fn search_models(&self, query: &ModelQuery) -> Result<Vec<RegisteredModel>> {
        let filter = match &query.name_prefix {
            Some(p) => format!("name LIKE '{}%'", quote(p)),
            None => String::new(),
        };
        let mut q = vec![("order_by", "name ASC")];
        if !filter.is_empty() {
            q.push(("filter", filter.as_str()));
        }
        let raw = self
            .search_all("registered-models/search", "registered_models", &q)
            .await?;
        let mut out = Vec::new();
        for r in &raw {
            let m = self.model_from(r).await?;
            if query.matches(&m) {
                out.push(m);
            }
            if query.limit.is_some_and(|l| out.len() >= l) {
                break;
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn delete_model(&self, name: &str, _change: &Change) -> Result<()> {
        self.raw_model(name).await?;
        let runs: std::collections::BTreeSet<String> = self
            .raw_versions(&name_filter(name))
            .await?
            .iter()
            .filter_map(|v| text(&v["run_id"]))
            .collect();
        match self
            .send(
                Method::DELETE,
                "registered-models/delete",
                json!({"name": name}),
            )
            .await
        {
            Ok(_) => {}
            Err(Error::NotFound { .. }) => return Err(model_not_found(name)),
            Err(e) => return Err(e),
        }
        futures::stream::iter(runs)
            .for_each_concurrent(client::IN_FLIGHT, |run_id| async move {
                self.delete_run(&run_id).await;
            })
            .await;
        Ok(())
    }

    async fn create_version(
        &self,
        name: &str,
        version: NewVersion,
        change: &Change,
    ) -> Result<ModelVersion> {
        check_name(name)?;
        let mut new = crate::contract::prepare_version(version)?;
        check_user_tags(new.tags.keys())?;
        match self
            .send(
                Method::POST,
                "registered-models/create",
                json!({"name": name}),
            )
            .await
        {
            Ok(_) | Err(Error::AlreadyExists { .. }) => {}
            Err(e) => return Err(e),
        }
        // Every version gets a run: MLflow keeps metrics and params there, and accepts an
        // `mlflow-artifacts:` source only inside a run's artifacts. The files go where
        // MLflow's own `log_model` puts them, `<run artifacts>/model`, unless the caller
        // names a URI MLflow's clients can fetch themselves (s3://..., say); a local path
        // given as the source is kept as the lineage's.
        let (run_id, artifact_uri) = self.create_run(name, &new).await?;
        let created = async {
            let source = match new.source.take() {
                Some(s) if fetchable(&s) && !s.starts_with("mlflow-artifacts:") => s,
                other => {
                    if new.lineage.source.is_none() {
                        new.lineage.source = other;
                    }
                    format!("{}/model", artifact_uri.trim_end_matches('/'))
                }
            };
            let status = if new.ready {
                VersionStatus::Ready
            } else {
                VersionStatus::Pending
            };
            let mut tags: Vec<Value> = new
                .tags
                .iter()
                .map(|(k, v)| json!({"key": k, "value": v}))
                .collect();
            tags.push(json!({"key": STATUS, "value": status.as_str()}));
            tags.push(json!({"key": CREATED_BY, "value": change.actor}));
            if new.lineage != Lineage::default() {
                tags.push(json!({"key": LINEAGE, "value": encode(&new.lineage)?}));
            }
            if let Some(m) = &new.manifest {
                tags.push(json!({"key": MANIFEST, "value": encode(m)?}));
            }
            let mut body = json!({"name": name, "source": source, "run_id": run_id, "tags": tags});
            if let Some(d) = &new.description {
                body["description"] = json!(d);
            }
            self.send(Method::POST, "model-versions/create", body).await
        };
        // A version MLflow refused leaves no run behind. A failure a retry could help
        // (a timeout, a 5xx) keeps it: MLflow may have made the version all the same.
        let created = match created.await {
            Ok(c) => c,
            Err(e) => {
                if !e.is_temporary() {
                    self.delete_run(&run_id).await;
                }
                return Err(e);
            }
        };
        self.version_from(&created["model_version"]).await
    }

    async fn get_version(&self, name: &str, version: u64) -> Result<ModelVersion> {
        let raw = self.raw_version(name, version).await?;
        self.version_from(&raw).await
    }

    async fn update_version(
        &self,
        name: &str,
        version: u64,
        update: &VersionUpdate,
    ) -> Result<ModelVersion> {
        update.validate()?;
        check_user_tags(update.tags.keys())?;
        let raw = self.raw_version(name, version).await?;
        let current = self.version_from(&raw).await?;
        check_final_manifest(&current, update)?;
        if let Some(d) = &update.description {
            self.send(
                Method::PATCH,
                "model-versions/update",
                json!({"name": name, "version": version.to_string(), "description": d}),
            )
            .await?;
        }
        for (key, value) in &update.tags {
            match value {
                Some(v) => self.set_version_tag(name, version, key, v).await?,
                None => self.delete_version_tag(name, version, key).await?,
            }
        }
        if !update.metrics.is_empty() {
            match text(&raw["run_id"]) {
                Some(run) => {
                    self.log_metrics(&run, &update.metrics, &BTreeMap::new())
                        .await?
                }
                // No run to log into (a version MLflow has without one): keep them in a tag.
                None => {
                    let mut extra: BTreeMap<String, f64> = match tags_of(&raw).get(METRICS) {
                        Some(m) => decode(METRICS, m)?,
                        None => BTreeMap::new(),
                    };
                    extra.extend(update.metrics.clone());
                    self.set_version_tag(name, version, METRICS, &encode(&extra)?)
                        .await?
                }
            }
        }
        if let Some(m) = &update.manifest {
            self.set_version_tag(name, version, MANIFEST, &encode(m)?)
                .await?;
        }
        self.get_version(name, version).await
    }

    async fn set_version_status(
        &self,
        name: &str,
        version: u64,
        status: VersionStatus,
        message: Option<&str>,
        _change: &Change,
    ) -> Result<ModelVersion> {
        // Archiving checks the version's aliases: no alias may move meanwhile.
        let _moving = self.alias_moves.lock().await;
        let current = self.get_version(name, version).await?;
        check_transition(&current, status)?;
        match message {
            Some(m) => {
                self.set_version_tag(name, version, STATUS_MESSAGE, m)
                    .await?
            }
            None => {
                self.delete_version_tag(name, version, STATUS_MESSAGE)
                    .await?
            }
        }
        self.set_version_tag(name, version, STATUS, status.as_str())
            .await?;
        self.get_version(name, version).await
    }

    async fn set_validation(
        &self,
        name: &str,
        version: u64,
        report: &ValidationReport,
    ) -> Result<()> {
        self.raw_version(name, version).await?;
        self.set_version_tag(name, version, VALIDATION, &encode(report)?)
            .await
    }

    async fn search_versions(&self, query: &VersionQuery) -> Result<Vec<ModelVersion>> {
        let filter = match (&query.name, &query.name_prefix) {
            (Some(n), _) => name_filter(n),
            (None, Some(p)) => format!("name LIKE '{}%'", quote(p)),
            (None, None) => String::new(),
        };
        let raw = self.raw_versions(&filter).await?;
        let reads: Vec<_> = raw.iter().map(|r| self.version_from(r)).collect();
        let converted: Vec<ModelVersion> = futures::stream::iter(reads)
            .buffered(CONVERT_AHEAD)
            .try_collect()
            .await?;
        let matching = converted.into_iter().filter(|v| query.matches(v)).collect();
        Ok(query.finish(matching))
    }

    async fn delete_version(&self, name: &str, version: u64, _change: &Change) -> Result<()> {
        let moving = self.alias_moves.lock().await;
        let raw = self.raw_version(name, version).await?;
        let mut aliases: Vec<String> = raw["aliases"]
            .as_array()
            .map(|a| a.iter().filter_map(text).collect())
            .unwrap_or_default();
        aliases.sort();
        check_deletable(name, version, &aliases)?;
        match self
            .send(
                Method::DELETE,
                "model-versions/delete",
                json!({"name": name, "version": version.to_string()}),
            )
            .await
        {
            Ok(_) => {}
            Err(Error::NotFound { .. }) => return Err(version_not_found(name, version)),
            Err(e) => return Err(e),
        }
        // The version is gone: alias moves need not wait for its run's cleanup.
        drop(moving);
        if let Some(run_id) = text(&raw["run_id"]) {
            self.delete_run(&run_id).await;
        }
        Ok(())
    }

    async fn set_alias(
        &self,
        name: &str,
        alias: &str,
        version: u64,
        expect: Expect,
        _change: &Change,
        _report: Option<&ValidationReport>,
    ) -> Result<Option<u64>> {
        check_alias(alias)?;
        let _moving = self.alias_moves.lock().await;
        let before = self.current_alias(name, alias).await?;
        check_expect(name, alias, before, expect)?;
        let target = self.get_version(name, version).await?;
        check_aliasable(&target)?;
        self.send(
            Method::POST,
            "registered-models/alias",
            json!({"name": name, "alias": alias, "version": version.to_string()}),
        )
        .await?;
        Ok(before)
    }

    async fn delete_alias(
        &self,
        name: &str,
        alias: &str,
        expect: Expect,
        _change: &Change,
    ) -> Result<u64> {
        check_alias(alias)?;
        let _moving = self.alias_moves.lock().await;
        let before = self.current_alias(name, alias).await?;
        check_expect(name, alias, before, expect)?;
        let Some(before) = before else {
            return Err(alias_not_found(name, alias));
        };
        self.send(
            Method::DELETE,
            "registered-models/alias",
            json!({"name": name, "alias": alias}),
        )
        .await?;
        Ok(before)
    }

    async fn resolve(&self, reference: &ModelRef) -> Result<ModelVersion> {
        let name = reference.name.as_str();
        match &reference.selector {
            VersionSelector::Version(v) => self.get_version(name, *v).await,
            VersionSelector::Alias(alias) => match self.current_alias(name, alias).await? {
                Some(v) => self.get_version(name, v).await,
                None => Err(alias_not_found(name, alias)),
            },
            VersionSelector::Latest => {
                let mut raw = self.raw_versions(&name_filter(name)).await?;
                raw.sort_by_key(|r| std::cmp::Reverse(number(&r["version"])));
                for r in &raw {
                    let v = self.version_from(r).await?;
                    if v.status == VersionStatus::Ready {
                        return Ok(v);
                    }
                }
                if raw.is_empty() {
                    self.raw_model(name).await?;
                }
                Err(no_ready_version(name))
            }
        }
    }

    async fn audit_log(&self, _query: &AuditQuery) -> Result<Vec<AuditEvent>> {
        Err(Error::Unsupported(
            "MLflow keeps no audit log of alias moves and status changes".into(),
        ))
    }
}

/// A source MLflow's clients can download from themselves.
fn fetchable(source: &str) -> bool {
    let Some((scheme, _)) = source.split_once(':') else {
        return false;
    };
    scheme.len() > 1
        && scheme != "file"
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

fn check_user_tags<'a>(keys: impl IntoIterator<Item = &'a String>) -> Result<()> {
    for k in keys {
        if k.starts_with(TAG_PREFIX) {
            return Err(Error::invalid(format!(
                "tag '{k}': keys starting with '{TAG_PREFIX}' are reserved for the registry's own fields"
            )));
        }
    }
    Ok(())
}

fn name_filter(name: &str) -> String {
    format!("name='{}'", quote(name))
}

/// A string inside an MLflow filter's single quotes.
fn quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\'', "\\'")
}

fn text(v: &Value) -> Option<String> {
    v.as_str().filter(|s| !s.is_empty()).map(str::to_owned)
}

/// A version number, which MLflow sends as a string.
fn number(v: &Value) -> u64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0),
        other => other.as_u64().unwrap_or(0),
    }
}

fn millis(v: &Value) -> DateTime<Utc> {
    let ms = match v {
        Value::String(s) => s.parse().unwrap_or(0),
        other => other.as_i64().unwrap_or(0),
    };
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

fn tags_of(raw: &Value) -> BTreeMap<String, String> {
    raw["tags"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| {
                    Some((
                        text(&t["key"])?,
                        t["value"].as_str().unwrap_or("").to_owned(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn user_tags(tags: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    tags.iter()
        .filter(|(k, _)| !k.starts_with(TAG_PREFIX))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn encode<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::invalid(e.to_string()))
}

fn decode<T: serde::de::DeserializeOwned>(key: &str, value: &str) -> Result<T> {
    serde_json::from_str(value)
        .map_err(|e| Error::Corrupt(format!("MLflow tag '{key}' does not decode: {e}")))
}
