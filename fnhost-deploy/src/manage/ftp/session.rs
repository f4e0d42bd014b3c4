//! One FTP session's file system: the slot's active content as it was at
//! login, with the session's staged changes over it; when the session
//! ends, the changes become one deployment.
//!
//! The tree a client sees is Azure's: `/site/wwwroot/` is the content.
//! Changes are allowed only under it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncSeekExt as _, AsyncWriteExt as _};
use unftp_core::storage::{self, ErrorKind, Fileinfo, Metadata, Permissions, StorageBackend};

use super::{FtpUser, Shared};
use crate::site::{Content, DeployRequest};
use crate::store::Manifest;

/// Where the content is in the tree clients see.
const WWWROOT: &str = "site/wwwroot";
/// The notice a read-only session finds at the root.
const READ_ONLY_FILE: &str = "READ-ONLY.txt";

type Result<T> = storage::Result<T>;

fn err(kind: ErrorKind) -> storage::Error {
    storage::Error::from(kind)
}

/// A file or folder's metadata as listings show it.
#[derive(Debug, Clone)]
pub(crate) struct Meta {
    len: u64,
    dir: bool,
    mode: u32,
    modified: SystemTime,
}

impl Metadata for Meta {
    fn len(&self) -> u64 {
        self.len
    }
    fn is_dir(&self) -> bool {
        self.dir
    }
    fn is_file(&self) -> bool {
        !self.dir
    }
    fn is_symlink(&self) -> bool {
        false
    }
    fn modified(&self) -> Result<SystemTime> {
        Ok(self.modified)
    }
    fn gid(&self) -> u32 {
        0
    }
    fn uid(&self) -> u32 {
        0
    }
    fn permissions(&self) -> Permissions {
        Permissions(self.mode & 0o777)
    }
}

/// A staged change to one file.
#[derive(Debug)]
enum Change {
    /// The file's new content, in the staging folder.
    Put { file: PathBuf, size: u64, mode: u32 },
    /// The file is removed.
    Delete,
}

/// What a session works on, from login.
#[derive(Debug)]
struct Session {
    user: FtpUser,
    /// The active content at login: its folder and manifest.
    base: Option<(PathBuf, Arc<Manifest>)>,
    /// Why changes are refused, when they are.
    read_only: Option<String>,
    staging: PathBuf,
    changes: BTreeMap<String, Change>,
    /// Folders made in this session (they exist while files are in them).
    dirs: BTreeSet<String>,
    staged_bytes: u64,
    login: SystemTime,
}

/// A path of the tree clients see.
enum Where {
    /// `/`, `/site`.
    Virtual(&'static str),
    /// `/READ-ONLY.txt` of a read-only session.
    Notice,
    /// Under `/site/wwwroot` (`""` is the content's root).
    Content(String),
}

/// A file of the session's view.
enum FileRef {
    Staged(PathBuf, u64),
    Base(PathBuf, u64, u32),
}

impl Session {
    /// Lets go of a change that another replaced: its staged file goes.
    fn discard(&mut self, old: Option<Change>) {
        if let Some(Change::Put { file, size, .. }) = old {
            self.staged_bytes -= size;
            let _ = fs::remove_file(file);
        }
    }

    /// Removes the file `rel`: a deletion of a file of the base, no change
    /// at all for a file only staged.
    fn remove(&mut self, rel: &str) {
        let in_base = self
            .base
            .as_ref()
            .is_some_and(|(_, m)| m.get(rel).is_some());
        let old = if in_base {
            self.changes.insert(rel.to_owned(), Change::Delete)
        } else {
            self.changes.remove(rel)
        };
        self.discard(old);
    }

