//! The cluster end to end, as a user runs it: `fnhost manage`, `fnhost
//! gateway` and three `fnhost worker` processes on loopback, an app (a
//! Node.js custom handler) deployed and scaled with the CLI, clients
//! sending requests through the gateway all along. Every wait is bounded;
//! every process is killed by pid when the test ends.
//!
//! - `cluster_serves_survives_kills_drains_and_rollouts`: answers from at
//!   least two workers; a worker killed and restarted on its warm cache;
//!   a deployment rolled out under load; a worker SIGKILLed under load
//!   (no GET fails, its instance replaced within 15 s); a worker drained
//!   under load (no request fails); bad tokens and keys refused.
//! - `timers_fire_once_per_tick_across_a_leader_kill`: two managers on one
//!   PostgreSQL state, three workers, a timer every 2 seconds for a minute
//!   with the leader SIGKILLed after about 25 seconds: every tick from the
//!   first to the last exactly once, and none missing.
//! - `load_scales_instances_between_min_and_max`: `--min 1 --max 3`; 150
//!   requests in flight make two instances, 290 three, and the count
//!   falls back to 1 when the load stops; no request fails.
//! - `a_slot_swap_rolls_out_to_every_instance_under_load`: `fnhost swap`
//!   of production and staging: the swapped-in content on all three
//!   instances within 10 s, no request fails.
//!
//! - `workers_and_gateways_reach_an_https_manager`: `fnhost manage
//!   --tls-cert` with a self-signed certificate; a worker and a gateway
//!   given it with `--ca-cert` serve the app; without it a worker and
//!   `fnhost fetch` refuse the manager, saying to pass `--ca-cert`. The
//!   invocations the worker ran reach the manager's Monitor store, and
//!   the portal's Monitor page lists each, run by `worker w1`.
//! - `a_sigkilled_worker_takes_its_handlers_with_it`: a worker serving a
//!   custom handler app is SIGKILLed (it alone): its handler process is
//!   gone within 5 s.
//! - `sigterm_while_a_worker_registers_stops_it_cleanly`: a worker whose
//!   manager does not answer its registration gets SIGTERM: it exits 0
//!   saying it stopped before it joined (it was killed by the signal
//!   when it listened for signals only after joining).
//! - `a_worker_drains_and_exits_while_its_manager_does_not_answer`: the
//!   manager is stopped (SIGSTOP), then the worker gets SIGTERM: it
//!   drains and exits 0 within 15 s (21 s when its last calls to the
//!   manager each waited out their own timeout), saying it could not
//!   leave the registry.
//!
//! `cluster_netns.rs` runs the workers as hosts in network namespaces.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod cluster_support;
mod support;

use cluster_support::{
    BIN, Load, Proc, answering, deploy, deploy_slot, descendants, drain_one_under_load,
    kill_one_under_load, request, serving, start_gateway, under_load, wait_for, worker_args,
    workers_list,
};
use fnhost_testsupport::app::scratch_home;
use fnhost_testsupport::process::succeeded;
use support::fnhost_text as fnhost;

