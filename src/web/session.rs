//! In-memory sessions and CSRF tokens.
//!
//! A session id is 32 random bytes, sent to the browser once in a cookie and kept here only
//! as its SHA-256, so the map never holds a usable cookie. The session holds the member's
//! unwrapped `data_key`; dropping the session (logout, idle or absolute expiry, account
//! deletion, shutdown) zeroizes it. A restart logs everyone out, by design.
//!
//! Ending a session also fires its [`Session::ended`] signal, so that long-lived work on
//! its behalf (live chat streams) stops at once instead of keeping its keys alive.
//!
//! CSRF tokens are `HMAC(process key, binding)`, where the binding is the session id for
//! members and a random pre-session cookie for the login and registration forms. Nothing
//! is stored per anonymous visitor.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use parking_lot::Mutex;
use tokio::sync::watch;

use crate::clock::UnixTime;
use crate::crypto::{
    SecretKey, b64url, b64url_decode_exact, ct_eq, hmac_sha256, random_bytes, sha256,
};
use crate::store::Id;

/// A logged-in member's session.
pub struct Session {
    pub user_id: Id,
    /// Normalised username, for display.
    pub username: String,
    /// The member's data key, unwrapped at login.
    pub data_key: SecretKey,
    /// Hash of the session id (the map key).
    id_hash: [u8; 32],
    /// CSRF token for this session's forms.
    csrf: String,
    created: UnixTime,
    last_seen: AtomicI64,
    /// Turns true when the session ends (logout, expiry, deletion, shutdown).
    ended: watch::Sender<bool>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").finish_non_exhaustive()
    }
}

impl Session {
    /// The CSRF token to put in this session's forms.
    pub fn csrf(&self) -> &str {
        &self.csrf
    }

    /// Whether `token` is this session's CSRF token (constant time).
    pub fn csrf_ok(&self, token: &str) -> bool {
        ct_eq(token.as_bytes(), self.csrf.as_bytes())
    }

    /// A signal that turns true when this session ends.
    pub fn ended(&self) -> watch::Receiver<bool> {
        self.ended.subscribe()
    }

    fn end(&self) {
        self.ended.send_replace(true);
    }
}

/// Every live session.
pub struct Sessions {
    map: Mutex<HashMap<[u8; 32], Arc<Session>>>,
    csrf_key: SecretKey,
    idle_secs: i64,
    lifetime_secs: i64,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("live", &self.map.lock().len())
            .finish()
    }
}

const BIND_SESSION: &[u8] = b"session";
const BIND_ANON: &[u8] = b"anonymous";

