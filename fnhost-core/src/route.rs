//! Route templates and the compiled router.
//!
//! An HTTP-triggered function is reached through a *route template* written in
//! the ASP.NET Core syntax that Azure Functions uses for the `route` property
//! of an `httpTrigger` binding, prefixed (by the app model) with the host's
//! route prefix:
//!
//! ```text
//! api/products/{category:alpha}/{id:int?}
//! ```
//!
//! [`RouteTemplate::parse`] understands:
//!
//! * literal segments (`products`), matched ASCII case-insensitively;
//! * parameters `{name}`, optional parameters `{name?}` (trailing only),
//!   defaults `{name=value}`, catch-alls `{*rest}` / `{**rest}` (last segment);
//! * constraints, chained with `:`: `int`, `long`, `bool`, `guid`, `double`,
//!   `decimal`, `datetime`, `alpha`, `required`, `minlength(n)`,
//!   `maxlength(n)`, `length(n)`, `length(a,b)`, `min(n)`, `max(n)`,
//!   `range(a,b)` and `regex(expr)`;
//! * complex segments mixing literals and parameters, such as `{name}.{ext?}`
//!   or `file{id}.txt`;
//! * `{{` and `}}` for literal braces.
//!
//! A [`RouterBuilder`] compiles many templates into a [`Router`], a tree keyed
//! by literal segment, so that [`Router::find`] costs about the same with ten
//! routes as with thousands. When several routes match a path, the most
//! specific wins: comparing segment by segment from the left, a literal beats
//! a complex segment, which beats a constrained parameter, then a plain
//! parameter, an optional constrained parameter, a plain optional parameter
//! and finally a catch-all; a template that ends earlier beats one that goes
//! on; remaining ties go to the route registered first.
//!
//! ```
//! use fnhost_core::route::{Method, MethodSet, RouteMatch, RouteTemplate, RouterBuilder};
//!
//! let mut builder = RouterBuilder::new();
//! let get = MethodSet::EMPTY.with(Method::Get);
//! builder.add(RouteTemplate::parse("api/items/{id:int}")?, get, "by id")?;
//! builder.add(RouteTemplate::parse("api/items/{name}")?, get, "by name")?;
//! let router = builder.build();
//!
//! match router.find(Method::Get, "/api/items/42") {
//!     RouteMatch::Matched { value, params } => {
//!         assert_eq!(*value, "by id");
//!         assert_eq!(params.get("ID"), Some("42"));
//!     }
//!     other => panic!("unexpected {other:?}"),
//! }
//! assert!(matches!(
//!     router.find(Method::Post, "/api/items/42"),
//!     RouteMatch::MethodNotAllowed { .. }
//! ));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use regex::Regex;

// ---------------------------------------------------------------------------
// Methods
// ---------------------------------------------------------------------------

/// An HTTP method a route can be registered for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Method {
    /// `GET`
    Get,
    /// `POST`
    Post,
    /// `PUT`
    Put,
    /// `DELETE`
    Delete,
    /// `HEAD`
    Head,
    /// `PATCH`
    Patch,
    /// `OPTIONS`
    Options,
    /// `TRACE`
    Trace,
}

impl Method {
    /// Every method, in the order [`MethodSet::iter`] yields them.
    pub const ALL: [Method; 8] = [
        Method::Get,
        Method::Post,
        Method::Put,
        Method::Delete,
        Method::Head,
        Method::Patch,
        Method::Options,
        Method::Trace,
    ];

    /// The method's upper-case name, e.g. `"GET"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Head => "HEAD",
            Method::Patch => "PATCH",
            Method::Options => "OPTIONS",
            Method::Trace => "TRACE",
        }
    }

    const fn bit(self) -> u8 {
        1u8 << (self as u8)
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Method {
    type Err = UnknownMethod;

    /// Parses a method name, ignoring ASCII case (`"get"`, `"Get"`, `"GET"`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Method::ALL
            .into_iter()
            .find(|m| m.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownMethod(s.to_owned()))
    }
}

/// The error of parsing a [`Method`] from a name that is not one of the eight
/// supported methods; holds the name as given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownMethod(pub String);

impl fmt::Display for UnknownMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown HTTP method '{}' (expected one of GET, POST, PUT, DELETE, HEAD, PATCH, OPTIONS, TRACE)",
            self.0
        )
    }
}

impl std::error::Error for UnknownMethod {}

/// A set of [`Method`]s, stored as a bit set.
///
/// The default value is the empty set. Displayed as a comma-separated list of
/// names (`"GET, POST"`), suitable for an `Allow` header.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct MethodSet(u8);

impl MethodSet {
    /// The empty set.
    pub const EMPTY: MethodSet = MethodSet(0);
    /// The set of all eight methods.
    pub const ALL: MethodSet = MethodSet(0xFF);

    /// Adds `method` to the set.
    pub fn insert(&mut self, method: Method) {
        self.0 |= method.bit();
    }

    /// Returns the set with `method` added.
    #[must_use]
    pub const fn with(self, method: Method) -> Self {
        MethodSet(self.0 | method.bit())
    }

    /// Whether `method` is in the set.
    pub const fn contains(self, method: Method) -> bool {
        self.0 & method.bit() != 0
    }

    /// Whether the two sets have a method in common.
    pub const fn intersects(self, other: MethodSet) -> bool {
        self.0 & other.0 != 0
    }

    /// The methods in either set.
    #[must_use]
    pub const fn union(self, other: MethodSet) -> Self {
        MethodSet(self.0 | other.0)
    }

    /// Whether the set holds no method.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether the set holds all eight methods.
    pub const fn is_all(self) -> bool {
        self.0 == 0xFF
    }

    /// The methods in the set, in the order of [`Method::ALL`].
    pub fn iter(self) -> impl Iterator<Item = Method> {
        Method::ALL.into_iter().filter(move |m| self.contains(*m))
    }
}

impl From<Method> for MethodSet {
    fn from(method: Method) -> Self {
        MethodSet::EMPTY.with(method)
    }
}

impl FromIterator<Method> for MethodSet {
    fn from_iter<I: IntoIterator<Item = Method>>(iter: I) -> Self {
        let mut set = MethodSet::EMPTY;
        set.extend(iter);
        set
    }
}

impl Extend<Method> for MethodSet {
    fn extend<I: IntoIterator<Item = Method>>(&mut self, iter: I) {
        for m in iter {
            self.insert(m);
        }
    }
}

impl fmt::Debug for MethodSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl fmt::Display for MethodSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, m) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(m.as_str())?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// Why a route template could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteError {
    /// What is wrong, as a sentence naming the offending part.
    pub message: String,
    /// Byte offset into the template text where the problem was found.
    pub offset: usize,
}

impl RouteError {
    fn new(offset: usize, message: impl Into<String>) -> Self {
        RouteError {
            message: message.into(),
            offset,
        }
    }
}

impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for RouteError {}

/// A route could not be added because an earlier route has the same template
/// shape (same literals ignoring case, same parameter kinds and constraints,
/// whatever the parameter names) and shares at least one method with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteConflict {
    /// Index (as returned by [`RouterBuilder::add`]) of the existing route.
    pub existing: usize,
}

impl fmt::Display for RouteConflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "route conflicts with route #{}: same template and overlapping HTTP methods",
            self.existing
        )
    }
}

impl std::error::Error for RouteConflict {}

// ---------------------------------------------------------------------------
// Constraints
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Constraint {
    Int,
    Long,
    Bool,
    Guid,
    Double,
    Decimal,
    DateTime,
    Alpha,
    Required,
    MinLength(usize),
    MaxLength(usize),
    Length(usize, usize),
    Min(i64),
    Max(i64),
    Range(i64, i64),
    /// Boxed: rare, and it would otherwise triple the size of every constraint.
    Regex(Box<RegexConstraint>),
}

#[derive(Clone, Debug)]
struct RegexConstraint {
    pattern: String,
    regex: Regex,
}

/// Parses a constraint's comma-separated arguments; returns how many there
/// are and the first two (the most any constraint takes).
fn constraint_args<N: FromStr + Copy + Default>(
    name: &str,
    args: Option<&str>,
) -> Result<(usize, [N; 2]), String> {
    let args =
        args.ok_or_else(|| format!("constraint '{name}' requires arguments in parentheses"))?;
    let mut first = [N::default(); 2];
    let mut count = 0;
    for a in args.split(',') {
        let a = a.trim();
        let v = a
            .parse::<N>()
            .map_err(|_| format!("constraint '{name}' has an invalid argument '{a}'"))?;
        if let Some(slot) = first.get_mut(count) {
            *slot = v;
        }
        count += 1;
    }
    Ok((count, first))
}

impl Constraint {
    fn parse(name: &str, args: Option<&str>) -> Result<Self, String> {
        let no_args = |c: Constraint| match args {
            None => Ok(c),
            Some(_) => Err(format!("constraint '{name}' takes no arguments")),
        };
        // Lower-case into a stack buffer; every known name fits in it.
        let mut buf = [0u8; 9];
        let lower: &[u8] = match buf.get_mut(..name.len()) {
            Some(dst) => {
                dst.copy_from_slice(name.as_bytes());
                dst.make_ascii_lowercase();
                dst
            }
            None => b"",
        };
        match lower {
            b"int" => no_args(Constraint::Int),
            b"long" => no_args(Constraint::Long),
            b"bool" => no_args(Constraint::Bool),
            b"guid" => no_args(Constraint::Guid),
            b"double" => no_args(Constraint::Double),
            b"decimal" => no_args(Constraint::Decimal),
            b"datetime" => no_args(Constraint::DateTime),
            b"alpha" => no_args(Constraint::Alpha),
            b"required" => no_args(Constraint::Required),
            b"minlength" | b"maxlength" => match constraint_args::<usize>(name, args)? {
                (1, [n, _]) if lower == b"minlength" => Ok(Constraint::MinLength(n)),
                (1, [n, _]) => Ok(Constraint::MaxLength(n)),
                _ => Err(format!("constraint '{name}' takes exactly one argument")),
            },
            b"length" => match constraint_args::<usize>(name, args)? {
                (1, [n, _]) => Ok(Constraint::Length(n, n)),
                (2, [a, b]) if a <= b => Ok(Constraint::Length(a, b)),
                (2, _) => Err(format!(
                    "constraint '{name}': the minimum length is greater than the maximum"
                )),
                _ => Err(format!("constraint '{name}' takes one or two arguments")),
            },
            b"min" | b"max" => match constraint_args::<i64>(name, args)? {
                (1, [n, _]) if lower == b"min" => Ok(Constraint::Min(n)),
                (1, [n, _]) => Ok(Constraint::Max(n)),
                _ => Err(format!("constraint '{name}' takes exactly one argument")),
            },
            b"range" => match constraint_args::<i64>(name, args)? {
                (2, [a, b]) if a <= b => Ok(Constraint::Range(a, b)),
                (2, _) => Err(format!(
                    "constraint '{name}': the minimum is greater than the maximum"
                )),
                _ => Err(format!("constraint '{name}' takes exactly two arguments")),
            },
            b"regex" => {
                let pattern = args
                    .filter(|a| !a.is_empty())
                    .ok_or_else(|| format!("constraint '{name}' requires a pattern argument"))?;
                let regex = Regex::new(&format!("(?i){pattern}"))
                    .map_err(|e| format!("constraint '{name}' has an invalid regex: {e}"))?;
                Ok(Constraint::Regex(Box::new(RegexConstraint {
                    pattern: pattern.to_owned(),
                    regex,
                })))
            }
            _ => Err(format!("unknown route constraint '{name}'")),
        }
    }

