//! The one page layout and small shared partials. Views are pure functions from data to
//! `Markup`; maud escapes every interpolated string.

use maud::{DOCTYPE, Markup, html};

use super::assets;
use super::error::ErrorView;

/// What every page needs to know about the request it answers.
#[derive(Clone)]
pub struct PageCtx {
    /// Show the "not anonymous" banner (plain-HTTP door).
    pub banner: bool,
    /// The logged-in member's name, if any.
    pub user: Option<String>,
    /// CSRF token for this page's forms (session-bound or pre-session-bound).
    pub csrf: String,
    /// What waits for the logged-in member, counted beside the navigation's links.
    pub nav: Nav,
    /// The navigation offers "Register" (registration is not closed).
    pub can_register: bool,
}

/// The counts beside Connections and Groups in the navigation (see `home::nav_counts`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Nav {
    /// Requests received and unread one-to-one messages.
    pub connections: usize,
    /// Invitations and unread group messages.
    pub groups: usize,
    /// Counting unread messages stopped at its cap: there are more.
    pub capped: bool,
}

/// A navigation link with what waits behind it, if anything ("Groups 3", read out as
/// "Groups, 3 waiting").
fn nav_link(href: &str, label: &str, waiting: usize, capped: bool) -> Markup {
    html! {
        a href=(href) {
            (label)
            @if waiting > 0 {
                " " span.count { (waiting) @if capped { "+" } }
                span.visually-hidden { " waiting" }
            }
        }
    }
}

impl std::fmt::Debug for PageCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PageCtx")
            .field("banner", &self.banner)
            .finish_non_exhaustive()
    }
}

/// The hidden CSRF field every state-changing form carries.
pub fn csrf_field(ctx: &PageCtx) -> Markup {
    html! { input type="hidden" name="csrf" value=(ctx.csrf); }
}

/// A whole page.
pub fn page(ctx: &PageCtx, title: &str, body: Markup) -> Markup {
    page_with_scripts(ctx, title, body, &[])
}

/// A whole page that runs our own scripts (end-to-end pages only; their response carries
/// `response::CSP_WITH_SCRIPTS`). Each is referenced by its content-hashed path with
/// Subresource Integrity, deferred.
pub fn page_with_scripts(
    ctx: &PageCtx,
    title: &str,
    body: Markup,
    scripts: &[&assets::Script],
) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="no-referrer";
                title { (title) " · ghostcache" }
                link rel="stylesheet" href=(assets::STYLE.path);
                link rel="icon" type="image/svg+xml" href=(assets::ICON.path);
                link rel="icon" type="image/png" sizes="32x32" href=(assets::ICON_PNG.path);
                @for s in scripts {
                    script src=(s.asset.path) integrity=(s.integrity) defer {}
                }
            }
            body {
                @if ctx.banner {
                    div.banner role="alert" {
                        "Not anonymous: served without Tor. Anyone on this network can see who connects."
                    }
                }
                header.site {
                    nav aria-label="Main" {
                        a.brand href="/" { "ghostcache" }
                        @if let Some(name) = &ctx.user {
                            a href="/files" { "Files" }
                            (nav_link("/connections", "Connections", ctx.nav.connections, ctx.nav.capped))
                            (nav_link("/chat/groups", "Groups", ctx.nav.groups, ctx.nav.capped))
                            a href="/settings" { "Settings" }
                            span.muted { "Logged in as " strong { (name) } }
                            form method="post" action="/logout" {
                                (csrf_field(ctx))
                                button.link type="submit" { "Log out" }
                            }
                        } @else {
                            a href="/login" { "Log in" }
                            @if ctx.can_register { a href="/register" { "Register" } }
                        }
                    }
                }
                main id="main" {
                    h1 { (title) }
                    (body)
                }
                footer.site {
                    @if scripts.is_empty() {
                        p { "No JavaScript, no trackers, no external resources." }
                    } @else {
                        p { "This end-to-end page runs this site's own scripts; their hashes are published (see the README). No trackers, no external resources." }
                    }
                }
            }
        }
    }
}

/// An error page.
pub fn error_page(ctx: &PageCtx, view: &ErrorView, request_id: Option<&str>) -> Markup {
    page(
        ctx,
        view.title,
        html! {
            p.error role="alert" { (view.message) }
            @if let Some(id) = request_id {
                p { "Request id: " span.request-id { (id) } }
            }
            p { a href="/" { "Back to the start page" } }
        },
    )
}

/// A message box for form errors.
pub fn form_error(message: Option<&str>) -> Markup {
    html! {
        @if let Some(m) = message {
            p.error role="alert" { (m) }
        }
    }
}
