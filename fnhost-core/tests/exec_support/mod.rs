//! Helpers shared by the executor tests: small apps in temporary folders.

#![allow(dead_code, unreachable_pub, missing_docs)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fnhost_core::invoke::http::{HttpRequest, HttpResponse};
use fnhost_core::invoke::{FunctionHandle, InvocationResult, InvokeError};
use fnhost_core::{FunctionApp, Host, Invocation, Method};
use serde_json::{Value, json};

/// A function app being written in a temporary folder.
pub struct TestApp {
    pub dir: tempfile::TempDir,
}

impl TestApp {
    /// An app with this host.json.
    pub fn new(host: Value) -> Self {
        let dir = tempfile::tempdir().expect("a temporary folder");
        std::fs::write(dir.path().join("host.json"), host.to_string()).expect("host.json");
        TestApp { dir }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// A function folder with this function.json and these files.
    pub fn function(&self, name: &str, config: Value, files: &[(&str, String)]) -> &Self {
        let dir = self.dir.path().join(name);
        std::fs::create_dir_all(&dir).expect("function folder");
        std::fs::write(dir.join("function.json"), config.to_string()).expect("function.json");
        for (file, text) in files {
            std::fs::write(dir.join(file), text).expect("function file");
        }
        self
    }

    /// A file at the app root.
    pub fn file(&self, name: &str, text: &str) -> &Self {
        std::fs::write(self.dir.path().join(name), text).expect("app file");
        self
    }

    /// Loads the app with these settings.
    pub fn load(&self, settings: &[(&str, &str)]) -> FunctionApp {
        let mut loader = FunctionApp::loader(self.dir.path());
        for (k, v) in settings {
            loader = loader.with_setting(*k, *v);
        }
        let app = loader.load().expect("the test app loads");
        assert!(app.is_valid(), "{:?}", app.diagnostics());
        app
    }
}

/// The text of a fixture handler in tests/handlers.
pub fn handler(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/handlers")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// function.json of a manual trigger named `input`.
pub fn manual() -> Value {
    json!({"bindings": [{"type": "manualTrigger", "direction": "in", "name": "input"}]})
}

/// function.json of an HTTP trigger `req` with an http output `res`.
pub fn http_in_out(route: Option<&str>) -> Value {
    let mut trigger = json!({
        "type": "httpTrigger", "direction": "in", "name": "req",
        "authLevel": "anonymous", "methods": ["get", "post"]
    });
    if let Some(route) = route {
        trigger["route"] = json!(route);
    }
    json!({"bindings": [trigger, {"type": "http", "direction": "out", "name": "res"}]})
}

/// Invokes `function` with `input`, which must fail; the error and its
/// message.
pub async fn failure(host: &Host, function: &str, input: Value) -> (InvokeError, String) {
    let err = host
        .invoke(function, Invocation::new(input))
        .await
        .expect_err("a failure");
    let message = err.to_string();
    (err, message)
}

/// A `retry` policy of two retries without delay.
pub fn two_retries() -> Value {
    json!({"strategy": "fixedDelay", "maxRetryCount": 2, "delayInterval": "00:00:00"})
}

/// Invokes `function` with `{"mode": "retry"}`, which must succeed (on
/// the last retry, for the fixture handlers); its return value.
pub async fn retried_return(host: &Host, function: &str) -> Value {
    let result = host
        .invoke(function, Invocation::new(json!({"mode": "retry"})))
        .await
        .expect("the last retry succeeds");
    result.return_value.expect("$return").to_json()
}

/// `POST /api/items/42?q=<q>` with a text body `hello` and the route
/// value `id` = 42.
pub fn items_request(q: &str) -> HttpRequest {
    let mut req = HttpRequest::new(Method::Post, "/api/items/42")
        .with_query("q", q)
        .with_header("Content-Type", "text/plain")
        .with_body("hello");
    req.params.push(("id".into(), "42".into()));
    req
}

/// Invokes the function `Items` with [`items_request`]`(q)`, which must
/// succeed; its handle (for [`response_of`]) and the result.
pub async fn invoke_items(host: &Host, q: &str) -> (FunctionHandle, InvocationResult) {
    let handle = host.resolve("Items").expect("Items");
    let result = handle
        .invoke(Invocation::new(items_request(q)))
        .await
        .expect("success");
    (handle, result)
}

/// The HTTP response `result` gives for `handle`'s function.
pub fn response_of(handle: &FunctionHandle, result: &InvocationResult) -> HttpResponse {
    handle
        .info()
        .http_response(result)
        .expect("a response")
        .expect("a valid response")
}

/// Invokes `handle` twenty times at once with `{"mode": "echo", "i": i}`;
/// the `i` that `seen` finds in each result, sorted.
pub async fn twenty_at_once(
    handle: &FunctionHandle,
    seen: fn(InvocationResult) -> Option<i64>,
) -> Vec<i64> {
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let handle = handle.clone();
            tokio::spawn(async move {
                let r = handle
                    .invoke(Invocation::new(json!({"mode": "echo", "i": i})))
                    .await
                    .expect("success");
                seen(r)
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.push(t.await.expect("no panic").expect("i"));
    }
    all.sort();
    all
}

/// Whether process `pid` is gone (or a zombie).
pub fn process_is_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
    }
}

/// Polls `f` until it holds, for at most `limit`.
pub async fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if f() {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
