//! The Workers pages, when the management endpoint runs the worker role's
//! manager ([`Portal::with_workers`](super::Portal::with_workers)): the
//! cluster's workers (drain, new join token) and, on an app's pages, where
//! its instances run (scale). Portal accounts only: an app's deployment
//! credentials see neither.
//!
//! fnhost-deploy knows nothing of the cluster: the manager (fnhost-cluster's
//! `manager::Cluster`) implements [`WorkersView`] over its state store.

use std::collections::BTreeMap;
use std::fmt;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use minijinja::value::Serde;
use minijinja::{Value, context};
use serde::Serialize;

use super::access::{Page, Place, Viewer, form};
use super::pages::{changed, failure, page_context, paged};
use super::view::see_other;
use super::{PortalState, St};

/// What a [`WorkersView`] fails with (its store's error); the portal shows
/// it on an error page.
pub type WorkersError = Box<dyn std::error::Error + Send + Sync>;

/// A worker of the cluster, as the Workers page shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct WorkerInfo {
    /// Its name.
    pub name: String,
    /// `joining`, `ready`, `draining` or `stale`.
    pub state: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// The most instances it takes.
    pub capacity: i64,
    /// Requests in flight at its last heartbeat.
    pub in_flight: u64,
    /// Milliseconds since its last heartbeat.
    pub last_heartbeat_ms_ago: i64,
    /// The app instances placed on it.
    pub instances: Vec<InstanceInfo>,
}

/// An app instance placed on a worker.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct InstanceInfo {
    /// The app.
    pub app: String,
    /// The slot.
    pub slot: String,
    /// The deployment it runs (or is to run).
    pub deployment: String,
    /// `ready` (serving), `starting` (reported, not ready yet) or
    /// `assigned` (not reported by the worker yet).
    pub state: String,
    /// Its requests in flight.
    pub in_flight: u64,
}

/// How many instances of an app slot run, and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "mode", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Scale {
    /// Exactly this many, each on another worker.
    Instances {
        /// The count.
        instances: i64,
    },
    /// Between `min` and `max`, by requests in flight.
    Auto {
        /// The fewest.
        min: i64,
        /// The most.
        max: i64,
    },
    /// One on every worker (with the labels).
    EveryWorker,
}

/// An app slot's placement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlacementInfo {
    /// The app.
    pub app: String,
    /// The slot.
    pub slot: String,
    /// How many instances.
    pub scale: Scale,
    /// Only on workers with all these labels.
    pub labels: BTreeMap<String, String>,
}

/// The cluster as the portal sees it: implemented by the worker role's
/// manager over its state store, given to
/// [`Portal::with_workers`](super::Portal::with_workers).
#[async_trait::async_trait]
pub trait WorkersView: Send + Sync + fmt::Debug {
    /// Every worker (gone ones left out), with its instances.
    async fn workers(&self) -> Result<Vec<WorkerInfo>, WorkersError>;
    /// Every app slot's placement.
    async fn placements(&self) -> Result<Vec<PlacementInfo>, WorkersError>;
    /// Asks a worker to drain; false when there is no such worker.
    async fn drain(&self, worker: &str) -> Result<bool, WorkersError>;
    /// Sets an app slot's placement.
    async fn place(&self, placement: &PlacementInfo) -> Result<(), WorkersError>;
    /// Removes an app slot's placement: it stops running on workers.
    async fn unplace(&self, app: &str, slot: &str) -> Result<(), WorkersError>;
    /// A new join token for workers and gateways: only its hash is kept.
    async fn join_token(&self) -> Result<String, WorkersError>;
}

