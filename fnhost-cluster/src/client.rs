//! A client of the cluster API (workers, gateways, `fnhost fetch`,
//! `fnhost workers list --manager`): JSON and blobs over HTTP/1.1 with a
//! bearer token, connections kept alive.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use serde::de::DeserializeOwned;

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

/// The manager's cluster API.
#[derive(Clone)]
pub struct ManagerClient {
    base: String,
    token: String,
    http: Http,
}

impl std::fmt::Debug for ManagerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagerClient")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl ManagerClient {
    /// A client of the manager at `url` (`http://host:port`), presenting
    /// `token`.
    pub fn new(url: &str, token: impl Into<String>) -> Result<ManagerClient> {
        let base = url.trim_end_matches('/').to_string();
        if !base.starts_with("http://") {
            return Err(Error::Invalid(format!(
                "--manager {url}: give the manager's URL as http://HOST:PORT (as `fnhost manage` prints it)"
            )));
        }
        Ok(ManagerClient {
            base,
            token: token.into(),
            http: http(),
        })
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
                .map_err(|e| self.error(path, e))?;
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
