//! The live channel of the end-to-end tier: one WebSocket per open end-to-end page
//! (`GET /e2e/ws`), over hyper's upgrade with tokio-tungstenite's framing.
//!
//! Opening it needs a live session (the cookie) and an `Origin` that is this site
//! (`http://` + the request's `Host`): a missing or foreign Origin gets 403 before any
//! upgrade. It counts as an open live stream of its member (online status,
//! `chat.max_streams_per_member`), and it is *passive* like the live frame: only sending a
//! message restarts the session's idle timer.
//!
//! Frames are JSON text. The browser sends `{"t":"send", …}` (one message: header,
//! IV, ciphertext, signature) and gets `{"t":"ack","ref":…,"seq":…}` or
//! `{"t":"error","ref":…,"error":…}`; nothing is stored unless every check passed. The
//! server sends `hello`, `msg` (a new message of one of the member's conversations),
//! `expired` (a message deleted at its deadline or by its sender), `changed` (participants, proposal or epoch), `closed`, `presence` and
//! `refresh` (events were missed). Limits: a frame or message above [`MAX_FRAME_BYTES`]
//! closes the socket (1009), a frame that is not the JSON of a send closes it (1007),
//! binary frames close it (1003), more than [`FRAME_BURST`] frames in a burst (refilled
//! at [`FRAMES_PER_SEC`]) close it (1008). Logout, session expiry and account deletion
//! close it at once (1000, "session ended"); shutdown closes it (1001).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ORIGIN};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};

use super::store as e2e_store;
use crate::app::AppState;
use crate::chat::hub::{Event, SubscribeError, Subscription};
use crate::crypto::b64url;
use crate::store::Id;
use crate::web::Ctx;
use crate::web::error::AppError;
use crate::web::response::{Body, full};

/// Largest frame or message the server reads.
pub const MAX_FRAME_BYTES: usize = 32 * 1024;
/// Frames a socket may send at once before the rate applies.
pub const FRAME_BURST: f64 = 20.0;
/// Frames per second a socket may send in the long run.
pub const FRAMES_PER_SEC: f64 = 5.0;
/// Seconds between presence checks and keep-alive pings.
const TICK_SECS: u64 = 5;

const WS_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// A message from the browser.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendFrame {
    pub t: String,
    #[serde(rename = "ref")]
    pub reference: u64,
    pub conv: String,
    pub generation: u32,
    pub epoch: u32,
    pub client_seq: u64,
    pub sent_at: i64,
    pub expires_at: Option<i64>,
    pub iv: String,
    pub ct: String,
    pub sig: String,
}

/// Whether `origin` is this site as reached through `host`.
pub fn origin_ok(origin: Option<&str>, host: Option<&str>) -> bool {
    match (origin, host) {
        (Some(o), Some(h)) if !h.is_empty() => o
            .strip_prefix("http://")
            .is_some_and(|rest| rest.eq_ignore_ascii_case(h)),
        _ => false,
    }
}

