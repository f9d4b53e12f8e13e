//! File handlers: the list, upload (streamed multipart), the file page, decrypted and raw
//! downloads (streamed), deletion, sharing and revoking.
//!
//! Access rule: a file's routes answer exactly like a file that does not exist (the same
//! 404 page) to everyone who is neither its owner nor on its access list, logged in or not.
//! Forms are checked (session, CSRF) before the file is looked up, so those answers do not
//! depend on whether the file exists either.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{CONTENT_DISPOSITION, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::{Request, Response, StatusCode};
use maud::Markup;
use parking_lot::Mutex;

use super::store::{self as files_store, Access, ChunkTable, GrantOutcome, Visible};
use super::upload::{UploadFailure, UploadWriter};
use super::views::{self, FileView, OwnedRow, SharedRow};
use super::{FileGrantRecord, FileMeta, MAX_EXPIRY_DAYS};
use crate::accounts::Username;
use crate::accounts::handlers::{form, query};
use crate::crypto::SecretKey;
use crate::crypto::hybrid::{self, HybridSealed};
use crate::store::{Id, Store, StoreError};
use crate::web::Ctx;
use crate::web::error::AppError;
use crate::web::request::{content_length, media_type};
use crate::web::response::{Body, html, redirect};
use crate::web::session::Session;
use crate::web::stream::{self, Piece};

/// Bytes of multipart framing and small fields accepted beyond `files.max_upload_bytes`.
const FORM_OVERHEAD: u64 = 64 * 1024;
/// Largest value of a field other than `file` (the CSRF token, `expiry_days`).
const SMALL_FIELD_BYTES: u64 = 4 * 1024;
/// After refusing an upload part-way, read (and discard) at most this much more of the
/// body, for at most [`DRAIN_SECS`], so that a browser still sending gets to read the
/// error page instead of a reset connection.
const DRAIN_BYTES: u64 = 16 * 1024 * 1024;
const DRAIN_SECS: u64 = 10;
/// Decrypted chunks queued ahead of a slow client, per download.
const DOWNLOAD_DEPTH: usize = 2;
/// How long a download waits for a client that reads nothing before giving up.
const STALLED_DOWNLOAD: Duration = Duration::from_secs(60);
/// Shown in place of a name that cannot be opened (it never should happen).
const NAME_UNAVAILABLE: &str = "(name unavailable)";

// ---------------------------------------------------------------------------------------
// Names and metadata

/// A file's metadata as sealed for one viewer.
enum SealedMeta {
    /// Under the viewer's own `data_key` (the viewer owns the file).
    Own(String),
    /// To the viewer's delivery key (the file was shared with them).
    Shared(HybridSealed),
}

impl SealedMeta {
    fn of(v: &Visible) -> Self {
        match &v.access {
            Access::Owner => SealedMeta::Own(v.record.meta_sealed.clone()),
            Access::Grantee(g) => SealedMeta::Shared(g.meta.clone()),
        }
    }
}

/// Open metadata sealed for `session`'s member. The delivery private key is unsealed at
/// most once, and only when something was shared with them. A failure to open one item
/// gives `None` for it.
fn open_metas(
    store: &Store,
    session: &Session,
    items: Vec<SealedMeta>,
) -> Result<Vec<Option<FileMeta>>, StoreError> {
    let mut private = None;
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let meta = match item {
            SealedMeta::Own(sealed) => FileMeta::open(&sealed, &session.data_key).ok(),
            SealedMeta::Shared(sealed) => {
                if private.is_none() {
                    let Some(user) = crate::accounts::load_user(store, &session.user_id)? else {
                        out.push(None);
                        continue;
                    };
                    private =
                        hybrid::unseal_private(&user.delivery_private_sealed, &session.data_key)
                            .ok();
                }
                private
                    .as_ref()
                    .and_then(|k| hybrid::open_with(k, &sealed).ok())
                    .and_then(|bytes| FileMeta::decode(&bytes).ok())
            }
        };
        out.push(meta);
    }
    Ok(out)
}

