//! Parsing and checking a route template: literal, parameter and complex
//! segments, defaults, optional and catch-all parameters, escaped braces.
//!
//! Long because it is one grammar, ASP.NET Core's, read top to bottom:
//! the template's parts, the raw scan, parameters with their defaults and
//! constraints, complex segments and the template-wide rules, each with
//! the error (and its offset) ASP.NET gives; a quarter of it is tests.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use super::constraint::Constraint;
use super::matching::has_optional_tail;

/// Why a route template could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteError {
    /// What is wrong, as a sentence naming the offending part.
    pub message: String,
    /// Byte offset into the template text where the problem was found.
    pub offset: usize,
}

impl RouteError {
    pub(super) fn new(offset: usize, message: impl Into<String>) -> Self {
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mode {
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
pub(super) enum Constraints {
    #[default]
    None,
    One(Constraint),
    Many(Vec<Constraint>),
}

impl Constraints {
    pub(super) fn as_slice(&self) -> &[Constraint] {
        match self {
            Constraints::None => &[],
            Constraints::One(c) => std::slice::from_ref(c),
            Constraints::Many(cs) => cs,
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        matches!(self, Constraints::None)
    }

    pub(super) fn push(&mut self, c: Constraint) {
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
    pub(super) fn same(&self, other: &Constraints) -> bool {
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
pub(super) struct Param {
    pub(super) name: Arc<str>,
    pub(super) mode: Mode,
    /// Written with a trailing `?`.
    pub(super) marked_optional: bool,
    pub(super) default: Option<String>,
    pub(super) constraints: Constraints,
    /// Offset of the opening `{` in the template.
    offset: usize,
}

impl Param {
    pub(super) fn accepts(&self, v: &str) -> bool {
        self.constraints.as_slice().iter().all(|c| c.accepts(v))
    }

    /// Whether the two parameters have the same shape: same kind and
    /// constraints, whatever their names.
    fn same_shape(&self, other: &Param) -> bool {
        self.mode == other.mode && self.constraints.same(&other.constraints)
    }
}

#[derive(Clone, Debug)]
pub(super) enum Part {
    Literal(String),
    Param(Param),
}

/// Whether two complex segments have the same shape: literals equal ignoring
/// ASCII case, parameters of the same shape.
pub(super) fn same_parts(a: &[Part], b: &[Part]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|pair| match pair {
            (Part::Literal(x), Part::Literal(y)) => x.eq_ignore_ascii_case(y),
            (Part::Param(x), Part::Param(y)) => x.same_shape(y),
            _ => false,
        })
}

/// The text of a literal segment.
#[derive(Clone, Debug)]
pub(super) enum Lit {
    /// Byte range of the template text (no escaped braces).
    Span(usize, usize),
    /// Unescaped text, when the segment has `{{` or `}}`.
    Owned(Box<str>),
}

impl Lit {
    pub(super) fn bytes<'a>(&'a self, text: &'a str) -> &'a [u8] {
        match self {
            Lit::Span(s, e) => &text.as_bytes()[*s..*e],
            Lit::Owned(l) => l.as_bytes(),
        }
    }
}

#[derive(Clone, Debug)]
pub(super) enum Segment {
    Literal(Lit),
    Param(Param),
    Complex(Vec<Part>),
}

impl Segment {
    /// Specificity rank: lower is more specific.
    pub(super) fn rank(&self) -> u8 {
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

    pub(super) fn segments(&self) -> &[Segment] {
        &self.inner.segments
    }

    /// Specificity key: one rank per segment, compared left to right.
    pub(super) fn key(&self) -> impl Iterator<Item = u8> + '_ {
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::route::testing::*;

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
}
