//! What the cluster tests share (`cluster.rs`, workers as processes on
//! loopback; `cluster_netns.rs`, workers as hosts in network namespaces):
//! the test app, `fnhost` processes killed when dropped, plain HTTP/1.1
//! requests and clients sending them through a gateway.

#![allow(dead_code, unreachable_pub)] // each test file uses some of them

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use crate::support::{fnhost_text as fnhost, write};

pub const BIN: &str = env!("CARGO_BIN_EXE_fnhost");

pub const HANDLER: &str = r#"
const http = require('http');
const fs = require('fs');
const version = fs.readFileSync('version.txt', 'utf8').trim();
http.createServer((req, res) => {
  if (req.method === 'POST' && req.url.startsWith('/Tick')) {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      const data = JSON.parse(body || '{}');
      const t = (data.Data && data.Data.timer) || {};
      const next = t.ScheduleStatus && t.ScheduleStatus.Next;
      fs.appendFileSync(process.env.TICKS_FILE, `${next}|${t.IsPastDue}|${process.pid}\n`);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ Outputs: {}, Logs: [], ReturnValue: null }));
    });
    return;
  }
  const url = new URL(req.url, 'http://localhost');
  const ms = Number(url.searchParams.get('sleep') || 0);
  setTimeout(() => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(version);
  }, ms);
}).listen(Number(process.env.FUNCTIONS_CUSTOMHANDLER_PORT), '127.0.0.1');
"#;

/// The app: `hello` (anonymous), `secure` (function key), and `Tick` (a
/// timer with `timer`'s settings) when given.
pub fn write_app(dir: &Path, version: &str, timer: Option<&str>) {
    write(
        &dir.join("host.json"),
        r#"{"version": "2.0", "customHandler": {"description": {"defaultExecutablePath": "node", "defaultWorkerPath": "handler.js"}, "enableForwardingHttpRequest": true}}"#,
    );
    let http = |auth: &str| {
        format!(
            r#"{{"bindings": [{{"type": "httpTrigger", "direction": "in", "name": "req", "authLevel": "{auth}", "methods": ["get", "post"]}}, {{"type": "http", "direction": "out", "name": "res"}}]}}"#
        )
    };
    write(&dir.join("hello/function.json"), &http("anonymous"));
    write(&dir.join("secure/function.json"), &http("function"));
    if let Some(settings) = timer {
        write(
            &dir.join("Tick/function.json"),
            &format!(
                r#"{{"bindings": [{{"type": "timerTrigger", "direction": "in", "name": "timer", {settings}}}]}}"#
            ),
        );
    }
    write(&dir.join("handler.js"), HANDLER);
    write(&dir.join("version.txt"), version);
}

pub fn deploy(home: &Path, src: &Path, version: &str, timer: Option<&str>) {
    deploy_slot(home, src, "production", version, timer);
}

/// Deploys `version` of the app to `slot` (created when new).
pub fn deploy_slot(home: &Path, src: &Path, slot: &str, version: &str, timer: Option<&str>) {
    write_app(src, version, timer);
    fnhost(
        home,
        &[
            "deploy",
            "web",
            "--dir",
            src.to_str().unwrap(),
            "--slot",
            slot,
            "--message",
            version,
        ],
    );
}

/// A child process, killed (by pid) when dropped; its stderr lines are
/// collected.
pub struct Proc {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    name: String,
}

impl Proc {
    /// Starts `fnhost args`; with `addr`, waits for its first stdout line
    /// (`listening on http://ADDR`, or https) and returns the address.
    pub fn start(name: &str, home: &Path, args: &[&str], addr: bool) -> (Proc, String) {
        Proc::start_with(name, &[], home, args, addr)
    }

