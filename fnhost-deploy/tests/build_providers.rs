//! The build providers: none, auto (real npm, pip and cargo on tiny apps;
//! the npm registry and PyPI are reached for one tiny package each), and
//! pipeline (failures, timeouts, streaming, environment).

#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use fnhost_core::build::{
    BuildContext, BuildError, BuildLog, BuildOutput, BuildProvider, LogLevel,
};
use fnhost_core::source::SourceSnapshot;
use fnhost_deploy::build::{AutoBuild, NoneBuild, PipelineBuild};

/// Keeps every line with the instant it arrived.
#[derive(Default)]
struct Collect(Mutex<Vec<(Instant, LogLevel, String)>>);

impl BuildLog for Collect {
    fn line(&self, level: LogLevel, line: &str) {
        self.0
            .lock()
            .unwrap()
            .push((Instant::now(), level, line.to_owned()));
    }
}

impl Collect {
    fn text(&self) -> String {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|(_, _, l)| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn write(root: &Path, rel: &str, content: &str) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, content).unwrap();
}

/// Builds `src` with `provider`; returns the outcome and the log.
fn build(
    provider: &dyn BuildProvider,
    src: &Path,
    timeout: Duration,
) -> (Result<BuildOutput, BuildError>, Collect) {
    let temp = tempfile::tempdir().unwrap();
    let mut snapshot = SourceSnapshot::new("c0ffee");
    snapshot.message = Some("the message".into());
    let log = Collect::default();
    let env = vec![("MY_SETTING".to_owned(), "from-app-settings".to_owned())];
    let ctx = BuildContext {
        source_dir: src,
        temp_dir: temp.path(),
        snapshot: &snapshot,
        env: &env,
        timeout,
        log: &log,
    };
    let outcome = provider.build(&ctx);
    (outcome, log)
}

const MINUTES: Duration = Duration::from_secs(240);

/// [`build`] within [`MINUTES`], which must succeed (a failure panics
/// with the log): the output and the log.
fn built(provider: &dyn BuildProvider, src: &Path) -> (BuildOutput, Collect) {
    let (out, log) = build(provider, src, MINUTES);
    match out {
        Ok(out) => (out, log),
        Err(e) => panic!("{e}\n{}", log.text()),
    }
}

#[test]
fn none_is_copy_only() {
    let src = tempfile::tempdir().unwrap();
    write(src.path(), "package.json", "{}");
    let (out, log) = built(&NoneBuild::new(), src.path());
    assert_eq!(out.dir, src.path());
    assert_eq!(out.summary, "copy only");
    assert!(log.text().contains("copy only"));
    assert!(!src.path().join("node_modules").exists());
}

#[test]
fn auto_with_nothing_detected_copies_and_says_so() {
    let src = tempfile::tempdir().unwrap();
    write(src.path(), "host.json", "{}");
    let (out, log) = built(&AutoBuild::new(), src.path());
    assert_eq!(out.dir, src.path());
    assert_eq!(out.summary, "copy only (nothing detected)");
    assert!(
        log.text().contains("could not detect the language"),
        "{}",
        log.text()
    );
}

#[test]
fn auto_npm_ci_with_a_lock_file_and_build_script() {
    let src = tempfile::tempdir().unwrap();
    write(
        src.path(),
        "package.json",
        r#"{"name": "app", "version": "1.0.0",
            "scripts": {"build": "node -e \"require('fs').writeFileSync('built.txt', process.env.SCM_COMMIT_ID + ' ' + process.env.MY_SETTING)\""}}"#,
    );
    write(
        src.path(),
        "package-lock.json",
        r#"{"name": "app", "version": "1.0.0", "lockfileVersion": 3, "requires": true,
            "packages": {"": {"name": "app", "version": "1.0.0"}}}"#,
    );
    let (out, log) = built(&AutoBuild::new(), src.path());
    assert_eq!(out.summary, "npm ci, npm run build");
    assert_eq!(
        fs::read_to_string(src.path().join("built.txt")).unwrap(),
        "c0ffee from-app-settings"
    );
    assert!(log.text().contains("$ npm ci"));
}

