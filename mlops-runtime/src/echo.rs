//! A runtime that needs no model file: each output is the input at the same position.
//! Other crates' tests (registry, profiler, scaler) serve it where a real model would only
//! slow them down.

use std::path::Path;
use std::time::Duration;

use mlops_core::{ModelManifest, Signature, Tensor};

use crate::error::{Error, Result};
use crate::session::{Device, InferenceRuntime, ModelSession};

/// Loads [`EchoSession`]s from any manifest that has a signature.
#[derive(Clone, Debug, Default)]
pub struct EchoRuntime {
    delay: Duration,
}

impl EchoRuntime {
    /// A runtime whose sessions answer at once.
    pub fn new() -> Self {
        EchoRuntime::default()
    }

    /// Makes every run take at least this long, to stand in for compute.
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

impl InferenceRuntime for EchoRuntime {
    fn name(&self) -> &'static str {
        "echo"
    }

    fn load(&self, manifest: &ModelManifest, _root: &Path) -> Result<Box<dyn ModelSession>> {
        let Some(signature) = manifest.signature.clone() else {
            return Err(Error::Load {
                model: manifest.name.clone(),
                reason: "the echo runtime needs a signature to know its outputs".into(),
                source: None,
            });
        };
        Ok(Box::new(
            EchoSession::new(signature)?.with_delay(self.delay),
        ))
    }
}

/// Returns input `i` as output `i`, renamed. The signature must pair each output with an
/// input of the same data type.
#[derive(Clone, Debug)]
pub struct EchoSession {
    signature: Signature,
    delay: Duration,
}

impl EchoSession {
    /// An echo session for this signature.
    pub fn new(signature: Signature) -> Result<Self> {
        if signature.outputs.len() > signature.inputs.len() {
            return Err(Error::Load {
                model: "echo".into(),
                reason: format!(
                    "{} outputs but only {} inputs to echo",
                    signature.outputs.len(),
                    signature.inputs.len()
                ),
                source: None,
            });
        }
        if let Some((i, o)) = signature
            .inputs
            .iter()
            .zip(&signature.outputs)
            .find(|(i, o)| i.dtype != o.dtype)
        {
            return Err(Error::Load {
                model: "echo".into(),
                reason: format!(
                    "output '{}' is {} but input '{}' is {}",
                    o.name, o.dtype, i.name, i.dtype
                ),
                source: None,
            });
        }
        Ok(EchoSession {
            signature,
            delay: Duration::ZERO,
        })
    }

    /// Makes every run take at least this long.
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

impl ModelSession for EchoSession {
    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn device(&self) -> Device {
        Device::Cpu
    }

    fn run(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        if !self.delay.is_zero() {
            std::thread::sleep(self.delay);
        }
        Ok(self
            .signature
            .outputs
            .iter()
            .zip(inputs)
            .map(|(spec, input)| input.clone().with_name(spec.name.clone()))
            .collect())
    }
}
