//! The HTTP front: serves a [`Host`]'s HTTP triggers and admin API over
//! HTTP/1.1 (hyper), as `fnhost serve` does.
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use std::sync::Arc;
//! use fnhost_core::{FunctionApp, Host, NativeExecutor};
//! use fnhost_core::http::HttpFront;
//! use fnhost_core::invoke::http::HttpResponse;
//!
//! let app = FunctionApp::load("myapp").expect("the app folder exists");
//! let native = NativeExecutor::new().http("Hello", |_req| async { HttpResponse::text("hi") });
//! let host = Arc::new(Host::builder().native(native).build(app));
//! let server = HttpFront::new(host).bind("127.0.0.1:7071".parse().unwrap()).await?;
//! println!("listening on http://{}", server.local_addr());
//! server.serve(fnhost_core::http::shutdown_signal()).await;
//! # Ok(()) }
//! ```
//!
//! # What it answers
//!
//! - `/{routePrefix}/{route}`: the function whose route matches, in the
//!   host's *current* app version (looked up per request, so a swapped-in
//!   version serves the next request). The function gets a
//!   [`BindingData::HttpRequest`] (method, full URL, path, decoded query,
//!   headers, route values, body). The Azure host's trigger metadata
//!   (route values, `Query`, `Headers`, `sys`) is not built per request:
//!   the process and custom handler executors derive it from the request
//!   when they serialise it, and a native function can call
//!   `HttpRequest::trigger_metadata`. The response is the function's
//!   `http` output or `$return` ([`FunctionInfo::http_response`]); 204 when
//!   it gave none; 500 when the invocation failed (the body says which
//!   function failed and, for a failure the function reported, its
//!   message; panics, timeouts and executor details only go to the log) or
//!   the response is invalid; 503 with the reason when the executor could
//!   not run the function at all ([`InvokeError::Unavailable`], such as a
//!   language worker that cannot start).
//! - 404 when no route matches or the function is disabled; 405 with
//!   `Allow` when routes match the path but not the method; 501 for a
//!   method no route can have (such as `CONNECT`).
//! - Auth: `anonymous` needs nothing; `function` a key of the function, a
//!   host key or the master key; `admin` the master key. The key comes from
//!   the `x-functions-key` header or the `code` query parameter; 401
//!   without a valid one. See [`crate::keys`].
//! - `/admin/...` (master key): see [`admin`](self#admin-api).
//!
//! # Limits
//!
//! | limit | default | status |
//! | --- | --- | --- |
//! | request body ([`Limits::max_body_bytes`]) | 100 MiB | 413 |
//! | request line and headers ([`Limits::max_header_bytes`]) | 64 KiB | 431 |
//! | concurrent invocations ([`Limits::max_concurrent_requests`], else host.json `extensions.http.maxConcurrentRequests`) | unlimited | 429 at once, with `Retry-After: 1` (no queue) |
//! | reading the request head ([`Limits::header_read_timeout`]) | 30 s | the connection is closed |
//!
//! # Admin API
//!
//! Every `/admin/` path needs the master key.
//!
//! - `GET /admin/host/status`: `{"state": "Running"|"Stopping", "version":
//!   FNHOST_VERSION, "generation": N, "functions": N, "errors": N,
//!   "uptimeSeconds": N}`.
//! - `GET /admin/functions`: an array of `{"name", "trigger", "disabled",
//!   "http": {"route", "methods", "authLevel"}, "schedule": {"expression",
//!   "runOnStartup"}}` (`http` and `schedule` where they apply).
//! - `POST /admin/functions/{name}` with `{"input": VALUE}` (or an empty
//!   body): runs the function, disabled or not, with the trigger value of
//!   [`manual_invocation`]. Answers `202 Accepted` at once, like the Azure
//!   host, with the invocation id in `x-invocation-id`; the invocation runs
//!   in the background and its outcome goes to the log. With `?wait=true`
//!   it answers when the invocation is done: 200 with
//!   `{"id", "function", "result": {"Outputs", "Logs", "ReturnValue"}}`, or
//!   500 with `{"id", "function", "error"}`.
//!
//! # Shutdown
//!
//! [`Server::serve`] runs until its `shutdown` future resolves, then stops
//! accepting, lets requests in flight (and admin invocations running in
//! the background) finish up to [`Limits::shutdown_timeout`], cancels what
//! is left, and returns. It does not shut the host down: its owner calls
//! [`Host::shutdown`] after stopping everything else that uses it (the
//! timers).

