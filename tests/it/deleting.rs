//! Deleting a message you sent, for everyone, one-to-one and in groups: through the
//! small form beside your own messages; gone from the store at once, from the other
//! member's page, live frame and `/chat/poll`; anything but your own message in your own
//! conversation is the not-found page and changes nothing.

use std::time::Duration;

use hyper::StatusCode;

use crate::connections::member_id;
use crate::groups::{add, create_group, gpath, gsay, members, roomy};
use crate::support::chat::{LiveStream, connect, dump, messages, rows, say};
use crate::support::{Client, Resp, TestServer};
use ghostcache::store::tables::{MESSAGE_DEADLINES, MESSAGES, UNDELIVERED};

/// The delete form beside the message whose text is `text` on a chat or group page:
/// (action, seq, message id).
pub(crate) fn delete_form(page: &Resp, text: &str) -> (String, String, String) {
    let doc = page.html();
    let article = scraper::Selector::parse("section.history article.msg").unwrap();
    let body = scraper::Selector::parse(".text").unwrap();
    let form = scraper::Selector::parse("form.delete").unwrap();
    let field = |f: &scraper::ElementRef<'_>, name: &str| {
        let sel = scraper::Selector::parse(&format!("input[name={name}]")).unwrap();
        f.select(&sel)
            .next()
            .unwrap()
            .value()
            .attr("value")
            .unwrap()
            .to_owned()
    };
    for m in doc.select(&article) {
        let t: String = m.select(&body).flat_map(|e| e.text()).collect();
        if t == text {
            let f = m
                .select(&form)
                .next()
                .unwrap_or_else(|| panic!("no delete form beside {text:?}"));
            return (
                f.value().attr("action").unwrap().to_owned(),
                field(&f, "seq"),
                field(&f, "message"),
            );
        }
    }
    panic!("no message {text:?} in {}", page.text());
}

/// POST a delete form with `c`'s CSRF token (from `page`, a page of theirs).
pub(crate) async fn post_delete(
    c: &mut Client,
    page: &str,
    action: &str,
    seq: &str,
    id: &str,
) -> Resp {
    let csrf = c.get(page).await.csrf();
    c.post_form(action, &[("csrf", &csrf), ("seq", seq), ("message", id)])
        .await
}

/// The answer to a deletion: back to the conversation's page (`path`), which says so.
async fn deleted(c: &mut Client, r: &Resp, path: &str) -> Resp {
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text());
    assert_eq!(
        r.header("location"),
        Some(format!("{path}?deleted=1").as_str())
    );
    let page = c.get(r.header("location").unwrap()).await;
    assert_eq!(
        page.texts("p.notice[role=status]"),
        vec!["Message deleted for everyone."]
    );
    page
}

