//! Kudu's deployment routes: zipdeploy, the deployments API, downloads.

use std::sync::Arc;

use hyper::header::HeaderValue;
use hyper::{HeaderMap, Method, StatusCode};
use serde_json::{Value, json};

use super::body::{self, TempFile, empty};
use super::paths;
use super::{AppRequest, HttpResponse, Manage, Shared, SlotQueue, json, text};
use crate::deployment::{self, Deployment, Level, Status};
use crate::error::Error;
use crate::site::{Content, DeployOutcome, DeployRequest, Observer};
use crate::store::{Digest, Manifest};

pub(super) fn register(m: &mut Manage) {
    m.add(&[Method::POST], "/api/zipdeploy", zipdeploy);
    m.add(&[Method::GET], "/api/deployments/latest", latest);
    m.add(&[Method::GET], "/api/deployments", list);
    m.add(
        &[Method::GET, Method::PUT, Method::DELETE],
        "/api/deployments/{id}",
        one,
    );
    m.add(&[Method::GET], "/api/deployments/{id}/log", log);
    m.add(&[Method::GET], "/api/isdeploying", is_deploying);
    m.add(
        &[Method::GET],
        "/api/functions/admin/download",
        admin_download,
    );
}

// ----- errors -----

/// The HTTP answer to a library error. Internal errors (file system,
/// store) are logged; the client gets no server paths.
pub(super) fn error_response(shared: &Shared, e: &Error) -> HttpResponse {
    let status = match e {
        Error::AppNotFound { .. }
        | Error::DeploymentNotFound { .. }
        | Error::NoActiveDeployment { .. } => StatusCode::NOT_FOUND,
        Error::InvalidName { .. } | Error::Package { .. } | Error::DeploymentFailed { .. } => {
            StatusCode::BAD_REQUEST
        }
        Error::Busy { .. }
        | Error::ReadOnly { .. }
        | Error::DeploymentInUse { .. }
        | Error::NoRollbackTarget { .. } => StatusCode::CONFLICT,
        _ => {
            (shared.log)(&format!("manage: {e}"));
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error (see the server log)",
            );
        }
    };
    let mut message = e.to_string();
    if let Error::Busy { holder, .. } = e {
        message = format!(
            "There is a deployment currently in progress ({}). Try again when it completes, or leave out wait=false to queue behind it.",
            holder
                .as_deref()
                .filter(|h| !h.is_empty())
                .unwrap_or("id unknown")
        );
    }
    // Uploads are named after the endpoint's temporary folder: say "the
    // upload" instead.
    let tmp = format!("{}/", shared.tmp().display());
    let message = message.replace(&tmp, "upload ");
    text(status, &message)
}

fn bad_request(message: &str) -> HttpResponse {
    text(StatusCode::BAD_REQUEST, message)
}

// ----- records as Kudu writes them -----

/// A record in Kudu's shape (plus fnhost's `slot`, `source_id`, `files`,
/// `bytes`).
pub(super) fn record_json(r: &Deployment, base_url: &str, last_success: Option<&str>) -> Value {
    let status_text = match r.status {
        Status::Success => String::new(),
        Status::Failed => r
            .first_error()
            .and_then(|e| e.lines().next())
            .unwrap_or("failed")
            .to_string(),
        Status::Pending => "Pending".into(),
        Status::Building => "Building".into(),
        Status::Deploying => "Deploying".into(),
    };
    let progress = if r.status.is_final() {
        String::new()
    } else {
        r.log.last().map(|e| e.message.clone()).unwrap_or_default()
    };
    let url = format!("{base_url}/api/deployments/{}", r.id);
    json!({
        "id": r.id,
        "status": r.status.code(),
        "status_text": status_text,
        "author_email": "",
        "author": r.author,
        "deployer": r.deployer,
        "message": r.message,
        "progress": progress,
        "received_time": r.received_time,
        "start_time": r.start_time,
        "end_time": r.end_time,
        "last_success_end_time": last_success,
        "complete": r.status.is_final(),
        "active": r.active,
        "is_temp": false,
        "is_readonly": false,
        "url": url,
        "log_url": format!("{url}/log"),
        "site_name": r.app,
        "slot": r.slot,
        "source_id": r.source_id,
        "files": r.files,
        "bytes": r.bytes,
    })
}