    /// Whether two constraints are the same once normalised (name case and
    /// `length(n)` versus `length(n,n)` do not matter; regexes compare by
    /// pattern text).
    fn same(&self, other: &Constraint) -> bool {
        use Constraint as C;
        match (self, other) {
            (C::MinLength(a), C::MinLength(b)) | (C::MaxLength(a), C::MaxLength(b)) => a == b,
            (C::Length(a, b), C::Length(c, d)) => a == c && b == d,
            (C::Min(a), C::Min(b)) | (C::Max(a), C::Max(b)) => a == b,
            (C::Range(a, b), C::Range(c, d)) => a == c && b == d,
            (C::Regex(a), C::Regex(b)) => a.pattern == b.pattern,
            // Same data-less variant, or different variants.
            _ => std::mem::discriminant(self) == std::mem::discriminant(other),
        }
    }

    fn accepts(&self, v: &str) -> bool {
        match self {
            Constraint::Int => v.trim().parse::<i32>().is_ok(),
            Constraint::Long => v.trim().parse::<i64>().is_ok(),
            Constraint::Bool => {
                let t = v.trim();
                t.eq_ignore_ascii_case("true") || t.eq_ignore_ascii_case("false")
            }
            Constraint::Guid => is_guid(v),
            Constraint::Double => is_double(v),
            Constraint::Decimal => is_decimal(v),
            Constraint::DateTime => is_datetime(v),
            Constraint::Alpha => v.bytes().all(|b| b.is_ascii_alphabetic()),
            Constraint::Required => !v.is_empty(),
            // .NET measures string length in UTF-16 code units.
            Constraint::MinLength(n) => v.encode_utf16().count() >= *n,
            Constraint::MaxLength(n) => v.encode_utf16().count() <= *n,
            Constraint::Length(a, b) => (*a..=*b).contains(&v.encode_utf16().count()),
            Constraint::Min(n) => v.trim().parse::<i64>().is_ok_and(|x| x >= *n),
            Constraint::Max(n) => v.trim().parse::<i64>().is_ok_and(|x| x <= *n),
            Constraint::Range(a, b) => v
                .trim()
                .parse::<i64>()
                .is_ok_and(|x| (*a..=*b).contains(&x)),
            Constraint::Regex(r) => r.regex.is_match(v),
        }
    }
}

/// `Guid.TryParse` formats N, D, B and P.
fn is_guid(v: &str) -> bool {
    let s = v.trim().as_bytes();
    let dashed = |d: &[u8]| {
        d.len() == 36
            && d.iter().enumerate().all(|(i, &b)| {
                if matches!(i, 8 | 13 | 18 | 23) {
                    b == b'-'
                } else {
                    b.is_ascii_hexdigit()
                }
            })
    };
    match s.len() {
        32 => s.iter().all(u8::is_ascii_hexdigit),
        36 => dashed(s),
        38 => matches!((s[0], s[37]), (b'{', b'}') | (b'(', b')')) && dashed(&s[1..37]),
        _ => false,
    }
}

/// Digits with optional `,` group separators, optional fraction, and (when
/// `exponent`) an optional exponent; returns the integer digits on success.
fn number_syntax(s: &str, exponent: bool) -> Option<&str> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut int_digits = 0;
    while i < b.len() && (b[i].is_ascii_digit() || (b[i] == b',' && int_digits > 0)) {
        int_digits += usize::from(b[i].is_ascii_digit());
        i += 1;
    }
    let int_end = i;
    let mut frac_digits = 0;
    if i < b.len() && b[i] == b'.' {
        i += 1;
        while i < b.len() && b[i].is_ascii_digit() {
            frac_digits += 1;
            i += 1;
        }
    }
    if int_digits + frac_digits == 0 {
        return None;
    }
    if exponent && i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
    }
    (i == b.len()).then(|| &s[..int_end])
}

fn strip_sign(s: &str) -> &str {
    s.strip_prefix(['+', '-']).unwrap_or(s)
}

/// `double.TryParse` with invariant culture, float style and thousands.
fn is_double(v: &str) -> bool {
    let body = strip_sign(v.trim());
    ["infinity", "nan"]
        .iter()
        .any(|w| body.eq_ignore_ascii_case(w))
        || body == "\u{221e}"
        || number_syntax(body, true).is_some()
}

/// `decimal.TryParse` with invariant culture and number style (no exponent,
/// magnitude up to `79228162514264337593543950335`).
fn is_decimal(v: &str) -> bool {
    const MAX: &str = "79228162514264337593543950335";
    let Some(int_part) = number_syntax(strip_sign(v.trim()), false) else {
        return false;
    };
    let digits: String = int_part.chars().filter(char::is_ascii_digit).collect();
    let digits = digits.trim_start_matches('0');
    digits.len() < MAX.len() || (digits.len() == MAX.len() && digits <= MAX)
}

/// A practical subset of `DateTime.TryParse` with invariant culture: ISO 8601
/// dates and date-times (with `T` or a space, optional seconds, fraction and
/// offset or `Z`) and the invariant `MM/dd/yyyy` form (reachable only through
/// `%2F`).
fn is_datetime(v: &str) -> bool {
    use chrono::{DateTime, NaiveDate, NaiveDateTime};
    let t = v.trim();
    if DateTime::parse_from_rfc3339(t).is_ok() {
        return true;
    }
    let t = t.strip_suffix(['Z', 'z']).unwrap_or(t);
    const DATE_TIMES: [&str; 6] = [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
        "%m/%d/%Y %H:%M:%S",
        "%m/%d/%Y %H:%M",
    ];
    const DATES: [&str; 3] = ["%Y-%m-%d", "%m/%d/%Y", "%Y/%m/%d"];
    DATE_TIMES
        .iter()
        .any(|f| NaiveDateTime::parse_from_str(t, f).is_ok())
        || DATES
            .iter()
            .any(|f| NaiveDate::parse_from_str(t, f).is_ok())
}

// ---------------------------------------------------------------------------
// Templates
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Consumes exactly one non-empty segment.
    Required,
    /// Consumes one segment if the path has one left, else nothing.
    Optional,
    /// Consumes the rest of the path (possibly nothing).
    CatchAll,
}

/// A parameter's constraints; zero or one (the usual cases) need no
/// allocation.
#[derive(Clone, Debug, Default)]
enum Constraints {
    #[default]
    None,
    One(Constraint),
    Many(Vec<Constraint>),
}

impl Constraints {
    fn as_slice(&self) -> &[Constraint] {
        match self {
            Constraints::None => &[],
            Constraints::One(c) => std::slice::from_ref(c),
            Constraints::Many(cs) => cs,
        }
    }

    fn is_empty(&self) -> bool {
        matches!(self, Constraints::None)
    }

    fn push(&mut self, c: Constraint) {
        *self = match std::mem::take(self) {
            Constraints::None => Constraints::One(c),
            Constraints::One(first) => Constraints::Many(vec![first, c]),
            Constraints::Many(mut cs) => {
                cs.push(c);
                Constraints::Many(cs)
            }
        };
    }

    /// Whether both hold the same constraints, in any order.
    fn same(&self, other: &Constraints) -> bool {
        let (a, b) = (self.as_slice(), other.as_slice());
        let count = |cs: &[Constraint], c: &Constraint| cs.iter().filter(|x| x.same(c)).count();
        a.len() == b.len()
            && match a {
                [] => true,
                [x] => x.same(&b[0]),
                _ => a.iter().all(|c| count(a, c) == count(b, c)),
            }
    }
}

#[derive(Clone, Debug)]
struct Param {
    name: Arc<str>,
    mode: Mode,
    /// Written with a trailing `?`.
    marked_optional: bool,
    default: Option<String>,
    constraints: Constraints,
    /// Offset of the opening `{` in the template.
    offset: usize,
}

impl Param {
    fn accepts(&self, v: &str) -> bool {
        self.constraints.as_slice().iter().all(|c| c.accepts(v))
    }

    /// Whether the two parameters have the same shape: same kind and
    /// constraints, whatever their names.
    fn same_shape(&self, other: &Param) -> bool {
        self.mode == other.mode && self.constraints.same(&other.constraints)
    }
}

#[derive(Clone, Debug)]
enum Part {
    Literal(String),
    Param(Param),
}

/// Whether two complex segments have the same shape: literals equal ignoring
/// ASCII case, parameters of the same shape.
fn same_parts(a: &[Part], b: &[Part]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|pair| match pair {
            (Part::Literal(x), Part::Literal(y)) => x.eq_ignore_ascii_case(y),
            (Part::Param(x), Part::Param(y)) => x.same_shape(y),
            _ => false,
        })
}

/// The text of a literal segment.
#[derive(Clone, Debug)]
enum Lit {
    /// Byte range of the template text (no escaped braces).
    Span(usize, usize),
    /// Unescaped text, when the segment has `{{` or `}}`.
    Owned(Box<str>),
}

impl Lit {
    fn bytes<'a>(&'a self, text: &'a str) -> &'a [u8] {
        match self {
            Lit::Span(s, e) => &text.as_bytes()[*s..*e],
            Lit::Owned(l) => l.as_bytes(),
        }
    }
}

#[derive(Clone, Debug)]
enum Segment {
    Literal(Lit),
    Param(Param),
    Complex(Vec<Part>),
}

impl Segment {
    /// Specificity rank: lower is more specific.
    fn rank(&self) -> u8 {
        match self {
            Segment::Literal(_) => 0,
            Segment::Complex(_) => 1,
            Segment::Param(p) => match (p.mode, p.constraints.is_empty()) {
                (Mode::Required, false) => 2,
                (Mode::Required, true) => 3,
                (Mode::Optional, false) => 4,
                (Mode::Optional, true) => 5,
                (Mode::CatchAll, _) => 6,
            },
        }
    }

    /// Whether a path may end before this segment (it may consume nothing).
    fn may_be_empty(&self) -> bool {
        matches!(self, Segment::Param(p)
            if p.marked_optional || p.default.is_some() || p.mode == Mode::CatchAll)
    }
}

/// The parameters of `segments`, left to right.
fn params_of(segments: &[Segment]) -> impl Iterator<Item = &Param> {
    segments.iter().flat_map(|s| {
        let (one, many): (Option<&Param>, &[Part]) = match s {
            Segment::Literal(_) => (None, &[]),
            Segment::Param(p) => (Some(p), &[]),
            Segment::Complex(parts) => (None, parts),
        };
        one.into_iter()
            .chain(many.iter().filter_map(|part| match part {
                Part::Param(p) => Some(p),
                Part::Literal(_) => None,
            }))
    })
}

/// A parsed ASP.NET Core route template, e.g. `api/products/{id:int?}`.
///
/// Parse with [`RouteTemplate::parse`] or [`str::parse`]; displays as the
/// text it was parsed from. Two templates are equal when their texts are.
/// Cloning is cheap: clones share the parsed form.
#[derive(Clone)]
pub struct RouteTemplate {
    inner: Arc<TemplateInner>,
}

struct TemplateInner {
    text: String,
    segments: Vec<Segment>,
}

