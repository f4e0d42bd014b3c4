//! The content store: files addressed by their sha256, written once and
//! shared by every deployment, and one manifest per deployment.
//!
//! [`Store`] is the small trait a backend implements; [`FsStore`] keeps
//! everything in a folder:
//!
//! ```text
//! store/blobs/ab/cdef…   one read-only file per distinct content, named by its sha256
//! store/manifests/APP/ID.json
//! store/blobs/ab/.tmp-*  blobs being written (removed by the next garbage collection)
//! ```
//!
//! A blob is written to a temporary file, checked against its hash and
//! renamed into place, so a blob's name always matches its content; an
//! existing blob is never rewritten. [`fsck`] re-hashes blobs and checks every
//! manifest; [`collect_garbage`] removes blobs that no manifest uses.
//!
//! Long (about 1,000 lines) because it holds the store's four parts side by
//! side: `Digest`/`Hasher`, `Manifest`, the `Store` trait with `FsStore`, and
//! `fsck`/`collect_garbage`; about 60 lines are tests.

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::fsutil;

/// How the names of blobs being written start (beside the blob's final
/// name, in its folder).
const TEMP_PREFIX: &str = ".tmp-";

/// A sha256 content hash.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

impl Digest {
    /// The hash of `data`.
    pub fn of(data: &[u8]) -> Digest {
        Digest(Sha256::digest(data).into())
    }

    /// A digest from its raw bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Digest {
        Digest(bytes)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The hash as 64 lower-case hex digits.
    pub fn to_hex(&self) -> String {
        fsutil::hex(&self.0)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

/// The text is not 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a sha256 digest (64 hex digits): {0:?}")]
pub struct ParseDigestError(String);

impl FromStr for Digest {
    type Err = ParseDigestError;

    fn from_str(s: &str) -> Result<Digest, ParseDigestError> {
        let b = s.as_bytes();
        if b.len() != 64 {
            return Err(ParseDigestError(s.to_string()));
        }
        let mut out = [0u8; 32];
        for (i, pair) in b.chunks(2).enumerate() {
            let hi = hex_val(pair[0]).ok_or_else(|| ParseDigestError(s.to_string()))?;
            let lo = hex_val(pair[1]).ok_or_else(|| ParseDigestError(s.to_string()))?;
            out[i] = (hi << 4) | lo;
        }
        Ok(Digest(out))
    }
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Digest, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Streams data through sha256.
#[derive(Debug, Default, Clone)]
pub struct Hasher(Sha256);

impl Hasher {
    /// A new hasher.
    pub fn new() -> Hasher {
        Hasher::default()
    }

    /// Adds data.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// The digest of everything added.
    pub fn finish(self) -> Digest {
        Digest(self.0.finalize().into())
    }
}

/// The file type bits of a regular file in [`ManifestEntry::mode`].
pub const MODE_FILE: u32 = 0o100_000;
/// The file type bits of a symbolic link in [`ManifestEntry::mode`] (the
/// blob holds the link's target).
pub const MODE_SYMLINK: u32 = 0o120_000;
const MODE_TYPE_MASK: u32 = 0o170_000;

/// One file of a deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// The path relative to the app root, with `/` separators, never `..`.
    pub path: String,
    /// The content's sha256 (for a symlink: its target's).
    pub hash: Digest,
    /// The content's size in bytes.
    pub size: u64,
    /// Unix mode: type bits ([`MODE_FILE`] or [`MODE_SYMLINK`]) and
    /// permission bits (`0o644`, `0o755`).
    pub mode: u32,
}

impl ManifestEntry {
    /// Whether the entry is a symbolic link.
    pub fn is_symlink(&self) -> bool {
        self.mode & MODE_TYPE_MASK == MODE_SYMLINK
    }

    /// Whether any execute bit is set.
    pub fn is_executable(&self) -> bool {
        !self.is_symlink() && self.mode & 0o111 != 0
    }
}

/// The files of one deployment, sorted by path.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The files, sorted by path, each path once.
    pub files: Vec<ManifestEntry>,
}

impl Manifest {
    /// A manifest of these files (sorted here).
    pub fn new(mut files: Vec<ManifestEntry>) -> Manifest {
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Manifest { files }
    }

