//! The worker role: registers with a manager, heartbeats, pulls its
//! assignments (a long-poll: works from behind NAT, the manager never
//! calls in), fetches missing content by digest into a [`ContentCache`]
//! shared by every app and version, and runs each assigned app slot with
//! the engine `fnhost serve` runs (the default executors: custom
//! handlers, one-shot processes, language workers) behind its own HTTP
//! front. A new deployment, rollback or swap of an assigned slot is a hot
//! swap of the running host: requests in flight finish on the old
//! version, new ones go to the new one.
//!
//! Every invocation an instance runs is recorded (time, function, id,
//! success, status, duration; never a body) and sent to the manager in
//! batches every half second, off the request path and bounded, for the
//! portal's Monitor page (see [`fnhost_deploy::monitor`]).
//!
//! Draining (SIGTERM, or `fnhost workers drain NAME`): the worker says so
//! in an immediate heartbeat and marks its instances not ready (gateways
//! stop sending), keeps serving for [`Worker::with_drain_delay`] while
//! that spreads, then stops each instance after its requests in flight
//! finish, and leaves the registry.
//!
//! ```no_run
//! # async fn run() -> Result<(), fnhost_cluster::Error> {
//! use fnhost_cluster::worker::Worker;
//!
//! Worker::new("http://127.0.0.1:7072", "TOKEN")
//!     .with_name("w1")
//!     .with_cache(".fnhost-worker")
//!     .run(fnhost_core::http::shutdown_signal())
//!     .await
//! # }
//! ```

mod cache;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fnhost_core::http::{HttpFront, Limits};
use fnhost_core::invoke::{Middleware, middleware_fn};
use fnhost_core::keys::{KeyStore, Secrets};
use fnhost_core::{FunctionApp, Host};
use fnhost_deploy::monitor::{InvocationRecord, Recorder};
use hyper::Method;
use tokio::sync::{oneshot, watch};

pub use cache::ContentCache;

use crate::client::ManagerClient;
use crate::error::{Error, Result};
use crate::protocol::{
    Assignments, Heartbeat, HeartbeatResponse, InstanceStatus, InvocationBatch, RegisterRequest,
    RegisterResponse, SlotConfig,
};
use crate::state::Assignment;

/// Invocation records an instance keeps while the manager cannot take
/// them; beyond, the oldest are dropped.
const RECORDS_PENDING: usize = 8192;
/// How often an instance's invocation records go to the manager.
const RECORDS_EVERY: Duration = Duration::from_millis(500);
/// Once a draining worker's instances have stopped, how long it gives
/// the manager, all told, to take their last invocation records and
/// then its leaving: both are best effort (a worker that does not leave
/// is found stale), so a manager that does not answer holds the exit no
/// longer than this.
const LEAVE_WITHIN: Duration = Duration::from_secs(5);

/// Where log lines go.
pub type LogSink = Arc<dyn Fn(&str) + Send + Sync>;

/// Compares two strings in constant time (tokens, hashes).
pub(crate) fn constant_eq(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq as _;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// A worker: configure it, then [`Worker::run`].
pub struct Worker {
    manager: String,
    token: String,
    name: String,
    host: IpAddr,
    port: u16,
    labels: BTreeMap<String, String>,
    capacity: i64,
    cache: PathBuf,
    drain_delay: Duration,
    drain_deadline: Duration,
    ca_cert: Option<PathBuf>,
    log: LogSink,
}

impl fmt::Debug for Worker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Worker")
            .field("manager", &self.manager)
            .field("name", &self.name)
            .field("port", &self.port)
            .field("labels", &self.labels)
            .field("capacity", &self.capacity)
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

/// The machine's name, for a worker given none.
fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "worker".into())
}

impl Worker {
    /// A worker of the manager at `manager` (`http://host:port` or
    /// `https://host:port`), joining
    /// with `token` (from `fnhost workers token`).
    pub fn new(manager: impl Into<String>, token: impl Into<String>) -> Worker {
        Worker {
            manager: manager.into(),
            token: token.into(),
            name: hostname(),
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 0,
            labels: BTreeMap::new(),
            capacity: 16,
            cache: PathBuf::from(".fnhost-worker"),
            drain_delay: Duration::from_secs(2),
            drain_deadline: Duration::from_secs(30),
            ca_cert: None,
            log: Arc::new(|_| {}),
        }
    }

