//! One sync of a slot: the source's head against what was deployed,
//! coalesced with syncs in other threads and processes (`cd/lock`,
//! `cd/pending`), the checkout, and the build step run under the slot's
//! deployment lock.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fnhost_core::build::{BuildContext, BuildLog, BuildProvider, LogLevel};
use fnhost_core::source::{SourceError, SourceProvider, SourceSnapshot, SourceSpec};
use serde::{Deserialize, Serialize};

use super::checkout::CHECKOUT;
use super::config::{BuildKind, SourceConfig};
use super::{ContinuousDeployer, io_err, open_lock};
use crate::build::{AutoBuild, NoneBuild, PipelineBuild};
use crate::deployment::{self, Deployment};
use crate::error::Error;
use crate::fsutil;
use crate::site::{Content, DeployRequest, Observer, Prepare};

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

impl ContinuousDeployer {
    /// What the slot's syncs deployed last.
    pub fn state(&self, app: &str, slot: &str) -> Result<SourceState, Error> {
        self.check(app, slot)?;
        let path = self.cd_dir(app, slot).join("state.json");
        Ok(fs::read(&path)
            .ok()
            .and_then(|d| serde_json::from_slice(&d).ok())
            .unwrap_or_default())
    }

    pub(super) fn save_state(
        &self,
        app: &str,
        slot: &str,
        state: &SourceState,
    ) -> Result<(), Error> {
        let dir = self.cd_dir(app, slot);
        let path = dir.join("state.json");
        let data = serde_json::to_vec_pretty(state)
            .map_err(io::Error::other)
            .map_err(io_err("cannot write", &path))?;
        fsutil::atomic_write(&path, &dir.join(".state.tmp"), &data, 0o600)
            .map_err(io_err("cannot write", &path))
    }

    /// Deploys the source's newest snapshot if it moved since the last
    /// deployed id (and, after each deployment, again if it moved
    /// meanwhile); does nothing when it did not. A head that failed to
    /// deploy is not retried until the source moves. Coalesces with a sync
    /// of the same slot running in any thread or process
    /// ([`SyncOutcome::Coalesced`]). A failed build or an invalid app is
    /// [`Error::DeploymentFailed`] (a Failed record; the previous
    /// deployment stays active).
    pub fn sync_once(&self, app: &str, slot: &str) -> Result<SyncOutcome, Error> {
        self.sync(app, slot, false)
    }

    /// [`Self::sync_once`], deploying even when the head was deployed (or
    /// failed) already (`force`).
    pub fn sync(&self, app: &str, slot: &str, force: bool) -> Result<SyncOutcome, Error> {
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
                        Err(fs::TryLockError::Error(e)) => {
                            return Err(Error::io("cannot lock", dir.join("lock"), e));
                        }
                    }
                }
                Err(fs::TryLockError::Error(e)) => {
                    return Err(Error::io("cannot lock", dir.join("lock"), e));
                }
            }
            let mut last: Result<SyncOutcome, Error>;
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
                    Err(Error::DeploymentFailed { .. }) if pending.exists() => {
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
    ) -> Result<SyncOutcome, Error> {
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
    ) -> std::thread::JoinHandle<Result<SyncOutcome, Error>> {
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
    ) -> Result<SyncOutcome, Error> {
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
            Err(e) => return Err(Error::source(app, slot, e)),
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
                if let (Some(s), Error::DeploymentFailed { id, .. }) = (snapshot, &e) {
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
    ) -> Result<Option<(SourceSnapshot, Deployment)>, (Option<SourceSnapshot>, Error)> {
        let checkout = self.cd_dir(app, slot).join(CHECKOUT);
        let snapshot = match self.checkout(app, slot, provider, spec, &checkout) {
            Ok(s) => s,
            Err(Error::Source { source, .. })
                if matches!(*source, SourceError::NotReady { .. }) =>
            {
                return Ok(None);
            }
            Err(e) => return Err((None, e)),
        };
        let temp = work.join("temp");
        let settings: Vec<(String, String)> = self
            .site()
            .app_settings(app, slot)
            .map_err(|e| (None, e))?
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
            Err(e) => Err((Some(snapshot), e)),
        }
    }
}

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

fn touch(path: &Path) -> Result<(), Error> {
    File::create(path).map_err(io_err("cannot write", path))?;
    Ok(())
}
