//! The gateway: a stateless router from clients to app instances, one
//! hop. Run one or several (`fnhost gateway`), or embedded in the
//! manager (`fnhost manage --gateway-port`).
//!
//! - **Host names as Azure**: `{app}.{domain}` is the app's production
//!   slot, `{app}-{slot}.{domain}` another slot; any domain works, so
//!   `orders.localhost` needs no DNS.
//! - **Routes and keys at the gateway**: the request is matched against
//!   the slot's HTTP functions (404 and 405 answered here) and a function
//!   key checked (`x-functions-key` or `code`; 401 here) before it goes
//!   to an instance.
//! - **Least in-flight of two random choices** among the slot's ready
//!   instances (counted here, per instance).
//! - **Retries**: a request that could not be sent (connection refused or
//!   reset before it was written) goes to another instance, and so does a
//!   `GET`, `HEAD` or `OPTIONS` whose connection failed later; at most
//!   three instances.
//! - Every response from an instance carries `X-Fnhost-Worker: NAME`.
//!
//! The route table (routes, keys, ready instances) is read from the
//! manager every [`Gateway::with_poll`] (250 ms by default) and swapped in
//! atomically.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use fnhost_core::binding::AuthLevel;
use fnhost_core::http::serve::{ConnectionLimits, Serve, Stopped};
use fnhost_core::keys::Secrets;
use fnhost_core::route::{
    Method as RouteMethod, MethodSet, RouteMatch, RouteTemplate, Router, RouterBuilder,
};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use tokio::net::TcpListener;

use crate::client::{Http, ManagerClient};
use crate::manager::Cluster;
use crate::now_ms;
use crate::protocol::{RouteTable, WORKER_HEADER};

/// Where log lines go.
pub type LogSink = Arc<dyn Fn(&str) + Send + Sync>;

type Body = BoxBody<Bytes, hyper::Error>;

/// The largest request body the gateway buffers (it keeps it to retry).
const MAX_BODY: usize = 100 * 1024 * 1024;
/// Instances tried for one request.
const MAX_TRIES: usize = 3;
/// How long an instance that refused a connection is skipped.
const COOLDOWN_MS: i64 = 2_000;

/// Where the gateway reads its route table.
#[derive(Clone)]
enum Source {
    Manager(Box<ManagerClient>),
    Cluster(Cluster),
    Fixed(Arc<RouteTable>),
}

impl Source {
    async fn table(&self) -> crate::Result<RouteTable> {
        match self {
            Source::Manager(c) => c.get("/routes", Duration::from_secs(10)).await,
            Source::Cluster(c) => c.route_table().await,
            Source::Fixed(t) => Ok((**t).clone()),
        }
    }
}

/// A gateway: configure it, then [`Gateway::bind`].
pub struct Gateway {
    source: Source,
    poll: Duration,
    log: LogSink,
}

impl fmt::Debug for Gateway {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gateway")
            .field("poll", &self.poll)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// A gateway reading routes from the manager at `url` with a join
    /// token.
    pub fn new(url: &str, token: &str) -> crate::Result<Gateway> {
        Ok(Gateway::from_client(ManagerClient::new(url, token)?))
    }

    /// A gateway reading routes through `client` (a join token's; with
    /// [`ManagerClient::with_ca_cert`] for an `https` manager signed by a
    /// private CA).
    pub fn from_client(client: ManagerClient) -> Gateway {
        Gateway::from_source(Source::Manager(Box::new(client)))
    }

    /// A gateway inside the manager's process.
    pub fn embedded(cluster: Cluster) -> Gateway {
        Gateway::from_source(Source::Cluster(cluster))
    }

    /// A gateway over a route table given once (no manager): tests,
    /// benchmarks, or instances placed by other means.
    pub fn with_table(table: RouteTable) -> Gateway {
        Gateway::from_source(Source::Fixed(Arc::new(table)))
    }

