//! The values that flow through the pipeline: invocations, binding data,
//! results and errors.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Map, Value};

use super::http::{HttpRequest, HttpResponse};

/// A unique invocation id, shown as a UUID.
///
/// Ids are a random 64-bit prefix chosen once per process and a counter, so
/// making one costs an atomic increment, not a system call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InvocationId(u128);

impl InvocationId {
    /// A new id, unique within this process and very likely beyond it.
    pub fn new() -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        static PREFIX: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        let prefix = *PREFIX.get_or_init(process_seed);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        InvocationId(((prefix as u128) << 64) | n as u128)
    }

    /// The id as a number.
    pub fn as_u128(self) -> u128 {
        self.0
    }
}

impl Default for InvocationId {
    fn default() -> Self {
        Self::new()
    }
}

impl From<u128> for InvocationId {
    fn from(value: u128) -> Self {
        InvocationId(value)
    }
}

fn process_seed() -> u64 {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    // RandomState is seeded from the operating system's random source.
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    h.finish()
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
impl fmt::Display for InvocationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        write!(
            f,
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            (v >> 96) as u32,
            (v >> 80) as u16,
            (v >> 64) as u16,
            (v >> 48) as u16,
            v & 0xffff_ffff_ffff
        )
    }
}

/// The value of a binding: JSON, bytes, or an HTTP request or response kept
/// typed so that native HTTP functions never go through JSON.
#[derive(Debug, Clone, PartialEq)]
pub enum BindingData {
    /// Any JSON value.
    Json(Value),
    /// An HTTP request (an `httpTrigger` value).
    HttpRequest(Box<HttpRequest>),
    /// An HTTP response (an `http` output value).
    HttpResponse(Box<HttpResponse>),
    /// Bytes: a language worker's `bytes` value that is not UTF-8 text, a
    /// custom handler's output decoded from base64 as Azure's host does, a
    /// blob's content. As JSON they are base64 text.
    Bytes(Vec<u8>),
}

impl BindingData {
    /// The value in the shape the Azure protocol uses.
    pub fn to_json(&self) -> Value {
        match self {
            BindingData::Json(v) => v.clone(),
            BindingData::HttpRequest(r) => r.to_json(),
            BindingData::HttpResponse(r) => r.to_json(),
            BindingData::Bytes(b) => {
                use base64::Engine as _;
                Value::String(base64::engine::general_purpose::STANDARD.encode(b))
            }
        }
    }

    /// The value as JSON, moved out where it already is JSON.
    pub fn into_json(self) -> Value {
        match self {
            BindingData::Json(v) => v,
            other => other.to_json(),
        }
    }

    /// The JSON value, if this is JSON.
    pub fn as_json(&self) -> Option<&Value> {
        match self {
            BindingData::Json(v) => Some(v),
            _ => None,
        }
    }

    /// The HTTP request, if this is one.
    pub fn as_http_request(&self) -> Option<&HttpRequest> {
        match self {
            BindingData::HttpRequest(r) => Some(r),
            _ => None,
        }
    }
}

impl From<Value> for BindingData {
    fn from(value: Value) -> Self {
        BindingData::Json(value)
    }
}

impl From<HttpRequest> for BindingData {
    fn from(value: HttpRequest) -> Self {
        BindingData::HttpRequest(Box::new(value))
    }
}

impl From<HttpResponse> for BindingData {
    fn from(value: HttpResponse) -> Self {
        BindingData::HttpResponse(Box::new(value))
    }
}

/// One call of one function.
#[derive(Debug, Clone, PartialEq)]
pub struct Invocation {
    /// Its id.
    pub id: InvocationId,
    /// The trigger's value.
    pub trigger: BindingData,
    /// The values of other input bindings, by binding name.
    pub inputs: Map<String, Value>,
    /// Trigger metadata (for example route values, a blob's name).
    pub metadata: Map<String, Value>,
    /// How many times this invocation was retried (0 on the first attempt);
    /// the pipeline sets it.
    pub retry_count: u32,
    /// The most retries the policy allows (`None`: no policy or no limit);
    /// the pipeline sets it.
    pub max_retry_count: Option<u32>,
}

impl Invocation {
    /// An invocation with this trigger value, a new id and nothing else.
    pub fn new(trigger: impl Into<BindingData>) -> Self {
        Invocation {
            id: InvocationId::new(),
            trigger: trigger.into(),
            inputs: Map::new(),
            metadata: Map::new(),
            retry_count: 0,
            max_retry_count: None,
        }
    }

    /// Adds a metadata entry.
    pub fn with_metadata(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// Adds an input binding value.
    pub fn with_input(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.inputs.insert(name.into(), value.into());
        self
    }
}

/// What an invocation produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InvocationResult {
    /// Output binding values, by binding name.
    pub outputs: Vec<(String, BindingData)>,
    /// The value of the `$return` binding.
    pub return_value: Option<BindingData>,
    /// Log lines written by the function.
    pub logs: Vec<String>,
}

impl InvocationResult {
    /// Nothing: no outputs, no return value, no logs.
    pub fn new() -> Self {
        Self::default()
    }

    /// A result whose `$return` is `value`.
    pub fn returning(value: impl Into<BindingData>) -> Self {
        InvocationResult {
            return_value: Some(value.into()),
            ..Self::default()
        }
    }

