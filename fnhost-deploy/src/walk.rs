//! Listing a source folder: every file (with what its `stat` says) and
//! link that packaging keeps, on a few threads.
//!
//! This is most of what a redeployment of an unchanged folder costs, so it
//! does little besides the system calls: each folder is read with one
//! descriptor, each file's `stat` is asked relative to it (`fstatat`, no
//! path resolved from the root), and each listing thread writes the paths
//! it finds one after the other into one string ([`Listing`]): nothing is
//! allocated per file.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::dir::{Dir, Type};
use nix::fcntl::AtFlags;
use nix::sys::stat::{SFlag, fstatat};

use crate::error::{Error, Result};
use crate::package::{FuncIgnore, link_stays_inside};
use crate::statcache::FileStat;

/// A file or link of a folder being packaged.
#[derive(Debug)]
pub(crate) enum Found {
    File { rel: String, stat: FileStat },
    Link { rel: String, target: String },
}

impl Found {
    /// Its path relative to the folder.
    pub(crate) fn rel(&self) -> &str {
        match self {
            Found::File { rel, .. } | Found::Link { rel, .. } => rel,
        }
    }
}

fn io_err(what: &'static str, path: &Path, e: nix::Error) -> Error {
    Error::io(what, path, std::io::Error::from(e))
}

/// What a listing thread found: its files and links, their paths one after
/// the other in one string.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    paths: String,
    items: Vec<Item>,
}

/// A file (with what its `stat` said) or a link (with its target).
#[derive(Debug)]
pub(crate) enum Entry {
    File(FileStat),
    Link(String),
}

/// An entry of a [`Listing`].
#[derive(Debug)]
struct Item {
    /// Where its path ends in [`Listing::paths`] (it starts where the
    /// previous one ends).
    end: usize,
    entry: Entry,
}

impl Listing {
    /// How many files and links.
    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    /// Each file or link, with its path.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &Entry)> {
        let mut start = 0;
        self.items.iter().map(move |item| {
            let rel = self.paths.get(start..item.end).unwrap_or_default();
            start = item.end;
            (rel, &item.entry)
        })
    }

    /// Each file or link in its owned form.
    pub(crate) fn into_found(self) -> impl Iterator<Item = Found> {
        let mut start = 0;
        self.items.into_iter().map(move |item| {
            let rel = self
                .paths
                .get(start..item.end)
                .unwrap_or_default()
                .to_string();
            start = item.end;
            match item.entry {
                Entry::File(stat) => Found::File { rel, stat },
                Entry::Link(target) => Found::Link { rel, target },
            }
        })
    }

    fn push(&mut self, entry: Entry) {
        self.items.push(Item {
            end: self.paths.len(),
            entry,
        });
    }
}

/// The kinds of entry a folder may hold, as far as packaging goes.
enum Kind {
    File(FileStat),
    Dir,
    Link,
    Other,
}

fn kind_of(st: &nix::sys::stat::FileStat) -> Kind {
    match SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) {
        SFlag::S_IFREG => Kind::File(FileStat::from_stat(st)),
        SFlag::S_IFDIR => Kind::Dir,
        SFlag::S_IFLNK => Kind::Link,
        _ => Kind::Other,
    }
}

