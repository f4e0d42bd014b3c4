//! Azure Storage over its REST API: connection strings, SharedKey signing,
//! and the queue service ([`QueueService`], [`QueueClient`]).
//!
//! Requests carry a fixed `x-ms-version` ([`API_VERSION`]), which both
//! Azure and Azurite serve. Only `http` endpoints are reached in this
//! version (Azurite, or a TLS-terminating proxy): an `https` endpoint is a
//! configuration error that says so.

mod account;
mod queue;
mod sign;
mod xml;

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{Method, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

pub use account::{Credentials, DEV_ACCOUNT_KEY, DEV_ACCOUNT_NAME, StorageAccount};
pub use queue::{
    MessageReceipt, PeekedMessage, QueueClient, QueueMessage, QueueService, UpdateReceipt,
    is_valid_queue_name,
};

/// The storage REST API version fnhost speaks.
pub const API_VERSION: &str = "2021-12-02";

/// How long one request may take, connecting included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Query values and path segments: everything but RFC 3986's unreserved
/// characters is percent-encoded.
const ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// A storage request that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The service could not be reached (connection refused, timed out).
    #[error("cannot reach the storage service at {endpoint}: {reason}")]
    Unreachable {
        /// The endpoint.
        endpoint: String,
        /// Why.
        reason: String,
    },
    /// The service answered with an error status.
    #[error("{operation} failed: {status} {code}: {message}")]
    Status {
        /// What was being done, such as `Get Messages on queue 'orders'`.
        operation: String,
        /// The HTTP status.
        status: u16,
        /// The storage error code, such as `QueueNotFound` (empty when the
        /// service gave none).
        code: String,
        /// The service's message.
        message: String,
    },
    /// The service's answer could not be read.
    #[error("{0}")]
    BadResponse(String),
    /// The connection string or endpoint is not usable.
    #[error("{0}")]
    Config(String),
}

impl StorageError {
    /// The HTTP status, for a [`StorageError::Status`].
    pub fn status(&self) -> Option<u16> {
        match self {
            StorageError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The storage error code, for a [`StorageError::Status`].
    pub fn code(&self) -> Option<&str> {
        match self {
            StorageError::Status { code, .. } => Some(code),
            _ => None,
        }
    }

    /// Whether trying again later may succeed: the service is unreachable,
    /// busy (5xx, 408, 429), or the queue is missing or being deleted.
    pub fn is_transient(&self) -> bool {
        match self {
            StorageError::Unreachable { .. } | StorageError::BadResponse(_) => true,
            StorageError::Status { status, .. } => {
                *status >= 500 || matches!(*status, 404 | 408 | 409 | 429)
            }
            StorageError::Config(_) => false,
        }
    }
}

/// The HTTP client and signer of one account.
#[derive(Clone)]
pub(crate) struct Transport {
    account: StorageAccount,
    http: Client<HttpConnector, Full<Bytes>>,
    /// `scheme://authority`.
    origin: String,
    /// The endpoint's path (`/devstoreaccount1` path-style, else empty).
    base_path: String,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("account", &self.account.name)
            .field("endpoint", &self.account.queue_endpoint)
            .finish_non_exhaustive()
    }
}

/// A response: status, `x-ms-*` headers needed by callers, body.
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) status: StatusCode,
    pub(crate) headers: hyper::HeaderMap,
    pub(crate) body: Bytes,
}

