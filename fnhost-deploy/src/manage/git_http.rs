//! `{base}/{app}.git`: git's smart HTTP protocol for the slot's built-in
//! repository (`fnhost source set APP --local-git`), served by
//! `git http-backend` (CGI) run per request. A push to the followed branch
//! deploys through the repository's `post-receive` hook (`fnhost sync`).

use std::io;
use std::path::Path;
use std::process::Stdio;

use axum::Router;
use axum::body::Body;
use axum::http::header::{ALLOW, CONTENT_ENCODING, CONTENT_TYPE, HeaderName, HeaderValue};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use bytes::Bytes;
use tokio::io::AsyncReadExt as _;
use tokio::sync::mpsc;

use super::{ApiError, Scope, text};
use crate::cd::{ContinuousDeployer, SourceKind};
use crate::site::Site;

/// The largest CGI header block accepted from `git http-backend`.
const MAX_CGI_HEADER: usize = 64 * 1024;

/// `/{repo}.git/{*rest}`: matchit 0.8 (axum 0.8's router) has no segment
/// suffixes, so the route is `/{repo}/{*rest}` (after every other route)
/// and a repo without `.git` is answered as no route at all.
pub(super) fn routes(site: &Site) -> Router {
    let cd = ContinuousDeployer::new(site.clone());
    let git = any(
        move |scope: Scope, method: Method, uri: Uri, headers: HeaderMap, body: Body| async move {
            git(cd, scope, method, uri, headers, body).await
        },
    );
    Router::new().route("/{repo}/{*rest}", git)
}

/// Which of the smart protocol's requests this is: the service.
fn service(method: &Method, rest: &str, query: Option<&str>) -> Option<&'static str> {
    let pick = |s: &str| match s {
        "git-upload-pack" => Some("git-upload-pack"),
        "git-receive-pack" => Some("git-receive-pack"),
        _ => None,
    };
    match (method, rest) {
        (&Method::GET, "info/refs") => form_urlencoded::parse(query.unwrap_or("").as_bytes())
            .find(|(k, _)| k == "service")
            .and_then(|(_, v)| pick(&v)),
        (&Method::POST, "git-upload-pack" | "git-receive-pack") => pick(rest),
        _ => None,
    }
}

