//! The management portal as a browser meets it, without a browser: `curl`
//! on loopback against `Manage::with_portal`. Sign-in, the session
//! cookie's flags, throttling, the cross-site check (portal and API),
//! escaping of hostile values, masked secrets, read-only slots.

#![cfg(all(feature = "server", feature = "testkit"))]
#![allow(clippy::unwrap_used)] // tests panic on what they do not expect

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use fnhost_deploy::manage::{Limits, Manage, Portal};
use fnhost_deploy::testkit::ManageThread;
use fnhost_deploy::{Content, DeployRequest, Site};
use fnhost_testsupport::git::git;
use fnhost_testsupport::process::succeeded;
use fnhost_testsupport::tls::self_signed;

const ADMIN: &str = "ann";
const ADMIN_PASS: &str = "portal-pass-1";
const DEPLOYER: &str = "deployer";
const DEPLOY_PASS: &str = "deploy-pass-1";
const HOSTILE: &str = "<script>alert(1)</script>";
/// A file name a browser would run if it were not escaped.
const HOSTILE_FILE: &str = "<img src=x onerror=alert(1)>.txt";

/// A running endpoint with the portal; stops when dropped.
struct Server {
    base: String,
    _server: ManageThread,
    _tmp: tempfile::TempDir,
    site: Site,
    dir: PathBuf,
}

fn start(limits: Limits, tls: bool) -> Server {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let site = Site::open(dir.join("home")).unwrap();
    site.create_app("demo").unwrap();
    site.set_credentials("demo", DEPLOYER, DEPLOY_PASS).unwrap();
    site.create_app("other").unwrap();
    site.add_portal_user(ADMIN, ADMIN_PASS).unwrap();
    let mut manage = Manage::new(site.clone())
        .with_limits(limits)
        .with_portal(Portal::default().with_functions_url("http://fn.example:7071"));
    if tls {
        let (cert, key) = self_signed(&dir, "server");
        manage = manage.with_tls(cert, key).unwrap();
    }
    let server = ManageThread::start(manage).unwrap();
    let addr = server.addr();
    let scheme = if tls { "https" } else { "http" };
    Server {
        base: format!("{scheme}://{addr}"),
        _server: server,
        _tmp: tmp,
        site,
        dir,
    }
}

/// An answer: status, headers (lower-case names), body.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// A request with `curl`: `extra` are curl arguments (headers, data).
fn request(method: &str, url: &str, extra: &[&str]) -> Answer {
    let out = Command::new("curl")
        .args(["-s", "-S", "-k", "--max-time", "30", "-i", "-X", method])
        .args(extra)
        .arg(url)
        .output()
        .expect("curl is needed by the portal tests");
    succeeded(&out);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    Answer {
        status,
        head: head.to_string(),
        body: body.to_string(),
    }
}

/// The text of escaped HTML (the entities the templates write).
fn unescape(html: &str) -> String {
    html.replace("&#x2f;", "/")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&amp;", "&")
}

/// Whether an HTML page has an inline event handler (` onclick=`...).
fn inline_handler(html: &str) -> bool {
    html.match_indices(" on").any(|(i, _)| {
        let rest = &html[i + 3..];
        let name_len = rest.bytes().take_while(u8::is_ascii_lowercase).count();
        name_len > 0 && rest[name_len..].starts_with('=')
    })
}

/// Signs in; the session cookie (`name=value`) and the answer.
fn sign_in(s: &Server, user: &str, password: &str, app: &str) -> (Option<String>, Answer) {
    let form = format!("user={user}&password={password}&app={app}");
    let a = request(
        "POST",
        &format!("{}/portal/login", s.base),
        &["-H", "Sec-Fetch-Site: same-origin", "--data-raw", &form],
    );
    let cookie = a
        .header("set-cookie")
        .map(|c| c.split(';').next().unwrap().to_string());
    (cookie, a)
}

fn admin(s: &Server) -> String {
    let (cookie, a) = sign_in(s, ADMIN, ADMIN_PASS, "");
    assert_eq!(a.status, 303, "{a:?}");
    cookie.unwrap()
}

/// A plain endpoint ([`start`] with the default limits, no TLS), and the
/// cookie of the administrator signed in to it.
fn signed_in() -> (Server, String) {
    let s = start(Limits::default(), false);
    let cookie = admin(&s);
    (s, cookie)
}

fn get(s: &Server, cookie: &str, path: &str) -> Answer {
    request(
        "GET",
        &format!("{}{path}", s.base),
        &["-H", &format!("Cookie: {cookie}")],
    )
}

/// A form posted from the portal's own page (as a browser does).
fn post(s: &Server, cookie: &str, path: &str, form: &str) -> Answer {
    request(
        "POST",
        &format!("{}{path}", s.base),
        &[
            "-H",
            &format!("Cookie: {cookie}"),
            "-H",
            "Sec-Fetch-Site: same-origin",
            "--data-raw",
            form,
        ],
    )
}

