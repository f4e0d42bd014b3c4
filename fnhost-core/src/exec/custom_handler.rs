//! Azure-compatible custom handler executor: one long-running process that
//! serves HTTP on loopback, started from host.json's `customHandler`.
//!
//! This file is long (about 1,100 lines) because the handler's process
//! life (start, readiness, restart, stop) and Azure's two payload shapes
//! (forwarded HTTP and the invocation payload) are one protocol.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{CONTENT_TYPE, HeaderName, HeaderValue, USER_AGENT};
use hyper::{HeaderMap, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};
use tokio::sync::{oneshot, watch};

use super::payload;
use super::process::LineTail;
use crate::app::replace_percent_names;
use crate::app::{CustomHandlerConfig, Function, FunctionApp};
use crate::binding::Direction;
use crate::invoke::http::{HttpRequest, HttpResponse};
use crate::invoke::{
    BindingData, BoxFuture, Executor, ExecutorError, ExecutorFactory, FunctionInfo, Invocation,
    InvocationResult,
};

/// The version sent to handlers in `X-Azure-Functions-HostVersion` and in
/// `User-Agent: Azure-Functions-Host/{version}`.
pub const HOST_VERSION: &str = env!("CARGO_PKG_VERSION");

/// How long a handler has to answer its first `GET /` by default.
pub const DEFAULT_READINESS_TIMEOUT: Duration = Duration::from_secs(30);

/// Which output stream of the handler a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandlerStream {
    /// Its standard output.
    Stdout,
    /// Its standard error.
    Stderr,
}

/// Where the handler's stdout and stderr lines go.
///
/// The default writes each line to the host's stderr, prefixed with
/// `[custom handler]` (or `[custom handler stderr]`).
#[derive(Clone)]
pub struct LogSink(Arc<SinkFn>);

type SinkFn = dyn Fn(HandlerStream, &str) + Send + Sync;

impl LogSink {
    /// Calls `f` with each line (without its line ending).
    pub fn new(f: impl Fn(HandlerStream, &str) + Send + Sync + 'static) -> Self {
        LogSink(Arc::new(f))
    }

    /// Writes each line to the host's stderr with a prefix.
    pub fn stderr() -> Self {
        LogSink::new(|stream, line| match stream {
            HandlerStream::Stdout => eprintln!("[custom handler] {line}"),
            HandlerStream::Stderr => eprintln!("[custom handler stderr] {line}"),
        })
    }

    /// Drops every line.
    pub fn discard() -> Self {
        LogSink::new(|_, _| {})
    }

    fn log(&self, stream: HandlerStream, line: &str) {
        (self.0)(stream, line)
    }
}

impl Default for LogSink {
    fn default() -> Self {
        LogSink::stderr()
    }
}

impl fmt::Debug for LogSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LogSink")
    }
}

/// How a [`CustomHandlerExecutor`] starts, watches and stops its handler.
#[derive(Debug, Clone)]
pub struct CustomHandlerOptions {
    readiness_timeout: Duration,
    restart_min: Duration,
    restart_max: Duration,
    shutdown_grace: Duration,
    max_response_bytes: usize,
    log_sink: LogSink,
}

impl Default for CustomHandlerOptions {
    fn default() -> Self {
        CustomHandlerOptions {
            readiness_timeout: DEFAULT_READINESS_TIMEOUT,
            restart_min: Duration::from_millis(100),
            restart_max: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(5),
            max_response_bytes: 100 * 1024 * 1024,
            log_sink: LogSink::default(),
        }
    }
}

impl CustomHandlerOptions {
    /// The defaults: 30 s to become ready, restarts after 0 s then 100 ms
    /// doubling up to 10 s, 5 s between SIGTERM and SIGKILL at shutdown,
    /// responses up to 100 MiB, lines to stderr.
    pub fn new() -> Self {
        Self::default()
    }

    /// How long the handler has to answer its first `GET /` after it starts.
    pub fn with_readiness_timeout(mut self, timeout: Duration) -> Self {
        self.readiness_timeout = timeout;
        self
    }

