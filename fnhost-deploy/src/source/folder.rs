//! A synced folder (Dropbox, OneDrive): snapshots by content hash, with an
//! mtime and size fast path and a quiet period.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use sha2::{Digest as _, Sha256};

use super::{SourceError, SourceProvider, SourceSnapshot, SourceSpec, make_link, other_error};
use crate::store::for_each_chunk;

const PROVIDER: &str = "folder";

/// The default quiet period: 2 seconds.
const DEFAULT_QUIET: Duration = Duration::from_millis(2000);

/// Follows a folder kept in sync by a client such as Dropbox or OneDrive.
///
/// `SourceSpec::location` is the folder; `SourceSpec::reference` is unused.
/// The snapshot id is a sha256 over the sorted relative paths, modes and
/// contents of its files. `head` re-reads only the files whose size,
/// modification time, change time or inode changed since the last call
/// (kept in memory per folder), so on an unchanged folder it only stats.
///
/// A half-synced tree is never taken: when any file or folder changed
/// within the quiet period (option `quiet_ms`, default 2000), `head` and
/// `fetch` return [`SourceError::NotReady`] and the caller retries later.
///
/// Left out, at any depth: `.git`, `.hg`, and the sync clients' temporary
/// files: `.dropbox*`, `~$*`, `*.tmp`, `.~lock*`. Symbolic links are
/// copied as links when they stay inside the folder, and left out (with a
/// note) when they point outside it.
#[derive(Debug)]
pub struct FolderSource {
    quiet: Duration,
    stamps: Mutex<HashMap<PathBuf, HashMap<String, Stamp>>>,
    /// Where the stamps are kept between processes, when set.
    stamp_dir: Option<PathBuf>,
}

/// What `head` remembers of a file to avoid reading it again.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    inode: u64,
    mode: u32,
    digest: [u8; 32],
}

/// One file of the folder, as walked.
struct Entry {
    rel: String,
    path: PathBuf,
    meta: fs::Metadata,
    kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    Link,
}

impl FolderSource {
    /// A provider with the default quiet period (2 s).
    pub fn new() -> Self {
        FolderSource {
            quiet: DEFAULT_QUIET,
            stamps: Mutex::new(HashMap::new()),
            stamp_dir: None,
        }
    }

