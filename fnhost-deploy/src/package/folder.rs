//! A folder in: listed (through `.funcignore`), hashed (through the stat
//! cache) and stored, written straight into a new deployment's folder when
//! it is made from nothing; and a stored file placed back out into a
//! deployment's folder.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use ignore::gitignore::{Gitignore, GitignoreBuilder};

use super::{Entry, Found, Listing, ProgressFn, Stored, walk, walk_then};
use crate::error::{Error, IoContext, Result};
use crate::statcache::{CachedFile, StatCache};
use crate::store::{
    Digest, Hasher, MODE_SYMLINK, Manifest, ManifestEntry, Store, put_bytes, put_file,
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

    /// Whether a path (whose last part is `name`) whose parent folders are
    /// known to be kept is left out: only the path itself is matched (a
    /// walk that does not enter excluded folders checks each parent once,
    /// not once per file).
    pub(crate) fn excludes_entry(&self, rel: &str, name: &str, is_dir: bool) -> bool {
        if self.names_only {
            // A pattern without a slash matches the name at any depth.
            return ALWAYS_EXCLUDED.contains(&name);
        }
        self.matcher.matched(rel, is_dir).is_ignore()
    }
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
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    // The cache is read (and indexed) while the folder is listed; each
    // listing thread then looks its files up, in the order it listed them,
    // which is the cache's order when the folders are as they were.
    let read: OnceLock<(Option<StatCache>, bool)> = OnceLock::new();
    // Each file's row in the cache, or `NOT_CACHED`.
    const NOT_CACHED: u32 = u32::MAX;
    let look_up = |part: &Listing| -> Vec<u32> {
        let Some(c) = read.wait().0.as_ref() else {
            return vec![NOT_CACHED; part.len()];
        };
        let mut next = 0;
        part.iter()
            .map(|(rel, entry)| match entry {
                Entry::File(stat) => c
                    .unchanged_row(rel, stat, &mut next)
                    .and_then(|row| u32::try_from(row).ok())
                    .unwrap_or(NOT_CACHED),
                Entry::Link(_) => NOT_CACHED,
            })
            .collect()
    };
    let walked = std::thread::scope(|s| {
        let reader = s.spawn(|| {
            // Set whatever happens: the listing threads wait for it.
            let _unblock = SetOnDrop(&read, Some((None, false)));
            let (old, trusted) = cache();
            let old = old.filter(|c| c.source == dir);
            if let Some(c) = &old {
                c.build_index();
            }
            let _ = read.set((old, trusted));
        });
        let walked = walk_then(dir, &ignore, threads, &look_up);
        // A reader that panicked left no cache: every file is read.
        let _ = reader.join();
        walked
    });
    let parts = walked?;
    let (old, trusted) = read.into_inner().unwrap_or((None, false));
    let total = parts.iter().map(|(l, _)| l.len()).sum::<usize>() as u64;
    if let Some(c) = &old
        && active.is_some_and(|a| a == c.deployment)
        && total == c.len() as u64
        && parts
            .iter()
            .all(|(_, rows)| rows.iter().all(|&row| row != NOT_CACHED))
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

    // Files the cache knows (and whose blobs are known to be stored) make
    // their entry here, each listing thread's part on a thread of its own;
    // the rest are read, on threads (with the hash the cache gave, if any:
    // the store is then asked whether it has the blob).
    let cached_hash = |row: u32| old.as_ref()?.at(row as usize).map(|c| c.hash);
    let sort_out = |listing: Listing, rows: Vec<u32>| {
        let mut entries = Vec::with_capacity(listing.len());
        let mut stats = Vec::with_capacity(listing.len());
        let mut to_read = Vec::new();
        for (i, (f, row)) in listing.into_found().zip(rows).enumerate() {
            match (f, cached_hash(row)) {
                (Found::File { rel, stat }, Some(hash)) if trusted => {
                    entries.push(Some(ManifestEntry {
                        path: rel,
                        hash,
                        size: stat.size,
                        mode: stat.mode,
                    }));
                    stats.push(Some(stat));
                }
                (f, hash) => {
                    entries.push(None);
                    stats.push(None);
                    to_read.push((i, f, hash));
                }
            }
        }
        (entries, stats, to_read)
    };
    let sorted_out: Vec<_> = std::thread::scope(|s| {
        let mut parts = parts.into_iter();
        let first = parts.next();
        let others: Vec<_> = parts
            .map(|(listing, rows)| s.spawn(move || sort_out(listing, rows)))
            .collect();
        let first = first.map(|(listing, rows)| sort_out(listing, rows));
        first
            .into_iter()
            .chain(others.into_iter().filter_map(|h| h.join().ok()))
            .collect()
    });
    let mut entries = Vec::with_capacity(total as usize);
    let mut stats = Vec::with_capacity(total as usize);
    let mut to_read = Vec::new();
    for (e, st, r) in sorted_out {
        let offset = entries.len();
        to_read.extend(r.into_iter().map(|(i, f, hash)| (offset + i, f, hash)));
        entries.extend(e);
        stats.extend(st);
    }
    let known = (entries.len() - to_read.len()) as u64;
    progress(known, total);
    let how = &Storing {
        store,
        root: dir,
        tree,
        probe: &Probe::default(),
        now_ns,
    };
    let done = AtomicU64::new(known);
    let chunk = to_read.len().div_ceil(threads).max(1);
    type Out = (usize, StoredFound, bool);
    let results: Vec<Result<Vec<Out>>> = std::thread::scope(|s| {
        let handles: Vec<_> = to_read
            .chunks(chunk)
            .map(|part| {
                let done = &done;
                s.spawn(move || -> Result<Vec<Out>> {
                    let mut out = Vec::with_capacity(part.len());
                    for (i, f, known) in part {
                        let (stored, in_tree) = store_found(how, f, *known)?;
                        out.push((*i, stored, in_tree));
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
    let mut written = HashSet::new();
    for part in results {
        for (i, (entry, cached, new, bytes, hashed), in_tree) in part? {
            if in_tree {
                written.insert(entry.path.clone());
            }
            if new {
                stored.new_blobs.push(entry.hash);
                stored.new_bytes += bytes;
            }
            stored.hashed += u64::from(hashed);
            stats[i] = cached.map(|c| c.stat);
            entries[i] = Some(entry);
        }
    }
    // The new cache: every file as just found (files gone are left out),
    // in the order listed.
    let mut new_cache = StatCache::new(dir.to_path_buf(), now_ns, entries.len());
    for (e, stat) in entries.iter().zip(stats) {
        if let (Some(e), Some(stat)) = (e, stat) {
            new_cache.push(&e.path, CachedFile { stat, hash: e.hash });
        }
    }
    if to_read.len() > 1024 {
        drop_later(to_read);
    }
    let entries: Vec<ManifestEntry> = entries.into_iter().flatten().collect();
    if entries.len() as u64 != total {
        return Err(Error::Package {
            path: dir.to_path_buf(),
            message: "a file was lost while storing".into(),
        });
    }
    stored.tree = tree.map(|_| written);
    // Sorted already: the sort only checks.
    stored.manifest = Manifest::new(sort_by_path(entries));
    Ok((stored, Some(new_cache)))
}

/// Sorts manifest entries by path, the halves of a long list on two
/// threads.
fn sort_by_path(mut entries: Vec<ManifestEntry>) -> Vec<ManifestEntry> {
    let by_path = |a: &ManifestEntry, b: &ManifestEntry| a.path.cmp(&b.path);
    if entries.len() < 4096 {
        entries.sort_unstable_by(by_path);
        return entries;
    }
    let mut second = entries.split_off(entries.len() / 2);
    std::thread::scope(|s| {
        s.spawn(|| second.sort_unstable_by(by_path));
        entries.sort_unstable_by(by_path);
    });
    let mut out = Vec::with_capacity(entries.len() + second.len());
    let (mut a, mut b) = (
        entries.into_iter().peekable(),
        second.into_iter().peekable(),
    );
    loop {
        let take_a = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) => x.path < y.path,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => return out,
        };
        out.extend(if take_a { a.next() } else { b.next() });
    }
}

/// Sets a [`OnceLock`] when dropped, unless set before (so that a panic
/// does not leave its readers waiting).
struct SetOnDrop<'a, T>(&'a OnceLock<T>, Option<T>);

impl<T> Drop for SetOnDrop<'_, T> {
    fn drop(&mut self) {
        if let Some(value) = self.1.take() {
            let _ = self.0.set(value);
        }
    }
}

/// Drops `value` on a thread of its own (large collections of small
/// allocations take a while to free), or here when no thread is to be had.
fn drop_later<T: Send + 'static>(value: T) {
    let _ = std::thread::Builder::new()
        .name("fnhost-free".into())
        .spawn(move || drop(value));
}

/// What storing each file of a folder shares.
#[derive(Clone, Copy)]
struct Storing<'a> {
    store: &'a dyn Store,
    /// The folder.
    root: &'a Path,
    /// The deployment's folder to write new files into.
    tree: Option<&'a Path>,
    probe: &'a Probe,
    /// When the walk started.
    now_ns: i64,
}

/// A stored file: its manifest entry, its stat cache entry, whether its
/// blob was new, the bytes written, whether it was read and hashed.
type StoredFound = (ManifestEntry, Option<CachedFile>, bool, u64, bool);

/// Stores one file or link; `known` is the hash the stat cache gives for
/// it (the file is as cached), taken when the store has that blob. With
/// `tree`, a file new to the store is written into the deployment's folder
/// (and adopted by the store), and the second value says so.
fn store_found(how: &Storing<'_>, f: &Found, known: Option<Digest>) -> Result<(StoredFound, bool)> {
    let Storing {
        store,
        root,
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
        Found::File { rel, stat } => {
            let abs = &root.join(rel);
            let mode = stat.mode;
            if let Some(hash) = known
                && store.contains(&hash).unwrap_or(false)
            {
                let entry = ManifestEntry {
                    path: rel.clone(),
                    hash,
                    size: stat.size,
                    mode,
                };
                let cached = CachedFile { stat: *stat, hash };
                return Ok(((entry, Some(cached), false, 0, false), false));
            }
            let (hash, size, new, in_tree) = match tree {
                Some(dest) => copy_into_tree(store, abs, &dest.join(rel), mode, stat.size, probe)?,
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
            let cached = (stat.mtime_ns < now_ns.saturating_sub(1_000_000_000))
                .then_some(CachedFile { stat: *stat, hash });
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
/// needs flushing with full durability). `linker` keeps the folders of
/// the last link open for the next.
pub(crate) fn place_file(
    store: &dyn Store,
    f: &ManifestEntry,
    dest: &Path,
    previous: Option<&(PathBuf, Manifest)>,
    linker: &mut crate::fsutil::Linker,
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
        && linker.link(&blob, target).is_ok()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MODE_FILE;

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
            let name = rel.rsplit('/').next().unwrap();
            for is_dir in [false, true] {
                assert_eq!(
                    ig.excludes_entry(rel, name, is_dir),
                    ig.matcher.matched(rel, is_dir).is_ignore(),
                    "{rel} (folder: {is_dir})"
                );
            }
        }
        assert!(ig.excludes_entry("lib/.git", ".git", true));
        assert!(!ig.excludes_entry(".gitkeep", ".gitkeep", false));
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
    fn long_lists_are_sorted_by_path_on_two_threads_as_on_one() {
        for n in [0, 1, 4095, 4096, 9001] {
            let entries: Vec<ManifestEntry> = (0..n)
                .map(|i: u64| ManifestEntry {
                    // Scrambled, with shared prefixes and nested folders.
                    path: format!(
                        "d{}/{}",
                        i.wrapping_mul(7919) % 97,
                        i.wrapping_mul(104_729) % 10_007
                    ),
                    hash: Digest::of(&i.to_le_bytes()),
                    size: i,
                    mode: MODE_FILE | 0o644,
                })
                .collect();
            let mut want = entries.clone();
            want.sort_by(|a, b| a.path.cmp(&b.path));
            assert_eq!(sort_by_path(entries), want, "{n} entries");
        }
    }
}
