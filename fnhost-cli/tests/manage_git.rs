//! `fnhost manage`: git smart HTTP at `{base}/{app}.git` with the `git`
//! command on loopback: clone, push (deploys through the post-receive
//! hook), another branch (no deployment), a wrong password (401), a
//! gzip'd upload-pack request, a slot without a built-in repository (404).

#![allow(clippy::unwrap_used)] // tests panic on what they do not expect

use std::fs;
use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

mod support;
use fnhost_testsupport::git::{commit, git_all as git, git_output as git_out};
use support::*;

const USER: &str = "deployer";

struct Server {
    manage: Manage,
    home: PathBuf,
    tmp: tempfile::TempDir,
}

impl Server {
    fn start() -> Server {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        home_with_apps(&home, &[("demo", USER, PASS), ("other", USER, PASS)]);
        fnhost_ok(&home, &["source", "set", "demo", "--local-git"], "");
        let manage = manage(&home, &[]);
        Server { manage, home, tmp }
    }

    /// The git URL, with credentials.
    fn url(&self, app: &str, pass: &str) -> String {
        let hostport = self.manage.root.strip_prefix("http://").unwrap();
        format!("http://{USER}:{pass}@{hostport}/apps/{app}/{app}.git")
    }

    fn deployments(&self) -> Vec<serde_json::Value> {
        let out = fnhost_ok(&self.home, &["deployments", "demo", "--json"], "");
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// curl as the app's deployment user: (status, body).
    fn curl(&self, args: &[&str]) -> (u16, Vec<u8>) {
        let user = format!("{USER}:{PASS}");
        curl_status(self.tmp.path(), &[&["-u", user.as_str()], args].concat())
    }
}

#[test]
fn clone_push_over_http_deploys_the_followed_branch_only() {
    let s = Server::start();
    let dir = s.tmp.path();

    // Clone the (empty) built-in repository, add an app, push: deployed.
    git(dir, &["clone", "-q", &s.url("demo", PASS), "work"]);
    let work = dir.join("work");
    make_app(&work, "v1");
    git(&work, &["checkout", "-q", "-b", "main"]);
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "first version"]);
    let head = git(&work, &["rev-parse", "HEAD"]);
    let pushed = git(&work, &["push", "origin", "main"]);
    assert!(pushed.contains("deployed"), "{pushed}");
    let d = s.deployments();
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0]["source_id"], head.as_str());
    assert_eq!(d[0]["deployer"], "local-git");
    let (status, body) = s.curl(&[&format!("{}/apps/demo/api/vfs/version.txt", s.manage.root)]);
    assert_eq!((status, body.as_slice()), (200, &b"v1"[..]));

    // Another branch: pushed, not deployed.
    git(&work, &["checkout", "-q", "-b", "feature"]);
    commit(&work, "feature", "a feature");
    git(&work, &["push", "-q", "origin", "feature"]);
    assert_eq!(s.deployments().len(), 1);

    // main again: deployed, served.
    git(&work, &["checkout", "-q", "main"]);
    let id = commit(&work, "v2", "second version");
    git(&work, &["push", "-q", "origin", "main"]);
    let d = s.deployments();
    assert_eq!(d.len(), 2);
    assert_eq!(d[0]["source_id"], id.as_str());
    assert_eq!(d[0]["message"], "second version");
    let (status, body) = s.curl(&[&format!("{}/apps/demo/api/vfs/version.txt", s.manage.root)]);
    assert_eq!((status, body.as_slice()), (200, &b"v2"[..]));

    // A fresh clone over HTTP has both branches and the content.
    git(dir, &["clone", "-q", &s.url("demo", PASS), "again"]);
    assert_eq!(
        fs::read_to_string(dir.join("again/version.txt")).unwrap(),
        "v2"
    );
    let remote = git(&dir.join("again"), &["branch", "-r"]);
    assert!(remote.contains("origin/feature"), "{remote}");

    // A wrong password: 401, git fails.
    let out = git_out(dir, &["ls-remote", &s.url("demo", "wrong")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("Authentication failed") || err.contains("401"),
        "{err}"
    );
    let out = git_out(dir, &["clone", "-q", &s.url("demo", "wrong"), "nope"]);
    assert!(!out.status.success());
    assert!(!dir.join("nope/version.txt").exists());

    // A gzip'd upload-pack request (git sends those for large
    // negotiations): http-backend inflates it.
    let req = format!("0032want {id}\n00000009done\n");
    let raw = dir.join("req");
    fs::write(&raw, req).unwrap();
    let gz = Command::new("gzip").arg("-c").arg(&raw).output().unwrap();
    fs::write(dir.join("req.gz"), &gz.stdout).unwrap();
    let (status, body) = s.curl(&[
        "-X",
        "POST",
        "-H",
        "Content-Type: application/x-git-upload-pack-request",
        "-H",
        "Content-Encoding: gzip",
        "--data-binary",
        &format!("@{}", dir.join("req.gz").display()),
        &format!("{}/apps/demo/demo.git/git-upload-pack", s.manage.root),
    ]);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(
        body.starts_with(b"0008NAK"),
        "{:?}",
        &body[..body.len().min(40)]
    );

    // A slot without a built-in repository: 404 that says how.
    let (status, body) = s.curl(&[&format!(
        "{}/apps/other/other.git/info/refs?service=git-upload-pack",
        s.manage.root
    )]);
    assert_eq!(status, 404);
    assert!(
        String::from_utf8_lossy(&body).contains("--local-git"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    let out = git_out(dir, &["ls-remote", &s.url("other", PASS)]);
    assert!(!out.status.success());
    // Another repository name under the base: 404.
    let (status, _) = s.curl(&[&format!(
        "{}/apps/demo/other.git/info/refs?service=git-upload-pack",
        s.manage.root
    )]);
    assert_eq!(status, 404);
    // The dumb protocol is not served.
    let (status, _) = s.curl(&[&format!("{}/apps/demo/demo.git/HEAD", s.manage.root)]);
    assert_eq!(status, 404);

    // Nothing secret in the server's log.
    let mut s = s;
    s.manage.run.stop();
    let log = s.manage.run.stderr();
    assert!(!log.contains(PASS), "{log}");
    let _ = std::io::stdout().flush();
}
