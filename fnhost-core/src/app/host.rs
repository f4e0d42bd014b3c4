//! host.json: the host configuration.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value};

use super::retry::{RetryPolicy, parse_retry};
use crate::binding::property;
use crate::diag::{Code, Diagnostics, DocReporter};
use crate::json::{self, Seg};
use crate::timespan::TimeSpan;

/// The route prefix when host.json sets none.
pub const DEFAULT_ROUTE_PREFIX: &str = "api";

/// Keys that only version 1 host.json files have at the top level.
const V1_KEYS: &[&str] = &[
    "id",
    "http",
    "queues",
    "tracing",
    "serviceBus",
    "eventHub",
    "documentDB",
    "blobs",
    "sendGrid",
];

/// Which schema a host.json follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostVersion {
    /// `"version": "2.0"` (Functions 2.x and later), or no file at all.
    V2,
    /// A version 1 file: no `version`, settings such as `http` at the top
    /// level. fnhost does not run these.
    V1,
}

/// How long an invocation may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FunctionTimeout {
    /// At most this long.
    Limited(Duration),
    /// No limit (`"-1"`).
    Unlimited,
}

/// The `customHandler` (or legacy `httpWorker`) section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomHandlerConfig {
    /// The executable: a path relative to the app root, or a command on PATH.
    pub executable: String,
    /// The working directory, relative to the app root (empty: the root).
    pub working_directory: Option<String>,
    /// `defaultWorkerPath`: a script given to the executable before the
    /// arguments (such as `server.js` for `node`).
    pub worker_path: Option<String>,
    /// Arguments, in which `%ENV%` expands.
    pub arguments: Vec<String>,
    /// Forward HTTP requests as they are (only for HTTP-in/HTTP-out functions).
    pub enable_forwarding_http_request: bool,
    /// Whether this came from the legacy `httpWorker` section.
    pub legacy_http_worker: bool,
}

/// The `extensionBundle` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtensionBundle {
    /// Such as `Microsoft.Azure.Functions.ExtensionBundle`.
    pub id: String,
    /// A version range such as `[4.*, 5.0.0)`.
    pub version: String,
}

/// host.json, as the host reads it.
///
/// The typed fields are views of the document; [`HostConfig::document`] keeps
/// every key as written (unknown ones included), so the file can be written
/// back unchanged with [`HostConfig::to_json`].
#[derive(Debug, Clone, PartialEq)]
pub struct HostConfig {
    /// The schema version.
    pub version: HostVersion,
    /// `functionTimeout`; `None` when not set.
    pub function_timeout: Option<FunctionTimeout>,
    /// `functions`: when set, only these functions load (names compare
    /// case-insensitively).
    pub functions: Option<Vec<String>>,
    /// `extensions.http.routePrefix`; `api` when not set; may be empty.
    pub route_prefix: String,
    /// `extensions.http.maxConcurrentRequests`.
    pub max_concurrent_requests: Option<u32>,
    /// `customHandler`, or the legacy `httpWorker`.
    pub custom_handler: Option<CustomHandlerConfig>,
    /// `logging`, as written.
    pub logging: Option<Value>,
    /// `retry`: the app-wide retry policy.
    pub retry: Option<RetryPolicy>,
    /// `extensionBundle`.
    pub extension_bundle: Option<ExtensionBundle>,
    /// The whole document.
    pub document: Map<String, Value>,
}

impl Default for HostConfig {
    /// The configuration of an app without host.json, or with `{}`.
    fn default() -> Self {
        HostConfig {
            version: HostVersion::V2,
            function_timeout: None,
            functions: None,
            route_prefix: DEFAULT_ROUTE_PREFIX.to_owned(),
            max_concurrent_requests: None,
            custom_handler: None,
            logging: None,
            retry: None,
            extension_bundle: None,
            document: Map::new(),
        }
    }
}

