//! `GET /settings/invites` and `POST /settings/invites`: members make invitation codes
//! when `accounts.registration = "invite"` and `accounts.members_may_invite` is on.
//! Otherwise both answer the not-found page.

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

use super::{MemberInviteError, RegistrationMode, views};
use crate::web::Ctx;
use crate::web::error::AppError;
use crate::web::response::{Body, html, redirect};

/// Whether members may make codes on this server.
pub fn members_may_invite(ctx: &Ctx) -> bool {
    let a = &ctx.state.config.accounts;
    a.registration == RegistrationMode::Invite && a.members_may_invite
}

pub async fn page(ctx: &mut Ctx, _req: Request<Incoming>) -> Result<Response<Body>, AppError> {
    if !members_may_invite(ctx) {
        return Err(AppError::NotFound);
    }
    let Some(session) = ctx.session.clone() else {
        return Ok(redirect("/login"));
    };
    render(ctx, session.user_id, StatusCode::OK, None, None).await
}

pub async fn create(ctx: &mut Ctx, req: Request<Incoming>) -> Result<Response<Body>, AppError> {
    if !members_may_invite(ctx) {
        return Err(AppError::NotFound);
    }
    let form = ctx.form(req).await?;
    let session = ctx.check_member_form(&form)?;
    let a = &ctx.state.config.accounts;
    let (quota, days, now, me) = (
        a.invites_per_member,
        a.invite_days,
        ctx.now,
        session.user_id,
    );
    let made = ctx
        .state
        .store
        .run(move |s| super::create_for_member(s, &me, quota, days, now))
        .await?;
    match made {
        Ok((code, expires)) => {
            tracing::debug!("invitation code made by a member");
            render(
                ctx,
                me,
                StatusCode::OK,
                Some((code.text.as_str(), expires)),
                None,
            )
            .await
        }
        Err(MemberInviteError::Quota { quota, next_free }) => {
            let message = format!(
                "You already hold {quota} invitation code{} that {} not expired. You can make \
                 another after {}.",
                if quota == 1 { "" } else { "s" },
                if quota == 1 { "has" } else { "have" },
                crate::chat::views::utc_minute(next_free)
            );
            render(ctx, me, StatusCode::CONFLICT, None, Some(&message)).await
        }
    }
}

async fn render(
    ctx: &mut Ctx,
    me: crate::store::Id,
    status: StatusCode,
    new_code: Option<(&str, crate::clock::UnixTime)>,
    error: Option<&str>,
) -> Result<Response<Body>, AppError> {
    let now = ctx.now;
    let codes = ctx
        .state
        .store
        .run(move |s| super::member_codes(s, &me, now))
        .await?;
    let a = &ctx.state.config.accounts;
    let (quota, days) = (a.invites_per_member, a.invite_days);
    let page = ctx.page();
    Ok(html(
        status,
        views::member_invites(&page, &codes, quota, days, new_code, error),
    ))
}
