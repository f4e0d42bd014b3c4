//! The management endpoint as a library: throttling of failed
//! authentications and the limit on concurrent uploads, with `curl` and
//! raw TCP on loopback.

#![cfg(all(feature = "server", feature = "testkit"))]
#![allow(clippy::unwrap_used)] // tests panic on what they do not expect

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use fnhost_deploy::Site;
use fnhost_deploy::manage::{Limits, Manage};
use fnhost_deploy::testkit::ManageThread;
use fnhost_testsupport::process::succeeded;

const PASS: &str = "right-password-1";

/// Starts an endpoint; returns its address and a handle that stops it
/// when dropped.
fn start(site: Site, limits: Limits) -> (SocketAddr, ManageThread) {
    let server = ManageThread::start(Manage::new(site).with_limits(limits)).unwrap();
    (server.addr(), server)
}

/// `curl` with a password; returns the status and the headers.
fn curl(url: &str, userpass: &str, extra: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-S", "--max-time", "20", "-o", "/dev/null", "-D", "-"])
        .args(["-u", userpass])
        .args(extra)
        .arg(url)
        .output()
        .unwrap();
    succeeded(&out);
    let head = String::from_utf8_lossy(&out.stdout).into_owned();
    let last = head
        .split("\r\n\r\n")
        .filter(|b| !b.trim().is_empty())
        .last()
        .unwrap()
        .to_string();
    let status = last.split(' ').nth(1).unwrap().parse().unwrap();
    (status, last)
}

fn home() -> (tempfile::TempDir, Site) {
    let tmp = tempfile::tempdir().unwrap();
    let site = Site::open(tmp.path().join("home")).unwrap();
    site.create_app("demo").unwrap();
    site.set_credentials("demo", "deployer", PASS).unwrap();
    (tmp, site)
}

#[test]
fn failed_authentications_are_throttled_per_client() {
    let (_tmp, site) = home();
    let limits =
        Limits::default().with_auth_throttle(2, Duration::from_secs(2), Duration::from_secs(4));
    let (addr, _stop) = start(site, limits);
    let url = format!("http://{addr}/apps/demo/api/deployments");
    for _ in 0..3 {
        assert_eq!(curl(&url, "deployer:wrong-guess", &[]).0, 401);
    }
    // Locked out now: even the right password waits.
    let (status, head) = curl(&url, &format!("deployer:{PASS}"), &[]);
    assert_eq!(status, 429);
    let retry: u64 = head
        .lines()
        .find_map(|l| l.strip_prefix("retry-after: "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    std::thread::sleep(Duration::from_millis(2100));
    assert_eq!(curl(&url, &format!("deployer:{PASS}"), &[]).0, 200);
    // A success resets the count.
    assert_eq!(curl(&url, "deployer:wrong-guess", &[]).0, 401);
    assert_eq!(curl(&url, "deployer:wrong-guess", &[]).0, 401);
    assert_eq!(curl(&url, &format!("deployer:{PASS}"), &[]).0, 200);
}

#[test]
fn concurrent_uploads_are_limited_and_stalled_ones_dropped() {
    let (tmp, site) = home();
    let limits = Limits::default()
        .with_max_concurrent_uploads(1)
        .with_upload_idle_timeout(Duration::from_secs(2));
    let (addr, _stop) = start(site, limits);
    // A first request checks the password (argon2, slow unoptimised); the
    // next ones hit the endpoint's cache, so the slow upload below reaches
    // its body at once.
    let list = format!("http://{addr}/apps/demo/api/deployments");
    assert_eq!(curl(&list, &format!("deployer:{PASS}"), &[]).0, 200);
    // One upload in progress, holding the only permit.
    let mut slow = TcpStream::connect(addr).unwrap();
    use base64::Engine as _;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("deployer:{PASS}"));
    write!(
        slow,
        "POST /apps/demo/api/zipdeploy HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Basic {token}\r\nContent-Length: 100000\r\n\r\n"
    )
    .unwrap();
    slow.write_all(&[0u8; 1000]).unwrap();
    slow.flush().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let body = tmp.path().join("x.zip");
    std::fs::write(&body, b"PK not really").unwrap();
    let url = format!("http://{addr}/apps/demo/api/zipdeploy");
    let (status, head) = curl(
        &url,
        &format!("deployer:{PASS}"),
        &["--data-binary", &format!("@{}", body.display())],
    );
    assert_eq!(status, 429, "{head}");
    assert!(head.contains("retry-after"));
    // The stalled upload is dropped after the idle timeout; the permit
    // comes back and nothing is left on disk.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _) = curl(
            &url,
            &format!("deployer:{PASS}"),
            &["--data-binary", &format!("@{}", body.display())],
        );
        if status != 429 {
            // Not a zip: refused as such, with a failed record.
            assert_eq!(status, 400);
            break;
        }
        assert!(Instant::now() < deadline, "the permit never came back");
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(slow);
}
