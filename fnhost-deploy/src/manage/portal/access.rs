//! Signing in and out, and who may see what: the [`Viewer`] of a request
//! and the app and slot of a page ([`Place`]).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use axum::body::Body;
use axum::extract::{FromRequestParts, RawPathParams, Request, State};
use axum::http::header::SET_COOKIE;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use minijinja::{Value, context};

use super::session::{Grant, Session, clear_cookie, set_cookie};
use super::view::see_other;
use super::{PortalState, St};
use crate::manage::auth;
use crate::site::{PRODUCTION, check_name};

/// The signed-in person of a request.
#[derive(Debug, Clone)]
pub(super) struct Viewer {
    /// The session's id (to change it: flash, logout).
    pub(super) id: String,
    pub(super) session: Session,
}

impl Viewer {
    /// What every page's layout shows of the viewer.
    pub(super) fn context(&self, st: &PortalState) -> Value {
        let flash = self.session.flash.clone();
        if flash.is_some() {
            st.sessions.update(&self.id, |s| s.flash = None);
        }
        context! {
            user => self.session.user.clone(),
            admin => self.session.is_admin(),
            workers => self.session.is_admin() && st.config.workers.is_some(),
            flash => flash,
        }
    }

    /// Leaves a message for the next page.
    pub(super) fn flash(&self, st: &PortalState, message: impl Into<String>) {
        let message = message.into();
        st.sessions.update(&self.id, |s| s.flash = Some(message));
    }
}

/// Not signed in: a page is sent to the login form, anything else is 401.
#[derive(Debug)]
pub(super) struct SignIn(Method, String);

impl IntoResponse for SignIn {
    fn into_response(self) -> Response {
        if self.0 == Method::GET {
            let next = form_urlencoded::byte_serialize(self.1.as_bytes()).collect::<String>();
            see_other(&format!("/portal/login?next={next}"))
        } else {
            let why = "not signed in (or the session ended): sign in again at /portal/login";
            (StatusCode::UNAUTHORIZED, format!("{why}\n")).into_response()
        }
    }
}

impl FromRequestParts<St> for Viewer {
    type Rejection = SignIn;

    async fn from_request_parts(parts: &mut Parts, st: &St) -> Result<Viewer, SignIn> {
        if let Some(v) = parts.extensions.get::<Viewer>() {
            return Ok(v.clone());
        }
        let reject = || SignIn(parts.method.clone(), parts.uri.path().to_string());
        let (id, session) = st
            .sessions
            .get(&parts.headers, st.shared.tls)
            .ok_or_else(reject)?;
        // The account or the credentials changed since sign-in: the
        // session ends.
        let site = &st.shared.site;
        let current = match &session.grant {
            Grant::Admin { stamp } => site
                .portal_user_stamp(&session.user)
                .ok()
                .flatten()
                .filter(|s| s == stamp),
            Grant::App { app, stamp } => site
                .credentials_version(app)
                .ok()
                .flatten()
                .filter(|s| s == stamp),
        };
        if current.is_none() {
            st.sessions.end(&id);
            return Err(reject());
        }
        let viewer = Viewer { id, session };
        parts.extensions.insert(viewer.clone());
        Ok(viewer)
    }
}

/// The app and slot of a page under `/portal/apps/{app}/{slot}`.
#[derive(Debug, Clone)]
pub(super) struct Place {
    pub(super) app: String,
    pub(super) slot: String,
    /// Why direct changes are refused (continuous deployment), if they are.
    pub(super) read_only: Option<String>,
    /// The page's base path.
    pub(super) base: String,
}

