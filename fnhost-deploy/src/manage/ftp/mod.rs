//! FTPS for the apps of a [`Site`] (feature `ftp`): `fnhost manage
//! --ftp-port`. Each app's active content, as Azure's FTP endpoint shows
//! it (`/site/wwwroot`), over explicit TLS (`AUTH TLS`).
//!
//! ```no_run
//! # async fn run() -> fnhost_deploy::Result<()> {
//! use fnhost_deploy::Site;
//! use fnhost_deploy::manage::ftp::Ftp;
//!
//! let site = Site::open(".fnhost")?;
//! let ftp = Ftp::new(site)
//!     .with_tls("cert.pem", "key.pem")?
//!     .with_passive_ports(50000..=50099);
//! let server = ftp.bind("127.0.0.1:2121".parse().unwrap()).await
//!     .map_err(|e| fnhost_deploy::Error::Io { what: "cannot listen", path: "ftp".into(), source: e })?;
//! println!("ftp on {}", server.local_addr());
//! server.serve(std::future::pending()).await;
//! # Ok(()) }
//! ```
//!
//! - **Users** are `APP\USER` (Azure's form; `APP__SLOT\USER` for another
//!   slot, as Azure names a slot's site) with the app's deployment
//!   credentials ([`Site::check_credentials`], argon2). Failed logins are
//!   throttled per client address as the HTTP endpoint's are.
//! - **TLS** is required before `USER` (control channel) and for every
//!   transfer (data channel), unless built with [`Ftp::plain`].
//! - **Changes are staged.** Uploads, deletes, folders made and renames
//!   land in a staging area of the session; when the session ends (`QUIT`
//!   or the connection drops) they become **one** new deployment: the
//!   slot's active content at that moment with the changes applied,
//!   validated and activated like any other. An upload cut short never
//!   reaches it (over TLS a truncated transfer is an error); a deployment
//!   that fails leaves the previous one active.
//! - **Read-only** when the slot follows continuous deployment: every
//!   change is refused (`550 Permission denied`), the reason is logged and
//!   shown in `/READ-ONLY.txt` (libunftp's replies have fixed texts).

mod session;

use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use libunftp::options::FtpsRequired;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::rustls::ServerConfig;
use unftp_core::auth::{
    AuthenticationError, Authenticator, Credentials, Principal, UserDetail, UserDetailError,
    UserDetailProvider,
};

use super::auth::Throttle;
use super::{Limits, LogSink};
use crate::site::{PRODUCTION, Site, check_name};

/// The FTP(S) endpoint of a [`Site`]: configure it, then [`Ftp::bind`].
pub struct Ftp {
    site: Site,
    tls: Option<Arc<ServerConfig>>,
    plain: bool,
    passive_ports: RangeInclusive<u16>,
    limits: Limits,
    log: LogSink,
}

impl fmt::Debug for Ftp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ftp")
            .field("site", &self.site.home())
            .field("tls", &self.tls.is_some())
            .field("plain", &self.plain)
            .field("passive_ports", &self.passive_ports)
            .finish_non_exhaustive()
    }
}

impl Ftp {
    /// The endpoint of `site`: no TLS yet (give [`Ftp::with_tls`], or
    /// [`Ftp::plain`]), passive ports 49152 to 65535, default [`Limits`].
    pub fn new(site: Site) -> Ftp {
        Ftp {
            site,
            tls: None,
            plain: false,
            passive_ports: 49152..=65535,
            limits: Limits::default(),
            log: fnhost_core::timer::tracing_log(),
        }
    }

    /// Explicit TLS with this certificate chain and key (PEM, as
    /// [`super::Manage::with_tls`] takes them). Fails naming the file.
    pub fn with_tls(
        mut self,
        cert_chain_pem: impl AsRef<Path>,
        key_pem: impl AsRef<Path>,
    ) -> crate::Result<Self> {
        let config = super::tls::server_config(cert_chain_pem.as_ref(), key_pem.as_ref())?;
        self.tls = Some(Arc::new(config));
        Ok(self)
    }

    /// Allows plain FTP: passwords and files in clear text. Only for a
    /// trusted network. With TLS configured too, TLS stays optional.
    pub fn plain(mut self) -> Self {
        self.plain = true;
        self
    }

    /// The ports passive data connections use (on the control
    /// connection's local address).
    pub fn with_passive_ports(mut self, ports: RangeInclusive<u16>) -> Self {
        self.passive_ports = ports;
        self
    }

    /// The limits: `max_upload_bytes` caps what one session stages, the
    /// `auth_*` fields throttle failed logins, `shutdown_timeout` bounds
    /// how long shutdown waits for sessions.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Sends log lines (logins, refusals, deployments) to `log`.
    /// Default: [`tracing_log`](fnhost_core::timer::tracing_log), each
    /// line a `tracing` event.
    pub fn with_log(mut self, log: LogSink) -> Self {
        self.log = log;
        self
    }

