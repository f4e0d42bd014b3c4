//! `fnhost credentials set|check|reset`.

use std::io::{BufRead, IsTerminal};

use fnhost_deploy::Site;

use super::failure;
use crate::{CmdResult, Failure};

/// `fnhost credentials ...`; passwords are read from stdin.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum CredentialsCommand {
    /// Set the app's deployment user and password (password on stdin).
    Set {
        /// The app.
        app: String,
        /// The user name.
        #[arg(long, short)]
        user: String,
    },
    /// Check a user and password (password on stdin); exit 1 if wrong.
    Check {
        /// The app.
        app: String,
        /// The user name.
        #[arg(long, short)]
        user: String,
    },
    /// Set a new generated password, printed once to stdout.
    Reset {
        /// The app.
        app: String,
        /// The user name.
        #[arg(long, short)]
        user: String,
    },
}

pub(crate) fn read_password() -> Result<String, Failure> {
    let stdin = std::io::stdin();
    let tty = stdin.is_terminal();
    if tty {
        eprint!("Password: ");
        // Best effort: no echo while typing.
        let _ = std::process::Command::new("stty").arg("-echo").status();
    }
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if tty {
        let _ = std::process::Command::new("stty").arg("echo").status();
        eprintln!();
    }
    read.map_err(|e| Failure::Usage(format!("cannot read the password from stdin: {e}")))?;
    let password = line.trim_end_matches(['\n', '\r']).to_string();
    if password.is_empty() {
        return Err(Failure::Usage(
            "no password on stdin; pipe it in, e.g. `printf %s \"$PASSWORD\" | fnhost credentials set APP --user NAME`".into(),
        ));
    }
    Ok(password)
}

pub(super) fn run(site: &Site, c: CredentialsCommand) -> CmdResult {
    match c {
        CredentialsCommand::Set { app, user } => {
            let password = read_password()?;
            site.set_credentials(&app, &user, &password)
                .map_err(failure)?;
            eprintln!("set deployment credentials of {app} for user {user}");
            Ok(())
        }
        CredentialsCommand::Check { app, user } => {
            let password = read_password()?;
            if site
                .check_credentials(&app, &user, &password)
                .map_err(failure)?
            {
                eprintln!("credentials are valid");
                Ok(())
            } else {
                Err(Failure::Message(format!(
                    "{app}: wrong user name or password"
                )))
            }
        }
        CredentialsCommand::Reset { app, user } => {
            let password = site.reset_credentials(&app, &user).map_err(failure)?;
            // The one time a password is shown: the generated one, to stdout.
            println!("{password}");
            eprintln!("new password for {user} on {app} (shown once)");
            Ok(())
        }
    }
}
