//! The model manifest: the standardized description of a model package.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::format::{
    self, Located, MLMODEL_FILE, ModelFormat, SAVED_MODEL_FILE, onnx, safetensors, saved_model,
};
use crate::mlflow::{MlModel, signature_to_mlflow};
use crate::signature::{Signature, TensorSpec};

/// The key under an `MLmodel` file's `metadata` that holds this library's own fields.
pub const MLMODEL_METADATA_KEY: &str = "mlops";

/// How deep [`ModelManifest::from_path`] descends into a model directory.
const MAX_DEPTH: usize = 32;

/// The format MLflow prints `utc_time_created` in.
const MLFLOW_TIME: &str = "%Y-%m-%d %H:%M:%S%.6f";

/// Everything the platform knows about a model package: what it is, what it takes and
/// returns, which files make it up, and where it came from.
///
/// A manifest is learnt from the model itself ([`from_path`](Self::from_path)), read from
/// and written to an MLflow `MLmodel` file (this library's own fields sit under
/// `metadata.mlops`), and serializes to JSON for registries and tools.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelManifest {
    /// The model's name.
    pub name: String,
    /// The format of the package: `mlflow` for a directory MLflow wrote. A package whose
    /// `MLmodel` this library wrote keeps the format recorded then (an ONNX model
    /// described by an `MLmodel` is still `onnx`).
    pub format: ModelFormat,
    /// The file or directory a runtime loads, and its format.
    pub entry: ModelEntry,
    /// The inputs and outputs, when the model declares them.
    pub signature: Option<Signature>,
    /// The weights a safetensors file declares.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub weights: Vec<TensorSpec>,
    /// Every file of the package, relative to its root, with size and sha256.
    pub files: Vec<FileEntry>,
    /// Evaluation results (`accuracy`, `val_loss`, …).
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
    /// Hyperparameters and other training settings.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// Free-form labels.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Where the model came from.
    #[serde(default)]
    pub lineage: Lineage,
    /// When the model was made (saved, or its file last written).
    pub created_at: DateTime<Utc>,
    /// The `MLmodel` document the manifest was read from, less this library's metadata, so
    /// that writing it back keeps what MLflow wrote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mlflow: Option<MlModel>,
}

/// The part of a package a runtime loads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelEntry {
    /// Relative to the package root, `/`-separated; empty for the root itself.
    pub path: String,
    /// The format of what is at `path`. For an MLflow model that only Python can load,
    /// `mlflow`.
    pub format: ModelFormat,
    /// For a SavedModel, which SignatureDef the signature is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature_name: Option<String>,
    /// Facts the format records: IR and opset versions, producer, framework version,
    /// metadata strings.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, String>,
}

/// One file of a package.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Relative to the package root, `/`-separated.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the content, lowercase hex.
    pub sha256: String,
}

/// Where a model came from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lineage {
    /// The training run (an MLflow run id, say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// The data set it was trained on (a name, URI or digest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<String>,
    /// The registry version it was derived from (fine-tuned, retrained, quantized).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_version: Option<u64>,
    /// Where it was obtained (a URI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

impl ModelManifest {
    /// Learns a manifest from a model file or directory: detects its format by content,
    /// reads its signature, and hashes every file.
    ///
    /// For an `MLmodel` written by this library, the recorded name, metrics, params, tags
    /// and lineage are kept, and every recorded file is checked against its sha256.
    ///
    /// This reads every byte of the package: call it from a blocking thread in async code.
    pub fn from_path(path: &Path) -> Result<Self> {
        Self::learn(path, true)
    }

    /// Like [`from_path`](Self::from_path), but does not hash a bare model's files: each
    /// [`FileEntry`] carries its size and an empty `sha256`, for a caller that hashes the
    /// bytes anyway as it copies them (a registry storing the files) and fills the digests
    /// in. An MLflow directory is still checked against the digests its `MLmodel` records.
    pub fn describe(path: &Path) -> Result<Self> {
        Self::learn(path, false)
    }

