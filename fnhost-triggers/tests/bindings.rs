//! The `queue` and `blob` output bindings and the `blob` input binding
//! against a real Azurite: a native function and a custom handler (with
//! Azure's payload shapes and output conversion, and the plain shapes),
//! each triggered by a queue.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use fnhost_core::invoke::{BindingData, InvocationResult};
use fnhost_core::{FunctionApp, Host, Invocation, NativeExecutor};
use fnhost_triggers::queue::encode_message;
use fnhost_triggers::storage::{BlobService, PutOptions, QueueClient};
use fnhost_triggers::{MessageEncoding, StorageBindings};
use serde_json::{Value, json};
use support::{Azurite, listen, put_base64, wait_for_count, wait_until, write_function};

const LIMIT: Duration = Duration::from_secs(60);
const STOP: Duration = Duration::from_secs(10);
const HOST_JSON: &str =
    r#"{"version": "2.0", "extensions": {"queues": {"maxPollingInterval": "00:00:00.2"}}}"#;

fn load(dir: &Path, azurite: &Azurite, settings: &[(&str, &str)]) -> FunctionApp {
    let mut loader = FunctionApp::loader(dir)
        .with_environment(false)
        .with_setting("Conn", azurite.connection_string());
    for (k, v) in settings {
        loader = loader.with_setting(*k, *v);
    }
    let app = loader.load().unwrap();
    assert!(app.is_valid(), "{:?}", app.diagnostics());
    app
}

/// A host running `native`'s functions, with the storage bindings, on the
/// app in `dir`.
fn native_host(
    native: NativeExecutor,
    dir: &Path,
    azurite: &Azurite,
    settings: &[(&str, &str)],
) -> Arc<Host> {
    Arc::new(
        Host::builder()
            .native(native)
            .middleware(Arc::new(StorageBindings::new()))
            .build(load(dir, azurite, settings)),
    )
}

/// Every message of a queue, received and deleted, as wire text.
async fn drain(q: &QueueClient) -> Vec<String> {
    let mut out = Vec::new();
    loop {
        let batch = q.receive(32, Duration::from_secs(30)).await.unwrap();
        if batch.is_empty() {
            return out;
        }
        for m in batch {
            q.delete_message(&m.id, &m.pop_receipt).await.unwrap();
            out.push(m.text);
        }
    }
}

/// The names and contents of a container's blobs.
async fn blobs_of(blobs: &BlobService, container: &str) -> Vec<(String, Vec<u8>)> {
    let c = blobs.container(container);
    let page = match c.list("", None, 5000).await {
        Ok(p) => p,
        Err(e) if e.status() == Some(404) => return Vec::new(),
        Err(e) => panic!("{e}"),
    };
    let mut out = Vec::new();
    for b in page.blobs {
        let (bytes, _) = c.blob(&b.name).get().await.unwrap().unwrap();
        out.push((b.name, bytes.to_vec()));
    }
    out
}

/// The contents of the blobs whose names end in `ending`.
fn ending_in<'f>(files: &'f [(String, Vec<u8>)], ending: &str) -> Vec<&'f Vec<u8>> {
    files
        .iter()
        .filter(|(n, _)| n.ends_with(ending))
        .map(|(_, c)| c)
        .collect()
}

