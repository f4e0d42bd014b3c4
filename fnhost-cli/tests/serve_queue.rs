//! `fnhost serve` with a queueTrigger function against a real Azurite: it
//! prints the listener, runs a script for each message, deletes them, and
//! stops cleanly on SIGTERM.

#![allow(clippy::unwrap_used)]
#![cfg(unix)]

#[path = "../../fnhost-triggers/tests/support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use fnhost_triggers::MessageEncoding;
use fnhost_triggers::queue::encode_message;
use support::Azurite;

const BIN: &str = env!("CARGO_BIN_EXE_fnhost");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_listens_to_queues_and_runs_each_message() {
    // Each run keeps its request; pids are unique while the runs overlap.
    let t = QueueApp::start(
        r#"{"version": "2.0", "extensions": {"queues": {"maxPollingInterval": "00:00:00.2"}}}"#,
        "Jobs",
        "jobs",
        "#!/bin/sh\ncat > \"$JOBS_OUT/$$.json.part\" && mv \"$JOBS_OUT/$$.json.part\" \"$JOBS_OUT/$$-$(date +%s%N).json\"\n",
    )
    .await;
    let (q, out, app) = (&t.q, &t.out, t.dir.path());
    let (mut child, rx) = start_serve(app, &[]);
    wait_line(&rx, "fnhost: listening to queue jobs for Jobs");

    put_jobs(q, 5).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let files = loop {
        let files: Vec<_> = std::fs::read_dir(out.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        if files.len() >= 5 && q.approximate_count().await.unwrap() == Some(0) {
            break files;
        }
        assert!(Instant::now() < deadline, "5 runs, found {}", files.len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(files.len(), 5);
    let mut jobs: Vec<String> = files
        .iter()
        .map(|f| {
            let v: serde_json::Value = serde_json::from_slice(&std::fs::read(f).unwrap()).unwrap();
            assert_eq!(v["Metadata"]["DequeueCount"], 1, "{v}");
            assert!(v["Metadata"]["Id"].is_string(), "{v}");
            v["Data"]["job"].as_str().unwrap().to_owned()
        })
        .collect();
    jobs.sort();
    assert_eq!(jobs, ["job 0", "job 1", "job 2", "job 3", "job 4"]);

    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "fnhost serve did not stop");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status:?}");
    t.azurite.stop().await;
}

/// A fresh Azurite with queue `queue`, and an app (in `dir`) whose
/// function `name` runs `script` for each of its messages, the runs
/// writing to `out` (see [`write_queue_app`]).
struct QueueApp {
    azurite: Azurite,
    q: fnhost_triggers::storage::QueueClient,
    dir: tempfile::TempDir,
    out: tempfile::TempDir,
}

impl QueueApp {
    async fn start(host_json: &str, name: &str, queue: &str, script: &str) -> QueueApp {
        let azurite = Azurite::start().await;
        let q = azurite.service().queue(queue);
        q.create().await.unwrap();
        let (dir, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        write_queue_app(
            dir.path(),
            &azurite,
            out.path(),
            host_json,
            name,
            queue,
            script,
        );
        QueueApp {
            azurite,
            q,
            dir,
            out,
        }
    }
}

/// Writes an app whose function `name` runs `script` for each message of
/// queue `queue` (`AzureWebJobsStorage` is Azurite; `JOBS_OUT` is `out`).
fn write_queue_app(
    app: &std::path::Path,
    azurite: &Azurite,
    out: &std::path::Path,
    host_json: &str,
    name: &str,
    queue: &str,
    script: &str,
) {
    std::fs::write(app.join("host.json"), host_json).unwrap();
    std::fs::write(
        app.join("local.settings.json"),
        serde_json::json!({
            "IsEncrypted": false,
            "Values": {
                "AzureWebJobsStorage": azurite.connection_string(),
                "JOBS_OUT": out.to_str().unwrap(),
            }
        })
        .to_string(),
    )
    .unwrap();
    std::fs::create_dir_all(app.join(name)).unwrap();
    std::fs::write(
        app.join(name).join("function.json"),
        format!(r#"{{"bindings": [{{"type": "queueTrigger", "direction": "in", "name": "job", "queueName": "{queue}"}}]}}"#),
    )
    .unwrap();
    std::fs::write(app.join(name).join("run.sh"), script).unwrap();
}

/// Starts `fnhost serve APP` with `env`; returns the child and its stderr
/// lines (echoed).
fn start_serve(
    app: &std::path::Path,
    env: &[(&str, &str)],
) -> (std::process::Child, mpsc::Receiver<String>) {
    let mut child = Command::new(BIN)
        .arg("serve")
        .arg(app)
        .args(["--port", "0"])
        .env_remove("AzureWebJobsStorage")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            eprintln!("serve: {line}");
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

fn wait_line(rx: &mpsc::Receiver<String>, wanted: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("serve did not print {wanted:?}"));
        if line == wanted {
            return;
        }
    }
}

/// The message texts of the finished runs (one file each).
fn runs(out: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .filter_map(|f| {
            let v: serde_json::Value = serde_json::from_slice(&std::fs::read(f).ok()?).ok()?;
            Some(v["Data"]["job"].as_str()?.to_owned())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_killed_mid_batch_loses_no_message() {
    // Each run takes a while, so the kill finds runs in flight; a run
    // counts once its file is written (renamed into place whole).
    let t = QueueApp::start(
        r#"{"version": "2.0", "extensions": {"queues": {"maxPollingInterval": "00:00:00.2", "batchSize": 16}}}"#,
        "Work",
        "work",
        "#!/bin/sh\nbody=$(cat)\nsleep 0.1\nf=\"$JOBS_OUT/$$-$(date +%s%N)\"\nprintf '%s' \"$body\" > \"$f.part\" && mv \"$f.part\" \"$f.json\"\n",
    )
    .await;
    let (q, out, app) = (&t.q, &t.out, t.dir.path());
    // `fnhost list` shows the listener.
    let listed = Command::new(BIN)
        .arg("list")
        .arg(app)
        .env_remove("AzureWebJobsStorage")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&listed.stdout)
            .contains("listens to: queue work (connection AzureWebJobsStorage)"),
        "{}",
        String::from_utf8_lossy(&listed.stdout)
    );
    let listed = Command::new(BIN)
        .args(["list", "--json"])
        .arg(app)
        .env_remove("AzureWebJobsStorage")
        .output()
        .unwrap();
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(
        listed[0]["listener"],
        serde_json::json!({"source": "queue work", "connection": "AzureWebJobsStorage"})
    );

    const N: usize = 300;
    put_jobs(q, N).await;
    // Received messages of a killed fnhost come back after 2 s, not 10 min.
    let env = [("FNHOST_QUEUE_VISIBILITY", "2")];
    let (mut child, rx) = start_serve(app, &env);
    wait_line(&rx, "fnhost: listening to queue work for Work");
    let deadline = Instant::now() + Duration::from_secs(60);
    while runs(out.path()).len() < N / 3 {
        assert!(Instant::now() < deadline, "no progress before the kill");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap(); // SIGKILL, mid-batch
    child.wait().unwrap();
    let before_restart = runs(out.path()).len();
    let waiting = q.approximate_count().await.unwrap().unwrap_or(0);
    assert!(
        (waiting as usize) < N && waiting > 0,
        "the kill was not mid-batch: {waiting} messages left"
    );

    let (mut child, rx) = start_serve(app, &env);
    wait_line(&rx, "fnhost: listening to queue work for Work");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let seen: std::collections::HashSet<String> = runs(out.path()).into_iter().collect();
        if seen.len() == N && q.approximate_count().await.unwrap() == Some(0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "lost messages: {} of {N} ran",
            seen.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all = runs(out.path());
    let distinct: std::collections::HashSet<&String> = all.iter().collect();
    eprintln!(
        "SIGKILL test: {N} messages, {before_restart} runs finished before the kill, {} runs in all, {} distinct messages, {} run twice (at least once), 0 lost",
        all.len(),
        distinct.len(),
        all.len() - distinct.len()
    );
    assert_eq!(distinct.len(), N);
    for i in 0..N {
        assert!(distinct.contains(&format!("job {i}")), "job {i} lost");
    }
    child.kill().unwrap();
    child.wait().unwrap();
    t.azurite.stop().await;
}

/// An https queue endpoint (Azurite with a self-signed certificate):
/// `fnhost serve` trusts the system's roots, here `SSL_CERT_FILE`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_reaches_an_https_queue() {
    let (azurite, cert) = Azurite::start_https().await;
    let tls = fnhost_triggers::storage::tls_trusting(&cert).unwrap();
    let q = fnhost_triggers::storage::QueueService::with_tls(
        fnhost_triggers::storage::StorageAccount::emulator(&azurite.endpoint),
        tls,
    )
    .unwrap()
    .queue("secure");
    q.create().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    write_queue_app(
        dir.path(),
        &azurite,
        out.path(),
        r#"{"version": "2.0", "extensions": {"queues": {"maxPollingInterval": "00:00:00.2"}}}"#,
        "Secure",
        "secure",
        "#!/bin/sh\nf=\"$JOBS_OUT/$$-$(date +%s%N)\"\ncat > \"$f.part\" && mv \"$f.part\" \"$f.json\"\n",
    );
    let cert_env = cert.to_str().unwrap();
    let (mut child, rx) = start_serve(dir.path(), &[("SSL_CERT_FILE", cert_env)]);
    wait_line(&rx, "fnhost: listening to queue secure for Secure");
    put_jobs(&q, 3).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while runs(out.path()).len() < 3 {
        assert!(
            Instant::now() < deadline,
            "the https queue's messages did not run"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut jobs = runs(out.path());
    jobs.sort();
    assert_eq!(jobs, ["job 0", "job 1", "job 2"]);
    child.kill().unwrap();
    child.wait().unwrap();
    azurite.stop().await;
}

/// Puts `job 0` ... `job {n-1}`.
async fn put_jobs(q: &fnhost_triggers::storage::QueueClient, n: usize) {
    for i in 0..n {
        q.put(
            &encode_message(&format!("job {i}"), MessageEncoding::Base64),
            None,
        )
        .await
        .unwrap();
    }
}
