//! Paths: the checks that keep a path inside the app, and encoding for
//! links.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// What stays as it is in a path segment of a link (RFC 3986 unreserved).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Encodes a path segment for a URL.
pub(super) fn percent_encode(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

/// Whether every `%` starts an escape of two hex digits.
fn well_escaped(s: &str) -> bool {
    s.split('%')
        .skip(1)
        .all(|p| p.len() >= 2 && p.as_bytes()[..2].iter().all(u8::is_ascii_hexdigit))
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
            if !well_escaped(seg) {
                return Err("malformed percent-encoding");
            }
            let s = percent_decode_str(seg)
                .decode_utf8()
                .map_err(|_| "the path is not UTF-8")?;
            if s == "." || s == ".." {
                return Err("`.` and `..` are not allowed in paths");
            }
            if s.is_empty() || s.contains(['/', '\\', '\0']) {
                return Err("encoded separators are not allowed in paths");
            }
            parts.push(s.into_owned());
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
        assert_eq!(percent_encode("a b/ü~"), "a%20b%2F%C3%BC~");
    }
}
