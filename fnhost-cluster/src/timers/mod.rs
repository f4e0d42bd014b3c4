//! Timer triggers fired once per tick across the whole cluster.
//!
//! Workers never run timers of their own. The leader (the manager holding
//! the leader lease in the state store) looks at every placed slot's
//! timer functions every 100 ms; for each tick due it first *claims* the
//! tick in the state store (a row keyed by app, slot, function and the
//! tick's time: the insert succeeds once, ever), then sends it to one
//! ready instance through the instance's admin API (`POST
//! /admin/functions/{name}` with the master key), trying another instance
//! when one cannot be reached. A manager that takes over after a leader
//! died fires the ticks missed in between (each once, `IsPastDue: true`,
//! at most [`MAX_CATCH_UP`] of them) and never one the old leader claimed:
//! a tick is fired at most once, and every tick is fired once as long as a
//! leader and a ready instance exist.
//!
//! The timer value is Azure's: `{"Schedule": {"AdjustForDST": true},
//! "ScheduleStatus": {"Last", "Next", "LastUpdated"}, "IsPastDue"}` where,
//! as in Azure during an invocation, `Next` is the occurrence being run
//! and `Last` the one before it. `runOnStartup` runs the function once
//! when a deployment becomes active in the cluster (once per deployment,
//! cluster-wide). Schedules are read in UTC.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, TimeZone as _, Utc};
use http_body_util::Full;
use hyper::{Method, Request};
use serde_json::json;

use crate::manager::{Inner, ready_instances};
use crate::now_ms;
use crate::protocol::InstanceStatus;
use crate::state::{TimerRun, TimerStatus};

/// The most missed ticks a new leader fires for one function.
pub const MAX_CATCH_UP: usize = 10;

/// A tick run this late (ms) or more is past due.
const PAST_DUE_MS: i64 = 1_000;

/// The leader's timer dispatcher.
pub(crate) struct Dispatcher {
    inner: Arc<Inner>,
    /// Startup runs already claimed (or seen claimed) here.
    started: HashSet<String>,
}

fn fmt_time(ms: i64) -> serde_json::Value {
    match Utc.timestamp_millis_opt(ms).single() {
        Some(t) if ms > 0 => json!(t.to_rfc3339_opts(SecondsFormat::Millis, true)),
        _ => serde_json::Value::Null,
    }
}

/// The timer value a function gets.
pub fn timer_value(last: i64, this: i64, past_due: bool) -> serde_json::Value {
    json!({
        "Schedule": {"AdjustForDST": true},
        "ScheduleStatus": {
            "Last": fmt_time(last),
            "Next": fmt_time(this),
            "LastUpdated": fmt_time(now_ms()),
        },
        "IsPastDue": past_due,
    })
}

impl Dispatcher {
    pub(crate) fn new(inner: Arc<Inner>) -> Dispatcher {
        Dispatcher {
            inner,
            started: HashSet::new(),
        }
    }

    /// Fires what is due; `token` is the leader lease's.
    pub(crate) async fn tick(&mut self, token: i64) {
        if let Err(e) = self.run(token).await {
            (self.inner.log)(&format!("cluster: timers: {e}"));
        }
    }

