//! A zip in (extracted safely: entry paths and links checked, within
//! [`ZipLimits`]) and a manifest out as a deterministic zip.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Read, Seek, Write};
use std::path::Path;

use super::{Found, FuncIgnore, ProgressFn, Stored, link_stays_inside, safe_entry_path, walk};
use crate::error::{Error, IoContext, Result};
use crate::store::{
    Digest, Hasher, MODE_FILE, MODE_SYMLINK, Manifest, ManifestEntry, Store, put_bytes,
};

/// Limits applied when reading a zip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZipLimits {
    /// Most entries (files, folders, links) in the archive.
    pub max_entries: usize,
    /// Most bytes once uncompressed, all entries together.
    pub max_total_size: u64,
    /// Highest compression ratio (uncompressed / compressed) accepted for
    /// an entry larger than [`ZipLimits::ratio_threshold`].
    pub max_ratio: u64,
    /// Entries up to this size are not checked for their ratio (small
    /// files of zeros compress very well and are harmless).
    pub ratio_threshold: u64,
}

impl Default for ZipLimits {
    fn default() -> Self {
        ZipLimits {
            max_entries: 100_000,
            max_total_size: 4 * 1024 * 1024 * 1024,
            max_ratio: 200,
            ratio_threshold: 1024 * 1024,
        }
    }
}

