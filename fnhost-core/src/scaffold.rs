//! Scaffolding: a new app (`fnhost init`) and a new function from a
//! template (`fnhost new`).
//!
//! This file is long (about 1,700 lines) because it is mostly the templates'
//! text, eight triggers in five models; the logic is `init_app`,
//! `new_function` and the model detection.
//!
//! Node.js and Python apps are written in Azure's own programming models,
//! the way Azure Functions Core Tools writes them, so that they run on Azure
//! unchanged and under `fnhost serve` through fnhost's language workers:
//!
//! | runtime | model | layout |
//! |---------|-------|--------|
//! | node    | v4 (default) | package.json with `main: "src/functions/*.js"`; `src/functions/NAME.js` calling `app.http(...)`, `app.timer(...)`, ... |
//! | node    | v3    | package.json without `main`; `NAME/function.json` + `NAME/index.js` |
//! | python  | v2 (default) | `function_app.py` with `app = func.FunctionApp(...)`; decorated functions appended to it |
//! | python  | v1    | `NAME/function.json` + `NAME/__init__.py` with `def main(...)` |
//!
//! Custom handler apps (`custom`) get function.json files only; the handler
//! executable is the app's own.
//!
//! Nothing is ever overwritten: when any file to be written exists, nothing
//! is written and the error names it. The one file ever changed is a Python
//! v2 app's `function_app.py`, to which a new function is appended (and
//! `import logging` added when it is missing); nothing else in it changes.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

use serde_json::{Value, json};

use crate::app::{FUNCTION_JSON, HOST_JSON, LOCAL_SETTINGS_JSON, is_valid_function_name};

/// A Node.js app's package.json.
const PACKAGE_JSON: &str = "package.json";
/// A Python v2 app's one script.
const FUNCTION_APP_PY: &str = "function_app.py";
/// Where a Node.js v4 app's functions live (and what `main` points at).
const NODE_V4_DIR: &str = "src/functions";

/// The language a new app's functions are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WorkerRuntime {
    /// A custom handler: one executable serves every function over HTTP
    /// (the Azure custom handler protocol).
    #[default]
    Custom,
    /// Node.js, in Azure's v4 or v3 programming model, run by fnhost's
    /// Node.js language worker.
    Node,
    /// Python, in Azure's v2 or v1 programming model, run by fnhost's
    /// Python language worker.
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

    /// The programming models of this runtime, newest (the default) first;
    /// empty for custom handlers.
    pub fn models(self) -> &'static [Model] {
        match self {
            WorkerRuntime::Custom => &[],
            WorkerRuntime::Node => &[Model::V4, Model::V3],
            WorkerRuntime::Python => &[Model::V2, Model::V1],
        }
    }

    /// The model `fnhost init` writes when none is given: the newest.
    pub fn default_model(self) -> Option<Model> {
        self.models().first().copied()
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

/// One of Azure's programming models for Node.js and Python functions.
///
/// Parsed from `v4`, `V4` or `4` (and so on); shown as `v4`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Model {
    /// Node.js v4: functions registered in code (`app.http('name', {...})`),
    /// files found through package.json `main`.
    V4,
    /// Node.js v3: one folder per function, function.json + index.js
    /// exporting `async function (context, ...)`.
    V3,
    /// Python v2: decorated functions in function_app.py
    /// (`@app.route(...)` on `app = func.FunctionApp()`).
    V2,
    /// Python v1: one folder per function, function.json + `__init__.py`
    /// with `def main(...)`.
    V1,
}

impl Model {
    /// Every model.
    pub const ALL: [Model; 4] = [Model::V4, Model::V3, Model::V2, Model::V1];

    /// The short name: `v4`, `v3`, `v2` or `v1`.
    pub fn as_str(self) -> &'static str {
        match self {
            Model::V4 => "v4",
            Model::V3 => "v3",
            Model::V2 => "v2",
            Model::V1 => "v1",
        }
    }

    /// The runtime this model belongs to.
    pub fn runtime(self) -> WorkerRuntime {
        match self {
            Model::V4 | Model::V3 => WorkerRuntime::Node,
            Model::V2 | Model::V1 => WorkerRuntime::Python,
        }
    }

    /// The model of the app in `app_dir`, as its files show it: node apps
    /// whose package.json has `main` are v4 (else v3); python apps with a
    /// function_app.py are v2 (else v1). `None` for custom handler apps.
    pub fn detect(app_dir: &Path, runtime: WorkerRuntime) -> Option<Model> {
        match runtime {
            WorkerRuntime::Custom => None,
            WorkerRuntime::Node => {
                let has_main = read_json(&app_dir.join(PACKAGE_JSON))
                    .is_some_and(|p| p.get("main").is_some_and(|m| !m.is_null()));
                Some(if has_main { Model::V4 } else { Model::V3 })
            }
            WorkerRuntime::Python => Some(if app_dir.join(FUNCTION_APP_PY).is_file() {
                Model::V2
            } else {
                Model::V1
            }),
        }
    }

    /// Checks that `model` fits `runtime`, and picks the runtime's default
    /// when it is `None`. Custom handler apps take no model.
    pub fn resolve(
        runtime: WorkerRuntime,
        model: Option<Model>,
    ) -> Result<Option<Model>, ScaffoldError> {
        match model {
            None => Ok(runtime.default_model()),
            Some(m) if m.runtime() == runtime => Ok(Some(m)),
            Some(model) => Err(ScaffoldError::ModelMismatch { runtime, model }),
        }
    }

    /// Whether a function made from `template` exists in this model: Azure's
    /// v4 and v2 models have no manual trigger.
    pub fn has_template(self, template: Template) -> bool {
        !(template == Template::Manual && matches!(self, Model::V4 | Model::V2))
    }
}

impl FromStr for Model {
    type Err = ScaffoldError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        let digits = lower.strip_prefix('v').unwrap_or(&lower);
        Model::ALL
            .into_iter()
            .find(|m| &m.as_str()[1..] == digits)
            .ok_or_else(|| ScaffoldError::UnknownModel(s.to_owned()))
    }
}

impl fmt::Display for Model {
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
    /// A RabbitMQ queue trigger (`rabbitMQTrigger`).
    RabbitMq,
}

