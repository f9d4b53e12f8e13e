//! Encrypted, signed chat messages.
//!
//! A message is stored in its conversation's queue (`MESSAGES`, keyed by conversation id
//! — a connection id or a group id — and a sequence number) as a Fernet token under the
//! conversation's key (a connection's chat key, or the group key of the current epoch),
//! with a signature by the sender's private key for that conversation over
//!
//! ```text
//! "ghostcache-msg-v3\0" || conversation id (16) || sender id (16) || message id (16)
//!     || sequence number (u64, big-endian) || sent_at (i64, big-endian)
//!     || epoch (u32, big-endian; 0 one-to-one)
//!     || timer flag (1) || expires_at (i64, big-endian; 0 without a timer)
//!     || ciphertext (the Fernet token's ASCII)
//! ```
//!
//! The header is fixed-length, so the signed bytes are unambiguous; it binds the message to
//! its conversation, place in it, sender, id, time, key epoch and self-destruct deadline,
//! so a stored message cannot be replayed into another conversation or copied to another
//! place in its own, attributed to someone else, or have its timer lifted. Readers verify
//! the signature before decrypting and show each message's status; a message that fails is
//! never shown as verified, and its text is withheld. The sequence number is reserved
//! before signing and the message committed in order (see [`commit`]).
//!
//! # Record versions
//!
//! The first byte of a stored message says which layout and which signed header it has;
//! each version is decoded by its own arm of [`MessageRecord::decode`], and a new kind of
//! message is a new version there (never a reinterpretation of an old one):
//!
//! 1. header `ghostcache-msg-v1` (no epoch, timer or sequence number);
//! 2. header `ghostcache-msg-v2` (epoch and timer; no sequence number);
//! 3. header `ghostcache-msg-v3` (the above; what this code writes).
//!
//! Versions 1 and 2 stay as they are (re-signing needs the sender's key): they still
//! verify against their own headers, but since those do not bind the sequence number, a
//! reader accepts them only at or below the last sequence number the conversation had
//! when that reader first opened it with this code (`legacy_upto`, kept in the reader's
//! own sealed secrets): an old message copied to a new place is refused.
//!
//! Self-destructing messages: a message with a timer has a row in `MESSAGE_DEADLINES`;
//! [`expire_due`] (the sweeper's expiry loop) deletes it, its index row and its delivery
//! marks at the deadline. See the README for what that guarantees at rest.
//!
//! Live delivery goes through [`hub::Hub`]; the live stream itself is in [`live`], for
//! one-to-one chats and groups alike ([`thread::Thread`]).
//! Functions here block (redb, RSA) and are called through `Store::run`.

pub mod commit;
pub mod delete;
pub mod handlers;
pub mod hub;
pub mod live;
pub mod signing;
pub mod thread;
pub mod views;

use redb::{ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use crate::clock::UnixTime;
use crate::connections;
use crate::connections::keys::{self, Signature, VerifyingKey};
use crate::crypto::{SecretKey, random_bytes};
use crate::store::tables::{
    CONNECTIONS, CONVERSATION_TO_LAST_SEQ, MESSAGE_DEADLINES, MESSAGES, UNDELIVERED,
};
use crate::store::{Id, Record, Store, StoreError};

/// Domain separation of signed message headers (record version 1).
const HEADER_TAG: &[u8] = b"ghostcache-msg-v1\0";
/// Domain separation of signed message headers (record version 2: epoch and timer).
const HEADER_TAG_V2: &[u8] = b"ghostcache-msg-v2\0";
/// Domain separation of signed message headers (record version 3: the sequence number).
const HEADER_TAG_V3: &[u8] = b"ghostcache-msg-v3\0";

/// Self-destruct timers a sender may choose: (seconds, label).
pub const TIMERS: &[(i64, &str)] = &[
    (30, "30 seconds"),
    (5 * 60, "5 minutes"),
    (3600, "1 hour"),
    (86_400, "1 day"),
    (7 * 86_400, "1 week"),
];

/// Parse the `timer` field of a send form: empty or `0` for none, otherwise one of
/// [`TIMERS`] in seconds. `None` for anything else.
pub fn parse_timer(value: &str) -> Option<Option<i64>> {
    match value.trim() {
        "" | "0" => Some(None),
        v => {
            let secs = v.parse::<i64>().ok()?;
            TIMERS.iter().any(|(t, _)| *t == secs).then_some(Some(secs))
        }
    }
}

/// Messages shown on one chat page.
pub const HISTORY_PAGE: usize = 50;
/// Messages a live stream sends when it (re)starts; beyond that it asks for a reload.
pub const CATCH_UP_LIMIT: usize = 100;
/// Messages returned by one `/chat/poll`.
pub const POLL_LIMIT: usize = 100;

/// Which header a message's signature covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HeaderFormat {
    /// Record version 1 (no epoch, no timer, no sequence number).
    V1,
    /// Record version 2 (no sequence number).
    V2,
    #[default]
    V3,
}

impl HeaderFormat {
    /// Whether the signature covers the message's sequence number.
    pub fn binds_seq(self) -> bool {
        self == HeaderFormat::V3
    }
}

