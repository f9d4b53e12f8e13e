//! Account handlers: register, login (with the destruction password), logout, settings.

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

use super::secret::Presented;
use super::views::{self, SettingsForm};
use super::{AccountError, LoginOutcome, Username, check_password_shape};
use crate::chat::signing;
use crate::connections::keys::SignatureScheme;
use crate::invites::RegistrationMode;
use crate::web::Ctx;
use crate::web::error::AppError;
use crate::web::response::{Body, html, html_with_scripts, redirect};

pub async fn home(ctx: &mut Ctx, req: Request<Incoming>) -> Result<Response<Body>, AppError> {
    let q = ctx.query(&req)?;
    let notice = q
        .get("deleted")
        .map(|_| "Your account and everything in it have been deleted.");
    let page = ctx.page();
    let accounts = &ctx.state.config.accounts;
    Ok(html(
        StatusCode::OK,
        views::home(
            &page,
            notice,
            accounts.registration,
            accounts.inactivity_days,
        ),
    ))
}

pub async fn register_form(
    ctx: &mut Ctx,
    _req: Request<Incoming>,
) -> Result<Response<Body>, AppError> {
    let mode = ctx.state.config.accounts.registration;
    if mode == RegistrationMode::Closed {
        let page = ctx.page();
        return Ok(html(StatusCode::OK, crate::invites::views::closed(&page)));
    }
    let csrf = ctx.anonymous_csrf();
    let page = ctx.page();
    let min = ctx.state.config.accounts.min_password_chars;
    Ok(html_with_scripts(
        StatusCode::OK,
        views::register(
            &page,
            &csrf,
            None,
            "",
            min,
            mode == RegistrationMode::Invite,
        ),
    ))
}

/// The one answer to every registration whose invitation code is missing, malformed,
/// unknown, used up or expired.
const BAD_INVITATION: &str = "This invitation code is not valid. Codes work once and expire: ask the \
     person who invited you for a new one.";

pub async fn register_submit(
    ctx: &mut Ctx,
    req: Request<Incoming>,
) -> Result<Response<Body>, AppError> {
    let mode = ctx.state.config.accounts.registration;
    if mode == RegistrationMode::Closed {
        let page = ctx.page();
        return Ok(html(
            StatusCode::FORBIDDEN,
            crate::invites::views::closed(&page),
        ));
    }
    let form = ctx.form(req).await?;
    ctx.check_anonymous_form(&form)?;
    let typed = form.text("username");
    let invite = mode == RegistrationMode::Invite;
    let refuse = |ctx: &mut Ctx, status: StatusCode, e: &dyn std::fmt::Display, typed: &str| {
        let csrf = ctx.anonymous_csrf();
        let page = ctx.page();
        let min = ctx.state.config.accounts.min_password_chars;
        // Echo the name back only when it is short enough to be a real attempt.
        let echo = if typed.len() <= 64 { typed } else { "" };
        Ok(html_with_scripts(
            status,
            views::register(&page, &csrf, Some(&e.to_string()), echo, min, invite),
        ))
    };
    let username = match Username::parse(typed) {
        Ok(u) => u,
        Err(e) => return refuse(ctx, StatusCode::BAD_REQUEST, &e, typed),
    };
    let min = ctx.state.config.accounts.min_password_chars;
    let (password, destruction) = match (
        Presented::from_form(&form, "password"),
        Presented::from_form(&form, "d_pass"),
    ) {
        (Ok(p), Ok(d)) => (p, d),
        (Err(e), _) | (_, Err(e)) => return refuse(ctx, StatusCode::BAD_REQUEST, &e, typed),
    };
    // A password's shape is checked where the password is: here when it came, in the
    // browser when only its login secret did (the script refuses the same way).
    for (p, field) in [(&password, "password"), (&destruction, "d_pass")] {
        if p.is_password()
            && let Err(e) = check_password_shape(form.text(field), min)
        {
            return refuse(ctx, StatusCode::BAD_REQUEST, &e, typed);
        }
    }
    if password.is_password()
        && destruction.is_password()
        && form.text("password") == form.text("d_pass")
    {
        return refuse(
            ctx,
            StatusCode::BAD_REQUEST,
            &AccountError::SamePasswords,
            typed,
        );
    }
    if !ctx.state.limits.register_allowed() {
        return Err(AppError::TooManyRequests);
    }
    // In invite mode, one use of the code is spent before anything else is looked at, so
    // that a stranger without a code learns nothing, not even whether a name is taken.
    let reserved = if invite {
        let code = form.text("invite").to_owned();
        let now = ctx.now;
        match ctx
            .state
            .store
            .run(move |s| crate::invites::reserve(s, &code, now))
            .await?
        {
            Some(hash) => Some(hash),
            None => return refuse(ctx, StatusCode::FORBIDDEN, &BAD_INVITATION, typed),
        }
    } else {
        None
    };
    let delivery = match ctx.state.keypool.take().await {
        Ok(d) => d,
        Err(e) => {
            give_back(ctx, reserved).await;
            return Err(e.into());
        }
    };
    let policy = std::sync::Arc::clone(&ctx.state.accounts);
    let now = ctx.now;
    let name = username.clone();
    let created = ctx
        .state
        .hash_job(move |store| {
            super::create_account(
                store,
                &policy,
                &name,
                &password,
                &destruction,
                delivery,
                now,
            )
        })
        .await;
    let created = match created {
        Ok(c) => c,
        Err(e) => {
            give_back(ctx, reserved).await;
            return Err(e);
        }
    };
    match created {
        // Not logged at the default level: a log line carries its time.
        Ok(_) => {
            tracing::debug!("account registered");
            Ok(redirect("/login?registered=1"))
        }
        Err(e) => {
            give_back(ctx, reserved).await;
            let status = match e {
                AccountError::Taken => StatusCode::CONFLICT,
                _ => StatusCode::BAD_REQUEST,
            };
            refuse(ctx, status, &e, typed)
        }
    }
}

