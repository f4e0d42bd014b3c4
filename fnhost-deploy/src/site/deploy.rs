//! One deployment: receive, store, materialise, validate, activate.
//!
//! Long (about 1,000 lines) because a deployment is one sequence read top
//! to bottom: the request and its builders, `Site::deploy`, `Site::run` and
//! its phases in the order they run, the tidying up after, and making the
//! folder; the crash-safety comments sit beside the steps they explain.

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::deployment::{self, Deployment, Level, LogEntry, Status};
use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::package::{self, Stored};
use crate::statcache::{STAT_CACHE_FILE, StatCache};
use crate::store::{self, Digest, Durability, Manifest, ManifestKey};

use super::{Site, check_name};

/// What to deploy.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Content {
    /// A folder, packaged as `func azure functionapp publish` would
    /// (always-excluded files and `.funcignore` left out).
    Folder(PathBuf),
    /// A zip, taken as it is (checked and limited).
    Zip(PathBuf),
}

impl Content {
    fn path(&self) -> &Path {
        match self {
            Content::Folder(p) | Content::Zip(p) => p,
        }
    }
}

/// Hears what a deployment does, to show progress. Every method has a
/// default that does nothing.
pub trait Observer: Sync {
    /// The slot is busy with another deployment (`holder`); this one waits.
    fn waiting(&self, holder: Option<&str>) {
        let _ = holder;
    }
    /// The record changed status.
    fn status(&self, deployment: &Deployment) {
        let _ = deployment;
    }
    /// Files stored so far, out of `total`.
    fn progress(&self, done: u64, total: u64) {
        let _ = (done, total);
    }
    /// A log entry was added.
    fn log(&self, entry: &LogEntry) {
        let _ = entry;
    }
}

#[derive(Debug)]
struct Quiet;

impl Observer for Quiet {}

/// A deployment to make; see [`Site::deploy`].
pub struct DeployRequest<'a> {
    app: String,
    slot: String,
    content: Content,
    author: String,
    message: String,
    deployer: Option<String>,
    wait: bool,
    observer: &'a dyn Observer,
    from_source: FromSource<'a>,
}

/// What continuous deployment adds to a request (see [`DeployRequest::with_prepare`]).
#[derive(Default)]
struct FromSource<'a> {
    source_of_truth: bool,
    source_id: Option<String>,
    source: Option<String>,
    prepare: Option<&'a dyn Prepare>,
}

/// Turns the request's folder into the folder to deploy (a build), run by
/// [`Site::deploy`] under the slot's lock once the record exists, so that
/// its log streams into the record and a failure is a Failed record with
/// the previous deployment left active.
pub trait Prepare: Sync {
    /// Builds in (or from) `folder`, the request's folder, and returns the
    /// folder to deploy. Log lines go to `log` as they come; an error fails
    /// the deployment ([`Error::Build`]) with that message.
    fn prepare(
        &self,
        folder: &Path,
        log: &dyn fnhost_core::build::BuildLog,
    ) -> std::result::Result<PathBuf, String>;
}

/// Collects a preparation's log for the record, passing it to the observer.
struct PrepareLog<'a> {
    entries: std::sync::Mutex<Vec<LogEntry>>,
    observer: &'a dyn Observer,
}

impl fnhost_core::build::BuildLog for PrepareLog<'_> {
    fn line(&self, level: fnhost_core::build::LogLevel, line: &str) {
        use fnhost_core::build::LogLevel;
        let entry = LogEntry {
            time: deployment::now(),
            level: match level {
                LogLevel::Info => Level::Info,
                LogLevel::Warning => Level::Warning,
                LogLevel::Error => Level::Error,
            },
            message: line.to_string(),
        };
        self.observer.log(&entry);
        if let Ok(mut e) = self.entries.lock() {
            e.push(entry);
        }
    }
}

impl std::fmt::Debug for DeployRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeployRequest")
            .field("app", &self.app)
            .field("slot", &self.slot)
            .field("content", &self.content)
            .field("author", &self.author)
            .field("message", &self.message)
            .field("deployer", &self.deployer)
            .field("wait", &self.wait)
            .finish_non_exhaustive()
    }
}

