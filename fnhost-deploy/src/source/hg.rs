//! Mercurial sources through the `hg` command.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use chrono::DateTime;

use super::{CacheLocks, SourceError, SourceProvider, SourceSnapshot, SourceSpec, other_error};

const PROVIDER: &str = "hg";

/// Follows a branch (or any revision) of a Mercurial repository through the
/// `hg` command.
///
/// `SourceSpec::location` is a repository path or URL, cloned once
/// (`hg clone --noupdate`) into a cache under the folder given to
/// [`HgSource::new`] and pulled incrementally after that.
/// `SourceSpec::reference` is a branch (default `default`), a bookmark, a
/// tag or a changeset id. `fetch` exports the revision with `hg archive`
/// (subrepositories included, no `.hg`, no `.hg_archival.txt`). Author,
/// message and time come from `hg log`.
///
/// Credentials are those of the `hg` configuration of the user running
/// fnhost (`[auth]` in `~/.hgrc`); `hg` runs with `HGPLAIN=1`.
#[derive(Debug)]
pub struct HgSource {
    cache_dir: PathBuf,
    hg: PathBuf,
    locks: CacheLocks,
}

impl HgSource {
    /// A provider keeping its clones under `cache_dir`, running `hg` from
    /// `PATH`.
    pub fn new(cache_dir: impl Into<PathBuf>) -> Self {
        HgSource {
            cache_dir: cache_dir.into(),
            hg: PathBuf::from("hg"),
            locks: CacheLocks::default(),
        }
    }

    /// Runs this `hg` instead of the one on `PATH`.
    pub fn with_hg(mut self, hg: impl Into<PathBuf>) -> Self {
        self.hg = hg.into();
        self
    }

    fn run(&self, args: &[&str]) -> Result<Output, SourceError> {
        Command::new(&self.hg)
            .args(args)
            .env("HGPLAIN", "1")
            .env("HGENCODING", "utf-8")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| {
                other_error(
                    PROVIDER,
                    format!("cannot run {} (is Mercurial installed?)", self.hg.display()),
                    e,
                )
            })
    }

    /// Clones or pulls `spec.location` into its cache; returns the cache.
    fn update_cache(&self, spec: &SourceSpec) -> Result<PathBuf, SourceError> {
        let location = spec.location.trim();
        if location.is_empty() {
            return Err(SourceError::NotFound {
                provider: PROVIDER.to_owned(),
                what: "a repository (the location is empty)".to_owned(),
                hint: None,
            });
        }
        let cache = self.cache_dir.join(super::cache_name(location, ".hg"));
        let lock = self.locks.for_path(&cache);
        let _guard = lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if cache.join(".hg").is_dir() {
            let cache_arg = cache.to_string_lossy();
            let out = self.run(&["pull", "-R", &cache_arg, "--", location])?;
            if !out.status.success() {
                return Err(classify(location, &out));
            }
            return Ok(cache);
        }
        fs::create_dir_all(&self.cache_dir).map_err(|e| {
            other_error(
                PROVIDER,
                format!("cannot create {}", self.cache_dir.display()),
                e,
            )
        })?;
        // Clone beside, then rename: a half-made clone is never taken for
        // a cache.
        let partial = cache.with_extension(format!("partial-{}", std::process::id()));
        let _ = fs::remove_dir_all(&partial);
        let partial_arg = partial.to_string_lossy();
        let out = self.run(&["clone", "--noupdate", "--", location, &partial_arg])?;
        if !out.status.success() {
            let _ = fs::remove_dir_all(&partial);
            return Err(classify(location, &out));
        }
        fs::rename(&partial, &cache)
            .map_err(|e| other_error(PROVIDER, format!("cannot create {}", cache.display()), e))?;
        Ok(cache)
    }

    /// The changeset `spec` names, with author, message and time.
    fn resolve(&self, cache: &Path, spec: &SourceSpec) -> Result<SourceSnapshot, SourceError> {
        let cache_arg = cache.to_string_lossy();
        let tip = self.run(&["log", "-R", &cache_arg, "-r", "tip", "-T", "{node}"])?;
        let tip = String::from_utf8_lossy(&tip.stdout).trim().to_owned();
        if tip.is_empty() || tip.bytes().all(|b| b == b'0') {
            return Err(SourceError::Empty {
                provider: PROVIDER.to_owned(),
                message: format!("the repository {} has no changeset yet", spec.location),
            });
        }
        let reference = spec
            .reference
            .as_deref()
            .filter(|r| !r.trim().is_empty())
            .unwrap_or("default");
        let quoted = format!(
            "\"{}\"",
            reference.replace('\\', "\\\\").replace('"', "\\\"")
        );
        let out = self.run(&[
            "log",
            "-R",
            &cache_arg,
            "-r",
            &quoted,
            "-T",
            "{node}\\n{author}\\n{date|hgdate}\\n{desc}",
        ])?;
        if !out.status.success() {
            let branches = self.run(&["branches", "-R", &cache_arg, "-T", "{branch}\\n"])?;
            let mut names: Vec<String> = String::from_utf8_lossy(&branches.stdout)
                .lines()
                .map(str::to_owned)
                .collect();
            names.sort();
            return Err(SourceError::NotFound {
                provider: PROVIDER.to_owned(),
                what: format!("branch or revision {reference}"),
                hint: Some(format!("branches: {}", names.join(", "))),
            });
        }
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut lines = text.splitn(4, '\n');
        let node = lines.next().unwrap_or("").trim().to_owned();
        let author = lines.next().unwrap_or("").trim().to_owned();
        let date = lines.next().unwrap_or("");
        let message = lines.next().unwrap_or("").trim_end().to_owned();
        if node.len() != 40 {
            return Err(SourceError::other(
                PROVIDER,
                format!("unexpected output of hg log: {text}"),
            ));
        }
        let mut snapshot = SourceSnapshot::new(node);
        snapshot.author = Some(author).filter(|a| !a.is_empty());
        snapshot.message = Some(message);
        snapshot.time = date
            .split_whitespace()
            .next()
            .and_then(|s| s.parse::<f64>().ok())
            .and_then(|s| DateTime::from_timestamp(s as i64, 0));
        Ok(snapshot)
    }
}

