//! Azure's programming models through the language worker protocol, against
//! the same function as a custom handler, same front, same client, same run
//! (issue 11's performance section):
//!
//! (a) a no-op Node.js v4 HTTP function (`app.http('noop', ...)` answering
//!     'ok') run by fnhost's Node worker over FunctionRpc;
//! (b) the same function as an Azure custom handler (host.json
//!     `customHandler`, `enableForwardingHttpRequest`), a plain Node `http`
//!     server answering 'ok' (the baseline);
//! (c) a Python v2 app (`function_app.py`, one route returning "ok") run by
//!     fnhost's Python worker (reported beside, no target);
//! (d) the same front and worker protocol with a stand-in worker inside this
//!     process that answers every `InvocationRequest` at once.
//!
//! All are served by `HttpFront` and measured with keep-alive HTTP/1.1 hyper
//! clients on loopback: median and p99 latency at concurrency 1, requests/s
//! at concurrency 16, after a warm-up, the subjects interleaved round by
//! round. Targets for (a) against (b): latency ratio at most 1.0x,
//! throughput ratio at least 1.0x.
//!
//! fnhost's own share of the hop (HTTP request in to `InvocationRequest`
//! written, and `InvocationResponse` read to HTTP response out; target: at
//! most 20 µs median) is measured with timestamps at the socket edges of
//! everything that is not fnhost, all in this process so that they share
//! one clock (below). On idle cores this wall-clock figure also counts the
//! time the kernel and the hypervisor take to wake fnhost's thread when a
//! request or an `InvocationResponse` arrives (tens of microseconds on a
//! quiet virtual machine, next to nothing on a busy one), which the
//! calibration, run right after each request, does not capture. So the
//! same hop is also measured in **processor time**: what fnhost's threads
//! (the benchmark's runtime, named `fnhost-rt`) spent per request, read
//! from `/proc/self/task/*/schedstat` around the same number of requests
//! at concurrency 1, beside the same for the front alone with an
//! in-process executor (system calls and the kernel's loopback work
//! included; nothing of the client's or the worker's). The same is printed
//! with the Node worker and with the Node custom handler behind the front,
//! beside the processor time of the node process itself (its threads, from
//! `/proc/PID/task/*/schedstat`): figures that a busy machine does not blur
//! as it blurs latencies and rates.
//!
//! The wall-clock measurement:
//!
//! - the client is a blocking raw-TCP HTTP/1.1 client on the main thread:
//!   `t0` when `write` of the request returns (the bytes are then in the
//!   front's socket), `t3` when `read` has returned the whole response;
//! - the worker is (d): fnhost launches a shell script from a
//!   worker.config.json (language `echo`) that prints its command line and
//!   waits; the benchmark reads that line from the worker log, dials
//!   fnhost's FunctionRpc server itself (fnhost-core's
//!   `worker::testkit::StandIn`: HTTP/2 with the `h2` crate, gRPC framing
//!   and prost messages by hand) and answers the handshake and each
//!   invocation at once. Its socket is wrapped so that `t1` is when the read
//!   that delivered the `InvocationRequest` returned and `t2` is when the
//!   write of the `InvocationResponse` returned;
//! - `(t1 - t0) + (t3 - t2)` is fnhost's share plus two loopback deliveries
//!   with the wake-up and `read` of the receiving side (the worker's thread,
//!   the client's thread), which are not fnhost's. Those are measured in the
//!   same run with the same two kinds of endpoint (the blocking client and a
//!   wrapped socket on the stand-in's runtime) ping-ponging a small message,
//!   interleaved request by request, and their median is subtracted.
//!
//! This leaves out the worker's own time entirely (including its gRPC
//! decoding and encoding), which a worker written in Node or Python could
//! only estimate from its side. Hosts whose worker is real (a, c) are
//! compared with (d) to show how much of their latency is the worker's.
//!
//! The workers are installed into `target/tmp/bench-workers` by running the
//! fnhost binary (`FNHOST_BIN`, else the newest of target/release/fnhost and
//! target/debug/fnhost, else `cargo run -p fnhost-cli`), which does nothing
//! when they are up to date. Without `node` the benchmark is skipped, and
//! without `python3` the Python figures, each with a printed warning.
//!
//! Run with `cargo bench -p fnhost-benches --bench worker`; set
//! `FNHOST_BENCH_QUICK=1` for a smoke run.

