//! Deployment records (`records/ID.json`) and what each refers to: the
//! materialised folder and the manifest.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::PathBuf;

use super::{Site, read_json};
use crate::deployment::{self, Deployment};
use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::store::{self, ManifestKey};

impl Site {
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

    /// Deletes a finished deployment that is active in no slot: its record,
    /// then its folder and manifest (its stored files go at the next
    /// garbage collection, run here when no deployment is writing).
    /// Refused with [`Error::DeploymentInUse`] for an active or a running
    /// deployment.
    pub fn delete_deployment(&self, app: &str, id: &str) -> Result<Deployment> {
        self.settle();
        let r = self.deployment(app, id)?;
        {
            // Activations take the app's lock: none can happen between the
            // check and the removal of the record.
            let _lock = self.app_lock(app)?;
            let active = self
                .pointers(app)?
                .slots
                .iter()
                .find(|(_, p)| p.deployment == id)
                .map(|(s, _)| s.clone());
            if let Some(slot) = active {
                return Err(Error::DeploymentInUse {
                    app: app.into(),
                    id: id.into(),
                    reason: format!(
                        "it is active in {slot}; activate another deployment there first"
                    ),
                });
            }
            let current = self.deployment(app, id)?;
            if !current.status.is_final() {
                return Err(Error::DeploymentInUse {
                    app: app.into(),
                    id: id.into(),
                    reason: "it is still running".into(),
                });
            }
            let path = self.record_path(app, id);
            fs::remove_file(&path).ctx("cannot remove", &path)?;
        }
        self.discard_content(app, id)?;
        let _ = self.try_gc();
        Ok(r)
    }

    pub(super) fn records(&self, app: &str) -> Result<Vec<Deployment>> {
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

    pub(super) fn write_record(&self, app: &str, slot: &str, r: &Deployment) -> Result<()> {
        let (path, tmp, data) = self.record_file(app, slot, r)?;
        fsutil::atomic_write(&path, &tmp, &data, 0o644).ctx("cannot write", &path)
    }

    /// Where a record goes, its temporary file, and its content (stored
    /// records are never `active`: the pointers say which is).
    fn record_file(
        &self,
        app: &str,
        slot: &str,
        r: &Deployment,
    ) -> Result<(PathBuf, PathBuf, Vec<u8>)> {
        let path = self.record_path(app, &r.id);
        let tmp = self
            .slot_dir(app, slot)
            .join("tmp")
            .join(format!("record-{}", r.id));
        let mut stored = r.clone();
        stored.active = false;
        let data = serde_json::to_vec_pretty(&stored).map_err(io::Error::other);
        let data = data.ctx("cannot write", &path)?;
        Ok((path, tmp, data))
    }

    /// Writes a record atomically (write, rename) without flushing it: for
    /// the first write of a deployment, which a power cut may lose without
    /// harm.
    pub(super) fn write_record_unflushed(
        &self,
        app: &str,
        slot: &str,
        r: &Deployment,
    ) -> Result<()> {
        let (path, tmp, data) = self.record_file(app, slot, r)?;
        fs::write(&tmp, &data)
            .and_then(|()| fs::rename(&tmp, &path))
            .ctx("cannot write", &path)
    }

    pub(super) fn discard_content(&self, app: &str, id: &str) -> Result<()> {
        let dir = self.content_dir(app, id);
        fsutil::remove_tree(&dir).ctx("cannot remove", &dir)?;
        self.store_err(
            "remove a manifest",
            self.store.remove_manifest(&ManifestKey::new(app, id)),
        )
    }
}
