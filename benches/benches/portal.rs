//! Portal benchmark: every page of the management portal for an app with
//! 1,000 functions and 1,000 deployments (FNHOST_BENCH_QUICK: 100 and
//! 100), and 1,000 cluster workers each running one of its instances
//! (the Workers and Placement pages), requested over a kept-alive
//! loopback connection, the median of
//! 15 requests after a warm-up; and how long a log line takes to reach an
//! open log stream. Targets: each page at most 20 ms and 100 KB, a log
//! line within 100 ms.
//! Run: `cargo bench -p fnhost-benches --bench portal`.

#![allow(clippy::unwrap_used)] // a benchmark stops on what it does not expect

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use fnhost_benches::{format_duration, quick};
use fnhost_cluster::manager::Cluster;
use fnhost_cluster::state::{Assignment, Placement, StateStore, WorkerRecord, WorkerState};
use fnhost_deploy::manage::{Manage, Portal};
use fnhost_deploy::{Content, DeployRequest, Durability, Site};

const HTTP_FUNCTION: &str = r#"{ "bindings": [
  { "type": "httpTrigger", "direction": "in", "name": "req", "authLevel": "function", "methods": ["get"] },
  { "type": "http", "direction": "out", "name": "res" } ] }"#;
const USER: &str = "bench";
const PASS: &str = "bench-password";

fn write(path: &Path, data: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
}

