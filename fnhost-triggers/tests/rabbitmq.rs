//! rabbitMQTrigger and the rabbitMQ output against a real RabbitMQ
//! (127.0.0.1:5672, guest/guest, or `FNHOST_RABBITMQ_URI`; scripts/test.sh
//! installs and starts Debian's rabbitmq-server when nothing listens):
//! hundreds of messages each run once with their outputs published, the
//! extension's requeue count and dead-lettering after exactly five tries,
//! and a broker that is not there.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fnhost_core::invoke::{ExecutorError, InvocationResult};
use fnhost_core::{FunctionApp, Host, Invocation, NativeExecutor};
use fnhost_triggers::StorageBindings;
use lapin::options::{
    BasicGetOptions, BasicPublishOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use serde_json::{Value, json};
use support::{listen, wait_until, write_function};

const LIMIT: Duration = Duration::from_secs(60);
const STOP: Duration = Duration::from_secs(10);

fn uri() -> String {
    std::env::var("FNHOST_RABBITMQ_URI")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// A connection to the test broker, or a failure that says how to get one.
async fn broker() -> (Connection, Channel) {
    let conn = Connection::connect(&uri(), ConnectionProperties::default())
        .await
        .unwrap_or_else(|e| {
            panic!(
                "no RabbitMQ at {} ({e}): scripts/test.sh installs and starts Debian's rabbitmq-server, or set FNHOST_RABBITMQ_URI",
                uri()
            )
        });
    let channel = conn.create_channel().await.unwrap();
    (conn, channel)
}

/// A queue name no other test (or run) uses.
fn unique(what: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "fnhost-test-{what}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

async fn declare(channel: &Channel, name: &str, args: FieldTable) {
    channel
        .queue_declare(name.into(), QueueDeclareOptions::default(), args)
        .await
        .unwrap();
}

/// New queues (see [`unique`]), declared without arguments.
async fn declared<const N: usize>(channel: &Channel, what: [&str; N]) -> [String; N] {
    let names = what.map(unique);
    for name in &names {
        declare(channel, name, FieldTable::default()).await;
    }
    names
}

async fn count(channel: &Channel, name: &str) -> u32 {
    channel
        .queue_declare(
            name.into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap()
        .message_count()
}

async fn delete(channel: &Channel, names: &[&str]) {
    for n in names {
        let _ = channel
            .queue_delete((*n).into(), QueueDeleteOptions::default())
            .await;
    }
}

async fn publish(channel: &Channel, queue: &str, body: &str) {
    channel
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            body.as_bytes(),
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
}

/// An app with one function, `Work`, with these bindings.
fn rabbit_app(bindings: Value) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("host.json"),
        r#"{"version": "2.0", "extensions": {"rabbitMQ": {"prefetchCount": 20}}}"#,
    )
    .unwrap();
    write_function(dir.path(), "Work", bindings);
    dir
}

fn load(dir: &Path, rabbit: &str) -> FunctionApp {
    let app = FunctionApp::loader(dir)
        .with_environment(false)
        .with_setting("Rabbit", rabbit)
        .load()
        .unwrap();
    assert!(app.is_valid(), "{:?}", app.diagnostics());
    app
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_messages_each_run_once_and_their_outputs_are_published() {
    let (_conn, channel) = broker().await;
    let [input, output] = declared(&channel, ["in", "out"]).await;
    let dir = rabbit_app(json!([
        {"type": "rabbitMQTrigger", "direction": "in", "name": "msg", "queueName": input, "connectionStringSetting": "Rabbit"},
        {"type": "rabbitMQ", "direction": "out", "name": "$return", "queueName": output, "connectionStringSetting": "Rabbit"}
    ]));
    let seen: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let recorded = seen.clone();
    let native = NativeExecutor::new().function("Work", move |inv: Invocation| {
        let seen = recorded.clone();
        async move {
            let text = inv.trigger.to_json().as_str().unwrap().to_owned();
            assert_eq!(inv.metadata["Redelivered"], false);
            *seen.lock().unwrap().entry(text.clone()).or_default() += 1;
            Ok(InvocationResult::returning(json!(format!("done {text}"))))
        }
    });
    let host = Arc::new(
        Host::builder()
            .native(native)
            .middleware(Arc::new(StorageBindings::new()))
            .build(load(dir.path(), &uri())),
    );
    let (handle, lines) = listen(host);
    const N: usize = 300;
    for i in 0..N {
        publish(&channel, &input, &format!("m{i}")).await;
    }
    wait_until(
        LIMIT,
        "every message run and its output published",
        async || count(&channel, &output).await as usize >= N,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(handle.stop(STOP).await);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), N);
    assert!(seen.values().all(|c| *c == 1), "some ran twice");
    assert_eq!(count(&channel, &input).await, 0);
    assert_eq!(count(&channel, &output).await as usize, N);
    let got = channel
        .basic_get(output.as_str().into(), BasicGetOptions::default())
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&got.delivery.data).starts_with("done m"));
    assert!(
        lines.has(&format!("listening to rabbitMQ queue {input} for Work")),
        "{lines:?}"
    );
    delete(&channel, &[&input, &output]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_message_is_dead_lettered_after_exactly_five_tries() {
    let (_conn, channel) = broker().await;
    let input = unique("fail");
    let dead = unique("dead");
    declare(&channel, &dead, FieldTable::default()).await;
    let mut args = FieldTable::default();
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString("".into()),
    );
    args.insert(
        "x-dead-letter-routing-key".into(),
        AMQPValue::LongString(dead.as_str().into()),
    );
    declare(&channel, &input, args).await;
    let dir = rabbit_app(
        json!([{"type": "rabbitMQTrigger", "direction": "in", "name": "msg", "queueName": input, "connectionStringSetting": "Rabbit"}]),
    );
    let calls = Arc::new(Mutex::new(Vec::new()));
    let recorded = calls.clone();
    let native = NativeExecutor::new().function("Work", move |inv: Invocation| {
        let calls = recorded.clone();
        async move {
            let count = inv.metadata["BasicProperties"]["Headers"]
                .get("x-ms-rabbitmq-requeuecount")
                .cloned()
                .unwrap_or(Value::Null);
            calls.lock().unwrap().push(count);
            Err::<InvocationResult, _>(ExecutorError::failed("failing on purpose"))
        }
    });
    let host = Arc::new(
        Host::builder()
            .native(native)
            .build(load(dir.path(), &uri())),
    );
    let (handle, lines) = listen(host);
    publish(&channel, &input, "doomed").await;
    wait_until(LIMIT, "the dead-lettered message", async || {
        count(&channel, &dead).await == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(handle.stop(STOP).await);
    // Five tries: the first without the header, then 1..4.
    assert_eq!(
        *calls.lock().unwrap(),
        [Value::Null, json!(1), json!(2), json!(3), json!(4)]
    );
    assert_eq!(count(&channel, &input).await, 0);
    let got = channel
        .basic_get(dead.as_str().into(), BasicGetOptions::default())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.delivery.data, b"doomed");
    let headers = got.delivery.properties.headers().clone().unwrap();
    assert!(headers.contains_key("x-death"), "{headers:?}");
    assert!(
        lines
            .all()
            .iter()
            .any(|l| l.contains("rejecting delivery") && l.contains("after 5 tries")),
        "{lines:?}"
    );
    delete(&channel, &[&input, &dead]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_is_not_there_is_retried_and_logged_not_fatal() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let dir = rabbit_app(
        json!([{"type": "rabbitMQTrigger", "direction": "in", "name": "msg", "queueName": "nowhere", "connectionStringSetting": "Rabbit"}]),
    );
    let native = NativeExecutor::new().function("Work", |_inv: Invocation| async move {
        Ok(InvocationResult::new())
    });
    let host = Arc::new(Host::builder().native(native).build(load(
        dir.path(),
        &format!("amqp://guest:guest@127.0.0.1:{port}/%2f"),
    )));
    let (handle, lines) = listen(host);
    lines
        .wait_for(
            LIMIT,
            "cannot consume, retrying with backoff: cannot connect",
        )
        .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(handle.stop(STOP).await);
    // Logged once, not at every attempt.
    assert_eq!(lines.count("retrying with backoff"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_swap_moves_the_listener_to_the_new_queue_without_running_anything_twice() {
    let (_conn, channel) = broker().await;
    let [first, second] = declared(&channel, ["swap-a", "swap-b"]).await;
    let trigger = |queue: &str| json!([{"type": "rabbitMQTrigger", "direction": "in", "name": "msg", "queueName": queue, "connectionStringSetting": "Rabbit"}]);
    let v1 = rabbit_app(trigger(&first));
    let v2 = rabbit_app(trigger(&second));
    let seen: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let recorded = seen.clone();
    let native = NativeExecutor::new().function("Work", move |inv: Invocation| {
        let seen = recorded.clone();
        async move {
            // Slow enough that the swap finds runs in flight.
            tokio::time::sleep(Duration::from_millis(20)).await;
            let text = inv.trigger.to_json().as_str().unwrap().to_owned();
            *seen.lock().unwrap().entry(text).or_default() += 1;
            Ok(InvocationResult::new())
        }
    });
    let host = Arc::new(
        Host::builder()
            .native(native)
            .build(load(v1.path(), &uri())),
    );
    let (handle, lines) = listen(host.clone());
    for i in 0..100 {
        publish(&channel, &first, &format!("a{i}")).await;
    }
    wait_until(LIMIT, "some of the first queue run", async || {
        !seen.lock().unwrap().is_empty()
    })
    .await;
    let old = host.swap(load(v2.path(), &uri())).await.unwrap();
    wait_until(LIMIT, "the old listener to stop", async || {
        lines.has(&format!(
            "stopped listening to rabbitMQ queue {first} for Work"
        ))
    })
    .await;
    old.shutdown().await;
    for i in 0..20 {
        publish(&channel, &second, &format!("b{i}")).await;
    }
    wait_until(LIMIT, "the second queue run", async || {
        (0..20).all(|i| seen.lock().unwrap().contains_key(&format!("b{i}")))
    })
    .await;
    assert!(handle.stop(STOP).await);
    let seen = seen.lock().unwrap().clone();
    assert!(seen.values().all(|c| *c == 1), "ran twice: {seen:?}");
    // What the old version had not taken is still in its queue.
    let ran_first = seen.keys().filter(|k| k.starts_with('a')).count() as u32;
    assert_eq!(ran_first + count(&channel, &first).await, 100);
    delete(&channel, &[&first, &second]).await;
}
