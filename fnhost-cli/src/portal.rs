//! `fnhost portal users add|remove|list`: the accounts of the management
//! portal that `fnhost manage` serves.

use std::path::Path;

use fnhost_deploy::Site;

use crate::deploy::read_password;
use crate::{CmdResult, Failure};

/// `fnhost portal ...`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// The portal's accounts (each reaches every app of the home).
    #[command(subcommand)]
    Users(UsersCommand),
}

/// `fnhost portal users ...`; passwords are read from stdin.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum UsersCommand {
    /// Add an account, or set a new password for it (password on stdin).
    Add {
        /// The user name.
        user: String,
    },
    /// Remove an account; its sessions end.
    Remove {
        /// The user name.
        user: String,
    },
    /// List the accounts (names, never passwords).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) fn run(command: Command, home: &Path) -> CmdResult {
    let Command::Users(command) = command;
    let site = Site::open(home).map_err(|e| Failure::Usage(e.to_string()))?;
    let failed = |e: fnhost_deploy::Error| Failure::Message(e.to_string());
    match command {
        UsersCommand::Add { user } => {
            let password = read_password()?;
            site.add_portal_user(&user, &password)
                .map_err(|e| Failure::Usage(e.to_string()))?;
            eprintln!("portal user {user} can sign in at /portal/ of `fnhost manage`");
        }
        UsersCommand::Remove { user } => {
            site.remove_portal_user(&user).map_err(failed)?;
            eprintln!("portal user {user} removed");
        }
        UsersCommand::List { json } => {
            let users = site.portal_users().map_err(failed)?;
            if json {
                let out = serde_json::to_string_pretty(&users)
                    .map_err(|e| Failure::Message(e.to_string()))?;
                println!("{out}");
            } else if users.is_empty() {
                eprintln!("no portal users; add one with `fnhost portal users add NAME`");
            } else {
                for u in users {
                    println!("{}\t{}", u.name, u.updated_time);
                }
            }
        }
    }
    Ok(())
}
