//! The conformance suite for [`Store`] implementations (feature
//! `testkit`), in the manner of object_store's integration tests: run it
//! in a test on your own store.
//!
//! ```ignore
//! #[test]
//! fn my_store_conforms() {
//!     let store = MyStore::connect_to_a_fresh_bucket();
//!     fnhost_deploy::testkit::assert_store(&store);
//! }
//! ```
//!
//! The suites for sources, builds and executors are in
//! [`fnhost_core::testkit`], re-exported here. None is a stable part of
//! the API: a new release may check more.

use std::io::{self, Read};

pub use fnhost_core::testkit::*;

use crate::store::{Digest, MODE_FILE, Manifest, ManifestEntry, ManifestKey, Store};

/// Runs the store suite on `store`, which must be empty; returns every
/// failed check. It leaves the store empty when it passes.
///
/// It checks the contract [`Store`] states: a blob put is readable whole
/// and listed, putting it again is a no-op that says so, data that does
/// not match its digest is refused with `InvalidData` and leaves no blob;
/// `put_hashed` and `adopt` store what they are given; an empty and a
/// large blob round-trip; `local_path`, when given, holds the content;
/// `sync` succeeds; removing a blob or a manifest works and removing a
/// missing one is fine; a manifest round-trips, is replaced as a whole,
/// is listed, and a missing one is `NotFound`; concurrent puts of one blob
/// all succeed; and a reader never sees half of a manifest being replaced.
pub fn check_store(store: &dyn Store) -> Result<(), ConformanceFailures> {
    let mut failures = Vec::new();
    let mut fail = |line: String| failures.push(line);
    let name = store.describe();
    if name.trim().is_empty() {
        fail("describe() is empty".to_owned());
    }
    match (store.blobs(), store.manifests()) {
        (Ok(b), Ok(m)) if b.is_empty() && m.is_empty() => {}
        (Ok(_), Ok(_)) => {
            return Err(ConformanceFailures(vec![format!(
                "[{name}] the store is not empty: the suite needs an empty store"
            )]));
        }
        (Err(e), _) | (_, Err(e)) => {
            return Err(ConformanceFailures(vec![format!(
                "[{name}] cannot list an empty store: {e}"
            )]));
        }
    }

    blobs(store, &mut fail);
    manifests(store, &mut fail);
    concurrency(store, &mut fail);

    match (store.blobs(), store.manifests()) {
        (Ok(b), Ok(m)) if b.is_empty() && m.is_empty() => {}
        (Ok(b), Ok(m)) => fail(format!(
            "after removing everything, {} blob(s) and {} manifest(s) are still listed",
            b.len(),
            m.len()
        )),
        (Err(e), _) | (_, Err(e)) => fail(format!("listing at the end failed: {e}")),
    }
    if let Err(e) = store.clean_temporary() {
        fail(format!("clean_temporary() failed: {e}"));
    }
    ConformanceFailures::of(&name, failures)
}

/// Runs [`check_store`] and panics with every failure.
pub fn assert_store(store: &dyn Store) {
    if let Err(failures) = check_store(store) {
        panic!("{failures}");
    }
}

fn read_blob(store: &dyn Store, digest: &Digest) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    store.open(digest)?.read_to_end(&mut out)?;
    Ok(out)
}

/// Checks that `digest` is stored with exactly `content`.
fn check_content(
    store: &dyn Store,
    what: &str,
    digest: &Digest,
    content: &[u8],
    fail: &mut dyn FnMut(String),
) {
    match store.contains(digest) {
        Ok(true) => {}
        Ok(false) => fail(format!("{what}: contains() is false after the put")),
        Err(e) => fail(format!("{what}: contains() failed: {e}")),
    }
    match read_blob(store, digest) {
        Ok(read) if read == content => {}
        Ok(read) => fail(format!(
            "{what}: open() read {} bytes that differ from the {} put",
            read.len(),
            content.len()
        )),
        Err(e) => fail(format!("{what}: open() failed: {e}")),
    }
    if let Some(path) = store.local_path(digest) {
        match std::fs::read(&path) {
            Ok(read) if read == content => {}
            Ok(_) => fail(format!(
                "{what}: local_path() {} holds other content",
                path.display()
            )),
            Err(e) => fail(format!(
                "{what}: local_path() {} cannot be read: {e}",
                path.display()
            )),
        }
    }
}

