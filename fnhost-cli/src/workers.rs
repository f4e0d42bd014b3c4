//! `fnhost workers install|list|token|drain`: fnhost's own language
//! workers (Node.js and Python), shipped inside the binary and installed
//! with their pinned dependencies into the workers folder that `fnhost
//! serve` reads; and the cluster's workers (`token`, `drain`, the second
//! half of `list`; see `crate::cluster`).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command as Process;

use fnhost_core::worker::{WorkerConfig, default_workers_dir, list_workers};
use serde_json::{Value, json};

use crate::{CmdResult, Failure, Output, print_json};

include!(concat!(env!("OUT_DIR"), "/workers.rs"));

/// The languages fnhost ships a worker for.
const LANGUAGES: [&str; 2] = ["node", "python"];

/// The file in an installed worker's folder that says what was installed.
const STAMP: &str = ".fnhost-worker";

/// Subcommands of `fnhost workers`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Install fnhost's language workers (default: node and python) with
    /// their pinned dependencies (npm ci, pip).
    Install(InstallArgs),
    /// List the installed language workers, and the cluster's workers
    /// (name, state, labels, apps, load) when a cluster is configured.
    List(ListArgs),
    /// Create a join token for cluster workers and gateways (printed
    /// once, stored hashed).
    Token(crate::cluster::TokenArgs),
    /// Ask a cluster worker to drain: it finishes its requests, then
    /// leaves.
    Drain(crate::cluster::DrainArgs),
}

/// Where workers live.
#[derive(Debug, clap::Args)]
pub(crate) struct DirArg {
    /// The workers folder (default: FNHOST_WORKERS_DIR, else
    /// $FNHOST_HOME/workers, else ~/.local/share/fnhost/workers).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

/// Arguments of `fnhost workers install`.
#[derive(Debug, clap::Args)]
pub(crate) struct InstallArgs {
    /// The languages to install (node, python; default: both).
    #[arg(value_name = "LANGUAGE")]
    languages: Vec<String>,
    #[command(flatten)]
    dir: DirArg,
    /// Install again even when the installed worker is this version.
    #[arg(long)]
    force: bool,
}

/// Arguments of `fnhost workers list`.
#[derive(Debug, clap::Args)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    dir: DirArg,
    #[command(flatten)]
    cluster: crate::cluster::ClusterListArgs,
}

pub(crate) fn run(command: Command, home: &Path, out: Output) -> CmdResult {
    match command {
        Command::Install(args) => install(args),
        Command::List(args) => list(args, home, out),
        Command::Token(args) => crate::cluster::token(args, home),
        Command::Drain(args) => crate::cluster::drain(args, home),
    }
}

fn workers_dir(arg: &DirArg) -> Result<PathBuf, Failure> {
    arg.dir.clone().or_else(default_workers_dir).ok_or_else(|| {
        Failure::Usage("no workers folder: give --dir, or set FNHOST_WORKERS_DIR or HOME".into())
    })
}

/// FNV-1a over the given files (language, path, content).
fn digest<'a>(files: impl Iterator<Item = &'a (&'a str, &'a str, &'a [u8])>) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (lang, rel, content) in files {
        for b in lang
            .bytes()
            .chain(rel.bytes())
            .chain(content.iter().copied())
        {
            hash = (hash ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

/// The files whose change needs the dependencies installed again.
fn is_dependency_file(lang: &str, rel: &str) -> bool {
    match lang {
        "node" => matches!(rel, "package.json" | "package-lock.json"),
        _ => matches!(
            rel,
            "requirements.txt" | "function_rpc.proto" | "install.py"
        ),
    }
}

struct Stamp {
    code: String,
    deps: String,
}

fn read_stamp(dir: &Path) -> Option<Stamp> {
    let text = std::fs::read_to_string(dir.join(STAMP)).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    Some(Stamp {
        code: v.get("code")?.as_str()?.to_owned(),
        deps: v.get("dependencies")?.as_str()?.to_owned(),
    })
}

fn write_file(path: &Path, content: &[u8]) -> Result<(), Failure> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| Failure::Message(format!("{}: cannot create: {e}", parent.display())))?;
    }
    // Beside the file, then renamed over it: never a half-written file.
    let tmp = path.with_extension(format!("fnhost-tmp-{}", std::process::id()));
    std::fs::write(&tmp, content)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Failure::Message(format!("{}: cannot write: {e}", path.display()))
        })
}

