//! The `fnhost` command: a thin consumer of fnhost-core and fnhost-deploy.
//!
//! Data goes to stdout (text for people, the global `--json` for
//! programs), messages to stderr (see docs/cli.md, "Output"). Exit codes: 0
//! success, 1 the command ran and found a failure (an invalid app, a failed
//! deployment), 2 a usage or environment error.

mod cd;
mod cluster;
mod deploy;
mod ftp;
mod invoke;
mod keys;
mod kube;
mod list;
mod log;
mod manage;
mod portal;
mod scaffold;
mod serve;
mod validate;
mod workers;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit code: the command ran and found a failure.
const EXIT_FAILURE: u8 = 1;
/// Exit code: usage or environment error.
const EXIT_USAGE: u8 = 2;

/// Run and deploy Azure Functions apps on your own machines.
#[derive(Debug, Parser)]
#[command(name = "fnhost", version, about, propagate_version = true)]
struct Cli {
    /// The home folder of apps and deployments.
    #[arg(
        long,
        global = true,
        env = "FNHOST_HOME",
        default_value = "./.fnhost",
        value_name = "DIR"
    )]
    home: PathBuf,
    #[command(flatten)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

/// How a command prints: the options every command takes.
#[derive(Debug, Clone, Copy, clap::Args)]
pub(crate) struct Output {
    /// Print the command's data as JSON (one document on stdout; servers
    /// print their address as one JSON line) instead of text.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// How log lines are written on stderr: `text` (`fnhost: LINE`) or
    /// `json` (one object a line, with the deployment's or invocation's
    /// span).
    #[arg(
        long,
        global = true,
        value_enum,
        default_value_t,
        value_name = "FORMAT"
    )]
    pub(crate) log_format: log::LogFormat,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check an app as the host reads it and report every problem.
    Validate(validate::Args),
    /// List the functions of an app with their triggers, routes and schedules.
    List(list::Args),
    /// Create a new app (host.json, local.settings.json, .funcignore).
    Init(scaffold::InitArgs),
    /// Add a function to an app from a template.
    New(scaffold::NewArgs),
    /// Serve the app's HTTP triggers, timers and admin API.
    Serve(serve::Args),
    /// Run one function once, without a server, and print its result.
    Invoke(invoke::Args),
    /// List or rotate the app's keys.
    Keys(keys::Args),
    #[command(flatten)]
    Deploy(deploy::Command),
    /// Serve the management endpoint (Kudu's publishing API) for every app
    /// of the home.
    Manage(manage::Args),
    #[command(flatten)]
    Cd(cd::Command),
    /// Kubernetes: manifests for an app (KEDA scaling, timers in one
    /// replica, content fetched by digest or baked into an image).
    #[command(subcommand)]
    Kube(kube::Command),
    /// The management portal's accounts.
    #[command(subcommand)]
    Portal(portal::Command),
    /// Install or list the language workers that run Azure's Node.js and
    /// Python programming models; list, drain or invite cluster workers.
    #[command(subcommand)]
    Workers(workers::Command),
    /// Run as a cluster worker: join a manager, run the app instances it
    /// assigns (pulls work: fine behind NAT).
    Worker(cluster::WorkerArgs),
    /// Route requests by host name ({app}.{domain}, {app}-{slot}.{domain})
    /// to the cluster's ready instances.
    Gateway(cluster::GatewayArgs),
    /// Fetch an app's active content from a manager by digest into a
    /// folder (sha256 checked), e.g. in a Kubernetes init container.
    Fetch(cluster::FetchArgs),
}

/// What a command ends with: an exit code, or an error message for stderr.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The command ran and found a failure; it said so already.
    Failed,
    /// A usage or environment problem, with its message.
    Usage(String),
    /// A failure with a message.
    Message(String),
}

pub(crate) type CmdResult = Result<(), Failure>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let out = cli.output;
    log::install(out.log_format);
    let result = match cli.command {
        Command::Validate(args) => validate::run(args, out),
        Command::List(args) => list::run(args, out),
        Command::Init(args) => scaffold::init(args),
        Command::New(args) => scaffold::new(args),
        Command::Serve(args) => serve::run(args, &cli.home, out),
        Command::Invoke(args) => invoke::run(args, out),
        Command::Keys(args) => keys::run(args, &cli.home, out),
        Command::Deploy(command) => deploy::run(command, &cli.home, out),
        Command::Manage(args) => manage::run(args, &cli.home, out),
        Command::Cd(command) => cd::run(command, &cli.home, out),
        Command::Kube(command) => kube::run(command, &cli.home),
        Command::Workers(command) => workers::run(command, &cli.home, out),
        Command::Worker(args) => cluster::worker(args, &cli.home),
        Command::Gateway(args) => cluster::gateway(args),
        Command::Fetch(args) => cluster::fetch(args),
        Command::Portal(command) => portal::run(command, &cli.home),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Failed) => ExitCode::from(EXIT_FAILURE),
        Err(Failure::Message(m)) => {
            eprintln!("fnhost: error: {m}");
            ExitCode::from(EXIT_FAILURE)
        }
        Err(Failure::Usage(m)) => {
            eprintln!("fnhost: error: {m}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// The app folder argument, `.` when omitted.
pub(crate) fn app_dir(dir: Option<PathBuf>) -> PathBuf {
    dir.unwrap_or_else(|| PathBuf::from("."))
}

/// Loads an app, mapping "no such folder" to a usage error.
pub(crate) fn load_app(dir: &std::path::Path) -> Result<fnhost_core::FunctionApp, Failure> {
    fnhost_core::FunctionApp::load(dir).map_err(|e| Failure::Usage(e.to_string()))
}

/// Prints a server's ready line on stdout, flushed: `listening on URL`,
/// or with `--json` one line `{"listening": URL, ...more}`.
pub(crate) fn print_listening(
    out: Output,
    url: &str,
    more: serde_json::Map<String, serde_json::Value>,
) {
    use std::io::Write;
    if out.json {
        let mut line = serde_json::Map::new();
        line.insert("listening".into(), url.into());
        line.extend(more);
        println!("{}", serde_json::Value::Object(line));
    } else {
        println!("listening on {url}");
    }
    let _ = std::io::stdout().flush();
}

/// Prints JSON to stdout.
pub(crate) fn print_json(value: &impl serde::Serialize) -> CmdResult {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Failure::Message(format!("cannot write JSON: {e}")))?;
    println!("{text}");
    Ok(())
}
