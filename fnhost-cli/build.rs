//! Embeds fnhost's language workers (`workers/node`, `workers/python`) and
//! the protocol file in the binary, for `fnhost workers install`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Folders and files that are built, installed or only for development
/// (the Node worker's `test` folder), never shipped.
const SKIPPED: [&str; 9] = [
    "node_modules",
    "deps",
    "deps.new",
    "deps.old",
    "__pycache__",
    ".gitignore",
    "function_rpc.proto",
    ".fnhost-worker",
    "test",
];

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest.parent().expect("the workspace").to_path_buf();
    let proto = root.join("fnhost-core/proto/function_rpc.proto");
    println!("cargo:rerun-if-changed={}", proto.display());
    let mut out =
        String::from("/// Every file of each worker: (language, path in its folder, content).\n");
    out.push_str("pub(crate) const WORKER_FILES: &[(&str, &str, &[u8])] = &[\n");
    for language in ["node", "python"] {
        let dir = root.join("workers").join(language);
        println!("cargo:rerun-if-changed={}", dir.display());
        let mut files = Vec::new();
        walk(&dir, &dir, &mut files);
        // The Python worker compiles the protocol file when it is
        // installed; the Node worker carries its message tables.
        if language == "python" {
            files.push(("function_rpc.proto".to_owned(), proto.clone()));
        }
        files.sort();
        for (rel, path) in files {
            println!("cargo:rerun-if-changed={}", path.display());
            writeln!(
                out,
                "    ({language:?}, {rel:?}, include_bytes!({:?})),",
                path.display().to_string()
            )
            .expect("writing to a string");
        }
    }
    out.push_str("];\n");
    let dest = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo")).join("workers.rs");
    std::fs::write(dest, out).expect("the build folder is writable");
}

fn walk(base: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if SKIPPED.contains(&name.as_str()) || name.ends_with(".pyc") {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            println!("cargo:rerun-if-changed={}", path.display());
            walk(base, &path, out);
        } else if let Ok(rel) = path.strip_prefix(base) {
            out.push((rel.to_string_lossy().replace('\\', "/"), path));
        }
    }
}