    /// `path` (absolute, or relative to `/`) in the tree, `..` resolved.
    fn locate(&self, path: &Path) -> Result<Where> {
        let mut parts: Vec<String> = Vec::new();
        for c in path.components() {
            match c {
                Component::Normal(p) => parts.push(
                    p.to_str()
                        .ok_or_else(|| err(ErrorKind::FileNameNotAllowedError))?
                        .to_string(),
                ),
                Component::ParentDir => {
                    parts.pop();
                }
                _ => {}
            }
        }
        let joined = parts.join("/");
        Ok(match joined.as_str() {
            "" => Where::Virtual(""),
            "site" => Where::Virtual("site"),
            WWWROOT => Where::Content(String::new()),
            READ_ONLY_FILE if self.read_only.is_some() => Where::Notice,
            other => match other.strip_prefix("site/wwwroot/") {
                Some(rel) => Where::Content(rel.to_string()),
                None => return Err(err(ErrorKind::PermanentFileNotAvailable)),
            },
        })
    }

    fn file(&self, rel: &str) -> Option<FileRef> {
        match self.changes.get(rel) {
            Some(Change::Put { file, size, .. }) => Some(FileRef::Staged(file.clone(), *size)),
            Some(Change::Delete) => None,
            None => {
                let (dir, m) = self.base.as_ref()?;
                let e = m.get(rel)?;
                Some(FileRef::Base(dir.join(rel), e.size, e.mode))
            }
        }
    }

    /// The base files under `prefix` (a folder path ending in `/`, or
    /// empty), by binary search in the sorted manifest.
    fn base_under<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = &'a crate::store::ManifestEntry> + 'a {
        let files: &[crate::store::ManifestEntry] =
            self.base.as_ref().map_or(&[], |(_, m)| m.files.as_slice());
        let start = files.partition_point(|e| e.path.as_str() < prefix);
        files[start..]
            .iter()
            .take_while(move |e| e.path.starts_with(prefix))
            .filter(|e| !self.changes.contains_key(&e.path))
    }

    fn is_dir(&self, rel: &str) -> bool {
        if rel.is_empty() || self.dirs.contains(rel) {
            return true;
        }
        let prefix = format!("{rel}/");
        let staged =
            |(p, c): (&String, &Change)| matches!(c, Change::Put { .. }) && p.starts_with(&prefix);
        self.dirs.iter().any(|d| d.starts_with(&prefix))
            || self.changes.iter().any(staged)
            || self.base_under(&prefix).next().is_some()
    }

    /// The entries of the content folder `rel`: name -> file size and
    /// mode, or `None` for a folder.
    fn children(&self, rel: &str) -> BTreeMap<String, Option<(u64, u32)>> {
        let prefix = if rel.is_empty() {
            String::new()
        } else {
            format!("{rel}/")
        };
        let mut out = BTreeMap::new();
        let dirs = self.dirs.iter().map(|d| (d.clone(), None));
        let base = self
            .base_under(&prefix)
            .map(|e| (e.path.clone(), Some((e.size, e.mode))));
        let staged = self.changes.iter().filter_map(|(p, c)| match c {
            Change::Put { size, mode, .. } => Some((p.clone(), Some((*size, *mode)))),
            Change::Delete => None,
        });
        for (path, file) in base.chain(staged).chain(dirs) {
            let Some(rest) = path.strip_prefix(&prefix) else {
                continue;
            };
            match rest.split_once('/') {
                Some((dir, _)) => {
                    out.insert(dir.to_string(), None);
                }
                None if !rest.is_empty() => {
                    out.entry(rest.to_string()).or_insert(file);
                }
                None => {}
            }
        }
        out
    }

    fn dir_meta(&self) -> Meta {
        Meta {
            len: 0,
            dir: true,
            mode: 0o755,
            modified: self.login,
        }
    }

    fn file_meta(&self, len: u64, mode: u32) -> Meta {
        Meta {
            len,
            dir: false,
            mode: if self.read_only.is_some() {
                mode & 0o555
            } else {
                mode
            },
            modified: self.login,
        }
    }
}

/// The storage back end of one FTP session.
#[derive(Debug)]
pub(crate) struct SessionFs {
    shared: Arc<Shared>,
    session: Option<Mutex<Session>>,
}

impl SessionFs {
    pub(super) fn new(shared: Arc<Shared>) -> SessionFs {
        SessionFs {
            shared,
            session: None,
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Session) -> Result<T>) -> Result<T> {
        let s = self
            .session
            .as_ref()
            .ok_or_else(|| err(ErrorKind::PermissionDenied))?;
        let mut s = s.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut s)
    }

