//! The pages of apps, functions, deployments, downloads and deployment
//! credentials.

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use fnhost_core::FunctionApp;
use minijinja::value::Serde;
use minijinja::{Value, context};
use serde::Serialize;

use super::access::{Page, Place, Viewer, form};
use super::view::see_other;
use super::{PortalState, St};
use crate::error::Error;
use crate::manage::body::{TempFile, stream_temp};
use crate::manage::error::client_status;

/// The context of a page: the viewer, the place (app pages), which
/// navigation entry is current, and the page's own values.
pub(super) fn page_context(
    st: &PortalState,
    viewer: &Viewer,
    place: Option<&Place>,
    nav: &str,
    values: Value,
) -> Value {
    context! {
        viewer => viewer.context(st),
        place => place.map(|p| p.context(st)),
        nav => nav,
        ..values
    }
}

/// A page that says what went wrong (the message escaped like any value).
pub(super) fn failure(
    st: &PortalState,
    viewer: &Viewer,
    place: Option<&Place>,
    status: StatusCode,
    message: &str,
) -> Response {
    let ctx = page_context(
        st,
        viewer,
        place,
        "",
        context! { status => status.as_u16(), message => message },
    );
    st.views.page(status, "error.html", ctx)
}

/// A failure of the server itself (500) as a page.
pub(super) fn internal_failure(
    st: &PortalState,
    viewer: &Viewer,
    place: Option<&Place>,
    message: &str,
) -> Response {
    failure(
        st,
        viewer,
        place,
        StatusCode::INTERNAL_SERVER_ERROR,
        message,
    )
}

/// After a change to a slot: logs that the signed-in user `did` it
/// (`manage: portal: USER DID`), leaves `message` for the next page, and
/// goes to the slot's `page`.
pub(super) fn changed(
    st: &PortalState,
    viewer: &Viewer,
    place: &Place,
    did: &str,
    message: impl Into<String>,
    page: &str,
) -> Response {
    (st.shared.log)(&format!("manage: portal: {} {did}", viewer.session.user));
    viewer.flash(st, message);
    see_other(&format!("{}/{page}", place.base))
}

/// A library error as a page: its status by kind, internal errors logged
/// and not shown.
pub(super) fn site_failure(
    st: &PortalState,
    viewer: &Viewer,
    place: Option<&Place>,
    e: &Error,
) -> Response {
    let Some(status) = client_status(e) else {
        (st.shared.log)(&format!("manage: portal: {e}"));
        return internal_failure(st, viewer, place, "internal error (see the server log)");
    };
    failure(st, viewer, place, status, &e.to_string())
}

/// One page of a long list (`?page=N`, from 1): the items, and what the
/// pager shows.
pub(super) fn paged<T>(items: Vec<T>, query: Option<&str>, per_page: usize) -> (Vec<T>, Value) {
    let total = items.len();
    let pages = total.div_ceil(per_page).max(1);
    let page = form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .find(|(k, _)| k == "page")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(1)
        .clamp(1, pages);
    let items: Vec<T> = items
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .collect();
    // The links keep the other parameters (a folder's path).
    let mut keep = form_urlencoded::Serializer::new(String::new());
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if k != "page" {
            keep.append_pair(&k, &v);
        }
    }
    let keep = keep.finish();
    let link = if keep.is_empty() {
        "?page=".to_string()
    } else {
        format!("?{keep}&page=")
    };
    let pager = context! {
        link => link,
        page => page,
        pages => pages,
        total => total,
        first => (page - 1) * per_page + 1,
        last => ((page - 1) * per_page + items.len()),
    };
    (items, pager)
}

/// Runs blocking library work off the async threads.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|_| {
        Err(Error::Corrupt {
            path: "portal".into(),
            message: "a background task stopped".into(),
        })
    })
}

#[derive(Serialize)]
struct SlotRow {
    app: String,
    slot: String,
    active: Option<String>,
    status: String,
    read_only: Option<String>,
}

