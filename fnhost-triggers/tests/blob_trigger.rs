//! blobTrigger against a real Azurite (blob service): each blob version
//! processed once, receipts across a restart, a rewritten blob processed
//! again, poison after exactly `poisonBlobThreshold` tries, path patterns
//! and metadata.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use fnhost_core::invoke::{BindingData, ExecutorError, InvocationResult};
use fnhost_core::timer::LogSink;
use fnhost_core::{FunctionApp, Host, Invocation, NativeExecutor};
use fnhost_triggers::storage::{BlobService, PutOptions};
use fnhost_triggers::{Listeners, ListenersHandle};
use serde_json::{Value, json};
use support::{Azurite, collecting_log, wait_for_count, wait_until, write_function};

const LIMIT: Duration = Duration::from_secs(60);
const STOP: Duration = Duration::from_secs(10);
const SCAN: Duration = Duration::from_millis(200);

/// An app with host.json `host_json` and one blobTrigger function,
/// `Thumbs`, on `path`.
fn blob_app(host_json: &str, path: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("host.json"), host_json).unwrap();
    write_function(
        dir.path(),
        "Thumbs",
        json!([{"type": "blobTrigger", "direction": "in", "name": "image", "path": path, "connection": "Conn"}]),
    );
    dir
}

/// The invocations seen, by blob name.
type Seen = Arc<Mutex<HashMap<String, Vec<Invocation>>>>;

fn host_for(dir: &Path, azurite: &Azurite, seen: &Seen, fail: bool) -> Arc<Host> {
    let app = FunctionApp::loader(dir)
        .with_environment(false)
        .with_setting("Conn", azurite.connection_string())
        .with_setting("AzureFunctionsWebHost__hostid", "blobtests")
        .load()
        .unwrap();
    assert!(app.is_valid(), "{:?}", app.diagnostics());
    let seen = seen.clone();
    let native = NativeExecutor::new().function("Thumbs", move |inv: Invocation| {
        let seen = seen.clone();
        async move {
            let name = inv.metadata["BlobTrigger"].as_str().unwrap().to_owned();
            seen.lock().unwrap().entry(name).or_default().push(inv);
            if fail {
                Err(ExecutorError::failed("failing on purpose"))
            } else {
                Ok(InvocationResult::new())
            }
        }
    });
    Arc::new(Host::builder().native(native).build(app))
}

async fn put(blobs: &BlobService, name: &str, content: &str) {
    let meta = [("owner".to_owned(), "ada".to_owned())];
    blobs
        .container("samples")
        .blob(name)
        .put(
            content.as_bytes().to_vec(),
            PutOptions {
                metadata: &meta,
                ..PutOptions::default()
            },
        )
        .await
        .unwrap();
}

/// Starts `host`'s listeners, scanning every [`SCAN`].
fn scan(host: Arc<Host>, log: LogSink) -> ListenersHandle {
    Listeners::new(host)
        .with_log(log)
        .with_blob_scan_interval(SCAN)
        .start()
}

