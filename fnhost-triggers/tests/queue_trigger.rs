//! queueTrigger against a real Azurite: every message processed once,
//! retries and the poison queue, both encodings, the trigger metadata,
//! renewal of long runs, hot swap, and a queue service that is down.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fnhost_core::invoke::{ExecutorError, InvocationResult};
use fnhost_core::{FunctionApp, Host, Invocation, NativeExecutor};
use fnhost_triggers::queue::encode_message;
use fnhost_triggers::storage::QueueClient;
use fnhost_triggers::{Listeners, MessageEncoding};
use serde_json::{Value, json};
use support::{Azurite, listen, put_base64, queue_function, wait_for_count, wait_until, write_app};

const LIMIT: Duration = Duration::from_secs(60);
const STOP: Duration = Duration::from_secs(10);

fn host_json(queues: &str) -> String {
    format!(r#"{{"version": "2.0", "extensions": {{"queues": {queues}}}}}"#)
}

fn load(dir: &Path, azurite: &Azurite) -> FunctionApp {
    let app = FunctionApp::loader(dir)
        .with_environment(false)
        .with_setting("QueueConn", azurite.connection_string())
        .load()
        .unwrap();
    assert!(app.is_valid(), "{:?}", app.diagnostics());
    app
}

async fn created(azurite: &Azurite, name: &str) -> QueueClient {
    let q = azurite.service().queue(name);
    q.create().await.unwrap();
    q
}

/// An app of one queue function, `function` on `queue`, with `queues` as
/// host.json's queue options.
fn one_function_app(function: &str, queue: &str, queues: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_app(
        dir.path(),
        &host_json(queues),
        &[(function, queue_function(queue, "QueueConn"))],
    );
    dir
}

/// A host of the app in `dir` whose `function` records what it sees (and
/// fails where `fail` says).
fn recording_host(
    dir: &Path,
    azurite: &Azurite,
    function: &str,
    fail: impl Fn(&Invocation) -> bool + Send + Sync + 'static,
) -> (Arc<Host>, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let native = NativeExecutor::new().function(function, recording(seen.clone(), fail));
    let host = Host::builder().native(native).build(load(dir, azurite));
    (Arc::new(host), seen)
}

/// An app of one function that records what it sees, on its own queue.
struct RecordingApp {
    queue: QueueClient,
    host: Arc<Host>,
    seen: Arc<Seen>,
    dir: tempfile::TempDir,
}

/// A [`RecordingApp`] of `function` on the (created) queue of its name in
/// lower case; host.json's queue options are `options` and a polling
/// interval of at most 0.2 s.
async fn recording_app(
    azurite: &Azurite,
    function: &str,
    options: Value,
    fail: impl Fn(&Invocation) -> bool + Send + Sync + 'static,
) -> RecordingApp {
    let mut queues = json!({"maxPollingInterval": "00:00:00.2"});
    if let (Value::Object(queues), Value::Object(options)) = (&mut queues, options) {
        queues.extend(options);
    }
    let queue = created(azurite, &function.to_lowercase()).await;
    let dir = one_function_app(function, queue.name(), &queues.to_string());
    let (host, seen) = recording_host(dir.path(), azurite, function, fail);
    RecordingApp {
        queue,
        host,
        seen,
        dir,
    }
}

/// Every message's text (as the function saw it) and its count.
#[derive(Default)]
struct Seen {
    calls: AtomicUsize,
    texts: Mutex<HashMap<String, usize>>,
    invocations: Mutex<Vec<Invocation>>,
}

impl Seen {
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// Waits until the function has run `n` times.
    async fn wait_for_calls(&self, n: usize, what: &str) {
        wait_until(LIMIT, what, async || self.calls() >= n).await;
    }
}

fn recording(
    seen: Arc<Seen>,
    fail: impl Fn(&Invocation) -> bool + Send + Sync + 'static,
) -> impl Fn(
    Invocation,
) -> std::pin::Pin<Box<dyn Future<Output = Result<InvocationResult, ExecutorError>> + Send>>
+ Send
+ Sync
+ 'static {
    let fail = Arc::new(fail);
    move |inv: Invocation| {
        let seen = seen.clone();
        let fail = fail.clone();
        Box::pin(async move {
            seen.calls.fetch_add(1, Ordering::SeqCst);
            let text = match inv.trigger.to_json() {
                Value::String(s) => s,
                other => other.to_string(),
            };
            *seen.texts.lock().unwrap().entry(text).or_default() += 1;
            let failed = fail(&inv);
            seen.invocations.lock().unwrap().push(inv);
            if failed {
                Err(ExecutorError::failed("failing on purpose"))
            } else {
                Ok(InvocationResult::new())
            }
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_messages_each_processed_once() {
    let azurite = Azurite::start().await;
    let app = recording_app(&azurite, "Work", json!({"batchSize": 16}), |_| false).await;
    let (q, seen) = (&app.queue, &app.seen);
    let (handle, lines) = listen(app.host.clone());
    const N: usize = 400;
    // Put them while the listener runs, from four writers.
    let mut writers = Vec::new();
    for w in 0..4 {
        let q = q.clone();
        writers.push(tokio::spawn(async move {
            for i in (w..N).step_by(4) {
                put_base64(&q, &format!("m{i}")).await;
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    seen.wait_for_calls(N, "all messages processed").await;
    wait_for_count(LIMIT, q, 0).await;
    // Nothing comes twice, even a while later.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(handle.stop(STOP).await);
    let texts = seen.texts.lock().unwrap().clone();
    assert_eq!(seen.calls(), N);
    assert_eq!(texts.len(), N);
    for i in 0..N {
        assert_eq!(texts.get(&format!("m{i}")), Some(&1), "m{i}");
    }
    assert!(lines.has("listening to queue work for Work"), "{lines:?}");
    azurite.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_message_is_poisoned_after_exactly_max_dequeue_count_tries() {
    let azurite = Azurite::start().await;
    let app = recording_app(&azurite, "Jobs", json!({"maxDequeueCount": 3}), |_| true).await;
    let (q, seen) = (&app.queue, &app.seen);
    let (handle, lines) = listen(app.host.clone());
    let wire = encode_message("doomed", MessageEncoding::Base64);
    q.put(&wire, None).await.unwrap();
    let poison = azurite.service().queue("jobs-poison");
    wait_for_count(LIMIT, &poison, 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(handle.stop(STOP).await);
    assert_eq!(seen.calls(), 3, "exactly three tries");
    let counts: Vec<Value> = seen
        .invocations
        .lock()
        .unwrap()
        .iter()
        .map(|i| i.metadata["DequeueCount"].clone())
        .collect();
    assert_eq!(counts, [1, 2, 3]);
    // The wire text is copied as it was (still base64).
    let p = poison.peek(32).await.unwrap();
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].text, wire);
    assert_eq!(q.approximate_count().await.unwrap(), Some(0));
    assert!(
        lines.mention(
            "Message has reached MaxDequeueCount of 3. Moving message to queue 'jobs-poison'."
        ),
        "{lines:?}"
    );
    azurite.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_fails_once_is_retried_after_the_visibility_timeout_then_deleted() {
    let azurite = Azurite::start().await;
    let options = json!({"visibilityTimeout": "00:00:01"});
    let app = recording_app(&azurite, "Retry", options, |inv| {
        inv.metadata["DequeueCount"] == 1
    })
    .await;
    let (q, seen) = (&app.queue, &app.seen);
    let handle = Listeners::new(app.host.clone()).start();
    put_base64(q, "flaky").await;
    seen.wait_for_calls(2, "the second try").await;
    wait_for_count(LIMIT, q, 0).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(handle.stop(STOP).await);
    assert_eq!(seen.calls(), 2);
    let invocations = seen.invocations.lock().unwrap().clone();
    // The retry waited for visibilityTimeout (a second, give or take the
    // service's one-second clock).
    let first = invocations[0].metadata["NextVisibleTime"].clone();
    let second = &invocations[1];
    assert_eq!(second.metadata["DequeueCount"], 2);
    assert_eq!(second.metadata["Id"], invocations[0].metadata["Id"]);
    assert_ne!(second.metadata["NextVisibleTime"], first);
    let poison = azurite.service().queue("retry-poison");
    assert_eq!(poison.approximate_count().await.unwrap(), None);
    azurite.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encodings_base64_and_none() {
    let azurite = Azurite::start().await;
    // Two apps (host.json is per app): base64 and none.
    let app64 = recording_app(&azurite, "B64", json!({}), |_| false).await;
    let none = json!({"messageEncoding": "none"});
    let app_none = recording_app(&azurite, "Plain", none, |_| false).await;
    let (b64, seen64, host64) = (&app64.queue, &app64.seen, app64.host.clone());
    let (plain, seen_none, host_none) = (&app_none.queue, &app_none.seen, app_none.host.clone());
    let (h64, lines) = listen(host64);
    let h_none = Listeners::new(host_none).start();

    put_base64(b64, "héllo base64").await;
    // Plain text where base64 is expected: poisoned without a run.
    b64.put("not base64!", None).await.unwrap();
    plain.put("plain <text> & more", None).await.unwrap();

    wait_until(LIMIT, "both messages", async || {
        seen64.calls() >= 1 && seen_none.calls() >= 1
    })
    .await;
    // The undecodable message goes to the poison queue.
    let poison = azurite.service().queue("b64-poison");
    wait_for_count(LIMIT, &poison, 1).await;
    assert!(h64.stop(STOP).await);
    assert!(h_none.stop(STOP).await);
    assert_eq!(seen64.calls(), 1);
    assert_eq!(seen64.texts.lock().unwrap().get("héllo base64"), Some(&1));
    assert_eq!(
        seen_none.texts.lock().unwrap().get("plain <text> & more"),
        Some(&1)
    );
    assert_eq!(poison.peek(1).await.unwrap()[0].text, "not base64!");
    assert!(lines.mention("is not base64"), "{lines:?}");
    azurite.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_function_sees_the_host_metadata_and_a_json_body() {
    let azurite = Azurite::start().await;
    let q = created(&azurite, "orders").await;
    let dir = one_function_app(
        "Orders",
        "%OrdersQueue%",
        r#"{"maxPollingInterval": "00:00:00.2"}"#,
    );
    let app = FunctionApp::loader(dir.path())
        .with_environment(false)
        .with_setting("QueueConn", azurite.connection_string())
        .with_setting("OrdersQueue", "Orders")
        .load()
        .unwrap();
    let seen = Arc::new(Seen::default());
    let native = NativeExecutor::new().function("Orders", recording(seen.clone(), |_| false));
    let host = Arc::new(Host::builder().native(native).build(app));
    let handle = Listeners::new(host).start();
    let body = r#"{"OrderId": 42, "Customer": {"Name": "Ada"}, "DequeueCount": "mine"}"#;
    let put = put_base64(&q, body).await;
    seen.wait_for_calls(1, "the invocation").await;
    assert!(handle.stop(STOP).await);
    let invocations = seen.invocations.lock().unwrap().clone();
    let inv = &invocations[0];
    // The trigger value is the parsed JSON body.
    assert_eq!(inv.trigger.to_json()["OrderId"], 42);
    assert_eq!(inv.trigger.to_json()["Customer"]["Name"], "Ada");
    let m = &inv.metadata;
    assert_eq!(m["Id"], put.id.as_str());
    assert_eq!(m["QueueTrigger"], body);
    assert!(!m["PopReceipt"].as_str().unwrap().is_empty());
    for key in ["InsertionTime", "ExpirationTime", "NextVisibleTime"] {
        let t = m[key].as_str().unwrap();
        assert!(
            chrono::DateTime::parse_from_rfc3339(t).is_ok() && t.ends_with("+00:00"),
            "{key}: {t}"
        );
    }
    // The body's properties are binding data, and win on a clash.
    assert_eq!(m["OrderId"], 42);
    assert_eq!(m["Customer"]["Name"], "Ada");
    assert_eq!(m["DequeueCount"], "mine");
    assert_eq!(m["sys"]["MethodName"], "Orders");
    azurite.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_run_keeps_its_message_hidden() {
    let azurite = Azurite::start().await;
    let q = created(&azurite, "slow").await;
    let dir = one_function_app("Slow", "slow", r#"{"maxPollingInterval": "00:00:00.2"}"#);
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let native = NativeExecutor::new().function("Slow", move |_inv| {
        let c = c.clone();
        async move {
            c.fetch_add(1, Ordering::SeqCst);
            // Three times the visibility: renewed twice or more meanwhile.
            tokio::time::sleep(Duration::from_secs(6)).await;
            Ok(InvocationResult::new())
        }
    });
    let host = Arc::new(
        Host::builder()
            .native(native)
            .build(load(dir.path(), &azurite)),
    );
    let handle = Listeners::new(host)
        .with_message_visibility(Duration::from_secs(2))
        .start();
    put_base64(&q, "slow").await;
    wait_until(LIMIT, "the queue to be empty", async || {
        calls.load(Ordering::SeqCst) >= 1 && q.approximate_count().await.unwrap() == Some(0)
    })
    .await;
    assert!(handle.stop(STOP).await);
    assert_eq!(calls.load(Ordering::SeqCst), 1, "never run twice");
    azurite.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_swap_stops_the_listener_of_a_removed_function() {
    let azurite = Azurite::start().await;
    let app = recording_app(&azurite, "Swap", json!({}), |_| false).await;
    let (q, seen, host, dir) = (&app.queue, &app.seen, &app.host, &app.dir);
    let (handle, lines) = listen(host.clone());
    put_base64(q, "before").await;
    seen.wait_for_calls(1, "the first message").await;
    // A version without the function.
    let empty = tempfile::tempdir().unwrap();
    write_app(empty.path(), &host_json("{}"), &[]);
    let old = host.swap(load(empty.path(), &azurite)).await.unwrap();
    old.shutdown().await;
    wait_until(LIMIT, "the listener to stop", async || {
        lines.has("stopped listening to queue swap for Swap")
    })
    .await;
    put_base64(q, "after").await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(seen.calls(), 1);
    assert_eq!(q.approximate_count().await.unwrap(), Some(1));
    // The function comes back: its listener starts again.
    host.swap(load(dir.path(), &azurite)).await.unwrap();
    seen.wait_for_calls(2, "the message put meanwhile").await;
    assert!(handle.stop(STOP).await);
    assert_eq!(seen.texts.lock().unwrap().get("after"), Some(&1));
    azurite.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_service_that_is_down_is_retried_and_logged() {
    // Start Azurite only to learn a free port, then stop it.
    let azurite = Azurite::start().await;
    let endpoint = azurite.endpoint.clone();
    let connection = azurite.connection_string();
    azurite.stop().await;
    let dir = one_function_app("Down", "down", r#"{"maxPollingInterval": "00:00:00.3"}"#);
    let app = FunctionApp::loader(dir.path())
        .with_environment(false)
        .with_setting("QueueConn", &connection)
        .load()
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let native = NativeExecutor::new().function("Down", move |_inv| {
        c.fetch_add(1, Ordering::SeqCst);
        async { Ok(InvocationResult::new()) }
    });
    let host = Arc::new(Host::builder().native(native).build(app));
    let (handle, lines) = listen(host);
    lines
        .wait_for(LIMIT, "polling failed, retrying with backoff: cannot reach")
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Logged once, not at every poll.
    assert_eq!(lines.count("polling failed"), 1);
    assert!(handle.stop(STOP).await, "stops promptly while failing");
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    let _ = endpoint;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misconfigured_functions_are_reported_not_run() {
    let dir = tempfile::tempdir().unwrap();
    write_app(
        dir.path(),
        &host_json(r#"{"batchSize": 64}"#),
        &[
            ("NoSetting", queue_function("qone", "Missing")),
            ("BadName", queue_function("Bad_Name", "QueueConn")),
        ],
    );
    let app = FunctionApp::loader(dir.path())
        .with_environment(false)
        .with_setting("QueueConn", "UseDevelopmentStorage=true")
        .load()
        .unwrap();
    let host = Arc::new(Host::builder().build(app));
    let specs = Listeners::queue_functions(&host.current());
    let reasons: HashMap<String, String> = specs
        .into_iter()
        .map(|(f, s)| (f, s.unwrap_err()))
        .collect();
    assert!(reasons["NoSetting"].contains("Missing"), "{reasons:?}");
    assert!(reasons["BadName"].contains("not valid"), "{reasons:?}");
    let (handle, lines) = listen(host);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(handle.stop(STOP).await);
    // Each reported once.
    assert_eq!(lines.count("NoSetting"), 1, "{lines:?}");
}