impl HostConfig {
    /// Parses host.json text. Warnings are dropped; on any error, every
    /// problem is returned.
    pub fn parse(text: &str) -> Result<HostConfig, Diagnostics> {
        let mut out = Diagnostics::new();
        let config = Self::parse_with(text, Path::new("host.json"), &mut out);
        match config {
            Some(c) if !out.has_errors() => Ok(c),
            _ => Err(out),
        }
    }

    /// Parses host.json text, adding every problem to `out` with `file` as
    /// its location. Returns the configuration unless the text is not JSON.
    pub fn parse_with(text: &str, file: &Path, out: &mut Diagnostics) -> Option<HostConfig> {
        let mut rep = DocReporter {
            text,
            file,
            function: None,
            out,
        };
        let value = match json::parse(text) {
            Ok(v) => v,
            Err(e) => {
                rep.out.push(
                    crate::diag::Diagnostic::error(Code::JsonSyntax, e.message)
                        .with_file(file)
                        .at(e.line, e.column),
                );
                return None;
            }
        };
        Some(Self::from_value(value, &mut rep))
    }

    /// The file's content as JSON, unknown keys included.
    pub fn to_json(&self) -> Value {
        Value::Object(self.document.clone())
    }

    /// The path of the custom handler's working directory.
    pub fn custom_handler_dir(&self, app_root: &Path) -> Option<PathBuf> {
        let ch = self.custom_handler.as_ref()?;
        Some(match ch.working_directory.as_deref() {
            None | Some("") => app_root.to_path_buf(),
            Some(dir) => app_root.join(dir),
        })
    }

