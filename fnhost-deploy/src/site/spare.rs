//! Spare deployment folders: a deployment that changes a few files of a
//! large app renames a spare folder into place and applies the difference,
//! instead of making a hard link for every file.
//!
//! Each slot keeps at most one spare, `slots/SLOT/spare/`, holding `tree/`
//! (a read-only deployment folder, exactly as materialised) and
//! `manifest.bin` (the files `tree/` holds, in a compact sealed form). A spare comes from retention
//! (the folder of a deployment it drops, renamed) or, when retention drops
//! nothing, is made from the newly active deployment after activation
//! (from a slot's second deployment on), so that the time until the new
//! version is live never includes it.
//!
//! Crash safety: a spare is made under the slot's `tmp/` and renamed into
//! place whole, after its tree is on disk (with full durability); it is
//! taken by renaming `tree/` into the new deployment's folder and removing
//! the rest. A kill leaves either a spare, a partial one in `tmp/` (removed
//! by the next run), or a partial deployment folder (removed with its
//! interrupted record); never a spare that differs from its manifest.

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

use crate::codec::{Reader, Writer};
use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::store::{self, Durability, Manifest, ManifestEntry, ManifestKey};

use super::Site;

const SPARE: &str = "spare";
const TREE: &str = "tree";
/// The name of a spare being made, in the slot's `tmp/`.
const STAGING: &str = "spare-";
/// The name of a spare taken from its place, in the slot's `tmp/`.
const TAKEN: &str = "spare-taken-";
/// The files `tree/` holds, in the compact form of `encode_manifest`
/// (read on the deployment's critical path: about a sixth of the time
/// JSON takes).
const MANIFEST: &str = "manifest.bin";
const MANIFEST_MAGIC: &[u8; 8] = b"fnhsm02\n";

/// A manifest in a sealed binary form (see [`crate::codec`]).
fn encode_manifest(m: &Manifest) -> Vec<u8> {
    let mut w = Writer::new(MANIFEST_MAGIC, 16 + m.files.len() * 80);
    w.bytes(&(m.files.len() as u64).to_le_bytes());
    for f in &m.files {
        w.str(f.path.as_bytes());
        w.bytes(f.hash.as_bytes());
        w.bytes(&f.size.to_le_bytes());
        w.bytes(&f.mode.to_le_bytes());
    }
    w.finish()
}

/// Reads [`encode_manifest`]'s form; `None` when damaged.
fn decode_manifest(data: &[u8]) -> Option<Manifest> {
    let files = decode_entries(data)?;
    Some(Manifest {
        files: files.iter().map(Row::entry).collect(),
    })
}

/// Reads [`encode_manifest`]'s form in place (no string copied), checking
/// that it is sorted, as the difference relies on it; `None` when damaged.
fn decode_entries(data: &[u8]) -> Option<Vec<EntryRef<'_>>> {
    let mut r = Reader::open(data, MANIFEST_MAGIC)?;
    let count = r.u64()? as usize;
    // At least 48 bytes an entry: a bad count fails below, without a huge
    // allocation first.
    let mut files = Vec::with_capacity(count.min(data.len() / 48));
    for _ in 0..count {
        files.push(EntryRef {
            path: r.str()?,
            hash: store::Digest::from_bytes(r.arr()?),
            size: r.u64()?,
            mode: r.u32()?,
        });
    }
    let sorted = files.windows(2).all(|w| w[0].path < w[1].path);
    (r.is_done() && sorted).then_some(files)
}

/// A manifest entry as read in place from the binary form.
#[derive(Debug, Clone, Copy)]
struct EntryRef<'a> {
    path: &'a str,
    hash: store::Digest,
    size: u64,
    mode: u32,
}

/// What [`difference`] and [`folders_only_in`] read of a manifest's entry,
/// owned or read in place.
trait Row {
    fn path(&self) -> &str;
    fn content(&self) -> (&store::Digest, u32);
    fn entry(&self) -> ManifestEntry;
}

impl Row for ManifestEntry {
    fn path(&self) -> &str {
        &self.path
    }
    fn content(&self) -> (&store::Digest, u32) {
        (&self.hash, self.mode)
    }
    fn entry(&self) -> ManifestEntry {
        self.clone()
    }
}