impl RouteTemplate {
    /// Parses a template. A single leading `/` and a single trailing `/` are
    /// ignored; the empty template matches only the root path.
    ///
    /// # Errors
    ///
    /// A [`RouteError`] with the byte offset of the problem for: unbalanced
    /// braces, an empty segment (`a//b`), `?` in a literal, an empty or
    /// invalid parameter name, a duplicate parameter name (ignoring case), an
    /// unknown constraint or bad constraint arguments (including an invalid
    /// regex), an optional parameter that is followed by a required segment, a
    /// catch-all that is not the last segment or is marked optional, an
    /// optional parameter with a default, a default that fails its own
    /// constraints, and malformed complex segments (two adjacent parameters,
    /// a catch-all or default inside one, an optional part not last or not
    /// preceded by `.`).
    pub fn parse(text: &str) -> Result<Self, RouteError> {
        Ok(RouteTemplate {
            inner: Arc::new(TemplateInner {
                segments: parse_template(text)?,
                text: text.to_owned(),
            }),
        })
    }

    /// The text the template was parsed from.
    pub fn as_str(&self) -> &str {
        &self.inner.text
    }

    /// The names of the template's parameters, left to right, as written.
    pub fn parameter_names(&self) -> impl Iterator<Item = &str> {
        params_of(&self.inner.segments).map(|p| &*p.name)
    }

    fn segments(&self) -> &[Segment] {
        &self.inner.segments
    }

    /// Specificity key: one rank per segment, compared left to right.
    fn key(&self) -> impl Iterator<Item = u8> + '_ {
        self.segments().iter().map(Segment::rank)
    }
}

impl fmt::Debug for RouteTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RouteTemplate")
            .field(&self.as_str())
            .finish()
    }
}

impl fmt::Display for RouteTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RouteTemplate {
    type Err = RouteError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RouteTemplate::parse(s)
    }
}

impl PartialEq for RouteTemplate {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for RouteTemplate {}

/// One part of a segment as scanned, before it is parsed: byte ranges into
/// the template, and whether they hold escaped braces.
#[derive(Clone, Copy)]
enum RawPart {
    /// Literal text `start..end`.
    Literal {
        start: usize,
        end: usize,
        escaped: bool,
    },
    /// A parameter from its `{` at `open` to its `}` at `close`.
    Param {
        open: usize,
        close: usize,
        escaped: bool,
    },
}

/// Scanned parts of the current segment; complex segments are rare, so room
/// for a few parts on the stack is enough to avoid allocating.
struct RawParts {
    inline: [RawPart; 4],
    len: usize,
    spill: Vec<RawPart>,
}

impl RawParts {
    fn new() -> Self {
        RawParts {
            inline: [RawPart::Literal {
                start: 0,
                end: 0,
                escaped: false,
            }; 4],
            len: 0,
            spill: Vec::new(),
        }
    }

    fn push(&mut self, part: RawPart) {
        if self.len < self.inline.len() {
            self.inline[self.len] = part;
        } else {
            if self.spill.is_empty() {
                self.spill.extend_from_slice(&self.inline);
            }
            self.spill.push(part);
        }
        self.len += 1;
    }