    fn from_value(value: Value, rep: &mut DocReporter<'_>) -> HostConfig {
        let Value::Object(document) = value else {
            rep.error(
                Code::WrongType,
                &[],
                "host.json must hold a JSON object, such as {\"version\": \"2.0\"}",
            );
            return HostConfig::default();
        };
        let mut config = HostConfig::default();
        let doc = &document;

        match doc.get("version") {
            Some(Value::String(v)) if v == "2.0" => {}
            Some(Value::String(v)) => {
                let hint = if v.starts_with('3') || v.starts_with('4') {
                    " (this is the schema version of host.json, not the Functions runtime version)"
                } else {
                    ""
                };
                rep.error(
                    Code::HostVersion,
                    &[Seg::Key("version")],
                    format!("'{v}' is an invalid value for host.json 'version' property{hint}: set \"version\": \"2.0\""),
                );
            }
            Some(other) => rep.error(
                Code::HostVersion,
                &[Seg::Key("version")],
                format!("host.json 'version' must be the string \"2.0\", not {other}"),
            ),
            None if doc.is_empty() => {}
            None => {
                let v1: Vec<&str> = V1_KEYS
                    .iter()
                    .copied()
                    .filter(|k| doc.contains_key(*k))
                    .collect();
                if v1.is_empty() {
                    rep.error(
                        Code::HostVersionMissing,
                        &[],
                        "host.json is missing the required 'version' property: add \"version\": \"2.0\"",
                    );
                } else {
                    config.version = HostVersion::V1;
                    rep.error(
                        Code::HostVersion1,
                        &[Seg::Key(v1[0])],
                        format!("host.json is a version 1 configuration (it has no \"version\" and sets {} at the top level); fnhost runs version 2 apps: add \"version\": \"2.0\" and move these settings under \"extensions\" (for example \"http\" becomes \"extensions\": {{\"http\": ...}})", v1.iter().map(|k| format!("\"{k}\"")).collect::<Vec<_>>().join(", ")),
                    );
                }
            }
        }

        match doc.get("functionTimeout") {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if s.trim() == "-1" => {
                config.function_timeout = Some(FunctionTimeout::Unlimited)
            }
            Some(Value::String(s)) => match TimeSpan::parse(s) {
                Ok(t) if !t.is_zero_or_negative() => {
                    config.function_timeout = Some(FunctionTimeout::Limited(t.duration))
                }
                Ok(_) => rep.error(
                    Code::FunctionTimeout,
                    &[Seg::Key("functionTimeout")],
                    "functionTimeout must be longer than zero, or \"-1\" for no limit",
                ),
                Err(e) => rep.error(
                    Code::FunctionTimeout,
                    &[Seg::Key("functionTimeout")],
                    format!("functionTimeout: {e}, or \"-1\" for no limit"),
                ),
            },
            Some(_) => rep.error(
                Code::FunctionTimeout,
                &[Seg::Key("functionTimeout")],
                "functionTimeout must be a TimeSpan string such as \"00:05:00\", or \"-1\" for no limit",
            ),
        }

        match doc.get("functions") {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                let mut names = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    match item.as_str() {
                        Some(name) => names.push(name.to_owned()),
                        None => rep.error(
                            Code::WrongType,
                            &[Seg::Key("functions"), Seg::Index(i)],
                            "\"functions\" must list function names as strings",
                        ),
                    }
                }
                config.functions = Some(names);
            }
            Some(_) => rep.error(
                Code::WrongType,
                &[Seg::Key("functions")],
                "\"functions\" must be an array of function names, such as [\"HttpHello\"]",
            ),
        }

        if let Some(ext) = doc.get("extensions")
            && let Some(http) = ext.as_object().and_then(|e| property(e, "http"))
        {
            if let Some(prefix) = http.as_object().and_then(|h| property(h, "routePrefix")) {
                match prefix.as_str() {
                    Some(p) => config.route_prefix = p.trim_matches('/').to_owned(),
                    None => rep.error(
                        Code::WrongType,
                        &[
                            Seg::Key("extensions"),
                            Seg::Key("http"),
                            Seg::Key("routePrefix"),
                        ],
                        "routePrefix must be a string (\"\" for none)",
                    ),
                }
            }
            if let Some(max) = http
                .as_object()
                .and_then(|h| property(h, "maxConcurrentRequests"))
            {
                match max.as_i64() {
                    Some(-1) => {}
                    Some(n) if n > 0 && n <= u32::MAX as i64 => {
                        config.max_concurrent_requests = Some(n as u32)
                    }
                    _ => rep.error(
                        Code::WrongType,
                        &[
                            Seg::Key("extensions"),
                            Seg::Key("http"),
                            Seg::Key("maxConcurrentRequests"),
                        ],
                        "maxConcurrentRequests must be a positive whole number, or -1 for no limit",
                    ),
                }
            }
        }

        let handler = match (doc.get("customHandler"), doc.get("httpWorker")) {
            (Some(v), _) => Some(("customHandler", v, false)),
            (None, Some(v)) => Some(("httpWorker", v, true)),
            (None, None) => None,
        };
        if let Some((key, value, legacy)) = handler {
            config.custom_handler = parse_custom_handler(key, value, legacy, rep);
        }

        config.logging = doc.get("logging").cloned();
        if let Some(retry) = doc.get("retry") {
            config.retry = parse_retry(retry, &[Seg::Key("retry")], rep);
        }
        if let Some(bundle) = doc.get("extensionBundle") {
            let id = bundle.get("id").and_then(Value::as_str);
            let version = bundle.get("version").and_then(Value::as_str);
            match (id, version) {
                (Some(id), Some(version)) => {
                    config.extension_bundle = Some(ExtensionBundle {
                        id: id.to_owned(),
                        version: version.to_owned(),
                    })
                }
                _ => rep.warning(
                    Code::WrongType,
                    &[Seg::Key("extensionBundle")],
                    "extensionBundle needs \"id\" and \"version\" strings, such as {\"id\": \"Microsoft.Azure.Functions.ExtensionBundle\", \"version\": \"[4.*, 5.0.0)\"}",
                ),
            }
        }
        config.document = document;
        config
    }
}

