//! Writing an upload while it streams in.
//!
//! Plaintext collects in a buffer of `BATCH_CHUNKS × CHUNK_BYTES`; each full buffer is
//! sealed and written by a blocking job in its own write transaction while the next buffer
//! fills, so at most two batches are in memory whatever the file's size. The record stays
//! *incomplete* (invisible, and not kept by the sweeper) until [`UploadWriter::finish`].
//!
//! Every way an upload can end without `finish` deletes its rows: [`UploadWriter::abandon`]
//! on refusals (size limit, quota, bad expiry), and `Drop` when the request future itself
//! is dropped (the client went away, a panic). The sweeper removes anything a crash left.

use std::sync::Arc;

use tokio::task::JoinHandle;
use zeroize::Zeroizing;

use super::store::{self as files_store, Batch, BatchRefusal};
use super::{BATCH_CHUNKS, CHUNK_BYTES, FileMeta, FileRecord, MAX_EXPIRY_DAYS};
use crate::app::AppState;
use crate::clock::UnixTime;
use crate::crypto::{SecretKey, random_bytes};
use crate::store::{Id, StoreError};

/// Why an upload stopped.
#[derive(Debug)]
pub enum UploadFailure {
    /// More than `files.max_upload_bytes`.
    TooLarge,
    /// The member's files would exceed `files.quota_bytes_per_member`.
    Quota { used: u64, quota: u64 },
    /// The account was deleted while uploading.
    Gone,
    /// Storage failed (logged with a request id).
    Store(String),
}

impl From<StoreError> for UploadFailure {
    fn from(e: StoreError) -> Self {
        UploadFailure::Store(e.to_string())
    }
}

type BatchJob = JoinHandle<Result<Result<(), BatchRefusal>, StoreError>>;

/// One upload in progress. See the module documentation.
pub struct UploadWriter {
    state: Arc<AppState>,
    file_id: Id,
    owner: Id,
    key: Arc<SecretKey>,
    /// The record to create with the first batch; `None` once it is written.
    pending_record: Option<FileRecord>,
    buffer: Zeroizing<Vec<u8>>,
    next_index: u32,
    received: u64,
    limit: u64,
    quota: u64,
    in_flight: Option<BatchJob>,
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

const BATCH_BYTES: usize = BATCH_CHUNKS * CHUNK_BYTES;

impl UploadWriter {
    /// Start an upload for `owner` with a fresh random key. Nothing is stored until the
    /// first batch is full (or the upload finishes).
    pub fn new(
        state: Arc<AppState>,
        owner: Id,
        data_key: &SecretKey,
        meta: &FileMeta,
        now: UnixTime,
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
            key: Arc::new(SecretKey::generate()),
            pending_record: Some(record),
            buffer: Zeroizing::new(Vec::with_capacity(BATCH_BYTES)),
            next_index: 0,
            received: 0,
            limit,
            quota,
            in_flight: None,
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
            // A full buffer goes only once more bytes follow it, so that the batch that
            // ends the file is always written by `finish`, which marks its last chunk.
            if self.buffer.len() == BATCH_BYTES {
                self.submit(false).await?;
            }
            let room = BATCH_BYTES - self.buffer.len();
            let (now, later) = bytes.split_at(room.min(bytes.len()));
            self.buffer.extend_from_slice(now);
            bytes = later;
        }
        Ok(())
    }

    /// Wait for the batch in flight, if any, and surface its refusal.
    async fn settle(&mut self) -> Result<(), UploadFailure> {
        let Some(job) = self.in_flight.take() else {
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

    /// Hand the buffer to the store (after the previous batch is written); `last` when it
    /// ends the file.
    async fn submit(&mut self, last: bool) -> Result<(), UploadFailure> {
        self.settle().await?;
        let plaintext = std::mem::replace(
            &mut self.buffer,
            Zeroizing::new(Vec::with_capacity(BATCH_BYTES)),
        );
        let chunks = plaintext.len().div_ceil(CHUNK_BYTES).max(1);
        let batch = Batch {
            file_id: self.file_id,
            owner: self.owner,
            new_record: self.pending_record.take(),
            first_index: self.next_index,
            plaintext,
            last,
            quota: self.quota,
        };
        self.next_index = self
            .next_index
            .saturating_add(u32::try_from(chunks).unwrap_or(u32::MAX));
        let key = Arc::clone(&self.key);
        let store = self.state.store.clone();
        self.wrote = true;
        self.in_flight = Some(tokio::spawn(async move {
            store
                .run(move |s| files_store::write_batch(s, &key, batch))
                .await
        }));
        Ok(())
    }

    /// Write what is left, then mark the file complete with its expiry.
    /// Returns the file's key, to be shown once.
    pub async fn finish(mut self, expires_at: UnixTime) -> Result<Arc<SecretKey>, UploadFailure> {
        // `push` always leaves the file's last bytes in the buffer (an empty file: none,
        // and nothing written yet), so this batch carries the last chunk.
        let submitted = self.submit(true).await;
        let settled = match submitted {
            Ok(()) => self.settle().await,
            Err(e) => Err(e),
        };
        if let Err(e) = settled {
            self.abandon().await;
            return Err(e);
        }
        let (file_id, owner) = (self.file_id, self.owner);
        let finished = self
            .state
            .store
            .run(move |s| files_store::finish_upload(s, &file_id, &owner, expires_at))
            .await;
        match finished {
            Ok(true) => {
                self.done = true;
                self.state.uploads.end(&self.file_id);
                Ok(Arc::clone(&self.key))
            }
            Ok(false) => {
                self.abandon().await;
                Err(UploadFailure::Gone)
            }
            Err(e) => {
                self.abandon().await;
                Err(e.into())
            }
        }
    }

    /// Give up: wait for the batch in flight, then delete every row of this upload, before
    /// returning (so the answer to the request is sent once nothing is left).
    pub async fn abandon(mut self) {
        self.done = true;
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
        let in_flight = self.in_flight.take();
        let wrote = self.wrote;
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            state.uploads.end(&file_id);
            return;
        };
        runtime.spawn(async move {
            if let Some(job) = in_flight {
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
