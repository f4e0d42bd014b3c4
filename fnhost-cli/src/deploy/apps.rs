//! `fnhost apps create|list|delete`.

use fnhost_deploy::{AppInfo, PRODUCTION, Site};
use serde_json::{Value, json};

use super::failure;
use crate::{CmdResult, print_json};

/// `fnhost apps ...`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum AppsCommand {
    /// Create an app (with its production slot).
    Create {
        /// The app's name (letters, digits and `-`).
        app: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the apps with their slots and active deployments.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete an app with its history and credentials.
    Delete {
        /// The app.
        app: String,
    },
    /// Run an app's slot on cluster workers: N instances, between N and M
    /// by load, or one on every worker.
    Scale(crate::cluster::ScaleArgs),
}

fn app_json(a: &AppInfo) -> Value {
    json!({
        "name": a.name,
        "created_time": a.created_time,
        "slots": a.slots.iter().map(|s| json!({
            "name": s.name,
            "active": s.active,
            "generation": s.generation,
            "continuous_deployment": s.continuous_deployment,
        })).collect::<Vec<_>>(),
    })
}

pub(super) fn run(site: &Site, c: AppsCommand) -> CmdResult {
    match c {
        AppsCommand::Create { app, json } => {
            let info = site.create_app(&app).map_err(failure)?;
            if json {
                print_json(&app_json(&info))
            } else {
                eprintln!("created app {app} (slot {PRODUCTION})");
                Ok(())
            }
        }
        AppsCommand::List { json } => {
            let apps = site.apps().map_err(failure)?;
            if json {
                return print_json(&apps.iter().map(app_json).collect::<Vec<_>>());
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