    /// The delays between restarts of a handler that keeps dying: the first
    /// restart is immediate, the next waits `min`, then twice as long each
    /// time up to `max`. A handler that ran for a minute starts over.
    pub fn with_restart_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.restart_min = min;
        self.restart_max = max.max(min);
        self
    }

    /// How long the handler has to exit after SIGTERM before it is killed.
    pub fn with_shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// The largest response body read from the handler.
    pub fn with_max_response_bytes(mut self, bytes: usize) -> Self {
        self.max_response_bytes = bytes;
        self
    }

    /// Where the handler's stdout and stderr lines go.
    pub fn with_log_sink(mut self, sink: LogSink) -> Self {
        self.log_sink = sink;
        self
    }
}

/// Runs the functions of an app through its custom handler, as the Azure
/// Functions host does (see the protocol notes in the repository's shared
/// reference).
///
/// - **Start** ([`Executor::start`], or the first invocation): the
///   executable from host.json (`defaultExecutablePath`: a relative path is
///   taken from the app root when the file is there, else looked up on
///   PATH), with `defaultWorkerPath` then the `arguments` (`%NAME%` expands
///   from the app settings, then the environment), in the working directory
///   (the app root by default). Its environment is the host's, the app
///   settings, and `FUNCTIONS_CUSTOMHANDLER_PORT`,
///   `FUNCTIONS_CUSTOMHANDLER_WORKER_ID`, `FUNCTIONS_HTTPWORKER_PORT`,
///   `FUNCTIONS_HTTPWORKER_ID`, `FUNCTIONS_APP_ROOT_PATH` (these five also
///   in lower case, for handlers written on Windows that read them so). The
///   port is a free one on 127.0.0.1, new for each start.
/// - **Readiness**: `GET http://127.0.0.1:{port}/` until any HTTP answer,
///   for at most [`CustomHandlerOptions::with_readiness_timeout`].
/// - **Payload mode**: `POST /{FunctionName}` with `{Data, Metadata}`; a
///   2xx answer with `{Outputs, Logs, ReturnValue}` (keys ignoring case) is
///   the result. Outputs stay JSON, `http` ones included (the front reads
///   them with [`HttpResponse::from_json`], which, unlike Azure, never
///   base64-decodes a string body). Any other status, or a body that is not
///   such JSON, is a failed invocation.
/// - **Forwarding mode** (`enableForwardingHttpRequest` in `customHandler`,
///   for functions whose only bindings are an `httpTrigger` and an `http`
///   output): the request goes as it came (method, path and query, headers,
///   body) to the handler, and its response, whatever the status, is the
///   function's `http` output as a [`BindingData::HttpResponse`]. Redirects
///   are not followed.
/// - **Logs**: the handler's stdout and stderr lines go to the
///   [`LogSink`]; each `Logs` entry is a log line of its invocation.
/// - **Faults**: when the handler dies, the invocations in flight fail and
///   it is started again (at once, then with growing delays if it keeps
///   dying); invocations that arrive meanwhile wait for it.
/// - **Shutdown** ([`Executor::shutdown`], or dropping the last clone):
///   SIGTERM to the handler's process group, SIGKILL after the grace period.
#[derive(Clone)]
pub struct CustomHandlerExecutor {
    inner: Arc<Inner>,
}

impl fmt::Debug for CustomHandlerExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CustomHandlerExecutor")
            .field("program", &self.inner.launch.program)
            .field("args", &self.inner.launch.args)
            .field("forwarding", &self.inner.forwarding)
            .field("port", &self.port())
            .finish_non_exhaustive()
    }
}

impl CustomHandlerExecutor {
    /// An executor for `app`'s custom handler (not started). Fails when
    /// host.json configures none, or names no executable.
    pub fn new(app: &FunctionApp, options: CustomHandlerOptions) -> Result<Self, ExecutorError> {
        let Some(config) = app.host().custom_handler.as_ref() else {
            return Err(ExecutorError::unavailable(
                "host.json configures no custom handler (\"customHandler\": {\"description\": {\"defaultExecutablePath\": ...}})",
            ));
        };
        let launch = Launch::new(app, config)?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.enforce_http(true);
        let client = Client::builder(TokioExecutor::new())
            // Shorter than the idle timeouts of common servers (Node's is
            // 5 s), so that a request rarely meets a connection the handler
            // is closing.
            .pool_idle_timeout(Duration::from_secs(2))
            .build(connector);
        Ok(CustomHandlerExecutor {
            inner: Arc::new(Inner {
                launch,
                forwarding: config.enable_forwarding_http_request && !config.legacy_http_worker,
                options,
                client,
                current: ArcSwapOption::empty(),
                start_lock: tokio::sync::Mutex::new(()),
                backoff: Mutex::new(Backoff::default()),
                shutting_down: AtomicBool::new(false),
            }),
        })
    }

