//! HTTP basic authentication with an app's deployment credentials, and the
//! throttling of failed attempts per client address.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::rejection::RawPathParamsRejection;
use axum::extract::{RawPathParams, Request, State};
use axum::http::header::{AUTHORIZATION, HOST, RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;

use super::{ApiError, Scope, Shared, User, text};
use crate::error::Error;
use crate::site::{PRODUCTION, check_name};

/// Failures per client address, and successful checks remembered.
#[derive(Debug, Default)]
pub(super) struct Throttle {
    clients: Mutex<HashMap<IpAddr, Failures>>,
    /// sha256(app, user, password) -> (credentials version, when checked).
    /// argon2 costs tens of milliseconds a check (seconds unoptimised);
    /// a client polling a deployment would pay it every second. An entry
    /// holds while the app's credentials file is unchanged, for
    /// [`CACHE_TTL`] at most.
    good: Mutex<HashMap<[u8; 32], (String, Instant)>>,
}

/// How long a successful check is remembered.
const CACHE_TTL: Duration = Duration::from_secs(300);

fn cache_key(app: &str, user: &str, password: &str) -> [u8; 32] {
    let mut h = crate::store::Hasher::new();
    for part in [app, user, password] {
        h.update(part.as_bytes());
        h.update(&[0]);
    }
    *h.finish().as_bytes()
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
    locked_until: Option<Instant>,
}

impl Throttle {
    /// How long the client is still locked out, if it is.
    pub(super) fn locked(&self, ip: IpAddr) -> Option<Duration> {
        let map = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        let until = map.get(&ip)?.locked_until?;
        until.checked_duration_since(Instant::now())
    }

    pub(super) fn failed(&self, ip: IpAddr, free: u32, first: Duration, max: Duration) {
        let now = Instant::now();
        let mut map = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > 10_000 {
            // Forget clients quiet for an hour.
            map.retain(|_, f| now.duration_since(f.last) < Duration::from_secs(3600));
        }
        let f = map.entry(ip).or_insert(Failures {
            count: 0,
            last: now,
            locked_until: None,
        });
        // A client quiet for as long as the longest lockout starts afresh.
        if now.duration_since(f.last) > max.max(Duration::from_secs(60)) {
            f.count = 0;
        }
        f.count += 1;
        f.last = now;
        if f.count > free {
            let doublings = (f.count - free - 1).min(20);
            let lock = first.saturating_mul(1u32 << doublings).min(max);
            f.locked_until = Some(now + lock);
        }
    }

    pub(super) fn succeeded(&self, ip: IpAddr) {
        let mut map = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(&ip);
    }
}

fn unauthorized(message: &str) -> ApiError {
    let challenge = [(
        WWW_AUTHENTICATE,
        "Basic realm=\"fnhost\", charset=\"UTF-8\"",
    )];
    ApiError::response((challenge, text(StatusCode::UNAUTHORIZED, message)))
}

/// The user and password of a `Basic` Authorization header.
fn basic(value: &str) -> Option<(String, String)> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, pass) = text.split_once(':')?;
    Some((user.to_string(), pass.to_string()))
}

/// The authentication layer: checks the app and slot names of the path
/// (404 otherwise, before anything else), then the credentials, and puts a
/// [`Scope`] on the request.
pub(super) async fn layer(
    State(shared): State<Arc<Shared>>,
    params: Result<RawPathParams, RawPathParamsRejection>,
    mut req: Request,
    next: Next,
) -> Response {
    let Ok(params) = params else {
        return text(StatusCode::BAD_REQUEST, "the path is not valid");
    };
    let param = |name| params.iter().find(|(k, _)| *k == name).map(|(_, v)| v);
    let (app, slot) = (param("app").unwrap_or(""), param("slot"));
    if check_name("app", app).is_err() || slot.is_some_and(|s| check_name("slot", s).is_err()) {
        return text(StatusCode::NOT_FOUND, super::NOT_MANAGEMENT);
    }
    let peer = req.extensions().get::<SocketAddr>().copied();
    let peer = peer.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
    let user = match authenticate(&shared, req.headers(), app, peer).await {
        Ok(user) => user,
        Err(e) => return e.into_response(),
    };
    let base = match slot {
        Some(slot) => format!("/apps/{app}/slots/{slot}"),
        None => format!("/apps/{app}"),
    };
    let query = req.uri().query().unwrap_or("").as_bytes();
    let scope = Scope {
        app: app.to_string(),
        slot: slot.unwrap_or(PRODUCTION).to_string(),
        base_url: base_url(req.headers(), shared.tls, &base),
        base,
        user: user.clone(),
        peer,
        query: form_urlencoded::parse(query).into_owned().collect(),
        shared: shared.clone(),
    };
    req.extensions_mut().insert(scope);
    let mut resp = next.run(req).await;
    resp.extensions_mut().insert(User(user));
    resp
}

fn base_url(headers: &HeaderMap, tls: bool, base: &str) -> String {
    let scheme = if tls { "https" } else { "http" };
    let host = headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b))
        })
        .unwrap_or("localhost");
    format!("{scheme}://{host}{base}")
}

