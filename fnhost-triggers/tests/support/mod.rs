//! Test support: a real Azurite queue service (installed with npm into the
//! test cache when missing, pinned), and app folders with queue functions.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fnhost_core::Host;
use fnhost_core::timer::LogSink;
use fnhost_triggers::queue::encode_message;
use fnhost_triggers::storage::{
    BlobService, MessageReceipt, QueueClient, QueueService, StorageAccount,
};
use fnhost_triggers::{Listeners, ListenersHandle, MessageEncoding};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The Azurite version the tests run: the newest that runs on Node.js 20
/// (3.36 and later need Node.js 21 or 22).
pub const AZURITE_VERSION: &str = "3.35.0";

/// The folder Azurite is installed in: `$FNHOST_AZURITE_DIR`, else
/// `target/fnhost-test-cache/azurite-<version>` of the workspace.
pub fn azurite_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("FNHOST_AZURITE_DIR") {
        return PathBuf::from(dir);
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
        .join("fnhost-test-cache")
        .join(format!("azurite-{AZURITE_VERSION}"))
}

fn azurite_bin(dir: &Path) -> PathBuf {
    dir.join("node_modules").join(".bin").join("azurite-queue")
}

fn azurite_blob_bin(dir: &Path) -> PathBuf {
    dir.join("node_modules").join(".bin").join("azurite-blob")
}

static INSTALL: Mutex<()> = Mutex::new(());

/// Installs Azurite with npm when it is missing (once per process; into a
/// fresh folder renamed into place, so a broken install is never used).
fn ensure_installed() -> PathBuf {
    let _guard = INSTALL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = azurite_dir();
    let bin = azurite_bin(&dir);
    if bin.exists() {
        return bin;
    }
    let parent = dir.parent().expect("the cache folder has a parent");
    std::fs::create_dir_all(parent).expect("create the test cache folder");
    let staging = parent.join(format!(
        "azurite-{AZURITE_VERSION}.installing-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).expect("create the staging folder");
    eprintln!(
        "installing azurite@{AZURITE_VERSION} with npm into {}",
        dir.display()
    );
    let status = std::process::Command::new("npm")
        .args([
            "install",
            "--no-audit",
            "--no-fund",
            "--ignore-scripts",
            "--loglevel=error",
            "--prefix",
        ])
        .arg(&staging)
        .arg(format!("azurite@{AZURITE_VERSION}"))
        .stdin(Stdio::null())
        .status()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run npm to install Azurite ({e}); scripts/test.sh installs npm and Azurite"
            )
        });
    assert!(
        status.success(),
        "npm install azurite@{AZURITE_VERSION} failed"
    );
    if std::fs::rename(&staging, &dir).is_err() {
        // Another process installed it meanwhile.
        let _ = std::fs::remove_dir_all(&staging);
    }
    assert!(
        bin.exists(),
        "{} is missing after the install",
        bin.display()
    );
    bin
}

/// A running Azurite (queue service, and blob service when asked) on
/// 127.0.0.1 and free ports, in memory; killed when dropped.
pub struct Azurite {
    child: Child,
    blob_child: Option<Child>,
    pub endpoint: String,
    pub blob_endpoint: Option<String>,
    _workdir: tempfile::TempDir,
}

/// Starts one Azurite service binary on a free port; returns it and its
/// endpoint.
async fn spawn_service(
    bin: &Path,
    service: &str,
    workdir: &Path,
    extra: &[&str],
) -> (Child, String) {
    let mut child = Command::new(bin)
        .args(extra)
        .args([
            &format!("--{service}Host"),
            "127.0.0.1",
            &format!("--{service}Port"),
            "0",
            "--inMemoryPersistence",
            "--extentMemoryLimit",
            "64",
            "--disableTelemetry",
            "--skipApiVersionCheck",
            "--silent",
        ])
        .current_dir(workdir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let marker = "successfully listens on ";
    let found = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(at) = line.find(marker) {
                return Some(line[at + marker.len()..].trim().to_owned());
            }
        }
        None
    })
    .await;
    let endpoint = match found {
        Ok(Some(e)) => e,
        Ok(None) => panic!("Azurite ({service}) exited before listening"),
        Err(_) => panic!("Azurite ({service}) did not listen within 60 s"),
    };
    assert!(
        endpoint.starts_with("http://127.0.0.1:") || endpoint.starts_with("https://127.0.0.1:"),
        "{endpoint}"
    );
    // Keep draining its output so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, endpoint)
}

