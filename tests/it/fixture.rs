//! Stored data from before a change still opens and verifies.
//!
//! `tests/fixtures/<name>/` holds a database written by an earlier build of ghostcache
//! (`ghostcache.redb`) and a description of what is in it (`fixture.json`: the members
//! and their passwords, every conversation with the messages each reader must see, the
//! file with its key). [`stored_data_from_before_still_opens_and_verifies`] opens a copy
//! of every fixture with the current code and checks, through the pages as a member uses
//! them: every login works, every message opens and shows "signature verified", each
//! group reads across its epochs, every member's stored signing key still signs a new
//! message the others verify, and the file decrypts to its bytes.
//!
//! The fixtures are kept, never rewritten: each one is the proof that data written by
//! that build still opens. To add one (after a change of a stored format, say), run the
//! generator with the code of that build and commit the directory it writes:
//!
//! ```sh
//! GC_FIXTURE_OUT=tests/fixtures/<name> \
//!     cargo test --test it fixture::write_a_fixture -- --ignored --exact
//! ```
//!
//! The generator goes through the pages too (register, settings, connect, chat, groups,
//! upload and share), so it runs unchanged against later code. The server's clock during
//! the check is the fixture's own time plus two minutes: the accounts are not inactive
//! and the timed message has not expired yet.
//!
//! `schema2-pre-crypto` was written by commit d0ce570 (schema 2, before RSA moved to
//! aws-lc-rs and message records bound their sequence number).

use std::path::{Path, PathBuf};

use hyper::StatusCode;
use serde::{Deserialize, Serialize};

use crate::files::{download, file_path, key_of, share};
use crate::groups::{add, create_group, gpath, gsay};
use crate::support::TestServer;
use crate::support::chat::{connect, messages, say};
use crate::support::server::private_tempdir;
use ghostcache::clock::Clock;
use ghostcache::config::Config;

/// What a fixture holds, as its checker needs it.
#[derive(Serialize, Deserialize)]
struct Fixture {
    /// Which code wrote it.
    written_by: String,
    /// The server's clock when it was written (Unix seconds).
    created_at: i64,
    members: Vec<Member>,
    /// One-to-one chats and groups: the page and what each reader sees on it.
    conversations: Vec<Conversation>,
    files: Vec<FileEntry>,
}

#[derive(Serialize, Deserialize)]
struct Member {
    name: String,
    password: String,
    destruction: String,
    /// `rsa-pss` or `dsa`.
    scheme: String,
}

#[derive(Serialize, Deserialize)]
struct Conversation {
    /// `/chat/<id>` or `/chat/group/<id>`.
    path: String,
    readers: Vec<Reading>,
}

#[derive(Serialize, Deserialize)]
struct Reading {
    reader: String,
    /// Oldest first.
    messages: Vec<Expected>,
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Eq)]
struct Expected {
    /// As the page shows it ("You" for the reader's own messages).
    sender: String,
    text: String,
    /// Whether it carries a self-destruct timer.
    timed: bool,
}

#[derive(Serialize, Deserialize)]
struct FileEntry {
    path: String,
    key: String,
    name: String,
    content: String,
    /// Members who may download it (owner first).
    readers: Vec<String>,
}

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The messages a page shows, oldest first, with their verification status.
fn shown(page: &crate::support::Resp) -> Vec<(Expected, String)> {
    let doc = page.html();
    let sel = scraper::Selector::parse("section.history article.msg").unwrap();
    let timed: Vec<bool> = doc
        .select(&sel)
        .map(|m| m.value().classes().any(|c| c == "exp"))
        .collect();
    let mut out: Vec<(Expected, String)> = messages(page)
        .into_iter()
        .zip(timed)
        .map(|((sender, text, status), timed)| {
            (
                Expected {
                    sender,
                    text,
                    timed,
                },
                status,
            )
        })
        .collect();
    out.reverse();
    out
}

/// Open a copy of every fixture with the current code and read everything in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_data_from_before_still_opens_and_verifies() {
    let mut checked = 0;
    let mut names: Vec<PathBuf> = std::fs::read_dir(fixtures_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("fixture.json").exists())
        .collect();
    names.sort();
    for dir in names {
        check_fixture(&dir).await;
        checked += 1;
    }
    assert!(checked >= 1, "no fixture under tests/fixtures");
}