fn blobs(store: &dyn Store, fail: &mut dyn FnMut(String)) {
    let small = b"hello from the store suite\n".to_vec();
    let empty = Vec::new();
    // Larger than any one read buffer, and not a multiple of a power of two.
    let large: Vec<u8> = (0..3 * 1024 * 1024 + 17)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut stored = Vec::new();
    for (what, content) in [
        ("a small blob", &small),
        ("the empty blob", &empty),
        ("a 3 MiB blob", &large),
    ] {
        let digest = Digest::of(content);
        match store.put(&digest, &mut content.as_slice()) {
            Ok(true) => {}
            Ok(false) => fail(format!("{what}: put() of a new blob returned false")),
            Err(e) => {
                fail(format!("{what}: put() failed: {e}"));
                continue;
            }
        }
        check_content(store, what, &digest, content, fail);
        match store.put(&digest, &mut content.as_slice()) {
            Ok(false) => {}
            Ok(true) => fail(format!("{what}: a second put() returned true (new)")),
            Err(e) => fail(format!("{what}: a second put() failed: {e}")),
        }
        stored.push(digest);
    }

    // Data that does not match its digest.
    let claimed = Digest::of(b"the content the caller claims");
    match store.put(&claimed, &mut &b"other content"[..]) {
        Err(e) if e.kind() == io::ErrorKind::InvalidData => {}
        Err(e) => fail(format!(
            "put() of data that does not match its digest failed with {:?}, not InvalidData: {e}",
            e.kind()
        )),
        Ok(_) => fail("put() accepted data that does not match its digest".to_owned()),
    }
    match store.contains(&claimed) {
        Ok(false) => {}
        Ok(true) => fail("a refused put() left a blob behind".to_owned()),
        Err(e) => fail(format!("contains() failed: {e}")),
    }

    let hashed = b"put_hashed content".to_vec();
    let digest = Digest::of(&hashed);
    match store.put_hashed(&digest, &hashed) {
        Ok(true) => check_content(store, "put_hashed()", &digest, &hashed, fail),
        Ok(false) => fail("put_hashed() of a new blob returned false".to_owned()),
        Err(e) => fail(format!("put_hashed() failed: {e}")),
    }
    match store.put_hashed(&digest, &hashed) {
        Ok(false) => {}
        Ok(true) => fail("a second put_hashed() returned true (new)".to_owned()),
        Err(e) => fail(format!("a second put_hashed() failed: {e}")),
    }
    stored.push(digest);

    match tempfile::tempdir() {
        Err(e) => fail(format!("no temporary folder for adopt(): {e}")),
        Ok(dir) => {
            let adopted = b"adopted file\n".to_vec();
            let digest = Digest::of(&adopted);
            let path = dir.path().join("adopted");
            match std::fs::write(&path, &adopted).map(|()| store.adopt(&digest, &path)) {
                Ok(Ok(true)) => check_content(store, "adopt()", &digest, &adopted, fail),
                Ok(Ok(false)) => fail("adopt() of a new blob returned false".to_owned()),
                Ok(Err(e)) => fail(format!("adopt() failed: {e}")),
                Err(e) => fail(format!("cannot write the file to adopt: {e}")),
            }
            match store.adopt(&digest, &path) {
                Ok(false) => {}
                Ok(true) => fail("a second adopt() returned true (new)".to_owned()),
                Err(e) => fail(format!("a second adopt() failed: {e}")),
            }
            stored.push(digest);
        }
    }

    if let Err(e) = store.sync(&stored) {
        fail(format!("sync() of stored blobs failed: {e}"));
    }
    if let Err(e) = store.sync(&[]) {
        fail(format!("sync() of no blob failed: {e}"));
    }
    match store.blobs() {
        Ok(listed) => {
            for digest in &stored {
                if !listed.contains(digest) {
                    fail(format!("blobs() does not list {digest}"));
                }
            }
            if listed.len() != stored.len() {
                fail(format!(
                    "blobs() lists {} blob(s), {} were stored",
                    listed.len(),
                    stored.len()
                ));
            }
        }
        Err(e) => fail(format!("blobs() failed: {e}")),
    }
    let missing = Digest::of(b"never stored");
    match store.open(&missing) {
        Err(_) => {}
        Ok(_) => fail("open() of a missing blob succeeded".to_owned()),
    }
    for digest in &stored {
        if let Err(e) = store.remove(digest) {
            fail(format!("remove() failed: {e}"));
        }
        match store.contains(digest) {
            Ok(false) => {}
            Ok(true) => fail(format!("{digest} is still there after remove()")),
            Err(e) => fail(format!("contains() after remove() failed: {e}")),
        }
    }
    if let Err(e) = store.remove(&missing) {
        fail(format!("remove() of a missing blob failed: {e}"));
    }
}

