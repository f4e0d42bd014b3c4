//! What a slot follows: the configuration model ([`SourceConfig`]), and
//! configuring, reading and clearing a slot's source.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use fnhost_core::source::{SourceError, SourceProvider, SourceSpec};
use serde::{Deserialize, Serialize};

use super::checkout::{CHECKOUT, CHECKOUT_RECORD};
use super::secrets::{SourceCredentials, write_secret};
use super::{ContinuousDeployer, io_err, open_lock};
use crate::deployment;
use crate::error::Error;
use crate::fsutil;
use crate::source::create_local_repository;

/// The default build timeout (30 minutes).
pub const DEFAULT_BUILD_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Where a slot's content comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceKind {
    /// A git repository: a path or a URL ([`GitSource`](crate::source::GitSource)).
    Git,
    /// The slot's built-in repository under the home, pushed to
    /// ([`LocalGitSource`](crate::source::LocalGitSource)).
    LocalGit,
    /// A synced folder ([`FolderSource`](crate::source::FolderSource)).
    Folder,
    /// A Mercurial repository ([`HgSource`](crate::source::HgSource)).
    Hg,
    /// A zip file ([`ZipSource`](crate::source::ZipSource)).
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
    /// Copy only ([`NoneBuild`](crate::build::NoneBuild)).
    #[default]
    None,
    /// Detected build: npm, pip, cargo ([`AutoBuild`](crate::build::AutoBuild)).
    Auto,
    /// The steps of `fnhost-build.json` ([`PipelineBuild`](crate::build::PipelineBuild)).
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

    pub(super) fn build_timeout(&self) -> Duration {
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

impl ContinuousDeployer {
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
    ) -> Result<SourceConfig, Error> {
        self.check(app, slot)?;
        let dir = self.cd_dir(app, slot);
        if credentials.is_some() && config.kind != SourceKind::Git {
            return Err(Error::InvalidSource {
                app: app.into(),
                slot: slot.into(),
                message: format!(
                    "credentials are for git sources; a {} source takes none (hg uses the [auth] section of your hg configuration)",
                    config.kind.as_str()
                ),
            });
        }
        match config.kind {
            SourceKind::LocalGit => {
                let repo = self.local_repository(app, slot);
                create_local_repository(&repo).map_err(|e| Error::source(app, slot, e))?;
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
                    return Err(Error::source(app, slot, e));
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
        let path = dir.join("config.json");
        let data = serde_json::to_vec_pretty(&config)
            .map_err(io::Error::other)
            .map_err(io_err("cannot write", &path))?;
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

    fn install_hook(&self, app: &str, slot: &str, repo: &Path) -> Result<(), Error> {
        let exe = match &self.inner.executable {
            Some(p) => p.clone(),
            None => std::env::current_exe().map_err(io_err(
                "cannot install the push hook (fnhost's own executable is unknown)",
                repo,
            ))?,
        };
        let home = self.site().home();
        let home = fs::canonicalize(home).map_err(io_err("cannot read", home))?;
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
    pub fn config(&self, app: &str, slot: &str) -> Result<Option<SourceConfig>, Error> {
        self.check(app, slot)?;
        let path = self.cd_dir(app, slot).join("config.json");
        match fs::read(&path) {
            Ok(data) => serde_json::from_slice(&data)
                .map(Some)
                .map_err(|e| Error::Corrupt {
                    path,
                    message: e.to_string(),
                }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("cannot read", path, e)),
        }
    }

    /// Turns continuous deployment off for a slot: removes its
    /// configuration and credentials and turns read-only mode off. The
    /// deployments (history) and a built-in repository stay. Returns
    /// whether a source was configured. Waits for a running sync.
    pub fn clear(&self, app: &str, slot: &str) -> Result<bool, Error> {
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

    /// Every slot with a source, as `(app, slot)`: of `apps`, or of all
    /// apps when `apps` is empty.
    pub fn configured(&self, apps: &[String]) -> Result<Vec<(String, String)>, Error> {
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
                Err(e)
            })? {
                if self.cd_dir(&app, &slot).join("config.json").is_file() {
                    out.push((app.clone(), slot));
                }
            }
        }
        Ok(out)
    }

    pub(super) fn provider(&self, kind: SourceKind) -> &dyn SourceProvider {
        match kind {
            SourceKind::Git => &self.inner.git,
            SourceKind::LocalGit => &self.inner.local_git,
            SourceKind::Folder => &self.inner.folder,
            SourceKind::Hg => &self.inner.hg,
            SourceKind::Zip => &self.inner.zip,
        }
    }

    pub(super) fn spec(&self, app: &str, slot: &str, config: &SourceConfig) -> SourceSpec {
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
    pub fn head(&self, app: &str, slot: &str) -> Result<String, Error> {
        let config = self.require_config(app, slot)?;
        self.provider(config.kind)
            .head(&self.spec(app, slot, &config))
            .map_err(|e| Error::source(app, slot, e))
    }

    pub(super) fn require_config(&self, app: &str, slot: &str) -> Result<SourceConfig, Error> {
        self.config(app, slot)?.ok_or_else(|| Error::NotConfigured {
            app: app.into(),
            slot: slot.into(),
        })
    }
}