fn install(args: InstallArgs) -> CmdResult {
    let dir = workers_dir(&args.dir)?;
    let languages: Vec<String> = if args.languages.is_empty() {
        LANGUAGES.iter().map(|s| (*s).to_owned()).collect()
    } else {
        args.languages
            .iter()
            .map(|l| l.to_ascii_lowercase())
            .collect()
    };
    for lang in &languages {
        if !LANGUAGES.contains(&lang.as_str()) {
            return Err(Failure::Usage(format!(
                "fnhost has no '{lang}' worker: choose from {}",
                LANGUAGES.join(", ")
            )));
        }
    }
    std::fs::create_dir_all(&dir)
        .map_err(|e| Failure::Message(format!("{}: cannot create: {e}", dir.display())))?;
    // One install at a time in a folder (two terminals, parallel tests).
    let lock_path = dir.join(".install.lock");
    let lock = std::fs::File::create(&lock_path)
        .and_then(|f| f.lock().map(|()| f))
        .map_err(|e| Failure::Message(format!("{}: cannot lock: {e}", lock_path.display())))?;
    for lang in &languages {
        install_one(&dir, lang, args.force)?;
    }
    drop(lock);
    Ok(())
}

fn install_one(dir: &Path, lang: &str, force: bool) -> CmdResult {
    let files: Vec<&(&str, &str, &[u8])> =
        WORKER_FILES.iter().filter(|(l, _, _)| *l == lang).collect();
    let code = digest(files.iter().copied());
    let deps = digest(
        files
            .iter()
            .copied()
            .filter(|(l, rel, _)| is_dependency_file(l, rel)),
    );
    let target = dir.join(lang);
    let stamp_json =
        json!({"code": code, "dependencies": deps, "fnhost": env!("CARGO_PKG_VERSION")});
    let stamp_text = format!("{stamp_json:#}\n");
    match read_stamp(&target) {
        Some(s) if !force && s.code == code => {
            eprintln!(
                "fnhost: the {lang} worker in {} is up to date",
                target.display()
            );
            return Ok(());
        }
        Some(s) if !force && s.deps == deps => {
            // Only the worker's own code changed: its files are replaced,
            // the dependencies kept.
            for (_, rel, content) in &files {
                write_file(&target.join(rel), content)?;
            }
            write_file(&target.join(STAMP), stamp_text.as_bytes())?;
            eprintln!("fnhost: updated the {lang} worker in {}", target.display());
            return Ok(());
        }
        _ => {}
    }
    // A fresh folder beside the target, swapped in once it works.
    let staging = dir.join(format!(".{lang}.installing"));
    let retired = dir.join(format!(".{lang}.old"));
    for stale in [&staging, &retired] {
        if stale.exists() {
            std::fs::remove_dir_all(stale).map_err(|e| {
                Failure::Message(format!("{}: cannot remove: {e}", stale.display()))
            })?;
        }
    }
    for (_, rel, content) in &files {
        write_file(&staging.join(rel), content)?;
    }
    let config = WorkerConfig::read(&staging)
        .map_err(|e| Failure::Message(format!("the embedded {lang} worker is broken: {e}")))?;
    eprintln!(
        "fnhost: installing the {lang} worker into {} ...",
        target.display()
    );
    let _ = std::io::stderr().flush();
    let (program, step_args): (String, Vec<&str>) = match lang {
        "node" => (
            "npm".into(),
            vec!["ci", "--omit=dev", "--no-audit", "--no-fund"],
        ),
        _ => (config.executable.clone(), vec!["install.py"]),
    };
    let status = Process::new(&program)
        .args(&step_args)
        .current_dir(&staging)
        .status();
    let failed = |why: String| {
        let _ = std::fs::remove_dir_all(&staging);
        Failure::Message(format!(
            "the {lang} worker could not be installed: {why}; nothing was changed in {}",
            target.display()
        ))
    };
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => {
            return Err(failed(format!(
                "`{program} {}` failed ({s})",
                step_args.join(" ")
            )));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let need = if lang == "node" {
                "Node.js 20 or later with npm"
            } else {
                "Python 3 with pip"
            };
            return Err(failed(format!(
                "`{program}` is not installed (it needs {need})"
            )));
        }
        Err(e) => return Err(failed(format!("cannot run `{program}`: {e}"))),
    }
    write_file(&staging.join(STAMP), stamp_text.as_bytes())?;
    if target.exists() {
        std::fs::rename(&target, &retired)
            .map_err(|e| failed(format!("cannot move the old worker aside: {e}")))?;
    }
    std::fs::rename(&staging, &target).map_err(|e| {
        let _ = std::fs::rename(&retired, &target);
        failed(format!("cannot move the new worker in place: {e}"))
    })?;
    let _ = std::fs::remove_dir_all(&retired);
    eprintln!(
        "fnhost: installed the {lang} worker in {}",
        target.display()
    );
    Ok(())
}

