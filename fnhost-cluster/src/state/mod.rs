//! The cluster's state: workers, join tokens, placements, assignments,
//! leases and timer runs, behind one interface ([`StateStore`]) with two
//! drivers and one schema: SQLite embedded in the home folder (the
//! default) and PostgreSQL for several `fnhost manage` replicas.
//!
//! Both drivers implement the small [`Db`] trait (run statements, read
//! rows, run a batch in one transaction); every query of the store is
//! written once, in the SQL both dialects share, in [`SqlState`]. The
//! schema is versioned ([`MIGRATIONS`]); opening a store applies what is
//! missing.
//!
//! ```no_run
//! # async fn run() -> Result<(), fnhost_cluster::Error> {
//! let state = fnhost_cluster::state::open(".fnhost", None).await?;
//! for w in state.workers().await? {
//!     println!("{} {:?}", w.name, w.state);
//! }
//! # Ok(()) }
//! ```

mod postgres;
mod sqlite;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub use postgres::PostgresDb;
pub use sqlite::SqliteDb;

/// The file of the embedded store, in the home folder.
pub const SQLITE_FILE: &str = "cluster.db";

/// Opens the state store: PostgreSQL when `url` starts with
/// `postgres://` or `postgresql://`, else SQLite in `home/cluster.db`
/// (or the file `url` names, `sqlite:PATH`). Applies missing migrations.
pub async fn open(home: impl AsRef<Path>, url: Option<&str>) -> Result<Arc<dyn StateStore>> {
    match url {
        Some(u) if u.starts_with("postgres://") || u.starts_with("postgresql://") => {
            let db = PostgresDb::connect(u).await?;
            Ok(Arc::new(SqlState::new(db).await?))
        }
        Some(u) => {
            let path = u.strip_prefix("sqlite:").unwrap_or(u);
            let db = SqliteDb::open(path)?;
            Ok(Arc::new(SqlState::new(db).await?))
        }
        None => {
            let home = home.as_ref();
            std::fs::create_dir_all(home).map_err(|e| Error::State {
                store: home.display().to_string(),
                message: format!("cannot create the home folder: {e}"),
            })?;
            let db = SqliteDb::open(home.join(SQLITE_FILE))?;
            Ok(Arc::new(SqlState::new(db).await?))
        }
    }
}

/// A value in a row or a statement's parameter: the schema uses only
/// 64-bit integers and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// An integer (`BIGINT`).
    Int(i64),
    /// Text.
    Text(String),
}

impl Value {
    fn int(&self) -> i64 {
        match self {
            Value::Int(i) => *i,
            Value::Text(t) => t.parse().unwrap_or(0),
        }
    }
    fn text(&self) -> String {
        match self {
            Value::Int(i) => i.to_string(),
            Value::Text(t) => t.clone(),
        }
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::Int(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Text(v.to_owned())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Text(v)
    }
}
impl From<&String> for Value {
    fn from(v: &String) -> Value {
        Value::Text(v.clone())
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Value {
        Value::Int(i64::from(v))
    }
}

/// A statement with its parameters (`$1`, `$2`, ... numbered in order of
/// first use: both SQLite and PostgreSQL read them so).
pub type Statement = (&'static str, Vec<Value>);

/// What a driver provides: statements, rows, and batches in one
/// transaction. The SQL is the dialect SQLite and PostgreSQL share.
#[async_trait]
pub trait Db: Send + Sync + fmt::Debug + 'static {
    /// Names the database for messages (never with a password).
    fn describe(&self) -> String;
    /// Runs a statement; the number of rows it changed.
    async fn execute(&self, sql: &str, params: &[Value]) -> Result<u64>;
    /// Runs a query; its rows.
    async fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Vec<Value>>>;
    /// Runs statements in one transaction; the rows each changed.
    async fn batch(&self, statements: &[Statement]) -> Result<Vec<u64>>;
    /// Runs the schema migrations that are missing, in one transaction
    /// each, so that two processes opening the store at once agree.
    async fn migrate(&self, migrations: &[Migration]) -> Result<()>;
}

/// One version of the schema: its statements.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// The version it brings the schema to.
    pub version: i64,
    /// Its statements.
    pub statements: &'static [&'static str],
}