/// The slot's records in Kudu's shape, newest first.
fn records_json(
    site: &crate::Site,
    app: &str,
    slot: &str,
    base_url: &str,
) -> crate::Result<Vec<(String, Value)>> {
    // Not waiting for tidying up: this runs on the server's threads.
    let mut records = site.deployments_now(app, Some(slot))?;
    records.reverse();
    let mut last_success: Option<String> = None;
    let mut out = Vec::with_capacity(records.len());
    for r in &records {
        if r.status == Status::Success && r.slot == slot {
            last_success.clone_from(&r.end_time);
        }
        out.push((
            r.id.clone(),
            record_json(r, base_url, last_success.as_deref()),
        ));
    }
    out.reverse();
    Ok(out)
}

/// Whether an `If-None-Match` / `If-Match` header value matches `tag`
/// (weak comparison; `*` matches anything).
pub(super) fn etag_matches(header: &str, tag: &str) -> bool {
    let bare = |t: &str| t.trim().trim_start_matches("W/").to_string();
    header
        .split(',')
        .any(|t| t.trim() == "*" || bare(t) == bare(tag))
}

/// A JSON answer with an `ETag` (a hash of the body); 304 when the client
/// has it already.
pub(super) fn json_etag(headers: &HeaderMap, status: StatusCode, value: &Value) -> HttpResponse {
    let data = value.to_string();
    let tag = format!("\"{}\"", &Digest::of(data.as_bytes()).to_hex()[..32]);
    let cached = headers
        .get(hyper::header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| etag_matches(v, &tag));
    let mut resp = if cached {
        empty(StatusCode::NOT_MODIFIED)
    } else {
        body::bytes(status, "application/json; charset=utf-8", data.into_bytes())
    };
    if let Ok(v) = HeaderValue::from_str(&tag) {
        resp.headers_mut().insert(hyper::header::ETAG, v);
    }
    resp
}

fn query_bool(req: &AppRequest, name: &str) -> Option<bool> {
    req.query(name).map(|v| {
        let v = v.trim();
        v.is_empty() || v.eq_ignore_ascii_case("true") || v == "1"
    })
}

// ----- the queue -----

/// Counts a deployment from its receipt to its end, for `latest`.
pub(super) struct Waiting(Arc<SlotQueue>);

impl Waiting {
    pub(super) fn new(q: &Arc<SlotQueue>) -> Waiting {
        q.state.lock().unwrap_or_else(|e| e.into_inner()).waiting += 1;
        Waiting(q.clone())
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        let mut st = self.0.state.lock().unwrap_or_else(|e| e.into_inner());
        st.waiting = st.waiting.saturating_sub(1);
    }
}

struct QueueObserver(Arc<SlotQueue>);

impl Observer for QueueObserver {
    fn status(&self, d: &Deployment) {
        let mut st = self.0.state.lock().unwrap_or_else(|e| e.into_inner());
        st.running = Some(d.clone());
    }
    fn progress(&self, done: u64, total: u64) {
        let mut st = self.0.state.lock().unwrap_or_else(|e| e.into_inner());
        st.progress = Some((done, total));
    }
}

/// What a deployment through the endpoint is.
pub(super) struct Job {
    pub(super) app: String,
    pub(super) slot: String,
    pub(super) author: String,
    pub(super) message: String,
    pub(super) deployer: String,
}

/// Deploys a zip; the caller holds the slot's turn. The outcome is
/// remembered for `latest`.
pub(super) async fn deploy_zip_in_turn(
    shared: &Arc<Shared>,
    queue: &Arc<SlotQueue>,
    job: Job,
    zip: std::path::PathBuf,
    wait: bool,
) -> crate::Result<DeployOutcome> {
    let site = shared.site.clone();
    let obs = QueueObserver(queue.clone());
    let (app, slot) = (job.app.clone(), job.slot.clone());
    let result = tokio::task::spawn_blocking(move || {
        site.deploy(
            DeployRequest::new(job.app, Content::Zip(zip))
                .with_slot(job.slot)
                .with_author(job.author)
                .with_message(job.message)
                .with_deployer(job.deployer)
                .with_wait(wait)
                .with_observer(&obs),
        )
    })
    .await
    .unwrap_or_else(|e| {
        Err(Error::Package {
            path: "upload".into(),
            message: format!("the deployment stopped: {e}"),
        })
    });
    let mut st = queue.state.lock().unwrap_or_else(|e| e.into_inner());
    let running = st.running.take();
    st.progress = None;
    st.last = match &result {
        Ok(outcome) => Some(outcome.deployment.clone()),
        Err(Error::Busy { .. }) => st.last.take(),
        Err(Error::DeploymentFailed { id, .. }) => {
            shared.site.deployment(&app, id).ok().or(running)
        }
        Err(e) => {
            let mut r = running
                .filter(|r| !r.status.is_final())
                .unwrap_or_else(|| Deployment::new(deployment::new_id(), &app, &slot));
            r.status = Status::Failed;
            r.end_time = Some(deployment::now());
            r.log(Level::Error, e.to_string());
            Some(r)
        }
    };
    result
}

