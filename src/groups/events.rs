//! What happened in a group, shown in its history between the messages: the group was
//! created, someone was invited, joined, left or was removed, an invitation was
//! withdrawn, an admin was made or demoted, the group was handed over, a setting changed.
//!
//! An event takes the next number of the group's message sequence and is stored in
//! `GROUP_EVENTS` sealed under the key of the epoch it happened in, so the key-epoch rules
//! hold for events as for messages: a member reads the events of their own membership and
//! nothing else, and the event that removes someone is sealed under the new epoch's key,
//! which they never get. The sealed body repeats the group id and the sequence number,
//! and a reader drops an event whose body names another place, so a row cannot be moved
//! within the file without the key. Events name members by id; the page resolves names.
//!
//! Events are written by the server inside the transaction that makes the change, with
//! the key of the change's epoch: a fresh key when the change starts an epoch (a join, a
//! departure, a removal, an account deletion: no session needed), or the current key as
//! the member who acts holds it (invitations, roles, settings: they are logged in).

use redb::{ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use crate::clock::UnixTime;
use crate::crypto::SecretKey;
use crate::store::tables::{CONVERSATION_TO_LAST_SEQ, GROUP_EVENTS, USERS};
use crate::store::{Id, Record, Store, StoreError, UserRecord};

/// What happened. Members are named by id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    Created {
        by: Id,
    },
    Invited {
        by: Id,
        whom: Id,
    },
    InvitationWithdrawn {
        by: Id,
        whom: Id,
    },
    Joined {
        whom: Id,
    },
    Left {
        whom: Id,
    },
    Removed {
        by: Id,
        whom: Id,
    },
    MadeAdmin {
        by: Id,
        whom: Id,
    },
    /// `by == whom`: an admin stepped down.
    AdminRevoked {
        by: Id,
        whom: Id,
    },
    /// `by: None`: the creator left and the group passed on by itself.
    HandedOver {
        by: Option<Id>,
        to: Id,
    },
    MembersInvite {
        by: Id,
        allowed: bool,
    },
}

/// The sealed body of an event.
#[derive(Serialize, Deserialize)]
struct EventBody {
    group: Id,
    seq: u64,
    /// When (absent when the server could not tell, e.g. an account deleted in the
    /// background).
    at: Option<UnixTime>,
    kind: EventKind,
}

/// The stored value of `GROUP_EVENTS`.
#[derive(Clone, Serialize, Deserialize)]
pub struct GroupEventRecord {
    /// The epoch whose key seals the body.
    pub epoch: u32,
    /// Fernet token of the postcard-encoded body.
    pub sealed: String,
}

impl std::fmt::Debug for GroupEventRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupEventRecord")
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

impl Record for GroupEventRecord {
    const VERSION: u8 = 1;
    const NAME: &'static str = "group event";
}

/// An event as a member reads it.
#[derive(Clone, PartialEq, Eq)]
pub struct EventShown {
    pub seq: u64,
    pub at: Option<UnixTime>,
    pub kind: EventKind,
    /// The usernames of the members it names, where their accounts still exist.
    pub names: Vec<(Id, String)>,
}

crate::connections::debug_without_names!(EventShown);

impl EventKind {
    /// The members an event names.
    pub fn members(&self) -> Vec<Id> {
        match self {
            EventKind::Created { by } | EventKind::MembersInvite { by, .. } => vec![*by],
            EventKind::Joined { whom } | EventKind::Left { whom } => vec![*whom],
            EventKind::Invited { by, whom }
            | EventKind::InvitationWithdrawn { by, whom }
            | EventKind::Removed { by, whom }
            | EventKind::MadeAdmin { by, whom }
            | EventKind::AdminRevoked { by, whom } => vec![*by, *whom],
            EventKind::HandedOver { by, to } => by.iter().copied().chain([*to]).collect(),
        }
    }
}

impl EventShown {
    /// The username of a member the event names (`None`: their account is gone).
    pub fn name_of(&self, member: &Id) -> Option<&str> {
        self.names
            .iter()
            .find(|(id, _)| id == member)
            .map(|(_, n)| n.as_str())
    }
}

