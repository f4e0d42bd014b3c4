//! Hot swap under load: `fnhost serve --app` follows its slot while
//! deployments, rollbacks and swaps happen, with clients sending requests
//! all along. Zero failed requests, every answer from one whole version,
//! and each new version served within a bounded time. Loopback only; every
//! wait bounded.
//!
//! The app is a custom handler (node) in forwarding mode: each version's
//! handler answers `STARTUP|NOW`, where STARTUP is the version it read when
//! its process started and NOW the version file it reads for the request
//! (from its deployment folder); a request may ask it to wait (`?sleep=MS`)
//! so that invocations are in flight at each switch, or for the app
//! setting GREETING from its environment (`?env=1`).

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use fnhost_testsupport::app::scratch_home;
use fnhost_testsupport::process::succeeded;
use fnhost_testsupport::{Running, http};

const BIN: &str = env!("CARGO_BIN_EXE_fnhost");

const HANDLER: &str = r#"
const http = require('http');
const fs = require('fs');
const version = fs.readFileSync('version.txt', 'utf8').trim();
http.createServer((req, res) => {
  const url = new URL(req.url, 'http://localhost');
  const ms = Number(url.searchParams.get('sleep') || 0);
  setTimeout(() => {
    let now;
    try { now = fs.readFileSync('data/marker.txt', 'utf8').trim(); } catch (e) { now = 'missing'; }
    res.writeHead(200, { 'content-type': 'text/plain' });
    const env = url.searchParams.get('env') ? '|' + process.env.GREETING : '';
    res.end(version + '|' + now + env);
  }, ms);
}).listen(Number(process.env.FUNCTIONS_CUSTOMHANDLER_PORT), '127.0.0.1');
"#;

fn write_version(dir: &Path, version: &str) {
    std::fs::create_dir_all(dir.join("ver")).unwrap();
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::write(
        dir.join("host.json"),
        r#"{"version": "2.0", "customHandler": {"description": {"defaultExecutablePath": "node", "defaultWorkerPath": "handler.js"}, "enableForwardingHttpRequest": true}}"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("ver/function.json"),
        r#"{"bindings": [{"type": "httpTrigger", "direction": "in", "name": "req", "authLevel": "anonymous", "methods": ["get"]}, {"type": "http", "direction": "out", "name": "res"}]}"#,
    )
    .unwrap();
    std::fs::write(dir.join("handler.js"), HANDLER).unwrap();
    std::fs::write(dir.join("version.txt"), version).unwrap();
    std::fs::write(dir.join("data/marker.txt"), version).unwrap();
}

fn fnhost(home: &Path, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .arg("--home")
        .arg(home)
        .args(args)
        .output()
        .unwrap();
    String::from_utf8(succeeded(&out).stdout.clone()).unwrap()
}

