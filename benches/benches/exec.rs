//! The process-based executors against their baselines, same run:
//!
//! (a) custom handler: median latency of one invocation through `Host`
//!     against the same request sent straight to the same handler with the
//!     same HTTP client (target: the host adds at most 100 µs);
//! (b) one-shot process: invocations per second through `Host` against bare
//!     spawns of the same program with the same stdin/stdout piping
//!     (target: at least 0.8x).
//!
//! Run with `cargo bench -p fnhost-benches --bench exec`; set
//! `FNHOST_BENCH_QUICK=1` for a smoke run. Needs `node` and `sh`.

use std::hint::black_box;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fnhost_benches::{format_duration, iterations, measure, quick, report};
use fnhost_core::exec::{CustomHandlerExecutor, CustomHandlerOptions, LogSink};
use fnhost_core::{Executor, FunctionApp, Host, Invocation};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A payload-mode handler that answers every POST with the same result.
const HANDLER: &str = r#"
const http = require('http');
const out = JSON.stringify({ Outputs: {}, Logs: [], ReturnValue: 'ok' });
http.createServer((req, res) => {
  req.on('data', () => {});
  req.on('end', () => {
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(out);
  });
}).listen(process.env.FUNCTIONS_CUSTOMHANDLER_PORT, '127.0.0.1');
"#;

/// A one-shot script: reads its input, answers a fixed result.
const SCRIPT: &str = "cat >/dev/null\necho '{\"ReturnValue\": \"ok\"}'\n";

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    let custom = runtime.block_on(custom_handler());
    let process = process(&runtime);
    println!();
    println!(
        "custom handler: host adds {} median per invocation (target <= 100 µs): {}",
        format_duration(custom.0.saturating_sub(custom.1)),
        if custom.0 <= custom.1 + Duration::from_micros(100) {
            "MET"
        } else {
            "NOT MET"
        }
    );
    println!(
        "one-shot process: {:.2}x the rate of bare spawns (target >= 0.8x): {}",
        process,
        if process >= 0.8 { "MET" } else { "NOT MET" }
    );
}

fn write_app(root: &Path, host: serde_json::Value, files: &[(&str, &str)]) {
    std::fs::write(root.join("host.json"), host.to_string()).expect("host.json");
    let dir = root.join("Bench");
    std::fs::create_dir_all(&dir).expect("function folder");
    std::fs::write(
        dir.join("function.json"),
        json!({"bindings": [{"type": "manualTrigger", "direction": "in", "name": "input"}]})
            .to_string(),
    )
    .expect("function.json");
    for (name, text) in files {
        std::fs::write(root.join(name), text).expect("app file");
    }
}

/// (a): returns the medians (through the host, direct).
async fn custom_handler() -> (Duration, Duration) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    write_app(
        dir.path(),
        json!({"version": "2.0", "customHandler": {"description": {
            "defaultExecutablePath": "node", "arguments": ["handler.js"]}}}),
        &[("handler.js", HANDLER)],
    );
    let app = FunctionApp::loader(dir.path())
        .with_environment(false)
        .load()
        .expect("the app loads");
    let executor = CustomHandlerExecutor::new(
        &app,
        CustomHandlerOptions::new().with_log_sink(LogSink::discard()),
    )
    .expect("a custom handler");
    let host = Host::builder()
        .executor_for("Bench", Arc::new(executor.clone()))
        .build(app);
    host.start().await.expect("the handler starts");
    let port = executor.port().expect("a port");
    let handle = host.resolve("Bench").expect("Bench");

    // The same client as the executor's, the body the host would send.
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build(connector);
    let uri = format!("http://127.0.0.1:{port}/Bench");
    let body = Bytes::from(
        json!({"Data": {"input": {"n": 1}}, "Metadata": {"sys": {
            "MethodName": "Bench", "UtcNow": "2026-01-01T00:00:00.000000Z",
            "RandGuid": "0b8f3c2a-5d1e-4f6a-9b7c-2e4d6f8a0c1e"}}})
        .to_string(),
    );
    let direct = || {
        let request = hyper::Request::post(uri.as_str())
            .header("Content-Type", "application/json")
            .header(
                "X-Azure-Functions-InvocationId",
                "0b8f3c2a-5d1e-4f6a-9b7c-2e4d6f8a0c1e",
            )
            .header("X-Azure-Functions-HostVersion", "0.1.0")
            .header("User-Agent", "Azure-Functions-Host/0.1.0")
            .body(Full::new(body.clone()))
            .expect("a request");
        let client = &client;
        async move {
            let response = client.request(request).await.expect("an answer");
            let bytes = response
                .into_body()
                .collect()
                .await
                .expect("a body")
                .to_bytes();
            let value: serde_json::Value = serde_json::from_slice(&bytes).expect("JSON");
            black_box(value);
        }
    };

    let calls = if quick() { 200 } else { 5_000 };
    for _ in 0..calls / 10 {
        direct().await;
        handle
            .invoke(Invocation::new(json!({"n": 1})))
            .await
            .expect("an invocation");
    }
    // Interleaved, so both see the same machine.
    let mut through_host = Vec::with_capacity(calls);
    let mut straight = Vec::with_capacity(calls);
    for _ in 0..calls {
        let start = Instant::now();
        direct().await;
        straight.push(start.elapsed());
        let start = Instant::now();
        let result = handle
            .invoke(Invocation::new(json!({"n": 1})))
            .await
            .expect("an invocation");
        through_host.push(start.elapsed());
        black_box(result);
    }
    through_host.sort();
    straight.sort();
    let host_median = through_host[calls / 2];
    let direct_median = straight[calls / 2];
    println!(
        "custom handler invocation through Host: median {}, p90 {} ({calls} calls)",
        format_duration(host_median),
        format_duration(through_host[calls * 9 / 10])
    );
    println!(
        "same request straight to the handler:   median {}, p90 {} ({calls} calls)",
        format_duration(direct_median),
        format_duration(straight[calls * 9 / 10])
    );
    report(
        "custom handler via Host (median)",
        host_median,
        "direct loopback request (median)",
        direct_median,
        direct_median + Duration::from_micros(100),
    );
    host.shutdown().await;
    executor.shutdown().await;
    (host_median, direct_median)
}