use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use fnhost_benches::client::{Client, get_ok, spread};
use fnhost_benches::{format_duration, quick, serve_front};
use fnhost_core::exec::{CustomHandlerFactory, CustomHandlerOptions, LogSink as HandlerLogSink};
use fnhost_core::invoke::ExecutorFactory;
use fnhost_core::invoke::http::HttpResponse;
use fnhost_core::worker::LanguageWorkerFactory;
use fnhost_core::worker::testkit::{
    LAUNCH_MARKER, Launch, StandIn, http_function, ok_response, write_launcher,
};
use fnhost_core::{FunctionApp, Host, NativeExecutor};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// Keep-alive connections for the throughput measurement.
const CONNECTIONS: usize = 16;
/// The capabilities fnhost's Node worker declares (workers/node's
/// `WORKER_CAPABILITIES`), so that fnhost converts requests for the
/// stand-in as it does for Node; `HandlesWorkerTerminateMessage` is left
/// out so that shutdown does not wait for a script that ignores it.
const NODE_CAPABILITIES: [&str; 7] = [
    "RawHttpBodyBytes",
    "RpcHttpBodyOnly",
    "RpcHttpTriggerMetadataRemoved",
    "UseNullableValueDictionaryForHttp",
    "IgnoreEmptyValuedRpcHttpHeaders",
    "TypedDataCollection",
    "WorkerStatus",
];