    /// The port of the running handler, if one runs.
    pub fn port(&self) -> Option<u16> {
        self.inner.current.load().as_ref().map(|w| w.port)
    }

    /// The process id of the running handler, if one runs.
    pub fn pid(&self) -> Option<u32> {
        self.inner.current.load().as_ref().and_then(|w| w.pid)
    }

    /// Whether invocations of `function` are forwarded as HTTP requests
    /// (forwarding mode is on and its only bindings are an `httpTrigger` and
    /// an `http` output).
    pub fn forwards(&self, function: &Function) -> bool {
        self.inner.forwarding && is_http_in_and_out(function)
    }

    async fn run(
        &self,
        function: &FunctionInfo,
        invocation: Invocation,
    ) -> Result<InvocationResult, ExecutorError> {
        let worker = self.inner.worker().await?;
        if let BindingData::HttpRequest(request) = &invocation.trigger
            && self.forwards(&function.function)
        {
            return self.forward(&worker, function, &invocation, request).await;
        }
        let shape = payload::PayloadShape::of(function);
        let body = payload::request_body(function, &invocation, shape);
        let uri = format!("http://127.0.0.1:{}/{}", worker.port, function.name());
        let request = invocation_request(Request::post(uri), &invocation)
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| ExecutorError::failed(format!("could not build the request: {e}")))?;
        let what = format!("POST /{}", function.name());
        let (status, _, body) = self.inner.send(&worker, request, &what).await?;
        if !status.is_success() {
            let logs = payload::parse_result(&body)
                .map(|r| r.logs)
                .unwrap_or_default();
            return Err(ExecutorError::failed(format!(
                "the custom handler answered {status} to {what}; body: {}",
                payload::snippet(&body)
            ))
            .with_logs(logs));
        }
        let mut result = payload::parse_result(&body).map_err(|e| {
            ExecutorError::failed(format!(
                "the custom handler's answer to {what} is not {{\"Outputs\", \"Logs\", \"ReturnValue\"}} JSON: {e}"
            ))
        })?;
        if shape == payload::PayloadShape::Azure {
            payload::convert_outputs(function, &mut result);
        }
        Ok(result)
    }

    async fn forward(
        &self,
        worker: &Worker,
        function: &FunctionInfo,
        invocation: &Invocation,
        request: &HttpRequest,
    ) -> Result<InvocationResult, ExecutorError> {
        let target = path_and_query(request);
        let uri = format!("http://127.0.0.1:{}{target}", worker.port);
        let mut builder = Request::builder()
            .method(request.method.as_str())
            .uri(uri.as_str());
        if let Some(headers) = builder.headers_mut() {
            for (name, value) in &request.headers {
                let (Ok(name), Ok(value)) = (
                    HeaderName::from_bytes(name.as_bytes()),
                    HeaderValue::from_str(value),
                ) else {
                    continue;
                };
                if is_hop_by_hop(&name) || name == hyper::header::HOST {
                    continue;
                }
                headers.append(name, value);
            }
        }
        let outgoing = invocation_request(builder, invocation)
            .body(Full::new(Bytes::from(request.body.clone())))
            .map_err(|e| ExecutorError::failed(format!("could not forward the request: {e}")))?;
        let what = format!("{} {target}", request.method.as_str());
        let (status, headers, body) = self.inner.send(worker, outgoing, &what).await?;
        let mut response = HttpResponse::new(status.as_u16()).with_body(body.to_vec());
        for (name, value) in &headers {
            if is_hop_by_hop(name) {
                continue;
            }
            response.headers.push((
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            ));
        }
        let mut result = InvocationResult::new();
        match function.http_output.as_deref() {
            None | Some("$return") => {
                result.return_value = Some(BindingData::HttpResponse(Box::new(response)))
            }
            Some(name) => result.set_output(name, BindingData::HttpResponse(Box::new(response))),
        }
        Ok(result)
    }
}

