//! Small file-system primitives shared by the modules: atomic writes,
//! directory syncs, random ids, removal of read-only trees.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Writes `data` to `path` atomically: a temporary file `tmp` in the same
/// file system is written, flushed to disk, renamed over `path`, and the
/// parent folder is flushed. Readers see the old content or the new, never
/// a truncated file. `tmp` must be private to the caller (under its lock).
pub(crate) fn atomic_write(path: &Path, tmp: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(tmp)?;
        // `mode` applies only at creation; an old temp file keeps its mode.
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    fs::rename(tmp, path)?;
    if let Some(parent) = path.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

/// Flushes a folder's entries (new names, renames) to disk.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// `n` random bytes as lower-case hex.
pub(crate) fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    if getrandom::fill(&mut bytes).is_err() {
        // No OS randomness: fall back to the clock and the process id, which
        // are unique enough for names of temporary files and ids.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let seed = now ^ (u128::from(std::process::id()) << 64);
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = (seed >> ((i % 16) * 8)) as u8;
        }
    }
    hex(&bytes)
}

/// Bytes as lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// Removes a tree that may hold read-only folders; a missing tree is fine.
pub(crate) fn remove_tree(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
        Ok(m) if !m.is_dir() => return fs::remove_file(path),
        Ok(_) => {}
    }
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(_) => {
            make_writable(path)?;
            fs::remove_dir_all(path)
        }
    }
}

/// Removes a file; a missing file is fine.
pub(crate) fn remove_file_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn make_writable(dir: &Path) -> io::Result<()> {
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            make_writable(&entry.path())?;
        }
    }
    Ok(())
}

/// Creates a folder and its parents; fine when it exists.
pub(crate) fn ensure_dir(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)
}

/// Flushes every file and folder of the file system holding `path` to disk
/// (`syncfs(2)`): one journal commit for many new files. Returns `false`
/// where the call does not exist (then flush file by file).
pub(crate) fn sync_filesystem(path: &Path) -> io::Result<bool> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let dir = File::open(path)?;
        nix::unistd::syncfs(&dir).map_err(io::Error::from)?;
        Ok(true)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = path;
        Ok(false)
    }
}

/// Flushes a file system over and over on a thread of its own while a
/// deployment writes, so that writing to disk overlaps hashing, storing and
/// materialising, and the final flush has little left to do. The first
/// flush comes after a pause, so that a short deployment (unchanged
/// content) starts none; stopping wakes the thread at once. Flush errors
/// here are ignored: the final flush reports them. Stops when finished or
/// dropped.
#[derive(Debug)]
pub(crate) struct BackgroundFlush {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BackgroundFlush {
    /// The pause between short flushes.
    const PAUSE: std::time::Duration = std::time::Duration::from_millis(20);
    /// The pause before the first flush: a deployment with little to write
    /// is over by then, and leaves its few files to the final flush (a
    /// `syncfs` walks every cached inode of the file system, which costs
    /// milliseconds of processor time even with nothing to write).
    const FIRST_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);

    pub(crate) fn start(path: std::path::PathBuf) -> BackgroundFlush {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("fnhost-flush".into())
            .spawn(move || {
                let mut pause = Self::FIRST_PAUSE;
                // A message or a dropped sender both mean stop.
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(pause)
                {
                    let t = std::time::Instant::now();
                    if !matches!(sync_filesystem(&path), Ok(true)) {
                        return;
                    }
                    // Give the writers a moment between short flushes.
                    pause = Self::PAUSE.saturating_sub(t.elapsed());
                }
            })
            .ok();
        BackgroundFlush {
            stop: Some(stop),
            thread,
        }
    }

    /// Stops the thread and waits for it (before the final flush).
    pub(crate) fn finish(mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for BackgroundFlush {
    /// Tells the thread to stop, without waiting for it (a deployment
    /// that wrote nothing, or failed, has no flush to wait for).
    fn drop(&mut self) {
        drop(self.stop.take());
    }
}

/// Makes hard links between two folders it keeps open: `linkat(2)`
/// relative to the source's grandparent (a store's `blobs/`) and to the
/// destination's folder, instead of resolving both whole paths for each
/// link. Links made in path order reuse the open folders.
#[derive(Debug, Default)]
pub(crate) struct Linker {
    from: Option<(PathBuf, OwnedFd)>,
    to: Option<(PathBuf, OwnedFd)>,
}

impl Linker {
    /// Links `dst` to `src`, as [`fs::hard_link`] does.
    pub(crate) fn link(&mut self, src: &Path, dst: &Path) -> io::Result<()> {
        let base = src.parent().and_then(Path::parent);
        let (Some(base), Some(dir), Some(name)) = (base, dst.parent(), dst.file_name()) else {
            return fs::hard_link(src, dst);
        };
        let rel = src.strip_prefix(base).map_err(io::Error::other)?;
        let from = open_kept(&mut self.from, base)?;
        let to = open_kept(&mut self.to, dir)?;
        nix::unistd::linkat(from, rel, to, name, nix::fcntl::AtFlags::empty())
            .map_err(io::Error::from)
    }
}

/// A folder opened for `*at` calls relative to it (and for listing).
pub(crate) fn open_dir(dir: &Path) -> io::Result<OwnedFd> {
    use nix::fcntl::OFlag;
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    Ok(nix::fcntl::open(dir, flags, nix::sys::stat::Mode::empty())?)
}

/// The folder kept open in `slot`, opened anew when it is not `dir`.
fn open_kept<'a>(
    slot: &'a mut Option<(PathBuf, OwnedFd)>,
    dir: &Path,
) -> io::Result<BorrowedFd<'a>> {
    if slot.as_ref().is_none_or(|(open, _)| open != dir) {
        *slot = Some((dir.to_path_buf(), open_dir(dir)?));
    }
    match slot.as_ref() {
        Some((_, fd)) => Ok(fd.as_fd()),
        None => Err(io::Error::other("no folder open")),
    }
}