/// An app with `functions` HTTP functions in `dir`.
fn make_app(dir: &Path, functions: usize, version: usize) {
    write(&dir.join("host.json"), r#"{"version": "2.0"}"#);
    write(&dir.join("version.txt"), &version.to_string());
    for i in 0..functions {
        let f = dir.join(format!("F{i:04}"));
        write(&f.join("function.json"), HTTP_FUNCTION);
        write(
            &f.join("index.js"),
            "module.exports = async () => ({ body: 'hi' });\n",
        );
    }
}

/// A request on a kept-alive connection: the status and body.
fn get(conn: &mut TcpStream, path: &str, cookie: &str) -> (u16, Vec<u8>) {
    write!(
        conn,
        "GET {path} HTTP/1.1\r\nHost: bench\r\nCookie: {cookie}\r\n\r\n"
    )
    .unwrap();
    read_response(conn)
}

/// The head of a response, up to and with its empty line.
fn read_head(conn: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        conn.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

fn read_response(conn: &mut TcpStream) -> (u16, Vec<u8>) {
    let head = read_head(conn);
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    conn.read_exact(&mut body).unwrap();
    (status, body)
}

/// `n` workers in the cluster state of `home`, each running an instance
/// of `app`, which is placed on all of them.
async fn cluster(home: &Path, app: &str, n: usize) -> std::sync::Arc<dyn StateStore> {
    let state = fnhost_cluster::state::open(home, None).await.unwrap();
    let heartbeat = serde_json::json!({"draining": false, "instances": [{
        "app": app, "slot": "production", "deployment": "d", "manifest": "m",
        "endpoint": "http://127.0.0.1:9", "ready": true, "in_flight": 3
    }]})
    .to_string();
    for i in 0..n {
        let name = format!("worker-{i:04}");
        let worker: WorkerRecord = serde_json::from_value(serde_json::json!({
            "name": name, "labels": {"zone": format!("z{}", i % 3)}, "capacity": 8,
            "state": "joining", "drain_requested": false, "status": "{}",
            "last_heartbeat": 0, "registered_at": 0, "generation": 0
        }))
        .unwrap();
        state.register_worker(&worker).await.unwrap();
        let now = fnhost_cluster::now_ms();
        state
            .heartbeat(&name, WorkerState::Ready, &heartbeat, now)
            .await
            .unwrap();
        let assignment: Assignment = serde_json::from_value(serde_json::json!({
            "worker": name, "app": app, "slot": "production", "deployment": "d",
            "manifest": "m", "settings_version": "s"
        }))
        .unwrap();
        state.set_assignments(&name, &[assignment]).await.unwrap();
    }
    let placement = Placement::fixed(app, "production", n as i64);
    state.set_placement(&placement).await.unwrap();
    state
}

fn main() {
    let n = if quick() { 100 } else { 1000 };
    let tmp = tempfile::tempdir().unwrap();
    let site = Site::open(tmp.path().join("home"))
        .unwrap()
        .with_durability(Durability::Process)
        .with_retention(n + 10);
    site.create_app("big").unwrap();
    site.add_portal_user(USER, PASS).unwrap();
    let started = Instant::now();
    let small = tmp.path().join("small");
    for v in 0..n - 1 {
        make_app(&small, 1, v);
        site.deploy(
            DeployRequest::new("big", Content::Folder(small.clone()))
                .with_message(format!("version {v}")),
        )
        .unwrap();
    }
    let big = tmp.path().join("big");
    make_app(&big, n, n);
    let last = site
        .deploy(DeployRequest::new("big", Content::Folder(big)).with_message("the big one"))
        .unwrap();
    let keys =
        fnhost_core::keys::KeyStore::open(site.secrets_path("big", "production").unwrap()).unwrap();
    let names: Vec<String> = (0..n).map(|i| format!("F{i:04}")).collect();
    keys.ensure_function_keys(names.iter().map(String::as_str))
        .unwrap();
    eprintln!(
        "== portal: an app with {n} functions and {n} deployments (made in {})",
        format_duration(started.elapsed())
    );

    let (tx, rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server_site = site.clone();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let started = Instant::now();
            let state = cluster(server_site.home(), "big", n).await;
            eprintln!(
                "== portal: {n} cluster workers (made in {})",
                format_duration(started.elapsed())
            );
            let workers = std::sync::Arc::new(Cluster::new(server_site.clone(), state));
            let server = Manage::new(server_site)
                .with_portal(Portal::default().with_workers(workers))
                .bind("127.0.0.1:0".parse().unwrap())
                .await
                .unwrap();
            tx.send(server.local_addr()).unwrap();
            server
                .serve(async {
                    let _ = stop_rx.await;
                })
                .await;
        });
    });
    let addr: SocketAddr = rx.recv().unwrap();
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.set_nodelay(true).unwrap();
    let form = format!("user={USER}&password={PASS}");
    write!(
        conn,
        "POST /portal/login HTTP/1.1\r\nHost: bench\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
        form.len()
    )
    .unwrap();
    // The cookie, from the head of the 303.
    let head = read_head(&mut conn);
    let cookie = head
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .and_then(|c| c.split(';').next())
        .unwrap()
        .to_string();

    let base = "/portal/apps/big/production";
    let id = last.deployment.id;
    let pages = [
        "/portal/".to_string(),
        format!("{base}/functions"),
        format!("{base}/functions?page=10"),
        format!("{base}/code?function=F0500"),
        format!("{base}/code?function=F0500&path=F0500%2Ffunction.json"),
        format!("{base}/new"),
        format!("{base}/files"),
        format!("{base}/keys"),
        format!("{base}/settings"),
        format!("{base}/deployments"),
        format!("{base}/deployments/{id}"),
        format!("{base}/center"),
        format!("{base}/monitor"),
        format!("{base}/logstream"),
        format!("{base}/download"),
        format!("{base}/credentials"),
        "/portal/workers".to_string(),
        "/portal/workers?page=10".to_string(),
        format!("{base}/placement"),
    ];
    let mut worst = (Duration::ZERO, 0usize);
    for page in &pages {
        for _ in 0..2 {
            let (status, _) = get(&mut conn, page, &cookie);
            assert_eq!(status, 200, "{page}");
        }
        let mut times = Vec::new();
        let mut size = 0;
        for _ in 0..15 {
            let t = Instant::now();
            let (_, body) = get(&mut conn, page, &cookie);
            times.push(t.elapsed());
            size = body.len();
        }
        times.sort();
        let median = times[times.len() / 2];
        worst = (worst.0.max(median), worst.1.max(size));
        let ok = median <= Duration::from_millis(20) && size <= 100 * 1024;
        eprintln!(
            "page {page}: median {}, {:.1} KB {}",
            format_duration(median),
            size as f64 / 1024.0,
            if ok { "" } else { "(over the target)" }
        );
    }
    eprintln!(
        "pages: slowest median {}, largest {:.1} KB (target: 20 ms, 100 KB)",
        format_duration(worst.0),
        worst.1 as f64 / 1024.0
    );

    // A log line to an open log stream: a request about the app logs a
    // line; the stream shows it.
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET {base}/logstream/events HTTP/1.1\r\nHost: bench\r\nCookie: {cookie}\r\n\r\n"
    )
    .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.set_nodelay(true).unwrap();
    let mut other = TcpStream::connect(addr).unwrap();
    other.set_nodelay(true).unwrap();
    let mut latencies = Vec::new();
    let mut buf = [0u8; 16384];
    let mut seen = String::new();
    for i in 0..20 {
        let marker = format!("latency-{i}");
        let t = Instant::now();
        write!(
            other,
            "GET /apps/big/api/{marker} HTTP/1.1\r\nHost: bench\r\n\r\n"
        )
        .unwrap();
        while !seen.contains(&marker) {
            let k = stream.read(&mut buf).unwrap();
            assert!(k > 0, "the stream ended");
            seen.push_str(&String::from_utf8_lossy(&buf[..k]));
        }
        latencies.push(t.elapsed());
        read_response(&mut other);
    }
    latencies.sort();
    eprintln!(
        "log line to open stream: median {}, worst {} (target: 100 ms)",
        format_duration(latencies[latencies.len() / 2]),
        format_duration(*latencies.last().unwrap())
    );
    drop(stop_tx);
    let _ = thread.join();
}
