//! The blob service's operations: containers, block blobs, their
//! properties and metadata, listings, and leases.

use bytes::Bytes;
use chrono::{DateTime, Utc};

use hyper::{Method, StatusCode};

use super::{
    Call, Response, StorageAccount, StorageError, Transport, parse_body, status_error, time,
    unless_missing,
};

/// The blob service of one account.
#[derive(Debug, Clone)]
pub struct BlobService {
    transport: Transport,
}

impl BlobService {
    /// A client of `account`'s blob service (no request is made).
    pub fn new(account: StorageAccount) -> Result<BlobService, StorageError> {
        Ok(BlobService {
            transport: Transport::new(account.clone(), &account.blob_endpoint, None)?,
        })
    }

    /// A client whose `https` requests trust `tls`'s roots instead of the
    /// system's (see [`super::tls_trusting`]).
    pub fn with_tls(
        account: StorageAccount,
        tls: super::TlsConfig,
    ) -> Result<BlobService, StorageError> {
        Ok(BlobService {
            transport: Transport::new(account.clone(), &account.blob_endpoint, Some(tls))?,
        })
    }

    /// From a connection string (see [`StorageAccount::parse`]).
    pub fn from_connection_string(connection_string: &str) -> Result<BlobService, StorageError> {
        Self::new(StorageAccount::parse(connection_string)?)
    }

    /// The account.
    pub fn account(&self) -> &StorageAccount {
        self.transport.account()
    }

    /// A client of one container (the name is checked when a request is
    /// made).
    pub fn container(&self, name: &str) -> ContainerClient {
        ContainerClient {
            transport: self.transport.clone(),
            name: name.to_owned(),
        }
    }
}

/// Whether `name` is a valid container name: 3 to 63 lower-case letters,
/// digits and single dashes, starting with a letter or digit (`$logs` and
/// `$root` are the service's own).
pub fn is_valid_container_name(name: &str) -> bool {
    super::is_valid_queue_name(name) || matches!(name, "$root" | "$logs" | "$web")
}

/// One container.
#[derive(Debug, Clone)]
pub struct ContainerClient {
    transport: Transport,
    name: String,
}

/// A blob of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobItem {
    /// The blob's name in its container.
    pub name: String,
    /// Its properties (metadata too, when the listing asked for it).
    pub properties: BlobProperties,
}

/// What the service says of a blob.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlobProperties {
    /// The entity tag, quotes included as the service sends it.
    pub etag: String,
    /// When it was last written.
    pub last_modified: Option<DateTime<Utc>>,
    /// Its length in bytes.
    pub content_length: u64,
    /// Its content type.
    pub content_type: String,
    /// Its user metadata (`x-ms-meta-*`), names as stored.
    pub metadata: Vec<(String, String)>,
}

/// A page of a listing: the blobs and the marker of the next page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlobPage {
    /// The blobs, in name order.
    pub blobs: Vec<BlobItem>,
    /// The marker of the next page (`None`: this was the last).
    pub next_marker: Option<String>,
}

impl ContainerClient {
    /// The container's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A client of one blob of this container.
    pub fn blob(&self, name: &str) -> BlobClient {
        BlobClient {
            container: self.clone(),
            name: name.to_owned(),
        }
    }

    fn check_name(&self) -> Result<(), StorageError> {
        if is_valid_container_name(&self.name) {
            Ok(())
        } else {
            Err(StorageError::Config(format!(
                "'{}' is not a valid container name: use 3 to 63 lower-case letters, digits and single dashes",
                self.name
            )))
        }
    }

    async fn send(
        &self,
        operation: &str,
        what: &str,
        segments: &[&str],
        call: Call<'_>,
        ok: &[StatusCode],
    ) -> Result<Response, StorageError> {
        self.check_name()?;
        let response = self.transport.call(segments, call).await?;
        if ok.contains(&response.status) {
            Ok(response)
        } else {
            Err(status_error(format!("{operation} on {what}"), &response))
        }
    }

    /// A request on the container itself (`restype=container` and the
    /// rest of `query`), answered with one of the `ok` statuses.
    async fn send_to_container(
        &self,
        operation: &str,
        method: Method,
        query: &[(&str, String)],
        ok: &[StatusCode],
    ) -> Result<Response, StorageError> {
        let mut query = query.to_vec();
        query.insert(0, ("restype", "container".to_owned()));
        let what = format!("container '{}'", self.name);
        let call = Call::new(method, &query);
        self.send(operation, &what, &[self.name.as_str()], call, ok)
            .await
    }

