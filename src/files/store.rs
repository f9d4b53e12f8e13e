//! The file tables: writing an upload batch by batch, finishing or discarding it, access
//! checks, listings, grants, deletion (by the owner, with the account, at expiry) and the
//! sweep. Every function blocks; handlers call them through `Store::run`.

use redb::{ReadableTable, ReadableTableMetadata, WriteTransaction};

use super::{FileGrantRecord, FileRecord, LiveUploads};
use crate::clock::UnixTime;
use crate::store::cascade::Removal;
use crate::store::tables::{
    FILE_CHUNKS, FILE_GRANTS, FILES, GRANTEE_TO_FILES, OWNER_TO_FILES, USERS,
};
use crate::store::{Id, Record, Store, StoreError, UserRecord};

const ID_MIN: Id = [0u8; 16];
const ID_MAX: Id = [0xffu8; 16];

/// Why a batch of an upload was not written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchRefusal {
    /// The member's files would take more than their quota.
    Quota { used: u64, quota: u64 },
    /// The upload's record is gone (the account was deleted, or the sweeper took it).
    Gone,
}

/// One batch of an upload: sealed chunks, written in their own transaction.
///
/// The tokens are handed over ready-made, so this is also where tokens sealed elsewhere
/// (by the member's browser, one day) would be stored; the stamps they carry are then
/// theirs to get right, and downloads check them.
pub struct Batch {
    pub file_id: Id,
    pub owner: Id,
    /// Present on the first batch only: creates the incomplete record.
    pub new_record: Option<FileRecord>,
    /// Index of the first token in this batch.
    pub first_index: u32,
    /// One Fernet token per chunk, in order, without the `\n` of the blob.
    pub tokens: Vec<Vec<u8>>,
    /// Plaintext bytes the tokens hold (counted against the quota).
    pub plain_bytes: u64,
    /// On the last batch: mark the file complete, expiring then, in the same transaction.
    pub finish: Option<UnixTime>,
    pub quota: u64,
}

/// Bytes used by a member's files (incomplete uploads included).
fn usage_in(txn: &WriteTransaction, owner: &Id) -> Result<u64, StoreError> {
    let index = txn.open_table(OWNER_TO_FILES)?;
    let files = txn.open_table(FILES)?;
    let mut used = 0u64;
    for row in index.range((*owner, ID_MIN)..=(*owner, ID_MAX))? {
        let (k, _) = row?;
        let (_, file_id) = k.value();
        if let Some(bytes) = files.get(file_id)? {
            used = used.saturating_add(FileRecord::decode(bytes.value())?.size);
        }
    }
    Ok(used)
}

/// Bytes used by a member's files.
pub fn usage(store: &Store, owner: &Id) -> Result<u64, StoreError> {
    let txn = store.read()?;
    let index = txn.open_table(OWNER_TO_FILES)?;
    let files = txn.open_table(FILES)?;
    let mut used = 0u64;
    for row in index.range((*owner, ID_MIN)..=(*owner, ID_MAX))? {
        let (k, _) = row?;
        let (_, file_id) = k.value();
        if let Some(bytes) = files.get(file_id)? {
            used = used.saturating_add(FileRecord::decode(bytes.value())?.size);
        }
    }
    Ok(used)
}

