//! `fnhost settings list|set|delete`.

use fnhost_deploy::{PRODUCTION, Site};

use super::failure;
use crate::{CmdResult, Failure, Output, print_json};

/// `fnhost settings ...`: a slot's app settings, which `serve --app`
/// applies (a running one reloads when they change) and `download
/// --include-settings` writes into local.settings.json.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum SettingsCommand {
    /// List the settings, one NAME=VALUE a line, sorted by name.
    List {
        /// The app.
        app: String,
        /// The slot.
        #[arg(long, short, default_value = PRODUCTION)]
        slot: String,
    },
    /// Add or change settings; the others stay.
    Set {
        /// The app.
        app: String,
        /// The settings, each NAME=VALUE (the value may contain `=`).
        #[arg(required = true, value_name = "NAME=VALUE")]
        settings: Vec<String>,
        /// The slot.
        #[arg(long, short, default_value = PRODUCTION)]
        slot: String,
    },
    /// Remove settings by name (a name not set is not an error).
    Delete {
        /// The app.
        app: String,
        /// The names.
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
        /// The slot.
        #[arg(long, short, default_value = PRODUCTION)]
        slot: String,
    },
}

/// With `--json`, `list` prints the settings as one object; `set` and
/// `delete` print the settings after the change.
pub(super) fn run(site: &Site, c: SettingsCommand, out: Output) -> CmdResult {
    let (app, slot, after) = match c {
        SettingsCommand::List { app, slot } => {
            let settings = site.app_settings(&app, &slot).map_err(failure)?;
            if out.json {
                return print_json(&settings);
            }
            for (name, value) in &settings {
                println!("{name}={value}");
            }
            if settings.is_empty() {
                eprintln!(
                    "{app}/{slot}: no app settings; add some with `fnhost settings set {app} NAME=VALUE`"
                );
            }
            return Ok(());
        }
        SettingsCommand::Set {
            app,
            settings,
            slot,
        } => {
            let mut set = std::collections::BTreeMap::new();
            for s in settings {
                let Some((name, value)) = s.split_once('=') else {
                    return Err(Failure::Usage(format!(
                        "{s:?} is not NAME=VALUE; to set an empty value, write `{s}=`"
                    )));
                };
                set.insert(name.to_string(), value.to_string());
            }
            let after = site
                .update_app_settings(&app, &slot, set, &[])
                .map_err(failure)?;
            (app, slot, after)
        }
        SettingsCommand::Delete { app, names, slot } => {
            let after = site
                .update_app_settings(&app, &slot, Default::default(), &names)
                .map_err(failure)?;
            (app, slot, after)
        }
    };
    if out.json {
        print_json(&after)?;
    }
    eprintln!(
        "{app}/{slot}: {} app setting{} (a running `fnhost serve --app {app}` reloads)",
        after.len(),
        if after.len() == 1 { "" } else { "s" }
    );
    Ok(())
}
