//! The live stream: new messages in an open chat page without JavaScript.
//!
//! The chat page embeds `<iframe src="/chat/<id>/live?after=<seq>">` (a group page:
//! `/chat/group/<id>/live?after=<seq>`; the same stream, see [`Thread`]). That response is a
//! long-lived HTML document sent in chunks: it starts with the messages after `<seq>` (the
//! last one the page itself shows), then appends each new message as the hub announces it,
//! a keep-alive comment every `chat.stream_keepalive_secs`, and a note when the other
//! member comes online or goes offline (one-to-one) or the membership changes (groups).
//! After `chat.stream_lifetime_secs` it ends with `<meta http-equiv="refresh">`, and the
//! browser loads the same address again — which starts again from `<seq>`, so nothing
//! already shown disappears.
//!
//! A group's stream shows its events (joins, departures, roles) between the messages, in
//! the order of their numbers, and the member's own messages carry the form that deletes
//! them (answering into the whole page, `target="_top"`).
//!
//! The frame's *first* document is not the stream: the page embeds
//! `…/live?after=<seq>&first=1`, which answers at once with a short complete document
//! (what will appear in the frame) ending in a refresh to the stream. A browser shows a
//! page as loading until every frame's first document has loaded; had the stream been the
//! first document, Tor Browser would spin the tab's loading indicator (and show
//! "Transferring data from …") for the stream's whole lifetime. Later loads of a frame
//! show no loading indicator (measured in Firefox ESR, the Gecko of Tor Browser: see the
//! README, "Reaching it with Tor Browser").
//!
//! Self-destructing messages carry classes that hide them at their deadline by a CSS
//! animation (see `views::expiry_classes`); when the sweeper deletes one (or its sender
//! does), the stream also appends `<link rel="stylesheet" href="/chat/expired/<seq>.css">`,
//! a stylesheet from our own origin (allowed by `style-src 'self'`) whose one rule hides
//! `#m<seq>` — removal of an element that was already sent, without JavaScript.
//!
//! One task per stream writes into a small bounded channel that the response body reads.
//! The task ends when the client goes away (the body is dropped), when the session ends
//! (logout, expiry, account deletion: the session's `ended` signal, and a liveness check
//! at every keep-alive), when the conversation ends, on shutdown, or at its lifetime. It
//! holds only a weak reference to the session, and the conversation's chat key for its
//! lifetime.
//!
//! The stream is a *passive* request: it neither restarts the session's idle timer nor
//! counts as activity (see `Ctx::passive`). Its own headers allow framing by our own pages
//! only (`frame-ancestors 'self'`, `X-Frame-Options: SAMEORIGIN`); every other response
//! keeps `frame-ancestors 'none'`.

use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::Frame;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use tokio::sync::{broadcast, mpsc, watch};

use super::hub::{Event, SubscribeError, Subscription};
use super::thread::{Kind, Thread};
use super::views;
use super::{CATCH_UP_LIMIT, Shown, Verification};
use crate::app::AppState;
use crate::groups::events::EventShown;
use crate::groups::timeline::{self, Item, merge};
use crate::store::Id;
use crate::web::Ctx;
use crate::web::error::AppError;
use crate::web::response::Body;
use crate::web::session::Session;

/// CSP of the live stream document: like every page, but framable by our own pages.
pub const STREAM_CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; \
                              form-action 'self'; frame-ancestors 'self'; base-uri 'none'";

/// CSP of the chat page: like every page, plus frames from our own origin (the stream).
pub const CHAT_PAGE_CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; \
                                 form-action 'self'; frame-src 'self'; frame-ancestors 'none'; \
                                 base-uri 'none'";

/// Chunks buffered between the stream task and the connection.
const CHUNKS_BUFFERED: usize = 16;
/// A client that does not take a chunk for this long is given up on.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Seconds before a stream that ended for a reason other than its lifetime reloads.
const RELOAD_AFTER_SHUTDOWN_SECS: u64 = 5;

/// A response body fed by the stream task.
struct ChannelBody(mpsc::Receiver<Bytes>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.0.poll_recv(cx).map(|c| c.map(|b| Ok(Frame::data(b))))
    }
}