/// A stored message.
#[derive(Clone, Serialize, Deserialize)]
pub struct MessageRecord {
    /// Random id, bound into the signature.
    pub id: Id,
    pub sender: Id,
    pub sent_at: UnixTime,
    /// The group key epoch the text is sealed under; 0 in one-to-one chats.
    pub epoch: u32,
    /// Self-destruct deadline, if the sender set a timer.
    pub expires_at: Option<UnixTime>,
    /// Fernet token of the UTF-8 text under the conversation's key.
    pub ciphertext: String,
    pub signature: Signature,
    /// Not stored: which header the signature covers (from the record version).
    #[serde(skip)]
    pub format: HeaderFormat,
}

/// The layout of record version 1, still read.
#[derive(Deserialize)]
struct MessageRecordV1 {
    id: Id,
    sender: Id,
    sent_at: UnixTime,
    ciphertext: String,
    signature: Signature,
}

impl std::fmt::Debug for MessageRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MessageRecord(..)")
    }
}

impl Record for MessageRecord {
    const VERSION: u8 = 3;
    const NAME: &'static str = "message";

    /// Version 3; or 2 or 1, stored by earlier versions (see the module documentation).
    fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        let corrupt = |e: postcard::Error| StoreError::Corrupt(format!("message: {e}"));
        match bytes.split_first() {
            // Versions 2 and 3 share a layout; they differ in the signed header.
            Some((&3, body)) => postcard::from_bytes(body).map_err(corrupt),
            Some((&2, body)) => postcard::from_bytes(body)
                .map(|r: Self| Self {
                    format: HeaderFormat::V2,
                    ..r
                })
                .map_err(corrupt),
            Some((&1, body)) => {
                let v1: MessageRecordV1 = postcard::from_bytes(body).map_err(corrupt)?;
                Ok(Self {
                    id: v1.id,
                    sender: v1.sender,
                    sent_at: v1.sent_at,
                    epoch: 0,
                    expires_at: None,
                    ciphertext: v1.ciphertext,
                    signature: v1.signature,
                    format: HeaderFormat::V1,
                })
            }
            Some((&v, _)) => Err(StoreError::Corrupt(format!(
                "message record version {v} (this binary reads 1 to 3)"
            ))),
            None => Err(StoreError::Corrupt("empty message record".into())),
        }
    }
}

impl MessageRecord {
    /// The bytes this message's signature covers, at place `seq` of `conversation`.
    pub fn signed_bytes(&self, conversation: &Id, seq: u64) -> Vec<u8> {
        let header = Header {
            sender: self.sender,
            id: self.id,
            seq,
            sent_at: self.sent_at,
            epoch: self.epoch,
            expires_at: self.expires_at,
        };
        match self.format {
            HeaderFormat::V1 => signed_bytes(
                conversation,
                &self.sender,
                &self.id,
                self.sent_at,
                &self.ciphertext,
            ),
            HeaderFormat::V2 => signed_bytes_v2(conversation, &header, &self.ciphertext),
            HeaderFormat::V3 => signed_bytes_v3(conversation, &header, &self.ciphertext),
        }
    }

    /// Whether this message has reached its self-destruct deadline at `now` (then nothing
    /// serves it, whether or not the sweeper has deleted it yet).
    pub fn expired(&self, now: UnixTime) -> bool {
        self.expires_at.is_some_and(|d| d <= now)
    }
}

/// The header fields of a message.
#[derive(Debug, Clone, Copy)]
pub struct Header {
    pub sender: Id,
    pub id: Id,
    /// Its place in the conversation (signed from version 3 on).
    pub seq: u64,
    pub sent_at: UnixTime,
    pub epoch: u32,
    pub expires_at: Option<UnixTime>,
}

/// The bytes a version-2 message's signature covers.
pub fn signed_bytes_v2(conversation: &Id, h: &Header, ciphertext: &str) -> Vec<u8> {
    header_bytes(HEADER_TAG_V2, conversation, h, None, ciphertext)
}

/// The bytes a version-3 message's signature covers (version 2's, with the sequence
/// number after the message id).
pub fn signed_bytes_v3(conversation: &Id, h: &Header, ciphertext: &str) -> Vec<u8> {
    header_bytes(HEADER_TAG_V3, conversation, h, Some(h.seq), ciphertext)
}

fn header_bytes(
    tag: &[u8],
    conversation: &Id,
    h: &Header,
    seq: Option<u64>,
    ciphertext: &str,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(tag.len() + 16 * 3 + 8 + 8 + 4 + 9 + ciphertext.len());
    out.extend_from_slice(tag);
    out.extend_from_slice(conversation);
    out.extend_from_slice(&h.sender);
    out.extend_from_slice(&h.id);
    if let Some(seq) = seq {
        out.extend_from_slice(&seq.to_be_bytes());
    }
    out.extend_from_slice(&h.sent_at.to_be_bytes());
    out.extend_from_slice(&h.epoch.to_be_bytes());
    out.push(u8::from(h.expires_at.is_some()));
    out.extend_from_slice(&h.expires_at.unwrap_or(0).to_be_bytes());
    out.extend_from_slice(ciphertext.as_bytes());
    out
}

