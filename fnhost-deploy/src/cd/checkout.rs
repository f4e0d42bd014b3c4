//! The slot's checkout: the source's files kept between syncs
//! (`cd/checkout/`), updated in place, and the record of what it holds
//! (`cd/checkout.json`).

use std::fs;
use std::io;
use std::path::Path;

use fnhost_core::source::{SourceProvider, SourceSnapshot, SourceSpec};
use serde::{Deserialize, Serialize};

use super::{ContinuousDeployer, io_err};
use crate::error::Error;
use crate::fsutil;

/// The slot's checkout folder (the source's files, kept between syncs).
pub(super) const CHECKOUT: &str = "checkout";
/// What the checkout folder holds.
pub(super) const CHECKOUT_RECORD: &str = "checkout.json";

#[derive(Serialize, Deserialize)]
struct CheckoutRecord {
    /// The snapshot id the folder holds.
    id: String,
    /// The provider and spec it came from.
    origin: String,
}

impl ContinuousDeployer {
    /// Brings the slot's checkout (the source's files, kept between syncs)
    /// to the source's newest snapshot: an update from the snapshot it
    /// holds when that is known, else a fresh fetch. `checkout.json` names
    /// what the folder holds; it is removed (and the removal flushed)
    /// before the folder changes and written again once it is complete, so
    /// a folder left half-changed by an error or a kill is fetched afresh.
    pub(super) fn checkout(
        &self,
        app: &str,
        slot: &str,
        provider: &dyn SourceProvider,
        spec: &SourceSpec,
        dir: &Path,
    ) -> Result<SourceSnapshot, Error> {
        let cd = self.cd_dir(app, slot);
        let record = cd.join(CHECKOUT_RECORD);
        let origin = format!(
            "{} {} {:?} {:?}",
            provider.name(),
            spec.location,
            spec.reference,
            spec.options
        );
        let held = fs::read(&record)
            .ok()
            .and_then(|d| serde_json::from_slice::<CheckoutRecord>(&d).ok())
            .filter(|r| r.origin == origin && dir.is_dir());
        if record.exists() {
            fs::remove_file(&record).map_err(io_err("cannot remove", &record))?;
            fsutil::sync_dir(&cd).map_err(io_err("cannot flush", &cd))?;
        }
        let snapshot = match held {
            Some(r) => provider
                .update(spec, dir, &r.id)
                .map_err(|e| Error::source(app, slot, e))?,
            None => {
                fnhost_core::source::empty_folder(dir).map_err(io_err("cannot empty", dir))?;
                provider
                    .fetch(spec, dir)
                    .map_err(|e| Error::source(app, slot, e))?
            }
        };
        let data = serde_json::to_vec(&CheckoutRecord {
            id: snapshot.id.clone(),
            origin,
        })
        .map_err(io::Error::other)
        .map_err(io_err("cannot write", &record))?;
        fsutil::atomic_write(&record, &cd.join(".checkout.tmp"), &data, 0o600)
            .map_err(io_err("cannot write", &record))?;
        Ok(snapshot)
    }
}