impl<'a> DeployRequest<'a> {
    /// Deploys `content` to the production slot of `app`, waiting if another
    /// deployment to the slot is running.
    pub fn new(app: impl Into<String>, content: Content) -> DeployRequest<'a> {
        DeployRequest {
            app: app.into(),
            slot: super::PRODUCTION.into(),
            content,
            author: String::new(),
            message: String::new(),
            deployer: None,
            wait: true,
            observer: &Quiet,
            from_source: FromSource::default(),
        }
    }

    /// To another slot.
    pub fn with_slot(mut self, slot: impl Into<String>) -> Self {
        self.slot = slot.into();
        self
    }

    /// Who made the content.
    pub fn with_author(mut self, author: impl Into<String>) -> Self {
        self.author = author.into();
        self
    }

    /// What it is about.
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = message.into();
        self
    }

    /// What starts it (default `ZipDeploy` or `FolderDeploy`).
    pub fn with_deployer(mut self, deployer: impl Into<String>) -> Self {
        self.deployer = Some(deployer.into());
        self
    }

    /// Whether to wait for a running deployment to the slot (default) or
    /// fail at once with [`Error::Busy`].
    pub fn with_wait(mut self, wait: bool) -> Self {
        self.wait = wait;
        self
    }

    /// Deploys from the slot's configured source of truth (continuous
    /// deployment, [`crate::cd`]): allowed while the slot is read-only.
    pub fn from_source_of_truth(mut self) -> Self {
        self.from_source.source_of_truth = true;
        self
    }

    /// The record's `source_id` (a commit id; default: the content hash).
    /// Equal ids must mean equal content.
    pub fn with_source_id(mut self, id: impl Into<String>) -> Self {
        self.from_source.source_id = Some(id.into());
        self
    }

    /// The record's `source` (default: the folder or zip path).
    pub fn with_source(mut self, source: impl Into<String>) -> Self {
        self.from_source.source = Some(source.into());
        self
    }

    /// Runs `prepare` (a build) on the request's folder before storing;
    /// the folder it returns is what is deployed. See [`Prepare`].
    pub fn with_prepare(mut self, prepare: &'a dyn Prepare) -> Self {
        self.from_source.prepare = Some(prepare);
        self
    }

    /// Reports progress to `observer`.
    pub fn with_observer(mut self, observer: &'a dyn Observer) -> Self {
        self.observer = observer;
        self
    }
}

/// What a deployment did.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DeployOutcome {
    /// The record (status Success). When `unchanged`, the deployment
    /// already active with the same content.
    pub deployment: Deployment,
    /// The content equals the active deployment's: nothing was activated
    /// and no new record was kept.
    pub unchanged: bool,
    /// Bytes of content new to the store.
    pub new_bytes: u64,
    /// Files whose content was read and hashed (the others were known
    /// unchanged from the previous deployment of the same folder).
    pub hashed: u64,
    /// How long until the deployment was active (waiting excluded): what
    /// follows is retention and preparing the slot's spare folder.
    pub active_after: Duration,
    /// How long it took (waiting excluded).
    pub elapsed: Duration,
}

