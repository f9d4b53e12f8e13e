//! The end-to-end pages. Each is a server-rendered shell: a notice that the page needs
//! JavaScript (what a browser without it shows, and all it shows — never ciphertext), and
//! an application area, hidden until our script has checked that WebCrypto is there. The
//! scripts fill it from the JSON API. These are the only pages that carry scripts; their
//! answers carry `CSP_WITH_SCRIPTS`.

use hyper::{Response, StatusCode};
use maud::{Markup, html};

use super::store as e2e_store;
use crate::crypto::b64url;
use crate::store::Id;
use crate::web::Ctx;
use crate::web::assets::{self, Script};
use crate::web::error::AppError;
use crate::web::layout::{PageCtx, page_with_scripts};
use crate::web::response::{Body, html_with_scripts, redirect};

/// What a browser without JavaScript (Tor Browser at "Safest") sees on an end-to-end page.
pub fn needs_javascript(what: &str) -> Markup {
    html! {
        section #e2e-needs-js .notice role="status" {
            h2 { "This page needs JavaScript" }
            p {
                (what) " is end-to-end encrypted: its keys exist only in the browsers of its "
                "members, so only a browser that runs this site's scripts can open it. "
                "Without JavaScript (Tor Browser at the \u{201c}Safest\u{201d} security level) "
                "there is nothing here to show."
            }
            p {
                "To use it, set Tor Browser's security level to \u{201c}Safer\u{201d} or "
                "\u{201c}Standard\u{201d} (shield icon, then Settings) and reload this page. "
                "Everything else — server-sealed conversations, groups and files — keeps "
                "working without JavaScript."
            }
            p { a href="/connections" { "Back to your connections" } }
        }
    }
}

fn respond(page: &PageCtx, title: &str, body: Markup, script: &Script) -> Response<Body> {
    let markup = page_with_scripts(page, title, body, &[&*assets::E2E_CORE, script]);
    html_with_scripts(StatusCode::OK, markup)
}

/// The application area: hidden until the script shows it; carries what the script needs.
fn app(page: &PageCtx, conversation: Option<&Id>, inner: Markup) -> Markup {
    html! {
        div #e2e-app hidden data-csrf=(page.csrf)
            data-conversation=[conversation.map(|c| b64url(c))] {
            p #e2e-status role="status" aria-live="polite" {}
            (inner)
        }
    }
}

/// The unlock form every end-to-end page shows when this tab does not hold the wrapping
/// key yet (a fresh tab, or a login without JavaScript).
fn unlock_form() -> Markup {
    html! {
        form #e2e-unlock hidden {
            p {
                "Enter your password to open your end-to-end keys in this tab. It is used "
                "here, in your browser, and is not sent to the server."
            }
            label { "Password" input #e2e-password type="password" autocomplete="current-password" required; }
            button type="submit" { "Open my keys" }
        }
    }
}

/// Where a login without JavaScript to an account with end-to-end keys lands.
pub const PLAIN_LOGIN_PATH: &str = "/e2e/plain-login";

/// `GET /e2e/plain-login`: after a login without JavaScript to an account with end-to-end
/// keys, what the server could see and what to do. A page without scripts: it is what
/// a browser without JavaScript shows.
pub fn plain_login(ctx: &mut Ctx) -> Result<Response<Body>, AppError> {
    if ctx.session.is_none() {
        return Ok(redirect("/login"));
    }
    let page = ctx.page();
    let body = html! {
        section #plain-login .notice role="status" {
            p {
                "You logged in without JavaScript, so your browser sent your password to the "
                "server (a browser with JavaScript sends only a secret derived from it). "
                "Whoever runs the server, or has taken it over, could have used your password "
                "this time to derive the key that wraps your end-to-end keys, and with it read "
                "your end-to-end conversations."
            }
            p {
                "If you trust the server, nothing needs doing. If you do not, turn JavaScript on "
                "(Tor Browser's \u{201c}Standard\u{201d} or \u{201c}Safer\u{201d} level), change your "
                "password in " a href="/settings" { "Settings" } " (your browser wraps your keys "
                "again under the new one without sending it), and make new end-to-end keys in "
                a href="/e2e/setup" { "End-to-end mode" } "."
            }
            p { a href="/" { "Continue" } }
        }
    };
    Ok(crate::web::response::html(
        StatusCode::OK,
        crate::web::layout::page(&page, "You logged in without JavaScript", body),
    ))
}