fn header(req: &Request<Incoming>, name: impl hyper::header::AsHeaderName) -> Option<&str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// `GET /e2e/ws`: check, answer 101, and run the socket.
pub async fn upgrade(
    ctx: &mut Ctx,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, AppError> {
    if !origin_ok(header(&req, ORIGIN), header(&req, hyper::header::HOST)) {
        return Err(AppError::Forbidden(
            "This address only answers this site's own pages.".into(),
        ));
    }
    let session = ctx.require_session()?;
    let wants_ws = header(&req, hyper::header::UPGRADE)
        .is_some_and(|u| u.eq_ignore_ascii_case("websocket"))
        && header(&req, hyper::header::CONNECTION).is_some_and(|c| {
            c.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        })
        && header(&req, "sec-websocket-version") == Some("13");
    let key = header(&req, "sec-websocket-key")
        .filter(|k| k.len() == 24)
        .map(str::to_owned);
    let (true, Some(key)) = (wants_ws, key) else {
        return Err(AppError::BadRequest(
            "This address is the end-to-end pages' WebSocket.".into(),
        ));
    };
    let cookie =
        crate::web::request::cookie(req.headers(), &ctx.cookie_name(crate::web::SESSION_COOKIE))
            .unwrap_or("")
            .to_owned();
    let me = session.user_id;
    let sub = match ctx.state.hub.subscribe(me) {
        Ok(s) => s,
        Err(SubscribeError::TooMany) => return Err(AppError::TooManyRequests),
        Err(SubscribeError::Closed) => return Err(AppError::Busy),
    };
    let accept = {
        use base64::Engine as _;
        use sha1::Digest as _;
        let mut h = sha1::Sha1::new();
        h.update(key.as_bytes());
        h.update(WS_GUID);
        base64::engine::general_purpose::STANDARD.encode(h.finalize())
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let state = Arc::clone(&ctx.state);
    let ended = session.ended();
    let weak = Arc::downgrade(&session);
    drop(session);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_FRAME_BYTES))
            .max_frame_size(Some(MAX_FRAME_BYTES));
        let ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config))
                .await;
        Socket {
            state,
            me,
            cookie,
            session: weak,
            ended,
            sub,
            tokens: FRAME_BURST,
            refilled: Instant::now(),
            conversations: HashSet::new(),
            presence: HashMap::new(),
        }
        .run(ws)
        .await;
    });
    let mut r = Response::new(full(bytes::Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(
        hyper::header::UPGRADE,
        HeaderValue::from_static("websocket"),
    );
    h.insert(
        hyper::header::CONNECTION,
        HeaderValue::from_static("Upgrade"),
    );
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert("sec-websocket-accept", v);
    }
    Ok(r)
}

type Ws = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

struct Socket {
    state: Arc<AppState>,
    me: Id,
    cookie: String,
    session: std::sync::Weak<crate::web::session::Session>,
    ended: tokio::sync::watch::Receiver<bool>,
    sub: Subscription,
    tokens: f64,
    refilled: Instant,
    /// The member's conversations (refreshed when memberships change).
    conversations: HashSet<Id>,
    /// Last presence told, per other participant.
    presence: HashMap<Id, bool>,
}