/// Write one batch in its own transaction, under the incomplete record; the last batch
/// also marks the file complete. If the process dies before that, the sweeper removes
/// these rows at start-up.
///
/// Each batch commits durably: redb keeps the pages of non-durable commits in memory
/// until the next durable one, which made a 200 MiB upload cost 225 MiB of RAM; with an
/// fsync per batch it costs a few MiB.
pub fn write_batch(store: &Store, batch: Batch) -> Result<Result<(), BatchRefusal>, StoreError> {
    let txn = store.write()?;
    let mut record = match batch.new_record {
        Some(r) => {
            txn.open_table(OWNER_TO_FILES)?
                .insert((batch.owner, batch.file_id), ())?;
            r
        }
        None => {
            let existing = txn
                .open_table(FILES)?
                .get(batch.file_id)?
                .map(|b| FileRecord::decode(b.value()))
                .transpose()?;
            match existing {
                Some(r) if !r.complete && r.owner == batch.owner => r,
                _ => return Ok(Err(BatchRefusal::Gone)),
            }
        }
    };
    // The account may have been deleted since the upload started.
    if txn.open_table(USERS)?.get(batch.owner)?.is_none() {
        return Ok(Err(BatchRefusal::Gone));
    }
    let used = usage_in(&txn, &batch.owner)?;
    if used.saturating_add(batch.plain_bytes) > batch.quota {
        return Ok(Err(BatchRefusal::Quota {
            used,
            quota: batch.quota,
        }));
    }
    {
        let mut chunks = txn.open_table(FILE_CHUNKS)?;
        let mut index = batch.first_index;
        // Each token is let go of once redb has its copy.
        for token in batch.tokens {
            chunks.insert((batch.file_id, index), token.as_slice())?;
            record.blob_bytes = record.blob_bytes.saturating_add(token.len() as u64 + 1);
            index = index.saturating_add(1);
        }
        record.chunks = index;
    }
    record.size = record.size.saturating_add(batch.plain_bytes);
    if let Some(expires_at) = batch.finish {
        record.complete = true;
        record.expires_at = expires_at;
    }
    txn.open_table(FILES)?
        .insert(batch.file_id, record.encode()?.as_slice())?;
    txn.commit()?;
    Ok(Ok(()))
}

/// Delete a file and everything of it (record, every chunk, owner index, grants) inside a
/// caller's transaction. Returns whether it existed.
pub fn delete_file_in(txn: &WriteTransaction, file_id: &Id) -> Result<bool, StoreError> {
    let record = {
        let mut files = txn.open_table(FILES)?;
        let Some(bytes) = files.remove(file_id)? else {
            return Ok(false);
        };
        FileRecord::decode(bytes.value())?
    };
    txn.open_table(OWNER_TO_FILES)?
        .remove((record.owner, *file_id))?;
    txn.open_table(FILE_CHUNKS)?
        .retain_in((*file_id, 0u32)..=(*file_id, u32::MAX), |_, _| false)?;
    let mut grants = txn.open_table(FILE_GRANTS)?;
    let mut grantees = Vec::new();
    for row in grants.range((*file_id, ID_MIN)..=(*file_id, ID_MAX))? {
        let (k, _) = row?;
        grantees.push(k.value().1);
    }
    grants.retain_in((*file_id, ID_MIN)..=(*file_id, ID_MAX), |_, _| false)?;
    let mut by_grantee = txn.open_table(GRANTEE_TO_FILES)?;
    for grantee in grantees {
        by_grantee.remove((grantee, *file_id))?;
    }
    Ok(true)
}

/// Delete a file now (durably). Returns whether it existed.
pub fn delete_file(store: &Store, file_id: &Id) -> Result<bool, StoreError> {
    let txn = store.write()?;
    let existed = delete_file_in(&txn, file_id)?;
    txn.commit()?;
    Ok(existed)
}

/// Delete an upload that failed, unless it completed meanwhile.
pub fn discard_upload(store: &Store, file_id: &Id) -> Result<(), StoreError> {
    let txn = store.write()?;
    let incomplete = txn
        .open_table(FILES)?
        .get(file_id)?
        .map(|b| FileRecord::decode(b.value()))
        .transpose()?
        .is_some_and(|r| !r.complete);
    if incomplete {
        delete_file_in(&txn, file_id)?;
    }
    txn.commit()?;
    Ok(())
}

/// Account deletion (registered in the member deletion cascade): every file the member
/// owns goes, with its chunks and grants; with `Removal::Full` also every grant they
/// received. A decoy keeps the grants others gave it, as a member who does not answer
/// would (the names in them are sealed to a delivery key whose private half is gone).
pub fn erase_member_in(
    txn: &WriteTransaction,
    member: &Id,
    removal: Removal,
) -> Result<(), StoreError> {
    let mut owned = Vec::new();
    for row in txn
        .open_table(OWNER_TO_FILES)?
        .range((*member, ID_MIN)..=(*member, ID_MAX))?
    {
        owned.push(row?.0.value().1);
    }
    for file_id in owned {
        delete_file_in(txn, &file_id)?;
    }
    if removal == Removal::Decoy {
        return Ok(());
    }
    let mut received = Vec::new();
    {
        let mut by_grantee = txn.open_table(GRANTEE_TO_FILES)?;
        for row in by_grantee.range((*member, ID_MIN)..=(*member, ID_MAX))? {
            received.push(row?.0.value().1);
        }
        by_grantee.retain_in((*member, ID_MIN)..=(*member, ID_MAX), |_, _| false)?;
    }
    let mut grants = txn.open_table(FILE_GRANTS)?;
    for file_id in received {
        grants.remove((file_id, *member))?;
    }
    Ok(())
}

