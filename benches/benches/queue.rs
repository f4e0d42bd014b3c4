//! The queue trigger against a real Azurite (FNHOST_AZURITE_DIR, as the
//! tests): throughput of a no-op native function through `Listeners`
//! against a bare receive-and-delete loop with the same client (32 a
//! receive, the deletes of a batch concurrent), same Azurite, same run;
//! and the enqueue-to-invocation latency with messages waiting (a steady
//! stream of 400 messages/s from four writers).
//!
//! Targets (issue 15): throughput at least 0.8x the bare loop; median
//! latency under 50 ms.

#[path = "../../fnhost-triggers/tests/support/mod.rs"]
#[allow(clippy::unwrap_used)]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fnhost_benches::{format_duration, quick};
use fnhost_core::invoke::{ExecutorError, InvocationResult};
use fnhost_core::{FunctionApp, Host, Invocation, NativeExecutor};
use fnhost_triggers::queue::encode_message;
use fnhost_triggers::storage::QueueClient;
use fnhost_triggers::{Listeners, MessageEncoding};
use support::{Azurite, queue_function, write_app};
use tokio::task::JoinSet;

const HOST_JSON: &str = r#"{"version": "2.0", "extensions": {"queues": {"batchSize": 32, "newBatchThreshold": 32, "maxPollingInterval": "00:00:00.1"}}}"#;

