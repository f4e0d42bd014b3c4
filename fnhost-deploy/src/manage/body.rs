//! Bodies: uploads streamed to temporary files, files streamed out, and
//! small responses.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt as _;
use tokio::io::AsyncWriteExt as _;
use tokio::sync::OwnedSemaphorePermit;

use super::{ApiError, Shared};
use crate::fsutil;
use crate::store::{Digest, Hasher};

/// A plain-text response (a line).
pub fn text(status: StatusCode, message: &str) -> Response {
    (status, format!("{message}\n")).into_response()
}

/// A JSON response.
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response {
    let content_type = [(CONTENT_TYPE, "application/json; charset=utf-8")];
    (status, content_type, value.to_string()).into_response()
}

/// A file streamed as the body (read in 256 KiB chunks).
pub(super) fn file_body(file: tokio::fs::File) -> Body {
    Body::from_stream(tokio_util::io::ReaderStream::with_capacity(
        file,
        256 * 1024,
    ))
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
    shared: &Shared,
    headers: &HeaderMap,
    mut body: Body,
) -> Result<Upload, ApiError> {
    let limit = shared.limits.max_upload_bytes;
    let too_large = || {
        let why = format!("the upload is larger than the limit of {limit} bytes");
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, why)
    };
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let Ok(permit) = shared.uploads.clone().try_acquire_owned() else {
        let why = format!(
            "too many uploads at once (limit {}): try again",
            shared.limits.max_concurrent_uploads
        );
        let resp = text(StatusCode::TOO_MANY_REQUESTS, &why);
        return Err(ApiError::response(([(RETRY_AFTER, "1")], resp)));
    };
    let tmp = TempFile::new(&shared.tmp, ".upload");
    let internal = |e: io::Error| {
        (shared.log)(&format!("manage: cannot write an upload: {e}"));
        let why = "the upload could not be stored (see the server log)";
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, why)
    };
    let file = tokio::fs::File::create(&tmp.0).await.map_err(internal)?;
    let mut out = tokio::io::BufWriter::with_capacity(1024 * 1024, file);
    let mut hasher = Hasher::new();
    let mut size = 0u64;
    loop {
        let frame =
            match tokio::time::timeout(shared.limits.upload_idle_timeout, body.frame()).await {
                Err(_) => {
                    let why = "the upload stalled: nothing received for too long";
                    return Err(ApiError::new(StatusCode::REQUEST_TIMEOUT, why));
                }
                Ok(None) => break,
                // The client went away or broke the framing; the file goes
                // with `tmp`.
                Ok(Some(Err(_))) => {
                    let why = "the request body could not be read to its end";
                    return Err(ApiError::bad_request(why));
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
        let why = "the request body is shorter than its Content-Length";
        return Err(ApiError::bad_request(why));
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
pub(super) async fn stream_temp(tmp: TempFile, filename: &str) -> Result<Response, ApiError> {
    let cannot = |e| crate::Error::io("cannot read", "download", e);
    let file = tokio::fs::File::open(&tmp.0).await.map_err(cannot)?;
    let len = file.metadata().await.map_err(cannot)?.len();
    drop(tmp);
    let headers = [
        (CONTENT_TYPE, "application/zip".to_string()),
        (CONTENT_LENGTH, len.to_string()),
        (
            CONTENT_DISPOSITION,
            format!("attachment; filename=\"{filename}\""),
        ),
    ];
    Ok((headers, file_body(file)).into_response())
}
