//! The web layer: one hyper service behind every front door, a router, sessions, CSRF,
//! forms, security headers and error pages.

pub mod assets;
pub mod error;
pub mod layout;
pub mod request;
pub mod response;
pub mod router;
pub mod server;
pub mod session;
pub mod stream;

use std::sync::Arc;

use hyper::Request;
use hyper::body::Incoming;
use hyper::header::HeaderMap;

use crate::app::AppState;
use crate::clock::UnixTime;
use error::AppError;
use layout::PageCtx;
use request::Form;
use session::{Session, Sessions};

/// Which front door a request came through. Handlers only use it for cookie flags and the
/// "not anonymous" banner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Door {
    /// The optional plain-HTTP TCP listener (loopback, or the LAN demo).
    Tcp,
    /// The Tor onion service.
    Onion,
}

impl Door {
    /// Cookie name: with the `__Host-` prefix on the onion door (which Tor Browser treats
    /// as a secure context) unless `server.onion_cookie_prefix` is off.
    pub fn cookie_name(self, base: &'static str, onion_prefix: bool) -> String {
        match self {
            Door::Onion if onion_prefix => format!("__Host-{base}"),
            Door::Onion | Door::Tcp => base.to_owned(),
        }
    }

    /// Attributes of every cookie we set.
    pub fn cookie_attributes(self) -> &'static str {
        match self {
            Door::Onion => "; Path=/; HttpOnly; SameSite=Strict; Secure",
            Door::Tcp => "; Path=/; HttpOnly; SameSite=Strict",
        }
    }

    /// Whether pages carry the "not anonymous" banner.
    pub fn banner(self) -> bool {
        matches!(self, Door::Tcp)
    }
}

/// Base names of our cookies.
pub const SESSION_COOKIE: &str = "gc_session";
pub const PRE_SESSION_COOKIE: &str = "gc_pre";

/// Per-request context handed to handlers.
pub struct Ctx {
    pub state: Arc<AppState>,
    pub door: Door,
    /// The time this request is handled at (one reading of the clock).
    pub now: UnixTime,
    pub session: Option<Arc<Session>>,
    /// The navigation's counts for the logged-in member (see [`Ctx::load_nav`]).
    pub nav: layout::Nav,
    pre_session: Option<String>,
    /// `Set-Cookie` values to add to the response.
    pub set_cookies: Vec<String>,
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("door", &self.door)
            .finish_non_exhaustive()
    }
}

impl Ctx {
    /// Build the context from the request's cookies. The session's idle timer restarts and
    /// the member counts as active (online status).
    pub fn new(state: Arc<AppState>, door: Door, headers: &HeaderMap) -> Self {
        Self::build(state, door, headers, false)
    }

    /// The context of a request that a page makes by itself (the live chat stream): it
    /// neither restarts the session's idle timer nor counts as activity, so an unattended
    /// open page does not keep a session alive.
    pub fn passive(state: Arc<AppState>, door: Door, headers: &HeaderMap) -> Self {
        Self::build(state, door, headers, true)
    }

    fn build(state: Arc<AppState>, door: Door, headers: &HeaderMap, passive: bool) -> Self {
        let now = state.clock.now();
        let prefix = state.config.server.onion_cookie_prefix;
        let session =
            request::cookie(headers, &door.cookie_name(SESSION_COOKIE, prefix)).and_then(|c| {
                if passive {
                    state.sessions.peek(c, now)
                } else {
                    state.sessions.get(c, now)
                }
            });
        if let Some(s) = session.as_ref().filter(|_| !passive) {
            state.hub.active(s.user_id, now);
        }
        let pre_session = request::cookie(headers, &door.cookie_name(PRE_SESSION_COOKIE, prefix))
            .filter(|c| state.sessions.anonymous_csrf(c).is_some())
            .map(str::to_owned);
        Self {
            state,
            door,
            now,
            session,
            nav: layout::Nav::default(),
            pre_session,
            set_cookies: Vec::new(),
        }
    }

    /// Count what waits for the logged-in member, for the navigation of the page this
    /// request renders (a few index reads; see `home::nav_counts`). A failure only leaves
    /// the counts out.
    pub async fn load_nav(&mut self) {
        let Some(session) = &self.session else {
            return;
        };
        let me = session.user_id;
        match self
            .state
            .store
            .run(move |s| crate::home::nav_counts(s, &me))
            .await
        {
            Ok(nav) => self.nav = nav,
            Err(e) => tracing::warn!(error = %e, "counting what waits failed"),
        }
    }

