//! TLS for the management endpoint: a certificate chain and a private key
//! in PEM files, served with rustls (ring provider), HTTP/1.1 only.

use std::io;
use std::path::Path;
use std::sync::Arc;

use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::{self, PemObject};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{self, InconsistentKeys, ServerConfig};

use crate::error::{Error, IoContext};

/// An error about `path`, with what was being done and why it failed.
fn invalid(what: &'static str, path: &Path, why: String) -> Error {
    Error::io(what, path, io::Error::new(io::ErrorKind::InvalidData, why))
}

fn pem_why(e: &pem::Error) -> String {
    match e {
        pem::Error::Io(e) => e.to_string(),
        other => format!("not valid PEM: {other}"),
    }
}

/// Reads `cert_path` (the certificate chain, the server's own first) and
/// `key_path` (a PKCS#8, PKCS#1 or SEC1 key), checks that they belong
/// together, and makes the acceptor (HTTP/1.1 by ALPN).
pub(super) fn acceptor(cert_path: &Path, key_path: &Path) -> crate::Result<TlsAcceptor> {
    let mut config = server_config(cert_path, key_path)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The rustls configuration of [`acceptor`], without ALPN (FTPS uses it
/// as it is).
pub(super) fn server_config(cert_path: &Path, key_path: &Path) -> crate::Result<ServerConfig> {
    const CERT: &str = "TLS certificate";
    const KEY: &str = "TLS private key";
    let cert_pem = std::fs::read(cert_path).ctx("cannot read the TLS certificate", cert_path)?;
    let key_pem = std::fs::read(key_path).ctx("cannot read the TLS private key", key_path)?;

    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(CERT, cert_path, pem_why(&e)))?;
    if chain.is_empty() {
        return Err(invalid(
            CERT,
            cert_path,
            "no certificate found (expected a PEM \"BEGIN CERTIFICATE\" block)".to_string(),
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
        pem::Error::NoItemsFound => invalid(
            KEY,
            key_path,
            "no private key found (expected a PEM \"BEGIN PRIVATE KEY\", \
             \"BEGIN RSA PRIVATE KEY\" or \"BEGIN EC PRIVATE KEY\" block)"
                .to_string(),
        ),
        e => invalid(KEY, key_path, pem_why(&e)),
    })?;

    let provider = Arc::new(ring::default_provider());
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| invalid(KEY, key_path, format!("not a usable private key: {e}")))?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
            return Err(invalid(
                KEY,
                key_path,
                format!("does not match the certificate in {}", cert_path.display()),
            ));
        }
        Err(e) => {
            return Err(invalid(
                CERT,
                cert_path,
                format!("not a usable certificate: {e}"),
            ));
        }
    }

    Ok(ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(CERT, cert_path, format!("no usable TLS version: {e}")))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(certified))))
}

/// The serving core's handshake for HTTPS.
pub(super) struct Tls(pub(super) TlsAcceptor);

impl fnhost_core::http::serve::Handshake for Tls {
    type Stream = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;

    fn handshake(
        &self,
        stream: tokio::net::TcpStream,
    ) -> fnhost_core::http::serve::BoxFuture<io::Result<Self::Stream>> {
        let accept = self.0.accept(stream);
        Box::pin(accept)
    }

    fn name(&self) -> &'static str {
        "TLS handshake"
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn missing_and_invalid_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        let e = acceptor(&cert, &key).err().unwrap().to_string();
        assert!(e.contains("cert.pem") && e.contains("cannot read"), "{e}");
        std::fs::write(&cert, "not pem").unwrap();
        std::fs::write(&key, "not pem").unwrap();
        let e = acceptor(&cert, &key).err().unwrap().to_string();
        assert!(
            e.contains("cert.pem") && e.contains("no certificate"),
            "{e}"
        );
    }
}
