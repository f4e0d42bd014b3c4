//! `fnhost serve`'s HTTP front with a native noop HTTP function, against a
//! bare hyper server answering the same request, with the same client
//! (hyper, N keep-alive connections) in the same run.
//!
//! Run with `cargo bench -p fnhost-benches --bench serve`; set
//! `FNHOST_BENCH_QUICK=1` for a smoke run. Target: the front serves at
//! least 0.7x the requests per second of the bare server.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fnhost_benches::client::{Client, get_ok, spread};
use fnhost_benches::{iterations, measure, quick, report, serve_front};
use fnhost_core::invoke::http::HttpResponse;
use fnhost_core::{FunctionApp, Host, NativeExecutor};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// Keep-alive connections of the client.
const CONNECTIONS: usize = 16;
/// Requests per measured iteration (spread over the connections).
const BATCH: usize = 1600;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    let app_dir = tempdir();
    let (bare, front) = runtime.block_on(async {
        let bare = start_bare().await;
        let front = start_front(&app_dir).await;
        (bare, front)
    });
    let bare_clients = runtime.block_on(connect(bare));
    let front_clients = runtime.block_on(connect(front));
    // Both answer the same thing.
    runtime.block_on(async {
        for clients in [&bare_clients, &front_clients] {
            assert_eq!(
                get_ok(&clients[0], "localhost", "/api/noop").await,
                &b"ok"[..]
            );
        }
    });

    let iters = if quick() {
        iterations(1000).min(3)
    } else {
        iterations(40)
    };
    let batch = if quick() { 160 } else { BATCH };
    println!("{CONNECTIONS} keep-alive connections, {batch} GET /api/noop per iteration");
    let mut bare_t = Vec::new();
    let mut front_t = Vec::new();
    // Alternate the two so that drift in machine load hits both alike.
    for _ in 0..if quick() { 1 } else { 3 } {
        bare_t.push(measure("bare hyper server (batch)", iters, || {
            runtime.block_on(spread(&bare_clients, "localhost", "/api/noop", batch))
        }));
        front_t.push(measure(
            "fnhost HttpFront + native noop (batch)",
            iters,
            || runtime.block_on(spread(&front_clients, "localhost", "/api/noop", batch)),
        ));
    }
    bare_t.sort();
    front_t.sort();
    let bare_per_req = bare_t[bare_t.len() / 2] / batch as u32;
    let front_per_req = front_t[front_t.len() / 2] / batch as u32;
    let rps = |d: Duration| 1.0 / d.as_secs_f64().max(1e-12);
    println!(
        "bare hyper: {:.0} req/s; fnhost front: {:.0} req/s; front/bare = {:.2}x (target >= 0.70x)",
        rps(bare_per_req),
        rps(front_per_req),
        rps(front_per_req) / rps(bare_per_req)
    );
    // In time per request: the front meets the target when it takes at most
    // 1/0.7 of the bare server's time.
    report(
        "fnhost front, per request",
        front_per_req,
        "bare hyper, per request",
        bare_per_req,
        bare_per_req.mul_f64(1.0 / 0.7),
    );
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("fnhost-bench-serve-{}", std::process::id()));
    let f = dir.join("noop");
    std::fs::create_dir_all(&f).expect("a temporary folder");
    std::fs::write(dir.join("host.json"), r#"{"version": "2.0"}"#).expect("host.json");
    std::fs::write(
        f.join("function.json"),
        r#"{"bindings": [{"type": "httpTrigger", "direction": "in", "name": "req", "authLevel": "anonymous", "methods": ["get"]}, {"type": "http", "direction": "out", "name": "$return"}]}"#,
    )
    .expect("function.json");
    std::fs::write(f.join("run.sh"), "#!/bin/sh\n").expect("run.sh");
    dir
}

async fn start_front(dir: &std::path::Path) -> SocketAddr {
    let app = FunctionApp::loader(dir)
        .with_environment(false)
        .load()
        .expect("the app loads");
    let _ = std::fs::remove_dir_all(dir);
    let native = NativeExecutor::new().http("noop", |_req| async { HttpResponse::text("ok") });
    serve_front(Arc::new(Host::builder().native(native).build(app))).await
}

async fn start_bare() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let addr = listener.local_addr().expect("an address");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_req| async {
                    let mut resp = hyper::Response::new(Full::new(Bytes::from_static(b"ok")));
                    resp.headers_mut().insert(
                        hyper::header::CONTENT_TYPE,
                        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
                    );
                    Ok::<_, Infallible>(resp)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

async fn connect(addr: SocketAddr) -> Vec<Client> {
    fnhost_benches::client::connect(addr, CONNECTIONS).await
}
