//! `/api/vfs/{path}` (read files, list folders, replace or remove a file)
//! and `/api/zip/{folder}/` (download, or unpack a zip over the content).
//! Every change is a new deployment: the active content with the change,
//! validated and activated like any other; a live deployment is never
//! edited in place.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read as _};
use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE, ETAG, IF_MATCH, IF_NONE_MATCH};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use serde_json::{Value, json};

use super::api::{self, Job, Waiting, check_writable, deploy_zip_in_turn, etag_matches};
use super::body::{self, TempFile};
use super::paths::{app_path, percent_encode};
use super::{ApiError, Scope};
use crate::package::safe_entry_path;
use crate::store::{Manifest, Store};

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
    app_path(raw).map_err(|why| ApiError::new(StatusCode::BAD_REQUEST, why))
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

async fn put(scope: Scope, uri: Uri, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    let (rel, trailing) = path_of(&uri, "/api/vfs")?;
    if rel.is_empty() || trailing {
        let why = "PUT needs a file path: folders exist only with the files in them";
        return Err(ApiError::new(StatusCode::BAD_REQUEST, why));
    }
    let mut created = false;
    let (upload, result) = change(&scope, &headers, Some(body), |manifest, headers| {
        let existing = manifest.get(&rel);
        match (
            existing,
            headers.get(IF_MATCH).and_then(|v| v.to_str().ok()),
        ) {
            (Some(_), None) => {
                let why = "the file exists: send If-Match with its ETag (or *) to replace it";
                return Err(precondition(why));
            }
            (Some(e), Some(m)) if !etag_matches(m, &tag(&e.hash)) => {
                return Err(precondition(
                    "the file changed: its ETag differs from If-Match",
                ));
            }
            (None, Some(_)) => {
                return Err(precondition(
                    "If-Match was given but the file does not exist",
                ));
            }
            _ => {}
        }
        let prefix = format!("{rel}/");
        if manifest.files.iter().any(|f| f.path.starts_with(&prefix)) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("{rel} is a folder"),
            ));
        }
        created = existing.is_none();
        Ok(Change::File {
            path: rel.clone(),
            mode: existing.map_or(0o644, |e| e.mode & 0o777),
        })
    })
    .await?;
    let Ok(outcome) = result else {
        return api::outcome_response(&scope, result);
    };
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::NO_CONTENT
    };
    let etag = upload.map(|u| [(ETAG, tag(&u.digest()))]);
    Ok((
        status,
        etag,
        [("x-fnhost-deployment", outcome.deployment.id)],
    )
        .into_response())
}

