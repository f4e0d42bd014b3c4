//! App settings: local.settings.json `Values` with the environment overlaid,
//! `%Name%` resolution, and the per-function disabled switch.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::{Map, Value};

use crate::binding::property;
use crate::diag::{Code, DocReporter};
use crate::json::Seg;

/// The worker runtimes `FUNCTIONS_WORKER_RUNTIME` may name.
pub const WORKER_RUNTIMES: &[&str] = &[
    "custom",
    "dotnet",
    "dotnet-isolated",
    "node",
    "java",
    "powershell",
    "python",
];

/// The app settings a function app sees.
///
/// Lookups are exact first, then ignoring ASCII case (App Service app
/// settings are case-insensitive).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppSettings {
    values: BTreeMap<String, String>,
    /// Lower-cased name to name, for lookups that ignore case.
    folded: HashMap<String, String>,
}

/// A `%Name%` that names no app setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "'%{name}%' does not resolve to a value: define the app setting {name} (in local.settings.json \"Values\" or in the environment)"
)]
pub struct UnresolvedSetting {
    /// The setting name.
    pub name: String,
}

impl AppSettings {
    /// No settings.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets (or replaces) a setting.
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = name.into();
        self.folded.insert(name.to_ascii_lowercase(), name.clone());
        self.values.insert(name, value.into());
    }

    /// Overlays settings, replacing those of the same name.
    pub fn overlay<K: Into<String>, V: Into<String>>(
        &mut self,
        settings: impl IntoIterator<Item = (K, V)>,
    ) {
        for (k, v) in settings {
            self.set(k, v);
        }
    }

    /// Overlays the process environment.
    pub fn overlay_environment(&mut self) {
        self.overlay(
            std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
        );
    }

    /// A setting by name.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values
            .get(name)
            .or_else(|| {
                let key = self.folded.get(&name.to_ascii_lowercase())?;
                self.values.get(key)
            })
            .map(String::as_str)
    }

    /// Every setting, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The number of settings.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether there is no setting.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Replaces every `%Name%` in `text` by the setting's value. `%%` is left
    /// as it is; a `%` without a closing one is kept as written.
    pub fn resolve<'t>(&self, text: &'t str) -> Result<Cow<'t, str>, UnresolvedSetting> {
        if !text.contains('%') {
            return Ok(Cow::Borrowed(text));
        }
        let out = replace_percent_names(text, |name| {
            if name.is_empty() {
                return Ok(Some("%%"));
            }
            match self.get(name) {
                Some(v) => Ok(Some(v)),
                None => Err(UnresolvedSetting {
                    name: name.to_owned(),
                }),
            }
        })?;
        Ok(Cow::Owned(out))
    }

    /// Whether the setting `AzureWebJobs.<name>.Disabled` (or, where dots are
    /// not allowed in names, `AzureWebJobs_<name>_Disabled`) is `true` or `1`.
    pub fn is_function_disabled(&self, function: &str) -> bool {
        [
            format!("AzureWebJobs.{function}.Disabled"),
            format!("AzureWebJobs_{function}_Disabled"),
        ]
        .iter()
        .any(|key| self.get(key).is_some_and(is_true))
    }
}

impl AppSettings {
    /// The lower-cased names of the functions disabled by
    /// `AzureWebJobs.<name>.Disabled` (or `AzureWebJobs_<name>_Disabled`),
    /// found in one pass over the settings.
    pub fn disabled_functions(&self) -> HashSet<String> {
        let mut out = HashSet::new();
        for (key, value) in &self.values {
            if key.len() < 22 || !is_true(value) {
                continue;
            }
            let (head, rest) = key.split_at(12);
            if !head.eq_ignore_ascii_case("AzureWebJobs") {
                continue;
            }
            let sep = rest.as_bytes()[0];
            if sep != b'.' && sep != b'_' {
                continue;
            }
            let inner = &rest[1..];
            let Some(name) = inner.len().checked_sub(9).map(|n| &inner[..n]) else {
                continue;
            };
            let tail = &inner[name.len()..];
            if tail.as_bytes()[0] == sep
                && tail[1..].eq_ignore_ascii_case("Disabled")
                && !name.is_empty()
            {
                out.insert(name.to_ascii_lowercase());
            }
        }
        out
    }
}

