//! Group handlers. Route names kept from GhostCache: `POST /chat/create`,
//! `POST /chat/invite`, `POST /chat/leave`; besides them `GET /chat/groups` (list and
//! invitations), `POST /chat/accept` and `POST /chat/decline` (the invitee),
//! `POST /chat/remove` (a member, or a pending invitation), and `GET/POST
//! /chat/group/<id>` (the page and its send form) with its live stream
//! `GET /chat/group/<id>/live?after=<seq>`. Roles, settings and deleting a message are in
//! [`super::manage`].
//!
//! Every form carries the CSRF token (checked first: 403 and nothing changes) and names
//! the group in a `group` field. Anything about a group answers the not-found page to
//! someone who is not a current member (for accept and decline: not a current invitee),
//! whatever else the request says, and so does an action to a member without the right
//! to it. Every change answers with a redirect to a page that says what happened.

use std::collections::HashSet;

use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};

use super::manage::{self, Manage};
use super::views::{self, GroupPage};
use super::{InviteError, NameError, RemoveError, Removed, clean_name};
use crate::chat::handlers::{PageMessage, text_error_status, timer_field};
use crate::chat::hub::Event;
use crate::chat::live::{self, CHAT_PAGE_CSP};
use crate::chat::thread::Kind;
use crate::chat::{HISTORY_PAGE, clean_text};
use crate::crypto::{b64url, b64url_decode_exact};
use crate::store::Id;
use crate::web::Ctx;
use crate::web::error::AppError;
use crate::web::request::Form;
use crate::web::response::{Body, html, redirect};
use crate::web::router::{GET, GET_ONLY, GET_ONLY_POST, POST};
use crate::web::session::Session;

/// The routes of this module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupRoute {
    /// `GET /chat/groups`
    List,
    /// `POST /chat/create`
    Create,
    /// `POST /chat/invite`
    Invite,
    /// `POST /chat/accept`
    Accept,
    /// `POST /chat/decline`
    Decline,
    /// `POST /chat/leave`
    Leave,
    /// `POST /chat/remove`
    Remove,
    /// `POST /chat/promote`, `/chat/demote`, `/chat/handover`, `/chat/group-settings`
    Manage(Manage),
    /// `GET/POST /chat/group/<id>`
    Page(Id),
    /// `GET /chat/group/<id>/live?after=<seq>`
    Live(Id),
    /// `POST /chat/group/<id>/delete` (`seq`, `message`)
    Delete(Id),
}

impl GroupRoute {
    /// The route for a path's segments. A malformed id is no route (so: 404).
    pub fn resolve(segments: &[&str]) -> Option<Self> {
        Some(match segments {
            ["chat", "groups"] => Self::List,
            ["chat", "create"] => Self::Create,
            ["chat", "invite"] => Self::Invite,
            ["chat", "accept"] => Self::Accept,
            ["chat", "decline"] => Self::Decline,
            ["chat", "leave"] => Self::Leave,
            ["chat", "remove"] => Self::Remove,
            ["chat", "promote"] => Self::Manage(Manage::Promote),
            ["chat", "demote"] => Self::Manage(Manage::Demote),
            ["chat", "handover"] => Self::Manage(Manage::HandOver),
            ["chat", "group-settings"] => Self::Manage(Manage::Settings),
            ["chat", "group", id] => Self::Page(b64url_decode_exact(id)?),
            ["chat", "group", id, "live"] => Self::Live(b64url_decode_exact(id)?),
            ["chat", "group", id, "delete"] => Self::Delete(b64url_decode_exact(id)?),
            _ => return None,
        })
    }

    /// Methods this route accepts (the `Allow` header of a 405).
    pub fn allow(&self) -> &'static str {
        match self {
            Self::List => GET,
            // Reading a group marks its messages delivered; see `chat`.
            Self::Live(_) => GET_ONLY,
            Self::Page(_) => GET_ONLY_POST,
            Self::Create
            | Self::Invite
            | Self::Accept
            | Self::Decline
            | Self::Leave
            | Self::Remove
            | Self::Manage(_)
            | Self::Delete(_) => POST,
        }
    }
}

