//! Running one build command: output streamed line by line, a deadline,
//! the whole process group killed when it passes.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use fnhost_core::build::{BuildError, BuildLog, LogLevel};

/// How many of the last output lines a failure message quotes.
const TAIL: usize = 10;

/// Limits on one command.
pub(super) struct Limits {
    /// When the whole build must end.
    pub(super) build_deadline: Instant,
    /// The whole build's timeout (for the error).
    pub(super) build_timeout: Duration,
    /// The step's own timeout, if any.
    pub(super) step_timeout: Option<Duration>,
}

/// Runs `command` as step `step`, streaming its output to `log`.
pub(super) fn run(
    provider: &str,
    step: &str,
    mut command: Command,
    log: &dyn BuildLog,
    limits: &Limits,
) -> Result<(), BuildError> {
    let started = Instant::now();
    let step_deadline = limits.step_timeout.map(|t| started + t);
    let deadline = step_deadline.map_or(limits.build_deadline, |d| d.min(limits.build_deadline));
    if Instant::now() >= limits.build_deadline {
        return Err(BuildError::Timeout {
            provider: provider.to_owned(),
            after: limits.build_timeout,
        });
    }
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt as _;
        command.process_group(0);
    }
    let mut child = command.spawn().map_err(|e| BuildError::StepFailed {
        provider: provider.to_owned(),
        step: step.to_owned(),
        message: format!("cannot start {:?}: {e}", command.get_program()),
    })?;
    let (tx, rx) = mpsc::channel::<String>();
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        readers.push(spawn_reader(out, tx.clone()));
    }
    if let Some(err) = child.stderr.take() {
        readers.push(spawn_reader(err, tx.clone()));
    }
    drop(tx);
    let mut tail: VecDeque<String> = VecDeque::with_capacity(TAIL);
    let mut status = None;
    let mut output_done = false;
    loop {
        match rx.recv_timeout(Duration::from_millis(20)) {
            Ok(line) => {
                log.line(LogLevel::Info, &line);
                if tail.len() == TAIL {
                    tail.pop_front();
                }
                tail.push_back(line);
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => output_done = true,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if status.is_none() {
            status = child.try_wait().ok().flatten();
            if status.is_some() {
                // Whatever the command left running in its group goes too,
                // so its output pipes close.
                kill_group(&child);
            }
        }
        if status.is_some() && output_done {
            break;
        }
        if Instant::now() >= deadline {
            kill_group(&child);
            let _ = child.kill();
            let _ = child.wait();
            drop(rx);
            for reader in readers {
                let _ = reader.join();
            }
            if step_deadline.is_some_and(|d| d < limits.build_deadline) {
                let after = limits.step_timeout.unwrap_or_default();
                let message = format!("took longer than its timeout of {after:?} and was stopped");
                log.line(LogLevel::Error, &format!("step '{step}' {message}"));
                return Err(BuildError::StepFailed {
                    provider: provider.to_owned(),
                    step: step.to_owned(),
                    message,
                });
            }
            log.line(
                LogLevel::Error,
                &format!(
                    "the build took longer than {:?} and was stopped",
                    limits.build_timeout
                ),
            );
            return Err(BuildError::Timeout {
                provider: provider.to_owned(),
                after: limits.build_timeout,
            });
        }
    }
    for reader in readers {
        let _ = reader.join();
    }
    let status = status.ok_or_else(|| BuildError::Other {
        provider: provider.to_owned(),
        message: format!("step '{step}': lost track of its process"),
    })?;
    if status.success() {
        log.line(
            LogLevel::Info,
            &format!(
                "step '{step}' done in {:.1} s",
                started.elapsed().as_secs_f64()
            ),
        );
        return Ok(());
    }
    let code = match status.code() {
        Some(code) => format!("exit code {code}"),
        None => "killed by a signal".to_owned(),
    };
    log.line(LogLevel::Error, &format!("step '{step}' failed: {code}"));
    let mut message = code;
    if !tail.is_empty() {
        message.push_str("; last output:\n");
        message.push_str(&Vec::from(tail).join("\n"));
    }
    Err(BuildError::StepFailed {
        provider: provider.to_owned(),
        step: step.to_owned(),
        message,
    })
}

/// Sends each line of `stream` (invalid UTF-8 replaced) to `tx`.
fn spawn_reader(
    stream: impl Read + Send + 'static,
    tx: mpsc::Sender<String>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf);
                    let line = line.trim_end_matches(['\n', '\r']);
                    if tx.send(line.to_owned()).is_err() {
                        break;
                    }
                }
            }
        }
    })
}

#[cfg(unix)]
fn kill_group(child: &Child) {
    use nix::sys::signal::{Signal, killpg};
    use nix::unistd::Pid;
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

#[cfg(not(unix))]
fn kill_group(_child: &Child) {}
