//! The invocation records of a slot: a bounded, crash-safe store in the
//! home that `fnhost serve --app` writes (one record per invocation
//! attempt) and the portal's Monitor page reads.
//!
//! The store is two JSON-lines files in the slot's folder,
//! `monitor/invocations.jsonl` and the previous one,
//! `monitor/invocations.1.jsonl`: when the current file holds
//! [`InvocationLog::PER_FILE`] records it replaces the previous one and a
//! new current file starts, so at most twice that many records are on
//! disk. A record is one line (time, function, invocation id, success,
//! HTTP status, duration; never a request or response body). Records are
//! written by a background thread through a buffered writer, flushed
//! when no record is waiting, never synced: a crash loses at most the
//! last few and can leave a torn last line, which readers skip and the
//! next writer ends before appending.
//!
//! ```no_run
//! # fn main() -> fnhost_deploy::Result<()> {
//! use std::sync::Arc;
//! use fnhost_deploy::Site;
//!
//! let site = Site::open("/srv/fnhost")?;
//! let log = site.invocation_log("shop", "production")?;
//! // First added, outermost: it times the whole attempt.
//! let host = fnhost_core::Host::builder().middleware(Arc::new(log.recorder()?));
//! # let _ = host;
//! for r in log.recent(100) {
//!     println!("{} {} {}", r.time, r.function, r.success);
//! }
//! # Ok(())
//! # }
//! ```

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::time::Instant;

use fnhost_core::invoke::{BindingData, BoxFuture, FunctionInfo, Middleware, Next};
use fnhost_core::{Invocation, InvocationResult, InvokeError};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The current file's name.
const CURRENT: &str = "invocations.jsonl";
/// The previous file's name.
const PREVIOUS: &str = "invocations.1.jsonl";
/// Records waiting for the writer thread; beyond, new ones are dropped
/// (and counted) rather than slowing invocations down.
const QUEUE: usize = 8192;

/// One invocation attempt, as Monitor lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvocationRecord {
    /// When it ended (RFC 3339, UTC, microseconds).
    pub time: String,
    /// The function's name.
    pub function: String,
    /// The invocation id.
    pub invocation_id: String,
    /// Whether it succeeded (an HTTP function's invalid response is a
    /// failure).
    pub success: bool,
    /// The HTTP status it answered with, for HTTP functions (500 when it
    /// failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// How long it ran, in milliseconds.
    pub duration_ms: u64,
    /// The cluster worker that ran it (set by the manager that received
    /// the record); none for `fnhost serve`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
}

/// A slot's invocation records in the home (see the module docs). Cheap
/// to clone.
#[derive(Debug, Clone)]
pub struct InvocationLog {
    dir: PathBuf,
    per_file: usize,
}

impl InvocationLog {
    /// Records per file: the store keeps between this many and twice this
    /// many of the latest records.
    pub const PER_FILE: usize = 1000;

    /// The store in `dir` (created when the first record is written).
    pub fn new(dir: impl Into<PathBuf>) -> InvocationLog {
        InvocationLog {
            dir: dir.into(),
            per_file: Self::PER_FILE,
        }
    }

    /// Another number of records per file (at least 1).
    pub fn with_per_file(mut self, per_file: usize) -> InvocationLog {
        self.per_file = per_file.max(1);
        self
    }

    /// The folder of the store.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The latest records, at most `limit`, newest first. Lines that do
    /// not parse (a torn last line after a crash) are skipped; a missing
    /// store is empty.
    pub fn recent(&self, limit: usize) -> Vec<InvocationRecord> {
        let mut all = read_records(&self.dir.join(PREVIOUS));
        all.extend(read_records(&self.dir.join(CURRENT)));
        all.reverse();
        all.truncate(limit);
        all
    }

    /// Success and error counts by function over `records`.
    pub fn counts<'a>(
        records: impl IntoIterator<Item = &'a InvocationRecord>,
    ) -> BTreeMap<String, (u64, u64)> {
        let mut counts: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for r in records {
            let c = counts.entry(r.function.clone()).or_default();
            if r.success {
                c.0 += 1;
            } else {
                c.1 += 1;
            }
        }
        counts
    }

    /// Starts a writer thread and returns the [`Middleware`] that sends
    /// it one record per invocation attempt. Fails when the folder cannot
    /// be created or the current file opened; a write failure later is
    /// logged once (tracing) and the records are dropped.
    pub fn recorder(&self) -> Result<Recorder> {
        let writer = Writer::open(self.clone())?;
        let (recorder, rx) = Recorder::queued();
        std::thread::Builder::new()
            .name("fnhost-invocation-log".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| io_error(&self.dir, e))?;
        Ok(recorder)
    }

    /// Appends records now, from this thread (what the recorder's thread
    /// does); flushed, not synced.
    pub fn append(&self, records: &[InvocationRecord]) -> Result<()> {
        let mut w = Writer::open(self.clone())?;
        for r in records {
            w.write(r).map_err(|e| io_error(&self.dir, e))?;
        }
        w.out.flush().map_err(|e| io_error(&self.dir, e))
    }
}

