//! Paths: the app base, route patterns, percent-decoding, and the checks
//! that keep a path inside the app.

use crate::site::{PRODUCTION, check_name};

/// A request path split at its base.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Target {
    pub(super) app: String,
    pub(super) slot: String,
    pub(super) base: String,
    /// What follows the base, starting with `/` (or empty), still encoded.
    pub(super) rest: String,
}

/// Splits `/apps/{app}[/slots/{slot}]{rest}`; `None` when the path is not
/// under an app or a name is not valid.
pub(super) fn split_base(path: &str) -> Option<Target> {
    let after = path.strip_prefix("/apps/")?;
    let (app, rest) = match after.find('/') {
        Some(i) => (&after[..i], &after[i..]),
        None => (after, ""),
    };
    check_name("app", app).ok()?;
    if let Some(after_slots) = rest.strip_prefix("/slots/") {
        let (slot, rest) = match after_slots.find('/') {
            Some(i) => (&after_slots[..i], &after_slots[i..]),
            None => (after_slots, ""),
        };
        check_name("slot", slot).ok()?;
        return Some(Target {
            app: app.into(),
            slot: slot.into(),
            base: format!("/apps/{app}/slots/{slot}"),
            rest: rest.into(),
        });
    }
    Some(Target {
        app: app.into(),
        slot: PRODUCTION.into(),
        base: format!("/apps/{app}"),
        rest: rest.into(),
    })
}

/// The segments of the rest of a path (still encoded): the leading `/`
/// dropped; a trailing empty segment kept (it matters to `{*rest}`).
pub(super) fn segments(rest: &str) -> Option<Vec<String>> {
    let rest = rest.strip_prefix('/').unwrap_or(rest);
    if rest.is_empty() {
        return Some(Vec::new());
    }
    Some(rest.split('/').map(str::to_string).collect())
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Lit(String),
    /// A segment captured whole, or ending with a literal suffix.
    Param(String, String),
    /// The rest of the path, possibly empty.
    Rest(String),
}

/// A route pattern: `/api/deployments/{id}`, `/{repo}.git/{*rest}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Pattern(Vec<Seg>);

impl Pattern {
    pub(super) fn parse(pattern: &str) -> Option<Pattern> {
        let mut out = Vec::new();
        let body = pattern.strip_prefix('/').unwrap_or(pattern);
        let parts: Vec<&str> = if body.is_empty() {
            Vec::new()
        } else {
            body.split('/').collect()
        };
        for (i, p) in parts.iter().enumerate() {
            if let Some(name) = p.strip_prefix("{*").and_then(|r| r.strip_suffix('}')) {
                if i + 1 != parts.len() {
                    return None;
                }
                out.push(Seg::Rest(name.into()));
            } else if let Some(inner) = p.strip_prefix('{') {
                let close = inner.find('}')?;
                out.push(Seg::Param(inner[..close].into(), inner[close + 1..].into()));
            } else {
                out.push(Seg::Lit((*p).into()));
            }
        }
        Some(Pattern(out))
    }

    /// The captured values when `segments` match.
    pub(super) fn matches(&self, segments: &[String]) -> Option<Vec<(String, String)>> {
        let mut segs = segments;
        // A trailing slash is ignored, except by `{*rest}`.
        if !matches!(self.0.last(), Some(Seg::Rest(_)))
            && segs.len() > self.0.len()
            && segs.last().is_some_and(|s| s.is_empty())
        {
            segs = &segs[..segs.len() - 1];
        }
        let mut params = Vec::new();
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Rest(name) => {
                    params.push((name.clone(), segs.get(i..).unwrap_or(&[]).join("/")));
                    return Some(params);
                }
                Seg::Lit(l) => {
                    if segs.get(i)? != l {
                        return None;
                    }
                }
                Seg::Param(name, suffix) => {
                    let s = segs.get(i)?;
                    let value = s.strip_suffix(suffix.as_str())?;
                    if value.is_empty() {
                        return None;
                    }
                    params.push((name.clone(), value.to_string()));
                }
            }
        }
        (segs.len() == self.0.len()).then_some(params)
    }
}

/// Decodes a query string (`a=1&b=x+y&c=%2F`), in order.
pub(super) fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let d = |s: &str| {
                let s = s.replace('+', " ");
                String::from_utf8_lossy(&percent_decode(&s).unwrap_or_else(|| s.clone().into()))
                    .into_owned()
            };
            (d(k), d(v))
        })
        .collect()
}

