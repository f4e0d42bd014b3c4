//! Bindings for every executor: the `queue`, `blob` and `rabbitMQ` output
//! bindings and the `blob` input binding, as a [`Middleware`] of the
//! invoke pipeline.
//!
//! Before the executor runs, each `blob` input binding's path is resolved
//! against the trigger data and the blob is read into
//! [`Invocation::inputs`]. After a successful run, each `queue` and `blob`
//! output binding's value (from [`InvocationResult::outputs`], or the
//! return value for `$return`) is written where the binding says. A write
//! that fails fails the invocation, as on Azure, so a queue-triggered
//! function is retried.

mod expr;

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine as _;
use fnhost_core::binding::{Binding, BindingKind, DataType, Direction};
use fnhost_core::invoke::{
    BindingData, BoxFuture, ExecutorError, FunctionInfo, Invocation, InvocationResult, InvokeError,
    Middleware, Next,
};
use serde_json::{Map, Value};

pub use expr::BindingContext;

use crate::queue::{MessageEncoding, QueuesOptions, connection_string, encode_message};
use crate::storage::{BlobService, PutOptions, QueueService, StorageError};

/// The [`Middleware`] that runs the `queue`, `blob` and `rabbitMQ`
/// bindings of every function, whatever its executor (native, custom
/// handler, language worker, process).
///
/// ```no_run
/// # fn demo(app: fnhost_core::FunctionApp) {
/// use std::sync::Arc;
/// let host = fnhost_core::Host::builder()
///     .with_default_executors()
///     .middleware(Arc::new(fnhost_triggers::StorageBindings::new()))
///     .build(app);
/// # }
/// ```
///
/// Functions without such bindings pass straight through.
#[derive(Default)]
pub struct StorageBindings {
    /// Clients by connection string, so connections are pooled.
    clients: Mutex<HashMap<String, Clients>>,
    /// RabbitMQ channels by URI, opened on first use.
    rabbit: tokio::sync::Mutex<HashMap<String, (lapin::Connection, lapin::Channel)>>,
}

#[derive(Clone)]
struct Clients {
    queues: Result<QueueService, StorageError>,
    blobs: Result<BlobService, StorageError>,
}

impl std::fmt::Debug for StorageBindings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageBindings").finish_non_exhaustive()
    }
}

/// Whether a binding is one this middleware runs.
fn is_storage_binding(b: &Binding) -> bool {
    matches!(
        (&b.kind, b.direction),
        (BindingKind::Blob(_), _) | (BindingKind::Queue(_), Direction::Out)
    ) || crate::rabbitmq::is_output(b)
}

impl StorageBindings {
    /// The middleware (no connection is made until a binding needs one).
    pub fn new() -> StorageBindings {
        StorageBindings::default()
    }

    fn clients(&self, connection: &str) -> Clients {
        let mut map = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(connection.to_owned())
            .or_insert_with(|| Clients {
                queues: QueueService::from_connection_string(connection),
                blobs: BlobService::from_connection_string(connection),
            })
            .clone()
    }

    async fn run(
        &self,
        function: &FunctionInfo,
        mut invocation: Invocation,
        next: Next<'_>,
    ) -> Result<InvocationResult, InvokeError> {
        let failed = |message: String, logs: Vec<String>| InvokeError::Failed {
            function: function.name().to_owned(),
            error: ExecutorError::failed(message).with_logs(logs),
        };
        let data = trigger_data(&invocation);
        let guid = fnhost_core::exec::random_guid();
        let now = chrono::Utc::now();
        let ctx = BindingContext {
            data: &data,
            settings: &function.settings,
            function: function.name(),
            now,
            guid,
        };
        let bindings: Vec<&Binding> = function
            .function
            .config
            .bindings
            .iter()
            .filter(|b| is_storage_binding(b))
            .collect();
        for b in bindings.iter().filter(|b| b.direction != Direction::Out) {
            let BindingKind::Blob(blob) = &b.kind else {
                continue;
            };
            let value = self
                .read_blob(
                    function,
                    b,
                    blob.path.as_deref(),
                    blob.connection.as_deref(),
                    &ctx,
                )
                .await
                .map_err(|e| failed(format!("its blob input '{}': {e}", b.name), Vec::new()))?;
            invocation.inputs.insert(b.name.clone(), value);
        }
        let result = next.run(invocation).await?;
        for b in bindings.iter().filter(|b| b.direction != Direction::In) {
            let value = if b.name == "$return" {
                result.return_value.as_ref()
            } else {
                result.output(&b.name)
            };
            let Some(value) = value else { continue };
            let written = match &b.kind {
                BindingKind::Queue(q) => {
                    self.write_queue(
                        function,
                        q.queue_name.as_deref(),
                        q.connection.as_deref(),
                        value,
                        &ctx,
                    )
                    .await
                }
                BindingKind::Blob(blob) => {
                    self.write_blob(
                        blob.path.as_deref(),
                        blob.connection.as_deref(),
                        function,
                        value,
                        &ctx,
                    )
                    .await
                }
                _ if crate::rabbitmq::is_output(b) => self.write_rabbit(function, b, value).await,
                _ => Ok(()),
            };
            if let Err(e) = written {
                return Err(failed(
                    format!(
                        "its {} output '{}' could not be written: {e}",
                        b.type_name, b.name
                    ),
                    result.logs.clone(),
                ));
            }
        }
        Ok(result)
    }

