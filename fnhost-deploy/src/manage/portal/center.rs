//! Deployment Center: the seeds' six steps (source, authorize, build
//! provider, repository and branch, summary, finish) for every source
//! fnhost has ([`crate::cd`]); then the source's state and deployments,
//! sync now, disconnect, the webhook URL and secret.

use std::collections::HashMap;

use axum::extract::{Request, State};
use axum::http::header::HOST;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use minijinja::value::Serde;
use minijinja::{Value, context};
use serde::Serialize;

use super::access::{Page, Place, Viewer, form};
use super::pages::{blocking, changed, failure, internal_failure, page_context};
use super::view::see_other;
use super::{PortalState, St};
use crate::cd::{
    BuildKind, ContinuousDeployer, SourceConfig, SourceCredentials, SourceKind, SyncOutcome,
};
use crate::site::PRODUCTION;

/// The sources, as the first step offers them: (value, label).
const SOURCES: &[(&str, &str)] = &[
    ("git", "Git repository (URL or path)"),
    ("local-git", "Built-in repository (push to this server)"),
    ("hg", "External Mercurial repository"),
    ("folder", "Synced folder"),
    ("zip", "Zip file"),
];

/// The form's fields, as given.
#[derive(Debug, Default, Serialize)]
struct Wizard {
    source: String,
    location: String,
    branch: String,
    build: String,
    username: String,
    /// Never shown back: only whether one was given.
    has_password: bool,
}

impl Wizard {
    fn from(f: &HashMap<String, String>) -> Wizard {
        let field = |n: &str| f.get(n).map_or("", |v| v.trim()).to_string();
        Wizard {
            source: field("source"),
            location: field("location"),
            branch: field("branch"),
            build: field("build"),
            username: field("username"),
            has_password: !field("password").is_empty(),
        }
    }

    /// The configuration (and credentials) the fields ask for, or what is
    /// wrong with them.
    fn config(&self, password: &str) -> Result<(SourceConfig, Option<SourceCredentials>), String> {
        let kind = match self.source.as_str() {
            "git" => SourceKind::Git,
            "local-git" => SourceKind::LocalGit,
            "hg" => SourceKind::Hg,
            "folder" => SourceKind::Folder,
            "zip" => SourceKind::Zip,
            other => return Err(format!("step 1: choose a source (not {other:?})")),
        };
        if kind != SourceKind::LocalGit && self.location.is_empty() {
            return Err("step 4: give the repository's URL or the path".into());
        }
        let build = match self.build.as_str() {
            "" | "none" => BuildKind::None,
            "auto" => BuildKind::Auto,
            "pipeline" => BuildKind::Pipeline,
            other => return Err(format!("step 3: no build provider {other:?}")),
        };
        let mut config = SourceConfig::new(kind, self.location.clone()).with_build(build);
        if !self.branch.is_empty() {
            if !matches!(
                kind,
                SourceKind::Git | SourceKind::LocalGit | SourceKind::Hg
            ) {
                return Err(format!("step 4: a {} source has no branch", kind.as_str()));
            }
            config = config.with_branch(self.branch.clone());
        }
        let credentials = if password.is_empty() {
            if !self.username.is_empty() {
                config = config.with_username(self.username.clone());
            }
            None
        } else {
            if kind != SourceKind::Git {
                return Err("step 2: only a git source takes a password or token".into());
            }
            Some(SourceCredentials::Password {
                username: self.username.clone(),
                password: password.to_string(),
            })
        };
        Ok((config, credentials))
    }
}

/// The API base URL of the place (`/apps/APP[/slots/SLOT]`), from the
/// request's `Host`.
fn api_base_url(st: &PortalState, place: &Place, headers: &HeaderMap) -> String {
    let scheme = if st.shared.tls { "https" } else { "http" };
    let host = headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    if place.slot == PRODUCTION {
        format!("{scheme}://{host}/apps/{}", place.app)
    } else {
        format!("{scheme}://{host}/apps/{}/slots/{}", place.app, place.slot)
    }
}

fn cd_failure(st: &PortalState, viewer: &Viewer, place: &Place, e: &crate::Error) -> Response {
    let status = match e {
        crate::Error::InvalidSource { .. } | crate::Error::Source { .. } => StatusCode::BAD_REQUEST,
        _ => StatusCode::CONFLICT,
    };
    failure(st, viewer, Some(place), status, &e.to_string())
}

/// `GET .../center`: the steps, or the connected source.
pub(super) async fn page(Page { st, viewer, place }: Page, req: Request) -> Response {
    center_page(&st, &viewer, &place, req.headers(), None).await
}

async fn center_page(
    st: &PortalState,
    viewer: &Viewer,
    place: &Place,
    headers: &HeaderMap,
    review: Option<&Wizard>,
) -> Response {
    let cd = ContinuousDeployer::new(st.shared.site.clone());
    let config = match cd.config(&place.app, &place.slot) {
        Ok(c) => c,
        Err(e) => return cd_failure(st, viewer, place, &e),
    };
    let state = cd.state(&place.app, &place.slot).unwrap_or_default();
    let has_secret = cd
        .webhook_secret(&place.app, &place.slot)
        .ok()
        .flatten()
        .is_some();
    let connected = config.as_ref().map(|c| {
        context! {
            describe => c.describe(),
            kind => c.kind.as_str(),
            build => c.build.as_str(),
            configured_time => c.configured_time.clone(),
            push_url => (c.kind == SourceKind::LocalGit)
                .then(|| format!("{}/{}.git", api_base_url(st, place, headers), place.app)),
        }
    });
    // The source's deployments: the slot's records made by a source.
    let deployments: Vec<Value> = st
        .shared
        .site
        .deployments(&place.app, Some(&place.slot))
        .unwrap_or_default()
        .into_iter()
        .filter(|d| SOURCES.iter().any(|(k, _)| d.deployer == *k))
        .take(20)
        .map(|d| context! { id => d.id, status => d.status.to_string(), message => d.message, source_id => d.source_id, time => d.received_time })
        .collect();
    let values = context! {
        sources => Value::from(Serde(SOURCES)),
        connected => connected,
        state => Value::from(Serde(&state)),
        deployments => deployments,
        webhook_url => format!("{}/deploy", api_base_url(st, place, headers)),
        has_secret => has_secret,
        review => review.map(|w| Value::from(Serde(w))),
    };
    let ctx = page_context(st, viewer, Some(place), "center", values);
    st.views.page(StatusCode::OK, "center.html", ctx)
}

