//! A zip file as a source: the id is the zip's sha256, a fetch is a safe
//! extraction.
//!
//! Entry names and links are checked by the rules of a zip deploy
//! ([`crate::package::safe_entry_path`]), within [`ZipLimits`].

use std::collections::HashSet;
use std::fs;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use sha2::{Digest as _, Sha256};

use super::{SourceError, SourceProvider, SourceSnapshot, SourceSpec, make_link, other_error};
use crate::package::{ZipLimits, link_stays_inside, safe_entry_path};

const PROVIDER: &str = "zip";

/// Follows a zip file: `SourceSpec::location` is its path. The snapshot id
/// is the sha256 of the file; `fetch` extracts it safely:
///
/// - entries with an absolute path, a `..` component or a drive letter,
///   and duplicate entries are refused (`\` is read as a separator);
/// - symbolic links are written only when they point inside the tree;
/// - the number of entries, the total size written and the compression
///   ratio of each large entry are limited (a zip bomb is refused, counting
///   the bytes actually inflated, not the sizes the zip claims);
/// - the executable bit of entries made on Unix is kept.
#[derive(Debug, Clone)]
pub struct ZipSource {
    limits: ZipLimits,
}

impl ZipSource {
    /// A provider with the default limits: 100,000 entries, 2 GiB in all,
    /// a compression ratio of at most 200 for entries over 1 MiB.
    pub fn new() -> Self {
        ZipSource {
            limits: ZipLimits {
                max_total_size: 2 << 30,
                ..ZipLimits::default()
            },
        }
    }

    /// Sets the largest number of entries.
    pub fn with_max_entries(mut self, n: usize) -> Self {
        self.limits.max_entries = n;
        self
    }

    /// Sets the largest total size extracted, in bytes.
    pub fn with_max_total_size(mut self, bytes: u64) -> Self {
        self.limits.max_total_size = bytes;
        self
    }

    /// Sets the largest compression ratio of an entry over 1 MiB.
    pub fn with_max_ratio(mut self, ratio: u64) -> Self {
        self.limits.max_ratio = ratio;
        self
    }

    fn open(&self, spec: &SourceSpec) -> Result<(fs::File, String), SourceError> {
        let path = Path::new(&spec.location);
        let mut file = fs::File::open(path).map_err(|e| SourceError::NotFound {
            provider: PROVIDER.to_owned(),
            what: format!("the zip {} ({e})", path.display()),
            hint: Some("check the path".to_owned()),
        })?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = file
                .read(&mut buf)
                .map_err(|e| other_error(PROVIDER, format!("cannot read {}", path.display()), e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        let id = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok((file, id))
    }

    fn extract(&self, file: fs::File, into: &Path) -> Result<usize, SourceError> {
        let invalid = |m: String| SourceError::other(PROVIDER, m);
        let mut archive = zip::ZipArchive::new(file)
            .map_err(|e| other_error(PROVIDER, "not a valid zip file", e))?;
        if archive.len() > self.limits.max_entries {
            return Err(invalid(format!(
                "the zip has {} entries, more than the limit of {}",
                archive.len(),
                self.limits.max_entries
            )));
        }
        if archive.has_duplicate_names() {
            return Err(invalid(
                "an entry appears twice in the zip's directory".to_owned(),
            ));
        }
        let mut seen = HashSet::new();
        let mut total = 0u64;
        let mut files = 0;
        for i in 0..archive.len() {
            let mut entry = archive
                .by_index(i)
                .map_err(|e| other_error(PROVIDER, format!("cannot read entry {i}"), e))?;
            let raw = entry.name().map(|n| n.into_owned()).map_err(|e| {
                other_error(PROVIDER, format!("entry {i} has an unreadable name"), e)
            })?;
            // The deployment path's rules: `\` is a separator (zips made
            // on Windows), `..`, absolute paths and drive letters refused.
            let rel = match safe_entry_path(&raw) {
                Ok(rel) => rel,
                Err(_) if entry.is_dir() => continue,
                Err(why) => return Err(invalid(format!("entry '{raw}': {why}"))),
            };
            if !seen.insert(rel.clone()) {
                return Err(invalid(format!("entry '{raw}' appears twice")));
            }
            let target = into.join(&rel);
            let failed = |e: io::Error| other_error(PROVIDER, format!("cannot write {rel}"), e);
            if entry.is_dir() {
                fs::create_dir_all(&target).map_err(failed)?;
                continue;
            }
            if let Some(parent) = target.parent() {
                fs::create_dir_all(parent).map_err(failed)?;
            }
            let mode = entry.unix_mode();
            let budget = self.limits.max_total_size - total;
            let ratio_cap = entry
                .compressed_size()
                .saturating_mul(self.limits.max_ratio)
                .max(self.limits.ratio_threshold);
            let cap = budget.min(ratio_cap);
            if entry.is_symlink() {
                let mut link = String::new();
                (&mut entry)
                    .take(4096)
                    .read_to_string(&mut link)
                    .map_err(failed)?;
                if !link_stays_inside(&rel, &link) {
                    return Err(invalid(format!(
                        "entry '{raw}' is a link to '{link}', outside the tree"
                    )));
                }
                make_link(&link, &target).map_err(failed)?;
                continue;
            }
            let mut out = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&target)
                .map_err(failed)?;
            let written = io::copy(&mut (&mut entry).take(cap + 1), &mut out).map_err(failed)?;
            if written > cap {
                return Err(invalid(if cap == budget {
                    format!(
                        "the zip holds more than the limit of {} bytes",
                        self.limits.max_total_size
                    )
                } else {
                    format!(
                        "entry '{raw}' is compressed more than {} times (a zip bomb?)",
                        self.limits.max_ratio
                    )
                }));
            }
            out.flush().map_err(failed)?;
            total += written;
            files += 1;
            set_mode(&out, mode).map_err(failed)?;
        }
        Ok(files)
    }
}

impl Default for ZipSource {
    fn default() -> Self {
        Self::new()
    }
}

impl SourceProvider for ZipSource {
    fn name(&self) -> &str {
        PROVIDER
    }

    fn head(&self, spec: &SourceSpec) -> Result<String, SourceError> {
        Ok(self.open(spec)?.1)
    }

    fn fetch(&self, spec: &SourceSpec, into: &Path) -> Result<SourceSnapshot, SourceError> {
        // The id and the files come from one open file, so they agree even
        // when the zip is replaced meanwhile.
        let (mut file, id) = self.open(spec)?;
        file.seek(SeekFrom::Start(0))
            .map_err(|e| other_error(PROVIDER, "cannot read the zip", e))?;
        let time = file
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .map(chrono::DateTime::<chrono::Utc>::from);
        let files = self.extract(file, into)?;
        let mut snapshot = SourceSnapshot::new(id);
        snapshot.time = time;
        snapshot.message = Some(format!("{files} files from {}", spec.location));
        Ok(snapshot)
    }
}

#[cfg(unix)]
fn set_mode(file: &fs::File, mode: Option<u32>) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    if let Some(mode) = mode
        && mode & 0o111 != 0
    {
        file.set_permissions(fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn set_mode(_file: &fs::File, _mode: Option<u32>) -> io::Result<()> {
    Ok(())
}
