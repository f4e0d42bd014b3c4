//! The HTTP front over real loopback connections: routes, auth, admin,
//! limits, faults and graceful shutdown.

#![cfg(feature = "http")]
#![allow(clippy::unwrap_used)]

mod http_support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use fnhost_core::http::{HttpFront, Limits, Server, Stopped};
use fnhost_core::invoke::http::HttpResponse;
use fnhost_core::invoke::{ExecutorError, InvocationResult};
use fnhost_core::keys::KeyStore;
use fnhost_core::{FunctionApp, Host, NativeExecutor};
use http_support::{get, get_with_key, http_function, send, write_app};
use serde_json::json;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

struct Fixture {
    _dir: tempfile::TempDir,
    addr: std::net::SocketAddr,
    keys: Arc<KeyStore>,
    stop: Option<oneshot::Sender<()>>,
    served: JoinHandle<Stopped>,
    admin_runs: Arc<AtomicUsize>,
}

impl Fixture {
    async fn stop(mut self) -> fnhost_core::http::Stopped {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(10), self.served)
            .await
            .unwrap()
            .unwrap()
    }
}

fn app_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_app(
        dir.path(),
        r#"{"version": "2.0"}"#,
        &[
            (
                "Items",
                &http_function(
                    "anonymous",
                    &["get", "post"],
                    Some("items/{id:int}/{name?}"),
                ),
            ),
            (
                "Echo",
                &http_function("anonymous", &["post", "put"], Some("echo")),
            ),
            (
                "Secret",
                &http_function("function", &["get"], Some("secret")),
            ),
            ("Other", &http_function("function", &["get"], Some("other"))),
            ("Root", &http_function("admin", &["get"], Some("root"))),
            ("Boom", &http_function("anonymous", &[], None)),
            ("Fail", &http_function("anonymous", &[], None)),
            ("Bad", &http_function("anonymous", &[], None)),
            ("Nothing", &http_function("anonymous", &[], None)),
            ("Slow", &http_function("anonymous", &[], None)),
            (
                "Off",
                r#"{"disabled": true, "bindings": [
                    {"type": "httpTrigger", "direction": "in", "name": "req", "authLevel": "anonymous"},
                    {"type": "http", "direction": "out", "name": "res"}]}"#,
            ),
            (
                "Manual",
                r#"{"bindings": [{"type": "manualTrigger", "direction": "in", "name": "input"}]}"#,
            ),
        ],
    );
    dir
}

fn native(admin_runs: Arc<AtomicUsize>) -> NativeExecutor {
    NativeExecutor::new()
        .http("Items", |req| async move {
            HttpResponse::json(&json!({
                "method": req.method.as_str(),
                "id": req.param("id"),
                "name": req.param("name"),
                "q": req.query_param("q"),
                "path": req.path,
                "url": req.url,
            }))
        })
        .function("Echo", |inv| async move {
            let req = inv.trigger.as_http_request().cloned().unwrap();
            let body = json!({
                "body": req.body_text(),
                "query": req.query,
                "metaQuery": req.trigger_metadata().get("Query"),
                "metaHeader": req.trigger_metadata().get("Headers").and_then(|h| h.get("x-thing")).cloned(),
                // Nothing is built per request for a native function.
                "metadataEmpty": inv.metadata.is_empty(),
            });
            Ok(InvocationResult::returning(json!({
                "statusCode": 201,
                "headers": {"X-Echo": "yes"},
                "body": body,
            })))
        })
        .http("Secret", |_| async { HttpResponse::text("secret") })
        .http("Other", |_| async { HttpResponse::text("other") })
        .http("Root", |_| async { HttpResponse::text("root") })
        .http("Boom", |_| async { panic!("kaboom in the function") })
        .function("Fail", |_| async {
            Err(ExecutorError::failed("bad input given"))
        })
        .function("Bad", |_| async {
            Ok(InvocationResult::returning(json!({"statusCode": "abc"})))
        })
        .function("Nothing", |_| async { Ok(InvocationResult::new()) })
        .http("Slow", |_| async {
            tokio::time::sleep(Duration::from_millis(600)).await;
            HttpResponse::text("slow done")
        })
        .http("Off", |_| async { HttpResponse::text("off") })
        .function("Manual", move |inv| {
            let admin_runs = admin_runs.clone();
            async move {
                admin_runs.fetch_add(1, Ordering::SeqCst);
                Ok(InvocationResult::returning(inv.trigger.to_json()).with_log("manual ran"))
            }
        })
}

