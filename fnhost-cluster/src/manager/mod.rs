//! The management role's cluster side: the API workers and gateways call
//! (an axum [`Router`] that `fnhost manage` merges into its own), and the
//! leader loop that places instances and fires timers.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use fnhost_cluster::manager::Cluster;
//! use fnhost_deploy::{Site, manage::Manage};
//!
//! let site = Site::open(".fnhost")?;
//! let state = fnhost_cluster::state::open(".fnhost", None).await?;
//! let cluster = Cluster::new(site.clone(), state);
//! let leader = cluster.start();
//! let server = Manage::new(site)
//!     .with_router(cluster.router())
//!     .bind("127.0.0.1:7072".parse()?)
//!     .await?;
//! server.serve(std::future::pending()).await;
//! leader.stop().await;
//! # Ok(()) }
//! ```
//!
//! # API (under `/cluster/v1`, `Authorization: Bearer TOKEN`)
//!
//! | method and path | who | what |
//! | --- | --- | --- |
//! | `POST /workers` | join token | register a worker: its credential |
//! | `PUT /workers/{name}/heartbeat` | the worker | load, instances, draining |
//! | `GET /workers/{name}/assignments?since=G` | the worker | long-poll (up to 20 s) until the generation passes G |
//! | `DELETE /workers/{name}` | the worker | leave after draining |
//! | `GET /manifests/{digest}` | any | a deployment's manifest by content id |
//! | `GET /blobs/{digest}` | any | a file's content by sha256 |
//! | `POST /blobs` | any | many files: the body a JSON array of digests (at most [`MAX_BATCH`]); the answer each one's content in order, each after its length (8 bytes, big-endian) |
//! | `GET /apps/{app}/slots/{slot}/config` | any | settings and keys |
//! | `GET /apps/{app}/slots/{slot}/active` | any | the active deployment's manifest digest |
//! | `POST /apps/{app}/slots/{slot}/invocations` | a worker | records of the invocations it ran, appended to the slot's Monitor store |
//! | `GET /routes` | join token | every placed slot's routes, keys and ready instances (gateways) |
//! | `GET /workers` | join token | the registry (`fnhost workers list --manager`) |
//! | `POST /workers/{name}/drain` | join token | ask a worker to drain |

mod placement;
mod portal;
pub(crate) mod slots;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use fnhost_deploy::manage::ApiError;
use fnhost_deploy::{Digest, Site};
use tokio::sync::{Notify, watch};

pub use placement::TARGET_IN_FLIGHT;

use crate::error::{Error, Result};
use crate::protocol::{
    ActiveContent, Assignments, Endpoint, Heartbeat, HeartbeatResponse, InstanceStatus,
    InvocationBatch, RegisterRequest, RegisterResponse, RouteTable, SlotRoutes, WorkerView,
};
use crate::state::{PlacementMode, StateStore, WorkerRecord, WorkerState};
use crate::{now_ms, random_secret, sha256_hex};
use slots::Slots;

/// The lease the leader holds.
pub const LEADER_LEASE: &str = "leader";

/// Default heartbeat interval (three missed make a worker stale).
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(1);

/// How long a slot scaled by load keeps the instances its highest load of
/// the window asked for ([`Cluster::with_scale_down_window`]).
pub const DEFAULT_SCALE_DOWN_WINDOW: Duration = Duration::from_secs(30);
/// Default leader lease: a dead leader's successor takes over within it.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(10);
/// The longest an assignments long-poll is held.
const LONG_POLL: Duration = Duration::from_secs(20);

/// The cluster side of a manager: configure, then mount
/// [`Cluster::router`] and [`Cluster::start`] the leader loop.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) state: Arc<dyn StateStore>,
    pub(crate) slots: Slots,
    pub(crate) id: String,
    pub(crate) heartbeat_ms: i64,
    pub(crate) lease_ttl_ms: i64,
    /// Load-scaled slots keep the instances their highest load of this
    /// window asked for (scale-down stabilisation).
    scale_down_window_ms: i64,
    /// Each load-scaled slot's in-flight sums over the window, by time.
    load_history: std::sync::Mutex<placement::LoadHistory>,
    pub(crate) log: Arc<dyn Fn(&str) + Send + Sync>,
    changed: Notify,
    /// A worker joined, left or began draining: place now, not at the
    /// next half second.
    place_now: Notify,
    /// The manager stops: long-polls answer at once.
    closing: std::sync::atomic::AtomicBool,
    /// When this manager started (Unix ms).
    started_at: i64,
    pub(crate) http: crate::client::Http,
    /// Held while invocation records are appended (one writer at a time
    /// per store file).
    monitor: Arc<std::sync::Mutex<()>>,
}

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cluster")
            .field("id", &self.inner.id)
            .field("state", &self.inner.state.describe())
            .finish_non_exhaustive()
    }
}

