//! Storage account connection strings, as Azure's SDKs read them.

use std::fmt;

use base64::Engine as _;
use hyper::Uri;

use super::StorageError;

/// The account name of the storage emulator (Azurite).
pub const DEV_ACCOUNT_NAME: &str = "devstoreaccount1";

/// The account key of the storage emulator; it is published in Azure's
/// documentation and the same in every emulator.
pub const DEV_ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// How requests to the account are authorised.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// SharedKey: an HMAC-SHA256 of each request with the account key.
    SharedKey {
        /// The account key, decoded from base64.
        key: Vec<u8>,
    },
    /// A shared access signature, added to each request's query.
    Sas {
        /// The signature's query parameters, without a leading `?`.
        query: String,
    },
}

impl fmt::Debug for Credentials {
    // Never prints a key or a signature.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::SharedKey { .. } => f.write_str("SharedKey(..)"),
            Credentials::Sas { .. } => f.write_str("Sas(..)"),
        }
    }
}

/// A storage account: its name, credentials, queue and blob endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageAccount {
    /// The account name (`devstoreaccount1` for the emulator).
    pub name: String,
    /// How requests are authorised.
    pub credentials: Credentials,
    /// The queue service endpoint, such as
    /// `https://myaccount.queue.core.windows.net` or, path-style,
    /// `http://127.0.0.1:10001/devstoreaccount1`; no trailing `/`.
    pub queue_endpoint: String,
    /// The blob service endpoint, such as
    /// `https://myaccount.blob.core.windows.net` or
    /// `http://127.0.0.1:10000/devstoreaccount1`; no trailing `/`.
    pub blob_endpoint: String,
}

impl StorageAccount {
    /// The emulator's account on its usual ports (blob 127.0.0.1:10000,
    /// queue 10001), as `UseDevelopmentStorage=true` means.
    pub fn development() -> StorageAccount {
        Self::development_at("http://127.0.0.1")
    }

    /// The emulator's account with its queue service at `queue_endpoint`
    /// (such as `http://127.0.0.1:43125`, the account is added as the
    /// path).
    pub fn emulator(queue_endpoint: &str) -> StorageAccount {
        let endpoint = format!(
            "{}/{DEV_ACCOUNT_NAME}",
            queue_endpoint.trim_end_matches('/')
        );
        StorageAccount {
            name: DEV_ACCOUNT_NAME.to_owned(),
            credentials: dev_key(),
            queue_endpoint: endpoint.clone(),
            blob_endpoint: endpoint,
        }
    }

    /// The same account with its blob service at `blob_endpoint` (such as
    /// `http://127.0.0.1:43126`; the account is added as the path).
    pub fn with_emulator_blob(mut self, blob_endpoint: &str) -> StorageAccount {
        self.blob_endpoint = format!("{}/{}", blob_endpoint.trim_end_matches('/'), self.name);
        self
    }

    fn development_at(proxy: &str) -> StorageAccount {
        let base = proxy.trim_end_matches('/');
        StorageAccount {
            name: DEV_ACCOUNT_NAME.to_owned(),
            credentials: dev_key(),
            queue_endpoint: format!("{base}:10001/{DEV_ACCOUNT_NAME}"),
            blob_endpoint: format!("{base}:10000/{DEV_ACCOUNT_NAME}"),
        }
    }

