//! Group chats, self-destructing messages and the choice of signature scheme, over HTTP
//! as a browser would: forms with their CSRF fields, the live stream held open, and the
//! rows (and bytes) left in the redb file.

use std::time::Duration;

use hyper::StatusCode;
use redb::{ReadableDatabase, ReadableTable};
use serde_json::json;

use crate::connections::member_id;
use crate::support::chat::{LiveStream, connect, messages, rows, say};
use crate::support::webdriver::{self, Browser};
use crate::support::{Client, PW, Resp, TestServer};
use ghostcache::chat::MessageRecord;
use ghostcache::config::Config;
use ghostcache::store::Record;
use ghostcache::store::tables::{
    GROUP_EPOCH_KEYS, GROUP_INVITES, GROUP_MEMBER_SECRETS, GROUP_MEMBERS, GROUP_TO_INVITEES,
    GROUPS, MEMBER_SETTINGS, MEMBER_TO_GROUPS, MESSAGE_DEADLINES, MESSAGES, UNDELIVERED,
};

pub(crate) fn roomy(c: &mut Config) {
    c.rate_limits.connection_requests_per_minute = 10_000;
    c.rate_limits.searches_per_minute = 10_000;
    c.rate_limits.messages_per_minute = 10_000;
}

/// Members, by name, all logged in.
pub(crate) async fn members(server: &TestServer, names: &[&str]) -> Vec<Client> {
    let mut out = Vec::new();
    for n in names {
        let mut c = server.client();
        c.member(n).await;
        out.push(c);
    }
    out
}

/// Create a group through the list page's form; its id.
pub(crate) async fn create_group(c: &mut Client, name: &str) -> String {
    let r = c
        .submit("/chat/groups", "/chat/create", &[("name", name)])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "create: {}", r.text());
    let location = r.header("location").unwrap();
    assert!(location.ends_with("?created=1"), "{location}");
    location
        .strip_prefix("/chat/group/")
        .unwrap()
        .trim_end_matches("?created=1")
        .to_owned()
}

pub(crate) fn gpath(id: &str) -> String {
    format!("/chat/group/{id}")
}

/// POST `fields` to `action` with the CSRF token of the group page (as a browser posts a
/// form of that page; also one the page does not offer this member, such as an invitation
/// of someone already in the group).
pub(crate) async fn post_on_group(
    c: &mut Client,
    id: &str,
    action: &str,
    fields: &[(&str, &str)],
) -> Resp {
    let csrf = c.get(&gpath(id)).await.form_csrf("/chat/leave");
    let mut all = vec![("csrf", csrf.as_str())];
    all.extend_from_slice(fields);
    c.post_form(action, &all).await
}

/// The creator invites `name` (the group page's invite form).
pub(crate) async fn invite(c: &mut Client, id: &str, name: &str) -> Resp {
    post_on_group(c, id, "/chat/invite", &[("group", id), ("username", name)]).await
}

/// The invitee joins through the list page's form.
pub(crate) async fn join(c: &mut Client, id: &str) {
    let r = c
        .submit("/chat/groups", "/chat/accept", &[("group", id)])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "join: {}", r.text());
    assert_eq!(
        r.header("location"),
        Some(format!("{}?joined=1", gpath(id)).as_str())
    );
}

/// The creator invites `name`, whose client `invitee` then joins.
pub(crate) async fn add(creator: &mut Client, id: &str, invitee: &mut Client, name: &str) {
    invite(creator, id, name).await;
    join(invitee, id).await;
}

/// Send to a group through its page's form.
pub(crate) async fn gsay(c: &mut Client, id: &str, text: &str, timer: &str) -> Resp {
    let path = gpath(id);
    c.submit(&path, &path, &[("message", text), ("timer", timer)])
        .await
}

/// The texts a member reads on a group page, oldest first.
pub(crate) async fn read(c: &mut Client, id: &str) -> Vec<String> {
    let page = c.get(&gpath(id)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text());
    let mut out: Vec<String> = messages(&page).into_iter().map(|(_, t, _)| t).collect();
    out.reverse();
    out
}

/// Count the rows of a (group, member)-keyed table that belong to `member`.
pub(crate) fn member_rows(store: &ghostcache::store::Store, member: &[u8; 16]) -> [usize; 5] {
    let txn = store.database().begin_read().unwrap();
    let count2 = |t: redb::TableDefinition<([u8; 16], [u8; 16]), &[u8]>, second: bool| {
        txn.open_table(t)
            .unwrap()
            .iter()
            .unwrap()
            .filter(|r| {
                let k = r.as_ref().unwrap().0.value();
                (if second { k.1 } else { k.0 }) == *member
            })
            .count()
    };
    let members = count2(GROUP_MEMBERS, true);
    let secrets = count2(GROUP_MEMBER_SECRETS, true);
    let invites = count2(GROUP_INVITES, false);
    let keys = txn
        .open_table(GROUP_EPOCH_KEYS)
        .unwrap()
        .iter()
        .unwrap()
        .filter(|r| r.as_ref().unwrap().0.value().2 == *member)
        .count();
    let authored = txn
        .open_table(MESSAGES)
        .unwrap()
        .iter()
        .unwrap()
        .filter(|r| {
            MessageRecord::decode(r.as_ref().unwrap().1.value())
                .unwrap()
                .sender
                == *member
        })
        .count();
    [members, secrets, invites, keys, authored]
}

