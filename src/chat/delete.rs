//! Deleting a message for everyone: its sender takes it back.
//!
//! The deletion is the one a self-destruct deadline makes (see [`super::expire_due`]):
//! the message row, its deadline row and every undelivered mark go in one durable
//! transaction, and the members' open live streams are told (`Event::Expired`), so that
//! they append the stylesheet that hides it. Nothing stands in its place: others see the
//! message no more, as if it had never been sent (the sequence number stays unused).
//!
//! Only the sender may delete, and only a message in a conversation they are in now; for
//! anyone else, and for a number or id that names nothing, the answer is "not found".

use redb::{ReadableTable, WriteTransaction};

use super::MessageRecord;
use crate::connections;
use crate::store::tables::{MESSAGE_DEADLINES, MESSAGES, UNDELIVERED};
use crate::store::{Id, Record, Store, StoreError};

/// Delete message `seq` of `conversation` inside the caller's transaction, if it is there
/// and `allowed` accepts it: with its deadline row and the undelivered marks of
/// `members`. Returns whether it was deleted.
pub fn remove_message_in(
    txn: &WriteTransaction,
    conversation: &Id,
    seq: u64,
    members: &[Id],
    allowed: impl FnOnce(&MessageRecord) -> bool,
) -> Result<bool, StoreError> {
    let mut messages = txn.open_table(MESSAGES)?;
    let record = match messages.get((*conversation, seq))? {
        Some(bytes) => MessageRecord::decode(bytes.value())?,
        None => return Ok(false),
    };
    if !allowed(&record) {
        return Ok(false);
    }
    messages.remove((*conversation, seq))?;
    if let Some(deadline) = record.expires_at {
        txn.open_table(MESSAGE_DEADLINES)?
            .remove((deadline, *conversation, seq))?;
    }
    let mut undelivered = txn.open_table(UNDELIVERED)?;
    for m in members {
        undelivered.remove((*m, *conversation, seq))?;
    }
    Ok(true)
}

/// Whether `record` is the message `id` sent by `sender`.
pub fn sent_by(record: &MessageRecord, sender: &Id, id: &Id) -> bool {
    &record.sender == sender && &record.id == id
}

/// `sender` deletes their message `seq` (whose id is `id`) of one-to-one conversation
/// `conversation`, an accepted connection they are a side of. Returns both sides (to
/// tell their open streams), or `None` when there is no such message of theirs there.
pub fn delete_own(
    store: &Store,
    conversation: &Id,
    sender: &Id,
    seq: u64,
    id: &Id,
) -> Result<Option<Vec<Id>>, StoreError> {
    let txn = store.write()?;
    let members = match connections::side_in(&txn, conversation, sender)? {
        Some(record) if record.is_accepted() => vec![record.requester, record.receiver],
        _ => return Ok(None),
    };
    if remove_message_in(&txn, conversation, seq, &members, |r| {
        sent_by(r, sender, id)
    })? {
        txn.commit()?;
        Ok(Some(members))
    } else {
        txn.abort()?;
        Ok(None)
    }
}
