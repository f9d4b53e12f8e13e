//! Group handlers for roles and settings: `POST /chat/promote`, `POST /chat/demote`,
//! `POST /chat/handover` (`csrf`, `group`, `member`), `POST /chat/group-settings`
//! (`csrf`, `group`, `members_invite`). (Deleting a message is `chat`'s, for groups and
//! one-to-one chats alike.)
//!
//! A member without the right to an action gets the not-found page for it, exactly as a
//! non-member does, and nothing changes. Every change answers with a redirect to the
//! group page, which says what happened (`role="status"`); the change itself shows in the
//! group's history as an event, also in open live streams.

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

use super::handlers::{group_field, group_path, render_page};
use super::{RoleChange, RoleError};
use crate::chat::handlers::PageMessage;
use crate::chat::hub::Event;
use crate::crypto::b64url_decode_exact;
use crate::store::Id;
use crate::web::Ctx;
use crate::web::error::AppError;
use crate::web::request::Form;
use crate::web::response::{Body, redirect};

/// A management form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Manage {
    /// `POST /chat/promote`: make a member an admin (the creator).
    Promote,
    /// `POST /chat/demote`: take an admin's role (the creator), or step down (an admin).
    Demote,
    /// `POST /chat/handover`: make another member the creator (the creator).
    HandOver,
    /// `POST /chat/group-settings`: whether every member may invite (the creator).
    Settings,
}

/// What the group page says after a form of this module or a membership form
/// (post–redirect–get), from the query string.
pub fn notice(q: &Form) -> Option<&'static str> {
    [
        ("created", "Group created. Invite your connections below."),
        (
            "joined",
            "You joined the group. You read what is sent from now on.",
        ),
        (
            "removed",
            "The member has been removed. Messages from now on use a new key that they do not \
             have.",
        ),
        ("withdrawn", "The invitation has been withdrawn."),
        (
            "admin",
            "They are now an admin: they can invite and remove members.",
        ),
        ("demoted", "They are no longer an admin."),
        ("stepped-down", "You are no longer an admin."),
        (
            "handed-over",
            "The group is handed over: they are its creator now, and you are an admin.",
        ),
        (
            "invite-on",
            "Saved: every member may now invite their own connections.",
        ),
        ("invite-off", "Saved: only you and the admins invite."),
    ]
    .into_iter()
    .find(|(k, _)| q.get(k).is_some())
    .map(|(_, m)| m)
}

fn role_error_status(e: RoleError) -> StatusCode {
    match e {
        RoleError::NotThere => StatusCode::NOT_FOUND,
        RoleError::AlreadyAdmin | RoleError::NotAdmin => StatusCode::CONFLICT,
        RoleError::Yourself => StatusCode::BAD_REQUEST,
    }
}

/// Tell the open streams of `group`'s members that its history grew by an event that
/// starts no epoch (they show it as they show a new message).
pub(super) async fn publish_change(ctx: &Ctx, group: Id) {
    let latest = ctx
        .state
        .store
        .run(move |s| {
            let members = super::active_members(s, &group)?;
            let last = s
                .read()?
                .open_table(crate::store::tables::CONVERSATION_TO_LAST_SEQ)?
                .get(&group)?
                .map(|g| g.value());
            Ok((members, last))
        })
        .await;
    match latest {
        Ok((members, Some(seq))) => ctx.state.hub.publish(
            &members,
            Event::Message {
                conversation: group,
                seq,
            },
        ),
        Ok((_, None)) => {}
        Err(e) => tracing::warn!(error = %e, "telling streams about a group change failed"),
    }
}

/// The member a management form names; `None` if malformed (it names nobody).
fn member_field(form: &Form) -> Option<Id> {
    b64url_decode_exact::<16>(form.text("member").trim())
}

/// `POST /chat/promote`, `/chat/demote`, `/chat/handover`, `/chat/group-settings`.
pub async fn change(
    ctx: &mut Ctx,
    req: Request<Incoming>,
    what: Manage,
) -> Result<Response<Body>, AppError> {
    let form = ctx.form(req).await?;
    let session = ctx.check_member_form(&form)?;
    let group = group_field(&form)?;
    let me = session.user_id;
    let change = match what {
        Manage::Settings => Some(RoleChange::MembersInvite(
            !form.text("members_invite").is_empty(),
        )),
        Manage::Promote => member_field(&form).map(RoleChange::MakeAdmin),
        Manage::Demote => member_field(&form).map(RoleChange::RevokeAdmin),
        Manage::HandOver => member_field(&form).map(RoleChange::HandOver),
    };
    // The right first, before anything else about the request: "not found" without it.
    let roles = ctx
        .state
        .store
        .run(move |s| super::roles_for(s, &group, &me))
        .await?
        .ok_or(AppError::NotFound)?;
    let Some(change) = change.filter(|c| c.permitted(&roles, &me)) else {
        return Err(AppError::NotFound);
    };
    let data_key = session.data_key.clone();
    let now = ctx.now;
    let outcome = ctx
        .state
        .store
        .run(move |s| super::change_role(s, &group, &me, &data_key, change, now))
        .await?
        .ok_or(AppError::NotFound)?;
    match outcome {
        Ok(()) => {
            publish_change(ctx, group).await;
            tracing::debug!("group roles or settings changed");
            let done = match change {
                RoleChange::MakeAdmin(_) => "admin",
                RoleChange::RevokeAdmin(whom) if whom == me => "stepped-down",
                RoleChange::RevokeAdmin(_) => "demoted",
                RoleChange::HandOver(_) => "handed-over",
                RoleChange::MembersInvite(true) => "invite-on",
                RoleChange::MembersInvite(false) => "invite-off",
            };
            Ok(redirect(&format!("{}?{done}=1", group_path(&group))))
        }
        Err(e) => {
            let message = e.to_string();
            render_page(
                ctx,
                &session,
                group,
                None,
                role_error_status(e),
                PageMessage::error(&message),
                None,
            )
            .await
        }
    }
}