impl Executor for CustomHandlerExecutor {
    fn invoke<'a>(
        &'a self,
        function: &'a FunctionInfo,
        invocation: Invocation,
    ) -> BoxFuture<'a, Result<InvocationResult, ExecutorError>> {
        Box::pin(self.run(function, invocation))
    }

    fn start(&self) -> BoxFuture<'_, Result<(), ExecutorError>> {
        Box::pin(async move {
            self.inner.shutting_down.store(false, Ordering::SeqCst);
            self.inner.worker().await.map(|_| ())
        })
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.inner.shutdown())
    }
}

/// Gives every function of an app whose host.json configures a custom
/// handler one shared [`CustomHandlerExecutor`]; offers nothing otherwise.
/// A configuration it cannot use (such as an empty executable) gives an
/// executor that fails each invocation with the reason.
#[derive(Debug, Clone, Default)]
pub struct CustomHandlerFactory {
    options: CustomHandlerOptions,
}

impl CustomHandlerFactory {
    /// A factory with the default options.
    pub fn new() -> Self {
        Self::default()
    }

    /// A factory whose executors use `options`.
    pub fn with_options(options: CustomHandlerOptions) -> Self {
        CustomHandlerFactory { options }
    }
}

impl ExecutorFactory for CustomHandlerFactory {
    fn executors(&self, app: &FunctionApp) -> Vec<Option<Arc<dyn Executor>>> {
        if app.host().custom_handler.is_none() {
            return vec![None; app.functions().len()];
        }
        let executor: Arc<dyn Executor> =
            match CustomHandlerExecutor::new(app, self.options.clone()) {
                Ok(e) => Arc::new(e),
                Err(e) => Arc::new(Misconfigured(e)),
            };
        vec![Some(executor); app.functions().len()]
    }
}

/// A custom handler that cannot start: every invocation fails with why.
#[derive(Debug)]
struct Misconfigured(ExecutorError);

impl Executor for Misconfigured {
    fn invoke<'a>(
        &'a self,
        _function: &'a FunctionInfo,
        _invocation: Invocation,
    ) -> BoxFuture<'a, Result<InvocationResult, ExecutorError>> {
        Box::pin(async move { Err(self.0.clone()) })
    }

    fn start(&self) -> BoxFuture<'_, Result<(), ExecutorError>> {
        Box::pin(async move { Err(self.0.clone()) })
    }
}

/// What starting the handler takes, resolved once.
#[derive(Debug)]
struct Launch {
    program: PathBuf,
    args: Vec<String>,
    dir: PathBuf,
    app_root: PathBuf,
    settings: Vec<(String, String)>,
}

impl Launch {
    fn new(app: &FunctionApp, config: &CustomHandlerConfig) -> Result<Self, ExecutorError> {
        let exe = config.executable.trim();
        if exe.is_empty() {
            return Err(ExecutorError::unavailable(
                "the custom handler's defaultExecutablePath in host.json is empty",
            ));
        }
        let root = app.root();
        let app_root = std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf());
        let program = if Path::new(exe).is_absolute() {
            PathBuf::from(exe)
        } else if app_root.join(exe).is_file() {
            app_root.join(exe)
        } else {
            PathBuf::from(exe)
        };
        let settings: Vec<(String, String)> = app
            .settings()
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let expand = |s: &str| expand_env(s, &settings);
        let mut args = Vec::new();
        if let Some(worker) = config.worker_path.as_deref().filter(|w| !w.is_empty()) {
            args.push(expand(worker));
        }
        args.extend(config.arguments.iter().map(|a| expand(a)));
        let dir = app
            .host()
            .custom_handler_dir(&app_root)
            .unwrap_or_else(|| app_root.clone());
        Ok(Launch {
            program,
            args,
            dir,
            app_root,
            settings,
        })
    }

    fn shown(&self) -> String {
        let mut s = self.program.to_string_lossy().into_owned();
        for a in &self.args {
            s.push(' ');
            s.push_str(a);
        }
        s
    }
}

/// Replaces each `%NAME%` with the setting or environment variable `NAME`;
/// unknown names stay as written.
fn expand_env(text: &str, settings: &[(String, String)]) -> String {
    let Ok(expanded) = replace_percent_names(text, |name| {
        let value = (!name.is_empty())
            .then(|| {
                settings
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.clone())
                    .or_else(|| std::env::var(name).ok())
            })
            .flatten();
        Ok::<_, std::convert::Infallible>(value)
    });
    expanded
}

#[derive(Debug, Default)]
struct Backoff {
    /// Starts that failed or handlers that died, in a row.
    failures: u32,
    /// No new start before this.
    not_before: Option<Instant>,
}

