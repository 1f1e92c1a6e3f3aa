//! The one error type of `mlops-runtime`.

use std::time::Duration;

/// A backend's own error, kept as the source of ours.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

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
        /// What went wrong, with what the backend said.
        reason: String,
        /// The backend's own error, where there is one (an `ort::Error`, a
        /// `candle_core::Error`), for code that inspects it.
        #[source]
        source: Option<BoxError>,
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
        /// What went wrong, with what the backend said.
        reason: String,
        /// The backend's own error, where there is one.
        #[source]
        source: Option<BoxError>,
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
        /// The status it answered with.
        code: Code,
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
    /// The protocol status this error is answered with, on any front end.
    pub fn code(&self) -> Code {
        match self {
            // The server could not read its own files (a load from the repository): its
            // fault, not the request's.
            Error::InvalidInput(mlops_core::Error::Io { .. }) => Code::Internal,
            Error::InvalidInput(_) => Code::InvalidArgument,
            Error::ModelNotFound { .. } => Code::NotFound,
            Error::Overloaded { .. } => Code::ResourceExhausted,
            Error::Timeout { .. } => Code::DeadlineExceeded,
            Error::ShuttingDown { .. } | Error::Unavailable { .. } | Error::NoReplica { .. } => {
                Code::Unavailable
            }
            Error::NotCompiled { .. } => Code::Unimplemented,
            Error::Remote { code, .. } => *code,
            Error::Load { .. } | Error::Resize { .. } | Error::Inference { .. } => Code::Internal,
        }
    }

    /// Whether the same request may succeed if retried later (or on another replica):
    /// overload, queue timeouts and shutdown are temporary; bad input and missing models
    /// are not.
    pub fn is_temporary(&self) -> bool {
        match self {
            Error::Overloaded { .. }
            | Error::Timeout { .. }
            | Error::ShuttingDown { .. }
            | Error::NoReplica { .. } => true,
            Error::Remote { code, .. } => code.is_temporary(),
            _ => false,
        }
    }
}

/// The kind of an answer that is not a success, as both front ends of the Open Inference
/// Protocol say it: each has one HTTP status and one gRPC code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Code {
    /// The request is at fault (400, `INVALID_ARGUMENT`).
    InvalidArgument,
    /// No such model or version (404, `NOT_FOUND`).
    NotFound,
    /// The server is not set up for the operation, such as model control without a
    /// repository (400, `FAILED_PRECONDITION`).
    FailedPrecondition,
    /// A queue or budget is full: retry later (429, `RESOURCE_EXHAUSTED`).
    ResourceExhausted,
    /// The request's deadline passed (504, `DEADLINE_EXCEEDED`).
    DeadlineExceeded,
    /// The server or model is stopping or cannot serve now (503, `UNAVAILABLE`).
    Unavailable,
    /// This build lacks what the operation needs (501, `UNIMPLEMENTED`).
    Unimplemented,
    /// The server failed (500, `INTERNAL`).
    Internal,
    /// The answer was not one of the protocol's, such as a malformed response or a
    /// status this library does not know (500, `UNKNOWN`).
    Unknown,
}

impl Code {
    /// The HTTP status code.
    pub fn http_status(self) -> u16 {
        match self {
            Code::InvalidArgument | Code::FailedPrecondition => 400,
            Code::NotFound => 404,
            Code::ResourceExhausted => 429,
            Code::DeadlineExceeded => 504,
            Code::Unavailable => 503,
            Code::Unimplemented => 501,
            Code::Internal | Code::Unknown => 500,
        }
    }

    /// The code for an HTTP status: what a client makes of a server's answer.
    pub fn from_http_status(status: u16) -> Code {
        match status {
            400 | 413 | 422 => Code::InvalidArgument,
            404 => Code::NotFound,
            408 | 504 => Code::DeadlineExceeded,
            429 => Code::ResourceExhausted,
            501 => Code::Unimplemented,
            503 => Code::Unavailable,
            500 => Code::Internal,
            _ => Code::Unknown,
        }
    }

    /// Whether the same request may succeed later or on another replica.
    pub fn is_temporary(self) -> bool {
        matches!(
            self,
            Code::Unavailable | Code::ResourceExhausted | Code::DeadlineExceeded
        )
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Code::InvalidArgument => "INVALID_ARGUMENT",
            Code::NotFound => "NOT_FOUND",
            Code::FailedPrecondition => "FAILED_PRECONDITION",
            Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
            Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
            Code::Unavailable => "UNAVAILABLE",
            Code::Unimplemented => "UNIMPLEMENTED",
            Code::Internal => "INTERNAL",
            Code::Unknown => "UNKNOWN",
        })
    }
}