impl Response {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl Transport {
    pub(crate) fn new(account: StorageAccount) -> Result<Transport, StorageError> {
        let uri: Uri = account.queue_endpoint.parse().map_err(|e| {
            StorageError::Config(format!(
                "the queue endpoint '{}' is not a URL: {e}",
                account.queue_endpoint
            ))
        })?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(StorageError::Config(format!(
                    "the queue endpoint {} is https, and this version of fnhost reaches storage over http only (Azurite, or a TLS-terminating proxy given as QueueEndpoint=http://...)",
                    account.queue_endpoint
                )));
            }
            other => {
                return Err(StorageError::Config(format!(
                    "the queue endpoint '{}' has the scheme {other:?}: use http",
                    account.queue_endpoint
                )));
            }
        }
        let authority = uri
            .authority()
            .map(|a| a.as_str().to_owned())
            .ok_or_else(|| StorageError::Config("the queue endpoint has no host".into()))?;
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(Transport {
            origin: format!("http://{authority}"),
            base_path: uri.path().trim_end_matches('/').to_owned(),
            account,
            http,
        })
    }

    pub(crate) fn account(&self) -> &StorageAccount {
        &self.account
    }

    /// Sends a request. `segments` are the path segments after the
    /// endpoint (each percent-encoded here); `query` values are raw.
    pub(crate) async fn send(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
        body: Option<String>,
    ) -> Result<Response, StorageError> {
        let mut path = self.base_path.clone();
        for s in segments {
            path.push('/');
            path.extend(utf8_percent_encode(s, ENCODE));
        }
        if path.is_empty() {
            path.push('/');
        }
        let mut url = format!("{}{path}", self.origin);
        let mut sep = '?';
        for (k, v) in query {
            url.push(sep);
            url.push_str(k);
            url.push('=');
            url.extend(utf8_percent_encode(v, ENCODE));
            sep = '&';
        }
        if let Credentials::Sas { query: sas } = &self.account.credentials
            && !sas.is_empty()
        {
            url.push(sep);
            url.push_str(sas);
        }
        let body = body.map(Bytes::from).unwrap_or_default();
        let content_type = if body.is_empty() {
            ""
        } else {
            "application/xml"
        };
        let date = chrono::Utc::now()
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        let ms_headers = [
            ("x-ms-date", date),
            ("x-ms-version", API_VERSION.to_owned()),
        ];
        let mut builder = hyper::Request::builder()
            .method(method.clone())
            .uri(&url)
            .header("content-length", body.len());
        if !content_type.is_empty() {
            builder = builder.header("content-type", content_type);
        }
        for (k, v) in &ms_headers {
            builder = builder.header(*k, v.as_str());
        }
        if let Credentials::SharedKey { key } = &self.account.credentials {
            let to_sign = sign::string_to_sign(&sign::ToSign {
                method: method.as_str(),
                content_length: body.len(),
                content_type,
                ms_headers: &ms_headers,
                account: &self.account.name,
                path: &path,
                query,
            });
            builder = builder.header(
                "authorization",
                sign::authorization(&self.account.name, key, &to_sign),
            );
        }
        let request = builder
            .body(Full::new(body))
            .map_err(|e| StorageError::Config(format!("cannot build a request to {url}: {e}")))?;
        let unreachable = |reason: String| StorageError::Unreachable {
            endpoint: self.account.queue_endpoint.clone(),
            reason,
        };
        let exchange = async {
            let response = self
                .http
                .request(request)
                .await
                .map_err(|e| unreachable(error_chain(&e)))?;
            let (parts, body) = response.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| unreachable(format!("the response broke off: {e}")))?
                .to_bytes();
            Ok(Response {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
            Ok(r) => r,
            Err(_) => Err(unreachable(format!(
                "no answer within {} s",
                REQUEST_TIMEOUT.as_secs()
            ))),
        }
    }
}

/// An error status as a [`StorageError`], with the code and message of the
/// service's XML error body when there is one.
pub(crate) fn status_error(operation: String, response: &Response) -> StorageError {
    let mut code = response
        .header("x-ms-error-code")
        .unwrap_or_default()
        .to_owned();
    let mut message = String::new();
    if let Ok(text) = std::str::from_utf8(&response.body)
        && let Ok(root) = xml::parse(text)
    {
        if code.is_empty() {
            code = root.child_text("Code").unwrap_or_default().to_owned();
        }
        message = root
            .child_text("Message")
            .unwrap_or_default()
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned();
    }
    if message.is_empty() {
        message = response
            .status
            .canonical_reason()
            .unwrap_or("error")
            .to_owned();
    }
    StorageError::Status {
        operation,
        status: response.status.as_u16(),
        code,
        message,
    }
}

/// An error with its sources, one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