    async fn read_blob(
        &self,
        function: &FunctionInfo,
        binding: &Binding,
        path: Option<&str>,
        connection: Option<&str>,
        ctx: &BindingContext<'_>,
    ) -> Result<Value, String> {
        let (container, name) = blob_path(path, ctx)?;
        let blobs = self.blob_service(function, connection)?;
        match blobs
            .container(&container)
            .blob(&name)
            .get()
            .await
            .map_err(|e| e.to_string())?
        {
            // A missing blob is null, as on Azure.
            None => Ok(Value::Null),
            Some((bytes, _)) => Ok(blob_value(bytes.to_vec(), binding.data_type)),
        }
    }

    fn blob_service(
        &self,
        function: &FunctionInfo,
        connection: Option<&str>,
    ) -> Result<BlobService, String> {
        let (_, conn) = connection_string(&function.settings, connection)?;
        self.clients(&conn).blobs.map_err(|e| e.to_string())
    }

    async fn write_queue(
        &self,
        function: &FunctionInfo,
        queue_name: Option<&str>,
        connection: Option<&str>,
        value: &BindingData,
        ctx: &BindingContext<'_>,
    ) -> Result<(), String> {
        let raw = queue_name
            .filter(|q| !q.trim().is_empty())
            .ok_or("the binding has no queueName")?;
        let name = ctx.resolve(raw)?.trim().to_ascii_lowercase();
        if !crate::storage::is_valid_queue_name(&name) {
            return Err(format!(
                "the queue name '{name}' is not valid: use 3 to 63 lower-case letters, digits and single dashes"
            ));
        }
        let encoding = QueuesOptions::of(&function.host, &function.settings)?.message_encoding;
        let messages = queue_messages(value, encoding)?;
        if messages.is_empty() {
            return Ok(());
        }
        let (_, conn) = connection_string(&function.settings, connection)?;
        let queues = self.clients(&conn).queues.map_err(|e| e.to_string())?;
        let queue = queues.queue(&name);
        for text in &messages {
            match queue.put(text, None).await {
                Ok(_) => {}
                // The queue is created when it does not exist, as on Azure.
                Err(e) if e.status() == Some(404) => {
                    queue.create().await.map_err(|e| e.to_string())?;
                    queue.put(text, None).await.map_err(|e| e.to_string())?;
                }
                Err(e) => return Err(e.to_string()),
            }
        }
        // Listeners of this queue in this process poll at once.
        crate::queue::watcher(queue.endpoint(), queue.name()).notify_waiters();
        Ok(())
    }

