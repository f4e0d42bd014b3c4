//! A client of the cluster API (workers, gateways, `fnhost fetch`,
//! `fnhost workers list --manager`): JSON and blobs over HTTP/1.1 with a
//! bearer token, connections kept alive; `http://` or `https://` (rustls,
//! trusting the system's root certificates and those of `--ca-cert`).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_rustls::rustls;

use crate::error::{Error, Result};
use crate::protocol::PREFIX;

/// The HTTP client every cluster role uses.
pub(crate) type Http = HyperClient<HttpConnector, Full<Bytes>>;

/// A new HTTP client (keep-alive, no proxy).
pub(crate) fn http() -> Http {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(5)));
    HyperClient::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector)
}

/// The HTTP client of the manager's API: `http://` or `https://`.
type ManagerHttp = HyperClient<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The roots a client of the manager at `base` trusts: for an
/// `https://` manager the system's (`SSL_CERT_FILE` and `SSL_CERT_DIR`
/// honoured; none is fine when a CA file is given), for an `http://` one
/// none (reading the system's store costs a worker's start time for
/// nothing); and the certificates of `ca_cert` (PEM).
fn trust_roots(base: &str, ca_cert: Option<&Path>) -> Result<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    if base.starts_with("https://") {
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    }
    if let Some(file) = ca_cert {
        add_ca_file(&mut roots, file)?;
    }
    Ok(roots)
}

/// Adds every certificate of the PEM file `file` to `roots` and returns
/// them: each CERTIFICATE block must be one rustls can trust, other
/// blocks (a private key) are passed over, and there must be at least
/// one. The errors name the file and `--ca-cert`.
fn add_ca_file(
    roots: &mut rustls::RootCertStore,
    file: &Path,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let bad = |e: &dyn std::fmt::Display| {
        Error::Invalid(format!(
            "--ca-cert {}: cannot read a PEM certificate from it: {e}",
            file.display()
        ))
    };
    let mut added = Vec::new();
    for cert in CertificateDer::pem_file_iter(file).map_err(|e| bad(&e))? {
        let cert = cert.map_err(|e| bad(&e))?;
        roots.add(cert.clone()).map_err(|e| bad(&e))?;
        added.push(cert);
    }
    if added.is_empty() {
        return Err(bad(
            &"no CERTIFICATE block in the file (give the CA's certificate in PEM, `-----BEGIN CERTIFICATE-----`)",
        ));
    }
    Ok(added)
}

/// The certificates (DER) of the PEM file `file`, checked as `--ca-cert`
/// checks them (see [`ManagerClient::with_ca_cert`]): for tools that pass
/// the file on, such as `fnhost kube manifests --ca-cert`. Fails, naming
/// the file, when it is missing, unreadable, not PEM, or holds no
/// certificate rustls can trust; a private key in the same file is left
/// out.
pub fn read_ca_certs(file: &Path) -> Result<Vec<Vec<u8>>> {
    let mut roots = rustls::RootCertStore::empty();
    Ok(add_ca_file(&mut roots, file)?
        .into_iter()
        .map(|c| c.to_vec())
        .collect())
}

/// A client of `http://` and `https://` managers trusting `roots`.
fn manager_http(roots: rustls::RootCertStore) -> Result<ManagerHttp> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Invalid(format!("no TLS protocol version: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(5)));
    connector.enforce_http(false);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(connector);
    Ok(HyperClient::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector))
}

/// The TLS error behind a failed request, if any (rustls's error is
/// wrapped in I/O errors, whose `source` skips it).
fn tls_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(t) = e.downcast_ref::<rustls::Error>() {
            return Some(t);
        }
        next = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    None
}

/// The manager's cluster API.
#[derive(Clone)]
pub struct ManagerClient {
    base: String,
    token: String,
    http: ManagerHttp,
}

