//! Kudu's deployment routes: zipdeploy, the deployments API, downloads.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::RawPathParams;
use axum::http::header::{CONTENT_TYPE, ETAG, IF_NONE_MATCH, LOCATION, RETRY_AFTER};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use super::body::{self, TempFile};
use super::{ApiError, Scope, Shared, SlotQueue, blocking, json, param, paths, with_slash};
use crate::deployment::{self, Deployment, Level, Status};
use crate::error::Error;
use crate::site::{Content, DeployOutcome, DeployRequest, Observer};
use crate::store::{Digest, Manifest};

pub(super) fn routes() -> Router {
    let one = get(one).put(redeploy).delete(delete);
    with_slash("/api/deployments/latest", get(latest))
        .merge(with_slash("/api/deployments", get(list)))
        .merge(with_slash("/api/deployments/{id}", one))
        .merge(with_slash("/api/deployments/{id}/log", get(log)))
        .merge(with_slash("/api/isdeploying", get(is_deploying)))
        .merge(with_slash(
            "/api/functions/admin/download",
            get(admin_download),
        ))
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

/// A JSON answer (200) with an `ETag` (a hash of the body); 304 when the
/// client has it already.
pub(super) fn json_etag(headers: &HeaderMap, value: &Value) -> Response {
    let data = value.to_string();
    let tag = format!("\"{}\"", &Digest::of(data.as_bytes()).to_hex()[..32]);
    let cached = headers
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| etag_matches(v, &tag));
    if cached {
        return (StatusCode::NOT_MODIFIED, [(ETAG, tag)]).into_response();
    }
    let content_type = "application/json; charset=utf-8".to_string();
    ([(CONTENT_TYPE, content_type), (ETAG, tag)], data).into_response()
}

fn query_bool(scope: &Scope, name: &str) -> Option<bool> {
    scope.query(name).map(|v| {
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
    shared: &Shared,
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
    scope: &Scope,
    result: crate::Result<DeployOutcome>,
) -> Result<Response, ApiError> {
    match result {
        Ok(outcome) => {
            let mut r = outcome.deployment;
            r.active = true;
            let record = json(
                StatusCode::OK,
                &record_json(&r, &scope.base_url, r.end_time.as_deref()),
            );
            let unchanged = outcome
                .unchanged
                .then_some([("x-fnhost-unchanged", "true")]);
            Ok((unchanged, record).into_response())
        }
        Err(Error::DeploymentFailed { id, .. }) => {
            let r = scope.site().deployment(&scope.app, &id)?;
            let record = record_json(&r, &scope.base_url, None);
            Ok(json(StatusCode::BAD_REQUEST, &record))
        }
        Err(e) => Err(e.into()),
    }
}

/// Whether a deployment is running or waiting in the slot: `Some(id)`
/// (possibly empty when unknown).
fn busy(scope: &Scope, queue: &SlotQueue) -> Option<String> {
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
    scope.site().running(&scope.app, &scope.slot).ok().flatten()
}

/// Refuses a change to a slot that follows a source of truth (read-only):
/// [`Site::check_writable`](crate::Site::check_writable).
pub(super) fn check_writable(scope: &Scope) -> Result<(), ApiError> {
    Ok(scope.site().check_writable(&scope.app, &scope.slot)?)
}

/// The 202 of a deployment that goes on: `Location` to poll, `Retry-After`.
fn accepted(scope: &Scope, value: &Value) -> Response {
    let location = format!("{}/api/deployments/latest", scope.base_url);
    let secs = scope.shared.limits.retry_after.as_secs().max(1);
    let headers = [(LOCATION, location), (RETRY_AFTER, secs.to_string())];
    (headers, json(StatusCode::ACCEPTED, value)).into_response()
}

// ----- routes -----

pub(super) async fn zipdeploy(
    scope: Scope,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let shared = scope.shared.clone();
    let is_async = query_bool(&scope, "isAsync").unwrap_or(false);
    let wait = query_bool(&scope, "wait").unwrap_or(true);
    let job = Job {
        app: scope.app.clone(),
        slot: scope.slot.clone(),
        author: scope
            .query("author")
            .map_or_else(|| scope.user.clone(), str::to_string),
        message: scope.query("message").unwrap_or("").to_string(),
        deployer: scope.query("deployer").unwrap_or("ZipDeploy").to_string(),
    };
    // Refuse before receiving anything.
    check_writable(&scope)?;
    let queue = shared.queue(&scope.app, &scope.slot);
    if !wait && let Some(holder) = busy(&scope, &queue) {
        let (app, slot) = (scope.app.clone(), scope.slot.clone());
        let holder = Some(holder);
        return Err(Error::Busy { app, slot, holder }.into());
    }
    let upload = scope.receive(&headers, body).await?;
    if upload.size() == 0 {
        let why = "the body is empty: send the zip as the request body";
        return Err(ApiError::bad_request(why));
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
        let location = format!("{}/api/deployments/latest", scope.base_url);
        let message = "the deployment is queued; poll Location";
        return Ok(accepted(
            &scope,
            &json!({"status": 0, "message": message, "url": location}),
        ));
    }
    // Synchronous: the deployment runs in its own task, so a client that
    // goes away does not cut it short.
    let result = tokio::spawn(run)
        .await
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "the deployment stopped"))?;
    outcome_response(&scope, result)
}

