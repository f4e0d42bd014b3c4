//! One-shot process executor: runs a function's script once per invocation.

use std::collections::VecDeque;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use super::payload;
use crate::app::FunctionApp;
use crate::invoke::{
    BoxFuture, Executor, ExecutorError, ExecutorFactory, FunctionInfo, Invocation, InvocationResult,
};

/// The most bytes of stdout read from a script by default (16 MiB).
pub const DEFAULT_MAX_STDOUT: usize = 16 * 1024 * 1024;
/// The most bytes of stderr kept from a script by default (its tail, 64 KiB).
pub const DEFAULT_MAX_STDERR: usize = 64 * 1024;

/// How long a script's output may stay open after it exited (a child it
/// left behind may hold it) before its process group is killed.
const OUTPUT_GRACE: Duration = Duration::from_millis(500);

/// Runs a function's primary script ([`crate::Function::script`]) as a new
/// process for each invocation.
///
/// # The protocol
///
/// - The program: by the script's extension, `.js`, `.mjs` and `.cjs` run
///   with `node`, `.py` with `python3`, `.sh` with `sh`, `.ps1` with `pwsh`
///   (see [`ProcessExecutor::with_interpreter`] to change these); any other
///   script is run directly and must be executable.
/// - The working directory is the function's folder; the environment is the
///   host's, overlaid with the app settings.
/// - stdin receives the same JSON as a custom handler would:
///   `{"Data": {<trigger>: ..., <inputs>...}, "Metadata": {..., "sys": {...},
///   "RetryContext": {...}}}`, then is closed.
/// - stdout must be empty (no outputs) or hold one JSON object
///   `{"Outputs": {...}, "Logs": [...], "ReturnValue": ...}` (keys compare
///   ignoring case). Each line on stderr is a log line of the invocation
///   (the stderr lines come before the `Logs`).
/// - A non-zero exit status, a signal, output that is not such JSON, or more
///   stdout than [`ProcessExecutor::with_max_stdout`] allows is a failed
///   invocation, whose message ends with the tail of stderr.
/// - When the invocation is cancelled (the function timeout expired), the
///   script's whole process group is killed (on Unix each script runs in a
///   process group of its own).
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use fnhost_core::exec::ProcessExecutorFactory;
/// use fnhost_core::{FunctionApp, Host, Invocation};
///
/// let app = FunctionApp::load("my-app")?;
/// let host = Host::builder()
///     .factory(std::sync::Arc::new(ProcessExecutorFactory::new()))
///     .build(app);
/// let result = host.invoke("Tick", Invocation::new(serde_json::json!({}))).await?;
/// println!("{:?}", result.logs);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ProcessExecutor {
    env: Arc<[(String, String)]>,
    options: Arc<ProcessOptions>,
}

#[derive(Debug, Clone)]
struct ProcessOptions {
    max_stdout: usize,
    max_stderr: usize,
    /// Extension (lower case, no dot) to program and leading arguments.
    interpreters: Vec<(String, Vec<String>)>,
}

impl Default for ProcessOptions {
    fn default() -> Self {
        let i = |ext: &str, cmd: &[&str]| {
            (
                ext.to_owned(),
                cmd.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>(),
            )
        };
        ProcessOptions {
            max_stdout: DEFAULT_MAX_STDOUT,
            max_stderr: DEFAULT_MAX_STDERR,
            interpreters: vec![
                i("js", &["node"]),
                i("mjs", &["node"]),
                i("cjs", &["node"]),
                i("py", &["python3"]),
                i("sh", &["sh"]),
                i(
                    "ps1",
                    &["pwsh", "-NoLogo", "-NoProfile", "-NonInteractive", "-File"],
                ),
            ],
        }
    }
}

impl fmt::Debug for ProcessExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessExecutor")
            .field("env", &self.env.len())
            .field("max_stdout", &self.options.max_stdout)
            .field("max_stderr", &self.options.max_stderr)
            .finish_non_exhaustive()
    }
}

impl Default for ProcessExecutor {
    fn default() -> Self {
        Self::new()
    }
}

