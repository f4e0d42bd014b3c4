//! Language workers: Azure's own programming models (Node.js v3/v4, Python
//! v1/v2, and any other worker that speaks the protocol) run through the
//! language worker protocol, FunctionRpc.
//!
//! fnhost is the gRPC server, on a free loopback port; each worker process
//! dials in and opens one bidirectional `EventStream`. The conversation is
//! Azure's host's: `StartStream` from the worker, `WorkerInitRequest`,
//! `FunctionsMetadataRequest` (worker indexing: apps that declare their
//! functions in code), one `FunctionLoadRequest` per function, then
//! `InvocationRequest`/`InvocationResponse` pairs with `RpcLog`s between
//! them; `WorkerTerminate` on shutdown when the worker handles it.
//!
//! Workers are launched as Azure's host launches them, from a
//! `worker.config.json` (see [`WorkerConfig`]), with both families of
//! connection flags, the app root as working folder and the app settings in
//! the environment. A worker that dies is started again with backoff: the
//! invocations it was running fail with an error that says so, and the next
//! ones run on the new process. `FUNCTIONS_WORKER_PROCESS_COUNT` (1 to 10)
//! starts several processes and spreads invocations across them (the least
//! busy first).
//!
//! This file is long (about 1,150 lines) because one worker process's life
//! is one piece: launch, handshake, supervision and invocation share the
//! `Shared` and `Channel` state; the protocol server (`rpc`), the
//! conversions (`convert`) and the worker.config.json reading (`config`)
//! are apart.
//!
//! [`LanguageWorkerFactory`] binds the worker named by the app's
//! `FUNCTIONS_WORKER_RUNTIME` to every function of the app, including the
//! ones it indexes at start (see
//! [`ExecutorFactory::indexing_executor`]).

mod config;
mod convert;
pub mod proto;
mod rpc;
#[cfg(feature = "testkit")]
pub mod testkit;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{mpsc, oneshot, watch};

pub use config::{
    DEFAULT_START_TIMEOUT, WORKER_CONFIG_JSON, WorkerConfig, WorkerConfigError,
    default_workers_dir, find_worker, list_workers,
};

use crate::app::{Function, FunctionApp, IndexedFunction};
use crate::binding::Direction;
use crate::invoke::{
    BoxFuture, Executor, ExecutorError, ExecutorFactory, FunctionInfo, Invocation, InvocationResult,
};
use crate::timer::LogSink;
use convert::Capabilities;
use proto::streaming_message::Content;

/// The host version fnhost reports to workers (the Azure Functions host
/// version whose behaviour it follows).
pub const HOST_VERSION: &str = "4.1037.0";

/// The longest a worker is given to stop after `WorkerTerminate` before it
/// is killed.
pub const TERMINATE_GRACE: Duration = Duration::from_secs(5);

/// The longest wait between two starts of a worker that keeps dying.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The `FUNCTIONS_WORKER_RUNTIME` values that are not language workers.
const NOT_LANGUAGE_WORKERS: [&str; 3] = ["custom", "dotnet", ""];

/// Binds the language worker of each app's `FUNCTIONS_WORKER_RUNTIME` to its
/// functions (apps with a custom handler, or whose runtime is `custom`, are
/// left to other factories).
#[derive(Clone)]
pub struct LanguageWorkerFactory {
    workers_dir: Option<PathBuf>,
    log: LogSink,
    debug_log: Option<LogSink>,
}

impl fmt::Debug for LanguageWorkerFactory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LanguageWorkerFactory")
            .field("workers_dir", &self.workers_dir)
            .finish_non_exhaustive()
    }
}

impl Default for LanguageWorkerFactory {
    fn default() -> Self {
        Self::new()
    }
}

impl LanguageWorkerFactory {
    /// Workers from [`default_workers_dir`]; log lines to stderr.
    pub fn new() -> Self {
        LanguageWorkerFactory {
            workers_dir: None,
            log: Arc::new(|line: &str| eprintln!("{line}")),
            debug_log: None,
        }
    }

    /// Looks for workers in `dir` (one folder per language) instead.
    pub fn with_workers_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.workers_dir = Some(dir.into());
        self
    }

    /// Sends the workers' own output and logs that belong to no invocation
    /// to `log` (invocation logs go with each invocation's result).
    pub fn with_log(mut self, log: LogSink) -> Self {
        self.log = log;
        self
    }

    /// Sends the workers' system logs about invocations (category
    /// `System` below `Warning`, such as Python's "Received
    /// FunctionInvocationRequest") to `log`. Azure's host logs them at
    /// Debug level; without this they are dropped. They never go into an
    /// invocation's own log.
    pub fn with_debug_log(mut self, log: LogSink) -> Self {
        self.debug_log = Some(log);
        self
    }

    fn new_worker(
        &self,
        app: &FunctionApp,
        runtime: String,
        config: Result<WorkerConfig, String>,
    ) -> Arc<dyn Executor> {
        Arc::new(LanguageWorker::new(
            app,
            runtime,
            config,
            self.log.clone(),
            self.debug_log.clone(),
        ))
    }

    fn workers_dir_for(&self, app: &FunctionApp) -> Option<PathBuf> {
        app.settings()
            .get("languageWorkers:workersDirectory")
            .map(PathBuf::from)
            .or_else(|| self.workers_dir.clone())
            .or_else(default_workers_dir)
    }
}

