//! The continuous deployment commands: `source set|show|clear`, `sync`,
//! `watch`. A thin layer over `fnhost_deploy::cd`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use fnhost_deploy::cd::{
    BuildKind, ContinuousDeployer, SourceConfig, SourceCredentials, SourceKind, SourceState,
    SyncOutcome,
};
use fnhost_deploy::{Error, PRODUCTION, Site};
use serde_json::{Value, json};

use crate::deploy::{Progress, failure, read_password};
use crate::log::log_line;
use crate::{CmdResult, Failure, Output, print_json};

/// The continuous deployment commands, flattened into the top-level list.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Set, show or clear the source a slot follows (continuous deployment).
    #[command(subcommand)]
    Source(SourceCommand),
    /// Deploy a slot's source once if it moved since the last deployment.
    Sync(SyncArgs),
    /// Keep every slot with a source in step with it until stopped
    /// (Ctrl-C or SIGTERM).
    Watch(WatchArgs),
}

/// `fnhost source ...`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum SourceCommand {
    /// Follow a source: store it, deploy its current content, and make the
    /// slot read-only to direct deployments.
    Set(Box<SetArgs>),
    /// Show the source a slot follows and what was deployed from it.
    Show {
        /// The app.
        app: String,
        /// The slot.
        #[arg(long, short, default_value = PRODUCTION)]
        slot: String,
    },
    /// Set the secret webhooks to the slot are signed with (read from
    /// stdin, stored owner-only): `POST {base}/deploy` then needs GitHub's
    /// `X-Hub-Signature-256` (or GitLab's `X-Gitlab-Token`).
    WebhookSecret {
        /// The app.
        app: String,
        /// The slot.
        #[arg(long, short, default_value = PRODUCTION)]
        slot: String,
        /// Remove the secret instead: webhooks are then checked by the
        /// deployment credentials only.
        #[arg(long)]
        clear: bool,
    },
    /// Stop following the source: the slot is writable again; the history
    /// (and a built-in repository) stay.
    Clear {
        /// The app.
        app: String,
        /// The slot.
        #[arg(long, short, default_value = PRODUCTION)]
        slot: String,
    },
}

/// Arguments of `fnhost source set`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("kind").required(true).args(["git", "local_git", "folder", "hg", "zip"])))]
pub(crate) struct SetArgs {
    /// The app.
    app: String,
    /// The slot.
    #[arg(long, short, default_value = PRODUCTION)]
    slot: String,
    /// A git repository: a path, file://, git://, http(s)://, ssh:// URL.
    #[arg(long, value_name = "URL")]
    git: Option<String>,
    /// The slot's built-in repository under the home, to `git push` to.
    #[arg(long)]
    local_git: bool,
    /// A synced folder (Dropbox, OneDrive).
    #[arg(long, value_name = "PATH")]
    folder: Option<PathBuf>,
    /// A Mercurial repository: a path or URL.
    #[arg(long, value_name = "URL")]
    hg: Option<String>,
    /// A zip file.
    #[arg(long, value_name = "FILE")]
    zip: Option<PathBuf>,
    /// The branch (or ref) to follow (git, local git: default main; hg:
    /// default).
    #[arg(long, short, value_name = "BRANCH")]
    branch: Option<String>,
    /// How the source is built before it is deployed.
    #[arg(long, value_enum, default_value_t = BuildArg::None)]
    build: BuildArg,
    /// How long a build may take.
    #[arg(long, value_name = "SECS", default_value_t = 1800)]
    build_timeout: u64,
    /// For a folder: how long it must be quiet before it is taken.
    #[arg(long, value_name = "MS")]
    quiet_period: Option<u64>,
    /// The user for the source (git over HTTP(S) or SSH).
    #[arg(long, value_name = "USER")]
    user: Option<String>,
    /// Read the password or token for --user from stdin (stored owner-only
    /// under the home, never printed).
    #[arg(long, requires = "user")]
    password_stdin: bool,
    /// An SSH private key for the source (copied owner-only under the home).
    #[arg(long, value_name = "FILE", conflicts_with = "password_stdin")]
    ssh_key: Option<PathBuf>,
    /// The SSH server's host key fingerprint, as `ssh-keygen -lf` prints it
    /// (SHA256:...); without it the host must be in ~/.ssh/known_hosts.
    #[arg(long, value_name = "SHA256:...")]
    ssh_host_key: Option<String>,
    /// Configure only: no initial deployment.
    #[arg(long)]
    no_deploy: bool,
}

/// `--build`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum BuildArg {
    /// Copy only.
    None,
    /// Detect: npm, pip, cargo.
    Auto,
    /// The steps of fnhost-build.json.
    Pipeline,
}

