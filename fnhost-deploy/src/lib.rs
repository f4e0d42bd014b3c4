//! fnhost-deploy: deployments of function apps that are atomic, fast and
//! reversible.
//!
//! A [`Site`] is a home folder of apps, each with slots (`production` and
//! any others). A deployment takes a folder or a zip, stores its files in a
//! content-addressed [`store`] (each distinct content once, shared by every
//! deployment), validates the app with fnhost-core, materialises a
//! read-only folder, and activates it by one atomic rename of the slot's
//! pointer. A failure, even `kill -9` at any instant, leaves the previous
//! deployment active; the next run cleans up. Rollback and swap are pointer
//! switches.
//!
//! ```no_run
//! use fnhost_deploy::{Content, DeployRequest, Site};
//!
//! # fn main() -> Result<(), fnhost_deploy::Error> {
//! let site = Site::open(".fnhost")?;
//! site.create_app("orders")?;
//! let outcome = site.deploy(
//!     DeployRequest::new("orders", Content::Folder("./orders-app".into()))
//!         .with_message("first version")
//!         .with_author("ada"),
//! )?;
//! println!("active: {}", outcome.deployment.id);
//! let path = site.active_path("orders", "production")?; // what a host serves
//! # let _ = path;
//! site.rollback("orders", "production", None)?;
//! # Ok(())
//! # }
//! ```
//!
//! Modules: [`package`] (folders and zips in, zips out), [`store`] (blobs
//! and manifests behind the [`Store`] trait), [`deployment`] (records and
//! retention), [`site`] (apps, slots, activation, credentials), and with
//! the `hot-swap` feature `hot` (a host that follows a slot's active
//! deployment).

pub mod build;
pub mod cd;
mod codec;
pub mod deployment;
mod error;
mod fsutil;
#[cfg(feature = "hot-swap")]
pub mod hot;
pub mod kube;
#[cfg(feature = "server")]
pub mod manage;
pub mod monitor;
pub mod package;
pub mod site;
pub mod source;
mod statcache;
pub mod store;
#[cfg(feature = "testkit")]
pub mod testkit;
mod walk;

pub use deployment::{Deployment, Level, LogEntry, Report, ReportLine, Status};
pub use error::{Error, Result};
pub use package::ZipLimits;
pub use site::{
    Active, AppInfo, Content, ContinuousDeployment, DeployOutcome, DeployRequest, Observer,
    PRODUCTION, Site, SlotInfo,
};
pub use store::{Digest, Durability, FsStore, FsckReport, GcReport, Manifest, Store};