/// Run the handler of `route` (the router checked the method against `allow`).
pub async fn dispatch(
    ctx: &mut Ctx,
    req: Request<Incoming>,
    route: GroupRoute,
) -> Result<Response<Body>, AppError> {
    let post = req.method() == hyper::Method::POST;
    match route {
        GroupRoute::List => list(ctx, req).await,
        GroupRoute::Create => create(ctx, req).await,
        GroupRoute::Invite => invite(ctx, req).await,
        GroupRoute::Accept => accept(ctx, req).await,
        GroupRoute::Decline => decline(ctx, req).await,
        GroupRoute::Leave => leave(ctx, req).await,
        GroupRoute::Remove => remove(ctx, req).await,
        GroupRoute::Manage(what) => manage::change(ctx, req, what).await,
        GroupRoute::Delete(id) => {
            crate::chat::handlers::delete_message(ctx, req, Kind::Group, id).await
        }
        GroupRoute::Page(id) if post => post_message(ctx, req, id).await,
        GroupRoute::Page(id) => page(ctx, req, id).await,
        // Errors here are shown inside the page's frame, so they are framable.
        GroupRoute::Live(id) => Ok(live::serve(ctx, &req, Kind::Group, id).await),
    }
}

/// The group named by a form's `group` field; a malformed id is "not found".
pub(super) fn group_field(form: &Form) -> Result<Id, AppError> {
    b64url_decode_exact::<16>(form.text("group").trim()).ok_or(AppError::NotFound)
}

pub(super) fn group_path(id: &Id) -> String {
    format!("/chat/group/{}", b64url(id))
}

// ---------------------------------------------------------------------------------------
// The list

async fn render_list(
    ctx: &mut Ctx,
    session: &Session,
    status: StatusCode,
    error: Option<&str>,
    notice: Option<&str>,
) -> Result<Response<Body>, AppError> {
    let me = session.user_id;
    let data_key = session.data_key.clone();
    let (groups, invitations) = ctx
        .state
        .store
        .run(move |s| super::overview(s, &me, &data_key))
        .await?;
    let page = ctx.page();
    Ok(html(
        status,
        views::list(&page, &groups, &invitations, error, notice),
    ))
}

async fn list(ctx: &mut Ctx, req: Request<Incoming>) -> Result<Response<Body>, AppError> {
    let Some(session) = ctx.session.clone() else {
        return Ok(redirect("/login"));
    };
    let q = ctx.query(&req)?;
    let notice = if q.get("left").is_some() {
        Some("You left the group.")
    } else if q.get("declined").is_some() {
        Some("Invitation declined.")
    } else if q.get("deleted").is_some() {
        Some(
            "You left the group. You were its last member, so it is deleted with all its messages.",
        )
    } else {
        None
    };
    render_list(ctx, &session, StatusCode::OK, None, notice).await
}

fn name_error_status(_: NameError) -> StatusCode {
    StatusCode::BAD_REQUEST
}

/// `POST /chat/create` (`csrf`, `name`).
async fn create(ctx: &mut Ctx, req: Request<Incoming>) -> Result<Response<Body>, AppError> {
    let form = ctx.form(req).await?;
    let session = ctx.check_member_form(&form)?;
    let me = session.user_id;
    let name = match clean_name(form.text("name")) {
        Ok(n) => n,
        Err(e) => {
            let message = e.to_string();
            return render_list(ctx, &session, name_error_status(e), Some(&message), None).await;
        }
    };
    if !ctx.state.limits.connect_allowed(&me) {
        return Err(AppError::TooManyRequests);
    }
    let signing = ctx.state.new_signing_key_for(me).await?;
    let data_key = session.data_key.clone();
    let now = ctx.now;
    let id = ctx
        .state
        .store
        .run(move |s| super::create(s, &me, &data_key, &name, &signing, now))
        .await?;
    tracing::debug!("group created");
    Ok(redirect(&format!("{}?created=1", group_path(&id))))
}

// ---------------------------------------------------------------------------------------
// The group page

