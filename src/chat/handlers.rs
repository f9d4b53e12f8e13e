//! Chat handlers: the chat page and its send form, the live stream, the JSON endpoints
//! `POST /chat/send` and `GET /chat/poll`, `GET /users/online`, and the stylesheets that
//! hide expired messages in open live streams.

use hyper::body::Incoming;
use hyper::header::{ACCEPT, CONTENT_TYPE, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use serde::Deserialize;

use super::hub::Event;
use super::live::{self, CHAT_PAGE_CSP};
use super::thread::Kind;
use super::views::{self, ChatPage, OnlineEntry};
use super::{HISTORY_PAGE, POLL_LIMIT, Sent, TextError, clean_text, parse_timer};
use crate::crypto::{b64url, b64url_decode_exact};
use crate::store::Id;
use crate::web::Ctx;
use crate::web::error::AppError;
use crate::web::request::{media_type, read_body};
use crate::web::response::{Body, full, html, redirect};
use crate::web::router::{GET, GET_ONLY, GET_ONLY_POST, POST};
use crate::web::session::Session;

/// Header carrying the CSRF token of JSON requests.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The routes of this module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatRoute {
    /// `GET /chat/<id>` (the page), `POST /chat/<id>` (its send form)
    Page(Id),
    /// `GET /chat/<id>/live?after=<seq>` (the streamed frame)
    Live(Id),
    /// `POST /chat/send` (form or JSON)
    Send,
    /// `GET /chat/poll` (JSON)
    Poll,
    /// `GET /users/online`
    Online,
    /// `GET /chat/expired/<seq>.css` (hides message `<seq>` in a live stream)
    Expired(u64),
    /// `POST /chat/<id>/delete` (`seq`, `message`): delete one's own message for everyone
    Delete(Id),
}

impl ChatRoute {
    /// The route for a path's segments. A malformed id is no route (so: 404).
    pub fn resolve(segments: &[&str]) -> Option<Self> {
        Some(match segments {
            ["chat", "send"] => Self::Send,
            ["chat", "poll"] => Self::Poll,
            ["users", "online"] => Self::Online,
            ["chat", "expired", name] => Self::Expired(expired_seq(name)?),
            ["chat", id] => Self::Page(b64url_decode_exact(id)?),
            ["chat", id, "live"] => Self::Live(b64url_decode_exact(id)?),
            ["chat", id, "delete"] => Self::Delete(b64url_decode_exact(id)?),
            _ => return None,
        })
    }

    /// Methods this route accepts (the `Allow` header of a 405).
    pub fn allow(&self) -> &'static str {
        match self {
            // Reading a conversation marks its messages delivered; the live stream also
            // makes its member online.
            Self::Page(_) => GET_ONLY_POST,
            Self::Live(_) | Self::Poll => GET_ONLY,
            Self::Online | Self::Expired(_) => GET,
            Self::Send | Self::Delete(_) => POST,
        }
    }
}

/// The sequence number in `<seq>.css` (digits only, no leading zero).
fn expired_seq(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".css")?;
    if digits.is_empty()
        || digits.len() > 20
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || (digits.len() > 1 && digits.starts_with('0'))
    {
        return None;
    }
    digits.parse().ok()
}

/// The stylesheet that hides an expired message: the same for everyone (it names a
/// sequence number only), so it may be cached.
fn expired_stylesheet(seq: u64) -> Response<Body> {
    let mut r = Response::new(full(views::expired_css(seq)));
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    r.headers_mut().insert(
        hyper::header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=86400"),
    );
    r
}

