//! The deployment commands: `apps`, `deploy`, `deployments`, `rollback`,
//! `swap`, `download`, `export`, `credentials`, `settings`, `fsck`, `gc`,
//! one module per group.

mod apps;
mod content;
mod credentials;
mod deployments;
mod maintenance;
mod settings;

use std::path::Path;

use fnhost_deploy::{Error, Site};

pub(crate) use credentials::read_password;
pub(crate) use deployments::{DurabilityArg, Progress};

use crate::{CmdResult, Failure, Output};

/// The deployment commands, flattened into the top-level command list.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Create, list or delete apps in the home folder.
    #[command(subcommand)]
    Apps(apps::AppsCommand),
    /// Deploy a folder or a zip to an app's slot (atomically; a broken app
    /// is never activated).
    Deploy(deployments::DeployArgs),
    /// List an app's deployments (newest first), or show one, or its log.
    Deployments(deployments::DeploymentsArgs),
    /// Activate an earlier successful deployment (default: the one before
    /// the active one).
    Rollback(deployments::RollbackArgs),
    /// Exchange two slots' active deployments atomically.
    Swap(deployments::SwapArgs),
    /// Download a slot's active content as a zip.
    Download(content::DownloadArgs),
    /// Export an app's active content as a new git repository.
    Export(content::ExportArgs),
    /// Set, check or reset an app's deployment credentials.
    #[command(subcommand)]
    Credentials(credentials::CredentialsCommand),
    /// List, set or delete a slot's app settings (the functions'
    /// environment and `%NAME%` in their bindings).
    #[command(subcommand)]
    Settings(settings::SettingsCommand),
    /// Verify every manifest and stored file; report what is damaged.
    Fsck(maintenance::FsckArgs),
    /// Remove stored files that no deployment uses.
    Gc(maintenance::GcArgs),
}

/// Runs a deployment command in the home folder `home`.
pub(crate) fn run(command: Command, home: &Path, out: Output) -> CmdResult {
    let site = Site::open(home).map_err(failure)?;
    match command {
        Command::Apps(c) => apps::run(&site, c, out),
        Command::Deploy(a) => deployments::deploy(&site, a, out),
        Command::Deployments(a) => deployments::deployments(&site, a, out),
        Command::Rollback(a) => deployments::rollback(&site, a, out),
        Command::Swap(a) => deployments::swap(&site, a, out),
        Command::Download(a) => content::download(&site, a),
        Command::Export(a) => content::export(&site, a),
        Command::Credentials(c) => credentials::run(&site, c),
        Command::Settings(c) => settings::run(&site, c, out),
        Command::Fsck(a) => maintenance::fsck(&site, a, out),
        Command::Gc(a) => maintenance::gc(&site, a, out),
    }
}

/// Maps a library error to an exit code: what the user must fix in the
/// command or the environment is 2, a failed operation is 1.
pub(crate) fn failure(e: Error) -> Failure {
    match e {
        Error::InvalidName { .. }
        | Error::AppNotFound { .. }
        | Error::AppExists { .. }
        | Error::DeploymentNotFound { .. }
        | Error::NoActiveDeployment { .. }
        | Error::NotConfigured { .. }
        | Error::InvalidSource { .. }
        | Error::Io { .. } => Failure::Usage(e.to_string()),
        _ => Failure::Message(e.to_string()),
    }
}
