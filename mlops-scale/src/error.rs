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
    /// A scaler could not read or set the replicas.
    #[error("scaler {scaler}: {reason}")]
    Scaler {
        /// The scaler's name.
        scaler: String,
        /// What failed.
        reason: String,
        /// Whether trying again could succeed (a timeout, a conflict), as opposed to a
        /// refusal (no permission, no such deployment).
        temporary: bool,
    },
    /// Metrics could not be collected.
    #[error("metrics from {source_name}: {reason}")]
    Metrics {
        /// Where they were read from.
        source_name: String,
        /// What failed.
        reason: String,
    },
}

impl Error {
    /// Whether trying again could succeed: some I/O, a temporary scaler failure and a
    /// failed scrape can; everything else is the input.
    pub fn is_temporary(&self) -> bool {
        match self {
            Error::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::Interrupted
                    | std::io::ErrorKind::TimedOut
                    | std::io::ErrorKind::WouldBlock
            ),
            Error::Scaler { temporary, .. } => *temporary,
            Error::Metrics { .. } => true,
            _ => false,
        }
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