    fn learn(path: &Path, hash: bool) -> Result<Self> {
        let located = format::locate(path)?;
        if located.format == ModelFormat::Mlflow {
            return from_mlflow_dir(&located.root);
        }
        let (mut manifest, companions) = from_bare(&located)?;
        // A directory travels whole; a single file with what it references.
        let files = if path.is_dir() || located.format.is_directory() {
            list_files(&located.root)?
        } else {
            std::iter::once(located.entry.clone())
                .chain(companions)
                .collect()
        };
        manifest.files = if hash {
            hash_files(&located.root, &files)?
        } else {
            files
                .iter()
                .map(|f| {
                    let full = located.root.join(f);
                    let meta = fs::metadata(&full).map_err(|e| Error::io(&full, e))?;
                    Ok(FileEntry {
                        path: slash_path(f),
                        size: meta.len(),
                        sha256: String::new(),
                    })
                })
                .collect::<Result<_>>()?
        };
        Ok(manifest)
    }

    /// Reads a manifest from an `MLmodel` file (or the directory that holds one) without
    /// touching the model's files: the signature and files are what the file records.
    pub fn read_mlmodel(path: &Path) -> Result<Self> {
        let file = if path.is_dir() {
            path.join(MLMODEL_FILE)
        } else {
            path.to_path_buf()
        };
        let text = fs::read_to_string(&file).map_err(|e| Error::io(&file, e))?;
        let dir = file.parent().unwrap_or(Path::new("."));
        Self::from_mlmodel_str(&text, &dir_name(dir)).map_err(|e| e.at_path(&file))
    }

    /// Reads a manifest from `MLmodel` YAML. `default_name` names a model whose file does
    /// not carry this library's metadata (one saved by MLflow itself).
    pub fn from_mlmodel_str(yaml: &str, default_name: &str) -> Result<Self> {
        let mut doc = MlModel::from_yaml(yaml)?;
        let own = doc
            .metadata
            .as_mut()
            .and_then(|m| m.remove(MLMODEL_METADATA_KEY));
        if doc.metadata.as_ref().is_some_and(BTreeMap::is_empty) {
            doc.metadata = None;
        }
        if let Some(own) = own {
            let mut manifest: ModelManifest = serde_json::from_value(own).map_err(|e| {
                Error::manifest(format!("metadata.{MLMODEL_METADATA_KEY} is not valid: {e}"))
            })?;
            manifest.mlflow = Some(doc);
            return Ok(manifest);
        }
        let signature = doc.parse_signature()?;
        let created_at = doc
            .utc_time_created
            .as_deref()
            .and_then(parse_mlflow_time)
            .unwrap_or_else(Utc::now);
        Ok(ModelManifest {
            name: default_name.to_owned(),
            format: ModelFormat::Mlflow,
            entry: mlflow_entry(&doc),
            signature,
            weights: Vec::new(),
            files: Vec::new(),
            metrics: BTreeMap::new(),
            params: BTreeMap::new(),
            tags: BTreeMap::new(),
            lineage: Lineage {
                run_id: doc.run_id.clone(),
                ..Lineage::default()
            },
            created_at,
            mlflow: Some(doc),
        })
    }

