//! One queueTrigger function's listener: the polling loop, and the
//! processing of each message (invoke, renew, delete, retry, poison).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, Utc};
use fnhost_core::invoke::{BindingData, FunctionHandle, Host, Invocation, InvocationId};
use fnhost_core::timer::LogSink;
use serde_json::{Map, Value};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::options::{MIN_POLLING_INTERVAL, MessageEncoding, QueueSpec};
use crate::listeners::{Failures, ListenerCtx, lock, next_round};
use crate::storage::{QueueClient, QueueMessage, QueueService, StorageError};

/// How long a received message stays hidden: ten minutes, as the host has
/// it (renewed at half of it while the function runs).
pub const DEFAULT_MESSAGE_VISIBILITY: Duration = Duration::from_secs(600);

/// Listens to the queue of one queueTrigger function and runs the function
/// for each message, on the host's current app version.
///
/// It stops by itself when the current version no longer has the function
/// with the same [`QueueSpec`] (removed, disabled, another queue or
/// connection, other `extensions.queues`); [`crate::Listeners`] starts a
/// new one for the new spec. Messages it received stay hidden (renewed)
/// until their invocation ends, so no other listener gets them meanwhile.
#[derive(Debug)]
pub struct QueueListener {
    ctx: Arc<Ctx>,
}

#[derive(Debug)]
struct Ctx {
    host: Arc<Host>,
    spec: QueueSpec,
    queue: QueueClient,
    poison: Option<QueueClient>,
    poison_created: AtomicBool,
    visibility: Duration,
    log: LogWrap,
}

struct LogWrap(LogSink);

impl std::fmt::Debug for LogWrap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogSink")
    }
}

impl QueueListener {
    /// A listener for `spec` (no request is made yet). Fails when the
    /// connection string is not usable.
    pub fn new(
        host: Arc<Host>,
        spec: QueueSpec,
        visibility: Duration,
        log: LogSink,
    ) -> Result<QueueListener, StorageError> {
        let service = QueueService::from_connection_string(&spec.connection)?;
        let queue = service.queue(&spec.queue);
        let poison = spec.poison_queue().map(|p| service.queue(&p));
        Ok(QueueListener {
            ctx: Arc::new(Ctx {
                host,
                spec,
                queue,
                poison,
                poison_created: AtomicBool::new(false),
                visibility: visibility.max(Duration::from_secs(1)),
                log: LogWrap(log),
            }),
        })
    }

    /// The spec it listens for.
    pub fn spec(&self) -> &QueueSpec {
        &self.ctx.spec
    }

    /// Polls until `stop` turns true (or its sender is dropped) or the
    /// function's spec changes, then waits for the invocations in flight.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let ctx = self.ctx;
        let options = &ctx.spec.options;
        let mut tasks: JoinSet<()> = JoinSet::new();
        let mut backoff = Backoff::new(MIN_POLLING_INTERVAL, options.max_polling_interval);
        let wake = super::watcher(ctx.queue.endpoint(), ctx.queue.name());
        let mut failures = Failures::default();
        'poll: loop {
            let Some(handle) = next_round(&stop, &mut tasks, &*ctx) else {
                break;
            };
            let delay = match ctx.queue.receive(options.batch_size, ctx.visibility).await {
                Ok(messages) => {
                    if let Some((failures, reason)) = failures.succeeded() {
                        ctx.log(&format!(
                            "the queue answers again after {failures} failed poll(s) (last: {reason})"
                        ));
                    }
                    if messages.is_empty() {
                        backoff.next()
                    } else {
                        backoff.reset();
                        for m in messages {
                            tasks.spawn(process(ctx.clone(), handle.clone(), m));
                        }
                        drop(handle);
                        // Poll again as soon as few enough are in flight.
                        while tasks.len() > options.new_batch_threshold as usize {
                            tokio::select! {
                                _ = tasks.join_next() => {}
                                _ = stop.changed() => break 'poll,
                            }
                        }
                        continue;
                    }
                }
                Err(e) => {
                    if failures.failed(e.to_string()) {
                        let what = if e.status() == Some(404) {
                            "the queue does not exist (yet); polling it with backoff".to_owned()
                        } else {
                            format!("polling failed, retrying with backoff: {e}")
                        };
                        ctx.log(&what);
                    }
                    backoff.next()
                }
            };
            // Not held while waiting: an old app version is let go.
            drop(handle);
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                // A function of this process put a message on the queue.
                _ = wake.notified() => backoff.reset(),
                _ = stop.changed() => break,
            }
        }
        while tasks.join_next().await.is_some() {}
    }
}

