//! The timer trigger: runs timer-triggered functions on their schedules.
//!
//! A [`TimerScheduler`] watches the host's *current* app version (looked up
//! again at every tick, so a swapped-in version's timers take over within a
//! second) and invokes each enabled timer function when its schedule comes
//! due:
//!
//! - schedules are computed in UTC, or in the zone named by the
//!   `WEBSITE_TIME_ZONE` or `TZ` setting ([`zone_from_env`]): an IANA name
//!   (`Europe/Paris`) or a common Windows name (`W. Europe Standard Time`,
//!   see [`windows_zone`]);
//! - `runOnStartup` functions run once when the scheduler starts;
//! - one function never overlaps itself: a tick that comes while the
//!   previous run is still going is skipped, and the skip is logged;
//! - disabled functions are not triggered;
//! - the trigger value is the host's timer info:
//!   `{"Schedule": {"AdjustForDST": true}, "ScheduleStatus": {"Last": ..., "Next": ..., "LastUpdated": ...}, "IsPastDue": false}`
//!   (`ScheduleStatus` is `null` on a function's first run).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use chrono_tz::Tz;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::invoke::{Host, Invocation, InvocationResult, InvokeError};
use crate::schedule::Schedule;
use crate::task::StoppableTask;

/// Where the host's components send their log lines (never secrets).
pub type LogSink = Arc<dyn Fn(&str) + Send + Sync>;

/// A log sink that drops everything.
pub fn no_log() -> LogSink {
    Arc::new(|_| {})
}

/// The default log sink of the host's components: each line is a
/// `tracing` event (INFO), so an embedder's subscriber gets them in its
/// one channel, with the span they happen in; without a subscriber it
/// costs a cached check.
pub fn tracing_log() -> LogSink {
    Arc::new(|line| tracing::info!("{line}"))
}

/// The longest the scheduler sleeps before it looks at the current app
/// version again (so swapped-in versions are picked up).
const MAX_SLEEP: Duration = Duration::from_secs(1);

/// Logs how a run of `function` that `source` (`timer`, `admin`) started
/// ended: the function's log lines, then that it ran or why it failed.
pub(crate) fn log_outcome(
    log: &LogSink,
    source: &str,
    function: &str,
    outcome: &Result<InvocationResult, InvokeError>,
) {
    let lines = match outcome {
        Ok(result) => &result.logs,
        Err(e) => e.logs(),
    };
    for line in lines {
        log(&format!("{function}: {line}"));
    }
    match outcome {
        Ok(_) => log(&format!("{source}: '{function}' ran")),
        Err(e) => log(&format!("{source}: {e}")),
    }
}

/// Runs the timer triggers of a [`Host`]'s current app version.
pub struct TimerScheduler {
    host: Arc<Host>,
    zone: Tz,
    log: LogSink,
}

impl fmt::Debug for TimerScheduler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimerScheduler")
            .field("zone", &self.zone)
            .finish_non_exhaustive()
    }
}

impl TimerScheduler {
    /// A scheduler for `host`, in UTC (see [`TimerScheduler::with_zone`]).
    pub fn new(host: Arc<Host>) -> Self {
        TimerScheduler {
            host,
            zone: Tz::UTC,
            log: tracing_log(),
        }
    }

    /// Computes schedules in this time zone.
    pub fn with_zone(mut self, zone: Tz) -> Self {
        self.zone = zone;
        self
    }

    /// Sends log lines (runs, skipped ticks, failures) to `log`.
    /// Default: [`tracing_log`], each
    /// line a `tracing` event.
    pub fn with_log(mut self, log: LogSink) -> Self {
        self.log = log;
        self
    }

    /// The zone schedules are computed in.
    pub fn zone(&self) -> Tz {
        self.zone
    }

    /// Starts the scheduler on the current Tokio runtime.
    pub fn start(self) -> TimerHandle {
        TimerHandle(StoppableTask::spawn(|stop| self.run(stop)))
    }