/// Set the headers of a document shown inside the chat page's frame.
fn framable(response: &mut Response<Body>) {
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        HeaderName::from_static("content-security-policy"),
        HeaderValue::from_static(STREAM_CSP),
    );
    headers.insert(
        HeaderName::from_static("x-frame-options"),
        HeaderValue::from_static("SAMEORIGIN"),
    );
}

/// A small framable document (errors inside the frame).
fn frame_doc(status: StatusCode, title: &str, body: maud::Markup) -> Response<Body> {
    let mut r = Response::new(crate::web::response::full(
        views::live_message_doc(title, body).into_string(),
    ));
    *r.status_mut() = status;
    framable(&mut r);
    r
}

/// An error as a document framable by the chat page.
pub fn frame_error(e: &AppError) -> Response<Body> {
    let view = e.view();
    let body = match e {
        AppError::SessionRequired => maud::html! {
            a href="/login" target="_top" { "Log in" }
        },
        AppError::Internal(detail) => {
            let id = crate::crypto::b64url(&crate::crypto::random_bytes::<6>());
            tracing::error!(request_id = %id, detail = %detail, "live stream failed");
            maud::html! { "Request id: " (id) }
        }
        _ => maud::html! { (view.message) },
    };
    frame_doc(view.status, view.title, body)
}

/// `GET /chat/<id>/live?after=<seq>[&first=1]` (and `/chat/group/<id>/live`): the
/// frame's first document (`first=1`), or the stream; errors as framable documents.
pub async fn serve(
    ctx: &mut Ctx,
    req: &Request<Incoming>,
    kind: Kind,
    conversation: Id,
) -> Response<Body> {
    let query = ctx.query(req).ok();
    let after = query.as_ref().and_then(|q| match q.get("after") {
        None => Some(0),
        Some(a) => a.parse::<u64>().ok(),
    });
    let first = match query.as_ref().map(|q| q.get("first")) {
        Some(None) => Some(false),
        Some(Some("1")) => Some(true),
        _ => None,
    };
    let (Some(after), Some(first)) = (after, first) else {
        return frame_error(&AppError::BadRequest(
            "The address was not correctly formed.".into(),
        ));
    };
    let answer = if first {
        opener(ctx, kind, conversation, after).await
    } else {
        start(ctx, kind, conversation, after).await
    };
    answer.unwrap_or_else(|e| frame_error(&e))
}

/// The address of the stream that shows what comes after `after`.
fn stream_path(kind: Kind, conversation: &Id, after: u64) -> String {
    format!(
        "{}/live?after={after}",
        super::thread::page_path(kind, conversation)
    )
}

/// The frame's first document: complete at once, so that the page around it finishes
/// loading, and refreshed straight into the stream. Answers exactly as the stream does to
/// anyone who may not read the conversation.
async fn opener(
    ctx: &mut Ctx,
    kind: Kind,
    conversation: Id,
    after: u64,
) -> Result<Response<Body>, AppError> {
    let session = ctx.require_session()?;
    open_thread(&ctx.state, &session, kind, conversation).await?;
    let mut doc = views::live_head();
    doc.push_str(&views::live_end_reload_to(
        0,
        &stream_path(kind, &conversation, after),
    ));
    let mut response = Response::new(crate::web::response::full(doc));
    framable(&mut response);
    Ok(response)
}

