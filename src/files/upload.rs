//! Writing an upload while it streams in.
//!
//! The chunk being received collects in a [`Sealable`], the buffer it is encrypted in,
//! which grows with what arrives (a client that trickles holds a buffer the size of what
//! it sent, not a chunk). A full chunk goes to the blocking pool to be sealed into its
//! token, up to [`SEALING`] at once so that both cores encrypt while the network is read;
//! the tokens sealed meanwhile are written in one transaction as soon as the previous one
//! is committed, at most [`BATCH_CHUNKS`] at a time. So an upload holds at most one chunk
//! being received, `SEALING` being sealed, a batch of tokens waiting and a batch being
//! written, whatever the file's size. The record
//! stays *incomplete* (invisible, and not kept by the sweeper) until the last batch, which
//! marks it complete in its own transaction.
//!
//! Every way an upload can end without `finish` deletes its rows: [`UploadWriter::abandon`]
//! on refusals (size limit, quota, bad expiry, too slow), and `Drop` when the request
//! future itself is dropped (the client went away, a panic). The sweeper removes anything
//! a crash left.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::task::JoinHandle;

use super::store::{self as files_store, Batch, BatchRefusal};
use super::{BATCH_CHUNKS, CHUNK_BYTES, FileMeta, FileRecord, MAX_EXPIRY_DAYS};
use crate::app::AppState;
use crate::clock::UnixTime;
use crate::crypto::fernet_buf::Sealable;
use crate::crypto::{CryptoError, SecretKey, random_bytes};
use crate::store::{Id, StoreError};

/// Chunks sealed at once per upload (one per core of the machine this was tuned on; more
/// only holds more memory).
pub const SEALING: usize = 2;

/// Why an upload stopped.
#[derive(Debug)]
pub enum UploadFailure {
    /// More than `files.max_upload_bytes`.
    TooLarge,
    /// The member's files would exceed `files.quota_bytes_per_member`.
    Quota { used: u64, quota: u64 },
    /// The account was deleted while uploading.
    Gone,
    /// Storage or sealing failed (logged with a request id).
    Store(String),
}

impl From<StoreError> for UploadFailure {
    fn from(e: StoreError) -> Self {
        UploadFailure::Store(e.to_string())
    }
}

type BatchJob = JoinHandle<Result<Result<(), BatchRefusal>, StoreError>>;
/// A chunk being sealed: its token, and the plaintext bytes it holds.
type SealJob = JoinHandle<(Result<Vec<u8>, CryptoError>, u64)>;

/// One upload in progress. See the module documentation.
pub struct UploadWriter {
    state: Arc<AppState>,
    file_id: Id,
    owner: Id,
    /// The key the server seals with; `None` for an upload the member's browser encrypted
    /// (it sends ready tokens, [`UploadWriter::push_token`], and the server has no key).
    key: Option<Arc<SecretKey>>,
    /// The record to create with the first batch; `None` once it is written.
    pending_record: Option<FileRecord>,
    /// The chunk being received.
    filling: Sealable,
    /// Index of the chunk in `filling`.
    filling_index: u32,
    received: u64,
    limit: u64,
    quota: u64,
    /// Chunks being sealed, oldest first.
    sealing: VecDeque<SealJob>,
    /// Tokens sealed and not yet handed to the store, in order, and their plaintext bytes.
    sealed: Vec<Vec<u8>>,
    sealed_plain: u64,
    /// Index of the first token in `sealed`.
    sealed_index: u32,
    writing: Option<BatchJob>,
    /// Whether any batch was handed to the store (so there may be rows to delete).
    wrote: bool,
    done: bool,
}

impl std::fmt::Debug for UploadWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UploadWriter")
            .field("received", &self.received)
            .finish_non_exhaustive()
    }
}

impl UploadWriter {
    /// Start an upload for `owner`, encrypted with `key` (one the member entered) or a
    /// fresh random key. Nothing is stored until the first batch is sealed (or the upload
    /// finishes), and nothing is allocated for the file's bytes before they arrive.
    pub fn new(
        state: Arc<AppState>,
        owner: Id,
        data_key: &SecretKey,
        meta: &FileMeta,
        now: UnixTime,
        key: Option<SecretKey>,
    ) -> Result<Self, UploadFailure> {
        let key = Arc::new(key.unwrap_or_else(SecretKey::generate));
        Self::start(state, owner, data_key, meta, now, Some(key))
    }

    /// Start an upload whose tokens the member's browser made (`files::sealed` checked
    /// their form): the server stores them as they come and never holds a key.
    pub fn for_browser_tokens(
        state: Arc<AppState>,
        owner: Id,
        data_key: &SecretKey,
        meta: &FileMeta,
        now: UnixTime,
    ) -> Result<Self, UploadFailure> {
        Self::start(state, owner, data_key, meta, now, None)
    }