/// Who may see the cluster: a portal account, on a portal with workers.
fn cluster_of<'a>(
    st: &'a PortalState,
    viewer: &Viewer,
    place: Option<&Place>,
) -> Result<&'a dyn WorkersView, Box<Response>> {
    let (status, why) = match st.config.workers.as_deref() {
        None => (
            StatusCode::NOT_FOUND,
            "this endpoint runs no worker role (fnhost manage does)",
        ),
        Some(_) if !viewer.session.is_admin() => (
            StatusCode::FORBIDDEN,
            "only a portal account may see the cluster's workers (an app's deployment credentials may not)",
        ),
        Some(workers) => return Ok(workers),
    };
    Err(Box::new(failure(st, viewer, place, status, why)))
}

/// The state store failed: a page saying so.
fn store_failure(
    st: &PortalState,
    viewer: &Viewer,
    place: Option<&Place>,
    e: &WorkersError,
) -> Response {
    let why = format!("the cluster's state cannot be read or written: {e}");
    failure(st, viewer, place, StatusCode::SERVICE_UNAVAILABLE, &why)
}

/// "k=v, k2=v2".
fn labels_text(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// "1.2 s ago".
fn ago(ms: i64) -> String {
    if ms < 60_000 {
        format!("{:.1} s ago", ms.max(0) as f64 / 1000.0)
    } else if ms < 3_600_000 {
        format!("{} min ago", ms / 60_000)
    } else {
        format!("{} h ago", ms / 3_600_000)
    }
}

/// What a placement means, in words.
fn scale_text(scale: &Scale) -> String {
    match scale {
        Scale::Instances { instances } => format!("{instances} instance(s)"),
        Scale::Auto { min, max } => format!("{min} to {max} instances by load"),
        Scale::EveryWorker => "one instance on every worker".into(),
    }
}

#[derive(Serialize)]
struct WorkerRow<'a> {
    #[serde(flatten)]
    worker: &'a WorkerInfo,
    labels_text: String,
    heartbeat: String,
}

#[derive(Serialize)]
struct PlacementRow {
    app: String,
    slot: String,
    scale: String,
    labels: String,
    ready: usize,
    placed: usize,
}

/// Workers, or instances, a page.
const PER_PAGE: usize = 50;

/// `GET /portal/workers[?page=N]`.
pub(super) async fn page(State(st): State<St>, viewer: Viewer, req: Request) -> Response {
    workers_page(&st, &viewer, None, req.uri().query()).await
}

/// The Workers page, with a new join token when one was just made.
async fn workers_page(
    st: &PortalState,
    viewer: &Viewer,
    token: Option<String>,
    query: Option<&str>,
) -> Response {
    let cluster = match cluster_of(st, viewer, None) {
        Ok(c) => c,
        Err(resp) => return *resp,
    };
    let (workers, placements) = match (cluster.workers().await, cluster.placements().await) {
        (Ok(w), Ok(p)) => (w, p),
        (Err(e), _) | (_, Err(e)) => return store_failure(st, viewer, None, &e),
    };
    let rows: Vec<WorkerRow<'_>> = workers
        .iter()
        .map(|w| WorkerRow {
            worker: w,
            labels_text: labels_text(&w.labels),
            heartbeat: ago(w.last_heartbeat_ms_ago),
        })
        .collect();
    let (rows, pager) = paged(rows, query, PER_PAGE);
    let placed: Vec<PlacementRow> = placements
        .iter()
        .map(|p| {
            let instances = || {
                workers
                    .iter()
                    .flat_map(|w| &w.instances)
                    .filter(|i| i.app == p.app && i.slot == p.slot)
            };
            PlacementRow {
                app: p.app.clone(),
                slot: p.slot.clone(),
                scale: scale_text(&p.scale),
                labels: labels_text(&p.labels),
                ready: instances().filter(|i| i.state == "ready").count(),
                placed: instances().count(),
            }
        })
        .collect();
    let values = context! {
        workers => Value::from(Serde(&rows)),
        pager => pager,
        placements => Value::from(Serde(&placed)),
        token => token,
    };
    let ctx = page_context(st, viewer, None, "workers", values);
    st.views.page(StatusCode::OK, "workers.html", ctx)
}

