//! `worker.config.json`: how a language worker is launched, in Azure's
//! format, and where workers are found.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::timespan::TimeSpan;

/// The file that describes a language worker, in its folder.
pub const WORKER_CONFIG_JSON: &str = "worker.config.json";

/// The longest a worker may take to connect and answer its init request
/// when its worker.config.json sets no `initializationTimeout`.
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(120);

/// A language worker as its `worker.config.json` describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerConfig {
    /// The worker's folder (the one holding worker.config.json).
    pub dir: PathBuf,
    /// `description.language`: the `FUNCTIONS_WORKER_RUNTIME` it serves.
    pub language: String,
    /// `description.extensions`, such as `[".js", ".mjs"]`.
    pub extensions: Vec<String>,
    /// `description.defaultExecutablePath`: the program to run (`node`,
    /// `python3`, or a path).
    pub executable: String,
    /// `description.defaultWorkerPath`, relative to the worker's folder
    /// (`None`: the executable is the worker, as for .NET isolated apps).
    pub worker_path: Option<String>,
    /// `description.arguments`: before the worker path.
    pub arguments: Vec<String>,
    /// `description.workerArguments`: after the worker path.
    pub worker_arguments: Vec<String>,
    /// `description.workerIndexing`: the worker may index the app itself.
    pub worker_indexing: bool,
    /// `processOptions.initializationTimeout`.
    pub start_timeout: Duration,
    /// `processOptions.processCount` (`FUNCTIONS_WORKER_PROCESS_COUNT`
    /// overrides it).
    pub process_count: Option<u32>,
}

/// A worker.config.json that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct WorkerConfigError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong and what to do.
    pub message: String,
}

impl WorkerConfig {
    /// Reads `dir/worker.config.json`.
    pub fn read(dir: &Path) -> Result<WorkerConfig, WorkerConfigError> {
        let path = dir.join(WORKER_CONFIG_JSON);
        let fail = |message: String| WorkerConfigError {
            path: path.clone(),
            message,
        };
        let text = std::fs::read_to_string(&path).map_err(|e| fail(format!("cannot read: {e}")))?;
        let doc: Value = serde_json::from_str(crate::json::strip_bom(&text)).map_err(|e| {
            fail(format!(
                "not valid JSON (line {}, column {}): {e}",
                e.line(),
                e.column()
            ))
        })?;
        Self::from_json(dir, &doc).map_err(fail)
    }