    /// Keeps what `head` learns of each folder's files (size, times,
    /// inode, mode, hash) in `dir`, one sealed file per folder, so that a
    /// new process (`fnhost sync` run now and then) reads only the files
    /// that changed instead of every file. Without it they are kept in
    /// memory only.
    pub fn with_stamp_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.stamp_dir = Some(dir.into());
        self
    }

    /// Sets the default quiet period (a spec's `quiet_ms` overrides it).
    pub fn with_quiet_period(mut self, quiet: Duration) -> Self {
        self.quiet = quiet;
        self
    }

    fn quiet(&self, spec: &SourceSpec) -> Result<Duration, SourceError> {
        match spec.options.get("quiet_ms") {
            None => Ok(self.quiet),
            Some(v) => v
                .trim()
                .parse::<u64>()
                .map(Duration::from_millis)
                .map_err(|_| {
                    SourceError::other(
                        PROVIDER,
                        format!("option quiet_ms: '{v}' is not a number of milliseconds"),
                    )
                }),
        }
    }

    /// Walks the folder, checks the quiet period, and returns its entries.
    fn scan(&self, spec: &SourceSpec) -> Result<(PathBuf, Vec<Entry>, Vec<String>), SourceError> {
        let root = PathBuf::from(&spec.location);
        let meta = fs::metadata(&root).map_err(|e| SourceError::NotFound {
            provider: PROVIDER.to_owned(),
            what: format!("the folder {} ({e})", root.display()),
            hint: Some("check the path, and that the sync client is running".to_owned()),
        })?;
        if !meta.is_dir() {
            return Err(SourceError::NotFound {
                provider: PROVIDER.to_owned(),
                what: format!("the folder {} (it is not a folder)", root.display()),
                hint: None,
            });
        }
        let quiet = self.quiet(spec)?;
        let mut entries = Vec::new();
        let mut notes = Vec::new();
        walk(&root, &root, "", &mut entries, &mut notes)
            .map_err(|e| other_error(PROVIDER, format!("cannot read {}", root.display()), e))?;
        entries.sort_by(|a, b| a.rel.cmp(&b.rel));
        if !quiet.is_zero() {
            let now = SystemTime::now();
            let newest = entries
                .iter()
                .map(|e| &e.meta)
                .chain(std::iter::once(&meta))
                .filter_map(changed_at)
                .filter(|t| t.duration_since(now).unwrap_or_default() < Duration::from_secs(86_400))
                .max();
            if let Some(newest) = newest {
                let age = now.duration_since(newest).unwrap_or_default();
                if age < quiet {
                    return Err(SourceError::NotReady {
                        provider: PROVIDER.to_owned(),
                        message: format!(
                            "{} changed {} ms ago; waiting for {} ms without a change",
                            root.display(),
                            age.as_millis(),
                            quiet.as_millis()
                        ),
                    });
                }
            }
        }
        if !entries.iter().any(|e| e.kind != Kind::Dir) {
            return Err(SourceError::Empty {
                provider: PROVIDER.to_owned(),
                message: format!("the folder {} has no file yet", root.display()),
            });
        }
        Ok((root, entries, notes))
    }

    fn take_stamps(&self, root: &Path) -> HashMap<String, Stamp> {
        let kept = self
            .stamps
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(root);
        match (kept, self.stamp_file(root)) {
            (Some(kept), _) => kept,
            (None, Some(file)) => fs::read(file)
                .ok()
                .and_then(|data| decode_stamps(&data, root))
                .unwrap_or_default(),
            (None, None) => HashMap::new(),
        }
    }

    /// Keeps `stamps` for the next call (and, with a stamp folder, the next
    /// process; not written again when they are `before`'s).
    fn keep_stamps(
        &self,
        root: PathBuf,
        stamps: HashMap<String, Stamp>,
        before: Option<&HashMap<String, Stamp>>,
    ) {
        if before != Some(&stamps)
            && let Some(file) = self.stamp_file(&root)
        {
            // Only time is lost when this fails: not an error. Not flushed
            // either: sealed, so a torn file is ignored.
            let tmp = file.with_extension(format!("tmp-{}", std::process::id()));
            let written = file
                .parent()
                .map_or(Ok(()), fs::create_dir_all)
                .and_then(|()| {
                    fs::write(&tmp, encode_stamps(&root, &stamps))?;
                    fs::rename(&tmp, &file)
                });
            if written.is_err() {
                let _ = fs::remove_file(&tmp);
            }
        }
        self.stamps
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(root, stamps);
    }

    /// The file keeping the stamps of the folder at `root`, when kept.
    fn stamp_file(&self, root: &Path) -> Option<PathBuf> {
        let key = xxhash_rust::xxh3::xxh3_64(root.as_os_str().as_encoded_bytes());
        Some(self.stamp_dir.as_ref()?.join(format!("{key:016x}.bin")))
    }
}

impl Default for FolderSource {
    fn default() -> Self {
        Self::new()
    }
}

impl SourceProvider for FolderSource {
    fn name(&self) -> &str {
        PROVIDER
    }

    fn head(&self, spec: &SourceSpec) -> Result<String, SourceError> {
        let (root, entries, _) = self.scan(spec)?;
        let old = self.take_stamps(&root);
        let mut new = HashMap::with_capacity(entries.len());
        let mut tree = TreeHash::default();
        for entry in entries.iter().filter(|e| e.kind != Kind::Dir) {
            let mut stamp = stamp_of(&entry.meta);
            stamp.digest = match old.get(&entry.rel) {
                Some(known) if known.same_file(&stamp) => known.digest,
                _ => digest_of(entry).map_err(|e| {
                    other_error(PROVIDER, format!("cannot read {}", entry.path.display()), e)
                })?,
            };
            tree.add(&entry.rel, entry.kind, &stamp);
            new.insert(entry.rel.clone(), stamp);
        }
        self.keep_stamps(root, new, Some(&old));
        Ok(tree.finish())
    }