    /// The content id: the sha256 of the sorted (path, mode, hash) list. Two
    /// deployments of the same tree have the same id.
    pub fn content_id(&self) -> Digest {
        let mut h = Hasher::new();
        // The mode in octal digits, as `format!("{:o}")` writes it, without
        // an allocation per file.
        let mut octal = [0u8; 11];
        for f in &self.files {
            h.update(f.path.as_bytes());
            h.update(&[0]);
            let (mut at, mut mode) = (octal.len(), f.mode);
            loop {
                at -= 1;
                octal[at] = b'0' + (mode & 7) as u8;
                mode >>= 3;
                if mode == 0 {
                    break;
                }
            }
            h.update(&octal[at..]);
            h.update(&[0]);
            h.update(f.hash.as_bytes());
        }
        h.finish()
    }

    /// The total size of the files.
    pub fn total_size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// The distinct blobs it uses.
    pub fn blobs(&self) -> BTreeSet<Digest> {
        self.files.iter().map(|f| f.hash).collect()
    }

    /// The entry for a path.
    pub fn get(&self, path: &str) -> Option<&ManifestEntry> {
        self.files
            .binary_search_by(|f| f.path.as_str().cmp(path))
            .ok()
            .map(|i| &self.files[i])
    }
}

/// Which deployment a manifest belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ManifestKey {
    /// The app.
    pub app: String,
    /// The deployment id.
    pub deployment: String,
}

impl ManifestKey {
    /// A key.
    pub fn new(app: impl Into<String>, deployment: impl Into<String>) -> ManifestKey {
        ManifestKey {
            app: app.into(),
            deployment: deployment.into(),
        }
    }
}

impl fmt::Display for ManifestKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.app, self.deployment)
    }
}

/// How hard the store pushes data to disk before a deployment is activated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Durability {
    /// Every new blob, the manifest, the materialised folder and the
    /// active pointer are flushed to disk before activation (the final
    /// record just after): a power cut never activates content that is not
    /// on disk.
    #[default]
    Full,
    /// Manifests and pointers are flushed before activation, the final
    /// record just after; blobs and the materialised folder are left to
    /// the kernel. Survives any process crash (kill -9), not a power cut.
    /// Faster for many small files.
    Process,
}

/// Storage for blobs and manifests.
///
/// The contract, which [`crate::site::Site`] relies on:
///
/// - [`Store::put`] makes a blob visible only once its whole content is
///   stored and checked against its digest; a blob, once stored, never
///   changes; putting an existing blob is a cheap no-op.
/// - [`Store::put_manifest`] is atomic: a reader sees the whole manifest or
///   none.
/// - [`Store::sync`] returns once the given blobs survive a power cut.
/// - Errors are `io::Error`s; a backend reports its own failures (a full
///   disk, a refused request) with the nearest `io::ErrorKind`.
///
/// Implement it to keep content elsewhere (an object store, a database);
/// [`FsStore`] is the folder implementation. `fnhost_deploy::testkit`
/// (feature `testkit`) has a conformance suite for stores,
/// `check_store`. A store behind an `Arc`, a `Box` or a reference is a
/// store too: each forwards every method, so an implementation's
/// `put_hashed`, `adopt` or `local_path` is not replaced by the default.
pub trait Store: fmt::Debug + Send + Sync {
    /// A short description for messages: the folder, or a backend's name.
    fn describe(&self) -> String;
    /// Whether the blob is stored.
    fn contains(&self, digest: &Digest) -> io::Result<bool>;
    /// Stores a blob whose content is `data` and whose sha256 is `digest`.
    /// Returns whether it was new. Fails with `InvalidData` when the data
    /// does not match the digest.
    fn put(&self, digest: &Digest, data: &mut dyn Read) -> io::Result<bool>;
    /// Stores a blob whose `digest` the caller has just computed from
    /// these very bytes, so a backend may skip checking it again (`fsck`
    /// re-hashes every blob). The default calls [`Store::put`].
    fn put_hashed(&self, digest: &Digest, data: &[u8]) -> io::Result<bool> {
        self.put(digest, &mut &data[..])
    }
    /// Stores the file at `path` as the blob `digest`: the caller has just
    /// written it and hashed its bytes on the way, and will not change it
    /// again. A local store may take the file itself (a hard link: no
    /// second copy is written); the default reads it into
    /// [`Store::put`]. Returns whether the blob was new.
    fn adopt(&self, digest: &Digest, path: &Path) -> io::Result<bool> {
        self.put(digest, &mut File::open(path)?)
    }
    /// Opens a blob for reading.
    fn open(&self, digest: &Digest) -> io::Result<Box<dyn Read + Send>>;
    /// The blob's path on the local file system when it has one, so that
    /// deployments can hard-link it instead of copying.
    fn local_path(&self, digest: &Digest) -> Option<PathBuf> {
        let _ = digest;
        None
    }
    /// Makes the given blobs durable (see [`Durability::Full`]).
    fn sync(&self, digests: &[Digest]) -> io::Result<()>;
    /// Every stored blob.
    fn blobs(&self) -> io::Result<Vec<Digest>>;
    /// Removes a blob; a missing blob is fine.
    fn remove(&self, digest: &Digest) -> io::Result<()>;
    /// Stores a manifest atomically, replacing any with the same key.
    fn put_manifest(&self, key: &ManifestKey, manifest: &Manifest) -> io::Result<()>;
    /// Reads a manifest (`NotFound` when absent).
    fn manifest(&self, key: &ManifestKey) -> io::Result<Manifest>;
    /// Whether a manifest is stored (the default reads it).
    fn contains_manifest(&self, key: &ManifestKey) -> io::Result<bool> {
        match self.manifest(key) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }
    /// The keys of every stored manifest.
    fn manifests(&self) -> io::Result<Vec<ManifestKey>>;
    /// Removes a manifest; a missing one is fine.
    fn remove_manifest(&self, key: &ManifestKey) -> io::Result<()>;
    /// Removes what interrupted writes left behind. Called only when no
    /// deployment is writing to the store.
    fn clean_temporary(&self) -> io::Result<usize> {
        Ok(0)
    }
}

