//! RabbitMQ: the `rabbitMQTrigger` and the `rabbitMQ` output binding, as
//! Azure's RabbitMQ extension has them (AMQP 0-9-1 through lapin).

mod listener;

pub use listener::{REQUEUE_COUNT_HEADER, REQUEUE_LIMIT, RabbitListener};

use fnhost_core::app::{AppSettings, Function, FunctionApp, HostConfig};
use fnhost_core::binding::{Binding, Direction};
use serde_json::{Map, Value};

/// The prefetch count when host.json sets none.
pub const DEFAULT_PREFETCH: u16 = 30;

/// One RabbitMQ listener: a rabbitMQTrigger function, its queue and
/// connection, and the app's prefetch count.
#[derive(Clone, PartialEq, Eq)]
pub struct RabbitSpec {
    /// The function's name.
    pub function: String,
    /// The queue (settings resolved); it must exist, as the extension does
    /// not declare it.
    pub queue: String,
    /// The AMQP URI (`amqp://user:password@host:port/vhost`).
    pub uri: String,
    /// Deliveries in flight at once (`extensions.rabbitMQ.prefetchCount`).
    pub prefetch: u16,
}

// The URI holds a password.
impl std::fmt::Debug for RabbitSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RabbitSpec")
            .field("function", &self.function)
            .field("queue", &self.queue)
            .field("prefetch", &self.prefetch)
            .finish_non_exhaustive()
    }
}

/// Whether a binding type is `type` (ignoring case).
fn is_type(b: &Binding, name: &str) -> bool {
    b.type_name.eq_ignore_ascii_case(name)
}

/// A binding property as text (ignoring the key's case).
fn prop<'a>(b: &'a Binding, key: &str) -> Option<&'a str> {
    b.properties
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .and_then(|(_, v)| v.as_str())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// host.json's `extensions.rabbitMQ` (keys compared ignoring case).
fn section(host: &HostConfig) -> Option<&Map<String, Value>> {
    host.document
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("extensions"))
        .map(|(_, v)| v)
        .and_then(Value::as_object)
        .and_then(|e| {
            e.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("rabbitMQ"))
                .map(|(_, v)| v)
        })
        .and_then(Value::as_object)
}

fn section_text<'a>(host: &'a HostConfig, key: &str) -> Option<&'a str> {
    section(host)?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .and_then(|(_, v)| v.as_str())
        .filter(|v| !v.trim().is_empty())
}

impl RabbitSpec {
    /// The spec of `function` of `app` when it is a rabbitMQTrigger
    /// function: `None` when it is not one, `Some(Err(why))` when it cannot
    /// listen.
    pub fn of(function: &Function, app: &FunctionApp) -> Option<Result<RabbitSpec, String>> {
        let trigger = function.config.trigger()?;
        if !is_type(trigger, "rabbitMQTrigger") {
            return None;
        }
        Some(Self::build(function, trigger, app.settings(), app.host()))
    }

    fn build(
        function: &Function,
        trigger: &Binding,
        settings: &AppSettings,
        host: &HostConfig,
    ) -> Result<RabbitSpec, String> {
        let queue = queue_name(trigger, settings, host)?;
        let uri = connection_uri(trigger, settings, host)?;
        let prefetch = match section(host).and_then(|s| {
            s.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("prefetchCount"))
                .map(|(_, v)| v.clone())
        }) {
            None | Some(Value::Null) => DEFAULT_PREFETCH,
            Some(v) => v
                .as_u64()
                .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
                .and_then(|n| u16::try_from(n).ok())
                .filter(|n| *n >= 1)
                .ok_or_else(|| {
                    format!(
                        "host.json extensions.rabbitMQ.prefetchCount is {v}: use a whole number from 1 to 65535"
                    )
                })?,
        };
        Ok(RabbitSpec {
            function: function.name.clone(),
            queue,
            uri,
            prefetch,
        })
    }
}

/// The queue of a rabbitMQTrigger or rabbitMQ binding: its `queueName`
/// (settings resolved), else host.json's `extensions.rabbitMQ.queueName`.
pub(crate) fn queue_name(
    b: &Binding,
    settings: &AppSettings,
    host: &HostConfig,
) -> Result<String, String> {
    let raw = prop(b, "queueName")
        .or_else(|| section_text(host, "queueName"))
        .ok_or("its rabbitMQ binding has no queueName")?;
    let name = settings
        .resolve(raw)
        .map_err(|e| format!("its queueName {e}"))?
        .trim()
        .to_owned();
    if name.is_empty() || name.len() > 255 {
        return Err(format!(
            "its queue name '{name}' is not valid: use 1 to 255 bytes"
        ));
    }
    Ok(name)
}

