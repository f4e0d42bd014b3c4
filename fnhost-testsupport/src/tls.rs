//! TLS material for tests: a self-signed certificate made with `openssl`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::process::succeeded;

/// A self-signed certificate for 127.0.0.1 and localhost (RSA 2048, two
/// days), with its key: `(DIR/NAME-cert.pem, DIR/NAME-key.pem)`.
pub fn self_signed(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    make(dir, name, &[])
}

/// As [`self_signed`], marked as no CA (`basicConstraints CA:FALSE`):
/// what rustls clients accept as a server's own certificate when it is
/// also their trust root (they refuse a CA certificate in that place).
pub fn self_signed_server(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    make(
        dir,
        name,
        &["-addext", "basicConstraints=critical,CA:FALSE"],
    )
}

fn make(dir: &Path, name: &str, extra: &[&str]) -> (PathBuf, PathBuf) {
    let cert = dir.join(format!("{name}-cert.pem"));
    let key = dir.join(format!("{name}-key.pem"));
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .args(extra)
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    succeeded(&out);
    (cert, key)
}
