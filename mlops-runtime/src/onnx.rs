//! ONNX Runtime sessions (feature `ort`).
//!
//! The shared library is opened at run time: `ORT_DYLIB_PATH` when set, else the library
//! the build fetched and verified (see `build.rs`). A missing or wrong library is an
//! [`Error::Unavailable`], never a panic. Execution providers other than the CPU are
//! registered so that failing to load them is an error: a model meant for a GPU never
//! falls back to the CPU unannounced.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use mlops_core::{DataType, Element, ModelFormat, ModelManifest, Signature, Tensor};
use ort::environment::Environment;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::{Session, SessionInputValue};
use ort::value::{DynValue, TensorElementType, TensorRef, ValueType};

use crate::error::{Error, Result};
use crate::session::{Device, InferenceRuntime, ModelSession};

const BACKEND: &str = "ONNX Runtime";

/// Where ONNX Runtime computes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExecutionProvider {
    /// The CPU.
    #[default]
    Cpu,
    /// CUDA on this GPU (feature `cuda`).
    Cuda {
        /// The GPU's ordinal.
        device_id: i32,
    },
    /// TensorRT on this GPU (feature `tensorrt`).
    TensorRt {
        /// The GPU's ordinal.
        device_id: i32,
    },
}

/// How much ONNX Runtime rewrites the graph before running it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OptimizationLevel {
    /// No rewrites.
    Disable,
    /// Semantics-preserving rewrites (constant folding, redundant node removal).
    Basic,
    /// Basic plus node fusions.
    Extended,
    /// Everything, layout changes included (the default).
    #[default]
    All,
}

/// Session options that matter for serving.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OrtOptions {
    /// Threads one run may use; 0 lets ONNX Runtime choose (one per core).
    pub intra_threads: usize,
    /// Graph optimization level.
    pub optimization: OptimizationLevel,
    /// Where to compute.
    pub provider: ExecutionProvider,
}

impl OrtOptions {
    /// Sets the threads one run may use.
    pub fn with_intra_threads(mut self, threads: usize) -> Self {
        self.intra_threads = threads;
        self
    }

    /// Sets the graph optimization level.
    pub fn with_optimization(mut self, level: OptimizationLevel) -> Self {
        self.optimization = level;
        self
    }

    /// Sets the execution provider.
    pub fn with_provider(mut self, provider: ExecutionProvider) -> Self {
        self.provider = provider;
        self
    }
}

/// Loads ONNX models into ONNX Runtime sessions.
#[derive(Clone)]
pub struct OrtRuntime {
    environment: Environment,
    options: OrtOptions,
}

impl std::fmt::Debug for OrtRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrtRuntime")
            .field("options", &self.options)
            .finish()
    }
}

static ENVIRONMENT: OnceLock<Result<Environment, String>> = OnceLock::new();

/// The library this process opens: `ORT_DYLIB_PATH`, else the one the build fetched.
pub fn library_path() -> Result<PathBuf> {
    find_library().map_err(|reason| Error::Unavailable {
        backend: BACKEND,
        reason,
    })
}

fn find_library() -> std::result::Result<PathBuf, String> {
    let path = std::env::var_os("ORT_DYLIB_PATH")
        .map(PathBuf::from)
        .or_else(|| {
            option_env!("MLOPS_ORT_DYLIB")
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
        });
    let Some(path) = path else {
        return Err(format!(
            "no library: the build could not fetch it ({}); set ORT_DYLIB_PATH to libonnxruntime.so 1.31 or newer",
            option_env!("MLOPS_ORT_FETCH_ERROR").unwrap_or("no reason recorded")
        ));
    };
    if !path.is_file() {
        return Err(format!(
            "no library at {}; set ORT_DYLIB_PATH to libonnxruntime.so 1.31 or newer",
            path.display()
        ));
    }
    Ok(path)
}

fn environment() -> Result<Environment> {
    ENVIRONMENT
        .get_or_init(|| {
            let path = find_library()?;
            ort::init_from(&path)
                .map_err(|e| format!("cannot open {}: {e}", path.display()))?
                .with_name("mlops")
                .with_telemetry(false)
                .build()
                .map_err(|e| format!("cannot start an environment: {e}"))
        })
        .clone()
        .map_err(|reason| Error::Unavailable {
            backend: BACKEND,
            reason,
        })
}

