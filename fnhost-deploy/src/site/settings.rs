//! A slot's configuration (`slots/SLOT/config.json`): continuous
//! deployment and with it the read-only rule, app settings; and where a
//! host serving the slot keeps its keys.

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Site, check_name, read_json_or_default};
use crate::deployment;
use crate::error::{Error, IoContext, Result};
use crate::fsutil;

/// Continuous deployment as configured for a slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContinuousDeployment {
    /// The source of truth: a repository and branch, a folder.
    pub source: String,
    /// When it was configured.
    pub configured_time: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct SlotConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) continuous_deployment: Option<ContinuousDeployment>,
    #[serde(default)]
    pub(super) app_settings: BTreeMap<String, String>,
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

impl Site {
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

    /// The invocation records of a slot (`apps/APP/slots/SLOT/monitor`):
    /// what `fnhost serve --app` writes and the portal's Monitor reads.
    pub fn invocation_log(&self, app: &str, slot: &str) -> Result<crate::monitor::InvocationLog> {
        self.require_app(app)?;
        check_name("slot", slot)?;
        Ok(crate::monitor::InvocationLog::new(
            self.slot_dir(app, slot).join("monitor"),
        ))
    }

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

    /// The read-only rule: refuses ([`Error::ReadOnly`]) a direct change
    /// to a slot that follows a source of truth (continuous deployment is
    /// configured for it). Deployments, the management endpoint's zip and
    /// vfs edits all ask here.
    pub fn check_writable(&self, app: &str, slot: &str) -> Result<()> {
        self.require_app(app)?;
        check_name("slot", slot)?;
        self.refuse_read_only(app, slot)
    }

    /// [`Site::check_writable`] once the app and slot names are checked.
    pub(super) fn refuse_read_only(&self, app: &str, slot: &str) -> Result<()> {
        if let Some(cd) = self.slot_config(app, slot)?.continuous_deployment {
            return Err(Error::ReadOnly {
                app: app.into(),
                slot: slot.into(),
                source_of_truth: cd.source,
            });
        }
        Ok(())
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

    pub(super) fn slot_config(&self, app: &str, slot: &str) -> Result<SlotConfig> {
        let path = self.slot_dir(app, slot).join("config.json");
        read_json_or_default(&path)
    }

    pub(super) fn update_slot_config(
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
}
