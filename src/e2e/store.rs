//! Storing the end-to-end tier: member keys, conversations and their participants, key
//! epochs, messages, group invitations. Every function blocks (redb) and runs through
//! `Store::run`; every change is one transaction, checked inside it.

use redb::{ReadableTable, WriteTransaction};

use super::{
    ConversationKind, ConversationRecord, ConversationState, E2eInviteRecord, E2eMessageRecord,
    EpochRecord, MemberKeysRecord, ParticipantRecord, PublicKeysRecord, WRAPPED_KEY_BYTES, sig,
};
use crate::clock::UnixTime;
use crate::crypto::{SecretKey, random_bytes};
use crate::store::tables::{
    E2E_CONNECTION_TO_CONVERSATION, E2E_CONVERSATIONS, E2E_DEADLINES, E2E_EPOCH_KEYS, E2E_EPOCHS,
    E2E_GROUP_TO_INVITEES, E2E_INVITES, E2E_MEMBER_KEYS, E2E_MEMBER_TO_CONVERSATIONS, E2E_MESSAGES,
    E2E_PARTICIPANTS, E2E_PUBLIC_KEYS, USERS,
};
use crate::store::{Id, Record, Store, StoreError, UserRecord};

/// Why a request about end-to-end keys or conversations was refused. The text is shown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum E2eError {
    /// Not a participant, not a conversation, not yours: one answer for all.
    #[error("There is nothing here.")]
    NotFound,
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    #[error("Only the group's creator can do that.")]
    NotCreator,
}

fn invalid(s: &str) -> E2eError {
    E2eError::Invalid(s.to_owned())
}
fn conflict(s: &str) -> E2eError {
    E2eError::Conflict(s.to_owned())
}

/// A refusal (inner) or a store failure (outer).
pub type Outcome<T> = Result<Result<T, E2eError>, StoreError>;

macro_rules! refuse {
    ($e:expr) => {
        return Ok(Err($e))
    };
}

fn get<R: Record, K: redb::Key + 'static>(
    table: &impl ReadableTable<K, &'static [u8]>,
    key: impl std::borrow::Borrow<K::SelfType<'static>>,
) -> Result<Option<R>, StoreError> {
    table.get(key)?.map(|b| R::decode(b.value())).transpose()
}

// ---------------------------------------------------------------------------------------
// Member keys

/// A member's current end-to-end keys (without opening the ring).
pub fn keys_of(store: &Store, member: &Id) -> Result<Option<MemberKeysRecord>, StoreError> {
    let txn = store.read()?;
    get(&txn.open_table(E2E_MEMBER_KEYS)?, member)
}

/// A member's public keys of one generation.
pub fn public_keys(
    store: &Store,
    member: &Id,
    generation: u32,
) -> Result<Option<PublicKeysRecord>, StoreError> {
    let txn = store.read()?;
    get(&txn.open_table(E2E_PUBLIC_KEYS)?, (*member, generation))
}

/// The member's wrapped key ring as the browser stored it.
pub fn open_ring(
    record: &MemberKeysRecord,
    data_key: &SecretKey,
) -> Result<zeroize::Zeroizing<String>, StoreError> {
    let bytes = data_key
        .open(&record.ring_sealed)
        .map_err(|e| StoreError::Corrupt(format!("e2e key ring: {e}")))?;
    String::from_utf8(bytes.to_vec())
        .map(zeroize::Zeroizing::new)
        .map_err(|_| StoreError::Corrupt("e2e key ring is not text".into()))
}

/// New keys for `member`: generation 1 turns end-to-end mode on, each later one is a
/// re-key (every conversation of theirs then needs a new epoch). `proof` is the new
/// signing key's signature over [`super::keys_statement`].
pub fn set_keys(
    store: &Store,
    member: &Id,
    data_key: &SecretKey,
    generation: u32,
    public: PublicKeysRecord,
    proof: &[u8],
    ring: &str,
) -> Outcome<Vec<(Id, Vec<Id>)>> {
    if let Err(e) = sig::check_public(&public) {
        refuse!(E2eError::Invalid(e.to_string()));
    }
    let statement = super::keys_statement(member, generation, &public);
    if !sig::verify(public.scheme, &public.sign_public, &statement, proof) {
        refuse!(E2eError::Invalid(sig::KeyError::Proof.to_string()));
    }
    let ring_sealed = data_key
        .seal(ring.as_bytes())
        .map_err(|e| StoreError::Encode(format!("e2e key ring: {e}")))?;
    let txn = store.write()?;
    let touched = {
        let mut keys = txn.open_table(E2E_MEMBER_KEYS)?;
        let current = get::<MemberKeysRecord, Id>(&keys, member)?.map_or(0, |r| r.generation);
        if generation != current.saturating_add(1) {
            refuse!(conflict(
                "Your keys changed in another window. Reload the page."
            ));
        }
        let record = MemberKeysRecord {
            generation,
            public: public.clone(),
            ring_sealed,
        };
        keys.insert(member, record.encode()?.as_slice())?;
        txn.open_table(E2E_PUBLIC_KEYS)?
            .insert((*member, generation), public.encode()?.as_slice())?;
        // A re-key: every conversation of theirs needs a new epoch.
        let mut touched = Vec::new();
        for conv in conversations_of_in(&txn, member)? {
            let mut convs = txn.open_table(E2E_CONVERSATIONS)?;
            if let Some(mut c) = get::<ConversationRecord, Id>(&convs, conv)? {
                c.rekey = true;
                convs.insert(conv, c.encode()?.as_slice())?;
                drop(convs);
                touched.push((conv, active_participants_in(&txn, &conv)?));
            }
        }
        touched
    };
    txn.commit()?;
    Ok(Ok(touched))
}

/// Replace the wrapped key ring (same generation): after a password change the browser
/// wraps the same keys under the new wrapping key.
pub fn rewrap(
    store: &Store,
    member: &Id,
    data_key: &SecretKey,
    generation: u32,
    ring: &str,
) -> Outcome<()> {
    let txn = store.write()?;
    if let Err(e) = rewrap_in(&txn, member, data_key, generation, ring)? {
        refuse!(e);
    }
    txn.commit()?;
    Ok(Ok(()))
}

