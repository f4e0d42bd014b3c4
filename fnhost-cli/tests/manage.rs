//! `fnhost manage` with real clients on loopback: `curl`, raw TCP, and a
//! Kudu-style deploy script.

#![allow(clippy::unwrap_used)] // tests panic on what they do not expect

use std::fs;
use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fnhost_deploy::Site;
use fnhost_testsupport::app::hold_slot_lock;
use fnhost_testsupport::process::succeeded;
use serde_json::Value;

mod support;
use support::*;

const USER: &str = "$demo";
/// A zip of a small valid app whose `version.txt` holds `version`.
fn app_zip(path: &Path, version: &str) {
    use zip::write::SimpleFileOptions;
    let mut z = zip::ZipWriter::new(fs::File::create(path).unwrap());
    let o = SimpleFileOptions::default();
    for (name, data) in [
        ("host.json", HOST_JSON),
        ("hello/function.json", HTTP_FUNCTION),
        ("version.txt", version),
    ] {
        z.start_file(name, o).unwrap();
        z.write_all(data.as_bytes()).unwrap();
    }
    z.finish().unwrap();
}

struct Server {
    manage: Manage,
    root: String,
    home: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Server {
    fn start(extra: &[&str]) -> Server {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        let apps = [("demo", USER, PASS), ("other", "$other", "other-password")];
        home_with_apps(&home, &apps);
        let manage = manage(&home, extra);
        let root = manage.root.clone();
        Server {
            manage,
            root,
            home,
            _tmp: tmp,
        }
    }

    fn base(&self) -> String {
        format!("{}/apps/demo", self.root)
    }

    fn dir(&self) -> &Path {
        self._tmp.path()
    }
}

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Runs curl (bounded in time) and returns the last response.
fn curl(dir: &Path, args: &[&str]) -> Resp {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let id = format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let (hfile, bfile) = (
        dir.join(format!("h-{id}-{}", rand_suffix())),
        dir.join(format!("b-{id}-{}", rand_suffix())),
    );
    curl_ok(
        &["-D".as_ref(), hfile.as_ref(), "-o".as_ref(), bfile.as_ref()],
        args,
    );
    let head = fs::read_to_string(&hfile).unwrap();
    let body = fs::read(&bfile).unwrap_or_default();
    let _ = fs::remove_file(&hfile);
    let _ = fs::remove_file(&bfile);
    // The last block (after any 100 Continue).
    let block = head
        .split("\r\n\r\n")
        .filter(|b| !b.trim().is_empty())
        .last()
        .unwrap();
    let mut lines = block.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Resp {
        status,
        headers,
        body,
    }
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(Instant::now().elapsed().as_nanos() as u64);
    h.finish()
}

fn auth() -> String {
    format!("{USER}:{PASS}")
}

/// GET with the right credentials.
fn get(s: &Server, path: &str) -> Resp {
    curl(s.dir(), &["-u", &auth(), &format!("{}{path}", s.base())])
}

/// `method` on `path` (under the app's base) with the right credentials,
/// `extra` curl arguments (headers, a body) before the URL.
fn request(s: &Server, method: &str, path: &str, extra: &[&str]) -> Resp {
    let (auth, url) = (auth(), format!("{}{path}", s.base()));
    curl(
        s.dir(),
        &[&["-X", method, "-u", &auth], extra, &[&url]].concat(),
    )
}

/// `method` on `path` with `file` as the body.
fn send_file(s: &Server, method: &str, path: &str, file: &Path, extra: &[&str]) -> Resp {
    let body = format!("@{}", file.display());
    request(
        s,
        method,
        path,
        &[extra, &["--data-binary", &body]].concat(),
    )
}

fn deploy(s: &Server, zip: &Path, query: &str) -> Resp {
    send_file(s, "POST", &format!("/api/zipdeploy{query}"), zip, &[])
}

/// Polls a URL until it answers 200 (bounded).
fn poll(s: &Server, url: &str) -> Resp {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = curl(s.dir(), &["-u", &auth(), url]);
        if r.status != 202 {
            return r;
        }
        assert!(r.header("retry-after").is_some());
        assert!(Instant::now() < deadline, "still running after 60 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

const KUDU_FIELDS: &[&str] = &[
    "id",
    "status",
    "status_text",
    "author",
    "author_email",
    "deployer",
    "message",
    "progress",
    "received_time",
    "start_time",
    "end_time",
    "last_success_end_time",
    "complete",
    "active",
    "is_temp",
    "is_readonly",
    "url",
    "log_url",
];

#[test]
fn zipdeploy_records_log_etags_rollback_delete_downloads() {
    let s = Server::start(&[]);
    let (z1, z2) = (s.dir().join("v1.zip"), s.dir().join("v2.zip"));
    app_zip(&z1, "one");
    app_zip(&z2, "two");

    // Synchronous: 200 with the record.
    let r = deploy(&s, &z1, "?message=first&author=ada");
    assert_eq!(r.status, 200, "{}", r.text());
    let first = r.json();
    for f in KUDU_FIELDS {
        assert!(first.get(*f).is_some(), "field {f} missing: {first}");
    }
    assert_eq!(first["status"], 4);
    assert_eq!(first["complete"], true);
    assert_eq!(first["active"], true);
    assert_eq!(first["message"], "first");
    assert_eq!(first["author"], "ada");
    assert_eq!(first["deployer"], "ZipDeploy");
    let id1 = first["id"].as_str().unwrap().to_string();
    assert_eq!(
        first["url"],
        format!("{}/api/deployments/{id1}", s.base()).as_str()
    );

    // Asynchronous: 202 with Location; poll it until 200.
    let r = deploy(&s, &z2, "?isAsync=true&message=second");
    assert_eq!(r.status, 202, "{}", r.text());
    let location = r.header("location").unwrap().to_string();
    assert_eq!(location, format!("{}/api/deployments/latest", s.base()));
    let done = poll(&s, &location);
    assert_eq!(done.status, 200);
    let second = done.json();
    assert_eq!(second["status"], 4, "{second}");
    assert_eq!(second["message"], "second");
    let id2 = second["id"].as_str().unwrap().to_string();
    assert_ne!(id1, id2);
    assert_eq!(get(&s, "/api/vfs/version.txt").text(), "two");

    // The list, newest first, with an ETag.
    let r = get(&s, "/api/deployments");
    assert_eq!(r.status, 200);
    let list = r.json();
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [id2.as_str(), id1.as_str()]);
    assert_eq!(list[0]["active"], true);
    assert_eq!(list[1]["active"], false);
    let etag = r.header("etag").unwrap().to_string();
    let if_none_match = format!("If-None-Match: {etag}");
    let r = request(&s, "GET", "/api/deployments", &["-H", &if_none_match]);
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());

    // One record, and its log.
    let r = get(&s, &format!("/api/deployments/{id1}"));
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["id"], id1.as_str());
    let r = get(&s, &format!("/api/deployments/{id1}/log"));
    assert_eq!(r.status, 200);
    let log = r.json();
    let entries = log.as_array().unwrap();
    assert!(!entries.is_empty());
    for e in entries {
        for f in ["log_time", "id", "message", "type", "details_url"] {
            assert!(e.get(f).is_some(), "log field {f} missing: {e}");
        }
        assert!(e["type"].as_u64().unwrap() <= 2);
    }
    let etag = r.header("etag").unwrap().to_string();
    let if_none_match = format!("If-None-Match: {etag}");
    let r = request(
        &s,
        "GET",
        &format!("/api/deployments/{id1}/log"),
        &["-H", &if_none_match],
    );
    assert_eq!(r.status, 304);
    assert_eq!(get(&s, "/api/deployments/nope").status, 404);

