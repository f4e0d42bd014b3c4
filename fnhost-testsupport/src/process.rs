//! A running process whose output lines are kept, killed when dropped, and
//! commands run to their end within a bound.

use std::io::{BufRead as _, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The lines a pipe delivered so far, and whether it has ended.
#[derive(Debug, Default)]
struct Lines {
    seen: Mutex<(Vec<String>, bool)>,
    more: Condvar,
}

impl Lines {
    /// Reads `pipe` to its end on a thread.
    fn follow(pipe: impl Read + Send + 'static) -> Arc<Lines> {
        let lines = Arc::new(Lines::default());
        let kept = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                kept.seen.lock().unwrap().0.push(line);
                kept.more.notify_all();
            }
            kept.seen.lock().unwrap().1 = true;
            kept.more.notify_all();
        });
        lines
    }

    fn text(&self) -> String {
        self.seen.lock().unwrap().0.join("\n")
    }

    /// The first line from index `from` on that `pick` maps to a value.
    fn wait<T>(
        &self,
        from: usize,
        limit: Duration,
        mut pick: impl FnMut(&str) -> Option<T>,
    ) -> Option<T> {
        let deadline = Instant::now() + limit;
        let mut seen = self.seen.lock().unwrap();
        let mut next = from;
        loop {
            while next < seen.0.len() {
                if let Some(v) = pick(&seen.0[next]) {
                    return Some(v);
                }
                next += 1;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if seen.1 || left.is_zero() {
                return None;
            }
            seen = self.more.wait_timeout(seen, left).unwrap().0;
        }
    }
}

/// A child process started with its stdout and stderr piped and kept line
/// by line; killed and reaped when dropped.
#[derive(Debug)]
pub struct Running {
    child: Child,
    what: String,
    stdout: Arc<Lines>,
    stderr: Arc<Lines>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    /// Starts `cmd` with stdin closed and both outputs piped.
    pub fn spawn(mut cmd: Command) -> Running {
        let what = format!("{cmd:?}");
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        let stdout = Lines::follow(child.stdout.take().unwrap());
        let stderr = Lines::follow(child.stderr.take().unwrap());
        Running {
            child,
            what,
            stdout,
            stderr,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything written to stdout so far.
    pub fn stdout(&self) -> String {
        self.stdout.text()
    }

    /// Everything written to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.text()
    }

    /// Both outputs so far, for failure messages.
    pub fn output(&self) -> String {
        format!(
            "{}\nstdout:\n{}\nstderr:\n{}",
            self.what,
            self.stdout(),
            self.stderr()
        )
    }

    /// Waits (at most `limit`) for a stderr line containing `needle`;
    /// panics with the output when none comes.
    pub fn wait_stderr(&self, needle: &str, limit: Duration) -> String {
        self.stderr
            .wait(0, limit, |l| l.contains(needle).then(|| l.to_owned()))
            .unwrap_or_else(|| {
                panic!(
                    "no stderr line with {needle:?} within {limit:?}: {}",
                    self.output()
                )
            })
    }

    /// Waits (at most `limit`) for a stdout line containing `needle`.
    pub fn wait_stdout(&self, needle: &str, limit: Duration) -> String {
        self.stdout
            .wait(0, limit, |l| l.contains(needle).then(|| l.to_owned()))
            .unwrap_or_else(|| {
                panic!(
                    "no stdout line with {needle:?} within {limit:?}: {}",
                    self.output()
                )
            })
    }

    /// The `host:port` of the first `listening on http://HOST:PORT` (or
    /// `https://`) line on either output, waiting at most `limit`.
    pub fn listening(&self, limit: Duration) -> String {
        let pick = |l: &str| {
            let rest = l
                .split("listening on http://")
                .nth(1)
                .or_else(|| l.split("listening on https://").nth(1))?;
            let addr = rest.split_whitespace().next()?;
            Some(addr.trim_end_matches('/').to_owned())
        };
        let deadline = Instant::now() + limit;
        loop {
            let step = Duration::from_millis(50);
            if let Some(a) = self.stderr.wait(0, step, pick) {
                return a;
            }
            if let Some(a) = self.stdout.wait(0, step, pick) {
                return a;
            }
            assert!(
                Instant::now() < deadline,
                "never said where it listens within {limit:?}: {}",
                self.output()
            );
        }
    }

    /// Sends `signal` (a name such as `TERM` or `KILL`) to the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} {} failed", self.pid());
    }

    /// Kills the process and waits (at most 5 s) for both outputs to end,
    /// so that [`stdout`](Self::stdout) and [`stderr`](Self::stderr) then
    /// hold everything it wrote.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.drain();
    }

    /// Waits (at most 5 s) for both pipes to close (the process and any
    /// child that kept them open are gone).
    fn drain(&self) {
        let rest = Duration::from_secs(5);
        self.stdout.wait(usize::MAX, rest, |_| None::<()>);
        self.stderr.wait(usize::MAX, rest, |_| None::<()>);
    }

    /// Waits (at most `limit`) for the process to exit; panics with its
    /// output when it does not.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "did not exit within {limit:?}: {}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Runs `cmd` to its end with stdin closed, killing it after `limit`
/// (then panics with what it wrote so far).
pub fn run_bounded(cmd: Command, limit: Duration) -> Output {
    let mut running = Running::spawn(cmd);
    let status = running.wait_exit(limit);
    running.drain();
    let join = |lines: &Lines| {
        let mut text = lines.text();
        if !text.is_empty() {
            text.push('\n');
        }
        text.into_bytes()
    };
    Output {
        status,
        stdout: join(&running.stdout),
        stderr: join(&running.stderr),
    }
}

/// `out`, once checked that its command succeeded; a failure panics with
/// the exit code, stdout and stderr.
#[track_caller]
pub fn succeeded(out: &Output) -> &Output {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
