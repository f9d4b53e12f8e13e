//! Membership: create a group, invite, accept or decline, leave, remove, and account
//! deletion. Each change of the members starts a new key epoch (see `super::keys`).

use redb::{ReadableTable, WriteTransaction};

use super::events::{self, EventKind};
use super::*;
use crate::store::cascade::Removal;

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
    let verifying_key = signing.verifying_key().map_err(crypto)?;
    let book = keys::Book::from([(
        *creator,
        keys::member_key_digest(&id, creator, &verifying_key),
    )]);
    let secrets = MemberSecrets::new(name_key.clone(), signing, &book)
        .and_then(|s| s.seal_under(data_key))
        .map_err(crypto)?;
    let mut record = GroupRecord {
        creator: *creator,
        epoch: 0,
        name_sealed: name_key.seal(name.as_bytes()).map_err(crypto)?,
        created_day: day(now),
        admins: Vec::new(),
        members_invite: false,
    };
    let membership = MembershipRecord {
        state: MemberState::Active {
            joined_epoch: 1,
            first_seq: 1,
        },
        verifying_key,
        joined_day: day(now),
    };
    let txn = store.write()?;
    {
        let (epoch, key) = new_epoch_in(
            &txn,
            &id,
            &mut record,
            &[*creator],
            Some((creator, data_key)),
        )?;
        events::append_in(
            &txn,
            &id,
            epoch,
            &key,
            Some(now),
            EventKind::Created { by: *creator },
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

/// Why an invitation was refused. Shown to the member who invited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InviteError {
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

/// `inviter` invites the member named `username`, who must be one of their connections.
/// `None` when `inviter` is not a current member of `group`, or may not invite (see
/// [`roles`]): nothing changes then.
pub fn invite(
    store: &Store,
    group: &Id,
    inviter: &Id,
    data_key: &SecretKey,
    username: &str,
    max_members: usize,
    now: UnixTime,
) -> Result<Option<Result<Invited, InviteError>>, StoreError> {
    if !roles::roles_for(store, group, inviter)?.is_some_and(|r| r.may_invite(inviter)) {
        return Ok(None);
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
        name_key: Sealed::ToDelivery(
            hybrid::seal_to(&delivery, secrets.name_key().expose()).map_err(crypto)?,
        ),
    };
    let encoded = invite.encode()?;
    let outcome = with_current_key(
        store,
        group,
        inviter,
        data_key,
        |txn, record, epoch, key| {
            let may = member_role_in(txn, group, record, inviter)?.is_some()
                && record.roles().may_invite(inviter);
            if !may {
                return Ok(Change::Abort(None));
            }
            let members = memberships(&txn.open_table(GROUP_MEMBERS)?, group)?;
            let pending = invitees(&txn.open_table(GROUP_TO_INVITEES)?, group)?;
            let refused = if members
                .get(&invitee)
                .is_some_and(|r| r.joined_epoch().is_some())
            {
                Some(InviteError::AlreadyMember)
            } else if pending.contains(&invitee) {
                Some(InviteError::AlreadyInvited)
            } else if active(&members).len() + pending.len() >= max_members {
                Some(InviteError::Full(max_members))
            } else {
                None
            };
            if let Some(e) = refused {
                return Ok(Change::Abort(Some(Err(e))));
            }
            txn.open_table(GROUP_INVITES)?
                .insert((invitee, *group), encoded.as_slice())?;
            txn.open_table(GROUP_TO_INVITEES)?
                .insert((*group, invitee), ())?;
            events::append_in(
                txn,
                group,
                epoch,
                key,
                Some(now),
                EventKind::Invited {
                    by: *inviter,
                    whom: invitee,
                },
            )?;
            Ok(Change::Commit(Some(Ok(Invited { invitee }))))
        },
    )?;
    Ok(outcome.flatten())
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
    let (invite, user, records) = {
        let txn = store.read()?;
        let invite: Option<InviteRecord> =
            load2(&txn.open_table(GROUP_INVITES)?, (*member, *group))?;
        let user: Option<UserRecord> = load(&txn.open_table(USERS)?, member)?;
        let records = memberships(&txn.open_table(GROUP_MEMBERS)?, group)?;
        (invite, user, records)
    };
    let (Some(invite), Some(_)) = (invite, user) else {
        return Ok(None);
    };
    let name_key = overview::open_name_key(
        &invite.name_key,
        data_key,
        &mut overview::LazyDelivery::new(store, member, data_key),
    )?;
    let verifying_key = signing.verifying_key().map_err(crypto)?;
    // The joiner vouches for every member's key as the file holds it now, and their own.
    let mut book: keys::Book = records
        .iter()
        .filter(|(id, _)| *id != member)
        .map(|(id, r)| (*id, keys::member_key_digest(group, id, &r.verifying_key)))
        .collect();
    book.insert(
        *member,
        keys::member_key_digest(group, member, &verifying_key),
    );
    let secrets = MemberSecrets::new(name_key, signing, &book)
        .and_then(|s| s.seal_under(data_key))
        .map_err(crypto)?;

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
        let (epoch, key) =
            new_epoch_in(&txn, group, &mut record, &members, Some((member, data_key)))?;
        // Their membership begins with the event of their joining.
        let first_seq = events::append_in(
            &txn,
            group,
            epoch,
            &key,
            Some(now),
            EventKind::Joined { whom: *member },
        )?;
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
pub fn leave(
    store: &Store,
    group: &Id,
    member: &Id,
    now: UnixTime,
) -> Result<Option<Departure>, StoreError> {
    let txn = store.write()?;
    let members = memberships(&txn.open_table(GROUP_MEMBERS)?, group)?;
    if members
        .get(member)
        .is_none_or(|r| r.joined_epoch().is_none())
    {
        return Ok(None);
    }
    let departure = depart_in(&txn, group, member, false, Departing::Left, Some(now))?;
    txn.commit()?;
    Ok(Some(departure))
}

/// Why a removal was refused. Shown to the member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RemoveError {
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

/// `actor` removes `target`: a member (the creator anyone, an admin plain members), or
/// an invitee whose invitation is withdrawn (the creator, admins, or whoever invited
/// them). `None` when `actor` is not a current member of `group` or has no right to
/// remove `target`: nothing changes then.
pub fn remove(
    store: &Store,
    group: &Id,
    actor: &Id,
    data_key: &SecretKey,
    target: &Id,
    now: UnixTime,
) -> Result<Option<Result<Removed, RemoveError>>, StoreError> {
    let outcome = with_current_key(store, group, actor, data_key, |txn, record, epoch, key| {
        if member_role_in(txn, group, record, actor)?.is_none() {
            return Ok(Change::Abort(None));
        }
        let roles = record.roles();
        if target == actor {
            return Ok(Change::Abort(Some(Err(RemoveError::Yourself))));
        }
        if member_role_in(txn, group, record, target)?.is_some() {
            if !roles.may_remove(actor, target) {
                return Ok(Change::Abort(None));
            }
            let how = Departing::Removed { by: *actor };
            let departure = depart_in(txn, group, target, false, how, Some(now))?;
            return Ok(Change::Commit(Some(Ok(Removed::Member {
                removed: *target,
                departure,
            }))));
        }
        let invite: Option<InviteRecord> =
            load2(&txn.open_table(GROUP_INVITES)?, (*target, *group))?;
        let Some(invite) = invite else {
            return Ok(Change::Abort(Some(Err(RemoveError::NotThere))));
        };
        if !roles.may_withdraw(actor, &invite.inviter) {
            return Ok(Change::Abort(None));
        }
        txn.open_table(GROUP_INVITES)?.remove((*target, *group))?;
        txn.open_table(GROUP_TO_INVITEES)?
            .remove((*group, *target))?;
        events::append_in(
            txn,
            group,
            epoch,
            key,
            Some(now),
            EventKind::InvitationWithdrawn {
                by: *actor,
                whom: *target,
            },
        )?;
        Ok(Change::Commit(Some(Ok(Removed::Invitation(*target)))))
    })?;
    Ok(outcome.flatten())
}

/// Account deletion (registered in the member deletion cascade): `member` leaves every
/// group (with a new epoch for the rest), their membership records, keys and authored
/// messages go, and so do invitations they made. Invitations to them go with
/// `Removal::Full`; a decoy keeps them waiting, as a member who does not answer would (the
/// name key in them is sealed to a delivery key whose private half is gone). Inside the
/// caller's transaction.
pub fn erase_member_in(
    txn: &WriteTransaction,
    member: &Id,
    removal: Removal,
) -> Result<(), StoreError> {
    let groups: Vec<Id> = {
        let index = txn.open_table(MEMBER_TO_GROUPS)?;
        let mut out = Vec::new();
        for row in index.range((*member, [0u8; 16])..=(*member, [0xffu8; 16]))? {
            out.push(row?.0.value().1);
        }
        out
    };
    for group in groups {
        depart_in(txn, &group, member, true, Departing::Left, None)?;
        txn.open_table(MEMBER_TO_GROUPS)?.remove((*member, group))?;
    }
    if removal == Removal::Decoy {
        return Ok(());
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