mod admin;
pub mod serve;

pub use serve::Stopped;

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::binding::AuthLevel;
use crate::invoke::http::{HttpRequest, HttpResponse};
use crate::invoke::{BindingData, FunctionInfo, Host, Invocation, InvokeError};
use crate::keys::{KeyError, KeyStore};
use crate::route::{Method, RouteMatch};
use crate::timer::LogSink;

/// The header that carries a function key.
pub const KEY_HEADER: &str = "x-functions-key";
/// The query parameter that carries a function key.
pub const KEY_QUERY: &str = "code";

/// Limits on what the front accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// The largest request body (413 beyond).
    pub max_body_bytes: usize,
    /// The largest request line plus headers (431 beyond); at least 8 KiB.
    pub max_header_bytes: usize,
    /// Invocations at once (429 beyond); `None`: host.json's
    /// `extensions.http.maxConcurrentRequests`, else unlimited.
    pub max_concurrent_requests: Option<usize>,
    /// How long a connection may take to send a request head.
    pub header_read_timeout: Duration,
    /// How long shutdown waits for requests in flight.
    pub shutdown_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 100 * 1024 * 1024,
            max_header_bytes: 64 * 1024,
            max_concurrent_requests: None,
            header_read_timeout: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(30),
        }
    }
}

impl Limits {
    /// Sets [`Limits::max_body_bytes`].
    pub fn with_max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// Sets [`Limits::max_header_bytes`] (raised to 8 KiB if lower).
    pub fn with_max_header_bytes(mut self, bytes: usize) -> Self {
        self.max_header_bytes = bytes;
        self
    }

    /// Sets [`Limits::max_concurrent_requests`].
    pub fn with_max_concurrent_requests(mut self, n: usize) -> Self {
        self.max_concurrent_requests = Some(n);
        self
    }

    /// Sets [`Limits::header_read_timeout`].
    pub fn with_header_read_timeout(mut self, d: Duration) -> Self {
        self.header_read_timeout = d;
        self
    }

    /// Sets [`Limits::shutdown_timeout`].
    pub fn with_shutdown_timeout(mut self, d: Duration) -> Self {
        self.shutdown_timeout = d;
        self
    }
}

/// The HTTP front of a [`Host`]: configure it, then [`HttpFront::bind`].
pub struct HttpFront {
    host: Arc<Host>,
    keys: Option<Arc<KeyStore>>,
    limits: Limits,
    log: LogSink,
}

impl fmt::Debug for HttpFront {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpFront")
            .field("host", &self.host)
            .field("keys", &self.keys)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl HttpFront {
    /// A front for `host`, with default [`Limits`] and, unless
    /// [`HttpFront::with_keys`] is called, new keys kept in memory only
    /// (functions of `function` and `admin` level are then closed to
    /// everyone who does not ask [`Server::keys`]).
    pub fn new(host: Arc<Host>) -> Self {
        HttpFront {
            host,
            keys: None,
            limits: Limits::default(),
            log: crate::timer::tracing_log(),
        }
    }

    /// Checks keys against this store.
    pub fn with_keys(mut self, keys: Arc<KeyStore>) -> Self {
        self.keys = Some(keys);
        self
    }

    /// Sets the limits.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Sends log lines (failed invocations, function logs) to `log`. Keys
    /// are never logged.
    /// Default: [`tracing_log`](crate::timer::tracing_log), each
    /// line a `tracing` event.
    pub fn with_log(mut self, log: LogSink) -> Self {
        self.log = log;
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
        let keys = match self.keys {
            Some(k) => k,
            None => Arc::new(KeyStore::in_memory().map_err(|e| match e {
                KeyError::Io { source, .. } => source,
                other => io::Error::other(other.to_string()),
            })?),
        };
        let concurrency = self.limits.max_concurrent_requests.or_else(|| {
            self.host
                .current()
                .app()
                .host()
                .max_concurrent_requests
                .map(|n| n as usize)
        });
        let inner = Arc::new(Inner {
            host: self.host,
            keys,
            permits: concurrency.map(|n| Arc::new(Semaphore::new(n))),
            limits: self.limits,
            log: self.log,
            local_addr,
            draining: AtomicBool::new(false),
            started: Instant::now(),
            background: serve::Background::default(),
        });
        Ok(Server { listener, inner })
    }
}

/// A bound HTTP front; [`Server::serve`] runs it.
pub struct Server {
    listener: TcpListener,
    inner: Arc<Inner>,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.inner.local_addr)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// The address it listens on (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// The keys it checks.
    pub fn keys(&self) -> &Arc<KeyStore> {
        &self.inner.keys
    }