    async fn write_blob(
        &self,
        path: Option<&str>,
        connection: Option<&str>,
        function: &FunctionInfo,
        value: &BindingData,
        ctx: &BindingContext<'_>,
    ) -> Result<(), String> {
        let Some(content) = blob_content(value)? else {
            return Ok(());
        };
        let (container, name) = blob_path(path, ctx)?;
        let blobs = self.blob_service(function, connection)?;
        let container = blobs.container(&container);
        let blob = container.blob(&name);
        match blob.put(content.clone(), PutOptions::default()).await {
            Ok(_) => Ok(()),
            // The container is created when it does not exist, as on Azure.
            Err(e) if e.code() == Some("ContainerNotFound") => {
                container.create().await.map_err(|e| e.to_string())?;
                blob.put(content, PutOptions::default())
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        }
    }
}

impl StorageBindings {
    /// Publishes an output value to a `rabbitMQ` binding's queue (through
    /// the default exchange), with publisher confirms; a broken channel is
    /// opened again once.
    async fn write_rabbit(
        &self,
        function: &FunctionInfo,
        binding: &Binding,
        value: &BindingData,
    ) -> Result<(), String> {
        let queue = crate::rabbitmq::queue_name(binding, &function.settings, &function.host)?;
        let uri = crate::rabbitmq::connection_uri(binding, &function.settings, &function.host)?;
        let messages = rabbit_messages(value)?;
        if messages.is_empty() {
            return Ok(());
        }
        let mut channels = self.rabbit.lock().await;
        for attempt in 0..2 {
            if !channels.contains_key(&uri) {
                let conn = lapin::Connection::connect(&uri, lapin::ConnectionProperties::default())
                    .await
                    .map_err(|e| format!("cannot connect to RabbitMQ: {e}"))?;
                let channel = conn
                    .create_channel()
                    .await
                    .map_err(|e| format!("cannot open a RabbitMQ channel: {e}"))?;
                channel
                    .confirm_select(lapin::options::ConfirmSelectOptions::default())
                    .await
                    .map_err(|e| format!("cannot turn publisher confirms on: {e}"))?;
                channels.insert(uri.clone(), (conn, channel));
            }
            let Some((_, channel)) = channels.get(&uri) else {
                continue;
            };
            let mut failed = None;
            for m in &messages {
                let published = async {
                    channel
                        .basic_publish(
                            "".into(),
                            queue.as_str().into(),
                            lapin::options::BasicPublishOptions::default(),
                            m,
                            lapin::BasicProperties::default().with_delivery_mode(2),
                        )
                        .await?
                        .await
                }
                .await;
                match published {
                    Ok(c) if !c.is_nack() => {}
                    Ok(_) => failed = Some("the broker refused the message".to_owned()),
                    Err(e) => failed = Some(e.to_string()),
                }
                if failed.is_some() {
                    break;
                }
            }
            match failed {
                None => return Ok(()),
                Some(e) if attempt == 1 => return Err(e),
                Some(_) => {
                    channels.remove(&uri);
                }
            }
        }
        Err("cannot publish to RabbitMQ".into())
    }
}

/// The bodies of a `rabbitMQ` output value: one per array element; text as
/// UTF-8, bytes as they are, other JSON as its text.
fn rabbit_messages(value: &BindingData) -> Result<Vec<Vec<u8>>, String> {
    let one = |v: &Value| -> Option<Vec<u8>> {
        match v {
            Value::Null => None,
            Value::String(s) => Some(s.clone().into_bytes()),
            other => Some(other.to_string().into_bytes()),
        }
    };
    Ok(match value {
        BindingData::Json(Value::Array(items)) => items.iter().filter_map(one).collect(),
        BindingData::Json(v) => one(v).into_iter().collect(),
        BindingData::Bytes(b) => vec![b.clone()],
        _ => return Err("an HTTP value cannot be published to RabbitMQ".into()),
    })
}

impl Middleware for StorageBindings {
    fn call<'a>(
        &'a self,
        function: &'a FunctionInfo,
        invocation: Invocation,
        next: Next<'a>,
    ) -> BoxFuture<'a, Result<InvocationResult, InvokeError>> {
        if !function
            .function
            .config
            .bindings
            .iter()
            .any(is_storage_binding)
        {
            return next.run(invocation);
        }
        Box::pin(self.run(function, invocation, next))
    }
}

/// What binding expressions see: a JSON body's (or an HTTP request's JSON
/// body's) properties, then the HTTP request's route values, `Query` and
/// `Headers`, then the invocation's metadata.
fn trigger_data(invocation: &Invocation) -> Map<String, Value> {
    let mut data = Map::new();
    match &invocation.trigger {
        BindingData::Json(Value::Object(props)) => data.extend(props.clone()),
        BindingData::HttpRequest(r) => {
            if let Ok(Value::Object(props)) = serde_json::from_slice::<Value>(&r.body) {
                data.extend(props);
            }
            data.extend(r.trigger_metadata());
        }
        _ => {}
    }
    data.extend(invocation.metadata.clone());
    data
}

