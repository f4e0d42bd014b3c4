//! JSON values written as block-style YAML, the form Kubernetes users
//! read and `kubectl apply -f` takes.
//!
//! Written here rather than with a YAML crate: the one everyone knew
//! (serde_yaml) is archived and its forks are young, and emitting is the
//! easy half. Every string that is not plainly safe is written as a JSON
//! string, which is a valid YAML double-quoted scalar (YAML 1.2 is a
//! superset of JSON), so no value can change type or meaning on the way
//! (`"true"`, `"0755"`, `"1e3"`, `"null"`, `"- x"` stay strings).

use serde_json::Value;

/// `value` as one YAML document (no `---`), ending with a newline.
pub(crate) fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) if !map.is_empty() => write_map(&mut out, map, 0),
        Value::Array(items) if !items.is_empty() => write_seq(&mut out, items, 0),
        other => {
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
    out
}

fn indent(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n(' ', n));
}

fn write_map(out: &mut String, map: &serde_json::Map<String, Value>, level: usize) {
    for (i, (k, v)) in map.iter().enumerate() {
        // The first key of a map inside a sequence item follows its `- `.
        if i > 0 || !out.ends_with("- ") {
            indent(out, level);
        }
        out.push_str(&string(k));
        out.push(':');
        write_value(out, v, level);
    }
}

fn write_seq(out: &mut String, items: &[Value], level: usize) {
    for item in items {
        indent(out, level);
        out.push_str("- ");
        match item {
            Value::Object(map) if !map.is_empty() => write_map(out, map, level + 2),
            Value::Array(inner) if !inner.is_empty() => {
                out.push('\n');
                write_seq(out, inner, level + 2);
            }
            other => {
                out.push_str(&scalar(other));
                out.push('\n');
            }
        }
    }
}

/// After `key:`: a scalar on the same line, a collection below it.
fn write_value(out: &mut String, v: &Value, level: usize) {
    match v {
        Value::Object(map) if !map.is_empty() => {
            out.push('\n');
            write_map(out, map, level + 2);
        }
        // Sequences under a key sit at the key's indentation (kubectl's
        // own style).
        Value::Array(items) if !items.is_empty() => {
            out.push('\n');
            write_seq(out, items, level);
        }
        other => {
            out.push(' ');
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => string(s),
        Value::Array(_) => "[]".into(),
        Value::Object(_) => "{}".into(),
    }
}

/// A string plain when nothing could read it as anything else, else
/// JSON-quoted.
fn string(s: &str) -> String {
    if is_plain(s) {
        s.to_string()
    } else {
        Value::String(s.to_string()).to_string()
    }
}

fn is_plain(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    if !first.is_ascii_alphabetic() && first != '/' && first != '_' {
        return false;
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'))
    {
        return false;
    }
    // YAML 1.1 booleans and nulls that a plain scalar would become.
    const WORDS: [&str; 11] = [
        "y", "n", "yes", "no", "on", "off", "true", "false", "null", "nan", "inf",
    ];
    !WORDS.iter().any(|w| s.eq_ignore_ascii_case(w))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_maps_and_sequences() {
        let v = json!({
            "apiVersion": "v1",
            "metadata": {"name": "hello", "labels": {"app.kubernetes.io/name": "hello"}},
            "spec": {"containers": [{"name": "c", "args": ["serve", "--port", "80"], "env": []}],
                     "replicas": 1, "on": "yes", "empty": {}}
        });
        let y = to_yaml(&v);
        assert_eq!(
            y,
            "apiVersion: v1\nmetadata:\n  name: hello\n  labels:\n    app.kubernetes.io/name: hello\n\
             spec:\n  containers:\n  - name: c\n    args:\n    - serve\n    - \"--port\"\n    - \"80\"\n    env: []\n\
             \x20 replicas: 1\n  \"on\": \"yes\"\n  empty: {}\n"
        );
    }

    #[test]
    fn strings_that_would_change_type_are_quoted() {
        for s in [
            "true", "No", "0755", "1e3", "null", "~", "- x", "a: b", "#c", "", " x", "a\nb",
        ] {
            assert!(string(s).starts_with('"'), "{s:?} -> {}", string(s));
        }
        assert_eq!(string("azure-queue"), "azure-queue");
        assert_eq!(string("/home/site/wwwroot"), "/home/site/wwwroot");
    }
}