impl Row for EntryRef<'_> {
    fn path(&self) -> &str {
        self.path
    }
    fn content(&self) -> (&store::Digest, u32) {
        (&self.hash, self.mode)
    }
    fn entry(&self) -> ManifestEntry {
        ManifestEntry {
            path: self.path.to_string(),
            hash: self.hash,
            size: self.size,
            mode: self.mode,
        }
    }
}

/// A slot's spare, read and compared with the manifest to deploy.
pub(super) struct Spare {
    dir: PathBuf,
    /// Files of the spare to remove (gone or changed).
    remove: Vec<ManifestEntry>,
    /// Files of the new manifest to place (new or changed).
    add: Vec<ManifestEntry>,
    /// Folders of the spare that the new manifest no longer has, sorted.
    gone_dirs: Vec<String>,
    /// Folders the new manifest needs that the spare lacks, sorted.
    new_dirs: Vec<String>,
}

impl Spare {
    /// How many files the difference touches.
    pub(super) fn changes(&self) -> usize {
        self.remove.len() + self.add.len()
    }
}

/// The folders a manifest's files need, as relative paths ("" excluded).
pub(super) fn folders(m: &Manifest) -> BTreeSet<String> {
    let mut dirs = BTreeSet::new();
    for f in &m.files {
        let mut p = Path::new(&f.path).parent();
        while let Some(d) = p.filter(|d| !d.as_os_str().is_empty()) {
            if !dirs.insert(d.to_string_lossy().into_owned()) {
                break;
            }
            p = d.parent();
        }
    }
    dirs
}

/// Whether a manifest's files (sorted) have one under folder `dir`: those
/// under `dir/` are together, from where `dir/` would sort.
fn has_files_under(files: &[impl Row], dir: &str) -> bool {
    let prefix = format!("{dir}/");
    let i = files.partition_point(|f| f.path() < prefix.as_str());
    files.get(i).is_some_and(|f| f.path().starts_with(&prefix))
}

/// The folders of `files` that `other` has no file under, sorted: for the
/// files one manifest has and `other` lacks (a side of [`difference`]), as
/// that manifest's `folders` minus `other`'s, looking only at the folders
/// of the files that differ.
fn folders_only_in(files: &[ManifestEntry], other: &[impl Row]) -> Vec<String> {
    let mut out = BTreeSet::new();
    for f in files {
        let mut rel = f.path.as_str();
        while let Some((parent, _)) = rel.rsplit_once('/') {
            if out.contains(parent) || has_files_under(other, parent) {
                break;
            }
            out.insert(parent.to_string());
            rel = parent;
        }
    }
    out.into_iter().collect()
}

/// Files of `old` that `new` does not have as they are, and files of `new`
/// that `old` does not have as they are (both lists sorted by path).
fn difference(old: &[impl Row], new: &[ManifestEntry]) -> (Vec<ManifestEntry>, Vec<ManifestEntry>) {
    let (mut remove, mut add) = (Vec::new(), Vec::new());
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < new.len() {
        match (old.get(i), new.get(j)) {
            (Some(a), Some(b)) if a.path() == b.path => {
                if a.content() != b.content() {
                    remove.push(a.entry());
                    add.push(b.clone());
                }
                i += 1;
                j += 1;
            }
            (Some(a), Some(b)) if a.path() < b.path.as_str() => {
                remove.push(a.entry());
                i += 1;
            }
            (Some(a), None) => {
                remove.push(a.entry());
                i += 1;
            }
            (_, Some(b)) => {
                add.push(b.clone());
                j += 1;
            }
            (None, None) => break,
        }
    }
    (remove, add)
}

impl Site {
    fn spare_dir(&self, app: &str, slot: &str) -> PathBuf {
        self.slot_dir(app, slot).join(SPARE)
    }

    /// Whether the slot has a spare folder.
    pub(super) fn has_spare(&self, app: &str, slot: &str) -> bool {
        self.spare_dir(app, slot).join(TREE).is_dir()
    }

    /// The slot's spare, if it has one worth using for `manifest`: one
    /// whose difference touches at most half as many files as a fresh
    /// folder would. A spare that cannot be read is removed.
    pub(super) fn spare_for(&self, app: &str, slot: &str, manifest: &Manifest) -> Option<Spare> {
        let dir = self.spare_dir(app, slot);
        let data = fs::read(dir.join(MANIFEST)).unwrap_or_default();
        let read = decode_entries(&data);
        let Some(old) = read.filter(|_| dir.join(TREE).is_dir()) else {
            if dir.exists() {
                let _ = self
                    .take_spare(app, slot)
                    .map(|gone| fsutil::remove_tree(&gone));
            }
            return None;
        };
        let (remove, add) = difference(&old, &manifest.files);
        let spare = Spare {
            dir,
            gone_dirs: folders_only_in(&remove, &manifest.files),
            new_dirs: folders_only_in(&add, &old),
            remove,
            add,
        };
        (spare.changes() <= manifest.files.len() / 2).then_some(spare)
    }

