//! Test/Run and Monitor: the manage process loads a slot's active
//! deployment with fnhost-core's [`Host`] (one a slot, replaced when the
//! active deployment changes), invokes a function as the Test/Run panel
//! asks, and answers with the response and that invocation's log lines.
//! Each invocation is kept in a bounded store for the Monitor page.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use fnhost_core::http::manual_invocation;
use fnhost_core::invoke::http::HttpRequest;
use fnhost_core::{FunctionApp, Host, Invocation, Method};
use minijinja::value::Serde;
use minijinja::{Value, context};
use serde::Serialize;

use super::access::{Place, Viewer, form};
use super::files::show_editor;
use super::pages::{failure, page_context};
use super::{PortalState, St};

/// Invocations kept for each app.
const KEPT: usize = 1000;

/// One invocation, as Monitor lists it.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Record {
    time: String,
    function: String,
    slot: String,
    success: bool,
    status: Option<u16>,
    duration_ms: u64,
    invocation_id: String,
}

/// A slot's host: the active deployment it loaded, and the host.
type SlotHost = (String, Arc<Host>);

/// An app's last invocations, and per function (successes, errors).
#[derive(Default)]
struct AppRecords {
    list: VecDeque<Record>,
    counts: BTreeMap<String, (u64, u64)>,
}

/// The hosts of the slots tested, and the invocations made.
#[derive(Default)]
pub(super) struct Runner {
    /// By (app, slot).
    hosts: tokio::sync::Mutex<HashMap<(String, String), SlotHost>>,
    /// By app.
    records: Mutex<HashMap<String, AppRecords>>,
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

    fn record(&self, app: &str, r: Record) {
        let mut all = self.records.lock().unwrap_or_else(|e| e.into_inner());
        let AppRecords { list, counts } = all.entry(app.to_string()).or_default();
        let c = counts.entry(r.function.clone()).or_default();
        if r.success {
            c.0 += 1;
        } else {
            c.1 += 1;
        }
        if list.len() >= KEPT {
            list.pop_back();
        }
        list.push_front(r);
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
pub(super) async fn run(
    State(st): State<St>,
    viewer: Viewer,
    place: Place,
    req: Request,
) -> Response {
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
        Record {
            time: crate::deployment::now(),
            function: function.clone(),
            slot: place.slot.clone(),
            success: result.success,
            status: result.status,
            duration_ms,
            invocation_id: id,
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

/// `GET .../monitor`: the invocations made here, newest first, with the
/// success and error counts of each function.
pub(super) async fn monitor(State(st): State<St>, viewer: Viewer, place: Place) -> Response {
    let (records, counts) = {
        let all = st.runner.records.lock().unwrap_or_else(|e| e.into_inner());
        match all.get(&place.app) {
            Some(AppRecords { list, counts }) => (
                list.iter()
                    .filter(|r| r.slot == place.slot)
                    .cloned()
                    .collect::<Vec<_>>(),
                counts
                    .iter()
                    .map(|(f, (ok, err))| (f.clone(), *ok, *err))
                    .collect::<Vec<_>>(),
            ),
            None => (Vec::new(), Vec::new()),
        }
    };
    let values = context! {
        records => Value::from(Serde(&records)),
        counts => counts,
        kept => KEPT,
    };
    let ctx = page_context(&st, &viewer, Some(&place), "monitor", values);
    st.views.page(StatusCode::OK, "monitor.html", ctx)
}
