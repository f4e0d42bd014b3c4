//! The management portal: pages a person opens in a browser to see and
//! manage the apps of the home, served by the management endpoint under
//! `/portal/` ([`Manage::with_portal`](super::Manage::with_portal)).
//!
//! Server-rendered HTML (minijinja templates compiled into the binary, every
//! value escaped), one small script and one style sheet served from here,
//! nothing loaded from elsewhere.
//!
//! # Security
//!
//! - Sign-in with a form: a portal account ([`Site::add_portal_user`],
//!   every app) or an app's deployment credentials (that app only), both
//!   argon2id and throttled with the endpoint's lockouts. A random 256-bit
//!   session id, kept server-side (idle and absolute expiry), in an
//!   `HttpOnly; SameSite=Strict; Path=/` cookie, `Secure` and `__Host-`
//!   under TLS. A session ends at logout, when its account is removed or
//!   its password set again.
//! - Every state-changing request to the endpoint (portal and API) whose
//!   `Sec-Fetch-Site` is not `same-origin` or `none`, or, without it, whose
//!   `Origin` is not the `Host`, is refused ([`cross_site`]).
//! - `Content-Security-Policy: default-src 'none'; script-src 'self'; ...`
//!   (no inline script or style), `nosniff`, no referrer, no framing,
//!   `Cache-Control: no-store`.
//! - Keys and app settings are masked; their values are fetched one at a
//!   time when asked for.
//!
//! [`Site::add_portal_user`]: crate::Site::add_portal_user

mod access;
mod center;
mod create;
mod files;
mod logstream;
mod pages;
mod run;
mod secrets;
mod session;
mod view;
mod workers;

pub use workers::{InstanceInfo, PlacementInfo, Scale, WorkerInfo, WorkersError, WorkersView};

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::header::{HOST, ORIGIN};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::{Next, from_fn, from_fn_with_state};
use axum::response::Response;
use axum::routing::{get, post};

use super::{Shared, text};

/// The portal's settings: [`Manage::with_portal`](super::Manage::with_portal).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Portal {
    /// Where the function host serves the apps (for functions' URLs),
    /// such as `http://127.0.0.1:7071`.
    pub functions_url: String,
    /// A session unused this long ends.
    pub session_idle: Duration,
    /// A session ends this long after sign-in, used or not.
    pub session_max: Duration,
    /// Sessions kept at once; the oldest end beyond.
    pub max_sessions: usize,
    /// Log streams open at once; 429 beyond.
    pub max_streams: usize,
    /// The endpoint's last log lines, for the Log stream page.
    log: Arc<logstream::LogRing>,
    /// The cluster, for the Workers pages ([`Portal::with_workers`]).
    workers: Option<Arc<dyn WorkersView>>,
}

impl Default for Portal {
    fn default() -> Self {
        Portal {
            functions_url: "http://127.0.0.1:7071".into(),
            session_idle: Duration::from_secs(30 * 60),
            session_max: Duration::from_secs(12 * 3600),
            max_sessions: 10_000,
            max_streams: 64,
            log: Arc::new(logstream::LogRing::new(LOG_LINES)),
            workers: None,
        }
    }
}

/// Log lines kept for the Log stream page.
const LOG_LINES: usize = 5000;

impl Portal {
    /// Sets [`Portal::functions_url`] (a trailing `/` is dropped).
    pub fn with_functions_url(mut self, url: impl Into<String>) -> Self {
        self.functions_url = url.into().trim_end_matches('/').to_string();
        self
    }

    /// Adds the Workers pages: the cluster's workers (drain, new join
    /// token) and each app slot's placement (scale), for portal accounts.
    /// fnhost-cluster's `manager::Cluster` is a [`WorkersView`].
    pub fn with_workers(mut self, workers: Arc<dyn WorkersView>) -> Self {
        self.workers = Some(workers);
        self
    }

    /// `next`, with each line also kept for the Log stream page.
    pub(super) fn log_sink(&self, next: super::LogSink) -> super::LogSink {
        logstream::tee(self.log.clone(), next)
    }

    /// Sets [`Portal::session_idle`] and [`Portal::session_max`].
    pub fn with_session_lifetime(mut self, idle: Duration, max: Duration) -> Self {
        self.session_idle = idle;
        self.session_max = max.max(idle);
        self
    }
}

/// The portal's state, shared by its handlers.
struct PortalState {
    shared: Arc<Shared>,
    config: Portal,
    sessions: session::Sessions,
    views: view::Views,
    /// Permits for open log streams.
    streams: Arc<tokio::sync::Semaphore>,
    /// Test/Run's hosts and the invocations made.
    runner: run::Runner,
    /// The functions of a deployment, by (app, deployment): a deployment
    /// never changes.
    function_lists:
        std::sync::Mutex<std::collections::HashMap<(String, String), Arc<pages::FunctionList>>>,
}