impl Site {
    /// Deploys content to a slot.
    ///
    /// The content is stored, materialised as a read-only folder, loaded and
    /// validated with fnhost-core (an app with errors is never activated),
    /// then activated by an atomic switch of the slot's pointer. On any
    /// failure the record is marked Failed with the reason in its log, the
    /// previous deployment stays active, and [`Error::DeploymentFailed`] is
    /// returned. A slot with continuous deployment refuses with
    /// [`Error::ReadOnly`]; a busy slot waits, or fails with [`Error::Busy`].
    pub fn deploy(&self, req: DeployRequest<'_>) -> Result<DeployOutcome> {
        let (app, slot) = (req.app.as_str(), req.slot.as_str());
        self.require_app(app)?;
        check_name("slot", slot)?;
        let writable = |site: &Site| match req.from_source.source_of_truth {
            true => Ok(()),
            false => site.refuse_read_only(app, slot),
        };
        writable(self)?;
        self.ensure_slot(app, slot)?;
        let mut lock = self.lock_slot(app, slot, req.wait, Some(req.observer))?;
        // Configuration may have changed while waiting.
        writable(self)?;
        let started = Instant::now();
        self.recover_slot(app, slot)?;

        let mut r = Deployment::new(deployment::new_id(), app, slot);
        // Log events of this deployment (its log lines among them) carry
        // the app, the slot and the id.
        let span = tracing::info_span!("deployment", app, slot, id = r.id.as_str());
        let _in_span = span.enter();
        lock.set_holder(&r.id);
        r.author = req.author.clone();
        r.message = req.message.clone();
        r.deployer = req.deployer.clone().unwrap_or_else(|| {
            match req.content {
                Content::Zip(_) => deployment::Deployer::zip(),
                Content::Folder(_) => deployment::Deployer::folder(),
            }
            .0
        });
        r.source = (req.from_source.source.clone())
            .unwrap_or_else(|| req.content.path().display().to_string());
        r.source_id = req.from_source.source_id.clone().unwrap_or_default();
        req.observer.status(&r);

        let store_lock = self.store_lock_file()?;
        store_lock
            .lock_shared()
            .ctx("cannot lock", &self.home.join("store.lock"))?;
        let result = self.run(&req, &mut r, started);
        drop(store_lock);
        match result {
            Ok((mut outcome, tidy)) => {
                if !outcome.unchanged {
                    let record = self.record_path(app, &outcome.deployment.id);
                    self.tidy_up_later(app, slot, lock, tidy, record);
                }
                outcome.elapsed = started.elapsed();
                Ok(outcome)
            }
            Err(e) => {
                let reason = e.to_string();
                tracing::error!("{reason}");
                r.log(Level::Error, reason.clone());
                if let Some(last) = r.log.last() {
                    req.observer.log(last);
                }
                r.status = Status::Failed;
                r.end_time = Some(deployment::now());
                let _ = self.discard_content(app, &r.id);
                // If even the record cannot be written (a full disk), the
                // next run marks it interrupted.
                let _ = self.write_record(app, slot, &r);
                req.observer.status(&r);
                Err(Error::DeploymentFailed {
                    app: app.into(),
                    slot: slot.into(),
                    id: r.id.clone(),
                    reason: r
                        .first_error()
                        .unwrap_or(&reason)
                        .lines()
                        .next()
                        .unwrap_or("")
                        .to_string(),
                })
            }
        }
    }

    fn log(&self, req: &DeployRequest<'_>, r: &mut Deployment, level: Level, msg: String) {
        match level {
            Level::Info => tracing::info!("{msg}"),
            Level::Warning => tracing::warn!("{msg}"),
            Level::Error => tracing::error!("{msg}"),
        }
        r.log(level, msg);
        if let Some(last) = r.log.last() {
            req.observer.log(last);
        }
    }

    /// One deployment, phase by phase (the caller holds the slot's lock and
    /// the store's shared lock): receive, store, stop early when nothing
    /// changed, make the folder, validate, flush, activate, record. Each
    /// phase is a method below, in that order.
    fn run(
        &self,
        req: &DeployRequest<'_>,
        r: &mut Deployment,
        started: Instant,
    ) -> Result<(DeployOutcome, Tidy)> {
        let (app, slot) = (req.app.as_str(), req.slot.as_str());
        let built = self.receive(req, r)?;
        let content = built.as_ref().unwrap_or(&req.content);

        // With full durability and a local store, data goes to disk while
        // the deployment goes on.
        let background = (self.durability == Durability::Full
            && self.store.local_path(&store::Digest::of(b"")).is_some())
        .then(|| fsutil::BackgroundFlush::start(self.home.clone()));
        let job = Job {
            req,
            started,
            cache_path: self.slot_dir(app, slot).join(STAT_CACHE_FILE),
            dest: self.content_dir(app, &r.id),
        };
        let current = self.current_deployment(app, slot)?;
        let (stored, cache) = self.store_content(&job, content, current.as_ref())?;
        if stored.unchanged
            && let Some(current) = current
        {
            return self.unchanged_folder(&job, r, current);
        }
        self.record_stored(&job, r, &stored);
        // The same content as the active deployment: nothing to do.
        if let Some(current) = current
            && current.source_id == r.source_id
        {
            return self.same_content(&job, r, current, &stored, cache);
        }
        let manifest = std::sync::Arc::new(stored.manifest);

        // The manifest is written (and flushed) while the folder is made,
        // validated and flushed: it is needed by the switch, not before.
        let writing = ManifestWrite::start(
            self.store.clone(),
            ManifestKey::new(app, &r.id),
            manifest.clone(),
        );
        r.status = Status::Deploying;
        req.observer.status(r);
        let mut laps = Laps::new(started);
        laps.lap("store");
        let to_flush = self.make_folder(&job, r, &manifest, stored.tree.as_ref())?;
        laps.lap("materialise");
        self.validate(&job, r, content)?;
        laps.lap("validate");

        // Everything the pointer will refer to reaches the disk before the
        // manifest and the pointer do: new blobs, the folder's links and
        // copies, its folders.
        if let Some(b) = background {
            b.finish();
        }
        if self.durability == Durability::Full {
            self.flush_new_content(&job.dest, &to_flush, &stored.new_blobs)?;
            laps.lap("flush");
        }
        self.store_err("write the manifest", writing.finish())?;

        // The commit point.
        self.switch(app, &[(slot, Some(r.id.as_str()))])?;
        let active_after = started.elapsed();
        laps.lap("activate");
        self.record_success(req, r, &laps)?;
        let cache = cache.map(|mut c| {
            c.deployment = r.id.clone();
            c
        });
        let outcome = DeployOutcome {
            deployment: r.clone(),
            unchanged: false,
            new_bytes: stored.new_bytes,
            hashed: stored.hashed,
            active_after,
            elapsed: started.elapsed(),
        };
        let tidy = Tidy {
            cache,
            activated: Some((r.id.clone(), manifest)),
        };
        Ok((outcome, tidy))
    }