    fn as_slice(&self) -> &[RawPart] {
        if self.len <= self.inline.len() {
            &self.inline[..self.len]
        } else {
            &self.spill
        }
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn clear(&mut self) {
        self.len = 0;
        self.spill.clear();
    }
}

/// Collapses `{{` and `}}` in literal text.
fn unescape_literal(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == '{' || c == '}' {
            chars.next();
        }
    }
    out
}

fn is_special(b: u8) -> bool {
    matches!(b, b'/' | b'{' | b'}' | b'?')
}

/// Parses the template into segments. Scanning errors (braces, empty
/// segments, `?`) anywhere in the template are reported before errors in the
/// parameters or complex segments, which are reported in template order.
fn parse_template(t: &str) -> Result<Vec<Segment>, RouteError> {
    let b = t.as_bytes();
    let mut i = usize::from(t.starts_with('/'));
    let mut segments = Vec::with_capacity(b.iter().filter(|&&c| c == b'/').count() + 1);
    let mut parts = RawParts::new();
    // Literal text being scanned: start, and whether it holds escapes.
    let mut lit: Option<(usize, bool)> = None;
    // The first error found while parsing parts; scanning goes on, since a
    // scanning error later in the template takes precedence.
    let mut deferred: Option<RouteError> = None;
    let flush = |lit: &mut Option<(usize, bool)>, parts: &mut RawParts, end: usize| {
        if let Some((start, escaped)) = lit.take() {
            parts.push(RawPart::Literal {
                start,
                end,
                escaped,
            });
        }
    };
    let mut finish = |parts: &mut RawParts, deferred: &mut Option<RouteError>| {
        if deferred.is_none() {
            match build_segment(t, parts.as_slice()) {
                Ok(seg) => segments.push(seg),
                Err(e) => *deferred = Some(e),
            }
        }
        parts.clear();
    };
    while i < b.len() {
        match b[i] {
            b'/' => {
                flush(&mut lit, &mut parts, i);
                if parts.is_empty() {
                    return Err(RouteError::new(
                        i,
                        "empty segment: the template contains '//' or starts with it",
                    ));
                }
                finish(&mut parts, &mut deferred);
                i += 1;
            }
            c @ (b'{' | b'}') if b.get(i + 1) == Some(&c) => {
                lit.get_or_insert((i, true)).1 = true;
                i += 2;
            }
            b'{' => {
                flush(&mut lit, &mut parts, i);
                let (close, escaped) = scan_param(b, i)?;
                parts.push(RawPart::Param {
                    open: i,
                    close,
                    escaped,
                });
                i = close + 1;
            }
            b'}' => {
                return Err(RouteError::new(
                    i,
                    "unbalanced '}' (write '}}' for a literal brace)",
                ));
            }
            b'?' => {
                return Err(RouteError::new(
                    i,
                    "'?' is not allowed in a literal (only at the end of a parameter)",
                ));
            }
            _ => {
                lit.get_or_insert((i, false));
                i = b[i..]
                    .iter()
                    .position(|&c| is_special(c))
                    .map_or(b.len(), |k| i + k);
            }
        }
    }
    flush(&mut lit, &mut parts, b.len());
    if !parts.is_empty() {
        finish(&mut parts, &mut deferred);
    }
    if let Some(e) = deferred {
        return Err(e);
    }
    validate_template(&mut segments)?;
    Ok(segments)
}

/// Builds one segment from its scanned parts.
fn build_segment(t: &str, raw: &[RawPart]) -> Result<Segment, RouteError> {
    let part = |rp: &RawPart| -> Result<Part, RouteError> {
        Ok(match *rp {
            RawPart::Literal {
                start,
                end,
                escaped,
            } => Part::Literal(if escaped {
                unescape_literal(&t[start..end])
            } else {
                t[start..end].to_owned()
            }),
            RawPart::Param {
                open,
                close,
                escaped,
            } => Part::Param(param_at(t, open, close, escaped)?),
        })
    };
    match raw {
        [
            RawPart::Literal {
                start,
                end,
                escaped: false,
            },
        ] => Ok(Segment::Literal(Lit::Span(*start, *end))),
        [
            RawPart::Literal {
                start,
                end,
                escaped: true,
            },
        ] => Ok(Segment::Literal(Lit::Owned(
            unescape_literal(&t[*start..*end]).into_boxed_str(),
        ))),
        [
            RawPart::Param {
                open,
                close,
                escaped,
            },
        ] => Ok(Segment::Param(param_at(t, *open, *close, *escaped)?)),
        _ => {
            let parts = raw.iter().map(part).collect::<Result<Vec<_>, _>>()?;
            validate_complex(&parts)?;
            Ok(Segment::Complex(parts))
        }
    }
}

/// Scans a `{...}` parameter starting at `open`; returns the offset of its
/// closing brace and whether it holds escaped braces.
fn scan_param(b: &[u8], open: usize) -> Result<(usize, bool), RouteError> {
    let mut j = open + 1;
    let mut escaped = false;
    loop {
        match b.get(j) {
            None => {
                return Err(RouteError::new(
                    open,
                    "unbalanced '{': the parameter is never closed with '}'",
                ));
            }
            Some(&c @ (b'{' | b'}')) if b.get(j + 1) == Some(&c) => {
                escaped = true;
                j += 2;
            }
            Some(b'}') => return Ok((j, escaped)),
            Some(b'{') => {
                return Err(RouteError::new(
                    j,
                    "unexpected '{' inside a parameter (write '{{' for a literal brace)",
                ));
            }
            Some(_) => {
                j = b[j..]
                    .iter()
                    .position(|&c| c == b'{' || c == b'}')
                    .map_or(b.len(), |k| j + k);
            }
        }
    }
}

/// Parses the parameter between the braces at `open` and `close`.
fn param_at(t: &str, open: usize, close: usize, escaped: bool) -> Result<Param, RouteError> {
    if !escaped {
        return parse_param(&t[open + 1..close], Offsets::From(open + 1), open);
    }
    let b = t.as_bytes();
    let mut text = String::with_capacity(close - open);
    let mut offsets = Vec::with_capacity(close - open);
    let mut j = open + 1;
    while j < close {
        if matches!(b[j], b'{' | b'}') {
            // Escaped: the scan only lets doubled braces through.
            text.push(char::from(b[j]));
            offsets.push(j);
            j += 2;
        } else {
            let end = b[j..close]
                .iter()
                .position(|&c| c == b'{' || c == b'}')
                .map_or(close, |k| j + k);
            text.push_str(&t[j..end]);
            offsets.extend(j..end);
            j = end;
        }
    }
    offsets.push(close);
    parse_param(&text, Offsets::Map(&offsets), open)
}

/// Maps byte offsets in a parameter's unescaped text to template offsets.
#[derive(Clone, Copy)]
enum Offsets<'a> {
    /// The text is the template from this offset on, unchanged.
    From(usize),
    /// Template offset of each byte of the text, plus one for the end.
    Map(&'a [usize]),
}

/// Index of the `)` closing a constraint argument list that starts at `from`
/// (just after the `(`); nested parentheses are balanced and `\` escapes.
fn find_close(text: &str, from: usize) -> Option<usize> {
    let b = text.as_bytes();
    let mut depth = 1usize;
    let mut i = from;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 1,
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Whether `s` is empty or only whitespace.
fn is_blank(s: &str) -> bool {
    match s.as_bytes().first() {
        Some(c) if c.is_ascii() && !c.is_ascii_whitespace() => false,
        _ => s.trim().is_empty(),
    }
}

fn parse_param(text: &str, offsets: Offsets<'_>, open: usize) -> Result<Param, RouteError> {
    let at = |k: usize| match offsets {
        Offsets::From(base) if k <= text.len() => base + k,
        Offsets::From(_) => open,
        Offsets::Map(m) => m.get(k).copied().unwrap_or(open),
    };
    let b = text.as_bytes();
    let (catch_all, mut p) = if text.starts_with("**") {
        (true, 2)
    } else if text.starts_with('*') {
        (true, 1)
    } else {
        (false, 0)
    };
    let name_end = b[p..]
        .iter()
        .position(|&c| matches!(c, b':' | b'=' | b'?'))
        .map_or(text.len(), |k| k + p);
    let name = &text[p..name_end];
    if is_blank(name) {
        return Err(RouteError::new(
            at(p),
            "empty parameter name: a parameter must be written '{name}'",
        ));
    }
    if let Some(k) = name
        .bytes()
        .position(|c| matches!(c, b'*' | b'{' | b'}' | b'/'))
    {
        return Err(RouteError::new(
            at(p + k),
            format!(
                "invalid parameter name '{name}': it may not contain '{{', '}}', '/', and '*' is only allowed at the start of a catch-all"
            ),
        ));
    }
    p = name_end;
    let mut constraints = Constraints::None;
    while b.get(p) == Some(&b':') {
        let cs = p + 1;
        let ce = b[cs..]
            .iter()
            .position(|&c| matches!(c, b'(' | b':' | b'=' | b'?'))
            .map_or(text.len(), |k| k + cs);
        let cname = &text[cs..ce];
        if is_blank(cname) {
            return Err(RouteError::new(
                at(p),
                format!("empty constraint name after ':' in parameter '{name}'"),
            ));
        }
        let mut args = None;
        p = ce;
        if b.get(ce) == Some(&b'(') {
            let close = find_close(text, ce + 1).ok_or_else(|| {
                RouteError::new(
                    at(ce),
                    format!("unbalanced '(' in the arguments of constraint '{cname}'"),
                )
            })?;
            args = Some(&text[ce + 1..close]);
            p = close + 1;
            if !matches!(b.get(p), None | Some(b':' | b'=' | b'?')) {
                return Err(RouteError::new(
                    at(p),
                    format!("unexpected text after the arguments of constraint '{cname}'"),
                ));
            }
        }
        let c = Constraint::parse(cname, args)
            .map_err(|m| RouteError::new(at(cs), format!("{m} (parameter '{name}')")))?;
        constraints.push(c);
    }
    let mut marked_optional = false;
    let mut default = None;
    match b.get(p) {
        None => {}
        Some(b'?') => {
            if p + 1 != b.len() {
                return Err(RouteError::new(
                    at(p),
                    format!(
                        "in parameter '{name}', '?' must be its last character (an optional parameter cannot have a default value)"
                    ),
                ));
            }
            marked_optional = true;
        }
        Some(b'=') => {
            let d = &text[p + 1..];
            if d.ends_with('?') {
                return Err(RouteError::new(
                    at(text.len() - 1),
                    format!("optional parameter '{name}' cannot have a default value"),
                ));
            }
            if d.is_empty() {
                return Err(RouteError::new(
                    at(p),
                    format!("empty default value for parameter '{name}'"),
                ));
            }
            default = Some(d.to_owned());
        }
        Some(_) => {
            return Err(RouteError::new(
                at(p),
                format!("unexpected character in parameter '{name}'"),
            ));
        }
    }
    if catch_all && marked_optional {
        return Err(RouteError::new(
            open,
            format!(
                "catch-all parameter '{name}' cannot be marked optional (it already matches nothing)"
            ),
        ));
    }
    let mode = if catch_all {
        Mode::CatchAll
    } else if marked_optional {
        Mode::Optional
    } else {
        Mode::Required
    };
    Ok(Param {
        name: Arc::from(name),
        mode,
        marked_optional,
        default,
        constraints,
        offset: open,
    })
}

fn validate_complex(parts: &[Part]) -> Result<(), RouteError> {
    for pair in parts.windows(2) {
        if let [Part::Param(_), Part::Param(p)] = pair {
            return Err(RouteError::new(
                p.offset,
                format!(
                    "parameter '{}' directly follows another parameter; separate them with a literal, e.g. '{{a}}.{{b}}'",
                    p.name
                ),
            ));
        }
    }
    let last = parts.len() - 1;
    for (k, part) in parts.iter().enumerate() {
        let Part::Param(p) = part else { continue };
        if p.mode == Mode::CatchAll {
            return Err(RouteError::new(
                p.offset,
                format!(
                    "catch-all parameter '{}' must be a whole segment, not part of a segment with literals",
                    p.name
                ),
            ));
        }
        if p.default.is_some() {
            return Err(RouteError::new(
                p.offset,
                format!(
                    "parameter '{}' is part of a complex segment and cannot have a default value",
                    p.name
                ),
            ));
        }
        if p.marked_optional {
            if k != last {
                return Err(RouteError::new(
                    p.offset,
                    format!(
                        "optional parameter '{}' must be the last part of its segment",
                        p.name
                    ),
                ));
            }
            let dot = matches!(parts.get(k.wrapping_sub(1)), Some(Part::Literal(l)) if l == ".");
            if !dot || parts.len() < 3 {
                return Err(RouteError::new(
                    p.offset,
                    format!(
                        "optional parameter '{}' in a complex segment must be preceded by '.' and something before it, as in '{{name}}.{{ext?}}'",
                        p.name
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Whether two parameter names are equal once lower-cased.
fn same_name(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() {
        a.eq_ignore_ascii_case(b)
    } else {
        a.to_lowercase() == b.to_lowercase()
    }
}

fn validate_template(segments: &mut [Segment]) -> Result<(), RouteError> {
    let n = segments.len();
    for k in 0..n {
        let last = k + 1 == n;
        match &segments[k] {
            Segment::Param(p) if p.mode == Mode::CatchAll && !last => {
                return Err(RouteError::new(
                    p.offset,
                    format!(
                        "catch-all parameter '{}' must be the last segment of the template",
                        p.name
                    ),
                ));
            }
            Segment::Param(p)
                if p.marked_optional && !segments[k + 1..].iter().all(Segment::may_be_empty) =>
            {
                return Err(RouteError::new(
                    p.offset,
                    format!(
                        "optional parameter '{}' must be at the end of the template; only optional parameters, parameters with defaults or a catch-all may follow it",
                        p.name
                    ),
                ));
            }
            Segment::Complex(parts) if !last && has_optional_tail(parts) => {
                if let Some(Part::Param(p)) = parts.last() {
                    return Err(RouteError::new(
                        p.offset,
                        format!(
                            "a segment with optional parameter '{}' must be the last segment of the template",
                            p.name
                        ),
                    ));
                }
            }
            _ => {}
        }
    }
    // Parameters with defaults are optional only in the trailing run of
    // segments that may all be omitted.
    let mut start = n;
    while start > 0 && segments[start - 1].may_be_empty() {
        start -= 1;
    }
    for seg in &mut segments[start..] {
        if let Segment::Param(p) = seg
            && p.mode == Mode::Required
            && p.default.is_some()
        {
            p.mode = Mode::Optional;
        }
    }
    let segments = &*segments;
    for (k, p) in params_of(segments).enumerate() {
        if params_of(segments)
            .take(k)
            .any(|q| same_name(&q.name, &p.name))
        {
            return Err(RouteError::new(
                p.offset,
                format!(
                    "duplicate parameter name '{}' (names are compared ignoring case)",
                    p.name
                ),
            ));
        }
        if let Some(d) = &p.default
            && !p.accepts(d)
        {
            return Err(RouteError::new(
                p.offset,
                format!(
                    "default value '{d}' of parameter '{}' does not satisfy its constraints",
                    p.name
                ),
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Matching helpers
// ---------------------------------------------------------------------------

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes `s`; malformed escapes are kept as written and invalid
/// UTF-8 is replaced with U+FFFD.
fn percent_decode(s: &str) -> Cow<'_, str> {
    if !s.as_bytes().contains(&b'%') {
        return Cow::Borrowed(s);
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let (Some(h), Some(l)) = (
                b.get(i + 1).copied().and_then(hex_value),
                b.get(i + 2).copied().and_then(hex_value),
            )
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    match String::from_utf8(out) {
        Ok(s) => Cow::Owned(s),
        Err(e) => Cow::Owned(String::from_utf8_lossy(e.as_bytes()).into_owned()),
    }
}

/// Matches a complex segment right to left: each literal is found at its
/// rightmost position that leaves at least one character for the parameter
/// after it, so the rightmost parameters take as little as possible and the
/// leftmost takes the rest. A trailing `.{x?}` may be left out entirely.
fn match_complex<'s>(
    parts: &[Part],
    seg: &'s str,
    sink: &mut impl FnMut(&Param, &'s str) -> bool,
) -> bool {
    if match_parts(parts, seg, sink) {
        return true;
    }
    has_optional_tail(parts) && match_parts(&parts[..parts.len() - 2], seg, sink)
}

/// Whether a complex segment ends with `.{x?}`.
fn has_optional_tail(parts: &[Part]) -> bool {
    matches!(parts.last(), Some(Part::Param(p)) if p.marked_optional)
}

fn ci_eq(a: &[u8], lit: &str) -> bool {
    a.eq_ignore_ascii_case(lit.as_bytes())
}

fn match_parts<'s>(
    parts: &[Part],
    seg: &'s str,
    sink: &mut impl FnMut(&Param, &'s str) -> bool,
) -> bool {
    let b = seg.as_bytes();
    let mut end = b.len();
    let mut pending: Option<(&Param, usize)> = None;
    for (k, part) in parts.iter().enumerate().rev() {
        match part {
            Part::Param(p) => pending = Some((p, end)),
            Part::Literal(lit) => {
                let l = lit.len();
                match pending.take() {
                    None => {
                        if end < l || !ci_eq(&b[end - l..end], lit) || (k == 0 && end != l) {
                            return false;
                        }
                        end -= l;
                    }
                    Some((p, p_end)) if k == 0 => {
                        if p_end <= l || !ci_eq(&b[..l], lit) {
                            return false;
                        }
                        match seg.get(l..p_end) {
                            Some(v) if sink(p, v) => end = 0,
                            _ => return false,
                        }
                    }
                    Some((p, p_end)) => {
                        if p_end < l + 1 {
                            return false;
                        }
                        let Some(s) = (0..=p_end - 1 - l)
                            .rev()
                            .find(|&s| ci_eq(&b[s..s + l], lit))
                        else {
                            return false;
                        };
                        match seg.get(s + l..p_end) {
                            Some(v) if sink(p, v) => end = s,
                            _ => return false,
                        }
                    }
                }
            }
        }
    }
    match pending {
        Some((p, p_end)) => p_end > 0 && seg.get(..p_end).is_some_and(|v| sink(p, v)),
        None => end == 0,
    }
}

/// The request path split into segments (byte ranges into `text`).
struct Path<'p> {
    text: &'p str,
    segs: &'p [(usize, usize)],
    percent: bool,
}

impl<'p> Path<'p> {
    fn len(&self) -> usize {
        self.segs.len()
    }

    fn seg(&self, i: usize) -> Cow<'p, str> {
        let (s, e) = self.segs[i];
        let raw = &self.text[s..e];
        if self.percent {
            percent_decode(raw)
        } else {
            Cow::Borrowed(raw)
        }
    }

    /// The path from segment `i` to the end, decoded.
    fn rest(&self, i: usize) -> Cow<'p, str> {
        let raw = &self.text[self.segs[i].0..];
        if self.percent {
            percent_decode(raw)
        } else {
            Cow::Borrowed(raw)
        }
    }
}

// ---------------------------------------------------------------------------
// Route parameters
// ---------------------------------------------------------------------------

/// The parameter values of a matched route, in template order.
///
/// Values are percent-decoded and otherwise as they appear in the path
/// (case preserved). Parameters with a default that were absent from the path
/// hold the default; optional parameters without one are simply missing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteParams {
    entries: Vec<(Arc<str>, String)>,
}

impl RouteParams {
    /// The value of parameter `name`, which is compared ignoring case.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(n, _)| {
                n.eq_ignore_ascii_case(name)
                    || (!(n.is_ascii() && name.is_ascii())
                        && n.to_lowercase() == name.to_lowercase())
            })
            .map(|(_, v)| v.as_str())
    }

    /// `(name, value)` pairs in template order; names as written in the
    /// template.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(n, v)| (&**n, v.as_str()))
    }

    /// Number of parameters with a value.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no parameter has a value.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn push(&mut self, name: &Arc<str>, value: String) {
        self.entries.push((Arc::clone(name), value));
    }
}

// ---------------------------------------------------------------------------
// Router
// ---------------------------------------------------------------------------

/// A hash of `s` that ignores ASCII case, eight bytes at a time: equal
/// under `eq_ignore_ascii_case` implies equal hashes.
fn ci_hash(s: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    const ONES: u64 = 0x0101_0101_0101_0101;
    /// Sets bit 0x20 of every byte in `A..=Z`.
    fn lower(x: u64) -> u64 {
        let low = x & LOW7;
        let ge_a = low + ONES * u64::from(0x80 - b'A');
        let gt_z = low + ONES * u64::from(0x80 - b'Z' - 1);
        let upper = ge_a & !gt_z & !x & HIGH;
        x | (upper >> 2)
    }
    fn mix(h: u64, v: u64) -> u64 {
        let m = u128::from(h ^ v) * u128::from(K);
        (m as u64) ^ ((m >> 64) as u64)
    }
    let mut h = (s.len() as u64).wrapping_mul(K);
    let mut chunks = s.chunks_exact(8);
    for c in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(c);
        h = mix(h, lower(u64::from_le_bytes(word)));
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut word = [0u8; 8];
        word[..rest.len()].copy_from_slice(rest);
        h = mix(h, lower(u64::from_le_bytes(word)));
    }
    h
}

/// A literal child of a node: the literal's text is `start..end` of the
/// router's literal arena (as written; compared ignoring ASCII case).
#[derive(Debug)]
struct LitKey {
    start: usize,
    end: usize,
    hash: u64,
    child: usize,
}

/// Literal children of a node: a short list searched linearly, or an
/// open-addressing table keyed by the case-insensitive hash once there are
/// more than a few; lookups never allocate.
#[derive(Debug, Default)]
struct Literals {
    keys: Vec<LitKey>,
    /// Slots hold index + 1 into `keys`; 0 is empty. Length is a power of
    /// two; empty while the keys are few enough to search linearly.
    table: Vec<usize>,
}

impl Literals {
    const LINEAR: usize = 4;

    fn get(&self, arena: &[u8], seg: &[u8]) -> Option<usize> {
        if self.keys.len() <= Self::LINEAR {
            return self
                .keys
                .iter()
                .find(|k| arena[k.start..k.end].eq_ignore_ascii_case(seg))
                .map(|k| k.child);
        }
        let h = ci_hash(seg);
        let mask = self.table.len() - 1;
        let mut i = (h as usize) & mask;
        loop {
            let slot = self.table[i];
            if slot == 0 {
                return None;
            }
            let k = &self.keys[slot - 1];
            if k.hash == h && arena[k.start..k.end].eq_ignore_ascii_case(seg) {
                return Some(k.child);
            }
            i = (i + 1) & mask;
        }
    }

    /// Adds the literal at `start..end` of `arena`.
    fn insert(&mut self, arena: &[u8], start: usize, end: usize, child: usize) {
        self.keys.push(LitKey {
            start,
            end,
            hash: ci_hash(&arena[start..end]),
            child,
        });
        if self.keys.len() <= Self::LINEAR {
            return;
        }
        if self.table.len() < self.keys.len() * 2 {
            let size = (self.keys.len() * 2).next_power_of_two().max(8);
            self.table = vec![0; size];
            for idx in 0..self.keys.len() {
                self.place(idx);
            }
        } else {
            self.place(self.keys.len() - 1);
        }
    }

    fn place(&mut self, idx: usize) {
        let mask = self.table.len() - 1;
        let mut i = (self.keys[idx].hash as usize) & mask;
        while self.table[i] != 0 {
            i = (i + 1) & mask;
        }
        self.table[i] = idx + 1;
    }

    fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[derive(Debug)]
enum Matcher {
    Param {
        mode: Mode,
        constraints: Constraints,
    },
    Complex(Vec<Part>),
}

impl Matcher {
    /// Whether the non-literal segment `seg` has this matcher's shape (same
    /// literals ignoring case, same parameter kinds and constraints, names
    /// ignored), so that it shares its edge.
    fn same_shape(&self, seg: &Segment) -> bool {
        match (self, seg) {
            (Matcher::Param { mode, constraints }, Segment::Param(p)) => {
                *mode == p.mode && constraints.same(&p.constraints)
            }
            (Matcher::Complex(parts), Segment::Complex(other)) => same_parts(parts, other),
            _ => false,
        }
    }
}

#[derive(Debug)]
struct Edge {
    rank: u8,
    matcher: Matcher,
    child: usize,
}

#[derive(Debug, Default)]
struct Node {
    /// The first route whose template ends here.
    terminal: Option<usize>,
    /// Further routes ending here, in registration order.
    more_terminals: Vec<usize>,
    literals: Literals,
    /// Non-literal children, sorted by rank (stable: creation order).
    edges: Vec<Edge>,
}

impl Node {
    /// The first route ending here, in registration order, that satisfies
    /// `pred`.
    fn find_terminal(&self, pred: impl Fn(usize) -> bool) -> Option<usize> {
        match self.terminal {
            Some(r) if pred(r) => Some(r),
            Some(_) => self.more_terminals.iter().copied().find(|&r| pred(r)),
            None => None,
        }
    }

    /// Routes whose template ends here, in registration order.
    fn terminals(&self) -> impl Iterator<Item = usize> + '_ {
        self.terminal
            .into_iter()
            .chain(self.more_terminals.iter().copied())
    }
}

struct Entry<T> {
    template: RouteTemplate,
    methods: MethodSet,
    value: T,
}

fn debug_entries<T>(f: &mut fmt::Formatter<'_>, name: &str, entries: &[Entry<T>]) -> fmt::Result {
    struct Routes<'a, T>(&'a [Entry<T>]);
    impl<T> fmt::Debug for Routes<'_, T> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            let mut m = f.debug_map();
            for (i, e) in self.0.iter().enumerate() {
                m.entry(&i, &format_args!("{} [{}]", e.template.as_str(), e.methods));
            }
            m.finish()
        }
    }
    f.debug_struct(name)
        .field("routes", &Routes(entries))
        .finish()
}

/// Collects routes and compiles them into a [`Router`].
pub struct RouterBuilder<T> {
    nodes: Vec<Node>,
    routes: Vec<Entry<T>>,
    /// The text of every literal child, back to back.
    arena: Vec<u8>,
}

impl<T> Default for RouterBuilder<T> {
    fn default() -> Self {
        RouterBuilder {
            nodes: vec![Node::default()],
            routes: Vec::new(),
            arena: Vec::new(),
        }
    }
}

impl<T> fmt::Debug for RouterBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_entries(f, "RouterBuilder", &self.routes)
    }
}

