//! Matching one path against a template's segments: percent-decoding,
//! complex segments, and the parameter values of a match
//! ([`RouteParams`]).

use std::borrow::Cow;
use std::sync::Arc;

use super::template::{Param, Part};

/// Percent-decodes a path segment as ASP.NET Core decodes route values:
/// malformed escapes (`%zz`, a trailing `%4`) are kept as written and
/// invalid UTF-8 is replaced with U+FFFD.
fn percent_decode(s: &str) -> Cow<'_, str> {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy()
}

/// Matches a complex segment right to left: each literal is found at its
/// rightmost position that leaves at least one character for the parameter
/// after it, so the rightmost parameters take as little as possible and the
/// leftmost takes the rest. A trailing `.{x?}` may be left out entirely.
pub(super) fn match_complex<'s>(
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
pub(super) fn has_optional_tail(parts: &[Part]) -> bool {
    matches!(parts.last(), Some(Part::Param(p)) if p.marked_optional)
}

fn ci_eq(a: &[u8], lit: &str) -> bool {
    a.eq_ignore_ascii_case(lit.as_bytes())
}

pub(super) fn match_parts<'s>(
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
pub(super) struct Path<'p> {
    pub(super) text: &'p str,
    pub(super) segs: &'p [(usize, usize)],
    pub(super) percent: bool,
}

impl<'p> Path<'p> {
    pub(super) fn len(&self) -> usize {
        self.segs.len()
    }

    pub(super) fn seg(&self, i: usize) -> Cow<'p, str> {
        let (s, e) = self.segs[i];
        let raw = &self.text[s..e];
        if self.percent {
            percent_decode(raw)
        } else {
            Cow::Borrowed(raw)
        }
    }

    /// The path from segment `i` to the end, decoded.
    pub(super) fn rest(&self, i: usize) -> Cow<'p, str> {
        let raw = &self.text[self.segs[i].0..];
        if self.percent {
            percent_decode(raw)
        } else {
            Cow::Borrowed(raw)
        }
    }
}

/// The parameter values of a matched route, in template order.
///
/// Values are percent-decoded and otherwise as they appear in the path
/// (case preserved). Parameters with a default that were absent from the path
/// hold the default; optional parameters without one are simply missing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteParams {
    pub(super) entries: Vec<(Arc<str>, String)>,
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

    pub(super) fn push(&mut self, name: &Arc<str>, value: String) {
        self.entries.push((Arc::clone(name), value));
    }
}