    /// Creates the container; `Ok(false)` when it already existed.
    pub async fn create(&self) -> Result<bool, StorageError> {
        match self
            .send_to_container("Create Container", Method::PUT, &[], &[StatusCode::CREATED])
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.status() == Some(409) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Deletes the container and its blobs.
    pub async fn delete(&self) -> Result<(), StorageError> {
        self.send_to_container(
            "Delete Container",
            Method::DELETE,
            &[],
            &[StatusCode::ACCEPTED],
        )
        .await
        .map(drop)
    }

    /// One page of the blobs whose names start with `prefix`, from
    /// `marker`, at most `max` (1 to 5000), with their metadata.
    pub async fn list(
        &self,
        prefix: &str,
        marker: Option<&str>,
        max: u32,
    ) -> Result<BlobPage, StorageError> {
        let mut query = vec![
            ("comp", "list".to_owned()),
            ("include", "metadata".to_owned()),
            ("maxresults", max.clamp(1, 5000).to_string()),
        ];
        if !prefix.is_empty() {
            query.push(("prefix", prefix.to_owned()));
        }
        if let Some(m) = marker.filter(|m| !m.is_empty()) {
            query.push(("marker", m.to_owned()));
        }
        let r = self
            .send_to_container("List Blobs", Method::GET, &query, &[StatusCode::OK])
            .await?;
        let root = parse_body(&r)?;
        let blobs = root
            .child("Blobs")
            .map(|b| {
                b.children
                    .iter()
                    .filter(|e| e.name == "Blob")
                    .filter_map(|e| {
                        let name = e.child_text("Name")?.to_owned();
                        let p = e.child("Properties");
                        let prop = |n: &str| p.and_then(|p| p.child_text(n)).unwrap_or_default();
                        Some(BlobItem {
                            name,
                            properties: BlobProperties {
                                etag: prop("Etag").to_owned(),
                                last_modified: time(Some(prop("Last-Modified"))),
                                content_length: prop("Content-Length").trim().parse().unwrap_or(0),
                                content_type: prop("Content-Type").to_owned(),
                                metadata: e
                                    .child("Metadata")
                                    .map(|m| {
                                        m.children
                                            .iter()
                                            .map(|c| (c.name.clone(), c.text.clone()))
                                            .collect()
                                    })
                                    .unwrap_or_default(),
                            },
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        let next_marker = root
            .child_text("NextMarker")
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .map(str::to_owned);
        Ok(BlobPage { blobs, next_marker })
    }
}

/// One blob.
#[derive(Debug, Clone)]
pub struct BlobClient {
    container: ContainerClient,
    name: String,
}

/// A lease held on a blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The lease id, given with each write under the lease.
    pub id: String,
}

/// How [`BlobClient::put`] writes.
#[derive(Debug, Clone, Default)]
pub struct PutOptions<'a> {
    /// The content type (none: the service's default).
    pub content_type: Option<&'a str>,
    /// User metadata.
    pub metadata: &'a [(String, String)],
    /// Only when the blob does not exist (`If-None-Match: *`); a 409 when
    /// it does.
    pub if_not_exists: bool,
}

impl BlobClient {
    /// The blob's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its container.
    pub fn container(&self) -> &ContainerClient {
        &self.container
    }

    /// `container/name`.
    fn what(&self) -> String {
        format!("blob '{}/{}'", self.container.name, self.name)
    }

    async fn send(
        &self,
        operation: &str,
        call: Call<'_>,
        ok: &[StatusCode],
    ) -> Result<Response, StorageError> {
        if self.name.is_empty() {
            return Err(StorageError::Config(format!(
                "a blob of container '{}' has an empty name",
                self.container.name
            )));
        }
        let segments: Vec<&str> = std::iter::once(self.container.name.as_str())
            .chain(self.name.split('/'))
            .collect();
        self.container
            .send(operation, &self.what(), &segments, call, ok)
            .await
    }

    /// Writes the blob (a block blob) with `content`; returns its new ETag.
    pub async fn put(
        &self,
        content: impl Into<Bytes>,
        options: PutOptions<'_>,
    ) -> Result<String, StorageError> {
        let mut call = Call::new(Method::PUT, &[]);
        call.body = content.into();
        call.content_type = options.content_type.unwrap_or("");
        call.ms_headers
            .push(("x-ms-blob-type".to_owned(), "BlockBlob".to_owned()));
        for (k, v) in options.metadata {
            call.ms_headers
                .push((format!("x-ms-meta-{}", k.to_ascii_lowercase()), v.clone()));
        }
        if options.if_not_exists {
            call.standard.push(("if-none-match", "*".to_owned()));
        }
        let r = self.send("Put Blob", call, &[StatusCode::CREATED]).await?;
        Ok(r.header("etag").unwrap_or_default().to_owned())
    }

    /// The blob's content and properties; `None` when it does not exist.
    pub async fn get(&self) -> Result<Option<(Bytes, BlobProperties)>, StorageError> {
        let got = self
            .send("Get Blob", Call::new(Method::GET, &[]), &[StatusCode::OK])
            .await;
        Ok(unless_missing(got)?.map(|r| {
            let props = properties(&r);
            (r.body, props)
        }))
    }

    /// The blob's properties and metadata; `None` when it does not exist.
    pub async fn properties(&self) -> Result<Option<BlobProperties>, StorageError> {
        let got = self
            .send(
                "Get Blob Properties",
                Call::new(Method::HEAD, &[]),
                &[StatusCode::OK],
            )
            .await;
        Ok(unless_missing(got)?.map(|r| properties(&r)))
    }

    /// Replaces the blob's metadata (under `lease` when one is held).
    pub async fn set_metadata(
        &self,
        metadata: &[(String, String)],
        lease: Option<&Lease>,
    ) -> Result<(), StorageError> {
        let query = [("comp", "metadata".to_owned())];
        let mut call = Call::new(Method::PUT, &query);
        for (k, v) in metadata {
            call.ms_headers
                .push((format!("x-ms-meta-{}", k.to_ascii_lowercase()), v.clone()));
        }
        if let Some(l) = lease {
            call.ms_headers
                .push(("x-ms-lease-id".to_owned(), l.id.clone()));
        }
        self.send("Set Blob Metadata", call, &[StatusCode::OK])
            .await
            .map(drop)
    }

    /// Deletes the blob; `Ok(false)` when it did not exist.
    pub async fn delete(&self) -> Result<bool, StorageError> {
        let deleted = self
            .send(
                "Delete Blob",
                Call::new(Method::DELETE, &[]),
                &[StatusCode::ACCEPTED],
            )
            .await;
        Ok(unless_missing(deleted)?.is_some())
    }

    /// Acquires a lease of `seconds` (15 to 60) on the blob; `Ok(None)`
    /// when another holds one.
    pub async fn acquire_lease(&self, seconds: u32) -> Result<Option<Lease>, StorageError> {
        let query = [("comp", "lease".to_owned())];
        let mut call = Call::new(Method::PUT, &query);
        call.ms_headers
            .push(("x-ms-lease-action".to_owned(), "acquire".to_owned()));
        call.ms_headers.push((
            "x-ms-lease-duration".to_owned(),
            seconds.clamp(15, 60).to_string(),
        ));
        match self
            .send("Lease Blob (acquire)", call, &[StatusCode::CREATED])
            .await
        {
            Ok(r) => Ok(Some(Lease {
                id: r.header("x-ms-lease-id").unwrap_or_default().to_owned(),
            })),
            Err(e) if e.status() == Some(409) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Releases a lease.
    pub async fn release_lease(&self, lease: &Lease) -> Result<(), StorageError> {
        self.lease_action("release", lease).await
    }

    /// Renews a lease for its duration.
    pub async fn renew_lease(&self, lease: &Lease) -> Result<(), StorageError> {
        self.lease_action("renew", lease).await
    }

    async fn lease_action(&self, action: &str, lease: &Lease) -> Result<(), StorageError> {
        let query = [("comp", "lease".to_owned())];
        let mut call = Call::new(Method::PUT, &query);
        call.ms_headers
            .push(("x-ms-lease-action".to_owned(), action.to_owned()));
        call.ms_headers
            .push(("x-ms-lease-id".to_owned(), lease.id.clone()));
        self.send(&format!("Lease Blob ({action})"), call, &[StatusCode::OK])
            .await
            .map(drop)
    }
}

/// A blob's properties from the headers of Get Blob or Get Blob
/// Properties.
fn properties(r: &Response) -> BlobProperties {
    let mut metadata: Vec<(String, String)> = r
        .headers
        .iter()
        .filter_map(|(k, v)| {
            let name = k.as_str().strip_prefix("x-ms-meta-")?;
            Some((name.to_owned(), v.to_str().ok()?.to_owned()))
        })
        .collect();
    metadata.sort();
    BlobProperties {
        etag: r.header("etag").unwrap_or_default().to_owned(),
        last_modified: time(r.header("last-modified")),
        content_length: r
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        content_type: r.header("content-type").unwrap_or_default().to_owned(),
        metadata,
    }
}
