//! `fnhost validate`.

use std::path::PathBuf;

use serde_json::json;

use crate::{CmdResult, Failure, Output, app_dir, load_app, print_json};

/// Arguments of `fnhost validate`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The app folder (default: the current folder).
    app_dir: Option<PathBuf>,
}

pub(crate) fn run(args: Args, out: Output) -> CmdResult {
    let dir = app_dir(args.app_dir);
    let app = load_app(&dir)?;
    let diags = app.diagnostics();
    let indexed = indexed_at_start(&app);
    if out.json {
        print_json(&json!({
            "app": dir.display().to_string(),
            "functions": app.functions().len(),
            "indexedAtStart": indexed.as_ref().map(|(source, runtime)| json!({"source": source, "worker": runtime})),
            "errors": diags.error_count(),
            "warnings": diags.warning_count(),
            "diagnostics": diags.iter().collect::<Vec<_>>(),
        }))?;
    } else {
        for d in diags {
            println!("{d}");
        }
        eprintln!(
            "{}: {} function{}, {} error{}, {} warning{}",
            dir.display(),
            app.functions().len(),
            plural(app.functions().len()),
            diags.error_count(),
            plural(diags.error_count()),
            diags.warning_count(),
            plural(diags.warning_count()),
        );
        if let Some((source, runtime)) = &indexed {
            eprintln!(
                "note: the functions declared in {source} are indexed by the {runtime} worker when the app starts; `fnhost list --index {}` starts it and lists them",
                dir.display()
            );
        }
    }
    if diags.has_errors() {
        Err(Failure::Failed)
    } else {
        Ok(())
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Where the app declares functions in code and which worker indexes them
/// at start, when it does.
pub(crate) fn indexed_at_start(app: &fnhost_core::FunctionApp) -> Option<(&'static str, String)> {
    let source = fnhost_core::app::functions_declared_in_code(app.root())?;
    let runtime = app
        .settings()
        .get("FUNCTIONS_WORKER_RUNTIME")?
        .trim()
        .to_ascii_lowercase();
    (!matches!(runtime.as_str(), "" | "custom" | "dotnet")).then_some((source, runtime))
}