/// Encrypt `text` under `key` and sign the version-3 header: a new message record. The
/// signed bytes are the server's own (a header it built, a ciphertext it made).
pub fn seal_message(
    conversation: &Id,
    header: &Header,
    key: &SecretKey,
    signing: &keys::SigningKey,
    text: &str,
) -> Result<MessageRecord, crate::crypto::CryptoError> {
    let ciphertext = key.seal(text.as_bytes())?;
    let signature = signing.sign(&signed_bytes_v3(conversation, header, &ciphertext))?;
    Ok(MessageRecord {
        id: header.id,
        sender: header.sender,
        sent_at: header.sent_at,
        epoch: header.epoch,
        expires_at: header.expires_at,
        ciphertext,
        signature,
        format: HeaderFormat::V3,
    })
}

/// What a reader trusts when checking the messages of one conversation: the verifying
/// key of each sender as the reader's own sealed secrets vouch for it, and how far
/// messages in the older formats (which do not sign their sequence number) may reach.
#[derive(Debug, Clone, Copy)]
pub struct Trust<'a> {
    /// The sender's verifying key, if the reader knows and trusts one.
    pub sender_key: Option<&'a VerifyingKey>,
    /// Messages of versions 1 and 2 are accepted at or below this sequence number only.
    pub legacy_upto: u64,
}

/// Verify and decrypt one stored message for its reader: what the reader trusts (the
/// sender's verifying key, if known) and the key for the message's epoch (if held).
pub fn show_record(
    conversation: &Id,
    me: &Id,
    seq: u64,
    record: &MessageRecord,
    trust: Trust<'_>,
    key: Option<&SecretKey>,
) -> Shown {
    let in_place = record.format.binds_seq() || seq <= trust.legacy_upto;
    let verified = in_place
        && trust
            .sender_key
            .is_some_and(|k| k.verify(&record.signed_bytes(conversation, seq), &record.signature));
    let (text, status) = if !verified {
        (None, Verification::BadSignature)
    } else {
        match key
            .and_then(|k| k.open(&record.ciphertext).ok())
            .and_then(|bytes| String::from_utf8(bytes.to_vec()).ok())
        {
            Some(t) => (Some(t), Verification::Verified),
            None => (None, Verification::Unreadable),
        }
    };
    Shown {
        seq,
        id: record.id,
        sender: record.sender,
        mine: &record.sender == me,
        sent_at: record.sent_at,
        expires_at: record.expires_at,
        text,
        status,
    }
}

/// The bytes a version-1 message's signature covers.
pub fn signed_bytes(
    conversation: &Id,
    sender: &Id,
    id: &Id,
    sent_at: UnixTime,
    ciphertext: &str,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_TAG.len() + 16 * 3 + 8 + ciphertext.len());
    out.extend_from_slice(HEADER_TAG);
    out.extend_from_slice(conversation);
    out.extend_from_slice(sender);
    out.extend_from_slice(id);
    out.extend_from_slice(&sent_at.to_be_bytes());
    out.extend_from_slice(ciphertext.as_bytes());
    out
}

/// Why a message text was refused. Shown to the member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("The message is empty.")]
    Empty,
    #[error("The message is longer than {0} bytes.")]
    TooLong(usize),
    #[error("The message contains control characters.")]
    ControlCharacters,
}

/// Check and normalise a message text: line breaks become `\n`, surrounding white space
/// goes, and control characters other than line breaks and tabs are refused.
pub fn clean_text(text: &str, max_bytes: usize) -> Result<String, TextError> {
    // Refuse before doing any work on something far too large.
    if text.len() > max_bytes.saturating_mul(2) {
        return Err(TextError::TooLong(max_bytes));
    }
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let text = text.trim();
    if text.is_empty() {
        return Err(TextError::Empty);
    }
    if text.len() > max_bytes {
        return Err(TextError::TooLong(max_bytes));
    }
    if text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(TextError::ControlCharacters);
    }
    Ok(text.to_owned())
}

/// A conversation opened for one member: what is needed to read (and, for its own
/// messages, check) everything in it. Holds the chat key; dropped after one request, or
/// at the end of a live stream (which ends with the session).
pub struct Conversation {
    pub id: Id,
    pub me: Id,
    pub peer: Id,
    pub peer_name: String,
    pub my_key: VerifyingKey,
    pub peer_key: VerifyingKey,
    /// Whether both public keys on the connection are the ones this member's own sealed
    /// secrets vouch for. When not (someone rewrote them in the file), nothing verifies.
    pub keys_authentic: bool,
    /// Messages in the older formats are accepted up to here (see the module docs).
    legacy_upto: u64,
    chat_key: SecretKey,
}

impl std::fmt::Debug for Conversation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conversation").finish_non_exhaustive()
    }
}

/// Whether a message's signature verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// Signature verified; text decrypted.
    Verified,
    /// Signature did not verify: the text is withheld.
    BadSignature,
    /// Signature verified but the ciphertext did not open under the chat key.
    Unreadable,
}

impl Verification {
    pub fn as_str(self) -> &'static str {
        match self {
            Verification::Verified => "verified",
            Verification::BadSignature => "bad-signature",
            Verification::Unreadable => "unreadable",
        }
    }
}

