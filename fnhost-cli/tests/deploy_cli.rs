//! The deployment commands through the `fnhost` binary.

#![allow(clippy::unwrap_used)] // tests panic on what they do not expect

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

mod support;
use fnhost_testsupport::app::hold_slot_lock;
use fnhost_testsupport::process::succeeded;
use support::*;

/// An app in `dir` with local settings and a data file saying `version`;
/// `dir`.
fn make_app(dir: &Path, version: &str) -> PathBuf {
    write(&dir.join("host.json"), HOST_JSON);
    write(&dir.join("hello/function.json"), HTTP_FUNCTION);
    write(
        &dir.join("local.settings.json"),
        r#"{"Values":{"SECRET":"x"}}"#,
    );
    write(&dir.join("lib/data.txt"), version);
    write(&dir.join("handler"), "#!/bin/sh\n");
    fs::set_permissions(dir.join("handler"), fs::Permissions::from_mode(0o755)).unwrap();
    dir.to_path_buf()
}

fn ok(out: &Output) -> String {
    String::from_utf8_lossy(&succeeded(out).stdout).into_owned()
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_str(&ok(out)).unwrap()
}

/// `fnhost deploy demo --dir DIR`, which must fail (exit 1): its stderr.
fn deploy_refused(home: &Path, dir: &Path) -> String {
    let out = fnhost(home, &["deploy", "demo", "--dir", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn the_deployment_commands() {
    let (tmp, home) = scratch_home();
    let v1 = make_app(&tmp.path().join("v1"), "one");
    let v2 = make_app(&tmp.path().join("v2"), "two");

    ok(&fnhost(&home, &["apps", "create", "demo"]));
    let out = fnhost(&home, &["apps", "create", "demo"]);
    assert_eq!(out.status.code(), Some(2));
    let out = fnhost(&home, &["deploy", "nosuch", "--dir", v1.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("fnhost apps create nosuch"));

    let d1 = json(&fnhost(
        &home,
        &[
            "deploy",
            "demo",
            "--dir",
            v1.to_str().unwrap(),
            "-m",
            "first",
            "--author",
            "ada",
            "--json",
        ],
    ));
    assert_eq!(d1["status"], "success");
    assert_eq!(d1["active"], true);
    let id1 = d1["id"].as_str().unwrap().to_string();

    // A zip made from v2 (through the library's packager).
    let zip = tmp.path().join("v2.zip");
    fnhost_deploy::package::zip_folder(&v2, fs::File::create(&zip).unwrap()).unwrap();
    let d2 = json(&fnhost(
        &home,
        &["deploy", "demo", "--zip", zip.to_str().unwrap(), "--json"],
    ));
    assert_eq!(d2["deployer"], "ZipDeploy");
    let id2 = d2["id"].as_str().unwrap().to_string();

    // A broken app: exit 1, the record failed, the previous stays active.
    let bad = make_app(&tmp.path().join("bad"), "bad");
    write(&bad.join("hello/function.json"), "{ nope");
    let err = deploy_refused(&home, &bad);
    assert!(
        err.contains("failed") && err.contains("function.json"),
        "{err}"
    );

    let list = json(&fnhost(&home, &["deployments", "demo", "--json"]));
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 3);
    assert_eq!(list[0]["status"], "failed");
    assert_eq!(list[1]["id"], id2.as_str());
    assert_eq!(list[1]["active"], true);
    assert_eq!(list[2]["id"], id1.as_str());
    for key in [
        "id",
        "status",
        "active",
        "author",
        "message",
        "deployer",
        "source_id",
        "received_time",
        "start_time",
        "end_time",
    ] {
        assert!(list[2].get(key).is_some(), "{key}");
    }
    assert_eq!(list[2]["author"], "ada");
    let failed_id = list[0]["id"].as_str().unwrap().to_string();
    let log = json(&fnhost(
        &home,
        &["deployments", "log", "demo", &failed_id, "--json"],
    ));
    assert!(
        log.as_array()
            .unwrap()
            .iter()
            .any(|e| e["level"] == "error")
    );
    let shown = ok(&fnhost(&home, &["deployments", "show", "demo", &id1]));
    assert!(shown.contains("first"));

    // Rollback (default: the one before), then swap with staging.
    let back = json(&fnhost(&home, &["rollback", "demo", "--json"]));
    assert_eq!(back["id"], id1.as_str());
    ok(&fnhost(
        &home,
        &[
            "deploy",
            "demo",
            "--slot",
            "staging",
            "--dir",
            v2.to_str().unwrap(),
        ],
    ));
    ok(&fnhost(&home, &["swap", "demo", "production", "staging"]));
    let apps = json(&fnhost(&home, &["apps", "list", "--json"]));
    let slots = apps[0]["slots"].as_array().unwrap();
    assert_eq!(slots.len(), 2);
    assert_eq!(slots[1]["name"], "staging");
    assert_eq!(slots[1]["active"], id1.as_str());

    // Download and export.
    let out_zip = tmp.path().join("out.zip");
    ok(&fnhost(
        &home,
        &["download", "demo", "-o", out_zip.to_str().unwrap()],
    ));
    assert!(fs::metadata(&out_zip).unwrap().len() > 0);
    let repo = tmp.path().join("repo");
    ok(&fnhost(
        &home,
        &["export", "demo", "--git", repo.to_str().unwrap()],
    ));
    assert!(repo.join(".git").is_dir());
    assert_eq!(
        fs::read_to_string(repo.join("lib/data.txt")).unwrap(),
        "two"
    );

    // Credentials: on stdin, never printed.
    let out = fnhost_stdin(
        &home,
        &["credentials", "set", "demo", "--user", "deployer"],
        "s3cret-pass\n",
    );
    ok(&out);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("s3cret"));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("s3cret"));
    ok(&fnhost_stdin(
        &home,
        &["credentials", "check", "demo", "--user", "deployer"],
        "s3cret-pass\n",
    ));
    let out = fnhost_stdin(
        &home,
        &["credentials", "check", "demo", "--user", "deployer"],
        "wrong-pass\n",
    );
    assert_eq!(out.status.code(), Some(1));
    let new = ok(&fnhost(
        &home,
        &["credentials", "reset", "demo", "--user", "deployer"],
    ));
    ok(&fnhost_stdin(
        &home,
        &["credentials", "check", "demo", "--user", "deployer"],
        &new,
    ));
    let cred = home.join("apps/demo/credentials.json");
    assert_eq!(
        fs::metadata(&cred).unwrap().permissions().mode() & 0o777,
        0o600
    );
    for f in walk(&home) {
        let data = fs::read(&f).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&data).contains("s3cret-pass"),
            "{}",
            f.display()
        );
    }

    // Read-only mode set through the library.
    let site = fnhost_deploy::Site::open(&home).unwrap();
    site.set_continuous_deployment(
        "demo",
        "production",
        Some("git@example.invalid:demo.git#main"),
    )
    .unwrap();
    let err = deploy_refused(&home, &v1);
    assert!(
        err.contains("read-only") && err.contains("git@example.invalid:demo.git#main"),
        "{err}"
    );

    let report = json(&fnhost(&home, &["fsck", "--json"]));
    assert_eq!(report["ok"], true, "{report}");
    ok(&fnhost(&home, &["gc"]));
    ok(&fnhost(&home, &["apps", "delete", "demo"]));
    assert_eq!(
        json(&fnhost(&home, &["apps", "list", "--json"])),
        serde_json::json!([])
    );
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn a_second_deployment_waits_or_fails_at_once() {
    let (tmp, home) = scratch_home();
    let v1 = make_app(&tmp.path().join("v1"), "one");
    ok(&fnhost(&home, &["apps", "create", "demo"]));
    let lock_path = home.join("apps/demo/slots/production/lock");
    let holder = hold_slot_lock(&lock_path, "20990101T000000000000Z-running");

    let out = fnhost(
        &home,
        &["deploy", "demo", "--dir", v1.to_str().unwrap(), "--no-wait"],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("a deployment is in progress"), "{err}");
    assert!(err.contains("20990101T000000000000Z-running"), "{err}");

    let child = Command::new(env!("CARGO_BIN_EXE_fnhost"))
        .arg("--home")
        .arg(&home)
        .args(["deploy", "demo", "--dir", v1.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    drop(holder);
    let out = child.wait_with_output().unwrap();
    ok(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("waiting"), "{err}");
}

#[test]
fn an_executable_keeps_its_mode_under_a_strict_umask() {
    let tmp = tempfile::tempdir().unwrap();
    let (home, src) = (tmp.path().join("home"), tmp.path().join("src"));
    make_app(&src, "v1");
    ok(&fnhost(&home, &["apps", "create", "app"]));
    // The first deployment writes its folder while storing; under umask
    // 077 a file created 0555 would be 0500.
    let out = Command::new("sh")
        .args(["-c", "umask 077 && exec \"$0\" \"$@\""])
        .arg(env!("CARGO_BIN_EXE_fnhost"))
        .arg("--home")
        .arg(&home)
        .args(["deploy", "app", "--dir"])
        .arg(&src)
        .output()
        .unwrap();
    ok(&out);
    let content = home.join("apps/app/content");
    let folder = fs::read_dir(&content)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mode = fs::metadata(folder.join("handler"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o555);
}

#[test]
fn app_settings_are_set_listed_deleted_and_downloaded() {
    let (tmp, home) = scratch_home();
    let v1 = make_app(&tmp.path().join("v1"), "one");
    ok(&fnhost(&home, &["apps", "create", "demo"]));
    ok(&fnhost(
        &home,
        &["deploy", "demo", "--dir", v1.to_str().unwrap()],
    ));

    let out = fnhost(&home, &["settings", "list", "demo"]);
    assert_eq!(ok(&out), "");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no app settings"));
    ok(&fnhost(
        &home,
        &[
            "settings",
            "set",
            "demo",
            "GREETING=hello",
            "DB=Server=x;Key=a=b",
            "EMPTY=",
        ],
    ));
    ok(&fnhost(
        &home,
        &["settings", "set", "demo", "GREETING=bonjour"],
    ));
    assert_eq!(
        ok(&fnhost(&home, &["settings", "list", "demo"])),
        "DB=Server=x;Key=a=b\nEMPTY=\nGREETING=bonjour\n",
        "sorted, merged, values kept whole"
    );
    ok(&fnhost(
        &home,
        &["settings", "delete", "demo", "EMPTY", "NEVER_SET"],
    ));
    assert_eq!(
        json(&fnhost(&home, &["settings", "list", "demo", "--json"])),
        serde_json::json!({ "DB": "Server=x;Key=a=b", "GREETING": "bonjour" })
    );
    // Another slot has its own.
    assert_eq!(
        ok(&fnhost(
            &home,
            &["settings", "list", "demo", "--slot", "staging"]
        )),
        ""
    );

    // Settings hold secrets: the slot's configuration is owner-only.
    let config = home.join("apps/demo/slots/production/config.json");
    assert_eq!(
        fs::metadata(&config).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // A download with settings carries them as local.settings.json.
    let zip = tmp.path().join("out.zip");
    ok(&fnhost(
        &home,
        &[
            "download",
            "demo",
            "-o",
            zip.to_str().unwrap(),
            "--include-settings",
        ],
    ));
    let mut archive = zip::ZipArchive::new(fs::File::open(&zip).unwrap()).unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut archive.by_name("local.settings.json").unwrap(),
        &mut text,
    )
    .unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["Values"]["GREETING"], "bonjour");
    assert_eq!(doc["Values"]["DB"], "Server=x;Key=a=b");

    // Bad input: no `=`, a bad name, an unknown app; nothing changes.
    let out = fnhost(&home, &["settings", "set", "demo", "NOVALUE"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("NAME=VALUE"));
    let out = fnhost(&home, &["settings", "set", "demo", "BAD NAME=1", "OK=1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid app setting name"));
    let out = fnhost(&home, &["settings", "list", "nosuch"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("fnhost apps create nosuch"));
    assert_eq!(
        ok(&fnhost(&home, &["settings", "list", "demo"])),
        "DB=Server=x;Key=a=b\nGREETING=bonjour\n"
    );
}