struct Inner {
    launch: Launch,
    forwarding: bool,
    options: CustomHandlerOptions,
    client: Client<HttpConnector, Full<Bytes>>,
    current: ArcSwapOption<Worker>,
    /// Held while a handler starts, so that one starts at a time.
    start_lock: tokio::sync::Mutex<()>,
    backoff: Mutex<Backoff>,
    shutting_down: AtomicBool,
}

/// One run of the handler process.
struct Worker {
    port: u16,
    pid: Option<u32>,
    started: Instant,
    /// `Some(how it ended)` once the process exited.
    exited: watch::Receiver<Option<String>>,
    /// The last lines of its stdout and stderr.
    output: Arc<Mutex<LineTail>>,
    /// Sending or dropping this stops the process.
    stop: Mutex<Option<oneshot::Sender<()>>>,
}

impl Worker {
    fn alive(&self) -> bool {
        self.exited.borrow().is_none()
    }

    fn tail(&self) -> String {
        self.output
            .lock()
            .map(|t| t.tail_message_as("handler output"))
            .unwrap_or_default()
    }

    fn stop(&self) {
        if let Ok(mut stop) = self.stop.lock()
            && let Some(tx) = stop.take()
        {
            let _ = tx.send(());
        }
    }
}

/// How long after the exit of the handler its output may stay open (held
/// by a child it left) before its process group is killed.
const OUTPUT_GRACE: Duration = Duration::from_millis(300);

impl Inner {
    /// The running handler, started (or waited for) when there is none.
    async fn worker(self: &Arc<Self>) -> Result<Arc<Worker>, ExecutorError> {
        if let Some(w) = self.current.load().as_ref()
            && w.alive()
        {
            return Ok(w.clone());
        }
        let _starting = self.start_lock.lock().await;
        if self.shutting_down.load(Ordering::SeqCst) {
            return Err(ExecutorError::unavailable(
                "the custom handler was shut down",
            ));
        }
        if let Some(w) = self.current.load().as_ref()
            && w.alive()
        {
            return Ok(w.clone());
        }
        let wait = self
            .backoff
            .lock()
            .ok()
            .and_then(|b| b.not_before)
            .map(|t| t.saturating_duration_since(Instant::now()));
        if let Some(wait) = wait.filter(|w| !w.is_zero()) {
            tokio::time::sleep(wait).await;
        }
        match self.launch().await {
            Ok(worker) => {
                self.current.store(Some(worker.clone()));
                Ok(worker)
            }
            Err(e) => {
                self.failed_once(false);
                Err(e)
            }
        }
    }

    /// Records a failed start or a death, pushing the next start back.
    fn failed_once(&self, ran_long: bool) {
        if let Ok(mut b) = self.backoff.lock() {
            if ran_long {
                b.failures = 0;
            }
            b.failures = b.failures.saturating_add(1);
            let delay = match b.failures {
                0 | 1 => Duration::ZERO,
                n => {
                    let factor = 1u32.checked_shl((n - 2).min(20)).unwrap_or(u32::MAX);
                    self.options
                        .restart_min
                        .saturating_mul(factor)
                        .min(self.options.restart_max)
                }
            };
            b.not_before = Some(Instant::now() + delay);
        }
    }