    /// The content path of `path` for a change, or why not.
    fn writable(&self, path: &Path, what: &str) -> Result<String> {
        self.with(|s| {
            if let Some(why) = &s.read_only {
                self.shared.log(&format!(
                    "ftp: {}: refused {what} {}: {why}",
                    s.user,
                    path.display()
                ));
                return Err(err(ErrorKind::PermissionDenied));
            }
            match s.locate(path)? {
                Where::Content(rel) if !rel.is_empty() => {
                    crate::package::check_relative_path(&rel)
                        .map_err(|_| err(ErrorKind::FileNameNotAllowedError))?;
                    Ok(rel)
                }
                _ => Err(err(ErrorKind::PermissionDenied)),
            }
        })
    }
}

#[async_trait]
impl StorageBackend<FtpUser> for SessionFs {
    type Metadata = Meta;

    fn enter(&mut self, user: &FtpUser) -> io::Result<()> {
        let site = &self.shared.config.site;
        let to_io = |e: crate::Error| io::Error::other(e.to_string());
        let read_only = match site.check_writable(&user.app, &user.slot) {
            Ok(()) => None,
            Err(e @ crate::Error::ReadOnly { .. }) => Some(e.to_string()),
            Err(e) => return Err(to_io(e)),
        };
        let base = match site.active(&user.app, &user.slot).map_err(to_io)? {
            Some(a) => Some((
                a.path,
                Arc::new(site.manifest(&user.app, &a.deployment).map_err(to_io)?),
            )),
            None => None,
        };
        let staging = self
            .shared
            .tmp
            .join(format!("session-{}", crate::fsutil::random_hex(6)));
        self.session = Some(Mutex::new(Session {
            user: user.clone(),
            base,
            read_only,
            staging,
            changes: BTreeMap::new(),
            dirs: BTreeSet::new(),
            staged_bytes: 0,
            login: SystemTime::now(),
        }));
        Ok(())
    }

    async fn metadata<P: AsRef<Path> + Send + Debug>(&self, _: &FtpUser, path: P) -> Result<Meta> {
        self.with(|s| match s.locate(path.as_ref())? {
            Where::Virtual(_) => Ok(s.dir_meta()),
            Where::Notice => Ok(s.file_meta(notice(s).len() as u64, 0o444)),
            Where::Content(rel) => match s.file(&rel) {
                Some(FileRef::Staged(_, size)) => Ok(s.file_meta(size, 0o644)),
                Some(FileRef::Base(_, size, mode)) => Ok(s.file_meta(size, mode)),
                None if s.is_dir(&rel) => Ok(s.dir_meta()),
                None => Err(err(ErrorKind::PermanentFileNotAvailable)),
            },
        })
    }

    async fn list<P: AsRef<Path> + Send + Debug>(
        &self,
        _: &FtpUser,
        path: P,
    ) -> Result<Vec<Fileinfo<PathBuf, Meta>>> {
        let path = path.as_ref().to_path_buf();
        self.with(|s| {
            let entries: Vec<(String, Meta)> = match s.locate(&path)? {
                Where::Virtual("") => {
                    let mut v = vec![("site".to_string(), s.dir_meta())];
                    if s.read_only.is_some() {
                        v.push((
                            READ_ONLY_FILE.into(),
                            s.file_meta(notice(s).len() as u64, 0o444),
                        ));
                    }
                    v
                }
                Where::Virtual(_) => vec![("wwwroot".to_string(), s.dir_meta())],
                Where::Notice => return Err(err(ErrorKind::PermanentDirectoryNotAvailable)),
                Where::Content(rel) => {
                    if !s.is_dir(&rel) {
                        return Err(err(ErrorKind::PermanentDirectoryNotAvailable));
                    }
                    s.children(&rel)
                        .into_iter()
                        .map(|(name, f)| {
                            let meta = match f {
                                Some((size, mode)) => s.file_meta(size, mode),
                                None => s.dir_meta(),
                            };
                            (name, meta)
                        })
                        .collect()
                }
            };
            Ok(entries
                .into_iter()
                .map(|(name, metadata)| Fileinfo {
                    path: path.join(name),
                    metadata,
                })
                .collect())
        })
    }

