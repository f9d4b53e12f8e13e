//! A member's groups and pending invitations.

use super::*;

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
