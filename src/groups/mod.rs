//! Group chats: create, invite, accept or decline, leave, remove, roles, send and read.
//!
//! Rules:
//! - A member creates a group and becomes its *creator*. The creator makes members
//!   admins and demotes them, hands the group over, and decides whether every member may
//!   invite; the creator and admins invite and remove members (see [`roles`]). When the
//!   creator leaves (or their account is deleted), the longest-standing admin, else the
//!   longest-standing member, becomes the creator; when the last member leaves, the group
//!   is deleted with all its messages, events and keys.
//! - Members are invited from the inviter's own connections (accepted connections only).
//!   An invitation waits until the invitee accepts or declines it, or it is withdrawn —
//!   whether or not the invitee is online; the inviter is told when they are not. An
//!   invitee is not a member: they see the group's name (sealed to them) and who invited
//!   them, nothing else.
//! - Joining (accepting), leaving, removal and account deletion each start a new key epoch
//!   (see [`keys`]). A member reads the messages sent since their current membership began
//!   and nothing older; after leaving they read nothing.
//! - Every change is an event in the group's history (see [`events`]), sealed under the
//!   key of its epoch.
//! - Everything about a group — every page and every form — answers "not found" to anyone
//!   who is not a current member (or, for accept and decline, a current invitee), and
//!   every action to a member without the right to it.
//! - At most `chat.max_group_members` members and pending invitations together.
//!
//! Messages are stored in `MESSAGES` under the group id like one-to-one messages (see
//! `chat`), sealed under the current epoch's key and signed by the sender's own signing key
//! for this group, whose public half is on their membership record.
//!
//! Functions here block (redb, RSA) and are called through `Store::run`.

pub mod events;
pub mod handlers;
pub mod keys;
pub mod manage;
mod membership;
mod messages;
mod overview;
pub mod roles;
pub mod timeline;
pub mod views;

pub use membership::*;
pub use messages::*;
pub use overview::*;
pub use roles::{Role, RoleChange, RoleError, Roles, change_role, roles_for};

use std::collections::{BTreeMap, HashMap};

use redb::{ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use crate::chat::{self, Header, MessageRecord, Shown};
use crate::clock::UnixTime;
use crate::connections::keys::{Sealed, SigningKey, VerifyingKey};
use crate::crypto::rsa_keys::RsaPublic;
use crate::crypto::{CryptoError, SecretKey, hybrid, random_bytes};
use crate::store::tables::{
    CONVERSATION_TO_LAST_SEQ, GROUP_EPOCH_KEYS, GROUP_INVITES, GROUP_MEMBER_SECRETS, GROUP_MEMBERS,
    GROUP_TO_INVITEES, GROUPS, MEMBER_TO_GROUPS, MESSAGES, UNDELIVERED, USERNAME_TO_USER, USERS,
};
use crate::store::{Id, Record, Store, StoreError, UserRecord};
use keys::{EpochKeyRecord, MemberSecrets, MemberSecretsRecord};

const SECONDS_PER_DAY: i64 = 86_400;
/// Longest group name, in characters.
pub const MAX_NAME_CHARS: usize = 64;

pub(super) fn day(now: UnixTime) -> i64 {
    now.div_euclid(SECONDS_PER_DAY)
}

pub(super) fn crypto(e: CryptoError) -> StoreError {
    StoreError::Encode(format!("group: {e}"))
}

/// A group.
#[derive(Clone, Serialize, Deserialize)]
pub struct GroupRecord {
    /// The member who owns the group (see [`roles`]): whoever created it, or whom it was
    /// handed over to.
    pub creator: Id,
    /// The current key epoch (from 1).
    pub epoch: u32,
    /// The name, a Fernet token under the group's name key.
    pub name_sealed: String,
    pub created_day: i64,
    /// Current members the creator made admins (never the creator), in the order made.
    pub admins: Vec<Id>,
    /// Whether every member may invite their own connections (not only the creator and
    /// admins).
    pub members_invite: bool,
}

impl std::fmt::Debug for GroupRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GroupRecord(..)")
    }
}

/// The layout of record version 1 (before roles), still read: no admins, only the
/// creator invites.
#[derive(Deserialize)]
struct GroupRecordV1 {
    creator: Id,
    epoch: u32,
    name_sealed: String,
    created_day: i64,
}