/// Percent-decodes; `None` for a malformed escape.
pub(super) fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = (*b.get(i + 1)? as char).to_digit(16)?;
            let l = (*b.get(i + 2)? as char).to_digit(16)?;
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

/// Encodes a path segment for a URL.
pub(super) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A path inside the app from an encoded `{*path}` capture: each segment
/// decoded and checked (no `.`, `..`, empty segment, `/`, `\` or NUL once
/// decoded); a leading `site/wwwroot/` (Kudu's folder of the app content)
/// dropped. Returns the relative path (empty for the root) and whether it
/// ended with `/`.
pub(super) fn app_path(raw: &str) -> Result<(String, bool), &'static str> {
    if raw.contains('\\') {
        return Err("backslashes are not allowed in paths");
    }
    let trailing = raw.ends_with('/') || raw.is_empty();
    let trimmed = raw.strip_suffix('/').unwrap_or(raw);
    let mut parts: Vec<String> = Vec::new();
    if !trimmed.is_empty() {
        for seg in trimmed.split('/') {
            if seg.is_empty() {
                return Err("empty path segments (`//`, absolute paths) are not allowed");
            }
            let bytes = percent_decode(seg).ok_or("malformed percent-encoding")?;
            let s = String::from_utf8(bytes).map_err(|_| "the path is not UTF-8")?;
            if s == "." || s == ".." {
                return Err("`.` and `..` are not allowed in paths");
            }
            if s.is_empty() || s.contains(['/', '\\', '\0']) {
                return Err("encoded separators are not allowed in paths");
            }
            parts.push(s);
        }
    }
    if parts.len() >= 2 && parts[0].eq_ignore_ascii_case("site") && parts[1] == "wwwroot" {
        parts.drain(..2);
    }
    Ok((parts.join("/"), trailing))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn bases() {
        let t = split_base("/apps/orders/api/zipdeploy").unwrap();
        assert_eq!((t.app.as_str(), t.slot.as_str()), ("orders", "production"));
        assert_eq!(t.rest, "/api/zipdeploy");
        let t = split_base("/apps/orders/slots/staging/api/x").unwrap();
        assert_eq!(
            (t.slot.as_str(), t.base.as_str()),
            ("staging", "/apps/orders/slots/staging")
        );
        assert!(split_base("/apps/../x").is_none());
        assert!(split_base("/other").is_none());
        assert!(split_base("/apps/a%2e/x").is_none());
    }

    #[test]
    fn patterns() {
        let p = Pattern::parse("/api/deployments/{id}/log").unwrap();
        let s = segments("/api/deployments/abc/log").unwrap();
        assert_eq!(p.matches(&s).unwrap(), vec![("id".into(), "abc".into())]);
        assert!(
            p.matches(&segments("/api/deployments/abc").unwrap())
                .is_none()
        );
        let p = Pattern::parse("/api/deployments").unwrap();
        assert!(p.matches(&segments("/api/deployments/").unwrap()).is_some());
        let p = Pattern::parse("/api/vfs/{*path}").unwrap();
        let m = p.matches(&segments("/api/vfs/a/b/").unwrap()).unwrap();
        assert_eq!(m[0].1, "a/b/");
        let m = p.matches(&segments("/api/vfs").unwrap()).unwrap();
        assert_eq!(m[0].1, "");
        let p = Pattern::parse("/{repo}.git/{*rest}").unwrap();
        let m = p
            .matches(&segments("/orders.git/info/refs").unwrap())
            .unwrap();
        assert_eq!(m[0].1, "orders");
        assert!(Pattern::parse("/{*a}/b").is_none());
    }

    #[test]
    fn app_paths() {
        assert_eq!(app_path("a/b.txt").unwrap(), ("a/b.txt".into(), false));
        assert_eq!(app_path("site/wwwroot/").unwrap(), ("".into(), true));
        assert_eq!(app_path("").unwrap(), ("".into(), true));
        assert_eq!(app_path("a%20b/").unwrap(), ("a b".into(), true));
        for bad in [
            "..", "a/../b", "%2e%2e/x", "a/%2E%2e", "a%2fb", "a\\b", "a%5cb", "/etc", "a//b", "%zz",
        ] {
            assert!(app_path(bad).is_err(), "{bad}");
        }
    }
}
