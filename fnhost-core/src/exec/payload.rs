//! The `{Data, Metadata}` request and `{Outputs, Logs, ReturnValue}`
//! response of the custom handler protocol, shared by the custom handler and
//! the one-shot process executors.

use std::fmt::Write as _;

use serde_json::{Map, Value};

use crate::invoke::{BindingData, FunctionInfo, Invocation, InvocationResult};

/// The app setting that picks the [`PayloadShape`] of a custom handler's
/// non-HTTP invocations: `azure` (the default) or `plain`.
pub const PAYLOAD_SHAPE_SETTING: &str = "FNHOST_CUSTOM_HANDLER_PAYLOAD";

/// How the values of a non-HTTP invocation travel to a custom handler, and
/// how its outputs come back.
///
/// Azure's host runs every value of `Data` and `Metadata` through
/// Json.NET: an object stays an object, anything else becomes its JSON text
/// (so a queue message `hello` arrives as `"\"hello\""` and `DequeueCount`
/// as `"1"`); and an output string that is valid base64 is written as the
/// bytes it decodes to, unless its binding says `dataType: binary`.
/// Handlers written for Azure depend on this, so it is the default; HTTP
/// invocations are not affected (their shapes are the same either way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadShape {
    /// Azure's host's shapes and output conversion (the default).
    Azure,
    /// Values as they are, outputs as they come (`FNHOST_CUSTOM_HANDLER_PAYLOAD=plain`).
    Plain,
}

impl PayloadShape {
    /// The shape the function's app settings ask for.
    pub fn of(info: &FunctionInfo) -> PayloadShape {
        match info.settings.get(PAYLOAD_SHAPE_SETTING) {
            Some(v) if v.trim().eq_ignore_ascii_case("plain") => PayloadShape::Plain,
            _ => PayloadShape::Azure,
        }
    }

    /// A value as this shape carries it.
    fn value(self, value: Value) -> Value {
        match (self, value) {
            (PayloadShape::Azure, v @ Value::Object(_)) => v,
            (PayloadShape::Azure, v) => Value::String(v.to_string()),
            (PayloadShape::Plain, v) => v,
        }
    }
}

/// The invocation as the protocol's request body:
///
/// ```json
/// {"Data": {"<trigger>": ..., "<input>": ...},
///  "Metadata": {..., "sys": {...}, "RetryContext": {...}}}
/// ```
///
/// An HTTP trigger's metadata is derived from the request
/// ([`HttpRequest::trigger_metadata`](crate::invoke::http::HttpRequest::trigger_metadata)).
/// Metadata leaves out HTTP request values and keys ending in "trigger"
/// (ignoring case), as the Azure host does. `RetryContext` is there when the
/// function has a retry policy.
///
/// With [`PayloadShape::Azure`] the values of a non-HTTP invocation are
/// shaped as Azure's host shapes them.
pub(crate) fn request_body(
    info: &FunctionInfo,
    invocation: &Invocation,
    shape: PayloadShape,
) -> Vec<u8> {
    let shape = match invocation.trigger {
        BindingData::HttpRequest(_) => PayloadShape::Plain,
        _ => shape,
    };
    let mut data = Map::with_capacity(1 + invocation.inputs.len());
    let trigger_name = if info.trigger_name.is_empty() {
        "input"
    } else {
        info.trigger_name.as_str()
    };
    // Bytes travel as base64 text in either shape (the host's byte[]).
    let trigger = match &invocation.trigger {
        BindingData::Bytes(_) => invocation.trigger.to_json(),
        other => shape.value(other.to_json()),
    };
    data.insert(trigger_name.to_owned(), trigger);
    for (name, value) in &invocation.inputs {
        data.insert(name.clone(), shape.value(value.clone()));
    }

    // An HTTP trigger's metadata (route values, Query, Headers) comes from
    // the request itself; what the caller set overrides it.
    let mut metadata = match &invocation.trigger {
        BindingData::HttpRequest(r) => r.trigger_metadata(),
        _ => Map::with_capacity(invocation.metadata.len() + 2),
    };
    for (key, value) in &invocation.metadata {
        if ends_with_ignore_case(key, "trigger")
            || key.eq_ignore_ascii_case(trigger_name)
            || looks_like_http_request(value)
            || (value.is_null() && shape == PayloadShape::Azure)
        {
            continue;
        }
        metadata.insert(key.clone(), shape.value(value.clone()));
    }
    let mut sys = Map::with_capacity(3);
    sys.insert("MethodName".into(), Value::String(info.name().to_owned()));
    sys.insert("UtcNow".into(), Value::String(utc_now()));
    sys.insert("RandGuid".into(), Value::String(random_guid()));
    metadata.insert("sys".into(), Value::Object(sys));
    if let Some(policy) = &info.retry {
        let max = invocation
            .max_retry_count
            .or(policy.max_retry_count)
            .map_or(Value::from(-1), Value::from);
        let mut retry = Map::with_capacity(3);
        retry.insert("RetryCount".into(), Value::from(invocation.retry_count));
        retry.insert("MaxRetryCount".into(), max);
        retry.insert("Exception".into(), Value::Null);
        metadata.insert("RetryContext".into(), Value::Object(retry));
    }

    let mut body = Map::with_capacity(2);
    body.insert("Data".into(), Value::Object(data));
    body.insert("Metadata".into(), Value::Object(metadata));
    // Serialising a `Value` built from strings and numbers cannot fail.
    serde_json::to_vec(&Value::Object(body)).unwrap_or_default()
}

