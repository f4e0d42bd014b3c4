//! The log stream: the endpoint's log lines kept in a bounded ring, each
//! with a sequence number, and served to the Log stream page as
//! server-sent events that resume after a reconnect (`Last-Event-ID`).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use minijinja::context;
use serde::Serialize;
use tokio::sync::watch;

use super::St;
use super::access::{Page, Place};
use super::pages::page_context;
use crate::manage::LogSink;

/// One line kept.
#[derive(Debug, Clone, Serialize)]
pub(super) struct LogLine {
    pub(super) id: u64,
    pub(super) time: String,
    /// The app the line is about, when it names one.
    #[serde(skip)]
    pub(super) app: Option<String>,
    pub(super) text: String,
}

/// The last lines of the endpoint's log (bounded), and a signal that
/// moves with each new one.
#[derive(Debug)]
pub(crate) struct LogRing {
    lines: Mutex<VecDeque<Arc<LogLine>>>,
    capacity: usize,
    latest: watch::Sender<u64>,
}

impl LogRing {
    pub(crate) fn new(capacity: usize) -> LogRing {
        LogRing {
            lines: Mutex::new(VecDeque::with_capacity(capacity.min(4096))),
            capacity: capacity.max(1),
            latest: watch::Sender::new(0),
        }
    }

    /// Keeps a line (and wakes the streams).
    pub(super) fn push(&self, text: &str) {
        let mut lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        let id = lines.back().map_or(1, |l| l.id + 1);
        if lines.len() >= self.capacity {
            lines.pop_front();
        }
        lines.push_back(Arc::new(LogLine {
            id,
            time: crate::deployment::now(),
            app: app_of(text),
            text: text.to_string(),
        }));
        drop(lines);
        self.latest.send_replace(id);
    }

    /// The lines after `after` for `app`, and whether some were dropped
    /// from the ring before they could be sent (a gap).
    pub(super) fn since(&self, after: u64, app: &str) -> (Vec<Arc<LogLine>>, bool) {
        let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        let gap = lines.front().is_some_and(|l| l.id > after + 1) && after > 0;
        let out = lines
            .iter()
            .filter(|l| l.id > after && l.app.as_deref() == Some(app))
            .cloned()
            .collect();
        (out, gap)
    }
}

/// A sink that keeps each line in `ring` and passes it on to `next`.
pub(crate) fn tee(ring: Arc<LogRing>, next: LogSink) -> LogSink {
    Arc::new(move |line: &str| {
        ring.push(line);
        next(line);
    })
}

/// The app a log line is about: `/apps/APP/` in a path, or `of APP/SLOT`
/// in the portal's lines, or `app APP` in the endpoint's.
fn app_of(text: &str) -> Option<String> {
    let name = |s: &str| {
        let n: String = s
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect();
        (!n.is_empty()).then_some(n)
    };
    if let Some((_, rest)) = text.split_once("/apps/") {
        return name(rest);
    }
    if let Some((_, rest)) = text.rsplit_once(" of ")
        && rest.contains('/')
    {
        return name(rest);
    }
    text.split_once(" app ").and_then(|(_, rest)| name(rest))
}

/// `GET .../logstream`: the page.
pub(super) async fn page(Page { st, viewer, place }: Page) -> Response {
    let ctx = page_context(&st, &viewer, Some(&place), "logstream", context! {});
    st.views.page(StatusCode::OK, "logstream.html", ctx)
}

/// `GET .../logstream/events`: the app's log lines as server-sent events
/// (`id`, `event: log`, JSON data), from after `Last-Event-ID` (or the
/// last 100 lines), then as they come; `event: gap` when lines were lost
/// between a disconnect and the reconnect; a comment every 15 s.
pub(super) async fn events(State(st): State<St>, place: Place, req: Request) -> Response {
    let ring = st.config.log.clone();
    let last: Option<u64> = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    let Ok(permit) = st.streams.clone().try_acquire_owned() else {
        let why = "too many open log streams: close another page's stream";
        return (StatusCode::TOO_MANY_REQUESTS, why).into_response();
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, Infallible>>(16);
    let app = place.app.clone();
    let mut latest = ring.latest.subscribe();
    tokio::spawn(async move {
        let _permit = permit;
        let mut after = match last {
            Some(id) => id,
            None => {
                let (lines, _) = ring.since(0, &app);
                lines
                    .len()
                    .checked_sub(100)
                    .map_or(0, |skip| lines[skip].id - 1)
            }
        };
        if tx
            .send(Ok(Bytes::from_static(b"retry: 2000\n\n")))
            .await
            .is_err()
        {
            return;
        }
        let mut first = true;
        loop {
            latest.mark_unchanged();
            let (lines, gap) = ring.since(after, &app);
            let mut out = String::new();
            if gap && first && last.is_some() {
                out.push_str("event: gap\ndata: some lines were dropped before the reconnect\n\n");
            }
            first = false;
            for l in &lines {
                let data = serde_json::to_string(&**l).unwrap_or_default();
                out.push_str(&format!("id: {}\nevent: log\ndata: {data}\n\n", l.id));
                after = l.id;
            }
            if !out.is_empty() && tx.send(Ok(Bytes::from(out))).await.is_err() {
                return;
            }
            tokio::select! {
                changed = latest.changed() => if changed.is_err() { return },
                () = tokio::time::sleep(Duration::from_secs(15)) => {
                    if tx.send(Ok(Bytes::from_static(b": ping\n\n"))).await.is_err() {
                        return;
                    }
                }
                () = tx.closed() => return,
            }
        }
    });
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    (
        [
            (CONTENT_TYPE, "text/event-stream"),
            (CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_kept_by_app_with_ids_and_gaps() {
        let ring = LogRing::new(3);
        ring.push("manage: 127.0.0.1 GET /apps/demo/api/deployments 200 1 ms");
        ring.push("manage: portal: ann made deployment X of other/production");
        ring.push("manage: failed authentication for app demo from 127.0.0.1: wrong");
        let (lines, gap) = ring.since(0, "demo");
        assert_eq!(lines.iter().map(|l| l.id).collect::<Vec<_>>(), [1, 3]);
        assert!(!gap);
        assert_eq!(ring.since(0, "other").0[0].id, 2);
        ring.push("manage: 127.0.0.1 GET /portal/apps/demo/production/keys 200 0 ms");
        // Line 1 fell out of the ring: a stream that had seen nothing
        // after 0... resumes; one that had seen 1 has no gap, one that had
        // seen nothing since a reconnect at 0 is new.
        assert!(!ring.since(1, "demo").1);
        let (lines, _) = ring.since(1, "demo");
        assert_eq!(lines.iter().map(|l| l.id).collect::<Vec<_>>(), [3, 4]);
    }
}
