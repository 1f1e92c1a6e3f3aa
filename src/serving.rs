//! Serving registered models (features `registry` and `runtime`).
//!
//! [`RegistryRepository`] is the Open Inference Protocol's repository extension over a
//! model registry: a client loads `mlp@production`, `mlp/3` or `mlp` (its latest
//! version) by name, and the server downloads the version, verifies every file against
//! its manifest and serves it as `mlp` version 3; an unload of the same name stops it.
//! With [`with_announcements`](RegistryRepository::with_announcements), each version it
//! loads is announced in the registry's endpoint directory while served, so clients that
//! ask by model id find it.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use mlops::registry::Registry;
//! use mlops::runtime::{ModelServer, ModelSpec};
//! use mlops::runtime::http::{HttpConfig, router};
//! use mlops::serving::RegistryRepository;
//!
//! let registry = Registry::open("./registry").await?;
//! let server = Arc::new(ModelServer::new());
//! let repository = RegistryRepository::new(registry, "./downloads", ModelSpec::default());
//! let app = router(
//!     server,
//!     HttpConfig::default().with_model_repository(Arc::new(repository)),
//! );
//! # drop(app);
//! # Ok(())
//! # }
//! ```

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mlops_core::{ModelRef, VersionSelector};
use mlops_registry::{Endpoint, Heartbeat, Registry, VersionQuery, VersionStatus};
use mlops_runtime::protocol::{IndexEntry, ModelState, Repository, Status};
use mlops_runtime::{Code, ModelServer, ModelSpec};

/// The most versions the index lists.
const INDEX_LIMIT: usize = 1000;

/// The repository extension over a [`Registry`]: loads by `name@alias`, `name/N` or
/// `name`, into files downloaded under a directory of its own.
#[derive(Debug)]
pub struct RegistryRepository {
    registry: Registry,
    downloads: PathBuf,
    spec: ModelSpec,
    /// Versions already downloaded and verified: where their entry is. A reload serves
    /// those files again rather than fetching the version twice; they are never replaced
    /// while served, since new instances of a served version load from them. A version's
    /// slot is held during its download, so that loads of it at once download it once.
    fetched: Mutex<HashMap<(String, u64), Fetched>>,
    /// Where this server is reached, announced for each version it loads.
    announce: Option<Announce>,
    /// The heartbeats of the versions announced, by name and version.
    heartbeats: Mutex<HashMap<(String, u64), Vec<Heartbeat>>>,
}

#[derive(Debug)]
struct Announce {
    addresses: Vec<(String, mlops_registry::Protocol)>,
    ttl: Duration,
}

/// Where a version's verified files are, once downloaded.
type Fetched = Arc<tokio::sync::Mutex<Option<PathBuf>>>;

impl RegistryRepository {
    /// Versions of `registry`, downloaded under `downloads` (created as needed) and served
    /// with `spec` (its name and version are the registered ones).
    pub fn new(registry: Registry, downloads: impl Into<PathBuf>, spec: ModelSpec) -> Self {
        RegistryRepository {
            registry,
            downloads: downloads.into(),
            spec,
            fetched: Mutex::new(HashMap::new()),
            announce: None,
            heartbeats: Mutex::new(HashMap::new()),
        }
    }

    /// Announces each version this repository loads at every one of `addresses`
    /// (`host:port` and the protocol spoken there), with leases of `ttl` renewed by
    /// heartbeat, and withdraws them when the version is unloaded. A version served but
    /// not recorded (the registry refused the endpoint) is a load error, and loading it
    /// again announces it again.
    pub fn with_announcements(
        mut self,
        addresses: impl IntoIterator<Item = (String, mlops_registry::Protocol)>,
        ttl: Duration,
    ) -> Self {
        self.announce = Some(Announce {
            addresses: addresses.into_iter().collect(),
            ttl,
        });
        self
    }

    fn heartbeats(&self) -> std::sync::MutexGuard<'_, HashMap<(String, u64), Vec<Heartbeat>>> {
        self.heartbeats.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Announces `name` version `version`, served by other means (loaded at start, say),
    /// as this repository announces what it loads: once, and withdrawn when an unload
    /// through the repository stops it. Nothing happens without
    /// [`with_announcements`](Self::with_announcements).
    pub async fn announce(&self, name: &str, version: u64) -> mlops_registry::Result<()> {
        let key = (name.to_owned(), version);
        let Some(announce) = &self.announce else {
            return Ok(());
        };
        if self.heartbeats().contains_key(&key) {
            return Ok(());
        }
        let mut beats = Vec::with_capacity(announce.addresses.len());
        for (address, protocol) in &announce.addresses {
            let endpoint = Endpoint::new(&key.0, Some(key.1), address, protocol.clone());
            match self.registry.announce(endpoint, announce.ttl).await {
                Ok(beat) => beats.push(beat),
                Err(e) => {
                    for beat in beats {
                        beat.stop().await;
                    }
                    return Err(e);
                }
            }
        }
        let raced = self.heartbeats().insert(key, beats);
        // Two loads at once both announced: one set of heartbeats is enough.
        if let Some(extra) = raced {
            for beat in extra {
                beat.stop().await;
            }
        }
        Ok(())
    }

