//! Conformance suites that integrators run against their own providers and
//! executors (feature `testkit`).
//!
//! ```ignore
//! #[test]
//! fn my_source_conforms() {
//!     let mut fixture = MyFixture::new();          // implements SourceFixture
//!     fnhost_core::testkit::assert_source_provider(&MyProvider::new(), &mut fixture);
//! }
//! ```
//!
//! | trait | suite | the integrator provides |
//! | --- | --- | --- |
//! | [`SourceProvider`] | [`check_source_provider`] | a [`SourceFixture`] that publishes versions |
//! | [`BuildProvider`] | [`check_build_provider`] | a [`BuildFixture`] that writes sources |
//! | [`Executor`](crate::invoke::Executor) | [`check_executor`] | a [`Host`] whose app has an `Echo` function |
//! | `fnhost_deploy::store::Store` | `fnhost_deploy::testkit::check_store` | the store |
//!
//! The suites are not a stable part of the API: a new release may check
//! more.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::path::Path;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::build::{BuildContext, BuildError, BuildLog, BuildProvider, LogLevel};
use crate::invoke::{BindingData, Host, Invocation};
use crate::source::{SourceProvider, SourceProviderExt, SourceSnapshot, SourceSpec};

/// A source the suite can change: a test repository, a folder, a zip...
pub trait SourceFixture {
    /// The spec that follows this source.
    fn spec(&self) -> SourceSpec;
    /// Makes `files` (relative path with `/`, content) the whole content of
    /// the source, as a new version described by `message`.
    fn publish(
        &mut self,
        files: &[(&str, &[u8])],
        message: &str,
    ) -> Result<(), Box<dyn std::error::Error>>;
    /// A spec that names a source that does not exist.
    fn missing(&self) -> SourceSpec;
}

/// What failed in a suite: one line per failed check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConformanceFailures(pub Vec<String>);

impl fmt::Display for ConformanceFailures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} conformance check(s) failed:", self.0.len())?;
        for line in &self.0 {
            writeln!(f, "- {line}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConformanceFailures {}

impl ConformanceFailures {
    /// The outcome of a suite run on `name`: `Ok` when no check failed,
    /// else every failure, each prefixed with `[name]`.
    pub fn of(name: &str, failures: Vec<String>) -> Result<(), ConformanceFailures> {
        if failures.is_empty() {
            return Ok(());
        }
        Err(ConformanceFailures(
            failures
                .into_iter()
                .map(|f| format!("[{name}] {f}"))
                .collect(),
        ))
    }
}

/// The methods of trait `trait_name` that its
/// [`forward_impls!`](crate::forward_impls) invocation leaves out, both read
/// from `source` (the text of the file that holds them, as
/// `include_str!` gives it). Run it in a test for each trait whose
/// forwarding impls come from the macro: a provided method left out of the
/// list would otherwise compile and quietly run its default for the
/// wrapped value.
///
/// ```
/// # let source = "pub trait Greeter { fn name(&self) -> &str; fn greet(&self) {} }
/// #   forward_impls! { impl<G> Greeter for [Arc<G>] { fn name(&self) -> &str; } }";
/// // In a test: let source = include_str!("greeter.rs");
/// let left_out = fnhost_core::testkit::unforwarded_methods(source, "Greeter");
/// assert_eq!(left_out, Ok(vec!["greet".to_owned()]));
/// ```
///
/// Errors when the source has no such trait or no invocation for it.
pub fn unforwarded_methods(source: &str, trait_name: &str) -> Result<Vec<String>, String> {
    crate::forward::unforwarded_methods(source, trait_name)
}

fn binary() -> Vec<u8> {
    (0..=255u8).cycle().take(1024).collect()
}

fn version_one() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("host.json", br#"{"version": "2.0"}"#.to_vec()),
        (
            "Hello/function.json",
            br#"{"bindings": [{"type": "httpTrigger", "direction": "in", "name": "req"}, {"type": "http", "direction": "out", "name": "res"}]}"#.to_vec(),
        ),
        ("Hello/index.js", b"module.exports = async () => ({});\n".to_vec()),
        ("Shared/deep/nested/data.bin", binary()),
        ("Shared/empty.txt", Vec::new()),
        ("gone-in-v2.txt", b"this file is deleted in version 2\n".to_vec()),
    ]
}

fn version_two() -> Vec<(&'static str, Vec<u8>)> {
    let mut files: Vec<(&'static str, Vec<u8>)> = version_one()
        .into_iter()
        .filter(|(p, _)| *p != "gone-in-v2.txt")
        .collect();
    for f in &mut files {
        if f.0 == "Hello/index.js" {
            f.1 = b"module.exports = async () => ({ version: 2 });\n".to_vec();
        }
    }
    files.push((
        "Added/function.json",
        br#"{"bindings": [{"type": "manualTrigger", "direction": "in", "name": "input"}]}"#
            .to_vec(),
    ));
    files
}

/// Reads every file under `dir` (paths with `/`).
fn read_tree(dir: &Path) -> std::io::Result<BTreeMap<String, Vec<u8>>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) -> std::io::Result<()> {
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                walk(root, &path, out)?;
            } else {
                let rel = path
                    .strip_prefix(root)
                    .map_err(std::io::Error::other)?
                    .to_string_lossy()
                    .replace('\\', "/");
                out.insert(rel, fs::read(&path)?);
            }
        }
        Ok(())
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out)?;
    Ok(out)
}