    fn from_source(source: Source) -> Gateway {
        Gateway {
            source,
            poll: Duration::from_millis(250),
            log: Arc::new(|_| {}),
        }
    }

    /// How often the route table is read.
    pub fn with_poll(mut self, every: Duration) -> Gateway {
        self.poll = every;
        self
    }

    /// Sends log lines to `log`.
    pub fn with_log(mut self, log: LogSink) -> Gateway {
        self.log = log;
        self
    }

    /// Binds the listening socket and reads the route table once.
    pub async fn bind(self, addr: SocketAddr) -> io::Result<GatewayServer> {
        let listener = TcpListener::bind(addr).await?;
        let shared = Arc::new(Shared {
            table: ArcSwap::from_pointee(Table::default()),
            backends: std::sync::Mutex::new(HashMap::new()),
            http: crate::client::http(),
            log: self.log.clone(),
        });
        match self.source.table().await {
            Ok(t) => shared.install(&t),
            Err(e) => (self.log)(&format!("gateway: cannot read routes yet: {e}")),
        }
        Ok(GatewayServer {
            local_addr: listener.local_addr()?,
            listener,
            shared,
            source: self.source,
            poll: self.poll,
        })
    }
}

/// A bound gateway; [`GatewayServer::serve`] runs it.
pub struct GatewayServer {
    listener: TcpListener,
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    source: Source,
    poll: Duration,
}

impl fmt::Debug for GatewayServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GatewayServer")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl GatewayServer {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` resolves, then lets requests in flight
    /// finish (up to 30 s).
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Stopped {
        let GatewayServer {
            listener,
            shared,
            source,
            poll,
            ..
        } = self;
        let refresher = {
            let shared = shared.clone();
            tokio::spawn(async move {
                let mut failing = false;
                loop {
                    tokio::time::sleep(poll).await;
                    match source.table().await {
                        Ok(t) => {
                            failing = false;
                            shared.install(&t);
                        }
                        Err(e) if !failing => {
                            failing = true;
                            (shared.log)(&format!(
                                "gateway: cannot read routes (serving the last ones): {e}"
                            ));
                        }
                        Err(_) => {}
                    }
                }
            })
        };
        let limits = ConnectionLimits {
            max_header_bytes: 64 * 1024,
            header_read_timeout: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(30),
        };
        let make = |peer: SocketAddr| {
            let shared = shared.clone();
            // Once a connection, not once a request.
            let forwarded = HeaderValue::from_str(&peer.ip().to_string()).ok();
            hyper::service::service_fn(move |req: Request<Incoming>| {
                let shared = shared.clone();
                let forwarded = forwarded.clone();
                async move { Ok::<_, std::convert::Infallible>(shared.handle(req, forwarded).await) }
            })
        };
        let log = shared.log.clone();
        let stopped = Serve::new(listener, limits, "gateway")
            .with_log(log)
            .run(make, shutdown)
            .await;
        refresher.abort();
        stopped
    }
}

/// An instance as the gateway counts it.
#[derive(Debug)]
struct Backend {
    worker: String,
    url: String,
    /// `X-Fnhost-Worker`'s value, made once.
    worker_header: Option<HeaderValue>,
    /// The URL's scheme and authority, parsed once (`None`: the URL is
    /// joined with each request's path as text).
    origin: Option<(hyper::http::uri::Scheme, hyper::http::uri::Authority)>,
    in_flight: AtomicU64,
    /// Skipped until then (Unix ms) after a refused connection.
    cooldown_until: AtomicI64,
}

#[derive(Default)]
struct SlotEntry {
    router: Router<usize>,
    functions: Vec<(String, AuthLevel)>,
    secrets: Option<Secrets>,
    backends: Vec<Arc<Backend>>,
}

#[derive(Default)]
struct Table {
    slots: HashMap<(String, String), SlotEntry>,
    /// The table it was built from, to skip rebuilding an unchanged one.
    source: RouteTable,
}