impl ProcessExecutor {
    /// An executor whose scripts get the host's environment only.
    pub fn new() -> Self {
        ProcessExecutor {
            env: Arc::from(Vec::new()),
            options: Arc::new(ProcessOptions::default()),
        }
    }

    /// An executor whose scripts get the app settings of `app` in their
    /// environment.
    pub fn for_app(app: &FunctionApp) -> Self {
        let env: Vec<(String, String)> = app
            .settings()
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        ProcessExecutor {
            env: Arc::from(env),
            ..Self::new()
        }
    }

    /// Adds an environment variable for the scripts.
    pub fn with_env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let mut env = self.env.to_vec();
        env.push((name.into(), value.into()));
        self.env = Arc::from(env);
        self
    }

    /// The most bytes read from stdout; more is a failed invocation
    /// (default [`DEFAULT_MAX_STDOUT`]).
    pub fn with_max_stdout(mut self, bytes: usize) -> Self {
        Arc::make_mut(&mut self.options).max_stdout = bytes;
        self
    }

    /// The most bytes of stderr kept, the last ones (default
    /// [`DEFAULT_MAX_STDERR`]); older lines are dropped.
    pub fn with_max_stderr(mut self, bytes: usize) -> Self {
        Arc::make_mut(&mut self.options).max_stderr = bytes;
        self
    }

    /// Runs scripts with extension `ext` (without the dot, ignoring case) as
    /// `program args... SCRIPT`.
    pub fn with_interpreter<I, S>(mut self, ext: &str, program: &str, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let ext = ext.trim_start_matches('.').to_ascii_lowercase();
        let mut command = vec![program.to_owned()];
        command.extend(args.into_iter().map(Into::into));
        let interpreters = &mut Arc::make_mut(&mut self.options).interpreters;
        interpreters.retain(|(e, _)| *e != ext);
        interpreters.push((ext, command));
        self
    }

    /// The program and arguments that run `script`.
    pub fn command_for(&self, script: &Path) -> (PathBuf, Vec<String>) {
        let ext = script
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        match self.options.interpreters.iter().find(|(e, _)| *e == ext) {
            Some((_, command)) => {
                let mut args: Vec<String> = command[1..].to_vec();
                args.push(script.to_string_lossy().into_owned());
                (PathBuf::from(&command[0]), args)
            }
            None => (script.to_path_buf(), Vec::new()),
        }
    }

    async fn run(
        &self,
        function: &FunctionInfo,
        invocation: Invocation,
    ) -> Result<InvocationResult, ExecutorError> {
        let Some(script) = function.function.script.as_deref() else {
            return Err(ExecutorError::unavailable(format!(
                "function '{}' has no script for the process executor to run",
                function.name()
            )));
        };
        let (program, args) = self.command_for(script);
        let shown = show_command(&program, &args);
        let mut command = Command::new(&program);
        command
            .args(&args)
            .current_dir(&function.function.dir)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        #[cfg(unix)]
        command.process_group(0);
        die_with_parent(&mut command);
        let mut child = command
            .spawn()
            .map_err(|e| ExecutorError::unavailable(spawn_error(&shown, &program, script, &e)))?;
        // Until the child is reaped, dropping this (on a timeout) kills the
        // whole process group.
        let mut group = GroupGuard::new(child.id());

        let input = payload::request_body(function, &invocation, payload::PayloadShape::Plain);
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let max_stdout = self.options.max_stdout;
        let max_stderr = self.options.max_stderr;
        let io = async move {
            let write = async move {
                if let Some(mut stdin) = stdin {
                    // A script that exits without reading its input breaks
                    // the pipe: that is its business.
                    let _ = stdin.write_all(&input).await;
                    let _ = stdin.shutdown().await;
                }
            };
            let (_, out, err) = tokio::join!(
                write,
                read_bounded(stdout, max_stdout),
                read_lines(stderr, max_stderr)
            );
            (out, err)
        };
        tokio::pin!(io);
        let mut done = None;
        let status = tokio::select! {
            r = &mut io => {
                done = Some(r);
                child.wait().await
            }
            s = child.wait() => s,
        };
        group.reaped();
        let status = status.map_err(|e| {
            ExecutorError::failed(format!("could not wait for `{shown}` to finish: {e}"))
        })?;
        let (stdout, stderr) = match done {
            Some(r) => r,
            None => match tokio::time::timeout(OUTPUT_GRACE, &mut io).await {
                Ok(r) => r,
                Err(_) => {
                    // Something the script started still holds its output.
                    group.kill_now();
                    io.await
                }
            },
        };
        let (stdout, overflow) = stdout;
        let logs = stderr.lines();
        let tail = stderr.tail_message();
        if !status.success() {
            return Err(ExecutorError::failed(format!(
                "`{shown}` {}{tail}",
                describe_exit(status)
            ))
            .with_logs(logs));
        }
        if overflow {
            return Err(ExecutorError::failed(format!(
                "`{shown}` wrote more than {max_stdout} bytes to stdout{tail}"
            ))
            .with_logs(logs));
        }
        match payload::parse_result(&stdout) {
            Ok(mut result) => {
                if !logs.is_empty() {
                    let mut all = logs;
                    all.append(&mut result.logs);
                    result.logs = all;
                }
                Ok(result)
            }
            Err(e) => Err(ExecutorError::failed(format!(
                "`{shown}` wrote unreadable output to stdout (expected {{\"Outputs\", \"Logs\", \"ReturnValue\"}} JSON): {e}{tail}"
            ))
            .with_logs(logs)),
        }
    }
}

