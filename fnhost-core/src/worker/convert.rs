//! Between the pipeline's values and the protocol's `TypedData`, as Azure's
//! host converts them (what it puts in an `RpcHttp` depends on the worker's
//! capabilities).

use std::collections::HashMap;

use base64::Engine as _;
use serde_json::{Map, Value};

use super::proto::{self, typed_data::Data};
use crate::invoke::http::{HttpRequest, HttpResponse};
use crate::invoke::{BindingData, ExecutorError, FunctionInfo, Invocation, InvocationResult};

/// What the worker declared in its init response that changes what the
/// host sends.
#[derive(Debug, Clone, Default)]
pub(crate) struct Capabilities {
    /// `RawHttpBodyBytes`: the request body as bytes.
    pub raw_body_bytes: bool,
    /// `RpcHttpBodyOnly`: `body` only, no `rawBody`.
    pub body_only: bool,
    /// `UseNullableValueDictionaryForHttp`: the nullable maps instead of
    /// the plain ones.
    pub nullable_maps: bool,
    /// `IgnoreEmptyValuedRpcHttpHeaders`: headers with empty values left out.
    pub ignore_empty_headers: bool,
    /// `RpcHttpTriggerMetadataRemoved`: headers and query not repeated in
    /// the trigger metadata.
    pub http_metadata_removed: bool,
    /// `HandlesWorkerTerminateMessage`.
    pub terminate: bool,
    /// `HandlesInvocationCancelMessage`.
    pub cancel: bool,
}

impl Capabilities {
    pub(crate) fn from_map(map: &HashMap<String, String>) -> Self {
        let on = |name: &str| {
            map.iter()
                .any(|(k, v)| k.eq_ignore_ascii_case(name) && !v.eq_ignore_ascii_case("false"))
        };
        Capabilities {
            raw_body_bytes: on("RawHttpBodyBytes"),
            body_only: on("RpcHttpBodyOnly"),
            nullable_maps: on("UseNullableValueDictionaryForHttp"),
            ignore_empty_headers: on("IgnoreEmptyValuedRpcHttpHeaders"),
            http_metadata_removed: on("RpcHttpTriggerMetadataRemoved"),
            terminate: on("HandlesWorkerTerminateMessage"),
            cancel: on("HandlesInvocationCancelMessage"),
        }
    }
}

fn typed(data: Data) -> proto::TypedData {
    proto::TypedData { data: Some(data) }
}

/// A JSON value as typed data: strings as `string`, numbers that fit as
/// `int`/`double`, the rest as `json` text.
pub(crate) fn json_to_typed(value: &Value) -> proto::TypedData {
    typed(match value {
        Value::String(s) => Data::String(s.clone()),
        other => Data::Json(other.to_string()),
    })
}

/// The invocation request for `invocation` of `info`, whose worker-side id
/// is `function_id`.
pub(crate) fn invocation_request(
    info: &FunctionInfo,
    function_id: &str,
    invocation: &Invocation,
    caps: &Capabilities,
) -> proto::InvocationRequest {
    let mut input_data = Vec::with_capacity(1 + invocation.inputs.len());
    let mut trigger_metadata: HashMap<String, proto::TypedData> = HashMap::new();
    let trigger = match &invocation.trigger {
        BindingData::HttpRequest(req) => {
            for (k, v) in &req.params {
                trigger_metadata.insert(k.clone(), typed(Data::String(v.clone())));
            }
            if !caps.http_metadata_removed {
                let headers: Map<String, Value> = req
                    .headers
                    .iter()
                    .map(|(k, v)| (k.to_ascii_lowercase(), Value::String(v.clone())))
                    .collect();
                let query: Map<String, Value> = req
                    .query
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect();
                trigger_metadata.insert(
                    "Headers".into(),
                    typed(Data::Json(Value::Object(headers).to_string())),
                );
                trigger_metadata.insert(
                    "Query".into(),
                    typed(Data::Json(Value::Object(query).to_string())),
                );
            }
            typed(Data::Http(Box::new(rpc_http_request(req, caps))))
        }
        BindingData::HttpResponse(resp) => typed(Data::Http(Box::new(rpc_http_response(resp)))),
        BindingData::Json(value) => json_to_typed(value),
        BindingData::Bytes(b) => typed(Data::Bytes(b.clone())),
    };
    input_data.push(proto::ParameterBinding {
        name: info.trigger_name.clone(),
        rpc_data: Some(proto::parameter_binding::RpcData::Data(trigger)),
    });
    for (name, value) in &invocation.inputs {
        input_data.push(proto::ParameterBinding {
            name: name.clone(),
            rpc_data: Some(proto::parameter_binding::RpcData::Data(json_to_typed(
                value,
            ))),
        });
    }
    for (k, v) in &invocation.metadata {
        trigger_metadata
            .entry(k.clone())
            .or_insert_with(|| json_to_typed(v));
    }
    let sys = serde_json::json!({
        "MethodName": info.name(),
        "UtcNow": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "RandGuid": crate::invoke::InvocationId::new().to_string(),
    });
    trigger_metadata.insert("sys".into(), typed(Data::Json(sys.to_string())));
    proto::InvocationRequest {
        invocation_id: invocation.id.to_string(),
        function_id: function_id.to_owned(),
        input_data,
        trigger_metadata,
        trace_context: Some(proto::RpcTraceContext::default()),
        retry_context: Some(proto::RetryContext {
            retry_count: invocation.retry_count.min(i32::MAX as u32) as i32,
            max_retry_count: invocation
                .max_retry_count
                .map(|n| n.min(i32::MAX as u32) as i32)
                .unwrap_or(0),
            exception: None,
        }),
    }
}

