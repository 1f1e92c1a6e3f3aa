//! Models defined in Rust with candle (feature `candle`), built from safetensors weights,
//! served through the same batcher and server as ONNX models.
//!
//! A safetensors file names its architecture in its `__metadata__` (`architecture`), and
//! the [`CandleRuntime`] builds it with the constructor registered for that name. One
//! architecture ships built in: `mlp`, a stack of linear layers configured by `layers`
//! (`"64,128,16"`), `activation` (`relu`, `gelu`, `silu`, `sigmoid`), `input` and `output` (the tensor
//! names), with weights `fc1.weight` `[out, in]`, `fc1.bias` `[out]`, `fc2.…` as PyTorch's
//! `nn.Linear` stores them.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use candle_core::{DType, Device as CandleDevice, Module};
use mlops_core::{DataType, Dim, ModelFormat, ModelManifest, Signature, Tensor, TensorSpec};

use crate::error::{Error, Result};
use crate::session::{Device, InferenceRuntime, ModelSession};

/// A model written in Rust: one input tensor to one output tensor, batch first.
pub trait CandleModel: Send {
    /// Runs the model on a batch.
    fn forward(&self, input: &candle_core::Tensor) -> candle_core::Result<candle_core::Tensor>;
}

/// What an architecture constructor is given: the weights (on the target device) and the
/// safetensors metadata.
pub struct CandleWeights<'a> {
    /// The weights by name.
    pub tensors: &'a HashMap<String, candle_core::Tensor>,
    /// The `__metadata__` strings.
    pub metadata: &'a BTreeMap<String, String>,
}

/// Builds a model and its signature from weights.
pub type ArchitectureFn = Arc<
    dyn Fn(&CandleWeights<'_>) -> Result<(Box<dyn CandleModel>, Signature), String> + Send + Sync,
>;

/// Loads safetensors packages into candle sessions.
#[derive(Clone)]
pub struct CandleRuntime {
    device: Device,
    architectures: HashMap<String, ArchitectureFn>,
}

impl std::fmt::Debug for CandleRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&String> = self.architectures.keys().collect();
        names.sort();
        f.debug_struct("CandleRuntime")
            .field("device", &self.device)
            .field("architectures", &names)
            .finish()
    }
}

impl CandleRuntime {
    /// A runtime on `device` with the built-in architectures. A CUDA device needs the
    /// `cuda` feature.
    pub fn new(device: Device) -> Result<Self> {
        candle_device(device)?;
        let mut architectures: HashMap<String, ArchitectureFn> = HashMap::new();
        architectures.insert("mlp".into(), Arc::new(Mlp::build));
        Ok(CandleRuntime {
            device,
            architectures,
        })
    }

    /// Registers a constructor for safetensors files whose metadata names `architecture`.
    pub fn with_architecture(
        mut self,
        architecture: impl Into<String>,
        build: ArchitectureFn,
    ) -> Self {
        self.architectures.insert(architecture.into(), build);
        self
    }

    /// Builds a session straight from a safetensors file.
    pub fn open(&self, path: &Path) -> Result<CandleSession> {
        let manifest = ModelManifest::from_path(path)?;
        let root = mlops_core::format::package_root(path)?;
        self.open_manifest(&manifest, &root)
    }

    fn open_manifest(&self, manifest: &ModelManifest, root: &Path) -> Result<CandleSession> {
        let load_error = |reason: String| Error::Load {
            model: manifest.name.clone(),
            reason,
            source: None,
        };
        if manifest.entry.format != ModelFormat::Safetensors {
            return Err(load_error(format!(
                "candle builds models from safetensors weights, not a {}",
                manifest.entry.format
            )));
        }
        let metadata: BTreeMap<String, String> = manifest
            .entry
            .properties
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix("safetensors.metadata.")
                    .map(|k| (k.to_owned(), v.clone()))
            })
            .collect();
        let Some(architecture) = metadata.get("architecture") else {
            return Err(load_error(
                "the safetensors metadata names no architecture (__metadata__.architecture)".into(),
            ));
        };
        let Some(build) = self.architectures.get(architecture) else {
            let mut known: Vec<&str> = self.architectures.keys().map(String::as_str).collect();
            known.sort_unstable();
            return Err(load_error(format!(
                "no constructor for architecture '{architecture}'; this runtime knows {}",
                known.join(", ")
            )));
        };
        let device = candle_device(self.device)?;
        let path = root.join(&manifest.entry.path);
        let tensors = candle_core::safetensors::load(&path, &device).map_err(|e| Error::Load {
            model: manifest.name.clone(),
            reason: format!("{}: {e}", path.display()),
            source: Some(Box::new(e)),
        })?;
        let (model, signature) = build(&CandleWeights {
            tensors: &tensors,
            metadata: &metadata,
        })
        .map_err(load_error)?;
        Ok(CandleSession {
            model_name: manifest.name.clone(),
            model,
            signature,
            device,
            placement: self.device,
        })
    }
}

impl InferenceRuntime for CandleRuntime {
    fn name(&self) -> &'static str {
        "candle"
    }

    fn load(&self, manifest: &ModelManifest, root: &Path) -> Result<Box<dyn ModelSession>> {
        Ok(Box::new(self.open_manifest(manifest, root)?))
    }
}

