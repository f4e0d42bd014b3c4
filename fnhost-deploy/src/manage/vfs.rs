//! `/api/vfs/{path}` (read files, list folders, replace or remove a file)
//! and `/api/zip/{folder}/` (download, or unpack a zip over the content).
//! Every change is a new deployment: the active content with the change,
//! validated and activated like any other; a live deployment is never
//! edited in place.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE, ETAG, HeaderName, IF_MATCH, IF_NONE_MATCH};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use serde_json::{Value, json};

use super::api::{self, Job, Waiting, check_writable, deploy_zip_in_turn, etag_matches};
use super::body::{self, TempFile};
use super::paths::{app_path, percent_encode};
use super::{ApiError, Scope, blocking};
use crate::package::{Change, overlay};
use crate::store::{Manifest, ManifestEntry};

pub(super) fn routes() -> Router {
    let vfs = get(read).put(put).delete(delete);
    let zip = get(zip_get).put(zip_put);
    under("/api/vfs", vfs).merge(under("/api/zip", zip))
}

/// Routes at `path`, `path/` and `path/{*path}`.
fn under(path: &str, method_router: MethodRouter) -> Router {
    super::with_slash(path, method_router.clone())
        .route(&format!("{path}/{{*path}}"), method_router)
}

/// The app path after the route's `prefix`, from the encoded request path
/// (checked by [`app_path`]), and whether it ended with `/`.
fn path_of(uri: &Uri, prefix: &str) -> Result<(String, bool), ApiError> {
    let raw = uri.path().strip_prefix(prefix).unwrap_or("");
    let raw = raw.strip_prefix('/').unwrap_or(raw);
    app_path(raw).map_err(ApiError::bad_request)
}

fn tag(hash: &crate::Digest) -> String {
    format!("\"{}\"", hash.to_hex())
}

fn precondition(message: &str) -> ApiError {
    ApiError::new(StatusCode::PRECONDITION_FAILED, message)
}

async fn zip_get(scope: Scope, uri: Uri) -> Result<Response, ApiError> {
    let (rel, _) = path_of(&uri, "/api/zip")?;
    api::zip_download(&scope, rel).await
}

async fn zip_put(
    scope: Scope,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (prefix, _) = path_of(&uri, "/api/zip")?;
    let (upload, result) = change(&scope, &headers, Some(body), move |_, _| {
        Ok(Change::Zip { prefix })
    })
    .await?;
    drop(upload);
    api::outcome_response(&scope, result)
}

/// Checks `If-Match` against the tag of the file `e`; `missing` says why
/// the header is needed.
fn if_match(headers: &HeaderMap, e: &ManifestEntry, missing: &str) -> Result<(), ApiError> {
    match headers.get(IF_MATCH).and_then(|v| v.to_str().ok()) {
        None => Err(precondition(missing)),
        Some(m) if !etag_matches(m, &tag(&e.hash)) => Err(precondition(
            "the file changed: its ETag differs from If-Match",
        )),
        Some(_) => Ok(()),
    }
}

/// The answer to a file edit: `status`, the new deployment's id, and
/// `etag`; or the failed deployment's.
fn edited(
    scope: &Scope,
    result: crate::Result<crate::DeployOutcome>,
    status: StatusCode,
    etag: Option<[(HeaderName, String); 1]>,
) -> Result<Response, ApiError> {
    let Ok(outcome) = result else {
        return api::outcome_response(scope, result);
    };
    let id = [("x-fnhost-deployment", outcome.deployment.id)];
    Ok((status, etag, id).into_response())
}

/// Whether `rel` is a folder of `manifest` (holds a file).
fn is_folder(manifest: &Manifest, rel: &str) -> bool {
    let prefix = format!("{rel}/");
    manifest.files.iter().any(|f| f.path.starts_with(&prefix))
}