/// `GET /portal/`: the apps and slots the viewer may see.
pub(super) async fn apps(State(st): State<St>, viewer: Viewer) -> Response {
    let site = st.shared.site.clone();
    let session = viewer.session.clone();
    let rows = blocking(move || {
        let mut rows = Vec::new();
        for app in site.apps()? {
            if !session.may(&app.name) {
                continue;
            }
            for slot in app.slots {
                let latest = site.deployments(&app.name, Some(&slot.name))?;
                let status = latest
                    .first()
                    .map_or_else(|| "no deployment yet".to_string(), |d| d.status.to_string());
                let read_only = slot
                    .continuous_deployment
                    .map(|s| format!("continuous deployment from {s}"));
                rows.push(SlotRow {
                    app: app.name.clone(),
                    slot: slot.name,
                    active: slot.active,
                    status,
                    read_only,
                });
            }
        }
        Ok(rows)
    })
    .await;
    match rows {
        Ok(rows) => {
            let ctx = page_context(
                &st,
                &viewer,
                None,
                "apps",
                context! { rows => Value::from(Serde(&rows)) },
            );
            st.views.page(StatusCode::OK, "apps.html", ctx)
        }
        Err(e) => site_failure(&st, &viewer, None, &e),
    }
}

/// `POST /portal/apps`: creates an app (portal accounts only).
pub(super) async fn create_app(State(st): State<St>, viewer: Viewer, req: Request) -> Response {
    if !viewer.session.is_admin() {
        let why = "only a portal account may create apps";
        return failure(&st, &viewer, None, StatusCode::FORBIDDEN, why);
    }
    let fields = match form(req.into_body(), 16 * 1024).await {
        Ok(f) => f,
        Err(resp) => return resp,
    };
    let name = fields.get("name").map_or("", |n| n.trim()).to_string();
    let site = st.shared.site.clone();
    let n = name.clone();
    match blocking(move || site.create_app(&n)).await {
        Ok(_) => {
            viewer.flash(&st, format!("App {name} created."));
            see_other(&format!("/portal/apps/{name}/production/functions"))
        }
        Err(e) => site_failure(&st, &viewer, None, &e),
    }
}

#[derive(Debug, Serialize)]
pub(super) struct FunctionRow {
    name: String,
    trigger: String,
    route: Option<String>,
    methods: Option<String>,
    auth_level: Option<String>,
    url: Option<String>,
    disabled: bool,
}

/// `GET /portal/apps/{app}/{slot}/functions[?page=N]`: the functions of
/// the active deployment (loaded once a deployment, then cached).
pub(super) async fn functions(Page { st, viewer, place }: Page, req: Request) -> Response {
    let site = st.shared.site.clone();
    let (app, slot) = (place.app.clone(), place.slot.clone());
    let active = match site.active(&app, &slot) {
        Ok(a) => a,
        Err(e) => return site_failure(&st, &viewer, Some(&place), &e),
    };
    let Some(active) = active else {
        let values = context! { active => None::<String>, functions => Vec::<Value>::new(), problems => Vec::<String>::new() };
        let ctx = page_context(&st, &viewer, Some(&place), "functions", values);
        return st.views.page(StatusCode::OK, "functions.html", ctx);
    };
    let key = (app.clone(), active.deployment.clone());
    let cached = st
        .function_lists
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&key)
        .cloned();
    let list = match cached {
        Some(list) => list,
        None => {
            let base_url = st.config.functions_url.clone();
            let path = active.path.clone();
            let loaded = tokio::task::spawn_blocking(move || function_list(&path, &base_url)).await;
            let Ok(list) = loaded else {
                let why = "the functions could not be read";
                return internal_failure(&st, &viewer, Some(&place), why);
            };
            let list = std::sync::Arc::new(list);
            let mut cache = st.function_lists.lock().unwrap_or_else(|e| e.into_inner());
            if cache.len() >= 64 {
                cache.clear();
            }
            cache.insert(key, list.clone());
            list
        }
    };
    let (rows, pager) = paged(
        list.0.iter().collect::<Vec<_>>(),
        req.uri().query(),
        PER_PAGE,
    );
    let values = context! {
        active => active.deployment,
        functions => Value::from(Serde(&rows)),
        problems => list.1.clone(),
        pager => pager,
    };
    let ctx = page_context(&st, &viewer, Some(&place), "functions", values);
    st.views.page(StatusCode::OK, "functions.html", ctx)
}