impl ListenerCtx for Ctx {
    fn current_handle(&self) -> Option<FunctionHandle> {
        crate::listeners::current_handle(&self.host, &self.spec.function, &self.spec, QueueSpec::of)
    }

    fn log(&self, line: &str) {
        (self.log.0)(&format!(
            "queue '{}' ({}): {line}",
            self.spec.queue, self.spec.function
        ));
    }
}

/// One message: decode, invoke (its visibility renewed meanwhile), then
/// delete it, release it for a retry, or move it to the poison queue.
async fn process(ctx: Arc<Ctx>, handle: FunctionHandle, message: QueueMessage) {
    let options = &ctx.spec.options;
    let bytes = match options.message_encoding {
        MessageEncoding::Base64 => {
            match base64::engine::general_purpose::STANDARD.decode(message.text.trim()) {
                Ok(b) => b,
                Err(_) => {
                    ctx.log(&format!(
                        "message {} is not base64 (extensions.queues.messageEncoding is base64): moving it to the poison queue",
                        message.id
                    ));
                    poison(&ctx, &message, &message.pop_receipt).await;
                    return;
                }
            }
        }
        MessageEncoding::None => message.text.clone().into_bytes(),
    };
    if message.dequeue_count > options.max_dequeue_count {
        // A message whose last run never finished (a crash) is not run
        // again once it has had its tries.
        poison(&ctx, &message, &message.pop_receipt).await;
        return;
    }
    let invocation = invocation_for(&message, bytes, &ctx.spec.function);
    let receipt = Mutex::new(message.pop_receipt.clone());
    let outcome = tokio::select! {
        r = handle.invoke(invocation) => r,
        never = renew(&ctx, &message.id, &receipt) => match never {},
    };
    drop(handle);
    let receipt = receipt
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    match outcome {
        Ok(result) => {
            for line in &result.logs {
                ctx.log(line);
            }
            match ctx.queue.delete_message(&message.id, &receipt).await {
                Ok(()) => {}
                // Already gone, or received again elsewhere after its
                // visibility lapsed: nothing to do.
                Err(e) if matches!(e.status(), Some(400 | 404)) => {}
                Err(e) => ctx.log(&format!(
                    "message {} ran but cannot be deleted (it will run again): {e}",
                    message.id
                )),
            }
        }
        Err(e) => {
            for line in e.logs() {
                ctx.log(line);
            }
            ctx.log(&format!(
                "message {} failed (try {} of {}): {e}",
                message.id, message.dequeue_count, options.max_dequeue_count
            ));
            if message.dequeue_count >= options.max_dequeue_count {
                poison(&ctx, &message, &receipt).await;
            } else if let Err(e) = ctx
                .queue
                .update_message(&message.id, &receipt, options.visibility_timeout, None)
                .await
                && !matches!(e.status(), Some(400 | 404))
            {
                ctx.log(&format!(
                    "message {} cannot be released for its retry (it comes back when its visibility ends): {e}",
                    message.id
                ));
            }
        }
    }
}

/// Renews the message's visibility at half of it, for as long as it is
/// polled; never returns.
async fn renew(ctx: &Ctx, id: &str, receipt: &Mutex<String>) -> std::convert::Infallible {
    let normal = ctx.visibility / 2;
    let mut wait = normal;
    loop {
        tokio::time::sleep(wait).await;
        let current = lock(receipt).clone();
        match ctx
            .queue
            .update_message(id, &current, ctx.visibility, None)
            .await
        {
            Ok(r) => {
                *lock(receipt) = r.pop_receipt;
                wait = normal;
            }
            Err(e) => {
                ctx.log(&format!(
                    "cannot renew the visibility of message {id} (trying again sooner): {e}"
                ));
                // Sooner after each failure, down to a floor, as the host.
                let floor = normal.min(Duration::from_secs(60)) / 4;
                wait = (wait / 2).max(floor).max(Duration::from_millis(100));
            }
        }
    }
}

