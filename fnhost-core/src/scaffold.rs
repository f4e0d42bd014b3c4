//! Scaffolding: a new app (`fnhost init`) and a new function from a
//! template (`fnhost new`).
//!
//! Nothing is ever overwritten: when any file to be written exists, nothing
//! is written and the error names it.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde_json::{Value, json};

use crate::app::{FUNCTION_JSON, HOST_JSON, LOCAL_SETTINGS_JSON, is_valid_function_name};

/// The language a new app's functions are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WorkerRuntime {
    /// A custom handler: one executable serves every function over HTTP
    /// (the Azure custom handler protocol).
    #[default]
    Custom,
    /// Node.js scripts, run once per invocation (JSON on stdin and stdout).
    Node,
    /// Python scripts, run once per invocation (JSON on stdin and stdout).
    Python,
}

impl WorkerRuntime {
    /// The `FUNCTIONS_WORKER_RUNTIME` value.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerRuntime::Custom => "custom",
            WorkerRuntime::Node => "node",
            WorkerRuntime::Python => "python",
        }
    }
}

impl FromStr for WorkerRuntime {
    type Err = ScaffoldError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "custom" => Ok(WorkerRuntime::Custom),
            "node" | "javascript" | "js" => Ok(WorkerRuntime::Node),
            "python" | "py" => Ok(WorkerRuntime::Python),
            _ => Err(ScaffoldError::UnknownRuntime(s.to_owned())),
        }
    }
}

impl fmt::Display for WorkerRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A function template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Template {
    /// An HTTP-triggered function answering GET and POST.
    Http,
    /// A timer-triggered function, every five minutes.
    Timer,
    /// A storage queue trigger.
    Queue,
    /// A storage blob trigger.
    Blob,
    /// A function run only on demand (admin API, `fnhost invoke`).
    Manual,
    /// An Event Grid trigger.
    EventGrid,
    /// A Service Bus queue trigger.
    ServiceBus,
    /// An Event Hub trigger.
    EventHub,
}

impl Template {
    /// Every template.
    pub const ALL: [Template; 8] = [
        Template::Http,
        Template::Timer,
        Template::Queue,
        Template::Blob,
        Template::Manual,
        Template::EventGrid,
        Template::ServiceBus,
        Template::EventHub,
    ];

    /// The short name, as `fnhost new --template` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Template::Http => "http",
            Template::Timer => "timer",
            Template::Queue => "queue",
            Template::Blob => "blob",
            Template::Manual => "manual",
            Template::EventGrid => "eventgrid",
            Template::ServiceBus => "servicebus",
            Template::EventHub => "eventhub",
        }
    }

    /// The trigger type it declares.
    pub fn trigger_type(self) -> &'static str {
        match self {
            Template::Http => "httpTrigger",
            Template::Timer => "timerTrigger",
            Template::Queue => "queueTrigger",
            Template::Blob => "blobTrigger",
            Template::Manual => "manualTrigger",
            Template::EventGrid => "eventGridTrigger",
            Template::ServiceBus => "serviceBusTrigger",
            Template::EventHub => "eventHubTrigger",
        }
    }

    /// The function.json of a function made from this template.
    pub fn function_json(self, name: &str) -> Value {
        let lower = name.to_ascii_lowercase();
        let bindings = match self {
            Template::Http => json!([
                {"authLevel": "function", "type": "httpTrigger", "direction": "in", "name": "req", "methods": ["get", "post"]},
                {"type": "http", "direction": "out", "name": "res"}
            ]),
            Template::Timer => json!([
                {"type": "timerTrigger", "direction": "in", "name": "timer", "schedule": "0 */5 * * * *"}
            ]),
            Template::Queue => json!([
                {"type": "queueTrigger", "direction": "in", "name": "item", "queueName": format!("{lower}-items"), "connection": "AzureWebJobsStorage"}
            ]),
            Template::Blob => json!([
                {"type": "blobTrigger", "direction": "in", "name": "blob", "path": format!("{lower}/{{name}}"), "connection": "AzureWebJobsStorage"}
            ]),
            Template::Manual => json!([
                {"type": "manualTrigger", "direction": "in", "name": "input"}
            ]),
            Template::EventGrid => json!([
                {"type": "eventGridTrigger", "direction": "in", "name": "event"}
            ]),
            Template::ServiceBus => json!([
                {"type": "serviceBusTrigger", "direction": "in", "name": "message", "queueName": format!("{lower}-queue"), "connection": "ServiceBusConnection"}
            ]),
            Template::EventHub => json!([
                {"type": "eventHubTrigger", "direction": "in", "name": "events", "eventHubName": format!("{lower}-hub"), "cardinality": "many", "connection": "EventHubConnection"}
            ]),
        };
        json!({ "bindings": bindings })
    }
}

