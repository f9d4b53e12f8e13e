//! Connections between members: search, requests, accept (with fresh per-connection keys),
//! deny, remove, block and unblock.
//!
//! What two members are to each other lives in one `PairRecord` keyed by the pair; the
//! connection itself (pending or accepted) in a `ConnectionRecord` keyed by its id.
//!
//! Visibility rules, the heart of "deny":
//! - A member who denied your request, or who blocked you, does not exist for you: search,
//!   new requests and every page answer exactly as for a name nobody has.
//! - A member whom you blocked does not appear in your searches either (you find them in
//!   your list of blocked members).
//! - A denial is lifted only by the member who made it, by sending a request themselves.
//!
//! Functions here block (redb) and are called through `Store::run`.

pub mod handlers;
pub mod keys;
pub mod views;
mod waiting;

pub use waiting::requests_received_in;

use redb::{ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use crate::accounts::Username;
use crate::clock::UnixTime;
use crate::crypto::rsa_keys::RsaPublic;
use crate::crypto::{SecretKey, random_bytes};
use crate::store::cascade::Removal;
use crate::store::tables::{
    CONNECTION_SECRETS, CONNECTIONS, MEMBER_TO_PAIRED, PAIRS, USERNAME_TO_USER, USERS,
};
use crate::store::{Id, Record, Store, StoreError, UserRecord};
use keys::{SideSecrets, SideSecretsRecord, SigningKey, VerifyingKey};

const SECONDS_PER_DAY: i64 = 86_400;

/// `Debug` that prints the type's name only: these values carry usernames, which stay out
/// of logs, `Debug` output and panic messages.
macro_rules! debug_without_names {
    ($($t:ty),* $(,)?) => {$(
        impl std::fmt::Debug for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($t), "(..)"))
            }
        }
    )*};
}
pub(crate) use debug_without_names;

/// Most results a prefix search shows, and most index rows it reads to find them.
pub const MAX_SEARCH_RESULTS: usize = 20;
const MAX_SEARCH_SCAN: usize = 200;

/// Everything between two members, from the point of view of the pair `(low, high)`
/// (ids in ascending order). Index 0 is `low`, index 1 is `high`.
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct PairRecord {
    /// Their connection (pending or accepted), if any.
    pub connection: Option<Id>,
    /// `denied[i]`: member `i` denied a request from the other.
    pub denied: [bool; 2],
    /// `blocked[i]`: member `i` blocked the other.
    pub blocked: [bool; 2],
}

impl std::fmt::Debug for PairRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PairRecord(..)")
    }
}

impl Record for PairRecord {
    const VERSION: u8 = 1;
    const NAME: &'static str = "pair";
}

impl PairRecord {
    fn is_empty(&self) -> bool {
        self.connection.is_none() && self.denied == [false; 2] && self.blocked == [false; 2]
    }

    /// Whether the member at index `me` must not see the other: the other denied or
    /// blocked them, or they blocked the other.
    fn hides_other_from(&self, me: usize) -> bool {
        let other = 1 - me;
        flag(&self.denied, other) || flag(&self.blocked, other) || flag(&self.blocked, me)
    }
}

fn flag(flags: &[bool; 2], i: usize) -> bool {
    flags.get(i).copied().unwrap_or(false)
}

fn set_flag(flags: &mut [bool; 2], i: usize, value: bool) {
    if let Some(f) = flags.get_mut(i) {
        *f = value;
    }
}

/// The `PAIRS` key of two members, and the index of `a` in it.
fn pair_key(a: &Id, b: &Id) -> ((Id, Id), usize) {
    if a <= b { ((*a, *b), 0) } else { ((*b, *a), 1) }
}

/// A connection: a pending request, or an accepted connection with its public keys.
#[derive(Clone, Serialize, Deserialize)]
pub struct ConnectionRecord {
    pub requester: Id,
    pub receiver: Id,
    /// Day (Unix time / 86400) of the request: pages show the date, the file keeps no more.
    pub requested_day: i64,
    pub state: ConnectionState,
}

