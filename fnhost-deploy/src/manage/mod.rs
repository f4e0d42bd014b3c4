//! The management endpoint: Kudu's publishing API over HTTP, for every app
//! of a [`Site`] (feature `server`). `fnhost manage` runs it.
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use fnhost_deploy::Site;
//! use fnhost_deploy::manage::Manage;
//!
//! let site = Site::open(".fnhost").expect("the home opens");
//! let server = Manage::new(site).bind("127.0.0.1:7072".parse().unwrap()).await?;
//! println!("listening on http://{}", server.local_addr());
//! server.serve(std::future::pending()).await;
//! # Ok(()) }
//! ```
//!
//! # Paths
//!
//! The base URL of an app's production slot is `/apps/{app}`, of another
//! slot `/apps/{app}/slots/{slot}`. Under a base the paths are Kudu's, so a
//! Kudu client needs only a new base URL:
//!
//! | method and path | what |
//! | --- | --- |
//! | `POST /api/zipdeploy` | deploy the body (a zip); `isAsync`, `author`, `message`, `deployer`, `clean`, `wait` |
//! | `GET /api/deployments/latest` | 202 + `Retry-After` while a deployment runs or waits, else 200 and the newest record |
//! | `GET /api/deployments`, `/api/deployments/{id}`, `/api/deployments/{id}/log` | records and logs (Kudu's fields), with `ETag` |
//! | `PUT /api/deployments/{id}` | activate (roll back to) that deployment |
//! | `DELETE /api/deployments/{id}` | delete a deployment that is not active |
//! | `GET /api/isdeploying` | `{"value": "True"}` or `"False"` |
//! | `GET /api/zip/{folder}/` | the active content (or a folder of it) as a zip |
//! | `PUT /api/zip/{folder}/` | a new deployment: the active content with the zip unpacked over it |
//! | `GET /api/functions/admin/download?includeAppSettings=` | the active content as a zip, optionally with `local.settings.json` |
//! | `GET /api/vfs/{path}` | a file of the active content, or a folder's listing |
//! | `PUT`, `DELETE /api/vfs/{path}` | a new deployment with that file replaced or removed (`If-Match`) |
//! | `POST /deploy` | a push webhook (GitHub, GitLab, Bitbucket, Azure Repos, generic): syncs a slot that follows a git repository when its branch moved (`X-Hub-Signature-256` checked when a secret is set) |
//! | `GET`, `POST /{app}.git/...` | git smart HTTP for the slot's built-in repository (`git http-backend`); a push deploys |
//!
//! [`Manage::route`] adds routes under every base (the webhook and git
//! routes are added that way). See `docs/manage.md` for the details.
//!
//! # Security
//!
//! Every route needs HTTP basic auth with the app's deployment credentials
//! ([`Site::check_credentials`]); otherwise 401 with `WWW-Authenticate`.
//! Failed attempts are throttled per client address (429 with
//! `Retry-After` during a lockout). Passwords are never logged nor echoed.
//! [`Manage::with_tls`] serves HTTPS (rustls); without it the endpoint
//! speaks plain HTTP, for loopback or behind a TLS-terminating proxy.

// Handlers return the response to send as their error: it is answered at
// once, so its size on the stack does not matter.
#![allow(clippy::result_large_err)]

mod api;
mod auth;
mod body;
mod git_http;
mod paths;
mod tls;
mod vfs;
mod webhook;

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::deployment::Deployment;
use crate::site::Site;
use crate::store::Manifest;

pub use body::{ResponseBody, Upload, json, text};

/// A response of the management endpoint.
pub type HttpResponse = Response<ResponseBody>;

/// Where log lines go (requests, failures). Never given a secret.
pub type LogSink = Arc<dyn Fn(&str) + Send + Sync>;

