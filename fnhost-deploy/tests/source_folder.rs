//! The synced folder provider.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use fnhost_core::source::{SourceError, SourceProvider, SourceSpec};
use fnhost_core::testkit::{SourceFixture, assert_source_provider};
use fnhost_deploy::source::FolderSource;
use fnhost_testsupport::app::replace_files;

struct FolderFixture {
    root: PathBuf,
}

fn write(root: &Path, rel: &str, content: &[u8]) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, content).unwrap();
}

impl SourceFixture for FolderFixture {
    fn spec(&self) -> SourceSpec {
        SourceSpec::new(self.root.to_string_lossy()).with_option("quiet_ms", "0")
    }

    fn publish(
        &mut self,
        files: &[(&str, &[u8])],
        _message: &str,
    ) -> Result<(), Box<dyn std::error::Error>> {
        replace_files(&self.root, |_| false, files);
        // What a sync client leaves around is never part of the app.
        write(&self.root, ".dropbox.cache/x", b"cache");
        write(&self.root, "Hello/~$index.docx", b"office lock");
        write(&self.root, "upload.tmp", b"partial");
        Ok(())
    }

    fn missing(&self) -> SourceSpec {
        SourceSpec::new(self.root.join("no-such-folder").to_string_lossy())
    }
}

#[test]
fn folder_conforms() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("Dropbox/app");
    fs::create_dir_all(&root).unwrap();
    assert_source_provider(&FolderSource::new(), &mut FolderFixture { root });
}

#[test]
fn a_folder_that_changed_within_the_quiet_period_is_not_ready() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "host.json", b"{}");
    let folder = FolderSource::new();
    let spec = SourceSpec::new(tmp.path().to_string_lossy());
    match folder.head(&spec) {
        Err(SourceError::NotReady { message, .. }) => {
            assert!(message.contains("2000 ms"), "{message}")
        }
        other => panic!("want NotReady with the default quiet period, got {other:?}"),
    }
    let short = spec.clone().with_option("quiet_ms", "300");
    std::thread::sleep(Duration::from_millis(400));
    let first = folder.head(&short).unwrap();
    // A deletion is a change too (the folder's own time moves).
    write(tmp.path(), "extra.txt", b"x");
    std::thread::sleep(Duration::from_millis(400));
    let with_extra = folder.head(&short).unwrap();
    assert_ne!(first, with_extra);
    fs::remove_file(tmp.path().join("extra.txt")).unwrap();
    assert!(matches!(
        folder.head(&short),
        Err(SourceError::NotReady { .. })
    ));
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(folder.head(&short).unwrap(), first);
    // The provider's own default can be changed.
    let quick = FolderSource::new().with_quiet_period(Duration::ZERO);
    assert_eq!(quick.head(&spec).unwrap(), first);
    assert!(folder.head(&spec.with_option("quiet_ms", "soon")).is_err());
}

#[test]
fn same_size_rewrites_and_modes_change_the_id() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "a.txt", b"aaaa");
    let folder = FolderSource::new();
    let spec = SourceSpec::new(tmp.path().to_string_lossy()).with_option("quiet_ms", "0");
    let one = folder.head(&spec).unwrap();
    assert_eq!(folder.head(&spec).unwrap(), one);
    write(tmp.path(), "a.txt", b"bbbb");
    let two = folder.head(&spec).unwrap();
    assert_ne!(one, two, "same size, other content");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        fs::set_permissions(tmp.path().join("a.txt"), fs::Permissions::from_mode(0o755)).unwrap();
        let three = folder.head(&spec).unwrap();
        assert_ne!(two, three, "the executable bit is part of the id");
        let into = tempfile::tempdir().unwrap();
        let snapshot = folder.fetch(&spec, into.path()).unwrap();
        assert_eq!(snapshot.id, three);
        let mode = fs::metadata(into.path().join("a.txt"))
            .unwrap()
            .permissions()
            .mode();
        assert_ne!(mode & 0o111, 0);
    }
    // A fresh provider (no stamps in memory) computes the same id.
    assert_eq!(
        FolderSource::new().head(&spec).unwrap(),
        folder.head(&spec).unwrap()
    );
}

