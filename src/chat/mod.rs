//! Encrypted, signed chat messages.
//!
//! A message is stored in its conversation's queue (`MESSAGES`, keyed by conversation id
//! and a sequence number) as a Fernet token under the conversation's chat key, with a
//! signature by the sender's per-connection private key over
//!
//! ```text
//! "ghostcache-msg-v1\0" || conversation id (16) || sender id (16) || message id (16)
//!     || sent_at (i64, big-endian) || ciphertext (the Fernet token's ASCII)
//! ```
//!
//! The header is fixed-length, so the signed bytes are unambiguous; it binds the message to
//! its conversation, sender, id and time, so a stored message cannot be replayed into
//! another conversation or attributed to the other side. Readers verify the signature
//! before decrypting and show each message's status; a message that fails is never shown
//! as verified, and its text is withheld.
//!
//! Live delivery goes through [`hub::Hub`]; the live stream itself is in [`live`].
//! Functions here block (redb, RSA) and are called through `Store::run`.

pub mod handlers;
pub mod hub;
pub mod live;
pub mod views;

use redb::{ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use crate::clock::UnixTime;
use crate::connections;
use crate::connections::keys::{self, Signature, VerifyingKey};
use crate::crypto::{SecretKey, random_bytes};
use crate::store::tables::{CONVERSATION_TO_LAST_SEQ, MESSAGES, UNDELIVERED};
use crate::store::{Id, Record, Store, StoreError};

/// Domain separation of signed message headers.
const HEADER_TAG: &[u8] = b"ghostcache-msg-v1\0";

/// Messages shown on one chat page.
pub const HISTORY_PAGE: usize = 50;
/// Messages a live stream sends when it (re)starts; beyond that it asks for a reload.
pub const CATCH_UP_LIMIT: usize = 100;
/// Messages returned by one `/chat/poll`.
pub const POLL_LIMIT: usize = 100;

/// A stored message.
#[derive(Clone, Serialize, Deserialize)]
pub struct MessageRecord {
    /// Random id, bound into the signature.
    pub id: Id,
    pub sender: Id,
    pub sent_at: UnixTime,
    /// Fernet token of the UTF-8 text under the conversation's chat key.
    pub ciphertext: String,
    pub signature: Signature,
}

impl std::fmt::Debug for MessageRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MessageRecord(..)")
    }
}

impl Record for MessageRecord {
    const VERSION: u8 = 1;
    const NAME: &'static str = "message";
}

/// The bytes a message's signature covers.
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
    let secrets = keys::open_side(store, id, me, data_key)?.ok_or_else(side_secrets_missing)?;
    Ok(Some(Conversation {
        id: *id,
        me: *me,
        peer: side.other,
        peer_name: side.other_name,
        my_key,
        peer_key,
        chat_key: secrets.chat_key,
    }))
}

impl Conversation {
    /// Verify and decrypt one stored message.
    pub fn show(&self, seq: u64, record: &MessageRecord) -> Shown {
        let mine = record.sender == self.me;
        let key = if mine {
            Some(&self.my_key)
        } else if record.sender == self.peer {
            Some(&self.peer_key)
        } else {
            None
        };
        let signed = signed_bytes(
            &self.id,
            &record.sender,
            &record.id,
            record.sent_at,
            &record.ciphertext,
        );
        let verified = key.is_some_and(|k| k.verify(&signed, &record.signature));
        let (text, status) = if !verified {
            (None, Verification::BadSignature)
        } else {
            match self
                .chat_key
                .open(&record.ciphertext)
                .ok()
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
            mine,
            sent_at: record.sent_at,
            text,
            status,
        }
    }

    /// Up to `limit` messages before sequence number `before` (or the latest), oldest
    /// first; and whether older ones exist.
    pub fn history(
        &self,
        store: &Store,
        before: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<Shown>, bool), StoreError> {
        let txn = store.read()?;
        let table = txn.open_table(MESSAGES)?;
        let end = before.unwrap_or(u64::MAX);
        let mut out = Vec::with_capacity(limit.min(HISTORY_PAGE));
        let mut more = false;
        for row in table.range((self.id, 0)..(self.id, end))?.rev() {
            let (k, v) = row?;
            if out.len() >= limit {
                more = true;
                break;
            }
            out.push(self.show(k.value().1, &MessageRecord::decode(v.value())?));
        }
        out.reverse();
        Ok((out, more))
    }

    /// The latest `limit` messages after sequence number `after`, oldest first; and
    /// whether older ones after `after` were left out.
    pub fn since(
        &self,
        store: &Store,
        after: u64,
        limit: usize,
    ) -> Result<(Vec<Shown>, bool), StoreError> {
        let txn = store.read()?;
        let table = txn.open_table(MESSAGES)?;
        let mut out = Vec::new();
        let mut skipped = false;
        let start = after.saturating_add(1);
        for row in table.range((self.id, start)..=(self.id, u64::MAX))?.rev() {
            let (k, v) = row?;
            if out.len() >= limit {
                skipped = true;
                break;
            }
            out.push(self.show(k.value().1, &MessageRecord::decode(v.value())?));
        }
        out.reverse();
        Ok((out, skipped))
    }

