//! Downloads: the decrypted file (`POST /file/<id>/download` with its key) and the raw
//! blob (`GET /file/<id>/raw`, resumable with `Range`), both streamed chunk by chunk as the
//! client reads them.
//!
//! Each chunk is read in a read transaction of its own (`files::store::with_token`), so a
//! download never holds a database snapshot for longer than one chunk takes to read,
//! however slowly the client reads; a file deleted meanwhile (by its owner, at expiry,
//! with its account) ends the download at the next chunk. Up to [`READ_AHEAD`] chunks are
//! read and decrypted at once, on both cores.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{
    ACCEPT_RANGES, CONTENT_DISPOSITION, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, ETAG,
    HeaderValue,
};
use hyper::{Method, Request, Response, StatusCode};

use super::handlers::{file_page, meta_of, shown_name, visible};
use super::range::{self, Ask, Precondition};
use super::store::{self as files_store, Visible};
use super::views;
use crate::crypto::SecretKey;
use crate::store::{Id, Store, StoreError};
use crate::web::Ctx;
use crate::web::error::AppError;
use crate::web::response::{Body, full, html};
use crate::web::stream::{self, Piece};

/// Pieces queued ahead of a slow client, per download.
const DOWNLOAD_DEPTH: usize = 2;
/// Chunks read (and decrypted) at once, per download.
pub const READ_AHEAD: usize = 2;
/// How long a download waits for a client that reads nothing before giving up.
const STALLED_DOWNLOAD: Duration = Duration::from_secs(60);

/// `POST /file/<id>/download` with `key`: the original bytes, decrypted chunk by chunk as
/// the client reads them. The first chunk is decrypted before any header is sent, so a
/// wrong key gets a page saying so and not a byte of the file. A later chunk that fails to
/// verify (the blob was tampered with) aborts the response.
///
/// Not resumable: HTTP defines `Range` for `GET` only, and the key must not travel in a
/// URL (it would land in the history and the download list). The raw blob resumes.
pub async fn download(
    ctx: &mut Ctx,
    req: Request<Incoming>,
    id: Id,
) -> Result<Response<Body>, AppError> {
    let form = ctx.form(req).await?;
    let session = ctx.check_member_form(&form)?;
    let v = visible(ctx, &session, id).await?;
    let Ok(key) = SecretKey::from_base64(form.text("key")) else {
        return file_page(
            ctx,
            &session,
            &v,
            StatusCode::BAD_REQUEST,
            Some("That is not a key. A key is 44 characters of letters, digits, - and _, ending in =."),
            None,
        )
        .await;
    };
    let key = Arc::new(key);
    let chunks = v.record.chunks;
    let first = {
        let key = Arc::clone(&key);
        ctx.state
            .store
            .run(move |s| {
                files_store::with_token(s, &id, 0, |token| {
                    super::open_chunk_at(&key, token, 0, chunks)
                })
            })
            .await?
    };
    let first = match first {
        Some(Ok(first)) => first,
        Some(Err(super::ChunkError::Key)) => {
            return file_page(
                ctx,
                &session,
                &v,
                StatusCode::FORBIDDEN,
                Some("This key does not open this file. Check that you pasted the whole key, and that it is the key of this file."),
                None,
            )
            .await;
        }
        Some(Err(super::ChunkError::Place)) => {
            return Err(AppError::Internal(
                "the first chunk of a file is out of place".into(),
            ));
        }
        // Deleted since it was looked up.
        None => return Err(AppError::NotFound),
    };
    let meta = meta_of(ctx, &session, &v).await?;
    let name = shown_name(meta.as_ref());
    let size = v.record.size;
    let (tx, body) = stream::channel(DOWNLOAD_DEPTH, Some(size));
    let store = ctx.state.store.clone();
    tokio::spawn(async move {
        if tx.send(Ok(Bytes::from_owner(first))).await.is_err() {
            return;
        }
        let rest = Span {
            chunks: 1..chunks,
            skip: 0,
            bytes: u64::MAX,
        };
        produce(store, id, rest, tx, move |index, token| {
            super::open_chunk_at(&key, token, index, chunks)
                .map(Bytes::from_owner)
                .map_err(|e| match e {
                    super::ChunkError::Key => "a chunk did not verify",
                    super::ChunkError::Place => "a chunk is out of place",
                })
        })
        .await;
    });
    let mut r = attachment(body, &name, size);
    r.headers_mut()
        .insert(ACCEPT_RANGES, HeaderValue::from_static("none"));
    Ok(r)
}

