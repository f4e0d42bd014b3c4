//! The git and local git providers against real repositories: local paths,
//! `file://`, a `git daemon` on 127.0.0.1 for `git://`, and a smart-HTTP
//! server (`git http-backend` behind a small CGI server in this file) with
//! basic auth for `http://`.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use fnhost_core::source::{SourceError, SourceProvider, SourceSpec};
use fnhost_core::testkit::{SourceFixture, assert_source_provider};
use fnhost_deploy::source::{GitSource, LocalGitSource, create_local_repository};
use fnhost_testsupport::app::replace_files;
use fnhost_testsupport::git::git;
use fnhost_testsupport::process::succeeded;

/// A working repository the tests commit to.
struct Repo {
    dir: PathBuf,
}

impl Repo {
    fn new(dir: PathBuf, branch: &str) -> Repo {
        fs::create_dir_all(&dir).unwrap();
        git(&dir, &["init", "-q", "-b", branch]);
        Repo { dir }
    }

    fn commit(&self, files: &[(&str, &[u8])], message: &str) -> String {
        // Git's own files and submodules stay.
        let keep = |path: &Path| {
            path.file_name()
                .is_some_and(|n| n == ".git" || n == ".gitmodules")
                || (path.is_dir() && !path.is_symlink() && path.join(".git").exists())
        };
        replace_files(&self.dir, keep, files);
        git(&self.dir, &["add", "-A"]);
        git(&self.dir, &["commit", "-q", "--allow-empty", "-m", message]);
        git(&self.dir, &["rev-parse", "HEAD"])
    }
}

struct GitFixture {
    repo: Repo,
    spec: SourceSpec,
    missing: SourceSpec,
    /// Where the provider reads, when it is not the working repository
    /// (a bare repository served by a daemon): pushed to after each commit.
    served: Option<PathBuf>,
}

impl SourceFixture for GitFixture {
    fn spec(&self) -> SourceSpec {
        self.spec.clone()
    }

    fn publish(
        &mut self,
        files: &[(&str, &[u8])],
        message: &str,
    ) -> Result<(), Box<dyn std::error::Error>> {
        self.repo.commit(files, message);
        if let Some(served) = &self.served {
            git(
                &self.repo.dir,
                &["push", "-q", "--force", served.to_str().unwrap(), "main"],
            );
        }
        Ok(())
    }

    fn missing(&self) -> SourceSpec {
        self.missing.clone()
    }
}

