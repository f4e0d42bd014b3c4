//! Files of the active content: browse, download, upload, and the editor
//! (Code + Test, Integration). Every change is a new deployment made the
//! way the API's vfs makes one, refused with the reason while the slot is
//! read-only.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use minijinja::value::Serde;
use minijinja::{Value, context};
use serde::Serialize;

use super::access::{Page, Place, Viewer, form};
use super::pages::{PER_PAGE, failure, page_context, paged, site_failure};
use super::run::RunInput;
use super::view::see_other;
use super::{PortalState, St};
use crate::manage::vfs::change;
use crate::manage::{ApiError, Scope};
use crate::package::Change;
use crate::package::safe_entry_path;
use crate::store::Manifest;

/// The largest file the editor opens.
const MAX_EDIT_BYTES: u64 = 1024 * 1024;

/// The query of a request, decoded.
pub(super) fn query(req: &Request) -> HashMap<String, String> {
    form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

/// A [`Scope`] for the API's machinery, as the viewer at the place.
fn scope(
    st: &PortalState,
    viewer: &Viewer,
    place: &Place,
    peer: SocketAddr,
    message: String,
) -> Scope {
    Scope {
        app: place.app.clone(),
        slot: place.slot.clone(),
        base: place.base.clone(),
        base_url: place.base.clone(),
        user: viewer.session.user.clone(),
        peer,
        query: vec![
            ("deployer".into(), "Portal".into()),
            ("message".into(), message),
        ],
        shared: st.shared.clone(),
    }
}

pub(super) fn peer_of(req: &Request) -> SocketAddr {
    req.extensions()
        .get::<SocketAddr>()
        .copied()
        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)))
}

/// Why a change made no new active deployment: the page that says so,
/// and the failed deployment's id when one was made (its log has the
/// validator's diagnostics).
pub(super) struct Refused {
    pub(super) page: Response,
    pub(super) failed: Option<String>,
}

impl From<Response> for Refused {
    fn from(page: Response) -> Refused {
        Refused { page, failed: None }
    }
}

/// Makes a new deployment with `what` applied to the active content: the
/// new deployment's id, or why not.
pub(super) async fn deploy_change(
    st: &PortalState,
    viewer: &Viewer,
    place: &Place,
    peer: SocketAddr,
    message: String,
    body: Option<(axum::http::HeaderMap, Body)>,
    what: Change,
) -> Result<String, Refused> {
    if let Some(why) = &place.read_only {
        return Err(failure(st, viewer, Some(place), StatusCode::CONFLICT, why).into());
    }
    let scope = scope(st, viewer, place, peer, message);
    let (headers, body) = match body {
        Some((h, b)) => (h, Some(b)),
        None => (axum::http::HeaderMap::new(), None),
    };
    let result = change(
        &scope,
        &headers,
        body,
        |_: &Manifest, _: &axum::http::HeaderMap| Ok(what),
    )
    .await;
    let outcome = match result {
        Ok((_, outcome)) => outcome,
        Err(ApiError::Site(e)) => return Err(site_failure(st, viewer, Some(place), &e).into()),
        Err(ApiError::Status(status, why)) => {
            return Err(failure(st, viewer, Some(place), status, &why).into());
        }
        Err(ApiError::Response(resp)) => return Err((*resp).into()),
    };
    match outcome {
        Ok(o) => {
            (st.shared.log)(&format!(
                "manage: portal: {} made deployment {} of {}/{}",
                viewer.session.user, o.deployment.id, place.app, place.slot
            ));
            Ok(o.deployment.id)
        }
        Err(e) => {
            let failed = match &e {
                crate::Error::DeploymentFailed { id, .. } => Some(id.clone()),
                _ => None,
            };
            let page = site_failure(st, viewer, Some(place), &e);
            Err(Refused { page, failed })
        }
    }
}

#[derive(Serialize)]
struct Entry {
    name: String,
    path: String,
    folder: bool,
    size: u64,
}

/// The entries of `dir` in a manifest: folders first, then files.
fn listing(manifest: &Manifest, dir: &str) -> Vec<Entry> {
    let prefix = if dir.is_empty() {
        String::new()
    } else {
        format!("{dir}/")
    };
    let mut folders = BTreeMap::new();
    let mut files = Vec::new();
    for e in &manifest.files {
        let Some(rest) = e.path.strip_prefix(&prefix) else {
            continue;
        };
        match rest.split_once('/') {
            Some((folder, _)) => {
                folders.entry(folder.to_string()).or_insert(0u64);
            }
            None => files.push(Entry {
                name: rest.to_string(),
                path: e.path.clone(),
                folder: false,
                size: e.size,
            }),
        }
    }
    let mut out: Vec<Entry> = folders
        .into_keys()
        .map(|name| Entry {
            path: format!("{prefix}{name}"),
            name,
            folder: true,
            size: 0,
        })
        .collect();
    out.extend(files);
    out
}