/// Return the invitation use a registration took when the registration failed after all.
async fn give_back(ctx: &Ctx, reserved: Option<[u8; 32]>) {
    if let Some(hash) = reserved
        && let Err(e) = ctx
            .state
            .store
            .run(move |s| crate::invites::release(s, &hash))
            .await
    {
        tracing::warn!(error = %e, "could not give back an invitation use");
    }
}

pub async fn login_form(ctx: &mut Ctx, req: Request<Incoming>) -> Result<Response<Body>, AppError> {
    let q = ctx.query(&req)?;
    let notice = q
        .get("registered")
        .map(|_| "Your account is ready. Log in with your password.");
    let csrf = ctx.anonymous_csrf();
    let page = ctx.page();
    Ok(html_with_scripts(
        StatusCode::OK,
        views::login(&page, &csrf, None, notice),
    ))
}

/// The answer to every failed login, and to a login with the destruction password: the
/// same status and the same page.
fn login_failed(ctx: &mut Ctx) -> Response<Body> {
    let csrf = ctx.anonymous_csrf();
    let page = ctx.page();
    html_with_scripts(
        StatusCode::FORBIDDEN,
        views::login(&page, &csrf, Some("Wrong username or password."), None),
    )
}

pub async fn login_submit(
    ctx: &mut Ctx,
    req: Request<Incoming>,
) -> Result<Response<Body>, AppError> {
    let form = ctx.form(req).await?;
    ctx.check_anonymous_form(&form)?;
    // A name that cannot exist fails without touching the store; nothing is learnt from
    // that, since the rules for names are public.
    let Ok(username) = Username::parse(form.text("username")) else {
        return Ok(login_failed(ctx));
    };
    // Every attempt for a name waits its turn at the gate (never refused while the queue
    // has room), so that a stranger's wrong passwords cannot keep the member out.
    let gate_key = ctx.state.gate.key(username.as_str());
    let Ok(ticket) = ctx.state.gate.admit(&gate_key).await else {
        return Err(AppError::TooManyRequests);
    };
    let presented = match Presented::from_form(&form, "password") {
        Ok(p) => p,
        Err(e) => {
            drop(ticket);
            let csrf = ctx.anonymous_csrf();
            let page = ctx.page();
            return Ok(html_with_scripts(
                StatusCode::BAD_REQUEST,
                views::login(&page, &csrf, Some(&e.to_string()), None),
            ));
        }
    };
    let plain = presented.is_password();
    let policy = std::sync::Arc::clone(&ctx.state.accounts);
    let now = ctx.now;
    let outcome = ctx
        .state
        .hash_job(move |store| {
            let outcome = super::check_login(store, &policy, &username, &presented, now)?;
            // Whether to explain afterwards what a login without JavaScript let the
            // server see (only for members whose end-to-end keys it concerns).
            let explain = match &outcome {
                LoginOutcome::Success { user_id, .. } if plain => {
                    crate::e2e::store::keys_of(store, user_id)?.is_some()
                }
                _ => false,
            };
            Ok((outcome, explain))
        })
        .await?;
    let (outcome, explain) = outcome;
    match outcome {
        LoginOutcome::Success {
            user_id,
            username,
            data_key,
            credentials_sealed,
        } => {
            ctx.start_session(user_id, username, data_key);
            // A destruction or password change that committed after the check ends the
            // session made for it (it also ends every session it finds).
            let current = ctx
                .state
                .store
                .run(move |s| super::login::still_current(s, &user_id, &credentials_sealed))
                .await?;
            if !current {
                ctx.undo_session_start();
                return Ok(login_failed(ctx));
            }
            ticket.succeeded();
            Ok(redirect(if explain {
                crate::e2e::pages::PLAIN_LOGIN_PATH
            } else {
                "/"
            }))
        }
        LoginOutcome::Destroyed(user_id) => {
            // Durable already; the data is erased in the background. Answered like any
            // failure.
            ctx.state.destroyed(user_id);
            Ok(login_failed(ctx))
        }
        LoginOutcome::Failure => Ok(login_failed(ctx)),
    }
}

