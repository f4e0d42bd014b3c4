//! Small additions for the management endpoint (`crate::manage`): whether
//! a slot is busy, and deleting a deployment record.

use std::fs;

use super::{Site, check_name};
use crate::deployment::Deployment;
use crate::error::{Error, IoContext, Result};

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
}

impl Site {
    /// A value that changes whenever the app's deployment credentials
    /// change (set, reset), without reading them: lets a server cache a
    /// successful check until then. `None` when the app has none.
    pub fn credentials_version(&self, app: &str) -> Result<Option<String>> {
        use std::os::unix::fs::MetadataExt as _;
        self.require_app(app)?;
        let path = self.app_dir(app).join("credentials.json");
        match fs::metadata(&path) {
            Ok(m) => Ok(Some(format!(
                "{}:{}:{}.{}",
                m.ino(),
                m.len(),
                m.mtime(),
                m.mtime_nsec()
            ))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("cannot read", path, e)),
        }
    }
}