async fn delete(scope: Scope, uri: Uri, headers: HeaderMap) -> Result<Response, ApiError> {
    let (rel, _) = path_of(&uri, "/api/vfs")?;
    if rel.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "the app's root cannot be deleted",
        ));
    }
    let recursive = scope
        .query("recursive")
        .is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
    let (_, result) = change(&scope, &headers, None, |manifest, headers| {
        if let Some(e) = manifest.get(&rel) {
            match headers.get(IF_MATCH).and_then(|v| v.to_str().ok()) {
                None => {
                    let why = "send If-Match with the file's ETag (or *) to delete it";
                    return Err(precondition(why));
                }
                Some(m) if !etag_matches(m, &tag(&e.hash)) => {
                    return Err(precondition(
                        "the file changed: its ETag differs from If-Match",
                    ));
                }
                Some(_) => {}
            }
            let path = rel.clone();
            return Ok(Change::Remove {
                path,
                folder: false,
            });
        }
        let prefix = format!("{rel}/");
        if !manifest.files.iter().any(|f| f.path.starts_with(&prefix)) {
            let why = format!("no file or folder {rel}");
            return Err(ApiError::new(StatusCode::NOT_FOUND, why));
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
    let Ok(outcome) = result else {
        return api::outcome_response(&scope, result);
    };
    Ok((
        StatusCode::NO_CONTENT,
        [("x-fnhost-deployment", outcome.deployment.id)],
    )
        .into_response())
}

/// Reads a file or lists a folder of the active content (`GET`, `HEAD`).
async fn read(
    scope: Scope,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (rel, _) = path_of(&uri, "/api/vfs")?;
    let Some(active) = scope.site().active(&scope.app, &scope.slot)? else {
        let (app, slot) = (scope.app.clone(), scope.slot.clone());
        return Err(crate::Error::NoActiveDeployment { app, slot }.into());
    };
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, format!("no file or folder {rel:?}"));
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
    let entries = fs::read_dir(dir)
        .map_err(|_| ApiError::new(StatusCode::NOT_FOUND, "the folder cannot be read"))?;
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

/// A change to the active content.
pub(super) enum Change {
    /// Put the upload at `path`.
    File { path: String, mode: u32 },
    /// Remove a file, or a folder and everything in it.
    Remove { path: String, folder: bool },
    /// Unpack the uploaded zip under `prefix`.
    Zip { prefix: String },
    /// Put these files (path, content), keeping the mode of a file
    /// replaced (the portal's editor).
    Files(Vec<(String, Vec<u8>)>),
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
    let message = match &change {
        Change::File { path, .. } => format!("vfs: put {path}"),
        Change::Remove { path, .. } => format!("vfs: delete {path}"),
        Change::Zip { prefix } => format!("zip: unpacked into /{prefix}"),
        Change::Files(files) => {
            let names: Vec<&str> = files.iter().map(|(p, _)| p.as_str()).collect();
            format!("edit: {}", names.join(", "))
        }
    };
    let out = TempFile::new(&scope.shared.tmp, ".zip");
    let store = scope.site().store().clone();
    let (src, dst) = (
        upload.as_ref().map(|u| u.path().to_path_buf()),
        out.0.clone(),
    );
    tokio::task::spawn_blocking(move || {
        overlay(store.as_ref(), &manifest, &change, src.as_deref(), &dst)
    })
    .await
    .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "the change stopped"))?
    .map_err(|why| ApiError::new(StatusCode::BAD_REQUEST, why))?;
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

/// Writes a zip of `base` with `change` applied to `out`. The error is a
/// message for the client.
fn overlay(
    store: &dyn Store,
    base: &Manifest,
    change: &Change,
    upload: Option<&Path>,
    out: &Path,
) -> Result<(), String> {
    use zip::write::SimpleFileOptions;
    let io_err = |e: io::Error| format!("cannot build the new version: {e}");
    let zerr = |e: zip::result::ZipError| format!("cannot build the new version: {e}");
    let opts = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .last_modified_time(zip::DateTime::default());
    // What the change replaces or removes.
    let mut replaced: HashSet<String> = HashSet::new();
    let mut removed_folder: Option<String> = None;
    let mut archive = None;
    match change {
        Change::File { path, .. } => {
            replaced.insert(path.clone());
        }
        Change::Remove { path, folder } => {
            replaced.insert(path.clone());
            if *folder {
                removed_folder = Some(format!("{path}/"));
            }
        }
        Change::Zip { prefix } => {
            let src = upload.ok_or("no zip was sent")?;
            let f = File::open(src).map_err(io_err)?;
            let mut z =
                zip::ZipArchive::new(f).map_err(|e| format!("the body is not a valid zip: {e}"))?;
            for i in 0..z.len() {
                let entry = z.by_index_raw(i).map_err(zerr)?;
                if entry.is_dir() {
                    continue;
                }
                let raw = entry.name().map_err(zerr)?.to_string();
                let name =
                    safe_entry_path(&raw).map_err(|why| format!("zip entry {raw:?}: {why}"))?;
                replaced.insert(join(prefix, &name));
            }
            archive = Some(z);
        }
        Change::Files(files) => {
            replaced.extend(files.iter().map(|(p, _)| p.clone()));
        }
    }
    let f = File::create(out).map_err(io_err)?;
    let mut zw = zip::ZipWriter::new(BufWriter::new(f));
    for e in &base.files {
        if replaced.contains(&e.path)
            || removed_folder
                .as_deref()
                .is_some_and(|p| e.path.starts_with(p))
        {
            continue;
        }
        if e.is_symlink() {
            let mut target = String::new();
            store
                .open(&e.hash)
                .and_then(|mut r| r.read_to_string(&mut target))
                .map_err(io_err)?;
            zw.add_symlink(e.path.as_str(), target, opts.unix_permissions(0o777))
                .map_err(zerr)?;
        } else {
            zw.start_file(
                e.path.as_str(),
                opts.unix_permissions(e.mode & 0o777)
                    .large_file(e.size >= 0xFFFF_FFFF),
            )
            .map_err(zerr)?;
            io::copy(&mut store.open(&e.hash).map_err(io_err)?, &mut zw).map_err(io_err)?;
        }
    }
    match change {
        Change::File { path, mode, .. } => {
            let src = upload.ok_or("no file was sent")?;
            let size = fs::metadata(src).map_err(io_err)?.len();
            zw.start_file(
                path.as_str(),
                opts.unix_permissions(*mode).large_file(size >= 0xFFFF_FFFF),
            )
            .map_err(zerr)?;
            io::copy(&mut File::open(src).map_err(io_err)?, &mut zw).map_err(io_err)?;
        }
        Change::Remove { .. } => {}
        Change::Files(files) => {
            for (path, data) in files {
                let mode = base
                    .files
                    .iter()
                    .find(|e| &e.path == path && !e.is_symlink())
                    .map_or(0o644, |e| e.mode & 0o777);
                zw.start_file(path.as_str(), opts.unix_permissions(mode))
                    .map_err(zerr)?;
                io::Write::write_all(&mut zw, data).map_err(io_err)?;
            }
        }
        Change::Zip { prefix } => {
            if let Some(mut z) = archive {
                for i in 0..z.len() {
                    let entry = z.by_index_raw(i).map_err(zerr)?;
                    if entry.is_dir() {
                        continue;
                    }
                    let raw = entry.name().map_err(zerr)?.to_string();
                    let name = safe_entry_path(&raw)?;
                    zw.raw_copy_file_rename(entry, join(prefix, &name))
                        .map_err(zerr)?;
                }
            }
        }
    }
    let w = zw.finish().map_err(zerr)?;
    w.into_inner().map_err(|e| io_err(e.into_error()))?;
    Ok(())
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}/{name}")
    }
}
