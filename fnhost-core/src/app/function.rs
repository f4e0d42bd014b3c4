//! function.json: one function's bindings and settings.

use std::path::Path;

use serde_json::{Map, Value};

use super::retry::{RetryPolicy, parse_retry};
use crate::binding::{Binding, parse_binding};
use crate::diag::{Code, Diagnostic, Diagnostics, DocReporter};
use crate::json::{self, Seg};

/// The `disabled` field: a boolean, or (v1) the name of an app setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DisabledField {
    /// `true` or `false`.
    Bool(bool),
    /// The name of an app setting whose value `true` or `1` disables.
    Setting(String),
}

/// function.json, as the host reads it.
///
/// [`FunctionConfig::document`] keeps every top-level key (such as
/// `generatedBy`, which fnhost does not type), and each binding keeps all its
/// properties, so
/// [`FunctionConfig::to_json`] writes the file back with nothing lost.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionConfig {
    /// The bindings, in file order.
    pub bindings: Vec<Binding>,
    /// `scriptFile`, relative to the function folder.
    pub script_file: Option<String>,
    /// `entryPoint`, passed to the language worker.
    pub entry_point: Option<String>,
    /// `disabled`.
    pub disabled: Option<DisabledField>,
    /// `excluded` (v1): the function is not loaded at all.
    pub excluded: bool,
    /// `retry`: this function's retry policy.
    pub retry: Option<RetryPolicy>,
    /// `configurationSource`: `attributes` or `config`.
    pub configuration_source: Option<String>,
    /// Every top-level key as written, the typed ones included, in file
    /// order; `bindings` holds `null` here (the bindings are above).
    pub document: Map<String, Value>,
    /// The position of `bindings`, for diagnostics. Not part of the data.
    trigger: Option<usize>,
}

impl FunctionConfig {
    /// Parses function.json text and checks the document rules (binding
    /// names, directions, exactly one trigger, `$return` is `out`). Warnings
    /// are dropped; on any error, every problem is returned.
    pub fn parse(text: &str) -> Result<FunctionConfig, Diagnostics> {
        let mut out = Diagnostics::new();
        let config = Self::parse_with(text, Path::new("function.json"), None, &mut out);
        match config {
            Some(c) if !out.has_errors() => Ok(c),
            _ => Err(out),
        }
    }

    /// Parses function.json text, adding every problem to `out` with `file`
    /// and `function` as its location. Returns the configuration unless the
    /// text is not JSON or has no usable bindings.
    pub fn parse_with(
        text: &str,
        file: &Path,
        function: Option<&str>,
        out: &mut Diagnostics,
    ) -> Option<FunctionConfig> {
        Self::parse_parsed(text, json::parse(text), file, function, out)
    }

    /// [`FunctionConfig::parse_with`] for a document already run through
    /// `json::parse` (the loader parses on several threads).
    pub(crate) fn parse_parsed(
        text: &str,
        parsed: Result<Value, json::SyntaxError>,
        file: &Path,
        function: Option<&str>,
        out: &mut Diagnostics,
    ) -> Option<FunctionConfig> {
        let mut rep = DocReporter {
            text,
            file,
            function,
            out,
        };
        let value = match parsed {
            Ok(v) => v,
            Err(e) => {
                let mut d = Diagnostic::error(Code::JsonSyntax, e.message)
                    .with_file(file)
                    .at(e.line, e.column);
                if let Some(f) = function {
                    d = d.with_function(f);
                }
                rep.out.push(d);
                return None;
            }
        };
        Self::from_value(value, &mut rep)
    }

    /// The trigger binding (the first, when the document broke the rule).
    pub fn trigger(&self) -> Option<&Binding> {
        self.trigger.and_then(|i| self.bindings.get(i))
    }

    /// The index of the trigger in [`FunctionConfig::bindings`].
    pub fn trigger_index(&self) -> Option<usize> {
        self.trigger
    }

    /// A binding by name, compared case-insensitively.
    pub fn binding(&self, name: &str) -> Option<&Binding> {
        self.bindings
            .iter()
            .find(|b| b.name.eq_ignore_ascii_case(name))
    }

    /// The file's content as JSON, with every key it had.
    pub fn to_json(&self) -> Value {
        let mut doc = self.document.clone();
        doc.insert(
            "bindings".to_owned(),
            Value::Array(
                self.bindings
                    .iter()
                    .map(|b| Value::Object(b.properties.clone()))
                    .collect(),
            ),
        );
        Value::Object(doc)
    }

    fn from_value(value: Value, rep: &mut DocReporter<'_>) -> Option<FunctionConfig> {
        let Value::Object(mut doc) = value else {
            rep.error(
                Code::WrongType,
                &[],
                "function.json must hold a JSON object with a \"bindings\" array",
            );
            return None;
        };
        // `bindings` keeps its place in the document (as null) so that
        // `to_json` writes the keys back in their order.
        let bindings_value = doc.get_mut("bindings").map(Value::take);
        let items = match bindings_value {
            Some(Value::Array(items)) if !items.is_empty() => items,
            Some(Value::Array(_)) | None | Some(Value::Null) => {
                rep.error(
                    Code::NoBindings,
                    &[Seg::Key("bindings")],
                    "function.json has no bindings: add a \"bindings\" array with a trigger, such as {\"type\": \"httpTrigger\", \"direction\": \"in\", \"name\": \"req\"}",
                );
                return None;
            }
            Some(_) => {
                rep.error(
                    Code::WrongType,
                    &[Seg::Key("bindings")],
                    "\"bindings\" must be an array of binding objects",
                );
                return None;
            }
        };

        let mut bindings = Vec::with_capacity(items.len());
        let mut indexes = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            if let Some(b) = parse_binding(item, i, rep) {
                bindings.push(b);
                indexes.push(i);
            }
        }