impl FromStr for Template {
    type Err = ScaffoldError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.to_ascii_lowercase();
        let short = lower.strip_suffix("trigger").unwrap_or(&lower);
        let short = short.strip_suffix('-').unwrap_or(short);
        Template::ALL
            .into_iter()
            .find(|t| t.name() == short)
            .ok_or_else(|| ScaffoldError::UnknownTemplate(s.to_owned()))
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why scaffolding failed. Nothing was written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScaffoldError {
    /// A file to be written exists.
    #[error("{}: already exists; fnhost never overwrites files (remove it or choose another folder or name)", path.display())]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// The app folder has no host.json.
    #[error("{}: not a function app (no host.json); run `fnhost init` there first", path.display())]
    NotAnApp {
        /// The folder.
        path: PathBuf,
    },
    /// A function of that name exists (names are case-insensitive).
    #[error(
        "the app already has a function named '{existing}' (function names are case-insensitive): choose another name"
    )]
    FunctionExists {
        /// The existing folder name.
        existing: String,
    },
    /// The name breaks the function name rules.
    #[error(
        "'{0}' is not a valid function name: use 1 to 128 characters, an ASCII letter first, then letters, digits, '_' or '-' (and not 'host')"
    )]
    InvalidName(String),
    /// No template has that name.
    #[error(
        "'{0}' is not a template: use one of http, timer, queue, blob, manual, eventgrid, servicebus, eventhub"
    )]
    UnknownTemplate(String),
    /// No runtime has that name.
    #[error("'{0}' is not a worker runtime fnhost scaffolds: use custom, node or python")]
    UnknownRuntime(String),
    /// Writing failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

/// Creates a new app in `dir` (made if missing): host.json,
/// local.settings.json and .funcignore. Returns the files written.
pub fn init_app(dir: &Path, runtime: WorkerRuntime) -> Result<Vec<PathBuf>, ScaffoldError> {
    let mut host = json!({
        "version": "2.0",
        "logging": {"logLevel": {"default": "Information"}},
    });
    match runtime {
        WorkerRuntime::Custom => {
            host["customHandler"] = json!({
                "description": {"defaultExecutablePath": "handler", "workingDirectory": "", "arguments": []},
                "enableForwardingHttpRequest": false
            });
        }
        WorkerRuntime::Node | WorkerRuntime::Python => {
            host["extensionBundle"] = json!({
                "id": "Microsoft.Azure.Functions.ExtensionBundle",
                "version": "[4.*, 5.0.0)"
            });
        }
    }
    let settings = json!({
        "IsEncrypted": false,
        "Values": {
            "FUNCTIONS_WORKER_RUNTIME": runtime.as_str(),
            "AzureWebJobsStorage": ""
        }
    });
    let funcignore =
        ".git*\n.vscode\n.fnhost\nlocal.settings.json\ntest\n.venv\nnode_modules/.cache\n";
    write_all_new(&[
        (dir.join(HOST_JSON), pretty(&host)),
        (dir.join(LOCAL_SETTINGS_JSON), pretty(&settings)),
        (dir.join(".funcignore"), funcignore.to_owned()),
    ])
}

/// Adds a function named `name` from `template` to the app in `app_dir`.
/// For node and python apps (from local.settings.json) a script that speaks
/// fnhost's one-shot process protocol is written beside function.json.
/// Returns the files written.
pub fn new_function(
    app_dir: &Path,
    template: Template,
    name: &str,
) -> Result<Vec<PathBuf>, ScaffoldError> {
    if !app_dir.join(HOST_JSON).is_file() {
        return Err(ScaffoldError::NotAnApp {
            path: app_dir.to_path_buf(),
        });
    }
    if !is_valid_function_name(name) {
        return Err(ScaffoldError::InvalidName(name.to_owned()));
    }
    if let Ok(entries) = fs::read_dir(app_dir) {
        for entry in entries.flatten() {
            let existing = entry.file_name().to_string_lossy().into_owned();
            if existing.eq_ignore_ascii_case(name) && entry.path().join(FUNCTION_JSON).exists() {
                return Err(ScaffoldError::FunctionExists { existing });
            }
        }
    }
    let dir = app_dir.join(name);
    let mut files = vec![(
        dir.join(FUNCTION_JSON),
        pretty(&template.function_json(name)),
    )];
    match app_runtime(app_dir) {
        WorkerRuntime::Custom => {}
        WorkerRuntime::Node => files.push((dir.join("index.js"), node_script(template))),
        WorkerRuntime::Python => files.push((dir.join("run.py"), python_script(template))),
    }
    write_all_new(&files)
}

