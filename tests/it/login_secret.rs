//! Login secrets (issue 14.1): what a browser with JavaScript sends instead of a password,
//! through the same forms (the browser side is in `e2e::login`), and the accounts from
//! before them.

use hyper::StatusCode;
use serde_json::{Value, json};

use crate::e2e::hostile::post_json;
use crate::support::{Client, DPW, PW, TestServer};
use ghostcache::accounts::secret;
use ghostcache::crypto::{b64url, b64url_decode_exact};

/// What `GET /login/salt` says of `name`.
pub async fn params(c: &mut Client, name: &str) -> Value {
    let r = c
        .get(&format!(
            "/login/salt?{}",
            crate::support::client::encode_form(&[("username", name)])
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    serde_json::from_slice(&r.body).unwrap()
}

/// The login secret a browser derives from `password` for `name`, as the form sends it.
pub async fn secret_of(c: &mut Client, name: &str, password: &str) -> String {
    let p = params(c, name).await;
    assert_eq!(p["secret"], json!(true), "{name} takes login secrets");
    secret_with(&p, password)
}

/// The login secret of `password` with what `GET /login/salt` said (`p`), whatever it
/// said of the account.
pub fn secret_with(p: &Value, password: &str) -> String {
    let salt: [u8; 16] = b64url_decode_exact(p["salt"].as_str().unwrap()).unwrap();
    let iterations = u32::try_from(p["iterations"].as_u64().unwrap()).unwrap();
    b64url(&*secret::derive(password.as_bytes(), &salt, iterations))
}

/// Log in as a browser with JavaScript does: the login secret, no password.
pub async fn login_with_secret(c: &mut Client, name: &str, password: &str) -> crate::support::Resp {
    let s = secret_of(c, name, password).await;
    c.submit(
        "/login",
        "/login",
        &[("username", name), ("password_secret", &s)],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_salt_endpoint_answers_every_name_alike_and_never_changes_with_a_destruction() {
    let server = TestServer::start().await;
    let mut alice = server.client();
    alice.member("alice").await;
    let mut anon = server.client();
    let a = params(&mut anon, "alice").await;
    let keys = |v: &Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(&a), vec!["iterations", "name", "salt", "secret"]);
    assert_eq!(a["name"], json!("alice"));
    assert_eq!(a["secret"], json!(true));
    assert_eq!(a["iterations"], json!(secret::DANGER_FAST_ITERATIONS));
    // The name as the server reads it: the same salt for every way of typing it.
    assert_eq!(params(&mut anon, "ALICE").await, a);
    // A name nobody has, and one nobody could have, answer in the same shape.
    for other in ["nobody", "no body!"] {
        let o = params(&mut anon, other).await;
        assert_eq!(keys(&o), keys(&a));
        assert_eq!(o["secret"], json!(true));
        assert_eq!(o["iterations"], a["iterations"]);
        assert_ne!(o["salt"], a["salt"]);
    }
    let too_long = "x".repeat(300);
    let r = anon.get(&format!("/login/salt?username={too_long}")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // The destruction password, sent as a login secret: answered like a failure, and the
    // endpoint says of the name exactly what it said before.
    let mut coerced = server.client();
    let r = login_with_secret(&mut coerced, "alice", DPW).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.texts(".error"), vec!["Wrong username or password."]);
    assert!(coerced.session().is_none());
    assert_eq!(params(&mut anon, "alice").await, a);
    let mut later = server.client();
    assert_eq!(
        later.login("alice", PW).await.status,
        StatusCode::FORBIDDEN,
        "the account is gone"
    );
    assert_eq!(
        login_with_secret(&mut later, "alice", PW).await.status,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_secret_logs_in_and_anything_else_is_refused() {
    let server = TestServer::start().await;
    let mut alice = server.client();
    alice.member("alice").await;
    // The secret logs in; so does the password (the server derives the same secret).
    let mut js = server.client();
    let r = login_with_secret(&mut js, "alice", PW).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.header("location"), Some("/"));
    assert_eq!(js.get("/settings").await.status, StatusCode::OK);
    // A wrong one is a failure like any other.
    let mut wrong = server.client();
    let r = login_with_secret(&mut wrong, "alice", "not the password").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.texts(".error"), vec!["Wrong username or password."]);
    // The password sent where the secret goes is not the secret.
    let r = wrong
        .submit(
            "/login",
            "/login",
            &[("username", "alice"), ("password_secret", PW)],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // Malformed secrets: a clear page, no session, nothing changed.
    for bad in ["AAAA", "!!!!", &b64url(&[1u8; 31]), &b64url(&[1u8; 33])] {
        let r = wrong
            .submit(
                "/login",
                "/login",
                &[("username", "alice"), ("password_secret", bad)],
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(
            r.texts(".error")[0].contains("not well formed"),
            "{:?}",
            r.texts(".error")
        );
        assert!(wrong.session().is_none());
    }
    // The secret of another installation's salt (or another name's) is another secret.
    let elsewhere = b64url(&*secret::derive(PW.as_bytes(), &[0u8; 16], 1_000));
    let r = wrong
        .submit(
            "/login",
            "/login",
            &[("username", "alice"), ("password_secret", &elsewhere)],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let mut again = server.client();
    assert_eq!(again.login("alice", PW).await.status, StatusCode::SEE_OTHER);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_and_every_settings_form_take_login_secrets() {
    let server = TestServer::start().await;
    let mut anon = server.client();
    let p = secret_of(&mut anon, "bob", PW).await;
    let d = secret_of(&mut anon, "bob", DPW).await;
    // The same secret twice is refused, as the same password twice is.
    let r = anon
        .submit(
            "/register",
            "/register",
            &[
                ("username", "bob"),
                ("password_secret", &p),
                ("d_pass_secret", &p),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.texts(".error")[0].contains("different"));
    let r = anon
        .submit(
            "/register",
            "/register",
            &[
                ("username", "bob"),
                ("password_secret", "short"),
                ("d_pass_secret", &d),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.texts(".error")[0].contains("not well formed"));
    let mut nobody = server.client();
    assert_eq!(nobody.login("bob", PW).await.status, StatusCode::FORBIDDEN);
    // Registered with secrets only (no password reaches the server) ...
    let r = anon
        .submit(
            "/register",
            "/register",
            &[
                ("username", "bob"),
                ("password_secret", &p),
                ("d_pass_secret", &d),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text());
    // ... and the password logs in without JavaScript.
    let mut bob = server.client();
    assert_eq!(bob.login("bob", PW).await.status, StatusCode::SEE_OTHER);

    // Password change with secrets.
    let cur = secret_of(&mut anon, "bob", PW).await;
    let new = secret_of(&mut anon, "bob", "a brand new password").await;
    let r = bob
        .submit(
            "/settings",
            "/settings/password",
            &[
                ("current_password_secret", &cur),
                ("new_password_secret", &d),
            ],
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::BAD_REQUEST,
        "the destruction password's"
    );
    let r = bob
        .submit(
            "/settings",
            "/settings/password",
            &[
                ("current_password_secret", &new),
                ("new_password_secret", &new),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "wrong current password");
    let r = bob
        .submit(
            "/settings",
            "/settings/password",
            &[
                ("current_password_secret", &cur),
                ("new_password_secret", &new),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let mut check = server.client();
    assert_eq!(check.login("bob", PW).await.status, StatusCode::FORBIDDEN);
    assert_eq!(
        check.login("bob", "a brand new password").await.status,
        StatusCode::SEE_OTHER
    );
    // Destruction password change with secrets.
    let d2 = secret_of(&mut anon, "bob", "another destruction").await;
    let r = bob
        .submit(
            "/settings",
            "/settings/destruction-password",
            &[
                ("current_password_secret", &new),
                ("new_d_pass_secret", &d2),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    // Deleting the account with a secret.
    let r = bob
        .submit(
            "/settings",
            "/settings/delete",
            &[("current_password_secret", &cur)],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "the old password");
    let r = bob
        .submit(
            "/settings",
            "/settings/delete",
            &[("current_password_secret", &new)],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.header("location"), Some("/?deleted=1"));
}

/// Turn end-to-end mode on for the member `c` as a browser would (one RSA-3072 key for
/// receiving and signing: the server checks shapes and the proof, not that they differ).
/// The answer's status and body.
pub async fn try_e2e_keys(c: &mut Client) -> (StatusCode, Value) {
    let csrf = crate::e2e::csrf(c).await;
    let (s, me) = get_json(c, "/e2e/api/me").await;
    assert_eq!(s, StatusCode::OK);
    let id: [u8; 16] = b64url_decode_exact(me["id"].as_str().unwrap()).unwrap();
    let key = ghostcache::crypto::rsa_keys::RsaPrivate::generate(3072).unwrap();
    let public = key.public().to_der().unwrap();
    let record = ghostcache::e2e::PublicKeysRecord {
        scheme: ghostcache::e2e::SignScheme::RsaPss,
        enc_public: public.clone(),
        sign_public: public.clone(),
    };
    let proof = key
        .sign_pss(&ghostcache::e2e::keys_statement(&id, 1, &record))
        .unwrap();
    let body = json!({
        "generation": 1,
        "scheme": "rsa-pss",
        "enc_public": b64url(&public),
        "sign_public": b64url(&public),
        "proof": b64url(&proof),
        "ring": "v1.first-ring.sealed",
    })
    .to_string();
    post_json(c, "/e2e/api/keys", &body, Some(&csrf), "application/json").await
}

/// [`try_e2e_keys`], which must succeed.
pub async fn give_e2e_keys(c: &mut Client) {
    let (s, v) = try_e2e_keys(c).await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

/// GET `path` and read its JSON answer (`Null` when it is none).
async fn get_json(c: &mut Client, path: &str) -> (StatusCode, Value) {
    let r = c.get(path).await;
    (
        r.status,
        serde_json::from_slice(&r.body).unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_end_to_end_keys_a_password_change_carries_the_ring_wrapped_again() {
    let server = TestServer::start().await;
    let mut a = server.client();
    a.member("alice").await;
    give_e2e_keys(&mut a).await;
    let ring = |v: &Value| v["ring"].as_str().unwrap().to_owned();
    let (_, me) = get_json(&mut a, "/e2e/api/me").await;
    assert_eq!(ring(&me), "v1.first-ring.sealed");
    let mut anon = server.client();
    let cur = secret_of(&mut anon, "alice", PW).await;
    let new = secret_of(&mut anon, "alice", "the next password").await;
    // Without JavaScript there is no browser to wrap the keys again: refused, nothing
    // changed.
    let r = a
        .submit(
            "/settings",
            "/settings/password",
            &[
                ("current_password", PW),
                ("new_password", "the next password"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(
        r.texts(".error")[0].contains("JavaScript on"),
        "{:?}",
        r.texts(".error")
    );
    // Secrets without the ring, with a malformed ring, or for another generation: refused.
    for extra in [
        vec![],
        vec![("ring", "not a ring!"), ("ring_generation", "1")],
        vec![("ring", "v1.x.y"), ("ring_generation", "nope")],
        vec![("ring", "v1.x.y"), ("ring_generation", "2")],
    ] {
        let mut fields = vec![
            ("current_password_secret", cur.as_str()),
            ("new_password_secret", new.as_str()),
        ];
        fields.extend(extra.iter().copied());
        let r = a.submit("/settings", "/settings/password", &fields).await;
        assert!(
            r.status == StatusCode::BAD_REQUEST || r.status == StatusCode::CONFLICT,
            "{extra:?}: {}",
            r.status
        );
        assert!(!r.texts(".error").is_empty(), "{extra:?}");
    }
    let mut check = server.client();
    assert_eq!(
        check.login("alice", PW).await.status,
        StatusCode::SEE_OTHER,
        "unchanged"
    );
    let (_, me) = get_json(&mut a, "/e2e/api/me").await;
    assert_eq!(ring(&me), "v1.first-ring.sealed", "unchanged");
    // With the ring: both change in one commit.
    let r = a
        .submit(
            "/settings",
            "/settings/password",
            &[
                ("current_password_secret", &cur),
                ("new_password_secret", &new),
                ("ring", "v1.second-ring.sealed"),
                ("ring_generation", "1"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text());
    let (_, me) = get_json(&mut a, "/e2e/api/me").await;
    assert_eq!(ring(&me), "v1.second-ring.sealed");
    assert_eq!(check.login("alice", PW).await.status, StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_without_javascript_to_an_end_to_end_account_is_explained() {
    let server = TestServer::start().await;
    let mut a = server.client();
    a.member("alice").await;
    // Without end-to-end keys there is nothing to explain.
    let mut plain = server.client();
    let r = plain.login("alice", PW).await;
    assert_eq!(r.header("location"), Some("/"));
    give_e2e_keys(&mut a).await;
    let r = plain.login("alice", PW).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.header("location"), Some("/e2e/plain-login"));
    let page = plain.get("/e2e/plain-login").await;
    assert_eq!(page.status, StatusCode::OK);
    let text = page.texts("#plain-login")[0].clone();
    assert!(text.contains("sent your password to the server"), "{text}");
    assert!(text.contains("change your password"), "{text}");
    assert!(!page.text().contains("<script"), "a page without scripts");
    // With the login secret it is not needed.
    let mut js = server.client();
    let r = login_with_secret(&mut js, "alice", PW).await;
    assert_eq!(r.header("location"), Some("/"));
    // Not logged in: to the login page.
    let r = server.client().get("/e2e/plain-login").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_password_forms_carry_the_derivation_script_and_its_policy() {
    let server = TestServer::start().await;
    let mut a = server.client();
    a.member("alice").await;
    let mut anon = server.client();
    for (member, path, forms) in [
        (false, "/login", 1),
        (false, "/register", 1),
        (true, "/settings", 3),
    ] {
        let c: &mut Client = if member { &mut a } else { &mut anon };
        let r = c.get(path).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(
            r.header("content-security-policy").unwrap(),
            ghostcache::web::response::CSP_WITH_SCRIPTS,
            "{path}"
        );
        let html = r.html();
        let sel = scraper::Selector::parse("form[data-derive]").unwrap();
        assert_eq!(html.select(&sel).count(), forms, "{path}");
        let sel = scraper::Selector::parse("form[data-derive] input[type=password]").unwrap();
        for input in html.select(&sel) {
            assert!(input.value().attr("data-secret").is_some(), "{path}");
        }
        let sel = scraper::Selector::parse("script").unwrap();
        let srcs: Vec<String> = html
            .select(&sel)
            .map(|s| s.value().attr("src").unwrap().to_owned())
            .collect();
        for s in html.select(&sel) {
            let src = s.value().attr("src").unwrap();
            let body = server.client().get(src).await;
            assert_eq!(body.status, StatusCode::OK, "{src}");
            use base64::Engine as _;
            use sha2::Digest as _;
            let digest =
                base64::engine::general_purpose::STANDARD.encode(sha2::Sha384::digest(&body.body));
            assert_eq!(
                s.value().attr("integrity"),
                Some(format!("sha384-{digest}").as_str()),
                "{src}"
            );
        }
        assert_eq!(
            srcs,
            vec![
                ghostcache::web::assets::E2E_CORE.asset.path.as_str(),
                ghostcache::web::assets::LOGIN_SECRET.asset.path.as_str()
            ],
            "{path}"
        );
    }
}