/// Run the handler of `route` (the router checked the method against `allow`).
pub async fn dispatch(
    ctx: &mut Ctx,
    req: Request<Incoming>,
    route: ChatRoute,
) -> Result<Response<Body>, AppError> {
    let post = req.method() == hyper::Method::POST;
    match route {
        ChatRoute::Page(id) if post => post_message(ctx, req, id).await,
        ChatRoute::Page(id) => page(ctx, req, id).await,
        // Errors here are shown inside the page's frame, so they are framable.
        ChatRoute::Live(id) => Ok(live::serve(ctx, &req, Kind::Direct, id).await),
        ChatRoute::Send => {
            if media_type(req.headers()).as_deref() == Some("application/json") {
                Ok(json_or_error(send_json(ctx, req).await))
            } else {
                send_form(ctx, req).await
            }
        }
        ChatRoute::Poll => Ok(json_or_error(poll(ctx).await)),
        ChatRoute::Expired(seq) => Ok(expired_stylesheet(seq)),
        ChatRoute::Delete(id) => delete_message(ctx, req, Kind::Direct, id).await,
        ChatRoute::Online => {
            let wants_json = req
                .headers()
                .get(ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("application/json"));
            if wants_json {
                Ok(json_or_error(online_json(ctx).await))
            } else {
                online_page(ctx).await
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The chat page

/// What the chat page says after a form of this module (post–redirect–get), from the
/// query string: `?sent=1`, `?deleted=1`, `?connected=1`.
pub fn chat_notice(q: &crate::web::request::Form) -> Option<&'static str> {
    [
        ("sent", "Message sent."),
        ("deleted", "Message deleted for everyone."),
        (
            "connected",
            "You are now connected: messages here are encrypted with this connection's own key.",
        ),
    ]
    .into_iter()
    .find(|(k, _)| q.get(k).is_some())
    .map(|(_, m)| m)
}

/// Render the chat page (latest messages, or those before `before`).
async fn render_page(
    ctx: &mut Ctx,
    session: &Session,
    id: Id,
    before: Option<u64>,
    status: StatusCode,
    message: PageMessage<'_>,
) -> Result<Response<Body>, AppError> {
    let me = session.user_id;
    let data_key = session.data_key.clone();
    let now = ctx.now;
    let commits = ctx.state.commits.clone();
    let loaded = ctx
        .state
        .store
        .run(move |s| {
            let Some(conv) = super::open(s, &id, &me, &data_key)? else {
                return Ok(None);
            };
            let (messages, more) = conv.history(s, before, HISTORY_PAGE, now)?;
            if before.is_none()
                && let Some(last) = messages.last()
            {
                super::mark_delivered(s, &commits, &me, &id, last.seq)?;
            }
            let e2e = crate::e2e::store::connection_is_end_to_end(s, &id)?;
            Ok(Some((
                e2e,
                conv.peer,
                conv.peer_name.clone(),
                conv.my_key.scheme_name(),
                conv.my_key.fingerprint(),
                conv.peer_key.fingerprint(),
                messages,
                more,
            )))
        })
        .await?;
    let Some((end_to_end, peer, peer_name, scheme, mine, theirs, messages, more)) = loaded else {
        return Err(AppError::NotFound);
    };
    // Reading may have marked messages delivered: the navigation counts again.
    ctx.load_nav().await;
    let peer_online = ctx.state.hub.online(&peer, now, &ctx.state.sessions);
    let live_after = match before {
        None => Some(messages.last().map_or(0, |m| m.seq)),
        Some(_) => None,
    };
    let older = if more {
        messages.first().map(|m| m.seq)
    } else {
        None
    };
    let page = ctx.page();
    let markup = views::chat_page(
        &page,
        &ChatPage {
            conversation: id,
            peer_name: &peer_name,
            peer_online,
            scheme,
            my_fingerprint: &mine,
            peer_fingerprint: &theirs,
            messages: &messages,
            older,
            live_after,
            error: message.error,
            notice: message.notice,
            max_bytes: ctx.state.config.chat.max_message_bytes,
            now,
            end_to_end,
        },
    );
    let mut response = html(status, markup);
    response.headers_mut().insert(
        HeaderName::from_static("content-security-policy"),
        HeaderValue::from_static(CHAT_PAGE_CSP),
    );
    Ok(response)
}

async fn page(ctx: &mut Ctx, req: Request<Incoming>, id: Id) -> Result<Response<Body>, AppError> {
    let Some(session) = ctx.session.clone() else {
        return Ok(redirect("/login"));
    };
    let q = ctx.query(&req)?;
    let before =
        match q.get("before") {
            None => None,
            Some(b) => Some(b.parse::<u64>().map_err(|_| {
                AppError::BadRequest("The address was not correctly formed.".into())
            })?),
        };
    let notice = chat_notice(&q);
    render_page(
        ctx,
        &session,
        id,
        before,
        StatusCode::OK,
        PageMessage::notice(notice),
    )
    .await
}

/// An error of the form before, or a notice of what it did: what a page says at its top.
#[derive(Debug, Clone, Copy, Default)]
pub struct PageMessage<'a> {
    pub error: Option<&'a str>,
    pub notice: Option<&'a str>,
}

impl<'a> PageMessage<'a> {
    pub fn error(e: &'a str) -> Self {
        Self {
            error: Some(e),
            notice: None,
        }
    }

    pub fn notice(n: Option<&'a str>) -> Self {
        Self {
            error: None,
            notice: n,
        }
    }
}

pub(crate) fn text_error_status(e: TextError) -> StatusCode {
    match e {
        TextError::TooLong(_) => StatusCode::PAYLOAD_TOO_LARGE,
        TextError::Empty | TextError::ControlCharacters => StatusCode::BAD_REQUEST,
    }
}

/// The `timer` field of a send form, or a 400 that names the choices.
pub(crate) fn timer_field(value: &str) -> Result<Option<i64>, AppError> {
    parse_timer(value).ok_or_else(|| {
        AppError::BadRequest(
            "Unknown self-destruct timer: choose one of the form's options.".into(),
        )
    })
}

/// What sending decided.
enum SendOutcome {
    Sent(Id, Sent),
    Refused(TextError),
}

/// The common path of every send: rate limit, text rules, encrypt, sign, store, notify.
/// `NotFound` unless `session`'s member has an accepted connection `conversation`.
async fn send(
    ctx: &Ctx,
    session: &Session,
    conversation: Id,
    text: &str,
    timer: &str,
) -> Result<SendOutcome, AppError> {
    let me = session.user_id;
    // Membership first: someone else's connection is "not found", whatever the text.
    let side = ctx
        .state
        .store
        .run(move |s| crate::connections::side_of(s, &conversation, &me))
        .await?;
    if !side.is_some_and(|s| s.record.is_accepted()) {
        return Err(AppError::NotFound);
    }
    let e2e = ctx
        .state
        .store
        .run(move |s| crate::e2e::store::connection_is_end_to_end(s, &conversation))
        .await?;
    if let Some(e2e) = e2e {
        return Err(AppError::Conflict(format!(
            "This conversation is end-to-end encrypted now: open it at /e2e/c/{} (it needs \
             JavaScript).",
            b64url(&e2e)
        )));
    }
    let timer = timer_field(timer)?;
    if !ctx.state.limits.message_allowed(&me) {
        return Err(AppError::TooManyRequests);
    }
    let text = match clean_text(text, ctx.state.config.chat.max_message_bytes) {
        Ok(t) => zeroize::Zeroizing::new(t),
        Err(e) => return Ok(SendOutcome::Refused(e)),
    };
    let data_key = session.data_key.clone();
    let now = ctx.now;
    let commits = ctx.state.commits.clone();
    let sent = ctx
        .state
        .store
        .run(move |s| {
            super::send(
                s,
                &commits,
                &conversation,
                &me,
                &data_key,
                &text,
                now,
                timer,
            )
        })
        .await?
        .ok_or(AppError::NotFound)?;
    ctx.state.hub.publish(
        &[me, sent.recipient],
        Event::Message {
            conversation,
            seq: sent.seq,
        },
    );
    Ok(SendOutcome::Sent(conversation, sent))
}

/// `POST /chat/<id>`: the page's send form; back to the page (303) when sent.
async fn post_message(
    ctx: &mut Ctx,
    req: Request<Incoming>,
    id: Id,
) -> Result<Response<Body>, AppError> {
    let form = ctx.form(req).await?;
    let session = ctx.check_member_form(&form)?;
    match send(ctx, &session, id, form.text("message"), form.text("timer")).await? {
        SendOutcome::Sent(..) => Ok(redirect(&format!("/chat/{}?sent=1", b64url(&id)))),
        SendOutcome::Refused(e) => {
            let message = e.to_string();
            render_page(
                ctx,
                &session,
                id,
                None,
                text_error_status(e),
                PageMessage::error(&message),
            )
            .await
        }
    }
}

/// `POST /chat/send` as a form (`csrf`, `receiver_id`, `message`).
async fn send_form(ctx: &mut Ctx, req: Request<Incoming>) -> Result<Response<Body>, AppError> {
    let form = ctx.form(req).await?;
    let session = ctx.check_member_form(&form)?;
    let conversation = conversation_with(ctx, &session, form.text("receiver_id")).await?;
    match send(
        ctx,
        &session,
        conversation,
        form.text("message"),
        form.text("timer"),
    )
    .await?
    {
        SendOutcome::Sent(..) => Ok(redirect(&format!("/chat/{}?sent=1", b64url(&conversation)))),
        SendOutcome::Refused(e) => {
            let message = e.to_string();
            render_page(
                ctx,
                &session,
                conversation,
                None,
                text_error_status(e),
                PageMessage::error(&message),
            )
            .await
        }
    }
}

/// The message a delete form names: its sequence number (`seq`) and id (`message`,
/// base64url). Anything malformed names nothing: "not found".
fn message_fields(form: &crate::web::request::Form) -> Result<(u64, Id), AppError> {
    let seq = form.text("seq").trim();
    let seq = if seq.is_empty() || seq.len() > 20 || !seq.bytes().all(|b| b.is_ascii_digit()) {
        None
    } else {
        seq.parse::<u64>().ok()
    };
    let id = b64url_decode_exact::<16>(form.text("message").trim());
    match (seq, id) {
        (Some(seq), Some(id)) => Ok((seq, id)),
        _ => Err(AppError::NotFound),
    }
}

/// `POST /chat/<id>/delete` and `POST /chat/group/<id>/delete` (`csrf`, `seq`,
/// `message`): the sender deletes their message for everyone, as its self-destruct
/// deadline would (the row, its deadline and delivery marks, in one durable
/// transaction); open live streams hide it. Anything but one's own message in one's own
/// conversation (of one's current membership, in a group) is "not found", and nothing
/// changes.
pub(crate) async fn delete_message(
    ctx: &mut Ctx,
    req: Request<Incoming>,
    kind: Kind,
    id: Id,
) -> Result<Response<Body>, AppError> {
    let form = ctx.form(req).await?;
    let session = ctx.check_member_form(&form)?;
    let (seq, message) = message_fields(&form)?;
    let me = session.user_id;
    let members = ctx
        .state
        .store
        .run(move |s| match kind {
            Kind::Direct => super::delete::delete_own(s, &id, &me, seq, &message),
            Kind::Group => crate::groups::delete_own(s, &id, &me, seq, &message),
        })
        .await?
        .ok_or(AppError::NotFound)?;
    ctx.state.hub.publish(
        &members,
        Event::Expired {
            conversation: id,
            seq,
        },
    );
    tracing::debug!("message deleted by its sender");
    Ok(redirect(&format!(
        "{}?deleted=1",
        super::thread::page_path(kind, &id)
    )))
}

/// The accepted connection between the session's member and member `receiver_id`
/// (base64url), or `NotFound`.
async fn conversation_with(
    ctx: &Ctx,
    session: &Session,
    receiver_id: &str,
) -> Result<Id, AppError> {
    let receiver = b64url_decode_exact::<16>(receiver_id.trim()).ok_or(AppError::NotFound)?;
    let me = session.user_id;
    ctx.state
        .store
        .run(move |s| crate::connections::connection_between(s, &me, &receiver))
        .await?
        .ok_or(AppError::NotFound)
}

// ---------------------------------------------------------------------------------------
// JSON

/// A JSON response.
pub(crate) fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut r = Response::new(full(value.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r
}

/// JSON endpoints answer errors in JSON too, with the same status as the page would.
pub(crate) fn json_or_error(result: Result<Response<Body>, AppError>) -> Response<Body> {
    match result {
        Ok(r) => r,
        Err(e) => {
            let view = e.view();
            let body = match &e {
                AppError::Internal(detail) => {
                    let id = b64url(&crate::crypto::random_bytes::<6>());
                    tracing::error!(request_id = %id, detail = %detail, "request failed");
                    serde_json::json!({ "error": view.message, "request_id": id })
                }
                _ => serde_json::json!({ "error": view.message }),
            };
            json(view.status, &body)
        }
    }
}

/// The body of a JSON `POST /chat/send`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SendRequest {
    receiver_id: String,
    message: String,
    /// Self-destruct timer in seconds (one of the form's choices); none if absent.
    #[serde(default)]
    timer: Option<i64>,
}

impl Drop for SendRequest {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.message);
    }
}

