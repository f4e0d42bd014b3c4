//! The one-shot process executor: happy paths and faults, each fault followed
//! by a good invocation.

#![cfg(feature = "tokio")]

mod exec_support;

use std::sync::Arc;
use std::time::Duration;

use exec_support::{
    TestApp, eventually, failure, handler, http_in_out, invoke_items, manual, process_is_gone,
    response_of, retried_return, twenty_at_once, two_retries,
};
use fnhost_core::exec::{ProcessExecutor, ProcessExecutorFactory};
use fnhost_core::invoke::{BindingData, InvokeError};
use fnhost_core::{Host, Invocation};
use serde_json::{Value, json};

fn host_of(app: &TestApp) -> Host {
    Host::builder()
        .with_default_executors()
        .build(app.load(&[("MY_SETTING", "from settings")]))
}

/// A host of `app` whose process executors start from `template`.
fn host_with_template(app: &TestApp, template: ProcessExecutor) -> Host {
    Host::builder()
        .factory(Arc::new(ProcessExecutorFactory::with_template(template)))
        .build(app.load(&[]))
}

fn python_app(host: Value) -> TestApp {
    let app = TestApp::new(host);
    app.function("Job", manual(), &[("run.py", handler("oneshot.py"))]);
    app
}

async fn echo_works(host: &Host) {
    let result = host
        .invoke("Job", Invocation::new(json!({"mode": "echo"})))
        .await
        .expect("echo succeeds");
    assert_eq!(
        result.return_value.expect("a return value").to_json()["data"]["input"]["mode"],
        "echo"
    );
}

#[tokio::test]
async fn manual_trigger_returns_outputs_logs_and_return_value() {
    let app = python_app(json!({"version": "2.0"}));
    let host = host_of(&app);
    let inv = Invocation::new(json!({"mode": "echo", "n": 1}))
        .with_input("extra", json!([1, 2]))
        .with_metadata("Key", "value")
        .with_metadata("manualTrigger", "dropped");
    let result = host.invoke("job", inv).await.expect("success");
    let ret = result.return_value.as_ref().expect("$return").to_json();
    assert_eq!(ret["data"]["input"], json!({"mode": "echo", "n": 1}));
    assert_eq!(ret["data"]["extra"], json!([1, 2]));
    assert_eq!(ret["metadata"]["Key"], "value");
    assert!(ret["metadata"].get("manualTrigger").is_none());
    assert_eq!(ret["metadata"]["sys"]["MethodName"], "Job");
    assert!(
        ret["metadata"]["sys"]["UtcNow"]
            .as_str()
            .expect("a string")
            .ends_with('Z')
    );
    assert_eq!(
        ret["metadata"]["sys"]["RandGuid"]
            .as_str()
            .expect("a string")
            .len(),
        36
    );
    assert!(ret["metadata"].get("RetryContext").is_none());
    assert!(ret["cwd"].as_str().expect("a string").ends_with("Job"));
    assert_eq!(ret["setting"], "from settings");
    assert_eq!(
        result.output("out").expect("out").to_json()["echo"]["input"]["n"],
        1
    );
    assert_eq!(result.logs, ["a line on stderr", "log from python"]);
}

#[tokio::test]
async fn http_trigger_gets_route_query_and_body() {
    let app = TestApp::new(json!({"version": "2.0"}));
    app.function(
        "Items",
        http_in_out(Some("items/{id:int}")),
        &[("index.js", handler("oneshot_http.js"))],
    );
    let host = host_of(&app);
    let (handle, result) = invoke_items(&host, "x y").await;
    let response = response_of(&handle, &result);
    assert_eq!(response.status, 201);
    assert_eq!(response.header("x-handler"), Some("node"));
    assert_eq!(
        String::from_utf8_lossy(&response.body),
        "id=42 q=x y body=hello method=Items"
    );
    assert_eq!(
        result.logs[0],
        "handling POST http://localhost/api/items/42"
    );
    assert_eq!(result.logs[1], "node says hi");
}

