//! `fnhost manage --tls-cert --tls-key` on loopback: a self-signed
//! certificate made with `openssl`, then `curl` over HTTPS.

#![allow(clippy::unwrap_used)] // tests panic on what they do not expect

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use fnhost_deploy::Site;
use serde_json::Value;

mod support;
use fnhost_testsupport::process::succeeded;
use fnhost_testsupport::tls::self_signed;
use support::{PASS, home_with_apps, manage};

const USER: &str = "$demo";

fn app_zip(path: &Path) {
    use zip::write::SimpleFileOptions;
    let mut z = zip::ZipWriter::new(fs::File::create(path).unwrap());
    let o = SimpleFileOptions::default();
    for (name, data) in [
        (
            "host.json",
            r#"{ "version": "2.0", "customHandler": { "description": { "defaultExecutablePath": "handler" } } }"#,
        ),
        (
            "hello/function.json",
            r#"{ "bindings": [ { "type": "httpTrigger", "direction": "in", "name": "req", "authLevel": "anonymous", "methods": ["get"] }, { "type": "http", "direction": "out", "name": "res" } ] }"#,
        ),
        ("version.txt", "tls-1"),
    ] {
        z.start_file(name, o).unwrap();
        z.write_all(data.as_bytes()).unwrap();
    }
    z.finish().unwrap();
}

fn fnhost(home: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fnhost"));
    c.arg("--home").arg(home);
    c
}

/// curl, bounded in time; `-w` appends the status on a last line.
fn curl(args: &[&str]) -> Output {
    Command::new("curl")
        .args(["-sS", "--max-time", "30", "-w", "\n%{http_code}"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// The status and body of a curl that succeeded.
fn ok(out: &Output) -> (u16, String) {
    succeeded(out);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.trim().parse().unwrap(), body.to_string())
}

#[test]
fn https_with_a_self_signed_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let home = dir.join("home");
    home_with_apps(&home, &[("demo", USER, PASS)]);
    let (cert, key) = self_signed(dir, "server");

    let (cert_arg, key_arg) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let mut server = manage(&home, &["--tls-cert", cert_arg, "--tls-key", key_arg]);
    let root = server.root.clone();
    assert!(root.starts_with("https://127.0.0.1:"), "{root}");
    let base = format!("{root}/apps/demo");
    let cacert = cert.to_str().unwrap();
    let auth = format!("{USER}:{PASS}");

    // A listing over HTTPS, the certificate verified against itself.
    let (status, body) = ok(&curl(&[
        "--cacert",
        cacert,
        "-u",
        &auth,
        &format!("{base}/api/deployments"),
    ]));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body.trim(), "[]");

    // A zipdeploy; the links the server builds say https.
    let zip = dir.join("app.zip");
    app_zip(&zip);
    let (status, body) = ok(&curl(&[
        "--cacert",
        cacert,
        "-u",
        &auth,
        "-X",
        "POST",
        "--data-binary",
        &format!("@{}", zip.display()),
        &format!("{base}/api/zipdeploy?isAsync=true"),
    ]));
    assert_eq!(status, 202, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["url"], format!("{base}/api/deployments/latest"));
    let deadline = Instant::now() + Duration::from_secs(60);
    let record = loop {
        let (status, body) = ok(&curl(&[
            "--cacert",
            cacert,
            "-u",
            &auth,
            &format!("{base}/api/deployments/latest"),
        ]));
        if status == 200 {
            break serde_json::from_str::<Value>(&body).unwrap();
        }
        assert_eq!(status, 202, "{body}");
        assert!(Instant::now() < deadline, "the deployment did not finish");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(record["status"], 4, "{record}");
    assert_eq!(record["complete"], true);
    let id = record["id"].as_str().unwrap();
    assert_eq!(record["url"], format!("{base}/api/deployments/{id}"));
    assert_eq!(
        record["log_url"],
        format!("{base}/api/deployments/{id}/log")
    );
    let (status, body) = ok(&curl(&[
        "--cacert",
        cacert,
        "-u",
        &auth,
        &format!("{base}/api/vfs/version.txt"),
    ]));
    assert_eq!((status, body.as_str()), (200, "tls-1"));

    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = curl(&[
        "-u",
        &auth,
        &format!(
            "{}/api/deployments",
            base.replacen("https://", "http://", 1)
        ),
    ]);
    assert!(
        !plain.status.success(),
        "plain HTTP answered: {}",
        String::from_utf8_lossy(&plain.stdout)
    );
    // Without the CA, the self-signed certificate is refused.
    let untrusted = curl(&["-u", &auth, &format!("{base}/api/deployments")]);
    assert!(!untrusted.status.success());
    // The server still serves after both.
    let (status, _) = ok(&curl(&[
        "--cacert",
        cacert,
        "-u",
        &auth,
        &format!("{base}/api/deployments"),
    ]));
    assert_eq!(status, 200);
    server.run.stop();
    let log = server.run.stderr();
    assert!(log.contains("TLS handshake failed"), "{log}");
    assert!(!log.contains(PASS));
}

/// Runs `fnhost manage` expecting it to stop at once; its exit code and
/// stderr.
fn manage_fails(home: &Path, args: &[&std::ffi::OsStr]) -> (i32, String) {
    let out = fnhost(home)
        .args(["manage", "--port", "0"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_certificates_and_keys_are_usage_errors_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let home = dir.join("home");
    Site::open(&home).unwrap().create_app("demo").unwrap();
    let (cert, key) = self_signed(dir, "a");
    let (_cert_b, key_b) = self_signed(dir, "b");
    let garbage = dir.join("garbage-key.pem");
    fs::write(&garbage, "not a key\n").unwrap();
    let broken = dir.join("broken-key.pem");
    fs::write(
        &broken,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let missing = dir.join("missing-cert.pem");
    let (c, k) = (
        std::ffi::OsStr::new("--tls-cert"),
        std::ffi::OsStr::new("--tls-key"),
    );

    for (cert_file, key_file, named, why) in [
        (&cert, &garbage, "garbage-key.pem", "no private key"),
        (&cert, &broken, "broken-key.pem", "not a usable private key"),
        (&cert, &key_b, "b-key.pem", "does not match"),
        (&missing, &key, "missing-cert.pem", "cannot read"),
        (&key, &key, "a-key.pem", "no certificate"),
    ] {
        let (code, err) = manage_fails(&home, &[c, cert_file.as_os_str(), k, key_file.as_os_str()]);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains(named) && err.contains(why), "{err}");
        assert!(!err.contains("listening"), "{err}");
    }
    // Both or neither.
    let (code, err) = manage_fails(&home, &[c, cert.as_os_str()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--tls-key"), "{err}");
    let (code, err) = manage_fails(&home, &[k, key.as_os_str()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--tls-cert"), "{err}");
}
