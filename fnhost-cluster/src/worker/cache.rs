//! The worker's content cache, shared by every app and version: blobs by
//! sha256 (fnhost-deploy's [`FsStore`]), manifests by content id, and
//! the app folders materialised from them (`apps/{manifest}`, made in a
//! temporary folder and renamed into place, so a folder that exists is
//! whole). Everything that comes in is checked against its digest: a
//! blob whose sha256 or a manifest whose content id differs is refused.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fnhost_deploy::store::{FsStore, Manifest, ManifestEntry};
use fnhost_deploy::{Digest, Store};

use crate::client::ManagerClient;
use crate::error::{Error, Result};
use crate::sha256_hex;

/// Blobs fetched at once.
const PARALLEL_FETCHES: usize = 16;

/// A content cache folder.
#[derive(Debug, Clone)]
pub struct ContentCache {
    root: PathBuf,
    store: Arc<FsStore>,
}

impl ContentCache {
    /// Opens (or creates) the cache at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<ContentCache> {
        let root = root.into();
        for d in ["manifests", "apps", "tmp"] {
            fs::create_dir_all(root.join(d)).map_err(|e| Error::io(root.join(d), e))?;
        }
        let blobs = root.join("blobs");
        let store = FsStore::open(&blobs).map_err(|e| Error::io(&blobs, e))?;
        Ok(ContentCache {
            root,
            store: Arc::new(store),
        })
    }

    /// The cache folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn manifest_path(&self, digest: &str) -> PathBuf {
        self.root.join("manifests").join(format!("{digest}.json"))
    }

    /// The app folder of a manifest, when materialised.
    pub fn app_dir(&self, digest: &str) -> PathBuf {
        self.root.join("apps").join(digest)
    }

    /// A cached manifest (checked again against its digest).
    pub fn manifest(&self, digest: &str) -> Option<Manifest> {
        let data = fs::read(self.manifest_path(digest)).ok()?;
        let m: Manifest = serde_json::from_slice(&data).ok()?;
        (m.content_id().to_hex() == digest).then_some(m)
    }

    /// Checks a manifest received for `digest`; caches it.
    pub fn put_manifest(&self, digest: &str, data: &[u8]) -> Result<Manifest> {
        let m: Manifest = serde_json::from_slice(data).map_err(|e| Error::Manager {
            url: format!("manifest {digest}"),
            message: format!("not a manifest: {e}"),
        })?;
        let actual = m.content_id().to_hex();
        if actual != digest {
            return Err(Error::DigestMismatch {
                what: "manifest".into(),
                expected: digest.into(),
                actual,
            });
        }
        let path = self.manifest_path(digest);
        let tmp = self
            .root
            .join("tmp")
            .join(format!("{digest}.{}", std::process::id()));
        fs::write(&tmp, data).map_err(|e| Error::io(&tmp, e))?;
        fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
        Ok(m)
    }

    /// Checks a blob received for `digest`; stores it.
    pub fn put_blob(&self, digest: &Digest, data: &[u8]) -> Result<()> {
        let actual = sha256_hex(data);
        if actual != digest.to_hex() {
            return Err(Error::DigestMismatch {
                what: "blob".into(),
                expected: digest.to_hex(),
                actual,
            });
        }
        self.store
            .put_hashed(digest, data)
            .map_err(|e| Error::io(self.store.blob_path(digest), e))?;
        Ok(())
    }

    /// The blobs of `manifest` not in the cache.
    pub fn missing(&self, manifest: &Manifest) -> Vec<Digest> {
        manifest
            .blobs()
            .into_iter()
            .filter(|d| !self.store.contains(d).unwrap_or(false))
            .collect()
    }

    /// The manifest `digest`, from the cache or the manager, with every
    /// blob it needs in the cache.
    pub async fn fetch(&self, client: &ManagerClient, digest: &str) -> Result<Manifest> {
        let manifest = match self.manifest(digest) {
            Some(m) => m,
            None => {
                let data = client
                    .get_bytes(&format!("/manifests/{digest}"), Duration::from_secs(60))
                    .await?;
                let (cache, d) = (self.clone(), digest.to_string());
                tokio::task::spawn_blocking(move || cache.put_manifest(&d, &data))
                    .await
                    .map_err(|e| Error::Invalid(e.to_string()))??
            }
        };
        let missing = self.missing(&manifest);
        let mut set = tokio::task::JoinSet::new();
        let mut queue = missing.into_iter();
        let mut spawn_next = |set: &mut tokio::task::JoinSet<Result<()>>| {
            if let Some(d) = queue.next() {
                let (client, cache) = (client.clone(), self.clone());
                set.spawn(async move {
                    let data = client
                        .get_bytes(&format!("/blobs/{}", d.to_hex()), Duration::from_secs(300))
                        .await?;
                    tokio::task::spawn_blocking(move || cache.put_blob(&d, &data))
                        .await
                        .map_err(|e| Error::Invalid(e.to_string()))?
                });
                true
            } else {
                false
            }
        };
        for _ in 0..PARALLEL_FETCHES {
            if !spawn_next(&mut set) {
                break;
            }
        }
        while let Some(done) = set.join_next().await {
            done.map_err(|e| Error::Invalid(e.to_string()))??;
            spawn_next(&mut set);
        }
        Ok(manifest)
    }

    /// The app folder of `manifest` (content id `digest`), materialised
    /// from the cached blobs when it is not there yet.
    pub fn materialise(&self, digest: &str, manifest: &Manifest) -> Result<PathBuf> {
        let dest = self.app_dir(digest);
        if dest.is_dir() {
            return Ok(dest);
        }
        let tmp = self
            .root
            .join("tmp")
            .join(format!("app-{digest}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        write_tree(&self.store, manifest, &tmp, true)?;
        match fs::rename(&tmp, &dest) {
            Ok(()) => Ok(dest),
            // Another process made it first: theirs is whole too.
            Err(_) if dest.is_dir() => {
                let _ = fs::remove_dir_all(&tmp);
                Ok(dest)
            }
            Err(e) => Err(Error::io(&dest, e)),
        }
    }

    /// Writes `manifest`'s files into `dest` as copies (for `fnhost
    /// fetch`: the folder outlives the cache).
    pub fn copy_into(&self, manifest: &Manifest, dest: &Path) -> Result<()> {
        write_tree(&self.store, manifest, dest, false)
    }
}

/// Writes every file of `manifest` under `dest`: hard links to the blobs
/// (`link`) or copies; executables always copied with their mode.
fn write_tree(store: &FsStore, manifest: &Manifest, dest: &Path, link: bool) -> Result<()> {
    fs::create_dir_all(dest).map_err(|e| Error::io(dest, e))?;
    let mut dirs: Vec<PathBuf> = manifest
        .files
        .iter()
        .filter_map(|f| Path::new(&f.path).parent().map(|p| dest.join(p)))
        .collect();
    dirs.dedup();
    for d in &dirs {
        fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
    }
    let threads = std::thread::available_parallelism()
        .map(|n| n.get() * 2)
        .unwrap_or(4)
        .clamp(2, 8);
    let chunk = manifest.files.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = manifest
            .files
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || -> Result<()> {
                    for f in part {
                        place(store, f, dest, link)?;
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join()
                .map_err(|_| Error::io(dest, "a thread panicked"))??;
        }
        Ok(())
    })
}