    /// Serves until `shutdown` resolves, then drains (see the
    /// [module documentation](self#shutdown)).
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Stopped {
        let Server { listener, inner } = self;
        let limits = serve::ConnectionLimits {
            max_header_bytes: inner.limits.max_header_bytes,
            header_read_timeout: inner.limits.header_read_timeout,
            shutdown_timeout: inner.limits.shutdown_timeout,
        };
        let draining = inner.clone();
        let shutdown = async move {
            shutdown.await;
            draining.draining.store(true, Ordering::Release);
        };
        let make = |_peer| {
            let inner = inner.clone();
            hyper::service::service_fn(move |req| {
                let inner = inner.clone();
                async move { Ok::<_, Infallible>(inner.handle(req).await) }
            })
        };
        serve::Serve::new(listener, limits, "http")
            .with_log(inner.log.clone())
            .with_background(inner.background.clone())
            .run(make, shutdown)
            .await
    }
}

/// Resolves on Ctrl-C, or (on Unix) SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term => {}
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await;
}

/// What every request handler shares.
struct Inner {
    host: Arc<Host>,
    keys: Arc<KeyStore>,
    permits: Option<Arc<Semaphore>>,
    limits: Limits,
    log: LogSink,
    local_addr: SocketAddr,
    draining: AtomicBool,
    started: Instant,
    background: serve::Background,
}

type Body = Full<Bytes>;

impl Inner {
    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        let path = req.uri().path();
        if path == "/admin" || path.starts_with("/admin/") {
            return admin::handle(&self, req).await;
        }
        let Some(method) = method_of(req.method()) else {
            return text(
                StatusCode::NOT_IMPLEMENTED,
                "this method is not supported by HTTP triggers",
            );
        };
        let version = self.host.current();
        let (index, params) = match version.app().router().find(method, path) {
            RouteMatch::Matched { value, params } => (*value, params),
            RouteMatch::MethodNotAllowed { allowed } => {
                let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
                let allow = allowed
                    .iter()
                    .map(Method::as_str)
                    .collect::<Vec<_>>()
                    .join(", ");
                if let Ok(v) = HeaderValue::from_str(&allow) {
                    resp.headers_mut().insert(hyper::header::ALLOW, v);
                }
                return resp;
            }
            RouteMatch::NotFound => return not_found(),
        };
        let Some(info) = version.functions().get(index) else {
            return not_found();
        };
        if info.function.disabled {
            return not_found();
        }
        let level = info
            .function
            .http
            .as_ref()
            .map_or(AuthLevel::Function, |h| h.auth_level);
        let query = req.uri().query().map(parse_query).unwrap_or_default();
        if level != AuthLevel::Anonymous
            && self
                .keys
                .authorize(level, info.name(), presented_key(&req, &query))
                .is_none()
        {
            return unauthorized();
        }
        let _permit = match self.permit() {
            Ok(p) => p,
            Err(resp) => return resp,
        };

