//! Deployments end to end through the library: store, records, activation,
//! rollback, swap, limits, faults and concurrency.

#![allow(clippy::unwrap_used)] // tests panic on what they do not expect

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use fnhost_testsupport::app::{files as tree, hold_slot_lock};

use fnhost_deploy::store::{Digest, Manifest, ManifestKey};
use fnhost_deploy::{
    Content, DeployRequest, Durability, Error, FsStore, Site, Status, Store, ZipLimits,
};

const HOST_JSON: &str = r#"{ "version": "2.0", "customHandler": { "description": { "defaultExecutablePath": "handler" } } }"#;
const HTTP_FUNCTION: &str = r#"{ "bindings": [
  { "type": "httpTrigger", "direction": "in", "name": "req", "authLevel": "anonymous", "methods": ["get"] },
  { "type": "http", "direction": "out", "name": "res" } ] }"#;

fn write(path: &Path, data: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, data).unwrap();
}

/// A valid app with `n` extra files whose content depends on `version`;
/// `dir`.
fn make_app(dir: &Path, n: usize, version: &str) -> PathBuf {
    write(&dir.join("host.json"), HOST_JSON);
    write(&dir.join("hello/function.json"), HTTP_FUNCTION);
    write(&dir.join("local.settings.json"), r#"{"Values":{}}"#);
    for i in 0..n {
        write(
            &dir.join(format!("lib/{}/f{i}.txt", i % 7)),
            &format!("{version} file {i}"),
        );
    }
    write(
        &dir.join("handler"),
        &format!("#!/bin/sh\necho {version}\n"),
    );
    fs::set_permissions(dir.join("handler"), fs::Permissions::from_mode(0o755)).unwrap();
    dir.to_path_buf()
}

/// A scratch folder, its `home` and a site there with app `app`.
fn scratch() -> (tempfile::TempDir, PathBuf, Site) {
    scratch_with(|site| site)
}

/// [`scratch`] with the site as `configure` makes it.
fn scratch_with(configure: impl FnOnce(Site) -> Site) -> (tempfile::TempDir, PathBuf, Site) {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let site = configure(Site::open(&home).unwrap());
    site.create_app("app").unwrap();
    (tmp, home, site)
}

/// The id of the active deployment of `app`'s production slot.
fn active_id(site: &Site) -> String {
    site.active("app", "production")
        .unwrap()
        .unwrap()
        .deployment
}

/// What a user sees of the active folder of `app`'s production slot.
fn active_snapshot(site: &Site) -> (BTreeMap<String, String>, bool) {
    snapshot(&site.active_path("app", "production").unwrap())
}

/// Checks that fsck (of `app`, or of everything) finds nothing wrong.
fn assert_sound(site: &Site, app: Option<&str>) {
    let report = site.fsck(app).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
}

/// The log of the newest deployment of `app`, as text.
fn newest_log(site: &Site) -> String {
    format!("{:?}", site.deployments("app", None).unwrap()[0].log)
}

/// Makes an app in `dir` ([`make_app`]) and deploys it (with `version` as
/// its message): the folder and the deployment.
fn deploy_new(
    site: &Site,
    dir: &Path,
    n: usize,
    version: &str,
) -> (PathBuf, fnhost_deploy::Deployment) {
    let dir = make_app(dir, n, version);
    let deployment = deploy_dir(site, &dir, version).unwrap().deployment;
    (dir, deployment)
}

fn deploy_dir(
    site: &Site,
    dir: &Path,
    msg: &str,
) -> fnhost_deploy::Result<fnhost_deploy::DeployOutcome> {
    site.deploy(DeployRequest::new("app", Content::Folder(dir.to_path_buf())).with_message(msg))
}

#[test]
fn deploy_redeploy_rollback_and_swap() {
    let (tmp, _, site) = scratch();
    let v1 = make_app(&tmp.path().join("v1"), 50, "one");
    for (rel, data) in [
        (".funcignore", "*.log\nsecret/\n"),
        ("debug.log", "x"),
        ("secret/key", "x"),
        (".git/HEAD", "x"),
    ] {
        write(&v1.join(rel), data);
    }
    // Files changed within the last second are always hashed again (their
    // time stamps cannot tell a later change apart); let them age.
    std::thread::sleep(std::time::Duration::from_millis(1100));

    let first = deploy_dir(&site, &v1, "first").unwrap();
    assert!(!first.unchanged);
    let d1 = first.deployment;
    assert_eq!(d1.status, Status::Success);
    assert!(d1.active);
    let active = site.active_path("app", "production").unwrap();
    let files = tree(&active);
    assert!(files.contains_key("host.json"));
    assert!(files.contains_key("hello/function.json"));
    for gone in [
        "local.settings.json",
        "debug.log",
        "secret/key",
        ".git/HEAD",
        ".funcignore",
    ] {
        assert!(!files.contains_key(gone), "{gone} should be left out");
    }
    // Executable bit kept, everything read-only.
    let mode = fs::metadata(active.join("handler"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o555);
    let mode = fs::metadata(active.join("host.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o222, 0);

    // Unchanged content: nothing new, no new record.
    let again = deploy_dir(&site, &v1, "again").unwrap();
    assert!(again.unchanged);
    assert_eq!(again.deployment.id, d1.id);
    assert_eq!(site.deployments("app", None).unwrap().len(), 1);

    // A changed file: a new deployment, only the change is new.
    write(&v1.join("lib/0/f0.txt"), "changed");
    let second = deploy_dir(&site, &v1, "second").unwrap();
    assert_eq!(second.deployment.new_files, 1);
    assert_eq!(second.hashed, 1, "the stat cache skips unchanged files");
    let g2 = site.generation("app", "production").unwrap();

    // Rollback to the previous one, by default.
    let back = site.rollback("app", "production", None).unwrap();
    assert_eq!(back.id, d1.id);
    assert!(site.generation("app", "production").unwrap() > g2);
    assert_eq!(
        fs::read_to_string(
            site.active_path("app", "production")
                .unwrap()
                .join("lib/0/f0.txt")
        )
        .unwrap(),
        "one file 0"
    );
    // And forward again by id.
    site.rollback("app", "production", Some(&second.deployment.id))
        .unwrap();
    // Nothing older than the first.
    site.rollback("app", "production", Some(&d1.id)).unwrap();
    assert!(matches!(
        site.rollback("app", "production", None),
        Err(Error::NoRollbackTarget { .. })
    ));

    // Staging, then swap.
    let v2 = make_app(&tmp.path().join("v2"), 3, "two");
    let staged = site
        .deploy(
            DeployRequest::new("app", Content::Folder(v2.clone()))
                .with_slot("staging")
                .with_author("ada"),
        )
        .unwrap();
    site.swap("app", "production", "staging").unwrap();
    assert_eq!(active_id(&site), staged.deployment.id);
    assert_eq!(
        site.active("app", "staging").unwrap().unwrap().deployment,
        d1.id
    );
    let listed = site.deployments("app", Some("production")).unwrap();
    assert!(
        listed
            .iter()
            .any(|d| d.id == staged.deployment.id && d.active)
    );
    // Newest first.
    assert!(listed.windows(2).all(|w| w[0].id > w[1].id));

    assert_sound(&site, None);
}

#[test]
fn broken_app_is_never_activated() {
    let (tmp, _, site) = scratch();
    let (_, d1) = deploy_new(&site, &tmp.path().join("good"), 2, "good");

    let bad = make_app(&tmp.path().join("bad"), 2, "bad");
    write(&bad.join("hello/function.json"), "{ \"bindings\": [ {");
    let err = deploy_dir(&site, &bad, "bad").unwrap_err();
    let Error::DeploymentFailed { id, reason, .. } = &err else {
        panic!("{err}");
    };
    assert!(reason.contains("function.json"), "{reason}");
    let rec = site.deployment("app", id).unwrap();
    assert_eq!(rec.status, Status::Failed);
    assert!(!rec.active);
    assert!(
        rec.log
            .iter()
            .any(|l| l.message.contains("hello/function.json:"))
    );
    assert_eq!(active_id(&site), d1.id);
    // Nothing of it is kept: not its folder, nor its manifest (written on a
    // thread while the app was validated, and waited for before the
    // failed deployment is cleaned up).
    assert!(
        !site
            .store()
            .contains_manifest(&ManifestKey::new("app", id))
            .unwrap()
    );
    assert!(!tmp.path().join("home/apps/app/content").join(id).exists());
    assert_sound(&site, Some("app"));
}

fn zip_of(path: &Path, entries: &[(&str, &[u8], u32)]) {
    let f = fs::File::create(path).unwrap();
    let mut z = zip::ZipWriter::new(f);
    for (name, data, mode) in entries {
        let o = if *mode > 0o777 {
            zip::write::SimpleFileOptions::default().external_attributes(*mode << 16)
        } else {
            zip::write::SimpleFileOptions::default().unix_permissions(*mode)
        };
        z.start_file(*name, o).unwrap();
        z.write_all(data).unwrap();
    }
    z.finish().unwrap();
}

#[test]
fn zips_good_and_bad() {
    let (tmp, _, site) = scratch();
    let good = tmp.path().join("good.zip");
    zip_of(
        &good,
        &[
            ("host.json", HOST_JSON.as_bytes(), 0o644),
            ("hello/function.json", HTTP_FUNCTION.as_bytes(), 0o644),
            ("handler", b"#!/bin/sh\n", 0o755),
        ],
    );
    let ok = site
        .deploy(DeployRequest::new("app", Content::Zip(good)))
        .unwrap();
    assert_eq!(ok.deployment.files, 3);
    assert_eq!(ok.deployment.deployer, "ZipDeploy");
    let active = site.active_path("app", "production").unwrap();
    assert_eq!(
        fs::metadata(active.join("handler"))
            .unwrap()
            .permissions()
            .mode()
            & 0o111,
        0o111
    );

    let base: Vec<(&str, &[u8], u32)> = vec![
        ("host.json", HOST_JSON.as_bytes(), 0o644),
        ("hello/function.json", HTTP_FUNCTION.as_bytes(), 0o644),
    ];
    type Entries<'a> = Vec<(&'a str, &'a [u8], u32)>;
    let cases: Vec<(&str, Entries<'_>, &str)> = vec![
        ("abs", vec![("/etc/passwd", b"x", 0o644)], "absolute path"),
        ("dotdot", vec![("a/../../x", b"x", 0o644)], "`..`"),
        ("drive", vec![("C:\\x", b"x", 0o644)], "drive letter"),
        ("device", vec![("dev", b"", 0o020_644)], "device"),
        ("fifo", vec![("fifo", b"", 0o010_644)], "fifo"),
        (
            "conflict",
            vec![("lib", b"x", 0o644), ("lib/x", b"y", 0o644)],
            "both a file",
        ),
        (
            "dup",
            vec![("a/x", b"x", 0o644), ("a//x", b"y", 0o644)],
            "twice",
        ),
    ];
    for (name, extra, expect) in cases {
        let path = tmp.path().join(format!("{name}.zip"));
        let mut all = base.clone();
        all.extend(extra);
        zip_of(&path, &all);
        let err = site
            .deploy(DeployRequest::new("app", Content::Zip(path)))
            .unwrap_err();
        let rec_id = match &err {
            Error::DeploymentFailed { id, .. } => id.clone(),
            e => panic!("{name}: {e}"),
        };
        let rec = site.deployment("app", &rec_id).unwrap();
        let log = format!("{:?}", rec.log);
        assert!(log.contains(expect), "{name}: {log}");
    }

    // Escaping symlink.
    let path = tmp.path().join("link.zip");
    {
        let mut z = zip::ZipWriter::new(fs::File::create(&path).unwrap());
        let o = zip::write::SimpleFileOptions::default();
        z.start_file("host.json", o).unwrap();
        z.write_all(HOST_JSON.as_bytes()).unwrap();
        z.add_symlink("lib/evil", "../../etc/passwd", o).unwrap();
        z.finish().unwrap();
    }
    let err = site
        .deploy(DeployRequest::new("app", Content::Zip(path)))
        .unwrap_err();
    assert!(newest_log(&site).contains("leaves the app folder"), "{err}");

    // A duplicate name in the central directory.
    let path = tmp.path().join("dup-exact.zip");
    {
        let mut z = zip::ZipWriter::new(fs::File::create(&path).unwrap());
        let o = zip::write::SimpleFileOptions::default();
        z.start_file("host.json", o).unwrap();
        z.write_all(HOST_JSON.as_bytes()).unwrap();
        z.finish().unwrap();
    }
    let mut bytes = fs::read(&path).unwrap();
    // Append a second copy of the same archive's entry is hard to build with
    // the writer (it refuses duplicates); the normalised-name case above
    // covers duplicates. Here: a truncated archive.
    bytes.truncate(bytes.len() / 2);
    fs::write(&path, &bytes).unwrap();
    let err = site
        .deploy(DeployRequest::new("app", Content::Zip(path)))
        .unwrap_err();
    assert!(matches!(err, Error::DeploymentFailed { .. }));

    // Limits: entry count, total size, ratio.
    let limited = Site::open(tmp.path().join("home"))
        .unwrap()
        .with_zip_limits(ZipLimits {
            max_entries: 2,
            ..ZipLimits::default()
        });
    let three = tmp.path().join("three.zip");
    zip_of(
        &three,
        &[("a", b"1", 0o644), ("b", b"2", 0o644), ("c", b"3", 0o644)],
    );
    let err = limited
        .deploy(DeployRequest::new("app", Content::Zip(three.clone())))
        .unwrap_err();
    assert!(
        format!("{:?}", limited.deployments("app", None).unwrap()[0].log).contains("limit"),
        "{err}"
    );
    let small = Site::open(tmp.path().join("home"))
        .unwrap()
        .with_zip_limits(ZipLimits {
            max_total_size: 2,
            ..ZipLimits::default()
        });
    assert!(
        small
            .deploy(DeployRequest::new("app", Content::Zip(three)))
            .is_err()
    );
    let bomb = tmp.path().join("bomb.zip");
    {
        let mut z = zip::ZipWriter::new(fs::File::create(&bomb).unwrap());
        let o = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        z.start_file("host.json", o).unwrap();
        z.write_all(HOST_JSON.as_bytes()).unwrap();
        z.start_file("zeros", o).unwrap();
        z.write_all(&vec![0u8; 8 * 1024 * 1024]).unwrap();
        z.finish().unwrap();
    }
    let err = site
        .deploy(DeployRequest::new("app", Content::Zip(bomb)))
        .unwrap_err();
    assert!(newest_log(&site).contains("zip bomb"), "{err}");

    // Through all that, the first zip stayed active and nothing is damaged.
    assert_eq!(active_id(&site), ok.deployment.id);
    assert_sound(&site, None);
}

/// A store that fails every write after `budget` writes (a full disk).
#[derive(Debug)]
struct FullDisk {
    inner: FsStore,
    budget: AtomicUsize,
}

impl FullDisk {
    fn spend(&self) -> io::Result<()> {
        if self
            .budget
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| b.checked_sub(1))
            .is_err()
        {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "No space left on device (simulated)",
            ));
        }
        Ok(())
    }
}

impl Store for FullDisk {
    fn describe(&self) -> String {
        "full-disk".into()
    }
    fn contains(&self, d: &Digest) -> io::Result<bool> {
        self.inner.contains(d)
    }
    fn put(&self, d: &Digest, data: &mut dyn Read) -> io::Result<bool> {
        if self.inner.contains(d)? {
            return Ok(false);
        }
        self.spend()?;
        self.inner.put(d, data)
    }
    fn open(&self, d: &Digest) -> io::Result<Box<dyn Read + Send>> {
        self.inner.open(d)
    }
    fn local_path(&self, d: &Digest) -> Option<PathBuf> {
        self.inner.local_path(d)
    }
    fn sync(&self, d: &[Digest]) -> io::Result<()> {
        self.inner.sync(d)
    }
    fn blobs(&self) -> io::Result<Vec<Digest>> {
        self.inner.blobs()
    }
    fn remove(&self, d: &Digest) -> io::Result<()> {
        self.inner.remove(d)
    }
    fn put_manifest(&self, k: &ManifestKey, m: &Manifest) -> io::Result<()> {
        self.spend()?;
        self.inner.put_manifest(k, m)
    }
    fn manifest(&self, k: &ManifestKey) -> io::Result<Manifest> {
        self.inner.manifest(k)
    }
    fn manifests(&self) -> io::Result<Vec<ManifestKey>> {
        self.inner.manifests()
    }
    fn remove_manifest(&self, k: &ManifestKey) -> io::Result<()> {
        self.inner.remove_manifest(k)
    }
    fn clean_temporary(&self) -> io::Result<usize> {
        self.inner.clean_temporary()
    }
}

#[test]
fn a_full_disk_fails_cleanly() {
    let (tmp, home, site) = scratch();
    let (_, d1) = deploy_new(&site, &tmp.path().join("v1"), 20, "one");

    let v2 = make_app(&tmp.path().join("v2"), 20, "two");
    for budget in [0, 5, 16] {
        let full = Arc::new(FullDisk {
            inner: FsStore::open(home.join("store")).unwrap(),
            budget: AtomicUsize::new(budget),
        });
        let failing = Site::open(&home).unwrap().with_store(full);
        let err = failing
            .deploy(DeployRequest::new("app", Content::Folder(v2.clone())))
            .unwrap_err();
        let Error::DeploymentFailed { id, reason, .. } = &err else {
            panic!("{err}");
        };
        assert!(reason.contains("No space left"), "{reason}");
        assert_eq!(site.deployment("app", id).unwrap().status, Status::Failed);
        assert_eq!(active_id(&site), d1.id);
        assert_sound(&site, None);
    }
    // With room again, it goes through.
    let d2 = deploy_dir(&site, &v2, "two").unwrap().deployment;
    assert_eq!(d2.status, Status::Success);
    site.gc().unwrap();
    assert_sound(&site, None);
}

#[test]
fn read_only_folder_fails_cleanly() {
    let (tmp, _, site) = scratch();
    let v1 = make_app(&tmp.path().join("v1"), 2, "one");
    let unreadable = v1.join("lib/0/f0.txt");
    fs::set_permissions(&unreadable, fs::Permissions::from_mode(0o000)).unwrap();
    // Root reads anything; only check the error path when it applies.
    if fs::read(&unreadable).is_err() {
        let err = deploy_dir(&site, &v1, "x").unwrap_err();
        assert!(matches!(err, Error::DeploymentFailed { .. }), "{err}");
    }
    fs::set_permissions(&unreadable, fs::Permissions::from_mode(0o644)).unwrap();
    deploy_dir(&site, &v1, "x").unwrap();
}

#[test]
fn busy_slot_and_read_only_mode() {
    let (tmp, _, site) = scratch();
    let v1 = make_app(&tmp.path().join("v1"), 2, "one");
    // Hold the slot's lock as a running deployment would.
    let lock_path = tmp.path().join("home/apps/app/slots/production/lock");
    let holder = hold_slot_lock(&lock_path, "20990101T000000000000Z-abc");
    let err = site
        .deploy(DeployRequest::new("app", Content::Folder(v1.clone())).with_wait(false))
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("a deployment is in progress"), "{text}");
    assert!(text.contains("20990101T000000000000Z-abc"), "{text}");
    drop(holder);
    deploy_dir(&site, &v1, "now").unwrap();

    site.set_continuous_deployment(
        "app",
        "production",
        Some("https://example.invalid/repo.git#main"),
    )
    .unwrap();
    let err = deploy_dir(&site, &v1, "refused").unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::ReadOnly { .. }));
    assert!(
        text.contains("https://example.invalid/repo.git#main"),
        "{text}"
    );
    assert!(text.contains("turn continuous deployment off"), "{text}");
    // Other slots stay writable.
    site.deploy(DeployRequest::new("app", Content::Folder(v1.clone())).with_slot("staging"))
        .unwrap();
    site.set_continuous_deployment("app", "production", None)
        .unwrap();
    assert!(
        site.continuous_deployment("app", "production")
            .unwrap()
            .is_none()
    );
}