    // PUT rolls back to the first.
    let r = request(&s, "PUT", &format!("/api/deployments/{id1}"), &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["active"], true);
    assert_eq!(get(&s, "/api/vfs/version.txt").text(), "one");

    // DELETE: the active one is refused, the other goes.
    let del = |id: &str| request(&s, "DELETE", &format!("/api/deployments/{id}"), &[]);
    let r = del(&id1);
    assert_eq!(r.status, 409);
    assert!(r.text().contains("active"), "{}", r.text());
    assert_eq!(del(&id2).status, 204);
    assert_eq!(get(&s, &format!("/api/deployments/{id2}")).status, 404);
    assert_eq!(
        get(&s, "/api/deployments").json().as_array().unwrap().len(),
        1
    );

    // Downloads.
    let out = s.dir().join("dl.zip");
    let r = get(&s, "/api/zip/");
    assert_eq!(r.status, 200);
    fs::write(&out, &r.body).unwrap();
    let names = zip_names(&out);
    assert_eq!(names, ["hello/function.json", "host.json", "version.txt"]);
    let r = get(&s, "/api/zip/hello/");
    assert_eq!(r.status, 200);
    fs::write(&out, &r.body).unwrap();
    assert_eq!(zip_names(&out), ["function.json"]);
    let r = get(&s, "/api/functions/admin/download?includeAppSettings=true");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/zip"));
    fs::write(&out, &r.body).unwrap();
    assert!(zip_names(&out).contains(&"local.settings.json".to_string()));
    let r = get(&s, "/api/functions/admin/download?includeAppSettings=false");
    assert_eq!(r.status, 200);
    fs::write(&out, &r.body).unwrap();
    assert!(!zip_names(&out).contains(&"local.settings.json".to_string()));