fnhost_core::forward_impls! {
    impl<T> Store for [Arc<T>, Box<T>, &T] {
        fn describe(&self) -> String;
        fn contains(&self, digest: &Digest) -> io::Result<bool>;
        fn put(&self, digest: &Digest, data: &mut dyn Read) -> io::Result<bool>;
        fn put_hashed(&self, digest: &Digest, data: &[u8]) -> io::Result<bool>;
        fn adopt(&self, digest: &Digest, path: &Path) -> io::Result<bool>;
        fn open(&self, digest: &Digest) -> io::Result<Box<dyn Read + Send>>;
        fn local_path(&self, digest: &Digest) -> Option<PathBuf>;
        fn sync(&self, digests: &[Digest]) -> io::Result<()>;
        fn blobs(&self) -> io::Result<Vec<Digest>>;
        fn remove(&self, digest: &Digest) -> io::Result<()>;
        fn put_manifest(&self, key: &ManifestKey, manifest: &Manifest) -> io::Result<()>;
        fn manifest(&self, key: &ManifestKey) -> io::Result<Manifest>;
        fn contains_manifest(&self, key: &ManifestKey) -> io::Result<bool>;
        fn manifests(&self) -> io::Result<Vec<ManifestKey>>;
        fn remove_manifest(&self, key: &ManifestKey) -> io::Result<()>;
        fn clean_temporary(&self) -> io::Result<usize>;
    }
}

/// From this many blobs on, [`FsStore::sync`] flushes the whole file
/// system once (`syncfs(2)`, on Linux) rather than each blob.
pub(crate) const SYNCFS_THRESHOLD: usize = 8;

/// The folder implementation of [`Store`].
#[derive(Debug, Clone)]
pub struct FsStore {
    root: PathBuf,
}

impl FsStore {
    /// A store in `root` (created when missing).
    pub fn open(root: impl Into<PathBuf>) -> io::Result<FsStore> {
        let root = root.into();
        for sub in ["blobs", "manifests", "tmp"] {
            fs::create_dir_all(root.join(sub))?;
        }
        Ok(FsStore { root })
    }

