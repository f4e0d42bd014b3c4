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

use super::{ApiError, Scope};
use crate::cd::{ContinuousDeployer, SourceConfig, SourceKind, SyncOutcome};
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

/// What a payload says was pushed.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Push {
    /// Which sender: `github`, `gitlab`, `bitbucket`, `azure-repos`, `generic`.
    pub provider: &'static str,
    /// The refs updated (`refs/heads/main`), with their new commit when
    /// known, and whether the ref was deleted.
    pub refs: Vec<(String, Option<String>, bool)>,
    /// The repository's URLs as the payload gives them.
    pub urls: Vec<String>,
}

/// Why a payload is not a push to act on.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum NotPush {
    /// Another kind of event (`ping`, `pull_request`, ...): answered 200.
    Event(String),
    /// Not a payload we can read: 400.
    Invalid(String),
}

fn strs(v: &Value, pointers: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for p in pointers {
        if let Some(s) = v.pointer(p).and_then(Value::as_str)
            && !s.is_empty()
            && !out.iter().any(|o| o == s)
        {
            out.push(s.to_string());
        }
    }
    out
}

fn sha(v: &Value, pointer: &str) -> Option<String> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty() && !s.bytes().all(|b| b == b'0'))
        .map(str::to_string)
}

/// Whether a commit field is all zeros (git's "deleted").
fn zero(v: &Value, pointer: &str) -> bool {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b == b'0'))
}

/// Reads a payload, by its headers first and its shape otherwise.
pub(super) fn parse(headers: &HeaderMap, body: &Value) -> Result<Push, NotPush> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    if let Some(event) = header("x-github-event") {
        if event != "push" {
            return Err(NotPush::Event(format!("GitHub event {event:?}")));
        }
        return github(body);
    }
    if let Some(event) = header("x-gitlab-event") {
        if event != "Push Hook" && body.get("object_kind").and_then(Value::as_str) != Some("push") {
            return Err(NotPush::Event(format!("GitLab event {event:?}")));
        }
        return gitlab(body);
    }
    if let Some(event) = header("x-event-key") {
        if event != "repo:push" {
            return Err(NotPush::Event(format!("Bitbucket event {event:?}")));
        }
        return bitbucket(body);
    }
    if let Some(event) = body.get("eventType").and_then(Value::as_str) {
        if event != "git.push" {
            return Err(NotPush::Event(format!("Azure Repos event {event:?}")));
        }
        return azure(body);
    }
    if body.get("object_kind").is_some() {
        return gitlab(body);
    }
    if body.pointer("/push/changes").is_some() {
        return bitbucket(body);
    }
    if body.get("after").is_some() && body.pointer("/repository/clone_url").is_some() {
        return github(body);
    }
    generic(body)
}

fn need_ref(body: &Value, provider: &str) -> Result<String, NotPush> {
    body.get("ref")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| NotPush::Invalid(format!("a {provider} push payload without \"ref\"")))
}

fn github(body: &Value) -> Result<Push, NotPush> {
    let r = need_ref(body, "GitHub")?;
    let deleted = body.get("deleted").and_then(Value::as_bool) == Some(true);
    Ok(Push {
        provider: "github",
        refs: vec![(r, sha(body, "/after"), deleted || zero(body, "/after"))],
        urls: strs(
            body,
            &[
                "/repository/clone_url",
                "/repository/url",
                "/repository/git_url",
                "/repository/ssh_url",
                "/repository/html_url",
            ],
        ),
    })
}

fn gitlab(body: &Value) -> Result<Push, NotPush> {
    let r = need_ref(body, "GitLab")?;
    let commit = sha(body, "/checkout_sha").or_else(|| sha(body, "/after"));
    Ok(Push {
        provider: "gitlab",
        refs: vec![(r, commit, zero(body, "/after"))],
        urls: strs(
            body,
            &[
                "/repository/git_http_url",
                "/project/git_http_url",
                "/repository/git_ssh_url",
                "/project/git_ssh_url",
                "/repository/homepage",
                "/project/web_url",
            ],
        ),
    })
}

