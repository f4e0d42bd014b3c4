//! A slot's active content taken out: a deterministic zip (download), or a
//! new git repository (export).

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

use super::Site;
use crate::deployment::Deployment;
use crate::error::{Error, IoContext, Result};
use crate::fsutil;

impl Site {
    /// Writes a deterministic zip of the slot's active deployment to `out`
    /// (atomically), with a `local.settings.json` made from the slot's app
    /// settings when `include_settings`.
    pub fn download(
        &self,
        app: &str,
        slot: &str,
        include_settings: bool,
        out: &Path,
    ) -> Result<Deployment> {
        let active = self.require_active(app, slot)?;
        let manifest = self.manifest(app, &active.deployment)?;
        let mut extra = Vec::new();
        if include_settings {
            let settings = self.app_settings(app, slot)?;
            let doc = serde_json::json!({ "IsEncrypted": false, "Values": settings });
            let data = serde_json::to_vec_pretty(&doc).map_err(io::Error::other);
            extra.push((
                "local.settings.json".to_string(),
                data.ctx("cannot write", out)?,
            ));
        }
        let tmp = out.with_file_name(format!(
            ".{}.tmp-{}",
            out.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            fsutil::random_hex(4)
        ));
        let result = (|| -> io::Result<()> {
            let f = File::create(&tmp)?;
            let f = crate::package::write_zip(
                self.store.as_ref(),
                &manifest,
                &extra,
                io::BufWriter::new(f),
            )?;
            f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
            fs::rename(&tmp, out)
        })();
        if let Err(e) = result {
            let _ = fs::remove_file(&tmp);
            return Err(Error::io("cannot write", out, e));
        }
        self.deployment(app, &active.deployment)
    }

    /// Writes the slot's active deployment into `dir` (which must not exist
    /// or be empty) as a new git repository with one commit, to move an
    /// app to continuous deployment. Returns the commit id.
    pub fn export_git(&self, app: &str, slot: &str, dir: &Path) -> Result<String> {
        let active = self.require_active(app, slot)?;
        let record = self.deployment(app, &active.deployment)?;
        let manifest = self.manifest(app, &active.deployment)?;
        let git_err = |message: String| Error::Git {
            path: dir.to_path_buf(),
            message,
        };
        if dir.exists() {
            let mut entries = fs::read_dir(dir).ctx("cannot read", dir)?;
            if entries.next().is_some() {
                return Err(git_err("the folder exists and is not empty".into()));
            }
        }
        fs::create_dir_all(dir).ctx("cannot create", dir)?;
        let repo = git2::Repository::init(dir).map_err(|e| git_err(e.message().to_string()))?;
        for f in &manifest.files {
            let target = dir.join(&f.path);
            if let Some(parent) = target.parent() {
                fs::create_dir_all(parent).ctx("cannot create", parent)?;
            }
            let mut blob = self.store_err("read a blob", self.store.open(&f.hash))?;
            if f.is_symlink() {
                let mut link = String::new();
                blob.read_to_string(&mut link).ctx("cannot read", &target)?;
                symlink(&link, &target).ctx("cannot create link", &target)?;
            } else {
                let mut out = fs::File::create(&target).ctx("cannot create", &target)?;
                io::copy(&mut blob, &mut out).ctx("cannot write", &target)?;
                fs::set_permissions(&target, fs::Permissions::from_mode(f.mode & 0o777))
                    .ctx("cannot write", &target)?;
            }
        }
        let g = |e: git2::Error| git_err(e.message().to_string());
        let mut index = repo.index().map_err(g)?;
        index
            .add_all(["*"], git2::IndexAddOption::FORCE, None)
            .map_err(g)?;
        index.write().map_err(g)?;
        let tree_id = index.write_tree().map_err(g)?;
        let tree = repo.find_tree(tree_id).map_err(g)?;
        let author = if record.author.is_empty() {
            "fnhost"
        } else {
            record.author.as_str()
        };
        let sig = git2::Signature::now(author, "fnhost@localhost").map_err(g)?;
        let mut message = format!("Export of {app}/{slot}: deployment {}\n", active.deployment);
        if !record.message.is_empty() {
            message.push('\n');
            message.push_str(&record.message);
            message.push('\n');
        }
        let commit = repo
            .commit(Some("HEAD"), &sig, &sig, &message, &tree, &[])
            .map_err(g)?;
        Ok(commit.to_string())
    }
}