/// Deploys an app with one HTTP function, `author` and `message` as given.
fn deploy(s: &Server, app: &str, author: &str, message: &str) -> String {
    let dir = s.dir.join(format!("src-{app}"));
    let f = dir.join("Hello");
    std::fs::create_dir_all(&f).unwrap();
    std::fs::write(dir.join("host.json"), r#"{"version": "2.0"}"#).unwrap();
    std::fs::write(
        f.join("function.json"),
        r#"{"bindings": [{"type": "httpTrigger", "direction": "in", "name": "req", "authLevel": "function", "methods": ["get"]}, {"type": "http", "direction": "out", "name": "res"}]}"#,
    )
    .unwrap();
    std::fs::write(
        f.join("index.js"),
        "module.exports = async () => ({ body: 'hi' });",
    )
    .unwrap();
    let out = s
        .site
        .deploy(
            DeployRequest::new(app, Content::Folder(dir))
                .with_author(author)
                .with_message(message),
        )
        .unwrap();
    out.deployment.id
}

/// Deploys `demo` twice ([`deploy`]), the second with a file more: the
/// two deployment ids.
fn two_deployments(s: &Server) -> (String, String) {
    let first = deploy(s, "demo", "a", "first");
    std::fs::write(s.dir.join("src-demo/extra.txt"), "two").unwrap();
    (first, deploy(s, "demo", "a", "second"))
}

/// The id of the active deployment of `demo`'s production slot.
fn active_id(s: &Server) -> String {
    s.site
        .active("demo", "production")
        .unwrap()
        .unwrap()
        .deployment
}

/// Saves `content` to file `path` of function `Hello` with the editor of
/// the page at `base`.
fn save_code(s: &Server, cookie: &str, base: &str, path: &str, content: &str) -> Answer {
    let encode = |v: &str| form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
    let form = format!(
        "function=Hello&path={}&content={}",
        encode(path),
        encode(content)
    );
    post(s, cookie, &format!("{base}/code"), &form)
}

#[test]
fn sign_in_sets_a_strict_http_only_cookie_and_logout_ends_the_session() {
    let s = start(Limits::default(), false);
    // Not signed in: pages lead to the login form, nothing is shown.
    let a = request("GET", &format!("{}/portal/", s.base), &[]);
    assert_eq!(a.status, 303);
    assert_eq!(
        a.header("location"),
        Some("/portal/login?next=%2Fportal%2F")
    );
    let a = request("GET", &format!("{}/", s.base), &[]);
    assert_eq!((a.status, a.header("location")), (303, Some("/portal/")));
    let login = request("GET", &format!("{}/portal/login", s.base), &[]);
    assert!(
        login
            .body
            .contains("<form method=\"post\" action=\"/portal/login\"")
    );
    // The policy allows no inline script; the page has none.
    let csp = login.header("content-security-policy").unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert!(
        !login.body.contains("<script>") && !inline_handler(&login.body),
        "no inline script"
    );

    let (cookie, a) = sign_in(&s, ADMIN, ADMIN_PASS, "");
    assert_eq!((a.status, a.header("location")), (303, Some("/portal/")));
    let set = a.header("set-cookie").unwrap();
    assert!(set.starts_with("fnhost_portal="), "{set}");
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(flag), "{flag} missing: {set}");
    }
    assert!(!set.contains("Secure"), "not over plain HTTP: {set}");
    let cookie = cookie.unwrap();
    let apps = get(&s, &cookie, "/portal/");
    assert_eq!(apps.status, 200);
    assert!(apps.body.contains("/portal/apps/demo/production/functions"));
    assert!(
        apps.body
            .contains("/portal/apps/other/production/functions")
    );
    assert_eq!(apps.header("cache-control"), Some("no-store"));

    let out = post(&s, &cookie, "/portal/logout", "");
    assert_eq!(out.status, 303);
    assert!(out.header("set-cookie").unwrap().contains("Max-Age=0"));
    assert_eq!(
        get(&s, &cookie, "/portal/").status,
        303,
        "the old cookie is dead"
    );

    // A wrong password: the form again, no cookie.
    let (cookie, a) = sign_in(&s, ADMIN, "wrong-password", "");
    assert_eq!(a.status, 401);
    assert!(cookie.is_none());
    assert!(a.body.contains("Wrong user name or password"));

    // Removing the account ends its sessions.
    let cookie = admin(&s);
    s.site.remove_portal_user(ADMIN).unwrap();
    assert_eq!(get(&s, &cookie, "/portal/").status, 303);
}

