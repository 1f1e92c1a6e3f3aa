//! Model formats, detected by content.
//!
//! A file's format is decided by what it holds, never by its name: a magic number where
//! the format has one (TensorRT plans, zip archives), the layout of its first bytes
//! otherwise (safetensors' header length and JSON, ONNX's protobuf fields). A directory is
//! an MLflow model when it holds an `MLmodel` file, a TensorFlow SavedModel when it holds
//! `saved_model.pb`, and otherwise takes the format of the one model file it holds (an ONNX
//! model with its external data files, say).

pub mod onnx;
mod proto;
pub mod safetensors;
pub mod saved_model;

use std::fmt;
use std::fs::{self, File};
use std::io::{Cursor, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How many leading bytes of a file detection reads.
const SNIFF_LEN: usize = 64 * 1024;

/// The file a directory-level MLflow model is described by.
pub const MLMODEL_FILE: &str = "MLmodel";

/// The protobuf file at the root of a TensorFlow SavedModel.
pub const SAVED_MODEL_FILE: &str = "saved_model.pb";

/// A model format this library understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ModelFormat {
    /// An ONNX `ModelProto` file.
    Onnx,
    /// A serialized TensorRT engine (a "plan"), optionally behind Ultralytics' JSON
    /// metadata prefix. It carries no readable signature: that comes from its manifest.
    TensorrtPlan,
    /// A TensorFlow SavedModel directory.
    #[serde(rename = "tensorflow_saved_model")]
    TfSavedModel,
    /// A safetensors weights file.
    Safetensors,
    /// An MLflow model directory, described by its `MLmodel` file.
    Mlflow,
    /// A TorchScript archive (`torch.jit.save`).
    #[serde(rename = "torchscript")]
    TorchScript,
}

impl ModelFormat {
    /// Every format.
    pub const ALL: [ModelFormat; 6] = [
        ModelFormat::Onnx,
        ModelFormat::TensorrtPlan,
        ModelFormat::TfSavedModel,
        ModelFormat::Safetensors,
        ModelFormat::Mlflow,
        ModelFormat::TorchScript,
    ];

    /// The short name used in manifests: `onnx`, `tensorrt_plan`, …
    pub const fn as_str(self) -> &'static str {
        match self {
            ModelFormat::Onnx => "onnx",
            ModelFormat::TensorrtPlan => "tensorrt_plan",
            ModelFormat::TfSavedModel => "tensorflow_saved_model",
            ModelFormat::Safetensors => "safetensors",
            ModelFormat::Mlflow => "mlflow",
            ModelFormat::TorchScript => "torchscript",
        }
    }

    /// The `platform` Triton reports for models of this format, which Open Inference
    /// Protocol clients and Triton's tools read from model metadata.
    pub const fn triton_platform(self) -> Option<&'static str> {
        match self {
            ModelFormat::Onnx => Some("onnxruntime_onnx"),
            ModelFormat::TensorrtPlan => Some("tensorrt_plan"),
            ModelFormat::TfSavedModel => Some("tensorflow_savedmodel"),
            ModelFormat::TorchScript => Some("pytorch_libtorch"),
            ModelFormat::Safetensors | ModelFormat::Mlflow => None,
        }
    }

    /// Whether models of this format are directories rather than single files.
    pub const fn is_directory(self) -> bool {
        matches!(self, ModelFormat::TfSavedModel | ModelFormat::Mlflow)
    }
}

impl fmt::Display for ModelFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ModelFormat::Onnx => "ONNX model",
            ModelFormat::TensorrtPlan => "TensorRT plan",
            ModelFormat::TfSavedModel => "TensorFlow SavedModel",
            ModelFormat::Safetensors => "safetensors file",
            ModelFormat::Mlflow => "MLflow model",
            ModelFormat::TorchScript => "TorchScript archive",
        })
    }
}

/// Detects the format of a model file or directory by its content.
///
/// ```no_run
/// use mlops_core::{detect, ModelFormat};
///
/// assert_eq!(detect("model.onnx".as_ref())?, ModelFormat::Onnx);
/// # Ok::<(), mlops_core::Error>(())
/// ```
pub fn detect(path: &Path) -> Result<ModelFormat> {
    locate(path).map(|found| found.format)
}

/// Detects the format of a model file held in memory. An `MLmodel` document is reported
/// as [`ModelFormat::Mlflow`]; a SavedModel's `saved_model.pb` cannot be told from other
/// protobuf content without its folder, so it is not recognised here.
pub fn detect_bytes(bytes: &[u8]) -> Result<ModelFormat> {
    let prefix = &bytes[..bytes.len().min(SNIFF_LEN)];
    sniff(prefix, &mut Cursor::new(bytes))
}

/// Where a model was found and in what format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Located {
    /// The format of the model at `path`.
    pub(crate) format: ModelFormat,
    /// The directory that holds the model (the path itself, for a directory).
    pub(crate) root: PathBuf,
    /// The model file or directory, relative to `root`; empty for the root itself.
    pub(crate) entry: PathBuf,
}