impl Template {
    /// Every template.
    pub const ALL: [Template; 9] = [
        Template::Http,
        Template::Timer,
        Template::Queue,
        Template::Blob,
        Template::Manual,
        Template::EventGrid,
        Template::ServiceBus,
        Template::EventHub,
        Template::RabbitMq,
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
            Template::RabbitMq => "rabbitmq",
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
            Template::RabbitMq => "rabbitMQTrigger",
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
            Template::RabbitMq => json!([
                {"type": "rabbitMQTrigger", "direction": "in", "name": "message", "queueName": format!("{lower}-queue"), "connectionStringSetting": "RabbitMQConnection"}
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
        /// The existing function's name as the app spells it.
        existing: String,
    },
    /// The name breaks the function name rules.
    #[error(
        "'{0}' is not a valid function name: use 1 to 128 characters, an ASCII letter first, then letters, digits, '_' or '-' (and not 'host')"
    )]
    InvalidName(String),
    /// No template has that name.
    #[error(
        "'{0}' is not a template: use one of http, timer, queue, blob, manual, eventgrid, servicebus, eventhub, rabbitmq"
    )]
    UnknownTemplate(String),
    /// No runtime has that name.
    #[error("'{0}' is not a worker runtime fnhost scaffolds: use custom, node or python")]
    UnknownRuntime(String),
    /// No model has that name.
    #[error("'{0}' is not a programming model: node has v4 and v3, python has v2 and v1")]
    UnknownModel(String),
    /// The model is not one of the runtime's.
    #[error("{}", model_mismatch(*.runtime, *.model))]
    ModelMismatch {
        /// The runtime asked for.
        runtime: WorkerRuntime,
        /// The model asked for.
        model: Model,
    },
    /// The app's model has no trigger for this template.
    #[error(
        "Azure's {} {model} programming model has no {template} trigger, so fnhost writes none; \
         any function can be run on demand (`fnhost invoke APP_DIR NAME`, or POST /admin/functions/NAME): \
         use the http or timer template instead",
        .model.runtime()
    )]
    NoSuchTrigger {
        /// The app's model.
        model: Model,
        /// The template asked for.
        template: Template,
    },
    /// A Python v2 app's function_app.py has nothing to append a function to.
    #[error("{}: {reason}; fnhost appends new functions to the app object of a v2 app (`import azure.functions as func` and `app = func.FunctionApp()`)", path.display())]
    NotAFunctionApp {
        /// function_app.py.
        path: PathBuf,
        /// What is missing.
        reason: String,
    },
    /// Writing failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

fn model_mismatch(runtime: WorkerRuntime, model: Model) -> String {
    let models = runtime.models();
    match models {
        [] => format!(
            "{runtime} apps have no programming model (a custom handler serves every function): leave out --model {model}"
        ),
        _ => {
            let names: Vec<&str> = models.iter().map(|m| m.as_str()).collect();
            format!(
                "{runtime} has no programming model {model}: {runtime} apps use {} (the default, the newest) or {}",
                names[0],
                names[1..].join(", ")
            )
        }
    }
}

/// Creates a new app in `dir` (made if missing) for `runtime`, in `model`
/// (`None`: the runtime's newest, node v4 or python v2; custom handler apps
/// take none). Writes host.json, local.settings.json, .funcignore and, by
/// model, package.json (node), function_app.py (python v2) and
/// requirements.txt (python); node and python apps also get a .gitignore.
/// Returns the files written.
pub fn init_app(
    dir: &Path,
    runtime: WorkerRuntime,
    model: Option<Model>,
) -> Result<Vec<PathBuf>, ScaffoldError> {
    let model = Model::resolve(runtime, model)?;
    let mut files = Vec::new();
    match runtime {
        WorkerRuntime::Custom => {
            let host = json!({
                "version": "2.0",
                "logging": {"logLevel": {"default": "Information"}},
                "customHandler": {
                    "description": {"defaultExecutablePath": "handler", "workingDirectory": "", "arguments": []},
                    "enableForwardingHttpRequest": false
                }
            });
            files.push((dir.join(HOST_JSON), pretty(&host)));
            files.push((dir.join(LOCAL_SETTINGS_JSON), local_settings(runtime)));
            files.push((
                dir.join(".funcignore"),
                ".git*\n.vscode\n.fnhost\nlocal.settings.json\ntest\n.venv\nnode_modules/.cache\n"
                    .to_owned(),
            ));
        }
        WorkerRuntime::Node | WorkerRuntime::Python => {
            let host = json!({
                "version": "2.0",
                "logging": {
                    "applicationInsights": {
                        "samplingSettings": {"isEnabled": true, "excludedTypes": "Request"}
                    }
                },
                "extensionBundle": {
                    "id": "Microsoft.Azure.Functions.ExtensionBundle",
                    "version": "[4.*, 5.0.0)"
                }
            });
            files.push((dir.join(HOST_JSON), pretty(&host)));
            files.push((dir.join(LOCAL_SETTINGS_JSON), local_settings(runtime)));
        }
    }
    match model {
        None => {}
        Some(m @ (Model::V4 | Model::V3)) => {
            let mut package = json!({
                "name": package_name(dir),
                "version": "1.0.0",
                "description": "",
            });
            if m == Model::V4 {
                package["main"] = json!(format!("{NODE_V4_DIR}/*.js"));
            }
            package["scripts"] = json!({"start": "func start", "test": "echo \"No tests yet...\""});
            package["dependencies"] = if m == Model::V4 {
                json!({"@azure/functions": "^4.0.0"})
            } else {
                json!({})
            };
            package["devDependencies"] = json!({});
            files.push((dir.join(PACKAGE_JSON), pretty(&package)));
            files.push((
                dir.join(".funcignore"),
                "*.js.map\n*.ts\n.git*\n.vscode\n.fnhost\nlocal.settings.json\ntest\ngetting_started.md\nnode_modules/@types/\nnode_modules/azure-functions-core-tools/\nnode_modules/typescript/\n".to_owned(),
            ));
            files.push((
                dir.join(".gitignore"),
                "node_modules/\n.fnhost/\nlocal.settings.json\n*.log\n".to_owned(),
            ));
        }
        Some(m @ (Model::V2 | Model::V1)) => {
            if m == Model::V2 {
                files.push((
                    dir.join(FUNCTION_APP_PY),
                    "import logging\n\nimport azure.functions as func\n\napp = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)\n".to_owned(),
                ));
            }
            files.push((
                dir.join("requirements.txt"),
                "# The app's own dependencies (pip install -r requirements.txt).\n# The Python worker comes from the host: do not list azure-functions-worker.\n\nazure-functions\n".to_owned(),
            ));
            files.push((
                dir.join(".funcignore"),
                ".git*\n.vscode\n.fnhost\n__azurite_db*__.json\n__blobstorage__\n__queuestorage__\nlocal.settings.json\ntest\n.venv\n".to_owned(),
            ));
            files.push((
                dir.join(".gitignore"),
                "__pycache__/\n*.py[cod]\n.venv/\n.python_packages/\n.fnhost/\nlocal.settings.json\n".to_owned(),
            ));
        }
    }
    write_all_new(&files)
}

fn local_settings(runtime: WorkerRuntime) -> String {
    pretty(&json!({
        "IsEncrypted": false,
        "Values": {
            "FUNCTIONS_WORKER_RUNTIME": runtime.as_str(),
            "AzureWebJobsStorage": ""
        }
    }))
}

/// An npm package name from the app folder's name: lowercase, with
/// anything outside `a-z 0-9 - . _` made a '-'.
fn package_name(dir: &Path) -> String {
    let name = absolute(dir)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut out: String = name
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_') {
                c
            } else {
                '-'
            }
        })
        .collect();
    while out.starts_with(['.', '_', '-']) {
        out.remove(0);
    }
    out.truncate(214);
    if out.is_empty() {
        "function-app".to_owned()
    } else {
        out
    }
}