/// A language worker as `workers list` shows it.
#[derive(Debug, serde::Serialize)]
#[serde(untagged)]
enum LanguageWorkerRow {
    #[serde(rename_all = "camelCase")]
    Found {
        language: String,
        dir: PathBuf,
        executable: String,
        worker_path: Option<String>,
        worker_indexing: bool,
        /// installed, outdated (`workers install` updates it) or external.
        state: &'static str,
    },
    Broken {
        dir: Option<PathBuf>,
        state: &'static str,
        error: String,
    },
}

fn list(args: ListArgs, home: &Path, out: Output) -> CmdResult {
    let dir = workers_dir(&args.dir)?;
    let cluster = crate::cluster::cluster_workers(&args.cluster, home)?;
    let rows: Vec<LanguageWorkerRow> = list_workers(&dir)
        .into_iter()
        .map(|found| match found {
            Ok(c) => {
                let shipped = WORKER_FILES.iter().filter(|(l, _, _)| *l == c.language);
                let state = match read_stamp(&c.dir) {
                    Some(s) if s.code == digest(shipped) => "installed",
                    Some(_) => "outdated",
                    None => "external",
                };
                LanguageWorkerRow::Found {
                    language: c.language,
                    dir: c.dir,
                    executable: c.executable,
                    worker_path: c.worker_path,
                    worker_indexing: c.worker_indexing,
                    state,
                }
            }
            Err(e) => LanguageWorkerRow::Broken {
                dir: e.path.parent().map(Path::to_path_buf),
                state: "broken",
                error: e.message,
            },
        })
        .collect();
    if out.json {
        #[derive(serde::Serialize)]
        struct Listing<'a> {
            dir: &'a Path,
            workers: &'a [LanguageWorkerRow],
            cluster: &'a Option<Vec<fnhost_cluster::protocol::WorkerView>>,
        }
        return print_json(&Listing {
            dir: &dir,
            workers: &rows,
            cluster: &cluster,
        });
    }
    if let Some(views) = &cluster {
        println!("Cluster workers:");
        crate::cluster::print_workers(views);
        println!();
        println!("Language workers ({}):", dir.display());
    }
    if rows.is_empty() {
        eprintln!(
            "fnhost: no language workers in {} (`fnhost workers install` installs node and python)",
            dir.display()
        );
        return Ok(());
    }
    let mut outdated = false;
    for r in &rows {
        match r {
            LanguageWorkerRow::Broken { dir, error, .. } => {
                let dir = dir.as_deref().unwrap_or(Path::new(""));
                println!("?\tbroken\t{}\t{error}", dir.display())
            }
            LanguageWorkerRow::Found {
                language,
                dir,
                executable,
                state,
                ..
            } => {
                outdated |= *state == "outdated";
                println!("{language}\t{state}\t{}\t{executable}", dir.display())
            }
        }
    }
    if outdated {
        eprintln!("fnhost: some workers are outdated: `fnhost workers install` updates them");
    }
    Ok(())
}
