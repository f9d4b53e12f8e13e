//! The route table: paths to handlers, and which methods each path accepts (so that a
//! known path with the wrong method answers 405 with an `Allow` header, and anything else
//! answers 404).

use hyper::body::Incoming;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response};

use super::Ctx;
use super::assets::{self, Asset};
use super::error::AppError;
use super::response::{Body, full};
use crate::accounts::handlers as accounts;
use crate::chat::handlers::{self as chat, ChatRoute};
use crate::connections::handlers::{self as connections, ConnectionsRoute};

/// Every route. Path parameters borrow from the request path.
enum Route {
    Home,
    Register,
    Login,
    Logout,
    Settings,
    SettingsPassword,
    SettingsDestruction,
    SettingsDelete,
    Connections(ConnectionsRoute),
    Chat(ChatRoute),
    Asset(&'static Asset),
}

const GET: &str = "GET, HEAD";
const POST: &str = "POST";
const GET_POST: &str = "GET, HEAD, POST";

impl Route {
    fn resolve(path: &str) -> Option<Route> {
        if let Some(asset) = assets::find(path) {
            return Some(Route::Asset(asset));
        }
        let segments: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
        Some(match segments.as_slice() {
            [""] => Route::Home,
            ["register"] => Route::Register,
            ["login"] => Route::Login,
            ["logout"] => Route::Logout,
            ["settings"] => Route::Settings,
            ["settings", "password"] => Route::SettingsPassword,
            ["settings", "destruction-password"] => Route::SettingsDestruction,
            ["settings", "delete"] => Route::SettingsDelete,
            other => {
                if let Some(r) = ConnectionsRoute::resolve(other) {
                    Route::Connections(r)
                } else {
                    Route::Chat(ChatRoute::resolve(other)?)
                }
            }
        })
    }

    fn allow(&self) -> &'static str {
        match self {
            Route::Home | Route::Settings | Route::Asset(_) => GET,
            Route::Register | Route::Login => GET_POST,
            Route::Logout
            | Route::SettingsPassword
            | Route::SettingsDestruction
            | Route::SettingsDelete => POST,
            Route::Connections(r) => r.allow(),
            Route::Chat(r) => r.allow(),
        }
    }
}

/// Route a request to its handler.
pub async fn dispatch(ctx: &mut Ctx, req: Request<Incoming>) -> Result<Response<Body>, AppError> {
    let Some(route) = Route::resolve(req.uri().path()) else {
        return Err(AppError::NotFound);
    };
    let get = matches!(*req.method(), Method::GET | Method::HEAD);
    let post = *req.method() == Method::POST;
    match route {
        Route::Home if get => accounts::home(ctx, req).await,
        Route::Register if get => accounts::register_form(ctx, req).await,
        Route::Register if post => accounts::register_submit(ctx, req).await,
        Route::Login if get => accounts::login_form(ctx, req).await,
        Route::Login if post => accounts::login_submit(ctx, req).await,
        Route::Logout if post => accounts::logout(ctx, req).await,
        Route::Settings if get => accounts::settings(ctx, req).await,
        Route::SettingsPassword if post => accounts::change_password(ctx, req).await,
        Route::SettingsDestruction if post => accounts::change_destruction(ctx, req).await,
        Route::SettingsDelete if post => accounts::delete_account(ctx, req).await,
        Route::Connections(r) if r.accepts(get, post) => connections::dispatch(ctx, req, r).await,
        Route::Chat(r) if r.accepts(get, post) => chat::dispatch(ctx, req, r).await,
        Route::Asset(asset) if get => Ok(asset_response(asset)),
        other => Err(AppError::MethodNotAllowed {
            allow: other.allow(),
        }),
    }
}

/// Whether a request to `path` is one a page makes by itself (see `Ctx::passive`).
pub fn is_passive(path: &str) -> bool {
    chat::is_passive(path)
}

/// A content-hashed asset: safe to cache for a year, since its path changes with it.
fn asset_response(asset: &'static Asset) -> Response<Body> {
    let mut r = Response::new(full(asset.bytes));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    r.headers_mut().insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    r
}