    async fn get<P: AsRef<Path> + Send + Debug>(
        &self,
        _: &FtpUser,
        path: P,
        start_pos: u64,
    ) -> Result<Box<dyn AsyncRead + Send + Sync + Unpin>> {
        enum Source {
            File(PathBuf),
            Text(String),
        }
        let source = self.with(|s| match s.locate(path.as_ref())? {
            Where::Notice => Ok(Source::Text(notice(s))),
            Where::Virtual(_) => Err(err(ErrorKind::PermanentFileNotAvailable)),
            Where::Content(rel) => match s.file(&rel) {
                Some(FileRef::Staged(p, _) | FileRef::Base(p, _, _)) => Ok(Source::File(p)),
                None => Err(err(ErrorKind::PermanentFileNotAvailable)),
            },
        })?;
        match source {
            Source::Text(t) => {
                let bytes = t.into_bytes();
                let from = usize::try_from(start_pos)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                Ok(Box::new(io::Cursor::new(bytes[from..].to_vec())))
            }
            Source::File(p) => {
                let mut f = tokio::fs::File::open(&p)
                    .await
                    .map_err(|_| err(ErrorKind::PermanentFileNotAvailable))?;
                if start_pos > 0 {
                    f.seek(io::SeekFrom::Start(start_pos))
                        .await
                        .map_err(|e| storage::Error::new(ErrorKind::LocalError, e))?;
                }
                Ok(Box::new(f))
            }
        }
    }

