//! Deployment benchmark, with `cp -r` of the same folder as the baseline
//! measured in the same run.
//!
//! An app of 10,000 files of 4 KiB (FNHOST_BENCH_QUICK: 500): the first
//! deployment from a folder (with full and with process durability) against
//! `cp -r`; a redeployment of unchanged content; a redeployment with 10
//! changed files, in the first rounds and in the steady state where
//! retention drops a deployment each round; a rollback (a pointer switch)
//! and a re-activation.
//! Run: `cargo bench -p fnhost-benches --bench deploy`.

#![allow(clippy::unwrap_used)] // a benchmark stops on what it does not expect

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use fnhost_benches::scratch_dir;
use fnhost_deploy::{Content, DeployRequest, Durability, Site};

const HOST_JSON: &str = r#"{ "version": "2.0", "customHandler": { "description": { "defaultExecutablePath": "handler" } } }"#;
const HTTP_FUNCTION: &str = r#"{ "bindings": [
  { "type": "httpTrigger", "direction": "in", "name": "req", "authLevel": "anonymous", "methods": ["get"] },
  { "type": "http", "direction": "out", "name": "res" } ] }"#;

/// Runs `f` once and returns its duration.
fn time<T>(f: impl FnOnce() -> T) -> (Duration, T) {
    let t = Instant::now();
    let out = f();
    (t.elapsed(), out)
}

/// The median of `runs` runs of `f`.
fn median(runs: usize, mut f: impl FnMut()) -> Duration {
    mid((0..runs).map(|_| time(&mut f).0).collect())
}

/// The median of durations.
fn mid(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:9.3} ms", d.as_secs_f64() * 1e3)
}

fn make_app(dir: &Path, files: usize) {
    fs::create_dir_all(dir.join("hello")).unwrap();
    fs::write(dir.join("host.json"), HOST_JSON).unwrap();
    fs::write(dir.join("hello/function.json"), HTTP_FUNCTION).unwrap();
    let mut block = vec![0u8; 4096];
    for i in 0..files {
        let sub = dir.join(format!("lib/d{:03}", i % 100));
        if i < 100 {
            fs::create_dir_all(&sub).unwrap();
        }
        let seed = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        for (j, b) in block.iter_mut().enumerate() {
            *b = (seed >> ((j % 8) * 8)) as u8 ^ (j as u8);
        }
        fs::write(sub.join(format!("f{i:05}.bin")), &block).unwrap();
    }
}

fn deploy(site: &Site, dir: &Path) -> fnhost_deploy::DeployOutcome {
    site.deploy(DeployRequest::new(
        "bench",
        Content::Folder(dir.to_path_buf()),
    ))
    .unwrap()
}