impl std::fmt::Debug for ConnectionRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConnectionRecord(..)")
    }
}

impl Record for ConnectionRecord {
    const VERSION: u8 = 1;
    const NAME: &'static str = "connection";
}

/// Where a connection stands.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ConnectionState {
    Pending,
    Accepted {
        requester_key: VerifyingKey,
        receiver_key: VerifyingKey,
        accepted_day: i64,
    },
}

impl ConnectionRecord {
    /// The other side, if `member` is a side.
    pub fn other(&self, member: &Id) -> Option<Id> {
        if &self.requester == member {
            Some(self.receiver)
        } else if &self.receiver == member {
            Some(self.requester)
        } else {
            None
        }
    }

    /// The verifying key of side `member`, once accepted.
    pub fn key_of(&self, member: &Id) -> Option<&VerifyingKey> {
        match &self.state {
            ConnectionState::Pending => None,
            ConnectionState::Accepted {
                requester_key,
                receiver_key,
                ..
            } => {
                if member == &self.requester {
                    Some(requester_key)
                } else if member == &self.receiver {
                    Some(receiver_key)
                } else {
                    None
                }
            }
        }
    }

    pub fn is_accepted(&self) -> bool {
        matches!(self.state, ConnectionState::Accepted { .. })
    }
}

/// How one member stands towards another, as the first one may see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relation {
    /// Nobody by that name, as far as the viewer can tell (including: they denied or
    /// blocked the viewer, or the viewer blocked them).
    Hidden,
    Myself,
    Stranger,
    RequestSent(Id),
    RequestReceived(Id),
    Connected(Id),
}

/// A member found by a search.
#[derive(Clone)]
pub struct Found {
    pub id: Id,
    pub username: String,
    pub relation: Relation,
}

/// Why a connection request was refused. Shown to the member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Also the answer for a member who denied or blocked you: indistinguishable.
    #[error("No member has that name.")]
    NotFound,
    #[error("That is you.")]
    Myself,
    #[error("You are already connected.")]
    AlreadyConnected,
    #[error("You already sent a request; it is waiting for an answer.")]
    AlreadySent,
    #[error("They already sent you a request: accept it below.")]
    TheyAsked,
}

fn day(now: UnixTime) -> i64 {
    now.div_euclid(SECONDS_PER_DAY)
}

fn load_pair(
    table: &impl ReadableTable<(Id, Id), &'static [u8]>,
    key: (Id, Id),
) -> Result<PairRecord, StoreError> {
    table
        .get(key)?
        .map(|b| PairRecord::decode(b.value()))
        .transpose()
        .map(Option::unwrap_or_default)
}

fn load_connection(
    table: &impl ReadableTable<Id, &'static [u8]>,
    id: &Id,
) -> Result<Option<ConnectionRecord>, StoreError> {
    table
        .get(id)?
        .map(|b| ConnectionRecord::decode(b.value()))
        .transpose()
}

fn load_user(
    table: &impl ReadableTable<Id, &'static [u8]>,
    id: &Id,
) -> Result<Option<UserRecord>, StoreError> {
    table
        .get(id)?
        .map(|b| UserRecord::decode(b.value()))
        .transpose()
}

/// The relation of `viewer` to `other` given their pair record and connection.
fn relation(
    viewer: &Id,
    other: &Id,
    pair: &PairRecord,
    me: usize,
    connection: Option<&ConnectionRecord>,
) -> Relation {
    if viewer == other {
        return Relation::Myself;
    }
    if pair.hides_other_from(me) {
        return Relation::Hidden;
    }
    match (pair.connection, connection) {
        (Some(id), Some(c)) if c.is_accepted() => Relation::Connected(id),
        (Some(id), Some(c)) if &c.requester == viewer => Relation::RequestSent(id),
        (Some(id), Some(_)) => Relation::RequestReceived(id),
        _ => Relation::Stranger,
    }
}