/// Puts `value` under `key`, after the value already there and `separator`
/// when the key repeats.
fn insert_joined(map: &mut HashMap<String, String>, key: String, value: &str, separator: &str) {
    map.entry(key)
        .and_modify(|old| {
            old.push_str(separator);
            old.push_str(value);
        })
        .or_insert_with(|| value.to_owned());
}

fn rpc_http_request(req: &HttpRequest, caps: &Capabilities) -> proto::RpcHttp {
    let mut headers: HashMap<String, String> = HashMap::with_capacity(req.headers.len());
    for (k, v) in &req.headers {
        if caps.ignore_empty_headers && v.is_empty() {
            continue;
        }
        // Repeated headers are joined as the host's header dictionary does.
        insert_joined(&mut headers, k.to_ascii_lowercase(), v, ", ");
    }
    let mut query: HashMap<String, String> = HashMap::with_capacity(req.query.len());
    for (k, v) in &req.query {
        insert_joined(&mut query, k.clone(), v, ",");
    }
    let params: HashMap<String, String> = req.params.iter().cloned().collect();
    let body = if req.body.is_empty() && !caps.raw_body_bytes {
        None
    } else if caps.raw_body_bytes {
        Some(typed(Data::Bytes(req.body.clone())))
    } else {
        Some(typed(Data::String(
            String::from_utf8_lossy(&req.body).into_owned(),
        )))
    };
    let raw_body = if caps.body_only {
        None
    } else {
        Some(typed(Data::String(
            String::from_utf8_lossy(&req.body).into_owned(),
        )))
    };
    let nullable = |m: &HashMap<String, String>| -> HashMap<String, proto::NullableString> {
        m.iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    proto::NullableString {
                        string: Some(proto::nullable_string::String::Value(v.clone())),
                    },
                )
            })
            .collect()
    };
    let mut http = proto::RpcHttp {
        method: req.method.as_str().to_owned(),
        url: req.url.clone(),
        body: body.map(Box::new),
        raw_body: raw_body.map(Box::new),
        ..Default::default()
    };
    if caps.nullable_maps {
        http.nullable_headers = nullable(&headers);
        http.nullable_query = nullable(&query);
        http.nullable_params = nullable(&params);
    } else {
        http.headers = headers;
        http.query = query;
        http.params = params;
    }
    http
}

fn rpc_http_response(resp: &HttpResponse) -> proto::RpcHttp {
    proto::RpcHttp {
        status_code: resp.status.to_string(),
        headers: resp.headers.iter().cloned().collect(),
        body: Some(Box::new(typed(Data::Bytes(resp.body.clone())))),
        ..Default::default()
    }
}