/// `GET /e2e/setup`
pub async fn setup(ctx: &mut Ctx) -> Result<Response<Body>, AppError> {
    let Some(session) = ctx.session.clone() else {
        return Ok(redirect("/login"));
    };
    let me = session.user_id;
    let keys = ctx
        .state
        .store
        .run(move |s| e2e_store::keys_of(s, &me))
        .await?;
    let page = ctx.page();
    let body = html! {
        (needs_javascript("End-to-end mode"))
        @match &keys {
            Some(k) => p { "End-to-end mode is on (key generation " (k.generation) ")." },
            None => p { "End-to-end mode is off." },
        }
        (app(&page, None, html! {
            (unlock_form())
            section #e2e-setup hidden {
                p {
                    "Your browser makes your end-to-end keys: one to receive conversation keys "
                    "(RSA-OAEP 3072) and one to sign (it follows your "
                    a href="/settings/signature" { "signature setting" }
                    ": RSA-PSS, or ECDSA P-256 where you chose DSA, which browsers lack). "
                    "They are wrapped with a key derived from your password in this browser "
                    "and stored on the server as a sealed blob it cannot open."
                }
                form #e2e-enable {
                    label { "Password" input #e2e-enable-password type="password" autocomplete="current-password" required; }
                    button type="submit" #e2e-enable-button { "Turn on end-to-end mode" }
                }
                form #e2e-rekey hidden {
                    p { "Make new keys if you think your old ones were exposed: every conversation then gets a new key, and your safety numbers change." }
                    button type="submit" { "Make new keys" }
                }
                p { a href="/e2e" { "Your end-to-end conversations" } }
            }
        }))
    };
    Ok(respond(&page, "End-to-end mode", body, &assets::E2E_SETUP))
}

/// `GET /e2e`
pub async fn overview(ctx: &mut Ctx) -> Result<Response<Body>, AppError> {
    if ctx.session.is_none() {
        return Ok(redirect("/login"));
    }
    let page = ctx.page();
    let body = html! {
        (needs_javascript("This list"))
        (app(&page, None, html! {
            (unlock_form())
            section #e2e-lists hidden {
                h2 { "Conversations" }
                ul #e2e-conversations {}
                h2 { "Your connections" }
                p { "Either side can propose moving a conversation to end-to-end; it starts once the other accepts." }
                ul #e2e-connections {}
                h2 { "Invitations" }
                ul #e2e-invitations {}
                h2 { "New end-to-end group" }
                form #e2e-create {
                    label { "Name" input #e2e-group-name type="text" maxlength="64" required; }
                    button type="submit" { "Create group" }
                }
            }
        }))
    };
    Ok(respond(&page, "End-to-end", body, &assets::E2E_LIST))
}

/// `GET /e2e/c/<id>`: 404 unless the member takes part.
pub async fn conversation(ctx: &mut Ctx, id: Id) -> Result<Response<Body>, AppError> {
    let Some(session) = ctx.session.clone() else {
        return Ok(redirect("/login"));
    };
    let me = session.user_id;
    let known = ctx
        .state
        .store
        .run(move |s| {
            Ok(e2e_store::conversations_of(s, &me)?
                .into_iter()
                .any(|(c, _)| c == id))
        })
        .await?;
    if !known {
        return Err(AppError::NotFound);
    }
    let page = ctx.page();
    let body = html! {
        (needs_javascript("This conversation"))
        (app(&page, Some(&id), html! {
            (unlock_form())
            section #e2e-conv hidden {
                p #e2e-state {}
                div #e2e-safety hidden {
                    h2 { "Safety number" }
                    p { "Compare it with the other member's, in person or by another channel. If it matches, nobody (the server included) has put its own keys between you." }
                    p #e2e-safety-number .safety {}
                }
                div #e2e-members {}
                form #e2e-invite hidden {
                    label { "Invite a connection" input #e2e-invite-name type="text" required; }
                    button type="submit" { "Invite" }
                }
                button #e2e-accept type="button" hidden { "Accept end-to-end encryption" }
                button #e2e-leave type="button" hidden { "Leave the group" }
                ol #e2e-messages .messages {}
                form #e2e-send hidden {
                    label { "Message" textarea #e2e-text maxlength="4096" required {} }
                    label {
                        "Self-destruct"
                        select #e2e-timer {
                            option value="" selected { "Never" }
                            @for (secs, label) in crate::chat::TIMERS {
                                option value=(secs) { "After " (label) }
                            }
                        }
                    }
                    button type="submit" { "Send" }
                }
            }
        }))
    };
    Ok(respond(
        &page,
        "End-to-end conversation",
        body,
        &assets::E2E_CONVERSATION,
    ))
}