/// A message as its reader sees it.
#[derive(Clone)]
pub struct Shown {
    pub seq: u64,
    pub id: Id,
    pub sender: Id,
    pub mine: bool,
    pub sent_at: UnixTime,
    /// Self-destruct deadline.
    pub expires_at: Option<UnixTime>,
    /// `Some` only when verified and decrypted.
    pub text: Option<String>,
    pub status: Verification,
}

impl std::fmt::Debug for Shown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shown")
            .field("seq", &self.seq)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

fn side_secrets_missing() -> StoreError {
    StoreError::Corrupt("accepted connection without its keys".into())
}

/// Open conversation `id` for `me`: an accepted connection of which `me` is a side.
/// `None` otherwise (not found, not a side, not accepted) — one answer for all three.
pub fn open(
    store: &Store,
    id: &Id,
    me: &Id,
    data_key: &SecretKey,
) -> Result<Option<Conversation>, StoreError> {
    let Some(side) = connections::side_of(store, id, me)? else {
        return Ok(None);
    };
    let (Some(my_key), Some(peer_key)) = (
        side.record.key_of(me).cloned(),
        side.record.key_of(&side.other).cloned(),
    ) else {
        return Ok(None);
    };
    let secrets =
        keys::open_side(store, id, me, data_key, &side.record)?.ok_or_else(side_secrets_missing)?;
    Ok(Some(Conversation {
        id: *id,
        me: *me,
        peer: side.other,
        peer_name: side.other_name,
        my_key,
        peer_key,
        keys_authentic: secrets.keys_authentic,
        legacy_upto: secrets.legacy_upto,
        chat_key: secrets.chat_key,
    }))
}

impl Conversation {
    /// Verify and decrypt one stored message.
    pub fn show(&self, seq: u64, record: &MessageRecord) -> Shown {
        let key = if !self.keys_authentic {
            None
        } else if record.sender == self.me {
            Some(&self.my_key)
        } else if record.sender == self.peer {
            Some(&self.peer_key)
        } else {
            None
        };
        // One-to-one messages carry epoch 0; anything else is not under this chat key.
        let chat_key = (record.epoch == 0).then_some(&self.chat_key);
        let trust = Trust {
            sender_key: key,
            legacy_upto: self.legacy_upto,
        };
        show_record(&self.id, &self.me, seq, record, trust, chat_key)
    }

    /// Up to `limit` messages before sequence number `before` (or the latest), oldest
    /// first; and whether older ones exist.
    pub fn history(
        &self,
        store: &Store,
        before: Option<u64>,
        limit: usize,
        now: UnixTime,
    ) -> Result<(Vec<Shown>, bool), StoreError> {
        let end = before.unwrap_or(u64::MAX);
        let txn = store.read()?;
        let table = txn.open_table(MESSAGES)?;
        let range = table.range((self.id, 0)..(self.id, end))?.rev();
        read_newest(range, limit, now, |seq, r| self.show(seq, r))
    }

    /// The latest `limit` messages after sequence number `after`, oldest first; and
    /// whether older ones after `after` were left out.
    pub fn since(
        &self,
        store: &Store,
        after: u64,
        limit: usize,
        now: UnixTime,
    ) -> Result<(Vec<Shown>, bool), StoreError> {
        let start = after.saturating_add(1);
        let txn = store.read()?;
        let table = txn.open_table(MESSAGES)?;
        let range = table.range((self.id, start)..=(self.id, u64::MAX))?.rev();
        read_newest(range, limit, now, |seq, r| self.show(seq, r))
    }

    /// One message by sequence number (`None` if it is gone or has expired).
    pub fn message(
        &self,
        store: &Store,
        seq: u64,
        now: UnixTime,
    ) -> Result<Option<Shown>, StoreError> {
        read_one(store, &self.id, seq, now, |seq, r| self.show(seq, r))
    }
}

/// Up to `limit` messages from `rows` (newest first), skipping those that have expired,
/// shown by `show`; oldest first, and whether older ones were left out.
pub(crate) fn read_newest<'a>(
    rows: impl Iterator<
        Item = Result<
            (
                redb::AccessGuard<'a, (Id, u64)>,
                redb::AccessGuard<'a, &'static [u8]>,
            ),
            redb::StorageError,
        >,
    >,
    limit: usize,
    now: UnixTime,
    show: impl Fn(u64, &MessageRecord) -> Shown,
) -> Result<(Vec<Shown>, bool), StoreError> {
    let mut out = Vec::with_capacity(limit.min(HISTORY_PAGE));
    let mut more = false;
    for row in rows {
        let (k, v) = row?;
        let record = MessageRecord::decode(v.value())?;
        // Past its deadline it is never served, even before the sweeper deletes it.
        if record.expired(now) {
            continue;
        }
        if out.len() >= limit {
            more = true;
            break;
        }
        out.push(show(k.value().1, &record));
    }
    out.reverse();
    Ok((out, more))
}

/// Message `seq` of `conversation`, shown by `show`; `None` if gone or expired.
pub(crate) fn read_one(
    store: &Store,
    conversation: &Id,
    seq: u64,
    now: UnixTime,
    show: impl Fn(u64, &MessageRecord) -> Shown,
) -> Result<Option<Shown>, StoreError> {
    let txn = store.read()?;
    let table = txn.open_table(MESSAGES)?;
    let Some(v) = table.get((*conversation, seq))? else {
        return Ok(None);
    };
    let record = MessageRecord::decode(v.value())?;
    Ok((!record.expired(now)).then(|| show(seq, &record)))
}