/// [`rewrap`] in a write transaction (a password change's, so that the credentials and
/// the ring change together or not at all).
pub fn rewrap_in(
    txn: &WriteTransaction,
    member: &Id,
    data_key: &SecretKey,
    generation: u32,
    ring: &str,
) -> Outcome<()> {
    let ring_sealed = data_key
        .seal(ring.as_bytes())
        .map_err(|e| StoreError::Encode(format!("e2e key ring: {e}")))?;
    let mut keys = txn.open_table(E2E_MEMBER_KEYS)?;
    let Some(mut record) = get::<MemberKeysRecord, Id>(&keys, member)? else {
        refuse!(conflict("End-to-end mode is not on."));
    };
    if record.generation != generation {
        refuse!(conflict(
            "Your keys changed in another window. Reload the page."
        ));
    }
    record.ring_sealed = ring_sealed;
    keys.insert(member, record.encode()?.as_slice())?;
    Ok(Ok(()))
}

// ---------------------------------------------------------------------------------------
// Conversations

fn conversations_of_in(txn: &WriteTransaction, member: &Id) -> Result<Vec<Id>, StoreError> {
    let index = txn.open_table(E2E_MEMBER_TO_CONVERSATIONS)?;
    let mut out = Vec::new();
    for row in index.range((*member, [0u8; 16])..=(*member, [0xffu8; 16]))? {
        out.push(row?.0.value().1);
    }
    Ok(out)
}

/// Every conversation `member` takes part in (active), with its record.
pub fn conversations_of(
    store: &Store,
    member: &Id,
) -> Result<Vec<(Id, ConversationRecord)>, StoreError> {
    let txn = store.read()?;
    let index = txn.open_table(E2E_MEMBER_TO_CONVERSATIONS)?;
    let convs = txn.open_table(E2E_CONVERSATIONS)?;
    let parts = txn.open_table(E2E_PARTICIPANTS)?;
    let mut out = Vec::new();
    for row in index.range((*member, [0u8; 16])..=(*member, [0xffu8; 16]))? {
        let conv = row?.0.value().1;
        let active =
            get::<ParticipantRecord, (Id, Id)>(&parts, (conv, *member))?.is_some_and(|p| p.active);
        if let (true, Some(c)) = (active, get::<ConversationRecord, Id>(&convs, conv)?) {
            out.push((conv, c));
        }
    }
    Ok(out)
}

fn participants_in(
    table: &impl ReadableTable<(Id, Id), &'static [u8]>,
    conv: &Id,
) -> Result<Vec<(Id, ParticipantRecord)>, StoreError> {
    let mut out = Vec::new();
    for row in table.range((*conv, [0u8; 16])..=(*conv, [0xffu8; 16]))? {
        let (k, v) = row?;
        out.push((k.value().1, ParticipantRecord::decode(v.value())?));
    }
    Ok(out)
}

fn active_participants_in(txn: &WriteTransaction, conv: &Id) -> Result<Vec<Id>, StoreError> {
    Ok(participants_in(&txn.open_table(E2E_PARTICIPANTS)?, conv)?
        .into_iter()
        .filter(|(_, p)| p.active)
        .map(|(m, _)| m)
        .collect())
}

/// The active participants of a conversation.
pub fn active_participants(store: &Store, conv: &Id) -> Result<Vec<Id>, StoreError> {
    let txn = store.read()?;
    Ok(participants_in(&txn.open_table(E2E_PARTICIPANTS)?, conv)?
        .into_iter()
        .filter(|(_, p)| p.active)
        .map(|(m, _)| m)
        .collect())
}

fn add_participant_in(
    txn: &WriteTransaction,
    conv: &Id,
    member: &Id,
    from_epoch: u32,
    from_seq: u64,
) -> Result<(), StoreError> {
    let record = ParticipantRecord {
        active: true,
        from_epoch,
        from_seq,
        last_client_seq: 0,
    };
    txn.open_table(E2E_PARTICIPANTS)?
        .insert((*conv, *member), record.encode()?.as_slice())?;
    txn.open_table(E2E_MEMBER_TO_CONVERSATIONS)?
        .insert((*member, *conv), ())?;
    Ok(())
}

/// The conversation if `member` is an active participant of it.
fn load_for_in(
    txn: &WriteTransaction,
    conv: &Id,
    member: &Id,
) -> Result<Option<(ConversationRecord, ParticipantRecord)>, StoreError> {
    let Some(part) =
        get::<ParticipantRecord, (Id, Id)>(&txn.open_table(E2E_PARTICIPANTS)?, (*conv, *member))?
            .filter(|p| p.active)
    else {
        return Ok(None);
    };
    Ok(
        get::<ConversationRecord, Id>(&txn.open_table(E2E_CONVERSATIONS)?, conv)?
            .map(|c| (c, part)),
    )
}

fn save_conv_in(
    txn: &WriteTransaction,
    conv: &Id,
    record: &ConversationRecord,
) -> Result<(), StoreError> {
    txn.open_table(E2E_CONVERSATIONS)?
        .insert(conv, record.encode()?.as_slice())?;
    Ok(())
}

/// Whether `member` has end-to-end keys, in a transaction.
pub fn has_keys_in(txn: &WriteTransaction, member: &Id) -> Result<bool, StoreError> {
    Ok(txn.open_table(E2E_MEMBER_KEYS)?.get(member)?.is_some())
}

/// The end-to-end conversation of a connection, if one was proposed.
pub fn conversation_of_connection(
    store: &Store,
    connection: &Id,
) -> Result<Option<Id>, StoreError> {
    let txn = store.read()?;
    Ok(txn
        .open_table(E2E_CONNECTION_TO_CONVERSATION)?
        .get(connection)?
        .map(|g| g.value()))
}