/// The schema, version by version. Only integers and text, no
/// driver-specific types, so one schema serves both drivers.
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    statements: &[
        "CREATE TABLE join_tokens (id TEXT PRIMARY KEY, hash TEXT NOT NULL, created_at BIGINT NOT NULL)",
        "CREATE TABLE workers (name TEXT PRIMARY KEY, credential_hash TEXT NOT NULL, \
         labels TEXT NOT NULL, capacity BIGINT NOT NULL, state TEXT NOT NULL, \
         drain_requested BIGINT NOT NULL, status TEXT NOT NULL, last_heartbeat BIGINT NOT NULL, \
         registered_at BIGINT NOT NULL, generation BIGINT NOT NULL)",
        "CREATE TABLE placements (app TEXT NOT NULL, slot TEXT NOT NULL, mode TEXT NOT NULL, \
         min_instances BIGINT NOT NULL, max_instances BIGINT NOT NULL, labels TEXT NOT NULL, \
         updated_at BIGINT NOT NULL, PRIMARY KEY (app, slot))",
        "CREATE TABLE assignments (worker TEXT NOT NULL, app TEXT NOT NULL, slot TEXT NOT NULL, \
         deployment TEXT NOT NULL, manifest TEXT NOT NULL, settings_version TEXT NOT NULL, \
         PRIMARY KEY (worker, app, slot))",
        "CREATE TABLE leases (key TEXT PRIMARY KEY, holder TEXT NOT NULL, token BIGINT NOT NULL, \
         expires_at BIGINT NOT NULL)",
        "CREATE TABLE timer_runs (app TEXT NOT NULL, slot TEXT NOT NULL, function TEXT NOT NULL, \
         tick TEXT NOT NULL, leader TEXT NOT NULL, lease_token BIGINT NOT NULL, worker TEXT NOT NULL, \
         status TEXT NOT NULL, past_due BIGINT NOT NULL, claimed_at BIGINT NOT NULL, \
         PRIMARY KEY (app, slot, function, tick))",
        "CREATE TABLE timer_status (app TEXT NOT NULL, slot TEXT NOT NULL, function TEXT NOT NULL, \
         last BIGINT NOT NULL, next BIGINT NOT NULL, last_updated BIGINT NOT NULL, \
         PRIMARY KEY (app, slot, function))",
    ],
}];

/// Makes a join token for workers and gateways and stores its hash: the
/// token, to show once (`fnhost workers token`, the portal's Workers page).
pub async fn new_join_token(state: &dyn StateStore) -> Result<String> {
    let token = crate::random_secret()?;
    state
        .add_join_token(
            &token[..8],
            &crate::sha256_hex(token.as_bytes()),
            crate::now_ms(),
        )
        .await?;
    Ok(token)
}

/// A worker's state as the registry sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum WorkerState {
    /// Registered, no heartbeat yet.
    Joining,
    /// Heartbeating, takes work.
    Ready,
    /// Finishing its work; takes no more.
    Draining,
    /// Three heartbeats missed: its instances are placed elsewhere.
    Stale,
    /// Left after draining.
    Gone,
}

impl WorkerState {
    /// Its name in the store and in `fnhost workers list`.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerState::Joining => "joining",
            WorkerState::Ready => "ready",
            WorkerState::Draining => "draining",
            WorkerState::Stale => "stale",
            WorkerState::Gone => "gone",
        }
    }

    fn parse(s: &str) -> WorkerState {
        match s {
            "ready" => WorkerState::Ready,
            "draining" => WorkerState::Draining,
            "stale" => WorkerState::Stale,
            "gone" => WorkerState::Gone,
            _ => WorkerState::Joining,
        }
    }
}

