//! Azure's own programming models through fnhost's language workers, as a
//! user runs them: `fnhost workers install`, then `fnhost serve APP` with
//! the app given by a relative path, real node and python3 processes,
//! plain HTTP over loopback, every wait bounded.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fnhost_testsupport::Running;
use fnhost_testsupport::app::scratch_home;
use fnhost_testsupport::http::{self, Answer};
use fnhost_testsupport::process::succeeded;

mod support;
use support::{BIN, workers};

#[path = "../../fnhost-triggers/tests/support/mod.rs"]
mod storage_support;

/// The examples folder of the repository.
fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/apps")
}

/// Copies an app folder (without node_modules and .fnhost) into `dest`.
fn copy_app(from: &Path, dest: &Path) {
    std::fs::create_dir_all(dest).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == "node_modules" || name == ".fnhost" || name == "__pycache__" {
            continue;
        }
        let to = dest.join(&name);
        if entry.file_type().unwrap().is_dir() {
            copy_app(&entry.path(), &to);
        } else {
            std::fs::copy(entry.path(), to).unwrap();
        }
    }
}

/// A running `fnhost serve`, killed when dropped.
struct Served {
    run: Running,
    addr: String,
}

impl Served {
    /// Waits until a stderr line contains `needle`; the line.
    fn wait_log(&self, needle: &str, limit: Duration) -> String {
        self.run.wait_stderr(needle, limit)
    }

    fn log_text(&self) -> String {
        self.run.stderr()
    }

    /// Asserts that the function list on stdout has a line with `needle`.
    fn lists(&self, needle: &str) {
        self.run.wait_stdout(needle, Duration::from_secs(10));
    }
}