async fn open_metas_async(
    ctx: &Ctx,
    session: &Arc<Session>,
    items: Vec<SealedMeta>,
) -> Result<Vec<Option<FileMeta>>, AppError> {
    let session = Arc::clone(session);
    Ok(ctx
        .state
        .store
        .run(move |store| open_metas(store, &session, items))
        .await?)
}

/// The metadata of one visible file, opened for its viewer.
async fn meta_of(
    ctx: &Ctx,
    session: &Arc<Session>,
    v: &Visible,
) -> Result<Option<FileMeta>, AppError> {
    Ok(open_metas_async(ctx, session, vec![SealedMeta::of(v)])
        .await?
        .pop()
        .flatten())
}

fn shown_name(meta: Option<&FileMeta>) -> String {
    meta.map_or_else(
        || NAME_UNAVAILABLE.to_owned(),
        |m| super::display_name(&m.name),
    )
}

// ---------------------------------------------------------------------------------------
// Lookups

/// The file if the logged-in viewer may see it; the one 404 otherwise.
async fn visible(ctx: &Ctx, session: &Session, id: Id) -> Result<Visible, AppError> {
    let viewer = session.user_id;
    let now = ctx.now;
    ctx.state
        .store
        .run(move |s| files_store::visible_to(s, &id, &viewer, now))
        .await?
        .ok_or(AppError::NotFound)
}

/// Like [`visible`], plus the chunk table from the same snapshot, to stream from.
async fn visible_with_chunks(
    ctx: &Ctx,
    session: &Session,
    id: Id,
) -> Result<(Visible, Arc<ChunkTable>), AppError> {
    let viewer = session.user_id;
    let now = ctx.now;
    let found = ctx
        .state
        .store
        .run(move |s| files_store::visible_with_chunks(s, &id, &viewer, now))
        .await?;
    found
        .map(|(v, t)| (v, Arc::new(t)))
        .ok_or(AppError::NotFound)
}

/// Everything the file page shows.
async fn file_view(ctx: &Ctx, session: &Arc<Session>, v: &Visible) -> Result<FileView, AppError> {
    let meta = meta_of(ctx, session, v).await?;
    let id = v.id;
    let (owner, grantees) = match &v.access {
        Access::Owner => {
            let list = ctx
                .state
                .store
                .run(move |s| files_store::grantees(s, &id))
                .await?;
            let list = list
                .into_iter()
                .map(|(gid, name)| (crate::crypto::b64url(&gid), name))
                .collect();
            (None, Some(list))
        }
        Access::Grantee(_) => {
            let owner_id = v.record.owner;
            let name = ctx
                .state
                .store
                .run(move |s| files_store::username_of(s, &owner_id))
                .await?;
            (name, None)
        }
    };
    let view = FileView {
        url_id: super::id_to_url(&v.id),
        name: shown_name(meta.as_ref()),
        content_type: meta
            .as_ref()
            .map_or_else(|| "unknown".to_owned(), |m| m.content_type.clone()),
        size: v.record.size,
        expires_at: v.record.expires_at,
        owner,
        grantees,
    };
    Ok(view)
}

/// The file page, with an optional error (and its status) or notice.
async fn file_page(
    ctx: &mut Ctx,
    session: &Arc<Session>,
    v: &Visible,
    status: StatusCode,
    error: Option<&str>,
    notice: Option<&str>,
) -> Result<Response<Body>, AppError> {
    let view = file_view(ctx, session, v).await?;
    let page = ctx.page();
    Ok(html(status, views::file(&page, &view, error, notice)))
}

// ---------------------------------------------------------------------------------------
// Pages

