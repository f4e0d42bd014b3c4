//! Continuous deployment: a slot follows a source of truth (a git branch,
//! the slot's built-in repository, a synced folder, a Mercurial branch, a
//! zip file); every move of the source is fetched, built in a scratch copy
//! and deployed.
//!
//! ```no_run
//! use fnhost_deploy::Site;
//! use fnhost_deploy::cd::{BuildKind, ContinuousDeployer, SourceConfig, SourceKind, SyncOutcome};
//!
//! # fn main() -> Result<(), fnhost_deploy::cd::CdError> {
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

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fnhost_core::build::{BuildContext, BuildLog, BuildProvider, LogLevel};
use fnhost_core::source::{SourceError, SourceProvider, SourceSnapshot, SourceSpec};
use serde::{Deserialize, Serialize};

use crate::build::{AutoBuild, NoneBuild, PipelineBuild};
use crate::deployment::{self, Deployment};
use crate::error::Error;
use crate::fsutil;
use crate::site::{Content, DeployRequest, Observer, Prepare, Site, check_name};
use crate::source::{
    FolderSource, GitSource, HgSource, LocalGitSource, ZipSource, create_local_repository,
};

/// The default build timeout (30 minutes).
pub const DEFAULT_BUILD_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Where a slot's content comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceKind {
    /// A git repository: a path or a URL ([`GitSource`]).
    Git,
    /// The slot's built-in repository under the home, pushed to
    /// ([`LocalGitSource`]).
    LocalGit,
    /// A synced folder ([`FolderSource`]).
    Folder,
    /// A Mercurial repository ([`HgSource`]).
    Hg,
    /// A zip file ([`ZipSource`]).
    Zip,
}

impl SourceKind {
    /// The name used in records (`deployer`) and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Git => "git",
            SourceKind::LocalGit => "local-git",
            SourceKind::Folder => "folder",
            SourceKind::Hg => "hg",
            SourceKind::Zip => "zip",
        }
    }

    fn has_branch(self) -> bool {
        matches!(
            self,
            SourceKind::Git | SourceKind::LocalGit | SourceKind::Hg
        )
    }
}

/// How a snapshot becomes the tree to deploy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BuildKind {
    /// Copy only ([`NoneBuild`]).
    #[default]
    None,
    /// Detected build: npm, pip, cargo ([`AutoBuild`]).
    Auto,
    /// The steps of `fnhost-build.json` ([`PipelineBuild`]).
    Pipeline,
}

impl BuildKind {
    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            BuildKind::None => "none",
            BuildKind::Auto => "auto",
            BuildKind::Pipeline => "pipeline",
        }
    }
}

/// A slot's continuous deployment configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SourceConfig {
    /// The kind of source.
    pub kind: SourceKind,
    /// Its location: a URL or a path (for `local-git`, set by
    /// [`ContinuousDeployer::configure`] to the built-in repository).
    pub location: String,
    /// The branch or ref followed (git, local git, hg); `None`: the
    /// provider's default (`main`, `default` for hg).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// The build.
    #[serde(default)]
    pub build: BuildKind,
    /// How long a build may take, in seconds.
    pub build_timeout_secs: u64,
    /// For a folder: how long it must have been quiet before it is taken,
    /// in milliseconds (`None`: the provider's default, 2000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quiet_period_ms: Option<u64>,
    /// The user name given to the source, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Whether a password (or token) is stored for the source.
    #[serde(default)]
    pub has_password: bool,
    /// Whether an SSH key is stored for the source.
    #[serde(default)]
    pub has_ssh_key: bool,
    /// The SSH server's host key fingerprint (`SHA256:…`) the source must
    /// present (`None`: checked against `~/.ssh/known_hosts`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_host_key: Option<String>,
    /// When it was configured.
    #[serde(default)]
    pub configured_time: String,
}

impl SourceConfig {
    /// Follows `location`, with no build and the default branch.
    pub fn new(kind: SourceKind, location: impl Into<String>) -> SourceConfig {
        SourceConfig {
            kind,
            location: location.into(),
            branch: None,
            build: BuildKind::None,
            build_timeout_secs: DEFAULT_BUILD_TIMEOUT.as_secs(),
            quiet_period_ms: None,
            username: None,
            has_password: false,
            has_ssh_key: false,
            ssh_host_key: None,
            configured_time: String::new(),
        }
    }

    /// Follows this branch (or ref).
    pub fn with_branch(mut self, branch: impl Into<String>) -> Self {
        self.branch = Some(branch.into());
        self
    }

    /// Builds with this kind of build.
    pub fn with_build(mut self, build: BuildKind) -> Self {
        self.build = build;
        self
    }

    /// Sets the build timeout.
    pub fn with_build_timeout(mut self, timeout: Duration) -> Self {
        self.build_timeout_secs = timeout.as_secs().max(1);
        self
    }

    /// Sets the user name given to the source (with no stored secret: an
    /// SSH agent's user, or a user in the URL's place).
    pub fn with_username(mut self, username: impl Into<String>) -> Self {
        self.username = Some(username.into());
        self
    }

