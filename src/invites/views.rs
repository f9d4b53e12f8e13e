//! Pages of registration modes and invitations. Pure functions from data to markup.

use maud::{Markup, html};

use super::MemberCode;
use crate::chat::views::utc_minute;
use crate::clock::UnixTime;
use crate::web::layout::{PageCtx, csrf_field, form_error, page};

/// The register page when `accounts.registration = "closed"`.
pub fn closed(ctx: &PageCtx) -> Markup {
    page(
        ctx,
        "Registration is closed",
        html! {
            p.notice role="status" { "Registration is closed: this server does not take new members." }
            p { "If you already have an account, " a href="/login" { "log in" } "." }
        },
    )
}

/// A member's invitations: the codes they hold (never the codes themselves, which are
/// stored only as hashes) and the form that makes a new one. `new_code` is shown once.
pub fn member_invites(
    ctx: &PageCtx,
    codes: &[MemberCode],
    quota: u32,
    days: u32,
    new_code: Option<(&str, UnixTime)>,
    error: Option<&str>,
) -> Markup {
    page(
        ctx,
        "Invitations",
        html! {
            @if let Some((code, expires)) = new_code {
                section.card.new-code aria-labelledby="code" {
                    h2 id="code" { "Your new invitation code" }
                    p role="status" {
                        "Give this code to the person you invite, by a private channel. It admits one "
                        "registration and is valid until " (utc_minute(expires)) ". "
                        strong { "It is shown only now: the server keeps only a fingerprint of it." }
                    }
                    p { code.invite-code { (code) } }
                }
            }
            p {
                "Registration on this server needs an invitation code. You may hold "
                (quota) " code" @if quota != 1 { "s" } " at a time; each admits one person and "
                "counts until it expires, " (days) " day" @if days != 1 { "s" } " after you make it, "
                "whether it was used or not."
            }
            (form_error(error))
            @if codes.is_empty() {
                p.muted { "You hold no invitation codes." }
            } @else {
                table.invites {
                    thead { tr { th { "Expires" } th { "Used" } } }
                    tbody {
                        @for c in codes {
                            tr {
                                td { (utc_minute(c.expires_at)) }
                                td { @if c.used { "yes" } @else { "not yet" } }
                            }
                        }
                    }
                }
            }
            form.stack method="post" action="/settings/invites" {
                (csrf_field(ctx))
                button type="submit" { "Make an invitation code" }
            }
            p { a href="/settings" { "Back to settings" } }
        },
    )
}