async fn put(scope: Scope, uri: Uri, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    let (rel, trailing) = path_of(&uri, "/api/vfs")?;
    if rel.is_empty() || trailing {
        let why = "PUT needs a file path: folders exist only with the files in them";
        return Err(ApiError::bad_request(why));
    }
    let mut created = false;
    let (upload, result) = change(&scope, &headers, Some(body), |manifest, headers| {
        let existing = manifest.get(&rel);
        match existing {
            Some(e) => {
                let why = "the file exists: send If-Match with its ETag (or *) to replace it";
                if_match(headers, e, why)?;
            }
            None if headers.get(IF_MATCH).is_some_and(|v| v.to_str().is_ok()) => {
                let why = "If-Match was given but the file does not exist";
                return Err(precondition(why));
            }
            None => {}
        }
        if is_folder(manifest, &rel) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("{rel} is a folder"),
            ));
        }
        created = existing.is_none();
        let mode = existing.map_or(0o644, |e| e.mode & 0o777);
        Ok(Change::File {
            path: rel.clone(),
            mode,
        })
    })
    .await?;
    let status = match created {
        true => StatusCode::CREATED,
        false => StatusCode::NO_CONTENT,
    };
    let etag = upload.map(|u| [(ETAG, tag(&u.digest()))]);
    edited(&scope, result, status, etag)
}

async fn delete(scope: Scope, uri: Uri, headers: HeaderMap) -> Result<Response, ApiError> {
    let (rel, _) = path_of(&uri, "/api/vfs")?;
    if rel.is_empty() {
        return Err(ApiError::bad_request("the app's root cannot be deleted"));
    }
    let recursive = scope
        .query("recursive")
        .is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
    let (_, result) = change(&scope, &headers, None, |manifest, headers| {
        if let Some(e) = manifest.get(&rel) {
            let why = "send If-Match with the file's ETag (or *) to delete it";
            if_match(headers, e, why)?;
            return Ok(Change::Remove {
                path: rel.clone(),
                folder: false,
            });
        }
        if !is_folder(manifest, &rel) {
            return Err(ApiError::not_found(format!("no file or folder {rel}")));
        }
        if !recursive {
            let why = format!("{rel} is a folder that is not empty: add ?recursive=true");
            return Err(ApiError::new(StatusCode::CONFLICT, why));
        }
        Ok(Change::Remove {
            path: rel.clone(),
            folder: true,
        })
    })
    .await?;
    edited(&scope, result, StatusCode::NO_CONTENT, None)
}

/// Reads a file or lists a folder of the active content (`GET`, `HEAD`).
async fn read(
    scope: Scope,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (rel, _) = path_of(&uri, "/api/vfs")?;
    let active = scope.site().require_active(&scope.app, &scope.slot)?;
    let not_found = || ApiError::not_found(format!("no file or folder {rel:?}"));
    let root = fs::canonicalize(&active.path).map_err(|_| not_found())?;
    let target = if rel.is_empty() {
        root.clone()
    } else {
        match fs::canonicalize(root.join(&rel)) {
            Ok(p) if p.starts_with(&root) => p,
            _ => return Err(not_found()),
        }
    };
    let meta = fs::metadata(&target).map_err(|_| not_found())?;
    if meta.is_dir() {
        return listing(&scope, &headers, &root, &target);
    }
    let canon_rel = target
        .strip_prefix(&root)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let etag = scope
        .shared
        .manifest(&scope.app, &active.deployment)
        .ok()
        .and_then(|m| m.get(&canon_rel).map(|e| [(ETAG, tag(&e.hash))]));
    if let (Some([(_, t)]), Some(inm)) = (
        &etag,
        headers.get(IF_NONE_MATCH).and_then(|v| v.to_str().ok()),
    ) && etag_matches(inm, t)
    {
        return Ok((StatusCode::NOT_MODIFIED, etag, ()).into_response());
    }
    let file = tokio::fs::File::open(&target)
        .await
        .map_err(|_| not_found())?;
    let body = if method == Method::HEAD {
        Body::empty()
    } else {
        body::file_body(file)
    };
    let headers = [
        (CONTENT_TYPE, mime(&canon_rel).to_string()),
        (CONTENT_LENGTH, meta.len().to_string()),
    ];
    Ok((headers, etag, body).into_response())
}