/// Whether a denial or a block hides `other` from `viewer`, read inside a write
/// transaction, so that the check and what it guards commit together.
pub fn hidden_in(txn: &WriteTransaction, viewer: &Id, other: &Id) -> Result<bool, StoreError> {
    let (key, me) = pair_key(viewer, other);
    Ok(load_pair(&txn.open_table(PAIRS)?, key)?.hides_other_from(me))
}

/// How `viewer` stands towards `other` (by id). `Hidden` for an id nobody has.
pub fn relation_of(store: &Store, viewer: &Id, other: &Id) -> Result<Relation, StoreError> {
    let txn = store.read()?;
    if txn.open_table(USERS)?.get(other)?.is_none() {
        return Ok(Relation::Hidden);
    }
    let (key, me) = pair_key(viewer, other);
    let pair = load_pair(&txn.open_table(PAIRS)?, key)?;
    let connection = match pair.connection {
        Some(id) => load_connection(&txn.open_table(CONNECTIONS)?, &id)?,
        None => None,
    };
    Ok(relation(viewer, other, &pair, me, connection.as_ref()))
}

/// Whether `viewer` may learn that `other` exists (for pages elsewhere, such as a
/// member's profile): false for an unknown id, and for a member who denied or blocked
/// the viewer or whom the viewer blocked.
pub fn visible_to(store: &Store, viewer: &Id, other: &Id) -> Result<bool, StoreError> {
    Ok(relation_of(store, viewer, other)? != Relation::Hidden)
}

/// The member named `name` as `viewer` may know them: `None` for a name nobody has, and
/// for a member who denied or blocked the viewer or whom the viewer blocked (pages that
/// take a name, such as a profile or a file share, answer both alike). The viewer finds
/// themself.
pub fn find_visible(
    store: &Store,
    viewer: &Id,
    name: &Username,
) -> Result<Option<(Id, UserRecord)>, StoreError> {
    let Some((member, record)) = crate::accounts::find_user(store, name)? else {
        return Ok(None);
    };
    let visible = &member == viewer || visible_to(store, viewer, &member)?;
    Ok(visible.then_some((member, record)))
}

/// Search by normalised username: the exact name, or (with `prefix`) names starting with
/// the query (at least 3 characters). Members hidden from `viewer` never appear.
pub fn search(
    store: &Store,
    viewer: &Id,
    query: &str,
    prefix: bool,
) -> Result<Vec<Found>, StoreError> {
    // A query that cannot be (the start of) a name finds nobody; the rules for names are
    // public, so this reveals nothing.
    let Ok(name) = Username::parse(query) else {
        return Ok(Vec::new());
    };
    let txn = store.read()?;
    let names = txn.open_table(USERNAME_TO_USER)?;
    let mut candidates: Vec<(String, Id)> = Vec::new();
    if prefix {
        for row in names.range(name.as_str()..)?.take(MAX_SEARCH_SCAN) {
            let (k, v) = row?;
            if !k.value().starts_with(name.as_str()) {
                break;
            }
            candidates.push((k.value().to_owned(), v.value()));
        }
    } else if let Some(id) = names.get(name.as_str())? {
        candidates.push((name.as_str().to_owned(), id.value()));
    }
    let pairs = txn.open_table(PAIRS)?;
    let connections = txn.open_table(CONNECTIONS)?;
    let mut found = Vec::new();
    for (username, id) in candidates {
        let (key, me) = pair_key(viewer, &id);
        let pair = load_pair(&pairs, key)?;
        let connection = match pair.connection {
            Some(c) => load_connection(&connections, &c)?,
            None => None,
        };
        let rel = relation(viewer, &id, &pair, me, connection.as_ref());
        if rel != Relation::Hidden {
            found.push(Found {
                id,
                username,
                relation: rel,
            });
        }
        if found.len() >= MAX_SEARCH_RESULTS {
            break;
        }
    }
    Ok(found)
}

