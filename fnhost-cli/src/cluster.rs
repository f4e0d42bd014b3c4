//! The cluster commands: `fnhost worker`, `fnhost gateway`, `fnhost
//! fetch`, `fnhost apps scale`, `fnhost workers token|drain` and the
//! cluster half of `fnhost workers list` (fnhost-cluster does the work).

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fnhost_cluster::client::ManagerClient;
use fnhost_cluster::gateway::Gateway;
use fnhost_cluster::protocol::WorkerView;
use fnhost_cluster::state::{Placement, StateStore};
use fnhost_cluster::worker::{ContentCache, Worker};
use fnhost_deploy::PRODUCTION;

use crate::serve::runtime;
use crate::{CmdResult, Failure};

fn usage(e: impl std::fmt::Display) -> Failure {
    Failure::Usage(e.to_string())
}

fn message(e: impl std::fmt::Display) -> Failure {
    Failure::Message(e.to_string())
}

/// Where the cluster's state lives.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct StateArg {
    /// The cluster's state store: `postgres://USER[:PASSWORD]@HOST/DB`
    /// for several managers (default: SQLite in the home,
    /// HOME/cluster.db).
    #[arg(long, env = "FNHOST_STATE", value_name = "URL")]
    pub(crate) state: Option<String>,
}

impl StateArg {
    pub(crate) async fn open(&self, home: &Path) -> Result<Arc<dyn StateStore>, Failure> {
        fnhost_cluster::state::open(home, self.state.as_deref())
            .await
            .map_err(usage)
    }
}

/// The manager to talk to.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ManagerArgs {
    /// The manager's URL, as `fnhost manage` prints it
    /// (http://HOST:PORT, or https://HOST:PORT with --tls-cert).
    #[arg(long, env = "FNHOST_MANAGER", value_name = "URL")]
    manager: String,
    /// A join token from `fnhost workers token` on the manager's machine.
    #[arg(
        long,
        env = "FNHOST_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    token: String,
    #[command(flatten)]
    ca: CaArg,
}

/// Certificates to trust for an https manager.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct CaArg {
    /// Also trust the certificates in this PEM file for an https manager
    /// (its private CA, or the self-signed certificate given to `fnhost
    /// manage --tls-cert`), besides the system's root certificates.
    #[arg(long, env = "FNHOST_CA_CERT", value_name = "FILE")]
    ca_cert: Option<PathBuf>,
}

impl CaArg {
    /// A client of the manager at `url` with `token`, trusting the CA.
    fn client(&self, url: &str, token: String) -> Result<ManagerClient, Failure> {
        let client = ManagerClient::new(url, token).map_err(usage)?;
        match &self.ca_cert {
            Some(file) => client.with_ca_cert(file).map_err(usage),
            None => Ok(client),
        }
    }
}

impl ManagerArgs {
    fn client(&self) -> Result<ManagerClient, Failure> {
        self.ca.client(&self.manager, self.token.clone())
    }
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C), listened to from this call
/// on: a signal that comes while a worker registers or a gateway reads
/// its first routes stops it as one that comes later does, where
/// `fnhost_core::http::shutdown_signal` would listen only once first
/// polled and leave the signal's default action (the process killed, no
/// drain, no exit status) until then. Call it inside the runtime.
fn stop_signal() -> Result<impl std::future::Future<Output = ()> + Send + 'static, Failure> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let listen = |kind: SignalKind| {
            signal(kind).map_err(|e| message(format!("cannot listen for signals: {e}")))
        };
        let (mut term, mut int) = (
            listen(SignalKind::terminate())?,
            listen(SignalKind::interrupt())?,
        );
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    Ok(fnhost_core::http::shutdown_signal())
}

fn labels(text: &Option<String>) -> Result<std::collections::BTreeMap<String, String>, Failure> {
    match text {
        Some(t) => fnhost_cluster::parse_labels(t).map_err(usage),
        None => Ok(Default::default()),
    }
}