    fn fetch(&self, spec: &SourceSpec, into: &Path) -> Result<SourceSnapshot, SourceError> {
        let (root, entries, notes) = self.scan(spec)?;
        let mut stamps = HashMap::with_capacity(entries.len());
        let mut tree = TreeHash::default();
        let mut newest = None;
        for entry in &entries {
            let target = into.join(&entry.rel);
            let failed =
                |e: io::Error| other_error(PROVIDER, format!("cannot copy {}", entry.rel), e);
            let mut stamp = stamp_of(&entry.meta);
            match entry.kind {
                Kind::Dir => {
                    fs::create_dir_all(&target).map_err(failed)?;
                    continue;
                }
                Kind::Link => {
                    let link = fs::read_link(&entry.path).map_err(failed)?;
                    stamp.digest = Sha256::digest(link.as_os_str().as_encoded_bytes()).into();
                    make_link(&link, &target).map_err(failed)?;
                }
                Kind::File => {
                    stamp.digest =
                        copy_hashing(&entry.path, &target, &entry.meta).map_err(failed)?;
                }
            }
            newest = newest.max(entry.meta.modified().ok());
            tree.add(&entry.rel, entry.kind, &stamp);
            stamps.insert(entry.rel.clone(), stamp);
        }
        Ok(self.copied(root, tree, newest, stamps, None, notes))
    }

    /// Copies only what changed since `head` (or the last copy) saw the
    /// folder; see [`SourceProvider::update`].
    fn update(
        &self,
        spec: &SourceSpec,
        dir: &Path,
        previous: &str,
    ) -> Result<SourceSnapshot, SourceError> {
        let _ = previous;
        if !dir.is_dir() {
            fs::create_dir_all(dir).map_err(|e| {
                other_error(PROVIDER, format!("cannot create {}", dir.display()), e)
            })?;
        }
        self.update_copy(spec, dir)
    }
}

impl FolderSource {
    /// Brings `dir` (an earlier copy of this folder, by `fetch` or
    /// `update`) to the folder's current content: files whose stamp
    /// matches what `head` (or the last copy) saw and whose copy still has
    /// the same size, modification time and mode are left as they are;
    /// the others are copied again (as new files); what the folder no
    /// longer has goes.
    fn update_copy(&self, spec: &SourceSpec, dir: &Path) -> Result<SourceSnapshot, SourceError> {
        let (root, entries, notes) = self.scan(spec)?;
        let old = self.take_stamps(&root);
        let mut stamps = HashMap::with_capacity(entries.len());
        let mut tree = TreeHash::default();
        let mut newest = None;
        let mut keep = std::collections::HashSet::with_capacity(entries.len());
        for entry in &entries {
            let target = dir.join(&entry.rel);
            let failed =
                |e: io::Error| other_error(PROVIDER, format!("cannot copy {}", entry.rel), e);
            keep.insert(entry.rel.as_str());
            let mut stamp = stamp_of(&entry.meta);
            let present = fs::symlink_metadata(&target).ok();
            match entry.kind {
                Kind::Dir => {
                    if !present.as_ref().is_some_and(fs::Metadata::is_dir) {
                        crate::fsutil::remove_tree(&target).map_err(failed)?;
                        fs::create_dir_all(&target).map_err(failed)?;
                    }
                    continue;
                }
                Kind::Link => {
                    let link = fs::read_link(&entry.path).map_err(failed)?;
                    stamp.digest = Sha256::digest(link.as_os_str().as_encoded_bytes()).into();
                    if fs::read_link(&target).ok().as_ref() != Some(&link) {
                        crate::fsutil::remove_tree(&target).map_err(failed)?;
                        make_link(&link, &target).map_err(failed)?;
                    }
                }
                Kind::File => {
                    let known = old.get(&entry.rel).filter(|k| k.same_file(&stamp));
                    let copy_current = present.as_ref().is_some_and(|p| {
                        p.is_file()
                            && p.len() == entry.meta.len()
                            && p.modified().ok() == entry.meta.modified().ok()
                            && stamp_of(p).mode & 0o111 == stamp.mode & 0o111
                    });
                    match known {
                        Some(k) if copy_current => stamp.digest = k.digest,
                        _ => {
                            crate::fsutil::remove_tree(&target).map_err(failed)?;
                            stamp.digest =
                                copy_hashing(&entry.path, &target, &entry.meta).map_err(failed)?;
                        }
                    }
                }
            }
            newest = newest.max(entry.meta.modified().ok());
            tree.add(&entry.rel, entry.kind, &stamp);
            stamps.insert(entry.rel.clone(), stamp);
        }
        remove_others(dir, "", &keep)
            .map_err(|e| other_error(PROVIDER, format!("cannot clean {}", dir.display()), e))?;
        Ok(self.copied(root, tree, newest, stamps, Some(&old), notes))
    }
}