/// Send a connection request from `from` to the member named `to`.
pub fn request(
    store: &Store,
    from: &Id,
    to: &str,
    now: UnixTime,
) -> Result<Result<Id, RequestError>, StoreError> {
    let Ok(name) = Username::parse(to) else {
        return Ok(Err(RequestError::NotFound));
    };
    let txn = store.write()?;
    let id: Id = random_bytes();
    {
        let Some(target) = txn
            .open_table(USERNAME_TO_USER)?
            .get(name.as_str())?
            .map(|g| g.value())
        else {
            return Ok(Err(RequestError::NotFound));
        };
        let (key, me) = pair_key(from, &target);
        let mut pairs = txn.open_table(PAIRS)?;
        let mut pair = load_pair(&pairs, key)?;
        let mut connections = txn.open_table(CONNECTIONS)?;
        let existing = match pair.connection {
            Some(c) => load_connection(&connections, &c)?,
            None => None,
        };
        match relation(from, &target, &pair, me, existing.as_ref()) {
            Relation::Hidden => return Ok(Err(RequestError::NotFound)),
            Relation::Myself => return Ok(Err(RequestError::Myself)),
            Relation::Connected(_) => return Ok(Err(RequestError::AlreadyConnected)),
            Relation::RequestSent(_) => return Ok(Err(RequestError::AlreadySent)),
            Relation::RequestReceived(_) => return Ok(Err(RequestError::TheyAsked)),
            Relation::Stranger => {}
        }
        // Asking someone you once denied lifts your denial: you chose to be seen.
        set_flag(&mut pair.denied, me, false);
        pair.connection = Some(id);
        let record = ConnectionRecord {
            requester: *from,
            receiver: target,
            requested_day: day(now),
            state: ConnectionState::Pending,
        };
        connections.insert(id, record.encode()?.as_slice())?;
        pairs.insert(key, pair.encode()?.as_slice())?;
        let mut index = txn.open_table(MEMBER_TO_PAIRED)?;
        index.insert((*from, target), ())?;
        index.insert((target, *from), ())?;
    }
    txn.commit()?;
    Ok(Ok(id))
}

/// A pending request as its receiver sees it, before accepting.
pub struct PendingForReceiver {
    pub requester: Id,
    requester_delivery: RsaPublic,
}

impl std::fmt::Debug for PendingForReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PendingForReceiver(..)")
    }
}

/// The pending request `connection` if `receiver` is its receiver.
pub fn pending_for_receiver(
    store: &Store,
    connection: &Id,
    receiver: &Id,
) -> Result<Option<PendingForReceiver>, StoreError> {
    let txn = store.read()?;
    let Some(record) = load_connection(&txn.open_table(CONNECTIONS)?, connection)? else {
        return Ok(None);
    };
    if &record.receiver != receiver || record.is_accepted() {
        return Ok(None);
    }
    let Some(user) = load_user(&txn.open_table(USERS)?, &record.requester)? else {
        return Ok(None);
    };
    let requester_delivery = RsaPublic::from_der(&user.delivery_public)
        .map_err(|e| StoreError::Corrupt(format!("delivery key: {e}")))?;
    Ok(Some(PendingForReceiver {
        requester: record.requester,
        requester_delivery,
    }))
}

