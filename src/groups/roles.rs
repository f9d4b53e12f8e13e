//! Roles and permissions in a group.
//!
//! - The **creator** owns the group: they make members admins and demote them, hand the
//!   group over to another member (and become an admin), decide whether every member may
//!   invite, invite, and remove anyone.
//! - **Admins** invite and remove members (not the creator, not other admins), and may
//!   step down.
//! - **Members** read and write; they invite their own connections only when the group
//!   allows it (`members_invite`), and may withdraw the invitations they made.
//!
//! Anything else is refused as "not found", exactly as for a non-member, and changes
//! nothing. When the creator leaves (or their account is deleted), the longest-standing
//! admin becomes the creator, or, without admins, the longest-standing member. A member
//! who leaves or is removed loses their admin role; coming back, they are a member.
//!
//! Every change is an event in the group (see [`super::events`]), sealed under the key
//! of the current epoch as the member who acts holds it. Role changes do not start a new
//! epoch: nobody gains or loses access to messages by them.

use std::collections::BTreeMap;

use super::events::{self, EventKind};
use super::*;

/// What a member is in a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Creator,
    Admin,
    Member,
}

impl Role {
    /// The label pages show beside a name (none for plain members).
    pub fn label(self) -> Option<&'static str> {
        match self {
            Role::Creator => Some("creator"),
            Role::Admin => Some("admin"),
            Role::Member => None,
        }
    }

    /// Creator or admin: invites and removes.
    pub fn manages(self) -> bool {
        matches!(self, Role::Creator | Role::Admin)
    }
}

/// Who holds which role in a group, and its invitation setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roles {
    pub creator: Id,
    pub admins: Vec<Id>,
    pub members_invite: bool,
}

impl GroupRecord {
    pub fn roles(&self) -> Roles {
        Roles {
            creator: self.creator,
            admins: self.admins.clone(),
            members_invite: self.members_invite,
        }
    }
}

impl Roles {
    /// The role of a current member (the caller knows that they are one).
    pub fn role_of(&self, member: &Id) -> Role {
        if &self.creator == member {
            Role::Creator
        } else if self.admins.contains(member) {
            Role::Admin
        } else {
            Role::Member
        }
    }

    /// Whether current member `member` may invite their connections.
    pub fn may_invite(&self, member: &Id) -> bool {
        self.role_of(member).manages() || self.members_invite
    }

    /// Whether current member `actor` may remove current member `target`.
    pub fn may_remove(&self, actor: &Id, target: &Id) -> bool {
        actor != target
            && matches!(
                (self.role_of(actor), self.role_of(target)),
                (Role::Creator, _) | (Role::Admin, Role::Member)
            )
    }

    /// Whether current member `actor` may withdraw an invitation made by `inviter`.
    pub fn may_withdraw(&self, actor: &Id, inviter: &Id) -> bool {
        self.role_of(actor).manages() || actor == inviter
    }
}

/// Who becomes the creator when the creator goes: the longest-standing admin (earliest
/// epoch; ties by id), else the longest-standing member. `members` no longer holds the
/// creator.
pub(super) fn successor(
    record: &GroupRecord,
    members: &BTreeMap<Id, MembershipRecord>,
) -> Option<Id> {
    let earliest = |admins_only: bool| {
        members
            .iter()
            .filter(|(id, _)| !admins_only || record.admins.contains(id))
            .filter_map(|(id, r)| r.joined_epoch().map(|e| (e, *id)))
            .min()
            .map(|(_, id)| id)
    };
    earliest(true).or_else(|| earliest(false))
}

/// A change of roles or settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleChange {
    /// The creator makes a member an admin.
    MakeAdmin(Id),
    /// The creator demotes an admin, or an admin steps down (`Id` is theirs).
    RevokeAdmin(Id),
    /// The creator hands the group over to a member and becomes an admin.
    HandOver(Id),
    /// The creator lets every member invite their own connections, or not.
    MembersInvite(bool),
}

impl RoleChange {
    /// Whether `actor`, a current member with `roles`, may make this change at all
    /// (before looking at its target). Checked before anything else: "not found" if not.
    pub fn permitted(&self, roles: &Roles, actor: &Id) -> bool {
        match self {
            RoleChange::RevokeAdmin(target) if target == actor => {
                roles.role_of(actor) == Role::Admin
            }
            RoleChange::MakeAdmin(_)
            | RoleChange::RevokeAdmin(_)
            | RoleChange::HandOver(_)
            | RoleChange::MembersInvite(_) => roles.role_of(actor) == Role::Creator,
        }
    }
}

/// Why a permitted change could not be made. Shown to the member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RoleError {
    #[error("That member is not in this group.")]
    NotThere,
    #[error("That member is already an admin.")]
    AlreadyAdmin,
    #[error("That member is not an admin.")]
    NotAdmin,
    #[error("You already own this group.")]
    Yourself,
}

