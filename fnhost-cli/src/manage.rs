//! `fnhost manage`: the management endpoint (Kudu's publishing API) for
//! every app of the home.

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use fnhost_deploy::manage::{Limits, LogSink, Manage, Portal};
use fnhost_deploy::{Durability, Site};

use crate::deploy::DurabilityArg;
use crate::log::log_line;
use crate::serve::runtime;
use crate::{CmdResult, Failure, Output};

/// Arguments of `fnhost manage`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1", value_name = "ADDR")]
    host: IpAddr,
    /// The port to listen on (0: any free port).
    #[arg(long, default_value_t = 7072)]
    port: u16,
    /// The largest upload, in MiB.
    #[arg(long, default_value_t = 2048, value_name = "MIB")]
    max_upload_mb: u64,
    /// Uploads received or waiting to be deployed at once (429 beyond).
    #[arg(long, default_value_t = 8, value_name = "N")]
    max_concurrent_uploads: usize,
    /// How deployments flush to disk (as `fnhost deploy --durability`).
    #[arg(long, value_enum, default_value_t = DurabilityArg::Full)]
    durability: DurabilityArg,
    /// Serve HTTPS with this certificate chain (PEM, the server's
    /// certificate first); needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1); needs
    /// --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    #[command(flatten)]
    ftp: crate::ftp::FtpArgs,
    #[command(flatten)]
    state: crate::cluster::StateArg,
    /// Also run a gateway on this port (0: any free port): requests by
    /// host name to the cluster's workers.
    #[arg(long, value_name = "PORT")]
    gateway_port: Option<u16>,
    /// How often workers heartbeat, in milliseconds (three missed make a
    /// worker stale).
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    heartbeat_ms: u64,
    /// The leader lease, in seconds: with several managers on one
    /// PostgreSQL state, another takes over within it.
    #[arg(long, default_value_t = 10, value_name = "SECONDS")]
    lease_ttl: u64,
    /// How long an app scaled by load (`apps scale --min N --max M`)
    /// keeps the instances its highest load of that time asked for, in
    /// seconds: more instances at once, fewer once the load has stayed
    /// lower that long.
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    scale_down_window: u64,
    /// Serve only the API, not the portal's pages at /portal/.
    #[arg(long)]
    no_portal: bool,
    /// Where `fnhost serve` serves the apps, for the functions' URLs the
    /// portal shows.
    #[arg(long, default_value = "http://127.0.0.1:7071", value_name = "URL")]
    functions_url: String,
}

/// How long shutdown waits for requests and deployments in flight.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(60);

pub(crate) fn run(args: Args, home: &Path, out: Output) -> CmdResult {
    let site = Site::open(home)
        .map_err(|e| Failure::Usage(e.to_string()))?
        .with_durability(match args.durability {
            DurabilityArg::Full => Durability::Full,
            DurabilityArg::Process => Durability::Process,
        });
    let addr = SocketAddr::new(args.host, args.port);
    let limits = Limits::default()
        .with_max_upload_bytes(args.max_upload_mb.saturating_mul(1024 * 1024))
        .with_max_concurrent_uploads(args.max_concurrent_uploads)
        .with_shutdown_timeout(SHUTDOWN_DEADLINE);
    let apps = site.apps().map_err(|e| Failure::Usage(e.to_string()))?;
    let ftp_site = site.clone();
    let runtime = runtime()?;
    let state = runtime.block_on(args.state.open(home))?;
    let log: LogSink = crate::log::sink();
    let cluster = fnhost_cluster::manager::Cluster::new(site.clone(), state)
        .with_heartbeat(Duration::from_millis(args.heartbeat_ms))
        .with_lease_ttl(Duration::from_secs(args.lease_ttl))
        .with_scale_down_window(Duration::from_secs(args.scale_down_window))
        .with_log(log.clone());
    let mut manage = Manage::new(site).with_router(cluster.router());
    if !args.no_portal {
        manage = manage.with_portal(
            Portal::default()
                .with_functions_url(&args.functions_url)
                .with_workers(std::sync::Arc::new(cluster.clone())),
        );
    }
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        manage = manage
            .with_tls(cert, key)
            .map_err(|e| Failure::Usage(e.to_string()))?;
    }
    runtime.block_on(async move {
        let tls = args.tls_cert.as_ref().zip(args.tls_key.as_ref());
        let ftp = crate::ftp::bind(
            &args.ftp,
            ftp_site,
            args.host,
            tls,
            limits.clone(),
            log.clone(),
        )
        .await?;
        let server = manage
            .with_limits(limits)
            .with_log(log.clone())
            .bind(addr)
            .await
            .map_err(|e| Failure::Usage(format!("cannot listen on {addr}: {e}")))?;
        let local = server.local_addr();
        let scheme = if server.is_tls() { "https" } else { "http" };
        // The first line on stdout is the address (for scripts and tests).
        crate::print_listening(out, &format!("{scheme}://{local}"), Default::default());
        for app in &apps {
            log_line!("app {0}: {scheme}://{local}/apps/{0}", app.name);
        }
        if !args.no_portal {
            log_line!(
                "portal: {scheme}://{local}/portal/ (accounts: `fnhost portal users add NAME`)"
            );
        }
        if apps.is_empty() {
            log_line!(
                "no apps yet: create one with `fnhost apps create APP` and set its credentials"
            );
        }
        let (stop_ftp, ftp_stopped) = tokio::sync::oneshot::channel::<()>();
        let ftp = ftp.map(|ftp| {
            let how = if ftp.is_tls() {
                "explicit TLS"
            } else {
                "plain"
            };
            let url = format!("ftp://{}", ftp.local_addr());
            if out.json {
                println!("{}", serde_json::json!({"ftp": url, "tls": ftp.is_tls()}));
            } else {
                println!("ftp listening on {url} ({how})");
            }
            let _ = std::io::stdout().flush();
            tokio::spawn(ftp.serve(async move {
                let _ = ftp_stopped.await;
            }))
        });
        let gateway = match args.gateway_port {
            Some(port) => {
                let addr = SocketAddr::new(args.host, port);
                let g = fnhost_cluster::gateway::Gateway::embedded(cluster.clone())
                    .with_log(log.clone())
                    .bind(addr)
                    .await
                    .map_err(|e| Failure::Usage(format!("cannot listen on {addr}: {e}")))?;
                log_line!(
                    "gateway on http://{0} (APP.localhost:{1} reaches an app)",
                    g.local_addr(),
                    g.local_addr().port()
                );
                Some(tokio::spawn(g.serve(fnhost_core::http::shutdown_signal())))
            }
            None => None,
        };
        let leader = cluster.start();
        log_line!(
            "cluster state in {}; workers join with a token from `fnhost workers token`",
            cluster.state().describe()
        );
        log_line!("press Ctrl-C to stop");
        let closing = cluster.clone();
        server
            .serve(async move {
                fnhost_core::http::shutdown_signal().await;
                closing.close();
            })
            .await;
        leader.stop().await;
        let _ = stop_ftp.send(());
        if let Some(ftp) = ftp {
            let _ = ftp.await;
        }
        if let Some(g) = gateway {
            let _ = g.await;
        }
        log_line!("stopped");
        Ok(())
    })
}