/// A server on a copy of the fixture in `dir`, its clock just after the fixture's.
async fn start_fixture(dir: &Path) -> (TestServer, Fixture) {
    let fixture: Fixture =
        serde_json::from_slice(&std::fs::read(dir.join("fixture.json")).unwrap()).unwrap();
    let data = private_tempdir();
    let db = data.path().join(ghostcache::store::DB_FILE);
    std::fs::copy(dir.join(ghostcache::store::DB_FILE), &db).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let clock = Clock::system();
    clock.advance(fixture.created_at + 120 - clock.now());
    let server = TestServer::start_at(data, clock, |c: &mut Config| {
        c.rate_limits.searches_per_minute = 10_000;
    })
    .await;
    (server, fixture)
}

async fn check_fixture(dir: &Path) {
    let label = dir.file_name().unwrap().to_string_lossy().into_owned();
    let (server, fixture) = start_fixture(dir).await;

    let mut clients = std::collections::HashMap::new();
    for m in &fixture.members {
        let mut c = server.client();
        let r = c.login(&m.name, &m.password).await;
        assert_eq!(
            r.status,
            StatusCode::SEE_OTHER,
            "{label}: {} cannot log in",
            m.name
        );
        assert_eq!(r.header("location"), Some("/"), "{label}: {}", m.name);
        clients.insert(m.name.clone(), c);
    }

    for conv in &fixture.conversations {
        for reading in &conv.readers {
            let c = clients.get_mut(&reading.reader).unwrap();
            let page = c.get(&conv.path).await;
            assert_eq!(page.status, StatusCode::OK, "{label}: {}", conv.path);
            let got = shown(&page);
            for (m, status) in &got {
                assert_eq!(
                    status, "verified",
                    "{label}: {} reads {:?} on {} as {status}",
                    reading.reader, m, conv.path
                );
            }
            let got: Vec<Expected> = got.into_iter().map(|(m, _)| m).collect();
            assert_eq!(
                got, reading.messages,
                "{label}: what {} reads on {}",
                reading.reader, conv.path
            );
        }
    }

    // The signing keys stored by that build still sign: each reader writes once more
    // (the DSA member's key is parsed and used by the current DSA code), and every reader
    // sees the new messages, verified, after what was there.
    for conv in &fixture.conversations {
        for reading in &conv.readers {
            let c = clients.get_mut(&reading.reader).unwrap();
            let text = format!("{} writes again", reading.reader);
            let r = c
                .submit(&conv.path, &conv.path, &[("message", &text), ("timer", "")])
                .await;
            assert_eq!(
                r.status,
                StatusCode::SEE_OTHER,
                "{label}: {} writes on {}",
                reading.reader,
                conv.path
            );
        }
        for reading in &conv.readers {
            let c = clients.get_mut(&reading.reader).unwrap();
            let got = shown(&c.get(&conv.path).await);
            let new = got.get(reading.messages.len()..).unwrap_or_default();
            let texts: Vec<String> = new
                .iter()
                .map(|(m, status)| {
                    assert_eq!(
                        status, "verified",
                        "{label}: {} reads {m:?}",
                        reading.reader
                    );
                    m.text.clone()
                })
                .collect();
            let wanted: Vec<String> = conv
                .readers
                .iter()
                .map(|w| format!("{} writes again", w.reader))
                .collect();
            assert_eq!(
                texts, wanted,
                "{label}: {} on {}",
                reading.reader, conv.path
            );
        }
    }

    for file in &fixture.files {
        for reader in &file.readers {
            let c = clients.get_mut(reader).unwrap();
            let page = c.get(&file.path).await;
            assert_eq!(
                page.status,
                StatusCode::OK,
                "{label}: {reader} {}",
                file.path
            );
            assert_eq!(page.texts("h1"), vec![file.name.clone()], "{label}");
            let got = download(c, &file.path, &file.key).await;
            assert_eq!(got.status, StatusCode::OK, "{label}: {reader} downloads");
            assert!(
                got.body == file.content.as_bytes(),
                "{label}: the file's bytes"
            );
        }
    }
    drop(clients);
    server.stop().await;
}

