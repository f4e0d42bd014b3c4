//! The invoke pipeline with native functions: results, HTTP helpers,
//! middleware, retries, timeouts, panics and hot swap.

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use fnhost_core::invoke::http::{HttpRequest, HttpResponse};
use fnhost_core::invoke::{
    BindingData, BoxFuture, ExecutorError, FunctionInfo, Middleware, Next, middleware_fn,
};
use fnhost_core::route::Method;
use fnhost_core::{FunctionApp, Host, Invocation, InvocationResult, InvokeError, NativeExecutor};
use serde_json::json;

fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    fs::write(path, text).expect("write");
}

/// An app of custom-handler functions (no scripts needed), with `host`
/// as host.json.
fn app(host: serde_json::Value) -> (tempfile::TempDir, FunctionApp) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut host = host;
    host["version"] = json!("2.0");
    host["customHandler"] = json!({"description": {"defaultExecutablePath": "handler"}});
    write(&dir.path().join("host.json"), &host.to_string());
    write(
        &dir.path().join("Hello/function.json"),
        r#"{"bindings":[{"type":"httpTrigger","direction":"in","name":"req","authLevel":"anonymous"},{"type":"http","direction":"out","name":"res"}]}"#,
    );
    for name in ["Work", "Flaky", "Slow", "Boom"] {
        write(
            &dir.path().join(format!("{name}/function.json")),
            r#"{"bindings":[{"type":"manualTrigger","direction":"in","name":"input"}]}"#,
        );
    }
    let app = FunctionApp::loader(dir.path())
        .with_environment(false)
        .load()
        .expect("loads");
    assert!(app.is_valid(), "{}", app.diagnostics());
    (dir, app)
}

fn native(counter: Arc<AtomicU32>) -> NativeExecutor {
    NativeExecutor::new()
        .http("Hello", |req: HttpRequest| async move {
            let name = req.query_param("name").unwrap_or("world").to_owned();
            HttpResponse::text(format!("Hello, {name}!"))
        })
        .function("Work", |inv: Invocation| async move {
            let n = inv.trigger.to_json()["n"].as_i64().unwrap_or(0);
            Ok(InvocationResult::returning(json!(n * 2)).with_log("doubled"))
        })
        .function("Flaky", move |inv: Invocation| {
            let counter = counter.clone();
            async move {
                let attempt = counter.fetch_add(1, Ordering::SeqCst);
                if attempt < 2 {
                    Err(ExecutorError::failed(format!("attempt {attempt} failed")))
                } else {
                    Ok(InvocationResult::returning(
                        json!({"retry": inv.retry_count}),
                    ))
                }
            }
        })
        .function("Slow", |_inv| async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok(InvocationResult::new())
        })
        .function("Boom", |inv: Invocation| async move {
            if inv.trigger.to_json()["panic"] == json!(true) {
                panic!("kaboom");
            }
            Ok(InvocationResult::new())
        })
}

#[tokio::test]
async fn a_native_function_returns_its_result_and_logs() {
    let (_dir, app) = app(json!({}));
    let host = Host::builder().native(native(Arc::default())).build(app);
    let handle = host.resolve("work").expect("resolves ignoring case");
    let result = handle
        .invoke(Invocation::new(json!({"n": 21})))
        .await
        .expect("runs");
    assert_eq!(result.return_value, Some(BindingData::Json(json!(42))));
    assert_eq!(result.logs, ["doubled"]);
}

#[tokio::test]
async fn an_http_helper_answers_on_the_named_http_output() {
    let (_dir, app) = app(json!({}));
    let host = Host::builder().native(native(Arc::default())).build(app);
    let handle = host.resolve("Hello").expect("resolves");
    let req = HttpRequest::new(Method::Get, "/api/Hello").with_query("name", "fn");
    let result = handle.invoke(Invocation::new(req)).await.expect("runs");
    let response = handle
        .info()
        .http_response(&result)
        .expect("a response")
        .expect("valid");
    assert_eq!(response.status, 200);
    assert_eq!(response.body, b"Hello, fn!");
}

/// A host of the test app with this host.json `retry` policy, and the
/// count of attempts its functions made.
fn retrying(retry: serde_json::Value) -> (tempfile::TempDir, Host, Arc<AtomicU32>) {
    let (dir, app) = app(json!({ "retry": retry }));
    let counter = Arc::new(AtomicU32::new(0));
    let host = Host::builder().native(native(counter.clone())).build(app);
    (dir, host, counter)
}

