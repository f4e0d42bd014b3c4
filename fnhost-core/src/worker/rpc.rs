//! The FunctionRpc gRPC server: one per app version, on a free loopback
//! port. Each worker's first message, `StartStream`, names the worker id it
//! was launched with; the stream is handed to whoever waits for that id.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::lock;
use super::proto::function_rpc_server::{FunctionRpc, FunctionRpcServer};
use super::proto::{StreamingMessage, streaming_message::Content};

/// A worker's stream, once it said who it is.
pub(super) struct Connected {
    /// What the worker sends (after its `StartStream`).
    pub inbound: Streaming<StreamingMessage>,
    /// What the host sends it.
    pub out: mpsc::Sender<Result<StreamingMessage, Status>>,
}

/// Who waits for which worker id.
pub(super) type Waiting = Arc<Mutex<HashMap<String, oneshot::Sender<Connected>>>>;

/// How many messages may wait to be written to one worker.
const OUTBOUND_QUEUE: usize = 4096;

struct Service {
    waiting: Waiting,
}

#[tonic::async_trait]
impl FunctionRpc for Service {
    type EventStreamStream = ReceiverStream<Result<StreamingMessage, Status>>;

    async fn event_stream(
        &self,
        request: Request<Streaming<StreamingMessage>>,
    ) -> Result<Response<Self::EventStreamStream>, Status> {
        let mut inbound = request.into_inner();
        let first = inbound
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("the stream ended before StartStream"))?;
        let Some(Content::StartStream(start)) = first.content else {
            return Err(Status::failed_precondition(
                "the first message of a worker's stream must be StartStream",
            ));
        };
        let Some(waiter) = lock(&self.waiting).remove(&start.worker_id) else {
            return Err(Status::not_found(format!(
                "no worker was started with the id '{}'",
                start.worker_id
            )));
        };
        let (out, rx) = mpsc::channel(OUTBOUND_QUEUE);
        waiter
            .send(Connected { inbound, out })
            .map_err(|_| Status::unavailable("the host no longer waits for this worker"))?;
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// A running server.
pub(super) struct RpcServer {
    addr: SocketAddr,
    waiting: Waiting,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl RpcServer {
    /// Listens on `127.0.0.1` on a free port.
    pub(super) async fn start() -> std::io::Result<RpcServer> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let waiting: Waiting = Arc::default();
        let service = FunctionRpcServer::new(Service {
            waiting: waiting.clone(),
        })
        // Azure's host passes int.MaxValue as the message limit.
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX);
        let (stop, stopped) = oneshot::channel::<()>();
        // Nagle's algorithm with delayed ACKs costs ~40 ms per message.
        let incoming =
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(RpcServer {
            addr,
            waiting,
            stop: Some(stop),
            task,
        })
    }

    pub(super) fn port(&self) -> u16 {
        self.addr.port()
    }

    pub(super) fn waiting(&self) -> Waiting {
        self.waiting.clone()
    }

    /// Stops accepting and ends the server's task.
    pub(super) async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        // Streams still open end with their workers; do not wait for them.
        if tokio::time::timeout(std::time::Duration::from_secs(1), &mut self.task)
            .await
            .is_err()
        {
            self.task.abort();
        }
    }
}