/// Whether the connection's conversation has moved to end-to-end (proposal accepted):
/// server-sealed messages are then refused.
pub fn connection_is_end_to_end(store: &Store, connection: &Id) -> Result<Option<Id>, StoreError> {
    let txn = store.read()?;
    let Some(conv) = txn
        .open_table(E2E_CONNECTION_TO_CONVERSATION)?
        .get(connection)?
        .map(|g| g.value())
    else {
        return Ok(None);
    };
    let record = get::<ConversationRecord, Id>(&txn.open_table(E2E_CONVERSATIONS)?, conv)?;
    Ok(record
        .filter(|r| r.state == ConversationState::Active)
        .map(|_| conv))
}

/// Propose moving the conversation of `connection` to end-to-end. Both sides need keys.
/// Returns the conversation and the other side.
pub fn propose(store: &Store, me: &Id, connection: &Id, now: UnixTime) -> Outcome<(Id, Id)> {
    let txn = store.write()?;
    let out = {
        let Some(record) = crate::connections::side_in(&txn, connection, me)? else {
            refuse!(E2eError::NotFound);
        };
        let Some(other) = record.other(me).filter(|_| record.is_accepted()) else {
            refuse!(E2eError::NotFound);
        };
        if txn
            .open_table(E2E_CONNECTION_TO_CONVERSATION)?
            .get(connection)?
            .is_some()
        {
            refuse!(conflict(
                "End-to-end encryption was already proposed for this conversation."
            ));
        }
        if !has_keys_in(&txn, me)? {
            refuse!(invalid("Turn on end-to-end mode in settings first."));
        }
        if !has_keys_in(&txn, &other)? {
            refuse!(invalid(
                "The other member has not turned on end-to-end mode yet."
            ));
        }
        let conv: Id = random_bytes();
        let record = ConversationRecord {
            kind: ConversationKind::Direct {
                connection: *connection,
            },
            state: ConversationState::Proposed { by: *me },
            epoch: 0,
            rekey: true,
            last_seq: 0,
            created_day: now.div_euclid(86_400),
        };
        save_conv_in(&txn, &conv, &record)?;
        add_participant_in(&txn, &conv, me, 1, 0)?;
        add_participant_in(&txn, &conv, &other, 1, 0)?;
        txn.open_table(E2E_CONNECTION_TO_CONVERSATION)?
            .insert(connection, conv)?;
        (conv, other)
    };
    txn.commit()?;
    Ok(Ok(out))
}

/// Accept a proposal made by the other side: the conversation becomes end-to-end and
/// waits for its first epoch. Returns the participants.
pub fn accept(store: &Store, me: &Id, conv: &Id) -> Outcome<Vec<Id>> {
    let txn = store.write()?;
    let out = {
        let Some((mut record, _)) = load_for_in(&txn, conv, me)? else {
            refuse!(E2eError::NotFound);
        };
        match record.state {
            ConversationState::Proposed { by } if &by != me => {}
            ConversationState::Proposed { .. } => {
                refuse!(conflict("The other member has to accept your proposal."))
            }
            ConversationState::Active => {
                refuse!(conflict("This conversation is already end-to-end."))
            }
        }
        record.state = ConversationState::Active;
        save_conv_in(&txn, conv, &record)?;
        active_participants_in(&txn, conv)?
    };
    txn.commit()?;
    Ok(Ok(out))
}

/// A new epoch from a participant's browser: for exactly the active participants, each at
/// their current key generation, signed by the maker. Returns the participants.
pub fn post_epoch(
    store: &Store,
    me: &Id,
    conv: &Id,
    epoch: u32,
    record: &EpochRecord,
    wrapped: &[(Id, Vec<u8>)],
) -> Outcome<Vec<Id>> {
    let txn = store.write()?;
    let participants = {
        let Some((mut c, _)) = load_for_in(&txn, conv, me)? else {
            refuse!(E2eError::NotFound);
        };
        if c.state != ConversationState::Active {
            refuse!(conflict("The other member has not accepted yet."));
        }
        if epoch != c.epoch.saturating_add(1) {
            refuse!(conflict(
                "Another member made the new key first. Reload the conversation."
            ));
        }
        if &record.maker != me {
            refuse!(invalid("The epoch must be made by you."));
        }
        let keys = txn.open_table(E2E_MEMBER_KEYS)?;
        let Some(mine) = get::<MemberKeysRecord, Id>(&keys, me)? else {
            refuse!(invalid("Turn on end-to-end mode in settings first."));
        };
        if record.maker_generation != mine.generation {
            refuse!(conflict(
                "Your keys changed in another window. Reload the page."
            ));
        }
        let active = active_participants_in(&txn, conv)?;
        if record.recipients.len() != active.len()
            || wrapped.len() != active.len()
            || !record
                .recipients
                .windows(2)
                .all(|w| matches!(w, [a, b] if a.member < b.member))
        {
            refuse!(conflict(
                "The participants changed. Reload the conversation."
            ));
        }
        for (r, (member, key)) in record.recipients.iter().zip(wrapped) {
            let current = get::<MemberKeysRecord, Id>(&keys, r.member)?.map(|k| k.generation);
            if !active.contains(&r.member) || current != Some(r.generation) {
                refuse!(conflict(
                    "The participants or their keys changed. Reload the conversation."
                ));
            }
            if member != &r.member
                || key.len() != WRAPPED_KEY_BYTES
                || crate::crypto::sha256(key) != r.wrapped_hash
            {
                refuse!(invalid("A wrapped key does not match the epoch."));
            }
        }
        let name_ok = if c.is_group() {
            (28..=super::MAX_NAME_CT).contains(&record.name.len())
        } else {
            record.name.is_empty()
        };
        if !name_ok {
            refuse!(invalid("The group's name is missing or too long."));
        }
        if !sig::verify(
            mine.public.scheme,
            &mine.public.sign_public,
            &record.signed_bytes(conv, epoch),
            &record.signature,
        ) {
            refuse!(invalid("The epoch's signature did not verify."));
        }
        drop(keys);
        txn.open_table(E2E_EPOCHS)?
            .insert((*conv, epoch), record.encode()?.as_slice())?;
        let mut table = txn.open_table(E2E_EPOCH_KEYS)?;
        for (member, key) in wrapped {
            table.insert((*conv, epoch, *member), key.as_slice())?;
        }
        drop(table);
        c.epoch = epoch;
        c.rekey = false;
        save_conv_in(&txn, conv, &c)?;
        active
    };
    txn.commit()?;
    Ok(Ok(participants))
}