#[test]
fn auto_npm_install_without_a_lock_file() {
    let src = tempfile::tempdir().unwrap();
    write(
        src.path(),
        "package.json",
        r#"{"name": "app", "version": "1.0.0", "dependencies": {"is-number": "7.0.0"}}"#,
    );
    let (out, _) = built(&AutoBuild::new(), src.path());
    assert_eq!(out.summary, "npm install --omit=dev");
    assert!(
        src.path()
            .join("node_modules/is-number/package.json")
            .is_file()
    );
}

#[test]
fn auto_pip_installs_into_python_packages() {
    let src = tempfile::tempdir().unwrap();
    write(src.path(), "requirements.txt", "six==1.16.0\n");
    write(src.path(), "function_app.py", "import six\n");
    let (out, log) = built(&AutoBuild::new(), src.path());
    assert_eq!(out.summary, "pip install");
    assert!(
        src.path()
            .join(".python_packages/lib/site-packages/six.py")
            .is_file(),
        "{}",
        log.text()
    );
}

#[cfg(unix)]
#[test]
fn auto_cargo_places_the_custom_handler_where_host_json_says() {
    use std::os::unix::fs::PermissionsExt as _;
    let src = tempfile::tempdir().unwrap();
    write(
        src.path(),
        "Cargo.toml",
        "[package]\nname = \"handler\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n",
    );
    write(
        src.path(),
        "src/main.rs",
        "fn main() { println!(\"hello from the handler\"); }\n",
    );
    write(
        src.path(),
        "host.json",
        r#"{"version": "2.0", "customHandler": {"description": {"defaultExecutablePath": "bin/handler"}}}"#,
    );
    let (out, _) = built(&AutoBuild::new(), src.path());
    assert_eq!(out.summary, "cargo build --release");
    let exe = src.path().join("bin/handler");
    assert_ne!(fs::metadata(&exe).unwrap().permissions().mode() & 0o111, 0);
    let run = std::process::Command::new(&exe).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&run.stdout).trim(),
        "hello from the handler"
    );
    assert!(
        !src.path().join("target").exists(),
        "cargo's target folder is kept out of the app"
    );
}

#[test]
fn pipeline_runs_steps_in_order_with_env_and_deploys_its_folder() {
    let src = tempfile::tempdir().unwrap();
    fs::create_dir_all(src.path().join("web")).unwrap();
    write(
        src.path(),
        "fnhost-build.json",
        r#"{
          "steps": [
            {"name": "prepare", "command": "mkdir -p \"$DEPLOYMENT_TARGET\" && echo one > order.txt"},
            {"name": "render", "command": "echo \"$GREETING $MY_SETTING $SCM_COMMIT_ID $SCM_COMMIT_MESSAGE\" > \"$DEPLOYMENT_TARGET/index.html\" && pwd > ../where.txt",
             "env": {"GREETING": "hello"}, "working_directory": "web", "timeout_seconds": 60}
          ],
          "deploy": "dist"
        }"#,
    );
    let (out, _) = built(&PipelineBuild::new(), src.path());
    assert_eq!(out.dir, src.path().join("dist"));
    assert_eq!(out.summary, "pipeline: prepare, render; deploy dist");
    assert_eq!(
        fs::read_to_string(src.path().join("dist/index.html")).unwrap(),
        "hello from-app-settings c0ffee the message\n"
    );
    assert!(
        fs::read_to_string(src.path().join("where.txt"))
            .unwrap()
            .trim()
            .ends_with("/web")
    );
}