fn compare(
    label: &str,
    fetched: &BTreeMap<String, Vec<u8>>,
    want: &[(&str, Vec<u8>)],
    failures: &mut Vec<String>,
) {
    let want: BTreeMap<String, Vec<u8>> = want
        .iter()
        .map(|(p, c)| ((*p).to_owned(), c.clone()))
        .collect();
    for (path, content) in &want {
        match fetched.get(path) {
            None => failures.push(format!("{label}: {path} is missing")),
            Some(c) if c != content => failures.push(format!(
                "{label}: {path} has different content ({} bytes, want {})",
                c.len(),
                content.len()
            )),
            Some(_) => {}
        }
    }
    for path in fetched.keys() {
        if !want.contains_key(path) {
            failures.push(format!("{label}: {path} was written but is not part of the source (source metadata such as .git must not be fetched)"));
        }
    }
}

/// Checks that `call` (a fetch or an update) returned the id `head()` gave.
fn check_id(call: &str, snapshot: &SourceSnapshot, head: &str, failures: &mut Vec<String>) {
    if snapshot.id != head {
        failures.push(format!(
            "{call} returned id {} but head() said {head}",
            snapshot.id
        ));
    }
}

/// Checks that `dir`, as `writer` (fetch or update) left it, holds exactly
/// `want`; differences are reported as `label`'s.
fn check_tree(
    writer: &str,
    dir: &Path,
    label: &str,
    want: &[(&str, Vec<u8>)],
    failures: &mut Vec<String>,
) {
    match read_tree(dir) {
        Ok(tree) => compare(label, &tree, want, failures),
        Err(e) => failures.push(format!("cannot read what {writer} wrote: {e}")),
    }
}