    /// The store's folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where a blob lives: `blobs/ab/cdef…`.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.to_hex();
        self.root.join("blobs").join(&hex[..2]).join(&hex[2..])
    }

    fn manifest_path(&self, key: &ManifestKey) -> PathBuf {
        self.root
            .join("manifests")
            .join(&key.app)
            .join(format!("{}.json", key.deployment))
    }

    /// A temporary name beside the blob's final one: writers on several
    /// threads then create and rename in different folders (one shared
    /// temporary folder serialises them on its lock), and the rename stays
    /// within one folder.
    fn temp_path(&self, blob: &Path) -> PathBuf {
        let name = format!("{TEMP_PREFIX}{}", fsutil::random_hex(8));
        match blob.parent() {
            Some(dir) => dir.join(name),
            None => self.root.join("tmp").join(name),
        }
    }
}

impl Store for FsStore {
    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    fn contains(&self, digest: &Digest) -> io::Result<bool> {
        match fs::symlink_metadata(self.blob_path(digest)) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn put(&self, digest: &Digest, data: &mut dyn Read) -> io::Result<bool> {
        // Checked against the digest on the way.
        self.write_blob(digest, &mut |f| {
            let mut hasher = Hasher::new();
            for_each_chunk(data, |chunk| {
                hasher.update(chunk);
                f.write_all(chunk)
            })?;
            if hasher.finish() != *digest {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("content does not match its digest {digest}"),
                ));
            }
            Ok(())
        })
    }

    fn put_hashed(&self, digest: &Digest, data: &[u8]) -> io::Result<bool> {
        self.write_blob(digest, &mut |f| f.write_all(data))
    }

    fn adopt(&self, digest: &Digest, path: &Path) -> io::Result<bool> {
        // The file is complete before its blob name exists: an interrupted
        // deployment never leaves a partial blob. A blob already there has
        // the same content, and the file stays a copy of its own.
        let blob = self.blob_path(digest);
        let mut created_folder = false;
        loop {
            match fs::hard_link(path, &blob) {
                Ok(()) => return Ok(true),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::NotFound && !created_folder => {
                    if let Some(parent) = blob.parent() {
                        fs::create_dir_all(parent)?;
                    }
                    created_folder = true;
                }
                // Another file system, too many links, links not allowed:
                // a copy of its own.
                Err(_) => return self.put(digest, &mut File::open(path)?),
            }
        }
    }

    fn open(&self, digest: &Digest) -> io::Result<Box<dyn Read + Send>> {
        Ok(Box::new(File::open(self.blob_path(digest))?))
    }

    fn local_path(&self, digest: &Digest) -> Option<PathBuf> {
        Some(self.blob_path(digest))
    }

    fn sync(&self, digests: &[Digest]) -> io::Result<()> {
        if digests.is_empty() {
            return Ok(());
        }
        // Many new blobs: one syncfs(2) flushes them all (and the folders
        // they were renamed into) in one journal commit, instead of one
        // flush per file.
        if digests.len() >= SYNCFS_THRESHOLD && fsutil::sync_filesystem(&self.root)? {
            return Ok(());
        }
        // Flushing many files one by one is slow; several threads let the
        // file system batch its journal commits.
        let threads = 8.min(digests.len());
        let chunk = digests.len().div_ceil(threads);
        let dirs: BTreeSet<PathBuf> = digests
            .iter()
            .filter_map(|d| self.blob_path(d).parent().map(Path::to_path_buf))
            .collect();
        std::thread::scope(|s| {
            let handles: Vec<_> = digests
                .chunks(chunk)
                .map(|part| {
                    s.spawn(move || -> io::Result<()> {
                        for d in part {
                            File::open(self.blob_path(d))?.sync_all()?;
                        }
                        Ok(())
                    })
                })
                .collect();
            for h in handles {
                h.join()
                    .map_err(|_| io::Error::other("a sync thread panicked"))??;
            }
            Ok::<(), io::Error>(())
        })?;
        for dir in dirs {
            fsutil::sync_dir(&dir)?;
        }
        fsutil::sync_dir(&self.root.join("blobs"))
    }

    fn contains_manifest(&self, key: &ManifestKey) -> io::Result<bool> {
        match fs::symlink_metadata(self.manifest_path(key)) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn blobs(&self) -> io::Result<Vec<Digest>> {
        let mut out = Vec::new();
        for top in fs::read_dir(self.root.join("blobs"))? {
            let top = top?;
            let prefix = top.file_name().to_string_lossy().into_owned();
            if prefix.len() != 2 || !top.file_type()?.is_dir() {
                continue;
            }
            for entry in fs::read_dir(top.path())? {
                let name = entry?.file_name().to_string_lossy().into_owned();
                if let Ok(d) = format!("{prefix}{name}").parse() {
                    out.push(d);
                }
            }
        }
        out.sort();
        Ok(out)
    }

    fn remove(&self, digest: &Digest) -> io::Result<()> {
        fsutil::remove_file_if_present(&self.blob_path(digest))
    }

    fn put_manifest(&self, key: &ManifestKey, manifest: &Manifest) -> io::Result<()> {
        let path = self.manifest_path(key);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        let data = serde_json::to_vec(manifest).map_err(io::Error::other)?;
        fsutil::atomic_write(
            &path,
            &self.root.join("tmp").join(fsutil::random_hex(12)),
            &data,
            0o444,
        )
    }

    fn manifest(&self, key: &ManifestKey) -> io::Result<Manifest> {
        let data = fs::read(self.manifest_path(key))?;
        serde_json::from_slice(&data).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    fn manifests(&self) -> io::Result<Vec<ManifestKey>> {
        let mut out = Vec::new();
        for app in fs::read_dir(self.root.join("manifests"))? {
            let app = app?;
            if !app.file_type()?.is_dir() {
                continue;
            }
            let app_name = app.file_name().to_string_lossy().into_owned();
            for entry in fs::read_dir(app.path())? {
                let name = entry?.file_name().to_string_lossy().into_owned();
                if let Some(id) = name.strip_suffix(".json") {
                    out.push(ManifestKey::new(app_name.clone(), id));
                }
            }
        }
        out.sort();
        Ok(out)
    }

    fn remove_manifest(&self, key: &ManifestKey) -> io::Result<()> {
        fsutil::remove_file_if_present(&self.manifest_path(key))
    }

    fn clean_temporary(&self) -> io::Result<usize> {
        let mut n = 0;
        for entry in fs::read_dir(self.root.join("tmp"))? {
            let entry = entry?;
            fs::remove_file(entry.path())?;
            n += 1;
        }
        for top in fs::read_dir(self.root.join("blobs"))? {
            let top = top?;
            if !top.file_type()?.is_dir() {
                continue;
            }
            for entry in fs::read_dir(top.path())? {
                let entry = entry?;
                if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                    fs::remove_file(entry.path())?;
                    n += 1;
                }
            }
        }
        Ok(n)
    }
}