impl ExecutorFactory for LanguageWorkerFactory {
    fn executors(&self, app: &FunctionApp) -> Vec<Option<Arc<dyn Executor>>> {
        vec![None; app.functions().len()]
    }

    fn indexing_executor(&self, app: &FunctionApp) -> Option<Arc<dyn Executor>> {
        if app.host().custom_handler.is_some() || app.host().document.contains_key("customHandler")
        {
            return None;
        }
        let runtime = app
            .settings()
            .get("FUNCTIONS_WORKER_RUNTIME")
            .map(|s| s.trim().to_ascii_lowercase());
        let runtime = match runtime {
            Some(r) if NOT_LANGUAGE_WORKERS.contains(&r.as_str()) => return None,
            Some(r) => r,
            None => {
                // No runtime named: only an app that declares its functions
                // in code needs one, and it cannot run without.
                let source = crate::app::functions_declared_in_code(app.root())?;
                if !app.functions().is_empty() {
                    return None;
                }
                // An executor whose start fails with the reason.
                let reason = Err(format!(
                    "FUNCTIONS_WORKER_RUNTIME is not set, and the app declares its functions in code ({source}): set it to \"node\" or \"python\" in local.settings.json (\"Values\") or in the app settings"
                ));
                return Some(self.new_worker(app, String::new(), reason));
            }
        };
        // An app that is its own worker (a .NET isolated build output)
        // carries its worker.config.json at its root.
        if let Ok(own) = WorkerConfig::read(app.root())
            && own.language.eq_ignore_ascii_case(&runtime)
        {
            return Some(self.new_worker(app, runtime, Ok(own)));
        }
        let dir = self.workers_dir_for(app);
        let config = match dir.as_deref().map(|d| (d, find_worker(d, &runtime))) {
            Some((_, Some(Ok(c)))) => Ok(c),
            Some((_, Some(Err(e)))) => Err(format!("the {runtime} worker is broken: {e}")),
            Some((d, None)) => Err(format!(
                "no language worker for FUNCTIONS_WORKER_RUNTIME '{runtime}' in {}: install fnhost's workers with `fnhost workers install` (node, python), or put a worker folder with a worker.config.json there",
                d.display()
            )),
            None => Err(format!(
                "no workers folder for FUNCTIONS_WORKER_RUNTIME '{runtime}': set FNHOST_WORKERS_DIR or HOME, then run `fnhost workers install`"
            )),
        };
        Some(self.new_worker(app, runtime, config))
    }
}

/// One app's language worker processes: an [`Executor`] for every function
/// of the app.
pub struct LanguageWorker {
    shared: Arc<Shared>,
}

impl fmt::Debug for LanguageWorker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LanguageWorker")
            .field("runtime", &self.shared.runtime)
            .field("app_root", &self.shared.app_root)
            .finish_non_exhaustive()
    }
}

struct Shared {
    runtime: String,
    app_root: PathBuf,
    config: Result<WorkerConfig, String>,
    env: BTreeMap<String, String>,
    declared: Vec<Function>,
    process_count: usize,
    log: LogSink,
    debug_log: Option<LogSink>,
    /// The live processes, by slot.
    slots: Mutex<Vec<Option<Arc<Channel>>>>,
    /// Bumped whenever a slot changes, for invocations waiting for one.
    changed: watch::Sender<u64>,
    /// What the first worker indexed (empty: function.json only).
    indexed: OnceLock<Vec<IndexedFunction>>,
    started: tokio::sync::OnceCell<Result<(), String>>,
    /// Why the last start of a worker process failed, until one starts.
    last_start_error: Mutex<Option<String>>,
    server: Mutex<Option<rpc::RpcServer>>,
    stop: watch::Sender<bool>,
    supervisors: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    stopping: AtomicBool,
    turn: AtomicUsize,
}

/// One running worker process and its stream.
struct Channel {
    slot: usize,
    pid: Option<u32>,
    out: mpsc::Sender<Result<proto::StreamingMessage, tonic::Status>>,
    pending: Mutex<HashMap<String, Pending>>,
    caps: Capabilities,
    in_flight: AtomicUsize,
    /// Lower-case function name to the worker's function id.
    function_ids: HashMap<String, String>,
    /// Functions the worker could not load, by function id.
    load_errors: HashMap<String, String>,
}