fn bare(dir: &Path) -> PathBuf {
    let out = Command::new("git")
        .args(["init", "-q", "--bare", "-b", "main"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    dir.to_path_buf()
}

fn file_url(path: &Path) -> String {
    format!("file://{}", path.display())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "nothing listens on {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts `cmd` (its input and output closed) and waits until something
/// listens on `port`.
fn spawn_listening(mut cmd: Command, port: u16) -> Child {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_port(port);
    child
}

/// A `git daemon` on 127.0.0.1, killed on drop.
struct Daemon {
    child: Child,
    port: u16,
}

impl Daemon {
    fn start(base: &Path) -> Daemon {
        let port = free_port();
        let mut daemon = Command::new("git");
        daemon
            .arg("daemon")
            .arg("--export-all")
            .arg(format!("--base-path={}", base.display()))
            .arg(format!("--port={port}"))
            .arg("--listen=127.0.0.1")
            .arg("--reuseaddr")
            .arg(base);
        let child = spawn_listening(daemon, port);
        Daemon { child, port }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A smart-HTTP git server: `git http-backend` behind a tiny CGI server on
/// 127.0.0.1, with basic auth. Stopped on drop.
struct HttpGit {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HttpGit {
    fn start(root: &Path, user: &str, password: &str) -> HttpGit {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let expected = format!("Basic {}", base64(format!("{user}:{password}").as_bytes()));
        let root = root.to_path_buf();
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        stream.set_nonblocking(false).unwrap();
                        stream
                            .set_read_timeout(Some(Duration::from_secs(20)))
                            .unwrap();
                        let _ = serve_cgi(stream, &root, &expected);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        HttpGit {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for HttpGit {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve_cgi(mut stream: TcpStream, root: &Path, expected_auth: &str) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("").to_owned();
    let target = parts.next().unwrap_or("").to_owned();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            let mut chunk = vec![0; n + 2];
            reader.read_exact(&mut chunk)?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(len) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.resize(len, 0);
        reader.read_exact(&mut body)?;
    }
    if header("authorization").as_deref() != Some(expected_auth) {
        stream.write_all(
            b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"git\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )?;
        return Ok(());
    }
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let mut cgi = Command::new("git")
        .arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REQUEST_METHOD", &method)
        .env("PATH_INFO", path)
        .env("QUERY_STRING", query)
        .env("CONTENT_TYPE", header("content-type").unwrap_or_default())
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("REMOTE_USER", "tester")
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("GIT_PROTOCOL", header("git-protocol").unwrap_or_default())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut stdin = cgi.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&body);
    });
    let out = cgi.wait_with_output()?;
    let _ = writer.join();
    let split = out
        .stdout
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| {
            out.stdout
                .windows(2)
                .position(|w| w == b"\n\n")
                .map(|i| (i, 2))
        });
    let (head, payload) = match split {
        Some((i, n)) => (
            String::from_utf8_lossy(&out.stdout[..i]).into_owned(),
            &out.stdout[i + n..],
        ),
        None => (String::new(), &out.stdout[..]),
    };
    let mut status = "200 OK".to_owned();
    let mut response_headers = String::new();
    for line in head.lines() {
        if let Some(s) = line.strip_prefix("Status:") {
            status = s.trim().to_owned();
        } else if !line.trim().is_empty() {
            response_headers.push_str(line.trim_end());
            response_headers.push_str("\r\n");
        }
    }
    write!(
        stream,
        "HTTP/1.1 {status}\r\n{response_headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
        payload.len()
    )?;
    stream.write_all(payload)?;
    stream.flush()
}

fn provider(cache: &Path) -> GitSource {
    GitSource::new(cache.join("git-cache"))
}

#[test]
fn local_path_conforms() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::new(tmp.path().join("app"), "main");
    let mut fixture = GitFixture {
        spec: SourceSpec::new(repo.dir.to_string_lossy()),
        missing: SourceSpec::new(tmp.path().join("nope").to_string_lossy()),
        repo,
        served: None,
    };
    assert_source_provider(&provider(tmp.path()), &mut fixture);
}

#[test]
fn file_url_conforms_and_fetches_incrementally_into_one_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::new(tmp.path().join("app"), "main");
    let mut fixture = GitFixture {
        spec: SourceSpec::new(file_url(&repo.dir)),
        missing: SourceSpec::new(file_url(&tmp.path().join("nope"))),
        repo,
        served: None,
    };
    let git = provider(tmp.path());
    assert_source_provider(&git, &mut fixture);
    let caches: Vec<_> = fs::read_dir(tmp.path().join("git-cache"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("app-"))
        .collect();
    assert_eq!(caches.len(), 1, "one cache per URL: {caches:?}");
    // A third commit arrives through the same cache.
    let id = fixture.repo.commit(&[("host.json", b"{}")], "three");
    assert_eq!(git.head(&fixture.spec).unwrap(), id);
}

#[test]
fn git_daemon_conforms() {
    let tmp = tempfile::tempdir().unwrap();
    let served = bare(&tmp.path().join("served/app.git"));
    let daemon = Daemon::start(&tmp.path().join("served"));
    let repo = Repo::new(tmp.path().join("work"), "main");
    let mut fixture = GitFixture {
        spec: SourceSpec::new(format!("git://127.0.0.1:{}/app.git", daemon.port)),
        missing: SourceSpec::new(format!("git://127.0.0.1:{}/nope.git", daemon.port)),
        repo,
        served: Some(served),
    };
    assert_source_provider(&provider(tmp.path()), &mut fixture);
}

#[test]
fn http_with_basic_auth_conforms_and_refuses_a_wrong_password() {
    let tmp = tempfile::tempdir().unwrap();
    let served = bare(&tmp.path().join("served/app.git"));
    let server = HttpGit::start(&tmp.path().join("served"), "deployer", "s3cret-pw");
    let repo = Repo::new(tmp.path().join("work"), "main");
    let password_file = tmp.path().join("password");
    fs::write(&password_file, "s3cret-pw\n").unwrap();
    let url = format!("http://127.0.0.1:{}/app.git", server.port);
    let spec = SourceSpec::new(&url)
        .with_option("username", "deployer")
        .with_option("password_file", password_file.to_string_lossy());
    let mut fixture = GitFixture {
        spec: spec.clone(),
        missing: SourceSpec::new(format!("http://127.0.0.1:{}/nope.git", server.port))
            .with_option("username", "deployer")
            .with_option("password_file", password_file.to_string_lossy()),
        repo,
        served: Some(served),
    };
    let git = provider(tmp.path());
    assert_source_provider(&git, &mut fixture);

    // A variable that is not set: an Auth error naming it, not a fetch.
    let unset = SourceSpec::new(&url)
        .with_option("username", "deployer")
        .with_option("password_env", "FNHOST_TEST_GIT_UNSET_PASSWORD");
    // What `head` says of the credentials of `spec`, which it refuses.
    let refused = |spec: &SourceSpec| match git.head(spec) {
        Err(e @ SourceError::Auth { .. }) => e.to_string(),
        other => panic!("want Auth, got {other:?}"),
    };
    let message = refused(&unset);
    assert!(
        message.contains("FNHOST_TEST_GIT_UNSET_PASSWORD"),
        "{message}"
    );
    let wrong_file = tmp.path().join("wrong");
    fs::write(&wrong_file, "not-the-password").unwrap();
    let wrong = SourceSpec::new(&url)
        .with_option("username", "deployer")
        .with_option("password_file", wrong_file.to_string_lossy());
    let message = refused(&wrong);
    assert!(!message.contains("not-the-password"), "{message}");
    let message = refused(&SourceSpec::new(&url));
    assert!(message.contains("none are configured"), "{message}");
}

#[test]
fn unreachable_host_is_unreachable() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let git = provider(tmp.path());
    for url in [
        format!("git://127.0.0.1:{port}/app.git"),
        format!("http://127.0.0.1:{port}/app.git"),
    ] {
        let start = Instant::now();
        match git.head(&SourceSpec::new(&url)) {
            Err(SourceError::Unreachable { location, .. }) => assert_eq!(location, url),
            other => panic!("{url}: want Unreachable, got {other:?}"),
        }
        assert!(start.elapsed() < Duration::from_secs(10));
    }
}

#[test]
fn missing_branch_lists_the_branches_and_refs_resolve() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::new(tmp.path().join("app"), "main");
    let first = repo.commit(&[("a.txt", b"1")], "one");
    git(&repo.dir, &["tag", "v1"]);
    git(&repo.dir, &["branch", "staging"]);
    let second = repo.commit(&[("a.txt", b"2")], "two");
    let git_source = provider(tmp.path());
    for location in [repo.dir.to_string_lossy().into_owned(), file_url(&repo.dir)] {
        let spec = SourceSpec::new(&location).with_reference("production");
        match git_source.head(&spec) {
            Err(SourceError::NotFound { what, hint, .. }) => {
                assert!(what.contains("production"), "{what}");
                assert_eq!(hint.as_deref(), Some("branches: main, staging"));
            }
            other => panic!("want NotFound, got {other:?}"),
        }
        let head = |r: &str| {
            git_source
                .head(&SourceSpec::new(&location).with_reference(r))
                .unwrap()
        };
        assert_eq!(head("main"), second);
        assert_eq!(head("staging"), first);
        assert_eq!(head("v1"), first);
        assert_eq!(head(&first), first);
        assert_eq!(
            git_source.head(&SourceSpec::new(&location)).unwrap(),
            second
        );
    }
}

#[test]
fn empty_repository_is_empty() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = bare(&tmp.path().join("empty.git"));
    let git_source = provider(tmp.path());
    for location in [empty.to_string_lossy().into_owned(), file_url(&empty)] {
        match git_source.head(&SourceSpec::new(&location)) {
            Err(SourceError::Empty { message, .. }) => {
                assert!(message.contains("empty"), "{message}")
            }
            other => panic!("{location}: want Empty, got {other:?}"),
        }
    }
}

#[test]
fn master_is_used_when_there_is_no_main_with_a_note() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::new(tmp.path().join("app"), "master");
    let id = repo.commit(&[("host.json", b"{}")], "on master");
    let into = tmp.path().join("out");
    fs::create_dir(&into).unwrap();
    let snapshot = provider(tmp.path())
        .fetch(&SourceSpec::new(file_url(&repo.dir)), &into)
        .unwrap();
    assert_eq!(snapshot.id, id);
    assert_eq!(snapshot.notes, vec!["branch main not found, using master"]);
    assert_eq!(snapshot.message.as_deref(), Some("on master"));
    assert_eq!(
        snapshot.author.as_deref(),
        Some("Ada Lovelace <ada@example.com>")
    );
    assert!(snapshot.time.is_some());
}