    /// Phase 1, receive: marks the record Building and writes it, then runs
    /// the request's preparation (a build) when it has one; returns the
    /// folder the preparation made.
    fn receive(&self, req: &DeployRequest<'_>, r: &mut Deployment) -> Result<Option<Content>> {
        let (app, slot) = (req.app.as_str(), req.slot.as_str());
        r.status = Status::Building;
        r.start_time = Some(deployment::now());
        let what = match &req.content {
            Content::Folder(p) => format!("folder {}", p.display()),
            Content::Zip(p) => format!("zip {}", p.display()),
        };
        self.log(req, r, Level::Info, format!("Receiving {what}"));
        // The record's first write: from here on, an interruption is found
        // and finished by the next run. It is not flushed to disk: a kill
        // leaves it in the page cache, and a power cut that loses it loses
        // nothing that refers to it (the blobs are unreferenced, the folder
        // and manifest are removed as orphans). The record is written when
        // work starts and when it ends; the intermediate statuses go to the
        // observer.
        self.write_record_unflushed(app, slot, r)?;
        req.observer.status(r);
        match req.from_source.prepare {
            None => Ok(None),
            Some(prepare) => {
                let log = PrepareLog {
                    entries: Default::default(),
                    observer: req.observer,
                };
                let result = prepare.prepare(req.content.path(), &log);
                r.log.extend(log.entries.into_inner().unwrap_or_default());
                let built = Content::Folder(result.map_err(|message| Error::Build { message })?);
                Ok(Some(built))
            }
        }
    }

    /// The slot's active deployment, when its folder is there.
    fn current_deployment(&self, app: &str, slot: &str) -> Result<Option<Deployment>> {
        Ok(match self.active(app, slot)? {
            Some(a) if a.path.is_dir() => self.deployment(app, &a.deployment).ok(),
            _ => None,
        })
    }

    /// Phase 2, store: the content's files into the store (a folder through
    /// the slot's stat cache, written into the new folder at once when the
    /// slot has no spare; a zip through the slot's scratch folder).
    fn store_content(
        &self,
        job: &Job<'_, '_>,
        content: &Content,
        current: Option<&Deployment>,
    ) -> Result<(Stored, Option<StatCache>)> {
        let (app, slot) = (job.req.app.as_str(), job.req.slot.as_str());
        let progress = |done, total| job.req.observer.progress(done, total);
        // Whether a folder found as the stat cache describes the active
        // deployment may be taken as unchanged without listing its content:
        // the same source id asked for, or none asked for and the active
        // one's is its content's.
        let unchanged_if = current
            .filter(|c| match &job.req.from_source.source_id {
                Some(id) => c.source_id == *id,
                None => c.source_id.parse::<Digest>().is_ok(),
            })
            .map(|c| c.id.as_str());
        Ok(match content {
            Content::Folder(dir) => {
                let dir = fs::canonicalize(dir).ctx("cannot read", dir)?;
                let read_cache = || {
                    let old = fs::read(&job.cache_path)
                        .ok()
                        .and_then(|d| StatCache::decode(&d))
                        .filter(|c| c.source == dir);
                    // The cache's hashes are those of a deployment's files:
                    // while its manifest is kept, so are its blobs (garbage
                    // collection waits for this deployment to finish), and
                    // the cache is trusted without asking the store about
                    // each blob.
                    let trusted = old.as_ref().is_some_and(|c| {
                        !c.deployment.is_empty()
                            && self
                                .store
                                .contains_manifest(&ManifestKey::new(app, &c.deployment))
                                .unwrap_or(false)
                    });
                    (old, trusted)
                };
                let (s, c) = package::store_folder(
                    self.store.as_ref(),
                    &dir,
                    read_cache,
                    // Without a spare the folder is made from nothing:
                    // then it is written while storing.
                    (!self.has_spare(app, slot)).then_some(job.dest.as_path()),
                    unchanged_if,
                    &progress,
                )?;
                (s, c)
            }
            Content::Zip(zip) => {
                let scratch = self.slot_dir(app, slot).join("tmp");
                let s = package::store_zip(
                    self.store.as_ref(),
                    zip,
                    &self.zip_limits,
                    &scratch,
                    &progress,
                )?;
                (s, None)
            }
        })
    }

