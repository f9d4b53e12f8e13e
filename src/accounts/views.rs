//! Account pages. Pure functions from data to markup.

use maud::{Markup, html};

use crate::connections::keys::SignatureScheme;
use crate::invites::RegistrationMode;
use crate::web::assets;
use crate::web::layout::{PageCtx, csrf_field, form_error, page, page_with_scripts};

/// The start page. `registration` decides what it offers a visitor: the registration
/// form, the form with a word about invitation codes, or only the login.
pub fn home(
    ctx: &PageCtx,
    notice: Option<&str>,
    registration: RegistrationMode,
    inactivity_days: u32,
) -> Markup {
    page(
        ctx,
        "A private meeting place",
        html! {
            @if let Some(n) = notice { p.notice role="status" { (n) } }
            @if let Some(name) = &ctx.user {
                p { "Welcome back, " strong { (name) } "." }
                ul {
                    li { a href="/settings" { "Account settings" } }
                }
            } @else {
                p {
                    "ghostcache is a small, private meeting place run by one person for their community. "
                    "It is reached only through Tor, needs no JavaScript, and keeps what you store encrypted."
                }
                ul {
                    li { "No e-mail address, no phone number: a username and two passwords." }
                    li { "A destruction password: logging in with it deletes your account at once, and looks like a failed login." }
                    li { "Accounts that nobody logs into for " (inactivity_days) " days are deleted automatically." }
                }
                @match registration {
                    RegistrationMode::Open => p {
                        a.button href="/register" { "Create an account" }
                        " or "
                        a href="/login" { "log in" }
                    },
                    RegistrationMode::Invite => {
                        p { "New accounts need an invitation code from a member or from the person who runs this place." }
                        p {
                            a.button href="/register" { "Create an account with a code" }
                            " or "
                            a href="/login" { "log in" }
                        }
                    },
                    RegistrationMode::Closed => {
                        p { "This place is not taking new members." }
                        p { a.button href="/login" { "Log in" } }
                    },
                }
            }
        },
    )
}

/// Registration form, with an error and the name typed so far.
pub fn register(
    ctx: &PageCtx,
    csrf: &str,
    error: Option<&str>,
    username: &str,
    min_chars: usize,
    ask_invitation: bool,
) -> Markup {
    page_with_scripts(
        ctx,
        "Create an account",
        html! {
            (form_error(error))
            form.stack method="post" action="/register" data-derive data-distinct data-min=(min_chars) {
                input type="hidden" name="csrf" value=(csrf);
                (derive_status())
                label {
                    "Username"
                    input type="text" name="username" value=(username) required
                        minlength="3" maxlength="32" autocomplete="username" autocapitalize="none" spellcheck="false";
                    small { "3 to 32 letters or digits of one script, and _ - ." }
                }
                label {
                    "Password"
                    input type="password" name="password" required minlength=(min_chars) autocomplete="new-password" data-secret="new";
                    small { "At least " (min_chars) " characters. It cannot be recovered or reset." }
                }
                label {
                    "Destruction password"
                    input type="password" name="d_pass" required minlength=(min_chars) autocomplete="off" data-secret="new";
                    small {
                        "Different from your password. Logging in with it deletes your account and everything in it at once; "
                        "the page looks exactly like a failed login."
                    }
                }
                @if ask_invitation {
                    label {
                        "Invitation code"
                        input type="text" name="invite" required maxlength="64" autocomplete="off"
                            autocapitalize="none" spellcheck="false";
                        small { "Registration here needs an invitation. Paste the code you were given." }
                    }
                }
                button type="submit" { "Create account" }
            }
            (secret_note())
        },
        &form_scripts(),
    )
}

/// What the password forms run: the login-secret derivation (and the key ring's code,
/// for a password change that wraps the end-to-end keys again).
fn form_scripts() -> [&'static assets::Script; 2] {
    [&*assets::E2E_CORE, &*assets::LOGIN_SECRET]
}

/// Where the script says what it is doing, or why it sent nothing.
fn derive_status() -> Markup {
    html! { p.derive-status role="alert" hidden {} }
}

/// A word on what the forms send.
fn secret_note() -> Markup {
    html! {
        p.muted {
            "With JavaScript on, your browser sends a secret derived from your password, never "
            "the password itself; without JavaScript it sends the password and the server "
            "derives the same secret."
        }
    }
}

/// Login form.
pub fn login(ctx: &PageCtx, csrf: &str, error: Option<&str>, notice: Option<&str>) -> Markup {
    page_with_scripts(
        ctx,
        "Log in",
        html! {
            @if let Some(n) = notice { p.notice role="status" { (n) } }
            (form_error(error))
            form.stack method="post" action="/login" data-derive data-keep-wrap {
                input type="hidden" name="csrf" value=(csrf);
                (derive_status())
                label {
                    "Username"
                    input type="text" name="username" required maxlength="32"
                        autocomplete="username" autocapitalize="none" spellcheck="false";
                }
                label {
                    "Password"
                    input type="password" name="password" required autocomplete="current-password" data-secret="current";
                }
                button type="submit" { "Log in" }
            }
            p.muted { "No account yet? " a href="/register" { "Create one" } "." }
            (secret_note())
        },
        &form_scripts(),
    )
}