fn manifest_of(files: &[(&str, &[u8])]) -> Manifest {
    Manifest::new(
        files
            .iter()
            .map(|(path, content)| ManifestEntry {
                path: (*path).to_owned(),
                hash: Digest::of(content),
                size: content.len() as u64,
                mode: MODE_FILE | 0o644,
            })
            .collect(),
    )
}

fn manifests(store: &dyn Store, fail: &mut dyn FnMut(String)) {
    let key = ManifestKey::new("testkit-app", "deployment-1");
    let other = ManifestKey::new("testkit-app", "deployment-2");
    let missing = ManifestKey::new("testkit-app", "never-stored");
    let first = manifest_of(&[("host.json", b"{}"), ("Hello/function.json", b"{}")]);
    let second = manifest_of(&[("host.json", b"{\"version\": \"2.0\"}")]);

    match store.manifest(&missing) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => fail(format!(
            "manifest() of a missing key failed with {:?}, not NotFound: {e}",
            e.kind()
        )),
        Ok(_) => fail("manifest() of a missing key succeeded".to_owned()),
    }
    match store.contains_manifest(&missing) {
        Ok(false) => {}
        Ok(true) => fail("contains_manifest() of a missing key is true".to_owned()),
        Err(e) => fail(format!("contains_manifest() failed: {e}")),
    }
    for (k, m) in [(&key, &first), (&other, &second)] {
        if let Err(e) = store.put_manifest(k, m) {
            fail(format!("put_manifest({k}) failed: {e}"));
        }
    }
    match store.manifest(&key) {
        Ok(m) if m == first => {}
        Ok(_) => fail("manifest() read back another manifest".to_owned()),
        Err(e) => fail(format!("manifest() failed: {e}")),
    }
    match store.contains_manifest(&key) {
        Ok(true) => {}
        Ok(false) => fail("contains_manifest() of a stored key is false".to_owned()),
        Err(e) => fail(format!("contains_manifest() failed: {e}")),
    }
    match store.manifests() {
        Ok(mut keys) => {
            keys.sort();
            if keys != [key.clone(), other.clone()] {
                fail(format!("manifests() listed {keys:?}"));
            }
        }
        Err(e) => fail(format!("manifests() failed: {e}")),
    }
    if let Err(e) = store.put_manifest(&key, &second) {
        fail(format!("put_manifest() over an existing key failed: {e}"));
    }
    match store.manifest(&key) {
        Ok(m) if m == second => {}
        Ok(_) => fail("a replaced manifest still reads as the old one".to_owned()),
        Err(e) => fail(format!("manifest() of a replaced key failed: {e}")),
    }
    for k in [&key, &other, &missing] {
        if let Err(e) = store.remove_manifest(k) {
            fail(format!("remove_manifest({k}) failed: {e}"));
        }
    }
    match store.contains_manifest(&key) {
        Ok(false) => {}
        Ok(true) => fail("a removed manifest is still there".to_owned()),
        Err(e) => fail(format!("contains_manifest() failed: {e}")),
    }
}

