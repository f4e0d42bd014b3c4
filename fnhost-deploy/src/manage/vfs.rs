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

use hyper::header::HeaderValue;
use hyper::{Method, Response, StatusCode};
use serde_json::{Value, json};

use super::api::{self, Job, Waiting, deploy_zip_in_turn, error_response, etag_matches};
use super::body::{self, TempFile, empty};
use super::paths::{app_path, percent_encode};
use super::{AppRequest, HttpResponse, Manage, text};
use crate::error::Error;
use crate::package::safe_entry_path;
use crate::store::{Manifest, Store};

pub(super) fn register(m: &mut Manage) {
    m.add(
        &[Method::GET, Method::HEAD, Method::PUT, Method::DELETE],
        "/api/vfs/{*path}",
        vfs,
    );
    m.add(&[Method::GET, Method::PUT], "/api/zip/{*path}", zip);
}

fn path_of(req: &AppRequest) -> Result<(String, bool), HttpResponse> {
    app_path(req.param("path").unwrap_or("")).map_err(|why| text(StatusCode::BAD_REQUEST, why))
}

fn tag(hash: &crate::Digest) -> String {
    format!("\"{}\"", hash.to_hex())
}

async fn zip(req: AppRequest) -> HttpResponse {
    let (rel, _) = match path_of(&req) {
        Ok(p) => p,
        Err(resp) => return resp,
    };
    if req.parts.method == Method::GET {
        return api::zip_download(req, rel).await;
    }
    let prefix = rel.clone();
    change(req, move |_, _| Ok(Change::Zip { prefix })).await
}

async fn vfs(req: AppRequest) -> HttpResponse {
    let (rel, trailing) = match path_of(&req) {
        Ok(p) => p,
        Err(resp) => return resp,
    };
    match req.parts.method {
        Method::GET | Method::HEAD => read(req, rel).await,
        Method::PUT => {
            if rel.is_empty() || trailing {
                return text(
                    StatusCode::BAD_REQUEST,
                    "PUT needs a file path: folders exist only with the files in them",
                );
            }
            change(req, move |manifest, req| {
                let existing = manifest.get(&rel);
                let if_match = req.header("if-match");
                match (existing, if_match) {
                    (Some(_), None) => {
                        return Err(precondition(
                            "the file exists: send If-Match with its ETag (or *) to replace it",
                        ));
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
                    return Err(text(StatusCode::CONFLICT, &format!("{rel} is a folder")));
                }
                Ok(Change::File {
                    path: rel.clone(),
                    mode: existing.map_or(0o644, |e| e.mode & 0o777),
                    created: existing.is_none(),
                })
            })
            .await
        }
        _ => {
            if rel.is_empty() {
                return text(StatusCode::BAD_REQUEST, "the app's root cannot be deleted");
            }
            let recursive = req
                .query("recursive")
                .is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
            change(req, move |manifest, req| {
                if let Some(e) = manifest.get(&rel) {
                    match req.header("if-match") {
                        None => {
                            return Err(precondition(
                                "send If-Match with the file's ETag (or *) to delete it",
                            ));
                        }
                        Some(m) if !etag_matches(m, &tag(&e.hash)) => {
                            return Err(precondition(
                                "the file changed: its ETag differs from If-Match",
                            ));
                        }
                        Some(_) => {}
                    }
                    return Ok(Change::Remove {
                        path: rel.clone(),
                        folder: false,
                    });
                }
                let prefix = format!("{rel}/");
                if !manifest.files.iter().any(|f| f.path.starts_with(&prefix)) {
                    return Err(text(
                        StatusCode::NOT_FOUND,
                        &format!("no file or folder {rel}"),
                    ));
                }
                if !recursive {
                    return Err(text(
                        StatusCode::CONFLICT,
                        &format!("{rel} is a folder that is not empty: add ?recursive=true"),
                    ));
                }
                Ok(Change::Remove {
                    path: rel.clone(),
                    folder: true,
                })
            })
            .await
        }
    }
}

fn precondition(message: &str) -> HttpResponse {
    text(StatusCode::PRECONDITION_FAILED, message)
}

/// Reads a file or lists a folder of the active content.
async fn read(req: AppRequest, rel: String) -> HttpResponse {
    let shared = req.shared.clone();
    let active = match shared.site.active(&req.app, &req.slot) {
        Ok(Some(a)) => a,
        Ok(None) => {
            return error_response(
                &shared,
                &Error::NoActiveDeployment {
                    app: req.app.clone(),
                    slot: req.slot.clone(),
                },
            );
        }
        Err(e) => return error_response(&shared, &e),
    };
    let not_found = || text(StatusCode::NOT_FOUND, &format!("no file or folder {rel:?}"));
    let Ok(root) = fs::canonicalize(&active.path) else {
        return not_found();
    };
    let target = if rel.is_empty() {
        root.clone()
    } else {
        match fs::canonicalize(root.join(&rel)) {
            Ok(p) if p.starts_with(&root) => p,
            _ => return not_found(),
        }
    };
    let Ok(meta) = fs::metadata(&target) else {
        return not_found();
    };
    if meta.is_dir() {
        return listing(&req, &root, &target);
    }
    let canon_rel = target
        .strip_prefix(&root)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let etag = shared
        .manifest(&req.app, &active.deployment)
        .ok()
        .and_then(|m| m.get(&canon_rel).map(|e| tag(&e.hash)));
    if let (Some(t), Some(inm)) = (&etag, req.header("if-none-match"))
        && etag_matches(inm, t)
    {
        let mut resp = empty(StatusCode::NOT_MODIFIED);
        if let Ok(v) = HeaderValue::from_str(t) {
            resp.headers_mut().insert(hyper::header::ETAG, v);
        }
        return resp;
    }
    let file = match tokio::fs::File::open(&target).await {
        Ok(f) => f,
        Err(_) => return not_found(),
    };
    let head = req.parts.method == Method::HEAD;
    let mut resp = if head {
        empty(StatusCode::OK)
    } else {
        Response::new(body::file_body(file))
    };
    let h = resp.headers_mut();
    h.insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static(mime(&canon_rel)),
    );
    h.insert(hyper::header::CONTENT_LENGTH, HeaderValue::from(meta.len()));
    if let Some(t) = etag
        && let Ok(v) = HeaderValue::from_str(&t)
    {
        h.insert(hyper::header::ETAG, v);
    }
    resp
}