    /// Its name in the cluster (default: the host name).
    pub fn with_name(mut self, name: impl Into<String>) -> Worker {
        self.name = name.into();
        self
    }

    /// The address its instances listen on (default 127.0.0.1); the
    /// address gateways reach them at.
    pub fn with_host(mut self, host: IpAddr) -> Worker {
        self.host = host;
        self
    }

    /// The first port its instances listen on, the next ones after it
    /// (default 0: any free port).
    pub fn with_port(mut self, port: u16) -> Worker {
        self.port = port;
        self
    }

    /// Its labels (placement constraints: `fnhost apps scale --labels`).
    pub fn with_labels(mut self, labels: BTreeMap<String, String>) -> Worker {
        self.labels = labels;
        self
    }

    /// The most app instances it runs (default 16).
    pub fn with_capacity(mut self, capacity: i64) -> Worker {
        self.capacity = capacity.max(1);
        self
    }

    /// The content cache folder (default `.fnhost-worker`).
    pub fn with_cache(mut self, dir: impl Into<PathBuf>) -> Worker {
        self.cache = dir.into();
        self
    }

    /// How long a draining instance keeps serving after saying so, while
    /// gateways learn it (default 2 s).
    pub fn with_drain_delay(mut self, delay: Duration) -> Worker {
        self.drain_delay = delay;
        self
    }

    /// The longest a draining instance waits for requests in flight
    /// (default 30 s).
    pub fn with_drain_deadline(mut self, deadline: Duration) -> Worker {
        self.drain_deadline = deadline;
        self
    }

    /// Trusts the certificates in this PEM file (a private CA, or the
    /// manager's self-signed certificate) for an `https://` manager,
    /// besides the system's roots.
    pub fn with_ca_cert(mut self, file: impl Into<PathBuf>) -> Worker {
        self.ca_cert = Some(file.into());
        self
    }

    /// Sends log lines to `log`.
    pub fn with_log(mut self, log: LogSink) -> Worker {
        self.log = log;
        self
    }

    /// Runs until `shutdown` resolves or the manager asks it to drain;
    /// then drains and leaves. `shutdown` is watched from the start: if
    /// it resolves while the worker registers, it stops there (it has
    /// nothing to drain) and returns `Ok`. The future is `Send`: spawn
    /// it.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<()> {
        let started = Instant::now();
        tokio::pin!(shutdown);
        let cache = ContentCache::open(&self.cache)?;
        let mut joiner = ManagerClient::new(&self.manager, self.token.clone())?;
        if let Some(ca) = &self.ca_cert {
            joiner = joiner.with_ca_cert(ca)?;
        }
        let (client, heartbeat_ms) = tokio::select! {
            joined = register(&joiner, &self) => joined?,
            _ = &mut shutdown => {
                (self.log)(&format!(
                    "worker {} stopped before it joined {}",
                    self.name, self.manager
                ));
                return Ok(());
            }
        };
        (self.log)(&format!(
            "worker {} joined {} (heartbeat every {heartbeat_ms} ms)",
            self.name, self.manager
        ));
        let rt = Arc::new(Runtime {
            worker: self,
            cache,
            client: Mutex::new(client),
            joiner,
            instances: Mutex::new(BTreeMap::new()),
            draining: AtomicBool::new(false),
            started,
        });
        let (drain_tx, mut drain_rx) = watch::channel(false);
        let beats = tokio::spawn(heartbeats(rt.clone(), heartbeat_ms, drain_tx.clone()));
        let mut generation = -1i64;
        let mut unreachable = false;
        loop {
            let client = rt.client();
            let path = format!("/workers/{}/assignments?since={generation}", rt.worker.name);
            tokio::select! {
                got = client.get::<Assignments>(&path, Duration::from_secs(40)) => match got {
                    Ok(a) => {
                        if std::mem::take(&mut unreachable) {
                            (rt.worker.log)("worker: the manager answers again");
                        }
                        generation = a.generation;
                        if !rt.apply(a.assignments).await {
                            // Something failed: ask again soon.
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            generation = -1;
                        }
                    }
                    Err(e) => {
                        // Once per outage; the instances keep serving.
                        if !std::mem::replace(&mut unreachable, true) {
                            (rt.worker.log)(&format!(
                                "worker: cannot get assignments (retrying every second; the instances keep serving): {e}"
                            ));
                        }
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                },
                _ = &mut shutdown => break,
                _ = async { let _ = drain_rx.wait_for(|d| *d).await; } => break,
            }
        }
        let leave_by = rt.drain().await;
        beats.abort();
        let client = rt.client();
        let left: Result<serde_json::Value> = client
            .send(
                Method::DELETE,
                &format!("/workers/{}", rt.worker.name),
                &serde_json::json!({}),
                leave_by
                    .saturating_duration_since(tokio::time::Instant::now())
                    .max(Duration::from_secs(1)),
            )
            .await;
        match left {
            Ok(_) => (rt.worker.log)(&format!("worker {} drained and left", rt.worker.name)),
            Err(e) => (rt.worker.log)(&format!(
                "worker {} drained; it could not leave the registry (the manager finds it stale after three heartbeats): {e}",
                rt.worker.name
            )),
        }
        Ok(())
    }
}

