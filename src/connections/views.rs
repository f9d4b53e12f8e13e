//! Connection pages. Pure functions from data to markup.

use maud::{Markup, html};

use super::{Entry, Found, Overview, Relation};
use crate::chat::views::date_of_day;
use crate::crypto::b64url;
use crate::web::layout::{PageCtx, csrf_field, form_error, page};

/// The search form (also on the connections page).
fn search_form(typed: &str, prefix: bool) -> Markup {
    html! {
        form.inline method="get" action="/search" role="search" {
            label {
                "Find a member by username"
                input type="search" name="q" value=(typed) required maxlength="64"
                    autocomplete="off" autocapitalize="none" spellcheck="false";
                small {
                    @if prefix { "Names starting with what you type (at least 3 characters)." }
                    @else { "Type the exact username." }
                }
            }
            button type="submit" { "Search" }
        }
    }
}

/// A one-button form posting to `action`, with optional hidden fields.
fn button_form(
    ctx: &PageCtx,
    action: &str,
    fields: &[(&str, &str)],
    label: &str,
    danger: bool,
) -> Markup {
    html! {
        form.inline method="post" action=(action) {
            (csrf_field(ctx))
            @for (name, value) in fields {
                input type="hidden" name=(name) value=(value);
            }
            @if danger {
                button.danger type="submit" { (label) }
            } @else {
                button type="submit" { (label) }
            }
        }
    }
}

/// Search results. `results` is `None` before anything was searched.
pub fn search(ctx: &PageCtx, typed: &str, results: Option<&[Found]>, prefix: bool) -> Markup {
    page(
        ctx,
        "Search",
        html! {
            (search_form(typed, prefix))
            @match results {
                None => {}
                Some([]) => {
                    p.notice role="status" { "No member found with that name." }
                }
                Some(found) => {
                    ul.people aria-label="Members found" {
                        @for f in found {
                            li {
                                strong.name { (f.username) }
                                " "
                                (relation_actions(ctx, f))
                            }
                        }
                    }
                }
            }
            p { a href="/connections" { "Your connections" } }
        },
    )
}

fn relation_actions(ctx: &PageCtx, f: &Found) -> Markup {
    html! {
        @match f.relation {
            Relation::Myself => span.muted { "(that is you)" },
            Relation::Stranger => {
                (button_form(ctx, "/connect", &[("username", &f.username)], "Send connection request", false))
            },
            Relation::RequestSent(_) => span.muted { "Request sent, waiting for an answer." },
            Relation::RequestReceived(_) => {
                span { "Wants to connect with you: " a href="/connections" { "answer" } }
            },
            Relation::Connected(id) => {
                span { "Connected: " a href=(format!("/chat/{}", b64url(&id))) { "open chat" } }
            },
            Relation::Hidden => {},
        }
    }
}

/// The form to send a request by name.
pub fn connect(ctx: &PageCtx, typed: &str, error: Option<&str>) -> Markup {
    page(
        ctx,
        "Send a connection request",
        html! {
            (form_error(error))
            (connect_form(ctx, typed))
            p { a href="/connections" { "Your connections" } }
        },
    )
}

fn connect_form(ctx: &PageCtx, typed: &str) -> Markup {
    html! {
        form.inline method="post" action="/connect" {
            (csrf_field(ctx))
            label {
                "Username"
                input type="text" name="username" value=(typed) required maxlength="64"
                    autocomplete="off" autocapitalize="none" spellcheck="false";
            }
            button type="submit" { "Send request" }
        }
    }
}

/// An accepted connection with what the page shows beside it.
#[derive(Clone)]
pub struct ConnectedView {
    pub entry: Entry,
    pub online: bool,
    pub unread: usize,
}

/// Everything the connections page shows.
pub struct ConnectionsPage<'a> {
    pub overview: &'a Overview,
    pub connected: &'a [ConnectedView],
    pub notice: Option<&'a str>,
}

super::debug_without_names!(ConnectedView, ConnectionsPage<'_>);

/// "online" / "offline" badge.
pub fn presence_badge(online: bool) -> Markup {
    html! {
        @if online { span.badge.online { "online" } } @else { span.badge.offline { "offline" } }
    }
}

/// The connections page.
pub fn connections(ctx: &PageCtx, p: &ConnectionsPage<'_>) -> Markup {
    let o = p.overview;
    page(
        ctx,
        "Connections",
        html! {
            @if let Some(n) = p.notice { p.notice role="status" { (n) } }
            section.card aria-labelledby="find" {
                h2 id="find" { "Find and connect" }
                (search_form("", false))
                (connect_form(ctx, ""))
            }
            section aria-labelledby="received" {
                h2 id="received" { "Requests for you" }
                @if o.received.is_empty() { p.muted { "None." } }
                ul.people {
                    @for e in &o.received {
                        @let id = b64url(&e.connection);
                        li {
                            strong.name { (e.username) }
                            " " span.muted { "asked on " (date_of_day(e.day)) }
                            (button_form(ctx, &format!("/connect/accept/{id}"), &[], "Accept", false))
                            (button_form(ctx, &format!("/connect/deny/{id}"), &[], "Deny", false))
                            (button_form(ctx, "/block", &[("username", &e.username)], "Block", true))
                        }
                    }
                }
            }
            section aria-labelledby="connected" {
                h2 id="connected" { "Connected" }
                @if p.connected.is_empty() { p.muted { "Nobody yet." } }
                ul.people {
                    @for c in p.connected {
                        @let id = b64url(&c.entry.connection);
                        li {
                            strong.name { (c.entry.username) }
                            " " (presence_badge(c.online))
                            " " a href=(format!("/chat/{id}")) {
                                "Chat"
                                @if c.unread > 0 { " (" (c.unread) " new)" }
                            }
                            (button_form(ctx, &format!("/connect/remove/{id}"), &[], "Remove", true))
                            (button_form(ctx, "/block", &[("username", &c.entry.username)], "Block", true))
                        }
                    }
                }
                p { a href="/users/online" { "Who is online" } }
            }
            section aria-labelledby="sent" {
                h2 id="sent" { "Requests you sent" }
                @if o.sent.is_empty() { p.muted { "None." } }
                ul.people {
                    @for e in &o.sent {
                        li {
                            strong.name { (e.username) }
                            " " span.muted { "sent on " (date_of_day(e.day)) }
                            (button_form(ctx, &format!("/connect/remove/{}", b64url(&e.connection)), &[], "Withdraw", false))
                        }
                    }
                }
            }
            section aria-labelledby="blocked" {
                h2 id="blocked" { "Blocked" }
                @if o.blocked.is_empty() { p.muted { "Nobody." } }
                ul.people {
                    @for (id, name) in &o.blocked {
                        li {
                            strong.name { (name) }
                            (button_form(ctx, "/unblock", &[("member", &b64url(id))], "Unblock", false))
                        }
                    }
                }
                form.inline method="post" action="/block" {
                    (csrf_field(ctx))
                    label {
                        "Block a member by username"
                        input type="text" name="username" required maxlength="64"
                            autocomplete="off" autocapitalize="none" spellcheck="false";
                    }
                    button.danger type="submit" { "Block" }
                }
                p.muted {
                    "A member you block loses their connection or request with you, with its messages and keys, "
                    "and can no longer find you."
                }
            }
        },
    )
}