struct Shared {
    table: ArcSwap<Table>,
    backends: std::sync::Mutex<HashMap<String, Arc<Backend>>>,
    http: Http,
    log: LogSink,
}

fn auth_level(s: &str) -> AuthLevel {
    match s {
        "anonymous" => AuthLevel::Anonymous,
        "admin" => AuthLevel::Admin,
        _ => AuthLevel::Function,
    }
}

fn method_of(m: &hyper::Method) -> Option<RouteMethod> {
    RouteMethod::ALL
        .into_iter()
        .find(|r| r.as_str().eq_ignore_ascii_case(m.as_str()))
}

fn text(status: StatusCode, message: &str) -> Response<Body> {
    let mut resp = Response::new(
        Full::new(Bytes::from(format!("{message}\n")))
            .map_err(|never| match never {})
            .boxed(),
    );
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// A random number from a per-thread xorshift generator seeded once
/// from the system (choosing instances needs spread, not secrecy).
fn random_u64() -> u64 {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new({
            let mut seed = [0u8; 8];
            let _ = getrandom::fill(&mut seed);
            u64::from_le_bytes(seed) | 1
        });
    }
    STATE.with(|state| {
        let mut x = state.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        state.set(x);
        x
    })
}

/// Headers that belong to one connection, not forwarded.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
];

impl Shared {
    fn install(&self, t: &RouteTable) {
        let previous_instances: bool = {
            let old = self.table.load();
            if old.source == *t {
                return;
            }
            // Only in-flight figures changed: nothing to rebuild.
            let strip = |t: &RouteTable| {
                let mut t = t.clone();
                for s in &mut t.slots {
                    for i in &mut s.instances {
                        i.in_flight = 0;
                    }
                }
                t
            };
            strip(&old.source) == strip(t)
        };
        if previous_instances {
            return;
        }
        let mut backends = self.backends.lock().unwrap_or_else(|e| e.into_inner());
        let mut slots = HashMap::new();
        for s in &t.slots {
            let mut builder = RouterBuilder::new();
            let mut functions = Vec::new();
            for r in &s.routes {
                let Ok(template) = RouteTemplate::parse(&r.template) else {
                    continue;
                };
                let mut methods = MethodSet::EMPTY;
                for m in &r.methods {
                    if let Some(m) = RouteMethod::ALL
                        .into_iter()
                        .find(|x| x.as_str().eq_ignore_ascii_case(m))
                    {
                        methods.insert(m);
                    }
                }
                if builder.add(template, methods, functions.len()).is_ok() {
                    functions.push((r.function.clone(), auth_level(&r.auth)));
                }
            }
            let list = s
                .instances
                .iter()
                .map(|i| {
                    backends
                        .entry(i.url.clone())
                        .or_insert_with(|| {
                            let origin = i.url.parse::<hyper::Uri>().ok().and_then(|u| {
                                let p = u.into_parts();
                                p.scheme.zip(p.authority)
                            });
                            Arc::new(Backend {
                                worker: i.worker.clone(),
                                url: i.url.clone(),
                                worker_header: HeaderValue::from_str(&i.worker).ok(),
                                origin,
                                in_flight: AtomicU64::new(0),
                                cooldown_until: AtomicI64::new(0),
                            })
                        })
                        .clone()
                })
                .collect();
            slots.insert(
                (s.app.to_ascii_lowercase(), s.slot.to_ascii_lowercase()),
                SlotEntry {
                    router: builder.build(),
                    functions,
                    secrets: s.secrets.clone(),
                    backends: list,
                },
            );
        }
        let live: std::collections::HashSet<&str> = t
            .slots
            .iter()
            .flat_map(|s| s.instances.iter().map(|i| i.url.as_str()))
            .collect();
        backends.retain(|url, _| live.contains(url.as_str()));
        self.table.store(Arc::new(Table {
            slots,
            source: t.clone(),
        }));
    }