    /// Whether it speaks TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Binds the control port. Fails when neither TLS nor plain FTP was
    /// configured.
    pub async fn bind(self, addr: SocketAddr) -> io::Result<FtpServer> {
        if self.tls.is_none() && !self.plain {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "FTPS needs a certificate and key (--tls-cert, --tls-key); plain FTP only when asked for (--ftp-plain)",
            ));
        }
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let tmp = staging_root(self.site.home())?;
        Ok(FtpServer {
            listener,
            local_addr,
            shared: Arc::new(Shared {
                config: self,
                throttle: Throttle::default(),
                tmp,
                commits: Mutex::new(Vec::new()),
            }),
        })
    }
}

/// Where sessions stage their changes: `HOME/manage/ftp/PID-RANDOM`,
/// left-overs of processes that are gone removed.
fn staging_root(home: &Path) -> io::Result<PathBuf> {
    let root = home.join("manage").join("ftp");
    std::fs::create_dir_all(&root)?;
    if let Ok(entries) = std::fs::read_dir(&root) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let pid = name.split('-').next().unwrap_or("");
            if pid.is_empty() || !Path::new("/proc").join(pid).exists() {
                let _ = crate::fsutil::remove_tree(&e.path());
            }
        }
    }
    let dir = root.join(format!(
        "{}-{}",
        std::process::id(),
        crate::fsutil::random_hex(4)
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// What every session shares.
struct Shared {
    /// What the endpoint was configured with.
    config: Ftp,
    throttle: Throttle,
    tmp: PathBuf,
    /// Deployments made from ended sessions, still running.
    commits: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("site", &self.config.site.home())
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn log(&self, line: &str) {
        (self.config.log)(line);
    }

    /// A libunftp server for one connection.
    fn server(
        self: &Arc<Self>,
    ) -> Result<libunftp::Server<session::SessionFs, FtpUser>, libunftp::ServerError> {
        let shared = self.clone();
        let storage = Box::new(move || session::SessionFs::new(shared.clone()));
        let mut builder = libunftp::ServerBuilder::with_user_detail_provider(
            storage,
            Arc::new(Users) as Arc<dyn UserDetailProvider<User = FtpUser> + Send + Sync>,
        )
        .authenticator(Arc::new(Auth(self.clone())))
        .greeting("fnhost FTP: log in as APP\\USER with the app's deployment credentials")
        .passive_ports(self.config.passive_ports.clone());
        if let Some(tls) = &self.config.tls {
            let required = if self.config.plain {
                FtpsRequired::None
            } else {
                FtpsRequired::All
            };
            builder = builder
                .ftps_manual::<PathBuf>(tls.clone())
                .ftps_required(required, required);
        }
        builder.build()
    }

    /// Remembers a deployment running on its thread (shutdown waits).
    fn add_commit(&self, handle: std::thread::JoinHandle<()>) {
        let mut commits = self.commits.lock().unwrap_or_else(|e| e.into_inner());
        commits.retain(|h| !h.is_finished());
        commits.push(handle);
    }
}

/// A bound FTP endpoint; [`FtpServer::serve`] runs it.
pub struct FtpServer {
    listener: TcpListener,
    local_addr: SocketAddr,
    shared: Arc<Shared>,
}

impl fmt::Debug for FtpServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FtpServer")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl FtpServer {
    /// The control port's address (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Whether it speaks TLS.
    pub fn is_tls(&self) -> bool {
        self.shared.config.tls.is_some()
    }

    /// Serves until `shutdown` resolves; then stops accepting, lets the
    /// sessions end up to [`Limits::shutdown_timeout`] (then closes them:
    /// their changes are deployed as at any disconnect), and waits for
    /// the deployments of ended sessions.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let FtpServer {
            listener, shared, ..
        } = self;
        let mut sessions = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => match shared.server() {
                        Ok(server) => {
                            let _ = stream.set_nodelay(true);
                            sessions.spawn(async move {
                                let _ = server.service(stream).await;
                                peer
                            });
                        }
                        Err(e) => shared.log(&format!("ftp: cannot serve {peer}: {e}")),
                    },
                    Err(e) => {
                        shared.log(&format!("ftp: accept failed: {e}"));
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
            while sessions.try_join_next().is_some() {}
        }
        drop(listener);
        let deadline = shared.config.limits.shutdown_timeout;
        let drained = tokio::time::timeout(deadline, async {
            while sessions.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            shared.log("ftp: closing the sessions still open");
            sessions.abort_all();
            while sessions.join_next().await.is_some() {}
        }
        let commits =
            std::mem::take(&mut *shared.commits.lock().unwrap_or_else(|e| e.into_inner()));
        let _ = tokio::task::spawn_blocking(move || {
            for c in commits {
                let _ = c.join();
            }
        })
        .await;
        let _ = crate::fsutil::remove_tree(&shared.tmp);
    }
}

