//! A background task that is told to stop and waited for with a deadline:
//! what the timer scheduler and the trigger listeners return from `start`.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A task spawned on the current Tokio runtime with a stop signal.
#[derive(Debug)]
pub struct StoppableTask<T> {
    stop: watch::Sender<bool>,
    task: JoinHandle<T>,
}

impl<T: Send + 'static> StoppableTask<T> {
    /// Spawns `run`, giving it the receiving end of the stop signal (it
    /// turns `true` when [`StoppableTask::stop`] is called).
    pub fn spawn<F>(run: impl FnOnce(watch::Receiver<bool>) -> F) -> StoppableTask<T>
    where
        F: Future<Output = T> + Send + 'static,
    {
        let (stop, stopped) = watch::channel(false);
        StoppableTask {
            stop,
            task: tokio::spawn(run(stopped)),
        }
    }

    /// Signals the task to stop and waits up to `deadline` for it to end;
    /// a task still running then is aborted. Returns whether it ended.
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