fn listing(
    scope: &Scope,
    headers: &HeaderMap,
    root: &Path,
    dir: &Path,
) -> Result<Response, ApiError> {
    let entries =
        fs::read_dir(dir).map_err(|_| ApiError::not_found("the folder cannot be read"))?;
    let mut out: Vec<(String, Value)> = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let path = e.path();
        // Links are followed only when they stay inside the content.
        let Ok(canon) = fs::canonicalize(&path) else {
            continue;
        };
        if !canon.starts_with(root) {
            continue;
        }
        let Ok(meta) = fs::metadata(&canon) else {
            continue;
        };
        let rel = path
            .strip_prefix(root)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let encoded: Vec<String> = rel.split('/').map(percent_encode).collect();
        let is_dir = meta.is_dir();
        let slash = if is_dir { "/" } else { "" };
        let mtime = meta
            .modified()
            .ok()
            .map(|t| {
                chrono::DateTime::<chrono::Utc>::from(t)
                    .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
            })
            .unwrap_or_default();
        out.push((
            name.clone(),
            json!({
                "name": name,
                "size": if is_dir { 0 } else { meta.len() },
                "mtime": mtime,
                "crtime": mtime,
                "mime": if is_dir { "inode/directory" } else { mime(&name) },
                "href": format!("{}/api/vfs/{}{slash}", scope.base_url, encoded.join("/")),
                "path": format!("/site/wwwroot/{rel}{slash}"),
            }),
        ));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    let list: Vec<Value> = out.into_iter().map(|(_, v)| v).collect();
    Ok(api::json_etag(headers, &Value::Array(list)))
}

fn mime(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("json") => "application/json",
        Some("js" | "mjs" | "cjs") => "text/javascript",
        Some("ts") => "text/x-typescript",
        Some("py") => "text/x-python",
        Some("ps1" | "psm1") => "text/plain",
        Some("txt" | "md" | "csv" | "log") => "text/plain",
        Some("html" | "htm") => "text/html",
        Some("css") => "text/css",
        Some("xml") => "application/xml",
        Some("zip") => "application/zip",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("svg") => "image/svg+xml",
        Some("sh") => "text/x-shellscript",
        _ => "application/octet-stream",
    }
}

/// Makes a new deployment from the active content and a change checked by
/// `decide` (which sees the active manifest, in the slot's turn so that
/// `If-Match` holds until the deployment is made). Returns the upload
/// (`body`, received) with the deployment's result.
pub(super) async fn change(
    scope: &Scope,
    headers: &HeaderMap,
    body: Option<Body>,
    decide: impl FnOnce(&Manifest, &HeaderMap) -> Result<Change, ApiError>,
) -> Result<(Option<body::Upload>, crate::Result<crate::DeployOutcome>), ApiError> {
    check_writable(scope)?;
    let upload = match body {
        Some(body) => Some(scope.receive(headers, body).await?),
        None => None,
    };
    let queue = scope.shared.queue(&scope.app, &scope.slot);
    let _waiting = Waiting::new(&queue);
    let _turn = queue.turn.lock().await;
    let manifest = match scope.site().active(&scope.app, &scope.slot)? {
        Some(a) => scope.shared.manifest(&scope.app, &a.deployment)?,
        None => Arc::new(Manifest::default()),
    };
    let change = decide(&manifest, headers)?;
    let message = change.describe();
    let out = TempFile::new(&scope.shared.tmp, ".zip");
    let store = scope.site().store().clone();
    let (src, dst) = (
        upload.as_ref().map(|u| u.path().to_path_buf()),
        out.0.clone(),
    );
    blocking("change", move || {
        overlay(store.as_ref(), &manifest, &change, src.as_deref(), &dst)
    })
    .await?
    .map_err(ApiError::bad_request)?;
    let job = Job {
        app: scope.app.clone(),
        slot: scope.slot.clone(),
        author: scope.user.clone(),
        message: scope.query("message").map_or(message, str::to_string),
        deployer: scope.query("deployer").unwrap_or("Vfs").to_string(),
    };
    let result = deploy_zip_in_turn(&scope.shared, &queue, job, out.0.clone(), true).await;
    Ok((upload, result))
}
