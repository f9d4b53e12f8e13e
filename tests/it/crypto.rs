//! Issue 13.6's findings about stored messages, through the pages: a public key or a
//! message rewritten in the file by someone who can write it never verifies, and a
//! self-destructing message past its deadline is served by no route, even before the
//! sweeper has deleted it.

use std::time::Duration;

use hyper::StatusCode;
use redb::ReadableTable;

use crate::chat::{pair, roomy};
use crate::groups::{add, create_group, gpath, gsay};
use crate::support::TestServer;
use crate::support::chat::{LiveStream, messages, say};
use ghostcache::chat::MessageRecord;
use ghostcache::connections::keys::{SigningKey, VerifyingKey};
use ghostcache::connections::{ConnectionRecord, ConnectionState};
use ghostcache::crypto::b64url_decode_exact;
use ghostcache::crypto::rsa_keys::RsaPrivate;
use ghostcache::store::Record;
use ghostcache::store::tables::{
    CONNECTIONS, CONVERSATION_TO_LAST_SEQ, MESSAGE_DEADLINES, MESSAGES, UNDELIVERED,
};

fn id16(text: &str) -> [u8; 16] {
    b64url_decode_exact::<16>(text).unwrap()
}

/// Someone with write access to the file duplicates a message under a new sequence
/// number, then swaps the sender's public key on the connection for their own and
/// re-signs: the reader sees "did not verify" and no text, every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swapped_public_key_or_a_duplicated_message_never_verifies() {
    let server = TestServer::start_with(roomy).await;
    let (mut alice, mut bob, id) = pair(&server, "vera", "walt").await;
    for text in ["first words", "second words"] {
        assert_eq!(
            say(&mut alice, &id, text).await.status,
            StatusCode::SEE_OTHER
        );
    }
    let store = server.state().store.clone();
    let conn = id16(&id);
    let page = bob.get(&format!("/chat/{id}")).await;
    assert_eq!(
        messages(&page),
        vec![
            ("vera".into(), "second words".into(), "verified".into()),
            ("vera".into(), "first words".into(), "verified".into()),
        ]
    );

    // 1. The second message, copied intact to number 3.
    {
        let txn = store.write().unwrap();
        {
            let mut t = txn.open_table(MESSAGES).unwrap();
            let copy = t.get((conn, 2)).unwrap().unwrap().value().to_vec();
            t.insert((conn, 3), copy.as_slice()).unwrap();
            txn.open_table(CONVERSATION_TO_LAST_SEQ)
                .unwrap()
                .insert(conn, 3u64)
                .unwrap();
        }
        txn.commit().unwrap();
    }
    let page = bob.get(&format!("/chat/{id}")).await;
    assert_eq!(
        messages(&page),
        vec![
            ("vera".into(), String::new(), "bad-signature".into()),
            ("vera".into(), "second words".into(), "verified".into()),
            ("vera".into(), "first words".into(), "verified".into()),
        ],
        "the copy at number 3 does not verify"
    );
    assert!(page.text().contains("signature did not verify"));

    // 2. The forger's key in place of vera's, and every message re-signed with it.
    let forger =
        tokio::task::spawn_blocking(|| SigningKey::RsaPss(RsaPrivate::generate(2048).unwrap()))
            .await
            .unwrap();
    {
        let txn = store.write().unwrap();
        {
            let mut c = txn.open_table(CONNECTIONS).unwrap();
            let mut record =
                ConnectionRecord::decode(c.get(conn).unwrap().unwrap().value()).unwrap();
            let ConnectionState::Accepted { requester_key, .. } = &mut record.state else {
                panic!("accepted");
            };
            *requester_key = forger.verifying_key().unwrap();
            c.insert(conn, record.encode().unwrap().as_slice()).unwrap();
            let mut t = txn.open_table(MESSAGES).unwrap();
            for seq in 1..=3u64 {
                let mut m =
                    MessageRecord::decode(t.get((conn, seq)).unwrap().unwrap().value()).unwrap();
                m.signature = forger.sign(&m.signed_bytes(&conn, seq)).unwrap();
                t.insert((conn, seq), m.encode().unwrap().as_slice())
                    .unwrap();
            }
        }
        txn.commit().unwrap();
    }
    for reader in [&mut bob, &mut alice] {
        let page = reader.get(&format!("/chat/{id}")).await;
        let shown = messages(&page);
        assert_eq!(shown.len(), 3);
        for (_, text, status) in shown {
            assert_eq!((text.as_str(), status.as_str()), ("", "bad-signature"));
        }
        assert!(!page.text().contains("first words"));
    }
    // Polled the same way.
    let poll = bob.get("/chat/poll").await;
    let v: serde_json::Value = serde_json::from_slice(&poll.body).unwrap();
    for m in v["messages"].as_array().unwrap() {
        assert_eq!(m["signature"], "bad-signature");
        assert!(m["text"].is_null());
    }
}