/// The result of an invocation response (`Err` when the function failed).
pub(crate) fn invocation_result(
    response: proto::InvocationResponse,
    logs: Vec<String>,
) -> Result<InvocationResult, ExecutorError> {
    let status = response
        .result
        .as_ref()
        .map(|r| r.status())
        .unwrap_or(proto::status_result::Status::Failure);
    if status != proto::status_result::Status::Success {
        let (message, stack) = response
            .result
            .and_then(|r| r.exception)
            .map(|e| (e.message, e.stack_trace))
            .unwrap_or_default();
        let mut logs = logs;
        if !stack.is_empty() && stack != message {
            logs.push(format!("[Error] {}", stack.trim_end()));
        }
        let message = match (status, message.is_empty()) {
            (proto::status_result::Status::Cancelled, _) => "the invocation was cancelled".into(),
            (_, true) => "the function failed (the worker gave no message)".into(),
            (_, false) => message,
        };
        return Err(ExecutorError::failed(message).with_logs(logs));
    }
    let mut result = InvocationResult::new();
    result.logs = logs;
    for binding in response.output_data {
        let Some(proto::parameter_binding::RpcData::Data(data)) = binding.rpc_data else {
            continue;
        };
        if let Some(value) = binding_data(data) {
            result.set_output(binding.name, value);
        }
    }
    result.return_value = response.return_value.and_then(binding_data);
    Ok(result)
}

/// A value a worker sent, as binding data (`None` for an empty value):
/// bytes that are not UTF-8 stay bytes.
pub(crate) fn binding_data(data: proto::TypedData) -> Option<BindingData> {
    Some(match data.data? {
        Data::Http(http) => BindingData::HttpResponse(Box::new(http_response(*http))),
        Data::Bytes(b) | Data::Stream(b) => match String::from_utf8(b) {
            Ok(s) => BindingData::Json(Value::String(s)),
            Err(e) => BindingData::Bytes(e.into_bytes()),
        },
        other => BindingData::Json(typed_to_json(other)),
    })
}

/// Typed data as JSON: `json` parsed (kept as a string when it is not
/// JSON), bytes as base64 text.
pub(crate) fn typed_to_json(data: Data) -> Value {
    let b64 = |b: &[u8]| Value::String(base64::engine::general_purpose::STANDARD.encode(b));
    match data {
        Data::String(s) => Value::String(s),
        Data::Json(s) => serde_json::from_str(&s).unwrap_or(Value::String(s)),
        Data::Bytes(b) | Data::Stream(b) => match String::from_utf8(b) {
            Ok(s) => Value::String(s),
            Err(e) => b64(e.as_bytes()),
        },
        Data::Int(i) => Value::from(i),
        Data::Double(d) => serde_json::Number::from_f64(d)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        Data::CollectionString(c) => Value::from(c.string),
        Data::CollectionDouble(c) => Value::from(c.double),
        Data::CollectionSint64(c) => Value::from(c.sint64),
        Data::CollectionBytes(c) => Value::Array(c.bytes.iter().map(|b| b64(b)).collect()),
        Data::Http(h) => http_response(*h).to_json(),
        Data::ModelBindingData(m) => serde_json::json!({
            "version": m.version, "source": m.source, "contentType": m.content_type,
            "content": base64::engine::general_purpose::STANDARD.encode(&m.content),
        }),
        Data::CollectionModelBindingData(c) => Value::Array(
            c.model_binding_data
                .into_iter()
                .map(|m| typed_to_json(Data::ModelBindingData(m)))
                .collect(),
        ),
    }
}

/// An HTTP response from a worker's `RpcHttp`, with the content type the
/// host gives a body that has none: `application/json` for JSON,
/// `text/plain; charset=utf-8` for text, `application/octet-stream` for
/// bytes.
pub(crate) fn http_response(http: proto::RpcHttp) -> HttpResponse {
    let status = http.status_code.trim().parse::<u16>().unwrap_or(200);
    let mut headers: Vec<(String, String)> = http.headers.into_iter().collect();
    for (k, v) in http.nullable_headers {
        if let Some(proto::nullable_string::String::Value(v)) = v.string {
            headers.push((k, v));
        }
    }
    headers.sort_by(|a, b| a.0.cmp(&b.0));
    let (body, default_type) = match http.body.and_then(|b| b.data) {
        None => (Vec::new(), None),
        Some(Data::String(s)) => (s.into_bytes(), Some("text/plain; charset=utf-8")),
        Some(Data::Json(s)) => (s.into_bytes(), Some("application/json; charset=utf-8")),
        Some(Data::Bytes(b)) | Some(Data::Stream(b)) => (b, Some("application/octet-stream")),
        Some(Data::Int(i)) => (
            i.to_string().into_bytes(),
            Some("text/plain; charset=utf-8"),
        ),
        Some(Data::Double(d)) => (
            d.to_string().into_bytes(),
            Some("text/plain; charset=utf-8"),
        ),
        Some(other) => (
            typed_to_json(other).to_string().into_bytes(),
            Some("application/json; charset=utf-8"),
        ),
    };
    let has_type = headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
    if !has_type
        && !body.is_empty()
        && let Some(t) = default_type
    {
        headers.push(("content-type".into(), t.into()));
    }
    for cookie in http.cookies {
        headers.push(("set-cookie".into(), set_cookie(&cookie)));
    }
    HttpResponse {
        status,
        headers,
        body,
    }
}

