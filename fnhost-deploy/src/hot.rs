//! Hot swap: a [`fnhost_core::Host`] that serves a slot's active
//! deployment and follows it as it changes (a new deployment, a rollback, a
//! swap of slots), without dropping a request.
//!
//! The slot's pointer and app settings are polled (two small file reads,
//! every 250 ms by default). When the pointer's generation changes, or the
//! settings do (`fnhost settings set`), the active deployment folder is
//! loaded and validated with fnhost-core and handed to
//! [`Host::swap`](fnhost_core::Host::swap), which starts its executors (a
//! custom handler's new process) before making it current. Requests that
//! resolved the old version finish on it; once none holds it any more (or
//! after the drain deadline), its executors are shut down.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use fnhost_deploy::{Site, hot::HotSwap};
//!
//! let site = Site::open(".fnhost")?;
//! let hot = HotSwap::new(site, "orders", "production");
//! let (active, app) = hot.load_active()?;
//! let host = Arc::new(fnhost_core::Host::builder().build(app));
//! host.start().await?;
//! let watcher = hot.start(host.clone(), &active);
//! // ... serve `host` (fnhost_core::http::HttpFront) ...
//! watcher.stop().await;
//! host.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Needs the `hot-swap` feature (Tokio).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fnhost_core::invoke::AppVersion;
use fnhost_core::{FunctionApp, Host};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::error::{Error, Result};
use crate::site::{Active, Site};

/// How often the slot's pointer is read by default.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(250);
/// How long an old version may keep invocations in flight by default
/// before its executors are stopped anyway.
pub const DEFAULT_DRAIN_DEADLINE: Duration = Duration::from_secs(30);

/// Loads the app of a deployment folder (see [`HotSwap::with_loader`]).
pub type Loader = Arc<dyn Fn(&Active) -> std::result::Result<FunctionApp, String> + Send + Sync>;

/// What the watcher did, for logs.
#[derive(Debug)]
#[non_exhaustive]
pub enum HotSwapEvent<'a> {
    /// A deployment is being served: a new one, or the same with changed
    /// app settings.
    Swapped {
        /// The deployment now served.
        active: &'a Active,
        /// Its app version in the host.
        version: &'a Arc<AppVersion>,
        /// From noticing the change to serving it (load, validation,
        /// executors started).
        elapsed: Duration,
    },
    /// An old version was shut down.
    Retired {
        /// The deployment folder it was loaded from.
        root: &'a std::path::Path,
        /// Whether every invocation in flight on it had finished (else the
        /// drain deadline passed).
        drained: bool,
        /// From its replacement to its shutdown.
        elapsed: Duration,
    },
    /// The slot's new active deployment could not be served; the previous
    /// one goes on.
    Failed {
        /// The deployment that could not be served.
        active: &'a Active,
        /// Why.
        reason: String,
    },
    /// The slot's pointer could not be read (it is read again at the next
    /// poll).
    PollFailed {
        /// Why.
        reason: String,
    },
}

/// Receives [`HotSwapEvent`]s.
pub type EventSink = Arc<dyn Fn(&HotSwapEvent<'_>) + Send + Sync>;

/// Serves a slot's active deployment in a [`Host`] and follows it; see the
/// [module documentation](self).
#[derive(Clone)]
pub struct HotSwap {
    site: Site,
    app: String,
    slot: String,
    poll: Duration,
    drain: Duration,
    loader: Option<Loader>,
    events: EventSink,
    /// The app settings of the last load.
    loaded_with: Arc<Mutex<BTreeMap<String, String>>>,
}

impl fmt::Debug for HotSwap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HotSwap")
            .field("site", &self.site.home())
            .field("app", &self.app)
            .field("slot", &self.slot)
            .field("poll", &self.poll)
            .field("drain", &self.drain)
            .finish_non_exhaustive()
    }
}

