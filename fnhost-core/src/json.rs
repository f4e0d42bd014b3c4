//! JSON documents as the host reads them: a UTF-8 byte order mark is
//! skipped, CRLF is whitespace, and positions are reported as 1-based line
//! and column (in characters) so that diagnostics can point into the file.
//!
//! Parsing uses `serde_json`; locating a value by its path re-scans the text
//! only when a diagnostic needs a position, so healthy documents pay nothing.

use serde_json::Value;

/// One step of a path into a JSON document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seg<'a> {
    /// A member of an object, matched exactly.
    Key(&'a str),
    /// An element of an array.
    Index(usize),
}

/// A syntax error with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    pub(crate) message: String,
    pub(crate) line: u32,
    pub(crate) column: u32,
}

/// Removes a leading UTF-8 byte order mark.
pub(crate) fn strip_bom(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

/// Parses a whole document (after [`strip_bom`]).
pub(crate) fn parse(text: &str) -> Result<Value, SyntaxError> {
    let body = strip_bom(text);
    if body.trim().is_empty() {
        return Err(SyntaxError {
            message: "the file is empty; it must hold a JSON object".to_owned(),
            line: 1,
            column: 1,
        });
    }
    serde_json::from_str(body).map_err(|e| {
        let message = e.to_string();
        // serde_json appends " at line L column C"; the position is reported apart.
        let message = match message.rfind(" at line ") {
            Some(i) => message[..i].to_owned(),
            None => message,
        };
        SyntaxError {
            message: format!("invalid JSON: {message}"),
            line: e.line().max(1) as u32,
            column: e.column().max(1) as u32,
        }
    })
}

/// Finds the 1-based line and column where the value at `path` starts.
///
/// Returns the position of the deepest value of `path` that exists, or
/// `None` when the text does not parse as far as the root value.
pub(crate) fn locate(text: &str, path: &[Seg<'_>]) -> Option<(u32, u32)> {
    let body = strip_bom(text);
    let mut scanner = Scanner {
        bytes: body.as_bytes(),
        pos: 0,
    };
    scanner.skip_ws();
    let mut found = scanner.pos;
    let mut rest = path;
    while let Some((seg, tail)) = rest.split_first() {
        match scanner.descend(*seg) {
            Some(pos) => {
                found = pos;
                rest = tail;
            }
            None => break,
        }
    }
    Some(line_col(body, found))
}

/// Converts a byte offset into a 1-based line and character column.
pub(crate) fn line_col(text: &str, offset: usize) -> (u32, u32) {
    let offset = offset.min(text.len());
    let before = &text.as_bytes()[..offset];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let column = text[line_start..offset].chars().count() + 1;
    (line as u32, column as u32)
}

/// A minimal forward scanner that can skip values and step into members.
struct Scanner<'t> {
    bytes: &'t [u8],
    pos: usize,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\r' | b'\n') = self.peek() {
            self.pos += 1;
        }
    }

    /// Skips a member that is not the last: its value and the comma
    /// after it (`None` at the container's end or on malformed text).
    fn skip_member(&mut self) -> Option<()> {
        self.skip_value()?;
        self.skip_ws();
        (self.peek()? == b',').then(|| self.pos += 1)
    }

    /// At the start of an object or array, moves to the start of the member
    /// `seg` and returns its offset.
    fn descend(&mut self, seg: Seg<'_>) -> Option<usize> {
        match (self.peek()?, seg) {
            (b'{', Seg::Key(key)) => {
                self.pos += 1;
                loop {
                    self.skip_ws();
                    if self.peek()? != b'"' {
                        return None;
                    }
                    let name = self.string()?;
                    self.skip_ws();
                    if self.peek()? != b':' {
                        return None;
                    }
                    self.pos += 1;
                    self.skip_ws();
                    if name == key {
                        return Some(self.pos);
                    }
                    self.skip_member()?;
                }
            }
            (b'[', Seg::Index(index)) => {
                self.pos += 1;
                let mut i = 0;
                loop {
                    self.skip_ws();
                    if self.peek()? == b']' {
                        return None;
                    }
                    if i == index {
                        return Some(self.pos);
                    }
                    self.skip_member()?;
                    i += 1;
                }
            }
            _ => None,
        }
    }

    /// Reads a string at the cursor and returns its decoded text.
    fn string(&mut self) -> Option<String> {
        let start = self.pos;
        self.skip_string()?;
        serde_json::from_slice(&self.bytes[start..self.pos]).ok()
    }

    fn skip_string(&mut self) -> Option<()> {
        self.pos += 1; // opening quote
        loop {
            match self.peek()? {
                b'"' => {
                    self.pos += 1;
                    return Some(());
                }
                b'\\' => self.pos += 2,
                _ => self.pos += 1,
            }
        }
    }

    fn skip_value(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.skip_string(),
            b'{' | b'[' => {
                let mut depth = 0usize;
                loop {
                    match self.peek()? {
                        b'"' => {
                            self.skip_string()?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                self.pos += 1;
                                return Some(());
                            }
                        }
                        _ => {}
                    }
                    self.pos += 1;
                }
            }
            _ => {
                while let Some(b) = self.peek() {
                    if matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\r' | b'\n') {
                        break;
                    }
                    self.pos += 1;
                }
                Some(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_nested_values_across_crlf_and_bom() {
        let text = "\u{feff}{\r\n  \"bindings\": [\r\n    { \"name\": \"a\" },\r\n    {\r\n      \"name\": \"my_name\"\r\n    }\r\n  ]\r\n}";
        let path = [Seg::Key("bindings"), Seg::Index(1), Seg::Key("name")];
        assert_eq!(locate(text, &path), Some((5, 15)));
        assert_eq!(locate(text, &[Seg::Key("bindings")]), Some((2, 15)));
        // a missing member falls back to the deepest one found
        assert_eq!(
            locate(text, &[Seg::Key("bindings"), Seg::Index(7)]),
            Some((2, 15))
        );
    }

    #[test]
    fn skips_strings_with_escapes_and_brackets() {
        let text = r#"{"a": "x\"]}", "b": {"c": [1, "}"]}, "d": true}"#;
        assert_eq!(locate(text, &[Seg::Key("d")]), Some((1, 43)));
    }

    #[test]
    fn syntax_errors_have_positions() {
        let err = parse("{\n  \"a\": 1,\n  b\n}").unwrap_err();
        assert_eq!((err.line, err.column), (3, 3));
        assert!(err.message.starts_with("invalid JSON"), "{}", err.message);
        let err = parse("\u{feff}  \r\n").unwrap_err();
        assert!(err.message.contains("empty"));
    }
}