    /// Starts a handler process and waits until it is ready.
    async fn launch(self: &Arc<Self>) -> Result<Arc<Worker>, ExecutorError> {
        let shown = self.launch.shown();
        let port = free_port().map_err(|e| {
            ExecutorError::unavailable(format!(
                "no free port on 127.0.0.1 for the custom handler: {e}"
            ))
        })?;
        let worker_id = payload::random_guid();
        let port_text = port.to_string();
        let root_text = self.launch.app_root.to_string_lossy().into_owned();
        let mut command = Command::new(&self.launch.program);
        command
            .args(&self.launch.args)
            .current_dir(&self.launch.dir)
            .envs(self.launch.settings.iter().map(|(k, v)| (k, v)));
        for (name, value) in [
            ("FUNCTIONS_CUSTOMHANDLER_PORT", &port_text),
            ("FUNCTIONS_CUSTOMHANDLER_WORKER_ID", &worker_id),
            ("FUNCTIONS_HTTPWORKER_PORT", &port_text),
            ("FUNCTIONS_HTTPWORKER_ID", &worker_id),
            ("FUNCTIONS_APP_ROOT_PATH", &root_text),
        ] {
            command.env(name, value);
            command.env(name.to_ascii_lowercase(), value);
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        #[cfg(unix)]
        command.process_group(0);
        super::process::die_with_parent(&mut command);
        let mut child = command.spawn().map_err(|e| {
            let hint = if e.kind() == std::io::ErrorKind::NotFound {
                format!(
                    " (is `{}` in the app folder, or installed and on PATH?)",
                    self.launch.program.display()
                )
            } else {
                String::new()
            };
            ExecutorError::unavailable(format!(
                "could not start the custom handler `{shown}` in {}: {e}{hint}",
                self.launch.dir.display()
            ))
        })?;
        let pid = child.id();
        let output = Arc::new(Mutex::new(LineTail::new(64 * 1024)));
        let readers = [
            child
                .stdout
                .take()
                .map(|r| spawn_reader(r, HandlerStream::Stdout, self, &output)),
            child
                .stderr
                .take()
                .map(|r| spawn_reader(r, HandlerStream::Stderr, self, &output)),
        ];
        let (exit_tx, exit_rx) = watch::channel(None);
        let (stop_tx, stop_rx) = oneshot::channel();
        let worker = Arc::new(Worker {
            port,
            pid,
            started: Instant::now(),
            exited: exit_rx,
            output,
            stop: Mutex::new(Some(stop_tx)),
        });
        tokio::spawn(supervise(
            child,
            pid,
            readers,
            stop_rx,
            exit_tx,
            Arc::downgrade(self),
            Arc::downgrade(&worker),
            self.options.shutdown_grace,
        ));
        match self.wait_ready(&worker).await {
            Ok(()) => Ok(worker),
            Err(message) => {
                worker.stop();
                Err(ExecutorError::unavailable(format!(
                    "the custom handler `{shown}` {message}{}",
                    worker.tail()
                )))
            }
        }
    }

    /// Polls `GET /` until any answer.
    async fn wait_ready(&self, worker: &Worker) -> Result<(), String> {
        let deadline = Instant::now() + self.options.readiness_timeout;
        let uri = format!("http://127.0.0.1:{}/", worker.port);
        let mut exited = worker.exited.clone();
        // Most handlers listen within a second (node: ~0.1 s): a refused
        // connection costs microseconds, so poll every 5 ms until then and
        // back off to 100 ms after. Doubling from the start would put the
        // polls at 75 and 155 ms and make a 0.1 s start look like 0.16 s.
        let start = Instant::now();
        let mut pause = Duration::from_millis(5);
        loop {
            if let Some(how) = exited.borrow_and_update().clone() {
                return Err(format!("{how} before it became ready"));
            }
            let request = Request::get(uri.as_str())
                .header(USER_AGENT, user_agent())
                .body(Full::new(Bytes::new()))
                .map_err(|e| e.to_string())?;
            let left = deadline.saturating_duration_since(Instant::now());
            let attempt = tokio::time::timeout(
                left.min(Duration::from_secs(2)),
                self.client.request(request),
            );
            if let Ok(Ok(response)) = attempt.await {
                // Read the body so the connection can be reused.
                let _ = tokio::time::timeout(
                    Duration::from_secs(1),
                    Limited::new(response.into_body(), 1024 * 1024).collect(),
                )
                .await;
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "did not answer GET {uri} within {:?} (it must listen on 127.0.0.1 at the port in FUNCTIONS_CUSTOMHANDLER_PORT)",
                    self.options.readiness_timeout
                ));
            }
            tokio::select! {
                _ = tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))) => {}
                _ = exited.changed() => {}
            }
            if start.elapsed() >= Duration::from_secs(1) {
                pause = (pause * 2).min(Duration::from_millis(100));
            }
        }
    }

    /// Sends a request to the handler; fails with a clear message when the
    /// handler dies meanwhile.
    async fn send(
        &self,
        worker: &Worker,
        request: Request<Full<Bytes>>,
        what: &str,
    ) -> Result<(StatusCode, HeaderMap, Bytes), ExecutorError> {
        let mut exited = worker.exited.clone();
        let max = self.options.max_response_bytes;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| format!("the request failed: {}", error_chain(&e)))?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, max)
                .collect()
                .await
                .map_err(|e| format!("reading the answer failed: {e} (limit {max} bytes)"))?
                .to_bytes();
            Ok::<_, String>((parts.status, parts.headers, body))
        };
        let died = |how: String| {
            ExecutorError::failed(format!(
                "the custom handler {how} during {what}; it is being restarted{}",
                worker.tail()
            ))
        };
        tokio::select! {
            r = exchange => match r {
                Ok(answer) => Ok(answer),
                Err(message) => {
                    // A reset connection usually means the handler died:
                    // give the supervisor a moment to notice.
                    match tokio::time::timeout(Duration::from_millis(500), exit_of(&mut exited)).await {
                        Ok(how) => Err(died(how)),
                        Err(_) => Err(ExecutorError::failed(format!(
                            "{what} to the custom handler on port {}: {message}",
                            worker.port
                        ))),
                    }
                }
            },
            how = exit_of(&mut exited) => Err(died(how)),
        }
    }

    async fn shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        let _starting = self.start_lock.lock().await;
        let Some(worker) = self.current.swap(None) else {
            return;
        };
        worker.stop();
        let mut exited = worker.exited.clone();
        let _ = tokio::time::timeout(
            self.options.shutdown_grace + Duration::from_secs(2),
            exit_of(&mut exited),
        )
        .await;
    }
}