/// `GET /files`: own files and files shared with the viewer.
pub async fn list(ctx: &mut Ctx, req: Request<Incoming>) -> Result<Response<Body>, AppError> {
    let Some(session) = ctx.session.clone() else {
        return Ok(redirect("/login"));
    };
    let q = query(&req)?;
    let notice = q.get("deleted").map(|_| "The file has been deleted.");
    let (me, now) = (session.user_id, ctx.now);
    let (owned, shared, used) = ctx
        .state
        .store
        .run(move |s| {
            Ok((
                files_store::list_owned(s, &me, now)?,
                files_store::list_shared_with(s, &me, None, now)?,
                files_store::usage(s, &me)?,
            ))
        })
        .await?;
    let mut items: Vec<SealedMeta> = owned
        .iter()
        .map(|f| SealedMeta::Own(f.record.meta_sealed.clone()))
        .collect();
    items.extend(
        shared
            .iter()
            .map(|f| SealedMeta::Shared(f.grant.meta.clone())),
    );
    let metas = open_metas_async(ctx, &session, items).await?;
    let mut metas = metas.into_iter();
    let owned_rows: Vec<OwnedRow> = owned
        .into_iter()
        .map(|f| OwnedRow {
            url_id: super::id_to_url(&f.id),
            name: shown_name(metas.next().flatten().as_ref()),
            size: f.record.size,
            expires_at: f.record.expires_at,
            grantees: f.grantees.into_iter().map(|(_, n)| n).collect(),
        })
        .collect();
    let shared_rows = shared_rows(shared, &mut metas);
    let quota = ctx.state.config.files.quota_bytes_per_member;
    let page = ctx.page();
    Ok(html(
        StatusCode::OK,
        views::list(&page, &owned_rows, &shared_rows, used, quota, notice),
    ))
}

fn shared_rows(
    shared: Vec<files_store::SharedFile>,
    metas: &mut impl Iterator<Item = Option<FileMeta>>,
) -> Vec<SharedRow> {
    shared
        .into_iter()
        .map(|f| SharedRow {
            url_id: super::id_to_url(&f.id),
            name: shown_name(metas.next().flatten().as_ref()),
            owner: f.owner_name,
            size: f.record.size,
            expires_at: f.record.expires_at,
        })
        .collect()
}

/// The files section of `owner`'s profile as `session`'s member sees it: what the owner
/// shared with them.
pub async fn profile_section(
    ctx: &Ctx,
    session: &Arc<Session>,
    owner: Id,
    owner_name: &str,
) -> Result<Markup, AppError> {
    let (me, now) = (session.user_id, ctx.now);
    let shared = ctx
        .state
        .store
        .run(move |s| files_store::list_shared_with(s, &me, Some(&owner), now))
        .await?;
    let items = shared
        .iter()
        .map(|f| SealedMeta::Shared(f.grant.meta.clone()))
        .collect();
    let metas = open_metas_async(ctx, session, items).await?;
    let rows = shared_rows(shared, &mut metas.into_iter());
    Ok(views::profile_section(owner_name, &rows))
}

/// `GET /file/<id>`.
pub async fn show(
    ctx: &mut Ctx,
    req: Request<Incoming>,
    id: Id,
) -> Result<Response<Body>, AppError> {
    let Some(session) = ctx.session.clone() else {
        return Err(AppError::NotFound);
    };
    let v = visible(ctx, &session, id).await?;
    let q = query(&req)?;
    let notice = if q.get("shared").is_some() {
        Some("The access list has been updated.")
    } else if q.get("revoked").is_some() {
        Some("That member can no longer see this file.")
    } else {
        None
    };
    file_page(ctx, &session, &v, StatusCode::OK, None, notice).await
}

// ---------------------------------------------------------------------------------------
// Downloads

