//! Function apps: a folder with host.json and one subfolder per function,
//! loaded and validated exactly as the host reads it.
//!
//! This file is long (about 1,050 lines) because loading is one pass over
//! the folders with one set of rules (names, duplicates, routes, schedules,
//! settings, the allow-list) that worker-indexed functions go through too;
//! the documents' own parsing is in `function`, `host`, `settings` and
//! `retry`.
//!
//! Parsing a document ([`HostConfig::parse`], [`FunctionConfig::parse`]) is
//! separate from loading a folder ([`FunctionApp::load`]), which adds the
//! rules that need the whole app: function names, duplicates, the primary
//! script, routes, schedules, app settings and the allow-list.

mod function;
mod host;
mod retry;
mod settings;

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

pub use function::{DisabledField, FunctionConfig};
pub use host::{
    CustomHandlerConfig, DEFAULT_ROUTE_PREFIX, ExtensionBundle, FunctionTimeout, HostConfig,
    HostVersion,
};
pub use retry::{RetryPolicy, RetryStrategy};
// The custom handler executor (`tokio`) expands `%name%` in its paths.
#[cfg(feature = "tokio")]
pub(crate) use settings::replace_percent_names;
pub use settings::{AppSettings, LocalSettings, UnresolvedSetting, WORKER_RUNTIMES};

use crate::binding::{AuthLevel, BindingKind};
use crate::diag::{Code, Diagnostic, Diagnostics, DocReporter};
use crate::json::{self, Seg};
use crate::route::{MethodSet, RouteTemplate, Router, RouterBuilder};
use crate::schedule::Schedule;

/// The name of the host configuration file.
pub const HOST_JSON: &str = "host.json";
/// The name of a function's configuration file.
pub const FUNCTION_JSON: &str = "function.json";
/// The name of the local settings file.
pub const LOCAL_SETTINGS_JSON: &str = "local.settings.json";

/// Why an app could not be loaded at all. Problems inside the app are
/// [`Diagnostics`], not errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The app folder does not exist.
    #[error("{}: no such folder; give the path of a function app (a folder with host.json)", path.display())]
    NotFound {
        /// The folder.
        path: PathBuf,
    },
    /// The path is not a folder.
    #[error("{}: not a folder; give the path of a function app folder, not a file", path.display())]
    NotADirectory {
        /// The path.
        path: PathBuf,
    },
    /// The app folder cannot be listed.
    #[error("{}: cannot read the folder: {source}", path.display())]
    Unreadable {
        /// The folder.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

/// How a function is reached over HTTP.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpRoute {
    /// The route as configured (or the function name), without the prefix.
    pub route: String,
    /// The full template, prefix included, such as `api/items/{id:int}`.
    pub template: RouteTemplate,
    /// The methods it answers.
    pub methods: MethodSet,
    /// Who may call it.
    pub auth_level: AuthLevel,
}

impl HttpRoute {
    /// The path as a URL path: `/api/items/{id:int}`.
    pub fn path(&self) -> String {
        format!("/{}", self.template.as_str())
    }
}

/// A timer trigger's schedule, resolved and parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct TimerSchedule {
    /// The expression as written (perhaps `%Setting%`).
    pub expression: String,
    /// The expression after `%Setting%` resolution.
    pub resolved: String,
    /// The parsed schedule.
    pub schedule: Schedule,
    /// Run once when the host starts.
    pub run_on_startup: bool,
}

/// A function that loaded without error.
#[derive(Debug, Clone, PartialEq)]
pub struct Function {
    /// Its name (the folder name).
    pub name: String,
    /// Its folder.
    pub dir: PathBuf,
    /// Its function.json.
    pub config: FunctionConfig,
    /// The primary script, when one applies (not for custom handlers).
    pub script: Option<PathBuf>,
    /// Whether it is disabled (by function.json or by the
    /// `AzureWebJobs.<name>.Disabled` setting): loaded, not triggered.
    pub disabled: bool,
    /// For HTTP triggers: the route.
    pub http: Option<HttpRoute>,
    /// For timer triggers: the schedule (`None` when it names an undefined
    /// setting).
    pub timer: Option<TimerSchedule>,
}

