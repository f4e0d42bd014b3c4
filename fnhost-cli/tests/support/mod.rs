//! Helpers shared by the CLI's integration tests: a small function app and
//! running the `fnhost` binary.

#![allow(dead_code, unused_imports, unreachable_pub)] // each test file uses some of them

use std::ffi::OsStr;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use fnhost_testsupport::Running;
pub use fnhost_testsupport::app::{HOST_JSON, HTTP_FUNCTION, make_app, scratch_home, write};
use fnhost_testsupport::process::{run_bounded, succeeded};

/// The deployment password the management tests give their apps.
pub const PASS: &str = "s3cret-Passw0rd";

/// The `fnhost` binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_fnhost");

/// Makes the home `home` with `apps` created, each `(name, user,
/// password)` with its deployment credentials.
pub fn home_with_apps(home: &Path, apps: &[(&str, &str, &str)]) {
    let site = fnhost_deploy::Site::open(home).unwrap();
    for (app, user, password) in apps {
        site.create_app(app).unwrap();
        site.set_credentials(app, user, password).unwrap();
    }
}

/// fnhost's language workers, installed (or found up to date) once per
/// test binary into the target's temporary folder. The first install (npm
/// ci, pip) may take a few minutes; an up-to-date one is quick.
pub fn workers() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("workers");
        let mut cmd = Command::new(BIN);
        cmd.args(["workers", "install", "--dir"]).arg(&dir);
        let out = run_bounded(cmd, Duration::from_secs(300));
        succeeded(&out);
        dir
    })
}

pub fn fnhost(home: &Path, args: &[&str]) -> Output {
    fnhost_stdin(home, args, "")
}

/// `fnhost --home HOME ARGS` with `stdin` as its input, killed after
/// 120 s; its output whatever the outcome.
pub fn fnhost_stdin(home: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new("timeout")
        .arg("120")
        .arg(BIN)
        .arg("--home")
        .arg(home)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// [`fnhost_stdin`] that must succeed.
pub fn fnhost_ok(home: &Path, args: &[&str], stdin: &str) -> Output {
    let out = fnhost_stdin(home, args, stdin);
    assert!(
        out.status.success(),
        "fnhost {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// [`fnhost_ok`] without input; its stdout.
pub fn fnhost_text(home: &Path, args: &[&str]) -> String {
    String::from_utf8(fnhost_ok(home, args, "").stdout).unwrap()
}

/// A running `fnhost manage` (killed when dropped).
pub struct Manage {
    /// The process and its output.
    pub run: Running,
    /// Where it listens: `http://127.0.0.1:PORT` (or `https://`).
    pub root: String,
}

/// `fnhost --home HOME manage --port 0 --durability process EXTRA...`,
/// once it says where it listens.
pub fn manage(home: &Path, extra: &[&str]) -> Manage {
    let mut cmd = Command::new(BIN);
    cmd.arg("--home")
        .arg(home)
        .args(["manage", "--port", "0", "--durability", "process"])
        .args(extra);
    let run = Running::spawn(cmd);
    let line = run.wait_stdout("listening on ", Duration::from_secs(60));
    let root = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("first line: {line:?}"))
        .to_owned();
    Manage { run, root }
}

/// `curl -s -S --max-time 60`, then `options` (where its output goes), then
/// `args`, which must succeed.
pub fn curl_ok(options: &[&OsStr], args: &[&str]) -> Output {
    let out = Command::new("curl")
        .args(["-s", "-S", "--max-time", "60"])
        .args(options)
        .args(args)
        .output()
        .unwrap();
    succeeded(&out);
    out
}

/// curl with `args` (at most 60 s): the last response's status and body.
/// The body passes through a file in `scratch`.
pub fn curl_status(scratch: &Path, args: &[&str]) -> (u16, Vec<u8>) {
    let body = scratch.join("curl-body");
    let out = curl_ok(
        &[
            "-o".as_ref(),
            body.as_ref(),
            "-w".as_ref(),
            "%{http_code}".as_ref(),
        ],
        args,
    );
    let status = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    (status, fs::read(&body).unwrap_or_default())
}

/// Starts `fnhost manage --port 0` (with `extra` arguments) on `home`; the
/// child and its root URL (`http://127.0.0.1:PORT`), from the first line
/// it prints. Kill the child when done.
pub fn spawn_manage(home: &Path, extra: &[&str]) -> (std::process::Child, String) {
    use std::io::BufRead as _;
    let mut child = Command::new(env!("CARGO_BIN_EXE_fnhost"))
        .arg("--home")
        .arg(home)
        .args(["manage", "--port", "0"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let root = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_string();
    (child, root)
}
