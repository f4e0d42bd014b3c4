//! `fnhost source`, `sync` and `watch` end to end, with real git
//! repositories and a real `git push` through the installed hook.

#![allow(clippy::unwrap_used)] // tests panic on what they do not expect

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod support;
use fnhost_testsupport::git::{commit, git_all as git, repo};
use support::*;

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "failed: {}", text(out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn served(home: &Path, slot: &str) -> String {
    let out = ok(&fnhost(
        home,
        &["source", "show", "app", "--slot", slot, "--json"],
    ));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let id = v["deployment"].as_str().unwrap();
    fs::read_to_string(home.join("apps/app/content").join(id).join("version.txt")).unwrap()
}

fn deployments(home: &Path) -> Vec<serde_json::Value> {
    let out = ok(&fnhost(home, &["deployments", "app", "--json"]));
    serde_json::from_str(&out).unwrap()
}

/// A scratch folder with a home where app `app` exists, and a git
/// repository `src` whose first commit is an app (`v1`).
struct Scratch {
    _tmp: tempfile::TempDir,
    home: PathBuf,
    src: PathBuf,
}

fn with_repo() -> Scratch {
    let (tmp, home) = home_with_app();
    let src = tmp.path().join("src");
    repo(&src);
    Scratch {
        _tmp: tmp,
        home,
        src,
    }
}

/// A scratch folder with a home (`home` in it) where app `app` exists.
fn home_with_app() -> (tempfile::TempDir, PathBuf) {
    let (tmp, home) = scratch_home();
    ok(&fnhost(&home, &["apps", "create", "app"]));
    (tmp, home)
}

/// Commits a `fnhost-build.json` with `steps` to `src`.
fn commit_pipeline(src: &Path, steps: &str, message: &str) {
    write(&src.join("fnhost-build.json"), steps);
    git(src, &["add", "-A"]);
    git(src, &["commit", "-q", "-m", message]);
}

/// The arguments of `fnhost source set app --git SRC EXTRA...`.
fn git_source<'a>(src: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let src = src.to_str().unwrap();
    [&["source", "set", "app", "--git", src], extra].concat()
}