/// `POST /file/<id>/download` with `key`: the original bytes, decrypted chunk by chunk as
/// the client reads them. The first chunk is decrypted before any header is sent, so a
/// wrong key gets a page saying so and not a byte of the file. A later chunk that fails to
/// verify (the blob was tampered with) aborts the response.
pub async fn download(
    ctx: &mut Ctx,
    req: Request<Incoming>,
    id: Id,
) -> Result<Response<Body>, AppError> {
    let form = form(ctx, req).await?;
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

// ---------------------------------------------------------------------------------------
// Owner actions

/// The file, if the form is good and the viewer owns it. Grantees get the file page with
/// a 403 message; everybody else the 404.
async fn owned_file(
    ctx: &mut Ctx,
    session: &Arc<Session>,
    id: Id,
) -> Result<Result<Visible, Response<Body>>, AppError> {
    let v = visible(ctx, session, id).await?;
    if matches!(v.access, Access::Owner) {
        return Ok(Ok(v));
    }
    let page = file_page(
        ctx,
        session,
        &v,
        StatusCode::FORBIDDEN,
        Some("Only the member who uploaded this file can do that."),
        None,
    )
    .await?;
    Ok(Err(page))
}

/// `POST /file/<id>/delete` (owner only).
pub async fn delete(
    ctx: &mut Ctx,
    req: Request<Incoming>,
    id: Id,
) -> Result<Response<Body>, AppError> {
    let form = form(ctx, req).await?;
    let session = ctx.check_member_form(&form)?;
    if let Err(page) = owned_file(ctx, &session, id).await? {
        return Ok(page);
    }
    let owner = session.user_id;
    let deleted = ctx
        .state
        .store
        .run(move |s| files_store::delete_owned(s, &id, &owner))
        .await?;
    if !deleted {
        return Err(AppError::NotFound);
    }
    tracing::info!("file deleted by its owner");
    Ok(redirect("/files?deleted=1"))
}

/// `POST /file/<id>/share` with `username` (owner only): the file's name and type are
/// sealed to the member's delivery key and the member is added to the access list.
pub async fn share(
    ctx: &mut Ctx,
    req: Request<Incoming>,
    id: Id,
) -> Result<Response<Body>, AppError> {
    let form = form(ctx, req).await?;
    let session = ctx.check_member_form(&form)?;
    let v = match owned_file(ctx, &session, id).await? {
        Ok(v) => v,
        Err(page) => return Ok(page),
    };
    const NO_SUCH_MEMBER: &str = "No member has that name.";
    // Sharing by name tells whether the name exists: it spends the search quota, before
    // the lookup, so that existing and unknown names cost the same.
    if !ctx.state.limits.search_allowed(&session.user_id) {
        return Err(AppError::TooManyRequests);
    }
    let Ok(name) = Username::parse(form.text("username")) else {
        return file_page(
            ctx,
            &session,
            &v,
            StatusCode::BAD_REQUEST,
            Some(NO_SUCH_MEMBER),
            None,
        )
        .await;
    };
    let me = session.user_id;
    let found = ctx
        .state
        .store
        // Sharing with someone hidden from the owner answers as for an unknown name.
        .run(move |s| crate::connections::find_visible(s, &me, &name))
        .await?;
    let Some((grantee, grantee_record)) = found else {
        return file_page(
            ctx,
            &session,
            &v,
            StatusCode::BAD_REQUEST,
            Some(NO_SUCH_MEMBER),
            None,
        )
        .await;
    };
    if grantee == session.user_id {
        return file_page(
            ctx,
            &session,
            &v,
            StatusCode::BAD_REQUEST,
            Some("That is you: you always see your own files."),
            None,
        )
        .await;
    }
    let Some(meta) = meta_of(ctx, &session, &v).await? else {
        return Err(AppError::Internal(
            "a file's metadata did not open for its owner".into(),
        ));
    };
    let public = hybrid::public_from_der(&grantee_record.delivery_public)?;
    let (owner, now) = (session.user_id, ctx.now);
    let outcome = ctx
        .state
        .store
        .run(move |s| {
            let sealed = hybrid::seal_to(&public, &meta.encode()?)
                .map_err(|e| StoreError::Encode(e.to_string()))?;
            files_store::grant(
                s,
                &id,
                &owner,
                &grantee,
                &FileGrantRecord { meta: sealed },
                now,
            )
        })
        .await?;
    match outcome {
        GrantOutcome::Added | GrantOutcome::AlreadyListed => Ok(redirect(&format!(
            "/file/{}?shared=1",
            super::id_to_url(&id)
        ))),
        GrantOutcome::Gone => Err(AppError::NotFound),
        GrantOutcome::NoSuchMember => {
            file_page(
                ctx,
                &session,
                &v,
                StatusCode::BAD_REQUEST,
                Some(NO_SUCH_MEMBER),
                None,
            )
            .await
        }
    }
}

/// `POST /file/<id>/revoke` with `grantee` (an id, as the file page sends) or `username`
/// (owner only).
pub async fn revoke(
    ctx: &mut Ctx,
    req: Request<Incoming>,
    id: Id,
) -> Result<Response<Body>, AppError> {
    let form = form(ctx, req).await?;
    let session = ctx.check_member_form(&form)?;
    let v = match owned_file(ctx, &session, id).await? {
        Ok(v) => v,
        Err(page) => return Ok(page),
    };
    let grantee = match form.get("grantee").filter(|g| !g.is_empty()) {
        Some(g) => crate::crypto::b64url_decode_exact::<16>(g),
        None => match Username::parse(form.text("username")) {
            Ok(name) => ctx
                .state
                .store
                .run(move |s| crate::accounts::find_user(s, &name))
                .await?
                .map(|(gid, _)| gid),
            Err(_) => None,
        },
    };
    let owner = session.user_id;
    let removed = match grantee {
        Some(g) => {
            ctx.state
                .store
                .run(move |s| files_store::revoke(s, &id, &owner, &g))
                .await?
        }
        None => false,
    };
    if !removed {
        return file_page(
            ctx,
            &session,
            &v,
            StatusCode::BAD_REQUEST,
            Some("That member is not on this file's access list."),
            None,
        )
        .await;
    }
    Ok(redirect(&format!(
        "/file/{}?revoked=1",
        super::id_to_url(&id)
    )))
}

// ---------------------------------------------------------------------------------------
// Upload

/// `GET /file/upload`.
pub async fn upload_form(
    ctx: &mut Ctx,
    _req: Request<Incoming>,
) -> Result<Response<Body>, AppError> {
    if ctx.session.is_none() {
        return Ok(redirect("/login"));
    }
    let page = ctx.page();
    Ok(html(
        StatusCode::OK,
        views::upload(&page, ctx.state.config.files.max_upload_bytes, None),
    ))
}

/// Why an upload was refused.
#[derive(Debug)]
enum Refusal {
    Csrf,
    RateLimited,
    NoFile,
    TwoFiles,
    Expiry,
    TooLarge,
    Quota { used: u64, quota: u64 },
    Malformed,
    Interrupted,
    Timeout,
    Internal(String),
}

impl From<UploadFailure> for Refusal {
    fn from(f: UploadFailure) -> Self {
        match f {
            UploadFailure::TooLarge => Refusal::TooLarge,
            UploadFailure::Quota { used, quota } => Refusal::Quota { used, quota },
            // The account is gone; nobody will read this answer.
            UploadFailure::Gone => Refusal::Interrupted,
            UploadFailure::Store(detail) => Refusal::Internal(detail),
        }
    }
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Self {
        Refusal::Internal(e.to_string())
    }
}

fn multer_refusal(e: multer::Error) -> Refusal {
    // Never log these: a header that failed to decode may hold a file name.
    match e {
        multer::Error::StreamSizeExceeded { .. } => Refusal::TooLarge,
        multer::Error::FieldSizeExceeded { field_name, .. }
            if field_name.as_deref() == Some("file") =>
        {
            Refusal::TooLarge
        }
        multer::Error::StreamReadFailed(e) => {
            let held_too_much = e
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .is_some_and(|inner| inner.is::<HeldTooMuch>());
            if held_too_much {
                Refusal::Malformed
            } else {
                Refusal::Interrupted
            }
        }
        _ => Refusal::Malformed,
    }
}

/// The request body, shared so that it can be drained after multer gives up on it.
///
/// It also bounds what multer may hold: multer keeps everything it has not yet handed
/// out (a part's headers until their blank line, a preamble until the first boundary),
/// so a form that never ends its headers would otherwise be held up to the whole upload
/// limit. Bytes read minus file bytes handed out may not pass [`HELD_LIMIT`].
#[derive(Clone)]
struct SharedBody {
    body: Arc<Mutex<Incoming>>,
    /// Bytes read from the client.
    read: Arc<AtomicU64>,
    /// Bytes of the `file` field handed out by multer (counted by `read_fields`).
    file: Arc<AtomicU64>,
}

/// The most of a form, besides file content already handed out, that is held at once:
/// the framing and small fields, plus a body frame or two in flight (the connection
/// reads at most `MAX_HEAD_BYTES` at a time).
const HELD_LIMIT: u64 = FORM_OVERHEAD + 2 * 64 * 1024;

/// The error a form that holds too much ends with (multer: `StreamReadFailed`).
#[derive(Debug)]
struct HeldTooMuch;

impl std::fmt::Display for HeldTooMuch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the form's headers or framing are too large")
    }
}

