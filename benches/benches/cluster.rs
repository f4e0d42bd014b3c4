//! The cluster's data path and start-up, each against a baseline in the
//! same run:
//!
//! 1. **Gateway vs straight to the instance**, same client (hyper, keep-
//!    alive): the median added per request at concurrency 1 (target
//!    ≤ 100 µs), and throughput (target ≥ 0.9x) with 32 connections
//!    against a function that waits 10 ms (Knative's dataplane-probe
//!    method, shortened); the same with a no-op function is printed too
//!    (there the gateway's own processor time shows, on a machine whose
//!    cores the client, the gateway and the instance share).
//! 2. **Cold worker first ready** for a 10,000-file app (fetch by digest,
//!    check, materialise, load, start) against `cp -r` of the app folder
//!    (target ≤ 2x).
//! 3. **Warm restart**: a worker started again on its cache, to ready
//!    (target ≤ 100 ms for a custom handler app), with a compiled handler
//!    (`src/bin/bench-handler.rs`, as custom handlers usually are) and with
//!    a Node.js one; each beside the handler's own start, so that the
//!    worker's part shows.
//!
//! Run with `cargo bench -p fnhost-benches --bench cluster`;
//! `FNHOST_BENCH_QUICK=1` for a smoke run.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use fnhost_benches::client::{Client, connect, get_ok, spread};
use fnhost_benches::{format_duration, quick, serve_front};
use fnhost_cluster::gateway::Gateway;
use fnhost_cluster::protocol::RouteTable;
use fnhost_core::invoke::http::HttpResponse;
use fnhost_core::{FunctionApp, Host, NativeExecutor};

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    gateway_vs_direct(&runtime);
    drop(runtime);
    start_up();
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("a parent")).expect("a folder");
    std::fs::write(path, text).expect("a file");
}

const HTTP_GET: &str = r#"{"bindings": [{"type": "httpTrigger", "direction": "in", "name": "req", "authLevel": "anonymous", "methods": ["get"]}, {"type": "http", "direction": "out", "name": "$return"}]}"#;

async fn start_instance(dir: &Path) -> SocketAddr {
    write(&dir.join("host.json"), r#"{"version": "2.0"}"#);
    for f in ["noop", "wait"] {
        write(&dir.join(f).join("function.json"), HTTP_GET);
        write(&dir.join(f).join("run.sh"), "#!/bin/sh\n");
    }
    let app = FunctionApp::loader(dir)
        .with_environment(false)
        .load()
        .expect("the app loads");
    let native = NativeExecutor::new()
        .http("noop", |_req| async { HttpResponse::text("ok") })
        .http("wait", |_req| async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            HttpResponse::text("ok")
        });
    serve_front(Arc::new(Host::builder().native(native).build(app))).await
}

async fn start_gateway(instance: SocketAddr) -> SocketAddr {
    let table: RouteTable = serde_json::from_value(serde_json::json!({"slots": [{
        "app": "bench", "slot": "production", "secrets": null,
        "routes": [
            {"function": "noop", "template": "api/noop", "methods": ["GET"], "auth": "anonymous"},
            {"function": "wait", "template": "api/wait", "methods": ["GET"], "auth": "anonymous"}
        ],
        "instances": [{"worker": "w1", "url": format!("http://{instance}"), "in_flight": 0}]
    }]}))
    .expect("a route table");
    let server = Gateway::with_table(table)
        .bind("127.0.0.1:0".parse().expect("an address"))
        .await
        .expect("the gateway binds");
    let addr = server.local_addr();
    tokio::spawn(server.serve(std::future::pending::<()>()));
    addr
}

async fn one(client: &Client, path: &str) {
    std::hint::black_box(get_ok(client, "bench.localhost", path).await);
}

/// Per-request times of `n` sequential requests on one connection.
async fn sequential(client: &Client, path: &str, n: usize) -> Vec<Duration> {
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        one(client, path).await;
        times.push(t.elapsed());
    }
    times.sort();
    times
}

