//! The end-to-end tier's routes: its three pages, its JSON API (what the browser reads
//! and the changes it asks for) and the WebSocket.
//!
//! Every POST is JSON (`Content-Type: application/json`) with the session's CSRF token in
//! `X-CSRF-Token`; errors are JSON too (`{"error": …}`) with the status a page would
//! have. Binary values are base64url without padding. Anything about a conversation
//! answers 404 to whoever is not an active participant of it, before looking further.

use base64::Engine as _;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::store::{self as e2e_store, E2eError};
use super::{
    ConversationKind, ConversationState, E2eMessageRecord, EpochRecord, MessageHeader,
    PublicKeysRecord, Recipient, SignScheme,
};
use crate::chat::handlers::{json, json_or_error};
use crate::chat::hub::Event;
use crate::crypto::{b64url, b64url_decode_exact};
use crate::store::{Id, StoreError};
use crate::web::Ctx;
use crate::web::error::AppError;
use crate::web::request::{media_type, read_body};
use crate::web::response::Body;
use crate::web::router::{GET, GET_ONLY, POST};
use crate::web::session::Session;

/// The routes under `/e2e`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum E2eRoute {
    /// `GET /e2e`: conversations, groups and invitations (page).
    Overview,
    /// `GET /e2e/setup`: turning end-to-end mode on, new keys (page).
    Setup,
    /// `GET /e2e/plain-login`: what a login without JavaScript let the server see (page).
    PlainLogin,
    /// `GET /e2e/c/<id>`: a conversation or group (page).
    Conversation(Id),
    /// `GET /e2e/ws`: the WebSocket.
    Socket,
    /// `GET /e2e/api/me`
    Me,
    /// `GET /e2e/api/list`
    List,
    /// `GET /e2e/api/conv/<id>?before=<seq>&after=<seq>`
    View(Id),
    /// `POST /e2e/api/<action>`
    Action(Action),
}

/// The changes the browser asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Keys,
    Rewrap,
    Propose,
    Accept,
    Epoch,
    GroupCreate,
    GroupInvite,
    GroupJoin,
    GroupDecline,
    GroupLeave,
    GroupRemove,
    Delete,
}

impl E2eRoute {
    /// The route for a path's segments. A malformed id is no route (404).
    pub fn resolve(segments: &[&str]) -> Option<Self> {
        Some(match segments {
            ["e2e"] => Self::Overview,
            ["e2e", "setup"] => Self::Setup,
            ["e2e", "plain-login"] => Self::PlainLogin,
            ["e2e", "c", id] => Self::Conversation(b64url_decode_exact(id)?),
            ["e2e", "ws"] => Self::Socket,
            ["e2e", "api", "me"] => Self::Me,
            ["e2e", "api", "list"] => Self::List,
            ["e2e", "api", "conv", id] => Self::View(b64url_decode_exact(id)?),
            ["e2e", "api", action] => Self::Action(match *action {
                "keys" => Action::Keys,
                "rewrap" => Action::Rewrap,
                "propose" => Action::Propose,
                "accept" => Action::Accept,
                "epoch" => Action::Epoch,
                "delete" => Action::Delete,
                _ => return None,
            }),
            ["e2e", "api", "group", action] => Self::Action(match *action {
                "create" => Action::GroupCreate,
                "invite" => Action::GroupInvite,
                "join" => Action::GroupJoin,
                "decline" => Action::GroupDecline,
                "leave" => Action::GroupLeave,
                "remove" => Action::GroupRemove,
                _ => return None,
            }),
            _ => return None,
        })
    }

    pub fn allow(&self) -> &'static str {
        match self {
            Self::Overview
            | Self::Setup
            | Self::PlainLogin
            | Self::Conversation(_)
            | Self::Me
            | Self::List => GET,
            // Opening the socket makes its member online: no HEAD.
            Self::Socket | Self::View(_) => GET_ONLY,
            Self::Action(_) => POST,
        }
    }
}