impl FsStore {
    /// Writes a blob beside its final name with `fill` and renames it into
    /// place. Returns whether it was new.
    fn write_blob(
        &self,
        digest: &Digest,
        fill: &mut dyn FnMut(&mut File) -> io::Result<()>,
    ) -> io::Result<bool> {
        let path = self.blob_path(digest);
        if self.contains(digest)? {
            return Ok(false);
        }
        let tmp = self.temp_path(&path);
        let result = (|| {
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent)?;
            }
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o444)
                .open(&tmp)?;
            fill(&mut f)?;
            drop(f);
            // Blobs are never rewritten: if another writer got there first,
            // its blob has the same content, and the rename replaces it
            // atomically with an identical file.
            fs::rename(&tmp, &path)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result.map(|()| true)
    }
}

/// Reads `r` to its end in chunks of 256 KiB, handing each to `f`.
/// Returns the bytes read.
pub(crate) fn for_each_chunk(
    r: &mut dyn Read,
    mut f: impl FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<u64> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => return Ok(size),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        size += n as u64;
        f(&buf[..n])?;
    }
}

/// The sha256 and size of a file, read in one pass.
pub(crate) fn hash_file(path: &Path) -> io::Result<(Digest, u64)> {
    hash_all(&mut File::open(path)?)
}

/// The sha256 and size of what `r` gives, read to its end.
fn hash_all(r: &mut dyn Read) -> io::Result<(Digest, u64)> {
    let mut hasher = Hasher::new();
    let size = for_each_chunk(r, |chunk| {
        hasher.update(chunk);
        Ok(())
    })?;
    Ok((hasher.finish(), size))
}

