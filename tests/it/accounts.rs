//! Accounts over HTTP: registration, login, the destruction password, inactivity,
//! password changes, deletion, CSRF, and what is left in the file at rest.

use hyper::StatusCode;

use crate::support::{DPW, PW, TestServer};

const DAY: i64 = 86_400;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_login_settings_logout() {
    let server = TestServer::start().await;
    let mut c = server.client();
    c.register("alice", PW, DPW).await;

    let r = c.login("alice", PW).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.header("location"), Some("/"));
    let set_cookie: Vec<&str> = r
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .filter(|v| v.starts_with("gc_session="))
        .collect();
    assert_eq!(set_cookie.len(), 1);
    let attrs = set_cookie[0];
    assert!(attrs.contains("; HttpOnly"), "{attrs}");
    assert!(attrs.contains("; SameSite=Strict"), "{attrs}");
    assert!(attrs.contains("; Path=/"), "{attrs}");
    assert!(
        !attrs.contains("Secure"),
        "plain-HTTP door: no Secure flag ({attrs})"
    );
    let session_value = c.session().unwrap().to_owned();
    assert_eq!(session_value.len(), 43, "256-bit id, base64url");

    let home = c.get("/").await;
    assert!(home.text().contains("Welcome back"));
    let settings = c.get("/settings").await;
    assert_eq!(settings.status, StatusCode::OK);
    assert_eq!(settings.texts("h1"), vec!["Account settings"]);

    let r = c.submit("/settings", "/logout", &[]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(c.session().is_none(), "logout clears the cookie");
    assert_eq!(c.get("/settings").await.status, StatusCode::SEE_OTHER);

    // The old session id is dead even if a browser replays it.
    c.jar.insert("gc_session".into(), session_value);
    let r = c.get("/settings").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.header("location"), Some("/login"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_and_unknown_user_fail_alike() {
    let server = TestServer::start().await;
    let mut c = server.client();
    c.register("bob", PW, DPW).await;
    let wrong = c.login("bob", "not the password at all").await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    assert!(wrong.text().contains("Wrong username or password."));
    assert!(c.session().is_none());
    let unknown = c.login("nobody-here", PW).await;
    assert_eq!(unknown.status, wrong.status);
    assert_eq!(unknown.text_without_csrf(), wrong.text_without_csrf());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_id_rotates_at_login() {
    let server = TestServer::start().await;
    let mut c = server.client();
    c.member("carol").await;
    let first = c.session().unwrap().to_owned();
    let r = c.login("carol", PW).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let second = c.session().unwrap().to_owned();
    assert_ne!(first, second);
    // The first id no longer works.
    let mut old = server.client();
    old.jar.insert("gc_session".into(), first);
    assert_eq!(old.get("/settings").await.status, StatusCode::SEE_OTHER);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destruction_password_deletes_and_looks_like_a_failed_login() {
    let server = TestServer::start().await;
    let mut other_device = server.client();
    other_device.member("dave").await;
    assert_eq!(other_device.get("/settings").await.status, StatusCode::OK);

    let mut c = server.client();
    let failed = c.login("dave", "wrong password here").await;
    let destroyed = c.login("dave", DPW).await;
    assert_eq!(destroyed.status, failed.status);
    assert_eq!(destroyed.text_without_csrf(), failed.text_without_csrf());
    assert_eq!(destroyed.body.len(), failed.body.len());
    let cookie_names = |r: &crate::support::Resp| -> Vec<String> {
        r.headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().split('=').next().unwrap().to_owned())
            .collect()
    };
    assert_eq!(cookie_names(&destroyed), cookie_names(&failed));

    // The account is gone: the password fails, the other device's session is dead. The
    // name stays taken by a decoy (see tests/it/decoy.rs), whose data is erased in the
    // background: moments later nothing of dave's is left but the decoy's record.
    assert_eq!(c.login("dave", PW).await.status, StatusCode::FORBIDDEN);
    assert_eq!(c.login("dave", DPW).await.status, StatusCode::FORBIDDEN);
    assert_eq!(
        other_device.get("/settings").await.status,
        StatusCode::SEE_OTHER
    );
    let store = &server.state().store;
    assert_eq!(ghostcache::accounts::count_members(store).unwrap(), 1);
    let mut again = server.client();
    let r = again
        .submit(
            "/register",
            "/register",
            &[
                ("username", "dave"),
                ("password", "a brand new password"),
                ("d_pass", "another destruction pw"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "the name stays taken");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inactive_accounts_are_swept_after_thirty_days_not_before() {
    let server = TestServer::start().await;
    let mut c = server.client();
    c.register("erin", PW, DPW).await;
    let store = &server.state().store;

    server.clock.advance(29 * DAY);
    let report = ghostcache::sweeper::sweep(server.state()).await.unwrap();
    assert_eq!(report.accounts_deleted, 0);
    assert_eq!(ghostcache::accounts::count_members(store).unwrap(), 1);

    server.clock.advance(2 * DAY); // 31 days since registration
    let report = ghostcache::sweeper::sweep(server.state()).await.unwrap();
    assert_eq!(report.accounts_deleted, 1);
    assert_eq!(ghostcache::accounts::count_members(store).unwrap(), 0);
    assert_eq!(c.login("erin", PW).await.status, StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_resets_the_inactivity_clock_and_ends_sessions_of_swept_members() {
    let server = TestServer::start().await;
    let mut c = server.client();
    c.member("frank").await;
    server.clock.advance(20 * DAY);
    // A new login 20 days in.
    let mut c2 = server.client();
    assert_eq!(c2.login("frank", PW).await.status, StatusCode::SEE_OTHER);
    server.clock.advance(20 * DAY);
    assert_eq!(
        ghostcache::sweeper::sweep(server.state())
            .await
            .unwrap()
            .accounts_deleted,
        0
    );
    server.clock.advance(12 * DAY);
    assert_eq!(
        ghostcache::sweeper::sweep(server.state())
            .await
            .unwrap()
            .accounts_deleted,
        1
    );
    assert!(server.state().sessions.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_expire() {
    let server = TestServer::start().await;
    let mut c = server.client();
    c.member("gina").await;
    server.clock.advance(14 * 60);
    assert_eq!(
        c.get("/settings").await.status,
        StatusCode::OK,
        "still fresh"
    );
    server.clock.advance(15 * 60);
    assert_eq!(
        c.get("/settings").await.status,
        StatusCode::SEE_OTHER,
        "idle for 15 minutes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_password_and_destruction_password() {
    let server = TestServer::start().await;
    let mut c = server.client();
    c.member("hugo").await;

    // Wrong current password: refused, nothing changed.
    let r = c
        .submit(
            "/settings",
            "/settings/password",
            &[
                ("current_password", "not my password"),
                ("new_password", "new password 123"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.text().contains("The current password is wrong."));
    // New password equal to the destruction password: refused.
    let r = c
        .submit(
            "/settings",
            "/settings/password",
            &[("current_password", PW), ("new_password", DPW)],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = c
        .submit(
            "/settings",
            "/settings/password",
            &[
                ("current_password", PW),
                ("new_password", "new password 123"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);

    let mut other = server.client();
    assert_eq!(other.login("hugo", PW).await.status, StatusCode::FORBIDDEN);
    assert_eq!(
        other.login("hugo", "new password 123").await.status,
        StatusCode::SEE_OTHER
    );

    let r = c
        .submit(
            "/settings",
            "/settings/destruction-password",
            &[
                ("current_password", "new password 123"),
                ("new_d_pass", "new destruction 456"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    // The old destruction password is now just a wrong password: the account survives.
    assert_eq!(other.login("hugo", DPW).await.status, StatusCode::FORBIDDEN);
    assert_eq!(
        other.login("hugo", "new password 123").await.status,
        StatusCode::SEE_OTHER
    );
    // The new one destroys.
    assert_eq!(
        other.login("hugo", "new destruction 456").await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        other.login("hugo", "new password 123").await.status,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_account_from_settings_needs_the_password() {
    let server = TestServer::start().await;
    let mut c = server.client();
    c.member("iris").await;
    let store = &server.state().store;
    let r = c
        .submit(
            "/settings",
            "/settings/delete",
            &[("current_password", "wrong password!")],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(ghostcache::accounts::count_members(store).unwrap(), 1);
    let r = c
        .submit("/settings", "/settings/delete", &[("current_password", PW)])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.header("location"), Some("/?deleted=1"));
    assert!(c.session().is_none());
    // As after a destruction, a decoy keeps the name until inactivity frees it: the two
    // kinds of deletion look alike, so neither gives the other away.
    assert_eq!(ghostcache::accounts::count_members(store).unwrap(), 1);
    assert_eq!(c.login("iris", PW).await.status, StatusCode::FORBIDDEN);
    assert_eq!(c.login("iris", DPW).await.status, StatusCode::FORBIDDEN);
    server.clock.advance(31 * DAY);
    let report = ghostcache::sweeper::sweep(server.state()).await.unwrap();
    assert_eq!(report.accounts_deleted, 1, "the decoy goes on schedule");
    c.register("iris", PW, DPW).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_state_changing_post_needs_its_csrf_token() {
    let server = TestServer::start().await;
    let store = server.state().store.clone();
    let mut c = server.client();
    c.member("jack").await;
    // Anonymous forms.
    for bad in [None, Some("wrong-token")] {
        let mut anon = server.client();
        anon.get("/register").await; // has a pre-session cookie, but sends a bad token
        let mut fields = vec![("username", "kate"), ("password", PW), ("d_pass", DPW)];
        if let Some(t) = bad {
            fields.push(("csrf", t));
        }
        assert_eq!(
            anon.post_form("/register", &fields).await.status,
            StatusCode::FORBIDDEN
        );
        let mut fields = vec![("username", "jack"), ("password", PW)];
        if let Some(t) = bad {
            fields.push(("csrf", t));
        }
        assert_eq!(
            anon.post_form("/login", &fields).await.status,
            StatusCode::FORBIDDEN
        );
        assert!(anon.session().is_none());
    }
    assert_eq!(
        ghostcache::accounts::count_members(&store).unwrap(),
        1,
        "kate was not created"
    );

    // Member forms: a token from another session is as bad as none.
    let mut other = server.client();
    other.member("liam").await;
    let foreign = other.get("/settings").await.csrf();
    let posts: [(&str, Vec<(&str, &str)>); 4] = [
        ("/logout", vec![]),
        (
            "/settings/password",
            vec![
                ("current_password", PW),
                ("new_password", "changed password 1"),
            ],
        ),
        (
            "/settings/destruction-password",
            vec![
                ("current_password", PW),
                ("new_d_pass", "changed destruct 1"),
            ],
        ),
        ("/settings/delete", vec![("current_password", PW)]),
    ];
    for (path, fields) in &posts {
        for token in [None, Some("wrong"), Some(foreign.as_str())] {
            let mut f = fields.clone();
            if let Some(t) = token {
                f.push(("csrf", t));
            }
            let r = c.post_form(path, &f).await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{path} with {token:?}");
            assert!(r.text().contains("Form expired"));
        }
    }
    // Nothing changed: still logged in, same passwords, both accounts exist.
    assert_eq!(c.get("/settings").await.status, StatusCode::OK);
    assert_eq!(ghostcache::accounts::count_members(&store).unwrap(), 2);
    let mut fresh = server.client();
    assert_eq!(fresh.login("jack", PW).await.status, StatusCode::SEE_OTHER);
    assert_eq!(
        fresh.login("jack", "changed destruct 1").await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(fresh.login("jack", PW).await.status, StatusCode::SEE_OTHER);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confusable_and_case_variant_usernames_are_refused() {
    let server = TestServer::start().await;
    let mut c = server.client();
    c.register("alice", PW, DPW).await;
    let attempt = |name: &'static str| {
        let mut c = server.client();
        async move {
            c.submit(
                "/register",
                "/register",
                &[("username", name), ("password", PW), ("d_pass", DPW)],
            )
            .await
        }
    };
    let upper = attempt("ALICE").await;
    assert_eq!(upper.status, StatusCode::CONFLICT);
    // Cyrillic а followed by Latin letters: mixed script.
    let mixed = attempt("\u{0430}lice").await;
    assert_eq!(mixed.status, StatusCode::BAD_REQUEST);
    assert!(mixed.text().contains("one script"));
    // All Cyrillic, but it looks like "alice": same skeleton.
    let lookalike = attempt("\u{0430}\u{04cf}\u{0456}\u{0441}\u{0435}").await;
    assert_eq!(lookalike.status, StatusCode::CONFLICT);
    let long = attempt(Box::leak("x".repeat(10_000).into_boxed_str())).await;
    assert_eq!(long.status, StatusCode::BAD_REQUEST);
    assert!(long.text().contains("3 to 32"));
    assert!(
        !long.text().contains(&"x".repeat(100)),
        "a 10 KB name is not echoed back"
    );
    assert_eq!(
        ghostcache::accounts::count_members(&server.state().store).unwrap(),
        1
    );
    // Logging in with another case works: it is the same name.
    assert_eq!(c.login("Alice", PW).await.status, StatusCode::SEE_OTHER);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_rules() {
    let server = TestServer::start().await;
    let mut c = server.client();
    let r = c
        .submit(
            "/register",
            "/register",
            &[("username", "mona"), ("password", "short"), ("d_pass", DPW)],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.text().contains("at least 10 characters"));
    let r = c
        .submit(
            "/register",
            "/register",
            &[("username", "mona"), ("password", PW), ("d_pass", PW)],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.text().contains("must be different"));
    assert_eq!(
        ghostcache::accounts::count_members(&server.state().store).unwrap(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_attempts_beyond_the_limit_wait_their_turn() {
    // 10 checks a minute (the default): once they are spent, the next is due 6 s later.
    let server = TestServer::start_with(|c| c.rate_limits.login_per_username_per_minute = 10).await;
    let mut c = server.client();
    c.register("nina", PW, DPW).await;
    let started = std::time::Instant::now();
    for _ in 0..10 {
        assert_eq!(
            c.login("nina", "wrong password!").await.status,
            StatusCode::FORBIDDEN
        );
    }
    let r = c.login("nina", PW).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "waited, not refused");
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(6),
        "the eleventh check waited for the bucket ({:?})",
        started.elapsed()
    );
    // Another name has its own bucket.
    let mut d = server.client();
    d.register("oscar", PW, DPW).await;
    assert_eq!(d.login("oscar", PW).await.status, StatusCode::SEE_OTHER);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_is_rate_limited_server_wide() {
    let server = TestServer::start_with(|c| c.rate_limits.register_per_minute = 2).await;
    let mut c = server.client();
    c.register("pia1", PW, DPW).await;
    c.register("pia2", PW, DPW).await;
    let r = c
        .submit(
            "/register",
            "/register",
            &[("username", "pia3"), ("password", PW), ("d_pass", DPW)],
        )
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        ghostcache::accounts::count_members(&server.state().store).unwrap(),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_readable_at_rest() {
    let server = TestServer::start().await;
    let mut c = server.client();
    let password = "Marker-Password-7f3a9";
    let destruction = "Marker-Destruct-2c8e1";
    c.register("quinn", password, destruction).await;
    assert_eq!(
        c.login("quinn", password).await.status,
        StatusCode::SEE_OTHER
    );
    let now = server.clock.now();
    let session = server
        .state()
        .sessions
        .get(c.session().unwrap(), now)
        .unwrap();
    let data_key = *session.data_key.expose();
    let data_key_b64 = session.data_key.to_base64().to_string();
    drop(session);
    let dir = server.stop().await;
    let bytes = std::fs::read(dir.path().join(ghostcache::store::DB_FILE)).unwrap();
    let contains = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    assert!(!contains(password.as_bytes()));
    assert!(!contains(destruction.as_bytes()));
    assert!(!contains(&data_key), "raw data key");
    assert!(!contains(data_key_b64.as_bytes()), "base64 data key");
    assert!(!contains(&data_key[..16]), "half of the data key");
    assert!(
        contains(b"quinn"),
        "sanity: usernames are stored, so the scan does see the file"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_survives_a_restart_and_sessions_do_not() {
    let server = TestServer::start().await;
    let mut c = server.client();
    c.member("rita").await;
    let dir = server.stop().await;
    let server = TestServer::start_in(dir, |_| {}).await;
    let mut c2 = server.client();
    c2.jar = c.jar.clone();
    assert_eq!(
        c2.get("/settings").await.status,
        StatusCode::SEE_OTHER,
        "restart logs everyone out"
    );
    assert_eq!(c2.login("rita", PW).await.status, StatusCode::SEE_OTHER);
}

#[test]
fn serve_refuses_a_newer_schema_with_a_clear_message() {
    let dir = crate::support::server::private_tempdir();
    {
        let store =
            ghostcache::store::Store::open(&dir.path().join(ghostcache::store::DB_FILE)).unwrap();
        ghostcache::store::schema::write_version(
            &store,
            ghostcache::store::schema::CURRENT_SCHEMA + 1,
        )
        .unwrap();
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ghostcache"))
        .args(["serve", "--no-tor", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env_remove("GHOSTCACHE_CONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("written by a newer ghostcache"), "{stderr}");
    let newer = format!("schema {}", ghostcache::store::schema::CURRENT_SCHEMA + 1);
    assert!(stderr.contains(&newer), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_either_password_ends_the_members_other_sessions() {
    let server = TestServer::start().await;
    let mut here = server.client();
    here.member("ursula").await;
    let mut elsewhere = server.client();
    assert_eq!(
        elsewhere.login("ursula", PW).await.status,
        StatusCode::SEE_OTHER
    );
    let r = here
        .submit(
            "/settings",
            "/settings/password",
            &[
                ("current_password", PW),
                ("new_password", "a new password 1"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(
        here.get("/settings").await.status,
        StatusCode::OK,
        "this one stays"
    );
    let r = elsewhere.get("/settings").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "the other one ended");
    assert_eq!(r.header("location"), Some("/login"));

    assert_eq!(
        elsewhere.login("ursula", "a new password 1").await.status,
        StatusCode::SEE_OTHER
    );
    let r = here
        .submit(
            "/settings",
            "/settings/destruction-password",
            &[
                ("current_password", "a new password 1"),
                ("new_d_pass", "a new destruction 1"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(here.get("/settings").await.status, StatusCode::OK);
    assert_eq!(
        elsewhere.get("/settings").await.status,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_past_its_inactivity_deadline_cannot_log_in_before_the_sweep() {
    let server = TestServer::start().await;
    let mut c = server.client();
    c.register("vera", PW, DPW).await;
    server.clock.advance(30 * DAY);
    assert_eq!(c.login("vera", PW).await.status, StatusCode::SEE_OTHER);
    server.clock.advance(32 * DAY);
    // Due for deletion, not swept yet: both passwords fail like wrong ones.
    let wrong = c.login("vera", "not the password").await;
    for password in [PW, DPW] {
        let r = c.login("vera", password).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert_eq!(r.text_without_csrf(), wrong.text_without_csrf());
    }
    let report = ghostcache::sweeper::sweep(server.state()).await.unwrap();
    assert_eq!(report.accounts_deleted, 1);
}

/// A master key file, mode 0600, in `dir`.
fn master_key_file(dir: &std::path::Path, name: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, crate::support::server::random_key_material()).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_move_under_the_master_key_and_need_that_very_key_afterwards() {
    let keys = crate::support::server::private_tempdir();
    let server = TestServer::start().await;
    let mut c = server.client();
    c.register("wilma", PW, DPW).await;
    let dir = server.stop().await;
    let key = master_key_file(keys.path(), "master.key");

    // A master key appears (under its former name, which still works): the accounts are
    // peppered at start-up, and log in as before.
    let k = key.clone();
    let server = TestServer::start_in(dir, move |cfg| cfg.tor.master_key_file = Some(k)).await;
    let mut c = server.client();
    assert_eq!(c.login("wilma", PW).await.status, StatusCode::SEE_OTHER);
    let dir = server.stop().await;

    // Without it, or with another one, the server refuses to start, and says why.
    let config = crate::support::server::test_config(dir.path().to_path_buf());
    let options = || ghostcache::app::StartOptions {
        clock: ghostcache::clock::Clock::system(),
        danger_fast_kdf: true,
    };
    let err = ghostcache::app::start(config.clone(), options())
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("protected by a master key"), "{err}");
    let mut wrong = config.clone();
    wrong.master_key_file = Some(master_key_file(keys.path(), "other.key"));
    let err = ghostcache::app::start(wrong, options())
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("not the one"), "{err}");

    // With it, under its new name: as before.
    let server = TestServer::start_in(dir, move |cfg| cfg.master_key_file = Some(key)).await;
    let mut c = server.client();
    assert_eq!(c.login("wilma", PW).await.status, StatusCode::SEE_OTHER);
    assert_eq!(
        c.login("wilma", "wrong password").await.status,
        StatusCode::FORBIDDEN
    );
}