impl<T> RouterBuilder<T> {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of routes added so far.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// Whether no route has been added.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Adds a route for `methods` (the empty set means every method) and
    /// returns its index, which counts successfully added routes from 0.
    ///
    /// # Errors
    ///
    /// [`RouteConflict`] when an existing route has the same template shape
    /// (literals compared ignoring case, parameters by kind and constraints,
    /// names ignored) and a method in common; nothing is added then.
    pub fn add(
        &mut self,
        template: RouteTemplate,
        methods: MethodSet,
        value: T,
    ) -> Result<usize, RouteConflict> {
        let methods = if methods.is_empty() {
            MethodSet::ALL
        } else {
            methods
        };
        let mut node = 0;
        let text = template.as_str();
        for seg in template.segments() {
            node = match seg {
                Segment::Literal(l) => self.literal_child(node, l.bytes(text)),
                _ => self.edge_child(node, seg),
            };
        }
        if let Some(existing) =
            self.nodes[node].find_terminal(|r| self.routes[r].methods.intersects(methods))
        {
            return Err(RouteConflict { existing });
        }
        let index = self.routes.len();
        let target = &mut self.nodes[node];
        if target.terminal.is_none() {
            target.terminal = Some(index);
        } else {
            target.more_terminals.push(index);
        }
        self.routes.push(Entry {
            template,
            methods,
            value,
        });
        Ok(index)
    }

    fn new_node(&mut self) -> usize {
        self.nodes.push(Node::default());
        self.nodes.len() - 1
    }

    fn literal_child(&mut self, node: usize, literal: &[u8]) -> usize {
        if let Some(child) = self.nodes[node].literals.get(&self.arena, literal) {
            return child;
        }
        let child = self.new_node();
        let start = self.arena.len();
        self.arena.extend_from_slice(literal);
        self.nodes[node]
            .literals
            .insert(&self.arena, start, self.arena.len(), child);
        child
    }

    fn edge_child(&mut self, node: usize, seg: &Segment) -> usize {
        if let Some(e) = self.nodes[node]
            .edges
            .iter()
            .find(|e| e.matcher.same_shape(seg))
        {
            return e.child;
        }
        let child = self.new_node();
        let rank = seg.rank();
        let matcher = match seg {
            Segment::Param(p) => Matcher::Param {
                mode: p.mode,
                constraints: p.constraints.clone(),
            },
            Segment::Complex(parts) => Matcher::Complex(parts.clone()),
            Segment::Literal(_) => unreachable!("literals are not edges"),
        };
        let edges = &mut self.nodes[node].edges;
        let at = edges.partition_point(|e| e.rank <= rank);
        edges.insert(
            at,
            Edge {
                rank,
                matcher,
                child,
            },
        );
        child
    }

    /// Compiles the routes into a [`Router`].
    pub fn build(self) -> Router<T> {
        Router {
            nodes: self.nodes,
            routes: self.routes,
            arena: self.arena,
        }
    }
}

/// The result of [`Router::find`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteMatch<'r, T> {
    /// The most specific route matching both path and method.
    Matched {
        /// The value the route was registered with.
        value: &'r T,
        /// The route's parameter values.
        params: RouteParams,
    },
    /// Some route matches the path, but none accepts the method.
    MethodNotAllowed {
        /// Union of the methods of the routes matching the path.
        allowed: MethodSet,
    },
    /// No route matches the path.
    NotFound,
}

/// A compiled set of routes; see the [module documentation](self) for the
/// matching rules.
pub struct Router<T> {
    nodes: Vec<Node>,
    routes: Vec<Entry<T>>,
    /// The text of every literal child, back to back.
    arena: Vec<u8>,
}

impl<T> Default for Router<T> {
    fn default() -> Self {
        RouterBuilder::new().build()
    }
}

impl<T> fmt::Debug for Router<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_entries(f, "Router", &self.routes)
    }
}

/// Segments kept on the stack before `find` falls back to a heap vector.
const STACK_SEGMENTS: usize = 16;