/// Requests per second: `total` requests spread over the connections.
async fn throughput(clients: &[Client], path: &'static str, total: usize) -> f64 {
    let per = total / clients.len();
    let start = Instant::now();
    spread(clients, "bench.localhost", path, total).await;
    (per * clients.len()) as f64 / start.elapsed().as_secs_f64()
}

fn verdict(ok: bool) -> &'static str {
    if ok { "MET" } else { "NOT MET" }
}

fn gateway_vs_direct(rt: &tokio::runtime::Runtime) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let (direct, gateway) = rt.block_on(async {
        let instance = start_instance(dir.path()).await;
        (instance, start_gateway(instance).await)
    });
    let (n_seq, rounds) = if quick() { (300, 1) } else { (3000, 3) };
    println!("== gateway vs straight to the instance");
    // Concurrency 1: medians, alternating to share the machine's drift.
    let (mut d_med, mut g_med) = (Vec::new(), Vec::new());
    rt.block_on(async {
        let d = connect(direct, 1).await;
        let g = connect(gateway, 1).await;
        sequential(&d[0], "/api/noop", n_seq / 10).await;
        sequential(&g[0], "/api/noop", n_seq / 10).await;
        for _ in 0..rounds {
            let a = sequential(&d[0], "/api/noop", n_seq).await;
            let b = sequential(&g[0], "/api/noop", n_seq).await;
            d_med.push(a[a.len() / 2]);
            g_med.push(b[b.len() / 2]);
        }
    });
    d_med.sort();
    g_med.sort();
    let (d, g) = (d_med[d_med.len() / 2], g_med[g_med.len() / 2]);
    let added = g.saturating_sub(d);
    println!(
        "concurrency 1, no-op: direct median {}, through the gateway {}: added {} (target <= 100 µs: {})",
        format_duration(d),
        format_duration(g),
        format_duration(added),
        verdict(added <= Duration::from_micros(100))
    );
    // Throughput.
    let (conns, total_wait, total_noop) = if quick() {
        (32, 640, 640)
    } else {
        (32, 6400, 16000)
    };
    let (dw, gw, dn, gn) = rt.block_on(async {
        let d = connect(direct, conns).await;
        let g = connect(gateway, conns).await;
        throughput(&d, "/api/wait", conns * 4).await;
        throughput(&g, "/api/wait", conns * 4).await;
        let dw = throughput(&d, "/api/wait", total_wait).await;
        let gw = throughput(&g, "/api/wait", total_wait).await;
        let dn = throughput(&d, "/api/noop", total_noop).await;
        let gn = throughput(&g, "/api/noop", total_noop).await;
        (dw, gw, dn, gn)
    });
    println!(
        "{conns} connections, 10 ms function: direct {dw:.0} req/s, gateway {gw:.0} req/s: ratio {:.2}x (target >= 0.90x: {})",
        gw / dw,
        verdict(gw / dw >= 0.9)
    );
    println!(
        "{conns} connections, no-op function: direct {dn:.0} req/s, gateway {gn:.0} req/s: ratio {:.2}x (informative: the proxy's own processor time on shared cores)",
        gn / dn
    );
}

/// A cluster in this process: a home with the app deployed, a manager
/// with the cluster API, a join token.
struct Local {
    _home: tempfile::TempDir,
    url: String,
    token: String,
    runtime: tokio::runtime::Runtime,
}

