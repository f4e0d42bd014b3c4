//! The cluster with its workers as hosts of their own: each `fnhost
//! worker` runs in a network namespace the test makes (`ip netns add`),
//! joined by a veth pair to a bridge in a hub namespace where `fnhost
//! manage` and `fnhost gateway` run. Workers reach the manager, and the
//! gateway reaches the workers' instances, over the veth addresses
//! (10.231.0.0/24, the manager on 10.231.1.1 through a route), never over
//! loopback; nothing listens in the machine's own namespace.
//!
//! ```text
//!   hub namespace: br0 10.231.0.1/24 (gateway) + 10.231.1.1/24 (manager)
//!      │ veth        │ veth        │ veth        │ veth
//!   w1 10.231.0.11  w2 .12        w3 .13        w4 .14
//!   (route to 10.231.1.0/24 via 10.231.0.1: deleting it cuts the
//!    worker's manager link and nothing else)
//! ```
//!
//! One test, four workers, clients sending GETs through the gateway:
//! three instances answer from at least two workers; a worker whose
//! manager link is cut goes stale after three missed heartbeats and its
//! instance moves (no request fails), then comes back; a worker SIGKILLed
//! under load: no GET fails, its instance is replaced within 15 s; a
//! drained worker: no request fails.
//!
//! Making namespaces needs root and `ip` (iproute2). Without them the test
//! says that it skips and why; with `CI` set it fails instead.

#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

mod cluster_support;
mod support;

use cluster_support::{
    Proc, answering, deploy, drain_one_under_load, kill_one_under_load, moved_off, request,
    serving, start_gateway, under_load, wait_for, worker_args, workers_list as cluster,
};
use support::fnhost_text as fnhost;

/// The hub's address on the bridge: the gateway listens there.
const HUB: &str = "10.231.0.1";
/// The manager's address: on the hub's bridge too, in a subnet the
/// workers reach through a route of their own.
const MANAGER: &str = "10.231.1.1";
const MANAGER_NET: &str = "10.231.1.0/24";

/// Network namespaces the test made: the hub (a bridge, the manager and
/// the gateway) and one a worker. Dropped: every process still in them is
/// killed (by pid: only this test's processes are there), the namespaces
/// and their links are removed, and the thread that entered the hub goes
/// back where it was.
struct Netns {
    prefix: String,
    made: Vec<String>,
    home_ns: File,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `ip` ({e}); install iproute2"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The effective user id, from /proc.
fn euid() -> Option<u32> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

impl Netns {
    /// The hub and `workers` worker namespaces, wired; names unique to
    /// this process and `tag`.
    fn new(tag: &str, workers: usize) -> Result<Netns, String> {
        let home_ns = File::open("/proc/thread-self/ns/net").map_err(|e| e.to_string())?;
        let mut net = Netns {
            prefix: format!("fnhost-{}-{tag}", std::process::id()),
            made: Vec::new(),
            home_ns,
        };
        let hub = net.hub();
        net.add(&hub)?;
        for args in [
            vec!["link", "set", "lo", "up"],
            vec!["link", "add", "br0", "type", "bridge"],
            vec!["addr", "add", &format!("{HUB}/24"), "dev", "br0"],
            vec!["addr", "add", &format!("{MANAGER}/24"), "dev", "br0"],
            vec!["link", "set", "br0", "up"],
        ] {
            ip(&[&["-n", hub.as_str()], args.as_slice()].concat())?;
        }
        for n in 1..=workers {
            let w = net.worker(n);
            net.add(&w)?;
            let port = format!("v{n}");
            ip(&[
                "link", "add", "name", "eth0", "netns", &w, "type", "veth", "peer", "name", &port,
                "netns", &hub,
            ])?;
            ip(&["-n", &hub, "link", "set", &port, "master", "br0", "up"])?;
            let addr = format!("{}/24", Netns::worker_ip(n));
            ip(&["-n", &w, "addr", "add", &addr, "dev", "eth0"])?;
            ip(&["-n", &w, "link", "set", "eth0", "up"])?;
            ip(&["-n", &w, "link", "set", "lo", "up"])?;
            net.link(n, true)?;
        }
        Ok(net)
    }

    fn add(&mut self, name: &str) -> Result<(), String> {
        ip(&["netns", "add", name])?;
        self.made.push(name.to_string());
        Ok(())
    }

    fn hub(&self) -> String {
        format!("{}-hub", self.prefix)
    }