impl std::error::Error for HeldTooMuch {}

impl SharedBody {
    fn new(body: Incoming) -> Self {
        Self {
            body: Arc::new(Mutex::new(body)),
            read: Arc::new(AtomicU64::new(0)),
            file: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The next piece of data, trailers skipped.
    fn poll_data(&self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, hyper::Error>>> {
        use http_body::Body as _;
        let mut body = self.body.lock();
        loop {
            return match Pin::new(&mut *body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        self.read.fetch_add(data.len() as u64, Ordering::Relaxed);
                        Poll::Ready(Some(Ok(data)))
                    }
                    // Trailers carry nothing for us.
                    Err(_) => continue,
                },
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            };
        }
    }

    /// Read and discard what the client is still sending, within bounds.
    async fn drain(self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(DRAIN_SECS);
        let mut seen = 0u64;
        let next = || futures_util::future::poll_fn(|cx| self.poll_data(cx));
        while let Ok(Some(Ok(bytes))) = tokio::time::timeout_at(deadline, next()).await {
            seen = seen.saturating_add(bytes.len() as u64);
            if seen > DRAIN_BYTES {
                break;
            }
        }
    }
}

impl futures_util::Stream for SharedBody {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let held = self
            .read
            .load(Ordering::Relaxed)
            .saturating_sub(self.file.load(Ordering::Relaxed));
        if held > HELD_LIMIT {
            return Poll::Ready(Some(Err(std::io::Error::other(HeldTooMuch))));
        }
        self.poll_data(cx)
            .map(|item| item.map(|r| r.map_err(std::io::Error::other)))
    }
}

