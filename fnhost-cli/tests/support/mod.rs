//! Helpers shared by the CLI's integration tests: a small function app and
//! running the `fnhost` binary.

#![allow(dead_code, unreachable_pub)] // each test file uses some of them

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

pub const HOST_JSON: &str = r#"{ "version": "2.0", "customHandler": { "description": { "defaultExecutablePath": "handler" } } }"#;

pub const HTTP_FUNCTION: &str = r#"{ "bindings": [
  { "type": "httpTrigger", "direction": "in", "name": "req", "authLevel": "anonymous", "methods": ["get"] },
  { "type": "http", "direction": "out", "name": "res" } ] }"#;

pub fn write(path: &Path, data: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, data).unwrap();
}

pub fn make_app(dir: &Path, version: &str) {
    write(&dir.join("host.json"), HOST_JSON);
    write(&dir.join("hello/function.json"), HTTP_FUNCTION);
    write(&dir.join("version.txt"), version);
    write(&dir.join("handler"), "#!/bin/sh\necho hi\n");
    fs::set_permissions(dir.join("handler"), fs::Permissions::from_mode(0o755)).unwrap();
}

pub fn fnhost(home: &Path, args: &[&str]) -> Output {
    fnhost_stdin(home, args, "")
}

pub fn fnhost_stdin(home: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fnhost"))
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

/// curl with `args` (at most 60 s): the last response's status and body.
/// The body passes through a file in `scratch`.
pub fn curl_status(scratch: &Path, args: &[&str]) -> (u16, Vec<u8>) {
    let body = scratch.join("curl-body");
    let out = Command::new("curl")
        .args(["-s", "-S", "--max-time", "60", "-o"])
        .arg(&body)
        .args(["-w", "%{http_code}"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
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
