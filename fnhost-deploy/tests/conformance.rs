//! fnhost's own providers pass the conformance suites it ships: the store
//! suite on `FsStore` (also behind an `Arc`, a `Box` and a reference), the
//! build suite on the three builders; and `Store` forwards every method.

#![allow(clippy::unwrap_used)]

use std::error::Error;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fnhost_deploy::build::{AutoBuild, BuildProvider, NoneBuild, PipelineBuild};
use fnhost_deploy::store::{FsStore, Store};
use fnhost_deploy::testkit::{
    BuildCase, BuildFixture, assert_build_provider, assert_store, unforwarded_methods,
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