async fn register(joiner: &ManagerClient, w: &Worker) -> Result<(ManagerClient, i64)> {
    let req = RegisterRequest::new(w.name.clone(), w.labels.clone(), w.capacity);
    let resp: RegisterResponse = joiner
        .send(Method::POST, "/workers", &req, Duration::from_secs(30))
        .await?;
    Ok((
        joiner.clone().with_token(resp.credential),
        resp.heartbeat_ms,
    ))
}

/// Takes one off an instance's count of invocations in flight when an
/// invocation ends, also when it is cancelled.
struct Ended(Arc<AtomicU64>);

impl Drop for Ended {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A middleware that counts the invocations in flight in `count`.
fn counting(count: Arc<AtomicU64>) -> Arc<dyn Middleware> {
    Arc::new(middleware_fn(move |_, invocation, next| {
        count.fetch_add(1, Ordering::Relaxed);
        let ended = Ended(count.clone());
        Box::pin(async move {
            let _ended = ended;
            next.run(invocation).await
        })
    }))
}

/// One running app slot.
struct Instance {
    assignment: Assignment,
    endpoint: String,
    host: Arc<Host>,
    /// Invocations in flight (HTTP requests and timer runs, every
    /// version): the load its heartbeat reports.
    in_flight: Arc<AtomicU64>,
    ready: Arc<AtomicBool>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    /// Sends its invocation records to the manager; ends after the host
    /// (and its recorder) is gone.
    records: Option<tokio::task::JoinHandle<()>>,
}

impl Instance {
    fn status(&self) -> InstanceStatus {
        let in_flight = self.in_flight.load(Ordering::Relaxed);
        InstanceStatus {
            app: self.assignment.app.clone(),
            slot: self.assignment.slot.clone(),
            deployment: self.assignment.deployment.clone(),
            manifest: self.assignment.manifest.clone(),
            endpoint: self.endpoint.clone(),
            ready: self.ready.load(Ordering::SeqCst),
            in_flight,
        }
    }

    /// Stops taking work, waits `delay` (gateways learn it), then stops
    /// serving once requests in flight finish; waits at most 5 s more
    /// for its last invocation records to reach the manager.
    async fn retire(self, delay: Duration) {
        if let Some(records) = self.stop_serving(delay).await {
            let _ = tokio::time::timeout(Duration::from_secs(5), records).await;
        }
    }

