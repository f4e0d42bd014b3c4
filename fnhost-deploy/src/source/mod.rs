//! Source providers: where a function app's content comes from.
//!
//! Each type here implements [`fnhost_core::source::SourceProvider`]:
//!
//! | provider | `SourceSpec::location` | snapshot id |
//! | --- | --- | --- |
//! | [`GitSource`] | a local repository path, `file://`, `git://`, `http(s)://`, `ssh://` | the commit id |
//! | [`LocalGitSource`] | the built-in bare repository of a slot ([`create_local_repository`]) | the commit id |
//! | [`FolderSource`] | a synced folder (Dropbox, OneDrive) | a sha256 of the tree |
//! | [`ZipSource`] | a zip file | the sha256 of the zip |
//! | [`HgSource`] | a Mercurial repository path or URL | the changeset id |
//!
//! Every provider passes the conformance suite of `fnhost_core::testkit`.
//! Providers are blocking; `docs/sources.md` describes each one's options.
//!
//! ```no_run
//! use fnhost_core::source::{SourceProvider, SourceProviderExt, SourceSpec};
//! use fnhost_deploy::source::GitSource;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let git = GitSource::new("/var/cache/fnhost/git");
//! let spec = SourceSpec::new("https://example.com/orders.git").with_reference("main");
//! if git.moved_since(&spec, Some("1f0c...deployed id"))? {
//!     let snapshot = git.fetch(&spec, std::path::Path::new("/tmp/scratch"))?;
//!     println!("new commit {} by {:?}", snapshot.id, snapshot.author);
//! }
//! # Ok(())
//! # }
//! ```

mod folder;
mod git;
mod hg;
mod local_git;
mod zip;

pub use fnhost_core::source::{
    SourceError, SourceProvider, SourceProviderExt, SourceSnapshot, SourceSpec,
};
pub use folder::FolderSource;
pub use git::GitSource;
pub use hg::HgSource;
pub use local_git::{LocalGitSource, create_local_repository};
pub use zip::ZipSource;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

/// An [`SourceError::Other`] carrying its cause.
fn other_error(
    provider: &str,
    message: impl Into<String>,
    source: impl std::error::Error + Send + Sync + 'static,
) -> SourceError {
    SourceError::Other {
        provider: provider.to_owned(),
        message: message.into(),
        source: Some(Box::new(source)),
    }
}

/// Makes `target` a symbolic link to `link` (where links exist).
#[cfg(unix)]
fn make_link(link: impl AsRef<Path>, target: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(link, target)
}

#[cfg(not(unix))]
fn make_link(_link: impl AsRef<Path>, _target: &Path) -> std::io::Result<()> {
    Ok(())
}

/// One lock per cache folder, so that two threads never fetch into the same
/// cache at once (different caches proceed in parallel).
#[derive(Debug, Default)]
struct CacheLocks {
    locks: Mutex<HashMap<PathBuf, Arc<Mutex<()>>>>,
}

impl CacheLocks {
    fn for_path(&self, path: &Path) -> Arc<Mutex<()>> {
        let mut map = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
        map.entry(path.to_path_buf()).or_default().clone()
    }
}

/// The cache folder name for a remote URL: a readable tail and a hash.
fn cache_name(url: &str, suffix: &str) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(url.as_bytes());
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    let tail: String = url
        .trim_end_matches('/')
        .rsplit(['/', ':'])
        .next()
        .unwrap_or("repo")
        .trim_end_matches(suffix)
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(40)
        .collect();
    format!("{tail}-{hex}{suffix}")
}

/// Reads a secret named by a spec: the environment variable named by
/// option `<key>_env`, or the first line of the file named by `<key>_file`.
fn secret_option(
    provider: &str,
    spec: &SourceSpec,
    key: &str,
) -> Result<Option<String>, SourceError> {
    if let Some(var) = spec.options.get(&format!("{key}_env")) {
        return match std::env::var(var) {
            Ok(v) => Ok(Some(v)),
            Err(_) => Err(SourceError::Auth {
                provider: provider.to_owned(),
                message: format!("the environment variable {var} (option {key}_env) is not set"),
            }),
        };
    }
    if let Some(file) = spec.options.get(&format!("{key}_file")) {
        return match std::fs::read_to_string(file) {
            Ok(text) => Ok(Some(
                text.lines().next().unwrap_or("").trim_end().to_owned(),
            )),
            Err(e) => Err(SourceError::Auth {
                provider: provider.to_owned(),
                message: format!("cannot read {file} (option {key}_file): {e}"),
            }),
        };
    }
    Ok(None)
}