/// Remove every grant between two members, both ways (inside a block's transaction):
/// the files of either one stop being shared with the other.
pub fn revoke_between_in(txn: &WriteTransaction, a: &Id, b: &Id) -> Result<(), StoreError> {
    for (grantee, owner) in [(a, b), (b, a)] {
        let mut shared = Vec::new();
        {
            let by_grantee = txn.open_table(GRANTEE_TO_FILES)?;
            let files = txn.open_table(FILES)?;
            for row in by_grantee.range((*grantee, ID_MIN)..=(*grantee, ID_MAX))? {
                let file_id = row?.0.value().1;
                let theirs = files
                    .get(&file_id)?
                    .map(|b| FileRecord::decode(b.value()))
                    .transpose()?
                    .is_some_and(|f| &f.owner == owner);
                if theirs {
                    shared.push(file_id);
                }
            }
        }
        let mut grants = txn.open_table(FILE_GRANTS)?;
        let mut by_grantee = txn.open_table(GRANTEE_TO_FILES)?;
        for file_id in shared {
            grants.remove((file_id, *grantee))?;
            by_grantee.remove((*grantee, file_id))?;
        }
    }
    Ok(())
}

/// What one sweep of the files removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FileSweep {
    /// Complete files past their expiry.
    pub expired: usize,
    /// Incomplete uploads that no running upload owns (a crash, a lost clean-up).
    pub abandoned: usize,
}

/// Delete expired files and abandoned uploads.
pub fn sweep(store: &Store, now: UnixTime, live: &LiveUploads) -> Result<FileSweep, StoreError> {
    let mut doomed = Vec::new();
    {
        let txn = store.read()?;
        let files = txn.open_table(FILES)?;
        let mut undecodable = 0usize;
        for row in files.iter()? {
            let (k, v) = row?;
            // One damaged record must not stop every other expired file from going.
            let Ok(record) = FileRecord::decode(v.value()) else {
                undecodable += 1;
                continue;
            };
            let id = k.value();
            if record.complete && record.expires_at <= now {
                doomed.push((id, true));
            } else if !record.complete && !live.contains(&id) {
                doomed.push((id, false));
            }
        }
        if undecodable > 0 {
            tracing::error!(
                count = undecodable,
                "file records that do not decode were skipped"
            );
        }
    }
    let mut report = FileSweep::default();
    if doomed.is_empty() {
        return Ok(report);
    }
    let txn = store.write()?;
    for (id, expired) in doomed {
        // Re-check inside the write transaction.
        let fresh = txn
            .open_table(FILES)?
            .get(id)?
            .and_then(|b| FileRecord::decode(b.value()).ok());
        let still = match fresh {
            Some(r) if expired => r.complete && r.expires_at <= now,
            Some(r) => !r.complete && !live.contains(&id),
            None => false,
        };
        if still && delete_file_in(&txn, &id)? {
            if expired {
                report.expired += 1;
            } else {
                report.abandoned += 1;
            }
        }
    }
    txn.commit()?;
    Ok(report)
}

/// How a viewer may reach a file.
pub enum Access {
    Owner,
    Grantee(FileGrantRecord),
}

/// A file the viewer may see.
pub struct Visible {
    pub id: Id,
    pub record: FileRecord,
    pub access: Access,
}

/// The file `file_id` if `viewer` owns it or is on its access list, it is complete and it
/// has not expired. Everything else is `None`, alike.
pub fn visible_to(
    store: &Store,
    file_id: &Id,
    viewer: &Id,
    now: UnixTime,
) -> Result<Option<Visible>, StoreError> {
    visible_in(&store.read()?, file_id, viewer, now)
}

fn visible_in(
    txn: &redb::ReadTransaction,
    file_id: &Id,
    viewer: &Id,
    now: UnixTime,
) -> Result<Option<Visible>, StoreError> {
    let Some(record) = txn
        .open_table(FILES)?
        .get(file_id)?
        .map(|b| FileRecord::decode(b.value()))
        .transpose()?
    else {
        return Ok(None);
    };
    if !record.complete || record.expires_at <= now {
        return Ok(None);
    }
    let access = if &record.owner == viewer {
        Access::Owner
    } else {
        match txn.open_table(FILE_GRANTS)?.get((*file_id, *viewer))? {
            Some(b) => Access::Grantee(FileGrantRecord::decode(b.value())?),
            None => return Ok(None),
        }
    };
    Ok(Some(Visible {
        id: *file_id,
        record,
        access,
    }))
}

