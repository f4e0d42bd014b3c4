//! Content in and out: a folder (with `.funcignore`) or a zip (extracted
//! safely, with limits) into the store, and a store manifest out as a
//! deterministic zip.
//!
//! Packaging a folder leaves out what `func azure functionapp publish`
//! leaves out: `.git`, `.vscode`, `.funcignore`, `.gitignore` and
//! `local.settings.json`, then whatever `.funcignore` (gitignore syntax)
//! names. Executable bits are kept. Symbolic links are kept as links when
//! they point inside the tree and refused when they escape it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use ignore::gitignore::{Gitignore, GitignoreBuilder};

use crate::codec::{Reader, Writer};
use crate::error::{Error, IoContext, Result};
use crate::store::{
    Digest, Hasher, MODE_FILE, MODE_SYMLINK, Manifest, ManifestEntry, Store, put_bytes, put_file,
};

/// Files always left out when packaging a folder, at any depth.
pub const ALWAYS_EXCLUDED: &[&str] = &[
    ".git",
    ".vscode",
    ".funcignore",
    ".gitignore",
    "local.settings.json",
];

/// The name of the ignore file read from the root of a folder.
pub const FUNCIGNORE: &str = ".funcignore";

/// Limits applied when reading a zip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZipLimits {
    /// Most entries (files, folders, links) in the archive.
    pub max_entries: usize,
    /// Most bytes once uncompressed, all entries together.
    pub max_total_size: u64,
    /// Highest compression ratio (uncompressed / compressed) accepted for
    /// an entry larger than [`ZipLimits::ratio_threshold`].
    pub max_ratio: u64,
    /// Entries up to this size are not checked for their ratio (small
    /// files of zeros compress very well and are harmless).
    pub ratio_threshold: u64,
}

impl Default for ZipLimits {
    fn default() -> Self {
        ZipLimits {
            max_entries: 100_000,
            max_total_size: 4 * 1024 * 1024 * 1024,
            max_ratio: 200,
            ratio_threshold: 1024 * 1024,
        }
    }
}

/// What storing a tree produced.
#[derive(Debug, Clone, Default)]
pub struct Stored {
    /// The tree's manifest.
    pub manifest: Manifest,
    /// Blobs written by this call (the rest were in the store already).
    pub new_blobs: Vec<Digest>,
    /// Bytes written by this call.
    pub new_bytes: u64,
    /// Files whose content was read and hashed (the rest came from the
    /// stat cache).
    pub hashed: u64,
    /// The folder is as the stat cache describes the slot's active
    /// deployment (same files, sizes, times and inodes): nothing was
    /// stored, and the manifest is left empty.
    pub unchanged: bool,
    /// When new files were written straight into a new deployment's folder
    /// while storing (the slot had no spare folder): their paths in the
    /// manifest. The rest of the folder is still to be made.
    pub tree: Option<HashSet<String>>,
}

/// Progress while storing: files done, files in all.
pub type ProgressFn<'a> = &'a (dyn Fn(u64, u64) + Sync);

/// Checks a manifest path: relative, `/`-separated, no empty, `.` or `..`
/// component, no NUL, no backslash.
pub fn check_relative_path(path: &str) -> std::result::Result<(), &'static str> {
    if path.is_empty() {
        return Err("empty path");
    }
    if path.starts_with('/') {
        return Err("absolute path");
    }
    if path.contains('\0') {
        return Err("NUL in path");
    }
    if path.contains('\\') {
        return Err("backslash in path");
    }
    for part in path.split('/') {
        match part {
            "" => return Err("empty path component"),
            "." => return Err("`.` component"),
            ".." => return Err("`..` component"),
            _ => {}
        }
    }
    Ok(())
}

/// Normalises a zip entry name into a safe relative path (`\` counts as a
/// separator, `.` and empty components are dropped), or says why it is
/// refused.
pub fn safe_entry_path(name: &str) -> std::result::Result<String, String> {
    if name.contains('\0') {
        return Err("the name holds a NUL byte".into());
    }
    let unified = name.replace('\\', "/");
    if unified.starts_with('/') {
        return Err("absolute path".into());
    }
    let b = unified.as_bytes();
    if b.len() >= 2 && b[1] == b':' && b[0].is_ascii_alphabetic() {
        return Err("absolute path (drive letter)".into());
    }
    let mut parts = Vec::new();
    for part in unified.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err("`..` leaves the app folder".into()),
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return Err("empty path".into());
    }
    Ok(parts.join("/"))
}

/// Resolves a symlink `target` found at `link` (both relative to the tree
/// root) and says whether it stays inside the tree.
pub(crate) fn link_stays_inside(link: &str, target: &str) -> bool {
    if target.starts_with('/') || target.contains('\0') {
        return false;
    }
    let mut stack: Vec<&str> = link.split('/').collect();
    stack.pop();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if stack.pop().is_none() {
                    return false;
                }
            }
            p => stack.push(p),
        }
    }
    true
}

/// The `.funcignore` rules of a folder, with the always-excluded files.
#[derive(Debug)]
pub struct FuncIgnore {
    matcher: Gitignore,
    /// No `.funcignore`: only the always-excluded names, matched by name.
    names_only: bool,
}

impl FuncIgnore {
    /// Reads `DIR/.funcignore` when present.
    pub fn for_folder(dir: &Path) -> Result<FuncIgnore> {
        let mut b = GitignoreBuilder::new(dir);
        for name in ALWAYS_EXCLUDED {
            b.add_line(None, name).map_err(|e| Error::Package {
                path: dir.to_path_buf(),
                message: e.to_string(),
            })?;
        }
        let file = dir.join(FUNCIGNORE);
        let names_only = !file.is_file();
        if !names_only && let Some(e) = b.add(&file) {
            return Err(Error::Package {
                path: file,
                message: format!("bad pattern: {e}"),
            });
        }
        let matcher = b.build().map_err(|e| Error::Package {
            path: dir.join(FUNCIGNORE),
            message: e.to_string(),
        })?;
        Ok(FuncIgnore {
            matcher,
            names_only,
        })
    }