        // Unique names, ignoring case.
        for (pos, b) in bindings.iter().enumerate() {
            if b.name.is_empty() {
                continue;
            }
            if bindings[..pos]
                .iter()
                .any(|other| other.name.eq_ignore_ascii_case(&b.name))
            {
                rep.error(
                    Code::DuplicateBinding,
                    &[Seg::Key("bindings"), Seg::Index(indexes[pos]), Seg::Key("name")],
                    format!("Multiple bindings with name '{}' discovered: binding names must be unique (ignoring case); rename one", b.name),
                );
            }
        }

        // Exactly one trigger.
        let triggers: Vec<usize> = (0..bindings.len())
            .filter(|&i| bindings[i].is_trigger())
            .collect();
        match triggers.as_slice() {
            [] => {
                // A trigger type with the wrong direction deserves its own hint.
                let misdirected = bindings
                    .iter()
                    .position(|b| crate::binding::is_trigger_type(&b.type_name));
                let message = match misdirected {
                    Some(i) => format!("No trigger binding specified: the {} binding has direction \"{}\"; a trigger's direction is \"in\"", bindings[i].type_name, bindings[i].direction),
                    None => "No trigger binding specified: a function needs exactly one trigger, such as httpTrigger, timerTrigger or queueTrigger, with direction \"in\"".to_owned(),
                };
                rep.error(Code::NoTrigger, &[Seg::Key("bindings")], message);
            }
            [_] => {}
            [_, second, ..] => rep.error(
                Code::MultipleTriggers,
                &[Seg::Key("bindings"), Seg::Index(indexes[*second])],
                format!(
                    "Multiple trigger bindings defined ({}): a function has exactly one trigger; move the others to functions of their own",
                    triggers
                        .iter()
                        .map(|&i| bindings[i].type_name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
        }

        let mut string_field = |doc: &Map<String, Value>, key: &'static str| match doc.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => {
                rep.error(
                    Code::WrongType,
                    &[Seg::Key(key)],
                    format!("\"{key}\" must be a string, not {other}"),
                );
                None
            }
        };
        let script_file = string_field(&doc, "scriptFile");
        let entry_point = string_field(&doc, "entryPoint");
        let configuration_source = string_field(&doc, "configurationSource");

        let disabled = match doc.get("disabled") {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(DisabledField::Bool(*b)),
            Some(Value::String(s)) => Some(match s.trim().to_ascii_lowercase().as_str() {
                "true" => DisabledField::Bool(true),
                "false" => DisabledField::Bool(false),
                _ => DisabledField::Setting(s.clone()),
            }),
            Some(other) => {
                rep.error(
                    Code::WrongType,
                    &[Seg::Key("disabled")],
                    format!("\"disabled\" must be true, false or the name of an app setting, not {other}"),
                );
                None
            }
        };
        let excluded = match doc.get("excluded") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                rep.error(
                    Code::WrongType,
                    &[Seg::Key("excluded")],
                    format!("\"excluded\" must be true or false, not {other}"),
                );
                false
            }
        };
        let retry = match doc.get("retry") {
            None | Some(Value::Null) => None,
            Some(v) => parse_retry(v, &[Seg::Key("retry")], rep),
        };

        Some(FunctionConfig {
            trigger: triggers.first().copied(),
            bindings,
            script_file,
            entry_point,
            disabled,
            excluded,
            retry,
            configuration_source,
            document: doc,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binding::{BindingKind, Direction};

    #[test]
    fn parses_a_typical_http_function() {
        let text = "\u{feff}{\r\n \"scriptFile\": \"index.js\",\r\n \"bindings\": [\r\n  {\"authLevel\": \"anonymous\", \"type\": \"httpTrigger\", \"direction\": \"in\", \"name\": \"req\", \"methods\": [\"GET\", \"post\"], \"route\": \"items/{id:int}\"},\r\n  {\"type\": \"http\", \"direction\": \"out\", \"name\": \"$return\"}\r\n ],\r\n \"generatedBy\": \"x\"\r\n}";
        let c = FunctionConfig::parse(text).unwrap();
        assert_eq!(c.bindings.len(), 2);
        let t = c.trigger().unwrap();
        let BindingKind::HttpTrigger(h) = &t.kind else {
            panic!("not http: {:?}", t.kind)
        };
        assert_eq!(h.route.as_deref(), Some("items/{id:int}"));
        assert_eq!(c.bindings[1].direction, Direction::Out);
        assert_eq!(c.script_file.as_deref(), Some("index.js"));
        let back: Value = serde_json::from_str(crate::json::strip_bom(text)).unwrap();
        assert_eq!(c.to_json(), back);
    }

    #[test]
    fn every_document_problem_is_reported_at_once() {
        let text = r#"{"bindings": [
  {"type": "queueTrigger", "direction": "in", "name": "my_item"},
  {"type": "blobTrigger", "direction": "sideways", "name": "blob"},
  {"type": "http", "direction": "in", "name": "$return"},
  {"type": "queue", "direction": "out", "name": "BLOB"}
]}"#;
        let err = FunctionConfig::parse(text).unwrap_err();
        let codes: Vec<&str> = err.iter().map(|d| d.code.as_str()).collect();
        assert_eq!(codes, ["FH0302", "FH0304", "FH0305", "FH0303", "FH0307"]);
        let first = err.iter().next().unwrap();
        assert_eq!((first.line, first.column), (Some(2), Some(55)));
    }
}