#[tokio::test]
async fn failed_attempts_are_retried_by_the_policy() {
    let (_dir, host, counter) = retrying(json!(
        {"strategy": "fixedDelay", "maxRetryCount": 3, "delayInterval": "00:00:00.01"}
    ));
    let result = host
        .invoke("Flaky", Invocation::new(json!({})))
        .await
        .expect("third attempt");
    assert_eq!(
        result.return_value,
        Some(BindingData::Json(json!({"retry": 2})))
    );
    assert_eq!(counter.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn retries_stop_at_the_maximum() {
    let (_dir, host, counter) = retrying(json!(
        {"strategy": "fixedDelay", "maxRetryCount": 1, "delayInterval": "00:00:00"}
    ));
    let err = host
        .invoke("Flaky", Invocation::new(json!({})))
        .await
        .unwrap_err();
    assert!(matches!(err, InvokeError::Failed { .. }), "{err}");
    assert!(err.to_string().contains("attempt 1 failed"), "{err}");
    assert_eq!(counter.load(Ordering::SeqCst), 2, "one try and one retry");
}

#[cfg(feature = "tokio")]
#[tokio::test]
async fn a_function_past_its_timeout_is_cancelled() {
    let (_dir, app) = app(json!({"functionTimeout": "00:00:00.2"}));
    let host = Host::builder().native(native(Arc::default())).build(app);
    let started = std::time::Instant::now();
    let err = host
        .invoke("Slow", Invocation::new(json!({})))
        .await
        .unwrap_err();
    assert!(matches!(err, InvokeError::Timeout { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // the host keeps working
    host.invoke("Work", Invocation::new(json!({"n": 1})))
        .await
        .expect("next one runs");
}

#[tokio::test]
async fn a_panic_is_a_failed_invocation_and_the_host_goes_on() {
    let (_dir, app) = app(json!({}));
    let host = Host::builder().native(native(Arc::default())).build(app);
    let err = host
        .invoke("Boom", Invocation::new(json!({"panic": true})))
        .await
        .unwrap_err();
    match &err {
        InvokeError::Panicked { function, message } => {
            assert_eq!(function, "Boom");
            assert!(message.contains("kaboom"));
        }
        other => panic!("not a panic: {other}"),
    }
    host.invoke("Boom", Invocation::new(json!({})))
        .await
        .expect("the next one runs");
}

#[derive(Debug)]
struct Tag(&'static str, Arc<std::sync::Mutex<Vec<String>>>);

impl Middleware for Tag {
    fn call<'a>(
        &'a self,
        function: &'a FunctionInfo,
        invocation: Invocation,
        next: Next<'a>,
    ) -> BoxFuture<'a, Result<InvocationResult, InvokeError>> {
        Box::pin(async move {
            self.1
                .lock()
                .expect("lock")
                .push(format!("{} {}", self.0, function.name()));
            let result = next.run(invocation).await?;
            Ok(result.with_log(format!("after {}", self.0)))
        })
    }
}

#[tokio::test]
async fn middleware_runs_in_order_around_the_executor() {
    let (_dir, app) = app(json!({}));
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let host = Host::builder()
        .native(native(Arc::default()))
        .middleware(Arc::new(Tag("outer", seen.clone())))
        .middleware(Arc::new(Tag("inner", seen.clone())))
        .build(app);
    let result = host
        .invoke("Work", Invocation::new(json!({"n": 1})))
        .await
        .expect("runs");
    assert_eq!(*seen.lock().expect("lock"), ["outer Work", "inner Work"]);
    assert_eq!(result.logs, ["doubled", "after inner", "after outer"]);
}

#[tokio::test]
async fn closures_are_middleware() {
    let (_dir, app) = app(json!({}));
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let recorded = seen.clone();
    // Goes on, and changes the invocation and the result.
    let tagging = middleware_fn(move |function, mut invocation, next| {
        let recorded = recorded.clone();
        Box::pin(async move {
            recorded
                .lock()
                .expect("lock")
                .push(format!("closure {}", function.name()));
            invocation.trigger = BindingData::Json(json!({"n": 20}));
            let result = next.run(invocation).await?;
            Ok(result.with_log("after closure"))
        })
    });
    // Answers without the executor for one function.
    let short_circuit = middleware_fn(|function, invocation, next| {
        Box::pin(async move {
            if function.name() == "Boom" {
                return Ok(InvocationResult::returning(json!("answered by middleware")));
            }
            next.run(invocation).await
        })
    });
    let host = Host::builder()
        .native(native(Arc::default()))
        .middleware(Arc::new(tagging))
        .middleware(Arc::new(Tag("inner", seen.clone())))
        .middleware(Arc::new(Box::new(short_circuit)))
        .build(app);
    let result = host
        .invoke("Work", Invocation::new(json!({"n": 1})))
        .await
        .expect("runs");
    assert_eq!(result.return_value.map(|v| v.to_json()), Some(json!(40)));
    assert_eq!(result.logs, ["doubled", "after inner", "after closure"]);
    assert_eq!(*seen.lock().expect("lock"), ["closure Work", "inner Work"]);
    let answered = host
        .invoke("Boom", Invocation::new(json!({})))
        .await
        .expect("the middleware answers; the panicking function does not run");
    assert_eq!(
        answered.return_value.map(|v| v.to_json()),
        Some(json!("answered by middleware"))
    );
}

#[tokio::test]
async fn a_function_without_executor_says_how_to_get_one() {
    let (_dir, app) = app(json!({}));
    let host = Host::builder().build(app);
    let err = host
        .invoke("Work", Invocation::new(json!({})))
        .await
        .unwrap_err();
    assert!(matches!(err, InvokeError::NoExecutor { .. }), "{err}");
    let err = host
        .invoke("Nope", Invocation::new(json!({})))
        .await
        .unwrap_err();
    assert!(matches!(err, InvokeError::NotFound { .. }), "{err}");
}

#[tokio::test]
async fn a_swap_leaves_running_invocations_on_their_version() {
    let (dir, app) = app(json!({}));
    let host = Arc::new(Host::builder().native(native(Arc::default())).build(app));
    let old = host.resolve("Work").expect("resolves");
    assert_eq!(old.version().generation(), 1);
    // The new version drops the function Work.
    fs::remove_dir_all(dir.path().join("Work")).expect("rm");
    let new_app = FunctionApp::loader(dir.path())
        .with_environment(false)
        .load()
        .expect("loads");
    let replaced = host.swap(new_app).await.expect("swaps");
    assert_eq!(replaced.generation(), 1);
    assert_eq!(host.current().generation(), 2);
    assert!(host.resolve("Work").is_none());
    // the old handle still runs on the old version
    let r = old
        .invoke(Invocation::new(json!({"n": 2})))
        .await
        .expect("old version runs");
    assert_eq!(r.return_value, Some(BindingData::Json(json!(4))));
}