    fn worker(&self, n: usize) -> String {
        format!("{}-w{n}", self.prefix)
    }

    fn worker_ip(n: usize) -> String {
        format!("10.231.0.{}", 10 + n)
    }

    /// Adds (`up`) or deletes worker `n`'s route to the manager: its link
    /// to the manager, cut without a firewall; the gateway still reaches
    /// it.
    fn link(&self, n: usize, up: bool) -> Result<(), String> {
        ip(&[
            "-n",
            &self.worker(n),
            "route",
            if up { "add" } else { "del" },
            MANAGER_NET,
            "via",
            HUB,
        ])
    }

    /// Moves the calling thread into the hub: the processes and threads
    /// it starts from now on live there too.
    fn enter_hub(&self) {
        let ns = File::open(format!("/var/run/netns/{}", self.hub())).unwrap();
        nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
    }

    /// The wrapper that runs a command in worker `n`'s namespace.
    fn exec_in(&self, n: usize) -> Vec<String> {
        ["ip", "netns", "exec"]
            .iter()
            .map(|s| s.to_string())
            .chain([self.worker(n)])
            .collect()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = nix::sched::setns(&self.home_ns, nix::sched::CloneFlags::CLONE_NEWNET);
        for name in self.made.iter().rev() {
            if let Ok(out) = Command::new("ip").args(["netns", "pids", name]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-KILL", pid]).status();
                }
            }
            if let Err(e) = ip(&["netns", "del", name]) {
                eprintln!("cluster_netns: could not remove namespace {name}: {e}");
            }
        }
    }
}

/// The namespaces, or `None` after saying why the test skips; under CI
/// (`CI` set) a failure instead.
fn namespaces_or_skip(tag: &str, workers: usize) -> Option<Netns> {
    match Netns::new(tag, workers) {
        Ok(net) => Some(net),
        Err(why) => {
            let why = match euid() {
                Some(uid) if uid != 0 => format!("not root (uid {uid}): {why}"),
                _ => why,
            };
            if std::env::var("CI").is_ok_and(|v| !v.is_empty()) {
                panic!("CI is set and this test needs network namespaces: {why}");
            }
            eprintln!(
                "SKIPPED cluster_netns: cannot make network namespaces, so nothing was tested ({why}); \
                 run as root with iproute2's `ip` (CI=1 makes this a failure)"
            );
            None
        }
    }
}

fn state_of(home: &Path, worker: &str) -> String {
    cluster(home)
        .get(worker)
        .map(|(s, _)| s.clone())
        .unwrap_or_else(|| "gone".into())
}

/// How many of `n` answers through the gateway each worker gave.
fn spread(gateway: &str, n: usize) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for _ in 0..n {
        if let Ok((200, h, _)) = request(gateway, "web.localhost", "/api/hello", &[]) {
            *seen
                .entry(h.get("x-fnhost-worker").cloned().unwrap_or_default())
                .or_default() += 1;
        }
    }
    seen
}