/// `POST /chat/send` with `Content-Type: application/json` and the CSRF token in the
/// `X-CSRF-Token` header.
async fn send_json(ctx: &mut Ctx, req: Request<Incoming>) -> Result<Response<Body>, AppError> {
    let session = ctx.require_session()?;
    let token = req
        .headers()
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !session.csrf_ok(token) {
        return Err(AppError::Csrf);
    }
    let cfg = &ctx.state.config.server;
    let (parts, body) = req.into_parts();
    let bytes = read_body(
        &parts.headers,
        body,
        cfg.max_form_bytes,
        std::time::Duration::from_secs(cfg.body_timeout_secs),
    )
    .await?;
    let request: SendRequest = serde_json::from_slice(&bytes).map_err(|_| {
        AppError::BadRequest(
            "The body must be a JSON object with the strings receiver_id and message.".into(),
        )
    })?;
    let conversation = conversation_with(ctx, &session, &request.receiver_id).await?;
    let timer = request.timer.map(|t| t.to_string()).unwrap_or_default();
    match send(ctx, &session, conversation, &request.message, &timer).await? {
        SendOutcome::Sent(conversation, sent) => Ok(json(
            StatusCode::CREATED,
            &serde_json::json!({
                "id": b64url(&sent.id),
                "connection_id": b64url(&conversation),
                "seq": sent.seq,
                "sent_at": sent.sent_at,
            }),
        )),
        SendOutcome::Refused(e) => Ok(json(
            text_error_status(e),
            &serde_json::json!({ "error": e.to_string() }),
        )),
    }
}