/// Which settings form a message belongs to.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum SettingsForm {
    Password,
    Destruction,
    Delete,
}

/// Account settings.
pub fn settings(
    ctx: &PageCtx,
    idle_minutes: u64,
    message: Option<(SettingsForm, &str)>,
    notice: Option<&str>,
    invites: bool,
    older_login: bool,
    min_chars: usize,
) -> Markup {
    let error_for = |which: SettingsForm| message.filter(|(w, _)| *w == which).map(|(_, m)| m);
    let name = ctx.user.as_deref().unwrap_or_default();
    page_with_scripts(
        ctx,
        "Account settings",
        html! {
            @if let Some(n) = notice { p.notice role="status" { (n) } }
            @if older_login {
                p.notice #older-login role="status" {
                    "Your account was made before login secrets: your browser still sends your "
                    "password when you log in, even with JavaScript on. Set your destruction "
                    "password again below (it may be the same one) to move it; from then on a "
                    "browser with JavaScript sends only a secret derived from your password, and "
                    "end-to-end mode can be turned on."
                }
            }
            p.muted { "You are logged out after " (idle_minutes) " minutes without activity." }
            section.card aria-labelledby="pw" {
                h2 id="pw" { "Change password" }
                (form_error(error_for(SettingsForm::Password)))
                form.stack method="post" action="/settings/password" data-derive data-rewrap data-name=(name) data-min=(min_chars) {
                    (csrf_field(ctx))
                    (derive_status())
                    label { "Current password" input type="password" name="current_password" required autocomplete="current-password" data-secret="current"; }
                    label { "New password" input type="password" name="new_password" required autocomplete="new-password" data-secret="new"; }
                    button type="submit" { "Change password" }
                }
            }
            section.card aria-labelledby="dp" {
                h2 id="dp" { "Change destruction password" }
                (form_error(error_for(SettingsForm::Destruction)))
                form.stack method="post" action="/settings/destruction-password" data-derive data-name=(name) data-min=(min_chars) {
                    (csrf_field(ctx))
                    (derive_status())
                    label { "Current password" input type="password" name="current_password" required autocomplete="current-password" data-secret="current"; }
                    label { "New destruction password" input type="password" name="new_d_pass" required autocomplete="off" data-secret="new"; }
                    button type="submit" { "Change destruction password" }
                }
            }
            section.card aria-labelledby="sig" {
                h2 id="sig" { "Signature scheme" }
                p {
                    "Your messages are signed with RSA-PSS (the default) or DSA. "
                    a href="/settings/signature" { "Choose your signature scheme" }
                }
            }
            @if invites {
                section.card aria-labelledby="inv" {
                    h2 id="inv" { "Invitations" }
                    p { "Registration here needs an invitation code. " a href="/settings/invites" { "Invite someone" } }
                }
            }
            section.card aria-labelledby="e2e" {
                h2 id="e2e" { "End-to-end encryption" }
                p {
                    "With JavaScript on, your browser can make keys the server never holds, for "
                    "conversations and groups only their members can read. "
                    a href="/e2e/setup" { "End-to-end mode" } " · " a href="/e2e" { "End-to-end conversations" }
                }
            }
            section.card aria-labelledby="del" {
                h2 id="del" { "Delete account" }
                p { "This deletes your account and everything in it immediately. It cannot be undone." }
                (form_error(error_for(SettingsForm::Delete)))
                form.stack method="post" action="/settings/delete" data-derive data-name=(name) {
                    (csrf_field(ctx))
                    (derive_status())
                    label { "Password" input type="password" name="current_password" required autocomplete="current-password" data-secret="current"; }
                    button.danger type="submit" { "Delete my account" }
                }
            }
            (secret_note())
        },
        &form_scripts(),
    )
}

/// `/settings/signature`: the scheme the member signs new connections and groups with.
pub fn signature_settings(ctx: &PageCtx, current: SignatureScheme, notice: Option<&str>) -> Markup {
    page(
        ctx,
        "Signature scheme",
        html! {
            @if let Some(n) = notice { p.notice role="status" { (n) } }
            p {
                "You sign with " strong.current-scheme { (current.name()) } ". "
                "The choice applies to connections you accept or that accept you, and to groups \
                 you create or join, from now on; existing ones keep their keys. Either way your \
                 contacts verify your signatures."
            }
            form.stack method="post" action="/settings/signature" {
                (csrf_field(ctx))
                fieldset {
                    legend { "Sign new connections and groups with" }
                    @for scheme in [SignatureScheme::RsaPss, SignatureScheme::Dsa] {
                        label {
                            input type="radio" name="scheme" value=(scheme.form_value())
                                checked[scheme == current];
                            " " (scheme.name())
                            @if scheme == SignatureScheme::RsaPss { " (default)" }
                        }
                    }
                }
                button type="submit" { "Save" }
            }
            p.muted {
                "Signatures are made by this server with keys it holds for you and unlocks while \
                 you are logged in. They show that a stored message was not altered or forged by \
                 someone without those keys; they do not prove authorship against the server's \
                 operator. The README's security section explains both schemes."
            }
            p { a href="/settings" { "Back to settings" } }
        },
    )
}