    /// Whether a path (relative to the folder) is left out.
    pub fn is_excluded(&self, rel: &str, is_dir: bool) -> bool {
        self.matcher
            .matched_path_or_any_parents(rel, is_dir)
            .is_ignore()
    }

    /// Whether a path whose parent folders are known to be kept is left
    /// out: only the path itself is matched (a walk that does not enter
    /// excluded folders checks each parent once, not once per file).
    fn excludes_entry(&self, rel: &str, is_dir: bool) -> bool {
        if self.names_only {
            // A pattern without a slash matches the name at any depth.
            let name = rel.rsplit_once('/').map_or(rel, |(_, n)| n);
            return ALWAYS_EXCLUDED.contains(&name);
        }
        self.matcher.matched(rel, is_dir).is_ignore()
    }
}

/// The stat cache's file name in a slot's folder.
pub(crate) const STAT_CACHE_FILE: &str = "statcache.bin";

/// What the stat cache remembers of a file, to skip re-hashing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CachedFile {
    pub(crate) size: u64,
    pub(crate) mtime_ns: i128,
    pub(crate) ctime_ns: i128,
    pub(crate) ino: u64,
    pub(crate) mode: u32,
    pub(crate) hash: Digest,
}

/// A stat cache: the source folder's files as last stored, by path.
#[derive(Debug, Clone, Default)]
pub(crate) struct StatCache {
    /// The source folder it describes.
    pub(crate) source: PathBuf,
    /// When it was taken (ns since the epoch); entries changed within the
    /// clock's granularity of this instant are not trusted.
    pub(crate) taken_ns: i128,
    /// The deployment whose manifest lists every hash of the cache (while
    /// that manifest exists, the blobs exist).
    pub(crate) deployment: String,
    pub(crate) files: HashMap<String, CachedFile>,
}

const STAT_CACHE_MAGIC: &[u8; 8] = b"fnhsc01\n";

impl StatCache {
    /// A compact binary form (about 100 bytes a file) ending with the
    /// sha256 of what precedes it, so that a torn or damaged file is
    /// recognised and ignored.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new(STAT_CACHE_MAGIC, 64 + self.files.len() * 110);
        w.str(self.source.as_os_str().as_encoded_bytes());
        w.bytes(&self.taken_ns.to_le_bytes());
        w.str(self.deployment.as_bytes());
        w.bytes(&(self.files.len() as u64).to_le_bytes());
        for (path, f) in &self.files {
            w.str(path.as_bytes());
            w.bytes(&f.size.to_le_bytes());
            w.bytes(&f.mtime_ns.to_le_bytes());
            w.bytes(&f.ctime_ns.to_le_bytes());
            w.bytes(&f.ino.to_le_bytes());
            w.bytes(&f.mode.to_le_bytes());
            w.bytes(f.hash.as_bytes());
        }
        w.finish()
    }

    /// Reads [`StatCache::encode`]'s form; `None` when damaged.
    pub(crate) fn decode(data: &[u8]) -> Option<StatCache> {
        let mut r = Reader::open(data, STAT_CACHE_MAGIC)?;
        let source = PathBuf::from(r.string()?);
        let taken_ns = r.i128()?;
        let deployment = r.string()?;
        let count = r.u64()? as usize;
        let mut files = HashMap::with_capacity(count.min(1 << 20));
        for _ in 0..count {
            let path = r.string()?;
            let f = CachedFile {
                size: r.u64()?,
                mtime_ns: r.i128()?,
                ctime_ns: r.i128()?,
                ino: r.u64()?,
                mode: r.u32()?,
                hash: Digest::from_bytes(r.arr()?),
            };
            files.insert(path, f);
        }
        r.is_done().then_some(StatCache {
            source,
            taken_ns,
            deployment,
            files,
        })
    }
}

#[derive(Debug)]
enum Found {
    File { rel: String, meta: fs::Metadata },
    Link { rel: String, target: String },
}

fn mtime_ns(meta: &fs::Metadata) -> i128 {
    i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec())
}

fn ctime_ns(meta: &fs::Metadata) -> i128 {
    i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec())
}

/// Lists the files of a folder that packaging keeps, sorted by path.
pub fn list_folder(dir: &Path) -> Result<Vec<String>> {
    let ignore = FuncIgnore::for_folder(dir)?;
    let found = walk(dir, &ignore, 2)?;
    let mut out: Vec<String> = found
        .into_iter()
        .map(|f| match f {
            Found::File { rel, .. } | Found::Link { rel, .. } => rel,
        })
        .collect();
    out.sort();
    Ok(out)
}