struct Pending {
    tx: oneshot::Sender<Result<(proto::InvocationResponse, Vec<String>), String>>,
    logs: Vec<String>,
}

impl LanguageWorker {
    fn new(
        app: &FunctionApp,
        runtime: String,
        config: Result<WorkerConfig, String>,
        log: LogSink,
        debug_log: Option<LogSink>,
    ) -> Self {
        // `languageWorkers:{language}:...` app settings, as Azure's host
        // applies them.
        let config = config.map(|c| c.with_app_settings(app.settings()));
        let mut env: BTreeMap<String, String> = app
            .settings()
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let root = app.root().to_string_lossy().into_owned();
        env.insert("FUNCTIONS_WORKER_RUNTIME".into(), runtime.clone());
        env.insert("FUNCTIONS_APPLICATION_DIRECTORY".into(), root.clone());
        env.entry("AzureWebJobsScriptRoot".into()).or_insert(root);
        if let Ok(c) = &config {
            env.insert(
                "FUNCTIONS_WORKER_DIRECTORY".into(),
                c.dir.to_string_lossy().into_owned(),
            );
        }
        if runtime == "python" {
            env.entry("PYTHON_THREADPOOL_THREAD_COUNT".into())
                .or_insert_with(|| "1000".into());
        }
        let count_setting = app
            .settings()
            .get("FUNCTIONS_WORKER_PROCESS_COUNT")
            .and_then(|v| v.trim().parse::<usize>().ok());
        let process_count = count_setting
            .or_else(|| {
                config
                    .as_ref()
                    .ok()
                    .and_then(|c| c.process_count)
                    .map(|n| n as usize)
            })
            .unwrap_or(1)
            .clamp(1, 10);
        let (stop, _) = watch::channel(false);
        let (changed, _) = watch::channel(0);
        LanguageWorker {
            shared: Arc::new(Shared {
                runtime,
                app_root: app.root().to_path_buf(),
                config,
                env,
                declared: app.functions().to_vec(),
                process_count,
                log,
                debug_log,
                slots: Mutex::new(vec![None; process_count]),
                changed,
                indexed: OnceLock::new(),
                started: tokio::sync::OnceCell::new(),
                last_start_error: Mutex::new(None),
                server: Mutex::new(None),
                stop,
                supervisors: Mutex::new(Vec::new()),
                stopping: AtomicBool::new(false),
                turn: AtomicUsize::new(0),
            }),
        }
    }

    /// How many worker processes run (`FUNCTIONS_WORKER_PROCESS_COUNT`).
    pub fn process_count(&self) -> usize {
        self.shared.process_count
    }

    /// The process ids of the live workers, by slot.
    pub fn pids(&self) -> Vec<Option<u32>> {
        lock(&self.shared.slots)
            .iter()
            .map(|c| c.as_ref().and_then(|c| c.pid))
            .collect()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Executor for LanguageWorker {
    fn invoke<'a>(
        &'a self,
        function: &'a FunctionInfo,
        invocation: Invocation,
    ) -> BoxFuture<'a, Result<InvocationResult, ExecutorError>> {
        Box::pin(self.shared.invoke(function, invocation))
    }

    fn start(&self) -> BoxFuture<'_, Result<(), ExecutorError>> {
        Box::pin(async move {
            let shared = self.shared.clone();
            let outcome = self
                .shared
                .started
                .get_or_init(|| async move { start(shared).await })
                .await;
            outcome.clone().map_err(ExecutorError::unavailable)
        })
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.shared.clone().shutdown())
    }

    fn indexed_functions(&self) -> Vec<IndexedFunction> {
        self.shared.indexed.get().cloned().unwrap_or_default()
    }
}

/// Starts the server and every worker process; the first one's failure is
/// the start's.
async fn start(shared: Arc<Shared>) -> Result<(), String> {
    let config = shared.config.clone()?;
    let server = rpc::RpcServer::start()
        .await
        .map_err(|e| format!("cannot start the worker protocol server on 127.0.0.1: {e}"))?;
    let port = server.port();
    let waiting = server.waiting();
    *lock(&shared.server) = Some(server);
    let mut launches = Vec::with_capacity(shared.process_count);
    for slot in 0..shared.process_count {
        let (shared, config, waiting) = (shared.clone(), config.clone(), waiting.clone());
        launches.push(tokio::spawn(async move {
            let r = launch(&shared, &config, &waiting, port, slot).await;
            (slot, r)
        }));
    }
    let mut first_error = None;
    for launch in launches {
        let Ok((slot, result)) = launch.await else {
            continue;
        };
        let initial = match result {
            Ok(running) => Some(running),
            Err(e) => {
                if slot == 0 {
                    first_error = Some(e.clone());
                } else {
                    (shared.log)(&format!(
                        "{} worker {slot}: did not start: {e}; trying again",
                        shared.runtime
                    ));
                }
                None
            }
        };
        if first_error.is_some() {
            break;
        }
        let task = tokio::spawn(supervise(
            shared.clone(),
            config.clone(),
            waiting.clone(),
            port,
            slot,
            initial,
        ));
        lock(&shared.supervisors).push(task);
    }
    if let Some(e) = first_error {
        shared.clone().shutdown().await;
        return Err(e);
    }
    Ok(())
}

