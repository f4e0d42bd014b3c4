//! Diagnostics: every problem of an app, found in one pass.
//!
//! A [`Diagnostic`] has a severity, a stable [`Code`], a message that says
//! what to do, and where it applies: the file (relative to the app root), the
//! line and column, and the function. Loading never stops at the first
//! problem: [`Diagnostics`] collects them all, and an app is valid when none
//! of them is an error.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The app (or the function) cannot run as it is.
    Error,
    /// The app runs, but probably not as intended.
    Warning,
}

impl Severity {
    /// `"error"` or `"warning"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

macro_rules! codes {
    ($( $(#[$doc:meta])* $variant:ident = $code:literal, )*) => {
        /// A stable identifier of a kind of problem, such as `FH0302`.
        ///
        /// Codes never change meaning; `docs/diagnostics.md` lists them all.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum Code {
            $( $(#[$doc])* $variant, )*
        }

        impl Code {
            /// Every code, in order.
            pub const ALL: &'static [Code] = &[$(Code::$variant),*];

            /// The stable text of the code, such as `"FH0302"`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( Code::$variant => $code, )*
                }
            }
        }
    };
}

codes! {
    /// A file could not be read.
    Io = "FH0001",
    /// A file is not valid JSON (or is empty).
    JsonSyntax = "FH0002",
    /// A document or a value has the wrong JSON type.
    WrongType = "FH0003",

    /// host.json has a `version` other than `"2.0"`.
    HostVersion = "FH0101",
    /// host.json is a version 1 configuration.
    HostVersion1 = "FH0102",
    /// host.json has settings but no `version`.
    HostVersionMissing = "FH0103",
    /// `functionTimeout` is not a valid TimeSpan.
    FunctionTimeout = "FH0104",
    /// `customHandler` (or `httpWorker`) is incomplete.
    CustomHandler = "FH0105",
    /// The `functions` allow-list names a function that does not exist.
    AllowListUnknown = "FH0106",
    /// A `retry` policy is invalid.
    Retry = "FH0107",

    /// The function name breaks the naming rules.
    FunctionName = "FH0201",
    /// Two function folders have the same name, ignoring case.
    DuplicateFunction = "FH0202",
    /// function.json has no bindings.
    NoBindings = "FH0203",
    /// No primary script could be found for the function.
    PrimaryScript = "FH0204",
    /// `scriptFile` names a file that does not exist.
    ScriptFileMissing = "FH0205",
    /// `scriptFile` resolves outside the app root.
    ScriptFileOutside = "FH0206",
    /// The function is excluded (`"excluded": true`) and is not loaded.
    Excluded = "FH0207",

    /// A binding has no `type`.
    BindingType = "FH0301",
    /// A binding name is missing or invalid.
    BindingName = "FH0302",
    /// Two bindings have the same name, ignoring case.
    DuplicateBinding = "FH0303",
    /// A binding direction is not `in`, `out` or `inout`.
    BindingDirection = "FH0304",
    /// A `$return` binding has a direction other than `out`.
    ReturnDirection = "FH0305",
    /// The function has no trigger binding.
    NoTrigger = "FH0306",
    /// The function has more than one trigger binding.
    MultipleTriggers = "FH0307",
    /// A `%Setting%` names an app setting that is not defined.
    UnresolvedSetting = "FH0308",
    /// A binding property has an invalid value (auth level, method, data type...).
    BindingValue = "FH0309",
    /// A binding lacks a property its type requires.
    BindingMissing = "FH0310",

    /// An HTTP route template is invalid.
    RouteTemplate = "FH0401",
    /// Two functions have the same route and overlapping methods.
    RouteConflict = "FH0402",
    /// A route starts with a reserved prefix (`admin`, `runtime`).
    RouteReserved = "FH0403",

    /// A timer schedule is invalid.
    Schedule = "FH0501",

    /// An app setting name is invalid.
    SettingName = "FH0601",
    /// `FUNCTIONS_WORKER_RUNTIME` names an unknown runtime.
    WorkerRuntime = "FH0602",
    /// local.settings.json is encrypted and cannot be read.
    SettingsEncrypted = "FH0603",
    /// `FUNCTIONS_WORKER_RUNTIME` is not set, and the app declares its functions in code.
    WorkerRuntimeMissing = "FH0604",
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// One problem, with where it is and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// The stable code of this kind of problem.
    pub code: Code,
    /// What is wrong and what to do.
    pub message: String,
    /// The file, relative to the app root (serialised with `/` on every
    /// platform).
    #[serde(serialize_with = "slash_path")]
    pub file: Option<PathBuf>,
    /// The 1-based line in `file`.
    pub line: Option<u32>,
    /// The 1-based column (in characters) in `file`.
    pub column: Option<u32>,
    /// The function the problem belongs to.
    pub function: Option<String>,
}

/// Writes a relative path with `/` between its parts, as JSON reports do.
fn slash_path<S: serde::Serializer>(path: &Option<PathBuf>, s: S) -> Result<S::Ok, S::Error> {
    match path {
        Some(p) => s.serialize_some(&p.to_string_lossy().replace('\\', "/")),
        None => s.serialize_none(),
    }
}

impl Diagnostic {
    /// A new error with no location.
    pub fn error(code: Code, message: impl Into<String>) -> Self {
        Self::new(Severity::Error, code, message)
    }

    /// A new warning with no location.
    pub fn warning(code: Code, message: impl Into<String>) -> Self {
        Self::new(Severity::Warning, code, message)
    }

    fn new(severity: Severity, code: Code, message: impl Into<String>) -> Self {
        Diagnostic {
            severity,
            code,
            message: message.into(),
            file: None,
            line: None,
            column: None,
            function: None,
        }
    }

    /// Sets the file.
    pub fn with_file(mut self, file: impl Into<PathBuf>) -> Self {
        self.file = Some(file.into());
        self
    }

    /// Sets the line and column.
    pub fn at(mut self, line: u32, column: u32) -> Self {
        self.line = Some(line);
        self.column = Some(column);
        self
    }

    /// Sets the function.
    pub fn with_function(mut self, function: impl Into<String>) -> Self {
        self.function = Some(function.into());
        self
    }

    /// Whether this is an error.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// `FILE:LINE:COL: error[CODE]: MESSAGE`, as compilers print it.
impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{}", file.display())?;
            if let Some(line) = self.line {
                write!(f, ":{line}")?;
                if let Some(column) = self.column {
                    write!(f, ":{column}")?;
                }
            }
            f.write_str(": ")?;
        }
        write!(f, "{}[{}]: {}", self.severity, self.code, self.message)
    }
}