/// The response to a finished deployment: 200 and the record, or 400 and
/// the failed record, or the error.
pub(super) fn outcome_response(
    shared: &Shared,
    req: &AppRequest,
    result: &crate::Result<DeployOutcome>,
) -> HttpResponse {
    match result {
        Ok(outcome) => {
            let mut r = outcome.deployment.clone();
            r.active = true;
            let mut resp = json(
                StatusCode::OK,
                &record_json(&r, &req.base_url, r.end_time.as_deref()),
            );
            if outcome.unchanged {
                resp.headers_mut()
                    .insert("x-fnhost-unchanged", HeaderValue::from_static("true"));
            }
            resp
        }
        Err(Error::DeploymentFailed { id, .. }) => match shared.site.deployment(&req.app, id) {
            Ok(r) => json(
                StatusCode::BAD_REQUEST,
                &record_json(&r, &req.base_url, None),
            ),
            Err(e) => error_response(shared, &e),
        },
        Err(e) => error_response(shared, e),
    }
}

/// The 409 for a busy slot, when the client asked not to wait.
fn busy_response(shared: &Shared, app: &str, slot: &str, holder: Option<String>) -> HttpResponse {
    error_response(
        shared,
        &Error::Busy {
            app: app.into(),
            slot: slot.into(),
            holder,
        },
    )
}

/// Whether a deployment is running or waiting in the slot: `Some(id)`
/// (possibly empty when unknown).
fn busy(shared: &Shared, queue: &SlotQueue, app: &str, slot: &str) -> Option<String> {
    {
        let st = queue.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.waiting > 0 {
            return Some(
                st.running
                    .as_ref()
                    .map(|r| r.id.clone())
                    .unwrap_or_default(),
            );
        }
    }
    shared.site.running(app, slot).ok().flatten()
}

// ----- routes -----

async fn zipdeploy(mut req: AppRequest) -> HttpResponse {
    let shared = req.shared.clone();
    let is_async = query_bool(&req, "isAsync").unwrap_or(false);
    let wait = query_bool(&req, "wait").unwrap_or(true);
    let job = Job {
        app: req.app.clone(),
        slot: req.slot.clone(),
        author: req
            .query("author")
            .map_or_else(|| req.user.clone(), str::to_string),
        message: req.query("message").unwrap_or("").to_string(),
        deployer: req.query("deployer").unwrap_or("ZipDeploy").to_string(),
    };
    // Refuse before receiving anything.
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
    let queue = shared.queue(&req.app, &req.slot);
    if !wait && let Some(holder) = busy(&shared, &queue, &req.app, &req.slot) {
        return busy_response(&shared, &req.app, &req.slot, Some(holder));
    }
    let upload = match req.receive().await {
        Ok(u) => u,
        Err(resp) => return resp,
    };
    if upload.size() == 0 {
        return bad_request("the body is empty: send the zip as the request body");
    }
    let waiting = Waiting::new(&queue);
    let run = {
        let (shared, queue) = (shared.clone(), queue.clone());
        async move {
            let _waiting = waiting;
            let turn = if wait {
                Some(queue.turn.lock().await)
            } else {
                queue.turn.try_lock().ok()
            };
            let result = match turn {
                Some(_turn) => {
                    deploy_zip_in_turn(&shared, &queue, job, upload.path().to_path_buf(), wait)
                        .await
                }
                None => Err(Error::Busy {
                    app: job.app.clone(),
                    slot: job.slot.clone(),
                    holder: queue
                        .state
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .running
                        .as_ref()
                        .map(|r| r.id.clone()),
                }),
            };
            drop(upload);
            result
        }
    };
    if is_async {
        shared.spawn_background(async move {
            let _ = run.await;
        });
        let location = format!("{}/api/deployments/latest", req.base_url);
        let mut resp = json(
            StatusCode::ACCEPTED,
            &json!({"status": 0, "message": "the deployment is queued; poll Location", "url": location}),
        );
        if let Ok(v) = HeaderValue::from_str(&location) {
            resp.headers_mut().insert(hyper::header::LOCATION, v);
        }
        let secs = shared.limits.retry_after.as_secs().max(1);
        resp.headers_mut()
            .insert(hyper::header::RETRY_AFTER, HeaderValue::from(secs));
        return resp;
    }
    // Synchronous: the deployment runs in its own task, so a client that
    // goes away does not cut it short.
    let handle = tokio::spawn(run);
    match handle.await {
        Ok(result) => outcome_response(&shared, &req, &result),
        Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "the deployment stopped"),
    }
}

