//! A home folder of apps and their slots: deployment, activation, rollback,
//! swap, the read-only guard, credentials, download and export.
//!
//! ```text
//! HOME/store/…                      the content store (see crate::store)
//! HOME/store.lock                   shared by deployments, exclusive for garbage collection
//! HOME/apps/APP/app.json            the app
//! HOME/apps/APP/app.lock            guards read-modify-write of active.json and credentials
//! HOME/apps/APP/active.json         every slot's active deployment and generation (one file:
//!                                   a swap is one atomic rename)
//! HOME/apps/APP/credentials.json    argon2id hash of the deployment password, mode 0600
//! HOME/apps/APP/records/ID.json     deployment records
//! HOME/apps/APP/content/ID/         materialised, read-only deployment folders
//! HOME/apps/APP/slots/SLOT/lock     one deployment per slot (holds the running id)
//! HOME/apps/APP/slots/SLOT/config.json   continuous deployment flag, app settings
//! HOME/apps/APP/slots/SLOT/statcache.bin   skips re-hashing unchanged files of a folder
//! HOME/apps/APP/slots/SLOT/secrets.json     the keys of a host serving the slot
//! HOME/apps/APP/slots/SLOT/tmp/     the slot's temporary files
//! ```
//!
//! The active pointer is the commit point of a deployment: until its
//! rename, the previous deployment is active and everything new is
//! unreferenced; after it, the new deployment is complete on disk. The next
//! deployment to a slot cleans up what an interrupted one left.

mod credentials;
mod deploy;
mod export;
mod manage_support;
mod spare;

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use credentials::MIN_PASSWORD_LEN;
pub use deploy::{Content, DeployOutcome, DeployRequest, Observer, Prepare};

use crate::deployment::{self, DEFAULT_RETENTION, Deployment, Level, Status};
use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::package::ZipLimits;
use crate::store::{self, Durability, FsStore, FsckReport, GcReport, ManifestKey, Store};

/// The slot every app has.
pub const PRODUCTION: &str = "production";

/// How many deployments retention drops between two garbage collections
/// (see `Site::gc` for one at once).
pub const GC_EVERY: usize = 8;

/// A home folder of apps.
#[derive(Debug, Clone)]
pub struct Site {
    home: PathBuf,
    store: Arc<dyn Store>,
    durability: Durability,
    retention: usize,
    zip_limits: ZipLimits,
    background: Arc<Background>,
}

/// Work a deployment leaves to a thread of its own once it is active and
/// recorded (saving the stat cache, retention, garbage collection, the
/// slot's next spare folder), shared by a site's clones; the last clone
/// dropped waits for it (see [`Site::settle`]).
#[derive(Debug, Default)]
struct Background {
    threads: std::sync::Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl Background {
    fn push(&self, handle: std::thread::JoinHandle<()>) {
        if let Ok(mut threads) = self.threads.lock() {
            threads.retain(|t| !t.is_finished());
            threads.push(handle);
        }
    }

    fn settle(&self) {
        let threads = match self.threads.lock() {
            Ok(mut threads) => std::mem::take(&mut *threads),
            Err(_) => return,
        };
        for t in threads {
            let _ = t.join();
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.settle();
    }
}

/// What a slot's lock file says while a thread tidies up after a
/// deployment: a deployment arriving then waits for it (briefly) even with
/// `--no-wait`.
const TIDYING: &str = "tidying up after deployment";

/// An app as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppInfo {
    /// Its name.
    pub name: String,
    /// When it was created.
    pub created_time: String,
    /// Its slots with their active deployment (if any), sorted by name.
    pub slots: Vec<SlotInfo>,
}

/// A slot as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SlotInfo {
    /// Its name.
    pub name: String,
    /// The active deployment's id.
    pub active: Option<String>,
    /// How many times its active deployment changed.
    pub generation: u64,
    /// Continuous deployment source, when configured (the slot is then
    /// read-only to direct deployments).
    pub continuous_deployment: Option<String>,
}

/// A slot's active deployment, as a host serving it needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Active {
    /// The deployment id.
    pub deployment: String,
    /// The read-only folder holding its files.
    pub path: PathBuf,
    /// Increases on every activation, rollback or swap of the slot: a host
    /// compares it to notice a change cheaply.
    pub generation: u64,
    /// When it was activated.
    pub activated_time: String,
}