/// Lists one folder: its files and links go to `out`, its subfolders (not
/// excluded) to `subdirs`.
fn walk_dir(
    dir: &Path,
    rel: &str,
    ig: &FuncIgnore,
    out: &mut Vec<Found>,
    subdirs: &mut Vec<(PathBuf, String)>,
) -> Result<()> {
    let entries = fs::read_dir(dir).ctx("cannot list", dir)?;
    for entry in entries {
        let entry = entry.ctx("cannot list", dir)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            return Err(Error::Package {
                path: entry.path(),
                message: "file name is not UTF-8".into(),
            });
        };
        let child_rel = if rel.is_empty() {
            name.to_string()
        } else {
            format!("{rel}/{name}")
        };
        let ft = entry.file_type().ctx("cannot read", &entry.path())?;
        if ft.is_dir() {
            if !ig.excludes_entry(&child_rel, true) {
                subdirs.push((entry.path(), child_rel));
            }
        } else if ig.excludes_entry(&child_rel, false) {
            continue;
        } else if ft.is_file() {
            let meta = entry.metadata().ctx("cannot read", &entry.path())?;
            out.push(Found::File {
                rel: child_rel,
                meta,
            });
        } else if ft.is_symlink() {
            let path = entry.path();
            let target = fs::read_link(&path).ctx("cannot read link", &path)?;
            let Some(target) = target.to_str().map(str::to_string) else {
                return Err(Error::Package {
                    path,
                    message: "link target is not UTF-8".into(),
                });
            };
            if !link_stays_inside(&child_rel, &target) {
                return Err(Error::Package {
                    path,
                    message: format!(
                        "symbolic link to {target:?} leaves the app folder; replace it with the file, or list it in .funcignore"
                    ),
                });
            }
            out.push(Found::Link {
                rel: child_rel,
                target,
            });
        } else {
            return Err(Error::Package {
                path: entry.path(),
                message: "not a regular file, folder or link (a device, fifo or socket); list it in .funcignore".into(),
            });
        }
    }
    Ok(())
}

/// Lists a tree on `threads` threads (folders are shared out as they are
/// found): every file and link not excluded, in no particular order.
fn walk(root: &Path, ig: &FuncIgnore, threads: usize) -> Result<Vec<Found>> {
    use std::sync::{Condvar, Mutex};
    struct Work {
        /// Folders waiting, and how many threads are listing one.
        queue: Vec<(PathBuf, String)>,
        busy: usize,
        failed: Option<Error>,
    }
    let work = Mutex::new(Work {
        queue: vec![(root.to_path_buf(), String::new())],
        busy: 0,
        failed: None,
    });
    let wake = Condvar::new();
    let lost = || Error::Package {
        path: root.to_path_buf(),
        message: "a listing thread panicked".into(),
    };
    let parts: Vec<Vec<Found>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads.max(1))
            .map(|_| {
                s.spawn(|| {
                    let mut found = Vec::new();
                    let Ok(mut w) = work.lock() else {
                        return found;
                    };
                    loop {
                        if w.failed.is_some() {
                            break;
                        }
                        let Some((dir, rel)) = w.queue.pop() else {
                            if w.busy == 0 {
                                break;
                            }
                            match wake.wait(w) {
                                Ok(g) => w = g,
                                Err(_) => return found,
                            }
                            continue;
                        };
                        w.busy += 1;
                        drop(w);
                        let mut subdirs = Vec::new();
                        let result = walk_dir(&dir, &rel, ig, &mut found, &mut subdirs);
                        w = match work.lock() {
                            Ok(g) => g,
                            Err(_) => return found,
                        };
                        w.busy -= 1;
                        match result {
                            Ok(()) => w.queue.extend(subdirs),
                            Err(e) => w.failed = Some(e),
                        }
                        wake.notify_all();
                    }
                    wake.notify_all();
                    found
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let mut w = work.into_inner().map_err(|_| lost())?;
    if let Some(e) = w.failed.take() {
        return Err(e);
    }
    if w.busy != 0 || !w.queue.is_empty() {
        return Err(lost());
    }
    Ok(parts.into_iter().flatten().collect())
}

/// Stores a folder's files (after `.funcignore`) and returns its manifest.
/// With a stat cache of the same folder (`cache` reads it, with whether its
/// blobs are known to be stored, on a thread of its own while the folder is
/// listed), files whose size, times and inode are unchanged are not read
/// again.
///
/// With `tree` (a deployment's folder to be made from nothing), a file
/// whose content is new to the store is written into that folder, as
/// `cp -r` would, and handed to the store with [`Store::adopt`] (a hard
/// link into a local store), instead of being written to the store and
/// linked back out later: one file created instead of a temporary file, a
/// rename and a link. [`Stored::tree`] lists those files; the rest of the
/// folder (files the store had, links) is made afterwards, and nothing is
/// written there when the content turns out to be known.
///
/// With `active` (the slot's active deployment): when the stat cache was
/// saved for that deployment and every file is as it describes, no more
/// (no file added or gone, no link), the folder's content is that
/// deployment's: nothing is stored, [`Stored::unchanged`] is set, and no
/// new cache is returned (the old one stands).
pub(crate) fn store_folder(
    store: &dyn Store,
    dir: &Path,
    cache: impl FnOnce() -> (Option<StatCache>, bool) + Send,
    tree: Option<&Path>,
    active: Option<&str>,
    progress: ProgressFn<'_>,
) -> Result<(Stored, Option<StatCache>)> {
    let meta = fs::metadata(dir).ctx("cannot read", dir)?;
    if !meta.is_dir() {
        return Err(Error::Package {
            path: dir.to_path_buf(),
            message: "not a folder".into(),
        });
    }
    let ignore = FuncIgnore::for_folder(dir)?;
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(2, 8);
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0);
    // The cache is read while the folder is listed.
    let (found, (old, trusted)) = std::thread::scope(|s| {
        let reading = s.spawn(cache);
        let found = walk(dir, &ignore, threads);
        (found, reading.join().unwrap_or((None, false)))
    });
    let found = found?;
    let total = found.len() as u64;
    let cache = old.as_ref().filter(|c| c.source == dir);
    if let Some(c) = cache
        && active.is_some_and(|a| a == c.deployment)
        && found.len() == c.files.len()
        && all_cached(c, &found, threads)
    {
        progress(total, total);
        let stored = Stored {
            unchanged: true,
            ..Stored::default()
        };
        return Ok((stored, None));
    }
    if let Some(dest) = tree
        && dest.exists()
    {
        crate::fsutil::remove_tree(dest).ctx("cannot remove", dest)?;
    }
    let done = AtomicU64::new(0);
    let how = &Storing {
        store,
        root: dir,
        cache,
        trusted,
        tree,
        probe: &Probe::default(),
        now_ns,
    };
    let chunk = found.len().div_ceil(threads).max(1);

    type Out = (StoredFound, bool);
    let results: Vec<Result<Vec<Out>>> = std::thread::scope(|s| {
        let handles: Vec<_> = found
            .chunks(chunk)
            .map(|part| {
                let done = &done;
                s.spawn(move || -> Result<Vec<Out>> {
                    let mut out = Vec::with_capacity(part.len());
                    for f in part {
                        out.push(store_found(how, f)?);
                        let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                        if n.is_multiple_of(64) || n == total {
                            progress(n, total);
                        }
                    }
                    Ok(out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(Error::Package {
                        path: dir.to_path_buf(),
                        message: "a storing thread panicked".into(),
                    })
                })
            })
            .collect()
    });
    let mut stored = Stored::default();
    let mut entries = Vec::with_capacity(found.len());
    // The new cache is the old one with what was read put in: most files
    // were hits, already there as they are.
    let mut files = match old.filter(|c| c.source == dir) {
        Some(c) => c.files,
        None => HashMap::with_capacity(found.len()),
    };
    let mut to_cache = 0;
    let mut written = HashSet::new();
    for part in results {
        for ((entry, cached, new, bytes, hashed), in_tree) in part? {
            if in_tree {
                written.insert(entry.path.clone());
            }
            if new {
                stored.new_blobs.push(entry.hash);
                stored.new_bytes += bytes;
            }
            to_cache += usize::from(cached.is_some());
            if hashed {
                stored.hashed += 1;
                match cached {
                    Some(c) => files.insert(entry.path.clone(), c),
                    None => files.remove(&entry.path),
                };
            }
            entries.push(entry);
        }
    }
    // Files gone since: their entries go too.
    if files.len() != to_cache {
        let here: HashSet<&str> = entries.iter().map(|e| e.path.as_str()).collect();
        files.retain(|path, _| here.contains(path.as_str()));
    }
    let new_cache = StatCache {
        source: dir.to_path_buf(),
        taken_ns: now_ns,
        deployment: String::new(),
        files,
    };
    stored.tree = tree.map(|_| written);
    stored.manifest = Manifest::new(entries);
    Ok((stored, Some(new_cache)))
}

/// Whether every file found is as the stat cache says, checked on
/// `threads` threads.
fn all_cached(cache: &StatCache, found: &[Found], threads: usize) -> bool {
    let check = |part: &[Found]| part.iter().all(|f| cached(Some(cache), f).is_some());
    if found.len() < 4096 {
        return check(found);
    }
    let chunk = found.len().div_ceil(threads);
    std::thread::scope(|s| {
        let parts: Vec<_> = found
            .chunks(chunk)
            .map(|p| s.spawn(move || check(p)))
            .collect();
        parts.into_iter().all(|p| p.join().unwrap_or(false))
    })
}

/// The stat cache's entry for a file, when the file is unchanged since
/// (same size, times, inode and mode; old enough that a change within the
/// same clock tick cannot hide).
fn cached<'c>(cache: Option<&'c StatCache>, f: &Found) -> Option<&'c CachedFile> {
    let (Some(c), Found::File { rel, meta, .. }) = (cache, f) else {
        return None;
    };
    let mode = MODE_FILE | (meta.permissions().mode() & 0o777);
    c.files.get(rel).filter(|e| {
        e.size == meta.len()
            && e.mtime_ns == mtime_ns(meta)
            && e.ctime_ns == ctime_ns(meta)
            && e.ino == meta.ino()
            && e.mode == mode
            && e.mtime_ns < c.taken_ns - 1_000_000_000
    })
}

/// What storing each file of a folder shares.
#[derive(Clone, Copy)]
struct Storing<'a> {
    store: &'a dyn Store,
    /// The folder.
    root: &'a Path,
    cache: Option<&'a StatCache>,
    /// Whether the cache's blobs are known to be in the store.
    trusted: bool,
    /// The deployment's folder to write new files into.
    tree: Option<&'a Path>,
    probe: &'a Probe,
    /// When the walk started.
    now_ns: i128,
}