    /// Makes `dest` from a spare: renames its tree into place and applies
    /// the difference (removals, folders gone, folders new, files placed),
    /// then makes the touched folders read-only again. Returns what needs
    /// flushing, as [`Site::materialize`] does.
    pub(super) fn materialize_from_spare(
        &self,
        spare: Spare,
        dest: &Path,
        previous: Option<&(PathBuf, Manifest)>,
    ) -> Result<Vec<PathBuf>> {
        if dest.exists() {
            fsutil::remove_tree(dest).ctx("cannot remove", dest)?;
        }
        // Taken out of its place at once: a kill from here on leaves no
        // half spare behind, only a folder in tmp/. What is left of it (its
        // manifest) is removed after the call ([`Site::remove_taken_spares`]:
        // freeing a megabyte file takes milliseconds), or by the next run.
        let taken = self.take_spare_dir(&spare.dir)?;
        let tree = taken.join(TREE);
        fs::rename(&tree, dest).ctx("cannot move the spare folder", &tree)?;

        // Folders made writable while changing them, made read-only at the end.
        let mut touched: BTreeSet<PathBuf> = BTreeSet::new();
        let open = |dir: PathBuf, touched: &mut BTreeSet<PathBuf>| -> Result<()> {
            if !touched.contains(&dir) {
                fs::set_permissions(&dir, store::perms(0o755)).ctx("cannot change", &dir)?;
                touched.insert(dir);
            }
            Ok(())
        };
        let parent_of = |rel: &str| match Path::new(rel).parent() {
            Some(p) => dest.join(p),
            None => dest.to_path_buf(),
        };
        for f in &spare.remove {
            open(parent_of(&f.path), &mut touched)?;
            let path = dest.join(&f.path);
            fs::remove_file(&path).ctx("cannot remove", &path)?;
        }
        for d in spare.gone_dirs.iter().rev() {
            open(parent_of(d), &mut touched)?;
            let path = dest.join(d);
            touched.remove(&path);
            fs::remove_dir(&path).ctx("cannot remove", &path)?;
        }
        for d in &spare.new_dirs {
            open(parent_of(d), &mut touched)?;
            let path = dest.join(d);
            fs::create_dir(&path).ctx("cannot create", &path)?;
            touched.insert(path);
        }
        for f in &spare.add {
            open(parent_of(&f.path), &mut touched)?;
        }
        let mut to_flush = self.place_files(&spare.add, dest, previous)?;
        // Deepest first (longer paths sort after their parents).
        for d in touched.iter().rev() {
            fs::set_permissions(d, store::perms(0o555)).ctx("cannot protect", d)?;
        }
        to_flush.extend(touched);
        to_flush.push(dest.to_path_buf());
        if let Some(parent) = dest.parent() {
            to_flush.push(parent.to_path_buf());
        }
        Ok(to_flush)
    }

    /// Keeps the folder of a deployment retention drops as the slot's spare
    /// when the slot has none. Returns whether it did; the caller removes
    /// the folder otherwise.
    pub(super) fn keep_as_spare(&self, app: &str, slot: &str, id: &str) -> Result<bool> {
        let spare = self.spare_dir(app, slot);
        let folder = self.content_dir(app, id);
        if spare.exists() || !folder.is_dir() {
            return Ok(false);
        }
        // The folder has been on disk since its deployment was activated.
        // Its manifest is read from the store (retention removes it there
        // next).
        let Ok(manifest) = self.store.manifest(&ManifestKey::new(app, id)) else {
            return Ok(false);
        };
        let staging = self.spare_staging(app, slot, &manifest)?;
        let tree = staging.join(TREE);
        fs::rename(&folder, &tree).ctx("cannot move", &folder)?;
        self.install_spare(app, slot, &staging)?;
        Ok(true)
    }