fn main() {
    let started = Instant::now();
    if !runs("node", &["--version"]) {
        println!(
            "warning: `node` is not installed or does not run: the worker benchmark is skipped (it needs Node.js 20+ and npm; Python 3 for the Python figures)"
        );
        return;
    }
    let want_python = runs("python3", &["--version"]);
    if !want_python {
        println!(
            "warning: `python3` is not installed or does not run: the Python figures are skipped"
        );
    }
    let Some(workers) = install_workers(want_python) else {
        std::process::exit(1);
    };
    let python = want_python && workers.join("python").join("deps").is_dir();
    if want_python && !python {
        println!(
            "warning: the Python worker is not installed in {}: the Python figures are skipped",
            workers.display()
        );
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        // fnhost's processor time is read from these threads (own_share).
        .thread_name(RUNTIME_THREADS)
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    // The stand-in worker runs on a runtime of its own, as a worker would
    // in its own process.
    let stand_in_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    let stand_in = stand_in_rt.handle().clone();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let stand_in_thread = std::thread::spawn(move || {
        stand_in_rt.block_on(async {
            let _ = stop_rx.await;
        });
    });

    let temp = tempfile::tempdir().expect("a temporary folder");
    let stamps = Arc::new(Stamps::default());
    let echo_workers = temp.path().join("stand-in-workers");
    write_launcher(&echo_workers, "echo").expect("the stand-in's worker folder");

    // Each host to measure: its key, its label, its app and the executor
    // factory behind it.
    let mut plans: Vec<(&str, &str, FunctionApp, Arc<dyn ExecutorFactory>)> = vec![
        (
            "node worker",
            "fnhost + Node worker (v4 model)",
            node_app(&temp.path().join("node-app"), 1),
            language_factory(&workers, None),
        ),
        // Not the default configuration: reported beside the targets.
        (
            "node worker x2",
            "fnhost + 2 Node worker processes",
            node_app(&temp.path().join("node-app-2"), 2),
            language_factory(&workers, None),
        ),
        (
            "custom handler",
            "fnhost + Node http custom handler",
            custom_handler_app(&temp.path().join("custom-app")),
            Arc::new(CustomHandlerFactory::with_options(
                CustomHandlerOptions::new().with_log_sink(HandlerLogSink::new(|_, line| {
                    if line.to_ascii_lowercase().contains("error") {
                        eprintln!("[custom handler] {line}");
                    }
                })),
            )),
        ),
    ];
    if python {
        plans.push((
            "python worker",
            "fnhost + Python worker (v2 model)",
            python_app(&temp.path().join("python-app")),
            language_factory(&workers, None),
        ));
    }
    plans.push((
        "stand-in worker",
        "fnhost + in-process stand-in worker",
        stand_in_app(&temp.path().join("stand-in-app")),
        language_factory(&echo_workers, Some((stand_in.clone(), stamps.clone()))),
    ));
    let subjects = runtime.block_on(async {
        let mut subjects = Vec::new();
        for (key, label, app, factory) in plans {
            subjects.push(Subject::start(key, label, app, factory).await);
        }
        subjects
    });
    println!(
        "started {} hosts in {:.1} s (workers from {})",
        subjects.len(),
        started.elapsed().as_secs_f64(),
        workers.display()
    );

    // Warm-up: every subject answers 'ok', and the JITs and pools are warm.
    let warm = if quick() { 200 } else { 2000 };
    runtime.block_on(async {
        for s in &subjects {
            for _ in 0..warm {
                let body = get_ok(&s.clients[0], "localhost", "/api/noop").await;
                assert_eq!(body, &b"ok"[..], "{} answers 'ok'", s.label);
            }
            spread(&s.clients, "localhost", "/api/noop", warm).await;
        }
    });

    // Latency at concurrency 1, interleaved round by round.
    let (rounds, per_round) = if quick() { (2, 150) } else { (5, 2000) };
    println!();
    println!(
        "== latency at concurrency 1: {rounds} rounds x {per_round} GET /api/noop each, one keep-alive HTTP/1.1 connection (hyper)"
    );
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); subjects.len()];
    runtime.block_on(async {
        for _ in 0..rounds {
            for (s, out) in subjects.iter().zip(samples.iter_mut()) {
                for _ in 0..per_round {
                    let start = Instant::now();
                    std::hint::black_box(get_ok(&s.clients[0], "localhost", "/api/noop").await);
                    out.push(start.elapsed());
                }
            }
        }
    });
    let mut latency = HashMap::new();
    for (s, mut v) in subjects.iter().zip(samples) {
        v.sort();
        let (median, p99) = (v[v.len() / 2], v[v.len() * 99 / 100]);
        println!(
            "{:<40} median {:>10}  p99 {:>10}",
            s.label,
            format_duration(median),
            format_duration(p99)
        );
        latency.insert(s.key, (median, p99));
    }

    // Throughput at concurrency 16, interleaved round by round.
    let (rounds, batch) = if quick() { (2, 480) } else { (5, 4800) };
    println!();
    println!(
        "== throughput at concurrency {CONNECTIONS}: {rounds} rounds x {batch} GET /api/noop over {CONNECTIONS} keep-alive connections (hyper)"
    );
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); subjects.len()];
    runtime.block_on(async {
        for _ in 0..rounds {
            for (s, out) in subjects.iter().zip(rates.iter_mut()) {
                // Fresh connections: the front closes ones idle for 30 s.
                let clients = connect(s.addr).await;
                let start = Instant::now();
                spread(&clients, "localhost", "/api/noop", batch).await;
                out.push(batch as f64 / start.elapsed().as_secs_f64());
            }
        }
    });
    let mut throughput = HashMap::new();
    for (s, mut v) in subjects.iter().zip(rates) {
        v.sort_by(f64::total_cmp);
        let median = v[v.len() / 2];
        println!(
            "{:<40} {:>8.0} req/s (median round; min {:.0}, max {:.0})",
            s.label,
            median,
            v[0],
            v[v.len() - 1]
        );
        throughput.insert(s.key, median);
    }

    // fnhost's own share of the hop.
    let stand_in_addr = subjects
        .iter()
        .find(|s| s.key == "stand-in worker")
        .map(|s| s.addr)
        .expect("the stand-in subject");
    let native_addr = runtime.block_on(native_front(&temp.path().join("native-app")));
    let calls = if quick() { 500 } else { 10_000 };
    println!();
    println!(
        "== fnhost's own share of the hop: {calls} requests through the front to the in-process stand-in worker, raw-TCP client, each followed by a loopback ping-pong (calibration)"
    );
    let share = own_share(stand_in_addr, native_addr, &stand_in, &stamps, calls);
    // Where the processor goes at concurrency 16 shows in fnhost's own
    // time per request with each kind of worker behind it.
    for (key, process) in [
        ("node worker", "worker.js"),
        ("custom handler", "server.js"),
    ] {
        let addr = subjects
            .iter()
            .find(|s| s.key == key)
            .map(|s| s.addr)
            .expect("the subject");
        if let [Some(fnhost), node] = cpu_per_request(addr, calls, process) {
            let node = node.map_or("unknown".to_owned(), format_duration);
            println!(
                "processor time per request with the {key} behind the front: fnhost {}, the node process(es) {node}",
                format_duration(fnhost),
            );
        }
    }
    println!();
    println!("== summary");
    let ratio_line = |key: &str| {
        let (lat, _) = latency[key];
        let (base, _) = latency["custom handler"];
        let lat_ratio = lat.as_secs_f64() / base.as_secs_f64();
        let tp_ratio = throughput[key] / throughput["custom handler"];
        (lat_ratio, tp_ratio)
    };
    let verdict = |ok: bool| if ok { "MET" } else { "NOT MET" };
    let (node_lat, node_tp) = ratio_line("node worker");
    println!(
        "node worker / custom handler: latency ratio {node_lat:.2}x at concurrency 1 (median {} vs {}; target <= 1.00x): {}",
        format_duration(latency["node worker"].0),
        format_duration(latency["custom handler"].0),
        verdict(node_lat <= 1.0)
    );
    println!(
        "node worker / custom handler: throughput ratio {node_tp:.2}x at concurrency {CONNECTIONS} ({:.0} vs {:.0} req/s; target >= 1.00x): {}",
        throughput["node worker"],
        throughput["custom handler"],
        verdict(node_tp >= 1.0)
    );
    let (x2_lat, x2_tp) = ratio_line("node worker x2");
    println!(
        "node worker x2 (FUNCTIONS_WORKER_PROCESS_COUNT=2, not the default) / custom handler: latency ratio {x2_lat:.2}x, throughput ratio {x2_tp:.2}x ({:.0} req/s)",
        throughput["node worker x2"],
    );
    if python {
        let (py_lat, py_tp) = ratio_line("python worker");
        println!(
            "python worker / custom handler: latency ratio {py_lat:.2}x (median {}, p99 {}), throughput ratio {py_tp:.2}x ({:.0} req/s) (reported beside, no target)",
            format_duration(latency["python worker"].0),
            format_duration(latency["python worker"].1),
            throughput["python worker"],
        );
    }
    let (echo_lat, echo_tp) = ratio_line("stand-in worker");
    println!(
        "stand-in worker / custom handler: latency ratio {echo_lat:.2}x, throughput ratio {echo_tp:.2}x (fnhost's front and protocol with a worker that costs nothing)"
    );
    println!(
        "time in the Node worker per request at concurrency 1 (node worker median - stand-in median): {}",
        format_duration(
            latency["node worker"]
                .0
                .saturating_sub(latency["stand-in worker"].0)
        )
    );
    println!(
        "fnhost overhead (own share of the hop, median): {} = {} in + {} out (target <= 20 µs): {}",
        format_duration(share.total),
        format_duration(share.inbound),
        format_duration(share.outbound),
        verdict(share.total <= Duration::from_micros(20))
    );
    if let Some(cpu) = share.cpu {
        println!(
            "fnhost's processor time per request on that hop (mean, both directions, system calls included): {}",
            format_duration(cpu)
        );
    }

    runtime.block_on(async {
        for s in &subjects {
            let _ = tokio::time::timeout(Duration::from_secs(10), s.host.shutdown()).await;
        }
    });
    let _ = stop_tx.send(());
    let _ = stand_in_thread.join();
    node_worker_breakdown(&workers);
    println!("(done in {:.1} s)", started.elapsed().as_secs_f64());
}