/// Deploys a version; returns the deployment id.
fn deploy(home: &Path, src: &Path, slot: &str, version: &str) -> String {
    write_version(src, version);
    let out = fnhost(
        home,
        &[
            "deploy",
            "hs",
            "--slot",
            slot,
            "--dir",
            src.to_str().unwrap(),
            "--message",
            version,
            "--json",
        ],
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["id"].as_str().unwrap().to_owned()
}

/// A running `fnhost serve --app`, killed when dropped.
struct Served {
    run: Running,
    addr: String,
}

fn serve(home: &Path) -> Served {
    let mut cmd = Command::new(BIN);
    cmd.arg("--home")
        .arg(home)
        .args(["serve", "--app", "hs", "--port", "0"]);
    let run = Running::spawn(cmd);
    let addr = run.listening(Duration::from_secs(20));
    Served { run, addr }
}

/// One request on a new connection: the status and body, or why it failed.
fn get(addr: &str, target: &str) -> Result<(u16, String), String> {
    http::get(addr, target).map(|a| (a.status, a.text()))
}

/// One client request as seen by the client.
#[derive(Debug, Clone)]
struct Seen {
    start: Instant,
    outcome: Result<(u16, String), String>,
}

/// Polls until the served version is `version`; returns when it was seen.
fn wait_for(addr: &str, version: &str, within: Duration) -> Instant {
    let want = format!("{version}|{version}");
    let deadline = Instant::now() + within;
    loop {
        if let Ok((200, body)) = get(addr, "/api/ver")
            && body == want
        {
            return Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "{version} not served within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn serve_app_follows_deployments_rollbacks_and_swaps_under_load() {
    let test_started = Instant::now();
    let (tmp, home) = scratch_home();
    let src = tmp.path().join("src");
    let staging_src = tmp.path().join("staging-src");
    fnhost(&home, &["apps", "create", "hs"]);
    deploy(&home, &src, "production", "v1");
    deploy(&home, &staging_src, "staging", "vS");

    let served = serve(&home);
    let addr = served.addr.clone();
    wait_for(&addr, "v1", Duration::from_secs(10));
    // The keys live beside the slot, not in the read-only deployment.
    assert!(home.join("apps/hs/slots/production/secrets.json").is_file());
    let keys: serde_json::Value =
        serde_json::from_str(&fnhost(&home, &["keys", "list", "--app", "hs", "--json"])).unwrap();
    assert!(keys["functions"]["ver"]["default"].is_string(), "{keys}");

    // Clients: each sends requests back to back, some of them slow, so that
    // invocations are in flight at every switch.
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..4u64 {
        let (stop, addr) = (stop.clone(), addr.clone());
        clients.push(std::thread::spawn(move || {
            let mut seen = Vec::new();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let sleep = if c == 0 { 0 } else { (i * 37 + c * 11) % 200 };
                let start = Instant::now();
                let outcome = get(&addr, &format!("/api/ver?sleep={sleep}"));
                seen.push(Seen { start, outcome });
            }
            seen
        }));
    }

    // (what to run, the version production serves afterwards)
    type Op = (Vec<String>, &'static str);
    let mut ops: Vec<(Instant, Instant, Instant, &str)> = Vec::new();
    let mut run = |label: &str, op: &dyn Fn() -> Op| {
        let began = Instant::now();
        let (_, version) = op();
        let activated = Instant::now();
        let served_at = wait_for(&addr, version, Duration::from_secs(10));
        eprintln!(
            "{label}: {version} served {} ms after activation ({} ms command)",
            (served_at - activated).as_millis(),
            (activated - began).as_millis()
        );
        ops.push((began, activated, served_at, version));
        // Let the clients run on this version for a while.
        std::thread::sleep(Duration::from_millis(400));
    };
    let h = home.clone();
    let deploy_prod = |version: &'static str| {
        let (h, src) = (h.clone(), src.clone());
        move || -> Op { (vec![deploy(&h, &src, "production", version)], version) }
    };
    let v2 = deploy_prod("v2");
    let v3 = deploy_prod("v3");
    let v4 = deploy_prod("v4");
    run("deploy v2", &v2);
    let v3_id = std::cell::RefCell::new(String::new());
    run("deploy v3", &|| {
        let op = v3();
        *v3_id.borrow_mut() = op.0[0].clone();
        op
    });
    run("rollback", &|| {
        fnhost(&h, &["rollback", "hs"]);
        (vec![], "v2")
    });
    run("swap production staging", &|| {
        fnhost(&h, &["swap", "hs", "production", "staging"]);
        (vec![], "vS")
    });
    run("deploy v4", &v4);
    run("rollback to v3", &|| {
        fnhost(&h, &["rollback", "hs", &v3_id.borrow()]);
        (vec![], "v3")
    });
    run("swap back", &|| {
        fnhost(&h, &["swap", "hs", "staging", "production"]);
        (vec![], "v2")
    });

    stop.store(true, Ordering::Relaxed);
    let seen: Vec<Seen> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();

    // Zero failed requests; every answer from one whole version.
    let known = ["v1", "v2", "v3", "v4", "vS"];
    let mut failures = Vec::new();
    for s in &seen {
        match &s.outcome {
            Ok((200, body)) => {
                let (a, b) = body.split_once('|').unwrap_or((body, ""));
                if a != b || !known.contains(&a) {
                    failures.push(format!("mixed or unknown answer {body:?}"));
                }
            }
            other => failures.push(format!("{other:?}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} requests failed: {:?}",
        failures.len(),
        seen.len(),
        &failures[..failures.len().min(10)]
    );
    // A request sent after a version was seen served, and before the next
    // change began, is answered by that version: no going back.
    for (i, (_, _, served_at, version)) in ops.iter().enumerate() {
        let until = ops.get(i + 1).map(|o| o.0);
        for s in seen
            .iter()
            .filter(|s| s.start > *served_at && until.is_none_or(|u| s.start < u))
        {
            let body = &s.outcome.as_ref().unwrap().1;
            assert_eq!(
                body,
                &format!("{version}|{version}"),
                "a request sent after {version} was served"
            );
        }
    }
    let slowest = ops
        .iter()
        .map(|(_, activated, served_at, _)| *served_at - *activated)
        .max()
        .unwrap();
    eprintln!(
        "{} requests, 0 failed, {} switches, slowest switch {} ms after activation",
        seen.len(),
        ops.len(),
        slowest.as_millis()
    );
    assert!(seen.len() > 100, "only {} requests", seen.len());

    // Each old version was stopped once its in-flight requests finished.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = served.run.stderr();
        let swapped = log.lines().filter(|l| l.contains("now serving")).count();
        let retired = log
            .lines()
            .filter(|l| l.contains("stopped the previous version"))
            .count();
        assert!(!log.lines().any(|l| l.contains("error")), "{log}");
        if swapped == ops.len() && retired == ops.len() {
            assert!(
                log.lines()
                    .filter(|l| l.contains("stopped the previous version"))
                    .all(|l| l.contains("after its invocations finished")),
                "{log}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "{log}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(test_started.elapsed() < Duration::from_secs(120));
}

#[test]
fn serve_app_without_an_active_deployment_says_so() {
    let (_tmp, home) = scratch_home();
    fnhost(&home, &["apps", "create", "empty"]);
    for (app, says) in [
        ("empty", "no active deployment"),
        ("missing", "no app named"),
    ] {
        let out = Command::new(BIN)
            .arg("--home")
            .arg(&home)
            .args(["serve", "--app", app, "--port", "0"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{err}");
    }
}

#[test]
fn serve_app_reloads_when_the_app_settings_change() {
    let (tmp, home) = scratch_home();
    let src = tmp.path().join("src");
    fnhost(&home, &["apps", "create", "hs"]);
    fnhost(&home, &["settings", "set", "hs", "GREETING=hello"]);
    deploy(&home, &src, "production", "v1");
    let served = serve(&home);
    let addr = served.addr.clone();
    assert_eq!(
        get(&addr, "/api/ver?env=1").unwrap(),
        (200, "v1|v1|hello".to_string())
    );
    fnhost(&home, &["settings", "set", "hs", "GREETING=bonjour"]);
    let changed = Instant::now();
    // Served by the old process until the new one is up; never a failure.
    loop {
        let (status, body) = get(&addr, "/api/ver?env=1").unwrap();
        assert_eq!(status, 200, "{body}");
        if body == "v1|v1|bonjour" {
            break;
        }
        assert_eq!(body, "v1|v1|hello");
        assert!(
            changed.elapsed() < Duration::from_secs(10),
            "the new setting was not served within 10 s; stderr: {:?}",
            served.run.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // A deletion too.
    fnhost(&home, &["settings", "delete", "hs", "GREETING"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(&addr, "/api/ver?env=1").unwrap().1 != "v1|v1|undefined" {
        assert!(Instant::now() < deadline, "the deletion was not served");
        std::thread::sleep(Duration::from_millis(20));
    }
}
