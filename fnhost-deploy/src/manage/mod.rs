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
//! The endpoint is an axum `Router`: both bases nest the same routes, and
//! authentication is a layer. [`Manage::route`] adds routes under every
//! base; handlers take a [`Scope`] and stop early with an [`ApiError`]. See
//! `docs/manage.md` for the details.
//!
//! # Security
//!
//! Every route needs HTTP basic auth with the app's deployment credentials
//! ([`Site::check_credentials`]); otherwise 401 with `WWW-Authenticate`.
//! Failed attempts are throttled per client address (429 with
//! `Retry-After` during a lockout). Passwords are never logged nor echoed.
//! [`Manage::with_tls`] serves HTTPS (rustls); without it the endpoint
//! speaks plain HTTP, for loopback or behind a TLS-terminating proxy.
//! A state-changing request a browser sends from another site is refused
//! (403; `Sec-Fetch-Site`, else `Origin` against `Host`), on every route.
//! [`Manage::with_portal`] adds the pages of the management portal.

mod api;
mod auth;
mod body;
mod error;
#[cfg(feature = "ftp")]
pub mod ftp;
mod git_http;
mod paths;
mod portal;
mod tls;
mod vfs;
mod webhook;

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{FromRequestParts, RawPathParams, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{Next, from_fn, from_fn_with_state};
use axum::response::Response;
use axum::routing::{MethodRouter, post};
pub use fnhost_core::http::serve::Stopped;
use fnhost_core::http::serve::{Background, ConnectionLimits, Serve};
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::cd::{ContinuousDeployer, SourceConfig};
use crate::deployment::Deployment;
use crate::site::Site;
use crate::store::Manifest;

pub use body::{Upload, json, text};
pub use error::ApiError;
pub use portal::{
    InstanceInfo, PlacementInfo, Portal, Scale, WorkerInfo, WorkersError, WorkersView,
};

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

/// Who and where a request under an app's base is for: the layers put it
/// on every authenticated request, and a handler takes it as an extractor.
#[derive(Clone)]
#[non_exhaustive]
pub struct Scope {
    /// The app.
    pub app: String,
    /// The slot (`production` for `/apps/{app}`).
    pub slot: String,
    /// The base path: `/apps/{app}` or `/apps/{app}/slots/{slot}`.
    pub base: String,
    /// The base as an absolute URL (from the `Host` header), for links.
    pub base_url: String,
    /// The authenticated deployment user.
    pub user: String,
    /// The client's address.
    pub peer: SocketAddr,
    /// The decoded query, in order.
    query: Vec<(String, String)>,
    shared: Arc<Shared>,
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scope")
            .field("app", &self.app)
            .field("slot", &self.slot)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl Scope {
    /// The home.
    pub fn site(&self) -> &Site {
        &self.shared.site
    }

    /// A query parameter (first occurrence, name compared without case).
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Receives `body` into a temporary file under the endpoint's limits
    /// (size, idle time, concurrent uploads); the file is removed when the
    /// [`Upload`] is dropped, so a client that goes away leaves nothing.
    pub async fn receive(&self, headers: &HeaderMap, body: Body) -> Result<Upload, ApiError> {
        body::receive(&self.shared, headers, body).await
    }

    /// Logs a line on the endpoint's log.
    pub fn log(&self, line: &str) {
        (self.shared.log)(line);
    }

    /// Logs `line` (after `manage: `) and answers 500 with `why`.
    fn internal(&self, line: &str, why: &str) -> ApiError {
        self.log(&format!("manage: {line}"));
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, why)
    }

    /// What the slot follows; an error is logged as `what`'s (500).
    async fn source_config(
        &self,
        cd: &ContinuousDeployer,
        what: &str,
    ) -> Result<Option<SourceConfig>, ApiError> {
        let (cd, app, slot) = (cd.clone(), self.app.clone(), self.slot.clone());
        blocking("source lookup", move || cd.config(&app, &slot))
            .await?
            .map_err(|e| self.source_error(what, &e))
    }

    /// A continuous-deployment error of the slot: logged as `what`'s, 500.
    fn source_error(&self, what: &str, e: &crate::Error) -> ApiError {
        let line = format!("{what} {}/{}: {e}", self.app, self.slot);
        self.internal(
            &line,
            "the slot's source could not be read (see the server log)",
        )
    }

    /// The slot as `fnhost` arguments (` --slot S`, empty for production).
    fn slot_arg(&self) -> String {
        if self.slot == crate::site::PRODUCTION {
            String::new()
        } else {
            format!(" --slot {}", self.slot)
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Scope {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Scope, ApiError> {
        parts.extensions.get::<Scope>().cloned().ok_or_else(|| {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "not under an app base")
        })
    }
}

/// The management endpoint of a [`Site`]: configure it, then
/// [`Manage::bind`].
pub struct Manage {
    site: Site,
    limits: Limits,
    log: LogSink,
    routes: Router,
    /// Routes outside the app bases (the cluster API), with their own
    /// authentication.
    extra: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    portal: Option<Portal>,
}

impl fmt::Debug for Manage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Manage")
            .field("site", &self.site.home())
            .field("limits", &self.limits)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl Manage {
    /// The endpoint of `site`, with default [`Limits`], no log, and Kudu's
    /// routes.
    pub fn new(site: Site) -> Manage {
        let routes = api::routes()
            .merge(vfs::routes())
            .merge(webhook::routes(&site))
            .merge(git_http::routes(&site));
        Manage {
            site,
            limits: Limits::default(),
            log: fnhost_core::timer::tracing_log(),
            routes,
            extra: Router::new(),
            tls: None,
            portal: None,
        }
    }

    /// Merges `router` beside the app bases: its paths must not start
    /// with `/apps/`. Its handlers authenticate requests themselves (the
    /// cluster API of fnhost-cluster checks bearer tokens). The log
    /// shows its requests that fail (status 400 and above) only: such
    /// routes are polled (heartbeats, route tables).
    ///
    /// # Panics
    ///
    /// When a path overlaps one already merged (axum's rules).
    pub fn with_router(mut self, router: Router) -> Self {
        self.extra = self.extra.merge(router);
        self
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

    /// Serves the management portal (pages for a browser) under
    /// `/portal/`, and `/` redirects there; see the `portal` section of
    /// `docs/portal.md`.
    pub fn with_portal(mut self, portal: Portal) -> Self {
        self.portal = Some(portal);
        self
    }

    /// Sends log lines to `log`.
    /// Default: [`tracing_log`](fnhost_core::timer::tracing_log), each
    /// line a `tracing` event.
    pub fn with_log(mut self, log: LogSink) -> Self {
        self.log = log;
        self
    }

    /// Adds a route under every app base: `path` is an axum path such as
    /// `/deploy`, `/api/things/{id}` or `/api/files/{*rest}`. Requests are
    /// authenticated, and the slot checked, before the handler runs; the
    /// handler takes a [`Scope`]. This is where webhooks (`POST /deploy`)
    /// and git smart HTTP (`/{app}.git/...`) plug in.
    ///
    /// # Panics
    ///
    /// When `path` is not valid or overlaps a route already added (axum's
    /// rules).
    pub fn route(mut self, path: &str, method_router: MethodRouter) -> Self {
        self.routes = self.routes.route(path, method_router);
        self
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
        let shared = Arc::new(Shared {
            uploads: Arc::new(Semaphore::new(self.limits.max_concurrent_uploads.max(1))),
            throttle: auth::Throttle::default(),
            site: self.site,
            limits: self.limits,
            log: match &self.portal {
                Some(portal) => portal.log_sink(self.log),
                None => self.log,
            },
            queues: Mutex::new(HashMap::new()),
            manifests: Mutex::new(HashMap::new()),
            tmp,
            background: Background::default(),
            tls: self.tls.is_some(),
        });
        Ok(Server {
            listener,
            tls: self.tls,
            router: router(self.routes, self.extra, &shared, self.portal.as_ref()),
            shared,
            local_addr,
        })
    }
}

/// The routes under both bases of every app, behind the layers: the log
/// (outermost), authentication, then, once a route matched, the slot's
/// existence (a zip deployment creates a slot, so it is not checked).
fn router(routes: Router, extra: Router, shared: &Arc<Shared>, portal: Option<&Portal>) -> Router {
    let base = routes
        .route_layer(from_fn(slot_exists))
        .merge(with_slash("/api/zipdeploy", post(api::zipdeploy)));
    let app = base
        .clone()
        .nest("/slots/{slot}", base)
        .fallback(|| async { text(StatusCode::NOT_FOUND, "no such management route") })
        .method_not_allowed_fallback(|| async {
            text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        })
        .layer(from_fn_with_state(shared.clone(), auth::layer));
    Router::new()
        .nest("/apps/{app}", app)
        .merge(extra.layer(axum::middleware::map_response(quiet)))
        .merge(portal::routes(shared, portal))
        .fallback(|| async { text(StatusCode::NOT_FOUND, NOT_MANAGEMENT) })
        .layer(from_fn(portal::cross_site))
        .layer(from_fn_with_state(shared.clone(), log_layer))
}

const NOT_MANAGEMENT: &str =
    "not a management path: use /apps/{app}/api/... or /apps/{app}/slots/{slot}/api/...";

/// A route at `path` and at `path/` (a trailing slash is ignored).
fn with_slash(path: &str, method_router: MethodRouter) -> Router {
    Router::new()
        .route(path, method_router.clone())
        .route(&format!("{path}/"), method_router)
}

/// Runs `f` off the async threads; 500 ("the `what` stopped") when it
/// panics.
async fn blocking<T: Send + 'static>(
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|_| {
        let why = format!("the {what} stopped");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, why)
    })
}

/// A route parameter (percent-decoded by axum), empty when missing.
fn param<'a>(params: &'a RawPathParams, name: &str) -> &'a str {
    params
        .iter()
        .find(|(k, _)| *k == name)
        .map_or("", |(_, v)| v)
}

