//! The locks: one deployment a slot (`slots/SLOT/lock`, holding what runs),
//! the app's lock over its read-modify-write files, and the store's lock
//! (shared by deployments, exclusive for garbage collection).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::path::Path;

use super::deploy::Observer;
use super::{Site, check_name};
use crate::error::{Error, IoContext, Result};

/// What a slot's lock file says while a thread tidies up after a
/// deployment: a deployment arriving then waits for it (briefly) even with
/// `--no-wait`.
pub(super) const TIDYING: &str = "tidying up after deployment";

/// The lock file at `path` (made if missing), locked exclusively: waits
/// for whoever holds it; released when dropped.
pub(super) fn lock_file(path: &Path) -> Result<File> {
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .ctx("cannot open", path)?;
    f.lock().ctx("cannot lock", path)?;
    Ok(f)
}

/// A held per-slot deployment lock; released when dropped.
#[derive(Debug)]
pub(super) struct SlotLock {
    file: File,
}

impl SlotLock {
    pub(super) fn set_holder(&mut self, id: &str) {
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
    /// The deployment running in a slot, if one is: `Some(id)` (or
    /// `Some("rollback")`, `Some("swap")`, or an empty string when the
    /// holder is unknown); `None` when the slot is free.
    pub fn running(&self, app: &str, slot: &str) -> Result<Option<String>> {
        self.require_app(app)?;
        check_name("slot", slot)?;
        match self.lock_slot(app, slot, false, None) {
            Ok(lock) => {
                drop(lock);
                Ok(None)
            }
            Err(Error::Busy { holder, .. }) => Ok(Some(holder.unwrap_or_default())),
            Err(e) => Err(e),
        }
    }

    pub(super) fn app_lock(&self, app: &str) -> Result<File> {
        lock_file(&self.app_dir(app).join("app.lock"))
    }

    pub(super) fn lock_slot(
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

    pub(super) fn store_lock_file(&self) -> Result<File> {
        let path = self.home.join("store.lock");
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .ctx("cannot open", &path)
    }
}