/// Runs the source provider suite; returns every failed check.
///
/// It publishes two versions through `fixture` and checks that `head` is
/// stable, that `fetch` writes exactly the published files (binary, empty
/// and nested files included; nothing else) with the id `head` gave, that a
/// new version moves `head` and deleted files disappear, that `update`
/// brings a folder holding version one to exactly version two, and that a
/// missing
/// source is an error, not a panic.
pub fn check_source_provider(
    provider: &dyn SourceProvider,
    fixture: &mut dyn SourceFixture,
) -> Result<(), ConformanceFailures> {
    let mut failures = Vec::new();
    let scratch = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => {
            return Err(ConformanceFailures(vec![format!(
                "no temporary folder: {e}"
            )]));
        }
    };
    let name = provider.name().to_owned();
    if name.trim().is_empty() {
        failures.push("name() is empty".to_owned());
    }
    let publish = |fixture: &mut dyn SourceFixture, files: &[(&str, Vec<u8>)], msg: &str| {
        let borrowed: Vec<(&str, &[u8])> = files.iter().map(|(p, c)| (*p, c.as_slice())).collect();
        fixture.publish(&borrowed, msg)
    };

    let v1 = version_one();
    if let Err(e) = publish(fixture, &v1, "version one") {
        return Err(ConformanceFailures(vec![format!(
            "the fixture could not publish version one: {e}"
        )]));
    }
    let spec = fixture.spec();
    let head1 = match provider.head(&spec) {
        Ok(h) => h,
        Err(e) => {
            return Err(ConformanceFailures(vec![format!(
                "head() failed on a published source: {e}"
            )]));
        }
    };
    match provider.head(&spec) {
        Ok(h) if h == head1 => {}
        Ok(h) => failures.push(format!("head() changed without a change: {head1} then {h}")),
        Err(e) => failures.push(format!("head() failed the second time: {e}")),
    }
    match provider.moved_since(&spec, Some(&head1)) {
        Ok(false) => {}
        Ok(true) => failures.push("moved_since(head) is true without a change".to_owned()),
        Err(e) => failures.push(format!("moved_since failed: {e}")),
    }

    for (round, dir) in ["fetch-1", "fetch-1-again"].iter().enumerate() {
        let into = scratch.path().join(dir);
        if let Err(e) = fs::create_dir_all(&into) {
            failures.push(format!("cannot make {dir}: {e}"));
            continue;
        }
        match provider.fetch(&spec, &into) {
            Ok(snapshot) => {
                check_id(&format!("fetch #{round}"), &snapshot, &head1, &mut failures);
                let label = format!("fetch #{} of version one", round + 1);
                check_tree("fetch", &into, &label, &v1, &mut failures);
            }
            Err(e) => failures.push(format!("fetch of version one failed: {e}")),
        }
    }

    let v2 = version_two();
    if let Err(e) = publish(fixture, &v2, "version two") {
        failures.push(format!("the fixture could not publish version two: {e}"));
        return Err(ConformanceFailures(failures));
    }
    match provider.head(&spec) {
        Ok(h) if h == head1 => failures.push("head() did not move after a new version".to_owned()),
        Ok(head2) => {
            match provider.moved_since(&spec, Some(&head1)) {
                Ok(true) => {}
                Ok(false) => {
                    failures.push("moved_since(old head) is false after a new version".to_owned())
                }
                Err(e) => failures.push(format!("moved_since failed: {e}")),
            }
            let into = scratch.path().join("fetch-2");
            let _ = fs::create_dir_all(&into);
            match provider.fetch(&spec, &into) {
                Ok(snapshot) => {
                    check_id("fetch", &snapshot, &head2, &mut failures);
                    check_tree("fetch", &into, "fetch of version two", &v2, &mut failures);
                }
                Err(e) => failures.push(format!("fetch of version two failed: {e}")),
            }
            // The folder of the first fetch still holds version one.
            let dir = scratch.path().join("fetch-1");
            match provider.update(&spec, &dir, &head1) {
                Ok(snapshot) => {
                    check_id("update", &snapshot, &head2, &mut failures);
                    let label = "update from version one to version two";
                    check_tree("update", &dir, label, &v2, &mut failures);
                }
                Err(e) => failures.push(format!("update from version one failed: {e}")),
            }
        }
        Err(e) => failures.push(format!("head() failed after a new version: {e}")),
    }

    let missing = fixture.missing();
    let into = scratch.path().join("fetch-missing");
    let _ = fs::create_dir_all(&into);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        (
            provider.head(&missing).is_err(),
            provider.fetch(&missing, &into).is_err(),
        )
    }));
    match outcome {
        Ok((true, true)) => {}
        Ok(_) => failures
            .push("a missing source did not give an error from head() and fetch()".to_owned()),
        Err(_) => failures.push("a missing source made the provider panic".to_owned()),
    }

    ConformanceFailures::of(&name, failures)
}

