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
    let azurite = Azurite::start().await;
    let q = azurite.service().queue("jobs");
    q.create().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let app = dir.path();
    std::fs::write(
        app.join("host.json"),
        r#"{"version": "2.0", "extensions": {"queues": {"maxPollingInterval": "00:00:00.2"}}}"#,
    )
    .unwrap();
    std::fs::write(
        app.join("local.settings.json"),
        serde_json::json!({
            "IsEncrypted": false,
            "Values": {
                "AzureWebJobsStorage": azurite.connection_string(),
                "JOBS_OUT": out.path().to_str().unwrap(),
            }
        })
        .to_string(),
    )
    .unwrap();
    std::fs::create_dir_all(app.join("Jobs")).unwrap();
    std::fs::write(
        app.join("Jobs").join("function.json"),
        r#"{"bindings": [{"type": "queueTrigger", "direction": "in", "name": "job", "queueName": "jobs"}]}"#,
    )
    .unwrap();
    // Each run keeps its request; pids are unique while the runs overlap.
    std::fs::write(
        app.join("Jobs").join("run.sh"),
        "#!/bin/sh\ncat > \"$JOBS_OUT/$$.json.part\" && mv \"$JOBS_OUT/$$.json.part\" \"$JOBS_OUT/$$-$(date +%s%N).json\"\n",
    )
    .unwrap();

    let mut child = Command::new(BIN)
        .arg("serve")
        .arg(app)
        .args(["--port", "0"])
        .env_remove("AzureWebJobsStorage")
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
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .expect("serve prints its queue listener");
        if line == "fnhost: listening to queue jobs for Jobs" {
            break;
        }
    }

    for i in 0..5 {
        q.put(
            &encode_message(&format!("job {i}"), MessageEncoding::Base64),
            None,
        )
        .await
        .unwrap();
    }
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
    azurite.stop().await;
}
