//! A small XML reader for the storage service's responses, and escaping
//! for the request bodies.
//!
//! The responses are small, flat documents (`QueueMessagesList`, `Error`):
//! elements, text, the five predefined entities and character references,
//! CDATA, comments and the XML declaration. Attributes are skipped; a
//! DOCTYPE is refused (so no entity can expand).

/// An element: its name, its text (concatenated, entities decoded) and its
/// child elements.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Element {
    pub(crate) name: String,
    pub(crate) text: String,
    pub(crate) children: Vec<Element>,
}

impl Element {
    /// The first child named `name`.
    pub(crate) fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// The text of the first child named `name`.
    pub(crate) fn child_text(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.as_str())
    }
}

/// Parses a document into its root element.
pub(crate) fn parse(doc: &str) -> Result<Element, String> {
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut rest = doc.strip_prefix('\u{feff}').unwrap_or(doc);
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("<?") {
            rest = skip_past(after, "?>")?;
        } else if let Some(after) = rest.strip_prefix("<!--") {
            rest = skip_past(after, "-->")?;
        } else if let Some(after) = rest.strip_prefix("<![CDATA[") {
            let end = after.find("]]>").ok_or("an unterminated CDATA section")?;
            match stack.last_mut() {
                Some(top) => top.text.push_str(&after[..end]),
                None => return Err("text outside the root element".into()),
            }
            rest = &after[end + 3..];
        } else if rest.starts_with("<!") {
            return Err("a DOCTYPE or declaration, which is not accepted".into());
        } else if let Some(after) = rest.strip_prefix("</") {
            let end = after.find('>').ok_or("an unterminated end tag")?;
            let name = after[..end].trim();
            let done = stack.pop().ok_or("an end tag without a start tag")?;
            if done.name != name {
                return Err(format!("</{name}> closes <{}>", done.name));
            }
            close(done, &mut stack, &mut root)?;
            rest = &after[end + 1..];
        } else if let Some(after) = rest.strip_prefix('<') {
            let end = tag_end(after).ok_or("an unterminated start tag")?;
            let inner = &after[..end];
            let (inner, empty) = match inner.strip_suffix('/') {
                Some(i) => (i, true),
                None => (inner, false),
            };
            let name = inner
                .split(|c: char| c.is_ascii_whitespace())
                .next()
                .unwrap_or("");
            if name.is_empty() {
                return Err("a tag without a name".into());
            }
            let element = Element {
                name: name.to_owned(),
                ..Element::default()
            };
            if empty {
                close(element, &mut stack, &mut root)?;
            } else {
                stack.push(element);
            }
            rest = &after[end + 1..];
        } else {
            let end = rest.find('<').unwrap_or(rest.len());
            let text = &rest[..end];
            match stack.last_mut() {
                Some(top) => decode_into(text, &mut top.text)?,
                None if text.trim().is_empty() => {}
                None => return Err("text outside the root element".into()),
            }
            rest = &rest[end..];
        }
    }
    if let Some(open) = stack.last() {
        return Err(format!("<{}> is not closed", open.name));
    }
    root.ok_or_else(|| "no element".into())
}

fn close(
    element: Element,
    stack: &mut [Element],
    root: &mut Option<Element>,
) -> Result<(), String> {
    match stack.last_mut() {
        Some(parent) => parent.children.push(element),
        None if root.is_none() => *root = Some(element),
        None => return Err("more than one root element".into()),
    }
    Ok(())
}

fn skip_past<'a>(text: &'a str, end: &str) -> Result<&'a str, String> {
    text.find(end)
        .map(|i| &text[i + end.len()..])
        .ok_or_else(|| format!("no closing {end}"))
}

/// The index of the `>` that ends a start tag, skipping quoted attribute
/// values.
fn tag_end(text: &str) -> Option<usize> {
    let mut quote: Option<char> = None;
    for (i, c) in text.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '>') => return Some(i),
            (None, '<') => return None,
            _ => {}
        }
    }
    None
}

fn decode_into(text: &str, out: &mut String) -> Result<(), String> {
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let semi = after
            .find(';')
            .filter(|&i| i <= 10)
            .ok_or("an '&' that starts no entity")?;
        let entity = &after[..semi];
        let c = match entity {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let code = if let Some(hex) = entity
                    .strip_prefix("#x")
                    .or_else(|| entity.strip_prefix("#X"))
                {
                    u32::from_str_radix(hex, 16).ok()
                } else if let Some(dec) = entity.strip_prefix('#') {
                    dec.parse::<u32>().ok()
                } else {
                    None
                };
                code.and_then(char::from_u32)
                    .ok_or_else(|| format!("an unknown entity &{entity};"))?
            }
        };
        out.push(c);
        rest = &after[semi + 1..];
    }
    out.push_str(rest);
    Ok(())
}

/// Escapes text for an XML element's content. (XML 1.0 cannot carry most
/// control characters at all: such messages need the base64 encoding.)
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_message_list() {
        let doc = "\u{feff}<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<QueueMessagesList>\
            <QueueMessage><MessageId>id-1</MessageId><DequeueCount>2</DequeueCount>\
            <MessageText>a &lt;b&gt; &amp; &quot;c&quot; &#233;&#x41;</MessageText></QueueMessage>\
            <!-- a comment --><QueueMessage><MessageText><![CDATA[<raw>]]></MessageText><Empty/></QueueMessage>\
            </QueueMessagesList>";
        let root = parse(doc).unwrap();
        assert_eq!(root.name, "QueueMessagesList");
        assert_eq!(root.children.len(), 2);
        let m = &root.children[0];
        assert_eq!(m.child_text("MessageId"), Some("id-1"));
        assert_eq!(m.child_text("MessageText"), Some("a <b> & \"c\" éA"));
        assert_eq!(root.children[1].child_text("MessageText"), Some("<raw>"));
        assert_eq!(root.children[1].child_text("Empty"), Some(""));
    }

    #[test]
    fn attributes_are_skipped() {
        let root = parse(r#"<Error a="x>y" b='2'><Code>QueueNotFound</Code></Error>"#).unwrap();
        assert_eq!(root.child_text("Code"), Some("QueueNotFound"));
    }

    #[test]
    fn refuses_broken_documents() {
        for doc in [
            "<a><b></a>",
            "<a>",
            "<a>&bogus;</a>",
            "<!DOCTYPE x [<!ENTITY e \"boom\">]><a>&e;</a>",
            "<a/><b/>",
            "text",
            "",
        ] {
            assert!(parse(doc).is_err(), "{doc}");
        }
    }

    #[test]
    fn escape_round_trips() {
        let text = "<QueueMessage> & 'x' \"y\" é {\"k\":1}";
        let doc = format!("<m>{}</m>", escape(text));
        assert_eq!(parse(&doc).unwrap().text, text);
    }
}