    async fn put<P: AsRef<Path> + Send + Debug, R: AsyncRead + Send + Sync + Unpin + 'static>(
        &self,
        _: &FtpUser,
        input: R,
        path: P,
        start_pos: u64,
    ) -> Result<u64> {
        let rel = self.writable(path.as_ref(), "upload")?;
        if start_pos != 0 {
            return Err(err(ErrorKind::CommandNotImplemented));
        }
        let (staging, allowed, mode) = self.with(|s| {
            let under_a_file = Path::new(&rel)
                .ancestors()
                .skip(1)
                .any(|a| s.file(&a.to_string_lossy()).is_some());
            if s.is_dir(&rel) || under_a_file {
                return Err(err(ErrorKind::PermissionDenied));
            }
            let limit = self.shared.config.limits.max_upload_bytes;
            let mode = match s.file(&rel) {
                Some(FileRef::Base(_, _, mode)) => mode & 0o777,
                _ => 0o644,
            };
            Ok((
                s.staging.clone(),
                limit.saturating_sub(s.staged_bytes),
                mode,
            ))
        })?;
        tokio::fs::create_dir_all(&staging)
            .await
            .map_err(|e| storage::Error::new(ErrorKind::LocalError, e))?;
        let file = staging.join(crate::fsutil::random_hex(8));
        let received = receive(input, &file, allowed).await;
        let size = match received {
            Ok(size) => size,
            Err(e) => {
                let _ = tokio::fs::remove_file(&file).await;
                return Err(e);
            }
        };
        self.with(|s| {
            s.staged_bytes += size;
            let old = s
                .changes
                .insert(rel.clone(), Change::Put { file, size, mode });
            s.discard(old);
            self.shared
                .log(&format!("ftp: {}: staged {rel} ({size} bytes)", s.user));
            Ok(size)
        })
    }

    async fn del<P: AsRef<Path> + Send + Debug>(&self, _: &FtpUser, path: P) -> Result<()> {
        let rel = self.writable(path.as_ref(), "delete")?;
        self.with(|s| {
            if s.file(&rel).is_none() {
                return Err(err(ErrorKind::PermanentFileNotAvailable));
            }
            s.remove(&rel);
            Ok(())
        })
    }

    async fn mkd<P: AsRef<Path> + Send + Debug>(&self, _: &FtpUser, path: P) -> Result<()> {
        let rel = self.writable(path.as_ref(), "mkdir")?;
        self.with(|s| {
            if s.file(&rel).is_some() || s.is_dir(&rel) {
                return Err(err(ErrorKind::PermissionDenied));
            }
            s.dirs.insert(rel);
            Ok(())
        })
    }

    async fn rename<P: AsRef<Path> + Send + Debug>(
        &self,
        _: &FtpUser,
        from: P,
        to: P,
    ) -> Result<()> {
        let from = self.writable(from.as_ref(), "rename")?;
        let to = self.writable(to.as_ref(), "rename")?;
        // Files only: a folder is renamed by moving its files.
        let (source, staging) = self.with(|s| {
            if s.is_dir(&to) {
                return Err(err(ErrorKind::PermissionDenied));
            }
            match s.file(&from) {
                Some(FileRef::Staged(p, size)) => Ok(((p, size, 0o644), s.staging.clone())),
                Some(FileRef::Base(p, size, mode)) => Ok(((p, size, mode), s.staging.clone())),
                None => Err(err(ErrorKind::PermanentFileNotAvailable)),
            }
        })?;
        let (src, size, mode) = source;
        tokio::fs::create_dir_all(&staging)
            .await
            .map_err(|e| storage::Error::new(ErrorKind::LocalError, e))?;
        let copy = staging.join(crate::fsutil::random_hex(8));
        tokio::fs::copy(&src, &copy)
            .await
            .map_err(|e| storage::Error::new(ErrorKind::LocalError, e))?;
        self.with(|s| {
            s.staged_bytes += size;
            s.remove(&from);
            let old = s.changes.insert(
                to.clone(),
                Change::Put {
                    file: copy,
                    size,
                    mode: mode & 0o777,
                },
            );
            s.discard(old);
            Ok(())
        })
    }

    async fn rmd<P: AsRef<Path> + Send + Debug>(&self, _: &FtpUser, path: P) -> Result<()> {
        let rel = self.writable(path.as_ref(), "rmdir")?;
        self.with(|s| {
            if !s.is_dir(&rel) {
                return Err(err(ErrorKind::PermanentDirectoryNotAvailable));
            }
            if !s.children(&rel).is_empty() {
                return Err(err(ErrorKind::PermanentDirectoryNotEmpty));
            }
            s.dirs.remove(&rel);
            Ok(())
        })
    }

    async fn cwd<P: AsRef<Path> + Send + Debug>(&self, _: &FtpUser, path: P) -> Result<()> {
        self.with(|s| match s.locate(path.as_ref())? {
            Where::Virtual(_) => Ok(()),
            Where::Content(rel) if s.is_dir(&rel) => Ok(()),
            _ => Err(err(ErrorKind::PermanentDirectoryNotAvailable)),
        })
    }
}

/// The read-only session's notice.
fn notice(s: &Session) -> String {
    format!(
        "{}\r\nFiles can be listed and downloaded; uploads, deletes and new folders are refused.\r\n",
        s.read_only.as_deref().unwrap_or("")
    )
}

/// Copies `input` into `file`, at most `allowed` bytes.
async fn receive<R: AsyncRead + Unpin>(input: R, file: &Path, allowed: u64) -> Result<u64> {
    use tokio::io::AsyncReadExt as _;
    let local = |e: io::Error| storage::Error::new(ErrorKind::LocalError, e);
    let mut out = tokio::fs::File::create(file).await.map_err(local)?;
    let mut limited = input.take(allowed.saturating_add(1));
    // A transfer that fails (a TLS connection cut without close_notify
    // included) is an error: nothing half-received is staged.
    let n = tokio::io::copy(&mut limited, &mut out)
        .await
        .map_err(|e| storage::Error::new(ErrorKind::ConnectionClosed, e))?;
    if n > allowed {
        return Err(err(ErrorKind::ExceededStorageAllocationError));
    }
    out.flush().await.map_err(local)?;
    Ok(n)
}

