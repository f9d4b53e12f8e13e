//! Receiving an upload: the form, and the streamed `multipart/form-data` body handed to
//! an [`UploadWriter`] as it arrives.
//!
//! A slow client cannot hold the server: the body must bring at least
//! `files.upload_min_bytes_per_sec` on average over every `server.body_timeout_secs` (and
//! at least one byte), and all of it within `files.upload_deadline_secs`; otherwise the
//! upload is dropped with `408` and nothing is kept ([`Pace`]). Nothing is allocated for
//! the file's bytes before they arrive (see `upload.rs`).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;
use zeroize::Zeroizing;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use hyper::{Request, Response, StatusCode};
use parking_lot::Mutex;

use super::sealed::{self, SealedProblem, TokenLines};
use super::store as files_store;
use super::upload::{UploadFailure, UploadWriter};
use super::views;
use super::{FileMeta, KeyProblem, MAX_EXPIRY_DAYS};
use crate::crypto::SecretKey;
use crate::store::{Id, StoreError};
use crate::web::Ctx;
use crate::web::error::AppError;
use crate::web::request::{content_length, media_type};
use crate::web::response::{Body, html, html_with_scripts, redirect};
use crate::web::session::Session;

/// Bytes of multipart framing and small fields accepted beyond `files.max_upload_bytes`.
const FORM_OVERHEAD: u64 = 64 * 1024;
/// Largest value of a field other than `file` (the CSRF token, `expiry_days`).
const SMALL_FIELD_BYTES: u64 = 4 * 1024;
/// After refusing an upload part-way, read (and discard) at most this much more of the
/// body, for at most [`DRAIN_SECS`], so that a browser still sending gets to read the
/// error page instead of a reset connection.
const DRAIN_BYTES: u64 = 16 * 1024 * 1024;
const DRAIN_SECS: u64 = 10;

