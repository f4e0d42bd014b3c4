//! `fnhost manage --ftp-port` with real FTP clients on loopback: curl
//! (`--ssl-reqd`) and Python's ftplib `FTP_TLS`, over explicit TLS with a
//! self-signed certificate made by `openssl`, passive ports on 127.0.0.1.

#![allow(clippy::unwrap_used)] // tests panic on what they do not expect

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

mod support;
use fnhost_testsupport::process::succeeded as ok;
use fnhost_testsupport::tls::self_signed;
use support::{PASS, fnhost, fnhost_stdin, write};

const USER: &str = "$shop";
/// Azure's FTP user name: APP\USER.
const FTP_USER: &str = "shop\\$shop";

/// Passive port ranges, one per server of this test binary.
static NEXT_PORTS: AtomicU16 = AtomicU16::new(0);

struct Server {
    child: Child,
    ftp: String,
    dir: PathBuf,
    home: PathBuf,
    log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// An app `shop` (a custom handler app with a README) with
    /// credentials, and `fnhost manage` serving it over FTPS.
    fn start(dir: &Path) -> Server {
        Server::start_with(dir, true)
    }

    /// As [`Server::start`]; without `tls`, plain FTP (`--ftp-plain`).
    fn start_with(dir: &Path, tls: bool) -> Server {
        let home = dir.join("home");
        let src = dir.join("src");
        write(
            &src.join("host.json"),
            r#"{ "version": "2.0", "customHandler": { "description": { "defaultExecutablePath": "handler" } } }"#,
        );
        write(&src.join("hello/function.json"), support::HTTP_FUNCTION);
        write(&src.join("README.md"), "read me\n");
        write(&src.join("handler"), "#!/bin/sh\n");
        std::fs::set_permissions(
            src.join("handler"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        ok(&fnhost(&home, &["apps", "create", "shop"]));
        ok(&fnhost(
            &home,
            &["deploy", "shop", "--dir", src.to_str().unwrap()],
        ));
        ok(&fnhost_stdin(
            &home,
            &["credentials", "set", "shop", "--user", USER],
            &format!("{PASS}\n"),
        ));
        let first = 42000
            + (std::process::id() % 200) as u16 * 40
            + NEXT_PORTS.fetch_add(1, Ordering::SeqCst) * 10;
        let log = dir.join("manage.log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_fnhost"));
        cmd.arg("--home")
            .arg(&home)
            .args(["manage", "--port", "0", "--ftp-port", "0"]);
        if tls {
            let (cert, key) = self_signed(dir, "server");
            cmd.arg("--tls-cert").arg(&cert).arg("--tls-key").arg(&key);
        } else {
            cmd.arg("--ftp-plain");
        }
        let mut child = cmd
            .arg("--ftp-passive-ports")
            .arg(format!("{first}-{}", first + 9))
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut ftp = String::new();
        for line in lines.by_ref().take(2) {
            let line = line.unwrap();
            if let Some(rest) = line.strip_prefix("ftp listening on ftp://") {
                ftp = rest.split(' ').next().unwrap().to_string();
                let how = if tls { "(explicit TLS)" } else { "(plain)" };
                assert!(line.ends_with(how), "{line}");
            }
        }
        assert!(
            !ftp.is_empty(),
            "no ftp address; log: {}",
            std::fs::read_to_string(&log).unwrap()
        );
        Server {
            child,
            ftp,
            dir: dir.to_path_buf(),
            home,
            log,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("ftp://{}/{path}", self.ftp)
    }

    /// curl over explicit TLS (`--ssl-reqd`), trusting the certificate.
    fn curl(&self, user: &str, args: &[&str]) -> Output {
        Command::new("curl")
            .args(["-sS", "--ssl-reqd", "--max-time", "30", "--cacert"])
            .arg(self.dir.join("server-cert.pem"))
            .args(["--user", user])
            .args(args)
            .output()
            .unwrap()
    }

    fn deployments(&self) -> Vec<Value> {
        let out = fnhost(&self.home, &["deployments", "shop", "--json"]);
        let text = stdout(&out);
        serde_json::from_str::<Value>(&text)
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    }

    /// Waits (at most 20 s) until the app has `n` deployments, the
    /// newest finished.
    fn wait_for_deployments(&self, n: usize) -> Vec<Value> {
        let start = Instant::now();
        loop {
            let d = self.deployments();
            let done = d.len() >= n && d[0]["complete"] == true;
            if done || start.elapsed() > Duration::from_secs(20) {
                return d;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap()
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&ok(out).stdout).into_owned()
}

#[test]
fn curl_lists_downloads_and_uploads_over_tls() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(tmp.path());

    let user = format!("{FTP_USER}:{PASS}");
    let listing = stdout(&s.curl(&user, &[&s.url("site/wwwroot/")]));
    for name in ["README.md", "hello", "handler", "host.json"] {
        assert!(listing.contains(name), "{name} not in\n{listing}");
    }
    let root = stdout(&s.curl(&user, &["--list-only", &s.url("")]));
    assert_eq!(root.trim(), "site", "Azure's tree: /site/wwwroot");
    let readme = stdout(&s.curl(&user, &[&s.url("site/wwwroot/README.md")]));
    assert_eq!(readme, "read me\n");

    // Plain FTP is refused: TLS comes before the password.
    let plain = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "30",
            "--user",
            &format!("{FTP_USER}:{PASS}"),
        ])
        .arg(s.url("site/wwwroot/"))
        .output()
        .unwrap();
    assert!(
        !plain.status.success(),
        "plain FTP answered: {}",
        String::from_utf8_lossy(&plain.stdout)
    );

    // An upload becomes a deployment when the session ends.
    let file = tmp.path().join("new.txt");
    std::fs::write(&file, "uploaded over ftps\n").unwrap();
    ok(&s.curl(
        &user,
        &[
            "--ftp-create-dirs",
            "-T",
            file.to_str().unwrap(),
            &s.url("site/wwwroot/docs/new.txt"),
        ],
    ));
    let d = s.wait_for_deployments(2);
    assert_eq!(d.len(), 2, "log:\n{}", s.log());
    assert_eq!(d[0]["active"], true, "{d:#?}");
    assert_eq!(d[0]["deployer"], "Ftp");
    assert_eq!(d[0]["author"], USER);
    assert_eq!(d[0]["message"], "ftp: put docs/new.txt");
    assert_eq!(d[0]["source"], "FTP session of shop\\$shop");
    let back = stdout(&s.curl(&user, &[&s.url("site/wwwroot/docs/new.txt")]));
    assert_eq!(back, "uploaded over ftps\n");
    // The rest of the content is still there.
    let readme = stdout(&s.curl(&user, &[&s.url("site/wwwroot/README.md")]));
    assert_eq!(readme, "read me\n");
}

/// An ftplib session: list, download, two uploads, a folder, a rename,
/// a delete and an upload cut short; QUIT; then one deployment.
const FTPLIB_SESSION: &str = r#"
import ftplib, io, ssl, sys
host, port, user, password, ca = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]

