//! `POST {base}/deploy`: push webhooks from GitHub, GitLab, Bitbucket,
//! Azure Repos, and a generic `{"repository":{"url"},"ref"}` payload. A
//! push to the branch the slot follows (of the repository it follows)
//! syncs the slot, coalesced with any sync already running
//! ([`ContinuousDeployer::notify`]).

use axum::Router;
use axum::body::Body;
use axum::http::header::{CONTENT_TYPE, LOCATION};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use hmac::{Hmac, KeyInit as _, Mac as _};
use serde_json::{Value, json};
use subtle::ConstantTimeEq as _;

use super::{ApiError, Scope, blocking};
use crate::cd::push::{self, NotPush, branch_of, normalize_url};
use crate::cd::{ContinuousDeployer, SourceKind, SyncOutcome};
use crate::error::Error;
use crate::site::Site;

/// GitHub's limit on a payload; anything larger is not a webhook.
const MAX_PAYLOAD: u64 = 25 * 1024 * 1024;

pub(super) fn routes(site: &Site) -> Router {
    let cd = ContinuousDeployer::new(site.clone());
    let deploy = post(
        move |scope: Scope, headers: HeaderMap, body: Body| async move {
            webhook(cd, scope, headers, body).await
        },
    );
    super::with_slash("/deploy", deploy)
}

/// Checks the request against the slot's secret: GitHub's
/// `X-Hub-Signature-256` (HMAC-SHA256 of the raw body) or GitLab's
/// `X-Gitlab-Token` (the secret itself).
pub(super) fn verify(headers: &HeaderMap, secret: &[u8], body: &[u8]) -> Result<(), &'static str> {
    let get = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    if let Some(sig) = get("x-hub-signature-256") {
        let hex = sig.trim().strip_prefix("sha256=");
        let Some(given) = hex.and_then(|h| hex::decode(h).ok()) else {
            return Err("X-Hub-Signature-256 is not sha256=HEX");
        };
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret)
            .map_err(|_| "the webhook secret is not a usable HMAC key")?;
        mac.update(body);
        // Compared in constant time.
        return mac
            .verify_slice(&given)
            .map_err(|_| "the X-Hub-Signature-256 signature does not match the webhook secret");
    }
    if let Some(token) = get("x-gitlab-token") {
        return if bool::from(token.as_bytes().ct_eq(secret)) {
            Ok(())
        } else {
            Err("the X-Gitlab-Token does not match the webhook secret")
        };
    }
    Err(
        "a webhook secret is set for this slot: the request needs X-Hub-Signature-256 (or X-Gitlab-Token)",
    )
}

/// The answer `{..v, "status": label, extra, "message": message}`.
fn answer(
    code: StatusCode,
    mut v: Value,
    label: &str,
    extra: Option<(&str, Value)>,
    message: String,
) -> Response {
    v["status"] = label.into();
    if let Some((k, x)) = extra {
        v[k] = x;
    }
    v["message"] = Value::String(message);
    super::json(code, &v)
}