async fn latest(req: AppRequest) -> HttpResponse {
    let shared = req.shared.clone();
    let queue = shared.queue(&req.app, &req.slot);
    let (here, running, progress, last) = {
        let st = queue.state.lock().unwrap_or_else(|e| e.into_inner());
        (
            st.waiting > 0,
            st.running.clone(),
            st.progress,
            st.last.clone(),
        )
    };
    let elsewhere = if here {
        None
    } else {
        shared.site.running(&req.app, &req.slot).ok().flatten()
    };
    if here || elsewhere.is_some() {
        let mut value = match &running {
            Some(r) => record_json(r, &req.base_url, None),
            None => json!({"status": 0, "status_text": "Pending", "complete": false,
                "progress": "waiting for the running deployment to finish"}),
        };
        if let Some((done, total)) = progress {
            value["progress"] = json!(format!("Stored {done} of {total} files"));
        }
        let mut resp = json(StatusCode::ACCEPTED, &value);
        let secs = shared.limits.retry_after.as_secs().max(1);
        resp.headers_mut()
            .insert(hyper::header::RETRY_AFTER, HeaderValue::from(secs));
        resp.headers_mut().insert(
            hyper::header::LOCATION,
            HeaderValue::from_str(&format!("{}/api/deployments/latest", req.base_url))
                .unwrap_or(HeaderValue::from_static("")),
        );
        return resp;
    }
    let records = match records_json(&shared.site, &req.app, &req.slot, &req.base_url) {
        Ok(r) => r,
        Err(e) => return error_response(&shared, &e),
    };
    let newest = records
        .into_iter()
        .find(|(_, v)| v["slot"] == req.slot.as_str());
    let chosen = match (newest, last) {
        (Some((id, v)), Some(last)) if last.id <= id => v,
        (_, Some(last)) => match records_lookup(&shared, &req, &last.id) {
            Some(v) => v,
            None => record_json(&last, &req.base_url, None),
        },
        (Some((_, v)), None) => v,
        (None, None) => {
            return text(StatusCode::NOT_FOUND, "no deployments yet");
        }
    };
    json_etag(&req.parts.headers, StatusCode::OK, &chosen)
}

/// One record of the slot in Kudu's shape.
fn records_lookup(shared: &Shared, req: &AppRequest, id: &str) -> Option<Value> {
    records_json(&shared.site, &req.app, &req.slot, &req.base_url)
        .ok()?
        .into_iter()
        .find(|(i, _)| i == id)
        .map(|(_, v)| v)
}

async fn list(req: AppRequest) -> HttpResponse {
    let shared = req.shared.clone();
    match records_json(&shared.site, &req.app, &req.slot, &req.base_url) {
        Ok(records) => {
            let all: Vec<Value> = records.into_iter().map(|(_, v)| v).collect();
            json_etag(&req.parts.headers, StatusCode::OK, &Value::Array(all))
        }
        Err(e) => error_response(&shared, &e),
    }
}

fn id_param(req: &AppRequest) -> Result<String, HttpResponse> {
    let id = req.param("id").unwrap_or("");
    if deployment::check_id(id) {
        Ok(id.to_string())
    } else {
        Err(text(
            StatusCode::NOT_FOUND,
            &format!("{}: no deployment {id:?}", req.app),
        ))
    }
}

async fn one(req: AppRequest) -> HttpResponse {
    let shared = req.shared.clone();
    let id = match id_param(&req) {
        Ok(id) => id,
        Err(resp) => return resp,
    };
    match req.parts.method {
        Method::PUT => redeploy(&shared, &req, id).await,
        Method::DELETE => {
            let site = shared.site.clone();
            let app = req.app.clone();
            let r = tokio::task::spawn_blocking(move || site.delete_deployment(&app, &id)).await;
            match r {
                Ok(Ok(_)) => empty(StatusCode::NO_CONTENT),
                Ok(Err(e)) => error_response(&shared, &e),
                Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "the deletion stopped"),
            }
        }
        _ => match records_lookup(&shared, &req, &id) {
            Some(v) => json_etag(&req.parts.headers, StatusCode::OK, &v),
            None => text(
                StatusCode::NOT_FOUND,
                &format!("{}/{}: no deployment {id:?}", req.app, req.slot),
            ),
        },
    }
}