/// Await `f` unless the client sends nothing for `idle`.
async fn within<T>(
    idle: Duration,
    f: impl std::future::Future<Output = Result<T, multer::Error>>,
) -> Result<T, Refusal> {
    match tokio::time::timeout(idle, f).await {
        Err(_) => Err(Refusal::Timeout),
        Ok(r) => r.map_err(multer_refusal),
    }
}

/// A finished upload.
struct Uploaded {
    id: Id,
    key: Arc<SecretKey>,
    name: String,
    size: u64,
    expires_at: i64,
}

/// `POST /file/upload` (`multipart/form-data`: `csrf` first, then `expiry_days` and
/// `file`). Streams the file into the store; see `files::upload`.
///
/// Field order: `csrf` must be the first field, and is checked before anything is stored.
/// `expiry_days` normally precedes `file` (as in the form) and is then checked before any
/// byte of the file is read; if a client sends it after the file instead, it is still
/// honoured, but a bad value then discards the whole upload (400).
pub async fn upload_submit(
    ctx: &mut Ctx,
    req: Request<Incoming>,
) -> Result<Response<Body>, AppError> {
    let session = ctx.require_session()?;
    let (parts, body) = req.into_parts();
    if media_type(&parts.headers).as_deref() != Some("multipart/form-data") {
        return Err(AppError::UnsupportedMediaType);
    }
    let boundary = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| multer::parse_boundary(v).ok())
        .ok_or_else(|| AppError::BadRequest("The upload form was not well formed.".into()))?;
    let max = ctx.state.config.files.max_upload_bytes;
    if content_length(&parts.headers).is_some_and(|n| n > max.saturating_add(FORM_OVERHEAD)) {
        return refused(ctx, Refusal::TooLarge);
    }
    let body = SharedBody::new(body);
    let constraints = multer::Constraints::new().size_limit(
        multer::SizeLimit::new()
            .whole_stream(max.saturating_add(FORM_OVERHEAD))
            .per_field(SMALL_FIELD_BYTES)
            .for_field("file", max),
    );
    let mut multipart = multer::Multipart::with_constraints(body.clone(), boundary, constraints);
    let idle = Duration::from_secs(ctx.state.config.server.body_timeout_secs);
    let outcome = receive(ctx, &session, &mut multipart, idle, &body.file).await;
    drop(multipart);
    match outcome {
        Ok(done) => {
            tracing::info!("file uploaded");
            let page = ctx.page();
            let key = done.key.to_base64();
            Ok(html(
                StatusCode::OK,
                views::uploaded(
                    &page,
                    &super::id_to_url(&done.id),
                    &done.name,
                    done.size,
                    done.expires_at,
                    &key,
                ),
            ))
        }
        Err(refusal) => {
            if !matches!(refusal, Refusal::Interrupted | Refusal::Timeout) {
                body.drain().await;
            }
            refused(ctx, refusal)
        }
    }
}