/// Where the Node worker's own processor time goes (the programming model,
/// the transport and codec) beside a plain node http server:
/// `workers/node/test/cost.js`, run on the installed worker, after the
/// hosts above have stopped. Its failure is reported, not fatal: the
/// figures above stand on their own.
fn node_worker_breakdown(workers: &Path) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("workers/node/test/cost.js");
    let status = Command::new("node")
        .arg(&script)
        .env("FNHOST_NODE_WORKER_DIR", workers.join("node"))
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => println!("warning: {} failed ({s})", script.display()),
        Err(e) => println!("warning: cannot run {}: {e}", script.display()),
    }
}

/// Whether `program args` runs and succeeds.
fn runs(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Installs (or finds up to date) fnhost's workers; prints why not.
fn install_workers(python: bool) -> Option<PathBuf> {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let dir = tmp.join("bench-workers");
    let mut languages = vec!["node"];
    if python {
        languages.push("python");
    }
    let target = tmp.parent().unwrap_or(tmp);
    let binary = std::env::var_os("FNHOST_BIN")
        .map(PathBuf::from)
        .or_else(|| {
            ["release", "debug"]
                .iter()
                .map(|p| target.join(p).join("fnhost"))
                .filter_map(|p| {
                    let modified = std::fs::metadata(&p).and_then(|m| m.modified()).ok()?;
                    Some((modified, p))
                })
                .max()
                .map(|(_, p)| p)
        });
    let mut command = match &binary {
        Some(b) => Command::new(b),
        None => {
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let mut c = Command::new(cargo);
            c.args(["run", "-q", "-p", "fnhost-cli", "--"])
                .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."));
            c
        }
    };
    command
        .args(["workers", "install", "--dir"])
        .arg(&dir)
        .args(&languages);
    let how = binary
        .as_ref()
        .map(|b| b.display().to_string())
        .unwrap_or_else(|| "cargo run -p fnhost-cli --".into());
    match command.output() {
        Ok(o) if o.status.success() => {
            println!(
                "workers ({}) in {} (installed or checked by {how})",
                languages.join(", "),
                dir.display()
            );
            Some(dir)
        }
        Ok(o) => {
            println!(
                "error: `{how} workers install --dir {}` failed ({}): {}",
                dir.display(),
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            );
            if python {
                // Node alone is enough for the targets.
                println!("warning: trying again without the Python worker");
                return install_workers(false);
            }
            None
        }
        Err(e) => {
            println!("error: cannot run `{how}` to install the workers: {e}");
            None
        }
    }
}

/// One host and its front, with clients.
struct Subject {
    key: &'static str,
    label: &'static str,
    host: Arc<Host>,
    addr: SocketAddr,
    clients: Vec<Client>,
}

impl Subject {
    async fn start(
        key: &'static str,
        label: &'static str,
        app: FunctionApp,
        factory: Arc<dyn ExecutorFactory>,
    ) -> Subject {
        let host = Arc::new(Host::builder().factory(factory).build(app));
        if let Err(e) = host.start().await {
            panic!("{label}: the host does not start: {e}");
        }
        let addr = serve_front(host.clone()).await;
        let clients = connect(addr).await;
        Subject {
            key,
            label,
            host,
            addr,
            clients,
        }
    }
}

/// A language worker factory on `dir` whose log keeps only errors, or, for
/// the stand-in, starts the stand-in (fnhost-core's testkit) behind a
/// timed socket when its launcher prints its line.
fn language_factory(
    dir: &Path,
    stand_in: Option<(tokio::runtime::Handle, Arc<Stamps>)>,
) -> Arc<LanguageWorkerFactory> {
    let worker = stand_in.as_ref().map(|(_, stamps)| {
        let stamps = stamps.clone();
        NODE_CAPABILITIES
            .iter()
            .fold(StandIn::new(), |w, c| w.with_capability(c))
            .with_function(http_function("noop"))
            .on_invocation(move |r| {
                stamps
                    .invocation_read
                    .store(stamps.last_read.load(Ordering::SeqCst), Ordering::SeqCst);
                stamps.arm();
                vec![ok_response(&r.invocation_id, "ok")]
            })
    });
    let log: fnhost_core::timer::LogSink = Arc::new(move |line: &str| {
        if let (Some((handle, stamps)), Some(worker)) = (&stand_in, &worker)
            && line.contains(LAUNCH_MARKER)
        {
            let Some(launch) = Launch::parse(line) else {
                eprintln!("error: the stand-in worker's launcher printed: {line}");
                return;
            };
            let (worker, stamps) = (worker.clone(), stamps.clone());
            handle.spawn(async move {
                let served = match TcpStream::connect(("127.0.0.1", launch.port)).await {
                    Ok(tcp) => {
                        let _ = tcp.set_nodelay(true);
                        let io = Timed { io: tcp, stamps };
                        worker.serve(io, launch.port, launch.worker_id).await
                    }
                    Err(e) => Err(format!("connect: {e}")),
                };
                if let Err(e) = served {
                    eprintln!("error: the stand-in worker: {e}");
                }
            });
            return;
        }
        let lower = line.to_ascii_lowercase();
        if lower.contains("error") || lower.contains("exception") {
            eprintln!("[worker] {line}");
        }
    });
    Arc::new(
        LanguageWorkerFactory::new()
            .with_workers_dir(dir)
            .with_log(log),
    )
}

fn write(path: &Path, text: &str) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("a folder");
    }
    std::fs::write(path, text).expect("a file");
}