#[cfg(unix)]
#[test]
fn executable_bit_and_symlinks_are_kept() {
    use std::os::unix::fs::PermissionsExt as _;
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::new(tmp.path().join("app"), "main");
    fs::write(repo.dir.join("run.sh"), "#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(repo.dir.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(repo.dir.join("plain.txt"), "text").unwrap();
    std::os::unix::fs::symlink("plain.txt", repo.dir.join("link.txt")).unwrap();
    git(&repo.dir, &["add", "-A"]);
    git(&repo.dir, &["commit", "-q", "-m", "modes"]);
    for location in [repo.dir.to_string_lossy().into_owned(), file_url(&repo.dir)] {
        let into = tempfile::tempdir().unwrap();
        provider(tmp.path())
            .fetch(&SourceSpec::new(&location), into.path())
            .unwrap();
        let mode = |p: &str| {
            fs::metadata(into.path().join(p))
                .unwrap()
                .permissions()
                .mode()
        };
        assert_ne!(mode("run.sh") & 0o111, 0, "run.sh is executable");
        assert_eq!(mode("plain.txt") & 0o111, 0, "plain.txt is not");
        let link = into.path().join("link.txt");
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(fs::read_link(&link).unwrap(), Path::new("plain.txt"));
        assert!(!into.path().join(".git").exists());
    }
}

#[test]
fn submodules_are_fetched_recursively() {
    let tmp = tempfile::tempdir().unwrap();
    let inner = Repo::new(tmp.path().join("inner"), "main");
    inner.commit(&[("inner.txt", b"deepest")], "inner");
    let lib = Repo::new(tmp.path().join("lib"), "main");
    lib.commit(&[("lib.txt", b"library")], "lib");
    git(
        &lib.dir,
        &["submodule", "add", "-q", "../inner", "deps/inner"],
    );
    git(&lib.dir, &["commit", "-q", "-m", "inner as a submodule"]);
    let app = Repo::new(tmp.path().join("app"), "main");
    app.commit(&[("host.json", b"{}")], "app");
    git(
        &app.dir,
        &["submodule", "add", "-q", &file_url(&lib.dir), "vendor/lib"],
    );
    git(&app.dir, &["commit", "-q", "-m", "lib as a submodule"]);

    let git_source = provider(tmp.path());
    for location in [app.dir.to_string_lossy().into_owned(), file_url(&app.dir)] {
        let into = tempfile::tempdir().unwrap();
        git_source
            .fetch(&SourceSpec::new(&location), into.path())
            .unwrap();
        let read = |p: &str| fs::read_to_string(into.path().join(p)).unwrap();
        assert_eq!(read("host.json"), "{}");
        assert_eq!(read("vendor/lib/lib.txt"), "library");
        assert_eq!(read("vendor/lib/deps/inner/inner.txt"), "deepest");
        assert!(!into.path().join("vendor/lib/.git").exists());

        let without = tempfile::tempdir().unwrap();
        git_source
            .fetch(
                &SourceSpec::new(&location).with_option("submodules", "false"),
                without.path(),
            )
            .unwrap();
        assert!(!without.path().join("vendor/lib/lib.txt").exists());
    }
}

#[test]
fn local_git_conforms_and_follows_one_branch() {
    let tmp = tempfile::tempdir().unwrap();
    let served = tmp.path().join("apps/orders/production.git");
    create_local_repository(&served).unwrap();
    create_local_repository(&served).unwrap(); // again: fine
    let local = LocalGitSource::new();
    let spec = SourceSpec::new(served.to_string_lossy());
    match local.head(&spec) {
        Err(SourceError::Empty { message, .. }) => {
            assert_eq!(message, "nothing has been pushed to branch main yet")
        }
        other => panic!("want Empty, got {other:?}"),
    }
    let repo = Repo::new(tmp.path().join("work"), "main");
    let mut fixture = GitFixture {
        spec: spec.clone(),
        missing: SourceSpec::new(tmp.path().join("nope.git").to_string_lossy()),
        repo,
        served: Some(served.clone()),
    };
    assert_source_provider(&local, &mut fixture);

    // A push of another branch does not move the followed one.
    let main_head = local.head(&spec).unwrap();
    git(&fixture.repo.dir, &["checkout", "-q", "-b", "feature"]);
    fixture
        .repo
        .commit(&[("feature.txt", b"f")], "feature work");
    git(
        &fixture.repo.dir,
        &["push", "-q", served.to_str().unwrap(), "feature"],
    );
    assert_eq!(local.head(&spec).unwrap(), main_head);
    let staging = spec.clone().with_reference("staging");
    match local.head(&staging) {
        Err(SourceError::Empty { message, .. }) => assert_eq!(
            message,
            "nothing has been pushed to branch staging yet (branches pushed: feature, main)"
        ),
        other => panic!("want Empty, got {other:?}"),
    }
    // Deleting a branch by a push is refused.
    let out = Command::new("git")
        .args(["push", served.to_str().unwrap(), ":feature"])
        .current_dir(&fixture.repo.dir)
        .output()
        .unwrap();
    assert!(!out.status.success(), "deleting a branch must be refused");
    // Remote URLs are not for the local provider.
    assert!(
        local
            .head(&SourceSpec::new("https://example.invalid/x.git"))
            .is_err()
    );
}

/// Every entry under `dir`: folders, files with their execute bit and
/// content, links with their target.
fn entries(dir: &Path) -> std::collections::BTreeMap<String, String> {
    use std::os::unix::fs::PermissionsExt as _;
    fn walk(root: &Path, dir: &Path, out: &mut std::collections::BTreeMap<String, String>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let m = fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                out.insert(rel, "folder".into());
                walk(root, &p, out);
            } else if m.file_type().is_symlink() {
                out.insert(
                    rel,
                    format!("link {}", fs::read_link(&p).unwrap().display()),
                );
            } else {
                let exec = m.permissions().mode() & 0o111 != 0;
                let text = String::from_utf8_lossy(&fs::read(&p).unwrap()).into_owned();
                out.insert(rel, format!("exec={exec} {text}"));
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

#[test]
fn update_writes_only_the_difference_and_equals_a_fresh_fetch() {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::new(tmp.path().join("app"), "main");
    repo.commit(
        &[
            ("host.json", b"{}"),
            ("keep/same.txt", b"unchanged"),
            ("change.txt", b"before"),
            ("x", b"a file that becomes a folder"),
            ("a/b/c.txt", b"a folder that becomes a file"),
            ("gone/deep/file.txt", b"a folder that goes"),
            ("run.sh", b"#!/bin/sh\n"),
        ],
        "one",
    );
    std::os::unix::fs::symlink("change.txt", repo.dir.join("link")).unwrap();
    git(&repo.dir, &["add", "-A"]);
    git(&repo.dir, &["commit", "-q", "-m", "with a link"]);
    let with_link = git(&repo.dir, &["rev-parse", "HEAD"]);

    for location in [repo.dir.to_string_lossy().into_owned(), file_url(&repo.dir)] {
        let spec = SourceSpec::new(&location);
        let source = provider(&tmp.path().join("cache"));
        let dir = tmp.path().join("checkout");
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let fetched = source.fetch(&spec, &dir).unwrap();
        assert_eq!(fetched.id, with_link);
        let inode = |p: &str| fs::symlink_metadata(dir.join(p)).unwrap().ino();
        let kept = inode("keep/same.txt");

        // Every kind of change in one commit.
        fs::write(repo.dir.join("change.txt"), "after").unwrap();
        fs::remove_file(repo.dir.join("x")).unwrap();
        fs::create_dir_all(repo.dir.join("x")).unwrap();
        fs::write(repo.dir.join("x/y.txt"), "now inside a folder").unwrap();
        fs::remove_dir_all(repo.dir.join("a/b")).unwrap();
        fs::write(repo.dir.join("a/b"), "now a file").unwrap();
        fs::remove_dir_all(repo.dir.join("gone")).unwrap();
        fs::set_permissions(repo.dir.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::remove_file(repo.dir.join("link")).unwrap();
        std::os::unix::fs::symlink("host.json", repo.dir.join("link")).unwrap();
        fs::create_dir_all(repo.dir.join("new/dir")).unwrap();
        fs::write(repo.dir.join("new/dir/file.txt"), "new").unwrap();
        git(&repo.dir, &["add", "-A"]);
        git(&repo.dir, &["commit", "-q", "-m", "every kind of change"]);
        let second = git(&repo.dir, &["rev-parse", "HEAD"]);

        let updated = source.update(&spec, &dir, &fetched.id).unwrap();
        assert_eq!(updated.id, second);
        assert_eq!(updated.message.as_deref(), Some("every kind of change"));
        let fresh = tmp.path().join("fresh");
        let _ = fs::remove_dir_all(&fresh);
        fs::create_dir_all(&fresh).unwrap();
        source.fetch(&spec, &fresh).unwrap();
        let (got, want) = (entries(&dir), entries(&fresh));
        assert_eq!(got, want, "{location}: update differs from a fresh fetch");
        assert!(!got.contains_key("gone"), "emptied folders go: {got:?}");
        assert_eq!(got["run.sh"], "exec=true #!/bin/sh\n");
        assert_eq!(got["link"], "link host.json");
        // Unchanged files were not rewritten.
        assert_eq!(inode("keep/same.txt"), kept);

        // An id the repository does not know: the folder is written afresh.
        fs::write(dir.join("stray.txt"), "left by someone").unwrap();
        let again = source.update(&spec, &dir, &"0".repeat(40)).unwrap();
        assert_eq!(again.id, second);
        assert_eq!(entries(&dir), want);

        // Back to the first commit's content for the next location.
        git(&repo.dir, &["reset", "-q", "--hard", &with_link]);
    }
}

/// An OpenSSH server on 127.0.0.1 that accepts one public key for the user
/// running the tests; killed on drop. `None` when `sshd` is not installed
/// (the test command installs it; under `CI=true` its absence fails).
struct SshServer {
    child: Child,
    port: u16,
    user: String,
}

impl SshServer {
    fn start(dir: &Path, authorized: &Path) -> Option<SshServer> {
        let sshd = ["/usr/sbin/sshd", "/usr/bin/sshd", "/usr/local/sbin/sshd"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists());
        let Some(sshd) = sshd else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "sshd is missing under CI: scripts/test.sh installs openssh-server"
            );
            eprintln!("SKIPPED: the ssh:// test needs sshd (apt-get install openssh-server)");
            return None;
        };
        let host_key = dir.join("host_key");
        keygen(&host_key);
        // sshd's privilege separation folder (made by the package's service
        // scripts, which a container does not run).
        let _ = fs::create_dir_all("/run/sshd");
        let port = free_port();
        let config = dir.join("sshd_config");
        fs::write(
            &config,
            format!(
                "ListenAddress 127.0.0.1\nPort {port}\nHostKey {}\nAuthorizedKeysFile {}\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 PubkeyAuthentication yes\nPermitRootLogin prohibit-password\n\
                 StrictModes no\nUsePAM no\nPidFile {}\n",
                host_key.display(),
                authorized.display(),
                dir.join("sshd.pid").display()
            ),
        )
        .unwrap();
        let mut sshd = Command::new(sshd);
        sshd.arg("-D").arg("-e").arg("-f").arg(&config);
        let child = spawn_listening(sshd, port);
        let user = Command::new("id").arg("-un").output().unwrap();
        let user = String::from_utf8_lossy(&user.stdout).trim().to_owned();
        Some(SshServer { child, port, user })
    }
}

impl Drop for SshServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A key pair `DIR/NAME` (and `DIR/NAME.pub`), and an sshd in `dir` that
/// accepts it; `None` where there is no sshd.
fn ssh_server_with_key(dir: &Path, name: &str) -> Option<(SshServer, PathBuf)> {
    let key = dir.join(name);
    keygen(&key);
    let authorized = dir.join("authorized_keys");
    fs::copy(dir.join(format!("{name}.pub")), &authorized).unwrap();
    let server = SshServer::start(dir, &authorized)?;
    Some((server, key))
}

/// A new ed25519 key pair without a passphrase at `path` (and `path.pub`).
fn keygen(path: &Path) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .output()
        .unwrap();
    succeeded(&out);
}

#[test]
fn ssh_with_a_key_conforms_and_refuses_another_key() {
    let tmp = tempfile::tempdir().unwrap();
    let Some((server, key)) = ssh_server_with_key(tmp.path(), "deploy_key") else {
        return;
    };
    let served = bare(&tmp.path().join("served/app.git"));
    let url = format!(
        "ssh://{}@127.0.0.1:{}{}",
        server.user,
        server.port,
        served.display()
    );
    // The server's host key, as its owner would tell it.
    let fingerprint = fingerprint_of(&tmp.path().join("host_key.pub"));
    assert!(fingerprint.starts_with("SHA256:"), "{fingerprint}");
    let git = provider(tmp.path());

    // A host key that is neither known nor pinned is refused, naming it.
    let unpinned = SourceSpec::new(&url).with_option("ssh_key", key.to_string_lossy());
    match git.head(&unpinned) {
        Err(SourceError::Auth { message, .. }) => {
            assert!(message.contains(&fingerprint), "{message}");
            assert!(message.contains("ssh_host_key"), "{message}");
        }
        other => panic!("want Auth for an unknown host key, got {other:?}"),
    }
    // A pinned key that is not the server's is refused too.
    let wrong_pin = unpinned.clone().with_option(
        "ssh_host_key",
        "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    );
    match git.head(&wrong_pin) {
        Err(SourceError::Auth { message, .. }) => {
            assert!(message.contains(&fingerprint), "{message}")
        }
        other => panic!("want Auth for a wrong host key, got {other:?}"),
    }

    let with_key = |spec: SourceSpec, key: &Path| {
        spec.with_option("ssh_key", key.to_string_lossy())
            .with_option("ssh_host_key", &fingerprint)
    };
    let mut fixture = GitFixture {
        spec: with_key(SourceSpec::new(&url), &key),
        missing: with_key(
            SourceSpec::new(format!(
                "ssh://{}@127.0.0.1:{}{}/nope.git",
                server.user,
                server.port,
                tmp.path().display()
            )),
            &key,
        ),
        repo: Repo::new(tmp.path().join("work"), "main"),
        served: Some(served),
    };
    assert_source_provider(&git, &mut fixture);

    // Continuous deployment over SSH: the key stored owner-only under the
    // home, the host key pinned in the slot's configuration.
    let site = fnhost_deploy::Site::open(tmp.path().join("home")).unwrap();
    site.create_app("app").unwrap();
    let cd = fnhost_deploy::cd::ContinuousDeployer::new(site);
    fixture
        .publish(
            &[
                ("host.json", br#"{ "version": "2.0" }"#.as_slice()),
                ("version.txt", b"over ssh".as_slice()),
            ],
            "over ssh",
        )
        .unwrap();
    cd.configure(
        "app",
        "production",
        fnhost_deploy::cd::SourceConfig::new(fnhost_deploy::cd::SourceKind::Git, &url)
            .with_ssh_host_key(&fingerprint),
        Some(fnhost_deploy::cd::SourceCredentials::SshKey {
            username: None,
            key: fs::read(&key).unwrap(),
        }),
    )
    .unwrap();
    cd.sync_once("app", "production").unwrap();
    let active = cd.site().active_path("app", "production").unwrap();
    assert_eq!(
        fs::read_to_string(active.join("version.txt")).unwrap(),
        "over ssh"
    );

    // A key the server does not know: an Auth error.
    let other = tmp.path().join("other_key");
    keygen(&other);
    match git.head(&with_key(SourceSpec::new(&url), &other)) {
        Err(SourceError::Auth { .. }) => {}
        other => panic!("want Auth with an unknown key, got {other:?}"),
    }
}

/// The fingerprint of a public key file, as `ssh-keygen -l` prints it.
fn fingerprint_of(public_key: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(public_key)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_owned()
}

/// A source without a key authenticates with the keys of the SSH agent at
/// `SSH_AUTH_SOCK`. libssh2 reads that variable from the process's
/// environment, which a test may not change while others run; so the
/// provider is driven from a child process of this test binary
/// (`ssh_agent_child`), started with the variable set, or unset.
#[test]
fn ssh_without_a_key_uses_the_agent() {
    let tmp = tempfile::tempdir().unwrap();
    let Some((server, key)) = ssh_server_with_key(tmp.path(), "agent_key") else {
        return;
    };
    // An agent holding the key, on a socket of the test's own.
    let sock = tmp.path().join("agent.sock");
    let mut agent = Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&sock)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ssh-agent (openssh-client) runs");
    let start = Instant::now();
    while !sock.exists() {
        assert!(start.elapsed() < Duration::from_secs(10), "no agent socket");
        std::thread::sleep(Duration::from_millis(20));
    }
    let added = Command::new("ssh-add")
        .arg("-q")
        .arg(&key)
        .env("SSH_AUTH_SOCK", &sock)
        .output()
        .unwrap();
    succeeded(&added);

    let served = bare(&tmp.path().join("served/app.git"));
    let repo = Repo::new(tmp.path().join("work"), "main");
    let commit = repo.commit(
        &[("host.json", br#"{ "version": "2.0" }"#.as_slice())],
        "one",
    );
    git(&repo.dir, &["push", "-q", served.to_str().unwrap(), "main"]);
    let url = format!(
        "ssh://{}@127.0.0.1:{}{}",
        server.user,
        server.port,
        served.display()
    );
    let child = |agent_socket: Option<&Path>| {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args(["--exact", "ssh_agent_child", "--ignored", "--nocapture"])
            .env("FNHOST_AGENT_TEST_URL", &url)
            .env(
                "FNHOST_AGENT_TEST_PIN",
                fingerprint_of(&tmp.path().join("host_key.pub")),
            )
            .env("FNHOST_AGENT_TEST_CACHE", tmp.path().join("cache"))
            .env_remove("SSH_AUTH_SOCK");
        if let Some(s) = agent_socket {
            cmd.env("SSH_AUTH_SOCK", s);
        }
        let out = cmd.output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let with_agent = child(Some(&sock));
    assert!(
        with_agent.contains(&format!("head through the agent: {commit}")),
        "{with_agent}"
    );
    // Without an agent: refused, with a message saying what to configure.
    let without = child(None);
    assert!(without.contains("refused as expected: "), "{without}");
    let _ = agent.kill();
    let _ = agent.wait();
}

/// Run by `ssh_without_a_key_uses_the_agent` in a child process, with
/// `SSH_AUTH_SOCK` set or not.
#[test]
#[ignore = "run by ssh_without_a_key_uses_the_agent in a child process"]
fn ssh_agent_child() {
    let var = |name: &str| std::env::var(name).expect("set by the parent test");
    let git = provider(Path::new(&var("FNHOST_AGENT_TEST_CACHE")));
    let spec = SourceSpec::new(var("FNHOST_AGENT_TEST_URL"))
        .with_option("ssh_host_key", var("FNHOST_AGENT_TEST_PIN"));
    match (std::env::var_os("SSH_AUTH_SOCK"), git.head(&spec)) {
        (Some(_), Ok(head)) => println!("head through the agent: {head}"),
        (None, Err(SourceError::Auth { message, .. })) => {
            println!("refused as expected: {message}")
        }
        (_, other) => panic!("unexpected: {other:?}"),
    }
}
