//! A small valid function app: a custom handler with one HTTP function.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

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
/// `handler`) whose `version.txt` says `version`.
pub fn make_app(dir: &Path, version: &str) {
    write(&dir.join("host.json"), HOST_JSON);
    write(&dir.join("hello/function.json"), HTTP_FUNCTION);
    write(&dir.join("version.txt"), version);
    write(&dir.join("handler"), "#!/bin/sh\necho hi\n");
    fs::set_permissions(dir.join("handler"), fs::Permissions::from_mode(0o755)).unwrap();
}