impl Executor for ProcessExecutor {
    fn invoke<'a>(
        &'a self,
        function: &'a FunctionInfo,
        invocation: Invocation,
    ) -> BoxFuture<'a, Result<InvocationResult, ExecutorError>> {
        Box::pin(self.run(function, invocation))
    }
}

/// Gives every function that has a primary script a [`ProcessExecutor`]
/// (one per app version, with its app settings).
#[derive(Debug, Clone, Default)]
pub struct ProcessExecutorFactory {
    template: Option<ProcessExecutor>,
}

impl ProcessExecutorFactory {
    /// A factory of executors with the default options.
    pub fn new() -> Self {
        Self::default()
    }

    /// A factory whose executors take their options (limits, interpreters,
    /// extra environment) from `template`; the app settings are added to
    /// its environment.
    pub fn with_template(template: ProcessExecutor) -> Self {
        ProcessExecutorFactory {
            template: Some(template),
        }
    }
}

impl ExecutorFactory for ProcessExecutorFactory {
    fn executors(&self, app: &FunctionApp) -> Vec<Option<Arc<dyn Executor>>> {
        let mut executor = ProcessExecutor::for_app(app);
        if let Some(template) = &self.template {
            let mut env = template.env.to_vec();
            env.extend(executor.env.iter().cloned());
            executor = ProcessExecutor {
                env: Arc::from(env),
                options: template.options.clone(),
            };
        }
        let executor: Arc<dyn Executor> = Arc::new(executor);
        app.functions()
            .iter()
            .map(|f| f.script.is_some().then(|| executor.clone()))
            .collect()
    }
}

fn show_command(program: &Path, args: &[String]) -> String {
    let mut s = program.to_string_lossy().into_owned();
    for a in args {
        s.push(' ');
        s.push_str(a);
    }
    s
}

fn spawn_error(shown: &str, program: &Path, script: &Path, e: &std::io::Error) -> String {
    let hint = match e.kind() {
        std::io::ErrorKind::NotFound if program != script => {
            format!(": is `{}` installed and on PATH?", program.display())
        }
        std::io::ErrorKind::PermissionDenied if program == script => {
            ": the script has no known extension (.js, .py, .sh, .ps1...) and is not executable"
                .to_owned()
        }
        _ => String::new(),
    };
    format!("could not start `{shown}`: {e}{hint}")
}

fn describe_exit(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exited with status {code}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return format!("was killed by signal {signal}");
        }
    }
    format!("ended abnormally ({status})")
}

