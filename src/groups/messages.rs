//! Sending to a group and reading it: sealed under the current epoch's key, signed with
//! the sender's key for this group.

use super::*;

/// A group message just stored.
#[derive(Debug, Clone)]
pub struct GroupSent {
    pub seq: u64,
    pub id: Id,
    /// Every current member (to notify), the sender included.
    pub members: Vec<Id>,
}

/// Encrypt under the current epoch's key, sign with the sender's key for this group, and
/// store (in a commit shared with other sends, see `chat::commit`). `text` must have
/// passed `chat::clean_text`. `None` when `sender` is not a current member.
#[allow(
    clippy::too_many_arguments,
    reason = "one send: who, where, what, when"
)]
pub fn send(
    store: &Store,
    commits: &chat::commit::Committer,
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
        let ticket = commits.reserve(group)?;
        let header = Header {
            sender: *sender,
            id: random_bytes(),
            seq: ticket.seq(),
            sent_at: now,
            epoch,
            expires_at: timer.map(|t| now.saturating_add(t)),
        };
        let message = chat::seal_message(group, &header, key, &signing, text).map_err(crypto)?;
        let encoded = message.encode()?;
        let (group_id, sender_id, expires_at, id) =
            (*group, *sender, message.expires_at, header.id);
        let outcome = commits.commit(ticket, move |txn, seq| {
            let current: Option<GroupRecord> = load(&txn.open_table(GROUPS)?, &group_id)?;
            if current.as_ref().is_none_or(|g| g.epoch != epoch) {
                return Ok(Outcome::EpochChanged);
            }
            let members = active(&memberships(&txn.open_table(GROUP_MEMBERS)?, &group_id)?);
            if !members.contains(&sender_id) {
                return Ok(Outcome::NotMember);
            }
            txn.open_table(MESSAGES)?
                .insert((group_id, seq), encoded.as_slice())?;
            {
                let mut undelivered = txn.open_table(UNDELIVERED)?;
                for m in members.iter().filter(|m| **m != sender_id) {
                    undelivered.insert((*m, group_id, seq), ())?;
                }
            }
            chat::index_deadline_in(txn, &group_id, seq, expires_at)?;
            Ok(Outcome::Sent(GroupSent { seq, id, members }))
        })?;
        match outcome {
            Some(Outcome::Sent(sent)) => return Ok(Some(sent)),
            Some(Outcome::NotMember) => return Ok(None),
            // A new epoch, or the number taken by a group event: seal and sign again.
            Some(Outcome::EpochChanged) | None => continue,
        }
    }
    Err(StoreError::Corrupt(
        "group membership kept changing while sending".into(),
    ))
}

/// What the commit of a group message found.
enum Outcome {
    Sent(GroupSent),
    NotMember,
    EpochChanged,
}

/// A member of a group as the page shows them.
#[derive(Clone)]
pub struct MemberEntry {
    pub id: Id,
    pub username: String,
    pub scheme: &'static str,
    pub fingerprint: String,
    pub role: Role,
}

/// A pending invitation as the group page shows it.
#[derive(Clone)]
pub struct PendingEntry {
    pub id: Id,
    pub username: String,
    /// Who invited them (they may withdraw it).
    pub inviter: Id,
}

/// A group opened for one of its current members: names, verifying keys, and the epoch
/// keys they hold. Holds keys; dropped after one request, or at the end of a live stream.
pub struct GroupView {
    pub id: Id,
    pub me: Id,
    pub name: String,
    /// Who holds which role, and whether members may invite.
    pub roles: Roles,
    pub epoch: u32,
    /// The first message of the member's current membership.
    pub first_seq: u64,
    /// Current members, in name order.
    pub members: Vec<MemberEntry>,
    pub pending: Vec<PendingEntry>,
    /// Names of everyone who ever was a member (for messages by former members).
    names: HashMap<Id, String>,
    /// The verifying keys this member's own sealed book vouches for (a key rewritten in
    /// the file is missing here, so that member's messages do not verify).
    verifying: HashMap<Id, VerifyingKey>,
    /// Messages in older formats are accepted up to here.
    legacy_upto: u64,
    pub(super) epoch_keys: BTreeMap<u32, SecretKey>,
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
                role: record.roles().role_of(id),
            });
        }
        names.insert(*id, user.username);
        verifying.insert(*id, r.verifying_key.clone());
    }
    members.sort_by(|a, b| a.username.cmp(&b.username));
    let mut pending = Vec::new();
    let invites = txn.open_table(GROUP_INVITES)?;
    for invitee in invitees(&txn.open_table(GROUP_TO_INVITEES)?, group)? {
        let invite: Option<InviteRecord> = load2(&invites, (invitee, *group))?;
        if let (Some(user), Some(invite)) = (load::<UserRecord>(&users, &invitee)?, invite) {
            pending.push(PendingEntry {
                id: invitee,
                username: user.username,
                inviter: invite.inviter,
            });
        }
    }
    drop(invites);
    pending.sort_by(|a, b| a.username.cmp(&b.username));
    let secrets_row: Option<MemberSecretsRecord> =
        load2(&txn.open_table(GROUP_MEMBER_SECRETS)?, (*group, *me))?;
    let last_seq = txn
        .open_table(CONVERSATION_TO_LAST_SEQ)?
        .get(group)?
        .map_or(0, |g| g.value());
    drop(users);
    drop(txn);
    let Some(secrets_row) = secrets_row else {
        return Ok(None);
    };
    let mut secrets = keys::open_member_secrets_record(&secrets_row, data_key)?;
    let verifying = vouch(
        store,
        group,
        me,
        data_key,
        &mut secrets,
        &secrets_row,
        verifying,
        last_seq,
    )?;
    let name = secrets
        .name_key()
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
        roles: record.roles(),
        epoch: record.epoch,
        first_seq,
        members,
        pending,
        names,
        verifying,
        legacy_upto: secrets.legacy_upto(),
        epoch_keys,
    }))
}

