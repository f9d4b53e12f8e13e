//! Deleting one's own end-to-end message for everyone (issue 15.2): in Chromium with
//! JavaScript, the sender's button deletes it, the other member's open page drops it
//! without a reload and a fresh page never shows it (one-to-one and in a group); over
//! HTTP, anything but the sender's own message is "not found" and changes nothing; at
//! rest, the ciphertext is gone.

use hyper::StatusCode;
use serde_json::{Value, json};

use super::hostile::post_json;
use super::{
    browser, click, contains, csrf, enable, fill, go_end_to_end, members, roomy, say, texts,
    wait_gone, wait_ready, wait_text, wait_url,
};
use crate::support::chat::{connect, rows};
use crate::support::webdriver::Engine;
use crate::support::{Client, TestServer};
use ghostcache::e2e::E2eMessageRecord;
use ghostcache::store::Record;
use ghostcache::store::tables::{E2E_DEADLINES, E2E_MESSAGES};

/// The stored messages of `conv`: (seq, record).
fn stored(store: &ghostcache::store::Store, conv: [u8; 16]) -> Vec<(u64, E2eMessageRecord)> {
    let txn = store.read().unwrap();
    let t = txn.open_table(E2E_MESSAGES).unwrap();
    t.range((conv, 0)..=(conv, u64::MAX))
        .unwrap()
        .map(|r| {
            let (k, v) = r.unwrap();
            (k.value().1, E2eMessageRecord::decode(v.value()).unwrap())
        })
        .collect()
}