/// Stores the content of a local file, hashing it on the way. Returns the
/// digest, the size and whether the blob was new.
pub fn put_file(store: &dyn Store, path: &Path) -> io::Result<(Digest, u64, bool)> {
    let meta = fs::metadata(path)?;
    // Small files are read once into memory; large ones are hashed in a
    // first pass and streamed into the store only when new.
    if meta.len() <= 4 * 1024 * 1024 {
        let data = fs::read(path)?;
        let digest = Digest::of(&data);
        let new = store.put_hashed(&digest, &data)?;
        Ok((digest, data.len() as u64, new))
    } else {
        let (digest, size) = hash_file(path)?;
        if store.contains(&digest)? {
            return Ok((digest, size, false));
        }
        let new = store.put(&digest, &mut File::open(path)?)?;
        Ok((digest, size, new))
    }
}

/// Stores bytes. Returns the digest and whether the blob was new.
pub fn put_bytes(store: &dyn Store, data: &[u8]) -> io::Result<(Digest, bool)> {
    let digest = Digest::of(data);
    let new = store.put_hashed(&digest, data)?;
    Ok((digest, new))
}

/// What [`fsck`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FsckReport {
    /// Manifests checked.
    pub manifests: usize,
    /// Blobs re-hashed.
    pub blobs: usize,
    /// Bytes re-hashed.
    pub bytes: u64,
    /// What is damaged; empty when all is well.
    pub problems: Vec<String>,
    /// What is left over but harmless (blobs no manifest uses, interrupted
    /// deployments that the next run cleans up).
    pub notes: Vec<String>,
}

impl FsckReport {
    /// Whether nothing is damaged.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks the manifests that `keep` selects (all when `None`) and every
/// blob they use: the blob exists, has the manifest's size, and hashes to
/// its name. With `None`, blobs no manifest uses are re-hashed too and
/// listed as notes.
pub fn fsck(store: &dyn Store, only: Option<&dyn Fn(&ManifestKey) -> bool>) -> FsckReport {
    let mut report = FsckReport::default();
    let keys = match store.manifests() {
        Ok(k) => k,
        Err(e) => {
            report.problems.push(format!(
                "cannot list manifests in {}: {e}",
                store.describe()
            ));
            return report;
        }
    };
    let mut sizes: std::collections::BTreeMap<Digest, (u64, String)> = Default::default();
    for key in keys.iter().filter(|k| only.is_none_or(|f| f(k))) {
        report.manifests += 1;
        let manifest = match store.manifest(key) {
            Ok(m) => m,
            Err(e) => {
                report
                    .problems
                    .push(format!("manifest {key}: cannot read: {e}"));
                continue;
            }
        };
        let mut seen = HashSet::new();
        for f in &manifest.files {
            if !seen.insert(f.path.as_str()) {
                report
                    .problems
                    .push(format!("manifest {key}: {} listed twice", f.path));
            }
            if let Err(why) = crate::package::check_relative_path(&f.path) {
                report
                    .problems
                    .push(format!("manifest {key}: unsafe path {:?}: {why}", f.path));
            }
            if let Some((size, first)) = sizes.get(&f.hash) {
                if *size != f.size {
                    report.problems.push(format!(
                        "manifest {key}: {}: size {} differs from {} in {first}",
                        f.path, f.size, size
                    ));
                }
            } else {
                sizes.insert(f.hash, (f.size, format!("{key}:{}", f.path)));
            }
        }
    }
    let all = if only.is_none() {
        match store.blobs() {
            Ok(b) => b,
            Err(e) => {
                report
                    .problems
                    .push(format!("cannot list blobs in {}: {e}", store.describe()));
                Vec::new()
            }
        }
    } else {
        Vec::new()
    };
    let listed: HashSet<Digest> = all.iter().copied().collect();
    for (digest, (size, user)) in &sizes {
        if only.is_none() && !listed.contains(digest) {
            report
                .problems
                .push(format!("blob {digest} (used by {user}) is missing"));
            continue;
        }
        check_blob(store, digest, Some(*size), user, &mut report);
    }
    let mut unused = 0usize;
    for digest in &all {
        if !sizes.contains_key(digest) {
            unused += 1;
            check_blob(store, digest, None, "no manifest", &mut report);
        }
    }
    if unused > 0 {
        report.notes.push(format!(
            "{unused} blob{} used by no manifest (removed by the next garbage collection)",
            if unused == 1 { "" } else { "s" }
        ));
    }
    report
}

fn check_blob(
    store: &dyn Store,
    digest: &Digest,
    size: Option<u64>,
    user: &str,
    report: &mut FsckReport,
) {
    let (found, n_total) = match store.open(digest).and_then(|mut r| hash_all(&mut r)) {
        Ok(read) => read,
        Err(e) => {
            report
                .problems
                .push(format!("blob {digest} (used by {user}): cannot read: {e}"));
            return;
        }
    };
    report.blobs += 1;
    report.bytes += n_total;
    if found != *digest {
        report.problems.push(format!(
            "blob {digest} (used by {user}): content does not match its name (damaged)"
        ));
    } else if let Some(size) = size
        && size != n_total
    {
        report.problems.push(format!(
            "blob {digest} (used by {user}): {n_total} bytes, the manifest says {size}"
        ));
    }
}

/// What [`collect_garbage`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GcReport {
    /// Blobs removed.
    pub blobs: usize,
    /// Temporary files removed.
    pub temporary: usize,
}

