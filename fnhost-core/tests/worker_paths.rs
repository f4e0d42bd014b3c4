//! Language worker paths no real worker takes: `InvocationCancel` (neither
//! fnhost's nor Microsoft's workers declare it), system logs kept out of a
//! function's log, workers that cannot start, and the `languageWorkers`
//! app settings. The worker is the testkit's stand-in, inside this test,
//! launched through a worker.config.json as any worker is.
#![cfg(all(feature = "workers", feature = "testkit"))]

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fnhost_core::invoke::http::HttpRequest;
use fnhost_core::invoke::{InvocationResult, InvokeError};
use fnhost_core::timer::LogSink;
use fnhost_core::worker::LanguageWorkerFactory;
use fnhost_core::worker::proto::rpc_log::{Level, RpcLogCategory};
use fnhost_core::worker::proto::streaming_message::Content;
use fnhost_core::worker::testkit::{
    StandIn, http_function, log, ok_response, write_launcher, write_script,
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

/// A host on the stand-in; lines of the host log go to `host_log`.
async fn host(
    dir: &Path,
    app: FunctionApp,
    stand_in: StandIn,
    host_log: Arc<Mutex<Vec<String>>>,
) -> Host {
    let rest: LogSink =
        Arc::new(move |line: &str| host_log.lock().expect("the log").push(line.to_owned()));
    let log = Arc::new(stand_in).log_sink(tokio::runtime::Handle::current(), rest);
    let factory = LanguageWorkerFactory::new()
        .with_workers_dir(dir.join("workers"))
        .with_log(log);
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
    let host = host(dir.path(), app, worker, Arc::default()).await;
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