/// Lists one folder: its files and links go to `out`, its subfolders (not
/// excluded) to `subdirs`.
fn walk_dir(
    dir: &Path,
    rel: &str,
    ig: &FuncIgnore,
    out: &mut Listing,
    subdirs: &mut Vec<(PathBuf, String)>,
) -> Result<()> {
    let fd = crate::fsutil::open_dir(dir).map_err(|e| Error::io("cannot list", dir, e))?;
    // The listing holds its own descriptor; `fd` is free for `fstatat`.
    let listing = fd
        .try_clone()
        .map_err(|e| Error::io("cannot list", dir, e))?;
    let mut listing = Dir::from_fd(listing).map_err(|e| io_err("cannot list", dir, e))?;
    for entry in listing.iter() {
        let entry = entry.map_err(|e| io_err("cannot list", dir, e))?;
        let cname = entry.file_name();
        let bytes = cname.to_bytes();
        if bytes == b"." || bytes == b".." {
            continue;
        }
        let Ok(name) = std::str::from_utf8(bytes) else {
            return Err(Error::Package {
                path: dir
                    .join(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(bytes)),
                message: "file name is not UTF-8".into(),
            });
        };
        // The path goes where the listing keeps it, and is taken back when
        // it is not kept.
        let start = out.paths.len();
        if !rel.is_empty() {
            out.paths.push_str(rel);
            out.paths.push('/');
        }
        out.paths.push_str(name);
        let child_rel = out.paths.get(start..).unwrap_or_default();
        let stat = || {
            fstatat(fd.as_fd(), cname, AtFlags::AT_SYMLINK_NOFOLLOW)
                .map_err(|e| io_err("cannot read", &dir.join(name), e))
        };
        let kind = match entry.file_type() {
            Some(Type::Directory) => Kind::Dir,
            Some(Type::Symlink) => Kind::Link,
            _ => kind_of(&stat()?),
        };
        match kind {
            Kind::Dir => {
                if !ig.excludes_entry(child_rel, name, true) {
                    subdirs.push((dir.join(name), child_rel.to_string()));
                }
                out.paths.truncate(start);
            }
            _ if ig.excludes_entry(child_rel, name, false) => out.paths.truncate(start),
            Kind::File(stat) => out.push(Entry::File(stat)),
            Kind::Link => {
                let path = dir.join(name);
                let target = nix::fcntl::readlinkat(fd.as_fd(), cname)
                    .map_err(|e| io_err("cannot read link", &path, e))?;
                let Some(target) = target.to_str().map(str::to_string) else {
                    return Err(Error::Package {
                        path,
                        message: "link target is not UTF-8".into(),
                    });
                };
                if !link_stays_inside(child_rel, &target) {
                    return Err(Error::Package {
                        path,
                        message: format!(
                            "symbolic link to {target:?} leaves the app folder; replace it with the file, or list it in .funcignore"
                        ),
                    });
                }
                out.push(Entry::Link(target));
            }
            Kind::Other => {
                return Err(Error::Package {
                    path: dir.join(name),
                    message: "not a regular file, folder or link (a device, fifo or socket); list it in .funcignore".into(),
                });
            }
        }
    }
    Ok(())
}

/// Lists a tree on `threads` threads (folders are shared out as they are
/// found): every file and link not excluded, in no particular order.
pub(crate) fn walk(root: &Path, ig: &FuncIgnore, threads: usize) -> Result<Vec<Found>> {
    let parts = walk_then(root, ig, threads, &|_| ())?;
    Ok(parts
        .into_iter()
        .flat_map(|(listing, ())| listing.into_found())
        .collect())
}