fn parse_custom_handler(
    key: &'static str,
    value: &Value,
    legacy: bool,
    rep: &mut DocReporter<'_>,
) -> Option<CustomHandlerConfig> {
    let Some(section) = value.as_object() else {
        rep.error(
            Code::CustomHandler,
            &[Seg::Key(key)],
            format!("\"{key}\" must be an object with a \"description\""),
        );
        return None;
    };
    let Some(description) = property(section, "description").and_then(Value::as_object) else {
        rep.error(
            Code::CustomHandler,
            &[Seg::Key(key)],
            format!("Missing worker Description: \"{key}\" needs \"description\": {{\"defaultExecutablePath\": \"handler\"}}"),
        );
        return None;
    };
    let text = |key: &str| {
        property(description, key)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let (executable, worker_path) = match (text("defaultExecutablePath"), text("defaultWorkerPath"))
    {
        (Some(exe), worker) => (exe, worker),
        (None, Some(worker)) => (worker, None),
        (None, None) => {
            rep.error(
                Code::CustomHandler,
                &[Seg::Key(key), Seg::Key("description")],
                "the custom handler has no executable: set \"defaultExecutablePath\" to the program to start, relative to the app root or a command on PATH",
            );
            return None;
        }
    };
    let arguments = property(description, "arguments")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    Some(CustomHandlerConfig {
        executable,
        working_directory: property(description, "workingDirectory")
            .and_then(Value::as_str)
            .map(str::to_owned),
        worker_path,
        arguments,
        enable_forwarding_http_request: !legacy
            && property(section, "enableForwardingHttpRequest")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        legacy_http_worker: legacy,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_object_is_the_default_v2_config() {
        let c = HostConfig::parse("{}").unwrap();
        assert_eq!(c.version, HostVersion::V2);
        assert_eq!(c.route_prefix, "api");
    }

    #[test]
    fn reads_the_well_known_keys_and_keeps_the_rest() {
        let text = r#"{"version":"2.0","functionTimeout":"00:10:00","functions":["a","B"],
            "extensions":{"http":{"routePrefix":"","maxConcurrentRequests":8}},
            "customHandler":{"description":{"defaultExecutablePath":"handler","arguments":["--x"]},"enableForwardingHttpRequest":true},
            "retry":{"strategy":"fixedDelay","maxRetryCount":2,"delayInterval":"00:00:03"},
            "somethingNew":{"a":1}}"#;
        let c = HostConfig::parse(text).unwrap();
        assert_eq!(
            c.function_timeout,
            Some(FunctionTimeout::Limited(Duration::from_secs(600)))
        );
        assert_eq!(
            c.functions.as_deref(),
            Some(&["a".to_owned(), "B".to_owned()][..])
        );
        assert_eq!(c.route_prefix, "");
        assert_eq!(c.max_concurrent_requests, Some(8));
        let ch = c.custom_handler.as_ref().unwrap();
        assert_eq!(ch.executable, "handler");
        assert!(ch.enable_forwarding_http_request);
        assert_eq!(c.retry.unwrap().max_retry_count, Some(2));
        let back: Value = serde_json::from_str(text).unwrap();
        assert_eq!(c.to_json(), back);
    }

    #[test]
    fn version_problems_are_named() {
        let err = HostConfig::parse(r#"{"version":"3.0"}"#).unwrap_err();
        let d = err.iter().next().unwrap();
        assert_eq!(d.code, Code::HostVersion);
        assert!(d.message.contains("not the Functions runtime version"));
        let err = HostConfig::parse(r#"{"http":{"routePrefix":"x"}}"#).unwrap_err();
        assert_eq!(err.iter().next().unwrap().code, Code::HostVersion1);
        let err = HostConfig::parse(r#"{"logging":{}}"#).unwrap_err();
        assert_eq!(err.iter().next().unwrap().code, Code::HostVersionMissing);
    }

    #[test]
    fn legacy_http_worker_is_read() {
        let c = HostConfig::parse(
            r#"{"version":"2.0","httpWorker":{"description":{"defaultWorkerPath":"w.js","defaultExecutablePath":"node"}}}"#,
        )
        .unwrap();
        let ch = c.custom_handler.unwrap();
        assert!(ch.legacy_http_worker);
        assert_eq!(ch.executable, "node");
        assert_eq!(ch.worker_path.as_deref(), Some("w.js"));
    }
}