/// The sequence numbers `GET /e2e/api/conv/<id>` serves to `c`.
async fn served(c: &mut Client, conv: &str) -> Vec<u64> {
    let r = c.get(&format!("/e2e/api/conv/{conv}")).await;
    assert_eq!(r.status, StatusCode::OK);
    let v: Value = serde_json::from_str(&r.text()).unwrap();
    v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_deletes_an_end_to_end_message_for_everyone() {
    let server = TestServer::start_with(roomy).await;
    let mut cs = members(&server, &["alice", "bob", "carol"]).await;
    let (a, rest) = cs.split_first_mut().unwrap();
    let (b, rest) = rest.split_first_mut().unwrap();
    let c = &mut rest[0];
    connect(a, b, "bob").await;
    let base = format!("http://{}", server.addr);

    // alice and bob talk end-to-end; alice's second message has a timer (a deadline row).
    let page_base = base.clone();
    let (alice, bob, conv_url) = tokio::task::spawn_blocking(move || {
        let base = page_base;
        let (alice, bob) = (
            browser(Engine::Chromium, &base, "alice"),
            browser(Engine::Chromium, &base, "bob"),
        );
        enable(&alice, &base);
        enable(&bob, &base);
        let conv_url = go_end_to_end(&alice, &bob, "bob", &base);
        say(&alice, "marker-keep", "");
        say(&alice, "marker-take-back", "3600");
        say(&bob, "marker-bob", "");
        for x in [&alice, &bob] {
            wait_text(x, "#e2e-messages .text", "marker-take-back");
            wait_text(x, "#e2e-messages .text", "marker-bob");
        }
        // A button beside each of one's own messages only, with an accessible name, in
        // the tab order.
        let buttons: Value = bob
            .execute(
                "return Array.from(document.querySelectorAll('#e2e-messages li.msg')).map(li => \
                 { const b = li.querySelector('button.delete'); return [li.querySelector('.text') \
                 .textContent, b ? [b.tagName, b.getAttribute('aria-label'), b.tabIndex, \
                 b.textContent] : null]; })",
                &[],
            )
            .unwrap();
        let buttons = buttons.as_array().unwrap();
        assert_eq!(buttons.len(), 3, "{buttons:?}");
        for m in buttons {
            if m[0] == "marker-bob" {
                assert_eq!(m[1][0], "BUTTON");
                assert!(
                    m[1][1]
                        .as_str()
                        .unwrap()
                        .starts_with("Delete for everyone: your message of "),
                    "{m}"
                );
                assert!(m[1][2].as_i64().unwrap() >= 0, "keyboard reachable");
                assert_eq!(m[1][3], "Delete for everyone");
            } else {
                assert!(m[1].is_null(), "a button on someone else's message: {m}");
            }
        }
        (alice, bob, conv_url)
    })
    .await
    .unwrap();

    let conv_text = conv_url.rsplit('/').next().unwrap().to_owned();
    let conv: [u8; 16] = ghostcache::crypto::b64url_decode_exact(&conv_text).unwrap();
    let store = server.state().store.clone();
    let before = stored(&store, conv);
    assert_eq!(before.len(), 3);
    let take_back = before
        .iter()
        .find(|(_, m)| m.header.expires_at.is_some())
        .map(|(seq, m)| (*seq, m.ciphertext.clone()))
        .unwrap();
    let (bob_seq, bobs) = before.last().unwrap();
    assert_ne!(
        bobs.header.sender, before[0].1.header.sender,
        "bob's is the last"
    );
    let bob_seq = *bob_seq;

    // Anything but the sender's own message: 404, nothing changed.
    let (ta, tb, tc) = (csrf(a).await, csrf(b).await, csrf(c).await);
    let body = |conv: &str, seq: u64| json!({ "conversation": conv, "seq": seq }).to_string();
    let json_type = "application/json";
    let refusals: Vec<(usize, String, &str)> = vec![
        (0, body(&conv_text, bob_seq), "another member's message"),
        (1, body(&conv_text, take_back.0), "alice's, by bob"),
        (2, body(&conv_text, take_back.0), "not a participant"),
        (0, body(&conv_text, 99), "an unknown sequence number"),
        (0, body(&conv_text, 0), "sequence number 0"),
        (
            0,
            body("AAAAAAAAAAAAAAAAAAAAAA", take_back.0),
            "an unknown conversation",
        ),
        (0, body("not-an-id", take_back.0), "a malformed id"),
        (0, "{\"conversation\":".into(), "broken JSON"),
        (
            0,
            format!(
                "{{\"conversation\":\"{conv_text}\",\"seq\":\"{}\"}}",
                take_back.0
            ),
            "a seq that is not a number",
        ),
        (
            0,
            format!(
                "{{\"conversation\":\"{conv_text}\",\"seq\":{},\"x\":1}}",
                take_back.0
            ),
            "an unknown field",
        ),
    ];
    for (who, body, what) in refusals {
        let (client, token) = match who {
            0 => (&mut *a, &ta),
            1 => (&mut *b, &tb),
            _ => (&mut *c, &tc),
        };
        let (s, v) = post_json(client, "/e2e/api/delete", &body, Some(token), json_type).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{what}: {v}");
        assert_eq!(v["error"], "There is nothing here.", "{what}");
    }
    let good = body(&conv_text, take_back.0);
    let (s, _) = post_json(a, "/e2e/api/delete", &good, None, json_type).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "no CSRF token");
    let (s, _) = post_json(a, "/e2e/api/delete", &good, Some(&ta), "text/plain").await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(
        a.get("/e2e/api/delete").await.status,
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert_eq!(stored(&store, conv).len(), 3, "nothing deleted");
    assert_eq!(rows(&store, E2E_DEADLINES), 1, "the deadline row stays");
    assert_eq!(served(b, &conv_text).await.len(), 3);

    // alice deletes it with the button: gone from her page, from bob's open page without a
    // reload, and from a page bob loads afresh.
    let page_url = conv_url.clone();
    let phase = tokio::task::spawn_blocking(move || {
        let clicked = alice
            .execute(
                "const li = Array.from(document.querySelectorAll('#e2e-messages li.msg')) \
                 .find(li => li.querySelector('.text').textContent === 'marker-take-back'); \
                 li.querySelector('button.delete').click(); return true",
                &[],
            )
            .unwrap();
        assert_eq!(clicked, json!(true));
        wait_text(&alice, "#e2e-status", "Message deleted for everyone.");
        wait_gone(&bob, "#e2e-messages .text", "marker-take-back");
        wait_gone(&alice, "#e2e-messages .text", "marker-take-back");
        for x in [&alice, &bob] {
            assert_eq!(
                texts(x, "#e2e-messages .text"),
                vec!["marker-keep".to_owned(), "marker-bob".to_owned()]
            );
        }
        bob.navigate(&page_url).unwrap();
        wait_ready(&bob);
        wait_text(&bob, "#e2e-messages .text", "marker-bob");
        assert_eq!(
            texts(&bob, "#e2e-messages .text"),
            vec!["marker-keep".to_owned(), "marker-bob".to_owned()],
            "the history fetched afresh"
        );

        // In an end-to-end group, bob takes his message back from alice's open page.
        alice.navigate(&format!("{base}/e2e")).unwrap();
        fill(&alice, "#e2e-group-name", "delete-group");
        click(&alice, "#e2e-create button");
        let group_url = wait_url(&alice, "/e2e/c/");
        wait_ready(&alice);
        fill(&alice, "#e2e-invite-name", "bob");
        click(&alice, "#e2e-invite button");
        wait_text(&alice, "#e2e-status", "is invited");
        bob.navigate(&format!("{base}/e2e")).unwrap();
        wait_text(&bob, "#e2e-invitations", "alice invites you");
        click(&bob, "#e2e-invitations li button");
        wait_url(&bob, "/e2e/c/");
        wait_ready(&bob);
        wait_ready(&alice);
        say(&bob, "marker-group-stays", "");
        say(&bob, "marker-group-take-back", "");
        wait_text(&alice, "#e2e-messages .text", "marker-group-take-back");
        bob.execute(
            "Array.from(document.querySelectorAll('#e2e-messages li.msg')) \
             .find(li => li.querySelector('.text').textContent === 'marker-group-take-back') \
             .querySelector('button.delete').click(); return true",
            &[],
        )
        .unwrap();
        wait_gone(&alice, "#e2e-messages .text", "marker-group-take-back");
        assert_eq!(
            texts(&alice, "#e2e-messages .text"),
            vec!["marker-group-stays".to_owned()]
        );
        alice.navigate(&group_url).unwrap();
        wait_ready(&alice);
        wait_text(&alice, "#e2e-messages .text", "marker-group-stays");
        assert_eq!(
            texts(&alice, "#e2e-messages .text"),
            vec!["marker-group-stays".to_owned()]
        );
        (alice, bob, group_url)
    })
    .await
    .unwrap();
    let (alice, bob, group_url) = phase;
    drop((alice, bob));
    let group: [u8; 16] =
        ghostcache::crypto::b64url_decode_exact(group_url.rsplit('/').next().unwrap()).unwrap();
    assert_eq!(
        stored(&store, group).len(),
        1,
        "the group keeps one message"
    );

    // On the server: the row and its deadline row are gone, nothing stands in its place;
    // the same request again is "not found".
    let after: Vec<u64> = stored(&store, conv).iter().map(|(s, _)| *s).collect();
    assert_eq!(after.len(), 2);
    assert!(!after.contains(&take_back.0));
    assert_eq!(rows(&store, E2E_DEADLINES), 0);
    for c in [&mut *a, &mut *b] {
        assert!(!served(c, &conv_text).await.contains(&take_back.0));
    }
    let (s, _) = post_json(a, "/e2e/api/delete", &good, Some(&ta), json_type).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "deleted twice");

    // At rest, after `ghostcache compact`: the deleted ciphertext is nowhere in the file,
    // while a message that stays is (so the search finds what exists).
    let staying = stored(&store, conv)[0].1.ciphertext.clone();
    drop(store);
    let (_dir, bytes) = server.stop_and_compact().await;
    assert!(contains(&bytes, &staying));
    assert!(
        !contains(&bytes, &take_back.1),
        "the deleted ciphertext is left in the file"
    );
}