#[test]
fn under_tls_the_cookie_is_secure_and_host_prefixed() {
    let s = start(Limits::default(), true);
    let (cookie, a) = sign_in(&s, ADMIN, ADMIN_PASS, "");
    assert_eq!(a.status, 303);
    let set = a.header("set-cookie").unwrap();
    assert!(set.starts_with("__Host-fnhost_portal="), "{set}");
    assert!(
        set.contains("; Secure") && set.contains("HttpOnly") && set.contains("SameSite=Strict")
    );
    assert_eq!(get(&s, &cookie.unwrap(), "/portal/").status, 200);
}

#[test]
fn failed_sign_ins_are_throttled_like_deployment_credentials() {
    let limits =
        Limits::default().with_auth_throttle(2, Duration::from_secs(2), Duration::from_secs(4));
    let s = start(limits, false);
    for _ in 0..3 {
        assert_eq!(sign_in(&s, ADMIN, "wrong-guess", "").1.status, 401);
    }
    // Locked out: even the right password is refused for now.
    let (cookie, a) = sign_in(&s, ADMIN, ADMIN_PASS, "");
    assert_eq!(a.status, 429);
    assert!(cookie.is_none());
    assert!(a.body.contains("Too many failed sign-ins"));
    // The same lockout covers the API's basic auth from that address.
    let api = request(
        "GET",
        &format!("{}/apps/demo/api/deployments", s.base),
        &["-u", &format!("{DEPLOYER}:{DEPLOY_PASS}")],
    );
    assert_eq!(api.status, 429);
    std::thread::sleep(Duration::from_millis(2100));
    assert_eq!(sign_in(&s, ADMIN, ADMIN_PASS, "").1.status, 303);
}

#[test]
fn deployment_credentials_reach_their_app_only() {
    let s = start(Limits::default(), false);
    let (cookie, a) = sign_in(&s, DEPLOYER, DEPLOY_PASS, "demo");
    assert_eq!(a.status, 303);
    assert_eq!(
        a.header("location"),
        Some("/portal/apps/demo/production/functions")
    );
    let cookie = cookie.unwrap();
    let apps = get(&s, &cookie, "/portal/");
    assert!(apps.body.contains("/portal/apps/demo/"));
    assert!(!apps.body.contains("/portal/apps/other/"), "{}", apps.body);
    assert!(
        !apps.body.contains("Create app"),
        "only portal accounts create apps"
    );
    assert_eq!(
        get(&s, &cookie, "/portal/apps/demo/production/keys").status,
        200
    );
    assert_eq!(
        get(&s, &cookie, "/portal/apps/other/production/keys").status,
        404
    );
    assert_eq!(post(&s, &cookie, "/portal/apps", "name=third").status, 403);
    // Without a worker role (no `Portal::with_workers`) there is no
    // Workers page, for anyone, and no link to it.
    let ann = admin(&s);
    let home = get(&s, &ann, "/portal/");
    assert!(!home.body.contains("/portal/workers"), "{}", home.body);
    let workers = get(&s, &ann, "/portal/workers");
    assert_eq!(workers.status, 404);
    assert!(
        workers.body.contains("runs no worker role"),
        "{}",
        workers.body
    );
    assert_eq!(
        get(&s, &ann, "/portal/apps/demo/production/placement").status,
        404
    );
    // The same credentials for another app: refused.
    assert_eq!(sign_in(&s, DEPLOYER, DEPLOY_PASS, "other").1.status, 401);
    // New credentials end the sessions made with the old ones.
    s.site
        .set_credentials("demo", DEPLOYER, "another-pass-2")
        .unwrap();
    assert_eq!(
        get(&s, &cookie, "/portal/apps/demo/production/keys").status,
        303
    );
}