/// A member's name by id (None once deleted).
pub fn username_of(store: &Store, id: &Id) -> Result<Option<String>, StoreError> {
    Ok(crate::accounts::load_user(store, id)?.map(|u| u.username))
}

/// One of a member's own files, with who may read it.
pub struct OwnedFile {
    pub id: Id,
    pub record: FileRecord,
    /// (grantee id, grantee username), by name.
    pub grantees: Vec<(Id, String)>,
}

fn grantees_in(txn: &redb::ReadTransaction, file_id: &Id) -> Result<Vec<(Id, String)>, StoreError> {
    let grants = txn.open_table(FILE_GRANTS)?;
    let users = txn.open_table(USERS)?;
    let mut out = Vec::new();
    for row in grants.range((*file_id, ID_MIN)..=(*file_id, ID_MAX))? {
        let (k, _) = row?;
        let grantee = k.value().1;
        if let Some(u) = users.get(grantee)? {
            out.push((grantee, UserRecord::decode(u.value())?.username));
        }
    }
    out.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(out)
}

/// Who may read a file (owner's view).
pub fn grantees(store: &Store, file_id: &Id) -> Result<Vec<(Id, String)>, StoreError> {
    grantees_in(&store.read()?, file_id)
}

/// A member's complete, unexpired files.
pub fn list_owned(store: &Store, owner: &Id, now: UnixTime) -> Result<Vec<OwnedFile>, StoreError> {
    let txn = store.read()?;
    let index = txn.open_table(OWNER_TO_FILES)?;
    let files = txn.open_table(FILES)?;
    let mut out = Vec::new();
    for row in index.range((*owner, ID_MIN)..=(*owner, ID_MAX))? {
        let (k, _) = row?;
        let id = k.value().1;
        let Some(bytes) = files.get(id)? else {
            continue;
        };
        let record = FileRecord::decode(bytes.value())?;
        if record.complete && record.expires_at > now {
            let grantees = grantees_in(&txn, &id)?;
            out.push(OwnedFile {
                id,
                record,
                grantees,
            });
        }
    }
    Ok(out)
}

/// A file shared with a member.
pub struct SharedFile {
    pub id: Id,
    pub record: FileRecord,
    pub grant: FileGrantRecord,
    pub owner_name: String,
}

/// Complete, unexpired files shared with `grantee`, optionally only those of one owner.
pub fn list_shared_with(
    store: &Store,
    grantee: &Id,
    only_owner: Option<&Id>,
    now: UnixTime,
) -> Result<Vec<SharedFile>, StoreError> {
    let txn = store.read()?;
    let index = txn.open_table(GRANTEE_TO_FILES)?;
    let files = txn.open_table(FILES)?;
    let grants = txn.open_table(FILE_GRANTS)?;
    let users = txn.open_table(USERS)?;
    let mut out = Vec::new();
    for row in index.range((*grantee, ID_MIN)..=(*grantee, ID_MAX))? {
        let (k, _) = row?;
        let id = k.value().1;
        let Some(bytes) = files.get(id)? else {
            continue;
        };
        let record = FileRecord::decode(bytes.value())?;
        if !record.complete || record.expires_at <= now {
            continue;
        }
        if only_owner.is_some_and(|o| o != &record.owner) {
            continue;
        }
        let Some(grant) = grants.get((id, *grantee))? else {
            continue;
        };
        let grant = FileGrantRecord::decode(grant.value())?;
        let Some(owner) = users.get(record.owner)? else {
            continue;
        };
        let owner_name = UserRecord::decode(owner.value())?.username;
        out.push(SharedFile {
            id,
            record,
            grant,
            owner_name,
        });
    }
    Ok(out)
}

/// What sharing did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantOutcome {
    Added,
    AlreadyListed,
    /// The file is gone or no longer the owner's.
    Gone,
    /// The grantee is gone, or hidden from the owner by a denial or a block.
    NoSuchMember,
}

