//! The custom handler executor against a Node handler: payload and
//! forwarding modes, and faults, each followed by a good invocation.

#![cfg(feature = "tokio")]

mod exec_support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use exec_support::{
    TestApp, eventually, failure, handler, http_in_out, invoke_items, manual, process_is_gone,
    response_of, retried_return, twenty_at_once, two_retries,
};
use fnhost_core::exec::{CustomHandlerFactory, CustomHandlerOptions, HandlerStream, LogSink};
use fnhost_core::invoke::http::HttpRequest;
use fnhost_core::invoke::{BindingData, InvokeError};
use fnhost_core::{Host, Invocation, Method};
use serde_json::{Value, json};

type Lines = Arc<Mutex<Vec<(HandlerStream, String)>>>;

/// host.json running tests/handlers/handler.js with node.
fn host_json(extra: Value) -> Value {
    let mut host = json!({
        "version": "2.0",
        "customHandler": {
            "description": {
                "defaultExecutablePath": "node",
                "defaultWorkerPath": "handler.js",
                "arguments": ["--flag", "%MY_SETTING%"]
            }
        }
    });
    if let Value::Object(e) = extra {
        for (k, v) in e {
            if k == "enableForwardingHttpRequest" {
                host["customHandler"][k] = v;
            } else {
                host[k] = v;
            }
        }
    }
    host
}

fn handler_app(extra: Value) -> TestApp {
    let app = TestApp::new(host_json(extra));
    app.file("handler.js", &handler("handler.js"));
    app.function("Manual", manual(), &[]);
    app.function("Items", http_in_out(Some("items/{id}")), &[]);
    app.function("Hello", http_in_out(Some("hello")), &[]);
    app
}

fn options() -> (CustomHandlerOptions, Lines) {
    let lines: Lines = Arc::default();
    let sink = lines.clone();
    let options = CustomHandlerOptions::new()
        .with_readiness_timeout(Duration::from_secs(20))
        .with_shutdown_grace(Duration::from_secs(2))
        .with_log_sink(LogSink::new(move |stream, line| {
            if let Ok(mut l) = sink.lock() {
                l.push((stream, line.to_owned()));
            }
        }));
    (options, lines)
}

fn host_with(app: &TestApp, options: CustomHandlerOptions, settings: &[(&str, &str)]) -> Host {
    let mut all = vec![("MY_SETTING", "from-settings")];
    all.extend_from_slice(settings);
    Host::builder()
        .factory(Arc::new(CustomHandlerFactory::with_options(options)))
        .build(app.load(&all))
}

/// A host of `app` whose setting `setting` names a marker file in the app
/// folder (which the handler writes when it gets there); the host and the
/// marker's path.
fn host_with_marker(
    app: &TestApp,
    options: CustomHandlerOptions,
    setting: &str,
) -> (Host, std::path::PathBuf) {
    let marker = app.root().join(format!("{setting}.marker"));
    let path = marker.to_str().expect("UTF-8 path");
    (host_with(app, options, &[(setting, path)]), marker)
}

/// A host of `app` with the default test options.
fn default_host(app: &TestApp) -> Host {
    let (options, _) = options();
    host_with(app, options, &[])
}

async fn echo(host: &Host) -> Value {
    let result = host
        .invoke("Manual", Invocation::new(json!({"mode": "echo"})))
        .await
        .expect("echo succeeds");
    result.return_value.expect("a return value").to_json()
}

async fn fails_then_recovers(extra: Value, mode: &str) -> InvokeError {
    let app = handler_app(extra);
    let host = default_host(&app);
    host.start().await.expect("the handler starts");
    let (err, _) = failure(&host, "Manual", json!({"mode": mode})).await;
    echo(&host).await;
    host.shutdown().await;
    err
}