impl Record for GroupRecord {
    const VERSION: u8 = 2;
    const NAME: &'static str = "group";

    /// Version 2, or version 1 (groups created before roles existed).
    fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        let corrupt = |e: postcard::Error| StoreError::Corrupt(format!("group: {e}"));
        match bytes.split_first() {
            Some((&2, body)) => postcard::from_bytes(body).map_err(corrupt),
            Some((&1, body)) => {
                let v1: GroupRecordV1 = postcard::from_bytes(body).map_err(corrupt)?;
                Ok(Self {
                    creator: v1.creator,
                    epoch: v1.epoch,
                    name_sealed: v1.name_sealed,
                    created_day: v1.created_day,
                    admins: Vec::new(),
                    members_invite: false,
                })
            }
            Some((&v, _)) => Err(StoreError::Corrupt(format!(
                "group record version {v} (this binary reads 1 and 2)"
            ))),
            None => Err(StoreError::Corrupt("empty group record".into())),
        }
    }
}

/// Whether someone is in a group now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberState {
    /// A member since `joined_epoch`; they read messages from sequence `first_seq` on.
    Active { joined_epoch: u32, first_seq: u64 },
    /// A former member: kept so that their messages still verify.
    Left,
}

/// A member of a group, current or former.
#[derive(Clone, Serialize, Deserialize)]
pub struct MembershipRecord {
    pub state: MemberState,
    /// Public half of the member's signing key for this group.
    pub verifying_key: VerifyingKey,
    pub joined_day: i64,
}

impl std::fmt::Debug for MembershipRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MembershipRecord(..)")
    }
}

impl Record for MembershipRecord {
    const VERSION: u8 = 1;
    const NAME: &'static str = "group membership";
}

impl MembershipRecord {
    fn joined_epoch(&self) -> Option<u32> {
        match self.state {
            MemberState::Active { joined_epoch, .. } => Some(joined_epoch),
            MemberState::Left => None,
        }
    }
}

/// A pending invitation.
#[derive(Clone, Serialize, Deserialize)]
pub struct InviteRecord {
    pub inviter: Id,
    pub day: i64,
    /// The group's name key: sealed to the invitee's delivery key when invited (they may
    /// be offline), re-sealed under their `data_key` the first time they see it, so that
    /// showing it again costs no RSA operation.
    pub name_key: Sealed,
}

impl std::fmt::Debug for InviteRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InviteRecord(..)")
    }
}

/// The layout of record version 1, still read: the name key always sealed to the
/// delivery key.
#[derive(Deserialize)]
struct InviteRecordV1 {
    inviter: Id,
    day: i64,
    name_key: hybrid::HybridSealed,
}

impl Record for InviteRecord {
    const VERSION: u8 = 2;
    const NAME: &'static str = "group invitation";

    /// Version 2, or version 1 (invitations made before re-sealing existed).
    fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        let corrupt = |e: postcard::Error| StoreError::Corrupt(format!("group invitation: {e}"));
        match bytes.split_first() {
            Some((&2, body)) => postcard::from_bytes(body).map_err(corrupt),
            Some((&1, body)) => {
                let v1: InviteRecordV1 = postcard::from_bytes(body).map_err(corrupt)?;
                Ok(Self {
                    inviter: v1.inviter,
                    day: v1.day,
                    name_key: Sealed::ToDelivery(v1.name_key),
                })
            }
            Some((&v, _)) => Err(StoreError::Corrupt(format!(
                "group invitation record version {v} (this binary reads 1 and 2)"
            ))),
            None => Err(StoreError::Corrupt("empty group invitation record".into())),
        }
    }
}

/// Why a group name was refused. Shown to the member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("Give the group a name.")]
    Empty,
    #[error("A group name has at most {MAX_NAME_CHARS} characters.")]
    TooLong,
    #[error("A group name cannot contain control characters or line breaks.")]
    ControlCharacters,
}

/// Check a group name: trimmed, 1 to [`MAX_NAME_CHARS`] characters, no control characters.
pub fn clean_name(name: &str) -> Result<String, NameError> {
    if name.len() > MAX_NAME_CHARS * 8 {
        return Err(NameError::TooLong);
    }
    let name = name.trim();
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(NameError::TooLong);
    }
    if name.chars().any(char::is_control) {
        return Err(NameError::ControlCharacters);
    }
    Ok(name.to_owned())
}

