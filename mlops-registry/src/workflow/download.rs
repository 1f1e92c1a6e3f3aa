//! Downloading a version: every file checked against what was recorded (or, for a version
//! registered elsewhere, against what its store lists), and never left half-written.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use futures::StreamExt;
use mlops_core::{FileEntry, ModelManifest};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::Registry;
use crate::artifact::{check_store_path, version_prefix};
use crate::error::{Error, Result};
use crate::model::{ModelVersion, VersionStatus};

/// A version's files, downloaded and verified.
#[derive(Clone, Debug, PartialEq)]
pub struct Downloaded {
    /// The version.
    pub version: ModelVersion,
    /// The directory holding its files.
    pub root: PathBuf,
    /// The model's entry file (or directory) under `root`: what a runtime opens.
    pub entry: PathBuf,
}

impl Registry {
    /// Downloads a READY (or archived) version's files into `dest` (created if missing),
    /// checking each file's size and sha256 against the manifest: a corrupt artifact is
    /// [`Error::Integrity`] and leaves no file at its path.
    pub async fn download(&self, reference: &str, dest: &Path) -> Result<Downloaded> {
        let version = self.resolve(reference).await?;
        if !matches!(
            version.status,
            VersionStatus::Ready | VersionStatus::Archived
        ) {
            return Err(Error::FailedPrecondition(format!(
                "model '{}' version {} is {}: it has no complete artifacts",
                version.name, version.version, version.status
            )));
        }
        let Some(manifest) = version.manifest.clone() else {
            return self.download_from_source(version, dest).await;
        };
        if !manifest.entry.path.is_empty() {
            check_store_path(&manifest.entry.path)?;
        }
        let prefix = self.folder_of(&version);
        for f in &manifest.files {
            check_store_path(&f.path)?;
            self.fetch_file(&format!("{prefix}{}", f.path), f, &dest.join(&f.path), true)
                .await?;
        }
        let entry = dest.join(&manifest.entry.path);
        Ok(Downloaded {
            version,
            root: dest.to_path_buf(),
            entry,
        })
    }

    /// Where a version's files are in the store: the folder its source names (an MLflow
    /// version's), else the registry's own layout.
    pub(super) fn folder_of(&self, version: &ModelVersion) -> String {
        version
            .source
            .as_deref()
            .and_then(|s| self.artifacts.locate(s))
            .unwrap_or_else(|| version_prefix(&version.name, version.version))
    }

    /// A version registered elsewhere (logged with MLflow's own client): no manifest with
    /// digests, so every file its source folder lists is downloaded and checked against the
    /// size the store lists, then the package is described from what arrived (an MLflow
    /// model's `MLmodel` names its flavors and signature). A package no runtime here can
    /// load is refused, naming what it holds.
    async fn download_from_source(&self, version: ModelVersion, dest: &Path) -> Result<Downloaded> {
        let who = format!("model '{}' version {}", version.name, version.version);
        let prefix = version
            .source
            .as_deref()
            .and_then(|s| self.artifacts.locate(s))
            .ok_or_else(|| {
                Error::FailedPrecondition(format!(
                    "{who} has no manifest and its source ({}) is not in this registry's \
                     artifact store ({})",
                    version.source.as_deref().unwrap_or("none"),
                    self.artifacts.uri()
                ))
            })?;
        let files = self.artifacts.list(&prefix).await?;
        if files.is_empty() {
            return Err(Error::FailedPrecondition(format!(
                "{who}: its source {} holds no files",
                version.source.as_deref().unwrap_or_default()
            )));
        }
        // An MLflow model's `MLmodel` first: a model no runtime here serves is refused
        // before its weights (gigabytes, perhaps) are fetched.
        let mlmodel = format!("{prefix}{}", mlops_core::format::MLMODEL_FILE);
        if files.contains(&mlmodel) {
            let path = self.fetch_listed(&mlmodel, &prefix, dest, &who).await?;
            let text = tokio::fs::read_to_string(&path)
                .await
                .map_err(|e| Error::io(path.display(), e))?;
            // One that does not parse is reported by the description below, at its path.
            let described = ModelManifest::from_mlmodel_str(&text, &version.name);
            if let Ok(manifest) = &described
                && manifest.entry.format == mlops_core::ModelFormat::Mlflow
            {
                let _ = tokio::fs::remove_file(&path).await;
                return Err(unservable(&who, manifest));
            }
        }
        for path in files.iter().filter(|p| **p != mlmodel) {
            self.fetch_listed(path, &prefix, dest, &who).await?;
        }
        let root = dest.to_path_buf();
        let manifest = tokio::task::spawn_blocking(move || ModelManifest::describe(&root))
            .await
            .map_err(|e| Error::io(dest.display(), std::io::Error::other(e)))??;
        if manifest.entry.format == mlops_core::ModelFormat::Mlflow {
            return Err(unservable(&who, &manifest));
        }
        let entry = dest.join(&manifest.entry.path);
        Ok(Downloaded {
            version,
            root: dest.to_path_buf(),
            entry,
        })
    }

