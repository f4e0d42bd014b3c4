//! The deployment commands: `apps`, `deploy`, `deployments`, `rollback`,
//! `swap`, `download`, `export`, `credentials`, `settings`, `fsck`, `gc`.

use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};
use std::time::Duration;

use fnhost_deploy::{
    AppInfo, Content, DeployRequest, Deployment, Durability, Error, LogEntry, Observer, PRODUCTION,
    Site,
};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Value, json};

use crate::{CmdResult, Failure, print_json};

/// The deployment commands, flattened into the top-level command list.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Create, list or delete apps in the home folder.
    #[command(subcommand)]
    Apps(AppsCommand),
    /// Deploy a folder or a zip to an app's slot (atomically; a broken app
    /// is never activated).
    Deploy(DeployArgs),
    /// List an app's deployments (newest first), or show one, or its log.
    Deployments(DeploymentsArgs),
    /// Activate an earlier successful deployment (default: the one before
    /// the active one).
    Rollback(RollbackArgs),
    /// Exchange two slots' active deployments atomically.
    Swap(SwapArgs),
    /// Download a slot's active content as a zip.
    Download(DownloadArgs),
    /// Export an app's active content as a new git repository.
    Export(ExportArgs),
    /// Set, check or reset an app's deployment credentials.
    #[command(subcommand)]
    Credentials(CredentialsCommand),
    /// List, set or delete a slot's app settings (the functions'
    /// environment and `%NAME%` in their bindings).
    #[command(subcommand)]
    Settings(SettingsCommand),
    /// Verify every manifest and stored file; report what is damaged.
    Fsck(FsckArgs),
    /// Remove stored files that no deployment uses.
    Gc(GcArgs),
}

/// `fnhost apps ...`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum AppsCommand {
    /// Create an app (with its production slot).
    Create {
        /// The app's name (letters, digits and `-`).
        app: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the apps with their slots and active deployments.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete an app with its history and credentials.
    Delete {
        /// The app.
        app: String,
    },
}

/// Arguments of `fnhost deploy`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("content").required(true).args(["zip", "dir"])))]
pub(crate) struct DeployArgs {
    /// The app.
    app: String,
    /// The slot.
    #[arg(long, short, default_value = PRODUCTION)]
    slot: String,
    /// Deploy this zip as it is.
    #[arg(long, value_name = "FILE")]
    zip: Option<PathBuf>,
    /// Deploy this folder (after .funcignore).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// What the deployment is about.
    #[arg(long, short, default_value = "")]
    message: String,
    /// Who made it.
    #[arg(long, default_value = "")]
    author: String,
    /// Fail at once if another deployment to the slot is running.
    #[arg(long)]
    no_wait: bool,
    /// `full` flushes every new file to disk before activation (survives a
    /// power cut); `process` flushes records and pointers only (survives a
    /// crash or kill of fnhost, not a power cut; faster for many files).
    #[arg(long, value_enum, default_value_t = DurabilityArg::Full)]
    durability: DurabilityArg,
    /// Print the record as JSON.
    #[arg(long)]
    json: bool,
}

/// `--durability`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum DurabilityArg {
    /// Flush everything before activation.
    Full,
    /// Flush records and pointers only.
    Process,
}

/// Arguments of `fnhost deployments`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct DeploymentsArgs {
    #[command(subcommand)]
    command: Option<DeploymentsCommand>,
    /// The app.
    app: Option<String>,
    /// Only this slot (deployed to it, or active in it).
    #[arg(long, short)]
    slot: Option<String>,
    /// Print a JSON array.
    #[arg(long)]
    json: bool,
}