/// How a socket ends.
struct Closing(CloseCode, &'static str);

fn text(v: &Value) -> Message {
    Message::text(v.to_string())
}

impl Socket {
    async fn run(mut self, mut ws: Ws) {
        let closing = self.serve(&mut ws).await;
        let Closing(code, reason) = closing;
        let _ = ws
            .close(Some(CloseFrame {
                code,
                reason: reason.into(),
            }))
            .await;
        // Let the close handshake finish (briefly), then drop the connection.
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while let Some(Ok(_)) = ws.next().await {}
        })
        .await;
    }

    async fn send(ws: &mut Ws, v: &Value) -> Result<(), Closing> {
        use futures_util::SinkExt;
        tokio::time::timeout(Duration::from_secs(30), ws.send(text(v)))
            .await
            .map_err(|_| Closing(CloseCode::Policy, "not reading"))?
            .map_err(|_| Closing(CloseCode::Away, "gone"))
    }

    async fn serve(&mut self, ws: &mut Ws) -> Closing {
        if let Err(e) = self.refresh_conversations().await {
            return e;
        }
        let hello = json!({ "t": "hello", "me": b64url(&self.me), "now": self.state.clock.now() });
        if let Err(c) = Self::send(ws, &hello).await {
            return c;
        }
        let mut tick = tokio::time::interval(Duration::from_secs(TICK_SECS));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let step = tokio::select! {
                frame = ws.next() => self.incoming(ws, frame).await,
                event = self.sub.recv() => self.event(ws, event).await,
                _ = self.ended.changed() => Err(Closing(CloseCode::Normal, "session ended")),
                _ = tick.tick() => self.tick(ws).await,
            };
            if let Err(c) = step {
                return c;
            }
        }
    }

    fn session_live(&self) -> bool {
        self.session
            .upgrade()
            .is_some_and(|s| self.state.sessions.still_live(&s, self.state.clock.now()))
    }

    async fn refresh_conversations(&mut self) -> Result<(), Closing> {
        let me = self.me;
        let convs = self
            .state
            .store
            .run(move |s| e2e_store::conversations_of(s, &me))
            .await
            .map_err(|_| Closing(CloseCode::Error, "server error"))?;
        self.conversations = convs.into_iter().map(|(id, _)| id).collect();
        Ok(())
    }

    fn take_token(&mut self) -> bool {
        let now = Instant::now();
        let elapsed = now.duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        self.tokens = (self.tokens + elapsed * FRAMES_PER_SEC).min(FRAME_BURST);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    async fn incoming(
        &mut self,
        ws: &mut Ws,
        frame: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    ) -> Result<(), Closing> {
        use tokio_tungstenite::tungstenite::Error as E;
        let message = match frame {
            None => return Err(Closing(CloseCode::Away, "gone")),
            Some(Ok(m)) => m,
            Some(Err(E::Capacity(_))) => {
                return Err(Closing(CloseCode::Size, "frame too large"));
            }
            Some(Err(E::Utf8(_))) => return Err(Closing(CloseCode::Invalid, "malformed frame")),
            Some(Err(_)) => return Err(Closing(CloseCode::Protocol, "protocol error")),
        };
        if !matches!(message, Message::Pong(_)) && !self.take_token() {
            return Err(Closing(CloseCode::Policy, "too many frames"));
        }
        match message {
            Message::Text(t) => self.send_frame(ws, t.as_str()).await,
            Message::Binary(_) => Err(Closing(CloseCode::Unsupported, "text frames only")),
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => Ok(()),
            Message::Close(_) => Err(Closing(CloseCode::Normal, "bye")),
        }
    }

    async fn send_frame(&mut self, ws: &mut Ws, text: &str) -> Result<(), Closing> {
        let frame: SendFrame = serde_json::from_str(text)
            .ok()
            .filter(|f: &SendFrame| f.t == "send")
            .ok_or(Closing(CloseCode::Invalid, "malformed frame"))?;
        let reference = frame.reference;
        let refuse = |error: &str| json!({ "t": "error", "ref": reference, "error": error });
        // Sending is activity: it restarts the session's idle timer (and fails once the
        // session has ended).
        let now = self.state.clock.now();
        if self.state.sessions.get(&self.cookie, now).is_none() {
            return Err(Closing(CloseCode::Normal, "session ended"));
        }
        let (conv, record) = match super::api::parse_message(self.me, &frame) {
            Ok(r) => r,
            Err(e) => return Self::send(ws, &refuse(e)).await,
        };
        if !self.state.limits.message_allowed(&self.me) {
            return Self::send(ws, &refuse("Too many messages. Wait a minute.")).await;
        }
        let me = self.me;
        let stored = self
            .state
            .store
            .run(move |s| e2e_store::send(s, &me, &conv, &record, now))
            .await
            .map_err(|_| Closing(CloseCode::Error, "server error"))?;
        match stored {
            Ok(stored) => {
                self.state.hub.publish(
                    &stored.participants,
                    Event::Message {
                        conversation: conv,
                        seq: stored.seq,
                    },
                );
                Self::send(
                    ws,
                    &json!({ "t": "ack", "ref": reference, "conv": b64url(&conv), "seq": stored.seq }),
                )
                .await
            }
            Err(e) => Self::send(ws, &refuse(&e.to_string())).await,
        }
    }

    async fn event(
        &mut self,
        ws: &mut Ws,
        event: Result<Event, broadcast::error::RecvError>,
    ) -> Result<(), Closing> {
        let event = match event {
            Ok(e) => e,
            Err(broadcast::error::RecvError::Lagged(_)) => {
                self.refresh_conversations().await?;
                return Self::send(ws, &json!({ "t": "refresh" })).await;
            }
            Err(broadcast::error::RecvError::Closed) => {
                return Err(Closing(CloseCode::Away, "server shutting down"));
            }
        };
        match event {
            Event::Message { conversation, seq } if self.conversations.contains(&conversation) => {
                let (me, now) = (self.me, self.state.clock.now());
                let m = self
                    .state
                    .store
                    .run(move |s| e2e_store::message_for(s, &me, &conversation, seq, now))
                    .await
                    .map_err(|_| Closing(CloseCode::Error, "server error"))?;
                match m {
                    Some(m) => {
                        let mut v = super::api::message_json(&conversation, seq, &m);
                        if let Some(o) = v.as_object_mut() {
                            o.insert("t".into(), "msg".into());
                        }
                        Self::send(ws, &v).await
                    }
                    None => Ok(()),
                }
            }
            Event::Expired { conversation, seq } if self.conversations.contains(&conversation) => {
                Self::send(
                    ws,
                    &json!({ "t": "expired", "conv": b64url(&conversation), "seq": seq }),
                )
                .await
            }
            Event::Membership { conversation } => {
                self.refresh_conversations().await?;
                if self.conversations.contains(&conversation) {
                    Self::send(
                        ws,
                        &json!({ "t": "changed", "conv": b64url(&conversation) }),
                    )
                    .await
                } else {
                    Ok(())
                }
            }
            Event::Closed { conversation } => {
                let was = self.conversations.remove(&conversation);
                self.refresh_conversations().await?;
                if was && !self.conversations.contains(&conversation) {
                    Self::send(ws, &json!({ "t": "closed", "conv": b64url(&conversation) })).await
                } else {
                    Ok(())
                }
            }
            Event::MemberGone { .. } => {
                self.refresh_conversations().await?;
                Self::send(ws, &json!({ "t": "refresh" })).await
            }
            Event::Message { .. } | Event::Expired { .. } => Ok(()),
        }
    }

    async fn tick(&mut self, ws: &mut Ws) -> Result<(), Closing> {
        if !self.session_live() {
            return Err(Closing(CloseCode::Normal, "session ended"));
        }
        let me = self.me;
        let convs: Vec<Id> = self.conversations.iter().copied().collect();
        let peers = self
            .state
            .store
            .run(move |s| {
                let mut peers = HashSet::new();
                for c in convs {
                    peers.extend(e2e_store::active_participants(s, &c)?);
                }
                peers.remove(&me);
                Ok(peers)
            })
            .await
            .map_err(|_| Closing(CloseCode::Error, "server error"))?;
        let now = self.state.clock.now();
        for p in peers {
            let online = self.state.hub.online(&p, now, &self.state.sessions);
            if self.presence.insert(p, online) != Some(online) {
                Self::send(
                    ws,
                    &json!({ "t": "presence", "member": b64url(&p), "online": online }),
                )
                .await?;
            }
        }
        use futures_util::SinkExt;
        ws.send(Message::Ping(bytes::Bytes::new()))
            .await
            .map_err(|_| Closing(CloseCode::Away, "gone"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_must_be_this_site() {
        assert!(origin_ok(
            Some("http://127.0.0.1:8080"),
            Some("127.0.0.1:8080")
        ));
        assert!(origin_ok(Some("http://abc.onion"), Some("abc.onion")));
        assert!(!origin_ok(None, Some("127.0.0.1:8080")));
        assert!(!origin_ok(
            Some("http://evil.example"),
            Some("127.0.0.1:8080")
        ));
        assert!(!origin_ok(
            Some("https://127.0.0.1:8080"),
            Some("127.0.0.1:8080")
        ));
        assert!(!origin_ok(Some("null"), Some("127.0.0.1:8080")));
        assert!(!origin_ok(Some("http://127.0.0.1:8080"), None));
    }
}