/// Append an event to `group`, sealed under `key` (the key of `epoch`), inside the
/// caller's transaction. Takes the group's next sequence number; returns it.
pub fn append_in(
    txn: &WriteTransaction,
    group: &Id,
    epoch: u32,
    key: &SecretKey,
    at: Option<UnixTime>,
    kind: EventKind,
) -> Result<u64, StoreError> {
    let seq = {
        let mut last = txn.open_table(CONVERSATION_TO_LAST_SEQ)?;
        let seq = last.get(group)?.map_or(1, |g| g.value().saturating_add(1));
        last.insert(group, seq)?;
        seq
    };
    let body = EventBody {
        group: *group,
        seq,
        at,
        kind,
    };
    let plain = zeroize::Zeroizing::new(
        postcard::to_stdvec(&body).map_err(|e| StoreError::Encode(format!("group event: {e}")))?,
    );
    let sealed = key.seal(plain.as_slice()).map_err(super::crypto)?;
    let record = GroupEventRecord { epoch, sealed };
    txn.open_table(GROUP_EVENTS)?
        .insert((*group, seq), record.encode()?.as_slice())?;
    Ok(seq)
}

/// Open one stored event with the keys a reader holds; `None` when they lack its epoch's
/// key, or the body does not open or names another place.
pub fn open(
    group: &Id,
    seq: u64,
    record: &GroupEventRecord,
    keys: &std::collections::BTreeMap<u32, SecretKey>,
) -> Option<EventShown> {
    let key = keys.get(&record.epoch)?;
    let plain = key.open(&record.sealed).ok()?;
    let body: EventBody = postcard::from_bytes(&plain).ok()?;
    (body.group == *group && body.seq == seq).then_some(EventShown {
        seq,
        at: body.at,
        kind: body.kind,
        names: Vec::new(),
    })
}

/// The events of `group` numbered `from..=to` that `keys` open, oldest first.
pub fn read(
    store: &Store,
    group: &Id,
    from: u64,
    to: u64,
    keys: &std::collections::BTreeMap<u32, SecretKey>,
) -> Result<Vec<EventShown>, StoreError> {
    let mut out = Vec::new();
    if from > to {
        return Ok(out);
    }
    let txn = store.read()?;
    let table = txn.open_table(GROUP_EVENTS)?;
    let users = txn.open_table(USERS)?;
    for row in table.range((*group, from)..=(*group, to))? {
        let (k, v) = row?;
        let seq = k.value().1;
        if let Some(mut e) = open(group, seq, &GroupEventRecord::decode(v.value())?, keys) {
            for m in e.kind.members() {
                if let Some(u) = super::load::<UserRecord>(&users, &m)? {
                    e.names.push((m, u.username));
                }
            }
            out.push(e);
        }
    }
    Ok(out)
}

/// Delete every event of `group` (the group is being deleted), inside the caller's
/// transaction.
pub fn delete_all_in(txn: &WriteTransaction, group: &Id) -> Result<(), StoreError> {
    txn.open_table(GROUP_EVENTS)?
        .retain_in((*group, 0)..=(*group, u64::MAX), |_, _| false)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn an_event_opens_only_with_its_epoch_key_and_in_its_place() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join(crate::store::DB_FILE)).unwrap();
        let (g, other) = ([1u8; 16], [2u8; 16]);
        let key = SecretKey::generate();
        let kind = EventKind::MadeAdmin {
            by: [3; 16],
            whom: [4; 16],
        };
        let txn = store.write().unwrap();
        let seq = append_in(&txn, &g, 2, &key, Some(100), kind.clone()).unwrap();
        let seq2 = append_in(&txn, &g, 2, &key, None, EventKind::Left { whom: [4; 16] }).unwrap();
        txn.commit().unwrap();
        assert_eq!((seq, seq2), (1, 2));

        let held: BTreeMap<u32, SecretKey> = [(2, key.clone())].into();
        let events = read(&store, &g, 1, u64::MAX, &held).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].kind, kind);
        assert_eq!(events[0].at, Some(100));
        assert_eq!(events[1].at, None);

        // Without the epoch's key: nothing.
        let wrong: BTreeMap<u32, SecretKey> = [(1, key.clone()), (3, key.clone())].into();
        assert!(read(&store, &g, 1, u64::MAX, &wrong).unwrap().is_empty());

        // A row copied to another place (another number, another group) does not open.
        let record = {
            let txn = store.read().unwrap();
            let t = txn.open_table(GROUP_EVENTS).unwrap();
            GroupEventRecord::decode(t.get((g, 1)).unwrap().unwrap().value()).unwrap()
        };
        assert!(open(&g, 1, &record, &held).is_some());
        assert!(open(&g, 2, &record, &held).is_none());
        assert!(open(&other, 1, &record, &held).is_none());
        assert_eq!(format!("{record:?}"), "GroupEventRecord { epoch: 2, .. }");

        let txn = store.write().unwrap();
        delete_all_in(&txn, &g).unwrap();
        txn.commit().unwrap();
        assert!(read(&store, &g, 1, u64::MAX, &held).unwrap().is_empty());
    }
}