/// Waits until the worker's process exited; says how.
async fn exit_of(exited: &mut watch::Receiver<Option<String>>) -> String {
    loop {
        let seen = exited.borrow_and_update().clone();
        if let Some(how) = seen {
            return how;
        }
        if exited.changed().await.is_err() {
            return "stopped being watched".to_owned();
        }
    }
}

/// Owns the handler process: waits for it to exit (or to be told to stop),
/// reports how it ended, and has it started again when it died on its own.
#[allow(clippy::too_many_arguments)]
async fn supervise(
    mut child: Child,
    pid: Option<u32>,
    readers: [Option<tokio::task::JoinHandle<()>>; 2],
    stop: oneshot::Receiver<()>,
    exited: watch::Sender<Option<String>>,
    inner: Weak<Inner>,
    worker: Weak<Worker>,
    grace: Duration,
) {
    let mut stopped = false;
    let status = tokio::select! {
        status = child.wait() => status,
        _ = stop => {
            stopped = true;
            stop_gracefully(&mut child, pid, grace).await
        }
    };
    let how = match status {
        Ok(status) => match status.code() {
            Some(code) => format!("exited with status {code}"),
            None => describe_signal(status),
        },
        Err(e) => format!("could not be waited for ({e})"),
    };
    // Let the readers take the last lines; kill what still holds the pipes.
    for reader in readers.into_iter().flatten() {
        let abort = reader.abort_handle();
        if tokio::time::timeout(OUTPUT_GRACE, reader).await.is_err() {
            if let Some(pid) = pid {
                super::process::kill_group(pid);
            }
            abort.abort();
        }
    }
    let _ = exited.send(Some(how));
    if stopped {
        return;
    }
    let Some(inner) = inner.upgrade() else {
        return;
    };
    if inner.shutting_down.load(Ordering::SeqCst) {
        return;
    }
    // Only the current worker's death triggers a restart.
    let ran_long = worker
        .upgrade()
        .is_some_and(|w| w.started.elapsed() > Duration::from_secs(60));
    let was_current = inner
        .current
        .load()
        .as_ref()
        .is_some_and(|c| Weak::ptr_eq(&Arc::downgrade(c), &worker));
    if !was_current {
        return;
    }
    inner.failed_once(ran_long);
    // Start the next one now, so that it is ready for the next invocation.
    restart(inner).await;
}

/// Starts a handler again (boxed: `supervise` and `Inner::worker` call each
/// other through spawned tasks).
fn restart(inner: Arc<Inner>) -> BoxFuture<'static, ()> {
    Box::pin(async move {
        let _ = inner.worker().await;
    })
}

async fn stop_gracefully(
    child: &mut Child,
    pid: Option<u32>,
    grace: Duration,
) -> std::io::Result<std::process::ExitStatus> {
    #[cfg(unix)]
    if let Some(pid) = pid {
        super::process::signal_group(pid, nix::sys::signal::Signal::SIGTERM);
        if let Ok(status) = tokio::time::timeout(grace, child.wait()).await {
            // The leader is gone; anything left in its group goes too.
            super::process::kill_group(pid);
            return status;
        }
        super::process::kill_group(pid);
    }
    #[cfg(not(unix))]
    let _ = (pid, grace);
    let _ = child.start_kill();
    child.wait().await
}