    /// After a deployment: makes a spare from the slot's active deployment
    /// when the slot has none (retention gave none). Failing to make one
    /// only makes the next deployment slower, so errors are not returned;
    /// whatever was half-made is removed.
    /// `activated`: the deployment just activated and its manifest, when
    /// the caller has it (else it is read from the store).
    pub(super) fn prepare_spare(
        &self,
        app: &str,
        slot: &str,
        activated: Option<(&str, &Manifest)>,
    ) {
        if self.spare_dir(app, slot).exists() {
            return;
        }
        // Also after a slot's first deployment: the second one is the
        // redeployment most often timed, and without a spare it would link
        // every file again. The call has returned by now; a process that
        // ends waits for this (the CLI prints its result first).
        let Ok(Some(active)) = self.active(app, slot) else {
            return;
        };
        let manifest = match activated {
            Some((id, m)) if id == active.deployment => std::borrow::Cow::Borrowed(m),
            _ => match self.manifest(app, &active.deployment) {
                Ok(m) => std::borrow::Cow::Owned(m),
                Err(_) => return,
            },
        };
        let made = (|| -> Result<()> {
            let staging = self.spare_staging(app, slot, &manifest)?;
            let tree = staging.join(TREE);
            // Executables are linked to the active folder's copies.
            let previous = (manifest.files.iter().any(|f| f.is_executable()))
                .then(|| (active.path.clone(), manifest.clone().into_owned()));
            let to_flush =
                self.materialize(&manifest, &tree, previous.as_ref(), &HashSet::new())?;
            if self.durability == Durability::Full {
                self.flush_folder(&tree, &to_flush)?;
            }
            self.install_spare(app, slot, &staging)
        })();
        if made.is_err() {
            self.remove_from_tmp(app, slot, STAGING);
        }
    }

    /// Moves the slot's spare folder into the slot's `tmp/` (one rename, so
    /// that the spare is whole or gone), and returns where it is now.
    fn take_spare(&self, app: &str, slot: &str) -> Result<PathBuf> {
        self.take_spare_dir(&self.spare_dir(app, slot))
    }

    /// [`Site::take_spare`] for a spare folder at `dir` (the slot's
    /// `spare/`, beside its `tmp/`).
    fn take_spare_dir(&self, dir: &Path) -> Result<PathBuf> {
        let slot_dir = dir.parent().unwrap_or(dir);
        let taken = slot_dir
            .join("tmp")
            .join(format!("{TAKEN}{}", fsutil::random_hex(6)));
        fs::rename(dir, &taken).ctx("cannot move the spare folder", dir)?;
        Ok(taken)
    }

    /// Removes what is left of spares taken from the slot (in its `tmp/`).
    pub(super) fn remove_taken_spares(&self, app: &str, slot: &str) {
        self.remove_from_tmp(app, slot, TAKEN);
    }