/// Arguments of `fnhost worker`.
#[derive(Debug, clap::Args)]
pub(crate) struct WorkerArgs {
    #[command(flatten)]
    manager: ManagerArgs,
    /// Its name in the cluster (default: the host name).
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// The address its app instances listen on (and gateways reach).
    #[arg(long, default_value = "127.0.0.1", value_name = "ADDR")]
    host: IpAddr,
    /// The first port its app instances listen on, the next ones after
    /// it (0: any free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Labels for placement constraints: k=v,k2=v2.
    #[arg(long, value_name = "K=V,...")]
    labels: Option<String>,
    /// The most app instances it runs.
    #[arg(long, default_value_t = 16, value_name = "N")]
    capacity: i64,
    /// The content cache shared by every app and version (default:
    /// HOME/worker-cache).
    #[arg(long, value_name = "DIR")]
    cache: Option<PathBuf>,
    /// How long a draining instance keeps serving while gateways learn
    /// it, in milliseconds.
    #[arg(long, default_value_t = 2000, value_name = "MS")]
    drain_delay_ms: u64,
}

pub(crate) fn worker(args: WorkerArgs, home: &Path) -> CmdResult {
    let mut w = Worker::new(args.manager.manager.clone(), args.manager.token.clone())
        .with_host(args.host)
        .with_port(args.port)
        .with_labels(labels(&args.labels)?)
        .with_capacity(args.capacity)
        .with_cache(args.cache.unwrap_or_else(|| home.join("worker-cache")))
        .with_drain_delay(Duration::from_millis(args.drain_delay_ms))
        .with_log(Arc::new(|l: &str| eprintln!("fnhost: {l}")));
    if let Some(n) = args.name {
        w = w.with_name(n);
    }
    if let Some(ca) = args.manager.ca.ca_cert {
        w = w.with_ca_cert(ca);
    }
    runtime()?.block_on(async move {
        w.run(stop_signal()?).await.map_err(|e| match e {
            fnhost_cluster::Error::Unauthorized { .. } | fnhost_cluster::Error::Invalid(_) => {
                usage(e)
            }
            e => message(e),
        })
    })
}

/// Arguments of `fnhost gateway`.
#[derive(Debug, clap::Args)]
pub(crate) struct GatewayArgs {
    #[command(flatten)]
    manager: ManagerArgs,
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1", value_name = "ADDR")]
    host: IpAddr,
    /// The port to listen on (0: any free port).
    #[arg(long, default_value_t = 8080)]
    port: u16,
}

pub(crate) fn gateway(args: GatewayArgs) -> CmdResult {
    let g = Gateway::from_client(args.manager.client()?)
        .with_log(Arc::new(|l: &str| eprintln!("fnhost: {l}")));
    let addr = SocketAddr::new(args.host, args.port);
    runtime()?.block_on(async move {
        let stop = stop_signal()?;
        let server = g
            .bind(addr)
            .await
            .map_err(|e| usage(format!("cannot listen on {addr}: {e}")))?;
        println!("listening on http://{}", server.local_addr());
        let _ = std::io::stdout().flush();
        eprintln!(
            "fnhost: gateway: APP.localhost:{0} reaches an app, APP-SLOT.localhost:{0} a slot",
            server.local_addr().port()
        );
        server.serve(stop).await;
        Ok(())
    })
}

/// Arguments of `fnhost fetch`.
#[derive(Debug, clap::Args)]
pub(crate) struct FetchArgs {
    #[command(flatten)]
    manager: ManagerArgs,
    /// The app.
    #[arg(long, value_name = "APP")]
    app: String,
    /// The slot (default: production).
    #[arg(long, value_name = "SLOT")]
    slot: Option<String>,
    /// The folder to write the app into (created; must be empty).
    #[arg(long, value_name = "DIR")]
    dest: PathBuf,
}