impl OrtRuntime {
    /// Opens ONNX Runtime (once per process) and keeps these options for every session.
    pub fn new(options: OrtOptions) -> Result<Self> {
        match options.provider {
            ExecutionProvider::Cuda { .. } if !cfg!(feature = "cuda") => {
                return Err(Error::NotCompiled {
                    what: "the CUDA execution provider".into(),
                    feature: "cuda",
                });
            }
            ExecutionProvider::TensorRt { .. } if !cfg!(feature = "tensorrt") => {
                return Err(Error::NotCompiled {
                    what: "the TensorRT execution provider".into(),
                    feature: "tensorrt",
                });
            }
            _ => {}
        }
        Ok(OrtRuntime {
            environment: environment()?,
            options,
        })
    }

    /// The options every session gets.
    pub fn options(&self) -> &OrtOptions {
        &self.options
    }

    /// Opens one ONNX file as a session, with the signature the file declares.
    pub fn open(&self, path: &Path) -> Result<OrtSession> {
        let manifest = ModelManifest::from_path(path)?;
        let root = mlops_core::format::package_root(path)?;
        self.open_manifest(&manifest, &root)
    }

    fn open_manifest(&self, manifest: &ModelManifest, root: &Path) -> Result<OrtSession> {
        let load_error = |reason: String| Error::Load {
            model: manifest.name.clone(),
            reason,
            source: None,
        };
        if manifest.entry.format != ModelFormat::Onnx {
            return Err(load_error(format!(
                "ONNX Runtime loads ONNX models, not a {}",
                manifest.entry.format
            )));
        }
        let Some(signature) = manifest.signature.clone() else {
            return Err(load_error("the manifest has no signature".into()));
        };
        let path = root.join(&manifest.entry.path);
        let session = self.build_session(&path).map_err(|e| Error::Load {
            model: manifest.name.clone(),
            reason: format!("{}: {e}", path.display()),
            source: Some(e),
        })?;
        let names = |outlets: &[ort::value::Outlet]| -> Vec<String> {
            outlets.iter().map(|o| o.name().to_owned()).collect()
        };
        let expected = |specs: &[mlops_core::TensorSpec]| -> Vec<String> {
            specs.iter().map(|s| s.name.clone()).collect()
        };
        // Initializer-backed inputs are optional for ONNX Runtime, and not in a signature.
        let session_inputs = names(session.inputs());
        if !expected(&signature.inputs)
            .iter()
            .all(|n| session_inputs.contains(n))
            || names(session.outputs()) != expected(&signature.outputs)
        {
            return Err(load_error(format!(
                "the manifest's signature does not match the model file: it lists inputs {:?} and outputs {:?}, the file {:?} and {:?}",
                expected(&signature.inputs),
                expected(&signature.outputs),
                session_inputs,
                names(session.outputs())
            )));
        }
        let device = match self.options.provider {
            ExecutionProvider::Cpu => Device::Cpu,
            ExecutionProvider::Cuda { device_id } | ExecutionProvider::TensorRt { device_id } => {
                Device::Cuda(usize::try_from(device_id).unwrap_or(0))
            }
        };
        Ok(OrtSession {
            model: manifest.name.clone(),
            signature,
            session,
            device,
        })
    }

    fn build_session(&self, path: &Path) -> std::result::Result<Session, crate::BoxError> {
        let level = match self.options.optimization {
            OptimizationLevel::Disable => GraphOptimizationLevel::Disable,
            OptimizationLevel::Basic => GraphOptimizationLevel::Level1,
            OptimizationLevel::Extended => GraphOptimizationLevel::Level2,
            OptimizationLevel::All => GraphOptimizationLevel::All,
        };
        let mut builder = Session::builder(&self.environment)
            .map_err(|e| crate::BoxError::from(e.to_string()))?
            .with_optimization_level(level)
            .map_err(|e| crate::BoxError::from(e.to_string()))?;
        if self.options.intra_threads > 0 {
            builder = builder
                .with_intra_threads(self.options.intra_threads)
                .map_err(|e| crate::BoxError::from(e.to_string()))?;
        }
        builder =
            register_provider(builder, self.options.provider).map_err(crate::BoxError::from)?;
        builder
            .commit_from_file(path)
            .map_err(crate::BoxError::from)
    }
}