fn load(dir: &Path, runtime: &str) -> FunctionApp {
    load_with(dir, runtime, &[])
}

fn load_with(dir: &Path, runtime: &str, settings: &[(&str, &str)]) -> FunctionApp {
    let mut loader = FunctionApp::loader(dir)
        .with_environment(false)
        .with_setting("FUNCTIONS_WORKER_RUNTIME", runtime);
    for (k, v) in settings {
        loader = loader.with_setting(*k, *v);
    }
    loader
        .load()
        .unwrap_or_else(|e| panic!("the {runtime} app loads: {e}"))
}

const HOST_JSON: &str = r#"{"version": "2.0"}"#;

/// The noop function's function.json (custom handler, stand-in).
const NOOP_FUNCTION_JSON: &str = r#"{"bindings": [{"type": "httpTrigger", "direction": "in", "name": "req", "authLevel": "anonymous", "methods": ["get"]}, {"type": "http", "direction": "out", "name": "res"}]}"#;

/// The Node v4 app, run by `processes` worker processes
/// (`FUNCTIONS_WORKER_PROCESS_COUNT`).
fn node_app(dir: &Path, processes: usize) -> FunctionApp {
    write(&dir.join("host.json"), HOST_JSON);
    write(
        &dir.join("package.json"),
        r#"{"name": "noop", "version": "1.0.0", "main": "index.js"}"#,
    );
    write(
        &dir.join("index.js"),
        "const { app } = require('@azure/functions');\n\
         app.http('noop', { methods: ['GET'], authLevel: 'anonymous', handler: async () => ({ body: 'ok' }) });\n",
    );
    load_with(
        dir,
        "node",
        &[("FUNCTIONS_WORKER_PROCESS_COUNT", &processes.to_string())],
    )
}