/// `POST /portal/workers/drain` (`name`): asks a worker to drain.
pub(super) async fn drain(State(st): State<St>, viewer: Viewer, req: Request) -> Response {
    let cluster = match cluster_of(&st, &viewer, None) {
        Ok(c) => c,
        Err(resp) => return *resp,
    };
    let fields = match form(req.into_body(), 16 * 1024).await {
        Ok(f) => f,
        Err(resp) => return resp,
    };
    let name = fields.get("name").map_or("", String::as_str);
    match cluster.drain(name).await {
        Ok(true) => {
            (st.shared.log)(&format!(
                "manage: portal: {} asked worker {name:?} to drain",
                viewer.session.user
            ));
            viewer.flash(
                &st,
                format!("Worker {name} drains at its next heartbeat: it finishes its requests, then leaves."),
            );
            see_other("/portal/workers")
        }
        Ok(false) => {
            let why = format!("no worker {name:?}");
            failure(&st, &viewer, None, StatusCode::NOT_FOUND, &why)
        }
        Err(e) => store_failure(&st, &viewer, None, &e),
    }
}

/// `POST /portal/workers/token`: a new join token, shown once on the page
/// this answers with (never stored in clear, never in a redirect).
pub(super) async fn token(State(st): State<St>, viewer: Viewer) -> Response {
    let cluster = match cluster_of(&st, &viewer, None) {
        Ok(c) => c,
        Err(resp) => return *resp,
    };
    match cluster.join_token().await {
        Ok(token) => {
            (st.shared.log)(&format!(
                "manage: portal: {} made a join token",
                viewer.session.user
            ));
            workers_page(&st, &viewer, Some(token), None).await
        }
        Err(e) => store_failure(&st, &viewer, None, &e),
    }
}

#[derive(Serialize)]
struct InstanceRow<'a> {
    worker: &'a str,
    worker_state: &'a str,
    #[serde(flatten)]
    instance: &'a InstanceInfo,
}

/// `GET .../placement[?page=N]`: where the slot's instances run, and the
/// scale form.
pub(super) async fn placement(Page { st, viewer, place }: Page, req: Request) -> Response {
    let cluster = match cluster_of(&st, &viewer, Some(&place)) {
        Ok(c) => c,
        Err(resp) => return *resp,
    };
    let (workers, placements) = match (cluster.workers().await, cluster.placements().await) {
        (Ok(w), Ok(p)) => (w, p),
        (Err(e), _) | (_, Err(e)) => return store_failure(&st, &viewer, Some(&place), &e),
    };
    let current = placements
        .into_iter()
        .find(|p| p.app == place.app && p.slot == place.slot);
    let instances: Vec<InstanceRow<'_>> = workers
        .iter()
        .flat_map(|w| {
            w.instances
                .iter()
                .filter(|i| i.app == place.app && i.slot == place.slot)
                .map(|i| InstanceRow {
                    worker: &w.name,
                    worker_state: &w.state,
                    instance: i,
                })
        })
        .collect();
    let (instances, pager) = paged(instances, req.uri().query(), PER_PAGE);
    let values = context! {
        pager => pager,
        placement => current.as_ref().map(|p| context! {
            scale => Value::from(Serde(&p.scale)),
            text => scale_text(&p.scale),
            labels => labels_text(&p.labels),
        }),
        instances => Value::from(Serde(&instances)),
        workers => workers.len(),
    };
    let ctx = page_context(&st, &viewer, Some(&place), "placement", values);
    st.views.page(StatusCode::OK, "placement.html", ctx)
}