    /// A config from its JSON document; `dir` is the worker's folder.
    pub fn from_json(dir: &Path, doc: &Value) -> Result<WorkerConfig, String> {
        let description = get(doc, "description")
            .and_then(Value::as_object)
            .ok_or("\"description\" must be an object")?;
        let text = |key: &str| get_in(description, key).and_then(Value::as_str);
        let list = |key: &str| -> Result<Vec<String>, String> {
            match get_in(description, key) {
                None | Some(Value::Null) => Ok(Vec::new()),
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|v| {
                        v.as_str()
                            .map(str::to_owned)
                            .ok_or_else(|| format!("\"description.{key}\" must list strings"))
                    })
                    .collect(),
                Some(_) => Err(format!("\"description.{key}\" must be an array of strings")),
            }
        };
        let language = text("language")
            .filter(|s| !s.trim().is_empty())
            .ok_or("\"description.language\" is required (such as \"node\" or \"python\")")?
            .to_owned();
        let executable = text("defaultExecutablePath")
            .filter(|s| !s.trim().is_empty())
            .ok_or("\"description.defaultExecutablePath\" is required (the program to run)")?
            .to_owned();
        let worker_indexing = match get_in(description, "workerIndexing") {
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
            _ => false,
        };
        let options = get(doc, "processOptions").and_then(Value::as_object);
        let start_timeout = match options.and_then(|o| get_in(o, "initializationTimeout")) {
            None => DEFAULT_START_TIMEOUT,
            Some(Value::String(s)) => {
                TimeSpan::parse(s)
                    .map_err(|e| format!("\"processOptions.initializationTimeout\": {e}"))?
                    .duration
            }
            Some(_) => {
                return Err(
                    "\"processOptions.initializationTimeout\" must be a time span such as \"00:02:00\""
                        .into(),
                );
            }
        };
        let process_count = options
            .and_then(|o| get_in(o, "processCount").or_else(|| get_in(o, "maxProcessCount")))
            .and_then(|v| {
                v.as_u64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            })
            .map(|n| n.clamp(1, 10) as u32);
        Ok(WorkerConfig {
            dir: dir.to_path_buf(),
            language,
            extensions: list("extensions")?,
            executable,
            worker_path: text("defaultWorkerPath")
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
            arguments: list("arguments")?,
            worker_arguments: list("workerArguments")?,
            worker_indexing,
            start_timeout,
            process_count,
        })
    }

    /// Applies the app settings that change how a worker is launched, named
    /// `languageWorkers:{language}:{key}` (or with `__` for `:`, as in
    /// environment variables), as Azure's host reads them:
    ///
    /// - `defaultExecutablePath` replaces the program (such as a `node` of
    ///   another version);
    /// - `arguments` adds arguments, split at white space, after those of
    ///   worker.config.json (before the worker path), such as `--inspect`
    ///   or `--max-old-space-size=4096` for Node.js;
    /// - `defaultWorkerPath` (or `workerPath`) replaces the worker path, a
    ///   path relative to the worker's folder or absolute (fnhost's own;
    ///   Azure's host reads only the first two and `defaultRuntimeVersion`).
    ///
    /// Empty values are ignored.
    pub fn with_app_settings(mut self, settings: &crate::app::AppSettings) -> Self {
        let language = self.language.clone();
        let get = |key: &str| {
            [
                format!("languageWorkers:{language}:{key}"),
                format!("languageWorkers__{language}__{key}"),
            ]
            .iter()
            .find_map(|name| settings.get(name))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
        };
        if let Some(program) = get("defaultExecutablePath") {
            self.executable = program;
        }
        if let Some(path) = get("defaultWorkerPath").or_else(|| get("workerPath")) {
            self.worker_path = Some(path);
        }
        if let Some(arguments) = get("arguments") {
            self.arguments
                .extend(arguments.split_whitespace().map(str::to_owned));
        }
        self
    }

    /// The program and arguments that start one worker process, as Azure's
    /// host assembles them: `executable arguments... worker-path
    /// worker-arguments...` and then both families of connection flags.
    /// `{workerDirectoryPath}`, `{os}`, `{architecture}` and `%VAR%` (from
    /// `env`) are expanded.
    pub fn command_line(
        &self,
        port: u16,
        worker_id: &str,
        request_id: &str,
        env: &BTreeMap<String, String>,
    ) -> (String, Vec<String>) {
        let expand = |s: &str| expand(s, &self.dir, env);
        let mut args: Vec<String> = self
            .arguments
            .iter()
            .flat_map(|a| a.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
            .map(|a| expand(&a))
            .collect();
        if let Some(path) = &self.worker_path {
            let path = expand(path);
            let full = if Path::new(&path).is_absolute() {
                PathBuf::from(path)
            } else {
                self.dir.join(path)
            };
            args.push(full.to_string_lossy().into_owned());
        }
        args.extend(self.worker_arguments.iter().map(|a| expand(a)));
        let max = "2147483647".to_owned();
        args.extend([
            "--host".into(),
            "127.0.0.1".into(),
            "--port".into(),
            port.to_string(),
            "--workerId".into(),
            worker_id.into(),
            "--requestId".into(),
            request_id.into(),
            "--grpcMaxMessageLength".into(),
            max.clone(),
            "--functions-uri".into(),
            format!("http://127.0.0.1:{port}/"),
            "--functions-worker-id".into(),
            worker_id.into(),
            "--functions-request-id".into(),
            request_id.into(),
            "--functions-grpc-max-message-length".into(),
            max,
        ]);
        let executable = expand(&self.executable);
        // A relative path that names a file of the worker's folder (not a
        // program on PATH such as `node`).
        let program = if executable.contains('/') && !Path::new(&executable).is_absolute() {
            self.dir.join(&executable).to_string_lossy().into_owned()
        } else {
            executable
        };
        (program, args)
    }
}

