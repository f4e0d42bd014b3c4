//! One blobTrigger function's listener: container scans, receipts, the
//! run of each new blob version, retries and the poison queue.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fnhost_core::binding::DataType;
use fnhost_core::invoke::{BindingData, FunctionHandle, Host, Invocation};
use fnhost_core::timer::LogSink;
use serde_json::{Map, Value};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::BlobSpec;
use crate::listeners::{Failures, ListenerCtx, lock, next_round};
use crate::queue::{MessageEncoding, encode_message};
use crate::storage::{
    BlobClient, BlobItem, BlobProperties, BlobService, Lease, PutOptions, QueueService,
    StorageError,
};

/// How often the container is listed: every ten seconds, as the host.
pub const DEFAULT_SCAN_INTERVAL: Duration = Duration::from_secs(10);

/// The container receipts are kept in (in the trigger's account).
pub const RECEIPTS_CONTAINER: &str = "azure-webjobs-hosts";

/// The queue a blob goes to after its last failed try.
pub const POISON_QUEUE: &str = "webjobs-blobtrigger-poison";

/// How long a receipt's lease lasts; renewed at a third of it while the
/// function runs.
const LEASE_SECONDS: u32 = 60;

/// The metadata of a receipt whose blob is not done.
const INCOMPLETE: &str = "incomplete";
/// The metadata counting a blob's failed tries.
const FAILURES: &str = "failures";

/// Scans the container of one blobTrigger function and runs the function
/// once for each blob version (name and ETag) that matches its path.
///
/// Each blob version has a receipt blob in `azure-webjobs-hosts`
/// (`blobreceipts/{hostId}/Host.Functions.{name}/{etag}/{container}/{blob}`),
/// created before the run and leased while it runs, marked complete after
/// success or after the last failed try: a blob is processed once across
/// restarts and by one instance at a time, and one whose run was cut short
/// (a crash) runs again once its lease lapses.
#[derive(Debug)]
pub struct BlobListener {
    ctx: Arc<Ctx>,
}

struct Ctx {
    host: Arc<Host>,
    spec: BlobSpec,
    host_id: String,
    blobs: BlobService,
    queues: QueueService,
    interval: Duration,
    log: LogSink,
    /// Blob versions known to be done (`name\0etag`).
    done: Mutex<HashSet<String>>,
    /// Blob versions being processed.
    running: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("spec", &self.spec)
            .field("host_id", &self.host_id)
            .finish_non_exhaustive()
    }
}

impl Ctx {
    fn receipt(&self, item: &BlobItem) -> BlobClient {
        let etag = item.properties.etag.trim_matches('"');
        self.blobs.container(RECEIPTS_CONTAINER).blob(&format!(
            "blobreceipts/{}/Host.Functions.{}/{etag}/{}/{}",
            self.host_id, self.spec.function, self.spec.pattern.container, item.name
        ))
    }
}

fn key(item: &BlobItem) -> String {
    format!("{}\0{}", item.name, item.properties.etag)
}

impl BlobListener {
    /// A listener for `spec`, keeping receipts under `host_id` (no request
    /// is made yet). Fails when the connection string is not usable.
    pub fn new(
        host: Arc<Host>,
        spec: BlobSpec,
        host_id: String,
        interval: Duration,
        log: LogSink,
    ) -> Result<BlobListener, StorageError> {
        let blobs = BlobService::from_connection_string(&spec.connection)?;
        let queues = QueueService::from_connection_string(&spec.connection)?;
        Ok(BlobListener {
            ctx: Arc::new(Ctx {
                host,
                spec,
                host_id,
                blobs,
                queues,
                interval: interval.max(Duration::from_millis(50)),
                log,
                done: Mutex::default(),
                running: Mutex::default(),
            }),
        })
    }

    /// The spec it listens for.
    pub fn spec(&self) -> &BlobSpec {
        &self.ctx.spec
    }