fn candle_device(device: Device) -> Result<CandleDevice> {
    match device {
        Device::Cpu => Ok(CandleDevice::Cpu),
        Device::Cuda(ordinal) => {
            if !cfg!(feature = "cuda") {
                return Err(Error::NotCompiled {
                    what: "candle on CUDA".into(),
                    feature: "cuda",
                });
            }
            CandleDevice::new_cuda(ordinal).map_err(|e| Error::Unavailable {
                backend: "CUDA",
                reason: e.to_string(),
            })
        }
    }
}

/// One candle model instance.
pub struct CandleSession {
    model_name: String,
    model: Box<dyn CandleModel>,
    signature: Signature,
    device: CandleDevice,
    placement: Device,
}

impl std::fmt::Debug for CandleSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CandleSession")
            .field("model", &self.model_name)
            .field("device", &self.placement)
            .finish()
    }
}

impl ModelSession for CandleSession {
    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn device(&self) -> Device {
        self.placement
    }

    fn run(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        let backend = |reason: &str, e: candle_core::Error| Error::Inference {
            model: self.model_name.clone(),
            reason: reason.to_owned(),
            source: Some(Box::new(e)),
        };
        let failed = |reason: String| Error::Inference {
            model: self.model_name.clone(),
            reason,
            source: None,
        };
        self.signature.validate_inputs(inputs)?;
        let [input] = inputs else {
            return Err(failed(format!(
                "candle models take one input, got {}",
                inputs.len()
            )));
        };
        let values = input.values::<f32>()?;
        let x = candle_core::Tensor::from_slice(values.as_ref(), input.shape(), &self.device)
            .map_err(|e| backend(&e.to_string(), e))?;
        let y = self
            .model
            .forward(&x)
            .map_err(|e| backend(&e.to_string(), e))?;
        let shape = y.dims().to_vec();
        let data = y
            .to_dtype(DType::F32)
            .and_then(|y| y.flatten_all())
            .and_then(|y| y.to_vec1::<f32>())
            .map_err(|e| backend(&e.to_string(), e))?;
        let name = self
            .signature
            .outputs
            .first()
            .map_or("output", |o| o.name.as_str());
        Ok(vec![Tensor::from_vec(name, shape, data)?])
    }
}

/// Linear layers with an activation between them.
struct Mlp {
    layers: Vec<candle_nn::Linear>,
    activation: candle_nn::Activation,
}

impl Mlp {
    fn build(weights: &CandleWeights<'_>) -> Result<(Box<dyn CandleModel>, Signature), String> {
        let meta = |key: &str| weights.metadata.get(key).map(String::as_str);
        let widths = meta("layers")
            .ok_or("the mlp architecture needs __metadata__.layers, e.g. \"64,128,16\"")?
            .split(',')
            .map(|w| w.trim().parse::<usize>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("__metadata__.layers: {e}"))?;
        if widths.len() < 2 {
            return Err("__metadata__.layers needs an input width and at least one layer".into());
        }
        let activation = match meta("activation").unwrap_or("relu") {
            "relu" => candle_nn::Activation::Relu,
            "gelu" => candle_nn::Activation::Gelu,
            "silu" => candle_nn::Activation::Silu,
            "sigmoid" => candle_nn::Activation::Sigmoid,
            other => return Err(format!("unsupported activation '{other}'")),
        };
        let mut layers = Vec::with_capacity(widths.len() - 1);
        for (i, pair) in widths.windows(2).enumerate() {
            let get = |suffix: &str| {
                let name = format!("fc{}.{suffix}", i + 1);
                weights
                    .tensors
                    .get(&name)
                    .cloned()
                    .ok_or_else(|| format!("missing weight '{name}'"))
            };
            let (weight, bias) = (get("weight")?, get("bias")?);
            if weight.dims() != [pair[1], pair[0]] || bias.dims() != [pair[1]] {
                return Err(format!(
                    "layer fc{}: weight {:?} and bias {:?} do not match widths {} -> {}",
                    i + 1,
                    weight.dims(),
                    bias.dims(),
                    pair[0],
                    pair[1]
                ));
            }
            let to_f32 = |t: candle_core::Tensor| t.to_dtype(DType::F32).map_err(|e| e.to_string());
            layers.push(candle_nn::Linear::new(to_f32(weight)?, Some(to_f32(bias)?)));
        }
        let signature = Signature::new(
            vec![TensorSpec::new(
                meta("input").unwrap_or("input"),
                DataType::Fp32,
                vec![Dim::Dynamic, Dim::Fixed(widths[0] as u64)],
            )],
            vec![TensorSpec::new(
                meta("output").unwrap_or("output"),
                DataType::Fp32,
                vec![Dim::Dynamic, Dim::Fixed(widths[widths.len() - 1] as u64)],
            )],
        );
        Ok((Box::new(Mlp { layers, activation }), signature))
    }
}

impl CandleModel for Mlp {
    fn forward(&self, input: &candle_core::Tensor) -> candle_core::Result<candle_core::Tensor> {
        let last = self.layers.len() - 1;
        let mut x = input.clone();
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(&x)?;
            if i < last {
                x = self.activation.forward(&x)?;
            }
        }
        Ok(x)
    }
}
