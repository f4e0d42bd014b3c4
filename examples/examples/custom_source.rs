//! Writing a source provider of your own, and checking it with fnhost's
//! conformance suite.
//!
//! The provider here follows a "releases" folder in which every release is
//! a numbered subfolder (`1/`, `2/`, ...), as a build server might drop
//! them; the newest number is the head, and its id is a hash of its
//! content, so an unchanged release is never deployed twice.
//!
//! ```sh
//! cargo run -p fnhost-examples --example custom_source
//! ```

use std::collections::hash_map::DefaultHasher;
use std::fs;
use std::hash::{Hash, Hasher};
use std::io;
use std::path::{Path, PathBuf};

use fnhost_core::source::{SourceError, SourceProvider, SourceSnapshot, SourceSpec};
use fnhost_core::testkit::{SourceFixture, assert_source_provider};

/// Follows the newest numbered release folder of `spec.location`.
#[derive(Debug, Default)]
struct ReleasesProvider;

impl ReleasesProvider {
    fn newest(&self, spec: &SourceSpec) -> Result<(u64, PathBuf), SourceError> {
        let root = Path::new(&spec.location);
        let entries = fs::read_dir(root).map_err(|e| SourceError::NotFound {
            provider: self.name().to_owned(),
            what: format!("the releases folder {} ({e})", root.display()),
            hint: Some("create it, or point the source at the right folder".to_owned()),
        })?;
        entries
            .filter_map(Result::ok)
            .filter_map(|e| Some((e.file_name().to_str()?.parse::<u64>().ok()?, e.path())))
            .max_by_key(|(n, _)| *n)
            .ok_or_else(|| SourceError::Empty {
                provider: self.name().to_owned(),
                message: format!("{} has no numbered release folder yet", root.display()),
            })
    }
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            files(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

fn content_id(dir: &Path) -> io::Result<String> {
    let mut all = Vec::new();
    files(dir, &mut all)?;
    all.sort();
    let mut h = DefaultHasher::new();
    for f in &all {
        f.strip_prefix(dir).unwrap_or(f).hash(&mut h);
        fs::read(f)?.hash(&mut h);
    }
    Ok(format!("{:016x}", h.finish()))
}

fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            fs::create_dir_all(&target)?;
            copy_tree(&entry.path(), &target)?;
        } else {
            fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

impl SourceProvider for ReleasesProvider {
    fn name(&self) -> &str {
        "releases"
    }

    fn head(&self, spec: &SourceSpec) -> Result<String, SourceError> {
        let (_, dir) = self.newest(spec)?;
        content_id(&dir).map_err(|e| SourceError::other(self.name(), e.to_string()))
    }

    fn fetch(&self, spec: &SourceSpec, into: &Path) -> Result<SourceSnapshot, SourceError> {
        let (number, dir) = self.newest(spec)?;
        let fail = |e: io::Error| SourceError::other("releases", e.to_string());
        copy_tree(&dir, into).map_err(fail)?;
        let mut snapshot = SourceSnapshot::new(content_id(&dir).map_err(fail)?);
        snapshot.message = Some(format!("release {number}"));
        Ok(snapshot)
    }
}

/// The suite's handle on a releases folder: publishing writes the next
/// numbered release.
struct Releases {
    root: tempfile::TempDir,
    next: u64,
}

impl SourceFixture for Releases {
    fn spec(&self) -> SourceSpec {
        SourceSpec::new(self.root.path().to_string_lossy())
    }

    fn publish(
        &mut self,
        files: &[(&str, &[u8])],
        _message: &str,
    ) -> Result<(), Box<dyn std::error::Error>> {
        self.next += 1;
        let dir = self.root.path().join(self.next.to_string());
        for (path, content) in files {
            let target = dir.join(path);
            fs::create_dir_all(target.parent().ok_or("no parent")?)?;
            fs::write(target, content)?;
        }
        Ok(())
    }

    fn missing(&self) -> SourceSpec {
        SourceSpec::new(self.root.path().join("no-such-folder").to_string_lossy())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut fixture = Releases {
        root: tempfile::tempdir()?,
        next: 0,
    };
    assert_source_provider(&ReleasesProvider, &mut fixture);
    println!("the releases provider passes fnhost's source provider conformance suite");
    Ok(())
}