    // vfs: a folder lists, a file reads with an ETag.
    let r = get(&s, "/api/vfs/");
    assert_eq!(r.status, 200);
    let listing = r.json();
    let entries = listing.as_array().unwrap();
    assert_eq!(entries.len(), 3);
    for e in entries {
        for f in ["name", "size", "mtime", "mime", "href", "path"] {
            assert!(e.get(f).is_some(), "vfs field {f} missing: {e}");
        }
    }
    assert_eq!(entries[0]["name"], "hello");
    assert_eq!(entries[0]["mime"], "inode/directory");
    assert_eq!(
        entries[0]["href"],
        format!("{}/api/vfs/hello/", s.base()).as_str()
    );
    let r = get(&s, "/api/vfs/site/wwwroot/host.json");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), HOST_JSON);
    let etag = r.header("etag").unwrap().to_string();
    let if_none_match = format!("If-None-Match: {etag}");
    let r = request(&s, "GET", "/api/vfs/host.json", &["-H", &if_none_match]);
    assert_eq!(r.status, 304);
    assert_eq!(get(&s, "/api/vfs/missing.txt").status, 404);

    // isdeploying, unknown routes and methods.
    assert_eq!(get(&s, "/api/isdeploying").json()["value"], "False");
    assert_eq!(get(&s, "/api/nothing").status, 404);
    let r = request(&s, "POST", "/api/deployments", &[]);
    assert_eq!(r.status, 405);
}

fn zip_names(path: &Path) -> Vec<String> {
    let mut z = zip::ZipArchive::new(fs::File::open(path).unwrap()).unwrap();
    let mut names: Vec<String> = (0..z.len())
        .map(|i| z.by_index(i).unwrap().name().unwrap().to_string())
        .collect();
    names.sort();
    names
}

#[test]
fn authentication_is_required_and_secrets_stay_out_of_logs() {
    let s = Server::start(&[]);
    let url = format!("{}/api/deployments", s.base());
    let r = curl(s.dir(), &[&url]);
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Basic realm=\"fnhost\", charset=\"UTF-8\"")
    );
    let r = curl(
        s.dir(),
        &["-u", &format!("{USER}:wrong-password-123"), &url],
    );
    assert_eq!(r.status, 401);
    assert!(!r.text().contains("wrong-password-123"));
    // Another app's credentials do not open this one.
    let r = curl(s.dir(), &["-u", "$other:other-password", &url]);
    assert_eq!(r.status, 401);
    // An app that does not exist looks the same as a wrong password.
    let r = curl(
        s.dir(),
        &[
            "-u",
            &auth(),
            &format!("{}/apps/ghost/api/deployments", s.root),
        ],
    );
    assert_eq!(r.status, 401);
    // A slot route.
    let r = curl(
        s.dir(),
        &[
            "-u",
            &auth(),
            &format!("{}/slots/staging/api/deployments", s.base()),
        ],
    );
    assert_eq!(r.status, 404, "{}", r.text());
    let r = curl(s.dir(), &["-u", &auth(), &url]);
    assert_eq!(r.status, 200);
    // The root is the portal's front door; other paths are not routes.
    let r = curl(s.dir(), &[&format!("{}/", s.root)]);
    assert_eq!(r.status, 303);
    let r = curl(s.dir(), &[&format!("{}/not-a-route", s.root)]);
    assert_eq!(r.status, 404);
    let mut s = s;
    s.manage.run.stop();
    let log = s.manage.run.stderr();
    assert!(log.contains("failed authentication for app demo"), "{log}");
    for secret in [PASS, "wrong-password-123", "other-password"] {
        assert!(!log.contains(secret), "a password is in the log:\n{log}");
    }
}

