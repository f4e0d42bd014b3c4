//! Azure Storage over its REST API: connection strings, SharedKey signing,
//! the queue service ([`QueueService`], [`QueueClient`]) and the blob
//! service ([`BlobService`], [`ContainerClient`], [`BlobClient`]).
//!
//! Requests carry a fixed `x-ms-version` ([`API_VERSION`]), which both
//! Azure and Azurite serve. `https` endpoints (Azure's) are reached over
//! rustls, trusting the system's root certificates (`SSL_CERT_FILE` and
//! `SSL_CERT_DIR` are honoured), or the roots of a
//! [`TlsConfig`] given to [`QueueService::with_tls`] or
//! [`BlobService::with_tls`].

mod account;
mod blob;
mod queue;
mod sign;
mod xml;

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{Method, StatusCode, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

pub use account::{Credentials, DEV_ACCOUNT_KEY, DEV_ACCOUNT_NAME, StorageAccount};
// `TlsConfig` and `tls_trusting` are defined below.
pub use blob::{
    BlobClient, BlobItem, BlobPage, BlobProperties, BlobService, ContainerClient, Lease,
    PutOptions, is_valid_container_name,
};
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

/// The TLS client configuration of `https` endpoints (rustls).
pub type TlsConfig = std::sync::Arc<tokio_rustls::rustls::ClientConfig>;

/// A client configuration (ring, the safe protocol versions) trusting
/// `roots`.
fn tls_config(roots: tokio_rustls::rustls::RootCertStore) -> Result<TlsConfig, String> {
    let provider = std::sync::Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("no TLS protocol version: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(std::sync::Arc::new(config))
}

/// The system's root certificates (`SSL_CERT_FILE` and `SSL_CERT_DIR`
/// honoured), loaded once: the configuration every client uses unless
/// given another. `Err` says why there is none.
fn system_tls() -> Result<TlsConfig, String> {
    static CONFIG: std::sync::OnceLock<Result<TlsConfig, String>> = std::sync::OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            let mut roots = tokio_rustls::rustls::RootCertStore::empty();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                let why = found
                    .errors
                    .first()
                    .map_or_else(|| "none found".to_owned(), ToString::to_string);
                return Err(format!(
                    "no root certificates on this system ({why}): install ca-certificates, or set SSL_CERT_FILE"
                ));
            }
            tls_config(roots)
        })
        .clone()
}

/// A TLS configuration that trusts the certificates of a PEM file (a
/// private CA, a self-signed test certificate) and nothing else.
pub fn tls_trusting(pem_file: &std::path::Path) -> Result<TlsConfig, StorageError> {
    use tokio_rustls::rustls::pki_types::CertificateDer;
    use tokio_rustls::rustls::pki_types::pem::PemObject as _;
    let bad = |e: String| {
        StorageError::Config(format!(
            "cannot read certificates from {}: {e}",
            pem_file.display()
        ))
    };
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(pem_file).map_err(|e| bad(e.to_string()))? {
        roots
            .add(cert.map_err(|e| bad(e.to_string()))?)
            .map_err(|e| bad(e.to_string()))?;
    }
    tls_config(roots).map_err(bad)
}

/// The HTTP client and signer of one account's service (queue or blob).
#[derive(Clone)]
pub(crate) struct Transport {
    account: StorageAccount,
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    /// The service endpoint, as configured.
    endpoint: String,
    /// `scheme://authority`.
    origin: String,
    /// The endpoint's path (`/devstoreaccount1` path-style, else empty).
    base_path: String,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("account", &self.account.name)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

/// A response: status, headers, body.
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

/// One request to a storage service.
#[derive(Debug)]
pub(crate) struct Call<'a> {
    pub(crate) method: Method,
    /// Query parameters, raw.
    pub(crate) query: &'a [(&'a str, String)],
    /// Standard headers that are signed (`if-none-match`...), lower case.
    pub(crate) standard: Vec<(&'a str, String)>,
    /// `x-ms-*` headers besides the date and version, lower case.
    pub(crate) ms_headers: Vec<(String, String)>,
    pub(crate) content_type: &'a str,
    pub(crate) body: Bytes,
}

impl<'a> Call<'a> {
    pub(crate) fn new(method: Method, query: &'a [(&'a str, String)]) -> Call<'a> {
        Call {
            method,
            query,
            standard: Vec::new(),
            ms_headers: Vec::new(),
            content_type: "",
            body: Bytes::new(),
        }
    }

    /// An XML body (the queue service's messages).
    pub(crate) fn xml(mut self, body: Option<String>) -> Call<'a> {
        if let Some(b) = body {
            self.body = Bytes::from(b);
            self.content_type = "application/xml";
        }
        self
    }
}

