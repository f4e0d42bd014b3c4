//! A stand-in language worker for tests and benchmarks: it runs inside the
//! test's own process, dials fnhost's FunctionRpc server over HTTP/2 (the
//! `h2` crate, gRPC framing and prost messages by hand, so it shares no
//! code with the host side it checks) and answers as a test tells it.
//!
//! fnhost launches workers as processes, so the stand-in comes with a
//! launcher: [`write_launcher`] writes a worker folder whose
//! `worker.config.json` runs a shell script that prints [`LAUNCH_MARKER`]
//! and its command line, then waits. fnhost passes that line to the
//! factory's log, where [`StandIn::log_sink`] reads the port and worker id
//! from it and dials in as that worker.
//!
//! ```no_run
//! # async fn f() {
//! use std::sync::Arc;
//! use fnhost_core::worker::LanguageWorkerFactory;
//! use fnhost_core::worker::testkit::{StandIn, http_function, ok_response, write_launcher};
//! let workers = std::path::Path::new("/tmp/workers");
//! write_launcher(workers, "echo").expect("a worker folder");
//! let stand_in = StandIn::new()
//!     .with_function(http_function("hello"))
//!     .on_invocation(|r| vec![ok_response(&r.invocation_id, "hi")]);
//! let log = Arc::new(stand_in).log_sink(tokio::runtime::Handle::current(), Arc::new(|_| {}));
//! let factory = LanguageWorkerFactory::new().with_workers_dir(workers).with_log(log);
//! # }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::{Buf as _, Bytes, BytesMut};
use prost::Message as _;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::lock;
use super::proto::{self, streaming_message::Content, typed_data::Data};
use crate::timer::LogSink;

/// What the launcher script prints before its arguments.
pub const LAUNCH_MARKER: &str = "FNHOST_STAND_IN_LAUNCH";

/// What to answer to one message from the host (after the handshake).
pub type Answer = Arc<dyn Fn(&Content) -> Vec<Content> + Send + Sync>;

/// A stand-in worker: the capabilities it declares, the functions it
/// indexes, and how it answers invocations and other messages.
#[derive(Clone)]
pub struct StandIn {
    capabilities: Vec<String>,
    functions: Vec<proto::RpcFunctionMetadata>,
    answer: Answer,
    launches: Arc<Mutex<Vec<Launch>>>,
}

impl fmt::Debug for StandIn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StandIn")
            .field("capabilities", &self.capabilities)
            .field("functions", &self.functions.len())
            .finish_non_exhaustive()
    }
}

impl Default for StandIn {
    fn default() -> Self {
        Self::new()
    }
}

/// One start of the launcher, as it printed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// The words after [`LAUNCH_MARKER`]: everything fnhost passed.
    pub args: Vec<String>,
    /// `--port`.
    pub port: u16,
    /// `--workerId`.
    pub worker_id: String,
}

impl Launch {
    /// Reads a launcher's line (anything before the marker is ignored).
    pub fn parse(line: &str) -> Option<Launch> {
        let at = line.find(LAUNCH_MARKER)?;
        let args: Vec<String> = line[at + LAUNCH_MARKER.len()..]
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        let flag = |name: &str| {
            args.iter()
                .position(|w| w == name)
                .and_then(|i| args.get(i + 1))
                .cloned()
        };
        Some(Launch {
            port: flag("--port")?.parse().ok()?,
            worker_id: flag("--workerId")?,
            args,
        })
    }
}

impl StandIn {
    /// A worker that declares no capability, indexes nothing and answers
    /// nothing after the handshake.
    pub fn new() -> Self {
        StandIn {
            capabilities: Vec::new(),
            functions: Vec::new(),
            answer: Arc::new(|_| Vec::new()),
            launches: Arc::default(),
        }
    }

    /// Declares a capability (with the value `"true"`).
    pub fn with_capability(mut self, name: &str) -> Self {
        self.capabilities.push(name.to_owned());
        self
    }

    /// Indexes a function (worker indexing); its `directory` is the app's
    /// folder when left empty.
    pub fn with_function(mut self, metadata: proto::RpcFunctionMetadata) -> Self {
        self.functions.push(metadata);
        self
    }

    /// Answers every message after the handshake (`InvocationRequest`,
    /// `InvocationCancel`, `WorkerTerminate`, ...) with what `answer`
    /// returns, in order.
    pub fn on_message(
        mut self,
        answer: impl Fn(&Content) -> Vec<Content> + Send + Sync + 'static,
    ) -> Self {
        self.answer = Arc::new(answer);
        self
    }

    /// Answers each `InvocationRequest` with what `answer` returns; other
    /// messages get no answer.
    pub fn on_invocation(
        self,
        answer: impl Fn(&proto::InvocationRequest) -> Vec<Content> + Send + Sync + 'static,
    ) -> Self {
        self.on_message(move |c| match c {
            Content::InvocationRequest(r) => answer(r),
            _ => Vec::new(),
        })
    }