/// Limits on what the endpoint accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// The largest upload (a zip, a file); 413 beyond.
    pub max_upload_bytes: u64,
    /// Uploads received or waiting to be deployed at once; 429 beyond.
    pub max_concurrent_uploads: usize,
    /// The longest pause while receiving an upload before it is dropped.
    pub upload_idle_timeout: Duration,
    /// The largest request line plus headers.
    pub max_header_bytes: usize,
    /// How long a connection may take to send a request head.
    pub header_read_timeout: Duration,
    /// How long shutdown waits for requests and deployments in flight.
    pub shutdown_timeout: Duration,
    /// Failed authentications from one address before lockouts start.
    pub auth_free_failures: u32,
    /// The first lockout; each further failure doubles it.
    pub auth_lockout: Duration,
    /// The longest lockout.
    pub auth_max_lockout: Duration,
    /// `Retry-After` sent while a deployment runs.
    pub retry_after: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_upload_bytes: 2 * 1024 * 1024 * 1024,
            max_concurrent_uploads: 8,
            upload_idle_timeout: Duration::from_secs(60),
            max_header_bytes: 64 * 1024,
            header_read_timeout: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(30),
            auth_free_failures: 5,
            auth_lockout: Duration::from_secs(1),
            auth_max_lockout: Duration::from_secs(300),
            retry_after: Duration::from_secs(1),
        }
    }
}

impl Limits {
    /// Sets [`Limits::max_upload_bytes`].
    pub fn with_max_upload_bytes(mut self, bytes: u64) -> Self {
        self.max_upload_bytes = bytes;
        self
    }
    /// Sets [`Limits::max_concurrent_uploads`] (at least 1).
    pub fn with_max_concurrent_uploads(mut self, n: usize) -> Self {
        self.max_concurrent_uploads = n.max(1);
        self
    }
    /// Sets [`Limits::upload_idle_timeout`].
    pub fn with_upload_idle_timeout(mut self, d: Duration) -> Self {
        self.upload_idle_timeout = d;
        self
    }
    /// Sets [`Limits::shutdown_timeout`].
    pub fn with_shutdown_timeout(mut self, d: Duration) -> Self {
        self.shutdown_timeout = d;
        self
    }
    /// Sets the throttling of failed authentications: `free` failures,
    /// then lockouts from `first` doubling up to `max`.
    pub fn with_auth_throttle(mut self, free: u32, first: Duration, max: Duration) -> Self {
        self.auth_free_failures = free;
        self.auth_lockout = first;
        self.auth_max_lockout = max.max(first);
        self
    }
}

/// A request to a route under an app's base, authenticated.
#[non_exhaustive]
pub struct AppRequest {
    /// The home.
    pub site: Site,
    /// The app.
    pub app: String,
    /// The slot (`production` for `/apps/{app}`).
    pub slot: String,
    /// The base path: `/apps/{app}` or `/apps/{app}/slots/{slot}`.
    pub base: String,
    /// The base as an absolute URL (from the `Host` header), for links.
    pub base_url: String,
    /// The values of the route's `{name}` and `{*name}` parts, still
    /// percent-encoded.
    pub params: Vec<(String, String)>,
    /// The decoded query.
    pub query: Vec<(String, String)>,
    /// The authenticated deployment user.
    pub user: String,
    /// The client's address.
    pub peer: SocketAddr,
    /// Method, URI, headers.
    pub parts: hyper::http::request::Parts,
    /// The body, not read yet (`None` once taken).
    pub body: Option<Incoming>,
    shared: Arc<Shared>,
}

impl fmt::Debug for AppRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppRequest")
            .field("app", &self.app)
            .field("slot", &self.slot)
            .field("method", &self.parts.method)
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

impl AppRequest {
    /// A route parameter (still percent-encoded).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A query parameter (first occurrence, name compared without case).
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// A header's value, when it is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.parts.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Receives the body into a temporary file under the endpoint's limits
    /// (size, idle time, concurrent uploads); the file is removed when the
    /// [`Upload`] is dropped, so a client that goes away leaves nothing.
    /// The error is the response to send (413, 429, 400).
    pub async fn receive(&mut self) -> Result<Upload, HttpResponse> {
        let Some(body) = self.body.take() else {
            return Err(text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the request body was already taken",
            ));
        };
        body::receive(&self.shared, &self.parts.headers, body).await
    }

    /// Logs a line on the endpoint's log.
    pub fn log(&self, line: &str) {
        (self.shared.log)(line);
    }
}

/// A route's handler: built-in ones and those added with
/// [`Manage::route`].
pub trait Handler: Send + Sync + 'static {
    /// Answers a request.
    fn call(&self, req: AppRequest) -> Pin<Box<dyn Future<Output = HttpResponse> + Send>>;
}