    /// The name of one of our cookies on this request's door.
    pub fn cookie_name(&self, base: &'static str) -> String {
        self.door
            .cookie_name(base, self.state.config.server.onion_cookie_prefix)
    }

    /// The CSRF token for anonymous forms (login, registration), creating the pre-session
    /// cookie if the browser has none yet.
    pub fn anonymous_csrf(&mut self) -> String {
        let pre = match &self.pre_session {
            Some(p) => p.clone(),
            None => {
                let p = Sessions::new_anonymous();
                self.set_cookies.push(format!(
                    "{}={p}{}",
                    self.cookie_name(PRE_SESSION_COOKIE),
                    self.door.cookie_attributes()
                ));
                self.pre_session = Some(p.clone());
                p
            }
        };
        self.state.sessions.anonymous_csrf(&pre).unwrap_or_default()
    }

    /// Read a form body with the server's limits (size, body timeout).
    pub async fn form(&self, req: Request<Incoming>) -> Result<Form, AppError> {
        let cfg = &self.state.config.server;
        let (parts, body) = req.into_parts();
        request::read_form(
            &parts.headers,
            body,
            cfg.max_form_bytes,
            std::time::Duration::from_secs(cfg.body_timeout_secs),
        )
        .await
    }

    /// The query string as a form (for notices like `?registered=1`).
    pub fn query(&self, req: &Request<Incoming>) -> Result<Form, AppError> {
        Form::parse(req.uri().query().unwrap_or("").as_bytes())
            .ok_or_else(|| AppError::BadRequest("The address was not correctly encoded.".into()))
    }

    /// What the layout needs.
    pub fn page(&mut self) -> PageCtx {
        let can_register =
            self.state.config.accounts.registration != crate::invites::RegistrationMode::Closed;
        match &self.session {
            Some(s) => PageCtx {
                banner: self.door.banner(),
                user: Some(s.username.clone()),
                csrf: s.csrf().to_owned(),
                nav: self.nav,
                can_register,
            },
            // Anonymous pages carry no member forms; the login and registration forms ask
            // for `anonymous_csrf` themselves, so plain pages set no cookie at all.
            None => PageCtx {
                banner: self.door.banner(),
                user: None,
                csrf: String::new(),
                nav: layout::Nav::default(),
                can_register,
            },
        }
    }

    /// The logged-in session, or "log in again".
    pub fn require_session(&self) -> Result<Arc<Session>, AppError> {
        self.session.clone().ok_or(AppError::SessionRequired)
    }

    /// Check a member's form: a live session and its CSRF token.
    pub fn check_member_form(&self, form: &Form) -> Result<Arc<Session>, AppError> {
        let session = self.require_session()?;
        if !session.csrf_ok(form.text("csrf")) {
            return Err(AppError::Csrf);
        }
        Ok(session)
    }

    /// Check an anonymous form (login, registration) against the pre-session cookie.
    pub fn check_anonymous_form(&self, form: &Form) -> Result<(), AppError> {
        match &self.pre_session {
            Some(pre)
                if self
                    .state
                    .sessions
                    .anonymous_csrf_ok(pre, form.text("csrf")) =>
            {
                Ok(())
            }
            _ => Err(AppError::Csrf),
        }
    }

    /// Log a member in: a fresh session id (never the one the browser had before).
    pub fn start_session(
        &mut self,
        user_id: crate::store::Id,
        username: String,
        key: crate::crypto::SecretKey,
    ) {
        if let Some(old) = self.session.take() {
            self.state.sessions.remove(&old);
        }
        let (cookie, session) = self.state.sessions.create(user_id, username, key, self.now);
        self.state.hub.active(user_id, self.now);
        self.set_cookies.push(format!(
            "{}={cookie}{}",
            self.cookie_name(SESSION_COOKIE),
            self.door.cookie_attributes()
        ));
        self.session = Some(session);
    }

    /// Take back a session started by this request before its answer leaves (the account
    /// changed under the login): the session ends and its cookie is never sent.
    pub fn undo_session_start(&mut self) {
        if let Some(s) = self.session.take() {
            self.state.sessions.remove(&s);
        }
        let name = format!("{}=", self.cookie_name(SESSION_COOKIE));
        self.set_cookies.retain(|c| !c.starts_with(&name));
    }

    /// Log out: end the session and tell the browser to forget the cookie.
    pub fn end_session(&mut self) {
        if let Some(s) = self.session.take() {
            self.state.sessions.remove(&s);
        }
        self.set_cookies.push(format!(
            "{}=deleted{}; Max-Age=0",
            self.cookie_name(SESSION_COOKIE),
            self.door.cookie_attributes()
        ));
    }
}