class Client(ftplib.FTP_TLS):
    # libunftp closes an upload's data connection without TLS close_notify;
    # ftplib's storbinary insists on one. The upload itself is complete.
    def storbinary(self, cmd, fp, blocksize=8192):
        self.voidcmd("TYPE I")
        with self.transfercmd(cmd) as conn:
            while True:
                buf = fp.read(blocksize)
                if not buf:
                    break
                conn.sendall(buf)
            try:
                conn.unwrap()
            except (ssl.SSLError, OSError):
                pass
        return self.voidresp()

f = Client(context=ssl.create_default_context(cafile=ca), timeout=30)
f.connect(host, port)
f.login(user, password)
f.prot_p()
f.cwd("/site/wwwroot")
print("LIST", sorted(f.nlst()))
got = io.BytesIO()
f.retrbinary("RETR host.json", got.write)
print("RETR", len(got.getvalue()))
f.storbinary("STOR notes.txt", io.BytesIO(b"first"))
f.storbinary("STOR notes.txt", io.BytesIO(b"second"))
f.mkd("docs")
f.rename("README.md", "docs/README.md")
f.storbinary("STOR docs/guide.txt", io.BytesIO(b"guide"))
# An upload cut short: the data connection closed without close_notify.
conn = f.transfercmd("STOR cut.bin")
conn.sendall(b"x" * 10000)
conn.close()
try:
    f.voidresp()
    print("CUT accepted")