/// The AMQP URI of a RabbitMQ binding, as the extension finds it:
/// `connectionStringSetting` names an app setting holding the URI; else
/// host.json's `extensions.rabbitMQ.connectionString`; else the older
/// `hostName`, `userNameSetting`, `passwordSetting` and `port` (0: 5672;
/// the user and password default to guest).
pub(crate) fn connection_uri(
    b: &Binding,
    settings: &AppSettings,
    host: &HostConfig,
) -> Result<String, String> {
    let uri = if let Some(name) = prop(b, "connectionStringSetting") {
        let name = name.trim_matches('%');
        match settings.get(name).filter(|v| !v.trim().is_empty()) {
            Some(v) => v.trim().to_owned(),
            None if name.starts_with("amqp") => name.to_owned(),
            None => {
                return Err(format!(
                    "the app setting {name} (connectionStringSetting) is not set: set it to amqp://user:password@host:5672/vhost"
                ));
            }
        }
    } else if let Some(c) = section_text(host, "connectionString") {
        settings
            .resolve(c)
            .map_err(|e| format!("host.json extensions.rabbitMQ.connectionString {e}"))?
            .trim()
            .to_owned()
    } else if let Some(host_name) = prop(b, "hostName") {
        let setting = |key: &str| -> Result<String, String> {
            match prop(b, key) {
                None => Ok("guest".to_owned()),
                Some(name) => settings
                    .get(name)
                    .map(str::to_owned)
                    .ok_or_else(|| format!("the app setting {name} ({key}) is not set")),
            }
        };
        let enc = |s: &str| {
            percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
        };
        let port = b
            .properties
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("port"))
            .and_then(|(_, v)| v.as_u64().or_else(|| v.as_str()?.parse().ok()))
            .filter(|p| *p != 0)
            .unwrap_or(5672);
        format!(
            "amqp://{}:{}@{host_name}:{port}/%2f",
            enc(&setting("userNameSetting")?),
            enc(&setting("passwordSetting")?)
        )
    } else {
        return Err(
            "its rabbitMQ binding has no connectionStringSetting (the name of an app setting holding amqp://user:password@host:5672/vhost)"
                .into(),
        );
    };
    if uri.starts_with("amqps://") {
        return Err(
            "amqps:// is not supported in this version of fnhost (no TLS client): use amqp:// on a trusted network"
                .into(),
        );
    }
    if !uri.starts_with("amqp://") {
        return Err("the RabbitMQ connection string must start with amqp://".into());
    }
    Ok(uri)
}

/// The `rabbitMQ` output bindings of a function.
pub(crate) fn is_output(b: &Binding) -> bool {
    is_type(b, "rabbitMQ") && b.direction == Direction::Out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn binding(v: Value) -> Binding {
        let config =
            fnhost_core::FunctionConfig::parse(&json!({"bindings": [v]}).to_string()).unwrap();
        config.bindings[0].clone()
    }

    #[test]
    fn connections_as_the_extension_reads_them() {
        let mut s = AppSettings::new();
        s.set("Rabbit", "amqp://u:p@127.0.0.1:5672/%2f");
        s.set("User", "ad@");
        let host = HostConfig::default();
        let b = binding(
            json!({"type": "rabbitMQTrigger", "direction": "in", "name": "m", "queueName": "q", "connectionStringSetting": "Rabbit"}),
        );
        assert_eq!(
            connection_uri(&b, &s, &host).unwrap(),
            "amqp://u:p@127.0.0.1:5672/%2f"
        );
        let b = binding(
            json!({"type": "rabbitMQTrigger", "direction": "in", "name": "m", "queueName": "q", "hostName": "localhost", "userNameSetting": "User", "port": 0}),
        );
        assert_eq!(
            connection_uri(&b, &s, &host).unwrap(),
            "amqp://ad%40:guest@localhost:5672/%2f"
        );
        let b = binding(
            json!({"type": "rabbitMQTrigger", "direction": "in", "name": "m", "queueName": "q", "connectionStringSetting": "Missing"}),
        );
        assert!(
            connection_uri(&b, &s, &host)
                .unwrap_err()
                .contains("Missing")
        );
        let b = binding(json!({"type": "rabbitMQTrigger", "direction": "in", "name": "m"}));
        assert!(queue_name(&b, &s, &host).unwrap_err().contains("queueName"));
        let host = HostConfig::parse(
            r#"{"version": "2.0", "extensions": {"rabbitMQ": {"queueName": "from-host", "connectionString": "amqp://h"}}}"#,
        )
        .unwrap();
        assert_eq!(queue_name(&b, &s, &host).unwrap(), "from-host");
        assert_eq!(connection_uri(&b, &s, &host).unwrap(), "amqp://h");
    }
}