    fn start(
        state: Arc<AppState>,
        owner: Id,
        data_key: &SecretKey,
        meta: &FileMeta,
        now: UnixTime,
        key: Option<Arc<SecretKey>>,
    ) -> Result<Self, UploadFailure> {
        let file_id: Id = random_bytes();
        let record = FileRecord {
            owner,
            meta_sealed: meta.seal(data_key)?,
            size: 0,
            chunks: 0,
            blob_bytes: 0,
            // Provisional: the final expiry is set by `finish`. An incomplete record is
            // never shown and never outlives its upload.
            expires_at: super::expires_at(now, MAX_EXPIRY_DAYS),
            complete: false,
        };
        let limit = state.config.files.max_upload_bytes;
        let quota = state.config.files.quota_bytes_per_member;
        state.uploads.begin(file_id);
        Ok(Self {
            state,
            file_id,
            owner,
            key,
            pending_record: Some(record),
            filling: Sealable::new(CHUNK_BYTES),
            filling_index: 0,
            received: 0,
            limit,
            quota,
            sealing: VecDeque::with_capacity(SEALING + 1),
            sealed: Vec::new(),
            sealed_plain: 0,
            sealed_index: 0,
            writing: None,
            wrote: false,
            done: false,
        })
    }

    /// The file's id.
    pub fn id(&self) -> Id {
        self.file_id
    }

    /// Plaintext bytes received so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Take more plaintext.
    pub async fn push(&mut self, mut bytes: &[u8]) -> Result<(), UploadFailure> {
        let new_total = self.received.saturating_add(bytes.len() as u64);
        if new_total > self.limit {
            return Err(UploadFailure::TooLarge);
        }
        self.received = new_total;
        while !bytes.is_empty() {
            // A full chunk goes only once more bytes follow it, so that the chunk that
            // ends the file is always sealed by `finish`, which marks it as the last.
            if self.filling.room() == 0 {
                self.hand_over(false).await?;
            }
            let taken = self.filling.extend(bytes);
            bytes = bytes.get(taken..).unwrap_or_default();
        }
        Ok(())
    }

    /// Take one token the member's browser sealed, holding `plain` bytes of plaintext
    /// (`files::sealed` checked its form and place). Written like the server's own.
    pub async fn push_token(&mut self, token: Vec<u8>, plain: u64) -> Result<(), UploadFailure> {
        let new_total = self.received.saturating_add(plain);
        if new_total > self.limit {
            return Err(UploadFailure::TooLarge);
        }
        self.received = new_total;
        self.sealed.push(token);
        self.sealed_plain = self.sealed_plain.saturating_add(plain);
        let store_free = self.writing.as_ref().is_none_or(JoinHandle::is_finished);
        if store_free || self.sealed.len() >= BATCH_CHUNKS {
            self.submit(None).await?;
        }
        Ok(())
    }

    /// Send the chunk in `filling` to be sealed; `last` when it ends the file. Waits for
    /// the oldest chunk being sealed when `SEALING` already are.
    async fn hand_over(&mut self, last: bool) -> Result<(), UploadFailure> {
        let chunk = std::mem::replace(&mut self.filling, Sealable::new(CHUNK_BYTES));
        let stamp = super::chunk_stamp(self.filling_index, last);
        self.filling_index = self
            .filling_index
            .checked_add(1)
            .ok_or(UploadFailure::TooLarge)?;
        let key = self
            .key
            .clone()
            .ok_or_else(|| UploadFailure::Store("plaintext pushed to a browser upload".into()))?;
        self.sealing.push_back(tokio::task::spawn_blocking(move || {
            let plain = chunk.len() as u64;
            (chunk.seal(&key, stamp), plain)
        }));
        while self.sealing.len() > SEALING {
            self.collect_one().await?;
            // Whatever is sealed goes to the store as soon as the store is free (a
            // trickling upload holds little), and waits for it only at a full batch (a
            // streaming one commits a full batch at a time: the fsyncs of a commit cost
            // as much as writing megabytes).
            let store_free = self.writing.as_ref().is_none_or(JoinHandle::is_finished);
            if store_free || self.sealed.len() >= BATCH_CHUNKS {
                self.submit(None).await?;
            }
        }
        Ok(())
    }