/// `path` made absolute against the current folder, with `.` and `..`
/// resolved lexically (the folder need not exist yet).
fn absolute(path: &Path) -> PathBuf {
    let joined = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// What [`new_function`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NewFunction {
    /// The app's runtime (from local.settings.json).
    pub runtime: WorkerRuntime,
    /// The app's model (`None` for custom handler apps).
    pub model: Option<Model>,
    /// The files created.
    pub created: Vec<PathBuf>,
    /// Existing files the function was added to (a python v2 app's
    /// function_app.py).
    pub updated: Vec<PathBuf>,
}

/// Adds a function named `name` from `template` to the app in `app_dir`,
/// in the app's runtime (local.settings.json) and model (see
/// [`Model::detect`]):
///
/// - node v4: `src/functions/NAME.js`;
/// - node v3: `NAME/function.json` and `NAME/index.js`;
/// - python v2: a decorated function appended to `function_app.py`;
/// - python v1: `NAME/function.json` and `NAME/__init__.py`;
/// - custom: `NAME/function.json` (the handler is the app's own).
///
/// Refuses names the app already has (case-insensitively), existing files,
/// and templates the model has no trigger for.
pub fn new_function(
    app_dir: &Path,
    template: Template,
    name: &str,
) -> Result<NewFunction, ScaffoldError> {
    if !app_dir.join(HOST_JSON).is_file() {
        return Err(ScaffoldError::NotAnApp {
            path: app_dir.to_path_buf(),
        });
    }
    if !is_valid_function_name(name) {
        return Err(ScaffoldError::InvalidName(name.to_owned()));
    }
    let runtime = app_runtime(app_dir);
    let model = Model::detect(app_dir, runtime);
    if let Some(model) = model
        && !model.has_template(template)
    {
        return Err(ScaffoldError::NoSuchTrigger { model, template });
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
    let mut done = NewFunction {
        runtime,
        model,
        created: Vec::new(),
        updated: Vec::new(),
    };
    let files = match model {
        None => vec![(
            dir.join(FUNCTION_JSON),
            pretty(&template.function_json(name)),
        )],
        Some(Model::V4) => {
            let folder = app_dir.join(NODE_V4_DIR);
            if let Some(existing) = node_v4_function(&folder, name) {
                return Err(ScaffoldError::FunctionExists { existing });
            }
            let esm = read_json(&app_dir.join(PACKAGE_JSON))
                .is_some_and(|p| p.get("type").and_then(Value::as_str) == Some("module"));
            vec![(
                folder.join(format!("{name}.js")),
                node_v4_script(template, name, esm),
            )]
        }
        Some(Model::V3) => vec![
            (
                dir.join(FUNCTION_JSON),
                pretty(&script_function_json(template, name, None)),
            ),
            (dir.join("index.js"), node_v3_script(template)),
        ],
        Some(Model::V1) => vec![
            (
                dir.join(FUNCTION_JSON),
                pretty(&script_function_json(template, name, Some("__init__.py"))),
            ),
            (dir.join("__init__.py"), python_v1_script(template)),
        ],
        Some(Model::V2) => {
            let path = app_dir.join(FUNCTION_APP_PY);
            append_python_v2(&path, template, name)?;
            done.updated.push(path);
            return Ok(done);
        }
    };
    done.created = write_all_new(&files)?;
    Ok(done)
}

/// The runtime named in the app's local.settings.json (custom when unknown).
fn app_runtime(app_dir: &Path) -> WorkerRuntime {
    read_json(&app_dir.join(LOCAL_SETTINGS_JSON))
        .and_then(|v| {
            v.get("Values")?
                .get("FUNCTIONS_WORKER_RUNTIME")?
                .as_str()?
                .parse()
                .ok()
        })
        .unwrap_or_default()
}

fn read_json(path: &Path) -> Option<Value> {
    let text = fs::read_to_string(path).ok()?;
    serde_json::from_str(crate::json::strip_bom(&text)).ok()
}

fn pretty(value: &Value) -> String {
    let mut s = serde_json::to_string_pretty(value).unwrap_or_default();
    s.push('\n');
    s
}

/// A storage-style resource name from a function name: lowercase letters,
/// digits and single '-'s (queue and container names allow no more).
fn resource_name(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_owned()
}

/// A function of a Node.js v4 app named like `name` (case-insensitively):
/// a script in `folder` of that name, or one registering it
/// (`app.http('name', ...)` and the like).
fn node_v4_function(folder: &Path, name: &str) -> Option<String> {
    let registration = regex::Regex::new(r#"\bapp\s*\.\s*\w+\s*\(\s*['"`]([^'"`]+)['"`]"#).ok()?;
    let entries = fs::read_dir(folder).ok()?;
    for entry in entries.flatten() {
        let path = entry.path();
        let is_script = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "js" | "mjs" | "cjs" | "ts" | "mts" | "cts"));
        if !is_script {
            continue;
        }
        if let Some(stem) = path.file_stem().and_then(|s| s.to_str())
            && stem.eq_ignore_ascii_case(name)
        {
            return Some(stem.to_owned());
        }
        let Ok(text) = fs::read_to_string(&path) else {
            continue;
        };
        for caps in registration.captures_iter(&text) {
            if caps[1].eq_ignore_ascii_case(name) {
                return Some(caps[1].to_owned());
            }
        }
    }
    None
}

/// The greeting of every HTTP template.
const GREETING_TAIL: &str = "This HTTP triggered function executed successfully.";
/// What the HTTP templates answer without a name.
const NO_NAME: &str = "This HTTP triggered function executed successfully. Pass a name in the query string or in the request body for a personalized response.";

/// `src/functions/NAME.js` of a Node.js v4 app.
fn node_v4_script(template: Template, name: &str, esm: bool) -> String {
    let import = match (esm, template == Template::RabbitMq) {
        (true, false) => "import { app } from '@azure/functions';",
        (false, false) => "const { app } = require('@azure/functions');",
        (true, true) => "import { app, trigger } from '@azure/functions';",
        (false, true) => "const { app, trigger } = require('@azure/functions');",
    };
    let body = match template {
        Template::Http => NODE_V4_HTTP.to_owned(),
        Template::Timer => NODE_V4_TIMER.to_owned(),
        Template::Blob => NODE_V4_BLOB.to_owned(),
        Template::EventHub => NODE_V4_EVENTHUB.to_owned(),
        Template::Queue | Template::EventGrid | Template::ServiceBus | Template::RabbitMq => {
            let row = NODE_V4_LOGGING.iter().find(|row| row.template == template);
            row.map(NodeLogging::text).unwrap_or_default()
        }
        // Refused before: the v4 model has no manual trigger.
        Template::Manual => String::new(),
    };
    let body = fill(&body, name);
    format!("{import}\n\n{body}")
}

/// A Node.js v4 template that only logs its trigger.
struct NodeLogging {
    template: Template,
    /// The `app` method and the lines of its options before the handler.
    method: &'static str,
    options: &'static [&'static str],
    /// The handler's argument and what is logged before it.
    arg: &'static str,
    message: &'static str,
}

