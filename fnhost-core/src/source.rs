//! Source providers: where a function app's content comes from (a git
//! branch, a synced folder, a zip, a Mercurial repository, ...).
//!
//! Implementations live in fnhost-deploy; integrators add their own by
//! implementing [`SourceProvider`], and check it with the conformance suite
//! in `fnhost_core::testkit` (feature `testkit`).
//!
//! Providers are blocking: a deployment runs on a thread of its own. An
//! async caller runs them with `spawn_blocking`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};

/// What to follow: a location, and which branch or ref of it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceSpec {
    /// A URL or a path, as the provider understands it.
    pub location: String,
    /// A branch or any ref (`None`: the provider's default).
    pub reference: Option<String>,
    /// Provider-specific settings (credential names, quiet time...).
    /// Secrets are never stored here in clear; see the provider's docs.
    pub options: BTreeMap<String, String>,
}

impl SourceSpec {
    /// A spec for `location` with no ref and no options.
    pub fn new(location: impl Into<String>) -> Self {
        SourceSpec {
            location: location.into(),
            ..Self::default()
        }
    }

    /// Sets the branch or ref.
    pub fn with_reference(mut self, reference: impl Into<String>) -> Self {
        self.reference = Some(reference.into());
        self
    }

    /// Sets an option.
    pub fn with_option(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.options.insert(key.into(), value.into());
        self
    }
}

/// One version of the source, as fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceSnapshot {
    /// Identifies the content: a commit id, a content hash. Two snapshots
    /// with the same id have the same files.
    pub id: String,
    /// Who made it, when known.
    pub author: Option<String>,
    /// What it says about itself (a commit message), when known.
    pub message: Option<String>,
    /// When it was made, when known.
    pub time: Option<DateTime<Utc>>,
    /// Notes for the deployment log (for example "branch main not found,
    /// using master").
    pub notes: Vec<String>,
}

impl SourceSnapshot {
    /// A snapshot with this id and nothing else.
    pub fn new(id: impl Into<String>) -> Self {
        SourceSnapshot {
            id: id.into(),
            author: None,
            message: None,
            time: None,
            notes: Vec::new(),
        }
    }
}