        let (parts, body) = req.into_parts();
        let body = match self.read_body(&parts.headers, body).await {
            Ok(b) => b,
            Err(resp) => return resp,
        };
        let url = full_url(&parts, self.local_addr);
        let headers: Vec<(String, String)> = parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let params: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let request = HttpRequest {
            method,
            url,
            path: parts.uri.path().to_owned(),
            query,
            headers,
            params,
            body,
        };
        // No metadata is built here: executors that speak the protocol
        // derive it from the request (HttpRequest::trigger_metadata).
        let invocation = Invocation::new(request);
        let Some(handle) = Host::handle(version.clone(), index) else {
            return not_found();
        };
        let outcome = handle.invoke(invocation).await;
        self.respond(info, outcome, method == Method::Head)
    }

    /// A permit to run an invocation, or the 429 answer.
    #[allow(clippy::result_large_err)]
    fn permit(&self) -> Result<Option<tokio::sync::OwnedSemaphorePermit>, Response<Body>> {
        match &self.permits {
            None => Ok(None),
            Some(s) => match s.clone().try_acquire_owned() {
                Ok(p) => Ok(Some(p)),
                Err(_) => {
                    let mut resp = text(
                        StatusCode::TOO_MANY_REQUESTS,
                        "too many requests at once (extensions.http.maxConcurrentRequests): try again",
                    );
                    resp.headers_mut()
                        .insert(hyper::header::RETRY_AFTER, HeaderValue::from_static("1"));
                    Err(resp)
                }
            },
        }
    }

    /// Reads the body within the size limit, or the 413 (or 400) answer.
    #[allow(clippy::result_large_err)]
    async fn read_body(
        &self,
        headers: &hyper::HeaderMap,
        body: Incoming,
    ) -> Result<Vec<u8>, Response<Body>> {
        let limit = self.limits.max_body_bytes;
        let too_large = || {
            text(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("the request body is larger than the limit of {limit} bytes"),
            )
        };
        let declared = headers
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(too_large());
        }
        match Limited::new(body, limit).collect().await {
            Ok(collected) => Ok(collected.to_bytes().to_vec()),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
            Err(_) => Err(text(
                StatusCode::BAD_REQUEST,
                "the request body could not be read",
            )),
        }
    }

    /// The HTTP answer to an invocation's outcome.
    fn respond(
        &self,
        info: &FunctionInfo,
        outcome: Result<crate::invoke::InvocationResult, InvokeError>,
        head: bool,
    ) -> Response<Body> {
        let name = info.name();
        let result = match outcome {
            Ok(result) => result,
            Err(e) => {
                for line in e.logs() {
                    (self.log)(&format!("{name}: {line}"));
                }
                (self.log)(&format!("http: {e}"));
                // A function whose executor cannot run (a language worker
                // that cannot start) is a service that is not there, not
                // a failure of the function.
                let status = if matches!(e, InvokeError::Unavailable { .. }) {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::INTERNAL_SERVER_ERROR
                };
                return text(status, &public_message(&e));
            }
        };
        for line in &result.logs {
            (self.log)(&format!("{name}: {line}"));
        }
        match info.http_response(&result) {
            None => empty(StatusCode::NO_CONTENT),
            Some(Ok(response)) => match to_hyper(response, head) {
                Ok(r) => r,
                Err(message) => {
                    (self.log)(&format!("http: '{name}': {message}"));
                    text(StatusCode::INTERNAL_SERVER_ERROR, &message)
                }
            },
            Some(Err(invalid)) => {
                (self.log)(&format!("http: '{name}': {invalid}"));
                text(StatusCode::INTERNAL_SERVER_ERROR, &invalid.to_string())
            }
        }
    }
}

/// What a caller is told about a failed invocation: the function's own
/// error message, never the pipeline's internals.
fn public_message(e: &InvokeError) -> String {
    let f = e.function();
    match e {
        InvokeError::Failed { error, .. } => {
            format!("Function '{f}' failed: {}", error.message)
        }
        InvokeError::Timeout { .. } => format!("Function '{f}' timed out"),
        InvokeError::Panicked { .. } => format!("Function '{f}' failed"),
        InvokeError::Unavailable { error, .. } => {
            format!("Function '{f}' could not run: {}", error.message)
        }
        InvokeError::NoExecutor { .. } => format!("Function '{f}' could not run"),
        _ => format!("Function '{f}' failed"),
    }
}

/// A function's response as a hyper response. Framing headers the
/// function set (`Content-Length`, `Transfer-Encoding`, `Connection`) are
/// left out: the server frames the body itself.
fn to_hyper(r: HttpResponse, head: bool) -> Result<Response<Body>, String> {
    let status = StatusCode::from_u16(r.status).map_err(|_| {
        format!(
            "invalid HTTP response from the function: status {}",
            r.status
        )
    })?;
    let mut resp = Response::new(if head {
        Full::default()
    } else {
        Full::new(Bytes::from(r.body))
    });
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    for (k, v) in r.headers {
        let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| {
            format!("invalid HTTP response from the function: '{k}' is not a valid header name")
        })?;
        if name == hyper::header::CONTENT_LENGTH
            || name == hyper::header::TRANSFER_ENCODING
            || name == hyper::header::CONNECTION
        {
            continue;
        }
        let value = HeaderValue::from_str(&v).map_err(|_| {
            format!(
                "invalid HTTP response from the function: the value of header '{k}' is not valid"
            )
        })?;
        headers.append(name, value);
    }
    Ok(resp)
}