impl Function {
    /// The trigger type as written, such as `httpTrigger`.
    pub fn trigger_type(&self) -> &str {
        self.config
            .trigger()
            .map(|b| b.type_name.as_str())
            .unwrap_or("")
    }
}

/// A loaded function app: its configuration, its healthy functions, and
/// every problem found.
///
/// Loading is lenient, like the host: a broken function is reported and
/// skipped, the others load. [`FunctionApp::is_valid`] says whether any
/// problem is an error.
#[derive(Debug)]
pub struct FunctionApp {
    root: PathBuf,
    host: HostConfig,
    settings: AppSettings,
    functions: Vec<Function>,
    by_name: HashMap<String, usize>,
    router: Router<usize>,
    diagnostics: Diagnostics,
}

/// A function a language worker found by indexing the app (Azure's Python
/// v2 and Node.js v4 models declare functions in code, not in
/// function.json); see [`FunctionApp::with_indexed_functions`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedFunction {
    /// The function name.
    pub name: String,
    /// The file that declares it, relative to the app root where it can be
    /// (shown in diagnostics), such as `function_app.py`.
    pub source: String,
    /// Its bindings, each a function.json binding object as JSON text, in
    /// whatever letter case the worker sends (`"IN"`, `"ANONYMOUS"`).
    pub raw_bindings: Vec<String>,
}

/// Options for loading an app; see [`FunctionApp::loader`].
#[derive(Debug, Clone)]
pub struct AppLoader {
    root: PathBuf,
    environment: bool,
    settings: Vec<(String, String)>,
}

impl AppLoader {
    /// Whether the process environment overlays the app settings (default:
    /// yes, as in the host).
    pub fn with_environment(mut self, yes: bool) -> Self {
        self.environment = yes;
        self
    }

    /// A setting that overlays local.settings.json and the environment.
    pub fn with_setting(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.push((name.into(), value.into()));
        self
    }

    /// Loads the app.
    pub fn load(self) -> Result<FunctionApp, LoadError> {
        Loader::new(self)?.run()
    }
}

impl FunctionApp {
    /// Loads the app in `dir`, with the environment overlaying its settings.
    pub fn load(dir: impl AsRef<Path>) -> Result<FunctionApp, LoadError> {
        Self::loader(dir).load()
    }

    /// Starts loading the app in `dir` with options.
    pub fn loader(dir: impl AsRef<Path>) -> AppLoader {
        AppLoader {
            root: dir.as_ref().to_path_buf(),
            environment: true,
            settings: Vec::new(),
        }
    }

    /// The app folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// host.json.
    pub fn host(&self) -> &HostConfig {
        &self.host
    }

    /// The app settings.
    pub fn settings(&self) -> &AppSettings {
        &self.settings
    }

    /// The functions that loaded, sorted by name ignoring case.
    pub fn functions(&self) -> &[Function] {
        &self.functions
    }

    /// A function by name, ignoring case.
    pub fn function(&self, name: &str) -> Option<&Function> {
        self.function_index(name).map(|i| &self.functions[i])
    }

    /// The position of a function in [`FunctionApp::functions`], by name
    /// ignoring case.
    pub fn function_index(&self, name: &str) -> Option<usize> {
        self.by_name.get(&name.to_ascii_lowercase()).copied()
    }

    /// The HTTP router: its values are positions in
    /// [`FunctionApp::functions`].
    pub fn router(&self) -> &Router<usize> {
        &self.router
    }