/// A `Set-Cookie` value from a worker's cookie.
fn set_cookie(c: &proto::RpcHttpCookie) -> String {
    let mut s = format!("{}={}", c.name, c.value);
    let text = |n: &Option<proto::NullableString>| {
        n.as_ref()
            .and_then(|n| n.string.as_ref())
            .map(|proto::nullable_string::String::Value(v)| v.clone())
    };
    let flag = |n: &Option<proto::NullableBool>| {
        matches!(
            n.as_ref().and_then(|n| n.bool),
            Some(proto::nullable_bool::Bool::Value(true))
        )
    };
    if let Some(d) = text(&c.domain) {
        s.push_str(&format!("; domain={d}"));
    }
    if let Some(p) = text(&c.path) {
        s.push_str(&format!("; path={p}"));
    }
    if let Some(proto::nullable_timestamp::Timestamp::Value(t)) =
        c.expires.as_ref().and_then(|e| e.timestamp)
        && let Some(when) = chrono::DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32)
    {
        s.push_str(&format!(
            "; expires={}",
            when.format("%a, %d %b %Y %H:%M:%S GMT")
        ));
    }
    if let Some(proto::nullable_double::Double::Value(age)) =
        c.max_age.as_ref().and_then(|m| m.double)
    {
        s.push_str(&format!("; max-age={}", age as i64));
    }
    if flag(&c.secure) {
        s.push_str("; secure");
    }
    if flag(&c.http_only) {
        s.push_str("; httponly");
    }
    match c.same_site() {
        proto::rpc_http_cookie::SameSite::Lax => s.push_str("; samesite=lax"),
        proto::rpc_http_cookie::SameSite::Strict => s.push_str("; samesite=strict"),
        proto::rpc_http_cookie::SameSite::ExplicitNone => s.push_str("; samesite=none"),
        proto::rpc_http_cookie::SameSite::None => {}
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_body_without_a_type_gets_the_hosts_default() {
        let r = http_response(proto::RpcHttp {
            status_code: "201".into(),
            body: Some(Box::new(typed(Data::String("hi".into())))),
            ..Default::default()
        });
        assert_eq!(r.status, 201);
        assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
        assert_eq!(r.body, b"hi");
    }

    #[test]
    fn repeated_headers_and_query_parameters_are_joined() {
        let req = HttpRequest::new(crate::route::Method::Get, "/api/x")
            .with_header("Accept", "text/plain")
            .with_header("accept", "text/html")
            .with_query("id", "1")
            .with_query("id", "2");
        let http = rpc_http_request(&req, &Capabilities::default());
        assert_eq!(http.headers["accept"], "text/plain, text/html");
        assert_eq!(http.query["id"], "1,2");
    }

    #[test]
    fn cookies_become_set_cookie_headers() {
        let r = http_response(proto::RpcHttp {
            cookies: vec![proto::RpcHttpCookie {
                name: "a".into(),
                value: "1".into(),
                http_only: Some(proto::NullableBool {
                    bool: Some(proto::nullable_bool::Bool::Value(true)),
                }),
                path: Some(proto::NullableString {
                    string: Some(proto::nullable_string::String::Value("/".into())),
                }),
                ..Default::default()
            }],
            ..Default::default()
        });
        assert_eq!(r.header("set-cookie"), Some("a=1; path=/; httponly"));
        assert_eq!(r.status, 200);
    }

    #[test]
    fn failures_carry_the_workers_message() {
        let e = invocation_result(
            proto::InvocationResponse {
                result: Some(proto::StatusResult {
                    status: proto::status_result::Status::Failure as i32,
                    exception: Some(proto::RpcException {
                        message: "boom".into(),
                        stack_trace: "at f".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            },
            vec![],
        )
        .expect_err("failed");
        assert_eq!(e.message, "boom");
        assert!(e.logs.iter().any(|l| l.contains("at f")));
    }
}
