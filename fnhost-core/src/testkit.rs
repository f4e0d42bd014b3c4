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

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::path::Path;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::invoke::{BindingData, Host, Invocation};
use crate::source::{SourceProvider, SourceProviderExt, SourceSpec};

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
                if snapshot.id != head1 {
                    failures.push(format!(
                        "fetch #{round} returned id {} but head() said {head1}",
                        snapshot.id
                    ));
                }
                match read_tree(&into) {
                    Ok(tree) => compare(
                        &format!("fetch #{} of version one", round + 1),
                        &tree,
                        &v1,
                        &mut failures,
                    ),
                    Err(e) => failures.push(format!("cannot read what fetch wrote: {e}")),
                }
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
                    if snapshot.id != head2 {
                        failures.push(format!(
                            "fetch returned id {} but head() said {head2}",
                            snapshot.id
                        ));
                    }
                    match read_tree(&into) {
                        Ok(tree) => compare("fetch of version two", &tree, &v2, &mut failures),
                        Err(e) => failures.push(format!("cannot read what fetch wrote: {e}")),
                    }
                }
                Err(e) => failures.push(format!("fetch of version two failed: {e}")),
            }
            // The folder of the first fetch still holds version one.
            let dir = scratch.path().join("fetch-1");
            match provider.update(&spec, &dir, &head1) {
                Ok(snapshot) => {
                    if snapshot.id != head2 {
                        failures.push(format!(
                            "update returned id {} but head() said {head2}",
                            snapshot.id
                        ));
                    }
                    match read_tree(&dir) {
                        Ok(tree) => compare(
                            "update from version one to version two",
                            &tree,
                            &v2,
                            &mut failures,
                        ),
                        Err(e) => failures.push(format!("cannot read what update wrote: {e}")),
                    }
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

    if failures.is_empty() {
        Ok(())
    } else {
        Err(ConformanceFailures(
            failures
                .into_iter()
                .map(|f| format!("[{name}] {f}"))
                .collect(),
        ))
    }
}

/// Runs [`check_source_provider`] and panics with every failure.
pub fn assert_source_provider(provider: &dyn SourceProvider, fixture: &mut dyn SourceFixture) {
    if let Err(failures) = check_source_provider(provider, fixture) {
        panic!("{failures}");
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