#[test]
fn paths_that_leave_the_app_are_refused() {
    let s = Server::start(&[]);
    let z = s.dir().join("v1.zip");
    app_zip(&z, "one");
    assert_eq!(deploy(&s, &z, "").status, 200);
    for path in [
        "/api/vfs/../../../../etc/passwd",
        "/api/vfs/hello/../../../../../etc/passwd",
        "/api/vfs/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/api/vfs/%2E%2E%2F%2E%2E%2Fetc/passwd",
        "/api/vfs/..%2f..%2f..%2fetc%2fpasswd",
        "/api/vfs//etc/passwd",
        "/api/vfs/..%5c..%5cetc%5cpasswd",
        "/api/vfs/..\\..\\etc\\passwd",
        "/api/zip/../../",
        "/api/zip/%2e%2e/",
        "/api/deployments/..%2f..%2fcredentials",
        "/api/deployments/../../credentials.json",
    ] {
        let r = curl(
            s.dir(),
            &[
                "--path-as-is",
                "-u",
                &auth(),
                &format!("{}{path}", s.base()),
            ],
        );
        assert!(
            r.status == 400 || r.status == 404,
            "{path}: {} {}",
            r.status,
            r.text()
        );
        assert!(!r.text().contains("root:"), "{path} leaked a file");
    }
    for path in [
        "/apps/../etc/passwd",
        "/apps/%2e%2e/api/vfs/x",
        "/apps/demo/slots/../api/vfs/",
    ] {
        let r = curl(
            s.dir(),
            &["--path-as-is", "-u", &auth(), &format!("{}{path}", s.root)],
        );
        assert!(r.status == 400 || r.status == 404, "{path}: {}", r.status);
    }
    // vfs writes with such paths.
    let r = curl(
        s.dir(),
        &[
            "--path-as-is",
            "-X",
            "PUT",
            "-u",
            &auth(),
            "--data-binary",
            "x",
            &format!("{}/api/vfs/%2e%2e/evil.txt", s.base()),
        ],
    );
    assert_eq!(r.status, 400);
    assert!(!s.home.join("apps/demo/evil.txt").exists());
}

#[test]
fn read_only_mode_and_vfs_edits_make_new_versions() {
    let s = Server::start(&[]);
    let z = s.dir().join("v1.zip");
    app_zip(&z, "one");
    let r = deploy(&s, &z, "");
    assert_eq!(r.status, 200);
    let id1 = r.json()["id"].as_str().unwrap().to_string();
    let site = Site::open(&s.home).unwrap();
    site.set_continuous_deployment("demo", "production", Some("https://git.example/repo#main"))
        .unwrap();
    // `If-Match` when given.
    let if_match = |m: Option<&str>| m.map(|m| format!("If-Match: {m}"));
    let put = |path: &str, data: &str, m: Option<&str>| {
        let header = if_match(m);
        let header = header.iter().flat_map(|h| ["-H", h.as_str()]);
        let extra: Vec<&str> = header.chain(["--data-binary", data]).collect();
        request(&s, "PUT", path, &extra)
    };
    for r in [
        deploy(&s, &z, ""),
        put("/api/vfs/new.txt", "x", None),
        put("/api/zip/", "x", None),
        request(&s, "DELETE", "/api/vfs/version.txt", &["-H", "If-Match: *"]),
    ] {
        assert_eq!(r.status, 409, "{}", r.text());
        assert!(r.text().contains("read-only"), "{}", r.text());
        assert!(r.text().contains("https://git.example/repo#main"));
    }
    site.set_continuous_deployment("demo", "production", None)
        .unwrap();

    // A new file: 201 and a new deployment; the old one is untouched.
    let r = put("/api/vfs/notes/new.txt", "hello", None);
    assert_eq!(r.status, 201, "{}", r.text());
    let id2 = r.header("x-fnhost-deployment").unwrap().to_string();
    assert_ne!(id2, id1);
    assert_eq!(get(&s, "/api/vfs/notes/new.txt").text(), "hello");
    assert!(
        !s.home
            .join(format!("apps/demo/content/{id1}/notes"))
            .exists()
    );
    // Replacing needs If-Match: missing or stale is 412.
    assert_eq!(put("/api/vfs/version.txt", "two", None).status, 412);
    assert_eq!(
        put("/api/vfs/version.txt", "two", Some("\"0000\"")).status,
        412
    );
    let etag = get(&s, "/api/vfs/version.txt")
        .header("etag")
        .unwrap()
        .to_string();
    let r = put("/api/vfs/version.txt", "two", Some(&etag));
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(get(&s, "/api/vfs/version.txt").text(), "two");
    assert_eq!(
        fs::read_to_string(s.home.join(format!("apps/demo/content/{id1}/version.txt"))).unwrap(),
        "one"
    );
    // The old ETag is stale now.
    assert_eq!(
        put("/api/vfs/version.txt", "three", Some(&etag)).status,
        412
    );
    // A change that breaks the app is refused and nothing changes.
    let r = put("/api/vfs/host.json", "{ not json", Some("*"));
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["status"], 3);
    assert_eq!(get(&s, "/api/vfs/host.json").text(), HOST_JSON);
    // DELETE needs If-Match too; folders need recursive=true.
    let del = |path: &str, m: Option<&str>| {
        let header = if_match(m);
        let extra: Vec<&str> = header.iter().flat_map(|h| ["-H", h.as_str()]).collect();
        request(&s, "DELETE", path, &extra)
    };
    assert_eq!(del("/api/vfs/version.txt", None).status, 412);
    assert_eq!(del("/api/vfs/version.txt", Some("*")).status, 204);
    assert_eq!(get(&s, "/api/vfs/version.txt").status, 404);
    assert_eq!(del("/api/vfs/notes/", None).status, 409);
    assert_eq!(del("/api/vfs/notes/?recursive=true", None).status, 204);
    assert_eq!(get(&s, "/api/vfs/notes/").status, 404);
    // PUT /api/zip/{folder}/ unpacks a zip over the content.
    let extra = s.dir().join("extra.zip");
    {
        use zip::write::SimpleFileOptions;
        let mut w = zip::ZipWriter::new(fs::File::create(&extra).unwrap());
        w.start_file("a.txt", SimpleFileOptions::default()).unwrap();
        w.write_all(b"A").unwrap();
        w.finish().unwrap();
    }
    let r = send_file(&s, "PUT", "/api/zip/static/", &extra, &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["status"], 4);
    assert_eq!(get(&s, "/api/vfs/static/a.txt").text(), "A");
    assert_eq!(get(&s, "/api/vfs/host.json").text(), HOST_JSON);
}

