//! Test/Run and Monitor: the manage process loads a slot's active
//! deployment with fnhost-core's [`Host`] (one a slot, replaced when the
//! active deployment changes), invokes a function as the Test/Run panel
//! asks, and answers with the response and that invocation's log lines.
//! Each invocation is kept in a bounded store for the Monitor page.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::Response;
use fnhost_core::http::manual_invocation;
use fnhost_core::invoke::http::HttpRequest;
use fnhost_core::{FunctionApp, Host, Invocation, Method};
use minijinja::value::Serde;
use minijinja::{Value, context};
use serde::Serialize;

use super::PortalState;
use super::access::{Page, Place, form};
use super::files::show_editor;
use super::pages::{failure, page_context};
use crate::monitor::{InvocationLog, InvocationRecord};

/// Test/Run invocations kept for each app (and, by `fnhost serve --app`,
/// between [`InvocationLog::PER_FILE`] and twice that for each slot).
const KEPT: usize = 1000;
/// Invocations Monitor lists (the counts cover all those kept).
const LISTED: usize = 300;

/// One invocation, as Monitor lists it: the record and what ran it.
#[derive(Debug, Clone, Serialize)]
struct Shown {
    #[serde(flatten)]
    record: InvocationRecord,
    /// `Test/Run`, `fnhost serve`, or `worker NAME`.
    by: String,
}

/// A slot's host: the active deployment it loaded, and the host.
type SlotHost = (String, Arc<Host>);

/// The hosts of the slots tested, and the invocations made.
#[derive(Default)]
pub(super) struct Runner {
    /// By (app, slot).
    hosts: tokio::sync::Mutex<HashMap<(String, String), SlotHost>>,
    /// By app, newest first: the slot and the record.
    records: Mutex<HashMap<String, VecDeque<(String, InvocationRecord)>>>,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner").finish_non_exhaustive()
    }
}

impl Runner {
    /// The host of the slot's active deployment, started (a new one when
    /// the active deployment changed; the old one is shut down).
    async fn host(&self, st: &PortalState, place: &Place) -> Result<Arc<Host>, String> {
        let site = &st.shared.site;
        let active = site
            .active(&place.app, &place.slot)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("{}/{}: nothing is deployed yet", place.app, place.slot))?;
        let key = (place.app.clone(), place.slot.clone());
        let mut hosts = self.hosts.lock().await;
        if let Some((id, host)) = hosts.get(&key)
            && *id == active.deployment
        {
            return Ok(host.clone());
        }
        let mut loader = FunctionApp::loader(&active.path);
        for (k, v) in site
            .app_settings(&place.app, &place.slot)
            .unwrap_or_default()
        {
            loader = loader.with_setting(k, v);
        }
        let app = loader.load().map_err(|e| e.to_string())?;
        let host = Arc::new(Host::builder().with_default_executors().build(app));
        host.start()
            .await
            .map_err(|e| format!("the app's executor could not start: {e}"))?;
        if let Some((_, old)) = hosts.insert(key, (active.deployment, host.clone())) {
            tokio::spawn(async move { old.shutdown().await });
        }
        Ok(host)
    }

    fn record(&self, app: &str, slot: &str, r: InvocationRecord) {
        let mut all = self.records.lock().unwrap_or_else(|e| e.into_inner());
        let list = all.entry(app.to_string()).or_default();
        if list.len() >= KEPT {
            list.pop_back();
        }
        list.push_front((slot.to_string(), r));
    }
}

/// What the Test/Run panel shows after a run.
#[derive(Debug, Serialize)]
pub(super) struct RunResult {
    invocation_id: String,
    success: bool,
    status: Option<u16>,
    headers: Vec<(String, String)>,
    body: String,
    error: Option<String>,
    logs: Vec<String>,
    duration_ms: u64,
}

/// The Test/Run form: what to send.
#[derive(Debug, Default, Serialize)]
pub(super) struct RunInput {
    pub(super) method: String,
    pub(super) query: String,
    pub(super) headers: String,
    pub(super) body: String,
}

