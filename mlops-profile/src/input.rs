//! The requests a load test sends: a model's bundled golden input, random data shaped from
//! its signature, or a user's file of requests.
//!
//! A request file is Open Inference Protocol JSON: one request (`{"inputs": [...]}`), a list
//! of them, or `{"requests": [...]}`. A request may carry the `outputs` it must produce
//! (with `data`), as the bundled golden files do; the load generator can then check every
//! answer.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use mlops_core::{DataType, Dim, ModelManifest, Signature, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::target::json_tensor;

/// The requests to send, and the answers expected when known.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestSet {
    /// Each request's input tensors; the load generator cycles through them.
    pub requests: Vec<Vec<Tensor>>,
    /// Each request's expected outputs, when the source gave them.
    pub expected: Option<Vec<Vec<Tensor>>>,
    /// Where they came from (`golden file testdata/mlp.golden.json`, `random, seed 7`).
    pub source: String,
}

impl RequestSet {
    /// Rows per request (the first input's first dimension; 1 without one).
    pub fn batch_size(&self) -> usize {
        self.requests
            .first()
            .and_then(|r| r.first())
            .and_then(|t| t.shape().first().copied())
            .unwrap_or(1)
    }
}

/// How to make requests for a model.
#[derive(Clone, Debug)]
pub struct InputOptions {
    /// A request file to use instead of the bundled or random inputs.
    pub file: Option<PathBuf>,
    /// Rows per request for a model with a batch dimension (1, as perf_analyzer sends).
    pub batch_size: usize,
    /// Shapes for inputs with dynamic dimensions other than the batch, by input name
    /// (batch dimension included).
    pub shapes: BTreeMap<String, Vec<usize>>,
    /// Seed for random data.
    pub seed: u64,
    /// Distinct random requests to make.
    pub random_requests: usize,
    /// Use the golden file beside the model when there is one.
    pub use_golden: bool,
}

impl Default for InputOptions {
    fn default() -> Self {
        InputOptions {
            file: None,
            batch_size: 1,
            shapes: BTreeMap::new(),
            seed: 0,
            random_requests: 16,
            use_golden: true,
        }
    }
}

impl InputOptions {
    /// Reads requests from this file.
    pub fn with_file(mut self, file: impl Into<PathBuf>) -> Self {
        self.file = Some(file.into());
        self
    }

    /// Sends this many rows per request.
    pub fn with_batch_size(mut self, rows: usize) -> Self {
        self.batch_size = rows;
        self
    }

    /// Sets the shape of an input with dynamic dimensions.
    pub fn with_shape(mut self, input: impl Into<String>, shape: Vec<usize>) -> Self {
        self.shapes.insert(input.into(), shape);
        self
    }

    /// Seeds random data.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Whether to use a golden file beside the model.
    pub fn with_golden(mut self, use_golden: bool) -> Self {
        self.use_golden = use_golden;
        self
    }
}

/// The golden file bundled with a model: `<stem>.golden.json` beside a model file, or
/// beside a model directory, or `golden.json` inside it.
pub fn golden_for(model: &Path) -> Option<PathBuf> {
    let stem = model.file_stem()?.to_str()?;
    let beside = model.with_file_name(format!("{stem}.golden.json"));
    if beside.is_file() {
        return Some(beside);
    }
    let inside = model.join("golden.json");
    inside.is_file().then_some(inside)
}

/// The requests for the model at `path` (described by `manifest`): the file given, else
/// its golden file, else random data from its signature.
pub fn for_model(
    manifest: &ModelManifest,
    path: &Path,
    options: &InputOptions,
) -> Result<RequestSet> {
    if let Some(file) = &options.file {
        return rebatch(
            from_file(file)?,
            manifest.signature.as_ref(),
            options.batch_size,
        );
    }
    if options.use_golden
        && let Some(golden) = golden_for(path)
    {
        return rebatch(
            from_file(&golden)?,
            manifest.signature.as_ref(),
            options.batch_size,
        );
    }
    let Some(signature) = &manifest.signature else {
        return Err(Error::Inputs {
            model: manifest.name.clone(),
            reason: "the model declares no signature, so its inputs cannot be made up; give a \
                     request file (--input-data FILE)"
                .into(),
        });
    };
    random(&manifest.name, signature, options)
}

