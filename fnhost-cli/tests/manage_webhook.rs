//! `fnhost manage`: `POST {base}/deploy` webhooks with `curl` on loopback:
//! a GitHub push payload (recorded shape) deploys, a push to another
//! branch is ignored and says so, signatures (`X-Hub-Signature-256`,
//! `X-Gitlab-Token`), GitLab, Bitbucket, Azure Repos and generic payloads,
//! a slot without continuous deployment (409), another repository (409).

#![allow(clippy::unwrap_used)] // tests panic on what they do not expect

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod support;
use fnhost_testsupport::git::{commit, git};
use support::*;

const USER: &str = "deployer";
const SECRET: &str = "It's a Secret to Everybody";

struct Server {
    manage: Manage,
    home: PathBuf,
    src: PathBuf,
    tmp: tempfile::TempDir,
}

struct Resp {
    status: u16,
    body: String,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

impl Server {
    /// A home with app `demo` following the git repository `src` (by a
    /// file:// URL, branch main) and app `other` without a source.
    fn start() -> Server {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        let src = tmp.path().join("src");
        fs::create_dir_all(&src).unwrap();
        git(&src, &["init", "-q", "-b", "main"]);
        write(&src.join("host.json"), HOST_JSON);
        write(&src.join("hello/function.json"), HTTP_FUNCTION);
        write(&src.join("handler"), "#!/bin/sh\necho hi\n");
        fs::set_permissions(src.join("handler"), fs::Permissions::from_mode(0o755)).unwrap();
        commit(&src, "v1", "first version");
        home_with_apps(&home, &[("demo", USER, PASS), ("other", USER, PASS)]);
        let url = format!("file://{}", src.display());
        fnhost_ok(
            &home,
            &["source", "set", "demo", "--git", &url, "--branch", "main"],
            "",
        );
        let manage = manage(&home, &[]);
        Server {
            manage,
            home,
            src,
            tmp,
        }
    }