    /// Scans until `stop` turns true (or its sender is dropped) or the
    /// function's spec changes, then waits for the runs in flight.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let ctx = self.ctx;
        let mut tasks: JoinSet<()> = JoinSet::new();
        let mut failures = Failures::default();
        loop {
            let Some(handle) = next_round(&stop, &mut tasks, &*ctx) else {
                break;
            };
            match scan(&ctx, &handle, &mut tasks, &mut stop).await {
                Ok(()) => {
                    if let Some((failures, reason)) = failures.succeeded() {
                        ctx.log(&format!(
                            "the container answers again after {failures} failed scan(s) (last: {reason})"
                        ));
                    }
                }
                Err(e) => {
                    if failures.failed(e.to_string()) {
                        let what = if e.code() == Some("ContainerNotFound") {
                            "the container does not exist (yet); scanning it again later".to_owned()
                        } else {
                            format!("the scan failed, trying again later: {e}")
                        };
                        ctx.log(&what);
                    }
                }
            }
            drop(handle);
            tokio::select! {
                _ = tokio::time::sleep(ctx.interval) => {}
                _ = stop.changed() => break,
            }
        }
        while tasks.join_next().await.is_some() {}
    }
}

impl ListenerCtx for Ctx {
    fn current_handle(&self) -> Option<FunctionHandle> {
        crate::listeners::current_handle(&self.host, &self.spec.function, &self.spec, BlobSpec::of)
    }

    fn log(&self, line: &str) {
        (self.log)(&format!(
            "blob container '{}' ({}): {line}",
            self.spec.pattern.container, self.spec.function
        ));
    }
}

/// Lists the container and starts a run for each matching blob version
/// that is not done or running, at most `maxDegreeOfParallelism` at once.
async fn scan(
    ctx: &Arc<Ctx>,
    handle: &FunctionHandle,
    tasks: &mut JoinSet<()>,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), StorageError> {
    let container = ctx.blobs.container(&ctx.spec.pattern.container);
    let mut marker: Option<String> = None;
    loop {
        let page = container
            .list(ctx.spec.pattern.prefix(), marker.as_deref(), 5000)
            .await?;
        for item in page.blobs {
            let Some(params) = ctx.spec.pattern.matches(&item.name) else {
                continue;
            };
            let k = key(&item);
            if lock(&ctx.done).contains(&k) || !lock(&ctx.running).insert(k.clone()) {
                continue;
            }
            while tasks.len() >= ctx.spec.options.max_degree_of_parallelism.max(1) {
                tokio::select! {
                    _ = tasks.join_next() => {}
                    _ = stop.changed() => {
                        lock(&ctx.running).remove(&k);
                        return Ok(());
                    }
                }
            }
            let ctx2 = ctx.clone();
            let handle = handle.clone();
            tasks.spawn(async move {
                process(&ctx2, handle, &item, params).await;
                lock(&ctx2.running).remove(&k);
            });
        }
        match page.next_marker {
            Some(m) => marker = Some(m),
            None => return Ok(()),
        }
    }
}

fn is_incomplete(p: &BlobProperties) -> bool {
    p.metadata
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case(INCOMPLETE))
}

fn failures_of(p: &BlobProperties) -> u32 {
    p.metadata
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(FAILURES))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0)
}

/// One blob version: its receipt, the run under the receipt's lease, and
/// what the outcome means for the receipt.
async fn process(ctx: &Ctx, handle: FunctionHandle, item: &BlobItem, params: Map<String, Value>) {
    let receipt = ctx.receipt(item);
    match claim(ctx, &receipt).await {
        Ok(Some((lease, failures))) => {
            run_claimed(ctx, handle, item, params, &receipt, &lease, failures).await;
            if let Err(e) = receipt.release_lease(&lease).await {
                ctx.log(&format!(
                    "cannot release the receipt of blob '{}' (it is free again within {LEASE_SECONDS} s): {e}",
                    item.name
                ));
            }
        }
        Ok(None) => {}
        Err(e) => ctx.log(&format!(
            "cannot keep a receipt for blob '{}' (tried again at the next scan): {e}",
            item.name
        )),
    }
}

