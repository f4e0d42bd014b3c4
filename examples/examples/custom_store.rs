//! Keeping deployment content somewhere else than a folder: a `Store` of
//! your own, and a `BuildProvider` of your own, each checked with fnhost's
//! conformance suites.
//!
//! The store here keeps blobs and manifests in memory (a stand-in for an
//! object store or a database); the build writes the snapshot's id into
//! the app, so that the running app can say which commit it is.
//!
//! ```sh
//! cargo run -p fnhost-examples --example custom_store
//! ```

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read};
use std::path::Path;
use std::sync::{Arc, RwLock};

use fnhost_core::build::{BuildContext, BuildError, BuildOutput, BuildProvider, LogLevel};
use fnhost_deploy::store::{Digest, Manifest, ManifestKey, Store};
use fnhost_deploy::testkit::{BuildCase, BuildFixture, assert_build_provider, assert_store};

/// Blobs and manifests in memory.
#[derive(Debug, Default)]
struct MemoryStore {
    blobs: RwLock<HashMap<Digest, Arc<[u8]>>>,
    manifests: RwLock<HashMap<ManifestKey, Manifest>>,
}

fn poisoned<T>(_: T) -> io::Error {
    io::Error::other("a thread panicked while holding the store's lock")
}

/// The keys of one of the store's maps.
fn keys<K: Clone, V>(map: &RwLock<HashMap<K, V>>) -> io::Result<Vec<K>> {
    Ok(map.read().map_err(poisoned)?.keys().cloned().collect())
}

impl Store for MemoryStore {
    fn describe(&self) -> String {
        "memory".to_owned()
    }

    fn contains(&self, digest: &Digest) -> io::Result<bool> {
        Ok(self.blobs.read().map_err(poisoned)?.contains_key(digest))
    }

    fn put(&self, digest: &Digest, data: &mut dyn Read) -> io::Result<bool> {
        if self.contains(digest)? {
            return Ok(false);
        }
        let mut content = Vec::new();
        data.read_to_end(&mut content)?;
        if Digest::of(&content) != *digest {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the data does not match {digest}"),
            ));
        }
        let mut blobs = self.blobs.write().map_err(poisoned)?;
        Ok(blobs.insert(*digest, content.into()).is_none())
    }

    fn open(&self, digest: &Digest) -> io::Result<Box<dyn Read + Send>> {
        let blobs = self.blobs.read().map_err(poisoned)?;
        let content = blobs
            .get(digest)
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no blob {digest}")))?;
        Ok(Box::new(io::Cursor::new(content)))
    }

    fn sync(&self, _digests: &[Digest]) -> io::Result<()> {
        Ok(()) // Memory is as durable as it gets here.
    }

    fn blobs(&self) -> io::Result<Vec<Digest>> {
        keys(&self.blobs)
    }

    fn remove(&self, digest: &Digest) -> io::Result<()> {
        self.blobs.write().map_err(poisoned)?.remove(digest);
        Ok(())
    }

    fn put_manifest(&self, key: &ManifestKey, manifest: &Manifest) -> io::Result<()> {
        let mut manifests = self.manifests.write().map_err(poisoned)?;
        manifests.insert(key.clone(), manifest.clone());
        Ok(())
    }

    fn manifest(&self, key: &ManifestKey) -> io::Result<Manifest> {
        let manifests = self.manifests.read().map_err(poisoned)?;
        manifests
            .get(key)
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no manifest {key}")))
    }

    fn manifests(&self) -> io::Result<Vec<ManifestKey>> {
        keys(&self.manifests)
    }

    fn remove_manifest(&self, key: &ManifestKey) -> io::Result<()> {
        self.manifests.write().map_err(poisoned)?.remove(key);
        Ok(())
    }
}

/// Deploys the source as it is, plus a `BUILD_ID` file with the
/// snapshot's id.
#[derive(Debug)]
struct StampBuild;

impl BuildProvider for StampBuild {
    fn name(&self) -> &str {
        "stamp"
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Result<BuildOutput, BuildError> {
        let id = &ctx.snapshot.id;
        fs::write(ctx.source_dir.join("BUILD_ID"), id)
            .map_err(|e| BuildError::other(self.name(), format!("cannot write BUILD_ID: {e}")))?;
        ctx.log.line(LogLevel::Info, &format!("stamped {id}"));
        Ok(BuildOutput {
            dir: ctx.source_dir.to_path_buf(),
            summary: format!("stamped {id}"),
        })
    }
}

/// The sources the build suite tries: this build cannot fail on a source,
/// nor run for ever, so it has only the successful case.
struct Sources;

impl BuildFixture for Sources {
    fn write_source(
        &mut self,
        case: BuildCase,
        dir: &Path,
    ) -> Result<bool, Box<dyn std::error::Error>> {
        match case {
            BuildCase::Succeeds => {
                fs::write(dir.join("host.json"), r#"{"version": "2.0"}"#)?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

fn main() {
    assert_store(&MemoryStore::default());
    println!("the memory store passes fnhost's store conformance suite");
    assert_build_provider(&StampBuild, &mut Sources);
    println!("the stamp build passes fnhost's build provider conformance suite");
}
