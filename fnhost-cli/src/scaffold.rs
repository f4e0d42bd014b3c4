//! `fnhost init` and `fnhost new`.

use std::path::PathBuf;

use fnhost_core::scaffold::{self, ScaffoldError, Template, WorkerRuntime};

use crate::{CmdResult, Failure, app_dir};

/// Arguments of `fnhost init`.
#[derive(Debug, clap::Args)]
pub(crate) struct InitArgs {
    /// The folder of the new app (made if missing; default: the current folder).
    dir: Option<PathBuf>,
    /// The worker runtime: custom (a custom handler), node or python.
    #[arg(long, default_value = "custom")]
    worker_runtime: WorkerRuntime,
}

/// Arguments of `fnhost new`.
#[derive(Debug, clap::Args)]
pub(crate) struct NewArgs {
    /// The template: http, timer, queue, blob, manual, eventgrid, servicebus, eventhub.
    #[arg(long, short)]
    template: Template,
    /// The function name (also its folder name).
    #[arg(long, short)]
    name: String,
    /// The app folder (default: the current folder).
    app_dir: Option<PathBuf>,
}

pub(crate) fn init(args: InitArgs) -> CmdResult {
    let dir = app_dir(args.dir);
    let files = scaffold::init_app(&dir, args.worker_runtime).map_err(failure)?;
    report(&files);
    Ok(())
}

pub(crate) fn new(args: NewArgs) -> CmdResult {
    let dir = app_dir(args.app_dir);
    let files = scaffold::new_function(&dir, args.template, &args.name).map_err(failure)?;
    report(&files);
    Ok(())
}

fn report(files: &[PathBuf]) {
    for f in files {
        println!("created {}", f.display());
    }
}

fn failure(e: ScaffoldError) -> Failure {
    match e {
        ScaffoldError::NotAnApp { .. } | ScaffoldError::Io { .. } => Failure::Usage(e.to_string()),
        other => Failure::Message(other.to_string()),
    }
}
