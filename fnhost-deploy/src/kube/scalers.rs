//! KEDA scalers for queue-style triggers: which scaler a trigger type
//! maps to (as `func kubernetes deploy` maps them) and the metadata that
//! scaler reads, taken from the binding with `%Setting%`s resolved.

use fnhost_core::Function;
use fnhost_core::app::AppSettings;
use fnhost_core::binding::Binding;
use serde_json::{Value, json};

/// A function's trigger as a KEDA `ScaledObject` trigger, `Ok(None)` when
/// KEDA has no scaler for its type (it then runs without one), or an
/// error naming what the binding lacks.
pub(super) fn keda_trigger(
    function: &Function,
    settings: &AppSettings,
) -> Result<Option<Value>, String> {
    let Some(binding) = function.config.trigger() else {
        return Ok(None);
    };
    let b = Props {
        binding,
        settings,
        function: &function.name,
    };
    let (kind, metadata) = match binding.type_name.to_ascii_lowercase().as_str() {
        "queuetrigger" => (
            "azure-queue",
            json!({
                "queueName": b.required("queueName")?.to_ascii_lowercase(),
                "queueLength": "5",
                "connectionFromEnv": b.connection("connection", "AzureWebJobsStorage")?,
            }),
        ),
        "blobtrigger" => {
            let path = b.required("path")?;
            let (container, rest) = path.split_once('/').unwrap_or((&path, ""));
            let prefix = rest.split('{').next().unwrap_or("");
            let mut m = json!({
                "blobContainerName": container,
                "blobCount": "5",
                "connectionFromEnv": b.connection("connection", "AzureWebJobsStorage")?,
            });
            if !prefix.is_empty() {
                m["blobPrefix"] = prefix.into();
            }
            ("azure-blob", m)
        }
        "rabbitmqtrigger" => (
            "rabbitmq",
            json!({
                "protocol": "amqp",
                "queueName": b.required("queueName")?,
                "mode": "QueueLength",
                "value": "20",
                "hostFromEnv": b.connection("connectionStringSetting", "")?,
            }),
        ),
        "servicebustrigger" => {
            let mut m = json!({
                "messageCount": "5",
                "connectionFromEnv": b.connection("connection", "AzureWebJobsServiceBus")?,
            });
            match b.optional("queueName")? {
                Some(q) => m["queueName"] = q.into(),
                None => {
                    m["topicName"] = b.required("topicName")?.into();
                    m["subscriptionName"] = b.required("subscriptionName")?.into();
                }
            }
            ("azure-servicebus", m)
        }
        "eventhubtrigger" => {
            let mut m = json!({
                "connectionFromEnv": b.connection("connection", "")?,
                "storageConnectionFromEnv": "AzureWebJobsStorage",
                "consumerGroup": b.optional("consumerGroup")?.unwrap_or_else(|| "$Default".into()),
                "unprocessedEventThreshold": "64",
                "checkpointStrategy": "azureFunction",
            });
            if let Some(hub) = b.optional("eventHubName")? {
                m["eventHubName"] = hub.into();
            }
            ("azure-eventhub", m)
        }
        "kafkatrigger" => {
            let mut m = json!({
                "bootstrapServers": b.required("brokerList")?,
                "topic": b.required("topic")?,
                "lagThreshold": "10",
            });
            if let Some(group) = b.optional("consumerGroup")? {
                m["consumerGroup"] = group.into();
            }
            ("kafka", m)
        }
        _ => return Ok(None),
    };
    Ok(Some(json!({ "type": kind, "metadata": metadata })))
}

/// A trigger binding's properties, resolved against the app settings.
struct Props<'a> {
    binding: &'a Binding,
    settings: &'a AppSettings,
    function: &'a str,
}