/// The payload as JSON: the body, or the `payload` field of GitHub's
/// form encoding.
fn payload(headers: &HeaderMap, raw: &[u8]) -> Result<Value, ApiError> {
    let form = headers
        .get(CONTENT_TYPE)
        .and_then(|c| c.to_str().ok())
        .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
    // (curl's default content type is the form one: a JSON body is JSON.)
    let looks_json = raw
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{');
    let parsed: Result<Value, String> = if form && !looks_json {
        match form_urlencoded::parse(raw).find(|(k, _)| k == "payload") {
            Some((_, p)) => serde_json::from_str(&p).map_err(|e| e.to_string()),
            None => Err("a form without a payload field".into()),
        }
    } else {
        serde_json::from_slice(raw).map_err(|e| e.to_string())
    };
    parsed.map_err(|e| ApiError::bad_request(format!("the payload is not JSON: {e}")))
}

async fn webhook(
    cd: ContinuousDeployer,
    scope: Scope,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (app, slot) = (scope.app.clone(), scope.slot.clone());
    let slot_arg = scope.slot_arg();
    let Some(config) = scope.source_config(&cd, "webhook").await? else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "{app}/{slot} has no continuous deployment: a webhook syncs a slot that follows a git repository; configure it with `fnhost source set {app}{slot_arg} --git URL --branch BRANCH`"
            ),
        ));
    };
    if config.kind != SourceKind::Git {
        let hint = if config.kind == SourceKind::LocalGit {
            let base_url = &scope.base_url;
            format!("; push to its built-in repository, {base_url}/{app}.git")
        } else {
            String::new()
        };
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "{app}/{slot} follows {}, not a git repository a webhook can announce{hint}; `fnhost source set {app}{slot_arg} --git URL` makes it follow one",
                config.describe()
            ),
        ));
    }
    let upload = scope.receive(&headers, body).await?;
    if upload.size() > MAX_PAYLOAD {
        let why = "a webhook payload is at most 25 MiB";
        return Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, why));
    }
    let raw = tokio::fs::read(upload.path()).await.map_err(|e| {
        let line = format!("cannot read a webhook payload: {e}");
        scope.internal(&line, "the payload could not be read")
    })?;
    drop(upload);
    // The signature covers the raw body, whatever its encoding.
    let secret = {
        let (cd, a, s) = (cd.clone(), app.clone(), slot.clone());
        blocking("webhook", move || cd.webhook_secret(&a, &s))
            .await?
            .map_err(|e| scope.source_error("webhook", &e))?
    };
    if let Some(secret) = &secret
        && let Err(why) = verify(&headers, secret, &raw)
    {
        let ip = scope.peer.ip();
        scope.log(&format!(
            "manage: webhook {app}/{slot} from {ip} refused: {why}"
        ));
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, why));
    }
    let header = |n: &str| headers.get(n)?.to_str().ok().map(str::to_string);
    let push = match push::parse(header, &payload(&headers, &raw)?) {
        Ok(p) => p,
        Err(NotPush::Event(what)) => {
            let v = json!({"status": "ignored", "app": app, "slot": slot});
            let message = format!("{what} ignored: only pushes deploy");
            return Ok(answer(StatusCode::OK, v, "ignored", None, message));
        }
        Err(NotPush::Invalid(why)) => return Err(ApiError::bad_request(why)),
    };
    let followed = config.branch.clone().unwrap_or_else(|| "main".into());
    let followed = branch_of(&followed).to_string();
    let base = json!({
        "app": app, "slot": slot, "provider": push.provider, "branch": followed,
    });
    // The repository: one of the payload's URLs must be the followed one.
    let want = normalize_url(&config.location);
    if !push.urls.is_empty() && !push.urls.iter().any(|u| normalize_url(u) == want) {
        let v = json!({"status": "refused", "app": app, "slot": slot, "provider": push.provider});
        let (now, other) = (config.describe(), normalize_url(&push.urls[0]));
        let message =
            format!("{app}/{slot} follows {now}; this push is to another repository ({other})");
        return Ok(answer(StatusCode::CONFLICT, v, "refused", None, message));
    }
    let hit = push.refs.iter().find(|(r, _, _)| branch_of(r) == followed);
    let Some((_, commit, deleted)) = hit else {
        let pushed: Vec<&str> = push.refs.iter().map(|(r, _, _)| branch_of(r)).collect();
        let what = match pushed.is_empty() {
            true => "nothing".to_string(),
            false => pushed.join(", "),
        };
        let message = format!("push to {what} ignored: {app}/{slot} follows branch {followed}");
        let extra = Some(("pushed", json!(pushed)));
        return Ok(answer(StatusCode::OK, base, "ignored", extra, message));
    };
    if *deleted {
        let message = format!(
            "branch {followed} was deleted: nothing to deploy; the active deployment stays"
        );
        return Ok(answer(StatusCode::OK, base, "ignored", None, message));
    }
    let mut v = base;
    v["commit"] = commit.clone().into();
    let commit = commit.clone().unwrap_or_else(|| "commit not given".into());
    let wait = matches!(scope.query("wait"), Some("true" | "1"))
        || matches!(scope.query("isAsync"), Some("false" | "0"));
    let handle = cd.notify(&app, &slot);
    scope.log(&format!(
        "manage: webhook {app}/{slot}: {} push of {followed} ({commit}): sync",
        push.provider
    ));
    if !wait {
        let (a, s) = (app.clone(), slot.clone());
        let log = scope.shared.log.clone();
        scope.shared.spawn_background(async move {
            if let Ok(Ok(Err(e))) = blocking("sync", move || handle.join()).await {
                log(&format!("manage: webhook sync of {a}/{s}: {e}"));
            }
        });
        let latest = format!("{}/api/deployments/latest", scope.base_url);
        let message = format!("push of {followed} ({commit}): sync of {app}/{slot} started");
        let extra = Some(("latest", latest.clone().into()));
        let resp = answer(StatusCode::ACCEPTED, v, "accepted", extra, message);
        return Ok(([(LOCATION, latest)], resp).into_response());
    }
    let Ok(Ok(outcome)) = blocking("sync", move || handle.join()).await else {
        let why = "the sync did not finish";
        return Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, why));
    };
    let (code, label, extra, message) = match outcome {
        Ok(SyncOutcome::Deployed { deployments }) => {
            let ids: Vec<String> = deployments.iter().map(|d| d.id.clone()).collect();
            let last = ids.last().cloned().unwrap_or_default();
            let message = format!("{app}/{slot}: deployed {last} from {followed}");
            (
                StatusCode::OK,
                "deployed",
                Some(("deployments", json!(ids))),
                message,
            )
        }
        Ok(SyncOutcome::UpToDate { source_id }) => {
            let message = format!("{app}/{slot}: {source_id} is deployed already");
            (StatusCode::OK, "up-to-date", None, message)
        }
        Ok(SyncOutcome::Coalesced) => {
            let message = format!("{app}/{slot}: a sync is running; it deploys the newest commit");
            (StatusCode::ACCEPTED, "coalesced", None, message)
        }
        Ok(other) => {
            let message = format!("{app}/{slot}: {other:?}");
            (StatusCode::OK, "not-deployed", None, message)
        }
        Err(Error::DeploymentFailed { id, reason, .. }) => {
            let extra = Some(("deployment", id.into()));
            (StatusCode::BAD_REQUEST, "failed", extra, reason)
        }
        Err(Error::Source { source: e, .. }) => {
            (StatusCode::BAD_GATEWAY, "failed", None, e.to_string())
        }
        Err(e) => return Err(scope.source_error("webhook", &e)),
    };
    Ok(answer(code, v, label, extra, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify() {
        // RFC 4231 test case 2 as a GitHub signature.
        let mut headers = HeaderMap::new();
        let sig = "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        headers.insert(
            "x-hub-signature-256",
            sig.parse().unwrap_or_else(|_| unreachable!()),
        );
        assert_eq!(
            verify(&headers, b"Jefe", b"what do ya want for nothing?"),
            Ok(())
        );
        assert!(verify(&headers, b"Jefe", b"something else").is_err());
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-gitlab-token",
            "s3cret".parse().unwrap_or_else(|_| unreachable!()),
        );
        assert_eq!(verify(&headers, b"s3cret", b""), Ok(()));
        assert!(verify(&headers, b"s3cre", b"").is_err());
    }
}