#[test]
fn git_source_set_sync_show_clear() {
    let Scratch {
        _tmp: tmp,
        home,
        src,
    } = with_repo();
    // A host key pin that is not a SHA256 fingerprint: a usage error,
    // nothing stored.
    let out = fnhost(&home, &git_source(&src, &["--ssh-host-key", "MD5:12:34"]));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("SHA256"), "{}", text(&out));
    assert!(
        ok(&fnhost(&home, &["source", "show", "app"])).contains("no source"),
        "a refused source must not be stored"
    );
    let pin = ["--ssh-host-key", "SHA256:pinned-for-the-test"];
    let out = ok(&fnhost(&home, &git_source(&src, &pin)));
    assert!(out.contains("follows git"), "{out}");
    assert!(out.contains("deployed "), "{out}");
    let head = git(&src, &["rev-parse", "HEAD"]);
    let d = &deployments(&home)[0];
    assert_eq!(d["source_id"], head.as_str());
    assert_eq!(d["author"], "Ada Lovelace <ada@example.com>");
    assert_eq!(d["message"], "first version");
    assert_eq!(d["deployer"], "git");

    // Read-only: a direct deployment is refused.
    let direct = make_app(&tmp.path().join("direct"), "direct");
    let out = fnhost(&home, &["deploy", "app", "--dir", direct.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("read-only"), "{}", text(&out));

    // Nothing new.
    let out = ok(&fnhost(&home, &["sync", "app"]));
    assert!(out.contains("up to date"), "{out}");
    assert_eq!(deployments(&home).len(), 1);

    // A new commit.
    let id = commit(&src, "v2", "second version");
    let out = ok(&fnhost(&home, &["sync", "app"]));
    assert!(out.contains(&id[..12]), "{out}");
    let d = &deployments(&home)[0];
    assert_eq!(d["source_id"], id.as_str());
    assert_eq!(d["message"], "second version");
    assert_eq!(served(&home, "production"), "v2");

    let out = ok(&fnhost(&home, &["source", "show", "app"]));
    assert!(out.contains(&id), "{out}");
    assert!(
        out.contains("host key:  SHA256:pinned-for-the-test"),
        "{out}"
    );

    // Clear: writable again, history kept.
    ok(&fnhost(&home, &["source", "clear", "app"]));
    ok(&fnhost(
        &home,
        &["deploy", "app", "--dir", direct.to_str().unwrap()],
    ));
    assert_eq!(deployments(&home).len(), 3);
    let out = fnhost(&home, &["sync", "app"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[test]
fn local_git_push_deploys_through_the_hook() {
    let (tmp, home) = home_with_app();
    let out = ok(&fnhost(&home, &["source", "set", "app", "--local-git"]));
    assert!(out.contains("nothing to deploy yet"), "{out}");
    let url = out
        .split_whitespace()
        .find(|w| w.starts_with("file://"))
        .unwrap()
        .to_string();

    let work = tmp.path().join("work");
    repo(&work);
    let pushed = git(&work, &["push", &url, "main"]);
    assert!(pushed.contains("deployed"), "{pushed}");
    let head = git(&work, &["rev-parse", "HEAD"]);
    assert_eq!(deployments(&home)[0]["source_id"], head.as_str());
    assert_eq!(deployments(&home)[0]["deployer"], "local-git");

    // Another branch: no deployment.
    git(&work, &["checkout", "-q", "-b", "feature"]);
    commit(&work, "feature", "a feature");
    let pushed = git(&work, &["push", &url, "feature"]);
    assert!(pushed.contains("up to date"), "{pushed}");
    assert_eq!(deployments(&home).len(), 1);

    // main again.
    git(&work, &["checkout", "-q", "main"]);
    let id = commit(&work, "v2", "second");
    git(&work, &["push", &url, "main"]);
    assert_eq!(deployments(&home)[0]["source_id"], id.as_str());
    assert_eq!(served(&home, "production"), "v2");
}

#[test]
fn pipeline_failure_keeps_the_previous_deployment() {
    let Scratch { _tmp, home, src } = with_repo();
    let stamp = r#"{ "steps": [ { "name": "stamp", "command": "echo built > stamp.txt" } ] }"#;
    commit_pipeline(&src, stamp, "pipeline");
    ok(&fnhost(&home, &git_source(&src, &["--build", "pipeline"])));
    let good = deployments(&home)[0]["id"].as_str().unwrap().to_string();
    write(
        &src.join("fnhost-build.json"),
        r#"{ "steps": [ { "name": "lint", "command": "echo 'lint: 3 problems' >&2; exit 2" } ] }"#,
    );
    commit(&src, "v2", "breaks");
    let out = fnhost(&home, &["sync", "app"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("previous deployment stays active"));
    let all = deployments(&home);
    assert_eq!(all[0]["status"], "failed");
    let failed = all[0]["id"].as_str().unwrap();
    let log = ok(&fnhost(&home, &["deployments", "log", "app", failed]));
    assert!(log.contains("lint: 3 problems"), "{log}");
    assert_eq!(all[1]["id"], good.as_str());
    assert_eq!(all[1]["active"], true);
    // The same head again: exit 1, nothing new.
    let out = fnhost(&home, &["sync", "app"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("failed to deploy already"),
        "{}",
        text(&out)
    );
    assert_eq!(deployments(&home).len(), 2);
}

#[test]
fn production_and_staging_follow_two_branches() {
    let Scratch { _tmp, home, src } = with_repo();
    git(&src, &["branch", "staging"]);
    ok(&fnhost(&home, &git_source(&src, &[])));
    let staging = ["--slot", "staging", "--branch", "staging"];
    ok(&fnhost(&home, &git_source(&src, &staging)));
    git(&src, &["checkout", "-q", "staging"]);
    commit(&src, "v2", "on staging");
    assert!(ok(&fnhost(&home, &["sync", "app"])).contains("up to date"));
    assert!(ok(&fnhost(&home, &["sync", "app", "--slot", "staging"])).contains("deployed"));
    assert_eq!(served(&home, "staging"), "v2");
    assert_eq!(served(&home, "production"), "v1");
    git(&src, &["checkout", "-q", "main"]);
    git(
        &src,
        &["merge", "-q", "--no-ff", "-m", "Merge staging", "staging"],
    );
    assert!(ok(&fnhost(&home, &["sync", "app"])).contains("Merge staging"));
    assert_eq!(served(&home, "production"), "v2");
}

#[test]
fn watch_deploys_the_last_of_three_quick_commits() {
    let Scratch { _tmp, home, src } = with_repo();
    // A build slower than three commits: they arrive during a deployment.
    let slow = r#"{ "steps": [ { "name": "slow", "command": "sleep 1" } ] }"#;
    commit_pipeline(&src, slow, "slow build");
    ok(&fnhost(&home, &git_source(&src, &["--build", "pipeline"])));
    let watch = Command::new(env!("CARGO_BIN_EXE_fnhost"))
        .arg("--home")
        .arg(&home)
        .args(["watch", "--interval", "0.1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    commit(&src, "v2", "two");
    commit(&src, "v3", "three");
    let last = commit(&src, "v4", "four");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let d = deployments(&home);
        if d[0]["source_id"] == last.as_str() && d[0]["status"] == "success" {
            break;
        }
        assert!(Instant::now() < deadline, "not deployed: {d:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    nix_term(watch.id());
    let out = watch.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("stopped watching"), "{}", text(&out));
    let made = deployments(&home).len() - 1;
    assert!((1..=2).contains(&made), "{made} deployments");
    assert_eq!(served(&home, "production"), "v4");
}

fn nix_term(pid: u32) {
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn folder_source_from_the_command_line() {
    let (tmp, home) = home_with_app();
    let folder = make_app(&tmp.path().join("dropbox"), "v1");
    let out = ok(&fnhost(
        &home,
        &[
            "source",
            "set",
            "app",
            "--folder",
            folder.to_str().unwrap(),
            "--quiet-period",
            "200",
        ],
    ));
    assert!(out.contains("deployed"), "{out}");
    assert_eq!(deployments(&home)[0]["deployer"], "folder");
    write(&folder.join("version.txt"), "v2");
    let out = ok(&fnhost(&home, &["sync", "app"]));
    assert!(out.contains("not ready"), "{out}");
    std::thread::sleep(Duration::from_millis(300));
    assert!(ok(&fnhost(&home, &["sync", "app"])).contains("deployed"));
    assert_eq!(served(&home, "production"), "v2");
}

#[test]
fn credentials_are_stored_owner_only_and_never_printed() {
    let Scratch { _tmp, home, src } = with_repo();
    let user = ["--user", "ada", "--password-stdin"];
    let out = fnhost_stdin(&home, &git_source(&src, &user), "hunter2-token\n");
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains("hunter2"));
    let show = fnhost(&home, &["source", "show", "app", "--json"]);
    assert!(!text(&show).contains("hunter2"));
    assert!(
        text(&show).contains("\"password\": true"),
        "{}",
        text(&show)
    );
    let secret = home.join("apps/app/slots/production/cd/password");
    assert_eq!(fs::read_to_string(&secret).unwrap(), "hunter2-token\n");
    assert_eq!(
        fs::metadata(&secret).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let dir = home.join("apps/app/slots/production/cd");
    assert_eq!(
        fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
}