/// Continuous deployment as configured for a slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContinuousDeployment {
    /// The source of truth: a repository and branch, a folder.
    pub source: String,
    /// When it was configured.
    pub configured_time: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Pointers {
    generation: u64,
    slots: BTreeMap<String, Pointer>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pointer {
    deployment: String,
    generation: u64,
    activated_time: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct SlotConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    continuous_deployment: Option<ContinuousDeployment>,
    #[serde(default)]
    app_settings: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct AppFile {
    name: String,
    created_time: String,
}

/// Checks an app or slot name: 1 to 60 ASCII letters, digits or `-`, not
/// starting or ending with `-`.
pub fn check_name(kind: &'static str, name: &str) -> Result<()> {
    let bad = |reason| Error::InvalidName {
        kind,
        name: name.to_string(),
        reason,
    };
    if name.is_empty() || name.len() > 60 {
        return Err(bad("use 1 to 60 characters"));
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(bad("use ASCII letters, digits and `-` only"));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(bad("do not start or end with `-`"));
    }
    Ok(())
}

/// Checks an app setting's name: it becomes an environment variable of the
/// functions and a `%NAME%` of their bindings.
fn check_setting_name(name: &str) -> Result<()> {
    let bad = |reason| Error::InvalidName {
        kind: "app setting",
        name: name.to_string(),
        reason,
    };
    if name.is_empty() {
        return Err(bad("give a name"));
    }
    if name.contains('=') {
        return Err(bad("a name cannot contain `=`"));
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("a name cannot contain spaces or control characters"));
    }
    Ok(())
}

/// A held per-slot deployment lock; released when dropped.
#[derive(Debug)]
struct SlotLock {
    file: File,
}

impl SlotLock {
    fn set_holder(&mut self, id: &str) {
        let _ = self.file.set_len(0);
        let _ = self.file.seek(io::SeekFrom::Start(0));
        let _ = self.file.write_all(id.as_bytes());
    }
}

impl Drop for SlotLock {
    fn drop(&mut self) {
        let _ = self.file.set_len(0);
    }
}

impl Site {
    /// Opens (creating when missing) a home folder with its folder store.
    pub fn open(home: impl Into<PathBuf>) -> Result<Site> {
        let home = home.into();
        fsutil::ensure_dir(&home.join("apps")).ctx("cannot create", &home)?;
        let root = home.join("store");
        let store = FsStore::open(&root).ctx("cannot open the store", &root)?;
        Ok(Site {
            home,
            store: Arc::new(store),
            durability: Durability::default(),
            retention: DEFAULT_RETENTION,
            zip_limits: ZipLimits::default(),
            background: Arc::default(),
        })
    }

    /// Waits for the work deployments left to threads of their own once
    /// active and recorded (saving the stat cache, retention, garbage
    /// collection, the slot's next spare folder). Dropping the last clone
    /// of a site waits as well; a deployment to the same slot waits for it
    /// by the slot's lock; this site's listings, rollbacks, swaps, `fsck`,
    /// `gc` and deletions wait for it first.
    pub fn settle(&self) {
        self.background.settle();
    }

    /// Uses another store (another backend, or a wrapper that injects
    /// faults in tests).
    pub fn with_store(mut self, store: Arc<dyn Store>) -> Site {
        self.store = store;
        self
    }

    /// Sets how hard data is flushed before activation.
    pub fn with_durability(mut self, durability: Durability) -> Site {
        self.durability = durability;
        self
    }

    /// Sets how many successful deployments each slot keeps (at least 1;
    /// the active ones are always kept).
    pub fn with_retention(mut self, keep_successful: usize) -> Site {
        self.retention = keep_successful.max(1);
        self
    }

    /// Sets the limits applied to zips.
    pub fn with_zip_limits(mut self, limits: ZipLimits) -> Site {
        self.zip_limits = limits;
        self
    }

    /// The home folder.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// The content store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    // ----- apps -----

    /// Creates an app (with its production slot).
    pub fn create_app(&self, app: &str) -> Result<AppInfo> {
        check_name("app", app)?;
        let dir = self.app_dir(app);
        if dir.exists() {
            return Err(Error::AppExists { app: app.into() });
        }
        // Build the app in a private folder and rename it into place, so an
        // app either exists whole or not at all.
        let staging = self
            .home
            .join("apps")
            .join(format!(".new-{app}-{}", fsutil::random_hex(4)));
        let made = (|| -> io::Result<()> {
            fs::create_dir_all(staging.join("records"))?;
            fs::create_dir_all(staging.join("content"))?;
            fs::create_dir_all(staging.join("slots").join(PRODUCTION).join("tmp"))?;
            let file = AppFile {
                name: app.into(),
                created_time: deployment::now(),
            };
            let data = serde_json::to_vec_pretty(&file).map_err(io::Error::other)?;
            fsutil::atomic_write(
                &staging.join("app.json"),
                &staging.join(".app.tmp"),
                &data,
                0o644,
            )?;
            fs::rename(&staging, &dir)?;
            fsutil::sync_dir(&self.home.join("apps"))
        })();
        if let Err(e) = made {
            let _ = fsutil::remove_tree(&staging);
            if dir.exists() {
                return Err(Error::AppExists { app: app.into() });
            }
            return Err(Error::io("cannot create", dir, e));
        }
        self.app_info(app)
    }

    /// The apps, sorted by name.
    pub fn apps(&self) -> Result<Vec<AppInfo>> {
        let root = self.home.join("apps");
        let mut names = Vec::new();
        for entry in fs::read_dir(&root).ctx("cannot list", &root)? {
            let entry = entry.ctx("cannot list", &root)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with('.') && entry.path().join("app.json").is_file() {
                names.push(name);
            }
        }
        names.sort();
        names.iter().map(|n| self.app_info(n)).collect()
    }

    /// One app.
    pub fn app_info(&self, app: &str) -> Result<AppInfo> {
        self.require_app(app)?;
        let path = self.app_dir(app).join("app.json");
        let file: AppFile = read_json(&path)?;
        let pointers = self.pointers(app)?;
        let mut slots = Vec::new();
        for slot in self.slots(app)? {
            let config = self.slot_config(app, &slot)?;
            let p = pointers.slots.get(&slot);
            slots.push(SlotInfo {
                active: p.map(|p| p.deployment.clone()),
                generation: p.map(|p| p.generation).unwrap_or(0),
                continuous_deployment: config.continuous_deployment.map(|c| c.source),
                name: slot,
            });
        }
        Ok(AppInfo {
            name: file.name,
            created_time: file.created_time,
            slots,
        })
    }

    /// Deletes an app, its history and credentials; its blobs go at the next
    /// garbage collection (run here when possible). Fails when a deployment
    /// to it is running.
    pub fn delete_app(&self, app: &str) -> Result<()> {
        self.settle();
        self.require_app(app)?;
        let mut locks = Vec::new();
        for slot in self.slots(app)? {
            locks.push(self.lock_slot(app, &slot, false, None)?);
        }
        let trash = self.home.join("trash");
        fsutil::ensure_dir(&trash).ctx("cannot create", &trash)?;
        let dest = trash.join(format!("{app}-{}", fsutil::random_hex(4)));
        let dir = self.app_dir(app);
        fs::rename(&dir, &dest).ctx("cannot delete", &dir)?;
        drop(locks);
        fsutil::sync_dir(&self.home.join("apps")).ctx("cannot sync", &self.home)?;
        for key in self.store_err("list manifests", self.store.manifests())? {
            if key.app == app {
                self.store_err("remove a manifest", self.store.remove_manifest(&key))?;
            }
        }
        fsutil::remove_tree(&dest).ctx("cannot remove", &dest)?;
        let _ = self.try_gc();
        Ok(())
    }

    /// The slots of an app that exist (production always does).
    pub fn slots(&self, app: &str) -> Result<Vec<String>> {
        let dir = self.app_dir(app).join("slots");
        let mut out = vec![PRODUCTION.to_string()];
        for entry in fs::read_dir(&dir).ctx("cannot list", &dir)? {
            let name = entry
                .ctx("cannot list", &dir)?
                .file_name()
                .to_string_lossy()
                .into_owned();
            if name != PRODUCTION && check_name("slot", &name).is_ok() {
                out.push(name);
            }
        }
        out.sort();
        Ok(out)
    }

    // ----- records -----

    /// The deployments of an app, newest first: with a slot, those deployed
    /// to it and the one active in it.
    pub fn deployments(&self, app: &str, slot: Option<&str>) -> Result<Vec<Deployment>> {
        self.settle();
        self.deployments_now(app, slot)
    }

    /// [`Site::deployments`] without waiting for this site's tidying up:
    /// for a server answering while deployments finish (a record retention
    /// is about to drop may still be listed, as it may be for another
    /// process).
    pub(crate) fn deployments_now(&self, app: &str, slot: Option<&str>) -> Result<Vec<Deployment>> {
        self.require_app(app)?;
        let pointers = self.pointers(app)?;
        let active: HashSet<&str> = pointers
            .slots
            .values()
            .map(|p| p.deployment.as_str())
            .collect();
        let slot_active = slot.and_then(|s| pointers.slots.get(s).map(|p| p.deployment.as_str()));
        let mut out = Vec::new();
        for mut r in self.records(app)? {
            r.active = active.contains(r.id.as_str());
            if slot.is_none_or(|s| r.slot == s) || slot_active == Some(r.id.as_str()) {
                out.push(r);
            }
        }
        out.sort_by(|a, b| b.id.cmp(&a.id));
        Ok(out)
    }

    /// One deployment record.
    pub fn deployment(&self, app: &str, id: &str) -> Result<Deployment> {
        self.require_app(app)?;
        if !deployment::check_id(id) {
            return Err(Error::DeploymentNotFound {
                app: app.into(),
                id: id.into(),
            });
        }
        let path = self.record_path(app, id);
        if !path.exists() {
            return Err(Error::DeploymentNotFound {
                app: app.into(),
                id: id.into(),
            });
        }
        let mut r: Deployment = read_json(&path)?;
        let pointers = self.pointers(app)?;
        r.active = pointers.slots.values().any(|p| p.deployment == r.id);
        Ok(r)
    }

    // ----- the active pointer -----

    /// The slot's active deployment, if any.
    pub fn active(&self, app: &str, slot: &str) -> Result<Option<Active>> {
        self.require_app(app)?;
        check_name("slot", slot)?;
        let pointers = self.pointers(app)?;
        Ok(pointers.slots.get(slot).map(|p| Active {
            path: self.content_dir(app, &p.deployment),
            deployment: p.deployment.clone(),
            generation: p.generation,
            activated_time: p.activated_time.clone(),
        }))
    }

    /// The folder of the slot's active deployment (what a host serves).
    pub fn active_path(&self, app: &str, slot: &str) -> Result<PathBuf> {
        self.active(app, slot)?
            .map(|a| a.path)
            .ok_or_else(|| Error::NoActiveDeployment {
                app: app.into(),
                slot: slot.into(),
            })
    }

    /// Where a host serving the slot keeps its keys (function, host and
    /// master keys): `HOME/apps/APP/slots/SLOT/secrets.json`. Deployment
    /// folders are read-only and change with every deployment, so the keys
    /// live beside the slot, not in the app's folder; they stay with the
    /// slot across deployments, rollbacks and swaps.
    pub fn secrets_path(&self, app: &str, slot: &str) -> Result<PathBuf> {
        self.require_app(app)?;
        self.ensure_slot(app, slot)?;
        Ok(self.slot_dir(app, slot).join("secrets.json"))
    }

    /// The slot's generation: it increases whenever the active deployment
    /// changes (0 before the first).
    pub fn generation(&self, app: &str, slot: &str) -> Result<u64> {
        Ok(self.active(app, slot)?.map(|a| a.generation).unwrap_or(0))
    }

    /// Rolls a slot back to a retained successful deployment: by default
    /// the newest one of the slot older than the active one. A pointer
    /// switch: nothing is copied or rebuilt.
    pub fn rollback(&self, app: &str, slot: &str, to: Option<&str>) -> Result<Deployment> {
        self.settle();
        self.require_app(app)?;
        check_name("slot", slot)?;
        let mut lock = self.lock_slot(app, slot, true, None)?;
        lock.set_holder("rollback");
        let active = self.active(app, slot)?;
        let target = match to {
            Some(id) => {
                let r = self.deployment(app, id)?;
                if r.status != Status::Success || !self.content_dir(app, id).is_dir() {
                    return Err(Error::NoRollbackTarget {
                        app: app.into(),
                        slot: slot.into(),
                        reason: format!(
                            "deployment {id} is {}; only a retained successful deployment can be activated",
                            r.status
                        ),
                    });
                }
                r
            }
            None => {
                let Some(active) = &active else {
                    return Err(Error::NoActiveDeployment {
                        app: app.into(),
                        slot: slot.into(),
                    });
                };
                self.deployments(app, Some(slot))?
                    .into_iter()
                    .find(|r| {
                        r.status == Status::Success
                            && r.id < active.deployment
                            && r.slot == slot
                            && self.content_dir(app, &r.id).is_dir()
                    })
                    .ok_or_else(|| Error::NoRollbackTarget {
                        app: app.into(),
                        slot: slot.into(),
                        reason: format!(
                            "no retained successful deployment older than the active one ({})",
                            active.deployment
                        ),
                    })?
            }
        };
        if active.as_ref().map(|a| a.deployment.as_str()) != Some(target.id.as_str()) {
            // A pointer switch only: records stay as they are.
            self.switch(app, &[(slot, Some(target.id.as_str()))])?;
        }
        self.deployment(app, &target.id)
    }

    /// Exchanges two slots' active deployments in one atomic switch.
    pub fn swap(&self, app: &str, slot_a: &str, slot_b: &str) -> Result<()> {
        self.settle();
        self.require_app(app)?;
        check_name("slot", slot_a)?;
        check_name("slot", slot_b)?;
        if slot_a == slot_b {
            return Err(Error::InvalidName {
                kind: "slot",
                name: slot_b.into(),
                reason: "swap needs two different slots",
            });
        }
        for s in [slot_a, slot_b] {
            self.ensure_slot(app, s)?;
        }
        let (first, second) = if slot_a < slot_b {
            (slot_a, slot_b)
        } else {
            (slot_b, slot_a)
        };
        let mut l1 = self.lock_slot(app, first, true, None)?;
        l1.set_holder("swap");
        let mut l2 = self.lock_slot(app, second, true, None)?;
        l2.set_holder("swap");
        let a = self.active(app, slot_a)?.map(|a| a.deployment);
        let b = self.active(app, slot_b)?.map(|a| a.deployment);
        if a.is_none() && b.is_none() {
            return Err(Error::NoActiveDeployment {
                app: app.into(),
                slot: format!("{slot_a} and {slot_b}"),
            });
        }
        self.switch(app, &[(slot_a, b.as_deref()), (slot_b, a.as_deref())])
    }

    // ----- slot configuration -----

    /// Marks a slot as fed by continuous deployment from `source` (or
    /// clears it with `None`). While set, direct content deployments to
    /// the slot are refused ([`Error::ReadOnly`]).
    pub fn set_continuous_deployment(
        &self,
        app: &str,
        slot: &str,
        source: Option<&str>,
    ) -> Result<()> {
        self.update_slot_config(app, slot, |c| {
            c.continuous_deployment = source.map(|s| ContinuousDeployment {
                source: s.to_string(),
                configured_time: deployment::now(),
            });
        })
    }

    /// The slot's continuous deployment, when configured.
    pub fn continuous_deployment(
        &self,
        app: &str,
        slot: &str,
    ) -> Result<Option<ContinuousDeployment>> {
        self.require_app(app)?;
        check_name("slot", slot)?;
        Ok(self.slot_config(app, slot)?.continuous_deployment)
    }

    /// Replaces the slot's app settings (written into `local.settings.json`
    /// by a download with settings).
    pub fn set_app_settings(
        &self,
        app: &str,
        slot: &str,
        settings: BTreeMap<String, String>,
    ) -> Result<()> {
        for name in settings.keys() {
            check_setting_name(name)?;
        }
        self.update_slot_config(app, slot, |c| c.app_settings = settings)
    }

    /// Adds or changes the settings in `set` and removes those named in
    /// `remove`, keeping the others, in one step (under the app's lock, so
    /// that two changes at once both land); returns the settings after.
    /// A name must be non-empty, without `=`, whitespace or control
    /// characters (it becomes an environment variable of the functions).
    pub fn update_app_settings(
        &self,
        app: &str,
        slot: &str,
        set: BTreeMap<String, String>,
        remove: &[String],
    ) -> Result<BTreeMap<String, String>> {
        for name in set.keys().chain(remove) {
            check_setting_name(name)?;
        }
        let mut after = BTreeMap::new();
        self.update_slot_config(app, slot, |c| {
            for name in remove {
                c.app_settings.remove(name);
            }
            c.app_settings.extend(set);
            after = c.app_settings.clone();
        })?;
        Ok(after)
    }

    /// The slot's app settings.
    pub fn app_settings(&self, app: &str, slot: &str) -> Result<BTreeMap<String, String>> {
        self.require_app(app)?;
        check_name("slot", slot)?;
        Ok(self.slot_config(app, slot)?.app_settings)
    }

    // ----- download -----

    /// Writes a deterministic zip of the slot's active deployment to `out`
    /// (atomically), with a `local.settings.json` made from the slot's app
    /// settings when `include_settings`.
    pub fn download(
        &self,
        app: &str,
        slot: &str,
        include_settings: bool,
        out: &Path,
    ) -> Result<Deployment> {
        let active = self
            .active(app, slot)?
            .ok_or_else(|| Error::NoActiveDeployment {
                app: app.into(),
                slot: slot.into(),
            })?;
        let manifest = self.manifest(app, &active.deployment)?;
        let mut extra = Vec::new();
        if include_settings {
            let settings = self.app_settings(app, slot)?;
            let doc = serde_json::json!({ "IsEncrypted": false, "Values": settings });
            let data = serde_json::to_vec_pretty(&doc).map_err(io::Error::other);
            extra.push((
                "local.settings.json".to_string(),
                data.ctx("cannot write", out)?,
            ));
        }
        let tmp = out.with_file_name(format!(
            ".{}.tmp-{}",
            out.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            fsutil::random_hex(4)
        ));
        let result = (|| -> io::Result<()> {
            let f = File::create(&tmp)?;
            let f = crate::package::write_zip(
                self.store.as_ref(),
                &manifest,
                &extra,
                io::BufWriter::new(f),
            )?;
            f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
            fs::rename(&tmp, out)
        })();
        if let Err(e) = result {
            let _ = fs::remove_file(&tmp);
            return Err(Error::io("cannot write", out, e));
        }
        self.deployment(app, &active.deployment)
    }

    /// A deployment's manifest.
    pub fn manifest(&self, app: &str, id: &str) -> Result<store::Manifest> {
        self.store
            .manifest(&ManifestKey::new(app, id))
            .map_err(|e| Error::Store {
                store: self.store.describe(),
                what: format!("cannot read the manifest of {app}/{id}"),
                source: e,
            })
    }

    // ----- integrity -----

    /// Checks the store (every manifest and blob, re-hashed), the records,
    /// the active pointers and the materialised folders, for one app or all.
    pub fn fsck(&self, app: Option<&str>) -> Result<FsckReport> {
        self.settle();
        let apps: Vec<String> = match app {
            Some(a) => {
                self.require_app(a)?;
                vec![a.to_string()]
            }
            None => self.apps()?.into_iter().map(|a| a.name).collect(),
        };
        let mut report = match app {
            Some(a) => {
                let only = |k: &ManifestKey| k.app == a;
                store::fsck(self.store.as_ref(), Some(&only))
            }
            None => store::fsck(self.store.as_ref(), None),
        };
        for a in &apps {
            self.fsck_app(a, &mut report)?;
        }
        Ok(report)
    }

    /// Removes blobs no manifest uses and temporary files; waits for running
    /// deployments to finish writing.
    pub fn gc(&self) -> Result<GcReport> {
        self.settle();
        let lock = self.store_lock_file()?;
        lock.lock()
            .ctx("cannot lock", &self.home.join("store.lock"))?;
        let report = self.store_err(
            "collect garbage",
            store::collect_garbage(self.store.as_ref()),
        )?;
        let _ = fs::remove_file(self.home.join("gc-pending"));
        Ok(report)
    }

    // ----- internals -----

    fn app_dir(&self, app: &str) -> PathBuf {
        self.home.join("apps").join(app)
    }

    fn slot_dir(&self, app: &str, slot: &str) -> PathBuf {
        self.app_dir(app).join("slots").join(slot)
    }

    fn record_path(&self, app: &str, id: &str) -> PathBuf {
        self.app_dir(app).join("records").join(format!("{id}.json"))
    }

    fn content_dir(&self, app: &str, id: &str) -> PathBuf {
        self.app_dir(app).join("content").join(id)
    }

    fn require_app(&self, app: &str) -> Result<()> {
        check_name("app", app)?;
        if self.app_dir(app).join("app.json").is_file() {
            Ok(())
        } else {
            Err(Error::AppNotFound { app: app.into() })
        }
    }

    fn ensure_slot(&self, app: &str, slot: &str) -> Result<()> {
        check_name("slot", slot)?;
        let dir = self.slot_dir(app, slot).join("tmp");
        fsutil::ensure_dir(&dir).ctx("cannot create", &dir)
    }

    fn store_err<T>(&self, what: &str, r: io::Result<T>) -> Result<T> {
        r.map_err(|e| Error::Store {
            store: self.store.describe(),
            what: format!("cannot {what}"),
            source: e,
        })
    }

    fn records(&self, app: &str) -> Result<Vec<Deployment>> {
        let dir = self.app_dir(app).join("records");
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).ctx("cannot list", &dir)? {
            let entry = entry.ctx("cannot list", &dir)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !name.ends_with(".json") {
                continue;
            }
            match read_json::<Deployment>(&entry.path()) {
                Ok(r) => out.push(r),
                // Removed by a concurrent retention between list and read.
                Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    fn write_record(&self, app: &str, slot: &str, r: &Deployment) -> Result<()> {
        let path = self.record_path(app, &r.id);
        let tmp = self
            .slot_dir(app, slot)
            .join("tmp")
            .join(format!("record-{}", r.id));
        let mut stored = r.clone();
        stored.active = false;
        let data = serde_json::to_vec_pretty(&stored).map_err(io::Error::other);
        let data = data.ctx("cannot write", &path)?;
        fsutil::atomic_write(&path, &tmp, &data, 0o644).ctx("cannot write", &path)
    }

    /// Writes a record atomically (write, rename) without flushing it: for
    /// the first write of a deployment, which a power cut may lose without
    /// harm.
    fn write_record_unflushed(&self, app: &str, slot: &str, r: &Deployment) -> Result<()> {
        let path = self.record_path(app, &r.id);
        let tmp = self
            .slot_dir(app, slot)
            .join("tmp")
            .join(format!("record-{}", r.id));
        let mut stored = r.clone();
        stored.active = false;
        let data = serde_json::to_vec_pretty(&stored).map_err(io::Error::other);
        let data = data.ctx("cannot write", &path)?;
        fs::write(&tmp, &data)
            .and_then(|()| fs::rename(&tmp, &path))
            .ctx("cannot write", &path)
    }

    fn pointers(&self, app: &str) -> Result<Pointers> {
        let path = self.app_dir(app).join("active.json");
        match fs::read(&path) {
            Ok(data) => serde_json::from_slice(&data).map_err(|e| Error::Corrupt {
                path,
                message: e.to_string(),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Pointers::default()),
            Err(e) => Err(Error::io("cannot read", path, e)),
        }
    }

    fn app_lock(&self, app: &str) -> Result<File> {
        let path = self.app_dir(app).join("app.lock");
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .ctx("cannot open", &path)?;
        f.lock().ctx("cannot lock", &path)?;
        Ok(f)
    }

    /// Switches slots' active pointers in one atomic rename.
    fn switch(&self, app: &str, changes: &[(&str, Option<&str>)]) -> Result<()> {
        let _lock = self.app_lock(app)?;
        let mut p = self.pointers(app)?;
        p.generation += 1;
        let now = deployment::now();
        for (slot, id) in changes {
            match id {
                Some(id) => {
                    p.slots.insert(
                        (*slot).to_string(),
                        Pointer {
                            deployment: (*id).to_string(),
                            generation: p.generation,
                            activated_time: now.clone(),
                        },
                    );
                }
                None => {
                    p.slots.remove(*slot);
                }
            }
        }
        let path = self.app_dir(app).join("active.json");
        let data = serde_json::to_vec_pretty(&p).map_err(io::Error::other);
        let data = data.ctx("cannot write", &path)?;
        fsutil::atomic_write(&path, &self.app_dir(app).join(".active.tmp"), &data, 0o644)
            .ctx("cannot write", &path)
    }

    fn slot_config(&self, app: &str, slot: &str) -> Result<SlotConfig> {
        let path = self.slot_dir(app, slot).join("config.json");
        match fs::read(&path) {
            Ok(data) => serde_json::from_slice(&data).map_err(|e| Error::Corrupt {
                path,
                message: e.to_string(),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(SlotConfig::default()),
            Err(e) => Err(Error::io("cannot read", path, e)),
        }
    }

    fn update_slot_config(
        &self,
        app: &str,
        slot: &str,
        f: impl FnOnce(&mut SlotConfig),
    ) -> Result<()> {
        self.require_app(app)?;
        self.ensure_slot(app, slot)?;
        let _lock = self.app_lock(app)?;
        let mut c = self.slot_config(app, slot)?;
        f(&mut c);
        let path = self.slot_dir(app, slot).join("config.json");
        let data = serde_json::to_vec_pretty(&c).map_err(io::Error::other);
        let data = data.ctx("cannot write", &path)?;
        // Owner-only: app settings hold connection strings and keys.
        fsutil::atomic_write(&path, &self.app_dir(app).join(".config.tmp"), &data, 0o600)
            .ctx("cannot write", &path)
    }

    fn lock_slot(
        &self,
        app: &str,
        slot: &str,
        wait: bool,
        observer: Option<&dyn Observer>,
    ) -> Result<SlotLock> {
        self.ensure_slot(app, slot)?;
        let path = self.slot_dir(app, slot).join("lock");
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .ctx("cannot open", &path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = Some(holder.trim().to_string()).filter(|h| !h.is_empty());
                // The previous deployment's spare folder: no deployment is
                // in progress, and it is soon done.
                if holder.as_deref().is_some_and(|h| h.starts_with(TIDYING)) {
                    file.lock().ctx("cannot lock", &path)?;
                    return Ok(SlotLock { file });
                }
                if !wait {
                    return Err(Error::Busy {
                        app: app.into(),
                        slot: slot.into(),
                        holder,
                    });
                }
                if let Some(o) = observer {
                    o.waiting(holder.as_deref());
                }
                file.lock().ctx("cannot lock", &path)?;
            }
            Err(fs::TryLockError::Error(e)) => return Err(Error::io("cannot lock", path, e)),
        }
        Ok(SlotLock { file })
    }

    fn store_lock_file(&self) -> Result<File> {
        let path = self.home.join("store.lock");
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .ctx("cannot open", &path)
    }

    /// Garbage collection after retention dropped `pruned` deployments,
    /// amortised: a collection reads every manifest and lists every blob
    /// (tens of milliseconds for a large app), so it runs once the
    /// deployments dropped since the last one reach [`GC_EVERY`]. Until
    /// then the dropped deployments' own blobs stay in the store (at most
    /// that many deployments' changes). `HOME/gc-pending` counts them; it
    /// is not flushed (a lost count only delays a collection). `fnhost gc`
    /// and app deletion collect at once.
    fn gc_after_prune(&self, pruned: usize) -> Result<()> {
        let path = self.home.join("gc-pending");
        let pending = fs::read_to_string(&path)
            .ok()
            .and_then(|s| s.trim().parse::<usize>().ok())
            .unwrap_or(0)
            + pruned;
        let pending = if pending >= GC_EVERY && self.try_gc()?.is_some() {
            0
        } else {
            pending
        };
        let tmp = self.home.join(".gc-pending.tmp");
        let _ = fs::write(&tmp, pending.to_string()).and_then(|()| fs::rename(&tmp, &path));
        Ok(())
    }

    /// Collects garbage when no deployment is writing to the store.
    fn try_gc(&self) -> Result<Option<GcReport>> {
        let lock = self.store_lock_file()?;
        match lock.try_lock() {
            Ok(()) => Ok(Some(self.store_err(
                "collect garbage",
                store::collect_garbage(self.store.as_ref()),
            )?)),
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(e)) => {
                Err(Error::io("cannot lock", self.home.join("store.lock"), e))
            }
        }
    }

    /// Finishes what interrupted deployments of a slot left (the caller holds
    /// the slot's lock): records still running are marked Failed
    /// ("interrupted"), or Success if their activation had happened; their
    /// partial folders and manifests go; orphans of an interrupted retention
    /// go. Returns how many records were interrupted.
    fn recover_slot(&self, app: &str, slot: &str) -> Result<usize> {
        let tmp = self.slot_dir(app, slot).join("tmp");
        if let Ok(entries) = fs::read_dir(&tmp) {
            for e in entries.flatten() {
                let _ = fsutil::remove_tree(&e.path());
            }
        }
        // Folders and manifests are listed before the records: a deployment
        // running in another slot writes its record before either, so
        // anything listed here without a record is an orphan.
        let content = self.app_dir(app).join("content");
        let folders: Vec<(String, PathBuf)> = fs::read_dir(&content)
            .ctx("cannot list", &content)?
            .flatten()
            .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
            .collect();
        let manifests: Vec<ManifestKey> = self
            .store_err("list manifests", self.store.manifests())?
            .into_iter()
            .filter(|k| k.app == app)
            .collect();
        let pointers = self.pointers(app)?;
        let active: HashSet<String> = pointers
            .slots
            .values()
            .map(|p| p.deployment.clone())
            .collect();
        let records = self.records(app)?;
        let mut interrupted = 0;
        for mut r in records
            .iter()
            .filter(|r| r.slot == slot && !r.status.is_final())
            .cloned()
        {
            interrupted += 1;
            if active.contains(&r.id) {
                r.status = Status::Success;
                r.log(
                    Level::Warning,
                    "the deployment process stopped after activating this deployment; record completed by the next run",
                );
            } else {
                r.status = Status::Failed;
                r.log(
                    Level::Error,
                    "interrupted: the deployment process stopped before it finished (killed or crashed); the previous deployment stayed active",
                );
                self.discard_content(app, &r.id)?;
            }
            r.end_time = Some(deployment::now());
            self.write_record(app, slot, &r)?;
        }
        // Orphans: folders and manifests whose record is gone.
        let known: HashSet<&str> = records.iter().map(|r| r.id.as_str()).collect();
        for (name, path) in folders {
            if !known.contains(name.as_str()) && !active.contains(&name) {
                fsutil::remove_tree(&path).ctx("cannot remove", &path)?;
            }
        }
        for key in manifests {
            if !known.contains(key.deployment.as_str()) && !active.contains(&key.deployment) {
                self.store_err("remove a manifest", self.store.remove_manifest(&key))?;
            }
        }
        if interrupted > 0 {
            self.try_gc()?;
        }
        Ok(interrupted)
    }

    fn discard_content(&self, app: &str, id: &str) -> Result<()> {
        let dir = self.content_dir(app, id);
        fsutil::remove_tree(&dir).ctx("cannot remove", &dir)?;
        self.store_err(
            "remove a manifest",
            self.store.remove_manifest(&ManifestKey::new(app, id)),
        )
    }

    /// Applies retention to a slot's records (the caller holds its lock).
    fn retain(&self, app: &str, slot: &str) -> Result<usize> {
        let records = self.records(app)?;
        let pointers = self.pointers(app)?;
        let active: HashSet<String> = pointers
            .slots
            .values()
            .map(|p| p.deployment.clone())
            .collect();
        let own: Vec<Deployment> = records.into_iter().filter(|r| r.slot == slot).collect();
        let prune = deployment::to_prune(&own, self.retention, &active);
        for r in &prune {
            // The record goes first: nothing then refers to the folder or the
            // manifest, which the next recovery removes if this stops here.
            let path = self.record_path(app, &r.id);
            fs::remove_file(&path).ctx("cannot remove", &path)?;
            // Its folder becomes the slot's spare when there is none.
            if r.status == Status::Success {
                self.keep_as_spare(app, slot, &r.id)?;
            }
            self.discard_content(app, &r.id)?;
        }
        Ok(prune.len())
    }

    fn fsck_app(&self, app: &str, report: &mut FsckReport) -> Result<()> {
        let pointers = self.pointers(app)?;
        let dir = self.app_dir(app).join("records");
        let mut records = Vec::new();
        for entry in fs::read_dir(&dir).ctx("cannot list", &dir)? {
            let entry = entry.ctx("cannot list", &dir)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".json") || name.starts_with('.') {
                continue;
            }
            match read_json::<Deployment>(&entry.path()) {
                Ok(r) => records.push(r),
                Err(e) => report.problems.push(format!("{app}: record {name}: {e}")),
            }
        }
        let by_id: BTreeMap<&str, &Deployment> =
            records.iter().map(|r| (r.id.as_str(), r)).collect();
        for (slot, p) in &pointers.slots {
            match by_id.get(p.deployment.as_str()) {
                None => report.problems.push(format!(
                    "{app}/{slot}: the active deployment {} has no record",
                    p.deployment
                )),
                Some(r) if r.status == Status::Failed => report.problems.push(format!(
                    "{app}/{slot}: the active deployment {} is marked failed",
                    p.deployment
                )),
                Some(_) => {}
            }
            if !self.content_dir(app, &p.deployment).is_dir() {
                report.problems.push(format!(
                    "{app}/{slot}: the active deployment {} has no folder",
                    p.deployment
                ));
            }
        }
        let active: HashSet<&str> = pointers
            .slots
            .values()
            .map(|p| p.deployment.as_str())
            .collect();
        for r in &records {
            if r.status == Status::Success || active.contains(r.id.as_str()) {
                self.fsck_content(app, &r.id, report);
            } else if !r.status.is_final() {
                let busy = self.lock_slot(app, &r.slot, false, None).map(drop).is_err();
                report.notes.push(if busy {
                    format!("{app}/{}: deployment {} is in progress", r.slot, r.id)
                } else {
                    format!(
                        "{app}/{}: deployment {} was interrupted; the next deployment to the slot marks it failed and cleans up",
                        r.slot, r.id
                    )
                });
            }
        }
        self.fsck_spares(app, report)
    }

    fn fsck_content(&self, app: &str, id: &str, report: &mut FsckReport) {
        let manifest = match self.store.manifest(&ManifestKey::new(app, id)) {
            Ok(m) => m,
            Err(e) => {
                report
                    .problems
                    .push(format!("{app}: deployment {id}: no manifest: {e}"));
                return;
            }
        };
        let root = self.content_dir(app, id);
        fsck_tree(&root, &manifest, &format!("{app}: deployment {id}"), report);
    }

    /// Checks the spare folders of an app's slots against their manifests.
    fn fsck_spares(&self, app: &str, report: &mut FsckReport) -> Result<()> {
        let slots = self.app_dir(app).join("slots");
        let Ok(entries) = fs::read_dir(&slots) else {
            return Ok(());
        };
        for entry in entries.flatten() {
            let slot = entry.file_name().to_string_lossy().into_owned();
            // A deployment running in the slot may be taking its spare.
            let Ok(_lock) = self.lock_slot(app, &slot, false, None) else {
                continue;
            };
            match self.spare_of(app, &slot) {
                None => {}
                Some((_, Err(e))) => report
                    .problems
                    .push(format!("{app}/{slot}: spare folder: {e}")),
                Some((tree, Ok(manifest))) => fsck_tree(
                    &tree,
                    &manifest,
                    &format!("{app}/{slot}: spare folder"),
                    report,
                ),
            }
        }
        Ok(())
    }
}

/// Checks that a folder holds exactly a manifest's files (types and sizes).
fn fsck_tree(root: &Path, manifest: &store::Manifest, what: &str, report: &mut FsckReport) {
    {
        let mut count = 0usize;
        for f in &manifest.files {
            let path = root.join(&f.path);
            match fs::symlink_metadata(&path) {
                Err(e) => report.problems.push(format!("{what}: {}: {e}", f.path)),
                Ok(m) => {
                    count += 1;
                    let ok = if f.is_symlink() {
                        m.file_type().is_symlink()
                    } else {
                        m.is_file() && m.len() == f.size
                    };
                    if !ok {
                        report
                            .problems
                            .push(format!("{what}: {} differs from the manifest", f.path));
                    }
                }
            }
        }
        let on_disk = count_files(root);
        if on_disk != count {
            report.problems.push(format!(
                "{what}: the folder holds {on_disk} files, the manifest {}",
                manifest.files.len()
            ));
        }
    }
}

fn count_files(dir: &Path) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => count_files(&e.path()),
            Ok(_) => 1,
            Err(_) => 0,
        })
        .sum()
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let data = fs::read(path).ctx("cannot read", path)?;
    serde_json::from_slice(&data).map_err(|e| Error::Corrupt {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}
