//! Group pages: the list of a member's groups and invitations, and one group's page
//! (members, management, send form, live stream, history). Pure functions; maud escapes
//! every name and message.

use maud::{Markup, html};

use super::events::EventShown;
use super::timeline::{Item, event, merge};
use super::{GroupEntry, InvitationEntry, MemberEntry, PendingEntry, Role, Roles};
use crate::chat::Shown;
use crate::chat::views::{MessageActions, date_of_day, message, timer_select};
use crate::clock::UnixTime;
use crate::connections::views::presence_badge;
use crate::crypto::b64url;
use crate::store::Id;
use crate::web::layout::{PageCtx, csrf_field, form_error, page};

/// `GET /chat/groups`.
pub fn list(
    ctx: &PageCtx,
    groups: &[GroupEntry],
    invitations: &[InvitationEntry],
    error: Option<&str>,
    notice: Option<&str>,
) -> Markup {
    page(
        ctx,
        "Groups",
        html! {
            @if let Some(n) = notice { p.notice role="status" { (n) } }
            @if !invitations.is_empty() {
                section.card aria-labelledby="inv" {
                    h2 id="inv" { "Invitations" }
                    ul.people.invitations {
                        @for i in invitations {
                            li {
                                strong.name { (i.name) }
                                " from " (i.inviter) " · " (date_of_day(i.day)) " "
                                form.inline method="post" action="/chat/accept" {
                                    (csrf_field(ctx))
                                    input type="hidden" name="group" value=(b64url(&i.group));
                                    button type="submit" { "Join" }
                                }
                                " "
                                form.inline method="post" action="/chat/decline" {
                                    (csrf_field(ctx))
                                    input type="hidden" name="group" value=(b64url(&i.group));
                                    button.link type="submit" { "Decline" }
                                }
                            }
                        }
                    }
                }
            }
            section.card aria-labelledby="mine" {
                h2 id="mine" { "Your groups" }
                @if groups.is_empty() {
                    p.muted { "You are not in any group." }
                } @else {
                    ul.people.groups {
                        @for g in groups {
                            li {
                                a.name href=(format!("/chat/group/{}", b64url(&g.id))) { (g.name) }
                                " · " (g.members) @if g.members == 1 { " member" } @else { " members" }
                                @if g.creator { " · you created it" }
                            }
                        }
                    }
                }
            }
            section.card aria-labelledby="new" {
                h2 id="new" { "New group" }
                (form_error(error))
                form.stack method="post" action="/chat/create" {
                    (csrf_field(ctx))
                    label {
                        "Name"
                        input type="text" name="name" required maxlength=(super::MAX_NAME_CHARS) dir="auto";
                    }
                    button type="submit" { "Create group" }
                }
                p.muted {
                    "You can invite members you are connected with. Messages are encrypted with a \
                     key that changes whenever someone joins or leaves."
                }
            }
        },
    )
}

/// Everything a group's page shows.
pub struct GroupPage<'a> {
    pub id: Id,
    pub name: &'a str,
    pub me: Id,
    pub roles: &'a Roles,
    pub epoch: u32,
    pub my_scheme: &'a str,
    /// Current members, each with whether they are online (`None`: not a connection of
    /// the viewer, whose presence they may not see).
    pub members: &'a [(MemberEntry, Option<bool>)],
    pub pending: &'a [PendingEntry],
    /// The viewer's connections who could be invited (usernames), if they may invite.
    pub invitable: &'a [String],
    pub messages: &'a [Shown],
    pub events: &'a [EventShown],
    pub older: Option<u64>,
    pub live_after: Option<u64>,
    pub error: Option<&'a str>,
    pub notice: Option<&'a str>,
    pub max_bytes: usize,
    pub now: UnixTime,
    pub sender_name: &'a dyn Fn(&Shown) -> String,
}