    /// Early end: the folder is as the stat cache describes the active
    /// deployment; the new record goes and the active one is the outcome.
    fn unchanged_folder(
        &self,
        job: &Job<'_, '_>,
        r: &mut Deployment,
        current: Deployment,
    ) -> Result<(DeployOutcome, Tidy)> {
        self.log(
            job.req,
            r,
            Level::Info,
            format!("Every file as when {} was deployed", current.id),
        );
        let path = self.record_path(&job.req.app, &r.id);
        fs::remove_file(&path).ctx("cannot remove", &path)?;
        let outcome = DeployOutcome {
            deployment: current,
            unchanged: true,
            new_bytes: 0,
            hashed: 0,
            active_after: job.started.elapsed(),
            elapsed: job.started.elapsed(),
        };
        Ok((outcome, Tidy::default()))
    }

    /// Writes what was stored into the record (source id, counts) and logs it.
    fn record_stored(&self, job: &Job<'_, '_>, r: &mut Deployment, stored: &Stored) {
        let manifest = &stored.manifest;
        let content_id = manifest.content_id().to_hex();
        r.source_id = (job.req.from_source.source_id.clone()).unwrap_or_else(|| content_id.clone());
        r.files = manifest.files.len() as u64;
        r.bytes = manifest.total_size();
        r.new_files = stored.new_blobs.len() as u64;
        self.log(
            job.req,
            r,
            Level::Info,
            format!(
                "Stored {} files ({} bytes); {} new ({} bytes); content {}",
                r.files,
                r.bytes,
                r.new_files,
                stored.new_bytes,
                &content_id[..12]
            ),
        );
    }

    /// Early end: the same content as the active deployment. What was
    /// written goes, the stat cache is kept up to date, and the active
    /// deployment is the outcome.
    fn same_content(
        &self,
        job: &Job<'_, '_>,
        r: &Deployment,
        current: Deployment,
        stored: &Stored,
        cache: Option<StatCache>,
    ) -> Result<(DeployOutcome, Tidy)> {
        let (app, slot) = (job.req.app.as_str(), job.req.slot.as_str());
        if stored.tree.is_some() {
            self.discard_content(app, &r.id)?;
        }
        let path = self.record_path(app, &r.id);
        fs::remove_file(&path).ctx("cannot remove", &path)?;
        if let Some(mut c) = cache
            && (stored.hashed > 0 || c.deployment != current.id)
        {
            c.deployment = current.id.clone();
            self.save_cache(app, slot, &job.cache_path, &c);
        }
        let outcome = DeployOutcome {
            deployment: current,
            unchanged: true,
            new_bytes: 0,
            hashed: stored.hashed,
            active_after: job.started.elapsed(),
            elapsed: job.started.elapsed(),
        };
        Ok((outcome, Tidy::default()))
    }

    /// Phase 3, materialise: the new deployment's folder, from the files
    /// written while storing, from the slot's spare folder, or from
    /// nothing. Returns what needs flushing with full durability.
    fn make_folder(
        &self,
        job: &Job<'_, '_>,
        r: &mut Deployment,
        manifest: &Manifest,
        tree: Option<&HashSet<String>>,
    ) -> Result<Vec<PathBuf>> {
        let (app, slot) = (job.req.app.as_str(), job.req.slot.as_str());
        let dest = &job.dest;
        let previous = if manifest.files.iter().any(|f| f.is_executable()) {
            self.active(app, slot)?
                .and_then(|a| self.manifest(app, &a.deployment).ok().map(|m| (a.path, m)))
        } else {
            None
        };
        let spare = match tree {
            Some(_) => None,
            None => self.spare_for(app, slot, manifest),
        };
        Ok(match (tree, spare) {
            (Some(written), _) => {
                self.log(
                    job.req,
                    r,
                    Level::Info,
                    format!(
                        "{} new files written into the folder while storing",
                        written.len()
                    ),
                );
                self.materialize(manifest, dest, previous.as_ref(), written)?
            }
            (None, Some(spare)) => {
                let changes = spare.changes();
                let to_flush = self.materialize_from_spare(spare, dest, previous.as_ref())?;
                self.log(
                    job.req,
                    r,
                    Level::Info,
                    format!("Folder made from the slot's spare folder ({changes} files changed)"),
                );
                to_flush
            }
            (None, None) => self.materialize(manifest, dest, previous.as_ref(), &HashSet::new())?,
        })
    }