    async fn run(self, mut stop: watch::Receiver<bool>) -> usize {
        let mut runs: JoinSet<()> = JoinSet::new();
        let mut state: HashMap<String, Entry> = HashMap::new();
        let mut first = true;
        loop {
            let version = self.host.current();
            let now = Utc::now();
            let mut wake = now + chrono::TimeDelta::from_std(MAX_SLEEP).unwrap_or_default();
            let mut seen: Vec<String> = Vec::new();
            for (index, function) in version.app().functions().iter().enumerate() {
                let Some(timer) = &function.timer else {
                    continue;
                };
                if function.disabled {
                    continue;
                }
                let key = function.name.to_ascii_lowercase();
                seen.push(key.clone());
                let entry = state.entry(key).or_insert_with(|| Entry {
                    schedule: timer.schedule.clone(),
                    next: self.next(&timer.schedule, now),
                    last: None,
                    running: Arc::new(AtomicBool::new(false)),
                });
                if entry.schedule != timer.schedule {
                    entry.schedule = timer.schedule.clone();
                    entry.next = self.next(&timer.schedule, now);
                }
                let startup = first && timer.run_on_startup;
                let due = entry.next.is_some_and(|n| n <= now);
                if startup || due {
                    let scheduled = if due { entry.next } else { None };
                    if due {
                        // Next occurrence after now: missed ticks are not
                        // made up.
                        let from = entry.next.map_or(now, |n| n.max(now));
                        entry.next = self.next(&timer.schedule, from);
                    }
                    if entry.running.swap(true, Ordering::AcqRel) {
                        (self.log)(&format!(
                            "timer: skipped a run of '{}' due at {}: the previous run is still going",
                            function.name,
                            fmt_time(scheduled.unwrap_or(now))
                        ));
                    } else if let Some(handle) = Host::handle(version.clone(), index) {
                        let trigger = timer_info(entry.last, entry.next, now);
                        entry.last = Some(scheduled.unwrap_or(now));
                        let running = entry.running.clone();
                        let log = self.log.clone();
                        let name = function.name.clone();
                        runs.spawn(async move {
                            let _clear = ClearOnDrop(running);
                            let invocation =
                                Invocation::new(trigger).with_metadata("sys", sys_metadata(&name));
                            let outcome = handle.invoke(invocation).await;
                            log_outcome(&log, "timer", &name, &outcome);
                        });
                    }
                }
                if let Some(n) = entry.next
                    && n < wake
                {
                    wake = n;
                }
            }
            first = false;
            state.retain(|k, _| seen.contains(k));
            while runs.try_join_next().is_some() {}
            // Not held while sleeping: after a hot swap, the old version is
            // shut down as soon as no invocation holds it.
            drop(version);

            let sleep = (wake - Utc::now()).to_std().unwrap_or(Duration::ZERO);
            tokio::select! {
                _ = tokio::time::sleep(sleep) => {}
                _ = stop.changed() => break,
            }
            // A sleep can wake a hair early; don't spin on it.
            if let Some(early) = (wake - Utc::now()).to_std().ok().filter(|d| !d.is_zero()) {
                tokio::time::sleep(early).await;
            }
        }
        let in_flight = runs.len();
        // Wait for the runs in flight; TimerHandle::stop bounds the wait.
        while runs.join_next().await.is_some() {}
        in_flight
    }

    fn next(&self, schedule: &Schedule, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        schedule
            .next_after(&after.with_timezone(&self.zone))
            .map(|d| d.with_timezone(&Utc))
    }
}

/// Per-function state of the scheduler.
struct Entry {
    schedule: Schedule,
    next: Option<DateTime<Utc>>,
    last: Option<DateTime<Utc>>,
    running: Arc<AtomicBool>,
}

struct ClearOnDrop(Arc<AtomicBool>);