#[test]
fn two_deployments_at_once_take_turns() {
    let (tmp, home, site) = scratch();
    let dirs: Vec<PathBuf> = (0..4)
        .map(|i| {
            let d = tmp.path().join(format!("v{i}"));
            make_app(&d, 200, &format!("v{i}"));
            d
        })
        .collect();
    std::thread::scope(|s| {
        for d in &dirs {
            let home = home.clone();
            s.spawn(move || {
                let site = Site::open(&home).unwrap();
                site.deploy(DeployRequest::new("app", Content::Folder(d.clone())))
                    .unwrap();
            });
        }
    });
    let all = site.deployments("app", None).unwrap();
    assert_eq!(all.len(), 4);
    assert!(all.iter().all(|d| d.status == Status::Success));
    assert_eq!(all.iter().filter(|d| d.active).count(), 1);
    assert_sound(&site, None);
}

#[test]
fn retention_keeps_the_last_n() {
    let (tmp, home, site) = scratch_with(|site| site.with_retention(3));
    let v = tmp.path().join("v");
    let mut ids = Vec::new();
    for i in 0..6 {
        make_app(&v, 2, &format!("v{i}"));
        ids.push(deploy_dir(&site, &v, "x").unwrap().deployment.id);
    }
    let kept: Vec<String> = site
        .deployments("app", None)
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(kept, ids[3..].iter().rev().cloned().collect::<Vec<_>>());
    assert_eq!(
        fs::read_dir(home.join("apps/app/content")).unwrap().count(),
        3
    );
    assert_eq!(site.store().manifests().unwrap().len(), 3);
    assert_sound(&site, None);
}