fn b64(text: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_outputs_go_where_the_bindings_say() {
    let azurite = Azurite::start_with_blobs().await;
    let orders = azurite.service().queue("orders");
    orders.create().await.unwrap();
    let blobs = azurite.blobs();
    blobs.container("templates").create().await.unwrap();
    blobs
        .container("templates")
        .blob("red.txt")
        .put(&b"Dear customer"[..], PutOptions::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("host.json"), HOST_JSON).unwrap();
    write_function(
        dir.path(),
        "Route",
        json!([
            {"type": "queueTrigger", "direction": "in", "name": "order", "queueName": "orders", "connection": "Conn"},
            {"type": "blob", "direction": "in", "name": "template", "path": "templates/{Kind}.txt", "connection": "Conn"},
            {"type": "blob", "direction": "in", "name": "missing", "path": "templates/{Kind}-none.txt", "connection": "Conn"},
            {"type": "queue", "direction": "out", "name": "next", "queueName": "out-{Kind}", "connection": "Conn"},
            {"type": "blob", "direction": "out", "name": "receipt", "path": "receipts/{Kind}/{OrderId}-{rand-guid}.txt", "connection": "Conn"},
            {"type": "blob", "direction": "out", "name": "$return", "path": "%RETURNS%/{OrderId}.json", "connection": "Conn"}
        ]),
    );
    let native = NativeExecutor::new().function("Route", |inv: Invocation| async move {
        let order = inv.trigger.to_json();
        let template = inv.inputs["template"].as_str().unwrap_or("no template");
        assert_eq!(inv.inputs["missing"], Value::Null);
        let id = order["OrderId"].as_i64().unwrap();
        Ok(InvocationResult::returning(json!({"done": id}))
            .with_output("next", json!([format!("first {id}"), {"second": id}]))
            .with_output(
                "receipt",
                BindingData::Bytes(format!("{template} #{id}").into_bytes()),
            ))
    });
    let host = native_host(native, dir.path(), &azurite, &[("RETURNS", "returns")]);
    let (handle, _lines) = listen(host);
    for id in 1..=3 {
        let body = json!({"Kind": "red", "OrderId": id}).to_string();
        orders
            .put(&encode_message(&body, MessageEncoding::Base64), None)
            .await
            .unwrap();
    }
    wait_until(LIMIT, "three orders done", async || {
        orders.approximate_count().await.unwrap() == Some(0)
            && blobs_of(&blobs, "returns").await.len() == 3
    })
    .await;
    assert!(handle.stop(STOP).await);

    // The queue output: created, two messages per order, base64 on the wire.
    let mut next: Vec<String> = drain(&azurite.service().queue("out-red"))
        .await
        .iter()
        .map(|t| String::from_utf8(b64(t)).unwrap())
        .collect();
    next.sort();
    assert_eq!(
        next,
        [
            "first 1",
            "first 2",
            "first 3",
            "{\"second\":1}",
            "{\"second\":2}",
            "{\"second\":3}"
        ]
    );
    // The blob output: a path from the message and a random GUID; the
    // content read from the blob input.
    let receipts = blobs_of(&blobs, "receipts").await;
    assert_eq!(receipts.len(), 3, "{receipts:?}");
    for (name, content) in &receipts {
        let rest = name.strip_prefix("red/").unwrap();
        let (id, guid) = rest.split_once('-').unwrap();
        assert_eq!(guid.len(), "0f8fad5b-d9cb-469f-a165-70867728950e.txt".len());
        assert_eq!(
            String::from_utf8(content.clone()).unwrap(),
            format!("Dear customer #{id}")
        );
    }
    // `$return` with a %setting% in its path.
    let mut returns = blobs_of(&blobs, "returns").await;
    returns.sort();
    assert_eq!(returns[0].0, "1.json");
    assert_eq!(
        serde_json::from_slice::<Value>(&returns[2].1).unwrap(),
        json!({"done": 3})
    );
    azurite.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_that_cannot_be_written_fails_the_invocation() {
    let azurite = Azurite::start_with_blobs().await;
    let jobs = azurite.service().queue("jobs");
    jobs.create().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("host.json"),
        r#"{"version": "2.0", "extensions": {"queues": {"maxPollingInterval": "00:00:00.2", "maxDequeueCount": 2}}}"#,
    )
    .unwrap();
    write_function(
        dir.path(),
        "Jobs",
        json!([
            {"type": "queueTrigger", "direction": "in", "name": "job", "queueName": "jobs", "connection": "Conn"},
            {"type": "queue", "direction": "out", "name": "next", "queueName": "to-{Missing}", "connection": "Conn"}
        ]),
    );
    let native = NativeExecutor::new().function("Jobs", |_inv: Invocation| async move {
        Ok(InvocationResult::new().with_output("next", json!("x")))
    });
    let host = native_host(native, dir.path(), &azurite, &[]);
    let (handle, lines) = listen(host);
    put_base64(&jobs, "plain text").await;
    let poison = azurite.service().queue("jobs-poison");
    wait_for_count(LIMIT, &poison, 1).await;
    assert!(handle.stop(STOP).await);
    assert!(
        lines.mention(
            "its queue output 'next' could not be written: the binding expression {Missing} has no value"
        ),
        "{lines:?}"
    );
    azurite.stop().await;
}

/// A custom handler (Node.js) that appends each request body to
/// `requests.jsonl` and answers with fixed outputs.
const HANDLER: &str = r#"
const http = require('http');
const fs = require('fs');
const path = require('path');
const out = path.join(__dirname, 'requests.jsonl');
http.createServer((req, res) => {
  let body = '';
  req.on('data', (c) => body += c);
  req.on('end', () => {
    fs.appendFileSync(out, body + '\n');
    res.writeHead(200, {'Content-Type': 'application/json'});
    res.end(JSON.stringify({
      Outputs: {msg: 'abcd', file: 'aGVsbG8=', text: 'hello world'},
      Logs: ['handled'],
      ReturnValue: null,
    }));
  });
}).listen(process.env.FUNCTIONS_CUSTOMHANDLER_PORT, '127.0.0.1');
"#;

/// Runs the custom handler app on two messages (plain text and a JSON
/// object); returns the requests it got, the wire text of its queue output
/// and its blobs.
async fn run_custom_handler(
    shape: Option<&str>,
) -> (Vec<Value>, Vec<String>, Vec<(String, Vec<u8>)>) {
    let azurite = Azurite::start_with_blobs().await;
    let q = azurite.service().queue("shapes");
    q.create().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("host.json"),
        json!({
            "version": "2.0",
            "customHandler": {"description": {"defaultExecutablePath": "node", "defaultWorkerPath": "handler.js"}},
            "extensions": {"queues": {"maxPollingInterval": "00:00:00.2", "batchSize": 1}}
        })
        .to_string(),
    )
    .unwrap();
    std::fs::write(dir.path().join("handler.js"), HANDLER).unwrap();
    write_function(
        dir.path(),
        "Shapes",
        json!([
            {"type": "queueTrigger", "direction": "in", "name": "item", "queueName": "shapes", "connection": "Conn"},
            {"type": "queue", "direction": "out", "name": "msg", "queueName": "shaped", "connection": "Conn"},
            {"type": "blob", "direction": "out", "name": "file", "path": "shaped/{Id}.bin", "connection": "Conn"},
            {"type": "blob", "direction": "out", "name": "text", "path": "shaped/{Id}.txt", "connection": "Conn"}
        ]),
    );
    let settings: Vec<(&str, &str)> = shape
        .map(|s| vec![(fnhost_core::exec::PAYLOAD_SHAPE_SETTING, s)])
        .unwrap_or_default();
    let host = Arc::new(
        Host::builder()
            .with_default_executors()
            .middleware(Arc::new(StorageBindings::new()))
            .build(load(dir.path(), &azurite, &settings)),
    );
    host.start().await.unwrap();
    let (handle, _lines) = listen(host.clone());
    for text in ["hello", r#"{"OrderId": 7, "Note": "x"}"#] {
        put_base64(&q, text).await;
    }
    let blobs = azurite.blobs();
    wait_until(LIMIT, "both messages handled", async || {
        q.approximate_count().await.unwrap() == Some(0)
            && blobs_of(&blobs, "shaped").await.len() == 4
    })
    .await;
    assert!(handle.stop(STOP).await);
    host.shutdown().await;
    let requests: Vec<Value> = std::fs::read_to_string(dir.path().join("requests.jsonl"))
        .unwrap()
        .lines()
        // Readiness probes come without a body.
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let wire = drain(&azurite.service().queue("shaped")).await;
    let files = blobs_of(&blobs, "shaped").await;
    azurite.stop().await;
    (requests, wire, files)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_handlers_get_azures_payload_shapes_and_output_conversion() {
    let (requests, wire, files) = run_custom_handler(None).await;
    assert_eq!(requests.len(), 2, "{requests:?}");
    let text = &requests[0];
    // The reference's shapes: string data JSON-encoded a second time,
    // every non-object metadata value as its JSON text.
    assert_eq!(text["Data"]["item"], "\"hello\"", "{text}");
    assert_eq!(text["Metadata"]["DequeueCount"], "1", "{text}");
    let id = text["Metadata"]["Id"].as_str().unwrap();
    assert!(
        id.starts_with('"') && id.ends_with('"') && id.len() > 2,
        "{id}"
    );
    let inserted = text["Metadata"]["InsertionTime"].as_str().unwrap();
    assert!(
        inserted.starts_with("\"20") && inserted.ends_with("+00:00\""),
        "{inserted}"
    );
    assert!(
        text["Metadata"]["PopReceipt"]
            .as_str()
            .unwrap()
            .starts_with('"')
    );
    assert_eq!(text["Metadata"]["sys"]["MethodName"], "Shapes", "{text}");
    assert!(text["Metadata"].get("QueueTrigger").is_none(), "{text}");
    // A JSON object stays an object; its properties are metadata too.
    let object = &requests[1];
    assert_eq!(object["Data"]["item"], json!({"OrderId": 7, "Note": "x"}));
    assert_eq!(object["Metadata"]["OrderId"], "7");
    assert_eq!(object["Metadata"]["Note"], "\"x\"");
    // Output strings that are base64 are written as the bytes they decode
    // to: "abcd" is 3 bytes on the queue (base64 on the wire is "abcd"
    // again), "aGVsbG8=" is "hello"; "hello world" is not base64.
    assert_eq!(wire, ["abcd", "abcd"]);
    assert_eq!(b64(&wire[0]), [0x69, 0xb7, 0x1d]);
    assert_eq!(ending_in(&files, ".bin"), [b"hello", b"hello"]);
    assert!(
        ending_in(&files, ".txt")
            .iter()
            .all(|c| *c == b"hello world"),
        "{files:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_handlers_can_ask_for_plain_shapes() {
    let (requests, wire, files) = run_custom_handler(Some("plain")).await;
    assert_eq!(requests[0]["Data"]["item"], "hello");
    assert_eq!(requests[0]["Metadata"]["DequeueCount"], 1);
    assert_eq!(requests[1]["Metadata"]["OrderId"], 7);
    // Outputs are written as they come.
    assert_eq!(b64(&wire[0]), b"abcd");
    assert!(
        ending_in(&files, ".bin").iter().all(|c| *c == b"aGVsbG8="),
        "{files:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_output_wakes_an_idle_listener_of_the_same_host() {
    let azurite = Azurite::start().await;
    azurite.service().queue("second").create().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("host.json"),
        r#"{"version": "2.0", "extensions": {"queues": {"maxPollingInterval": "00:01:00"}}}"#,
    )
    .unwrap();
    write_function(
        dir.path(),
        "First",
        json!([
            {"type": "manualTrigger", "direction": "in", "name": "input"},
            {"type": "queue", "direction": "out", "name": "$return", "queueName": "second", "connection": "Conn"}
        ]),
    );
    write_function(
        dir.path(),
        "Second",
        json!([{"type": "queueTrigger", "direction": "in", "name": "item", "queueName": "second", "connection": "Conn"}]),
    );
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let native = NativeExecutor::new()
        .function("First", |_inv: Invocation| async move {
            Ok(InvocationResult::returning(json!("next")))
        })
        .function("Second", move |_inv: Invocation| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(std::time::Instant::now());
                Ok(InvocationResult::new())
            }
        });
    let host = native_host(native, dir.path(), &azurite, &[]);
    let (handle, _lines) = listen(host.clone());
    // Idle long enough that its next poll is seconds away: empty polls
    // wait about 0.2, 0.4, 0.8, 1.6, 3.2 s (5 to 7.4 s in all, with the
    // host's randomisation), then about 6.4 s more.
    tokio::time::sleep(Duration::from_millis(8500)).await;
    let put = std::time::Instant::now();
    host.invoke("First", Invocation::new(json!({})))
        .await
        .unwrap();
    let ran = tokio::time::timeout(LIMIT, rx.recv())
        .await
        .unwrap()
        .unwrap();
    let waited = ran.duration_since(put);
    assert!(
        waited < Duration::from_millis(1000),
        "the listener was not woken: {waited:?}"
    );
    assert!(handle.stop(STOP).await);
    azurite.stop().await;
}