/// Rows a page of a long list shows.
pub(super) const PER_PAGE: usize = 100;

/// The functions of the app in `dir` (with their URL under `base_url`),
/// and the loader's problems.
pub(super) type FunctionList = (Vec<FunctionRow>, Vec<String>);

fn function_list(dir: &std::path::Path, base_url: &str) -> FunctionList {
    match FunctionApp::load(dir) {
        Ok(fa) => {
            let rows = fa
                .functions()
                .iter()
                .map(|f| FunctionRow {
                    name: f.name.clone(),
                    trigger: f.trigger_type().to_string(),
                    route: f.http.as_ref().map(|h| h.path()),
                    methods: f.http.as_ref().map(|h| h.methods.to_string()),
                    auth_level: f.http.as_ref().map(|h| h.auth_level.to_string()),
                    url: f.http.as_ref().map(|h| format!("{base_url}{}", h.path())),
                    disabled: f.disabled,
                })
                .collect();
            let problems = fa.diagnostics().iter().map(|d| d.to_string()).collect();
            (rows, problems)
        }
        Err(e) => (Vec::new(), vec![e.to_string()]),
    }
}

#[derive(Serialize)]
struct DeploymentRow {
    id: String,
    status: String,
    received_time: String,
    author: String,
    message: String,
    deployer: String,
    active: bool,
    files: u64,
}

/// `GET .../deployments[?page=N]`: the slot's history, newest first.
pub(super) async fn deployments(Page { st, viewer, place }: Page, req: Request) -> Response {
    let site = st.shared.site.clone();
    let (app, slot) = (place.app.clone(), place.slot.clone());
    let listed = blocking(move || {
        let active = site.active(&app, &slot)?.map(|a| a.deployment);
        let rows: Vec<DeploymentRow> = site
            .deployments(&app, Some(&slot))?
            .into_iter()
            .map(|d| DeploymentRow {
                active: active.as_deref() == Some(d.id.as_str()),
                status: d.status.to_string(),
                id: d.id,
                received_time: d.received_time,
                author: d.author,
                message: d.message,
                deployer: d.deployer,
                files: d.files,
            })
            .collect();
        Ok(rows)
    })
    .await;
    match listed {
        Ok(rows) => {
            let (rows, pager) = paged(rows, req.uri().query(), PER_PAGE / 2);
            let values = context! { deployments => Value::from(Serde(&rows)), pager => pager };
            let ctx = page_context(&st, &viewer, Some(&place), "deployments", values);
            st.views.page(StatusCode::OK, "deployments.html", ctx)
        }
        Err(e) => site_failure(&st, &viewer, Some(&place), &e),
    }
}

/// `GET .../deployments/{id}`: a deployment's record and log.
pub(super) async fn deployment(
    Page { st, viewer, place }: Page,
    Path((_, _, id)): Path<(String, String, String)>,
) -> Response {
    match st.shared.site.deployment(&place.app, &id) {
        Ok(d) => {
            let log: Vec<Value> = d
                .log
                .iter()
                .map(|e| context! { time => e.time.clone(), level => e.level.as_str(), message => e.message.clone() })
                .collect();
            let values = context! {
                d => context! {
                    id => d.id, status => d.status.to_string(), author => d.author,
                    message => d.message, deployer => d.deployer, source => d.source,
                    source_id => d.source_id, received_time => d.received_time,
                    end_time => d.end_time, files => d.files, bytes => d.bytes,
                },
                log => log,
            };
            let ctx = page_context(&st, &viewer, Some(&place), "deployments", values);
            st.views.page(StatusCode::OK, "deployment.html", ctx)
        }
        Err(e) => site_failure(&st, &viewer, Some(&place), &e),
    }
}

/// Activates `to` (or the previous successful deployment) in the slot's
/// turn: a pointer switch, allowed under continuous deployment too.
async fn switch(st: &PortalState, viewer: &Viewer, place: &Place, to: Option<String>) -> Response {
    let queue = st.shared.queue(&place.app, &place.slot);
    let _turn = queue.turn.lock().await;
    let site = st.shared.site.clone();
    let (app, slot) = (place.app.clone(), place.slot.clone());
    match blocking(move || site.rollback(&app, &slot, to.as_deref())).await {
        Ok(d) => {
            let did = format!(
                "activated deployment {} of {}/{}",
                d.id, place.app, place.slot
            );
            let message = format!("Deployment {} is active.", d.id);
            changed(st, viewer, place, &did, message, "deployments")
        }
        Err(e) => site_failure(st, viewer, Some(place), &e),
    }
}