fn register_provider(
    builder: ort::session::builder::SessionBuilder,
    provider: ExecutionProvider,
) -> std::result::Result<ort::session::builder::SessionBuilder, String> {
    match provider {
        ExecutionProvider::Cpu => Ok(builder),
        #[cfg(feature = "cuda")]
        ExecutionProvider::Cuda { device_id } => builder
            .with_execution_providers([ort::ep::CUDA::default()
                .with_device_id(device_id)
                .build()
                .error_on_failure()])
            .map_err(|e| format!("the CUDA execution provider cannot load: {e}")),
        #[cfg(feature = "tensorrt")]
        ExecutionProvider::TensorRt { device_id } => builder
            .with_execution_providers([ort::ep::TensorRT::default()
                .with_device_id(device_id)
                .build()
                .error_on_failure()])
            .map_err(|e| format!("the TensorRT execution provider cannot load: {e}")),
        #[allow(unreachable_patterns)] // reachable only with a GPU feature off
        other => Err(format!("{other:?} is not compiled into this build")),
    }
}

impl InferenceRuntime for OrtRuntime {
    fn name(&self) -> &'static str {
        "onnxruntime"
    }

    fn load(&self, manifest: &ModelManifest, root: &Path) -> Result<Box<dyn ModelSession>> {
        Ok(Box::new(self.open_manifest(manifest, root)?))
    }
}

/// One ONNX Runtime session.
pub struct OrtSession {
    model: String,
    signature: Signature,
    session: Session,
    device: Device,
}

impl std::fmt::Debug for OrtSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrtSession")
            .field("model", &self.model)
            .field("device", &self.device)
            .finish()
    }
}

impl ModelSession for OrtSession {
    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn device(&self) -> Device {
        self.device
    }

    fn run(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        let failed = |reason: String| Error::Inference {
            model: self.model.clone(),
            reason,
            source: None,
        };
        // Wrong names, types or shapes never reach ONNX Runtime.
        self.signature.validate_inputs(inputs)?;
        let values = inputs
            .iter()
            .map(|t| Ok((Cow::Borrowed(t.name()), to_ort(t)?)))
            .collect::<Result<Vec<_>>>()?;
        let outputs = self.session.run(values).map_err(|e| Error::Inference {
            model: self.model.clone(),
            reason: e.to_string(),
            source: Some(Box::new(e)),
        })?;
        self.signature
            .outputs
            .iter()
            .map(|spec| {
                let value = outputs
                    .get(&spec.name)
                    .ok_or_else(|| failed(format!("no output named '{}'", spec.name)))?;
                from_ort(&spec.name, value).map_err(&failed)
            })
            .collect()
    }
}

fn ort_shape(tensor: &Tensor) -> Vec<i64> {
    tensor.shape().iter().map(|&d| d as i64).collect()
}

/// A view of the tensor where its bytes allow one, a copy otherwise.
fn typed<'t, T>(tensor: &'t Tensor) -> Result<SessionInputValue<'t>>
where
    T: Element + ort::value::PrimitiveTensorElementType + Clone + std::fmt::Debug,
{
    let shape = ort_shape(tensor);
    let invalid = |e: ort::Error| {
        Error::InvalidInput(mlops_core::Error::SignatureMismatch {
            tensor: tensor.name().to_owned(),
            reason: e.to_string(),
        })
    };
    match tensor.values::<T>()? {
        Cow::Borrowed(slice) => Ok(TensorRef::from_array_view((shape, slice))
            .map_err(invalid)?
            .into()),
        Cow::Owned(vec) => Ok(ort::value::Tensor::from_array((shape, vec))
            .map_err(invalid)?
            .into()),
    }
}