async fn start(
    ctx: &mut Ctx,
    kind: Kind,
    conversation: Id,
    after: u64,
) -> Result<Response<Body>, AppError> {
    let session = ctx.require_session()?;
    let state = Arc::clone(&ctx.state);
    let me = session.user_id;
    // Subscribe before reading the store, so that nothing falls between the two.
    let sub = match state.hub.subscribe(me) {
        Ok(s) => s,
        Err(SubscribeError::TooMany) => {
            return Ok(frame_doc(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many open chat windows",
                maud::html! { "Close one and " a href="" { "try again" } "." },
            ));
        }
        Err(SubscribeError::Closed) => return Err(AppError::Busy),
    };
    let now = ctx.now;
    let conv = Arc::new(open_thread(&state, &session, kind, conversation).await?);
    let (initial, skipped) = {
        let c = Arc::clone(&conv);
        state
            .store
            .run(move |s| c.since(s, after, CATCH_UP_LIMIT, now))
            .await?
    };
    let events = {
        let c = Arc::clone(&conv);
        state.store.run(move |s| c.events_after(s, after)).await?
    };
    let csrf = session.csrf().to_owned();
    let mut first = views::live_head();
    if skipped {
        first.push_str(
            &views::live_reload_link(
                &conv.page_path(),
                "Earlier new messages: open the whole chat",
            )
            .into_string(),
        );
    }
    let last = push_items(&mut first, &initial, &events, &conv, now, &csrf).unwrap_or(after);
    if let Some(m) = initial.last() {
        mark_delivered(&state, me, conversation, m.seq).await;
    }
    let (tx, rx) = mpsc::channel(CHUNKS_BUFFERED);
    // The channel is new and empty: the first chunk always fits.
    let _ = tx.try_send(Bytes::from(first));
    let peer_online = conv
        .peer()
        .is_some_and(|(peer, _)| state.hub.online(&peer, now, &state.sessions));
    let task = Live {
        ended: session.ended(),
        session: Arc::downgrade(&session),
        state,
        conv,
        sub,
        tx,
        last,
        peer_online,
        csrf,
    };
    tokio::spawn(task.run());
    let mut response = Response::new(ChannelBody(rx).boxed());
    framable(&mut response);
    Ok(response)
}

/// The conversation as the session's member reads it; not found when they may not.
async fn open_thread(
    state: &AppState,
    session: &Session,
    kind: Kind,
    conversation: Id,
) -> Result<Thread, AppError> {
    let (me, data_key) = (session.user_id, session.data_key.clone());
    state
        .store
        .run(move |s| Thread::open_kind(s, kind, &conversation, &me, &data_key))
        .await?
        .ok_or(AppError::NotFound)
}

/// Append messages and a group's events to `out` in the order of their numbers, the
/// reader's own messages with the form that deletes them; the number of the last one.
fn push_items(
    out: &mut String,
    messages: &[Shown],
    events: &[EventShown],
    thread: &Thread,
    now: crate::clock::UnixTime,
    csrf: &str,
) -> Option<u64> {
    let delete_action = format!("{}/delete", thread.page_path());
    let actions = views::MessageActions {
        delete_action: &delete_action,
        csrf,
        in_frame: true,
    };
    let items = merge(messages, events);
    for item in &items {
        let markup = match item {
            Item::Message(m) => views::message(m, thread.sender_name(m), now, Some(&actions)),
            Item::Event(e) => timeline::event(e, &thread.me()),
        };
        out.push_str(&markup.into_string());
    }
    items.last().map(Item::seq)
}

async fn mark_delivered(state: &AppState, me: Id, conversation: Id, upto: u64) {
    let commits = state.commits.clone();
    if let Err(e) = state
        .store
        .run(move |s| super::mark_delivered(s, &commits, &me, &conversation, upto))
        .await
    {
        tracing::warn!(error = %e, "marking messages delivered failed");
    }
}

/// What happens next to a stream.
enum Flow {
    Continue,
    /// The client went away: nothing more to write.
    Gone,
    End(Ending),
}

/// How a stream ends.
enum Ending {
    /// Lifetime reached, or fell behind: reload now and catch up.
    Reload,
    /// The server is stopping.
    Shutdown,
    SessionEnded,
    /// The connection was removed or blocked, or the other account deleted; or the member
    /// is no longer in the group.
    ConversationGone,
}

/// One stream's task.
struct Live {
    state: Arc<AppState>,
    session: Weak<Session>,
    ended: watch::Receiver<bool>,
    conv: Arc<Thread>,
    sub: Subscription,
    tx: mpsc::Sender<Bytes>,
    /// Sequence number of the last message or event written.
    last: u64,
    peer_online: bool,
    /// The session's CSRF token, for the forms beside the member's own messages.
    csrf: String,
}

