//! `fnhost fsck` and `fnhost gc`.

use fnhost_deploy::Site;
use serde_json::json;

use super::failure;
use crate::{CmdResult, Failure, print_json};

/// Arguments of `fnhost fsck`.
#[derive(Debug, clap::Args)]
pub(crate) struct FsckArgs {
    /// Only this app (default: the whole home, and unused stored files).
    app: Option<String>,
    /// Print a JSON report.
    #[arg(long)]
    json: bool,
}

/// Arguments of `fnhost gc`.
#[derive(Debug, clap::Args)]
pub(crate) struct GcArgs {
    /// Print a JSON report.
    #[arg(long)]
    json: bool,
}

/// `fnhost fsck`.
pub(super) fn fsck(site: &Site, a: FsckArgs) -> CmdResult {
    let report = site.fsck(a.app.as_deref()).map_err(failure)?;
    if a.json {
        print_json(&json!({
            "ok": report.is_ok(),
            "manifests": report.manifests,
            "blobs": report.blobs,
            "bytes": report.bytes,
            "problems": report.problems,
            "notes": report.notes,
        }))?;
    } else {
        for p in &report.problems {
            println!("damaged: {p}");
        }
        for n in &report.notes {
            eprintln!("note: {n}");
        }
        eprintln!(
            "checked {} manifests and {} stored files ({} bytes): {}",
            report.manifests,
            report.blobs,
            report.bytes,
            if report.is_ok() {
                "no damage".to_string()
            } else {
                format!("{} problems", report.problems.len())
            }
        );
    }
    if report.is_ok() {
        Ok(())
    } else {
        Err(Failure::Failed)
    }
}

/// `fnhost gc`.
pub(super) fn gc(site: &Site, a: GcArgs) -> CmdResult {
    let r = site.gc().map_err(failure)?;
    if a.json {
        print_json(&json!({ "blobs": r.blobs, "temporary": r.temporary }))
    } else {
        eprintln!(
            "removed {} unused stored files and {} temporary files",
            r.blobs, r.temporary
        );
        Ok(())
    }
}
