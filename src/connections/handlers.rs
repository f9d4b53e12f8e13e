//! Connection handlers: search, requests, the connections page, accept, deny, remove,
//! block and unblock.

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

use super::views::{self, ConnectedView, ConnectionsPage};
use super::{BlockError, RequestError};
use crate::chat::hub::Event;
use crate::crypto::{b64url, b64url_decode_exact};
use crate::store::Id;
use crate::web::Ctx;
use crate::web::error::AppError;
use crate::web::response::{Body, html, redirect};
use crate::web::router::{GET, GET_POST, POST};

/// Longest typed name echoed back into a form (longer input is not a real attempt).
const MAX_ECHO_BYTES: usize = 64;

/// The routes of this module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionsRoute {
    /// `GET /search?q=`
    Search,
    /// `GET /connect?username=` (form), `POST /connect` (send a request)
    Connect,
    /// `GET /connections`
    List,
    /// `POST /connect/accept/<id>`
    Accept(Id),
    /// `POST /connect/deny/<id>`
    Deny(Id),
    /// `POST /connect/remove/<id>`
    Remove(Id),
    /// `POST /block` with `username`
    Block,
    /// `POST /unblock` with `member` (an id from the connections page)
    Unblock,
}

impl ConnectionsRoute {
    /// The route for a path's segments. A malformed id is no route (so: 404).
    pub fn resolve(segments: &[&str]) -> Option<Self> {
        Some(match segments {
            ["search"] => Self::Search,
            ["connect"] => Self::Connect,
            ["connections"] => Self::List,
            ["connect", "accept", id] => Self::Accept(b64url_decode_exact(id)?),
            ["connect", "deny", id] => Self::Deny(b64url_decode_exact(id)?),
            ["connect", "remove", id] => Self::Remove(b64url_decode_exact(id)?),
            ["block"] => Self::Block,
            ["unblock"] => Self::Unblock,
            _ => return None,
        })
    }

    /// Methods this route accepts (the `Allow` header of a 405).
    pub fn allow(&self) -> &'static str {
        match self {
            Self::Search | Self::List => GET,
            Self::Connect => GET_POST,
            Self::Accept(_) | Self::Deny(_) | Self::Remove(_) | Self::Block | Self::Unblock => POST,
        }
    }
}

/// Run the handler of `route` (the router checked the method against `allow`).
pub async fn dispatch(
    ctx: &mut Ctx,
    req: Request<Incoming>,
    route: ConnectionsRoute,
) -> Result<Response<Body>, AppError> {
    let post = req.method() == hyper::Method::POST;
    match route {
        ConnectionsRoute::Search => search(ctx, req).await,
        ConnectionsRoute::Connect if post => connect_submit(ctx, req).await,
        ConnectionsRoute::Connect => connect_form(ctx, req).await,
        ConnectionsRoute::List => list(ctx, req).await,
        ConnectionsRoute::Accept(id) => accept(ctx, req, id).await,
        ConnectionsRoute::Deny(id) => deny(ctx, req, id).await,
        ConnectionsRoute::Remove(id) => remove(ctx, req, id).await,
        ConnectionsRoute::Block => block(ctx, req).await,
        ConnectionsRoute::Unblock => unblock(ctx, req).await,
    }
}

fn echo(typed: &str) -> &str {
    let typed = typed.trim();
    if typed.len() <= MAX_ECHO_BYTES {
        typed
    } else {
        ""
    }
}

