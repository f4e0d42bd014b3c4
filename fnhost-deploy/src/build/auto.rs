//! Detected builds, like Azure's build service.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use fnhost_core::build::{BuildContext, BuildError, BuildOutput, BuildProvider, LogLevel};

use super::process::{self, Limits};

const PROVIDER: &str = "auto";

/// Where `pip install --target` puts a Python app's packages (where the
/// Functions Python worker looks for them).
const PYTHON_PACKAGES: &str = ".python_packages/lib/site-packages";

/// Detects what the source needs and builds it in place:
///
/// - `package.json`: `npm ci` when `package-lock.json` or
///   `npm-shrinkwrap.json` exists, else `npm install --omit=dev`; then
///   `npm run build` when package.json has a `build` script;
/// - `requirements.txt`: `pip install --target
///   .python_packages/lib/site-packages -r requirements.txt` (run as
///   `python3 -m pip`);
/// - `Cargo.toml` with a `customHandler` in `host.json`: `cargo build
///   --release` (its target folder in `ctx.temp_dir`, so it is not
///   deployed), and the binary copied to the path of
///   `customHandler.description.defaultExecutablePath`, executable;
/// - nothing detected: copy only, said in the log.
///
/// Several can apply (a Node app with a Python helper): each runs, in the
/// order above. The output is the source folder.
#[derive(Debug, Clone)]
pub struct AutoBuild {
    npm: PathBuf,
    python: PathBuf,
    cargo: PathBuf,
}

impl AutoBuild {
    /// Runs `npm`, `python3` and `cargo` from `PATH`.
    pub fn new() -> Self {
        AutoBuild {
            npm: "npm".into(),
            python: "python3".into(),
            cargo: "cargo".into(),
        }
    }

    /// Runs this `npm`.
    pub fn with_npm(mut self, npm: impl Into<PathBuf>) -> Self {
        self.npm = npm.into();
        self
    }

    /// Runs pip as `<python> -m pip`, with this Python.
    pub fn with_python(mut self, python: impl Into<PathBuf>) -> Self {
        self.python = python.into();
        self
    }

    /// Runs this `cargo`.
    pub fn with_cargo(mut self, cargo: impl Into<PathBuf>) -> Self {
        self.cargo = cargo.into();
        self
    }
}

impl Default for AutoBuild {
    fn default() -> Self {
        Self::new()
    }
}

