//! `extensions.queues` of host.json, the connection setting of a binding,
//! and what one queue listener is ([`QueueSpec`]).

use std::time::Duration;

use fnhost_core::app::{AppSettings, Function, FunctionApp, HostConfig};
use fnhost_core::binding::BindingKind;
use fnhost_core::timespan::TimeSpan;
use serde_json::{Map, Value};

use crate::storage::is_valid_queue_name;

/// How message text is written on the wire (`extensions.queues.messageEncoding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MessageEncoding {
    /// The text is base64 of the message's bytes (the host's default).
    #[default]
    Base64,
    /// The text is the message.
    None,
}

/// The queue settings of host.json's `extensions.queues`, with the host's
/// defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuesOptions {
    /// Messages received per poll, 1 to 32 (`batchSize`, default 16).
    pub batch_size: u32,
    /// The listener polls again once no more than this many messages are
    /// in flight (`newBatchThreshold`, default `batchSize / 2` times the
    /// number of processors).
    pub new_batch_threshold: u32,
    /// The longest wait between polls of an empty queue
    /// (`maxPollingInterval`, default one minute, two seconds when
    /// `AZURE_FUNCTIONS_ENVIRONMENT` is `Development`).
    pub max_polling_interval: Duration,
    /// How long a failed message stays hidden before it is tried again
    /// (`visibilityTimeout`, default zero).
    pub visibility_timeout: Duration,
    /// Tries before a message goes to the poison queue (`maxDequeueCount`,
    /// default 5).
    pub max_dequeue_count: u64,
    /// The wire encoding of message text (`messageEncoding`, default
    /// base64).
    pub message_encoding: MessageEncoding,
}

impl Default for QueuesOptions {
    fn default() -> Self {
        let batch_size = 16;
        QueuesOptions {
            batch_size,
            new_batch_threshold: default_threshold(batch_size),
            max_polling_interval: Duration::from_secs(60),
            visibility_timeout: Duration::ZERO,
            max_dequeue_count: 5,
            message_encoding: MessageEncoding::Base64,
        }
    }
}

fn default_threshold(batch_size: u32) -> u32 {
    let processors = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    (batch_size / 2).saturating_mul(processors)
}

/// The fastest the listener polls an empty queue.
pub(crate) const MIN_POLLING_INTERVAL: Duration = Duration::from_millis(100);

impl QueuesOptions {
    /// The options of `app`: its host.json `extensions.queues` over the
    /// defaults. Keys are compared ignoring case; durations are TimeSpan
    /// strings (`"00:00:02"`). An invalid value is an error naming it.
    pub fn of_app(app: &FunctionApp) -> Result<QueuesOptions, String> {
        Self::of(app.host(), app.settings())
    }

    /// The options of an app's host.json and settings.
    pub fn of(host: &HostConfig, settings: &AppSettings) -> Result<QueuesOptions, String> {
        let development = settings
            .get("AZURE_FUNCTIONS_ENVIRONMENT")
            .is_some_and(|e| e.eq_ignore_ascii_case("Development"));
        let section = get(&host.document, "extensions")
            .and_then(Value::as_object)
            .and_then(|e| get(e, "queues"))
            .and_then(Value::as_object);
        Self::from_section(section, development)
    }