/// `fnhost serve ARGS` run in `cwd`, waited for until it listens.
fn serve(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Served {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(cwd)
        .arg("serve")
        .args(args)
        .args(["--port", "0"])
        .env("FNHOST_WORKERS_DIR", workers())
        .envs(env.iter().copied());
    let run = Running::spawn(cmd);
    let addr = run.listening(Duration::from_secs(60));
    Served { run, addr }
}

/// One request over a fresh connection; it must be answered.
fn request(
    addr: &str,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Answer {
    http::request(addr, method, target, headers, body).unwrap()
}

fn get(addr: &str, target: &str) -> Answer {
    request(addr, "GET", target, &[], b"")
}

fn post_json(addr: &str, target: &str, json: &str) -> Answer {
    request(
        addr,
        "POST",
        target,
        &[("Content-Type", "application/json")],
        json.as_bytes(),
    )
}

/// Bytes that are not UTF-8, to prove bodies pass through untouched.
fn binary_body() -> Vec<u8> {
    (0..4096u32).map(|i| (i * 7 % 256) as u8).collect()
}

/// Serves the example app `name`, copied into a scratch folder and given
/// to `fnhost serve` by its relative path, as a user types it.
fn serve_example(name: &str) -> (tempfile::TempDir, Served) {
    let scratch = tempfile::tempdir().unwrap();
    copy_app(&examples().join(name), &scratch.path().join(name));
    let served = serve(scratch.path(), &[name], &[]);
    (scratch, served)
}

/// What every HTTP sample app answers, whatever its model; `prefix` is
/// the route prefix of its functions (`v3/` for the node v3 sample);
/// `create` the method and path that answer 201.
fn check_common(s: &Served, prefix: &str, create: (&str, &str)) {
    let a = get(&s.addr, &format!("/api/{prefix}hello?name=Ada"));
    assert_eq!(a.status, 200, "{}", a.text());
    assert!(a.text().contains("Ada"), "{}", a.text());

    let a = get(&s.addr, &format!("/api/{prefix}items/42"));
    assert_eq!(a.status, 200, "{}", a.text());
    assert!(
        a.text().replace(' ', "").contains("\"id\":42"),
        "{}",
        a.text()
    );
    assert!(
        a.header("content-type").unwrap_or("").contains("json"),
        "{:?}",
        a.headers
    );
    // The route constraint: not an int, no match.
    assert_eq!(get(&s.addr, &format!("/api/{prefix}items/abc")).status, 404);

    let a = request(
        &s.addr,
        create.0,
        &format!("/api/{prefix}{}", create.1),
        &[("Content-Type", "application/json")],
        br#"{"name":"x"}"#,
    );
    assert_eq!(a.status, 201, "{}", a.text());
    assert_eq!(
        a.header("x-fnhost-test"),
        Some("created"),
        "{:?}",
        a.headers
    );

    // An exception: 500 with the function's message; the worker goes on.
    let a = get(&s.addr, &format!("/api/{prefix}fail"));
    assert_eq!(a.status, 500, "{}", a.text());
    assert!(a.text().contains("fail"), "{}", a.text());
    let a = get(&s.addr, &format!("/api/{prefix}hello?name=Bo"));
    assert_eq!(a.status, 200, "after a failure: {}", a.text());
    assert!(a.text().contains("Bo"));
}

/// `fnhost ARGS` run in `dir` with `env` set: its output.
fn fnhost_in(dir: &Path, env: &[(&str, &Path)], args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .current_dir(dir)
        .envs(env.iter().copied())
        .args(args)
        .output()
        .unwrap()
}

/// The sample's `hello` logs `hello`, and its timer `tick` (every five
/// seconds, with Azure's timer payload) logs `tick`; each line names its
/// function and invocation.
fn check_hello_and_tick_logged(s: &Served, hello: &str, tick: &str) {
    check_logged(s, "hello", hello);
    check_logged(s, "tick", tick);
}

/// A log line of `function` carries its invocation id.
fn check_logged(s: &Served, function: &str, text: &str) {
    let line = s.wait_log(text, Duration::from_secs(10));
    assert!(
        line.contains(&format!("{function}:")) && line.contains("(invocation "),
        "the log line names neither the function nor the invocation: {line}"
    );
}

#[test]
fn node_v4_sample_runs_unchanged() {
    let (_scratch, s) = serve_example("node-v4");
    s.lists("hello: [GET,POST]");
    s.lists("tick: timerTrigger");
    check_common(&s, "", ("POST", "items"));
    let a = post_json(&s.addr, "/api/echo/json", r#"{"a":[1,2],"b":"é"}"#);
    assert_eq!(a.status, 200, "{}", a.text());
    let v: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(v["received"], serde_json::json!({"a": [1, 2], "b": "é"}));
    let body = binary_body();
    let a = request(
        &s.addr,
        "POST",
        "/api/echo/binary",
        &[("Content-Type", "application/octet-stream")],
        &body,
    );
    assert_eq!(a.status, 200);
    assert_eq!(a.body, body, "the binary body came back changed");
    // The ES module function.
    assert_eq!(get(&s.addr, "/api/esm/hello").status, 200);
    // POST with a body to the GET/POST function.
    let a = request(&s.addr, "POST", "/api/hello", &[], b"Cy");
    assert!(a.text().contains("Cy"), "{}", a.text());
    check_hello_and_tick_logged(
        &s,
        "Http function processed request",
        "timer fired past_due=false",
    );
}

#[test]
fn node_v3_sample_runs_unchanged() {
    let (_scratch, s) = serve_example("node-v3");
    check_common(&s, "v3/", ("POST", "items"));
    let a = post_json(&s.addr, "/api/v3/echo/json", r#"{"k":"v"}"#);
    assert_eq!(a.status, 200, "{}", a.text());
    let v: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(v["received"]["k"], "v", "{}", a.text());
}

#[test]
fn python_v2_sample_runs_unchanged() {
    let (_scratch, s) = serve_example("python-v2");
    s.lists("out_binding: [GET]");
    check_common(&s, "", ("POST", "items"));
    let a = post_json(&s.addr, "/api/echo", r#"{"a":[1,2]}"#);
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.header("content-type"), Some("application/json"));
    let body = binary_body();
    let a = request(&s.addr, "POST", "/api/binary", &[], &body);
    assert_eq!(a.body, body, "the binary body came back changed");
    // An http output binding set with func.Out.
    let a = get(&s.addr, "/api/out");
    assert_eq!(a.status, 202, "{}", a.text());
    assert_eq!(a.text(), "set through func.Out");
    check_hello_and_tick_logged(&s, "hello called for Ada", "timer fired past_due=False");
}

#[test]
fn python_v1_sample_runs_unchanged() {
    let (_scratch, s) = serve_example("python-v1");
    check_common(&s, "", ("PUT", "items/7"));
    let body = binary_body();
    let a = request(&s.addr, "POST", "/api/binary", &[], &body);
    assert_eq!(a.body, body, "the binary body came back changed");
}

/// Writes a Node.js v4 app (package.json `main` is `src/index.js`) with
/// `index_js`, `host_json`, and `settings` appended to its Values.
fn write_node_v4_app(dir: &Path, host_json: &str, settings: &str, index_js: &str) {
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(dir.join("host.json"), host_json).unwrap();
    std::fs::write(
        dir.join("local.settings.json"),
        format!(r#"{{"IsEncrypted": false, "Values": {{"FUNCTIONS_WORKER_RUNTIME": "node"{settings}}}}}"#),
    )
    .unwrap();
    std::fs::write(
        dir.join("package.json"),
        r#"{"name": "app", "version": "1.0.0", "main": "src/index.js"}"#,
    )
    .unwrap();
    std::fs::write(dir.join("src/index.js"), index_js).unwrap();
}

/// Writes a Node.js v4 app with the functions the fault tests need.
fn write_fault_app(dir: &Path, host_json: &str, settings: &str) {
    write_node_v4_app(
        dir,
        host_json,
        settings,
        r#"const { app } = require('@azure/functions');
app.http('pid', { methods: ['GET'], authLevel: 'anonymous', handler: async () => {
    await new Promise((r) => setTimeout(r, 20));
    return { body: String(process.pid) };
} });
app.http('crash', { methods: ['GET'], authLevel: 'anonymous', handler: async () => {
    setTimeout(() => process.exit(3), 50);
    await new Promise(() => {});
} });
app.http('forever', { methods: ['GET'], authLevel: 'anonymous', handler: () => new Promise(() => {}) });
"#,
    );
}

#[test]
fn a_worker_that_exits_mid_request_is_started_again() {
    let scratch = tempfile::tempdir().unwrap();
    write_fault_app(&scratch.path().join("faults"), r#"{"version": "2.0"}"#, "");
    let s = serve(scratch.path(), &["faults"], &[]);
    let first_pid = get(&s.addr, "/api/pid").text();
    let a = get(&s.addr, "/api/crash");
    assert_eq!(a.status, 500, "{}", a.text());
    s.wait_log("starting it again", Duration::from_secs(10));
    // The next request waits for the new process and is served.
    let a = get(&s.addr, "/api/pid");
    assert_eq!(a.status, 200, "{}\n{}", a.text(), s.log_text());
    assert_ne!(a.text(), first_pid, "the same process answered");
    assert!(
        s.log_text().contains("exited"),
        "the log does not say the worker exited:\n{}",
        s.log_text()
    );
}

#[test]
fn a_function_that_never_returns_times_out() {
    let scratch = tempfile::tempdir().unwrap();
    write_fault_app(
        &scratch.path().join("faults"),
        r#"{"version": "2.0", "functionTimeout": "00:00:02"}"#,
        "",
    );
    let s = serve(scratch.path(), &["faults"], &[]);
    let started = Instant::now();
    let a = get(&s.addr, "/api/forever");
    assert_eq!(a.status, 500, "{}", a.text());
    assert!(a.text().contains("timed out"), "{}", a.text());
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(get(&s.addr, "/api/pid").status, 200);
}

#[test]
fn two_worker_processes_share_the_load() {
    let scratch = tempfile::tempdir().unwrap();
    write_fault_app(
        &scratch.path().join("faults"),
        r#"{"version": "2.0"}"#,
        r#", "FUNCTIONS_WORKER_PROCESS_COUNT": "2""#,
    );
    let s = serve(scratch.path(), &["faults"], &[]);
    let addr = s.addr.clone();
    let pids: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..16)
            .map(|_| scope.spawn(|| get(&addr, "/api/pid").text()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut distinct = pids.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 2, "answered by {distinct:?}");
    for pid in &distinct {
        let n = pids.iter().filter(|p| *p == pid).count();
        assert!(n >= 4, "uneven spread: {pids:?}");
    }
}

#[test]
fn an_app_declaring_functions_in_code_without_a_runtime_is_a_clear_error() {
    let scratch = tempfile::tempdir().unwrap();
    let app = scratch.path().join("noruntime");
    copy_app(&examples().join("python-v2"), &app);
    std::fs::write(app.join("local.settings.json"), r#"{"Values": {}}"#).unwrap();
    let out = fnhost_in(scratch.path(), &[], &["validate", "noruntime"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text.contains("FH0604")
            && text.contains("FUNCTIONS_WORKER_RUNTIME")
            && text.contains("python"),
        "{text}"
    );
    // An unknown runtime names the setting and the choices.
    std::fs::write(
        app.join("local.settings.json"),
        r#"{"Values": {"FUNCTIONS_WORKER_RUNTIME": "cobol"}}"#,
    )
    .unwrap();
    let out = fnhost_in(scratch.path(), &[], &["validate", "noruntime"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("cobol") && text.contains("node"), "{text}");
}

#[test]
fn validate_and_list_show_what_the_worker_indexes() {
    let scratch = tempfile::tempdir().unwrap();
    copy_app(&examples().join("python-v2"), &scratch.path().join("py"));
    let out = fnhost_in(scratch.path(), &[], &["validate", "py"]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("function_app.py") && err.contains("python worker"),
        "{err}"
    );
    let out = fnhost_in(
        scratch.path(),
        &[("FNHOST_WORKERS_DIR", workers())],
        &["list", "--index", "--json", "py"],
    );
    succeeded(&out);
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["name"].as_str())
        .collect();
    assert!(
        names.contains(&"get_item") && names.contains(&"tick"),
        "{names:?}"
    );
}

#[test]
fn invoke_runs_an_indexed_function_from_a_relative_path() {
    let scratch = tempfile::tempdir().unwrap();
    copy_app(&examples().join("node-v4"), &scratch.path().join("app"));
    let out = fnhost_in(
        scratch.path(),
        &[("FNHOST_WORKERS_DIR", workers())],
        &["invoke", "app", "getItem", "--json"],
    );
    succeeded(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("id"), "{text}");
}

#[test]
fn workers_list_shows_what_is_installed() {
    let out = Command::new(BIN)
        .args(["workers", "list", "--json", "--dir"])
        .arg(workers())
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let langs: Vec<(&str, &str)> = v["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["language"].as_str().unwrap(),
                w["state"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(langs, vec![("node", "installed"), ("python", "installed")]);
}

/// The Node worker's own tests (`node --test`): its protobuf codec and
/// message tables, the gRPC framing, the worker end to end against a
/// stand-in host, and the HTTP fast path against @azure/functions' own
/// objects; run on the installed worker, with its dependencies.
#[test]
fn the_node_workers_own_tests_pass() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../workers/node/test");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".test.js"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 3,
        "test files in {}: {files:?}",
        dir.display()
    );
    let mut cmd = Command::new("node");
    cmd.arg("--test")
        .args(&files)
        .env("FNHOST_NODE_WORKER_DIR", workers().join("node"));
    let out = fnhost_testsupport::process::run_bounded(cmd, Duration::from_secs(300));
    let report = String::from_utf8_lossy(&succeeded(&out).stdout);
    assert!(report.contains("# fail 0"), "{report}");
    assert!(!report.contains("# pass 0"), "{report}");
}

/// Writes a Node.js v4 app whose function answers `version` after `ms`.
fn write_versioned_app(dir: &Path, version: &str) {
    write_node_v4_app(
        dir,
        r#"{"version": "2.0"}"#,
        "",
        &format!(
            r#"const {{ app }} = require('@azure/functions');
app.http('version', {{ methods: ['GET'], authLevel: 'anonymous', handler: async () => {{
    await new Promise((r) => setTimeout(r, 30));
    return {{ body: '{version}' }};
}} }});
"#
        ),
    );
}

/// `fnhost --home HOME ARGS` run to success; its stdout.
fn fnhost_home(home: &Path, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .arg("--home")
        .arg(home)
        .args(args)
        .env("FNHOST_WORKERS_DIR", workers())
        .output()
        .unwrap();
    String::from_utf8(succeeded(&out).stdout.clone()).unwrap()
}

#[test]
fn serve_app_swaps_a_language_worker_app_without_losing_a_request() {
    let (scratch, home) = scratch_home();
    let src = scratch.path().join("src");
    write_versioned_app(&src, "v1");
    fnhost_home(&home, &["apps", "create", "swap"]);
    // local.settings.json is not deployed (as on Azure): the runtime is an
    // app setting.
    fnhost_home(
        &home,
        &["settings", "set", "swap", "FUNCTIONS_WORKER_RUNTIME=node"],
    );
    let src_arg = src.to_str().unwrap();
    fnhost_home(&home, &["deploy", "swap", "--dir", src_arg, "-m", "v1"]);
    let home_arg = home.to_str().unwrap().to_owned();
    let s = serve(scratch.path(), &["--home", &home_arg, "--app", "swap"], &[]);
    assert_eq!(get(&s.addr, "/api/version").text(), "v1");

    // Four clients keep requests in flight while v2 is deployed.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let results: Arc<Mutex<Vec<(u16, String)>>> = Arc::default();
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (stop, results, addr) = (stop.clone(), results.clone(), s.addr.clone());
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let a = get(&addr, "/api/version");
                    results.lock().unwrap().push((a.status, a.text()));
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    write_versioned_app(&src, "v2");
    fnhost_home(&home, &["deploy", "swap", "--dir", src_arg, "-m", "v2"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(&s.addr, "/api/version").text() != "v2" {
        assert!(
            Instant::now() < deadline,
            "v2 not served within 30 s:\n{}",
            s.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let results = results.lock().unwrap();
    let failed: Vec<_> = results
        .iter()
        .filter(|(status, _)| *status != 200)
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} failed: {failed:?}",
        failed.len(),
        results.len()
    );
    assert!(results.iter().any(|(_, v)| v == "v1") && results.iter().any(|(_, v)| v == "v2"));
    // The old version's worker was stopped after its requests finished.
    s.wait_log("stopped the previous version", Duration::from_secs(30));
}

#[test]
fn an_app_that_carries_its_own_worker_config_runs_with_it() {
    // As a .NET isolated build output does: worker.config.json at the app
    // root, for the app's FUNCTIONS_WORKER_RUNTIME. Here it points at the
    // installed Node.js worker, and the workers folder given is empty.
    let scratch = tempfile::tempdir().unwrap();
    let app = scratch.path().join("own");
    copy_app(&examples().join("node-v4"), &app);
    let worker_js = workers().join("node/worker.js");
    std::fs::write(
        app.join("worker.config.json"),
        format!(
            r#"{{"description": {{"language": "node", "defaultExecutablePath": "node", "defaultWorkerPath": {:?}}}}}"#,
            worker_js.to_str().unwrap()
        ),
    )
    .unwrap();
    let empty = scratch.path().join("no-workers");
    std::fs::create_dir_all(&empty).unwrap();
    let s = serve(
        scratch.path(),
        &["own"],
        &[("FNHOST_WORKERS_DIR", empty.to_str().unwrap())],
    );
    assert_eq!(get(&s.addr, "/api/hello?name=Ada").text(), "Hello, Ada!");
}

#[test]
fn a_missing_worker_names_the_install_command() {
    let scratch = tempfile::tempdir().unwrap();
    copy_app(&examples().join("python-v2"), &scratch.path().join("py"));
    let empty = scratch.path().join("no-workers");
    let out = fnhost_in(
        scratch.path(),
        &[("FNHOST_WORKERS_DIR", empty.as_path())],
        &["serve", "py", "--port", "0"],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("fnhost workers install") && err.contains("python"),
        "{err}"
    );
}

/// Azurite (with blobs) on a runtime of its own, and its queue `name`,
/// created.
fn azurite_with_queue(
    name: &str,
) -> (
    tokio::runtime::Runtime,
    storage_support::Azurite,
    fnhost_triggers::storage::QueueClient,
) {
    let (rt, azurite) = storage_support::runtime_and_azurite();
    let queue = azurite.service().queue(name);
    rt.block_on(queue.create()).unwrap();
    (rt, azurite, queue)
}

#[test]
fn node_v4_queue_trigger_writes_its_queue_and_blob_outputs() {
    use fnhost_triggers::MessageEncoding;
    use fnhost_triggers::queue::encode_message;
    let (rt, azurite, work) = azurite_with_queue("work");
    let dir = tempfile::tempdir().unwrap();
    let conn = serde_json::to_string(&azurite.connection_string()).unwrap();
    write_node_v4_app(
        dir.path(),
        r#"{"version": "2.0", "extensions": {"queues": {"maxPollingInterval": "00:00:00.2"}}}"#,
        &format!(r#", "AzureWebJobsStorage": {conn}"#),
        r#"const { app, output } = require('@azure/functions');
const receipt = output.storageBlob({ path: 'results/{Id}.txt', connection: 'AzureWebJobsStorage' });
app.storageQueue('Work', {
    queueName: 'work',
    connection: 'AzureWebJobsStorage',
    return: output.storageQueue({ queueName: 'done-{Kind}', connection: 'AzureWebJobsStorage' }),
    extraOutputs: [receipt],
    handler: (item, context) => {
        context.extraOutputs.set(receipt, Buffer.from('got ' + item.Name));
        return ['done ' + item.Name, 'again ' + item.Name];
    },
});
"#,
    );
    let served = serve(dir.path(), &["."], &[]);
    served.wait_log("listening to queue work for Work", Duration::from_secs(30));
    for name in ["ada", "bob"] {
        let body = format!(r#"{{"Kind": "k", "Name": "{name}"}}"#);
        rt.block_on(work.put(&encode_message(&body, MessageEncoding::Base64), None))
            .unwrap();
    }
    let done = azurite.service().queue("done-k");
    let blobs = azurite.blobs();
    let deadline = Instant::now() + Duration::from_secs(60);
    let results = loop {
        let page = rt.block_on(blobs.container("results").list("", None, 100));
        let count = rt.block_on(done.approximate_count()).ok().flatten();
        if let (Ok(page), Some(4)) = (&page, count)
            && page.blobs.len() == 2
        {
            break page.blobs.clone();
        }
        assert!(
            Instant::now() < deadline,
            "the outputs were not written; the log:\n{}",
            served.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut contents: Vec<String> = results
        .iter()
        .map(|b| {
            let (bytes, _) = rt
                .block_on(blobs.container("results").blob(&b.name).get())
                .unwrap()
                .unwrap();
            String::from_utf8(bytes.to_vec()).unwrap()
        })
        .collect();
    contents.sort();
    assert_eq!(contents, ["got ada", "got bob"]);
    let mut texts: Vec<String> = rt
        .block_on(done.peek(32))
        .unwrap()
        .iter()
        .map(|m| {
            let bytes = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &m.text)
                .unwrap();
            String::from_utf8(bytes).unwrap()
        })
        .collect();
    texts.sort();
    assert_eq!(texts, ["again ada", "again bob", "done ada", "done bob"]);
    drop(served);
    rt.block_on(azurite.stop());
}

#[test]
fn python_v2_queue_trigger_writes_its_queue_and_blob_outputs() {
    use fnhost_triggers::MessageEncoding;
    use fnhost_triggers::queue::encode_message;
    let (rt, azurite, work) = azurite_with_queue("pywork");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("host.json"),
        r#"{"version": "2.0", "extensions": {"queues": {"maxPollingInterval": "00:00:00.2"}}}"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("local.settings.json"),
        serde_json::json!({"IsEncrypted": false, "Values": {
            "FUNCTIONS_WORKER_RUNTIME": "python",
            "AzureWebJobsStorage": azurite.connection_string(),
        }})
        .to_string(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("function_app.py"),
        r#"import azure.functions as func

app = func.FunctionApp()


@app.queue_trigger(arg_name="msg", queue_name="pywork", connection="AzureWebJobsStorage")
@app.queue_output(arg_name="done", queue_name="pydone", connection="AzureWebJobsStorage")
@app.blob_output(arg_name="out", path="pyresults/{id}.txt", connection="AzureWebJobsStorage")
def work(msg: func.QueueMessage, done: func.Out[str], out: func.Out[str]) -> None:
    text = msg.get_body().decode("utf-8")
    done.set("done " + text)
    out.set("got " + text)
"#,
    )
    .unwrap();
    let served = serve(dir.path(), &["."], &[]);
    served.wait_log(
        "listening to queue pywork for work",
        Duration::from_secs(60),
    );
    rt.block_on(work.put(&encode_message("ada", MessageEncoding::Base64), None))
        .unwrap();
    let done = azurite.service().queue("pydone");
    let blobs = azurite.blobs();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let count = rt.block_on(done.approximate_count()).ok().flatten();
        let page = rt.block_on(blobs.container("pyresults").list("", None, 10));
        if let (Some(1), Ok(page)) = (count, &page)
            && page.blobs.len() == 1
        {
            let (bytes, _) = rt
                .block_on(blobs.container("pyresults").blob(&page.blobs[0].name).get())
                .unwrap()
                .unwrap();
            assert_eq!(&bytes[..], b"got ada");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the outputs were not written; the log:\n{}",
            served.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let m = &rt.block_on(done.peek(1)).unwrap()[0];
    let text = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &m.text).unwrap();
    assert_eq!(text, b"done ada");
    drop(served);
    rt.block_on(azurite.stop());
}