impl Live {
    async fn run(mut self) {
        let cfg = &self.state.config.chat;
        let lifetime = Duration::from_secs(cfg.stream_lifetime_secs);
        let every = Duration::from_secs(cfg.stream_keepalive_secs);
        let deadline = tokio::time::Instant::now() + lifetime;
        let mut keepalive = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        if *self.ended.borrow() {
            self.finish(Ending::SessionEnded).await;
            return;
        }
        loop {
            let flow = tokio::select! {
                () = self.tx.closed() => Flow::Gone,
                changed = self.ended.changed() => match changed {
                    Ok(()) if !*self.ended.borrow() => Flow::Continue,
                    _ => Flow::End(Ending::SessionEnded),
                },
                event = self.sub.recv() => self.on_event(event).await,
                _ = keepalive.tick() => self.on_tick().await,
                () = tokio::time::sleep_until(deadline) => Flow::End(Ending::Reload),
            };
            match flow {
                Flow::Continue => {}
                Flow::Gone => return,
                Flow::End(ending) => {
                    self.finish(ending).await;
                    return;
                }
            }
        }
    }

    /// Send one chunk. A slow client may keep this waiting for up to `WRITE_TIMEOUT`; the
    /// end of the session cuts the wait short, so that nothing more is written (and the
    /// conversation's key goes) as soon as the member logs out.
    async fn write(&self, chunk: String) -> Flow {
        let mut ended = self.ended.clone();
        // Biased: a chunk that fits is still sent (the "session ended" note itself).
        tokio::select! {
            biased;
            sent = tokio::time::timeout(WRITE_TIMEOUT, self.tx.send(Bytes::from(chunk))) => {
                match sent {
                    Ok(Ok(())) => Flow::Continue,
                    _ => Flow::Gone,
                }
            }
            _ = ended.wait_for(|&ended| ended) => Flow::Gone,
        }
    }

    async fn on_event(&mut self, event: Result<Event, broadcast::error::RecvError>) -> Flow {
        let id = self.conv.id();
        match event {
            Ok(Event::Message { conversation, seq }) if conversation == id && seq > self.last => {
                self.catch_up().await
            }
            Ok(Event::Expired { conversation, seq }) if conversation == id => {
                self.write(views::live_expired(seq).into_string()).await
            }
            Ok(Event::Closed { conversation }) if conversation == id => {
                Flow::End(Ending::ConversationGone)
            }
            Ok(Event::Membership { conversation }) if conversation == id => {
                self.membership_changed().await
            }
            Ok(Event::MemberGone { member }) if self.conv.concerns(&member) => {
                if self.conv.is_group() {
                    self.membership_changed().await
                } else {
                    Flow::End(Ending::ConversationGone)
                }
            }
            Ok(_) => Flow::Continue,
            Err(broadcast::error::RecvError::Lagged(_)) => Flow::End(Ending::Reload),
            Err(broadcast::error::RecvError::Closed) => Flow::End(Ending::Shutdown),
        }
    }

    /// Open the conversation again (a group's new epoch key, new names). Ends the stream
    /// when the member may no longer read it.
    async fn reopen(&mut self) -> Result<(), Flow> {
        let Some(session) = self.session.upgrade() else {
            return Err(Flow::End(Ending::SessionEnded));
        };
        let (kind, id, me) = (self.conv.kind(), self.conv.id(), self.conv.me());
        let data_key = session.data_key.clone();
        drop(session);
        let opened = self
            .state
            .store
            .run(move |s| Thread::open_kind(s, kind, &id, &me, &data_key))
            .await;
        match opened {
            Ok(Some(t)) => {
                self.conv = Arc::new(t);
                Ok(())
            }
            Ok(None) => Err(Flow::End(Ending::ConversationGone)),
            Err(e) => {
                tracing::warn!(error = %e, "live stream could not reopen its conversation");
                Err(Flow::End(Ending::Reload))
            }
        }
    }