/// `PUT /api/deployments/{id}`: activates a retained deployment (a
/// pointer switch), in the slot's turn.
async fn redeploy(shared: &Arc<Shared>, req: &AppRequest, id: String) -> HttpResponse {
    let queue = shared.queue(&req.app, &req.slot);
    let _waiting = Waiting::new(&queue);
    let _turn = queue.turn.lock().await;
    let site = shared.site.clone();
    let (app, slot) = (req.app.clone(), req.slot.clone());
    let r = tokio::task::spawn_blocking(move || site.rollback(&app, &slot, Some(&id))).await;
    match r {
        Ok(Ok(r)) => {
            queue.state.lock().unwrap_or_else(|e| e.into_inner()).last = Some(r.clone());
            match records_lookup(shared, req, &r.id) {
                Some(v) => json(StatusCode::OK, &v),
                None => json(StatusCode::OK, &record_json(&r, &req.base_url, None)),
            }
        }
        Ok(Err(e)) => error_response(shared, &e),
        Err(_) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the redeployment stopped",
        ),
    }
}

async fn log(req: AppRequest) -> HttpResponse {
    let shared = req.shared.clone();
    let id = match id_param(&req) {
        Ok(id) => id,
        Err(resp) => return resp,
    };
    let r = match shared.site.deployment(&req.app, &id) {
        Ok(r) => r,
        Err(e) => return error_response(&shared, &e),
    };
    let entries: Vec<Value> = r
        .log
        .iter()
        .enumerate()
        .map(|(i, e)| {
            json!({
                "log_time": e.time,
                "id": format!("{}-{i}", r.id),
                "message": e.message,
                "type": e.level.code(),
                "details_url": Value::Null,
            })
        })
        .collect();
    json_etag(&req.parts.headers, StatusCode::OK, &Value::Array(entries))
}

async fn is_deploying(req: AppRequest) -> HttpResponse {
    let shared = req.shared.clone();
    let queue = shared.queue(&req.app, &req.slot);
    let value = if busy(&shared, &queue, &req.app, &req.slot).is_some() {
        "True"
    } else {
        "False"
    };
    json(StatusCode::OK, &json!({ "value": value }))
}

async fn admin_download(req: AppRequest) -> HttpResponse {
    let shared = req.shared.clone();
    let include = query_bool(&req, "includeAppSettings").unwrap_or(false);
    let tmp = TempFile::new(shared.tmp(), ".zip");
    let site = shared.site.clone();
    let (app, slot, out) = (req.app.clone(), req.slot.clone(), tmp.0.clone());
    let r = tokio::task::spawn_blocking(move || site.download(&app, &slot, include, &out)).await;
    match r {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return error_response(&shared, &e),
        Err(_) => return text(StatusCode::INTERNAL_SERVER_ERROR, "the download stopped"),
    }
    let name = format!("{}.zip", req.app);
    match body::stream_temp(tmp, "application/zip", &name).await {
        Ok(resp) => resp,
        Err(e) => error_response(&shared, &Error::io("cannot read", "download", e)),
    }
}

/// `GET /api/zip/{folder}/`: the active content, or a folder of it, as a
/// deterministic zip.
pub(super) async fn zip_download(req: AppRequest, rel: String) -> HttpResponse {
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
    let manifest = match shared.manifest(&req.app, &active.deployment) {
        Ok(m) => m,
        Err(e) => return error_response(&shared, &e),
    };
    let part = if rel.is_empty() {
        (*manifest).clone()
    } else {
        let prefix = format!("{rel}/");
        Manifest::new(
            manifest
                .files
                .iter()
                .filter_map(|f| {
                    f.path.strip_prefix(&prefix).map(|p| {
                        let mut f = f.clone();
                        f.path = p.to_string();
                        f
                    })
                })
                .collect(),
        )
    };
    if part.files.is_empty() {
        return text(
            StatusCode::NOT_FOUND,
            &format!("no folder {rel:?} in the active content"),
        );
    }
    let tmp = TempFile::new(shared.tmp(), ".zip");
    let store = shared.site.store().clone();
    let out = tmp.0.clone();
    let r = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        let f = std::fs::File::create(&out)?;
        let w = crate::package::write_zip(store.as_ref(), &part, &[], std::io::BufWriter::new(f))?;
        w.into_inner().map_err(|e| e.into_error())?;
        Ok(())
    })
    .await;
    match r {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return error_response(&shared, &Error::io("cannot write", "zip", e)),
        Err(_) => return text(StatusCode::INTERNAL_SERVER_ERROR, "the download stopped"),
    }
    let name = match rel.rsplit('/').next() {
        Some(last) if !last.is_empty() => format!("{}.zip", paths::percent_encode(last)),
        _ => format!("{}.zip", req.app),
    };
    match body::stream_temp(tmp, "application/zip", &name).await {
        Ok(resp) => resp,
        Err(e) => error_response(&shared, &Error::io("cannot read", "download", e)),
    }
}