/// A stored message, with where it went.
#[derive(Debug, Clone)]
pub struct Stored {
    pub seq: u64,
    pub participants: Vec<Id>,
}

/// Store a message from `me`'s browser, after checking the header against the
/// conversation and the signature against the sender's key. `now` is the server's time.
pub fn send(
    store: &Store,
    me: &Id,
    conv: &Id,
    message: &E2eMessageRecord,
    now: UnixTime,
) -> Outcome<Stored> {
    let h = &message.header;
    if &h.sender != me {
        refuse!(invalid("The sender must be you."));
    }
    if h.sent_at.abs_diff(now) > super::MAX_CLOCK_SKEW_SECS.unsigned_abs() {
        refuse!(invalid(
            "Your computer's clock is too far from the server's. Check it and reload."
        ));
    }
    if let Some(deadline) = h.expires_at {
        let timer = deadline.saturating_sub(h.sent_at);
        if !crate::chat::TIMERS.iter().any(|(t, _)| *t == timer) {
            refuse!(invalid(
                "Unknown self-destruct timer: choose one of the form's options."
            ));
        }
    }
    if message.ciphertext.len() < 16 || message.ciphertext.len() > super::MAX_MESSAGE_CT {
        refuse!(invalid("The message is empty or too long."));
    }
    let txn = store.write()?;
    let stored = {
        let Some((mut c, mut part)) = load_for_in(&txn, conv, me)? else {
            refuse!(E2eError::NotFound);
        };
        if c.state != ConversationState::Active || c.epoch == 0 || c.rekey {
            refuse!(conflict(
                "The conversation is waiting for a new key from a member's browser."
            ));
        }
        if h.epoch != c.epoch {
            refuse!(conflict("The conversation has a new key. Reload it."));
        }
        if h.client_seq <= part.last_client_seq {
            refuse!(invalid("The message's sequence number was already used."));
        }
        let keys = txn.open_table(E2E_MEMBER_KEYS)?;
        let Some(mine) = get::<MemberKeysRecord, Id>(&keys, me)? else {
            refuse!(E2eError::NotFound);
        };
        drop(keys);
        if h.sender_generation != mine.generation {
            refuse!(conflict(
                "Your keys changed in another window. Reload the page."
            ));
        }
        if !sig::verify(
            mine.public.scheme,
            &mine.public.sign_public,
            &message.signed_bytes(conv),
            &message.signature,
        ) {
            refuse!(invalid(
                "The message's signature did not verify for this conversation."
            ));
        }
        let seq = c.last_seq.saturating_add(1);
        c.last_seq = seq;
        save_conv_in(&txn, conv, &c)?;
        part.last_client_seq = h.client_seq;
        txn.open_table(E2E_PARTICIPANTS)?
            .insert((*conv, *me), part.encode()?.as_slice())?;
        txn.open_table(E2E_MESSAGES)?
            .insert((*conv, seq), message.encode()?.as_slice())?;
        if let Some(deadline) = h.expires_at {
            txn.open_table(E2E_DEADLINES)?
                .insert((deadline, *conv, seq), ())?;
        }
        Stored {
            seq,
            participants: active_participants_in(&txn, conv)?,
        }
    };
    txn.commit()?;
    Ok(Ok(stored))
}

// ---------------------------------------------------------------------------------------
// Reading

/// A participant as a reader sees them.
#[derive(Clone)]
pub struct ParticipantView {
    pub id: Id,
    pub name: String,
    pub active: bool,
    pub generation: Option<u32>,
}

crate::connections::debug_without_names!(ParticipantView);

/// An epoch the reader holds a key of.
#[derive(Debug, Clone)]
pub struct EpochView {
    pub epoch: u32,
    pub record: EpochRecord,
    pub wrapped: Vec<u8>,
}

/// What a participant's browser needs to show a conversation.
pub struct ConversationView {
    pub record: ConversationRecord,
    pub me: ParticipantRecord,
    pub participants: Vec<ParticipantView>,
    pub invited: Vec<(Id, String)>,
    pub epochs: Vec<EpochView>,
    /// Public keys of every (member, generation) that made an epoch or sent a message
    /// shown here, and of every active participant's current generation.
    pub keys: Vec<(Id, u32, PublicKeysRecord)>,
    pub messages: Vec<(u64, E2eMessageRecord)>,
    pub older: bool,
}

impl std::fmt::Debug for ConversationView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConversationView(..)")
    }
}

fn name_of(users: &impl ReadableTable<Id, &'static [u8]>, id: &Id) -> Result<String, StoreError> {
    Ok(get::<UserRecord, Id>(users, id)?.map_or_else(String::new, |u| u.username))
}