    /// The app with `found` added to its functions, checked by the rules
    /// function.json files are (names, duplicates, routes, schedules,
    /// settings); problems become diagnostics of the returned app, naming
    /// the declaring file and the function.
    pub fn with_indexed_functions(&self, found: &[IndexedFunction]) -> FunctionApp {
        let mut loader = Loader {
            root: self.root.clone(),
            host: self.host.clone(),
            settings: self.settings.clone(),
            diagnostics: self.diagnostics.clone(),
            disabled_by_setting: self.settings.disabled_functions(),
        };
        let mut functions = self.functions.clone();
        let mut router = RouterBuilder::new();
        for (i, f) in functions.iter().enumerate() {
            if let Some(http) = &f.http {
                // These routes were checked when the app was loaded.
                let _ = router.add(http.template.clone(), http.methods, i);
            }
        }
        for f in found {
            let file = PathBuf::from(&f.source);
            if functions
                .iter()
                .any(|o| o.name.eq_ignore_ascii_case(&f.name))
            {
                loader.diagnostics.push(
                    Diagnostic::error(
                        Code::DuplicateFunction,
                        format!("the worker indexed a function '{}', and the app already has a function of that name (names are case-insensitive): rename one", f.name),
                    )
                    .with_file(&file)
                    .with_function(&f.name),
                );
                continue;
            }
            let mut bindings = Vec::with_capacity(f.raw_bindings.len());
            let mut bad = false;
            for raw in &f.raw_bindings {
                match serde_json::from_str::<serde_json::Value>(raw) {
                    Ok(v) => bindings.push(v),
                    Err(e) => {
                        loader.diagnostics.push(
                            Diagnostic::error(
                                Code::JsonSyntax,
                                format!("the worker sent a binding that is not JSON ({e}): {raw}"),
                            )
                            .with_file(&file)
                            .with_function(&f.name),
                        );
                        bad = true;
                    }
                }
            }
            if bad {
                continue;
            }
            let text = serde_json::to_string_pretty(&serde_json::json!({ "bindings": bindings }))
                .unwrap_or_default();
            let prefetched = Prefetched {
                name: f.name.clone(),
                text: Ok(text),
                parsed: None,
                files: None,
            };
            let Some(function) = loader.load_function(&file, prefetched, true) else {
                continue;
            };
            loader.add_function(function, &file, &mut functions, &mut router);
        }
        loader.finish(functions, router)
    }

    /// Every problem found, sorted by file and position.
    pub fn diagnostics(&self) -> &Diagnostics {
        &self.diagnostics
    }

    /// Whether no problem is an error.
    pub fn is_valid(&self) -> bool {
        !self.diagnostics.has_errors()
    }
}

/// Whether `name` is a valid function name: 1 to 128 characters, an ASCII
/// letter first, then ASCII letters, digits, `_` or `-`; never `host`.
pub fn is_valid_function_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && b[0].is_ascii_alphabetic()
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'-')
        && !name.eq_ignore_ascii_case("host")
}

/// The file by which an app declares its functions in code, for a
/// language worker to index when it starts: `function_app.py` (Python v2,
/// or `PYTHON_SCRIPT_FILE_NAME`'s default) or a `package.json` with a
/// `main` (Node.js v4). `None` for apps that declare them in function.json
/// only.
pub fn functions_declared_in_code(root: &Path) -> Option<&'static str> {
    if root.join("function_app.py").is_file() {
        return Some("function_app.py");
    }
    let package = fs::read_to_string(root.join("package.json")).ok()?;
    let doc: serde_json::Value = serde_json::from_str(json::strip_bom(&package)).ok()?;
    doc.get("main")?.as_str()?;
    Some("package.json")
}

/// The state of one load.
struct Loader {
    root: PathBuf,
    host: HostConfig,
    settings: AppSettings,
    diagnostics: Diagnostics,
    /// Lower-case names disabled by `AzureWebJobs.<name>.Disabled`.
    disabled_by_setting: std::collections::HashSet<String>,
}

impl Loader {
    fn new(options: AppLoader) -> Result<Loader, LoadError> {
        // An absolute root: executors run function scripts from other
        // working folders, so a relative `myapp` must not be joined twice.
        let root = match std::path::absolute(&options.root) {
            Ok(p) if options.root.is_relative() => normalize(&p),
            _ => options.root,
        };
        match fs::metadata(&root) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(LoadError::NotADirectory { path: root }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(LoadError::NotFound { path: root });
            }
            Err(source) => return Err(LoadError::Unreadable { path: root, source }),
        }
        let mut diagnostics = Diagnostics::new();

