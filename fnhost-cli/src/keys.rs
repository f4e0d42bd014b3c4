//! `fnhost keys list|new`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use fnhost_core::keys::{DEFAULT_KEY_NAME, KeyStore};
use fnhost_deploy::{PRODUCTION, Site};

use crate::{CmdResult, Failure, Output, app_dir, load_app, print_json};

/// Arguments of `fnhost keys`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: KeysCommand,
}

#[derive(Debug, clap::Subcommand)]
enum KeysCommand {
    /// Print the app's keys (creating them at first use).
    List(ListArgs),
    /// Replace the master key, or add or replace a host or function key.
    New(NewArgs),
}

/// Where the secrets file is.
#[derive(Debug, clap::Args)]
pub(crate) struct SecretsArg {
    /// The secrets file (default: APP_DIR/.fnhost/secrets.json).
    #[arg(long, value_name = "FILE")]
    pub(crate) secrets: Option<PathBuf>,
}

/// Which app's keys: a folder, or a slot of the home (`serve --app`).
#[derive(Debug, clap::Args)]
struct Target {
    /// The app folder (default: the current folder). Not with --app.
    #[arg(conflicts_with = "app")]
    app_dir: Option<PathBuf>,
    /// The keys of `fnhost serve --app NAME`: those of the slot, kept in
    /// HOME/apps/NAME/slots/SLOT/secrets.json.
    #[arg(long, value_name = "NAME")]
    app: Option<String>,
    /// With --app: the slot (default: production).
    #[arg(long, value_name = "SLOT", requires = "app")]
    slot: Option<String>,
}

impl Target {
    /// Loads the app (a slot's active deployment with --app) and opens its
    /// key store; gives the command that lists its functions.
    fn open(
        &self,
        secrets: &SecretsArg,
        home: &Path,
    ) -> Result<(fnhost_core::FunctionApp, Arc<KeyStore>, String), Failure> {
        let Some(name) = &self.app else {
            let dir = app_dir(self.app_dir.clone());
            let app = load_app(&dir)?;
            let store = open_store(&app, secrets)?;
            return Ok((app, store, format!("fnhost list {}", dir.display())));
        };
        let slot = self.slot.as_deref().unwrap_or(PRODUCTION);
        let usage = |e: fnhost_deploy::Error| Failure::Usage(e.to_string());
        let site = Site::open(home).map_err(usage)?;
        let dir = site.active_path(name, slot).map_err(usage)?;
        let app = load_app(&dir)?;
        let path = match &secrets.secrets {
            Some(p) => p.clone(),
            None => site.secrets_path(name, slot).map_err(usage)?,
        };
        let store = open_store_at(&app, path)?;
        Ok((
            app,
            store,
            format!("fnhost keys list --app {name} --slot {slot}"),
        ))
    }
}

#[derive(Debug, clap::Args)]
struct ListArgs {
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    secrets: SecretsArg,
}

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["master", "host", "function"])))]
struct NewArgs {
    #[command(flatten)]
    target: Target,
    /// Replace the master key.
    #[arg(long)]
    master: bool,
    /// Add or replace the host key NAME.
    #[arg(long, value_name = "NAME")]
    host: Option<String>,
    /// Add or replace a key of function F (named by --name).
    #[arg(long, value_name = "F")]
    function: Option<String>,
    /// The name of the function key (default: `default`).
    #[arg(long, value_name = "NAME", requires = "function")]
    name: Option<String>,
    #[command(flatten)]
    secrets: SecretsArg,
}

pub(crate) fn run(args: Args, home: &Path, out: Output) -> CmdResult {
    match args.command {
        KeysCommand::List(a) => list(a, home, out),
        KeysCommand::New(a) => new(a, home),
    }
}

/// Opens the app's key store, creating it (and each function's default
/// key) when missing.
pub(crate) fn open_store(
    app: &fnhost_core::FunctionApp,
    secrets: &SecretsArg,
) -> Result<Arc<KeyStore>, Failure> {
    let path = secrets
        .secrets
        .clone()
        .unwrap_or_else(|| KeyStore::default_path(app.root()));
    open_store_at(app, path)
}

/// Opens the key store at `path`, creating it (and each function's default
/// key) when missing.
pub(crate) fn open_store_at(
    app: &fnhost_core::FunctionApp,
    path: PathBuf,
) -> Result<Arc<KeyStore>, Failure> {
    let store = KeyStore::open(&path).map_err(|e| Failure::Usage(e.to_string()))?;
    store
        .ensure_function_keys(app.functions().iter().map(|f| f.name.as_str()))
        .map_err(|e| Failure::Usage(e.to_string()))?;
    Ok(Arc::new(store))
}

/// With `--json`: `{"master": KEY, "host": {NAME: KEY}, "functions":
/// {FUNCTION: {NAME: KEY}}}`.
fn list(args: ListArgs, home: &Path, out: Output) -> CmdResult {
    let (_, store, _) = args.target.open(&args.secrets, home)?;
    let secrets = store.secrets();
    if out.json {
        return print_json(&secrets);
    }
    println!("master: {}", secrets.master);
    for (name, key) in &secrets.host {
        println!("host {name}: {key}");
    }
    for (function, keys) in &secrets.functions {
        for (name, key) in keys {
            println!("function {function} {name}: {key}");
        }
    }
    if let Some(path) = store.path() {
        eprintln!("fnhost: keys are in {}", path.display());
    }
    Ok(())
}

fn new(args: NewArgs, home: &Path) -> CmdResult {
    let (app, store, named) = args.target.open(&args.secrets, home)?;
    let err = |e: fnhost_core::keys::KeyError| Failure::Usage(e.to_string());
    let key = if args.master {
        store.rotate_master().map_err(err)?
    } else if let Some(name) = &args.host {
        store.new_host_key(name).map_err(err)?
    } else if let Some(function) = &args.function {
        let Some(f) = app.function(function) else {
            return Err(Failure::Usage(format!(
                "the app has no function named '{function}' (see `{named}`)"
            )));
        };
        let name = args.name.as_deref().unwrap_or(DEFAULT_KEY_NAME);
        store.new_function_key(&f.name, name).map_err(err)?
    } else {
        return Err(Failure::Usage(
            "say which key: --master, --host NAME or --function F".into(),
        ));
    };
    println!("{key}");
    Ok(())
}