    /// The options from an `extensions.queues` object.
    pub fn from_section(
        section: Option<&Map<String, Value>>,
        development: bool,
    ) -> Result<QueuesOptions, String> {
        let mut o = QueuesOptions::default();
        if development {
            o.max_polling_interval = Duration::from_secs(2);
        }
        let Some(s) = section else {
            return Ok(o);
        };
        if let Some(v) = get(s, "batchSize") {
            let n = integer(v, "batchSize")?;
            if !(1..=32).contains(&n) {
                return Err(format!(
                    "host.json extensions.queues.batchSize is {n}: it must be 1 to 32"
                ));
            }
            o.batch_size = n as u32;
            o.new_batch_threshold = default_threshold(o.batch_size);
        }
        if let Some(v) = get(s, "newBatchThreshold") {
            let n = integer(v, "newBatchThreshold")?;
            if n < 0 {
                return Err(format!(
                    "host.json extensions.queues.newBatchThreshold is {n}: it must not be negative"
                ));
            }
            o.new_batch_threshold = u32::try_from(n).unwrap_or(u32::MAX);
        }
        if let Some(v) = get(s, "maxPollingInterval") {
            let d = duration(v, "maxPollingInterval")?;
            if d < MIN_POLLING_INTERVAL {
                return Err(
                    "host.json extensions.queues.maxPollingInterval must be at least 100 ms (\"00:00:00.1\")"
                        .into(),
                );
            }
            o.max_polling_interval = d;
        }
        if let Some(v) = get(s, "visibilityTimeout") {
            o.visibility_timeout = duration(v, "visibilityTimeout")?;
        }
        if let Some(v) = get(s, "maxDequeueCount") {
            let n = integer(v, "maxDequeueCount")?;
            if n < 1 {
                return Err(format!(
                    "host.json extensions.queues.maxDequeueCount is {n}: it must be at least 1"
                ));
            }
            o.max_dequeue_count = n as u64;
        }
        if let Some(v) = get(s, "messageEncoding") {
            o.message_encoding = match v.as_str().map(str::to_ascii_lowercase).as_deref() {
                Some("base64") => MessageEncoding::Base64,
                Some("none") => MessageEncoding::None,
                _ => {
                    return Err(format!(
                        "host.json extensions.queues.messageEncoding is {v}: use \"base64\" or \"none\""
                    ));
                }
            };
        }
        Ok(o)
    }
}

fn get<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    map.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
        .filter(|v| !v.is_null())
}

fn integer(v: &Value, key: &str) -> Result<i64, String> {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
        .ok_or_else(|| {
            format!("host.json extensions.queues.{key} is {v}: it must be a whole number")
        })
}

fn duration(v: &Value, key: &str) -> Result<Duration, String> {
    let text = v.as_str().ok_or_else(|| {
        format!(
            "host.json extensions.queues.{key} is {v}: write a TimeSpan string such as \"00:00:30\""
        )
    })?;
    let span =
        TimeSpan::parse(text).map_err(|e| format!("host.json extensions.queues.{key}: {e}"))?;
    if span.negative {
        return Err(format!(
            "host.json extensions.queues.{key} is negative ({text})"
        ));
    }
    Ok(span.duration)
}

/// One queue listener: a queueTrigger function, its queue, its connection
/// and the app's queue options. A listener runs as long as the current app
/// version gives its function the same spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSpec {
    /// The function's name.
    pub function: String,
    /// The queue (app settings resolved, lower-cased as the host does).
    pub queue: String,
    /// The name of the setting the connection string came from.
    pub setting: String,
    /// The connection string.
    pub connection: String,
    /// The app's `extensions.queues`.
    pub options: QueuesOptions,
}

impl QueueSpec {
    /// The spec of `function` of `app` when it is a queueTrigger function:
    /// `None` when it is not one, `Some(Err(why))` when it cannot listen.
    pub fn of(function: &Function, app: &FunctionApp) -> Option<Result<QueueSpec, String>> {
        let trigger = function.config.trigger()?;
        let BindingKind::QueueTrigger(q) = &trigger.kind else {
            return None;
        };
        Some(Self::build(
            function,
            app,
            q.queue_name.as_deref(),
            q.connection.as_deref(),
        ))
    }

    fn build(
        function: &Function,
        app: &FunctionApp,
        queue_name: Option<&str>,
        connection: Option<&str>,
    ) -> Result<QueueSpec, String> {
        let raw = queue_name
            .filter(|q| !q.trim().is_empty())
            .ok_or("its queueTrigger has no queueName")?;
        let queue = app
            .settings()
            .resolve(raw)
            .map_err(|e| format!("its queueName {e}"))?
            .trim()
            .to_ascii_lowercase();
        if !is_valid_queue_name(&queue) {
            return Err(format!(
                "its queue name '{queue}' is not valid: use 3 to 63 lower-case letters, digits and single dashes"
            ));
        }
        let (setting, connection) = connection_string(app.settings(), connection)?;
        let options = QueuesOptions::of_app(app)?;
        Ok(QueueSpec {
            function: function.name.clone(),
            queue,
            setting,
            connection,
            options,
        })
    }

