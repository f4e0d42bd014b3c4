//! HTTP requests and responses as functions see them, and their JSON shapes
//! in the Azure protocol.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value, json};

use crate::route::Method;

/// An HTTP request given to an HTTP-triggered function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// The method.
    pub method: Method,
    /// The full URL, such as `http://localhost:7071/api/hello?name=x`.
    pub url: String,
    /// The path, such as `/api/hello`.
    pub path: String,
    /// Query parameters, decoded, in order.
    pub query: Vec<(String, String)>,
    /// Headers, in order; names as received.
    pub headers: Vec<(String, String)>,
    /// Route values, by parameter name.
    pub params: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl HttpRequest {
    /// A request with this method and URL path and nothing else.
    pub fn new(method: Method, path: impl Into<String>) -> Self {
        let path = path.into();
        HttpRequest {
            method,
            url: format!("http://localhost{path}"),
            path,
            query: Vec::new(),
            headers: Vec::new(),
            params: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Sets the body.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Adds a header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Adds a query parameter.
    pub fn with_query(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.query.push((name.into(), value.into()));
        self
    }

    /// The first header of that name, ignoring case.
    pub fn header(&self, name: &str) -> Option<&str> {
        first_ignoring_case(&self.headers, name)
    }

    /// The first query parameter of that name (case-sensitive, as in URLs).
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A route value by parameter name, ignoring case.
    pub fn param(&self, name: &str) -> Option<&str> {
        first_ignoring_case(&self.params, name)
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn body_text(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }

    /// Whether the body is binary for the protocol: an octet-stream or
    /// multipart content type, or bytes that are not UTF-8.
    pub fn body_is_binary(&self) -> bool {
        let ct = self
            .header("content-type")
            .unwrap_or("")
            .to_ascii_lowercase();
        ct.starts_with("application/octet-stream")
            || ct.starts_with("multipart/")
            || std::str::from_utf8(&self.body).is_err()
    }

    /// The trigger metadata the Azure host gives an HTTP invocation: each
    /// route value by name, `Query` (first value of each name) and
    /// `Headers` (values of one name joined with `, `).
    ///
    /// The pipeline does not build it per request: executors that speak the
    /// protocol derive it from the request when they serialise; a native
    /// function that wants it calls this.
    pub fn trigger_metadata(&self) -> Map<String, Value> {
        let mut metadata = Map::new();
        for (k, v) in &self.params {
            metadata.insert(k.clone(), Value::String(v.clone()));
        }
        let mut query = Map::new();
        for (k, v) in &self.query {
            query
                .entry(k.clone())
                .or_insert_with(|| Value::String(v.clone()));
        }
        metadata.insert("Query".to_owned(), Value::Object(query));
        let mut headers: Map<String, Value> = Map::new();
        for (k, v) in &self.headers {
            match headers.get_mut(k) {
                Some(Value::String(existing)) => {
                    existing.push_str(", ");
                    existing.push_str(v);
                }
                _ => {
                    headers.insert(k.clone(), Value::String(v.clone()));
                }
            }
        }
        metadata.insert("Headers".to_owned(), Value::Object(headers));
        metadata
    }

    /// The request in the custom handler protocol's shape:
    /// `{Url, Method, Query, Headers, Params, Identities, Body}`. The body is
    /// a string; binary bodies are base64.
    pub fn to_json(&self) -> Value {
        let mut query = Map::new();
        for (k, v) in &self.query {
            query
                .entry(k.clone())
                .or_insert_with(|| Value::String(v.clone()));
        }
        let mut headers: Map<String, Value> = Map::new();
        for (k, v) in &self.headers {
            match headers.get_mut(k) {
                Some(Value::Array(values)) => values.push(Value::String(v.clone())),
                _ => {
                    headers.insert(k.clone(), json!([v]));
                }
            }
        }
        let params: Map<String, Value> = self
            .params
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        let body = if self.body_is_binary() {
            BASE64.encode(&self.body)
        } else {
            self.body_text().into_owned()
        };
        json!({
            "Url": self.url,
            "Method": self.method.as_str(),
            "Query": query,
            "Headers": headers,
            "Params": params,
            "Identities": [],
            "Body": body,
        })
    }
}

/// An HTTP response produced by a function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// Headers, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Default for HttpResponse {
    fn default() -> Self {
        HttpResponse::new(200)
    }
}

/// A response value that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid HTTP response from the function: {0}")]
pub struct InvalidResponse(pub String);

impl HttpResponse {
    /// An empty response with this status.
    pub fn new(status: u16) -> Self {
        HttpResponse {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// 200 with a text body.
    pub fn text(body: impl Into<String>) -> Self {
        HttpResponse::new(200)
            .with_header("Content-Type", "text/plain; charset=utf-8")
            .with_body(body.into())
    }

    /// 200 with a JSON body.
    pub fn json(value: &Value) -> Self {
        HttpResponse::new(200)
            .with_header("Content-Type", "application/json; charset=utf-8")
            .with_body(value.to_string())
    }

    /// Sets the status.
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// Adds a header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// The first header of that name, ignoring case.
    pub fn header(&self, name: &str) -> Option<&str> {
        first_ignoring_case(&self.headers, name)
    }

    /// The response in the protocol's shape: `{statusCode, headers, body}`.
    pub fn to_json(&self) -> Value {
        let headers: Map<String, Value> = self
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        json!({
            "statusCode": self.status,
            "headers": headers,
            "body": String::from_utf8_lossy(&self.body),
        })
    }

    /// Reads an `http` output value as the host does: an object with
    /// `statusCode` or `status` (a number or a numeric string; 200 when
    /// missing), `headers` (values strings or arrays of strings) and `body`
    /// (a string as is; other JSON serialised, with a JSON content type
    /// unless one is set). Keys compare case-insensitively. Any other value
    /// is a 200 whose body is that value.
    ///
    /// Unlike the Azure host, a string body that happens to be valid base64
    /// is *not* decoded to bytes: it is sent as written.
    pub fn from_json(value: &Value) -> Result<HttpResponse, InvalidResponse> {
        let Value::Object(map) = value else {
            return Ok(match value {
                Value::Null => HttpResponse::new(204),
                Value::String(s) => HttpResponse::new(200).with_body(s.clone()),
                other => HttpResponse::json(other),
            });
        };
        let get = |key: &str| crate::binding::property(map, key);
        let status = match get("statusCode").or_else(|| get("status")) {
            None | Some(Value::Null) => 200,
            Some(Value::Number(n)) => n
                .as_u64()
                .and_then(|n| u16::try_from(n).ok())
                .ok_or_else(|| InvalidResponse(format!("status code {n} is out of range")))?,
            Some(Value::String(s)) if s.trim().is_empty() => 200,
            Some(Value::String(s)) => s
                .trim()
                .parse::<u16>()
                .map_err(|_| InvalidResponse(format!("status code '{s}' is not a number")))?,
            Some(other) => {
                return Err(InvalidResponse(format!(
                    "status code {other} is not a number"
                )));
            }
        };
        if !(100..=999).contains(&status) {
            return Err(InvalidResponse(format!(
                "status code {status} is out of range"
            )));
        }
        let mut response = HttpResponse::new(status);
        if let Some(Value::Object(headers)) = get("headers") {
            for (name, v) in headers {
                match v {
                    Value::String(s) => response.headers.push((name.clone(), s.clone())),
                    Value::Array(items) => {
                        for item in items {
                            if let Some(s) = item.as_str() {
                                response.headers.push((name.clone(), s.to_owned()));
                            } else {
                                response.headers.push((name.clone(), item.to_string()));
                            }
                        }
                    }
                    Value::Null => {}
                    other => response.headers.push((name.clone(), other.to_string())),
                }
            }
        }
        match get("body") {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => response.body = s.clone().into_bytes(),
            Some(other) => {
                response.body = other.to_string().into_bytes();
                if response.header("content-type").is_none() {
                    response.headers.push((
                        "Content-Type".to_owned(),
                        "application/json; charset=utf-8".to_owned(),
                    ));
                }
            }
        }
        Ok(response)
    }
}

/// The value of the first pair named `name`, ignoring ASCII case (as HTTP
/// header names and route parameters are compared).
fn first_ignoring_case<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_has_the_protocol_shape() {
        let mut req = HttpRequest::new(Method::Post, "/api/hello")
            .with_query("name", "x")
            .with_header("Accept", "*/*")
            .with_header("accept", "text/plain")
            .with_body("hi");
        req.params.push(("id".into(), "5".into()));
        let v = req.to_json();
        assert_eq!(v["Method"], "POST");
        assert_eq!(v["Query"]["name"], "x");
        assert_eq!(v["Headers"]["Accept"], json!(["*/*"]));
        assert_eq!(v["Params"]["id"], "5");
        assert_eq!(v["Body"], "hi");
        let bin = HttpRequest::new(Method::Post, "/x")
            .with_header("Content-Type", "application/octet-stream")
            .with_body(vec![0u8, 1, 2]);
        assert_eq!(bin.to_json()["Body"], "AAEC");
    }

    #[test]
    fn responses_are_read_like_the_host() {
        let r = HttpResponse::from_json(
            &json!({"statusCode": "201", "Body": "made", "headers": {"X-A": "1"}}),
        )
        .unwrap();
        assert_eq!(
            (r.status, r.body.as_slice(), r.header("x-a")),
            (201, &b"made"[..], Some("1"))
        );
        let r = HttpResponse::from_json(&json!({"status": 404, "body": {"error": "no"}})).unwrap();
        assert_eq!(r.status, 404);
        assert_eq!(
            r.header("content-type"),
            Some("application/json; charset=utf-8")
        );
        // base64-looking text stays text
        let r = HttpResponse::from_json(&json!({"body": "aGVsbG8="})).unwrap();
        assert_eq!(r.body, b"aGVsbG8=");
        assert!(HttpResponse::from_json(&json!({"statusCode": "abc"})).is_err());
        assert_eq!(
            HttpResponse::from_json(&json!("plain")).unwrap().body,
            b"plain"
        );
    }
}