/// Runs [`check_source_provider`] and panics with every failure.
pub fn assert_source_provider(provider: &dyn SourceProvider, fixture: &mut dyn SourceFixture) {
    if let Err(failures) = check_source_provider(provider, fixture) {
        panic!("{failures}");
    }
}

/// The sources [`check_build_provider`] asks a [`BuildFixture`] for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BuildCase {
    /// A source the provider builds successfully, within a minute.
    Succeeds,
    /// A source whose build fails (a step that exits with an error).
    Fails,
    /// A source whose build would never end on its own and that, while it
    /// runs, writes to a file in the source folder at least every 100 ms
    /// (a shell loop such as `while :; do date >> ticks; sleep 0.05; done`).
    RunsForever,
}

/// Writes the sources the build suite builds.
pub trait BuildFixture {
    /// Writes the source of `case` into `dir`, an empty folder. Returns
    /// `false` when the provider has no such case (a copy-only build
    /// cannot fail, nor run for ever): the suite skips it.
    fn write_source(
        &mut self,
        case: BuildCase,
        dir: &Path,
    ) -> Result<bool, Box<dyn std::error::Error>>;
}

/// A [`BuildLog`] that keeps every line.
#[derive(Debug, Default)]
struct KeptLog(std::sync::Mutex<Vec<(LogLevel, String)>>);

impl BuildLog for KeptLog {
    fn line(&self, level: LogLevel, line: &str) {
        if let Ok(mut lines) = self.0.lock() {
            lines.push((level, line.to_owned()));
        }
    }
}

impl KeptLog {
    fn len(&self) -> usize {
        self.0.lock().map_or(0, |l| l.len())
    }
}

/// Runs the build provider suite; returns every failed check.
///
/// Each source is built in its own scratch folder that holds the source
/// folder, the temporary folder and, beside them, a stand-in for a live
/// app. It checks that a successful build returns a folder inside the
/// source or temporary folder with a summary and logs at least one line;
/// that a failing build is an error that names the provider; that a build
/// that runs for ever is stopped at its timeout with
/// [`BuildError::Timeout`], with nothing it started still writing to the
/// source folder afterwards; that no build writes outside its two folders;
/// and that no build panics.
pub fn check_build_provider(
    provider: &dyn BuildProvider,
    fixture: &mut dyn BuildFixture,
) -> Result<(), ConformanceFailures> {
    let mut failures = Vec::new();
    let name = provider.name().to_owned();
    if name.trim().is_empty() {
        failures.push("name() is empty".to_owned());
    }
    for case in [
        BuildCase::Succeeds,
        BuildCase::Fails,
        BuildCase::RunsForever,
    ] {
        if let Err(e) = check_build_case(provider, fixture, case, &mut failures) {
            failures.push(format!("{case:?}: {e}"));
        }
    }
    ConformanceFailures::of(&name, failures)
}

/// Runs [`check_build_provider`] and panics with every failure.
pub fn assert_build_provider(provider: &dyn BuildProvider, fixture: &mut dyn BuildFixture) {
    if let Err(failures) = check_build_provider(provider, fixture) {
        panic!("{failures}");
    }
}

/// How long the suite gives a build that runs for ever, and how much later
/// than that it may stop.
const FOREVER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);
const FOREVER_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

