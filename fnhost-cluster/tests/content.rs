//! Content by digest: a worker's cache refuses a manifest whose content
//! id, or a file whose sha256, is not the digest it asked for, even when
//! the manager (here a stand-in that lies) serves it with status 200.

#![allow(clippy::unwrap_used)]

use axum::Router;
use axum::extract::Path;
use axum::routing::get;
use fnhost_cluster::Error;
use fnhost_cluster::client::ManagerClient;
use fnhost_cluster::worker::ContentCache;
use fnhost_deploy::Digest;
use fnhost_deploy::store::{Manifest, ManifestEntry};

fn entry(path: &str, data: &[u8]) -> ManifestEntry {
    serde_json::from_value(serde_json::json!({
        "path": path, "hash": Digest::of(data).to_hex(), "size": data.len(), "mode": 0o100_644
    }))
    .unwrap()
}

/// A manager that answers every manifest with `manifest` and every blob
/// with `blob`.
async fn liar(manifest: Vec<u8>, blob: &'static [u8]) -> String {
    let app = Router::new()
        .route(
            "/cluster/v1/manifests/{d}",
            get(move |Path(_d): Path<String>| {
                let m = manifest.clone();
                async move { m }
            }),
        )
        .route(
            "/cluster/v1/blobs/{d}",
            get(move |Path(_d): Path<String>| async move { blob }),
        )
        .route(
            "/cluster/v1/blobs",
            axum::routing::post(move |body: axum::body::Bytes| async move {
                let asked: Vec<String> = serde_json::from_slice(&body).unwrap();
                let mut out = Vec::new();
                for _ in asked {
                    out.extend_from_slice(&(blob.len() as u64).to_be_bytes());
                    out.extend_from_slice(blob);
                }
                out
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = hyper_serve(listener, app).await;
    });
    format!("http://{addr}")
}

async fn hyper_serve(listener: tokio::net::TcpListener, app: Router) -> std::io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        let app = app.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                tower_service::Service::call(&mut app.clone(), req)
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .await;
        });
    }
}

#[tokio::test]
async fn a_manifest_or_blob_that_does_not_match_its_digest_is_refused() {
    let good = Manifest::new(vec![entry("host.json", b"{}"), entry("a.txt", b"hello")]);
    let digest = good.content_id().to_hex();
    let other = Manifest::new(vec![entry("host.json", b"{}")]);

    // The manifest served is another one.
    let url = liar(serde_json::to_vec(&other).unwrap(), b"hello").await;
    let dir = tempfile::tempdir().unwrap();
    let cache = ContentCache::open(dir.path()).unwrap();
    let client = ManagerClient::new(&url, "t").unwrap();
    let err = cache.fetch(&client, &digest).await.unwrap_err();
    assert!(
        matches!(&err, Error::DigestMismatch { what, .. } if what == "manifest"),
        "{err}"
    );
    assert!(err.to_string().contains("refused"), "{err}");
    assert!(cache.manifest(&digest).is_none(), "nothing cached");

    // The right manifest, but the files' bytes are not theirs.
    let url = liar(serde_json::to_vec(&good).unwrap(), b"tampered").await;
    let client = ManagerClient::new(&url, "t").unwrap();
    let err = cache.fetch(&client, &digest).await.unwrap_err();
    assert!(
        matches!(&err, Error::DigestMismatch { what, .. } if what == "blob"),
        "{err}"
    );
    let m = cache.manifest(&digest).unwrap();
    assert_eq!(cache.missing(&m).len(), 2, "no tampered blob kept");
    // The worker's path (blobs written straight into the app folder):
    // refused the same, no app folder left.
    let err = cache.app(&client, &digest).await.unwrap_err();
    assert!(matches!(&err, Error::DigestMismatch { .. }), "{err}");
    assert!(!cache.app_dir(&digest).exists());
    assert_eq!(cache.missing(&m).len(), 2, "no tampered blob kept");
    assert_eq!(
        std::fs::read_dir(cache.root().join("tmp")).unwrap().count(),
        0,
        "no half-made folder left"
    );
}
