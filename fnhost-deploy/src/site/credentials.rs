//! App-level deployment credentials: a user name and an argon2id hash of
//! the password, in a file only the owner can read. Passwords are never
//! stored, printed or logged.

use std::fs;
use std::io;

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use serde::{Deserialize, Serialize};

use super::Site;
use crate::deployment;
use crate::error::{Error, IoContext, Result};
use crate::fsutil;

/// The shortest password accepted.
pub const MIN_PASSWORD_LEN: usize = 8;

#[derive(Debug, Serialize, Deserialize)]
struct CredentialsFile {
    user: String,
    /// argon2id PHC string.
    hash: String,
    updated_time: String,
}

/// An argon2id PHC string of `password` with a new random salt, or why
/// not.
pub(crate) fn hash_password(password: &str) -> std::result::Result<String, String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| format!("no randomness for the salt: {e}"))?;
    Argon2::default()
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("cannot hash the password: {e}"))
}

/// Whether `password` matches the argon2 PHC string `hash`.
pub(crate) fn verify_password(password: &str, hash: &str) -> bool {
    Argon2::default()
        .verify_password(password.as_bytes(), hash)
        .is_ok()
}

/// Whether `user` is a valid user name: 1 to 64 ASCII letters, digits,
/// `.`, `_`, `-`, `$` or `@`.
pub(crate) fn valid_user(user: &str) -> bool {
    !user.is_empty()
        && user.len() <= 64
        && user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-$@".contains(&b))
}

fn check_user(app: &str, user: &str) -> Result<()> {
    if valid_user(user) {
        Ok(())
    } else {
        Err(Error::Credentials {
            app: app.into(),
            message: format!(
                "invalid user name {user:?}: use 1 to 64 ASCII letters, digits, `.`, `_`, `-`, `$` or `@`"
            ),
        })
    }
}

impl Site {
    /// Sets the app's deployment credentials (replacing any).
    pub fn set_credentials(&self, app: &str, user: &str, password: &str) -> Result<()> {
        self.require_app(app)?;
        check_user(app, user)?;
        if password.chars().count() < MIN_PASSWORD_LEN {
            return Err(Error::Credentials {
                app: app.into(),
                message: format!(
                    "the password is too short: use at least {MIN_PASSWORD_LEN} characters"
                ),
            });
        }
        let hash = hash_password(password).map_err(|message| Error::Credentials {
            app: app.into(),
            message,
        })?;
        let file = CredentialsFile {
            user: user.into(),
            hash,
            updated_time: deployment::now(),
        };
        let path = self.app_dir(app).join("credentials.json");
        let data = serde_json::to_vec_pretty(&file).map_err(io::Error::other);
        let data = data.ctx("cannot write", &path)?;
        let _lock = self.app_lock(app)?;
        fsutil::atomic_write(
            &path,
            &self.app_dir(app).join(".credentials.tmp"),
            &data,
            0o600,
        )
        .ctx("cannot write", &path)
    }

    /// Whether `user` and `password` are the app's deployment credentials.
    /// Fails when the app has none.
    pub fn check_credentials(&self, app: &str, user: &str, password: &str) -> Result<bool> {
        self.require_app(app)?;
        let path = self.app_dir(app).join("credentials.json");
        let data = match fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Error::Credentials {
                    app: app.into(),
                    message: format!(
                        "no deployment credentials; set them with `fnhost credentials set {app} --user NAME`"
                    ),
                });
            }
            Err(e) => return Err(Error::io("cannot read", path, e)),
        };
        let file: CredentialsFile = serde_json::from_slice(&data).map_err(|e| Error::Corrupt {
            path: path.clone(),
            message: e.to_string(),
        })?;
        // Verify even for a wrong user, so that timing tells nothing.
        let good = verify_password(password, &file.hash);
        Ok(good && file.user == user)
    }

    /// Sets new credentials for `user` with a generated password, returned
    /// once to the caller (24 characters from letters and digits).
    pub fn reset_credentials(&self, app: &str, user: &str) -> Result<String> {
        const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
        let mut raw = [0u8; 24];
        getrandom::fill(&mut raw).map_err(|e| Error::Credentials {
            app: app.into(),
            message: format!("no randomness for the password: {e}"),
        })?;
        // 256 is not a multiple of the alphabet's size; the bias is tiny and
        // irrelevant at 24 characters of ~5.8 bits.
        let password: String = raw
            .iter()
            .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
            .collect();
        self.set_credentials(app, user, &password)?;
        Ok(password)
    }

    /// The app's deployment user, when credentials are set.
    pub fn credentials_user(&self, app: &str) -> Result<Option<String>> {
        self.require_app(app)?;
        let path = self.app_dir(app).join("credentials.json");
        match fs::read(&path) {
            Ok(d) => {
                let f: CredentialsFile =
                    serde_json::from_slice(&d).map_err(|e| Error::Corrupt {
                        path: path.clone(),
                        message: e.to_string(),
                    })?;
                Ok(Some(f.user))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("cannot read", path, e)),
        }
    }

    /// A value that changes whenever the app's deployment credentials
    /// change (set, reset), without reading them: lets a server cache a
    /// successful check until then. `None` when the app has none.
    pub fn credentials_version(&self, app: &str) -> Result<Option<String>> {
        use std::os::unix::fs::MetadataExt as _;
        self.require_app(app)?;
        let path = self.app_dir(app).join("credentials.json");
        match fs::metadata(&path) {
            Ok(m) => Ok(Some(format!(
                "{}:{}:{}.{}",
                m.ino(),
                m.len(),
                m.mtime(),
                m.mtime_nsec()
            ))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("cannot read", path, e)),
        }
    }
}