#[rustfmt::skip]
const NODE_V4_LOGGING: [NodeLogging; 4] = [
    NodeLogging { template: Template::Queue, method: "storageQueue", options: &["queueName: '%RES%-items',", "connection: 'AzureWebJobsStorage',"], arg: "queueItem", message: "Storage queue function processed work item:" },
    NodeLogging { template: Template::EventGrid, method: "eventGrid", options: &[], arg: "event", message: "Event grid function processed event:" },
    NodeLogging { template: Template::ServiceBus, method: "serviceBusQueue", options: &["connection: 'ServiceBusConnection',", "queueName: '%RES%-queue',"], arg: "message", message: "Service bus queue function processed message:" },
    NodeLogging { template: Template::RabbitMq, method: "generic", options: &["trigger: trigger.generic({", "    type: 'rabbitMQTrigger',", "    queueName: '%RES%-queue',", "    connectionStringSetting: 'RabbitMQConnection',", "}),"], arg: "message", message: "RabbitMQ function processed message:" },
];

impl NodeLogging {
    /// The function's text, with placeholders.
    fn text(&self) -> String {
        let NodeLogging {
            method,
            options,
            arg,
            message,
            ..
        } = self;
        let options: String = options.iter().map(|o| format!("    {o}\n")).collect();
        format!(
            "app.{method}('%NAME%', {{\n{options}    handler: ({arg}, context) => {{\n        context.log('{message}', {arg});\n    }},\n}});\n"
        )
    }
}

/// Fills a template's placeholders.
fn fill(text: &str, name: &str) -> String {
    text.replace("%NAME%", name)
        .replace("%RES%", &resource_name(name))
        .replace("%GREETING%", GREETING_TAIL)
        .replace("%NO_NAME%", NO_NAME)
}

const NODE_V4_HTTP: &str = r#"app.http('%NAME%', {
    methods: ['GET', 'POST'],
    authLevel: 'function',
    handler: async (request, context) => {
        context.log(`Http function processed request for url "${request.url}"`);

        let name = request.query.get('name');
        if (!name) {
            try {
                const body = await request.json();
                name = body && body.name;
            } catch {
                // No JSON body: no name from it.
            }
        }

        if (name) {
            return { body: `Hello, ${name}. %GREETING%` };
        }
        return { body: '%NO_NAME%' };
    },
});
"#;

const NODE_V4_TIMER: &str = r#"app.timer('%NAME%', {
    schedule: '0 */5 * * * *',
    handler: (myTimer, context) => {
        if (myTimer.isPastDue) {
            context.log('Timer function is running late!');
        }
        context.log('Timer function processed request.');
    },
});
"#;

const NODE_V4_BLOB: &str = r#"app.storageBlob('%NAME%', {
    path: '%RES%/{name}',
    connection: 'AzureWebJobsStorage',
    handler: (blob, context) => {
        context.log(
            `Storage blob function processed blob "${context.triggerMetadata.name}" with size ${blob.length} bytes`
        );
    },
});
"#;

const NODE_V4_EVENTHUB: &str = r#"app.eventHub('%NAME%', {
    connection: 'EventHubConnection',
    eventHubName: '%RES%-hub',
    cardinality: 'many',
    handler: (messages, context) => {
        if (Array.isArray(messages)) {
            context.log(`Event hub function processed ${messages.length} messages`);
            for (const message of messages) {
                context.log('Event hub message:', message);
            }
        } else {
            context.log('Event hub function processed message:', messages);
        }
    },
});
"#;

/// function.json of a Node.js v3 or Python v1 function (`script_file`:
/// Python's `__init__.py`), with the binding names Azure's templates use.
fn script_function_json(template: Template, name: &str, script_file: Option<&str>) -> Value {
    let python = script_file.is_some();
    let res = resource_name(name);
    let trigger = match template {
        Template::Http => {
            json!({"authLevel": "function", "type": "httpTrigger", "direction": "in", "name": "req", "methods": ["get", "post"]})
        }
        Template::Timer => {
            json!({"name": if python { "mytimer" } else { "myTimer" }, "type": "timerTrigger", "direction": "in", "schedule": "0 */5 * * * *"})
        }
        Template::Queue => {
            json!({"name": if python { "msg" } else { "myQueueItem" }, "type": "queueTrigger", "direction": "in", "queueName": format!("{res}-items"), "connection": "AzureWebJobsStorage"})
        }
        Template::Blob => {
            json!({"name": "myblob", "type": "blobTrigger", "direction": "in", "path": format!("{res}/{{name}}"), "connection": "AzureWebJobsStorage"})
        }
        Template::Manual => json!({"name": "input", "type": "manualTrigger", "direction": "in"}),
        Template::EventGrid => {
            json!({"name": if python { "event" } else { "eventGridEvent" }, "type": "eventGridTrigger", "direction": "in"})
        }
        Template::ServiceBus => {
            json!({"name": if python { "msg" } else { "mySbMsg" }, "type": "serviceBusTrigger", "direction": "in", "queueName": format!("{res}-queue"), "connection": "ServiceBusConnection"})
        }
        Template::EventHub => {
            json!({"name": if python { "events" } else { "eventHubMessages" }, "type": "eventHubTrigger", "direction": "in", "eventHubName": format!("{res}-hub"), "connection": "EventHubConnection", "cardinality": "many", "consumerGroup": "$Default"})
        }
        Template::RabbitMq => {
            json!({"name": if python { "msg" } else { "myQueueItem" }, "type": "rabbitMQTrigger", "direction": "in", "queueName": format!("{res}-queue"), "connectionStringSetting": "RabbitMQConnection"})
        }
    };
    let mut bindings = vec![trigger];
    if template == Template::Http {
        bindings.push(json!({"type": "http", "direction": "out", "name": if python { "$return" } else { "res" }}));
    }
    match script_file {
        Some(file) => json!({"scriptFile": file, "bindings": bindings}),
        None => json!({"bindings": bindings}),
    }
}

/// index.js of a Node.js v3 function.
fn node_v3_script(template: Template) -> String {
    // Most templates only log their trigger: its argument and a message.
    let (arg, message) = match template {
        Template::Http => return fill(NODE_V3_HTTP, ""),
        Template::Timer => return NODE_V3_TIMER.to_owned(),
        Template::Blob => return NODE_V3_BLOB.to_owned(),
        Template::EventHub => return NODE_V3_EVENTHUB.to_owned(),
        Template::Queue => (
            "myQueueItem",
            "JavaScript queue trigger function processed work item",
        ),
        Template::Manual => (
            "input",
            "JavaScript manually triggered function called with input:",
        ),
        Template::EventGrid => (
            "eventGridEvent",
            "JavaScript Event Grid function processed an event:",
        ),
        Template::ServiceBus => (
            "mySbMsg",
            "JavaScript ServiceBus queue trigger function processed message",
        ),
        Template::RabbitMq => (
            "myQueueItem",
            "JavaScript RabbitMQ trigger function processed message",
        ),
    };
    format!(
        "module.exports = async function (context, {arg}) {{\n    context.log('{message}', {arg});\n}};\n"
    )
}

