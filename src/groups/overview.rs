//! A member's groups and pending invitations.

use super::*;
use crate::crypto::rsa_keys::RsaPrivate;

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
    Ok((
        groups_of(store, member, data_key)?,
        invitations(store, member, data_key)?,
    ))
}

/// `member`'s groups, in name order. Names open with their `data_key` (no RSA).
pub fn groups_of(
    store: &Store,
    member: &Id,
    data_key: &SecretKey,
) -> Result<Vec<GroupEntry>, StoreError> {
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
            .and_then(|s| s.name_key().open(&record.name_sealed).ok())
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
    Ok(out)
}

/// A member's delivery private key, opened from the store the first time it is needed
/// (parsing it is not free, and most invitations need it no more once re-sealed).
pub(super) struct LazyDelivery<'a> {
    store: &'a Store,
    member: &'a Id,
    data_key: &'a SecretKey,
    key: Option<RsaPrivate>,
}

impl<'a> LazyDelivery<'a> {
    pub(super) fn new(store: &'a Store, member: &'a Id, data_key: &'a SecretKey) -> Self {
        Self {
            store,
            member,
            data_key,
            key: None,
        }
    }

    fn get(&mut self) -> Result<&RsaPrivate, StoreError> {
        if self.key.is_none() {
            let user: Option<UserRecord> =
                load(&self.store.read()?.open_table(USERS)?, self.member)?;
            let user =
                user.ok_or_else(|| StoreError::Corrupt("member without an account".into()))?;
            let key = hybrid::unseal_private(&user.delivery_private_sealed, self.data_key)
                .map_err(crypto)?;
            self.key = Some(key);
        }
        self.key
            .as_ref()
            .ok_or_else(|| StoreError::Corrupt("delivery key".into()))
    }
}

/// Open an invitation's name key for the invitee: under their `data_key`, or, until they
/// first see it, with their delivery private key.
pub(super) fn open_name_key(
    sealed: &Sealed,
    data_key: &SecretKey,
    delivery: &mut LazyDelivery<'_>,
) -> Result<SecretKey, StoreError> {
    match sealed {
        Sealed::UnderDataKey(token) => data_key.unwrap_key(token).map_err(crypto),
        Sealed::ToDelivery(blob) => {
            // Sealed by this server at invitation time: not client input.
            let bytes = hybrid::open_with(delivery.get()?, blob).map_err(crypto)?;
            SecretKey::from_slice(&bytes).map_err(crypto)
        }
    }
}

/// `member`'s pending invitations, in name order. An invitation still sealed to their
/// delivery key is opened with it once (RSA) and re-sealed under their `data_key`, so that
/// the next look costs no RSA operation.
pub fn invitations(
    store: &Store,
    member: &Id,
    data_key: &SecretKey,
) -> Result<Vec<InvitationEntry>, StoreError> {
    let mut pending: Vec<(Id, InviteRecord, GroupRecord, String)> = Vec::new();
    {
        let txn = store.read()?;
        let groups = txn.open_table(GROUPS)?;
        let users = txn.open_table(USERS)?;
        let invites_table = txn.open_table(GROUP_INVITES)?;
        for row in invites_table.range((*member, [0u8; 16])..=(*member, [0xffu8; 16]))? {
            let (k, v) = row?;
            let group = k.value().1;
            let invite = InviteRecord::decode(v.value())?;
            if let Some(record) = load::<GroupRecord>(&groups, &group)? {
                let inviter = load::<UserRecord>(&users, &invite.inviter)?
                    .map_or_else(|| "a former member".to_owned(), |u| u.username);
                pending.push((group, invite, record, inviter));
            }
        }
    }
    let mut delivery = LazyDelivery::new(store, member, data_key);
    let mut out = Vec::with_capacity(pending.len());
    let mut resealed: Vec<(Id, Sealed, InviteRecord)> = Vec::new();
    for (group, invite, record, inviter) in pending {
        let key = open_name_key(&invite.name_key, data_key, &mut delivery).ok();
        if let (Some(k), Sealed::ToDelivery(_)) = (&key, &invite.name_key) {
            let again = InviteRecord {
                name_key: Sealed::UnderDataKey(data_key.wrap(k).map_err(crypto)?),
                ..invite.clone()
            };
            resealed.push((group, invite.name_key.clone(), again));
        }
        let name = key
            .and_then(|k| k.open(&record.name_sealed).ok())
            .and_then(|b| String::from_utf8(b.to_vec()).ok())
            .unwrap_or_else(|| "(unreadable name)".into());
        out.push(InvitationEntry {
            group,
            name,
            inviter,
            day: invite.day,
        });
    }
    if !resealed.is_empty() {
        // Replace only the rows that are still as they were read.
        let txn = store.write()?;
        {
            let mut table = txn.open_table(GROUP_INVITES)?;
            for (group, seen, again) in &resealed {
                let current = table
                    .get((*member, *group))?
                    .map(|b| InviteRecord::decode(b.value()))
                    .transpose()?;
                if current.is_some_and(|c| &c.name_key == seen) {
                    table.insert((*member, *group), again.encode()?.as_slice())?;
                }
            }
        }
        txn.commit()?;
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Whether `member` has a pending invitation to `group`.
pub fn is_invited(store: &Store, group: &Id, member: &Id) -> Result<bool, StoreError> {
    let txn = store.read()?;
    Ok(txn
        .open_table(GROUP_INVITES)?
        .get((*member, *group))?
        .is_some())
}
