//! `fnhost serve`: the HTTP front and the timers of an app.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use fnhost_core::http::{HttpFront, Limits};
use fnhost_core::timer::{LogSink, TimerScheduler};
use fnhost_core::{FunctionApp, Host};

use crate::keys::{SecretsArg, open_store};
use crate::{CmdResult, Failure, app_dir, load_app};

/// Arguments of `fnhost serve`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The app folder (default: the current folder).
    app_dir: Option<PathBuf>,
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1", value_name = "ADDR")]
    host: IpAddr,
    /// The port to listen on (0: any free port).
    #[arg(long, default_value_t = 7071)]
    port: u16,
    #[command(flatten)]
    secrets: SecretsArg,
}

/// The host `serve` and `invoke` run an app with: the custom handler
/// when host.json configures one, else the one-shot process executor for
/// each function's script (native functions cannot come from the command
/// line).
pub(crate) fn build_host(app: FunctionApp) -> Host {
    Host::builder().with_default_executors().build(app)
}

/// The Tokio runtime of the commands that run functions.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Usage(format!("cannot start the async runtime: {e}")))
}

/// How long shutdown waits for invocations in flight.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(30);

pub(crate) fn run(args: Args) -> CmdResult {
    let dir = app_dir(args.app_dir);
    let app = load_app(&dir)?;
    if !app.is_valid() {
        for d in app.diagnostics().iter() {
            eprintln!("{d}");
        }
        return Err(Failure::Usage(format!(
            "the app in {} has {} error(s); fix them first (`fnhost validate {}`)",
            dir.display(),
            app.diagnostics().error_count(),
            dir.display()
        )));
    }
    let (zone, warning) = fnhost_core::timer::zone_from_env().map_err(Failure::Usage)?;
    if let Some(w) = warning {
        eprintln!("fnhost: warning: {w}");
    }
    let keys = open_store(&app, &args.secrets)?;
    let addr = SocketAddr::new(args.host, args.port);
    let runtime = runtime()?;
    runtime.block_on(async move {
        let host = Arc::new(build_host(app));
        let log: LogSink = Arc::new(|line: &str| eprintln!("fnhost: {line}"));
        let server = HttpFront::new(host.clone())
            .with_keys(keys.clone())
            .with_limits(Limits::default().with_shutdown_timeout(SHUTDOWN_DEADLINE))
            .with_log(log.clone())
            .bind(addr)
            .await
            .map_err(|e| Failure::Usage(format!("cannot listen on {addr}: {e}")))?;
        host.start()
            .await
            .map_err(|e| Failure::Message(format!("the executors could not start: {e}")))?;
        let local = server.local_addr();
        print_functions(&host, local, zone);
        if let Some(path) = keys.path() {
            eprintln!(
                "fnhost: keys are in {} (`fnhost keys list` prints them)",
                path.display()
            );
        }
        eprintln!("fnhost: listening on http://{local} (Ctrl-C to stop)");
        let timers = TimerScheduler::new(host.clone())
            .with_zone(zone)
            .with_log(log.clone())
            .start();
        let stopped = server.serve(fnhost_core::http::shutdown_signal()).await;
        eprintln!("fnhost: stopping");
        let timers_done = timers.stop(SHUTDOWN_DEADLINE).await;
        host.shutdown().await;
        if !stopped.drained || !timers_done {
            eprintln!(
                "fnhost: warning: {} connection(s) cancelled at the shutdown deadline",
                stopped.cancelled
            );
        }
        eprintln!("fnhost: stopped");
        Ok(())
    })
}

fn print_functions(host: &Host, addr: SocketAddr, zone: impl std::fmt::Display) {
    let version = host.current();
    let shown = match addr.ip() {
        ip if ip.is_unspecified() => SocketAddr::new(IpAddr::from([127, 0, 0, 1]), addr.port()),
        _ => addr,
    };
    println!("Functions:");
    for (i, f) in version.app().functions().iter().enumerate() {
        let disabled = if f.disabled { " (disabled)" } else { "" };
        if let Some(h) = &f.http {
            let methods = if h.methods.is_all() {
                "ALL".to_owned()
            } else {
                h.methods
                    .iter()
                    .map(|m| m.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            };
            println!(
                "    {}: [{methods}] http://{shown}{} (auth: {}){disabled}",
                f.name,
                h.path(),
                h.auth_level
            );
        } else if let Some(t) = &f.timer {
            println!(
                "    {}: timerTrigger, schedule {} ({zone}){disabled}",
                f.name, t.resolved
            );
        } else {
            println!("    {}: {}{disabled}", f.name, f.trigger_type());
        }
        if version.executor(i).is_none() {
            eprintln!(
                "fnhost: warning: no executor runs '{}': its invocations fail",
                f.name
            );
        }
    }
}