/// Serves `front` on a free loopback port until the sender is used (or
/// dropped): its address, the sender and the serving task.
async fn serve(front: HttpFront) -> (SocketAddr, oneshot::Sender<()>, JoinHandle<Stopped>) {
    let server: Server = front.bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = server.local_addr();
    let (tx, rx) = oneshot::channel::<()>();
    let served = tokio::spawn(server.serve(async {
        let _ = rx.await;
    }));
    (addr, tx, served)
}

async fn start(limits: Limits) -> Fixture {
    let dir = app_dir();
    let app = FunctionApp::loader(dir.path())
        .with_environment(false)
        .load()
        .unwrap();
    assert!(app.is_valid(), "{:?}", app.diagnostics());
    let admin_runs = Arc::new(AtomicUsize::new(0));
    let host = Arc::new(
        Host::builder()
            .native(native(admin_runs.clone()))
            .build(app),
    );
    let keys = Arc::new(KeyStore::in_memory().unwrap());
    keys.ensure_function_keys(["Secret", "Other"]).unwrap();
    let front = HttpFront::new(host)
        .with_keys(keys.clone())
        .with_limits(limits);
    let (addr, tx, served) = serve(front).await;
    Fixture {
        _dir: dir,
        addr,
        keys,
        stop: Some(tx),
        served,
        admin_runs,
    }
}

#[tokio::test]
async fn routes_params_query_and_body_reach_the_function() {
    let fx = start(Limits::default()).await;
    let r = get(fx.addr, "/api/items/42/widget?q=a+b%21").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["id"], "42");
    assert_eq!(v["name"], "widget");
    assert_eq!(v["q"], "a b!");
    assert_eq!(v["method"], "GET");
    assert_eq!(v["path"], "/api/items/42/widget");
    assert_eq!(
        v["url"],
        format!("http://{}/api/items/42/widget?q=a+b%21", fx.addr)
    );
    // Optional parameter left out; route matching ignores case.
    let r = get(fx.addr, "/API/Items/7").await;
    assert_eq!(r.json()["name"], serde_json::Value::Null);

    let r = send(
        fx.addr,
        "POST",
        "/api/echo?x=1&x=2",
        &[("X-Thing", "t1"), ("Content-Type", "text/plain")],
        b"hello body",
    )
    .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.header("x-echo"), Some("yes"));
    let v = r.json();
    assert_eq!(v["body"], "hello body");
    assert_eq!(v["query"], json!([["x", "1"], ["x", "2"]]));
    assert_eq!(v["metaQuery"], json!({"x": "1"}));
    assert_eq!(v["metaHeader"], "t1");
    assert_eq!(v["metadataEmpty"], true);
    fx.stop().await;
}

#[tokio::test]
async fn unknown_routes_methods_and_disabled_functions() {
    let fx = start(Limits::default()).await;
    assert_eq!(get(fx.addr, "/api/nope").await.status, 404);
    assert_eq!(
        get(fx.addr, "/items/1").await.status,
        404,
        "the prefix is needed"
    );
    // `{id:int}` does not match a word.
    assert_eq!(get(fx.addr, "/api/items/abc").await.status, 404);
    let r = send(fx.addr, "DELETE", "/api/items/1", &[], b"").await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, POST"));
    let r = get(fx.addr, "/api/echo").await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("POST, PUT"));
    // Disabled: not triggered over HTTP.
    assert_eq!(get(fx.addr, "/api/Off").await.status, 404);
    fx.stop().await;
}