/// A timer every 2 seconds.
const EVERY_2S: Option<&str> = Some(r#""schedule": "*/2 * * * * *""#);
/// A timer on the 1st of January that runs on startup.
const ON_STARTUP: Option<&str> = Some(r#""schedule": "0 0 0 1 1 *", "runOnStartup": true"#);

/// Runs `action` (a deployment, a rollback) with clients sending requests
/// through the gateway; asserts none fails and `version` answers
/// everywhere after.
fn rolled_out(gateway: &str, what: &str, version: &str, action: impl FnOnce()) -> Duration {
    let (took, seen) = under_load(gateway, || {
        action();
        wait_for(
            &format!("{version} on every instance"),
            Duration::from_secs(20),
            || {
                let seen = answering(gateway, 12);
                seen.len() >= 2 && seen.values().all(|v| v == version)
            },
        )
    });
    eprintln!(
        "{what} under load: {} ok, {} failed, {version} everywhere {} ms after it; answers {:?}",
        seen.ok,
        seen.failed.len(),
        took.as_millis(),
        seen.answers
    );
    assert!(seen.failed.is_empty(), "{:?}", seen.failed);
    took
}

/// Starts the worker `w1` (its cache in `tmp`, `extra` arguments) and
/// scales `web` to one instance.
fn w1_runs_web(tmp: &Path, home: &Path, murl: &str, token: &str, extra: &[&str]) -> Proc {
    let cache = tmp.join("cache");
    let mut args = worker_args(murl, token, "w1", cache.to_str().unwrap());
    args.extend(extra);
    let (w1, _) = Proc::start("w1", home, &args, false);
    fnhost(home, &["apps", "scale", "web", "--instances", "1"]);
    w1
}

/// A manager and the worker `w1` running `web` (v1), all under `tmp`:
/// the manager, the worker, and the worker's `ready` line.
fn web_running_on_w1(tmp: &Path) -> (Proc, Proc, String) {
    let (home, _, token) = web_v1(tmp);
    let (manager, _, murl) = start_manager(&home);
    let w1 = w1_runs_web(tmp, &home, &murl, &token, &[]);
    let ready = w1
        .wait_line("ready web/production", Duration::from_secs(30))
        .unwrap_or_else(|| panic!("w1 runs the app: {}", w1.stderr()));
    (manager, w1, ready)
}

/// A home under `tmp` with the app `web` (v1) deployed, and a join
/// token: the home, the app's source folder, the token.
fn web_v1(tmp: &Path) -> (PathBuf, PathBuf, String) {
    let home = tmp.join("home");
    let src = tmp.join("src");
    fnhost(&home, &["apps", "create", "web"]);
    deploy(&home, &src, "v1", None);
    let token = fnhost(&home, &["workers", "token"]).trim().to_string();
    assert_eq!(token.len(), 64);
    (home, src, token)
}

/// `fnhost manage --port 0` on `home`: the process, its address and its
/// `http://` URL.
fn start_manager(home: &Path) -> (Proc, String, String) {
    let (manager, maddr) = Proc::start("manager", home, &["manage", "--port", "0"], true);
    let murl = format!("http://{maddr}");
    (manager, maddr, murl)
}

#[test]
fn cluster_serves_survives_kills_drains_and_rollouts() {
    let tmp = tempfile::tempdir().unwrap();
    let (home, src, token) = web_v1(tmp.path());
    let (manager, maddr, murl) = start_manager(&home);

    // Bad tokens are refused: a worker exits with a usage error, the API
    // answers 401.
    let (mut bad, _) = Proc::start(
        "bad-worker",
        &home,
        &worker_args(
            &murl,
            "not-a-token",
            "intruder",
            tmp.path().join("c-bad").to_str().unwrap(),
        ),
        false,
    );
    let status = bad
        .wait_exit(Duration::from_secs(15))
        .expect("a worker with a bad token exits");
    assert_eq!(status.code(), Some(2), "{}", bad.stderr());
    assert!(bad.stderr().contains("refused"), "{}", bad.stderr());
    let (code, _, _) = request(
        &maddr,
        "x",
        "/cluster/v1/routes",
        &[("Authorization", "Bearer nope")],
    )
    .unwrap();
    assert_eq!(code, 401);
    let (code, _, _) = request(&maddr, "x", "/cluster/v1/routes", &[]).unwrap();
    assert_eq!(code, 401);

    let (gateway, gaddr) = start_gateway(&home, &murl, &token, "127.0.0.1");
    let caches: Vec<String> = (1..=3)
        .map(|i| {
            tmp.path()
                .join(format!("cache-w{i}"))
                .to_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let mut workers: BTreeMap<String, Proc> = BTreeMap::new();
    for i in 1..=3 {
        let name = format!("w{i}");
        let (p, _) = Proc::start(
            &name,
            &home,
            &worker_args(&murl, &token, &name, &caches[i - 1]),
            false,
        );
        workers.insert(name, p);
    }
    fnhost(&home, &["apps", "scale", "web", "--instances", "3"]);

    // Three instances: answers from at least two workers.
    let took = wait_for("answers from 3 workers", Duration::from_secs(30), || {
        answering(&gaddr, 12).len() >= 3
    });
    eprintln!(
        "three instances ready through the gateway {} ms after scaling",
        took.as_millis()
    );
    let seen = answering(&gaddr, 20);
    assert!(seen.len() >= 2, "{seen:?}");
    assert!(seen.values().all(|v| v == "v1"));
    let list: serde_json::Value =
        serde_json::from_str(&fnhost(&home, &["workers", "list", "--json"])).unwrap();
    let cluster = list["cluster"].as_array().unwrap();
    assert_eq!(cluster.len(), 3, "{list}");
    assert!(
        cluster
            .iter()
            .all(|w| w["state"] == "ready" && w["apps"][0] == "web"),
        "{list}"
    );

    // Keys are checked at the gateway.
    let (code, h, _) = request(&gaddr, "web.localhost", "/api/secure", &[]).unwrap();
    assert_eq!(code, 401, "no key");
    assert!(
        !h.contains_key("x-fnhost-worker"),
        "refused before reaching a worker"
    );
    let keys: serde_json::Value =
        serde_json::from_str(&fnhost(&home, &["keys", "list", "--app", "web", "--json"])).unwrap();
    let master = keys["master"].as_str().unwrap().to_string();
    let (code, h, _) = request(
        &gaddr,
        "web.localhost",
        "/api/secure",
        &[("x-functions-key", &master)],
    )
    .unwrap();
    assert_eq!(code, 200);
    assert!(h.contains_key("x-fnhost-worker"));
    let (code, _, _) = request(&gaddr, "nosuchapp.localhost", "/api/hello", &[]).unwrap();
    assert_eq!(code, 404);

    // Warm restart: w3 killed and started again on its cache, under load.
    let load = Load::start(&gaddr, 4);
    std::thread::sleep(Duration::from_millis(300));
    workers.get("w3").unwrap().signal("-KILL");
    let mut old = workers.remove("w3").unwrap();
    let _ = old.wait_exit(Duration::from_secs(5));
    let started = Instant::now();
    let (w3, _) = Proc::start(
        "w3",
        &home,
        &worker_args(&murl, &token, "w3", &caches[2]),
        false,
    );
    let ready = w3
        .wait_line("ready web/production", Duration::from_secs(15))
        .expect("w3 ready again");
    let warm_ms = started.elapsed().as_millis();
    assert!(ready.contains("(warm"), "{ready}");
    eprintln!("warm restart: {ready} ({warm_ms} ms from spawn)");
    workers.insert("w3".into(), w3);
    std::thread::sleep(Duration::from_millis(500));
    let (ok, failed, _) = load.finish();
    eprintln!("warm restart under load: {ok} ok, {} failed", failed.len());
    assert!(failed.is_empty(), "{failed:?}");

    // A rollout and a rollback under load: no request fails, then the
    // version everywhere.
    rolled_out(&gaddr, "rollout", "v2", || deploy(&home, &src, "v2", None));
    rolled_out(&gaddr, "rollback", "v1", || {
        fnhost(&home, &["rollback", "web"]);
    });

    // Two instances on three workers; SIGKILL one that serves, under
    // load; then drain one that serves, under load.
    fnhost(&home, &["apps", "scale", "web", "--instances", "2"]);
    wait_for("two workers serving", Duration::from_secs(15), || {
        serving(&gaddr).len() == 2
    });
    std::thread::sleep(Duration::from_secs(1));
    kill_one_under_load(&gaddr, &mut workers, "");
    drain_one_under_load(&gaddr, &home, &mut workers, "");
    drop(gateway);
    drop(manager);
}

/// A fresh PostgreSQL database (dropped at the end).
struct Pg {
    url: String,
    admin: String,
    name: String,
}

fn psql(admin: &str, sql: &str) -> Result<(), String> {
    let out = Command::new("psql")
        .args([admin, "-v", "ON_ERROR_STOP=1", "-qAtc", sql])
        .output()
        .map_err(|e| format!("psql: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

impl Pg {
    fn new() -> Pg {
        let admin = std::env::var("FNHOST_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let name = format!("fnhost_cluster_{}", std::process::id());
        psql(&admin, &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).unwrap_or_else(|e| {
            panic!("PostgreSQL is needed at {admin} (FNHOST_TEST_POSTGRES; scripts/test.sh installs it): {e}")
        });
        psql(&admin, &format!("CREATE DATABASE {name}")).unwrap();
        let base = admin.rsplit_once('/').unwrap().0.to_string();
        Pg {
            url: format!("{base}/{name}"),
            admin,
            name,
        }
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let _ = psql(
            &self.admin,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

#[test]
fn timers_fire_once_per_tick_across_a_leader_kill() {
    let pg = Pg::new();
    let tmp = tempfile::tempdir().unwrap();
    let (home, _src, ticks) = timer_app(tmp.path(), EVERY_2S);
    let state = ["--state", pg.url.as_str()];
    let token = fnhost(&home, &["workers", "token", state[0], state[1]])
        .trim()
        .to_string();
    let manage = |name: &str| {
        Proc::start(
            name,
            &home,
            &[
                "manage",
                "--port",
                "0",
                "--lease-ttl",
                "3",
                state[0],
                state[1],
            ],
            true,
        )
    };
    let (mut leader, _) = manage("manager-a");
    leader
        .wait_line("leads", Duration::from_secs(10))
        .expect("the first manager leads");
    let (standby, saddr) = manage("manager-b");
    let surl = format!("http://{saddr}");
    let mut workers = Vec::new();
    for i in 1..=3 {
        let name = format!("w{i}");
        let cache = tmp.path().join(format!("cache-{name}"));
        let (p, _) = Proc::start(
            &name,
            &home,
            &worker_args(&surl, &token, &name, cache.to_str().unwrap()),
            false,
        );
        workers.push(p);
    }
    fnhost(
        &home,
        &["apps", "scale", "web", "--every-worker", state[0], state[1]],
    );
    wait_for("three instances", Duration::from_secs(30), || {
        workers.iter().all(|w| {
            w.wait_line("ready web/production", Duration::ZERO)
                .is_some()
        })
    });
    wait_for("a first tick", Duration::from_secs(10), || {
        std::fs::read_to_string(&ticks).is_ok_and(|t| !t.is_empty())
    });
    let first_tick = Instant::now();
    // The issue's minute: about 25 s before the kill, the rest after.
    std::thread::sleep(Duration::from_secs(25));
    leader.signal("-KILL");
    let _ = leader.wait_exit(Duration::from_secs(5));
    let killed = Instant::now();
    let took_over = standby
        .wait_line("leads", Duration::from_secs(20))
        .map(|_| killed.elapsed())
        .expect("the standby manager takes over within 20 s");
    std::thread::sleep(Duration::from_secs(62).saturating_sub(first_tick.elapsed()));
    let text = std::fs::read_to_string(&ticks).unwrap();
    let mut fired: BTreeMap<String, usize> = BTreeMap::new();
    let mut late = 0;
    let mut pids = BTreeSet::new();
    for line in text.lines() {
        let parts: Vec<&str> = line.split('|').collect();
        *fired.entry(parts[0].to_string()).or_default() += 1;
        late += usize::from(parts[1] == "true");
        pids.insert(parts[2].to_string());
    }
    let twice: Vec<_> = fired.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "ticks fired more than once: {twice:?}\n{text}"
    );
    // Every 2-second tick from the first to the last, none missing.
    let times: Vec<i64> = fired
        .keys()
        .map(|t| chrono::DateTime::parse_from_rfc3339(t).unwrap().timestamp())
        .collect();
    for pair in times.windows(2) {
        assert_eq!(
            pair[1] - pair[0],
            2,
            "a tick is missing between {pair:?}:\n{text}"
        );
    }
    assert!(
        times.last().unwrap() - times[0] >= 58,
        "the ticks cover less than a minute:\n{text}"
    );
    eprintln!(
        "timer every 2 s over {} s with a leader kill: {} ticks, each once ({} past due after the failover), \
         run by {} instance process(es); the standby led {} ms after the kill",
        times.last().unwrap() - times[0],
        fired.len(),
        late,
        pids.len(),
        took_over.as_millis()
    );
    assert!(fired.len() >= 7, "{text}");
    drop(workers);
    drop(standby);
}

/// `fnhost fetch` of the app `web` into `dest`.
fn fetch(manager: &str, token: &str, dest: &Path) -> std::process::Output {
    Command::new(BIN)
        .args([
            "fetch",
            "--manager",
            manager,
            "--token",
            token,
            "--app",
            "web",
            "--dest",
        ])
        .arg(dest)
        .output()
        .unwrap()
}

#[test]
fn fetch_and_a_gateway_inside_the_manager() {
    let (tmp, home) = scratch_home();
    let src = tmp.path().join("src");
    fnhost(&home, &["apps", "create", "web"]);
    deploy(&home, &src, "v1", None);
    let token = fnhost(&home, &["workers", "token"]).trim().to_string();
    // A fixed port, so that the manager can come back at the same URL.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let manage = || {
        let (manager, maddr) = Proc::start(
            "manager",
            &home,
            &["manage", "--port", &port, "--gateway-port", "0"],
            true,
        );
        let line = manager
            .wait_line("gateway on http://", Duration::from_secs(10))
            .unwrap();
        let gaddr = line
            .split("gateway on http://")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_string();
        (manager, maddr, gaddr)
    };
    let (mut manager, maddr, gaddr) = manage();
    let murl = format!("http://{maddr}");

    // `fnhost fetch`: the active content, as deployed, into a new folder.
    let dest = tmp.path().join("fetched");
    let out = fetch(&murl, &token, &dest);
    succeeded(&out);
    for f in [
        "host.json",
        "hello/function.json",
        "secure/function.json",
        "handler.js",
        "version.txt",
    ] {
        assert_eq!(
            std::fs::read(dest.join(f)).unwrap(),
            std::fs::read(src.join(f)).unwrap(),
            "{f}"
        );
    }
    // Not into a folder with files, not with a bad token.
    let again = fetch(&murl, &token, &dest);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));
    let bad = fetch(&murl, "wrong", &tmp.path().join("other"));
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("refused"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );

    // The gateway inside the manager routes to a worker.
    let mut w1 = w1_runs_web(tmp.path(), &home, &murl, &token, &[]);
    wait_for(
        "an answer through the manager's gateway",
        Duration::from_secs(20),
        || answering(&gaddr, 1).get("w1").is_some_and(|v| v == "v1"),
    );
    let list = fnhost(
        &home,
        &["workers", "list", "--manager", &murl, "--token", &token],
    );
    assert!(
        list.contains("Cluster workers:") && list.contains("w1\tready"),
        "{list}"
    );

    // A new function key works at once through the gateway and the
    // worker (which checks keys too) after the worker reloads them.
    let key = fnhost(
        &home,
        &[
            "keys",
            "new",
            "--app",
            "web",
            "--function",
            "secure",
            "--name",
            "k2",
        ],
    )
    .trim()
    .to_string();
    wait_for(
        "the new key accepted end to end",
        Duration::from_secs(10),
        || {
            request(
                &gaddr,
                "web.localhost",
                "/api/secure",
                &[("x-functions-key", &key)],
            )
            .is_ok_and(|(code, _, _)| code == 200)
        },
    );

    // The manager stops and comes back 4 s later (more than three
    // heartbeats): the worker keeps its instance, no restart.
    manager.signal("-TERM");
    assert!(
        manager
            .wait_exit(Duration::from_secs(15))
            .is_some_and(|s| s.success())
    );
    std::thread::sleep(Duration::from_secs(4));
    let (_manager, _, gaddr) = manage();
    wait_for(
        "w1 through the new manager's gateway",
        Duration::from_secs(10),
        || answering(&gaddr, 1).contains_key("w1"),
    );
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        !w1.stderr().contains("stopping web/production"),
        "the instance was not moved: {}",
        w1.stderr()
    );
    assert_eq!(w1.stderr().matches("ready web/production").count(), 1);

    // SIGTERM drains the worker: it finishes, leaves, exits 0.
    w1.signal("-TERM");
    let status = w1
        .wait_exit(Duration::from_secs(15))
        .expect("w1 exits after SIGTERM");
    exited_saying(&w1, status, "w1 drained and left");
    let list = fnhost(&home, &["workers", "list", "--json"]);
    assert!(!list.contains("\"w1\""), "{list}");
}

#[test]
fn sigterm_while_a_worker_registers_stops_it_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    // A "manager" that takes the connection and never answers: the
    // worker waits in its registration (up to 30 s).
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    silent.set_nonblocking(true).unwrap();
    let murl = format!("http://{}", silent.local_addr().unwrap());
    let cache = tmp.path().join("cache");
    let (mut w, _) = Proc::start(
        "w1",
        &home,
        &worker_args(&murl, "a-token", "w1", cache.to_str().unwrap()),
        false,
    );
    let start = Instant::now();
    let _registering = loop {
        match silent.accept() {
            Ok((conn, _)) => break conn,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(
                    start.elapsed() < Duration::from_secs(15),
                    "the worker never connected: {}",
                    w.stderr()
                );
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("{e}"),
        }
    };
    w.signal("-TERM");
    let status = w
        .wait_exit(Duration::from_secs(10))
        .expect("the worker exits on SIGTERM while it registers");
    exited_saying(&w, status, "w1 stopped before it joined");
}

/// Asserts that `p` exited 0 (`status`) and said `text` on stderr.
fn exited_saying(p: &Proc, status: std::process::ExitStatus, text: &str) {
    assert!(status.success(), "{status:?}\n{}", p.stderr());
    assert!(p.stderr().contains(text), "{}", p.stderr());
}

#[test]
fn a_worker_drains_and_exits_while_its_manager_does_not_answer() {
    let tmp = tempfile::tempdir().unwrap();
    let (manager, mut w1, ready) = web_running_on_w1(tmp.path());
    // One invocation, so that the instance has a record to send.
    let instance = ready
        .split(" at http://")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap()
        .to_string();
    let (code, _, _) = request(&instance, "web.localhost", "/api/hello", &[]).unwrap();
    assert_eq!(code, 200);
    // The manager stops answering (stopped, as under a stall), then the
    // worker is told to stop.
    manager.signal("-STOP");
    let start = Instant::now();
    w1.signal("-TERM");
    let status = w1.wait_exit(Duration::from_secs(15));
    manager.signal("-CONT");
    let status = status.unwrap_or_else(|| {
        panic!(
            "w1 still runs {} ms after SIGTERM: {}",
            start.elapsed().as_millis(),
            w1.stderr()
        )
    });
    eprintln!(
        "SIGTERM to a worker whose manager does not answer: exit {status:?} after {} ms",
        start.elapsed().as_millis()
    );
    exited_saying(&w1, status, "w1 drained; it could not leave the registry");
}

#[test]
fn workers_and_gateways_reach_an_https_manager() {
    let tmp = tempfile::tempdir().unwrap();
    let (home, _, token) = web_v1(tmp.path());
    support::fnhost_ok(&home, &["portal", "users", "add", "ann"], "portal-pass-1\n");
    let (cert, key) = fnhost_testsupport::tls::self_signed_server(tmp.path(), "manager");
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let (_manager, maddr) = Proc::start(
        "manager",
        &home,
        &[
            "manage",
            "--port",
            "0",
            "--tls-cert",
            cert,
            "--tls-key",
            key,
        ],
        true,
    );
    let murl = format!("https://{maddr}");

    // Not trusted without --ca-cert: the worker exits, and so does
    // `fnhost fetch`, naming the manager and the flag.
    let untrusted_cache = tmp.path().join("cache-untrusted");
    let (mut untrusted, _) = Proc::start(
        "untrusted",
        &home,
        &worker_args(&murl, &token, "w0", untrusted_cache.to_str().unwrap()),
        false,
    );
    let status = untrusted
        .wait_exit(Duration::from_secs(15))
        .expect("a worker that does not trust the manager exits");
    assert!(!status.success());
    for err in [untrusted.stderr(), {
        let out = fetch(&murl, &token, &tmp.path().join("fetched"));
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    }] {
        assert!(
            err.contains(&murl) && err.contains("not trusted") && err.contains("--ca-cert"),
            "{err}"
        );
    }
    assert!(
        !workers_list(&home).contains_key("w0"),
        "an untrusting worker never joined"
    );

    // With it: a worker and a gateway serve the app end to end.
    let (_gateway, gaddr) = Proc::start(
        "gateway",
        &home,
        &[
            "gateway",
            "--manager",
            &murl,
            "--token",
            &token,
            "--port",
            "0",
            "--ca-cert",
            cert,
        ],
        true,
    );
    let w1 = w1_runs_web(tmp.path(), &home, &murl, &token, &["--ca-cert", cert]);
    let took = wait_for(
        "an answer from w1 through the gateway",
        Duration::from_secs(30),
        || answering(&gaddr, 1).get("w1").is_some_and(|v| v == "v1"),
    );
    eprintln!(
        "https manager: w1 answers through the gateway {} ms after scaling",
        took.as_millis()
    );
    assert!(
        w1.stderr().contains(&format!("joined {murl}")),
        "{}",
        w1.stderr()
    );

    // Monitor: the invocations w1 ran are in the manager's store for the
    // slot (what the portal's Monitor page lists), with w1's name.
    // The request that found w1 answering is recorded first.
    wait_for(
        "the first invocation in the manager's Monitor store",
        Duration::from_secs(10),
        || !monitor_records(&home).is_empty(),
    );
    let before = monitor_records(&home).len();
    let n = 25;
    for _ in 0..n {
        let (code, h, _) = request(&gaddr, "web.localhost", "/api/hello", &[]).unwrap();
        assert_eq!(
            (code, h.get("x-fnhost-worker").map(String::as_str)),
            (200, Some("w1"))
        );
    }
    let took = wait_for(
        "the invocations in the manager's Monitor store",
        Duration::from_secs(10),
        || monitor_records(&home).len() >= before + n,
    );
    let records = monitor_records(&home);
    let ours: Vec<_> = records[before..].to_vec();
    assert_eq!(ours.len(), n, "{records:?}");
    for r in &ours {
        assert_eq!(r["function"], "hello", "{r}");
        assert_eq!(r["worker"], "w1", "{r}");
        assert_eq!(r["success"], true, "{r}");
        assert_eq!(r["status"], 200, "{r}");
    }
    let ids: BTreeSet<&str> = ours
        .iter()
        .map(|r| r["invocation_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), n, "one record per invocation");
    eprintln!(
        "https manager: {n} invocations through the gateway in the manager's Monitor store {} ms after the last",
        took.as_millis()
    );
    // The portal's Monitor page lists them, run by w1.
    let jar = tmp.path().join("cookies");
    let jar = jar.to_str().unwrap();
    let curl = |args: &[&str]| {
        let mut all = vec!["--cacert", cert, "-b", jar, "-c", jar];
        all.extend(args);
        support::curl_status(tmp.path(), &all)
    };
    let login = format!("{murl}/portal/login");
    let (status, _) = curl(&["--data-raw", "user=ann&password=portal-pass-1", &login]);
    assert_eq!(status, 303);
    let (status, page) = curl(&[&format!("{murl}/portal/apps/web/production/monitor")]);
    let page = String::from_utf8(page).unwrap();
    assert_eq!(status, 200, "{page}");
    let rows = page
        .split("<tr><td>")
        .filter(|r| r.contains("<td>hello</td><td>yes</td><td>200</td>") && r.contains("worker w1"))
        .count();
    assert_eq!(rows, before + n, "{page}");
}

/// Whether process `pid` is gone (or a zombie nobody reaped yet: dead).
fn gone(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            stat.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

#[test]
fn a_sigkilled_worker_takes_its_handlers_with_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (_manager, mut w1, _) = web_running_on_w1(tmp.path());
    // The custom handler (node) runs below the worker.
    let handlers = descendants(w1.pid());
    assert!(
        handlers
            .iter()
            .any(|p| std::fs::read_to_string(format!("/proc/{p}/cmdline"))
                .is_ok_and(|c| c.contains("handler.js"))),
        "a handler process below the worker: {handlers:?}"
    );
    // SIGKILL to the worker alone (not its process group nor children).
    let killed = Command::new("kill")
        .args(["-KILL", &w1.pid().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert!(w1.wait_exit(Duration::from_secs(5)).is_some());
    let took = wait_for(
        "the handler processes gone with their worker",
        Duration::from_secs(5),
        || handlers.iter().all(|&p| gone(p)),
    );
    eprintln!(
        "SIGKILL of a worker: its {} handler process(es) gone {} ms later",
        handlers.len(),
        took.as_millis()
    );
}

/// The records in the manager's Monitor store of web/production, oldest
/// first.
fn monitor_records(home: &Path) -> Vec<serde_json::Value> {
    let dir = home.join("apps/web/slots/production/monitor");
    ["invocations.1.jsonl", "invocations.jsonl"]
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(dir.join(f))
                .unwrap_or_default()
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The app with a `Tick` timer (`timer`) writing its runs to a file
/// (the app setting TICKS_FILE), deployed in a new home under `tmp`:
/// the home, the source folder and the runs' file.
fn timer_app(tmp: &Path, timer: Option<&str>) -> (PathBuf, PathBuf, PathBuf) {
    let home = tmp.join("home");
    let src = tmp.join("src");
    let ticks = tmp.join("ticks.txt");
    fnhost(&home, &["apps", "create", "web"]);
    let setting = format!("TICKS_FILE={}", ticks.display());
    fnhost(&home, &["settings", "set", "web", &setting]);
    deploy(&home, &src, "v1", timer);
    (home, src, ticks)
}

#[test]
fn run_on_startup_runs_once_per_deployment_cluster_wide() {
    let tmp = tempfile::tempdir().unwrap();
    let (home, src, ticks) = timer_app(tmp.path(), ON_STARTUP);
    let token = fnhost(&home, &["workers", "token"]).trim().to_string();
    let (_manager, _, murl) = start_manager(&home);
    let mut workers = Vec::new();
    for name in ["w1", "w2"] {
        let cache = tmp.path().join(format!("cache-{name}"));
        workers.push(
            Proc::start(
                name,
                &home,
                &worker_args(&murl, &token, name, cache.to_str().unwrap()),
                false,
            )
            .0,
        );
    }
    fnhost(&home, &["apps", "scale", "web", "--instances", "2"]);
    let lines = || {
        std::fs::read_to_string(&ticks)
            .unwrap_or_default()
            .lines()
            .count()
    };
    wait_for("the startup run", Duration::from_secs(20), || lines() >= 1);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(lines(), 1, "once across two instances");
    deploy(&home, &src, "v2", ON_STARTUP);
    wait_for(
        "the new deployment's startup run",
        Duration::from_secs(20),
        || lines() >= 2,
    );
    std::thread::sleep(Duration::from_secs(2));
    let text = std::fs::read_to_string(&ticks).unwrap();
    assert_eq!(text.lines().count(), 2, "once per deployment:\n{text}");
    assert!(
        text.lines().all(|l| l.contains("|false|")),
        "not past due:\n{text}"
    );
}

/// A manager, a gateway and three workers on loopback, the app `web`
/// (v1) deployed to production; every process killed when dropped.
struct Three {
    home: PathBuf,
    gaddr: String,
    // Dropped before the folder: the workers, the gateway, the manager.
    _workers: Vec<Proc>,
    _gateway: Proc,
    _manager: Proc,
    tmp: tempfile::TempDir,
}

fn three_workers() -> Three {
    let (tmp, home) = scratch_home();
    fnhost(&home, &["apps", "create", "web"]);
    deploy(&home, &tmp.path().join("src"), "v1", None);
    let token = fnhost(&home, &["workers", "token"]).trim().to_string();
    // Scaled by load, an app keeps its instances 5 s after its load falls
    // (30 s by default).
    let (manager, maddr) = Proc::start(
        "manager",
        &home,
        &["manage", "--port", "0", "--scale-down-window", "5"],
        true,
    );
    let murl = format!("http://{maddr}");
    let (gateway, gaddr) = start_gateway(&home, &murl, &token, "127.0.0.1");
    let workers = (1..=3)
        .map(|i| {
            let name = format!("w{i}");
            let cache = tmp.path().join(format!("cache-{name}"));
            let args = worker_args(&murl, &token, &name, cache.to_str().unwrap());
            Proc::start(&name, &home, &args, false).0
        })
        .collect();
    Three {
        home,
        gaddr,
        _workers: workers,
        _gateway: gateway,
        _manager: manager,
        tmp,
    }
}

/// How many workers the manager placed `web`'s production slot on.
fn placed(home: &Path) -> usize {
    workers_list(home)
        .values()
        .filter(|(_, apps)| apps.iter().any(|a| a == "web"))
        .count()
}

#[test]
fn load_scales_instances_between_min_and_max() {
    let c = three_workers();
    fnhost(
        &c.home,
        &["apps", "scale", "web", "--min", "1", "--max", "3"],
    );
    wait_for("one instance answering", Duration::from_secs(30), || {
        answering(&c.gaddr, 4).len() == 1
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(placed(&c.home), 1, "idle: the minimum");

    // Requests in flight (each sleeps 2.5 s in the function; the target
    // is 100 a instance): 150 make two instances, 290 three (the
    // maximum); two light clients run all along.
    let light = Load::start(&c.gaddr, 2);
    let start = Instant::now();
    let mut timeline = vec![(0u128, 1usize)];
    let track = |timeline: &mut Vec<(u128, usize)>| {
        let n = placed(&c.home);
        if timeline.last().is_some_and(|&(_, last)| last != n) {
            timeline.push((start.elapsed().as_millis(), n));
        }
        n
    };
    let first = Load::start_on(&c.gaddr, "/api/hello?sleep=2500", 150);
    wait_for("two instances placed", Duration::from_secs(30), || {
        track(&mut timeline) == 2
    });
    // It stays at two while the load does not grow.
    let steady = Instant::now();
    while steady.elapsed() < Duration::from_millis(2500) {
        assert_eq!(track(&mut timeline), 2, "150 in flight: {timeline:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let more = Load::start_on(&c.gaddr, "/api/hello?sleep=2500", 140);
    let grown = start.elapsed();
    wait_for("three instances placed", Duration::from_secs(30), || {
        track(&mut timeline) == 3
    });
    wait_for(
        "answers from three workers",
        Duration::from_secs(20),
        || answering(&c.gaddr, 12).len() == 3,
    );
    let spread = start.elapsed();
    // One more round of the slow requests, sent with three instances up.
    std::thread::sleep(Duration::from_secs(3));
    // The load stops (the two light clients go on): back to the minimum
    // once the requests in flight end (within 2.5 s) and the scale-down
    // window (5 s) has passed.
    more.stop();
    first.stop();
    let stopped = Instant::now();
    let ending = std::thread::spawn(move || (more.finish(), first.finish()));
    let mut down = vec![(0u128, 3usize)];
    wait_for("back to one instance", Duration::from_secs(30), || {
        let n = placed(&c.home);
        if down.last().is_some_and(|&(_, last)| last != n) {
            down.push((stopped.elapsed().as_millis(), n));
        }
        n == 1
    });
    let back = stopped.elapsed();
    let ((more_ok, more_failed, mut seen), (first_ok, first_failed, first_seen)) =
        ending.join().unwrap();
    for (k, n) in first_seen {
        *seen.entry(k).or_default() += n;
    }
    std::thread::sleep(Duration::from_secs(2));
    let (light_ok, light_failed, _) = light.finish();
    assert_eq!(placed(&c.home), 1, "stays at the minimum");
    eprintln!(
        "--min 1 --max 3, 150 then 290 requests in flight (140 more at {} ms): instances (ms, count) \
         {timeline:?}, answers from 3 workers at {} ms; load stopped: (ms, count) {down:?}, back to 1 \
         {} ms after the clients stopped; {} ok, {} failed (slow, answered by {seen:?}), {light_ok} ok, {} failed (light)",
        grown.as_millis(),
        spread.as_millis(),
        back.as_millis(),
        first_ok + more_ok,
        first_failed.len() + more_failed.len(),
        light_failed.len()
    );
    assert!(first_failed.is_empty(), "{first_failed:?}");
    assert!(more_failed.is_empty(), "{more_failed:?}");
    assert!(light_failed.is_empty(), "{light_failed:?}");
    let workers: BTreeSet<&str> = seen.keys().filter_map(|k| k.split('|').next()).collect();
    assert_eq!(workers.len(), 3, "the load spread: {seen:?}");
}

#[test]
fn a_slot_swap_rolls_out_to_every_instance_under_load() {
    let c = three_workers();
    deploy_slot(
        &c.home,
        &c.tmp.path().join("src-staging"),
        "staging",
        "v2",
        None,
    );
    fnhost(&c.home, &["apps", "scale", "web", "--instances", "3"]);
    fnhost(
        &c.home,
        &[
            "apps",
            "scale",
            "web",
            "--slot",
            "staging",
            "--instances",
            "1",
        ],
    );
    let staging = || {
        request(&c.gaddr, "web-staging.localhost", "/api/hello", &[])
            .ok()
            .filter(|(code, _, _)| *code == 200)
            .map(|(_, _, body)| body)
    };
    wait_for(
        "three production instances and staging",
        Duration::from_secs(30),
        || {
            let seen = answering(&c.gaddr, 12);
            seen.len() == 3
                && seen.values().all(|v| v == "v1")
                && staging().as_deref() == Some("v2")
        },
    );
    let took = rolled_out(&c.gaddr, "slot swap", "v2", || {
        fnhost(&c.home, &["swap", "web", "production", "staging"]);
    });
    assert!(took < Duration::from_secs(10), "{took:?}");
    let seen = answering(&c.gaddr, 30);
    assert_eq!(seen.len(), 3, "every instance: {seen:?}");
    assert!(seen.values().all(|v| v == "v2"), "{seen:?}");
    wait_for("staging serving v1", Duration::from_secs(10), || {
        staging().as_deref() == Some("v1")
    });
}