/// A message just stored.
#[derive(Debug, Clone, Copy)]
pub struct Sent {
    pub seq: u64,
    pub id: Id,
    pub sent_at: UnixTime,
    /// The other side (to notify).
    pub recipient: Id,
}

/// Index the deadline of a message with a timer (inside the caller's transaction).
pub fn index_deadline_in(
    txn: &WriteTransaction,
    conversation: &Id,
    seq: u64,
    expires_at: Option<UnixTime>,
) -> Result<(), StoreError> {
    if let Some(deadline) = expires_at {
        txn.open_table(MESSAGE_DEADLINES)?
            .insert((deadline, *conversation, seq), ())?;
    }
    Ok(())
}

/// Encrypt, sign and store a message from `sender` in connection `conversation`, with an
/// optional self-destruct timer (seconds, one of [`TIMERS`]). `text` must have passed
/// [`clean_text`]. `None` when `sender` has no accepted connection by that id. Waits for
/// the durable commit that holds the message (shared with other sends, see [`commit`]).
#[allow(
    clippy::too_many_arguments,
    reason = "one send: who, where, what, when"
)]
pub fn send(
    store: &Store,
    commits: &commit::Committer,
    conversation: &Id,
    sender: &Id,
    data_key: &SecretKey,
    text: &str,
    now: UnixTime,
    timer: Option<i64>,
) -> Result<Option<Sent>, StoreError> {
    let Some(side) = connections::side_of(store, conversation, sender)? else {
        return Ok(None);
    };
    if !side.record.is_accepted() {
        return Ok(None);
    }
    let secrets = keys::open_side(store, conversation, sender, data_key, &side.record)?
        .ok_or_else(side_secrets_missing)?;
    let crypto = |e: crate::crypto::CryptoError| StoreError::Encode(format!("message: {e}"));
    let signing = secrets.signing_key().map_err(crypto)?;
    // Only the committer numbers one-to-one messages; a second round is a safeguard.
    for _ in 0..3 {
        let ticket = commits.reserve(conversation)?;
        let id: Id = random_bytes();
        let header = Header {
            sender: *sender,
            id,
            seq: ticket.seq(),
            sent_at: now,
            epoch: 0,
            expires_at: timer.map(|t| now.saturating_add(t)),
        };
        let record = seal_message(conversation, &header, &secrets.chat_key, &signing, text)
            .map_err(crypto)?;
        let outcome = commit_direct(
            commits,
            ticket,
            conversation,
            sender,
            &side.other,
            &record,
            now,
        )?;
        if let Some(sent) = outcome {
            return Ok(sent);
        }
    }
    Err(StoreError::Corrupt(
        "sequence numbers kept being taken".into(),
    ))
}

/// Store a sealed one-to-one message under `ticket`'s number: `None` when the number was
/// taken meanwhile; `Some(None)` when the connection went away while it was signed.
fn commit_direct(
    commits: &commit::Committer,
    ticket: commit::Ticket,
    conversation: &Id,
    sender: &Id,
    recipient: &Id,
    record: &MessageRecord,
    now: UnixTime,
) -> Result<Option<Option<Sent>>, StoreError> {
    let encoded = record.encode()?;
    let (conversation, sender, recipient) = (*conversation, *sender, *recipient);
    let (id, expires_at) = (record.id, record.expires_at);
    commits.commit(ticket, move |txn, seq| {
        // Still there? (Removed or blocked while we were signing.)
        let Some(current) = connections::side_in(txn, &conversation, &sender)? else {
            return Ok(None);
        };
        if !current.is_accepted() {
            return Ok(None);
        }
        txn.open_table(MESSAGES)?
            .insert((conversation, seq), encoded.as_slice())?;
        txn.open_table(UNDELIVERED)?
            .insert((recipient, conversation, seq), ())?;
        index_deadline_in(txn, &conversation, seq, expires_at)?;
        Ok(Some(Sent {
            seq,
            id,
            sent_at: now,
            recipient,
        }))
    })
}

/// Mark `member`'s messages in `conversation` up to `upto` (inclusive) as delivered, in
/// a commit shared with other writes (every open stream of a group marks at once).
pub fn mark_delivered(
    store: &Store,
    commits: &commit::Committer,
    member: &Id,
    conversation: &Id,
    upto: u64,
) -> Result<(), StoreError> {
    let has_any = {
        let txn = store.read()?;
        let table = txn.open_table(UNDELIVERED)?;
        table
            .range((*member, *conversation, 0)..=(*member, *conversation, upto))?
            .next()
            .is_some()
    };
    if !has_any {
        return Ok(());
    }
    // Durable like every commit: redb refuses non-durable commits on a file that other
    // processes (backup, status) may open, and a lost delivery mark would only re-deliver.
    let (member, conversation) = (*member, *conversation);
    commits.commit_any(move |txn| {
        txn.open_table(UNDELIVERED)?.retain_in(
            (member, conversation, 0)..=(member, conversation, upto),
            |_, _| false,
        )?;
        Ok(())
    })
}