/// A slot that does not exist: only a deployment creates it.
async fn slot_exists(scope: Scope, req: Request, next: Next) -> Result<Response, ApiError> {
    if !scope.site().slots(&scope.app)?.contains(&scope.slot) {
        let (app, slot) = (&scope.app, &scope.slot);
        let why = format!("{app}: no slot {slot:?}; a zip deployment to it creates it");
        return Err(ApiError::not_found(why));
    }
    Ok(next.run(req).await)
}

/// Marks a response the log leaves out when it succeeded.
#[derive(Debug, Clone, Copy)]
struct Quiet;

async fn quiet(mut resp: Response) -> Response {
    resp.extensions_mut().insert(Quiet);
    resp
}

/// The authenticated user, on a response (for the log).
#[derive(Debug, Clone)]
struct User(String);

/// Logs every request; answers library errors ([`error::SiteError`]).
async fn log_layer(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let peer = req.extensions().get::<SocketAddr>().copied();
    let mut resp = next.run(req).await;
    let user = match resp.extensions().get::<User>() {
        Some(User(user)) => format!("user {user} "),
        None => String::new(),
    };
    if resp.extensions().get::<Quiet>().is_some() && resp.status().as_u16() < 400 {
        return resp;
    }
    if let Some(error::SiteError(e)) = resp.extensions_mut().remove() {
        let tmp = shared.tmp.display().to_string();
        resp = error::site_error_response(&e, &tmp, &*shared.log);
    }
    (shared.log)(&format!(
        "manage: {} {method} {path} {} {user}{} ms",
        peer.map_or_else(String::new, |p| p.ip().to_string()),
        resp.status().as_u16(),
        started.elapsed().as_millis()
    ));
    resp
}