    /// [`Instance::retire`] up to its last records: returns the task
    /// that sends them (it ends once they are sent).
    async fn stop_serving(mut self, delay: Duration) -> Option<tokio::task::JoinHandle<()>> {
        self.ready.store(false, Ordering::SeqCst);
        tokio::time::sleep(delay).await;
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        // The host goes, its recorder with it: the last records are sent.
        self.records.take()
    }
}

struct Runtime {
    worker: Worker,
    cache: ContentCache,
    client: Mutex<ManagerClient>,
    joiner: ManagerClient,
    instances: Mutex<BTreeMap<(String, String), Instance>>,
    draining: AtomicBool,
    started: Instant,
}

impl Runtime {
    fn client(&self) -> ManagerClient {
        self.client
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(String, String), Instance>> {
        self.instances.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn heartbeat(&self) -> Heartbeat {
        let draining = self.draining.load(Ordering::SeqCst);
        Heartbeat {
            draining,
            instances: self.lock().values().map(Instance::status).collect(),
        }
    }

    /// Brings the instances to `wanted`; false when one failed.
    async fn apply(self: &Arc<Self>, wanted: Vec<Assignment>) -> bool {
        if self.draining.load(Ordering::SeqCst) {
            return true;
        }
        let keys: BTreeSet<(String, String)> = wanted
            .iter()
            .map(|a| (a.app.clone(), a.slot.clone()))
            .collect();
        let removed: Vec<Instance> = {
            let mut map = self.lock();
            let gone: Vec<_> = map.keys().filter(|k| !keys.contains(*k)).cloned().collect();
            gone.iter().filter_map(|k| map.remove(k)).collect()
        };
        for inst in removed {
            (self.worker.log)(&format!(
                "worker: stopping {}/{} (no longer assigned here)",
                inst.assignment.app, inst.assignment.slot
            ));
            tokio::spawn(inst.retire(self.worker.drain_delay));
        }
        let mut ok = true;
        for a in wanted {
            let same = self.lock().get(&(a.app.clone(), a.slot.clone())).map(|i| {
                i.assignment.deployment == a.deployment
                    && i.assignment.manifest == a.manifest
                    && i.assignment.settings_version == a.settings_version
            });
            if same == Some(true) {
                continue;
            }
            if let Err(e) = self.run_assignment(&a, same.is_some()).await {
                (self.worker.log)(&format!(
                    "worker: error: cannot run {}/{} deployment {}: {e}",
                    a.app, a.slot, a.deployment
                ));
                ok = false;
            }
        }
        ok
    }

    /// Fetches, materialises and loads an assignment's app; swaps it into
    /// the running instance (`running`) or starts a new one.
    async fn run_assignment(self: &Arc<Self>, a: &Assignment, running: bool) -> Result<()> {
        let begun = Instant::now();
        let client = self.client();
        let cached = self.cache.app_dir(&a.manifest).is_dir();
        let (dir, _) = self.cache.app(&client, &a.manifest).await?;
        let fetched = begun.elapsed();
        let config: SlotConfig = client
            .get(
                &format!("/apps/{}/slots/{}/config", a.app, a.slot),
                Duration::from_secs(30),
            )
            .await?;
        let settings = config.settings.clone();
        let label = format!("{}/{}", a.app, a.slot);
        let app = tokio::task::spawn_blocking(move || load_app(&dir, &settings, &label))
            .await
            .map_err(|e| Error::Invalid(e.to_string()))??;
        let loaded = begun.elapsed();
        if running {
            let host = self
                .lock()
                .get(&(a.app.clone(), a.slot.clone()))
                .map(|i| i.host.clone());
            if let Some(host) = host {
                if let Some(secrets) = &config.secrets {
                    self.write_keys(a, secrets)?;
                }
                let old = host.swap(app).await.map_err(|e| Error::App {
                    app: format!("{}/{}", a.app, a.slot),
                    message: format!("its executors could not start: {e}"),
                })?;
                if let Some(i) = self.lock().get_mut(&(a.app.clone(), a.slot.clone())) {
                    i.assignment = a.clone();
                }
                let deadline = self.worker.drain_deadline;
                tokio::spawn(fnhost_deploy::hot::retire(old, deadline));
                (self.worker.log)(&format!(
                    "worker: {}/{} now serves deployment {} (swapped in {} ms)",
                    a.app,
                    a.slot,
                    a.deployment,
                    begun.elapsed().as_millis()
                ));
                return Ok(());
            }
        }
        let instance = self.start_instance(a, app, &config).await?;
        let endpoint = instance.endpoint.clone();
        self.lock()
            .insert((a.app.clone(), a.slot.clone()), instance);
        (self.worker.log)(&format!(
            "worker: ready {}/{} deployment {} at {endpoint} in {} ms ({}: fetched {} ms, loaded {} ms, started {} ms; {} ms since the worker started)",
            a.app,
            a.slot,
            a.deployment,
            begun.elapsed().as_millis(),
            if cached { "warm" } else { "cold" },
            fetched.as_millis(),
            (loaded - fetched).as_millis(),
            (begun.elapsed() - loaded).as_millis(),
            self.started.elapsed().as_millis()
        ));
        Ok(())
    }

    async fn start_instance(
        self: &Arc<Self>,
        a: &Assignment,
        app: FunctionApp,
        config: &SlotConfig,
    ) -> Result<Instance> {
        let fail = |message: String| Error::App {
            app: format!("{}/{}", a.app, a.slot),
            message,
        };
        let in_flight = Arc::new(AtomicU64::new(0));
        // First, outermost: the record times the whole attempt.
        let (recorder, records) = Recorder::queued();
        let host = Arc::new(
            Host::builder()
                .with_default_executors()
                .middleware(Arc::new(recorder))
                .middleware(counting(in_flight.clone()))
                .build(app),
        );
        // In a file the worker rewrites when the slot's keys change: the
        // store reads it again when a key it does not know is presented.
        let keys = match &config.secrets {
            Some(secrets) => {
                let path = self.write_keys(a, secrets)?;
                KeyStore::open(&path).map_err(|e| fail(e.to_string()))?
            }
            None => KeyStore::in_memory().map_err(|e| fail(e.to_string()))?,
        };
        let log = self.worker.log.clone();
        let listener = self.listener().await?;
        let front = HttpFront::new(host.clone())
            .with_keys(Arc::new(keys))
            .with_limits(Limits::default().with_shutdown_timeout(self.worker.drain_deadline))
            .with_log(Arc::new(move |l: &str| log(l)))
            .from_listener(listener)
            .map_err(|e| fail(format!("cannot serve: {e}")))?;
        host.start()
            .await
            .map_err(|e| fail(format!("the executors could not start: {e}")))?;
        let addr = front.local_addr();
        let shown = if addr.ip().is_unspecified() {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
        } else {
            addr
        };
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let host2 = host.clone();
        let task = tokio::spawn(async move {
            front
                .serve(async {
                    let _ = stop_rx.await;
                })
                .await;
            host2.shutdown().await;
        });
        let records = tokio::spawn(send_records(
            self.clone(),
            format!("/apps/{}/slots/{}/invocations", a.app, a.slot),
            records,
        ));
        Ok(Instance {
            assignment: a.clone(),
            endpoint: format!("http://{shown}"),
            host,
            in_flight,
            ready: Arc::new(AtomicBool::new(true)),
            stop: Some(stop_tx),
            task: Some(task),
            records: Some(records),
        })
    }

    /// Writes a slot's keys where its instance reads them (owner-only,
    /// replaced atomically).
    fn write_keys(&self, a: &Assignment, secrets: &Secrets) -> Result<PathBuf> {
        let dir = self.cache.root().join("keys");
        let path = dir.join(format!("{}.{}.json", a.app, a.slot));
        let tmp = dir.join(format!(".{}.{}.{}.tmp", a.app, a.slot, std::process::id()));
        let text = serde_json::to_vec_pretty(secrets).map_err(|e| Error::Invalid(e.to_string()))?;
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(&dir)?;
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create(true).truncate(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt as _;
                opts.mode(0o600);
            }
            std::io::Write::write_all(&mut opts.open(&tmp)?, &text)?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|e| Error::io(&path, e))?;
        Ok(path)
    }

    /// A listening socket on the worker's port, or the next free one.
    async fn listener(&self) -> Result<tokio::net::TcpListener> {
        let base = self.worker.port;
        let tries = if base == 0 { 1 } else { 256 };
        let mut last = None;
        for i in 0..tries {
            let port = if base == 0 { 0 } else { base.saturating_add(i) };
            match tokio::net::TcpListener::bind(SocketAddr::new(self.worker.host, port)).await {
                Ok(l) => return Ok(l),
                Err(e) => last = Some(e),
            }
        }
        Err(Error::Invalid(format!(
            "cannot listen on {}:{base} or the ports after it: {}",
            self.worker.host,
            last.map(|e| e.to_string()).unwrap_or_default()
        )))
    }

    /// Stops taking work, tells the manager at once, waits for gateways
    /// to learn it, then stops every instance once its requests finish,
    /// and gives their last invocation records until [`LEAVE_WITHIN`]
    /// after that; returns that deadline, for leaving the registry.
    async fn drain(self: &Arc<Self>) -> tokio::time::Instant {
        if self.draining.swap(true, Ordering::SeqCst) {
            return tokio::time::Instant::now() + LEAVE_WITHIN;
        }
        (self.worker.log)(&format!("worker {} draining", self.worker.name));
        for i in self.lock().values() {
            i.ready.store(false, Ordering::SeqCst);
        }
        let _ = send_heartbeat(self).await;
        let all: Vec<Instance> = std::mem::take(&mut *self.lock()).into_values().collect();
        let delay = self.worker.drain_delay;
        let mut set = tokio::task::JoinSet::new();
        for i in all {
            set.spawn(i.stop_serving(delay));
        }
        let mut records = Vec::new();
        while let Some(stopped) = set.join_next().await {
            records.extend(stopped.ok().flatten());
        }
        let leave_by = tokio::time::Instant::now() + LEAVE_WITHIN;
        for r in records {
            let _ = tokio::time::timeout_at(leave_by, r).await;
        }
        leave_by
    }
}

/// Sends an instance's invocation records to the manager (`path`) every
/// [`RECORDS_EVERY`], in batches of at most [`InvocationBatch::MAX`];
/// keeps at most [`RECORDS_PENDING`] while the manager does not take
/// them. Ends once the recorder is gone and what it queued is sent (or
/// the manager does not answer).
async fn send_records(
    rt: Arc<Runtime>,
    path: String,
    queue: std::sync::mpsc::Receiver<InvocationRecord>,
) {
    use std::sync::mpsc::TryRecvError;
    let mut pending: VecDeque<InvocationRecord> = VecDeque::new();
    let mut dropped = 0u64;
    let mut failing = false;
    loop {
        tokio::time::sleep(RECORDS_EVERY).await;
        let ended = loop {
            match queue.try_recv() {
                Ok(r) => pending.push_back(r),
                Err(TryRecvError::Empty) => break false,
                Err(TryRecvError::Disconnected) => break true,
            }
        };
        while pending.len() > RECORDS_PENDING {
            pending.pop_front();
            dropped += 1;
        }
        while !pending.is_empty() {
            let n = pending.len().min(InvocationBatch::MAX);
            let batch = InvocationBatch {
                records: pending.iter().take(n).cloned().collect(),
            };
            let sent: Result<serde_json::Value> = rt
                .client()
                .send(Method::POST, &path, &batch, Duration::from_secs(10))
                .await;
            match sent {
                Ok(_) => {
                    pending.drain(..n);
                    if std::mem::take(&mut failing) {
                        (rt.worker.log)(&format!(
                            "worker: invocation records go to the manager again ({dropped} dropped meanwhile)"
                        ));
                    }
                }
                Err(e) => {
                    if !std::mem::replace(&mut failing, true) {
                        (rt.worker.log)(&format!(
                            "worker: cannot send invocation records (kept, at most {RECORDS_PENDING}): {e}"
                        ));
                    }
                    break;
                }
            }
        }
        if ended && (pending.is_empty() || failing) {
            return;
        }
    }
}

fn load_app(
    dir: &std::path::Path,
    settings: &BTreeMap<String, String>,
    label: &str,
) -> Result<FunctionApp> {
    let mut loader = FunctionApp::loader(dir);
    for (k, v) in settings {
        loader = loader.with_setting(k.clone(), v.clone());
    }
    let app = loader.load().map_err(|e| Error::App {
        app: label.into(),
        message: e.to_string(),
    })?;
    if !app.is_valid() {
        return Err(Error::App {
            app: label.into(),
            message: format!("the app has errors: {}", app.diagnostics().errors_joined()),
        });
    }
    Ok(app)
}

async fn send_heartbeat(rt: &Arc<Runtime>) -> Result<HeartbeatResponse> {
    let hb = rt.heartbeat();
    rt.client()
        .send(
            Method::PUT,
            &format!("/workers/{}/heartbeat", rt.worker.name),
            &hb,
            Duration::from_secs(5),
        )
        .await
}

async fn heartbeats(rt: Arc<Runtime>, every_ms: i64, drain: watch::Sender<bool>) {
    let every = Duration::from_millis(every_ms.max(100) as u64);
    loop {
        match send_heartbeat(&rt).await {
            Ok(resp) => {
                if resp.drain && !rt.draining.load(Ordering::SeqCst) {
                    (rt.worker.log)(&format!(
                        "worker {}: the manager asks it to drain",
                        rt.worker.name
                    ));
                    let _ = drain.send(true);
                }
            }
            // Forgotten (404) or refused: not a manager that is down.
            Err(Error::Unauthorized { .. }) if !rt.draining.load(Ordering::SeqCst) => {
                rejoin(&rt).await;
            }
            Err(Error::Manager { message, .. })
                if message.starts_with("404") && !rt.draining.load(Ordering::SeqCst) =>
            {
                rejoin(&rt).await;
            }
            Err(_) => {}
        }
        tokio::time::sleep(every).await;
    }
}

/// Joins again with the join token: the manager forgot the worker
/// (removed, or a new state store).
async fn rejoin(rt: &Arc<Runtime>) {
    if let Ok((client, _)) = register(&rt.joiner, &rt.worker).await {
        (rt.worker.log)(&format!("worker {} joined again", rt.worker.name));
        *rt.client.lock().unwrap_or_else(|e| e.into_inner()) = client;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    use fnhost_core::http::HttpFront;
    use fnhost_core::invoke::http::HttpResponse;
    use fnhost_core::{FunctionApp, Host, NativeExecutor};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    fn is_send<T: Send>(_: &T) {}

    async fn until(what: &str, check: impl Fn() -> bool) {
        let start = Instant::now();
        while !check() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// What a heartbeat reports as an instance's load: one a request in
    /// flight (the HTTP front holds the app version twice a request,
    /// which the count once took for two requests), none once they end.
    #[tokio::test]
    #[allow(clippy::unwrap_used)]
    async fn requests_in_flight_are_counted_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("host.json"), r#"{"version": "2.0"}"#).unwrap();
        std::fs::create_dir(dir.path().join("wait")).unwrap();
        std::fs::write(
            dir.path().join("wait/function.json"),
            r#"{"bindings": [{"type": "httpTrigger", "direction": "in", "name": "req", "authLevel": "anonymous", "methods": ["get"]}, {"type": "http", "direction": "out", "name": "res"}]}"#,
        )
        .unwrap();
        // A primary script, so that the function loads (a native
        // function runs instead of it).
        std::fs::write(dir.path().join("wait/run.sh"), "#!/bin/sh\n").unwrap();
        let app = FunctionApp::loader(dir.path())
            .with_environment(false)
            .load()
            .unwrap();
        let (open, gate) = tokio::sync::watch::channel(false);
        let native = NativeExecutor::new().http("wait", move |_| {
            let mut gate = gate.clone();
            async move {
                let _ = gate.wait_for(|o| *o).await;
                HttpResponse::text("done")
            }
        });
        let in_flight = Arc::new(AtomicU64::new(0));
        let host = Host::builder()
            .native(native)
            .middleware(super::counting(in_flight.clone()))
            .build(app);
        host.start().await.unwrap();
        let server = HttpFront::new(Arc::new(host))
            .bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let addr = server.local_addr();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(server.serve(async {
            let _ = stopped.await;
        }));
        let requests: Vec<_> = (0..5)
            .map(|_| {
                tokio::spawn(async move {
                    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
                    s.write_all(b"GET /api/wait HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                        .await
                        .unwrap();
                    let mut out = Vec::new();
                    s.read_to_end(&mut out).await.unwrap();
                    String::from_utf8_lossy(&out).into_owned()
                })
            })
            .collect();
        until("five requests in flight", || {
            in_flight.load(Ordering::Relaxed) >= 5
        })
        .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(in_flight.load(Ordering::Relaxed), 5);
        open.send(true).unwrap();
        for r in requests {
            let answer = r.await.unwrap();
            assert!(answer.ends_with("done"), "{answer}");
        }
        until("none in flight", || in_flight.load(Ordering::Relaxed) == 0).await;
        let _ = stop.send(());
        served.await.unwrap();
    }

    #[test]
    fn a_worker_can_be_spawned() {
        let w = super::Worker::new("http://127.0.0.1:1", "t");
        is_send(&w.run(std::future::pending()));
    }
}
