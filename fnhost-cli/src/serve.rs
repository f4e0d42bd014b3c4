//! `fnhost serve`: the HTTP front, the timers and the queue triggers of an
//! app.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fnhost_core::http::{HttpFront, Limits};
use fnhost_core::invoke::Middleware;
use fnhost_core::keys::KeyStore;
use fnhost_core::timer::{LogSink, TimerScheduler};
use fnhost_core::{FunctionApp, Host};
use fnhost_deploy::hot::{EventSink, HotSwap, HotSwapEvent};
use fnhost_deploy::{PRODUCTION, Site};

use crate::keys::{SecretsArg, open_store, open_store_at};
use crate::log::log_line;
use crate::{CmdResult, Failure, Output, app_dir, load_app};

/// Arguments of `fnhost serve`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The app folder (default: the current folder). Not with --app.
    #[arg(conflicts_with = "app")]
    app_dir: Option<PathBuf>,
    /// Serve the active deployment of this app of the home folder, and
    /// switch to each newly activated one (deployment, rollback, swap)
    /// without dropping a request.
    #[arg(long, value_name = "NAME")]
    app: Option<String>,
    /// With --app: the slot to serve (default: production).
    #[arg(long, value_name = "SLOT", requires = "app")]
    slot: Option<String>,
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
/// line); the queue, blob and RabbitMQ bindings for every function.
///
/// The custom handler's and the language worker's output lines go to the
/// log channel as they are (`crate::log::raw_line`), so that
/// `--log-format json` writes them as JSON too.
pub(crate) fn build_host(app: FunctionApp) -> Host {
    build_host_with(app, None)
}