    /// The launches seen by [`StandIn::log_sink`] so far.
    pub fn launches(&self) -> Vec<Launch> {
        lock(&self.launches).clone()
    }

    /// A log sink for [`super::LanguageWorkerFactory::with_log`]: a
    /// launcher's line starts this stand-in on `handle` as the worker it
    /// names; every other line goes to `rest`.
    pub fn log_sink(self: Arc<Self>, handle: tokio::runtime::Handle, rest: LogSink) -> LogSink {
        Arc::new(move |line: &str| {
            let Some(launch) = Launch::parse(line) else {
                rest(line);
                return;
            };
            lock(&self.launches).push(launch.clone());
            let me = self.clone();
            handle.spawn(async move {
                if let Err(e) = me.dial(launch.port, launch.worker_id).await {
                    eprintln!("error: the stand-in worker: {e}");
                }
            });
        })
    }

    /// Dials `127.0.0.1:port` and serves the stream as `worker_id`.
    pub async fn dial(&self, port: u16, worker_id: String) -> Result<(), String> {
        let tcp = TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let _ = tcp.set_nodelay(true);
        self.serve(tcp, port, worker_id).await
    }

    /// Serves the stream over `io` (a connection to fnhost's server on
    /// `port`) as `worker_id` until it ends.
    pub async fn serve<T>(&self, io: T, port: u16, worker_id: String) -> Result<(), String>
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (h2, connection) = h2::client::handshake(io)
            .await
            .map_err(|e| format!("HTTP/2 handshake: {e}"))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let mut h2 = h2.ready().await.map_err(|e| format!("HTTP/2: {e}"))?;
        let request = hyper::http::Request::post(format!(
            "http://127.0.0.1:{port}/AzureFunctionsRpcMessages.FunctionRpc/EventStream"
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .map_err(|e| e.to_string())?;
        let (response, mut send) = h2
            .send_request(request, false)
            .map_err(|e| format!("EventStream: {e}"))?;
        send.send_data(
            grpc_frame(Content::StartStream(proto::StartStream { worker_id })),
            false,
        )
        .map_err(|e| format!("StartStream: {e}"))?;
        let response = response.await.map_err(|e| format!("EventStream: {e}"))?;
        if response.status() != 200 {
            return Err(format!("EventStream answered {}", response.status()));
        }
        let mut body = response.into_body();
        let mut buf = BytesMut::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(|e| format!("the stream: {e}"))?;
            let _ = body.flow_control().release_capacity(chunk.len());
            buf.extend_from_slice(&chunk);
            while let Some(message) = next_message(&mut buf)? {
                let Some(content) = message.content else {
                    continue;
                };
                for reply in self.reply(content) {
                    send.send_data(grpc_frame(reply), false)
                        .map_err(|e| format!("sending: {e}"))?;
                }
            }
        }
        Ok(())
    }

    fn reply(&self, content: Content) -> Vec<Content> {
        match content {
            Content::WorkerInitRequest(_) => {
                vec![Content::WorkerInitResponse(proto::WorkerInitResponse {
                    worker_version: "stand-in".into(),
                    capabilities: self
                        .capabilities
                        .iter()
                        .map(|c| (c.clone(), "true".to_owned()))
                        .collect(),
                    result: success(),
                    worker_metadata: None,
                })]
            }
            Content::FunctionsMetadataRequest(r) => {
                let functions = self
                    .functions
                    .iter()
                    .cloned()
                    .map(|mut m| {
                        if m.directory.is_empty() {
                            m.directory = r.function_app_directory.clone();
                        }
                        m
                    })
                    .collect::<Vec<_>>();
                vec![Content::FunctionMetadataResponse(
                    proto::FunctionMetadataResponse {
                        use_default_metadata_indexing: functions.is_empty(),
                        function_metadata_results: functions,
                        result: success(),
                    },
                )]
            }
            Content::FunctionLoadRequest(r) => {
                vec![Content::FunctionLoadResponse(proto::FunctionLoadResponse {
                    function_id: r.function_id,
                    result: success(),
                    is_dependency_downloaded: false,
                })]
            }
            other => (self.answer)(&other),
        }
    }
}

/// Writes a worker folder `dir/language` whose worker.config.json runs a
/// launcher script (`launch.sh`, the executable itself, so that
/// `arguments` reach it) that prints [`LAUNCH_MARKER`] and its arguments,
/// then lives as long as the process that started it.
pub fn write_launcher(dir: &Path, language: &str) -> std::io::Result<()> {
    let folder = dir.join(language);
    std::fs::create_dir_all(&folder)?;
    std::fs::write(
        folder.join(super::WORKER_CONFIG_JSON),
        serde_json::json!({"description": {"language": language,
            "defaultExecutablePath": "{workerDirectoryPath}/launch.sh"}})
        .to_string(),
    )?;
    write_script(&folder.join("launch.sh"), "")
}