/// Accept a pending request: store both public keys in clear, the receiver's secrets
/// under its `data_key`, the requester's sealed to its delivery key. The two key pairs
/// are fresh (RSA from the key pool, or DSA, as each side chose) and are used by this
/// connection only. Returns the
/// requester's id, or `None` when there is no such request for this receiver (any more).
pub fn accept(
    store: &Store,
    connection: &Id,
    receiver: &Id,
    receiver_data_key: &SecretKey,
    requester_signing: &SigningKey,
    receiver_signing: &SigningKey,
    now: UnixTime,
) -> Result<Option<Id>, StoreError> {
    let Some(pending) = pending_for_receiver(store, connection, receiver)? else {
        return Ok(None);
    };
    let crypto = |e: crate::crypto::CryptoError| StoreError::Encode(format!("accept: {e}"));
    // All cryptography before the write transaction, so the writer is held briefly.
    let chat_key = SecretKey::generate();
    let requester_key = requester_signing.verifying_key().map_err(crypto)?;
    let receiver_key = receiver_signing.verifying_key().map_err(crypto)?;
    // Each side's secrets vouch for both public keys as stored now.
    let digest = keys::keys_digest(
        connection,
        &ConnectionRecord {
            requester: pending.requester,
            receiver: *receiver,
            requested_day: 0,
            state: ConnectionState::Accepted {
                requester_key: requester_key.clone(),
                receiver_key: receiver_key.clone(),
                accepted_day: 0,
            },
        },
    )
    .ok_or_else(|| StoreError::Encode("accept: no keys".into()))?;
    let requester_side =
        SideSecrets::new(chat_key.clone(), requester_signing, digest).map_err(crypto)?;
    let receiver_side = SideSecrets::new(chat_key, receiver_signing, digest).map_err(crypto)?;
    let requester_sealed = SideSecretsRecord {
        sealed: requester_side
            .seal_to(&pending.requester_delivery)
            .map_err(crypto)?,
    };
    let receiver_sealed = SideSecretsRecord {
        sealed: receiver_side
            .seal_under(receiver_data_key)
            .map_err(crypto)?,
    };

    let txn = store.write()?;
    {
        let mut connections = txn.open_table(CONNECTIONS)?;
        // Re-check inside the transaction: withdrawn, denied or accepted meanwhile?
        let Some(mut record) = load_connection(&connections, connection)? else {
            return Ok(None);
        };
        if &record.receiver != receiver
            || record.requester != pending.requester
            || record.is_accepted()
        {
            return Ok(None);
        }
        record.state = ConnectionState::Accepted {
            requester_key,
            receiver_key,
            accepted_day: day(now),
        };
        connections.insert(connection, record.encode()?.as_slice())?;
        let mut secrets = txn.open_table(CONNECTION_SECRETS)?;
        secrets.insert(
            (*connection, record.requester),
            requester_sealed.encode()?.as_slice(),
        )?;
        secrets.insert(
            (*connection, *receiver),
            receiver_sealed.encode()?.as_slice(),
        )?;
    }
    txn.commit()?;
    Ok(Some(pending.requester))
}

/// Deny a pending request (receiver only). The requester can never find the receiver
/// again. Returns whether there was such a request.
pub fn deny(store: &Store, connection: &Id, receiver: &Id) -> Result<bool, StoreError> {
    let txn = store.write()?;
    {
        let Some(record) = load_connection(&txn.open_table(CONNECTIONS)?, connection)? else {
            return Ok(false);
        };
        if &record.receiver != receiver || record.is_accepted() {
            return Ok(false);
        }
        remove_connection_in(&txn, connection, &record)?;
        let (key, me) = pair_key(receiver, &record.requester);
        let mut pairs = txn.open_table(PAIRS)?;
        let mut pair = load_pair(&pairs, key)?;
        set_flag(&mut pair.denied, me, true);
        pairs.insert(key, pair.encode()?.as_slice())?;
        let mut index = txn.open_table(MEMBER_TO_PAIRED)?;
        index.insert((record.requester, *receiver), ())?;
        index.insert((*receiver, record.requester), ())?;
    }
    txn.commit()?;
    Ok(true)
}

/// Remove a connection (either side; also withdraws a pending request). Its messages and
/// keys go with it. Returns the other side, or `None` when `member` is not a side.
pub fn remove(store: &Store, connection: &Id, member: &Id) -> Result<Option<Id>, StoreError> {
    let txn = store.write()?;
    let other = {
        let Some(record) = load_connection(&txn.open_table(CONNECTIONS)?, connection)? else {
            return Ok(None);
        };
        let Some(other) = record.other(member) else {
            return Ok(None);
        };
        remove_connection_in(&txn, connection, &record)?;
        other
    };
    txn.commit()?;
    Ok(Some(other))
}