/// Number of undelivered messages per conversation for `member`.
pub fn unread_counts(
    store: &Store,
    member: &Id,
) -> Result<std::collections::HashMap<Id, usize>, StoreError> {
    let txn = store.read()?;
    let table = txn.open_table(UNDELIVERED)?;
    let mut out = std::collections::HashMap::new();
    for row in table.range((*member, [0u8; 16], 0)..=(*member, [0xffu8; 16], u64::MAX))? {
        let (k, _) = row?;
        *out.entry(k.value().1).or_insert(0) += 1;
    }
    Ok(out)
}

/// A message handed out by `/chat/poll`.
#[derive(Clone)]
pub struct Polled {
    pub conversation: Id,
    /// Whether the conversation is a group.
    pub group: bool,
    /// The sender's name.
    pub sender_name: String,
    pub message: Shown,
}

crate::connections::debug_without_names!(Polled);

/// Up to `limit` undelivered messages for `member` (oldest conversation rows first), now
/// marked delivered; and whether more are waiting. Messages past their self-destruct
/// deadline at `now` are marked delivered and not handed out.
pub fn poll(
    store: &Store,
    member: &Id,
    data_key: &SecretKey,
    limit: usize,
    now: UnixTime,
) -> Result<(Vec<Polled>, bool), StoreError> {
    let mut wanted: Vec<(Id, u64)> = Vec::new();
    let mut more = false;
    {
        let txn = store.read()?;
        let table = txn.open_table(UNDELIVERED)?;
        for row in table.range((*member, [0u8; 16], 0)..=(*member, [0xffu8; 16], u64::MAX))? {
            let (k, _) = row?;
            if wanted.len() >= limit {
                more = true;
                break;
            }
            let (_, conv, seq) = k.value();
            wanted.push((conv, seq));
        }
    }
    let mut out = Vec::with_capacity(wanted.len());
    let mut delivered: Vec<(Id, u64)> = Vec::with_capacity(wanted.len());
    let mut current: Option<(Id, Option<thread::Thread>)> = None;
    for (conv, seq) in wanted {
        if current.as_ref().is_none_or(|(id, _)| *id != conv) {
            current = Some((conv, thread::Thread::open(store, &conv, member, data_key)?));
        }
        delivered.push((conv, seq));
        let Some((_, Some(t))) = &current else {
            continue;
        };
        if let Some(message) = t.message(store, seq, now)? {
            out.push(Polled {
                conversation: conv,
                group: t.is_group(),
                sender_name: t.sender_name(&message).to_owned(),
                message,
            });
        }
    }
    if !delivered.is_empty() {
        let txn = store.write()?;
        {
            let mut table = txn.open_table(UNDELIVERED)?;
            for (conv, seq) in &delivered {
                table.remove((*member, *conv, *seq))?;
            }
        }
        txn.commit()?;
    }
    Ok((out, more))
}

/// Delete a conversation's messages (with their deadline rows) and its undelivered marks
/// for `members`, inside the caller's transaction.
pub fn delete_conversation_in(
    txn: &WriteTransaction,
    conversation: &Id,
    members: &[Id],
) -> Result<(), StoreError> {
    delete_messages_where_in(txn, conversation, |_| true)?;
    txn.open_table(CONVERSATION_TO_LAST_SEQ)?
        .remove(conversation)?;
    let mut undelivered = txn.open_table(UNDELIVERED)?;
    for m in members {
        undelivered.retain_in(
            (*m, *conversation, 0)..=(*m, *conversation, u64::MAX),
            |_, _| false,
        )?;
    }
    Ok(())
}

/// Delete the messages of `conversation` for which `doomed` holds, with their deadline
/// rows, inside the caller's transaction. Returns their sequence numbers.
pub fn delete_messages_where_in(
    txn: &WriteTransaction,
    conversation: &Id,
    doomed: impl Fn(&MessageRecord) -> bool,
) -> Result<Vec<u64>, StoreError> {
    let mut messages = txn.open_table(MESSAGES)?;
    let mut gone: Vec<(u64, Option<UnixTime>)> = Vec::new();
    for row in messages.range((*conversation, 0)..=(*conversation, u64::MAX))? {
        let (k, v) = row?;
        let record = MessageRecord::decode(v.value())?;
        if doomed(&record) {
            gone.push((k.value().1, record.expires_at));
        }
    }
    let mut deadlines = txn.open_table(MESSAGE_DEADLINES)?;
    for (seq, expires_at) in &gone {
        messages.remove((*conversation, *seq))?;
        if let Some(d) = expires_at {
            deadlines.remove((*d, *conversation, *seq))?;
        }
    }
    Ok(gone.into_iter().map(|(seq, _)| seq).collect())
}

/// The members who may have undelivered marks in `conversation` and open live streams on
/// it: the two sides of a connection, or a group's current members.
pub fn conversation_members_in(
    txn: &WriteTransaction,
    conversation: &Id,
) -> Result<Vec<Id>, StoreError> {
    if let Some(bytes) = txn.open_table(CONNECTIONS)?.get(conversation)? {
        let record = connections::ConnectionRecord::decode(bytes.value())?;
        return Ok(vec![record.requester, record.receiver]);
    }
    crate::groups::active_members_in(txn, conversation)
}

