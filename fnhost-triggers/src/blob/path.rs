//! Blob trigger path patterns: `container/{name}`, `container/in-{name}`,
//! `container/{name}.png`, `container/{stem}.{ext}`.

use serde_json::{Map, Value};

/// A blob trigger's `path`: a container and a pattern for blob names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobPattern {
    /// The container (app settings resolved, lower case).
    pub container: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Param(String),
}

impl BlobPattern {
    /// Parses `container/pattern` (settings already resolved). The
    /// container takes no `{...}`; `{{` and `}}` are literal braces; two
    /// parameters must have text between them.
    pub fn parse(path: &str) -> Result<BlobPattern, String> {
        let path = path.trim().trim_start_matches('/');
        let (container, pattern) = path.split_once('/').unwrap_or((path, ""));
        if container.contains('{') || container.contains('}') {
            return Err(format!(
                "the container of the blob path '{path}' cannot hold {{...}} expressions"
            ));
        }
        let container = container.to_ascii_lowercase();
        if !crate::storage::is_valid_container_name(&container) {
            return Err(format!(
                "the container name '{container}' is not valid: use 3 to 63 lower-case letters, digits and single dashes"
            ));
        }
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = pattern.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    literal.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(c) => name.push(c),
                            None => {
                                return Err(format!(
                                    "the blob path '{path}' has a '{{' without its '}}'"
                                ));
                            }
                        }
                    }
                    let name = name.trim().to_owned();
                    if name.is_empty() || !name.chars().all(|c| c.is_alphanumeric() || c == '_') {
                        return Err(format!(
                            "the blob path '{path}' has a parameter {{{name}}} that is not a name"
                        ));
                    }
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    } else if matches!(parts.last(), Some(Part::Param(_))) {
                        return Err(format!(
                            "the blob path '{path}' has two parameters with nothing between them"
                        ));
                    }
                    parts.push(Part::Param(name));
                }
                '}' => {
                    return Err(format!(
                        "the blob path '{path}' has a '}}' without its '{{'"
                    ));
                }
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(BlobPattern { container, parts })
    }

    /// The literal start of every matching name (a listing prefix).
    pub fn prefix(&self) -> &str {
        match self.parts.first() {
            Some(Part::Literal(l)) => l,
            _ => "",
        }
    }

    /// The parameters of a blob name that matches, by name; `None` when it
    /// does not match. Parameters are not empty; where two could split the
    /// name (`{stem}.{ext}`), the earlier takes the most.
    pub fn matches(&self, name: &str) -> Option<Map<String, Value>> {
        let mut out = Map::new();
        if self.parts.is_empty() {
            // `container` alone: every blob.
            return Some(out);
        }
        match_parts(&self.parts, name, &mut out).then_some(out)
    }
}

fn match_parts(parts: &[Part], text: &str, out: &mut Map<String, Value>) -> bool {
    match parts.split_first() {
        None => text.is_empty(),
        Some((Part::Literal(l), rest)) => text
            .strip_prefix(l.as_str())
            .is_some_and(|t| match_parts(rest, t, out)),
        Some((Part::Param(p), rest)) => {
            // Longest first.
            let ends: Vec<usize> = text
                .char_indices()
                .map(|(i, c)| i + c.len_utf8())
                .rev()
                .collect();
            for end in ends {
                if match_parts(rest, &text[end..], out) {
                    out.insert(p.clone(), Value::String(text[..end].to_owned()));
                    return true;
                }
            }
            false
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn m(pattern: &str, name: &str) -> Option<Value> {
        BlobPattern::parse(pattern)
            .unwrap()
            .matches(name)
            .map(Value::Object)
    }

    #[test]
    fn patterns() {
        assert_eq!(
            m("samples/{name}", "a/b.txt"),
            Some(serde_json::json!({"name": "a/b.txt"}))
        );
        assert_eq!(
            m("input/original-{name}", "original-x.png"),
            Some(serde_json::json!({"name": "x.png"}))
        );
        assert_eq!(m("input/original-{name}", "copy-x.png"), None);
        assert_eq!(
            m("samples/{name}.png", "cat.png"),
            Some(serde_json::json!({"name": "cat"}))
        );
        assert_eq!(m("samples/{name}.png", "cat.jpg"), None);
        assert_eq!(
            m("inp/{blobname}.{blobextension}", "a.tar.gz"),
            Some(serde_json::json!({"blobname": "a.tar", "blobextension": "gz"}))
        );
        assert_eq!(m("inp/{stem}.{ext}", "noext"), None);
        assert_eq!(
            m("inp/{{x}}-{name}", "{x}-y"),
            Some(serde_json::json!({"name": "y"}))
        );
        let p = BlobPattern::parse("Samples/original-{name}").unwrap();
        assert_eq!(p.container, "samples");
        assert_eq!(p.prefix(), "original-");
        assert!(BlobPattern::parse("c{x}/a").is_err());
        assert!(BlobPattern::parse("cc/{a}{b}").is_err());
        assert!(BlobPattern::parse("cc/{a").is_err());
        assert!(BlobPattern::parse("a/{name}").is_err());
    }
}