#[test]
fn cross_site_posts_are_refused_on_the_portal_and_the_api() {
    let (s, cookie) = signed_in();
    let url = format!("{}/portal/apps", s.base);
    let c = format!("Cookie: {cookie}");
    for headers in [
        ["-H", "Sec-Fetch-Site: cross-site"],
        ["-H", "Sec-Fetch-Site: same-site"],
        ["-H", "Origin: http://evil.example"],
        ["-H", "Origin: null"],
    ] {
        let a = request(
            "POST",
            &url,
            &[
                &["-H", c.as_str(), "--data-raw", "name=evil"][..],
                &headers[..],
            ]
            .concat(),
        );
        assert_eq!(a.status, 403, "{headers:?}: {a:?}");
        assert!(a.body.contains("cross-site request refused"), "{}", a.body);
    }
    assert!(s.site.app_info("evil").is_err(), "nothing was created");
    // The page's own form (same origin) works.
    let host = s.base.trim_start_matches("http://");
    let origin = format!("Origin: http://{host}");
    let a = request(
        "POST",
        &url,
        &["-H", &c, "-H", &origin, "--data-raw", "name=good"],
    );
    assert_eq!(a.status, 303, "{a:?}");
    assert!(s.site.app_info("good").is_ok());

    // The API: a browser that once sent basic credentials sends them
    // again from any site; such a request is refused before anything runs.
    let zip = s.dir.join("empty.zip");
    std::fs::write(&zip, b"PK\x05\x06\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0").unwrap();
    let auth = format!("{DEPLOYER}:{DEPLOY_PASS}");
    let data = format!("@{}", zip.display());
    let api = format!("{}/apps/demo/api/zipdeploy", s.base);
    for cross_site in ["Sec-Fetch-Site: cross-site", "Origin: https://evil.example"] {
        let a = request(
            "POST",
            &api,
            &["-u", &auth, "-H", cross_site, "--data-binary", &data],
        );
        assert_eq!(a.status, 403);
        assert!(s.site.deployments("demo", None).unwrap().is_empty());
    }
    // curl, CI and git send neither header: they pass the check.
    let a = request(
        "GET",
        &format!("{}/apps/demo/api/deployments", s.base),
        &["-u", &auth],
    );
    assert_eq!(a.status, 200);
}

#[test]
fn hostile_values_are_escaped_and_secrets_masked() {
    let (s, cookie) = signed_in();
    let id = deploy(&s, "demo", HOSTILE, &format!("msg {HOSTILE}"));
    let mut settings = std::collections::BTreeMap::new();
    settings.insert(HOSTILE.to_string(), "setting-secret-value".to_string());
    s.site
        .set_app_settings("demo", "production", settings)
        .unwrap();
    let escaped = "&lt;script&gt;alert(1)&lt;";
    for path in [
        "/portal/apps/demo/production/deployments".to_string(),
        format!("/portal/apps/demo/production/deployments/{id}"),
        "/portal/apps/demo/production/settings".to_string(),
    ] {
        let a = get(&s, &cookie, &path);
        assert_eq!(a.status, 200, "{path}");
        assert!(!a.body.contains(HOSTILE), "{path} has the raw value");
        assert!(a.body.contains(escaped), "{path} lacks the escaped value");
    }
    // The function and its URL (from the portal's functions URL).
    let f = get(&s, &cookie, "/portal/apps/demo/production/functions");
    assert!(
        unescape(&f.body).contains("http://fn.example:7071/api/Hello"),
        "{}",
        f.body
    );
    assert!(f.body.contains("httpTrigger") && f.body.contains("enabled"));

    // Settings and keys: masked in the page, given one at a time.
    let page = get(&s, &cookie, "/portal/apps/demo/production/settings");
    assert!(!page.body.contains("setting-secret-value"));
    let name: String = form_urlencoded::byte_serialize(HOSTILE.as_bytes()).collect();
    let value = get(
        &s,
        &cookie,
        &format!("/portal/apps/demo/production/settings/value?name={name}"),
    );
    assert_eq!(
        (value.status, value.body.as_str()),
        (200, "setting-secret-value")
    );
    assert_eq!(value.header("cache-control"), Some("no-store"));
    let keys = get(&s, &cookie, "/portal/apps/demo/production/keys");
    let store =
        fnhost_core::keys::KeyStore::open(s.site.secrets_path("demo", "production").unwrap())
            .unwrap();
    let master = store.secrets().master;
    assert!(!keys.body.contains(&master), "the master key is masked");
    let shown = get(
        &s,
        &cookie,
        "/portal/apps/demo/production/keys/value?kind=master&name=_master",
    );
    assert_eq!(shown.body, master);
    // Not signed in: no value.
    let anon = request(
        "GET",
        &format!(
            "{}/portal/apps/demo/production/keys/value?kind=master",
            s.base
        ),
        &[],
    );
    assert_ne!(anon.status, 200);
    assert!(!anon.body.contains(&master));
    // Renew and revoke.
    assert_eq!(
        post(
            &s,
            &cookie,
            "/portal/apps/demo/production/keys/renew",
            "kind=host&name=ci"
        )
        .status,
        303
    );
    let host = get(
        &s,
        &cookie,
        "/portal/apps/demo/production/keys/value?kind=host&name=ci",
    );
    assert_eq!(host.status, 200);
    assert_eq!(
        post(
            &s,
            &cookie,
            "/portal/apps/demo/production/keys/revoke",
            "kind=host&name=ci"
        )
        .status,
        303
    );
    assert_eq!(
        get(
            &s,
            &cookie,
            "/portal/apps/demo/production/keys/value?kind=host&name=ci"
        )
        .status,
        404
    );
    let after = get(&s, &cookie, "/portal/apps/demo/production/keys");
    assert!(
        after.body.contains("The host key ci is revoked."),
        "the flash message"
    );
}