#[test]
fn concurrent_zipdeploys_queue_and_all_succeed() {
    let s = Server::start(&[]);
    let n = 4;
    let zips: Vec<PathBuf> = (0..n)
        .map(|i| {
            let p = s.dir().join(format!("c{i}.zip"));
            app_zip(&p, &format!("version {i}"));
            p
        })
        .collect();
    let children: Vec<_> = zips
        .iter()
        .enumerate()
        .map(|(i, z)| {
            Command::new("curl")
                .args([
                    "-s",
                    "-S",
                    "--max-time",
                    "60",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                ])
                .args(["-u", &auth(), "--data-binary"])
                .arg(format!("@{}", z.display()))
                .arg(format!("{}/api/zipdeploy?message=c{i}", s.base()))
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
    }
    let list = get(&s, "/api/deployments").json();
    let mut records: Vec<Value> = list.as_array().unwrap().clone();
    assert_eq!(records.len(), n);
    records.reverse(); // oldest first
    for r in &records {
        assert_eq!(r["status"], 4, "{r}");
    }
    for w in records.windows(2) {
        // One at a time: each started after the previous ended.
        assert!(
            w[1]["start_time"].as_str().unwrap() >= w[0]["end_time"].as_str().unwrap(),
            "{} overlaps {}",
            w[1]["id"],
            w[0]["id"]
        );
    }
    assert_eq!(records[n - 1]["active"], true);
}

#[test]
fn a_busy_slot_queues_or_refuses_without_waiting() {
    let s = Server::start(&[]);
    let z = s.dir().join("v1.zip");
    app_zip(&z, "one");
    // Another process holds the slot (as `fnhost deploy` would).
    let lock_path = s.home.join("apps/demo/slots/production/lock");
    let lock = hold_slot_lock(&lock_path, "20990101T000000000000Z-cli123");

    let r = deploy(&s, &z, "?wait=false");
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(
        r.text().contains("20990101T000000000000Z-cli123"),
        "{}",
        r.text()
    );
    assert_eq!(get(&s, "/api/isdeploying").json()["value"], "True");

    // Without wait=false it queues: 202, and latest says 202 while it waits.
    let r = deploy(&s, &z, "?isAsync=true");
    assert_eq!(r.status, 202);
    let location = r.header("location").unwrap().to_string();
    let r = curl(s.dir(), &["-u", &auth(), &location]);
    assert_eq!(r.status, 202);
    assert_eq!(r.header("retry-after"), Some("1"));
    drop(lock);
    let done = poll(&s, &location);
    assert_eq!(done.status, 200);
    assert_eq!(done.json()["status"], 4);
}

#[test]
fn oversize_bodies_and_disconnects_leave_nothing() {
    let s = Server::start(&["--max-upload-mb", "1"]);
    let big = s.dir().join("big.bin");
    fs::write(&big, vec![7u8; 2 * 1024 * 1024]).unwrap();
    let r = deploy(&s, &big, "");
    assert_eq!(r.status, 413, "{}", r.text());
    // Chunked, without a length: cut at the limit.
    let chunked = ["-H", "Transfer-Encoding: chunked"];
    let r = send_file(&s, "POST", "/api/zipdeploy", &big, &chunked);
    assert_eq!(r.status, 413, "{}", r.text());

    // Half a body, then the client goes away.
    let addr = s.root.strip_prefix("http://").unwrap().to_string();
    let mut tcp = TcpStream::connect(&addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    use base64::Engine as _;
    let token = base64::engine::general_purpose::STANDARD.encode(auth());
    write!(
        tcp,
        "POST /apps/demo/api/zipdeploy HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Basic {token}\r\nContent-Length: 500000\r\n\r\n"
    )
    .unwrap();
    tcp.write_all(&vec![1u8; 200_000]).unwrap();
    tcp.flush().unwrap();
    // Let the server receive part of it.
    std::thread::sleep(Duration::from_millis(500));
    let tmp_root = s.home.join("manage/tmp");
    drop(tcp);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let leftovers = count_files(&tmp_root);
        if leftovers == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{leftovers} temporary files left"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let r = get(&s, "/api/deployments");
    assert_eq!(r.json().as_array().unwrap().len(), 0);
    assert_eq!(
        fs::read_dir(s.home.join("apps/demo/records"))
            .unwrap()
            .count(),
        0
    );
    // The server still works.
    let z = s.dir().join("v1.zip");
    app_zip(&z, "one");
    assert_eq!(deploy(&s, &z, "").status, 200);
}

fn count_files(dir: &Path) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            if e.path().is_dir() {
                count_files(&e.path())
            } else {
                1
            }
        })
        .sum()
}