/// `GET /login/salt?username=<name>`: what a browser needs to derive the login secret for
/// a name (`secret.rs`). The same shape for every name, existing or not; nothing in it is
/// secret (the salt only keeps one installation's derivations apart from another's).
pub async fn login_salt(ctx: &mut Ctx, req: Request<Incoming>) -> Result<Response<Body>, AppError> {
    let q = ctx.query(&req)?;
    let typed = q.get("username").unwrap_or_default().to_owned();
    if typed.len() > 256 {
        return Err(AppError::BadRequest("That username is too long.".into()));
    }
    let policy = std::sync::Arc::clone(&ctx.state.accounts);
    let params = ctx
        .state
        .store
        .run(move |s| super::login_params(s, &policy, &typed))
        .await?;
    Ok(crate::chat::handlers::json(
        StatusCode::OK,
        &serde_json::json!({
            "name": params.name,
            "salt": crate::crypto::b64url(&params.salt),
            "iterations": params.iterations,
            "secret": params.sends_secret,
        }),
    ))
}

pub async fn logout(ctx: &mut Ctx, req: Request<Incoming>) -> Result<Response<Body>, AppError> {
    let form = ctx.form(req).await?;
    ctx.check_member_form(&form)?;
    ctx.end_session();
    Ok(redirect("/"))
}

async fn settings_page(
    ctx: &mut Ctx,
    status: StatusCode,
    message: Option<(SettingsForm, &str)>,
    notice: Option<&str>,
) -> Result<Response<Body>, AppError> {
    let older_login = match ctx.session.as_ref().map(|s| s.user_id) {
        Some(id) => {
            ctx.state
                .store
                .run(move |s| super::passwords::uses_older_login(s, &id))
                .await?
        }
        None => false,
    };
    let invites = crate::invites::handlers::members_may_invite(ctx);
    let page = ctx.page();
    let idle = ctx.state.config.accounts.session_idle_timeout_secs / 60;
    let min = ctx.state.config.accounts.min_password_chars;
    Ok(html_with_scripts(
        status,
        views::settings(&page, idle, message, notice, invites, older_login, min),
    ))
}

pub async fn settings(ctx: &mut Ctx, req: Request<Incoming>) -> Result<Response<Body>, AppError> {
    if ctx.session.is_none() {
        return Ok(redirect("/login"));
    }
    let q = ctx.query(&req)?;
    let notice = match q.get("changed") {
        Some("password") => Some("Your password has been changed."),
        Some("destruction") => Some("Your destruction password has been changed."),
        _ => None,
    };
    settings_page(ctx, StatusCode::OK, None, notice).await
}

