//! The one error type of `mlops-registry`.

/// A `Result` whose error defaults to [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the registry.
///
/// [`is_temporary`](Error::is_temporary) tells whether retrying can help.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A name, alias, reference, tag or artifact path breaks the rules, or an argument is
    /// out of range.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// A model, version, alias, artifact or lease does not exist.
    #[error("{what} not found")]
    NotFound {
        /// What was looked for, e.g. `model 'mlp' version 7`.
        what: String,
    },

    /// Creating something that already exists.
    #[error("{what} already exists")]
    AlreadyExists {
        /// What exists, e.g. `model 'mlp'`.
        what: String,
    },

    /// A compare-and-set lost: the state was not what the caller expected. Read again and
    /// decide; nothing was changed.
    #[error("conflict: {0}")]
    Conflict(String),

    /// The operation is not allowed in the current state (an alias to a version that is
    /// not ready, deleting a version an alias points at).
    #[error("not allowed: {0}")]
    FailedPrecondition(String),

    /// Stored bytes do not match what was recorded at registration.
    #[error("artifact '{path}' is corrupt: {reason}")]
    Integrity {
        /// The artifact's path in the store.
        path: String,
        /// Which check failed (size or sha256, expected and found).
        reason: String,
    },

    /// The database was written by a newer version of this library.
    #[error(
        "the registry database has schema version {found}, newer than the {supported} this \
         library understands: upgrade the library rather than write to it"
    )]
    SchemaTooNew {
        /// The version found in the database.
        found: i64,
        /// The highest version this build knows.
        supported: i64,
    },

    /// The metadata database failed.
    #[error("database: {0}")]
    Database(#[source] sqlx::Error),

    /// The artifact store failed.
    #[error("artifact store: {0}")]
    Storage(#[source] opendal::Error),

    /// A local file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },

    /// A model package cannot be read (format, signature, manifest).
    #[error(transparent)]
    Model(#[from] mlops_core::Error),

    /// Running a model during validation failed.
    #[error("validation of {model}: {reason}")]
    Validation {
        /// The model reference being run.
        model: String,
        /// What failed.
        reason: String,
    },

    /// The backend needs a feature this build does not have (`postgres`, `s3`, `hdfs`).
    #[error("{0}: this build of mlops-registry was compiled without the feature")]
    NotCompiled(&'static str),

    /// Stored metadata cannot be decoded (a hand-edited or damaged database).
    #[error("corrupt registry metadata: {0}")]
    Corrupt(String),

    /// A remote registry (MLflow) is down, too slow, overloaded or failing (5xx): a retry
    /// may help.
    #[error("{service} is unavailable ({reason}); retrying may help")]
    Unavailable {
        /// Which service, with its address.
        service: String,
        /// What happened: the timeout, the refused connection, the status it answered.
        reason: String,
    },

    /// A remote registry refused a call for a reason of its own (no permission, say).
    #[error("{service} refused the call ({status}): {message}")]
    Service {
        /// Which service.
        service: String,
        /// The HTTP status it answered.
        status: u16,
        /// What it said.
        message: String,
    },

    /// The backend cannot do this at all (MLflow keeps no audit log).
    #[error("not supported by this backend: {0}")]
    Unsupported(String),
}

impl Error {
    /// Whether retrying the same call may succeed: a busy or unreachable database or
    /// store, or a lost compare-and-set (after re-reading). Bad arguments, missing
    /// entities and corrupt artifacts stay wrong however often they are retried.
    pub fn is_temporary(&self) -> bool {
        match self {
            Error::Conflict(_) => true,
            Error::Database(e) => {
                matches!(
                    e,
                    sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed
                ) || is_busy(e)
            }
            Error::Storage(e) => e.is_temporary(),
            Error::Unavailable { .. } => true,
            Error::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::Interrupted | std::io::ErrorKind::TimedOut
            ),
            _ => false,
        }
    }

    pub(crate) fn not_found(what: impl Into<String>) -> Self {
        Error::NotFound { what: what.into() }
    }

    pub(crate) fn invalid(reason: impl Into<String>) -> Self {
        Error::InvalidArgument(reason.into())
    }

    pub(crate) fn io(path: impl std::fmt::Display, source: std::io::Error) -> Self {
        Error::Io {
            path: path.to_string(),
            source,
        }
    }
}

/// SQLite's "database is locked" and PostgreSQL's serialization failures clear on retry.
fn is_busy(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => match db.code().as_deref() {
            // PostgreSQL: serialization failure, deadlock.
            Some("40001" | "40P01") => true,
            // SQLite: SQLITE_BUSY, SQLITE_LOCKED and their extended codes.
            Some(code) => code.parse::<i32>().is_ok_and(|c| matches!(c & 0xff, 5 | 6)),
            None => false,
        },
        _ => false,
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        Error::Database(e)
    }
}

impl From<opendal::Error> for Error {
    fn from(e: opendal::Error) -> Self {
        match e.kind() {
            opendal::ErrorKind::NotFound => Error::NotFound {
                what: format!("artifact ({e})"),
            },
            _ => Error::Storage(e),
        }
    }
}