// ---------------------------------------------------------------------------------------
// Loading

pub(super) fn load<V: Record>(
    table: &impl ReadableTable<Id, &'static [u8]>,
    key: &Id,
) -> Result<Option<V>, StoreError> {
    table.get(key)?.map(|b| V::decode(b.value())).transpose()
}

pub(super) fn load2<V: Record>(
    table: &impl ReadableTable<(Id, Id), &'static [u8]>,
    key: (Id, Id),
) -> Result<Option<V>, StoreError> {
    table.get(key)?.map(|b| V::decode(b.value())).transpose()
}

/// Every membership record of a group, by member.
pub(super) fn memberships(
    table: &impl ReadableTable<(Id, Id), &'static [u8]>,
    group: &Id,
) -> Result<BTreeMap<Id, MembershipRecord>, StoreError> {
    let mut out = BTreeMap::new();
    for row in table.range((*group, [0u8; 16])..=(*group, [0xffu8; 16]))? {
        let (k, v) = row?;
        out.insert(k.value().1, MembershipRecord::decode(v.value())?);
    }
    Ok(out)
}

pub(super) fn active(members: &BTreeMap<Id, MembershipRecord>) -> Vec<Id> {
    members
        .iter()
        .filter(|(_, r)| r.joined_epoch().is_some())
        .map(|(id, _)| *id)
        .collect()
}

pub(super) fn invitees(
    table: &impl ReadableTable<(Id, Id), ()>,
    group: &Id,
) -> Result<Vec<Id>, StoreError> {
    let mut out = Vec::new();
    for row in table.range((*group, [0u8; 16])..=(*group, [0xffu8; 16]))? {
        out.push(row?.0.value().1);
    }
    Ok(out)
}

/// The current members of `group` (none if there is no such group), inside a write
/// transaction.
pub fn active_members_in(txn: &WriteTransaction, group: &Id) -> Result<Vec<Id>, StoreError> {
    Ok(active(&memberships(
        &txn.open_table(GROUP_MEMBERS)?,
        group,
    )?))
}

/// The current members of `group` (to notify).
pub fn active_members(store: &Store, group: &Id) -> Result<Vec<Id>, StoreError> {
    let txn = store.read()?;
    Ok(active(&memberships(
        &txn.open_table(GROUP_MEMBERS)?,
        group,
    )?))
}

/// Whether `member` is a current member of `group`.
pub fn is_member(store: &Store, group: &Id, member: &Id) -> Result<bool, StoreError> {
    let txn = store.read()?;
    let record: Option<MembershipRecord> =
        load2(&txn.open_table(GROUP_MEMBERS)?, (*group, *member))?;
    Ok(record.is_some_and(|r| r.joined_epoch().is_some()))
}

pub(super) fn delivery_key(
    users: &impl ReadableTable<Id, &'static [u8]>,
    member: &Id,
) -> Result<Option<RsaPublic>, StoreError> {
    let Some(user) = load::<UserRecord>(users, member)? else {
        return Ok(None);
    };
    RsaPublic::from_der(&user.delivery_public)
        .map(Some)
        .map_err(|e| StoreError::Corrupt(format!("delivery key: {e}")))
}

// ---------------------------------------------------------------------------------------
// Epochs

/// Start a new epoch of `group` for `members`: a fresh key wrapped for each (under
/// `here`'s `data_key` for the member who is making the change, if they are among them;
/// to the delivery key for everyone else). Inside the caller's transaction; updates
/// `record.epoch` (the caller stores the record). Returns the new epoch and its key (to
/// seal the event that started it).
pub(super) fn new_epoch_in(
    txn: &WriteTransaction,
    group: &Id,
    record: &mut GroupRecord,
    members: &[Id],
    here: Option<(&Id, &SecretKey)>,
) -> Result<(u32, SecretKey), StoreError> {
    let epoch = record.epoch.saturating_add(1);
    let key = SecretKey::generate();
    let users = txn.open_table(USERS)?;
    let mut table = txn.open_table(GROUP_EPOCH_KEYS)?;
    for m in members {
        let wrapped = match here {
            Some((me, data_key)) if me == m => {
                EpochKeyRecord::under(data_key, &key).map_err(crypto)?
            }
            _ => {
                let Some(delivery) = delivery_key(&users, m)? else {
                    continue;
                };
                EpochKeyRecord::to_delivery(&delivery, &key).map_err(crypto)?
            }
        };
        table.insert((*group, epoch, *m), wrapped.encode()?.as_slice())?;
    }
    record.epoch = epoch;
    Ok((epoch, key))
}

