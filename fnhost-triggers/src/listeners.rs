//! [`Listeners`]: starts and stops the trigger listeners of a host's
//! current app version as versions come and go.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use fnhost_core::FunctionApp;
use fnhost_core::app::Function;
use fnhost_core::invoke::{AppVersion, FunctionHandle, Host};
use fnhost_core::task::StoppableTask;
use fnhost_core::timer::LogSink;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::blob::{BlobListener, BlobSpec, DEFAULT_SCAN_INTERVAL, host_id};
use crate::queue::{DEFAULT_MESSAGE_VISIBILITY, QueueListener, QueueSpec};
use crate::rabbitmq::{RabbitListener, RabbitSpec};

/// How often the current app version is looked at for listeners to start.
const RESCAN: Duration = Duration::from_millis(500);

/// Runs a listener for each queueTrigger function of a [`Host`]'s current
/// app version.
///
/// The current version is looked at again every half second: a listener
/// starts for each new (or changed) queueTrigger function, and a listener
/// whose function is gone, disabled or changed stops by itself, after its
/// invocations in flight. A message is received by one listener and stays
/// hidden while it runs, so it never runs in two app versions at once.
///
/// ```no_run
/// # async fn demo(host: std::sync::Arc<fnhost_core::Host>) {
/// use std::time::Duration;
/// let log = std::sync::Arc::new(|line: &str| eprintln!("fnhost: {line}"));
/// let handle = fnhost_triggers::Listeners::new(host).with_log(log).start();
/// // ... serve ...
/// handle.stop(Duration::from_secs(30)).await;
/// # }
/// ```
pub struct Listeners {
    host: Arc<Host>,
    log: LogSink,
    visibility: Duration,
    scan_interval: Duration,
    host_id: Option<String>,
}

/// What one listener listens to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenerSpec {
    /// A queueTrigger function's queue.
    Queue(QueueSpec),
    /// A blobTrigger function's container.
    Blob(BlobSpec),
    /// A rabbitMQTrigger function's queue.
    RabbitMq(RabbitSpec),
}

impl ListenerSpec {
    /// `queue NAME` or `blob container NAME`.
    pub fn source(&self) -> String {
        match self {
            ListenerSpec::Queue(q) => format!("queue {}", q.queue),
            ListenerSpec::Blob(b) => format!("blob container {}", b.pattern.container),
            ListenerSpec::RabbitMq(r) => format!("rabbitMQ queue {}", r.queue),
        }
    }

    /// The name of the app setting its connection comes from (`None` for
    /// RabbitMQ, whose URI may come from host.json).
    pub fn setting(&self) -> Option<&str> {
        match self {
            ListenerSpec::Queue(q) => Some(&q.setting),
            ListenerSpec::Blob(b) => Some(&b.setting),
            ListenerSpec::RabbitMq(_) => None,
        }
    }

    /// The listener of `function` of `app`: `None` when its trigger has
    /// none (HTTP, timers...), `Some(Err(why))` when it cannot listen.
    pub fn of(function: &Function, app: &FunctionApp) -> Option<Result<ListenerSpec, String>> {
        QueueSpec::of(function, app)
            .map(|s| s.map(ListenerSpec::Queue))
            .or_else(|| BlobSpec::of(function, app).map(|s| s.map(ListenerSpec::Blob)))
            .or_else(|| RabbitSpec::of(function, app).map(|s| s.map(ListenerSpec::RabbitMq)))
    }

    /// The function it runs.
    pub fn function(&self) -> &str {
        match self {
            ListenerSpec::Queue(q) => &q.function,
            ListenerSpec::Blob(b) => &b.function,
            ListenerSpec::RabbitMq(r) => &r.function,
        }
    }
}

impl std::fmt::Debug for Listeners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listeners")
            .field("visibility", &self.visibility)
            .finish_non_exhaustive()
    }
}

impl Listeners {
    /// Listeners for `host`'s functions (started with [`Listeners::start`]).
    pub fn new(host: Arc<Host>) -> Listeners {
        Listeners {
            host,
            log: fnhost_core::timer::tracing_log(),
            visibility: DEFAULT_MESSAGE_VISIBILITY,
            scan_interval: DEFAULT_SCAN_INTERVAL,
            host_id: None,
        }
    }

    /// How often blob trigger containers are listed: ten seconds by
    /// default, as the host (tests shorten it).
    pub fn with_blob_scan_interval(mut self, interval: Duration) -> Listeners {
        self.scan_interval = interval;
        self
    }