impl Drop for ClearOnDrop {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// A running [`TimerScheduler`].
#[derive(Debug)]
pub struct TimerHandle(StoppableTask<usize>);

impl TimerHandle {
    /// Stops scheduling, and waits up to `deadline` for runs in flight
    /// (they are cancelled after it). Returns whether they all finished.
    pub async fn stop(self, deadline: Duration) -> bool {
        self.0.stop(deadline).await
    }
}

/// The trigger value of a timer run, in the host's shape.
pub fn timer_info(
    last: Option<DateTime<Utc>>,
    next: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Value {
    let status = match last {
        Some(last) => json!({
            "Last": fmt_time(last),
            "Next": next.map(fmt_time),
            "LastUpdated": fmt_time(now),
        }),
        None => Value::Null,
    };
    json!({
        "Schedule": {"AdjustForDST": true},
        "ScheduleStatus": status,
        "IsPastDue": false,
    })
}

/// The `sys` trigger metadata the host gives every invocation.
pub(crate) fn sys_metadata(function: &str) -> Value {
    json!({
        "MethodName": function,
        "UtcNow": fmt_time(Utc::now()),
        "RandGuid": crate::invoke::InvocationId::new().to_string(),
    })
}

fn fmt_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The zone timers run in, from the process environment: the
/// `WEBSITE_TIME_ZONE` variable (a Windows or IANA name), else `TZ` (an
/// IANA name, with or without a leading `:`), else UTC.
///
/// An unknown `WEBSITE_TIME_ZONE` is an error; an unknown `TZ` (which is
/// often set for other programs, as a path or a POSIX rule) falls back to
/// UTC, and the returned warning says so.
pub fn zone_from_env() -> Result<(Tz, Option<String>), String> {
    let get = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    zone_from(get("WEBSITE_TIME_ZONE"), get("TZ"))
}

/// [`zone_from_env`] with the two values given.
pub fn zone_from(
    website_time_zone: Option<String>,
    tz: Option<String>,
) -> Result<(Tz, Option<String>), String> {
    if let Some(name) = website_time_zone {
        return parse_zone(&name).map(|z| (z, None)).ok_or_else(|| {
            format!(
                "WEBSITE_TIME_ZONE is '{name}', which is not a time zone fnhost knows: use an IANA name such as 'Europe/Paris' or a common Windows name such as 'W. Europe Standard Time'"
            )
        });
    }
    if let Some(name) = tz {
        return Ok(match parse_zone(&name) {
            Some(z) => (z, None),
            None => (
                Tz::UTC,
                Some(format!(
                    "TZ is '{name}', which is not an IANA time zone name: timers run in UTC"
                )),
            ),
        });
    }
    Ok((Tz::UTC, None))
}

/// A zone by IANA name (`Europe/Paris`, `UTC`), or by one of the Windows
/// names of [`windows_zone`]. A leading `:` (as `TZ` allows) is ignored.
pub fn parse_zone(name: &str) -> Option<Tz> {
    let name = name.trim();
    let name = name.strip_prefix(':').unwrap_or(name);
    if let Ok(z) = name.parse::<Tz>() {
        return Some(z);
    }
    windows_zone(name).and_then(|iana| iana.parse::<Tz>().ok())
}

/// The IANA zone of a common Windows time zone name (ignoring case), as
/// Azure's `WEBSITE_TIME_ZONE` takes them. The names mapped are the
/// Windows zones of the United States and Canada, Europe, and the largest
/// zones of Asia, Oceania, South America and Africa; others are `None`.
pub fn windows_zone(name: &str) -> Option<&'static str> {
    WINDOWS_ZONES
        .iter()
        .find(|(w, _)| w.eq_ignore_ascii_case(name.trim()))
        .map(|(_, iana)| *iana)
}

/// Windows zone names and their IANA zones.
const WINDOWS_ZONES: &[(&str, &str)] = &[
    ("UTC", "UTC"),
    ("Coordinated Universal Time", "UTC"),
    ("Dateline Standard Time", "Etc/GMT+12"),
    ("Hawaiian Standard Time", "Pacific/Honolulu"),
    ("Alaskan Standard Time", "America/Anchorage"),
    ("Pacific Standard Time", "America/Los_Angeles"),
    ("US Mountain Standard Time", "America/Phoenix"),
    ("Mountain Standard Time", "America/Denver"),
    ("Central Standard Time", "America/Chicago"),
    ("Canada Central Standard Time", "America/Regina"),
    ("Central America Standard Time", "America/Guatemala"),
    ("Central Standard Time (Mexico)", "America/Mexico_City"),
    ("Eastern Standard Time", "America/New_York"),
    ("US Eastern Standard Time", "America/Indianapolis"),
    ("SA Pacific Standard Time", "America/Bogota"),
    ("Atlantic Standard Time", "America/Halifax"),
    ("Newfoundland Standard Time", "America/St_Johns"),
    ("E. South America Standard Time", "America/Sao_Paulo"),
    ("Argentina Standard Time", "America/Buenos_Aires"),
    ("Pacific SA Standard Time", "America/Santiago"),
    ("GMT Standard Time", "Europe/London"),
    ("Greenwich Standard Time", "Atlantic/Reykjavik"),
    ("W. Europe Standard Time", "Europe/Berlin"),
    ("Romance Standard Time", "Europe/Paris"),
    ("Central Europe Standard Time", "Europe/Budapest"),
    ("Central European Standard Time", "Europe/Warsaw"),
    ("E. Europe Standard Time", "Europe/Chisinau"),
    ("GTB Standard Time", "Europe/Bucharest"),
    ("FLE Standard Time", "Europe/Kiev"),
    ("Turkey Standard Time", "Europe/Istanbul"),
    ("Israel Standard Time", "Asia/Jerusalem"),
    ("Egypt Standard Time", "Africa/Cairo"),
    ("South Africa Standard Time", "Africa/Johannesburg"),
    ("W. Central Africa Standard Time", "Africa/Lagos"),
    ("E. Africa Standard Time", "Africa/Nairobi"),
    ("Russian Standard Time", "Europe/Moscow"),
    ("Arabian Standard Time", "Asia/Dubai"),
    ("Arab Standard Time", "Asia/Riyadh"),
    ("Iran Standard Time", "Asia/Tehran"),
    ("Pakistan Standard Time", "Asia/Karachi"),
    ("India Standard Time", "Asia/Calcutta"),
    ("Nepal Standard Time", "Asia/Katmandu"),
    ("Bangladesh Standard Time", "Asia/Dhaka"),
    ("SE Asia Standard Time", "Asia/Bangkok"),
    ("China Standard Time", "Asia/Shanghai"),
    ("Singapore Standard Time", "Asia/Singapore"),
    ("Taipei Standard Time", "Asia/Taipei"),
    ("W. Australia Standard Time", "Australia/Perth"),
    ("Korea Standard Time", "Asia/Seoul"),
    ("Tokyo Standard Time", "Asia/Tokyo"),
    ("Cen. Australia Standard Time", "Australia/Adelaide"),
    ("AUS Central Standard Time", "Australia/Darwin"),
    ("E. Australia Standard Time", "Australia/Brisbane"),
    ("AUS Eastern Standard Time", "Australia/Sydney"),
    ("Tasmania Standard Time", "Australia/Hobart"),
    ("New Zealand Standard Time", "Pacific/Auckland"),
];

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn zones_resolve_from_iana_and_windows_names() {
        assert_eq!(parse_zone("Europe/Paris"), Some(Tz::Europe__Paris));
        assert_eq!(parse_zone(":UTC"), Some(Tz::UTC));
        assert_eq!(
            parse_zone("Eastern Standard Time"),
            Some(Tz::America__New_York)
        );
        assert_eq!(parse_zone("tokyo standard time"), Some(Tz::Asia__Tokyo));
        assert_eq!(parse_zone("Mars/Olympus"), None);
    }

    #[test]
    fn every_windows_name_maps_to_a_known_zone() {
        for (name, iana) in WINDOWS_ZONES {
            assert!(parse_zone(name).is_some(), "{name} -> {iana}");
        }
    }

    #[test]
    fn env_rules() {
        assert_eq!(zone_from(None, None).unwrap().0, Tz::UTC);
        assert!(zone_from(Some("Nowhere".into()), None).is_err());
        let (z, warning) = zone_from(None, Some("EST5EDT,M3.2.0,M11.1.0".into())).unwrap();
        assert_eq!(z, Tz::UTC);
        assert!(warning.is_some());
        assert_eq!(
            zone_from(Some("Romance Standard Time".into()), Some("UTC".into()))
                .unwrap()
                .0,
            Tz::Europe__Paris
        );
    }

    #[test]
    fn timer_info_has_the_host_shape() {
        let now = Utc::now();
        let v = timer_info(None, Some(now), now);
        assert_eq!(v["IsPastDue"], false);
        assert!(v["ScheduleStatus"].is_null());
        let v = timer_info(Some(now), Some(now), now);
        assert!(v["ScheduleStatus"]["Last"].is_string());
    }
}