/// `GET /chat/poll`: undelivered messages for the caller, now marked delivered.
async fn poll(ctx: &mut Ctx) -> Result<Response<Body>, AppError> {
    let session = ctx.require_session()?;
    let me = session.user_id;
    let data_key = session.data_key.clone();
    let now = ctx.now;
    let (messages, more) = ctx
        .state
        .store
        .run(move |s| super::poll(s, &me, &data_key, POLL_LIMIT, now))
        .await?;
    let messages: Vec<serde_json::Value> = messages
        .iter()
        .map(|p| {
            let m = &p.message;
            let mut v = serde_json::json!({
                "id": b64url(&m.id),
                "seq": m.seq,
                "sender_id": b64url(&m.sender),
                "sender": if m.mine { session.username.as_str() } else { p.sender_name.as_str() },
                "sent_at": m.sent_at,
                "expires_at": m.expires_at,
                "text": m.text,
                "signature": m.status.as_str(),
            });
            let key = if p.group { "group_id" } else { "connection_id" };
            if let Some(obj) = v.as_object_mut() {
                obj.insert(key.into(), b64url(&p.conversation).into());
            }
            v
        })
        .collect();
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "messages": messages, "more": more }),
    ))
}

// ---------------------------------------------------------------------------------------
// Online status

/// The caller's connections who are online now.
async fn online_entries(ctx: &Ctx, session: &Session) -> Result<Vec<OnlineEntry>, AppError> {
    let me = session.user_id;
    let overview = ctx
        .state
        .store
        .run(move |s| crate::connections::overview(s, &me))
        .await?;
    let now = ctx.now;
    Ok(overview
        .connected
        .into_iter()
        .filter(|e| ctx.state.hub.online(&e.other, now, &ctx.state.sessions))
        .map(|e| OnlineEntry {
            member: e.other,
            username: e.username,
            connection: e.connection,
        })
        .collect())
}

async fn online_page(ctx: &mut Ctx) -> Result<Response<Body>, AppError> {
    let Some(session) = ctx.session.clone() else {
        return Ok(redirect("/login"));
    };
    let entries = online_entries(ctx, &session).await?;
    let page = ctx.page();
    Ok(html(StatusCode::OK, views::online(&page, &entries)))
}

async fn online_json(ctx: &mut Ctx) -> Result<Response<Body>, AppError> {
    let session = ctx.require_session()?;
    let entries = online_entries(ctx, &session).await?;
    let online: Vec<serde_json::Value> = entries
        .iter()
        .map(|e| {
            serde_json::json!({
                "id": b64url(&e.member),
                "username": e.username,
                "connection_id": b64url(&e.connection),
            })
        })
        .collect();
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "online": online }),
    ))
}