impl Local {
    fn new(app_src: &Path, instances: i64) -> Local {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("a Tokio runtime");
        let home = tempfile::tempdir().expect("a home");
        let site = fnhost_deploy::Site::open(home.path()).expect("the site");
        site.create_app("big").expect("the app");
        site.deploy(fnhost_deploy::DeployRequest::new(
            "big",
            fnhost_deploy::Content::Folder(app_src.to_path_buf()),
        ))
        .expect("the deployment");
        site.settle();
        let (url, token) = runtime.block_on(async {
            let state = fnhost_cluster::state::open(home.path(), None)
                .await
                .expect("the state");
            let token = fnhost_cluster::random_secret().expect("a token");
            state
                .add_join_token("bench", &fnhost_cluster::sha256_hex(token.as_bytes()), 0)
                .await
                .expect("a token");
            state
                .set_placement(&fnhost_cluster::state::Placement::fixed(
                    "big",
                    "production",
                    instances,
                ))
                .await
                .expect("a placement");
            let cluster = fnhost_cluster::manager::Cluster::new(site.clone(), state);
            std::mem::forget(cluster.start());
            let server = fnhost_deploy::manage::Manage::new(site)
                .with_router(cluster.router())
                .bind("127.0.0.1:0".parse().expect("an address"))
                .await
                .expect("the manager binds");
            let url = format!("http://{}", server.local_addr());
            tokio::spawn(server.serve(std::future::pending::<()>()));
            (url, token)
        });
        Local {
            _home: home,
            url,
            token,
            runtime,
        }
    }

    /// Runs a worker on `cache` until its first instance is ready; the
    /// time from start to ready. The worker is stopped (drained) after.
    fn first_ready(&self, cache: &Path, name: &str) -> Duration {
        let ready = Arc::new(StdMutex::new(None::<Instant>));
        let r2 = ready.clone();
        let verbose = std::env::var_os("FNHOST_BENCH_VERBOSE").is_some();
        let t0 = Instant::now();
        let log: fnhost_cluster::worker::LogSink = Arc::new(move |l: &str| {
            if verbose {
                eprintln!("{:>8.1} ms {l}", t0.elapsed().as_secs_f64() * 1e3);
            }
            if l.contains("ready big/production") {
                let mut r = r2.lock().unwrap_or_else(|e| e.into_inner());
                r.get_or_insert_with(Instant::now);
            }
        });
        let worker = fnhost_cluster::worker::Worker::new(&self.url, &self.token)
            .with_name(name)
            .with_cache(cache)
            .with_drain_delay(Duration::ZERO)
            .with_log(log);
        let started = Instant::now();
        let stop = tokio::sync::Notify::new();
        let stop = Arc::new(stop);
        let s2 = stop.clone();
        let handle = self.runtime.spawn(async move {
            let _ = worker.run(async move { s2.notified().await }).await;
        });
        let deadline = Instant::now() + Duration::from_secs(120);
        let at = loop {
            if let Some(t) = *ready.lock().unwrap_or_else(|e| e.into_inner()) {
                break t;
            }
            assert!(Instant::now() < deadline, "the worker never got ready");
            std::thread::sleep(Duration::from_millis(1));
        };
        stop.notify_one();
        let _ = self.runtime.block_on(handle);
        at - started
    }
}

