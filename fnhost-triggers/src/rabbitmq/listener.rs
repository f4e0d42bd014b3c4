//! One rabbitMQTrigger function's listener: the connection (retried with
//! backoff), the consumer, and each delivery's ack, requeue or reject.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use fnhost_core::invoke::{BindingData, FunctionHandle, Host, Invocation};
use fnhost_core::timer::LogSink;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    BasicRejectOptions, ConfirmSelectOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use serde_json::{Map, Value};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_stream::StreamExt as _;

use super::RabbitSpec;
use crate::listeners::Failures;

/// The header counting a message's failed tries, as the extension has it.
pub const REQUEUE_COUNT_HEADER: &str = "x-ms-rabbitmq-requeuecount";

/// Tries before a failing message is rejected without requeue (the broker
/// then dead-letters it when the queue has a dead-letter exchange, and
/// drops it otherwise), as the extension has it.
pub const REQUEUE_LIMIT: i64 = 5;

/// The longest wait between connection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Consumes the queue of one rabbitMQTrigger function and runs the
/// function for each delivery, on the host's current app version.
///
/// As the extension: deliveries are acknowledged after success; a failure
/// republishes a copy to the tail of the queue with the header
/// `x-ms-rabbitmq-requeuecount` one higher and acknowledges the original,
/// until the count reaches five, when the delivery is rejected without
/// requeue (dead-lettered if the queue has a dead-letter exchange). The
/// queue is not declared. A delivery not acknowledged when fnhost stops or
/// dies goes back to the queue (at least once).
#[derive(Debug)]
pub struct RabbitListener {
    ctx: Arc<Ctx>,
}

struct Ctx {
    host: Arc<Host>,
    spec: RabbitSpec,
    log: LogSink,
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

impl Ctx {
    fn log(&self, line: &str) {
        (self.log)(&format!(
            "rabbitMQ queue '{}' ({}): {line}",
            self.spec.queue, self.spec.function
        ));
    }
}

fn current_handle(ctx: &Ctx) -> Option<FunctionHandle> {
    crate::listeners::current_handle(&ctx.host, &ctx.spec.function, &ctx.spec, RabbitSpec::of)
}

/// Why a consuming session ended.
enum Ended {
    /// Stop asked, or the function changed: do not reconnect.
    Stopped,
    /// The broker or connection failed: reconnect after a backoff.
    Failed(String),
}

impl RabbitListener {
    /// A listener for `spec` (no connection is made yet).
    pub fn new(host: Arc<Host>, spec: RabbitSpec, log: LogSink) -> RabbitListener {
        RabbitListener {
            ctx: Arc::new(Ctx { host, spec, log }),
        }
    }

    /// The spec it listens for.
    pub fn spec(&self) -> &RabbitSpec {
        &self.ctx.spec
    }