async fn latest(scope: Scope, headers: HeaderMap) -> Result<Response, ApiError> {
    let queue = scope.shared.queue(&scope.app, &scope.slot);
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
        scope.site().running(&scope.app, &scope.slot).ok().flatten()
    };
    if here || elsewhere.is_some() {
        let mut value = match &running {
            Some(r) => record_json(r, &scope.base_url, None),
            None => json!({"status": 0, "status_text": "Pending", "complete": false,
                "progress": "waiting for the running deployment to finish"}),
        };
        if let Some((done, total)) = progress {
            value["progress"] = json!(format!("Stored {done} of {total} files"));
        }
        return Ok(accepted(&scope, &value));
    }
    let records = records_json(scope.site(), &scope.app, &scope.slot, &scope.base_url)?;
    let newest = records
        .into_iter()
        .find(|(_, v)| v["slot"] == scope.slot.as_str());
    let chosen = match (newest, last) {
        (Some((id, v)), Some(last)) if last.id <= id => v,
        (_, Some(last)) => match records_lookup(&scope, &last.id) {
            Some(v) => v,
            None => record_json(&last, &scope.base_url, None),
        },
        (Some((_, v)), None) => v,
        (None, None) => return Err(ApiError::not_found("no deployments yet")),
    };
    Ok(json_etag(&headers, &chosen))
}

/// One record of the slot in Kudu's shape.
fn records_lookup(scope: &Scope, id: &str) -> Option<Value> {
    records_json(scope.site(), &scope.app, &scope.slot, &scope.base_url)
        .ok()?
        .into_iter()
        .find(|(i, _)| i == id)
        .map(|(_, v)| v)
}

async fn list(scope: Scope, headers: HeaderMap) -> Result<Response, ApiError> {
    let records = records_json(scope.site(), &scope.app, &scope.slot, &scope.base_url)?;
    let all: Vec<Value> = records.into_iter().map(|(_, v)| v).collect();
    Ok(json_etag(&headers, &Value::Array(all)))
}

/// The `{id}` of the route, when it is a deployment id.
fn id_param(scope: &Scope, params: &RawPathParams) -> Result<String, ApiError> {
    let id = param(params, "id");
    if deployment::check_id(id) {
        Ok(id.to_string())
    } else {
        let why = format!("{}: no deployment {id:?}", scope.app);
        Err(ApiError::not_found(why))
    }
}