except ftplib.all_errors as e:
    print("CUT refused", e)
print("VIEW", sorted(f.nlst()), sorted(f.nlst("docs")))
f.quit()
"#;

#[test]
fn an_ftplib_session_becomes_one_deployment() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(tmp.path());
    let (host, port) = s.ftp.split_once(':').unwrap();
    let out = Command::new("python3")
        .args(["-c", FTPLIB_SESSION, host, port, FTP_USER, PASS])
        .arg(tmp.path().join("server-cert.pem"))
        .output()
        .unwrap();
    let printed = stdout(&out);
    assert!(
        printed.contains("LIST ['README.md', 'handler', 'hello', 'host.json']"),
        "{printed}"
    );
    assert!(printed.contains("CUT refused"), "{printed}");
    assert!(
        printed.contains(
            "VIEW ['docs', 'handler', 'hello', 'host.json', 'notes.txt'] ['README.md', 'guide.txt']"
        ),
        "{printed}"
    );

    let d = s.wait_for_deployments(2);
    assert_eq!(
        d.len(),
        2,
        "one deployment for the session; log:\n{}",
        s.log()
    );
    let user = format!("{FTP_USER}:{PASS}");
    let listing = stdout(&s.curl(&user, &["--list-only", &s.url("site/wwwroot/")]));
    let mut names: Vec<&str> = listing.lines().collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["docs", "handler", "hello", "host.json", "notes.txt"]
    );
    assert_eq!(
        stdout(&s.curl(&user, &[&s.url("site/wwwroot/notes.txt")])),
        "second"
    );
    assert_eq!(
        stdout(&s.curl(&user, &[&s.url("site/wwwroot/docs/README.md")])),
        "read me\n"
    );
    assert_eq!(
        stdout(&s.curl(&user, &[&s.url("site/wwwroot/docs/guide.txt")])),
        "guide"
    );
    // The executable kept its mode through the new deployment.
    let long = stdout(&s.curl(&user, &[&s.url("site/wwwroot/")]));
    let handler = long.lines().find(|l| l.ends_with(" handler")).unwrap();
    assert!(handler.starts_with("-rwx"), "{handler}");
    // Nothing half-written: the upload cut short is nowhere.
    assert!(!listing.contains("cut.bin"));
}

#[test]
fn wrong_passwords_are_refused_and_throttled() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(tmp.path());
    let url = s.url("site/wwwroot/");
    let wrong = s.curl(&format!("{FTP_USER}:not-the-password"), &[&url]);
    assert_eq!(wrong.status.code(), Some(67), "curl: login denied");
    let unknown = s.curl(&format!("shop:{PASS}"), &[&url]);
    assert_eq!(
        unknown.status.code(),
        Some(67),
        "a user without APP\\ is refused"
    );
    for _ in 0..4 {
        s.curl(&format!("{FTP_USER}:still-wrong"), &[&url]);
    }
    // Six failures: the address is locked out for a second, even with
    // the right password.
    let locked = s.curl(&format!("{FTP_USER}:{PASS}"), &[&url]);
    assert_eq!(locked.status.code(), Some(67));
    assert!(
        s.log().contains("locked out after failed logins"),
        "{}",
        s.log()
    );
    std::thread::sleep(Duration::from_millis(1200));
    ok(&s.curl(&format!("{FTP_USER}:{PASS}"), &[&url]));
    assert!(!s.log().contains(PASS), "a password in the log");
}