    /// Sets an output binding value (replacing one of the same name).
    pub fn with_output(mut self, name: impl Into<String>, value: impl Into<BindingData>) -> Self {
        self.set_output(name, value);
        self
    }

    /// Sets an output binding value (replacing one of the same name).
    pub fn set_output(&mut self, name: impl Into<String>, value: impl Into<BindingData>) {
        let name = name.into();
        let value = value.into();
        match self
            .outputs
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(&name))
        {
            Some(slot) => slot.1 = value,
            None => self.outputs.push((name, value)),
        }
    }

    /// Adds a log line.
    pub fn with_log(mut self, line: impl Into<String>) -> Self {
        self.logs.push(line.into());
        self
    }

    /// An output by binding name, ignoring case; `$return` gives the return
    /// value.
    pub fn output(&self, name: &str) -> Option<&BindingData> {
        if name == "$return" {
            return self.return_value.as_ref();
        }
        self.outputs
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// The result as JSON: `{"Outputs": {...}, "Logs": [...], "ReturnValue": ...}`.
    pub fn to_json(&self) -> Value {
        let outputs: Map<String, Value> = self
            .outputs
            .iter()
            .map(|(k, v)| (k.clone(), v.to_json()))
            .collect();
        serde_json::json!({
            "Outputs": outputs,
            "Logs": self.logs,
            "ReturnValue": self.return_value.as_ref().map(BindingData::to_json),
        })
    }
}

/// How an executor failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutorError {
    /// What went wrong, for the caller and the logs.
    pub message: String,
    /// Whether the function never ran (the executor was not available), as
    /// opposed to running and failing.
    pub unavailable: bool,
    /// Log lines written before the failure.
    pub logs: Vec<String>,
}

impl ExecutorError {
    /// The function ran and failed.
    pub fn failed(message: impl Into<String>) -> Self {
        ExecutorError {
            message: message.into(),
            unavailable: false,
            logs: Vec::new(),
        }
    }

    /// The executor could not run the function at all.
    pub fn unavailable(message: impl Into<String>) -> Self {
        ExecutorError {
            message: message.into(),
            unavailable: true,
            logs: Vec::new(),
        }
    }

    /// Adds log lines written before the failure.
    pub fn with_logs(mut self, logs: Vec<String>) -> Self {
        self.logs = logs;
        self
    }
}

impl fmt::Display for ExecutorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ExecutorError {}

impl From<String> for ExecutorError {
    fn from(message: String) -> Self {
        ExecutorError::failed(message)
    }
}

impl From<&str> for ExecutorError {
    fn from(message: &str) -> Self {
        ExecutorError::failed(message)
    }
}

/// Why an invocation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvokeError {
    /// The app has no function of that name.
    #[error("the app has no function named '{function}'")]
    NotFound {
        /// The name asked for.
        function: String,
    },
    /// No executor runs this function.
    #[error(
        "no executor runs '{function}': register a native function of that name, configure a custom handler in host.json, or give the function a script"
    )]
    NoExecutor {
        /// The function.
        function: String,
    },
    /// The function ran longer than its timeout and was cancelled.
    #[error(
        "'{function}' timed out after {after:?} (functionTimeout in host.json) and was cancelled"
    )]
    Timeout {
        /// The function.
        function: String,
        /// The timeout.
        after: Duration,
    },
    /// A native function panicked.
    #[error("'{function}' panicked: {message}")]
    Panicked {
        /// The function.
        function: String,
        /// The panic message.
        message: String,
    },
    /// The function failed.
    #[error("'{function}' failed: {}", error.message)]
    Failed {
        /// The function.
        function: String,
        /// What the executor said.
        error: ExecutorError,
    },
    /// The executor could not run the function.
    #[error("'{function}' could not run: {}", error.message)]
    Unavailable {
        /// The function.
        function: String,
        /// What the executor said.
        error: ExecutorError,
    },
}

impl InvokeError {
    /// The function the error is about.
    pub fn function(&self) -> &str {
        match self {
            InvokeError::NotFound { function }
            | InvokeError::NoExecutor { function }
            | InvokeError::Timeout { function, .. }
            | InvokeError::Panicked { function, .. }
            | InvokeError::Failed { function, .. }
            | InvokeError::Unavailable { function, .. } => function,
        }
    }

    /// Whether a retry policy applies: the function ran and failed, timed
    /// out or panicked.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            InvokeError::Timeout { .. } | InvokeError::Panicked { .. } | InvokeError::Failed { .. }
        )
    }

    /// Log lines the function wrote before it failed.
    pub fn logs(&self) -> &[String] {
        match self {
            InvokeError::Failed { error, .. } | InvokeError::Unavailable { error, .. } => {
                &error.logs
            }
            _ => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_look_like_uuids() {
        let a = InvocationId::new();
        let b = InvocationId::new();
        assert_ne!(a, b);
        let s = a.to_string();
        assert_eq!(s.len(), 36);
        assert_eq!(s.matches('-').count(), 4);
    }

    #[test]
    fn outputs_are_found_ignoring_case_and_return_by_name() {
        let r = InvocationResult::returning(serde_json::json!(1))
            .with_output("Res", serde_json::json!({"body": "x"}));
        assert!(r.output("res").is_some());
        assert_eq!(
            r.output("$return"),
            Some(&BindingData::Json(serde_json::json!(1)))
        );
        assert_eq!(r.to_json()["Outputs"]["Res"]["body"], "x");
    }
}