/// Where the tokens lie in the blob: every line (a token and its `\n`) but the last is
/// `line` bytes long, since every chunk but the last is full.
#[derive(Debug, Clone, Copy)]
struct Layout {
    chunks: u32,
    line: u64,
}

impl Layout {
    /// The layout of a file whose first token is `first_token` bytes long, if the record
    /// agrees with it (otherwise ranges are not offered for it).
    fn of(v: &Visible, first_token: usize) -> Option<Self> {
        let chunks = v.record.chunks;
        let blob = v.record.blob_bytes;
        let line = first_token as u64 + 1;
        if chunks == 0 {
            return None;
        }
        let before_last = u64::from(chunks - 1).checked_mul(line)?;
        let last = blob.checked_sub(before_last)?;
        (last > 0 && last <= line).then_some(Self { chunks, line })
    }

    /// The chunk holding byte `offset` of the blob, and the offset in its line.
    fn locate(&self, offset: u64) -> (u32, u64) {
        let index = (offset / self.line).min(u64::from(self.chunks - 1));
        let index = u32::try_from(index).unwrap_or(self.chunks - 1);
        (index, offset - u64::from(index) * self.line)
    }
}

/// The raw blob's strong entity tag. A file's blob never changes once complete and ids
/// are never reused, so the id and the blob's size name it; they are hashed so that the
/// tag is opaque and carries a version.
fn blob_etag(id: &Id, v: &Visible) -> String {
    let digest = crate::crypto::sha256(
        &[
            &b"ghostcache blob etag v1\0"[..],
            id,
            &v.record.blob_bytes.to_be_bytes(),
            &v.record.chunks.to_be_bytes(),
        ]
        .concat(),
    );
    format!(
        "\"{}\"",
        crate::crypto::b64url(digest.get(..18).unwrap_or(&digest))
    )
}

/// `GET /file/<id>/raw` (and `HEAD`): the stored blob as is (every token followed by `\n`),
/// whole or one byte range of it; see `files::range` for what is answered how.
pub async fn raw(
    ctx: &mut Ctx,
    req: Request<Incoming>,
    id: Id,
) -> Result<Response<Body>, AppError> {
    let Some(session) = ctx.session.clone() else {
        return Err(AppError::NotFound);
    };
    let v = visible(ctx, &session, id).await?;
    let first_token = ctx
        .state
        .store
        .run(move |s| files_store::with_token(s, &id, 0, <[u8]>::len))
        .await?
        .ok_or(AppError::NotFound)?;
    let layout = Layout::of(&v, first_token);
    if layout.is_none() {
        tracing::warn!("a file's record does not match its chunks; serving it without ranges");
    }
    let etag = blob_etag(&id, &v);
    let len = v.record.blob_bytes;
    let head = req.method() == Method::HEAD;
    match range::precondition(req.headers(), &etag) {
        Precondition::Pass => {}
        Precondition::NotModified => {
            let mut r = Response::new(full(Bytes::new()));
            *r.status_mut() = StatusCode::NOT_MODIFIED;
            insert_etag(&mut r, &etag);
            return Ok(r);
        }
        Precondition::Failed => {
            let page = ctx.page();
            let url_id = super::id_to_url(&id);
            return Ok(html(
                StatusCode::PRECONDITION_FAILED,
                views::raw_refused(&page, &url_id, views::RawRefusal::Changed),
            ));
        }
    }
    let ask = match layout {
        // HEAD answers as GET without `Range` would (RFC 9110 §14.2: ranges are for GET).
        Some(_) if !head => range::ask(req.headers(), &etag, len),
        _ => Ask::Whole,
    };
    let (start, end) = match ask {
        Ask::Whole => (0, len.saturating_sub(1)),
        Ask::Part { start, end } => (start, end),
        Ask::Unsatisfiable => {
            let page = ctx.page();
            let url_id = super::id_to_url(&id);
            let mut r = html(
                StatusCode::RANGE_NOT_SATISFIABLE,
                views::raw_refused(&page, &url_id, views::RawRefusal::Range),
            );
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                r.headers_mut().insert(CONTENT_RANGE, v);
            }
            return Ok(r);
        }
    };
    let meta = meta_of(ctx, &session, &v).await?;
    let name = format!("{}.fernet", shown_name(meta.as_ref()));
    let part_len = end - start + 1;
    let body = if head {
        full(Bytes::new())
    } else {
        let (first, skip) = layout.map_or((0, start), |l| l.locate(start));
        let (tx, body) = stream::channel(DOWNLOAD_DEPTH, Some(part_len));
        let span = Span {
            chunks: first..v.record.chunks,
            skip,
            bytes: part_len,
        };
        tokio::spawn(produce(
            ctx.state.store.clone(),
            id,
            span,
            tx,
            |_, token| {
                let mut line = Vec::with_capacity(token.len() + 1);
                line.extend_from_slice(token);
                line.push(b'\n');
                Ok(Bytes::from(line))
            },
        ));
        body
    };
    let mut r = attachment(body, &name, part_len);
    insert_etag(&mut r, &etag);
    let h = r.headers_mut();
    h.insert(
        ACCEPT_RANGES,
        HeaderValue::from_static(if layout.is_some() { "bytes" } else { "none" }),
    );
    if let Ask::Part { start, end } = ask {
        *r.status_mut() = StatusCode::PARTIAL_CONTENT;
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{len}")) {
            r.headers_mut().insert(CONTENT_RANGE, v);
        }
    }
    Ok(r)
}