/// A group member's public key swapped in the file (and the message re-signed): the
/// other members see "did not verify".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swapped_group_member_key_never_verifies() {
    use ghostcache::groups::MembershipRecord;
    use ghostcache::store::tables::GROUP_MEMBERS;
    let server = TestServer::start_with(roomy).await;
    let (mut alice, mut bob, _) = pair(&server, "xena", "yuri").await;
    let g = create_group(&mut alice, "Keys").await;
    add(&mut alice, &g, &mut bob, "yuri").await;
    assert_eq!(
        gsay(&mut bob, &g, "from yuri", "").await.status,
        StatusCode::SEE_OTHER
    );
    let read = |page: &crate::support::Resp| messages(page);
    let page = alice.get(&gpath(&g)).await;
    assert_eq!(
        read(&page),
        vec![("yuri".into(), "from yuri".into(), "verified".into())]
    );
    let store = server.state().store.clone();
    let gid = id16(&g);
    let yuri = ghostcache::accounts::find_user(
        &store,
        &ghostcache::accounts::Username::parse("yuri").unwrap(),
    )
    .unwrap()
    .unwrap()
    .0;
    let forger =
        tokio::task::spawn_blocking(|| SigningKey::RsaPss(RsaPrivate::generate(2048).unwrap()))
            .await
            .unwrap();
    {
        let txn = store.write().unwrap();
        {
            let mut t = txn.open_table(GROUP_MEMBERS).unwrap();
            let mut r =
                MembershipRecord::decode(t.get((gid, yuri)).unwrap().unwrap().value()).unwrap();
            r.verifying_key = forger.verifying_key().unwrap();
            assert!(matches!(r.verifying_key, VerifyingKey::RsaPss(_)));
            t.insert((gid, yuri), r.encode().unwrap().as_slice())
                .unwrap();
            let mut m = txn.open_table(MESSAGES).unwrap();
            let (seq, mut msg) = {
                let (k, v) = m
                    .range((gid, 0)..=(gid, u64::MAX))
                    .unwrap()
                    .next_back()
                    .unwrap()
                    .unwrap();
                (k.value().1, MessageRecord::decode(v.value()).unwrap())
            };
            msg.signature = forger.sign(&msg.signed_bytes(&gid, seq)).unwrap();
            m.insert((gid, seq), msg.encode().unwrap().as_slice())
                .unwrap();
        }
        txn.commit().unwrap();
    }
    let page = alice.get(&gpath(&g)).await;
    assert_eq!(
        read(&page),
        vec![("yuri".into(), String::new(), "bad-signature".into())]
    );
    assert!(!page.text().contains("from yuri"));
}

/// A message past its deadline whose deadline row is gone, so that the sweeper cannot
/// find it: the row stays, and every route must still leave it out.
fn hide_from_sweeper(store: &ghostcache::store::Store, conversation: &[u8; 16]) {
    let txn = store.write().unwrap();
    txn.open_table(MESSAGE_DEADLINES)
        .unwrap()
        .retain(|k, _| k.1 != *conversation)
        .unwrap();
    txn.commit().unwrap();
}

fn still_stored(store: &ghostcache::store::Store, conversation: &[u8; 16], seq: u64) -> bool {
    let txn = store.read().unwrap();
    let t = txn.open_table(MESSAGES).unwrap();
    t.get((*conversation, seq)).unwrap().is_some()
}

fn undelivered(store: &ghostcache::store::Store) -> usize {
    let txn = store.read().unwrap();
    txn.open_table(UNDELIVERED).unwrap().iter().unwrap().count()
}

