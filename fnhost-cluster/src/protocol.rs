//! What the manager, workers and gateways say to each other (JSON over
//! HTTP, under `/cluster/v1`). Every call carries `Authorization: Bearer
//! TOKEN`: a join token (`fnhost workers token`) or a worker's credential
//! (`NAME.SECRET`, given at registration).

use std::collections::BTreeMap;

use fnhost_core::keys::Secrets;
use serde::{Deserialize, Serialize};

/// The path prefix of the cluster API.
pub const PREFIX: &str = "/cluster/v1";

/// The header every response through a gateway carries: the worker that
/// answered.
pub const WORKER_HEADER: &str = "x-fnhost-worker";

/// `POST /cluster/v1/apps/{app}/slots/{slot}/invocations` (a worker):
/// the records of invocations an instance ran, for the portal's Monitor
/// (never a body). The manager sets each record's worker.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct InvocationBatch {
    /// The records, oldest first (at most [`InvocationBatch::MAX`]).
    pub records: Vec<fnhost_deploy::monitor::InvocationRecord>,
}

impl InvocationBatch {
    /// The most records one batch carries.
    pub const MAX: usize = 500;
}

/// `POST /cluster/v1/workers` (join token).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RegisterRequest {
    /// The worker's name.
    pub name: String,
    /// Its labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The most instances it takes.
    pub capacity: i64,
}

impl RegisterRequest {
    /// A registration.
    pub fn new(name: impl Into<String>, labels: BTreeMap<String, String>, capacity: i64) -> Self {
        RegisterRequest {
            name: name.into(),
            labels,
            capacity,
        }
    }
}

/// The answer to a registration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RegisterResponse {
    /// The worker's credential for its other calls.
    pub credential: String,
    /// How often to heartbeat (ms); three missed make it stale.
    pub heartbeat_ms: i64,
}

/// One app instance on a worker, as its heartbeat reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct InstanceStatus {
    /// The app.
    pub app: String,
    /// The slot.
    pub slot: String,
    /// The deployment it serves.
    pub deployment: String,
    /// Its manifest digest.
    pub manifest: String,
    /// Its base URL (`http://127.0.0.1:PORT`).
    pub endpoint: String,
    /// Serving and taking new requests.
    pub ready: bool,
    /// Requests in flight.
    pub in_flight: u64,
}

/// `PUT /cluster/v1/workers/{name}/heartbeat` (worker credential).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Heartbeat {
    /// The worker drains: no new work.
    pub draining: bool,
    /// Its instances.
    pub instances: Vec<InstanceStatus>,
}

/// The answer to a heartbeat.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HeartbeatResponse {
    /// Someone asked it to drain (`fnhost workers drain NAME`).
    pub drain: bool,
    /// Its assignments' generation.
    pub generation: i64,
}

/// What a worker runs: `GET /cluster/v1/workers/{name}/assignments`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Assignments {
    /// Increases whenever they change.
    pub generation: i64,
    /// The instances.
    pub assignments: Vec<crate::state::Assignment>,
}

/// An app slot's settings and keys:
/// `GET /cluster/v1/apps/{app}/slots/{slot}/config`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SlotConfig {
    /// The app settings.
    pub settings: BTreeMap<String, String>,
    /// The keys.
    pub secrets: Option<Secrets>,
    /// The sha256 of both (an assignment's `settings_version`).
    pub version: String,
}

/// A slot's active deployment: `GET /cluster/v1/apps/{app}/slots/{slot}/active`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ActiveContent {
    /// The deployment id.
    pub deployment: String,
    /// Its manifest digest.
    pub manifest: String,
}

/// An HTTP function, as a gateway routes and authorises it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RouteSpec {
    /// The function.
    pub function: String,
    /// The full template, prefix included (`api/items/{id:int}`).
    pub template: String,
    /// The methods (empty: all).
    pub methods: Vec<String>,
    /// `anonymous`, `function` or `admin`.
    pub auth: String,
}

/// A ready instance, as a gateway sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Endpoint {
    /// The worker.
    pub worker: String,
    /// The instance's base URL.
    pub url: String,
    /// Requests in flight at its last heartbeat.
    pub in_flight: u64,
}

/// One app slot's routes, keys and instances.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SlotRoutes {
    /// The app.
    pub app: String,
    /// The slot.
    pub slot: String,
    /// The HTTP functions.
    pub routes: Vec<RouteSpec>,
    /// The keys (`None`: not created yet; only anonymous functions pass).
    pub secrets: Option<Secrets>,
    /// The ready instances.
    pub instances: Vec<Endpoint>,
}

/// Everything a gateway needs: `GET /cluster/v1/routes` (join token).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RouteTable {
    /// Every placed app slot with an active deployment.
    pub slots: Vec<SlotRoutes>,
}

/// A worker as `fnhost workers list` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WorkerView {
    /// Its name.
    pub name: String,
    /// `joining`, `ready`, `draining`, `stale`, `gone`.
    pub state: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// The most instances it takes.
    pub capacity: i64,
    /// The app slots assigned to it (`app` or `app/slot`).
    pub apps: Vec<String>,
    /// Requests in flight at its last heartbeat.
    pub in_flight: u64,
    /// Milliseconds since its last heartbeat.
    pub last_heartbeat_ms_ago: i64,
}
