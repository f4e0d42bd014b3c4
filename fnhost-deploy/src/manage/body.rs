//! Bodies: uploads streamed to temporary files, files streamed out, and
//! small responses.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::header::HeaderValue;
use hyper::{HeaderMap, Response, StatusCode};
use tokio::io::{AsyncRead, AsyncWriteExt as _, ReadBuf};
use tokio::sync::OwnedSemaphorePermit;

use super::{HttpResponse, Shared};
use crate::fsutil;
use crate::store::{Digest, Hasher};

/// The body of a response: bytes in memory, or a file streamed.
pub type ResponseBody = BoxBody<Bytes, io::Error>;

/// A response with a body held in memory.
pub(super) fn bytes(status: StatusCode, content_type: &'static str, data: Vec<u8>) -> HttpResponse {
    let mut resp = Response::new(Full::new(Bytes::from(data)).map_err(|e| match e {}).boxed());
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    resp
}

/// A plain-text response (a line).
pub fn text(status: StatusCode, message: &str) -> HttpResponse {
    bytes(
        status,
        "text/plain; charset=utf-8",
        format!("{message}\n").into_bytes(),
    )
}

/// A JSON response.
pub fn json(status: StatusCode, value: &serde_json::Value) -> HttpResponse {
    bytes(
        status,
        "application/json; charset=utf-8",
        value.to_string().into_bytes(),
    )
}

/// A response without a body.
pub(super) fn empty(status: StatusCode) -> HttpResponse {
    let mut resp = Response::new(Full::new(Bytes::new()).map_err(|e| match e {}).boxed());
    *resp.status_mut() = status;
    resp
}

/// A file streamed as the body (read in 256 KiB chunks).
pub(super) fn file_body(file: tokio::fs::File) -> ResponseBody {
    FileBody {
        file,
        buf: vec![0u8; 256 * 1024].into_boxed_slice(),
    }
    .boxed()
}

struct FileBody {
    file: tokio::fs::File,
    buf: Box<[u8]>,
}

impl Body for FileBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        let mut rb = ReadBuf::new(&mut this.buf);
        match Pin::new(&mut this.file).poll_read(cx, &mut rb) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
            Poll::Ready(Ok(())) if rb.filled().is_empty() => Poll::Ready(None),
            Poll::Ready(Ok(())) => {
                Poll::Ready(Some(Ok(Frame::data(Bytes::copy_from_slice(rb.filled())))))
            }
        }
    }
}

/// The endpoint's folder of temporary files: `HOME/manage/tmp/PID-RANDOM`,
/// made anew; folders of processes that are gone are removed.
pub(super) fn temp_dir(home: &Path) -> io::Result<PathBuf> {
    let root = home.join("manage").join("tmp");
    fs::create_dir_all(&root)?;
    if let Ok(entries) = fs::read_dir(&root) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let pid = name.split('-').next().unwrap_or("");
            let alive = !pid.is_empty() && Path::new("/proc").join(pid).exists();
            if !alive || pid == std::process::id().to_string() {
                let _ = fsutil::remove_tree(&e.path());
            }
        }
    }
    let dir = root.join(format!("{}-{}", std::process::id(), fsutil::random_hex(4)));
    fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// A temporary file, removed when dropped.
#[derive(Debug)]
pub(super) struct TempFile(pub(super) PathBuf);

impl TempFile {
    pub(super) fn new(dir: &Path, suffix: &str) -> TempFile {
        TempFile(dir.join(format!("{}{suffix}", fsutil::random_hex(8))))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// A request body received into a temporary file; the file is removed
/// when this is dropped.
#[derive(Debug)]
pub struct Upload {
    file: TempFile,
    size: u64,
    digest: Digest,
    _permit: OwnedSemaphorePermit,
}

impl Upload {
    /// The file.
    pub fn path(&self) -> &Path {
        &self.file.0
    }
    /// Its size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }
    /// Its sha256.
    pub fn digest(&self) -> Digest {
        self.digest
    }
}

/// Receives a body into a file in the endpoint's temporary folder.
pub(super) async fn receive(
    shared: &Arc<Shared>,
    headers: &HeaderMap,
    mut body: Incoming,
) -> Result<Upload, HttpResponse> {
    let limit = shared.limits.max_upload_bytes;
    let too_large = || {
        text(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("the upload is larger than the limit of {limit} bytes"),
        )
    };
    let declared = headers
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let Ok(permit) = shared.uploads.clone().try_acquire_owned() else {
        let mut resp = text(
            StatusCode::TOO_MANY_REQUESTS,
            &format!(
                "too many uploads at once (limit {}): try again",
                shared.limits.max_concurrent_uploads
            ),
        );
        resp.headers_mut()
            .insert(hyper::header::RETRY_AFTER, HeaderValue::from_static("1"));
        return Err(resp);
    };
    let tmp = TempFile::new(shared.tmp(), ".upload");
    let internal = |e: io::Error| {
        (shared.log)(&format!("manage: cannot write an upload: {e}"));
        text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the upload could not be stored (see the server log)",
        )
    };
    let file = tokio::fs::File::create(&tmp.0).await.map_err(internal)?;
    let mut out = tokio::io::BufWriter::with_capacity(1024 * 1024, file);
    let mut hasher = Hasher::new();
    let mut size = 0u64;
    loop {
        let frame =
            match tokio::time::timeout(shared.limits.upload_idle_timeout, body.frame()).await {
                Err(_) => {
                    return Err(text(
                        StatusCode::REQUEST_TIMEOUT,
                        "the upload stalled: nothing received for too long",
                    ));
                }
                Ok(None) => break,
                Ok(Some(Err(_))) => {
                    // The client went away or broke the framing; the file goes
                    // with `tmp`.
                    return Err(text(
                        StatusCode::BAD_REQUEST,
                        "the request body could not be read to its end",
                    ));
                }
                Ok(Some(Ok(frame))) => frame,
            };
        if let Ok(data) = frame.into_data() {
            size += data.len() as u64;
            if size > limit {
                return Err(too_large());
            }
            hasher.update(&data);
            out.write_all(&data).await.map_err(internal)?;
        }
    }
    if declared.is_some_and(|n| n != size) {
        return Err(text(
            StatusCode::BAD_REQUEST,
            "the request body is shorter than its Content-Length",
        ));
    }
    out.flush().await.map_err(internal)?;
    drop(out);
    Ok(Upload {
        file: tmp,
        size,
        digest: hasher.finish(),
        _permit: permit,
    })
}

/// Streams a temporary file as a download, then forgets it (it is
/// unlinked at once; the open handle keeps the data until sent).
pub(super) async fn stream_temp(
    tmp: TempFile,
    content_type: &'static str,
    filename: &str,
) -> io::Result<HttpResponse> {
    let file = tokio::fs::File::open(&tmp.0).await?;
    let len = file.metadata().await?.len();
    drop(tmp);
    let mut resp = Response::new(file_body(file));
    let h = resp.headers_mut();
    h.insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    h.insert(hyper::header::CONTENT_LENGTH, HeaderValue::from(len));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        h.insert(hyper::header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}