    /// Wait for the oldest chunk being sealed and queue its token.
    async fn collect_one(&mut self) -> Result<(), UploadFailure> {
        let Some(job) = self.sealing.pop_front() else {
            return Ok(());
        };
        match job.await {
            Ok((Ok(token), plain)) => {
                self.sealed.push(token);
                self.sealed_plain = self.sealed_plain.saturating_add(plain);
                Ok(())
            }
            Ok((Err(e), _)) => Err(UploadFailure::Store(format!("sealing a chunk: {e}"))),
            Err(e) => Err(UploadFailure::Store(format!("sealing task: {e}"))),
        }
    }

    /// Wait for the batch being written, if any, and surface its refusal.
    async fn settle(&mut self) -> Result<(), UploadFailure> {
        let Some(job) = self.writing.take() else {
            return Ok(());
        };
        match job.await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(BatchRefusal::Quota { used, quota }))) => {
                Err(UploadFailure::Quota { used, quota })
            }
            Ok(Ok(Err(BatchRefusal::Gone))) => Err(UploadFailure::Gone),
            Ok(Err(e)) => Err(e.into()),
            Err(e) => Err(UploadFailure::Store(format!("upload batch task: {e}"))),
        }
    }

    /// Hand the sealed tokens to the store (after the previous batch is written), and with
    /// `finish`, mark the file complete with that expiry in the same transaction.
    async fn submit(&mut self, finish: Option<UnixTime>) -> Result<(), UploadFailure> {
        self.settle().await?;
        let tokens = std::mem::take(&mut self.sealed);
        let count = u32::try_from(tokens.len()).map_err(|_| UploadFailure::TooLarge)?;
        let batch = Batch {
            file_id: self.file_id,
            owner: self.owner,
            new_record: self.pending_record.take(),
            first_index: self.sealed_index,
            tokens,
            plain_bytes: std::mem::take(&mut self.sealed_plain),
            finish,
            quota: self.quota,
        };
        self.sealed_index = self
            .sealed_index
            .checked_add(count)
            .ok_or(UploadFailure::TooLarge)?;
        let store = self.state.store.clone();
        self.wrote = true;
        self.writing = Some(tokio::spawn(async move {
            store.run(move |s| files_store::write_batch(s, batch)).await
        }));
        Ok(())
    }

    /// Seal and write what is left, marking the file complete with its expiry.
    /// Returns the file's key, to be shown once (`None` when the browser encrypted it).
    pub async fn finish(
        mut self,
        expires_at: UnixTime,
    ) -> Result<Option<Arc<SecretKey>>, UploadFailure> {
        // `push` always leaves the file's last bytes in `filling` (an empty file: none),
        // so this chunk is the last one; an empty file is one token of empty plaintext.
        // A browser upload brought its last token already.
        let mut outcome = if self.key.is_some() {
            self.hand_over(true).await
        } else {
            Ok(())
        };
        while outcome.is_ok() && !self.sealing.is_empty() {
            outcome = self.collect_one().await;
        }
        if outcome.is_ok() {
            outcome = self.submit(Some(expires_at)).await;
        }
        if outcome.is_ok() {
            outcome = self.settle().await;
        }
        match outcome {
            Ok(()) => {
                self.done = true;
                self.state.uploads.end(&self.file_id);
                Ok(self.key.clone())
            }
            Err(e) => {
                self.abandon().await;
                Err(e)
            }
        }
    }

    /// Give up: wait for the batch being written, then delete every row of this upload,
    /// before returning (so the answer to the request is sent once nothing is left).
    pub async fn abandon(mut self) {
        self.done = true;
        // Chunks still being sealed finish on their own; their tokens are dropped.
        self.sealing.clear();
        let _ = self.settle().await;
        if self.wrote {
            let file_id = self.file_id;
            if let Err(e) = self
                .state
                .store
                .run(move |s| files_store::discard_upload(s, &file_id))
                .await
            {
                tracing::error!(error = %e, "discarding an upload failed; the sweeper will retry");
            }
        }
        self.state.uploads.end(&self.file_id);
    }
}

impl Drop for UploadWriter {
    /// The request was dropped mid-upload (client gone, panic): clean up in the
    /// background. If even that cannot run, the sweeper removes the rows.
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let state = Arc::clone(&self.state);
        let file_id = self.file_id;
        let writing = self.writing.take();
        let wrote = self.wrote;
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            state.uploads.end(&file_id);
            return;
        };
        runtime.spawn(async move {
            if let Some(job) = writing {
                let _ = job.await;
            }
            if wrote
                && let Err(e) = state
                    .store
                    .run(move |s| files_store::discard_upload(s, &file_id))
                    .await
            {
                tracing::error!(error = %e, "discarding an aborted upload failed; the sweeper will retry");
            }
            state.uploads.end(&file_id);
        });
    }
}