    /// The slot a host name addresses: `{app}` then `{app}-{slot}`.
    fn slot_for<'t>(table: &'t Table, host: &str) -> Option<(&'t (String, String), &'t SlotEntry)> {
        let name = host.rsplit_once(':').map_or(host, |(h, p)| {
            if p.chars().all(|c| c.is_ascii_digit()) {
                h
            } else {
                host
            }
        });
        let label = name.split('.').next()?.to_ascii_lowercase();
        if let Some(e) = table
            .slots
            .get_key_value(&(label.clone(), fnhost_deploy::PRODUCTION.to_string()))
        {
            return Some(e);
        }
        for (i, c) in label.char_indices().rev() {
            if c == '-'
                && let Some(e) = table
                    .slots
                    .get_key_value(&(label[..i].to_string(), label[i + 1..].to_string()))
            {
                return Some(e);
            }
        }
        None
    }

    /// Two random ready instances, the one with fewer requests in flight
    /// (those cooling down after a refused connection only when no other
    /// is left). No allocation, no system call: this runs per request.
    fn pick(entry: &SlotEntry, tried: &[usize]) -> Option<usize> {
        let now = now_ms();
        let candidates = |warm_only: bool| {
            (0..entry.backends.len()).filter(move |i| {
                !tried.contains(i)
                    && (!warm_only
                        || entry.backends[*i].cooldown_until.load(Ordering::Relaxed) <= now)
            })
        };
        let warm_only = candidates(true).next().is_some();
        match candidates(warm_only).count() {
            0 => None,
            1 => candidates(warm_only).next(),
            n => {
                let x = random_u64();
                let a = (x % n as u64) as usize;
                let mut b = ((x >> 32) % (n as u64 - 1)) as usize;
                if b >= a {
                    b += 1;
                }
                let ia = candidates(warm_only).nth(a)?;
                let ib = candidates(warm_only).nth(b)?;
                let load = |i: usize| entry.backends[i].in_flight.load(Ordering::Relaxed);
                Some(if load(ib) < load(ia) { ib } else { ia })
            }
        }
    }

    /// Routes one request; `forwarded` is the client's address as
    /// `X-Forwarded-For` gives it.
    async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        forwarded: Option<HeaderValue>,
    ) -> Response<Body> {
        let table = self.table.load_full();
        let host = req
            .headers()
            .get(hyper::header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri().authority().map(|a| a.as_str()))
            .unwrap_or("");
        let Some(((app, slot), entry)) = Shared::slot_for(&table, host) else {
            return text(
                StatusCode::NOT_FOUND,
                &format!(
                    "no app for host {host:?}: use APP.DOMAIN or APP-SLOT.DOMAIN (APP.localhost works without DNS) for an app placed with `fnhost apps scale`"
                ),
            );
        };
        let path = req.uri().path();
        if !(path == "/admin" || path.starts_with("/admin/")) {
            let Some(method) = method_of(req.method()) else {
                return text(
                    StatusCode::NOT_IMPLEMENTED,
                    "this method is not supported by HTTP triggers",
                );
            };
            let index = match entry.router.find(method, path) {
                RouteMatch::Matched { value, .. } => *value,
                RouteMatch::MethodNotAllowed { .. } => {
                    return text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
                }
                RouteMatch::NotFound => return text(StatusCode::NOT_FOUND, "not found"),
            };
            let Some((function, level)) = entry.functions.get(index) else {
                return text(StatusCode::NOT_FOUND, "not found");
            };
            if *level != AuthLevel::Anonymous {
                let query = req
                    .uri()
                    .query()
                    .map(fnhost_core::http::parse_query)
                    .unwrap_or_default();
                let presented = req
                    .headers()
                    .get(fnhost_core::http::KEY_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
                    .or_else(|| {
                        query
                            .iter()
                            .find(|(k, _)| k == fnhost_core::http::KEY_QUERY)
                            .map(|(_, v)| v.clone())
                    });
                let ok = entry
                    .secrets
                    .as_ref()
                    .and_then(|s| s.authorize(*level, function, presented.as_deref()))
                    .is_some();
                if !ok {
                    return text(
                        StatusCode::UNAUTHORIZED,
                        "a valid function key is needed (x-functions-key or code)",
                    );
                }
            }
        }
        if entry.backends.is_empty() {
            let mut resp = text(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("{app}/{slot} has no ready instance yet"),
            );
            resp.headers_mut()
                .insert(hyper::header::RETRY_AFTER, HeaderValue::from_static("1"));
            return resp;
        }
        let (parts, body) = req.into_parts();
        let body = if hyper::body::Body::is_end_stream(&body) {
            Bytes::new()
        } else {
            match Limited::new(body, MAX_BODY).collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => {
                    return text(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "the request body is too large or broke off",
                    );
                }
            }
        };
        let idempotent = matches!(
            parts.method,
            hyper::Method::GET | hyper::Method::HEAD | hyper::Method::OPTIONS
        );
        let path_and_query = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| hyper::http::uri::PathAndQuery::from_static("/"));
        let mut tried = Vec::new();
        let mut last_error = String::new();
        while tried.len() < MAX_TRIES {
            let Some(i) = Shared::pick(entry, &tried) else {
                break;
            };
            tried.push(i);
            let backend = &entry.backends[i];
            let uri = match &backend.origin {
                Some((scheme, authority)) => {
                    let mut uri = hyper::http::uri::Parts::default();
                    uri.scheme = Some(scheme.clone());
                    uri.authority = Some(authority.clone());
                    uri.path_and_query = Some(path_and_query.clone());
                    hyper::Uri::from_parts(uri).map_err(|e| e.to_string())
                }
                None => format!("{}{path_and_query}", backend.url)
                    .parse::<hyper::Uri>()
                    .map_err(|e| e.to_string()),
            };
            let Ok(uri) = uri else {
                return text(StatusCode::BAD_REQUEST, "cannot forward this request");
            };
            let mut out = Request::builder().method(parts.method.clone()).uri(uri);
            if let Some(h) = out.headers_mut() {
                h.reserve(parts.headers.len() + 1);
                for (k, v) in &parts.headers {
                    if !HOP_BY_HOP.contains(&k.as_str()) {
                        h.append(k.clone(), v.clone());
                    }
                }
                if let Some(v) = &forwarded {
                    h.append(HeaderName::from_static("x-forwarded-for"), v.clone());
                }
            }
            let Ok(out) = out.body(Full::new(body.clone())) else {
                return text(StatusCode::BAD_REQUEST, "cannot forward this request");
            };
            backend.in_flight.fetch_add(1, Ordering::Relaxed);
            let sent = self.http.request(out).await;
            match sent {
                Ok(resp) => {
                    let (mut rp, rb) = resp.into_parts();
                    if let Some(v) = &backend.worker_header {
                        rp.headers
                            .insert(HeaderName::from_static(WORKER_HEADER), v.clone());
                    }
                    let counted = Counted {
                        inner: rb,
                        backend: backend.clone(),
                        done: false,
                    };
                    return Response::from_parts(rp, counted.boxed());
                }
                Err(e) => {
                    backend.in_flight.fetch_sub(1, Ordering::Relaxed);
                    if e.is_connect() {
                        backend
                            .cooldown_until
                            .store(now_ms() + COOLDOWN_MS, Ordering::Relaxed);
                    }
                    last_error = format!("{}: {e}", backend.worker);
                    if !(e.is_connect() || idempotent) {
                        break;
                    }
                }
            }
        }
        (self.log)(&format!(
            "gateway: {app}/{slot} {}: no instance answered ({last_error})",
            parts.uri.path()
        ));
        text(
            StatusCode::BAD_GATEWAY,
            &format!("{app}/{slot}: no instance answered ({last_error})"),
        )
    }
}

