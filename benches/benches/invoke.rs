//! The invoke hot path: a no-op native function through the whole pipeline
//! (handle, invocation, executor, result) against calling the same closure
//! directly; and a 1 KB JSON echo against parsing and serialising that JSON
//! once. Same run, same machine.
//!
//! Targets (issue 3): no-op at most 250 ns more than the direct call; echo
//! at most 1.5x the parse + serialise baseline.

use std::fs;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use fnhost_benches::{iterations, measure, report};
use fnhost_core::invoke::{BindingData, ExecutorError};
use fnhost_core::{FunctionApp, Host, Invocation, InvocationResult, NativeExecutor};
use serde_json::{Value, json};

/// Polls a future that completes without waiting.
fn ready<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    match f.as_mut().poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("the future waited"),
    }
}

fn payload() -> String {
    let items: Vec<Value> = (0..12)
        .map(|i| json!({"id": i, "name": format!("item number {i}"), "price": 9.99 + i as f64, "tags": ["a", "b"]}))
        .collect();
    let text = json!({"order": "A-1001", "customer": {"name": "Ada", "email": "ada@example.com"}, "items": items}).to_string();
    assert!(
        (900..1300).contains(&text.len()),
        "payload is {} bytes",
        text.len()
    );
    text
}

async fn noop(_inv: Invocation) -> Result<InvocationResult, ExecutorError> {
    Ok(InvocationResult::new())
}

async fn echo(inv: Invocation) -> Result<InvocationResult, ExecutorError> {
    Ok(InvocationResult::returning(inv.trigger))
}

fn main() {
    let root = std::env::temp_dir().join(format!("fnhost-bench-invoke-{}", std::process::id()));
    let _ = fs::remove_dir_all(&root);
    for name in ["Noop", "Echo"] {
        fs::create_dir_all(root.join(name)).expect("mkdir");
        fs::write(
            root.join(name).join("function.json"),
            r#"{"bindings":[{"type":"manualTrigger","direction":"in","name":"input"}]}"#,
        )
        .expect("write");
    }
    fs::write(
        root.join("host.json"),
        r#"{"version":"2.0","customHandler":{"description":{"defaultExecutablePath":"handler"}}}"#,
    )
    .expect("write");
    let app = FunctionApp::load(&root).expect("loads");
    let host = Host::builder()
        .native(
            NativeExecutor::new()
                .function("Noop", noop)
                .function("Echo", echo),
        )
        .build(app);
    let noop_handle = host.resolve("Noop").expect("Noop");
    let echo_handle = host.resolve("Echo").expect("Echo");
    let iters = iterations(2_000_000);

    println!("== no-op invocation, polled inline (no runtime)");
    let direct = measure("direct call of the closure", iters, || {
        black_box(ready(noop(Invocation::new(Value::Null))).expect("ok"));
    });
    let pipeline = measure("FunctionHandle::invoke (whole pipeline)", iters, || {
        black_box(ready(noop_handle.invoke(Invocation::new(Value::Null))).expect("ok"));
    });
    report(
        "pipeline",
        pipeline,
        "direct call",
        direct,
        direct + Duration::from_nanos(250),
    );
    println!(
        "overhead: {:.0} ns; {:.0} invocations/s on one core",
        pipeline.as_nanos() as f64 - direct.as_nanos() as f64,
        1e9 / pipeline.as_nanos().max(1) as f64
    );

    println!("\n== no-op invocation inside a Tokio current-thread runtime (timeout enforced)");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let direct_rt = measure("direct call in block_on", iters, || {
        black_box(rt.block_on(noop(Invocation::new(Value::Null))).expect("ok"));
    });
    let pipeline_rt = measure("FunctionHandle::invoke in block_on", iters, || {
        black_box(
            rt.block_on(noop_handle.invoke(Invocation::new(Value::Null)))
                .expect("ok"),
        );
    });
    report(
        "pipeline with timeout",
        pipeline_rt,
        "direct call",
        direct_rt,
        direct_rt + Duration::from_nanos(250),
    );

    println!("\n== 1 KB JSON echo");
    let text = payload();
    let echo_iters = iterations(200_000);
    let baseline = measure("parse + serialise once", echo_iters, || {
        let v: Value = serde_json::from_str(black_box(&text)).expect("parse");
        black_box(serde_json::to_string(&v).expect("serialise"));
    });
    let subject = measure(
        "parse, invoke Echo, serialise the result",
        echo_iters,
        || {
            let v: Value = serde_json::from_str(black_box(&text)).expect("parse");
            let result = ready(echo_handle.invoke(Invocation::new(v))).expect("ok");
            let out = match result.return_value {
                Some(BindingData::Json(v)) => serde_json::to_string(&v).expect("serialise"),
                other => panic!("unexpected {other:?}"),
            };
            black_box(out);
        },
    );
    report(
        "echo",
        subject,
        "parse + serialise",
        baseline,
        baseline.mul_f64(1.5),
    );

    recorder_section(&root, &rt, pipeline_rt);
    let _ = fs::remove_dir_all(&root);
}

/// The same no-op with `fnhost serve --app`'s invocation recorder
/// (fnhost-deploy's `monitor::Recorder`) outermost: what a record costs
/// the invocation, and how fast the writer thread keeps up.
fn recorder_section(root: &std::path::Path, rt: &tokio::runtime::Runtime, without: Duration) {
    println!("\n== no-op invocation with the invocation recorder (fnhost serve --app)");
    let store = tempfile::tempdir().expect("tempdir");
    let log = fnhost_deploy::monitor::InvocationLog::new(store.path());
    let recorder = log.recorder().expect("recorder");
    let host = Host::builder()
        .middleware(std::sync::Arc::new(recorder.clone()))
        .native(NativeExecutor::new().function("Noop", noop))
        .build(FunctionApp::load(root).expect("loads"));
    let handle = host.resolve("Noop").expect("Noop");
    let burst = 2_000;
    let with = measure(
        "FunctionHandle::invoke + record, in block_on",
        burst,
        || {
            black_box(
                rt.block_on(handle.invoke(Invocation::new(Value::Null)))
                    .expect("ok"),
            );
        },
    );
    report(
        "recorded invocation",
        with,
        "unrecorded",
        without,
        without + Duration::from_micros(2),
    );
    let started = std::time::Instant::now();
    let total = 50_000;
    for _ in 0..total {
        black_box(
            rt.block_on(handle.invoke(Invocation::new(Value::Null)))
                .expect("ok"),
        );
    }
    let sent = started.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    println!(
        "burst of {total} recorded invocations: {} ({:.0}/s), {} dropped",
        fnhost_benches::format_duration(sent),
        f64::from(total) / sent.as_secs_f64(),
        recorder.dropped()
    );
}