    /// The poison queue: `<queue>-poison`, or `None` when the queue already
    /// ends in `-poison` or the name would be too long.
    pub fn poison_queue(&self) -> Option<String> {
        poison_queue_name(&self.queue)
    }
}

/// `<queue>-poison`, when that is a valid name and `queue` is not itself a
/// poison queue.
pub fn poison_queue_name(queue: &str) -> Option<String> {
    if queue.ends_with("-poison") {
        return None;
    }
    let name = format!("{queue}-poison");
    is_valid_queue_name(&name).then_some(name)
}

/// The connection string a binding's `connection` names, looked up as the
/// host does: an empty name means `Storage`; `AzureWebJobs<name>` is tried
/// before `<name>`, each as `ConnectionStrings:<n>` (or
/// `ConnectionStrings__<n>`) and then as an app setting. Returns the setting
/// found and its value.
pub fn connection_string(
    settings: &AppSettings,
    connection: Option<&str>,
) -> Result<(String, String), String> {
    let name = connection
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .unwrap_or("Storage");
    let candidates = [format!("AzureWebJobs{name}"), name.to_owned()];
    for c in &candidates {
        for key in [
            format!("ConnectionStrings:{c}"),
            format!("ConnectionStrings__{c}"),
            c.clone(),
        ] {
            if let Some(v) = settings.get(&key).filter(|v| !v.trim().is_empty()) {
                return Ok((key, v.to_owned()));
            }
        }
    }
    for suffix in [
        "queueServiceUri",
        "blobServiceUri",
        "serviceUri",
        "accountName",
    ] {
        for c in &candidates {
            if settings.get(&format!("{c}__{suffix}")).is_some() {
                return Err(format!(
                    "its connection '{name}' is identity-based ({c}__{suffix}), which fnhost does not support: set {c} to a connection string"
                ));
            }
        }
    }
    let shown = if name == "Storage" {
        "AzureWebJobsStorage".to_owned()
    } else {
        format!("{name} (or AzureWebJobs{name})")
    };
    Err(format!(
        "the app setting {shown} is not set: set it to a storage connection string (UseDevelopmentStorage=true for Azurite) in local.settings.json \"Values\" or the environment"
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn section(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn defaults_and_values() {
        let d = QueuesOptions::from_section(None, false).unwrap();
        assert_eq!(d.batch_size, 16);
        assert_eq!(d.max_dequeue_count, 5);
        assert_eq!(d.max_polling_interval, Duration::from_secs(60));
        assert_eq!(d.message_encoding, MessageEncoding::Base64);
        let dev = QueuesOptions::from_section(None, true).unwrap();
        assert_eq!(dev.max_polling_interval, Duration::from_secs(2));
        let s = section(json!({
            "BatchSize": 4, "newBatchThreshold": 1, "maxPollingInterval": "00:00:00.5",
            "visibilityTimeout": "00:00:03", "maxDequeueCount": "2", "messageEncoding": "None"
        }));
        let o = QueuesOptions::from_section(Some(&s), true).unwrap();
        assert_eq!(o.batch_size, 4);
        assert_eq!(o.new_batch_threshold, 1);
        assert_eq!(o.max_polling_interval, Duration::from_millis(500));
        assert_eq!(o.visibility_timeout, Duration::from_secs(3));
        assert_eq!(o.max_dequeue_count, 2);
        assert_eq!(o.message_encoding, MessageEncoding::None);
    }

    #[test]
    fn bad_values_are_named() {
        for (v, word) in [
            (json!({"batchSize": 33}), "batchSize"),
            (json!({"maxDequeueCount": 0}), "maxDequeueCount"),
            (json!({"maxPollingInterval": "00:00:00.05"}), "100 ms"),
            (json!({"maxPollingInterval": 2000}), "TimeSpan"),
            (json!({"messageEncoding": "utf8"}), "base64"),
        ] {
            let e = QueuesOptions::from_section(Some(&section(v)), false).unwrap_err();
            assert!(e.contains(word), "{e}");
        }
    }

    #[test]
    fn poison_names() {
        assert_eq!(
            poison_queue_name("orders").as_deref(),
            Some("orders-poison")
        );
        assert_eq!(poison_queue_name("orders-poison"), None);
        assert_eq!(poison_queue_name(&"a".repeat(60)), None);
    }
}