    /// Pins the SSH server's host key: its fingerprint as `ssh-keygen -lf`
    /// prints it (`SHA256:…`).
    pub fn with_ssh_host_key(mut self, fingerprint: impl Into<String>) -> Self {
        self.ssh_host_key = Some(fingerprint.into());
        self
    }

    /// Sets a folder's quiet period.
    pub fn with_quiet_period(mut self, quiet: Duration) -> Self {
        self.quiet_period_ms = Some(quiet.as_millis() as u64);
        self
    }

    /// Describes the source in a line: `git URL (branch B)`. Never holds a
    /// secret (a password in a URL is shown as `***`).
    pub fn describe(&self) -> String {
        let mut s = format!("{} {}", self.kind.as_str(), redact_url(&self.location));
        if self.kind.has_branch() {
            let default = if self.kind == SourceKind::Hg {
                "default"
            } else {
                "main"
            };
            s.push_str(&format!(
                " (branch {})",
                self.branch.as_deref().unwrap_or(default)
            ));
        }
        s
    }

    fn build_timeout(&self) -> Duration {
        Duration::from_secs(self.build_timeout_secs.max(1))
    }
}

/// `https://user:secret@host/x` → `https://user:***@host/x`.
fn redact_url(url: &str) -> String {
    if let Some(scheme_end) = url.find("://") {
        let rest = &url[scheme_end + 3..];
        let authority_end = rest.find('/').unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@')
            && let Some(colon) = rest[..at].find(':')
        {
            return format!(
                "{}{}:***{}",
                &url[..scheme_end + 3],
                &rest[..colon],
                &rest[at..]
            );
        }
    }
    url.to_string()
}

/// Credentials for a source, given once to [`ContinuousDeployer::configure`]
/// and stored owner-only under the home; never printed or logged.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SourceCredentials {
    /// A user and a password or token (git over HTTP(S)).
    Password {
        /// The user name.
        username: String,
        /// The password or token.
        password: String,
    },
    /// An SSH private key (git over SSH).
    SshKey {
        /// The user name (default: the URL's, else `git`).
        username: Option<String>,
        /// The private key's content.
        key: Vec<u8>,
    },
}

impl std::fmt::Debug for SourceCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceCredentials::Password { username, .. } => f
                .debug_struct("Password")
                .field("username", username)
                .finish_non_exhaustive(),
            SourceCredentials::SshKey { username, .. } => f
                .debug_struct("SshKey")
                .field("username", username)
                .finish_non_exhaustive(),
        }
    }
}

/// The slot's checkout folder (the source's files, kept between syncs).
const CHECKOUT: &str = "checkout";
/// What the checkout folder holds.
const CHECKOUT_RECORD: &str = "checkout.json";

#[derive(Serialize, Deserialize)]
struct CheckoutRecord {
    /// The snapshot id the folder holds.
    id: String,
    /// The provider and spec it came from.
    origin: String,
}

/// What continuous deployment knows of a slot's last syncs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SourceState {
    /// The source id (commit, content hash) last deployed successfully.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployed_id: Option<String>,
    /// Its deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<String>,
    /// A source id whose deployment failed (not retried until the source
    /// moves, or a forced sync).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_id: Option<String>,
    /// The failed deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_deployment: Option<String>,
    /// When the source was last checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked_time: Option<String>,
}

/// What a sync did.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum SyncOutcome {
    /// The source moved: these deployments were made (more than one when
    /// the source moved again during a deployment), the last one active.
    Deployed {
        /// The deployments, oldest first.
        deployments: Vec<Deployment>,
    },
    /// The source has not moved since the deployed id.
    UpToDate {
        /// The deployed source id.
        source_id: String,
    },
    /// The source's head failed to deploy already; it is retried when the
    /// source moves (or with `force`).
    AlreadyFailed {
        /// The source id.
        source_id: String,
        /// Its failed deployment.
        deployment: Option<String>,
    },
    /// The source is not ready (a folder still being synced): nothing was
    /// deployed; try again later.
    NotReady {
        /// Why.
        message: String,
    },
    /// The source has nothing to deploy yet (nothing pushed).
    Empty {
        /// Why.
        message: String,
    },
    /// Another sync of the slot is running; it will deploy the newest head.
    Coalesced,
}

/// Why continuous deployment failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CdError {
    /// The site, or the deployment itself ([`Error::DeploymentFailed`]: a
    /// failed build or an invalid app, with a Failed record).
    #[error(transparent)]
    Deploy(#[from] Error),
    /// The source cannot be read.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The slot has no continuous deployment.
    #[error("{app}/{slot}: no source is configured; set one with `fnhost source set {app}`")]
    NotConfigured {
        /// The app.
        app: String,
        /// The slot.
        slot: String,
    },
    /// The configuration is invalid.
    #[error("{0}")]
    Invalid(String),
}

impl From<io::Error> for CdError {
    fn from(e: io::Error) -> Self {
        CdError::Deploy(Error::io("continuous deployment", PathBuf::new(), e))
    }
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> CdError + 'a {
    move |e| CdError::Deploy(Error::io(what, path, e))
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

    fn check(&self, app: &str, slot: &str) -> Result<(), CdError> {
        check_name("slot", slot)?;
        // Checks the app exists.
        self.site().continuous_deployment(app, slot)?;
        Ok(())
    }