/// `POST .../deployments/rollback`: back to the previous deployment.
pub(super) async fn rollback(Page { st, viewer, place }: Page) -> Response {
    switch(&st, &viewer, &place, None).await
}

/// `POST .../deployments/{id}/activate`: that deployment again.
pub(super) async fn activate(
    Page { st, viewer, place }: Page,
    Path((_, _, id)): Path<(String, String, String)>,
) -> Response {
    switch(&st, &viewer, &place, Some(id)).await
}

/// `GET .../download`: the choice of content with or without settings.
pub(super) async fn download_page(Page { st, viewer, place }: Page) -> Response {
    let ctx = page_context(&st, &viewer, Some(&place), "download", context! {});
    st.views.page(StatusCode::OK, "download.html", ctx)
}

/// `GET .../download/content.zip[?settings=1]`: the active content as a
/// zip, with `local.settings.json` from the app settings when asked.
pub(super) async fn download(Page { st, viewer, place }: Page, req: Request) -> Response {
    let query = req.uri().query().unwrap_or("");
    let include =
        form_urlencoded::parse(query.as_bytes()).any(|(k, v)| k == "settings" && v == "1");
    let tmp = TempFile::new(&st.shared.tmp, ".zip");
    let site = st.shared.site.clone();
    let (app, slot, out) = (place.app.clone(), place.slot.clone(), tmp.0.clone());
    if let Err(e) = blocking(move || site.download(&app, &slot, include, &out)).await {
        return site_failure(&st, &viewer, Some(&place), &e);
    }
    stream_temp(tmp, &format!("{}.zip", place.app))
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// `GET .../credentials`: the app's deployment user.
pub(super) async fn credentials(Page { st, viewer, place }: Page) -> Response {
    credentials_page(&st, &viewer, &place, None)
}

fn credentials_page(
    st: &PortalState,
    viewer: &Viewer,
    place: &Place,
    password: Option<String>,
) -> Response {
    match st.shared.site.credentials_user(&place.app) {
        Ok(user) => {
            let values = context! {
                deploy_user => user,
                new_password => password,
                min_len => crate::site::MIN_PASSWORD_LEN,
            };
            let ctx = page_context(st, viewer, Some(place), "credentials", values);
            st.views.page(StatusCode::OK, "credentials.html", ctx)
        }
        Err(e) => site_failure(st, viewer, Some(place), &e),
    }
}

/// `POST .../credentials`: sets the user and password (`password` given),
/// or a generated password shown once (`generate=1`). A viewer signed in
/// with the old credentials signs in again at the next page.
pub(super) async fn set_credentials(Page { st, viewer, place }: Page, req: Request) -> Response {
    let fields = match form(req.into_body(), 16 * 1024).await {
        Ok(f) => f,
        Err(resp) => return resp,
    };
    let user = fields.get("user").map_or("", |u| u.trim()).to_string();
    let generate = fields.get("generate").is_some_and(|g| g == "1");
    let password = fields.get("password").cloned().unwrap_or_default();
    let site = st.shared.site.clone();
    let app = place.app.clone();
    let done = blocking(move || {
        if generate {
            site.reset_credentials(&app, &user).map(Some)
        } else {
            site.set_credentials(&app, &user, &password).map(|()| None)
        }
    })
    .await;
    match done {
        Ok(generated) => {
            (st.shared.log)(&format!(
                "manage: portal: {} set the deployment credentials of {}",
                viewer.session.user, place.app
            ));
            if let Some(p) = generated {
                credentials_page(&st, &viewer, &place, Some(p))
            } else {
                viewer.flash(&st, "The deployment credentials are set.");
                see_other(&format!("{}/credentials", place.base))
            }
        }
        Err(e) => site_failure(&st, &viewer, Some(&place), &e),
    }
}