impl<F, Fut> Handler for F
where
    F: Fn(AppRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = HttpResponse> + Send + 'static,
{
    fn call(&self, req: AppRequest) -> Pin<Box<dyn Future<Output = HttpResponse> + Send>> {
        Box::pin(self(req))
    }
}

struct Route {
    methods: Vec<Method>,
    pattern: paths::Pattern,
    handler: Arc<dyn Handler>,
}

/// The management endpoint of a [`Site`]: configure it, then
/// [`Manage::bind`].
pub struct Manage {
    site: Site,
    limits: Limits,
    log: LogSink,
    routes: Vec<Route>,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl fmt::Debug for Manage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Manage")
            .field("site", &self.site.home())
            .field("limits", &self.limits)
            .field("routes", &self.routes.len())
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl Manage {
    /// The endpoint of `site`, with default [`Limits`], no log, and Kudu's
    /// routes.
    pub fn new(site: Site) -> Manage {
        let mut m = Manage {
            site,
            limits: Limits::default(),
            log: Arc::new(|_| {}),
            routes: Vec::new(),
            tls: None,
        };
        api::register(&mut m);
        vfs::register(&mut m);
        webhook::register(&mut m);
        git_http::register(&mut m);
        m
    }

    /// Sets the limits.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Serves HTTPS: `cert_chain_pem` holds the certificate chain (the
    /// server's own first), `key_pem` its private key (PKCS#8, PKCS#1 or
    /// SEC1), both PEM. Links the endpoint builds (`Location`, `url`,
    /// `log_url`) then use `https`. Fails, naming the file, when a file
    /// cannot be read, holds no certificate or key, or the key does not
    /// match the certificate.
    pub fn with_tls(
        mut self,
        cert_chain_pem: impl AsRef<Path>,
        key_pem: impl AsRef<Path>,
    ) -> crate::Result<Self> {
        self.tls = Some(tls::acceptor(cert_chain_pem.as_ref(), key_pem.as_ref())?);
        Ok(self)
    }

    /// Sends log lines to `log`.
    pub fn with_log(mut self, log: LogSink) -> Self {
        self.log = log;
        self
    }

    /// Adds a route under every app base: `pattern` is a path such as
    /// `/deploy`, `/api/things/{id}` (one segment) or `/{repo}.git/{*rest}`
    /// (a segment with a suffix; the rest of the path, possibly empty).
    /// Requests are authenticated before the handler runs. Built-in routes
    /// are matched first. This is where webhooks (`POST /deploy`) and git
    /// smart HTTP (`/{app}.git/...`) plug in.
    ///
    /// # Panics
    ///
    /// When the pattern is not valid (a `{*name}` that is not last).
    pub fn route(mut self, methods: &[Method], pattern: &str, handler: impl Handler) -> Self {
        self.add(methods, pattern, handler);
        self
    }

    fn add(&mut self, methods: &[Method], pattern: &str, handler: impl Handler) {
        #[allow(clippy::expect_used)]
        let pattern = paths::Pattern::parse(pattern).expect("a valid route pattern");
        self.routes.push(Route {
            methods: methods.to_vec(),
            pattern,
            handler: Arc::new(handler),
        });
    }

    /// Binds the listening socket.
    pub async fn bind(self, addr: SocketAddr) -> io::Result<Server> {
        let listener = TcpListener::bind(addr).await?;
        self.from_listener(listener)
    }

    /// Serves on a socket already bound.
    pub fn from_listener(self, listener: TcpListener) -> io::Result<Server> {
        let local_addr = listener.local_addr()?;
        let tmp = body::temp_dir(self.site.home())?;
        let mut http1 = hyper::server::conn::http1::Builder::new();
        http1
            .max_buf_size(self.limits.max_header_bytes.max(8192))
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_read_timeout)
            .keep_alive(true);
        let shared = Arc::new(Shared {
            uploads: Arc::new(Semaphore::new(self.limits.max_concurrent_uploads.max(1))),
            throttle: auth::Throttle::default(),
            site: self.site,
            limits: self.limits,
            log: self.log,
            routes: self.routes,
            queues: Mutex::new(HashMap::new()),
            manifests: Mutex::new(HashMap::new()),
            tmp,
            background: Mutex::new(JoinSet::new()),
            tls: self.tls.is_some(),
        });
        Ok(Server {
            listener,
            tls: self.tls,
            shared,
            http1,
            local_addr,
        })
    }
}

/// A bound management endpoint; [`Server::serve`] runs it.
pub struct Server {
    listener: TcpListener,
    shared: Arc<Shared>,
    http1: hyper::server::conn::http1::Builder,
    local_addr: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.local_addr)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// The address it listens on (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Whether it serves HTTPS ([`Manage::with_tls`]).
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Serves until `shutdown` resolves; then stops accepting, lets
    /// requests and deployments in flight finish up to
    /// [`Limits::shutdown_timeout`], and returns. A deployment cut short
    /// by the process ending is finished (marked interrupted) by the next
    /// deployment to its slot; the previous one stays active.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let Server {
            listener,
            shared,
            http1,
            tls,
            ..
        } = self;
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut connections: JoinSet<()> = JoinSet::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            tokio::select! {
                biased;
                _ = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let _ = stream.set_nodelay(true);
                        let (shared, http1, stop) = (shared.clone(), http1.clone(), stop_rx.clone());
                        match &tls {
                            None => {
                                connections.spawn(serve_connection(shared, http1, stream, peer, stop));
                            }
                            Some(acceptor) => {
                                let accept = acceptor.accept(stream);
                                connections.spawn(async move {
                                    // The handshake gets the time a request head gets.
                                    let timeout = shared.limits.header_read_timeout;
                                    match tokio::time::timeout(timeout, accept).await {
                                        Ok(Ok(stream)) => {
                                            serve_connection(shared, http1, stream, peer, stop).await;
                                        }
                                        Ok(Err(e)) => (shared.log)(&format!(
                                            "manage: {} TLS handshake failed: {e}",
                                            peer.ip()
                                        )),
                                        Err(_) => (shared.log)(&format!(
                                            "manage: {} TLS handshake timed out",
                                            peer.ip()
                                        )),
                                    }
                                });
                            }
                        }
                    }
                    Err(e) => {
                        (shared.log)(&format!("manage: accept failed: {e}"));
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        drop(listener);
        let _ = stop_tx.send(true);
        let mut background =
            std::mem::take(&mut *shared.background.lock().unwrap_or_else(|e| e.into_inner()));
        let deadline = tokio::time::Instant::now() + shared.limits.shutdown_timeout;
        let _ = tokio::time::timeout_at(deadline, async {
            while connections.join_next().await.is_some() {}
            while background.join_next().await.is_some() {}
        })
        .await;
        connections.abort_all();
        background.abort_all();
        let _ = crate::fsutil::remove_tree(&shared.tmp);
    }
}