const NODE_V3_HTTP: &str = r#"module.exports = async function (context, req) {
    context.log('JavaScript HTTP trigger function processed a request.');

    const name = req.query.name || (req.body && req.body.name);
    const responseMessage = name
        ? `Hello, ${name}. %GREETING%`
        : '%NO_NAME%';

    context.res = {
        // status: 200, /* Defaults to 200 */
        body: responseMessage,
    };
};
"#;

const NODE_V3_TIMER: &str = r#"module.exports = async function (context, myTimer) {
    const timeStamp = new Date().toISOString();

    if (myTimer.isPastDue) {
        context.log('JavaScript is running late!');
    }
    context.log('JavaScript timer trigger function ran!', timeStamp);
};
"#;

const NODE_V3_BLOB: &str = r#"module.exports = async function (context, myblob) {
    context.log(
        `JavaScript blob trigger function processed blob "${context.bindingData.blobTrigger}" with size ${myblob.length} bytes`
    );
};
"#;

const NODE_V3_EVENTHUB: &str = r#"module.exports = async function (context, eventHubMessages) {
    context.log(`JavaScript eventhub trigger function called for ${eventHubMessages.length} messages`);

    eventHubMessages.forEach((message, index) => {
        context.log(`Processed message ${index}:`, message);
    });
};
"#;

/// `__init__.py` of a Python v1 function.
fn python_v1_script(template: Template) -> String {
    let (imports, main) = match template {
        Template::Http => ("import logging\n", PYTHON_HTTP),
        Template::Timer => (
            "import datetime\nimport logging\n",
            r#"def main(mytimer: func.TimerRequest) -> None:
    utc_timestamp = datetime.datetime.now(datetime.timezone.utc).isoformat()

    if mytimer.past_due:
        logging.info('The timer is past due!')

    logging.info('Python timer trigger function ran at %s', utc_timestamp)
"#,
        ),
        Template::Queue => (
            "import logging\n",
            r#"def main(msg: func.QueueMessage) -> None:
    logging.info('Python queue trigger function processed a queue item: %s',
                 msg.get_body().decode('utf-8'))
"#,
        ),
        Template::Blob => (
            "import logging\n",
            r#"def main(myblob: func.InputStream):
    logging.info(f"Python blob trigger function processed blob \n"
                 f"Name: {myblob.name}\n"
                 f"Blob Size: {myblob.length} bytes")
"#,
        ),
        Template::Manual => (
            "import logging\n",
            r#"def main(input: str) -> None:
    logging.info('Python manually triggered function called with input: %s', input)
"#,
        ),
        Template::EventGrid => (
            "import json\nimport logging\n",
            r#"def main(event: func.EventGridEvent):
    result = json.dumps({
        'id': event.id,
        'data': event.get_json(),
        'topic': event.topic,
        'subject': event.subject,
        'event_type': event.event_type,
    })

    logging.info('Python EventGrid trigger processed an event: %s', result)
"#,
        ),
        Template::ServiceBus => (
            "import logging\n",
            r#"def main(msg: func.ServiceBusMessage):
    logging.info('Python ServiceBus queue trigger processed message: %s',
                 msg.get_body().decode('utf-8'))
"#,
        ),
        Template::EventHub => (
            "import logging\nfrom typing import List\n",
            r#"def main(events: List[func.EventHubEvent]):
    for event in events:
        logging.info('Python EventHub trigger processed an event: %s',
                     event.get_body().decode('utf-8'))
"#,
        ),
        Template::RabbitMq => (
            "import logging\n",
            r#"def main(msg: str) -> None:
    logging.info('Python RabbitMQ trigger function processed message: %s', msg)
"#,
        ),
    };
    // A v1 function is always `main`.
    fill(
        &format!("{imports}\nimport azure.functions as func\n\n\n{main}"),
        "",
    )
    .replace("%IDENT%", "main")
}

/// Python's keywords, which no function may be called.
const PYTHON_KEYWORDS: [&str; 35] = [
    "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue",
    "def", "del", "elif", "else", "except", "finally", "for", "from", "global", "if", "import",
    "in", "is", "lambda", "nonlocal", "not", "or", "pass", "raise", "return", "try", "while",
    "with", "yield",
];

/// Appends a function to a Python v2 app's function_app.py, adding
/// `import logging` after `import azure.functions as func` when missing.
/// Nothing else in the file changes; it is replaced in one rename.
fn append_python_v2(path: &Path, template: Template, name: &str) -> Result<(), ScaffoldError> {
    let io_err = |source| ScaffoldError::Io {
        path: path.to_path_buf(),
        source,
    };
    let text = fs::read_to_string(path).map_err(io_err)?;
    let not_app = |reason: &str| ScaffoldError::NotAFunctionApp {
        path: path.to_path_buf(),
        reason: reason.to_owned(),
    };
    let re = |pattern: &str| regex::Regex::new(pattern).map_err(|e| not_app(&e.to_string()));
    let func_import = re(r"(?m)^import[ \t]+azure\.functions[ \t]+as[ \t]+func[ \t]*(?:#.*)?\r?$")?
        .find(&text)
        .ok_or_else(|| not_app("no `import azure.functions as func`"))?;
    let app = re(
        r"(?m)^([A-Za-z_]\w*)[ \t]*(?::[^=\n]+)?=[ \t]*(?:func\.FunctionApp|df\.DFApp)[ \t]*\(",
    )?
    .captures(&text)
    .map(|c| c[1].to_owned())
    .ok_or_else(|| not_app("no `app = func.FunctionApp(...)`"))?;
    let defs: Vec<String> = re(r"(?m)^(?:async[ \t]+)?def[ \t]+([A-Za-z_]\w*)[ \t]*\(")?
        .captures_iter(&text)
        .map(|c| c[1].to_owned())
        .collect();
    let named: Vec<String> = re(r#"\.function_name\(\s*(?:name\s*=\s*)?["']([^"']+)["']"#)?
        .captures_iter(&text)
        .map(|c| c[1].to_owned())
        .collect();
    if let Some(existing) = defs
        .iter()
        .chain(&named)
        .find(|d| d.eq_ignore_ascii_case(name))
    {
        return Err(ScaffoldError::FunctionExists {
            existing: existing.clone(),
        });
    }

    // The Python name: the function name itself where Python allows it
    // (then the function is named after it), else a safe identifier and
    // an explicit @app.function_name.
    let reserved = |id: &str| {
        PYTHON_KEYWORDS.contains(&id)
            || [app.as_str(), "func", "logging"].contains(&id)
            || defs.iter().any(|d| d == id)
    };
    let mut ident = name.replace('-', "_");
    let decorator = if ident == name && !reserved(&ident) {
        String::new()
    } else {
        ident.push_str("_function");
        let base = ident.clone();
        let mut n = 2;
        while reserved(&ident) {
            ident = format!("{base}{n}");
            n += 1;
        }
        format!("@{app}.function_name(name=\"{name}\")\n")
    };
    let block = fill(&python_v2_block(template), name)
        .replace("%APP%", &app)
        .replace("%IDENT%", &ident);

    let mut new_text = String::with_capacity(text.len() + block.len() + 32);
    let has_logging = re(r"(?m)^import[ \t]+[^#\n]*\blogging\b")?.is_match(&text);
    if has_logging {
        new_text.push_str(&text);
    } else {
        let at = func_import.start();
        new_text.push_str(&text[..at]);
        new_text.push_str("import logging\n");
        new_text.push_str(&text[at..]);
    }
    let trailing = new_text.len() - new_text.trim_end_matches('\n').len();
    if !new_text.trim().is_empty() {
        for _ in trailing.min(3)..3 {
            new_text.push('\n');
        }
    }
    new_text.push_str(&decorator);
    new_text.push_str(&block);

    let tmp = path.with_file_name(format!(".{FUNCTION_APP_PY}.fnhost-{}", std::process::id()));
    let tmp_err = |source| ScaffoldError::Io {
        path: tmp.clone(),
        source,
    };
    let written = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(new_text.as_bytes())?;
        f.sync_all()?;
        if let Ok(meta) = fs::metadata(path) {
            fs::set_permissions(&tmp, meta.permissions())?;
        }
        Ok(())
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(tmp_err(e));
    }
    fs::rename(&tmp, path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        io_err(e)
    })
}

