//! Continuous deployment through the library: configure, sync, builds,
//! coalescing, watch, two branches, folder and hg sources. Local
//! repositories made by the tests with the git and hg commands.

#![allow(clippy::unwrap_used)] // tests panic on what they do not expect

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use fnhost_deploy::cd::{
    BuildKind, ContinuousDeployer, SourceConfig, SourceCredentials, SourceKind, SyncOutcome,
};
use fnhost_deploy::{Content, DeployRequest, Error, Site, Status};
use fnhost_testsupport::app::{make_app, write};
use fnhost_testsupport::git::{commit, git, repo};
use fnhost_testsupport::process::succeeded;

/// Production of "app" following a repository (a valid app, v1) whose
/// commit also holds `extra` files and this `fnhost-build.json`, built with
/// the pipeline.
fn pipeline_source(
    tmp: &Path,
    pipeline: &str,
    extra: &[(&str, &str)],
) -> (PathBuf, ContinuousDeployer) {
    let src = repo(&tmp.join("src"));
    for (rel, content) in extra {
        write(&src.join(rel), content);
    }
    write(&src.join("fnhost-build.json"), pipeline);
    git(&src, &["add", "-A"]);
    git(&src, &["commit", "-q", "-m", "pipeline"]);
    let cd = setup(tmp);
    let pipeline = source(SourceKind::Git, &src).with_build(BuildKind::Pipeline);
    follow(&cd, "production", pipeline).unwrap();
    (src, cd)
}

/// A build that takes a second: changes arrive while it runs.
const SLOW_PIPELINE: &str = r#"{ "steps": [ { "name": "slow", "command": "sleep 1" } ] }"#;

fn setup(tmp: &Path) -> ContinuousDeployer {
    let site = Site::open(tmp.join("home")).unwrap();
    site.create_app("app").unwrap();
    ContinuousDeployer::new(site)
}

/// A source of `kind` at the path `at`.
fn source(kind: SourceKind, at: &Path) -> SourceConfig {
    SourceConfig::new(kind, at.display().to_string())
}

/// Makes `slot` of "app" follow `source`, without credentials.
fn follow(
    cd: &ContinuousDeployer,
    slot: &str,
    source: SourceConfig,
) -> Result<SourceConfig, Error> {
    cd.configure("app", slot, source, None)
}

fn served_version(cd: &ContinuousDeployer, slot: &str) -> String {
    let path = cd.site().active_path("app", slot).unwrap();
    fs::read_to_string(path.join("version.txt")).unwrap()
}

/// Syncs `slot` of "app" once.
fn sync(cd: &ContinuousDeployer, slot: &str) -> SyncOutcome {
    cd.sync_once("app", slot).unwrap()
}

fn deployed(outcome: SyncOutcome) -> Vec<fnhost_deploy::Deployment> {
    match outcome {
        SyncOutcome::Deployed { deployments } => deployments,
        other => panic!("expected a deployment, got {other:?}"),
    }
}

/// Sets a watch's stop flag when dropped, so that a failed assertion stops
/// the watch instead of leaving the test waiting for it.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

fn records(cd: &ContinuousDeployer, slot: &str) -> usize {
    cd.site()
        .deployments("app", Some(slot))
        .unwrap()
        .iter()
        .filter(|d| d.slot == slot)
        .count()
}