        let host = match read_optional(&root.join(HOST_JSON), HOST_JSON, &mut diagnostics) {
            Some(text) => HostConfig::parse_with(&text, Path::new(HOST_JSON), &mut diagnostics)
                .unwrap_or_default(),
            None => HostConfig::default(),
        };

        let mut settings = AppSettings::new();
        if let Some(text) = read_optional(
            &root.join(LOCAL_SETTINGS_JSON),
            LOCAL_SETTINGS_JSON,
            &mut diagnostics,
        ) {
            let file = Path::new(LOCAL_SETTINGS_JSON);
            match json::parse(&text) {
                Ok(value) => {
                    let mut rep = DocReporter {
                        text: &text,
                        file,
                        function: None,
                        out: &mut diagnostics,
                    };
                    let local = LocalSettings::parse_doc(value, &mut rep);
                    settings.overlay(local.values);
                }
                Err(e) => diagnostics.push(
                    Diagnostic::error(Code::JsonSyntax, e.message)
                        .with_file(file)
                        .at(e.line, e.column),
                ),
            }
        }
        if options.environment {
            settings.overlay_environment();
        }
        settings.overlay(options.settings);

        let disabled_by_setting = settings.disabled_functions();
        Ok(Loader {
            root,
            host,
            settings,
            diagnostics,
            disabled_by_setting,
        })
    }

    fn run(mut self) -> Result<FunctionApp, LoadError> {
        let mut folders = self.function_folders()?;
        folders.sort_by_cached_key(|f| (f.name.to_ascii_lowercase(), f.name.clone()));

        let allow: Option<Vec<String>> = self
            .host
            .functions
            .as_ref()
            .map(|names| names.iter().map(|n| n.to_ascii_lowercase()).collect());
        if let (Some(allow), Some(names)) = (&allow, &self.host.functions) {
            for (i, name) in names.iter().enumerate() {
                let lower = &allow[i];
                if !folders.iter().any(|f| f.name.eq_ignore_ascii_case(lower)) {
                    let mut d = Diagnostic::warning(
                        Code::AllowListUnknown,
                        format!("the \"functions\" list names '{name}', but the app has no function folder of that name (with a function.json)"),
                    )
                    .with_file(HOST_JSON);
                    if let Some(host_text) = fs::read_to_string(self.root.join(HOST_JSON)).ok()
                        && let Some((l, c)) =
                            json::locate(&host_text, &[Seg::Key("functions"), Seg::Index(i)])
                    {
                        d = d.at(l, c);
                    }
                    self.diagnostics.push(d);
                }
            }
        }

        let mut functions: Vec<Function> = Vec::with_capacity(folders.len());
        let mut router = RouterBuilder::new();
        let mut seen: HashMap<String, String> = HashMap::with_capacity(folders.len());

        for prefetched in folders {
            let folder = prefetched.name.clone();
            let lower = folder.to_ascii_lowercase();
            if let Some(allow) = &allow
                && !allow.contains(&lower)
            {
                continue;
            }
            let file = PathBuf::from(&folder).join(FUNCTION_JSON);
            if let Some(first) = seen.get(&lower) {
                self.diagnostics.push(
                    Diagnostic::error(
                        Code::DuplicateFunction,
                        format!("the function folders '{first}' and '{folder}' have the same name ignoring case, and function names are case-insensitive: rename or remove one"),
                    )
                    .with_file(&file)
                    .with_function(&folder),
                );
                continue;
            }
            seen.insert(lower.clone(), folder.clone());

            let Some(function) = self.load_function(&file, prefetched, false) else {
                continue;
            };
            self.add_function(function, &file, &mut functions, &mut router);
        }

        if functions.is_empty()
            && !self.uses_custom_handler()
            && self.settings.get("FUNCTIONS_WORKER_RUNTIME").is_none()
            && let Some(source) = functions_declared_in_code(&self.root)
        {
            self.diagnostics.push(
                Diagnostic::error(
                    Code::WorkerRuntimeMissing,
                    format!("FUNCTIONS_WORKER_RUNTIME is not set, and the app declares its functions in code ({source}): set it to \"node\" or \"python\" in \"Values\" (or in the app settings), so that a language worker indexes them"),
                )
                .with_file(LOCAL_SETTINGS_JSON),
            );
        }
        Ok(self.finish(functions, router))
    }

    fn finish(mut self, functions: Vec<Function>, router: RouterBuilder<usize>) -> FunctionApp {
        self.diagnostics.sort();
        let by_name = functions
            .iter()
            .enumerate()
            .map(|(i, f)| (f.name.to_ascii_lowercase(), i))
            .collect();
        FunctionApp {
            root: self.root,
            host: self.host,
            settings: self.settings,
            functions,
            by_name,
            router: router.build(),
            diagnostics: self.diagnostics,
        }
    }

    /// Adds a loaded function: its route must not conflict with another's;
    /// a setting may disable it.
    fn add_function(
        &mut self,
        mut function: Function,
        file: &Path,
        functions: &mut Vec<Function>,
        router: &mut RouterBuilder<usize>,
    ) {
        let folder = function.name.clone();
        if let Some(http) = &function.http {
            let index = functions.len();
            if let Err(conflict) = router.add(http.template.clone(), http.methods, index) {
                let other = &functions[conflict.existing];
                self.diagnostics.push(
                    Diagnostic::error(
                        Code::RouteConflict,
                        format!(
                            "the route '{}' ({}) conflicts with the route of function '{}' ({}): change one route or split their methods",
                            http.route, http.methods, other.name,
                            other.http.as_ref().map(|h| h.methods.to_string()).unwrap_or_default()
                        ),
                    )
                    .with_file(file)
                    .with_function(&folder),
                );
                self.locate_last(file, &function.config, "route");
                return;
            }
        }
        let lower = folder.to_ascii_lowercase();
        function.disabled = function.disabled || self.disabled_by_setting.contains(&lower);
        functions.push(function);
    }

    /// The immediate subfolders that hold a function.json, each with its
    /// text read, parsed as JSON and, where the primary script must be
    /// found, its files listed. Reading is the test for function.json (no
    /// extra `stat`); large apps are read on several threads.
    fn function_folders(&mut self) -> Result<Vec<Prefetched>, LoadError> {
        let entries = fs::read_dir(&self.root).map_err(|source| LoadError::Unreadable {
            path: self.root.clone(),
            source,
        })?;
        let mut candidates = Vec::new();
        for entry in entries {
            let Ok(entry) = entry else { continue };
            let is_dir = match entry.file_type() {
                Ok(t) if t.is_dir() => true,
                Ok(t) if t.is_symlink() => entry.path().is_dir(),
                _ => false,
            };
            if !is_dir {
                continue;
            }
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                self.diagnostics.push(
                    Diagnostic::error(
                        Code::FunctionName,
                        format!("the folder {:?} has a name that is not valid UTF-8; function names are ASCII: rename it", entry.file_name()),
                    ),
                );
                continue;
            };
            if !name.starts_with('.') {
                candidates.push(name.to_owned());
            }
        }
        let list_files = !self.uses_custom_handler();
        let root = &self.root;
        let workers = if candidates.len() < 64 {
            1
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
        };
        let mut slots: Vec<Option<Prefetched>> = Vec::new();
        if workers == 1 {
            slots.extend(
                candidates
                    .into_iter()
                    .map(|name| prefetch(root, name, list_files)),
            );
        } else {
            slots.resize_with(candidates.len(), || None);
            let next = std::sync::atomic::AtomicUsize::new(0);
            let candidates = &candidates;
            let done: Vec<Vec<(usize, Option<Prefetched>)>> = std::thread::scope(|scope| {
                let handles: Vec<_> = (0..workers)
                    .map(|_| {
                        scope.spawn(|| {
                            let mut out = Vec::new();
                            loop {
                                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                let Some(name) = candidates.get(i) else { break };
                                out.push((i, prefetch(root, name.clone(), list_files)));
                            }
                            out
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or_default())
                    .collect()
            });
            for (i, item) in done.into_iter().flatten() {
                slots[i] = item;
            }
        }
        Ok(slots.into_iter().flatten().collect())
    }

    /// Whether host.json configures a custom handler (even a broken one):
    /// then functions need no script.
    fn uses_custom_handler(&self) -> bool {
        self.host.custom_handler.is_some()
            || self.host.document.contains_key("customHandler")
            || self.host.document.contains_key("httpWorker")
    }

    /// Loads one function folder; `None` when it has any error.
    /// Loads one function folder (or, `indexed`, one function a language
    /// worker found: no folder, no primary script); `None` when it has any
    /// error.
    fn load_function(
        &mut self,
        file: &Path,
        prefetched: Prefetched,
        indexed: bool,
    ) -> Option<Function> {
        let Prefetched {
            name,
            text,
            parsed,
            files,
        } = prefetched;
        let name = name.as_str();
        let dir = if indexed {
            self.root.clone()
        } else {
            self.root.join(name)
        };
        let errors_before = self.diagnostics.error_count();
        let text = match text {
            Ok(t) => t,
            Err(e) => {
                self.diagnostics.push(
                    Diagnostic::error(Code::Io, format!("cannot read the file: {e}"))
                        .with_file(file)
                        .with_function(name),
                );
                return None;
            }
        };
        if !is_valid_function_name(name) {
            let why = if name.eq_ignore_ascii_case("host") {
                "'host' is reserved".to_owned()
            } else {
                "a name has 1 to 128 characters: an ASCII letter, then letters, digits, '_' or '-'"
                    .to_owned()
            };
            self.diagnostics.push(
                Diagnostic::error(
                    Code::FunctionName,
                    format!("'{name}' is not a valid function name ({why}): rename the folder"),
                )
                .with_file(file)
                .with_function(name),
            );
        }
        let uses_handler = self.uses_custom_handler();
        let parsed = parsed.unwrap_or_else(|| json::parse(&text));
        let config =
            FunctionConfig::parse_parsed(&text, parsed, file, Some(name), &mut self.diagnostics)?;
        if config.excluded {
            self.diagnostics.push(
                Diagnostic::warning(
                    Code::Excluded,
                    format!(
                        "the function '{name}' is excluded (\"excluded\": true) and is not loaded"
                    ),
                )
                .with_file(file)
                .with_function(name),
            );
            return None;
        }

        let mut rep = DocReporter {
            text: &text,
            file,
            function: Some(name),
            out: &mut self.diagnostics,
        };
        let trigger_index = config.trigger_index();
        let mut http = None;
        let mut timer = None;
        if let Some(index) = trigger_index {
            let at = |key: &'static str| [Seg::Key("bindings"), Seg::Index(index), Seg::Key(key)];
            match &config.bindings[index].kind {
                BindingKind::HttpTrigger(h) => {
                    let route = h
                        .route
                        .as_deref()
                        .map(|r| r.trim().trim_start_matches('/').to_owned())
                        .unwrap_or_else(|| name.to_owned());
                    let lower = route.to_ascii_lowercase();
                    if lower.starts_with("admin") || lower.starts_with("runtime") {
                        rep.error(
                            Code::RouteReserved,
                            &at("route"),
                            format!("The specified route conflicts with one or more built in routes: '{route}' starts with a reserved prefix ('admin' or 'runtime'); choose another route"),
                        );
                    } else {
                        let full = if self.host.route_prefix.is_empty() {
                            route.clone()
                        } else {
                            format!("{}/{}", self.host.route_prefix, route)
                        };
                        match RouteTemplate::parse(&full) {
                            Ok(template) => {
                                http = Some(HttpRoute {
                                    route,
                                    template,
                                    methods: h.methods,
                                    auth_level: h.auth_level,
                                })
                            }
                            Err(e) => rep.error(
                                Code::RouteTemplate,
                                &at("route"),
                                format!(
                                    "the route '{route}' is not a valid route template: {}",
                                    e.message
                                ),
                            ),
                        }
                    }
                }
                BindingKind::TimerTrigger(t) if !t.schedule.is_empty() => {
                    match self.settings.resolve(&t.schedule) {
                        Ok(resolved) => match Schedule::parse(&resolved) {
                            Ok(schedule) => {
                                timer = Some(TimerSchedule {
                                    expression: t.schedule.clone(),
                                    resolved: resolved.into_owned(),
                                    schedule,
                                    run_on_startup: t.run_on_startup,
                                })
                            }
                            Err(e) => {
                                let via = if resolved != t.schedule {
                                    format!(" (from {})", t.schedule)
                                } else {
                                    String::new()
                                };
                                rep.error(
                                    Code::Schedule,
                                    &at("schedule"),
                                    format!("the schedule '{resolved}'{via} is invalid: {e}"),
                                )
                            }
                        },
                        Err(e) => rep.warning(
                            Code::UnresolvedSetting,
                            &at("schedule"),
                            format!("the schedule cannot be read: {e}"),
                        ),
                    }
                }
                _ => {}
            }
        }

        // %Setting% in other binding values.
        for (i, b) in config.bindings.iter().enumerate() {
            for (key, value) in &b.properties {
                let Some(s) = value.as_str() else { continue };
                if !s.contains('%')
                    || (Some(i) == trigger_index && key.eq_ignore_ascii_case("schedule"))
                {
                    continue;
                }
                if let Err(e) = self.settings.resolve(s) {
                    rep.warning(
                        Code::UnresolvedSetting,
                        &[Seg::Key("bindings"), Seg::Index(i), Seg::Key(key)],
                        e.to_string(),
                    );
                }
            }
        }

        let script = if uses_handler || indexed {
            None
        } else {
            primary_script(&self.root, &dir, &config, files, &mut rep)
        };

        let disabled = match &config.disabled {
            Some(DisabledField::Bool(b)) => *b,
            Some(DisabledField::Setting(s)) => self.settings.get(s).is_some_and(settings::is_true),
            None => false,
        };

        if self.diagnostics.error_count() > errors_before {
            return None;
        }
        Some(Function {
            name: name.to_owned(),
            dir,
            config,
            script,
            disabled,
            http,
            timer,
        })
    }
}

/// Finds the primary script as the host does.
fn primary_script(
    app_root: &Path,
    dir: &Path,
    config: &FunctionConfig,
    files: Option<Vec<String>>,
    rep: &mut DocReporter<'_>,
) -> Option<PathBuf> {
    if let Some(script) = &config.script_file {
        // Apps written on Windows use backslashes in scriptFile.
        let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
        let path = normalize(&absolute(&dir.join(script.replace('\\', "/"))));
        let root = normalize(&absolute(app_root));
        let inside = path.starts_with(&root)
            && match (path.canonicalize(), root.canonicalize()) {
                (Ok(p), Ok(r)) => p.starts_with(r),
                _ => true,
            };
        if !inside {
            rep.error(
                    Code::ScriptFileOutside,
                    &[Seg::Key("scriptFile")],
                    format!("scriptFile '{script}' points outside the app root: keep the script inside the app folder (for example ../bin/App.dll)"),
                );
            return None;
        }
        if !path.is_file() {
            rep.error(
                    Code::ScriptFileMissing,
                    &[Seg::Key("scriptFile")],
                    format!("scriptFile '{script}' does not exist: fix the path (relative to the function folder) or add the file"),
                );
            return None;
        }
        return Some(path);
    }
    let mut files = files.unwrap_or_else(|| list_function_files(dir));
    let found = if files.len() == 1 {
        files.pop()
    } else {
        files
            .iter()
            .find(|f| {
                let lower = f.to_ascii_lowercase();
                lower.starts_with("run.")
                    || matches!(
                        lower.as_str(),
                        "index.js" | "index.mjs" | "index.cjs" | "__init__.py"
                    )
            })
            .cloned()
    };
    match found {
        Some(f) => Some(dir.join(f)),
        None => {
            rep.error(
                    Code::PrimaryScript,
                    &[],
                    "Unable to determine the primary function script: add \"scriptFile\" to function.json, or name the script run.* , index.js or __init__.py (a custom handler app needs none: set \"customHandler\" in host.json)",
                );
            None
        }
    }
}

impl Loader {
    /// Re-reads a function.json to place the last diagnostic at a binding key.
    fn locate_last(&mut self, file: &Path, config: &FunctionConfig, key: &'static str) {
        let Some(index) = config.trigger_index() else {
            return;
        };
        let Ok(text) = fs::read_to_string(self.root.join(file)) else {
            return;
        };
        let path = [Seg::Key("bindings"), Seg::Index(index), Seg::Key(key)];
        let fallback = [Seg::Key("bindings"), Seg::Index(index)];
        let found = if config.bindings[index].property(key).is_some() {
            json::locate(&text, &path)
        } else {
            json::locate(&text, &fallback)
        };
        if let (Some((l, c)), Some(last)) = (found, self.diagnostics.last_mut()) {
            last.line = Some(l);
            last.column = Some(c);
        }
    }
}

/// One function folder, read ahead of the rules.
struct Prefetched {
    name: String,
    text: io::Result<String>,
    parsed: Option<Result<serde_json::Value, json::SyntaxError>>,
    /// The files beside function.json, sorted, when the primary script
    /// must be found.
    files: Option<Vec<String>>,
}

/// Reads, parses and lists one folder; `None` when it has no function.json.
fn prefetch(root: &Path, name: String, list_files: bool) -> Option<Prefetched> {
    let dir = root.join(&name);
    let text = match fs::read_to_string(dir.join(FUNCTION_JSON)) {
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::IsADirectory
            ) =>
        {
            return None;
        }
        other => other,
    };
    let parsed = text.as_ref().ok().map(|t| json::parse(t));
    let has_script_file = matches!(&parsed, Some(Ok(v)) if v.get("scriptFile").is_some());
    let files = (list_files && !has_script_file).then(|| list_function_files(&dir));
    Some(Prefetched {
        name,
        text,
        parsed,
        files,
    })
}