pub(crate) fn fetch(args: FetchArgs) -> CmdResult {
    let slot = args.slot.unwrap_or_else(|| PRODUCTION.to_string());
    if args.dest.exists()
        && std::fs::read_dir(&args.dest)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        return Err(usage(format!(
            "--dest {}: the folder is not empty; give a new or empty folder",
            args.dest.display()
        )));
    }
    let client = args.manager.client()?;
    runtime()?.block_on(async move {
        let active: fnhost_cluster::protocol::ActiveContent = client
            .get(
                &format!("/apps/{}/slots/{slot}/active", args.app),
                Duration::from_secs(30),
            )
            .await
            .map_err(message)?;
        let cache_dir = std::env::temp_dir().join(format!("fnhost-fetch-{}", std::process::id()));
        let cache = ContentCache::open(&cache_dir).map_err(message)?;
        let done = async {
            let manifest = cache.fetch(&client, &active.manifest).await?;
            cache.copy_into(&manifest, &args.dest)?;
            Ok::<_, fnhost_cluster::Error>(manifest.files.len())
        }
        .await;
        let _ = std::fs::remove_dir_all(&cache_dir);
        let files = done.map_err(message)?;
        eprintln!(
            "fnhost: fetched {}/{slot} deployment {} ({files} files, manifest {}) into {}",
            args.app,
            active.deployment,
            active.manifest,
            args.dest.display()
        );
        Ok(())
    })
}

/// Arguments of `fnhost apps scale`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("count").required(true).args(["instances", "min", "every_worker", "remove"])))]
pub(crate) struct ScaleArgs {
    /// The app.
    app: String,
    /// The slot (default: production).
    #[arg(long, value_name = "SLOT")]
    slot: Option<String>,
    /// Run exactly N instances (each on another worker).
    #[arg(long, value_name = "N")]
    instances: Option<i64>,
    /// Run at least N instances, more by in-flight load (needs --max).
    #[arg(long, value_name = "N", requires = "max")]
    min: Option<i64>,
    /// Run at most M instances (with --min).
    #[arg(long, value_name = "M", requires = "min")]
    max: Option<i64>,
    /// Run one instance on every worker (with the labels).
    #[arg(long)]
    every_worker: bool,
    /// Stop running the slot on workers.
    #[arg(long)]
    remove: bool,
    /// Only on workers with these labels: k=v,k2=v2.
    #[arg(long, value_name = "K=V,...")]
    labels: Option<String>,
    #[command(flatten)]
    state: StateArg,
}

pub(crate) fn scale(args: ScaleArgs, home: &Path) -> CmdResult {
    let slot = args.slot.clone().unwrap_or_else(|| PRODUCTION.to_string());
    let site = fnhost_deploy::Site::open(home).map_err(usage)?;
    if !site.slots(&args.app).map_err(usage)?.contains(&slot) {
        return Err(usage(format!(
            "{}: no slot {slot:?}; deploy to it first (`fnhost deploy {} DIR --slot {slot}`)",
            args.app, args.app
        )));
    }
    let placement = match (args.instances, args.min, args.max, args.every_worker) {
        (Some(n), ..) if n >= 0 => Placement::fixed(&args.app, &slot, n),
        (Some(n), ..) => return Err(usage(format!("--instances {n}: give 0 or more"))),
        (None, Some(min), Some(max), _) if min >= 0 && max >= min && max > 0 => {
            Placement::auto(&args.app, &slot, min, max)
        }
        (None, Some(min), Some(max), _) => {
            return Err(usage(format!(
                "--min {min} --max {max}: give 0 <= min <= max, max at least 1"
            )));
        }
        (None, _, _, true) => Placement::every_worker(&args.app, &slot),
        _ => Placement::fixed(&args.app, &slot, 0),
    }
    .with_labels(labels(&args.labels)?);
    runtime()?.block_on(async move {
        let state = args.state.open(home).await?;
        if args.remove {
            state
                .remove_placement(&args.app, &slot)
                .await
                .map_err(message)?;
            eprintln!("fnhost: {}/{slot} no longer runs on workers", args.app);
            return Ok(());
        }
        state.set_placement(&placement).await.map_err(message)?;
        let what = match (args.instances, args.every_worker) {
            (Some(n), _) => format!("{n} instance(s)"),
            (None, true) => "one instance on every worker".into(),
            _ => format!(
                "{} to {} instances by load",
                placement.min_instances, placement.max_instances
            ),
        };
        eprintln!(
            "fnhost: {}/{slot}: {what}{}; the manager places them within a second",
            args.app,
            if placement.labels.is_empty() {
                String::new()
            } else {
                format!(" on workers labelled {}", args.labels.unwrap_or_default())
            }
        );
        Ok(())
    })
}

