//! Portal accounts: people who may sign in to the management portal and
//! manage every app of the home (an app's own deployment credentials reach
//! that app only). A name and an argon2id hash of the password each, in
//! `HOME/portal-users.json`, readable by the owner only. Passwords are
//! never stored, printed or logged.

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::credentials::{MIN_PASSWORD_LEN, hash_password, valid_user, verify_password};
use super::locks::lock_file;
use super::{Site, read_json_or_default};
use crate::deployment;
use crate::error::{Error, IoContext, Result};
use crate::fsutil;

/// A portal account as listed (never its password).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct PortalUser {
    /// The user name.
    pub name: String,
    /// When its password was last set.
    pub updated_time: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct UsersFile {
    users: BTreeMap<String, UserEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct UserEntry {
    /// argon2id PHC string.
    hash: String,
    updated_time: String,
}

fn account_error(user: &str, message: impl Into<String>) -> Error {
    Error::PortalUser {
        user: user.into(),
        message: message.into(),
    }
}

impl Site {
    fn portal_users_path(&self) -> PathBuf {
        self.home().join("portal-users.json")
    }

    fn read_portal_users(&self) -> Result<UsersFile> {
        let path = self.portal_users_path();
        read_json_or_default(&path)
    }

    /// Changes the accounts file under its lock, atomically.
    fn update_portal_users<T>(&self, f: impl FnOnce(&mut UsersFile) -> T) -> Result<T> {
        let _lock = lock_file(&self.home().join(".portal-users.lock"))?;
        let mut file = self.read_portal_users()?;
        let out = f(&mut file);
        let path = self.portal_users_path();
        let data = serde_json::to_vec_pretty(&file).map_err(io::Error::other);
        let data = data.ctx("cannot write", &path)?;
        let tmp = self.home().join(".portal-users.tmp");
        fsutil::atomic_write(&path, &tmp, &data, 0o600).ctx("cannot write", &path)?;
        Ok(out)
    }

    /// Adds a portal account, or sets a new password for it. The name is
    /// 1 to 64 ASCII letters, digits, `.`, `_`, `-`, `$` or `@`; the
    /// password at least [`MIN_PASSWORD_LEN`] characters.
    pub fn add_portal_user(&self, user: &str, password: &str) -> Result<()> {
        if !valid_user(user) {
            return Err(account_error(
                user,
                "invalid user name: use 1 to 64 ASCII letters, digits, `.`, `_`, `-`, `$` or `@`",
            ));
        }
        if password.chars().count() < MIN_PASSWORD_LEN {
            return Err(account_error(
                user,
                format!("the password is too short: use at least {MIN_PASSWORD_LEN} characters"),
            ));
        }
        let hash = hash_password(password).map_err(|m| account_error(user, m))?;
        let entry = UserEntry {
            hash,
            updated_time: deployment::now(),
        };
        self.update_portal_users(|f| {
            f.users.insert(user.to_string(), entry);
        })
    }

    /// Removes a portal account; fails when there is none of that name.
    /// Its sessions end at their next request.
    pub fn remove_portal_user(&self, user: &str) -> Result<()> {
        let removed = self.update_portal_users(|f| f.users.remove(user).is_some())?;
        if removed {
            Ok(())
        } else {
            Err(account_error(
                user,
                "no such portal user (see `fnhost portal users list`)",
            ))
        }
    }

    /// The portal accounts, by name.
    pub fn portal_users(&self) -> Result<Vec<PortalUser>> {
        Ok(self
            .read_portal_users()?
            .users
            .into_iter()
            .map(|(name, e)| PortalUser {
                name,
                updated_time: e.updated_time,
            })
            .collect())
    }

    /// Whether `user` and `password` are a portal account's: a stamp of
    /// the account (changes when its password is set again) when they
    /// are, `None` when not.
    pub fn check_portal_user(&self, user: &str, password: &str) -> Result<Option<String>> {
        let file = self.read_portal_users()?;
        match file.users.get(user) {
            Some(e) if verify_password(password, &e.hash) => Ok(Some(e.updated_time.clone())),
            Some(_) => Ok(None),
            None => {
                // The same work for an unknown user, so that timing tells
                // nothing.
                let _ = verify_password(password, dummy_hash());
                Ok(None)
            }
        }
    }

    /// The stamp of `user`'s account ([`Site::check_portal_user`]), `None`
    /// once it is removed.
    pub fn portal_user_stamp(&self, user: &str) -> Result<Option<String>> {
        Ok(self
            .read_portal_users()?
            .users
            .get(user)
            .map(|e| e.updated_time.clone()))
    }
}

/// A hash verified for unknown users (made once).
fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| hash_password("no such user, no such password").unwrap_or_default())
}
