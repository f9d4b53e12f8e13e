//! Destruction is durable before it is answered and nothing logs into it afterwards
//! (200 tries in a row, 200 at the same time, SIGKILL right after the answer), and
//! deletion is erasure: a carve of the raw files (and of a backup taken after the
//! deletion) finds none of the member's credentials, and nothing in them opens with the
//! right password, even with the master key.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use hyper::StatusCode;

use crate::files::file_path;
use crate::support::chat::{connect, group_with, say};
use crate::support::server::{private_tempdir, random_key_material};
use crate::support::{Client, DPW, PW, TestServer};
use ghostcache::accounts::{self, Username};
use ghostcache::crypto::SecretKey;
use ghostcache::store::{Credentials, Store, erasure};

/// Members registered through the library (sharing one delivery key, to skip 400 RSA key
/// generations); every try below goes through HTTP.
async fn many_members(server: &TestServer, prefix: &str, n: usize) -> Vec<String> {
    let state = std::sync::Arc::clone(server.state());
    let names: Vec<String> = (0..n).map(|i| format!("{prefix}{i:03}")).collect();
    let list = names.clone();
    let der = ghostcache::crypto::rsa_keys::RsaPrivate::generate(2048)
        .unwrap()
        .to_der()
        .unwrap()
        .to_vec();
    let now = server.clock.now();
    state
        .store
        .clone()
        .run(move |store| {
            for name in &list {
                let delivery = ghostcache::crypto::rsa_keys::RsaPrivate::from_der(&der).unwrap();
                accounts::create_account(
                    store,
                    &state.accounts,
                    &Username::parse(name).unwrap(),
                    &ghostcache::accounts::secret::Presented::password(PW.as_bytes()),
                    &ghostcache::accounts::secret::Presented::password(DPW.as_bytes()),
                    delivery,
                    now,
                )?
                .unwrap();
            }
            Ok(())
        })
        .await
        .unwrap();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_password_right_after_the_destruction_password_never_logs_in() {
    let server = TestServer::start().await;
    let names = many_members(&server, "seq", 200).await;
    for name in &names {
        let mut coerced = server.client();
        assert_eq!(coerced.login(name, DPW).await.status, StatusCode::FORBIDDEN);
        let mut quick = server.client();
        let r = quick.login(name, PW).await;
        assert_eq!(
            r.status,
            StatusCode::FORBIDDEN,
            "{name} logged in after its destruction"
        );
        assert!(quick.session().is_none());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_password_at_the_same_time_as_the_destruction_password_never_keeps_a_session() {
    let server = TestServer::start().await;
    let names = many_members(&server, "par", 200).await;
    let mut logged_in_first = 0;
    for name in &names {
        // Both forms fetched first, then both posted at once.
        let mut a = server.client();
        let mut b = server.client();
        let csrf_a = a.get("/login").await.form_csrf("/login");
        let csrf_b = b.get("/login").await.form_csrf("/login");
        let fields_a = [
            ("csrf", csrf_a.as_str()),
            ("username", name),
            ("password", DPW),
        ];
        let fields_b = [
            ("csrf", csrf_b.as_str()),
            ("username", name),
            ("password", PW),
        ];
        let destroy = a.post_form("/login", &fields_a);
        let login = b.post_form("/login", &fields_b);
        let (destroyed, logged) = tokio::join!(destroy, login);
        assert_eq!(destroyed.status, StatusCode::FORBIDDEN);
        if logged.status == StatusCode::SEE_OTHER {
            // The login won the race: the destruction then ended its session.
            logged_in_first += 1;
            let r = b.get("/settings").await;
            assert_eq!(
                r.status,
                StatusCode::SEE_OTHER,
                "{name}: a session survived"
            );
            assert_eq!(r.header("location"), Some("/login"));
        } else {
            assert_eq!(logged.status, StatusCode::FORBIDDEN);
        }
        let mut after = server.client();
        assert_eq!(after.login(name, PW).await.status, StatusCode::FORBIDDEN);
    }
    eprintln!("the login committed first in {logged_in_first} of 200 tries");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkill_right_after_the_destruction_answer_leaves_nothing_to_log_into() {
    let dir = private_tempdir();
    let data = dir.path().join("data");
    for round in 0..5 {
        let server = crate::ops::serve(&data, &dir.path().join(format!("r{round}.stderr")));
        let addr = server.http.unwrap();
        let (victim, witness) = (format!("victim{round}"), format!("witness{round}"));
        let (mut v, mut w) = (Client::new(addr), Client::new(addr));
        v.member(&victim).await;
        w.member(&witness).await;
        let conversation = connect(&mut v, &mut w, &witness).await;
        say(&mut v, &conversation, "before the end").await;
        let mut coerced = Client::new(addr);
        let r = coerced.login(&victim, DPW).await;
        server.kill();
        assert_eq!(r.status, StatusCode::FORBIDDEN);

        let server = crate::ops::serve(&data, &dir.path().join(format!("r{round}b.stderr")));
        let addr = server.http.unwrap();
        let mut c = Client::new(addr);
        assert_eq!(c.login(&victim, PW).await.status, StatusCode::FORBIDDEN);
        assert_eq!(c.login(&victim, DPW).await.status, StatusCode::FORBIDDEN);
        let r = c
            .submit(
                "/register",
                "/register",
                &[("username", &victim), ("password", PW), ("d_pass", DPW)],
            )
            .await;
        assert_eq!(r.status, StatusCode::CONFLICT, "the decoy holds the name");
        // The erasure that the kill may have cut short was finished at start-up.
        let mut w = Client::new(addr);
        assert_eq!(w.login(&witness, PW).await.status, StatusCode::SEE_OTHER);
        assert!(!w.get("/connections").await.text().contains(&victim));
        assert_eq!(
            w.get(&format!("/chat/{conversation}")).await.status,
            StatusCode::NOT_FOUND
        );
        assert!(server.stop().success());
    }
}

/// Every Fernet token in `bytes` (`gAAAA…`, base64url).
fn tokens(bytes: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i + 5 < bytes.len() {
        if &bytes[i..i + 5] == b"gAAAA" {
            let end = bytes[i..]
                .iter()
                .position(|b| {
                    !(b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_' || *b == b'=')
                })
                .map_or(bytes.len(), |p| i + p);
            out.push(String::from_utf8_lossy(&bytes[i..end]).into_owned());
            i = end;
        } else {
            i += 1;
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// What an attacker holding `db` and `keys` (and the master key, and the right
/// password) can get out of them about the departed member.
fn carve(db: &Path, keys: &Path, pepper: &ghostcache::crypto::master::Pepper, gone: &Gone) {
    let what = db.display();
    let db = std::fs::read(db).unwrap();
    let keys = std::fs::read(keys).unwrap();
    assert!(contains(&db, b"witness"), "sanity: the scan sees {what}");
    for file in [&db, &keys] {
        assert!(!contains(file, &gone.salt), "{what}: salt");
        assert!(!contains(file, &gone.password_verifier), "{what}: verifier");
        assert!(
            !contains(file, &gone.destruction_verifier),
            "{what}: verifier"
        );
        assert!(
            !contains(file, gone.wrapped_data_key.as_bytes()),
            "{what}: wrapped data key"
        );
        assert!(!contains(file, &gone.erasure_key), "{what}: erasure key");
        assert!(!contains(file, &gone.data_key), "{what}: data key");
        for marker in [
            "a marker message",
            "Marker group",
            "marker-file.txt",
            "marker file body",
        ] {
            assert!(!contains(file, marker.as_bytes()), "{what}: {marker}");
        }
    }
    // Every slot of the key file, against every token of the database: what opens is the
    // credentials of members who are still there, and of the decoy (which keeps the salt
    // and cost, all a stranger could ever observe, and nothing else); the right password
    // matches none of them.
    // (Distinct tokens: redb keeps older copies of a rewritten record in free pages.)
    let found: std::collections::BTreeSet<String> = tokens(&db).into_iter().collect();
    assert!(
        !found.is_empty(),
        "sanity: the database holds sealed records"
    );
    let mut opened = 0;
    let mut decoys = 0;
    for slot in keys[32..].chunks_exact(32) {
        if slot.iter().all(|b| *b == 0) {
            continue;
        }
        let key = SecretKey::from_slice(slot).unwrap();
        for token in &found {
            let Ok(creds) = Credentials::open(token, &key) else {
                continue;
            };
            opened += 1;
            if creds.salt == gone.salt {
                decoys += 1;
            }
            assert_ne!(creds.password_verifier.0, gone.password_verifier, "{what}");
            assert_ne!(
                creds.destruction_verifier.0, gone.destruction_verifier,
                "{what}"
            );
            assert_ne!(creds.wrapped_data_key, gone.wrapped_data_key, "{what}");
            for password in [MARKER_PW, MARKER_DPW] {
                let check = ghostcache::accounts::credentials::check(
                    &creds,
                    &accounts::secret::Presented::password(password.as_bytes()),
                    &gone.name_salt,
                    Some(pepper),
                )
                .unwrap();
                assert!(
                    !check.password && !check.destruction,
                    "{what}: a password matched"
                );
            }
        }
    }
    assert!(
        opened >= 2,
        "sanity: the witness's and the decoy's credentials open"
    );
    assert_eq!(decoys, 1, "{what}: only the decoy has that salt");
}

const MARKER_PW: &str = "the marker's own password";
const MARKER_DPW: &str = "the marker's destruction";

/// What the departed member had, captured before the deletion.
struct Gone {
    salt: [u8; 16],
    /// The salt of the name (what a login secret is derived with).
    name_salt: [u8; 16],
    password_verifier: [u8; 32],
    destruction_verifier: [u8; 32],
    wrapped_data_key: String,
    erasure_key: [u8; 32],
    data_key: [u8; 32],
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_carve_of_the_files_and_of_a_later_backup_opens_nothing_of_a_departed_member() {
    let dir = private_tempdir();
    let master = dir.path().join("master.key");
    std::fs::write(&master, random_key_material()).unwrap();
    std::fs::set_permissions(&master, std::fs::Permissions::from_mode(0o600)).unwrap();
    let data = private_tempdir();
    let master_path = master.clone();
    let server = TestServer::start_in(data, move |c| {
        c.master_key_file = Some(master_path);
        c.rate_limits.searches_per_minute = 1000;
    })
    .await;
    let pepper =
        ghostcache::crypto::master::MasterSecret::from_bytes(&std::fs::read(&master).unwrap())
            .pepper();

    // A member with marker data: messages, a group, a file; with passwords of their own.
    let mut m = server.client();
    m.register("marker", MARKER_PW, MARKER_DPW).await;
    assert_eq!(
        m.login("marker", MARKER_PW).await.status,
        StatusCode::SEE_OTHER
    );
    let mut w = server.client();
    w.member("witness").await;
    let conversation = connect(&mut m, &mut w, "witness").await;
    say(&mut m, &conversation, "a marker message").await;
    let group = group_with(&mut m, "Marker group", &mut w, "witness").await;
    m.submit(
        &group,
        &group,
        &[("message", "a marker message"), ("timer", "")],
    )
    .await;
    let upload = m.upload("marker-file.txt", b"marker file body", "30").await;
    let file = file_path(&upload);
    m.submit(&file, &format!("{file}/share"), &[("username", "witness")])
        .await;

    // What an attacker would need, captured before the deletion.
    let store: Store = server.state().store.clone();
    let (_, record) = accounts::find_user(&store, &Username::parse("marker").unwrap())
        .unwrap()
        .unwrap();
    let key = store.keys().read(record.erasure_slot).unwrap().unwrap();
    let creds = Credentials::open(&record.credentials_sealed, &key).unwrap();
    let session = server
        .state()
        .sessions
        .get(m.session().unwrap(), server.clock.now())
        .unwrap();
    let gone = Gone {
        salt: creds.salt,
        name_salt: accounts::secret::salt(
            &accounts::secret::installation_secret(&store).unwrap(),
            "marker",
        ),
        password_verifier: creds.password_verifier.0,
        destruction_verifier: creds.destruction_verifier.0,
        wrapped_data_key: creds.wrapped_data_key.clone(),
        erasure_key: *key.expose(),
        data_key: *session.data_key.expose(),
    };
    drop(session);
    let db_path = server.dir.path().join(ghostcache::store::DB_FILE);
    let before = std::fs::read(erasure::keys_path(&db_path)).unwrap();
    assert!(
        contains(&before, &gone.erasure_key),
        "sanity: the key is in the key file"
    );

    // The destruction password, then the erasure in the background.
    let mut coerced = server.client();
    assert_eq!(
        coerced.login("marker", MARKER_DPW).await.status,
        StatusCode::FORBIDDEN
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, r) = accounts::find_user(&store, &Username::parse("marker").unwrap())
            .unwrap()
            .unwrap();
        if !r.erasing {
            break;
        }
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A backup taken after the deletion.
    let backup = private_tempdir();
    let backup_db = backup.path().join("after.redb");
    let report = ghostcache::store::backup::backup(&db_path, &backup_db).unwrap();
    assert!(report.rows > 0);
    drop(store);
    let data = server.stop().await;
    let db_path = data.path().join(ghostcache::store::DB_FILE);
    carve(&db_path, &erasure::keys_path(&db_path), &pepper, &gone);
    carve(&backup_db, &erasure::keys_path(&backup_db), &pepper, &gone);
}