/// A worker process that completed its handshake.
struct Running {
    channel: Arc<Channel>,
    child: tokio::process::Child,
    inbound: tonic::Streaming<proto::StreamingMessage>,
    output: Arc<Mutex<Vec<String>>>,
}

/// Keeps slot `slot` running until shutdown: when its process dies, the
/// invocations it was running fail, and a new one is started after a
/// backoff (1 s, doubling up to 30 s; reset by a process that lived a
/// minute).
async fn supervise(
    shared: Arc<Shared>,
    config: WorkerConfig,
    waiting: rpc::Waiting,
    port: u16,
    slot: usize,
    mut initial: Option<Running>,
) {
    let mut backoff = Duration::from_secs(1);
    let mut stop = shared.stop.subscribe();
    loop {
        let running = match initial.take() {
            Some(r) => Some(r),
            None => match launch(&shared, &config, &waiting, port, slot).await {
                Ok(r) => Some(r),
                Err(e) => {
                    (shared.log)(&format!(
                        "{} worker {slot}: did not start: {e}",
                        shared.runtime
                    ));
                    *lock(&shared.last_start_error) = Some(e);
                    // Invocations waiting for a process answer now.
                    shared.changed.send_modify(|n| *n += 1);
                    None
                }
            },
        };
        if running.is_some() {
            *lock(&shared.last_start_error) = None;
        }
        if let Some(running) = running {
            let since = Instant::now();
            let channel = running.channel.clone();
            set_slot(&shared, slot, Some(channel.clone()));
            let why = run(&shared, running, &mut stop).await;
            set_slot(&shared, slot, None);
            let lost: Vec<Pending> = lock(&channel.pending).drain().map(|(_, p)| p).collect();
            let count = lost.len();
            for p in lost {
                let _ = p.tx.send(Err(format!(
                    "the {} worker process {} {why} while running this invocation",
                    shared.runtime,
                    channel.pid.map(|p| p.to_string()).unwrap_or_default()
                )));
            }
            if shared.stopping.load(Ordering::Acquire) {
                return;
            }
            (shared.log)(&format!(
                "{} worker {slot} (pid {}) {why}; {count} invocation(s) failed; starting it again in {} s",
                shared.runtime,
                channel.pid.map(|p| p.to_string()).unwrap_or_default(),
                backoff.as_secs()
            ));
            if since.elapsed() > Duration::from_secs(60) {
                backoff = Duration::from_secs(1);
            }
        }
        if shared.stopping.load(Ordering::Acquire) {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

fn set_slot(shared: &Shared, slot: usize, channel: Option<Arc<Channel>>) {
    if let Some(s) = lock(&shared.slots).get_mut(slot) {
        *s = channel;
    }
    shared.changed.send_modify(|n| *n += 1);
}

/// Reads the stream of a running worker until it ends, its process exits
/// or the host stops; says what happened.
async fn run(shared: &Shared, running: Running, stop: &mut watch::Receiver<bool>) -> String {
    let Running {
        channel,
        mut child,
        mut inbound,
        output,
    } = running;
    let why = loop {
        let stopped = tokio::select! {
            message = inbound.message() => match message {
                Ok(Some(m)) => {
                    dispatch(shared, &channel, m);
                    false
                }
                Ok(None) => break "closed its stream".to_owned(),
                Err(e) => break format!("broke its stream ({})", e.message()),
            },
            status = child.wait() => {
                break match status {
                    Ok(s) => format!("exited ({s})"),
                    Err(e) => format!("could not be waited for ({e})"),
                };
            }
            _ = stop.wait_for(|s| *s) => true,
        };
        if stopped {
            terminate(shared, &channel, &mut child).await;
            return "stopped".to_owned();
        }
    };
    // The stream ended first: give the process a moment to report how it
    // ended, then make sure it is gone.
    let status = match tokio::time::timeout(Duration::from_millis(500), child.wait()).await {
        Ok(Ok(s)) => Some(s),
        _ => {
            let _ = child.start_kill();
            None
        }
    };
    let tail = lock(&output).join(" | ");
    let mut why = match status {
        Some(s) if !why.starts_with("exited") => format!("{why} and exited ({s})"),
        _ => why,
    };
    if !tail.is_empty() {
        why.push_str(&format!("; its last output: {tail}"));
    }
    why
}

/// Stops a worker: `WorkerTerminate` when it handles it, then a kill after
/// the grace period.
async fn terminate(shared: &Shared, channel: &Channel, child: &mut tokio::process::Child) {
    if channel.caps.terminate {
        let message = proto::StreamingMessage {
            request_id: String::new(),
            content: Some(Content::WorkerTerminate(proto::WorkerTerminate {
                grace_period: Some(prost_types::Duration {
                    seconds: TERMINATE_GRACE.as_secs() as i64,
                    nanos: 0,
                }),
            })),
        };
        if channel.out.send(Ok(message)).await.is_ok()
            && tokio::time::timeout(TERMINATE_GRACE, child.wait())
                .await
                .is_ok()
        {
            return;
        }
    }
    if let Err(e) = child.kill().await {
        (shared.log)(&format!(
            "{} worker {}: cannot stop it: {e}",
            shared.runtime, channel.slot
        ));
    }
}

/// Handles one message from a running worker.
fn dispatch(shared: &Shared, channel: &Channel, message: proto::StreamingMessage) {
    match message.content {
        Some(Content::InvocationResponse(r)) => {
            if let Some(p) = lock(&channel.pending).remove(&r.invocation_id) {
                let _ = p.tx.send(Ok((r, p.logs)));
            }
        }
        Some(Content::RpcLog(log)) => {
            // The workers' own chatter about an invocation ("Function name:
            // hello, Function Type: sync") is the host's debug output on
            // Azure, not the function's log.
            if log.log_category == proto::rpc_log::RpcLogCategory::System as i32
                && !log.invocation_id.is_empty()
                && log.level < proto::rpc_log::Level::Warning as i32
            {
                if let Some(debug) = &shared.debug_log {
                    debug(&format!(
                        "{} worker {}: {}",
                        shared.runtime,
                        channel.slot,
                        log_line(&log)
                    ));
                }
                return;
            }
            let line = log_line(&log);
            let mut pending = lock(&channel.pending);
            match pending.get_mut(&log.invocation_id) {
                Some(p) if !log.invocation_id.is_empty() => p.logs.push(line),
                _ => {
                    drop(pending);
                    (shared.log)(&format!(
                        "{} worker {}: {line}",
                        shared.runtime, channel.slot
                    ));
                }
            }
        }
        _ => {}
    }
}

/// An `RpcLog` as a log line: `[Level] (invocation ID) message`.
fn log_line(log: &proto::RpcLog) -> String {
    let level = proto::rpc_log::Level::try_from(log.level)
        .map(|l| l.as_str_name())
        .unwrap_or("Information");
    let mut line = format!("[{level}]");
    if !log.invocation_id.is_empty() {
        line.push_str(&format!(" (invocation {})", log.invocation_id));
    }
    line.push(' ');
    line.push_str(log.message.trim_end());
    if let Some(e) = &log.exception
        && !e.message.is_empty()
    {
        line.push_str(&format!(": {}", e.message));
    }
    line
}

/// Starts one worker process and takes it through the handshake: stream,
/// init, indexing, function loads.
async fn launch(
    shared: &Arc<Shared>,
    config: &WorkerConfig,
    waiting: &rpc::Waiting,
    port: u16,
    slot: usize,
) -> Result<Running, String> {
    let worker_id = crate::invoke::InvocationId::new().to_string();
    let request_id = crate::invoke::InvocationId::new().to_string();
    let (program, args) = config.command_line(port, &worker_id, &request_id, &shared.env);
    let (connected_tx, connected_rx) = oneshot::channel();
    lock(waiting).insert(worker_id.clone(), connected_tx);
    let mut command = tokio::process::Command::new(&program);
    command
        .args(&args)
        .current_dir(&shared.app_root)
        .envs(&shared.env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    crate::exec::process::die_with_parent(&mut command);
    let mut child = command.spawn().map_err(|e| {
        lock(waiting).remove(&worker_id);
        let hint = if e.kind() == std::io::ErrorKind::NotFound {
            format!(
                ": is `{program}` installed and on PATH? (defaultExecutablePath in {})",
                config.dir.join(WORKER_CONFIG_JSON).display()
            )
        } else {
            String::new()
        };
        format!("cannot start `{program}`: {e}{hint}")
    })?;
    let output = Arc::new(Mutex::new(Vec::new()));
    let prefix = format!("{} worker {slot}", shared.runtime);
    if let Some(out) = child.stdout.take() {
        forward(out, prefix.clone(), shared.log.clone(), output.clone());
    }
    if let Some(err) = child.stderr.take() {
        forward(err, prefix.clone(), shared.log.clone(), output.clone());
    }
    let deadline = Instant::now() + config.start_timeout;
    let fail = |what: String, output: &Arc<Mutex<Vec<String>>>| {
        let tail = lock(output).join(" | ");
        if tail.is_empty() {
            what
        } else {
            format!("{what}; its output: {tail}")
        }
    };
    let connected = tokio::select! {
        c = connected_rx => c.map_err(|_| "the protocol server stopped".to_owned())?,
        status = child.wait() => {
            lock(waiting).remove(&worker_id);
            // Let the output readers catch up.
            tokio::time::sleep(Duration::from_millis(100)).await;
            let status = status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
            return Err(fail(format!("`{program}` exited ({status}) before it connected"), &output));
        }
        _ = tokio::time::sleep_until(deadline.into()) => {
            lock(waiting).remove(&worker_id);
            let _ = child.start_kill();
            return Err(fail(format!(
                "`{program}` did not connect within {} s (initializationTimeout)",
                config.start_timeout.as_secs()
            ), &output));
        }
    };
    let rpc::Connected { mut inbound, out } = connected;
    let mut conversation = Conversation {
        inbound: &mut inbound,
        out: &out,
        shared,
        slot,
        deadline,
    };
    let init = conversation
        .ask(
            Content::WorkerInitRequest(proto::WorkerInitRequest {
                host_version: HOST_VERSION.into(),
                capabilities: HashMap::new(),
                log_categories: HashMap::new(),
                worker_directory: config.dir.to_string_lossy().into_owned(),
                function_app_directory: shared.app_root.to_string_lossy().into_owned(),
            }),
            |c| match c {
                Content::WorkerInitResponse(r) => Some(r),
                _ => None,
            },
        )
        .await
        .map_err(|e| fail(e, &output))?;
    check(init.result.as_ref(), "could not initialise")?;
    let caps = Capabilities::from_map(&init.capabilities);
    let metadata = conversation
        .ask(
            Content::FunctionsMetadataRequest(proto::FunctionsMetadataRequest {
                function_app_directory: shared.app_root.to_string_lossy().into_owned(),
            }),
            |c| match c {
                Content::FunctionMetadataResponse(r) => Some(r),
                _ => None,
            },
        )
        .await
        .map_err(|e| fail(e, &output))?;
    check(metadata.result.as_ref(), "could not index the app")?;
    let loads: Vec<(String, proto::RpcFunctionMetadata)> = if metadata.use_default_metadata_indexing
        || metadata.function_metadata_results.is_empty()
    {
        let _ = shared.indexed.set(Vec::new());
        shared
            .declared
            .iter()
            .map(|f| (f.name.clone(), function_json_metadata(f, &shared.runtime)))
            .collect()
    } else {
        let indexed: Vec<IndexedFunction> = metadata
            .function_metadata_results
            .iter()
            .map(|m| IndexedFunction {
                name: m.name.clone(),
                source: source_file(&shared.app_root, m),
                raw_bindings: m.raw_bindings.clone(),
            })
            .collect();
        let _ = shared.indexed.set(indexed);
        metadata
            .function_metadata_results
            .into_iter()
            .map(|mut m| {
                if m.function_id.is_empty() {
                    m.function_id = m.name.clone();
                }
                (m.name.clone(), m)
            })
            .collect()
    };
    let mut function_ids = HashMap::with_capacity(loads.len());
    let mut expected = HashMap::with_capacity(loads.len());
    for (name, metadata) in loads {
        let function_id = metadata.function_id.clone();
        function_ids.insert(name.to_ascii_lowercase(), function_id.clone());
        expected.insert(function_id.clone(), name);
        conversation
            .send(Content::FunctionLoadRequest(proto::FunctionLoadRequest {
                function_id,
                metadata: Some(metadata),
                managed_dependency_enabled: false,
            }))
            .await?;
    }
    let mut load_errors = HashMap::new();
    while !expected.is_empty() {
        let response = conversation
            .receive(|c| match c {
                Content::FunctionLoadResponse(r) => Some(r),
                _ => None,
            })
            .await
            .map_err(|e| fail(e, &output))?;
        let Some(name) = expected.remove(&response.function_id) else {
            continue;
        };
        if let Err(e) = check(response.result.as_ref(), "could not load it") {
            (shared.log)(&format!(
                "{} worker {slot}: function '{name}': {e}",
                shared.runtime
            ));
            load_errors.insert(response.function_id, e);
        }
    }
    Ok(Running {
        channel: Arc::new(Channel {
            slot,
            pid: child.id(),
            out,
            pending: Mutex::new(HashMap::new()),
            caps,
            in_flight: AtomicUsize::new(0),
            function_ids,
            load_errors,
        }),
        child,
        inbound,
        output,
    })
}

/// The file a worker-indexed function comes from, relative to the app root
/// where it is inside it.
fn source_file(root: &Path, m: &proto::RpcFunctionMetadata) -> String {
    let script = Path::new(&m.script_file);
    let full = if script.is_absolute() {
        script.to_path_buf()
    } else if !m.directory.is_empty() {
        Path::new(&m.directory).join(script)
    } else {
        root.join(script)
    };
    match full.strip_prefix(root) {
        Ok(rel) if !rel.as_os_str().is_empty() => rel.to_string_lossy().into_owned(),
        _ if m.script_file.is_empty() => "(indexed by the worker)".to_owned(),
        _ => full.to_string_lossy().into_owned(),
    }
}

/// The metadata Azure's host sends for a function.json function.
fn function_json_metadata(f: &Function, runtime: &str) -> proto::RpcFunctionMetadata {
    let bindings = f
        .config
        .bindings
        .iter()
        .map(|b| {
            let direction = match b.direction {
                Direction::In => proto::binding_info::Direction::In,
                Direction::Out => proto::binding_info::Direction::Out,
                Direction::InOut => proto::binding_info::Direction::Inout,
            };
            let data_type = match b
                .properties
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("dataType"))
                .and_then(|(_, v)| v.as_str())
                .map(str::to_ascii_lowercase)
                .as_deref()
            {
                Some("string") => proto::binding_info::DataType::String,
                Some("binary") => proto::binding_info::DataType::Binary,
                Some("stream") => proto::binding_info::DataType::Stream,
                _ => proto::binding_info::DataType::Undefined,
            };
            (
                b.name.clone(),
                proto::BindingInfo {
                    r#type: b.type_name.clone(),
                    direction: direction as i32,
                    data_type: data_type as i32,
                    properties: HashMap::new(),
                },
            )
        })
        .collect();
    proto::RpcFunctionMetadata {
        name: f.name.clone(),
        directory: f.dir.to_string_lossy().into_owned(),
        script_file: f
            .script
            .as_ref()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default(),
        entry_point: f.config.entry_point.clone().unwrap_or_default(),
        bindings,
        language: runtime.to_owned(),
        function_id: f.name.clone(),
        ..Default::default()
    }
}

/// `Err` with the worker's message unless `result` is a success.
fn check(result: Option<&proto::StatusResult>, what: &str) -> Result<(), String> {
    match result {
        Some(r) if r.status() == proto::status_result::Status::Success => Ok(()),
        Some(r) => {
            let e = r.exception.clone().unwrap_or_default();
            let mut message = format!("the worker {what}: {}", e.message.trim());
            if !e.stack_trace.is_empty() && e.stack_trace != e.message {
                message.push_str(&format!("\n{}", e.stack_trace.trim_end()));
            }
            Err(message)
        }
        None => Err(format!("the worker {what} (no result in its answer)")),
    }
}

/// The handshake: one request at a time, logs passed on meanwhile.
struct Conversation<'a> {
    inbound: &'a mut tonic::Streaming<proto::StreamingMessage>,
    out: &'a mpsc::Sender<Result<proto::StreamingMessage, tonic::Status>>,
    shared: &'a Shared,
    slot: usize,
    deadline: Instant,
}

impl Conversation<'_> {
    async fn send(&mut self, content: Content) -> Result<(), String> {
        self.out
            .send(Ok(proto::StreamingMessage {
                request_id: String::new(),
                content: Some(content),
            }))
            .await
            .map_err(|_| "the worker's stream closed".to_owned())
    }

    async fn receive<T>(
        &mut self,
        mut want: impl FnMut(Content) -> Option<T>,
    ) -> Result<T, String> {
        loop {
            let next = tokio::time::timeout_at(self.deadline.into(), self.inbound.message());
            let message = match next.await {
                Err(_) => {
                    return Err("the worker did not answer within its initializationTimeout".into());
                }
                Ok(Err(e)) => return Err(format!("the worker's stream broke: {}", e.message())),
                Ok(Ok(None)) => return Err("the worker closed its stream during start-up".into()),
                Ok(Ok(Some(m))) => m,
            };
            match message.content {
                Some(Content::RpcLog(log)) => (self.shared.log)(&format!(
                    "{} worker {}: {}",
                    self.shared.runtime,
                    self.slot,
                    log_line(&log)
                )),
                Some(content) => {
                    if let Some(v) = want(content) {
                        return Ok(v);
                    }
                }
                None => continue,
            }
        }
    }

    async fn ask<T>(
        &mut self,
        content: Content,
        want: impl FnMut(Content) -> Option<T>,
    ) -> Result<T, String> {
        self.send(content).await?;
        self.receive(want).await
    }
}

/// Passes a worker's output on, line by line, and keeps the last lines for
/// error messages.
fn forward<R: tokio::io::AsyncRead + Unpin + Send + 'static>(
    reader: R,
    prefix: String,
    log: LogSink,
    tail: Arc<Mutex<Vec<String>>>,
) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(reader).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            log(&format!("{prefix}: {line}"));
            let mut t = lock(&tail);
            if t.len() == 10 {
                t.remove(0);
            }
            t.push(line);
        }
    });
}