fn account_error_status(e: &AccountError) -> StatusCode {
    match e {
        AccountError::WrongPassword => StatusCode::FORBIDDEN,
        AccountError::Conflict
        | AccountError::Taken
        | AccountError::OlderLogin
        | AccountError::NeedsBrowser => StatusCode::CONFLICT,
        _ => StatusCode::BAD_REQUEST,
    }
}

/// The two password fields of a settings form, or why not (shown on the page).
fn presented_pair(
    ctx: &Ctx,
    form: &crate::web::request::Form,
    new_field: &str,
) -> Result<(Presented, Presented), String> {
    let current = Presented::from_form(form, "current_password").map_err(|e| e.to_string())?;
    let new = Presented::from_form(form, new_field).map_err(|e| e.to_string())?;
    if new.is_password() {
        check_password_shape(
            form.text(new_field),
            ctx.state.config.accounts.min_password_chars,
        )
        .map_err(|e| e.to_string())?;
    }
    Ok((current, new))
}

/// `POST /settings/password` (`current_password`, `new_password`, or their `_secret`
/// forms; with end-to-end keys, `ring` and `ring_generation`: the key ring the browser
/// wrapped again under the new password, stored in the same commit).
pub async fn change_password(
    ctx: &mut Ctx,
    req: Request<Incoming>,
) -> Result<Response<Body>, AppError> {
    let form = ctx.form(req).await?;
    let session = ctx.check_member_form(&form)?;
    let which = SettingsForm::Password;
    let (current, new) = match presented_pair(ctx, &form, "new_password") {
        Ok(pair) => pair,
        Err(e) => {
            return settings_page(ctx, StatusCode::BAD_REQUEST, Some((which, &e)), None).await;
        }
    };
    let ring = form.text("ring").to_owned();
    let ring_generation = form.text("ring_generation").parse::<u32>().ok();
    if !ctx.state.limits.password_check_allowed(&session.user_id) {
        return Err(AppError::TooManyRequests);
    }
    let id = session.user_id;
    let data_key = session.data_key.clone();
    let policy = std::sync::Arc::clone(&ctx.state.accounts);
    let browser_wrapped = !new.is_password();
    match ctx
        .state
        .hash_job(move |store| {
            // The end-to-end key ring, if any, changes in the credentials' commit: wrapped
            // again by the browser, or (no JavaScript, so no browser to do it) the change
            // is refused rather than leaving keys nobody can open.
            let also: super::passwords::Also<'_> = Box::new(move |txn| {
                if !crate::e2e::store::has_keys_in(txn, &id)? {
                    return Ok(Ok(()));
                }
                if !browser_wrapped {
                    return Ok(Err(AccountError::NeedsBrowser));
                }
                let Some(generation) = ring_generation.filter(|_| crate::e2e::api::ring_ok(&ring))
                else {
                    return Ok(Err(AccountError::RingMissing));
                };
                Ok(
                    crate::e2e::store::rewrap_in(txn, &id, &data_key, generation, &ring)?
                        .map_err(|_| AccountError::Conflict),
                )
            });
            super::passwords::change(
                store,
                &policy,
                &id,
                &current,
                super::credentials::Which::Password,
                &new,
                Some(also),
            )
        })
        .await?
    {
        Ok(()) => {
            // Whoever else was logged in with the old password is logged out.
            ctx.state.sessions.remove_user_except(&id, &session);
            Ok(redirect("/settings?changed=password"))
        }
        Err(e) => {
            settings_page(
                ctx,
                account_error_status(&e),
                Some((which, &e.to_string())),
                None,
            )
            .await
        }
    }
}

