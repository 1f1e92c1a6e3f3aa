//! The crate's one error type.

use std::path::PathBuf;

/// What went wrong in a policy, a trace, a simulation or a packing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is out of range or inconsistent.
    #[error("invalid {what}: {reason}")]
    InvalidConfig {
        /// The setting.
        what: &'static str,
        /// Why it is refused.
        reason: String,
    },
    /// A profile cannot drive a policy or a replica model.
    #[error("profile: {0}")]
    Profile(String),
    /// A trace file line that is not a valid arrival.
    #[error("{path}: line {line}: {reason}")]
    TraceLine {
        /// The file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A trace that cannot be simulated (empty, or generated with bad parameters).
    #[error("trace: {0}")]
    Trace(String),
    /// Reading or writing a file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The demand cannot be placed on GPUs of this size.
    #[error("packing: {0}")]
    Packing(String),
    /// The demand needs more GPUs than there are.
    #[error("packing: the demand needs {needed} GPUs; {available} are available")]
    TooManyGpus {
        /// GPUs the best placement uses.
        needed: u32,
        /// GPUs there are.
        available: u32,
    },
    /// A report that is not valid JSON for its type.
    #[error("report: {source}")]
    ReportJson {
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// Drawing a chart.
    #[error("chart: {0}")]
    Chart(String),
}

impl Error {
    /// Whether trying again could succeed: only I/O can; everything else is the input.
    pub fn is_temporary(&self) -> bool {
        matches!(self, Error::Io { source, .. } if matches!(
            source.kind(),
            std::io::ErrorKind::Interrupted | std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
        ))
    }

    pub(crate) fn config(what: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidConfig {
            what,
            reason: reason.into(),
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