impl std::fmt::Debug for ManagerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagerClient")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl ManagerClient {
    /// A client of the manager at `url` (`http://host:port` or
    /// `https://host:port`), presenting `token`; an `https` manager's
    /// certificate must chain to the system's root certificates (see
    /// [`ManagerClient::with_ca_cert`] for others).
    pub fn new(url: &str, token: impl Into<String>) -> Result<ManagerClient> {
        let base = url.trim_end_matches('/').to_string();
        if !base.starts_with("http://") && !base.starts_with("https://") {
            return Err(Error::Invalid(format!(
                "--manager {url}: give the manager's URL as http://HOST:PORT or https://HOST:PORT (as `fnhost manage` prints it)"
            )));
        }
        Ok(ManagerClient {
            http: manager_http(trust_roots(&base, None)?)?,
            base,
            token: token.into(),
        })
    }

    /// Also trusts the certificates in the PEM file `ca_cert` (a private
    /// CA, or the manager's self-signed certificate) for an `https`
    /// manager, besides the system's roots.
    pub fn with_ca_cert(mut self, ca_cert: &Path) -> Result<ManagerClient> {
        self.http = manager_http(trust_roots(&self.base, Some(ca_cert))?)?;
        Ok(self)
    }

    /// The manager's URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// Uses another token (a worker's credential after registering).
    pub fn with_token(mut self, token: impl Into<String>) -> ManagerClient {
        self.token = token.into();
        self
    }

    /// `GET {PREFIX}{path}` as bytes, with its status; fails on anything
    /// but 200 (401/403 as [`Error::Unauthorized`]).
    pub async fn get_bytes(&self, path: &str, timeout: Duration) -> Result<Bytes> {
        self.call(Method::GET, path, Bytes::new(), timeout).await
    }

    /// `GET {PREFIX}{path}` as JSON.
    pub async fn get<T: DeserializeOwned>(&self, path: &str, timeout: Duration) -> Result<T> {
        let body = self.get_bytes(path, timeout).await?;
        self.parse(path, &body)
    }

    /// `method {PREFIX}{path}` with a JSON body; the JSON answer.
    pub async fn send<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &B,
        timeout: Duration,
    ) -> Result<T> {
        let body = self.send_for_bytes(method, path, body, timeout).await?;
        self.parse(path, &body)
    }

    /// `method {PREFIX}{path}` with a JSON body; the answer's bytes.
    pub async fn send_for_bytes<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: &B,
        timeout: Duration,
    ) -> Result<Bytes> {
        let data = serde_json::to_vec(body).map_err(|e| self.error(path, e))?;
        self.call(method, path, Bytes::from(data), timeout).await
    }

    fn parse<T: DeserializeOwned>(&self, path: &str, body: &[u8]) -> Result<T> {
        serde_json::from_slice(body)
            .map_err(|e| self.error(path, format!("unexpected answer: {e}")))
    }

    fn error(&self, path: &str, e: impl std::fmt::Display) -> Error {
        Error::Manager {
            url: format!("{}{PREFIX}{path}", self.base),
            message: e.to_string(),
        }
    }

    /// A request that failed before an answer: an untrusted certificate
    /// says what to do.
    fn request_error(&self, path: &str, e: &hyper_util::client::legacy::Error) -> Error {
        match tls_error(e) {
            Some(rustls::Error::InvalidCertificate(rustls::CertificateError::Other(why)))
                if format!("{why:?}").contains("CaUsedAsEndEntity") =>
            {
                self.error(
                    path,
                    "the manager's TLS certificate is a CA certificate (basicConstraints CA:TRUE, what `openssl req -x509` makes by default), which rustls refuses as a server's own: make it with `-addext basicConstraints=critical,CA:FALSE`, or sign it with a CA and pass that CA with --ca-cert FILE",
                )
            }
            Some(rustls::Error::InvalidCertificate(why)) => self.error(
                path,
                format!(
                    "the manager's TLS certificate is not trusted ({why:?}): pass --ca-cert FILE with the certificate of the CA that signed it (or the manager's own self-signed certificate, as given to `fnhost manage --tls-cert`)"
                ),
            ),
            Some(t) => self.error(path, format!("TLS: {t}")),
            None => {
                let mut message = e.to_string();
                let mut next = std::error::Error::source(e);
                while let Some(s) = next {
                    message = format!("{message}: {s}");
                    next = s.source();
                }
                self.error(path, message)
            }
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Bytes> {
        let url = format!("{}{PREFIX}{path}", self.base);
        let mut req = Request::builder().method(method).uri(&url).header(
            hyper::header::AUTHORIZATION,
            format!("Bearer {}", self.token),
        );
        if !body.is_empty() {
            req = req.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let req = req.body(Full::new(body)).map_err(|e| self.error(path, e))?;
        let resp = tokio::time::timeout(timeout, async {
            let resp = self
                .http
                .request(req)
                .await
                .map_err(|e| self.request_error(path, &e))?;
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| self.error(path, e))?
                .to_bytes();
            Ok::<_, Error>((status, body))
        })
        .await
        .map_err(|_| self.error(path, format!("no answer within {} s", timeout.as_secs())))??;
        match resp.0 {
            StatusCode::OK => Ok(resp.1),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(Error::Unauthorized {
                url,
                status: resp.0.as_u16(),
            }),
            status => Err(self.error(
                path,
                format!("{status}: {}", String::from_utf8_lossy(&resp.1).trim()),
            )),
        }
    }
}