/// `POST .../code/run` (`function`, `method`, `query`, `headers` one a
/// line, `body`): invokes the function of the active deployment, shows
/// the response and the invocation's log lines beside the editor.
pub(super) async fn run(Page { st, viewer, place }: Page, req: Request) -> Response {
    let f = match form(req.into_body(), 4 * 1024 * 1024).await {
        Ok(f) => f,
        Err(resp) => return resp,
    };
    let field = |n: &str| f.get(n).cloned().unwrap_or_default();
    let function = field("function");
    let input = RunInput {
        method: field("method"),
        query: field("query"),
        headers: field("headers"),
        body: field("body"),
    };
    let host = match st.runner.host(&st, &place).await {
        Ok(h) => h,
        Err(why) => return failure(&st, &viewer, Some(&place), StatusCode::CONFLICT, &why),
    };
    let version = host.current();
    let Some(handle) = version
        .app()
        .function_index(&function)
        .and_then(|i| Host::handle(version.clone(), i))
    else {
        let why = format!(
            "{}: no function {function:?} in the active deployment",
            place.app
        );
        return failure(&st, &viewer, Some(&place), StatusCode::NOT_FOUND, &why);
    };
    let info = handle.info();
    let invocation = match &info.function.http {
        Some(route) => {
            let method: Method = input.method.parse().unwrap_or(Method::Get);
            let mut request = HttpRequest::new(method, route.path()).with_body(input.body.clone());
            for (k, v) in form_urlencoded::parse(input.query.trim_start_matches('?').as_bytes()) {
                request = request.with_query(k, v);
            }
            for line in input.headers.lines() {
                if let Some((k, v)) = line.split_once(':') {
                    request = request.with_header(k.trim(), v.trim());
                }
            }
            Invocation::new(request)
        }
        None => {
            let data = serde_json::from_str(&input.body)
                .unwrap_or(serde_json::Value::String(input.body.clone()));
            let data = if input.body.trim().is_empty() {
                serde_json::Value::Null
            } else {
                data
            };
            manual_invocation(info, data)
        }
    };
    let id = invocation.id.to_string();
    let started = Instant::now();
    let outcome = handle.invoke(invocation).await;
    let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let mut result = RunResult {
        invocation_id: id.clone(),
        success: outcome.is_ok(),
        status: None,
        headers: Vec::new(),
        body: String::new(),
        error: None,
        logs: Vec::new(),
        duration_ms,
    };
    match &outcome {
        Ok(r) => {
            result.logs.clone_from(&r.logs);
            match info.http_response(r) {
                Some(Ok(resp)) => {
                    result.status = Some(resp.status);
                    result.headers = resp.headers;
                    result.body = String::from_utf8_lossy(&resp.body).into_owned();
                }
                Some(Err(e)) => {
                    result.success = false;
                    result.error = Some(e.to_string());
                }
                None if info.function.http.is_some() => result.status = Some(204),
                None => {
                    result.body = serde_json::to_string_pretty(&r.to_json()).unwrap_or_default()
                }
            }
        }
        Err(e) => {
            result.logs = e.logs().to_vec();
            result.error = Some(e.to_string());
        }
    }
    for line in &result.logs {
        (st.shared.log)(&format!(
            "manage: portal: invocation {id} of {}/{} {function}: {line}",
            place.app, place.slot
        ));
    }
    (st.shared.log)(&format!(
        "manage: portal: invocation {id} of {}/{} {function}: {} in {duration_ms} ms",
        place.app,
        place.slot,
        if result.success {
            "succeeded"
        } else {
            "failed"
        }
    ));
    st.runner.record(
        &place.app,
        &place.slot,
        InvocationRecord {
            time: crate::deployment::now(),
            function: function.clone(),
            invocation_id: id,
            success: result.success,
            status: result.status,
            duration_ms,
            worker: None,
        },
    );
    let run = Value::from(Serde(&result));
    show_editor(
        &st,
        &viewer,
        &place,
        &function,
        String::new(),
        Some((input, run)),
    )
    .await
}

/// `GET .../monitor`: the slot's invocations, newest first: those made
/// here (Test/Run) and those `fnhost serve --app` or the cluster's workers
/// recorded in the home, with the success and error counts of each function.
pub(super) async fn monitor(Page { st, viewer, place }: Page) -> Response {
    let mut shown: Vec<Shown> = {
        let all = st.runner.records.lock().unwrap_or_else(|e| e.into_inner());
        all.get(&place.app)
            .into_iter()
            .flatten()
            .filter(|(slot, _)| *slot == place.slot)
            .map(|(_, r)| Shown {
                record: r.clone(),
                by: "Test/Run".into(),
            })
            .collect()
    };
    let served = match st.shared.site.invocation_log(&place.app, &place.slot) {
        Ok(log) => tokio::task::spawn_blocking(move || log.recent(2 * InvocationLog::PER_FILE))
            .await
            .unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    shown.extend(served.into_iter().map(|record| Shown {
        by: match &record.worker {
            Some(w) => format!("worker {w}"),
            None => "fnhost serve".into(),
        },
        record,
    }));
    // RFC 3339 in UTC with microseconds: the text sorts as the time.
    shown.sort_by(|a, b| b.record.time.cmp(&a.record.time));
    let counts = InvocationLog::counts(shown.iter().map(|s| &s.record))
        .into_iter()
        .map(|(f, (ok, err))| (f, ok, err))
        .collect::<Vec<_>>();
    let total = shown.len();
    shown.truncate(LISTED);
    let values = context! {
        records => Value::from(Serde(&shown)),
        counts => counts,
        total => total,
        listed => LISTED,
    };
    let ctx = page_context(&st, &viewer, Some(&place), "monitor", values);
    st.views.page(StatusCode::OK, "monitor.html", ctx)
}
