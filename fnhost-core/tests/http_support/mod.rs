//! Helpers for the HTTP front tests: a temporary app and a tiny HTTP/1.1
//! client over loopback, every call bounded in time.

#![allow(dead_code, clippy::unwrap_used, unreachable_pub)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Writes `host.json` and one `NAME/function.json` per entry (with a
/// `run.sh` beside it, so the function has a primary script).
pub fn write_app(dir: &Path, host: &str, functions: &[(&str, &str)]) {
    std::fs::write(dir.join("host.json"), host).unwrap();
    for (name, json) in functions {
        std::fs::create_dir_all(dir.join(name)).unwrap();
        std::fs::write(dir.join(name).join("function.json"), json).unwrap();
        std::fs::write(dir.join(name).join("run.sh"), "#!/bin/sh\n").unwrap();
    }
}

/// function.json of an HTTP function.
pub fn http_function(auth: &str, methods: &[&str], route: Option<&str>) -> String {
    let methods: Vec<String> = methods.iter().map(|m| format!("\"{m}\"")).collect();
    let route = route
        .map(|r| format!(", \"route\": \"{r}\""))
        .unwrap_or_default();
    format!(
        r#"{{"bindings": [
            {{"type": "httpTrigger", "direction": "in", "name": "req", "authLevel": "{auth}", "methods": [{}]{route}}},
            {{"type": "http", "direction": "out", "name": "$return"}}
        ]}}"#,
        methods.join(", ")
    )
}

/// A response as the client read it.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// Sends one request on a new connection (`Connection: close`) and reads
/// the whole response, within 10 seconds.
pub async fn send(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    tokio::time::timeout(Duration::from_secs(10), async {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let mut head =
            format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        if !body.is_empty() || method == "POST" || method == "PUT" {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        // The server may answer (413) before reading all of the body.
        let _ = stream.write_all(body).await;
        let mut raw = Vec::new();
        let _ = stream.read_to_end(&mut raw).await;
        parse(&raw)
    })
    .await
    .expect("the request finished within 10 s")
}

pub async fn get(addr: SocketAddr, target: &str) -> Reply {
    send(addr, "GET", target, &[], b"").await
}

/// `GET target` with `key` in the `x-functions-key` header.
pub async fn get_with_key(addr: SocketAddr, target: &str, key: &str) -> Reply {
    send(addr, "GET", target, &[("x-functions-key", key)], b"").await
}

pub fn parse(raw: &[u8]) -> Reply {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    Reply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size =
            usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[eol + 2 + size + 2..];
    }
}