/// Counts an invocation in flight on a channel, and forgets it if it is
/// abandoned (a timeout drops the future).
struct InFlight<'a> {
    channel: &'a Channel,
    id: String,
    done: bool,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.channel.in_flight.fetch_sub(1, Ordering::AcqRel);
        if self.done {
            return;
        }
        lock(&self.channel.pending).remove(&self.id);
        if self.channel.caps.cancel {
            let _ = self.channel.out.try_send(Ok(proto::StreamingMessage {
                request_id: String::new(),
                content: Some(Content::InvocationCancel(proto::InvocationCancel {
                    invocation_id: self.id.clone(),
                    grace_period: None,
                })),
            }));
        }
    }
}

impl Shared {
    /// A ready process, the least busy first; waits for one (up to the
    /// start timeout) while none is.
    async fn pick(&self) -> Result<Arc<Channel>, ExecutorError> {
        let limit = self
            .config
            .as_ref()
            .map(|c| c.start_timeout)
            .unwrap_or(DEFAULT_START_TIMEOUT);
        let deadline = Instant::now() + limit;
        let mut changed = self.changed.subscribe();
        loop {
            {
                let slots = lock(&self.slots);
                let n = slots.len();
                let turn = self.turn.fetch_add(1, Ordering::Relaxed);
                let best = (0..n)
                    .filter_map(|i| slots[(turn + i) % n].as_ref())
                    .min_by_key(|c| c.in_flight.load(Ordering::Acquire));
                if let Some(c) = best {
                    return Ok(c.clone());
                }
            }
            // A start that failed answers at once, with its reason (the
            // invocation would otherwise wait for a process that is not
            // coming).
            if let Some(Err(e)) = self.started.get() {
                return Err(ExecutorError::unavailable(format!(
                    "the {} worker did not start: {e}",
                    self.runtime
                )));
            }
            if let Some(e) = lock(&self.last_start_error).clone() {
                return Err(ExecutorError::unavailable(format!(
                    "no {} worker process is running: the last start failed: {e}",
                    self.runtime
                )));
            }
            if self.stopping.load(Ordering::Acquire) {
                return Err(ExecutorError::unavailable(format!(
                    "the {} worker is shutting down",
                    self.runtime
                )));
            }
            if let Err(e) = &self.config {
                return Err(ExecutorError::unavailable(e.clone()));
            }
            match tokio::time::timeout_at(deadline.into(), changed.changed()).await {
                Ok(Ok(())) => continue,
                _ => {
                    return Err(ExecutorError::unavailable(format!(
                        "no {} worker process is running (none started within {} s)",
                        self.runtime,
                        limit.as_secs()
                    )));
                }
            }
        }
    }