/// `fnhost deployments show|log`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum DeploymentsCommand {
    /// Show one deployment's record.
    Show {
        /// The app.
        app: String,
        /// The deployment id.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one deployment's log.
    Log {
        /// The app.
        app: String,
        /// The deployment id.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Arguments of `fnhost rollback`.
#[derive(Debug, clap::Args)]
pub(crate) struct RollbackArgs {
    /// The app.
    app: String,
    /// The deployment to activate (default: the one before the active).
    id: Option<String>,
    /// The slot.
    #[arg(long, short, default_value = PRODUCTION)]
    slot: String,
    /// Print the activated record as JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `fnhost swap`.
#[derive(Debug, clap::Args)]
pub(crate) struct SwapArgs {
    /// The app.
    app: String,
    /// One slot.
    slot_a: String,
    /// The other slot.
    slot_b: String,
}

/// Arguments of `fnhost download`.
#[derive(Debug, clap::Args)]
pub(crate) struct DownloadArgs {
    /// The app.
    app: String,
    /// The slot.
    #[arg(long, short, default_value = PRODUCTION)]
    slot: String,
    /// The zip to write.
    #[arg(long, short, value_name = "FILE")]
    output: PathBuf,
    /// Add a local.settings.json made from the slot's app settings.
    #[arg(long)]
    include_settings: bool,
}

/// Arguments of `fnhost export`.
#[derive(Debug, clap::Args)]
pub(crate) struct ExportArgs {
    /// The app.
    app: String,
    /// The slot.
    #[arg(long, short, default_value = PRODUCTION)]
    slot: String,
    /// The new repository's folder (must not exist, or be empty).
    #[arg(long, value_name = "DIR")]
    git: PathBuf,
}

/// `fnhost credentials ...`; passwords are read from stdin.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum CredentialsCommand {
    /// Set the app's deployment user and password (password on stdin).
    Set {
        /// The app.
        app: String,
        /// The user name.
        #[arg(long, short)]
        user: String,
    },
    /// Check a user and password (password on stdin); exit 1 if wrong.
    Check {
        /// The app.
        app: String,
        /// The user name.
        #[arg(long, short)]
        user: String,
    },
    /// Set a new generated password, printed once to stdout.
    Reset {
        /// The app.
        app: String,
        /// The user name.
        #[arg(long, short)]
        user: String,
    },
}

/// `fnhost settings ...`: a slot's app settings, which `serve --app`
/// applies (a running one reloads when they change) and `download
/// --include-settings` writes into local.settings.json.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum SettingsCommand {
    /// List the settings, one NAME=VALUE a line, sorted by name.
    List {
        /// The app.
        app: String,
        /// The slot.
        #[arg(long, short, default_value = PRODUCTION)]
        slot: String,
        /// Print a JSON object instead.
        #[arg(long)]
        json: bool,
    },
    /// Add or change settings; the others stay.
    Set {
        /// The app.
        app: String,
        /// The settings, each NAME=VALUE (the value may contain `=`).
        #[arg(required = true, value_name = "NAME=VALUE")]
        settings: Vec<String>,
        /// The slot.
        #[arg(long, short, default_value = PRODUCTION)]
        slot: String,
    },
    /// Remove settings by name (a name not set is not an error).
    Delete {
        /// The app.
        app: String,
        /// The names.
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
        /// The slot.
        #[arg(long, short, default_value = PRODUCTION)]
        slot: String,
    },
}

/// Arguments of `fnhost fsck`.
#[derive(Debug, clap::Args)]
pub(crate) struct FsckArgs {
    /// Only this app (default: the whole home, and unused stored files).
    app: Option<String>,
    /// Print a JSON report.
    #[arg(long)]
    json: bool,
}

/// Arguments of `fnhost gc`.
#[derive(Debug, clap::Args)]
pub(crate) struct GcArgs {
    /// Print a JSON report.
    #[arg(long)]
    json: bool,
}

/// Runs a deployment command in the home folder `home`.
pub(crate) fn run(command: Command, home: &Path) -> CmdResult {
    let site = Site::open(home).map_err(failure)?;
    match command {
        Command::Apps(c) => apps(&site, c),
        Command::Deploy(a) => deploy(&site, a),
        Command::Deployments(a) => deployments(&site, a),
        Command::Rollback(a) => {
            let d = site
                .rollback(&a.app, &a.slot, a.id.as_deref())
                .map_err(failure)?;
            if a.json {
                print_json(&deployment_json(&d, false))
            } else {
                println!("{}/{}: active deployment is now {}", a.app, a.slot, d.id);
                Ok(())
            }
        }
        Command::Swap(a) => {
            site.swap(&a.app, &a.slot_a, &a.slot_b).map_err(failure)?;
            for slot in [&a.slot_a, &a.slot_b] {
                let active = site.active(&a.app, slot).map_err(failure)?;
                println!(
                    "{}/{slot}: {}",
                    a.app,
                    active
                        .map(|x| x.deployment)
                        .unwrap_or_else(|| "(none)".into())
                );
            }
            Ok(())
        }
        Command::Download(a) => {
            let d = site
                .download(&a.app, &a.slot, a.include_settings, &a.output)
                .map_err(failure)?;
            eprintln!(
                "wrote {} (deployment {}, {} files)",
                a.output.display(),
                d.id,
                d.files
            );
            Ok(())
        }
        Command::Export(a) => {
            let commit = site.export_git(&a.app, &a.slot, &a.git).map_err(failure)?;
            eprintln!("created {} at commit {commit}", a.git.display());
            Ok(())
        }
        Command::Credentials(c) => credentials(&site, c),
        Command::Settings(c) => settings(&site, c),
        Command::Fsck(a) => {
            let report = site.fsck(a.app.as_deref()).map_err(failure)?;
            if a.json {
                print_json(&json!({
                    "ok": report.is_ok(),
                    "manifests": report.manifests,
                    "blobs": report.blobs,
                    "bytes": report.bytes,
                    "problems": report.problems,
                    "notes": report.notes,
                }))?;
            } else {
                for p in &report.problems {
                    println!("damaged: {p}");
                }
                for n in &report.notes {
                    eprintln!("note: {n}");
                }
                eprintln!(
                    "checked {} manifests and {} stored files ({} bytes): {}",
                    report.manifests,
                    report.blobs,
                    report.bytes,
                    if report.is_ok() {
                        "no damage".to_string()
                    } else {
                        format!("{} problems", report.problems.len())
                    }
                );
            }
            if report.is_ok() {
                Ok(())
            } else {
                Err(Failure::Failed)
            }
        }
        Command::Gc(a) => {
            let r = site.gc().map_err(failure)?;
            if a.json {
                print_json(&json!({ "blobs": r.blobs, "temporary": r.temporary }))
            } else {
                eprintln!(
                    "removed {} unused stored files and {} temporary files",
                    r.blobs, r.temporary
                );
                Ok(())
            }
        }
    }
}

/// Maps a library error to an exit code: what the user must fix in the
/// command or the environment is 2, a failed operation is 1.
pub(crate) fn failure(e: Error) -> Failure {
    match e {
        Error::InvalidName { .. }
        | Error::AppNotFound { .. }
        | Error::AppExists { .. }
        | Error::DeploymentNotFound { .. }
        | Error::NoActiveDeployment { .. }
        | Error::Io { .. } => Failure::Usage(e.to_string()),
        _ => Failure::Message(e.to_string()),
    }
}

fn app_json(a: &AppInfo) -> Value {
    json!({
        "name": a.name,
        "created_time": a.created_time,
        "slots": a.slots.iter().map(|s| json!({
            "name": s.name,
            "active": s.active,
            "generation": s.generation,
            "continuous_deployment": s.continuous_deployment,
        })).collect::<Vec<_>>(),
    })
}

fn apps(site: &Site, c: AppsCommand) -> CmdResult {
    match c {
        AppsCommand::Create { app, json } => {
            let info = site.create_app(&app).map_err(failure)?;
            if json {
                print_json(&app_json(&info))
            } else {
                eprintln!("created app {app} (slot {PRODUCTION})");
                Ok(())
            }
        }
        AppsCommand::List { json } => {
            let apps = site.apps().map_err(failure)?;
            if json {
                return print_json(&apps.iter().map(app_json).collect::<Vec<_>>());
            }
            for a in &apps {
                for s in &a.slots {
                    println!(
                        "{}\t{}\t{}{}",
                        a.name,
                        s.name,
                        s.active.as_deref().unwrap_or("-"),
                        s.continuous_deployment
                            .as_deref()
                            .map(|c| format!("\t(continuous deployment from {c})"))
                            .unwrap_or_default()
                    );
                }
            }
            Ok(())
        }
        AppsCommand::Delete { app } => {
            site.delete_app(&app).map_err(failure)?;
            eprintln!("deleted app {app}");
            Ok(())
        }
    }
}

/// Shows progress on a terminal; silent otherwise (apart from messages).
pub(crate) struct Progress {
    bar: Option<ProgressBar>,
    verbose: bool,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress").finish_non_exhaustive()
    }
}