#[test]
fn git_source_initial_sync_read_only_and_new_commit() {
    let tmp = tempfile::tempdir().unwrap();
    let src = repo(&tmp.path().join("src"));
    let cd = setup(tmp.path());
    let config = follow(&cd, "production", source(SourceKind::Git, &src)).unwrap();
    assert_eq!(
        config.describe(),
        format!("git {} (branch main)", src.display())
    );

    let first = deployed(sync(&cd, "production"));
    assert_eq!(first.len(), 1);
    let d = &first[0];
    assert_eq!(d.status, Status::Success);
    assert_eq!(d.source_id, git(&src, &["rev-parse", "HEAD"]));
    assert_eq!(d.author, "Ada Lovelace <ada@example.com>");
    assert_eq!(d.message, "first version");
    assert_eq!(d.deployer, "git");
    assert!(
        d.log
            .iter()
            .any(|l| l.message.contains("Building with none"))
    );
    assert_eq!(served_version(&cd, "production"), "v1");

    // Read-only: a direct deployment is refused.
    let other = tmp.path().join("other");
    make_app(&other, "direct");
    let err = cd
        .site()
        .deploy(DeployRequest::new("app", Content::Folder(other)))
        .unwrap_err();
    assert!(matches!(err, Error::ReadOnly { .. }), "{err}");

    // Nothing new.
    match sync(&cd, "production") {
        SyncOutcome::UpToDate { source_id } => assert_eq!(source_id, d.source_id),
        other => panic!("{other:?}"),
    }
    assert_eq!(records(&cd, "production"), 1);

    // A new commit.
    let id = commit(&src, "v2", "second version\n\nwith a body");
    let second = deployed(sync(&cd, "production"));
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].source_id, id);
    assert_eq!(second[0].message, "second version\n\nwith a body");
    assert_eq!(served_version(&cd, "production"), "v2");
    assert_eq!(cd.state("app", "production").unwrap().deployed_id, Some(id));

    // Clear: writable again, history kept.
    assert!(cd.clear("app", "production").unwrap());
    assert!(cd.config("app", "production").unwrap().is_none());
    let other = tmp.path().join("other2");
    make_app(&other, "direct");
    cd.site()
        .deploy(DeployRequest::new("app", Content::Folder(other)))
        .unwrap();
    assert_eq!(records(&cd, "production"), 3);
    assert!(matches!(
        cd.sync_once("app", "production"),
        Err(Error::NotConfigured { .. })
    ));
}

#[test]
fn configure_refuses_a_missing_branch_and_stores_credentials_owner_only() {
    let tmp = tempfile::tempdir().unwrap();
    let src = repo(&tmp.path().join("src"));
    let cd = setup(tmp.path());
    let nope = source(SourceKind::Git, &src).with_branch("nope");
    let err = follow(&cd, "production", nope).unwrap_err();
    assert!(err.to_string().contains("not found"), "{err}");
    // The crate's one error, with the slot it is about.
    assert!(
        matches!(&err, Error::Source { app, slot, .. } if app == "app" && slot == "production"),
        "{err:?}"
    );
    assert!(cd.config("app", "production").unwrap().is_none());
    assert!(
        cd.site()
            .continuous_deployment("app", "production")
            .unwrap()
            .is_none()
    );

    let config = cd
        .configure(
            "app",
            "production",
            source(SourceKind::Git, &src),
            Some(SourceCredentials::Password {
                username: "ada".into(),
                password: "s3cret-token".into(),
            }),
        )
        .unwrap();
    assert!(config.has_password);
    let dir = tmp.path().join("home/apps/app/slots/production/cd");
    for f in ["password", "config.json"] {
        let mode = fs::metadata(dir.join(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
    let config_text = fs::read_to_string(dir.join("config.json")).unwrap();
    assert!(!config_text.contains("s3cret"));
    assert!(!format!("{config:?}").contains("s3cret"));
}

#[test]
fn failed_build_leaves_the_previous_deployment_active() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, cd) = pipeline_source(
        tmp.path(),
        r#"{ "steps": [ { "name": "stamp", "command": "echo built >> version.txt" } ] }"#,
        &[],
    );
    let good = deployed(sync(&cd, "production"));
    assert_eq!(served_version(&cd, "production"), "v1built\n");
    assert!(good[0].log.iter().any(|l| l.message.contains("stamp")));

    write(
        &src.join("fnhost-build.json"),
        r#"{ "steps": [ { "name": "test", "command": "echo 'checking the widgets'; echo 'widget test failed' >&2; exit 3" } ] }"#,
    );
    let bad_id = commit(&src, "v2", "breaks the build");
    let err = cd.sync_once("app", "production").unwrap_err();
    let Error::DeploymentFailed { id, .. } = &err else {
        panic!("{err}");
    };
    let record = cd.site().deployment("app", id).unwrap();
    assert_eq!(record.status, Status::Failed);
    assert_eq!(record.source_id, bad_id);
    let log: Vec<&str> = record.log.iter().map(|l| l.message.as_str()).collect();
    assert!(
        log.iter().any(|l| l.contains("checking the widgets")),
        "{log:?}"
    );
    assert!(
        log.iter().any(|l| l.contains("widget test failed")),
        "{log:?}"
    );
    assert_eq!(served_version(&cd, "production"), "v1built\n");
    assert_eq!(
        cd.site()
            .active("app", "production")
            .unwrap()
            .unwrap()
            .deployment,
        good[0].id
    );
    // Not retried until the source moves.
    assert!(matches!(
        sync(&cd, "production"),
        SyncOutcome::AlreadyFailed { .. }
    ));
    // A fix deploys.
    write(
        &src.join("fnhost-build.json"),
        r#"{ "steps": [ { "name": "test", "command": "true" } ] }"#,
    );
    commit(&src, "v3", "fix");
    deployed(sync(&cd, "production"));
    assert_eq!(served_version(&cd, "production"), "v3");
}

/// Changes arriving during a deployment: one follow-up, of the newest head;
/// a sync started meanwhile coalesces.
#[test]
fn concurrent_syncs_coalesce() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, cd) = pipeline_source(tmp.path(), SLOW_PIPELINE, &[]);
    let running = cd.notify("app", "production");
    std::thread::sleep(Duration::from_millis(300));
    commit(&src, "v2", "two");
    let newest = commit(&src, "v3", "three");
    // Another sync while the first deploys: coalesced, deploys nothing.
    assert!(matches!(sync(&cd, "production"), SyncOutcome::Coalesced));
    let all = deployed(running.join().unwrap().unwrap());
    assert_eq!(all.len(), 2, "the first head, then one follow-up");
    assert_eq!(all[1].source_id, newest);
    assert_eq!(served_version(&cd, "production"), "v3");
    assert!(matches!(
        sync(&cd, "production"),
        SyncOutcome::UpToDate { .. }
    ));
    assert_eq!(records(&cd, "production"), 2);
}