/// [`walk`], and then, on each listing thread, `then` applied to what that
/// thread found (its part of the list, while the processor's caches still
/// hold it; it may reorder it); returns each thread's part and answer.
pub(crate) fn walk_then<R: Send>(
    root: &Path,
    ig: &FuncIgnore,
    threads: usize,
    then: &(dyn Fn(&Listing) -> R + Sync),
) -> Result<Vec<(Listing, R)>> {
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
    let parts: Vec<Option<(Listing, R)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads.max(1))
            .map(|_| {
                s.spawn(|| {
                    let mut found = Listing::default();
                    let Ok(mut w) = work.lock() else {
                        return None;
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
                                Err(_) => return None,
                            }
                            continue;
                        };
                        w.busy += 1;
                        drop(w);
                        let mut subdirs = Vec::new();
                        // A panic here would leave the others waiting for
                        // this folder: it becomes an error instead.
                        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            walk_dir(&dir, &rel, ig, &mut found, &mut subdirs)
                        }))
                        .unwrap_or_else(|_| Err(lost()));
                        w = match work.lock() {
                            Ok(g) => g,
                            Err(_) => return None,
                        };
                        w.busy -= 1;
                        match result {
                            Ok(()) => w.queue.extend(subdirs),
                            Err(e) => w.failed = Some(e),
                        }
                        wake.notify_all();
                    }
                    wake.notify_all();
                    let failed = w.failed.is_some();
                    drop(w);
                    if failed {
                        return None;
                    }
                    let answer = then(&found);
                    Some((found, answer))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().ok().flatten())
            .collect()
    });
    let mut w = work.into_inner().map_err(|_| lost())?;
    if let Some(e) = w.failed.take() {
        return Err(e);
    }
    if w.busy != 0 || !w.queue.is_empty() {
        return Err(lost());
    }
    parts.into_iter().map(|p| p.ok_or_else(lost)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    #[test]
    fn files_come_with_their_stat_and_links_with_their_target() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        for i in 0..300 {
            let dir = root.join(format!("d{}/e{}", i % 7, i % 3));
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join(format!("f{i}")), "x".repeat(i)).unwrap();
        }
        fs::set_permissions(root.join("d0/e0/f0"), fs::Permissions::from_mode(0o750)).unwrap();
        std::os::unix::fs::symlink("e0/f0", root.join("d0/link")).unwrap();
        fs::create_dir(root.join(".git")).unwrap();
        fs::write(root.join(".git/HEAD"), "ref").unwrap();
        let ig = FuncIgnore::for_folder(root).unwrap();
        let found = walk(root, &ig, 3).unwrap();
        assert_eq!(found.len(), 301, "300 files and a link, not .git");
        for f in &found {
            match f {
                Found::File { rel, stat } => {
                    let meta = fs::symlink_metadata(root.join(rel)).unwrap();
                    assert_eq!(stat.size, meta.len(), "{rel}");
                    assert_eq!(stat.ino, meta.ino(), "{rel}");
                    assert_eq!(stat.mode & 0o777, meta.mode() & 0o777, "{rel}");
                    let mtime = meta.mtime() * 1_000_000_000 + meta.mtime_nsec();
                    assert_eq!(stat.mtime_ns, mtime, "{rel}");
                    let ctime = meta.ctime() * 1_000_000_000 + meta.ctime_nsec();
                    assert_eq!(stat.ctime_ns, ctime, "{rel}");
                }
                Found::Link { rel, target } => {
                    assert_eq!((rel.as_str(), target.as_str()), ("d0/link", "e0/f0"));
                }
            }
        }
        let exec = found.iter().find(|f| f.rel() == "d0/e0/f0").unwrap();
        assert!(matches!(exec, Found::File { stat, .. } if stat.mode & 0o777 == 0o750));
    }

    #[test]
    fn a_fifo_a_bad_name_or_an_escaping_link_is_refused_naming_it() {
        type Make = fn(&Path);
        let cases: [(&str, Make); 3] = [
            ("fifo", |d| {
                nix::unistd::mkfifo(&d.join("fifo"), nix::sys::stat::Mode::S_IRUSR).unwrap()
            }),
            ("is not UTF-8", |d| {
                use std::os::unix::ffi::OsStrExt;
                fs::write(d.join(std::ffi::OsStr::from_bytes(b"bad\xff")), "").unwrap()
            }),
            ("leaves the app folder", |d| {
                std::os::unix::fs::symlink("../../etc/passwd", d.join("out")).unwrap()
            }),
        ];
        for (want, make) in cases {
            let tmp = tempfile::tempdir().unwrap();
            let sub = tmp.path().join("sub");
            fs::create_dir(&sub).unwrap();
            make(&sub);
            let ig = FuncIgnore::for_folder(tmp.path()).unwrap();
            let err = walk(tmp.path(), &ig, 2).unwrap_err().to_string();
            assert!(err.contains(want), "{want}: {err}");
            assert!(err.contains("/sub/"), "names the file: {err}");
        }
    }
}