/// Copies the message's wire text to the poison queue and deletes it. When
/// there is no poison queue, or the copy fails, the message is left hidden
/// (it comes back when its visibility ends): nothing is lost.
async fn poison(ctx: &Ctx, message: &QueueMessage, receipt: &str) {
    let Some(poison) = &ctx.poison else {
        ctx.log(&format!(
            "message {} has had its {} tries and the queue has no poison queue: it stays hidden",
            message.id, ctx.spec.options.max_dequeue_count
        ));
        return;
    };
    ctx.log(&format!(
        "Message has reached MaxDequeueCount of {}. Moving message to queue '{}'.",
        ctx.spec.options.max_dequeue_count,
        poison.name()
    ));
    if !ctx.poison_created.load(Ordering::Acquire) {
        match poison.create().await {
            Ok(_) => ctx.poison_created.store(true, Ordering::Release),
            Err(e) => {
                ctx.log(&format!(
                    "cannot create the poison queue (message {} stays hidden): {e}",
                    message.id
                ));
                return;
            }
        }
    }
    if let Err(e) = poison.put(&message.text, None).await {
        ctx.log(&format!(
            "cannot copy message {} to the poison queue (it stays hidden): {e}",
            message.id
        ));
        if e.status() == Some(404) {
            ctx.poison_created.store(false, Ordering::Release);
        }
        return;
    }
    if let Err(e) = ctx.queue.delete_message(&message.id, receipt).await
        && !matches!(e.status(), Some(400 | 404))
    {
        ctx.log(&format!(
            "message {} was copied to the poison queue but cannot be deleted: {e}",
            message.id
        ));
    }
}

/// The invocation of a message: its trigger value is the text (parsed when
/// it is a JSON object or array), and its metadata the host's binding data.
pub(crate) fn invocation_for(message: &QueueMessage, bytes: Vec<u8>, function: &str) -> Invocation {
    let mut metadata = Map::new();
    let trigger = match String::from_utf8(bytes) {
        Ok(text) => {
            let parsed = json_body(&text);
            metadata.insert("QueueTrigger".into(), Value::String(text.clone()));
            match parsed {
                Some(v) => v,
                None => Value::String(text),
            }
        }
        // Not text: the bytes in base64, as the protocol carries bytes.
        Err(e) => Value::String(base64::engine::general_purpose::STANDARD.encode(e.into_bytes())),
    };
    metadata.insert("DequeueCount".into(), Value::from(message.dequeue_count));
    metadata.insert(
        "ExpirationTime".into(),
        Value::String(time_or(
            message.expiration_time,
            "9999-12-31T23:59:59+00:00",
        )),
    );
    metadata.insert("Id".into(), Value::String(message.id.clone()));
    let now = Utc::now();
    metadata.insert(
        "InsertionTime".into(),
        Value::String(fmt_time(message.insertion_time.unwrap_or(now))),
    );
    metadata.insert(
        "NextVisibleTime".into(),
        Value::String(time_or(message.next_visible, "9999-12-31T23:59:59+00:00")),
    );
    metadata.insert(
        "PopReceipt".into(),
        Value::String(message.pop_receipt.clone()),
    );
    // A JSON body's properties are binding data too, and win on a clash.
    if let Value::Object(props) = &trigger {
        for (k, v) in props {
            metadata.insert(k.clone(), v.clone());
        }
    }
    let mut sys = Map::new();
    sys.insert("MethodName".into(), Value::String(function.to_owned()));
    sys.insert(
        "UtcNow".into(),
        Value::String(now.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
    );
    sys.insert(
        "RandGuid".into(),
        Value::String(InvocationId::new().to_string()),
    );
    metadata.insert("sys".into(), Value::Object(sys));
    let mut invocation = Invocation::new(BindingData::Json(trigger));
    invocation.metadata = metadata;
    invocation
}

/// A JSON object or array, parsed; any other text is not.
fn json_body(text: &str) -> Option<Value> {
    let t = text.trim_start();
    if !(t.starts_with('{') || t.starts_with('[')) {
        return None;
    }
    serde_json::from_str::<Value>(text)
        .ok()
        .filter(|v| v.is_object() || v.is_array())
}

fn fmt_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, false)
}