fn io_error(dir: &Path, e: std::io::Error) -> Error {
    Error::io("cannot write the invocation records", dir, e)
}

/// The records of one file, oldest first; unparsable lines skipped.
fn read_records(path: &Path) -> Vec<InvocationRecord> {
    let Ok(file) = File::open(path) else {
        return Vec::new();
    };
    BufReader::new(file)
        .split(b'\n')
        .map_while(|l| l.ok())
        .filter_map(|l| serde_json::from_slice(&l).ok())
        .collect()
}

/// The writing end: the current file, its record count.
struct Writer {
    log: InvocationLog,
    out: BufWriter<File>,
    lines: usize,
}

impl Writer {
    fn open(log: InvocationLog) -> Result<Writer> {
        std::fs::create_dir_all(&log.dir).map_err(|e| io_error(&log.dir, e))?;
        let (out, lines) = open_current(&log.dir).map_err(|e| io_error(&log.dir, e))?;
        Ok(Writer {
            log,
            out: BufWriter::new(out),
            lines,
        })
    }

    fn write(&mut self, r: &InvocationRecord) -> std::io::Result<()> {
        if self.lines >= self.log.per_file {
            self.out.flush()?;
            let dir = &self.log.dir;
            std::fs::rename(dir.join(CURRENT), dir.join(PREVIOUS))?;
            let (out, lines) = open_current(dir)?;
            self.out = BufWriter::new(out);
            self.lines = lines;
        }
        let mut line = serde_json::to_vec(r).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.out.write_all(&line)?;
        self.lines += 1;
        Ok(())
    }

    /// Writes what arrives until every sender is gone. Idle, it waits for
    /// a record; once one came, it writes what is queued, flushes, and
    /// looks again every [`DRAIN_EVERY`] until the queue stays empty. So a
    /// busy host's invocations find nobody waiting on the queue and wake no
    /// thread (a wake-up costs microseconds on idle cores; a queued record
    /// tens of nanoseconds).
    fn run(mut self, rx: Receiver<InvocationRecord>) {
        use std::sync::mpsc::TryRecvError;
        let mut failed = false;
        let mut report = |e: std::io::Error, dir: &Path| {
            if !std::mem::replace(&mut failed, true) {
                tracing::warn!(dir = %dir.display(), "cannot write invocation records: {e}");
            }
        };
        while let Ok(first) = rx.recv() {
            let mut next = Some(first);
            loop {
                while let Some(r) = next {
                    if let Err(e) = self.write(&r) {
                        report(e, &self.log.dir);
                    }
                    next = rx.try_recv().ok();
                }
                if let Err(e) = self.out.flush() {
                    report(e, &self.log.dir);
                }
                std::thread::sleep(DRAIN_EVERY);
                match rx.try_recv() {
                    Ok(r) => next = Some(r),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return,
                }
            }
        }
    }
}

/// How often a busy writer thread takes what was queued (the queue holds
/// 8,192: 4 million records a second before one is dropped).
const DRAIN_EVERY: std::time::Duration = std::time::Duration::from_millis(2);

/// Opens the current file for appending; counts its lines, and ends a
/// torn last line so that the next record starts on a line of its own.
fn open_current(dir: &Path) -> std::io::Result<(File, usize)> {
    let path = dir.join(CURRENT);
    let mut file = OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(&path)?;
    let mut lines = 0;
    let mut last = b'\n';
    let mut buf = [0u8; 64 * 1024];
    file.seek(SeekFrom::Start(0))?;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        lines += buf[..n].iter().filter(|&&b| b == b'\n').count();
        last = buf[n - 1];
    }
    if last != b'\n' {
        file.write_all(b"\n")?;
        lines += 1;
    }
    Ok((file, lines))
}

/// The [`Middleware`] of [`InvocationLog::recorder`]: times each attempt
/// and queues its record for the writer thread (never waits for it). The
/// thread ends when the last clone of the recorder is dropped, after
/// writing what was queued.
#[derive(Debug, Clone)]
pub struct Recorder {
    tx: SyncSender<InvocationRecord>,
    dropped: Arc<AtomicU64>,
}