fn main() {
    let quick = std::env::var_os("FNHOST_BENCH_QUICK").is_some();
    let files = if quick { 500 } else { 10_000 };
    let tmp = scratch_dir();
    let src = tmp.path().join("src");
    make_app(&src, files);
    // Let the files age past the stat cache's one-second window, as files
    // being redeployed normally have.
    std::thread::sleep(Duration::from_millis(1100));

    let mut rows: Vec<(String, Duration, String)> = Vec::new();
    let total = files + 2;
    let per_sec = |d: Duration| total as f64 / d.as_secs_f64();

    // First deployments against their baseline, `cp -r` of the same folder
    // (page cache warm): three rounds of each, in alternating order, the
    // medians compared; all before any round that deletes files (on ext4,
    // creating files soon after many were deleted is several times slower,
    // and both sides of a ratio should see the same disk). The file system
    // is flushed before each measurement, so that neither side pays for
    // the other's writing.
    let settle_disk = || {
        assert!(Command::new("sync").status().unwrap().success());
    };
    let mut firsts = Vec::new();
    for (name, durability) in [("process", Durability::Process), ("full", Durability::Full)] {
        let (mut cps, mut deps) = (Vec::new(), Vec::new());
        let mut last = None;
        for round in 0..3 {
            let cp = || {
                settle_disk();
                let (d, status) = time(|| {
                    Command::new("cp")
                        .arg("-r")
                        .arg(&src)
                        .arg(tmp.path().join(format!("copy-{name}-{round}")))
                        .status()
                        .unwrap()
                });
                assert!(status.success());
                d
            };
            let first = || {
                let home = tmp.path().join(format!("home-{name}-{round}"));
                let site = Site::open(&home).unwrap().with_durability(durability);
                site.create_app("bench").unwrap();
                settle_disk();
                let (d, out) = time(|| deploy(&site, &src));
                assert!(!out.unchanged);
                // The slot's spare is made on a thread after the call; not
                // while the next measurement runs.
                site.settle();
                (d, out, site)
            };
            let (c, (d, out, site)) = if round % 2 == 0 {
                let c = cp();
                (c, first())
            } else {
                let f = first();
                (cp(), f)
            };
            cps.push(c);
            deps.push((d, out.active_after));
            last = Some((out, site));
        }
        let (out, site) = last.unwrap();
        if std::env::var_os("FNHOST_BENCH_PHASES").is_some()
            && let Some(l) = out
                .deployment
                .log
                .iter()
                .find(|l| l.message.starts_with("Timings"))
        {
            eprintln!("first deployment ({name}), last round: {}", l.message);
        }
        let cp = mid(cps);
        let first = mid(deps.iter().map(|d| d.0).collect());
        let active = mid(deps.iter().map(|d| d.1).collect());
        rows.push((
            format!("cp -r (baseline for {name}, median of 3)"),
            cp,
            String::new(),
        ));
        rows.push((
            format!("first deployment ({name} durability, median of 3)"),
            first,
            format!(
                "{:.2}x cp -r, {:.0} files/s (Kudu: 50-70); active after {:.2}x",
                first.as_secs_f64() / cp.as_secs_f64(),
                per_sec(first),
                active.as_secs_f64() / cp.as_secs_f64()
            ),
        ));
        firsts.push((name, site, first));
    }

    // What an unchanged redeploy cannot avoid: the `stat` of every file
    // (`find` on one thread, its output thrown away).
    let stat_all = median(9, || {
        let out = Command::new("find")
            .arg(&src)
            .args(["-printf", "%s %T@ %C@ %i %m\\n"])
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(out.success());
    });
    rows.push((
        "find -printf size, times, inode (baseline for unchanged)".into(),
        stat_all,
        String::new(),
    ));
    // Unchanged redeploys for both sites before any round changes the
    // folder (a file rewritten with its old content is still read again:
    // its time stamps moved).
    let unchanged: Vec<Duration> = firsts
        .iter()
        .map(|(_, site, _)| {
            settle_disk();
            median(9, || {
                assert!(deploy(site, &src).unchanged);
            })
        })
        .collect();
    for ((name, site, first), unchanged) in firsts.into_iter().zip(unchanged) {
        rows.push((
            format!("redeploy unchanged ({name})"),
            unchanged,
            format!(
                "{:.1}% of first (target < 5%); {:.2}x the stat of every file by find",
                100.0 * unchanged.as_secs_f64() / first.as_secs_f64(),
                unchanged.as_secs_f64() / stat_all.as_secs_f64()
            ),
        ));
        // Ten files changed a round. The first rounds find no deployment
        // for retention to drop: each prepares the next round's spare
        // folder after activating. From the eleventh deployment on (default
        // retention: 10), the folder retention drops is the next spare.
        let mut round = 0u32;
        let mut phases = String::new();
        let changed = |i: usize| src.join(format!("lib/d{:03}/f{:05}.bin", (i * 7) % 100, i * 7));
        // Put back after the rounds: the next durability's site has the
        // original folder deployed.
        let originals: Vec<Vec<u8>> = (0..10).map(|i| fs::read(changed(i)).unwrap()).collect();
        // `settle`: the slot's next spare folder, made on a thread after the
        // call returns, is ready before the next round, as it is when
        // deployments are not back to back; the time is the whole call
        // either way (a call back to back waits for the previous spare).
        let mut change = |site: &Site, settle: bool| {
            round += 1;
            for i in 0..10 {
                fs::write(
                    changed(i),
                    format!("{name} round {round} file {i}").repeat(100),
                )
                .unwrap();
            }
            let (call, out) = time(|| deploy(site, &src));
            assert_eq!(out.deployment.new_files, 10);
            if settle {
                site.settle();
            }
            if let Some(l) = out
                .deployment
                .log
                .iter()
                .find(|l| l.message.starts_with("Timings"))
            {
                phases = l.message.clone();
            }
            (call, out.active_after)
        };
        let early: Vec<(Duration, Duration)> = (0..5).map(|_| change(&site, true)).collect();
        // The first deployment and five rounds so far; five more back to
        // back, the last of which lets retention drop the first.
        let back_to_back: Vec<(Duration, Duration)> = (6
            ..=fnhost_deploy::deployment::DEFAULT_RETENTION)
            .map(|_| change(&site, false))
            .collect();
        let steady: Vec<(Duration, Duration)> = (0..5).map(|_| change(&site, true)).collect();
        for (i, data) in originals.iter().enumerate() {
            fs::write(changed(i), data).unwrap();
        }
        if std::env::var_os("FNHOST_BENCH_PHASES").is_some() {
            eprintln!("10 files changed ({name}), last run: {phases}");
        }
        let pct = |d: Duration| 100.0 * d.as_secs_f64() / first.as_secs_f64();
        for (label, runs) in [
            ("first rounds", &early),
            ("first rounds back to back", &back_to_back),
            ("steady state", &steady),
        ] {
            let call = mid(runs.iter().map(|r| r.0).collect());
            let active = mid(runs.iter().map(|r| r.1).collect());
            rows.push((
                format!("redeploy, 10 files changed, {label} ({name})"),
                call,
                format!(
                    "{:.1}% of first (target < 10%); active after {:.1} ms ({:.1}%)",
                    pct(call),
                    active.as_secs_f64() * 1e3,
                    pct(active)
                ),
            ));
        }
        // Between the two newest deployments (retention dropped the first).
        let recent = site.deployments("bench", None).unwrap();
        let (latest, before) = (recent[0].id.clone(), recent[1].id.clone());
        let mut flip = false;
        let rollback = median(11, || {
            flip = !flip;
            let to = if flip { &before } else { &latest };
            site.rollback("bench", "production", Some(to)).unwrap();
        });
        rows.push((
            format!("rollback / activation ({name})"),
            rollback,
            "pointer switch with fsync of file and folder (target < 1 ms)".into(),
        ));
    }

    println!("deploy benchmark: {files} files of 4 KiB (+2), FNHOST_BENCH_QUICK={quick}");
    for (name, d, note) in rows {
        println!("  {name:42} {}  {note}", ms(d));
    }
}
