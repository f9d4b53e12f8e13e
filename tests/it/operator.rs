//! Operator controls (issue 12): `member list|remove` and `client-auth` through the
//! control socket of a running server (and on the database when none runs), registration
//! modes and invitation codes, and hostile input to all of them.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use hyper::StatusCode;

use crate::support::process;
use crate::support::{Client, DPW, PW, TestServer};

/// Run `ghostcache ARGS --data-dir DIR` off the async workers; (exit ok, stdout, stderr).
pub async fn cli(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let mut all: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    all.push("--data-dir".into());
    all.push(dir.to_str().unwrap().to_owned());
    let out = tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        process::run(&refs)
    })
    .await
    .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Names in `member list` output (first column, header skipped).
fn listed(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_remove_on_a_running_server_ends_the_sessions_at_once() {
    let server = TestServer::start().await;
    let dir = server.dir.path().to_owned();
    let socket = dir.join(ghostcache::control::SOCKET_FILE);
    assert_eq!(
        std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777,
        0o600,
        "the control socket is owner-only"
    );
    let mut alice = server.client();
    alice.member("alice").await;
    let mut bob = server.client();
    bob.member("bob").await;
    assert_eq!(alice.get("/settings").await.status, StatusCode::OK);

    let (ok, out, err) = cli(&dir, &["member", "list"]).await;
    assert!(ok, "{err}");
    assert_eq!(listed(&out), vec!["alice", "bob"]);
    let today = ghostcache::chat::views::date_of_day(server.clock.now().div_euclid(86_400));
    for line in out.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // Name, day of the last login, and how long ago: nothing else.
        assert_eq!(
            fields,
            vec![fields[0], today.as_str(), "(0", "days", "ago)"],
            "{line}"
        );
    }

    // Hostile names: a clear error, nothing changed.
    for bad in [
        "../alice",
        "alice/..",
        "",
        "a\nb",
        "/etc/passwd",
        &"x".repeat(300),
    ] {
        let (ok, _, err) = cli(&dir, &["member", "remove", bad]).await;
        assert!(!ok, "{bad:?} refused");
        assert!(err.contains("is not a username"), "{bad:?}: {err}");
    }
    let (ok, _, err) = cli(&dir, &["member", "remove", "carol"]).await;
    assert!(!ok);
    assert!(err.contains("no member is named carol"), "{err}");
    assert_eq!(alice.get("/settings").await.status, StatusCode::OK);

    // ALICE is alice, normalised as at login.
    let (ok, _, err) = cli(&dir, &["member", "remove", "ALICE"]).await;
    assert!(ok, "{err}");
    assert!(err.contains("member alice removed"), "{err}");
    assert!(err.contains("the name stays taken"), "{err}");
    let r = alice.get("/settings").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "the session ended at once");
    assert_eq!(r.header("location"), Some("/login"));
    assert_eq!(alice.login("alice", PW).await.status, StatusCode::FORBIDDEN);
    assert_eq!(
        bob.get("/settings").await.status,
        StatusCode::OK,
        "bob stays"
    );
    // As after her own deletion, a decoy holds alice's name (listed like any account:
    // see tests/it/decoy.rs) until inactivity frees it.
    let (_, out, _) = cli(&dir, &["member", "list"]).await;
    assert_eq!(listed(&out), vec!["alice", "bob"]);

    // The same commands with no server running work on the database itself.
    let dir_handle = server.stop().await;
    assert!(!socket.exists(), "the socket goes with the server");
    let (ok, _, err) = cli(dir_handle.path(), &["member", "remove", "bob"]).await;
    assert!(ok, "{err}");
    let (ok, out, _) = cli(dir_handle.path(), &["member", "list"]).await;
    assert!(ok);
    assert_eq!(listed(&out), vec!["alice", "bob"], "{out}");
    let server = TestServer::start_in(dir_handle, |_| {}).await;
    let mut c = server.client();
    assert_eq!(c.login("bob", PW).await.status, StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_socket_answers_garbage_with_an_error_and_changes_nothing() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let server = TestServer::start().await;
    let mut c = server.client();
    c.member("dora").await;
    let socket = server.dir.path().join(ghostcache::control::SOCKET_FILE);
    for request in [
        "not json\n".to_owned(),
        "{\"op\":\"drop_everything\"}\n".to_owned(),
        "{\"op\":\"member_remove\",\"name\":\"dora\",\"extra\":1}\n".to_owned(),
        "{\"op\":\"member_remove\",\"name\":\"../dora\"}\n".to_owned(),
        "{\"op\":\"client_auth_add\",\"name\":\"x\",\"public_key\":\"descriptor:x25519:AAAA\"}\n"
            .to_owned(),
        "{\"op\":\"invite_create\",\"code_hash\":\"zz\",\"uses\":1,\"days\":1}\n".to_owned(),
        format!("{}\n", "x".repeat(100_000)),
    ] {
        let mut s = tokio::net::UnixStream::connect(&socket).await.unwrap();
        let _ = s.write_all(request.as_bytes()).await;
        let mut line = String::new();
        tokio::io::BufReader::new(s)
            .read_line(&mut line)
            .await
            .unwrap();
        let reply: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(reply["reply"], "error", "{request:.60}: {line}");
    }
    assert_eq!(c.get("/settings").await.status, StatusCode::OK);
    let (_, out, _) = cli(server.dir.path(), &["member", "list"]).await;
    assert_eq!(listed(&out), vec!["dora"]);
    let (_, out, _) = cli(server.dir.path(), &["client-auth", "list"]).await;
    assert_eq!(out.lines().count(), 1, "only the header: {out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_auth_refuses_bad_names_and_keys_and_never_stores_the_private_key() {
    let server = TestServer::start().await;
    let dir = server.dir.path().to_owned();
    let (ok, out, err) = cli(&dir, &["client-auth", "add", "alice-laptop"]).await;
    assert!(ok, "{err}");
    assert!(err.contains("client alice-laptop is authorized"), "{err}");
    assert!(
        err.contains("restricted discovery is off"),
        "the operator is told the list is not in force: {err}"
    );
    let lines: Vec<&str> = out.lines().collect();
    let private = lines[1];
    assert_eq!(private.len(), 52, "{out}");
    assert!(
        private
            .chars()
            .all(|c| c.is_ascii_uppercase() || ('2'..='7').contains(&c))
    );

    // A member's own public key (made by them); then hostile keys and names.
    let theirs = ghostcache::onion::client_auth::format_public(
        &ghostcache::onion::client_auth::NewClientKey::generate().public,
    );
    let (ok, out, err) = cli(
        &dir,
        &["client-auth", "add", "bob", "--public-key", &theirs],
    )
    .await;
    assert!(ok, "{err}");
    assert!(out.is_empty(), "nothing secret to print: {out}");
    let b32 = theirs.trim_start_matches("descriptor:x25519:");
    for (name, key, want) in [
        ("../x", None, "path character"),
        ("a/b", None, "path character"),
        ("Carol", None, "start with a letter"),
        ("", None, "empty"),
        ("c", Some("descriptor:x25519:"), "not a client public key"),
        ("c", Some(b32), "not a client public key"),
        (
            "c",
            Some(&format!("descriptor:x25519:{}", &b32[..50]) as &str),
            "not a client public key",
        ),
        (
            "c",
            Some(&format!("descriptor:ed25519:{b32}") as &str),
            "not a client public key",
        ),
        (
            "c",
            Some(&format!("descriptor:x25519:{}0", &b32[..51]) as &str),
            "not a client public key",
        ),
        ("c", Some(&theirs as &str), "already authorized, as bob"),
        ("bob", None, "already authorized"),
    ] {
        let mut args = vec!["client-auth", "add", name];
        if let Some(k) = key {
            args.extend(["--public-key", k]);
        }
        let (ok, out, err) = cli(&dir, &args).await;
        assert!(!ok, "{name:?} {key:?}");
        assert!(err.contains(want), "{name:?} {key:?}: {err}");
        assert!(out.is_empty(), "no key printed on refusal: {out}");
    }
    let (ok, _, err) = cli(&dir, &["client-auth", "remove", "../bob"]).await;
    assert!(!ok && err.contains("path character"), "{err}");
    let (ok, _, err) = cli(&dir, &["client-auth", "remove", "nobody"]).await;
    assert!(!ok && err.contains("no client named nobody"), "{err}");

    let (ok, out, _) = cli(&dir, &["client-auth", "list"]).await;
    assert!(ok);
    let names: Vec<&str> = out
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(names, vec!["alice-laptop", "bob"]);
    assert!(out.contains(&theirs));

    // The private key is nowhere in the database.
    let raw = std::fs::read(dir.join(ghostcache::store::DB_FILE)).unwrap();
    let key_bytes = data_encoding::BASE32_NOPAD
        .decode(private.as_bytes())
        .unwrap();
    assert!(!raw.windows(32).any(|w| w == key_bytes.as_slice()));
    assert!(!raw.windows(52).any(|w| w == private.as_bytes()));

    let (ok, _, err) = cli(&dir, &["client-auth", "remove", "alice-laptop"]).await;
    assert!(ok, "{err}");
    let (_, out, _) = cli(&dir, &["client-auth", "list"]).await;
    assert_eq!(out.lines().count(), 2, "{out}");
}

/// Register with an invitation code through the form.
async fn register_with(c: &mut Client, name: &str, code: &str) -> crate::support::Resp {
    c.submit(
        "/register",
        "/register",
        &[
            ("username", name),
            ("password", PW),
            ("d_pass", DPW),
            ("invite", code),
        ],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_registration_says_so_and_creates_nothing() {
    let server = TestServer::start_with(|c| {
        c.accounts.registration = ghostcache::invites::RegistrationMode::Closed;
    })
    .await;
    let mut c = server.client();
    // The start page offers only the login, and says why.
    let start = c.get("/").await;
    assert_eq!(start.status, StatusCode::OK);
    assert!(
        start
            .text()
            .contains("This place is not taking new members.")
    );
    assert!(
        start.texts("a[href='/register']").is_empty(),
        "no way to register"
    );
    assert_eq!(
        start.texts("a[href='/login']"),
        vec!["Log in", "Log in"],
        "the navigation and the page"
    );
    let page = c.get("/register").await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.texts("h1"), vec!["Registration is closed"]);
    assert!(page.texts("form[action='/register']").is_empty(), "no form");
    let r = c
        .post_form(
            "/register",
            &[("username", "eve"), ("password", PW), ("d_pass", DPW)],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.text().contains("Registration is closed"));
    let (_, out, _) = cli(server.dir.path(), &["member", "list"]).await;
    assert!(listed(&out).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_invitation_code_gets_the_same_answer_and_spends_the_rate_limit() {
    let server = TestServer::start_with(|c| {
        c.accounts.registration = ghostcache::invites::RegistrationMode::Invite;
        c.rate_limits.register_per_minute = 12;
    })
    .await;
    let dir = server.dir.path().to_owned();
    let mut c = server.client();
    let start = c.get("/").await;
    assert_eq!(
        start.texts("a[href='/register']"),
        vec!["Register", "Create an account with a code"]
    );
    assert!(
        start
            .text()
            .contains("New accounts need an invitation code")
    );
    let page = c.get("/register").await;
    assert_eq!(
        page.texts("form[action='/register'] input[name=invite]")
            .len(),
        1
    );

    // Operator codes: one single-use, one for two people that expires in a day.
    let (ok, single, err) = cli(&dir, &["invite"]).await;
    assert!(ok, "{err}");
    assert!(err.contains("1 use, valid until"), "{err}");
    let single = single.trim().to_owned();
    assert_eq!(single.len(), 39, "{single}");
    let (ok, double, err) = cli(&dir, &["invite", "--uses", "2", "--days", "1"]).await;
    assert!(ok, "{err}");
    let double = double.trim().to_owned();
    for bad in [
        ["--uses", "0"],
        ["--uses", "1001"],
        ["--days", "0"],
        ["--days", "366"],
        ["--days", "x"],
    ] {
        let (ok, out, _) = cli(&dir, &["invite", bad[0], bad[1]]).await;
        assert!(!ok && out.is_empty(), "{bad:?}");
    }

    // Only hashes are stored.
    let raw = std::fs::read(dir.join(ghostcache::store::DB_FILE)).unwrap();
    for code in [&single, &double] {
        for form in [code.clone(), code.replace('-', ""), code.to_uppercase()] {
            assert!(!raw.windows(form.len()).any(|w| w == form.as_bytes()));
        }
    }

    assert_eq!(
        register_with(&mut c, "first", &single).await.status,
        StatusCode::SEE_OTHER
    );
    let plain = single.replace('-', "");
    let bad_codes = [
        String::new(),                                    // missing
        single.clone(),                                   // used
        plain[..31].to_owned(),                           // too short
        format!("{plain}q"),                              // too long
        plain.replacen(&plain[..1], "1", 1),              // outside base32
        format!("{}!", &plain[..31]),                     // punctuation
        "zzzz-zzzz-zzzz-zzzz-zzzz-zzzz-zzzz-zzzz".into(), // well-formed, unknown
        "'; drop table invites_v1; --".into(),
    ];
    let mut answers = Vec::new();
    for code in &bad_codes {
        let r = register_with(&mut c, "second", code).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{code:?}");
        answers.push(r.text_without_csrf());
    }
    assert!(answers[0].contains("This invitation code is not valid"));
    assert!(
        answers.iter().all(|a| *a == answers[0]),
        "one answer for all"
    );
    // A form without the field at all answers the same.
    let csrf = c.get("/register").await.form_csrf("/register");
    let r = c
        .post_form(
            "/register",
            &[
                ("csrf", &csrf),
                ("username", "second"),
                ("password", PW),
                ("d_pass", DPW),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.text_without_csrf(), answers[0]);

    // Expired: a day later the two-use code is refused alike.
    server.clock.advance(86_400);
    let r = register_with(&mut c, "second", &double).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.text_without_csrf(), answers[0]);
    // 1 success and 10 refusals spent 11 of the 12 a minute: at most a few more go through
    // (one more, plus whatever the limiter regained meanwhile), then 429.
    let mut more = 0;
    loop {
        let r = register_with(&mut c, "second", "").await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            break;
        }
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        more += 1;
        assert!(more <= 3, "bad codes spend the registration limit");
    }
    let (_, out, _) = cli(&dir, &["member", "list"]).await;
    assert_eq!(listed(&out), vec!["first"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_invite_within_their_quota_and_codes_die_with_their_maker() {
    let server = TestServer::start_with(|c| {
        c.accounts.registration = ghostcache::invites::RegistrationMode::Invite;
        c.accounts.members_may_invite = true;
        c.accounts.invites_per_member = 2;
    })
    .await;
    let dir = server.dir.path().to_owned();
    let (_, code, _) = cli(&dir, &["invite", "--uses", "2"]).await;
    let code = code.trim().to_owned();
    let mut host = server.client();
    assert_eq!(
        register_with(&mut host, "host", &code).await.status,
        StatusCode::SEE_OTHER
    );
    assert_eq!(host.login("host", PW).await.status, StatusCode::SEE_OTHER);
    let settings = host.get("/settings").await;
    assert_eq!(settings.texts("a[href='/settings/invites']").len(), 1);

    let mut made = Vec::new();
    for _ in 0..2 {
        let r = host
            .submit("/settings/invites", "/settings/invites", &[])
            .await;
        assert_eq!(r.status, StatusCode::OK);
        let shown = r.texts("code.invite-code");
        assert_eq!(shown.len(), 1, "the new code is shown once");
        made.push(shown[0].clone());
    }
    let r = host
        .submit("/settings/invites", "/settings/invites", &[])
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.text().contains("You already hold 2 invitation codes"));
    assert!(r.texts("code.invite-code").is_empty());
    // The page lists the codes (not their text) and never shows one again.
    let page = host.get("/settings/invites").await;
    assert_eq!(page.texts("table.invites tbody tr").len(), 2);
    assert!(!page.text().contains(&made[0]));

    // A form without CSRF changes nothing.
    let r = host.post_form("/settings/invites", &[]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    let mut guest = server.client();
    assert_eq!(
        register_with(&mut guest, "guest", &made[0]).await.status,
        StatusCode::SEE_OTHER
    );
    let page = host.get("/settings/invites").await;
    assert!(page.text().contains("yes"), "the used code shows as used");
    // Used codes still count until they expire.
    let r = host
        .submit("/settings/invites", "/settings/invites", &[])
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);

    // Removing the member voids the codes they made.
    let (ok, _, err) = cli(&dir, &["member", "remove", "host"]).await;
    assert!(ok, "{err}");
    let mut other = server.client();
    let r = register_with(&mut other, "late", &made[1]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.text().contains("This invitation code is not valid"));
    // The operator's second use still works.
    assert_eq!(
        register_with(&mut other, "late", &code).await.status,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_invitations_are_not_found_unless_enabled() {
    use ghostcache::invites::RegistrationMode;
    for (mode, may) in [
        (RegistrationMode::Open, true),
        (RegistrationMode::Invite, false),
    ] {
        let server = TestServer::start_with(|c| {
            c.accounts.registration = mode;
            c.accounts.members_may_invite = may;
        })
        .await;
        let mut c = server.client();
        if mode == RegistrationMode::Invite {
            let (_, code, _) = cli(server.dir.path(), &["invite"]).await;
            register_with(&mut c, "ivy", code.trim()).await;
            assert_eq!(c.login("ivy", PW).await.status, StatusCode::SEE_OTHER);
        } else {
            c.member("ivy").await;
        }
        assert_eq!(
            c.get("/settings/invites").await.status,
            StatusCode::NOT_FOUND
        );
        let csrf = c.get("/settings").await.form_csrf("/logout");
        let r = c.post_form("/settings/invites", &[("csrf", &csrf)]).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        assert!(
            c.get("/settings")
                .await
                .texts("a[href='/settings/invites']")
                .is_empty()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_backups_keep_the_newest_and_the_newest_restores() {
    let dir = crate::support::server::private_tempdir();
    let data = dir.path().join("data");
    let backups = dir.path().join("backups");
    let server = crate::ops::serve(&data, &dir.path().join("serve.stderr"));
    let mut c = Client::new(server.http.unwrap());
    // A file that is not a backup stays whatever --keep says.
    std::fs::create_dir(&backups).unwrap();
    std::fs::set_permissions(&backups, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(backups.join("notes.txt"), b"mine").unwrap();
    for i in 1..=3 {
        c.register(&format!("member{i}"), PW, DPW).await;
        let (ok, _, err) = cli(
            &data,
            &["backup", "--into", backups.to_str().unwrap(), "--keep", "2"],
        )
        .await;
        assert!(ok, "{err}");
        assert!(err.contains("backup written to"), "{err}");
    }
    let mut names: Vec<String> = std::fs::read_dir(&backups)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names.len(),
        5,
        "two backups with their key files, and the stranger: {names:?}"
    );
    assert!(names.contains(&"notes.txt".to_owned()));
    for n in names.iter().filter(|n| n.ends_with(".redb")) {
        assert!(names.contains(&format!("{n}.keys")), "{n} has its key file");
    }
    for n in names.iter().filter(|n| n.ends_with(".redb")) {
        let mode = std::fs::metadata(backups.join(n))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{n}");
    }

    // Hostile or incomplete arguments: a clear error, nothing written or removed.
    let b = backups.to_str().unwrap();
    for args in [
        vec!["backup", "--into", b, "--keep", "0"],
        vec!["backup", "--into", b, "--keep", "-1"],
        vec!["backup"],
        vec!["backup", "--keep", "3"],
        vec!["backup", "x.redb", "--into", b],
    ] {
        let (ok, _, err) = cli(&data, &args).await;
        assert!(!ok, "{args:?}");
        assert!(!err.is_empty(), "{args:?}");
    }
    let open = dir.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (ok, _, err) = cli(&data, &["backup", "--into", open.to_str().unwrap()]).await;
    assert!(!ok && err.contains("chmod 700"), "{err}");
    assert_eq!(std::fs::read_dir(&open).unwrap().count(), 0);
    assert_eq!(std::fs::read_dir(&backups).unwrap().count(), 5);
    assert!(server.stop().success());

    // Restore the newest into a fresh data directory, as the README says, and log in.
    let newest = names
        .iter()
        .filter(|n| n.ends_with(".redb"))
        .max_by_key(|n| {
            let stem = n.trim_end_matches(".redb");
            let (stamp, seq) = stem.rsplit_once("Z-").unwrap_or((stem, "0"));
            (
                stamp.trim_end_matches('Z').to_owned(),
                seq.parse::<u32>().unwrap(),
            )
        })
        .unwrap();
    let fresh = dir.path().join("fresh");
    std::fs::create_dir(&fresh).unwrap();
    std::fs::set_permissions(&fresh, std::fs::Permissions::from_mode(0o700)).unwrap();
    let db = fresh.join(ghostcache::store::DB_FILE);
    std::fs::copy(backups.join(newest), &db).unwrap();
    std::fs::copy(
        ghostcache::store::erasure::keys_path(&backups.join(newest)),
        ghostcache::store::erasure::keys_path(&db),
    )
    .unwrap();
    std::fs::copy(data.with_extension("toml"), fresh.with_extension("toml")).unwrap();
    let server = crate::ops::serve(&fresh, &dir.path().join("fresh.stderr"));
    let mut c = Client::new(server.http.unwrap());
    for i in 1..=3 {
        let name = format!("member{i}");
        assert_eq!(
            c.login(&name, PW).await.status,
            StatusCode::SEE_OTHER,
            "{name}"
        );
    }
    assert!(server.stop().success());
}

/// The README's snippet for a member who makes their own key pair (Python's
/// `cryptography`): its public key is accepted, and its private key is the one for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_pair_made_with_the_readme_snippet_is_accepted() {
    let readme = include_str!("../../README.md");
    let start = readme.find("import base64").unwrap();
    let snippet = &readme[start..start + readme[start..].find("```").unwrap()];
    let snippet: String = snippet
        .lines()
        .map(|l| format!("{}\n", l.trim_start()))
        .collect();
    let out = std::process::Command::new("python3")
        .args(["-c", &snippet])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let field = |prefix: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("{prefix} in {text}"))
            .trim()
            .to_owned()
    };
    let private = field("private key (keep): ");
    let public = field("public key (for the operator): ");
    let secret: [u8; 32] = data_encoding::BASE32_NOPAD
        .decode(private.as_bytes())
        .unwrap()
        .try_into()
        .unwrap();
    let derived = tor_llcrypto::pk::curve25519::PublicKey::from(
        &tor_llcrypto::pk::curve25519::StaticSecret::from(secret),
    );
    assert_eq!(
        public,
        ghostcache::onion::client_auth::format_public(&derived.to_bytes())
    );

    let server = TestServer::start().await;
    let (ok, out, err) = cli(
        server.dir.path(),
        &["client-auth", "add", "py-member", "--public-key", &public],
    )
    .await;
    assert!(ok, "{err}");
    assert!(out.is_empty());
}