fn insert_etag(r: &mut Response<Body>, etag: &str) {
    if let Ok(v) = HeaderValue::from_str(etag) {
        r.headers_mut().insert(ETAG, v);
    }
}

/// What of a file to send: chunks `chunks`, leaving out the first `skip` bytes of the
/// first one, and at most `bytes` bytes in all.
struct Span {
    chunks: std::ops::Range<u32>,
    skip: u64,
    bytes: u64,
}

type ChunkJob = tokio::task::JoinHandle<Result<Option<Result<Bytes, &'static str>>, StoreError>>;

/// Feed `span` of a file, each chunk passed (with its index) through `transform` on the
/// blocking pool, into a response body. Stops when the client goes away or reads nothing
/// for [`STALLED_DOWNLOAD`]; sends an error (aborting the response) when a chunk is
/// missing or `transform` refuses it.
async fn produce<F>(
    store: Store,
    id: Id,
    span: Span,
    tx: tokio::sync::mpsc::Sender<Piece>,
    transform: F,
) where
    F: Fn(u32, &[u8]) -> Result<Bytes, &'static str> + Send + Sync + 'static,
{
    let transform = Arc::new(transform);
    let Span {
        chunks,
        mut skip,
        bytes: mut remaining,
    } = span;
    let mut next = chunks.start;
    let mut jobs: VecDeque<(u32, ChunkJob)> = VecDeque::with_capacity(READ_AHEAD);
    while remaining > 0 {
        while jobs.len() < READ_AHEAD && next < chunks.end {
            let (store, transform) = (store.clone(), Arc::clone(&transform));
            let index = next;
            jobs.push_back((
                index,
                tokio::task::spawn_blocking(move || {
                    files_store::with_token(&store, &id, index, |token| transform(index, token))
                }),
            ));
            next += 1;
        }
        let Some((index, job)) = jobs.pop_front() else {
            break;
        };
        let piece = match job.await {
            Ok(Ok(Some(Ok(bytes)))) => {
                let from = usize::try_from(skip).unwrap_or(usize::MAX).min(bytes.len());
                let take = usize::try_from(remaining)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len() - from);
                skip = 0;
                remaining -= take as u64;
                Ok(bytes.slice(from..from + take))
            }
            Ok(Ok(Some(Err(why)))) => {
                tracing::warn!(chunk = index, "download aborted: {why}");
                Err(std::io::Error::other(why))
            }
            Ok(Ok(None)) => {
                tracing::debug!("download aborted: the file was deleted meanwhile");
                Err(std::io::Error::other("the file is gone"))
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "download aborted: reading a chunk failed");
                Err(std::io::Error::other("reading the file failed"))
            }
            Err(e) => {
                tracing::error!(error = %e, "download aborted: a chunk task failed");
                Err(std::io::Error::other("reading the file failed"))
            }
        };
        let failed = piece.is_err();
        // A client that takes nothing for this long is given up on: the task would
        // otherwise hold the file key for as long as the connection stays open.
        match tokio::time::timeout(STALLED_DOWNLOAD, tx.send(piece)).await {
            Ok(Ok(())) if !failed => {}
            Ok(_) => return,
            Err(_) => {
                tracing::debug!("download abandoned: the client stopped reading");
                return;
            }
        }
    }
}

/// A download response: `application/octet-stream`, `attachment` with a safe name.
fn attachment(body: Body, name: &str, length: u64) -> Response<Body> {
    let mut r = Response::new(body);
    let h = r.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Ok(v) = HeaderValue::from_str(&super::content_disposition(name)) {
        h.insert(CONTENT_DISPOSITION, v);
    }
    h.insert(CONTENT_LENGTH, HeaderValue::from(length));
    r
}