impl Props<'_> {
    fn optional(&self, key: &str) -> Result<Option<String>, String> {
        let Some(raw) = self.binding.str_property(key) else {
            return Ok(None);
        };
        let resolved = self.settings.resolve(raw).map_err(|e| {
            format!(
                "function {}: {} of its {}: {e}",
                self.function, key, self.binding.type_name
            )
        })?;
        Ok(Some(resolved.into_owned()).filter(|s| !s.is_empty()))
    }

    fn required(&self, key: &str) -> Result<String, String> {
        self.optional(key)?.ok_or_else(|| {
            format!(
                "function {}: its {} has no \"{key}\", which the KEDA scaler needs",
                self.function, self.binding.type_name
            )
        })
    }

    /// The environment variable holding the connection named by `key`
    /// (default `default`): the setting itself when the app has it, else
    /// `AzureWebJobs` + name when the app has that (the host looks there
    /// too), else the name as written (it may come from the environment).
    fn connection(&self, key: &str, default: &str) -> Result<String, String> {
        let name = match self.binding.str_property(key).filter(|s| !s.is_empty()) {
            Some(n) => n.trim_matches('%').to_string(),
            None if default.is_empty() => {
                return Err(format!(
                    "function {}: its {} has no \"{key}\" naming the app setting with the connection string",
                    self.function, self.binding.type_name
                ));
            }
            None => default.to_string(),
        };
        let prefixed = format!("AzureWebJobs{name}");
        if self.settings.get(&name).is_none() && self.settings.get(&prefixed).is_some() {
            return Ok(prefixed);
        }
        Ok(name)
    }
}

/// The names of `metadata`'s keys (for tests and notes).
#[cfg(test)]
fn keys(metadata: &serde_json::Map<String, Value>) -> Vec<&str> {
    metadata.keys().map(String::as_str).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn function(bindings: Value) -> Function {
        let dir = tempfile::tempdir().expect("temp dir");
        let f = dir.path().join("F");
        std::fs::create_dir(&f).expect("mkdir");
        std::fs::write(dir.path().join("host.json"), r#"{"version":"2.0"}"#).expect("host");
        let doc = json!({ "bindings": bindings });
        std::fs::write(f.join("function.json"), doc.to_string()).expect("function.json");
        std::fs::write(f.join("run.sh"), "").expect("script");
        let app = fnhost_core::FunctionApp::loader(dir.path())
            .with_environment(false)
            .load()
            .expect("loads");
        app.functions()[0].clone()
    }

    fn settings() -> AppSettings {
        let mut s = AppSettings::new();
        s.set("QUEUE", "Orders");
        s.set("AzureWebJobsMyStorage", "UseDevelopmentStorage=true");
        s
    }

    /// The KEDA trigger of a function whose one binding is `binding`.
    fn scaler(binding: Value) -> Value {
        let f = function(json!([binding]));
        keda_trigger(&f, &settings())
            .expect("maps")
            .expect("scaler")
    }

    #[test]
    fn queue_blob_and_rabbitmq_metadata() {
        let t = scaler(
            json!({"type": "queueTrigger", "name": "m", "direction": "in",
            "queueName": "%QUEUE%", "connection": "MyStorage"}),
        );
        assert_eq!(t["type"], "azure-queue");
        assert_eq!(t["metadata"]["queueName"], "orders");
        assert_eq!(t["metadata"]["connectionFromEnv"], "AzureWebJobsMyStorage");

        let t = scaler(
            json!({"type": "blobTrigger", "name": "b", "direction": "in",
            "path": "uploads/in/{name}.csv"}),
        );
        assert_eq!(t["type"], "azure-blob");
        let m = t["metadata"].as_object().expect("object");
        assert_eq!(
            keys(m),
            [
                "blobContainerName",
                "blobCount",
                "connectionFromEnv",
                "blobPrefix"
            ]
        );
        assert_eq!(m["blobContainerName"], "uploads");
        assert_eq!(m["blobPrefix"], "in/");
        assert_eq!(m["connectionFromEnv"], "AzureWebJobsStorage");

        let t = scaler(
            json!({"type": "rabbitMQTrigger", "name": "r", "direction": "in",
            "queueName": "jobs", "connectionStringSetting": "RabbitConn"}),
        );
        assert_eq!(t["type"], "rabbitmq");
        assert_eq!(t["metadata"]["hostFromEnv"], "RabbitConn");
        assert_eq!(t["metadata"]["mode"], "QueueLength");
    }

    #[test]
    fn missing_properties_are_named() {
        let r = function(
            json!([{"type": "rabbitMQTrigger", "name": "r", "direction": "in",
            "queueName": "jobs"}]),
        );
        let e = keda_trigger(&r, &settings()).expect_err("no connection");
        assert!(
            e.contains("function F") && e.contains("connectionStringSetting"),
            "{e}"
        );
        let c = function(json!([{"type": "cosmosDBTrigger", "name": "c", "direction": "in"}]));
        assert_eq!(keda_trigger(&c, &settings()), Ok(None));
    }
}