#[tokio::test]
async fn non_zero_exit_fails_with_stderr_then_the_next_succeeds() {
    let app = python_app(json!({"version": "2.0"}));
    let host = host_of(&app);
    let (err, message) = failure(&host, "Job", json!({"mode": "fail"})).await;
    assert!(matches!(err, InvokeError::Failed { .. }), "{err:?}");
    assert!(message.contains("exited with status 3"), "{message}");
    assert!(message.contains("oops: the widget is broken"), "{message}");
    assert_eq!(err.logs(), ["about to fail", "oops: the widget is broken"]);
    echo_works(&host).await;
}

#[tokio::test]
async fn garbage_on_stdout_fails_then_the_next_succeeds() {
    let app = python_app(json!({"version": "2.0"}));
    let host = host_of(&app);
    let (_, message) = failure(&host, "Job", json!({"mode": "garbage"})).await;
    assert!(message.contains("not valid JSON"), "{message}");
    assert!(message.contains("this is not JSON at all"), "{message}");
    echo_works(&host).await;
}

#[tokio::test]
async fn too_much_stdout_fails_then_the_next_succeeds() {
    let app = python_app(json!({"version": "2.0"}));
    let host = host_with_template(&app, ProcessExecutor::new().with_max_stdout(1000));
    let err = host
        .invoke(
            "Job",
            Invocation::new(json!({"mode": "big", "bytes": 200_000})),
        )
        .await
        .expect_err("a failure");
    assert!(err.to_string().contains("more than 1000 bytes"), "{err}");
    echo_works(&host).await;
}

#[tokio::test]
async fn a_hanging_script_is_killed_at_the_timeout_with_its_children() {
    let app = python_app(json!({"version": "2.0", "functionTimeout": "00:00:04"}));
    let host = host_of(&app);
    let pidfile = app.root().join("pids.txt");
    let started = std::time::Instant::now();
    let err = host
        .invoke(
            "Job",
            Invocation::new(
                json!({"mode": "hang", "pidfile": pidfile.to_str().expect("a UTF-8 path")}),
            ),
        )
        .await
        .expect_err("a timeout");
    assert!(matches!(err, InvokeError::Timeout { .. }), "{err:?}");
    assert!(err.to_string().contains("timed out after 4s"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(15));
    let pids: Vec<u32> = std::fs::read_to_string(&pidfile)
        .expect("the script wrote its pids")
        .split_whitespace()
        .map(|p| p.parse().expect("a pid"))
        .collect();
    assert_eq!(pids.len(), 2);
    for pid in pids {
        assert!(
            eventually(Duration::from_secs(5), || process_is_gone(pid)).await,
            "process {pid} is still running"
        );
    }
    echo_works(&host).await;
}

#[tokio::test]
async fn a_missing_interpreter_is_a_clear_error() {
    let app = python_app(json!({"version": "2.0"}));
    let missing =
        ProcessExecutor::new().with_interpreter("py", "no-such-python-here", Vec::<String>::new());
    let host = host_with_template(&app, missing);
    let (err, _) = failure(&host, "Job", json!({})).await;
    assert!(matches!(err, InvokeError::Unavailable { .. }), "{err:?}");
    assert!(err.to_string().contains("no-such-python-here"), "{err}");
    assert!(err.to_string().contains("PATH"), "{err}");
}

#[tokio::test]
async fn retry_context_is_visible_on_retries() {
    let app = python_app(json!({ "version": "2.0", "retry": two_retries() }));
    let host = host_of(&app);
    assert_eq!(
        retried_return(&host, "Job").await,
        json!({"RetryCount": 2, "MaxRetryCount": 2, "Exception": null})
    );
}

#[tokio::test]
async fn twenty_concurrent_invocations() {
    let app = python_app(json!({"version": "2.0"}));
    let host = Arc::new(host_of(&app));
    let handle = host.resolve("Job").expect("Job");
    let seen = twenty_at_once(&handle, |r| match r.return_value {
        Some(BindingData::Json(v)) => v["data"]["input"]["i"].as_i64(),
        _ => None,
    })
    .await;
    assert_eq!(seen, (0..20).collect::<Vec<i64>>());
}
