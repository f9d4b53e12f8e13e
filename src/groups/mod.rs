//! Group chats: create, invite, accept or decline, leave, remove, send and read.
//!
//! Rules:
//! - A member creates a group and becomes its *creator*: the one member who invites and
//!   removes. When the creator leaves (or their account is deleted), the longest-standing
//!   remaining member becomes the creator; when the last member leaves, the group is
//!   deleted with all its messages and keys.
//! - The creator invites members they are connected with (accepted connections only).
//!   An invitation waits until the invitee accepts or declines it, or the creator cancels
//!   it — whether or not the invitee is online; the creator is told when they are not.
//!   An invitee is not a member: they see the group's name (sealed to them) and who
//!   invited them, nothing else.
//! - Joining (accepting), leaving, removal and account deletion each start a new key epoch
//!   (see [`keys`]). A member reads the messages sent since their current membership began
//!   and nothing older; after leaving they read nothing.
//! - Everything about a group — every page and every form — answers "not found" to anyone
//!   who is not a current member (or, for accept and decline, a current invitee).
//! - At most `chat.max_group_members` members and pending invitations together.
//!
//! Messages are stored in `MESSAGES` under the group id like one-to-one messages (see
//! `chat`), sealed under the current epoch's key and signed by the sender's own signing key
//! for this group, whose public half is on their membership record.
//!
//! Functions here block (redb, RSA) and are called through `Store::run`.

pub mod handlers;
pub mod keys;
pub mod views;

use std::collections::{BTreeMap, HashMap};

use redb::{ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use crate::chat::{self, Header, MessageRecord, Shown};
use crate::clock::UnixTime;
use crate::connections::keys::{SigningKey, VerifyingKey};
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

fn day(now: UnixTime) -> i64 {
    now.div_euclid(SECONDS_PER_DAY)
}

fn crypto(e: CryptoError) -> StoreError {
    StoreError::Encode(format!("group: {e}"))
}

/// A group.
#[derive(Clone, Serialize, Deserialize)]
pub struct GroupRecord {
    pub creator: Id,
    /// The current key epoch (from 1).
    pub epoch: u32,
    /// The name, a Fernet token under the group's name key.
    pub name_sealed: String,
    pub created_day: i64,
}

impl std::fmt::Debug for GroupRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GroupRecord(..)")
    }
}

impl Record for GroupRecord {
    const VERSION: u8 = 1;
    const NAME: &'static str = "group";
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
    /// The group's name key, sealed to the invitee's delivery key.
    pub name_key: hybrid::HybridSealed,
}

impl std::fmt::Debug for InviteRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InviteRecord(..)")
    }
}

