//! The crate's one error type.

use std::path::PathBuf;

/// What went wrong while profiling.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The model's inputs cannot be made up; the message names the flag or setting that
    /// would fix it.
    #[error("cannot build requests for model '{model}': {reason}")]
    Inputs {
        /// The model.
        model: String,
        /// Why, and what to give.
        reason: String,
    },
    /// A request file or report could not be read.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The server could not be started or never became ready.
    #[error("server '{command}' did not start: {reason}")]
    Launch {
        /// The command line.
        command: String,
        /// Why.
        reason: String,
    },
    /// The server exited while it was being measured.
    #[error("server exited while measured: {status}")]
    ServerExited {
        /// Its exit status.
        status: String,
    },
    /// A target (a URL, an address) could not be set up.
    #[error("target {target}: {reason}")]
    Target {
        /// The target.
        target: String,
        /// Why.
        reason: String,
    },
    /// A setting that cannot work.
    #[error("invalid setting: {0}")]
    Config(String),
    /// A profile made for another model, version or device than the one to serve.
    #[error("the profile does not fit: {0}")]
    Mismatch(String),
    /// A chart could not be drawn.
    #[error("chart {chart}: {reason}")]
    Chart {
        /// Which chart.
        chart: String,
        /// What the plotting library said.
        reason: String,
    },
    /// The run was interrupted (Ctrl-C); what was measured is kept.
    #[error("interrupted")]
    Interrupted,
    /// A model or tensor problem from the shared vocabulary.
    #[error(transparent)]
    Core(#[from] mlops_core::Error),
    /// A runtime problem (loading the model in process).
    #[error(transparent)]
    Runtime(#[from] mlops_runtime::Error),
    /// An operating-system call failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Whether trying again may succeed: a server that did not start or exited may start
    /// next time; bad settings and inputs will not change.
    pub fn is_temporary(&self) -> bool {
        matches!(
            self,
            Error::Launch { .. } | Error::ServerExited { .. } | Error::Io { .. }
        )
    }

    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            what: what.into(),
            source,
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
