//! `fnhost apps create|list|delete`.

use fnhost_deploy::{PRODUCTION, Site};

use super::failure;
use crate::{CmdResult, Output, print_json};

/// `fnhost apps ...`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum AppsCommand {
    /// Create an app (with its production slot).
    Create {
        /// The app's name (letters, digits and `-`).
        app: String,
    },
    /// List the apps with their slots and active deployments.
    List,
    /// Delete an app with its history and credentials.
    Delete {
        /// The app.
        app: String,
    },
    /// Run an app's slot on cluster workers: N instances, between N and M
    /// by load, or one on every worker.
    Scale(crate::cluster::ScaleArgs),
}

pub(super) fn run(site: &Site, c: AppsCommand, out: Output) -> CmdResult {
    match c {
        AppsCommand::Create { app } => {
            let info = site.create_app(&app).map_err(failure)?;
            if out.json {
                print_json(&info)
            } else {
                eprintln!("created app {app} (slot {PRODUCTION})");
                Ok(())
            }
        }
        AppsCommand::List => {
            let apps = site.apps().map_err(failure)?;
            if out.json {
                return print_json(&apps);
            }
            for a in &apps {
                for s in &a.slots {
                    println!(
                        "{}\t{}\t{}{}",
                        a.name,
                        s.name,
                        s.active.as_deref().unwrap_or("-"),
                        s.continuous_deployment
                            .as_deref()
                            .map(|c| format!("\t(continuous deployment from {c})"))
                            .unwrap_or_default()
                    );
                }
            }
            Ok(())
        }
        AppsCommand::Scale(args) => crate::cluster::scale(args, site.home()),
        AppsCommand::Delete { app } => {
            site.delete_app(&app).map_err(failure)?;
            eprintln!("deleted app {app}");
            Ok(())
        }
    }
}