    /// Phase 4, validate: loads the new folder with fnhost-core and logs its
    /// diagnostics; an app with errors is never activated.
    fn validate(&self, job: &Job<'_, '_>, r: &mut Deployment, content: &Content) -> Result<()> {
        let (req, dest) = (job.req, &job.dest);
        // Checked with the slot's app settings, as it will be served
        // (local.settings.json is not deployed: FUNCTIONS_WORKER_RUNTIME and
        // %Setting% values come from there).
        let mut loader = fnhost_core::FunctionApp::loader(dest).with_environment(false);
        for (k, v) in self
            .app_settings(req.app.as_str(), req.slot.as_str())
            .unwrap_or_default()
        {
            loader = loader.with_setting(k, v);
        }
        let loaded = loader.load().map_err(|e| Error::Package {
            path: dest.clone(),
            message: e.to_string(),
        })?;
        let root = format!("{}/", dest.display());
        for d in loaded.diagnostics() {
            let line = d.to_string().replace(&root, "");
            let level = if d.is_error() {
                Level::Error
            } else {
                Level::Warning
            };
            self.log(job.req, r, level, line);
        }
        if !loaded.is_valid() {
            let n = loaded.diagnostics().error_count();
            return Err(Error::Package {
                path: content.path().to_path_buf(),
                message: format!(
                    "the app has {n} error{}; it was not activated (see the log)",
                    if n == 1 { "" } else { "s" }
                ),
            });
        }
        self.log(
            job.req,
            r,
            Level::Info,
            format!(
                "Validated: {} function{}",
                loaded.functions().len(),
                if loaded.functions().len() == 1 {
                    ""
                } else {
                    "s"
                }
            ),
        );
        Ok(())
    }

    /// Phase 5, flush (full durability): the folder's copies and folders,
    /// then the new blobs unless that flush was of their file system too.
    fn flush_new_content(
        &self,
        dest: &Path,
        to_flush: &[PathBuf],
        new_blobs: &[Digest],
    ) -> Result<()> {
        let whole = self.flush_folder(dest, to_flush)?;
        // The blobs are on disk already when that flush was of their
        // file system too.
        let same_fs = |blob: &Path| {
            use std::os::unix::fs::MetadataExt;
            let dev = |p: &Path| fs::metadata(p).map(|m| m.dev()).ok();
            dev(blob).is_some_and(|d| Some(d) == dev(dest))
        };
        let flushed = whole
            && (new_blobs.first())
                .and_then(|d| self.store.local_path(d))
                .is_some_and(|p| same_fs(&p));
        if !flushed {
            self.store_err("flush new blobs", self.store.sync(new_blobs))?;
        }
        Ok(())
    }

    /// Phase 6, record (after the switch): the timings, Success, and the
    /// record's last write.
    fn record_success(
        &self,
        req: &DeployRequest<'_>,
        r: &mut Deployment,
        laps: &Laps,
    ) -> Result<()> {
        let slot = req.slot.as_str();
        self.log(req, r, Level::Info, format!("Timings: {}", laps.summary()));
        r.status = Status::Success;
        r.end_time = Some(deployment::now());
        self.log(req, r, Level::Info, format!("Activated in {slot}"));
        // Flushed after the call, by the tidying thread: a kill before then
        // loses nothing (the page cache keeps it), and a record lost to a
        // power cut is remade from the active pointer by the next run.
        self.write_record_unflushed(&req.app, slot, r)?;
        r.active = true;
        req.observer.status(r);
        Ok(())
    }