fn custom_handler_app(dir: &Path) -> FunctionApp {
    write(
        &dir.join("host.json"),
        &json!({"version": "2.0", "customHandler": {
            "description": {"defaultExecutablePath": "node", "arguments": ["server.js"]},
            "enableForwardingHttpRequest": true}})
        .to_string(),
    );
    write(&dir.join("noop").join("function.json"), NOOP_FUNCTION_JSON);
    write(
        &dir.join("server.js"),
        "const http = require('http');\n\
         http.createServer((req, res) => {\n\
           req.resume();\n\
           req.on('end', () => { res.writeHead(200, { 'Content-Type': 'text/plain' }); res.end('ok'); });\n\
         }).listen(Number(process.env.FUNCTIONS_CUSTOMHANDLER_PORT), '127.0.0.1');\n",
    );
    load(dir, "custom")
}

fn python_app(dir: &Path) -> FunctionApp {
    write(&dir.join("host.json"), HOST_JSON);
    write(
        &dir.join("function_app.py"),
        "import azure.functions as func\n\n\
         app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)\n\n\n\
         @app.route(route=\"noop\", methods=[\"GET\"])\n\
         def noop(req: func.HttpRequest) -> func.HttpResponse:\n\
         \x20   return func.HttpResponse(\"ok\")\n",
    );
    load(dir, "python")
}

fn stand_in_app(dir: &Path) -> FunctionApp {
    write(&dir.join("host.json"), HOST_JSON);
    write(&dir.join("index.js"), "// indexed by the stand-in worker\n");
    load(dir, "echo")
}

async fn connect(addr: SocketAddr) -> Vec<Client> {
    fnhost_benches::client::connect(addr, CONNECTIONS).await
}

// ---------------------------------------------------------------------------
// Timestamps at socket edges.

/// Nanoseconds since the first call (one clock for every thread).
fn now_ns() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    let base = *BASE.get_or_init(Instant::now);
    u64::try_from(base.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// The front with fnhost's in-process executor answering 'ok' (no worker).
async fn native_front(dir: &Path) -> SocketAddr {
    write(&dir.join("host.json"), HOST_JSON);
    write(&dir.join("noop").join("function.json"), NOOP_FUNCTION_JSON);
    write(&dir.join("noop").join("run.sh"), "#!/bin/sh\n");
    let app = FunctionApp::loader(dir)
        .with_environment(false)
        .load()
        .expect("the app loads");
    let native = NativeExecutor::new().http("noop", |_req| async { HttpResponse::text("ok") });
    serve_front(Arc::new(Host::builder().native(native).build(app))).await
}

/// When a wrapped socket last returned bytes from `read`, and when the first
/// write after [`Stamps::arm`] returned.
#[derive(Default)]
struct Stamps {
    last_read: AtomicU64,
    armed: AtomicBool,
    write: AtomicU64,
    /// The stand-in's `last_read` when it decoded the last invocation.
    invocation_read: AtomicU64,
}

impl Stamps {
    fn arm(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }

    fn wrote(&self) {
        if self.armed.swap(false, Ordering::SeqCst) {
            self.write.store(now_ns(), Ordering::SeqCst);
        }
    }
}

/// A socket that records [`Stamps`].
struct Timed<T> {
    io: T,
    stamps: Arc<Stamps>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Timed<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.stamps.last_read.store(now_ns(), Ordering::SeqCst);
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Timed<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.stamps.wrote();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.stamps.wrote();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

// ---------------------------------------------------------------------------
// fnhost's own share.

struct Share {
    /// fnhost's processor time per request (mean), where /proc tells.
    cpu: Option<Duration>,
    total: Duration,
    inbound: Duration,
    outbound: Duration,
}

const RAW_REQUEST: &[u8] = b"GET /api/noop HTTP/1.1\r\nHost: localhost\r\n\r\n";

/// Reads one HTTP/1.1 response with a Content-Length from `stream`;
/// returns its body.
fn read_response(stream: &mut std::net::TcpStream, buf: &mut Vec<u8>) -> Vec<u8> {
    buf.clear();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).expect("a response");
        assert!(n > 0, "the front closed the connection");
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 200"), "{head}");
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .expect("a Content-Length");
        if buf.len() >= end + 4 + len {
            return buf[end + 4..end + 4 + len].to_vec();
        }
    }
}

fn blocking_client(addr: SocketAddr) -> std::net::TcpStream {
    let stream = std::net::TcpStream::connect(addr).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    stream
}