/// The HTTP function of both Python models (v1 names it `main`).
const PYTHON_HTTP: &str = r#"def %IDENT%(req: func.HttpRequest) -> func.HttpResponse:
    logging.info('Python HTTP trigger function processed a request.')

    name = req.params.get('name')
    if not name:
        try:
            req_body = req.get_json()
        except ValueError:
            pass
        else:
            name = req_body.get('name') if isinstance(req_body, dict) else None

    if name:
        return func.HttpResponse(f"Hello, {name}. %GREETING%")
    return func.HttpResponse(
        "%NO_NAME%",
        status_code=200,
    )
"#;

const PYTHON_V2_HTTP_ROUTE: &str = r#"@%APP%.route(route="%NAME%", methods=["GET", "POST"], auth_level=func.AuthLevel.FUNCTION)
"#;

/// A Python v2 function's decorators and definition, with placeholders.
fn python_v2_block(template: Template) -> String {
    match template {
        // The same function as v1's, under a route.
        Template::Http => format!("{PYTHON_V2_HTTP_ROUTE}{PYTHON_HTTP}"),
        Template::Timer => PYTHON_V2_TIMER.to_owned(),
        Template::Blob => PYTHON_V2_BLOB.to_owned(),
        Template::EventGrid => PYTHON_V2_EVENTGRID.to_owned(),
        Template::RabbitMq => PYTHON_V2_RABBITMQ.to_owned(),
        Template::Queue | Template::ServiceBus | Template::EventHub => {
            let row = PYTHON_V2_MESSAGE
                .iter()
                .find(|row| row.template == template);
            row.map(PythonMessage::text).unwrap_or_default()
        }
        // Refused before: the v2 model has no manual trigger.
        Template::Manual => String::new(),
    }
}

/// A Python v2 template that logs the body of the message it is given.
struct PythonMessage {
    template: Template,
    /// The trigger decorator and its first arguments.
    decorator: &'static str,
    args: &'static str,
    connection: &'static str,
    /// The argument's name and `func` type.
    arg: &'static str,
    ty: &'static str,
    /// What is logged before the body.
    message: &'static str,
}

#[rustfmt::skip]
const PYTHON_V2_MESSAGE: [PythonMessage; 3] = [
    PythonMessage { template: Template::Queue, decorator: "queue_trigger", args: r#"arg_name="azqueue", queue_name="%RES%-items""#, connection: "AzureWebJobsStorage", arg: "azqueue", ty: "QueueMessage", message: "Python Queue trigger processed a message" },
    PythonMessage { template: Template::ServiceBus, decorator: "service_bus_queue_trigger", args: r#"arg_name="azservicebus", queue_name="%RES%-queue""#, connection: "ServiceBusConnection", arg: "azservicebus", ty: "ServiceBusMessage", message: "Python ServiceBus Queue trigger processed a message" },
    PythonMessage { template: Template::EventHub, decorator: "event_hub_message_trigger", args: r#"arg_name="azeventhub", event_hub_name="%RES%-hub""#, connection: "EventHubConnection", arg: "azeventhub", ty: "EventHubEvent", message: "Python EventHub trigger processed an event" },
];

impl PythonMessage {
    /// The function's text: the connection goes on the decorator's second
    /// line, aligned under its first as Azure's templates do (for an app
    /// named `app`).
    fn text(&self) -> String {
        let PythonMessage {
            decorator,
            args,
            connection,
            arg,
            ty,
            message,
            ..
        } = self;
        let indent = " ".repeat("@app.".len() + decorator.len() + 1);
        format!(
            "@%APP%.{decorator}({args},\n{indent}connection=\"{connection}\")\ndef %IDENT%({arg}: func.{ty}):\n    logging.info('{message}: %s',\n                 {arg}.get_body().decode('utf-8'))\n"
        )
    }
}

const PYTHON_V2_TIMER: &str = r#"@%APP%.timer_trigger(schedule="0 */5 * * * *", arg_name="myTimer", run_on_startup=False,
                   use_monitor=False)
def %IDENT%(myTimer: func.TimerRequest) -> None:
    if myTimer.past_due:
        logging.info('The timer is past due!')

    logging.info('Python timer trigger function executed.')
"#;

const PYTHON_V2_BLOB: &str = r#"@%APP%.blob_trigger(arg_name="myblob", path="%RES%/{name}",
                  connection="AzureWebJobsStorage")
def %IDENT%(myblob: func.InputStream):
    logging.info(f"Python blob trigger function processed blob "
                 f"Name: {myblob.name} "
                 f"Blob Size: {myblob.length} bytes")
"#;

const PYTHON_V2_EVENTGRID: &str = r#"@%APP%.event_grid_trigger(arg_name="azeventgrid")
def %IDENT%(azeventgrid: func.EventGridEvent):
    logging.info('Python EventGrid trigger processed an event: %s', azeventgrid.get_json())
"#;

const PYTHON_V2_RABBITMQ: &str = r#"@%APP%.generic_trigger(arg_name="msg", type="rabbitMQTrigger", queue_name="%RES%-queue",
                       connection_string_setting="RabbitMQConnection")
def %IDENT%(msg: str) -> None:
    logging.info('Python RabbitMQ trigger function processed message: %s', msg)