fn place(store: &FsStore, f: &ManifestEntry, dest: &Path, link: bool) -> Result<()> {
    if f.path.split('/').any(|c| c == ".." || c.is_empty()) || f.path.starts_with('/') {
        return Err(Error::Invalid(format!(
            "manifest entry {:?} leaves the app folder; refused",
            f.path
        )));
    }
    let blob = store.blob_path(&f.hash);
    let to = dest.join(&f.path);
    let fail = |e: io::Error| Error::io(&to, e);
    if f.is_symlink() {
        let target = fs::read_to_string(&blob).map_err(fail)?;
        #[cfg(unix)]
        std::os::unix::fs::symlink(target, &to).map_err(fail)?;
        #[cfg(not(unix))]
        fs::write(&to, target).map_err(fail)?;
        return Ok(());
    }
    if link && !f.is_executable() && fs::hard_link(&blob, &to).is_ok() {
        return Ok(());
    }
    fs::copy(&blob, &to).map_err(fail)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = if f.is_executable() { 0o755 } else { 0o644 };
        fs::set_permissions(&to, fs::Permissions::from_mode(mode)).map_err(fail)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_blob_or_manifest_that_does_not_match_its_digest_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ContentCache::open(dir.path()).unwrap();
        let good = Digest::of(b"hello");
        cache.put_blob(&good, b"hello").unwrap();
        let err = cache.put_blob(&good, b"tampered").unwrap_err();
        assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
        let m = Manifest::new(vec![ManifestEntry {
            path: "a.txt".into(),
            hash: good,
            size: 5,
            mode: 0o100_644,
        }]);
        let data = serde_json::to_vec(&m).unwrap();
        let digest = m.content_id().to_hex();
        let wrong = Digest::of(b"other").to_hex();
        assert!(matches!(
            cache.put_manifest(&wrong, &data).unwrap_err(),
            Error::DigestMismatch { .. }
        ));
        let m2 = cache.put_manifest(&digest, &data).unwrap();
        assert!(cache.missing(&m2).is_empty());
        let app = cache.materialise(&digest, &m2).unwrap();
        assert_eq!(fs::read_to_string(app.join("a.txt")).unwrap(), "hello");
    }
}