/// Delete a connection, its keys, its messages and its place in the pair record (and the
/// pair record itself when nothing else links the two).
fn remove_connection_in(
    txn: &WriteTransaction,
    connection: &Id,
    record: &ConnectionRecord,
) -> Result<(), StoreError> {
    txn.open_table(CONNECTIONS)?.remove(connection)?;
    let sides = [record.requester, record.receiver];
    {
        let mut secrets = txn.open_table(CONNECTION_SECRETS)?;
        for side in sides {
            secrets.remove((*connection, side))?;
        }
    }
    crate::chat::delete_conversation_in(txn, connection, &sides)?;
    crate::e2e::store::delete_for_connection_in(txn, connection)?;
    let (key, _) = pair_key(&record.requester, &record.receiver);
    let mut pairs = txn.open_table(PAIRS)?;
    let mut pair = load_pair(&pairs, key)?;
    if pair.connection == Some(*connection) {
        pair.connection = None;
    }
    if pair.is_empty() {
        pairs.remove(key)?;
        let mut index = txn.open_table(MEMBER_TO_PAIRED)?;
        index.remove((record.requester, record.receiver))?;
        index.remove((record.receiver, record.requester))?;
    } else {
        pairs.insert(key, pair.encode()?.as_slice())?;
    }
    Ok(())
}

/// Why a block was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    #[error("No member has that name.")]
    NotFound,
    #[error("You cannot block yourself.")]
    Myself,
}

/// Block the member named `target`: their connection or request with `blocker` goes (with
/// its messages and keys), files either one shared with the other stop being shared,
/// they no longer appear to `blocker`, and `blocker` no longer
/// exists for them. Returns the removed connection and the blocked member's id, if there
/// was a connection.
pub fn block(
    store: &Store,
    blocker: &Id,
    target: &str,
) -> Result<Result<Option<(Id, Id)>, BlockError>, StoreError> {
    let Ok(name) = Username::parse(target) else {
        return Ok(Err(BlockError::NotFound));
    };
    let txn = store.write()?;
    let removed = {
        let Some(target) = txn
            .open_table(USERNAME_TO_USER)?
            .get(name.as_str())?
            .map(|g| g.value())
        else {
            return Ok(Err(BlockError::NotFound));
        };
        if &target == blocker {
            return Ok(Err(BlockError::Myself));
        }
        let (key, me) = pair_key(blocker, &target);
        let pair = load_pair(&txn.open_table(PAIRS)?, key)?;
        // Someone who denied or blocked you does not exist for you, here too.
        let other = 1 - me;
        if flag(&pair.denied, other) || flag(&pair.blocked, other) {
            return Ok(Err(BlockError::NotFound));
        }
        let removed = match pair.connection {
            Some(c) => {
                let record = load_connection(&txn.open_table(CONNECTIONS)?, &c)?;
                if let Some(record) = record {
                    remove_connection_in(&txn, &c, &record)?;
                }
                Some((c, target))
            }
            None => None,
        };
        let mut pairs = txn.open_table(PAIRS)?;
        let mut pair = load_pair(&pairs, key)?;
        set_flag(&mut pair.blocked, me, true);
        pairs.insert(key, pair.encode()?.as_slice())?;
        let mut index = txn.open_table(MEMBER_TO_PAIRED)?;
        index.insert((*blocker, target), ())?;
        index.insert((target, *blocker), ())?;
        // Files either one shared with the other stop being shared.
        crate::files::store::revoke_between_in(&txn, blocker, &target)?;
        removed
    };
    txn.commit()?;
    Ok(Ok(removed))
}

/// Lift `blocker`'s block of `target`. Returns whether there was such a block.
pub fn unblock(store: &Store, blocker: &Id, target: &Id) -> Result<bool, StoreError> {
    let txn = store.write()?;
    {
        let (key, me) = pair_key(blocker, target);
        let mut pairs = txn.open_table(PAIRS)?;
        let Some(mut pair) = pairs
            .get(key)?
            .map(|b| PairRecord::decode(b.value()))
            .transpose()?
        else {
            return Ok(false);
        };
        if !flag(&pair.blocked, me) {
            return Ok(false);
        }
        set_flag(&mut pair.blocked, me, false);
        if pair.is_empty() {
            pairs.remove(key)?;
            let mut index = txn.open_table(MEMBER_TO_PAIRED)?;
            index.remove((*blocker, *target))?;
            index.remove((*target, *blocker))?;
        } else {
            pairs.insert(key, pair.encode()?.as_slice())?;
        }
    }
    txn.commit()?;
    Ok(true)
}