fn concurrency(store: &dyn Store, fail: &mut dyn FnMut(String)) {
    let content: Vec<u8> = b"written by eight threads at once ".repeat(4096);
    let digest = Digest::of(&content);
    let outcomes: Vec<io::Result<bool>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| scope.spawn(|| store.put(&digest, &mut content.as_slice())))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(io::Error::other("the put panicked")))
            })
            .collect()
    });
    for outcome in &outcomes {
        if let Err(e) = outcome {
            fail(format!(
                "one of eight concurrent put()s of one blob failed: {e}"
            ));
        }
    }
    check_content(
        store,
        "a blob put by eight threads",
        &digest,
        &content,
        fail,
    );
    if let Err(e) = store.remove(&digest) {
        fail(format!("remove() failed: {e}"));
    }

    // A reader must see one manifest or the other, never a mix or a torn
    // write, while a writer replaces it.
    let key = ManifestKey::new("testkit-app", "replaced");
    let small = manifest_of(&[("host.json", b"{}")]);
    let names: Vec<String> = (0..500).map(|i| format!("f/{i:04}.txt")).collect();
    let files: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"x"[..])).collect();
    let large = manifest_of(&files);
    if let Err(e) = store.put_manifest(&key, &small) {
        fail(format!("put_manifest() failed: {e}"));
        return;
    }
    let torn = std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            for i in 0..50 {
                let m = if i % 2 == 0 { &large } else { &small };
                store.put_manifest(&key, m)?;
            }
            Ok::<_, io::Error>(())
        });
        let mut torn = Vec::new();
        while !writer.is_finished() {
            match store.manifest(&key) {
                Ok(m) if m == small || m == large => {}
                Ok(m) => torn.push(format!(
                    "a reader saw a manifest of {} file(s) that was never written",
                    m.files.len()
                )),
                Err(e) => torn.push(format!(
                    "a reader failed while the manifest was replaced: {e}"
                )),
            }
        }
        if let Ok(Err(e)) = writer.join() {
            torn.push(format!("put_manifest() failed while replacing: {e}"));
        }
        torn
    });
    if let Some(first) = torn.first() {
        fail(format!("put_manifest() is not atomic: {first}"));
    }
    if let Err(e) = store.remove_manifest(&key) {
        fail(format!("remove_manifest() failed: {e}"));
    }
}

/// A management endpoint served on a thread with a runtime of its own,
/// for synchronous tests and benchmarks (feature `server`). Dropping it
/// stops the endpoint ([`Server::serve`](crate::manage::Server::serve)'s
/// shutdown) and waits for the thread.
#[cfg(feature = "server")]
#[derive(Debug)]
pub struct ManageThread {
    addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[cfg(feature = "server")]
impl ManageThread {
    /// Binds `manage` to a free port of 127.0.0.1 and serves it; fails when
    /// the runtime cannot start or the port cannot be bound.
    pub fn start(manage: crate::manage::Manage) -> io::Result<ManageThread> {
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build();
            let rt = match rt {
                Ok(rt) => rt,
                Err(e) => return drop(tx.send(Err(e))),
            };
            rt.block_on(async move {
                let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
                match manage.bind(addr).await {
                    Ok(server) => {
                        let _ = tx.send(Ok(server.local_addr()));
                        server.serve(async { drop(stopped.await) }).await;
                    }
                    Err(e) => drop(tx.send(Err(e))),
                }
            });
        });
        let addr = rx
            .recv()
            .map_err(|_| io::Error::other("the endpoint's thread stopped"))??;
        Ok(ManageThread {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }
}

#[cfg(feature = "server")]
impl Drop for ManageThread {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
