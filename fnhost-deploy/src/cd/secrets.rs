//! A source's credentials (a password or token, an SSH key) and the
//! webhook secret: stored owner-only beside the slot's configuration,
//! never printed.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use super::{ContinuousDeployer, io_err};
use crate::error::Error;

/// Credentials for a source, given once to [`ContinuousDeployer::configure`]
/// and stored owner-only under the home; never printed or logged.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SourceCredentials {
    /// A user and a password or token (git over HTTP(S)).
    Password {
        /// The user name.
        username: String,
        /// The password or token.
        password: String,
    },
    /// An SSH private key (git over SSH).
    SshKey {
        /// The user name (default: the URL's, else `git`).
        username: Option<String>,
        /// The private key's content.
        key: Vec<u8>,
    },
}

impl std::fmt::Debug for SourceCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceCredentials::Password { username, .. } => f
                .debug_struct("Password")
                .field("username", username)
                .finish_non_exhaustive(),
            SourceCredentials::SshKey { username, .. } => f
                .debug_struct("SshKey")
                .field("username", username)
                .finish_non_exhaustive(),
        }
    }
}

impl ContinuousDeployer {
    /// Sets (`Some`) or removes (`None`) the secret that webhooks to the
    /// slot are signed with (GitHub's `X-Hub-Signature-256`, GitLab's
    /// `X-Gitlab-Token`); stored owner-only, never printed. Removed by
    /// [`Self::clear`], kept by a new [`Self::configure`].
    pub fn set_webhook_secret(
        &self,
        app: &str,
        slot: &str,
        secret: Option<&[u8]>,
    ) -> Result<(), Error> {
        self.check(app, slot)?;
        let dir = self.cd_dir(app, slot);
        let path = dir.join("webhook_secret");
        match secret {
            Some([]) => Err(Error::InvalidSource {
                app: app.into(),
                slot: slot.into(),
                message: "the webhook secret is empty".into(),
            }),
            Some(s) => {
                fs::create_dir_all(&dir).map_err(io_err("cannot create", &dir))?;
                fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
                    .map_err(io_err("cannot protect", &dir))?;
                let tmp = dir.join(".webhook_secret.new");
                write_secret(&tmp, s)?;
                fs::rename(&tmp, &path).map_err(io_err("cannot write", &path))
            }
            None => crate::fsutil::remove_file_if_present(&path)
                .map_err(|e| Error::io("cannot remove", path, e)),
        }
    }

    /// The slot's webhook secret, if one is set.
    pub fn webhook_secret(&self, app: &str, slot: &str) -> Result<Option<Vec<u8>>, Error> {
        let path = self.cd_dir(app, slot).join("webhook_secret");
        match fs::read(&path) {
            Ok(d) => Ok(Some(d)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("cannot read", path, e)),
        }
    }
}

pub(super) fn write_secret(path: &Path, data: &[u8]) -> Result<(), Error> {
    let _ = fs::remove_file(path);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err("cannot write", path))?;
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .map_err(io_err("cannot write", path))
}