/// `POST .../center` (`step` = `review` or `finish`, with the fields of
/// the steps): the summary, then the connection and a first sync.
pub(super) async fn connect(Page { st, viewer, place }: Page, req: Request) -> Response {
    let headers = req.headers().clone();
    let f = match form(req.into_body(), 64 * 1024).await {
        Ok(f) => f,
        Err(resp) => return resp,
    };
    let wizard = Wizard::from(&f);
    let password = f.get("password").cloned().unwrap_or_default();
    let (config, credentials) = match wizard.config(&password) {
        Ok(c) => c,
        Err(why) => return failure(&st, &viewer, Some(&place), StatusCode::BAD_REQUEST, &why),
    };
    if f.get("step").map(String::as_str) != Some("finish") {
        return center_page(&st, &viewer, &place, &headers, Some(&wizard)).await;
    }
    let site = st.shared.site.clone();
    let (app, slot) = (place.app.clone(), place.slot.clone());
    let done = blocking(move || {
        let cd = ContinuousDeployer::new(site);
        let r = cd
            .configure(&app, &slot, config, credentials)
            .and_then(|c| Ok((c, cd.sync_once(&app, &slot)?)));
        Ok(r)
    })
    .await;
    match done {
        Ok(Ok((config, outcome))) => {
            let source = config.describe();
            let did = format!("connected {source} of {}/{}", place.app, place.slot);
            let message = format!("Connected to {source}. {}", outcome_text(&outcome));
            changed(&st, &viewer, &place, &did, message, "center")
        }
        Ok(Err(e)) => cd_failure(&st, &viewer, &place, &e),
        Err(e) => super::pages::site_failure(&st, &viewer, Some(&place), &e),
    }
}

fn outcome_text(outcome: &SyncOutcome) -> String {
    match outcome {
        SyncOutcome::Deployed { deployments } => match deployments.last() {
            Some(d) => format!("Deployed {} ({}).", d.id, d.status),
            None => "Deployed.".into(),
        },
        SyncOutcome::UpToDate { source_id } => format!("Up to date with {source_id}."),
        other => format!("{other:?}"),
    }
}

/// `POST .../center/sync`: deploys the source's head now.
pub(super) async fn sync(Page { st, viewer, place }: Page) -> Response {
    let site = st.shared.site.clone();
    let (app, slot) = (place.app.clone(), place.slot.clone());
    let done = blocking(move || Ok(ContinuousDeployer::new(site).sync(&app, &slot, true))).await;
    match done {
        Ok(Ok(outcome)) => {
            viewer.flash(&st, format!("Synced. {}", outcome_text(&outcome)));
            see_other(&format!("{}/center", place.base))
        }
        Ok(Err(e)) => cd_failure(&st, &viewer, &place, &e),
        Err(e) => super::pages::site_failure(&st, &viewer, Some(&place), &e),
    }
}

/// `POST .../center/disconnect`: the slot follows no source any more (and
/// is writable again).
pub(super) async fn disconnect(Page { st, viewer, place }: Page) -> Response {
    let cd = ContinuousDeployer::new(st.shared.site.clone());
    match cd.clear(&place.app, &place.slot) {
        Ok(_) => {
            viewer.flash(
                &st,
                "Disconnected: the slot takes direct deployments again.",
            );
            see_other(&format!("{}/center", place.base))
        }
        Err(e) => cd_failure(&st, &viewer, &place, &e),
    }
}

/// `POST .../center/secret`: a new random webhook secret.
pub(super) async fn new_secret(Page { st, viewer, place }: Page) -> Response {
    let mut raw = [0u8; 24];
    if getrandom::fill(&mut raw).is_err() {
        return internal_failure(&st, &viewer, Some(&place), "no randomness for a secret");
    }
    let secret = hex::encode(raw);
    let cd = ContinuousDeployer::new(st.shared.site.clone());
    match cd.set_webhook_secret(&place.app, &place.slot, Some(secret.as_bytes())) {
        Ok(()) => {
            viewer.flash(&st, "A new webhook secret is set: show it below and give it to the repository's webhook.");
            see_other(&format!("{}/center", place.base))
        }
        Err(e) => cd_failure(&st, &viewer, &place, &e),
    }
}

/// `GET .../center/secret`: the webhook secret (for Show and Copy).
pub(super) async fn secret_value(State(st): State<St>, place: Place) -> Response {
    let cd = ContinuousDeployer::new(st.shared.site.clone());
    match cd.webhook_secret(&place.app, &place.slot) {
        Ok(Some(s)) => super::secrets::secret_text(&String::from_utf8_lossy(&s)),
        _ => (StatusCode::NOT_FOUND, "no webhook secret\n").into_response(),
    }
}