/// A response body that counts its instance's request as in flight
/// until it ends.
struct Counted {
    inner: Incoming,
    backend: Arc<Backend>,
    done: bool,
}

impl Counted {
    fn finish(&mut self) {
        if !self.done {
            self.done = true;
            self.backend.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.finish();
    }
}

impl hyper::body::Body for Counted {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, hyper::Error>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        if let std::task::Poll::Ready(None) = polled {
            self.finish();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(slots: &[(&str, &str)]) -> Table {
        Table {
            slots: slots
                .iter()
                .map(|(a, s)| ((a.to_string(), s.to_string()), SlotEntry::default()))
                .collect(),
            source: RouteTable::default(),
        }
    }

    fn found(t: &Table, host: &str) -> Option<(String, String)> {
        Shared::slot_for(t, host).map(|(k, _)| k.clone())
    }

    fn backends(loads: &[u64], cooling: &[usize]) -> SlotEntry {
        let backends = loads
            .iter()
            .enumerate()
            .map(|(i, &load)| {
                Arc::new(Backend {
                    worker: format!("w{i}"),
                    url: format!("http://127.0.0.1:{}", 1000 + i),
                    worker_header: None,
                    origin: None,
                    in_flight: AtomicU64::new(load),
                    cooldown_until: AtomicI64::new(if cooling.contains(&i) { i64::MAX } else { 0 }),
                })
            })
            .collect();
        SlotEntry {
            backends,
            ..SlotEntry::default()
        }
    }