#[test]
fn deployments_roll_back_and_redeploy_and_content_downloads() {
    let (s, cookie) = signed_in();
    let (first, second) = two_deployments(&s);
    let active = || active_id(&s);
    assert_eq!(active(), second);
    // Back to the first, then the second again.
    let deployments = "/portal/apps/demo/production/deployments";
    let activate = format!("{second}/activate");
    for (action, then) in [("rollback", &first), (activate.as_str(), &second)] {
        let a = post(&s, &cookie, &format!("{deployments}/{action}"), "");
        assert_eq!(a.status, 303);
        assert_eq!(&active(), then);
    }
    let log = get(
        &s,
        &cookie,
        &format!("/portal/apps/demo/production/deployments/{second}"),
    );
    assert!(log.body.contains("data-test=\"deployment-log\""));

    let zip = get(
        &s,
        &cookie,
        "/portal/apps/demo/production/download/content.zip?settings=1",
    );
    assert_eq!(zip.status, 200);
    assert!(zip.body.contains("extra.txt") && zip.body.contains("local.settings.json"));
    let zip = get(
        &s,
        &cookie,
        "/portal/apps/demo/production/download/content.zip",
    );
    assert!(!zip.body.contains("local.settings.json"));
}

#[test]
fn the_editor_saves_a_new_deployment_and_shows_diagnostics_at_their_line() {
    let (s, cookie) = signed_in();
    let first = deploy(&s, "demo", "a", "first");
    let base = "/portal/apps/demo/production";
    let page = get(&s, &cookie, &format!("{base}/code?function=Hello"));
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("module.exports"),
        "the script is in the editor"
    );
    let body = "module.exports = async () => ({ body: 'edited' });";
    let a = save_code(&s, &cookie, base, "Hello/index.js", body);
    assert_eq!(a.status, 303, "{}", a.body);
    let active = s.site.active("demo", "production").unwrap().unwrap();
    assert_ne!(active.deployment, first, "a new deployment");
    let saved = std::fs::read_to_string(active.path.join("Hello/index.js")).unwrap();
    assert_eq!(saved, body);
    let record = s.site.deployment("demo", &active.deployment).unwrap();
    assert_eq!(record.deployer, "Portal");
    assert_eq!(record.author, ADMIN);
    // The first deployment is untouched (never an edit in place).
    let old = s.site.deployment("demo", &first).unwrap();
    assert_eq!(old.status.to_string(), "success");

    // A function.json that is not JSON: refused, the problem at its line.
    let bad = "{\n  \"bindings\": [\n    {\"type\": \"httpTrigger\",,}\n  ]\n}";
    let a = save_code(&s, &cookie, base, "Hello/function.json", bad);
    assert_eq!(a.status, 422);
    assert!(a.body.contains("line 3</a>: not valid JSON"), "{}", a.body);
    // Valid JSON the validator refuses: its diagnostic at its line.
    let bad = "{\n  \"bindings\": [\n    {\"type\": \"httpTrigger\", \"direction\": \"in\", \"name\": \"req\", \"authLevel\": \"sometimes\"}\n  ]\n}";
    let a = save_code(&s, &cookie, base, "Hello/function.json", bad);
    assert_eq!(a.status, 422, "{}", a.body);
    assert!(a.body.contains("data-test=\"diagnostics\""), "{}", a.body);
    assert!(unescape(&a.body).contains("sometimes"), "{}", a.body);
    assert_eq!(
        active_id(&s),
        active.deployment,
        "nothing broken was activated"
    );
}