pub async fn change_destruction(
    ctx: &mut Ctx,
    req: Request<Incoming>,
) -> Result<Response<Body>, AppError> {
    let form = ctx.form(req).await?;
    let session = ctx.check_member_form(&form)?;
    let which = SettingsForm::Destruction;
    let (current, new) = match presented_pair(ctx, &form, "new_d_pass") {
        Ok(pair) => pair,
        Err(e) => {
            return settings_page(ctx, StatusCode::BAD_REQUEST, Some((which, &e)), None).await;
        }
    };
    if !ctx.state.limits.password_check_allowed(&session.user_id) {
        return Err(AppError::TooManyRequests);
    }
    let id = session.user_id;
    let policy = std::sync::Arc::clone(&ctx.state.accounts);
    match ctx
        .state
        .hash_job(move |store| {
            super::change_destruction_password(store, &policy, &id, &current, &new)
        })
        .await?
    {
        Ok(()) => {
            // Whoever else was logged in (and might have watched the old one being set)
            // is logged out.
            ctx.state.sessions.remove_user_except(&id, &session);
            Ok(redirect("/settings?changed=destruction"))
        }
        Err(e) => {
            settings_page(
                ctx,
                account_error_status(&e),
                Some((which, &e.to_string())),
                None,
            )
            .await
        }
    }
}

pub async fn delete_account(
    ctx: &mut Ctx,
    req: Request<Incoming>,
) -> Result<Response<Body>, AppError> {
    let form = ctx.form(req).await?;
    let session = ctx.check_member_form(&form)?;
    if !ctx.state.limits.password_check_allowed(&session.user_id) {
        return Err(AppError::TooManyRequests);
    }
    let current = match Presented::from_form(&form, "current_password") {
        Ok(c) => c,
        Err(e) => {
            return settings_page(
                ctx,
                StatusCode::BAD_REQUEST,
                Some((SettingsForm::Delete, &e.to_string())),
                None,
            )
            .await;
        }
    };
    let id = session.user_id;
    let policy = std::sync::Arc::clone(&ctx.state.accounts);
    match ctx
        .state
        .hash_job(move |store| super::check_password_for_deletion(store, &policy, &id, &current))
        .await?
    {
        Ok(()) => {
            ctx.state.delete_member(id).await?;
            ctx.end_session();
            tracing::debug!("account deleted by its owner");
            Ok(redirect("/?deleted=1"))
        }
        Err(e) => {
            settings_page(
                ctx,
                account_error_status(&e),
                Some((SettingsForm::Delete, &e.to_string())),
                None,
            )
            .await
        }
    }
}

/// `GET /settings/signature`.
pub async fn signature_settings(
    ctx: &mut Ctx,
    req: Request<Incoming>,
) -> Result<Response<Body>, AppError> {
    let Some(session) = ctx.session.clone() else {
        return Ok(redirect("/login"));
    };
    let q = ctx.query(&req)?;
    let notice = match q.get("saved") {
        Some("dsa") => Some("Saved: your new connections and groups will sign with DSA."),
        Some(_) => Some("Saved: your new connections and groups will sign with RSA-PSS."),
        None => None,
    };
    let me = session.user_id;
    let current = ctx
        .state
        .store
        .run(move |s| signing::scheme_of(s, &me))
        .await?;
    let page = ctx.page();
    Ok(html(
        StatusCode::OK,
        views::signature_settings(&page, current, notice),
    ))
}

/// `POST /settings/signature` (`csrf`, `scheme`: `rsa-pss` or `dsa`).
pub async fn signature_submit(
    ctx: &mut Ctx,
    req: Request<Incoming>,
) -> Result<Response<Body>, AppError> {
    let form = ctx.form(req).await?;
    let session = ctx.check_member_form(&form)?;
    let scheme = SignatureScheme::from_form(form.text("scheme"))
        .ok_or_else(|| AppError::BadRequest("Choose RSA-PSS or DSA.".into()))?;
    if scheme == SignatureScheme::Dsa {
        // Make sure the installation's DSA parameters exist (generated once, seconds),
        // so that the next connection or group does not wait for them.
        ctx.state.dsa_params().await?;
    }
    let me = session.user_id;
    ctx.state
        .store
        .run(move |s| signing::set_scheme(s, &me, scheme))
        .await?;
    let saved = if scheme == SignatureScheme::Dsa {
        "dsa"
    } else {
        "rsa-pss"
    };
    Ok(redirect(&format!("/settings/signature?saved={saved}")))
}