    /// After a deployment is active and recorded: saves the stat cache,
    /// applies retention (collecting garbage now and then) and makes the
    /// slot's next spare folder unless retention left one, on a thread of
    /// its own that keeps the slot's lock, so that the call returns at
    /// once. None of it is needed for the deployment; what a failure or a
    /// kill leaves undone, the next deployment does (retention and
    /// recovery run each time; a missing cache or spare only costs time).
    fn tidy_up_later(
        &self,
        app: &str,
        slot: &str,
        mut lock: super::locks::SlotLock,
        tidy: Tidy,
        record: PathBuf,
    ) {
        lock.set_holder(&format!("{} in {app}/{slot}", super::locks::TIDYING));
        let work = move |site: &Site, app: &str, slot: &str| {
            site.remove_taken_spares(app, slot);
            let _ = fs::File::open(&record).and_then(|f| f.sync_all());
            if let Some(dir) = record.parent() {
                let _ = fsutil::sync_dir(dir);
            }
            if let Some(c) = tidy.cache {
                let path = site.slot_dir(app, slot).join(STAT_CACHE_FILE);
                site.save_cache(app, slot, &path, &c);
            }
            if let Ok(pruned) = site.retain(app, slot)
                && pruned > 0
            {
                let _ = site.gc_after_prune(pruned);
            }
            // The next deployment's folder, unless retention left one.
            let activated = tidy.activated.as_ref().map(|(id, m)| (id.as_str(), &**m));
            site.prepare_spare(app, slot, activated);
            drop(lock);
        };
        // The thread's site shares no background list: the last clone of
        // the caller's site waits for this thread, never the thread itself.
        let site = Site {
            background: Default::default(),
            ..self.clone()
        };
        let (app, slot) = (app.to_string(), slot.to_string());
        let spawned = std::thread::Builder::new()
            .name("fnhost-tidy".into())
            .spawn(move || work(&site, &app, &slot));
        // Without a thread (none to be had), the next deployment does it.
        if let Ok(handle) = spawned {
            self.background.push(handle);
        }
    }

    fn save_cache(&self, app: &str, slot: &str, path: &Path, cache: &StatCache) {
        // The cache only saves time: failing to write it is not an error.
        // It is not flushed to disk either: it carries a checksum, and a
        // damaged or lost cache only means files are hashed again.
        let tmp = self.slot_dir(app, slot).join("tmp").join("statcache");
        let _ = fs::write(&tmp, cache.encode()).and_then(|()| fs::rename(&tmp, path));
    }

    /// Makes the read-only folder of a deployment: hard links to the blobs
    /// when the store is local (copies for executables, whose mode differs,
    /// and wherever a link fails), then folders made read-only. Returns the
    /// copies and folders, which need flushing with full durability.
    ///
    /// With the previous deployment of the slot (its folder and manifest),
    /// unchanged executables are linked to its copies rather than copied.
    ///
    /// `written` are files already written into `dest` while storing
    /// ([`package::Stored::tree`]); they are left as they are (and flushed).
    /// Without any, `dest` is made from nothing.
    pub(super) fn materialize(
        &self,
        manifest: &Manifest,
        dest: &Path,
        previous: Option<&(PathBuf, Manifest)>,
        written: &HashSet<String>,
    ) -> Result<Vec<PathBuf>> {
        if written.is_empty() && dest.exists() {
            fsutil::remove_tree(dest).ctx("cannot remove", dest)?;
        }
        let dirs: BTreeSet<PathBuf> = std::iter::once(dest.to_path_buf())
            .chain(super::spare::folders(manifest).iter().map(|d| dest.join(d)))
            .collect();
        for d in &dirs {
            fs::create_dir_all(d).ctx("cannot create", d)?;
        }
        let (done, rest): (Vec<&store::ManifestEntry>, Vec<_>) =
            (manifest.files.iter()).partition(|f| written.contains(&f.path));
        let threads = std::thread::available_parallelism()
            .map(|n| n.get() * 2)
            .unwrap_or(4)
            .clamp(2, 8)
            .min(rest.len().max(1));
        let chunk = rest.len().div_ceil(threads).max(1);
        let copied: Vec<Result<Vec<PathBuf>>> = std::thread::scope(|s| {
            let handles: Vec<_> = rest
                .chunks(chunk)
                .map(|part| s.spawn(move || self.place_files(part.iter().copied(), dest, previous)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(Error::io(
                            "cannot materialise",
                            dest,
                            io::Error::other("a thread panicked"),
                        ))
                    })
                })
                .collect()
        });
        // Files written while storing are flushed with the folder (an
        // adopted one is its blob, or on another file system a copy).
        let mut to_flush: Vec<PathBuf> = done.iter().map(|f| dest.join(&f.path)).collect();
        for c in copied {
            to_flush.extend(c?);
        }
        // Deepest first, so that a parent is made read-only after its
        // children are done.
        for d in dirs.iter().rev() {
            fs::set_permissions(d, store::perms(0o555)).ctx("cannot protect", d)?;
        }
        to_flush.extend(dirs);
        if let Some(parent) = dest.parent() {
            to_flush.push(parent.to_path_buf());
        }
        Ok(to_flush)
    }

    /// Flushes a materialised folder: one `syncfs` of its file system when
    /// there is much to flush, else each copy and folder.
    /// Returns whether it flushed the whole file system.
    pub(super) fn flush_folder(&self, dest: &Path, items: &[PathBuf]) -> Result<bool> {
        if items.len() >= crate::store::SYNCFS_THRESHOLD
            && fsutil::sync_filesystem(dest).ctx("cannot flush", dest)?
        {
            return Ok(true);
        }
        for item in items {
            fs::File::open(item)
                .and_then(|f| f.sync_all())
                .ctx("cannot flush", item)?;
        }
        Ok(false)
    }

    /// Places files; returns the copies (which need flushing).
    pub(super) fn place_files<'m>(
        &self,
        files: impl IntoIterator<Item = &'m store::ManifestEntry>,
        dest: &Path,
        previous: Option<&(PathBuf, Manifest)>,
    ) -> Result<Vec<PathBuf>> {
        let mut copies = Vec::new();
        let mut linker = fsutil::Linker::default();
        for f in files {
            copies.extend(package::place_file(
                self.store.as_ref(),
                f,
                dest,
                previous,
                &mut linker,
            )?);
        }
        Ok(copies)
    }
}