#[test]
fn files_are_listed_escaped_downloaded_and_uploaded_as_deployments() {
    let (s, cookie) = signed_in();
    std::fs::create_dir_all(s.dir.join("src-demo")).unwrap();
    std::fs::write(s.dir.join("src-demo").join(HOSTILE_FILE), "<b>bold</b>").unwrap();
    deploy(&s, "demo", "a", "first");
    let base = "/portal/apps/demo/production";
    let list = get(&s, &cookie, &format!("{base}/files"));
    assert_eq!(list.status, 200);
    assert!(!list.body.contains("<img"), "a file name is escaped");
    assert!(list.body.contains("&lt;img src=x onerror=alert(1)&gt;.txt"));
    assert!(list.body.contains("Hello/"), "folders listed");
    // Long folders come in pages whose links keep the folder.
    let many = s.dir.join("src-demo/many");
    std::fs::create_dir_all(&many).unwrap();
    for i in 0..150 {
        std::fs::write(many.join(format!("f{i:03}.txt")), "x").unwrap();
    }
    deploy(&s, "demo", "a", "many files");
    let page = get(&s, &cookie, &format!("{base}/files?path=many"));
    assert!(page.body.contains("1–100 of 150"), "{}", page.body);
    assert!(
        page.body.contains("href=\"?path=many&amp;page=2\""),
        "{}",
        page.body
    );
    let second = get(&s, &cookie, &format!("{base}/files?path=many&page=2"));
    assert!(second.body.contains("f149.txt") && !second.body.contains("f000.txt"));
    let name: String = form_urlencoded::byte_serialize(HOSTILE_FILE.as_bytes()).collect();
    let file = get(&s, &cookie, &format!("{base}/files/download?path={name}"));
    assert_eq!(file.status, 200);
    assert_eq!(file.body, "<b>bold</b>");
    assert!(
        file.header("content-disposition")
            .unwrap()
            .starts_with("attachment")
    );
    assert_eq!(
        file.header("content-type"),
        Some("application/octet-stream")
    );
    // The editor shows file content as text.
    let edit = get(&s, &cookie, &format!("{base}/code?path={name}"));
    assert!(edit.body.contains("&lt;b&gt;bold&lt;"), "{}", edit.body);
    assert!(!edit.body.contains("<b>bold</b>"));

    let upload = s.dir.join("notes.txt");
    std::fs::write(&upload, "uploaded").unwrap();
    let a = request(
        "POST",
        &format!("{}{base}/files/upload?path=docs%2Fnotes.txt", s.base),
        &[
            "-H",
            &format!("Cookie: {cookie}"),
            "-H",
            "Sec-Fetch-Site: same-origin",
            "--data-binary",
            &format!("@{}", upload.display()),
        ],
    );
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.body.starts_with("deployment "));
    let active = s.site.active_path("demo", "production").unwrap();
    assert_eq!(
        std::fs::read_to_string(active.join("docs/notes.txt")).unwrap(),
        "uploaded"
    );
}

#[test]
fn a_read_only_slot_refuses_every_content_change_with_the_reason() {
    let (s, cookie) = signed_in();
    let (first, second) = two_deployments(&s);
    let source = "https://git.example/repo.git#main";
    s.site
        .set_continuous_deployment("demo", "production", Some(source))
        .unwrap();
    let base = "/portal/apps/demo/production";
    // Every page says why.
    for page in [
        "functions",
        "files",
        "code?function=Hello",
        "deployments",
        "keys",
    ] {
        let a = get(&s, &cookie, &format!("{base}/{page}"));
        assert!(a.body.contains("data-test=\"read-only\""), "{page}");
        assert!(
            unescape(&a.body).contains(source),
            "{page} names the source"
        );
    }
    let editor = get(&s, &cookie, &format!("{base}/code?function=Hello"));
    assert!(editor.body.contains(" readonly>") && !editor.body.contains("Save (a new deployment)"));
    // Every control that changes content is refused by the server.
    let refused = [
        post(
            &s,
            &cookie,
            &format!("{base}/code"),
            "path=Hello%2Findex.js&content=x",
        ),
        post(
            &s,
            &cookie,
            &format!("{base}/code"),
            "path=Hello%2Ffunction.json&content=%7B%7D",
        ),
        post(&s, &cookie, &format!("{base}/files/upload?path=a.txt"), "x"),
        post(
            &s,
            &cookie,
            &format!("{base}/files/upload?path=&unzip=1"),
            "x",
        ),
    ];
    for a in refused {
        assert_eq!(a.status, 409, "{a:?}");
        assert!(unescape(&a.body).contains(source), "{}", a.body);
    }
    assert_eq!(active_id(&s), second);
    assert_eq!(
        s.site.deployments("demo", None).unwrap().len(),
        2,
        "nothing deployed"
    );
    // A rollback is a pointer switch, not an edit: still allowed.
    assert_eq!(
        post(&s, &cookie, &format!("{base}/deployments/rollback"), "").status,
        303
    );
    assert_eq!(active_id(&s), first);
}

/// An open log stream read over raw TCP.
struct Stream {
    tcp: std::net::TcpStream,
    seen: String,
}

impl Stream {
    fn open(s: &Server, cookie: &str, last_event_id: Option<u64>) -> Stream {
        use std::io::Write as _;
        let addr = s.base.trim_start_matches("http://");
        let mut tcp = std::net::TcpStream::connect(addr).unwrap();
        let last = last_event_id.map_or(String::new(), |id| format!("Last-Event-ID: {id}\r\n"));
        write!(
            tcp,
            "GET /portal/apps/demo/production/logstream/events HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}\r\nAccept: text/event-stream\r\n{last}\r\n"
        )
        .unwrap();
        tcp.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        Stream {
            tcp,
            seen: String::new(),
        }
    }

