//! Function keys: the secrets that HTTP callers present to reach functions
//! whose auth level is `function` or `admin`.
//!
//! Like the Azure host, an app has one **master** key (admin level, and every
//! function), named **host** keys (every function) and, per function, named
//! **function** keys (that function only). A caller presents a key in the
//! `x-functions-key` header or the `code` query parameter.
//!
//! Keys are 40 random bytes from the operating system's cryptographic
//! source, written in base64url without padding (54 characters). They are
//! kept in a JSON file, by default `APP_DIR/.fnhost/secrets.json`
//! ([`KeyStore::default_path`]), of the shape
//!
//! ```json
//! {"master": "KEY", "host": {"default": "KEY"}, "functions": {"Hello": {"default": "KEY"}}}
//! ```
//!
//! The file is created with owner-only permissions (0600 on Unix, in a
//! folder made 0700) and replaced atomically (written beside, synced,
//! renamed) on every change. Keys are compared in constant time, and never
//! printed by `Debug`.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::binding::AuthLevel;

/// The folder under the app root that holds fnhost's own files.
pub const STATE_DIR: &str = ".fnhost";
/// The name of the secrets file in [`STATE_DIR`].
pub const SECRETS_FILE: &str = "secrets.json";
/// The name given to the first host key and to each function's first key.
pub const DEFAULT_KEY_NAME: &str = "default";
/// Random bytes in a generated key.
const KEY_BYTES: usize = 40;

/// Why keys could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The secrets file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The secrets file is not valid.
    #[error("{}: not a valid secrets file ({message}); fix it, or delete it to generate new keys", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The operating system's random source failed.
    #[error("cannot generate a key: the system random source failed: {0}")]
    Random(String),
    /// A key name is not allowed.
    #[error("'{0}' is not a valid key name: use 1 to 64 ASCII letters, digits, '-' or '_'")]
    InvalidName(String),
}

/// The keys of an app, as stored and as `fnhost keys list --json` prints
/// them.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secrets {
    /// The master key: admin level and every function.
    pub master: String,
    /// Host keys by name: every function.
    #[serde(default)]
    pub host: BTreeMap<String, String>,
    /// Function keys, by function name then key name.
    #[serde(default)]
    pub functions: BTreeMap<String, BTreeMap<String, String>>,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secrets")
            .field("master", &"<redacted>")
            .field("host", &self.host.keys().collect::<Vec<_>>())
            .field(
                "functions",
                &self
                    .functions
                    .iter()
                    .map(|(f, k)| (f, k.keys().collect::<Vec<_>>()))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Which key let a caller in.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyKind {
    /// No key was needed (anonymous level).
    Anonymous,
    /// The master key.
    Master,
    /// A host key, by name.
    Host(String),
    /// A key of the function, by name.
    Function(String),
}

impl Secrets {
    /// New secrets: a master key and a `default` host key.
    pub fn generate() -> Result<Secrets, KeyError> {
        let mut host = BTreeMap::new();
        host.insert(DEFAULT_KEY_NAME.to_owned(), generate_key()?);
        Ok(Secrets {
            master: generate_key()?,
            host,
            functions: BTreeMap::new(),
        })
    }

    /// The keys of a function, by name ignoring case.
    pub fn function_keys(&self, function: &str) -> Option<&BTreeMap<String, String>> {
        self.functions
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(function))
            .map(|(_, keys)| keys)
    }

    /// The keys of a function, by name ignoring case, added empty (under
    /// `function`) when it has none.
    fn function_keys_mut(&mut self, function: &str) -> &mut BTreeMap<String, String> {
        let name = self
            .functions
            .keys()
            .find(|n| n.eq_ignore_ascii_case(function))
            .cloned()
            .unwrap_or_else(|| function.to_owned());
        self.functions.entry(name).or_default()
    }

    /// Checks `presented` against the keys that `level` accepts for
    /// `function`: none for anonymous; the master key, a host key or a key
    /// of that function for function level; the master key only for admin.
    /// Every candidate is compared, in constant time.
    pub fn authorize(
        &self,
        level: AuthLevel,
        function: &str,
        presented: Option<&str>,
    ) -> Option<KeyKind> {
        if level == AuthLevel::Anonymous {
            return Some(KeyKind::Anonymous);
        }
        let presented = presented?.as_bytes();
        if presented.is_empty() {
            return None;
        }
        let mut found = None;
        if constant_time_eq(presented, self.master.as_bytes()) {
            found = Some(KeyKind::Master);
        }
        if level == AuthLevel::Admin {
            return found;
        }
        for (name, key) in &self.host {
            if constant_time_eq(presented, key.as_bytes()) && found.is_none() {
                found = Some(KeyKind::Host(name.clone()));
            }
        }
        if let Some(keys) = self.function_keys(function) {
            for (name, key) in keys {
                if constant_time_eq(presented, key.as_bytes()) && found.is_none() {
                    found = Some(KeyKind::Function(name.clone()));
                }
            }
        }
        found
    }

    /// Whether `presented` is the master key (constant time).
    pub fn is_master(&self, presented: Option<&str>) -> bool {
        presented.is_some_and(|p| {
            !p.is_empty() && constant_time_eq(p.as_bytes(), self.master.as_bytes())
        })
    }

    fn check(&self) -> Result<(), String> {
        if self.master.is_empty() {
            return Err("the master key is empty".into());
        }
        let empty_host = self.host.values().any(String::is_empty);
        let empty_function = self
            .functions
            .values()
            .flat_map(|k| k.values())
            .any(String::is_empty);
        if empty_host || empty_function {
            return Err("a key is empty".into());
        }
        Ok(())
    }
}

