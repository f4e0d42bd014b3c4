//! Server-side sessions: a random id in a cookie, what it grants kept here.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use axum::http::header::COOKIE;

use super::Portal;

/// What a session may reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Grant {
    /// A portal account: every app; `stamp` is the account's when signed
    /// in ([`crate::Site::portal_user_stamp`]).
    Admin { stamp: String },
    /// An app's deployment credentials: that app only; `stamp` is its
    /// credentials' version when signed in.
    App { app: String, stamp: String },
}

/// A signed-in person.
#[derive(Debug, Clone)]
pub(super) struct Session {
    pub(super) user: String,
    pub(super) grant: Grant,
    /// A message for the next page (after a redirect).
    pub(super) flash: Option<String>,
    created: Instant,
    last: Instant,
}

impl Session {
    pub(super) fn new(user: String, grant: Grant) -> Session {
        let now = Instant::now();
        Session {
            user,
            grant,
            flash: None,
            created: now,
            last: now,
        }
    }

    /// Whether the session may see `app`.
    pub(super) fn may(&self, app: &str) -> bool {
        match &self.grant {
            Grant::Admin { .. } => true,
            Grant::App { app: a, .. } => a == app,
        }
    }

    pub(super) fn is_admin(&self) -> bool {
        matches!(self.grant, Grant::Admin { .. })
    }
}

/// The sessions, by the sha256 of their id (an id is never stored).
#[derive(Debug)]
pub(super) struct Sessions {
    map: Mutex<HashMap<[u8; 32], Session>>,
    idle: Duration,
    max_age: Duration,
    max: usize,
}

/// The cookie's name over plain HTTP, and under TLS (where the `__Host-`
/// prefix makes the browser insist on `Secure`, `Path=/` and no domain).
const COOKIE_NAME: &str = "fnhost_portal";
const COOKIE_NAME_TLS: &str = "__Host-fnhost_portal";

fn digest(id: &str) -> [u8; 32] {
    let mut h = crate::store::Hasher::new();
    h.update(id.as_bytes());
    *h.finish().as_bytes()
}

impl Sessions {
    pub(super) fn new(config: &Portal) -> Sessions {
        Sessions {
            map: Mutex::new(HashMap::new()),
            idle: config.session_idle,
            max_age: config.session_max,
            max: config.max_sessions.max(1),
        }
    }

    /// Starts a session: its id, for the cookie.
    pub(super) fn start(&self, session: Session) -> Result<String, getrandom::Error> {
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw)?;
        let id = hex::encode(raw);
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= self.max {
            map.retain(|_, s| s.last.elapsed() < self.idle && s.created.elapsed() < self.max_age);
            while map.len() >= self.max {
                let oldest = map.iter().min_by_key(|(_, s)| s.last).map(|(k, _)| *k);
                let Some(oldest) = oldest else { break };
                map.remove(&oldest);
            }
        }
        map.insert(digest(&id), session);
        Ok(id)
    }

    /// The live session of the request's cookie (touched), or `None`.
    pub(super) fn get(&self, headers: &HeaderMap, tls: bool) -> Option<(String, Session)> {
        let id = cookie(headers, cookie_name(tls))?;
        let key = digest(&id);
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let s = map.get_mut(&key)?;
        if s.last.elapsed() >= self.idle || s.created.elapsed() >= self.max_age {
            map.remove(&key);
            return None;
        }
        s.last = Instant::now();
        Some((id, s.clone()))
    }

    /// Changes a session (a flash message) in place.
    pub(super) fn update(&self, id: &str, f: impl FnOnce(&mut Session)) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = map.get_mut(&digest(id)) {
            f(s);
        }
    }

    /// Ends a session.
    pub(super) fn end(&self, id: &str) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(&digest(id));
    }
}

pub(super) fn cookie_name(tls: bool) -> &'static str {
    if tls { COOKIE_NAME_TLS } else { COOKIE_NAME }
}

/// The `Set-Cookie` value that carries a session id.
pub(super) fn set_cookie(id: &str, tls: bool) -> String {
    let secure = if tls { "; Secure" } else { "" };
    format!(
        "{}={id}; Path=/; HttpOnly; SameSite=Strict{secure}",
        cookie_name(tls)
    )
}

/// The `Set-Cookie` value that removes the session cookie.
pub(super) fn clear_cookie(tls: bool) -> String {
    let secure = if tls { "; Secure" } else { "" };
    format!(
        "{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}",
        cookie_name(tls)
    )
}

/// A cookie's value from the request's `Cookie` headers.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_and_end() {
        let config = Portal::default()
            .with_session_lifetime(Duration::from_millis(50), Duration::from_secs(60));
        let sessions = Sessions::new(&config);
        let id = sessions
            .start(Session::new(
                "ann".into(),
                Grant::Admin { stamp: "1".into() },
            ))
            .unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, format!("a=b; fnhost_portal={id}").parse().unwrap());
        assert_eq!(sessions.get(&headers, false).unwrap().1.user, "ann");
        // Under TLS the cookie has another name: this one is not it.
        assert!(sessions.get(&headers, true).is_none());
        std::thread::sleep(Duration::from_millis(80));
        assert!(sessions.get(&headers, false).is_none(), "idle too long");
        let id = sessions
            .start(Session::new(
                "ann".into(),
                Grant::Admin { stamp: "1".into() },
            ))
            .unwrap();
        headers.insert(COOKIE, format!("fnhost_portal={id}").parse().unwrap());
        sessions.end(&id);
        assert!(sessions.get(&headers, false).is_none(), "ended");
    }
}
