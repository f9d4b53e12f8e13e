//! File handlers: the list, the file page, deletion, sharing and revoking. Uploads are
//! received in `receive.rs`, downloads streamed in `download.rs`.
//!
//! Access rule: a file's routes answer exactly like a file that does not exist (the same
//! 404 page) to everyone who is neither its owner nor on its access list, logged in or not.
//! Forms are checked (session, CSRF) before the file is looked up, so those answers do not
//! depend on whether the file exists either.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use maud::Markup;

use super::store::{self as files_store, Access, GrantOutcome, Visible};
use super::views::{self, FileView, OwnedRow, SharedRow};
use super::{FileGrantRecord, FileMeta};
use crate::accounts::Username;
use crate::crypto::hybrid::{self, HybridSealed};
use crate::store::{Id, Store, StoreError};
use crate::web::Ctx;
use crate::web::error::AppError;
use crate::web::response::{Body, html, html_with_scripts, redirect};
use crate::web::session::Session;

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
pub(super) async fn meta_of(
    ctx: &Ctx,
    session: &Arc<Session>,
    v: &Visible,
) -> Result<Option<FileMeta>, AppError> {
    Ok(open_metas_async(ctx, session, vec![SealedMeta::of(v)])
        .await?
        .pop()
        .flatten())
}

pub(super) fn shown_name(meta: Option<&FileMeta>) -> String {
    meta.map_or_else(
        || NAME_UNAVAILABLE.to_owned(),
        |m| super::display_name(&m.name),
    )
}

// ---------------------------------------------------------------------------------------
// Lookups

/// The file if the logged-in viewer may see it; the one 404 otherwise.
pub(super) async fn visible(ctx: &Ctx, session: &Session, id: Id) -> Result<Visible, AppError> {
    let viewer = session.user_id;
    let now = ctx.now;
    ctx.state
        .store
        .run(move |s| files_store::visible_to(s, &id, &viewer, now))
        .await?
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
pub(super) async fn file_page(
    ctx: &mut Ctx,
    session: &Arc<Session>,
    v: &Visible,
    status: StatusCode,
    error: Option<&str>,
    notice: Option<&str>,
) -> Result<Response<Body>, AppError> {
    let view = file_view(ctx, session, v).await?;
    let page = ctx.page();
    Ok(html_with_scripts(
        status,
        views::file(&page, &view, error, notice),
    ))
}

// ---------------------------------------------------------------------------------------
// Pages

/// `GET /files`: own files and files shared with the viewer.
pub async fn list(ctx: &mut Ctx, req: Request<Incoming>) -> Result<Response<Body>, AppError> {
    let Some(session) = ctx.session.clone() else {
        return Ok(redirect("/login"));
    };
    let q = ctx.query(&req)?;
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
    let q = ctx.query(&req)?;
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
    let form = ctx.form(req).await?;
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
    tracing::debug!("file deleted by its owner");
    Ok(redirect("/files?deleted=1"))
}

/// `POST /file/<id>/share` with `username` (owner only): the file's name and type are
/// sealed to the member's delivery key and the member is added to the access list.
pub async fn share(
    ctx: &mut Ctx,
    req: Request<Incoming>,
    id: Id,
) -> Result<Response<Body>, AppError> {
    let form = ctx.form(req).await?;
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
    let form = ctx.form(req).await?;
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