/// One entry of a member's connections page.
#[derive(Clone)]
pub struct Entry {
    pub connection: Id,
    pub other: Id,
    pub username: String,
    /// Day of the request.
    pub day: i64,
}

/// A member's connections page, in name order.
#[derive(Clone, Default)]
pub struct Overview {
    pub received: Vec<Entry>,
    pub sent: Vec<Entry>,
    pub connected: Vec<Entry>,
    /// Members this member blocked: (id, username).
    pub blocked: Vec<(Id, String)>,
}

/// Everything on `member`'s connections page.
pub fn overview(store: &Store, member: &Id) -> Result<Overview, StoreError> {
    let txn = store.read()?;
    let index = txn.open_table(MEMBER_TO_PAIRED)?;
    let pairs = txn.open_table(PAIRS)?;
    let connections = txn.open_table(CONNECTIONS)?;
    let users = txn.open_table(USERS)?;
    let mut out = Overview::default();
    for row in index.range((*member, [0u8; 16])..=(*member, [0xffu8; 16]))? {
        let (k, _) = row?;
        let (_, other) = k.value();
        let (key, me) = pair_key(member, &other);
        let pair = load_pair(&pairs, key)?;
        let Some(user) = load_user(&users, &other)? else {
            continue;
        };
        if flag(&pair.blocked, me) {
            out.blocked.push((other, user.username.clone()));
        }
        let Some(id) = pair.connection else {
            continue;
        };
        let Some(record) = load_connection(&connections, &id)? else {
            continue;
        };
        let entry = Entry {
            connection: id,
            other,
            username: user.username,
            day: record.requested_day,
        };
        match relation(member, &other, &pair, me, Some(&record)) {
            Relation::Connected(_) => out.connected.push(entry),
            Relation::RequestSent(_) => out.sent.push(entry),
            Relation::RequestReceived(_) => out.received.push(entry),
            Relation::Hidden | Relation::Myself | Relation::Stranger => {}
        }
    }
    for list in [&mut out.received, &mut out.sent, &mut out.connected] {
        list.sort_by(|a, b| a.username.cmp(&b.username));
    }
    out.blocked.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(out)
}

/// The members `member` is connected with (accepted connections): (connection, other).
pub fn connected_ids(store: &Store, member: &Id) -> Result<Vec<(Id, Id)>, StoreError> {
    let txn = store.read()?;
    let index = txn.open_table(MEMBER_TO_PAIRED)?;
    let pairs = txn.open_table(PAIRS)?;
    let connections = txn.open_table(CONNECTIONS)?;
    let mut out = Vec::new();
    for row in index.range((*member, [0u8; 16])..=(*member, [0xffu8; 16]))? {
        let (k, _) = row?;
        let (_, other) = k.value();
        let (key, _) = pair_key(member, &other);
        let Some(id) = load_pair(&pairs, key)?.connection else {
            continue;
        };
        if load_connection(&connections, &id)?.is_some_and(|c| c.is_accepted()) {
            out.push((id, other));
        }
    }
    Ok(out)
}

/// A connection as one of its sides sees it.
#[derive(Clone)]
pub struct Side {
    pub record: ConnectionRecord,
    pub other: Id,
    pub other_name: String,
}

debug_without_names!(Found, Entry, Overview, Side);

/// Connection `connection` if `member` is one of its sides (any state).
pub fn side_of(store: &Store, connection: &Id, member: &Id) -> Result<Option<Side>, StoreError> {
    let txn = store.read()?;
    let Some(record) = load_connection(&txn.open_table(CONNECTIONS)?, connection)? else {
        return Ok(None);
    };
    let Some(other) = record.other(member) else {
        return Ok(None);
    };
    let Some(user) = load_user(&txn.open_table(USERS)?, &other)? else {
        return Ok(None);
    };
    Ok(Some(Side {
        record,
        other,
        other_name: user.username,
    }))
}

