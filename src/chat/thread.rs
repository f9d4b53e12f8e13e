//! A conversation as one member reads it: a one-to-one chat ([`Conversation`]) or a group
//! ([`GroupView`]). The live stream, `/chat/poll` and the expiry of messages work on
//! either through this one type, so groups reuse the one-to-one machinery as it is.

use super::{Conversation, Shown};
use crate::clock::UnixTime;
use crate::crypto::{SecretKey, b64url};
use crate::groups::GroupView;
use crate::store::{Id, Store, StoreError};

/// Which kind of conversation an address names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Direct,
    Group,
}

/// A conversation opened for one member. Holds its keys.
#[derive(Debug)]
pub enum Thread {
    Direct(Conversation),
    Group(GroupView),
}

impl Thread {
    /// Open conversation `id` of `kind` for `me`; `None` when they may not read it.
    pub fn open_kind(
        store: &Store,
        kind: Kind,
        id: &Id,
        me: &Id,
        data_key: &SecretKey,
    ) -> Result<Option<Self>, StoreError> {
        Ok(match kind {
            Kind::Direct => super::open(store, id, me, data_key)?.map(Thread::Direct),
            Kind::Group => crate::groups::open(store, id, me, data_key)?.map(Thread::Group),
        })
    }

    /// Open conversation `id` for `me`, whichever kind it is.
    pub fn open(
        store: &Store,
        id: &Id,
        me: &Id,
        data_key: &SecretKey,
    ) -> Result<Option<Self>, StoreError> {
        match Self::open_kind(store, Kind::Direct, id, me, data_key)? {
            Some(t) => Ok(Some(t)),
            None => Self::open_kind(store, Kind::Group, id, me, data_key),
        }
    }

    pub fn kind(&self) -> Kind {
        match self {
            Thread::Direct(_) => Kind::Direct,
            Thread::Group(_) => Kind::Group,
        }
    }

    pub fn is_group(&self) -> bool {
        self.kind() == Kind::Group
    }

    pub fn id(&self) -> Id {
        match self {
            Thread::Direct(c) => c.id,
            Thread::Group(g) => g.id,
        }
    }

    pub fn me(&self) -> Id {
        match self {
            Thread::Direct(c) => c.me,
            Thread::Group(g) => g.me,
        }
    }

    /// The one other member whose presence the live stream reports (one-to-one only).
    pub fn peer(&self) -> Option<(Id, &str)> {
        match self {
            Thread::Direct(c) => Some((c.peer, c.peer_name.as_str())),
            Thread::Group(_) => None,
        }
    }

    /// The name shown as a message's sender ("You" is the view's business).
    pub fn sender_name(&self, m: &Shown) -> &str {
        match self {
            Thread::Direct(c) => &c.peer_name,
            Thread::Group(g) => g.name_of(&m.sender),
        }
    }

    /// The address of the conversation's page.
    pub fn page_path(&self) -> String {
        page_path(self.kind(), &self.id())
    }

    /// Messages after `after` that have not expired at `now` (see
    /// `Conversation::since`).
    pub fn since(
        &self,
        store: &Store,
        after: u64,
        limit: usize,
        now: UnixTime,
    ) -> Result<(Vec<Shown>, bool), StoreError> {
        match self {
            Thread::Direct(c) => c.since(store, after, limit, now),
            Thread::Group(g) => g.since(store, after, limit, now),
        }
    }

    /// A group's events after `after` (none in one-to-one chats).
    pub fn events_after(
        &self,
        store: &Store,
        after: u64,
    ) -> Result<Vec<crate::groups::events::EventShown>, StoreError> {
        match self {
            Thread::Direct(_) => Ok(Vec::new()),
            Thread::Group(g) => g.events(store, after.saturating_add(1), u64::MAX),
        }
    }

    /// Messages before `before` that have not expired at `now` (see
    /// `Conversation::history`).
    pub fn history(
        &self,
        store: &Store,
        before: Option<u64>,
        limit: usize,
        now: UnixTime,
    ) -> Result<(Vec<Shown>, bool), StoreError> {
        match self {
            Thread::Direct(c) => c.history(store, before, limit, now),
            Thread::Group(g) => g.history(store, before, limit, now),
        }
    }

    /// One message (`None` if gone or expired at `now`).
    pub fn message(
        &self,
        store: &Store,
        seq: u64,
        now: UnixTime,
    ) -> Result<Option<Shown>, StoreError> {
        match self {
            Thread::Direct(c) => c.message(store, seq, now),
            Thread::Group(g) => g.message(store, seq, now),
        }
    }

    /// Whether the account deletion of `member` concerns this conversation: it ends a
    /// one-to-one chat; it changes a group's membership.
    pub fn concerns(&self, member: &Id) -> bool {
        match self {
            Thread::Direct(c) => &c.peer == member,
            Thread::Group(g) => g.knows(member),
        }
    }
}

/// The address of a conversation's page.
pub fn page_path(kind: Kind, id: &Id) -> String {
    match kind {
        Kind::Direct => format!("/chat/{}", b64url(id)),
        Kind::Group => format!("/chat/group/{}", b64url(id)),
    }
}
