//! `fnhost portal users ...` and the portal served by `fnhost manage`, as
//! a newcomer types them.

#![allow(clippy::unwrap_used)] // tests panic on what they do not expect

mod support;

use std::process::Command;

use fnhost_testsupport::process::succeeded;
use support::{fnhost, fnhost_stdin, spawn_manage};

#[test]
fn portal_users_are_added_listed_removed_and_sign_in_to_fnhost_manage() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    assert!(fnhost(&home, &["apps", "create", "demo"]).status.success());
    let out = fnhost_stdin(&home, &["portal", "users", "add", "ann"], "portal-pass-1\n");
    succeeded(&out);
    let list = fnhost(&home, &["portal", "users", "list"]);
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(text.starts_with("ann\t"), "{text}");
    assert!(!text.contains("portal-pass-1"));
    let json = fnhost(&home, &["portal", "users", "list", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v[0]["name"], "ann");
    // Too short a password: a usage error, nothing stored.
    let short = fnhost_stdin(&home, &["portal", "users", "add", "bob"], "short\n");
    assert_eq!(short.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&short.stderr).contains("too short"));

    // fnhost manage serves the portal; the account signs in.
    let (mut child, root) = spawn_manage(&home, &[]);
    let login = Command::new("curl")
        .args([
            "-s",
            "-i",
            "--max-time",
            "30",
            "--data-raw",
            "user=ann&password=portal-pass-1",
        ])
        .arg(format!("{root}/portal/login"))
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&login.stdout).into_owned();
    let _ = child.kill();
    let _ = child.wait();
    assert!(head.starts_with("HTTP/1.1 303"), "{head}");
    assert!(head.contains("set-cookie: fnhost_portal="), "{head}");

    // --no-portal: the API only.
    let (mut child, root) = spawn_manage(&home, &["--no-portal"]);
    let status = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "30",
        ])
        .arg(format!("{root}/portal/login"))
        .output()
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(String::from_utf8_lossy(&status.stdout), "404");

    let rm = fnhost(&home, &["portal", "users", "remove", "ann"]);
    assert!(rm.status.success());
    let again = fnhost(&home, &["portal", "users", "remove", "ann"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("no such portal user"));
}
