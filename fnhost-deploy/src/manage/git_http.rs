//! `{base}/{app}.git`: git's smart HTTP protocol for the slot's built-in
//! repository (`fnhost source set APP --local-git`), served by
//! `git http-backend` (CGI) run per request. A push to the followed branch
//! deploys through the repository's `post-receive` hook (`fnhost sync`).

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::process::Stdio;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper::body::{Body, Frame};
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Method, Response, StatusCode};
use tokio::io::AsyncReadExt as _;
use tokio::sync::mpsc;

use super::{AppRequest, HttpResponse, Manage, text};
use crate::cd::{ContinuousDeployer, SourceKind};

/// The largest CGI header block accepted from `git http-backend`.
const MAX_CGI_HEADER: usize = 64 * 1024;

pub(super) fn register(m: &mut Manage) {
    let cd = ContinuousDeployer::new(m.site.clone());
    m.add(
        &[Method::GET, Method::POST],
        "/{repo}.git/{*rest}",
        move |req: AppRequest| {
            let cd = cd.clone();
            async move { git(cd, req).await }
        },
    );
}

/// Which of the smart protocol's requests this is: the service.
fn service(method: &Method, rest: &str, query: Option<&str>) -> Option<&'static str> {
    let pick = |s: &str| match s {
        "git-upload-pack" => Some("git-upload-pack"),
        "git-receive-pack" => Some("git-receive-pack"),
        _ => None,
    };
    match (method, rest) {
        (&Method::GET, "info/refs") => {
            let q = super::paths::parse_query(query.unwrap_or(""));
            q.iter()
                .find(|(k, _)| k == "service")
                .and_then(|(_, v)| pick(v))
        }
        (&Method::POST, "git-upload-pack" | "git-receive-pack") => pick(rest),
        _ => None,
    }
}