/// Three commits in quick succession while watch runs: the last one is
/// deployed, with at most two deployments.
#[test]
fn watch_coalesces_three_quick_commits() {
    let tmp = tempfile::tempdir().unwrap();
    // Slower than three commits: they arrive during a deployment.
    let (src, cd) = pipeline_source(tmp.path(), SLOW_PIPELINE, &[]);
    deployed(sync(&cd, "production"));
    let before = records(&cd, "production");

    let stop = AtomicBool::new(false);
    let seen = Mutex::new(Vec::new());
    let last = std::thread::scope(|s| {
        let _stop = StopOnDrop(&stop);
        let watcher = s.spawn(|| {
            cd.watch(&[], Duration::from_millis(100), &stop, &|app,
                                                               slot,
                                                               r: &Result<
                SyncOutcome,
                Error,
            >| {
                seen.lock().unwrap().push(format!("{app}/{slot}: {r:?}"));
            })
        });
        std::thread::sleep(Duration::from_millis(250));
        commit(&src, "v2", "two");
        commit(&src, "v3", "three");
        let last = commit(&src, "v4", "four");
        let deadline = Instant::now() + Duration::from_secs(20);
        while cd
            .state("app", "production")
            .unwrap()
            .deployed_id
            .as_deref()
            != Some(&last)
        {
            assert!(Instant::now() < deadline, "watch did not deploy {last}");
            std::thread::sleep(Duration::from_millis(50));
        }
        // Give it time to (wrongly) deploy more.
        std::thread::sleep(Duration::from_millis(400));
        stop.store(true, Ordering::SeqCst);
        watcher.join().unwrap().unwrap();
        last
    });
    assert_eq!(served_version(&cd, "production"), "v4");
    let made = records(&cd, "production") - before;
    assert!(
        (1..=2).contains(&made),
        "{made} deployments: {:?}",
        seen.lock()
    );
    let active = cd.site().active("app", "production").unwrap().unwrap();
    assert_eq!(
        cd.site()
            .deployment("app", &active.deployment)
            .unwrap()
            .source_id,
        last
    );
}