/// Arguments of `fnhost sync`.
#[derive(Debug, clap::Args)]
pub(crate) struct SyncArgs {
    /// The app.
    app: String,
    /// The slot.
    #[arg(long, short, default_value = PRODUCTION)]
    slot: String,
    /// Deploy the source's head even if it was deployed (or failed) already.
    #[arg(long)]
    force: bool,
}

/// Arguments of `fnhost watch`.
#[derive(Debug, clap::Args)]
pub(crate) struct WatchArgs {
    /// The apps to watch (default: all).
    apps: Vec<String>,
    /// Seconds between two looks at each source.
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    interval: f64,
}

pub(crate) fn run(command: Command, home: &Path, out: Output) -> CmdResult {
    let site = Site::open(home).map_err(failure)?;
    match command {
        Command::Source(SourceCommand::Set(a)) => set(site, *a, out),
        Command::Source(SourceCommand::Show { app, slot }) => {
            show(&ContinuousDeployer::new(site), &app, &slot, out.json)
        }
        Command::Source(SourceCommand::Clear { app, slot }) => {
            let cd = ContinuousDeployer::new(site);
            if cd.clear(&app, &slot).map_err(failure)? {
                eprintln!(
                    "{app}/{slot}: no longer follows a source; direct deployments are allowed again"
                );
            } else {
                eprintln!("{app}/{slot}: had no source");
            }
            Ok(())
        }
        Command::Source(SourceCommand::WebhookSecret { app, slot, clear }) => {
            let cd = ContinuousDeployer::new(site);
            if clear {
                cd.set_webhook_secret(&app, &slot, None).map_err(failure)?;
                eprintln!("{app}/{slot}: webhook secret removed");
            } else {
                let secret = read_password()?;
                cd.set_webhook_secret(&app, &slot, Some(secret.as_bytes()))
                    .map_err(failure)?;
                eprintln!(
                    "{app}/{slot}: webhook secret set; webhooks need X-Hub-Signature-256 (or X-Gitlab-Token)"
                );
            }
            Ok(())
        }
        Command::Sync(a) => sync(site, a, out),
        Command::Watch(a) => watch(site, a),
    }
}

fn deployer(site: Site, verbose: bool) -> (ContinuousDeployer, Arc<Progress>) {
    let progress = Arc::new(Progress::new(verbose));
    let cd = ContinuousDeployer::new(site).with_observer(progress.clone());
    (cd, progress)
}

fn set(site: Site, a: SetArgs, out: Output) -> CmdResult {
    let (kind, location) = if let Some(url) = a.git {
        (SourceKind::Git, url)
    } else if a.local_git {
        (SourceKind::LocalGit, String::new())
    } else if let Some(p) = a.folder {
        (SourceKind::Folder, p.display().to_string())
    } else if let Some(url) = a.hg {
        (SourceKind::Hg, url)
    } else if let Some(p) = a.zip {
        (SourceKind::Zip, p.display().to_string())
    } else {
        return Err(Failure::Usage(
            "give one of --git URL, --local-git, --folder PATH, --hg URL, --zip FILE".into(),
        ));
    };
    if a.branch.is_some()
        && !matches!(
            kind,
            SourceKind::Git | SourceKind::LocalGit | SourceKind::Hg
        )
    {
        return Err(Failure::Usage(
            "--branch is for --git, --local-git and --hg".into(),
        ));
    }
    let mut config = SourceConfig::new(kind, location)
        .with_build(match a.build {
            BuildArg::None => BuildKind::None,
            BuildArg::Auto => BuildKind::Auto,
            BuildArg::Pipeline => BuildKind::Pipeline,
        })
        .with_build_timeout(Duration::from_secs(a.build_timeout));
    if let Some(b) = a.branch {
        config = config.with_branch(b);
    }
    if let Some(q) = a.quiet_period {
        config = config.with_quiet_period(Duration::from_millis(q));
    }
    if let Some(k) = &a.ssh_host_key {
        if !k.starts_with("SHA256:") {
            return Err(Failure::Usage(format!(
                "--ssh-host-key {k}: give the SHA256 fingerprint as `ssh-keygen -lf KEY.pub` prints it (SHA256:...)"
            )));
        }
        config = config.with_ssh_host_key(k.clone());
    }
    let credentials = if a.password_stdin {
        Some(SourceCredentials::Password {
            username: a.user.clone().unwrap_or_default(),
            password: read_password()?,
        })
    } else if let Some(key) = &a.ssh_key {
        let data = std::fs::read(key)
            .map_err(|e| Failure::Usage(format!("cannot read {}: {e}", key.display())))?;
        Some(SourceCredentials::SshKey {
            username: a.user.clone(),
            key: data,
        })
    } else {
        if let Some(u) = &a.user {
            config = config.with_username(u.clone());
        }
        None
    };
    let (cd, progress) = deployer(site, !out.json);
    let config = cd
        .configure(&a.app, &a.slot, config, credentials)
        .map_err(failure)?;
    let (app, slot) = (a.app.as_str(), a.slot.as_str());
    if !out.json {
        println!(
            "{app}/{slot}: follows {}, build {}; read-only to direct deployments",
            config.describe(),
            config.build.as_str()
        );
        if config.kind == SourceKind::LocalGit {
            println!(
                "{app}/{slot}: push to file://{} (branch {})",
                config.location,
                config.branch.as_deref().unwrap_or("main")
            );
        }
    }
    if a.no_deploy {
        if out.json {
            print_json(&source_view(&cd, app, slot)?)?;
        }
        return Ok(());
    }
    let wait = Duration::from_millis(config.quiet_period_ms.unwrap_or(2000) * 3 + 1000);
    let result = cd.sync_when_ready(app, slot, wait);
    progress.finish();
    let code = report(&cd, app, slot, result, out.json, true);
    if out.json {
        print_json(&source_view(&cd, app, slot)?)?;
    }
    code
}

