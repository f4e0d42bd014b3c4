//! Watching: every configured slot polled at an interval, folder sources
//! followed by file events as well.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::ContinuousDeployer;
use super::config::SourceKind;
use super::sync::SyncOutcome;
use crate::error::Error;

impl ContinuousDeployer {
    /// Keeps every configured slot (of `apps`, or of all apps when empty)
    /// in step with its source: every `interval`, each slot not already
    /// syncing is synced on a thread of its own ([`Self::sync_once`]:
    /// `head` is cheap when nothing moved). Folder sources are also watched
    /// for file events (inotify on Linux): a change is synced at once, not
    /// at the next interval. A sync that finds the source not ready (a
    /// folder still changing) is retried every 200 ms until it is. Slots
    /// configured or cleared meanwhile are picked up. `report` hears every
    /// sync's result (from the syncing threads). Returns when `stop` is
    /// set, after the running deployments finish.
    pub fn watch(
        &self,
        apps: &[String],
        interval: Duration,
        stop: &AtomicBool,
        report: &WatchReport<'_>,
    ) -> Result<(), Error> {
        // Fail early on an unknown app.
        self.configured(apps)?;
        let busy: Mutex<HashSet<(String, String)>> = Mutex::new(HashSet::new());
        let events = FolderEvents::default();
        std::thread::scope(|s| -> Result<(), Error> {
            let mut next_poll = Instant::now();
            while !stop.load(Ordering::SeqCst) {
                let mut due: Vec<(String, String)> = Vec::new();
                if Instant::now() >= next_poll {
                    next_poll = Instant::now() + interval;
                    due = match self.configured(apps) {
                        Ok(s) => s,
                        Err(e) => {
                            report("", "", &Err(e));
                            Vec::new()
                        }
                    };
                    events.follow(self, &due);
                }
                due.extend(events.take_changed(&busy));
                for key in due {
                    if !busy
                        .lock()
                        .map(|mut b| b.insert(key.clone()))
                        .unwrap_or(false)
                    {
                        continue;
                    }
                    let busy = &busy;
                    s.spawn(move || {
                        let result = loop {
                            let result = self.sync_once(&key.0, &key.1);
                            if !matches!(result, Ok(SyncOutcome::NotReady { .. }))
                                || stop.load(Ordering::SeqCst)
                            {
                                break result;
                            }
                            std::thread::sleep(Duration::from_millis(200));
                        };
                        report(&key.0, &key.1, &result);
                        if let Ok(mut b) = busy.lock() {
                            b.remove(&key);
                        }
                    });
                }
                while !stop.load(Ordering::SeqCst)
                    && Instant::now() < next_poll
                    && !events.any_changed(&busy)
                {
                    std::thread::sleep(
                        next_poll
                            .saturating_duration_since(Instant::now())
                            .min(Duration::from_millis(50)),
                    );
                }
            }
            Ok(())
        })
    }
}

/// File-event watchers of the folder sources [`ContinuousDeployer::watch`]
/// follows; an event marks the slot as changed.
#[derive(Default)]
struct FolderEvents {
    watchers: Mutex<HashMap<(String, String), (PathBuf, notify::RecommendedWatcher)>>,
    changed: Arc<Mutex<HashSet<(String, String)>>>,
}

impl FolderEvents {
    /// Watches the folders of the folder sources among `slots`, and stops
    /// watching those no longer configured. A folder that cannot be watched
    /// is left to polling.
    fn follow(&self, cd: &ContinuousDeployer, slots: &[(String, String)]) {
        let Ok(mut watchers) = self.watchers.lock() else {
            return;
        };
        let mut wanted: HashMap<(String, String), PathBuf> = HashMap::new();
        for (app, slot) in slots {
            if let Ok(Some(config)) = cd.config(app, slot)
                && config.kind == SourceKind::Folder
            {
                wanted.insert((app.clone(), slot.clone()), PathBuf::from(&config.location));
            }
        }
        watchers.retain(|key, (folder, _)| wanted.get(key) == Some(folder));
        for (key, folder) in wanted {
            if watchers.contains_key(&key) {
                continue;
            }
            let changed = Arc::clone(&self.changed);
            let marked = key.clone();
            let watcher =
                notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                    let relevant = event.is_ok_and(|e| !e.kind.is_access());
                    if relevant && let Ok(mut c) = changed.lock() {
                        c.insert(marked.clone());
                    }
                });
            if let Ok(mut w) = watcher
                && notify::Watcher::watch(&mut w, &folder, notify::RecursiveMode::Recursive).is_ok()
            {
                watchers.insert(key, (folder, w));
            }
        }
    }

    /// The changed slots that are not syncing (the others stay marked, to
    /// be synced again when their sync ends: it may have read the folder
    /// before the change).
    fn take_changed(&self, busy: &Mutex<HashSet<(String, String)>>) -> Vec<(String, String)> {
        let (Ok(mut changed), Ok(busy)) = (self.changed.lock(), busy.lock()) else {
            return Vec::new();
        };
        let ready: Vec<(String, String)> = changed
            .iter()
            .filter(|k| !busy.contains(*k))
            .cloned()
            .collect();
        for k in &ready {
            changed.remove(k);
        }
        ready
    }

    fn any_changed(&self, busy: &Mutex<HashSet<(String, String)>>) -> bool {
        let (Ok(changed), Ok(busy)) = (self.changed.lock(), busy.lock()) else {
            return false;
        };
        changed.iter().any(|k| !busy.contains(k))
    }
}

/// What [`ContinuousDeployer::watch`] calls with each sync's result: the
/// app, the slot, the result.
pub type WatchReport<'a> = dyn Fn(&str, &str, &Result<SyncOutcome, Error>) + Sync + 'a;
