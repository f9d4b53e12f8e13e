//! The home page as a member's overview: what waits for them, each with a link to where
//! they act on it — conversations with unread messages (one-to-one and groups, with their
//! counts), connection requests they received, invitations to groups, and their own files
//! that expire within [`EXPIRY_NOTICE_DAYS`] days — and the counts beside Connections and
//! Groups in the navigation of every page.
//!
//! Everything comes from rows the server already keeps and keys the logged-in member's
//! session already holds: the undelivered marks (`UNDELIVERED`) are the unread messages,
//! pending requests and invitations are their own rows, expiry is on each file record.
//! Names open under the member's `data_key` (Fernet): a group's name through their group
//! secrets, a file's through its record, an invitation's through its name key, which is
//! re-sealed under the `data_key` the first time it is seen. So a page view costs a few
//! reads and symmetric decryptions and no RSA operation, except once per new invitation.
//! Nothing new is stored.
//!
//! Functions here block (redb) and are called through `Store::run`.

pub mod handlers;
pub mod views;

use crate::chat::thread::Kind;
use crate::clock::UnixTime;
use crate::crypto::SecretKey;
use crate::files::FileMeta;
use crate::groups::InvitationEntry;
use crate::store::tables::{CONNECTIONS, GROUP_INVITES, UNDELIVERED};
use crate::store::{Id, Store, StoreError};
use crate::web::layout::Nav;

/// Own files expiring within this many days are listed.
pub const EXPIRY_NOTICE_DAYS: i64 = 7;

/// The navigation stops counting unread messages here (and shows "999+"), so that a flood
/// of messages does not make every page slower.
pub const NAV_COUNT_CAP: usize = 1000;

/// A conversation with unread messages.
#[derive(Clone)]
pub struct Unread {
    pub kind: Kind,
    pub conversation: Id,
    /// The other member's name, or the group's.
    pub name: String,
    pub count: usize,
}

/// A request to connect, received.
#[derive(Clone)]
pub struct Request {
    pub from: String,
    pub day: i64,
}

/// One of the member's files that expires soon.
#[derive(Clone)]
pub struct Expiring {
    pub file: Id,
    pub name: String,
    pub expires_at: UnixTime,
}

/// Everything the overview shows.
#[derive(Clone, Default)]
pub struct Overview {
    /// By name.
    pub unread: Vec<Unread>,
    /// By name.
    pub requests: Vec<Request>,
    /// By name.
    pub invitations: Vec<InvitationEntry>,
    /// Soonest first.
    pub expiring: Vec<Expiring>,
}

crate::connections::debug_without_names!(Unread, Request, Expiring, Overview);

impl Overview {
    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.unread.is_empty()
            && self.requests.is_empty()
            && self.invitations.is_empty()
            && self.expiring.is_empty()
    }
}

/// The overview of `member` at `now`.
pub fn overview(
    store: &Store,
    member: &Id,
    data_key: &SecretKey,
    now: UnixTime,
) -> Result<Overview, StoreError> {
    let counts = crate::chat::unread_counts(store, member)?;
    let connections = crate::connections::overview(store, member)?;
    let mut unread = Vec::new();
    for entry in &connections.connected {
        if let Some(&count) = counts.get(&entry.connection) {
            unread.push(Unread {
                kind: Kind::Direct,
                conversation: entry.connection,
                name: entry.username.clone(),
                count,
            });
        }
    }
    if counts.len() > unread.len() {
        for group in crate::groups::groups_of(store, member, data_key)? {
            if let Some(&count) = counts.get(&group.id) {
                unread.push(Unread {
                    kind: Kind::Group,
                    conversation: group.id,
                    name: group.name,
                    count,
                });
            }
        }
    }
    unread.sort_by(|a, b| a.name.cmp(&b.name));
    let requests = connections
        .received
        .into_iter()
        .map(|e| Request {
            from: e.username,
            day: e.day,
        })
        .collect();
    let invitations = crate::groups::invitations(store, member, data_key)?;
    let horizon = now.saturating_add(EXPIRY_NOTICE_DAYS * 86_400);
    let mut expiring: Vec<Expiring> = crate::files::store::list_owned(store, member, now)?
        .into_iter()
        .filter(|f| f.record.expires_at <= horizon)
        .map(|f| Expiring {
            file: f.id,
            name: FileMeta::open(&f.record.meta_sealed, data_key).map_or_else(
                |_| "(name unavailable)".to_owned(),
                |m| crate::files::display_name(&m.name),
            ),
            expires_at: f.record.expires_at,
        })
        .collect();
    expiring.sort_by_key(|e| e.expires_at);
    Ok(Overview {
        unread,
        requests,
        invitations,
        expiring,
    })
}

/// The counts beside Connections (requests received, unread one-to-one messages) and
/// Groups (invitations, unread group messages) in the navigation. Reads indexes only: no
/// names, no keys. Unread messages are counted up to [`NAV_COUNT_CAP`].
pub fn nav_counts(store: &Store, member: &Id) -> Result<Nav, StoreError> {
    let txn = store.read()?;
    let undelivered = txn.open_table(UNDELIVERED)?;
    let connections = txn.open_table(CONNECTIONS)?;
    let mut nav = Nav::default();
    let mut current: Option<(Id, bool)> = None;
    let rows = undelivered.range((*member, [0u8; 16], 0)..=(*member, [0xffu8; 16], u64::MAX))?;
    for (seen, row) in rows.enumerate() {
        if seen >= NAV_COUNT_CAP {
            nav.capped = true;
            break;
        }
        let conversation = row?.0.value().1;
        let direct = match current {
            Some((id, direct)) if id == conversation => direct,
            _ => {
                let direct = connections.get(conversation)?.is_some();
                current = Some((conversation, direct));
                direct
            }
        };
        if direct {
            nav.connections += 1;
        } else {
            nav.groups += 1;
        }
    }
    nav.connections += crate::connections::requests_received_in(&txn, member)?;
    let invites = txn.open_table(GROUP_INVITES)?;
    for row in invites.range((*member, [0u8; 16])..=(*member, [0xffu8; 16]))? {
        row?;
        nav.groups += 1;
    }
    Ok(nav)
}
