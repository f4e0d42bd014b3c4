//! Deployment records: what was deployed, by whom, when, how it went, and
//! its log; and the retention rule that decides which records to keep.
//!
//! A record is one JSON file, always replaced atomically (written to a
//! temporary file, flushed, renamed): it is never truncated or empty.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

/// How far a deployment got. The numbers are Kudu's status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Received, waiting for its turn (0).
    Pending,
    /// Reading and checking the content (1).
    Building,
    /// Storing and activating (2).
    Deploying,
    /// Failed; the previous deployment stayed active (3).
    Failed,
    /// Stored and activated (4).
    Success,
}

impl Status {
    /// Kudu's numeric code: Pending 0, Building 1, Deploying 2, Failed 3,
    /// Success 4.
    pub fn code(self) -> u8 {
        match self {
            Status::Pending => 0,
            Status::Building => 1,
            Status::Deploying => 2,
            Status::Failed => 3,
            Status::Success => 4,
        }
    }

    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Building => "building",
            Status::Deploying => "deploying",
            Status::Failed => "failed",
            Status::Success => "success",
        }
    }

    /// Whether the deployment has ended (failed or succeeded).
    pub fn is_final(self) -> bool {
        matches!(self, Status::Failed | Status::Success)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The level of a log entry. The numbers are Kudu's log types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Information (0).
    Info,
    /// A warning (1).
    Warning,
    /// An error (2).
    Error,
}

impl Level {
    /// Kudu's log type: message 0, warning 1, error 2.
    pub fn code(self) -> u8 {
        match self {
            Level::Info => 0,
            Level::Warning => 1,
            Level::Error => 2,
        }
    }

    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Warning => "warning",
            Level::Error => "error",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line of a deployment's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// When (RFC 3339, UTC).
    pub time: String,
    /// How serious.
    pub level: Level,
    /// What happened.
    pub message: String,
}

/// Who or what started a deployment.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Deployer(pub String);

impl Deployer {
    /// A zip pushed by a person or a tool.
    pub fn zip() -> Deployer {
        Deployer("ZipDeploy".into())
    }
    /// A local folder.
    pub fn folder() -> Deployer {
        Deployer("FolderDeploy".into())
    }
}

impl fmt::Display for Deployer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A deployment record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Deployment {
    /// Its id: unique in the home, sortable by the time it was received.
    pub id: String,
    /// The app.
    pub app: String,
    /// The slot it was deployed to (after a swap it may be active in
    /// another slot).
    pub slot: String,
    /// How far it got.
    pub status: Status,
    /// Whether it is active in any slot (not stored; filled when read).
    #[serde(default)]
    pub active: bool,
    /// Who made the content (a commit's author, or the person deploying).
    pub author: String,
    /// What it is about (a commit message, or the deploy message).
    pub message: String,
    /// What started it: `ZipDeploy`, `FolderDeploy`, `GitHub`, ...
    pub deployer: String,
    /// The source's id: a commit id, or the content hash of the tree.
    pub source_id: String,
    /// Where the content came from (a zip, a folder).
    pub source: String,
    /// When it was received.
    pub received_time: String,
    /// When work on it started (after waiting for the slot).
    pub start_time: Option<String>,
    /// When it ended.
    pub end_time: Option<String>,
    /// Files in the tree.
    pub files: u64,
    /// Bytes in the tree.
    pub bytes: u64,
    /// Files whose content was new to the store.
    pub new_files: u64,
    /// The log.
    pub log: Vec<LogEntry>,
}

impl Deployment {
    /// A new record, status Pending, received now.
    pub fn new(id: String, app: &str, slot: &str) -> Deployment {
        Deployment {
            id,
            app: app.to_string(),
            slot: slot.to_string(),
            status: Status::Pending,
            active: false,
            author: String::new(),
            message: String::new(),
            deployer: String::new(),
            source_id: String::new(),
            source: String::new(),
            received_time: now(),
            start_time: None,
            end_time: None,
            files: 0,
            bytes: 0,
            new_files: 0,
            log: Vec::new(),
        }
    }

    /// Adds a log entry stamped now.
    pub fn log(&mut self, level: Level, message: impl Into<String>) {
        self.log.push(LogEntry {
            time: now(),
            level,
            message: message.into(),
        });
    }

    /// The first error message in the log, if any.
    pub fn first_error(&self) -> Option<&str> {
        self.log
            .iter()
            .find(|e| e.level == Level::Error)
            .map(|e| e.message.as_str())
    }
}

impl Deployment {
    /// The record as reports show it (`fnhost deployments --json`): its
    /// fields with Kudu's `status_code` and whether it is `complete`, and
    /// with `with_log` its log in Kudu's shape.
    pub fn report(&self, with_log: bool) -> Report<'_> {
        Report {
            id: &self.id,
            app: &self.app,
            slot: &self.slot,
            status: self.status,
            status_code: self.status.code(),
            active: self.active,
            complete: self.status.is_final(),
            author: &self.author,
            message: &self.message,
            deployer: &self.deployer,
            source_id: &self.source_id,
            source: &self.source,
            received_time: &self.received_time,
            start_time: self.start_time.as_deref(),
            end_time: self.end_time.as_deref(),
            files: self.files,
            bytes: self.bytes,
            new_files: self.new_files,
            log: with_log.then(|| self.log.iter().map(ReportLine::from).collect()),
        }
    }
}