impl FolderSource {
    /// The snapshot of a copy just made; its stamps are kept for the next
    /// `head` or `update`.
    fn copied(
        &self,
        root: PathBuf,
        tree: TreeHash,
        newest: Option<SystemTime>,
        stamps: HashMap<String, Stamp>,
        before: Option<&HashMap<String, Stamp>>,
        notes: Vec<String>,
    ) -> SourceSnapshot {
        let mut snapshot = SourceSnapshot::new(tree.finish());
        snapshot.time = newest.map(chrono::DateTime::<chrono::Utc>::from);
        snapshot.message = Some(format!("{} files from {}", stamps.len(), root.display()));
        snapshot.notes = notes;
        self.keep_stamps(root, stamps, before);
        snapshot
    }
}

/// Removes what `dir` holds that is not in `keep` (relative paths).
fn remove_others(
    dir: &Path,
    prefix: &str,
    keep: &std::collections::HashSet<&str>,
) -> io::Result<()> {
    for item in fs::read_dir(dir)? {
        let item = item?;
        let name = item.file_name().to_string_lossy().into_owned();
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let path = item.path();
        if !keep.contains(rel.as_str()) {
            crate::fsutil::remove_tree(&path)?;
        } else if item.file_type()?.is_dir() {
            remove_others(&path, &rel, keep)?;
        }
    }
    Ok(())
}

const STAMPS_MAGIC: &[u8; 8] = b"fnhfs01\n";

/// The stamps of the folder at `root` in the sealed binary form of
/// [`crate::codec`].
fn encode_stamps(root: &Path, stamps: &HashMap<String, Stamp>) -> Vec<u8> {
    let mut w = crate::codec::Writer::new(STAMPS_MAGIC, 64 + stamps.len() * 120);
    w.str(root.as_os_str().as_encoded_bytes());
    w.bytes(&(stamps.len() as u64).to_le_bytes());
    for (rel, s) in stamps {
        w.str(rel.as_bytes());
        w.bytes(&s.len.to_le_bytes());
        for t in [s.mtime.0, s.mtime.1, s.ctime.0, s.ctime.1] {
            w.bytes(&t.to_le_bytes());
        }
        w.bytes(&s.inode.to_le_bytes());
        w.bytes(&s.mode.to_le_bytes());
        w.bytes(&s.digest);
    }
    w.finish()
}

/// Reads [`encode_stamps`]'s form; `None` when damaged or of another
/// folder.
fn decode_stamps(data: &[u8], root: &Path) -> Option<HashMap<String, Stamp>> {
    let mut r = crate::codec::Reader::open(data, STAMPS_MAGIC)?;
    let len = r.u32()? as usize;
    if r.take(len)? != root.as_os_str().as_encoded_bytes() {
        return None;
    }
    let count = r.u64()? as usize;
    let mut stamps = HashMap::with_capacity(count.min(data.len() / 80));
    for _ in 0..count {
        let rel = r.string()?;
        let stamp = Stamp {
            len: r.u64()?,
            mtime: (r.i64()?, r.i64()?),
            ctime: (r.i64()?, r.i64()?),
            inode: r.u64()?,
            mode: r.u32()?,
            digest: r.arr()?,
        };
        stamps.insert(rel, stamp);
    }
    r.is_done().then_some(stamps)
}