/// Stores a zip's entries, checking each as it goes. `scratch` is a private
/// folder for entries too large to hold in memory.
pub(crate) fn store_zip(
    store: &dyn Store,
    zip_path: &Path,
    limits: &ZipLimits,
    scratch: &Path,
    progress: ProgressFn<'_>,
) -> Result<Stored> {
    let bad = |message: String| Error::Package {
        path: zip_path.to_path_buf(),
        message,
    };
    let file = File::open(zip_path).ctx("cannot open", zip_path)?;
    let mut archive = zip::ZipArchive::new(std::io::BufReader::new(file))
        .map_err(|e| bad(format!("not a readable zip archive: {e}")))?;
    if archive.len() > limits.max_entries {
        return Err(bad(format!(
            "{} entries, more than the limit of {}",
            archive.len(),
            limits.max_entries
        )));
    }
    if archive.has_duplicate_names() {
        return Err(bad(
            "the archive lists the same name twice (duplicate entries)".into(),
        ));
    }
    let total = archive.len() as u64;
    let mut stored = Stored::default();
    let mut entries: BTreeMap<String, ManifestEntry> = BTreeMap::new();
    let mut dirs: HashSet<String> = HashSet::new();
    let mut total_size = 0u64;
    for i in 0..archive.len() {
        let mut entry = archive
            .by_index(i)
            .map_err(|e| bad(format!("entry {i}: cannot read: {e}")))?;
        let raw_name = entry
            .name()
            .map_err(|e| bad(format!("entry {i}: bad name: {e}")))?
            .into_owned();
        let path = safe_entry_path(&raw_name).map_err(|why| bad(format!("{raw_name:?}: {why}")))?;
        let unix = entry.unix_mode();
        let kind = unix.map(|m| m & 0o170_000).unwrap_or(0);
        if entry.is_dir() || kind == 0o040_000 {
            dirs.insert(path);
            continue;
        }
        match kind {
            0 | 0o100_000 | 0o120_000 => {}
            0o020_000 | 0o060_000 => {
                return Err(bad(format!("{raw_name:?}: a device file; refused")));
            }
            0o010_000 => return Err(bad(format!("{raw_name:?}: a fifo; refused"))),
            0o140_000 => return Err(bad(format!("{raw_name:?}: a socket; refused"))),
            other => {
                return Err(bad(format!(
                    "{raw_name:?}: unknown file type {other:o}; refused"
                )));
            }
        }
        let declared = entry.size();
        let compressed = entry.compressed_size();
        if total_size.saturating_add(declared) > limits.max_total_size {
            return Err(bad(format!(
                "more than {} bytes once uncompressed (the limit)",
                limits.max_total_size
            )));
        }
        let is_link = kind == 0o120_000;
        if declared > limits.ratio_threshold && declared / compressed.max(1) > limits.max_ratio {
            return Err(bad(format!(
                "{raw_name:?}: compression ratio above {}:1 ({declared} bytes from {compressed}); refused as a possible zip bomb",
                limits.max_ratio
            )));
        }
        // Read with a cap: never more than the declared size or the total
        // limit, whatever the data holds.
        let cap = declared.min(limits.max_total_size - total_size);
        let (hash, size, new) = if is_link || declared <= 16 * 1024 * 1024 {
            let mut data = Vec::with_capacity(declared.min(16 * 1024 * 1024) as usize);
            let n = (&mut entry)
                .take(cap + 1)
                .read_to_end(&mut data)
                .map_err(|e| bad(format!("{raw_name:?}: cannot read: {e}")))?;
            if n as u64 > cap {
                return Err(bad(format!(
                    "{raw_name:?}: more data than its header declares, or than the limits allow"
                )));
            }
            if is_link {
                let target = String::from_utf8(data.clone())
                    .map_err(|_| bad(format!("{raw_name:?}: link target is not UTF-8")))?;
                if !link_stays_inside(&path, &target) {
                    return Err(bad(format!(
                        "{raw_name:?}: symbolic link to {target:?} leaves the app folder; refused"
                    )));
                }
            }
            let (hash, new) = put_bytes(store, &data).map_err(|e| Error::Store {
                store: store.describe(),
                what: format!("cannot store {path}"),
                source: e,
            })?;
            (hash, n as u64, new)
        } else {
            let tmp = scratch.join(format!("zip-entry-{i}"));
            let result = copy_capped(&mut entry, &tmp, cap)
                .map_err(|e| bad(format!("{raw_name:?}: cannot read: {e}")))
                .and_then(|(hash, n)| {
                    if n > cap {
                        return Err(bad(format!(
                            "{raw_name:?}: more data than its header declares, or than the limits allow"
                        )));
                    }
                    let new = File::open(&tmp)
                        .and_then(|mut f| store.put(&hash, &mut f))
                        .map_err(|e| Error::Store {
                            store: store.describe(),
                            what: format!("cannot store {path}"),
                            source: e,
                        })?;
                    Ok((hash, n, new))
                });
            let _ = fs::remove_file(&tmp);
            result?
        };
        total_size += size;
        if new {
            stored.new_blobs.push(hash);
            stored.new_bytes += size;
        }
        stored.hashed += 1;
        let mode = if is_link {
            MODE_SYMLINK | 0o777
        } else {
            MODE_FILE | unix.map(|m| m & 0o777).filter(|m| *m != 0).unwrap_or(0o644)
        };
        if entries
            .insert(
                path.clone(),
                ManifestEntry {
                    path: path.clone(),
                    hash,
                    size,
                    mode,
                },
            )
            .is_some()
        {
            return Err(bad(format!(
                "{raw_name:?}: {path} appears twice (duplicate entries)"
            )));
        }
        progress(i as u64 + 1, total);
    }
    // A path that is both a file and a folder cannot be extracted.
    for path in entries.keys() {
        let mut prefix = path.as_str();
        while let Some((parent, _)) = prefix.rsplit_once('/') {
            if entries.contains_key(parent) {
                return Err(bad(format!(
                    "{parent} is both a file and the folder of {path}"
                )));
            }
            prefix = parent;
        }
        if dirs.contains(path) {
            return Err(bad(format!("{path} is both a file and a folder")));
        }
    }
    stored.manifest = Manifest {
        files: entries.into_values().collect(),
    };
    Ok(stored)
}

fn copy_capped(src: &mut dyn Read, dst: &Path, cap: u64) -> io::Result<(Digest, u64)> {
    let mut out = File::create(dst)?;
    let mut hasher = Hasher::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut n_total = 0u64;
    let mut limited = src.take(cap + 1);
    loop {
        let n = limited.read(&mut buf)?;
        if n == 0 {
            break;
        }
        n_total += n as u64;
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])?;
    }
    Ok((hasher.finish(), n_total))
}