/// One slot's deployments through this endpoint: they run one at a time,
/// in the order received.
#[derive(Default)]
struct SlotQueue {
    /// Held while a deployment (or rollback, or edit) of the slot runs.
    turn: tokio::sync::Mutex<()>,
    state: Mutex<QueueState>,
}

#[derive(Default)]
struct QueueState {
    /// Received and not finished.
    waiting: usize,
    /// The running deployment's record, as last reported.
    running: Option<Deployment>,
    /// Files stored so far, out of a total, of the running one.
    progress: Option<(u64, u64)>,
    /// The last deployment finished here, with when it finished.
    last: Option<Deployment>,
}

struct Shared {
    site: Site,
    limits: Limits,
    log: LogSink,
    routes: Vec<Route>,
    throttle: auth::Throttle,
    uploads: Arc<Semaphore>,
    queues: Mutex<HashMap<(String, String), Arc<SlotQueue>>>,
    manifests: Mutex<HashMap<(String, String), Arc<Manifest>>>,
    tmp: PathBuf,
    background: Mutex<JoinSet<()>>,
    tls: bool,
}

impl Shared {
    fn queue(&self, app: &str, slot: &str) -> Arc<SlotQueue> {
        let mut q = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        q.entry((app.to_string(), slot.to_string()))
            .or_default()
            .clone()
    }

    /// A deployment's manifest (immutable, so cached).
    fn manifest(&self, app: &str, id: &str) -> crate::Result<Arc<Manifest>> {
        let key = (app.to_string(), id.to_string());
        if let Some(m) = self
            .manifests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(m.clone());
        }
        let m = Arc::new(self.site.manifest(app, id)?);
        let mut cache = self.manifests.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= 16 {
            cache.clear();
        }
        cache.insert(key, m.clone());
        Ok(m)
    }

    fn tmp(&self) -> &Path {
        &self.tmp
    }

    fn spawn_background(&self, f: impl Future<Output = ()> + Send + 'static) {
        let mut bg = self.background.lock().unwrap_or_else(|e| e.into_inner());
        while bg.try_join_next().is_some() {}
        bg.spawn(f);
    }
}