/// Run the handler of `route` (the router checked the method).
pub async fn dispatch(
    ctx: &mut Ctx,
    req: Request<Incoming>,
    route: E2eRoute,
) -> Result<Response<Body>, AppError> {
    match route {
        E2eRoute::Overview => super::pages::overview(ctx).await,
        E2eRoute::Setup => super::pages::setup(ctx).await,
        E2eRoute::PlainLogin => super::pages::plain_login(ctx),
        E2eRoute::Conversation(id) => super::pages::conversation(ctx, id).await,
        E2eRoute::Socket => super::ws::upgrade(ctx, req).await,
        E2eRoute::Me => Ok(json_or_error(me(ctx).await)),
        E2eRoute::List => Ok(json_or_error(list(ctx).await)),
        E2eRoute::View(id) => Ok(json_or_error(view(ctx, &req, id).await)),
        E2eRoute::Action(a) => Ok(json_or_error(action(ctx, req, a).await)),
    }
}

// ---------------------------------------------------------------------------------------
// JSON plumbing

/// A refusal as a JSON answer.
fn refusal(e: &E2eError) -> Response<Body> {
    let status = match e {
        E2eError::NotFound => StatusCode::NOT_FOUND,
        E2eError::Invalid(_) => StatusCode::BAD_REQUEST,
        E2eError::Conflict(_) => StatusCode::CONFLICT,
        E2eError::NotCreator => StatusCode::FORBIDDEN,
    };
    json(status, &json!({ "error": e.to_string() }))
}