/// What a handler answers.
type Answer = std::result::Result<Response, ApiError>;

/// A failure, answered as plain text.
fn fail(status: StatusCode, message: impl fmt::Display) -> ApiError {
    ApiError::new(status, message.to_string())
}

fn json_response(value: &impl serde::Serialize) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response(),
        Err(e) => fail(StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
    }
}

fn store_error(e: Error) -> ApiError {
    fail(StatusCode::SERVICE_UNAVAILABLE, e)
}

/// Runs `f` on the blocking threads; its value, or a 500 when it panicked.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> std::result::Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| fail(StatusCode::INTERNAL_SERVER_ERROR, e))
}

/// Content named by its digest: the same forever, cached as such.
fn immutable(content_type: &'static str, body: impl Into<Body>) -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        body.into(),
    )
        .into_response()
}

fn parse_digest(d: &str) -> std::result::Result<Digest, ApiError> {
    d.parse().map_err(|_| {
        fail(
            StatusCode::BAD_REQUEST,
            format!("{d} is not a sha256 digest"),
        )
    })
}

/// Who called.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Caller {
    /// A join token: gateways, operators, `fnhost fetch`.
    Join,
    /// A registered worker.
    Worker(String),
}

impl Cluster {
    /// The cluster side of the manager of `site`, its state in `state`.
    pub fn new(site: Site, state: Arc<dyn StateStore>) -> Cluster {
        let id = format!(
            "{}-{}",
            std::process::id(),
            random_secret()
                .map(|s| s[..8].to_string())
                .unwrap_or_default()
        );
        Cluster {
            inner: Arc::new(Inner {
                state,
                slots: Slots::new(site),
                id,
                heartbeat_ms: DEFAULT_HEARTBEAT.as_millis() as i64,
                lease_ttl_ms: DEFAULT_LEASE_TTL.as_millis() as i64,
                scale_down_window_ms: DEFAULT_SCALE_DOWN_WINDOW.as_millis() as i64,
                load_history: Default::default(),
                log: Arc::new(|_| {}),
                changed: Notify::new(),
                place_now: Notify::new(),
                closing: std::sync::atomic::AtomicBool::new(false),
                started_at: now_ms(),
                http: crate::client::http(),
                monitor: Arc::default(),
            }),
        }
    }

    fn inner_mut(&mut self) -> &mut Inner {
        Arc::get_mut(&mut self.inner).expect("configured before it is shared")
    }

    /// Sets the heartbeat interval workers are told to keep.
    ///
    /// # Panics
    ///
    /// After [`Cluster::router`] or [`Cluster::start`] shared it.
    pub fn with_heartbeat(mut self, every: Duration) -> Cluster {
        self.inner_mut().heartbeat_ms = every.as_millis().max(100) as i64;
        self
    }

    /// Sets the leader lease's time to live (failover within it).
    ///
    /// # Panics
    ///
    /// After [`Cluster::router`] or [`Cluster::start`] shared it.
    pub fn with_lease_ttl(mut self, ttl: Duration) -> Cluster {
        self.inner_mut().lease_ttl_ms = ttl.as_millis().max(1000) as i64;
        self
    }

    /// Sets how long a slot scaled by load (`--min N --max M`) keeps the
    /// instances its highest load of that window asked for: scaling up
    /// follows the load at once, scaling down once the load has stayed
    /// lower for the whole window, so a dip between two waves of
    /// requests does not retire an instance the next wave needs.
    ///
    /// # Panics
    ///
    /// After [`Cluster::router`] or [`Cluster::start`] shared it.
    pub fn with_scale_down_window(mut self, window: Duration) -> Cluster {
        self.inner_mut().scale_down_window_ms = window.as_millis() as i64;
        self
    }