impl fmt::Display for WorkerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A worker in the registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WorkerRecord {
    /// Its name (unique in the cluster).
    pub name: String,
    /// The sha256 of its credential (hex); never the credential.
    #[serde(skip)]
    pub credential_hash: String,
    /// Its labels (`k=v`), for placement constraints.
    pub labels: BTreeMap<String, String>,
    /// The most app instances it takes.
    pub capacity: i64,
    /// Its state as last reported (see [`WorkerRecord::effective_state`]).
    pub state: WorkerState,
    /// `fnhost workers drain NAME` asked it to drain.
    pub drain_requested: bool,
    /// Its last heartbeat's status (instances, load), JSON.
    pub status: String,
    /// When it last heartbeat (Unix ms).
    pub last_heartbeat: i64,
    /// When it registered (Unix ms).
    pub registered_at: i64,
    /// Increases whenever its assignments change.
    pub generation: i64,
}

impl WorkerRecord {
    /// The state, with `stale` for a worker that missed three heartbeats
    /// of `interval_ms` by `now`.
    pub fn effective_state(&self, now: i64, interval_ms: i64) -> WorkerState {
        match self.state {
            WorkerState::Gone => WorkerState::Gone,
            _ if now - self.last_heartbeat > 3 * interval_ms => WorkerState::Stale,
            s => s,
        }
    }

    /// Whether it may get new instances at `now`: ready or just joined,
    /// not draining, not stale.
    pub fn takes_work(&self, now: i64, interval_ms: i64) -> bool {
        !self.drain_requested
            && matches!(
                self.effective_state(now, interval_ms),
                WorkerState::Ready | WorkerState::Joining
            )
    }
}

/// How many instances of an app's slot run, and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Placement {
    /// The app.
    pub app: String,
    /// The slot.
    pub slot: String,
    /// How the count is chosen.
    pub mode: PlacementMode,
    /// The fewest instances (the count for [`PlacementMode::Fixed`]).
    pub min_instances: i64,
    /// The most instances ([`PlacementMode::Auto`]).
    pub max_instances: i64,
    /// Only workers with all these labels.
    pub labels: BTreeMap<String, String>,
}

impl Placement {
    /// A fixed number of instances.
    pub fn fixed(app: impl Into<String>, slot: impl Into<String>, instances: i64) -> Placement {
        Placement {
            app: app.into(),
            slot: slot.into(),
            mode: PlacementMode::Fixed,
            min_instances: instances,
            max_instances: instances,
            labels: BTreeMap::new(),
        }
    }

    /// Between `min` and `max` instances, by in-flight load.
    pub fn auto(app: impl Into<String>, slot: impl Into<String>, min: i64, max: i64) -> Placement {
        Placement {
            mode: PlacementMode::Auto,
            max_instances: max.max(min),
            ..Placement::fixed(app, slot, min)
        }
    }

    /// One instance on every worker that may run it.
    pub fn every_worker(app: impl Into<String>, slot: impl Into<String>) -> Placement {
        Placement {
            mode: PlacementMode::EveryWorker,
            ..Placement::fixed(app, slot, 0)
        }
    }

    /// Restricts it to workers with these labels.
    pub fn with_labels(mut self, labels: BTreeMap<String, String>) -> Placement {
        self.labels = labels;
        self
    }
}

/// How a [`Placement`] chooses its number of instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum PlacementMode {
    /// `--instances N`.
    Fixed,
    /// `--min N --max M`: by in-flight requests per instance.
    Auto,
    /// `--every-worker`.
    EveryWorker,
}