impl Record for InviteRecord {
    const VERSION: u8 = 1;
    const NAME: &'static str = "group invitation";
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

fn load<V: Record>(
    table: &impl ReadableTable<Id, &'static [u8]>,
    key: &Id,
) -> Result<Option<V>, StoreError> {
    table.get(key)?.map(|b| V::decode(b.value())).transpose()
}

fn load2<V: Record>(
    table: &impl ReadableTable<(Id, Id), &'static [u8]>,
    key: (Id, Id),
) -> Result<Option<V>, StoreError> {
    table.get(key)?.map(|b| V::decode(b.value())).transpose()
}

/// Every membership record of a group, by member.
fn memberships(
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

fn active(members: &BTreeMap<Id, MembershipRecord>) -> Vec<Id> {
    members
        .iter()
        .filter(|(_, r)| r.joined_epoch().is_some())
        .map(|(id, _)| *id)
        .collect()
}

fn invitees(table: &impl ReadableTable<(Id, Id), ()>, group: &Id) -> Result<Vec<Id>, StoreError> {
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

fn delivery_key(
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
/// `record.epoch` (the caller stores the record).
fn new_epoch_in(
    txn: &WriteTransaction,
    group: &Id,
    record: &mut GroupRecord,
    members: &[Id],
    here: Option<(&Id, &SecretKey)>,
) -> Result<u32, StoreError> {
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
    Ok(epoch)
}

/// Delete `member`'s key rows of every epoch of `group`.
fn delete_member_keys_in(
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
fn delete_group_in(txn: &WriteTransaction, group: &Id) -> Result<(), StoreError> {
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

/// `member` is no longer in `group` (left, removed, or deleted with `forget`): their keys
/// go, the rest start a new epoch, the creator role passes on if it was theirs, and the
/// group goes when nobody is left. With `forget`, their membership record and their
/// messages go too (account deletion); otherwise the record stays as "left" so that their
/// messages still verify.
fn depart_in(
    txn: &WriteTransaction,
    group: &Id,
    member: &Id,
    forget: bool,
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
    if was_active {
        new_epoch_in(txn, group, &mut record, &remaining, None)?;
    }
    if &record.creator == member {
        // The longest-standing member (earliest epoch; ties by id) takes over.
        if let Some(next) = members
            .iter()
            .filter_map(|(id, r)| r.joined_epoch().map(|e| (e, *id)))
            .min()
        {
            record.creator = next.1;
        }
    }
    txn.open_table(GROUPS)?
        .insert(group, record.encode()?.as_slice())?;
    Ok(Departure {
        remaining,
        group_deleted: false,
    })
}

// ---------------------------------------------------------------------------------------
// Operations

/// Create a group named `name` (checked by [`clean_name`]) with `creator` as its only
/// member. Returns its id.
pub fn create(
    store: &Store,
    creator: &Id,
    data_key: &SecretKey,
    name: &str,
    signing: &SigningKey,
    now: UnixTime,
) -> Result<Id, StoreError> {
    let id: Id = random_bytes();
    let name_key = SecretKey::generate();
    let secrets = MemberSecrets::new(name_key.clone(), signing)
        .and_then(|s| s.seal_under(data_key))
        .map_err(crypto)?;
    let mut record = GroupRecord {
        creator: *creator,
        epoch: 0,
        name_sealed: name_key.seal(name.as_bytes()).map_err(crypto)?,
        created_day: day(now),
    };
    let membership = MembershipRecord {
        state: MemberState::Active {
            joined_epoch: 1,
            first_seq: 1,
        },
        verifying_key: signing.verifying_key().map_err(crypto)?,
        joined_day: day(now),
    };
    let txn = store.write()?;
    {
        new_epoch_in(
            &txn,
            &id,
            &mut record,
            &[*creator],
            Some((creator, data_key)),
        )?;
        txn.open_table(GROUPS)?
            .insert(&id, record.encode()?.as_slice())?;
        txn.open_table(GROUP_MEMBERS)?
            .insert((id, *creator), membership.encode()?.as_slice())?;
        txn.open_table(MEMBER_TO_GROUPS)?
            .insert((*creator, id), ())?;
        txn.open_table(GROUP_MEMBER_SECRETS)?
            .insert((id, *creator), secrets.encode()?.as_slice())?;
    }
    txn.commit()?;
    Ok(id)
}

/// Why an invitation was refused. Shown to the creator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InviteError {
    #[error("Only the group's creator can invite.")]
    NotCreator,
    /// Also the answer for a name nobody has, or someone who denied or blocked you.
    #[error(
        "None of your connections has that name. You can invite only members you are connected with."
    )]
    NotConnected,
    #[error("That member is already in the group.")]
    AlreadyMember,
    #[error("That member is already invited.")]
    AlreadyInvited,
    #[error("The group is full ({0} members and invitations at most).")]
    Full(usize),
}

/// An invitation made.
#[derive(Debug, Clone, Copy)]
pub struct Invited {
    pub invitee: Id,
}

/// `inviter` (the creator) invites the member named `username`, who must be one of their
/// connections. `None` when `inviter` is not a current member of `group`.
pub fn invite(
    store: &Store,
    group: &Id,
    inviter: &Id,
    data_key: &SecretKey,
    username: &str,
    max_members: usize,
    now: UnixTime,
) -> Result<Option<Result<Invited, InviteError>>, StoreError> {
    let Some(record) = load::<GroupRecord>(&store.read()?.open_table(GROUPS)?, group)? else {
        return Ok(None);
    };
    if !is_member(store, group, inviter)? {
        return Ok(None);
    }
    if &record.creator != inviter {
        return Ok(Some(Err(InviteError::NotCreator)));
    }
    let Ok(name) = crate::accounts::Username::parse(username) else {
        return Ok(Some(Err(InviteError::NotConnected)));
    };
    let invitee = {
        let txn = store.read()?;
        let found = txn
            .open_table(USERNAME_TO_USER)?
            .get(name.as_str())?
            .map(|g| g.value());
        drop(txn);
        match found {
            Some(id) => id,
            None => return Ok(Some(Err(InviteError::NotConnected))),
        }
    };
    if crate::connections::connection_between(store, inviter, &invitee)?.is_none() {
        return Ok(Some(Err(InviteError::NotConnected)));
    }
    let Some(secrets) = keys::open_member_secrets(store, group, inviter, data_key)? else {
        return Ok(None);
    };
    let delivery = {
        let txn = store.read()?;
        delivery_key(&txn.open_table(USERS)?, &invitee)?
    };
    let Some(delivery) = delivery else {
        return Ok(Some(Err(InviteError::NotConnected)));
    };
    let invite = InviteRecord {
        inviter: *inviter,
        day: day(now),
        name_key: hybrid::seal_to(&delivery, secrets.name_key.expose()).map_err(crypto)?,
    };
    let txn = store.write()?;
    let outcome = {
        let members = memberships(&txn.open_table(GROUP_MEMBERS)?, group)?;
        let pending = invitees(&txn.open_table(GROUP_TO_INVITEES)?, group)?;
        let current: Option<GroupRecord> = load(&txn.open_table(GROUPS)?, group)?;
        if current.is_none_or(|g| &g.creator != inviter)
            || members
                .get(inviter)
                .is_none_or(|r| r.joined_epoch().is_none())
        {
            return Ok(None);
        }
        if members
            .get(&invitee)
            .is_some_and(|r| r.joined_epoch().is_some())
        {
            Err(InviteError::AlreadyMember)
        } else if pending.contains(&invitee) {
            Err(InviteError::AlreadyInvited)
        } else if active(&members).len() + pending.len() >= max_members {
            Err(InviteError::Full(max_members))
        } else {
            txn.open_table(GROUP_INVITES)?
                .insert((invitee, *group), invite.encode()?.as_slice())?;
            txn.open_table(GROUP_TO_INVITEES)?
                .insert((*group, invitee), ())?;
            Ok(Invited { invitee })
        }
    };
    if outcome.is_ok() {
        txn.commit()?;
    } else {
        txn.abort()?;
    }
    Ok(Some(outcome))
}

/// `member` accepts their invitation to `group`: they join with their own fresh signing
/// key, and a new epoch begins for everyone (the new member gets only its key). Returns
/// the current members, or `None` when there is no such invitation.
pub fn accept(
    store: &Store,
    group: &Id,
    member: &Id,
    data_key: &SecretKey,
    signing: &SigningKey,
    now: UnixTime,
) -> Result<Option<Vec<Id>>, StoreError> {
    let (invite, user) = {
        let txn = store.read()?;
        let invite: Option<InviteRecord> =
            load2(&txn.open_table(GROUP_INVITES)?, (*member, *group))?;
        let user: Option<UserRecord> = load(&txn.open_table(USERS)?, member)?;
        (invite, user)
    };
    let (Some(invite), Some(user)) = (invite, user) else {
        return Ok(None);
    };
    let delivery =
        hybrid::unseal_private(&user.delivery_private_sealed, data_key).map_err(crypto)?;
    // Sealed by this server at invitation time: not client input.
    let name_key_bytes = hybrid::open_with(&delivery, &invite.name_key).map_err(crypto)?;
    let name_key = SecretKey::from_slice(&name_key_bytes).map_err(crypto)?;
    let secrets = MemberSecrets::new(name_key, signing)
        .and_then(|s| s.seal_under(data_key))
        .map_err(crypto)?;
    let verifying_key = signing.verifying_key().map_err(crypto)?;

    let txn = store.write()?;
    let members = {
        // Still invited, and the group still there?
        if txn
            .open_table(GROUP_INVITES)?
            .remove((*member, *group))?
            .is_none()
        {
            return Ok(None);
        }
        txn.open_table(GROUP_TO_INVITEES)?
            .remove((*group, *member))?;
        let Some(mut record) = load::<GroupRecord>(&txn.open_table(GROUPS)?, group)? else {
            return Ok(None);
        };
        let mut members = active(&memberships(&txn.open_table(GROUP_MEMBERS)?, group)?);
        members.push(*member);
        let epoch = new_epoch_in(&txn, group, &mut record, &members, Some((member, data_key)))?;
        let first_seq = txn
            .open_table(CONVERSATION_TO_LAST_SEQ)?
            .get(group)?
            .map_or(1, |g| g.value().saturating_add(1));
        let membership = MembershipRecord {
            state: MemberState::Active {
                joined_epoch: epoch,
                first_seq,
            },
            verifying_key,
            joined_day: day(now),
        };
        txn.open_table(GROUP_MEMBERS)?
            .insert((*group, *member), membership.encode()?.as_slice())?;
        txn.open_table(MEMBER_TO_GROUPS)?
            .insert((*member, *group), ())?;
        txn.open_table(GROUP_MEMBER_SECRETS)?
            .insert((*group, *member), secrets.encode()?.as_slice())?;
        txn.open_table(GROUPS)?
            .insert(group, record.encode()?.as_slice())?;
        members
    };
    txn.commit()?;
    Ok(Some(members))
}

/// `member` declines their invitation. Returns whether there was one.
pub fn decline(store: &Store, group: &Id, member: &Id) -> Result<bool, StoreError> {
    let txn = store.write()?;
    let existed = txn
        .open_table(GROUP_INVITES)?
        .remove((*member, *group))?
        .is_some();
    txn.open_table(GROUP_TO_INVITEES)?
        .remove((*group, *member))?;
    txn.commit()?;
    Ok(existed)
}

/// `member` leaves `group`. `None` when they are not a current member.
pub fn leave(store: &Store, group: &Id, member: &Id) -> Result<Option<Departure>, StoreError> {
    let txn = store.write()?;
    let members = memberships(&txn.open_table(GROUP_MEMBERS)?, group)?;
    if members
        .get(member)
        .is_none_or(|r| r.joined_epoch().is_none())
    {
        return Ok(None);
    }
    let departure = depart_in(&txn, group, member, false)?;
    txn.commit()?;
    Ok(Some(departure))
}

/// Why a removal was refused. Shown to the member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RemoveError {
    #[error("Only the group's creator can remove members.")]
    NotCreator,
    #[error("To leave the group, use Leave.")]
    Yourself,
    #[error("That member is not in this group.")]
    NotThere,
}

/// What a removal did.
#[derive(Debug, Clone)]
pub enum Removed {
    /// A member was removed (new epoch).
    Member { removed: Id, departure: Departure },
    /// A pending invitation was withdrawn.
    Invitation(Id),
}

/// The creator `actor` removes `target` (a member, or an invitee whose invitation is
/// withdrawn). `None` when `actor` is not a current member of `group`.
pub fn remove(
    store: &Store,
    group: &Id,
    actor: &Id,
    target: &Id,
) -> Result<Option<Result<Removed, RemoveError>>, StoreError> {
    let txn = store.write()?;
    let outcome = {
        let Some(record) = load::<GroupRecord>(&txn.open_table(GROUPS)?, group)? else {
            return Ok(None);
        };
        let members = memberships(&txn.open_table(GROUP_MEMBERS)?, group)?;
        if members
            .get(actor)
            .is_none_or(|r| r.joined_epoch().is_none())
        {
            return Ok(None);
        }
        if &record.creator != actor {
            Err(RemoveError::NotCreator)
        } else if target == actor {
            Err(RemoveError::Yourself)
        } else if members
            .get(target)
            .is_some_and(|r| r.joined_epoch().is_some())
        {
            let departure = depart_in(&txn, group, target, false)?;
            Ok(Removed::Member {
                removed: *target,
                departure,
            })
        } else if txn
            .open_table(GROUP_INVITES)?
            .remove((*target, *group))?
            .is_some()
        {
            txn.open_table(GROUP_TO_INVITEES)?
                .remove((*group, *target))?;
            Ok(Removed::Invitation(*target))
        } else {
            Err(RemoveError::NotThere)
        }
    };
    if outcome.is_ok() {
        txn.commit()?;
    } else {
        txn.abort()?;
    }
    Ok(Some(outcome))
}

/// Account deletion: `member` leaves every group (with a new epoch for the rest), their
/// membership records, keys and authored messages go, and so do invitations to them and
/// invitations they made. Inside the caller's transaction.
pub fn delete_member_in(txn: &WriteTransaction, member: &Id) -> Result<(), StoreError> {
    let groups: Vec<Id> = {
        let index = txn.open_table(MEMBER_TO_GROUPS)?;
        let mut out = Vec::new();
        for row in index.range((*member, [0u8; 16])..=(*member, [0xffu8; 16]))? {
            out.push(row?.0.value().1);
        }
        out
    };
    for group in groups {
        depart_in(txn, &group, member, true)?;
        txn.open_table(MEMBER_TO_GROUPS)?.remove((*member, group))?;
    }
    let invited: Vec<Id> = {
        let table = txn.open_table(GROUP_INVITES)?;
        let mut out = Vec::new();
        for row in table.range((*member, [0u8; 16])..=(*member, [0xffu8; 16]))? {
            out.push(row?.0.value().1);
        }
        out
    };
    for group in invited {
        txn.open_table(GROUP_INVITES)?.remove((*member, group))?;
        txn.open_table(GROUP_TO_INVITEES)?
            .remove((group, *member))?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Sending

/// A group message just stored.
#[derive(Debug, Clone)]
pub struct GroupSent {
    pub seq: u64,
    pub id: Id,
    /// Every current member (to notify), the sender included.
    pub members: Vec<Id>,
}

/// Encrypt under the current epoch's key, sign with the sender's key for this group, and
/// store. `text` must have passed `chat::clean_text`. `None` when `sender` is not a
/// current member.
pub fn send(
    store: &Store,
    group: &Id,
    sender: &Id,
    data_key: &SecretKey,
    text: &str,
    now: UnixTime,
    timer: Option<i64>,
) -> Result<Option<GroupSent>, StoreError> {
    let Some(secrets) = keys::open_member_secrets(store, group, sender, data_key)? else {
        return Ok(None);
    };
    let signing = secrets.signing_key().map_err(crypto)?;
    // A membership change between reading the epoch and committing would leave the
    // message under a key that some current member lacks: retry under the new epoch.
    for _ in 0..3 {
        let Some(record) = load::<GroupRecord>(&store.read()?.open_table(GROUPS)?, group)? else {
            return Ok(None);
        };
        let epoch = record.epoch;
        let held = keys::open_epoch_keys(store, group, sender, data_key, epoch..=epoch)?;
        let Some(key) = held.get(&epoch) else {
            return Ok(None);
        };
        let header = Header {
            sender: *sender,
            id: random_bytes(),
            sent_at: now,
            epoch,
            expires_at: timer.map(|t| now.saturating_add(t)),
        };
        let message = chat::seal_message(group, &header, key, &signing, text).map_err(crypto)?;
        let encoded = message.encode()?;
        let txn = store.write()?;
        let current: Option<GroupRecord> = load(&txn.open_table(GROUPS)?, group)?;
        if current.as_ref().is_none_or(|g| g.epoch != epoch) {
            txn.abort()?;
            continue;
        }
        let members = active(&memberships(&txn.open_table(GROUP_MEMBERS)?, group)?);
        if !members.contains(sender) {
            txn.abort()?;
            return Ok(None);
        }
        let seq = {
            let mut last = txn.open_table(CONVERSATION_TO_LAST_SEQ)?;
            let seq = last.get(group)?.map_or(1, |g| g.value().saturating_add(1));
            last.insert(group, seq)?;
            seq
        };
        txn.open_table(MESSAGES)?
            .insert((*group, seq), encoded.as_slice())?;
        {
            let mut undelivered = txn.open_table(UNDELIVERED)?;
            for m in members.iter().filter(|m| *m != sender) {
                undelivered.insert((*m, *group, seq), ())?;
            }
        }
        chat::index_deadline_in(&txn, group, seq, message.expires_at)?;
        txn.commit()?;
        return Ok(Some(GroupSent {
            seq,
            id: header.id,
            members,
        }));
    }
    Err(StoreError::Corrupt(
        "group membership kept changing while sending".into(),
    ))
}

// ---------------------------------------------------------------------------------------
// Reading

/// A member of a group as the page shows them.
#[derive(Clone)]
pub struct MemberEntry {
    pub id: Id,
    pub username: String,
    pub scheme: &'static str,
    pub fingerprint: String,
    pub creator: bool,
}

/// A pending invitation as the group page shows it.
#[derive(Clone)]
pub struct PendingEntry {
    pub id: Id,
    pub username: String,
}

/// A group opened for one of its current members: names, verifying keys, and the epoch
/// keys they hold. Holds keys; dropped after one request, or at the end of a live stream.
pub struct GroupView {
    pub id: Id,
    pub me: Id,
    pub name: String,
    pub creator: Id,
    pub epoch: u32,
    /// The first message of the member's current membership.
    pub first_seq: u64,
    /// Current members, in name order.
    pub members: Vec<MemberEntry>,
    pub pending: Vec<PendingEntry>,
    /// Names of everyone who ever was a member (for messages by former members).
    names: HashMap<Id, String>,
    verifying: HashMap<Id, VerifyingKey>,
    epoch_keys: BTreeMap<u32, SecretKey>,
}

impl std::fmt::Debug for GroupView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupView")
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

crate::connections::debug_without_names!(MemberEntry, PendingEntry);

/// Open `group` for `me`: `None` unless they are a current member.
pub fn open(
    store: &Store,
    group: &Id,
    me: &Id,
    data_key: &SecretKey,
) -> Result<Option<GroupView>, StoreError> {
    let txn = store.read()?;
    let Some(record) = load::<GroupRecord>(&txn.open_table(GROUPS)?, group)? else {
        return Ok(None);
    };
    let records = memberships(&txn.open_table(GROUP_MEMBERS)?, group)?;
    let Some(MemberState::Active {
        joined_epoch,
        first_seq,
    }) = records.get(me).map(|r| r.state.clone())
    else {
        return Ok(None);
    };
    let users = txn.open_table(USERS)?;
    let mut names = HashMap::new();
    let mut verifying = HashMap::new();
    let mut members = Vec::new();
    for (id, r) in &records {
        let Some(user) = load::<UserRecord>(&users, id)? else {
            continue;
        };
        if r.joined_epoch().is_some() {
            members.push(MemberEntry {
                id: *id,
                username: user.username.clone(),
                scheme: r.verifying_key.scheme_name(),
                fingerprint: r.verifying_key.fingerprint(),
                creator: id == &record.creator,
            });
        }
        names.insert(*id, user.username);
        verifying.insert(*id, r.verifying_key.clone());
    }
    members.sort_by(|a, b| a.username.cmp(&b.username));
    let mut pending = Vec::new();
    for invitee in invitees(&txn.open_table(GROUP_TO_INVITEES)?, group)? {
        if let Some(user) = load::<UserRecord>(&users, &invitee)? {
            pending.push(PendingEntry {
                id: invitee,
                username: user.username,
            });
        }
    }
    pending.sort_by(|a, b| a.username.cmp(&b.username));
    let secrets_row: Option<MemberSecretsRecord> =
        load2(&txn.open_table(GROUP_MEMBER_SECRETS)?, (*group, *me))?;
    drop(users);
    drop(txn);
    let Some(secrets_row) = secrets_row else {
        return Ok(None);
    };
    let secrets = keys::open_member_secrets_record(&secrets_row, data_key)?;
    let name = secrets
        .name_key
        .open(&record.name_sealed)
        .ok()
        .and_then(|b| String::from_utf8(b.to_vec()).ok())
        .unwrap_or_else(|| "(unreadable name)".into());
    let epoch_keys =
        keys::open_epoch_keys(store, group, me, data_key, joined_epoch..=record.epoch)?;
    Ok(Some(GroupView {
        id: *group,
        me: *me,
        name,
        creator: record.creator,
        epoch: record.epoch,
        first_seq,
        members,
        pending,
        names,
        verifying,
        epoch_keys,
    }))
}

impl GroupView {
    /// Whether `me` is the creator.
    pub fn i_am_creator(&self) -> bool {
        self.creator == self.me
    }

    /// The name of a (current or former) member.
    pub fn name_of(&self, member: &Id) -> &str {
        self.names
            .get(member)
            .map_or("(former member)", String::as_str)
    }

    /// Whether `member` is or was in this group (as this view knows it).
    pub fn knows(&self, member: &Id) -> bool {
        self.names.contains_key(member)
    }

    /// My verifying key's scheme, for the page.
    pub fn my_scheme(&self) -> &'static str {
        self.verifying
            .get(&self.me)
            .map_or("", VerifyingKey::scheme_name)
    }

    /// Whether this view lacks the key of `epoch` although it should hold it (the group
    /// moved on since it was opened).
    pub fn is_stale_for(&self, epoch: u32) -> bool {
        epoch > self.epoch
    }

    /// Verify and decrypt one stored message.
    pub fn show(&self, seq: u64, record: &MessageRecord) -> Shown {
        chat::show_record(
            &self.id,
            &self.me,
            seq,
            record,
            self.verifying.get(&record.sender),
            self.epoch_keys.get(&record.epoch),
        )
    }

    fn range(
        &self,
        store: &Store,
        from: u64,
        to: u64,
        limit: usize,
    ) -> Result<(Vec<Shown>, bool), StoreError> {
        let txn = store.read()?;
        let table = txn.open_table(MESSAGES)?;
        let mut out = Vec::new();
        let mut more = false;
        if from <= to {
            for row in table.range((self.id, from)..=(self.id, to))?.rev() {
                let (k, v) = row?;
                if out.len() >= limit {
                    more = true;
                    break;
                }
                out.push(self.show(k.value().1, &MessageRecord::decode(v.value())?));
            }
        }
        out.reverse();
        Ok((out, more))
    }

    /// Up to `limit` messages of the current membership before `before` (or the latest),
    /// oldest first; and whether older ones exist.
    pub fn history(
        &self,
        store: &Store,
        before: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<Shown>, bool), StoreError> {
        let to = before.map_or(u64::MAX, |b| b.saturating_sub(1));
        self.range(store, self.first_seq, to, limit)
    }

    /// The latest `limit` messages after `after`, oldest first; and whether some were
    /// left out.
    pub fn since(
        &self,
        store: &Store,
        after: u64,
        limit: usize,
    ) -> Result<(Vec<Shown>, bool), StoreError> {
        let from = after.saturating_add(1).max(self.first_seq);
        self.range(store, from, u64::MAX, limit)
    }

    /// One message by sequence number (`None` if gone or before this membership).
    pub fn message(&self, store: &Store, seq: u64) -> Result<Option<Shown>, StoreError> {
        if seq < self.first_seq {
            return Ok(None);
        }
        let txn = store.read()?;
        let table = txn.open_table(MESSAGES)?;
        let Some(v) = table.get((self.id, seq))? else {
            return Ok(None);
        };
        Ok(Some(self.show(seq, &MessageRecord::decode(v.value())?)))
    }
}

/// A group in a member's list.
#[derive(Clone)]
pub struct GroupEntry {
    pub id: Id,
    pub name: String,
    pub members: usize,
    pub creator: bool,
}

/// An invitation in the invitee's list.
#[derive(Clone)]
pub struct InvitationEntry {
    pub group: Id,
    pub name: String,
    pub inviter: String,
    pub day: i64,
}

crate::connections::debug_without_names!(GroupEntry, InvitationEntry);

/// `member`'s groups and pending invitations, in name order.
pub fn overview(
    store: &Store,
    member: &Id,
    data_key: &SecretKey,
) -> Result<(Vec<GroupEntry>, Vec<InvitationEntry>), StoreError> {
    let txn = store.read()?;
    let index = txn.open_table(MEMBER_TO_GROUPS)?;
    let groups = txn.open_table(GROUPS)?;
    let members_table = txn.open_table(GROUP_MEMBERS)?;
    let secrets = txn.open_table(GROUP_MEMBER_SECRETS)?;
    let mut out = Vec::new();
    for row in index.range((*member, [0u8; 16])..=(*member, [0xffu8; 16]))? {
        let group = row?.0.value().1;
        let Some(record) = load::<GroupRecord>(&groups, &group)? else {
            continue;
        };
        let members = memberships(&members_table, &group)?;
        if members
            .get(member)
            .is_none_or(|r| r.joined_epoch().is_none())
        {
            continue;
        }
        let Some(sealed) = load2::<MemberSecretsRecord>(&secrets, (group, *member))? else {
            continue;
        };
        let name = keys::open_member_secrets_record(&sealed, data_key)
            .ok()
            .and_then(|s| s.name_key.open(&record.name_sealed).ok())
            .and_then(|b| String::from_utf8(b.to_vec()).ok())
            .unwrap_or_else(|| "(unreadable name)".into());
        out.push(GroupEntry {
            id: group,
            name,
            members: active(&members).len(),
            creator: &record.creator == member,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    let invites_table = txn.open_table(GROUP_INVITES)?;
    let users = txn.open_table(USERS)?;
    let mut pending: Vec<(Id, InviteRecord, GroupRecord)> = Vec::new();
    for row in invites_table.range((*member, [0u8; 16])..=(*member, [0xffu8; 16]))? {
        let (k, v) = row?;
        let group = k.value().1;
        let invite = InviteRecord::decode(v.value())?;
        if let Some(record) = load::<GroupRecord>(&groups, &group)? {
            pending.push((group, invite, record));
        }
    }
    let user: Option<UserRecord> = load(&users, member)?;
    let mut invitations = Vec::new();
    if !pending.is_empty()
        && let Some(user) = user
    {
        let delivery =
            hybrid::unseal_private(&user.delivery_private_sealed, data_key).map_err(crypto)?;
        for (group, invite, record) in pending {
            // Sealed by this server at invitation time: not client input.
            let name = hybrid::open_with(&delivery, &invite.name_key)
                .ok()
                .and_then(|k| SecretKey::from_slice(&k).ok())
                .and_then(|k| k.open(&record.name_sealed).ok())
                .and_then(|b| String::from_utf8(b.to_vec()).ok())
                .unwrap_or_else(|| "(unreadable name)".into());
            let inviter = load::<UserRecord>(&users, &invite.inviter)?
                .map_or_else(|| "a former member".to_owned(), |u| u.username);
            invitations.push(InvitationEntry {
                group,
                name,
                inviter,
                day: invite.day,
            });
        }
    }
    invitations.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((out, invitations))
}

/// Whether `member` has a pending invitation to `group`.
pub fn is_invited(store: &Store, group: &Id, member: &Id) -> Result<bool, StoreError> {
    let txn = store.read()?;
    Ok(txn
        .open_table(GROUP_INVITES)?
        .get((*member, *group))?
        .is_some())
}

#[cfg(test)]
mod tests;