type St = Arc<PortalState>;

/// The portal's routes (none when `portal` is `None`), to merge beside the
/// app bases.
pub(super) fn routes(shared: &Arc<Shared>, portal: Option<&Portal>) -> Router {
    let Some(portal) = portal else {
        return Router::new();
    };
    let state: St = Arc::new(PortalState {
        shared: shared.clone(),
        sessions: session::Sessions::new(portal),
        config: portal.clone(),
        views: view::Views::new(),
        streams: Arc::new(tokio::sync::Semaphore::new(portal.max_streams.max(1))),
        runner: run::Runner::default(),
        function_lists: std::sync::Mutex::new(std::collections::HashMap::new()),
    });
    let slot = Router::new()
        .route("/functions", get(pages::functions))
        .route("/keys", get(secrets::keys))
        .route("/keys/value", get(secrets::key_value))
        .route("/keys/renew", post(secrets::renew_key))
        .route("/keys/revoke", post(secrets::revoke_key))
        .route(
            "/settings",
            get(secrets::settings).post(secrets::set_setting),
        )
        .route("/settings/value", get(secrets::setting_value))
        .route("/settings/delete", post(secrets::delete_setting))
        .route("/deployments", get(pages::deployments))
        .route("/deployments/rollback", post(pages::rollback))
        .route("/deployments/{id}", get(pages::deployment))
        .route("/deployments/{id}/activate", post(pages::activate))
        .route("/files", get(files::files))
        .route("/files/download", get(files::download_file))
        .route("/files/upload", post(files::upload))
        .route("/code", get(files::editor).post(files::save))
        .route("/code/run", post(run::run))
        .route("/monitor", get(run::monitor))
        .route("/new", get(create::page).post(create::create))
        .route("/center", get(center::page).post(center::connect))
        .route("/center/sync", post(center::sync))
        .route("/center/disconnect", post(center::disconnect))
        .route(
            "/center/secret",
            get(center::secret_value).post(center::new_secret),
        )
        .route("/placement", get(workers::placement).post(workers::scale))
        .route("/logstream", get(logstream::page))
        .route("/logstream/events", get(logstream::events))
        .route("/download", get(pages::download_page))
        .route("/download/content.zip", get(pages::download))
        .route(
            "/credentials",
            get(pages::credentials).post(pages::set_credentials),
        )
        .route_layer(from_fn_with_state(state.clone(), access::slot_layer));
    Router::new()
        .route("/", get(|| async { view::see_other("/portal/") }))
        .route("/portal", get(|| async { view::see_other("/portal/") }))
        .route("/portal/", get(pages::apps))
        .route("/portal/apps", post(pages::create_app))
        .route("/portal/workers", get(workers::page))
        .route("/portal/workers/drain", post(workers::drain))
        .route("/portal/workers/token", post(workers::token))
        .route("/portal/login", get(access::login_form).post(access::login))
        .route("/portal/logout", post(access::logout))
        .route("/portal/static/{file}", get(view::asset))
        .nest("/portal/apps/{app}/{slot}", slot)
        .layer(from_fn(view::security_headers))
        .with_state(state)
}

/// Refuses a state-changing request (any method but GET, HEAD, OPTIONS)
/// that a browser sent from another site: `Sec-Fetch-Site` other than
/// `same-origin` or `none`, or, from a browser without Fetch Metadata, an
/// `Origin` that is not the `Host`. Requests with neither header (curl,
/// git, CI) pass. Applied to every route of the endpoint, the API's too,
/// since a browser that once sent basic credentials sends them again.
pub(super) async fn cross_site(req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(req).await;
    }
    if let Some(why) = cross_site_reason(&req) {
        return text(StatusCode::FORBIDDEN, &why);
    }
    next.run(req).await
}

/// Why a state-changing request is refused as cross-site, if it is.
fn cross_site_reason(req: &Request) -> Option<String> {
    let headers = req.headers();
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.to_str().unwrap_or("");
        return (!matches!(site, "same-origin" | "none")).then(|| {
            format!(
                "cross-site request refused (Sec-Fetch-Site: {site}): change things from this endpoint's own pages, or from a client that is not a browser"
            )
        });
    }
    let origin = headers.get(ORIGIN)?;
    let host = headers.get(HOST).map(HeaderValue::as_bytes);
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, authority)| authority.as_bytes());
    if origin_host.is_some() && origin_host == host {
        return None;
    }
    Some(format!(
        "cross-site request refused (Origin {} is not this host): change things from this endpoint's own pages",
        origin.to_str().unwrap_or("?")
    ))
}
