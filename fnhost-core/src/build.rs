//! Build providers: how a snapshot of the source becomes the tree to
//! deploy (copy only, detected builds such as `npm ci`, a declared
//! pipeline).
//!
//! Implementations live in fnhost-deploy. A build always runs in a scratch
//! copy of the source, never in a live app. Providers are blocking.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::source::SourceSnapshot;

/// How important a build log line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    /// Progress.
    Info,
    /// Something to look at.
    Warning,
    /// A failure.
    Error,
}

/// Where a build streams its log (into the deployment record, a terminal...).
pub trait BuildLog: Send + Sync {
    /// Records one line.
    fn line(&self, level: LogLevel, line: &str);
}

impl fmt::Debug for dyn BuildLog + '_ {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BuildLog")
    }
}

/// A log that keeps nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoLog;

impl BuildLog for NoLog {
    fn line(&self, _level: LogLevel, _line: &str) {}
}

/// Everything a build needs.
#[derive(Debug)]
pub struct BuildContext<'a> {
    /// The scratch copy of the source to build in (`DEPLOYMENT_SOURCE`).
    pub source_dir: &'a Path,
    /// An empty folder for temporary files (`DEPLOYMENT_TEMP`).
    pub temp_dir: &'a Path,
    /// The snapshot being built (`SCM_COMMIT_ID`, `SCM_COMMIT_MESSAGE`).
    pub snapshot: &'a SourceSnapshot,
    /// Environment for build commands: the app settings.
    pub env: &'a [(String, String)],
    /// How long the whole build may take.
    pub timeout: Duration,
    /// Where log lines go.
    pub log: &'a dyn BuildLog,
}

impl BuildContext<'_> {
    /// The environment for build commands: the app settings, then the
    /// deployment variables (`DEPLOYMENT_SOURCE`, `DEPLOYMENT_TARGET`,
    /// `DEPLOYMENT_TEMP`, `SCM_COMMIT_ID`, `SCM_COMMIT_MESSAGE`).
    pub fn command_env(&self, target: &Path) -> Vec<(String, String)> {
        let mut env = self.env.to_vec();
        let path = |p: &Path| p.to_string_lossy().into_owned();
        env.push(("DEPLOYMENT_SOURCE".into(), path(self.source_dir)));
        env.push(("DEPLOYMENT_TARGET".into(), path(target)));
        env.push(("DEPLOYMENT_TEMP".into(), path(self.temp_dir)));
        env.push(("SCM_COMMIT_ID".into(), self.snapshot.id.clone()));
        env.push((
            "SCM_COMMIT_MESSAGE".into(),
            self.snapshot.message.clone().unwrap_or_default(),
        ));
        env
    }
}

/// What a build produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildOutput {
    /// The folder holding the tree to deploy (the source folder itself, or
    /// a folder inside it or beside it).
    pub dir: PathBuf,
    /// What was done, in a few words ("npm ci", "copy only").
    pub summary: String,
}

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A step failed.
    #[error("{provider}: step '{step}' failed: {message}")]
    StepFailed {
        /// The provider's name.
        provider: String,
        /// The step.
        step: String,
        /// What happened (exit code, the end of its output).
        message: String,
    },
    /// The build took longer than its timeout and was stopped.
    #[error("{provider}: the build took longer than {after:?} and was stopped")]
    Timeout {
        /// The provider's name.
        provider: String,
        /// The timeout.
        after: Duration,
    },
    /// The build definition is invalid.
    #[error("{provider}: {message}")]
    Invalid {
        /// The provider's name.
        provider: String,
        /// What is wrong, and where.
        message: String,
    },
    /// Anything else.
    #[error("{provider}: {message}")]
    Other {
        /// The provider's name.
        provider: String,
        /// What went wrong.
        message: String,
    },
}

impl BuildError {
    /// A [`BuildError::Other`] with a message.
    pub fn other(provider: &str, message: impl Into<String>) -> Self {
        BuildError::Other {
            provider: provider.to_owned(),
            message: message.into(),
        }
    }
}

/// Turns a snapshot into the tree to deploy.
///
/// # Contract
///
/// - [`BuildProvider::build`] works only inside `ctx.source_dir` and
///   `ctx.temp_dir` (scratch folders the caller owns), never in a live app.
/// - It streams progress to `ctx.log` as it goes, and stops (killing what it
///   started) when `ctx.timeout` passes.
/// - It returns the folder to deploy; the caller validates and stores it.
pub trait BuildProvider: Send + Sync + fmt::Debug {
    /// A short name, such as `none`, `auto` or `pipeline`.
    fn name(&self) -> &str;

    /// Builds.
    fn build(&self, ctx: &BuildContext<'_>) -> Result<BuildOutput, BuildError>;
}

crate::forward_impls! {
    impl<P> BuildProvider for [Arc<P>, Box<P>, &P] {
        fn name(&self) -> &str;
        fn build(&self, ctx: &BuildContext<'_>) -> Result<BuildOutput, BuildError>;
    }
}