/// The active manifest, or an empty one before the first deployment.
fn active_manifest(
    st: &PortalState,
    place: &Place,
) -> Result<std::sync::Arc<Manifest>, crate::Error> {
    match st.shared.site.active(&place.app, &place.slot)? {
        Some(a) => st.shared.manifest(&place.app, &a.deployment),
        None => Ok(std::sync::Arc::new(Manifest::default())),
    }
}

/// A path from a form or query, checked (relative, no `..`); `""` is the
/// root.
fn checked_path(raw: &str) -> Result<String, String> {
    let raw = raw.trim_matches('/');
    if raw.is_empty() {
        return Ok(String::new());
    }
    safe_entry_path(raw).map_err(|why| format!("{raw:?}: {why}"))
}

/// `GET .../files?path=DIR`: a folder of the active content.
pub(super) async fn files(Page { st, viewer, place }: Page, req: Request) -> Response {
    let q = query(&req);
    let dir = match checked_path(q.get("path").map_or("", String::as_str)) {
        Ok(d) => d,
        Err(why) => return failure(&st, &viewer, Some(&place), StatusCode::BAD_REQUEST, &why),
    };
    let manifest = match active_manifest(&st, &place) {
        Ok(m) => m,
        Err(e) => return site_failure(&st, &viewer, Some(&place), &e),
    };
    let (entries, pager) = paged(listing(&manifest, &dir), req.uri().query(), PER_PAGE);
    let parent = dir.rsplit_once('/').map_or("", |(p, _)| p).to_string();
    let values = context! {
        dir => dir,
        parent => parent,
        entries => Value::from(Serde(&entries)),
        pager => pager,
    };
    let ctx = page_context(&st, &viewer, Some(&place), "files", values);
    st.views.page(StatusCode::OK, "files.html", ctx)
}

/// `GET .../files/download?path=FILE`: a file, always as an attachment
/// (never shown as a page of this origin).
pub(super) async fn download_file(State(st): State<St>, place: Place, req: Request) -> Response {
    let q = query(&req);
    let path = match checked_path(q.get("path").map_or("", String::as_str)) {
        Ok(p) if !p.is_empty() => p,
        Ok(_) => return (StatusCode::BAD_REQUEST, "give a file: ?path=\n").into_response(),
        Err(why) => return (StatusCode::BAD_REQUEST, why).into_response(),
    };
    match read_active(&st, &place, &path, u64::MAX).await {
        Ok(data) => {
            let name = path.rsplit('/').next().unwrap_or("file");
            let ascii: String = name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || ".-_".contains(c) {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            let disposition = format!("attachment; filename=\"{ascii}\"");
            (
                [
                    (CONTENT_TYPE, "application/octet-stream".to_string()),
                    (CONTENT_DISPOSITION, disposition),
                ],
                data,
            )
                .into_response()
        }
        Err((status, why)) => (status, why).into_response(),
    }
}

/// A file of the active content, at most `max` bytes.
async fn read_active(
    st: &PortalState,
    place: &Place,
    path: &str,
    max: u64,
) -> Result<Vec<u8>, (StatusCode, String)> {
    let manifest =
        active_manifest(st, place).map_err(|e| (StatusCode::NOT_FOUND, e.to_string()))?;
    let Some(entry) = manifest
        .files
        .iter()
        .find(|e| e.path == path && !e.is_symlink())
    else {
        return Err((
            StatusCode::NOT_FOUND,
            format!("no file {path:?} in the active content"),
        ));
    };
    if entry.size > max {
        return Err((
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "{path} is {} bytes: larger than the editor's {max}; download it instead",
                entry.size
            ),
        ));
    }
    let store = st.shared.site.store().clone();
    let hash = entry.hash;
    tokio::task::spawn_blocking(move || {
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut store.open(&hash)?, &mut data)?;
        Ok::<_, std::io::Error>(data)
    })
    .await
    .map_err(|_| {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "the read stopped".to_string(),
        )
    })?
    .map_err(|e| {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot read {path}: {e}"),
        )
    })
}