    /// Consumes until `stop` turns true (or its sender is dropped) or the
    /// function's spec changes; an unreachable broker or a missing queue is
    /// retried with backoff. Waits for the invocations in flight, then
    /// closes the connection (deliveries not acknowledged go back to the
    /// queue).
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let ctx = self.ctx;
        let mut backoff = Duration::from_millis(100);
        let mut failures = Failures::default();
        loop {
            if *stop.borrow() || current_handle(&ctx).is_none() {
                break;
            }
            match session(&ctx, &mut stop, &mut || {
                if let Some((failures, reason)) = failures.succeeded() {
                    ctx.log(&format!(
                        "consuming again after {failures} failed attempt(s) (last: {reason})"
                    ));
                }
            })
            .await
            {
                Ended::Stopped => break,
                Ended::Failed(reason) => {
                    if failures.failed(reason.clone()) {
                        ctx.log(&format!("cannot consume, retrying with backoff: {reason}"));
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.changed() => break,
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

/// One connection: consume until stopped or broken. `connected` is called
/// once the consumer runs.
async fn session(
    ctx: &Arc<Ctx>,
    stop: &mut watch::Receiver<bool>,
    connected: &mut (dyn FnMut() + Send),
) -> Ended {
    let connect = Connection::connect(&ctx.spec.uri, ConnectionProperties::default());
    let conn = match tokio::time::timeout(Duration::from_secs(15), connect).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return Ended::Failed(format!("cannot connect: {e}")),
        Err(_) => return Ended::Failed("cannot connect: no answer within 15 s".into()),
    };
    let ended = consume(ctx, &conn, stop, connected).await;
    let _ = conn.close(200, "OK".into()).await;
    ended
}

async fn consume(
    ctx: &Arc<Ctx>,
    conn: &Connection,
    stop: &mut watch::Receiver<bool>,
    connected: &mut (dyn FnMut() + Send),
) -> Ended {
    let channel = match open_channel(conn, ctx.spec.prefetch).await {
        Ok(c) => c,
        Err(e) => return Ended::Failed(e),
    };
    let tag = format!("fnhost-{}-{}", ctx.spec.function, std::process::id());
    let mut consumer = match channel
        .basic_consume(
            ctx.spec.queue.as_str().into(),
            tag.as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
    {
        Ok(c) => c,
        Err(e) => {
            return Ended::Failed(format!(
                "cannot consume the queue (it must exist; the trigger does not declare it): {e}"
            ));
        }
    };
    connected();
    let mut tasks: JoinSet<()> = JoinSet::new();
    let mut check = tokio::time::interval(Duration::from_millis(500));
    let ended = loop {
        while tasks.try_join_next().is_some() {}
        tokio::select! {
            next = consumer.next() => match next {
                Some(Ok(delivery)) => {
                    let Some(handle) = current_handle(ctx) else {
                        // Not ours to run any more: back to the queue.
                        let _ = delivery
                            .acker
                            .nack(BasicNackOptions { requeue: true, ..BasicNackOptions::default() })
                            .await;
                        break Ended::Stopped;
                    };
                    let ctx = ctx.clone();
                    let channel = channel.clone();
                    let tag = tag.clone();
                    tasks.spawn(async move { process(&ctx, &channel, &tag, handle, delivery).await });
                }
                Some(Err(e)) => break Ended::Failed(format!("the consumer failed: {e}")),
                None => break Ended::Failed("the broker cancelled the consumer".into()),
            },
            _ = check.tick() => {
                if current_handle(ctx).is_none() {
                    break Ended::Stopped;
                }
            }
            _ = stop.changed() => break Ended::Stopped,
        }
    };
    // The invocations in flight finish (and ack) on this channel.
    while tasks.join_next().await.is_some() {}
    let _ = channel.close(200, "OK".into()).await;
    ended
}

async fn open_channel(conn: &Connection, prefetch: u16) -> Result<Channel, String> {
    let channel = conn
        .create_channel()
        .await
        .map_err(|e| format!("cannot open a channel: {e}"))?;
    channel
        .basic_qos(prefetch, BasicQosOptions { global: false })
        .await
        .map_err(|e| format!("cannot set the prefetch count: {e}"))?;
    // Republished copies are confirmed before the original is acknowledged.
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(|e| format!("cannot turn publisher confirms on: {e}"))?;
    Ok(channel)
}

/// The requeue count of a delivery's headers (0 when absent).
fn requeue_count(properties: &BasicProperties) -> i64 {
    properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get(REQUEUE_COUNT_HEADER))
        .and_then(amqp_int)
        .unwrap_or(0)
}

fn amqp_int(v: &AMQPValue) -> Option<i64> {
    Some(match v {
        AMQPValue::ShortShortInt(n) => i64::from(*n),
        AMQPValue::ShortShortUInt(n) => i64::from(*n),
        AMQPValue::ShortInt(n) => i64::from(*n),
        AMQPValue::ShortUInt(n) => i64::from(*n),
        AMQPValue::LongInt(n) => i64::from(*n),
        AMQPValue::LongUInt(n) => i64::from(*n),
        AMQPValue::LongLongInt(n) => *n,
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).trim().parse().ok()?,
        _ => return None,
    })
}

/// Runs the function on one delivery, then acknowledges it, republishes it
/// for a retry, or rejects it.
async fn process(
    ctx: &Ctx,
    channel: &Channel,
    consumer_tag: &str,
    handle: FunctionHandle,
    delivery: lapin::message::Delivery,
) {
    let invocation = invocation_for(&delivery, consumer_tag);
    let outcome = handle.invoke(invocation).await;
    drop(handle);
    let tag = delivery.delivery_tag;
    match outcome {
        Ok(result) => {
            for line in &result.logs {
                ctx.log(line);
            }
            if let Err(e) = delivery.acker.ack(BasicAckOptions::default()).await {
                ctx.log(&format!(
                    "delivery {tag} ran but cannot be acknowledged (it will run again): {e}"
                ));
            }
        }
        Err(e) => {
            for line in e.logs() {
                ctx.log(line);
            }
            let count = requeue_count(&delivery.properties) + 1;
            ctx.log(&format!(
                "delivery {tag} failed (try {count} of {REQUEUE_LIMIT}): {e}"
            ));
            if count >= REQUEUE_LIMIT {
                ctx.log(&format!(
                    "rejecting delivery {tag} after {count} tries (dead-lettered if the queue has a dead-letter exchange)"
                ));
                if let Err(e) = delivery
                    .acker
                    .reject(BasicRejectOptions { requeue: false })
                    .await
                {
                    ctx.log(&format!("cannot reject delivery {tag}: {e}"));
                }
                return;
            }
            let mut headers = delivery.properties.headers().clone().unwrap_or_default();
            headers.insert(REQUEUE_COUNT_HEADER.into(), AMQPValue::LongLongInt(count));
            let properties = delivery.properties.clone().with_headers(headers);
            let published = async {
                channel
                    .basic_publish(
                        "".into(),
                        ctx.spec.queue.as_str().into(),
                        BasicPublishOptions::default(),
                        &delivery.data,
                        properties,
                    )
                    .await?
                    .await
            }
            .await;
            match published {
                Ok(confirm) if !confirm.is_nack() => {
                    if let Err(e) = delivery.acker.ack(BasicAckOptions::default()).await {
                        ctx.log(&format!(
                            "delivery {tag} was requeued but the original cannot be acknowledged (it may run once more): {e}"
                        ));
                    }
                }
                other => {
                    ctx.log(&format!(
                        "cannot requeue delivery {tag} ({other:?}); it goes back to the queue as it was"
                    ));
                    let _ = delivery
                        .acker
                        .nack(BasicNackOptions {
                            requeue: true,
                            ..BasicNackOptions::default()
                        })
                        .await;
                }
            }
        }
    }
}

/// The invocation of a delivery: its body (parsed when it is a JSON object
/// or array, bytes when it is not UTF-8) and the extension's metadata.
fn invocation_for(delivery: &lapin::message::Delivery, consumer_tag: &str) -> Invocation {
    let trigger = match std::str::from_utf8(&delivery.data) {
        Ok(text) => {
            let trimmed = text.trim_start();
            match (trimmed.starts_with('{') || trimmed.starts_with('['))
                .then(|| serde_json::from_str::<Value>(text).ok())
                .flatten()
            {
                Some(v) => BindingData::Json(v),
                None => BindingData::Json(Value::String(text.to_owned())),
            }
        }
        Err(_) => BindingData::Bytes(delivery.data.clone()),
    };
    let p = &delivery.properties;
    let text = |s: &Option<lapin::types::ShortString>| {
        s.as_ref()
            .map_or(Value::Null, |s| Value::String(s.as_str().to_owned()))
    };
    let headers: Map<String, Value> = p
        .headers()
        .as_ref()
        .map(|h| {
            h.inner()
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), amqp_json(v)))
                .collect()
        })
        .unwrap_or_default();
    let mut metadata = Map::new();
    metadata.insert("ConsumerTag".into(), Value::String(consumer_tag.to_owned()));
    metadata.insert("DeliveryTag".into(), Value::from(delivery.delivery_tag));
    metadata.insert("Redelivered".into(), Value::Bool(delivery.redelivered));
    metadata.insert(
        "Exchange".into(),
        Value::String(delivery.exchange.as_str().to_owned()),
    );
    metadata.insert(
        "RoutingKey".into(),
        Value::String(delivery.routing_key.as_str().to_owned()),
    );
    metadata.insert(
        "BasicProperties".into(),
        serde_json::json!({
            "ContentType": text(p.content_type()),
            "CorrelationId": text(p.correlation_id()),
            "MessageId": text(p.message_id()),
            "Headers": headers,
        }),
    );
    let mut invocation = Invocation::new(trigger);
    invocation.metadata = metadata;
    invocation
}

/// An AMQP header value as JSON.
fn amqp_json(v: &AMQPValue) -> Value {
    if let Some(n) = amqp_int(v).filter(|_| !matches!(v, AMQPValue::LongString(_))) {
        return Value::from(n);
    }
    match v {
        AMQPValue::Boolean(b) => Value::Bool(*b),
        AMQPValue::Float(f) => Value::from(f64::from(*f)),
        AMQPValue::Double(d) => Value::from(*d),
        AMQPValue::ShortString(s) => Value::String(s.as_str().to_owned()),
        AMQPValue::LongString(s) => match std::str::from_utf8(s.as_bytes()) {
            Ok(t) => Value::String(t.to_owned()),
            Err(_) => Value::String(base64::engine::general_purpose::STANDARD.encode(s.as_bytes())),
        },
        AMQPValue::FieldArray(a) => Value::Array(a.as_slice().iter().map(amqp_json).collect()),
        AMQPValue::FieldTable(t) => Value::Object(
            t.inner()
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), amqp_json(v)))
                .collect(),
        ),
        AMQPValue::Timestamp(t) => Value::from(*t),
        other => Value::String(format!("{other:?}")),
    }
}
