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

use hyper::Method;

use crate::client::ManagerClient;
use crate::error::{Error, Result};
use crate::sha256_hex;

/// Batches of blobs fetched at once.
const PARALLEL_FETCHES: usize = 4;
/// Blobs asked for in one request.
const BATCH: usize = 256;

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
        check_digest(digest, data)?;
        self.store
            .put_hashed(digest, data)
            .map_err(|e| Error::io(self.store.blob_path(digest), e))?;
        Ok(())
    }

    /// Checks and stores the answer to `POST /blobs` for `asked`: each
    /// blob's length (8 bytes, big-endian) then its content, in order.
    fn put_batch(&self, asked: &[Digest], data: &[u8]) -> Result<()> {
        for_each_framed(asked, data, |d, blob| self.put_blob(d, blob))
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
        let manifest = self.manifest_from(client, digest).await?;
        let missing = self.missing(&manifest);
        let cache = self.clone();
        fetch_blobs(
            client,
            missing,
            Arc::new(move |asked, data| cache.put_batch(asked, data)),
        )
        .await?;
        Ok(manifest)
    }

    /// The manifest `digest`, from the cache or the manager.
    async fn manifest_from(&self, client: &ManagerClient, digest: &str) -> Result<Manifest> {
        if let Some(m) = self.manifest(digest) {
            return Ok(m);
        }
        let data = client
            .get_bytes(&format!("/manifests/{digest}"), Duration::from_secs(60))
            .await?;
        let (cache, d) = (self.clone(), digest.to_string());
        tokio::task::spawn_blocking(move || cache.put_manifest(&d, &data))
            .await
            .map_err(|e| Error::Invalid(e.to_string()))?
    }

    /// The app folder of the manifest `digest`: at once when it is in the
    /// cache; else made from the cached blobs and the missing ones, which
    /// are fetched, checked, written straight into the new folder and
    /// adopted by the cache (a hard link), so each new file is written
    /// once.
    pub async fn app(&self, client: &ManagerClient, digest: &str) -> Result<(PathBuf, Manifest)> {
        let manifest = self.manifest_from(client, digest).await?;
        let dest = self.app_dir(digest);
        if dest.is_dir() {
            return Ok((dest, manifest));
        }
        let tmp = self
            .root
            .join("tmp")
            .join(format!("app-{digest}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        make_dirs(&manifest, &tmp)?;
        let missing = self.missing(&manifest);
        let wanted: std::collections::HashSet<Digest> = missing.iter().copied().collect();
        let mut by_digest: std::collections::HashMap<Digest, Vec<ManifestEntry>> =
            std::collections::HashMap::new();
        let mut present = Vec::new();
        for f in &manifest.files {
            if wanted.contains(&f.hash) {
                by_digest.entry(f.hash).or_default().push(f.clone());
            } else {
                present.push(f.clone());
            }
        }
        let by_digest = Arc::new(by_digest);
        let (cache, dir) = (self.clone(), tmp.clone());
        let received = fetch_blobs(
            client,
            missing,
            Arc::new(move |asked, data| cache.write_batch(asked, data, &by_digest, &dir)),
        )
        .await;
        let finished = match received {
            Ok(()) => {
                let (store, dir) = (self.store.clone(), tmp.clone());
                tokio::task::spawn_blocking(move || place_all(&store, &present, &dir, true))
                    .await
                    .map_err(|e| Error::Invalid(e.to_string()))?
            }
            Err(e) => Err(e),
        };
        if let Err(e) = finished {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
        match fs::rename(&tmp, &dest) {
            Ok(()) => Ok((dest, manifest)),
            Err(_) if dest.is_dir() => {
                let _ = fs::remove_dir_all(&tmp);
                Ok((dest, manifest))
            }
            Err(e) => Err(Error::io(&dest, e)),
        }
    }

    /// Checks an answer to `POST /blobs` and writes each blob straight
    /// into the app folder `dir` at its paths, the first one adopted by
    /// the cache.
    fn write_batch(
        &self,
        asked: &[Digest],
        data: &[u8],
        by_digest: &std::collections::HashMap<Digest, Vec<ManifestEntry>>,
        dir: &Path,
    ) -> Result<()> {
        for_each_framed(asked, data, |d, blob| {
            check_digest(d, blob)?;
            let entries = by_digest.get(d).map(Vec::as_slice).unwrap_or_default();
            let Some(first) = entries
                .first()
                .filter(|_| !entries.iter().any(|e| e.is_symlink()))
            else {
                // Symbolic links (their blob is the target): through the cache.
                self.store
                    .put_hashed(d, blob)
                    .map_err(|e| Error::io(self.store.blob_path(d), e))?;
                return place_all(&self.store, entries, dir, true);
            };
            let to = dir.join(&first.path);
            write_file(&to, blob, first.is_executable())?;
            self.store
                .adopt(d, &to)
                .map_err(|e| Error::io(self.store.blob_path(d), e))?;
            place_all(&self.store, &entries[1..], dir, true)
        })
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

/// Checks that `data` is the blob `digest`.
fn check_digest(digest: &Digest, data: &[u8]) -> Result<()> {
    let actual = sha256_hex(data);
    if actual != digest.to_hex() {
        return Err(Error::DigestMismatch {
            what: "blob".into(),
            expected: digest.to_hex(),
            actual,
        });
    }
    Ok(())
}

/// Walks an answer to `POST /blobs` for `asked`: each blob's length (8
/// bytes, big-endian) then its content, in order.
fn for_each_framed(
    asked: &[Digest],
    mut data: &[u8],
    mut f: impl FnMut(&Digest, &[u8]) -> Result<()>,
) -> Result<()> {
    for d in asked {
        let short = || Error::Manager {
            url: "POST /cluster/v1/blobs".into(),
            message: format!("the answer ends before blob {d}"),
        };
        let (len, rest) = data.split_first_chunk::<8>().ok_or_else(short)?;
        let len = usize::try_from(u64::from_be_bytes(*len)).map_err(|_| short())?;
        if rest.len() < len {
            return Err(short());
        }
        let (blob, rest) = rest.split_at(len);
        f(d, blob)?;
        data = rest;
    }
    Ok(())
}

/// What receives each batch of blobs: the digests asked, the answer.
type Sink = Arc<dyn Fn(&[Digest], &[u8]) -> Result<()> + Send + Sync>;

/// Fetches `missing` in batches, a few at once, handing each answer to
/// `sink` on a blocking thread.
async fn fetch_blobs(client: &ManagerClient, missing: Vec<Digest>, sink: Sink) -> Result<()> {
    let mut set = tokio::task::JoinSet::new();
    let mut batches = missing.chunks(BATCH).map(<[Digest]>::to_vec);
    let mut spawn_next = |set: &mut tokio::task::JoinSet<Result<()>>| {
        let Some(batch) = batches.next() else {
            return false;
        };
        let (client, sink) = (client.clone(), sink.clone());
        set.spawn(async move {
            let asked: Vec<String> = batch.iter().map(Digest::to_hex).collect();
            let data = client
                .send_for_bytes(Method::POST, "/blobs", &asked, Duration::from_secs(300))
                .await?;
            tokio::task::spawn_blocking(move || sink(&batch, &data))
                .await
                .map_err(|e| Error::Invalid(e.to_string()))?
        });
        true
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
    Ok(())
}

/// Writes a new file with its mode.
fn write_file(to: &Path, data: &[u8], executable: bool) -> Result<()> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(if executable { 0o755 } else { 0o644 });
    }
    let mut f = opts.open(to).map_err(|e| Error::io(to, e))?;
    io::Write::write_all(&mut f, data).map_err(|e| Error::io(to, e))
}

/// Creates the folders of `manifest` under `dest`.
fn make_dirs(manifest: &Manifest, dest: &Path) -> Result<()> {
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
    Ok(())
}

/// Writes every file of `manifest` under `dest`: hard links to the blobs
/// (`link`) or copies; executables always copied with their mode.
fn write_tree(store: &FsStore, manifest: &Manifest, dest: &Path, link: bool) -> Result<()> {
    make_dirs(manifest, dest)?;
    place_all(store, &manifest.files, dest, link)
}

/// Places `files` from the cache under `dest`, on a few threads.
fn place_all(store: &FsStore, files: &[ManifestEntry], dest: &Path, link: bool) -> Result<()> {
    if files.len() < 64 {
        return files.iter().try_for_each(|f| place(store, f, dest, link));
    }
    let threads = std::thread::available_parallelism()
        .map(|n| n.get() * 2)
        .unwrap_or(4)
        .clamp(2, 8);
    let chunk = files.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = files
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