/// Replaces each `%name%` in `text` with what `lookup` gives for `name`.
/// Where it gives `None`, the first `%` stays as written and the search
/// goes on from the second one; a `%` without a closing one stays.
pub(crate) fn replace_percent_names<V: AsRef<str>, E>(
    text: &str,
    mut lookup: impl FnMut(&str) -> Result<Option<V>, E>,
) -> Result<String, E> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('%') {
        let after = &rest[start + 1..];
        let Some(len) = after.find('%') else { break };
        out.push_str(&rest[..start]);
        match lookup(&after[..len])? {
            Some(value) => {
                out.push_str(value.as_ref());
                rest = &after[len + 1..];
            }
            None => {
                out.push('%');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// `true` (any case) or `1`, as the host reads a boolean setting.
pub(crate) fn is_true(value: &str) -> bool {
    let v = value.trim();
    v == "1" || v.eq_ignore_ascii_case("true")
}

/// local.settings.json: settings for local tooling.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LocalSettings {
    /// Whether `Values` are encrypted (fnhost cannot read them then).
    pub is_encrypted: bool,
    /// The app settings.
    pub values: BTreeMap<String, String>,
    /// `Host.LocalHttpPort`.
    pub local_http_port: Option<u16>,
    /// `Host.CORS`, the allowed origins.
    pub cors: Option<String>,
    /// `ConnectionStrings`.
    pub connection_strings: BTreeMap<String, String>,
    /// The whole document as written.
    pub document: Map<String, Value>,
}

impl LocalSettings {
    /// Parses local.settings.json text, reporting problems.
    pub(crate) fn parse_doc(value: Value, rep: &mut DocReporter<'_>) -> LocalSettings {
        let Value::Object(document) = value else {
            rep.error(
                Code::WrongType,
                &[],
                "local.settings.json must hold a JSON object such as {\"IsEncrypted\": false, \"Values\": {}}",
            );
            return LocalSettings::default();
        };
        let mut out = LocalSettings {
            is_encrypted: property(&document, "IsEncrypted")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            ..LocalSettings::default()
        };
        if out.is_encrypted {
            rep.warning(
                Code::SettingsEncrypted,
                &[Seg::Key("IsEncrypted")],
                "local.settings.json is encrypted and its values are ignored: decrypt it (func settings decrypt) or set \"IsEncrypted\": false",
            );
        }
        match property(&document, "Values") {
            None | Some(Value::Null) => {}
            Some(Value::Object(values)) if !out.is_encrypted => {
                for (name, value) in values {
                    let at = [Seg::Key("Values"), Seg::Key(name)];
                    if name.contains(':') || name.contains("__") {
                        rep.warning(
                            Code::SettingName,
                            &at,
                            format!("the setting name '{name}' contains ':' or '__', which App Service does not allow in names; use a single '_' instead"),
                        );
                    }
                    let text = match value {
                        Value::String(s) => s.clone(),
                        Value::Bool(_) | Value::Number(_) => value.to_string(),
                        _ => {
                            rep.error(
                                Code::WrongType,
                                &at,
                                format!("the setting '{name}' must be a string"),
                            );
                            continue;
                        }
                    };
                    if name == "FUNCTIONS_WORKER_RUNTIME"
                        && !WORKER_RUNTIMES.contains(&text.to_ascii_lowercase().as_str())
                    {
                        rep.warning(
                            Code::WorkerRuntime,
                            &at,
                            format!(
                                "'{text}' is not a known FUNCTIONS_WORKER_RUNTIME: use one of {}",
                                WORKER_RUNTIMES.join(", ")
                            ),
                        );
                    }
                    out.values.insert(name.clone(), text);
                }
            }
            Some(Value::Object(_)) => {}
            Some(_) => rep.error(
                Code::WrongType,
                &[Seg::Key("Values")],
                "\"Values\" must be an object of setting names to strings",
            ),
        }
        if let Some(Value::Object(host)) = property(&document, "Host") {
            out.local_http_port = property(host, "LocalHttpPort")
                .and_then(Value::as_u64)
                .and_then(|p| u16::try_from(p).ok());
            out.cors = property(host, "CORS")
                .and_then(Value::as_str)
                .map(str::to_owned);
        }
        if let Some(Value::Object(cs)) = property(&document, "ConnectionStrings") {
            for (name, value) in cs {
                if let Some(v) = value.as_str() {
                    out.connection_strings.insert(name.clone(), v.to_owned());
                }
            }
        }
        out.document = document;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> AppSettings {
        let mut s = AppSettings::new();
        s.set("Schedule", "0 */5 * * * *");
        s.set("Queue", "orders");
        s
    }

    #[test]
    fn resolves_whole_and_embedded_names() {
        let s = settings();
        assert_eq!(s.resolve("%Schedule%").unwrap(), "0 */5 * * * *");
        assert_eq!(s.resolve("in-%queue%-x").unwrap(), "in-orders-x");
        assert_eq!(s.resolve("no settings").unwrap(), "no settings");
        assert_eq!(s.resolve("100%").unwrap(), "100%");
        let err = s.resolve("%Missing%").unwrap_err();
        assert_eq!(err.name, "Missing");
        assert!(err.to_string().contains("define the app setting Missing"));
    }

    #[test]
    fn disabled_by_setting() {
        let mut s = AppSettings::new();
        s.set("AzureWebJobs.Hello.Disabled", "true");
        s.set("AzureWebJobs_Other_Disabled", "1");
        s.set("AzureWebJobs.Third.Disabled", "false");
        assert!(s.is_function_disabled("Hello"));
        assert!(s.is_function_disabled("Other"));
        assert!(!s.is_function_disabled("Third"));
        assert!(!s.is_function_disabled("Nope"));
        let set = s.disabled_functions();
        assert_eq!(set.len(), 2);
        assert!(set.contains("hello") && set.contains("other"));
    }
}