impl Transport {
    pub(crate) fn new(
        account: StorageAccount,
        endpoint: &str,
        tls: Option<TlsConfig>,
    ) -> Result<Transport, StorageError> {
        let uri: Uri = endpoint.parse().map_err(|e| {
            StorageError::Config(format!(
                "the storage endpoint '{endpoint}' is not a URL: {e}"
            ))
        })?;
        let scheme = match uri.scheme_str() {
            Some(s @ ("http" | "https")) => s.to_owned(),
            other => {
                return Err(StorageError::Config(format!(
                    "the storage endpoint '{endpoint}' has the scheme {other:?}: use https (or http for Azurite)"
                )));
            }
        };
        let tls = match tls {
            Some(t) => t,
            None => match system_tls() {
                Ok(t) => t,
                Err(e) if scheme == "https" => {
                    return Err(StorageError::Config(format!(
                        "cannot reach {endpoint}: {e}"
                    )));
                }
                // Plain http needs no roots: an empty store will do.
                Err(_) => tls_config(tokio_rustls::rustls::RootCertStore::empty())
                    .map_err(StorageError::Config)?,
            },
        };
        let authority = uri
            .authority()
            .map(|a| a.as_str().to_owned())
            .ok_or_else(|| {
                StorageError::Config(format!("the storage endpoint '{endpoint}' has no host"))
            })?;
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        connector.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*tls).clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(Transport {
            origin: format!("{scheme}://{authority}"),
            base_path: uri.path().trim_end_matches('/').to_owned(),
            endpoint: endpoint.to_owned(),
            account,
            http,
        })
    }

    pub(crate) fn account(&self) -> &StorageAccount {
        &self.account
    }

    /// Sends a request with an optional XML body.
    pub(crate) async fn send(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
        body: Option<String>,
    ) -> Result<Response, StorageError> {
        self.call(segments, Call::new(method, query).xml(body))
            .await
    }

    /// Signs and sends a request to the path of `segments` (each
    /// percent-encoded here) after the endpoint.
    pub(crate) async fn call(
        &self,
        segments: &[&str],
        call: Call<'_>,
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
        for (k, v) in call.query {
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
        let body = call.body;
        let date = chrono::Utc::now()
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        let mut ms_headers: Vec<(&str, String)> = vec![
            ("x-ms-date", date),
            ("x-ms-version", API_VERSION.to_owned()),
        ];
        ms_headers.extend(call.ms_headers.iter().map(|(k, v)| (k.as_str(), v.clone())));
        let mut builder = hyper::Request::builder()
            .method(call.method.clone())
            .uri(&url)
            .header("content-length", body.len());
        if !call.content_type.is_empty() {
            builder = builder.header("content-type", call.content_type);
        }
        for (k, v) in call.standard.iter().chain(ms_headers.iter()) {
            builder = builder.header(*k, v.as_str());
        }
        if let Credentials::SharedKey { key } = &self.account.credentials {
            let to_sign = sign::string_to_sign(&sign::ToSign {
                method: call.method.as_str(),
                content_length: body.len(),
                content_type: call.content_type,
                standard: &call.standard,
                ms_headers: &ms_headers,
                account: &self.account.name,
                path: &path,
                query: call.query,
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
            endpoint: self.endpoint.clone(),
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

/// A call's outcome with "not found" (404) as `None`.
pub(crate) fn unless_missing<T>(
    outcome: Result<T, StorageError>,
) -> Result<Option<T>, StorageError> {
    match outcome {
        Ok(r) => Ok(Some(r)),
        Err(e) if e.status() == Some(404) => Ok(None),
        Err(e) => Err(e),
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

/// Parses a service's XML answer (a leading byte order mark is skipped).
pub(crate) fn parse_body(r: &Response) -> Result<xml::Element, StorageError> {
    let text = std::str::from_utf8(&r.body)
        .map_err(|_| StorageError::BadResponse("the service answered with non-UTF-8 XML".into()))?;
    xml::parse(text.trim_start_matches('\u{feff}')).map_err(|e| {
        StorageError::BadResponse(format!("the service's XML answer cannot be read: {e}"))
    })
}

/// An RFC 1123 time, as the service writes them.
pub(crate) fn time(text: Option<&str>) -> Option<chrono::DateTime<chrono::Utc>> {
    let text = text?.trim();
    chrono::DateTime::parse_from_rfc2822(text)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
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