#[test]
fn fsck_finds_damage() {
    let (tmp, home, site) = scratch();
    let (_, d) = deploy_new(&site, &tmp.path().join("v"), 3, "v");
    let manifest = site.manifest("app", &d.id).unwrap();
    let entry = manifest.get("host.json").unwrap();
    let store = FsStore::open(home.join("store")).unwrap();
    let blob = store.blob_path(&entry.hash);
    fs::set_permissions(&blob, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(&blob, "{ \"version\": \"3.0\" }").unwrap();
    let report = site.fsck(None).unwrap();
    assert!(!report.is_ok());
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains(&entry.hash.to_hex())),
        "{:?}",
        report.problems
    );
    // A missing blob.
    fs::remove_file(&blob).unwrap();
    let report = site.fsck(Some("app")).unwrap();
    assert!(!report.is_ok());
}

#[test]
fn credentials_are_hashed_and_private() {
    let (_tmp, home, site) = scratch();
    assert!(site.check_credentials("app", "ada", "x").is_err());
    site.set_credentials("app", "ada", "correct horse battery")
        .unwrap();
    assert!(
        site.check_credentials("app", "ada", "correct horse battery")
            .unwrap()
    );
    assert!(!site.check_credentials("app", "ada", "wrong horse").unwrap());
    assert!(
        !site
            .check_credentials("app", "bob", "correct horse battery")
            .unwrap()
    );
    let path = home.join("apps/app/credentials.json");
    let text = fs::read_to_string(&path).unwrap();
    assert!(text.contains("$argon2id$"));
    assert!(!text.contains("correct horse"));
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(site.set_credentials("app", "ada", "short").is_err());
    let new = site.reset_credentials("app", "ada").unwrap();
    assert_eq!(new.len(), 24);
    assert!(site.check_credentials("app", "ada", &new).unwrap());
    assert!(
        !site
            .check_credentials("app", "ada", "correct horse battery")
            .unwrap()
    );
}