    /// Sends log lines to `log`.
    ///
    /// # Panics
    ///
    /// After [`Cluster::router`] or [`Cluster::start`] shared it.
    pub fn with_log(mut self, log: Arc<dyn Fn(&str) + Send + Sync>) -> Cluster {
        self.inner_mut().log = log;
        self
    }

    /// This manager's id (the leader lease's holder).
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// The state store.
    pub fn state(&self) -> &Arc<dyn StateStore> {
        &self.inner.state
    }

    /// The routes of the cluster API, to merge into the management
    /// endpoint ([`fnhost_deploy::manage::Manage::with_router`]).
    pub fn router(&self) -> Router {
        let p = crate::protocol::PREFIX;
        Router::new()
            .route(&format!("{p}/workers"), post(register).get(list_workers))
            .route(
                &format!("{p}/workers/{{name}}"),
                axum::routing::delete(leave),
            )
            .route(&format!("{p}/workers/{{name}}/heartbeat"), put(heartbeat))
            .route(
                &format!("{p}/workers/{{name}}/assignments"),
                get(assignments),
            )
            .route(&format!("{p}/workers/{{name}}/drain"), post(drain))
            .route(&format!("{p}/manifests/{{digest}}"), get(manifest))
            .route(&format!("{p}/blobs/{{digest}}"), get(blob))
            .route(&format!("{p}/blobs"), post(blobs))
            .route(
                &format!("{p}/apps/{{app}}/slots/{{slot}}/config"),
                get(config),
            )
            .route(
                &format!("{p}/apps/{{app}}/slots/{{slot}}/active"),
                get(active),
            )
            .route(
                &format!("{p}/apps/{{app}}/slots/{{slot}}/invocations"),
                post(invocations),
            )
            .route(&format!("{p}/routes"), get(routes))
            .with_state(self.inner.clone())
    }

    /// Starts the leader loop on the current Tokio runtime: it takes the
    /// leader lease when free, and while it holds it places instances
    /// every half second and fires timers.
    pub fn start(&self) -> LeaderHandle {
        let (stop_tx, stop_rx) = watch::channel(false);
        let (leader_tx, leader_rx) = watch::channel(false);
        let task = tokio::spawn(leader_loop(self.inner.clone(), stop_rx, leader_tx));
        LeaderHandle {
            stop: stop_tx,
            leader: leader_rx,
            task,
        }
    }

    /// Lets the assignments long-polls answer at once (call it when the
    /// endpoint starts shutting down, so its drain does not wait for
    /// them).
    pub fn close(&self) {
        self.inner
            .closing
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.inner.changed.notify_waiters();
    }

    /// Places instances once (what the leader does every half second).
    pub async fn reconcile(&self) -> Result<()> {
        reconcile(&self.inner).await
    }

    /// The registry as `fnhost workers list` shows it.
    pub async fn workers(&self) -> Result<Vec<WorkerView>> {
        worker_views(&*self.inner.state, self.inner.heartbeat_ms).await
    }

    /// The route table gateways get.
    pub async fn route_table(&self) -> Result<RouteTable> {
        route_table(&self.inner).await
    }
}