async fn git(
    cd: ContinuousDeployer,
    scope: Scope,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (app, slot) = (scope.app.clone(), scope.slot.clone());
    let path = uri.path().strip_prefix('/').unwrap_or("");
    let (repo, rest) = path.split_once('/').unwrap_or((path, ""));
    let Some(repo) = repo.strip_suffix(".git").filter(|r| !r.is_empty()) else {
        return Err(ApiError::not_found("no such management route"));
    };
    if method != Method::GET && method != Method::POST {
        let resp = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
        return Ok(([(ALLOW, "GET, POST")], resp).into_response());
    }
    if repo != app {
        let why = format!(
            "no such repository: the git URL of this slot is {}/{app}.git",
            scope.base_url
        );
        return Err(ApiError::not_found(why));
    }
    let Some(service) = service(&method, rest, uri.query()) else {
        return Err(ApiError::not_found(
            "only git's smart HTTP protocol is served (info/refs?service=..., git-upload-pack, git-receive-pack)",
        ));
    };
    let slot_arg = scope.slot_arg();
    let repo = match scope.source_config(&cd, "git").await? {
        Some(c) if c.kind == SourceKind::LocalGit => std::path::PathBuf::from(c.location),
        other => {
            let now = match other {
                Some(c) => format!(" (it follows {})", c.describe()),
                None => String::new(),
            };
            return Err(ApiError::not_found(format!(
                "{app}/{slot} has no built-in git repository{now}: `fnhost source set {app}{slot_arg} --local-git` creates it"
            )));
        }
    };
    let (Some(root), Some(name)) = (repo.parent(), repo.file_name()) else {
        let why = "the repository path is not valid";
        return Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, why));
    };
    if !repo.join("HEAD").is_file() {
        return Err(ApiError::not_found(format!(
            "{app}/{slot}: the built-in repository is missing; `fnhost source set {app}{slot_arg} --local-git` makes it again"
        )));
    }
    // The body (a POST): received under the endpoint's limits, then given
    // to http-backend as its stdin with its exact length.
    let upload = if method == Method::POST {
        Some(scope.receive(&headers, body).await?)
    } else {
        None
    };
    let stdin = match &upload {
        Some(u) => Stdio::from(std::fs::File::open(u.path()).map_err(|e| {
            scope.internal(
                &format!("git: cannot reopen an upload: {e}"),
                "internal error",
            )
        })?),
        None => Stdio::null(),
    };
    let header = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
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
        .env("REQUEST_METHOD", method.as_str())
        .env(
            "PATH_INFO",
            format!("/{}/{rest}", Path::new(name).display()),
        )
        .env("QUERY_STRING", uri.query().unwrap_or(""))
        .env("REMOTE_USER", &scope.user)
        .env("REMOTE_ADDR", scope.peer.ip().to_string())
        .env("CONTENT_TYPE", header(CONTENT_TYPE).unwrap_or(""));
    if let Some(u) = &upload {
        cmd.env("CONTENT_LENGTH", u.size().to_string());
    }
    if let Some(enc) = header(CONTENT_ENCODING) {
        // http-backend inflates gzip bodies itself.
        let enc = enc.trim().to_ascii_lowercase();
        if enc != "gzip" && enc != "x-gzip" && enc != "identity" {
            let why = "only gzip request bodies are accepted";
            return Err(ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, why));
        }
        cmd.env("HTTP_CONTENT_ENCODING", enc);
    }
    if let Some(p) = header(HeaderName::from_static("git-protocol"))
        && p.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
    {
        cmd.env("HTTP_GIT_PROTOCOL", p);
    }
    cmd.stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| {
        let why = "git is not available on the server (see the server log)";
        scope.internal(&format!("cannot run git http-backend: {e}"), why)
    })?;
    let (Some(mut stdout), Some(mut stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error",
        ));
    };
    let log = scope.shared.log.clone();
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
    let (header_len, status, cgi_headers) = loop {
        let mut fields = [httparse::EMPTY_HEADER; 64];
        if let Ok(httparse::Status::Complete((len, fields))) =
            httparse::parse_headers(&head, &mut fields)
        {
            let mut status = StatusCode::OK;
            let mut out = Vec::new();
            for f in fields.iter() {
                if f.name.eq_ignore_ascii_case("status") {
                    let code = f.value.split(|b| *b == b' ').next().unwrap_or_default();
                    status = StatusCode::from_bytes(code).unwrap_or(status);
                } else if let (Ok(k), Ok(v)) = (
                    HeaderName::from_bytes(f.name.as_bytes()),
                    HeaderValue::from_bytes(f.value),
                ) {
                    out.push((k, v));
                }
            }
            break (len, status, out);
        }
        if head.len() > MAX_CGI_HEADER {
            let _ = child.kill().await;
            let why = "git http-backend answered too long a header";
            return Err(ApiError::new(StatusCode::BAD_GATEWAY, why));
        }
        match stdout.read(&mut buf).await {
            Ok(0) | Err(_) => {
                let status = child.wait().await.ok();
                log(&format!(
                    "manage: git http-backend {who} ended without an answer ({status:?})"
                ));
                let why = "git http-backend failed (see the server log)";
                return Err(ApiError::new(StatusCode::BAD_GATEWAY, why));
            }
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    };
    let body_start = head.split_off(header_len);
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
        scope.shared.spawn_background(pump);
    } else {
        tokio::spawn(pump);
    }
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    let mut resp = (status, body).into_response();
    for (k, v) in cgi_headers {
        resp.headers_mut().append(k, v);
    }
    Ok(resp)
}