/// Arguments of `fnhost workers token`.
#[derive(Debug, clap::Args)]
pub(crate) struct TokenArgs {
    #[command(flatten)]
    state: StateArg,
}

pub(crate) fn token(args: TokenArgs, home: &Path) -> CmdResult {
    runtime()?.block_on(async move {
        let state = args.state.open(home).await?;
        let token = fnhost_cluster::state::new_join_token(&*state)
            .await
            .map_err(message)?;
        println!("{token}");
        eprintln!(
            "fnhost: a join token for workers and gateways (stored hashed in {}); it is shown once",
            state.describe()
        );
        Ok(())
    })
}

/// Arguments of `fnhost workers drain`.
#[derive(Debug, clap::Args)]
pub(crate) struct DrainArgs {
    /// The worker.
    name: String,
    #[command(flatten)]
    state: StateArg,
}

pub(crate) fn drain(args: DrainArgs, home: &Path) -> CmdResult {
    runtime()?.block_on(async move {
        let state = args.state.open(home).await?;
        if !state.request_drain(&args.name).await.map_err(message)? {
            return Err(usage(format!(
                "no worker {:?} (`fnhost workers list` shows them)",
                args.name
            )));
        }
        eprintln!(
            "fnhost: worker {} drains at its next heartbeat: it finishes its requests, then leaves",
            args.name
        );
        Ok(())
    })
}

/// Where `fnhost workers list` reads the cluster's workers.
#[derive(Debug, clap::Args)]
pub(crate) struct ClusterListArgs {
    /// A manager to ask (with --token) instead of the home's state.
    #[arg(long, value_name = "URL", requires = "token")]
    manager: Option<String>,
    /// A join token (with --manager).
    #[arg(long, value_name = "TOKEN", requires = "manager")]
    token: Option<String>,
    #[command(flatten)]
    ca: CaArg,
    #[command(flatten)]
    state: StateArg,
}

/// The cluster's workers: from the manager, else from the state store
/// when one is configured or exists in the home; `None` when there is no
/// cluster.
pub(crate) fn cluster_workers(
    args: &ClusterListArgs,
    home: &Path,
) -> Result<Option<Vec<WorkerView>>, Failure> {
    if let (Some(url), Some(token)) = (&args.manager, &args.token) {
        let client = args.ca.client(url, token.clone())?;
        return runtime()?.block_on(async move {
            client
                .get("/workers", Duration::from_secs(10))
                .await
                .map(Some)
                .map_err(message)
        });
    }
    if args.state.state.is_none() && !home.join(fnhost_cluster::state::SQLITE_FILE).exists() {
        return Ok(None);
    }
    runtime()?.block_on(async move {
        let state = args.state.open(home).await?;
        fnhost_cluster::manager::worker_views_from(
            &*state,
            fnhost_cluster::manager::DEFAULT_HEARTBEAT,
        )
        .await
        .map(Some)
        .map_err(message)
    })
}

/// Prints the cluster's workers as text.
pub(crate) fn print_workers(views: &[WorkerView]) {
    if views.is_empty() {
        eprintln!(
            "fnhost: no cluster workers yet (`fnhost workers token`, then `fnhost worker --manager URL --token TOKEN`)"
        );
        return;
    }
    println!("NAME\tSTATE\tLABELS\tAPPS\tIN-FLIGHT\tLAST-HEARTBEAT");
    for w in views {
        let labels: Vec<String> = w.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!(
            "{}\t{}\t{}\t{}\t{}\t{:.1}s ago",
            w.name,
            w.state,
            if labels.is_empty() {
                "-".into()
            } else {
                labels.join(",")
            },
            if w.apps.is_empty() {
                "-".into()
            } else {
                w.apps.join(",")
            },
            w.in_flight,
            w.last_heartbeat_ms_ago as f64 / 1000.0
        );
    }
}