fn bitbucket(body: &Value) -> Result<Push, NotPush> {
    let changes = body
        .pointer("/push/changes")
        .and_then(Value::as_array)
        .ok_or_else(|| NotPush::Invalid("a Bitbucket push without push.changes".into()))?;
    let mut refs = Vec::new();
    for c in changes {
        // `new` is null for a deleted branch: the old name then.
        let (side, alive) = match c.get("new").filter(|v| !v.is_null()) {
            Some(n) => (n, true),
            None => match c.get("old").filter(|v| !v.is_null()) {
                Some(o) => (o, false),
                None => continue,
            },
        };
        let Some(name) = side.get("name").and_then(Value::as_str) else {
            continue;
        };
        let full = match side.get("type").and_then(Value::as_str) {
            Some("tag") | Some("annotated_tag") => format!("refs/tags/{name}"),
            _ => format!("refs/heads/{name}"),
        };
        refs.push((full, sha(side, "/target/hash").filter(|_| alive), !alive));
    }
    let mut urls = strs(body, &["/repository/links/html/href"]);
    if let Some(full) = body
        .pointer("/repository/full_name")
        .and_then(Value::as_str)
    {
        urls.push(format!("https://bitbucket.org/{full}"));
    }
    Ok(Push {
        provider: "bitbucket",
        refs,
        urls,
    })
}

fn azure(body: &Value) -> Result<Push, NotPush> {
    let updates = body
        .pointer("/resource/refUpdates")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            NotPush::Invalid("an Azure Repos push without resource.refUpdates".into())
        })?;
    let refs = updates
        .iter()
        .filter_map(|u| {
            let name = u.get("name").and_then(Value::as_str)?;
            Some((
                name.to_string(),
                sha(u, "/newObjectId"),
                zero(u, "/newObjectId"),
            ))
        })
        .collect();
    Ok(Push {
        provider: "azure-repos",
        refs,
        urls: strs(
            body,
            &["/resource/repository/remoteUrl", "/resource/repository/url"],
        ),
    })
}

fn generic(body: &Value) -> Result<Push, NotPush> {
    let r = body.get("ref").and_then(Value::as_str).ok_or_else(|| {
        NotPush::Invalid(
            "not a push payload this endpoint knows (GitHub, GitLab, Bitbucket, Azure Repos, or {\"repository\":{\"url\":...},\"ref\":\"refs/heads/BRANCH\"})"
                .into(),
        )
    })?;
    Ok(Push {
        provider: "generic",
        refs: vec![(
            r.to_string(),
            sha(body, "/after").or_else(|| sha(body, "/commit")),
            zero(body, "/after"),
        )],
        urls: strs(body, &["/repository/url", "/repository/clone_url"]),
    })
}

/// A repository URL reduced for comparison: no scheme, no user, the host
/// in lower case, no trailing `/` nor `.git`; `git@host:path` as
/// `host/path`; `file:///p` and `/p` alike.
pub(super) fn normalize_url(url: &str) -> String {
    let url = url.trim();
    let (rest, had_scheme) = match url.find("://") {
        Some(i) => (&url[i + 3..], true),
        None => (url, false),
    };
    let mut s = if had_scheme || rest.starts_with('/') {
        // authority/path (file:///p: empty authority).
        let (auth, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let host = auth.rsplit('@').next().unwrap_or(auth).to_ascii_lowercase();
        // Default ports say nothing.
        let host = host
            .strip_suffix(":443")
            .or_else(|| host.strip_suffix(":80"))
            .unwrap_or(&host)
            .to_string();
        format!("{host}{path}")
    } else if let Some((auth, path)) = rest.split_once(':') {
        // scp-like: git@github.com:org/repo.git
        let host = auth.rsplit('@').next().unwrap_or(auth).to_ascii_lowercase();
        format!("{host}/{}", path.trim_start_matches('/'))
    } else {
        rest.to_string()
    };
    loop {
        let before = s.len();
        while s.ends_with('/') {
            s.pop();
        }
        if let Some(t) = s.strip_suffix(".git") {
            s = t.to_string();
        }
        if s.len() == before {
            break;
        }
    }
    s
}

/// A branch name from a ref (`refs/heads/main` → `main`).
fn branch_of(r: &str) -> &str {
    r.strip_prefix("refs/heads/").unwrap_or(r)
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

fn answer(status: StatusCode, mut v: Value, message: String) -> Result<Response, ApiError> {
    v["message"] = Value::String(message);
    Ok(super::json(status, &v))
}

/// Runs `f` off the async threads; 500 when it panics.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error"))
}

fn cd_error(scope: &Scope, e: &Error) -> ApiError {
    scope.log(&format!(
        "manage: webhook {}/{}: {e}",
        scope.app, scope.slot
    ));
    let why = "the slot's continuous deployment could not be read (see the server log)";
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, why)
}