/// Production follows main, staging follows staging; merging staging into
/// main deploys to production.
#[test]
fn two_branches_production_and_staging() {
    let tmp = tempfile::tempdir().unwrap();
    let src = repo(&tmp.path().join("src"));
    git(&src, &["branch", "staging"]);
    let cd = setup(tmp.path());
    follow(
        &cd,
        "production",
        source(SourceKind::Git, &src).with_branch("main"),
    )
    .unwrap();
    follow(
        &cd,
        "staging",
        source(SourceKind::Git, &src).with_branch("staging"),
    )
    .unwrap();
    deployed(sync(&cd, "production"));
    deployed(sync(&cd, "staging"));
    assert_eq!(
        cd.configured(&[]).unwrap(),
        vec![
            ("app".to_string(), "production".to_string()),
            ("app".to_string(), "staging".to_string())
        ]
    );

    git(&src, &["checkout", "-q", "staging"]);
    let staged = commit(&src, "v2-staged", "new feature");
    let d = deployed(sync(&cd, "staging"));
    assert_eq!(d[0].source_id, staged);
    assert!(matches!(
        sync(&cd, "production"),
        SyncOutcome::UpToDate { .. }
    ));
    assert_eq!(served_version(&cd, "staging"), "v2-staged");
    assert_eq!(served_version(&cd, "production"), "v1");

    git(&src, &["checkout", "-q", "main"]);
    git(
        &src,
        &["merge", "-q", "--no-ff", "-m", "Merge staging", "staging"],
    );
    let merged = git(&src, &["rev-parse", "HEAD"]);
    let d = deployed(sync(&cd, "production"));
    assert_eq!(d[0].source_id, merged);
    assert_eq!(d[0].message, "Merge staging");
    assert_eq!(served_version(&cd, "production"), "v2-staged");
    assert!(matches!(sync(&cd, "staging"), SyncOutcome::UpToDate { .. }));
}

/// Production of "app" following a synced folder holding v1 (just written).
fn folder_source(tmp: &Path, quiet: Duration) -> (PathBuf, ContinuousDeployer) {
    let folder = tmp.join("dropbox/app");
    make_app(&folder, "v1");
    let cd = setup(tmp);
    let dropbox = source(SourceKind::Folder, &folder).with_quiet_period(quiet);
    follow(&cd, "production", dropbox).unwrap();
    (folder, cd)
}

#[test]
fn folder_source_waits_for_quiet_and_follows_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let (folder, cd) = folder_source(tmp.path(), Duration::from_millis(300));
    // Just written: not ready at first; sync_when_ready waits.
    let d = deployed(
        cd.sync_when_ready("app", "production", Duration::from_secs(10))
            .unwrap(),
    );
    assert_eq!(d[0].deployer, "folder");
    assert_eq!(served_version(&cd, "production"), "v1");
    std::thread::sleep(Duration::from_millis(400));
    assert!(matches!(
        sync(&cd, "production"),
        SyncOutcome::UpToDate { .. }
    ));
    write(&folder.join("version.txt"), "v2");
    assert!(matches!(
        sync(&cd, "production"),
        SyncOutcome::NotReady { .. }
    ));
    std::thread::sleep(Duration::from_millis(400));
    deployed(sync(&cd, "production"));
    assert_eq!(served_version(&cd, "production"), "v2");
}

fn hg_available() -> bool {
    let ok = Command::new("hg")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "hg is missing (scripts/test.sh installs it)"
        );
        eprintln!("SKIPPED: hg is missing");
    }
    ok
}