/// Conversation `conv` as participant `me` may read it: messages since they joined, at
/// most [`super::HISTORY_PAGE`] before `before` (or the latest). `after`: only messages
/// after that sequence number (a live update).
pub fn view(
    store: &Store,
    me: &Id,
    conv: &Id,
    before: Option<u64>,
    after: Option<u64>,
    now: UnixTime,
) -> Result<Option<ConversationView>, StoreError> {
    let txn = store.read()?;
    let parts_table = txn.open_table(E2E_PARTICIPANTS)?;
    let Some(mine) =
        get::<ParticipantRecord, (Id, Id)>(&parts_table, (*conv, *me))?.filter(|p| p.active)
    else {
        return Ok(None);
    };
    let Some(record) = get::<ConversationRecord, Id>(&txn.open_table(E2E_CONVERSATIONS)?, conv)?
    else {
        return Ok(None);
    };
    let users = txn.open_table(USERS)?;
    let member_keys = txn.open_table(E2E_MEMBER_KEYS)?;
    let public = txn.open_table(E2E_PUBLIC_KEYS)?;
    let mut wanted: Vec<(Id, u32)> = Vec::new();
    let mut participants = Vec::new();
    for (id, p) in participants_in(&parts_table, conv)? {
        let generation = get::<MemberKeysRecord, Id>(&member_keys, id)?.map(|k| k.generation);
        if let (true, Some(g)) = (p.active, generation) {
            wanted.push((id, g));
        }
        participants.push(ParticipantView {
            id,
            name: name_of(&users, &id)?,
            active: p.active,
            generation,
        });
    }
    let mut invited = Vec::new();
    for row in txn
        .open_table(E2E_GROUP_TO_INVITEES)?
        .range((*conv, [0u8; 16])..=(*conv, [0xffu8; 16]))?
    {
        let id = row?.0.value().1;
        invited.push((id, name_of(&users, &id)?));
    }
    let mut epochs = Vec::new();
    let epoch_keys = txn.open_table(E2E_EPOCH_KEYS)?;
    for row in txn
        .open_table(E2E_EPOCHS)?
        .range((*conv, mine.from_epoch)..=(*conv, u32::MAX))?
    {
        let (k, v) = row?;
        let epoch = k.value().1;
        let Some(wrapped) = epoch_keys.get((*conv, epoch, *me))? else {
            continue;
        };
        let record = EpochRecord::decode(v.value())?;
        wanted.push((record.maker, record.maker_generation));
        epochs.push(EpochView {
            epoch,
            record,
            wrapped: wrapped.value().to_vec(),
        });
    }
    let messages_table = txn.open_table(E2E_MESSAGES)?;
    let low = mine
        .from_seq
        .saturating_add(1)
        .max(after.map_or(0, |a| a.saturating_add(1)));
    let high = before.map_or(u64::MAX, |b| b.saturating_sub(1));
    let mut messages = Vec::new();
    let mut older = false;
    if low <= high {
        for row in messages_table.range((*conv, low)..=(*conv, high))?.rev() {
            let (k, v) = row?;
            if messages.len() >= super::HISTORY_PAGE {
                older = true;
                break;
            }
            let m = E2eMessageRecord::decode(v.value())?;
            // Past its deadline: never served, even before the sweeper removes it.
            if m.header.expires_at.is_some_and(|d| d <= now) {
                continue;
            }
            wanted.push((m.header.sender, m.header.sender_generation));
            messages.push((k.value().1, m));
        }
    }
    messages.reverse();
    wanted.sort_unstable();
    wanted.dedup();
    let mut keys = Vec::with_capacity(wanted.len());
    for (id, g) in wanted {
        if let Some(k) = get::<PublicKeysRecord, (Id, u32)>(&public, (id, g))? {
            keys.push((id, g, k));
        }
    }
    Ok(Some(ConversationView {
        record,
        me: mine,
        participants,
        invited,
        epochs,
        keys,
        messages,
        older,
    }))
}

/// One line of a member's list of end-to-end conversations.
pub struct ListEntry {
    pub id: Id,
    pub record: ConversationRecord,
    /// The other side's name (one-to-one), or the current epoch for the browser to decrypt
    /// the group's name.
    pub peer: Option<String>,
    pub name_epoch: Option<EpochView>,
}

crate::connections::debug_without_names!(ListEntry);

/// An invitation as its invitee sees it.
pub struct InvitationEntry {
    pub group: Id,
    pub inviter: String,
}

crate::connections::debug_without_names!(InvitationEntry);

/// A member's end-to-end conversations and invitations.
pub fn list(store: &Store, me: &Id) -> Result<(Vec<ListEntry>, Vec<InvitationEntry>), StoreError> {
    let convs = conversations_of(store, me)?;
    let txn = store.read()?;
    let users = txn.open_table(USERS)?;
    let parts = txn.open_table(E2E_PARTICIPANTS)?;
    let epochs = txn.open_table(E2E_EPOCHS)?;
    let epoch_keys = txn.open_table(E2E_EPOCH_KEYS)?;
    let mut out = Vec::with_capacity(convs.len());
    for (id, record) in convs {
        let (peer, name_epoch) = match record.kind {
            ConversationKind::Direct { .. } => {
                let other = participants_in(&parts, &id)?
                    .into_iter()
                    .find(|(m, _)| m != me)
                    .map(|(m, _)| m);
                let name = match other {
                    Some(o) => name_of(&users, &o)?,
                    None => String::new(),
                };
                (Some(name), None)
            }
            ConversationKind::Group { .. } => {
                let epoch = record.epoch;
                let view = match (
                    get::<EpochRecord, (Id, u32)>(&epochs, (id, epoch))?,
                    epoch_keys.get((id, epoch, *me))?,
                ) {
                    (Some(r), Some(w)) => Some(EpochView {
                        epoch,
                        record: r,
                        wrapped: w.value().to_vec(),
                    }),
                    _ => None,
                };
                (None, view)
            }
        };
        out.push(ListEntry {
            id,
            record,
            peer,
            name_epoch,
        });
    }
    let mut invitations = Vec::new();
    for row in txn
        .open_table(E2E_INVITES)?
        .range((*me, [0u8; 16])..=(*me, [0xffu8; 16]))?
    {
        let (k, v) = row?;
        let invite = E2eInviteRecord::decode(v.value())?;
        invitations.push(InvitationEntry {
            group: k.value().1,
            inviter: name_of(&users, &invite.inviter)?,
        });
    }
    Ok((out, invitations))
}

// ---------------------------------------------------------------------------------------
// Groups

/// Create a group with `me` as its creator and only member; its first epoch comes from
/// the creator's browser next.
pub fn create_group(store: &Store, me: &Id, now: UnixTime) -> Outcome<Id> {
    let txn = store.write()?;
    let id: Id = random_bytes();
    {
        if !has_keys_in(&txn, me)? {
            refuse!(invalid("Turn on end-to-end mode in settings first."));
        }
        let record = ConversationRecord {
            kind: ConversationKind::Group { creator: *me },
            state: ConversationState::Active,
            epoch: 0,
            rekey: true,
            last_seq: 0,
            created_day: now.div_euclid(86_400),
        };
        save_conv_in(&txn, &id, &record)?;
        add_participant_in(&txn, &id, me, 1, 0)?;
    }
    txn.commit()?;
    Ok(Ok(id))
}