/// `POST .../files/upload?path=DIR/NAME[&unzip=1]`, the file as the body
/// (sent by the page's script): a new deployment with the file added or
/// replaced, or the zip unpacked into `DIR`. Answers plain text.
pub(super) async fn upload(Page { st, viewer, place }: Page, req: Request) -> Response {
    let q = query(&req);
    let unzip = q.get("unzip").is_some_and(|v| v == "1");
    let path = match checked_path(q.get("path").map_or("", String::as_str)) {
        Ok(p) => p,
        Err(why) => return (StatusCode::BAD_REQUEST, why).into_response(),
    };
    if path.is_empty() && !unzip {
        return (StatusCode::BAD_REQUEST, "give the file's path: ?path=\n").into_response();
    }
    let peer = peer_of(&req);
    let (parts, body) = req.into_parts();
    let (what, message) = if unzip {
        (
            Change::Zip {
                prefix: path.clone(),
            },
            format!("portal: zip unpacked into /{path}"),
        )
    } else {
        (
            Change::File {
                path: path.clone(),
                mode: 0o644,
            },
            format!("portal: upload {path}"),
        )
    };
    match deploy_change(
        &st,
        &viewer,
        &place,
        peer,
        message,
        Some((parts.headers, body)),
        what,
    )
    .await
    {
        Ok(id) => (StatusCode::OK, format!("deployment {id} is active\n")).into_response(),
        Err(refused) => plain_error(refused.page).await,
    }
}

/// An error page as plain text (for the script that uploads).
async fn plain_error(resp: Response) -> Response {
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), 1024 * 1024)
        .await
        .unwrap_or_default();
    let html = String::from_utf8_lossy(&body);
    let message = html
        .split_once("data-test=\"error\">")
        .and_then(|(_, rest)| rest.split_once("</p>"))
        .map_or_else(|| html.to_string(), |(m, _)| m.to_string());
    (
        status,
        [(CONTENT_TYPE, "text/plain; charset=utf-8")],
        unescape(&message),
    )
        .into_response()
}

/// The text of an escaped HTML fragment.
fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&#x2f;", "/")
        .replace("&amp;", "&")
}

/// `GET .../code?path=FILE[&function=F]`: the editor (Code + Test for a
/// function's files, Integration for its function.json).
pub(super) async fn editor(Page { st, viewer, place }: Page, req: Request) -> Response {
    let q = query(&req);
    let function = q.get("function").cloned().unwrap_or_default();
    let path = q.get("path").cloned().unwrap_or_default();
    show_editor(&st, &viewer, &place, &function, path, None).await
}

/// The editor of `path` (or the function's main file), with the result
/// of a Test/Run when there was one.
pub(super) async fn show_editor(
    st: &PortalState,
    viewer: &Viewer,
    place: &Place,
    function: &str,
    requested: String,
    run: Option<(RunInput, Value)>,
) -> Response {
    let manifest = match active_manifest(st, place) {
        Ok(m) => m,
        Err(e) => return site_failure(st, viewer, Some(place), &e),
    };
    // A function's files, with host.json; else every file.
    let prefix = format!("{function}/");
    let files: Vec<String> = manifest
        .files
        .iter()
        .filter(|e| !e.is_symlink())
        .filter(|e| function.is_empty() || e.path.starts_with(&prefix) || e.path == "host.json")
        .map(|e| e.path.clone())
        .collect();
    let path = if requested.is_empty() {
        files
            .iter()
            .find(|p| p.starts_with(&prefix) && !p.ends_with("function.json"))
            .or(files.first())
            .cloned()
            .unwrap_or_default()
    } else {
        requested
    };
    let (content, problem) = match read_active(st, place, &path, MAX_EDIT_BYTES).await {
        Ok(data) => match String::from_utf8(data) {
            Ok(text) => (Some(text), None),
            Err(_) => (
                None,
                Some(format!("{path} is not text: download it from Files")),
            ),
        },
        Err((_, why)) if !path.is_empty() => (None, Some(why)),
        Err(_) => (None, None),
    };
    let page = EditorPage {
        function,
        files,
        path: &path,
        content,
        problem,
        diagnostics: Vec::new(),
        run,
    };
    page.render(st, viewer, place, StatusCode::OK)
}

/// What the editor page shows.
struct EditorPage<'a> {
    function: &'a str,
    files: Vec<String>,
    path: &'a str,
    content: Option<String>,
    problem: Option<String>,
    diagnostics: Vec<(u32, String)>,
    run: Option<(RunInput, Value)>,
}