/// Creates the receipt when missing and leases it. `None` when the blob
/// version is done (remembered) or another run holds it; else the lease
/// and the failed tries so far.
async fn claim(ctx: &Ctx, receipt: &BlobClient) -> Result<Option<(Lease, u32)>, StorageError> {
    let name = receipt.name().to_owned();
    match receipt.properties().await? {
        Some(p) if !is_incomplete(&p) => {
            remember_done(ctx, &name);
            return Ok(None);
        }
        Some(_) => {}
        None => {
            let metadata = [
                (INCOMPLETE.to_owned(), "true".to_owned()),
                (FAILURES.to_owned(), "0".to_owned()),
            ];
            let options = PutOptions {
                metadata: &metadata,
                if_not_exists: true,
                ..PutOptions::default()
            };
            match receipt.put(Vec::new(), options.clone()).await {
                Ok(_) => {}
                Err(e) if e.status() == Some(409) => {}
                Err(e) if e.code() == Some("ContainerNotFound") => {
                    receipt.container().create().await?;
                    match receipt.put(Vec::new(), options).await {
                        Ok(_) => {}
                        Err(e) if e.status() == Some(409) => {}
                        Err(e) => return Err(e),
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }
    let Some(lease) = receipt.acquire_lease(LEASE_SECONDS).await? else {
        return Ok(None);
    };
    // Looked at again under the lease: another run may have finished.
    match receipt.properties().await? {
        Some(p) if is_incomplete(&p) => Ok(Some((lease, failures_of(&p)))),
        _ => {
            remember_done(ctx, &name);
            let _ = receipt.release_lease(&lease).await;
            Ok(None)
        }
    }
}

/// Remembers a done blob version by its receipt name: the scan finds
/// `name\0etag` keys, so the receipt's path is mapped back.
fn remember_done(ctx: &Ctx, receipt_name: &str) {
    // blobreceipts/{host}/{function}/{etag}/{container}/{blob}
    let mut parts = receipt_name.splitn(6, '/');
    let (Some(_), Some(_), Some(_), Some(etag), Some(_), Some(blob)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return;
    };
    lock(&ctx.done).insert(format!("{blob}\0\"{etag}\""));
    lock(&ctx.done).insert(format!("{blob}\0{etag}"));
}

/// Runs the function on the blob (the receipt's lease renewed meanwhile)
/// and records the outcome on the receipt.
async fn run_claimed(
    ctx: &Ctx,
    handle: FunctionHandle,
    item: &BlobItem,
    params: Map<String, Value>,
    receipt: &BlobClient,
    lease: &Lease,
    failures: u32,
) {
    let blob = ctx
        .blobs
        .container(&ctx.spec.pattern.container)
        .blob(&item.name);
    let (content, props) = match blob.get().await {
        Ok(Some(found)) => found,
        // Gone, or rewritten since the scan (its new version has its own
        // receipt): nothing to run for this version.
        Ok(None) => return complete(ctx, receipt, lease, &item.name).await,
        Err(e) => {
            ctx.log(&format!(
                "cannot read blob '{}' (tried again at the next scan): {e}",
                item.name
            ));
            return;
        }
    };
    if props.etag.trim_matches('"') != item.properties.etag.trim_matches('"') {
        return complete(ctx, receipt, lease, &item.name).await;
    }
    let invocation = invocation_for(ctx, item, &props, content.to_vec(), params);
    let outcome = tokio::select! {
        r = handle.invoke(invocation) => r,
        never = renew(receipt, lease) => match never {},
    };
    drop(handle);
    match outcome {
        Ok(result) => {
            for line in &result.logs {
                ctx.log(line);
            }
            complete(ctx, receipt, lease, &item.name).await;
        }
        Err(e) => {
            for line in e.logs() {
                ctx.log(line);
            }
            let failures = failures + 1;
            let threshold = ctx.spec.options.poison_threshold;
            ctx.log(&format!(
                "blob '{}' failed (try {failures} of {threshold}): {e}",
                item.name
            ));
            if failures >= threshold {
                poison(ctx, item, receipt, lease, failures).await;
            } else {
                let metadata = [
                    (INCOMPLETE.to_owned(), "true".to_owned()),
                    (FAILURES.to_owned(), failures.to_string()),
                ];
                if let Err(e) = receipt.set_metadata(&metadata, Some(lease)).await {
                    ctx.log(&format!(
                        "cannot count the failure of blob '{}' on its receipt: {e}",
                        item.name
                    ));
                }
            }
        }
    }
}

/// Marks the receipt complete (its metadata cleared).
async fn complete(ctx: &Ctx, receipt: &BlobClient, lease: &Lease, blob: &str) {
    match receipt.set_metadata(&[], Some(lease)).await {
        Ok(()) => remember_done(ctx, receipt.name()),
        Err(e) => ctx.log(&format!(
            "blob '{blob}' ran but its receipt cannot be marked complete (it will run again): {e}"
        )),
    }
}

/// Puts the host's poison message for the blob and marks its receipt
/// complete; when the message cannot be put, the receipt stays incomplete
/// and the blob is tried again.
async fn poison(ctx: &Ctx, item: &BlobItem, receipt: &BlobClient, lease: &Lease, failures: u32) {
    ctx.log(&format!(
        "Blob '{}' will be skipped for function '{}' because this blob with ETag '{}' has failed to be processed {failures} times. Putting a message in queue '{POISON_QUEUE}'.",
        item.name, ctx.spec.function, item.properties.etag
    ));
    let message = serde_json::json!({
        "Type": "BlobTrigger",
        "FunctionId": format!("Host.Functions.{}", ctx.spec.function),
        "BlobType": "BlockBlob",
        "ContainerName": ctx.spec.pattern.container,
        "BlobName": item.name,
        "ETag": item.properties.etag,
    })
    .to_string();
    let text = encode_message(&message, MessageEncoding::Base64);
    let queue = ctx.queues.queue(POISON_QUEUE);
    let put = match queue.put(&text, None).await {
        Err(e) if e.status() == Some(404) => match queue.create().await {
            Ok(_) => queue.put(&text, None).await,
            Err(e) => Err(e),
        },
        other => other,
    };
    match put {
        Ok(_) => complete(ctx, receipt, lease, &item.name).await,
        Err(e) => ctx.log(&format!(
            "cannot put blob '{}' in the poison queue (it is tried again): {e}",
            item.name
        )),
    }
}

/// Renews the lease every third of its duration, for as long as it is
/// polled; never returns.
async fn renew(receipt: &BlobClient, lease: &Lease) -> std::convert::Infallible {
    loop {
        tokio::time::sleep(Duration::from_secs(u64::from(LEASE_SECONDS) / 3)).await;
        // A failed renewal is tried again at the next tick; at worst the
        // lease lapses and another run may start (at least once).
        let _ = receipt.renew_lease(lease).await;
    }
}

/// The invocation of a blob: its content (bytes, as Azure hands blobs to
/// workers; text when the binding says `dataType: string`) and the host's
/// metadata.
fn invocation_for(
    ctx: &Ctx,
    item: &BlobItem,
    props: &BlobProperties,
    content: Vec<u8>,
    params: Map<String, Value>,
) -> Invocation {
    let trigger = if ctx.spec.data_type == Some(DataType::String) {
        match String::from_utf8(content) {
            Ok(text) => BindingData::Json(Value::String(text)),
            Err(e) => BindingData::Bytes(e.into_bytes()),
        }
    } else {
        BindingData::Bytes(content)
    };
    let container = &ctx.spec.pattern.container;
    let mut metadata = Map::new();
    metadata.insert(
        "BlobTrigger".into(),
        Value::String(format!("{container}/{}", item.name)),
    );
    metadata.insert(
        "Uri".into(),
        Value::String(format!(
            "{}/{container}/{}",
            ctx.blobs.account().blob_endpoint,
            item.name
        )),
    );
    metadata.insert(
        "Properties".into(),
        serde_json::json!({
            "ETag": props.etag,
            "LastModified": props.last_modified.map(|t| t.to_rfc3339()),
            "Length": props.content_length,
            "ContentType": props.content_type,
        }),
    );
    metadata.insert(
        "Metadata".into(),
        Value::Object(
            props
                .metadata
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect(),
        ),
    );
    metadata.extend(params);
    let mut invocation = Invocation::new(trigger);
    invocation.metadata = metadata;
    invocation
}