/// What the phases of one deployment ([`Site::run`]) share besides its
/// record.
struct Job<'r, 'a> {
    req: &'r DeployRequest<'a>,
    started: Instant,
    /// The slot's stat cache.
    cache_path: PathBuf,
    /// The new deployment's folder.
    dest: PathBuf,
}

/// How long each phase took, for the record's log.
struct Laps {
    phase: Instant,
    timings: Vec<(&'static str, Duration)>,
}

impl Laps {
    fn new(started: Instant) -> Laps {
        Laps {
            phase: started,
            timings: Vec::new(),
        }
    }

    fn lap(&mut self, name: &'static str) {
        self.timings.push((name, self.phase.elapsed()));
        self.phase = Instant::now();
    }

    fn summary(&self) -> String {
        let summary: Vec<String> = (self.timings.iter())
            .map(|(n, d)| format!("{n} {:.1} ms", d.as_secs_f64() * 1e3))
            .collect();
        summary.join(", ")
    }
}

/// What a deployment hands to the thread tidying up after it: the new stat
/// cache, and the manifest just activated (the next spare is made from it
/// without reading it back).
#[derive(Default)]
struct Tidy {
    cache: Option<StatCache>,
    activated: Option<(String, std::sync::Arc<Manifest>)>,
}

/// A manifest stored on a thread of its own; [`ManifestWrite::finish`]
/// waits for it, and so does dropping it (so that a failed deployment's
/// clean-up never races its manifest).
struct ManifestWrite {
    running: Option<std::thread::JoinHandle<io::Result<()>>>,
    done: Option<io::Result<()>>,
}

impl ManifestWrite {
    fn start(
        store: std::sync::Arc<dyn store::Store>,
        key: ManifestKey,
        manifest: std::sync::Arc<Manifest>,
    ) -> ManifestWrite {
        let job = {
            let (store, key, manifest) = (store.clone(), key.clone(), manifest.clone());
            move || store.put_manifest(&key, &manifest)
        };
        match std::thread::Builder::new()
            .name("fnhost-manifest".into())
            .spawn(job)
        {
            Ok(handle) => ManifestWrite {
                running: Some(handle),
                done: None,
            },
            // No thread to be had: written here.
            Err(_) => ManifestWrite {
                running: None,
                done: Some(store.put_manifest(&key, &manifest)),
            },
        }
    }

    fn finish(mut self) -> io::Result<()> {
        match self.running.take() {
            Some(handle) => handle.join().unwrap_or_else(|_| {
                Err(io::Error::other("the thread writing the manifest panicked"))
            }),
            None => self.done.take().unwrap_or(Ok(())),
        }
    }
}

impl Drop for ManifestWrite {
    fn drop(&mut self) {
        if let Some(handle) = self.running.take() {
            let _ = handle.join();
        }
    }
}