/// A slot's source as `source show --json` (and `sync --json`) print it:
/// where it follows, and what continuous deployment last did.
#[derive(Debug, serde::Serialize)]
struct SourceView<'a> {
    app: &'a str,
    slot: &'a str,
    /// `null` for a slot without a source (direct deployments).
    source: Option<String>,
    #[serde(flatten)]
    config: Option<ConfigView>,
    #[serde(flatten)]
    state: SourceState,
}

#[derive(Debug, serde::Serialize)]
struct ConfigView {
    kind: &'static str,
    location: String,
    branch: Option<String>,
    build: &'static str,
    build_timeout_secs: u64,
    quiet_period_ms: Option<u64>,
    username: Option<String>,
    password: bool,
    ssh_key: bool,
    ssh_host_key: Option<String>,
    configured_time: String,
}

fn source_view<'a>(
    cd: &ContinuousDeployer,
    app: &'a str,
    slot: &'a str,
) -> Result<SourceView<'a>, Failure> {
    let config = cd.config(app, slot).map_err(failure)?;
    let state = cd.state(app, slot).map_err(failure)?;
    Ok(SourceView {
        app,
        slot,
        source: config.as_ref().map(|c| c.describe()),
        config: config.map(|c| ConfigView {
            kind: c.kind.as_str(),
            build: c.build.as_str(),
            build_timeout_secs: c.build_timeout_secs,
            quiet_period_ms: c.quiet_period_ms,
            password: c.has_password,
            ssh_key: c.has_ssh_key,
            location: c.location,
            branch: c.branch,
            username: c.username,
            ssh_host_key: c.ssh_host_key,
            configured_time: c.configured_time,
        }),
        state,
    })
}

fn show(cd: &ContinuousDeployer, app: &str, slot: &str, json: bool) -> CmdResult {
    let v = source_view(cd, app, slot)?;
    if json {
        return print_json(&v);
    }
    let (Some(source), Some(c)) = (&v.source, &v.config) else {
        println!("{app}/{slot}: no source (direct deployments)");
        return Ok(());
    };
    println!("{app}/{slot}: follows {source}");
    println!("  build:     {}", c.build);
    if c.kind == "local-git" {
        println!("  push to:   file://{}", c.location);
    }
    if let Some(u) = &c.username {
        let secret = if c.password {
            " (password stored)"
        } else if c.ssh_key {
            " (SSH key stored)"
        } else {
            ""
        };
        println!("  user:      {u}{secret}");
    }
    if let Some(k) = &c.ssh_host_key {
        println!("  host key:  {k}");
    }
    let or_none = |v: &Option<String>| v.clone().unwrap_or_else(|| "none".to_owned());
    println!(
        "  deployed:  {} (deployment {})",
        or_none(&v.state.deployed_id),
        or_none(&v.state.deployment)
    );
    if v.state.failed_id.is_some() {
        println!(
            "  failed:    {} (deployment {})",
            or_none(&v.state.failed_id),
            or_none(&v.state.failed_deployment)
        );
    }
    Ok(())
}