fn get<'a>(doc: &'a Value, key: &str) -> Option<&'a Value> {
    doc.as_object().and_then(|o| get_in(o, key))
}

/// A property, its name matched ignoring case (as the host reads JSON).
fn get_in<'a>(map: &'a serde_json::Map<String, Value>, key: &str) -> Option<&'a Value> {
    map.get(key).or_else(|| {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

fn expand(s: &str, worker_dir: &Path, env: &BTreeMap<String, String>) -> String {
    let mut out = s
        .replace("{workerDirectoryPath}", &worker_dir.to_string_lossy())
        .replace("{os}", os_name())
        .replace("{architecture}", arch_name());
    // %VAR% from the worker's environment.
    let mut result = String::with_capacity(out.len());
    while let Some(start) = out.find('%') {
        let Some(len) = out[start + 1..].find('%') else {
            break;
        };
        let name = &out[start + 1..start + 1 + len];
        result.push_str(&out[..start]);
        match env.get(name) {
            Some(v) if !name.is_empty() => result.push_str(v),
            _ => result.push_str(&out[start..start + len + 2]),
        }
        out = out[start + len + 2..].to_owned();
    }
    result.push_str(&out);
    result
}

/// The operating system as Azure's host names it in worker paths.
fn os_name() -> &'static str {
    match std::env::consts::OS {
        "linux" => "LINUX",
        "windows" => "WINDOWS",
        "macos" => "OSX",
        other => other,
    }
}

fn arch_name() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "X64",
        "aarch64" => "Arm64",
        "x86" => "X86",
        other => other,
    }
}

/// Where fnhost looks for language workers, first match wins:
///
/// 1. the app setting `languageWorkers:workersDirectory` (Azure's name);
/// 2. the environment variable `FNHOST_WORKERS_DIR`;
/// 3. `$FNHOST_HOME/workers` when `FNHOST_HOME` is set;
/// 4. `$XDG_DATA_HOME/fnhost/workers`, else `~/.local/share/fnhost/workers`
///    (where `fnhost workers install` puts them by default).
///
/// Each holds one folder per language with its `worker.config.json`.
pub fn default_workers_dir() -> Option<PathBuf> {
    let env = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = env("FNHOST_WORKERS_DIR") {
        return Some(PathBuf::from(dir));
    }
    if let Some(home) = env("FNHOST_HOME") {
        return Some(PathBuf::from(home).join("workers"));
    }
    if let Some(data) = env("XDG_DATA_HOME") {
        return Some(PathBuf::from(data).join("fnhost").join("workers"));
    }
    env("HOME").map(|h| {
        PathBuf::from(h)
            .join(".local")
            .join("share")
            .join("fnhost")
            .join("workers")
    })
}

/// The worker configurations found in `dir` (one subfolder per language),
/// sorted by language; folders without a readable config are reported.
pub fn list_workers(dir: &Path) -> Vec<Result<WorkerConfig, WorkerConfigError>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<_> = entries
        .flatten()
        .filter(|e| e.path().join(WORKER_CONFIG_JSON).is_file())
        .map(|e| WorkerConfig::read(&e.path()))
        .collect();
    found.sort_by_key(|r| match r {
        Ok(c) => c.language.clone(),
        Err(e) => e.path.to_string_lossy().into_owned(),
    });
    found
}