#[tokio::test]
async fn auth_levels_with_and_without_keys() {
    let fx = start(Limits::default()).await;
    let s = fx.keys.secrets();
    let master = s.master.clone();
    let host = s.host["default"].clone();
    let secret_key = s.function_keys("secret").unwrap()["default"].clone();
    let other_key = s.function_keys("other").unwrap()["default"].clone();

    // anonymous
    assert_eq!(get(fx.addr, "/api/items/1").await.status, 200);
    // function level
    assert_eq!(get(fx.addr, "/api/secret").await.status, 401);
    assert_eq!(get(fx.addr, "/api/secret?code=wrong").await.status, 401);
    let addr = fx.addr;
    let h = |k: &str| {
        let k = k.to_owned();
        async move { get_with_key(addr, "/api/secret", &k).await }
    };
    assert_eq!(h(&secret_key).await.status, 200);
    assert_eq!(h(&other_key).await.status, 401, "another function's key");
    assert_eq!(h(&host).await.status, 200);
    assert_eq!(h(&master).await.status, 200);
    assert_eq!(h("").await.status, 401);
    let r = get(fx.addr, &format!("/api/secret?code={secret_key}")).await;
    assert_eq!((r.status, r.text().as_str()), (200, "secret"));
    // admin level
    assert_eq!(get(fx.addr, "/api/root").await.status, 401);
    assert_eq!(
        get(fx.addr, &format!("/api/root?code={host}")).await.status,
        401
    );
    assert_eq!(
        get(fx.addr, &format!("/api/root?code={secret_key}"))
            .await
            .status,
        401
    );
    assert_eq!(
        get(fx.addr, &format!("/api/root?code={master}"))
            .await
            .status,
        200
    );
    let r = get_with_key(fx.addr, "/api/root", &master).await;
    assert_eq!(r.status, 200);
    fx.stop().await;
}