impl Progress {
    pub(crate) fn new(verbose: bool) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg} {pos}/{len} files")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Progress { bar, verbose }
    }

    fn say(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Observer for Progress {
    fn waiting(&self, holder: Option<&str>) {
        self.say(&format!(
            "fnhost: a deployment is in progress ({}); waiting for it to finish",
            holder.unwrap_or("id unknown")
        ));
    }

    fn status(&self, d: &Deployment) {
        if let Some(bar) = &self.bar {
            bar.set_message(d.status.to_string());
        }
    }

    fn progress(&self, done: u64, total: u64) {
        if let Some(bar) = &self.bar {
            bar.set_length(total);
            bar.set_position(done);
        }
    }

    fn log(&self, entry: &LogEntry) {
        if self.verbose || entry.level != fnhost_deploy::Level::Info {
            self.say(&format!("{}: {}", entry.level, entry.message));
        }
    }
}

fn deploy(site: &Site, a: DeployArgs) -> CmdResult {
    let content = match (a.zip, a.dir) {
        (Some(z), None) => Content::Zip(z),
        (None, Some(d)) => Content::Folder(d),
        _ => return Err(Failure::Usage("give one of --zip FILE or --dir DIR".into())),
    };
    let progress = Progress::new(!a.json);
    let site = site.clone().with_durability(match a.durability {
        DurabilityArg::Full => Durability::Full,
        DurabilityArg::Process => Durability::Process,
    });
    let result = site.deploy(
        DeployRequest::new(a.app.clone(), content)
            .with_slot(a.slot.clone())
            .with_message(a.message)
            .with_author(a.author)
            .with_wait(!a.no_wait)
            .with_observer(&progress),
    );
    progress.finish();
    match result {
        Ok(outcome) => {
            let d = &outcome.deployment;
            if a.json {
                let mut v = deployment_json(d, true);
                v["unchanged"] = json!(outcome.unchanged);
                print_json(&v)?;
            } else if outcome.unchanged {
                println!(
                    "{}/{}: unchanged; deployment {} is already active with this content",
                    a.app, a.slot, d.id
                );
            } else {
                let secs = outcome.elapsed.as_secs_f64();
                println!(
                    "{}/{}: deployment {} active ({} files, {} new, {:.2} s, {:.0} files/s)",
                    a.app,
                    a.slot,
                    d.id,
                    d.files,
                    d.new_files,
                    secs,
                    d.files as f64 / secs.max(1e-9)
                );
            }
            Ok(())
        }
        Err(Error::DeploymentFailed { id, reason, .. }) => {
            if a.json
                && let Ok(d) = site.deployment(&a.app, &id)
            {
                print_json(&deployment_json(&d, true))?;
            }
            eprintln!(
                "fnhost: error: deployment {id} to {}/{} failed: {reason}",
                a.app, a.slot
            );
            eprintln!(
                "fnhost: the previous deployment stays active; see `fnhost deployments log {} {id}`",
                a.app
            );
            Err(Failure::Failed)
        }
        Err(e) => Err(failure(e)),
    }
}

/// A record as the JSON output writes it (Kudu's field names, and
/// `status_code` with Kudu's numbers).
pub(crate) fn deployment_json(d: &Deployment, with_log: bool) -> Value {
    let mut v = json!({
        "id": d.id,
        "app": d.app,
        "slot": d.slot,
        "status": d.status.as_str(),
        "status_code": d.status.code(),
        "active": d.active,
        "complete": d.status.is_final(),
        "author": d.author,
        "message": d.message,
        "deployer": d.deployer,
        "source_id": d.source_id,
        "source": d.source,
        "received_time": d.received_time,
        "start_time": d.start_time,
        "end_time": d.end_time,
        "files": d.files,
        "bytes": d.bytes,
        "new_files": d.new_files,
    });
    if with_log {
        v["log"] = log_json(d);
    }
    v
}

fn log_json(d: &Deployment) -> Value {
    json!(
        d.log
            .iter()
            .map(|e| json!({
                "log_time": e.time,
                "level": e.level.as_str(),
                "type": e.level.code(),
                "message": e.message,
            }))
            .collect::<Vec<_>>()
    )
}

fn deployments(site: &Site, a: DeploymentsArgs) -> CmdResult {
    match a.command {
        Some(DeploymentsCommand::Show { app, id, json }) => {
            let d = site.deployment(&app, &id).map_err(failure)?;
            if json {
                return print_json(&deployment_json(&d, true));
            }
            let v = deployment_json(&d, false);
            if let Some(map) = v.as_object() {
                for (k, val) in map {
                    let text = match val {
                        Value::String(s) => s.clone(),
                        Value::Null => "-".into(),
                        other => other.to_string(),
                    };
                    println!("{k:14} {text}");
                }
            }
            Ok(())
        }
        Some(DeploymentsCommand::Log { app, id, json }) => {
            let d = site.deployment(&app, &id).map_err(failure)?;
            if json {
                return print_json(&log_json(&d));
            }
            for e in &d.log {
                println!("{} {:7} {}", e.time, e.level.as_str(), e.message);
            }
            Ok(())
        }
        None => {
            let Some(app) = a.app else {
                return Err(Failure::Usage(
                    "give an app: fnhost deployments APP [--slot S]".into(),
                ));
            };
            let list = site.deployments(&app, a.slot.as_deref()).map_err(failure)?;
            if a.json {
                return print_json(
                    &list
                        .iter()
                        .map(|d| deployment_json(d, false))
                        .collect::<Vec<_>>(),
                );
            }
            for d in &list {
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    d.id,
                    d.status,
                    if d.active { "active" } else { "-" },
                    d.slot,
                    d.end_time.as_deref().unwrap_or("-"),
                    d.message
                );
            }
            Ok(())
        }
    }
}

