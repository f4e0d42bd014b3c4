//! The crate's one public error type.

use std::io;
use std::path::PathBuf;

use fnhost_core::source::SourceError;

/// A result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a deployment operation failed. Each variant carries what a person
/// needs to act on it: the path, the app, the slot, the deployment.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file-system operation failed.
    #[error("{}: {what}: {source}", path.display())]
    Io {
        /// What was being done ("cannot write", "cannot read", ...).
        what: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The content store failed.
    #[error("store {store}: {what}: {source}")]
    Store {
        /// The store's description (its folder, or its backend's name).
        store: String,
        /// What was being done.
        what: String,
        /// The cause.
        source: io::Error,
    },
    /// A name (app, slot, deployment id, user) is not acceptable.
    #[error("invalid {kind} name {name:?}: {reason}")]
    InvalidName {
        /// What the name is for: "app", "slot", ...
        kind: &'static str,
        /// The name given.
        name: String,
        /// The rule it breaks.
        reason: &'static str,
    },
    /// The app does not exist in this home.
    #[error("no app named {app:?}; create it with `fnhost apps create {app}`")]
    AppNotFound {
        /// The app.
        app: String,
    },
    /// The app exists already.
    #[error("app {app:?} exists already")]
    AppExists {
        /// The app.
        app: String,
    },
    /// The slot has no active deployment.
    #[error("{app}/{slot}: no active deployment; deploy one first")]
    NoActiveDeployment {
        /// The app.
        app: String,
        /// The slot.
        slot: String,
    },
    /// No such deployment (or it was removed by retention).
    #[error("{app}: no deployment {id:?}")]
    DeploymentNotFound {
        /// The app.
        app: String,
        /// The id asked for.
        id: String,
    },
    /// Nothing to roll back to.
    #[error("{app}/{slot}: {reason}")]
    NoRollbackTarget {
        /// The app.
        app: String,
        /// The slot.
        slot: String,
        /// Why.
        reason: String,
    },
    /// Another deployment holds the slot and the caller asked not to wait.
    #[error("{app}/{slot}: a deployment is in progress ({}); try again when it ends, or leave out --no-wait to wait for it", holder.as_deref().unwrap_or("id unknown"))]
    Busy {
        /// The app.
        app: String,
        /// The slot.
        slot: String,
        /// The running deployment's id, when known.
        holder: Option<String>,
    },
    /// The deployment cannot be deleted: it is active or running.
    #[error("{app}: deployment {id} cannot be deleted: {reason}")]
    DeploymentInUse {
        /// The app.
        app: String,
        /// The deployment.
        id: String,
        /// Why.
        reason: String,
    },
    /// The slot takes its content from continuous deployment.
    #[error(
        "{app}/{slot} is read-only: continuous deployment from {source_of_truth} is configured, so that source is the source of truth; push there, or turn continuous deployment off for this slot to deploy content directly"
    )]
    ReadOnly {
        /// The app.
        app: String,
        /// The slot.
        slot: String,
        /// Where the content comes from (a repository and branch, a folder).
        source_of_truth: String,
    },
    /// The content to deploy cannot be read or is unsafe (a bad zip, a
    /// symlink that escapes, a limit exceeded).
    #[error("{}: {message}", path.display())]
    Package {
        /// The zip or folder.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A build (see [`crate::site::Prepare`]) failed; its log is in the
    /// deployment's record.
    #[error("build failed: {message}")]
    Build {
        /// What failed.
        message: String,
    },
    /// The deployment ran and failed; its record (status Failed) holds the
    /// log. The previous deployment stays active.
    #[error("deployment {id} to {app}/{slot} failed: {reason}")]
    DeploymentFailed {
        /// The app.
        app: String,
        /// The slot.
        slot: String,
        /// The failed deployment's id.
        id: String,
        /// The first line of the reason.
        reason: String,
    },
    /// A stored document (record, manifest, pointer) is not what fnhost wrote.
    #[error("{}: damaged: {message}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The app has no deployment credentials, or not for this user.
    #[error("{app}: {message}")]
    Credentials {
        /// The app.
        app: String,
        /// What is wrong.
        message: String,
    },
    /// Kubernetes manifests cannot be made for an app ([`crate::kube`]).
    #[error("{app}: cannot write Kubernetes manifests: {message}")]
    Kube {
        /// The app.
        app: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// A portal account cannot be added, removed or checked.
    #[error("portal user {user:?}: {message}")]
    PortalUser {
        /// The user name.
        user: String,
        /// What is wrong.
        message: String,
    },
    /// The source a slot follows ([`crate::cd`]) cannot be read. The
    /// message is the source's own (it names the provider and location).
    #[error("{source}")]
    Source {
        /// The app.
        app: String,
        /// The slot.
        slot: String,
        /// What the source provider said (boxed: it is large).
        source: Box<SourceError>,
    },
    /// The slot follows no source ([`crate::cd`]).
    #[error("{app}/{slot}: no source is configured; set one with `fnhost source set {app}`")]
    NotConfigured {
        /// The app.
        app: String,
        /// The slot.
        slot: String,
    },
    /// A continuous deployment setting is not acceptable (credentials for
    /// a source that takes none, an empty webhook secret).
    #[error("{message}")]
    InvalidSource {
        /// The app.
        app: String,
        /// The slot.
        slot: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// Exporting as a git repository failed.
    #[error("{}: cannot export as a git repository: {message}", path.display())]
    Git {
        /// The repository folder.
        path: PathBuf,
        /// The cause.
        message: String,
    },
}

impl Error {
    /// An [`Error::Io`].
    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            what,
            path: path.into(),
            source,
        }
    }

    /// An [`Error::Source`] of `app`/`slot`.
    pub(crate) fn source(app: &str, slot: &str, source: SourceError) -> Self {
        Error::Source {
            app: app.into(),
            slot: slot.into(),
            source: Box::new(source),
        }
    }
}

/// Adds a path and a verb to an `io::Result`.
pub(crate) trait IoContext<T> {
    /// Maps the error to [`Error::Io`].
    fn ctx(self, what: &'static str, path: &std::path::Path) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, what: &'static str, path: &std::path::Path) -> Result<T> {
        self.map_err(|e| Error::io(what, path, e))
    }
}