impl BuildProvider for AutoBuild {
    fn name(&self) -> &str {
        PROVIDER
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Result<BuildOutput, BuildError> {
        let src = ctx.source_dir;
        let limits = Limits {
            build_deadline: Instant::now() + ctx.timeout,
            build_timeout: ctx.timeout,
            step_timeout: None,
        };
        let env = ctx.command_env(src);
        let command = |program: &Path, args: &[&str]| {
            let mut c = Command::new(program);
            c.args(args)
                .current_dir(src)
                .envs(env.iter().map(|(k, v)| (k, v)));
            c
        };
        let run = |step: &str, c: Command| {
            ctx.log.line(LogLevel::Info, &format!("$ {step}"));
            process::run(PROVIDER, step, c, ctx.log, &limits)
        };
        let mut done = Vec::new();

        if src.join("package.json").is_file() {
            let locked = src.join("package-lock.json").is_file()
                || src.join("npm-shrinkwrap.json").is_file();
            ctx.log
                .line(LogLevel::Info, "detected package.json: a Node app");
            if locked {
                run("npm ci", command(&self.npm, &["ci"]))?;
                done.push("npm ci");
            } else {
                run(
                    "npm install --omit=dev",
                    command(&self.npm, &["install", "--omit=dev"]),
                )?;
                done.push("npm install --omit=dev");
            }
            if has_build_script(&src.join("package.json")) {
                run("npm run build", command(&self.npm, &["run", "build"]))?;
                done.push("npm run build");
            }
        }

        if src.join("requirements.txt").is_file() {
            ctx.log
                .line(LogLevel::Info, "detected requirements.txt: a Python app");
            let step = format!("pip install --target {PYTHON_PACKAGES} -r requirements.txt");
            run(
                &step,
                command(
                    &self.python,
                    &[
                        "-m",
                        "pip",
                        "install",
                        "--disable-pip-version-check",
                        "--no-input",
                        "--target",
                        PYTHON_PACKAGES,
                        "-r",
                        "requirements.txt",
                    ],
                ),
            )?;
            done.push("pip install");
        }

        if src.join("Cargo.toml").is_file() {
            match custom_handler_path(src) {
                None => ctx.log.line(
                    LogLevel::Warning,
                    "Cargo.toml found, but host.json has no customHandler.description.defaultExecutablePath: not built",
                ),
                Some(exe) => {
                    ctx.log
                        .line(LogLevel::Info, "detected Cargo.toml of a custom handler: a Rust app");
                    self.build_rust(ctx, &exe, &limits, &env)?;
                    done.push("cargo build --release");
                }
            }
        }

        let summary = if done.is_empty() {
            ctx.log.line(
                LogLevel::Info,
                "could not detect the language from the source (no package.json, requirements.txt or custom handler Cargo.toml): copy only",
            );
            "copy only (nothing detected)".to_owned()
        } else {
            done.join(", ")
        };
        Ok(BuildOutput {
            dir: src.to_path_buf(),
            summary,
        })
    }
}

impl AutoBuild {
    fn build_rust(
        &self,
        ctx: &BuildContext<'_>,
        exe: &str,
        limits: &Limits,
        env: &[(String, String)],
    ) -> Result<(), BuildError> {
        let src = ctx.source_dir;
        let invalid = |message: String| BuildError::Invalid {
            provider: PROVIDER.to_owned(),
            message,
        };
        if !super::stays_inside(exe) {
            return Err(invalid(format!(
                "host.json: customHandler.description.defaultExecutablePath '{exe}' must be a path inside the app"
            )));
        }
        let target_dir = ctx.temp_dir.join("cargo-target");
        let mut build = Command::new(&self.cargo);
        build
            .args(["build", "--release"])
            .current_dir(src)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("CARGO_TARGET_DIR", &target_dir);
        ctx.log.line(LogLevel::Info, "$ cargo build --release");
        process::run(PROVIDER, "cargo build --release", build, ctx.log, limits)?;

        let bins = binaries(&target_dir.join("release"));
        let wanted = Path::new(exe)
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_owned();
        let chosen = bins
            .iter()
            .find(|b| b.file_stem().and_then(|s| s.to_str()) == Some(wanted.as_str()))
            .or(if bins.len() == 1 { bins.first() } else { None })
            .ok_or_else(|| {
                invalid(format!(
                    "cargo built {} binaries; none is named like {exe}",
                    bins.len()
                ))
            })?;
        let dest = src.join(exe);
        let failed = |e: std::io::Error| BuildError::Other {
            provider: PROVIDER.to_owned(),
            message: format!("cannot place the binary at {exe}: {e}"),
        };
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(failed)?;
        }
        let _ = fs::remove_file(&dest);
        fs::copy(chosen, &dest).map_err(failed)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            fs::set_permissions(&dest, fs::Permissions::from_mode(0o755)).map_err(failed)?;
        }
        ctx.log.line(
            LogLevel::Info,
            &format!("placed {} at {exe}", chosen.display()),
        );
        Ok(())
    }
}

/// `customHandler.description.defaultExecutablePath` of host.json.
fn custom_handler_path(src: &Path) -> Option<String> {
    let text = fs::read_to_string(src.join("host.json")).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json.pointer("/customHandler/description/defaultExecutablePath")?
        .as_str()
        .map(str::to_owned)
}

fn has_build_script(package_json: &Path) -> bool {
    fs::read_to_string(package_json)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .is_some_and(|j| j.pointer("/scripts/build").is_some())
}

/// The executables cargo left at the top of its `release` folder.
fn binaries(release: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(release) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.path())
        .filter(|p| is_executable(p))
        .collect();
    out.sort();
    out
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    path.extension().is_none()
        && fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "exe")
}