impl Stamp {
    fn same_file(&self, other: &Stamp) -> bool {
        self.len == other.len
            && self.mtime == other.mtime
            && self.ctime == other.ctime
            && self.inode == other.inode
            && self.mode == other.mode
    }
}

/// Whether a name is left out of a synced folder.
fn skipped(name: &str) -> bool {
    name == ".git"
        || name == ".hg"
        || name.starts_with(".dropbox")
        || name.starts_with("~$")
        || name.starts_with(".~lock")
        || name.to_ascii_lowercase().ends_with(".tmp")
}

fn walk(
    root: &Path,
    dir: &Path,
    prefix: &str,
    out: &mut Vec<Entry>,
    notes: &mut Vec<String>,
) -> io::Result<()> {
    for item in fs::read_dir(dir)? {
        let item = item?;
        let name = item.file_name();
        let Some(name) = name.to_str() else {
            notes.push(format!(
                "left out {}: its name is not UTF-8",
                item.path().display()
            ));
            continue;
        };
        if skipped(name) {
            continue;
        }
        let rel = if prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{prefix}/{name}")
        };
        let path = item.path();
        let meta = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            // Deleted while walking: the quiet period catches the change.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let kind = if meta.file_type().is_symlink() {
            if !link_stays_inside(root, &path) {
                notes.push(format!("left out {rel}: a link to outside the folder"));
                continue;
            }
            Kind::Link
        } else if meta.is_dir() {
            Kind::Dir
        } else if meta.is_file() {
            Kind::File
        } else {
            continue;
        };
        out.push(Entry {
            rel: rel.clone(),
            path: path.clone(),
            meta,
            kind,
        });
        if kind == Kind::Dir {
            walk(root, &path, &rel, out, notes)?;
        }
    }
    Ok(())
}

/// When a file last changed here: its modification time, or its change
/// time when later (a sync client sets the original modification time on
/// a file it writes now).
fn changed_at(meta: &fs::Metadata) -> Option<SystemTime> {
    let modified = meta.modified().ok();
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        let secs = u64::try_from(meta.ctime()).ok()?;
        let nanos = u32::try_from(meta.ctime_nsec()).unwrap_or(0);
        let changed = SystemTime::UNIX_EPOCH + Duration::new(secs, nanos);
        modified.max(Some(changed))
    }
    #[cfg(not(unix))]
    {
        modified
    }
}

fn link_stays_inside(root: &Path, link: &Path) -> bool {
    match (fs::canonicalize(link), fs::canonicalize(root)) {
        (Ok(target), Ok(root)) => target.starts_with(root),
        _ => false,
    }
}

#[cfg(unix)]
fn stamp_of(meta: &fs::Metadata) -> Stamp {
    use std::os::unix::fs::MetadataExt as _;
    Stamp {
        len: meta.len(),
        mtime: (meta.mtime(), meta.mtime_nsec()),
        ctime: (meta.ctime(), meta.ctime_nsec()),
        inode: meta.ino(),
        mode: meta.mode(),
        digest: [0; 32],
    }
}

#[cfg(not(unix))]
fn stamp_of(meta: &fs::Metadata) -> Stamp {
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .unwrap_or_default();
    Stamp {
        len: meta.len(),
        mtime: (mtime.as_secs() as i64, i64::from(mtime.subsec_nanos())),
        ctime: (0, 0),
        inode: 0,
        mode: u32::from(meta.permissions().readonly()),
        digest: [0; 32],
    }
}

fn digest_of(entry: &Entry) -> io::Result<[u8; 32]> {
    if entry.kind == Kind::Link {
        let link = fs::read_link(&entry.path)?;
        return Ok(Sha256::digest(link.as_os_str().as_encoded_bytes()).into());
    }
    let mut hasher = Sha256::new();
    for_each_chunk(&mut fs::File::open(&entry.path)?, |chunk| {
        hasher.update(chunk);
        Ok(())
    })?;
    Ok(hasher.finalize().into())
}