    /// Reads until `done` holds of what was read, for 10 s at most.
    fn until(&mut self, done: impl Fn(&str) -> bool) {
        use std::io::Read as _;
        let start = std::time::Instant::now();
        let mut buf = [0u8; 8192];
        while !done(&self.seen) {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "stream so far: {}",
                self.seen
            );
            match self.tcp.read(&mut buf) {
                Ok(0) => panic!("the stream ended: {}", self.seen),
                Ok(n) => self.seen.push_str(&String::from_utf8_lossy(&buf[..n])),
                Err(_) => {}
            }
        }
    }

    /// The ids of the `log` events read.
    fn ids(&self) -> Vec<u64> {
        self.seen
            .lines()
            .filter_map(|l| l.strip_prefix("id: "))
            .map(|id| id.trim().parse().unwrap())
            .collect()
    }
}

#[test]
fn the_log_stream_resumes_after_a_reconnect_without_loss_or_repeat() {
    let (s, cookie) = signed_in();
    let auth = format!("{DEPLOYER}:{DEPLOY_PASS}");
    let api = |marker: &str| {
        let url = format!("{}/apps/demo/api/deployments/{marker}", s.base);
        request("GET", &url, &["-u", &auth]).status
    };
    for i in 0..3 {
        assert_eq!(api(&format!("before-{i}")), 404);
    }
    let mut stream = Stream::open(&s, &cookie, None);
    stream.until(|t| t.contains("before-2"));
    assert!(stream.seen.contains("content-type: text/event-stream"));
    assert!(stream.seen.contains("event: log"));
    let first = stream.ids();
    let last = *first.last().unwrap();
    drop(stream);
    // Lines while disconnected, about this app and another.
    assert_eq!(api("while-away"), 404);
    request(
        "GET",
        &format!("{}/apps/other/api/deployments", s.base),
        &[],
    );
    let mut stream = Stream::open(&s, &cookie, Some(last));
    stream.until(|t| t.contains("while-away"));
    let again = stream.ids();
    assert!(
        again.iter().all(|id| *id > last),
        "no line repeated: {again:?} after {last}"
    );
    assert!(!stream.seen.contains("before-2"), "no line repeated");
    assert!(
        !stream.seen.contains("/apps/other/"),
        "only this app's lines"
    );
    assert!(!stream.seen.contains("event: gap"));
    // A new line reaches the open stream at once.
    let sent = std::time::Instant::now();
    assert_eq!(api("live-line"), 404);
    stream.until(|t| t.contains("live-line"));
    let latency = sent.elapsed();
    eprintln!("log line to open stream (including the curl request): {latency:?}");
    assert!(latency < Duration::from_secs(2), "{latency:?}");
}

#[test]
fn new_functions_come_from_the_templates_as_deployments() {
    let (s, cookie) = signed_in();
    // Nothing deployed yet: the app is made too, in the language chosen.
    let base = "/portal/apps/other/production";
    let page = get(&s, &cookie, &format!("{base}/new"));
    assert!(page.body.contains("<option value=\"http\">"));
    // The function app the template made (it must be made).
    let made = |form: &str| {
        let a = post(&s, &cookie, &format!("{base}/new"), form);
        assert_eq!(a.status, 303, "{}", a.body);
        let active = s.site.active_path("other", "production").unwrap();
        assert!(active.join("host.json").is_file());
        std::fs::read_to_string(active.join("function_app.py")).unwrap()
    };
    let app = made("template=http&name=Hi&runtime=python");
    assert!(app.contains("def Hi") || app.contains("\"Hi\""), "{app}");
    // A second one is added beside it.
    let app = made("template=timer&name=Tick");
    assert!(app.contains("Hi") && app.contains("Tick"), "{app}");
    // The same name again: refused, saying why.
    let a = post(&s, &cookie, &format!("{base}/new"), "template=http&name=Hi");
    assert_eq!(a.status, 400, "{}", a.body);
}