/// Connection `connection` if `member` is one of its sides, inside a write transaction.
pub fn side_in(
    txn: &WriteTransaction,
    connection: &Id,
    member: &Id,
) -> Result<Option<ConnectionRecord>, StoreError> {
    let record = load_connection(&txn.open_table(CONNECTIONS)?, connection)?;
    Ok(record.filter(|r| r.other(member).is_some()))
}

/// The accepted connection between `member` and `other`, if any.
pub fn connection_between(
    store: &Store,
    member: &Id,
    other: &Id,
) -> Result<Option<Id>, StoreError> {
    let txn = store.read()?;
    let (key, _) = pair_key(member, other);
    let Some(id) = load_pair(&txn.open_table(PAIRS)?, key)?.connection else {
        return Ok(None);
    };
    Ok(load_connection(&txn.open_table(CONNECTIONS)?, &id)?
        .filter(|c| c.is_accepted())
        .map(|_| id))
}

/// Account deletion (registered in the member deletion cascade), inside the caller's
/// transaction. `Removal::Full`: every connection, request, denial and block of `member`
/// in both directions goes, with the connections' keys and messages. `Removal::Decoy`:
/// their connections and the requests they sent go (as if they had removed and withdrawn
/// them), while requests waiting for them, and denials and blocks either way, stay, as
/// they would for a member who does not answer.
pub fn erase_member_in(
    txn: &WriteTransaction,
    member: &Id,
    removal: Removal,
) -> Result<(), StoreError> {
    let others: Vec<Id> = {
        let index = txn.open_table(MEMBER_TO_PAIRED)?;
        let mut others = Vec::new();
        for row in index.range((*member, [0u8; 16])..=(*member, [0xffu8; 16]))? {
            others.push(row?.0.value().1);
        }
        others
    };
    for other in others {
        let (key, _) = pair_key(member, &other);
        let pair = load_pair(&txn.open_table(PAIRS)?, key)?;
        if let Some(c) = pair.connection {
            let record = load_connection(&txn.open_table(CONNECTIONS)?, &c)?;
            if let Some(record) = record {
                let waiting_for_them = !record.is_accepted() && &record.receiver == member;
                if removal == Removal::Full || !waiting_for_them {
                    remove_connection_in(txn, &c, &record)?;
                }
            }
        }
        if removal == Removal::Full {
            txn.open_table(PAIRS)?.remove(key)?;
            let mut index = txn.open_table(MEMBER_TO_PAIRED)?;
            index.remove((*member, other))?;
            index.remove((other, *member))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pair_keys_are_ordered_and_flags_hide() {
        let (a, b) = ([1; 16], [2; 16]);
        assert_eq!(pair_key(&a, &b), ((a, b), 0));
        assert_eq!(pair_key(&b, &a), ((a, b), 1));
        let mut p = PairRecord::default();
        assert!(p.is_empty());
        assert!(!p.hides_other_from(0));
        p.denied[1] = true; // b denied a
        assert!(p.hides_other_from(0), "a cannot see b");
        assert!(!p.hides_other_from(1), "b still sees a");
        p.denied[1] = false;
        p.blocked[0] = true; // a blocked b
        assert!(p.hides_other_from(0), "a does not see b in searches");
        assert!(p.hides_other_from(1), "b cannot see a");
        assert!(!p.is_empty());
    }

    #[test]
    fn debug_output_names_nobody() {
        let f = Found {
            id: [1; 16],
            username: "secret-name".into(),
            relation: Relation::Stranger,
        };
        assert_eq!(format!("{f:?}"), "Found(..)");
        let o = Overview {
            blocked: vec![([2; 16], "secret-name".into())],
            ..Overview::default()
        };
        assert!(!format!("{o:?}").contains("secret-name"));
    }
}