/// The running leader loop.
#[derive(Debug)]
pub struct LeaderHandle {
    stop: watch::Sender<bool>,
    leader: watch::Receiver<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl LeaderHandle {
    /// Whether this manager leads now.
    pub fn is_leader(&self) -> bool {
        *self.leader.borrow()
    }

    /// Stops; gives the lease up so another manager takes over at once.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

async fn leader_loop(
    inner: Arc<Inner>,
    mut stop: watch::Receiver<bool>,
    leader: watch::Sender<bool>,
) {
    let mut timers = crate::timers::Dispatcher::new(inner.clone());
    let mut was_leader = false;
    let mut last_reconcile = 0i64;
    // The lease held: its token and when it was last renewed. Renewed
    // every fifth of its time to live; acted on only while that renewal
    // is younger than the time to live minus a margin, so a manager that
    // stalled (a paused process, a slow store) stops before another can
    // take over.
    let mut held: Option<(i64, i64)> = None;
    let renew_every = (inner.lease_ttl_ms / 5).max(100);
    let trust_for = inner.lease_ttl_ms - renew_every;
    loop {
        let now = now_ms();
        let fresh = held.filter(|&(_, at)| now - at < renew_every);
        let token = match fresh {
            Some((token, _)) => Some(token),
            None => match inner
                .state
                .acquire_lease(LEADER_LEASE, &inner.id, inner.lease_ttl_ms, now)
                .await
            {
                Ok(Some(t)) => {
                    held = Some((t, now));
                    Some(t)
                }
                Ok(None) => {
                    held = None;
                    None
                }
                Err(e) => {
                    (inner.log)(&format!("cluster: cannot renew the leader lease: {e}"));
                    // Still ours until it may have lapsed.
                    held.filter(|&(_, at)| now_ms() - at < trust_for)
                        .map(|(t, _)| t)
                }
            },
        };
        let leading = token.is_some();
        if leading != was_leader {
            (inner.log)(&if leading {
                format!(
                    "cluster: manager {} leads (lease token {})",
                    inner.id,
                    token.unwrap_or(0)
                )
            } else {
                format!("cluster: manager {} no longer leads", inner.id)
            });
            was_leader = leading;
            let _ = leader.send(leading);
        }
        if let Some(token) = token {
            if now - last_reconcile >= 500 {
                last_reconcile = now;
                if let Err(e) = reconcile(&inner).await {
                    (inner.log)(&format!("cluster: placement failed: {e}"));
                }
            }
            // A lease about to lapse (a stalled store) stops dispatching.
            timers.tick(token).await;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(if leading { 100 } else { 1000 })) => {}
            _ = inner.place_now.notified() => last_reconcile = 0,
            _ = async { let _ = stop.wait_for(|s| *s).await; } => break,
        }
    }
    if was_leader {
        let _ = inner.state.release_lease(LEADER_LEASE, &inner.id).await;
    }
}

impl Inner {
    /// The time to judge staleness at: now, except in the first four
    /// heartbeat intervals of this manager, when no worker is stale (0):
    /// workers whose heartbeats failed while no manager ran (a restart)
    /// are not taken for dead and their instances are not moved; a
    /// worker that is really gone is found stale after the grace.
    pub(crate) fn staleness_now(&self) -> i64 {
        let now = now_ms();
        if now - self.started_at < 4 * self.heartbeat_ms {
            0
        } else {
            now
        }
    }
}

/// The instances a worker reported at its last heartbeat.
pub(crate) fn instances_of(w: &WorkerRecord) -> Vec<InstanceStatus> {
    serde_json::from_str::<Heartbeat>(&w.status)
        .map(|h| h.instances)
        .unwrap_or_default()
}

/// Places every slot's instances and writes the assignments that changed.
async fn reconcile(inner: &Arc<Inner>) -> Result<()> {
    let now = inner.staleness_now();
    let workers: Vec<WorkerRecord> = inner
        .state
        .workers()
        .await?
        .into_iter()
        .filter(|w| w.state != WorkerState::Gone)
        .collect();
    let eligible: BTreeSet<String> = workers
        .iter()
        .filter(|w| w.takes_work(now, inner.heartbeat_ms))
        .map(|w| w.name.clone())
        .collect();
    let mut targets = Vec::new();
    // The load-scaled slots placed now: the load history keeps only them.
    let mut scaled_by_load = BTreeSet::new();
    for p in inner.state.placements().await? {
        let info = match inner.slots.info(&p.app, &p.slot) {
            Ok(Some(i)) => i,
            Ok(None) => continue,
            Err(e) => {
                (inner.log)(&format!("cluster: {}/{}: {e}", p.app, p.slot));
                // Not known to be gone: its history stays.
                if p.mode == PlacementMode::Auto {
                    scaled_by_load.insert((p.app.clone(), p.slot.clone()));
                }
                continue;
            }
        };
        let now_in_flight = workers
            .iter()
            .flat_map(instances_of)
            .filter(|i| i.app == p.app && i.slot == p.slot)
            .map(|i| i.in_flight)
            .sum();
        let in_flight = if p.mode == PlacementMode::Auto {
            scaled_by_load.insert((p.app.clone(), p.slot.clone()));
            inner
                .load_history
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .peak(
                    &p.app,
                    &p.slot,
                    now_ms(),
                    now_in_flight,
                    inner.scale_down_window_ms,
                )
        } else {
            now_in_flight
        };
        targets.push(placement::Target {
            deployment: info.deployment.clone(),
            manifest: info.manifest.clone(),
            settings_version: info.config.version.clone(),
            in_flight,
            placement: p,
        });
    }
    inner
        .load_history
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(&scaled_by_load);
    let current = inner.state.assignments().await?;
    let wanted = placement::place(&workers, &eligible, &targets, &current);
    let mut changed = false;
    for (worker, list) in wanted {
        let before: Vec<_> = current.iter().filter(|a| a.worker == worker).collect();
        let mut a: Vec<_> = before.into_iter().cloned().collect();
        let mut b = list.clone();
        a.sort();
        b.sort();
        if a != b {
            inner.state.set_assignments(&worker, &list).await?;
            changed = true;
        }
    }
    if changed {
        inner.changed.notify_waiters();
    }
    Ok(())
}

/// Checks the bearer token.
async fn authorize(inner: &Inner, headers: &HeaderMap) -> std::result::Result<Caller, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or("");
    let refuse = || {
        fail(
            StatusCode::UNAUTHORIZED,
            "a valid token is needed: a join token from `fnhost workers token`, or a worker's credential",
        )
    };
    if token.is_empty() {
        return Err(refuse());
    }
    if let Some((name, secret)) = token.split_once('.') {
        let w = inner.state.worker(name).await.map_err(store_error)?;
        if let Some(w) = w
            && crate::worker::constant_eq(&sha256_hex(secret.as_bytes()), &w.credential_hash)
        {
            return Ok(Caller::Worker(w.name));
        }
        return Err(refuse());
    }
    let hash = sha256_hex(token.as_bytes());
    let hashes = inner.state.join_token_hashes().await.map_err(store_error)?;
    let mut ok = false;
    for h in &hashes {
        ok |= crate::worker::constant_eq(h, &hash);
    }
    if ok { Ok(Caller::Join) } else { Err(refuse()) }
}

