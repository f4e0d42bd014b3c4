//! Keys and app settings: listed masked, a value fetched when asked for
//! (never in a page, a URL or a log), changed by forms.

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use fnhost_core::keys::{KeyStore, Secrets};
use minijinja::value::Serde;
use minijinja::{Value, context};
use serde::Serialize;

use super::St;
use super::access::{Page, Place, Viewer, form};
use super::pages::{
    PER_PAGE, blocking, changed, failure, internal_failure, page_context, paged, site_failure,
};
use crate::error::Error;

/// The slot's key store (created with new keys when it has none).
fn key_store(st: &St, place: &Place) -> Result<KeyStore, String> {
    let path = st
        .shared
        .site
        .secrets_path(&place.app, &place.slot)
        .map_err(|e| e.to_string())?;
    KeyStore::open(path).map_err(|e| format!("{}: the keys cannot be read: {e}", place.app))
}

/// A key as listed: which it is, never its value.
#[derive(Serialize)]
struct KeyRow {
    kind: &'static str,
    function: String,
    name: String,
}

fn key_rows(secrets: &Secrets) -> Vec<KeyRow> {
    let mut rows = vec![KeyRow {
        kind: "master",
        function: String::new(),
        name: "_master".into(),
    }];
    rows.extend(secrets.host.keys().map(|name| KeyRow {
        kind: "host",
        function: String::new(),
        name: name.clone(),
    }));
    for (function, keys) in &secrets.functions {
        rows.extend(keys.keys().map(|name| KeyRow {
            kind: "function",
            function: function.clone(),
            name: name.clone(),
        }));
    }
    rows
}

/// `GET .../keys[?page=N]`: the master, host and function keys, masked.
pub(super) async fn keys(Page { st, viewer, place }: Page, req: Request) -> Response {
    match key_store(&st, &place) {
        Ok(store) => {
            let (rows, pager) = paged(key_rows(&store.secrets()), req.uri().query(), PER_PAGE / 2);
            let values = context! { keys => Value::from(Serde(rows)), pager => pager };
            let ctx = page_context(&st, &viewer, Some(&place), "keys", values);
            st.views.page(StatusCode::OK, "keys.html", ctx)
        }
        Err(why) => internal_failure(&st, &viewer, Some(&place), &why),
    }
}