#[test]
fn pipeline_stops_at_the_first_failure() {
    let src = tempfile::tempdir().unwrap();
    write(
        src.path(),
        "fnhost-build.json",
        r#"{"steps": [
            {"name": "good", "command": "touch a.txt"},
            {"name": "bad", "command": "echo about to fail; echo oops >&2; exit 3"},
            {"name": "never", "command": "touch c.txt"}
        ]}"#,
    );
    let (out, log) = build(&PipelineBuild::new(), src.path(), MINUTES);
    match out {
        Err(BuildError::StepFailed { step, message, .. }) => {
            assert_eq!(step, "bad");
            assert!(message.contains("exit code 3"), "{message}");
            assert!(message.contains("oops"), "{message}");
        }
        other => panic!("want StepFailed, got {other:?}"),
    }
    assert!(src.path().join("a.txt").exists());
    assert!(!src.path().join("c.txt").exists());
    let text = log.text();
    assert!(
        text.contains("about to fail") && text.contains("oops"),
        "{text}"
    );
}

#[test]
fn pipeline_output_is_streamed_as_it_comes() {
    let src = tempfile::tempdir().unwrap();
    write(
        src.path(),
        "fnhost-build.json",
        r#"{"steps": [{"name": "slow", "command": "echo early; sleep 1; echo late"}]}"#,
    );
    let (out, log) = build(&PipelineBuild::new(), src.path(), MINUTES);
    out.unwrap();
    let lines = log.0.lock().unwrap();
    let at = |text: &str| lines.iter().find(|(_, _, l)| l == text).unwrap().0;
    assert!(at("late").duration_since(at("early")) >= Duration::from_millis(700));
}

#[cfg(unix)]
#[test]
fn a_timeout_stops_the_build_and_kills_the_process_group() {
    let src = tempfile::tempdir().unwrap();
    write(
        src.path(),
        "fnhost-build.json",
        r#"{"steps": [{"name": "hang", "command": "sleep 60 & echo $! > child.pid; wait"}]}"#,
    );
    let start = Instant::now();
    let (out, _log) = build(&PipelineBuild::new(), src.path(), Duration::from_secs(1));
    assert!(
        matches!(out, Err(BuildError::Timeout { after, .. }) if after == Duration::from_secs(1)),
        "{out:?}"
    );
    assert!(start.elapsed() < Duration::from_secs(10));
    let pid = fs::read_to_string(src.path().join("child.pid")).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    // Gone, or a zombie waiting for a reaper that is not ours.
    let alive = fs::read_to_string(format!("/proc/{}/stat", pid.trim()))
        .map(|stat| {
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z') && !state.starts_with('X')
        })
        .unwrap_or(false);
    assert!(
        !alive,
        "the background child {pid} was killed with its group"
    );

    // A step's own timeout.
    write(
        src.path(),
        "fnhost-build.json",
        r#"{"steps": [{"name": "slow", "command": "sleep 60", "timeout_seconds": 1}]}"#,
    );
    let (out, _log) = build(&PipelineBuild::new(), src.path(), MINUTES);
    match out {
        Err(BuildError::StepFailed { step, message, .. }) => {
            assert_eq!(step, "slow");
            assert!(message.contains("took longer"), "{message}");
        }
        other => panic!("want StepFailed, got {other:?}"),
    }
}

#[test]
fn invalid_pipelines_are_invalid() {
    let src = tempfile::tempdir().unwrap();
    // No pipeline file, then a step with a misspelt field.
    for (pipeline, says) in [
        (None, "no fnhost-build.json"),
        (
            Some(r#"{"steps": [{"name": "x", "comand": "true"}]}"#),
            "comand",
        ),
    ] {
        if let Some(pipeline) = pipeline {
            write(src.path(), "fnhost-build.json", pipeline);
        }
        let (out, _) = build(&PipelineBuild::new(), src.path(), MINUTES);
        match out {
            Err(BuildError::Invalid { message, .. }) => {
                assert!(message.contains(says), "{message}")
            }
            other => panic!("want Invalid, got {other:?}"),
        }
    }
    write(
        src.path(),
        "fnhost-build.json",
        r#"{"steps": [{"name": "x", "command": "true"}], "deploy": "missing"}"#,
    );
    let (out, _) = build(&PipelineBuild::new(), src.path(), MINUTES);
    assert!(
        matches!(out, Err(BuildError::StepFailed { ref step, .. }) if step == "deploy"),
        "{out:?}"
    );
}
