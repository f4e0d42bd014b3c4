//! Build providers: how a fetched snapshot becomes the tree to deploy.
//!
//! Each type here implements [`fnhost_core::build::BuildProvider`]:
//!
//! - [`NoneBuild`]: copy only, the source folder is deployed as it is;
//! - [`AutoBuild`]: detection like Azure's build service (`npm ci` or
//!   `npm install --omit=dev`, `pip install --target
//!   .python_packages/lib/site-packages`, `cargo build --release` for a
//!   custom handler);
//! - [`PipelineBuild`]: steps declared in `fnhost-build.json` in the
//!   source ([`Pipeline`]).
//!
//! Every build runs in `ctx.source_dir` (a scratch copy the caller made),
//! streams each output line to `ctx.log` as it comes, runs its commands
//! with `ctx.command_env(target)` on top of the inherited environment, and
//! stops when `ctx.timeout` passes, killing the whole process group of the
//! running command.
//!
//! ```no_run
//! use std::time::Duration;
//! use fnhost_core::build::{BuildContext, BuildProvider, NoLog};
//! use fnhost_core::source::SourceSnapshot;
//! use fnhost_deploy::build::AutoBuild;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let snapshot = SourceSnapshot::new("1f0c2a");
//! let ctx = BuildContext {
//!     source_dir: "/tmp/scratch/src".as_ref(),
//!     temp_dir: "/tmp/scratch/tmp".as_ref(),
//!     snapshot: &snapshot,
//!     env: &[],
//!     timeout: Duration::from_secs(600),
//!     log: &NoLog,
//! };
//! let output = AutoBuild::new().build(&ctx)?;
//! println!("deploy {} ({})", output.dir.display(), output.summary);
//! # Ok(())
//! # }
//! ```

mod auto;
mod none;
mod pipeline;
mod process;

pub use auto::AutoBuild;
pub use fnhost_core::build::{
    BuildContext, BuildError, BuildLog, BuildOutput, BuildProvider, LogLevel, NoLog,
};
pub use none::NoneBuild;
pub use pipeline::{Pipeline, PipelineBuild, PipelineStep};

use std::path::{Component, Path};

/// Whether a path from a build definition stays inside the source: relative,
/// with no `..`.
fn stays_inside(path: &str) -> bool {
    let path = Path::new(path);
    !path.as_os_str().is_empty()
        && path
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}
