//! Copy only.

use fnhost_core::build::{BuildContext, BuildError, BuildOutput, BuildProvider, LogLevel};

/// Deploys the source as it is: no command runs, the output is the source
/// folder.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoneBuild;

impl NoneBuild {
    /// The copy-only build.
    pub fn new() -> Self {
        NoneBuild
    }
}

impl BuildProvider for NoneBuild {
    fn name(&self) -> &str {
        "none"
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Result<BuildOutput, BuildError> {
        ctx.log.line(LogLevel::Info, "build: none (copy only)");
        Ok(BuildOutput {
            dir: ctx.source_dir.to_path_buf(),
            summary: "copy only".to_owned(),
        })
    }
}