/// The worker for `language` in `dir`: the folder named after it, else any
/// folder whose config declares that language.
pub fn find_worker(dir: &Path, language: &str) -> Option<Result<WorkerConfig, WorkerConfigError>> {
    let named = dir.join(language);
    if named.join(WORKER_CONFIG_JSON).is_file() {
        return Some(WorkerConfig::read(&named));
    }
    list_workers(dir)
        .into_iter()
        .find(|r| matches!(r, Ok(c) if c.language.eq_ignore_ascii_case(language)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_azure_worker_configs() {
        let doc = json!({
            "description": {
                "language": "python",
                "extensions": [".py"],
                "defaultExecutablePath": "python3",
                "defaultWorkerPath": "%FUNCTIONS_WORKER_RUNTIME_VERSION%/{os}/worker.py",
                "workerIndexing": "true",
                "arguments": ["-X no_debug_ranges"]
            },
            "processOptions": {"initializationTimeout": "00:00:30"}
        });
        let c = WorkerConfig::from_json(Path::new("/w/python"), &doc).expect("valid");
        assert_eq!(c.language, "python");
        assert!(c.worker_indexing);
        assert_eq!(c.start_timeout, Duration::from_secs(30));
        let env = BTreeMap::from([(
            "FUNCTIONS_WORKER_RUNTIME_VERSION".to_owned(),
            "3.11".to_owned(),
        )]);
        let (program, args) = c.command_line(5000, "w1", "r1", &env);
        assert_eq!(program, "python3");
        assert_eq!(args[0], "-X");
        assert_eq!(args[1], "no_debug_ranges");
        assert_eq!(args[2], format!("/w/python/3.11/{}/worker.py", os_name()));
        let joined = args.join(" ");
        assert!(joined.contains("--host 127.0.0.1 --port 5000 --workerId w1 --requestId r1"));
        assert!(joined.contains("--functions-uri http://127.0.0.1:5000/ --functions-worker-id w1"));
    }

    #[test]
    fn app_settings_override_the_launch() {
        let doc = json!({"description": {"language": "node", "defaultExecutablePath": "node",
            "defaultWorkerPath": "worker.js", "arguments": ["--no-warnings"]}});
        let c = WorkerConfig::from_json(Path::new("/w/node"), &doc).expect("valid");
        let mut settings = crate::app::AppSettings::new();
        settings.set(
            "languageWorkers__node__arguments",
            "--inspect  --max-old-space-size=64",
        );
        settings.set(
            "LanguageWorkers:Node:DefaultExecutablePath",
            "/opt/node22/bin/node",
        );
        settings.set("languageWorkers:node:workerPath", "/opt/worker/index.js");
        settings.set("languageWorkers:python:arguments", "-X dev");
        let c = c.with_app_settings(&settings);
        let (program, args) = c.command_line(1, "w", "r", &BTreeMap::new());
        assert_eq!(program, "/opt/node22/bin/node");
        assert_eq!(
            args[..4],
            [
                "--no-warnings",
                "--inspect",
                "--max-old-space-size=64",
                "/opt/worker/index.js"
            ]
        );
        // An empty value changes nothing.
        let mut empty = crate::app::AppSettings::new();
        empty.set("languageWorkers:node:defaultExecutablePath", " ");
        let c = WorkerConfig::from_json(Path::new("/w/node"), &doc)
            .expect("valid")
            .with_app_settings(&empty);
        assert_eq!(c.executable, "node");
    }

    #[test]
    fn missing_fields_are_named() {
        let e = WorkerConfig::from_json(Path::new("/w"), &json!({"description": {}}))
            .expect_err("no language");
        assert!(e.contains("description.language"), "{e}");
        let e = WorkerConfig::from_json(
            Path::new("/w"),
            &json!({"description": {"language": "node"}}),
        )
        .expect_err("no executable");
        assert!(e.contains("defaultExecutablePath"), "{e}");
    }
}