/// The answer to a refused upload: the upload form again with the reason, or the generic
/// page for CSRF, rate limits and internal errors.
fn refused(ctx: &mut Ctx, refusal: Refusal) -> Result<Response<Body>, AppError> {
    let max = ctx.state.config.files.max_upload_bytes;
    let (status, message) = match refusal {
        Refusal::Csrf => return Err(AppError::Csrf),
        Refusal::RateLimited => return Err(AppError::TooManyRequests),
        Refusal::Internal(detail) => return Err(AppError::Internal(detail)),
        Refusal::NoFile => (
            StatusCode::BAD_REQUEST,
            "Choose a file to upload.".to_owned(),
        ),
        Refusal::TwoFiles => (
            StatusCode::BAD_REQUEST,
            "Upload one file at a time.".to_owned(),
        ),
        Refusal::Expiry => (StatusCode::BAD_REQUEST, super::EXPIRY_MESSAGE.to_owned()),
        Refusal::TooLarge => (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "The file is larger than {}, the most this server accepts.",
                views::human_size(max)
            ),
        ),
        Refusal::Quota { used, quota } => (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "Your storage is full: your files take {} of your {}. Delete a file to make room.",
                views::human_size(used),
                views::human_size(quota)
            ),
        ),
        Refusal::Malformed => (
            StatusCode::BAD_REQUEST,
            "The upload was not a well-formed form. Use the form on this page.".to_owned(),
        ),
        Refusal::Interrupted => (
            StatusCode::BAD_REQUEST,
            "The upload was interrupted. Nothing was kept; try again.".to_owned(),
        ),
        Refusal::Timeout => (
            StatusCode::REQUEST_TIMEOUT,
            "The upload stalled. Nothing was kept; try again.".to_owned(),
        ),
    };
    let page = ctx.page();
    Ok(html(status, views::upload(&page, max, Some(&message))))
}