fn describe_signal(status: std::process::ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return format!("was killed by signal {signal}");
        }
    }
    format!("ended ({status})")
}

fn spawn_reader<R: AsyncRead + Unpin + Send + 'static>(
    mut reader: R,
    stream: HandlerStream,
    inner: &Inner,
    output: &Arc<Mutex<LineTail>>,
) -> tokio::task::JoinHandle<()> {
    let sink = inner.options.log_sink.clone();
    let output = output.clone();
    tokio::spawn(async move {
        let mut chunk = vec![0u8; 8192];
        let mut lines = LineTail::new(0);
        loop {
            let n = match reader.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            lines.push(&chunk[..n], |line| {
                sink.log(stream, line);
                if let Ok(mut tail) = output.lock() {
                    tail.push(line.as_bytes(), |_| {});
                    tail.push(b"\n", |_| {});
                }
            });
        }
        lines.finish(|line| {
            sink.log(stream, line);
            if let Ok(mut tail) = output.lock() {
                tail.push(line.as_bytes(), |_| {});
                tail.push(b"\n", |_| {});
            }
        });
    })
}

fn free_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(listener.local_addr()?.port())
}

fn user_agent() -> String {
    format!("Azure-Functions-Host/{HOST_VERSION}")
}

/// Adds the invocation headers of the protocol.
fn invocation_request(
    builder: hyper::http::request::Builder,
    invocation: &Invocation,
) -> hyper::http::request::Builder {
    builder
        .header("X-Azure-Functions-InvocationId", invocation.id.to_string())
        .header("X-Azure-Functions-HostVersion", HOST_VERSION)
        .header(USER_AGENT, user_agent())
}

/// The original path and query of a request: from its URL when it has one,
/// else its path and re-encoded query.
fn path_and_query(request: &HttpRequest) -> String {
    if let Some(rest) = request.url.split_once("://").map(|(_, rest)| rest)
        && let Some(slash) = rest.find('/')
    {
        let target = &rest[slash..];
        return target.split('#').next().unwrap_or(target).to_owned();
    }
    let mut target = if request.path.starts_with('/') {
        request.path.clone()
    } else {
        format!("/{}", request.path)
    };
    for (i, (k, v)) in request.query.iter().enumerate() {
        target.push(if i == 0 { '?' } else { '&' });
        target.push_str(&encode_query_part(k));
        target.push('=');
        target.push_str(&encode_query_part(v));
    }
    target
}

fn encode_query_part(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "content-length"
    )
}

/// Whether a function's only bindings are an `httpTrigger` in and an `http`
/// out.
fn is_http_in_and_out(function: &Function) -> bool {
    let bindings = &function.config.bindings;
    bindings.len() == 2
        && bindings.iter().any(|b| {
            b.type_name.eq_ignore_ascii_case("httpTrigger") && b.direction == Direction::In
        })
        && bindings
            .iter()
            .any(|b| b.type_name.eq_ignore_ascii_case("http") && b.direction == Direction::Out)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::Method;

    #[test]
    fn arguments_expand_settings_then_environment() {
        let settings = vec![("Greeting".to_owned(), "hi".to_owned())];
        assert_eq!(expand_env("%GREETING%-x", &settings), "hi-x");
        assert_eq!(
            expand_env("50% %NOPE_NOT_SET% %", &settings),
            "50% %NOPE_NOT_SET% %"
        );
        assert_eq!(expand_env("%%", &settings), "%%");
        // SAFETY-free: PATH is set on every machine that runs the tests.
        assert!(!expand_env("%PATH%", &settings).contains('%'));
    }

    #[test]
    fn forwarded_requests_keep_their_path_and_query() {
        let req = HttpRequest {
            url: "http://localhost:7071/api/hello?name=a%20b&x=1".into(),
            ..HttpRequest::new(Method::Get, "/api/hello")
        };
        assert_eq!(path_and_query(&req), "/api/hello?name=a%20b&x=1");
        let req = HttpRequest {
            url: String::new(),
            ..HttpRequest::new(Method::Get, "/api/hello").with_query("n", "a b")
        };
        assert_eq!(path_and_query(&req), "/api/hello?n=a%20b");
    }
}