/// A new key: 40 bytes from the system's cryptographic random source, in
/// base64url without padding.
pub fn generate_key() -> Result<String, KeyError> {
    let mut bytes = [0u8; KEY_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| KeyError::Random(e.to_string()))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

fn check_name(name: &str) -> Result<(), KeyError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(KeyError::InvalidName(name.to_owned()))
    }
}

/// The keys of an app, kept in a file (or in memory only) and shared by
/// the HTTP front and the `fnhost keys` commands.
///
/// When a key presented to [`KeyStore::authorize`] matches nothing, the
/// store looks whether the file changed on disk (for example by
/// `fnhost keys new` while the server runs) and, if so, reloads it before
/// answering.
pub struct KeyStore {
    path: Option<PathBuf>,
    state: RwLock<State>,
}

struct State {
    secrets: Secrets,
    modified: Option<SystemTime>,
}

impl fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl KeyStore {
    /// The default secrets file of the app in `app_root`:
    /// `APP_ROOT/.fnhost/secrets.json`.
    pub fn default_path(app_root: &Path) -> PathBuf {
        app_root.join(STATE_DIR).join(SECRETS_FILE)
    }

    /// Opens the secrets file at `path`, creating it with new keys (and its
    /// folder) when it does not exist.
    pub fn open(path: impl Into<PathBuf>) -> Result<KeyStore, KeyError> {
        let path = path.into();
        let (secrets, modified) = match read(&path)? {
            Some(found) => found,
            None => {
                let secrets = Secrets::generate()?;
                let modified = write(&path, &secrets)?;
                (secrets, modified)
            }
        };
        Ok(KeyStore {
            path: Some(path),
            state: RwLock::new(State { secrets, modified }),
        })
    }

    /// A store with new keys that lives in memory only (for tests and
    /// embedders that manage keys themselves).
    pub fn in_memory() -> Result<KeyStore, KeyError> {
        Ok(KeyStore::from_secrets(Secrets::generate()?))
    }

    /// A store in memory with these keys.
    pub fn from_secrets(secrets: Secrets) -> KeyStore {
        KeyStore {
            path: None,
            state: RwLock::new(State {
                secrets,
                modified: None,
            }),
        }
    }

    /// The secrets file, if the store has one.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// A copy of the keys.
    pub fn secrets(&self) -> Secrets {
        self.read_state().secrets.clone()
    }

    /// The master key.
    pub fn master_key(&self) -> String {
        self.read_state().secrets.master.clone()
    }