impl PlacementMode {
    fn as_str(self) -> &'static str {
        match self {
            PlacementMode::Fixed => "fixed",
            PlacementMode::Auto => "auto",
            PlacementMode::EveryWorker => "every-worker",
        }
    }
    fn parse(s: &str) -> PlacementMode {
        match s {
            "auto" => PlacementMode::Auto,
            "every-worker" => PlacementMode::EveryWorker,
            _ => PlacementMode::Fixed,
        }
    }
}

/// One app instance a worker is to run.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Assignment {
    /// The worker.
    pub worker: String,
    /// The app.
    pub app: String,
    /// The slot.
    pub slot: String,
    /// The deployment id.
    pub deployment: String,
    /// The deployment's manifest digest (sha256 content id, hex).
    pub manifest: String,
    /// The sha256 of the slot's settings and keys, so a change reloads.
    pub settings_version: String,
}

/// A lease: who holds `key` until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Lease {
    /// The lease's name.
    pub key: String,
    /// Who holds it.
    pub holder: String,
    /// Increases whenever it changes hands (a fencing token).
    pub token: i64,
    /// When it expires unless renewed (Unix ms).
    pub expires_at: i64,
}

/// One tick of one timer function, claimed once cluster-wide.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TimerRun {
    /// The app.
    pub app: String,
    /// The slot.
    pub slot: String,
    /// The function.
    pub function: String,
    /// The tick: its scheduled time (RFC 3339), or `startup:DEPLOYMENT`.
    pub tick: String,
    /// The manager that claimed it.
    pub leader: String,
    /// The leader lease's token when claimed.
    pub lease_token: i64,
    /// The worker that ran it (empty before dispatch).
    pub worker: String,
    /// `claimed`, `done`, `failed`.
    pub status: String,
    /// Whether it ran late (`IsPastDue`).
    pub past_due: bool,
    /// When it was claimed (Unix ms).
    pub claimed_at: i64,
}

/// A timer function's schedule status (Azure's `ScheduleStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TimerStatus {
    /// The last tick run (Unix ms; 0 for none).
    pub last: i64,
    /// The next tick due (Unix ms).
    pub next: i64,
    /// When it was last written (Unix ms).
    pub last_updated: i64,
}

/// The cluster's state. Implementations keep every method atomic; the
/// timer and lease methods are what keeps a tick from running twice.
#[async_trait]
pub trait StateStore: Send + Sync + fmt::Debug {
    /// Names the store (for messages).
    fn describe(&self) -> String;

    /// Stores a join token's hash.
    async fn add_join_token(&self, id: &str, hash: &str, now: i64) -> Result<()>;
    /// Every join token's hash.
    async fn join_token_hashes(&self) -> Result<Vec<String>>;

    /// Registers (or re-registers) a worker: a fresh credential hash,
    /// state joining, drain request cleared, generation increased.
    async fn register_worker(&self, worker: &WorkerRecord) -> Result<WorkerRecord>;
    /// Records a heartbeat; the record after it (`None`: not registered).
    async fn heartbeat(
        &self,
        name: &str,
        state: WorkerState,
        status: &str,
        now: i64,
    ) -> Result<Option<WorkerRecord>>;
    /// A worker.
    async fn worker(&self, name: &str) -> Result<Option<WorkerRecord>>;
    /// Every worker.
    async fn workers(&self) -> Result<Vec<WorkerRecord>>;
    /// Asks a worker to drain; false when there is no such worker.
    async fn request_drain(&self, name: &str) -> Result<bool>;
    /// Removes a worker and its assignments.
    async fn remove_worker(&self, name: &str) -> Result<()>;

    /// Sets an app slot's placement.
    async fn set_placement(&self, placement: &Placement) -> Result<()>;
    /// Removes an app slot's placement (its instances stop).
    async fn remove_placement(&self, app: &str, slot: &str) -> Result<bool>;
    /// Every placement.
    async fn placements(&self) -> Result<Vec<Placement>>;

    /// Every assignment.
    async fn assignments(&self) -> Result<Vec<Assignment>>;
    /// Replaces a worker's assignments with `list`, increasing its
    /// generation when they changed; the generation after.
    async fn set_assignments(&self, worker: &str, list: &[Assignment]) -> Result<i64>;