/// (b): returns the rate through the host over the bare rate.
fn process(runtime: &tokio::runtime::Runtime) -> f64 {
    let dir = tempfile::tempdir().expect("a temporary folder");
    write_app(dir.path(), json!({"version": "2.0"}), &[]);
    let script = dir.path().join("Bench").join("run.sh");
    std::fs::write(&script, SCRIPT).expect("run.sh");
    let app = FunctionApp::loader(dir.path())
        .with_environment(false)
        .load()
        .expect("the app loads");
    let host = Host::builder().with_default_executors().build(app);
    let handle = host.resolve("Bench").expect("Bench");
    let input = json!({"Data": {"input": {"n": 1}}, "Metadata": {"sys": {
        "MethodName": "Bench", "UtcNow": "2026-01-01T00:00:00.000000Z",
        "RandGuid": "0b8f3c2a-5d1e-4f6a-9b7c-2e4d6f8a0c1e"}}})
    .to_string()
    .into_bytes();
    let function_dir = dir.path().join("Bench");

    let iters = iterations(300).min(if quick() { 20 } else { 300 });
    let through_host = measure("one-shot process invocation through Host", iters, || {
        let result = runtime
            .block_on(handle.invoke(Invocation::new(json!({"n": 1}))))
            .expect("an invocation");
        black_box(result);
    });
    let bare = measure("bare spawn of `sh run.sh`, same piping", iters, || {
        runtime.block_on(async {
            let mut child = tokio::process::Command::new("sh")
                .arg(&script)
                .current_dir(&function_dir)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("sh starts");
            let mut stdin = child.stdin.take().expect("stdin");
            let mut stdout = child.stdout.take().expect("stdout");
            let mut stderr = child.stderr.take().expect("stderr");
            let mut out = Vec::new();
            let mut err = Vec::new();
            let write = async {
                stdin.write_all(&input).await.expect("write");
                drop(stdin);
            };
            let (_, a, b) = tokio::join!(
                write,
                stdout.read_to_end(&mut out),
                stderr.read_to_end(&mut err)
            );
            a.expect("stdout");
            b.expect("stderr");
            child.wait().await.expect("wait");
            black_box(serde_json::from_slice::<serde_json::Value>(&out).expect("JSON"));
        });
    });
    let ratio = bare.as_secs_f64() / through_host.as_secs_f64().max(1e-12);
    println!(
        "one-shot process: {:.0} invocations/s through Host, {:.0} bare spawns/s",
        1.0 / through_host.as_secs_f64(),
        1.0 / bare.as_secs_f64()
    );
    report(
        "one-shot process via Host (per invocation)",
        through_host,
        "bare spawn (per spawn)",
        bare,
        bare.mul_f64(1.25),
    );
    ratio
}