    /// Writes the manifest as `MLmodel` YAML that MLflow reads: the flavors MLflow wrote
    /// are kept (an ONNX model without any gets MLflow's `onnx` and `python_function`
    /// flavors), the signature is written in tensor-spec form when MLflow had none, and this
    /// library's fields go under `metadata.mlops`.
    pub fn to_mlmodel_string(&self) -> Result<String> {
        let mut doc = self.mlflow.clone().unwrap_or_default();
        if doc.flavors.is_empty() && self.entry.format == ModelFormat::Onnx {
            doc.flavors.insert(
                "onnx".to_owned(),
                serde_json::json!({
                    "data": self.entry.path,
                    "providers": ["CUDAExecutionProvider", "CPUExecutionProvider"],
                }),
            );
            doc.flavors.insert(
                "python_function".to_owned(),
                serde_json::json!({"loader_module": "mlflow.onnx", "data": self.entry.path}),
            );
        }
        if doc.signature.is_none() {
            doc.signature = self.signature.as_ref().and_then(signature_to_mlflow);
        }
        doc.run_id = self.lineage.run_id.clone().or(doc.run_id);
        doc.utc_time_created = Some(self.created_at.format(MLFLOW_TIME).to_string());
        doc.model_size_bytes = Some(self.files.iter().map(|f| f.size).sum());
        if doc.model_uuid.is_none() {
            doc.model_uuid = Some(self.content_id());
        }
        // Everything but the MLmodel document itself, which is the file being written.
        let own = ModelManifest {
            mlflow: None,
            ..self.clone()
        };
        let own = serde_json::to_value(own)
            .map_err(|e| Error::manifest(format!("cannot encode the manifest: {e}")))?;
        doc.metadata
            .get_or_insert_with(BTreeMap::new)
            .insert(MLMODEL_METADATA_KEY.to_owned(), own);
        doc.to_yaml()
    }

    /// Writes `MLmodel` into a directory, atomically: a reader sees the old file or the new
    /// one, never a part.
    pub fn write_mlmodel(&self, dir: &Path) -> Result<PathBuf> {
        let text = self.to_mlmodel_string()?;
        let target = dir.join(MLMODEL_FILE);
        // Unique per process and call, so concurrent writers never share a temporary file.
        static WRITES: AtomicU64 = AtomicU64::new(0);
        let temp = dir.join(format!(
            ".{MLMODEL_FILE}.tmp-{}-{}",
            std::process::id(),
            WRITES.fetch_add(1, Ordering::Relaxed)
        ));
        let write = || -> std::io::Result<()> {
            let mut file = File::create(&temp)?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            fs::rename(&temp, &target)
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&temp);
            Error::io(&target, e)
        })?;
        Ok(target)
    }

    /// Checks every recorded file under `root` against its size and sha256.
    pub fn verify_files(&self, root: &Path) -> Result<()> {
        let paths = self
            .files
            .iter()
            .map(|f| safe_relative(&f.path).map_err(|e| e.at_path(root)))
            .collect::<Result<Vec<_>>>()?;
        let computed = hash_files(root, &paths)?;
        check_recorded(&self.files, &computed).map_err(|e| e.at_path(root))
    }

    /// The total size of the package's files.
    pub fn size_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// A 32-hex-digit identifier derived from the name and the files' digests: the same
    /// package always gets the same id.
    pub fn content_id(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(self.name.as_bytes());
        for f in &self.files {
            hasher.update(b"\0");
            hasher.update(f.path.as_bytes());
            hasher.update(b"\0");
            hasher.update(f.sha256.as_bytes());
        }
        let digest = hex::encode(hasher.finalize());
        digest[..32].to_owned()
    }

    /// Sets the name.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Records a metric.
    pub fn with_metric(mut self, key: impl Into<String>, value: f64) -> Self {
        self.metrics.insert(key.into(), value);
        self
    }

    /// Records a parameter.
    pub fn with_param(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.insert(key.into(), value.into());
        self
    }

    /// Sets a tag.
    pub fn with_tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.tags.insert(key.into(), value.into());
        self
    }

    /// Sets the lineage.
    pub fn with_lineage(mut self, lineage: Lineage) -> Self {
        self.lineage = lineage;
        self
    }
}