    // ----- configuration -----

    /// Configures (or reconfigures) a slot's source: checks the source can
    /// be read (a missing branch, bad credentials or an unreachable host
    /// are refused; an empty repository is accepted), stores the
    /// configuration and the credentials (owner-only), creates the
    /// built-in repository and its `post-receive` hook for
    /// [`SourceKind::LocalGit`], and turns on read-only mode for the slot.
    /// It does not deploy: call [`Self::sync_once`] (or
    /// [`Self::sync_when_ready`]) for the initial deployment.
    pub fn configure(
        &self,
        app: &str,
        slot: &str,
        mut config: SourceConfig,
        credentials: Option<SourceCredentials>,
    ) -> Result<SourceConfig, CdError> {
        self.check(app, slot)?;
        let dir = self.cd_dir(app, slot);
        if credentials.is_some() && config.kind != SourceKind::Git {
            return Err(CdError::Invalid(format!(
                "credentials are for git sources; a {} source takes none (hg uses the [auth] section of your hg configuration)",
                config.kind.as_str()
            )));
        }
        match config.kind {
            SourceKind::LocalGit => {
                let repo = self.local_repository(app, slot);
                create_local_repository(&repo)?;
                let repo = fs::canonicalize(&repo).map_err(io_err("cannot read", &repo))?;
                config.location = repo.display().to_string();
            }
            SourceKind::Folder | SourceKind::Zip => {
                let p = Path::new(&config.location);
                let abs = fs::canonicalize(p).map_err(io_err("cannot read", p))?;
                config.location = abs.display().to_string();
            }
            SourceKind::Git | SourceKind::Hg => {
                // A relative local path is made absolute: syncs run from
                // anywhere.
                let p = Path::new(&config.location);
                if !config.location.contains("://")
                    && p.exists()
                    && let Ok(abs) = fs::canonicalize(p)
                {
                    config.location = abs.display().to_string();
                }
            }
        }
        fs::create_dir_all(&dir).map_err(io_err("cannot create", &dir))?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
            .map_err(io_err("cannot protect", &dir))?;
        // Credentials first, into temporary names: a refused check leaves
        // the previous configuration whole.
        let (pw_tmp, key_tmp) = (dir.join(".password.new"), dir.join(".ssh_key.new"));
        config.has_password = false;
        config.has_ssh_key = false;
        match &credentials {
            Some(SourceCredentials::Password { username, password }) => {
                write_secret(&pw_tmp, format!("{password}\n").as_bytes())?;
                config.username = Some(username.clone());
                config.has_password = true;
            }
            Some(SourceCredentials::SshKey { username, key }) => {
                write_secret(&key_tmp, key)?;
                config.username = username.clone();
                config.has_ssh_key = true;
            }
            None => {}
        }
        // Can it be read?
        if config.kind != SourceKind::LocalGit {
            let mut spec = self.spec(app, slot, &config);
            if config.has_password {
                spec.options
                    .insert("password_file".into(), pw_tmp.display().to_string());
            }
            if config.has_ssh_key {
                spec.options
                    .insert("ssh_key".into(), key_tmp.display().to_string());
            }
            match self.provider(config.kind).head(&spec) {
                Ok(_) | Err(SourceError::Empty { .. }) | Err(SourceError::NotReady { .. }) => {}
                Err(e) => {
                    let _ = fs::remove_file(&pw_tmp);
                    let _ = fs::remove_file(&key_tmp);
                    return Err(e.into());
                }
            }
        }
        let (pw, key) = (dir.join("password"), dir.join("ssh_key"));
        for (tmp, path, has) in [
            (&pw_tmp, &pw, config.has_password),
            (&key_tmp, &key, config.has_ssh_key),
        ] {
            if has {
                fs::rename(tmp, path).map_err(io_err("cannot write", path))?;
            } else {
                let _ = fs::remove_file(path);
            }
        }
        config.configured_time = deployment::now();
        let data = serde_json::to_vec_pretty(&config).map_err(io::Error::other)?;
        let path = dir.join("config.json");
        fsutil::atomic_write(&path, &dir.join(".config.tmp"), &data, 0o600)
            .map_err(io_err("cannot write", &path))?;
        // A new source: what was deployed from the old one says nothing.
        let state = dir.join("state.json");
        let _ = fs::remove_file(&state);
        if config.kind == SourceKind::LocalGit {
            self.install_hook(app, slot, Path::new(&config.location))?;
        }
        self.site()
            .set_continuous_deployment(app, slot, Some(&config.describe()))?;
        Ok(config)
    }

    fn install_hook(&self, app: &str, slot: &str, repo: &Path) -> Result<(), CdError> {
        let exe = match &self.inner.executable {
            Some(p) => p.clone(),
            None => std::env::current_exe()?,
        };
        let home = fs::canonicalize(self.site().home())?;
        let q = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
        let script = format!(
            "#!/bin/sh\n\
             # Installed by fnhost: deploys {app}/{slot} when its branch moves\n\
             # (a push to another branch leaves it as it is).\n\
             cat >/dev/null\n\
             unset GIT_DIR GIT_WORK_TREE GIT_INDEX_FILE GIT_QUARANTINE_PATH GIT_OBJECT_DIRECTORY GIT_ALTERNATE_OBJECT_DIRECTORIES\n\
             exec {} --home {} sync {} --slot {}\n",
            q(&exe.display().to_string()),
            q(&home.display().to_string()),
            q(app),
            q(slot),
        );
        let hooks = repo.join("hooks");
        fs::create_dir_all(&hooks).map_err(io_err("cannot create", &hooks))?;
        let path = hooks.join("post-receive");
        fsutil::atomic_write(
            &path,
            &hooks.join(".post-receive.tmp"),
            script.as_bytes(),
            0o755,
        )
        .map_err(io_err("cannot write", &path))
    }