fn group_for_creator_in(
    txn: &WriteTransaction,
    group: &Id,
    me: &Id,
) -> Result<Result<ConversationRecord, E2eError>, StoreError> {
    let Some((c, _)) = load_for_in(txn, group, me)? else {
        return Ok(Err(E2eError::NotFound));
    };
    match c.kind {
        ConversationKind::Group { creator } if &creator == me => Ok(Ok(c)),
        ConversationKind::Group { .. } => Ok(Err(E2eError::NotCreator)),
        ConversationKind::Direct { .. } => Ok(Err(E2eError::NotFound)),
    }
}

/// Invite one of the creator's connections by name. Returns the invitee.
pub fn invite(
    store: &Store,
    me: &Id,
    group: &Id,
    username: &str,
    max_members: usize,
    now: UnixTime,
) -> Outcome<Id> {
    let nobody = || invalid("None of your connections has that name.");
    let Ok(name) = crate::accounts::Username::parse(username) else {
        refuse!(nobody());
    };
    let txn = store.write()?;
    let invitee = {
        if let Err(e) = group_for_creator_in(&txn, group, me)? {
            refuse!(e);
        }
        let Some(invitee) = txn
            .open_table(crate::store::tables::USERNAME_TO_USER)?
            .get(name.as_str())?
            .map(|g| g.value())
        else {
            refuse!(nobody());
        };
        if crate::connections::hidden_in(&txn, me, &invitee)? || !connected_in(&txn, me, &invitee)?
        {
            refuse!(nobody());
        }
        if get::<ParticipantRecord, (Id, Id)>(
            &txn.open_table(E2E_PARTICIPANTS)?,
            (*group, invitee),
        )?
        .is_some_and(|p| p.active)
        {
            refuse!(conflict("They are already a member."));
        }
        if !has_keys_in(&txn, &invitee)? {
            refuse!(invalid(
                "They have not turned on end-to-end mode: only members with end-to-end keys \
                 can be in an end-to-end group. Ask them to turn it on in their settings \
                 (it needs JavaScript)."
            ));
        }
        let members = active_participants_in(&txn, group)?.len();
        let invited = txn
            .open_table(E2E_GROUP_TO_INVITEES)?
            .range((*group, [0u8; 16])..=(*group, [0xffu8; 16]))?
            .count();
        if members.saturating_add(invited) >= max_members {
            refuse!(conflict("The group is full."));
        }
        let record = E2eInviteRecord {
            inviter: *me,
            day: now.div_euclid(86_400),
        };
        txn.open_table(E2E_INVITES)?
            .insert((invitee, *group), record.encode()?.as_slice())?;
        txn.open_table(E2E_GROUP_TO_INVITEES)?
            .insert((*group, invitee), ())?;
        invitee
    };
    txn.commit()?;
    Ok(Ok(invitee))
}

fn connected_in(txn: &WriteTransaction, a: &Id, b: &Id) -> Result<bool, StoreError> {
    let paired = txn
        .open_table(crate::store::tables::MEMBER_TO_PAIRED)?
        .get((*a, *b))?
        .is_some();
    if !paired {
        return Ok(false);
    }
    // An accepted connection between them.
    let (key, _) = if a <= b { ((*a, *b), 0) } else { ((*b, *a), 1) };
    let pairs = txn.open_table(crate::store::tables::PAIRS)?;
    let Some(pair) = pairs
        .get(key)?
        .map(|p| crate::connections::PairRecord::decode(p.value()))
        .transpose()?
    else {
        return Ok(false);
    };
    drop(pairs);
    let Some(conn) = pair.connection else {
        return Ok(false);
    };
    Ok(crate::connections::side_in(txn, &conn, a)?.is_some_and(|c| c.is_accepted()))
}

fn take_invite_in(txn: &WriteTransaction, group: &Id, member: &Id) -> Result<bool, StoreError> {
    let had = txn
        .open_table(E2E_INVITES)?
        .remove((*member, *group))?
        .is_some();
    txn.open_table(E2E_GROUP_TO_INVITEES)?
        .remove((*group, *member))?;
    Ok(had)
}

/// Join a group one is invited to: a member from the next epoch on, which another
/// member's browser makes. Returns the members to tell.
pub fn join(store: &Store, me: &Id, group: &Id) -> Outcome<Vec<Id>> {
    let txn = store.write()?;
    let members = {
        if !take_invite_in(&txn, group, me)? {
            refuse!(E2eError::NotFound);
        }
        let Some(mut c) =
            get::<ConversationRecord, Id>(&txn.open_table(E2E_CONVERSATIONS)?, group)?
        else {
            refuse!(E2eError::NotFound);
        };
        if !has_keys_in(&txn, me)? {
            refuse!(invalid("Turn on end-to-end mode in settings first."));
        }
        add_participant_in(&txn, group, me, c.epoch.saturating_add(1), c.last_seq)?;
        c.rekey = true;
        save_conv_in(&txn, group, &c)?;
        active_participants_in(&txn, group)?
    };
    txn.commit()?;
    Ok(Ok(members))
}

/// Decline an invitation.
pub fn decline(store: &Store, me: &Id, group: &Id) -> Outcome<()> {
    let txn = store.write()?;
    if !take_invite_in(&txn, group, me)? {
        refuse!(E2eError::NotFound);
    }
    txn.commit()?;
    Ok(Ok(()))
}