/// A stored file: its manifest entry, its stat cache entry, whether its
/// blob was new, the bytes written, whether it was read and hashed.
type StoredFound = (ManifestEntry, Option<CachedFile>, bool, u64, bool);

/// Stores one file or link; with `tree`, a file new to the store is
/// written into the deployment's folder (and adopted by the store), and
/// the second value says so.
fn store_found(how: &Storing<'_>, f: &Found) -> Result<(StoredFound, bool)> {
    let Storing {
        store,
        root,
        cache,
        trusted,
        tree,
        probe,
        now_ns,
    } = *how;
    let store_err = |what: String| {
        move |e| Error::Store {
            store: store.describe(),
            what,
            source: e,
        }
    };
    match f {
        Found::Link { rel, target } => {
            let (hash, new) = put_bytes(store, target.as_bytes())
                .map_err(store_err(format!("cannot store link {rel}")))?;
            let entry = ManifestEntry {
                path: rel.clone(),
                hash,
                size: target.len() as u64,
                mode: MODE_SYMLINK | 0o777,
            };
            Ok(((entry, None, new, target.len() as u64, true), false))
        }
        Found::File { rel, meta } => {
            let abs = &root.join(rel);
            let mode = MODE_FILE | (meta.permissions().mode() & 0o777);
            let cached_file = |hash| CachedFile {
                size: meta.len(),
                mtime_ns: mtime_ns(meta),
                ctime_ns: ctime_ns(meta),
                ino: meta.ino(),
                mode,
                hash,
            };
            if let Some(c) = cached(cache, f)
                && (trusted || store.contains(&c.hash).unwrap_or(false))
            {
                let entry = ManifestEntry {
                    path: rel.clone(),
                    hash: c.hash,
                    size: c.size,
                    mode,
                };
                return Ok(((entry, Some(c.clone()), false, 0, false), false));
            }
            let (hash, size, new, in_tree) = match tree {
                Some(dest) => copy_into_tree(store, abs, &dest.join(rel), mode, meta.len(), probe)?,
                None => {
                    let (hash, size, new) = put_file(store, abs)
                        .map_err(store_err(format!("cannot store {}", abs.display())))?;
                    (hash, size, new, false)
                }
            };
            let entry = ManifestEntry {
                path: rel.clone(),
                hash,
                size,
                mode,
            };
            // A file changed within the last moments may change again within
            // the same clock tick: it is hashed again next time.
            let cached = (mtime_ns(meta) < now_ns - 1_000_000_000).then(|| cached_file(hash));
            Ok((
                (entry, cached, new, if new { size } else { 0 }, true),
                in_tree,
            ))
        }
    }
}