fn total(seen: &Seen) -> usize {
    total_of(&seen.lock().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_blob_version_is_processed_once_across_restarts() {
    let azurite = Azurite::start_with_blobs().await;
    let blobs = azurite.blobs();
    blobs.container("samples").create().await.unwrap();
    let dir = blob_app(r#"{"version": "2.0"}"#, "samples/img-{name}.{ext}");
    const N: usize = 60;
    for i in 0..N {
        put(&blobs, &format!("img-{i}.v1.png"), &format!("content {i}")).await;
    }
    // Not matching the pattern: never run.
    put(&blobs, "other-1.png", "x").await;
    put(&blobs, "img-noext", "x").await;

    let seen: Seen = Arc::default();
    let (log, lines) = collecting_log();
    let handle = scan(host_for(dir.path(), &azurite, &seen, false), log.clone());
    wait_until(LIMIT, "every blob processed", async || total(&seen) >= N).await;
    // Several scans later, nothing ran twice.
    tokio::time::sleep(SCAN * 5).await;
    assert!(handle.stop(STOP).await);
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), N, "{:?}", seen.keys().collect::<Vec<_>>());
        assert!(seen.values().all(|v| v.len() == 1));
        let inv = &seen["samples/img-7.v1.png"][0];
        assert_eq!(inv.trigger, BindingData::Bytes(b"content 7".to_vec()));
        assert_eq!(inv.metadata["name"], "7.v1");
        assert_eq!(inv.metadata["ext"], "png");
        assert_eq!(inv.metadata["Metadata"]["owner"], "ada");
        assert_eq!(inv.metadata["Properties"]["Length"], 9);
        assert!(
            inv.metadata["Uri"]
                .as_str()
                .unwrap()
                .ends_with("/devstoreaccount1/samples/img-7.v1.png")
        );
    }
    assert!(
        lines.has("listening to blob container samples for Thumbs"),
        "{lines:?}"
    );

    // A new host (nothing in memory): the receipts say every blob is done.
    let handle = scan(host_for(dir.path(), &azurite, &seen, false), log);
    tokio::time::sleep(SCAN * 10).await;
    assert_eq!(total(&seen), N, "a restart ran done blobs again");
    // A rewritten blob is a new version, and a new blob is new.
    put(&blobs, "img-3.v1.png", "rewritten").await;
    put(&blobs, "img-new.png", "new").await;
    wait_until(LIMIT, "the new versions processed", async || {
        total(&seen) >= N + 2
    })
    .await;
    tokio::time::sleep(SCAN * 5).await;
    assert!(handle.stop(STOP).await);
    {
        let seen = seen.lock().unwrap();
        assert_eq!(total_of(&seen), N + 2);
        assert_eq!(
            seen["samples/img-3.v1.png"][1].trigger,
            BindingData::Bytes(b"rewritten".to_vec())
        );
    }
    // One receipt per version.
    let receipts = blobs
        .container("azure-webjobs-hosts")
        .list("blobreceipts/blobtests/Host.Functions.Thumbs/", None, 5000)
        .await
        .unwrap();
    assert_eq!(receipts.blobs.len(), N + 2);
    azurite.stop().await;
}

fn total_of(seen: &HashMap<String, Vec<Invocation>>) -> usize {
    seen.values().map(Vec::len).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_blob_is_poisoned_after_exactly_the_threshold() {
    let azurite = Azurite::start_with_blobs().await;
    let blobs = azurite.blobs();
    blobs.container("samples").create().await.unwrap();
    let dir = blob_app(
        r#"{"version": "2.0", "extensions": {"blobs": {"poisonBlobThreshold": 3}}}"#,
        "samples/{name}",
    );
    put(&blobs, "bad/one.txt", "doomed").await;
    let seen: Seen = Arc::default();
    let (log, lines) = collecting_log();
    let handle = scan(host_for(dir.path(), &azurite, &seen, true), log);
    let poison = azurite.service().queue("webjobs-blobtrigger-poison");
    wait_for_count(LIMIT, &poison, 1).await;
    // More scans: it is not tried again.
    tokio::time::sleep(SCAN * 8).await;
    assert!(handle.stop(STOP).await);
    assert_eq!(seen.lock().unwrap()["samples/bad/one.txt"].len(), 3);
    let m = &poison.peek(1).await.unwrap()[0];
    let body: Value = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(&m.text)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(body["Type"], "BlobTrigger");
    assert_eq!(body["FunctionId"], "Host.Functions.Thumbs");
    assert_eq!(body["ContainerName"], "samples");
    assert_eq!(body["BlobName"], "bad/one.txt");
    assert!(body["ETag"].as_str().is_some_and(|e| !e.is_empty()));
    assert!(
        lines.mention("has failed to be processed 3 times"),
        "{lines:?}"
    );
    azurite.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_container_is_waited_for() {
    let azurite = Azurite::start_with_blobs().await;
    let blobs = azurite.blobs();
    let dir = blob_app(r#"{"version": "2.0"}"#, "samples/{name}");
    let seen: Seen = Arc::default();
    let (log, lines) = collecting_log();
    let handle = scan(host_for(dir.path(), &azurite, &seen, false), log);
    lines
        .wait_for(LIMIT, "the container does not exist (yet)")
        .await;
    blobs.container("samples").create().await.unwrap();
    put(&blobs, "late.txt", "late").await;
    wait_until(LIMIT, "the late blob", async || total(&seen) == 1).await;
    assert!(handle.stop(STOP).await);
    azurite.stop().await;
}
