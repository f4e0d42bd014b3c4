//! Crash safety: `fnhost deploy` killed with SIGKILL at random instants.
//!
//! An app of 2,000 files is changed (200 files a round) and deployed 50
//! times by the binary; each deployment is killed at a random instant
//! within its expected duration. After each kill the active deployment
//! must be complete and equal to one of the trees deployed, fsck must find
//! no damage, and a deployment that ran to its end must have succeeded.
//! Every fifth round, and at the end, a deployment runs uninterrupted and
//! must succeed.

#![allow(clippy::unwrap_used)] // tests panic on what they do not expect

use std::collections::BTreeMap;
use std::collections::hash_map::DefaultHasher;
use std::fs;
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const FILES: usize = 2_000;
const ROUNDS: usize = 50;
const CHANGED_PER_ROUND: usize = 200;

const HOST_JSON: &str = r#"{ "version": "2.0", "customHandler": { "description": { "defaultExecutablePath": "handler" } } }"#;
const HTTP_FUNCTION: &str = r#"{ "bindings": [
  { "type": "httpTrigger", "direction": "in", "name": "req", "authLevel": "anonymous", "methods": ["get"] },
  { "type": "http", "direction": "out", "name": "res" } ] }"#;

/// A small deterministic generator (xorshift64*), seeded from the clock and
/// printed so that a failure can be replayed with FNHOST_CRASH_SEED.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

type Tree = BTreeMap<String, u64>;

fn digest(data: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    data.hash(&mut h);
    h.finish()
}

fn file_path(i: usize) -> String {
    format!("lib/d{:02}/f{i:04}.txt", i % 40)
}

fn snapshot(dir: &Path) -> Tree {
    let files = fnhost_testsupport::app::files(dir);
    files.into_iter().map(|(k, v)| (k, digest(&v))).collect()
}

/// Starts `fnhost deploy`; `full` selects the default durability, else
/// `--durability process` (the same steps in the same order, fewer flushes
/// to disk: what a kill can interrupt is the same).
fn deploy(home: &Path, dir: &Path, full: bool) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_fnhost"))
        .arg("--home")
        .arg(home)
        .args(["deploy", "app", "--dir"])
        .arg(dir)
        .args(if full {
            &[][..]
        } else {
            &["--durability", "process"][..]
        })
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn check(home: &Path, trees: &[Tree], round: usize) {
    let site = fnhost_deploy::Site::open(home).unwrap();
    let active = site.active_path("app", "production").unwrap();
    let tree = snapshot(&active);
    assert!(
        trees.contains(&tree),
        "round {round}: the active deployment ({} files) is not one of the trees deployed",
        tree.len()
    );
    let report = site.fsck(None).unwrap();
    assert!(
        report.is_ok(),
        "round {round}: fsck found damage: {:?}",
        report.problems
    );
}

#[test]
fn deployments_killed_at_random_instants_leave_a_whole_app() {
    let seed = std::env::var("FNHOST_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("crash test seed: {seed} (replay with FNHOST_CRASH_SEED={seed})");
    let mut rng = Rng(seed);
    let started = Instant::now();

    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let work = tmp.path().join("app");
    fs::create_dir_all(work.join("hello")).unwrap();
    fs::write(work.join("host.json"), HOST_JSON).unwrap();
    fs::write(work.join("hello/function.json"), HTTP_FUNCTION).unwrap();
    for i in 0..FILES {
        let p = work.join(file_path(i));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, format!("file {i} round 0 ").repeat(4)).unwrap();
    }
    let site = fnhost_deploy::Site::open(&home).unwrap();
    site.create_app("app").unwrap();

    let mut trees = vec![snapshot(&work)];
    let t0 = Instant::now();
    let status = deploy(&home, &work, true).wait().unwrap();
    assert!(status.success(), "the first deployment failed");
    // The expected duration of a deployment, refreshed by every run that
    // goes to its end.
    // The first one stores all 2,000 files with full flushing; later ones
    // store 200 new files.
    let mut expected = t0.elapsed() / 3;
    check(&home, &trees, 0);

    let (mut killed, mut completed) = (0, 0);
    let mut checking = Duration::ZERO;
    for round in 1..=ROUNDS {
        for _ in 0..CHANGED_PER_ROUND {
            let i = rng.below(FILES as u64) as usize;
            fs::write(
                work.join(file_path(i)),
                format!("file {i} round {round} ").repeat(4),
            )
            .unwrap();
        }
        trees.push(snapshot(&work));

        let full = round % 4 == 0;
        let mut child = deploy(&home, &work, full);
        let span = expected.as_micros() as u64 * if full { 26 } else { 13 } / 10;
        let delay = Duration::from_micros(rng.below(span));
        std::thread::sleep(delay);
        match child.try_wait().unwrap() {
            Some(status) => {
                assert!(status.success(), "round {round}: the deployment failed");
                completed += 1;
            }
            None => {
                child.kill().unwrap();
                let status = child.wait().unwrap();
                if status.code().is_some() {
                    assert!(status.success(), "round {round}: the deployment failed");
                    completed += 1;
                } else {
                    killed += 1;
                }
            }
        }
        let t = Instant::now();
        check(&home, &trees, round);
        checking += t.elapsed();

        if round % 5 == 0 || round == ROUNDS {
            let t = Instant::now();
            let status = deploy(&home, &work, false).wait().unwrap();
            assert!(
                status.success(),
                "round {round}: the deployment after a kill failed"
            );
            expected = t.elapsed();
            check(&home, &trees, round);
            let active = site.active_path("app", "production").unwrap();
            assert_eq!(
                &snapshot(&active),
                trees.last().unwrap(),
                "round {round}: the completed deployment is not the latest tree"
            );
        }
    }
    let records = site.deployments("app", None).unwrap();
    assert!(
        records.iter().all(|r| r.status.is_final()),
        "every interrupted record is finished by the next run"
    );
    assert!(
        records
            .iter()
            .any(|r| r.log.iter().any(|l| l.message.contains("interrupted")))
            || killed == 0
    );
    eprintln!(
        "crash test: {ROUNDS} rounds of {FILES} files, {killed} killed, {completed} completed before the kill, {:.1} s ({:.1} s checking)",
        started.elapsed().as_secs_f64(),
        checking.as_secs_f64()
    );
    assert!(killed >= ROUNDS / 2, "too few kills landed: {killed}");
}