impl Place {
    /// What every app page's layout shows of the place.
    pub(super) fn context(&self, st: &PortalState) -> Value {
        let slots = st.shared.site.slots(&self.app).unwrap_or_default();
        context! {
            app => self.app.clone(),
            slot => self.slot.clone(),
            slots => slots,
            base => self.base.clone(),
            read_only => self.read_only.clone(),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Place {
    type Rejection = StatusCode;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Place, StatusCode> {
        parts
            .extensions
            .get::<Place>()
            .cloned()
            .ok_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

/// What every page of an app slot is given: the portal's state, the
/// signed-in viewer and the place ([`slot_layer`] checked both). Extracted
/// in that order, with their rejections.
pub(super) struct Page {
    pub(super) st: St,
    pub(super) viewer: Viewer,
    pub(super) place: Place,
}

impl FromRequestParts<St> for Page {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, st: &St) -> Result<Page, Response> {
        let viewer = Viewer::from_request_parts(parts, st)
            .await
            .map_err(IntoResponse::into_response)?;
        let place = Place::from_request_parts(parts, st)
            .await
            .map_err(IntoResponse::into_response)?;
        Ok(Page {
            st: st.clone(),
            viewer,
            place,
        })
    }
}

/// The layer of `/portal/apps/{app}/{slot}/...`: a signed-in viewer who
/// may see the app, an app and a slot that exist (404 otherwise, the same
/// for an app the viewer may not see).
pub(super) async fn slot_layer(
    State(st): State<St>,
    params: RawPathParams,
    req: Request,
    next: Next,
) -> Response {
    let (mut parts, body) = req.into_parts();
    let viewer = match Viewer::from_request_parts(&mut parts, &st).await {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let param = |name| {
        params
            .iter()
            .find(|(k, _)| *k == name)
            .map_or("", |(_, v)| v)
    };
    let (app, slot) = (param("app").to_string(), param("slot").to_string());
    let site = &st.shared.site;
    let found = check_name("app", &app).is_ok()
        && check_name("slot", &slot).is_ok()
        && viewer.session.may(&app)
        && site.slots(&app).is_ok_and(|s| s.contains(&slot));
    if !found {
        let why = format!("no app {app:?} with a slot {slot:?} that you may see");
        return (StatusCode::NOT_FOUND, format!("{why}\n")).into_response();
    }
    let read_only = match site.check_writable(&app, &slot) {
        Err(e @ crate::Error::ReadOnly { .. }) => Some(e.to_string()),
        _ => None,
    };
    let base = format!("/portal/apps/{app}/{slot}");
    parts.extensions.insert(Place {
        app,
        slot,
        read_only,
        base,
    });
    next.run(Request::from_parts(parts, body)).await
}

/// A form's fields (`application/x-www-form-urlencoded`), at most `limit`
/// bytes.
pub(super) async fn form(body: Body, limit: usize) -> Result<HashMap<String, String>, Response> {
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
        let why = format!("the form is larger than {limit} bytes, or was cut short");
        (StatusCode::PAYLOAD_TOO_LARGE, why).into_response()
    })?;
    Ok(form_urlencoded::parse(&bytes).into_owned().collect())
}

/// The client's address, as the endpoint put it on the request.
fn peer_ip(req: &Request) -> IpAddr {
    req.extensions()
        .get::<SocketAddr>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |p| p.ip())
}

/// Where to go after sign-in: a portal path from the form, else home.
fn next_path(next: Option<&str>) -> &str {
    next.filter(|n| n.starts_with("/portal/") && !n.contains("//") && !n.contains('\\'))
        .unwrap_or("/portal/")
}

/// `GET /portal/login`.
pub(super) async fn login_form(State(st): State<St>, req: Request) -> Response {
    let query = req.uri().query().unwrap_or("");
    let next: Option<String> = form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "next")
        .map(|(_, v)| v.into_owned());
    login_page(
        &st,
        StatusCode::OK,
        None,
        next_path(next.as_deref()),
        "",
        "",
    )
}

fn login_page(
    st: &PortalState,
    status: StatusCode,
    error: Option<&str>,
    next: &str,
    user: &str,
    app: &str,
) -> Response {
    st.views.page(
        status,
        "login.html",
        context! { error => error, next => next, user => user, app => app },
    )
}

/// `POST /portal/login`: a portal account (no app given) or an app's
/// deployment credentials.
pub(super) async fn login(State(st): State<St>, req: Request) -> Response {
    let ip = peer_ip(&req);
    let fields = match form(req.into_body(), 16 * 1024).await {
        Ok(f) => f,
        Err(resp) => return resp,
    };
    let field = |name: &str| fields.get(name).map_or("", |v| v.trim());
    let (user, app) = (field("user"), field("app"));
    let password = fields.get("password").map_or("", String::as_str);
    let next = next_path(fields.get("next").map(String::as_str));
    let shared = &st.shared;
    if auth::lockout(shared, ip).is_some() {
        let why = "Too many failed sign-ins from this address: wait a little and try again.";
        return login_page(
            &st,
            StatusCode::TOO_MANY_REQUESTS,
            Some(why),
            next,
            user,
            app,
        );
    }
    let grant = if app.is_empty() {
        let site = shared.site.clone();
        let (u, p) = (user.to_string(), password.to_string());
        let checked = tokio::task::spawn_blocking(move || site.check_portal_user(&u, &p)).await;
        match checked {
            Ok(Ok(Some(stamp))) => Some(Grant::Admin { stamp }),
            Ok(Ok(None)) => {
                auth::failed(shared, ip, "the portal", "wrong user or password");
                None
            }
            _ => {
                let why = "The portal accounts could not be read (see the server log).";
                (shared.log)("manage: portal: cannot read the portal accounts");
                return login_page(
                    &st,
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Some(why),
                    next,
                    user,
                    app,
                );
            }
        }
    } else {
        match auth::check_app_credentials(shared, app, user, password, ip).await {
            Ok(true) => shared
                .site
                .credentials_version(app)
                .ok()
                .flatten()
                .map(|stamp| Grant::App {
                    app: app.to_string(),
                    stamp,
                }),
            Ok(false) => None,
            Err(e) => return e.into_response(),
        }
    };
    let Some(grant) = grant else {
        let why =
            "Wrong user name or password (for an app's deployment credentials, give the app too).";
        return login_page(&st, StatusCode::UNAUTHORIZED, Some(why), next, user, app);
    };
    auth::succeeded(shared, ip);
    let home = match &grant {
        Grant::App { app, .. } if next == "/portal/" => {
            format!("/portal/apps/{app}/{PRODUCTION}/functions")
        }
        _ => next.to_string(),
    };
    let id = match st.sessions.start(Session::new(user.to_string(), grant)) {
        Ok(id) => id,
        Err(e) => {
            let why = format!("no randomness for a session id: {e}");
            return (StatusCode::INTERNAL_SERVER_ERROR, why).into_response();
        }
    };
    (shared.log)(&format!("manage: portal: {user} signed in from {ip}"));
    let mut resp = see_other(&home);
    if let Ok(v) = set_cookie(&id, shared.tls).parse() {
        resp.headers_mut().insert(SET_COOKIE, v);
    }
    resp
}

/// `POST /portal/logout`: ends the session, removes the cookie.
pub(super) async fn logout(State(st): State<St>, headers: HeaderMap) -> Response {
    if let Some((id, _)) = st.sessions.get(&headers, st.shared.tls) {
        st.sessions.end(&id);
    }
    let mut resp = see_other("/portal/login");
    if let Ok(v) = clear_cookie(st.shared.tls).parse() {
        resp.headers_mut().insert(SET_COOKIE, v);
    }
    resp
}