#[test]
fn download_is_deterministic_and_export_makes_a_repository() {
    let (tmp, _, site) = scratch();
    let v = make_app(&tmp.path().join("v"), 5, "v");
    deploy_dir(&site, &v, "content").unwrap();
    let a = tmp.path().join("a.zip");
    let b = tmp.path().join("b.zip");
    site.download("app", "production", false, &a).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    site.download("app", "production", false, &b).unwrap();
    assert_eq!(fs::read(&a).unwrap(), fs::read(&b).unwrap());
    let mut z = zip::ZipArchive::new(fs::File::open(&a).unwrap()).unwrap();
    assert!(z.by_name("local.settings.json").is_err());
    assert_eq!(
        z.by_name("handler").unwrap().unix_mode().unwrap() & 0o777,
        0o755
    );

    site.set_app_settings(
        "app",
        "production",
        [("FUNCTIONS_WORKER_RUNTIME".to_string(), "custom".to_string())].into(),
    )
    .unwrap();
    site.download("app", "production", true, &b).unwrap();
    let mut z = zip::ZipArchive::new(fs::File::open(&b).unwrap()).unwrap();
    let mut s = String::new();
    z.by_name("local.settings.json")
        .unwrap()
        .read_to_string(&mut s)
        .unwrap();
    assert!(
        s.contains("\"FUNCTIONS_WORKER_RUNTIME\": \"custom\""),
        "{s}"
    );

    // The downloaded zip deploys to another app as the same content.
    site.create_app("copy").unwrap();
    let copy = site
        .deploy(DeployRequest::new("copy", Content::Zip(a)))
        .unwrap();
    let orig = site.deployments("app", None).unwrap().remove(0);
    assert_eq!(copy.deployment.source_id, orig.source_id);

    let repo = tmp.path().join("repo");
    let commit = site.export_git("app", "production", &repo).unwrap();
    assert_eq!(commit.len(), 40);
    assert!(repo.join(".git").is_dir());
    assert!(repo.join("host.json").is_file());
    let out = std::process::Command::new("git")
        .args(["-C", repo.to_str().unwrap(), "ls-files", "-s", "handler"])
        .output();
    if let Ok(out) = out {
        assert!(String::from_utf8_lossy(&out.stdout).starts_with("100755"));
    }
    assert!(site.export_git("app", "production", &repo).is_err());
}

