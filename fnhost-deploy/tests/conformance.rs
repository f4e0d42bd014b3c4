//! fnhost's own providers pass the conformance suites it ships: the store
//! suite on `FsStore` (also behind an `Arc`, a `Box` and a reference), the
//! build suite on the three builders; and `Store` forwards every method.

#![allow(clippy::unwrap_used)]

use std::error::Error;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fnhost_deploy::build::{AutoBuild, BuildProvider, NoneBuild, PipelineBuild};
use fnhost_deploy::store::{Digest, FsStore, Manifest, ManifestKey, Store};
use fnhost_deploy::testkit::{
    BuildCase, BuildFixture, assert_build_provider, assert_store, check_store, unforwarded_methods,
};

#[test]
fn fs_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    assert_store(&FsStore::open(dir.path().join("store")).unwrap());
}

#[test]
fn a_wrapped_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::open(dir.path().join("store")).unwrap();
    assert_store(&Arc::new(store.clone()));
    assert_store(&(Box::new(store.clone()) as Box<dyn Store>));
    assert_store(&&store);
}

/// Trusts every digest and writes manifests in two steps: the suite must
/// notice both.
#[derive(Debug)]
struct Trusting(FsStore);

impl Store for Trusting {
    fn describe(&self) -> String {
        "trusting".to_owned()
    }
    fn contains(&self, digest: &Digest) -> io::Result<bool> {
        self.0.contains(digest)
    }
    fn put(&self, digest: &Digest, data: &mut dyn Read) -> io::Result<bool> {
        let mut content = Vec::new();
        data.read_to_end(&mut content)?;
        self.0.put_hashed(digest, &content)
    }
    fn open(&self, digest: &Digest) -> io::Result<Box<dyn Read + Send>> {
        self.0.open(digest)
    }
    fn sync(&self, digests: &[Digest]) -> io::Result<()> {
        self.0.sync(digests)
    }
    fn blobs(&self) -> io::Result<Vec<Digest>> {
        self.0.blobs()
    }
    fn remove(&self, digest: &Digest) -> io::Result<()> {
        self.0.remove(digest)
    }
    fn put_manifest(&self, key: &ManifestKey, manifest: &Manifest) -> io::Result<()> {
        // First the first half, then the whole: a reader can see the half.
        let half = Manifest::new(manifest.files[..manifest.files.len() / 2].to_vec());
        self.0.put_manifest(key, &half)?;
        std::thread::sleep(std::time::Duration::from_millis(2));
        self.0.put_manifest(key, manifest)
    }
    fn manifest(&self, key: &ManifestKey) -> io::Result<Manifest> {
        self.0.manifest(key)
    }
    fn manifests(&self) -> io::Result<Vec<ManifestKey>> {
        self.0.manifests()
    }
    fn remove_manifest(&self, key: &ManifestKey) -> io::Result<()> {
        self.0.remove_manifest(key)
    }
}

#[test]
fn the_store_suite_catches_unchecked_digests_and_torn_manifests() {
    let dir = tempfile::tempdir().unwrap();
    let store = Trusting(FsStore::open(dir.path().join("store")).unwrap());
    let text = check_store(&store)
        .expect_err("must not conform")
        .to_string();
    assert!(
        text.contains("accepted data that does not match its digest"),
        "{text}"
    );
    assert!(text.contains("put_manifest() is not atomic"), "{text}");
}

#[test]
fn store_forwards_every_method() {
    let source = include_str!("../src/store.rs");
    assert_eq!(unforwarded_methods(source, "Store"), Ok(Vec::new()));
}

/// Sources as files (path, content).
fn write(dir: &Path, files: &[(&str, &str)]) -> Result<bool, Box<dyn Error>> {
    for (path, content) in files {
        let path = dir.join(path);
        fs::create_dir_all(path.parent().ok_or("no parent")?)?;
        fs::write(path, content)?;
    }
    Ok(true)
}

const HOST_JSON: (&str, &str) = ("host.json", r#"{"version": "2.0"}"#);
const FOREVER: &str = "while :; do date >> ticks; sleep 0.05; done";

struct CopyOnly;

impl BuildFixture for CopyOnly {
    fn write_source(&mut self, case: BuildCase, dir: &Path) -> Result<bool, Box<dyn Error>> {
        match case {
            BuildCase::Succeeds => write(dir, &[HOST_JSON]),
            _ => Ok(false),
        }
    }
}

struct Pipelines;

impl BuildFixture for Pipelines {
    fn write_source(&mut self, case: BuildCase, dir: &Path) -> Result<bool, Box<dyn Error>> {
        let pipeline = |command: &str, deploy: &str| {
            serde_json::json!({
                "steps": [{"name": "step", "command": command}],
                "deploy": deploy,
            })
            .to_string()
        };
        let file = match case {
            BuildCase::Succeeds => pipeline("mkdir -p dist && cp host.json dist/", "dist"),
            BuildCase::Fails => pipeline("echo broken >&2; exit 3", "."),
            BuildCase::RunsForever => pipeline(FOREVER, "."),
            _ => return Ok(false),
        };
        write(dir, &[HOST_JSON, ("fnhost-build.json", &file)])
    }
}

/// An `npm` that runs the source's own `fake-npm.sh`, so that the detected
/// Node build runs without the network.
struct FakeNpm {
    npm: PathBuf,
}

impl FakeNpm {
    fn new(dir: &Path) -> FakeNpm {
        use std::os::unix::fs::PermissionsExt as _;
        let npm = dir.join("npm");
        fs::write(&npm, "#!/bin/sh\nexec sh ./fake-npm.sh \"$@\"\n").unwrap();
        fs::set_permissions(&npm, fs::Permissions::from_mode(0o755)).unwrap();
        FakeNpm { npm }
    }
}

impl BuildFixture for FakeNpm {
    fn write_source(&mut self, case: BuildCase, dir: &Path) -> Result<bool, Box<dyn Error>> {
        let script = match case {
            BuildCase::Succeeds => {
                "echo \"npm $*\"; mkdir -p node_modules; echo ok > node_modules/installed"
            }
            BuildCase::Fails => "echo 'npm ERR! cannot resolve' >&2; exit 1",
            BuildCase::RunsForever => FOREVER,
            _ => return Ok(false),
        };
        write(
            dir,
            &[
                HOST_JSON,
                ("package.json", r#"{"name": "app", "version": "1.0.0"}"#),
                ("package-lock.json", "{}"),
                ("fake-npm.sh", script),
            ],
        )
    }
}

#[test]
fn the_builders_conform() {
    assert_build_provider(&NoneBuild::new(), &mut CopyOnly);
    assert_build_provider(&PipelineBuild::new(), &mut Pipelines);
    let bin = tempfile::tempdir().unwrap();
    let mut npm = FakeNpm::new(bin.path());
    let auto = AutoBuild::new().with_npm(&npm.npm);
    assert_build_provider(&auto, &mut npm);
    // Wrapped builders are builders.
    let shared: Arc<dyn BuildProvider> = Arc::new(NoneBuild::new());
    assert_build_provider(&shared, &mut CopyOnly);
}