impl Recorder {
    /// A recorder whose records go to the returned queue (8,192 waiting
    /// at most; beyond, new ones are dropped and counted) instead of a
    /// store: for whoever sends them elsewhere (a cluster worker sends
    /// them to its manager). The queue ends when the last clone of the
    /// recorder is dropped.
    pub fn queued() -> (Recorder, Receiver<InvocationRecord>) {
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        (Recorder { tx, dropped }, rx)
    }

    /// Records dropped because the writer thread was behind by more than
    /// 8,192 records.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn send(&self, r: InvocationRecord) {
        match self.tx.try_send(r) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The HTTP status of a result without copying the response: what the
/// front answers (`None` for functions without an HTTP trigger).
fn status_of(function: &FunctionInfo, result: &InvocationResult) -> (bool, Option<u16>) {
    if function.function.http.is_none() {
        return (true, None);
    }
    let value = match &function.http_output {
        Some(name) => result.output(name),
        None => result.return_value.as_ref(),
    };
    match value {
        None => (true, Some(204)),
        Some(BindingData::HttpResponse(r)) => (true, Some(r.status)),
        Some(_) => match function.http_response(result) {
            Some(Ok(r)) => (true, Some(r.status)),
            Some(Err(_)) => (false, Some(500)),
            None => (true, Some(204)),
        },
    }
}

impl Middleware for Recorder {
    fn call<'a>(
        &'a self,
        function: &'a FunctionInfo,
        invocation: Invocation,
        next: Next<'a>,
    ) -> BoxFuture<'a, std::result::Result<InvocationResult, InvokeError>> {
        Box::pin(async move {
            let id = invocation.id.to_string();
            let started = Instant::now();
            let outcome = next.run(invocation).await;
            let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            let (success, status) = match &outcome {
                Ok(r) => status_of(function, r),
                Err(_) => (false, function.function.http.as_ref().map(|_| 500)),
            };
            self.send(InvocationRecord {
                time: crate::deployment::now(),
                function: function.function.name.clone(),
                invocation_id: id,
                success,
                status,
                duration_ms,
                worker: None,
            });
            outcome
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn record(i: usize, success: bool) -> InvocationRecord {
        InvocationRecord {
            time: format!("2026-01-01T00:00:{:02}.000000Z", i % 60),
            function: if i.is_multiple_of(2) { "A" } else { "B" }.into(),
            invocation_id: format!("id-{i}"),
            success,
            status: Some(if success { 200 } else { 500 }),
            duration_ms: i as u64,
            worker: None,
        }
    }

    #[test]
    fn the_store_stays_bounded_and_lists_the_newest_first() {
        let tmp = tempfile::tempdir().unwrap();
        let log = InvocationLog::new(tmp.path().join("m")).with_per_file(10);
        for i in 0..35 {
            log.append(&[record(i, !i.is_multiple_of(3))]).unwrap();
        }
        let all = log.recent(usize::MAX);
        // 35 records: 30..34 in the current file, 20..29 in the previous.
        assert_eq!(all.len(), 15);
        assert_eq!(all[0].invocation_id, "id-34");
        assert_eq!(all[14].invocation_id, "id-20");
        assert_eq!(log.recent(3).len(), 3);
        let files = std::fs::read_dir(log.dir()).unwrap().count();
        assert_eq!(files, 2, "never more than two files");
        let counts = InvocationLog::counts(&all);
        let (a_ok, a_err) = counts["A"];
        assert_eq!(a_ok + a_err, 8);
        assert_eq!(a_err, 2, "A failed at 24 and 30: {all:?}");
    }

    #[test]
    fn a_torn_last_line_is_skipped_and_ended_before_the_next_record() {
        let tmp = tempfile::tempdir().unwrap();
        let log = InvocationLog::new(tmp.path());
        log.append(&[record(1, true), record(2, false)]).unwrap();
        // A crash in the middle of a record.
        let mut f = OpenOptions::new()
            .append(true)
            .open(tmp.path().join(CURRENT))
            .unwrap();
        f.write_all(br#"{"time":"2026-01-01T00:00:03Z","func"#)
            .unwrap();
        drop(f);
        let seen = log.recent(10);
        assert_eq!(
            seen.iter()
                .map(|r| r.invocation_id.as_str())
                .collect::<Vec<_>>(),
            ["id-2", "id-1"]
        );
        // The recorder's thread appends after it, on a line of its own.
        let rec = log.recorder().unwrap();
        rec.send(record(4, true));
        drop(rec);
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        while log.recent(10).len() < 3 {
            assert!(Instant::now() < deadline, "the record was not written");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(log.recent(10)[0].invocation_id, "id-4");
    }
}
