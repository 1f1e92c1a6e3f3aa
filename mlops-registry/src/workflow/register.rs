//! Registering a version: its files stored and hashed, then READY; and the clean-ups that
//! keep the store and the metadata in step (stale registrations, deletions).

use std::path::Path;
use std::time::Duration;

use mlops_core::{FileEntry, ModelManifest};

use super::Registry;
use crate::artifact::check_store_path;
use crate::error::{Error, Result};
use crate::model::{Change, ModelVersion, NewVersion, VersionStatus};
use crate::registry::VersionUpdate;

impl Registry {
    /// Registers the model at `path` (a file, or a directory such as an MLflow model or a
    /// SavedModel) as the next version of `name`:
    ///
    /// 1. learns its manifest (format, signature, files);
    /// 2. creates the version, PENDING;
    /// 3. streams every file into the store, hashing as it goes;
    /// 4. records the digests and marks the version READY.
    ///
    /// If anything fails, the version is marked FAILED with the reason and its stored
    /// files are deleted. A process killed half-way leaves the version PENDING, never
    /// READY: a READY version always has every file, complete and as recorded.
    pub async fn register(
        &self,
        name: &str,
        path: &Path,
        version: NewVersion,
        change: &Change,
    ) -> Result<ModelVersion> {
        crate::model::check_name(name)?;
        let owned = path.to_path_buf();
        let (manifest, root) = tokio::task::spawn_blocking(move || {
            let manifest = ModelManifest::describe(&owned)?;
            let root = mlops_core::format::package_root(&owned)?;
            Ok::<_, mlops_core::Error>((manifest, root))
        })
        .await
        .map_err(|e| Error::io(path.display(), std::io::Error::other(e)))??;
        let manifest = manifest.with_name(name);
        let source = version
            .source
            .clone()
            .unwrap_or_else(|| path.display().to_string());
        let new = version.with_manifest(manifest.clone()).with_source(source);
        self.register_files(name, &root, manifest, new, change)
            .await
    }

    /// Registers files under `root` described by `manifest` (its `files`, relative to
    /// `root`); digests recorded in the manifest are checked, empty ones filled in. For
    /// callers that build the manifest themselves.
    pub async fn register_files(
        &self,
        name: &str,
        root: &Path,
        manifest: ModelManifest,
        version: NewVersion,
        change: &Change,
    ) -> Result<ModelVersion> {
        for f in &manifest.files {
            check_store_path(&f.path)?;
        }
        if !manifest.entry.path.is_empty() {
            check_store_path(&manifest.entry.path)?;
        }
        let new = NewVersion {
            ready: false,
            ..version.with_manifest(manifest.clone())
        };
        let created = self.models.create_version(name, new, change).await?;
        let prefix = self.folder_of(&created);
        let stored = async {
            let files = self.store_files(root, &prefix, &manifest).await?;
            let mut manifest = manifest;
            manifest.files = files;
            let update = VersionUpdate {
                manifest: Some(manifest),
                ..VersionUpdate::default()
            };
            self.models
                .update_version(name, created.version, &update)
                .await?;
            self.models
                .set_version_status(name, created.version, VersionStatus::Ready, None, change)
                .await
        }
        .await;
        match stored {
            Ok(ready) => Ok(ready),
            Err(e) => {
                let _ = self.artifacts.delete_all(&prefix).await;
                let _ = self
                    .models
                    .set_version_status(
                        name,
                        created.version,
                        VersionStatus::Failed,
                        Some(&e.to_string()),
                        change,
                    )
                    .await;
                Err(e)
            }
        }
    }

    async fn store_files(
        &self,
        root: &Path,
        prefix: &str,
        manifest: &ModelManifest,
    ) -> Result<Vec<FileEntry>> {
        let mut out = Vec::with_capacity(manifest.files.len());
        for f in &manifest.files {
            let local = root.join(&f.path);
            let mut file = tokio::fs::File::open(&local)
                .await
                .map_err(|e| Error::io(local.display(), e))?;
            let stored = self
                .artifacts
                .put(&format!("{prefix}{}", f.path), &mut file)
                .await?;
            if stored.size != f.size || (!f.sha256.is_empty() && stored.sha256 != f.sha256) {
                return Err(Error::Integrity {
                    path: local.display().to_string(),
                    reason: format!(
                        "changed while it was being registered: recorded {} bytes sha256 '{}', \
                         stored {} bytes sha256 '{}'",
                        f.size, f.sha256, stored.size, stored.sha256
                    ),
                });
            }
            out.push(FileEntry {
                path: f.path.clone(),
                size: stored.size,
                sha256: stored.sha256,
            });
        }
        Ok(out)
    }

    /// Marks FAILED every version still PENDING after `older_than` (a registering process
    /// that died, say) and deletes the files it had stored; returns them as `(name,
    /// version)`. Pick `older_than` well above the longest registration: a version whose
    /// upload is still running would be failed under it.
    pub async fn fail_stale_pending(
        &self,
        older_than: Duration,
        change: &Change,
    ) -> Result<Vec<(String, u64)>> {
        let cutoff = chrono::Utc::now()
            - chrono::TimeDelta::from_std(older_than).map_err(|e| Error::invalid(e.to_string()))?;
        let query = crate::model::VersionQuery::default().with_status(VersionStatus::Pending);
        let mut failed = Vec::new();
        for v in self.models.search_versions(&query).await? {
            if v.created_at > cutoff {
                continue;
            }
            let reason = format!("registration did not finish within {older_than:?}");
            match self
                .models
                .set_version_status(
                    &v.name,
                    v.version,
                    VersionStatus::Failed,
                    Some(&reason),
                    change,
                )
                .await
            {
                Ok(_) => {}
                // Finished (or failed) meanwhile: not stale after all.
                Err(Error::FailedPrecondition(_)) => continue,
                Err(e) => return Err(e),
            }
            self.artifacts.delete_all(&self.folder_of(&v)).await?;
            failed.push((v.name, v.version));
        }
        Ok(failed)
    }

    /// Deletes a version (refused while an alias points at it), then its files.
    pub async fn delete_version(&self, name: &str, version: u64, change: &Change) -> Result<()> {
        let folder = self.folder_of(&self.models.get_version(name, version).await?);
        self.models.delete_version(name, version, change).await?;
        self.artifacts.delete_all(&folder).await
    }

    /// Deletes a model, its versions and aliases, then its files.
    pub async fn delete_model(&self, name: &str, change: &Change) -> Result<()> {
        crate::model::check_name(name)?;
        self.models.delete_model(name, change).await?;
        self.artifacts.delete_all(&format!("models/{name}/")).await
    }
}