fn to_ort(tensor: &Tensor) -> Result<SessionInputValue<'_>> {
    let invalid = |reason: String| {
        Error::InvalidInput(mlops_core::Error::SignatureMismatch {
            tensor: tensor.name().to_owned(),
            reason,
        })
    };
    match tensor.dtype() {
        DataType::Fp32 => typed::<f32>(tensor),
        DataType::Fp64 => typed::<f64>(tensor),
        DataType::Fp16 => typed::<half::f16>(tensor),
        DataType::Bf16 => typed::<half::bf16>(tensor),
        DataType::Int8 => typed::<i8>(tensor),
        DataType::Int16 => typed::<i16>(tensor),
        DataType::Int32 => typed::<i32>(tensor),
        DataType::Int64 => typed::<i64>(tensor),
        DataType::Uint8 => typed::<u8>(tensor),
        DataType::Uint16 => typed::<u16>(tensor),
        DataType::Uint32 => typed::<u32>(tensor),
        DataType::Uint64 => typed::<u64>(tensor),
        DataType::Bool => {
            // Bytes other than 0 and 1 are not valid `bool`s: copy.
            let values = tensor.to_bools()?;
            Ok(ort::value::Tensor::from_array((ort_shape(tensor), values))
                .map_err(|e| invalid(e.to_string()))?
                .into())
        }
        DataType::Bytes => {
            let strings = tensor
                .byte_strings()?
                .into_iter()
                .enumerate()
                .map(|(i, s)| {
                    std::str::from_utf8(s).map(str::to_owned).map_err(|_| {
                        invalid(format!(
                            "element {i} is not UTF-8, which ONNX string tensors need"
                        ))
                    })
                })
                .collect::<Result<Vec<String>>>()?;
            Ok(
                ort::value::Tensor::from_string_array((ort_shape(tensor), strings.as_slice()))
                    .map_err(|e| invalid(e.to_string()))?
                    .into(),
            )
        }
    }
}

fn from_ort(name: &str, value: &DynValue) -> std::result::Result<Tensor, String> {
    let ValueType::Tensor { ty, .. } = value.dtype() else {
        return Err(format!("output '{name}' is not a tensor"));
    };
    macro_rules! copy {
        ($t:ty) => {{
            let (shape, data) = value
                .try_extract_tensor::<$t>()
                .map_err(|e| e.to_string())?;
            let shape: Vec<usize> = shape.iter().map(|&d| d.max(0) as usize).collect();
            Tensor::from_slice(name, shape, data).map_err(|e| e.to_string())
        }};
    }
    match ty {
        TensorElementType::Float32 => copy!(f32),
        TensorElementType::Float64 => copy!(f64),
        TensorElementType::Float16 => copy!(half::f16),
        TensorElementType::Bfloat16 => copy!(half::bf16),
        TensorElementType::Int8 => copy!(i8),
        TensorElementType::Int16 => copy!(i16),
        TensorElementType::Int32 => copy!(i32),
        TensorElementType::Int64 => copy!(i64),
        TensorElementType::Uint8 => copy!(u8),
        TensorElementType::Uint16 => copy!(u16),
        TensorElementType::Uint32 => copy!(u32),
        TensorElementType::Uint64 => copy!(u64),
        TensorElementType::Bool => {
            let (shape, data) = value
                .try_extract_tensor::<bool>()
                .map_err(|e| e.to_string())?;
            let shape: Vec<usize> = shape.iter().map(|&d| d.max(0) as usize).collect();
            Tensor::from_bools(name, shape, data).map_err(|e| e.to_string())
        }
        TensorElementType::String => {
            let (shape, strings) = value.try_extract_strings().map_err(|e| e.to_string())?;
            let shape: Vec<usize> = shape.iter().map(|&d| d.max(0) as usize).collect();
            Tensor::from_byte_strings(name, shape, &strings).map_err(|e| e.to_string())
        }
        other => Err(format!(
            "output '{name}' has element type {other:?}, which the Open Inference Protocol cannot carry"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_that_are_not_utf8_are_refused_with_the_tensor_named() {
        // No bundled model takes strings; the conversion is what refuses them.
        environment().unwrap();
        let bad = Tensor::from_byte_strings("text", vec![1], &[&[0xffu8, 0xfe][..]]).unwrap();
        let err = to_ort(&bad).map(|_| ()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "input 'text': element 0 is not UTF-8, which ONNX string tensors need"
        );
        let good = Tensor::from_byte_strings("text", vec![2], &["ok", "fine"]).unwrap();
        assert!(to_ort(&good).is_ok());
    }
}