    fn slot(&self, key: &(String, u64)) -> Fetched {
        let mut fetched = self.fetched.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(fetched.entry(key.clone()).or_default())
    }

    /// Withdraws every endpoint announced, waiting until they are gone: for a server
    /// stopping.
    pub async fn withdraw_all(&self) {
        let all: Vec<Heartbeat> = self.heartbeats().drain().flat_map(|(_, b)| b).collect();
        for beat in all {
            beat.stop().await;
        }
    }
}

/// A registry error as the protocol says it: one a retry may cure (the registry down,
/// busy or slow) is `UNAVAILABLE` (503), so that a client knows to try again.
fn status(e: mlops_registry::Error) -> Status {
    use mlops_registry::Error;
    let code = match &e {
        Error::NotFound { .. } => Code::NotFound,
        Error::InvalidArgument(_) => Code::InvalidArgument,
        Error::FailedPrecondition(_) => Code::FailedPrecondition,
        Error::Unsupported(_) | Error::NotCompiled(_) => Code::Unimplemented,
        e if e.is_temporary() => Code::Unavailable,
        _ => Code::Internal,
    };
    Status::new(code, e.to_string())
}

#[async_trait::async_trait]
impl Repository for RegistryRepository {
    /// Every alias (`name@alias`) and every ready version (`name/N`).
    async fn list(&self) -> Result<Vec<IndexEntry>, Status> {
        let query = VersionQuery {
            status: vec![VersionStatus::Ready],
            limit: Some(INDEX_LIMIT),
            ..VersionQuery::default()
        };
        let versions = self
            .registry
            .models()
            .search_versions(&query)
            .await
            .map_err(status)?;
        let entry = |name: String, version: u64| IndexEntry {
            name,
            version: Some(version),
            state: ModelState::Unavailable,
            reason: String::new(),
        };
        let mut index = Vec::new();
        for v in versions {
            for alias in &v.aliases {
                index.push(entry(format!("{}@{alias}", v.name), v.version));
            }
            index.push(entry(format!("{}/{}", v.name, v.version), v.version));
        }
        index.sort_by(|a, b| (&a.name, a.version).cmp(&(&b.name, b.version)));
        Ok(index)
    }

    async fn load(
        &self,
        server: &Arc<ModelServer>,
        name: &str,
    ) -> Result<Vec<(String, u64)>, Status> {
        // Resolved once: an alias that moves during the download does not mix versions.
        let version = self.registry.resolve(name).await.map_err(status)?;
        let key = (version.name.clone(), version.version);
        let slot = self.slot(&key);
        let mut known = slot.lock().await;
        let entry = match known.as_ref() {
            Some(entry) => entry.clone(),
            None => {
                let dest = self
                    .downloads
                    .join(&version.name)
                    .join(version.version.to_string());
                let reference = format!("{}/{}", version.name, version.version);
                let got = self
                    .registry
                    .download(&reference, &dest)
                    .await
                    .map_err(status)?;
                *known = Some(got.entry.clone());
                got.entry
            }
        };
        drop(known);
        let spec = self
            .spec
            .clone()
            .with_name(key.0.clone())
            .with_version(key.1);
        let s = Arc::clone(server);
        // Hashes files and builds sessions: off the executor.
        tokio::task::spawn_blocking(move || s.load_path(&entry, spec))
            .await
            .map_err(|e| Status::new(Code::Internal, e.to_string()))?
            .map_err(Status::from)?;
        self.announce(&key.0, key.1).await.map_err(|e| {
            let failed = status(e);
            Status::new(
                failed.code,
                format!(
                    "{}/{} is served, but its endpoint was not recorded: {}",
                    key.0, key.1, failed.message
                ),
            )
        })?;
        Ok(vec![key])
    }

    /// `name@alias` unloads the version the alias names now, `name/N` that version, and
    /// `name` every version served.
    async fn unload(&self, server: &Arc<ModelServer>, name: &str) -> Result<(), Status> {
        let parsed = ModelRef::parse(name).map_err(|e| Status::invalid(e.to_string()))?;
        let version = match parsed.selector {
            VersionSelector::Latest => None,
            VersionSelector::Version(v) => Some(v),
            VersionSelector::Alias(_) => {
                Some(self.registry.resolve(name).await.map_err(status)?.version)
            }
        };
        server.unload(&parsed.name, version).map_err(Status::from)?;
        let withdrawn: Vec<Heartbeat> = self
            .heartbeats()
            .extract_if(|(n, v), _| *n == parsed.name && version.is_none_or(|x| *v == x))
            .flat_map(|(_, beats)| beats)
            .collect();
        for beat in withdrawn {
            beat.stop().await;
        }
        Ok(())
    }
}