async fn git(cd: ContinuousDeployer, mut req: AppRequest) -> HttpResponse {
    let (app, slot) = (req.app.clone(), req.slot.clone());
    if req.param("repo") != Some(app.as_str()) {
        return text(
            StatusCode::NOT_FOUND,
            &format!(
                "no such repository: the git URL of this slot is {}/{app}.git",
                req.base_url
            ),
        );
    }
    let rest = req.param("rest").unwrap_or("").to_string();
    let Some(service) = service(&req.parts.method, &rest, req.parts.uri.query()) else {
        return text(
            StatusCode::NOT_FOUND,
            "only git's smart HTTP protocol is served (info/refs?service=..., git-upload-pack, git-receive-pack)",
        );
    };
    let slot_arg = if slot == crate::site::PRODUCTION {
        String::new()
    } else {
        format!(" --slot {slot}")
    };
    let config = {
        let (cd, a, s) = (cd.clone(), app.clone(), slot.clone());
        tokio::task::spawn_blocking(move || cd.config(&a, &s)).await
    };
    let repo = match config {
        Ok(Ok(Some(c))) if c.kind == SourceKind::LocalGit => std::path::PathBuf::from(c.location),
        Ok(Ok(other)) => {
            let now = match other {
                Some(c) => format!(" (it follows {})", c.describe()),
                None => String::new(),
            };
            return text(
                StatusCode::NOT_FOUND,
                &format!(
                    "{app}/{slot} has no built-in git repository{now}: `fnhost source set {app}{slot_arg} --local-git` creates it"
                ),
            );
        }
        Ok(Err(e)) => {
            req.log(&format!("manage: git {app}/{slot}: {e}"));
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the slot's source could not be read (see the server log)",
            );
        }
        Err(_) => return text(StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
    };
    let (Some(root), Some(name)) = (repo.parent(), repo.file_name()) else {
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the repository path is not valid",
        );
    };
    if !repo.join("HEAD").is_file() {
        return text(
            StatusCode::NOT_FOUND,
            &format!(
                "{app}/{slot}: the built-in repository is missing; `fnhost source set {app}{slot_arg} --local-git` makes it again"
            ),
        );
    }
    // The body (a POST): received under the endpoint's limits, then given
    // to http-backend as its stdin with its exact length.
    let upload = if req.parts.method == Method::POST {
        match req.receive().await {
            Ok(u) => Some(u),
            Err(resp) => return resp,
        }
    } else {
        None
    };
    let stdin = match &upload {
        Some(u) => match std::fs::File::open(u.path()) {
            Ok(f) => Stdio::from(f),
            Err(e) => {
                req.log(&format!("manage: git: cannot reopen an upload: {e}"));
                return text(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
            }
        },
        None => Stdio::null(),
    };
    let mut cmd = tokio::process::Command::new("git");
    cmd.arg("http-backend");
    for v in [
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_INDEX_FILE",
        "GIT_OBJECT_DIRECTORY",
        "GIT_ALTERNATE_OBJECT_DIRECTORIES",
        "GIT_QUARANTINE_PATH",
        "GIT_CONFIG_PARAMETERS",
        "GIT_NAMESPACE",
        "CONTENT_LENGTH",
        "HTTP_CONTENT_ENCODING",
        "HTTP_GIT_PROTOCOL",
    ] {
        cmd.env_remove(v);
    }
    cmd.env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .env("REQUEST_METHOD", req.parts.method.as_str())
        .env(
            "PATH_INFO",
            format!("/{}/{rest}", Path::new(name).display()),
        )
        .env("QUERY_STRING", req.parts.uri.query().unwrap_or(""))
        .env("REMOTE_USER", &req.user)
        .env("REMOTE_ADDR", req.peer.ip().to_string())
        .env("CONTENT_TYPE", req.header("content-type").unwrap_or(""));
    if let Some(u) = &upload {
        cmd.env("CONTENT_LENGTH", u.size().to_string());
    }
    if let Some(enc) = req.header("content-encoding") {
        // http-backend inflates gzip bodies itself.
        let enc = enc.trim().to_ascii_lowercase();
        if enc != "gzip" && enc != "x-gzip" && enc != "identity" {
            return text(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "only gzip request bodies are accepted",
            );
        }
        cmd.env("HTTP_CONTENT_ENCODING", enc);
    }
    if let Some(p) = req.header("git-protocol")
        && p.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
    {
        cmd.env("HTTP_GIT_PROTOCOL", p);
    }
    cmd.stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            req.log(&format!("manage: cannot run git http-backend: {e}"));
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "git is not available on the server (see the server log)",
            );
        }
    };
    let (Some(mut stdout), Some(mut stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return text(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
    };
    let log = req.shared.log.clone();
    let who = format!("{app}/{slot}");
    {
        let (log, who) = (log.clone(), who.clone());
        tokio::spawn(async move {
            let mut err = Vec::new();
            let _ = (&mut stderr).take(64 * 1024).read_to_end(&mut err).await;
            let _ = tokio::io::copy(&mut stderr, &mut tokio::io::sink()).await;
            for line in String::from_utf8_lossy(&err).lines() {
                if !line.trim().is_empty() {
                    log(&format!("manage: git http-backend {who}: {line}"));
                }
            }
        });
    }
    // The CGI header block.
    let mut head = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let split = loop {
        if let Some(i) = find_blank_line(&head) {
            break i;
        }
        if head.len() > MAX_CGI_HEADER {
            let _ = child.kill().await;
            return text(
                StatusCode::BAD_GATEWAY,
                "git http-backend answered too long a header",
            );
        }
        match stdout.read(&mut buf).await {
            Ok(0) | Err(_) => {
                let status = child.wait().await.ok();
                log(&format!(
                    "manage: git http-backend {who} ended without an answer ({status:?})"
                ));
                return text(
                    StatusCode::BAD_GATEWAY,
                    "git http-backend failed (see the server log)",
                );
            }
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    };
    let (header_len, sep_len) = split;
    let body_start = head.split_off(header_len + sep_len);
    let mut status = StatusCode::OK;
    let mut headers = Vec::new();
    for line in String::from_utf8_lossy(&head[..header_len]).lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim(), v.trim());
        if k.eq_ignore_ascii_case("status") {
            if let Some(code) = v
                .split_whitespace()
                .next()
                .and_then(|c| c.parse::<u16>().ok())
                && let Ok(s) = StatusCode::from_u16(code)
            {
                status = s;
            }
        } else if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            headers.push((k, v));
        }
    }
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(8);
    // Pushes run to their end (the hook deploys) even when the client goes
    // away; a fetch whose client went away is stopped.
    let keep_going = service == "git-receive-pack";
    let pump = async move {
        let _upload = upload;
        let mut open = true;
        if !body_start.is_empty() {
            open = tx.send(Ok(Bytes::from(body_start))).await.is_ok();
        }
        loop {
            if !open && !keep_going {
                let _ = child.kill().await;
                break;
            }
            match stdout.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => {
                    if open {
                        open = tx.send(Ok(Bytes::copy_from_slice(&buf[..n]))).await.is_ok();
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    break;
                }
            }
        }
        drop(tx);
        match child.wait().await {
            Ok(s) if s.success() => {}
            other => log(&format!(
                "manage: git http-backend {who} ended with {other:?}"
            )),
        }
    };
    if keep_going {
        req.shared.spawn_background(pump);
    } else {
        tokio::spawn(pump);
    }
    let mut resp = Response::new(ChannelBody(rx).boxed());
    *resp.status_mut() = status;
    for (k, v) in headers {
        resp.headers_mut().append(k, v);
    }
    resp
}

/// Where the CGI header block ends: (its length, the separator's length).
fn find_blank_line(b: &[u8]) -> Option<(usize, usize)> {
    let crlf = b.windows(4).position(|w| w == b"\r\n\r\n").map(|i| (i, 4));
    let lf = b.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2));
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

/// A response body fed by a channel.
struct ChannelBody(mpsc::Receiver<io::Result<Bytes>>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.get_mut().0.poll_recv(cx) {
            Poll::Ready(Some(Ok(b))) => Poll::Ready(Some(Ok(Frame::data(b)))),
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}