/// A message deleted at its deadline.
#[derive(Debug, Clone)]
pub struct Expired {
    pub conversation: Id,
    pub seq: u64,
    /// Who to tell (open live streams).
    pub members: Vec<Id>,
}

/// Most messages one expiry pass deletes (the rest wait for the next pass, moments later).
pub const EXPIRY_BATCH: usize = 1000;

/// Delete every message whose self-destruct deadline is at or before `now` (up to
/// [`EXPIRY_BATCH`]): its row, its deadline row and its undelivered marks, in one durable
/// transaction. Reads only the deadline index, never the message table as a whole.
pub fn expire_due(store: &Store, now: UnixTime) -> Result<Vec<Expired>, StoreError> {
    let txn = store.write()?;
    let due: Vec<(i64, Id, u64)> = {
        let deadlines = txn.open_table(MESSAGE_DEADLINES)?;
        let mut due = Vec::new();
        for row in deadlines.range(..=(now, [0xffu8; 16], u64::MAX))? {
            if due.len() >= EXPIRY_BATCH {
                break;
            }
            due.push(row?.0.value());
        }
        due
    };
    if due.is_empty() {
        txn.abort()?;
        return Ok(Vec::new());
    }
    let mut out: Vec<Expired> = Vec::with_capacity(due.len());
    let mut members_of: std::collections::HashMap<Id, Vec<Id>> = std::collections::HashMap::new();
    for (deadline, conversation, seq) in due {
        txn.open_table(MESSAGE_DEADLINES)?
            .remove((deadline, conversation, seq))?;
        let existed = txn
            .open_table(MESSAGES)?
            .remove((conversation, seq))?
            .is_some();
        let members = match members_of.get(&conversation) {
            Some(m) => m.clone(),
            None => {
                let m = conversation_members_in(&txn, &conversation)?;
                members_of.insert(conversation, m.clone());
                m
            }
        };
        let mut undelivered = txn.open_table(UNDELIVERED)?;
        for m in &members {
            undelivered.remove((*m, conversation, seq))?;
        }
        if existed {
            out.push(Expired {
                conversation,
                seq,
                members,
            });
        }
    }
    txn.commit()?;
    Ok(out)
}