#[tokio::test]
async fn payload_mode_manual_trigger() {
    let app = handler_app(json!({}));
    let (options, lines) = options();
    let host = host_with(&app, options, &[]);
    host.start().await.expect("the handler starts");
    let inv = Invocation::new(json!({"mode": "echo", "n": 1}))
        .with_input("other", json!("x"))
        .with_metadata("Key", "v")
        .with_metadata("manualTrigger", "left out");
    let id = inv.id.to_string();
    let result = host.invoke("manual", inv).await.expect("success");
    assert_eq!(result.logs, ["echo log"]);
    assert_eq!(
        result.output("out").map(BindingData::to_json),
        Some(json!({"mode": "echo", "n": 1}))
    );
    let ret = result.return_value.expect("$return").to_json();
    // Azure's shapes (PayloadShape::Azure): objects stay objects, other
    // values travel as their JSON text.
    assert_eq!(
        ret["data"],
        json!({"input": {"mode": "echo", "n": 1}, "other": "\"x\""})
    );
    assert_eq!(ret["metadata"]["Key"], "\"v\"");
    assert!(ret["metadata"].get("manualTrigger").is_none());
    assert!(ret["metadata"].get("RetryContext").is_none());
    assert_eq!(ret["metadata"]["sys"]["MethodName"], "Manual");
    assert_eq!(ret["headers"]["invocationId"], id.as_str());
    assert_eq!(
        ret["headers"]["userAgent"],
        format!("Azure-Functions-Host/{}", fnhost_core::exec::HOST_VERSION)
    );
    assert_eq!(
        ret["headers"]["hostVersion"],
        fnhost_core::exec::HOST_VERSION
    );
    assert_eq!(ret["argv"], json!(["--flag", "from-settings"]));
    assert_eq!(ret["env"]["setting"], "from-settings");
    assert_eq!(ret["env"]["port"], ret["env"]["httpPort"]);
    assert_eq!(ret["env"]["workerId"], ret["env"]["httpWorkerId"]);
    let root = std::fs::canonicalize(app.root()).expect("root");
    assert_eq!(
        std::fs::canonicalize(ret["cwd"].as_str().expect("cwd")).expect("cwd"),
        root
    );
    assert!(ret["env"]["root"].as_str().is_some());
    let seen = lines.lock().expect("lines").clone();
    assert!(
        seen.iter()
            .any(|(s, l)| *s == HandlerStream::Stdout && l.starts_with("listening on ")),
        "{seen:?}"
    );
    assert!(
        eventually(Duration::from_secs(5), || {
            lines
                .lock()
                .expect("lines")
                .iter()
                .any(|(s, l)| *s == HandlerStream::Stderr && l == "stderr says hello")
        })
        .await
    );
    host.shutdown().await;
}

#[tokio::test]
async fn payload_mode_http_trigger_with_route_query_and_body() {
    let app = handler_app(json!({}));
    let host = default_host(&app);
    // No start(): the first invocation starts the handler.
    let (handle, result) = invoke_items(&host, "x").await;
    assert_eq!(result.logs, ["items called"]);
    assert!(matches!(result.output("res"), Some(BindingData::Json(_))));
    let response = response_of(&handle, &result);
    assert_eq!(response.status, 201);
    assert_eq!(response.header("X-Fn"), Some("Items"));
    assert_eq!(response.body, b"id=42 q=x body=hello");
    let ret = result.return_value.expect("$return").to_json();
    // Derived from the request: route values, Query, Headers, sys.
    assert_eq!(ret["metadata"]["Query"], json!({"q": "x"}));
    assert_eq!(ret["metadata"]["id"], "42");
    assert_eq!(ret["metadata"]["Headers"]["Content-Type"], "text/plain");
    assert_eq!(ret["metadata"]["sys"]["MethodName"], "Items");
    assert!(ret["metadata"].get("req").is_none());
    host.shutdown().await;
}

#[tokio::test]
async fn forwarding_mode_sends_the_request_as_is() {
    let app = handler_app(json!({"enableForwardingHttpRequest": true}));
    let host = default_host(&app);
    host.start().await.expect("the handler starts");
    let req = HttpRequest {
        url: "http://localhost:7071/api/hello?name=a%20b&x=1".into(),
        ..HttpRequest::new(Method::Put, "/api/hello")
            .with_query("name", "a b")
            .with_query("x", "1")
            .with_header("X-Test", "yes")
            .with_header("Connection", "close")
            .with_body("raw body")
    };
    let inv = Invocation::new(req);
    let id = inv.id.to_string();
    let result = host.invoke("Hello", inv).await.expect("success");
    let Some(BindingData::HttpResponse(response)) = result.output("res") else {
        panic!("an HTTP response on res: {result:?}");
    };
    assert_eq!(response.status, 202);
    assert_eq!(response.header("x-forwarded-by"), Some("handler"));
    let body: Value = serde_json::from_slice(&response.body).expect("JSON");
    assert_eq!(
        body,
        json!({"method": "PUT", "url": "/api/hello?name=a%20b&x=1", "test": "yes",
               "body": "raw body", "invocationId": id})
    );

    // Redirects are not followed.
    let req = HttpRequest {
        url: "http://localhost:7071/api/redirect".into(),
        ..HttpRequest::new(Method::Get, "/api/redirect")
    };
    let result = host
        .invoke("Hello", Invocation::new(req))
        .await
        .expect("success");
    let Some(BindingData::HttpResponse(response)) = result.output("res") else {
        panic!("an HTTP response on res");
    };
    assert_eq!(response.status, 302);
    assert_eq!(response.header("location"), Some("/api/elsewhere"));

    // Functions with other bindings still use payload mode.
    assert_eq!(echo(&host).await["data"]["input"]["mode"], "echo");
    host.shutdown().await;
}