/// Copies a file, keeping its permissions, and returns the sha256 of what
/// was written.
fn copy_hashing(from: &Path, to: &Path, meta: &fs::Metadata) -> io::Result<[u8; 32]> {
    let mut input = fs::File::open(from)?;
    let mut output = fs::File::create(to)?;
    let mut hasher = Sha256::new();
    for_each_chunk(&mut input, |chunk| {
        hasher.update(chunk);
        output.write_all(chunk)
    })?;
    output.set_permissions(meta.permissions())?;
    // The copy keeps the original's modification time: `update` compares
    // them to know the copy is current.
    if let Ok(modified) = meta.modified() {
        output.set_modified(modified)?;
    }
    Ok(hasher.finalize().into())
}

/// The tree id: sha256 over (path, kind and executable bit, content digest)
/// of each file, in path order.
#[derive(Default)]
struct TreeHash(Sha256);

impl TreeHash {
    fn add(&mut self, rel: &str, kind: Kind, stamp: &Stamp) {
        let mode: &[u8] = match kind {
            Kind::Link => b"link",
            _ if stamp.mode & 0o111 != 0 => b"755",
            _ => b"644",
        };
        self.0.update(rel.as_bytes());
        self.0.update([0]);
        self.0.update(mode);
        self.0.update([0]);
        self.0.update(stamp.digest);
    }

    fn finish(self) -> String {
        self.0
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_clients_temporary_files_are_skipped() {
        for name in [
            ".git",
            ".hg",
            ".dropbox",
            ".dropbox.cache",
            "~$report.docx",
            "x.tmp",
            "X.TMP",
            ".~lock.a.odt#",
        ] {
            assert!(skipped(name), "{name}");
        }
        for name in ["host.json", "tmp", "a.tmpl", "lock"] {
            assert!(!skipped(name), "{name}");
        }
    }

    #[test]
    fn stamps_kept_in_a_folder_spare_another_process_reading_every_file() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("src");
        fs::create_dir_all(root.join("b")).unwrap();
        fs::write(root.join("a.txt"), "one").unwrap();
        fs::write(root.join("b/c.txt"), "two").unwrap();
        let dir = tmp.path().join("stamps");
        let spec = SourceSpec::new(root.to_string_lossy());
        let source = || {
            FolderSource::new()
                .with_quiet_period(Duration::ZERO)
                .with_stamp_dir(&dir)
        };
        let first = source().head(&spec).unwrap();
        // Another instance, as another process would, finds the stamps on
        // disk: the same head; and, nothing having changed, does not write
        // them again (a write replaces the file: a new inode).
        let inode = |p: &Path| std::os::unix::fs::MetadataExt::ino(&fs::metadata(p).unwrap());
        let file = fs::read_dir(&dir).unwrap().next().unwrap().unwrap().path();
        let written = inode(&file);
        assert_eq!(source().head(&spec).unwrap(), first);
        assert_eq!(inode(&file), written);
        // Taken from the stamps, not from the files: a stamp that lies
        // about a file whose size, times and inode are as stamped is
        // believed.
        let mut stamps = decode_stamps(&fs::read(&file).unwrap(), &root).unwrap();
        assert_eq!(stamps.len(), 2);
        stamps.get_mut("a.txt").unwrap().digest = [7; 32];
        fs::write(&file, encode_stamps(&root, &stamps)).unwrap();
        assert_ne!(source().head(&spec).unwrap(), first);
        // A damaged file, or one of another folder, is not believed.
        let mut data = encode_stamps(&root, &stamps);
        data[20] ^= 1;
        fs::write(&file, &data).unwrap();
        assert_eq!(source().head(&spec).unwrap(), first);
        fs::write(&file, encode_stamps(Path::new("/elsewhere"), &stamps)).unwrap();
        assert_eq!(source().head(&spec).unwrap(), first);
        // A changed file is read again, whatever the stamps said.
        fs::write(&file, encode_stamps(&root, &stamps)).unwrap();
        fs::write(root.join("a.txt"), "three").unwrap();
        let changed = source().head(&spec).unwrap();
        assert_ne!(changed, first);
        assert_eq!(
            FolderSource::new()
                .with_quiet_period(Duration::ZERO)
                .head(&spec)
                .unwrap(),
            changed
        );
    }
}
