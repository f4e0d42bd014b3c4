//! `fnhost serve`, `fnhost keys` and `fnhost invoke` as a user runs them:
//! the binary as a child process, plain HTTP over loopback, every wait
//! bounded.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use fnhost_testsupport::process::succeeded;
use fnhost_testsupport::{Running, http};

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
    run: Running,
    addr: String,
}

impl Served {
    /// Asserts that stdout (the function list) has a line with `needle`.
    fn lists(&self, needle: &str) {
        self.run.wait_stdout(needle, Duration::from_secs(10));
    }
}

fn serve(dir: &Path) -> Served {
    let mut cmd = Command::new(BIN);
    cmd.arg("serve")
        .arg(dir)
        .args(["--port", "0"])
        .env_remove("WEBSITE_TIME_ZONE")
        .env_remove("TZ");
    let run = Running::spawn(cmd);
    let addr = run.listening(Duration::from_secs(20));
    Served { run, addr }
}

/// One request; returns the status and body (0 when there was no answer).
fn request(addr: &str, method: &str, target: &str, headers: &[(&str, &str)]) -> (u16, String) {
    http::request(addr, method, target, headers, b"")
        .map_or((0, String::new()), |a| (a.status, a.text()))
}

fn fnhost(args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn keys_json(dir: &Path) -> serde_json::Value {
    let out = fnhost(&["keys", "list", dir.to_str().unwrap(), "--json"]);
    succeeded(&out);
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
    served.lists(&format!(
        "Hello: [GET,POST] http://{a}/api/Hello (auth: function)"
    ));
    served.lists("Open: [GET,POST]");
    served.lists("Tick: timerTrigger, schedule 0 0 0 1 1 * (UTC)");

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
        served.run.signal("TERM");
        let status = served.run.wait_exit(Duration::from_secs(15));
        assert!(status.success(), "{status:?}");
        served.run.stop();
        let log = served.run.stderr();
        assert!(log.lines().any(|l| l.contains("stopped")), "{log}");
    }
}

#[test]
fn keys_new_adds_function_and_host_keys() {
    let dir = tempfile::tempdir().unwrap();
    write_app(dir.path());
    let d = dir.path().to_str().unwrap();
    let out = fnhost(&["keys", "new", d, "--function", "hello", "--name", "ci"]);
    succeeded(&out);
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
