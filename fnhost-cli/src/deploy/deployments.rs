//! `fnhost deploy`, `deployments`, `rollback` and `swap`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use fnhost_deploy::{
    Content, DeployRequest, Deployment, Durability, Error, LogEntry, Observer, PRODUCTION, Site,
};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;

use super::failure;
use crate::{CmdResult, Failure, Output, print_json};

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
    },
    /// Show one deployment's log.
    Log {
        /// The app.
        app: String,
        /// The deployment id.
        id: String,
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
        // With `--log-format json` the line is an event of the deployment's
        // span already.
        if crate::log::is_json() {
            return;
        }
        if self.verbose || entry.level != fnhost_deploy::Level::Info {
            self.say(&format!("{}: {}", entry.level, entry.message));
        }
    }
}

pub(super) fn deploy(site: &Site, a: DeployArgs, out: Output) -> CmdResult {
    let content = match (a.zip, a.dir) {
        (Some(z), None) => Content::Zip(z),
        (None, Some(d)) => Content::Folder(d),
        _ => return Err(Failure::Usage("give one of --zip FILE or --dir DIR".into())),
    };
    let progress = Progress::new(!out.json);
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
            if out.json {
                /// The record with whether it was already active.
                #[derive(serde::Serialize)]
                struct Shown<'a> {
                    #[serde(flatten)]
                    report: fnhost_deploy::Report<'a>,
                    unchanged: bool,
                }
                print_json(&Shown {
                    report: d.report(true),
                    unchanged: outcome.unchanged,
                })?;
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
            if out.json
                && let Ok(d) = site.deployment(&a.app, &id)
            {
                print_json(&d.report(true))?;
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

pub(super) fn deployments(site: &Site, a: DeploymentsArgs, out: Output) -> CmdResult {
    match a.command {
        Some(DeploymentsCommand::Show { app, id }) => {
            let d = site.deployment(&app, &id).map_err(failure)?;
            if out.json {
                return print_json(&d.report(true));
            }
            let v = serde_json::to_value(d.report(false))
                .map_err(|e| Failure::Message(format!("cannot show the record: {e}")))?;
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
        Some(DeploymentsCommand::Log { app, id }) => {
            let d = site.deployment(&app, &id).map_err(failure)?;
            if out.json {
                return print_json(&d.report(true).log);
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
            if out.json {
                return print_json(&list.iter().map(|d| d.report(false)).collect::<Vec<_>>());
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

/// `fnhost rollback`.
pub(super) fn rollback(site: &Site, a: RollbackArgs, out: Output) -> CmdResult {
    let d = site
        .rollback(&a.app, &a.slot, a.id.as_deref())
        .map_err(failure)?;
    if out.json {
        print_json(&d.report(false))
    } else {
        println!("{}/{}: active deployment is now {}", a.app, a.slot, d.id);
        Ok(())
    }
}

/// `fnhost swap`.
pub(super) fn swap(site: &Site, a: SwapArgs, out: Output) -> CmdResult {
    /// A slot and its active deployment after the swap.
    #[derive(serde::Serialize)]
    struct Swapped<'a> {
        app: &'a str,
        slot: &'a str,
        active: Option<String>,
    }
    site.swap(&a.app, &a.slot_a, &a.slot_b).map_err(failure)?;
    let mut slots = Vec::new();
    for slot in [&a.slot_a, &a.slot_b] {
        let active = site.active(&a.app, slot).map_err(failure)?;
        slots.push(Swapped {
            app: &a.app,
            slot,
            active: active.map(|x| x.deployment),
        });
    }
    if out.json {
        return print_json(&slots);
    }
    for s in &slots {
        println!(
            "{}/{}: {}",
            s.app,
            s.slot,
            s.active.as_deref().unwrap_or("(none)")
        );
    }
    Ok(())
}