#[test]
fn empty_and_missing_folders() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), ".git/HEAD", b"ref: refs/heads/main");
    write(tmp.path(), "x.tmp", b"");
    let spec = SourceSpec::new(tmp.path().to_string_lossy()).with_option("quiet_ms", "0");
    assert!(matches!(
        FolderSource::new().head(&spec),
        Err(SourceError::Empty { .. })
    ));
    let missing = SourceSpec::new(tmp.path().join("nope").to_string_lossy());
    assert!(matches!(
        FolderSource::new().head(&missing),
        Err(SourceError::NotFound { .. })
    ));
}

#[cfg(unix)]
#[test]
fn links_inside_are_kept_and_links_outside_are_left_out() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("app");
    write(&root, "host.json", b"{}");
    write(tmp.path(), "secret.txt", b"outside");
    std::os::unix::fs::symlink("host.json", root.join("inside")).unwrap();
    std::os::unix::fs::symlink(tmp.path().join("secret.txt"), root.join("outside")).unwrap();
    let spec = SourceSpec::new(root.to_string_lossy()).with_option("quiet_ms", "0");
    let into = tempfile::tempdir().unwrap();
    let snapshot = FolderSource::new().fetch(&spec, into.path()).unwrap();
    assert!(into.path().join("inside").is_symlink());
    assert!(!into.path().join("outside").exists());
    assert_eq!(
        snapshot.notes,
        vec!["left out outside: a link to outside the folder"]
    );
}

#[test]
fn update_copies_only_what_changed() {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("synced");
    write(&root, "host.json", b"{}");
    write(&root, "keep/same.txt", b"unchanged");
    write(&root, "change.txt", b"before");
    write(&root, "gone/deep/file.txt", b"goes");
    write(&root, "x", b"a file that becomes a folder");
    let spec = SourceSpec::new(root.to_string_lossy()).with_option("quiet_ms", "0");
    let source = FolderSource::new();
    let copy = tmp.path().join("copy");
    fs::create_dir_all(&copy).unwrap();
    let first = source.fetch(&spec, &copy).unwrap();
    // A rewritten file gets a new change time (an inode number can be
    // reused at once).
    let inode = |p: &str| {
        let m = fs::symlink_metadata(copy.join(p)).unwrap();
        (m.ino(), m.ctime(), m.ctime_nsec())
    };
    let kept = inode("keep/same.txt");

    write(&root, "change.txt", b"after, and longer");
    fs::remove_dir_all(root.join("gone")).unwrap();
    fs::remove_file(root.join("x")).unwrap();
    write(&root, "x/y.txt", b"inside");
    write(&root, "new.txt", b"new");
    fs::set_permissions(root.join("host.json"), fs::Permissions::from_mode(0o755)).unwrap();
    let head = source.head(&spec).unwrap();
    assert_ne!(head, first.id);
    let updated = source.update(&spec, &copy, &first.id).unwrap();
    assert_eq!(updated.id, head);

    // The copy equals a fresh fetch.
    let fresh = tmp.path().join("fresh");
    fs::create_dir_all(&fresh).unwrap();
    assert_eq!(FolderSource::new().fetch(&spec, &fresh).unwrap().id, head);
    let listing = |dir: &Path| {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                if p.is_dir() {
                    stack.push(p.clone());
                    out.push((rel, "folder".to_owned()));
                } else {
                    let exec = fs::metadata(&p).unwrap().permissions().mode() & 0o111 != 0;
                    let text = String::from_utf8_lossy(&fs::read(&p).unwrap()).into_owned();
                    out.push((rel, format!("exec={exec} {text}")));
                }
            }
        }
        out.sort();
        out
    };
    assert_eq!(listing(&copy), listing(&fresh));
    assert!(!copy.join("gone").exists());
    // The unchanged file was left alone.
    assert_eq!(inode("keep/same.txt"), kept);
}
