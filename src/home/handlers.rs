//! `GET /`: the overview for a logged-in member; the public start page otherwise.

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

use crate::web::Ctx;
use crate::web::error::AppError;
use crate::web::response::{Body, html};

/// `GET /`.
pub async fn home(ctx: &mut Ctx, req: Request<Incoming>) -> Result<Response<Body>, AppError> {
    let Some(session) = ctx.session.clone() else {
        return crate::accounts::handlers::home(ctx, req).await;
    };
    let me = session.user_id;
    let data_key = session.data_key.clone();
    let now = ctx.now;
    let overview = ctx
        .state
        .store
        .run(move |s| super::overview(s, &me, &data_key, now))
        .await?;
    let page = ctx.page();
    Ok(html(
        StatusCode::OK,
        super::views::overview(&page, &overview, now),
    ))
}