    /// The slot's source configuration, if any.
    pub fn config(&self, app: &str, slot: &str) -> Result<Option<SourceConfig>, CdError> {
        self.check(app, slot)?;
        let path = self.cd_dir(app, slot).join("config.json");
        match fs::read(&path) {
            Ok(data) => serde_json::from_slice(&data).map(Some).map_err(|e| {
                CdError::Deploy(Error::Corrupt {
                    path,
                    message: e.to_string(),
                })
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(CdError::Deploy(Error::io("cannot read", path, e))),
        }
    }

    /// What the slot's syncs deployed last.
    pub fn state(&self, app: &str, slot: &str) -> Result<SourceState, CdError> {
        self.check(app, slot)?;
        let path = self.cd_dir(app, slot).join("state.json");
        Ok(fs::read(&path)
            .ok()
            .and_then(|d| serde_json::from_slice(&d).ok())
            .unwrap_or_default())
    }

    fn save_state(&self, app: &str, slot: &str, state: &SourceState) -> Result<(), CdError> {
        let dir = self.cd_dir(app, slot);
        let data = serde_json::to_vec_pretty(state).map_err(io::Error::other)?;
        let path = dir.join("state.json");
        fsutil::atomic_write(&path, &dir.join(".state.tmp"), &data, 0o600)
            .map_err(io_err("cannot write", &path))
    }

    /// Brings the slot's checkout (the source's files, kept between syncs)
    /// to the source's newest snapshot: an update from the snapshot it
    /// holds when that is known, else a fresh fetch. `checkout.json` names
    /// what the folder holds; it is removed (and the removal flushed)
    /// before the folder changes and written again once it is complete, so
    /// a folder left half-changed by an error or a kill is fetched afresh.
    fn checkout(
        &self,
        app: &str,
        slot: &str,
        provider: &dyn SourceProvider,
        spec: &SourceSpec,
        dir: &Path,
    ) -> Result<SourceSnapshot, CdError> {
        let cd = self.cd_dir(app, slot);
        let record = cd.join(CHECKOUT_RECORD);
        let origin = format!(
            "{} {} {:?} {:?}",
            provider.name(),
            spec.location,
            spec.reference,
            spec.options
        );
        let held = fs::read(&record)
            .ok()
            .and_then(|d| serde_json::from_slice::<CheckoutRecord>(&d).ok())
            .filter(|r| r.origin == origin && dir.is_dir());
        if record.exists() {
            fs::remove_file(&record).map_err(io_err("cannot remove", &record))?;
            fsutil::sync_dir(&cd).map_err(io_err("cannot flush", &cd))?;
        }
        let snapshot = match held {
            Some(r) => provider.update(spec, dir, &r.id)?,
            None => {
                fnhost_core::source::empty_folder(dir).map_err(io_err("cannot empty", dir))?;
                provider.fetch(spec, dir)?
            }
        };
        let data = serde_json::to_vec(&CheckoutRecord {
            id: snapshot.id.clone(),
            origin,
        })
        .map_err(io::Error::other)?;
        fsutil::atomic_write(&record, &cd.join(".checkout.tmp"), &data, 0o600)
            .map_err(io_err("cannot write", &record))?;
        Ok(snapshot)
    }

    /// Turns continuous deployment off for a slot: removes its
    /// configuration and credentials and turns read-only mode off. The
    /// deployments (history) and a built-in repository stay. Returns
    /// whether a source was configured. Waits for a running sync.
    pub fn clear(&self, app: &str, slot: &str) -> Result<bool, CdError> {
        self.check(app, slot)?;
        let dir = self.cd_dir(app, slot);
        let was = dir.join("config.json").exists();
        if dir.is_dir() {
            let lock = open_lock(&dir)?;
            lock.lock().map_err(io_err("cannot lock", &dir))?;
            for name in [
                "config.json",
                "password",
                "ssh_key",
                "webhook_secret",
                "state.json",
                "pending",
                CHECKOUT_RECORD,
            ] {
                let _ = fs::remove_file(dir.join(name));
            }
            let _ = fsutil::remove_tree(&dir.join("work"));
            let _ = fsutil::remove_tree(&dir.join(CHECKOUT));
            let repo = self.local_repository(app, slot);
            let _ = fs::remove_file(repo.join("hooks").join("post-receive"));
        }
        self.site().set_continuous_deployment(app, slot, None)?;
        Ok(was)
    }

    /// Sets (`Some`) or removes (`None`) the secret that webhooks to the
    /// slot are signed with (GitHub's `X-Hub-Signature-256`, GitLab's
    /// `X-Gitlab-Token`); stored owner-only, never printed. Removed by
    /// [`Self::clear`], kept by a new [`Self::configure`].
    pub fn set_webhook_secret(
        &self,
        app: &str,
        slot: &str,
        secret: Option<&[u8]>,
    ) -> Result<(), CdError> {
        self.check(app, slot)?;
        let dir = self.cd_dir(app, slot);
        let path = dir.join("webhook_secret");
        match secret {
            Some([]) => Err(CdError::Invalid("the webhook secret is empty".into())),
            Some(s) => {
                fs::create_dir_all(&dir).map_err(io_err("cannot create", &dir))?;
                fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
                    .map_err(io_err("cannot protect", &dir))?;
                let tmp = dir.join(".webhook_secret.new");
                write_secret(&tmp, s)?;
                fs::rename(&tmp, &path).map_err(io_err("cannot write", &path))
            }
            None => match fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    Err(CdError::Deploy(Error::io("cannot remove", path, e)))
                }
                _ => Ok(()),
            },
        }
    }