fn check_build_case(
    provider: &dyn BuildProvider,
    fixture: &mut dyn BuildFixture,
    case: BuildCase,
    failures: &mut Vec<String>,
) -> Result<(), Box<dyn std::error::Error>> {
    use std::time::{Duration, Instant};

    let scratch = tempfile::tempdir()?;
    let source_dir = scratch.path().join("source");
    let temp_dir = scratch.path().join("temp");
    let live = scratch.path().join("live");
    for dir in [&source_dir, &temp_dir, &live] {
        fs::create_dir_all(dir)?;
    }
    fs::write(live.join("host.json"), br#"{"version": "2.0"}"#)?;
    if !fixture.write_source(case, &source_dir)? {
        return Ok(());
    }
    let outside = |root: &Path| -> std::io::Result<BTreeMap<String, Vec<u8>>> {
        let mut tree = read_tree(root)?;
        tree.retain(|path, _| !path.starts_with("source/") && !path.starts_with("temp/"));
        Ok(tree)
    };
    let before = outside(scratch.path())?;
    let snapshot = SourceSnapshot::new("0123456789abcdef");
    let log = KeptLog::default();
    let timeout = match case {
        BuildCase::RunsForever => FOREVER_TIMEOUT,
        _ => Duration::from_secs(600),
    };
    let env = [("FNHOST_TESTKIT".to_owned(), "1".to_owned())];
    let ctx = BuildContext {
        source_dir: &source_dir,
        temp_dir: &temp_dir,
        snapshot: &snapshot,
        env: &env,
        timeout,
        log: &log,
    };
    let started = Instant::now();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| provider.build(&ctx)));
    let took = started.elapsed();
    let label = format!("{case:?}");
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(_) => {
            failures.push(format!("{label}: the build panicked"));
            return Ok(());
        }
    };
    match (case, outcome) {
        (BuildCase::Succeeds, Ok(output)) => {
            let inside = |dir: &Path| {
                let (Ok(out), Ok(dir)) = (output.dir.canonicalize(), dir.canonicalize()) else {
                    return false;
                };
                out.starts_with(dir)
            };
            if !output.dir.is_dir() {
                failures.push(format!(
                    "{label}: the output {} is not a folder",
                    output.dir.display()
                ));
            } else if !inside(&source_dir) && !inside(&temp_dir) {
                failures.push(format!(
                    "{label}: the output {} is outside the source and temporary folders",
                    output.dir.display()
                ));
            }
            if output.summary.trim().is_empty() {
                failures.push(format!("{label}: the summary is empty"));
            }
            if log.len() == 0 {
                failures.push(format!("{label}: nothing was logged"));
            }
        }
        (BuildCase::Succeeds, Err(e)) => failures.push(format!("{label}: the build failed: {e}")),
        (BuildCase::Fails, Ok(output)) => {
            failures.push(format!("{label}: the build succeeded ({})", output.summary))
        }
        (BuildCase::Fails, Err(e)) => {
            if matches!(e, BuildError::Timeout { .. }) {
                failures.push(format!(
                    "{label}: a failed step was reported as a timeout: {e}"
                ));
            }
            if build_error_provider(&e) != provider.name() {
                failures.push(format!(
                    "{label}: the error names provider '{}', not '{}'",
                    build_error_provider(&e),
                    provider.name()
                ));
            }
        }
        (BuildCase::RunsForever, Ok(output)) => failures.push(format!(
            "{label}: the build ended by itself ({}); the fixture's source must run until stopped",
            output.summary
        )),
        (BuildCase::RunsForever, Err(e)) => {
            if !matches!(e, BuildError::Timeout { .. }) {
                failures.push(format!("{label}: not a timeout: {e}"));
            }
            if took > FOREVER_TIMEOUT + FOREVER_GRACE {
                failures.push(format!(
                    "{label}: stopped after {took:?}, for a timeout of {FOREVER_TIMEOUT:?}"
                ));
            }
            // What the build started must be gone: the source folder no
            // longer changes.
            std::thread::sleep(Duration::from_millis(200));
            let first = read_tree(&source_dir)?;
            std::thread::sleep(Duration::from_millis(500));
            if read_tree(&source_dir)? != first {
                failures.push(format!(
                    "{label}: something the build started still writes to the source folder after the timeout"
                ));
            }
        }
    }
    if outside(scratch.path())? != before {
        failures.push(format!(
            "{label}: the build wrote outside its source and temporary folders"
        ));
    }
    Ok(())
}

fn build_error_provider(e: &BuildError) -> &str {
    match e {
        BuildError::StepFailed { provider, .. }
        | BuildError::Timeout { provider, .. }
        | BuildError::Invalid { provider, .. }
        | BuildError::Other { provider, .. } => provider,
    }
}