impl Sessions {
    pub fn new(idle_secs: u64, lifetime_secs: u64) -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
            csrf_key: SecretKey::generate(),
            idle_secs: i64::try_from(idle_secs).unwrap_or(i64::MAX),
            lifetime_secs: i64::try_from(lifetime_secs).unwrap_or(i64::MAX),
        }
    }

    /// Start a session; returns the cookie value (shown to the browser, never kept).
    pub fn create(
        &self,
        user_id: Id,
        username: String,
        data_key: SecretKey,
        now: UnixTime,
    ) -> (String, Arc<Session>) {
        let raw = random_bytes::<32>();
        let id_hash = sha256(&raw);
        let csrf = b64url(&hmac_sha256(self.csrf_key.expose(), &[BIND_SESSION, &raw]));
        let session = Arc::new(Session {
            user_id,
            username,
            data_key,
            id_hash,
            csrf,
            created: now,
            last_seen: AtomicI64::new(now),
            ended: watch::Sender::new(false),
        });
        self.map.lock().insert(id_hash, Arc::clone(&session));
        (b64url(&raw), session)
    }

    /// The live session for a cookie value, refreshing its idle timer. An expired session
    /// is removed and not returned.
    pub fn get(&self, cookie: &str, now: UnixTime) -> Option<Arc<Session>> {
        self.lookup(cookie, now, true)
    }

    /// The live session for a cookie value, without refreshing its idle timer: for
    /// requests a page makes by itself (the live chat stream), which must not keep an
    /// unattended session alive.
    pub fn peek(&self, cookie: &str, now: UnixTime) -> Option<Arc<Session>> {
        self.lookup(cookie, now, false)
    }

    fn lookup(&self, cookie: &str, now: UnixTime, touch: bool) -> Option<Arc<Session>> {
        let raw = b64url_decode_exact::<32>(cookie)?;
        let id_hash = sha256(&raw);
        let mut map = self.map.lock();
        let session = map.get(&id_hash)?;
        if self.expired(session, now) {
            if let Some(s) = map.remove(&id_hash) {
                s.end();
            }
            return None;
        }
        if touch {
            session.last_seen.store(now, Ordering::Relaxed);
        }
        Some(Arc::clone(session))
    }

    /// Whether `session` is still live at `now`; an expired one is ended here.
    pub fn still_live(&self, session: &Session, now: UnixTime) -> bool {
        let mut map = self.map.lock();
        if !map.contains_key(&session.id_hash) {
            return false;
        }
        if self.expired(session, now) {
            if let Some(s) = map.remove(&session.id_hash) {
                s.end();
            }
            return false;
        }
        true
    }

    fn expired(&self, s: &Session, now: UnixTime) -> bool {
        now.saturating_sub(s.last_seen.load(Ordering::Relaxed)) >= self.idle_secs
            || now.saturating_sub(s.created) >= self.lifetime_secs
    }

    /// End one session (logout).
    pub fn remove(&self, session: &Session) {
        self.map.lock().remove(&session.id_hash);
        session.end();
    }

    /// End every session of a member (account deleted).
    pub fn remove_user(&self, user_id: &Id) {
        self.map.lock().retain(|_, s| {
            let keep = &s.user_id != user_id;
            if !keep {
                s.end();
            }
            keep
        });
    }

    /// End every session of a member but `keep` (a password change: whoever else was
    /// logged in is logged out).
    pub fn remove_user_except(&self, user_id: &Id, keep: &Session) {
        self.map.lock().retain(|_, s| {
            let other = &s.user_id == user_id && s.id_hash != keep.id_hash;
            if other {
                s.end();
            }
            !other
        });
    }

    /// Remove expired sessions; returns the members whose sessions ended.
    pub fn reap(&self, now: UnixTime) -> Vec<Id> {
        let mut ended = Vec::new();
        self.map.lock().retain(|_, s| {
            let keep = !self.expired(s, now);
            if !keep {
                ended.push(s.user_id);
                s.end();
            }
            keep
        });
        ended
    }

    /// Whether a member has any live session.
    pub fn has_user(&self, user_id: &Id, now: UnixTime) -> bool {
        self.map
            .lock()
            .values()
            .any(|s| &s.user_id == user_id && !self.expired(s, now))
    }

    /// Number of live sessions.
    pub fn len(&self) -> usize {
        self.map.lock().len()
    }

    /// Whether there is no live session.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// End every session (shutdown), zeroizing every data key.
    pub fn clear(&self) {
        let mut map = self.map.lock();
        for s in map.values() {
            s.end();
        }
        map.clear();
    }

    /// A new pre-session value for anonymous forms (login, registration).
    pub fn new_anonymous() -> String {
        b64url(&random_bytes::<32>())
    }

    /// The CSRF token bound to an anonymous pre-session cookie, if the cookie is well formed.
    pub fn anonymous_csrf(&self, pre_session: &str) -> Option<String> {
        let raw = b64url_decode_exact::<32>(pre_session)?;
        Some(b64url(&hmac_sha256(
            self.csrf_key.expose(),
            &[BIND_ANON, &raw],
        )))
    }

    /// Whether `token` is the CSRF token for the anonymous `pre_session` cookie.
    pub fn anonymous_csrf_ok(&self, pre_session: &str, token: &str) -> bool {
        self.anonymous_csrf(pre_session)
            .is_some_and(|expected| ct_eq(expected.as_bytes(), token.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_and_absolute_expiry() {
        let s = Sessions::new(900, 3600);
        let (cookie, _) = s.create([1; 16], "a".into(), SecretKey::generate(), 1000);
        assert!(s.get(&cookie, 1000 + 899).is_some(), "refreshes idle timer");
        assert!(s.get(&cookie, 1000 + 899 + 899).is_some());
        assert!(s.get(&cookie, 1000 + 3600).is_none(), "absolute lifetime");
        assert!(s.is_empty());

        let (cookie, _) = s.create([1; 16], "a".into(), SecretKey::generate(), 0);
        assert!(s.get(&cookie, 900).is_none(), "idle timeout");
    }

    #[test]
    fn csrf_tokens_are_bound() {
        let s = Sessions::new(900, 3600);
        let (_, a) = s.create([1; 16], "a".into(), SecretKey::generate(), 0);
        let (_, b) = s.create([1; 16], "a".into(), SecretKey::generate(), 0);
        assert!(a.csrf_ok(a.csrf()));
        assert!(!a.csrf_ok(b.csrf()));
        let pre = Sessions::new_anonymous();
        let t = s.anonymous_csrf(&pre).unwrap();
        assert!(s.anonymous_csrf_ok(&pre, &t));
        assert!(!s.anonymous_csrf_ok(&Sessions::new_anonymous(), &t));
        assert!(!s.anonymous_csrf_ok("garbage", &t));
    }

    #[test]
    fn peek_does_not_refresh_and_ending_signals() {
        let s = Sessions::new(900, 3600);
        let (cookie, session) = s.create([1; 16], "a".into(), SecretKey::generate(), 0);
        let ended = session.ended();
        assert!(s.peek(&cookie, 800).is_some());
        assert!(s.still_live(&session, 899));
        assert!(!*ended.borrow());
        // Peeking at 800 did not refresh the idle timer.
        assert!(!s.still_live(&session, 900));
        assert!(*ended.borrow(), "expiry ends the session");

        let (_, session) = s.create([2; 16], "b".into(), SecretKey::generate(), 0);
        let ended = session.ended();
        s.remove(&session);
        assert!(*ended.borrow(), "logout ends the session");
        let (_, session) = s.create([3; 16], "c".into(), SecretKey::generate(), 0);
        let ended = session.ended();
        s.remove_user(&[3; 16]);
        assert!(*ended.borrow(), "account deletion ends the session");
        let (_, kept) = s.create([6; 16], "f".into(), SecretKey::generate(), 0);
        let (_, other) = s.create([6; 16], "f".into(), SecretKey::generate(), 0);
        let (kept_ended, other_ended) = (kept.ended(), other.ended());
        s.remove_user_except(&[6; 16], &kept);
        assert!(
            *other_ended.borrow(),
            "a password change ends the other sessions"
        );
        assert!(
            !*kept_ended.borrow() && s.still_live(&kept, 0),
            "but not this one"
        );
        s.remove(&kept);
        let (_, session) = s.create([4; 16], "d".into(), SecretKey::generate(), 0);
        let ended = session.ended();
        assert_eq!(s.reap(900), vec![[4; 16]]);
        assert!(*ended.borrow(), "reaping ends the session");
        let (_, session) = s.create([5; 16], "e".into(), SecretKey::generate(), 0);
        let ended = session.ended();
        s.clear();
        assert!(*ended.borrow(), "shutdown ends the session");
    }

    #[test]
    fn garbage_cookies_find_nothing() {
        let s = Sessions::new(900, 3600);
        assert!(s.get("", 0).is_none());
        assert!(s.get(&"A".repeat(10_000), 0).is_none());
    }
}
