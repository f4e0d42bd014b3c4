//! Continuous deployment: a slot follows a source of truth (a git branch,
//! the slot's built-in repository, a synced folder, a Mercurial branch, a
//! zip file); every move of the source is fetched, built in a scratch copy
//! and deployed.
//!
//! ```no_run
//! use fnhost_deploy::Site;
//! use fnhost_deploy::cd::{BuildKind, ContinuousDeployer, SourceConfig, SourceKind, SyncOutcome};
//!
//! # fn main() -> Result<(), fnhost_deploy::Error> {
//! let cd = ContinuousDeployer::new(Site::open(".fnhost")?);
//! let config = SourceConfig::new(SourceKind::Git, "https://example.com/orders.git")
//!     .with_branch("main")
//!     .with_build(BuildKind::Auto);
//! cd.configure("orders", "production", config, None)?; // read-only from now on
//! match cd.sync_once("orders", "production")? {
//!     SyncOutcome::Deployed { deployments } => println!("{} deployed", deployments.len()),
//!     other => println!("{other:?}"),
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Per slot, beside the slot's own files:
//!
//! ```text
//! HOME/apps/APP/slots/SLOT/cd/              mode 0700
//! HOME/apps/APP/slots/SLOT/cd/config.json   the SourceConfig (mode 0600)
//! HOME/apps/APP/slots/SLOT/cd/state.json    the last deployed and last failed source ids
//! HOME/apps/APP/slots/SLOT/cd/password      the source's password or token (mode 0600)
//! HOME/apps/APP/slots/SLOT/cd/ssh_key       the source's SSH private key (mode 0600)
//! HOME/apps/APP/slots/SLOT/cd/webhook_secret  the secret webhooks are signed with (mode 0600)
//! HOME/apps/APP/slots/SLOT/cd/lock          one sync of the slot at a time
//! HOME/apps/APP/slots/SLOT/cd/pending       "the source moved while a sync ran"
//! HOME/apps/APP/slots/SLOT/cd/checkout/     the source's files, updated in place from sync to sync
//! HOME/apps/APP/slots/SLOT/cd/checkout.json which snapshot the checkout holds (absent: fetch afresh)
//! HOME/apps/APP/slots/SLOT/cd/work/         the scratch copy a build runs in
//! HOME/repos/APP/SLOT.git                   the built-in repository (`--local-git`)
//! HOME/cd-cache/{git,hg}/                   fetch caches of remote sources
//! ```
//!
//! **Coalescing.** A sync takes the slot's `cd/lock` without waiting. When
//! another sync holds it, it leaves a `pending` marker and returns
//! [`SyncOutcome::Coalesced`]: the holder re-reads the source's head after
//! each deployment, and again whenever the marker is there, so changes that
//! arrive during a deployment give exactly one follow-up deployment, of the
//! newest head, whoever (a `git push` hook, a poller, a webhook) noticed
//! them.
//!
//! The module a job: `config` (what a slot follows: [`SourceConfig`], and
//! configuring, reading and clearing it), `secrets` (credentials and the
//! webhook secret, owner-only), `checkout` (the source's files kept
//! between syncs), `sync` (one sync, coalesced across processes, and the
//! build step), `watch` (polling and file events), `push` (what a push
//! webhook's payload says).

mod checkout;
mod config;
#[cfg_attr(not(feature = "server"), allow(dead_code))]
pub(crate) mod push;
mod secrets;
mod sync;
mod watch;

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use config::{BuildKind, DEFAULT_BUILD_TIMEOUT, SourceConfig, SourceKind};
pub use secrets::SourceCredentials;
pub use sync::{SourceState, SyncOutcome};
pub use watch::WatchReport;

use crate::error::Error;
use crate::site::{Observer, Site, check_name};
use crate::source::{FolderSource, GitSource, HgSource, LocalGitSource, ZipSource};

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Error + 'a {
    move |e| Error::io(what, path, e)
}

/// Keeps slots in step with their sources; cheap to clone and to share
/// between threads (a management endpoint calls [`Self::sync_once`] or
/// [`Self::notify`] from its own threads).
#[derive(Debug, Clone)]
pub struct ContinuousDeployer {
    inner: Arc<Inner>,
}

struct Inner {
    site: Site,
    git: GitSource,
    local_git: LocalGitSource,
    folder: FolderSource,
    hg: HgSource,
    zip: ZipSource,
    observer: Option<Arc<dyn Observer + Send>>,
    executable: Option<PathBuf>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContinuousDeployer")
            .field("home", &self.site.home())
            .finish_non_exhaustive()
    }
}

impl ContinuousDeployer {
    /// Continuous deployment for the apps of `site`.
    pub fn new(site: Site) -> ContinuousDeployer {
        let cache = site.home().join("cd-cache");
        ContinuousDeployer {
            inner: Arc::new(Inner {
                git: GitSource::new(cache.join("git")),
                hg: HgSource::new(cache.join("hg")),
                local_git: LocalGitSource::new(),
                folder: FolderSource::new().with_stamp_dir(cache.join("folder")),
                zip: ZipSource::new(),
                site,
                observer: None,
                executable: None,
            }),
        }
    }

    fn inner_mut(&mut self) -> &mut Inner {
        Arc::get_mut(&mut self.inner).expect("configure a ContinuousDeployer before cloning it")
    }

    /// Reports the deployments' progress and logs (build output included)
    /// to `observer`. Call before cloning.
    pub fn with_observer(mut self, observer: Arc<dyn Observer + Send>) -> Self {
        self.inner_mut().observer = Some(observer);
        self
    }

    /// The `fnhost` executable the `post-receive` hook of a built-in
    /// repository runs (default: the current executable). Call before
    /// cloning.
    pub fn with_executable(mut self, path: impl Into<PathBuf>) -> Self {
        self.inner_mut().executable = Some(path.into());
        self
    }

    /// The site.
    pub fn site(&self) -> &Site {
        &self.inner.site
    }

    fn cd_dir(&self, app: &str, slot: &str) -> PathBuf {
        self.site()
            .home()
            .join("apps")
            .join(app)
            .join("slots")
            .join(slot)
            .join("cd")
    }

    /// The built-in repository of a slot (`HOME/repos/APP/SLOT.git`).
    pub fn local_repository(&self, app: &str, slot: &str) -> PathBuf {
        self.site()
            .home()
            .join("repos")
            .join(app)
            .join(format!("{slot}.git"))
    }

    fn check(&self, app: &str, slot: &str) -> Result<(), Error> {
        check_name("slot", slot)?;
        // Checks the app exists.
        self.site().continuous_deployment(app, slot)?;
        Ok(())
    }
}

fn open_lock(dir: &Path) -> Result<File, Error> {
    fs::create_dir_all(dir).map_err(io_err("cannot create", dir))?;
    let path = dir.join("lock");
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_err("cannot open", &path))
}