impl<T> Router<T> {
    /// Number of routes.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// Whether the router has no routes.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The value of the route with index `index`, as returned by
    /// [`RouterBuilder::add`].
    pub fn get(&self, index: usize) -> Option<&T> {
        self.routes.get(index).map(|e| &e.value)
    }

    /// Finds the most specific route matching `method` and `path`.
    ///
    /// `path` is the request path without query string, with or without a
    /// leading `/`; one trailing `/` is ignored. Segments are percent-decoded
    /// before they are compared or captured.
    pub fn find(&self, method: Method, path: &str) -> RouteMatch<'_, T> {
        let trimmed = path.strip_prefix('/').unwrap_or(path);
        let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
        let ranges = || {
            let mut start = 0;
            trimmed.split('/').map(move |s| {
                let r = (start, start + s.len());
                start += s.len() + 1;
                r
            })
        };
        let mut stack = [(0usize, 0usize); STACK_SEGMENTS];
        let heap: Vec<(usize, usize)>;
        let segs: &[(usize, usize)] = if trimmed.is_empty() {
            &[]
        } else {
            let mut count = 0;
            for r in ranges() {
                if count == STACK_SEGMENTS {
                    count += 1;
                    break;
                }
                stack[count] = r;
                count += 1;
            }
            if count <= STACK_SEGMENTS {
                &stack[..count]
            } else {
                heap = ranges().collect();
                &heap
            }
        };
        let path = Path {
            text: trimmed,
            segs,
            percent: trimmed.as_bytes().contains(&b'%'),
        };
        if let Some(r) = self.search(0, 0, &path, method) {
            let entry = &self.routes[r];
            return RouteMatch::Matched {
                value: &entry.value,
                params: capture(&entry.template, &path),
            };
        }
        let mut allowed = MethodSet::EMPTY;
        self.collect(0, 0, &path, &mut allowed);
        if allowed.is_empty() {
            RouteMatch::NotFound
        } else {
            RouteMatch::MethodNotAllowed { allowed }
        }
    }

    /// Whether `a` is more specific than `b` (then earlier registration).
    fn better(&self, a: usize, b: usize) -> bool {
        let (ka, kb) = (self.routes[a].template.key(), self.routes[b].template.key());
        ka.cmp(kb).then(a.cmp(&b)).is_lt()
    }

    /// The most specific route below `node` matching the path from segment
    /// `pos` and accepting `method`.
    fn search(&self, node: usize, pos: usize, path: &Path<'_>, method: Method) -> Option<usize> {
        let node = &self.nodes[node];
        if pos == path.len() {
            if let Some(r) = node.find_terminal(|r| self.routes[r].methods.contains(method)) {
                return Some(r);
            }
        } else if !node.literals.is_empty()
            && let Some(child) = node.literals.get(&self.arena, path.seg(pos).as_bytes())
            && let Some(r) = self.search(child, pos + 1, path, method)
        {
            return Some(r);
        }
        let mut i = 0;
        while i < node.edges.len() {
            let rank = node.edges[i].rank;
            let mut best: Option<usize> = None;
            while i < node.edges.len() && node.edges[i].rank == rank {
                let edge = &node.edges[i];
                if let Some(next) = step(&edge.matcher, pos, path)
                    && let Some(r) = self.search(edge.child, next, path, method)
                {
                    best = Some(match best {
                        Some(b) if !self.better(r, b) => b,
                        _ => r,
                    });
                }
                i += 1;
            }
            if best.is_some() {
                return best;
            }
        }
        None
    }

    /// Unions into `allowed` the methods of every route below `node` matching
    /// the path from segment `pos`.
    fn collect(&self, node: usize, pos: usize, path: &Path<'_>, allowed: &mut MethodSet) {
        let node = &self.nodes[node];
        if pos == path.len() {
            for r in node.terminals() {
                *allowed = allowed.union(self.routes[r].methods);
            }
        } else if let Some(child) = node.literals.get(&self.arena, path.seg(pos).as_bytes()) {
            self.collect(child, pos + 1, path, allowed);
        }
        for edge in &node.edges {
            if let Some(next) = step(&edge.matcher, pos, path) {
                self.collect(edge.child, next, path, allowed);
            }
        }
    }
}

/// Tries one non-literal edge at segment `pos`; returns the position after it.
fn step(matcher: &Matcher, pos: usize, path: &Path<'_>) -> Option<usize> {
    let n = path.len();
    let accepts = |cs: &Constraints, v: &str| cs.as_slice().iter().all(|c| c.accepts(v));
    match matcher {
        Matcher::Param {
            mode: Mode::CatchAll,
            constraints,
        } => {
            if pos < n && !constraints.is_empty() {
                let rest = path.rest(pos);
                if !rest.is_empty() && !accepts(constraints, &rest) {
                    return None;
                }
            }
            Some(n)
        }
        Matcher::Param { mode, constraints } => {
            if pos == n {
                return (*mode == Mode::Optional).then_some(n);
            }
            let v = path.seg(pos);
            (!v.is_empty() && accepts(constraints, &v)).then_some(pos + 1)
        }
        Matcher::Complex(parts) => {
            if pos == n {
                return None;
            }
            let v = path.seg(pos);
            (!v.is_empty() && match_complex(parts, &v, &mut |p, v| p.accepts(v))).then_some(pos + 1)
        }
    }
}