#[test]
fn durability_process_mode_and_app_deletion() {
    let (tmp, _, site) = scratch_with(|site| site.with_durability(Durability::Process));
    assert!(matches!(
        site.create_app("app"),
        Err(Error::AppExists { .. })
    ));
    assert!(matches!(
        site.create_app("bad/name"),
        Err(Error::InvalidName { .. })
    ));
    let v = make_app(&tmp.path().join("v"), 3, "v");
    deploy_dir(&site, &v, "x").unwrap();
    assert_eq!(site.apps().unwrap().len(), 1);
    site.delete_app("app").unwrap();
    assert!(site.apps().unwrap().is_empty());
    assert!(site.store().blobs().unwrap().is_empty());
    assert!(matches!(
        site.deployments("app", None),
        Err(Error::AppNotFound { .. })
    ));
}

/// What a user sees of a folder: every entry with its kind, execute bit
/// and content (a link's target), and whether every folder is read-only.
fn snapshot(dir: &Path) -> (BTreeMap<String, String>, bool) {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>, ro: &mut bool) {
        let mode = fs::metadata(dir).unwrap().permissions().mode() & 0o777;
        *ro &= mode == 0o555;
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let m = fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                walk(root, &p, out, ro);
            } else if m.file_type().is_symlink() {
                let target = fs::read_link(&p).unwrap();
                out.insert(rel, format!("link {}", target.display()));
            } else {
                let exec = m.permissions().mode() & 0o111 != 0;
                let content = String::from_utf8_lossy(&fs::read(&p).unwrap()).into_owned();
                out.insert(rel, format!("file exec={exec} {content}"));
            }
        }
    }
    let (mut out, mut ro) = (BTreeMap::new(), true);
    walk(dir, dir, &mut out, &mut ro);
    (out, ro)
}

/// The snapshot a deployment of `src` must have: local.settings.json is
/// always left out, and a deployment folder is read-only.
fn expected(src: &Path) -> (BTreeMap<String, String>, bool) {
    let (mut files, _) = snapshot(src);
    files.remove("local.settings.json");
    (files, true)
}

fn log_mentions(d: &fnhost_deploy::Deployment, what: &str) -> bool {
    d.log.iter().any(|l| l.message.contains(what))
}