/// Azure's host's output conversion ([`PayloadShape::Azure`]): the value
/// of each output binding of function.json other than `http` (and of
/// `$return`, when function.json has that binding) that is a string of
/// valid base64 becomes the bytes it decodes to, unless the binding says
/// `dataType: binary`.
pub(crate) fn convert_outputs(info: &FunctionInfo, result: &mut InvocationResult) {
    use base64::Engine as _;
    let decodes = |name: &str| {
        info.function.config.bindings.iter().any(|b| {
            b.direction != crate::binding::Direction::In
                && b.name.eq_ignore_ascii_case(name)
                && !b.type_name.eq_ignore_ascii_case("http")
                && b.data_type != Some(crate::binding::DataType::Binary)
        })
    };
    let convert = |value: &mut BindingData| {
        if let BindingData::Json(Value::String(text)) = value {
            // .NET's Convert.FromBase64String skips white space.
            let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
            if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(compact) {
                *value = BindingData::Bytes(bytes);
            }
        }
    };
    for (name, value) in &mut result.outputs {
        if decodes(name) {
            convert(value);
        }
    }
    if decodes("$return")
        && let Some(value) = &mut result.return_value
    {
        convert(value);
    }
}

/// Reads a `{Outputs, Logs, ReturnValue}` body (keys compared ignoring
/// case). Outputs stay JSON, `http` ones included: the HTTP front reads them
/// with [`crate::invoke::http::HttpResponse::from_json`]. An output named
/// `$return` is the return value. Empty or blank text is an empty result.
pub(crate) fn parse_result(text: &[u8]) -> Result<InvocationResult, String> {
    if text.iter().all(u8::is_ascii_whitespace) {
        return Ok(InvocationResult::new());
    }
    let value: Value = serde_json::from_slice(text).map_err(|e| {
        format!(
            "the response is not valid JSON ({e}); it began with {}",
            snippet(text)
        )
    })?;
    let Value::Object(map) = value else {
        return Err(format!(
            "the response must be a JSON object {{\"Outputs\": ..., \"Logs\": ..., \"ReturnValue\": ...}}, not {}",
            snippet(text)
        ));
    };
    let mut result = InvocationResult::new();
    for (key, value) in map {
        if key.eq_ignore_ascii_case("Outputs") {
            match value {
                Value::Null => {}
                Value::Object(outputs) => {
                    for (name, value) in outputs {
                        if name == "$return" {
                            result.return_value = Some(BindingData::Json(value));
                        } else {
                            result.outputs.push((name, BindingData::Json(value)));
                        }
                    }
                }
                other => {
                    return Err(format!(
                        "\"Outputs\" must be an object of output binding values, not {}",
                        short(&other)
                    ));
                }
            }
        } else if key.eq_ignore_ascii_case("Logs") {
            match value {
                Value::Null => {}
                Value::Array(lines) => result.logs.extend(lines.into_iter().map(|l| match l {
                    Value::String(s) => s,
                    other => other.to_string(),
                })),
                Value::String(s) => result.logs.push(s),
                other => {
                    return Err(format!(
                        "\"Logs\" must be an array of strings, not {}",
                        short(&other)
                    ));
                }
            }
        } else if key.eq_ignore_ascii_case("ReturnValue") && !value.is_null() {
            result.return_value = Some(BindingData::Json(value));
        }
    }
    Ok(result)
}

/// The first bytes of `text`, quoted, for error messages.
pub(crate) fn snippet(text: &[u8]) -> String {
    const MAX: usize = 200;
    let shown = String::from_utf8_lossy(&text[..text.len().min(MAX)]);
    let mut out = format!("{:?}", shown.as_ref());
    if text.len() > MAX {
        let _ = write!(out, " (and {} more bytes)", text.len() - MAX);
    }
    out
}

fn short(value: &Value) -> String {
    snippet(value.to_string().as_bytes())
}

fn ends_with_ignore_case(s: &str, suffix: &str) -> bool {
    s.len() >= suffix.len()
        && s.as_bytes()[s.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
}

/// Whether a metadata value is an HTTP request in the protocol's shape.
fn looks_like_http_request(value: &Value) -> bool {
    value.as_object().is_some_and(|o| {
        o.contains_key("Method") && o.contains_key("Url") && o.contains_key("Headers")
    })
}

fn utc_now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// A random version 4 GUID (`xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx`), from
/// the standard library's OS-seeded hasher: `{rand-guid}` and
/// `sys.RandGuid`.
pub fn random_guid() -> String {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let mut bytes = [0u8; 16];
    for (i, chunk) in bytes.chunks_mut(8).enumerate() {
        let mut h = RandomState::new().build_hasher();
        h.write_usize(i);
        chunk.copy_from_slice(&h.finish().to_le_bytes());
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let mut s = String::with_capacity(36);
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn results_are_read_ignoring_case() {
        let r = parse_result(
            br#"{"outputs": {"res": {"body": "x"}, "$return": 1}, "LOGS": ["a", 2], "returnvalue": null}"#,
        )
        .unwrap();
        assert_eq!(r.logs, vec!["a".to_owned(), "2".to_owned()]);
        assert_eq!(r.output("res").unwrap().to_json(), json!({"body": "x"}));
        assert_eq!(r.return_value, Some(BindingData::Json(json!(1))));
        assert_eq!(parse_result(b"  \n").unwrap(), InvocationResult::new());
        assert!(
            parse_result(b"hello")
                .unwrap_err()
                .contains("not valid JSON")
        );
        assert!(parse_result(b"[1]").unwrap_err().contains("JSON object"));
        assert!(
            parse_result(br#"{"Outputs": 3}"#)
                .unwrap_err()
                .contains("Outputs")
        );
    }

    #[test]
    fn guids_look_like_guids() {
        let g = random_guid();
        assert_eq!(g.len(), 36);
        assert_eq!(g.as_bytes()[14], b'4');
        assert_ne!(g, random_guid());
    }
}