    /// A group's membership changed: take the new epoch's key and say so.
    async fn membership_changed(&mut self) -> Flow {
        if let Err(flow) = self.reopen().await {
            return flow;
        }
        let now = self.state.clock.now();
        let note = views::live_note(
            "The group's membership changed: new messages use a new key.",
            now,
        );
        let flow = self.write(note.into_string()).await;
        if matches!(flow, Flow::Continue) {
            // Messages may have arrived under the new key before this event.
            self.catch_up().await
        } else {
            flow
        }
    }

    async fn read_new(&self) -> Result<(Vec<Shown>, bool), crate::store::StoreError> {
        let conv = Arc::clone(&self.conv);
        let after = self.last;
        let now = self.state.clock.now();
        self.state
            .store
            .run(move |s| conv.since(s, after, CATCH_UP_LIMIT, now))
            .await
    }

    /// Write every message after the last one written.
    async fn catch_up(&mut self) -> Flow {
        let mut read = self.read_new().await;
        // A group message under an epoch this stream has no key for yet (the membership
        // event may come after it): open the group again and read once more.
        let stale = read.as_ref().is_ok_and(|(messages, _)| {
            self.conv.is_group()
                && messages
                    .iter()
                    .any(|m| m.status == Verification::Unreadable)
        });
        if stale {
            if let Err(flow) = self.reopen().await {
                return flow;
            }
            read = self.read_new().await;
        }
        let (messages, skipped) = match read {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "live stream could not read new messages");
                return Flow::End(Ending::Reload);
            }
        };
        if skipped {
            // More arrived at once than a stream shows: reload and show the latest.
            return Flow::End(Ending::Reload);
        }
        let events = {
            let (conv, after) = (Arc::clone(&self.conv), self.last);
            match self
                .state
                .store
                .run(move |s| conv.events_after(s, after))
                .await
            {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(error = %e, "live stream could not read group events");
                    return Flow::End(Ending::Reload);
                }
            }
        };
        let mut chunk = String::new();
        let now = self.state.clock.now();
        let Some(last) = push_items(&mut chunk, &messages, &events, &self.conv, now, &self.csrf)
        else {
            return Flow::Continue;
        };
        self.last = last;
        let flow = self.write(chunk).await;
        if let Some(m) = messages.last() {
            mark_delivered(&self.state, self.conv.me(), self.conv.id(), m.seq).await;
        }
        flow
    }

    async fn on_tick(&mut self) -> Flow {
        let now = self.state.clock.now();
        let live = self
            .session
            .upgrade()
            .is_some_and(|s| self.state.sessions.still_live(&s, now));
        if !live {
            return Flow::End(Ending::SessionEnded);
        }
        let mut chunk = String::from(views::KEEP_ALIVE);
        if let Some((peer, peer_name)) = self.conv.peer() {
            let online = self.state.hub.online(&peer, now, &self.state.sessions);
            if online != self.peer_online {
                self.peer_online = online;
                let text = format!(
                    "{} is now {}.",
                    peer_name,
                    if online { "online" } else { "offline" }
                );
                chunk.push_str(&views::live_note(&text, now).into_string());
            }
        }
        self.write(chunk).await
    }

    async fn finish(mut self, ending: Ending) {
        let tail = match ending {
            Ending::Reload => {
                self.sub.ending_on_schedule();
                views::live_end_reload(0)
            }
            Ending::Shutdown => views::live_end_reload(RELOAD_AFTER_SHUTDOWN_SECS),
            Ending::SessionEnded => views::live_end_final(maud::html! {
                p.note {
                    "Your session has ended. "
                    a href="/login" target="_top" { "Log in again" }
                }
            }),
            Ending::ConversationGone if self.conv.is_group() => {
                views::live_end_final(maud::html! {
                    p.note {
                        "You are no longer a member of this group. "
                        a href="/chat/groups" target="_top" { "Your groups" }
                    }
                })
            }
            Ending::ConversationGone => views::live_end_final(maud::html! {
                p.note {
                    "This connection no longer exists. "
                    a href="/connections" target="_top" { "Your connections" }
                }
            }),
        };
        let _ = self.write(tail).await;
    }
}