/// [`build_host`] with a middleware outermost (`serve --app`: the
/// invocation recorder).
fn build_host_with(app: FunctionApp, first: Option<Arc<dyn Middleware>>) -> Host {
    use fnhost_core::exec::{
        CustomHandlerFactory, CustomHandlerOptions, HandlerStream, LogSink as HandlerLog,
        ProcessExecutorFactory,
    };
    let handler = HandlerLog::new(|stream, line| match stream {
        HandlerStream::Stdout => crate::log::raw_line(&format!("[custom handler] {line}")),
        HandlerStream::Stderr => crate::log::raw_line(&format!("[custom handler stderr] {line}")),
    });
    let worker: LogSink = Arc::new(|line: &str| crate::log::raw_line(line));
    let mut builder = Host::builder();
    if let Some(m) = first {
        builder = builder.middleware(m);
    }
    // The order of `with_default_executors`.
    builder
        .factory(Arc::new(CustomHandlerFactory::with_options(
            CustomHandlerOptions::default().with_log_sink(handler),
        )))
        .factory(Arc::new(
            fnhost_core::worker::LanguageWorkerFactory::new().with_log(worker),
        ))
        .factory(Arc::new(ProcessExecutorFactory::new()))
        .middleware(Arc::new(fnhost_triggers::StorageBindings::new()))
        .build(app)
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

pub(crate) fn run(args: Args, home: &Path, out: Output) -> CmdResult {
    // With --app: the slot's watcher and the deployment served first.
    let (app, follow, app_secrets, recorder) = match &args.app {
        Some(name) => {
            let slot = args.slot.clone().unwrap_or_else(|| PRODUCTION.to_string());
            let site = Site::open(home).map_err(|e| Failure::Usage(e.to_string()))?;
            let secrets = site
                .secrets_path(name, &slot)
                .map_err(|e| Failure::Usage(e.to_string()))?;
            // Each invocation's record, for the portal's Monitor.
            let recorder = site
                .invocation_log(name, &slot)
                .and_then(|log| log.recorder())
                .map_err(|e| Failure::Usage(e.to_string()))?;
            let recorder: Arc<dyn Middleware> = Arc::new(recorder);
            let hot = HotSwap::new(site, name.clone(), slot);
            let (active, app) = hot
                .load_active()
                .map_err(|e| Failure::Usage(e.to_string()))?;
            (app, Some((hot, active)), Some(secrets), Some(recorder))
        }
        None => {
            let dir = app_dir(args.app_dir.clone());
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
            (app, None, None, None)
        }
    };
    let (zone, warning) = fnhost_core::timer::zone_from_env().map_err(Failure::Usage)?;
    if let Some(w) = warning {
        log_line!(warn, "warning: {w}");
    }
    let keys = match (&args.secrets.secrets, app_secrets) {
        (None, Some(path)) => open_store_at(&app, path)?,
        _ => open_store(&app, &args.secrets)?,
    };
    let addr = SocketAddr::new(args.host, args.port);
    let app_name = args.app.clone();
    let runtime = runtime()?;
    runtime.block_on(async move {
        let host = Arc::new(build_host_with(app, recorder));
        let log: LogSink = crate::log::sink();
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
        // Functions a language worker indexed at start get their keys too.
        let names = host.current();
        if let Err(e) =
            keys.ensure_function_keys(names.app().functions().iter().map(|f| f.name.as_str()))
        {
            log_line!(warn, "warning: cannot create the functions' keys: {e}");
        }
        drop(names);
        let functions = if out.json {
            let now = chrono::Utc::now();
            let current = host.current();
            let app = current.app();
            let list = app
                .functions()
                .iter()
                .map(|f| crate::list::FunctionView::of(f, app, now))
                .map(|v| serde_json::to_value(v).unwrap_or_default())
                .collect();
            warn_unserved(&host);
            serde_json::Map::from_iter([("functions".to_owned(), serde_json::Value::Array(list))])
        } else {
            print_functions(&host, local, zone);
            serde_json::Map::new()
        };
        if let Some(path) = keys.path() {
            log_line!(
                "keys are in {} (`fnhost keys list` prints them)",
                path.display()
            );
        }
        let watcher = follow.map(|(hot, active)| {
            log_line!(
                "serving deployment {} (generation {}); following its slot",
                active.deployment,
                active.generation
            );
            let keys = keys.clone();
            let events: EventSink = Arc::new(move |e: &HotSwapEvent<'_>| report(e, &keys));
            hot.with_events(events)
                .with_drain_deadline(SHUTDOWN_DEADLINE)
                .start(host.clone(), &active)
        });
        // The ready line on stdout, as `fnhost manage` prints it.
        crate::print_listening(out, &format!("http://{local}"), functions);
        log_line!("press Ctrl-C to stop");
        let timers = TimerScheduler::new(host.clone())
            .with_zone(zone)
            .with_log(log.clone())
            .start();
        // Queue and blob triggers: prints "listening to queue NAME for
        // FUNCTION" (or "blob container NAME"). A deployed app keeps its
        // blob receipts under its name, across deployments.
        let mut listeners = fnhost_triggers::Listeners::new(host.clone()).with_log(log.clone());
        if let Some(name) = &app_name {
            listeners = listeners.with_host_id(name.clone());
        }
        if let Some(d) = seconds_from_env("FNHOST_QUEUE_VISIBILITY")? {
            listeners = listeners.with_message_visibility(d);
        }
        if let Some(d) = seconds_from_env("FNHOST_BLOB_SCAN_INTERVAL")? {
            listeners = listeners.with_blob_scan_interval(d);
        }
        let listeners = listeners.start();
        let stopped = server.serve(fnhost_core::http::shutdown_signal()).await;
        log_line!("stopping");
        let (timers_done, listeners_done) = tokio::join!(
            timers.stop(SHUTDOWN_DEADLINE),
            listeners.stop(SHUTDOWN_DEADLINE)
        );
        if let Some(w) = watcher {
            w.stop().await;
        }
        host.shutdown().await;
        if !stopped.drained || !timers_done || !listeners_done {
            log_line!(
                warn,
                "warning: {} connection(s) cancelled at the shutdown deadline",
                stopped.cancelled
            );
        }
        log_line!("stopped");
        Ok(())
    })
}

/// A duration in seconds (fractions allowed) from an environment variable:
/// `FNHOST_QUEUE_VISIBILITY` (how long a received queue message stays
/// hidden, ten minutes by default: how soon a crashed run's message comes
/// back) and `FNHOST_BLOB_SCAN_INTERVAL` (ten seconds by default).
fn seconds_from_env(name: &str) -> Result<Option<Duration>, Failure> {
    let Ok(text) = std::env::var(name) else {
        return Ok(None);
    };
    match text.trim().parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 => Ok(Some(Duration::from_secs_f64(s))),
        _ => Err(Failure::Usage(format!(
            "{name} is '{text}': give a number of seconds, such as 30 or 0.5"
        ))),
    }
}

/// Logs what the hot swap does; gives new functions their keys.
fn report(event: &HotSwapEvent<'_>, keys: &KeyStore) {
    match event {
        HotSwapEvent::Swapped {
            active,
            version,
            elapsed,
        } => {
            let names = version.app().functions().iter().map(|f| f.name.as_str());
            if let Err(e) = keys.ensure_function_keys(names) {
                log_line!(warn, "warning: cannot create the new functions' keys: {e}");
            }
            log_line!(
                "now serving deployment {} (generation {}), loaded and started in {} ms",
                active.deployment,
                active.generation,
                elapsed.as_millis()
            );
        }
        HotSwapEvent::Retired {
            root,
            drained,
            elapsed,
        } => {
            let how = if *drained {
                "after its invocations finished"
            } else {
                "at the drain deadline, invocations still running"
            };
            log_line!(
                "stopped the previous version ({}) {how}, {} ms after the switch",
                root.display(),
                elapsed.as_millis()
            );
        }
        HotSwapEvent::Failed { active, reason } => log_line!(
            error,
            "error: cannot serve deployment {} (generation {}); the previous one goes on: {reason}",
            active.deployment,
            active.generation
        ),
        HotSwapEvent::PollFailed { reason } => {
            log_line!(warn, "warning: cannot read the active deployment: {reason}")
        }
        _ => {}
    }
}

fn print_functions(host: &Host, addr: SocketAddr, zone: impl std::fmt::Display) {
    let version = host.current();
    let shown = match addr.ip() {
        ip if ip.is_unspecified() => SocketAddr::new(IpAddr::from([127, 0, 0, 1]), addr.port()),
        _ => addr,
    };
    println!("Functions:");
    for f in version.app().functions() {
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
    }
    warn_unserved(host);
}

/// Warns about functions no executor runs.
fn warn_unserved(host: &Host) {
    let version = host.current();
    for (i, f) in version.app().functions().iter().enumerate() {
        if version.executor(i).is_none() {
            log_line!(
                warn,
                "warning: no executor runs '{}': its invocations fail",
                f.name
            );
        }
    }
}