    /// Reads an account connection string:
    /// `DefaultEndpointsProtocol=https;AccountName=...;AccountKey=...;EndpointSuffix=core.windows.net`,
    /// with an optional `QueueEndpoint=...`, or `SharedAccessSignature=...`
    /// in place of the key; or `UseDevelopmentStorage=true` (with an
    /// optional `DevelopmentStorageProxyUri=...`). Keys are compared
    /// ignoring case.
    pub fn parse(connection_string: &str) -> Result<StorageAccount, StorageError> {
        let mut protocol = None;
        let mut name = None;
        let mut key = None;
        let mut sas = None;
        let mut suffix = None;
        let mut queue_endpoint = None;
        let mut blob_endpoint = None;
        let mut development = false;
        let mut proxy = None;
        for part in connection_string.split(';') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let Some((k, v)) = part.split_once('=') else {
                return Err(config(format!(
                    "the connection string has a part without '=' ({})",
                    redact(part)
                )));
            };
            let v = v.trim().to_owned();
            match k.trim().to_ascii_lowercase().as_str() {
                "defaultendpointsprotocol" => protocol = Some(v),
                "accountname" => name = Some(v),
                "accountkey" => key = Some(v),
                "sharedaccesssignature" => sas = Some(v),
                "endpointsuffix" => suffix = Some(v),
                "queueendpoint" => queue_endpoint = Some(v),
                "blobendpoint" => blob_endpoint = Some(v),
                "usedevelopmentstorage" => development = v.eq_ignore_ascii_case("true"),
                "developmentstorageproxyuri" => proxy = Some(v),
                // Table and file endpoints are not fnhost's concern.
                _ => {}
            }
        }
        if development {
            return Ok(match proxy {
                Some(p) => Self::development_at(&p),
                None => Self::development(),
            });
        }
        let Some(name) = name.filter(|n| !n.is_empty()) else {
            return Err(config(
                "the connection string has no AccountName (write DefaultEndpointsProtocol=https;AccountName=...;AccountKey=...;EndpointSuffix=core.windows.net, or UseDevelopmentStorage=true for Azurite)".to_owned(),
            ));
        };
        let credentials = match (key, sas) {
            (Some(key), _) => {
                let key = base64::engine::general_purpose::STANDARD
                    .decode(key.as_bytes())
                    .map_err(|_| config("the AccountKey is not base64".to_owned()))?;
                Credentials::SharedKey { key }
            }
            (None, Some(sas)) => Credentials::Sas {
                query: sas.trim_start_matches('?').to_owned(),
            },
            (None, None) => {
                return Err(config(
                    "the connection string has neither AccountKey nor SharedAccessSignature"
                        .to_owned(),
                ));
            }
        };
        let protocol = protocol
            .unwrap_or_else(|| "https".to_owned())
            .to_ascii_lowercase();
        let suffix = suffix.unwrap_or_else(|| "core.windows.net".to_owned());
        let endpoint = |given: Option<String>, service: &str| -> Result<String, StorageError> {
            let e = match given {
                Some(e) => e.trim_end_matches('/').to_owned(),
                None => format!("{protocol}://{name}.{service}.{suffix}"),
            };
            let uri: Uri = e.parse().map_err(|err| {
                config(format!("the {service} endpoint '{e}' is not a URL: {err}"))
            })?;
            if uri.scheme_str().is_none() || uri.host().is_none() {
                return Err(config(format!(
                    "the {service} endpoint '{e}' is not an absolute http(s) URL"
                )));
            }
            Ok(e)
        };
        let queue_endpoint = endpoint(queue_endpoint, "queue")?;
        let blob_endpoint = endpoint(blob_endpoint, "blob")?;
        Ok(StorageAccount {
            name,
            credentials,
            queue_endpoint,
            blob_endpoint,
        })
    }
}

fn dev_key() -> Credentials {
    Credentials::SharedKey {
        key: base64::engine::general_purpose::STANDARD
            .decode(DEV_ACCOUNT_KEY)
            .unwrap_or_default(),
    }
}

fn config(message: String) -> StorageError {
    StorageError::Config(message)
}

/// A part of a connection string, with the value hidden.
fn redact(part: &str) -> String {
    let head: String = part.chars().take(12).collect();
    format!("'{head}...'")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn development_storage() {
        let a = StorageAccount::parse("UseDevelopmentStorage=true").unwrap();
        assert_eq!(a.name, "devstoreaccount1");
        assert_eq!(a.queue_endpoint, "http://127.0.0.1:10001/devstoreaccount1");
        assert_eq!(a.blob_endpoint, "http://127.0.0.1:10000/devstoreaccount1");
        let a = StorageAccount::parse(
            "UseDevelopmentStorage=true;DevelopmentStorageProxyUri=http://10.0.0.5",
        )
        .unwrap();
        assert_eq!(a.queue_endpoint, "http://10.0.0.5:10001/devstoreaccount1");
    }

    #[test]
    fn account_strings() {
        let a = StorageAccount::parse(
            "DefaultEndpointsProtocol=https;AccountName=acme;AccountKey=a2V5;EndpointSuffix=core.chinacloudapi.cn",
        )
        .unwrap();
        assert_eq!(a.queue_endpoint, "https://acme.queue.core.chinacloudapi.cn");
        assert_eq!(a.blob_endpoint, "https://acme.blob.core.chinacloudapi.cn");
        assert_eq!(
            a.credentials,
            Credentials::SharedKey {
                key: b"key".to_vec()
            }
        );
        let a = StorageAccount::parse(&format!(
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={DEV_ACCOUNT_KEY};QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1/;"
        ))
        .unwrap();
        assert_eq!(a.queue_endpoint, "http://127.0.0.1:10001/devstoreaccount1");
        let a = StorageAccount::parse("accountname=x;sharedaccesssignature=?sv=1&sig=abc").unwrap();
        assert_eq!(
            a.credentials,
            Credentials::Sas {
                query: "sv=1&sig=abc".into()
            }
        );
        assert_eq!(a.queue_endpoint, "https://x.queue.core.windows.net");
    }

    #[test]
    fn bad_strings_say_why_without_the_key() {
        let e = StorageAccount::parse("AccountKey=c2VjcmV0").unwrap_err();
        assert!(e.to_string().contains("AccountName"), "{e}");
        let e = StorageAccount::parse("AccountName=a;AccountKey=not base64!").unwrap_err();
        assert!(e.to_string().contains("base64"), "{e}");
        let e = StorageAccount::parse("AccountName=a;secretstuffhere").unwrap_err();
        assert!(!e.to_string().contains("secretstuffhere"), "{e}");
        assert!(format!("{:?}", StorageAccount::development()).contains("SharedKey(..)"));
    }
}