/// Delete `member`'s key rows of every epoch of `group`.
pub(super) fn delete_member_keys_in(
    txn: &WriteTransaction,
    group: &Id,
    member: &Id,
    upto_epoch: u32,
) -> Result<(), StoreError> {
    let mut table = txn.open_table(GROUP_EPOCH_KEYS)?;
    for epoch in 1..=upto_epoch {
        table.remove((*group, epoch, *member))?;
    }
    txn.open_table(GROUP_MEMBER_SECRETS)?
        .remove((*group, *member))?;
    txn.open_table(UNDELIVERED)?.retain_in(
        (*member, *group, 0)..=(*member, *group, u64::MAX),
        |_, _| false,
    )?;
    Ok(())
}

/// Delete a group and everything in it.
pub(super) fn delete_group_in(txn: &WriteTransaction, group: &Id) -> Result<(), StoreError> {
    let members = memberships(&txn.open_table(GROUP_MEMBERS)?, group)?;
    let ids: Vec<Id> = members.keys().copied().collect();
    chat::delete_conversation_in(txn, group, &ids)?;
    let epoch = load::<GroupRecord>(&txn.open_table(GROUPS)?, group)?.map_or(0, |g| g.epoch);
    for m in &ids {
        delete_member_keys_in(txn, group, m, epoch)?;
        txn.open_table(MEMBER_TO_GROUPS)?.remove((*m, *group))?;
    }
    txn.open_table(GROUP_MEMBERS)?
        .retain_in((*group, [0u8; 16])..=(*group, [0xffu8; 16]), |_, _| false)?;
    // Leftover key rows of members whose membership rows were gone (should be none).
    txn.open_table(GROUP_EPOCH_KEYS)?.retain_in(
        (*group, 0, [0u8; 16])..=(*group, u32::MAX, [0xffu8; 16]),
        |_, _| false,
    )?;
    for invitee in invitees(&txn.open_table(GROUP_TO_INVITEES)?, group)? {
        txn.open_table(GROUP_INVITES)?.remove((invitee, *group))?;
    }
    txn.open_table(GROUP_TO_INVITEES)?
        .retain_in((*group, [0u8; 16])..=(*group, [0xffu8; 16]), |_, _| false)?;
    events::delete_all_in(txn, group)?;
    txn.open_table(GROUPS)?.remove(group)?;
    Ok(())
}

/// What a departure changed.
#[derive(Debug, Clone, Default)]
pub struct Departure {
    /// Current members after it (empty: the group is gone).
    pub remaining: Vec<Id>,
    pub group_deleted: bool,
}

/// How a member goes (for the event the group shows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Departing {
    /// They left, or their account was deleted.
    Left,
    /// Removed by `by`.
    Removed { by: Id },
}