impl Azurite {
    /// The queue service only.
    pub async fn start() -> Azurite {
        let workdir = tempfile::tempdir().expect("a temporary folder");
        Self::queue_in(workdir, &[]).await
    }

    /// The queue service, its files in `workdir`, with `extra` arguments.
    async fn queue_in(workdir: tempfile::TempDir, extra: &[&str]) -> Azurite {
        let bin = ensure_installed();
        let (child, endpoint) = spawn_service(&bin, "queue", workdir.path(), extra).await;
        Azurite {
            child,
            blob_child: None,
            endpoint,
            blob_endpoint: None,
            _workdir: workdir,
        }
    }

    /// The queue service over HTTPS, with a self-signed certificate for
    /// 127.0.0.1 made with `openssl`; returns it and the certificate's
    /// PEM file.
    pub async fn start_https() -> (Azurite, PathBuf) {
        let workdir = tempfile::tempdir().expect("a temporary folder");
        let cert = workdir.path().join("cert.pem");
        let key = workdir.path().join("key.pem");
        let status = std::process::Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args(["-subj", "/CN=127.0.0.1"])
            .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
            // A server certificate, not a CA (rustls refuses a CA as the
            // server's own certificate).
            .args(["-addext", "basicConstraints=critical,CA:FALSE"])
            .args(["-addext", "extendedKeyUsage=serverAuth"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("openssl (scripts/test.sh installs it with OpenSSL's headers)");
        assert!(status.success(), "openssl could not make a certificate");
        let (cert_s, key_s) = (
            cert.to_str().expect("utf-8").to_owned(),
            key.to_str().expect("utf-8").to_owned(),
        );
        let azurite = Self::queue_in(workdir, &["--cert", &cert_s, "--key", &key_s]).await;
        (azurite, cert)
    }

    /// The queue and blob services.
    pub async fn start_with_blobs() -> Azurite {
        let mut azurite = Azurite::start().await;
        let bin = azurite_blob_bin(&azurite_dir());
        let (child, endpoint) = spawn_service(&bin, "blob", azurite._workdir.path(), &[]).await;
        azurite.blob_child = Some(child);
        azurite.blob_endpoint = Some(endpoint);
        azurite
    }

    /// The account, with its blob service when started.
    pub fn account(&self) -> StorageAccount {
        let account = StorageAccount::emulator(&self.endpoint);
        match &self.blob_endpoint {
            Some(b) => account.with_emulator_blob(b),
            None => account,
        }
    }

    /// Its blob service client.
    pub fn blobs(&self) -> BlobService {
        assert!(self.blob_endpoint.is_some(), "start Azurite with blobs");
        BlobService::new(self.account()).expect("a client")
    }

    /// A connection string for its account.
    pub fn connection_string(&self) -> String {
        let mut s = format!(
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={};QueueEndpoint={}/devstoreaccount1;",
            fnhost_triggers::storage::DEV_ACCOUNT_KEY,
            self.endpoint
        );
        if let Some(b) = &self.blob_endpoint {
            s.push_str(&format!("BlobEndpoint={b}/devstoreaccount1;"));
        }
        s
    }

    pub fn service(&self) -> QueueService {
        QueueService::new(StorageAccount::emulator(&self.endpoint)).expect("a client")
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
        if let Some(mut b) = self.blob_child.take() {
            let _ = b.kill().await;
        }
    }
}

/// For tests without an async runtime of their own: a Tokio runtime and
/// an Azurite (queues and blobs) started on it.
pub fn runtime_and_azurite() -> (tokio::runtime::Runtime, Azurite) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    let azurite = rt.block_on(Azurite::start_with_blobs());
    (rt, azurite)
}

/// Writes an app: host.json and one folder per function.
pub fn write_app(dir: &Path, host_json: &str, functions: &[(&str, String)]) {
    std::fs::write(dir.join("host.json"), host_json).expect("write host.json");
    for (name, function_json) in functions {
        let f = dir.join(name);
        std::fs::create_dir_all(&f).expect("function folder");
        std::fs::write(f.join("function.json"), function_json).expect("write function.json");
        // A script, so the app is valid; native functions run in its place.
        std::fs::write(f.join("run.sh"), "#!/bin/sh\n").expect("write run.sh");
    }
}

/// Writes one function folder: function.json with `bindings` (a JSON
/// array) and a script, so the app is valid (native functions run in its
/// place).
pub fn write_function(dir: &Path, name: &str, bindings: serde_json::Value) {
    let f = dir.join(name);
    std::fs::create_dir_all(&f).expect("function folder");
    std::fs::write(
        f.join("function.json"),
        serde_json::json!({ "bindings": bindings }).to_string(),
    )
    .expect("write function.json");
    std::fs::write(f.join("run.sh"), "#!/bin/sh\n").expect("write run.sh");
}

/// A queueTrigger function.json.
pub fn queue_function(queue: &str, connection: &str) -> String {
    format!(
        r#"{{"bindings": [{{"type": "queueTrigger", "direction": "in", "name": "item", "queueName": "{queue}", "connection": "{connection}"}}]}}"#
    )
}

/// The lines a [`collecting_log`] sink kept.
#[derive(Clone, Default)]
pub struct Lines(Arc<Mutex<Vec<String>>>);

impl Lines {
    /// A copy of every line so far.
    pub fn all(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether a line is exactly `line`.
    pub fn has(&self, line: &str) -> bool {
        self.all().iter().any(|l| l == line)
    }

    /// Whether a line contains `part`.
    pub fn mention(&self, part: &str) -> bool {
        self.count(part) > 0
    }

    /// Waits until a line contains `part`, for at most `limit`.
    pub async fn wait_for(&self, limit: Duration, part: &str) {
        wait_until(limit, &format!("a line with {part:?}"), async || {
            self.mention(part)
        })
        .await;
    }

    /// How many lines contain `part`.
    pub fn count(&self, part: &str) -> usize {
        self.all().iter().filter(|l| l.contains(part)).count()
    }
}

impl std::fmt::Debug for Lines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.all()).finish()
    }
}