/// Add `grantee` to the access list of the owner's file.
pub fn grant(
    store: &Store,
    file_id: &Id,
    owner: &Id,
    grantee: &Id,
    record: &FileGrantRecord,
    now: UnixTime,
) -> Result<GrantOutcome, StoreError> {
    let txn = store.write()?;
    {
        let file = txn
            .open_table(FILES)?
            .get(file_id)?
            .map(|b| FileRecord::decode(b.value()))
            .transpose()?;
        if !file.is_some_and(|f| f.complete && &f.owner == owner && f.expires_at > now) {
            return Ok(GrantOutcome::Gone);
        }
        // Checked again here, in the transaction that writes the grant, so that a block
        // committed since the handler looked cannot be undone by this grant.
        if txn.open_table(USERS)?.get(grantee)?.is_none()
            || crate::connections::hidden_in(&txn, owner, grantee)?
        {
            return Ok(GrantOutcome::NoSuchMember);
        }
        let mut grants = txn.open_table(FILE_GRANTS)?;
        if grants.get((*file_id, *grantee))?.is_some() {
            return Ok(GrantOutcome::AlreadyListed);
        }
        grants.insert((*file_id, *grantee), record.encode()?.as_slice())?;
        txn.open_table(GRANTEE_TO_FILES)?
            .insert((*grantee, *file_id), ())?;
    }
    txn.commit()?;
    Ok(GrantOutcome::Added)
}

/// Remove `grantee` from the access list of the owner's file. Returns whether they were
/// on it.
pub fn revoke(store: &Store, file_id: &Id, owner: &Id, grantee: &Id) -> Result<bool, StoreError> {
    let txn = store.write()?;
    let removed = {
        let owned = txn
            .open_table(FILES)?
            .get(file_id)?
            .map(|b| FileRecord::decode(b.value()))
            .transpose()?
            .is_some_and(|f| &f.owner == owner);
        if !owned {
            return Ok(false);
        }
        let removed = txn
            .open_table(FILE_GRANTS)?
            .remove((*file_id, *grantee))?
            .is_some();
        txn.open_table(GRANTEE_TO_FILES)?
            .remove((*grantee, *file_id))?;
        removed
    };
    txn.commit()?;
    Ok(removed)
}

/// Delete the owner's file. Returns false when it is not theirs (or gone).
pub fn delete_owned(store: &Store, file_id: &Id, owner: &Id) -> Result<bool, StoreError> {
    let txn = store.write()?;
    let owned = txn
        .open_table(FILES)?
        .get(file_id)?
        .map(|b| FileRecord::decode(b.value()))
        .transpose()?
        .is_some_and(|f| &f.owner == owner);
    if !owned {
        return Ok(false);
    }
    let existed = delete_file_in(&txn, file_id)?;
    txn.commit()?;
    Ok(existed)
}

/// Apply `f` to stored token `index` of a file, in a read transaction of its own that
/// ends when `f` returns: a download holds a snapshot (which keeps the pages freed since
/// from being reused, deleted files' included) only while it reads one chunk, never for
/// as long as a slow client takes. `None` when the chunk is not there (the file was
/// deleted meanwhile).
pub fn with_token<R>(
    store: &Store,
    file_id: &Id,
    index: u32,
    f: impl FnOnce(&[u8]) -> R,
) -> Result<Option<R>, StoreError> {
    let txn = store.read()?;
    let table = txn.open_table(FILE_CHUNKS)?;
    let found = table.get((*file_id, index))?;
    Ok(found.map(|v| f(v.value())))
}

/// Row counts of every file table (tests and status).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RowCounts {
    pub files: u64,
    pub chunks: u64,
    pub owner_index: u64,
    pub grants: u64,
    pub grantee_index: u64,
}

impl RowCounts {
    /// Whether every file table is empty.
    pub fn is_empty(&self) -> bool {
        *self == RowCounts::default()
    }
}

/// Count the rows of every file table.
pub fn count_rows(store: &Store) -> Result<RowCounts, StoreError> {
    let txn = store.read()?;
    Ok(RowCounts {
        files: txn.open_table(FILES)?.len()?,
        chunks: txn.open_table(FILE_CHUNKS)?.len()?,
        owner_index: txn.open_table(OWNER_TO_FILES)?.len()?,
        grants: txn.open_table(FILE_GRANTS)?.len()?,
        grantee_index: txn.open_table(GRANTEE_TO_FILES)?.len()?,
    })
}
