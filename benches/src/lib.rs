//! A small measuring harness shared by the benchmarks.
//!
//! Each benchmark measures its subject and a baseline in the same run, so the
//! ratio between them means something on whatever machine runs it. No
//! external crates: a warm-up, several timed rounds, and the median round.
//!
//! Setting the `FNHOST_BENCH_QUICK` environment variable shrinks iteration
//! counts so that CI can run the benchmarks as smoke tests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fnhost_core::Host;
use fnhost_core::http::HttpFront;

/// Whether `FNHOST_BENCH_QUICK` is set (to anything).
pub fn quick() -> bool {
    std::env::var_os("FNHOST_BENCH_QUICK").is_some()
}

/// A temporary folder for a benchmark's files, under `FNHOST_BENCH_DIR`
/// when set (to measure another disk), else the system's.
pub fn scratch_dir() -> tempfile::TempDir {
    let base = std::env::var_os("FNHOST_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    tempfile::tempdir_in(base).expect("a temporary folder")
}

/// `full` iterations normally, far fewer (at least 100) in quick mode.
pub fn iterations(full: u64) -> u64 {
    if quick() {
        (full / 1000).max(100)
    } else {
        full
    }
}

/// Timed rounds per measurement (the median is reported).
fn rounds() -> usize {
    if quick() { 3 } else { 7 }
}

/// Runs `f` `iters` times per round, after a warm-up round of a tenth of that,
/// and returns the median time per call over several rounds. Prints one line
/// with the median and the best round.
///
/// Wrap inputs and results in [`std::hint::black_box`] inside `f` so the
/// optimiser cannot remove the work.
pub fn measure<F: FnMut()>(name: &str, iters: u64, mut f: F) -> Duration {
    let iters = iters.max(1);
    for _ in 0..(iters / 10).max(1) {
        f();
    }
    let mut per_call: Vec<Duration> = (0..rounds())
        .map(|_| {
            let start = Instant::now();
            for _ in 0..iters {
                f();
            }
            per_iteration(start.elapsed(), iters)
        })
        .collect();
    per_call.sort();
    let median = per_call[per_call.len() / 2];
    println!(
        "{name:<48} {:>10}/iter (best {}, {iters} iters x {} rounds)",
        format_duration(median),
        format_duration(per_call[0]),
        per_call.len()
    );
    median
}

fn per_iteration(total: Duration, iters: u64) -> Duration {
    let nanos = total.as_nanos() / u128::from(iters);
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// Formats a duration with a unit suited to its size (`ns`, `µs`, `ms`, `s`).
pub fn format_duration(d: Duration) -> String {
    let ns = d.as_secs_f64() * 1e9;
    if ns < 1e3 {
        format!("{ns:.1} ns")
    } else if ns < 1e6 {
        format!("{:.2} µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

/// Prints the subject against its baseline, their ratio, and whether the
/// subject meets `budget` per iteration; returns whether it does.
pub fn report(
    subject: &str,
    measured: Duration,
    baseline: &str,
    baseline_measured: Duration,
    budget: Duration,
) -> bool {
    let ratio = measured.as_secs_f64() / baseline_measured.as_secs_f64().max(1e-12);
    let ok = measured < budget;
    println!("{subject}: {}", format_duration(measured));
    println!(
        "{baseline} (baseline): {}",
        format_duration(baseline_measured)
    );
    println!("ratio: {ratio:.2}x the baseline");
    println!(
        "target < {} per iteration: {}",
        format_duration(budget),
        if ok { "MET" } else { "NOT MET" }
    );
    ok
}

/// The keep-alive HTTP/1.1 client the HTTP benchmarks share: one
/// connection per [`client::Client`], requests one at a time on each.
pub mod client {
    use std::net::SocketAddr;
    use std::sync::Arc;

    use bytes::Bytes;
    use http_body_util::{BodyExt as _, Empty};
    use hyper::client::conn::http1::SendRequest;
    use hyper_util::rt::TokioIo;
    use tokio::net::TcpStream;
    use tokio::sync::Mutex;

    /// One keep-alive connection.
    pub type Client = Arc<Mutex<SendRequest<Empty<Bytes>>>>;

    /// `n` connections to `addr` (TCP_NODELAY).
    pub async fn connect(addr: SocketAddr, n: usize) -> Vec<Client> {
        let mut clients = Vec::with_capacity(n);
        for _ in 0..n {
            let stream = TcpStream::connect(addr).await.expect("connect");
            let _ = stream.set_nodelay(true);
            let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .expect("handshake");
            tokio::spawn(conn);
            clients.push(Arc::new(Mutex::new(send)));
        }
        clients
    }

    /// `GET path` with `Host: host`: the status and the body.
    pub async fn get(client: &Client, host: &str, path: &str) -> (u16, Bytes) {
        let req = hyper::Request::get(path)
            .header(hyper::header::HOST, host)
            .body(Empty::<Bytes>::new())
            .expect("a request");
        let mut send = client.lock().await;
        send.ready().await.expect("ready");
        let resp = send.send_request(req).await.expect("a response");
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.expect("a body").to_bytes();
        (status, body)
    }

    /// `GET path` with `Host: host`, which must answer 200: the body.
    pub async fn get_ok(client: &Client, host: &str, path: &str) -> Bytes {
        let (status, body) = get(client, host, path).await;
        assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
        body
    }

    /// `total` requests `GET path` (`Host: host`, each answered 200),
    /// spread evenly over `clients`, each connection on its own task.
    pub async fn spread(clients: &[Client], host: &'static str, path: &'static str, total: usize) {
        let per = total / clients.len();
        let mut tasks = Vec::with_capacity(clients.len());
        for c in clients {
            let c = c.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..per {
                    std::hint::black_box(get_ok(&c, host, path).await);
                }
            }));
        }
        for t in tasks {
            t.await.expect("client task");
        }
    }
}

/// Serves `host` with the function front on a free port of 127.0.0.1, on
/// the current runtime until it ends; the address.
pub async fn serve_front(host: Arc<Host>) -> SocketAddr {
    let server = HttpFront::new(host)
        .bind("127.0.0.1:0".parse().expect("an address"))
        .await
        .expect("the front binds");
    let addr = server.local_addr();
    tokio::spawn(server.serve(std::future::pending::<()>()));
    addr
}