    /// The slot's webhook secret, if one is set.
    pub fn webhook_secret(&self, app: &str, slot: &str) -> Result<Option<Vec<u8>>, CdError> {
        let path = self.cd_dir(app, slot).join("webhook_secret");
        match fs::read(&path) {
            Ok(d) => Ok(Some(d)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(CdError::Deploy(Error::io("cannot read", path, e))),
        }
    }

    /// Every slot with a source, as `(app, slot)`: of `apps`, or of all
    /// apps when `apps` is empty.
    pub fn configured(&self, apps: &[String]) -> Result<Vec<(String, String)>, CdError> {
        let names: Vec<String> = if apps.is_empty() {
            self.site().apps()?.into_iter().map(|a| a.name).collect()
        } else {
            apps.to_vec()
        };
        let mut out = Vec::new();
        for app in names {
            for slot in self.site().slots(&app).or_else(|e| {
                // An app named on the command line must exist.
                self.check(&app, crate::site::PRODUCTION)?;
                Err(CdError::from(e))
            })? {
                if self.cd_dir(&app, &slot).join("config.json").is_file() {
                    out.push((app.clone(), slot));
                }
            }
        }
        Ok(out)
    }

    // ----- sources -----

    fn provider(&self, kind: SourceKind) -> &dyn SourceProvider {
        match kind {
            SourceKind::Git => &self.inner.git,
            SourceKind::LocalGit => &self.inner.local_git,
            SourceKind::Folder => &self.inner.folder,
            SourceKind::Hg => &self.inner.hg,
            SourceKind::Zip => &self.inner.zip,
        }
    }

    fn spec(&self, app: &str, slot: &str, config: &SourceConfig) -> SourceSpec {
        let dir = self.cd_dir(app, slot);
        let mut spec = SourceSpec::new(config.location.clone());
        if config.kind.has_branch() {
            spec.reference = config.branch.clone();
        }
        if let Some(q) = config.quiet_period_ms {
            spec.options.insert("quiet_ms".into(), q.to_string());
        }
        if let Some(u) = &config.username {
            spec.options.insert("username".into(), u.clone());
        }
        if config.has_password {
            spec.options.insert(
                "password_file".into(),
                dir.join("password").display().to_string(),
            );
        }
        if config.has_ssh_key {
            spec.options
                .insert("ssh_key".into(), dir.join("ssh_key").display().to_string());
        }
        if let Some(k) = &config.ssh_host_key {
            spec.options.insert("ssh_host_key".into(), k.clone());
        }
        spec
    }

    /// The id of the source's newest snapshot (cheap: see
    /// [`SourceProvider::head`]).
    pub fn head(&self, app: &str, slot: &str) -> Result<String, CdError> {
        let config = self.require_config(app, slot)?;
        Ok(self
            .provider(config.kind)
            .head(&self.spec(app, slot, &config))?)
    }

    fn require_config(&self, app: &str, slot: &str) -> Result<SourceConfig, CdError> {
        self.config(app, slot)?
            .ok_or_else(|| CdError::NotConfigured {
                app: app.into(),
                slot: slot.into(),
            })
    }

    // ----- sync -----

    /// Deploys the source's newest snapshot if it moved since the last
    /// deployed id (and, after each deployment, again if it moved
    /// meanwhile); does nothing when it did not. A head that failed to
    /// deploy is not retried until the source moves. Coalesces with a sync
    /// of the same slot running in any thread or process
    /// ([`SyncOutcome::Coalesced`]). A failed build or an invalid app is
    /// [`Error::DeploymentFailed`] (a Failed record; the previous
    /// deployment stays active).
    pub fn sync_once(&self, app: &str, slot: &str) -> Result<SyncOutcome, CdError> {
        self.sync(app, slot, false)
    }

    /// [`Self::sync_once`], deploying even when the head was deployed (or
    /// failed) already (`force`).
    pub fn sync(&self, app: &str, slot: &str, force: bool) -> Result<SyncOutcome, CdError> {
        self.require_config(app, slot)?;
        let dir = self.cd_dir(app, slot);
        let pending = dir.join("pending");
        let lock = open_lock(&dir)?;
        let mut deployed: Vec<Deployment> = Vec::new();
        let mut force = force;
        loop {
            match lock.try_lock() {
                Ok(()) => {}
                Err(fs::TryLockError::WouldBlock) => {
                    touch(&pending)?;
                    // The holder may have finished between the two: then
                    // this sync does the work.
                    match lock.try_lock() {
                        Ok(()) => {}
                        Err(fs::TryLockError::WouldBlock) => {
                            return Ok(if deployed.is_empty() {
                                SyncOutcome::Coalesced
                            } else {
                                SyncOutcome::Deployed {
                                    deployments: deployed,
                                }
                            });
                        }
                        Err(fs::TryLockError::Error(e)) => return Err(e.into()),
                    }
                }
                Err(fs::TryLockError::Error(e)) => return Err(e.into()),
            }
            let mut last: Result<SyncOutcome, CdError>;
            loop {
                let _ = fs::remove_file(&pending);
                last = match self.require_config(app, slot) {
                    Ok(config) => self.sync_locked(app, slot, &config, force),
                    Err(e) => Err(e),
                };
                force = false;
                match &mut last {
                    Ok(SyncOutcome::Deployed { deployments }) => {
                        deployed.append(deployments);
                        // Moved again meanwhile? Checked at the next turn.
                        continue;
                    }
                    Err(CdError::Deploy(Error::DeploymentFailed { .. })) if pending.exists() => {
                        continue;
                    }
                    _ if pending.exists() => continue,
                    _ => break,
                }
            }
            let _ = lock.unlock();
            if !pending.exists() {
                return match last {
                    Ok(_) if !deployed.is_empty() => Ok(SyncOutcome::Deployed {
                        deployments: deployed,
                    }),
                    other => other,
                };
            }
        }
    }

    /// [`Self::sync_once`], retrying while the source is not ready (a
    /// folder being synced), for at most `max_wait`.
    pub fn sync_when_ready(
        &self,
        app: &str,
        slot: &str,
        max_wait: Duration,
    ) -> Result<SyncOutcome, CdError> {
        let deadline = Instant::now() + max_wait;
        loop {
            let outcome = self.sync_once(app, slot)?;
            match outcome {
                SyncOutcome::NotReady { .. } if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(200));
                }
                other => return Ok(other),
            }
        }
    }

    /// Tells that the source of `app`/`slot` moved (a webhook, a push over
    /// HTTP): syncs it on a thread of its own, coalesced with any sync of
    /// the slot already running, and returns at once.
    pub fn notify(
        &self,
        app: &str,
        slot: &str,
    ) -> std::thread::JoinHandle<Result<SyncOutcome, CdError>> {
        let this = self.clone();
        let (app, slot) = (app.to_string(), slot.to_string());
        std::thread::spawn(move || this.sync_once(&app, &slot))
    }

    /// Under the slot's cd lock: compares, fetches, builds, deploys.
    fn sync_locked(
        &self,
        app: &str,
        slot: &str,
        config: &SourceConfig,
        force: bool,
    ) -> Result<SyncOutcome, CdError> {
        let provider = self.provider(config.kind);
        let spec = self.spec(app, slot, config);
        let mut state = self.state(app, slot)?;
        state.checked_time = Some(deployment::now());
        let head = match provider.head(&spec) {
            Ok(h) => h,
            Err(SourceError::NotReady { message, .. }) => {
                return Ok(SyncOutcome::NotReady { message });
            }
            Err(SourceError::Empty { message, .. }) => return Ok(SyncOutcome::Empty { message }),
            Err(e) => return Err(e.into()),
        };
        if !force {
            if state.deployed_id.as_deref() == Some(head.as_str()) {
                return Ok(SyncOutcome::UpToDate { source_id: head });
            }
            if state.failed_id.as_deref() == Some(head.as_str()) {
                return Ok(SyncOutcome::AlreadyFailed {
                    source_id: head,
                    deployment: state.failed_deployment,
                });
            }
        }
        let work = self.cd_dir(app, slot).join("work");
        if work.exists() {
            fsutil::remove_tree(&work).map_err(io_err("cannot remove", &work))?;
        }
        let temp = work.join("temp");
        fs::create_dir_all(&temp).map_err(io_err("cannot create", &temp))?;
        let result = self.deploy_snapshot(app, slot, config, provider, &spec, &work);
        let _ = fsutil::remove_tree(&work);
        match result {
            Ok(Some((snapshot, d))) => {
                state.deployed_id = Some(snapshot.id);
                state.deployment = Some(d.id.clone());
                state.failed_id = None;
                state.failed_deployment = None;
                self.save_state(app, slot, &state)?;
                Ok(SyncOutcome::Deployed {
                    deployments: vec![d],
                })
            }
            Ok(None) => Ok(SyncOutcome::NotReady {
                message: "the source changed while it was read".into(),
            }),
            Err((snapshot, e)) => {
                if let (Some(s), CdError::Deploy(Error::DeploymentFailed { id, .. })) =
                    (snapshot, &e)
                {
                    state.failed_id = Some(s.id);
                    state.failed_deployment = Some(id.clone());
                    self.save_state(app, slot, &state)?;
                }
                Err(e)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    #[allow(clippy::type_complexity)]
    #[allow(clippy::result_large_err)] // internal; the error is consumed at once
    fn deploy_snapshot(
        &self,
        app: &str,
        slot: &str,
        config: &SourceConfig,
        provider: &dyn SourceProvider,
        spec: &SourceSpec,
        work: &Path,
    ) -> Result<Option<(SourceSnapshot, Deployment)>, (Option<SourceSnapshot>, CdError)> {
        let checkout = self.cd_dir(app, slot).join(CHECKOUT);
        let snapshot = match self.checkout(app, slot, provider, spec, &checkout) {
            Ok(s) => s,
            Err(CdError::Source(SourceError::NotReady { .. })) => return Ok(None),
            Err(e) => return Err((None, e)),
        };
        let temp = work.join("temp");
        let settings: Vec<(String, String)> = self
            .site()
            .app_settings(app, slot)
            .map_err(|e| (None, e.into()))?
            .into_iter()
            .collect();
        let builder: Box<dyn BuildProvider> = match config.build {
            BuildKind::None => Box::new(NoneBuild::new()),
            BuildKind::Auto => Box::new(AutoBuild::new()),
            BuildKind::Pipeline => Box::new(PipelineBuild::new()),
        };
        let step = BuildStep {
            build: builder.as_ref(),
            // A build that runs commands works on a copy: the checkout stays
            // as the source wrote it, for the next update.
            scratch: (config.build != BuildKind::None).then(|| work.join("src")),
            snapshot: &snapshot,
            env: &settings,
            temp: &temp,
            timeout: config.build_timeout(),
            source: config.describe(),
        };
        let quiet = Quiet;
        let observer: &dyn Observer = match &self.inner.observer {
            Some(o) => o.as_ref(),
            None => &quiet,
        };
        let mut req = DeployRequest::new(app, Content::Folder(checkout.clone()))
            .with_slot(slot)
            .from_source_of_truth()
            .with_source_id(snapshot.id.clone())
            .with_source(config.describe())
            .with_deployer(config.kind.as_str())
            .with_prepare(&step)
            .with_observer(observer);
        if let Some(a) = &snapshot.author {
            req = req.with_author(a.clone());
        }
        if let Some(m) = &snapshot.message {
            req = req.with_message(m.trim_end().to_string());
        }
        match self.site().deploy(req) {
            Ok(outcome) => Ok(Some((snapshot, outcome.deployment))),
            Err(e) => Err((Some(snapshot), e.into())),
        }
    }

    // ----- watch -----

    /// Keeps every configured slot (of `apps`, or of all apps when empty)
    /// in step with its source: every `interval`, each slot not already
    /// syncing is synced on a thread of its own ([`Self::sync_once`]:
    /// `head` is cheap when nothing moved). Folder sources are also watched
    /// for file events (inotify on Linux): a change is synced at once, not
    /// at the next interval. A sync that finds the source not ready (a
    /// folder still changing) is retried every 200 ms until it is. Slots
    /// configured or cleared meanwhile are picked up. `report` hears every
    /// sync's result (from the syncing threads). Returns when `stop` is
    /// set, after the running deployments finish.
    pub fn watch(
        &self,
        apps: &[String],
        interval: Duration,
        stop: &AtomicBool,
        report: &WatchReport<'_>,
    ) -> Result<(), CdError> {
        // Fail early on an unknown app.
        self.configured(apps)?;
        let busy: Mutex<HashSet<(String, String)>> = Mutex::new(HashSet::new());
        let events = FolderEvents::default();
        std::thread::scope(|s| -> Result<(), CdError> {
            let mut next_poll = Instant::now();
            while !stop.load(Ordering::SeqCst) {
                let mut due: Vec<(String, String)> = Vec::new();
                if Instant::now() >= next_poll {
                    next_poll = Instant::now() + interval;
                    due = match self.configured(apps) {
                        Ok(s) => s,
                        Err(e) => {
                            report("", "", &Err(e));
                            Vec::new()
                        }
                    };
                    events.follow(self, &due);
                }
                due.extend(events.take_changed(&busy));
                for key in due {
                    if !busy
                        .lock()
                        .map(|mut b| b.insert(key.clone()))
                        .unwrap_or(false)
                    {
                        continue;
                    }
                    let busy = &busy;
                    s.spawn(move || {
                        let result = loop {
                            let result = self.sync_once(&key.0, &key.1);
                            if !matches!(result, Ok(SyncOutcome::NotReady { .. }))
                                || stop.load(Ordering::SeqCst)
                            {
                                break result;
                            }
                            std::thread::sleep(Duration::from_millis(200));
                        };
                        report(&key.0, &key.1, &result);
                        if let Ok(mut b) = busy.lock() {
                            b.remove(&key);
                        }
                    });
                }
                while !stop.load(Ordering::SeqCst)
                    && Instant::now() < next_poll
                    && !events.any_changed(&busy)
                {
                    std::thread::sleep(
                        next_poll
                            .saturating_duration_since(Instant::now())
                            .min(Duration::from_millis(50)),
                    );
                }
            }
            Ok(())
        })
    }
}

/// File-event watchers of the folder sources [`ContinuousDeployer::watch`]
/// follows; an event marks the slot as changed.
#[derive(Default)]
struct FolderEvents {
    watchers: Mutex<HashMap<(String, String), (PathBuf, notify::RecommendedWatcher)>>,
    changed: Arc<Mutex<HashSet<(String, String)>>>,
}

impl FolderEvents {
    /// Watches the folders of the folder sources among `slots`, and stops
    /// watching those no longer configured. A folder that cannot be watched
    /// is left to polling.
    fn follow(&self, cd: &ContinuousDeployer, slots: &[(String, String)]) {
        let Ok(mut watchers) = self.watchers.lock() else {
            return;
        };
        let mut wanted: HashMap<(String, String), PathBuf> = HashMap::new();
        for (app, slot) in slots {
            if let Ok(Some(config)) = cd.config(app, slot)
                && config.kind == SourceKind::Folder
            {
                wanted.insert((app.clone(), slot.clone()), PathBuf::from(&config.location));
            }
        }
        watchers.retain(|key, (folder, _)| wanted.get(key) == Some(folder));
        for (key, folder) in wanted {
            if watchers.contains_key(&key) {
                continue;
            }
            let changed = Arc::clone(&self.changed);
            let marked = key.clone();
            let watcher =
                notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                    let relevant = event.is_ok_and(|e| !e.kind.is_access());
                    if relevant && let Ok(mut c) = changed.lock() {
                        c.insert(marked.clone());
                    }
                });
            if let Ok(mut w) = watcher
                && notify::Watcher::watch(&mut w, &folder, notify::RecursiveMode::Recursive).is_ok()
            {
                watchers.insert(key, (folder, w));
            }
        }
    }

    /// The changed slots that are not syncing (the others stay marked, to
    /// be synced again when their sync ends: it may have read the folder
    /// before the change).
    fn take_changed(&self, busy: &Mutex<HashSet<(String, String)>>) -> Vec<(String, String)> {
        let (Ok(mut changed), Ok(busy)) = (self.changed.lock(), busy.lock()) else {
            return Vec::new();
        };
        let ready: Vec<(String, String)> = changed
            .iter()
            .filter(|k| !busy.contains(*k))
            .cloned()
            .collect();
        for k in &ready {
            changed.remove(k);
        }
        ready
    }

    fn any_changed(&self, busy: &Mutex<HashSet<(String, String)>>) -> bool {
        let (Ok(changed), Ok(busy)) = (self.changed.lock(), busy.lock()) else {
            return false;
        };
        changed.iter().any(|k| !busy.contains(k))
    }
}