/// Removes every blob that no manifest uses, and temporary files. The
/// caller guarantees that no deployment is writing to the store meanwhile.
pub fn collect_garbage(store: &dyn Store) -> io::Result<GcReport> {
    let mut used = HashSet::new();
    for key in store.manifests()? {
        match store.manifest(&key) {
            Ok(m) => used.extend(m.files.iter().map(|f| f.hash)),
            // A damaged manifest: keep every blob, fsck reports it.
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            Err(_) => {}
        }
    }
    let mut report = GcReport {
        temporary: store.clean_temporary()?,
        ..GcReport::default()
    };
    for digest in store.blobs()? {
        if !used.contains(&digest) {
            store.remove(&digest)?;
            report.blobs += 1;
        }
    }
    Ok(report)
}

/// Sets a materialised file's permission bits (read-only, execute kept).
pub(crate) fn readonly_mode(mode: u32) -> u32 {
    if mode & 0o111 != 0 { 0o555 } else { 0o444 }
}

/// A permission set for `fs::set_permissions`.
pub(crate) fn perms(mode: u32) -> fs::Permissions {
    fs::Permissions::from_mode(mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_content_id_is_the_hash_of_paths_octal_modes_and_hashes() {
        let modes = [0, 0o7, 0o644, 0o100_755, 0o120_777, u32::MAX];
        let m = Manifest::new(
            modes
                .iter()
                .enumerate()
                .map(|(i, &mode)| ManifestEntry {
                    path: format!("f{i}"),
                    hash: Digest::of(format!("{i}").as_bytes()),
                    size: 1,
                    mode,
                })
                .collect(),
        );
        // What ids stored in records were made from.
        let mut h = Hasher::new();
        for f in &m.files {
            h.update(f.path.as_bytes());
            h.update(&[0]);
            h.update(format!("{:o}", f.mode).as_bytes());
            h.update(&[0]);
            h.update(f.hash.as_bytes());
        }
        assert_eq!(m.content_id(), h.finish());
    }

    #[test]
    fn put_checks_the_digest_and_put_hashed_trusts_it() {
        let tmp = tempfile::tempdir().unwrap();
        let store = FsStore::open(tmp.path().join("store")).unwrap();
        let right = Digest::of(b"content");
        let wrong = Digest::of(b"something else");
        let err = store.put(&wrong, &mut &b"content"[..]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(!store.contains(&wrong).unwrap());
        // Nothing left beside the blob's name either.
        assert_eq!(store.clean_temporary().unwrap(), 0);
        assert!(store.put(&right, &mut &b"content"[..]).unwrap());
        assert!(
            !store.put_hashed(&right, b"content").unwrap(),
            "already stored"
        );
        let other = Digest::of(b"other");
        assert!(store.put_hashed(&other, b"other").unwrap());
        let mut back = String::new();
        store
            .open(&other)
            .unwrap()
            .read_to_string(&mut back)
            .unwrap();
        assert_eq!(back, "other");
    }
}
