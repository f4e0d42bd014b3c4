//! [`Listeners`]: starts and stops the trigger listeners of a host's
//! current app version as versions come and go.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use fnhost_core::invoke::{AppVersion, Host};
use fnhost_core::timer::LogSink;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::queue::{DEFAULT_MESSAGE_VISIBILITY, QueueListener, QueueSpec};

/// How often the current app version is looked at for listeners to start.
const RESCAN: Duration = Duration::from_millis(500);

/// Runs a listener for each queueTrigger function of a [`Host`]'s current
/// app version.
///
/// The current version is looked at again every half second: a listener
/// starts for each new (or changed) queueTrigger function, and a listener
/// whose function is gone, disabled or changed stops by itself, after its
/// invocations in flight. A message is received by one listener and stays
/// hidden while it runs, so it never runs in two app versions at once.
///
/// ```no_run
/// # async fn demo(host: std::sync::Arc<fnhost_core::Host>) {
/// use std::time::Duration;
/// let log = std::sync::Arc::new(|line: &str| eprintln!("fnhost: {line}"));
/// let handle = fnhost_triggers::Listeners::new(host).with_log(log).start();
/// // ... serve ...
/// handle.stop(Duration::from_secs(30)).await;
/// # }
/// ```
pub struct Listeners {
    host: Arc<Host>,
    log: LogSink,
    visibility: Duration,
}

impl std::fmt::Debug for Listeners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listeners")
            .field("visibility", &self.visibility)
            .finish_non_exhaustive()
    }
}

impl Listeners {
    /// Listeners for `host`'s functions (started with [`Listeners::start`]).
    pub fn new(host: Arc<Host>) -> Listeners {
        Listeners {
            host,
            log: fnhost_core::timer::tracing_log(),
            visibility: DEFAULT_MESSAGE_VISIBILITY,
        }
    }

    /// Sends log lines (listeners started and stopped, failed messages,
    /// poison messages, an unreachable queue service) to `log`. Lines
    /// come without a prefix.
    /// Default: [`tracing_log`](fnhost_core::timer::tracing_log), each
    /// line a `tracing` event.
    pub fn with_log(mut self, log: LogSink) -> Listeners {
        self.log = log;
        self
    }

    /// How long a received message stays hidden, renewed at half of it
    /// while its function runs: ten minutes by default, as the host (at
    /// least one second; tests shorten it).
    pub fn with_message_visibility(mut self, visibility: Duration) -> Listeners {
        self.visibility = visibility;
        self
    }

    /// The queueTrigger functions of `version`, each with its spec or why
    /// it cannot listen. Disabled functions are left out.
    pub fn queue_functions(version: &AppVersion) -> Vec<(String, Result<QueueSpec, String>)> {
        let app = version.app();
        app.functions()
            .iter()
            .filter(|f| !f.disabled)
            .filter_map(|f| QueueSpec::of(f, app).map(|s| (f.name.clone(), s)))
            .collect()
    }

    /// Starts on the current Tokio runtime.
    pub fn start(self) -> ListenersHandle {
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(self.supervise(stop_rx));
        ListenersHandle {
            stop: stop_tx,
            task,
        }
    }

    async fn supervise(self, mut stop: watch::Receiver<bool>) {
        let mut tasks: JoinSet<()> = JoinSet::new();
        // Function (lower-cased) -> the spec its listener runs.
        let mut running: HashMap<String, (QueueSpec, tokio::task::AbortHandle)> = HashMap::new();
        // Function (lower-cased) -> the reason last logged for not listening.
        let mut refused: HashMap<String, String> = HashMap::new();
        loop {
            // Listeners that stopped by themselves.
            while tasks.try_join_next().is_some() {}
            running.retain(|name, (spec, task)| {
                if task.is_finished() {
                    (self.log)(&format!(
                        "stopped listening to queue {} for {}",
                        spec.queue, spec.function
                    ));
                    let _ = name;
                    false
                } else {
                    true
                }
            });
            let version = self.host.current();
            let wanted = Self::queue_functions(&version);
            drop(version);
            let mut seen = Vec::with_capacity(wanted.len());
            for (name, spec) in wanted {
                let key = name.to_ascii_lowercase();
                seen.push(key.clone());
                let spec = match spec {
                    Ok(s) => s,
                    Err(reason) => {
                        if refused.get(&key) != Some(&reason) {
                            (self.log)(&format!(
                                "error: function {name} cannot listen to its queue: {reason}"
                            ));
                            refused.insert(key, reason);
                        }
                        continue;
                    }
                };
                if running.get(&key).is_some_and(|(s, _)| *s == spec) {
                    continue;
                }
                // A changed spec: the old listener stops by itself at its
                // next poll, its messages in flight still hidden.
                match QueueListener::new(
                    self.host.clone(),
                    spec.clone(),
                    self.visibility,
                    self.log.clone(),
                ) {
                    Ok(listener) => {
                        refused.remove(&key);
                        (self.log)(&format!(
                            "listening to queue {} for {}",
                            spec.queue, spec.function
                        ));
                        let task = tasks.spawn(listener.run(stop.clone()));
                        running.insert(key, (spec, task));
                    }
                    Err(e) => {
                        let reason = e.to_string();
                        if refused.get(&key) != Some(&reason) {
                            (self.log)(&format!(
                                "error: function {name} cannot listen to queue {}: {reason}",
                                spec.queue
                            ));
                            refused.insert(key, reason);
                        }
                    }
                }
            }
            refused.retain(|k, _| seen.contains(k));
            tokio::select! {
                _ = tokio::time::sleep(RESCAN) => {}
                _ = stop.changed() => break,
            }
        }
        // Each listener saw the same stop signal; wait for their
        // invocations in flight (the handle bounds the wait).
        while tasks.join_next().await.is_some() {}
    }
}

/// Running [`Listeners`].
#[derive(Debug)]
pub struct ListenersHandle {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl ListenersHandle {
    /// Stops polling, and waits up to `deadline` for the invocations in
    /// flight to finish (and their messages to be deleted or released).
    /// Invocations still running then are cancelled; their messages come
    /// back when their visibility ends. Returns whether all finished.
    pub async fn stop(self, deadline: Duration) -> bool {
        let _ = self.stop.send(true);
        let mut task = self.task;
        match tokio::time::timeout(deadline, &mut task).await {
            Ok(_) => true,
            Err(_) => {
                task.abort();
                false
            }
        }
    }
}
