//! A new content from an old one and a change: the active deployment's
//! manifest with a file put, a file or folder removed, a zip unpacked over
//! it, or files replaced, written as a zip to deploy. The management
//! endpoint's vfs and zip routes and the portal's editor make their
//! deployments with it.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, BufWriter};
use std::path::Path;

use super::safe_entry_path;
use super::zip::add_stored;
use crate::store::{Manifest, Store};

/// A change to a content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    /// Put the upload at `path`.
    File { path: String, mode: u32 },
    /// Remove a file, or a folder and everything in it.
    Remove { path: String, folder: bool },
    /// Unpack the uploaded zip under `prefix`.
    Zip { prefix: String },
    /// Put these files (path, content), keeping the mode of a file
    /// replaced (the portal's editor).
    Files(Vec<(String, Vec<u8>)>),
}

impl Change {
    /// The deployment message that says what changed.
    pub(crate) fn describe(&self) -> String {
        match self {
            Change::File { path, .. } => format!("vfs: put {path}"),
            Change::Remove { path, .. } => format!("vfs: delete {path}"),
            Change::Zip { prefix } => format!("zip: unpacked into /{prefix}"),
            Change::Files(files) => {
                let names: Vec<&str> = files.iter().map(|(p, _)| p.as_str()).collect();
                format!("edit: {}", names.join(", "))
            }
        }
    }
}

/// Writes a zip of `base` with `change` applied to `out`; `upload` is the
/// file or zip a [`Change::File`] or [`Change::Zip`] puts. The error is a
/// message for the client.
pub(crate) fn overlay(
    store: &dyn Store,
    base: &Manifest,
    change: &Change,
    upload: Option<&Path>,
    out: &Path,
) -> Result<(), String> {
    use zip::write::SimpleFileOptions;
    let io_err = |e: io::Error| format!("cannot build the new version: {e}");
    let zerr = |e: zip::result::ZipError| format!("cannot build the new version: {e}");
    let opts = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .last_modified_time(zip::DateTime::default());
    // What the change replaces or removes.
    let mut replaced: HashSet<String> = HashSet::new();
    let mut removed_folder: Option<String> = None;
    let mut archive = None;
    match change {
        Change::File { path, .. } => {
            replaced.insert(path.clone());
        }
        Change::Remove { path, folder } => {
            replaced.insert(path.clone());
            if *folder {
                removed_folder = Some(format!("{path}/"));
            }
        }
        Change::Zip { prefix } => {
            let src = upload.ok_or("no zip was sent")?;
            let f = File::open(src).map_err(io_err)?;
            let mut z =
                zip::ZipArchive::new(f).map_err(|e| format!("the body is not a valid zip: {e}"))?;
            for i in 0..z.len() {
                let entry = z.by_index_raw(i).map_err(zerr)?;
                if entry.is_dir() {
                    continue;
                }
                let raw = entry.name().map_err(zerr)?.to_string();
                let name =
                    safe_entry_path(&raw).map_err(|why| format!("zip entry {raw:?}: {why}"))?;
                replaced.insert(join(prefix, &name));
            }
            archive = Some(z);
        }
        Change::Files(files) => {
            replaced.extend(files.iter().map(|(p, _)| p.clone()));
        }
    }
    let f = File::create(out).map_err(io_err)?;
    let mut zw = zip::ZipWriter::new(BufWriter::new(f));
    for e in &base.files {
        let removed = removed_folder
            .as_deref()
            .is_some_and(|p| e.path.starts_with(p));
        if !replaced.contains(&e.path) && !removed {
            add_stored(&mut zw, store, &e.path, e, opts).map_err(io_err)?;
        }
    }
    match change {
        Change::File { path, mode, .. } => {
            let src = upload.ok_or("no file was sent")?;
            let size = fs::metadata(src).map_err(io_err)?.len();
            zw.start_file(
                path.as_str(),
                opts.unix_permissions(*mode).large_file(size >= 0xFFFF_FFFF),
            )
            .map_err(zerr)?;
            io::copy(&mut File::open(src).map_err(io_err)?, &mut zw).map_err(io_err)?;
        }
        Change::Remove { .. } => {}
        Change::Files(files) => {
            for (path, data) in files {
                let mode = base
                    .files
                    .iter()
                    .find(|e| &e.path == path && !e.is_symlink())
                    .map_or(0o644, |e| e.mode & 0o777);
                zw.start_file(path.as_str(), opts.unix_permissions(mode))
                    .map_err(zerr)?;
                io::Write::write_all(&mut zw, data).map_err(io_err)?;
            }
        }
        Change::Zip { prefix } => {
            if let Some(mut z) = archive {
                for i in 0..z.len() {
                    let entry = z.by_index_raw(i).map_err(zerr)?;
                    if entry.is_dir() {
                        continue;
                    }
                    let raw = entry.name().map_err(zerr)?.to_string();
                    let name = safe_entry_path(&raw)?;
                    zw.raw_copy_file_rename(entry, join(prefix, &name))
                        .map_err(zerr)?;
                }
            }
        }
    }
    let w = zw.finish().map_err(zerr)?;
    w.into_inner().map_err(|e| io_err(e.into_error()))?;
    Ok(())
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}/{name}")
    }
}