/// Reads everything, keeping at most `limit` bytes; says whether there was
/// more (which is read and dropped, so the writer never blocks).
async fn read_bounded<R: AsyncRead + Unpin>(reader: Option<R>, limit: usize) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let Some(mut reader) = reader else {
        return (out, false);
    };
    let mut overflow = false;
    let mut chunk = [0u8; 8192];
    loop {
        match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if overflow {
                    continue;
                }
                if out.len() + n > limit {
                    overflow = true;
                    out.extend_from_slice(&chunk[..limit - out.len()]);
                } else {
                    out.extend_from_slice(&chunk[..n]);
                }
            }
        }
    }
    (out, overflow)
}

/// Reads lines into a [`LineTail`].
async fn read_lines<R: AsyncRead + Unpin>(reader: Option<R>, limit: usize) -> LineTail {
    let mut tail = LineTail::new(limit);
    if let Some(mut reader) = reader {
        let mut chunk = [0u8; 4096];
        loop {
            match reader.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => tail.push(&chunk[..n], |_| {}),
            }
        }
    }
    tail.finish(|_| {});
    tail
}

/// The last lines of a stream, at most `limit` bytes of them; each line is
/// cut at [`LineTail::MAX_LINE`] bytes.
#[derive(Debug, Clone)]
pub(crate) struct LineTail {
    lines: VecDeque<String>,
    bytes: usize,
    limit: usize,
    dropped: usize,
    partial: Vec<u8>,
}

impl LineTail {
    /// The longest line kept whole.
    pub(crate) const MAX_LINE: usize = 8 * 1024;

    pub(crate) fn new(limit: usize) -> Self {
        LineTail {
            lines: VecDeque::new(),
            bytes: 0,
            limit,
            dropped: 0,
            partial: Vec::new(),
        }
    }

    /// Adds bytes; `each` sees every complete line.
    pub(crate) fn push(&mut self, mut bytes: &[u8], mut each: impl FnMut(&str)) {
        while let Some(pos) = bytes.iter().position(|&b| b == b'\n') {
            let room = Self::MAX_LINE.saturating_sub(self.partial.len());
            self.partial.extend_from_slice(&bytes[..pos.min(room)]);
            let line = std::mem::take(&mut self.partial);
            self.add_line(line, &mut each);
            bytes = &bytes[pos + 1..];
        }
        let room = Self::MAX_LINE.saturating_sub(self.partial.len());
        self.partial
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    /// Ends the stream: a last line without a newline counts.
    pub(crate) fn finish(&mut self, mut each: impl FnMut(&str)) {
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            self.add_line(line, &mut each);
        }
    }

    fn add_line(&mut self, mut line: Vec<u8>, each: &mut impl FnMut(&str)) {
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        let line = match String::from_utf8(line) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        };
        each(&line);
        self.bytes += line.len() + 1;
        self.lines.push_back(line);
        while self.bytes > self.limit {
            match self.lines.pop_front() {
                Some(old) => {
                    self.bytes -= old.len() + 1;
                    self.dropped += 1;
                }
                None => break,
            }
        }
    }

    /// The lines kept, oldest first.
    pub(crate) fn lines(&self) -> Vec<String> {
        self.lines.iter().cloned().collect()
    }

    /// `"; stderr: ..."` with the last lines (up to 20, 2 KiB), or nothing.
    pub(crate) fn tail_message(&self) -> String {
        self.tail_message_as("stderr")
    }

    /// `"; {label}: ..."` with the last lines (up to 20, 2 KiB), or nothing.
    pub(crate) fn tail_message_as(&self, label: &str) -> String {
        const LINES: usize = 20;
        const BYTES: usize = 2048;
        let mut picked: Vec<&str> = Vec::new();
        let mut size = 0;
        for line in self.lines.iter().rev() {
            if line.trim().is_empty() {
                continue;
            }
            if picked.len() == LINES || size + line.len() > BYTES {
                break;
            }
            size += line.len() + 1;
            picked.push(line);
        }
        if picked.is_empty() {
            return String::new();
        }
        picked.reverse();
        let skipped = self.dropped + self.lines.len() - picked.len();
        let more = if skipped > 0 {
            format!(" (last {} lines)", picked.len())
        } else {
            String::new()
        };
        format!("; {label}{more}:\n{}", picked.join("\n"))
    }
}

