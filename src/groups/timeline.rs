//! A group's history as its page and live stream show it: messages and events in the
//! order of their sequence numbers, and how an event reads.

use maud::{Markup, html};

use super::events::{EventKind, EventShown};
use crate::chat::Shown;
use crate::chat::views::utc_minute;
use crate::store::Id;

/// One entry of a group's history.
#[derive(Debug, Clone, Copy)]
pub enum Item<'a> {
    Message(&'a Shown),
    Event(&'a EventShown),
}

impl Item<'_> {
    pub fn seq(&self) -> u64 {
        match self {
            Item::Message(m) => m.seq,
            Item::Event(e) => e.seq,
        }
    }
}

/// Messages and events (each oldest first) in one list, oldest first.
pub fn merge<'a>(messages: &'a [Shown], events: &'a [EventShown]) -> Vec<Item<'a>> {
    let mut out: Vec<Item<'a>> = messages
        .iter()
        .map(Item::Message)
        .chain(events.iter().map(Item::Event))
        .collect();
    out.sort_by_key(Item::seq);
    out
}

/// How a member named by an event reads to `me`: "You"/"you", their name, or someone
/// whose account is gone.
fn who(e: &EventShown, member: &Id, me: &Id, start: bool) -> String {
    if member == me {
        return if start { "You" } else { "you" }.to_owned();
    }
    match e.name_of(member) {
        Some(name) => name.to_owned(),
        None if start => "A former member".to_owned(),
        None => "a former member".to_owned(),
    }
}

/// The sentence an event reads as, for `me`.
pub fn describe(e: &EventShown, me: &Id) -> String {
    let s = |m: &Id| who(e, m, me, true);
    let o = |m: &Id| who(e, m, me, false);
    match &e.kind {
        EventKind::Created { by } => format!("{} created the group.", s(by)),
        EventKind::Invited { by, whom } => format!("{} invited {}.", s(by), o(whom)),
        EventKind::InvitationWithdrawn { by, whom } => {
            format!("{} withdrew the invitation of {}.", s(by), o(whom))
        }
        EventKind::Joined { whom } => format!("{} joined.", s(whom)),
        EventKind::Left { whom } => format!("{} left.", s(whom)),
        EventKind::Removed { by, whom } => format!("{} removed {}.", s(by), o(whom)),
        EventKind::MadeAdmin { by, whom } => format!("{} made {} an admin.", s(by), o(whom)),
        EventKind::AdminRevoked { by, whom } if by == whom => {
            format!("{} stepped down as admin.", s(whom))
        }
        EventKind::AdminRevoked { by, whom } => {
            format!("{} removed the admin role of {}.", s(by), o(whom))
        }
        EventKind::HandedOver { by: Some(by), to } => {
            format!("{} handed the group over to {}.", s(by), o(to))
        }
        EventKind::HandedOver { by: None, to } => {
            if to == me {
                "The creator left: you are now the group's creator.".to_owned()
            } else {
                format!("The creator left: {} is now the group's creator.", o(to))
            }
        }
        EventKind::MembersInvite { by, allowed: true } => {
            format!("{} let every member invite their own connections.", s(by))
        }
        EventKind::MembersInvite { by, allowed: false } => format!(
            "{} made inviting the task of the creator and admins again.",
            s(by)
        ),
    }
}

/// One event in the history (`id="e<seq>"`).
pub fn event(e: &EventShown, me: &Id) -> Markup {
    html! {
        p.event id=(format!("e{}", e.seq)) {
            @if let Some(at) = e.at { time { (utc_minute(at)) } " " }
            (describe(e, me))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: EventKind, names: &[(Id, &str)]) -> EventShown {
        EventShown {
            seq: 1,
            at: None,
            kind,
            names: names.iter().map(|(i, n)| (*i, (*n).to_owned())).collect(),
        }
    }

    #[test]
    fn events_read_as_sentences() {
        let (me, bob, gone) = ([1u8; 16], [2u8; 16], [3u8; 16]);
        let names = [(me, "me"), (bob, "bob")];
        let e = ev(EventKind::MadeAdmin { by: me, whom: bob }, &names);
        assert_eq!(describe(&e, &me), "You made bob an admin.");
        assert_eq!(describe(&e, &bob), "me made you an admin.");
        let e = ev(EventKind::Left { whom: gone }, &names);
        assert_eq!(describe(&e, &me), "A former member left.");
        let e = ev(EventKind::AdminRevoked { by: bob, whom: bob }, &names);
        assert_eq!(describe(&e, &me), "bob stepped down as admin.");
        let e = ev(EventKind::HandedOver { by: None, to: me }, &names);
        assert!(describe(&e, &me).contains("you are now the group's creator"));
        let e = ev(
            EventKind::Removed {
                by: bob,
                whom: gone,
            },
            &names,
        );
        assert_eq!(describe(&e, &me), "bob removed a former member.");
    }

    #[test]
    fn messages_and_events_interleave_by_number() {
        let m = |seq| Shown {
            seq,
            id: [0; 16],
            sender: [0; 16],
            mine: false,
            sent_at: 0,
            expires_at: None,
            text: None,
            status: crate::chat::Verification::Verified,
        };
        let messages = [m(2), m(5)];
        let events = [
            ev(EventKind::Joined { whom: [1; 16] }, &[]),
            EventShown {
                seq: 4,
                ..ev(EventKind::Left { whom: [1; 16] }, &[])
            },
        ];
        let order: Vec<u64> = merge(&messages, &events).iter().map(Item::seq).collect();
        assert_eq!(order, vec![1, 2, 4, 5]);
    }
}
