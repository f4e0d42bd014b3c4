//! `fnhost download` and `fnhost export`.

use std::path::PathBuf;

use fnhost_deploy::{PRODUCTION, Site};

use super::failure;
use crate::CmdResult;

/// Arguments of `fnhost download`.
#[derive(Debug, clap::Args)]
pub(crate) struct DownloadArgs {
    /// The app.
    app: String,
    /// The slot.
    #[arg(long, short, default_value = PRODUCTION)]
    slot: String,
    /// The zip to write.
    #[arg(long, short, value_name = "FILE")]
    output: PathBuf,
    /// Add a local.settings.json made from the slot's app settings.
    #[arg(long)]
    include_settings: bool,
}

/// Arguments of `fnhost export`.
#[derive(Debug, clap::Args)]
pub(crate) struct ExportArgs {
    /// The app.
    app: String,
    /// The slot.
    #[arg(long, short, default_value = PRODUCTION)]
    slot: String,
    /// The new repository's folder (must not exist, or be empty).
    #[arg(long, value_name = "DIR")]
    git: PathBuf,
}

/// `fnhost download`.
pub(super) fn download(site: &Site, a: DownloadArgs) -> CmdResult {
    let d = site
        .download(&a.app, &a.slot, a.include_settings, &a.output)
        .map_err(failure)?;
    eprintln!(
        "wrote {} (deployment {}, {} files)",
        a.output.display(),
        d.id,
        d.files
    );
    Ok(())
}

/// `fnhost export`.
pub(super) fn export(site: &Site, a: ExportArgs) -> CmdResult {
    let commit = site.export_git(&a.app, &a.slot, &a.git).map_err(failure)?;
    eprintln!("created {} at commit {commit}", a.git.display());
    Ok(())
}
