//! [`ApiError`]: what a handler answers when it stops early, so that
//! handlers use `?`.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::text;
use crate::error::Error;

/// Why a request stops early. A library [`Error`] is answered by its kind
/// (404, 400, 409, else 500); the endpoint's log layer logs internal
/// errors and keeps server paths out of the answer.
#[derive(Debug)]
#[non_exhaustive]
pub enum ApiError {
    /// A library error.
    Site(Error),
    /// A status and a message line (plain text).
    Status(StatusCode, String),
    /// A response made by the handler.
    Response(Box<Response>),
}

impl ApiError {
    /// A status and a message line.
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError::Status(status, message.into())
    }

    /// 400 and a message line.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404 and a message line.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    /// A response made by the handler.
    pub fn response(resp: impl IntoResponse) -> ApiError {
        ApiError::Response(Box::new(resp.into_response()))
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        ApiError::Site(e)
    }
}

/// A library error carried by a response until the log layer answers it
/// ([`site_error_response`]).
#[derive(Debug, Clone)]
pub(super) struct SiteError(pub(super) Arc<Error>);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Site(e) => {
                let mut resp = StatusCode::INTERNAL_SERVER_ERROR.into_response();
                resp.extensions_mut().insert(SiteError(Arc::new(e)));
                resp
            }
            ApiError::Status(status, message) => text(status, &message),
            ApiError::Response(resp) => *resp,
        }
    }
}

/// The HTTP answer to a library error. Internal errors (file system,
/// store) are logged; the client gets no server paths (uploads are named
/// after the endpoint's temporary folder `tmp`: "the upload" instead).
pub(super) fn site_error_response(e: &Error, tmp: &str, log: &dyn Fn(&str)) -> Response {
    let Some(status) = client_status(e) else {
        log(&format!("manage: {e}"));
        let why = "internal error (see the server log)";
        return text(StatusCode::INTERNAL_SERVER_ERROR, why);
    };
    let message = match e {
        Error::Busy { holder, .. } => format!(
            "There is a deployment currently in progress ({}). Try again when it completes, or leave out wait=false to queue behind it.",
            holder
                .as_deref()
                .filter(|h| !h.is_empty())
                .unwrap_or("id unknown")
        ),
        e => e.to_string(),
    };
    text(status, &message.replace(&format!("{tmp}/"), "upload "))
}

/// The status of a library error the client can act on (404, 400, 409);
/// `None` for an internal error (to log, not to show).
pub(super) fn client_status(e: &Error) -> Option<StatusCode> {
    Some(match e {
        Error::AppNotFound { .. }
        | Error::DeploymentNotFound { .. }
        | Error::NoActiveDeployment { .. } => StatusCode::NOT_FOUND,
        Error::InvalidName { .. }
        | Error::Package { .. }
        | Error::DeploymentFailed { .. }
        | Error::Credentials { .. }
        | Error::PortalUser { .. } => StatusCode::BAD_REQUEST,
        Error::Busy { .. }
        | Error::ReadOnly { .. }
        | Error::DeploymentInUse { .. }
        | Error::NoRollbackTarget { .. } => StatusCode::CONFLICT,
        _ => return None,
    })
}
