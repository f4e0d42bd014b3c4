//! Timer triggers: they fire on schedule, run on startup, never overlap,
//! skip disabled functions, and follow hot swaps.

#![cfg(feature = "http")]
#![allow(clippy::unwrap_used)]

mod http_support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fnhost_core::invoke::InvocationResult;
use fnhost_core::timer::TimerScheduler;
use fnhost_core::{FunctionApp, Host, NativeExecutor};
use http_support::write_app;
use serde_json::Value;

fn timer(schedule: &str, run_on_startup: bool, disabled: bool) -> String {
    format!(
        r#"{{"disabled": {disabled}, "bindings": [{{"type": "timerTrigger", "direction": "in", "name": "tick", "schedule": "{schedule}", "runOnStartup": {run_on_startup}}}]}}"#
    )
}

#[derive(Default)]
struct Counter {
    started: AtomicUsize,
    running: AtomicUsize,
    max_running: AtomicUsize,
    triggers: Mutex<Vec<Value>>,
}

fn counting(
    counter: Arc<Counter>,
    sleep: Duration,
) -> impl Fn(
    fnhost_core::Invocation,
) -> std::pin::Pin<
    Box<
        dyn std::future::Future<
                Output = Result<InvocationResult, fnhost_core::invoke::ExecutorError>,
            > + Send,
    >,
> + Send
+ Sync
+ 'static {
    move |inv| {
        let c = counter.clone();
        Box::pin(async move {
            c.started.fetch_add(1, Ordering::SeqCst);
            let now = c.running.fetch_add(1, Ordering::SeqCst) + 1;
            c.max_running.fetch_max(now, Ordering::SeqCst);
            c.triggers.lock().unwrap().push(inv.trigger.to_json());
            tokio::time::sleep(sleep).await;
            c.running.fetch_sub(1, Ordering::SeqCst);
            Ok(InvocationResult::new())
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timers_fire_do_not_overlap_and_respect_disabled() {
    let dir = tempfile::tempdir().unwrap();
    write_app(
        dir.path(),
        r#"{"version": "2.0"}"#,
        &[
            ("Every", &timer("*/1 * * * * *", false, false)),
            ("Long", &timer("*/1 * * * * *", false, false)),
            ("Startup", &timer("0 0 0 1 1 *", true, false)),
            ("Off", &timer("*/1 * * * * *", true, true)),
        ],
    );
    let app = FunctionApp::loader(dir.path())
        .with_environment(false)
        .load()
        .unwrap();
    assert!(app.is_valid(), "{:?}", app.diagnostics());
    let every = Arc::new(Counter::default());
    let long = Arc::new(Counter::default());
    let startup = Arc::new(Counter::default());
    let off = Arc::new(Counter::default());
    let native = NativeExecutor::new()
        .function("Every", counting(every.clone(), Duration::ZERO))
        .function("Long", counting(long.clone(), Duration::from_millis(1600)))
        .function("Startup", counting(startup.clone(), Duration::ZERO))
        .function("Off", counting(off.clone(), Duration::ZERO));
    let host = Arc::new(Host::builder().native(native).build(app));
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = log.clone();
    let handle = TimerScheduler::new(host)
        .with_log(Arc::new(move |line: &str| {
            sink.lock().unwrap().push(line.to_owned())
        }))
        .start();
    tokio::time::sleep(Duration::from_millis(3600)).await;
    assert!(handle.stop(Duration::from_secs(5)).await);

    let n = every.started.load(Ordering::SeqCst);
    assert!((3..=4).contains(&n), "Every ran {n} times in 3.6 s");
    assert_eq!(long.max_running.load(Ordering::SeqCst), 1, "no overlap");
    let n = long.started.load(Ordering::SeqCst);
    assert!((1..=2).contains(&n), "Long ran {n} times");
    assert_eq!(startup.started.load(Ordering::SeqCst), 1, "runOnStartup");
    assert_eq!(off.started.load(Ordering::SeqCst), 0, "disabled");
    let log = log.lock().unwrap();
    assert!(
        log.iter().any(|l| l.contains("skipped a run of 'Long'")),
        "{log:?}"
    );
    // The host's timer info shape.
    let triggers = every.triggers.lock().unwrap();
    assert_eq!(triggers[0]["IsPastDue"], false);
    assert!(triggers[0]["ScheduleStatus"].is_null());
    assert!(triggers[1]["ScheduleStatus"]["Last"].is_string());
    assert!(triggers[1]["ScheduleStatus"]["Next"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timers_follow_the_current_version() {
    let dir = tempfile::tempdir().unwrap();
    write_app(
        dir.path(),
        r#"{"version": "2.0"}"#,
        &[("A", &timer("0 0 0 1 1 *", false, false))],
    );
    let load = |d: &std::path::Path| {
        FunctionApp::loader(d)
            .with_environment(false)
            .load()
            .unwrap()
    };
    let a = Arc::new(Counter::default());
    let b = Arc::new(Counter::default());
    let native = NativeExecutor::new()
        .function("A", counting(a.clone(), Duration::ZERO))
        .function("B", counting(b.clone(), Duration::ZERO));
    let host = Arc::new(Host::builder().native(native).build(load(dir.path())));
    let handle = TimerScheduler::new(host.clone()).start();
    tokio::time::sleep(Duration::from_millis(300)).await;
    write_app(
        dir.path(),
        r#"{"version": "2.0"}"#,
        &[("B", &timer("*/1 * * * * *", false, false))],
    );
    host.swap(load(dir.path())).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2600)).await;
    assert!(handle.stop(Duration::from_secs(5)).await);
    assert_eq!(a.started.load(Ordering::SeqCst), 0);
    assert!(
        b.started.load(Ordering::SeqCst) >= 1,
        "the swapped-in timer ran"
    );
}

#[test]
fn schedules_follow_the_zone() {
    use chrono::TimeZone;
    // 9:30 on weekdays in Paris is 8:30 UTC in winter.
    let s = fnhost_core::Schedule::parse("0 30 9 * * 1-5").unwrap();
    let zone = fnhost_core::timer::parse_zone("Romance Standard Time").unwrap();
    let after = chrono::Utc.with_ymd_and_hms(2026, 1, 5, 0, 0, 0).unwrap();
    let next = s.next_after(&after.with_timezone(&zone)).unwrap();
    assert_eq!(
        next.with_timezone(&chrono::Utc),
        chrono::Utc.with_ymd_and_hms(2026, 1, 5, 8, 30, 0).unwrap()
    );
}
