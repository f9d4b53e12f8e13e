//! Member profile pages, `/u/<username>`.
//!
//! A profile is made of sections that each feature contributes; for now the only one is
//! the files its owner shared with the viewer. A name that does not exist answers the
//! same 404 as any unknown address, and so does the name of a member who denied or
//! blocked the viewer or whom the viewer blocked; logged-out visitors are sent to the login page
//! whatever the name, so the page tells them nothing.

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use maud::{Markup, html};

use crate::accounts::Username;
use crate::web::Ctx;
use crate::web::error::AppError;
use crate::web::layout::{PageCtx, page};
use crate::web::response::{Body, html, redirect};

/// `GET /u/<username>` (`name` is the decoded path segment).
pub async fn show(
    ctx: &mut Ctx,
    _req: Request<Incoming>,
    name: String,
) -> Result<Response<Body>, AppError> {
    let Some(session) = ctx.session.clone() else {
        return Ok(redirect("/login"));
    };
    // A profile tells whether a name exists, as a search does: it spends the same quota,
    // before the lookup, so that existing and unknown names cost the same.
    if !ctx.state.limits.search_allowed(&session.user_id) {
        return Err(AppError::TooManyRequests);
    }
    let Ok(username) = Username::parse(&name) else {
        return Err(AppError::NotFound);
    };
    let me = session.user_id;
    let Some((member, record)) = ctx
        .state
        .store
        // Someone hidden from the viewer does not exist for them, here as in search.
        .run(move |s| crate::connections::find_visible(s, &me, &username))
        .await?
    else {
        return Err(AppError::NotFound);
    };
    let is_self = member == me;
    let mut sections = Vec::new();
    if !is_self {
        sections.push(
            crate::files::handlers::profile_section(ctx, &session, member, &record.username)
                .await?,
        );
    }
    let page_ctx = ctx.page();
    Ok(html(
        StatusCode::OK,
        profile(&page_ctx, &record.username, is_self, &sections),
    ))
}

/// A profile: the member's name and one section per feature.
pub fn profile(ctx: &PageCtx, username: &str, is_self: bool, sections: &[Markup]) -> Markup {
    page(
        ctx,
        username,
        html! {
            @if is_self {
                p.muted {
                    "This is your profile as other members see it. Your files are under "
                    a href="/files" { "Files" } "."
                }
            }
            @for section in sections {
                (section)
            }
        },
    )
}