/// Kills a child's process group when dropped before the child was reaped
/// (on Unix; elsewhere `kill_on_drop` kills the child alone).
struct GroupGuard {
    pid: Option<u32>,
    pid_after_reap: Option<u32>,
}

impl GroupGuard {
    fn new(pid: Option<u32>) -> Self {
        GroupGuard {
            pid,
            pid_after_reap: None,
        }
    }

    /// The child was reaped: its id may be reused, never signal it again
    /// from `drop`.
    fn reaped(&mut self) {
        self.pid_after_reap = self.pid.take();
    }

    /// Kills the group now (it outlived its leader).
    fn kill_now(&mut self) {
        if let Some(pid) = self.pid.or(self.pid_after_reap) {
            kill_group(pid);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pid) = self.pid.take() {
            kill_group(pid);
        }
    }
}

/// Sends SIGKILL to process group `pgid`.
#[cfg(unix)]
pub(crate) fn kill_group(pgid: u32) {
    signal_group(pgid, nix::sys::signal::Signal::SIGKILL);
}

/// Sends `signal` to process group `pgid`, ignoring errors (it may be gone).
#[cfg(unix)]
pub(crate) fn signal_group(pgid: u32, signal: nix::sys::signal::Signal) {
    if let Ok(pgid) = i32::try_from(pgid)
        && pgid > 1
    {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), signal);
    }
}

#[cfg(not(unix))]
pub(crate) fn kill_group(_pgid: u32) {}

/// Makes the child that `command` starts get SIGKILL when its parent
/// goes, however it goes (SIGKILL included), so that custom handlers,
/// one-shot processes and language workers never outlive the host that
/// started them (Linux's parent-death signal; elsewhere nothing). The
/// signal follows the *thread* that spawns the child: spawn from a
/// runtime's worker threads (which live as long as the runtime), never
/// from a `spawn_blocking` thread, which ends when idle. It reaches the
/// child only, not processes the child starts itself.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub(crate) fn die_with_parent(command: &mut Command) {
    let parent = nix::unistd::getpid();
    // SAFETY: `pre_exec` is unsafe because the closure runs in the child
    // between fork and exec, where only async-signal-safe functions may
    // be called. This one makes two system calls (prctl and getppid) and
    // builds its error from an errno: no allocation, no lock, nothing
    // shared with the parent's other threads.
    unsafe {
        command.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
            // The parent died before the signal was set: do not run on.
            if nix::unistd::getppid() != parent {
                return Err(nix::errno::Errno::ESRCH.into());
            }
            Ok(())
        });
    }
}

/// Nothing outside Linux (see the Linux version).
#[cfg(not(target_os = "linux"))]
pub(crate) fn die_with_parent(_command: &mut Command) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_tail_keeps_the_last_lines() {
        let mut t = LineTail::new(20);
        let mut seen = Vec::new();
        t.push(b"one\ntwo\r\nthree", |l| seen.push(l.to_owned()));
        t.push(b" four\nfive-five-five\nsix", |l| seen.push(l.to_owned()));
        t.finish(|l| seen.push(l.to_owned()));
        assert_eq!(seen, ["one", "two", "three four", "five-five-five", "six"]);
        assert_eq!(t.lines(), ["five-five-five", "six"]);
        assert!(t.tail_message().contains("five-five-five\nsix"));
    }

    #[test]
    fn commands_follow_the_extension() {
        let e = ProcessExecutor::new().with_interpreter(".PY", "python3.11", ["-u"]);
        let (p, a) = e.command_for(Path::new("/x/run.py"));
        assert_eq!(
            (p.to_str(), a),
            (Some("python3.11"), vec!["-u".into(), "/x/run.py".into()])
        );
        let (p, a) = e.command_for(Path::new("/x/index.MJS"));
        assert_eq!((p.to_str(), a.len()), (Some("node"), 1));
        let (p, a) = e.command_for(Path::new("/x/run"));
        assert_eq!((p.to_str(), a.len()), (Some("/x/run"), 0));
    }
}