/// Read the form, field by field. Whatever was stored is deleted before this returns an
/// error.
async fn receive(
    ctx: &Ctx,
    session: &Arc<Session>,
    multipart: &mut multer::Multipart<'static>,
    idle: Duration,
    file_seen: &AtomicU64,
) -> Result<Uploaded, Refusal> {
    // The CSRF token first: nothing is stored for a forged form.
    let first = within(idle, multipart.next_field()).await?;
    let token = match first {
        Some(field) if field.name() == Some("csrf") => within(idle, field.text()).await?,
        _ => return Err(Refusal::Csrf),
    };
    if !session.csrf_ok(&token) {
        return Err(Refusal::Csrf);
    }
    if !ctx.state.limits.upload_allowed(&session.user_id) {
        return Err(Refusal::RateLimited);
    }
    let owner = session.user_id;
    let quota = ctx.state.config.files.quota_bytes_per_member;
    let used = ctx
        .state
        .store
        .run(move |s| files_store::usage(s, &owner))
        .await?;
    if used >= quota {
        return Err(Refusal::Quota { used, quota });
    }

    let mut slot: Option<(UploadWriter, FileMeta)> = None;
    let fields = read_fields(ctx, session, multipart, idle, file_seen, &mut slot).await;
    let (writer, meta) = match (fields, slot) {
        (Ok(days), Some((writer, meta))) => ((writer, days), meta),
        (Ok(_), None) => return Err(Refusal::NoFile),
        (Err(refusal), slot) => {
            if let Some((writer, _)) = slot {
                writer.abandon().await;
            }
            return Err(refusal);
        }
    };
    let (writer, days) = writer;
    let expires_at = super::expires_at(ctx.now, days.unwrap_or(MAX_EXPIRY_DAYS));
    let (id, size) = (writer.id(), writer.received());
    let key = writer.finish(expires_at).await?;
    Ok(Uploaded {
        id,
        key,
        name: super::display_name(&meta.name),
        size,
        expires_at,
    })
}

/// Every field after the CSRF token. The file goes into a writer left in `slot` (also
/// when this fails, so the caller can discard it). Returns the expiry, if one was sent.
async fn read_fields(
    ctx: &Ctx,
    session: &Arc<Session>,
    multipart: &mut multer::Multipart<'static>,
    idle: Duration,
    file_seen: &AtomicU64,
    slot: &mut Option<(UploadWriter, FileMeta)>,
) -> Result<Option<u32>, Refusal> {
    let mut days = None;
    while let Some(mut field) = within(idle, multipart.next_field()).await? {
        match field.name() {
            Some("expiry_days") => {
                let text = within(idle, field.text()).await?;
                days = Some(super::parse_expiry_days(&text).ok_or(Refusal::Expiry)?);
            }
            Some("file") => {
                if slot.is_some() {
                    return Err(Refusal::TwoFiles);
                }
                let meta = FileMeta {
                    name: super::received_name(field.file_name().unwrap_or("")),
                    content_type: super::sanitise_content_type(
                        field.content_type().map(|m| m.essence_str()),
                    ),
                };
                let writer = UploadWriter::new(
                    Arc::clone(&ctx.state),
                    session.user_id,
                    &session.data_key,
                    &meta,
                    ctx.now,
                )?;
                let (writer, meta) = slot.insert((writer, meta));
                while let Some(bytes) = within(idle, field.chunk()).await? {
                    file_seen.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                    writer.push(&bytes).await?;
                }
                if writer.received() == 0 && meta.name.is_empty() {
                    // A file input left empty: browsers send it with no name and no bytes.
                    if let Some((writer, _)) = slot.take() {
                        writer.abandon().await;
                    }
                    return Err(Refusal::NoFile);
                }
            }
            // Anything else (a second token, a named button) is read and ignored.
            _ => while within(idle, field.chunk()).await?.is_some() {},
        }
    }
    Ok(days)
}
