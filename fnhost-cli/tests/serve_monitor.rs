//! `fnhost serve --app` records each invocation in the home; the Monitor
//! page of a `fnhost manage` on the same home lists them with their
//! counts, as a newcomer types the commands.

#![allow(clippy::unwrap_used)] // tests panic on what they do not expect

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use fnhost_testsupport::{Running, http};
use support::{BIN, curl_status, fnhost_ok, manage, write};

/// An HTTP function whose script prints `out` and exits with `code`.
fn function(app: &Path, name: &str, out: &str, code: u8) {
    write(
        &app.join(name).join("function.json"),
        r#"{"scriptFile": "run.sh", "bindings": [{"type": "httpTrigger", "direction": "in", "name": "req", "authLevel": "anonymous", "methods": ["get"]}, {"type": "http", "direction": "out", "name": "res"}]}"#,
    );
    write(
        &app.join(name).join("run.sh"),
        &format!("cat > /dev/null\nprintf '%s' '{out}'\nexit {code}\n"),
    );
}

#[test]
fn the_portal_monitor_lists_what_fnhost_serve_ran() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let src = tmp.path().join("src");
    write(&src.join("host.json"), r#"{"version": "2.0"}"#);
    function(
        &src,
        "Hello",
        r#"{"Outputs":{"res":{"statusCode":201,"body":"hi"}}}"#,
        0,
    );
    function(&src, "Broken", "", 3);
    fnhost_ok(&home, &["apps", "create", "demo"], "");
    fnhost_ok(
        &home,
        &["deploy", "demo", "--dir", src.to_str().unwrap()],
        "",
    );

    // Three good requests and one failing one through `fnhost serve --app`.
    let mut cmd = Command::new(BIN);
    cmd.arg("--home")
        .arg(&home)
        .args(["serve", "--app", "demo", "--port", "0"]);
    let mut served = Running::spawn(cmd);
    let addr = served.listening(Duration::from_secs(30));
    for _ in 0..3 {
        let a = http::get(&addr, "/api/Hello").unwrap();
        assert_eq!((a.status, a.text()), (201, "hi".to_owned()));
    }
    assert_eq!(http::get(&addr, "/api/Broken").unwrap().status, 500);
    // The records reach the home from a background writer; no request
    // waits for them.
    let log = home.join("apps/demo/slots/production/monitor/invocations.jsonl");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .count()
        < 4
    {
        assert!(
            Instant::now() < deadline,
            "4 records not written within 10 s: {}",
            served.output()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    served.stop();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("\"hi\""), "no response body in the records");

    // A portal account signs in to `fnhost manage` on the same home.
    fnhost_ok(&home, &["portal", "users", "add", "ann"], "portal-pass-1\n");
    let m = manage(&home, &[]);
    let jar = tmp.path().join("cookies");
    let jar = jar.to_str().unwrap();
    let (status, _) = curl_status(
        tmp.path(),
        &[
            "-c",
            jar,
            "--data-raw",
            "user=ann&password=portal-pass-1",
            &format!("{}/portal/login", m.root),
        ],
    );
    assert_eq!(status, 303);
    let (status, body) = curl_status(
        tmp.path(),
        &[
            "-b",
            jar,
            &format!("{}/portal/apps/demo/production/monitor", m.root),
        ],
    );
    let page = String::from_utf8(body).unwrap();
    assert_eq!(status, 200, "{page}");
    // Newest first: the failure, then the three successes.
    let rows: Vec<&str> = page
        .split("<tr><td>")
        .skip(1)
        .filter(|r| r.contains("fnhost serve"))
        .collect();
    assert_eq!(rows.len(), 4, "{page}");
    assert!(
        rows[0].contains("<td>Broken</td><td>no</td><td>500</td>"),
        "{page}"
    );
    for r in &rows[1..] {
        assert!(
            r.contains("<td>Hello</td><td>yes</td><td>201</td>"),
            "{page}"
        );
    }
    // The counts per function.
    assert!(
        page.contains("<td>Hello</td><td>3</td><td>0</td>"),
        "{page}"
    );
    assert!(
        page.contains("<td>Broken</td><td>0</td><td>1</td>"),
        "{page}"
    );
}