/// Whether to ask the store about each file read before writing it into a
/// deployment's folder. Asking costs a lookup per file; not asking costs a
/// file written for content the store had (the store keeps its own blob).
/// Asked about the first files, then only while the answers are often
/// "known" (a folder rewritten with mostly the same content); a first
/// deployment stops asking after a few dozen files.
#[derive(Debug, Default)]
struct Probe {
    asked: AtomicU64,
    known: AtomicU64,
}

impl Probe {
    fn worth_asking(&self) -> bool {
        let asked = self.asked.load(Ordering::Relaxed);
        asked < 64 || self.known.load(Ordering::Relaxed) * 8 > asked
    }

    fn record(&self, known: bool) {
        self.asked.fetch_add(1, Ordering::Relaxed);
        if known {
            self.known.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Stores `src`. When the store says it has the content already (see
/// [`Probe`]), nothing more; else it is written to `at` in a deployment's
/// folder (a new read-only file, its folders made as needed), and the
/// store adopts it (an executable, whose mode differs from a blob's, is
/// stored as a blob of its own). Returns the digest, the size, whether
/// the blob was new and whether `at` was written.
fn copy_into_tree(
    store: &dyn Store,
    src: &Path,
    at: &Path,
    mode: u32,
    len: u64,
    probe: &Probe,
) -> Result<(Digest, u64, bool, bool)> {
    use std::os::unix::fs::OpenOptionsExt;
    let store_err = |e| Error::Store {
        store: store.describe(),
        what: format!("cannot store {}", src.display()),
        source: e,
    };
    let executable = mode & 0o111 != 0;
    // Small files are read once into memory; large ones are hashed in a
    // first pass, then copied (and hashed again on the way) only when new.
    let data = match len <= 4 * 1024 * 1024 {
        true => Some(fs::read(src).ctx("cannot read", src)?),
        false => None,
    };
    let (digest, size) = match &data {
        Some(d) => (Digest::of(d), d.len() as u64),
        None => crate::store::hash_file(src).ctx("cannot read", src)?,
    };
    if probe.worth_asking() {
        let known = store.contains(&digest).map_err(store_err)?;
        probe.record(known);
        if known {
            return Ok((digest, size, false, false));
        }
    }
    let create = || {
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(crate::store::readonly_mode(mode))
            .open(at)
    };
    let mut out = match create() {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = at.parent() {
                fs::create_dir_all(parent).ctx("cannot create", parent)?;
            }
            create()
        }
        other => other,
    }
    .ctx("cannot create", at)?;
    match &data {
        Some(d) => out.write_all(d).ctx("cannot write", at)?,
        None => {
            let mut input = File::open(src).ctx("cannot read", src)?;
            let mut hasher = Hasher::new();
            crate::store::for_each_chunk(&mut input, |chunk| {
                hasher.update(chunk);
                out.write_all(chunk)
            })
            .ctx("cannot copy", src)?;
            if hasher.finish() != digest {
                return Err(Error::Package {
                    path: src.to_path_buf(),
                    message: "the file changed while it was being deployed; deploy again".into(),
                });
            }
        }
    }
    if executable {
        // As a copy made from the store would be, whatever the umask (a
        // plain file's mode is its blob's).
        out.set_permissions(crate::store::perms(crate::store::readonly_mode(mode)))
            .ctx("cannot protect", at)?;
    }
    drop(out);
    let new = match (executable, &data) {
        (true, Some(d)) => store.put_hashed(&digest, d),
        (true, None) => File::open(at).and_then(|mut f| store.put(&digest, &mut f)),
        (false, _) => store.adopt(&digest, at),
    }
    .map_err(store_err)?;
    Ok((digest, size, new, true))
}

/// Places one manifest entry in a deployment's folder `dest` (whose
/// folders exist): a hard link to its blob when the store is local, else a
/// read-only copy (always for executables, whose mode differs from the
/// blob's). With the previous deployment of the slot (its folder and
/// manifest), an unchanged executable is linked to that folder's copy
/// rather than copied again. Returns the path when it made a copy (which
/// needs flushing with full durability).
pub(crate) fn place_file(
    store: &dyn Store,
    f: &ManifestEntry,
    dest: &Path,
    previous: Option<&(PathBuf, Manifest)>,
) -> Result<Option<PathBuf>> {
    let target = &dest.join(&f.path);
    let store_err = |what: &str, e| Error::Store {
        store: store.describe(),
        what: format!("cannot {what}"),
        source: e,
    };
    if f.is_symlink() {
        let mut link = String::new();
        store
            .open(&f.hash)
            .and_then(|mut r| r.read_to_string(&mut link))
            .map_err(|e| store_err("read a blob", e))?;
        std::os::unix::fs::symlink(&link, target).ctx("cannot create link", target)?;
        return Ok(None);
    }
    if f.is_executable() {
        if let Some((dir, m)) = previous
            && m.get(&f.path)
                .is_some_and(|p| p.hash == f.hash && p.mode == f.mode)
            && fs::hard_link(dir.join(&f.path), target).is_ok()
        {
            return Ok(None);
        }
    } else if let Some(blob) = store.local_path(&f.hash)
        && fs::hard_link(&blob, target).is_ok()
    {
        return Ok(None);
    }
    let mut src = store
        .open(&f.hash)
        .map_err(|e| store_err("read a blob", e))?;
    let mut out = File::create(target).ctx("cannot create", target)?;
    io::copy(&mut src, &mut out).ctx("cannot write", target)?;
    drop(out);
    fs::set_permissions(
        target,
        crate::store::perms(crate::store::readonly_mode(f.mode)),
    )
    .ctx("cannot protect", target)?;
    Ok(Some(target.clone()))
}

/// Stores a zip's entries, checking each as it goes. `scratch` is a private
/// folder for entries too large to hold in memory.
pub(crate) fn store_zip(
    store: &dyn Store,
    zip_path: &Path,
    limits: &ZipLimits,
    scratch: &Path,
    progress: ProgressFn<'_>,
) -> Result<Stored> {
    let bad = |message: String| Error::Package {
        path: zip_path.to_path_buf(),
        message,
    };
    let file = File::open(zip_path).ctx("cannot open", zip_path)?;
    let mut archive = zip::ZipArchive::new(std::io::BufReader::new(file))
        .map_err(|e| bad(format!("not a readable zip archive: {e}")))?;
    if archive.len() > limits.max_entries {
        return Err(bad(format!(
            "{} entries, more than the limit of {}",
            archive.len(),
            limits.max_entries
        )));
    }
    if archive.has_duplicate_names() {
        return Err(bad(
            "the archive lists the same name twice (duplicate entries)".into(),
        ));
    }
    let total = archive.len() as u64;
    let mut stored = Stored::default();
    let mut entries: BTreeMap<String, ManifestEntry> = BTreeMap::new();
    let mut dirs: HashSet<String> = HashSet::new();
    let mut total_size = 0u64;
    for i in 0..archive.len() {
        let mut entry = archive
            .by_index(i)
            .map_err(|e| bad(format!("entry {i}: cannot read: {e}")))?;
        let raw_name = entry
            .name()
            .map_err(|e| bad(format!("entry {i}: bad name: {e}")))?
            .into_owned();
        let path = safe_entry_path(&raw_name).map_err(|why| bad(format!("{raw_name:?}: {why}")))?;
        let unix = entry.unix_mode();
        let kind = unix.map(|m| m & 0o170_000).unwrap_or(0);
        if entry.is_dir() || kind == 0o040_000 {
            dirs.insert(path);
            continue;
        }
        match kind {
            0 | 0o100_000 | 0o120_000 => {}
            0o020_000 | 0o060_000 => {
                return Err(bad(format!("{raw_name:?}: a device file; refused")));
            }
            0o010_000 => return Err(bad(format!("{raw_name:?}: a fifo; refused"))),
            0o140_000 => return Err(bad(format!("{raw_name:?}: a socket; refused"))),
            other => {
                return Err(bad(format!(
                    "{raw_name:?}: unknown file type {other:o}; refused"
                )));
            }
        }
        let declared = entry.size();
        let compressed = entry.compressed_size();
        if total_size.saturating_add(declared) > limits.max_total_size {
            return Err(bad(format!(
                "more than {} bytes once uncompressed (the limit)",
                limits.max_total_size
            )));
        }
        let is_link = kind == 0o120_000;
        if declared > limits.ratio_threshold && declared / compressed.max(1) > limits.max_ratio {
            return Err(bad(format!(
                "{raw_name:?}: compression ratio above {}:1 ({declared} bytes from {compressed}); refused as a possible zip bomb",
                limits.max_ratio
            )));
        }
        // Read with a cap: never more than the declared size or the total
        // limit, whatever the data holds.
        let cap = declared.min(limits.max_total_size - total_size);
        let (hash, size, new) = if is_link || declared <= 16 * 1024 * 1024 {
            let mut data = Vec::with_capacity(declared.min(16 * 1024 * 1024) as usize);
            let n = (&mut entry)
                .take(cap + 1)
                .read_to_end(&mut data)
                .map_err(|e| bad(format!("{raw_name:?}: cannot read: {e}")))?;
            if n as u64 > cap {
                return Err(bad(format!(
                    "{raw_name:?}: more data than its header declares, or than the limits allow"
                )));
            }
            if is_link {
                let target = String::from_utf8(data.clone())
                    .map_err(|_| bad(format!("{raw_name:?}: link target is not UTF-8")))?;
                if !link_stays_inside(&path, &target) {
                    return Err(bad(format!(
                        "{raw_name:?}: symbolic link to {target:?} leaves the app folder; refused"
                    )));
                }
            }
            let (hash, new) = put_bytes(store, &data).map_err(|e| Error::Store {
                store: store.describe(),
                what: format!("cannot store {path}"),
                source: e,
            })?;
            (hash, n as u64, new)
        } else {
            let tmp = scratch.join(format!("zip-entry-{i}"));
            let result = copy_capped(&mut entry, &tmp, cap)
                .map_err(|e| bad(format!("{raw_name:?}: cannot read: {e}")))
                .and_then(|(hash, n)| {
                    if n > cap {
                        return Err(bad(format!(
                            "{raw_name:?}: more data than its header declares, or than the limits allow"
                        )));
                    }
                    let new = File::open(&tmp)
                        .and_then(|mut f| store.put(&hash, &mut f))
                        .map_err(|e| Error::Store {
                            store: store.describe(),
                            what: format!("cannot store {path}"),
                            source: e,
                        })?;
                    Ok((hash, n, new))
                });
            let _ = fs::remove_file(&tmp);
            result?
        };
        total_size += size;
        if new {
            stored.new_blobs.push(hash);
            stored.new_bytes += size;
        }
        stored.hashed += 1;
        let mode = if is_link {
            MODE_SYMLINK | 0o777
        } else {
            MODE_FILE | unix.map(|m| m & 0o777).filter(|m| *m != 0).unwrap_or(0o644)
        };
        if entries
            .insert(
                path.clone(),
                ManifestEntry {
                    path: path.clone(),
                    hash,
                    size,
                    mode,
                },
            )
            .is_some()
        {
            return Err(bad(format!(
                "{raw_name:?}: {path} appears twice (duplicate entries)"
            )));
        }
        progress(i as u64 + 1, total);
    }
    // A path that is both a file and a folder cannot be extracted.
    for path in entries.keys() {
        let mut prefix = path.as_str();
        while let Some((parent, _)) = prefix.rsplit_once('/') {
            if entries.contains_key(parent) {
                return Err(bad(format!(
                    "{parent} is both a file and the folder of {path}"
                )));
            }
            prefix = parent;
        }
        if dirs.contains(path) {
            return Err(bad(format!("{path} is both a file and a folder")));
        }
    }
    stored.manifest = Manifest {
        files: entries.into_values().collect(),
    };
    Ok(stored)
}

fn copy_capped(src: &mut dyn Read, dst: &Path, cap: u64) -> io::Result<(Digest, u64)> {
    let mut out = File::create(dst)?;
    let mut hasher = Hasher::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut n_total = 0u64;
    let mut limited = src.take(cap + 1);
    loop {
        let n = limited.read(&mut buf)?;
        if n == 0 {
            break;
        }
        n_total += n as u64;
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])?;
    }
    Ok((hasher.finish(), n_total))
}

/// Writes a deterministic zip of a manifest's files (sorted, fixed times,
/// modes kept), plus `extra` files (path, content) such as a generated
/// `local.settings.json`.
pub fn write_zip<W: Write + Seek>(
    store: &dyn Store,
    manifest: &Manifest,
    extra: &[(String, Vec<u8>)],
    out: W,
) -> io::Result<W> {
    use zip::write::SimpleFileOptions;
    let mut zw = zip::ZipWriter::new(out);
    let base = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .last_modified_time(zip::DateTime::default());
    type Item<'m> = (&'m str, Option<&'m ManifestEntry>, Option<&'m [u8]>);
    let mut all: Vec<Item<'_>> = manifest
        .files
        .iter()
        .map(|f| (f.path.as_str(), Some(f), None))
        .collect();
    for (path, data) in extra {
        if manifest.get(path).is_none() {
            all.push((path.as_str(), None, Some(data.as_slice())));
        }
    }
    all.sort_by(|a, b| a.0.cmp(b.0));
    for (path, entry, data) in all {
        match (entry, data) {
            (Some(e), _) if e.is_symlink() => {
                let mut target = String::new();
                store.open(&e.hash)?.read_to_string(&mut target)?;
                zw.add_symlink(path, target, base.unix_permissions(0o777))
                    .map_err(io::Error::other)?;
            }
            (Some(e), _) => {
                zw.start_file(
                    path,
                    base.unix_permissions(e.mode & 0o777)
                        .large_file(e.size >= 0xFFFF_FFFF),
                )
                .map_err(io::Error::other)?;
                io::copy(&mut store.open(&e.hash)?, &mut zw)?;
            }
            (None, Some(d)) => {
                zw.start_file(path, base.unix_permissions(0o644))
                    .map_err(io::Error::other)?;
                zw.write_all(d)?;
            }
            (None, None) => {}
        }
    }
    zw.finish().map_err(io::Error::other)
}