/// An account written before login secrets checks its password itself (so its browser
/// sends the password, and end-to-end mode waits) until its destruction password is set
/// again; then it takes login secrets like any other, with its data as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_from_before_login_secrets_moves_when_its_destruction_password_is_set() {
    use crate::login_secret::{login_with_secret, params, secret_with};
    let (server, fixture) = start_fixture(&fixtures_dir().join("schema2-pre-crypto")).await;
    let m = &fixture.members[0];
    let conv = fixture
        .conversations
        .iter()
        .find(|c| c.readers.iter().any(|r| r.reader == m.name))
        .unwrap();
    let mut anon = server.client();
    let before = params(&mut anon, &m.name).await;
    assert_eq!(before["secret"], serde_json::json!(false), "older login");
    let older_secret = secret_with(&before, &m.password);
    let r = anon
        .submit(
            "/login",
            "/login",
            &[("username", &m.name), ("password_secret", &older_secret)],
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::FORBIDDEN,
        "a login secret cannot match what was made from the password itself"
    );
    let mut c = server.client();
    assert_eq!(
        c.login(&m.name, &m.password).await.status,
        StatusCode::SEE_OTHER
    );
    let settings = c.get("/settings").await;
    assert_eq!(settings.texts("#older-login").len(), 1);
    // End-to-end mode waits until the account has moved.
    let (status, v) = crate::login_secret::try_e2e_keys(&mut c).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(v["error"].as_str().unwrap().contains("older login"), "{v}");
    let read_before = shown(&c.get(&conv.path).await);
    // Setting the destruction password again (the same one) moves it.
    let r = c
        .submit(
            "/settings",
            "/settings/destruction-password",
            &[
                ("current_password", &m.password),
                ("new_d_pass", &m.destruction),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let after = params(&mut anon, &m.name).await;
    assert_eq!(after["secret"], serde_json::json!(true));
    assert_eq!(
        after["salt"], before["salt"],
        "the name's salt never changes"
    );
    assert!(c.get("/settings").await.texts("#older-login").is_empty());
    let mut js = server.client();
    let r = login_with_secret(&mut js, &m.name, &m.password).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(
        shown(&js.get(&conv.path).await),
        read_before,
        "data as it was"
    );
    let mut plain = server.client();
    assert_eq!(
        plain.login(&m.name, &m.password).await.status,
        StatusCode::SEE_OTHER
    );
    let (status, _) = crate::login_secret::try_e2e_keys(&mut js).await;
    assert_eq!(status, StatusCode::OK);
    server.stop().await;
}

/// Write a fixture with the code as it is: see the module documentation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes a fixture: run by hand with GC_FIXTURE_OUT"]
async fn write_a_fixture() {
    let out = PathBuf::from(std::env::var("GC_FIXTURE_OUT").expect("GC_FIXTURE_OUT"));
    let out = if out.is_absolute() {
        out
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(out)
    };
    assert!(
        !out.join(ghostcache::store::DB_FILE).exists(),
        "{} already holds a fixture: fixtures are never rewritten",
        out.display()
    );
    let server = TestServer::start_with(|c: &mut Config| {
        // The production key size, so that the fixture holds keys like a real file's.
        c.crypto.rsa_bits = 3072;
        c.rate_limits.connection_requests_per_minute = 10_000;
        c.rate_limits.searches_per_minute = 10_000;
        c.rate_limits.messages_per_minute = 10_000;
    })
    .await;
    let created_at = server.clock.now();
    let member = |name: &str, scheme: &str| Member {
        name: name.into(),
        password: format!("{name} fixture password"),
        destruction: format!("{name} fixture destruction"),
        scheme: scheme.into(),
    };
    let members = vec![
        member("alice", "rsa-pss"),
        member("bob", "dsa"),
        member("carol", "rsa-pss"),
    ];
    let mut cs = Vec::new();
    for m in &members {
        let mut c = server.client();
        c.register(&m.name, &m.password, &m.destruction).await;
        let r = c.login(&m.name, &m.password).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER);
        if m.scheme != "rsa-pss" {
            let r = c
                .submit(
                    "/settings/signature",
                    "/settings/signature",
                    &[("scheme", &m.scheme)],
                )
                .await;
            assert_eq!(r.status, StatusCode::SEE_OTHER);
        }
        cs.push(c);
    }
    let [alice, bob, carol] = &mut cs[..] else {
        unreachable!()
    };
    let e = |sender: &str, text: &str, timed: bool| Expected {
        sender: sender.into(),
        text: text.into(),
        timed,
    };

    // alice (RSA-PSS) and bob (DSA): messages both ways, one with a week's timer.
    let ab = connect(alice, bob, "bob").await;
    let ab_path = format!("/chat/{ab}");
    assert_eq!(
        say(alice, &ab, "Hello bob, from alice").await.status,
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        say(bob, &ab, "Hi alice, bob signs with DSA").await.status,
        StatusCode::SEE_OTHER
    );
    let r = alice
        .submit(
            &ab_path,
            &ab_path,
            &[
                ("message", "This one self-destructs in a week"),
                ("timer", "604800"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(
        say(bob, &ab, "Seen it <b>&amp;</b> \u{e9}").await.status,
        StatusCode::SEE_OTHER
    );
    let ab_alice = vec![
        e("You", "Hello bob, from alice", false),
        e("bob", "Hi alice, bob signs with DSA", false),
        e("You", "This one self-destructs in a week", true),
        e("bob", "Seen it <b>&amp;</b> \u{e9}", false),
    ];
    let ab_bob = vec![
        e("alice", "Hello bob, from alice", false),
        e("You", "Hi alice, bob signs with DSA", false),
        e("alice", "This one self-destructs in a week", true),
        e("You", "Seen it <b>&amp;</b> \u{e9}", false),
    ];

    // carol asks alice, alice accepts and writes; carol never opens the chat, so her
    // side's keys stay sealed to her delivery key in the file.
    let ca = connect(carol, alice, "alice").await;
    assert_eq!(
        say(alice, &ca, "Welcome carol").await.status,
        StatusCode::SEE_OTHER
    );

    // A group across two epochs: alice creates it, bob joins (epoch 2), both write;
    // carol joins (epoch 3), carol and alice write. bob does not read after carol joined,
    // so his key of epoch 3 stays sealed to his delivery key.
    let g = create_group(alice, "Fixture group").await;
    add(alice, &g, bob, "bob").await;
    for (c, text) in [
        (&mut *alice, "Epoch 2 from alice"),
        (&mut *bob, "Epoch 2 from bob"),
    ] {
        assert_eq!(gsay(c, &g, text, "").await.status, StatusCode::SEE_OTHER);
    }
    add(alice, &g, carol, "carol").await;
    assert_eq!(
        gsay(carol, &g, "Epoch 3 from carol", "").await.status,
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        gsay(alice, &g, "Epoch 3 from alice, timed", "604800")
            .await
            .status,
        StatusCode::SEE_OTHER
    );
    let epoch2 = |reader: &str| {
        let who = |n: &str| if n == reader { "You" } else { n }.to_owned();
        vec![
            e(&who("alice"), "Epoch 2 from alice", false),
            e(&who("bob"), "Epoch 2 from bob", false),
        ]
    };
    let epoch3 = |reader: &str| {
        let who = |n: &str| if n == reader { "You" } else { n }.to_owned();
        vec![
            e(&who("carol"), "Epoch 3 from carol", false),
            e(&who("alice"), "Epoch 3 from alice, timed", true),
        ]
    };
    let group_reading = |reader: &str, from_epoch2: bool| Reading {
        reader: reader.into(),
        messages: if from_epoch2 {
            epoch2(reader).into_iter().chain(epoch3(reader)).collect()
        } else {
            epoch3(reader)
        },
    };

    // A file alice shares with bob.
    let content = "Fixture file: the same bytes before and after.\n".repeat(50);
    let up = alice
        .upload("fixture notes.txt", content.as_bytes(), "365")
        .await;
    assert_eq!(up.status, StatusCode::OK, "{}", up.text());
    let (fpath, fkey) = (file_path(&up), key_of(&up));
    assert_eq!(
        share(alice, &fpath, "bob").await.status,
        StatusCode::SEE_OTHER
    );

    let fixture = Fixture {
        written_by: std::env::var("GC_FIXTURE_WRITTEN_BY").unwrap_or_else(|_| "unknown".into()),
        created_at,
        members,
        conversations: vec![
            Conversation {
                path: ab_path,
                readers: vec![
                    Reading {
                        reader: "alice".into(),
                        messages: ab_alice,
                    },
                    Reading {
                        reader: "bob".into(),
                        messages: ab_bob,
                    },
                ],
            },
            Conversation {
                path: format!("/chat/{ca}"),
                readers: vec![
                    // carol first: her keys are still sealed to her delivery key.
                    Reading {
                        reader: "carol".into(),
                        messages: vec![e("alice", "Welcome carol", false)],
                    },
                    Reading {
                        reader: "alice".into(),
                        messages: vec![e("You", "Welcome carol", false)],
                    },
                ],
            },
            Conversation {
                path: gpath(&g),
                readers: vec![
                    group_reading("bob", true),
                    group_reading("carol", false),
                    group_reading("alice", true),
                ],
            },
        ],
        files: vec![FileEntry {
            path: fpath,
            key: fkey,
            name: "fixture notes.txt".into(),
            content,
            readers: vec!["alice".into(), "bob".into()],
        }],
    };
    drop(cs);
    let dir = server.stop().await;
    std::fs::create_dir_all(&out).unwrap();
    let db = out.join(ghostcache::store::DB_FILE);
    std::fs::copy(dir.path().join(ghostcache::store::DB_FILE), &db).unwrap();
    // Smaller in the repository: only live pages (nothing else changes).
    ghostcache::store::compact(&db).unwrap();
    std::fs::write(
        out.join("fixture.json"),
        serde_json::to_vec_pretty(&fixture).unwrap(),
    )
    .unwrap();
}
