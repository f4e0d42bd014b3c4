//! A home folder of apps and their slots: deployment, activation, rollback,
//! swap, the read-only guard, credentials, download and export.
//!
//! One `impl Site` spread over one file a job: `apps` (create, list,
//! delete), `records` (deployment records and their content), `activation`
//! (the active pointer, rollback, swap), `locks` (the slot, app and store
//! locks), `settings` (a slot's configuration, the read-only rule, app
//! settings), `maintenance` (recovery, retention, fsck, garbage
//! collection), `deploy` (one deployment, in named phases), `spare` (spare
//! folders), `credentials` and `export` (download and git export).
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

mod activation;
mod apps;
mod credentials;
mod deploy;
mod export;
mod locks;
mod maintenance;
mod portal_users;
mod records;
mod settings;
mod spare;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

pub use activation::Active;
pub use apps::{AppInfo, SlotInfo};
pub use credentials::MIN_PASSWORD_LEN;
pub use deploy::{Content, DeployOutcome, DeployRequest, Observer, Prepare};
pub use maintenance::GC_EVERY;
pub use portal_users::PortalUser;
pub use settings::ContinuousDeployment;

use crate::deployment::DEFAULT_RETENTION;
use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::package::ZipLimits;
use crate::store::{Durability, FsStore, Store};

/// The slot every app has.
pub const PRODUCTION: &str = "production";

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

    pub(super) fn app_dir(&self, app: &str) -> PathBuf {
        self.home.join("apps").join(app)
    }

    pub(super) fn slot_dir(&self, app: &str, slot: &str) -> PathBuf {
        self.app_dir(app).join("slots").join(slot)
    }

    pub(super) fn record_path(&self, app: &str, id: &str) -> PathBuf {
        self.app_dir(app).join("records").join(format!("{id}.json"))
    }

    pub(super) fn content_dir(&self, app: &str, id: &str) -> PathBuf {
        self.app_dir(app).join("content").join(id)
    }

    pub(super) fn require_app(&self, app: &str) -> Result<()> {
        check_name("app", app)?;
        if self.app_dir(app).join("app.json").is_file() {
            Ok(())
        } else {
            Err(Error::AppNotFound { app: app.into() })
        }
    }

    pub(super) fn ensure_slot(&self, app: &str, slot: &str) -> Result<()> {
        check_name("slot", slot)?;
        let dir = self.slot_dir(app, slot).join("tmp");
        fsutil::ensure_dir(&dir).ctx("cannot create", &dir)
    }

    pub(super) fn store_err<T>(&self, what: &str, r: io::Result<T>) -> Result<T> {
        r.map_err(|e| Error::Store {
            store: self.store.describe(),
            what: format!("cannot {what}"),
            source: e,
        })
    }
}

pub(super) fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let data = fs::read(path).ctx("cannot read", path)?;
    parse_json(path, &data)
}

/// [`read_json`], or the default value where there is no file yet.
pub(super) fn read_json_or_default<T: for<'de> Deserialize<'de> + Default>(
    path: &Path,
) -> Result<T> {
    match fs::read(path) {
        Ok(data) => parse_json(path, &data),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(T::default()),
        Err(e) => Err(Error::io("cannot read", path, e)),
    }
}

fn parse_json<T: for<'de> Deserialize<'de>>(path: &Path, data: &[u8]) -> Result<T> {
    serde_json::from_slice(data).map_err(|e| Error::Corrupt {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}