/// What [`ContinuousDeployer::watch`] calls with each sync's result: the
/// app, the slot, the result.
pub type WatchReport<'a> = dyn Fn(&str, &str, &Result<SyncOutcome, CdError>) + Sync + 'a;

struct Quiet;

impl Observer for Quiet {}

/// The build, run by `Site::deploy` under the slot's lock.
struct BuildStep<'a> {
    build: &'a dyn BuildProvider,
    /// Where to copy the source to build it (`None`: build in place).
    scratch: Option<PathBuf>,
    snapshot: &'a SourceSnapshot,
    env: &'a [(String, String)],
    temp: &'a Path,
    timeout: Duration,
    source: String,
}

impl Prepare for BuildStep<'_> {
    fn prepare(&self, folder: &Path, log: &dyn BuildLog) -> Result<PathBuf, String> {
        let s = self.snapshot;
        log.line(
            LogLevel::Info,
            &format!(
                "Fetched {} from {}{}",
                short(&s.id),
                self.source,
                s.message
                    .as_deref()
                    .and_then(|m| m.lines().next())
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            ),
        );
        for note in &s.notes {
            log.line(LogLevel::Warning, note);
        }
        log.line(
            LogLevel::Info,
            &format!(
                "Building with {} (timeout {:?})",
                self.build.name(),
                self.timeout
            ),
        );
        let folder = match &self.scratch {
            None => folder.to_path_buf(),
            Some(scratch) => {
                copy_tree(folder, scratch)
                    .map_err(|e| format!("cannot copy the source to {}: {e}", scratch.display()))?;
                scratch.clone()
            }
        };
        let ctx = BuildContext {
            source_dir: &folder,
            temp_dir: self.temp,
            snapshot: s,
            env: self.env,
            timeout: self.timeout,
            log,
        };
        let out = self.build.build(&ctx).map_err(|e| e.to_string())?;
        Ok(out.dir)
    }
}

/// Copies a tree: files with their modes, symbolic links as links.
fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_tree(&src, &dst)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&src)?, &dst)?;
        } else {
            fs::copy(&src, &dst)?;
        }
    }
    Ok(())
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

fn open_lock(dir: &Path) -> Result<File, CdError> {
    fs::create_dir_all(dir).map_err(io_err("cannot create", dir))?;
    let path = dir.join("lock");
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_err("cannot open", &path))
}

fn touch(path: &Path) -> Result<(), CdError> {
    File::create(path).map_err(io_err("cannot write", path))?;
    Ok(())
}

fn write_secret(path: &Path, data: &[u8]) -> Result<(), CdError> {
    let _ = fs::remove_file(path);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err("cannot write", path))?;
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .map_err(io_err("cannot write", path))
}