    async fn invoke(
        &self,
        info: &FunctionInfo,
        invocation: Invocation,
    ) -> Result<InvocationResult, ExecutorError> {
        let channel = self.pick().await?;
        let name = info.name();
        let Some(function_id) = channel.function_ids.get(&name.to_ascii_lowercase()) else {
            return Err(ExecutorError::unavailable(format!(
                "the {} worker did not index or load a function '{name}'",
                self.runtime
            )));
        };
        if let Some(e) = channel.load_errors.get(function_id) {
            return Err(ExecutorError::unavailable(format!(
                "the function '{name}' could not be loaded: {e}"
            )));
        }
        let request = convert::invocation_request(info, function_id, &invocation, &channel.caps);
        let id = request.invocation_id.clone();
        let (tx, rx) = oneshot::channel();
        lock(&channel.pending).insert(
            id.clone(),
            Pending {
                tx,
                logs: Vec::new(),
            },
        );
        channel.in_flight.fetch_add(1, Ordering::AcqRel);
        let mut guard = InFlight {
            channel: &channel,
            id: id.clone(),
            done: false,
        };
        let sent = channel
            .out
            .send(Ok(proto::StreamingMessage {
                request_id: String::new(),
                content: Some(Content::InvocationRequest(request)),
            }))
            .await;
        if sent.is_err() {
            return Err(ExecutorError::unavailable(format!(
                "the {} worker process went away before the invocation was sent",
                self.runtime
            )));
        }
        let answer = rx.await;
        guard.done = true;
        drop(guard);
        match answer {
            Ok(Ok((response, logs))) => convert::invocation_result(response, logs),
            Ok(Err(reason)) => Err(ExecutorError::failed(reason)),
            Err(_) => Err(ExecutorError::failed(format!(
                "the {} worker process went away during the invocation",
                self.runtime
            ))),
        }
    }

    async fn shutdown(self: Arc<Self>) {
        self.stopping.store(true, Ordering::Release);
        // Stored even when no supervisor listens yet (`send` would drop it).
        self.stop.send_replace(true);
        let tasks: Vec<_> = lock(&self.supervisors).drain(..).collect();
        for t in tasks {
            let _ = t.await;
        }
        let server = lock(&self.server).take();
        if let Some(s) = server {
            s.stop().await;
        }
    }
}