/// Render the page of group `id` for the session's member (`NotFound` unless a current
/// member). `notice` says what the form before did; `notice_for`, an invitee, adds
/// whether they can join now.
pub(super) async fn render_page(
    ctx: &mut Ctx,
    session: &Session,
    id: Id,
    before: Option<u64>,
    status: StatusCode,
    message: PageMessage<'_>,
    notice_for: Option<Id>,
) -> Result<Response<Body>, AppError> {
    let me = session.user_id;
    let data_key = session.data_key.clone();
    let now = ctx.now;
    let commits = ctx.state.commits.clone();
    let loaded = ctx
        .state
        .store
        .run(move |s| {
            let Some(view) = super::open(s, &id, &me, &data_key)? else {
                return Ok(None);
            };
            let (messages, more) = view.history(s, before, HISTORY_PAGE, now)?;
            if before.is_none()
                && let Some(last) = messages.last()
            {
                crate::chat::mark_delivered(s, &commits, &me, &id, last.seq)?;
            }
            // The events among these messages: back to the oldest one shown when older
            // messages exist, else back to the start of this membership.
            let from = match (more, messages.first()) {
                (true, Some(first)) => first.seq,
                _ => 0,
            };
            let to = before.map_or(u64::MAX, |b| b.saturating_sub(1));
            let events = view.events(s, from, to)?;
            let connections = crate::connections::connected_ids(s, &me)?;
            let mut invitable = Vec::new();
            if view.i_may_invite() {
                let inside: HashSet<Id> = view
                    .members
                    .iter()
                    .map(|m| m.id)
                    .chain(view.pending.iter().map(|p| p.id))
                    .collect();
                let overview = crate::connections::overview(s, &me)?;
                invitable = overview
                    .connected
                    .into_iter()
                    .filter(|e| !inside.contains(&e.other))
                    .map(|e| e.username)
                    .collect();
            }
            Ok(Some((view, messages, events, more, connections, invitable)))
        })
        .await?;
    let Some((view, messages, events, more, connections, invitable)) = loaded else {
        return Err(AppError::NotFound);
    };
    // Reading may have marked messages delivered: the navigation counts again.
    ctx.load_nav().await;
    let now = ctx.now;
    let connected: HashSet<Id> = connections.iter().map(|(_, other)| *other).collect();
    let members: Vec<_> = view
        .members
        .iter()
        .map(|m| {
            let online = connected
                .contains(&m.id)
                .then(|| ctx.state.hub.online(&m.id, now, &ctx.state.sessions));
            (m.clone(), online)
        })
        .collect();
    // The notice after an invitation: whether the invitee can accept now.
    let invite_notice = notice_for.and_then(|invitee| {
        let name = view
            .pending
            .iter()
            .find(|p| p.id == invitee)?
            .username
            .clone();
        Some(
            if ctx.state.hub.online(&invitee, now, &ctx.state.sessions) {
                format!("{name} is invited and online: they can join now.")
            } else {
                format!(
                    "{name} is offline. The invitation waits for them: they will see it when they \
                 next log in, and can join or decline then."
                )
            },
        )
    });
    let live_after = match before {
        None => Some(
            messages
                .last()
                .map_or(0, |m| m.seq)
                .max(events.last().map_or(0, |e| e.seq))
                .max(view.first_seq.saturating_sub(1)),
        ),
        Some(_) => None,
    };
    let older = if more {
        messages.first().map(|m| m.seq)
    } else {
        None
    };
    let sender_name = |m: &crate::chat::Shown| view.name_of(&m.sender).to_owned();
    let page = ctx.page();
    let markup = views::group(
        &page,
        &GroupPage {
            id,
            name: &view.name,
            me,
            roles: &view.roles,
            epoch: view.epoch,
            my_scheme: view.my_scheme(),
            members: &members,
            pending: &view.pending,
            invitable: &invitable,
            messages: &messages,
            events: &events,
            older,
            live_after,
            error: message.error,
            notice: invite_notice.as_deref().or(message.notice),
            max_bytes: ctx.state.config.chat.max_message_bytes,
            now,
            sender_name: &sender_name,
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
    let bad = || AppError::BadRequest("The address was not correctly formed.".into());
    let before = match q.get("before") {
        None => None,
        Some(b) => Some(b.parse::<u64>().map_err(|_| bad())?),
    };
    let invited = match q.get("invited") {
        None => None,
        Some(i) => Some(b64url_decode_exact::<16>(i).ok_or_else(bad)?),
    };
    let notice = crate::chat::handlers::chat_notice(&q).or_else(|| manage::notice(&q));
    render_page(
        ctx,
        &session,
        id,
        before,
        StatusCode::OK,
        PageMessage::notice(notice),
        invited,
    )
    .await
}

/// `POST /chat/group/<id>` (`csrf`, `message`, `timer`): send; back to the page.
async fn post_message(
    ctx: &mut Ctx,
    req: Request<Incoming>,
    id: Id,
) -> Result<Response<Body>, AppError> {
    let form = ctx.form(req).await?;
    let session = ctx.check_member_form(&form)?;
    let me = session.user_id;
    // Membership first: someone else's group is "not found", whatever the text.
    if !ctx
        .state
        .store
        .run(move |s| super::is_member(s, &id, &me))
        .await?
    {
        return Err(AppError::NotFound);
    }
    let timer = timer_field(form.text("timer"))?;
    if !ctx.state.limits.message_allowed(&me) {
        return Err(AppError::TooManyRequests);
    }
    let text = match clean_text(
        form.text("message"),
        ctx.state.config.chat.max_message_bytes,
    ) {
        Ok(t) => zeroize::Zeroizing::new(t),
        Err(e) => {
            let message = e.to_string();
            return render_page(
                ctx,
                &session,
                id,
                None,
                text_error_status(e),
                PageMessage::error(&message),
                None,
            )
            .await;
        }
    };
    let data_key = session.data_key.clone();
    let now = ctx.now;
    let commits = ctx.state.commits.clone();
    let sent = ctx
        .state
        .store
        .run(move |s| super::send(s, &commits, &id, &me, &data_key, &text, now, timer))
        .await?
        .ok_or(AppError::NotFound)?;
    ctx.state.hub.publish(
        &sent.members,
        Event::Message {
            conversation: id,
            seq: sent.seq,
        },
    );
    Ok(redirect(&format!("{}?sent=1", group_path(&id))))
}

// ---------------------------------------------------------------------------------------
// Membership

fn invite_error_status(e: InviteError) -> StatusCode {
    match e {
        InviteError::NotConnected => StatusCode::BAD_REQUEST,
        InviteError::AlreadyMember | InviteError::AlreadyInvited | InviteError::Full(_) => {
            StatusCode::CONFLICT
        }
    }
}

/// `POST /chat/invite` (`csrf`, `group`, `username`): the creator or an admin (or any
/// member, if the group allows it) invites one of their connections. The page then says
/// whether the invitee is online (they can join now) or offline (the invitation waits
/// for them). Anyone else gets the not-found page.
async fn invite(ctx: &mut Ctx, req: Request<Incoming>) -> Result<Response<Body>, AppError> {
    let form = ctx.form(req).await?;
    let session = ctx.check_member_form(&form)?;
    let group = group_field(&form)?;
    let me = session.user_id;
    let may_invite = ctx
        .state
        .store
        .run(move |s| super::roles_for(s, &group, &me))
        .await?
        .is_some_and(|r| r.may_invite(&me));
    if !may_invite {
        return Err(AppError::NotFound);
    }
    if !ctx.state.limits.group_invite_allowed(&me) {
        return Err(AppError::TooManyRequests);
    }
    let username = form.text("username").trim().to_owned();
    let data_key = session.data_key.clone();
    let max = ctx.state.config.chat.max_group_members;
    let now = ctx.now;
    let outcome = ctx
        .state
        .store
        .run(move |s| super::invite(s, &group, &me, &data_key, &username, max, now))
        .await?
        .ok_or(AppError::NotFound)?;
    match outcome {
        Ok(invited) => {
            tracing::debug!("group invitation sent");
            manage::publish_change(ctx, group).await;
            Ok(redirect(&format!(
                "{}?invited={}",
                group_path(&group),
                b64url(&invited.invitee)
            )))
        }
        Err(e) => {
            let message = e.to_string();
            render_page(
                ctx,
                &session,
                group,
                None,
                invite_error_status(e),
                PageMessage::error(&message),
                None,
            )
            .await
        }
    }
}

/// `POST /chat/accept` (`csrf`, `group`): the invitee joins.
async fn accept(ctx: &mut Ctx, req: Request<Incoming>) -> Result<Response<Body>, AppError> {
    let form = ctx.form(req).await?;
    let session = ctx.check_member_form(&form)?;
    let group = group_field(&form)?;
    let me = session.user_id;
    // Check before making a key, so that a bad id costs nothing.
    if !ctx
        .state
        .store
        .run(move |s| super::is_invited(s, &group, &me))
        .await?
    {
        return Err(AppError::NotFound);
    }
    let signing = ctx.state.new_signing_key_for(me).await?;
    let data_key = session.data_key.clone();
    let now = ctx.now;
    let members = ctx
        .state
        .store
        .run(move |s| super::accept(s, &group, &me, &data_key, &signing, now))
        .await?
        .ok_or(AppError::NotFound)?;
    ctx.state.hub.publish(
        &members,
        Event::Membership {
            conversation: group,
        },
    );
    tracing::debug!("group joined");
    Ok(redirect(&format!("{}?joined=1", group_path(&group))))
}

/// `POST /chat/decline` (`csrf`, `group`): the invitee declines.
async fn decline(ctx: &mut Ctx, req: Request<Incoming>) -> Result<Response<Body>, AppError> {
    let form = ctx.form(req).await?;
    let session = ctx.check_member_form(&form)?;
    let group = group_field(&form)?;
    let me = session.user_id;
    if ctx
        .state
        .store
        .run(move |s| super::decline(s, &group, &me))
        .await?
    {
        Ok(redirect("/chat/groups?declined=1"))
    } else {
        Err(AppError::NotFound)
    }
}

/// Tell open streams about a departure: the member who went is out, the rest have a new
/// epoch.
fn publish_departure(ctx: &Ctx, group: Id, gone: Id, remaining: &[Id]) {
    ctx.state.hub.publish(
        &[gone],
        Event::Closed {
            conversation: group,
        },
    );
    ctx.state.hub.publish(
        remaining,
        Event::Membership {
            conversation: group,
        },
    );
}

/// `POST /chat/leave` (`csrf`, `group`).
async fn leave(ctx: &mut Ctx, req: Request<Incoming>) -> Result<Response<Body>, AppError> {
    let form = ctx.form(req).await?;
    let session = ctx.check_member_form(&form)?;
    let group = group_field(&form)?;
    let me = session.user_id;
    let now = ctx.now;
    let departure = ctx
        .state
        .store
        .run(move |s| super::leave(s, &group, &me, now))
        .await?
        .ok_or(AppError::NotFound)?;
    publish_departure(ctx, group, me, &departure.remaining);
    tracing::debug!(group_deleted = departure.group_deleted, "left a group");
    if departure.group_deleted {
        Ok(redirect("/chat/groups?deleted=1"))
    } else {
        Ok(redirect("/chat/groups?left=1"))
    }
}

fn remove_error_status(e: RemoveError) -> StatusCode {
    match e {
        RemoveError::Yourself => StatusCode::BAD_REQUEST,
        RemoveError::NotThere => StatusCode::NOT_FOUND,
    }
}

/// `POST /chat/remove` (`csrf`, `group`, `member`): the creator or an admin removes a
/// member (an admin: plain members only), or withdraws an invitation (also whoever made
/// it). Anyone without the right gets the not-found page, and nothing changes.
async fn remove(ctx: &mut Ctx, req: Request<Incoming>) -> Result<Response<Body>, AppError> {
    let form = ctx.form(req).await?;
    let session = ctx.check_member_form(&form)?;
    let group = group_field(&form)?;
    let me = session.user_id;
    let target = b64url_decode_exact::<16>(form.text("member").trim());
    let data_key = session.data_key.clone();
    let now = ctx.now;
    let outcome = ctx
        .state
        .store
        .run(move |s| match target {
            Some(t) => super::remove(s, &group, &me, &data_key, &t, now),
            // A malformed member id: not found, once we know the caller may ask at all.
            None => Ok(super::is_member(s, &group, &me)?.then_some(Err(RemoveError::NotThere))),
        })
        .await?
        .ok_or(AppError::NotFound)?;
    match outcome {
        Ok(Removed::Member { removed, departure }) => {
            publish_departure(ctx, group, removed, &departure.remaining);
            tracing::debug!("removed a group member");
            Ok(redirect(&format!("{}?removed=1", group_path(&group))))
        }
        Ok(Removed::Invitation(_)) => {
            manage::publish_change(ctx, group).await;
            Ok(redirect(&format!("{}?withdrawn=1", group_path(&group))))
        }
        Err(e) => {
            let message = e.to_string();
            render_page(
                ctx,
                &session,
                group,
                None,
                remove_error_status(e),
                PageMessage::error(&message),
                None,
            )
            .await
        }
    }
}