/// Reads a request file.
pub fn from_file(path: &Path) -> Result<RequestSet> {
    let file_error = |reason: String| Error::File {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| file_error(e.to_string()))?;
    let value: Value =
        serde_json::from_str(&text).map_err(|e| file_error(format!("not JSON: {e}")))?;
    let list = match &value {
        Value::Array(items) => items.clone(),
        Value::Object(o) if o.contains_key("requests") => o
            .get("requests")
            .and_then(Value::as_array)
            .cloned()
            .ok_or_else(|| file_error("\"requests\" is not a list".into()))?,
        Value::Object(_) => vec![value.clone()],
        _ => {
            return Err(file_error(
                "expected a request object or a list of them".into(),
            ));
        }
    };
    if list.is_empty() {
        return Err(file_error("no requests in the file".into()));
    }
    let mut requests = Vec::with_capacity(list.len());
    let mut expected = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let tensors = |key: &str| -> Result<Option<Vec<Tensor>>> {
            let Some(items) = item.get(key) else {
                return Ok(None);
            };
            let items = items
                .as_array()
                .ok_or_else(|| file_error(format!("request {i}: \"{key}\" is not a list")))?;
            items
                .iter()
                .map(|t| json_tensor(t).map_err(|e| file_error(format!("request {i}: {e}"))))
                .collect::<Result<Vec<_>>>()
                .map(Some)
        };
        let inputs = tensors("inputs")?
            .ok_or_else(|| file_error(format!("request {i} has no \"inputs\"")))?;
        requests.push(inputs);
        // Outputs count as expected answers only when they carry data.
        expected.push(tensors("outputs").ok().flatten().filter(|o| !o.is_empty()));
    }
    let expected = expected
        .iter()
        .all(Option::is_some)
        .then(|| expected.into_iter().flatten().collect());
    Ok(RequestSet {
        requests,
        expected,
        source: format!("file {}", path.display()),
    })
}

/// Splits or keeps requests so that each has `rows` rows, when the model batches; a file's
/// requests are kept as they are otherwise.
fn rebatch(set: RequestSet, signature: Option<&Signature>, rows: usize) -> Result<RequestSet> {
    let batchable = signature.is_some_and(Signature::is_batchable);
    if !batchable || rows == 0 || set.batch_size() == rows {
        return Ok(set);
    }
    let mut requests = Vec::new();
    let mut expected = set.expected.as_ref().map(|_| Vec::new());
    for (i, request) in set.requests.iter().enumerate() {
        let have = request
            .first()
            .and_then(|t| t.shape().first().copied())
            .unwrap_or(0);
        if have < rows {
            // Too few rows to split: keep the request whole.
            requests.push(request.clone());
            if let (Some(out), Some(exp)) = (expected.as_mut(), set.expected.as_ref()) {
                out.push(exp[i].clone());
            }
            continue;
        }
        let sizes: Vec<usize> = std::iter::repeat_n(rows, have / rows).collect();
        let split = |tensors: &[Tensor]| -> Result<Vec<Vec<Tensor>>> {
            let mut parts: Vec<Vec<Tensor>> = vec![Vec::new(); sizes.len()];
            for t in tensors {
                let mut sized = sizes.clone();
                let have = t.shape().first().copied().unwrap_or(0);
                let Some(rest) = have.checked_sub(rows * sizes.len()) else {
                    return Err(Error::Inputs {
                        model: set.source.clone(),
                        reason: format!(
                            "tensor '{}' has {have} rows where the first input has {}; give \
                             requests whose tensors agree on the batch dimension",
                            t.name(),
                            rows * sizes.len()
                        ),
                    });
                };
                if rest > 0 {
                    sized.push(rest);
                }
                for (j, piece) in t
                    .split_batch(&sized)?
                    .into_iter()
                    .take(sizes.len())
                    .enumerate()
                {
                    parts[j].push(piece);
                }
            }
            Ok(parts)
        };
        requests.extend(split(request)?);
        if let (Some(out), Some(exp)) = (expected.as_mut(), set.expected.as_ref()) {
            out.extend(split(&exp[i])?);
        }
    }
    Ok(RequestSet {
        requests,
        expected,
        source: format!("{} ({rows} row(s) per request)", set.source),
    })
}