/// Writes a deterministic zip of a manifest's files (sorted, fixed times,
/// modes kept), plus `extra` files (path, content) such as a generated
/// `local.settings.json`.
pub fn write_zip<W: Write + Seek>(
    store: &dyn Store,
    manifest: &Manifest,
    extra: &[(String, Vec<u8>)],
    out: W,
) -> io::Result<W> {
    use zip::write::SimpleFileOptions;
    let mut zw = zip::ZipWriter::new(out);
    let base = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .last_modified_time(zip::DateTime::default());
    type Item<'m> = (&'m str, Option<&'m ManifestEntry>, Option<&'m [u8]>);
    let mut all: Vec<Item<'_>> = manifest
        .files
        .iter()
        .map(|f| (f.path.as_str(), Some(f), None))
        .collect();
    for (path, data) in extra {
        if manifest.get(path).is_none() {
            all.push((path.as_str(), None, Some(data.as_slice())));
        }
    }
    all.sort_by(|a, b| a.0.cmp(b.0));
    for (path, entry, data) in all {
        match (entry, data) {
            (Some(e), _) => add_stored(&mut zw, store, path, e, base)?,
            (None, Some(d)) => {
                zw.start_file(path, base.unix_permissions(0o644))
                    .map_err(io::Error::other)?;
                zw.write_all(d)?;
            }
            (None, None) => {}
        }
    }
    zw.finish().map_err(io::Error::other)
}

/// Adds a stored entry (a file with its mode, or a link) to a zip at
/// `path`, with the options `base` (compression, time).
pub(super) fn add_stored<W: Write + Seek>(
    zw: &mut zip::ZipWriter<W>,
    store: &dyn Store,
    path: &str,
    e: &ManifestEntry,
    base: zip::write::SimpleFileOptions,
) -> io::Result<()> {
    if e.is_symlink() {
        let mut target = String::new();
        store.open(&e.hash)?.read_to_string(&mut target)?;
        zw.add_symlink(path, target, base.unix_permissions(0o777))
            .map_err(io::Error::other)?;
    } else {
        zw.start_file(
            path,
            base.unix_permissions(e.mode & 0o777)
                .large_file(e.size >= 0xFFFF_FFFF),
        )
        .map_err(io::Error::other)?;
        io::copy(&mut store.open(&e.hash)?, zw)?;
    }
    Ok(())
}

/// Writes a zip of a folder as a deployment would take it (after
/// `.funcignore`): deterministic, modes kept. Handy for publishing.
pub fn zip_folder<W: Write + Seek>(dir: &Path, out: W) -> Result<W> {
    use zip::write::SimpleFileOptions;
    let ignore = FuncIgnore::for_folder(dir)?;
    let mut found = walk(dir, &ignore, 2)?;
    found.sort_by(|a, b| a.rel().cmp(b.rel()));
    let mut zw = zip::ZipWriter::new(out);
    let base = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .last_modified_time(zip::DateTime::default());
    let zerr = |e: zip::result::ZipError| Error::Package {
        path: dir.to_path_buf(),
        message: format!("cannot write zip: {e}"),
    };
    for f in &found {
        match f {
            Found::Link { rel, target } => {
                zw.add_symlink(rel.as_str(), target.as_str(), base.unix_permissions(0o777))
                    .map_err(zerr)?;
            }
            Found::File { rel, stat } => {
                let abs = &dir.join(rel);
                zw.start_file(
                    rel.as_str(),
                    base.unix_permissions(stat.mode & 0o777)
                        .large_file(stat.size >= 0xFFFF_FFFF),
                )
                .map_err(zerr)?;
                let mut src = File::open(abs).ctx("cannot read", abs)?;
                io::copy(&mut src, &mut zw).ctx("cannot read", abs)?;
            }
        }
    }
    zw.finish().map_err(zerr)
}