/// A log sink that keeps its lines (and echoes them for failing tests).
pub fn collecting_log() -> (LogSink, Lines) {
    let lines = Lines::default();
    let sink = lines.0.clone();
    let log: LogSink = Arc::new(move |line: &str| {
        eprintln!("log: {line}");
        sink.lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(line.to_owned());
    });
    (log, lines)
}

/// Starts `host`'s listeners with a log that keeps its lines.
pub fn listen(host: Arc<Host>) -> (ListenersHandle, Lines) {
    let (log, lines) = collecting_log();
    (Listeners::new(host).with_log(log).start(), lines)
}

/// Waits until `check` holds, polling every 50 ms, for at most `limit`.
pub async fn wait_until(limit: Duration, what: &str, mut check: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    loop {
        if check().await {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the queue's approximate count is `count` (`None`: the
/// queue does not exist), for at most `limit`.
pub async fn wait_for_count(limit: Duration, queue: &QueueClient, count: u64) {
    let what = format!("{count} messages in queue {}", queue.name());
    wait_until(
        limit,
        &what,
        async || matches!(queue.approximate_count().await, Ok(Some(n)) if n == count),
    )
    .await;
}

/// Puts `text` on the queue, base64-encoded as the trigger expects by
/// default.
pub async fn put_base64(queue: &QueueClient, text: &str) -> MessageReceipt {
    queue
        .put(&encode_message(text, MessageEncoding::Base64), None)
        .await
        .expect("put a message")
}