async fn search(ctx: &mut Ctx, req: Request<Incoming>) -> Result<Response<Body>, AppError> {
    let Some(session) = ctx.session.clone() else {
        return Ok(redirect("/login"));
    };
    let q = ctx.query(&req)?;
    let typed = q.text("q").trim().to_owned();
    let prefix = ctx.state.config.connections.search_prefix;
    let results = if typed.is_empty() {
        None
    } else {
        // Counted before the lookup, so that a name that exists and one that does not
        // cost the same quota.
        if !ctx.state.limits.search_allowed(&session.user_id) {
            return Err(AppError::TooManyRequests);
        }
        let me = session.user_id;
        let q = typed.clone();
        Some(
            ctx.state
                .store
                .run(move |s| super::search(s, &me, &q, prefix))
                .await?,
        )
    };
    let page = ctx.page();
    Ok(html(
        StatusCode::OK,
        views::search(&page, echo(&typed), results.as_deref(), prefix),
    ))
}

async fn connect_form(ctx: &mut Ctx, req: Request<Incoming>) -> Result<Response<Body>, AppError> {
    if ctx.session.is_none() {
        return Ok(redirect("/login"));
    }
    let q = ctx.query(&req)?;
    let page = ctx.page();
    Ok(html(
        StatusCode::OK,
        views::connect(&page, echo(q.text("username")), None),
    ))
}

fn request_error_status(e: RequestError) -> StatusCode {
    match e {
        RequestError::NotFound => StatusCode::NOT_FOUND,
        RequestError::Myself => StatusCode::BAD_REQUEST,
        RequestError::AlreadyConnected | RequestError::AlreadySent | RequestError::TheyAsked => {
            StatusCode::CONFLICT
        }
    }
}

async fn connect_submit(ctx: &mut Ctx, req: Request<Incoming>) -> Result<Response<Body>, AppError> {
    let form = ctx.form(req).await?;
    let session = ctx.check_member_form(&form)?;
    let typed = form.text("username").to_owned();
    // Counted before the lookup: a request to a member who denied you and one to a name
    // nobody has cost the same quota and get the same answer.
    if !ctx.state.limits.connect_allowed(&session.user_id) {
        return Err(AppError::TooManyRequests);
    }
    let me = session.user_id;
    let now = ctx.now;
    let name = typed.clone();
    let outcome = ctx
        .state
        .store
        .run(move |s| super::request(s, &me, &name, now))
        .await?;
    match outcome {
        Ok(_) => Ok(redirect("/connections?sent=1")),
        Err(e) => {
            let page = ctx.page();
            Ok(html(
                request_error_status(e),
                views::connect(&page, echo(&typed), Some(&e.to_string())),
            ))
        }
    }
}

async fn list(ctx: &mut Ctx, req: Request<Incoming>) -> Result<Response<Body>, AppError> {
    let Some(session) = ctx.session.clone() else {
        return Ok(redirect("/login"));
    };
    let q = ctx.query(&req)?;
    let notice = [
        ("sent", "Your request has been sent."),
        ("denied", "The request has been denied."),
        (
            "removed",
            "The connection has been removed, with its messages and keys.",
        ),
        ("blocked", "The member has been blocked."),
        ("unblocked", "The member has been unblocked."),
    ]
    .into_iter()
    .find(|(k, _)| q.get(k).is_some())
    .map(|(_, m)| m);
    let me = session.user_id;
    let (overview, unread) = ctx
        .state
        .store
        .run(move |s| {
            Ok((
                super::overview(s, &me)?,
                crate::chat::unread_counts(s, &me)?,
            ))
        })
        .await?;
    let now = ctx.now;
    let connected: Vec<ConnectedView> = overview
        .connected
        .iter()
        .map(|e| ConnectedView {
            online: ctx.state.hub.online(&e.other, now, &ctx.state.sessions),
            unread: unread.get(&e.connection).copied().unwrap_or(0),
            entry: e.clone(),
        })
        .collect();
    let page = ctx.page();
    Ok(html(
        StatusCode::OK,
        views::connections(
            &page,
            &ConnectionsPage {
                overview: &overview,
                connected: &connected,
                notice,
            },
        ),
    ))
}