#[tokio::test]
async fn admin_endpoints() {
    let fx = start(Limits::default()).await;
    let master = fx.keys.master_key();
    let host_key = fx.keys.secrets().host["default"].clone();
    let auth = [("x-functions-key", master.as_str())];

    assert_eq!(get(fx.addr, "/admin/host/status").await.status, 401);
    let r = get_with_key(fx.addr, "/admin/host/status", &host_key).await;
    assert_eq!(r.status, 401, "a host key is not the master key");
    let r = send(fx.addr, "GET", "/admin/host/status", &auth, b"").await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["state"], "Running");
    assert_eq!(v["functions"], 12);
    assert_eq!(v["generation"], 1);

    let r = send(fx.addr, "GET", "/admin/functions", &auth, b"").await;
    let list = r.json();
    let items = list
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "Items")
        .unwrap()
        .clone();
    assert_eq!(items["http"]["route"], "/api/items/{id:int}/{name?}");
    assert_eq!(items["http"]["authLevel"], "anonymous");

    // POST with the master key.
    let post = async |target: &str, body: &[u8]| send(fx.addr, "POST", target, &auth, body).await;

    // Run a function by hand, waiting for the result.
    let r = post(
        "/admin/functions/manual?wait=true",
        br#"{"input": {"n": 1}}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["result"]["ReturnValue"], json!({"n": 1}));
    assert_eq!(v["result"]["Logs"], json!(["manual ran"]));

    // Like the host: 202 at once, run in the background.
    let r = post("/admin/functions/Manual", br#"{"input": "x"}"#).await;
    assert_eq!(r.status, 202);
    assert!(r.header("x-invocation-id").is_some());
    for _ in 0..100 {
        if fx.admin_runs.load(Ordering::SeqCst) == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(fx.admin_runs.load(Ordering::SeqCst), 2);

    // A disabled HTTP function still runs through the admin API.
    let r = post("/admin/functions/Off?wait=true", b"").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["result"]["Outputs"]["res"]["body"], "off");

    let r = post("/admin/functions/Fail?wait=1", b"").await;
    assert_eq!(r.status, 500);
    assert_eq!(r.json()["error"], "Function 'Fail' failed: bad input given");

    // Method, target, with the master key, body, status.
    for (method, target, with_key, body, status) in [
        ("POST", "/admin/functions/Nope", true, "", 404),
        ("POST", "/admin/functions/Manual", true, "[1]", 400),
        ("POST", "/admin/functions/Manual", false, "", 401),
        ("GET", "/admin/nothing", true, "", 404),
    ] {
        let headers: &[(&str, &str)] = if with_key { &auth } else { &[] };
        let r = send(fx.addr, method, target, headers, body.as_bytes()).await;
        assert_eq!(r.status, status, "{method} {target}");
    }
    fx.stop().await;
}

#[tokio::test]
async fn faults_answer_500_and_the_server_goes_on() {
    let fx = start(Limits::default()).await;
    let r = get(fx.addr, "/api/Boom").await;
    assert_eq!(r.status, 500);
    assert!(r.text().contains("Function 'Boom' failed"), "{}", r.text());
    assert!(
        !r.text().contains("kaboom"),
        "panic details stay in the log"
    );
    assert_eq!(get(fx.addr, "/api/items/1").await.status, 200);
    assert_eq!(get(fx.addr, "/api/Boom").await.status, 500);

    let r = get(fx.addr, "/api/Fail").await;
    assert_eq!(r.status, 500);
    assert!(r.text().contains("bad input given"));

    let r = get(fx.addr, "/api/Bad").await;
    assert_eq!(r.status, 500);
    assert!(r.text().contains("invalid HTTP response"), "{}", r.text());

    let r = get(fx.addr, "/api/Nothing").await;
    assert_eq!(r.status, 204);
    assert_eq!(get(fx.addr, "/api/items/2").await.status, 200);
    fx.stop().await;
}

#[tokio::test]
async fn body_and_header_limits() {
    let fx = start(
        Limits::default()
            .with_max_body_bytes(1024)
            .with_max_header_bytes(8192),
    )
    .await;
    let r = send(fx.addr, "POST", "/api/echo", &[], &[b'a'; 1024]).await;
    assert_eq!(r.status, 201);
    let r = send(fx.addr, "POST", "/api/echo", &[], &[b'a'; 4000]).await;
    assert_eq!(r.status, 413);
    let big = "x".repeat(16 * 1024);
    let r = send(fx.addr, "GET", "/api/items/1", &[("X-Big", &big)], b"").await;
    assert_eq!(r.status, 431);
    assert_eq!(get(fx.addr, "/api/items/1").await.status, 200);
    fx.stop().await;
}

#[tokio::test]
async fn chunked_bodies_over_the_limit_are_413() {
    let fx = start(Limits::default().with_max_body_bytes(100)).await;
    let addr = fx.addr;
    let raw = tokio::time::timeout(Duration::from_secs(10), async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let chunk = "a".repeat(150);
        let req = format!(
            "POST /api/echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
            chunk.len()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        out
    })
    .await
    .unwrap();
    assert_eq!(http_support::parse(&raw).status, 413);
    fx.stop().await;
}

#[tokio::test]
async fn concurrency_limit_answers_429() {
    let fx = start(Limits::default().with_max_concurrent_requests(1)).await;
    let addr = fx.addr;
    let slow = tokio::spawn(async move { get(addr, "/api/Slow").await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = get(fx.addr, "/api/items/1").await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(slow.await.unwrap().status, 200);
    assert_eq!(get(fx.addr, "/api/items/1").await.status, 200);
    fx.stop().await;
}

#[tokio::test]
async fn graceful_shutdown_finishes_the_request_in_flight() {
    let fx = start(Limits::default()).await;
    let addr = fx.addr;
    let slow = tokio::spawn(async move { get(addr, "/api/Slow").await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopped = fx.stop().await;
    assert!(stopped.drained);
    assert_eq!(stopped.cancelled, 0);
    let r = slow.await.unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "slow done"));
    // No longer accepting.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn shutdown_cancels_what_outlives_the_deadline() {
    let fx = start(Limits::default().with_shutdown_timeout(Duration::from_millis(100))).await;
    let addr = fx.addr;
    let slow = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /api/Slow HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        out
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let stopped = fx.stop().await;
    assert!(!stopped.drained);
    assert_eq!(stopped.cancelled, 1);
    assert!(slow.await.unwrap().is_empty(), "the connection was closed");
}

#[tokio::test]
async fn hot_swap_serves_the_new_version() {
    let dir = app_dir();
    let load = |d: &std::path::Path| {
        FunctionApp::loader(d)
            .with_environment(false)
            .load()
            .unwrap()
    };
    let host = Arc::new(
        Host::builder()
            .native(
                native(Arc::new(AtomicUsize::new(0)))
                    .http("Fresh", |_| async { HttpResponse::text("fresh") }),
            )
            .build(load(dir.path())),
    );
    let (addr, tx, served) = serve(HttpFront::new(host.clone())).await;
    assert_eq!(get(addr, "/api/fresh").await.status, 404);
    write_app(
        dir.path(),
        r#"{"version": "2.0"}"#,
        &[("Fresh", &http_function("anonymous", &["get"], None))],
    );
    host.swap(load(dir.path())).await.unwrap();
    let r = get(addr, "/api/fresh").await;
    assert_eq!((r.status, r.text().as_str()), (200, "fresh"));
    let _ = tx.send(());
    served.await.unwrap();
}
