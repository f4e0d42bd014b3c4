//! A synced folder (Dropbox, OneDrive): snapshots by content hash, with an
//! mtime and size fast path and a quiet period.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use sha2::{Digest as _, Sha256};

use super::{SourceError, SourceProvider, SourceSnapshot, SourceSpec, other_error};

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
        }
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
        self.stamps
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(root)
            .unwrap_or_default()
    }

    fn keep_stamps(&self, root: PathBuf, stamps: HashMap<String, Stamp>) {
        self.stamps
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(root, stamps);
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
        self.keep_stamps(root, new);
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
        Ok(self.copied(root, tree, newest, stamps, notes))
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
        Ok(self.copied(root, tree, newest, stamps, notes))
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
        notes: Vec<String>,
    ) -> SourceSnapshot {
        let mut snapshot = SourceSnapshot::new(tree.finish());
        snapshot.time = newest.map(chrono::DateTime::<chrono::Utc>::from);
        snapshot.message = Some(format!("{} files from {}", stamps.len(), root.display()));
        snapshot.notes = notes;
        self.keep_stamps(root, stamps);
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
    let mut file = fs::File::open(&entry.path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().into())
}

/// Copies a file, keeping its permissions, and returns the sha256 of what
/// was written.
fn copy_hashing(from: &Path, to: &Path, meta: &fs::Metadata) -> io::Result<[u8; 32]> {
    let mut input = fs::File::open(from)?;
    let mut output = fs::File::create(to)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = input.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        output.write_all(&buf[..n])?;
    }
    output.set_permissions(meta.permissions())?;
    // The copy keeps the original's modification time: `update` compares
    // them to know the copy is current.
    if let Ok(modified) = meta.modified() {
        output.set_modified(modified)?;
    }
    Ok(hasher.finalize().into())
}

#[cfg(unix)]
fn make_link(link: &Path, target: &Path) -> io::Result<()> {
    std::os::unix::fs::symlink(link, target)
}

#[cfg(not(unix))]
fn make_link(_link: &Path, _target: &Path) -> io::Result<()> {
    Ok(())
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
    use super::skipped;

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
}