/// A deployment record as reports show it; see [`Deployment::report`].
/// The field names are the record's (Kudu's), in this order.
#[derive(Debug, Clone, Serialize)]
pub struct Report<'a> {
    /// The id.
    pub id: &'a str,
    /// The app.
    pub app: &'a str,
    /// The slot it was deployed to.
    pub slot: &'a str,
    /// How far it got.
    pub status: Status,
    /// Kudu's number for `status`.
    pub status_code: u8,
    /// Whether it is active in any slot.
    pub active: bool,
    /// Whether it has ended (failed or succeeded).
    pub complete: bool,
    /// Who made the content.
    pub author: &'a str,
    /// What it is about.
    pub message: &'a str,
    /// What started it.
    pub deployer: &'a str,
    /// The source's id.
    pub source_id: &'a str,
    /// Where the content came from.
    pub source: &'a str,
    /// When it was received.
    pub received_time: &'a str,
    /// When work on it started.
    pub start_time: Option<&'a str>,
    /// When it ended.
    pub end_time: Option<&'a str>,
    /// Files in the tree.
    pub files: u64,
    /// Bytes in the tree.
    pub bytes: u64,
    /// Files new to the store.
    pub new_files: u64,
    /// The log, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<Vec<ReportLine<'a>>>,
}

/// A log entry in Kudu's shape: `log_time`, `level`, `type` (Kudu's
/// number for the level), `message`.
#[derive(Debug, Clone, Serialize)]
pub struct ReportLine<'a> {
    /// When.
    pub log_time: &'a str,
    /// How serious.
    pub level: Level,
    /// Kudu's number for `level`.
    #[serde(rename = "type")]
    pub kind: u8,
    /// What happened.
    pub message: &'a str,
}

impl<'a> From<&'a LogEntry> for ReportLine<'a> {
    fn from(e: &'a LogEntry) -> Self {
        ReportLine {
            log_time: &e.time,
            level: e.level,
            kind: e.level.code(),
            message: &e.message,
        }
    }
}

/// The time now, RFC 3339 UTC with microseconds.
pub fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Parses an RFC 3339 time.
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// A new deployment id: the UTC time to the microsecond and 6 random hex
/// digits, so ids sort by the time they were made.
pub fn new_id() -> String {
    let t = Utc::now();
    format!(
        "{}{}",
        t.format("%Y%m%dT%H%M%S%6fZ-"),
        crate::fsutil::random_hex(3)
    )
}

/// Checks a deployment id given by a user (it names a file).
pub fn check_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && !id.starts_with('.')
}

/// How many successful deployments a slot keeps by default.
pub const DEFAULT_RETENTION: usize = 10;

/// Which records to remove: per slot, everything older than the
/// `keep_successful`-th newest successful deployment, except what `active`
/// holds. `records` may be in any order; unfinished records are never
/// chosen.
pub fn to_prune<'a>(
    records: &'a [Deployment],
    keep_successful: usize,
    active: &HashSet<String>,
) -> Vec<&'a Deployment> {
    let mut by_slot: std::collections::BTreeMap<&str, Vec<&Deployment>> = Default::default();
    for r in records {
        by_slot.entry(r.slot.as_str()).or_default().push(r);
    }
    let mut out = Vec::new();
    for (_, mut list) in by_slot {
        list.sort_by(|a, b| b.id.cmp(&a.id));
        let mut successes = 0;
        for r in list {
            let keep =
                successes < keep_successful || active.contains(&r.id) || !r.status.is_final();
            if r.status == Status::Success && successes < keep_successful {
                successes += 1;
            }
            if !keep {
                out.push(r);
            }
        }
    }
    out
}

impl FromStr for Status {
    type Err = String;

    fn from_str(s: &str) -> Result<Status, String> {
        match s {
            "pending" | "0" => Ok(Status::Pending),
            "building" | "1" => Ok(Status::Building),
            "deploying" | "2" => Ok(Status::Deploying),
            "failed" | "3" => Ok(Status::Failed),
            "success" | "4" => Ok(Status::Success),
            _ => Err(format!("unknown status {s:?}")),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn rec(id: &str, slot: &str, status: Status) -> Deployment {
        let mut d = Deployment::new(id.into(), "a", slot);
        d.status = status;
        d
    }

    #[test]
    fn retention_keeps_last_n_successes_and_active() {
        let mut rs = Vec::new();
        for i in 0..15 {
            let st = if i % 3 == 0 {
                Status::Failed
            } else {
                Status::Success
            };
            rs.push(rec(&format!("{i:02}"), "production", st));
        }
        rs.push(rec("99", "staging", Status::Success));
        let active: HashSet<String> = ["01".to_string()].into();
        let pruned: Vec<&str> = to_prune(&rs, 3, &active)
            .iter()
            .map(|d| d.id.as_str())
            .collect();
        // Newest successes: 14, 13, 11; everything older goes except 01.
        assert_eq!(
            pruned,
            ["10", "09", "08", "07", "06", "05", "04", "03", "02", "00"]
        );
    }

    #[test]
    fn ids_sort_by_time_and_are_valid() {
        let a = new_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = new_id();
        assert!(a < b);
        assert!(check_id(&a));
        assert!(!check_id("../x"));
        assert!(!check_id(""));
    }

    #[test]
    fn status_codes_are_kudus() {
        assert_eq!(Status::Pending.code(), 0);
        assert_eq!(Status::Success.code(), 4);
        assert_eq!("failed".parse::<Status>(), Ok(Status::Failed));
    }
}