/// A logged-in FTP user: the app and slot it works on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FtpUser {
    /// The app.
    pub app: String,
    /// The slot.
    pub slot: String,
    /// The deployment user.
    pub user: String,
}

impl fmt::Display for FtpUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.slot == PRODUCTION {
            write!(f, "{}\\{}", self.app, self.user)
        } else {
            write!(f, "{}__{}\\{}", self.app, self.slot, self.user)
        }
    }
}

impl UserDetail for FtpUser {}

impl FtpUser {
    /// Reads `APP\USER` or `APP__SLOT\USER` (Azure's FTP user names).
    pub fn parse(name: &str) -> Option<FtpUser> {
        let (site, user) = name.split_once('\\')?;
        let (app, slot) = site.split_once("__").unwrap_or((site, PRODUCTION));
        if user.is_empty() || check_name("app", app).is_err() || check_name("slot", slot).is_err() {
            return None;
        }
        Some(FtpUser {
            app: app.to_string(),
            slot: slot.to_string(),
            user: user.to_string(),
        })
    }
}

/// Checks `APP\USER` and the password against the app's deployment
/// credentials, throttled per client address.
#[derive(Debug)]
struct Auth(Arc<Shared>);

#[async_trait]
impl Authenticator for Auth {
    async fn authenticate(
        &self,
        username: &str,
        creds: &Credentials,
    ) -> Result<Principal, AuthenticationError> {
        let shared = &self.0;
        let ip: IpAddr = creds.source_ip;
        if shared.throttle.locked(ip).is_some() {
            shared.log(&format!(
                "ftp: {ip}: locked out after failed logins; refused {username}"
            ));
            return Err(AuthenticationError::new("too many failed logins"));
        }
        let limits = &shared.config.limits;
        let fail = |why: &str| {
            shared.throttle.failed(
                ip,
                limits.auth_free_failures,
                limits.auth_lockout,
                limits.auth_max_lockout,
            );
            shared.log(&format!("ftp: failed login {username:?} from {ip}: {why}"));
        };
        let Some(user) = FtpUser::parse(username) else {
            fail("not APP\\USER");
            return Err(AuthenticationError::BadUser);
        };
        let Some(password) = creds.password.clone() else {
            fail("no password");
            return Err(AuthenticationError::BadPassword);
        };
        let site = shared.config.site.clone();
        let (app, name) = (user.app.clone(), user.user.clone());
        // argon2 takes tens of milliseconds: off the async threads.
        let checked =
            tokio::task::spawn_blocking(move || site.check_credentials(&app, &name, &password))
                .await;
        match checked {
            Ok(Ok(true)) => {
                shared.throttle.succeeded(ip);
                shared.log(&format!("ftp: {user} logged in from {ip}"));
                Ok(Principal {
                    username: username.to_string(),
                })
            }
            Ok(Ok(false)) => {
                fail("wrong user or password");
                Err(AuthenticationError::BadPassword)
            }
            Ok(Err(e)) => {
                fail(&e.to_string());
                Err(AuthenticationError::BadUser)
            }
            Err(_) => Err(AuthenticationError::new("the check stopped")),
        }
    }
}

/// Turns the authenticated name into an [`FtpUser`].
#[derive(Debug)]
struct Users;

#[async_trait]
impl UserDetailProvider for Users {
    type User = FtpUser;

    async fn provide_user_detail(&self, principal: &Principal) -> Result<FtpUser, UserDetailError> {
        FtpUser::parse(&principal.username).ok_or_else(|| UserDetailError::UserNotFound {
            username: principal.username.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn azure_user_names() {
        let u = FtpUser::parse("shop\\$shop").expect("parses");
        assert_eq!(
            (u.app.as_str(), u.slot.as_str(), u.user.as_str()),
            ("shop", "production", "$shop")
        );
        let u = FtpUser::parse("shop__staging\\ada").expect("parses");
        assert_eq!((u.app.as_str(), u.slot.as_str()), ("shop", "staging"));
        assert_eq!(u.to_string(), "shop__staging\\ada");
        for bad in [
            "shop",
            "shop\\",
            "\\ada",
            "sh op\\ada",
            "shop__\\ada",
            "../x\\ada",
        ] {
            assert!(FtpUser::parse(bad).is_none(), "{bad}");
        }
    }
}
