//! `fnhost list`.

use std::path::PathBuf;

use chrono::{SecondsFormat, Utc};
use fnhost_core::{Function, FunctionApp};
use fnhost_triggers::ListenerSpec;
use serde::Serialize;
use serde_json::Value;

use crate::{CmdResult, Output, app_dir, load_app, print_json};

/// Arguments of `fnhost list`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The app folder (default: the current folder).
    app_dir: Option<PathBuf>,
    /// Start the app's language worker and list the functions it indexes
    /// too (Python v2 and Node.js v4 apps declare functions in code).
    #[arg(long)]
    index: bool,
}

pub(crate) fn run(args: Args, out: Output) -> CmdResult {
    let dir = app_dir(args.app_dir);
    let mut app = load_app(&dir)?;
    if args.index {
        app = index(app)?;
    }
    let now = Utc::now();
    if out.json {
        let items: Vec<FunctionView> = app
            .functions()
            .iter()
            .map(|f| FunctionView::of(f, &app, now))
            .collect();
        print_json(&items)?;
    } else {
        for f in app.functions() {
            print_text(f, &app, now);
        }
    }
    let errors = app.diagnostics().error_count();
    if errors > 0 {
        eprintln!(
            "fnhost: warning: {errors} error{} in the app; functions with errors are not listed (run `fnhost validate {}`)",
            if errors == 1 { "" } else { "s" },
            dir.display()
        );
    }
    Ok(())
}

fn next_three(f: &Function, now: chrono::DateTime<Utc>) -> Vec<String> {
    f.timer
        .as_ref()
        .map(|t| {
            t.schedule
                .upcoming(&now, 3)
                .iter()
                .map(|d| d.to_rfc3339_opts(SecondsFormat::Secs, true))
                .collect()
        })
        .unwrap_or_default()
}

/// A function as `list --json` (and `serve --json`) prints it.
#[derive(Debug, Serialize)]
pub(crate) struct FunctionView<'a> {
    name: &'a str,
    trigger: &'a str,
    disabled: bool,
    bindings: Vec<&'a serde_json::Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    http: Option<HttpView<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    schedule: Option<ScheduleView<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    listener: Option<ListenerView>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct HttpView<'a> {
    route: String,
    methods: Vec<&'a str>,
    auth_level: &'a str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ScheduleView<'a> {
    expression: &'a str,
    resolved: Option<&'a str>,
    run_on_startup: bool,
    next: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
enum ListenerView {
    Listens {
        source: String,
        connection: Option<String>,
    },
    Cannot {
        error: String,
    },
}

impl<'a> FunctionView<'a> {
    pub(crate) fn of(f: &'a Function, app: &'a FunctionApp, now: chrono::DateTime<Utc>) -> Self {
        FunctionView {
            name: &f.name,
            trigger: f.trigger_type(),
            disabled: f.disabled,
            bindings: f.config.bindings.iter().map(|b| &b.properties).collect(),
            http: f.http.as_ref().map(|h| HttpView {
                route: h.path(),
                methods: h.methods.iter().map(|m| m.as_str()).collect(),
                auth_level: h.auth_level.as_str(),
            }),
            schedule: f
                .config
                .trigger()
                .and_then(|b| b.timer_trigger())
                .map(|b| ScheduleView {
                    expression: &b.schedule,
                    resolved: f.timer.as_ref().map(|t| t.resolved.as_str()),
                    run_on_startup: b.run_on_startup,
                    next: next_three(f, now),
                }),
            listener: ListenerSpec::of(f, app).map(|spec| match spec {
                Ok(spec) => ListenerView::Listens {
                    source: spec.source(),
                    connection: spec.setting().map(str::to_owned),
                },
                Err(reason) => ListenerView::Cannot { error: reason },
            }),
        }
    }
}

fn print_text(f: &Function, app: &FunctionApp, now: chrono::DateTime<Utc>) {
    let disabled = if f.disabled { " (disabled)" } else { "" };
    println!("{}: {}{disabled}", f.name, f.trigger_type());
    if let Some(h) = &f.http {
        let methods = if h.methods.is_all() {
            "ALL".to_owned()
        } else {
            h.methods.to_string()
        };
        println!("    {} [{}] auth: {}", h.path(), methods, h.auth_level);
    }
    if let Some(t) = &f.timer {
        let via = if t.resolved != t.expression {
            format!(" (from {})", t.expression)
        } else {
            String::new()
        };
        println!("    schedule: {}{via}", t.resolved);
        for next in next_three(f, now) {
            println!("    next: {next}");
        }
    } else if let Some(b) = f.config.trigger().and_then(|b| b.timer_trigger()) {
        println!("    schedule: {} (unresolved)", b.schedule);
    }
    match ListenerSpec::of(f, app) {
        Some(Ok(spec)) => match spec.setting() {
            Some(setting) => println!("    listens to: {} (connection {setting})", spec.source()),
            None => println!("    listens to: {}", spec.source()),
        },
        Some(Err(reason)) => println!("    cannot listen: {reason}"),
        None => {}
    }
}

/// The app with the functions its language worker indexes (the worker is
/// started, asked, and stopped).
fn index(app: fnhost_core::FunctionApp) -> Result<fnhost_core::FunctionApp, crate::Failure> {
    let runtime = crate::serve::runtime()?;
    runtime.block_on(async move {
        let host = crate::serve::build_host(app);
        let started = host.start().await;
        let version = host.current();
        host.shutdown().await;
        started.map_err(|e| crate::Failure::Message(format!("cannot index the app: {e}")))?;
        Ok(version.app().with_indexed_functions(&[]))
    })
}