/// Checks the request's credentials for `app`: the user name, or why not
/// (401, 429, 500).
async fn authenticate(
    shared: &Shared,
    headers: &HeaderMap,
    app: &str,
    peer: SocketAddr,
) -> Result<String, ApiError> {
    let ip = peer.ip();
    if let Some(locked) = lockout(shared, ip) {
        return Err(locked);
    }
    let Some(header) = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return Err(unauthorized(
            "authentication needed: HTTP basic auth with the app's deployment credentials",
        ));
    };
    let Some((user, password)) = basic(header) else {
        failed(shared, ip, app, "not basic credentials");
        return Err(unauthorized("wrong deployment credentials for this app"));
    };
    if check_app_credentials(shared, app, &user, &password, ip).await? {
        Ok(user)
    } else {
        Err(unauthorized("wrong deployment credentials for this app"))
    }
}

/// 429 with `Retry-After` while the client at `ip` is locked out after
/// failed authentications.
pub(super) fn lockout(shared: &Shared, ip: IpAddr) -> Option<ApiError> {
    let wait = shared.throttle.locked(ip)?;
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let why = "too many failed authentications from this address: try again later";
    let resp = text(StatusCode::TOO_MANY_REQUESTS, why);
    let retry = [(RETRY_AFTER, secs.max(1).to_string())];
    Some(ApiError::response((retry, resp)))
}

/// Counts a failed authentication from `ip` (to `what`: an app, the
/// portal) towards its lockout, and logs it (never the password).
pub(super) fn failed(shared: &Shared, ip: IpAddr, what: &str, why: &str) {
    let limits = &shared.limits;
    shared.throttle.failed(
        ip,
        limits.auth_free_failures,
        limits.auth_lockout,
        limits.auth_max_lockout,
    );
    (shared.log)(&format!(
        "manage: failed authentication for {what} from {ip}: {why}"
    ));
}

/// A successful authentication from `ip`: its failures are forgotten.
pub(super) fn succeeded(shared: &Shared, ip: IpAddr) {
    shared.throttle.succeeded(ip);
}

/// Whether `user` and `password` are `app`'s deployment credentials
/// (remembered a while once good); a failure counts towards the lockout
/// of `ip`. An error only when they cannot be checked.
pub(super) async fn check_app_credentials(
    shared: &Shared,
    app: &str,
    user: &str,
    password: &str,
    ip: IpAddr,
) -> Result<bool, ApiError> {
    let what = format!("app {app}");
    let key = cache_key(app, user, password);
    let version = shared.site.credentials_version(app).ok().flatten();
    if let Some(v) = &version {
        let good = shared
            .throttle
            .good
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some((known, when)) = good.get(&key)
            && known == v
            && when.elapsed() < CACHE_TTL
        {
            return Ok(true);
        }
    }
    let site = shared.site.clone();
    let (app_c, user_c, password) = (app.to_string(), user.to_string(), password.to_string());
    // argon2 takes tens of milliseconds: off the async threads.
    let checked =
        tokio::task::spawn_blocking(move || site.check_credentials(&app_c, &user_c, &password))
            .await;
    let why = match checked {
        Ok(Ok(true)) => {
            shared.throttle.succeeded(ip);
            if let Some(v) = version {
                let mut good = shared
                    .throttle
                    .good
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                if good.len() >= 1000 {
                    good.retain(|_, (_, when)| when.elapsed() < CACHE_TTL);
                    if good.len() >= 1000 {
                        good.clear();
                    }
                }
                good.insert(key, (v, Instant::now()));
            }
            return Ok(true);
        }
        Ok(Ok(false)) => "wrong user or password",
        Ok(Err(Error::AppNotFound { .. })) => "no such app",
        Ok(Err(Error::InvalidName { .. })) => "invalid app name",
        Ok(Err(Error::Credentials { .. })) => "the app has no deployment credentials",
        Ok(Err(e)) => {
            (shared.log)(&format!(
                "manage: cannot check credentials of app {app}: {e}"
            ));
            let why = "the credentials could not be checked (see the server log)";
            return Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, why));
        }
        Err(_) => {
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the credentials could not be checked",
            ));
        }
    };
    failed(shared, ip, &what, why);
    Ok(false)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn basic_header() {
        assert_eq!(
            basic("Basic dXNlcjpwYTpzcw=="),
            Some(("user".into(), "pa:ss".into()))
        );
        assert_eq!(basic("Bearer x"), None);
        assert_eq!(basic("Basic !!"), None);
    }

    #[test]
    fn lockouts_double() {
        let t = Throttle::default();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let (first, max) = (Duration::from_secs(1), Duration::from_secs(4));
        for _ in 0..3 {
            t.failed(ip, 3, first, max);
        }
        assert!(t.locked(ip).is_none());
        t.failed(ip, 3, first, max);
        assert!(t.locked(ip).unwrap() <= first);
        t.failed(ip, 3, first, max);
        assert!(t.locked(ip).unwrap() > first);
        for _ in 0..10 {
            t.failed(ip, 3, first, max);
        }
        assert!(t.locked(ip).unwrap() <= max);
        t.succeeded(ip);
        assert!(t.locked(ip).is_none());
    }
}