#[test]
fn test_run_answers_through_the_server_with_the_invocation_log_escaped() {
    let (s, cookie) = signed_in();
    let dir = s.dir.join("src-run");
    let f = dir.join("Echo");
    std::fs::create_dir_all(&f).unwrap();
    std::fs::write(dir.join("host.json"), r#"{"version": "2.0"}"#).unwrap();
    std::fs::write(
        f.join("function.json"),
        r#"{"scriptFile": "run.sh", "bindings": [{"type": "httpTrigger", "direction": "in", "name": "req", "authLevel": "anonymous", "methods": ["get", "post"]}, {"type": "http", "direction": "out", "name": "res"}]}"#,
    )
    .unwrap();
    std::fs::write(
        f.join("run.sh"),
        "cat > /dev/null\necho \"stderr <b>line</b>\" >&2\nprintf '%s' '{\"Outputs\":{\"res\":{\"statusCode\":201,\"body\":\"<script>alert(1)</script>\"}},\"Logs\":[\"from the script\"]}'\n",
    )
    .unwrap();
    s.site
        .deploy(DeployRequest::new("demo", Content::Folder(dir)))
        .unwrap();
    let base = "/portal/apps/demo/production";
    let form = "function=Echo&method=POST&query=name%3Dx&headers=X-Test%3A+1&body=hello";
    let a = post(&s, &cookie, &format!("{base}/code/run"), form);
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(
        a.body.contains("data-test=\"run-status\">201<"),
        "{}",
        a.body
    );
    assert!(
        !a.body.contains(HOSTILE),
        "the function's output is escaped"
    );
    assert!(a.body.contains("&lt;script&gt;alert(1)&lt;"));
    assert!(
        a.body.contains("stderr &lt;b&gt;line&lt;"),
        "the invocation's log lines"
    );
    assert!(a.body.contains("from the script"));
    // Monitor lists it, with its counts.
    let m = get(&s, &cookie, &format!("{base}/monitor"));
    assert!(
        m.body.contains("<td>Echo</td><td>yes</td><td>201</td>"),
        "{}",
        m.body
    );
    assert!(
        m.body.contains("<td>Echo</td><td>1</td><td>0</td>"),
        "{}",
        m.body
    );
}

#[test]
fn the_deployment_center_connects_a_git_source_in_six_steps() {
    let (s, cookie) = signed_in();
    deploy(&s, "demo", "a", "first");
    // A repository with the app on main.
    let repo = s.dir.join("repo");
    std::fs::create_dir_all(repo.join("Hello")).unwrap();
    for (from, to) in [
        ("src-demo/host.json", "host.json"),
        ("src-demo/Hello/function.json", "Hello/function.json"),
        ("src-demo/Hello/index.js", "Hello/index.js"),
    ] {
        std::fs::copy(s.dir.join(from), repo.join(to)).unwrap();
    }
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "from git"]);
    let base = "/portal/apps/demo/production";
    let page = get(&s, &cookie, &format!("{base}/center"));
    for step in [
        "1. Source",
        "2. Authorize",
        "3. Build provider",
        "4. Repository and branch",
        "5. Review",
    ] {
        assert!(page.body.contains(step), "{step}");
    }
    let location: String =
        form_urlencoded::byte_serialize(repo.display().to_string().as_bytes()).collect();
    let fields =
        format!("source=git&location={location}&branch=main&build=none&username=&password=");
    let review = post(
        &s,
        &cookie,
        &format!("{base}/center"),
        &format!("step=review&{fields}"),
    );
    assert_eq!(review.status, 200);
    assert!(review.body.contains("5. Summary") && review.body.contains("6. Finish"));
    assert!(
        s.site
            .continuous_deployment("demo", "production")
            .unwrap()
            .is_none(),
        "nothing yet"
    );
    let done = post(
        &s,
        &cookie,
        &format!("{base}/center"),
        &format!("step=finish&{fields}"),
    );
    assert_eq!(done.status, 303, "{}", done.body);
    let active = s.site.active("demo", "production").unwrap().unwrap();
    let record = s.site.deployment("demo", &active.deployment).unwrap();
    assert_eq!(
        (record.deployer.as_str(), record.message.as_str()),
        ("git", "from git")
    );
    let center = get(&s, &cookie, &format!("{base}/center"));
    assert!(center.body.contains("data-test=\"connected\""));
    assert!(
        unescape(&center.body).contains("/apps/demo/deploy"),
        "the webhook URL"
    );
    // Read-only now: the editor refuses, naming the source.
    let refused = post(
        &s,
        &cookie,
        &format!("{base}/code"),
        "path=Hello%2Findex.js&content=x",
    );
    assert_eq!(refused.status, 409);
    // A new commit, then Sync now: deployed.
    std::fs::write(
        repo.join("Hello/index.js"),
        "module.exports = async () => ({ body: 'v2' });",
    )
    .unwrap();
    git(&repo, &["commit", "-q", "-am", "second commit"]);
    assert_eq!(
        post(&s, &cookie, &format!("{base}/center/sync"), "").status,
        303
    );
    let active = s.site.active("demo", "production").unwrap().unwrap();
    assert_eq!(
        s.site
            .deployment("demo", &active.deployment)
            .unwrap()
            .message,
        "second commit"
    );
    // A webhook secret, shown only when asked for.
    assert_eq!(
        post(&s, &cookie, &format!("{base}/center/secret"), "").status,
        303
    );
    let secret = get(&s, &cookie, &format!("{base}/center/secret"));
    assert_eq!((secret.status, secret.body.len()), (200, 48));
    assert!(
        !get(&s, &cookie, &format!("{base}/center"))
            .body
            .contains(&secret.body)
    );
    // Disconnect: writable again.
    assert_eq!(
        post(&s, &cookie, &format!("{base}/center/disconnect"), "").status,
        303
    );
    assert!(s.site.check_writable("demo", "production").is_ok());
}