#[test]
fn spare_folders_apply_only_the_difference_and_stay_exact() {
    let (tmp, home, site) = scratch_with(|site| site.with_retention(3));
    let v = make_app(&tmp.path().join("v"), 60, "one");
    write(&v.join("x"), "a file that becomes a folder");
    write(&v.join("a/b/c.txt"), "a folder that becomes a file");
    write(&v.join("gone/deep/file"), "a folder that goes");
    write(&v.join("tool.sh"), "#!/bin/sh\n");
    std::os::unix::fs::symlink("lib/0/f0.txt", v.join("link")).unwrap();
    let d1 = deploy_dir(&site, &v, "one").unwrap().deployment;
    let v1 = expected(&v);
    assert_eq!(active_snapshot(&site), v1);
    // A slot's first deployment leaves a spare, made on a thread of its own
    // once the deployment is active; the second starts from it (and leaves
    // one in turn).
    site.settle();
    assert!(home.join("apps/app/slots/production/spare/tree").is_dir());
    let file6 = fs::read_to_string(v.join("lib/6/f6.txt")).unwrap();
    write(&v.join("lib/6/f6.txt"), "second");
    let d = deploy_dir(&site, &v, "second").unwrap().deployment;
    assert!(log_mentions(&d, "spare folder"), "{:?}", d.log);
    site.settle();
    assert!(home.join("apps/app/slots/production/spare/tree").is_dir());
    let (second, v_second) = (d.id.clone(), expected(&v));
    write(&v.join("lib/6/f6.txt"), &file6);

    // Every kind of change at once.
    for i in [3, 10, 17] {
        write(&v.join(format!("lib/{}/f{i}.txt", i % 7)), "changed");
    }
    fs::remove_file(v.join("x")).unwrap();
    write(&v.join("x/y"), "now inside a folder");
    fs::remove_dir_all(v.join("a/b")).unwrap();
    write(&v.join("a/b"), "now a file");
    fs::remove_dir_all(v.join("gone")).unwrap();
    write(&v.join("new/dir/file"), "new");
    fs::set_permissions(v.join("tool.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::remove_file(v.join("link")).unwrap();
    std::os::unix::fs::symlink("lib/1/f1.txt", v.join("link")).unwrap();
    write(&v.join("handler"), "#!/bin/sh\necho two\n");
    let d2 = deploy_dir(&site, &v, "two").unwrap().deployment;
    assert!(
        log_mentions(&d2, "spare folder"),
        "the third deployment should start from the spare: {:?}",
        d2.log
    );
    let v2 = expected(&v);
    assert_ne!(v1, v2);
    assert_eq!(active_snapshot(&site), v2);
    // The first deployment's folder is untouched, and rolling back to it is
    // exact.
    site.rollback("app", "production", Some(&d1.id)).unwrap();
    assert_eq!(active_snapshot(&site), v1);
    site.rollback("app", "production", Some(&d2.id)).unwrap();
    assert_sound(&site, None);

    // Retention (3) now drops a deployment with each new one; its folder is
    // the next spare. Every retained folder stays equal to what was deployed.
    let mut kept = vec![(d1.id.clone(), v1), (second, v_second), (d2.id.clone(), v2)];
    for round in 3..=6 {
        write(
            &v.join(format!("lib/2/f{round}.txt")),
            &format!("round {round}"),
        );
        let d = deploy_dir(&site, &v, "next").unwrap().deployment;
        assert!(
            log_mentions(&d, "spare folder"),
            "round {round}: {:?}",
            d.log
        );
        kept.push((d.id.clone(), expected(&v)));
        for (id, snap) in &kept[kept.len() - 3..] {
            assert_eq!(&snapshot(&home.join("apps/app/content").join(id)), snap);
        }
        let report = site.fsck(None).unwrap();
        assert!(report.is_ok(), "round {round}: {:?}", report.problems);
    }

    // A change to most files does not start from the spare.
    make_app(&v, 60, "three");
    let d = deploy_dir(&site, &v, "most files").unwrap().deployment;
    assert!(!log_mentions(&d, "spare folder"), "{:?}", d.log);
    assert_eq!(active_snapshot(&site), expected(&v));

    // A damaged spare is found by fsck, then ignored and replaced.
    let spare = home.join("apps/app/slots/production/spare");
    fs::write(spare.join("manifest.bin"), "{ not json").unwrap();
    let report = site.fsck(None).unwrap();
    assert!(
        report.problems.iter().any(|p| p.contains("spare folder")),
        "{:?}",
        report.problems
    );
    write(&v.join("lib/0/f0.txt"), "after damage");
    let d = deploy_dir(&site, &v, "after damage").unwrap().deployment;
    assert!(!log_mentions(&d, "spare folder"), "{:?}", d.log);
    assert_eq!(active_snapshot(&site), expected(&v));
    assert_sound(&site, None);
    // A spare folder missing a file is damage too.
    let tree = spare.join("tree");
    fs::set_permissions(&tree, fs::Permissions::from_mode(0o755)).unwrap();
    fs::remove_file(tree.join("host.json")).unwrap();
    let report = site.fsck(None).unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("spare folder") && p.contains("host.json")),
        "{:?}",
        report.problems
    );
}