/// The earliest self-destruct deadline, if any message has a timer.
pub fn next_deadline(store: &Store) -> Result<Option<UnixTime>, StoreError> {
    let txn = store.read()?;
    let table = txn.open_table(MESSAGE_DEADLINES)?;
    Ok(table.first()?.map(|(k, _)| k.value().0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_rules() {
        assert_eq!(clean_text("  hi \r\n there ", 10).unwrap(), "hi \n there");
        assert_eq!(clean_text("   \n\t ", 10), Err(TextError::Empty));
        assert_eq!(clean_text("", 10), Err(TextError::Empty));
        assert_eq!(clean_text("12345678901", 10), Err(TextError::TooLong(10)));
        assert_eq!(
            clean_text(&"x".repeat(1_000_000), 10),
            Err(TextError::TooLong(10))
        );
        assert_eq!(clean_text("a\u{0}b", 10), Err(TextError::ControlCharacters));
        assert_eq!(
            clean_text("a\u{1b}[31mb", 10),
            Err(TextError::ControlCharacters)
        );
        assert_eq!(clean_text("tab\there", 10).unwrap(), "tab\there");
        assert_eq!(
            clean_text("<b>&'\"", 10).unwrap(),
            "<b>&'\"",
            "markup is text"
        );
        // Multi-byte characters count in bytes.
        assert_eq!(clean_text("ééééé", 10).unwrap(), "ééééé");
        assert_eq!(clean_text("éééééé", 10), Err(TextError::TooLong(10)));
    }

    #[test]
    fn timers_are_the_listed_ones_only() {
        assert_eq!(parse_timer(""), Some(None));
        assert_eq!(parse_timer("0"), Some(None));
        assert_eq!(parse_timer("30"), Some(Some(30)));
        assert_eq!(parse_timer("604800"), Some(Some(604_800)));
        assert_eq!(parse_timer("31"), None);
        assert_eq!(parse_timer("-30"), None);
        assert_eq!(parse_timer("1e3"), None);
    }

    #[test]
    fn v2_header_binds_epoch_and_timer() {
        let h = Header {
            sender: [2; 16],
            id: [3; 16],
            seq: 7,
            sent_at: 4,
            epoch: 1,
            expires_at: Some(34),
        };
        let base = signed_bytes_v2(&[1; 16], &h, "ct");
        let e = Header { epoch: 2, ..h };
        assert_ne!(base, signed_bytes_v2(&[1; 16], &e, "ct"));
        let t = Header {
            expires_at: None,
            ..h
        };
        assert_ne!(base, signed_bytes_v2(&[1; 16], &t, "ct"));
        let t = Header {
            expires_at: Some(35),
            ..h
        };
        assert_ne!(base, signed_bytes_v2(&[1; 16], &t, "ct"));
        assert_ne!(base, signed_bytes(&[1; 16], &[2; 16], &[3; 16], 4, "ct"));
    }

    #[test]
    fn version_1_records_still_read_and_verify() {
        use crate::crypto::rsa_keys::RsaPrivate;
        let signing = keys::SigningKey::RsaPss(RsaPrivate::generate(2048).unwrap());
        let vk = signing.verifying_key().unwrap();
        let key = SecretKey::generate();
        let conv = [7u8; 16];
        let ciphertext = key.seal(b"old message").unwrap();
        let signature = signing
            .sign(&signed_bytes(&conv, &[1; 16], &[2; 16], 5, &ciphertext))
            .unwrap();
        #[derive(Serialize)]
        struct V1<'a> {
            id: Id,
            sender: Id,
            sent_at: i64,
            ciphertext: &'a str,
            signature: &'a Signature,
        }
        let mut bytes = vec![1u8];
        bytes.extend(
            postcard::to_stdvec(&V1 {
                id: [2; 16],
                sender: [1; 16],
                sent_at: 5,
                ciphertext: &ciphertext,
                signature: &signature,
            })
            .unwrap(),
        );
        let record = MessageRecord::decode(&bytes).unwrap();
        assert_eq!(record.format, HeaderFormat::V1);
        let trust = Trust {
            sender_key: Some(&vk),
            legacy_upto: 1,
        };
        let shown = show_record(&conv, &[9; 16], 1, &record, trust, Some(&key));
        assert_eq!(shown.status, Verification::Verified);
        assert_eq!(shown.text.as_deref(), Some("old message"));
        // Copied to a place after the reader's last old-format message: refused.
        let shown = show_record(&conv, &[9; 16], 2, &record, trust, Some(&key));
        assert_eq!(shown.status, Verification::BadSignature);
        assert_eq!(shown.text, None);
        // Re-encoded, it is a version-3 record whose signature no longer matches.
        let again = MessageRecord::decode(&record.encode().unwrap()).unwrap();
        let shown = show_record(&conv, &[9; 16], 1, &again, trust, Some(&key));
        assert_eq!(shown.status, Verification::BadSignature);
    }

    #[test]
    fn v3_binds_the_sequence_number_and_a_copy_elsewhere_never_verifies() {
        use crate::crypto::rsa_keys::RsaPrivate;
        let signing = keys::SigningKey::RsaPss(RsaPrivate::generate(2048).unwrap());
        let vk = signing.verifying_key().unwrap();
        let key = SecretKey::generate();
        let conv = [7u8; 16];
        let h = Header {
            sender: [1; 16],
            id: [2; 16],
            seq: 5,
            sent_at: 100,
            epoch: 0,
            expires_at: None,
        };
        let record = seal_message(&conv, &h, &key, &signing, "in its place").unwrap();
        let record = MessageRecord::decode(&record.encode().unwrap()).unwrap();
        assert_eq!(record.format, HeaderFormat::V3);
        let trust = Trust {
            sender_key: Some(&vk),
            legacy_upto: u64::MAX,
        };
        let at = |seq| show_record(&conv, &[9; 16], seq, &record, trust, Some(&key)).status;
        assert_eq!(at(5), Verification::Verified);
        // A database writer duplicating it under another number: never verified, even
        // with every old-format allowance.
        assert_eq!(at(6), Verification::BadSignature);
        assert_eq!(at(4), Verification::BadSignature);
        let base = signed_bytes_v3(&conv, &h, "ct");
        assert_ne!(base, signed_bytes_v3(&conv, &Header { seq: 6, ..h }, "ct"));
        assert_ne!(base, signed_bytes_v2(&conv, &h, "ct"));
        // Without a trusted key (the reader's sealed secrets do not vouch for it): no.
        let untrusted = Trust {
            sender_key: None,
            legacy_upto: u64::MAX,
        };
        let shown = show_record(&conv, &[9; 16], 5, &record, untrusted, Some(&key));
        assert_eq!(shown.status, Verification::BadSignature);
    }

    #[test]
    fn an_expired_message_is_expired_at_its_deadline() {
        let h = Header {
            sender: [1; 16],
            id: [2; 16],
            seq: 1,
            sent_at: 100,
            epoch: 0,
            expires_at: Some(130),
        };
        let signing =
            keys::SigningKey::RsaPss(crate::crypto::rsa_keys::RsaPrivate::generate(2048).unwrap());
        let r = seal_message(&[7; 16], &h, &SecretKey::generate(), &signing, "x").unwrap();
        assert!(!r.expired(129));
        assert!(r.expired(130));
        let untimed = seal_message(
            &[7; 16],
            &Header {
                expires_at: None,
                ..h
            },
            &SecretKey::generate(),
            &signing,
            "x",
        )
        .unwrap();
        assert!(!untimed.expired(i64::MAX));
    }

    #[test]
    fn signed_bytes_bind_every_header_field() {
        let base = signed_bytes(&[1; 16], &[2; 16], &[3; 16], 4, "ct");
        assert_ne!(base, signed_bytes(&[9; 16], &[2; 16], &[3; 16], 4, "ct"));
        assert_ne!(base, signed_bytes(&[1; 16], &[9; 16], &[3; 16], 4, "ct"));
        assert_ne!(base, signed_bytes(&[1; 16], &[2; 16], &[9; 16], 4, "ct"));
        assert_ne!(base, signed_bytes(&[1; 16], &[2; 16], &[3; 16], 5, "ct"));
        assert_ne!(base, signed_bytes(&[1; 16], &[2; 16], &[3; 16], 4, "cu"));
    }
}