impl EditorPage<'_> {
    fn render(
        self,
        st: &PortalState,
        viewer: &Viewer,
        place: &Place,
        status: StatusCode,
    ) -> Response {
        let content = self.content;
        let text_of = |line: u32| {
            let i = usize::try_from(line).unwrap_or(0).checked_sub(1)?;
            content.as_deref()?.lines().nth(i).map(str::to_string)
        };
        let lines: Vec<Value> = self
            .diagnostics
            .iter()
            .map(|(line, message)| {
                context! { line => *line, message => message.clone(), text => text_of(*line) }
            })
            .collect();
        let nav = if self.path.ends_with("function.json") {
            "integration"
        } else {
            "code"
        };
        let (input, result) = match self.run {
            Some((input, result)) => (input, Some(result)),
            None => (
                RunInput {
                    method: "GET".into(),
                    ..RunInput::default()
                },
                None,
            ),
        };
        let values = context! {
            function => self.function,
            files => self.files,
            path => self.path,
            content => content,
            problem => self.problem,
            diagnostics => lines,
            run_input => Value::from(Serde(&input)),
            run => result,
        };
        let ctx = page_context(st, viewer, Some(place), nav, values);
        st.views.page(status, "editor.html", ctx)
    }
}

/// `POST .../code` (`path`, `content`, `function`): saves the file as a
/// new deployment. A function.json is checked first: its JSON errors and
/// the validator's diagnostics are shown at their line.
pub(super) async fn save(Page { st, viewer, place }: Page, req: Request) -> Response {
    let peer = peer_of(&req);
    let f = match form(req.into_body(), 4 * 1024 * 1024).await {
        Ok(f) => f,
        Err(resp) => return resp,
    };
    let function = f.get("function").cloned().unwrap_or_default();
    let content = f
        .get("content")
        .cloned()
        .unwrap_or_default()
        .replace("\r\n", "\n");
    let path = match checked_path(f.get("path").map_or("", String::as_str)) {
        Ok(p) if !p.is_empty() => p,
        Ok(_) => {
            return failure(
                &st,
                &viewer,
                Some(&place),
                StatusCode::BAD_REQUEST,
                "give the file's path",
            );
        }
        Err(why) => return failure(&st, &viewer, Some(&place), StatusCode::BAD_REQUEST, &why),
    };
    if let Some(why) = &place.read_only {
        return failure(&st, &viewer, Some(&place), StatusCode::CONFLICT, why);
    }
    let mut diagnostics = Vec::new();
    if path.ends_with(".json")
        && let Err(e) = serde_json::from_str::<serde_json::Value>(&content)
    {
        let line = u32::try_from(e.line()).unwrap_or(0);
        diagnostics.push((line, format!("not valid JSON: {e}")));
    }
    let message = format!("portal: edit {path}");
    let what = Change::Files(vec![(path.clone(), content.clone().into_bytes())]);
    let refused = if diagnostics.is_empty() {
        match deploy_change(&st, &viewer, &place, peer, message, None, what).await {
            Ok(id) => {
                viewer.flash(&st, format!("Saved {path} as deployment {id}."));
                let back: String = form_urlencoded::Serializer::new(String::new())
                    .append_pair("function", &function)
                    .append_pair("path", &path)
                    .finish();
                return see_other(&format!("{}/code?{back}", place.base));
            }
            Err(refused) => refused,
        }
    } else {
        Refused::from(StatusCode::UNPROCESSABLE_ENTITY.into_response())
    };
    // The validator's diagnostics of this file, from the failed
    // deployment's log (`PATH:LINE:COL: error[CODE]: ...`).
    if let Some(id) = &refused.failed
        && let Ok(d) = st.shared.site.deployment(&place.app, id)
    {
        diagnostics.extend(d.log.iter().filter_map(|e| at_line(&e.message, &path)));
    }
    if diagnostics.is_empty() {
        return refused.page;
    }
    let page = EditorPage {
        function: &function,
        files: vec![path.clone()],
        path: &path,
        content: Some(content),
        problem: Some(
            "Not saved: the app would not load. Fix the problems shown at their line.".into(),
        ),
        diagnostics,
        run: None,
    };
    page.render(&st, &viewer, &place, StatusCode::UNPROCESSABLE_ENTITY)
}

/// A diagnostic about `path` (`PATH:LINE[:COL]: MESSAGE`) with its line.
fn at_line(message: &str, path: &str) -> Option<(u32, String)> {
    let rest = message.strip_prefix(path)?.strip_prefix(':')?;
    let (line, rest) = rest.split_once(':')?;
    let line: u32 = line.parse().ok()?;
    let rest = rest.split_once(": ").map_or(rest, |(col, m)| {
        if col.bytes().all(|b| b.is_ascii_digit()) {
            m
        } else {
            rest
        }
    });
    Some((line, rest.trim().to_string()))
}