async fn accept(ctx: &mut Ctx, req: Request<Incoming>, id: Id) -> Result<Response<Body>, AppError> {
    let form = ctx.form(req).await?;
    let session = ctx.check_member_form(&form)?;
    let me = session.user_id;
    // Check before taking keys from the pool, so that a bad id costs nothing.
    let pending = ctx
        .state
        .store
        .run(move |s| super::pending_for_receiver(s, &id, &me))
        .await?;
    let Some(pending) = pending else {
        return Err(AppError::NotFound);
    };
    // Each side signs with the scheme it chose (RSA-PSS by default, or DSA).
    // Both at once: with an empty pool, two key generations on two cores.
    let (requester_key, receiver_key) = tokio::try_join!(
        ctx.state.new_signing_key_for(pending.requester),
        ctx.state.new_signing_key_for(me)
    )?;
    let data_key = session.data_key.clone();
    let now = ctx.now;
    let accepted = ctx
        .state
        .store
        .run(move |s| super::accept(s, &id, &me, &data_key, &requester_key, &receiver_key, now))
        .await?;
    match accepted {
        Some(_) => {
            tracing::debug!("connection accepted");
            Ok(redirect(&format!("/chat/{}?connected=1", b64url(&id))))
        }
        None => Err(AppError::NotFound),
    }
}

async fn deny(ctx: &mut Ctx, req: Request<Incoming>, id: Id) -> Result<Response<Body>, AppError> {
    let form = ctx.form(req).await?;
    let session = ctx.check_member_form(&form)?;
    let me = session.user_id;
    if ctx
        .state
        .store
        .run(move |s| super::deny(s, &id, &me))
        .await?
    {
        Ok(redirect("/connections?denied=1"))
    } else {
        Err(AppError::NotFound)
    }
}

async fn remove(ctx: &mut Ctx, req: Request<Incoming>, id: Id) -> Result<Response<Body>, AppError> {
    let form = ctx.form(req).await?;
    let session = ctx.check_member_form(&form)?;
    let me = session.user_id;
    match ctx
        .state
        .store
        .run(move |s| super::remove(s, &id, &me))
        .await?
    {
        Some(other) => {
            ctx.state
                .hub
                .publish(&[me, other], Event::Closed { conversation: id });
            Ok(redirect("/connections?removed=1"))
        }
        None => Err(AppError::NotFound),
    }
}

async fn block(ctx: &mut Ctx, req: Request<Incoming>) -> Result<Response<Body>, AppError> {
    let form = ctx.form(req).await?;
    let session = ctx.check_member_form(&form)?;
    let me = session.user_id;
    // Blocking by name answers "not found" for unknown names, so it counts against the
    // search quota: otherwise it would be an unlimited way to test which names exist.
    if !ctx.state.limits.search_allowed(&me) {
        return Err(AppError::TooManyRequests);
    }
    let name = form.text("username").to_owned();
    match ctx
        .state
        .store
        .run(move |s| super::block(s, &me, &name))
        .await?
    {
        Ok(removed) => {
            if let Some((connection, other)) = removed {
                ctx.state.hub.publish(
                    &[me, other],
                    Event::Closed {
                        conversation: connection,
                    },
                );
            }
            Ok(redirect("/connections?blocked=1"))
        }
        Err(BlockError::NotFound) => Err(AppError::NotFound),
        Err(e @ BlockError::Myself) => Err(AppError::BadRequest(e.to_string())),
    }
}

async fn unblock(ctx: &mut Ctx, req: Request<Incoming>) -> Result<Response<Body>, AppError> {
    let form = ctx.form(req).await?;
    let session = ctx.check_member_form(&form)?;
    let me = session.user_id;
    let Some(target) = b64url_decode_exact::<16>(form.text("member")) else {
        return Err(AppError::NotFound);
    };
    if ctx
        .state
        .store
        .run(move |s| super::unblock(s, &me, &target))
        .await?
    {
        Ok(redirect("/connections?unblocked=1"))
    } else {
        Err(AppError::NotFound)
    }
}