    /// The host id blob receipts are kept under, when the app settings do
    /// not name one (`AzureFunctionsWebHost__hostid`, `WEBSITE_SITE_NAME`);
    /// by default the app folder's name. `serve --app` gives the app's
    /// name, so receipts outlive deployments.
    pub fn with_host_id(mut self, id: impl Into<String>) -> Listeners {
        self.host_id = Some(id.into());
        self
    }

    /// Sends log lines (listeners started and stopped, failed messages,
    /// poison messages, an unreachable queue service) to `log`. Lines
    /// come without a prefix.
    /// Default: [`tracing_log`](fnhost_core::timer::tracing_log), each
    /// line a `tracing` event.
    pub fn with_log(mut self, log: LogSink) -> Listeners {
        self.log = log;
        self
    }

    /// How long a received message stays hidden, renewed at half of it
    /// while its function runs: ten minutes by default, as the host (at
    /// least one second; tests shorten it).
    pub fn with_message_visibility(mut self, visibility: Duration) -> Listeners {
        self.visibility = visibility;
        self
    }

    /// The queueTrigger functions of `version`, each with its spec or why
    /// it cannot listen. Disabled functions are left out.
    pub fn queue_functions(version: &AppVersion) -> Vec<(String, Result<QueueSpec, String>)> {
        let app = version.app();
        app.functions()
            .iter()
            .filter(|f| !f.disabled)
            .filter_map(|f| QueueSpec::of(f, app).map(|s| (f.name.clone(), s)))
            .collect()
    }

    /// The trigger functions of `version` that get a listener (queue and
    /// blob triggers), each with its spec or why it cannot listen.
    /// Disabled functions are left out.
    pub fn trigger_functions(version: &AppVersion) -> Vec<(String, Result<ListenerSpec, String>)> {
        let app = version.app();
        app.functions()
            .iter()
            .filter(|f| !f.disabled)
            .filter_map(|f| Some((f.name.clone(), ListenerSpec::of(f, app)?)))
            .collect()
    }

    fn start_one(
        &self,
        spec: &ListenerSpec,
        stop: watch::Receiver<bool>,
        tasks: &mut JoinSet<()>,
    ) -> Result<tokio::task::AbortHandle, String> {
        Ok(match spec {
            ListenerSpec::Queue(q) => {
                let listener = QueueListener::new(
                    self.host.clone(),
                    q.clone(),
                    self.visibility,
                    self.log.clone(),
                )
                .map_err(|e| e.to_string())?;
                tasks.spawn(listener.run(stop))
            }
            ListenerSpec::Blob(b) => {
                let version = self.host.current();
                let fallback = match &self.host_id {
                    Some(id) => id.clone(),
                    None => version
                        .app()
                        .root()
                        .canonicalize()
                        .ok()
                        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                        .unwrap_or_default(),
                };
                let id = host_id(version.app().settings(), &fallback);
                drop(version);
                let listener = BlobListener::new(
                    self.host.clone(),
                    b.clone(),
                    id,
                    self.scan_interval,
                    self.log.clone(),
                )
                .map_err(|e| e.to_string())?;
                tasks.spawn(listener.run(stop))
            }
            ListenerSpec::RabbitMq(r) => {
                let listener = RabbitListener::new(self.host.clone(), r.clone(), self.log.clone());
                tasks.spawn(listener.run(stop))
            }
        })
    }

    /// Starts on the current Tokio runtime.
    pub fn start(self) -> ListenersHandle {
        ListenersHandle(StoppableTask::spawn(|stop| self.supervise(stop)))
    }

