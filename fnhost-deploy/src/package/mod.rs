//! Content in and out: a folder (with `.funcignore`) or a zip (extracted
//! safely, with limits) into the store, and a store manifest out as a
//! deterministic zip.
//!
//! Packaging a folder leaves out what `func azure functionapp publish`
//! leaves out: `.git`, `.vscode`, `.funcignore`, `.gitignore` and
//! `local.settings.json`, then whatever `.funcignore` (gitignore syntax)
//! names. Executable bits are kept. Symbolic links are kept as links when
//! they point inside the tree and refused when they escape it.
//!
//! The module a job: `paths` (the path rules every entry obeys: relative,
//! no `..`, links that stay inside), `folder` (a folder in, through
//! `.funcignore` and the stat cache; a file placed back out of the store),
//! `zip` (a zip in, within [`ZipLimits`]; a manifest out as a deterministic
//! zip), `overlay` (a content with a change applied, as a zip to deploy:
//! the management endpoint's file edits).

mod folder;
#[cfg(feature = "server")]
mod overlay;
mod paths;
mod zip;

use std::collections::HashSet;

pub use folder::{ALWAYS_EXCLUDED, FUNCIGNORE, FuncIgnore, list_folder};
pub(crate) use folder::{place_file, store_folder};
#[cfg(feature = "server")]
pub(crate) use overlay::{Change, overlay};
pub(crate) use paths::link_stays_inside;
pub use paths::{check_relative_path, safe_entry_path};
pub(crate) use zip::store_zip;
pub use zip::{ZipLimits, write_zip, zip_folder};

pub(crate) use crate::walk::{Entry, Found, Listing, walk, walk_then};

use crate::store::{Digest, Manifest};

/// What storing a tree produced.
#[derive(Debug, Clone, Default)]
pub struct Stored {
    /// The tree's manifest.
    pub manifest: Manifest,
    /// Blobs written by this call (the rest were in the store already).
    pub new_blobs: Vec<Digest>,
    /// Bytes written by this call.
    pub new_bytes: u64,
    /// Files whose content was read and hashed (the rest came from the
    /// stat cache).
    pub hashed: u64,
    /// The folder is as the stat cache describes the slot's active
    /// deployment (same files, sizes, times and inodes): nothing was
    /// stored, and the manifest is left empty.
    pub unchanged: bool,
    /// When new files were written straight into a new deployment's folder
    /// while storing (the slot had no spare folder): their paths in the
    /// manifest. The rest of the folder is still to be made.
    pub tree: Option<HashSet<String>>,
}

/// Progress while storing: files done, files in all.
pub type ProgressFn<'a> = &'a (dyn Fn(u64, u64) + Sync);