async fn webhook(
    cd: ContinuousDeployer,
    scope: Scope,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (app, slot) = (scope.app.clone(), scope.slot.clone());
    let slot_arg = scope.slot_arg();
    let config: SourceConfig = {
        let (cd, a, s) = (cd.clone(), app.clone(), slot.clone());
        match blocking(move || cd.config(&a, &s)).await? {
            Ok(Some(c)) => c,
            Ok(None) => {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    format!(
                        "{app}/{slot} has no continuous deployment: a webhook syncs a slot that follows a git repository; configure it with `fnhost source set {app}{slot_arg} --git URL --branch BRANCH`"
                    ),
                ));
            }
            Err(e) => return Err(cd_error(&scope, &e)),
        }
    };
    if config.kind != SourceKind::Git {
        let hint = if config.kind == SourceKind::LocalGit {
            format!(
                "; push to its built-in repository, {}/{app}.git",
                scope.base_url
            )
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
        scope.log(&format!("manage: cannot read a webhook payload: {e}"));
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the payload could not be read",
        )
    })?;
    drop(upload);
    // The signature covers the raw body, whatever its encoding.
    let secret = {
        let (cd, a, s) = (cd.clone(), app.clone(), slot.clone());
        blocking(move || cd.webhook_secret(&a, &s))
            .await?
            .map_err(|e| cd_error(&scope, &e))?
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
    // GitHub's "application/x-www-form-urlencoded" content type: payload=JSON.
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
        match form_urlencoded::parse(&raw).find(|(k, _)| k == "payload") {
            Some((_, p)) => serde_json::from_str(&p).map_err(|e| e.to_string()),
            None => Err("a form without a payload field".into()),
        }
    } else {
        serde_json::from_slice(&raw).map_err(|e| e.to_string())
    };
    let body = parsed.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("the payload is not JSON: {e}"),
        )
    })?;
    let push = match parse(&headers, &body) {
        Ok(p) => p,
        Err(NotPush::Event(what)) => {
            return answer(
                StatusCode::OK,
                json!({"status": "ignored", "app": app, "slot": slot}),
                format!("{what} ignored: only pushes deploy"),
            );
        }
        Err(NotPush::Invalid(why)) => return Err(ApiError::new(StatusCode::BAD_REQUEST, why)),
    };
    let followed = config.branch.clone().unwrap_or_else(|| "main".into());
    let followed = branch_of(&followed).to_string();
    let base = json!({
        "app": app, "slot": slot, "provider": push.provider, "branch": followed,
    });
    // The repository: one of the payload's URLs must be the followed one.
    let want = normalize_url(&config.location);
    if !push.urls.is_empty() && !push.urls.iter().any(|u| normalize_url(u) == want) {
        return answer(
            StatusCode::CONFLICT,
            json!({"status": "refused", "app": app, "slot": slot, "provider": push.provider}),
            format!(
                "{app}/{slot} follows {}; this push is to another repository ({})",
                config.describe(),
                normalize_url(&push.urls[0])
            ),
        );
    }
    let hit = push.refs.iter().find(|(r, _, _)| branch_of(r) == followed);
    let Some((_, commit, deleted)) = hit else {
        let pushed: Vec<&str> = push.refs.iter().map(|(r, _, _)| branch_of(r)).collect();
        let mut v = base;
        v["status"] = "ignored".into();
        v["pushed"] = json!(pushed);
        return answer(
            StatusCode::OK,
            v,
            format!(
                "push to {} ignored: {app}/{slot} follows branch {followed}",
                if pushed.is_empty() {
                    "nothing".to_string()
                } else {
                    pushed.join(", ")
                }
            ),
        );
    };
    if *deleted {
        let mut v = base;
        v["status"] = "ignored".into();
        return answer(
            StatusCode::OK,
            v,
            format!(
                "branch {followed} was deleted: nothing to deploy; the active deployment stays"
            ),
        );
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
            let outcome = blocking(move || handle.join()).await;
            if let Ok(Ok(Err(e))) = outcome {
                log(&format!("manage: webhook sync of {a}/{s}: {e}"));
            }
        });
        let latest = format!("{}/api/deployments/latest", scope.base_url);
        v["status"] = "accepted".into();
        v["latest"] = latest.clone().into();
        let message = format!("push of {followed} ({commit}): sync of {app}/{slot} started");
        return Ok((
            [(LOCATION, latest)],
            answer(StatusCode::ACCEPTED, v, message),
        )
            .into_response());
    }
    let Ok(Ok(outcome)) = blocking(move || handle.join()).await else {
        let why = "the sync did not finish";
        return Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, why));
    };
    match outcome {
        Ok(SyncOutcome::Deployed { deployments }) => {
            v["status"] = "deployed".into();
            v["deployments"] = json!(deployments.iter().map(|d| d.id.clone()).collect::<Vec<_>>());
            let last = deployments.last().map(|d| d.id.clone()).unwrap_or_default();
            answer(
                StatusCode::OK,
                v,
                format!("{app}/{slot}: deployed {last} from {followed}"),
            )
        }
        Ok(SyncOutcome::UpToDate { source_id }) => {
            v["status"] = "up-to-date".into();
            answer(
                StatusCode::OK,
                v,
                format!("{app}/{slot}: {source_id} is deployed already"),
            )
        }
        Ok(SyncOutcome::Coalesced) => {
            v["status"] = "coalesced".into();
            answer(
                StatusCode::ACCEPTED,
                v,
                format!("{app}/{slot}: a sync is running; it deploys the newest commit"),
            )
        }
        Ok(other) => {
            v["status"] = "not-deployed".into();
            answer(StatusCode::OK, v, format!("{app}/{slot}: {other:?}"))
        }
        Err(Error::DeploymentFailed { id, reason, .. }) => {
            v["status"] = "failed".into();
            v["deployment"] = id.into();
            answer(StatusCode::BAD_REQUEST, v, reason)
        }
        Err(Error::Source { source: e, .. }) => {
            v["status"] = "failed".into();
            answer(StatusCode::BAD_GATEWAY, v, e.to_string())
        }
        Err(e) => Err(cd_error(&scope, &e)),
    }
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

    #[test]
    fn urls_normalise() {
        let n = normalize_url;
        assert_eq!(n("HTTPS://GitHub.com/Org/Repo.git/"), "github.com/Org/Repo");
        assert_eq!(n("https://github.com/Org/Repo"), "github.com/Org/Repo");
        assert_eq!(n("git@github.com:Org/Repo.git"), "github.com/Org/Repo");
        assert_eq!(
            n("https://u:p@github.com:443/Org/Repo"),
            "github.com/Org/Repo"
        );
        assert_eq!(n("file:///srv/repo.git"), "/srv/repo");
        assert_eq!(n("/srv/repo.git/"), "/srv/repo");
        assert_ne!(
            n("https://github.com/Org/Other"),
            n("https://github.com/Org/Repo")
        );
    }
}
