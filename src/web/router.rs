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
use crate::e2e::api::{self as e2e, E2eRoute};
use crate::files::{download, handlers as files, receive};
use crate::groups::handlers::{self as groups, GroupRoute};
use crate::store::Id;

/// Every route. Path parameters are decoded into owned values (a file id that is not
/// 22 characters of base64url resolves to nothing, so it gets the same 404 as a file that
/// does not exist).
enum Route {
    Home,
    Register,
    Login,
    LoginSalt,
    Logout,
    Settings,
    SettingsPassword,
    SettingsDestruction,
    SettingsDelete,
    SettingsSignature,
    SettingsInvites,
    Files,
    FileUpload,
    File(Id),
    FileDownload(Id),
    FileRaw(Id),
    FileDelete(Id),
    FileShare(Id),
    FileRevoke(Id),
    Profile(String),
    Connections(ConnectionsRoute),
    Chat(ChatRoute),
    Group(GroupRoute),
    E2e(E2eRoute),
    Asset(&'static Asset),
}

/// The methods a route accepts, as its 405's `Allow` header lists them.
pub const GET: &str = "GET, HEAD";
pub const POST: &str = "POST";
pub const GET_POST: &str = "GET, HEAD, POST";
/// For GETs with a side effect (marking messages delivered, being online): a HEAD would
/// cause it while its answer is thrown away, so HEAD is not offered.
pub const GET_ONLY: &str = "GET";
pub const GET_ONLY_POST: &str = "GET, POST";

/// Whether a route whose `Allow` list is `allow` accepts `method`.
pub fn allows(allow: &str, method: &Method) -> bool {
    allow.split(", ").any(|m| m == method.as_str())
}

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
            ["login", "salt"] => Route::LoginSalt,
            ["logout"] => Route::Logout,
            ["settings"] => Route::Settings,
            ["settings", "password"] => Route::SettingsPassword,
            ["settings", "destruction-password"] => Route::SettingsDestruction,
            ["settings", "delete"] => Route::SettingsDelete,
            ["settings", "signature"] => Route::SettingsSignature,
            ["settings", "invites"] => Route::SettingsInvites,
            ["files"] => Route::Files,
            ["file", "upload"] => Route::FileUpload,
            ["file", id] => Route::File(crate::files::id_from_url(id)?),
            ["file", id, action] => {
                let id = crate::files::id_from_url(id)?;
                match *action {
                    "download" => Route::FileDownload(id),
                    "raw" => Route::FileRaw(id),
                    "delete" => Route::FileDelete(id),
                    "share" => Route::FileShare(id),
                    "revoke" => Route::FileRevoke(id),
                    _ => return None,
                }
            }
            ["u", name] => Route::Profile(super::request::decode_path_segment(name)?),
            other => {
                if let Some(r) = E2eRoute::resolve(other) {
                    Route::E2e(r)
                } else if let Some(r) = ConnectionsRoute::resolve(other) {
                    Route::Connections(r)
                } else if let Some(r) = GroupRoute::resolve(other) {
                    Route::Group(r)
                } else {
                    Route::Chat(ChatRoute::resolve(other)?)
                }
            }
        })
    }

    fn allow(&self) -> &'static str {
        match self {
            Route::Home
            | Route::Settings
            | Route::LoginSalt
            | Route::Asset(_)
            | Route::Files
            | Route::File(_)
            | Route::FileRaw(_)
            | Route::Profile(_) => GET,
            Route::Register
            | Route::Login
            | Route::FileUpload
            | Route::SettingsSignature
            | Route::SettingsInvites => GET_POST,
            Route::Logout
            | Route::SettingsPassword
            | Route::SettingsDestruction
            | Route::SettingsDelete
            | Route::FileDownload(_)
            | Route::FileDelete(_)
            | Route::FileShare(_)
            | Route::FileRevoke(_) => POST,
            Route::Connections(r) => r.allow(),
            Route::Chat(r) => r.allow(),
            Route::Group(r) => r.allow(),
            Route::E2e(r) => r.allow(),
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
        Route::Home if get => crate::home::handlers::home(ctx, req).await,
        Route::Register if get => accounts::register_form(ctx, req).await,
        Route::Register if post => accounts::register_submit(ctx, req).await,
        Route::Login if get => accounts::login_form(ctx, req).await,
        Route::Login if post => accounts::login_submit(ctx, req).await,
        Route::LoginSalt if get => accounts::login_salt(ctx, req).await,
        Route::Logout if post => accounts::logout(ctx, req).await,
        Route::Settings if get => accounts::settings(ctx, req).await,
        Route::SettingsPassword if post => accounts::change_password(ctx, req).await,
        Route::SettingsDestruction if post => accounts::change_destruction(ctx, req).await,
        Route::SettingsDelete if post => accounts::delete_account(ctx, req).await,
        Route::SettingsSignature if get => accounts::signature_settings(ctx, req).await,
        Route::SettingsSignature if post => accounts::signature_submit(ctx, req).await,
        Route::SettingsInvites if get => crate::invites::handlers::page(ctx, req).await,
        Route::SettingsInvites if post => crate::invites::handlers::create(ctx, req).await,
        Route::Files if get => files::list(ctx, req).await,
        Route::FileUpload if get => receive::upload_form(ctx, req).await,
        Route::FileUpload if post => receive::upload_submit(ctx, req).await,
        Route::File(id) if get => files::show(ctx, req, id).await,
        Route::FileDownload(id) if post => download::download(ctx, req, id).await,
        Route::FileRaw(id) if get => download::raw(ctx, req, id).await,
        Route::FileDelete(id) if post => files::delete(ctx, req, id).await,
        Route::FileShare(id) if post => files::share(ctx, req, id).await,
        Route::FileRevoke(id) if post => files::revoke(ctx, req, id).await,
        Route::Profile(name) if get => crate::profile::show(ctx, req, name).await,
        Route::Connections(r) if allows(r.allow(), req.method()) => {
            connections::dispatch(ctx, req, r).await
        }
        Route::Chat(r) if allows(r.allow(), req.method()) => chat::dispatch(ctx, req, r).await,
        Route::Group(r) if allows(r.allow(), req.method()) => groups::dispatch(ctx, req, r).await,
        Route::E2e(r) if allows(r.allow(), req.method()) => e2e::dispatch(ctx, req, r).await,
        Route::Asset(asset) if get => Ok(asset_response(asset)),
        other => Err(AppError::MethodNotAllowed {
            allow: other.allow(),
        }),
    }
}

/// Whether a request to `path` is one a page makes by itself (see `Ctx::passive`): the
/// live stream, and the stylesheet and icon, which must not keep an idle session alive.
pub fn is_passive(path: &str) -> bool {
    matches!(
        Route::resolve(path),
        Some(
            Route::Asset(_)
                | Route::Chat(ChatRoute::Live(_))
                | Route::Group(GroupRoute::Live(_))
                | Route::E2e(E2eRoute::Socket)
        )
    )
}

/// Whether a GET of `path` renders a page with the navigation, whose counts are worth
/// reading first: not the stylesheet and icon, the live streams, `/chat/poll` (JSON), the
/// stylesheets that hide messages, or a file's raw blob.
pub fn shows_nav(path: &str) -> bool {
    !matches!(
        Route::resolve(path),
        Some(
            Route::Asset(_)
                | Route::FileRaw(_)
                | Route::Chat(ChatRoute::Live(_) | ChatRoute::Poll | ChatRoute::Expired(_))
                | Route::Group(GroupRoute::Live(_))
        )
    )
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
