//! The built-in repository of a slot ("local git"): a bare repository that
//! people `git push` to, followed on one branch.

use std::path::Path;

use super::git::GitSource;
use super::{SourceError, SourceProvider, SourceSnapshot, SourceSpec, other_error};

/// Creates the bare repository of an app slot at `path` (and its parent
/// folders), or checks and updates one already there. Deleting a branch by
/// a push is refused (`receive.denyDeletes`); force pushes are allowed, as
/// on Azure. Its `HEAD` names `main`.
///
/// No hook is installed: the deploy side polls [`LocalGitSource`] (or is
/// told of a push) and deploys when the followed branch moves.
pub fn create_local_repository(path: &Path) -> Result<(), SourceError> {
    const PROVIDER: &str = "local-git";
    let repo = match git2::Repository::open_bare(path) {
        Ok(repo) => repo,
        Err(_) => {
            if path.exists()
                && path
                    .read_dir()
                    .map(|mut d| d.next().is_some())
                    .unwrap_or(true)
            {
                return Err(SourceError::other(
                    PROVIDER,
                    format!("{} exists and is not a bare git repository", path.display()),
                ));
            }
            let mut options = git2::RepositoryInitOptions::new();
            options.bare(true).mkpath(true).initial_head("main");
            git2::Repository::init_opts(path, &options).map_err(|e| {
                other_error(
                    PROVIDER,
                    format!("cannot create the repository {}", path.display()),
                    e,
                )
            })?
        }
    };
    let mut config = repo
        .config()
        .and_then(|c| c.open_level(git2::ConfigLevel::Local))
        .map_err(|e| other_error(PROVIDER, "cannot open the repository's config", e))?;
    for (key, value) in [
        ("receive.denyDeletes", true),
        ("receive.denyDeleteCurrent", true),
        ("http.receivepack", true),
        ("core.logAllRefUpdates", true),
    ] {
        config
            .set_bool(key, value)
            .map_err(|e| other_error(PROVIDER, format!("cannot set {key}"), e))?;
    }
    Ok(())
}

/// Follows a branch of a built-in repository made by
/// [`create_local_repository`]: `SourceSpec::location` is its path,
/// `SourceSpec::reference` the branch (default `main`, falling back to
/// `master` with a note). A push to another branch does not move it.
///
/// While the branch has no commit, `head` and `fetch` give
/// [`SourceError::Empty`]: "nothing has been pushed to branch X yet".
#[derive(Debug)]
pub struct LocalGitSource {
    git: GitSource,
}

impl LocalGitSource {
    /// A provider for built-in repositories.
    pub fn new() -> Self {
        LocalGitSource {
            git: GitSource::local_only(),
        }
    }
}

impl Default for LocalGitSource {
    fn default() -> Self {
        Self::new()
    }
}

fnhost_core::forward_impls! {
    impl SourceProvider for LocalGitSource => git {
        fn name(&self) -> &str;
        fn head(&self, spec: &SourceSpec) -> Result<String, SourceError>;
        fn fetch(&self, spec: &SourceSpec, into: &Path) -> Result<SourceSnapshot, SourceError>;
        fn update(&self, spec: &SourceSpec, dir: &Path, previous: &str) -> Result<SourceSnapshot, SourceError>;
    }
}