    fn picks(entry: &SlotEntry, tried: &[usize]) -> std::collections::BTreeMap<usize, usize> {
        let mut seen = std::collections::BTreeMap::new();
        for _ in 0..2000 {
            *seen
                .entry(Shared::pick(entry, tried).expect("a pick"))
                .or_default() += 1;
        }
        seen
    }

    #[test]
    fn the_less_loaded_of_two_random_instances_is_picked() {
        // The busiest of three is never the less loaded of two; the two
        // others share the requests.
        let seen = picks(&backends(&[9, 0, 0], &[]), &[]);
        assert_eq!(seen.keys().copied().collect::<Vec<_>>(), [1, 2], "{seen:?}");
        assert!(seen.values().all(|&n| n > 500), "{seen:?}");
        // Four equal ones all take some.
        let seen = picks(&backends(&[0, 0, 0, 0], &[]), &[]);
        assert_eq!(seen.len(), 4, "{seen:?}");
        // Tried ones are skipped; cooling ones only when nothing else is
        // left.
        let entry = backends(&[0, 0, 0], &[1]);
        assert_eq!(picks(&entry, &[0]).keys().copied().collect::<Vec<_>>(), [2]);
        assert_eq!(
            picks(&entry, &[0, 2]).keys().copied().collect::<Vec<_>>(),
            [1]
        );
        assert_eq!(Shared::pick(&entry, &[0, 1, 2]), None);
    }

    #[test]
    fn host_names_address_apps_and_slots_as_azure_does() {
        let t = table(&[
            ("orders", "production"),
            ("orders", "staging"),
            ("my-app", "production"),
            ("my-app", "blue"),
        ]);
        let pair = |a: &str, s: &str| Some((a.to_string(), s.to_string()));
        assert_eq!(
            found(&t, "orders.localhost:8080"),
            pair("orders", "production")
        );
        assert_eq!(
            found(&t, "Orders.example.com"),
            pair("orders", "production")
        );
        assert_eq!(
            found(&t, "orders-staging.localhost"),
            pair("orders", "staging")
        );
        assert_eq!(found(&t, "my-app.localhost"), pair("my-app", "production"));
        assert_eq!(
            found(&t, "my-app-blue.example.com:443"),
            pair("my-app", "blue")
        );
        assert_eq!(found(&t, "orders-nope.localhost"), None);
        assert_eq!(found(&t, "other.localhost"), None);
        assert_eq!(found(&t, ""), None);
    }
}