/// Writes a zip of a folder as a deployment would take it (after
/// `.funcignore`): deterministic, modes kept. Handy for publishing.
pub fn zip_folder<W: Write + Seek>(dir: &Path, out: W) -> Result<W> {
    use zip::write::SimpleFileOptions;
    let ignore = FuncIgnore::for_folder(dir)?;
    let mut found = walk(dir, &ignore, 2)?;
    found.sort_by(|a, b| found_rel(a).cmp(found_rel(b)));
    let mut zw = zip::ZipWriter::new(out);
    let base = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .last_modified_time(zip::DateTime::default());
    let zerr = |e: zip::result::ZipError| Error::Package {
        path: dir.to_path_buf(),
        message: format!("cannot write zip: {e}"),
    };
    for f in &found {
        match f {
            Found::Link { rel, target } => {
                zw.add_symlink(rel.as_str(), target.as_str(), base.unix_permissions(0o777))
                    .map_err(zerr)?;
            }
            Found::File { rel, meta } => {
                let abs = &dir.join(rel);
                zw.start_file(
                    rel.as_str(),
                    base.unix_permissions(meta.permissions().mode() & 0o777)
                        .large_file(meta.len() >= 0xFFFF_FFFF),
                )
                .map_err(zerr)?;
                let mut src = File::open(abs).ctx("cannot read", abs)?;
                io::copy(&mut src, &mut zw).ctx("cannot read", abs)?;
            }
        }
    }
    zw.finish().map_err(zerr)
}