/// `GET /file/upload`.
pub async fn upload_form(
    ctx: &mut Ctx,
    _req: Request<Incoming>,
) -> Result<Response<Body>, AppError> {
    if ctx.session.is_none() {
        return Ok(redirect("/login"));
    }
    let page = ctx.page();
    Ok(html_with_scripts(
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
    Quota {
        used: u64,
        quota: u64,
    },
    Malformed,
    Interrupted,
    /// Nothing (or too little) arrived for too long.
    Slow,
    /// The upload took longer than `files.upload_deadline_secs`.
    Deadline,
    /// The entered key is not a key.
    Key(KeyProblem),
    /// A `key` field came after the file, which was encrypted with another key by then.
    KeyAfterFile,
    /// The tokens of a browser-encrypted upload are not a well-formed blob.
    Sealed(SealedProblem),
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

/// How fast an upload must arrive: at least `per_window` bytes (counting every byte of
/// the body) in each `window` on average since the last check, and all of it before
/// `deadline`. Checked whenever the upload waits for the client.
struct Pace {
    read: Arc<AtomicU64>,
    window: Duration,
    per_window: u64,
    deadline: Instant,
    window_start: Instant,
    window_start_read: u64,
}

impl Pace {
    fn new(read: Arc<AtomicU64>, files: &crate::config::FilesConfig, window_secs: u64) -> Self {
        let now = Instant::now();
        let window = Duration::from_secs(window_secs.max(1));
        Self {
            read,
            window,
            per_window: files
                .upload_min_bytes_per_sec
                .saturating_mul(window.as_secs())
                .max(1),
            deadline: now + Duration::from_secs(files.upload_deadline_secs),
            window_start: now,
            window_start_read: 0,
        }
    }

    /// Refuse an upload past its deadline, or one that brought less than the minimum over
    /// the windows that ended since the last check (the time the server itself spent
    /// counts as the client's, so the minimum is set low).
    fn check(&mut self) -> Result<(), Refusal> {
        let now = Instant::now();
        if now >= self.deadline {
            return Err(Refusal::Deadline);
        }
        let windows =
            now.duration_since(self.window_start).as_secs_f64() / self.window.as_secs_f64();
        if windows >= 1.0 {
            let read = self.read.load(Ordering::Relaxed);
            let brought = read.saturating_sub(self.window_start_read);
            if (brought as f64) < self.per_window as f64 * windows.floor() {
                return Err(Refusal::Slow);
            }
            self.window_start = now;
            self.window_start_read = read;
        }
        Ok(())
    }

    /// Await `f` (which waits for the client) while the upload keeps its pace.
    async fn within<T>(
        &mut self,
        f: impl std::future::Future<Output = Result<T, multer::Error>>,
    ) -> Result<T, Refusal> {
        let mut f = std::pin::pin!(f);
        loop {
            self.check()?;
            let wake = (self.window_start + self.window).min(self.deadline);
            if let Ok(r) = tokio::time::timeout_at(wake, &mut f).await {
                return r.map_err(multer_refusal);
            }
        }
    }
}

/// A finished upload.
struct Uploaded {
    id: Id,
    /// `None` when the member's browser encrypted the file.
    key: Option<Arc<SecretKey>>,
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
    // A browser-encrypted upload sends the blob, a third larger than the file.
    let max_blob = sealed::max_blob_bytes(max);
    let max_body = max.max(max_blob).saturating_add(FORM_OVERHEAD);
    if content_length(&parts.headers).is_some_and(|n| n > max_body) {
        return refused(ctx, Refusal::TooLarge);
    }
    let body = SharedBody::new(body);
    let constraints = multer::Constraints::new().size_limit(
        multer::SizeLimit::new()
            .whole_stream(max_body)
            .per_field(SMALL_FIELD_BYTES)
            .for_field("file", max)
            .for_field("tokens", max_blob),
    );
    let mut multipart = multer::Multipart::with_constraints(body.clone(), boundary, constraints);
    let mut pace = Pace::new(
        Arc::clone(&body.read),
        &ctx.state.config.files,
        ctx.state.config.server.body_timeout_secs,
    );
    let outcome = receive(ctx, &session, &mut multipart, &mut pace, &body.file).await;
    drop(multipart);
    match outcome {
        Ok(Uploaded { id, key: None, .. }) => {
            tracing::debug!("file uploaded, encrypted in the browser");
            // The browser's script shows the key it made; the file's page is the answer.
            Ok(redirect(&format!("/file/{}", super::id_to_url(&id))))
        }
        Ok(done @ Uploaded { key: Some(_), .. }) => {
            tracing::debug!("file uploaded");
            let page = ctx.page();
            let Some(key) = done.key.as_ref().map(|k| k.to_base64()) else {
                return Err(AppError::Internal("an upload lost its key".into()));
            };
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
            if !matches!(
                refusal,
                Refusal::Interrupted | Refusal::Slow | Refusal::Deadline
            ) {
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
        Refusal::Slow => (
            StatusCode::REQUEST_TIMEOUT,
            "The upload stalled or was too slow. Nothing was kept; try again.".to_owned(),
        ),
        Refusal::Deadline => (
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "The upload took longer than {}, the most this server allows. Nothing was kept.",
                duration_words(ctx.state.config.files.upload_deadline_secs)
            ),
        ),
        Refusal::Key(problem) => (StatusCode::BAD_REQUEST, problem.message()),
        Refusal::Sealed(problem) => (StatusCode::BAD_REQUEST, problem.message()),
        Refusal::KeyAfterFile => (
            StatusCode::BAD_REQUEST,
            "The key must come before the file in the form. Nothing was kept; use the form on this page.".to_owned(),
        ),
    };
    let page = ctx.page();
    Ok(html_with_scripts(
        status,
        views::upload(&page, max, Some(&message)),
    ))
}

/// A duration as a member reads it: `45 seconds`, `20 minutes`, `1 hour`, `2 hours`.
fn duration_words(secs: u64) -> String {
    let plural = |n: u64, unit: &str| format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    if secs < 120 {
        plural(secs, "second")
    } else if secs.is_multiple_of(3600) {
        plural(secs / 3600, "hour")
    } else {
        plural(secs.div_ceil(60), "minute")
    }
}

/// Read the form, field by field. Whatever was stored is deleted before this returns an
/// error.
async fn receive(
    ctx: &Ctx,
    session: &Arc<Session>,
    multipart: &mut multer::Multipart<'static>,
    pace: &mut Pace,
    file_seen: &AtomicU64,
) -> Result<Uploaded, Refusal> {
    // The CSRF token first: nothing is stored for a forged form.
    let first = pace.within(multipart.next_field()).await?;
    let token = match first {
        Some(field) if field.name() == Some("csrf") => pace.within(field.text()).await?,
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
    let fields = read_fields(ctx, session, multipart, pace, file_seen, &mut slot).await;
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
    pace: &mut Pace,
    file_seen: &AtomicU64,
    slot: &mut Option<(UploadWriter, FileMeta)>,
) -> Result<Option<u32>, Refusal> {
    let mut days = None;
    let mut declared_size: Option<u64> = None;
    let mut entered: Option<SecretKey> = None;
    let mut key_fields = 0usize;
    while let Some(mut field) = pace.within(multipart.next_field()).await? {
        match field.name() {
            Some("expiry_days") => {
                let text = pace.within(field.text()).await?;
                days = Some(super::parse_expiry_days(&text).ok_or(Refusal::Expiry)?);
            }
            Some("key") => {
                if slot.is_some() {
                    return Err(Refusal::KeyAfterFile);
                }
                key_fields += 1;
                if key_fields > 1 {
                    return Err(Refusal::Key(KeyProblem::Twice));
                }
                // Held in wiped memory from here on, never logged nor shown back.
                let mut value = Zeroizing::new(Vec::new());
                while let Some(bytes) = pace.within(field.chunk()).await? {
                    value.extend_from_slice(&bytes);
                }
                let text =
                    std::str::from_utf8(&value).map_err(|_| Refusal::Key(KeyProblem::Alphabet))?;
                entered = super::parse_entered_key(text).map_err(Refusal::Key)?;
            }
            Some("file") => {
                if slot.is_some() {
                    return Err(Refusal::TwoFiles);
                }
                let meta = field_meta(&field);
                let writer = UploadWriter::new(
                    Arc::clone(&ctx.state),
                    session.user_id,
                    &session.data_key,
                    &meta,
                    ctx.now,
                    entered.take(),
                )?;
                let (writer, meta) = slot.insert((writer, meta));
                while let Some(bytes) = pace.within(field.chunk()).await? {
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
            Some("plain_size") => {
                let text = pace.within(field.text()).await?;
                declared_size = Some(sealed::parse_size(&text).map_err(Refusal::Sealed)?);
            }
            Some("tokens") => {
                if slot.is_some() {
                    return Err(Refusal::TwoFiles);
                }
                if entered.is_some() {
                    // A key sent along would defeat encrypting in the browser.
                    return Err(Refusal::Malformed);
                }
                let size = declared_size.ok_or(Refusal::Sealed(SealedProblem::NoSize))?;
                if size > ctx.state.config.files.max_upload_bytes {
                    return Err(Refusal::TooLarge);
                }
                let meta = field_meta(&field);
                let writer = UploadWriter::for_browser_tokens(
                    Arc::clone(&ctx.state),
                    session.user_id,
                    &session.data_key,
                    &meta,
                    ctx.now,
                )?;
                let (writer, _) = slot.insert((writer, meta));
                let mut lines = TokenLines::new(size);
                let mut checked = Vec::new();
                while let Some(bytes) = pace.within(field.chunk()).await? {
                    file_seen.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                    lines.feed(&bytes, &mut checked).map_err(Refusal::Sealed)?;
                    for c in checked.drain(..) {
                        writer.push_token(c.token, c.plain).await?;
                    }
                }
                if let Some(c) = lines.finish().map_err(Refusal::Sealed)? {
                    writer.push_token(c.token, c.plain).await?;
                }
            }
            // Anything else (a second token, a named button) is read and ignored.
            _ => while pace.within(field.chunk()).await?.is_some() {},
        }
    }
    Ok(days)
}

/// The name and media type the browser sent with a file (or its tokens).
fn field_meta(field: &multer::Field<'_>) -> FileMeta {
    FileMeta {
        name: super::received_name(field.file_name().unwrap_or("")),
        content_type: super::sanitise_content_type(field.content_type().map(|m| m.essence_str())),
    }
}
