//! A build declared in the source: `fnhost-build.json`.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use fnhost_core::build::{BuildContext, BuildError, BuildOutput, BuildProvider, LogLevel};
use serde::Deserialize;

use super::process::{self, Limits};

const PROVIDER: &str = "pipeline";

/// Runs the steps declared in [`Pipeline::FILE`] at the root of the source,
/// in order, stopping at the first that fails; then deploys the folder the
/// file names.
///
/// Each step's command runs through `sh -c` in its working directory, with
/// the inherited environment, then `ctx.command_env(target)` (the app
/// settings and `DEPLOYMENT_*`, `SCM_*` variables; `DEPLOYMENT_TARGET` is the
/// folder to deploy), then the step's own `env`.
#[derive(Debug, Clone, Default)]
pub struct PipelineBuild {
    shell: Option<String>,
}

impl PipelineBuild {
    /// Runs steps with `sh -c`.
    pub fn new() -> Self {
        PipelineBuild { shell: None }
    }

    /// Runs steps with this shell (`<shell> -c <command>`).
    pub fn with_shell(mut self, shell: impl Into<String>) -> Self {
        self.shell = Some(shell.into());
        self
    }
}

/// A pipeline file:
///
/// ```json
/// {
///   "steps": [
///     { "name": "install", "command": "npm ci" },
///     { "name": "bundle", "command": "npm run bundle -- --out $DEPLOYMENT_TARGET",
///       "env": { "NODE_ENV": "production" }, "working_directory": "web",
///       "timeout_seconds": 300 }
///   ],
///   "deploy": "dist"
/// }
/// ```
///
/// Unknown keys are refused, so that a misspelt key is not silently
/// ignored. `working_directory` and `deploy` are relative to the source
/// root and cannot leave it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pipeline {
    /// The steps, run in order.
    #[serde(default)]
    pub steps: Vec<PipelineStep>,
    /// The folder to deploy, relative to the source root (default: the
    /// root).
    #[serde(default)]
    pub deploy: Option<String>,
}

/// One step of a [`Pipeline`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineStep {
    /// What the log calls it.
    pub name: String,
    /// A shell command (`sh -c`).
    pub command: String,
    /// Extra environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Where it runs, relative to the source root (default: the root).
    #[serde(default)]
    pub working_directory: Option<String>,
    /// How long it may take, in seconds (default: what is left of the
    /// build's timeout).
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
}

impl Pipeline {
    /// The file, at the root of the source, that declares the pipeline.
    pub const FILE: &'static str = "fnhost-build.json";

    /// Parses and checks a pipeline file's text.
    pub fn parse(text: &str) -> Result<Pipeline, String> {
        let pipeline: Pipeline = serde_json::from_str(text).map_err(|e| {
            format!(
                "{}: line {}, column {}: {e}",
                Self::FILE,
                e.line(),
                e.column()
            )
        })?;
        for (i, step) in pipeline.steps.iter().enumerate() {
            let at = format!("{}: step {}", Self::FILE, i + 1);
            if step.name.trim().is_empty() {
                return Err(format!("{at}: the name is empty"));
            }
            if step.command.trim().is_empty() {
                return Err(format!("{at} ({}): the command is empty", step.name));
            }
            if let Some(dir) = &step.working_directory
                && !super::stays_inside(dir)
            {
                return Err(format!(
                    "{at} ({}): working_directory '{dir}' must be a relative path inside the source",
                    step.name
                ));
            }
            if step.timeout_seconds == Some(0) {
                return Err(format!(
                    "{at} ({}): timeout_seconds must be above 0",
                    step.name
                ));
            }
        }
        if let Some(dir) = &pipeline.deploy
            && !super::stays_inside(dir)
        {
            return Err(format!(
                "{}: deploy '{dir}' must be a relative path inside the source",
                Self::FILE
            ));
        }
        Ok(pipeline)
    }

    /// Reads the pipeline file of the source at `source_dir`.
    pub fn load(source_dir: &Path) -> Result<Pipeline, String> {
        let path = source_dir.join(Self::FILE);
        let text = fs::read_to_string(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                format!("the source has no {} at its root", Self::FILE)
            } else {
                format!("cannot read {}: {e}", Self::FILE)
            }
        })?;
        Self::parse(&text)
    }
}

impl BuildProvider for PipelineBuild {
    fn name(&self) -> &str {
        PROVIDER
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Result<BuildOutput, BuildError> {
        let src = ctx.source_dir;
        let invalid = |message: String| BuildError::Invalid {
            provider: PROVIDER.to_owned(),
            message,
        };
        let pipeline = Pipeline::load(src).map_err(invalid)?;
        let deploy = pipeline.deploy.as_deref().unwrap_or(".");
        let target = if deploy == "." {
            src.to_path_buf()
        } else {
            src.join(deploy)
        };
        let env = ctx.command_env(&target);
        let build_deadline = Instant::now() + ctx.timeout;
        let shell = self.shell.as_deref().unwrap_or("sh");
        ctx.log.line(
            LogLevel::Info,
            &format!(
                "pipeline: {} step(s) from {}",
                pipeline.steps.len(),
                Pipeline::FILE
            ),
        );
        for (i, step) in pipeline.steps.iter().enumerate() {
            let cwd = match &step.working_directory {
                Some(dir) => src.join(dir),
                None => src.to_path_buf(),
            };
            if !cwd.is_dir() {
                return Err(invalid(format!(
                    "step '{}': the working directory {} does not exist",
                    step.name,
                    step.working_directory.as_deref().unwrap_or(".")
                )));
            }
            ctx.log.line(
                LogLevel::Info,
                &format!(
                    "step {}/{} '{}': $ {}",
                    i + 1,
                    pipeline.steps.len(),
                    step.name,
                    step.command
                ),
            );
            let mut command = Command::new(shell);
            command
                .arg("-c")
                .arg(&step.command)
                .current_dir(&cwd)
                .envs(env.iter().map(|(k, v)| (k, v)))
                .envs(&step.env);
            let limits = Limits {
                build_deadline,
                build_timeout: ctx.timeout,
                step_timeout: step.timeout_seconds.map(Duration::from_secs),
            };
            process::run(PROVIDER, &step.name, command, ctx.log, &limits)?;
        }
        if !target.is_dir() {
            return Err(BuildError::StepFailed {
                provider: PROVIDER.to_owned(),
                step: "deploy".to_owned(),
                message: format!("the folder to deploy, {deploy}, does not exist after the steps"),
            });
        }
        let names: Vec<&str> = pipeline.steps.iter().map(|s| s.name.as_str()).collect();
        Ok(BuildOutput {
            dir: target,
            summary: if names.is_empty() {
                format!("pipeline: no step, deploy {deploy}")
            } else {
                format!("pipeline: {}; deploy {deploy}", names.join(", "))
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Pipeline;

    #[test]
    fn parses_and_checks() {
        let p = Pipeline::parse(
            r#"{"steps":[{"name":"a","command":"true","env":{"X":"1"},"working_directory":"web","timeout_seconds":5}],"deploy":"dist"}"#,
        );
        assert!(p.is_ok(), "{p:?}");
        assert!(Pipeline::parse(r#"{"steps":[{"name":"a","comand":"x"}]}"#).is_err());
        assert!(Pipeline::parse(r#"{"steps":[],"deploy":"../x"}"#).is_err());
        assert!(
            Pipeline::parse(r#"{"steps":[{"name":"a","command":"x","working_directory":"/etc"}]}"#)
                .is_err()
        );
        assert!(Pipeline::parse(r#"{"steps":[{"name":" ","command":"x"}]}"#).is_err());
    }
}