async fn one(
    scope: Scope,
    params: RawPathParams,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = id_param(&scope, &params)?;
    match records_lookup(&scope, &id) {
        Some(v) => Ok(json_etag(&headers, &v)),
        None => {
            let why = format!("{}/{}: no deployment {id:?}", scope.app, scope.slot);
            Err(ApiError::not_found(why))
        }
    }
}

async fn delete(scope: Scope, params: RawPathParams) -> Result<Response, ApiError> {
    let id = id_param(&scope, &params)?;
    let (site, app) = (scope.site().clone(), scope.app.clone());
    blocking("deletion", move || site.delete_deployment(&app, &id)).await??;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `PUT /api/deployments/{id}`: activates a retained deployment (a
/// pointer switch), in the slot's turn.
async fn redeploy(scope: Scope, params: RawPathParams) -> Result<Response, ApiError> {
    let id = id_param(&scope, &params)?;
    let queue = scope.shared.queue(&scope.app, &scope.slot);
    let _waiting = Waiting::new(&queue);
    let _turn = queue.turn.lock().await;
    let site = scope.site().clone();
    let (app, slot) = (scope.app.clone(), scope.slot.clone());
    let r = blocking("redeployment", move || {
        site.rollback(&app, &slot, Some(&id))
    })
    .await??;
    queue.state.lock().unwrap_or_else(|e| e.into_inner()).last = Some(r.clone());
    let record =
        records_lookup(&scope, &r.id).unwrap_or_else(|| record_json(&r, &scope.base_url, None));
    Ok(json(StatusCode::OK, &record))
}

async fn log(
    scope: Scope,
    params: RawPathParams,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = id_param(&scope, &params)?;
    let r = scope.site().deployment(&scope.app, &id)?;
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
    Ok(json_etag(&headers, &Value::Array(entries)))
}

async fn is_deploying(scope: Scope) -> Response {
    let queue = scope.shared.queue(&scope.app, &scope.slot);
    let value = if busy(&scope, &queue).is_some() {
        "True"
    } else {
        "False"
    };
    json(StatusCode::OK, &json!({ "value": value }))
}

async fn admin_download(scope: Scope) -> Result<Response, ApiError> {
    let include = query_bool(&scope, "includeAppSettings").unwrap_or(false);
    let tmp = TempFile::new(&scope.shared.tmp, ".zip");
    let site = scope.site().clone();
    let (app, slot, out) = (scope.app.clone(), scope.slot.clone(), tmp.0.clone());
    blocking("download", move || {
        site.download(&app, &slot, include, &out)
    })
    .await??;
    body::stream_temp(tmp, &format!("{}.zip", scope.app)).await
}

/// `GET /api/zip/{folder}/`: the active content, or a folder of it, as a
/// deterministic zip.
pub(super) async fn zip_download(scope: &Scope, rel: String) -> Result<Response, ApiError> {
    let manifest = active_manifest(scope)?;
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
        let why = format!("no folder {rel:?} in the active content");
        return Err(ApiError::not_found(why));
    }
    let tmp = TempFile::new(&scope.shared.tmp, ".zip");
    let store = scope.site().store().clone();
    let out = tmp.0.clone();
    blocking("download", move || -> std::io::Result<()> {
        let f = std::fs::File::create(&out)?;
        let w = crate::package::write_zip(store.as_ref(), &part, &[], std::io::BufWriter::new(f))?;
        w.into_inner().map_err(|e| e.into_error())?;
        Ok(())
    })
    .await?
    .map_err(|e| Error::io("cannot write", "zip", e))?;
    let name = match rel.rsplit('/').next() {
        Some(last) if !last.is_empty() => format!("{}.zip", paths::percent_encode(last)),
        _ => format!("{}.zip", scope.app),
    };
    body::stream_temp(tmp, &name).await
}

/// The manifest of the slot's active deployment (404 without one).
pub(super) fn active_manifest(scope: &Scope) -> Result<Arc<Manifest>, ApiError> {
    let active = scope.site().require_active(&scope.app, &scope.slot)?;
    Ok(scope.shared.manifest(&scope.app, &active.deployment)?)
}