/// A manifest for a model found outside any MLflow directory, with the files that must
/// travel beside its entry.
fn from_bare(located: &Located) -> Result<(ModelManifest, Vec<PathBuf>)> {
    let name = if located.entry.as_os_str().is_empty() {
        dir_name(&located.root)
    } else {
        file_stem(&located.entry)
    };
    let entry_path = located.root.join(&located.entry);
    let mut manifest = ModelManifest {
        name,
        format: located.format,
        entry: ModelEntry {
            path: slash_path(&located.entry),
            format: located.format,
            signature_name: None,
            properties: BTreeMap::new(),
        },
        signature: None,
        weights: Vec::new(),
        files: Vec::new(),
        metrics: BTreeMap::new(),
        params: BTreeMap::new(),
        tags: BTreeMap::new(),
        lineage: Lineage::default(),
        created_at: modified(&entry_path),
        mlflow: None,
    };
    let companions = describe_entry(&mut manifest, &entry_path)?;
    Ok((manifest, companions))
}

fn from_mlflow_dir(root: &Path) -> Result<ModelManifest> {
    let file = root.join(MLMODEL_FILE);
    let text = fs::read_to_string(&file).map_err(|e| Error::io(&file, e))?;
    let mut manifest =
        ModelManifest::from_mlmodel_str(&text, &dir_name(root)).map_err(|e| e.at_path(&file))?;
    let mut files = list_files(root)?;
    files.retain(|f| f != Path::new(MLMODEL_FILE));
    let computed = hash_files(root, &files)?;
    // Checked before anything is parsed: a corrupt file is reported as corrupt.
    if !manifest.files.is_empty() {
        check_recorded(&manifest.files, &computed).map_err(|e| e.at_path(root))?;
    }
    manifest.files = computed;
    if manifest.entry.format != ModelFormat::Mlflow {
        let entry_path =
            root.join(safe_relative(&manifest.entry.path).map_err(|e| e.at_path(&file))?);
        if !entry_path.exists() {
            return Err(Error::manifest(format!(
                "MLmodel names '{}' as its {} but there is no such file",
                manifest.entry.path, manifest.entry.format
            ))
            .at_path(&file));
        }
        // The model file's own signature is the one a runtime sees, so it wins over
        // what MLflow inferred from an example. Its companions are in the listing already.
        describe_entry(&mut manifest, &entry_path)?;
    }
    Ok(manifest)
}

/// Reads what the entry's own format says: signature, weights, properties. Returns the
/// files that must travel beside the entry (an ONNX model's external data), relative to
/// the entry's directory.
fn describe_entry(manifest: &mut ModelManifest, path: &Path) -> Result<Vec<PathBuf>> {
    let mut companions = Vec::new();
    let props = &mut manifest.entry.properties;
    match manifest.entry.format {
        ModelFormat::Onnx => {
            let bytes = fs::read(path).map_err(|e| Error::io(path, e))?;
            let info = onnx::parse(&bytes).map_err(|e| e.at_path(path))?;
            props.insert("onnx.ir_version".into(), info.ir_version.to_string());
            for (domain, version) in &info.opsets {
                props.insert(format!("onnx.opset.{domain}"), version.to_string());
            }
            if !info.producer.is_empty() {
                props.insert("onnx.producer".into(), info.producer);
            }
            for (key, value) in info.metadata {
                props.insert(format!("onnx.metadata.{key}"), value);
            }
            for location in info.external_data {
                companions.push(safe_relative(&location).map_err(|e| e.at_path(path))?);
            }
            manifest.signature = Some(info.signature);
        }
        ModelFormat::TfSavedModel => {
            let pb = path.join(SAVED_MODEL_FILE);
            let bytes = fs::read(&pb).map_err(|e| Error::io(&pb, e))?;
            let info = saved_model::parse(&bytes).map_err(|e| e.at_path(&pb))?;
            props.insert("tensorflow.tags".into(), info.tags.join(","));
            if !info.tensorflow_version.is_empty() {
                props.insert("tensorflow.version".into(), info.tensorflow_version.clone());
            }
            props.insert(
                "tensorflow.signatures".into(),
                info.signatures
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(","),
            );
            let (name, signature) = info.default_signature().map_err(|e| e.at_path(&pb))?;
            manifest.entry.signature_name = Some(name.to_owned());
            manifest.signature = Some(signature.clone());
        }
        ModelFormat::Safetensors => {
            let info = safetensors::read(path)?;
            for (key, value) in info.metadata {
                props.insert(format!("safetensors.metadata.{key}"), value);
            }
            manifest.weights = info.weights;
        }
        // A plan's bindings are only readable by TensorRT itself; TorchScript records
        // no dtypes or shapes. Their signatures come from a written manifest.
        ModelFormat::TensorrtPlan | ModelFormat::TorchScript | ModelFormat::Mlflow => {}
    }
    Ok(companions)
}