fn big_app(dir: &Path, files: usize) {
    write(&dir.join("host.json"), r#"{"version": "2.0"}"#);
    write(&dir.join("hello/function.json"), HTTP_GET);
    write(&dir.join("hello/run.sh"), "#!/bin/sh\necho hello\n");
    for i in 0..files.saturating_sub(3) {
        write(
            &dir.join(format!("data/{:03}/file-{i}.txt", i % 100)),
            &format!("file {i} of the app\n").repeat(8),
        );
    }
}

/// A custom handler app whose handler is `program` (with `script`, when
/// not empty, as its worker path).
fn handler_app(dir: &Path, program: &str, script: &str) {
    let description = if script.is_empty() {
        serde_json::json!({"defaultExecutablePath": program})
    } else {
        serde_json::json!({"defaultExecutablePath": program, "defaultWorkerPath": script})
    };
    let host = serde_json::json!({"version": "2.0", "customHandler": {
        "description": description, "enableForwardingHttpRequest": true}});
    write(&dir.join("host.json"), &host.to_string());
    write(&dir.join("hello/function.json"), HTTP_GET);
    if !script.is_empty() {
        write(
            &dir.join("handler.js"),
            "require('http').createServer((q, s) => s.end('ok')).listen(Number(process.env.FUNCTIONS_CUSTOMHANDLER_PORT), '127.0.0.1');\n",
        );
    }
}

fn cp_r(from: &Path, to: &Path) -> Duration {
    let t = Instant::now();
    let ok = std::process::Command::new("cp")
        .arg("-r")
        .arg(from)
        .arg(to)
        .status()
        .expect("cp runs")
        .success();
    assert!(ok, "cp -r failed");
    t.elapsed()
}

fn start_up() {
    let files = if quick() { 1_000 } else { 10_000 };
    println!("== cold worker, first ready, {files}-file app, vs cp -r");
    let scratch = tempfile::tempdir().expect("a scratch folder");
    let src: PathBuf = scratch.path().join("app");
    big_app(&src, files);
    let local = Local::new(&src, 1);
    let cp = cp_r(&src, &scratch.path().join("copy"));
    let cold = local.first_ready(&scratch.path().join("cache-cold"), "cold");
    let cp2 = cp_r(&src, &scratch.path().join("copy2"));
    let cp = cp.min(cp2);
    println!(
        "cold worker first ready {}; cp -r {}: ratio {:.2}x (target <= 2.00x: {})",
        format_duration(cold),
        format_duration(cp),
        cold.as_secs_f64() / cp.as_secs_f64(),
        verdict(cold.as_secs_f64() <= 2.0 * cp.as_secs_f64())
    );
    drop(local);

    // A warm restart with a compiled handler (as custom handlers usually
    // are: Go, Rust), whose own start is a process's, and with a Node.js
    // one, whose own start is node's.
    let compiled = PathBuf::from(env!("CARGO_BIN_EXE_bench-handler"));
    let handlers = [
        (
            "compiled (Rust, standard library only)",
            compiled.display().to_string(),
            String::new(),
            vec![compiled.display().to_string()],
        ),
        (
            "Node.js",
            "node".to_owned(),
            "handler.js".to_owned(),
            vec![
                "node".to_owned(),
                "-e".to_owned(),
                "require('http').createServer().listen(0, '127.0.0.1', () => process.exit(0))"
                    .to_owned(),
            ],
        ),
    ];
    for (i, (what, program, script, alone)) in handlers.into_iter().enumerate() {
        println!("== warm restart, custom handler app: {what}");
        let src = scratch.path().join(format!("handler-app-{i}"));
        handler_app(&src, &program, &script);
        let local = Local::new(&src, 1);
        let cache = scratch.path().join(format!("cache-warm-{i}"));
        let first = local.first_ready(&cache, "warm");
        let rounds = if quick() { 1 } else { 5 };
        let mut warm: Vec<Duration> = (0..rounds)
            .map(|_| local.first_ready(&cache, "warm"))
            .collect();
        // The handler's own start, for comparison: listening, then exit (the
        // compiled one without a port exits at once, having started).
        let mut own: Vec<Duration> = (0..rounds)
            .map(|_| {
                let t = Instant::now();
                let _ = std::process::Command::new(&alone[0])
                    .args(&alone[1..])
                    .env("FUNCTIONS_CUSTOMHANDLER_PORT", "none")
                    .stderr(std::process::Stdio::null())
                    .status()
                    .expect("the handler runs");
                t.elapsed()
            })
            .collect();
        warm.sort();
        own.sort();
        let (w, n) = (warm[warm.len() / 2], own[own.len() / 2]);
        println!(
            "first start {}; warm restart to ready: median {} of {} (target <= 100 ms: {}); \
             the handler alone: median {}; the worker's own part: {}",
            format_duration(first),
            format_duration(w),
            warm.len(),
            verdict(w <= Duration::from_millis(100)),
            format_duration(n),
            format_duration(w.saturating_sub(n))
        );
    }
}
