//! Keeping a home folder sound: recovery after an interrupted deployment,
//! retention, fsck and garbage collection (the store's own halves,
//! `store::fsck` and `store::collect_garbage`, are called from here).

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

use super::{Site, read_json};
use crate::deployment::{self, Deployment, Level, Status};
use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::store::{self, FsckReport, GcReport, ManifestKey};

/// How many deployments retention drops between two garbage collections
/// (see `Site::gc` for one at once).
pub const GC_EVERY: usize = 8;

impl Site {
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

    /// Garbage collection after retention dropped `pruned` deployments,
    /// amortised: a collection reads every manifest and lists every blob
    /// (tens of milliseconds for a large app), so it runs once the
    /// deployments dropped since the last one reach [`GC_EVERY`]. Until
    /// then the dropped deployments' own blobs stay in the store (at most
    /// that many deployments' changes). `HOME/gc-pending` counts them; it
    /// is not flushed (a lost count only delays a collection). `fnhost gc`
    /// and app deletion collect at once.
    pub(super) fn gc_after_prune(&self, pruned: usize) -> Result<()> {
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
    pub(super) fn try_gc(&self) -> Result<Option<GcReport>> {
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
    pub(super) fn recover_slot(&self, app: &str, slot: &str) -> Result<usize> {
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
        let active = self.pointers(app)?.active_ids();
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

    /// Applies retention to a slot's records (the caller holds its lock).
    pub(super) fn retain(&self, app: &str, slot: &str) -> Result<usize> {
        let records = self.records(app)?;
        let active = self.pointers(app)?.active_ids();
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