    /// Takes or renews `key` for `holder` until `now + ttl_ms`, when it
    /// is free, expired or already `holder`'s; its token, or `None` when
    /// someone else holds it.
    async fn acquire_lease(
        &self,
        key: &str,
        holder: &str,
        ttl_ms: i64,
        now: i64,
    ) -> Result<Option<i64>>;
    /// Gives a lease up (if `holder` has it).
    async fn release_lease(&self, key: &str, holder: &str) -> Result<()>;
    /// A lease.
    async fn lease(&self, key: &str) -> Result<Option<Lease>>;

    /// Claims a tick: true for the one caller that inserted it, false
    /// when it was claimed before (by anyone, ever).
    async fn claim_timer_run(&self, run: &TimerRun) -> Result<bool>;
    /// Records who ran a claimed tick and how it went.
    async fn finish_timer_run(
        &self,
        app: &str,
        slot: &str,
        function: &str,
        tick: &str,
        worker: &str,
        status: &str,
    ) -> Result<()>;
    /// The ticks of one function, oldest first.
    async fn timer_runs(&self, app: &str, slot: &str, function: &str) -> Result<Vec<TimerRun>>;
    /// A timer function's schedule status.
    async fn timer_status(
        &self,
        app: &str,
        slot: &str,
        function: &str,
    ) -> Result<Option<TimerStatus>>;
    /// Writes a timer function's schedule status.
    async fn set_timer_status(
        &self,
        app: &str,
        slot: &str,
        function: &str,
        status: TimerStatus,
    ) -> Result<()>;
}

/// [`StateStore`] over any [`Db`]: every query written once.
#[derive(Debug)]
pub struct SqlState<D> {
    db: D,
}

impl<D: Db> SqlState<D> {
    /// Wraps `db`, applying missing migrations.
    pub async fn new(db: D) -> Result<SqlState<D>> {
        db.migrate(MIGRATIONS).await?;
        Ok(SqlState { db })
    }

    /// The driver.
    pub fn db(&self) -> &D {
        &self.db
    }
}

const WORKER_COLUMNS: &str = "name, credential_hash, labels, capacity, state, drain_requested, status, last_heartbeat, registered_at, generation";

fn worker_row(r: &[Value]) -> WorkerRecord {
    WorkerRecord {
        name: r[0].text(),
        credential_hash: r[1].text(),
        labels: serde_json::from_str(&r[2].text()).unwrap_or_default(),
        capacity: r[3].int(),
        state: WorkerState::parse(&r[4].text()),
        drain_requested: r[5].int() != 0,
        status: r[6].text(),
        last_heartbeat: r[7].int(),
        registered_at: r[8].int(),
        generation: r[9].int(),
    }
}

fn labels_json(labels: &BTreeMap<String, String>) -> String {
    serde_json::to_string(labels).unwrap_or_else(|_| "{}".into())
}

fn timer_run_row(r: &[Value]) -> TimerRun {
    TimerRun {
        app: r[0].text(),
        slot: r[1].text(),
        function: r[2].text(),
        tick: r[3].text(),
        leader: r[4].text(),
        lease_token: r[5].int(),
        worker: r[6].text(),
        status: r[7].text(),
        past_due: r[8].int() != 0,
        claimed_at: r[9].int(),
    }
}

#[async_trait]
impl<D: Db> StateStore for SqlState<D> {
    fn describe(&self) -> String {
        self.db.describe()
    }

    async fn add_join_token(&self, id: &str, hash: &str, now: i64) -> Result<()> {
        self.db
            .execute(
                "INSERT INTO join_tokens (id, hash, created_at) VALUES ($1, $2, $3)",
                &[id.into(), hash.into(), now.into()],
            )
            .await?;
        Ok(())
    }