    /// Fetches `path`, listed under `prefix` in the store, to the same place under `dest`,
    /// checked against the size the store lists; where it went.
    async fn fetch_listed(
        &self,
        path: &str,
        prefix: &str,
        dest: &Path,
        who: &str,
    ) -> Result<PathBuf> {
        let relative = path.strip_prefix(prefix).unwrap_or(path);
        check_store_path(relative)?;
        let size = self
            .artifacts
            .size(path)
            .await?
            .ok_or_else(|| Error::not_found(format!("artifact '{path}' of {who}")))?;
        let want = FileEntry {
            path: relative.to_owned(),
            size,
            sha256: String::new(),
        };
        let target = dest.join(relative);
        self.fetch_file(path, &want, &target, false).await?;
        Ok(target)
    }

    async fn fetch_file(
        &self,
        store_path: &str,
        want: &FileEntry,
        target: &Path,
        check_digest: bool,
    ) -> Result<()> {
        if let Some(parent) = target.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| Error::io(parent.display(), e))?;
        }
        // A name of its own for each transfer: two downloads of the same version into
        // one directory (two loads of a model at once) each write their own file and the
        // last rename wins, with the same verified bytes, instead of writing into one.
        static TRANSFERS: AtomicU64 = AtomicU64::new(0);
        let mut part_name = target.file_name().unwrap_or_default().to_os_string();
        part_name.push(format!(
            ".{}-{}.part",
            std::process::id(),
            TRANSFERS.fetch_add(1, Ordering::Relaxed)
        ));
        let part = target.with_file_name(part_name);
        let result = async {
            let mut out = tokio::fs::File::create(&part)
                .await
                .map_err(|e| Error::io(part.display(), e))?;
            let mut stream = self.artifacts.get(store_path).await?;
            let mut hasher = Sha256::new();
            let mut size = 0u64;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk?;
                size += chunk.len() as u64;
                if size > want.size {
                    // More than recorded: stop before a runaway body fills the disk.
                    return Err(Error::Integrity {
                        path: store_path.to_owned(),
                        reason: format!("recorded {} bytes, stored more", want.size),
                    });
                }
                let for_hash = chunk.clone();
                let hashing = tokio::task::spawn_blocking(move || {
                    hasher.update(&for_hash);
                    hasher
                });
                let (hashed, written) = tokio::join!(hashing, out.write_all(&chunk));
                written.map_err(|e| Error::io(part.display(), e))?;
                hasher = hashed.map_err(|e| Error::io("sha256", std::io::Error::other(e)))?;
            }
            out.sync_all()
                .await
                .map_err(|e| Error::io(part.display(), e))?;
            let sha256 = hex::encode(hasher.finalize());
            if size != want.size || (check_digest && sha256 != want.sha256) {
                return Err(Error::Integrity {
                    path: store_path.to_owned(),
                    reason: format!(
                        "recorded {} bytes sha256 {}, stored {size} bytes sha256 {sha256}",
                        want.size, want.sha256
                    ),
                });
            }
            tokio::fs::rename(&part, target)
                .await
                .map_err(|e| Error::io(target.display(), e))
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&part).await;
        }
        result
    }
}

/// The refusal of an MLflow model with no flavor a runtime here loads, naming its flavors.
fn unservable(who: &str, manifest: &ModelManifest) -> Error {
    let flavors = manifest
        .mlflow
        .as_ref()
        .map(|m| m.flavors.keys().cloned().collect::<Vec<_>>().join(", "))
        .unwrap_or_default();
    Error::FailedPrecondition(format!(
        "{who} is an MLflow model with the flavors [{flavors}]; the runtimes here serve the \
         'onnx' flavor (and 'tensorflow' SavedModels through a converter)"
    ))
}