/// Puts `n` messages, 8 at a time.
async fn fill(q: &QueueClient, n: usize) {
    let mut tasks = JoinSet::new();
    for w in 0..8 {
        let q = q.clone();
        tasks.spawn(async move {
            for i in (w..n).step_by(8) {
                q.put(
                    &encode_message(&format!("m{i}"), MessageEncoding::Base64),
                    None,
                )
                .await
                .expect("put");
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("writer");
    }
}

/// The bare loop: receive 32, delete them concurrently, until `n` are gone.
async fn bare(q: &QueueClient, n: usize) -> Duration {
    let start = Instant::now();
    let mut done = 0;
    while done < n {
        let batch = q
            .receive(32, Duration::from_secs(600))
            .await
            .expect("receive");
        let mut deletes = JoinSet::new();
        for m in batch {
            let q = q.clone();
            deletes.spawn(async move { q.delete_message(&m.id, &m.pop_receipt).await });
        }
        while let Some(r) = deletes.join_next().await {
            r.expect("task").expect("delete");
            done += 1;
        }
    }
    start.elapsed()
}

fn host(dir: &std::path::Path, azurite: &Azurite, seen: Arc<AtomicU64>) -> Arc<Host> {
    let app = FunctionApp::loader(dir)
        .with_environment(false)
        .with_setting("Conn", azurite.connection_string())
        .load()
        .expect("the app loads");
    let native = NativeExecutor::new().function("Work", move |_inv: Invocation| {
        let seen = seen.clone();
        async move {
            seen.fetch_add(1, Ordering::SeqCst);
            Ok::<_, ExecutorError>(InvocationResult::new())
        }
    });
    Arc::new(Host::builder().native(native).build(app))
}

/// The no-op function through the listener until `n` are invoked and
/// deleted.
async fn triggered(
    q: &QueueClient,
    dir: &std::path::Path,
    azurite: &Azurite,
    n: usize,
) -> Duration {
    let seen = Arc::new(AtomicU64::new(0));
    let host = host(dir, azurite, seen.clone());
    let start = Instant::now();
    let handle = Listeners::new(host).start();
    while (seen.load(Ordering::SeqCst) as usize) < n {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // Deleted too (the deletes follow the invocations).
    while q.approximate_count().await.expect("count") != Some(0) {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let elapsed = start.elapsed();
    handle.stop(Duration::from_secs(10)).await;
    elapsed
}

/// Enqueue-to-invocation latencies of `n` messages put by four writers at
/// 100 messages/s each: a steady stream, so the listener's polls find
/// messages waiting (an empty poll would wait 100 ms, as the host's).
async fn latencies(
    q: &QueueClient,
    dir: &std::path::Path,
    azurite: &Azurite,
    n: usize,
) -> Vec<Duration> {
    let epoch = Instant::now();
    let times = Arc::new(std::sync::Mutex::new(Vec::with_capacity(n)));
    let app = FunctionApp::loader(dir)
        .with_environment(false)
        .with_setting("Conn", azurite.connection_string())
        .load()
        .expect("the app loads");
    let rec = times.clone();
    let native = NativeExecutor::new().function("Work", move |inv: Invocation| {
        let rec = rec.clone();
        async move {
            // The body is the enqueue time, in µs since `epoch`.
            let now = epoch.elapsed();
            if let Some(put) = inv
                .trigger
                .to_json()
                .as_str()
                .and_then(|s| s.parse::<u64>().ok())
            {
                let lat = now.saturating_sub(Duration::from_micros(put));
                rec.lock().unwrap_or_else(|p| p.into_inner()).push(lat);
            }
            Ok::<_, ExecutorError>(InvocationResult::new())
        }
    });
    let host = Arc::new(Host::builder().native(native).build(app));
    let handle = Listeners::new(host).start();
    let mut writers = JoinSet::new();
    for w in 0..4 {
        let q = q.clone();
        writers.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            for _ in (w..n).step_by(4) {
                tick.tick().await;
                let at = epoch.elapsed().as_micros() as u64;
                q.put(
                    &encode_message(&at.to_string(), MessageEncoding::Base64),
                    None,
                )
                .await
                .expect("put");
            }
        });
    }
    while let Some(r) = writers.join_next().await {
        r.expect("writer");
    }
    while times.lock().unwrap_or_else(|p| p.into_inner()).len() < n {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    handle.stop(Duration::from_secs(10)).await;
    let mut out = times.lock().unwrap_or_else(|p| p.into_inner()).clone();
    out.sort();
    out
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let azurite = Azurite::start().await;
        let n = if quick() { 300 } else { 1000 };
        let dir = tempfile::tempdir().expect("a folder");
        write_app(
            dir.path(),
            HOST_JSON,
            &[("Work", queue_function("work", "Conn"))],
        );
        let q = azurite.service().queue("work");
        q.create().await.expect("create");
        let bare_q = azurite.service().queue("bare");
        bare_q.create().await.expect("create");

        // Alternate the two, twice, and keep each one's best.
        let mut bare_best = Duration::MAX;
        let mut trig_best = Duration::MAX;
        for _ in 0..2 {
            fill(&bare_q, n).await;
            bare_best = bare_best.min(bare(&bare_q, n).await);
            fill(&q, n).await;
            trig_best = trig_best.min(triggered(&q, dir.path(), &azurite, n).await);
        }
        let per_sec = |d: Duration| n as f64 / d.as_secs_f64();
        println!("== queue trigger throughput ({n} messages, Azurite, batchSize 32)");
        println!(
            "bare receive-and-delete loop (baseline): {:.0} messages/s ({})",
            per_sec(bare_best),
            format_duration(bare_best)
        );
        println!(
            "queueTrigger, no-op native function: {:.0} messages/s ({})",
            per_sec(trig_best),
            format_duration(trig_best)
        );
        let ratio = per_sec(trig_best) / per_sec(bare_best);
        println!(
            "ratio: {ratio:.2}x the baseline; target >= 0.80x: {}",
            if ratio >= 0.8 { "MET" } else { "NOT MET" }
        );

        let count = if quick() { 100 } else { 500 };
        let lat = latencies(&q, dir.path(), &azurite, count).await;
        let median = lat[lat.len() / 2];
        let p90 = lat[lat.len() * 9 / 10];
        println!("== enqueue-to-invocation, a steady stream of 400 messages/s ({count} messages)");
        println!(
            "median {} (p90 {}, best {}); target median < 50 ms: {}",
            format_duration(median),
            format_duration(p90),
            format_duration(lat[0]),
            if median < Duration::from_millis(50) {
                "MET"
            } else {
                "NOT MET"
            }
        );
        azurite.stop().await;
    });
}