fn listing(req: &AppRequest, root: &Path, dir: &Path) -> HttpResponse {
    let Ok(entries) = fs::read_dir(dir) else {
        return text(StatusCode::NOT_FOUND, "the folder cannot be read");
    };
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
                "href": format!("{}/api/vfs/{}{slash}", req.base_url, encoded.join("/")),
                "path": format!("/site/wwwroot/{rel}{slash}"),
            }),
        ));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    let list: Vec<Value> = out.into_iter().map(|(_, v)| v).collect();
    api::json_etag(&req.parts.headers, StatusCode::OK, &Value::Array(list))
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
enum Change {
    /// Put the upload at `path`.
    File {
        path: String,
        mode: u32,
        created: bool,
    },
    /// Remove a file, or a folder and everything in it.
    Remove { path: String, folder: bool },
    /// Unpack the uploaded zip under `prefix`.
    Zip { prefix: String },
}

/// Makes a new deployment from the active content and a change checked by
/// `decide` (which sees the active manifest, in the slot's turn so that
/// `If-Match` holds until the deployment is made).
async fn change(
    mut req: AppRequest,
    decide: impl FnOnce(&Manifest, &AppRequest) -> Result<Change, HttpResponse>,
) -> HttpResponse {
    let shared = req.shared.clone();
    match shared.site.continuous_deployment(&req.app, &req.slot) {
        Ok(Some(cd)) => {
            return error_response(
                &shared,
                &Error::ReadOnly {
                    app: req.app.clone(),
                    slot: req.slot.clone(),
                    source_of_truth: cd.source,
                },
            );
        }
        Ok(None) => {}
        Err(e) => return error_response(&shared, &e),
    }
    let upload = if req.parts.method == Method::PUT {
        match req.receive().await {
            Ok(u) => Some(u),
            Err(resp) => return resp,
        }
    } else {
        None
    };
    let queue = shared.queue(&req.app, &req.slot);
    let _waiting = Waiting::new(&queue);
    let _turn = queue.turn.lock().await;
    let manifest = match shared.site.active(&req.app, &req.slot) {
        Ok(Some(a)) => match shared.manifest(&req.app, &a.deployment) {
            Ok(m) => m,
            Err(e) => return error_response(&shared, &e),
        },
        Ok(None) => Arc::new(Manifest::default()),
        Err(e) => return error_response(&shared, &e),
    };
    let change = match decide(&manifest, &req) {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    let (message, created) = match &change {
        Change::File { path, created, .. } => (format!("vfs: put {path}"), *created),
        Change::Remove { path, .. } => (format!("vfs: delete {path}"), false),
        Change::Zip { prefix } => (format!("zip: unpacked into /{prefix}"), false),
    };
    let out = TempFile::new(shared.tmp(), ".zip");
    let store = shared.site.store().clone();
    let (src, dst) = (
        upload.as_ref().map(|u| u.path().to_path_buf()),
        out.0.clone(),
    );
    let built = tokio::task::spawn_blocking(move || {
        overlay(store.as_ref(), &manifest, &change, src.as_deref(), &dst)
    })
    .await;
    match built {
        Ok(Ok(())) => {}
        Ok(Err(why)) => return text(StatusCode::BAD_REQUEST, &why),
        Err(_) => return text(StatusCode::INTERNAL_SERVER_ERROR, "the change stopped"),
    }
    let job = Job {
        app: req.app.clone(),
        slot: req.slot.clone(),
        author: req.user.clone(),
        message: req.query("message").map_or(message, str::to_string),
        deployer: req.query("deployer").unwrap_or("Vfs").to_string(),
    };
    let result = deploy_zip_in_turn(&shared, &queue, job, out.0.clone(), true).await;
    drop(out);
    let is_vfs_file = upload.is_some()
        && req.param("path").is_some()
        && !req.parts.uri.path().contains("/api/zip/");
    match (&result, is_vfs_file, req.parts.method == Method::DELETE) {
        (Ok(outcome), true, _) => {
            let mut resp = empty(if created {
                StatusCode::CREATED
            } else {
                StatusCode::NO_CONTENT
            });
            if let Some(u) = &upload
                && let Ok(v) = HeaderValue::from_str(&tag(&u.digest()))
            {
                resp.headers_mut().insert(hyper::header::ETAG, v);
            }
            if let Ok(v) = HeaderValue::from_str(&outcome.deployment.id) {
                resp.headers_mut().insert("x-fnhost-deployment", v);
            }
            resp
        }
        (Ok(outcome), false, true) => {
            let mut resp = empty(StatusCode::NO_CONTENT);
            if let Ok(v) = HeaderValue::from_str(&outcome.deployment.id) {
                resp.headers_mut().insert("x-fnhost-deployment", v);
            }
            resp
        }
        _ => api::outcome_response(&shared, &req, &result),
    }
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