/// The query of a request, decoded.
fn query(req: &Request) -> HashMap<String, String> {
    form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

/// A secret value as plain text, never stored by the browser.
pub(super) fn secret_text(value: &str) -> Response {
    (
        [
            (CONTENT_TYPE, "text/plain; charset=utf-8"),
            (CACHE_CONTROL, "no-store"),
        ],
        value.to_string(),
    )
        .into_response()
}

fn not_found(what: &str) -> Response {
    (StatusCode::NOT_FOUND, format!("no {what}\n")).into_response()
}

/// `GET .../keys/value?kind=&function=&name=`: one key's value (for Show
/// and Copy).
pub(super) async fn key_value(State(st): State<St>, place: Place, req: Request) -> Response {
    let q = query(&req);
    let field = |n: &str| q.get(n).map_or("", String::as_str);
    let store = match key_store(&st, &place) {
        Ok(s) => s,
        Err(why) => return (StatusCode::INTERNAL_SERVER_ERROR, why).into_response(),
    };
    let s = store.secrets();
    let value = match field("kind") {
        "master" => Some(s.master.clone()),
        "host" => s.host.get(field("name")).cloned(),
        "function" => s
            .function_keys(field("function"))
            .and_then(|k| k.get(field("name")).cloned()),
        _ => None,
    };
    value.map_or_else(|| not_found("such key"), |v| secret_text(&v))
}

/// `POST .../keys/renew` (`kind`, `function`, `name`): a new value for a
/// key, or a new key of that name.
pub(super) async fn renew_key(Page { st, viewer, place }: Page, req: Request) -> Response {
    change_key(st, viewer, place, req, false).await
}

/// `POST .../keys/revoke` (`kind`, `function`, `name`): removes a host or
/// function key (the master key is renewed, never removed).
pub(super) async fn revoke_key(Page { st, viewer, place }: Page, req: Request) -> Response {
    change_key(st, viewer, place, req, true).await
}

async fn change_key(st: St, viewer: Viewer, place: Place, req: Request, revoke: bool) -> Response {
    let f = match form(req.into_body(), 16 * 1024).await {
        Ok(f) => f,
        Err(resp) => return resp,
    };
    let field = |n: &str| f.get(n).map_or("", |v| v.trim()).to_string();
    let (kind, function, name) = (field("kind"), field("function"), field("name"));
    let store = match key_store(&st, &place) {
        Ok(s) => s,
        Err(why) => return internal_failure(&st, &viewer, Some(&place), &why),
    };
    let done = match (kind.as_str(), revoke) {
        ("master", false) => store.rotate_master().map(|_| true),
        ("host", false) => store.new_host_key(&name).map(|_| true),
        ("function", false) if !function.is_empty() => {
            store.new_function_key(&function, &name).map(|_| true)
        }
        ("host", true) => store.revoke_host_key(&name),
        ("function", true) => store.revoke_function_key(&function, &name),
        _ => {
            let why = "give a key: kind master, host or function (with the function), and a name; the master key can be renewed, not revoked";
            return failure(&st, &viewer, Some(&place), StatusCode::BAD_REQUEST, why);
        }
    };
    let which = if kind == "function" {
        format!("function key {name} of {function}")
    } else {
        format!("{kind} key {name}")
    };
    match done {
        Ok(true) => {
            let verb = if revoke { "revoked" } else { "renewed" };
            let did = format!("{verb} the {which} of {}/{}", place.app, place.slot);
            let message = format!("The {which} is {verb}.");
            changed(&st, &viewer, &place, &did, message, "keys")
        }
        Ok(false) => failure(
            &st,
            &viewer,
            Some(&place),
            StatusCode::NOT_FOUND,
            &format!("no {which}"),
        ),
        Err(e) => failure(
            &st,
            &viewer,
            Some(&place),
            StatusCode::BAD_REQUEST,
            &e.to_string(),
        ),
    }
}

/// `GET .../settings`: the slot's app settings, names shown, values masked.
pub(super) async fn settings(Page { st, viewer, place }: Page) -> Response {
    match st.shared.site.app_settings(&place.app, &place.slot) {
        Ok(settings) => {
            let names: Vec<String> = settings.into_keys().collect();
            let values = context! { settings => names };
            let ctx = page_context(&st, &viewer, Some(&place), "settings", values);
            st.views.page(StatusCode::OK, "settings.html", ctx)
        }
        Err(e) => site_failure(&st, &viewer, Some(&place), &e),
    }
}

/// `GET .../settings/value?name=`: one setting's value.
pub(super) async fn setting_value(State(st): State<St>, place: Place, req: Request) -> Response {
    let q = query(&req);
    let name = q.get("name").map_or("", String::as_str);
    match st.shared.site.app_settings(&place.app, &place.slot) {
        Ok(s) => s
            .get(name)
            .map_or_else(|| not_found("such setting"), |v| secret_text(v)),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

/// `POST .../settings` (`name`, `value`): adds or changes a setting.
pub(super) async fn set_setting(Page { st, viewer, place }: Page, req: Request) -> Response {
    update_settings(st, viewer, place, req, false).await
}

/// `POST .../settings/delete` (`name`): removes a setting.
pub(super) async fn delete_setting(Page { st, viewer, place }: Page, req: Request) -> Response {
    update_settings(st, viewer, place, req, true).await
}

async fn update_settings(
    st: St,
    viewer: Viewer,
    place: Place,
    req: Request,
    delete: bool,
) -> Response {
    let f = match form(req.into_body(), 256 * 1024).await {
        Ok(f) => f,
        Err(resp) => return resp,
    };
    let name = f.get("name").map_or("", |v| v.trim()).to_string();
    let value = f.get("value").cloned().unwrap_or_default();
    let site = st.shared.site.clone();
    let (app, slot, n) = (place.app.clone(), place.slot.clone(), name.clone());
    let done: Result<_, Error> = blocking(move || {
        let (set, remove) = if delete {
            (BTreeMap::new(), vec![n])
        } else {
            (BTreeMap::from([(n, value)]), Vec::new())
        };
        site.update_app_settings(&app, &slot, set, &remove)
    })
    .await;
    match done {
        Ok(_) => {
            let verb = if delete { "deleted" } else { "saved" };
            let did = format!("{verb} app setting {name} of {}/{}", place.app, place.slot);
            let message = format!("App setting {name} {verb}.");
            changed(&st, &viewer, &place, &did, message, "settings")
        }
        Err(e) => site_failure(&st, &viewer, Some(&place), &e),
    }
}