fn method_of(m: &hyper::Method) -> Option<Method> {
    Some(match *m {
        hyper::Method::GET => Method::Get,
        hyper::Method::POST => Method::Post,
        hyper::Method::PUT => Method::Put,
        hyper::Method::DELETE => Method::Delete,
        hyper::Method::HEAD => Method::Head,
        hyper::Method::PATCH => Method::Patch,
        hyper::Method::OPTIONS => Method::Options,
        hyper::Method::TRACE => Method::Trace,
        _ => return None,
    })
}

/// The key a request presents: the `x-functions-key` header, else the
/// `code` query parameter (any case).
fn presented_key<'a, B>(req: &'a Request<B>, query: &'a [(String, String)]) -> Option<&'a str> {
    if let Some(v) = req.headers().get(KEY_HEADER).and_then(|v| v.to_str().ok())
        && !v.is_empty()
    {
        return Some(v);
    }
    query
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(KEY_QUERY))
        .map(|(_, v)| v.as_str())
}

fn full_url(parts: &hyper::http::request::Parts, local: SocketAddr) -> String {
    let pq = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    match parts
        .headers
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
    {
        Some(host) => format!("http://{host}{pq}"),
        None => format!("http://{local}{pq}"),
    }
}

/// Decodes a query string (`a=1&b=x+y&c=%2F`), in order, as a form:
/// `+` is a space, an invalid escape stays as written, invalid UTF-8 is
/// replaced (the `form_urlencoded` crate, which the management endpoint
/// uses too).
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// An invocation of `info` started by hand (the admin API, `fnhost
/// invoke`), from a JSON input:
///
/// - HTTP triggers get a `POST` request (or the route's first method when
///   it does not allow `POST`) to the route's path as written, whose body
///   is the input: a string as is, `null` as nothing, other JSON
///   serialised (with `Content-Type: application/json`);
/// - timer triggers get the timer info (`IsPastDue: false`) when the input
///   is `null`, else the input;
/// - other triggers get the input as the trigger value.
pub fn manual_invocation(info: &FunctionInfo, input: Value) -> Invocation {
    let trigger: BindingData = if let Some(route) = &info.function.http {
        let method = if route.methods.contains(Method::Post) {
            Method::Post
        } else {
            route.methods.iter().next().unwrap_or(Method::Post)
        };
        let mut request = HttpRequest::new(method, route.path());
        match input {
            Value::Null => {}
            Value::String(s) => request.body = s.into_bytes(),
            other => {
                request.body = other.to_string().into_bytes();
                request
                    .headers
                    .push(("content-type".to_owned(), "application/json".to_owned()));
            }
        }
        request.into()
    } else if info.function.timer.is_some() && input.is_null() {
        let now = chrono::Utc::now();
        let next = info
            .function
            .timer
            .as_ref()
            .and_then(|t| t.schedule.next_after(&now));
        BindingData::Json(crate::timer::timer_info(None, next, now))
    } else {
        BindingData::Json(input)
    };
    Invocation::new(trigger)
}

fn text(status: StatusCode, message: &str) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(format!("{message}\n"))));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(value.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    resp
}

fn empty(status: StatusCode) -> Response<Body> {
    let mut resp = Response::new(Full::default());
    *resp.status_mut() = status;
    resp
}

fn not_found() -> Response<Body> {
    text(StatusCode::NOT_FOUND, "no function answers this path")
}

fn unauthorized() -> Response<Body> {
    text(
        StatusCode::UNAUTHORIZED,
        "a valid key is needed: send it in the x-functions-key header or the code query parameter",
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn queries_decode_like_forms() {
        assert_eq!(
            parse_query("a=1&b=x+y&c=%2Fz&d&&e=%zz&f=%4"),
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "x y".into()),
                ("c".into(), "/z".into()),
                ("d".into(), "".into()),
                ("e".into(), "%zz".into()),
                ("f".into(), "%4".into()),
            ]
        );
        assert_eq!(parse_query("n=%C3%A9"), vec![("n".into(), "é".into())]);
    }
}