/// `member` is no longer in `group` (left, removed, or deleted with `forget`): their keys
/// go, the rest start a new epoch (with the event that says why, and when the creator
/// went, the one that names the next creator), their admin role goes, the creator role
/// passes on if it was theirs, and the group goes when nobody is left. With `forget`,
/// their membership record and their messages go too (account deletion); otherwise the
/// record stays as "left" so that their messages still verify. `at`: when, if known.
pub(super) fn depart_in(
    txn: &WriteTransaction,
    group: &Id,
    member: &Id,
    forget: bool,
    how: Departing,
    at: Option<UnixTime>,
) -> Result<Departure, StoreError> {
    let Some(mut record) = load::<GroupRecord>(&txn.open_table(GROUPS)?, group)? else {
        return Ok(Departure::default());
    };
    let mut members = memberships(&txn.open_table(GROUP_MEMBERS)?, group)?;
    let Some(mut mine) = members.remove(member) else {
        return Ok(Departure::default());
    };
    let was_active = mine.joined_epoch().is_some();
    delete_member_keys_in(txn, group, member, record.epoch)?;
    if forget {
        chat::delete_messages_where_in(txn, group, |m| &m.sender == member)?;
        txn.open_table(GROUP_MEMBERS)?.remove((*group, *member))?;
        txn.open_table(MEMBER_TO_GROUPS)?
            .remove((*member, *group))?;
        // Invitations they made go with them.
        let pending = invitees(&txn.open_table(GROUP_TO_INVITEES)?, group)?;
        for invitee in pending {
            let invite: Option<InviteRecord> =
                load2(&txn.open_table(GROUP_INVITES)?, (invitee, *group))?;
            if invite.is_some_and(|i| &i.inviter == member) {
                txn.open_table(GROUP_INVITES)?.remove((invitee, *group))?;
                txn.open_table(GROUP_TO_INVITEES)?
                    .remove((*group, invitee))?;
            }
        }
    } else if was_active {
        mine.state = MemberState::Left;
        txn.open_table(GROUP_MEMBERS)?
            .insert((*group, *member), mine.encode()?.as_slice())?;
    }
    let remaining = active(&members);
    if remaining.is_empty() {
        delete_group_in(txn, group)?;
        return Ok(Departure {
            remaining,
            group_deleted: true,
        });
    }
    record.admins.retain(|a| a != member);
    let successor = if &record.creator == member {
        let next = roles::successor(&record, &members);
        if let Some(next) = next {
            record.creator = next;
            record.admins.retain(|a| a != &next);
        }
        next
    } else {
        None
    };
    if was_active {
        let (epoch, key) = new_epoch_in(txn, group, &mut record, &remaining, None)?;
        let event = match how {
            Departing::Left => events::EventKind::Left { whom: *member },
            Departing::Removed { by } => events::EventKind::Removed { by, whom: *member },
        };
        events::append_in(txn, group, epoch, &key, at, event)?;
        if let Some(to) = successor {
            events::append_in(
                txn,
                group,
                epoch,
                &key,
                at,
                events::EventKind::HandedOver { by: None, to },
            )?;
        }
    }
    txn.open_table(GROUPS)?
        .insert(group, record.encode()?.as_slice())?;
    Ok(Departure {
        remaining,
        group_deleted: false,
    })
}

/// Whether a change made through [`with_current_key`] is kept.
pub(super) enum Change<T> {
    Commit(T),
    Abort(T),
}

/// Run `change` in one write transaction with the group's record as stored there, and
/// the current epoch with its key as `actor` holds it (to seal the change's event). The
/// closure stores whatever it changes. Retries when the epoch moves between opening the
/// key and the transaction. `None` when the group is gone or `actor` holds no key of its
/// current epoch (they are not a current member).
pub(super) fn with_current_key<T>(
    store: &Store,
    group: &Id,
    actor: &Id,
    data_key: &SecretKey,
    mut change: impl FnMut(
        &WriteTransaction,
        &GroupRecord,
        u32,
        &SecretKey,
    ) -> Result<Change<T>, StoreError>,
) -> Result<Option<T>, StoreError> {
    for _ in 0..3 {
        let Some(record) = load::<GroupRecord>(&store.read()?.open_table(GROUPS)?, group)? else {
            return Ok(None);
        };
        let epoch = record.epoch;
        let held = keys::open_epoch_keys(store, group, actor, data_key, epoch..=epoch)?;
        let Some(key) = held.get(&epoch) else {
            return Ok(None);
        };
        let txn = store.write()?;
        let current: Option<GroupRecord> = load(&txn.open_table(GROUPS)?, group)?;
        let Some(current) = current else {
            txn.abort()?;
            return Ok(None);
        };
        if current.epoch != epoch {
            txn.abort()?;
            continue;
        }
        return match change(&txn, &current, epoch, key)? {
            Change::Commit(v) => {
                txn.commit()?;
                Ok(Some(v))
            }
            Change::Abort(v) => {
                txn.abort()?;
                Ok(Some(v))
            }
        };
    }
    Err(StoreError::Corrupt(
        "group membership kept changing during a change".into(),
    ))
}

/// The role of `member` in `group` if they are a current member, with the group's
/// record, inside a write transaction.
pub(super) fn member_role_in(
    txn: &WriteTransaction,
    group: &Id,
    record: &GroupRecord,
    member: &Id,
) -> Result<Option<Role>, StoreError> {
    let membership: Option<MembershipRecord> =
        load2(&txn.open_table(GROUP_MEMBERS)?, (*group, *member))?;
    Ok(membership
        .filter(|m| m.joined_epoch().is_some())
        .map(|_| record.roles().role_of(member)))
}

#[cfg(test)]
mod tests;
