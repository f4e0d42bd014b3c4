//! The portal's Workers pages over a real manager and SQLite state store,
//! without a browser: the workers and an app's placement rendered (hostile
//! names and labels escaped), drained and scaled through the pages' forms,
//! a join token shown once; an app's deployment credentials see none of it.

#![allow(clippy::unwrap_used)] // tests panic on what they do not expect

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use fnhost_cluster::manager::Cluster;
use fnhost_cluster::state::{
    self, Assignment, PlacementMode, StateStore, WorkerRecord, WorkerState,
};
use fnhost_deploy::Site;
use fnhost_deploy::manage::{Manage, Portal};
use http_body_util::{BodyExt as _, Full};
use hyper::header::{CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

const HOSTILE: &str = "w<script>alert(1)</script>";
const HOSTILE_LABEL: &str = "<img src=x onerror=alert(1)>";

/// A status, the headers that matter here, a body.
#[derive(Debug)]
struct Page {
    status: u16,
    location: Option<String>,
    cookie: Option<String>,
    csp: Option<String>,
    body: String,
}

/// The portal of a manager with a cluster, seen from a client.
struct Home {
    base: String,
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    state: Arc<dyn StateStore>,
    _tmp: tempfile::TempDir,
}

impl Home {
    /// `form` posted as from the portal's own page (`site`: the
    /// `Sec-Fetch-Site` a browser sends), or a GET without one.
    async fn send(&self, path: &str, cookie: &str, form: Option<(&str, &str)>) -> Page {
        let builder = hyper::Request::builder()
            .uri(format!("{}{path}", self.base))
            .header(COOKIE, cookie);
        let req = match form {
            Some((site, body)) => builder
                .method("POST")
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header("sec-fetch-site", site)
                .body(Full::new(Bytes::from(body.to_string()))),
            None => builder.method("GET").body(Full::new(Bytes::new())),
        };
        let resp = self.client.request(req.unwrap()).await.unwrap();
        let header = |name| {
            resp.headers()
                .get(name)
                .map(|v: &hyper::header::HeaderValue| v.to_str().unwrap().to_string())
        };
        let (location, cookie) = (header(LOCATION), header(SET_COOKIE));
        let csp = header(hyper::header::CONTENT_SECURITY_POLICY);
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        Page {
            status,
            location,
            cookie: cookie.map(|c| c.split(';').next().unwrap().to_string()),
            csp,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    async fn get(&self, path: &str, cookie: &str) -> Page {
        self.send(path, cookie, None).await
    }

    async fn post(&self, path: &str, cookie: &str, form: &str) -> Page {
        self.send(path, cookie, Some(("same-origin", form))).await
    }

    /// Signs in (`app` empty: a portal account); the session cookie.
    async fn sign_in(&self, user: &str, password: &str, app: &str) -> String {
        let form = format!("user={user}&password={password}&app={app}");
        let page = self.post("/portal/login", "", &form).await;
        assert_eq!(page.status, 303, "sign-in of {user}: {page:?}");
        page.cookie.unwrap()
    }
}

fn worker(name: &str, labels: &[(&str, &str)]) -> WorkerRecord {
    let labels: BTreeMap<&str, &str> = labels.iter().copied().collect();
    serde_json::from_value(serde_json::json!({
        "name": name, "credential_hash": "h", "labels": labels, "capacity": 4,
        "state": "joining", "drain_requested": false, "status": "{}",
        "last_heartbeat": 0, "registered_at": 0, "generation": 0
    }))
    .unwrap()
}

/// Registers a worker running one ready instance of demo through the
/// library, as `fnhost worker` would have.
async fn register(state: &dyn StateStore, name: &str, labels: &[(&str, &str)], ready: bool) {
    state.register_worker(&worker(name, labels)).await.unwrap();
    let status = serde_json::json!({"draining": false, "instances": [{
        "app": "demo", "slot": "production", "deployment": "dep-1", "manifest": "m1",
        "endpoint": "http://127.0.0.1:9", "ready": ready, "in_flight": 7
    }]});
    let now = fnhost_cluster::now_ms();
    state
        .heartbeat(name, WorkerState::Ready, &status.to_string(), now)
        .await
        .unwrap()
        .unwrap();
    let assignment: Assignment = serde_json::from_value(serde_json::json!({
        "worker": name, "app": "demo", "slot": "production", "deployment": "dep-1",
        "manifest": "m1", "settings_version": "s1"
    }))
    .unwrap();
    state.set_assignments(name, &[assignment]).await.unwrap();
}

async fn start() -> Home {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let site = Site::open(&home).unwrap();
    site.create_app("demo").unwrap();
    site.set_credentials("demo", "deployer", "deploy-pass-1")
        .unwrap();
    site.add_portal_user("ann", "portal-pass-1").unwrap();
    let state = state::open(&home, None).await.unwrap();
    register(&*state, HOSTILE, &[("zone", HOSTILE_LABEL)], true).await;
    register(&*state, "w2", &[("zone", "a")], false).await;
    let cluster = Cluster::new(site.clone(), state.clone());
    let server = Manage::new(site)
        .with_router(cluster.router())
        .with_portal(Portal::default().with_workers(Arc::new(cluster)))
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let base = format!("http://{}", server.local_addr());
    tokio::spawn(server.serve(std::future::pending()));
    Home {
        base,
        client: Client::builder(TokioExecutor::new()).build_http(),
        state,
        _tmp: tmp,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_are_shown_escaped_drained_and_scaled_by_portal_accounts_only() {
    let p = start().await;
    let admin = p.sign_in("ann", "portal-pass-1", "").await;

    // The Workers page: both workers, their state, labels, load and
    // instances; every hostile value escaped.
    let page = p.get("/portal/workers", &admin).await;
    assert_eq!(page.status, 200, "{page:?}");
    assert!(page.csp.unwrap().contains("script-src 'self'"));
    let body = &page.body;
    assert!(
        !body.contains("<script>alert") && !body.contains("<img src=x"),
        "{body}"
    );
    assert!(
        body.contains("w&lt;script&gt;alert(1)&lt;&#x2f;script&gt;"),
        "{body}"
    );
    assert!(
        body.contains("zone=&lt;img src=x onerror=alert(1)&gt;"),
        "{body}"
    );
    assert!(
        body.contains("<td>ready</td>") || body.contains(">ready</span>"),
        "{body}"
    );
    assert!(body.contains("dep-1</code> ready, 7 in flight"), "{body}");
    assert!(
        body.contains("dep-1</code> starting"),
        "w2's instance is not ready: {body}"
    );
    assert!(
        body.contains("href=\"/portal/workers\""),
        "the header links the page"
    );

    // Drain, through the page's form.
    let drained = p
        .post(
            "/portal/workers/drain",
            &admin,
            &format!("name={}", urlencode(HOSTILE)),
        )
        .await;
    assert_eq!(
        (drained.status, drained.location.as_deref()),
        (303, Some("/portal/workers"))
    );
    assert!(
        p.state
            .worker(HOSTILE)
            .await
            .unwrap()
            .unwrap()
            .drain_requested
    );
    let page = p.get("/portal/workers", &admin).await;
    assert!(page.body.contains(">draining</span>"), "{}", page.body);
    assert!(
        page.body.contains("drains at its next heartbeat"),
        "the flash says so"
    );
    let missing = p.post("/portal/workers/drain", &admin, "name=nobody").await;
    assert_eq!(missing.status, 404);

    // A cross-site form is refused before it does anything.
    let forged = p
        .send(
            "/portal/workers/drain",
            &admin,
            Some(("cross-site", "name=w2")),
        )
        .await;
    assert_eq!(forged.status, 403);
    assert!(!p.state.worker("w2").await.unwrap().unwrap().drain_requested);

    // A join token, shown once on the answer to the form; its hash stored.
    let made = p.post("/portal/workers/token", &admin, "").await;
    assert_eq!(made.status, 200, "{made:?}");
    let token = made
        .body
        .split("data-test=\"join-token\">")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .unwrap()
        .to_string();
    assert_eq!(token.len(), 64, "{token}");
    let hashes = p.state.join_token_hashes().await.unwrap();
    assert!(hashes.contains(&fnhost_cluster::sha256_hex(token.as_bytes())));
    assert!(!p.get("/portal/workers", &admin).await.body.contains(&token));

    // An app's placement: not placed yet, its instances and where they run.
    let placement = "/portal/apps/demo/production/placement";
    let page = p.get(placement, &admin).await;
    assert_eq!(page.status, 200, "{page:?}");
    assert!(
        page.body.contains("Not placed on workers."),
        "{}",
        page.body
    );
    assert!(page.body.contains("<td>w&lt;script&gt;"), "{}", page.body);
    assert!(!page.body.contains("<script>alert"));

    // Scale by load on labelled workers, through the form.
    let scaled = p
        .post(
            placement,
            &admin,
            "mode=auto&min=1&max=3&instances=1&labels=zone%3Da",
        )
        .await;
    assert_eq!(
        (scaled.status, scaled.location.as_deref()),
        (303, Some(placement))
    );
    let placements = p.state.placements().await.unwrap();
    assert_eq!(placements.len(), 1);
    let set = &placements[0];
    assert_eq!(
        (set.mode, set.min_instances, set.max_instances),
        (PlacementMode::Auto, 1, 3)
    );
    assert_eq!(set.labels.get("zone").map(String::as_str), Some("a"));
    let page = p.get(placement, &admin).await;
    assert!(
        page.body.contains("1 to 3 instances by load"),
        "{}",
        page.body
    );
    assert!(page.body.contains("labelled zone=a"), "{}", page.body);
    let page = p.get("/portal/workers", &admin).await;
    assert!(
        page.body.contains("<td>1 / 2</td>"),
        "ready / placed: {}",
        page.body
    );

    // A fixed count, then a wrong form (nothing changes), then none.
    assert_eq!(
        p.post(placement, &admin, "mode=instances&instances=2")
            .await
            .status,
        303
    );
    let set = &p.state.placements().await.unwrap()[0];
    assert_eq!(
        (set.mode, set.min_instances, set.labels.len()),
        (PlacementMode::Fixed, 2, 0)
    );
    let wrong = p.post(placement, &admin, "mode=auto&min=3&max=1").await;
    assert_eq!(wrong.status, 400);
    assert!(wrong.body.contains("give min &lt;= max"), "{}", wrong.body);
    assert_eq!(p.state.placements().await.unwrap()[0].min_instances, 2);
    assert_eq!(p.post(placement, &admin, "mode=remove").await.status, 303);
    assert!(p.state.placements().await.unwrap().is_empty());

    // An app's deployment credentials: their app's pages, none of the
    // cluster's (no link, 403 on every page and form).
    let deployer = p.sign_in("deployer", "deploy-pass-1", "demo").await;
    let functions = p
        .get("/portal/apps/demo/production/functions", &deployer)
        .await;
    assert_eq!(functions.status, 200);
    assert!(!functions.body.contains("/portal/workers") && !functions.body.contains("/placement"));
    for path in ["/portal/workers", placement] {
        let page = p.get(path, &deployer).await;
        assert_eq!(page.status, 403, "{path}: {page:?}");
        assert!(page.body.contains("only a portal account"), "{}", page.body);
    }
    let before = p.state.join_token_hashes().await.unwrap().len();
    for (path, form) in [
        ("/portal/workers/token", ""),
        ("/portal/workers/drain", "name=w2"),
        (placement, "mode=instances&instances=5"),
    ] {
        assert_eq!(p.post(path, &deployer, form).await.status, 403, "{path}");
    }
    assert_eq!(p.state.join_token_hashes().await.unwrap().len(), before);
    assert!(!p.state.worker("w2").await.unwrap().unwrap().drain_requested);
    assert!(p.state.placements().await.unwrap().is_empty());

    // Not signed in: the login form.
    let page = p.get("/portal/workers", "").await;
    assert_eq!(page.status, 303);
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