/// The stamp in `stamp` once it is later than `after` (it is stored right
/// after a write returns, so it may lag the peer's read by a little).
fn fresh(stamp: &AtomicU64, after: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let v = stamp.load(Ordering::SeqCst);
        if v >= after {
            return v;
        }
        assert!(Instant::now() < deadline, "a write stamp never came");
        std::thread::yield_now();
    }
}

fn since(later: u64, earlier: u64) -> Duration {
    Duration::from_nanos(later.saturating_sub(earlier))
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The name of the benchmark runtime's threads, where fnhost runs.
const RUNTIME_THREADS: &str = "fnhost-rt";

/// The processor time spent so far by the threads named
/// [`RUNTIME_THREADS`] (Linux: `/proc/self/task/*/schedstat`, whose first
/// field is nanoseconds on a processor); `None` elsewhere.
fn runtime_cpu() -> Option<Duration> {
    let mut total = 0u64;
    let mut seen = false;
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let path = task.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if comm.trim_end() != RUNTIME_THREADS {
            continue;
        }
        let stat = std::fs::read_to_string(path.join("schedstat")).ok()?;
        total += stat.split_whitespace().next()?.parse::<u64>().ok()?;
        seen = true;
    }
    seen.then(|| Duration::from_nanos(total))
}

/// fnhost's processor time per request (mean of `calls` GETs of
/// `/api/noop` at concurrency 1 from a raw-TCP client, after a warm-up).
fn fnhost_cpu_per_request(addr: SocketAddr, calls: usize) -> Option<Duration> {
    cpu_per_request(addr, calls, "")[0]
}

/// The processor time per request (as [`fnhost_cpu_per_request`]) of
/// fnhost's threads and, when `worker` is not empty, of this process's
/// child processes whose command line contains `worker`.
fn cpu_per_request(addr: SocketAddr, calls: usize, worker: &str) -> [Option<Duration>; 2] {
    let mut client = blocking_client(addr);
    let mut buf = Vec::with_capacity(1024);
    let mut round = || {
        client.write_all(RAW_REQUEST).expect("a request");
        assert_eq!(read_response(&mut client, &mut buf), b"ok");
    };
    let read = || {
        let children = if worker.is_empty() {
            None
        } else {
            children_cpu(worker)
        };
        [runtime_cpu(), children]
    };
    (0..calls / 10).for_each(|_| round());
    let before = read();
    (0..calls).for_each(|_| round());
    let after = read();
    [0, 1].map(|i| Some(after[i]?.saturating_sub(before[i]?) / calls as u32))
}

/// The processor time spent so far by this process's children whose
/// command line contains `needle` (all their threads); `None` when there
/// is none or /proc does not tell.
fn children_cpu(needle: &str) -> Option<Duration> {
    let me = std::process::id().to_string();
    let mut total = 0u64;
    let mut seen = false;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let path = entry.path();
        let Ok(stat) = std::fs::read_to_string(path.join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: the comm may hold spaces.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1));
        if ppid != Some(me.as_str()) {
            continue;
        }
        let cmdline = std::fs::read(path.join("cmdline")).unwrap_or_default();
        if !String::from_utf8_lossy(&cmdline).contains(needle) {
            continue;
        }
        for task in std::fs::read_dir(path.join("task")).ok()?.flatten() {
            let stat = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
            total += stat
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            seen = true;
        }
    }
    seen.then(|| Duration::from_nanos(total))
}