/// Which file of an MLflow model a native runtime can load, from its flavors.
fn mlflow_entry(doc: &MlModel) -> ModelEntry {
    let flavor_path = |flavor: &str, key: &str| {
        doc.flavors
            .get(flavor)
            .and_then(|f| f.get(key))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let (path, format) = if let Some(path) = flavor_path("onnx", "data") {
        (path, ModelFormat::Onnx)
    } else if let Some(path) = flavor_path("tensorflow", "saved_model_dir") {
        (path, ModelFormat::TfSavedModel)
    } else {
        (String::new(), ModelFormat::Mlflow)
    };
    ModelEntry {
        path,
        format,
        signature_name: None,
        properties: BTreeMap::new(),
    }
}

/// Every file of a package, relative to `root`, in name order. A symbolic link whose target
/// stays inside the package is followed (file or folder: a SavedModel's `variables/` may be
/// one); one that leaves it, dangles, or loops is refused with its path: a package never
/// silently lacks a file, and never takes one from elsewhere.
/// The most files a package may list.
const MAX_FILES: usize = 100_000;

fn list_files(root: &Path) -> Result<Vec<PathBuf>> {
    struct Walk<'a> {
        root: &'a Path,
        canonical_root: PathBuf,
        /// Folders already entered, by their real path: a link back to one is a loop.
        entered: Vec<PathBuf>,
        out: Vec<PathBuf>,
    }
    impl Walk<'_> {
        fn dir(&mut self, relative: &Path, depth: usize) -> Result<()> {
            let dir = self.root.join(relative);
            if depth > MAX_DEPTH {
                return Err(Error::unsupported(format!(
                    "the model directory nests deeper than {MAX_DEPTH} levels"
                ))
                .at_path(&dir));
            }
            let real = fs::canonicalize(&dir).map_err(|e| Error::io(&dir, e))?;
            if self.entered.contains(&real) {
                return Err(Error::unsupported(format!(
                    "a symbolic link loops back to {}",
                    real.display()
                ))
                .at_path(&dir));
            }
            self.entered.push(real);
            let mut entries = fs::read_dir(&dir)
                .map_err(|e| Error::io(&dir, e))?
                .collect::<std::io::Result<Vec<_>>>()
                .map_err(|e| Error::io(&dir, e))?;
            entries.sort_by_key(|e| e.file_name());
            for entry in entries {
                // Hidden files (a `.git` folder, an interrupted write's temporary file) are
                // not part of the model.
                if entry.file_name().to_string_lossy().starts_with('.') {
                    continue;
                }
                let path = relative.join(entry.file_name());
                let kind = entry.file_type().map_err(|e| Error::io(entry.path(), e))?;
                if kind.is_symlink() {
                    let target = self.link_target(&entry.path())?;
                    if target.is_dir() {
                        self.dir(&path, depth + 1)?;
                    } else if target.is_file() {
                        self.push(path)?;
                    }
                    // A link to a pipe or a socket, like one itself, is not a file of
                    // the model (and reading it could block forever).
                } else if kind.is_dir() {
                    self.dir(&path, depth + 1)?;
                } else if kind.is_file() {
                    self.push(path)?;
                }
            }
            let _ = self.entered.pop();
            Ok(())
        }

        /// Lists a file; links that fan out (each folder linked twice, level after
        /// level) cannot make the list, and the hashing after it, grow without bound.
        fn push(&mut self, path: PathBuf) -> Result<()> {
            if self.out.len() >= MAX_FILES {
                return Err(Error::unsupported(format!(
                    "the model directory holds more than {MAX_FILES} files (counting those reached through links)"
                ))
                .at_path(self.root));
            }
            self.out.push(path);
            Ok(())
        }

        /// Where a link leads, if it stays inside the package.
        fn link_target(&self, link: &Path) -> Result<PathBuf> {
            let target = fs::canonicalize(link).map_err(|e| {
                Error::unsupported(format!("a symbolic link that leads nowhere ({e})"))
                    .at_path(link)
            })?;
            if !target.starts_with(&self.canonical_root) {
                return Err(Error::unsupported(format!(
                    "a symbolic link to {}, outside the model directory: copy the file in instead",
                    target.display()
                ))
                .at_path(link));
            }
            Ok(target)
        }
    }
    let canonical_root = fs::canonicalize(root).map_err(|e| Error::io(root, e))?;
    let mut walk = Walk {
        root,
        canonical_root,
        entered: Vec::new(),
        out: Vec::new(),
    };
    walk.dir(Path::new(""), 0)?;
    Ok(walk.out)
}