/// A caller that is the worker `name` itself.
async fn authorize_worker(
    inner: &Inner,
    headers: &HeaderMap,
    name: &str,
) -> std::result::Result<(), ApiError> {
    match authorize(inner, headers).await? {
        Caller::Worker(w) if w == name => Ok(()),
        _ => Err(fail(
            StatusCode::FORBIDDEN,
            format!("only worker {name} itself, with its credential, may do this"),
        )),
    }
}

/// A caller with a join token.
async fn authorize_join(inner: &Inner, headers: &HeaderMap) -> std::result::Result<(), ApiError> {
    match authorize(inner, headers).await? {
        Caller::Join => Ok(()),
        Caller::Worker(_) => Err(fail(
            StatusCode::FORBIDDEN,
            "this needs a join token (`fnhost workers token`), not a worker's credential",
        )),
    }
}

fn check_worker_name(name: &str) -> std::result::Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(fail(
            StatusCode::BAD_REQUEST,
            format!("worker name {name:?}: use 1 to 63 ASCII letters, digits, '-' or '_'"),
        ))
    }
}

/// A worker the state store does not know (any more): it has to register again.
fn unregistered(name: &str) -> ApiError {
    fail(
        StatusCode::NOT_FOUND,
        format!("no worker {name}: register again"),
    )
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> std::result::Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| fail(StatusCode::BAD_REQUEST, format!("bad JSON: {e}")))
}

