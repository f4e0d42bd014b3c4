//! git repositories for source tests, with a fixed identity and no user or
//! system configuration.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::app::{make_app, write};

/// `git ARGS` in `dir` as a fixed user (Ada Lovelace), default branch
/// `main`, no signing, `file://` allowed, `HOME` set to `dir`, never asking
/// for credentials, killed after 120 s; its output whatever the outcome.
pub fn git_output(dir: &Path, args: &[&str]) -> Output {
    Command::new("timeout")
        .arg("120")
        .arg("git")
        .args([
            "-c",
            "user.name=Ada Lovelace",
            "-c",
            "user.email=ada@example.com",
            "-c",
            "init.defaultBranch=main",
            "-c",
            "commit.gpgsign=false",
            "-c",
            "protocol.file.allow=always",
            "-c",
            "credential.helper=",
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "/bin/false")
        .env_remove("SSH_ASKPASS")
        .env("HOME", dir)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// `git ARGS` in `dir` (see [`git_output`]); it must succeed. Its stdout,
/// trimmed.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = git_output(dir, args);
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// `git ARGS` in `dir` (see [`git_output`]); it must succeed. Its stdout
/// and stderr together, trimmed (git reports pushes and fetches on stderr).
pub fn git_all(dir: &Path, args: &[&str]) -> String {
    let out = git_output(dir, args);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "git {args:?} in {}: {all}",
        dir.display()
    );
    all.trim().to_owned()
}

/// A repository in `dir` on `main` with a first commit of a valid app
/// ([`make_app`], version `v1`). Returns `dir`.
pub fn repo(dir: &Path) -> PathBuf {
    fs::create_dir_all(dir).unwrap();
    git(dir, &["init", "-q", "-b", "main"]);
    make_app(dir, "v1");
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "first version"]);
    dir.to_path_buf()
}

/// Writes `version` to `version.txt` and commits everything with
/// `message`. Returns the new commit's id.
pub fn commit(dir: &Path, version: &str, message: &str) -> String {
    write(&dir.join("version.txt"), version);
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", message]);
    git(dir, &["rev-parse", "HEAD"])
}