fn hg(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("hg")
        .args(args)
        .current_dir(dir)
        .env("HGPLAIN", "1")
        .env("HGUSER", "Grace Hopper <grace@example.com>")
        .env("HOME", dir)
        .output()
        .unwrap();
    succeeded(&out);
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn hg_source_follows_a_branch() {
    if !hg_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("hgsrc");
    fs::create_dir_all(&src).unwrap();
    hg(&src, &["init"]);
    make_app(&src, "v1");
    hg(&src, &["commit", "-A", "-q", "-m", "first"]);
    let cd = setup(tmp.path());
    follow(&cd, "production", source(SourceKind::Hg, &src)).unwrap();
    let d = deployed(sync(&cd, "production"));
    assert_eq!(d[0].deployer, "hg");
    assert_eq!(d[0].author, "Grace Hopper <grace@example.com>");
    assert_eq!(
        d[0].source_id,
        hg(&src, &["log", "-r", ".", "-T", "{node}"])
    );
    write(&src.join("version.txt"), "v2");
    hg(&src, &["commit", "-q", "-m", "second"]);
    let d = deployed(sync(&cd, "production"));
    assert_eq!(d[0].message, "second");
    assert_eq!(served_version(&cd, "production"), "v2");
    assert!(matches!(
        sync(&cd, "production"),
        SyncOutcome::UpToDate { .. }
    ));
}

#[test]
fn empty_local_repository_has_nothing_to_deploy() {
    let tmp = tempfile::tempdir().unwrap();
    let cd = setup(tmp.path()).with_executable("/bin/true");
    let local = SourceConfig::new(SourceKind::LocalGit, "");
    let config = follow(&cd, "production", local).unwrap();
    let repo = cd.local_repository("app", "production");
    assert_eq!(
        Path::new(&config.location),
        fs::canonicalize(&repo).unwrap()
    );
    let hook = fs::read_to_string(repo.join("hooks/post-receive")).unwrap();
    assert!(hook.contains("'/bin/true' --home"), "{hook}");
    assert!(matches!(sync(&cd, "production"), SyncOutcome::Empty { .. }));
}

#[test]
fn the_checkout_is_updated_in_place_and_builds_leave_it_untouched() {
    use std::os::unix::fs::MetadataExt as _;
    let tmp = tempfile::tempdir().unwrap();
    let (src, cd) = pipeline_source(
        tmp.path(),
        r#"{ "steps": [ { "name": "stamp", "command": "echo built >> version.txt; echo x > built.txt" } ] }"#,
        &[("keep.txt", "never changes")],
    );
    deployed(sync(&cd, "production"));
    assert_eq!(served_version(&cd, "production"), "v1built\n");
    let checkout = tmp
        .path()
        .join("home/apps/app/slots/production/cd/checkout");
    // The build ran in a copy: the checkout is the commit as it is.
    assert_eq!(
        fs::read_to_string(checkout.join("version.txt")).unwrap(),
        "v1"
    );
    assert!(!checkout.join("built.txt").exists());
    let inode = || fs::metadata(checkout.join("keep.txt")).unwrap().ino();
    let before = inode();

    commit(&src, "v2", "second");
    deployed(sync(&cd, "production"));
    assert_eq!(served_version(&cd, "production"), "v2built\n");
    assert_eq!(inode(), before, "an unchanged file was rewritten");

    // Without its record the checkout is not trusted: fetched afresh.
    fs::remove_file(
        tmp.path()
            .join("home/apps/app/slots/production/cd/checkout.json"),
    )
    .unwrap();
    write(&checkout.join("stray.txt"), "left behind");
    commit(&src, "v3", "third");
    deployed(sync(&cd, "production"));
    assert_eq!(served_version(&cd, "production"), "v3built\n");
    assert!(!checkout.join("stray.txt").exists());
    let active = cd.site().active_path("app", "production").unwrap();
    assert!(!active.join("stray.txt").exists());

    // Clearing the source removes the checkout.
    cd.clear("app", "production").unwrap();
    assert!(!checkout.exists());
}

#[test]
fn watch_follows_a_folder_by_file_events_not_by_polling() {
    let tmp = tempfile::tempdir().unwrap();
    let (folder, cd) = folder_source(tmp.path(), Duration::from_millis(200));
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let _stop = StopOnDrop(&stop);
        // Polled once at the start, then not for an hour: only file events
        // can bring the later versions.
        let watcher = s.spawn(|| cd.watch(&[], Duration::from_secs(3600), &stop, &|_, _, _| {}));
        let wait_for = |version: &str| {
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                let served = cd
                    .site()
                    .active_path("app", "production")
                    .ok()
                    .and_then(|p| fs::read_to_string(p.join("version.txt")).ok());
                if served.as_deref() == Some(version) {
                    return Instant::now();
                }
                assert!(Instant::now() < deadline, "{version} was not deployed");
                std::thread::sleep(Duration::from_millis(25));
            }
        };
        // The first version: just written, deployed once the folder is quiet.
        wait_for("v1");
        std::thread::sleep(Duration::from_millis(300));
        let changed = Instant::now();
        write(&folder.join("version.txt"), "v2");
        let served = wait_for("v2");
        // A new file in a new folder, then a quick series of writes: the
        // last one wins.
        write(&folder.join("more/notes.txt"), "x");
        for v in ["v3", "v4", "v5"] {
            write(&folder.join("version.txt"), v);
            std::thread::sleep(Duration::from_millis(30));
        }
        wait_for("v5");
        stop.store(true, Ordering::SeqCst);
        watcher.join().unwrap().unwrap();
        let took = served - changed;
        assert!(
            took < Duration::from_secs(5),
            "a change took {took:?} to be deployed"
        );
    });
    let active = cd.site().active_path("app", "production").unwrap();
    assert_eq!(
        fs::read_to_string(active.join("more/notes.txt")).unwrap(),
        "x"
    );
}