/// Random requests shaped from `signature`: the batch dimension from
/// [`InputOptions::batch_size`], other dynamic dimensions from [`InputOptions::shapes`].
/// Floats are uniform in [-1, 1), integers in [0, 10), booleans fair coins.
pub fn random(model: &str, signature: &Signature, options: &InputOptions) -> Result<RequestSet> {
    let batchable = signature.is_batchable();
    let mut shapes = Vec::with_capacity(signature.inputs.len());
    for spec in &signature.inputs {
        if let Some(shape) = options.shapes.get(&spec.name) {
            shapes.push(shape.clone());
            continue;
        }
        let Some(dims) = &spec.shape else {
            return Err(Error::Inputs {
                model: model.to_owned(),
                reason: format!(
                    "input '{}' declares no shape; give it with --shape {}:D1,D2,...",
                    spec.name, spec.name
                ),
            });
        };
        let mut shape = Vec::with_capacity(dims.len());
        for (axis, dim) in dims.iter().enumerate() {
            match dim {
                Dim::Fixed(n) => shape.push(usize::try_from(*n).unwrap_or(usize::MAX)),
                Dim::Dynamic if axis == 0 && batchable => shape.push(options.batch_size.max(1)),
                Dim::Dynamic => {
                    return Err(Error::Inputs {
                        model: model.to_owned(),
                        reason: format!(
                            "input '{}' has a dynamic dimension {axis} (shape [{}]); give its \
                             shape with --shape {}:D1,D2,...",
                            spec.name,
                            dims.iter()
                                .map(|d| d.to_i64().to_string())
                                .collect::<Vec<_>>()
                                .join(", "),
                            spec.name
                        ),
                    });
                }
            }
        }
        shapes.push(shape);
    }
    let mut rng = StdRng::seed_from_u64(options.seed);
    let mut requests = Vec::with_capacity(options.random_requests.max(1));
    for _ in 0..options.random_requests.max(1) {
        let mut request = Vec::with_capacity(signature.inputs.len());
        for (spec, shape) in signature.inputs.iter().zip(&shapes) {
            request.push(
                random_tensor(&spec.name, spec.dtype, shape.clone(), &mut rng).map_err(
                    |reason| Error::Inputs {
                        model: model.to_owned(),
                        reason,
                    },
                )?,
            );
        }
        requests.push(request);
    }
    Ok(RequestSet {
        requests,
        expected: None,
        source: format!("random, seed {}", options.seed),
    })
}

fn random_tensor(
    name: &str,
    dtype: DataType,
    shape: Vec<usize>,
    rng: &mut StdRng,
) -> std::result::Result<Tensor, String> {
    let n: usize = shape.iter().product();
    let t = match dtype {
        DataType::Fp32 => Tensor::from_vec(
            name,
            shape,
            (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect(),
        ),
        DataType::Fp64 => Tensor::from_vec(
            name,
            shape,
            (0..n).map(|_| rng.random_range(-1.0f64..1.0)).collect(),
        ),
        DataType::Fp16 => Tensor::from_vec(
            name,
            shape,
            (0..n)
                .map(|_| half::f16::from_f32(rng.random_range(-1.0f32..1.0)))
                .collect(),
        ),
        DataType::Int64 => Tensor::from_vec(
            name,
            shape,
            (0..n).map(|_| rng.random_range(0i64..10)).collect(),
        ),
        DataType::Int32 => Tensor::from_vec(
            name,
            shape,
            (0..n).map(|_| rng.random_range(0i32..10)).collect(),
        ),
        DataType::Uint8 => Tensor::from_vec(
            name,
            shape,
            (0..n).map(|_| rng.random_range(0u8..10)).collect(),
        ),
        DataType::Bool => {
            let v: Vec<bool> = (0..n).map(|_| rng.random_bool(0.5)).collect();
            Tensor::from_bools(name, shape, &v)
        }
        other => {
            return Err(format!(
                "input '{name}': random {other} data is not made; give a request file (--input-data FILE)"
            ));
        }
    };
    t.map_err(|e| e.to_string())
}

/// Whether `got` matches `want`: the same names, shapes and types, and values within
/// `atol + rtol·|want|`. Returns the first difference.
pub fn check_outputs(
    got: &[Tensor],
    want: &[Tensor],
    atol: f64,
    rtol: f64,
) -> std::result::Result<(), String> {
    for w in want {
        let Some(g) = got.iter().find(|g| g.name() == w.name()) else {
            return Err(format!("output '{}' missing", w.name()));
        };
        if g.shape() != w.shape() {
            return Err(format!(
                "output '{}' has shape {:?}, expected {:?}",
                w.name(),
                g.shape(),
                w.shape()
            ));
        }
        let (gv, wv) = match (g.to_f64(), w.to_f64()) {
            (Ok(a), Ok(b)) => (a, b),
            _ => {
                if g.data() != w.data() {
                    return Err(format!("output '{}' differs", w.name()));
                }
                continue;
            }
        };
        for (i, (a, b)) in gv.iter().zip(&wv).enumerate() {
            let same = (a.is_nan() && b.is_nan()) || (a - b).abs() <= atol + rtol * b.abs();
            if !same {
                return Err(format!(
                    "output '{}' element {i} is {a}, expected {b}",
                    w.name()
                ));
            }
        }
    }
    Ok(())
}