/// Runs the executor suite against `host`, whose app must have a function
/// named `Echo` that returns its trigger value as `$return` (the suite's
/// contract for a function under test). It checks round trips of varied
/// JSON values, 32 concurrent invocations each getting its own result, and
/// that an invocation abandoned mid-way (its future dropped) does not break
/// the next one. The host is started and shut down by the suite.
pub async fn check_executor(host: Arc<Host>) -> Result<(), ConformanceFailures> {
    let mut failures = Vec::new();
    if let Err(e) = host.start().await {
        return Err(ConformanceFailures(vec![format!("start() failed: {e}")]));
    }
    let Some(echo) = host.resolve("Echo") else {
        return Err(ConformanceFailures(vec![
            "the app has no function named Echo".to_owned(),
        ]));
    };
    let values = [
        json!(null),
        json!(42),
        json!("text with \"quotes\" and ünïcödé"),
        json!({"nested": {"list": [1, 2.5, true, null]}, "empty": {}}),
        json!("x".repeat(100_000)),
    ];
    for value in &values {
        match echo.invoke(Invocation::new(value.clone())).await {
            Ok(result) => {
                let got = result.return_value.as_ref().map(BindingData::to_json);
                if got.as_ref() != Some(value) {
                    failures.push(format!(
                        "echo of {} came back as {:?}",
                        short(value),
                        got.map(|g| short(&g))
                    ));
                }
            }
            Err(e) => failures.push(format!("echo of {} failed: {e}", short(value))),
        }
    }
    let mut tasks = Vec::new();
    for i in 0..32 {
        let echo = echo.clone();
        tasks.push(async move { (i, echo.invoke(Invocation::new(json!({"n": i}))).await) });
    }
    for (i, outcome) in join_all(tasks).await {
        match outcome {
            Ok(r) if r.return_value.as_ref().map(BindingData::to_json) == Some(json!({"n": i})) => {
            }
            Ok(r) => failures.push(format!(
                "concurrent invocation {i} got another result: {:?}",
                r.return_value
            )),
            Err(e) => failures.push(format!("concurrent invocation {i} failed: {e}")),
        }
    }
    {
        // Start an invocation and abandon it after its first poll.
        let fut = echo.invoke(Invocation::new(json!("abandoned")));
        let mut fut = std::pin::pin!(fut);
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let _ = fut.as_mut().poll(&mut cx);
    }
    match echo.invoke(Invocation::new(json!("after"))).await {
        Ok(r) if r.return_value.as_ref().map(BindingData::to_json) == Some(json!("after")) => {}
        Ok(r) => failures.push(format!(
            "after an abandoned invocation, echo returned {:?}",
            r.return_value
        )),
        Err(e) => failures.push(format!("after an abandoned invocation, echo failed: {e}")),
    }
    host.shutdown().await;
    if failures.is_empty() {
        Ok(())
    } else {
        Err(ConformanceFailures(failures))
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 60 {
        format!(
            "{}... ({} bytes)",
            &s[..s.char_indices().nth(60).map_or(s.len(), |(i, _)| i)],
            s.len()
        )
    } else {
        s
    }
}

/// Awaits futures concurrently on the current task.
async fn join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    use std::pin::Pin;
    use std::task::Poll;
    let mut pending: Vec<Option<Pin<Box<F>>>> =
        futures.into_iter().map(|f| Some(Box::pin(f))).collect();
    let mut results: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(move |cx| {
        let mut all_done = true;
        for (slot, result) in pending.iter_mut().zip(results.iter_mut()) {
            if let Some(fut) = slot {
                match fut.as_mut().poll(cx) {
                    Poll::Ready(v) => {
                        *result = Some(v);
                        *slot = None;
                    }
                    Poll::Pending => all_done = false,
                }
            }
        }
        if all_done {
            Poll::Ready(results.iter_mut().filter_map(Option::take).collect())
        } else {
            Poll::Pending
        }
    })
    .await
}
