//! The one error type of `mlops-core`.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::format::ModelFormat;

/// A `Result` whose error defaults to [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in `mlops-core`.
///
/// File errors name the file; tensor and signature errors name the tensor. Each says why.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },

    /// The content is not a model format this library understands.
    #[error("{}: unsupported model format: {reason}", At(path))]
    UnsupportedFormat {
        /// The file or directory, when the content came from one.
        path: Option<PathBuf>,
        /// What was found instead, and what is accepted.
        reason: String,
    },

    /// The content looks like a known format but cannot be read: truncated, corrupt or
    /// inconsistent.
    #[error("{}: malformed {format}: {reason}", At(path))]
    Malformed {
        /// The file or directory, when the content came from one.
        path: Option<PathBuf>,
        /// The format the content claims to be.
        format: ModelFormat,
        /// What is wrong with it.
        reason: String,
    },

    /// A manifest (`MLmodel` YAML or JSON) cannot be read or is inconsistent.
    #[error("{}: invalid manifest: {reason}", At(path))]
    InvalidManifest {
        /// The manifest file, when it came from one.
        path: Option<PathBuf>,
        /// What is wrong with it.
        reason: String,
    },

    /// A tensor is inconsistent in itself (data length against shape and data type), or an
    /// operation on tensors (a typed view, a batch concatenation or split) cannot apply.
    #[error("tensor '{tensor}': {reason}")]
    InvalidTensor {
        /// The tensor's name.
        tensor: String,
        /// What is wrong.
        reason: String,
    },

    /// A request's tensors do not match the model's signature.
    #[error("input '{tensor}': {reason}")]
    SignatureMismatch {
        /// The tensor that does not match (or is missing).
        tensor: String,
        /// Which rule it breaks: unknown name, missing, data type, rank or dimension.
        reason: String,
    },

    /// A model name, alias or similar identifier breaks the naming rules.
    #[error("invalid name {name:?}: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// Which rule it breaks.
        reason: String,
    },

    /// A model reference (`name`, `name/7`, `name@alias`, `models:/...`) cannot be parsed.
    #[error("invalid model reference {reference:?}: {reason}")]
    InvalidReference {
        /// The reference as given.
        reference: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl Error {
    /// Whether retrying the same operation may succeed: true only for transient I/O
    /// conditions (interrupted, timed out, would block). Malformed content, unsupported
    /// formats and mismatched tensors stay wrong however often they are retried.
    pub fn is_temporary(&self) -> bool {
        match self {
            Error::Io { source, .. } => matches!(
                source.kind(),
                io::ErrorKind::Interrupted | io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
            ),
            _ => false,
        }
    }

    /// Attaches a file path to an error raised on in-memory content, leaving errors that
    /// already name a file as they are.
    pub fn at_path(mut self, at: &Path) -> Self {
        match &mut self {
            Error::UnsupportedFormat { path, .. }
            | Error::Malformed { path, .. }
            | Error::InvalidManifest { path, .. }
                if path.is_none() =>
            {
                *path = Some(at.to_path_buf());
            }
            _ => {}
        }
        self
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn malformed(format: ModelFormat, reason: impl Into<String>) -> Self {
        Error::Malformed {
            path: None,
            format,
            reason: reason.into(),
        }
    }

    pub(crate) fn unsupported(reason: impl Into<String>) -> Self {
        Error::UnsupportedFormat {
            path: None,
            reason: reason.into(),
        }
    }

    pub(crate) fn manifest(reason: impl Into<String>) -> Self {
        Error::InvalidManifest {
            path: None,
            reason: reason.into(),
        }
    }

    pub(crate) fn tensor(tensor: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidTensor {
            tensor: tensor.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn mismatch(tensor: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::SignatureMismatch {
            tensor: tensor.into(),
            reason: reason.into(),
        }
    }
}

/// Displays an optional path, or says the content was in memory.
struct At<'a>(&'a Option<PathBuf>);

impl fmt::Display for At<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(path) => write!(f, "{}", path.display()),
            None => f.write_str("<in-memory content>"),
        }
    }
}