    /// Removes the entries of the slot's `tmp/` whose name starts with
    /// `prefix`.
    fn remove_from_tmp(&self, app: &str, slot: &str, prefix: &str) {
        let tmp = self.slot_dir(app, slot).join("tmp");
        let Ok(entries) = fs::read_dir(&tmp) else {
            return;
        };
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(prefix) {
                let _ = fsutil::remove_tree(&e.path());
            }
        }
    }

    /// A new, empty folder under the slot's `tmp/` for a spare.
    fn new_staging(&self, app: &str, slot: &str) -> Result<PathBuf> {
        let staging = (self.slot_dir(app, slot).join("tmp"))
            .join(format!("{STAGING}{}", fsutil::random_hex(6)));
        fs::create_dir_all(&staging).ctx("cannot create", &staging)?;
        Ok(staging)
    }

    /// A new folder under the slot's `tmp/` holding the manifest.
    fn spare_staging(&self, app: &str, slot: &str, manifest: &Manifest) -> Result<PathBuf> {
        let staging = self.new_staging(app, slot)?;
        let path = staging.join(MANIFEST);
        let data = encode_manifest(manifest);
        fs::write(&path, data).ctx("cannot write", &path)?;
        if self.durability == Durability::Full {
            fs::File::open(&path)
                .and_then(|f| f.sync_all())
                .ctx("cannot flush", &path)?;
        }
        Ok(staging)
    }

    fn install_spare(&self, app: &str, slot: &str, staging: &Path) -> Result<()> {
        let spare = self.spare_dir(app, slot);
        fs::rename(staging, &spare).ctx("cannot move", staging)?;
        if self.durability == Durability::Full {
            let slot_dir = self.slot_dir(app, slot);
            fsutil::sync_dir(&slot_dir).ctx("cannot flush", &slot_dir)?;
        }
        Ok(())
    }

    /// The slot's spare folder and the manifest it should match, for fsck.
    pub(super) fn spare_of(&self, app: &str, slot: &str) -> Option<(PathBuf, Result<Manifest>)> {
        let dir = self.spare_dir(app, slot);
        if !dir.exists() {
            return None;
        }
        let path = dir.join(MANIFEST);
        let manifest = fs::read(&path).ctx("cannot read", &path).and_then(|d| {
            decode_manifest(&d).ok_or_else(|| Error::Corrupt {
                path: path.clone(),
                message: "damaged (its checksum or form is wrong)".into(),
            })
        });
        Some((dir.join(TREE), manifest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Digest, MODE_FILE};

    fn entry(path: &str, content: &str, mode: u32) -> ManifestEntry {
        ManifestEntry {
            path: path.into(),
            hash: Digest::of(content.as_bytes()),
            size: content.len() as u64,
            mode: MODE_FILE | mode,
        }
    }

    #[test]
    fn spare_manifests_round_trip_and_refuse_damage() {
        let m = Manifest::new(vec![
            entry("b/c.txt", "two", 0o644),
            entry("a", "one", 0o755),
            entry("b/é", "three", 0o644),
        ]);
        let data = encode_manifest(&m);
        assert_eq!(decode_manifest(&data), Some(m.clone()));
        let mut bad = data.clone();
        bad[20] ^= 1;
        assert_eq!(decode_manifest(&bad), None);
        assert_eq!(decode_manifest(&data[..data.len() - 3]), None);
        let unsorted = Manifest {
            files: m.files.iter().rev().cloned().collect(),
        };
        assert_eq!(decode_manifest(&encode_manifest(&unsorted)), None);
    }

    fn paths(v: &[ManifestEntry]) -> Vec<&str> {
        v.iter().map(|e| e.path.as_str()).collect()
    }

    #[test]
    fn difference_finds_gone_new_and_changed_files() {
        let old = Manifest::new(vec![
            entry("a", "1", 0o644),
            entry("b/c", "2", 0o644),
            entry("b/d", "3", 0o644),
            entry("e", "4", 0o644),
        ]);
        let new = Manifest::new(vec![
            entry("a", "1", 0o755),
            entry("b/c", "2", 0o644),
            entry("b/d", "changed", 0o644),
            entry("f/g", "5", 0o644),
        ]);
        let (remove, add) = difference(&old.files, &new.files);
        assert_eq!(paths(&remove), ["a", "b/d", "e"]);
        assert_eq!(paths(&add), ["a", "b/d", "f/g"]);
        assert_eq!(
            folders(&new).into_iter().collect::<Vec<_>>(),
            ["b".to_string(), "f".to_string()]
        );
        assert!(folders_only_in(&remove, &new.files).is_empty());
        assert_eq!(folders_only_in(&add, &old.files), ["f"]);
        let (remove, add) = difference(&new.files, &new.files);
        assert!(remove.is_empty() && add.is_empty());
    }

    #[test]
    fn folders_gone_and_new_are_found_from_the_difference_alone() {
        let old = Manifest::new(vec![
            entry("a/b/c/d.txt", "1", 0o644),
            entry("a/keep.txt", "2", 0o644),
            entry("a-b/x", "3", 0o644),
            entry("gone/deep/er/f", "4", 0o644),
        ]);
        let new = Manifest::new(vec![
            entry("a/keep.txt", "2", 0o644),
            entry("a-b/x", "3", 0o644),
            entry("a/b", "now a file", 0o644),
            entry("n/e/w", "5", 0o644),
            entry("a/b2/z", "6", 0o644),
        ]);
        let (remove, add) = difference(&old.files, &new.files);
        // As the difference of the full folder sets.
        let full = |x: &Manifest, y: &Manifest| -> Vec<String> {
            folders(x).difference(&folders(y)).cloned().collect()
        };
        assert_eq!(folders_only_in(&remove, &new.files), full(&old, &new));
        assert_eq!(folders_only_in(&add, &old.files), full(&new, &old));
        assert_eq!(
            folders_only_in(&remove, &new.files),
            ["a/b", "a/b/c", "gone", "gone/deep", "gone/deep/er"]
        );
        assert_eq!(folders_only_in(&add, &old.files), ["a/b2", "n", "n/e"]);
    }
}