async fn serve_connection<I>(
    shared: Arc<Shared>,
    http1: hyper::server::conn::http1::Builder,
    io: I,
    peer: SocketAddr,
    mut stop: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(handle(shared, req, peer).await) }
    });
    let conn = http1.serve_connection(TokioIo::new(io), service);
    let mut conn = std::pin::pin!(conn);
    let stopping = tokio::select! {
        _ = conn.as_mut() => false,
        stopped = stop.wait_for(|s| *s) => stopped.is_ok(),
    };
    if stopping {
        conn.as_mut().graceful_shutdown();
        let _ = conn.await;
    }
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>, peer: SocketAddr) -> HttpResponse {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let mut user = String::new();
    let resp = dispatch(&shared, req, peer, &mut user).await;
    (shared.log)(&format!(
        "manage: {} {method} {path} {} {}{} ms",
        peer.ip(),
        resp.status().as_u16(),
        if user.is_empty() {
            String::new()
        } else {
            format!("user {user} ")
        },
        started.elapsed().as_millis()
    ));
    resp
}

async fn dispatch(
    shared: &Arc<Shared>,
    req: Request<Incoming>,
    peer: SocketAddr,
    user_out: &mut String,
) -> HttpResponse {
    let Some(target) = paths::split_base(req.uri().path()) else {
        return text(
            StatusCode::NOT_FOUND,
            "not a management path: use /apps/{app}/api/... or /apps/{app}/slots/{slot}/api/...",
        );
    };
    // Authentication comes before anything that could tell whether the
    // app, the slot or the route exists.
    let user = match auth::authenticate(shared, &req, &target.app, peer).await {
        Ok(user) => user,
        Err(resp) => return resp,
    };
    user_out.clone_from(&user);
    let segments = match paths::segments(&target.rest) {
        Some(s) => s,
        None => return text(StatusCode::BAD_REQUEST, "the path is not valid"),
    };
    let mut allowed: Vec<Method> = Vec::new();
    let mut found = None;
    for route in &shared.routes {
        if let Some(params) = route.pattern.matches(&segments) {
            if route.methods.contains(req.method()) {
                found = Some((route.handler.clone(), params));
                break;
            }
            allowed.extend(route.methods.iter().cloned());
        }
    }
    let Some((handler, params)) = found else {
        if allowed.is_empty() {
            return text(StatusCode::NOT_FOUND, "no such management route");
        }
        let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
        let allow: Vec<&str> = allowed.iter().map(Method::as_str).collect();
        if let Ok(v) = HeaderValue::from_str(&allow.join(", ")) {
            resp.headers_mut().insert(hyper::header::ALLOW, v);
        }
        return resp;
    };
    // A slot that does not exist: only a deployment creates it.
    let creates_slot = req.method() == Method::POST && target.rest.starts_with("/api/zipdeploy");
    if !creates_slot {
        match shared.site.slots(&target.app) {
            Ok(slots) if slots.contains(&target.slot) => {}
            Ok(_) => {
                return text(
                    StatusCode::NOT_FOUND,
                    &format!(
                        "{}: no slot {:?}; a zip deployment to it creates it",
                        target.app, target.slot
                    ),
                );
            }
            Err(e) => return api::error_response(shared, &e),
        }
    }
    let query = req
        .uri()
        .query()
        .map(paths::parse_query)
        .unwrap_or_default();
    let base_url = base_url(&req, shared.tls, &target.base);
    let (parts, body) = req.into_parts();
    let app_req = AppRequest {
        site: shared.site.clone(),
        app: target.app,
        slot: target.slot,
        base: target.base,
        base_url,
        params,
        query,
        user,
        peer,
        parts,
        body: Some(body),
        shared: shared.clone(),
    };
    handler.call(app_req).await
}

fn base_url(req: &Request<Incoming>, tls: bool, base: &str) -> String {
    let scheme = if tls { "https" } else { "http" };
    let host = req
        .headers()
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b))
        })
        .unwrap_or("localhost");
    format!("{scheme}://{host}{base}")
}