/// The directory a model's relative file paths (a manifest's `files`, external data)
/// are relative to: the path itself for a model directory, the enclosing directory for a
/// model file.
pub fn package_root(path: &Path) -> Result<PathBuf> {
    Ok(locate(path)?.root)
}

/// Detects the format of a path, and where its model lives.
pub(crate) fn locate(path: &Path) -> Result<Located> {
    let meta = fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.is_dir() {
        return locate_in_dir(path);
    }
    let root = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    // `saved_model.pb` and `MLmodel` stand for the directory they describe.
    if path.file_name() == Some(SAVED_MODEL_FILE.as_ref()) {
        return locate_in_dir(&root);
    }
    let format = detect_file(path)?;
    let entry = PathBuf::from(path.file_name().unwrap_or(path.as_os_str()));
    if format == ModelFormat::Mlflow {
        return locate_in_dir(&root);
    }
    Ok(Located {
        format,
        root,
        entry,
    })
}

fn locate_in_dir(dir: &Path) -> Result<Located> {
    let at_root = |format| Located {
        format,
        root: dir.to_path_buf(),
        entry: PathBuf::new(),
    };
    if dir.join(MLMODEL_FILE).is_file() {
        return Ok(at_root(ModelFormat::Mlflow));
    }
    if dir.join(SAVED_MODEL_FILE).is_file() {
        return Ok(at_root(ModelFormat::TfSavedModel));
    }
    if dir.join("saved_model.pbtxt").is_file() {
        return Err(Error::unsupported(
            "a SavedModel in protobuf text format (saved_model.pbtxt); save it in binary form (saved_model.pb)",
        )
        .at_path(dir));
    }
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        if entry
            .file_type()
            .map_err(|e| Error::io(entry.path(), e))?
            .is_file()
        {
            files.push(entry.path());
        }
    }
    files.sort();
    let mut models = Vec::new();
    for file in &files {
        match detect_file(file) {
            Ok(format) => models.push((format, file)),
            // Not a model: a README, a config, a tokenizer file.
            Err(Error::UnsupportedFormat { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    match models.as_slice() {
        [(format, file)] => Ok(Located {
            format: *format,
            root: dir.to_path_buf(),
            entry: PathBuf::from(file.file_name().unwrap_or_default()),
        }),
        [] => Err(Error::unsupported(format!(
            "the directory holds no MLmodel, no saved_model.pb and none of its {} files is a model",
            files.len()
        ))
        .at_path(dir)),
        several => Err(Error::unsupported(format!(
            "the directory holds several models ({}); point at one of them",
            several
                .iter()
                .map(|(f, p)| format!(
                    "{} is {f}",
                    p.file_name().unwrap_or_default().to_string_lossy()
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .at_path(dir)),
    }
}

fn detect_file(path: &Path) -> Result<ModelFormat> {
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut prefix = Vec::with_capacity(SNIFF_LEN.min(len as usize));
    (&mut file)
        .take(SNIFF_LEN as u64)
        .read_to_end(&mut prefix)
        .map_err(|e| Error::io(path, e))?;
    sniff(&prefix, &mut file).map_err(|e| e.at_path(path))
}

/// Decides a format from the first bytes of some content; `content` gives
/// access to the rest where a format keeps its signature elsewhere (a zip's directory
/// at its end, a plan behind a metadata prefix).
fn sniff<R: Read + Seek>(prefix: &[u8], content: &mut R) -> Result<ModelFormat> {
    if prefix.is_empty() {
        return Err(Error::unsupported("the file is empty"));
    }
    if prefix.starts_with(b"ftrt") || wrapped_plan(prefix, content) {
        return Ok(ModelFormat::TensorrtPlan);
    }
    if prefix.starts_with(b"PK\x03\x04") {
        return zip_format(content);
    }
    if safetensors::sniff(prefix) {
        return Ok(ModelFormat::Safetensors);
    }
    if onnx::sniff(prefix) {
        return Ok(ModelFormat::Onnx);
    }
    if looks_like_mlmodel(prefix) {
        return Ok(ModelFormat::Mlflow);
    }
    Err(Error::unsupported(unrecognized(prefix)))
}

/// Ultralytics writes a TensorRT engine behind a 4-byte length and a JSON object.
fn wrapped_plan<R: Read + Seek>(prefix: &[u8], content: &mut R) -> bool {
    let Some(len) = prefix.first_chunk::<4>() else {
        return false;
    };
    if prefix.get(4) != Some(&b'{') {
        return false;
    }
    let at = 4 + u64::from(u32::from_le_bytes(*len));
    let mut magic = [0u8; 4];
    content.seek(SeekFrom::Start(at)).is_ok()
        && content.read_exact(&mut magic).is_ok()
        && &magic == b"ftrt"
}

fn looks_like_mlmodel(prefix: &[u8]) -> bool {
    std::str::from_utf8(prefix).is_ok_and(|text| text.lines().any(|l| l.starts_with("flavors:")))
}

/// Tells TorchScript archives from the other zip files that models travel in.
fn zip_format<R: Read + Seek>(content: &mut R) -> Result<ModelFormat> {
    content
        .seek(SeekFrom::Start(0))
        .map_err(|e| Error::unsupported(format!("cannot read the zip archive: {e}")))?;
    let archive = zip::ZipArchive::new(content).map_err(|e| {
        Error::malformed(
            ModelFormat::TorchScript,
            format!("a damaged zip archive: {e}"),
        )
    })?;
    let names: Vec<String> = archive
        .file_names()
        .map(|n| n.map(std::borrow::Cow::into_owned))
        .collect::<Result<_, _>>()
        .map_err(|e| {
            Error::malformed(
                ModelFormat::TorchScript,
                format!("a damaged zip archive: {e}"),
            )
        })?;
    // `torch.jit.save` and `torch.save` both write `<name>/data.pkl`; only TorchScript
    // adds the model's code under `<name>/code/`.
    let top_level = |suffix: &str| {
        names
            .iter()
            .any(|n| n.split_once('/').is_some_and(|(_, rest)| rest == suffix))
    };
    let has_code = names.iter().any(|n| {
        n.split_once('/')
            .is_some_and(|(_, rest)| rest.starts_with("code/"))
    });
    if top_level("data.pkl") && has_code {
        return Ok(ModelFormat::TorchScript);
    }
    if top_level("data.pkl") {
        return Err(Error::unsupported(
            "a PyTorch checkpoint (torch.save), which needs Python and the model's class to load; \
             export it with torch.jit.save or torch.onnx.export",
        ));
    }
    if names.iter().any(|n| n == "config.json") && names.iter().any(|n| n.ends_with(".weights.h5"))
    {
        return Err(Error::unsupported(
            "a Keras archive (.keras); export it as a SavedModel (model.export) or to ONNX",
        ));
    }
    Err(Error::unsupported(format!(
        "a zip archive of {} entries that is not a TorchScript archive",
        names.len()
    )))
}

fn unrecognized(prefix: &[u8]) -> String {
    let known = if prefix.starts_with(b"\x89HDF\r\n\x1a\n") {
        Some("an HDF5 file (a Keras .h5 model?); export it as a SavedModel or to ONNX")
    } else if prefix.len() > 1 && prefix[0] == 0x80 && (2..=5).contains(&prefix[1]) {
        Some(
            "a Python pickle, which cannot be loaded safely outside Python; export the model to ONNX",
        )
    } else if prefix.starts_with(b"GGUF") {
        Some("a GGUF file (llama.cpp), which this library does not serve")
    } else if prefix.get(4..8) == Some(b"TFL3") {
        Some("a TensorFlow Lite flatbuffer, which this library does not serve")
    } else {
        None
    };
    match known {
        Some(what) => what.to_owned(),
        None => {
            let head: Vec<String> = prefix.iter().take(8).map(|b| format!("{b:02x}")).collect();
            format!(
                "unrecognized content (first bytes {}); expected ONNX, a TensorRT plan, \
                 safetensors, TorchScript, a SavedModel or an MLflow model directory",
                head.join(" ")
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(bytes: &[u8]) -> String {
        match detect_bytes(bytes) {
            Ok(format) => format!("detected {format}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn tensorrt_plans_bare_and_wrapped() {
        let mut plan = b"ftrt".to_vec();
        plan.extend_from_slice(&[0; 60]);
        assert_eq!(detect_bytes(&plan).ok(), Some(ModelFormat::TensorrtPlan));
        let meta = br#"{"imgsz": [640, 640]}"#;
        let mut wrapped = (meta.len() as u32).to_le_bytes().to_vec();
        wrapped.extend_from_slice(meta);
        wrapped.extend_from_slice(&plan);
        assert_eq!(detect_bytes(&wrapped).ok(), Some(ModelFormat::TensorrtPlan));
        // The same prefix without a plan behind it is not a plan.
        wrapped.truncate(4 + meta.len());
        assert!(reason(&wrapped).contains("unrecognized content"));
    }

    #[test]
    fn known_formats_we_do_not_serve_get_a_hint() {
        assert_eq!(
            reason(b""),
            "<in-memory content>: unsupported model format: the file is empty"
        );
        assert!(reason(b"\x80\x04\x95\x00").contains("a Python pickle"));
        assert!(reason(b"\x89HDF\r\n\x1a\n\0\0").contains("an HDF5 file"));
        assert!(reason(b"GGUF\x03\0\0\0").contains("a GGUF file"));
        assert_eq!(
            reason(b"hello world"),
            "<in-memory content>: unsupported model format: unrecognized content (first bytes 68 65 6c 6c 6f 20 77 6f); \
             expected ONNX, a TensorRT plan, safetensors, TorchScript, a SavedModel or an MLflow model directory"
        );
    }

    #[test]
    fn formats_have_stable_names() {
        for format in ModelFormat::ALL {
            let json = serde_json::to_string(&format).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", format.as_str()));
        }
    }
}
