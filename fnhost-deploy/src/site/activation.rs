//! The active pointer (`active.json`, every slot's in one file): what a
//! slot serves, rollback and swap, all pointer switches.

use std::collections::{BTreeMap, HashSet};
use std::io;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Site, check_name, read_json_or_default};
use crate::deployment::{self, Deployment, Status};
use crate::error::{Error, IoContext, Result};
use crate::fsutil;

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

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct Pointers {
    pub(super) generation: u64,
    pub(super) slots: BTreeMap<String, Pointer>,
}

impl Pointers {
    /// The ids of the active deployments, of every slot.
    pub(super) fn active_ids(&self) -> HashSet<String> {
        self.slots.values().map(|p| p.deployment.clone()).collect()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Pointer {
    pub(super) deployment: String,
    pub(super) generation: u64,
    pub(super) activated_time: String,
}

impl Site {
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

    /// The slot's active deployment, or [`Error::NoActiveDeployment`].
    pub fn require_active(&self, app: &str, slot: &str) -> Result<Active> {
        self.active(app, slot)?
            .ok_or_else(|| Error::NoActiveDeployment {
                app: app.into(),
                slot: slot.into(),
            })
    }

    /// The folder of the slot's active deployment (what a host serves).
    pub fn active_path(&self, app: &str, slot: &str) -> Result<PathBuf> {
        Ok(self.require_active(app, slot)?.path)
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

    pub(super) fn pointers(&self, app: &str) -> Result<Pointers> {
        let path = self.app_dir(app).join("active.json");
        read_json_or_default(&path)
    }

    /// Switches slots' active pointers in one atomic rename.
    pub(super) fn switch(&self, app: &str, changes: &[(&str, Option<&str>)]) -> Result<()> {
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
}