/// Why a source could not be read. Each variant says what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// The location, branch or ref does not exist.
    #[error("{provider}: {what} not found{}", format_hint(.hint))]
    NotFound {
        /// The provider's name.
        provider: String,
        /// What is missing.
        what: String,
        /// What to do.
        hint: Option<String>,
    },
    /// The source exists but has nothing to deploy yet (an empty repository,
    /// a branch with no commits, an empty folder).
    #[error("{provider}: {message}")]
    Empty {
        /// The provider's name.
        provider: String,
        /// What is empty.
        message: String,
    },
    /// Credentials were refused or are missing.
    #[error("{provider}: authentication failed: {message}")]
    Auth {
        /// The provider's name.
        provider: String,
        /// What happened (never the secret itself).
        message: String,
    },
    /// The host or service cannot be reached.
    #[error("{provider}: cannot reach {location}: {message}")]
    Unreachable {
        /// The provider's name.
        provider: String,
        /// Where it tried.
        location: String,
        /// The cause.
        message: String,
    },
    /// The source is not ready (a synced folder still changing).
    #[error("{provider}: not ready: {message}")]
    NotReady {
        /// The provider's name.
        provider: String,
        /// Why.
        message: String,
    },
    /// Anything else, with the provider's own error.
    #[error("{provider}: {message}")]
    Other {
        /// The provider's name.
        provider: String,
        /// What went wrong.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

fn format_hint(h: &Option<String>) -> String {
    h.as_ref().map(|h| format!(": {h}")).unwrap_or_default()
}

impl SourceError {
    /// An [`SourceError::Other`] with a message.
    pub fn other(provider: &str, message: impl Into<String>) -> Self {
        SourceError::Other {
            provider: provider.to_owned(),
            message: message.into(),
            source: None,
        }
    }
}

/// A source of function app content.
///
/// # Contract
///
/// - [`SourceProvider::head`] returns the id of the newest snapshot for
///   `spec`, as cheaply as the source allows (a ref lookup after an
///   incremental fetch, a stat walk of a folder): callers poll it to learn
///   whether the source moved since the last deployed id.
/// - [`SourceProvider::fetch`] writes the newest snapshot's files into
///   `into`, an empty folder the caller owns, and returns its description.
///   The id it returns is the content it wrote (which may be newer than an
///   earlier `head`). Only the app's files are written: no `.git`, `.hg` or
///   other metadata of the source. File modes (the executable bit) are kept.
/// - [`SourceProvider::update`] brings a folder that holds an earlier
///   snapshot (as `fetch` or `update` wrote it, untouched since) to the
///   newest one. The result must equal what `fetch` would write into an
///   empty folder. Providers that can tell what changed between two
///   snapshots (git) write only the difference: unchanged files keep their
///   time stamps, so the deployment that follows does not hash them again.
///   The default empties the folder and calls `fetch`. After an error the
///   folder's content is undefined: the caller fetches afresh next time.
/// - Fetching the same id twice writes the same files.
/// - Errors are [`SourceError`]s that say what to do; a provider never
///   panics on bad input, and never puts a secret in a message.
/// - Both may be called from several threads at once (for different
///   specs); a provider serialises access to a shared cache itself.
pub trait SourceProvider: Send + Sync + fmt::Debug {
    /// A short name for messages and records, such as `git` or `folder`.
    fn name(&self) -> &str;

    /// The id of the newest snapshot.
    fn head(&self, spec: &SourceSpec) -> Result<String, SourceError>;

    /// Writes the newest snapshot into `into` and describes it.
    fn fetch(&self, spec: &SourceSpec, into: &Path) -> Result<SourceSnapshot, SourceError>;

    /// Brings `dir`, which holds snapshot `previous` of `spec`, to the
    /// newest snapshot and describes it (see the contract above). The
    /// default empties `dir` and calls [`SourceProvider::fetch`].
    fn update(
        &self,
        spec: &SourceSpec,
        dir: &Path,
        previous: &str,
    ) -> Result<SourceSnapshot, SourceError> {
        let _ = previous;
        empty_folder(dir).map_err(|e| {
            SourceError::other(self.name(), format!("cannot empty {}: {e}", dir.display()))
        })?;
        self.fetch(spec, dir)
    }
}

/// Removes everything inside `dir` (which stays, or is created).
pub fn empty_folder(dir: &Path) -> std::io::Result<()> {
    match std::fs::read_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::create_dir_all(dir),
        Err(e) => Err(e),
        Ok(entries) => {
            for entry in entries {
                let entry = entry?;
                let path = entry.path();
                if entry.file_type()?.is_dir() {
                    std::fs::remove_dir_all(&path)?;
                } else {
                    std::fs::remove_file(&path)?;
                }
            }
            Ok(())
        }
    }
}

crate::forward_impls! {
    impl<P> SourceProvider for [Arc<P>, Box<P>, &P] {
        fn name(&self) -> &str;
        fn head(&self, spec: &SourceSpec) -> Result<String, SourceError>;
        fn fetch(&self, spec: &SourceSpec, into: &Path) -> Result<SourceSnapshot, SourceError>;
        fn update(&self, spec: &SourceSpec, dir: &Path, previous: &str) -> Result<SourceSnapshot, SourceError>;
    }
}

/// Conveniences on every [`SourceProvider`].
pub trait SourceProviderExt: SourceProvider {
    /// Whether the source moved since `deployed` (the id of the last
    /// deployed snapshot; `None`: nothing deployed yet).
    fn moved_since(&self, spec: &SourceSpec, deployed: Option<&str>) -> Result<bool, SourceError> {
        Ok(deployed != Some(self.head(spec)?.as_str()))
    }
}

impl<P: SourceProvider + ?Sized> SourceProviderExt for P {}