crate::connections::debug_without_names!(GroupPage<'_>);

fn member_form(ctx: &PageCtx, action: &str, group: &str, member: &Id, label: &str) -> Markup {
    html! {
        form.inline method="post" action=(action) {
            (csrf_field(ctx))
            input type="hidden" name="group" value=(group);
            input type="hidden" name="member" value=(b64url(member));
            button.link type="submit" { (label) }
        }
    }
}

/// The forms beside a member in the list, as far as the viewer may use them.
fn member_actions(ctx: &PageCtx, p: &GroupPage<'_>, group: &str, m: &MemberEntry) -> Markup {
    let mine = p.roles.role_of(&p.me);
    html! {
        @if p.roles.may_remove(&p.me, &m.id) {
            " " (member_form(ctx, "/chat/remove", group, &m.id, "Remove"))
        }
        @if mine == Role::Creator && m.role == Role::Member {
            " " (member_form(ctx, "/chat/promote", group, &m.id, "Make admin"))
        }
        @if mine == Role::Creator && m.role == Role::Admin {
            " " (member_form(ctx, "/chat/demote", group, &m.id, "Remove admin role"))
        }
        @if mine == Role::Admin && m.id == p.me {
            " " (member_form(ctx, "/chat/demote", group, &m.id, "Step down as admin"))
        }
    }
}

/// The creator's card: whether members may invite, and handing the group over.
fn owner_card(ctx: &PageCtx, p: &GroupPage<'_>, group: &str) -> Markup {
    let others: Vec<&MemberEntry> = p
        .members
        .iter()
        .map(|(m, _)| m)
        .filter(|m| m.id != p.me)
        .collect();
    html! {
        section.card aria-labelledby="manage" {
            h2 id="manage" { "Manage the group" }
            form.stack method="post" action="/chat/group-settings" {
                (csrf_field(ctx))
                input type="hidden" name="group" value=(group);
                label.check {
                    input type="checkbox" name="members_invite" value="1"
                        checked[p.roles.members_invite];
                    " Every member may invite their own connections"
                }
                small.hint { "Otherwise only you and the admins invite. Admins also remove members." }
                button type="submit" { "Save setting" }
            }
            @if !others.is_empty() {
                form.stack method="post" action="/chat/handover" {
                    (csrf_field(ctx))
                    input type="hidden" name="group" value=(group);
                    label {
                        "Hand the group over to"
                        select name="member" {
                            @for m in &others {
                                option value=(b64url(&m.id)) { (m.username) }
                            }
                        }
                        small { "They become its creator; you stay as an admin." }
                    }
                    button type="submit" { "Hand over" }
                }
            }
        }
    }
}

/// `GET /chat/group/<id>`.
pub fn group(ctx: &PageCtx, p: &GroupPage<'_>) -> Markup {
    let id = b64url(&p.id);
    let title = format!("Group: {}", p.name);
    let my_role = p.roles.role_of(&p.me);
    let delete_action = format!("/chat/group/{id}/delete");
    let actions = MessageActions {
        delete_action: &delete_action,
        csrf: &ctx.csrf,
        in_frame: false,
    };
    let timeline = merge(p.messages, p.events);
    page(
        ctx,
        &title,
        html! {
            @if let Some(n) = p.notice { p.notice.invite-notice role="status" { (n) } }
            p.status {
                (p.members.len()) @if p.members.len() == 1 { " member" } @else { " members" }
                " · key epoch " (p.epoch)
                @if let Some(r) = my_role.label() { " · you are its " (r) }
                " · " a href="/chat/groups" { "All groups" }
            }
            details.keys {
                summary { "Members, roles and keys" }
                p {
                    "Messages are encrypted with this group's key for the current membership, \
                     which changes whenever someone joins or leaves, and signed by each \
                     sender's own key for this group. You sign with " (p.my_scheme) "."
                }
                ul.people.members {
                    @for (m, online) in p.members {
                        li {
                            strong.name { (m.username) }
                            @if let Some(r) = m.role.label() { " (" (r) ")" }
                            @if let Some(on) = online { " " (presence_badge(*on)) }
                            " · " (m.scheme) " " code { (m.fingerprint) }
                            (member_actions(ctx, p, &id, m))
                        }
                    }
                }
                @if !p.pending.is_empty() {
                    p { "Invited, not yet joined:" }
                    ul.people.pending {
                        @for i in p.pending {
                            li {
                                strong.name { (i.username) }
                                @if p.roles.may_withdraw(&p.me, &i.inviter) {
                                    " " (member_form(ctx, "/chat/remove", &id, &i.id, "Withdraw invitation"))
                                }
                            }
                        }
                    }
                }
            }
            @if p.roles.may_invite(&p.me) {
                section.card aria-labelledby="invite" {
                    h2 id="invite" { "Invite" }
                    @if p.invitable.is_empty() {
                        p.muted { "None of your other connections can be invited." }
                    } @else {
                        form.stack method="post" action="/chat/invite" {
                            (csrf_field(ctx))
                            input type="hidden" name="group" value=(id);
                            label {
                                "Connection"
                                select name="username" {
                                    @for name in p.invitable {
                                        option value=(name) { (name) }
                                    }
                                }
                            }
                            button type="submit" { "Invite" }
                        }
                    }
                }
            }
            @if my_role == Role::Creator {
                (owner_card(ctx, p, &id))
            }
            @if p.live_after.is_some() {
                (form_error(p.error))
                form.stack.send method="post" action=(format!("/chat/group/{id}")) {
                    (csrf_field(ctx))
                    label {
                        "Message"
                        textarea name="message" rows="3" required maxlength=(p.max_bytes) dir="auto" {}
                        small { "Up to " (p.max_bytes) " bytes. Newest messages are at the top." }
                    }
                    (timer_select())
                    button type="submit" { "Send" }
                }
            }
            @if let Some(after) = p.live_after {
                iframe.live-frame src=(format!("/chat/group/{id}/live?after={after}&first=1"))
                    title="New messages, as they arrive" {}
            } @else {
                p { a href=(format!("/chat/group/{id}")) { "Back to the latest messages" } }
            }
            section.history aria-label="Earlier messages" {
                @if timeline.is_empty() && p.older.is_none() {
                    p.muted { "No messages since you joined." }
                }
                @for item in timeline.iter().rev() {
                    @match item {
                        Item::Message(m) => { (message(m, &(p.sender_name)(m), p.now, Some(&actions))) }
                        Item::Event(e) => { (event(e, &p.me)) }
                    }
                }
                @if let Some(before) = p.older {
                    p { a href=(format!("/chat/group/{id}?before={before}")) { "Older messages" } }
                }
            }
            section.card aria-labelledby="leave" {
                h2 id="leave" { "Leave" }
                p.muted {
                    "After you leave you cannot read this group any more, and nothing sent after \
                     you left is encrypted for you."
                    @if my_role == Role::Creator { " An admin (or, without admins, the longest-standing member) becomes the creator." }
                }
                form method="post" action="/chat/leave" {
                    (csrf_field(ctx))
                    input type="hidden" name="group" value=(id);
                    button.danger type="submit" { "Leave group" }
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> PageCtx {
        PageCtx {
            banner: false,
            user: Some("me".into()),
            csrf: "t".into(),
            nav: crate::web::layout::Nav::default(),
            can_register: true,
        }
    }

    #[test]
    fn hostile_names_are_escaped() {
        let hostile = "<script>\"&'\u{202e}";
        let g = GroupEntry {
            id: [1; 16],
            name: hostile.into(),
            members: 2,
            creator: true,
        };
        let i = InvitationEntry {
            group: [2; 16],
            name: hostile.into(),
            inviter: hostile.into(),
            day: 0,
        };
        let out = list(&ctx(), &[g], &[i], Some(hostile), None).into_string();
        assert!(!out.contains("<script>"));
        let members = [(
            MemberEntry {
                id: [3; 16],
                username: hostile.into(),
                scheme: "RSA-PSS-SHA256",
                fingerprint: "ab".into(),
                role: Role::Admin,
            },
            Some(true),
        )];
        let name = |_: &Shown| hostile.to_owned();
        let events = [EventShown {
            seq: 1,
            at: Some(0),
            kind: super::super::events::EventKind::MadeAdmin {
                by: [9; 16],
                whom: [3; 16],
            },
            names: vec![([3; 16], hostile.to_owned())],
        }];
        let out = group(
            &ctx(),
            &GroupPage {
                id: [1; 16],
                name: hostile,
                me: [9; 16],
                roles: &Roles {
                    creator: [9; 16],
                    admins: vec![[3; 16]],
                    members_invite: false,
                },
                epoch: 1,
                my_scheme: "DSA",
                members: &members,
                pending: &[],
                invitable: &[hostile.to_owned()],
                messages: &[],
                events: &events,
                older: None,
                live_after: Some(0),
                error: Some(hostile),
                notice: Some(hostile),
                max_bytes: 10,
                now: 0,
                sender_name: &name,
            },
        )
        .into_string();
        assert!(!out.contains("<script>"));
        assert!(out.contains("&lt;script&gt;"));
        assert!(out.contains("You made &lt;script&gt;"), "{out}");
        assert!(
            out.contains("action=\"/chat/demote\""),
            "the creator demotes admins"
        );
        assert!(out.contains("action=\"/chat/handover\""));
    }
}