fn texts(page: &Resp) -> Vec<String> {
    messages(page).into_iter().map(|(_, t, _)| t).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sender_deletes_a_message_for_everyone_and_nobody_else_can() {
    let server = TestServer::start_with(roomy).await;
    let mut cs = members(&server, &["alice", "bob", "carol"]).await;
    let (a, rest) = cs.split_first_mut().unwrap();
    let (b, rest) = rest.split_first_mut().unwrap();
    let c = &mut rest[0];
    let ab = connect(a, b, "bob").await;
    let ac = connect(a, c, "carol").await;
    let path = format!("/chat/{ab}");
    let r = say(a, &ab, "keep me").await;
    assert_eq!(
        r.header("location"),
        Some(format!("{path}?sent=1").as_str())
    );
    let sent = a.get(r.header("location").unwrap()).await;
    assert_eq!(sent.texts("p.notice[role=status]"), vec!["Message sent."]);
    say(a, &ab, "oops").await;
    say(b, &ab, "bob's own").await;
    say(a, &ac, "for carol").await;

    // bob has the chat open: the message is in his live frame.
    let mut live = LiveStream::open(server.addr, b, &format!("{path}/live?after=0")).await;
    assert!(
        live.wait_for("oops", Duration::from_secs(5))
            .await
            .is_some()
    );

    let page = a.get(&path).await;
    let (action, seq, id) = delete_form(&page, "oops");
    assert_eq!(action, format!("{path}/delete"));
    let (_, keep_seq, _) = delete_form(&page, "keep me");
    let (_, carol_seq, carol_id) = delete_form(&a.get(&format!("/chat/{ac}")).await, "for carol");
    assert!(
        page.texts("article.msg:not(.mine) form.delete").is_empty(),
        "no form beside bob's messages"
    );

    // Everything that is not alice's own message in this conversation: not found.
    let store = &server.state().store;
    let state = |s: &ghostcache::store::Store| {
        (
            dump(s, MESSAGES),
            dump(s, UNDELIVERED),
            dump(s, MESSAGE_DEADLINES),
        )
    };
    let before = state(store);
    let not_found = a.get("/chat/nothing-here").await.texts("main");
    for (who, seq, id) in [
        ("bob", seq.as_str(), id.as_str()),   // someone else's message
        ("carol", seq.as_str(), id.as_str()), // a stranger to the chat
        ("alice", keep_seq.as_str(), id.as_str()), // number and id disagree
        ("alice", "999", id.as_str()),        // no such number
        ("alice", carol_seq.as_str(), carol_id.as_str()), // another conversation's
        ("alice", "x", id.as_str()),          // malformed
        ("alice", seq.as_str(), "not-an-id"),
    ] {
        let client = match who {
            "bob" => &mut *b,
            "carol" => &mut *c,
            _ => &mut *a,
        };
        let r = post_delete(client, "/", &action, seq, id).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{who} {seq} {id}");
        assert_eq!(r.texts("main"), not_found, "the one not-found page");
    }
    let r = a
        .post_form(&action, &[("seq", &seq), ("message", &id)])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "no CSRF token");
    assert!(state(store) == before, "nothing changed");

    // alice deletes it through the form beside it.
    let messages_before = rows(store, MESSAGES);
    let csrf = page.form_csrf(&action);
    let r = a
        .post_form(&action, &[("csrf", &csrf), ("seq", &seq), ("message", &id)])
        .await;
    let after = deleted(a, &r, &path).await;
    assert_eq!(texts(&after), vec!["bob's own", "keep me"]);
    assert_eq!(rows(store, MESSAGES), messages_before - 1);
    // bob's open frame hides it; his page does not have it.
    let hide = format!("/chat/expired/{seq}.css");
    assert!(
        live.wait_for(&hide, Duration::from_secs(5)).await.is_some(),
        "{}",
        live.text
    );
    assert_eq!(texts(&b.get(&path).await), vec!["bob's own", "keep me"]);
    // Deleting it again: it is gone.
    let r = post_delete(a, &path, &action, &seq, &id).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    drop(live);

    // A message bob has not fetched yet, with a timer: deleted before he polls, it never
    // reaches him, and its deadline row goes with it.
    let deadlines = rows(store, MESSAGE_DEADLINES);
    a.submit(
        &path,
        &path,
        &[("message", "secret with a timer"), ("timer", "3600")],
    )
    .await;
    assert_eq!(rows(store, MESSAGE_DEADLINES), deadlines + 1);
    let page = a.get(&path).await;
    let (_, seq, id) = delete_form(&page, "secret with a timer");
    let r = post_delete(a, &path, &action, &seq, &id).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(rows(store, MESSAGE_DEADLINES), deadlines);
    let bob_id: [u8; 16] =
        ghostcache::crypto::b64url_decode_exact(&member_id(store, "bob")).unwrap();
    assert!(
        dump(store, UNDELIVERED)
            .iter()
            .all(|(k, _)| k[..16] != bob_id),
        "no delivery mark left for bob"
    );
    let poll = b.get("/chat/poll").await;
    assert_eq!(poll.status, StatusCode::OK);
    assert!(!poll.text().contains("secret"), "{}", poll.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_message_is_deleted_by_its_sender_only_and_leaves_every_view() {
    let server = TestServer::start_with(roomy).await;
    let mut cs = members(&server, &["alice", "bob", "carol"]).await;
    let (a, rest) = cs.split_first_mut().unwrap();
    let (b, rest) = rest.split_first_mut().unwrap();
    let c = &mut rest[0];
    connect(a, b, "bob").await;
    connect(a, c, "carol").await;
    let g = create_group(a, "Takebacks").await;
    add(a, &g, b, "bob").await;
    let path = gpath(&g);
    let r = gsay(a, &g, "group oops", "").await;
    assert_eq!(
        r.header("location"),
        Some(format!("{path}?sent=1").as_str())
    );
    let sent = a.get(r.header("location").unwrap()).await;
    assert_eq!(sent.texts("p.notice[role=status]"), vec!["Message sent."]);
    gsay(b, &g, "bob stays", "").await;

    let mut live = LiveStream::open(server.addr, b, &format!("{path}/live?after=0")).await;
    assert!(
        live.wait_for("group oops", Duration::from_secs(5))
            .await
            .is_some()
    );
    // alice's own frame offers the form too, answering into the whole page.
    let mut mine = LiveStream::open(server.addr, a, &format!("{path}/live?after=0")).await;
    assert!(
        mine.wait_for("Delete for everyone", Duration::from_secs(5))
            .await
            .is_some()
    );
    assert!(mine.text.contains("target=\"_top\""));
    drop(mine);

    let page = a.get(&path).await;
    let (action, seq, id) = delete_form(&page, "group oops");
    assert_eq!(action, format!("{path}/delete"));
    let store = &server.state().store;
    let before = dump(store, MESSAGES);
    // bob cannot delete alice's message; carol (not a member) cannot either.
    for who in [&mut *b, &mut *c] {
        let r = post_delete(who, "/", &action, &seq, &id).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
    }
    // Nor can alice delete bob's.
    let (_, bob_seq, bob_msg) = delete_form(&b.get(&path).await, "bob stays");
    let r = post_delete(a, &path, &action, &bob_seq, &bob_msg).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(dump(store, MESSAGES) == before, "nothing changed");

    let r = post_delete(a, &path, &action, &seq, &id).await;
    deleted(a, &r, &path).await;
    assert!(
        live.wait_for(&format!("/chat/expired/{seq}.css"), Duration::from_secs(5))
            .await
            .is_some()
    );
    let page = b.get(&path).await;
    assert_eq!(texts(&page), vec!["bob stays"]);
    assert!(!page.text().contains("group oops"));
}
