//! The crate's error.

use std::path::PathBuf;

/// What can go wrong in the cluster.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The state store failed.
    #[error("state store {store}: {message}")]
    State {
        /// The store (`sqlite:PATH` or the PostgreSQL URL without password).
        store: String,
        /// What failed.
        message: String,
    },
    /// A call to the manager failed.
    #[error("manager {url}: {message}")]
    Manager {
        /// The URL called.
        url: String,
        /// What failed.
        message: String,
    },
    /// The manager refused the token.
    #[error(
        "manager {url}: the token was refused ({status}); get one with `fnhost workers token` on the manager's machine"
    )]
    Unauthorized {
        /// The URL called.
        url: String,
        /// The status.
        status: u16,
    },
    /// Content whose sha256 is not the digest it was asked by.
    #[error("{what}: sha256 {actual} does not match the digest {expected}; refused")]
    DigestMismatch {
        /// What was fetched.
        what: String,
        /// The digest asked for.
        expected: String,
        /// The digest of what came.
        actual: String,
    },
    /// A file or folder failed.
    #[error("{}: {message}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// An app could not be loaded or started.
    #[error("app {app}: {message}")]
    App {
        /// The app (and slot).
        app: String,
        /// What failed.
        message: String,
    },
    /// Bad input (a flag, a label).
    #[error("{0}")]
    Invalid(String),
    /// The deployment store failed.
    #[error(transparent)]
    Deploy(#[from] fnhost_deploy::Error),
}

/// The crate's result.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, e: impl std::fmt::Display) -> Error {
        Error::Io {
            path: path.into(),
            message: e.to_string(),
        }
    }
}