/// The runtime named in the app's local.settings.json (custom when unknown).
fn app_runtime(app_dir: &Path) -> WorkerRuntime {
    fs::read_to_string(app_dir.join(LOCAL_SETTINGS_JSON))
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(crate::json::strip_bom(&t)).ok())
        .and_then(|v| {
            v.get("Values")?
                .get("FUNCTIONS_WORKER_RUNTIME")?
                .as_str()?
                .parse()
                .ok()
        })
        .unwrap_or_default()
}

fn pretty(value: &Value) -> String {
    let mut s = serde_json::to_string_pretty(value).unwrap_or_default();
    s.push('\n');
    s
}

fn node_script(template: Template) -> String {
    let body = match template {
        Template::Http => {
            r#"  const req = input.Data.req || {};
  const name = (req.Query && req.Query.name) || 'world';
  return { Outputs: { res: { statusCode: 200, body: `Hello, ${name}!` } }, Logs: [`greeted ${name}`] };"#
        }
        _ => r#"  return { Outputs: {}, Logs: [`triggered with ${JSON.stringify(input.Data)}`] };"#,
    };
    format!(
        "// One invocation: {{Data, Metadata}} arrives as JSON on stdin;\n// {{Outputs, Logs, ReturnValue}} goes to stdout as JSON.\nlet raw = '';\nprocess.stdin.on('data', (c) => (raw += c));\nprocess.stdin.on('end', () => {{\n  const result = run(JSON.parse(raw || '{{}}'));\n  process.stdout.write(JSON.stringify(result));\n}});\n\nfunction run(input) {{\n{body}\n}}\n"
    )
}

fn python_script(template: Template) -> String {
    let body = match template {
        Template::Http => {
            r#"    req = data.get("Data", {}).get("req") or {}
    name = (req.get("Query") or {}).get("name", "world")
    return {"Outputs": {"res": {"statusCode": 200, "body": f"Hello, {name}!"}}, "Logs": [f"greeted {name}"]}"#
        }
        _ => {
            r#"    return {"Outputs": {}, "Logs": ["triggered with " + json.dumps(data.get("Data"))]}"#
        }
    };
    format!(
        "# One invocation: {{Data, Metadata}} arrives as JSON on stdin;\n# {{Outputs, Logs, ReturnValue}} goes to stdout as JSON.\nimport json\nimport sys\n\n\ndef run(data):\n{body}\n\n\nif __name__ == \"__main__\":\n    raw = sys.stdin.read()\n    json.dump(run(json.loads(raw or \"{{}}\")), sys.stdout)\n"
    )
}

/// Writes every file, or none: refuses when any exists, and removes what
/// it wrote when a later write fails.
fn write_all_new(files: &[(PathBuf, String)]) -> Result<Vec<PathBuf>, ScaffoldError> {
    for (path, _) in files {
        if path.exists() {
            return Err(ScaffoldError::Exists { path: path.clone() });
        }
    }
    let mut written: Vec<PathBuf> = Vec::new();
    let mut made_dirs: Vec<PathBuf> = Vec::new();
    let result = (|| {
        for (path, content) in files {
            if let Some(parent) = path.parent()
                && !parent.as_os_str().is_empty()
                && !parent.exists()
            {
                fs::create_dir_all(parent).map_err(|source| ScaffoldError::Io {
                    path: parent.to_path_buf(),
                    source,
                })?;
                made_dirs.push(parent.to_path_buf());
            }
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
                .map_err(|source| match source.kind() {
                    io::ErrorKind::AlreadyExists => ScaffoldError::Exists { path: path.clone() },
                    _ => ScaffoldError::Io {
                        path: path.clone(),
                        source,
                    },
                })?;
            written.push(path.clone());
            f.write_all(content.as_bytes())
                .and_then(|()| f.sync_all())
                .map_err(|source| ScaffoldError::Io {
                    path: path.clone(),
                    source,
                })?;
        }
        Ok(())
    })();
    match result {
        Ok(()) => Ok(written),
        Err(e) => {
            for path in written.iter().rev() {
                let _ = fs::remove_file(path);
            }
            for dir in made_dirs.iter().rev() {
                let _ = fs::remove_dir(dir);
            }
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_names_are_flexible() {
        assert_eq!("HttpTrigger".parse::<Template>().unwrap(), Template::Http);
        assert_eq!("timer".parse::<Template>().unwrap(), Template::Timer);
        assert_eq!(
            "manual-trigger".parse::<Template>().unwrap(),
            Template::Manual
        );
        assert!("websocket".parse::<Template>().is_err());
    }
}