/// A bound management endpoint; [`Server::serve`] runs it.
pub struct Server {
    listener: TcpListener,
    router: Router,
    shared: Arc<Shared>,
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
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Stopped {
        let Server {
            listener,
            router,
            shared,
            tls,
            ..
        } = self;
        let limits = ConnectionLimits {
            max_header_bytes: shared.limits.max_header_bytes,
            header_read_timeout: shared.limits.header_read_timeout,
            shutdown_timeout: shared.limits.shutdown_timeout,
        };
        let make = |peer: SocketAddr| {
            let router = router.clone();
            hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(peer);
                tower_service::Service::call(&mut router.clone(), req)
            })
        };
        let serve = Serve::new(listener, limits, "manage")
            .with_log(shared.log.clone())
            .with_background(shared.background.clone());
        let stopped = match tls {
            Some(acceptor) => {
                serve
                    .with_handshake(tls::Tls(acceptor))
                    .run(make, shutdown)
                    .await
            }
            None => serve.run(make, shutdown).await,
        };
        let _ = crate::fsutil::remove_tree(&shared.tmp);
        stopped
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
    throttle: auth::Throttle,
    uploads: Arc<Semaphore>,
    queues: Mutex<HashMap<(String, String), Arc<SlotQueue>>>,
    manifests: Mutex<HashMap<(String, String), Arc<Manifest>>>,
    tmp: PathBuf,
    background: Background,
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

    fn spawn_background(&self, f: impl Future<Output = ()> + Send + 'static) {
        let mut bg = self.background.lock().unwrap_or_else(|e| e.into_inner());
        while bg.try_join_next().is_some() {}
        bg.spawn(f);
    }
}