    /// As [`Proc::start`], run by `wrapper` (a command that runs the rest
    /// of its arguments in place, such as `ip netns exec NS`).
    pub fn start_with(
        name: &str,
        wrapper: &[&str],
        home: &Path,
        args: &[&str],
        addr: bool,
    ) -> (Proc, String) {
        let mut cmd = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        let mut child = cmd
            .arg("--home")
            .arg(home)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let l2 = lines.clone();
        let tag = name.to_string();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if std::env::var("FNHOST_TEST_VERBOSE").is_ok() {
                    eprintln!("[{tag}] {line}");
                }
                l2.lock().unwrap().push(line);
            }
        });
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut first = String::new();
            let _ = r.read_line(&mut first);
            let _ = tx.send(first);
            let mut rest = Vec::new();
            let _ = r.read_to_end(&mut rest);
        });
        let mut p = Proc {
            child,
            lines,
            name: name.into(),
        };
        let mut at = String::new();
        if addr {
            let first = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
            at = first
                .trim()
                .strip_prefix("listening on ")
                .and_then(|u| {
                    u.strip_prefix("http://")
                        .or_else(|| u.strip_prefix("https://"))
                })
                .unwrap_or_else(|| {
                    let _ = p.child.kill();
                    panic!("{name} did not start: {first:?}\n{}", p.stderr())
                })
                .to_string();
        }
        (p, at)
    }

    pub fn stderr(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Waits for a stderr line containing `text`.
    pub fn wait_line(&self, text: &str, within: Duration) -> Option<String> {
        let until = Instant::now() + within;
        loop {
            if let Some(l) = self.lines.lock().unwrap().iter().find(|l| l.contains(text)) {
                return Some(l.clone());
            }
            if Instant::now() >= until {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `sig` (`-TERM`, `-KILL`) to the process; `-KILL` goes to
    /// the processes it started too, also those their children started
    /// (the parent-death signal reaches direct children only): the host
    /// is gone.
    pub fn signal(&self, sig: &str) {
        let below = if sig == "-KILL" {
            descendants(self.child.id())
        } else {
            Vec::new()
        };
        let _ = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status();
        kill_all(&below);
    }

    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let until = Instant::now() + within;
        while Instant::now() < until {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

/// The processes below `pid` (its children, theirs...), from /proc.
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut children: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(p) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        // "PID (COMM) STATE PPID ...": COMM may hold spaces and parentheses.
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|s| s.parse::<u32>().ok());
        if let Some(ppid) = ppid {
            children.entry(ppid).or_default().push(p);
        }
    }
    let mut out = Vec::new();
    let mut next = vec![pid];
    while let Some(p) = next.pop() {
        for &c in children.get(&p).map_or(&[][..], Vec::as_slice) {
            out.push(c);
            next.push(c);
        }
    }
    out
}

fn kill_all(pids: &[u32]) {
    for p in pids {
        let _ = Command::new("kill")
            .args(["-KILL", &p.to_string()])
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let below = descendants(self.child.id());
        let _ = self.child.kill();
        let _ = self.child.wait();
        kill_all(&below);
        if std::thread::panicking() {
            eprintln!("--- {} stderr ---\n{}", self.name, self.stderr());
        }
    }
}

/// One HTTP/1.1 request on a new connection: status, headers, body.
pub fn request(
    addr: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<(u16, BTreeMap<String, String>, String), String> {
    let mut s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no response: {text:?}"))?;
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line: {head:?}"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok((status, headers, body.to_string()))
}

/// Clients sending GETs through the gateway until stopped: counts, and
/// the failures with what they got.
pub struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failed: Arc<Mutex<Vec<String>>>,
    seen: Arc<Mutex<BTreeMap<String, usize>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    pub fn start(gateway: &str, clients: usize) -> Load {
        Load::start_on(gateway, "/api/hello?sleep=20", clients)
    }

    /// `clients` threads sending GET `path` to the app `web`.
    pub fn start_on(gateway: &str, path: &str, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::new(Mutex::new(BTreeMap::new()));
        let threads = (0..clients)
            .map(|_| {
                let (stop, ok, failed, seen) =
                    (stop.clone(), ok.clone(), failed.clone(), seen.clone());
                let gw = gateway.to_string();
                let path = path.to_string();
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        match request(&gw, "web.localhost", &path, &[]) {
                            Ok((200, h, body)) => {
                                ok.fetch_add(1, Ordering::Relaxed);
                                let key = format!(
                                    "{}|{}",
                                    h.get("x-fnhost-worker").cloned().unwrap_or_default(),
                                    body
                                );
                                *seen.lock().unwrap().entry(key).or_default() += 1;
                            }
                            Ok((status, _, body)) => failed
                                .lock()
                                .unwrap()
                                .push(format!("{status}: {}", body.trim())),
                            Err(e) => failed.lock().unwrap().push(e),
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            ok,
            failed,
            seen,
            threads,
        }
    }

    /// Tells the clients to send no more requests (those in flight go
    /// on).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Stops; (ok, failures, answers by "worker|version").
    pub fn finish(self) -> (usize, Vec<String>, BTreeMap<String, usize>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        let failed = self.failed.lock().unwrap().clone();
        let seen = self.seen.lock().unwrap().clone();
        (self.ok.load(Ordering::Relaxed), failed, seen)
    }
}

/// Waits until `check` passes; how long it took.
pub fn wait_for(what: &str, within: Duration, mut check: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while start.elapsed() < within {
        if check() {
            return start.elapsed();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out after {within:?} waiting for {what}");
}

/// The workers answering through the gateway in `n` requests.
pub fn answering(gateway: &str, n: usize) -> BTreeMap<String, String> {
    let mut seen = BTreeMap::new();
    for _ in 0..n {
        if let Ok((200, h, body)) = request(gateway, "web.localhost", "/api/hello", &[]) {
            seen.insert(h.get("x-fnhost-worker").cloned().unwrap_or_default(), body);
        }
    }
    seen
}

pub fn worker_args<'a>(
    manager: &'a str,
    token: &'a str,
    name: &'a str,
    cache: &'a str,
) -> Vec<&'a str> {
    vec![
        "worker",
        "--manager",
        manager,
        "--token",
        token,
        "--name",
        name,
        "--cache",
        cache,
        "--drain-delay-ms",
        "1000",
    ]
}

/// `fnhost gateway` of the manager at `manager`, listening on `host` (any
/// free port): the process and its address.
pub fn start_gateway(home: &Path, manager: &str, token: &str, host: &str) -> (Proc, String) {
    Proc::start(
        "gateway",
        home,
        &[
            "gateway",
            "--manager",
            manager,
            "--token",
            token,
            "--host",
            host,
            "--port",
            "0",
        ],
        true,
    )
}

/// What clients sending GETs through a gateway saw: answered, the
/// failures with what they got, the answers by "worker|version".
pub struct Seen {
    pub ok: usize,
    pub failed: Vec<String>,
    pub answers: BTreeMap<String, usize>,
}

/// Runs `during` while four clients send GETs through the gateway (from
/// 500 ms before it to 500 ms after it): its result and what they saw.
pub fn under_load<T>(gateway: &str, during: impl FnOnce() -> T) -> (T, Seen) {
    let load = Load::start(gateway, 4);
    std::thread::sleep(Duration::from_millis(500));
    let out = during();
    std::thread::sleep(Duration::from_millis(500));
    let (ok, failed, answers) = load.finish();
    (
        out,
        Seen {
            ok,
            failed,
            answers,
        },
    )
}

/// The workers that answer 20 GETs through the gateway.
pub fn serving(gateway: &str) -> BTreeSet<String> {
    answering(gateway, 20).into_keys().collect()
}

/// Waits until as many workers as in `before` serve, `gone` not among
/// them: the new ones and how long it took.
pub fn moved_off(gateway: &str, before: &BTreeSet<String>, gone: &str) -> (Vec<String>, Duration) {
    let mut now = BTreeSet::new();
    let took = wait_for(
        &format!("{gone}'s instance on another worker"),
        Duration::from_secs(15),
        || {
            now = serving(gateway);
            now.len() == before.len() && !now.contains(gone)
        },
    );
    (now.difference(before).cloned().collect(), took)
}

/// SIGKILLs a worker that serves (the first by name) under load: no GET
/// fails, its instance is replaced on a worker that had none within 15
/// s. Prints the counts; the worker leaves `workers`.
pub fn kill_one_under_load(gateway: &str, workers: &mut BTreeMap<String, Proc>, label: &str) {
    let before = serving(gateway);
    let victim = before.iter().next().unwrap().clone();
    let ((to, took), seen) = under_load(gateway, || {
        workers[&victim].signal("-KILL");
        moved_off(gateway, &before, &victim)
    });
    eprintln!(
        "{label}SIGKILL of {victim} under load: {} ok, {} failed; its instance replaced on {} in {} ms; answers {:?}",
        seen.ok,
        seen.failed.len(),
        to.join(","),
        took.as_millis(),
        seen.answers
    );
    assert!(seen.failed.is_empty(), "{:?}", seen.failed);
    drop(workers.remove(&victim));
}

/// Drains a worker that serves (the first by name) with `fnhost workers
/// drain`, under load: no request fails, it exits 0 and leaves the
/// registry. Prints the counts; returns its name (still in `workers`).
pub fn drain_one_under_load(
    gateway: &str,
    home: &Path,
    workers: &mut BTreeMap<String, Proc>,
    label: &str,
) -> String {
    let drained = serving(gateway).into_iter().next().unwrap();
    let (status, seen) = under_load(gateway, || {
        fnhost(home, &["workers", "drain", &drained]);
        workers
            .get_mut(&drained)
            .unwrap()
            .wait_exit(Duration::from_secs(20))
            .expect("the drained worker exits")
    });
    eprintln!(
        "{label}drain of {drained} under load: {} ok, {} failed; answers {:?}",
        seen.ok,
        seen.failed.len(),
        seen.answers
    );
    assert!(status.success(), "{}", workers[&drained].stderr());
    assert!(seen.failed.is_empty(), "{:?}", seen.failed);
    let left = workers_list(home);
    assert!(
        !left.contains_key(&drained),
        "a drained worker leaves the registry: {left:?}"
    );
    drained
}

/// `fnhost workers list --json`'s cluster: name -> (state, apps).
pub fn workers_list(home: &Path) -> BTreeMap<String, (String, Vec<String>)> {
    let list: serde_json::Value =
        serde_json::from_str(&fnhost(home, &["workers", "list", "--json"])).unwrap();
    list["cluster"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            let apps = w["apps"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap().to_string())
                .collect();
            (
                w["name"].as_str().unwrap().to_string(),
                (w["state"].as_str().unwrap().to_string(), apps),
            )
        })
        .collect()
}