/// Extracts the parameter values of `template`, known to match `path`.
fn capture(template: &RouteTemplate, path: &Path<'_>) -> RouteParams {
    let mut out = RouteParams::default();
    let n = path.len();
    let mut pos = 0;
    for seg in template.segments() {
        match seg {
            Segment::Literal(_) => pos += 1,
            Segment::Param(p) => {
                let value = match p.mode {
                    Mode::CatchAll if pos < n => {
                        let rest = path.rest(pos);
                        pos = n;
                        Some(rest.into_owned()).filter(|r| !r.is_empty())
                    }
                    Mode::Required | Mode::Optional if pos < n => {
                        pos += 1;
                        Some(path.seg(pos - 1).into_owned())
                    }
                    _ => None,
                };
                if let Some(v) = value.or_else(|| p.default.clone()) {
                    out.push(&p.name, v);
                }
            }
            Segment::Complex(parts) => {
                if pos < n {
                    let v = path.seg(pos);
                    let mut found: Vec<(Arc<str>, String)> = Vec::new();
                    let mut record = |p: &Param, v: &str| {
                        found.push((Arc::clone(&p.name), v.to_owned()));
                        true
                    };
                    if !match_parts(parts, &v, &mut record) {
                        found.clear();
                        if has_optional_tail(parts) {
                            let mut record = |p: &Param, v: &str| {
                                found.push((Arc::clone(&p.name), v.to_owned()));
                                true
                            };
                            match_parts(&parts[..parts.len() - 2], &v, &mut record);
                        }
                    }
                    // Captures arrive right to left.
                    for (name, value) in found.into_iter().rev() {
                        out.entries.push((name, value));
                    }
                }
                pos += 1;
            }
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn t(s: &str) -> RouteTemplate {
        RouteTemplate::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e} at {}", e.offset))
    }

    fn err(s: &str) -> RouteError {
        match RouteTemplate::parse(s) {
            Ok(_) => panic!("{s:?} should not parse"),
            Err(e) => e,
        }
    }

    fn router(routes: &[(&str, &[Method])]) -> Router<usize> {
        let mut b = RouterBuilder::new();
        for (i, (tpl, methods)) in routes.iter().enumerate() {
            let got = b.add(t(tpl), methods.iter().copied().collect(), i).unwrap();
            assert_eq!(got, i);
        }
        b.build()
    }

    /// Index of the matched route and its params as `name=value` pairs.
    fn hit(r: &Router<usize>, method: Method, path: &str) -> Option<(usize, Vec<String>)> {
        match r.find(method, path) {
            RouteMatch::Matched { value, params } => Some((
                *value,
                params.iter().map(|(n, v)| format!("{n}={v}")).collect(),
            )),
            _ => None,
        }
    }

    fn idx(r: &Router<usize>, path: &str) -> Option<usize> {
        hit(r, Method::Get, path).map(|h| h.0)
    }

    fn accepts(constraint: &str, value: &str) -> bool {
        let r = router(&[(&format!("{{v:{constraint}}}"), &[])]);
        idx(&r, &format!("/{value}")).is_some()
    }

    // ----- methods -----

    #[test]
    fn methods_parse_and_display() {
        assert_eq!("get".parse::<Method>().unwrap(), Method::Get);
        assert_eq!("Options".parse::<Method>().unwrap(), Method::Options);
        assert_eq!(
            "FETCH".parse::<Method>(),
            Err(UnknownMethod("FETCH".into()))
        );
        assert!(
            UnknownMethod("x".into())
                .to_string()
                .contains("unknown HTTP method 'x'")
        );
        for m in Method::ALL {
            assert_eq!(m.as_str().parse::<Method>().unwrap(), m);
            assert_eq!(m.to_string(), m.as_str());
        }
    }

    #[test]
    fn method_sets() {
        let s: MethodSet = [Method::Post, Method::Get].into_iter().collect();
        assert_eq!(s.to_string(), "GET, POST");
        assert_eq!(format!("{s:?}"), "{Get, Post}");
        assert!(s.contains(Method::Get) && !s.contains(Method::Put));
        assert!(s.intersects(MethodSet::from(Method::Post)));
        assert!(!s.intersects(MethodSet::EMPTY.with(Method::Put)));
        assert_eq!(s.union(Method::Put.into()).iter().count(), 3);
        assert!(MethodSet::default().is_empty());
        assert!(MethodSet::ALL.is_all() && !s.is_all());
        let mut m = MethodSet::EMPTY;
        for x in Method::ALL {
            m.insert(x);
        }
        assert_eq!(m, MethodSet::ALL);
        assert_eq!(MethodSet::EMPTY.to_string(), "");
    }

    // ----- parsing -----

    #[test]
    fn parses_forms() {
        assert_eq!(t("").segments().len(), 0);
        assert_eq!(t("/").segments().len(), 0);
        assert_eq!(t("/a/b/").segments().len(), 2);
        let tpl = t("api/products/{category:alpha}/{id:int?}");
        assert_eq!(tpl.as_str(), "api/products/{category:alpha}/{id:int?}");
        assert_eq!(tpl.to_string(), tpl.as_str());
        assert_eq!(
            tpl.parameter_names().collect::<Vec<_>>(),
            ["category", "id"]
        );
        assert_eq!(tpl.key().collect::<Vec<_>>(), [0, 0, 2, 4]);
        assert_eq!(t("{*rest}").key().collect::<Vec<_>>(), [6]);
        assert_eq!(t("{**rest}").key().collect::<Vec<_>>(), [6]);
        assert_eq!(t("x/{id=5}").key().collect::<Vec<_>>(), [0, 5]);
        assert_eq!(t("{id=5}/x").key().collect::<Vec<_>>(), [3, 0]);
        assert_eq!(t("{a}.{b}").key().collect::<Vec<_>>(), [1]);
        assert_eq!(
            t("files/{name}.{ext?}")
                .parameter_names()
                .collect::<Vec<_>>(),
            ["name", "ext"]
        );
        assert_eq!(
            t("{x:int:min(1)}/{y:regex(^a(b|c)$)}")
                .parameter_names()
                .collect::<Vec<_>>(),
            ["x", "y"]
        );
        assert_eq!(t("{{lit}}").segments().len(), 1);
        let parsed: RouteTemplate = "a/{b}".parse().unwrap();
        assert_eq!(parsed, t("a/{b}"));
        assert_eq!(format!("{parsed:?}"), "RouteTemplate(\"a/{b}\")");
    }

    #[test]
    fn parse_errors_have_messages_and_offsets() {
        let cases: &[(&str, usize, &str)] = &[
            ("a/{id", 2, "unbalanced '{'"),
            ("a/id}", 4, "unbalanced '}'"),
            ("a/{i{d}", 4, "unexpected '{'"),
            ("a//b", 2, "empty segment"),
            ("//", 1, "empty segment"),
            ("a/{}", 3, "empty parameter name"),
            ("a/{:int}", 3, "empty parameter name"),
            ("a/{?}", 3, "empty parameter name"),
            ("{a*b}", 2, "invalid parameter name"),
            ("{a}/{A}", 4, "duplicate parameter name"),
            ("{a}/{b?}/c", 4, "optional parameter 'b' must be at the end"),
            ("{a?}/{b}", 0, "optional parameter 'a'"),
            ("{*a}/b", 0, "catch-all parameter 'a' must be the last"),
            ("{*a?}", 0, "cannot be marked optional"),
            ("{a?=5}", 2, "'?' must be its last"),
            ("{a=5?}", 4, "cannot have a default"),
            ("{a=}", 2, "empty default"),
            ("{a:foo}", 3, "unknown route constraint 'foo'"),
            ("{a:}", 2, "empty constraint name"),
            ("{a:minlength(x)}", 3, "invalid argument 'x'"),
            ("{a:minlength}", 3, "requires arguments"),
            ("{a:range(5)}", 3, "exactly two arguments"),
            ("{a:range(5,1)}", 3, "greater than the maximum"),
            ("{a:length(5,1)}", 3, "greater than the maximum"),
            ("{a:length(1,2,3)}", 3, "one or two"),
            ("{a:int(3)}", 3, "takes no arguments"),
            ("{a:regex(()}", 8, "unbalanced '('"),
            ("{a:regex([)}", 3, "invalid regex"),
            ("{a:regex()}", 3, "requires a pattern"),
            ("{a:int=x}", 0, "does not satisfy"),
            ("{a}{b}", 3, "directly follows another parameter"),
            ("x{*a}", 1, "must be a whole segment"),
            ("{a=1}.x", 0, "cannot have a default"),
            ("{a?}.x", 0, "must be the last part"),
            ("{a}-{b?}", 4, "preceded by '.'"),
            (".{b?}", 1, "preceded by '.'"),
            ("{a}.{b?}/c", 4, "must be the last segment"),
            ("a?b", 1, "'?' is not allowed"),
        ];
        for &(tpl, offset, msg) in cases {
            let e = err(tpl);
            assert!(
                e.message.contains(msg),
                "{tpl:?}: message {:?} lacks {msg:?}",
                e.message
            );
            assert_eq!(e.offset, offset, "{tpl:?}: {}", e.message);
            assert_eq!(e.to_string(), e.message);
        }
    }

    #[test]
    fn error_offsets_inside_escaped_params() {
        // `{{` inside a parameter maps back to template offsets.
        let e = err("ab/{x:regex(a{{2}}):nope}");
        assert_eq!(&"ab/{x:regex(a{{2}}):nope}"[e.offset..e.offset + 4], "nope");
    }

    #[test]
    fn escaped_braces_and_regex_braces() {
        let r = router(&[("a{{b}}", &[]), ("n/{v:regex(^\\d{{3}}$)}", &[])]);
        assert_eq!(idx(&r, "/a{b}"), Some(0));
        assert_eq!(idx(&r, "/n/123"), Some(1));
        assert_eq!(idx(&r, "/n/1234"), None);
    }

    // ----- constraints -----

    #[test]
    fn constraint_int_long() {
        for v in ["0", "42", "-7", "+7", "2147483647", "-2147483648"] {
            assert!(accepts("int", v), "{v}");
        }
        for v in ["2147483648", "4x", "1.5", "abc", "%20"] {
            assert!(!accepts("int", v), "{v}");
        }
        assert!(accepts("long", "9223372036854775807"));
        assert!(!accepts("long", "9223372036854775808"));
        assert!(!accepts("long", "x1"));
    }

    #[test]
    fn constraint_bool_guid_alpha() {
        for v in ["true", "FALSE", "True"] {
            assert!(accepts("bool", v), "{v}");
        }
        for v in ["yes", "1", "tru"] {
            assert!(!accepts("bool", v), "{v}");
        }
        for v in [
            "0f8fad5b-d9cb-469f-a165-70867728950e",
            "0F8FAD5BD9CB469FA16570867728950E",
            "%7B0f8fad5b-d9cb-469f-a165-70867728950e%7D",
            "(0f8fad5b-d9cb-469f-a165-70867728950e)",
        ] {
            assert!(accepts("guid", v), "{v}");
        }
        for v in [
            "0f8fad5b-d9cb-469f-a165-70867728950",
            "0f8fad5bd9cb-469f-a165-70867728950ee",
            "zf8fad5b-d9cb-469f-a165-70867728950e",
            "{0f8fad5b-d9cb-469f-a165-70867728950e)",
        ] {
            assert!(!accepts("guid", v), "{v}");
        }
        assert!(accepts("alpha", "abcXYZ"));
        assert!(!accepts("alpha", "abc1"));
        assert!(!accepts("alpha", "%C3%A9t%C3%A9"));
    }

    #[test]
    fn constraint_double_decimal() {
        for v in [
            "1",
            "1.5",
            "-1.5e10",
            ".5",
            "1.",
            "1,000.25",
            "NaN",
            "-Infinity",
            "1E-3",
        ] {
            assert!(accepts("double", v), "{v}");
        }
        for v in ["abc", "1e", "1.2.3", ",1", "e5", "inf", "-"] {
            assert!(!accepts("double", v), "{v}");
        }
        for v in [
            "1",
            "-1.25",
            "1,000",
            "79228162514264337593543950335",
            "0.0000001",
        ] {
            assert!(accepts("decimal", v), "{v}");
        }
        for v in ["1e5", "79228162514264337593543950336", "NaN", "x"] {
            assert!(!accepts("decimal", v), "{v}");
        }
    }

    #[test]
    fn constraint_datetime() {
        for v in [
            "2024-01-31",
            "2024-01-31T10:20:30",
            "2024-01-31T10:20:30.123Z",
            "2024-01-31T10:20:30%2B02:00",
            "2024-01-31%2010:20",
            "01%2F31%2F2024",
        ] {
            assert!(accepts("datetime", v), "{v}");
        }
        for v in ["2024-13-01", "2024-02-30", "yesterday", "10:20"] {
            assert!(!accepts("datetime", v), "{v}");
        }
    }

    #[test]
    fn constraint_lengths_and_ranges() {
        assert!(accepts("minlength(3)", "abc") && !accepts("minlength(3)", "ab"));
        assert!(accepts("maxlength(3)", "abc") && !accepts("maxlength(3)", "abcd"));
        assert!(accepts("length(3)", "abc") && !accepts("length(3)", "abcd"));
        assert!(accepts("length(2,3)", "ab") && accepts("length(2,3)", "abc"));
        assert!(!accepts("length(2,3)", "a") && !accepts("length(2,3)", "abcd"));
        // UTF-16 length, as .NET measures it: "é" is one unit.
        assert!(accepts("length(1)", "%C3%A9"));
        assert!(accepts("min(10)", "10") && !accepts("min(10)", "9"));
        assert!(!accepts("min(10)", "ten"));
        assert!(accepts("max(10)", "-5") && !accepts("max(10)", "11"));
        assert!(accepts("range(1,5)", "1") && accepts("range(1,5)", "5"));
        assert!(!accepts("range(1,5)", "0") && !accepts("range(1,5)", "6"));
        assert!(accepts("required", "x"));
        assert!(accepts("int:min(1)", "3") && !accepts("int:min(1)", "0"));
    }

    #[test]
    fn constraint_regex_is_unanchored_and_case_insensitive() {
        assert!(accepts("regex(b)", "abc"));
        assert!(accepts("regex(^ABC$)", "abc"));
        assert!(!accepts("regex(^ab$)", "abc"));
        assert!(accepts("regex(^[a-z]{{2}}\\d+$)", "Ab12"));
        assert!(!accepts("regex(^[a-z]{{2}}\\d+$)", "A12"));
        assert!(accepts("regex(^(x|y):z$)", "x:z"));
        assert!(accepts("REGEX(a)", "a"));
        assert!(accepts("INT", "1"));
    }

    // ----- matching -----

    #[test]
    fn literals_case_insensitive_and_params_keep_case() {
        let r = router(&[("api/Products/{name}", &[])]);
        assert_eq!(
            hit(&r, Method::Get, "/API/products/MixedCase"),
            Some((0, vec!["name=MixedCase".into()]))
        );
        assert_eq!(idx(&r, "api/products/x"), Some(0));
        assert_eq!(idx(&r, "/api/products"), None);
        assert_eq!(idx(&r, "/api/products/x/y"), None);
    }

    #[test]
    fn trailing_slash_and_empty_segments() {
        let r = router(&[("a/{b}", &[]), ("c/{*rest}", &[])]);
        assert_eq!(idx(&r, "/a/x/"), Some(0));
        assert_eq!(idx(&r, "/a//"), None);
        assert_eq!(idx(&r, "/a/"), None);
        assert_eq!(
            hit(&r, Method::Get, "/c/x//y/"),
            Some((1, vec!["rest=x//y".into()]))
        );
        let root = router(&[("", &[])]);
        assert_eq!(idx(&root, "/"), Some(0));
        assert_eq!(idx(&root, ""), Some(0));
        assert_eq!(idx(&root, "/x"), None);
    }

    #[test]
    fn percent_decoding() {
        let r = router(&[("files/{name}", &[]), ("hello world", &[])]);
        assert_eq!(
            hit(&r, Method::Get, "/files/a%20b%2Fc"),
            Some((0, vec!["name=a b/c".into()]))
        );
        assert_eq!(idx(&r, "/hello%20WORLD"), Some(1));
        assert_eq!(
            hit(&r, Method::Get, "/files/100%"),
            Some((0, vec!["name=100%".into()]))
        );
        assert_eq!(
            hit(&r, Method::Get, "/files/%zz%4"),
            Some((0, vec!["name=%zz%4".into()]))
        );
        assert_eq!(
            hit(&r, Method::Get, "/files/%C3%A9"),
            Some((0, vec!["name=é".into()]))
        );
    }

    #[test]
    fn optional_defaults_and_catch_all() {
        let r = router(&[
            ("opt/{id?}", &[]),
            ("def/{id=5}", &[]),
            ("mvc/{controller=Home}/{action=Index}/{id?}", &[]),
            ("all/{*path}", &[]),
            ("alldef/{*path=index.html}", &[]),
        ]);
        assert_eq!(hit(&r, Method::Get, "/opt"), Some((0, vec![])));
        assert_eq!(
            hit(&r, Method::Get, "/opt/7"),
            Some((0, vec!["id=7".into()]))
        );
        assert_eq!(hit(&r, Method::Get, "/def"), Some((1, vec!["id=5".into()])));
        assert_eq!(
            hit(&r, Method::Get, "/def/9"),
            Some((1, vec!["id=9".into()]))
        );
        assert_eq!(
            hit(&r, Method::Get, "/mvc"),
            Some((2, vec!["controller=Home".into(), "action=Index".into()]))
        );
        assert_eq!(
            hit(&r, Method::Get, "/mvc/Shop/List/3"),
            Some((
                2,
                vec![
                    "controller=Shop".into(),
                    "action=List".into(),
                    "id=3".into()
                ]
            ))
        );
        assert_eq!(hit(&r, Method::Get, "/all"), Some((3, vec![])));
        assert_eq!(
            hit(&r, Method::Get, "/all/a/b%20c/d"),
            Some((3, vec!["path=a/b c/d".into()]))
        );
        assert_eq!(
            hit(&r, Method::Get, "/alldef"),
            Some((4, vec!["path=index.html".into()]))
        );
        // A default in the middle does not make the parameter optional.
        let mid = router(&[("{a=1}/b", &[])]);
        assert_eq!(idx(&mid, "/b"), None);
        assert_eq!(
            hit(&mid, Method::Get, "/x/b"),
            Some((0, vec!["a=x".into()]))
        );
    }

    #[test]
    fn optional_constrained_parameter() {
        let r = router(&[("p/{id:int?}", &[])]);
        assert_eq!(idx(&r, "/p"), Some(0));
        assert_eq!(idx(&r, "/p/3"), Some(0));
        assert_eq!(idx(&r, "/p/x"), None);
    }

    #[test]
    fn complex_segments() {
        let r = router(&[
            ("files/{name}.{ext?}", &[]),
            ("f/file{id:int}.txt", &[]),
            ("s/{a}abc{b}", &[]),
            ("d/{a}-{b}-{c}", &[]),
        ]);
        assert_eq!(
            hit(&r, Method::Get, "/files/app.config.xml"),
            Some((0, vec!["name=app.config".into(), "ext=xml".into()]))
        );
        assert_eq!(
            hit(&r, Method::Get, "/files/readme"),
            Some((0, vec!["name=readme".into()]))
        );
        assert_eq!(
            hit(&r, Method::Get, "/f/FILE12.TXT"),
            Some((1, vec!["id=12".into()]))
        );
        assert_eq!(idx(&r, "/f/fileX.txt"), None);
        assert_eq!(idx(&r, "/f/file.txt"), None);
        assert_eq!(
            hit(&r, Method::Get, "/s/abcabcabcoracle"),
            Some((2, vec!["a=abcabc".into(), "b=oracle".into()]))
        );
        assert_eq!(idx(&r, "/s/abcoracle"), None);
        assert_eq!(
            hit(&r, Method::Get, "/d/1-2-3-4"),
            Some((3, vec!["a=1-2".into(), "b=3".into(), "c=4".into()]))
        );
        assert_eq!(idx(&r, "/d/1--3"), None);
    }

    #[test]
    fn specificity_order() {
        let r = router(&[
            ("x/{*rest}", &[]),
            ("x/{a?}", &[]),
            ("x/{a}", &[]),
            ("x/{a:int}", &[]),
            ("x/{a}.json", &[]),
            ("x/lit", &[]),
        ]);
        assert_eq!(idx(&r, "/x/lit"), Some(5));
        assert_eq!(idx(&r, "/x/7.json"), Some(4));
        assert_eq!(idx(&r, "/x/7"), Some(3));
        assert_eq!(idx(&r, "/x/seven"), Some(2));
        assert_eq!(idx(&r, "/x"), Some(1));
        assert_eq!(idx(&r, "/x/a/b"), Some(0));
    }

    #[test]
    fn specificity_is_left_to_right_with_backtracking() {
        let r = router(&[
            ("{a}/b/c", &[]),
            ("a/{b}/d", &[]),
            ("{x:int}/{y}", &[]),
            ("{x:min(1)}/lit", &[]),
        ]);
        // The literal branch dead-ends, fall back to the parameter.
        assert_eq!(idx(&r, "/a/b/c"), Some(0));
        assert_eq!(idx(&r, "/a/b/d"), Some(1));
        // Same rank in the first segment: the second segment decides.
        assert_eq!(idx(&r, "/5/lit"), Some(3));
        assert_eq!(idx(&r, "/5/other"), Some(2));
        // Ties go to the earlier route.
        let tie = router(&[("{a:int}", &[]), ("{a:min(0)}", &[])]);
        assert_eq!(idx(&tie, "/5"), Some(0));
        // A template that ends earlier beats a longer one.
        let short = router(&[("a/{*rest}", &[]), ("a", &[])]);
        assert_eq!(idx(&short, "/a"), Some(1));
    }

    #[test]
    fn method_not_allowed_and_not_found() {
        let r = router(&[
            ("items/{id:int}", &[Method::Get]),
            ("items/{name}", &[Method::Delete, Method::Put]),
            ("items/special", &[Method::Post]),
        ]);
        assert_eq!(idx(&r, "/items/5"), Some(0));
        // A less specific route takes the method the best one lacks.
        assert_eq!(hit(&r, Method::Put, "/items/5").map(|h| h.0), Some(1));
        assert_eq!(
            hit(&r, Method::Post, "/items/special").map(|h| h.0),
            Some(2)
        );
        assert_eq!(
            hit(&r, Method::Delete, "/items/special").map(|h| h.0),
            Some(1)
        );
        match r.find(Method::Post, "/items/5") {
            RouteMatch::MethodNotAllowed { allowed } => {
                assert_eq!(allowed.to_string(), "GET, PUT, DELETE");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(r.find(Method::Get, "/nothing"), RouteMatch::NotFound);
        assert_eq!(r.find(Method::Get, "/items"), RouteMatch::NotFound);
    }

    #[test]
    fn empty_method_set_means_all() {
        let r = router(&[("a", &[])]);
        for m in Method::ALL {
            assert_eq!(hit(&r, m, "/a").map(|h| h.0), Some(0));
        }
    }

    #[test]
    fn conflicts() {
        let get = MethodSet::from(Method::Get);
        let mut b = RouterBuilder::new();
        assert_eq!(b.add(t("items/{id}"), get, 0), Ok(0));
        assert_eq!(
            b.add(t("Items/{key}"), get.with(Method::Post), 1),
            Err(RouteConflict { existing: 0 })
        );
        assert_eq!(b.add(t("Items/{key}"), Method::Post.into(), 1), Ok(1));
        assert_eq!(
            b.add(t("items/{key}"), MethodSet::EMPTY, 2),
            Err(RouteConflict { existing: 0 })
        );
        // Different constraints or kinds do not conflict.
        assert_eq!(b.add(t("items/{id:int}"), get, 2), Ok(2));
        assert_eq!(b.add(t("items/{id?}"), get, 3), Ok(3));
        assert_eq!(
            b.add(t("items/{x=4}"), get, 4),
            Err(RouteConflict { existing: 3 })
        );
        assert_eq!(b.add(t("items/{*x}"), get, 4), Ok(4));
        assert_eq!(
            b.add(t("items/{**y}"), get, 5),
            Err(RouteConflict { existing: 4 })
        );
        // Constraint order does not matter.
        assert_eq!(b.add(t("c/{x:int:min(1)}"), get, 5), Ok(5));
        assert_eq!(
            b.add(t("c/{y:MIN(1):int}"), get, 6),
            Err(RouteConflict { existing: 5 })
        );
        assert_eq!(b.len(), 6);
        assert!(
            RouteConflict { existing: 5 }
                .to_string()
                .contains("route #5")
        );
        let r = b.build();
        assert_eq!(r.len(), 6);
        assert_eq!(r.get(5), Some(&5));
        assert!(format!("{r:?}").contains("items/{id} [GET]"));
    }

    #[test]
    fn params_lookup_is_case_insensitive() {
        let r = router(&[("{Café}/{ID}", &[])]);
        let RouteMatch::Matched { params, .. } = r.find(Method::Get, "/a/b") else {
            panic!("no match")
        };
        assert_eq!(params.get("id"), Some("b"));
        assert_eq!(params.get("CAFÉ"), Some("a"));
        assert_eq!(params.get("nope"), None);
        assert_eq!(params.len(), 2);
        assert!(!params.is_empty());
        assert!(RouteParams::default().is_empty());
    }

    #[test]
    fn empty_router_and_deep_paths() {
        let r: Router<()> = Router::default();
        assert!(r.is_empty());
        assert_eq!(r.find(Method::Get, "/"), RouteMatch::NotFound);
        let deep = "/a".repeat(50);
        let tpl = deep.trim_start_matches('/').to_owned() + "/{x}";
        let r = router(&[(&tpl, &[])]);
        assert_eq!(
            hit(&r, Method::Get, &format!("{deep}/end")),
            Some((0, vec!["x=end".into()]))
        );
    }

    #[test]
    fn segment_counts_around_the_stack_limit() {
        for n in [STACK_SEGMENTS - 1, STACK_SEGMENTS, STACK_SEGMENTS + 1] {
            let tpl = vec!["s"; n - 1].join("/") + "/{last}";
            let r = router(&[(&tpl, &[]), ("{*all}", &[])]);
            let path = "/S".repeat(n - 1) + "/v";
            assert_eq!(
                hit(&r, Method::Get, &path),
                Some((0, vec!["last=v".into()])),
                "{n}"
            );
            let longer = format!("{path}/w");
            assert_eq!(
                hit(&r, Method::Get, &longer),
                Some((1, vec![format!("all={}", &longer[1..])])),
                "{n}"
            );
        }
    }

    #[test]
    fn router_is_send_and_sync() {
        fn assert_send_sync<X: Send + Sync>() {}
        assert_send_sync::<Router<String>>();
        assert_send_sync::<RouterBuilder<String>>();
        assert_send_sync::<RouteTemplate>();
        assert_send_sync::<RouteParams>();
    }

    #[test]
    fn ci_hash_ignores_ascii_case_only() {
        for b in 0..=255u8 {
            let (a, l) = ([b; 11], [b.to_ascii_lowercase(); 11]);
            assert_eq!(ci_hash(&a), ci_hash(&l), "{b}");
            assert_eq!(ci_hash(&a[..3]), ci_hash(&l[..3]), "{b}");
            let other = b | 0x20;
            if other != b && !b.is_ascii_uppercase() {
                assert_ne!(ci_hash(&[b]), ci_hash(&[other]), "{b}");
            }
        }
        assert_eq!(ci_hash(b"Hello-World_2024"), ci_hash(b"hELLO-wORLD_2024"));
        assert_ne!(ci_hash(b"a"), ci_hash(b"b"));
        assert_ne!(ci_hash(b"a"), ci_hash(b"a\0"));
        assert_ne!(ci_hash(b"@"), ci_hash(b"`"));
        assert_ne!(ci_hash(b"["), ci_hash(b"{"));
    }

    #[test]
    fn many_literal_children_use_the_hash_table() {
        let names: Vec<String> = (0..100).map(|i| format!("svc{i}/x")).collect();
        let routes: Vec<(&str, &[Method])> = names.iter().map(|n| (n.as_str(), &[][..])).collect();
        let r = router(&routes);
        for i in 0..100 {
            assert_eq!(idx(&r, &format!("/SVC{i}/X")), Some(i));
        }
        assert_eq!(idx(&r, "/svc100/x"), None);
    }
}