/// An expired self-destructing message is served by no route — chat page, group page,
/// both live frames, `/chat/poll` — while its row is still in the store (the sweeper has
/// not run for it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_message_is_never_served_before_the_sweeper_runs() {
    let server = TestServer::start_with(roomy).await;
    let (mut alice, mut bob, id) = pair(&server, "zora", "abel").await;
    let store = server.state().store.clone();
    let conn = id16(&id);
    let path = format!("/chat/{id}");
    let r = alice
        .submit(
            &path,
            &path,
            &[("message", "gone in thirty"), ("timer", "30")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(
        say(&mut alice, &id, "stays").await.status,
        StatusCode::SEE_OTHER
    );
    let g = create_group(&mut alice, "Timers").await;
    add(&mut alice, &g, &mut bob, "abel").await;
    let gid = id16(&g);
    assert_eq!(
        gsay(&mut alice, &g, "group gone in thirty", "30")
            .await
            .status,
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        gsay(&mut alice, &g, "group stays", "").await.status,
        StatusCode::SEE_OTHER
    );
    hide_from_sweeper(&store, &conn);
    hide_from_sweeper(&store, &gid);
    // Before the deadline, it is there.
    let page = bob.get(&path).await;
    assert!(page.text().contains("gone in thirty"));
    server.clock.advance(31);

    for (who, c) in [("sender", &mut alice), ("reader", &mut bob)] {
        let page = c.get(&path).await;
        assert_eq!(page.status, StatusCode::OK);
        let texts: Vec<String> = messages(&page).into_iter().map(|m| m.1).collect();
        assert_eq!(texts, vec!["stays".to_owned()], "{who}: chat page");
        let gpage = c.get(&gpath(&g)).await;
        let texts: Vec<String> = messages(&gpage).into_iter().map(|m| m.1).collect();
        assert_eq!(texts, vec!["group stays".to_owned()], "{who}: group page");
        for live in [
            format!("{path}/live?after=0"),
            format!("{}/live?after=0", gpath(&g)),
        ] {
            let mut stream = LiveStream::open(server.addr, c, &live).await;
            assert_eq!(stream.status, StatusCode::OK);
            assert!(
                stream
                    .wait_for("stays", Duration::from_secs(10))
                    .await
                    .is_some(),
                "{who}: {live}"
            );
            assert!(!stream.text.contains("gone in thirty"), "{who}: {live}");
        }
    }
    // Unread again for bob (the pages and frames above delivered them), so that the poll
    // has both conversations' messages to hand out.
    {
        let txn = store.write().unwrap();
        {
            let bob_id = {
                let t = txn.open_table(CONNECTIONS).unwrap();
                ConnectionRecord::decode(t.get(conn).unwrap().unwrap().value())
                    .unwrap()
                    .receiver
            };
            // The group's messages: group events share its numbering.
            let seqs: Vec<([u8; 16], u64)> = {
                let m = txn.open_table(MESSAGES).unwrap();
                [conn, gid]
                    .iter()
                    .flat_map(|c| {
                        m.range((*c, 0)..=(*c, u64::MAX))
                            .unwrap()
                            .map(|r| r.unwrap().0.value())
                            .collect::<Vec<_>>()
                    })
                    .collect()
            };
            assert_eq!(seqs.len(), 4);
            let mut u = txn.open_table(UNDELIVERED).unwrap();
            for (c, seq) in seqs {
                u.insert((bob_id, c, seq), ()).unwrap();
            }
        }
        txn.commit().unwrap();
    }
    assert_eq!(undelivered(&store), 4);
    let poll = bob.get("/chat/poll").await;
    let v: serde_json::Value = serde_json::from_slice(&poll.body).unwrap();
    let mut texts: Vec<&str> = v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["text"].as_str())
        .collect();
    assert!(
        !texts.iter().any(|t| t.contains("gone in thirty")),
        "{texts:?}"
    );
    assert!(!poll.text().contains("gone in thirty"));
    texts.sort_unstable();
    assert_eq!(
        texts,
        vec!["group stays", "stays"],
        "the others are handed out"
    );
    assert_eq!(
        undelivered(&store),
        0,
        "the expired ones are marked delivered too"
    );

    // All of that while the expired rows were still stored.
    assert!(still_stored(&store, &conn, 1));
    let first_group_message = {
        let txn = store.read().unwrap();
        let t = txn.open_table(MESSAGES).unwrap();
        t.range((gid, 0)..=(gid, u64::MAX))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .0
            .value()
            .1
    };
    assert!(still_stored(&store, &gid, first_group_message));
    let txn = store.read().unwrap();
    let t = txn.open_table(MESSAGES).unwrap();
    let expired =
        MessageRecord::decode(t.get((gid, first_group_message)).unwrap().unwrap().value()).unwrap();
    assert!(
        expired.expires_at.is_some(),
        "the timed one is still stored"
    );
}