/// End `member`'s participation (leave or removal); the group needs a new epoch, or goes
/// when nobody is left. Returns the remaining members.
fn depart_in(txn: &WriteTransaction, group: &Id, member: &Id) -> Result<Vec<Id>, StoreError> {
    {
        let mut parts = txn.open_table(E2E_PARTICIPANTS)?;
        if let Some(mut p) = get::<ParticipantRecord, (Id, Id)>(&parts, (*group, *member))? {
            p.active = false;
            parts.insert((*group, *member), p.encode()?.as_slice())?;
        }
    }
    let remaining = active_participants_in(txn, group)?;
    if remaining.is_empty() {
        delete_conversation_in(txn, group)?;
        return Ok(remaining);
    }
    let mut convs = txn.open_table(E2E_CONVERSATIONS)?;
    if let Some(mut c) = get::<ConversationRecord, Id>(&convs, group)? {
        c.rekey = true;
        if let ConversationKind::Group { creator } = c.kind
            && &creator == member
            && let Some(next) = remaining.first()
        {
            c.kind = ConversationKind::Group { creator: *next };
        }
        convs.insert(group, c.encode()?.as_slice())?;
    }
    Ok(remaining)
}

/// Leave a group. Returns the remaining members.
pub fn leave(store: &Store, me: &Id, group: &Id) -> Outcome<Vec<Id>> {
    let txn = store.write()?;
    let remaining = {
        let Some((c, _)) = load_for_in(&txn, group, me)? else {
            refuse!(E2eError::NotFound);
        };
        if !c.is_group() {
            refuse!(E2eError::NotFound);
        }
        depart_in(&txn, group, me)?
    };
    txn.commit()?;
    Ok(Ok(remaining))
}

/// The creator removes a member (or withdraws an invitation). Returns the remaining
/// members.
pub fn remove(store: &Store, me: &Id, group: &Id, member: &Id) -> Outcome<Vec<Id>> {
    let txn = store.write()?;
    let remaining = {
        if let Err(e) = group_for_creator_in(&txn, group, me)? {
            refuse!(e);
        }
        if member == me {
            refuse!(invalid("Use Leave to leave the group."));
        }
        if take_invite_in(&txn, group, member)? {
            active_participants_in(&txn, group)?
        } else if get::<ParticipantRecord, (Id, Id)>(
            &txn.open_table(E2E_PARTICIPANTS)?,
            (*group, *member),
        )?
        .is_some_and(|p| p.active)
        {
            depart_in(&txn, group, member)?
        } else {
            refuse!(invalid("They are not a member."));
        }
    };
    txn.commit()?;
    Ok(Ok(remaining))
}

// ---------------------------------------------------------------------------------------
// Deletion and expiry

/// Delete a conversation and everything in it, inside the caller's transaction.
pub fn delete_conversation_in(txn: &WriteTransaction, conv: &Id) -> Result<(), StoreError> {
    let Some(record) = txn
        .open_table(E2E_CONVERSATIONS)?
        .remove(conv)?
        .map(|r| ConversationRecord::decode(r.value()))
    else {
        return Ok(());
    };
    let record = record?;
    if let ConversationKind::Direct { connection } = record.kind {
        txn.open_table(E2E_CONNECTION_TO_CONVERSATION)?
            .remove(connection)?;
    }
    let members: Vec<Id> = participants_in(&txn.open_table(E2E_PARTICIPANTS)?, conv)?
        .into_iter()
        .map(|(m, _)| m)
        .collect();
    {
        let mut index = txn.open_table(E2E_MEMBER_TO_CONVERSATIONS)?;
        for m in &members {
            index.remove((*m, *conv))?;
        }
    }
    txn.open_table(E2E_PARTICIPANTS)?
        .retain_in((*conv, [0u8; 16])..=(*conv, [0xffu8; 16]), |_, _| false)?;
    txn.open_table(E2E_EPOCHS)?
        .retain_in((*conv, 0)..=(*conv, u32::MAX), |_, _| false)?;
    txn.open_table(E2E_EPOCH_KEYS)?.retain_in(
        (*conv, 0, [0u8; 16])..=(*conv, u32::MAX, [0xffu8; 16]),
        |_, _| false,
    )?;
    let mut deadlines = Vec::new();
    {
        let mut messages = txn.open_table(E2E_MESSAGES)?;
        for row in messages.range((*conv, 0)..=(*conv, u64::MAX))? {
            let (k, v) = row?;
            if let Some(d) = E2eMessageRecord::decode(v.value())?.header.expires_at {
                deadlines.push((d, k.value().1));
            }
        }
        messages.retain_in((*conv, 0)..=(*conv, u64::MAX), |_, _| false)?;
    }
    let mut table = txn.open_table(E2E_DEADLINES)?;
    for (d, seq) in deadlines {
        table.remove((d, *conv, seq))?;
    }
    let invitees: Vec<Id> = txn
        .open_table(E2E_GROUP_TO_INVITEES)?
        .range((*conv, [0u8; 16])..=(*conv, [0xffu8; 16]))?
        .map(|r| r.map(|(k, _)| k.value().1))
        .collect::<Result<_, _>>()?;
    for i in invitees {
        take_invite_in(txn, conv, &i)?;
    }
    Ok(())
}

/// A connection was removed or blocked: its end-to-end conversation goes with it.
/// Returns the conversation and its participants, to tell their open pages.
pub fn delete_for_connection_in(
    txn: &WriteTransaction,
    connection: &Id,
) -> Result<Option<Id>, StoreError> {
    let conv = txn
        .open_table(E2E_CONNECTION_TO_CONVERSATION)?
        .get(connection)?
        .map(|g| g.value());
    if let Some(conv) = conv {
        delete_conversation_in(txn, &conv)?;
    }
    Ok(conv)
}