    /// One message by sequence number (`None` if it is gone).
    pub fn message(&self, store: &Store, seq: u64) -> Result<Option<Shown>, StoreError> {
        let txn = store.read()?;
        let table = txn.open_table(MESSAGES)?;
        let Some(v) = table.get((self.id, seq))? else {
            return Ok(None);
        };
        Ok(Some(self.show(seq, &MessageRecord::decode(v.value())?)))
    }
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

/// Encrypt, sign and store a message from `sender` in connection `conversation`. `text`
/// must have passed [`clean_text`]. `None` when `sender` has no accepted connection by
/// that id.
pub fn send(
    store: &Store,
    conversation: &Id,
    sender: &Id,
    data_key: &SecretKey,
    text: &str,
    now: UnixTime,
) -> Result<Option<Sent>, StoreError> {
    let Some(side) = connections::side_of(store, conversation, sender)? else {
        return Ok(None);
    };
    if !side.record.is_accepted() {
        return Ok(None);
    }
    let secrets =
        keys::open_side(store, conversation, sender, data_key)?.ok_or_else(side_secrets_missing)?;
    let crypto = |e: crate::crypto::CryptoError| StoreError::Encode(format!("message: {e}"));
    let id: Id = random_bytes();
    let ciphertext = secrets.chat_key.seal(text.as_bytes()).map_err(crypto)?;
    // The signed bytes are the server's own: a header it built and a ciphertext it made.
    let signature = secrets
        .signing_key()
        .map_err(crypto)?
        .sign(&signed_bytes(conversation, sender, &id, now, &ciphertext))
        .map_err(crypto)?;
    let record = MessageRecord {
        id,
        sender: *sender,
        sent_at: now,
        ciphertext,
        signature,
    };
    let encoded = record.encode()?;
    let txn = store.write()?;
    let seq = {
        // Still there? (Removed or blocked while we were signing.)
        let Some(current) = connections::side_in(&txn, conversation, sender)? else {
            return Ok(None);
        };
        if !current.is_accepted() {
            return Ok(None);
        }
        let mut last = txn.open_table(CONVERSATION_TO_LAST_SEQ)?;
        let seq = last
            .get(conversation)?
            .map_or(1, |g| g.value().saturating_add(1));
        last.insert(conversation, seq)?;
        txn.open_table(MESSAGES)?
            .insert((*conversation, seq), encoded.as_slice())?;
        txn.open_table(UNDELIVERED)?
            .insert((side.other, *conversation, seq), ())?;
        seq
    };
    txn.commit()?;
    Ok(Some(Sent {
        seq,
        id,
        sent_at: now,
        recipient: side.other,
    }))
}

/// Mark `member`'s messages in `conversation` up to `upto` (inclusive) as delivered.
/// Not durable on its own: losing it in a crash only shows a message again.
pub fn mark_delivered(
    store: &Store,
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
    let txn = store.write()?;
    txn.open_table(UNDELIVERED)?.retain_in(
        (*member, *conversation, 0)..=(*member, *conversation, upto),
        |_, _| false,
    )?;
    txn.commit()?;
    Ok(())
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
    pub peer_name: String,
    pub message: Shown,
}

crate::connections::debug_without_names!(Polled);

/// Up to `limit` undelivered messages for `member` (oldest conversation rows first), now
/// marked delivered; and whether more are waiting.
pub fn poll(
    store: &Store,
    member: &Id,
    data_key: &SecretKey,
    limit: usize,
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
    let mut current: Option<Conversation> = None;
    for (conv, seq) in wanted {
        if current.as_ref().is_none_or(|c| c.id != conv) {
            current = open(store, &conv, member, data_key)?;
        }
        delivered.push((conv, seq));
        let Some(c) = &current else {
            continue;
        };
        if let Some(message) = c.message(store, seq)? {
            out.push(Polled {
                conversation: conv,
                peer_name: c.peer_name.clone(),
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

/// Delete a conversation's messages and its undelivered marks for `members`, inside the
/// caller's transaction.
pub fn delete_conversation_in(
    txn: &WriteTransaction,
    conversation: &Id,
    members: &[Id],
) -> Result<(), StoreError> {
    txn.open_table(MESSAGES)?
        .retain_in((*conversation, 0)..=(*conversation, u64::MAX), |_, _| false)?;
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
    fn signed_bytes_bind_every_header_field() {
        let base = signed_bytes(&[1; 16], &[2; 16], &[3; 16], 4, "ct");
        assert_ne!(base, signed_bytes(&[9; 16], &[2; 16], &[3; 16], 4, "ct"));
        assert_ne!(base, signed_bytes(&[1; 16], &[9; 16], &[3; 16], 4, "ct"));
        assert_ne!(base, signed_bytes(&[1; 16], &[2; 16], &[9; 16], 4, "ct"));
        assert_ne!(base, signed_bytes(&[1; 16], &[2; 16], &[3; 16], 5, "ct"));
        assert_ne!(base, signed_bytes(&[1; 16], &[2; 16], &[3; 16], 4, "cu"));
    }
}
