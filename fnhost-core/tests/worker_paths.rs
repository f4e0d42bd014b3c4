//! Language worker paths no real worker takes: `InvocationCancel` (neither
//! fnhost's nor Microsoft's workers declare it), system logs kept out of a
//! function's log, workers that cannot start, and the `languageWorkers`
//! app settings. The worker is the testkit's stand-in, inside this test,
//! launched through a worker.config.json as any worker is.
#![cfg(all(feature = "workers", feature = "testkit"))]

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fnhost_core::http::HttpFront;
use fnhost_core::invoke::http::HttpRequest;
use fnhost_core::invoke::{InvocationResult, InvokeError};
use fnhost_core::timer::LogSink;
use fnhost_core::worker::LanguageWorkerFactory;
use fnhost_core::worker::proto::rpc_log::{Level, RpcLogCategory};
use fnhost_core::worker::proto::streaming_message::Content;
use fnhost_core::worker::testkit::{
    LAUNCH_MARKER, StandIn, http_function, log, ok_response, write_launcher, write_script,
};
use fnhost_core::{FunctionApp, Host, Invocation, Method};
use tokio::sync::mpsc;

/// The worker runtime of the stand-in.
const RUNTIME: &str = "echo";

/// What the stand-in saw, in order.
type Events = mpsc::UnboundedReceiver<String>;

fn write(path: &Path, text: &str) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("a folder");
    }
    std::fs::write(path, text).expect("a file");
}

/// An app with no function.json (the stand-in indexes it), with this
/// host.json, and the stand-in's workers folder beside it.
fn app(dir: &Path, host_json: &str, settings: &[(&str, &str)]) -> FunctionApp {
    write(&dir.join("app").join("host.json"), host_json);
    write(
        &dir.join("app").join("index.js"),
        "// indexed by the stand-in\n",
    );
    write_launcher(&dir.join("workers"), RUNTIME).expect("the stand-in's folder");
    let mut loader = FunctionApp::loader(dir.join("app"))
        .with_environment(false)
        .with_setting("FUNCTIONS_WORKER_RUNTIME", RUNTIME);
    for (k, v) in settings {
        loader = loader.with_setting(*k, *v);
    }
    loader.load().expect("the app loads")
}

/// A log that keeps its lines.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<String>>>);

impl Lines {
    fn sink(&self) -> LogSink {
        let lines = self.0.clone();
        Arc::new(move |line: &str| lines.lock().expect("the log").push(line.to_owned()))
    }

    fn all(&self) -> Vec<String> {
        self.0.lock().expect("the log").clone()
    }

    fn with(&self, text: &str) -> Vec<String> {
        self.all()
            .into_iter()
            .filter(|l| l.contains(text))
            .collect()
    }
}

/// The language worker factory on the stand-in: host log lines go to
/// `host_log`, debug lines to `debug_log`.
fn factory(
    dir: &Path,
    stand_in: StandIn,
    host_log: &Lines,
    debug_log: &Lines,
) -> LanguageWorkerFactory {
    let log = Arc::new(stand_in).log_sink(tokio::runtime::Handle::current(), host_log.sink());
    LanguageWorkerFactory::new()
        .with_workers_dir(dir.join("workers"))
        .with_log(log)
        .with_debug_log(debug_log.sink())
}

/// A started host on the stand-in; lines of the host log go to `host_log`.
async fn host(dir: &Path, app: FunctionApp, stand_in: StandIn, host_log: &Lines) -> Host {
    let factory = factory(dir, stand_in, host_log, &Lines::default());
    let host = Host::builder().factory(Arc::new(factory)).build(app);
    tokio::time::timeout(Duration::from_secs(20), host.start())
        .await
        .expect("the host starts within 20 s")
        .expect("the host starts");
    host
}

fn get(path: &str) -> Invocation {
    Invocation::new(HttpRequest::new(Method::Get, path))
}