#[test]
fn workers_in_network_namespaces_survive_a_cut_link_a_kill_and_a_drain() {
    let Some(net) = namespaces_or_skip("cl", 4) else {
        return;
    };
    let began = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    fnhost(&home, &["apps", "create", "web"]);
    deploy(&home, &tmp.path().join("src"), "v1", None);
    let token = fnhost(&home, &["workers", "token"]).trim().to_string();

    // The manager and the gateway in the hub, on the bridge's addresses.
    net.enter_hub();
    let (_manager, maddr) = Proc::start(
        "manager",
        &home,
        &["manage", "--host", MANAGER, "--port", "0"],
        true,
    );
    assert!(maddr.starts_with(MANAGER), "{maddr}");
    let murl = format!("http://{maddr}");
    let (_gateway, gaddr) = start_gateway(&home, &murl, &token, HUB);
    // The workers, each in its namespace, its instances on its veth.
    let mut workers: BTreeMap<String, Proc> = BTreeMap::new();
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    for n in 1..=4 {
        let name = format!("w{n}");
        let cache = tmp.path().join(format!("cache-{name}"));
        let host = Netns::worker_ip(n);
        let mut args = worker_args(&murl, &token, &name, cache.to_str().unwrap());
        args.extend(["--host", host.as_str()]);
        let wrapper = net.exec_in(n);
        let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
        let (p, _) = Proc::start_with(&name, &wrapper, &home, &args, false);
        workers.insert(name.clone(), p);
        index.insert(name, n);
    }
    wait_for("four workers joined", Duration::from_secs(30), || {
        cluster(&home)
            .values()
            .filter(|(s, _)| s == "ready")
            .count()
            == 4
    });

    // Three instances: answers from at least two workers, each instance
    // reached at its worker's veth address.
    fnhost(&home, &["apps", "scale", "web", "--instances", "3"]);
    let took = wait_for("answers from 3 workers", Duration::from_secs(30), || {
        answering(&gaddr, 12).len() >= 3
    });
    let seen = spread(&gaddr, 30);
    eprintln!(
        "three instances answering through the gateway {} ms after scaling; 30 GETs: {seen:?}",
        took.as_millis()
    );
    assert!(seen.len() >= 2, "{seen:?}");
    assert_eq!(seen.values().sum::<usize>(), 30, "every GET answered");
    let (code, _, routes) = request(
        &maddr,
        "x",
        "/cluster/v1/routes",
        &[("Authorization", &format!("Bearer {token}"))],
    )
    .unwrap();
    assert_eq!(code, 200);
    let routes: serde_json::Value = serde_json::from_str(&routes).unwrap();
    let urls: Vec<(String, String)> = routes["slots"][0]["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["worker"].as_str().unwrap().to_string(),
                i["url"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(urls.len(), 3, "{routes}");
    for (w, url) in &urls {
        let at = format!("http://{}:", Netns::worker_ip(index[w]));
        assert!(url.starts_with(&at), "{w} serves at {url}, not on its veth");
    }

    // Two instances; cut the manager link of one that serves, under
    // load: stale after three missed heartbeats (1 s each), its instance
    // moves to an idle worker, no request fails.
    fnhost(&home, &["apps", "scale", "web", "--instances", "2"]);
    wait_for("two workers serving", Duration::from_secs(15), || {
        serving(&gaddr).len() == 2
    });
    std::thread::sleep(Duration::from_secs(1));
    let before = serving(&gaddr);
    let cut = before.iter().next().unwrap().clone();
    let ((stale, (to, moved)), seen) = under_load(&gaddr, || {
        net.link(index[&cut], false).unwrap();
        let stale = wait_for(&format!("{cut} stale"), Duration::from_secs(10), || {
            state_of(&home, &cut) == "stale"
        });
        (stale, moved_off(&gaddr, &before, &cut))
    });
    eprintln!(
        "netns: manager link of {cut} cut under load: {} ok, {} failed; stale {} ms after the cut, \
         its instance on {} {} ms later; answers {:?}",
        seen.ok,
        seen.failed.len(),
        stale.as_millis(),
        to.join(","),
        moved.as_millis(),
        seen.answers
    );
    assert!(seen.failed.is_empty(), "{:?}", seen.failed);
    // Stale 3 s after the last heartbeat, which came up to a heartbeat
    // interval (1 s, more on a busy machine) before the cut: not after
    // one or two missed heartbeats.
    assert!(
        stale >= Duration::from_millis(1500),
        "stale after {stale:?}: before three heartbeats were missed"
    );
    // The link back: the worker answers to the manager again, stops the
    // instance that moved away and takes work again.
    net.link(index[&cut], true).unwrap();
    let back = wait_for(
        &format!("{cut} ready again"),
        Duration::from_secs(15),
        || state_of(&home, &cut) == "ready",
    );
    workers[&cut]
        .wait_line("stopping web/production", Duration::from_secs(15))
        .unwrap_or_else(|| panic!("{cut} stops its old instance: {}", workers[&cut].stderr()));
    eprintln!(
        "netns: manager link of {cut} back: ready again in {} ms, its old instance stopped",
        back.as_millis()
    );

    // SIGKILL a worker that serves, under load (no GET fails, replaced
    // within 15 s); then drain one that serves (no request fails) and
    // its instance moves to the worker left idle.
    kill_one_under_load(&gaddr, &mut workers, "netns: ");
    let before = serving(&gaddr);
    let drained = drain_one_under_load(&gaddr, &home, &mut workers, "netns: ");
    let (to, moved) = moved_off(&gaddr, &before, &drained);
    eprintln!(
        "netns: {drained}'s instance on {} {} ms after it left",
        to.join(","),
        moved.as_millis()
    );
    eprintln!("cluster_netns: done in {} ms", began.elapsed().as_millis());
}