/// Base64url (no padding) to bytes, at most `max` of them.
pub fn unb64(text: &str, max: usize) -> Option<Vec<u8>> {
    if text.len() > max.saturating_mul(4).div_ceil(3).saturating_add(4) {
        return None;
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .ok()
        .filter(|b| b.len() <= max)
}

fn id_of(text: &str) -> Result<Id, AppError> {
    b64url_decode_exact(text).ok_or(AppError::NotFound)
}

fn bad(what: &str) -> AppError {
    AppError::BadRequest(format!("The request is malformed: {what}."))
}

/// Read a JSON body after checking the session and the CSRF header.
async fn read_json<T: DeserializeOwned>(
    ctx: &Ctx,
    req: Request<Incoming>,
) -> Result<(std::sync::Arc<Session>, T), AppError> {
    let (session, bytes) = read_json_bytes(ctx, req).await?;
    let value = serde_json::from_slice(&bytes).map_err(|_| {
        AppError::BadRequest("The body is not the JSON this address expects.".into())
    })?;
    Ok((session, value))
}

/// The body of a JSON request, unparsed, after checking the session, the CSRF header and
/// the media type.
async fn read_json_bytes(
    ctx: &Ctx,
    req: Request<Incoming>,
) -> Result<(std::sync::Arc<Session>, bytes::Bytes), AppError> {
    let session = ctx.require_session()?;
    let token = req
        .headers()
        .get(crate::chat::handlers::CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !session.csrf_ok(token) {
        return Err(AppError::Csrf);
    }
    if media_type(req.headers()).as_deref() != Some("application/json") {
        return Err(AppError::UnsupportedMediaType);
    }
    let cfg = &ctx.state.config.server;
    let (parts, body) = req.into_parts();
    let limit = super::MAX_BLOB_CHARS
        .saturating_mul(2)
        .max(cfg.max_form_bytes);
    let bytes = read_body(
        &parts.headers,
        body,
        limit,
        std::time::Duration::from_secs(cfg.body_timeout_secs),
    )
    .await?;
    Ok((session, bytes))
}

async fn run<T: Send + 'static>(
    ctx: &Ctx,
    f: impl FnOnce(&crate::store::Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, AppError> {
    Ok(ctx.state.store.run(f).await?)
}

// ---------------------------------------------------------------------------------------
// Reading

/// `GET /e2e/api/me`: the member's keys (with the wrapped ring), the derivation's salt
/// and cost, and the scheme their signature setting asks for.
async fn me(ctx: &mut Ctx) -> Result<Response<Body>, AppError> {
    let session = ctx.require_session()?;
    let me = session.user_id;
    let data_key = session.data_key.clone();
    let name = session.username.clone();
    let policy = std::sync::Arc::clone(&ctx.state.accounts);
    let (record, ring, login, setting) = run(ctx, move |s| {
        let record = e2e_store::keys_of(s, &me)?;
        let ring = match &record {
            Some(r) => Some(e2e_store::open_ring(r, &data_key)?),
            None => None,
        };
        let login = crate::accounts::login_params(s, &policy, &name)?;
        let setting = crate::chat::signing::scheme_of(s, &me)?;
        Ok((record, ring, login, setting))
    })
    .await?;
    let keys = record.map(|r| {
        json!({
            "generation": r.generation,
            "scheme": r.public.scheme.name(),
            "enc_public": b64url(&r.public.enc_public),
            "sign_public": b64url(&r.public.sign_public),
        })
    });
    Ok(json(
        StatusCode::OK,
        &json!({
            "id": b64url(&me),
            "name": login.name,
            "salt": b64url(&login.salt),
            "iterations": login.iterations,
            "older_login": !login.sends_secret,
            "scheme": SignScheme::following(setting).name(),
            "keys": keys,
            "ring": ring.as_deref().map(String::as_str),
        }),
    ))
}

fn epoch_json(e: &e2e_store::EpochView) -> Value {
    json!({
        "epoch": e.epoch,
        "maker": b64url(&e.record.maker),
        "maker_generation": e.record.maker_generation,
        "recipients": e.record.recipients.iter().map(|r| json!({
            "member": b64url(&r.member),
            "generation": r.generation,
            "wrapped_hash": b64url(&r.wrapped_hash),
        })).collect::<Vec<_>>(),
        "name": b64url(&e.record.name),
        "signature": b64url(&e.record.signature),
        "wrapped": b64url(&e.wrapped),
    })
}

/// A stored message as the browser reads it.
pub fn message_json(conv: &Id, seq: u64, m: &E2eMessageRecord) -> Value {
    let h = &m.header;
    json!({
        "conv": b64url(conv),
        "seq": seq,
        "sender": b64url(&h.sender),
        "sender_generation": h.sender_generation,
        "epoch": h.epoch,
        "client_seq": h.client_seq,
        "sent_at": h.sent_at,
        "expires_at": h.expires_at,
        "iv": b64url(&m.iv),
        "ct": b64url(&m.ciphertext),
        "sig": b64url(&m.signature),
    })
}

/// `GET /e2e/api/list`
async fn list(ctx: &mut Ctx) -> Result<Response<Body>, AppError> {
    let session = ctx.require_session()?;
    let me = session.user_id;
    let (entries, invitations, connections) = run(ctx, move |s| {
        let (entries, invitations) = e2e_store::list(s, &me)?;
        let overview = crate::connections::overview(s, &me)?;
        let mut connections = Vec::new();
        for c in overview.connected {
            let conv = e2e_store::conversation_of_connection(s, &c.connection)?;
            let has_keys = e2e_store::keys_of(s, &c.other)?.is_some();
            connections.push((c.connection, c.username, conv, has_keys));
        }
        Ok((entries, invitations, connections))
    })
    .await?;
    let now = ctx.now;
    let online = |id: &Id| ctx.state.hub.online(id, now, &ctx.state.sessions);
    let conversations: Vec<Value> = entries
        .iter()
        .map(|e| {
            json!({
                "id": b64url(&e.id),
                "group": e.record.is_group(),
                "peer": e.peer,
                "state": state_name(&e.record.state, &me),
                "rekey": e.record.rekey,
                "name_epoch": e.name_epoch.as_ref().map(epoch_json),
            })
        })
        .collect();
    let _ = online;
    Ok(json(
        StatusCode::OK,
        &json!({
            "conversations": conversations,
            "invitations": invitations.iter().map(|i| json!({
                "group": b64url(&i.group),
                "inviter": i.inviter,
            })).collect::<Vec<_>>(),
            "connections": connections.iter().map(|(c, name, conv, keys)| json!({
                "connection": b64url(c),
                "name": name,
                "conversation": conv.map(|c| b64url(&c)),
                "has_keys": keys,
            })).collect::<Vec<_>>(),
        }),
    ))
}

fn state_name(state: &ConversationState, me: &Id) -> &'static str {
    match state {
        ConversationState::Proposed { by } if by == me => "proposed-by-me",
        ConversationState::Proposed { .. } => "proposed-to-me",
        ConversationState::Active => "active",
    }
}

/// `GET /e2e/api/conv/<id>`: everything a participant's browser needs to show it.
async fn view(ctx: &mut Ctx, req: &Request<Incoming>, id: Id) -> Result<Response<Body>, AppError> {
    let session = ctx.require_session()?;
    let q = ctx.query(req)?;
    let number = |name: &str| -> Result<Option<u64>, AppError> {
        q.get(name)
            .map(|v| v.parse::<u64>().map_err(|_| bad(name)))
            .transpose()
    };
    let (before, after) = (number("before")?, number("after")?);
    let me = session.user_id;
    let now = ctx.now;
    let view = run(ctx, move |s| {
        e2e_store::view(s, &me, &id, before, after, now)
    })
    .await?
    .ok_or(AppError::NotFound)?;
    let online = |m: &Id| m != &me && ctx.state.hub.online(m, now, &ctx.state.sessions);
    let (kind, creator) = match view.record.kind {
        ConversationKind::Direct { .. } => ("direct", None),
        ConversationKind::Group { creator } => ("group", Some(b64url(&creator))),
    };
    Ok(json(
        StatusCode::OK,
        &json!({
            "id": b64url(&id),
            "kind": kind,
            "creator": creator,
            "me": b64url(&me),
            "state": state_name(&view.record.state, &me),
            "epoch": view.record.epoch,
            "rekey": view.record.rekey,
            "from_epoch": view.me.from_epoch,
            "last_client_seq": view.me.last_client_seq,
            "now": now,
            "participants": view.participants.iter().map(|p| json!({
                "id": b64url(&p.id),
                "name": p.name,
                "active": p.active,
                "generation": p.generation,
                "online": p.active && online(&p.id),
            })).collect::<Vec<_>>(),
            "invited": view.invited.iter().map(|(i, n)| json!({
                "id": b64url(i), "name": n,
            })).collect::<Vec<_>>(),
            "epochs": view.epochs.iter().map(epoch_json).collect::<Vec<_>>(),
            "keys": view.keys.iter().map(|(m, g, k)| json!({
                "member": b64url(m),
                "generation": g,
                "scheme": k.scheme.name(),
                "enc_public": b64url(&k.enc_public),
                "sign_public": b64url(&k.sign_public),
            })).collect::<Vec<_>>(),
            "messages": view.messages.iter().map(|(seq, m)| message_json(&id, *seq, m)).collect::<Vec<_>>(),
            "older": view.older,
        }),
    ))
}

// ---------------------------------------------------------------------------------------
// Changes

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysBody {
    generation: u32,
    scheme: String,
    enc_public: String,
    sign_public: String,
    proof: String,
    ring: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RewrapBody {
    generation: u32,
    ring: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConvBody {
    conversation: String,
}

/// `POST /e2e/api/delete`: one of the member's own messages.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteBody {
    conversation: String,
    seq: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConnectionBody {
    connection: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InviteBody {
    group: String,
    username: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RemoveBody {
    group: String,
    member: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WrappedBody {
    member: String,
    generation: u32,
    wrapped: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EpochBody {
    conversation: String,
    epoch: u32,
    maker_generation: u32,
    recipients: Vec<WrappedBody>,
    #[serde(default)]
    name: String,
    signature: String,
}

pub fn ring_ok(ring: &str) -> bool {
    !ring.is_empty()
        && ring.len() <= super::MAX_BLOB_CHARS
        && ring
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// What a change answered, and whom to tell.
enum Done {
    Json(Value),
    Tell(Value, Vec<Id>, Event),
}

async fn action(
    ctx: &mut Ctx,
    req: Request<Incoming>,
    action: Action,
) -> Result<Response<Body>, AppError> {
    let outcome = match action {
        Action::Keys => keys(ctx, req).await?,
        Action::Rewrap => {
            let (session, body): (_, RewrapBody) = read_json(ctx, req).await?;
            if !ring_ok(&body.ring) {
                return Err(bad("ring"));
            }
            let me = session.user_id;
            let data_key = session.data_key.clone();
            run(ctx, move |s| {
                e2e_store::rewrap(s, &me, &data_key, body.generation, &body.ring)
            })
            .await?
            .map(|()| Done::Json(json!({ "ok": true })))
        }
        Action::Propose => {
            let (session, body): (_, ConnectionBody) = read_json(ctx, req).await?;
            let connection = id_of(&body.connection)?;
            let me = session.user_id;
            let now = ctx.now;
            run(ctx, move |s| e2e_store::propose(s, &me, &connection, now))
                .await?
                .map(|(conv, other)| {
                    Done::Tell(
                        json!({ "conversation": b64url(&conv) }),
                        vec![me, other],
                        Event::Membership { conversation: conv },
                    )
                })
        }
        Action::Accept => {
            let (session, body): (_, ConvBody) = read_json(ctx, req).await?;
            let conv = id_of(&body.conversation)?;
            let me = session.user_id;
            told(
                run(ctx, move |s| e2e_store::accept(s, &me, &conv)).await?,
                conv,
            )
        }
        Action::Epoch => epoch(ctx, req).await?,
        Action::Delete => delete(ctx, req).await?,
        Action::GroupCreate => {
            let (session, _body): (_, Value) = read_json(ctx, req).await?;
            let me = session.user_id;
            let now = ctx.now;
            run(ctx, move |s| e2e_store::create_group(s, &me, now))
                .await?
                .map(|g| Done::Json(json!({ "conversation": b64url(&g) })))
        }
        Action::GroupInvite => {
            let (session, body): (_, InviteBody) = read_json(ctx, req).await?;
            let group = id_of(&body.group)?;
            let me = session.user_id;
            if !ctx.state.limits.search_allowed(&me) {
                return Err(AppError::TooManyRequests);
            }
            let max = ctx.state.config.chat.max_group_members;
            let now = ctx.now;
            let username = body.username;
            match run(ctx, move |s| {
                let r = e2e_store::invite(s, &me, &group, &username, max, now)?;
                let members = e2e_store::active_participants(s, &group)?;
                Ok(r.map(|invitee| (invitee, members)))
            })
            .await?
            {
                Ok((invitee, mut members)) => {
                    let online = ctx.state.hub.online(&invitee, ctx.now, &ctx.state.sessions);
                    members.push(invitee);
                    Ok(Done::Tell(
                        json!({ "online": online }),
                        members,
                        Event::Membership {
                            conversation: group,
                        },
                    ))
                }
                Err(e) => Err(e),
            }
        }
        Action::GroupJoin => {
            let (session, body): (_, ConvBody) = read_json(ctx, req).await?;
            let group = id_of(&body.conversation)?;
            let me = session.user_id;
            told(
                run(ctx, move |s| e2e_store::join(s, &me, &group)).await?,
                group,
            )
        }
        Action::GroupDecline => {
            let (session, body): (_, ConvBody) = read_json(ctx, req).await?;
            let group = id_of(&body.conversation)?;
            let me = session.user_id;
            run(ctx, move |s| e2e_store::decline(s, &me, &group))
                .await?
                .map(|()| Done::Json(json!({ "ok": true })))
        }
        Action::GroupLeave => {
            let (session, body): (_, ConvBody) = read_json(ctx, req).await?;
            let group = id_of(&body.conversation)?;
            let me = session.user_id;
            let r = run(ctx, move |s| e2e_store::leave(s, &me, &group)).await?;
            if r.is_ok() {
                ctx.state.hub.publish(
                    &[me],
                    Event::Closed {
                        conversation: group,
                    },
                );
            }
            told(r, group)
        }
        Action::GroupRemove => {
            let (session, body): (_, RemoveBody) = read_json(ctx, req).await?;
            let group = id_of(&body.group)?;
            let member = id_of(&body.member)?;
            let me = session.user_id;
            let r = run(ctx, move |s| e2e_store::remove(s, &me, &group, &member)).await?;
            if r.is_ok() {
                ctx.state.hub.publish(
                    &[member],
                    Event::Closed {
                        conversation: group,
                    },
                );
            }
            told(r, group)
        }
    };
    Ok(match outcome {
        Ok(Done::Json(v)) => json(StatusCode::OK, &v),
        Ok(Done::Tell(v, members, event)) => {
            ctx.state.hub.publish(&members, event);
            json(StatusCode::OK, &v)
        }
        Err(e) => refusal(&e),
    })
}

/// A membership change: answer ok and tell the members' open pages.
fn told(r: Result<Vec<Id>, E2eError>, conversation: Id) -> Result<Done, E2eError> {
    r.map(|members| {
        Done::Tell(
            json!({ "ok": true }),
            members,
            Event::Membership { conversation },
        )
    })
}

/// Why an account on the older login cannot turn end-to-end mode on yet.
pub const OLDER_LOGIN: &str = "Your account still uses the older login, which sends your password \
     to the server: set your destruction password again in Settings (it may be the same one), \
     then turn end-to-end mode on.";

async fn keys(ctx: &mut Ctx, req: Request<Incoming>) -> Result<Result<Done, E2eError>, AppError> {
    let (session, body): (_, KeysBody) = read_json(ctx, req).await?;
    let scheme = SignScheme::from_name(&body.scheme).ok_or_else(|| bad("scheme"))?;
    let enc_public = unb64(&body.enc_public, 4096).ok_or_else(|| bad("enc_public"))?;
    let sign_public = unb64(&body.sign_public, 4096).ok_or_else(|| bad("sign_public"))?;
    let proof = unb64(&body.proof, 1024).ok_or_else(|| bad("proof"))?;
    if !ring_ok(&body.ring) {
        return Err(bad("ring"));
    }
    let me = session.user_id;
    let data_key = session.data_key.clone();
    let r: Result<Vec<(Id, Vec<Id>)>, E2eError> = run(ctx, move |s| {
        let setting = crate::chat::signing::scheme_of(s, &me)?;
        if SignScheme::following(setting) != scheme {
            return Ok(Err(E2eError::Invalid(
                "The signing key does not follow your signature setting. Reload the page.".into(),
            )));
        }
        // An account on the older login sends its password at every login, from which the
        // server could derive the wrapping secret: it moves first (Settings).
        if crate::accounts::passwords::uses_older_login(s, &me)? {
            return Ok(Err(E2eError::Conflict(OLDER_LOGIN.into())));
        }
        let public = PublicKeysRecord {
            scheme,
            enc_public,
            sign_public,
        };
        e2e_store::set_keys(
            s,
            &me,
            &data_key,
            body.generation,
            public,
            &proof,
            &body.ring,
        )
    })
    .await?;
    Ok(r.map(|touched| {
        for (conv, members) in touched {
            ctx.state
                .hub
                .publish(&members, Event::Membership { conversation: conv });
        }
        Done::Json(json!({ "ok": true }))
    }))
}

async fn epoch(ctx: &mut Ctx, req: Request<Incoming>) -> Result<Result<Done, E2eError>, AppError> {
    let (session, body): (_, EpochBody) = read_json(ctx, req).await?;
    let conv = id_of(&body.conversation)?;
    let name = if body.name.is_empty() {
        Vec::new()
    } else {
        unb64(&body.name, super::MAX_NAME_CT).ok_or_else(|| bad("name"))?
    };
    let signature = unb64(&body.signature, 1024).ok_or_else(|| bad("signature"))?;
    if body.recipients.len() > ctx.state.config.chat.max_group_members.max(2) {
        return Err(bad("recipients"));
    }
    let mut recipients = Vec::with_capacity(body.recipients.len());
    let mut wrapped = Vec::with_capacity(body.recipients.len());
    for r in &body.recipients {
        let member = b64url_decode_exact::<16>(&r.member).ok_or_else(|| bad("member"))?;
        let key = unb64(&r.wrapped, super::WRAPPED_KEY_BYTES).ok_or_else(|| bad("wrapped"))?;
        recipients.push(Recipient {
            member,
            generation: r.generation,
            wrapped_hash: crate::crypto::sha256(&key),
        });
        wrapped.push((member, key));
    }
    let me = session.user_id;
    let record = EpochRecord {
        maker: me,
        maker_generation: body.maker_generation,
        recipients,
        name,
        signature,
    };
    let epoch = body.epoch;
    let r = run(ctx, move |s| {
        e2e_store::post_epoch(s, &me, &conv, epoch, &record, &wrapped)
    })
    .await?;
    Ok(told(r, conv))
}

/// `POST /e2e/api/delete`: the sender deletes their message for everyone, as its
/// self-destruct deadline would, and the participants' open pages get the `expired` event.
/// Like the server-sealed deletion, anything that does not name one of the member's own
/// messages — a malformed body included — is "not found", and nothing changes.
async fn delete(ctx: &mut Ctx, req: Request<Incoming>) -> Result<Result<Done, E2eError>, AppError> {
    let (session, bytes) = read_json_bytes(ctx, req).await?;
    let Some((conv, seq)) = serde_json::from_slice::<DeleteBody>(&bytes)
        .ok()
        .and_then(|b| Some((b64url_decode_exact::<16>(&b.conversation)?, b.seq)))
    else {
        return Ok(Err(E2eError::NotFound));
    };
    let me = session.user_id;
    let now = ctx.now;
    let r = run(ctx, move |s| e2e_store::delete_own(s, &me, &conv, seq, now)).await?;
    Ok(r.map(|members| {
        Done::Tell(
            json!({ "ok": true }),
            members,
            Event::Expired {
                conversation: conv,
                seq,
            },
        )
    }))
}

/// Parse a message frame's fields into a record (used by the WebSocket).
pub fn parse_message(
    sender: Id,
    f: &super::ws::SendFrame,
) -> Result<(Id, E2eMessageRecord), &'static str> {
    let conv = b64url_decode_exact::<16>(&f.conv).ok_or("unknown conversation")?;
    let iv: [u8; 12] = unb64(&f.iv, 12)
        .and_then(|v| v.try_into().ok())
        .ok_or("malformed iv")?;
    let ciphertext = unb64(&f.ct, super::MAX_MESSAGE_CT).ok_or("malformed or oversized ct")?;
    let signature = unb64(&f.sig, 1024).ok_or("malformed sig")?;
    Ok((
        conv,
        E2eMessageRecord {
            header: MessageHeader {
                sender,
                sender_generation: f.generation,
                epoch: f.epoch,
                client_seq: f.client_seq,
                sent_at: f.sent_at,
                expires_at: f.expires_at,
            },
            iv,
            ciphertext,
            signature,
        },
    ))
}
