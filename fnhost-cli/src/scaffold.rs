//! `fnhost init` and `fnhost new`.

use std::path::PathBuf;

use fnhost_core::scaffold::{self, Model, ScaffoldError, Template, WorkerRuntime};

use crate::{CmdResult, Failure, app_dir};

/// Arguments of `fnhost init`.
#[derive(Debug, clap::Args)]
pub(crate) struct InitArgs {
    /// The folder of the new app (made if missing; default: the current folder).
    dir: Option<PathBuf>,
    /// The worker runtime: custom (a custom handler), node or python.
    #[arg(long, default_value = "custom")]
    worker_runtime: WorkerRuntime,
    /// Azure's programming model: node v4 (default) or v3, python v2
    /// (default) or v1. Custom handler apps take none.
    #[arg(long, value_name = "v4|v3|v2|v1")]
    model: Option<Model>,
}

/// Arguments of `fnhost new`.
#[derive(Debug, clap::Args)]
pub(crate) struct NewArgs {
    /// The template: http, timer, queue, blob, manual, eventgrid, servicebus, eventhub, rabbitmq.
    #[arg(long, short)]
    template: Template,
    /// The function name.
    #[arg(long, short)]
    name: String,
    /// The app folder (default: the current folder). The function is
    /// written in the app's runtime and programming model.
    app_dir: Option<PathBuf>,
}

pub(crate) fn init(args: InitArgs) -> CmdResult {
    let dir = app_dir(args.dir);
    let files = scaffold::init_app(&dir, args.worker_runtime, args.model).map_err(failure)?;
    report("created", &files);
    Ok(())
}

pub(crate) fn new(args: NewArgs) -> CmdResult {
    let dir = app_dir(args.app_dir);
    let done = scaffold::new_function(&dir, args.template, &args.name).map_err(failure)?;
    report("created", &done.created);
    report("added the function to", &done.updated);
    Ok(())
}

fn report(what: &str, files: &[PathBuf]) {
    for f in files {
        println!("{what} {}", f.display());
    }
}

fn failure(e: ScaffoldError) -> Failure {
    match e {
        ScaffoldError::NotAnApp { .. }
        | ScaffoldError::Io { .. }
        | ScaffoldError::ModelMismatch { .. } => Failure::Usage(e.to_string()),
        other => Failure::Message(other.to_string()),
    }
}
