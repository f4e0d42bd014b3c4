//! The portal end to end in a real browser: headless Chromium (Debian's
//! `chromium`), driven by playwright-core from npm with `executablePath`
//! (nothing downloads a browser), against `fnhost manage` on 127.0.0.1
//! with a new home. The scenario is `portal_e2e/scenario.mjs`: a new user
//! signs in, creates an app, adds an HTTP function from a template, edits
//! it, tests it and sees its log, connects the built-in git repository,
//! pushes and sees the push deploy, rolls back, downloads the content; a
//! read-only app refuses edits with the reason; axe-core finds no serious
//! or critical violation on any page; the Workers page shows a worker
//! registered through the library, makes a join token, scales the app
//! onto it and drains it. Screenshots go to docs/screenshots/.
//!
//! Needs `chromium` (scripts/test.sh installs it with apt), node and npm
//! (playwright-core and axe-core, pinned, are installed under the target
//! folder when missing, or taken from `FNHOST_PORTAL_E2E_DIR`), git, and
//! fnhost's Node.js worker (installed like the language worker tests do).

#![allow(clippy::unwrap_used)] // tests panic on what they do not expect

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use fnhost_testsupport::git::git;
use fnhost_testsupport::process::succeeded;
use support::{fnhost, fnhost_stdin, write};

const BIN: &str = env!("CARGO_BIN_EXE_fnhost");
const PLAYWRIGHT: &str = "playwright-core@1.65.2";
const AXE: &str = "axe-core@4.14.1";

/// The folder holding `node_modules/playwright-core` and `axe-core`.
fn modules() -> PathBuf {
    let dir = std::env::var_os("FNHOST_PORTAL_E2E_DIR").map_or_else(
        || Path::new(env!("CARGO_TARGET_TMPDIR")).join("portal-e2e"),
        PathBuf::from,
    );
    let ready = dir
        .join("node_modules/playwright-core/package.json")
        .is_file()
        && dir.join("node_modules/axe-core/axe.min.js").is_file();
    if !ready {
        std::fs::create_dir_all(&dir).unwrap();
        // --ignore-scripts: no install script runs (playwright-core has no
        // browser download of its own; this makes sure of it).
        let out = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error", "--prefix"])
            .arg(&dir)
            .args([PLAYWRIGHT, AXE])
            .output()
            .expect("npm is needed to install playwright-core and axe-core for the portal's browser test");
        succeeded(&out);
    }
    dir
}

fn chromium() -> PathBuf {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .expect("the portal's browser test needs Debian's chromium: `apt-get install chromium chromium-driver` (scripts/test.sh does it)")
}

/// fnhost's Node.js worker, installed once under the target folder.
fn workers() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("portal-workers");
    if !dir.join("node/worker.config.json").is_file() {
        let out = Command::new(BIN)
            .args(["workers", "install", "node", "--dir"])
            .arg(&dir)
            .output()
            .unwrap();
        succeeded(&out);
    }
    dir
}

/// One worker in the home's cluster state, registered and heartbeating
/// through the library as `fnhost worker` would (no worker process: the
/// Workers page shows it, the manager places instances on it).
fn register_worker(home: &Path, name: &str) {
    use fnhost_cluster::state::{WorkerRecord, WorkerState};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let state = fnhost_cluster::state::open(home, None).await.unwrap();
        let worker: WorkerRecord = serde_json::from_value(serde_json::json!({
            "name": name, "labels": {"zone": "desk"}, "capacity": 4, "state": "joining",
            "drain_requested": false, "status": "{}", "last_heartbeat": 0,
            "registered_at": 0, "generation": 0
        }))
        .unwrap();
        state.register_worker(&worker).await.unwrap();
        let now = fnhost_cluster::now_ms();
        let status = r#"{"draining": false, "instances": []}"#;
        state
            .heartbeat(name, WorkerState::Ready, status, now)
            .await
            .unwrap()
            .unwrap();
    });
}

#[test]
fn a_new_user_develops_tests_deploys_and_rolls_back_in_the_browser() {
    let (chromium, modules, workers) = (chromium(), modules(), workers());
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let out = fnhost_stdin(
        &home,
        &["portal", "users", "add", "newcomer"],
        "first-pass-1\n",
    );
    succeeded(&out);
    assert!(fnhost(&home, &["portal", "users", "list"]).status.success());
    // What the user pushes later: the app with a new version of Hello.
    let repo = tmp.path().join("repo");
    write(&repo.join("host.json"), r#"{"version": "2.0"}"#);
    write(
        &repo.join("local.settings.json"),
        r#"{"IsEncrypted": false, "Values": {"FUNCTIONS_WORKER_RUNTIME": "node"}}"#,
    );
    write(
        &repo.join("Hello/function.json"),
        r#"{"bindings": [{"type": "httpTrigger", "direction": "in", "name": "req", "authLevel": "function", "methods": ["get", "post"]}, {"type": "http", "direction": "out", "name": "res"}]}"#,
    );
    write(
        &repo.join("Hello/index.js"),
        "module.exports = async function (context, req) { return { body: 'pushed' }; };\n",
    );
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "pushed from git"]);

    register_worker(&home, "desk-1");
    // Heartbeats an hour apart: the worker registered above stays ready
    // for the whole scenario without a worker process.
    let mut child = Command::new(BIN)
        .arg("--home")
        .arg(&home)
        .args(["manage", "--host", "127.0.0.1", "--port", "0"])
        .args(["--heartbeat-ms", "3600000"])
        .env("FNHOST_WORKERS_DIR", &workers)
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(tmp.path().join("manage.log")).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_string();
    let screenshots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/screenshots");
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/portal_e2e/scenario.mjs");
    let run = Command::new("node")
        .arg(&scenario)
        .env("PORTAL_BASE", &base)
        .env("PORTAL_USER", "newcomer")
        .env("PORTAL_PASSWORD", "first-pass-1")
        .env("PORTAL_E2E_MODULES", &modules)
        .env("PORTAL_CHROMIUM", &chromium)
        .env("PORTAL_USER_DATA", tmp.path().join("chromium-profile"))
        .env("PORTAL_SCREENSHOTS", &screenshots)
        .env("PORTAL_GIT_REPO", &repo)
        .output()
        .expect("node is needed by the portal's browser test");
    let _ = child.kill();
    let _ = child.wait();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    eprintln!("{stdout}");
    let log = std::fs::read_to_string(tmp.path().join("manage.log")).unwrap_or_default();
    assert!(
        run.status.success() && stdout.contains("portal e2e: all steps passed"),
        "the browser scenario failed:\n{stdout}\n{stderr}\n--- fnhost manage's log (tail):\n{}",
        log.lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );
    for name in [
        "apps",
        "functions",
        "code-test",
        "deployment-center",
        "deployments",
        "read-only",
        "keys",
        "log-stream",
        "workers",
        "placement",
    ] {
        assert!(
            screenshots.join(format!("{name}.png")).is_file(),
            "{name}.png"
        );
    }
}
