//! The one error type of `mlops-runtime`.

use std::time::Duration;

/// A `Result` whose error defaults to [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while loading or running a model.
///
/// Front ends map these to protocol status codes in one place: a request at fault
/// ([`Error::InvalidInput`]) is a 400, an unknown model a 404, [`Error::Overloaded`] a 429,
/// [`Error::Timeout`] a 504, the rest a 500 or 503.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The request does not fit the model (tensor names, data types, shapes), or a model
    /// package cannot be read.
    #[error(transparent)]
    InvalidInput(#[from] mlops_core::Error),

    /// No model of that name (and version) is loaded.
    #[error("model '{name}'{} is not loaded", version.map(|v| format!(" version {v}")).unwrap_or_default())]
    ModelNotFound {
        /// The name asked for.
        name: String,
        /// The version asked for, if any.
        version: Option<u64>,
    },

    /// A model could not be loaded into a session.
    #[error("cannot load model '{model}': {reason}")]
    Load {
        /// The model's name.
        model: String,
        /// What the backend said.
        reason: String,
    },

    /// A model's instances could not be added or removed; those serving are unchanged.
    #[error("cannot resize model '{model}': {reason}")]
    Resize {
        /// The model's name.
        model: String,
        /// Why.
        reason: String,
    },

    /// The backend failed while running a batch.
    #[error("model '{model}' failed to run: {reason}")]
    Inference {
        /// The model's name.
        model: String,
        /// What the backend said.
        reason: String,
    },

    /// The model's queue is full: the request was refused at once, not queued.
    #[error("model '{model}' is overloaded: its queue of {capacity} requests is full")]
    Overloaded {
        /// The model's name.
        model: String,
        /// The queue's capacity.
        capacity: usize,
    },

    /// The request's deadline passed before it could run.
    #[error("model '{model}': the request waited {waited:?} in the queue, past its deadline")]
    Timeout {
        /// The model's name.
        model: String,
        /// How long it waited.
        waited: Duration,
    },

    /// The model is being unloaded or the server is stopping; no new work is taken.
    #[error("model '{model}' is shutting down")]
    ShuttingDown {
        /// The model's name.
        model: String,
    },

    /// A feature this operation needs was not compiled in.
    #[error(
        "{what} needs the '{feature}' feature of mlops-runtime, which this build does not have"
    )]
    NotCompiled {
        /// What was asked for.
        what: String,
        /// The cargo feature that provides it.
        feature: &'static str,
    },

    /// A backend's native library is missing or unusable.
    #[error("{backend} is unavailable: {reason}")]
    Unavailable {
        /// The backend (`ONNX Runtime`, `CUDA`, …).
        backend: &'static str,
        /// Why, and how to fix it.
        reason: String,
    },

    /// A remote server answered with an error (from the client).
    #[error("model '{model}' at {address}: {code}: {message}")]
    Remote {
        /// The model id asked for.
        model: String,
        /// The replica that answered.
        address: String,
        /// The protocol's status (a gRPC code).
        code: String,
        /// What the server said.
        message: String,
    },

    /// No replica of a model could take the request (from the client).
    #[error("no live replica of model '{model}': {reason}")]
    NoReplica {
        /// The model id asked for.
        model: String,
        /// What was tried and why it failed.
        reason: String,
    },
}

impl Error {
    /// Whether the same request may succeed if retried later (or on another replica):
    /// overload, queue timeouts and shutdown are temporary; bad input and missing models
    /// are not.
    pub fn is_temporary(&self) -> bool {
        match self {
            Error::Overloaded { .. }
            | Error::Timeout { .. }
            | Error::ShuttingDown { .. }
            | Error::NoReplica { .. } => true,
            Error::Remote { code, .. } => matches!(
                code.as_str(),
                "Unavailable" | "ResourceExhausted" | "DeadlineExceeded"
            ),
            _ => false,
        }
    }
}