    /// curl (at most 60 s).
    fn curl(&self, args: &[&str]) -> Resp {
        let (status, body) = curl_status(self.tmp.path(), args);
        Resp {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    /// POSTs a payload to `{base}/deploy` with these headers.
    fn hook(&self, app: &str, query: &str, payload: &str, headers: &[String]) -> Resp {
        let file = self.tmp.path().join("payload.json");
        fs::write(&file, payload).unwrap();
        let auth = format!("{USER}:{PASS}");
        let mut args: Vec<String> = vec![
            "-u".into(),
            auth,
            "-X".into(),
            "POST".into(),
            "-H".into(),
            "Content-Type: application/json".into(),
            "--data-binary".into(),
            format!("@{}", file.display()),
        ];
        for h in headers {
            args.push("-H".into());
            args.push(h.clone());
        }
        args.push(format!("{}/apps/{app}/deploy{query}", self.manage.root));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.curl(&refs)
    }

    fn deployments(&self) -> Vec<Value> {
        let out = fnhost_ok(&self.home, &["deployments", "demo", "--json"], "");
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn served(&self) -> String {
        let r = self.curl(&[
            "-u",
            &format!("{USER}:{PASS}"),
            &format!("{}/apps/demo/api/vfs/version.txt", self.manage.root),
        ]);
        assert_eq!(r.status, 200, "{}", r.body);
        r.body
    }

    /// Waits (at most 60 s) for the newest deployment to come from `commit`.
    fn wait_deployed(&self, commit: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let d = self.deployments();
            if d.first()
                .is_some_and(|d| d["source_id"] == commit && d["status"] == "success")
            {
                return;
            }
            assert!(Instant::now() < deadline, "not deployed: {d:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A GitHub `push` event as GitHub sends it (trimmed of fields this
/// endpoint does not read, shape kept).
fn github_push(r#ref: &str, before: &str, after: &str, clone_url: &str) -> String {
    json!({
        "ref": r#ref,
        "before": before,
        "after": after,
        "repository": {
            "id": 186853002,
            "node_id": "MDEwOlJlcG9zaXRvcnkxODY4NTMwMDI=",
            "name": "orders",
            "full_name": "contoso/orders",
            "private": false,
            "owner": { "name": "contoso", "login": "contoso", "id": 21031067, "type": "Organization" },
            "html_url": "https://github.com/contoso/orders",
            "url": "https://github.com/contoso/orders",
            "git_url": "git://github.com/contoso/orders.git",
            "ssh_url": "git@github.com:contoso/orders.git",
            "clone_url": clone_url,
            "default_branch": "main",
            "pushed_at": 1557933657,
            "master_branch": "main"
        },
        "pusher": { "name": "ada", "email": "ada@example.com" },
        "sender": { "login": "ada", "id": 21031067, "type": "User" },
        "created": false,
        "deleted": false,
        "forced": false,
        "base_ref": null,
        "compare": format!("https://github.com/contoso/orders/compare/{}...{}", &before[..12], &after[..12]),
        "commits": [{
            "id": after,
            "tree_id": "f9d2a07e9488b91af2641b26b9407fe22a451433",
            "distinct": true,
            "message": "second version",
            "timestamp": "2026-11-22T16:40:57+00:00",
            "author": { "name": "Ada Lovelace", "email": "ada@example.com", "username": "ada" },
            "committer": { "name": "Ada Lovelace", "email": "ada@example.com", "username": "ada" },
            "added": [], "removed": [], "modified": ["version.txt"]
        }],
        "head_commit": {
            "id": after,
            "message": "second version",
            "timestamp": "2026-11-22T16:40:57+00:00"
        }
    })
    .to_string()
}

fn github_headers() -> Vec<String> {
    vec![
        "X-GitHub-Event: push".into(),
        "X-GitHub-Delivery: 72d3162e-cc78-11e3-81ab-4c9367dc0958".into(),
        "X-GitHub-Hook-ID: 292430182".into(),
        "User-Agent: GitHub-Hookshot/044aadd".into(),
    ]
}

/// `sha256=` + HMAC-SHA256 of `body` by `openssl` (an implementation
/// other than the server's).
fn signature(dir: &Path, key: &str, body: &str) -> String {
    let file = dir.join("to-sign");
    fs::write(&file, body).unwrap();
    let out = Command::new("openssl")
        .args(["dgst", "-sha256", "-hmac", key])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success());
    let hex = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .last()
        .unwrap()
        .to_string();
    format!("sha256={hex}")
}

#[test]
fn github_push_deploys_other_branches_are_ignored_signatures_checked() {
    let s = Server::start();
    let dir = s.tmp.path();
    assert_eq!(s.served(), "v1");
    let v1 = git(&s.src, &["rev-parse", "HEAD"]);
    let v2 = commit(&s.src, "v2", "second version");
    // clone_url with a trailing slash and another case of scheme: the
    // same repository.
    let clone_url = format!("FILE://{}/", s.src.display());

    // A push to main: 202, then deployed with the commit id.
    let payload = github_push("refs/heads/main", &v1, &v2, &clone_url);
    let r = s.hook("demo", "", &payload, &github_headers());
    assert_eq!(r.status, 202, "{}", r.body);
    let v = r.json();
    assert_eq!(v["status"], "accepted");
    assert_eq!(v["provider"], "github");
    assert_eq!(v["commit"], v2.as_str());
    s.wait_deployed(&v2);
    assert_eq!(s.served(), "v2");
    assert_eq!(s.deployments()[0]["message"], "second version");

    // A push to another branch: 200, ignored, and says so.
    git(&s.src, &["checkout", "-q", "-b", "feature"]);
    let f = commit(&s.src, "feature", "a feature");
    git(&s.src, &["checkout", "-q", "main"]);
    let payload = github_push("refs/heads/feature", &v2, &f, &clone_url);
    let r = s.hook("demo", "", &payload, &github_headers());
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["status"], "ignored");
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("ignored: demo/production follows branch main"),
        "{}",
        r.body
    );
    assert_eq!(s.deployments().len(), 2);

    // Another repository: refused.
    let payload = github_push(
        "refs/heads/main",
        &v2,
        &f,
        "https://github.com/contoso/elsewhere.git",
    );
    let r = s.hook("demo", "", &payload, &github_headers());
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.body.contains("another repository"), "{}", r.body);

    // A ping: 200, nothing done.
    let r = s.hook(
        "demo",
        "",
        r#"{"zen":"Keep it logically awesome.","hook_id":1}"#,
        &["X-GitHub-Event: ping".into()],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("ignored"), "{}", r.body);

    // GitHub's form encoding (payload=JSON), and a JSON body sent with
    // curl's default (form) content type: both read.
    let file = dir.join("form.json");
    fs::write(
        &file,
        github_push("refs/heads/feature", &v2, &f, &clone_url),
    )
    .unwrap();
    for data in [
        vec![
            "--data-urlencode".to_string(),
            format!("payload@{}", file.display()),
        ],
        vec!["--data-binary".to_string(), format!("@{}", file.display())],
    ] {
        let mut args = vec![
            "-u".to_string(),
            format!("{USER}:{PASS}"),
            "-H".into(),
            "X-GitHub-Event: push".into(),
        ];
        args.extend(data);
        args.push(format!("{}/apps/demo/deploy", s.manage.root));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let r = s.curl(&refs);
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.json()["status"], "ignored");
    }

    // A secret: signatures required from now on.
    fnhost_ok(&s.home, &["source", "webhook-secret", "demo"], SECRET);
    let secret_file = s.home.join("apps/demo/slots/production/cd/webhook_secret");
    assert_eq!(
        fs::metadata(&secret_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let v3 = commit(&s.src, "v3", "third version");
    let payload = github_push("refs/heads/main", &v2, &v3, &clone_url);
    // Missing: 401.
    let r = s.hook("demo", "", &payload, &github_headers());
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r.body.contains("X-Hub-Signature-256"), "{}", r.body);
    // Wrong (signed with another key, or over another body): 401.
    let mut h = github_headers();
    h.push(format!(
        "X-Hub-Signature-256: {}",
        signature(dir, "not the secret", &payload)
    ));
    let r = s.hook("demo", "", &payload, &h);
    assert_eq!(r.status, 401, "{}", r.body);
    let mut h = github_headers();
    h.push(format!(
        "X-Hub-Signature-256: {}",
        signature(dir, SECRET, &format!("{payload} "))
    ));
    assert_eq!(s.hook("demo", "", &payload, &h).status, 401);
    let mut h = github_headers();
    h.push("X-Hub-Signature-256: sha256=zz".into());
    assert_eq!(s.hook("demo", "", &payload, &h).status, 401);
    assert_eq!(s.deployments().len(), 2);
    // Right, and waiting: 200 once deployed.
    let mut h = github_headers();
    h.push(format!(
        "X-Hub-Signature-256: {}",
        signature(dir, SECRET, &payload)
    ));
    let r = s.hook("demo", "?wait=true", &payload, &h);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["status"], "deployed");
    assert_eq!(s.deployments()[0]["source_id"], v3.as_str());
    assert_eq!(s.served(), "v3");

    // Deployment credentials are needed too.
    let file = dir.join("payload.json");
    let r = s.curl(&[
        "-X",
        "POST",
        "--data-binary",
        &format!("@{}", file.display()),
        &format!("{}/apps/demo/deploy", s.manage.root),
    ]);
    assert_eq!(r.status, 401);

    // GitLab: X-Gitlab-Token is the secret.
    let v4 = commit(&s.src, "v4", "fourth version");
    let gitlab = json!({
        "object_kind": "push",
        "event_name": "push",
        "before": v3,
        "after": v4,
        "ref": "refs/heads/main",
        "checkout_sha": v4,
        "user_name": "Ada Lovelace",
        "project": { "name": "orders", "git_http_url": format!("file://{}.git", s.src.display()) },
        "repository": {
            "name": "orders",
            "url": format!("file://{}", s.src.display()),
            "git_http_url": format!("file://{}.git", s.src.display()),
        },
        "commits": [ { "id": v4, "message": "fourth version" } ],
        "total_commits_count": 1
    })
    .to_string();
    let r = s.hook(
        "demo",
        "?wait=true",
        &gitlab,
        &[
            "X-Gitlab-Event: Push Hook".into(),
            "X-Gitlab-Token: wrong".into(),
        ],
    );
    assert_eq!(r.status, 401, "{}", r.body);
    let r = s.hook(
        "demo",
        "?wait=true",
        &gitlab,
        &[
            "X-Gitlab-Event: Push Hook".into(),
            format!("X-Gitlab-Token: {SECRET}"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["provider"], "gitlab");
    assert_eq!(r.json()["status"], "deployed");
    assert_eq!(s.served(), "v4");

    // The secret removed: the generic payload, unsigned.
    fnhost_ok(
        &s.home,
        &["source", "webhook-secret", "demo", "--clear"],
        "",
    );
    let generic = |r: &str| {
        json!({ "repository": { "url": format!("file://{}", s.src.display()) }, "ref": r })
            .to_string()
    };
    let r = s.hook("demo", "?wait=true", &generic("refs/heads/feature"), &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["provider"], "generic");
    assert_eq!(r.json()["status"], "ignored");
    let r = s.hook("demo", "?wait=true", &generic("refs/heads/main"), &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["status"], "up-to-date");

    // Bitbucket and Azure Repos shapes.
    let v5 = commit(&s.src, "v5", "fifth version");
    let bitbucket = json!({
        "push": { "changes": [ {
            "new": { "type": "branch", "name": "main", "target": { "type": "commit", "hash": v5 } },
            "old": { "type": "branch", "name": "main", "target": { "type": "commit", "hash": v4 } },
            "created": false, "closed": false, "forced": false
        } ] },
        "repository": { "full_name": "contoso/orders", "type": "repository" },
        "actor": { "display_name": "Ada Lovelace" }
    })
    .to_string();
    // full_name gives https://bitbucket.org/contoso/orders: not the
    // followed repository.
    let r = s.hook(
        "demo",
        "?wait=true",
        &bitbucket,
        &["X-Event-Key: repo:push".into()],
    );
    assert_eq!(r.status, 409, "{}", r.body);
    let azure = json!({
        "subscriptionId": "00000000-0000-0000-0000-000000000000",
        "eventType": "git.push",
        "publisherId": "tfs",
        "resource": {
            "refUpdates": [ { "name": "refs/heads/main", "oldObjectId": v4, "newObjectId": v5 } ],
            "repository": { "name": "orders", "remoteUrl": format!("file://{}", s.src.display()) },
            "pushedBy": { "displayName": "Ada Lovelace" }
        }
    })
    .to_string();
    let r = s.hook("demo", "?wait=true", &azure, &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["provider"], "azure-repos");
    assert_eq!(r.json()["status"], "deployed");
    assert_eq!(s.served(), "v5");

    // Not a payload: 400. A slot without continuous deployment: 409 that
    // says how to configure it.
    assert_eq!(s.hook("demo", "", "not json", &[]).status, 400);
    let r = s.hook("other", "", &generic("refs/heads/main"), &[]);
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.body.contains("fnhost source set other"), "{}", r.body);

    let mut s = s;
    s.manage.run.stop();
    let log = s.manage.run.stderr();
    assert!(!log.contains(PASS) && !log.contains(SECRET), "{log}");
}