/// Writes an executable launcher script at `path` that prints
/// [`LAUNCH_MARKER`], then `words`, then its arguments, and waits.
pub fn write_script(path: &Path, words: &str) -> std::io::Result<()> {
    std::fs::write(
        path,
        format!(
            "#!/bin/sh\necho \"{LAUNCH_MARKER} {words} $*\"\nexec tail -f /dev/null --pid=$PPID\n"
        ),
    )?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}

/// An anonymous HTTP function `name` (GET and POST) answering through
/// `$return`, as a worker indexes it.
pub fn http_function(name: &str) -> proto::RpcFunctionMetadata {
    let binding = |r#type: &str, direction: proto::binding_info::Direction| proto::BindingInfo {
        r#type: r#type.into(),
        direction: direction as i32,
        ..Default::default()
    };
    proto::RpcFunctionMetadata {
        name: name.into(),
        function_id: name.into(),
        script_file: "index.js".into(),
        bindings: HashMap::from([
            (
                "req".to_owned(),
                binding("httpTrigger", proto::binding_info::Direction::In),
            ),
            (
                "$return".to_owned(),
                binding("http", proto::binding_info::Direction::Out),
            ),
        ]),
        raw_bindings: vec![
            format!(
                r#"{{"authLevel":"anonymous","methods":["GET","POST"],"type":"httpTrigger","name":"req","direction":"in","route":"{name}"}}"#
            ),
            r#"{"type":"http","name":"$return","direction":"out"}"#.into(),
        ],
        ..Default::default()
    }
}

/// A successful `InvocationResponse` whose `$return` is an HTTP 200 with
/// `body` as text.
pub fn ok_response(invocation_id: &str, body: &str) -> Content {
    Content::InvocationResponse(proto::InvocationResponse {
        invocation_id: invocation_id.to_owned(),
        output_data: Vec::new(),
        return_value: Some(proto::TypedData {
            data: Some(Data::Http(Box::new(proto::RpcHttp {
                status_code: "200".into(),
                headers: HashMap::from([(
                    "content-type".to_owned(),
                    "text/plain;charset=UTF-8".to_owned(),
                )]),
                body: Some(Box::new(proto::TypedData {
                    data: Some(Data::String(body.into())),
                })),
                ..Default::default()
            }))),
        }),
        result: success(),
    })
}

/// An `RpcLog` about invocation `invocation_id` (empty: about none).
pub fn log(
    invocation_id: &str,
    category: proto::rpc_log::RpcLogCategory,
    level: proto::rpc_log::Level,
    message: &str,
) -> Content {
    Content::RpcLog(proto::RpcLog {
        invocation_id: invocation_id.to_owned(),
        category: "Function".into(),
        level: level as i32,
        message: message.to_owned(),
        log_category: category as i32,
        ..Default::default()
    })
}

fn success() -> Option<proto::StatusResult> {
    Some(proto::StatusResult {
        status: proto::status_result::Status::Success as i32,
        ..Default::default()
    })
}

/// A gRPC message: uncompressed flag, big-endian length, protobuf.
fn grpc_frame(content: Content) -> Bytes {
    let message = proto::StreamingMessage {
        request_id: String::new(),
        content: Some(content),
    };
    let mut out = Vec::with_capacity(5 + message.encoded_len());
    out.push(0);
    let len = u32::try_from(message.encoded_len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    message.encode_raw(&mut out);
    Bytes::from(out)
}

/// The next whole gRPC message in `buf`, if there is one.
fn next_message(buf: &mut BytesMut) -> Result<Option<proto::StreamingMessage>, String> {
    if buf.len() < 5 {
        return Ok(None);
    }
    if buf[0] != 0 {
        return Err("a compressed gRPC message".into());
    }
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    if buf.len() < 5 + len {
        return Ok(None);
    }
    buf.advance(5);
    let body = buf.split_to(len);
    proto::StreamingMessage::decode(body.freeze())
        .map(Some)
        .map_err(|e| format!("a message that does not decode: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_launch_line() {
        let line = format!(
            "echo worker 0: {LAUNCH_MARKER} --inspect --host 127.0.0.1 --port 4711 --workerId w-1 --requestId r"
        );
        let launch = Launch::parse(&line).expect("a launch");
        assert_eq!(launch.port, 4711);
        assert_eq!(launch.worker_id, "w-1");
        assert_eq!(launch.args[0], "--inspect");
        assert!(Launch::parse("echo worker 0: hello").is_none());
    }
}
