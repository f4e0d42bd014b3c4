//! `fnhost serve`, `fnhost keys` and `fnhost invoke` as a user runs them:
//! the binary as a child process, plain HTTP over loopback, every wait
//! bounded.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_fnhost");

fn write_app(dir: &Path) {
    std::fs::write(dir.join("host.json"), r#"{"version": "2.0"}"#).unwrap();
    for (name, auth) in [("Hello", "function"), ("Open", "anonymous")] {
        std::fs::create_dir_all(dir.join(name)).unwrap();
        std::fs::write(
            dir.join(name).join("function.json"),
            format!(
                r#"{{"bindings": [{{"type": "httpTrigger", "direction": "in", "name": "req", "authLevel": "{auth}", "methods": ["get", "post"]}}, {{"type": "http", "direction": "out", "name": "$return"}}]}}"#
            ),
        )
        .unwrap();
        std::fs::write(dir.join(name).join("run.sh"), "#!/bin/sh\n").unwrap();
    }
    std::fs::create_dir_all(dir.join("Tick")).unwrap();
    std::fs::write(
        dir.join("Tick").join("function.json"),
        r#"{"bindings": [{"type": "timerTrigger", "direction": "in", "name": "t", "schedule": "0 0 0 1 1 *"}]}"#,
    )
    .unwrap();
    std::fs::write(dir.join("Tick").join("run.sh"), "#!/bin/sh\n").unwrap();
}

/// A running `fnhost serve`, killed when dropped.
struct Served {
    child: Child,
    addr: String,
    stdout: String,
    stderr: mpsc::Receiver<String>,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(dir: &Path) -> Served {
    let mut child = Command::new(BIN)
        .arg("serve")
        .arg(dir)
        .args(["--port", "0"])
        .env_remove("WEBSITE_TIME_ZONE")
        .env_remove("TZ")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let out = child.stdout.take().unwrap();
    let (otx, orx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if otx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut addr = None;
    while addr.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .expect("fnhost serve said where it listens");
        if let Some(rest) = line.split("listening on http://").nth(1) {
            addr = rest.split_whitespace().next().map(str::to_owned);
        }
    }
    let mut stdout = String::new();
    while let Ok(line) = orx.recv_timeout(Duration::from_millis(200)) {
        stdout.push_str(&line);
        stdout.push('\n');
    }
    Served {
        child,
        addr: addr.unwrap(),
        stdout,
        stderr: rx,
    }
}

/// One request; returns the status and body.
fn request(addr: &str, method: &str, target: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("Content-Length: 0\r\n\r\n");
    s.write_all(head.as_bytes()).unwrap();
    let mut raw = String::new();
    let _ = s.read_to_string(&mut raw);
    let status = raw
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn fnhost(args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn keys_json(dir: &Path) -> serde_json::Value {
    let out = fnhost(&["keys", "list", dir.to_str().unwrap(), "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn serve_lists_functions_guards_keys_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    write_app(dir.path());
    let keys = keys_json(dir.path());
    let master = keys["master"].as_str().unwrap().to_owned();
    assert!(master.len() >= 40);
    assert!(keys["host"]["default"].is_string());
    assert!(keys["functions"]["Hello"]["default"].is_string());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let file = dir.path().join(".fnhost/secrets.json");
        assert_eq!(
            std::fs::metadata(file).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    let served = serve(dir.path());
    let a = served.addr.clone();
    assert!(
        served.stdout.contains(&format!(
            "Hello: [GET,POST] http://{a}/api/Hello (auth: function)"
        )),
        "{}",
        served.stdout
    );
    assert!(
        served.stdout.contains("Open: [GET,POST]"),
        "{}",
        served.stdout
    );
    assert!(
        served
            .stdout
            .contains("Tick: timerTrigger, schedule 0 0 0 1 1 * (UTC)")
    );

    assert_eq!(request(&a, "GET", "/api/nothing", &[]).0, 404);
    assert_eq!(request(&a, "DELETE", "/api/Open", &[]).0, 405);
    assert_eq!(request(&a, "GET", "/api/Hello", &[]).0, 401);
    assert_eq!(request(&a, "GET", "/api/Hello?code=nope", &[]).0, 401);
    assert_eq!(request(&a, "GET", "/admin/host/status", &[]).0, 401);
    let (status, body) = request(
        &a,
        "GET",
        "/admin/host/status",
        &[("x-functions-key", &master)],
    );
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["state"], "Running");
    assert_eq!(v["functions"], 3);
    let (status, body) = request(&a, "GET", &format!("/admin/functions?code={master}"), &[]);
    assert_eq!(status, 200);
    assert!(body.contains("\"route\":\"/api/Hello\""), "{body}");

    // A key rotated while the server runs is honoured at once.
    let out = fnhost(&["keys", "new", dir.path().to_str().unwrap(), "--master"]);
    assert!(out.status.success());
    let new_master = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_ne!(new_master, master);
    assert_eq!(
        request(
            &a,
            "GET",
            "/admin/host/status",
            &[("x-functions-key", &new_master)]
        )
        .0,
        200
    );
    assert_eq!(
        request(
            &a,
            "GET",
            "/admin/host/status",
            &[("x-functions-key", &master)]
        )
        .0,
        401
    );

    // SIGTERM: a graceful stop, exit 0.
    let mut served = served;
    #[cfg(unix)]
    {
        let pid = served.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let deadline = Instant::now() + Duration::from_secs(15);
        let status = loop {
            if let Some(s) = served.child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "fnhost serve did not stop");
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(status.success(), "{status:?}");
        let rest: Vec<String> = served.stderr.try_iter().collect();
        assert!(rest.iter().any(|l| l.contains("stopped")), "{rest:?}");
    }
}

#[test]
fn keys_new_adds_function_and_host_keys() {
    let dir = tempfile::tempdir().unwrap();
    write_app(dir.path());
    let d = dir.path().to_str().unwrap();
    let out = fnhost(&["keys", "new", d, "--function", "hello", "--name", "ci"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let out = fnhost(&["keys", "new", d, "--host", "deploy"]);
    assert!(out.status.success());
    let keys = keys_json(dir.path());
    assert_eq!(keys["functions"]["Hello"]["ci"], key.as_str());
    assert!(keys["host"]["deploy"].is_string());
    // Errors: an unknown function, no choice of key.
    assert_eq!(
        fnhost(&["keys", "new", d, "--function", "nope"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(fnhost(&["keys", "new", d]).status.code(), Some(2));
    let text = fnhost(&["keys", "list", d]);
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.contains("function Hello ci: "), "{text}");
}

#[test]
fn serve_refuses_an_invalid_app_and_a_busy_port() {
    let dir = tempfile::tempdir().unwrap();
    write_app(dir.path());
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let out = Command::new(BIN)
        .args(["serve", dir.path().to_str().unwrap(), "--port", &port])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot listen on"));

    std::fs::write(dir.path().join("Open/function.json"), "{ not json").unwrap();
    let out = Command::new(BIN)
        .args(["serve", dir.path().to_str().unwrap(), "--port", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Open/function.json"), "{err}");
}

#[test]
fn invoke_reports_an_unknown_function() {
    let dir = tempfile::tempdir().unwrap();
    write_app(dir.path());
    let out = fnhost(&[
        "invoke",
        dir.path().to_str().unwrap(),
        "Nope",
        "--data",
        "{}",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no function named 'Nope'") && err.contains("Hello"),
        "{err}"
    );
}