    async fn join_token_hashes(&self) -> Result<Vec<String>> {
        let rows = self.db.query("SELECT hash FROM join_tokens", &[]).await?;
        Ok(rows.iter().map(|r| r[0].text()).collect())
    }

    async fn register_worker(&self, w: &WorkerRecord) -> Result<WorkerRecord> {
        self.db
            .execute(
                "INSERT INTO workers (name, credential_hash, labels, capacity, state, drain_requested, \
                 status, last_heartbeat, registered_at, generation) \
                 VALUES ($1, $2, $3, $4, 'joining', 0, $5, $6, $7, 1) \
                 ON CONFLICT (name) DO UPDATE SET credential_hash = excluded.credential_hash, \
                 labels = excluded.labels, capacity = excluded.capacity, state = 'joining', \
                 drain_requested = 0, status = excluded.status, last_heartbeat = excluded.last_heartbeat, \
                 registered_at = excluded.registered_at, generation = workers.generation + 1",
                &[
                    (&w.name).into(),
                    (&w.credential_hash).into(),
                    labels_json(&w.labels).into(),
                    w.capacity.into(),
                    (&w.status).into(),
                    w.last_heartbeat.into(),
                    w.registered_at.into(),
                ],
            )
            .await?;
        self.worker(&w.name).await?.ok_or_else(|| Error::State {
            store: self.describe(),
            message: format!("worker {} vanished while registering", w.name),
        })
    }

    async fn heartbeat(
        &self,
        name: &str,
        state: WorkerState,
        status: &str,
        now: i64,
    ) -> Result<Option<WorkerRecord>> {
        let changed = self
            .db
            .execute(
                "UPDATE workers SET state = $1, status = $2, last_heartbeat = $3 WHERE name = $4",
                &[
                    state.as_str().into(),
                    status.into(),
                    now.into(),
                    name.into(),
                ],
            )
            .await?;
        if changed == 0 {
            return Ok(None);
        }
        self.worker(name).await
    }

    async fn worker(&self, name: &str) -> Result<Option<WorkerRecord>> {
        let sql = format!("SELECT {WORKER_COLUMNS} FROM workers WHERE name = $1");
        let rows = self.db.query(&sql, &[name.into()]).await?;
        Ok(rows.first().map(|r| worker_row(r)))
    }

    async fn workers(&self) -> Result<Vec<WorkerRecord>> {
        let sql = format!("SELECT {WORKER_COLUMNS} FROM workers ORDER BY name");
        let rows = self.db.query(&sql, &[]).await?;
        Ok(rows.iter().map(|r| worker_row(r)).collect())
    }

    async fn request_drain(&self, name: &str) -> Result<bool> {
        let n = self
            .db
            .execute(
                "UPDATE workers SET drain_requested = 1 WHERE name = $1",
                &[name.into()],
            )
            .await?;
        Ok(n > 0)
    }

    async fn remove_worker(&self, name: &str) -> Result<()> {
        self.db
            .batch(&[
                (
                    "DELETE FROM assignments WHERE worker = $1",
                    vec![name.into()],
                ),
                ("DELETE FROM workers WHERE name = $1", vec![name.into()]),
            ])
            .await?;
        Ok(())
    }

    async fn set_placement(&self, p: &Placement) -> Result<()> {
        let now = crate::now_ms();
        self.db
            .execute(
                "INSERT INTO placements (app, slot, mode, min_instances, max_instances, labels, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (app, slot) DO UPDATE SET \
                 mode = excluded.mode, min_instances = excluded.min_instances, \
                 max_instances = excluded.max_instances, labels = excluded.labels, \
                 updated_at = excluded.updated_at",
                &[
                    (&p.app).into(),
                    (&p.slot).into(),
                    p.mode.as_str().into(),
                    p.min_instances.into(),
                    p.max_instances.into(),
                    labels_json(&p.labels).into(),
                    now.into(),
                ],
            )
            .await?;
        Ok(())
    }