/// Account deletion (registered in the member deletion cascade), inside the caller's
/// transaction: the member's keys, their one-to-one conversations, their messages, wrapped
/// keys and memberships in groups (which need a new epoch). Invitations to groups waiting
/// for them go with `Removal::Full` and stay with `Removal::Decoy`, as they would for a
/// member who does not answer.
pub fn erase_member_in(
    txn: &WriteTransaction,
    member: &Id,
    removal: crate::store::cascade::Removal,
) -> Result<(), StoreError> {
    txn.open_table(E2E_MEMBER_KEYS)?.remove(member)?;
    txn.open_table(E2E_PUBLIC_KEYS)?
        .retain_in((*member, 0)..=(*member, u32::MAX), |_, _| false)?;
    for conv in conversations_of_in(txn, member)? {
        let record = get::<ConversationRecord, Id>(&txn.open_table(E2E_CONVERSATIONS)?, conv)?;
        match record.map(|r| r.kind) {
            Some(ConversationKind::Direct { .. }) | None => delete_conversation_in(txn, &conv)?,
            Some(ConversationKind::Group { .. }) => {
                // Their messages and their copies of the keys go; the rest need a new epoch.
                let mut gone = Vec::new();
                {
                    let mut messages = txn.open_table(E2E_MESSAGES)?;
                    for row in messages.range((conv, 0)..=(conv, u64::MAX))? {
                        let (k, v) = row?;
                        let m = E2eMessageRecord::decode(v.value())?;
                        if &m.header.sender == member {
                            gone.push((k.value().1, m.header.expires_at));
                        }
                    }
                    for (seq, _) in &gone {
                        messages.remove((conv, *seq))?;
                    }
                }
                let mut deadlines = txn.open_table(E2E_DEADLINES)?;
                for (seq, d) in gone {
                    if let Some(d) = d {
                        deadlines.remove((d, conv, seq))?;
                    }
                }
                drop(deadlines);
                txn.open_table(E2E_EPOCH_KEYS)?.retain_in(
                    (conv, 0, [0u8; 16])..=(conv, u32::MAX, [0xffu8; 16]),
                    |k, _| &k.2 != member,
                )?;
                depart_in(txn, &conv, member)?;
                txn.open_table(E2E_PARTICIPANTS)?.remove((conv, *member))?;
                txn.open_table(E2E_MEMBER_TO_CONVERSATIONS)?
                    .remove((*member, conv))?;
            }
        }
    }
    if removal == crate::store::cascade::Removal::Decoy {
        return Ok(());
    }
    let groups: Vec<Id> = txn
        .open_table(E2E_INVITES)?
        .range((*member, [0u8; 16])..=(*member, [0xffu8; 16]))?
        .map(|r| r.map(|(k, _)| k.value().1))
        .collect::<Result<_, _>>()?;
    for g in groups {
        take_invite_in(txn, &g, member)?;
    }
    Ok(())
}

/// Delete every end-to-end message whose deadline is at or before `now` (at most
/// `crate::chat::EXPIRY_BATCH`), in one durable transaction.
pub fn expire_due(store: &Store, now: UnixTime) -> Result<Vec<crate::chat::Expired>, StoreError> {
    let txn = store.write()?;
    let due: Vec<(i64, Id, u64)> = txn
        .open_table(E2E_DEADLINES)?
        .range(..=(now, [0xffu8; 16], u64::MAX))?
        .take(crate::chat::EXPIRY_BATCH)
        .map(|r| r.map(|(k, _)| k.value()))
        .collect::<Result<_, _>>()?;
    if due.is_empty() {
        txn.abort()?;
        return Ok(Vec::new());
    }
    let mut out = Vec::with_capacity(due.len());
    for (deadline, conv, seq) in due {
        txn.open_table(E2E_DEADLINES)?
            .remove((deadline, conv, seq))?;
        if txn.open_table(E2E_MESSAGES)?.remove((conv, seq))?.is_some() {
            out.push(crate::chat::Expired {
                conversation: conv,
                seq,
                members: active_participants_in(&txn, &conv)?,
            });
        }
    }
    txn.commit()?;
    Ok(out)
}

/// `me` deletes their own message `seq` of `conv`, for everyone: the same deletion as its
/// self-destruct deadline (its row and its deadline row, in one durable transaction).
/// Returns the active participants, whose open pages are told as for an expiry. Not an
/// active participant, no such message (or one already past its deadline), or someone
/// else's: [`E2eError::NotFound`], and nothing changes.
pub fn delete_own(store: &Store, me: &Id, conv: &Id, seq: u64, now: UnixTime) -> Outcome<Vec<Id>> {
    let txn = store.write()?;
    let members = {
        let Some((_, part)) = load_for_in(&txn, conv, me)? else {
            refuse!(E2eError::NotFound);
        };
        let mut messages = txn.open_table(E2E_MESSAGES)?;
        let Some(m) = get::<E2eMessageRecord, (Id, u64)>(&messages, (*conv, seq))?.filter(|m| {
            seq > part.from_seq
                && &m.header.sender == me
                && m.header.expires_at.is_none_or(|d| d > now)
        }) else {
            refuse!(E2eError::NotFound);
        };
        messages.remove((*conv, seq))?;
        drop(messages);
        if let Some(deadline) = m.header.expires_at {
            txn.open_table(E2E_DEADLINES)?
                .remove((deadline, *conv, seq))?;
        }
        active_participants_in(&txn, conv)?
    };
    txn.commit()?;
    Ok(Ok(members))
}

/// Message `seq` of `conv` if `member` may read it (an active participant who joined
/// before it) and it has not passed its deadline.
pub fn message_for(
    store: &Store,
    member: &Id,
    conv: &Id,
    seq: u64,
    now: UnixTime,
) -> Result<Option<E2eMessageRecord>, StoreError> {
    let txn = store.read()?;
    let Some(part) =
        get::<ParticipantRecord, (Id, Id)>(&txn.open_table(E2E_PARTICIPANTS)?, (*conv, *member))?
            .filter(|p| p.active && p.from_seq < seq)
    else {
        return Ok(None);
    };
    let _ = part;
    Ok(
        get::<E2eMessageRecord, (Id, u64)>(&txn.open_table(E2E_MESSAGES)?, (*conv, seq))?
            .filter(|m| m.header.expires_at.is_none_or(|d| d > now)),
    )
}

/// The earliest end-to-end self-destruct deadline.
pub fn next_deadline(store: &Store) -> Result<Option<UnixTime>, StoreError> {
    let txn = store.read()?;
    Ok(txn
        .open_table(E2E_DEADLINES)?
        .first()?
        .map(|(k, _)| k.value().0))
}