/// `actor` makes `change` in `group`, with the event that shows it. `None` when `actor`
/// is not a current member or has no right to make it (nothing changes either way).
pub fn change_role(
    store: &Store,
    group: &Id,
    actor: &Id,
    data_key: &SecretKey,
    change: RoleChange,
    now: UnixTime,
) -> Result<Option<Result<(), RoleError>>, StoreError> {
    let outcome = with_current_key(store, group, actor, data_key, |txn, record, epoch, key| {
        let mut roles = record.roles();
        if member_role_in(txn, group, record, actor)?.is_none() || !change.permitted(&roles, actor)
        {
            return Ok(Change::Abort(None));
        }
        let is_member = |m: &Id| -> Result<bool, StoreError> {
            Ok(member_role_in(txn, group, record, m)?.is_some())
        };
        let event = match change {
            RoleChange::MakeAdmin(whom) => {
                if !is_member(&whom)? {
                    return Ok(Change::Abort(Some(Err(RoleError::NotThere))));
                }
                if roles.role_of(&whom) != Role::Member {
                    return Ok(Change::Abort(Some(Err(RoleError::AlreadyAdmin))));
                }
                roles.admins.push(whom);
                EventKind::MadeAdmin { by: *actor, whom }
            }
            RoleChange::RevokeAdmin(whom) => {
                if !is_member(&whom)? {
                    return Ok(Change::Abort(Some(Err(RoleError::NotThere))));
                }
                if roles.role_of(&whom) != Role::Admin {
                    return Ok(Change::Abort(Some(Err(RoleError::NotAdmin))));
                }
                roles.admins.retain(|a| a != &whom);
                EventKind::AdminRevoked { by: *actor, whom }
            }
            RoleChange::HandOver(to) => {
                if &to == actor {
                    return Ok(Change::Abort(Some(Err(RoleError::Yourself))));
                }
                if !is_member(&to)? {
                    return Ok(Change::Abort(Some(Err(RoleError::NotThere))));
                }
                roles.admins.retain(|a| a != &to);
                roles.admins.push(*actor);
                roles.creator = to;
                EventKind::HandedOver {
                    by: Some(*actor),
                    to,
                }
            }
            RoleChange::MembersInvite(allowed) => {
                if roles.members_invite == allowed {
                    // Nothing to change, nothing to show.
                    return Ok(Change::Abort(Some(Ok(()))));
                }
                roles.members_invite = allowed;
                EventKind::MembersInvite {
                    by: *actor,
                    allowed,
                }
            }
        };
        let updated = GroupRecord {
            creator: roles.creator,
            admins: roles.admins,
            members_invite: roles.members_invite,
            ..record.clone()
        };
        txn.open_table(GROUPS)?
            .insert(group, updated.encode()?.as_slice())?;
        events::append_in(txn, group, epoch, key, Some(now), event)?;
        Ok(Change::Commit(Some(Ok(()))))
    })?;
    Ok(outcome.flatten())
}

/// The roles of `group` and whether `member` is a current member there (one read).
pub fn roles_for(store: &Store, group: &Id, member: &Id) -> Result<Option<Roles>, StoreError> {
    let txn = store.read()?;
    let Some(record) = load::<GroupRecord>(&txn.open_table(GROUPS)?, group)? else {
        return Ok(None);
    };
    let membership: Option<MembershipRecord> =
        load2(&txn.open_table(GROUP_MEMBERS)?, (*group, *member))?;
    Ok(membership
        .filter(|m| m.joined_epoch().is_some())
        .map(|_| record.roles()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn who_may_do_what() {
        let (c, a, m, n) = ([1u8; 16], [2u8; 16], [3u8; 16], [4u8; 16]);
        let mut roles = Roles {
            creator: c,
            admins: vec![a],
            members_invite: false,
        };
        assert_eq!(roles.role_of(&c), Role::Creator);
        assert_eq!(roles.role_of(&a), Role::Admin);
        assert_eq!(roles.role_of(&m), Role::Member);
        assert!(roles.may_invite(&c) && roles.may_invite(&a) && !roles.may_invite(&m));
        assert!(roles.may_remove(&c, &a) && roles.may_remove(&c, &m));
        assert!(roles.may_remove(&a, &m));
        assert!(
            !roles.may_remove(&a, &c),
            "an admin cannot remove the creator"
        );
        assert!(!roles.may_remove(&a, &a), "nor themselves (that is Leave)");
        assert!(!roles.may_remove(&m, &n), "a member removes nobody");
        assert!(roles.may_withdraw(&a, &c) && roles.may_withdraw(&m, &m));
        assert!(!roles.may_withdraw(&m, &c));
        for change in [
            RoleChange::MakeAdmin(m),
            RoleChange::RevokeAdmin(a),
            RoleChange::HandOver(m),
            RoleChange::MembersInvite(true),
        ] {
            assert!(change.permitted(&roles, &c), "{change:?}");
            assert!(!change.permitted(&roles, &m), "{change:?}");
        }
        assert!(
            RoleChange::RevokeAdmin(a).permitted(&roles, &a),
            "steps down"
        );
        assert!(!RoleChange::MakeAdmin(m).permitted(&roles, &a));
        assert!(!RoleChange::RevokeAdmin(m).permitted(&roles, &m));
        roles.members_invite = true;
        assert!(roles.may_invite(&m));
    }

    #[test]
    fn version_1_group_records_still_read() {
        #[derive(Serialize)]
        struct V1 {
            creator: Id,
            epoch: u32,
            name_sealed: String,
            created_day: i64,
        }
        let mut bytes = vec![1u8];
        bytes.extend(
            postcard::to_stdvec(&V1 {
                creator: [7; 16],
                epoch: 3,
                name_sealed: "sealed".into(),
                created_day: 9,
            })
            .unwrap(),
        );
        let record = GroupRecord::decode(&bytes).unwrap();
        assert_eq!(record.creator, [7; 16]);
        assert_eq!(record.epoch, 3);
        assert_eq!(record.name_sealed, "sealed");
        assert!(record.admins.is_empty() && !record.members_invite);
        let again = GroupRecord::decode(&record.encode().unwrap()).unwrap();
        assert_eq!(again.roles(), record.roles());
        assert!(GroupRecord::decode(&[3, 0]).is_err());
    }
}