    async fn supervise(self, mut stop: watch::Receiver<bool>) {
        let mut tasks: JoinSet<()> = JoinSet::new();
        // Function (lower-cased) -> the spec its listener runs.
        let mut running: HashMap<String, (ListenerSpec, tokio::task::AbortHandle)> = HashMap::new();
        // Function (lower-cased) -> the reason last logged for not listening.
        let mut refused: HashMap<String, String> = HashMap::new();
        loop {
            // Listeners that stopped by themselves.
            while tasks.try_join_next().is_some() {}
            running.retain(|_, (spec, task)| {
                if task.is_finished() {
                    (self.log)(&format!(
                        "stopped listening to {} for {}",
                        spec.source(),
                        spec.function()
                    ));
                    false
                } else {
                    true
                }
            });
            let version = self.host.current();
            let wanted = Self::trigger_functions(&version);
            drop(version);
            let mut seen = Vec::with_capacity(wanted.len());
            for (name, spec) in wanted {
                let key = name.to_ascii_lowercase();
                seen.push(key.clone());
                let spec = match spec {
                    Ok(s) => s,
                    Err(reason) => {
                        if refused.get(&key) != Some(&reason) {
                            (self.log)(&format!("error: function {name} cannot listen: {reason}"));
                            refused.insert(key, reason);
                        }
                        continue;
                    }
                };
                if running.get(&key).is_some_and(|(s, _)| *s == spec) {
                    continue;
                }
                // A changed spec: the old listener stops by itself at its
                // next poll, its messages in flight still hidden.
                match self.start_one(&spec, stop.clone(), &mut tasks) {
                    Ok(task) => {
                        refused.remove(&key);
                        (self.log)(&format!(
                            "listening to {} for {}",
                            spec.source(),
                            spec.function()
                        ));
                        running.insert(key, (spec, task));
                    }
                    Err(reason) => {
                        if refused.get(&key) != Some(&reason) {
                            (self.log)(&format!(
                                "error: function {name} cannot listen to {}: {reason}",
                                spec.source()
                            ));
                            refused.insert(key, reason);
                        }
                    }
                }
            }
            refused.retain(|k, _| seen.contains(k));
            tokio::select! {
                _ = tokio::time::sleep(RESCAN) => {}
                _ = stop.changed() => break,
            }
        }
        // Each listener saw the same stop signal; wait for their
        // invocations in flight (the handle bounds the wait).
        while tasks.join_next().await.is_some() {}
    }
}

/// Running [`Listeners`].
#[derive(Debug)]
pub struct ListenersHandle(StoppableTask<()>);

impl ListenersHandle {
    /// Stops polling, and waits up to `deadline` for the invocations in
    /// flight to finish (and their messages to be deleted or released).
    /// Invocations still running then are cancelled; their messages come
    /// back when their visibility ends. Returns whether all finished.
    pub async fn stop(self, deadline: Duration) -> bool {
        self.0.stop(deadline).await
    }
}

/// What a polling listener's loop needs of its context.
pub(crate) trait ListenerCtx {
    /// The function's handle in the current app version, while it is
    /// enabled and still has the listener's spec.
    fn current_handle(&self) -> Option<FunctionHandle>;

    /// Logs a line about the listener.
    fn log(&self, line: &str);
}

/// The start of a listener's round: reaps the runs that ended and gives
/// the function's handle, or `None` when the listener stops (asked to, or
/// the function is gone or changed in the current app version, which is
/// logged).
pub(crate) fn next_round(
    stop: &watch::Receiver<bool>,
    tasks: &mut JoinSet<()>,
    ctx: &impl ListenerCtx,
) -> Option<FunctionHandle> {
    if *stop.borrow() {
        return None;
    }
    while tasks.try_join_next().is_some() {}
    let handle = ctx.current_handle();
    if handle.is_none() {
        ctx.log("the function is gone or changed in the current app version: stopping");
    }
    handle
}

/// A listener's failed calls to its service in a row, logged without
/// flooding: the first failure, a new kind of failure and every hundredth
/// are logged, and so is the first success after them.
#[derive(Debug, Default)]
pub(crate) struct Failures {
    last: Option<String>,
    count: u64,
}

impl Failures {
    /// A call failed for `reason`; whether to log it.
    pub(crate) fn failed(&mut self, reason: String) -> bool {
        self.count += 1;
        let log = self.last.as_deref() != Some(reason.as_str()) || self.count.is_multiple_of(100);
        self.last = Some(reason);
        log
    }

    /// A call succeeded: after failures, how many there were and the last
    /// reason (to log).
    pub(crate) fn succeeded(&mut self) -> Option<(u64, String)> {
        let reason = self.last.take()?;
        Some((std::mem::take(&mut self.count), reason))
    }
}

/// Locks `m`, also after a panic while it was held: what the listeners
/// keep there stays usable.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The handle of `function` in `host`'s current app version, when it is
/// enabled and `spec_of` still gives it `spec` (a listener stops when this
/// is `None`).
pub(crate) fn current_handle<S: PartialEq>(
    host: &Host,
    function: &str,
    spec: &S,
    spec_of: impl Fn(&Function, &FunctionApp) -> Option<Result<S, String>>,
) -> Option<FunctionHandle> {
    let version = host.current();
    let app = version.app();
    let index = app.function_index(function)?;
    let f = &app.functions()[index];
    if f.disabled {
        return None;
    }
    match spec_of(f, app) {
        Some(Ok(s)) if s == *spec => Host::handle(version, index),
        _ => None,
    }
}