#[test]
fn read_only_under_continuous_deployment_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(tmp.path());
    ok(&fnhost(
        &s.home,
        &[
            "source",
            "set",
            "shop",
            "--folder",
            tmp.path().join("src").to_str().unwrap(),
        ],
    ));
    let before = s.deployments().len();
    let user = format!("{FTP_USER}:{PASS}");

    // Listing and downloading still work.
    let listing = stdout(&s.curl(&user, &["--list-only", &s.url("site/wwwroot/")]));
    assert!(listing.contains("host.json"), "{listing}");
    let file = tmp.path().join("x.txt");
    std::fs::write(&file, "x").unwrap();
    let up = s.curl(
        &user,
        &["-T", file.to_str().unwrap(), &s.url("site/wwwroot/x.txt")],
    );
    // 550, or the data connection closed before curl read it.
    assert!(!up.status.success(), "an upload to a read-only slot passed");
    let del = s.curl(&user, &["-Q", "DELE site/wwwroot/README.md", &s.url("")]);
    assert!(!del.status.success(), "a delete on a read-only slot passed");

    // The reason: in the root's READ-ONLY.txt and in the log.
    let why = stdout(&s.curl(&user, &[&s.url("READ-ONLY.txt")]));
    assert!(
        why.contains("read-only: continuous deployment from"),
        "{why}"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        s.log()
            .contains("refused upload /site/wwwroot/x.txt: shop/production is read-only"),
        "{}",
        s.log()
    );
    assert_eq!(
        s.deployments().len(),
        before,
        "no deployment from a read-only session"
    );
}

#[test]
fn plain_ftp_only_when_asked_and_slots_by_azure_names() {
    let tmp = tempfile::tempdir().unwrap();
    // FTPS without a certificate: refused at start, saying what to give.
    let home = tmp.path().join("empty-home");
    let out = fnhost(&home, &["manage", "--port", "0", "--ftp-port", "0"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--tls-cert") && err.contains("--ftp-plain"),
        "{err}"
    );

    let s = Server::start_with(tmp.path(), false);
    let src = tmp.path().join("src");
    ok(&fnhost(
        &s.home,
        &[
            "deploy",
            "shop",
            "--slot",
            "staging",
            "--dir",
            src.to_str().unwrap(),
        ],
    ));
    let plain = |user: &str, args: &[&str]| {
        Command::new("curl")
            .args(["-sS", "--max-time", "30", "--user", user])
            .args(args)
            .output()
            .unwrap()
    };
    // Another slot is APP__SLOT\USER, as Azure names a slot's site.
    let staging = format!("shop__staging\\{USER}:{PASS}");
    let file = tmp.path().join("s.txt");
    std::fs::write(&file, "staged").unwrap();
    ok(&plain(
        &staging,
        &["-T", file.to_str().unwrap(), &s.url("site/wwwroot/s.txt")],
    ));
    let start = Instant::now();
    let deployed = loop {
        let out = fnhost(
            &s.home,
            &["deployments", "shop", "--slot", "staging", "--json"],
        );
        let d: Value = serde_json::from_str(&stdout(&out)).unwrap();
        let newest = d[0].clone();
        if newest["deployer"] == "Ftp" && newest["complete"] == true {
            break newest;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no deployment; log:\n{}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(deployed["slot"], "staging");
    assert_eq!(
        stdout(&plain(&staging, &[&s.url("site/wwwroot/s.txt")])),
        "staged"
    );
    // Production is untouched.
    let production = format!("{FTP_USER}:{PASS}");
    let listing = stdout(&plain(
        &production,
        &["--list-only", &s.url("site/wwwroot/")],
    ));
    assert!(!listing.contains("s.txt"), "{listing}");
}