pub(crate) fn read_password() -> Result<String, Failure> {
    let stdin = std::io::stdin();
    let tty = stdin.is_terminal();
    if tty {
        eprint!("Password: ");
        // Best effort: no echo while typing.
        let _ = std::process::Command::new("stty").arg("-echo").status();
    }
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if tty {
        let _ = std::process::Command::new("stty").arg("echo").status();
        eprintln!();
    }
    read.map_err(|e| Failure::Usage(format!("cannot read the password from stdin: {e}")))?;
    let password = line.trim_end_matches(['\n', '\r']).to_string();
    if password.is_empty() {
        return Err(Failure::Usage(
            "no password on stdin; pipe it in, e.g. `printf %s \"$PASSWORD\" | fnhost credentials set APP --user NAME`".into(),
        ));
    }
    Ok(password)
}

fn settings(site: &Site, c: SettingsCommand) -> CmdResult {
    let (app, slot, after) = match c {
        SettingsCommand::List { app, slot, json } => {
            let settings = site.app_settings(&app, &slot).map_err(failure)?;
            if json {
                return print_json(&json!(settings));
            }
            for (name, value) in &settings {
                println!("{name}={value}");
            }
            if settings.is_empty() {
                eprintln!(
                    "{app}/{slot}: no app settings; add some with `fnhost settings set {app} NAME=VALUE`"
                );
            }
            return Ok(());
        }
        SettingsCommand::Set {
            app,
            settings,
            slot,
        } => {
            let mut set = std::collections::BTreeMap::new();
            for s in settings {
                let Some((name, value)) = s.split_once('=') else {
                    return Err(Failure::Usage(format!(
                        "{s:?} is not NAME=VALUE; to set an empty value, write `{s}=`"
                    )));
                };
                set.insert(name.to_string(), value.to_string());
            }
            let after = site
                .update_app_settings(&app, &slot, set, &[])
                .map_err(failure)?;
            (app, slot, after)
        }
        SettingsCommand::Delete { app, names, slot } => {
            let after = site
                .update_app_settings(&app, &slot, Default::default(), &names)
                .map_err(failure)?;
            (app, slot, after)
        }
    };
    eprintln!(
        "{app}/{slot}: {} app setting{} (a running `fnhost serve --app {app}` reloads)",
        after.len(),
        if after.len() == 1 { "" } else { "s" }
    );
    Ok(())
}

fn credentials(site: &Site, c: CredentialsCommand) -> CmdResult {
    match c {
        CredentialsCommand::Set { app, user } => {
            let password = read_password()?;
            site.set_credentials(&app, &user, &password)
                .map_err(failure)?;
            eprintln!("set deployment credentials of {app} for user {user}");
            Ok(())
        }
        CredentialsCommand::Check { app, user } => {
            let password = read_password()?;
            if site
                .check_credentials(&app, &user, &password)
                .map_err(failure)?
            {
                eprintln!("credentials are valid");
                Ok(())
            } else {
                Err(Failure::Message(format!(
                    "{app}: wrong user name or password"
                )))
            }
        }
        CredentialsCommand::Reset { app, user } => {
            let password = site.reset_credentials(&app, &user).map_err(failure)?;
            // The one time a password is shown: the generated one, to stdout.
            println!("{password}");
            eprintln!("new password for {user} on {app} (shown once)");
            Ok(())
        }
    }
}
