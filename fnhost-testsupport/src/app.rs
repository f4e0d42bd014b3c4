//! A small valid function app: a custom handler with one HTTP function.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

/// host.json of a custom handler app whose handler is the file `handler`.
pub const HOST_JSON: &str = r#"{ "version": "2.0", "customHandler": { "description": { "defaultExecutablePath": "handler" } } }"#;

/// function.json of an anonymous GET HTTP function.
pub const HTTP_FUNCTION: &str = r#"{ "bindings": [
  { "type": "httpTrigger", "direction": "in", "name": "req", "authLevel": "anonymous", "methods": ["get"] },
  { "type": "http", "direction": "out", "name": "res" } ] }"#;

/// Writes `data` to `path`, creating its folders.
pub fn write(path: &Path, data: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, data).unwrap();
}

/// A valid app in `dir` (host.json, `hello/function.json`, an executable
/// `handler`) whose `version.txt` says `version`. Returns `dir`.
pub fn make_app(dir: &Path, version: &str) -> PathBuf {
    write(&dir.join("host.json"), HOST_JSON);
    write(&dir.join("hello/function.json"), HTTP_FUNCTION);
    write(&dir.join("version.txt"), version);
    write(&dir.join("handler"), "#!/bin/sh\necho hi\n");
    fs::set_permissions(dir.join("handler"), fs::Permissions::from_mode(0o755)).unwrap();
    dir.to_path_buf()
}

/// Makes `files` (relative path, content) the content of the working
/// tree `dir`: removes every entry of `dir` that `keep` does not spare
/// (a link as a file, never what it points to), then writes `files`.
pub fn replace_files(dir: &Path, keep: impl Fn(&Path) -> bool, files: &[(&str, &[u8])]) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if keep(&path) {
            continue;
        }
        if path.is_dir() && !path.is_symlink() {
            fs::remove_dir_all(path).unwrap();
        } else {
            fs::remove_file(path).unwrap();
        }
    }
    for (rel, content) in files {
        let path = dir.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    }
}

/// A scratch folder (removed when dropped) and the path of a home in it
/// (`home`, not made yet).
pub fn scratch_home() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    (tmp, home)
}

/// Relative path -> content of every file under `dir` (links followed).
pub fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                out.insert(rel, fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// Takes the lock file at `path` as a running deployment with id `id`
/// holds it (`fnhost` then sees the slot busy); it is held until the file
/// is dropped.
pub fn hold_slot_lock(path: &Path, id: &str) -> fs::File {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut holder = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .unwrap();
    holder.lock().unwrap();
    std::io::Write::write_all(&mut holder, id.as_bytes()).unwrap();
    holder
}