impl HotSwap {
    /// Follows `slot` of `app` in `site`.
    pub fn new(site: Site, app: impl Into<String>, slot: impl Into<String>) -> HotSwap {
        HotSwap {
            site,
            app: app.into(),
            slot: slot.into(),
            poll: DEFAULT_POLL_INTERVAL,
            drain: DEFAULT_DRAIN_DEADLINE,
            loader: None,
            events: Arc::new(|_: &HotSwapEvent<'_>| {}),
            loaded_with: Default::default(),
        }
    }

    /// How often the pointer is read (default 250 ms).
    pub fn with_poll_interval(mut self, every: Duration) -> HotSwap {
        self.poll = every.max(Duration::from_millis(1));
        self
    }

    /// How long an old version may finish its invocations before its
    /// executors are stopped (default 30 s).
    pub fn with_drain_deadline(mut self, deadline: Duration) -> HotSwap {
        self.drain = deadline;
        self
    }

    /// Loads deployments with `loader` instead of the default (which loads
    /// the folder with the environment and the slot's app settings, and
    /// refuses an app with errors).
    pub fn with_loader(mut self, loader: Loader) -> HotSwap {
        self.loader = Some(loader);
        self
    }

    /// Sends what happens to `events`.
    pub fn with_events(mut self, events: EventSink) -> HotSwap {
        self.events = events;
        self
    }

    /// The slot's active deployment and its app, loaded and validated: what
    /// to build the host with.
    pub fn load_active(&self) -> Result<(Active, FunctionApp)> {
        let active = self.site.require_active(&self.app, &self.slot)?;
        let app = self.load(&active).map_err(|message| Error::Package {
            path: active.path.clone(),
            message,
        })?;
        Ok((active, app))
    }

    fn load(&self, active: &Active) -> std::result::Result<FunctionApp, String> {
        let settings = self
            .site
            .app_settings(&self.app, &self.slot)
            .map_err(|e| e.to_string())?;
        if let Ok(mut loaded_with) = self.loaded_with.lock() {
            loaded_with.clone_from(&settings);
        }
        if let Some(loader) = &self.loader {
            return loader(active);
        }
        let mut loader = FunctionApp::loader(&active.path);
        for (k, v) in settings {
            loader = loader.with_setting(k, v);
        }
        let app = loader.load().map_err(|e| e.to_string())?;
        if !app.is_valid() {
            let errors = app.diagnostics().errors_joined();
            return Err(format!("the app has errors: {}", errors.replace('\n', " ")));
        }
        Ok(app)
    }

    /// Starts following the slot on the current Tokio runtime; `serving` is
    /// the deployment `host` runs now.
    pub fn start(self, host: Arc<Host>, serving: &Active) -> HotSwapHandle {
        let (stop_tx, stop_rx) = watch::channel(false);
        let settings = self
            .loaded_with
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default();
        let seen = (serving.deployment.clone(), serving.generation, settings);
        let task = tokio::spawn(self.run(host, seen, stop_rx));
        HotSwapHandle {
            stop: stop_tx,
            task,
        }
    }

    async fn run(
        self,
        host: Arc<Host>,
        mut seen: (String, u64, BTreeMap<String, String>),
        mut stop: watch::Receiver<bool>,
    ) {
        let this = Arc::new(self);
        let mut retiring: JoinSet<()> = JoinSet::new();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(this.poll) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
            while retiring.try_join_next().is_some() {}
            let polled = {
                let this = this.clone();
                tokio::task::spawn_blocking(move || {
                    let active = this.site.active(&this.app, &this.slot)?;
                    let settings = this.site.app_settings(&this.app, &this.slot)?;
                    Ok::<_, Error>(active.map(|a| (a, settings)))
                })
                .await
            };
            let (active, settings) = match polled {
                Ok(Ok(Some(a))) => a,
                // No active deployment any more (the app was deleted):
                // keep serving what is loaded.
                Ok(Ok(None)) => continue,
                Ok(Err(e)) => {
                    (this.events)(&HotSwapEvent::PollFailed {
                        reason: e.to_string(),
                    });
                    continue;
                }
                Err(e) => {
                    (this.events)(&HotSwapEvent::PollFailed {
                        reason: e.to_string(),
                    });
                    continue;
                }
            };
            if (active.deployment.as_str(), active.generation, &settings)
                == (seen.0.as_str(), seen.1, &seen.2)
            {
                continue;
            }
            let same_settings = settings == seen.2;
            seen = (active.deployment.clone(), active.generation, settings);
            if same_settings && host.current().app().root() == active.path {
                // The same deployment again (a swap back and forth between
                // two polls): nothing to load.
                continue;
            }
            let noticed = Instant::now();
            let loaded = {
                let (this, a) = (this.clone(), active.clone());
                tokio::task::spawn_blocking(move || this.load(&a)).await
            };
            let app = match loaded {
                Ok(Ok(app)) => app,
                Ok(Err(reason)) => {
                    (this.events)(&HotSwapEvent::Failed {
                        active: &active,
                        reason,
                    });
                    continue;
                }
                Err(e) => {
                    (this.events)(&HotSwapEvent::Failed {
                        active: &active,
                        reason: e.to_string(),
                    });
                    continue;
                }
            };
            match host.swap(app).await {
                Ok(old) => {
                    let version = host.current();
                    (this.events)(&HotSwapEvent::Swapped {
                        active: &active,
                        version: &version,
                        elapsed: noticed.elapsed(),
                    });
                    drop(version);
                    let this = this.clone();
                    retiring.spawn(async move {
                        let since = Instant::now();
                        let root = old.app().root().to_path_buf();
                        let drained = retire(old, this.drain).await;
                        (this.events)(&HotSwapEvent::Retired {
                            root: &root,
                            drained,
                            elapsed: since.elapsed(),
                        });
                    });
                }
                Err(e) => (this.events)(&HotSwapEvent::Failed {
                    active: &active,
                    reason: format!("its executors could not start: {e}"),
                }),
            }
        }
        // Old versions still draining are given the rest of their time.
        while retiring.join_next().await.is_some() {}
    }
}

/// Waits until no invocation holds `old` (or `deadline` passes), then shuts
/// its executors down. Returns whether it drained.
pub async fn retire(old: Arc<AppVersion>, deadline: Duration) -> bool {
    let until = Instant::now() + deadline;
    // The host no longer hands `old` out, so its count only goes down:
    // each request or timer run that resolved it holds one reference.
    while Arc::strong_count(&old) > 1 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let drained = Arc::strong_count(&old) == 1;
    old.shutdown().await;
    drained
}

/// A running [`HotSwap`].
#[derive(Debug)]
pub struct HotSwapHandle {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl HotSwapHandle {
    /// Stops following the slot; waits for the old versions still draining
    /// to be shut down (each within its drain deadline).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}