/// `container/name...` resolved, split at its first `/`.
fn blob_path(path: Option<&str>, ctx: &BindingContext<'_>) -> Result<(String, String), String> {
    let raw = path
        .filter(|p| !p.trim().is_empty())
        .ok_or("the binding has no path (write \"path\": \"container/name\")")?;
    let resolved = ctx.resolve(raw)?;
    let resolved = resolved.trim().trim_start_matches('/');
    match resolved.split_once('/') {
        Some((c, n)) if !c.is_empty() && !n.is_empty() => Ok((c.to_owned(), n.to_owned())),
        _ => Err(format!(
            "the blob path '{resolved}' has no blob name: write container/name"
        )),
    }
}

/// A blob's content as an input value: its text when it is UTF-8 (and the
/// binding does not say `dataType: binary`), else base64.
pub(crate) fn blob_value(bytes: Vec<u8>, data_type: Option<DataType>) -> Value {
    let b64 = |b: &[u8]| Value::String(base64::engine::general_purpose::STANDARD.encode(b));
    if data_type == Some(DataType::Binary) {
        return b64(&bytes);
    }
    match String::from_utf8(bytes) {
        Ok(text) => Value::String(text),
        Err(e) => b64(e.as_bytes()),
    }
}

/// The bytes an output value writes to a blob: text as UTF-8, bytes as
/// they are, other JSON as its text; `None` for null.
fn blob_content(value: &BindingData) -> Result<Option<Vec<u8>>, String> {
    Ok(match value {
        BindingData::Json(Value::Null) => None,
        BindingData::Json(Value::String(s)) => Some(s.clone().into_bytes()),
        BindingData::Json(v) => Some(v.to_string().into_bytes()),
        BindingData::Bytes(b) => Some(b.clone()),
        _ => return Err("an HTTP value cannot be written to a blob".into()),
    })
}

/// The wire texts of an output value: one message per array element;
/// text as it is, other JSON as its text, bytes as they are; each encoded
/// as `extensions.queues.messageEncoding` says.
fn queue_messages(value: &BindingData, encoding: MessageEncoding) -> Result<Vec<String>, String> {
    let one = |v: &Value| -> Option<String> {
        match v {
            Value::Null => None,
            Value::String(s) => Some(encode_message(s, encoding)),
            other => Some(encode_message(&other.to_string(), encoding)),
        }
    };
    Ok(match value {
        BindingData::Json(Value::Array(items)) => items.iter().filter_map(one).collect(),
        BindingData::Json(v) => one(v).into_iter().collect(),
        BindingData::Bytes(b) => vec![match encoding {
            MessageEncoding::Base64 => base64::engine::general_purpose::STANDARD.encode(b),
            MessageEncoding::None => String::from_utf8(b.clone()).map_err(|_| {
                "the message is bytes that are not UTF-8 text, and extensions.queues.messageEncoding is none"
                    .to_owned()
            })?,
        }],
        _ => return Err("an HTTP value cannot be put on a queue".into()),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn messages_of_values() {
        let b64 = MessageEncoding::Base64;
        let none = MessageEncoding::None;
        assert_eq!(
            queue_messages(&BindingData::Json(json!(["a", {"x": 1}, null])), none).unwrap(),
            vec!["a".to_owned(), "{\"x\":1}".to_owned()]
        );
        assert_eq!(
            queue_messages(&BindingData::Json(json!("hi")), b64).unwrap(),
            vec!["aGk=".to_owned()]
        );
        assert_eq!(
            queue_messages(&BindingData::Bytes(vec![0xff]), b64).unwrap(),
            vec!["/w==".to_owned()]
        );
        assert!(queue_messages(&BindingData::Bytes(vec![0xff]), none).is_err());
        assert!(
            queue_messages(&BindingData::Json(Value::Null), none)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn blob_values() {
        assert_eq!(blob_value(b"hi".to_vec(), None), json!("hi"));
        assert_eq!(
            blob_value(b"hi".to_vec(), Some(DataType::Binary)),
            json!("aGk=")
        );
        assert_eq!(blob_value(vec![0xff], None), json!("/w=="));
        assert_eq!(
            blob_content(&BindingData::Json(json!({"a": 1}))).unwrap(),
            Some(b"{\"a\":1}".to_vec())
        );
        assert_eq!(blob_content(&BindingData::Json(Value::Null)).unwrap(), None);
    }
}