/// The files beside function.json, sorted.
fn list_function_files(dir: &Path) -> Vec<String> {
    let mut files: Vec<String> = match fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| !n.eq_ignore_ascii_case(FUNCTION_JSON))
            .collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    files
}

/// Reads a file that may be missing; reports other read errors.
fn read_optional(path: &Path, shown: &str, out: &mut Diagnostics) -> Option<String> {
    match fs::read(path) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => Some(text),
            Err(_) => {
                out.push(
                    Diagnostic::error(
                        Code::JsonSyntax,
                        "the file is not UTF-8 text: save it as UTF-8",
                    )
                    .with_file(shown),
                );
                None
            }
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => {
            out.push(
                Diagnostic::error(Code::Io, format!("cannot read the file: {e}")).with_file(shown),
            );
            None
        }
    }
}

/// Resolves `.` and `..` without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                let at_root = out.has_root() && out.parent().is_none();
                if !at_root && !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_names_follow_the_host_rules() {
        for ok in ["hosts", "myfunction_test", "Function-200", "a"] {
            assert!(is_valid_function_name(ok), "{ok}");
        }
        for bad in [
            "",
            "host",
            "Host",
            "-function",
            "_function",
            "function test",
            "function.test",
            "function0.1",
            "fünf",
        ] {
            assert!(!is_valid_function_name(bad), "{bad}");
        }
        assert!(is_valid_function_name(&"a".repeat(128)));
        assert!(!is_valid_function_name(&"a".repeat(129)));
    }

    #[test]
    fn normalize_resolves_dots() {
        assert_eq!(
            normalize(Path::new("/a/b/../c/./d")),
            PathBuf::from("/a/c/d")
        );
        assert_eq!(normalize(Path::new("/a/../../x")), PathBuf::from("/x"));
    }
}
