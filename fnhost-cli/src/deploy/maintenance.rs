//! `fnhost fsck` and `fnhost gc`.

use fnhost_deploy::{FsckReport, Site};

use super::failure;
use crate::{CmdResult, Failure, Output, print_json};

/// Arguments of `fnhost fsck`.
#[derive(Debug, clap::Args)]
pub(crate) struct FsckArgs {
    /// Only this app (default: the whole home, and unused stored files).
    app: Option<String>,
}

/// Arguments of `fnhost gc`.
#[derive(Debug, clap::Args)]
pub(crate) struct GcArgs {}

/// `fnhost fsck`.
pub(super) fn fsck(site: &Site, a: FsckArgs, out: Output) -> CmdResult {
    let report = site.fsck(a.app.as_deref()).map_err(failure)?;
    if out.json {
        /// The report with `ok` first.
        #[derive(serde::Serialize)]
        struct Shown<'a> {
            ok: bool,
            #[serde(flatten)]
            report: &'a FsckReport,
        }
        print_json(&Shown {
            ok: report.is_ok(),
            report: &report,
        })?;
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
pub(super) fn gc(site: &Site, _: GcArgs, out: Output) -> CmdResult {
    let r = site.gc().map_err(failure)?;
    if out.json {
        print_json(&r)
    } else {
        eprintln!(
            "removed {} unused stored files and {} temporary files",
            r.blobs, r.temporary
        );
        Ok(())
    }
}