#[test]
fn garbage_collection_after_retention_is_amortised() {
    let (tmp, home, site) = scratch_with(|site| site.with_retention(1));
    let v = tmp.path().join("v");
    // Blobs the remaining manifests use.
    let used = |site: &Site| {
        let mut used = std::collections::BTreeSet::new();
        for key in site.store().manifests().unwrap() {
            used.extend(site.store().manifest(&key).unwrap().blobs());
        }
        used.len()
    };
    let blobs = |site: &Site| site.store().blobs().unwrap().len();
    // Deployment 1 drops nothing; each later one drops one. Until
    // GC_EVERY have been dropped, their blobs stay.
    for i in 0..=fnhost_deploy::site::GC_EVERY {
        make_app(&v, 3, &format!("v{i}"));
        deploy_dir(&site, &v, "x").unwrap();
        // Retention and collection run once the call has returned.
        site.settle();
        if (1..fnhost_deploy::site::GC_EVERY).contains(&i) {
            assert!(blobs(&site) > used(&site), "round {i}");
        }
    }
    // The GC_EVERY-th drop collected them all.
    assert_eq!(blobs(&site), used(&site));
    assert_sound(&site, None);
    // `gc` collects at once.
    make_app(&v, 3, "after");
    deploy_dir(&site, &v, "x").unwrap();
    site.settle();
    assert!(blobs(&site) > used(&site));
    // A blob a killed deployment was writing, beside its final name.
    let shard = fs::read_dir(home.join("store/blobs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let partial = shard.join(".tmp-0123abcd");
    fs::write(&partial, "half a blob").unwrap();
    let report = site.gc().unwrap();
    assert!(report.blobs > 0);
    assert_eq!(report.temporary, 1);
    assert!(!partial.exists());
    assert_eq!(blobs(&site), used(&site));
}

#[test]
fn a_folder_made_from_nothing_is_written_while_storing_and_shares_its_files_with_the_store() {
    use std::os::unix::fs::MetadataExt;
    let (tmp, home, site) = scratch();
    let v = make_app(&tmp.path().join("v"), 20, "one");
    for twin in ["same/a.txt", "same/b.txt"] {
        write(&v.join(twin), "twins");
    }
    std::os::unix::fs::symlink("lib/0/f0.txt", v.join("link")).unwrap();
    // Larger than what is read into memory at once.
    let big: Vec<u8> = (0..5 * 1024 * 1024 + 7).map(|i| (i % 251) as u8).collect();
    fs::create_dir_all(v.join("data/deep")).unwrap();
    fs::write(v.join("data/deep/big.bin"), &big).unwrap();

    let out = deploy_dir(&site, &v, "one").unwrap();
    let d = out.deployment;
    assert!(
        log_mentions(&d, "new files written into the folder while storing"),
        "{:?}",
        d.log
    );
    let active = site.active_path("app", "production").unwrap();
    assert_eq!(snapshot(&active), expected(&v));
    assert_eq!(fs::read(active.join("data/deep/big.bin")).unwrap(), big);
    // A new plain file is its blob: one copy on disk, not two.
    let store = FsStore::open(home.join("store")).unwrap();
    for rel in ["lib/3/f3.txt", "data/deep/big.bin", "host.json"] {
        let data = fs::read(active.join(rel)).unwrap();
        let blob = store.blob_path(&Digest::of(&data));
        assert_eq!(
            fs::metadata(active.join(rel)).unwrap().ino(),
            fs::metadata(&blob).unwrap().ino(),
            "{rel} should be its blob"
        );
        assert_eq!(
            fs::metadata(&blob).unwrap().permissions().mode() & 0o777,
            0o444
        );
    }
    // An executable keeps its mode in the folder and has a blob of its own.
    let handler = fs::metadata(active.join("handler")).unwrap();
    assert_eq!(handler.permissions().mode() & 0o777, 0o555);
    let blob = store.blob_path(&Digest::of(&fs::read(active.join("handler")).unwrap()));
    assert_ne!(fs::metadata(&blob).unwrap().ino(), handler.ino());
    assert_eq!(
        fs::metadata(&blob).unwrap().permissions().mode() & 0o777,
        0o444
    );
    // Nothing is damaged, and every file of the manifest is stored.
    assert_sound(&site, Some("app"));
    let manifest = site
        .store()
        .manifest(&ManifestKey::new("app", &d.id))
        .unwrap();
    for f in &manifest.files {
        assert!(site.store().contains(&f.hash).unwrap(), "{}", f.path);
    }

    // The same content again: no folder is left behind, nothing is new.
    let again = deploy_dir(&site, &v, "again").unwrap();
    assert!(again.unchanged);
    let content: Vec<_> = fs::read_dir(home.join("apps/app/content"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(content, vec![d.id.clone()]);

    // Without a spare (removed here, as when making one failed), every
    // file touched but only two changed: the two new ones are written into
    // the new folder, the rest linked from the store.
    site.settle();
    remove_read_only_tree(&home.join("apps/app/slots/production/spare"));
    for (rel, data) in tree(&v) {
        if rel != "local.settings.json" && !rel.starts_with("link") {
            let p = v.join(&rel);
            let mode = fs::metadata(&p).unwrap().permissions();
            fs::write(&p, &data).unwrap();
            fs::set_permissions(&p, mode).unwrap();
        }
    }
    write(&v.join("lib/1/f1.txt"), "changed");
    write(&v.join("same/b.txt"), "no longer a twin");
    let two = deploy_dir(&site, &v, "two").unwrap();
    assert!(!two.unchanged);
    assert!(
        log_mentions(&two.deployment, "2 new files written"),
        "{:?}",
        two.deployment.log
    );
    let active = site.active_path("app", "production").unwrap();
    assert_eq!(snapshot(&active), expected(&v));
    assert_sound(&site, Some("app"));
}

#[test]
fn the_next_spare_is_made_after_the_call_and_a_deployment_right_after_uses_it_even_without_waiting()
{
    let (tmp, home, site) = scratch();
    let v = tmp.path().join("v");
    // Enough files that making a spare takes a while.
    make_app(&v, 3000, "one");
    deploy_dir(&site, &v, "one").unwrap();
    write(&v.join("lib/1/f1.txt"), "two");
    // The second deployment leaves its spare to a thread.
    deploy_dir(&site, &v, "two").unwrap();
    write(&v.join("lib/2/f2.txt"), "three");
    let three = site
        .deploy(
            DeployRequest::new("app", Content::Folder(v.clone()))
                .with_message("three")
                .with_wait(false),
        )
        .expect("a spare being made is no deployment in progress");
    assert!(
        log_mentions(&three.deployment, "spare folder"),
        "{:?}",
        three.deployment.log
    );
    assert_eq!(active_snapshot(&site), expected(&v));
    site.settle();
    assert_sound(&site, Some("app"));
    // What was left of the spare the deployment took (its manifest) is
    // removed after the call, not left to pile up.
    let tmp_dir = home.join("apps/app/slots/production/tmp");
    let left: Vec<_> = std::fs::read_dir(&tmp_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// Removes a tree whose folders are read-only (as deployment folders are),
/// whoever runs the tests.
fn remove_read_only_tree(dir: &Path) {
    fn open_up(dir: &Path) {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                open_up(&e.path());
            }
        }
    }
    open_up(dir);
    fs::remove_dir_all(dir).unwrap();
}

/// Log lines a deployment reports.
#[derive(Default)]
struct Heard(std::sync::Mutex<Vec<String>>);

impl fnhost_deploy::Observer for Heard {
    fn log(&self, entry: &fnhost_deploy::LogEntry) {
        self.0.lock().unwrap().push(entry.message.clone());
    }
}

#[test]
fn a_folder_as_the_stat_cache_describes_the_active_deployment_is_unchanged_and_nothing_else_is() {
    let (tmp, _, site) = scratch();
    let v = make_app(&tmp.path().join("v"), 30, "one");
    write(&v.join(".funcignore"), "*.log\n");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let d1 = deploy_dir(&site, &v, "one").unwrap().deployment;
    let again = deploy_dir(&site, &v, "again").unwrap();
    assert!(again.unchanged);
    assert_eq!(
        (again.deployment.id.as_str(), again.hashed),
        (d1.id.as_str(), 0)
    );
    // A file the walk leaves out changes nothing.
    write(&v.join("debug.log"), "x");
    let want = || {
        let (mut files, ro) = expected(&v);
        files.remove(".funcignore");
        files.remove("debug.log");
        (files, ro)
    };
    assert!(deploy_dir(&site, &v, "log").unwrap().unchanged);

    // A file gone is a change, even though every file left is as cached.
    let gone = v.join("lib/2/f2.txt");
    let kept = fs::read(&gone).unwrap();
    fs::remove_file(&gone).unwrap();
    let d2 = deploy_dir(&site, &v, "gone").unwrap();
    assert!(!d2.unchanged);
    assert!(!tree(&site.active_path("app", "production").unwrap()).contains_key("lib/2/f2.txt"));
    // The cache forgot the file gone: the next unchanged deployment is
    // known from it alone (what the log says of that shortcut).
    site.settle();
    let heard = Heard::default();
    let same = site
        .deploy(DeployRequest::new("app", Content::Folder(v.clone())).with_observer(&heard))
        .unwrap();
    assert!(same.unchanged);
    assert!(
        heard
            .0
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.starts_with("Every file as when")),
        "{:?}",
        heard.0.lock().unwrap()
    );

    // Back as it was: the same content as the first deployment, but the
    // active one is the second: a new deployment with the file.
    fs::write(&gone, &kept).unwrap();
    let d3 = deploy_dir(&site, &v, "back").unwrap();
    assert!(!d3.unchanged);
    assert_eq!(active_snapshot(&site), want());

    // After a rollback to the second, the folder (cached as the third) is
    // compared in full, and deployed again.
    site.rollback("app", "production", Some(&d2.deployment.id))
        .unwrap();
    let d4 = deploy_dir(&site, &v, "after rollback").unwrap();
    assert!(!d4.unchanged, "the active deployment lacks a file");
    assert_eq!(active_snapshot(&site), want());

    // A link is not in the stat cache: a folder with one is compared in
    // full (and found unchanged).
    std::os::unix::fs::symlink("host.json", v.join("alias")).unwrap();
    assert!(!deploy_dir(&site, &v, "link").unwrap().unchanged);
    let same = deploy_dir(&site, &v, "link again").unwrap();
    assert!(same.unchanged);

    // The same content under a new source id is a new deployment.
    let by_id = site
        .deploy(
            DeployRequest::new("app", Content::Folder(v.clone()))
                .with_source_id("0123456789abcdef0123456789abcdef01234567"),
        )
        .unwrap();
    assert!(!by_id.unchanged);
    let same_id = site
        .deploy(
            DeployRequest::new("app", Content::Folder(v.clone()))
                .with_source_id("0123456789abcdef0123456789abcdef01234567"),
        )
        .unwrap();
    assert!(same_id.unchanged);
}

#[test]
fn a_stat_cache_whose_deployment_is_gone_is_checked_against_the_store() {
    let (tmp, _, site) = scratch();
    let (v, d1) = deploy_new(&site, &tmp.path().join("v"), 20, "one");
    make_app(&v, 20, "two");
    // Old enough for the stat cache to vouch for them.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let d2 = deploy_dir(&site, &v, "two").unwrap().deployment;
    // The cache now names d2; d2 goes, and the blobs only it used.
    site.rollback("app", "production", Some(&d1.id)).unwrap();
    // (Deleting a deployment collects garbage at once.)
    site.delete_deployment("app", &d2.id).unwrap();
    let blob = site.store().local_path(&Digest::of(b"two file 3")).unwrap();
    assert!(!blob.exists(), "d2's blobs are collected");
    // The folder is as the cache says, but the store lacks its blobs:
    // those files are read again, not taken on the cache's word.
    let d3 = deploy_dir(&site, &v, "three").unwrap();
    assert!(!d3.unchanged);
    assert!(
        d3.hashed >= 21,
        "the 20 files and the handler: {}",
        d3.hashed
    );
    assert_eq!(active_snapshot(&site), expected(&v));
    assert_sound(&site, Some("app"));
}