/// All the problems found, in the order they were found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Diagnostics {
    items: Vec<Diagnostic>,
}

impl Diagnostics {
    /// No problems.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a problem.
    pub fn push(&mut self, diagnostic: Diagnostic) {
        self.items.push(diagnostic);
    }

    /// Adds all of `other`.
    pub fn extend(&mut self, other: Diagnostics) {
        self.items.extend(other.items);
    }

    /// Every problem.
    pub fn iter(&self) -> std::slice::Iter<'_, Diagnostic> {
        self.items.iter()
    }

    /// The errors only.
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items.iter().filter(|d| d.is_error())
    }

    /// The warnings only.
    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items.iter().filter(|d| !d.is_error())
    }

    /// Whether any problem is an error.
    pub fn has_errors(&self) -> bool {
        self.items.iter().any(Diagnostic::is_error)
    }

    /// The errors, each as it displays, joined with `"; "` (one line when
    /// no message spans several).
    pub fn errors_joined(&self) -> String {
        let errors: Vec<String> = self.errors().map(ToString::to_string).collect();
        errors.join("; ")
    }

    /// The number of errors.
    pub fn error_count(&self) -> usize {
        self.errors().count()
    }

    /// The number of warnings.
    pub fn warning_count(&self) -> usize {
        self.warnings().count()
    }

    /// The number of problems.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there is no problem at all.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Sorts by file, line and column, keeping the order of problems at the
    /// same place; problems without a file come first.
    pub fn sort(&mut self) {
        self.items
            .sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
    }

    pub(crate) fn last_mut(&mut self) -> Option<&mut Diagnostic> {
        self.items.last_mut()
    }

    /// The problems as a vector.
    pub fn into_vec(self) -> Vec<Diagnostic> {
        self.items
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.items {
            writeln!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

impl IntoIterator for Diagnostics {
    type Item = Diagnostic;
    type IntoIter = std::vec::IntoIter<Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.items.into_iter()
    }
}

impl<'a> IntoIterator for &'a Diagnostics {
    type Item = &'a Diagnostic;
    type IntoIter = std::slice::Iter<'a, Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.items.iter()
    }
}

impl FromIterator<Diagnostic> for Diagnostics {
    fn from_iter<I: IntoIterator<Item = Diagnostic>>(iter: I) -> Self {
        Diagnostics {
            items: iter.into_iter().collect(),
        }
    }
}

/// Reports problems of one JSON document: it knows the file, the function and
/// the text, and turns a path into the document into a line and column.
#[derive(Debug)]
pub(crate) struct DocReporter<'a> {
    pub(crate) text: &'a str,
    pub(crate) file: &'a Path,
    pub(crate) function: Option<&'a str>,
    pub(crate) out: &'a mut Diagnostics,
}

impl DocReporter<'_> {
    /// Reports a problem at the value found at `path`.
    pub(crate) fn report(
        &mut self,
        severity: Severity,
        code: Code,
        path: &[crate::json::Seg<'_>],
        message: impl Into<String>,
    ) {
        let mut d = Diagnostic::new(severity, code, message).with_file(self.file);
        if let Some((line, column)) = crate::json::locate(self.text, path) {
            d = d.at(line, column);
        }
        if let Some(function) = self.function {
            d = d.with_function(function);
        }
        self.out.push(d);
    }

    pub(crate) fn error(
        &mut self,
        code: Code,
        path: &[crate::json::Seg<'_>],
        message: impl Into<String>,
    ) {
        self.report(Severity::Error, code, path, message);
    }

    pub(crate) fn warning(
        &mut self,
        code: Code,
        path: &[crate::json::Seg<'_>],
        message: impl Into<String>,
    ) {
        self.report(Severity::Warning, code, path, message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_joined_is_the_errors_in_order_without_the_warnings() {
        let mut all = Diagnostics::new();
        all.push(Diagnostic::error(Code::NoTrigger, "no trigger").with_function("a"));
        all.push(Diagnostic::warning(Code::Excluded, "excluded"));
        all.push(Diagnostic::error(Code::Schedule, "bad schedule").with_file("b/function.json"));
        assert_eq!(
            all.errors_joined(),
            "error[FH0306]: no trigger; b/function.json: error[FH0501]: bad schedule"
        );
        assert_eq!(Diagnostics::new().errors_joined(), "");
    }
}