#[tokio::test]
async fn a_handler_that_crashes_mid_invocation_is_restarted() {
    let app = handler_app(json!({}));
    let host = default_host(&app);
    host.start().await.expect("the handler starts");
    let first_pid = echo(&host).await["pid"].as_u64().expect("pid");
    let (err, message) = failure(&host, "Manual", json!({"mode": "crash"})).await;
    assert!(matches!(err, InvokeError::Failed { .. }), "{err:?}");
    assert!(message.contains("exited with status 7"), "{message}");
    assert!(message.contains("during POST /Manual"), "{message}");
    assert!(message.contains("crashing on purpose"), "{message}");
    let second_pid = echo(&host).await["pid"].as_u64().expect("pid");
    assert_ne!(first_pid, second_pid);
    host.shutdown().await;
}

#[tokio::test]
async fn a_handler_that_never_becomes_ready_fails_clearly_then_recovers() {
    let app = handler_app(json!({}));
    let (options, _) = options();
    let options = options.with_readiness_timeout(Duration::from_millis(1500));
    let (host, _) = host_with_marker(&app, options, "NEVER_READY_MARKER");
    let err = host.start().await.expect_err("not ready");
    let message = err.to_string();
    assert!(
        message.contains("did not answer GET http://127.0.0.1:"),
        "{message}"
    );
    assert!(message.contains("within 1.5s"), "{message}");
    assert!(message.contains("not listening this time"), "{message}");
    // The next invocation starts it again, and this time it listens.
    assert_eq!(echo(&host).await["data"]["input"]["mode"], "echo");
    host.shutdown().await;
}

#[tokio::test]
async fn a_non_2xx_answer_fails_the_invocation() {
    let err = fails_then_recovers(json!({}), "status500").await;
    let message = err.to_string();
    assert!(
        message.contains("answered 500 Internal Server Error"),
        "{message}"
    );
    assert!(message.contains("it broke"), "{message}");
    assert_eq!(err.logs(), ["about to fail"]);
}

#[tokio::test]
async fn a_malformed_answer_fails_the_invocation() {
    let err = fails_then_recovers(json!({}), "garbage").await;
    let message = err.to_string();
    assert!(message.contains("not valid JSON"), "{message}");
    assert!(message.contains("<html>not json</html>"), "{message}");
}

#[tokio::test]
async fn a_handler_that_hangs_past_the_timeout() {
    let err = fails_then_recovers(json!({"functionTimeout": "00:00:02"}), "hang").await;
    assert!(matches!(err, InvokeError::Timeout { .. }), "{err:?}");
}

#[tokio::test]
async fn retry_context_reaches_the_handler() {
    let app = handler_app(json!({ "retry": two_retries() }));
    let host = default_host(&app);
    assert_eq!(
        retried_return(&host, "Manual").await,
        json!({"RetryCount": 2, "MaxRetryCount": 2, "Exception": null})
    );
    host.shutdown().await;
}

#[tokio::test]
async fn twenty_concurrent_invocations() {
    let app = handler_app(json!({}));
    let host = Arc::new(default_host(&app));
    host.start().await.expect("the handler starts");
    let handle = host.resolve("Manual").expect("Manual");
    let seen = twenty_at_once(&handle, |r| {
        r.output("out").and_then(|o| o.to_json()["i"].as_i64())
    })
    .await;
    assert_eq!(seen, (0..20).collect::<Vec<i64>>());
    host.shutdown().await;
}

#[tokio::test]
async fn shutdown_sends_sigterm_and_the_handler_exits() {
    let app = handler_app(json!({}));
    let (options, _) = options();
    let (host, marker) = host_with_marker(&app, options, "SIGTERM_MARKER");
    host.start().await.expect("the handler starts");
    let pid = u32::try_from(echo(&host).await["pid"].as_u64().expect("pid")).expect("pid");
    host.shutdown().await;
    assert!(marker.exists(), "the handler saw no SIGTERM");
    assert!(eventually(Duration::from_secs(5), || process_is_gone(pid)).await);
    let err = host
        .invoke("Manual", Invocation::new(json!({})))
        .await
        .expect_err("shut down");
    assert!(err.to_string().contains("shut down"), "{err}");
}

#[tokio::test]
async fn a_missing_executable_is_a_clear_error() {
    let app = TestApp::new(json!({
        "version": "2.0",
        "customHandler": {"description": {"defaultExecutablePath": "no-such-handler-binary"}}
    }));
    app.function("Manual", manual(), &[]);
    let host = default_host(&app);
    let err = host.start().await.expect_err("cannot start");
    assert!(err.to_string().contains("no-such-handler-binary"), "{err}");
    assert!(err.to_string().contains("PATH"), "{err}");
    let err = host
        .invoke("Manual", Invocation::new(json!({})))
        .await
        .expect_err("cannot run");
    assert!(matches!(err, InvokeError::Unavailable { .. }), "{err:?}");
}

#[tokio::test]
async fn default_executors_pick_the_custom_handler() {
    let app = handler_app(json!({}));
    let host = Host::builder()
        .with_default_executors()
        .build(app.load(&[("MY_SETTING", "s")]));
    assert_eq!(echo(&host).await["argv"], json!(["--flag", "s"]));
    host.shutdown().await;
}
