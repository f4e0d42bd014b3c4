//! SharedKey request signing (Blob and Queue services, version 2015-02-21
//! and later).

use base64::Engine as _;
use hmac::{Hmac, KeyInit as _, Mac as _};

/// What of a request goes into its signature.
#[derive(Debug)]
pub(crate) struct ToSign<'a> {
    pub(crate) method: &'a str,
    /// Zero is written as an empty line, as the service expects.
    pub(crate) content_length: usize,
    pub(crate) content_type: &'a str,
    /// The other standard headers that are signed (`if-match`,
    /// `if-none-match`, `range`...), names in lower case.
    pub(crate) standard: &'a [(&'a str, String)],
    /// The `x-ms-*` headers, names in lower case.
    pub(crate) ms_headers: &'a [(&'a str, String)],
    pub(crate) account: &'a str,
    /// The URL's path as sent (percent-encoded), starting with `/`.
    pub(crate) path: &'a str,
    /// The query parameters, decoded.
    pub(crate) query: &'a [(&'a str, String)],
}

/// The string-to-sign: the verb, the standard headers (Date left empty in
/// favour of `x-ms-date`), the canonicalized `x-ms-*` headers and the
/// canonicalized resource (`/account` + the path, then each query
/// parameter sorted by its lower-cased name as `\nname:v1,v2`).
///
/// Against a path-style endpoint (Azurite) the path already starts with the
/// account, so it appears twice: `/devstoreaccount1/devstoreaccount1/q`.
pub(crate) fn string_to_sign(r: &ToSign<'_>) -> String {
    let length = if r.content_length == 0 {
        String::new()
    } else {
        r.content_length.to_string()
    };
    let std = |name: &str| {
        r.standard
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map_or("", |(_, v)| v.as_str())
    };
    // VERB, Content-Encoding, -Language, -Length, -MD5, -Type, Date,
    // If-Modified-Since, If-Match, If-None-Match, If-Unmodified-Since, Range.
    let mut out = format!(
        "{}\n{}\n{}\n{length}\n{}\n{}\n\n{}\n{}\n{}\n{}\n{}\n",
        r.method,
        std("content-encoding"),
        std("content-language"),
        std("content-md5"),
        r.content_type,
        std("if-modified-since"),
        std("if-match"),
        std("if-none-match"),
        std("if-unmodified-since"),
        std("range"),
    );
    let headers = canonical(r.ms_headers, str::trim);
    for (k, v) in headers {
        out.push_str(&k);
        out.push(':');
        out.push_str(v);
        out.push('\n');
    }
    out.push('/');
    out.push_str(r.account);
    out.push_str(r.path);
    let params = canonical(r.query, |v| v);
    for same_name in params.chunk_by(|a, b| a.0 == b.0) {
        let values: Vec<&str> = same_name.iter().map(|(_, v)| *v).collect();
        out.push('\n');
        out.push_str(&same_name[0].0);
        out.push(':');
        out.push_str(&values.join(","));
    }
    out
}

/// `pairs` as they are signed: names in lower case, values through
/// `value`, sorted.
fn canonical<'a>(
    pairs: &'a [(&'a str, String)],
    value: impl Fn(&'a str) -> &'a str,
) -> Vec<(String, &'a str)> {
    let mut out: Vec<(String, &str)> = pairs
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), value(v)))
        .collect();
    out.sort();
    out
}

/// The `Authorization` header's value.
pub(crate) fn authorization(account: &str, key: &[u8], to_sign: &str) -> String {
    // HMAC takes keys of any length.
    let mut mac = match Hmac::<sha2::Sha256>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(to_sign.as_bytes());
    let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    format!("SharedKey {account}:{sig}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_form() {
        let headers = [
            ("x-ms-version", "2021-12-02".to_owned()),
            ("x-ms-date", "Mon, 01 Jan 2024 00:00:00 GMT".to_owned()),
        ];
        let query = [
            ("visibilitytimeout", "30".to_owned()),
            ("NumOfMessages", "16".to_owned()),
        ];
        let s = string_to_sign(&ToSign {
            method: "GET",
            content_length: 0,
            content_type: "",
            standard: &[],
            ms_headers: &headers,
            account: "devstoreaccount1",
            path: "/devstoreaccount1/orders/messages",
            query: &query,
        });
        assert_eq!(
            s,
            "GET\n\n\n\n\n\n\n\n\n\n\n\n\
             x-ms-date:Mon, 01 Jan 2024 00:00:00 GMT\nx-ms-version:2021-12-02\n\
             /devstoreaccount1/devstoreaccount1/orders/messages\nnumofmessages:16\nvisibilitytimeout:30"
        );
        let to_sign = ToSign {
            method: "POST",
            content_length: 12,
            content_type: "application/xml",
            standard: &[("if-none-match", "*".to_owned())],
            ms_headers: &headers,
            account: "a",
            path: "/q/messages",
            query: &[],
        };
        let s = string_to_sign(&to_sign);
        assert!(
            s.starts_with("POST\n\n\n12\n\napplication/xml\n\n\n\n*\n\n\n"),
            "{s}"
        );
        assert!(s.ends_with("\n/a/q/messages"), "{s}");
        // A name given twice: one line, its values in order.
        let query = [
            ("include", "b".to_owned()),
            ("comp", "list".to_owned()),
            ("Include", "a".to_owned()),
        ];
        let s = string_to_sign(&ToSign {
            query: &query,
            path: "/c",
            ..to_sign
        });
        assert!(s.ends_with("\n/a/c\ncomp:list\ninclude:a,b"), "{s}");
    }

    #[test]
    fn signature_is_hmac_sha256_in_base64() {
        // RFC 4231 test case 2.
        let auth = authorization("acct", b"Jefe", "what do ya want for nothing?");
        let expected = base64::engine::general_purpose::STANDARD.encode([
            0x5b, 0xdc, 0xc1, 0x46, 0xbf, 0x60, 0x75, 0x4e, 0x6a, 0x04, 0x24, 0x26, 0x08, 0x95,
            0x75, 0xc7, 0x5a, 0x00, 0x3f, 0x08, 0x9d, 0x27, 0x39, 0x83, 0x9d, 0xec, 0x58, 0xb9,
            0x64, 0xec, 0x38, 0x43,
        ]);
        assert_eq!(auth, format!("SharedKey acct:{expected}"));
    }
}
