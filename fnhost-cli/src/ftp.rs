//! `fnhost manage --ftp-port P`: the apps' content over FTPS
//! (`fnhost_deploy::manage::ftp`), beside the management endpoint.

use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::PathBuf;

use fnhost_deploy::Site;
use fnhost_deploy::manage::ftp::{Ftp, FtpServer};
use fnhost_deploy::manage::{Limits, LogSink};

use crate::Failure;

/// The FTP options of `fnhost manage`.
#[derive(Debug, clap::Args)]
pub(crate) struct FtpArgs {
    /// Also serve each app's active content over FTPS (explicit TLS, with
    /// --tls-cert and --tls-key) on this port (0: any free port); users
    /// APP\USER with the app's deployment credentials.
    #[arg(long, value_name = "PORT")]
    ftp_port: Option<u16>,
    /// Allow plain FTP (passwords and files in clear text): only on a
    /// trusted network. Without --tls-cert it is the only way in.
    #[arg(long, requires = "ftp_port")]
    ftp_plain: bool,
    /// The ports of passive data connections, FIRST-LAST.
    #[arg(long, value_name = "FIRST-LAST", requires = "ftp_port", value_parser = port_range)]
    ftp_passive_ports: Option<RangeInclusive<u16>>,
}

fn port_range(s: &str) -> Result<RangeInclusive<u16>, String> {
    let (a, b) = s
        .split_once('-')
        .ok_or_else(|| format!("{s:?}: give FIRST-LAST, such as 50000-50099"))?;
    let parse = |p: &str| {
        p.trim()
            .parse::<u16>()
            .map_err(|_| format!("{p:?} is not a port"))
    };
    let (a, b) = (parse(a)?, parse(b)?);
    if a == 0 || a > b {
        return Err(format!(
            "{s:?}: the first port must be 1 or more and not above the last"
        ));
    }
    Ok(a..=b)
}

/// Binds the FTP endpoint when --ftp-port was given.
pub(crate) async fn bind(
    args: &FtpArgs,
    site: Site,
    host: IpAddr,
    tls: Option<(&PathBuf, &PathBuf)>,
    limits: Limits,
    log: LogSink,
) -> Result<Option<FtpServer>, Failure> {
    let Some(port) = args.ftp_port else {
        return Ok(None);
    };
    let mut ftp = Ftp::new(site).with_limits(limits).with_log(log);
    if let Some((cert, key)) = tls {
        ftp = ftp
            .with_tls(cert, key)
            .map_err(|e| Failure::Usage(e.to_string()))?;
    } else if !args.ftp_plain {
        return Err(Failure::Usage(
            "--ftp-port serves FTPS: give --tls-cert and --tls-key (or --ftp-plain for plain FTP on a trusted network)".into(),
        ));
    }
    if args.ftp_plain {
        ftp = ftp.plain();
    }
    if let Some(ports) = &args.ftp_passive_ports {
        ftp = ftp.with_passive_ports(ports.clone());
    }
    let addr = SocketAddr::new(host, port);
    ftp.bind(addr)
        .await
        .map(Some)
        .map_err(|e| Failure::Usage(format!("cannot listen for FTP on {addr}: {e}")))
}
