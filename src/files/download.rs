//! Downloads: the decrypted file (`POST /file/<id>/download` with its key) and the raw
//! blob (`GET /file/<id>/raw`), both streamed chunk by chunk as the client reads them.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{CONTENT_DISPOSITION, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::{Request, Response, StatusCode};

use super::handlers::{file_page, meta_of, shown_name, visible_with_chunks};
use super::store::{self as files_store, ChunkTable};
use crate::crypto::SecretKey;
use crate::store::{Id, Store};
use crate::web::Ctx;
use crate::web::error::AppError;
use crate::web::response::Body;
use crate::web::stream::{self, Piece};

/// Decrypted chunks queued ahead of a slow client, per download.
const DOWNLOAD_DEPTH: usize = 2;
/// How long a download waits for a client that reads nothing before giving up.
const STALLED_DOWNLOAD: Duration = Duration::from_secs(60);

/// `POST /file/<id>/download` with `key`: the original bytes, decrypted chunk by chunk as
/// the client reads them. The first chunk is decrypted before any header is sent, so a
/// wrong key gets a page saying so and not a byte of the file. A later chunk that fails to
/// verify (the blob was tampered with) aborts the response.
pub async fn download(
    ctx: &mut Ctx,
    req: Request<Incoming>,
    id: Id,
) -> Result<Response<Body>, AppError> {
    let form = ctx.form(req).await?;
    let session = ctx.check_member_form(&form)?;
    let (v, table) = visible_with_chunks(ctx, &session, id).await?;
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
        let (table, key) = (Arc::clone(&table), Arc::clone(&key));
        ctx.state
            .store
            .run(move |_| {
                let token = files_store::read_token(&table, &id, 0)?;
                Ok(super::open_chunk_at(&key, &token, 0, chunks))
            })
            .await?
    };
    let first = match first {
        Ok(first) => Some(first),
        Err(super::ChunkError::Key) => None,
        Err(super::ChunkError::Place) => {
            return Err(AppError::Internal(
                "the first chunk of a file is out of place".into(),
            ));
        }
    };
    let Some(first) = first else {
        return file_page(
            ctx,
            &session,
            &v,
            StatusCode::FORBIDDEN,
            Some("This key does not open this file. Check that you pasted the whole key, and that it is the key of this file."),
            None,
        )
        .await;
    };
    let meta = meta_of(ctx, &session, &v).await?;
    let name = shown_name(meta.as_ref());
    let (tx, body) = stream::channel(DOWNLOAD_DEPTH, Some(v.record.size));
    let first = Bytes::from(first.to_vec());
    let store = ctx.state.store.clone();
    tokio::spawn(async move {
        if tx.send(Ok(first)).await.is_err() {
            return;
        }
        produce(store, table, id, 1..chunks, tx, move |index, token| {
            super::open_chunk_at(&key, &token, index, chunks)
                .map(|plain| Bytes::from(plain.to_vec()))
                .map_err(|e| match e {
                    super::ChunkError::Key => "a chunk did not verify",
                    super::ChunkError::Place => "a chunk is out of place",
                })
        })
        .await;
    });
    Ok(attachment(body, &name, v.record.size))
}

/// `GET /file/<id>/raw`: the stored blob as is (every token followed by `\n`).
pub async fn raw(
    ctx: &mut Ctx,
    _req: Request<Incoming>,
    id: Id,
) -> Result<Response<Body>, AppError> {
    let Some(session) = ctx.session.clone() else {
        return Err(AppError::NotFound);
    };
    let (v, table) = visible_with_chunks(ctx, &session, id).await?;
    let meta = meta_of(ctx, &session, &v).await?;
    let name = format!("{}.fernet", shown_name(meta.as_ref()));
    let (tx, body) = stream::channel(DOWNLOAD_DEPTH, Some(v.record.blob_bytes));
    let store = ctx.state.store.clone();
    let chunks = v.record.chunks;
    tokio::spawn(produce(store, table, id, 0..chunks, tx, |_, mut token| {
        token.push(b'\n');
        Ok(Bytes::from(token))
    }));
    Ok(attachment(body, &name, v.record.blob_bytes))
}

/// Feed chunks `range` of a file, each passed (with its index) through `transform` on the
/// blocking pool, into a response body. Stops when the client goes away; sends an error (aborting the
/// response) when a chunk is missing or `transform` refuses it.
async fn produce<F>(
    store: Store,
    table: Arc<ChunkTable>,
    id: Id,
    range: std::ops::Range<u32>,
    tx: tokio::sync::mpsc::Sender<Piece>,
    transform: F,
) where
    F: Fn(u32, Vec<u8>) -> Result<Bytes, &'static str> + Send + Sync + 'static,
{
    let transform = Arc::new(transform);
    for index in range {
        let (table, transform) = (Arc::clone(&table), Arc::clone(&transform));
        let piece = store
            .run(move |_| {
                let token = files_store::read_token(&table, &id, index)?;
                Ok(transform(index, token))
            })
            .await;
        let piece = match piece {
            Ok(Ok(bytes)) => Ok(bytes),
            Ok(Err(why)) => {
                tracing::warn!(chunk = index, "download aborted: {why}");
                Err(std::io::Error::other(why))
            }
            Err(e) => {
                tracing::error!(error = %e, "download aborted: reading a chunk failed");
                Err(std::io::Error::other("reading the file failed"))
            }
        };
        let failed = piece.is_err();
        // A client that takes nothing for this long is given up on: the task would
        // otherwise hold the store snapshot (which keeps old pages from being reused)
        // and the file key for as long as the connection stays open.
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