/// A stand-in with `slow` (never answers) and `fast` (answers 'fast');
/// it reports each request and cancel it receives.
fn cancel_stand_in(handles_cancel: bool) -> (StandIn, Events) {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut worker = StandIn::new()
        .with_function(http_function("slow"))
        .with_function(http_function("fast"));
    if handles_cancel {
        worker = worker.with_capability("HandlesInvocationCancelMessage");
    }
    let worker = worker.on_message(move |content| match content {
        Content::InvocationRequest(r) => {
            let _ = tx.send(format!("request {} {}", r.function_id, r.invocation_id));
            if r.function_id == "fast" {
                vec![ok_response(&r.invocation_id, "fast")]
            } else {
                Vec::new()
            }
        }
        Content::InvocationCancel(c) => {
            let _ = tx.send(format!("cancel {}", c.invocation_id));
            Vec::new()
        }
        _ => Vec::new(),
    });
    (worker, rx)
}

/// Invokes `slow` until the function timeout (1 s), then `fast`; returns
/// what the stand-in saw, in order.
async fn timeout_then_fast(handles_cancel: bool) -> Vec<String> {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let app = app(
        dir.path(),
        r#"{"version": "2.0", "functionTimeout": "00:00:01"}"#,
        &[],
    );
    let (worker, mut events) = cancel_stand_in(handles_cancel);
    let host = host(dir.path(), app, worker, &Lines::default()).await;
    let started = Instant::now();
    let slow = host.invoke("slow", get("/api/slow")).await;
    assert!(
        matches!(slow, Err(InvokeError::Timeout { .. })),
        "slow times out: {slow:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    // The stream is ordered: a cancel is written before the next request.
    let fast = host.invoke("fast", get("/api/fast")).await;
    let fast = fast.expect("fast answers after slow timed out");
    assert_eq!(body(&host, "fast", &fast), "fast");
    host.shutdown().await;
    let mut seen = Vec::new();
    while let Ok(e) = events.try_recv() {
        seen.push(e);
    }
    seen
}

/// The HTTP response body `result` of `function` gives.
fn body(host: &Host, function: &str, result: &InvocationResult) -> String {
    let handle = host.resolve(function).expect("the function");
    match handle.info().http_response(result) {
        Some(Ok(r)) => String::from_utf8_lossy(&r.body).into_owned(),
        other => panic!("{function} gives no HTTP response: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_invocation_is_cancelled_on_a_worker_that_handles_it() {
    let seen = timeout_then_fast(true).await;
    assert_eq!(seen.len(), 3, "request, cancel, request: {seen:?}");
    let slow_id = seen[0]
        .strip_prefix("request slow ")
        .unwrap_or_else(|| panic!("slow first: {seen:?}"));
    assert_eq!(seen[1], format!("cancel {slow_id}"), "{seen:?}");
    assert!(seen[2].starts_with("request fast "), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_without_the_capability_gets_no_cancel() {
    let seen = timeout_then_fast(false).await;
    assert_eq!(seen.len(), 2, "two requests, no cancel: {seen:?}");
    assert!(seen[0].starts_with("request slow "), "{seen:?}");
    assert!(seen[1].starts_with("request fast "), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_logs_stay_out_of_the_function_log() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let app = app(dir.path(), r#"{"version": "2.0"}"#, &[]);
    let worker = StandIn::new()
        .with_function(http_function("talk"))
        .on_invocation(|r| {
            let id = &r.invocation_id;
            vec![
                log(
                    id,
                    RpcLogCategory::System,
                    Level::Information,
                    "Received FunctionInvocationRequest",
                ),
                log(
                    id,
                    RpcLogCategory::User,
                    Level::Information,
                    "hello from talk",
                ),
                log(
                    "",
                    RpcLogCategory::System,
                    Level::Information,
                    "worker heartbeat",
                ),
                log(id, RpcLogCategory::System, Level::Warning, "talk is slow"),
                ok_response(id, "said"),
            ]
        });
    let (host_log, debug_log, front_log) = (Lines::default(), Lines::default(), Lines::default());
    let factory = factory(dir.path(), worker, &host_log, &debug_log);
    let host = Arc::new(Host::builder().factory(Arc::new(factory)).build(app));
    host.start().await.expect("the host starts");
    // What a user of `fnhost serve` sees: the front's log.
    let front = Front::start(host.clone(), front_log.sink()).await;
    let addr = front.addr;
    let response = http_get(addr, "/api/talk").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("said"), "{response}");

    // The user's line, with the function name and the invocation id.
    let user = front_log.with("hello from talk");
    assert_eq!(user.len(), 1, "{:?}", front_log.all());
    assert!(
        user[0].starts_with("talk: [Information] (invocation "),
        "{}",
        user[0]
    );
    let id = user[0]
        .split("(invocation ")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .expect("an invocation id")
        .to_owned();
    // A system warning about the invocation is the function's too.
    let warning = front_log.with("talk is slow");
    assert_eq!(warning.len(), 1, "{:?}", front_log.all());
    assert!(
        warning[0].starts_with(&format!("talk: [Warning] (invocation {id})")),
        "{}",
        warning[0]
    );
    // The worker's chatter about the invocation is not the function's log,
    // nor the host's: it is debug output.
    let everywhere = [front_log.all(), host_log.all()].concat();
    assert!(
        !everywhere
            .iter()
            .any(|l| l.contains("Received FunctionInvocationRequest")),
        "{everywhere:?}"
    );
    let debug = debug_log.with("Received FunctionInvocationRequest");
    assert_eq!(debug.len(), 1, "{:?}", debug_log.all());
    assert!(
        debug[0].contains(&format!("(invocation {id})")),
        "{}",
        debug[0]
    );
    // A system line about no invocation is the host's.
    assert_eq!(
        host_log.with("worker heartbeat").len(),
        1,
        "{:?}",
        host_log.all()
    );
    assert!(front_log.with("worker heartbeat").is_empty());

    front.stop().await;
    host.shutdown().await;
}

/// GET `path` with `Connection: close`; the whole response as text.
async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.expect("a request");
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut out))
        .await
        .expect("a response within 10 s")
        .expect("a response");
    String::from_utf8_lossy(&out).into_owned()
}

/// A host on the workers folder `dir/workers` for an app with one
/// function.json function, after its start failed; the start's error.
async fn failing_host(dir: &Path) -> (Host, String) {
    let root = dir.join("app");
    write(&root.join("host.json"), r#"{"version": "2.0"}"#);
    write(
        &root.join("hello").join("function.json"),
        r#"{"bindings": [{"type": "httpTrigger", "direction": "in", "name": "req", "authLevel": "anonymous"}, {"type": "http", "direction": "out", "name": "$return"}]}"#,
    );
    write(&root.join("hello").join("index.js"), "");
    let app = FunctionApp::loader(&root)
        .with_environment(false)
        .with_setting("FUNCTIONS_WORKER_RUNTIME", RUNTIME)
        .load()
        .expect("the app loads");
    let factory = LanguageWorkerFactory::new()
        .with_workers_dir(dir.join("workers"))
        .with_log(Arc::new(|_: &str| {}));
    let host = Host::builder().factory(Arc::new(factory)).build(app);
    let start = tokio::time::timeout(Duration::from_secs(10), host.start())
        .await
        .expect("the start ends within 10 s")
        .expect_err("the start fails");
    (host, start.message)
}

/// Starts a host as `failing_host` does; the start's error, and an
/// invocation's.
async fn failed_start(dir: &Path) -> (String, InvokeError) {
    let started = Instant::now();
    let (host, start) = failing_host(dir).await;
    let invoked = tokio::time::timeout(
        Duration::from_secs(5),
        host.invoke("hello", get("/api/hello")),
    )
    .await
    .expect("the invocation answers at once")
    .expect_err("the invocation fails");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    host.shutdown().await;
    (start, invoked)
}

/// A worker.config.json whose program does not exist, in `dir/workers`.
fn missing_runtime_program(dir: &Path) {
    write(
        &dir.join("workers").join(RUNTIME).join("worker.config.json"),
        r#"{"description": {"language": "echo", "defaultExecutablePath": "fnhost-no-such-runtime"}}"#,
    );
}

/// The invocation's error is `Unavailable` and says `what`.
fn unavailable_saying(e: &InvokeError, what: &str) {
    match e {
        InvokeError::Unavailable { function, error } => {
            assert_eq!(function, "hello");
            assert!(error.unavailable);
            assert!(
                error.message.contains(what),
                "'{what}' in: {}",
                error.message
            );
        }
        other => panic!("unavailable, saying '{what}': {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_runtime_program_answers_unavailable() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    missing_runtime_program(dir.path());
    let (start, invoked) = failed_start(dir.path()).await;
    assert!(
        start.contains("cannot start `fnhost-no-such-runtime`"),
        "{start}"
    );
    assert!(start.contains("installed and on PATH"), "{start}");
    unavailable_saying(&invoked, "cannot start `fnhost-no-such-runtime`");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_front_answers_503_with_the_reason_when_the_worker_cannot_start() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    missing_runtime_program(dir.path());
    let (host, _) = failing_host(dir.path()).await;
    let host = Arc::new(host);
    let front_log = Lines::default();
    let front = Front::start(host.clone(), front_log.sink()).await;
    let response = http_get(front.addr, "/api/hello").await;
    assert!(
        response.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{response}"
    );
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    assert!(
        body.starts_with("Function 'hello' could not run: "),
        "{body}"
    );
    assert!(
        body.contains("cannot start `fnhost-no-such-runtime`"),
        "{body}"
    );
    assert!(
        !front_log
            .with("cannot start `fnhost-no-such-runtime`")
            .is_empty(),
        "the reason is logged: {:?}",
        front_log.all()
    );
    front.stop().await;
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_worker_for_the_runtime_answers_unavailable() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    std::fs::create_dir_all(dir.path().join("workers")).expect("a folder");
    let (start, invoked) = failed_start(dir.path()).await;
    assert!(
        start.contains("no language worker for FUNCTIONS_WORKER_RUNTIME 'echo'"),
        "{start}"
    );
    unavailable_saying(&invoked, "fnhost workers install");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_worker_config_answers_unavailable() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let config = dir
        .path()
        .join("workers")
        .join(RUNTIME)
        .join("worker.config.json");
    write(&config, r#"{"description": {"language": "echo", "#);
    let (start, invoked) = failed_start(dir.path()).await;
    assert!(start.contains("the echo worker is broken"), "{start}");
    assert!(start.contains("not valid JSON"), "{start}");
    unavailable_saying(&invoked, &config.display().to_string());
    unavailable_saying(&invoked, "not valid JSON");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_exits_at_once_answers_unavailable() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let folder = dir.path().join("workers").join(RUNTIME);
    write_launcher(&dir.path().join("workers"), RUNTIME).expect("a worker folder");
    write(
        &folder.join("launch.sh"),
        "#!/bin/sh\necho 'cannot find my runtime' >&2\nexit 3\n",
    );
    let (start, invoked) = failed_start(dir.path()).await;
    assert!(
        start.contains("exited (exit status: 3) before it connected"),
        "{start}"
    );
    assert!(start.contains("cannot find my runtime"), "{start}");
    unavailable_saying(&invoked, "exit status: 3");
    unavailable_saying(&invoked, "cannot find my runtime");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn language_worker_app_settings_reach_the_worker_process() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let app = app(
        dir.path(),
        r#"{"version": "2.0"}"#,
        &[
            (
                "languageWorkers__echo__arguments",
                "--inspect --max-old-space-size=64",
            ),
            (
                "languageWorkers:echo:defaultExecutablePath",
                "{workerDirectoryPath}/other.sh",
            ),
        ],
    );
    write_script(
        &dir.path().join("workers").join(RUNTIME).join("other.sh"),
        "via-other",
    )
    .expect("the other launcher");
    let worker = StandIn::new()
        .with_function(http_function("hello"))
        .on_invocation(|r| vec![ok_response(&r.invocation_id, "hi")]);
    let stand_in = Arc::new(worker);
    let log = stand_in
        .clone()
        .log_sink(tokio::runtime::Handle::current(), Arc::new(|_: &str| {}));
    let factory = LanguageWorkerFactory::new()
        .with_workers_dir(dir.path().join("workers"))
        .with_log(log);
    let host = Host::builder().factory(Arc::new(factory)).build(app);
    host.start().await.expect("the host starts");
    let launches = stand_in.launches();
    assert_eq!(launches.len(), 1, "{launches:?}");
    let args = &launches[0].args;
    // other.sh printed its word, then its arguments: the app setting's
    // arguments first, then fnhost's connection flags.
    assert_eq!(
        args[..3],
        ["via-other", "--inspect", "--max-old-space-size=64"],
        "{args:?}"
    );
    assert_eq!(args[3], "--host", "{args:?}");
    let result = host
        .invoke("hello", get("/api/hello"))
        .await
        .expect("hello runs");
    assert_eq!(body(&host, "hello", &result), "hi");
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_cannot_restart_answers_unavailable_at_once() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let app = app(dir.path(), r#"{"version": "2.0"}"#, &[]);
    // The first process serves for a second, then exits; every later one
    // exits at once.
    write(
        &dir.path().join("workers").join(RUNTIME).join("launch.sh"),
        &format!(
            "#!/bin/sh\nd=$(dirname \"$0\")\nif [ -e \"$d/ran\" ]; then echo 'the runtime is gone' >&2; exit 3; fi\ntouch \"$d/ran\"\necho \"{LAUNCH_MARKER} $*\"\nsleep 1\n"
        ),
    );
    let worker = StandIn::new()
        .with_function(http_function("hello"))
        .on_invocation(|r| vec![ok_response(&r.invocation_id, "hi")]);
    let host = host(dir.path(), app, worker, &Lines::default()).await;
    let first = host.invoke("hello", get("/api/hello")).await;
    assert_eq!(
        body(&host, "hello", &first.expect("the first process serves")),
        "hi"
    );
    // The process exits after a second and is started again after another;
    // that start fails. From then on, invocations answer at once.
    let deadline = Instant::now() + Duration::from_secs(10);
    let error = loop {
        let asked = Instant::now();
        match host.invoke("hello", get("/api/hello")).await {
            Ok(_) => {}
            Err(e) if e.to_string().contains("last start failed") => {
                assert!(
                    asked.elapsed() < Duration::from_secs(3),
                    "{:?}",
                    asked.elapsed()
                );
                break e;
            }
            Err(e) => panic!("unavailable with the last start's reason: {e}"),
        }
        assert!(
            Instant::now() < deadline,
            "the failed restart was never reported"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    unavailable_saying(&error, "the runtime is gone");
    let again = Instant::now();
    let e = host
        .invoke("hello", get("/api/hello"))
        .await
        .expect_err("still down");
    unavailable_saying(&e, "exit status: 3");
    assert!(
        again.elapsed() < Duration::from_millis(500),
        "{:?}",
        again.elapsed()
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invocation_whose_client_goes_away_is_cancelled() {
    use tokio::io::AsyncWriteExt as _;
    let dir = tempfile::tempdir().expect("a temporary folder");
    let app = app(dir.path(), r#"{"version": "2.0"}"#, &[]);
    let (worker, mut events) = cancel_stand_in(true);
    let host = Arc::new(host(dir.path(), app, worker, &Lines::default()).await);
    let front = Front::start(host.clone(), Arc::new(|_: &str| {})).await;
    let addr = front.addr;
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(b"GET /api/slow HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("a request");
    let request = next_event(&mut events).await;
    let id = request
        .strip_prefix("request slow ")
        .unwrap_or_else(|| panic!("{request}"))
        .to_owned();
    // The client goes away.
    drop(tcp);
    assert_eq!(next_event(&mut events).await, format!("cancel {id}"));
    front.stop().await;
    host.shutdown().await;
}

/// The stand-in's next event, within 5 s.
async fn next_event(events: &mut Events) -> String {
    tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .expect("the stand-in hears within 5 s")
        .expect("an event")
}

/// The HTTP front on a host, on a free loopback port.
struct Front {
    addr: std::net::SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    serving: tokio::task::JoinHandle<fnhost_core::http::Stopped>,
}

impl Front {
    async fn start(host: Arc<Host>, log: LogSink) -> Front {
        let server = HttpFront::new(host)
            .with_log(log)
            .bind("127.0.0.1:0".parse().expect("an address"))
            .await
            .expect("the front binds");
        let addr = server.local_addr();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(server.serve(async {
            let _ = stopped.await;
        }));
        Front {
            addr,
            stop,
            serving,
        }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.serving.await;
    }
}