/// Keep the keys of `keys` (every membership record's) that `me`'s book vouches for,
/// adding members it has not seen yet; re-seal the book when it grew (or was sealed by an
/// earlier version, which vouched for nothing: then everything in the file now is taken,
/// and older message formats are accepted up to `last_seq`).
#[allow(
    clippy::too_many_arguments,
    reason = "the group, the reader and what they hold"
)]
fn vouch(
    store: &Store,
    group: &Id,
    me: &Id,
    data_key: &SecretKey,
    secrets: &mut MemberSecrets,
    seen: &MemberSecretsRecord,
    keys: HashMap<Id, VerifyingKey>,
    last_seq: u64,
) -> Result<HashMap<Id, VerifyingKey>, StoreError> {
    let old = secrets.book().map_err(crypto)?;
    let upgrade = old.is_none();
    let mut book = old.unwrap_or_default();
    let mut grew = false;
    let mut trusted = HashMap::with_capacity(keys.len());
    for (member, key) in keys {
        let digest = keys::member_key_digest(group, &member, &key);
        match book.get(&member) {
            Some(known) if crate::crypto::ct_eq(known, &digest) => {
                trusted.insert(member, key);
            }
            Some(_) => {}
            None => {
                book.insert(member, digest);
                grew = true;
                trusted.insert(member, key);
            }
        }
    }
    if grew || upgrade {
        secrets.set_book(&book, upgrade.then_some(last_seq));
        let sealed = secrets.seal_under(data_key).map_err(crypto)?;
        keys::replace_member_secrets_if_unchanged(store, group, me, seen, &sealed)?;
    }
    Ok(trusted)
}

impl GroupView {
    /// My role.
    pub fn my_role(&self) -> Role {
        self.roles.role_of(&self.me)
    }

    /// Whether I may invite my connections.
    pub fn i_may_invite(&self) -> bool {
        self.roles.may_invite(&self.me)
    }

    /// The events of my membership numbered `from..=to`, oldest first.
    pub fn events(
        &self,
        store: &Store,
        from: u64,
        to: u64,
    ) -> Result<Vec<events::EventShown>, StoreError> {
        events::read(
            store,
            &self.id,
            from.max(self.first_seq),
            to,
            &self.epoch_keys,
        )
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
        let trust = chat::Trust {
            sender_key: self.verifying.get(&record.sender),
            legacy_upto: self.legacy_upto,
        };
        chat::show_record(
            &self.id,
            &self.me,
            seq,
            record,
            trust,
            self.epoch_keys.get(&record.epoch),
        )
    }

    fn range(
        &self,
        store: &Store,
        from: u64,
        to: u64,
        limit: usize,
        now: UnixTime,
    ) -> Result<(Vec<Shown>, bool), StoreError> {
        if from > to {
            return Ok((Vec::new(), false));
        }
        let txn = store.read()?;
        let table = txn.open_table(MESSAGES)?;
        let rows = table.range((self.id, from)..=(self.id, to))?.rev();
        chat::read_newest(rows, limit, now, |seq, r| self.show(seq, r))
    }

    /// Up to `limit` messages of the current membership before `before` (or the latest),
    /// oldest first; and whether older ones exist.
    pub fn history(
        &self,
        store: &Store,
        before: Option<u64>,
        limit: usize,
        now: UnixTime,
    ) -> Result<(Vec<Shown>, bool), StoreError> {
        let to = before.map_or(u64::MAX, |b| b.saturating_sub(1));
        self.range(store, self.first_seq, to, limit, now)
    }

    /// The latest `limit` messages after `after`, oldest first; and whether some were
    /// left out.
    pub fn since(
        &self,
        store: &Store,
        after: u64,
        limit: usize,
        now: UnixTime,
    ) -> Result<(Vec<Shown>, bool), StoreError> {
        let from = after.saturating_add(1).max(self.first_seq);
        self.range(store, from, u64::MAX, limit, now)
    }

    /// One message by sequence number (`None` if gone, expired, or before this
    /// membership).
    pub fn message(
        &self,
        store: &Store,
        seq: u64,
        now: UnixTime,
    ) -> Result<Option<Shown>, StoreError> {
        if seq < self.first_seq {
            return Ok(None);
        }
        chat::read_one(store, &self.id, seq, now, |seq, r| self.show(seq, r))
    }
}

/// `sender` deletes their message `seq` (whose id is `id`) of `group`, where they are a
/// current member and can read it (it is of their current membership). Returns the
/// current members (to tell their open streams), or `None` when there is no such message
/// of theirs there: nothing changes then.
pub fn delete_own(
    store: &Store,
    group: &Id,
    sender: &Id,
    seq: u64,
    id: &Id,
) -> Result<Option<Vec<Id>>, StoreError> {
    let txn = store.write()?;
    let members = memberships(&txn.open_table(GROUP_MEMBERS)?, group)?;
    let readable = matches!(
        members.get(sender).map(|r| &r.state),
        Some(MemberState::Active { first_seq, .. }) if *first_seq <= seq
    );
    let current = active(&members);
    if readable
        && chat::delete::remove_message_in(&txn, group, seq, &current, |r| {
            chat::delete::sent_by(r, sender, id)
        })?
    {
        txn.commit()?;
        Ok(Some(current))
    } else {
        txn.abort()?;
        Ok(None)
    }
}