    async fn run(&mut self, token: i64) -> crate::Result<()> {
        let inner = self.inner.clone();
        let placements = inner.state.placements().await?;
        if placements.is_empty() {
            return Ok(());
        }
        let workers = inner.state.workers().await?;
        let now = now_ms();
        let ready = ready_instances(&workers, inner.staleness_now(), inner.heartbeat_ms);
        for p in placements {
            let instances: Vec<(String, InstanceStatus)> = ready
                .iter()
                .filter(|(_, i)| i.app == p.app && i.slot == p.slot)
                .cloned()
                .collect();
            if instances.is_empty() {
                continue;
            }
            let (inner2, a, s) = (inner.clone(), p.app.clone(), p.slot.clone());
            let Ok(Ok(Some(info))) =
                tokio::task::spawn_blocking(move || inner2.slots.info(&a, &s)).await
            else {
                continue;
            };
            // Instances still on another deployment run its functions;
            // prefer the ones on the active deployment.
            let current: Vec<_> = instances
                .iter()
                .filter(|(_, i)| i.deployment == info.deployment)
                .cloned()
                .collect();
            let instances = if current.is_empty() {
                instances
            } else {
                current
            };
            let master = info
                .config
                .secrets
                .as_ref()
                .map(|s| s.master.clone())
                .unwrap_or_default();
            for t in &info.timers {
                let key = (p.app.as_str(), p.slot.as_str(), t.function.as_str());
                let status = inner.state.timer_status(key.0, key.1, key.2).await?;
                let now_dt = Utc
                    .timestamp_millis_opt(now)
                    .single()
                    .unwrap_or_else(Utc::now);
                let Some(mut status) = status else {
                    let next = t
                        .schedule
                        .next_after(&now_dt)
                        .map_or(0, |n| n.timestamp_millis());
                    let s = TimerStatus {
                        last: 0,
                        next,
                        last_updated: now,
                    };
                    inner.state.set_timer_status(key.0, key.1, key.2, s).await?;
                    continue;
                };
                if t.run_on_startup {
                    let tick = format!("startup:{}", info.deployment);
                    let id = format!("{}/{}/{}/{tick}", key.0, key.1, key.2);
                    if self.started.insert(id) {
                        self.fire(
                            token,
                            key,
                            &tick,
                            status.last,
                            now,
                            false,
                            &instances,
                            &master,
                        )
                        .await?;
                    }
                }
                if status.next == 0 || now < status.next {
                    continue;
                }
                // Every tick due, oldest first, the newest MAX_CATCH_UP.
                let mut due = Vec::new();
                let mut at = status.next;
                while at <= now && due.len() < 10_000 {
                    due.push(at);
                    let Some(dt) = Utc.timestamp_millis_opt(at).single() else {
                        break;
                    };
                    match t.schedule.next_after(&dt) {
                        Some(n) => at = n.timestamp_millis(),
                        None => break,
                    }
                }
                let skip = due.len().saturating_sub(MAX_CATCH_UP);
                for &tick_ms in &due[skip..] {
                    let tick = fmt_time(tick_ms).as_str().unwrap_or_default().to_string();
                    let past_due = now - tick_ms >= PAST_DUE_MS;
                    self.fire(
                        token,
                        key,
                        &tick,
                        status.last,
                        tick_ms,
                        past_due,
                        &instances,
                        &master,
                    )
                    .await?;
                    status.last = tick_ms;
                }
                status.next = at;
                status.last_updated = now;
                inner
                    .state
                    .set_timer_status(key.0, key.1, key.2, status)
                    .await?;
            }
        }
        Ok(())
    }

    /// Claims one tick and, when this call claimed it, sends it to one
    /// instance (in the background).
    #[allow(clippy::too_many_arguments)]
    async fn fire(
        &self,
        token: i64,
        (app, slot, function): (&str, &str, &str),
        tick: &str,
        last: i64,
        this: i64,
        past_due: bool,
        instances: &[(String, InstanceStatus)],
        master: &str,
    ) -> crate::Result<()> {
        let run = TimerRun {
            app: app.into(),
            slot: slot.into(),
            function: function.into(),
            tick: tick.into(),
            leader: self.inner.id.clone(),
            lease_token: token,
            worker: String::new(),
            status: "claimed".into(),
            past_due,
            claimed_at: now_ms(),
        };
        if !self.inner.state.claim_timer_run(&run).await? {
            return Ok(());
        }
        let value = timer_value(last, this, past_due);
        let body = Bytes::from(json!({ "input": value }).to_string());
        let mut order: Vec<(String, InstanceStatus)> = instances.to_vec();
        order.sort_by_key(|(_, i)| i.in_flight);
        let n = order.len();
        // Equal loads: a different instance each tick.
        order.rotate_left((now_ms() as usize) % n.max(1));
        let (inner, master) = (self.inner.clone(), master.to_string());
        tokio::spawn(async move {
            let mut outcome = ("", "failed".to_string());
            for (worker, inst) in &order {
                let url = format!("{}/admin/functions/{}", inst.endpoint, run.function);
                let Ok(req) = Request::builder()
                    .method(Method::POST)
                    .uri(&url)
                    .header("x-functions-key", &master)
                    .header("content-type", "application/json")
                    .body(Full::new(body.clone()))
                else {
                    continue;
                };
                let sent =
                    tokio::time::timeout(Duration::from_secs(5), inner.http.request(req)).await;
                match sent {
                    Ok(Ok(resp)) if resp.status().is_success() => {
                        outcome = (worker.as_str(), "dispatched".into());
                        break;
                    }
                    Ok(Ok(resp)) => {
                        outcome = (worker.as_str(), format!("failed: {}", resp.status()));
                        break;
                    }
                    // Not reached: the next instance.
                    Ok(Err(e)) if e.is_connect() => continue,
                    // Sent, then lost: never sent twice.
                    _ => {
                        outcome = (worker.as_str(), "unknown".into());
                        break;
                    }
                }
            }
            (inner.log)(&format!(
                "cluster: timer {}/{}/{} tick {} -> {} {}",
                run.app, run.slot, run.function, run.tick, outcome.0, outcome.1
            ));
            let _ = inner
                .state
                .finish_timer_run(
                    &run.app,
                    &run.slot,
                    &run.function,
                    &run.tick,
                    outcome.0,
                    &outcome.1,
                )
                .await;
        });
        Ok(())
    }
}

/// Parses a tick's time (`None` for a startup run).
pub fn tick_time(tick: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(tick)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}
