//! The Mercurial provider against real repositories, through the `hg`
//! command. When `hg` is missing, the tests install it (apt-get, then pip);
//! when that fails they skip, except under `CI=true`, where they fail.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use fnhost_core::source::{SourceError, SourceProvider, SourceSpec};
use fnhost_core::testkit::{SourceFixture, assert_source_provider};
use fnhost_deploy::source::HgSource;
use fnhost_testsupport::app::replace_files;
use fnhost_testsupport::process::succeeded;

fn works(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The `hg` to run, installing Mercurial when it is missing.
fn hg_program() -> Option<&'static str> {
    static HG: OnceLock<Option<&'static str>> = OnceLock::new();
    *HG.get_or_init(|| {
        if works("hg") {
            return Some("hg");
        }
        eprintln!("hg is missing: installing Mercurial");
        let quiet = |c: &mut Command| {
            c.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        let sudo: &[&str] = if Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0"))
        {
            &[]
        } else {
            &["sudo", "-n"]
        };
        let apt = |args: &[&str]| {
            let mut all: Vec<&str> = sudo.to_vec();
            all.extend_from_slice(args);
            let mut c = Command::new(all[0]);
            c.args(&all[1..]).env("DEBIAN_FRONTEND", "noninteractive");
            quiet(&mut c)
        };
        let installed = apt(&["apt-get", "install", "-y", "-qq", "mercurial"])
            || (apt(&["apt-get", "update", "-qq"])
                && apt(&["apt-get", "install", "-y", "-qq", "mercurial"]));
        if installed && works("hg") {
            return Some("hg");
        }
        for pip in [["python3", "-m", "pip"], ["pip3", "", ""], ["pip", "", ""]] {
            let mut c = Command::new(pip[0]);
            c.args(pip[1..].iter().filter(|a| !a.is_empty())).args([
                "install",
                "--quiet",
                "mercurial",
            ]);
            if quiet(&mut c) && works("hg") {
                return Some("hg");
            }
        }
        None
    })
}

/// `hg`, or `None` to skip (panics under CI=true).
fn require_hg() -> Option<&'static str> {
    let hg = hg_program();
    if hg.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "Mercurial (hg) is missing and could not be installed"
        );
        eprintln!("SKIPPED: Mercurial (hg) is missing and could not be installed");
    }
    hg
}

fn hg(hg: &str, dir: &Path, args: &[&str]) -> String {
    let out = Command::new(hg)
        .args(args)
        .current_dir(dir)
        .env("HGPLAIN", "1")
        .env("HGUSER", "Ada Lovelace <ada@example.com>")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    succeeded(&out);
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

struct HgRepo {
    hg: &'static str,
    dir: PathBuf,
}

impl HgRepo {
    fn new(hg_bin: &'static str, dir: PathBuf) -> HgRepo {
        fs::create_dir_all(&dir).unwrap();
        hg(hg_bin, &dir, &["init"]);
        HgRepo { hg: hg_bin, dir }
    }

    fn commit(&self, files: &[(&str, &[u8])], message: &str) -> String {
        let hg_files = |path: &Path| path.file_name().is_some_and(|n| n == ".hg");
        replace_files(&self.dir, hg_files, files);
        hg(self.hg, &self.dir, &["addremove", "-q"]);
        hg(self.hg, &self.dir, &["commit", "-q", "-m", message]);
        hg(self.hg, &self.dir, &["log", "-r", ".", "-T", "{node}"])
    }
}

struct HgFixture {
    repo: HgRepo,
}

impl SourceFixture for HgFixture {
    fn spec(&self) -> SourceSpec {
        SourceSpec::new(self.repo.dir.to_string_lossy())
    }

    fn publish(
        &mut self,
        files: &[(&str, &[u8])],
        message: &str,
    ) -> Result<(), Box<dyn std::error::Error>> {
        self.repo.commit(files, message);
        Ok(())
    }

    fn missing(&self) -> SourceSpec {
        SourceSpec::new(self.repo.dir.with_extension("missing").to_string_lossy())
    }
}

#[test]
fn hg_conforms() {
    let Some(hg_bin) = require_hg() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let mut fixture = HgFixture {
        repo: HgRepo::new(hg_bin, tmp.path().join("app")),
    };
    let source = HgSource::new(tmp.path().join("cache")).with_hg(hg_bin);
    assert_source_provider(&source, &mut fixture);
}

#[test]
fn branches_metadata_modes_and_errors() {
    let Some(hg_bin) = require_hg() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let source = HgSource::new(tmp.path().join("cache")).with_hg(hg_bin);

    let empty = HgRepo::new(hg_bin, tmp.path().join("empty"));
    match source.head(&SourceSpec::new(empty.dir.to_string_lossy())) {
        Err(SourceError::Empty { .. }) => {}
        other => panic!("want Empty, got {other:?}"),
    }

    let repo = HgRepo::new(hg_bin, tmp.path().join("app"));
    let on_default = repo.commit(&[("host.json", b"{}")], "first\n\nwith a body");
    hg(hg_bin, &repo.dir, &["branch", "-q", "staging"]);
    let on_staging = repo.commit(&[("host.json", b"{\"v\": 2}")], "staging work");
    let spec = SourceSpec::new(repo.dir.to_string_lossy());
    assert_eq!(source.head(&spec).unwrap(), on_default);
    assert_eq!(
        source
            .head(&spec.clone().with_reference("staging"))
            .unwrap(),
        on_staging
    );
    match source.head(&spec.clone().with_reference("production")) {
        Err(SourceError::NotFound { what, hint, .. }) => {
            assert!(what.contains("production"), "{what}");
            assert_eq!(hint.as_deref(), Some("branches: default, staging"));
        }
        other => panic!("want NotFound, got {other:?}"),
    }

    let into = tempfile::tempdir().unwrap();
    let snapshot = source.fetch(&spec, into.path()).unwrap();
    assert_eq!(snapshot.id, on_default);
    assert_eq!(
        snapshot.author.as_deref(),
        Some("Ada Lovelace <ada@example.com>")
    );
    assert_eq!(snapshot.message.as_deref(), Some("first\n\nwith a body"));
    assert!(snapshot.time.is_some());
    assert!(!into.path().join(".hg_archival.txt").exists());
    assert!(!into.path().join(".hg").exists());

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        hg(hg_bin, &repo.dir, &["update", "-q", "default"]);
        fs::write(repo.dir.join("run.sh"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(repo.dir.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
        hg(hg_bin, &repo.dir, &["add", "-q", "run.sh"]);
        hg(hg_bin, &repo.dir, &["commit", "-q", "-m", "script"]);
        let into = tempfile::tempdir().unwrap();
        source.fetch(&spec, into.path()).unwrap();
        let mode = fs::metadata(into.path().join("run.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_ne!(mode & 0o111, 0, "the executable bit is kept");
    }

    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    match source.head(&SourceSpec::new(format!("http://127.0.0.1:{port}/app"))) {
        Err(SourceError::Unreachable { .. }) => {}
        other => panic!("want Unreachable, got {other:?}"),
    }
}