/// The scale form's fields as `place`'s placement (`None`: stop running
/// on workers), or what is wrong with them.
fn parse_scale(
    place: &Place,
    fields: &std::collections::HashMap<String, String>,
) -> Result<Option<PlacementInfo>, String> {
    let field = |name: &str| fields.get(name).map_or("", |v| v.trim());
    let number = |name: &str| -> Result<i64, String> {
        field(name)
            .parse::<i64>()
            .ok()
            .filter(|n| (0..=10_000).contains(n))
            .ok_or_else(|| format!("{name} {:?}: give a whole number from 0", field(name)))
    };
    let scale = match field("mode") {
        "instances" => Scale::Instances {
            instances: number("instances")?,
        },
        "auto" => {
            let (min, max) = (number("min")?, number("max")?);
            if max < min || max == 0 {
                return Err(format!(
                    "min {min}, max {max}: give min <= max, max at least 1"
                ));
            }
            Scale::Auto { min, max }
        }
        "every-worker" => Scale::EveryWorker,
        "remove" => return Ok(None),
        other => {
            return Err(format!(
                "mode {other:?}: choose instances, auto, every-worker or remove"
            ));
        }
    };
    let mut labels = BTreeMap::new();
    for part in field("labels")
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        match part.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => {
                labels.insert(k.trim().to_string(), v.trim().to_string());
            }
            _ => {
                return Err(format!(
                    "label {part:?} is not name=value (write zone=a,gpu=yes)"
                ));
            }
        }
    }
    Ok(Some(PlacementInfo {
        app: place.app.clone(),
        slot: place.slot.clone(),
        scale,
        labels,
    }))
}

/// `POST .../placement` (`mode`, `instances`, `min`, `max`, `labels`):
/// scales the slot on the workers.
pub(super) async fn scale(Page { st, viewer, place }: Page, req: Request) -> Response {
    let cluster = match cluster_of(&st, &viewer, Some(&place)) {
        Ok(c) => c,
        Err(resp) => return *resp,
    };
    let fields = match form(req.into_body(), 16 * 1024).await {
        Ok(f) => f,
        Err(resp) => return resp,
    };
    let placement = match parse_scale(&place, &fields) {
        Ok(s) => s,
        Err(why) => return failure(&st, &viewer, Some(&place), StatusCode::BAD_REQUEST, &why),
    };
    let what = match &placement {
        Some(p) if p.labels.is_empty() => scale_text(&p.scale),
        Some(p) => format!(
            "{} on workers labelled {}",
            scale_text(&p.scale),
            labels_text(&p.labels)
        ),
        None => "no instances on workers".into(),
    };
    let done = match &placement {
        Some(p) => cluster.place(p).await,
        None => cluster.unplace(&place.app, &place.slot).await,
    };
    match done {
        Ok(()) => {
            let did = format!("scaled {}/{}: {what}", place.app, place.slot);
            let message = format!(
                "{}/{}: {what}; the manager places them within a second.",
                place.app, place.slot
            );
            changed(&st, &viewer, &place, &did, message, "placement")
        }
        Err(e) => store_failure(&st, &viewer, Some(&place), &e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> std::collections::HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_scale_form_is_checked() {
        let place = Place {
            app: "demo".into(),
            slot: "production".into(),
            read_only: None,
            base: "/portal/apps/demo/production".into(),
        };
        let parse_scale = |f: &std::collections::HashMap<String, String>| parse_scale(&place, f);
        let ok = parse_scale(&fields(&[
            ("mode", "auto"),
            ("min", "1"),
            ("max", "3"),
            ("labels", "zone=a, gpu=yes"),
        ]));
        let p = ok.unwrap().unwrap();
        assert_eq!((p.app.as_str(), p.slot.as_str()), ("demo", "production"));
        assert_eq!(p.scale, Scale::Auto { min: 1, max: 3 });
        assert_eq!(p.labels.get("gpu").map(String::as_str), Some("yes"));
        assert_eq!(parse_scale(&fields(&[("mode", "remove")])), Ok(None));
        for bad in [
            fields(&[("mode", "instances"), ("instances", "-1")]),
            fields(&[("mode", "instances"), ("instances", "many")]),
            fields(&[("mode", "auto"), ("min", "3"), ("max", "1")]),
            fields(&[("mode", "every-worker"), ("labels", "zone")]),
            fields(&[("mode", "all")]),
        ] {
            assert!(parse_scale(&bad).is_err(), "{bad:?} was taken");
        }
    }
}
