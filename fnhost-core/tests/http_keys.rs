//! The secrets file: created owner-only, kept across restarts, rotated,
//! and picked up by a running front when changed from outside.

#![cfg(feature = "http")]
#![allow(clippy::unwrap_used)]

use fnhost_core::binding::AuthLevel;
use fnhost_core::keys::{KeyStore, Secrets};

#[test]
fn the_file_is_private_persistent_and_rotatable() {
    let dir = tempfile::tempdir().unwrap();
    let path = KeyStore::default_path(dir.path());
    assert!(path.ends_with(".fnhost/secrets.json"));
    let store = KeyStore::open(&path).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dmode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dmode, 0o700);
    }
    let master = store.master_key();
    assert!(master.len() >= 40);
    store.ensure_function_keys(["Hello"]).unwrap();
    let hello = store.secrets().function_keys("hello").unwrap()["default"].clone();

    // Reopening reads the same keys.
    let again = KeyStore::open(&path).unwrap();
    assert_eq!(again.secrets(), store.secrets());
    let on_disk: Secrets = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(on_disk.master, master);

    // Rotation replaces, persists, and keeps the file private.
    let new_master = again.rotate_master().unwrap();
    assert_ne!(new_master, master);
    let extra = again.new_function_key("Hello", "ci").unwrap();
    let host2 = again.new_host_key("deploy").unwrap();
    let reread = KeyStore::open(&path).unwrap().secrets();
    assert_eq!(reread.master, new_master);
    assert_eq!(reread.function_keys("Hello").unwrap()["ci"], extra);
    assert_eq!(reread.function_keys("Hello").unwrap()["default"], hello);
    assert_eq!(reread.host["deploy"], host2);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    // No temporary files are left behind.
    let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");

    // The first store has old keys in memory; a new key makes it reload.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let latest = again.rotate_master().unwrap();
    for (level, function, key, accepted) in [
        (AuthLevel::Admin, "", &latest, true),
        (AuthLevel::Admin, "", &master, false),
        (AuthLevel::Function, "hello", &extra, true),
        (AuthLevel::Function, "other", &extra, false),
    ] {
        let kind = store.authorize(level, function, Some(key));
        assert_eq!(kind.is_some(), accepted, "{level:?} {function:?}");
    }
}

#[test]
fn a_broken_file_is_an_error_not_new_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secrets.json");
    std::fs::write(&path, "{not json").unwrap();
    let err = KeyStore::open(&path).unwrap_err().to_string();
    assert!(err.contains("not a valid secrets file"), "{err}");
    std::fs::write(&path, r#"{"master": ""}"#).unwrap();
    assert!(KeyStore::open(&path).is_err());
    assert!(
        KeyStore::in_memory()
            .unwrap()
            .new_host_key("bad name!")
            .is_err()
    );
}