    async fn remove_placement(&self, app: &str, slot: &str) -> Result<bool> {
        let n = self
            .db
            .execute(
                "DELETE FROM placements WHERE app = $1 AND slot = $2",
                &[app.into(), slot.into()],
            )
            .await?;
        Ok(n > 0)
    }

    async fn placements(&self) -> Result<Vec<Placement>> {
        let rows = self
            .db
            .query(
                "SELECT app, slot, mode, min_instances, max_instances, labels FROM placements ORDER BY app, slot",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| Placement {
                app: r[0].text(),
                slot: r[1].text(),
                mode: PlacementMode::parse(&r[2].text()),
                min_instances: r[3].int(),
                max_instances: r[4].int(),
                labels: serde_json::from_str(&r[5].text()).unwrap_or_default(),
            })
            .collect())
    }

    async fn assignments(&self) -> Result<Vec<Assignment>> {
        let rows = self
            .db
            .query(
                "SELECT worker, app, slot, deployment, manifest, settings_version FROM assignments \
                 ORDER BY worker, app, slot",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| Assignment {
                worker: r[0].text(),
                app: r[1].text(),
                slot: r[2].text(),
                deployment: r[3].text(),
                manifest: r[4].text(),
                settings_version: r[5].text(),
            })
            .collect())
    }

    async fn set_assignments(&self, worker: &str, list: &[Assignment]) -> Result<i64> {
        let mut current: Vec<Assignment> = self
            .assignments()
            .await?
            .into_iter()
            .filter(|a| a.worker == worker)
            .collect();
        let mut wanted: Vec<Assignment> = list.to_vec();
        current.sort();
        wanted.sort();
        if current != wanted {
            let mut statements: Vec<Statement> = vec![(
                "DELETE FROM assignments WHERE worker = $1",
                vec![worker.into()],
            )];
            for a in &wanted {
                statements.push((
                    "INSERT INTO assignments (worker, app, slot, deployment, manifest, settings_version) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                    vec![
                        worker.into(),
                        (&a.app).into(),
                        (&a.slot).into(),
                        (&a.deployment).into(),
                        (&a.manifest).into(),
                        (&a.settings_version).into(),
                    ],
                ));
            }
            statements.push((
                "UPDATE workers SET generation = generation + 1 WHERE name = $1",
                vec![worker.into()],
            ));
            self.db.batch(&statements).await?;
        }
        Ok(self.worker(worker).await?.map_or(0, |w| w.generation))
    }

    async fn acquire_lease(
        &self,
        key: &str,
        holder: &str,
        ttl_ms: i64,
        now: i64,
    ) -> Result<Option<i64>> {
        let rows = self
            .db
            .query(
                "INSERT INTO leases (key, holder, token, expires_at) VALUES ($1, $2, 1, $3) \
                 ON CONFLICT (key) DO UPDATE SET holder = excluded.holder, \
                 token = leases.token + (CASE WHEN leases.holder = excluded.holder THEN 0 ELSE 1 END), \
                 expires_at = excluded.expires_at \
                 WHERE leases.holder = excluded.holder OR leases.expires_at < $4 \
                 RETURNING token",
                &[key.into(), holder.into(), (now + ttl_ms).into(), now.into()],
            )
            .await?;
        Ok(rows.first().map(|r| r[0].int()))
    }

    async fn release_lease(&self, key: &str, holder: &str) -> Result<()> {
        self.db
            .execute(
                "UPDATE leases SET expires_at = 0 WHERE key = $1 AND holder = $2",
                &[key.into(), holder.into()],
            )
            .await?;
        Ok(())
    }

    async fn lease(&self, key: &str) -> Result<Option<Lease>> {
        let rows = self
            .db
            .query(
                "SELECT key, holder, token, expires_at FROM leases WHERE key = $1",
                &[key.into()],
            )
            .await?;
        Ok(rows.first().map(|r| Lease {
            key: r[0].text(),
            holder: r[1].text(),
            token: r[2].int(),
            expires_at: r[3].int(),
        }))
    }

    async fn claim_timer_run(&self, run: &TimerRun) -> Result<bool> {
        let n = self
            .db
            .execute(
                "INSERT INTO timer_runs (app, slot, function, tick, leader, lease_token, worker, status, \
                 past_due, claimed_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                 ON CONFLICT (app, slot, function, tick) DO NOTHING",
                &[
                    (&run.app).into(),
                    (&run.slot).into(),
                    (&run.function).into(),
                    (&run.tick).into(),
                    (&run.leader).into(),
                    run.lease_token.into(),
                    (&run.worker).into(),
                    (&run.status).into(),
                    run.past_due.into(),
                    run.claimed_at.into(),
                ],
            )
            .await?;
        Ok(n == 1)
    }

    async fn finish_timer_run(
        &self,
        app: &str,
        slot: &str,
        function: &str,
        tick: &str,
        worker: &str,
        status: &str,
    ) -> Result<()> {
        self.db
            .execute(
                "UPDATE timer_runs SET worker = $1, status = $2 WHERE app = $3 AND slot = $4 \
                 AND function = $5 AND tick = $6",
                &[
                    worker.into(),
                    status.into(),
                    app.into(),
                    slot.into(),
                    function.into(),
                    tick.into(),
                ],
            )
            .await?;
        Ok(())
    }

    async fn timer_runs(&self, app: &str, slot: &str, function: &str) -> Result<Vec<TimerRun>> {
        let rows = self
            .db
            .query(
                "SELECT app, slot, function, tick, leader, lease_token, worker, status, past_due, claimed_at \
                 FROM timer_runs WHERE app = $1 AND slot = $2 AND function = $3 ORDER BY claimed_at, tick",
                &[app.into(), slot.into(), function.into()],
            )
            .await?;
        Ok(rows.iter().map(|r| timer_run_row(r)).collect())
    }

    async fn timer_status(
        &self,
        app: &str,
        slot: &str,
        function: &str,
    ) -> Result<Option<TimerStatus>> {
        let rows = self
            .db
            .query(
                "SELECT last, next, last_updated FROM timer_status WHERE app = $1 AND slot = $2 \
                 AND function = $3",
                &[app.into(), slot.into(), function.into()],
            )
            .await?;
        Ok(rows.first().map(|r| TimerStatus {
            last: r[0].int(),
            next: r[1].int(),
            last_updated: r[2].int(),
        }))
    }

    async fn set_timer_status(
        &self,
        app: &str,
        slot: &str,
        function: &str,
        s: TimerStatus,
    ) -> Result<()> {
        self.db
            .execute(
                "INSERT INTO timer_status (app, slot, function, last, next, last_updated) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (app, slot, function) DO UPDATE SET \
                 last = excluded.last, next = excluded.next, last_updated = excluded.last_updated",
                &[
                    app.into(),
                    slot.into(),
                    function.into(),
                    s.last.into(),
                    s.next.into(),
                    s.last_updated.into(),
                ],
            )
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_missing_three_heartbeats_is_stale() {
        let w = WorkerRecord {
            name: "w1".into(),
            credential_hash: String::new(),
            labels: BTreeMap::new(),
            capacity: 10,
            state: WorkerState::Ready,
            drain_requested: false,
            status: "{}".into(),
            last_heartbeat: 1_000,
            registered_at: 0,
            generation: 1,
        };
        assert_eq!(w.effective_state(3_999, 1_000), WorkerState::Ready);
        assert_eq!(w.effective_state(4_001, 1_000), WorkerState::Stale);
        assert!(w.takes_work(2_000, 1_000));
        let draining = WorkerRecord {
            drain_requested: true,
            ..w
        };
        assert!(!draining.takes_work(2_000, 1_000));
    }
}