    /// Makes sure each of `functions` has a key (a `default` one is made
    /// where it has none); saves when anything was added.
    pub fn ensure_function_keys<'a>(
        &self,
        functions: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), KeyError> {
        let mut missing = Vec::new();
        {
            let state = self.read_state();
            for f in functions {
                if state
                    .secrets
                    .function_keys(f)
                    .is_none_or(BTreeMap::is_empty)
                {
                    missing.push(f.to_owned());
                }
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        self.update(|s| {
            for f in &missing {
                s.function_keys_mut(f)
                    .insert(DEFAULT_KEY_NAME.to_owned(), generate_key()?);
            }
            Ok(())
        })
    }

    /// Replaces the master key; returns the new one.
    pub fn rotate_master(&self) -> Result<String, KeyError> {
        self.put_new_key(|s, key| s.master = key)
    }

    /// Sets the host key `name` to a new key (adding or replacing it);
    /// returns it.
    pub fn new_host_key(&self, name: &str) -> Result<String, KeyError> {
        check_name(name)?;
        self.put_new_key(|s, key| {
            s.host.insert(name.to_owned(), key);
        })
    }

    /// Sets the key `name` of `function` to a new key (adding or
    /// replacing it); returns it.
    pub fn new_function_key(&self, function: &str, name: &str) -> Result<String, KeyError> {
        check_name(name)?;
        self.put_new_key(|s, key| {
            s.function_keys_mut(function).insert(name.to_owned(), key);
        })
    }

    /// Removes the host key `name`; whether there was one.
    pub fn revoke_host_key(&self, name: &str) -> Result<bool, KeyError> {
        self.remove_key(|s| s.host.remove(name).is_some())
    }

    /// Removes the key `name` of `function` (its name compared without
    /// case); whether there was one.
    pub fn revoke_function_key(&self, function: &str, name: &str) -> Result<bool, KeyError> {
        self.remove_key(|s| {
            s.functions
                .iter_mut()
                .find(|(n, _)| n.eq_ignore_ascii_case(function))
                .is_some_and(|(_, keys)| keys.remove(name).is_some())
        })
    }

    /// Checks a presented key for a function of this auth level (see
    /// [`Secrets::authorize`]), reloading the file first if it changed
    /// since it was read and the key matches nothing.
    pub fn authorize(
        &self,
        level: AuthLevel,
        function: &str,
        presented: Option<&str>,
    ) -> Option<KeyKind> {
        if let Some(kind) = self
            .read_state()
            .secrets
            .authorize(level, function, presented)
        {
            return Some(kind);
        }
        if presented.is_some() && self.reload_if_changed() {
            return self
                .read_state()
                .secrets
                .authorize(level, function, presented);
        }
        None
    }

    /// Whether `presented` is the master key (reloading as
    /// [`KeyStore::authorize`] does).
    pub fn is_master(&self, presented: Option<&str>) -> bool {
        self.authorize(AuthLevel::Admin, "", presented).is_some()
    }

    /// Reloads the file if its modification time changed; whether it did.
    fn reload_if_changed(&self) -> bool {
        let Some(path) = &self.path else {
            return false;
        };
        let modified = fs::metadata(path).and_then(|m| m.modified()).ok();
        if modified.is_none() || modified == self.read_state().modified {
            return false;
        }
        match read(path) {
            Ok(Some((secrets, modified))) => {
                let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
                *state = State { secrets, modified };
                true
            }
            _ => false,
        }
    }

    fn read_state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes a new key, puts it where `place` says and saves; returns it.
    fn put_new_key(&self, place: impl FnOnce(&mut Secrets, String)) -> Result<String, KeyError> {
        let key = generate_key()?;
        let out = key.clone();
        self.update(|s| {
            place(s, key);
            Ok(())
        })?;
        Ok(out)
    }

    /// Removes a key as `remove` says (which tells whether there was one)
    /// and saves; whether there was one.
    fn remove_key(&self, remove: impl FnOnce(&mut Secrets) -> bool) -> Result<bool, KeyError> {
        let mut found = false;
        self.update(|s| {
            found = remove(s);
            Ok(())
        })?;
        Ok(found)
    }

    /// Applies a change and saves it; on error nothing changes.
    fn update(
        &self,
        change: impl FnOnce(&mut Secrets) -> Result<(), KeyError>,
    ) -> Result<(), KeyError> {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        // Start from the file when it changed underneath us.
        if let Some(path) = &self.path
            && let Ok(Some((secrets, modified))) = read(path)
            && modified != state.modified
        {
            *state = State { secrets, modified };
        }
        let mut secrets = state.secrets.clone();
        change(&mut secrets)?;
        let modified = match &self.path {
            Some(path) => write(path, &secrets)?,
            None => None,
        };
        *state = State { secrets, modified };
        Ok(())
    }
}

/// Reads a secrets file; `None` when it does not exist.
fn read(path: &Path) -> Result<Option<(Secrets, Option<SystemTime>)>, KeyError> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(KeyError::Io {
                path: path.to_owned(),
                source,
            });
        }
    };
    let modified = fs::metadata(path).and_then(|m| m.modified()).ok();
    let secrets: Secrets = serde_json::from_str(&text).map_err(|e| KeyError::Invalid {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    secrets.check().map_err(|message| KeyError::Invalid {
        path: path.to_owned(),
        message,
    })?;
    Ok(Some((secrets, modified)))
}

/// Writes a secrets file atomically with owner-only permissions; returns
/// its new modification time.
fn write(path: &Path, secrets: &Secrets) -> Result<Option<SystemTime>, KeyError> {
    let io_err = |source| KeyError::Io {
        path: path.to_owned(),
        source,
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    create_private_dir(dir).map_err(io_err)?;
    let text = serde_json::to_string_pretty(secrets).map_err(|e| KeyError::Invalid {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| SECRETS_FILE.to_owned());
    let suffix = generate_key()?;
    let tmp = dir.join(format!(".{file_name}.{}.tmp", &suffix[..12]));
    let result = (|| {
        let mut file = create_private_file(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.write_all(b"\n")?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)?;
        if let Ok(d) = fs::File::open(dir) {
            // Make the rename durable; not every platform can sync a folder.
            let _ = d.sync_all();
        }
        fs::metadata(path).and_then(|m| m.modified())
    })();
    match result {
        Ok(modified) => Ok(Some(modified)),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(io_err(e))
        }
    }
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)
}

#[cfg(unix)]
fn create_private_file(path: &Path) -> io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn create_private_file(path: &Path) -> io::Result<fs::File> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_long_random_and_url_safe() {
        let a = generate_key().unwrap();
        let b = generate_key().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 54);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
    }

    #[test]
    fn levels_accept_the_right_keys() {
        let mut s = Secrets::generate().unwrap();
        s.functions.insert(
            "Hello".into(),
            BTreeMap::from([("default".to_owned(), "fkey".to_owned())]),
        );
        s.functions.insert(
            "Other".into(),
            BTreeMap::from([("default".to_owned(), "okey".to_owned())]),
        );
        let master = s.master.clone();
        let host = s.host["default"].clone();
        use AuthLevel::*;
        assert_eq!(
            s.authorize(Anonymous, "hello", None),
            Some(KeyKind::Anonymous)
        );
        assert_eq!(s.authorize(Function, "hello", None), None);
        assert_eq!(s.authorize(Function, "hello", Some("")), None);
        assert_eq!(
            s.authorize(Function, "hello", Some("fkey")),
            Some(KeyKind::Function("default".into()))
        );
        assert_eq!(s.authorize(Function, "hello", Some("okey")), None);
        assert_eq!(
            s.authorize(Function, "hello", Some(&host)),
            Some(KeyKind::Host("default".into()))
        );
        assert_eq!(
            s.authorize(Function, "hello", Some(&master)),
            Some(KeyKind::Master)
        );
        assert_eq!(s.authorize(Admin, "hello", Some(&host)), None);
        assert_eq!(s.authorize(Admin, "hello", Some("fkey")), None);
        assert_eq!(
            s.authorize(Admin, "hello", Some(&master)),
            Some(KeyKind::Master)
        );
        assert!(format!("{s:?}").contains("redacted"));
        assert!(!format!("{s:?}").contains(&master));
    }

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