impl SourceProvider for HgSource {
    fn name(&self) -> &str {
        PROVIDER
    }

    fn head(&self, spec: &SourceSpec) -> Result<String, SourceError> {
        let cache = self.update_cache(spec)?;
        Ok(self.resolve(&cache, spec)?.id)
    }

    fn fetch(&self, spec: &SourceSpec, into: &Path) -> Result<SourceSnapshot, SourceError> {
        let cache = self.update_cache(spec)?;
        let snapshot = self.resolve(&cache, spec)?;
        let cache_arg = cache.to_string_lossy();
        let into_arg = into.to_string_lossy();
        let out = self.run(&[
            "archive",
            "-R",
            &cache_arg,
            "--config",
            "ui.archivemeta=false",
            "-r",
            &snapshot.id,
            "-t",
            "files",
            "-S",
            "--",
            &into_arg,
        ])?;
        if !out.status.success() {
            return Err(SourceError::other(
                PROVIDER,
                format!(
                    "hg archive failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            ));
        }
        Ok(snapshot)
    }
}

/// Maps a failed clone or pull to what the caller should do.
fn classify(location: &str, out: &Output) -> SourceError {
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    let lower = stderr.to_ascii_lowercase();
    if lower.contains("authorization") || lower.contains("401") || lower.contains("403") {
        SourceError::Auth {
            provider: PROVIDER.to_owned(),
            message: format!("{location}: {stderr}"),
        }
    } else if lower.contains("not found") || lower.contains("404") || lower.contains("no such") {
        SourceError::NotFound {
            provider: PROVIDER.to_owned(),
            what: format!("the repository {location}"),
            hint: Some(stderr),
        }
    } else if lower.contains("connection refused")
        || lower.contains("error: [errno")
        || lower.contains("unable to connect")
        || lower.contains("name or service not known")
        || lower.contains("timed out")
    {
        SourceError::Unreachable {
            provider: PROVIDER.to_owned(),
            location: location.to_owned(),
            message: stderr,
        }
    } else {
        SourceError::other(PROVIDER, format!("hg failed on {location}: {stderr}"))
    }
}