fn hash_files(root: &Path, files: &[PathBuf]) -> Result<Vec<FileEntry>> {
    files.iter().map(|f| hash_file(root, f)).collect()
}

/// Hashes one file in fixed-size chunks: memory stays flat whatever the file's size.
fn hash_file(root: &Path, relative: &Path) -> Result<FileEntry> {
    let path = root.join(relative);
    let mut file = File::open(&path).map_err(|e| Error::io(&path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(|e| Error::io(&path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok(FileEntry {
        path: slash_path(relative),
        size,
        sha256: hex::encode(hasher.finalize()),
    })
}

fn check_recorded(recorded: &[FileEntry], computed: &[FileEntry]) -> Result<()> {
    for want in recorded {
        match computed.iter().find(|f| f.path == want.path) {
            None => {
                return Err(Error::manifest(format!(
                    "file '{}' is recorded in the manifest but missing",
                    want.path
                )));
            }
            Some(got) if got.sha256 != want.sha256 || got.size != want.size => {
                return Err(Error::manifest(format!(
                    "file '{}' does not match the manifest: sha256 {} ({} bytes), recorded {} ({} bytes)",
                    want.path, got.sha256, got.size, want.sha256, want.size
                )));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// A path from a manifest or a model file, checked to stay inside the package: relative,
/// with no `..`, no root and no NUL.
fn safe_relative(path: &str) -> Result<PathBuf> {
    let candidate = PathBuf::from(path);
    let escapes = path.is_empty()
        || path.contains('\0')
        || candidate
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir));
    if escapes {
        return Err(Error::manifest(format!(
            "path '{}' does not name a file inside the model package",
            path.escape_debug()
        )));
    }
    Ok(candidate)
}

fn slash_path(path: &Path) -> String {
    path.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

fn dir_name(dir: &Path) -> String {
    let absolute = fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    absolute
        .file_name()
        .map_or_else(|| "model".to_owned(), |n| n.to_string_lossy().into_owned())
}

fn file_stem(file: &Path) -> String {
    // `mlp.torchscript.pt` → `mlp`: names stop at the first dot.
    let name = file.file_name().unwrap_or_default().to_string_lossy();
    match name.split_once('.') {
        Some((stem, _)) if !stem.is_empty() => stem.to_owned(),
        _ => name.into_owned(),
    }
}

fn modified(path: &Path) -> DateTime<Utc> {
    fs::metadata(path)
        .and_then(|m| m.modified())
        .map(DateTime::<Utc>::from)
        .unwrap_or_else(|_| Utc::now())
}

fn parse_mlflow_time(text: &str) -> Option<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
        .ok()
        .map(|t| t.and_utc())
}
