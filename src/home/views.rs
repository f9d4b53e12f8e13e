//! The overview page. A pure function; maud escapes every name.

use maud::{Markup, html};

use super::{Expiring, Overview, Request, Unread};
use crate::chat::thread::{Kind, page_path};
use crate::chat::views::{date_of_day, utc_minute};
use crate::clock::UnixTime;
use crate::crypto::b64url;
use crate::groups::InvitationEntry;
use crate::web::layout::{PageCtx, page};

fn unread_item(u: &Unread) -> Markup {
    html! {
        li {
            @match u.kind {
                Kind::Direct => { a.name href=(page_path(u.kind, &u.conversation)) { (u.name) } }
                Kind::Group => {
                    "Group " a.name href=(page_path(u.kind, &u.conversation)) { (u.name) }
                }
            }
            " · " span.count { (u.count) } " unread"
        }
    }
}

fn request_item(r: &Request) -> Markup {
    html! {
        li {
            strong.name { (r.from) } " asked to connect · " (date_of_day(r.day)) " · "
            a href="/connections" { "Accept or deny" }
        }
    }
}

fn invitation_item(i: &InvitationEntry) -> Markup {
    html! {
        li {
            "Group " strong.name { (i.name) } " from " (i.inviter) " · " (date_of_day(i.day)) " · "
            a href="/chat/groups" { "Join or decline" }
        }
    }
}

/// "in 3 days", "in 5 hours", "within the hour".
fn time_left(seconds: i64) -> String {
    let hours = seconds / 3600;
    let days = seconds / 86_400;
    match (days, hours) {
        (d, _) if d >= 2 => format!("in {d} days"),
        (_, h) if h >= 2 => format!("in {h} hours"),
        _ => "within two hours".to_owned(),
    }
}

fn expiring_item(e: &Expiring, now: UnixTime) -> Markup {
    html! {
        li {
            a.name href=(format!("/file/{}", b64url(&e.file))) { (e.name) }
            " · expires " time { (utc_minute(e.expires_at)) }
            " (" (time_left(e.expires_at.saturating_sub(now))) ")"
        }
    }
}

/// A section of the overview: a heading, its items, or a line saying there are none.
fn section(id: &str, title: &str, empty: &str, items: Vec<Markup>) -> Markup {
    html! {
        section.card.overview aria-labelledby=(id) {
            h2 id=(id) { (title) }
            @if items.is_empty() {
                p.muted { (empty) }
            } @else {
                ul.people { @for i in items { (i) } }
            }
        }
    }
}

/// `GET /` for a logged-in member.
pub fn overview(ctx: &PageCtx, o: &Overview, now: UnixTime) -> Markup {
    let name = ctx.user.clone().unwrap_or_default();
    page(
        ctx,
        "Home",
        html! {
            p { "Welcome back, " strong { (name) } "." }
            @if o.is_empty() {
                p.notice role="status" { "Nothing waits for you." }
            }
            (section("unread", "Unread messages", "No unread messages.",
                o.unread.iter().map(unread_item).collect()))
            (section("requests", "Connection requests", "No requests to answer.",
                o.requests.iter().map(request_item).collect()))
            (section("invitations", "Group invitations", "No invitations.",
                o.invitations.iter().map(invitation_item).collect()))
            (section("expiring", "Your files expiring within 7 days", "None of your files expires within 7 days.",
                o.expiring.iter().map(|e| expiring_item(e, now)).collect()))
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_escaped_and_each_item_links_where_to_act() {
        let hostile = "<script>\"&'\u{202e}";
        let o = Overview {
            unread: vec![
                Unread {
                    kind: Kind::Direct,
                    conversation: [1; 16],
                    name: hostile.into(),
                    count: 3,
                },
                Unread {
                    kind: Kind::Group,
                    conversation: [2; 16],
                    name: hostile.into(),
                    count: 1,
                },
            ],
            requests: vec![Request {
                from: hostile.into(),
                day: 0,
            }],
            invitations: vec![InvitationEntry {
                group: [3; 16],
                name: hostile.into(),
                inviter: hostile.into(),
                day: 0,
            }],
            expiring: vec![Expiring {
                file: [4; 16],
                name: hostile.into(),
                expires_at: 3 * 86_400,
            }],
        };
        let ctx = PageCtx {
            banner: false,
            user: Some(hostile.into()),
            csrf: "t".into(),
            nav: crate::web::layout::Nav::default(),
            can_register: true,
        };
        let out = overview(&ctx, &o, 0).into_string();
        assert!(!out.contains("<script>"), "{out}");
        assert!(out.contains("&lt;script&gt;"));
        assert!(out.contains(&format!("href=\"/chat/{}\"", b64url(&[1; 16]))));
        assert!(out.contains(&format!("href=\"/chat/group/{}\"", b64url(&[2; 16]))));
        assert!(out.contains(&format!("href=\"/file/{}\"", b64url(&[4; 16]))));
        assert!(out.contains("in 3 days"));
        assert!(!out.contains("Nothing waits"));
        let empty = overview(&ctx, &Overview::default(), 0).into_string();
        assert!(empty.contains("Nothing waits for you."));
    }

    #[test]
    fn time_left_reads_naturally() {
        assert_eq!(time_left(3 * 86_400), "in 3 days");
        assert_eq!(time_left(86_400 + 3600), "in 25 hours");
        assert_eq!(time_left(5 * 3600), "in 5 hours");
        assert_eq!(time_left(3599), "within two hours");
    }
}