fn time_or(t: Option<DateTime<Utc>>, max: &str) -> String {
    t.map_or_else(|| max.to_owned(), fmt_time)
}

/// The host's randomized exponential backoff for empty polls: from the
/// minimum, roughly doubling (times 0.8 to 1.2) up to the maximum.
#[derive(Debug)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    current: Duration,
    step: u32,
    /// A poll just found messages: the next empty poll waits only
    /// [`SETTLE`] before the host's backoff starts.
    fresh: bool,
}

/// The wait after the first empty poll that follows messages. The host
/// waits about 200 ms there; a steady stream whose poll happens to drain
/// the queue would then wait too (fnhost's difference kept on purpose: one
/// extra request each time a busy queue goes idle).
const SETTLE: Duration = Duration::from_millis(10);

impl Backoff {
    pub(crate) fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max: max.max(min),
            current: min,
            step: 0,
            fresh: false,
        }
    }

    pub(crate) fn reset(&mut self) {
        self.current = self.min;
        self.step = 0;
        self.fresh = true;
    }

    pub(crate) fn next(&mut self) -> Duration {
        if std::mem::take(&mut self.fresh) {
            return SETTLE.min(self.max);
        }
        if self.current < self.max {
            self.step = (self.step + 1).min(30);
            let factor = 0.8 + 0.4 * unit_random();
            let grow = self
                .min
                .mul_f64(factor * f64::from(1u32 << (self.step - 1).min(20)));
            self.current = (self.current + grow).min(self.max);
        }
        self.current
    }
}

/// A number in `[0, 1)`.
fn unit_random() -> f64 {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        return 0.5;
    }
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn message(text: &str) -> QueueMessage {
        QueueMessage {
            id: "id-1".into(),
            insertion_time: Some(Utc::now()),
            expiration_time: None,
            pop_receipt: "pr".into(),
            next_visible: Some(Utc::now()),
            dequeue_count: 2,
            text: text.into(),
        }
    }

    #[test]
    fn backoff_grows_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let first = b.next();
        assert!(first >= Duration::from_millis(180) && first <= Duration::from_millis(220));
        let mut last = first;
        for _ in 0..20 {
            let d = b.next();
            assert!(d >= last && d <= Duration::from_secs(2));
            last = d;
        }
        assert_eq!(last, Duration::from_secs(2));
        b.reset();
        // Right after messages: a short settle, then the host's backoff.
        assert_eq!(b.next(), Duration::from_millis(10));
        assert!(b.next() < Duration::from_millis(300));
    }

    #[test]
    fn invocation_has_the_host_binding_data() {
        let m = message("");
        let inv = invocation_for(&m, br#"{"OrderId": 7, "Id": "mine"}"#.to_vec(), "F");
        assert_eq!(inv.trigger.to_json()["OrderId"], 7);
        assert_eq!(inv.metadata["DequeueCount"], 2);
        assert_eq!(inv.metadata["PopReceipt"], "pr");
        // A JSON property wins on a clash.
        assert_eq!(inv.metadata["Id"], "mine");
        assert_eq!(inv.metadata["OrderId"], 7);
        assert_eq!(inv.metadata["ExpirationTime"], "9999-12-31T23:59:59+00:00");
        assert!(
            inv.metadata["InsertionTime"]
                .as_str()
                .unwrap()
                .ends_with("+00:00")
        );
        assert_eq!(inv.metadata["sys"]["MethodName"], "F");

        let inv = invocation_for(&m, b"hello".to_vec(), "F");
        assert_eq!(inv.trigger.to_json(), "hello");
        assert_eq!(inv.metadata["QueueTrigger"], "hello");
        assert_eq!(inv.metadata["Id"], "id-1");
        // Numbers and quoted strings stay text.
        assert_eq!(
            invocation_for(&m, b"42".to_vec(), "F").trigger.to_json(),
            "42"
        );
        let inv = invocation_for(&m, vec![0xff, 0x00], "F");
        assert_eq!(inv.trigger.to_json(), "/wA=");
        assert!(!inv.metadata.contains_key("QueueTrigger"));
    }
}
