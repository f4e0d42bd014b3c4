//! Rendering: the templates (compiled into the binary, auto-escaped), the
//! static files, the response headers every portal answer carries.

use axum::extract::{Path, Request};
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, LOCATION, REFERRER_POLICY,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use minijinja::{Environment, UndefinedBehavior, Value};

/// The templates, by name; `.html` names are escaped by default.
const TEMPLATES: &[(&str, &str)] = &[
    ("layout.html", include_str!("templates/layout.html")),
    ("login.html", include_str!("templates/login.html")),
    ("error.html", include_str!("templates/error.html")),
    ("apps.html", include_str!("templates/apps.html")),
    ("functions.html", include_str!("templates/functions.html")),
    ("keys.html", include_str!("templates/keys.html")),
    ("settings.html", include_str!("templates/settings.html")),
    (
        "deployments.html",
        include_str!("templates/deployments.html"),
    ),
    ("deployment.html", include_str!("templates/deployment.html")),
    ("download.html", include_str!("templates/download.html")),
    ("files.html", include_str!("templates/files.html")),
    ("editor.html", include_str!("templates/editor.html")),
    ("logstream.html", include_str!("templates/logstream.html")),
    ("new.html", include_str!("templates/new.html")),
    ("monitor.html", include_str!("templates/monitor.html")),
    ("center.html", include_str!("templates/center.html")),
    ("pager.html", include_str!("templates/pager.html")),
    (
        "credentials.html",
        include_str!("templates/credentials.html"),
    ),
    ("workers.html", include_str!("templates/workers.html")),
    ("placement.html", include_str!("templates/placement.html")),
];

/// The static files: name, content type, content.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "portal.js",
        "text/javascript; charset=utf-8",
        include_str!("static/portal.js"),
    ),
    (
        "portal.css",
        "text/css; charset=utf-8",
        include_str!("static/portal.css"),
    ),
];

/// The policy of every portal response: scripts and styles from here only
/// (no inline ones), no plugins, no framing, forms post here only.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The template environment.
pub(super) struct Views {
    env: Environment<'static>,
}

impl std::fmt::Debug for Views {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Views").finish_non_exhaustive()
    }
}

impl Views {
    pub(super) fn new() -> Views {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
        for (name, source) in TEMPLATES {
            // The templates are part of the binary and tested: a broken
            // one shows as an error page naming it, not a panic.
            if let Err(e) = env.add_template(name, source) {
                env.add_template_owned(
                    *name,
                    format!("template {name} does not compile: {e}")
                        .replace(['{', '}', '%', '#'], " "),
                )
                .ok();
            }
        }
        Views { env }
    }

    /// Renders `name` with `ctx` as an HTML page with `status`.
    pub(super) fn page(&self, status: StatusCode, name: &str, ctx: Value) -> Response {
        match self.env.get_template(name).and_then(|t| t.render(ctx)) {
            Ok(html) => {
                (status, [(CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
            }
            Err(e) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the portal's template {name} failed: {e}\n"),
            )
                .into_response(),
        }
    }
}

/// A 303 to `to` (after a form, or to the login page).
pub(super) fn see_other(to: &str) -> Response {
    let location = HeaderValue::from_str(to).unwrap_or(HeaderValue::from_static("/portal/"));
    (StatusCode::SEE_OTHER, [(LOCATION, location)]).into_response()
}

/// `GET /portal/static/{file}`.
pub(super) async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, ..)| *name == file) {
        Some((_, content_type, body)) => (
            [(CONTENT_TYPE, *content_type), (CACHE_CONTROL, "no-cache")],
            *body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such file\n").into_response(),
    }
}

/// Puts the security headers on every portal response.
pub(super) async fn security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.entry(CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_is_listed_and_compiles() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/manage/portal/templates");
        for f in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            assert!(
                TEMPLATES.iter().any(|(n, _)| *n == name),
                "{name} is not in TEMPLATES"
            );
        }
        let mut env = Environment::new();
        for (name, source) in TEMPLATES {
            if let Err(e) = env.add_template(name, source) {
                panic!("{name}: {e:#}");
            }
        }
    }
}