/// Prints a sync's outcome; the exit code: 0 when the slot is at the
/// source's head or nothing could be done yet (not ready, nothing pushed,
/// another sync running), 1 when a deployment failed (now or before, for
/// this head).
fn report(
    cd: &ContinuousDeployer,
    app: &str,
    slot: &str,
    result: Result<SyncOutcome, Error>,
    json: bool,
    quiet_json: bool,
) -> CmdResult {
    let out = |v: Value| -> CmdResult {
        if json && !quiet_json {
            print_json(&v)?;
        }
        Ok(())
    };
    match result {
        Ok(SyncOutcome::Deployed { deployments }) => {
            for d in &deployments {
                if !json {
                    println!(
                        "{app}/{slot}: deployed {} ({}) as deployment {}",
                        short(&d.source_id),
                        d.message.lines().next().unwrap_or(""),
                        d.id
                    );
                }
            }
            out(json!({
                "result": "deployed",
                "deployments": deployments.iter().map(|d| d.report(false)).collect::<Vec<_>>(),
            }))
        }
        Ok(SyncOutcome::UpToDate { source_id }) => {
            if !json {
                println!("{app}/{slot}: up to date ({})", short(&source_id));
            }
            out(json!({ "result": "up-to-date", "source_id": source_id }))
        }
        Ok(SyncOutcome::AlreadyFailed {
            source_id,
            deployment,
        }) => {
            eprintln!(
                "fnhost: error: {app}/{slot}: {} failed to deploy already (deployment {}); push a fix, or retry with `fnhost sync {app} --slot {slot} --force`",
                short(&source_id),
                deployment.as_deref().unwrap_or("unknown")
            );
            out(
                json!({ "result": "failed-already", "source_id": source_id, "deployment": deployment }),
            )?;
            Err(Failure::Failed)
        }
        Ok(SyncOutcome::NotReady { message }) => {
            if !json {
                println!("{app}/{slot}: not ready ({message}); nothing deployed, try again");
            }
            out(json!({ "result": "not-ready", "message": message }))
        }
        Ok(SyncOutcome::Empty { message }) => {
            if !json {
                println!("{app}/{slot}: nothing to deploy yet ({message})");
            }
            out(json!({ "result": "empty", "message": message }))
        }
        Ok(SyncOutcome::Coalesced) => {
            if !json {
                println!(
                    "{app}/{slot}: a sync is running; it deploys the newest head when it ends"
                );
            }
            out(json!({ "result": "coalesced" }))
        }
        Ok(other) => {
            println!("{app}/{slot}: {other:?}");
            Ok(())
        }
        Err(Error::DeploymentFailed { id, reason, .. }) => {
            if json
                && !quiet_json
                && let Ok(d) = cd.site().deployment(app, &id)
            {
                print_json(&json!({ "result": "failed", "deployment": d.report(true) }))?;
            }
            eprintln!("fnhost: error: deployment {id} to {app}/{slot} failed: {reason}");
            eprintln!(
                "fnhost: the previous deployment stays active; see `fnhost deployments log {app} {id}`"
            );
            Err(Failure::Failed)
        }
        Err(e) => Err(failure(e)),
    }
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

fn sync(site: Site, a: SyncArgs, out: Output) -> CmdResult {
    let (cd, progress) = deployer(site, !out.json);
    let result = cd.sync(&a.app, &a.slot, a.force);
    progress.finish();
    report(&cd, &a.app, &a.slot, result, out.json, false)
}

static STOP: AtomicBool = AtomicBool::new(false);

/// Sets [`STOP`] on Ctrl-C or SIGTERM.
fn stop_on_signals() -> Result<(), Failure> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Message(format!("cannot start: {e}")))?;
    std::thread::spawn(move || {
        rt.block_on(async {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(t) => t,
                    Err(_) => {
                        let _ = tokio::signal::ctrl_c().await;
                        STOP.store(true, Ordering::SeqCst);
                        return;
                    }
                };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            STOP.store(true, Ordering::SeqCst);
        });
    });
    Ok(())
}

fn watch(site: Site, a: WatchArgs) -> CmdResult {
    if !(a.interval.is_finite() && a.interval > 0.0) {
        return Err(Failure::Usage("--interval must be above 0".into()));
    }
    let (cd, _progress) = deployer(site, false);
    let slots = cd.configured(&a.apps).map_err(failure)?;
    stop_on_signals()?;
    log_line!(
        "watching {} slot{} (every {} s); Ctrl-C to stop",
        slots.len(),
        if slots.len() == 1 { "" } else { "s" },
        a.interval
    );
    let reporter = |app: &str, slot: &str, r: &Result<SyncOutcome, Error>| match r {
        Ok(SyncOutcome::Deployed { deployments }) => {
            for d in deployments {
                println!(
                    "{app}/{slot}: deployed {} ({}) as deployment {}",
                    short(&d.source_id),
                    d.message.lines().next().unwrap_or(""),
                    d.id
                );
            }
        }
        Ok(_) => {}
        Err(Error::DeploymentFailed { id, reason, .. }) => {
            log_line!(
                error,
                "error: deployment {id} to {app}/{slot} failed: {reason}"
            );
        }
        Err(e) => log_line!(error, "error: {app}/{slot}: {e}"),
    };
    cd.watch(
        &a.apps,
        Duration::from_secs_f64(a.interval),
        &STOP,
        &reporter,
    )
    .map_err(failure)?;
    log_line!("stopped watching");
    Ok(())
}
