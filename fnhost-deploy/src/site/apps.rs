//! Apps: creating, listing and deleting them, and their slots.

use std::fs;
use std::io;

use serde::{Deserialize, Serialize};

use super::{PRODUCTION, Site, check_name, read_json};
use crate::deployment;
use crate::error::{Error, IoContext, Result};
use crate::fsutil;

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

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct AppFile {
    name: String,
    created_time: String,
}

impl Site {
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
}