"#;

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

    fn temp() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    fn read(path: &Path) -> String {
        fs::read_to_string(path).unwrap()
    }

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

    #[test]
    fn models_parse_show_and_fit_their_runtime() {
        assert_eq!("v4".parse::<Model>().unwrap(), Model::V4);
        assert_eq!("V2".parse::<Model>().unwrap(), Model::V2);
        assert_eq!("1".parse::<Model>().unwrap(), Model::V1);
        assert!("v5".parse::<Model>().is_err());
        assert_eq!(Model::V3.to_string(), "v3");
        assert_eq!(
            Model::resolve(WorkerRuntime::Node, None).unwrap(),
            Some(Model::V4)
        );
        assert_eq!(
            Model::resolve(WorkerRuntime::Python, None).unwrap(),
            Some(Model::V2)
        );
        assert_eq!(Model::resolve(WorkerRuntime::Custom, None).unwrap(), None);
        let e = Model::resolve(WorkerRuntime::Node, Some(Model::V2))
            .unwrap_err()
            .to_string();
        assert!(e.contains("node has no programming model v2"), "{e}");
        assert!(e.contains("v4") && e.contains("v3"), "{e}");
        let e = Model::resolve(WorkerRuntime::Custom, Some(Model::V4))
            .unwrap_err()
            .to_string();
        assert!(e.contains("leave out --model"), "{e}");
    }

    #[test]
    fn init_writes_each_models_layout() {
        let tmp = temp();
        let cases: [(WorkerRuntime, Option<Model>, &[&str]); 5] = [
            (
                WorkerRuntime::Node,
                None,
                &["package.json", ".funcignore", ".gitignore"],
            ),
            (WorkerRuntime::Node, Some(Model::V3), &["package.json"]),
            (
                WorkerRuntime::Python,
                None,
                &["function_app.py", "requirements.txt"],
            ),
            (
                WorkerRuntime::Python,
                Some(Model::V1),
                &["requirements.txt"],
            ),
            (WorkerRuntime::Custom, None, &[".funcignore"]),
        ];
        for (i, (runtime, model, extra)) in cases.into_iter().enumerate() {
            let dir = tmp.path().join(format!("My App{i}"));
            let files = init_app(&dir, runtime, model).unwrap();
            for f in ["host.json", "local.settings.json"].iter().chain(extra) {
                assert!(files.contains(&dir.join(f)), "{runtime} {model:?}: {f}");
            }
            let settings: Value =
                serde_json::from_str(&read(&dir.join("local.settings.json"))).unwrap();
            assert_eq!(
                settings["Values"]["FUNCTIONS_WORKER_RUNTIME"],
                runtime.as_str()
            );
            assert_eq!(settings["Values"]["AzureWebJobsStorage"], "");
            let host: Value = serde_json::from_str(&read(&dir.join("host.json"))).unwrap();
            if runtime == WorkerRuntime::Custom {
                assert_eq!(
                    host["customHandler"]["description"]["defaultExecutablePath"],
                    "handler"
                );
                assert!(!dir.join("package.json").exists());
            } else {
                assert_eq!(host["extensionBundle"]["version"], "[4.*, 5.0.0)");
            }
            let resolved = Model::resolve(runtime, model).unwrap();
            assert_eq!(
                Model::detect(&dir, runtime),
                resolved,
                "{runtime} {model:?}"
            );
        }
        let v4: Value =
            serde_json::from_str(&read(&tmp.path().join("My App0/package.json"))).unwrap();
        assert_eq!(v4["name"], "my-app0");
        assert_eq!(v4["main"], "src/functions/*.js");
        assert_eq!(v4["dependencies"]["@azure/functions"], "^4.0.0");
        let v3: Value =
            serde_json::from_str(&read(&tmp.path().join("My App1/package.json"))).unwrap();
        assert!(v3.get("main").is_none());
        let py = read(&tmp.path().join("My App2/function_app.py"));
        assert!(py.contains("import azure.functions as func"));
        assert!(py.contains("app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)"));
        assert!(read(&tmp.path().join("My App3/requirements.txt")).contains("\nazure-functions\n"));
    }

    #[test]
    fn init_never_overwrites_and_writes_nothing_then() {
        let tmp = temp();
        fs::write(tmp.path().join("package.json"), "{}").unwrap();
        let e = init_app(tmp.path(), WorkerRuntime::Node, None).unwrap_err();
        assert!(matches!(e, ScaffoldError::Exists { .. }), "{e}");
        assert!(e.to_string().contains("never overwrites"));
        assert!(!tmp.path().join("host.json").exists());
        assert_eq!(read(&tmp.path().join("package.json")), "{}");
    }

    #[test]
    fn package_name_comes_from_the_folder_even_when_relative() {
        assert_eq!(package_name(Path::new("/x/Hello World")), "hello-world");
        assert_eq!(package_name(Path::new("/x/app/sub/..")), "app");
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(package_name(Path::new(".")), package_name(&cwd));
        assert_eq!(package_name(Path::new("x/..")), package_name(&cwd));
        assert_eq!(package_name(Path::new("/")), "function-app");
    }

    #[test]
    fn new_writes_each_models_files() {
        let tmp = temp();
        let cases = [
            (
                WorkerRuntime::Node,
                Model::V4,
                vec!["src/functions/Hello.js"],
            ),
            (
                WorkerRuntime::Node,
                Model::V3,
                vec!["Hello/function.json", "Hello/index.js"],
            ),
            (
                WorkerRuntime::Python,
                Model::V1,
                vec!["Hello/function.json", "Hello/__init__.py"],
            ),
        ];
        for (runtime, model, expected) in cases {
            let dir = tmp.path().join(model.as_str());
            init_app(&dir, runtime, Some(model)).unwrap();
            let done = new_function(&dir, Template::Http, "Hello").unwrap();
            assert_eq!(done.model, Some(model));
            let want: Vec<PathBuf> = expected.iter().map(|f| dir.join(f)).collect();
            assert_eq!(done.created, want);
            assert!(done.updated.is_empty());
            let e = new_function(&dir, Template::Timer, "hello").unwrap_err();
            assert!(
                matches!(e, ScaffoldError::FunctionExists { .. }),
                "{model}: {e}"
            );
        }
        let v4 = read(&tmp.path().join("v4/src/functions/Hello.js"));
        assert!(v4.starts_with("const { app } = require('@azure/functions');"));
        assert!(v4.contains("app.http('Hello', {"));
        assert!(v4.contains("authLevel: 'function'"));
        assert!(v4.contains("This HTTP triggered function executed successfully."));
        let v1: Value =
            serde_json::from_str(&read(&tmp.path().join("v1/Hello/function.json"))).unwrap();
        assert_eq!(v1["scriptFile"], "__init__.py");
        assert_eq!(v1["bindings"][1]["name"], "$return");
        let v3: Value =
            serde_json::from_str(&read(&tmp.path().join("v3/Hello/function.json"))).unwrap();
        assert!(v3.get("scriptFile").is_none());
        assert_eq!(v3["bindings"][0]["authLevel"], "function");
    }

    #[test]
    fn node_v4_finds_functions_registered_in_any_file() {
        let tmp = temp();
        init_app(tmp.path(), WorkerRuntime::Node, None).unwrap();
        fs::create_dir_all(tmp.path().join(NODE_V4_DIR)).unwrap();
        fs::write(
            tmp.path().join(NODE_V4_DIR).join("all.js"),
            "const { app } = require('@azure/functions');\napp.http(\"Greet\", { handler: () => ({}) });\n",
        )
        .unwrap();
        let e = new_function(tmp.path(), Template::Http, "greet").unwrap_err();
        assert!(e.to_string().contains("'Greet'"), "{e}");
        // ESM apps get an import.
        let esm = temp();
        init_app(esm.path(), WorkerRuntime::Node, None).unwrap();
        let mut package: Value =
            serde_json::from_str(&read(&esm.path().join(PACKAGE_JSON))).unwrap();
        package["type"] = json!("module");
        fs::remove_file(esm.path().join(PACKAGE_JSON)).unwrap();
        fs::write(esm.path().join(PACKAGE_JSON), pretty(&package)).unwrap();
        new_function(esm.path(), Template::Timer, "Tick").unwrap();
        let text = read(&esm.path().join("src/functions/Tick.js"));
        assert!(
            text.starts_with("import { app } from '@azure/functions';"),
            "{text}"
        );
        assert!(text.contains("schedule: '0 */5 * * * *'"));
    }

    #[test]
    fn python_v2_appends_and_keeps_everything_else() {
        let tmp = temp();
        init_app(tmp.path(), WorkerRuntime::Python, None).unwrap();
        let path = tmp.path().join(FUNCTION_APP_PY);
        let before = read(&path);
        let done = new_function(tmp.path(), Template::Http, "Hello").unwrap();
        assert_eq!(done.updated, vec![path.clone()]);
        assert!(done.created.is_empty());
        let after = read(&path);
        assert!(after.starts_with(&before), "{after}");
        assert!(
            after.contains("\n\n\n@app.route(route=\"Hello\""),
            "{after}"
        );
        assert!(after.contains("def Hello(req: func.HttpRequest) -> func.HttpResponse:"));
        new_function(tmp.path(), Template::Timer, "Tick").unwrap();
        let third = read(&path);
        assert!(third.starts_with(&after));
        assert!(third.contains("@app.timer_trigger(schedule=\"0 */5 * * * *\""));
        // Names are case-insensitive; nothing changes on refusal.
        let e = new_function(tmp.path(), Template::Queue, "tick").unwrap_err();
        assert!(matches!(e, ScaffoldError::FunctionExists { .. }), "{e}");
        assert_eq!(read(&path), third);
        // The manual trigger does not exist in v2.
        let e = new_function(tmp.path(), Template::Manual, "Run").unwrap_err();
        assert!(
            e.to_string()
                .contains("python v2 programming model has no manual trigger"),
            "{e}"
        );
        // Names Python cannot take get an explicit function_name.
        new_function(tmp.path(), Template::Http, "my-fn").unwrap();
        new_function(tmp.path(), Template::Http, "class").unwrap();
        let text = read(&path);
        assert!(
            text.contains("@app.function_name(name=\"my-fn\")\n@app.route(route=\"my-fn\""),
            "{text}"
        );
        assert!(text.contains("def my_fn_function(req"), "{text}");
        assert!(
            text.contains("@app.function_name(name=\"class\")"),
            "{text}"
        );
        assert!(text.contains("def class_function(req"), "{text}");
        let e = new_function(tmp.path(), Template::Http, "MY-FN").unwrap_err();
        assert!(matches!(e, ScaffoldError::FunctionExists { .. }), "{e}");
        assert!(
            fs::read_dir(tmp.path())
                .unwrap()
                .flatten()
                .all(|e| !e.file_name().to_string_lossy().contains("fnhost-"))
        );
    }

    #[test]
    fn python_v2_adds_a_missing_logging_import_and_finds_the_app_object() {
        let tmp = temp();
        init_app(tmp.path(), WorkerRuntime::Python, Some(Model::V1)).unwrap();
        let path = tmp.path().join(FUNCTION_APP_PY);
        fs::write(
            &path,
            "from __future__ import annotations\nimport azure.functions as func\n\nfunctions = func.FunctionApp()\n# the end",
        )
        .unwrap();
        new_function(tmp.path(), Template::Http, "Hello").unwrap();
        let text = read(&path);
        assert!(
            text.starts_with("from __future__ import annotations\nimport logging\nimport azure.functions as func\n\nfunctions = func.FunctionApp()\n# the end\n\n\n@functions.route("),
            "{text}"
        );
        fs::write(&path, "x = 1\n").unwrap();
        let e = new_function(tmp.path(), Template::Http, "Other").unwrap_err();
        assert!(matches!(e, ScaffoldError::NotAFunctionApp { .. }), "{e}");
        assert_eq!(read(&path), "x = 1\n");
    }

    #[test]
    fn manual_exists_only_where_the_model_has_it() {
        let tmp = temp();
        let v4 = tmp.path().join("v4");
        init_app(&v4, WorkerRuntime::Node, None).unwrap();
        let e = new_function(&v4, Template::Manual, "Run").unwrap_err();
        assert!(
            e.to_string()
                .contains("node v4 programming model has no manual trigger"),
            "{e}"
        );
        assert!(!v4.join("src").exists());
        let v3 = tmp.path().join("v3");
        init_app(&v3, WorkerRuntime::Node, Some(Model::V3)).unwrap();
        new_function(&v3, Template::Manual, "Run").unwrap();
        let f: Value = serde_json::from_str(&read(&v3.join("Run/function.json"))).unwrap();
        assert_eq!(f["bindings"][0]["type"], "manualTrigger");
    }

    #[test]
    fn custom_apps_get_function_json_only() {
        let tmp = temp();
        init_app(tmp.path(), WorkerRuntime::Custom, None).unwrap();
        let done = new_function(tmp.path(), Template::Http, "Hello").unwrap();
        assert_eq!(done.created, vec![tmp.path().join("Hello/function.json")]);
        assert_eq!(done.model, None);
        let f: Value =
            serde_json::from_str(&read(&tmp.path().join("Hello/function.json"))).unwrap();
        assert_eq!(f, Template::Http.function_json("Hello"));
        let e = new_function(tmp.path(), Template::Http, "hello").unwrap_err();
        assert!(e.to_string().contains("'Hello'"), "{e}");
    }

    #[test]
    fn every_template_is_written_in_every_model() {
        for model in Model::ALL {
            let tmp = temp();
            init_app(tmp.path(), model.runtime(), Some(model)).unwrap();
            for template in Template::ALL {
                let name = format!("F{}", template.name());
                let result = new_function(tmp.path(), template, &name);
                if model.has_template(template) {
                    let done = result.unwrap();
                    let files: Vec<&PathBuf> = done.created.iter().chain(&done.updated).collect();
                    assert!(!files.is_empty(), "{model} {template}");
                    let text: String = files.iter().map(|f| read(f)).collect();
                    for placeholder in [
                        "%NAME%",
                        "%RES%",
                        "%APP%",
                        "%IDENT%",
                        "%GREETING%",
                        "%NO_NAME%",
                    ] {
                        assert!(!text.contains(placeholder), "{model} {template}: {text}");
                    }
                    let named = text.contains(&name)
                        || files.iter().all(|f| f.to_string_lossy().contains(&name));
                    assert!(named, "{model} {template}: {text}");
                } else {
                    assert!(matches!(result, Err(ScaffoldError::NoSuchTrigger { .. })));
                }
            }
        }
    }
}