fn own_share(
    front: SocketAddr,
    native: SocketAddr,
    stand_in: &tokio::runtime::Handle,
    stamps: &Arc<Stamps>,
    calls: usize,
) -> Share {
    // The calibration peer: a wrapped socket on the stand-in's runtime that
    // answers each 40-byte message with 40 bytes at once.
    let echo_stamps = Arc::new(Stamps::default());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    listener
        .set_nonblocking(true)
        .expect("a non-blocking socket");
    let echo_addr = listener.local_addr().expect("an address");
    {
        let echo_stamps = echo_stamps.clone();
        stand_in.spawn(async move {
            let Ok(listener) = TcpListener::from_std(listener) else {
                return;
            };
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let _ = tcp.set_nodelay(true);
            let mut io = Timed {
                io: tcp,
                stamps: echo_stamps.clone(),
            };
            let mut buf = [0u8; 40];
            while io.read_exact(&mut buf).await.is_ok() {
                echo_stamps.arm();
                if io.write_all(&buf).await.is_err() {
                    return;
                }
            }
        });
    }
    let mut http = blocking_client(front);
    let mut bare = blocking_client(native);
    let mut front_alone = Vec::with_capacity(calls);
    let mut echo = blocking_client(echo_addr);
    let mut buf = Vec::with_capacity(1024);
    let ping = [7u8; 40];
    let mut pong = [0u8; 40];
    let mut through = Vec::with_capacity(calls);
    let mut inbound = Vec::with_capacity(calls);
    let mut outbound = Vec::with_capacity(calls);
    let mut loop_in = Vec::with_capacity(calls);
    let mut loop_out = Vec::with_capacity(calls);
    let mut calibration = Vec::with_capacity(calls);
    let mut shares = Vec::with_capacity(calls);
    for i in 0..calls + calls / 10 {
        let warm = i < calls / 10;
        // Through the front to the stand-in.
        let start = now_ns();
        http.write_all(RAW_REQUEST).expect("a request");
        let t0 = now_ns();
        let body = read_response(&mut http, &mut buf);
        let t3 = now_ns();
        assert_eq!(body, b"ok");
        let t1 = stamps.invocation_read.load(Ordering::SeqCst);
        // The stand-in's thread may not have stored its write stamp yet
        // when the client already has the answer (2 cores, 3 threads).
        let t2 = fresh(&stamps.write, start);
        assert!(
            start <= t1 && t1 <= t2,
            "the stand-in's stamps are this request's"
        );
        // The same two deliveries without fnhost.
        let c_start = now_ns();
        echo.write_all(&ping).expect("a ping");
        let c0 = now_ns();
        echo.read_exact(&mut pong).expect("a pong");
        let c1 = now_ns();
        let e_read = echo_stamps.last_read.load(Ordering::SeqCst);
        let e_write = fresh(&echo_stamps.write, c_start);
        assert!(
            c_start <= e_read && e_read <= e_write,
            "the echo's stamps are this ping's"
        );
        // The front alone, with an in-process executor behind it.
        let n0 = now_ns();
        bare.write_all(RAW_REQUEST).expect("a request");
        assert_eq!(read_response(&mut bare, &mut buf), b"ok");
        let n1 = now_ns();
        if warm {
            continue;
        }
        front_alone.push(since(n1, n0));
        let (a, b) = (since(t1, t0), since(t3, t2));
        let (ca, cb) = (since(e_read, c0), since(c1, e_write));
        through.push(since(t3, start));
        inbound.push(a);
        outbound.push(b);
        loop_in.push(ca);
        loop_out.push(cb);
        calibration.push(ca + cb);
        shares.push(a + b);
    }
    let loop_in = median(loop_in);
    let loop_out = median(loop_out);
    let calibration = median(calibration);
    let raw = median(shares.clone());
    let inbound = median(inbound);
    let outbound = median(outbound);
    println!(
        "request written by the client -> InvocationRequest read by the stand-in: median {}",
        format_duration(inbound)
    );
    println!(
        "InvocationResponse written by the stand-in -> response read by the client: median {}",
        format_duration(outbound)
    );
    println!(
        "loopback delivery + wake-up + read, without fnhost: to the stand-in's runtime {}, to the client {} (median {} for both)",
        format_duration(loop_in),
        format_duration(loop_out),
        format_duration(calibration)
    );
    println!(
        "whole round trip at the raw client (stand-in worker): median {}",
        format_duration(median(through))
    );
    println!(
        "fnhost's share plus deliveries: median {}; minus the calibration median: {}",
        format_duration(raw),
        format_duration(raw.saturating_sub(calibration))
    );
    let front_alone = median(front_alone);
    println!(
        "breakdown: the front alone with an in-process noop executor (raw client round trip {} minus the calibration): {}; the rest is the worker protocol's",
        format_duration(front_alone),
        format_duration(front_alone.saturating_sub(calibration))
    );
    // The same hop in processor time: what fnhost's threads spent per
    // request, whatever the cores did meanwhile (wall-clock time on idle
    // cores also counts the wake-ups of fnhost's threads, which are the
    // kernel's and the hypervisor's). The front alone is measured the same
    // way for the breakdown.
    let cpu = fnhost_cpu_per_request(front, calls);
    let cpu_front = fnhost_cpu_per_request(native, calls);
    if let (Some(cpu), Some(front)) = (cpu, cpu_front) {
        println!(
            "fnhost's processor time per request (its runtime's threads, /proc/self/task/*/schedstat, {calls} requests, mean): {} through the front and the worker protocol (front alone with an in-process executor: {}; the protocol's part: {})",
            format_duration(cpu),
            format_duration(front),
            format_duration(cpu.saturating_sub(front))
        );
    }
    Share {
        cpu,
        total: raw.saturating_sub(calibration),
        inbound: inbound.saturating_sub(loop_in),
        outbound: outbound.saturating_sub(loop_out),
    }
}