#[test]
fn a_kudu_deploy_script_works_with_only_the_base_url_changed() {
    let s = Server::start(&[]);
    let z = s.dir().join("app.zip");
    app_zip(&z, "scripted");
    let script = s.dir().join("deploy.sh");
    fs::write(&script, KUDU_SCRIPT).unwrap();
    let out = Command::new("bash")
        .arg(&script)
        .arg(&z)
        .env("SCM_BASE", s.base())
        .env("DEPLOY_USER", USER)
        .env("DEPLOY_PASSWORD", PASS)
        .current_dir(s.dir())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&succeeded(&out).stdout);
    assert!(stdout.contains("Deployment succeeded"), "{stdout}");
    assert_eq!(get(&s, "/api/vfs/version.txt").text(), "scripted");
}

/// Written as a deploy script for Kudu is: zip push with isAsync, then poll
/// the Location until it stops answering 202, then check status 4. Only
/// the base URL and the credentials differ.
const KUDU_SCRIPT: &str = r#"#!/usr/bin/env bash
set -euo pipefail
ZIP="$1"
BASE="${SCM_BASE:-https://myapp.scm.azurewebsites.net}"
CREDS="$DEPLOY_USER:$DEPLOY_PASSWORD"

headers=$(mktemp)
code=$(curl -sS -X POST --data-binary @"$ZIP" -u "$CREDS" \
  -H "Content-Type: application/zip" \
  -D "$headers" -o /dev/null -w '%{http_code}' \
  "$BASE/api/zipdeploy?isAsync=true&author=ci&message=build%20${BUILD_ID:-local}")
if [ "$code" != "202" ]; then
  echo "zipdeploy answered $code" >&2
  exit 1
fi
location=$(grep -i '^location:' "$headers" | cut -d' ' -f2- | tr -d '\r')
echo "Polling $location"
for i in $(seq 1 120); do
  body=$(curl -sS -u "$CREDS" -w '\n%{http_code}' "$location")
  status_code=$(echo "$body" | tail -n1)
  json=$(echo "$body" | sed '$d')
  if [ "$status_code" = "200" ]; then
    status=$(echo "$json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])')
    if [ "$status" = "4" ]; then
      echo "Deployment succeeded"
      exit 0
    fi
    echo "Deployment failed with status $status: $json" >&2
    exit 1
  fi
  sleep 1
done
echo "Timed out" >&2
exit 1
"#;
