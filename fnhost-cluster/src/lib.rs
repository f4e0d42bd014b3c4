//! fnhost-cluster: function apps distributed across workers, on one
//! machine and many (the 2017 on-premises runtime's management and worker
//! roles, redone).
//!
//! - [`state`]: the cluster's state (workers, join tokens, placements,
//!   assignments, leases, timer runs) behind [`state::StateStore`], with an
//!   embedded SQLite driver and a PostgreSQL one, one schema.
//! - [`manager`]: the management role's cluster API, mounted on `fnhost
//!   manage`'s router: registry, heartbeats, assignments (long-poll),
//!   content and manifests by digest, routes for gateways; and the leader
//!   (a lease in the state store) that places instances and fires timers.
//! - [`worker`]: the worker role: registers, heartbeats, pulls its
//!   assignments, fetches content by digest into a cache shared by every
//!   app and version, and runs each app with the engine `fnhost serve`
//!   uses.
//! - [`gateway`]: a stateless router by host name to ready instances,
//!   least in-flight of two random choices, keys checked, retries on
//!   connection failures.
//! - [`timers`]: timer triggers fired once per tick cluster-wide.
//!
//! `docs/cluster.md` walks through it from the command line.

pub mod client;
mod error;
pub mod gateway;
pub mod manager;
pub mod protocol;
pub mod state;
pub mod timers;
pub mod worker;

pub use error::{Error, Result};

/// Now, in Unix milliseconds (the unit of every time in the state store).
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The sha256 of `data`, in hex.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(data))
}

/// A new secret: 32 random bytes in hex.
pub fn random_secret() -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| Error::Invalid(format!("no random source: {e}")))?;
    Ok(hex::encode(bytes))
}

/// Parses `k=v,k2=v2` labels.
pub fn parse_labels(text: &str) -> Result<std::collections::BTreeMap<String, String>> {
    let mut labels = std::collections::BTreeMap::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((k, v)) = part.split_once('=') else {
            return Err(Error::Invalid(format!(
                "label '{part}' is not k=v (write --labels zone=a,gpu=yes)"
            )));
        };
        let k = k.trim();
        if k.is_empty() {
            return Err(Error::Invalid(format!("label '{part}' has no name")));
        }
        labels.insert(k.to_owned(), v.trim().to_owned());
    }
    Ok(labels)
}