pub(crate) fn id_of(store: &ghostcache::store::Store, name: &str) -> [u8; 16] {
    ghostcache::crypto::b64url_decode_exact(&member_id(store, name)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_invite_online_member_and_the_notice_says_they_can_join() {
    let server = TestServer::start_with(roomy).await;
    let mut cs = members(&server, &["alice", "bob"]).await;
    let (a, rest) = cs.split_first_mut().unwrap();
    let b = &mut rest[0];
    connect(a, b, "bob").await;

    // A bad name changes nothing and says why.
    let r = a
        .submit("/chat/groups", "/chat/create", &[("name", "  ")])
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.text().contains("Give the group a name."));
    assert_eq!(rows(&server.state().store, GROUPS), 0);

    let id = create_group(a, "Book <club> & 'friends'").await;
    let page = a.get(&gpath(&id)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text().contains("Book &lt;club&gt; &amp; 'friends'"));
    assert!(page.texts(".members .name").contains(&"alice".to_owned()));

    // bob loaded a page a moment ago: online.
    b.get("/").await;
    let r = invite(a, &id, "bob").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text());
    let notice = a.get(r.header("location").unwrap()).await;
    let text = notice.texts(".invite-notice").join(" ");
    assert!(text.contains("bob is invited and online"), "{text}");

    // Invited is not a member: the group page is not found until bob joins.
    assert_eq!(b.get(&gpath(&id)).await.status, StatusCode::NOT_FOUND);
    let list = b.get("/chat/groups").await;
    assert!(
        list.texts(".invitations .name")
            .contains(&"Book <club> & 'friends'".to_owned())
    );
    join(b, &id).await;
    let page = b.get(&gpath(&id)).await;
    assert_eq!(page.status, StatusCode::OK);
    let names = page.texts(".members .name");
    assert_eq!(names, vec!["alice", "bob"]);
    assert!(page.text().contains("key epoch 2"));
    // Inviting again: already a member, nothing changes.
    let before = rows(&server.state().store, GROUP_INVITES);
    let r = invite(a, &id, "bob").await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(rows(&server.state().store, GROUP_INVITES), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inviting_an_offline_member_says_so_and_the_invitation_waits() {
    let server = TestServer::start_with(roomy).await;
    let mut cs = members(&server, &["alice", "bob", "dave"]).await;
    let (a, rest) = cs.split_first_mut().unwrap();
    let (b, rest) = rest.split_first_mut().unwrap();
    let d = &mut rest[0];
    connect(a, b, "bob").await;
    let id = create_group(a, "Night shift").await;

    // Not a connection: refused, and said so.
    let r = invite(a, &id, "dave").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.text().contains("None of your connections has that name"));
    let r = invite(a, &id, "nobody-by-that-name").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let _ = d;

    // bob logs out: offline.
    let csrf = b.get("/").await.form_csrf("/logout");
    b.post_form("/logout", &[("csrf", &csrf)]).await;
    let r = invite(a, &id, "bob").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let page = a.get(r.header("location").unwrap()).await;
    let notice = page.texts(".invite-notice").join(" ");
    assert!(notice.contains("bob is offline"), "{notice}");
    assert!(notice.contains("The invitation waits"), "{notice}");
    assert!(page.texts(".pending .name").contains(&"bob".to_owned()));
    assert_eq!(rows(&server.state().store, GROUP_INVITES), 1);

    // Later, bob logs in, finds the invitation and joins.
    let r = b.login("bob", PW).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    join(b, &id).await;
    assert_eq!(rows(&server.state().store, GROUP_INVITES), 0);
    assert!(
        a.get(&gpath(&id))
            .await
            .texts(".members .name")
            .contains(&"bob".to_owned())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_chat_and_each_reads_exactly_their_epochs() {
    let server = TestServer::start_with(roomy).await;
    let mut cs = members(&server, &["alice", "bob", "carol"]).await;
    let (a, rest) = cs.split_first_mut().unwrap();
    let (b, rest) = rest.split_first_mut().unwrap();
    let c = &mut rest[0];
    connect(a, b, "bob").await;
    connect(a, c, "carol").await;
    let id = create_group(a, "Three").await;
    add(a, &id, b, "bob").await;
    assert_eq!(
        gsay(a, &id, "one: before carol", "").await.status,
        StatusCode::SEE_OTHER
    );
    gsay(b, &id, "two: before carol", "").await;

    add(a, &id, c, "carol").await;
    gsay(c, &id, "three: carol is here", "").await;
    gsay(a, &id, "four: all three", "").await;

    assert_eq!(
        read(a, &id).await,
        vec![
            "one: before carol",
            "two: before carol",
            "three: carol is here",
            "four: all three"
        ]
    );
    assert_eq!(read(b, &id).await, read(a, &id).await);
    // carol joined at epoch 3: nothing from before.
    assert_eq!(
        read(c, &id).await,
        vec!["three: carol is here", "four: all three"]
    );
    // Every message each one sees verified, with the right sender.
    for client in [&mut *a, &mut *b, &mut *c] {
        let page = client.get(&gpath(&id)).await;
        for (sender, _, status) in messages(&page) {
            assert_eq!(status, "verified", "{sender}");
        }
    }
    let page = c.get(&gpath(&id)).await;
    let senders: Vec<String> = messages(&page).into_iter().map(|(s, _, _)| s).collect();
    assert_eq!(senders, vec!["alice", "You"]);

    // bob leaves: epoch 4. He reads nothing any more; what follows is not for him.
    let r = b
        .submit(&gpath(&id), "/chat/leave", &[("group", id.as_str())])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.header("location"), Some("/chat/groups?left=1"));
    assert_eq!(b.get(&gpath(&id)).await.status, StatusCode::NOT_FOUND);
    gsay(c, &id, "five: bob is gone", "").await;
    let store = &server.state().store;
    let bob = id_of(store, "bob");
    let [memberships, secrets, _, keys, authored] = member_rows(store, &bob);
    assert_eq!((secrets, keys), (0, 0), "no key of bob's is left");
    assert_eq!(
        memberships, 1,
        "kept as a former member: his messages still verify"
    );
    assert_eq!(authored, 1);
    let a_reads = read(a, &id).await;
    assert_eq!(a_reads.len(), 5);
    assert!(
        messages(&a.get(&gpath(&id)).await)
            .iter()
            .all(|(_, _, s)| s == "verified"),
        "bob's message from before he left still verifies"
    );

    // bob is invited again: a new membership, which starts now.
    add(a, &id, b, "bob").await;
    assert!(
        read(b, &id).await.is_empty(),
        "nothing from his first membership or the gap"
    );
    gsay(a, &id, "six: welcome back", "").await;
    assert_eq!(read(b, &id).await, vec!["six: welcome back"]);
    // Created, bob, carol, bob left, bob again.
    assert!(a.get(&gpath(&id)).await.text().contains("key epoch 5"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_creator_removes_members_and_nobody_else_can() {
    let server = TestServer::start_with(roomy).await;
    let mut cs = members(&server, &["alice", "bob", "carol"]).await;
    let (a, rest) = cs.split_first_mut().unwrap();
    let (b, rest) = rest.split_first_mut().unwrap();
    let c = &mut rest[0];
    connect(a, b, "bob").await;
    connect(a, c, "carol").await;
    let id = create_group(a, "Removals").await;
    add(a, &id, b, "bob").await;
    add(a, &id, c, "carol").await;
    let store = &server.state().store;
    let (bob, carol) = (member_id(store, "bob"), member_id(store, "carol"));

    // bob is a plain member: the not-found page, nothing changes.
    let before = rows(store, GROUP_EPOCH_KEYS);
    let r = post_on_group(
        b,
        &id,
        "/chat/remove",
        &[("group", id.as_str()), ("member", carol.as_str())],
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(rows(store, GROUP_EPOCH_KEYS), before);
    assert!(
        !b.get(&gpath(&id))
            .await
            .text()
            .contains("action=\"/chat/remove\""),
        "no remove buttons for others"
    );

    // carol's stream is open when alice removes her: it ends and says why.
    let src = format!("/chat/group/{id}/live?after=0");
    let mut live = LiveStream::open(server.addr, c, &src).await;
    assert_eq!(live.status, StatusCode::OK);
    let r = a
        .submit(
            &gpath(&id),
            "/chat/remove",
            &[("group", id.as_str()), ("member", carol.as_str())],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(
        live.wait_for("no longer a member", Duration::from_secs(5))
            .await
            .is_some(),
        "{}",
        live.text
    );
    assert_eq!(c.get(&gpath(&id)).await.status, StatusCode::NOT_FOUND);
    gsay(a, &id, "after carol", "").await;
    assert_eq!(read(b, &id).await, vec!["after carol"]);
    let carol_id = id_of(store, "carol");
    let [_, secrets, _, keys, _] = member_rows(store, &carol_id);
    assert_eq!((secrets, keys), (0, 0));
    // The creator cannot remove themselves (that is Leave), nor an unknown member.
    let me = member_id(store, "alice");
    let r = post_on_group(
        a,
        &id,
        "/chat/remove",
        &[("group", id.as_str()), ("member", me.as_str())],
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = post_on_group(
        a,
        &id,
        "/chat/remove",
        &[("group", id.as_str()), ("member", carol.as_str())],
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let _ = bob;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_live_stream_delivers_and_follows_new_epochs() {
    let server = TestServer::start_with(roomy).await;
    let mut cs = members(&server, &["alice", "bob", "carol"]).await;
    let (a, rest) = cs.split_first_mut().unwrap();
    let (b, rest) = rest.split_first_mut().unwrap();
    let c = &mut rest[0];
    connect(a, b, "bob").await;
    connect(a, c, "carol").await;
    let id = create_group(a, "Live").await;
    add(a, &id, b, "bob").await;

    let page = b.get(&gpath(&id)).await;
    let sel = scraper::Selector::parse("iframe.live-frame").unwrap();
    let src = page
        .html()
        .select(&sel)
        .next()
        .unwrap()
        .value()
        .attr("src")
        .unwrap()
        .to_owned();
    // After bob's joining, which is the last thing his page shows.
    assert_eq!(src, format!("/chat/group/{id}/live?after=3&first=1"));
    let src = crate::support::chat::frame_stream(b, &src).await;
    assert_eq!(src, format!("/chat/group/{id}/live?after=3"));
    let mut live = LiveStream::open(server.addr, b, &src).await;
    assert_eq!(live.status, StatusCode::OK);
    assert_eq!(live.header("x-frame-options"), Some("SAMEORIGIN"));
    gsay(a, &id, "live one", "").await;
    let took = live
        .wait_for("live one", Duration::from_secs(5))
        .await
        .expect("message arrives");
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert!(live.text.contains("data-status=\"verified\""));

    // carol joins: a new epoch; bob's open stream takes the new key and reads on.
    add(a, &id, c, "carol").await;
    assert!(
        live.wait_for("membership changed", Duration::from_secs(5))
            .await
            .is_some()
    );
    // The changes show in the stream as they do on the page.
    for event in ["alice invited carol.", "carol joined."] {
        assert!(
            live.wait_for(event, Duration::from_secs(5)).await.is_some(),
            "{event}: {}",
            live.text
        );
    }
    gsay(c, &id, "from carol, epoch 3", "").await;
    assert!(
        live.wait_for("from carol, epoch 3", Duration::from_secs(5))
            .await
            .is_some(),
        "{}",
        live.text
    );
    assert!(
        !live.text.contains("could not be decrypted"),
        "{}",
        live.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_destructing_message_is_gone_from_the_file_after_its_deadline() {
    let server = TestServer::start_with(roomy).await;
    let mut cs = members(&server, &["alice", "bob"]).await;
    let (a, rest) = cs.split_first_mut().unwrap();
    let b = &mut rest[0];
    let conn = connect(a, b, "bob").await;
    let gid = create_group(a, "group-name-marker").await;
    add(a, &gid, b, "bob").await;

    // An unknown timer is refused and stores nothing.
    let r = gsay(a, &gid, "bad timer", "31").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let path = format!("/chat/{conn}");
    let r = a
        .submit(
            &path,
            &path,
            &[("message", "bad timer"), ("timer", "forever")],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let store = &server.state().store;
    assert_eq!(rows(store, MESSAGES), 0);

    // One-to-one and group, 30 s each; and one message without a timer that stays.
    let r = a
        .submit(
            &path,
            &path,
            &[("message", "vanishing-marker-one"), ("timer", "30")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    say(a, &conn, "staying-marker").await;
    assert_eq!(
        gsay(a, &gid, "vanishing-marker-group", "30").await.status,
        StatusCode::SEE_OTHER
    );
    assert_eq!(rows(store, MESSAGES), 3);
    assert_eq!(rows(store, MESSAGE_DEADLINES), 2);

    // The stored ciphertexts, and proof that the file holds them now.
    let ciphertexts: Vec<String> = {
        let txn = store.database().begin_read().unwrap();
        let t = txn.open_table(MESSAGES).unwrap();
        t.iter()
            .unwrap()
            .map(|r| MessageRecord::decode(r.unwrap().1.value()).unwrap())
            .filter(|m| m.expires_at.is_some())
            .map(|m| m.ciphertext)
            .collect()
    };
    assert_eq!(ciphertexts.len(), 2);
    let db_path = server.dir.path().join(ghostcache::store::DB_FILE);
    let bytes = std::fs::read(&db_path).unwrap();
    for ct in &ciphertexts {
        assert!(
            contains(&bytes, ct.as_bytes()),
            "the file holds the ciphertext before"
        );
    }

    assert_eq!(rows(store, UNDELIVERED), 3, "bob has not read them yet");

    // The pages mark them to disappear by CSS at the deadline (no script, no inline style).
    let page = a.get(&path).await;
    let doc = page.html();
    let sel = scraper::Selector::parse("article.msg.exp").unwrap();
    let timed: Vec<_> = doc.select(&sel).collect();
    assert_eq!(timed.len(), 1);
    let class = timed[0].value().attr("class").unwrap();
    assert!(
        class.contains("xs-30") || class.contains("xs-29"),
        "{class}"
    );
    assert!(!page.text().contains("style="));
    let gpage = a.get(&gpath(&gid)).await;
    assert_eq!(gpage.html().select(&sel).count(), 1);
    // The group's message number (its events take numbers too).
    let gseq = gpage
        .html()
        .select(&sel)
        .next()
        .unwrap()
        .value()
        .id()
        .unwrap()
        .trim_start_matches('m')
        .to_owned();

    // Open streams get told to hide them when they go.
    let mut live = LiveStream::open(server.addr, a, &format!("/chat/{conn}/live?after=0")).await;
    let mut glive =
        LiveStream::open(server.addr, a, &format!("/chat/group/{gid}/live?after=0")).await;
    assert!(
        live.wait_for("vanishing-marker-one", Duration::from_secs(5))
            .await
            .is_some()
    );
    assert!(
        glive
            .wait_for("vanishing-marker-group", Duration::from_secs(5))
            .await
            .is_some()
    );

    // Not yet due: nothing goes.
    server.clock.advance(20);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(rows(store, MESSAGES), 3);

    server.clock.advance(11);
    let gone = async {
        for _ in 0..100 {
            if rows(store, MESSAGES) == 1 {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    };
    assert!(
        gone.await,
        "the sweeper deletes them within seconds of the deadline"
    );
    assert_eq!(rows(store, MESSAGE_DEADLINES), 0);
    assert_eq!(
        rows(store, UNDELIVERED),
        1,
        "only the mark of the message that stays"
    );
    assert!(
        live.wait_for("/chat/expired/1.css", Duration::from_secs(5))
            .await
            .is_some()
    );
    assert!(
        glive
            .wait_for(&format!("/chat/expired/{gseq}.css"), Duration::from_secs(5))
            .await
            .is_some()
    );
    let css = b.get("/chat/expired/1.css").await;
    assert_eq!(css.status, StatusCode::OK);
    assert_eq!(css.header("content-type"), Some("text/css; charset=utf-8"));
    assert_eq!(css.text(), "#m1{display:none!important}\n");
    assert_eq!(
        b.get("/chat/expired/01.css").await.status,
        StatusCode::NOT_FOUND
    );

    // Not rendered any more, for either side.
    for c in [&mut *a, &mut *b] {
        let text = c.get(&path).await.text();
        assert!(text.contains("staying-marker"));
        assert_eq!(messages(&c.get(&path).await).len(), 1);
        assert!(messages(&c.get(&gpath(&gid)).await).is_empty());
    }

    // At rest: stop the server, compact the file (as the operator's `ghostcache compact`
    // does), and the expired ciphertexts are nowhere in it — while the message that stays
    // is still there, so the search does find what exists.
    let staying = {
        let txn = store.database().begin_read().unwrap();
        let t = txn.open_table(MESSAGES).unwrap();
        let (_, v) = t.first().unwrap().unwrap();
        MessageRecord::decode(v.value()).unwrap().ciphertext
    };
    drop((live, glive));
    let (_dir, bytes) = server.stop_and_compact().await;
    assert!(contains(&bytes, staying.as_bytes()));
    for ct in &ciphertexts {
        assert!(
            !contains(&bytes, ct.as_bytes()),
            "an expired ciphertext is left in the file"
        );
    }
    for marker in ["vanishing-marker", "staying-marker", "group-name-marker"] {
        assert!(!contains(&bytes, marker.as_bytes()), "plaintext at rest");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_hides_a_self_destructing_message_at_its_deadline_without_script() {
    let server = TestServer::start_with(roomy).await;
    let mut cs = members(&server, &["alice", "bob"]).await;
    let (a, rest) = cs.split_first_mut().unwrap();
    let b = &mut rest[0];
    let conn = connect(a, b, "bob").await;
    let path = format!("/chat/{conn}");
    a.submit(
        &path,
        &path,
        &[("message", "browser-timed"), ("timer", "30")],
    )
    .await;
    say(a, &conn, "browser-stays").await;

    let base = format!("http://{}", server.addr);
    let session = b.session().unwrap().to_owned();
    let clock = server.clock.clone();
    let (before, after) = tokio::task::spawn_blocking(move || {
        let browser = Browser::launch(&webdriver::Config {
            // The chat page's live frame never finishes loading.
            page_load_strategy: "eager",
            ..Default::default()
        }).expect("chromedriver and chromium");
        browser.navigate(&format!("{base}/login")).unwrap();
        let cookie = json!({"cookie": {"name": "gc_session", "value": session, "path": "/", "httpOnly": true}});
        browser.cmd("POST", "/cookie", Some(&cookie)).unwrap();
        // 5 s left when the page is rendered.
        clock.advance(25);
        browser.navigate(&format!("{base}{path}")).unwrap();
        let query = json!({"args": [], "script":
            "return Array.from(document.querySelectorAll('section.history article.msg'))\
             .map(e => e.querySelector('.text').textContent + ':' + getComputedStyle(e).visibility)"});
        let before = browser.cmd("POST", "/execute/sync", Some(&query)).unwrap();
        std::thread::sleep(Duration::from_secs(6));
        let after = browser.cmd("POST", "/execute/sync", Some(&query)).unwrap();
        browser.quit().unwrap();
        (before, after)
    })
    .await
    .unwrap();
    assert_eq!(
        before,
        json!(["browser-stays:visible", "browser-timed:visible"]),
        "both shown before the deadline"
    );
    assert_eq!(
        after,
        json!(["browser-stays:visible", "browser-timed:hidden"]),
        "the timed one hidden at its deadline, by CSS alone"
    );
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Rewrite one stored message of `conversation` (the last one).
fn tamper(store: &ghostcache::store::Store, conversation: &str, f: impl Fn(&mut MessageRecord)) {
    let conv: [u8; 16] = ghostcache::crypto::b64url_decode_exact(conversation).unwrap();
    let txn = store.write().unwrap();
    {
        let mut t = txn.open_table(MESSAGES).unwrap();
        let (seq, mut record) = {
            let (k, v) = t
                .range((conv, 0)..=(conv, u64::MAX))
                .unwrap()
                .next_back()
                .unwrap()
                .unwrap();
            (k.value().1, MessageRecord::decode(v.value()).unwrap())
        };
        f(&mut record);
        t.insert((conv, seq), record.encode().unwrap().as_slice())
            .unwrap();
    }
    txn.commit().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dsa_and_rsa_members_converse_and_tampering_never_verifies() {
    use ghostcache::connections::keys::Signature;
    let server = TestServer::start_with(roomy).await;
    let mut cs = members(&server, &["alice", "bob"]).await;
    let (a, rest) = cs.split_first_mut().unwrap();
    let b = &mut rest[0];

    // alice chooses DSA; bob keeps the default.
    let page = a.get("/settings/signature").await;
    assert!(
        page.texts(".current-scheme")
            .contains(&"RSA-PSS-SHA256".to_owned())
    );
    let r = a
        .submit(
            "/settings/signature",
            "/settings/signature",
            &[("scheme", "ecdsa")],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(rows(&server.state().store, MEMBER_SETTINGS), 0);
    let r = a
        .submit(
            "/settings/signature",
            "/settings/signature",
            &[("scheme", "dsa")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let page = a.get(r.header("location").unwrap()).await;
    assert_eq!(
        page.texts("p.notice[role=status]"),
        vec!["Saved: your new connections and groups will sign with DSA."]
    );
    assert!(
        page.texts(".current-scheme")
            .contains(&"DSA-2048/256-SHA256".to_owned())
    );
    assert_eq!(rows(&server.state().store, MEMBER_SETTINGS), 1);

    let conn = connect(a, b, "bob").await;
    say(a, &conn, "signed with DSA").await;
    say(b, &conn, "signed with RSA-PSS").await;
    let page = b.get(&format!("/chat/{conn}")).await;
    let seen = messages(&page);
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|(_, _, s)| s == "verified"), "{seen:?}");
    let page = a.get(&format!("/chat/{conn}")).await;
    assert!(
        page.text().contains("DSA-2048/256-SHA256"),
        "alice's side signs with DSA"
    );
    assert!(messages(&page).iter().all(|(_, _, s)| s == "verified"));

    let gid = create_group(a, "Mixed").await;
    add(a, &gid, b, "bob").await;
    gsay(a, &gid, "group DSA", "").await;
    gsay(b, &gid, "group RSA", "").await;
    let page = b.get(&gpath(&gid)).await;
    let schemes = page.text();
    assert!(schemes.contains("DSA-2048/256-SHA256") && schemes.contains("RSA-PSS-SHA256"));
    assert!(messages(&page).iter().all(|(_, _, s)| s == "verified"));

    // Tampering with what is stored: never shown as verified, text withheld.
    let store = &server.state().store;
    let flip = |sig: &mut Signature| match sig {
        Signature::RsaPss(b) | Signature::Dsa(b) => {
            let mid = b.len() / 2;
            b[mid] ^= 0x01;
        }
    };
    tamper(store, &gid, |m| flip(&mut m.signature)); // bob's RSA signature
    let page = a.get(&gpath(&gid)).await;
    let seen = messages(&page);
    assert_eq!(seen[0].2, "bad-signature", "{seen:?}");
    assert_eq!(seen[0].1, "", "text withheld");
    assert_eq!(seen[1].2, "verified");

    say(a, &conn, "dsa victim").await;
    tamper(store, &conn, |m| flip(&mut m.signature)); // alice's DSA signature
    let seen = messages(&b.get(&format!("/chat/{conn}")).await);
    assert_eq!(seen[0].2, "bad-signature");
    assert!(!seen[0].1.contains("dsa victim"));

    say(b, &conn, "ciphertext victim").await;
    tamper(store, &conn, |m| {
        let mut ct = m.ciphertext.clone().into_bytes();
        let mid = ct.len() / 2;
        ct[mid] = if ct[mid] == b'A' { b'B' } else { b'A' };
        m.ciphertext = String::from_utf8(ct).unwrap();
    });
    let seen = messages(&a.get(&format!("/chat/{conn}")).await);
    assert_eq!(seen[0].2, "bad-signature");

    say(a, &conn, "timer victim").await;
    tamper(store, &conn, |m| m.expires_at = Some(i64::MAX)); // lift or move a timer
    let seen = messages(&b.get(&format!("/chat/{conn}")).await);
    assert_eq!(seen[0].2, "bad-signature");

    gsay(a, &gid, "epoch victim", "").await;
    tamper(store, &gid, |m| m.epoch += 1);
    let seen = messages(&b.get(&gpath(&gid)).await);
    assert_eq!(seen[0].2, "bad-signature");

    // A signature of the other scheme in its place: not verified either.
    gsay(b, &gid, "scheme swap", "").await;
    tamper(store, &gid, |m| {
        if let Signature::RsaPss(bytes) = &m.signature {
            m.signature = Signature::Dsa(bytes.clone());
        }
    });
    let seen = messages(&a.get(&gpath(&gid)).await);
    assert_eq!(seen[0].2, "bad-signature");
    // Nothing tampered anywhere says verified with a victim's text.
    for page in [
        a.get(&gpath(&gid)).await,
        b.get(&format!("/chat/{conn}")).await,
    ] {
        for (_, text, status) in messages(&page) {
            if text.contains("victim") || text.contains("swap") {
                panic!("tampered message shown: {text} ({status})");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_members_get_the_not_found_page_for_every_group_route() {
    let server = TestServer::start_with(roomy).await;
    let mut cs = members(&server, &["alice", "bob", "mallory"]).await;
    let (a, rest) = cs.split_first_mut().unwrap();
    let (b, rest) = rest.split_first_mut().unwrap();
    let m = &mut rest[0];
    connect(a, b, "bob").await;
    connect(a, m, "mallory").await;
    let id = create_group(a, "Private").await;
    add(a, &id, b, "bob").await;
    gsay(a, &id, "members only", "").await;
    let store = &server.state().store;
    let bob = member_id(store, "bob");
    let unknown = ghostcache::crypto::b64url(&[7u8; 16]);
    let snapshot = |store: &ghostcache::store::Store| {
        [
            rows(store, GROUPS),
            rows(store, GROUP_MEMBERS),
            rows(store, GROUP_EPOCH_KEYS),
            rows(store, GROUP_INVITES),
            rows(store, MESSAGES),
            rows(store, MEMBER_TO_GROUPS),
            rows(store, GROUP_TO_INVITEES),
        ]
    };
    let before = snapshot(store);
    let not_found = m.get(&gpath(&unknown)).await.text_without_csrf();
    let csrf = m.get("/chat/groups").await.form_csrf("/chat/create");

    for group in [id.as_str(), unknown.as_str(), "malformed"] {
        let r = m.get(&gpath(group)).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "GET page {group}");
        assert!(!r.text().contains("members only"));
        let r = m.get(&format!("/chat/group/{group}/live?after=0")).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "live {group}");
        assert!(!r.text().contains("members only"));
        let page = gpath(group);
        let posts: Vec<(&str, Vec<(&str, &str)>)> = vec![
            (page.as_str(), vec![("message", "intruder"), ("timer", "")]),
            (
                "/chat/invite",
                vec![("group", group), ("username", "mallory")],
            ),
            ("/chat/leave", vec![("group", group)]),
            (
                "/chat/remove",
                vec![("group", group), ("member", bob.as_str())],
            ),
            ("/chat/accept", vec![("group", group)]),
            ("/chat/decline", vec![("group", group)]),
        ];
        for (path, fields) in posts {
            let mut all = vec![("csrf", csrf.as_str())];
            all.extend(fields);
            let r = m.post_form(path, &all).await;
            assert_eq!(r.status, StatusCode::NOT_FOUND, "POST {path} for {group}");
            if group == unknown {
                assert_eq!(r.text_without_csrf(), not_found, "one page for every case");
            }
        }
    }
    assert_eq!(snapshot(store), before, "nothing changed");

    // A former member is a non-member too.
    b.submit(&gpath(&id), "/chat/leave", &[("group", id.as_str())])
        .await;
    assert_eq!(b.get(&gpath(&id)).await.status, StatusCode::NOT_FOUND);
    let csrf = b.get("/chat/groups").await.form_csrf("/chat/create");
    let r = b
        .post_form(
            &gpath(&id),
            &[("csrf", &csrf), ("message", "ghost"), ("timer", "")],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // Logged out: the page sends to the login form.
    let mut anon = server.client();
    let r = anon.get(&gpath(&id)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_new_post_needs_its_csrf_token_and_changes_nothing_without_it() {
    let server = TestServer::start_with(roomy).await;
    let mut cs = members(&server, &["alice", "bob", "carol"]).await;
    let (a, rest) = cs.split_first_mut().unwrap();
    let (b, rest) = rest.split_first_mut().unwrap();
    let c = &mut rest[0];
    connect(a, b, "bob").await;
    connect(a, c, "carol").await;
    let id = create_group(a, "Guarded").await;
    add(a, &id, b, "bob").await;
    invite(a, &id, "carol").await; // pending, for accept/decline
    let store = &server.state().store;
    let bob = member_id(store, "bob");
    let snapshot = |store: &ghostcache::store::Store| {
        [
            rows(store, GROUPS),
            rows(store, GROUP_MEMBERS),
            rows(store, GROUP_EPOCH_KEYS),
            rows(store, GROUP_INVITES),
            rows(store, MESSAGES),
            rows(store, MEMBER_SETTINGS),
        ]
    };
    let before = snapshot(store);
    let foreign = b.get("/chat/groups").await.form_csrf("/chat/create");
    let page = gpath(&id);
    let posts: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("/chat/create", vec![("name", "another")]),
        (
            "/chat/invite",
            vec![("group", id.as_str()), ("username", "carol")],
        ),
        (
            "/chat/remove",
            vec![("group", id.as_str()), ("member", bob.as_str())],
        ),
        (page.as_str(), vec![("message", "hello"), ("timer", "30")]),
        ("/chat/leave", vec![("group", id.as_str())]),
        ("/settings/signature", vec![("scheme", "dsa")]),
    ];
    for (path, fields) in posts {
        for token in [None, Some("wrong"), Some(foreign.as_str())] {
            let mut f = fields.clone();
            if let Some(t) = token {
                f.push(("csrf", t));
            }
            let r = a.post_form(path, &f).await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{path} with {token:?}");
            assert!(r.text().contains("Form expired"));
        }
    }
    for path in ["/chat/accept", "/chat/decline"] {
        for token in [None, Some("wrong"), Some(foreign.as_str())] {
            let mut f = vec![("group", id.as_str())];
            if let Some(t) = token {
                f.push(("csrf", t));
            }
            let r = c.post_form(path, &f).await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{path} with {token:?}");
        }
    }
    assert_eq!(snapshot(store), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_deletion_removes_memberships_authored_messages_and_wrapped_keys() {
    let server = TestServer::start_with(roomy).await;
    let mut cs = members(&server, &["alice", "bob", "carol"]).await;
    let (a, rest) = cs.split_first_mut().unwrap();
    let (b, rest) = rest.split_first_mut().unwrap();
    let c = &mut rest[0];
    connect(a, b, "bob").await;
    connect(a, c, "carol").await;
    connect(b, c, "carol").await;
    let g1 = create_group(a, "First").await;
    add(a, &g1, b, "bob").await;
    add(a, &g1, c, "carol").await;
    gsay(b, &g1, "bob one", "").await;
    gsay(b, &g1, "bob two", "300").await;
    gsay(a, &g1, "alice stays", "").await;
    // bob created a group of his own, and has a pending invitation from carol's group.
    let g2 = create_group(b, "Bobgroup").await;
    invite(b, &g2, "carol").await;
    let g3 = create_group(c, "Carol's").await;
    invite(c, &g3, "bob").await;
    let store = &server.state().store;
    let bob = id_of(store, "bob");
    let [m, s, i, k, authored] = member_rows(store, &bob);
    assert!(m > 0 && s > 0 && i > 0 && k > 0 && authored == 2);

    let r = b
        .submit("/settings", "/settings/delete", &[("current_password", PW)])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    // Carol's invitation waits for bob's decoy, as it would for a member who does not
    // answer (see tests/it/decoy.rs); the name key in it is sealed to a delivery key whose
    // private half is gone. Everything else of bob's is gone.
    assert_eq!(member_rows(store, &bob), [0, 0, 1, 0, 0]);
    let txn = store.database().begin_read().unwrap();
    let index = txn.open_table(MEMBER_TO_GROUPS).unwrap();
    assert!(index.iter().unwrap().all(|r| r.unwrap().0.value().0 != bob));
    let deadlines = txn.open_table(MESSAGE_DEADLINES).unwrap();
    assert_eq!(
        deadlines.iter().unwrap().count(),
        0,
        "bob's timed message's index row"
    );
    drop((index, deadlines, txn));
    // bob's own group had nobody else: gone with its invitation to carol.
    assert_eq!(rows(store, GROUPS), 2);
    assert_eq!(c.get(&gpath(&g2)).await.status, StatusCode::NOT_FOUND);
    assert!(!c.get("/chat/groups").await.text().contains("Bobgroup"));
    // The others read on, in a new epoch without him.
    assert_eq!(read(a, &g1).await, vec!["alice stays"]);
    let page = c.get(&gpath(&g1)).await;
    assert_eq!(page.texts(".members .name"), vec!["alice", "carol"]);
    assert!(page.text().contains("key epoch 4"));
    gsay(c, &g1, "after bob", "").await;
    assert_eq!(read(a, &g1).await, vec!["alice stays", "after bob"]);
    let page = c.get(&gpath(&g3)).await;
    assert!(page.text().contains("bob"), "the invitation still waits");
    // When the decoy goes (inactivity), so does the invitation.
    c.get("/").await;
    server.clock.advance(32 * 86_400);
    ghostcache::sweeper::sweep(server.state()).await.unwrap();
    assert_eq!(member_rows(store, &bob), [0, 0, 0, 0, 0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_of_fifty_members_works_and_refuses_the_fifty_first() {
    let server = TestServer::start_with(|c| {
        roomy(c);
        c.crypto.rsa_pool_size = 8;
    })
    .await;
    // DSA keys are quick to make once the parameters exist: everybody signs with DSA.
    let mut owner = server.client();
    owner.member("owner").await;
    owner
        .submit(
            "/settings/signature",
            "/settings/signature",
            &[("scheme", "dsa")],
        )
        .await;
    let gid = create_group(&mut owner, "Fifty").await;
    let mut others = Vec::new();
    for i in 1..=50 {
        let name = format!("member{i:02}");
        let mut c = server.client();
        c.member(&name).await;
        c.submit(
            "/settings/signature",
            "/settings/signature",
            &[("scheme", "dsa")],
        )
        .await;
        connect(&mut owner, &mut c, &name).await;
        others.push((name, c));
    }
    for (name, c) in others.iter_mut().take(49) {
        let r = invite(&mut owner, &gid, name).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{name}: {}", r.text());
        join(c, &gid).await;
    }
    let (last_name, _) = &others[49];
    let r = invite(&mut owner, &gid, last_name).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.text().contains("The group is full (50"));
    gsay(&mut owner, &gid, "hello fifty", "").await;
    let (_, c) = &mut others[48];
    assert_eq!(read(c, &gid).await, vec!["hello fifty"]);
    let page = c.get(&gpath(&gid)).await;
    assert_eq!(page.texts(".members .name").len(), 50);
    assert!(messages(&page).iter().all(|(_, _, s)| s == "verified"));
}