fn found_rel(f: &Found) -> &str {
    match f {
        Found::File { rel, .. } | Found::Link { rel, .. } => rel,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn funcignore_patterns_at_every_depth_in_a_walk() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let write = |rel: &str| {
            let p = root.join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, rel).unwrap();
        };
        fs::write(
            root.join(FUNCIGNORE),
            "*.log\n!keep.log\n**/*.map\nbuild/\nnested/deep/x.txt\n/top-only.txt\n",
        )
        .unwrap();
        for rel in [
            "host.json",
            "a.log",
            "keep.log",
            "lib/b.log",
            "lib/app.js",
            "lib/app.js.map",
            "lib/x/y/z.map",
            "build/out.js",
            "lib/build/out.js",
            "nested/deep/x.txt",
            "nested/deep/y.txt",
            "top-only.txt",
            "lib/top-only.txt",
            "local.settings.json",
            ".git/HEAD",
            "lib/.vscode/settings.json",
        ] {
            write(rel);
        }
        assert_eq!(
            list_folder(root).unwrap(),
            [
                "host.json",
                "keep.log",
                "lib/app.js",
                "lib/top-only.txt",
                "nested/deep/y.txt",
            ]
        );
    }

    #[test]
    fn without_a_funcignore_the_always_excluded_names_match_as_the_rules_do() {
        let tmp = tempfile::tempdir().unwrap();
        let ig = FuncIgnore::for_folder(tmp.path()).unwrap();
        assert!(ig.names_only);
        for rel in [
            ".git",
            "lib/.git",
            ".vscode",
            "a/b/.vscode",
            ".funcignore",
            "x/.gitignore",
            "local.settings.json",
            "deep/er/local.settings.json",
            ".gitkeep",
            "x.git",
            ".git.bak",
            "local.settings.json.example",
            "lib/app.js",
            "host.json",
        ] {
            for is_dir in [false, true] {
                assert_eq!(
                    ig.excludes_entry(rel, is_dir),
                    ig.matcher.matched(rel, is_dir).is_ignore(),
                    "{rel} (folder: {is_dir})"
                );
            }
        }
        assert!(ig.excludes_entry("lib/.git", true));
        assert!(!ig.excludes_entry(".gitkeep", false));
    }

    #[test]
    fn the_store_is_asked_while_it_often_knows_the_content() {
        let new_content = Probe::default();
        for _ in 0..64 {
            assert!(new_content.worth_asking());
            new_content.record(false);
        }
        assert!(
            !new_content.worth_asking(),
            "a first deployment stops asking"
        );
        let rewritten = Probe::default();
        for i in 0..1000 {
            assert!(rewritten.worth_asking(), "asked {i}");
            rewritten.record(i % 4 == 0);
        }
    }

    #[test]
    fn entry_paths_are_normalised_or_refused() {
        assert_eq!(safe_entry_path("a/b.txt"), Ok("a/b.txt".to_owned()));
        assert_eq!(safe_entry_path("./a//b"), Ok("a/b".to_owned()));
        assert_eq!(safe_entry_path("a\\b.txt"), Ok("a/b.txt".to_owned()));
        for bad in ["/etc/passwd", "a/../../x", "..\\x", "C:/x", "", "./"] {
            assert!(safe_entry_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn links_must_stay_in_the_tree() {
        assert!(link_stays_inside("a/b", "c"));
        assert!(link_stays_inside("a/b", "../c"));
        assert!(!link_stays_inside("a/b", "../../c"));
        assert!(!link_stays_inside("b", "/etc/passwd"));
    }

    #[test]
    fn every_file_as_cached_is_checked_on_threads_for_a_large_folder() {
        let tmp = tempfile::tempdir().unwrap();
        for i in 0..4200 {
            let dir = tmp.path().join(format!("d{}", i % 20));
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join(format!("f{i}")), i.to_string()).unwrap();
        }
        let ig = FuncIgnore::for_folder(tmp.path()).unwrap();
        let found = walk(tmp.path(), &ig, 2).unwrap();
        assert_eq!(found.len(), 4200);
        let mut cache = StatCache {
            source: tmp.path().to_path_buf(),
            // Taken well after the files were written.
            taken_ns: mtime_ns(&fs::metadata(tmp.path()).unwrap()) + 10_000_000_000,
            deployment: "d".into(),
            files: HashMap::new(),
        };
        for f in &found {
            let Found::File { rel, meta } = f else {
                panic!("only files here")
            };
            let entry = CachedFile {
                size: meta.len(),
                mtime_ns: mtime_ns(meta),
                ctime_ns: ctime_ns(meta),
                ino: meta.ino(),
                mode: MODE_FILE | (meta.permissions().mode() & 0o777),
                hash: Digest::of(b""),
            };
            cache.files.insert(rel.clone(), entry);
        }
        assert!(all_cached(&cache, &found, 2));
        // One file that differs, wherever it is, is seen.
        for rel in [found_rel(&found[0]), found_rel(&found[4199])] {
            let mut c = cache.clone();
            c.files.get_mut(rel).unwrap().size += 1;
            assert!(!all_cached(&c, &found, 2), "{rel}");
        }
    }

    #[test]
    fn stat_cache_round_trips_and_refuses_damage() {
        let mut c = StatCache {
            source: PathBuf::from("/src/app"),
            taken_ns: 1_700_000_000_123_456_789,
            deployment: "20260101T000000Z-abcdef".into(),
            files: HashMap::new(),
        };
        for i in 0..50u64 {
            c.files.insert(
                format!("lib/f{i}.js"),
                CachedFile {
                    size: i * 10,
                    mtime_ns: -5 + i128::from(i),
                    ctime_ns: 7,
                    ino: 1000 + i,
                    mode: MODE_FILE | 0o644,
                    hash: Digest::of(&i.to_le_bytes()),
                },
            );
        }
        let data = c.encode();
        let back = StatCache::decode(&data).expect("decodes");
        assert_eq!(back.source, c.source);
        assert_eq!(back.taken_ns, c.taken_ns);
        assert_eq!(back.deployment, c.deployment);
        assert_eq!(back.files, c.files);
        for cut in [0, 1, 8, data.len() / 2, data.len() - 1] {
            assert!(StatCache::decode(&data[..cut]).is_none(), "cut at {cut}");
        }
        let mut flipped = data.clone();
        flipped[20] ^= 1;
        assert!(StatCache::decode(&flipped).is_none());
    }
}