async fn register(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Answer {
    authorize_join(&inner, &headers).await?;
    let req: RegisterRequest = parse_json(&body)?;
    check_worker_name(&req.name)?;
    let secret = random_secret().map_err(store_error)?;
    let now = now_ms();
    let record = WorkerRecord {
        name: req.name.clone(),
        credential_hash: sha256_hex(secret.as_bytes()),
        labels: req.labels,
        capacity: req.capacity.max(1),
        state: WorkerState::Joining,
        drain_requested: false,
        status: "{}".into(),
        last_heartbeat: now,
        registered_at: now,
        generation: 0,
    };
    inner
        .state
        .register_worker(&record)
        .await
        .map_err(store_error)?;
    (inner.log)(&format!("cluster: worker {} joined", req.name));
    inner.place_now.notify_one();
    Ok(json_response(&RegisterResponse {
        credential: format!("{}.{secret}", req.name),
        heartbeat_ms: inner.heartbeat_ms,
    }))
}

async fn heartbeat(
    State(inner): State<Arc<Inner>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    authorize_worker(&inner, &headers, &name).await?;
    let hb: Heartbeat = parse_json(&body)?;
    let state = if hb.draining {
        WorkerState::Draining
    } else {
        WorkerState::Ready
    };
    let status = String::from_utf8_lossy(&body).into_owned();
    if hb.draining {
        inner.place_now.notify_one();
    }
    let record = inner
        .state
        .heartbeat(&name, state, &status, now_ms())
        .await
        .map_err(store_error)?
        .ok_or_else(|| unregistered(&name))?;
    Ok(json_response(&HeartbeatResponse {
        drain: record.drain_requested,
        generation: record.generation,
    }))
}

/// Appends a worker's invocation records to the slot's Monitor store.
async fn invocations(
    State(inner): State<Arc<Inner>>,
    Path((app, slot)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let worker = match authorize(&inner, &headers).await? {
        Caller::Worker(w) => w,
        Caller::Join => {
            return Err(fail(
                StatusCode::FORBIDDEN,
                "only a worker, with its credential, sends invocation records",
            ));
        }
    };
    let mut batch: InvocationBatch = parse_json(&body)?;
    if batch.records.len() > InvocationBatch::MAX {
        return Err(fail(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "{} records in one batch: send at most {}",
                batch.records.len(),
                InvocationBatch::MAX
            ),
        ));
    }
    let site = inner.slots.site();
    let known = site.slots(&app).is_ok_and(|s| s.contains(&slot));
    let log = site
        .invocation_log(&app, &slot)
        .ok()
        .filter(|_| known)
        .ok_or_else(|| fail(StatusCode::NOT_FOUND, format!("no app slot {app}/{slot}")))?;
    for r in &mut batch.records {
        r.worker = Some(worker.clone());
    }
    let count = batch.records.len();
    let lock = inner.monitor.clone();
    blocking(move || {
        let _one = lock.lock().unwrap_or_else(|e| e.into_inner());
        log.append(&batch.records)
    })
    .await?
    .map_err(|e| fail(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    Ok(json_response(&serde_json::json!({ "appended": count })))
}

async fn leave(
    State(inner): State<Arc<Inner>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Answer {
    authorize_worker(&inner, &headers, &name).await?;
    inner
        .state
        .remove_worker(&name)
        .await
        .map_err(store_error)?;
    (inner.log)(&format!("cluster: worker {name} left"));
    inner.changed.notify_waiters();
    inner.place_now.notify_one();
    Ok(json_response(&serde_json::json!({"left": name})))
}

fn query_param(query: &Option<String>, name: &str) -> Option<String> {
    let q = query.as_deref()?;
    form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

async fn assignments(
    State(inner): State<Arc<Inner>>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Answer {
    authorize_worker(&inner, &headers, &name).await?;
    let since: i64 = query_param(&query, "since")
        .and_then(|s| s.parse().ok())
        .unwrap_or(-1);
    let until = tokio::time::Instant::now() + LONG_POLL;
    loop {
        let notified = inner.changed.notified();
        let w = inner
            .state
            .worker(&name)
            .await
            .map_err(store_error)?
            .ok_or_else(|| unregistered(&name))?;
        let closing = inner.closing.load(std::sync::atomic::Ordering::SeqCst);
        if w.generation > since || closing || tokio::time::Instant::now() >= until {
            let list = inner
                .state
                .assignments()
                .await
                .map_err(store_error)?
                .into_iter()
                .filter(|a| a.worker == name)
                .collect();
            return Ok(json_response(&Assignments {
                generation: w.generation,
                assignments: list,
            }));
        }
        // Another manager may have written them: look again soon.
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
}

async fn drain(
    State(inner): State<Arc<Inner>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Answer {
    authorize_join(&inner, &headers).await?;
    if !inner
        .state
        .request_drain(&name)
        .await
        .map_err(store_error)?
    {
        return Err(fail(StatusCode::NOT_FOUND, format!("no worker {name}")));
    }
    (inner.log)(&format!("cluster: worker {name} asked to drain"));
    Ok(json_response(&serde_json::json!({"draining": name})))
}

async fn manifest(
    State(inner): State<Arc<Inner>>,
    Path(digest): Path<String>,
    headers: HeaderMap,
) -> Answer {
    authorize(&inner, &headers).await?;
    let inner2 = inner.clone();
    let d = digest.clone();
    let found = blocking(move || inner2.slots.manifest_json(&d))
        .await?
        .map_err(store_error)?;
    match found {
        Some(body) => Ok(immutable("application/json", body)),
        None => Err(fail(
            StatusCode::NOT_FOUND,
            format!("no deployment has the manifest {digest}"),
        )),
    }
}

async fn blob(
    State(inner): State<Arc<Inner>>,
    Path(digest): Path<String>,
    headers: HeaderMap,
) -> Answer {
    authorize(&inner, &headers).await?;
    let d = parse_digest(&digest)?;
    let store = inner.slots.site().store().clone();
    let data = blocking(move || {
        let mut r = store.open(&d)?;
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut r, &mut buf)?;
        Ok::<_, std::io::Error>(buf)
    })
    .await?
    .map_err(|e| fail(StatusCode::NOT_FOUND, format!("no blob {digest}: {e}")))?;
    Ok(immutable("application/octet-stream", data))
}

/// The most blobs one `POST /blobs` asks for.
pub const MAX_BATCH: usize = 1024;

async fn blobs(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Answer {
    authorize(&inner, &headers).await?;
    let wanted: Vec<String> = parse_json(&body)?;
    if wanted.len() > MAX_BATCH {
        return Err(fail(
            StatusCode::BAD_REQUEST,
            format!("{} blobs asked at once; at most {MAX_BATCH}", wanted.len()),
        ));
    }
    let digests = wanted
        .iter()
        .map(|d| parse_digest(d))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let store = inner.slots.site().store().clone();
    let data = blocking(move || {
        let mut out = Vec::new();
        for d in &digests {
            let mut r = store
                .open(d)
                .map_err(|e| fail(StatusCode::NOT_FOUND, format!("no blob {d}: {e}")))?;
            let at = out.len();
            out.extend_from_slice(&[0u8; 8]);
            let n = std::io::Read::read_to_end(&mut r, &mut out)
                .map_err(|e| fail(StatusCode::INTERNAL_SERVER_ERROR, format!("blob {d}: {e}")))?;
            out[at..at + 8].copy_from_slice(&(n as u64).to_be_bytes());
        }
        Ok::<_, ApiError>(out)
    })
    .await??;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/octet-stream")],
        Body::from(data),
    )
        .into_response())
}

async fn slot_info(
    inner: &Arc<Inner>,
    app: &str,
    slot: &str,
) -> std::result::Result<Arc<slots::SlotInfo>, ApiError> {
    let (inner2, a, s) = (inner.clone(), app.to_string(), slot.to_string());
    blocking(move || inner2.slots.info(&a, &s))
        .await?
        .map_err(|e| match e {
            Error::Deploy(e) => fail(StatusCode::NOT_FOUND, e),
            e => fail(StatusCode::INTERNAL_SERVER_ERROR, e),
        })?
        .ok_or_else(|| {
            fail(
                StatusCode::NOT_FOUND,
                format!("{app}/{slot} has no active deployment"),
            )
        })
}

async fn config(
    State(inner): State<Arc<Inner>>,
    Path((app, slot)): Path<(String, String)>,
    headers: HeaderMap,
) -> Answer {
    authorize(&inner, &headers).await?;
    let info = slot_info(&inner, &app, &slot).await?;
    Ok(json_response(&info.config))
}

async fn active(
    State(inner): State<Arc<Inner>>,
    Path((app, slot)): Path<(String, String)>,
    headers: HeaderMap,
) -> Answer {
    authorize(&inner, &headers).await?;
    let info = slot_info(&inner, &app, &slot).await?;
    Ok(json_response(&ActiveContent {
        deployment: info.deployment.clone(),
        manifest: info.manifest.clone(),
    }))
}

async fn routes(State(inner): State<Arc<Inner>>, headers: HeaderMap) -> Answer {
    authorize_join(&inner, &headers).await?;
    let table = route_table(&inner).await.map_err(store_error)?;
    Ok(json_response(&table))
}

async fn list_workers(State(inner): State<Arc<Inner>>, headers: HeaderMap) -> Answer {
    authorize_join(&inner, &headers).await?;
    let views = worker_views(&*inner.state, inner.heartbeat_ms)
        .await
        .map_err(store_error)?;
    Ok(json_response(&views))
}

/// The ready instances of every worker that serves: not stale, not
/// draining.
pub(crate) fn ready_instances(
    workers: &[WorkerRecord],
    now: i64,
    heartbeat_ms: i64,
) -> Vec<(String, InstanceStatus)> {
    workers
        .iter()
        .filter(|w| w.effective_state(now, heartbeat_ms) == WorkerState::Ready)
        .flat_map(|w| {
            instances_of(w)
                .into_iter()
                .filter(|i| i.ready)
                .map(|i| (w.name.clone(), i))
        })
        .collect()
}

async fn route_table(inner: &Arc<Inner>) -> Result<RouteTable> {
    let workers = inner.state.workers().await?;
    let ready = ready_instances(&workers, inner.staleness_now(), inner.heartbeat_ms);
    let mut slots = Vec::new();
    for p in inner.state.placements().await? {
        let (inner2, a, s) = (inner.clone(), p.app.clone(), p.slot.clone());
        let info = tokio::task::spawn_blocking(move || inner2.slots.info(&a, &s))
            .await
            .map_err(|e| Error::Invalid(e.to_string()))?;
        let Ok(Some(info)) = info else { continue };
        slots.push(SlotRoutes {
            instances: ready
                .iter()
                .filter(|(_, i)| i.app == p.app && i.slot == p.slot)
                .map(|(w, i)| Endpoint {
                    worker: w.clone(),
                    url: i.endpoint.clone(),
                    in_flight: i.in_flight,
                })
                .collect(),
            app: p.app,
            slot: p.slot,
            routes: info.routes.clone(),
            secrets: info.config.secrets.clone(),
        });
    }
    Ok(RouteTable { slots })
}

/// A worker's state as people see it: ready but asked to drain is
/// draining.
fn shown_state(w: &WorkerRecord, now: i64, heartbeat_ms: i64) -> WorkerState {
    let state = w.effective_state(now, heartbeat_ms);
    if w.drain_requested && state == WorkerState::Ready {
        WorkerState::Draining
    } else {
        state
    }
}

async fn worker_views(state: &dyn StateStore, heartbeat_ms: i64) -> Result<Vec<WorkerView>> {
    let now = now_ms();
    let assignments = state.assignments().await?;
    Ok(state
        .workers()
        .await?
        .into_iter()
        .map(|w| {
            let state = shown_state(&w, now, heartbeat_ms);
            let mut apps: BTreeMap<String, ()> = BTreeMap::new();
            for a in assignments.iter().filter(|a| a.worker == w.name) {
                let name = if a.slot == fnhost_deploy::PRODUCTION {
                    a.app.clone()
                } else {
                    format!("{}/{}", a.app, a.slot)
                };
                apps.insert(name, ());
            }
            WorkerView {
                in_flight: instances_of(&w).iter().map(|i| i.in_flight).sum(),
                last_heartbeat_ms_ago: now - w.last_heartbeat,
                state: state.to_string(),
                labels: w.labels.clone(),
                capacity: w.capacity,
                apps: apps.into_keys().collect(),
                name: w.name,
            }
        })
        .collect())
}

/// The registry read from a state store directly (no manager running):
/// what `fnhost workers list` shows on the manager's machine.
pub async fn worker_views_from(
    state: &dyn StateStore,
    heartbeat: Duration,
) -> Result<Vec<WorkerView>> {
    worker_views(state, heartbeat.as_millis() as i64).await
}