impl Drop for SessionFs {
    /// The session ended (QUIT or disconnect): its changes become one
    /// deployment, made on a thread (the server waits for it at shutdown).
    fn drop(&mut self) {
        let Some(session) = self.session.take() else {
            return;
        };
        let session = session.into_inner().unwrap_or_else(|e| e.into_inner());
        if session.changes.is_empty() {
            let _ = crate::fsutil::remove_tree(&session.staging);
            return;
        }
        let shared = self.shared.clone();
        let handle = std::thread::spawn({
            let shared = shared.clone();
            move || commit(&shared, session)
        });
        shared.add_commit(handle);
    }
}

/// Makes the deployment of an ended session: the slot's active content
/// now, with the session's changes applied.
fn commit(shared: &Shared, s: Session) {
    let user = &s.user;
    let mut names: Vec<String> = Vec::new();
    for (rel, c) in &s.changes {
        names.push(match c {
            Change::Put { .. } => format!("put {rel}"),
            Change::Delete => format!("delete {rel}"),
        });
    }
    let mut message = format!(
        "ftp: {}",
        names.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
    );
    if names.len() > 5 {
        message.push_str(&format!(" and {} more", names.len() - 5));
    }
    let folder = shared
        .tmp
        .join(format!("deploy-{}", crate::fsutil::random_hex(6)));
    let result = build_folder(shared, &s, &folder).and_then(|()| {
        shared.config.site.deploy(
            DeployRequest::new(user.app.clone(), Content::Folder(folder.clone()))
                .with_slot(user.slot.clone())
                .with_author(user.user.clone())
                .with_deployer("Ftp")
                .with_source(format!("FTP session of {user}"))
                .with_message(message.clone()),
        )
    });
    match result {
        Ok(outcome) if outcome.unchanged => shared.log(&format!(
            "ftp: {user}: session ended; the content is unchanged ({message})"
        )),
        Ok(outcome) => shared.log(&format!(
            "ftp: {user}: session ended; deployment {} active ({message})",
            outcome.deployment.id
        )),
        Err(e) => shared.log(&format!(
            "ftp: {user}: session ended; its changes were not deployed: {e}"
        )),
    }
    let _ = crate::fsutil::remove_tree(&folder);
    let _ = crate::fsutil::remove_tree(&s.staging);
}

/// The slot's active content with the session's changes, in `folder`.
fn build_folder(shared: &Shared, s: &Session, folder: &Path) -> crate::Result<()> {
    use crate::error::IoContext as _;
    use std::os::unix::fs::PermissionsExt as _;
    let (app, slot) = (&s.user.app, &s.user.slot);
    fs::create_dir_all(folder).ctx("cannot make the deployment folder", folder)?;
    if let Some(active) = shared.config.site.active(app, slot)? {
        let manifest = shared.config.site.manifest(app, &active.deployment)?;
        for e in manifest
            .files
            .iter()
            .filter(|e| !s.changes.contains_key(&e.path))
        {
            let (from, to) = (active.path.join(&e.path), folder.join(&e.path));
            if let Some(parent) = to.parent() {
                fs::create_dir_all(parent).ctx("cannot make a folder", parent)?;
            }
            if e.is_symlink() {
                let target = fs::read_link(&from).ctx("cannot read a link", &from)?;
                std::os::unix::fs::symlink(target, &to).ctx("cannot make a link", &to)?;
            } else {
                fs::copy(&from, &to).ctx("cannot copy a file", &from)?;
                fs::set_permissions(&to, fs::Permissions::from_mode(0o644 | (e.mode & 0o111)))
                    .ctx("cannot set a file's mode", &to)?;
            }
        }
    }
    for (rel, c) in &s.changes {
        if let Change::Put { file, mode, .. } = c {
            let to = folder.join(rel);
            if let Some(parent) = to.parent() {
                fs::create_dir_all(parent).ctx("cannot make a folder", parent)?;
            }
            fs::rename(file, &to).ctx("cannot place an uploaded file", &to)?;
            fs::set_permissions(&to, fs::Permissions::from_mode(*mode))
                .ctx("cannot set a file's mode", &to)?;
        }
    }
    Ok(())
}
