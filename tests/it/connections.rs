//! Connections over HTTP: search, request, accept, deny, remove, block, who may see what,
//! the keys made on accept, CSRF, rate limits, and what account deletion takes with it.

use hyper::StatusCode;

use crate::support::chat::{accept_action, chat_id, connect, form_action, messages, rows, say};
use crate::support::{Client, TestServer};
use ghostcache::config::Config;
use ghostcache::store::tables::{
    CONNECTION_SECRETS, CONNECTIONS, CONVERSATION_TO_LAST_SEQ, MEMBER_TO_PAIRED, MESSAGES, PAIRS,
    UNDELIVERED,
};

/// Generous limits: these tests are about rules, not rates.
fn roomy(c: &mut Config) {
    c.rate_limits.connection_requests_per_minute = 1000;
    c.rate_limits.searches_per_minute = 1000;
    c.rate_limits.messages_per_minute = 1000;
}

async fn members(server: &TestServer, names: &[&str]) -> Vec<Client> {
    let mut out = Vec::new();
    for name in names {
        let mut c = server.client();
        c.member(name).await;
        out.push(c);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_request_accept_and_chat_both_ways_with_verified_signatures() {
    let server = TestServer::start_with(roomy).await;
    let mut m = members(&server, &["alice", "bob"]).await;
    let (alice, bob) = m.split_at_mut(1);
    let (alice, bob) = (&mut alice[0], &mut bob[0]);

    // The nav links to the connections page.
    let home = alice.get("/").await;
    assert!(
        home.html()
            .select(&scraper::Selector::parse("nav a[href=\"/connections\"]").unwrap())
            .next()
            .is_some()
    );

    // Search is by normalised name: "BOB" finds bob.
    let found = alice.get("/search?q=BOB").await;
    assert_eq!(found.status, StatusCode::OK);
    assert_eq!(found.texts("ul.people .name"), vec!["bob"]);
    let action = form_action(&found, "/connect");
    assert_eq!(action, "/connect");

    let r = alice
        .submit("/search?q=bob", "/connect", &[("username", "bob")])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.header("location"), Some("/connections?sent=1"));
    let mine = alice.get("/connections?sent=1").await;
    assert!(mine.text().contains("Your request has been sent."));
    assert_eq!(
        mine.texts("section[aria-labelledby=sent] .name"),
        vec!["bob"]
    );
    // One request per pair: asking again, or the other way round, is refused.
    let again = alice
        .submit("/connections", "/connect", &[("username", "bob")])
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    let reverse = bob
        .submit("/connections", "/connect", &[("username", "alice")])
        .await;
    assert_eq!(reverse.status, StatusCode::CONFLICT);
    assert!(reverse.text().contains("already sent you a request"));
    let myself = alice
        .submit("/connections", "/connect", &[("username", "alice")])
        .await;
    assert_eq!(myself.status, StatusCode::BAD_REQUEST);

    let page = bob.get("/connections").await;
    assert_eq!(
        page.texts("section[aria-labelledby=received] .name"),
        vec!["alice"]
    );
    let accept = accept_action(&page);
    let r = bob.submit("/connections", &accept, &[]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let id = chat_id(r.header("location").unwrap());
    assert_eq!(accept, format!("/connect/accept/{id}"));

    // Both see the connection.
    for (c, other) in [(&mut *alice, "bob"), (&mut *bob, "alice")] {
        let page = c.get("/connections").await;
        assert_eq!(
            page.texts("section[aria-labelledby=connected] .name"),
            vec![other]
        );
        let found = c.get(&format!("/search?q={other}")).await;
        assert!(found.text().contains("open chat"));
    }

    // Chat both ways.
    assert_eq!(
        say(alice, &id, "Hello bob, it's alice").await.status,
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        say(bob, &id, "Hi alice <3").await.status,
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        say(alice, &id, "Good to see you").await.status,
        StatusCode::SEE_OTHER
    );
    let path = format!("/chat/{id}");
    let bob_view = bob.get(&path).await;
    assert_eq!(bob_view.status, StatusCode::OK);
    assert_eq!(bob_view.texts("h1"), vec!["Chat with alice"]);
    assert_eq!(
        messages(&bob_view),
        vec![
            (
                "alice".to_owned(),
                "Good to see you".to_owned(),
                "verified".to_owned()
            ),
            (
                "You".to_owned(),
                "Hi alice <3".to_owned(),
                "verified".to_owned()
            ),
            (
                "alice".to_owned(),
                "Hello bob, it's alice".to_owned(),
                "verified".to_owned()
            ),
        ]
    );
    assert_eq!(bob_view.texts(".sig.ok").len(), 3);
    assert!(bob_view.texts(".sig.ok")[0].contains("signature verified"));
    let alice_view = alice.get(&path).await;
    assert_eq!(
        messages(&alice_view),
        vec![
            (
                "You".to_owned(),
                "Good to see you".to_owned(),
                "verified".to_owned()
            ),
            (
                "bob".to_owned(),
                "Hi alice <3".to_owned(),
                "verified".to_owned()
            ),
            (
                "You".to_owned(),
                "Hello bob, it's alice".to_owned(),
                "verified".to_owned()
            ),
        ]
    );
    // Each side's fingerprint is shown, and the two differ (a key pair per side).
    let prints = alice_view.texts("details.keys code");
    assert_eq!(prints.len(), 2);
    assert_ne!(prints[0], prints[1]);
    let bob_prints = bob_view.texts("details.keys code");
    assert_eq!(bob_prints, vec![prints[1].clone(), prints[0].clone()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_makes_fresh_keys_and_seals_the_requesters_to_their_delivery_key() {
    use ghostcache::connections::keys::{Sealed, SideSecretsRecord};
    use ghostcache::store::Record;
    let server = TestServer::start_with(roomy).await;
    let mut m = members(&server, &["anna", "ben", "cleo"]).await;
    let store = server.state().store.clone();
    let (anna, rest) = m.split_at_mut(1);
    let (ben, cleo) = rest.split_at_mut(1);
    let (anna, ben, cleo) = (&mut anna[0], &mut ben[0], &mut cleo[0]);
    let id1 = connect(anna, ben, "ben").await;
    let id2 = connect(anna, cleo, "cleo").await;
    let sealed = |conn: &str, who: &str| -> Sealed {
        let conn = ghostcache::crypto::b64url_decode_exact::<16>(conn).unwrap();
        let user = ghostcache::accounts::find_user(
            &store,
            &ghostcache::accounts::Username::parse(who).unwrap(),
        )
        .unwrap()
        .unwrap()
        .0;
        let txn = store.read().unwrap();
        let t = txn.open_table(CONNECTION_SECRETS).unwrap();
        let bytes = t.get((conn, user)).unwrap().unwrap();
        SideSecretsRecord::decode(bytes.value()).unwrap().sealed
    };
    // The receiver's copy is under its data key; the requester's sealed to its delivery
    // key until the requester first uses the connection.
    assert!(matches!(sealed(&id1, "ben"), Sealed::UnderDataKey(_)));
    assert!(matches!(sealed(&id1, "anna"), Sealed::ToDelivery(t) if !t.wrapped_key.is_empty()));
    assert_eq!(
        anna.get(&format!("/chat/{id1}")).await.status,
        StatusCode::OK
    );
    assert!(matches!(sealed(&id1, "anna"), Sealed::UnderDataKey(_)));
    assert!(
        matches!(sealed(&id2, "anna"), Sealed::ToDelivery(_)),
        "other connections untouched"
    );

    // Four public keys, all different: no key pair is shared between sides or connections.
    let mut prints = Vec::new();
    for id in [&id1, &id2] {
        prints.extend(
            anna.get(&format!("/chat/{id}"))
                .await
                .texts("details.keys code"),
        );
    }
    prints.sort();
    prints.dedup();
    assert_eq!(prints.len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denial_looks_exactly_like_a_name_nobody_has() {
    let server = TestServer::start_with(roomy).await;
    let mut m = members(&server, &["carol", "dave"]).await;
    let (carol, dave) = m.split_at_mut(1);
    let (carol, dave) = (&mut carol[0], &mut dave[0]);

    let r = carol
        .submit("/connections", "/connect", &[("username", "dave")])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let page = dave.get("/connections").await;
    let deny = form_action(&page, "/connect/deny/");
    let r = dave.submit("/connections", &deny, &[]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.header("location"), Some("/connections?denied=1"));

    // Carol's sent request vanished, as if dave's account had been deleted.
    let mine = carol.get("/connections").await;
    assert!(mine.texts("section[aria-labelledby=sent] .name").is_empty());

    let search_denied = carol.get("/search?q=dave").await;
    let connect_denied = carol
        .submit("/connections", "/connect", &[("username", "dave")])
        .await;
    let block_denied = carol
        .submit("/connections", "/block", &[("username", "dave")])
        .await;
    assert_eq!(search_denied.status, StatusCode::OK);
    assert!(
        search_denied
            .text()
            .contains("No member found with that name.")
    );
    assert_eq!(connect_denied.status, StatusCode::NOT_FOUND);

    // A different name nobody has: the same pages but for the echoed name.
    let search_none = carol.get("/search?q=zeke").await;
    let connect_none = carol
        .submit("/connections", "/connect", &[("username", "zeke")])
        .await;
    let block_none = carol
        .submit("/connections", "/block", &[("username", "zeke")])
        .await;
    assert_eq!(search_none.status, search_denied.status);
    assert_eq!(connect_none.status, connect_denied.status);
    assert_eq!(block_none.status, block_denied.status);
    assert_eq!(
        search_none.text().replace("zeke", "NAME"),
        search_denied.text().replace("dave", "NAME")
    );
    assert_eq!(
        connect_none.text().replace("zeke", "NAME"),
        connect_denied.text().replace("dave", "NAME")
    );
    assert_eq!(block_none.text(), block_denied.text());

    // Dave still finds carol, and may change his mind by asking her himself.
    let found = dave.get("/search?q=carol").await;
    assert_eq!(found.texts("ul.people .name"), vec!["carol"]);

    // Byte for byte: the same name before and after dave's account is gone.
    let r = dave
        .submit(
            "/settings",
            "/settings/delete",
            &[("current_password", crate::support::PW)],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let search_gone = carol.get("/search?q=dave").await;
    let connect_gone = carol
        .submit("/connections", "/connect", &[("username", "dave")])
        .await;
    assert_eq!(search_gone.status, search_denied.status);
    assert_eq!(search_gone.body, search_denied.body);
    assert_eq!(connect_gone.status, connect_denied.status);
    assert_eq!(connect_gone.body, connect_denied.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_denier_can_still_ask_and_that_lifts_the_denial() {
    let server = TestServer::start_with(roomy).await;
    let mut m = members(&server, &["erin", "finn"]).await;
    let (erin, finn) = m.split_at_mut(1);
    let (erin, finn) = (&mut erin[0], &mut finn[0]);
    erin.submit("/connections", "/connect", &[("username", "finn")])
        .await;
    let deny = form_action(&finn.get("/connections").await, "/connect/deny/");
    finn.submit("/connections", &deny, &[]).await;
    assert!(
        erin.get("/search?q=finn")
            .await
            .text()
            .contains("No member found")
    );
    let id = connect(finn, erin, "erin").await;
    assert!(
        erin.get("/search?q=finn")
            .await
            .text()
            .contains("open chat")
    );
    assert_eq!(
        erin.get(&format!("/chat/{id}")).await.status,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_third_member_gets_not_found_for_someone_elses_connection() {
    let server = TestServer::start_with(roomy).await;
    let mut m = members(&server, &["gail", "hank", "ivan", "jade"]).await;
    let store = server.state().store.clone();
    let (gail, rest) = m.split_at_mut(1);
    let (hank, rest) = rest.split_at_mut(1);
    let (ivan, jade) = rest.split_at_mut(1);
    let (gail, hank, ivan, jade) = (&mut gail[0], &mut hank[0], &mut ivan[0], &mut jade[0]);
    let id = connect(gail, hank, "hank").await;
    say(gail, &id, "private words").await;
    // A pending request too: jade asks hank.
    jade.submit("/connections", "/connect", &[("username", "hank")])
        .await;
    let pending_accept = accept_action(&hank.get("/connections").await);
    let pending = pending_accept.rsplit('/').next().unwrap().to_owned();

    let csrf = ivan.get("/connections").await.form_csrf("/connect");
    let chat = format!("/chat/{id}");
    let not_found = |r: &crate::support::Resp, what: &str| {
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{what}: {}", r.text());
        assert_eq!(r.texts("h1"), vec!["Not found"], "{what}");
        assert!(!r.text().contains("private words"));
        assert!(!r.text().contains("gail"), "{what} names nobody");
    };
    not_found(&ivan.get(&chat).await, "read");
    not_found(&ivan.get(&format!("{chat}?before=5")).await, "read older");
    not_found(
        &ivan
            .post_form(&chat, &[("csrf", &csrf), ("message", "intrusion")])
            .await,
        "post",
    );
    for action in ["accept", "deny", "remove"] {
        for target in [&id, &pending] {
            let r = ivan
                .post_form(&format!("/connect/{action}/{target}"), &[("csrf", &csrf)])
                .await;
            not_found(&r, action);
        }
    }
    // The requester cannot accept or deny their own request either.
    let jade_csrf = jade.get("/connections").await.form_csrf("/connect");
    for action in ["accept", "deny"] {
        let r = jade
            .post_form(
                &format!("/connect/{action}/{pending}"),
                &[("csrf", &jade_csrf)],
            )
            .await;
        not_found(&r, action);
    }
    // The live stream answers with a framable not-found document.
    let live = ivan.get(&format!("{chat}/live")).await;
    assert_eq!(live.status, StatusCode::NOT_FOUND);
    assert_eq!(live.header("x-frame-options"), Some("SAMEORIGIN"));
    assert!(!live.text().contains("private words"));
    // Malformed ids are simply not found.
    not_found(&ivan.get("/chat/not-an-id").await, "bad id");
    not_found(
        &ivan
            .post_form("/connect/accept/%2e%2e", &[("csrf", &csrf)])
            .await,
        "bad id",
    );

    // Nothing changed.
    assert_eq!(rows(&store, MESSAGES), 1);
    assert_eq!(rows(&store, CONNECTIONS), 2);
    let gail_view = gail.get(&chat).await;
    assert_eq!(messages(&gail_view).len(), 1);
    assert_eq!(
        hank.get("/connections")
            .await
            .texts("section[aria-labelledby=received] .name"),
        vec!["jade"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_connection_removes_its_messages_and_keys() {
    let server = TestServer::start_with(roomy).await;
    let mut m = members(&server, &["kate", "leon", "mia"]).await;
    let store = server.state().store.clone();
    let (kate, rest) = m.split_at_mut(1);
    let (leon, mia) = rest.split_at_mut(1);
    let (kate, leon, mia) = (&mut kate[0], &mut leon[0], &mut mia[0]);
    let id = connect(kate, leon, "leon").await;
    let other = connect(kate, mia, "mia").await;
    for i in 0..3 {
        say(kate, &id, &format!("to leon {i}")).await;
        say(leon, &id, &format!("to kate {i}")).await;
    }
    say(mia, &other, "to kate from mia").await;
    assert_eq!(rows(&store, MESSAGES), 7);
    assert_eq!(rows(&store, CONNECTION_SECRETS), 4);
    assert_eq!(rows(&store, CONNECTIONS), 2);
    assert_eq!(rows(&store, CONVERSATION_TO_LAST_SEQ), 2);
    assert!(rows(&store, UNDELIVERED) > 0);

    let remove = format!("/connect/remove/{id}");
    let r = leon.submit("/connections", &remove, &[]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(rows(&store, MESSAGES), 1, "only mia's message is left");
    assert_eq!(rows(&store, CONNECTION_SECRETS), 2);
    assert_eq!(rows(&store, CONNECTIONS), 1);
    assert_eq!(rows(&store, CONVERSATION_TO_LAST_SEQ), 1);
    assert_eq!(rows(&store, PAIRS), 1);
    assert_eq!(rows(&store, MEMBER_TO_PAIRED), 2);
    assert_eq!(
        rows(&store, UNDELIVERED),
        1,
        "kate has not read mia's message yet"
    );
    assert_eq!(
        kate.get(&format!("/chat/{id}")).await.status,
        StatusCode::NOT_FOUND
    );
    assert!(
        kate.get("/connections")
            .await
            .texts("section[aria-labelledby=connected] .name")
            == vec!["mia"]
    );
    // Removing twice: not found.
    let csrf = leon.get("/connections").await.form_csrf("/connect");
    assert_eq!(
        leon.post_form(&remove, &[("csrf", &csrf)]).await.status,
        StatusCode::NOT_FOUND
    );
    // They may connect again, with new keys and an empty history.
    let again = connect(leon, kate, "kate").await;
    assert_ne!(again, id);
    assert!(messages(&kate.get(&format!("/chat/{again}")).await).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_account_removes_its_connections_requests_blocks_messages_and_keys() {
    let server = TestServer::start_with(roomy).await;
    let mut m = members(&server, &["nora", "omar", "pia", "quin", "rosa", "sam"]).await;
    let store = server.state().store.clone();
    let (nora, rest) = m.split_at_mut(1);
    let nora = &mut nora[0];
    let [omar, pia, quin, rosa, sam] = rest else {
        unreachable!()
    };
    let with_omar = connect(nora, omar, "omar").await;
    let with_pia = connect(pia, nora, "nora").await;
    say(nora, &with_omar, "hello omar").await;
    say(omar, &with_omar, "hello nora").await;
    say(pia, &with_pia, "hello from pia").await;
    // nora asked quin (pending), denied rosa, blocked sam.
    nora.submit("/connections", "/connect", &[("username", "quin")])
        .await;
    rosa.submit("/connections", "/connect", &[("username", "nora")])
        .await;
    let deny = form_action(&nora.get("/connections").await, "/connect/deny/");
    nora.submit("/connections", &deny, &[]).await;
    nora.submit("/connections", "/block", &[("username", "sam")])
        .await;
    // And a pair that does not involve nora survives.
    let unrelated = connect(omar, pia, "pia").await;
    say(omar, &unrelated, "not about nora").await;
    assert_eq!(rows(&store, PAIRS), 6);
    assert_eq!(rows(&store, MESSAGES), 4);

    let r = nora
        .submit(
            "/settings",
            "/settings/delete",
            &[("current_password", crate::support::PW)],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    // A decoy keeps her name until inactivity frees it (see tests/it/decoy.rs), and with
    // it her denial of rosa and her block of sam, so that she stays hidden from them as
    // she was; her connections, her request and every message and key are gone.
    assert_eq!(rows(&store, PAIRS), 3);
    assert_eq!(rows(&store, MEMBER_TO_PAIRED), 6);
    assert_eq!(rows(&store, CONNECTIONS), 1);
    assert_eq!(rows(&store, CONNECTION_SECRETS), 2);
    assert_eq!(rows(&store, MESSAGES), 1);
    assert_eq!(rows(&store, CONVERSATION_TO_LAST_SEQ), 1);
    assert_eq!(
        rows(&store, UNDELIVERED),
        1,
        "pia's unread message from omar"
    );

    // Others' views lose the account without errors.
    for c in [&mut *omar, &mut *pia, &mut *quin, &mut *rosa, &mut *sam] {
        let page = c.get("/connections").await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(!page.text().contains("nora"));
    }
    assert_eq!(
        omar.get(&format!("/chat/{with_omar}")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        pia.get(&format!("/chat/{with_pia}")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        omar.get(&format!("/chat/{unrelated}")).await.status,
        StatusCode::OK
    );
    for c in [&mut *rosa, &mut *sam] {
        assert!(
            c.get("/search?q=nora")
                .await
                .text()
                .contains("No member found")
        );
    }
    // When the decoy goes (inactivity), nothing of nora is left.
    server.clock.advance(20 * 86_400);
    for (c, name) in [(&mut *omar, "omar"), (&mut *pia, "pia")] {
        assert_eq!(
            c.login(name, crate::support::PW).await.status,
            StatusCode::SEE_OTHER
        );
    }
    server.clock.advance(12 * 86_400);
    ghostcache::sweeper::sweep(server.state()).await.unwrap();
    assert_eq!(rows(&store, PAIRS), 1);
    assert_eq!(rows(&store, MEMBER_TO_PAIRED), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_hides_both_ways_and_unblock_lifts_it() {
    let server = TestServer::start_with(roomy).await;
    let mut m = members(&server, &["tara", "uma"]).await;
    let store = server.state().store.clone();
    let (tara, uma) = m.split_at_mut(1);
    let (tara, uma) = (&mut tara[0], &mut uma[0]);
    let id = connect(tara, uma, "uma").await;
    say(uma, &id, "hi tara").await;

    let r = tara
        .submit("/connections", "/block", &[("username", "uma")])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(
        rows(&store, MESSAGES),
        0,
        "the connection went with its messages"
    );
    assert_eq!(rows(&store, CONNECTION_SECRETS), 0);
    let page = tara.get("/connections?blocked=1").await;
    assert_eq!(
        page.texts("section[aria-labelledby=blocked] .name"),
        vec!["uma"]
    );
    assert!(
        tara.get("/search?q=uma")
            .await
            .text()
            .contains("No member found"),
        "whom you blocked"
    );
    assert!(
        uma.get("/search?q=tara")
            .await
            .text()
            .contains("No member found"),
        "who blocked you"
    );
    let r = uma
        .submit("/connections", "/connect", &[("username", "tara")])
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(
        uma.get(&format!("/chat/{id}")).await.status,
        StatusCode::NOT_FOUND
    );
    let myself = tara
        .submit("/connections", "/block", &[("username", "tara")])
        .await;
    assert_eq!(myself.status, StatusCode::BAD_REQUEST);

    let unblock = tara.get("/connections").await;
    let r = tara
        .submit(
            "/connections",
            "/unblock",
            &[("member", &member_field(&unblock))],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(rows(&store, PAIRS), 0, "nothing links them any more");
    assert_eq!(rows(&store, MEMBER_TO_PAIRED), 0);
    assert!(
        uma.get("/search?q=tara")
            .await
            .text()
            .contains("Send connection request")
    );
    // Unblocking again, or a made-up id: not found.
    let csrf = tara.get("/connections").await.form_csrf("/connect");
    let r = tara
        .post_form(
            "/unblock",
            &[("csrf", &csrf), ("member", &member_field(&unblock))],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = tara
        .post_form("/unblock", &[("csrf", &csrf), ("member", "garbage")])
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

/// A member's id (as `/chat/send` takes it), from the store.
pub fn member_id(store: &ghostcache::store::Store, name: &str) -> String {
    let user = ghostcache::accounts::find_user(
        store,
        &ghostcache::accounts::Username::parse(name).unwrap(),
    )
    .unwrap()
    .unwrap()
    .0;
    ghostcache::crypto::b64url(&user)
}

fn member_field(page: &crate::support::Resp) -> String {
    let sel = scraper::Selector::parse("form[action=\"/unblock\"] input[name=member]").unwrap();
    page.html()
        .select(&sel)
        .next()
        .unwrap()
        .value()
        .attr("value")
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_new_post_needs_its_csrf_token_and_changes_nothing_without() {
    let server = TestServer::start_with(roomy).await;
    let mut m = members(&server, &["vera", "walt", "xena", "yuri"]).await;
    let store = server.state().store.clone();
    let (vera, rest) = m.split_at_mut(1);
    let (walt, rest) = rest.split_at_mut(1);
    let (xena, yuri) = rest.split_at_mut(1);
    let (vera, walt, xena, yuri) = (&mut vera[0], &mut walt[0], &mut xena[0], &mut yuri[0]);
    let id = connect(vera, walt, "walt").await;
    say(vera, &id, "before").await;
    xena.submit("/connections", "/connect", &[("username", "vera")])
        .await;
    let pending = accept_action(&vera.get("/connections").await)
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    vera.submit("/connections", "/block", &[("username", "yuri")])
        .await;
    let blocked = member_field(&vera.get("/connections").await);
    let walt_id = member_id(&store, "walt");
    let foreign = yuri.get("/connections").await.form_csrf("/connect");
    let snapshot = |store: &ghostcache::store::Store| {
        (
            rows(store, MESSAGES),
            rows(store, CONNECTIONS),
            rows(store, PAIRS),
            rows(store, CONNECTION_SECRETS),
        )
    };
    let before = snapshot(&store);
    let posts: Vec<(String, Vec<(&str, &str)>)> = vec![
        ("/connect".into(), vec![("username", "yuri")]),
        (format!("/connect/accept/{pending}"), vec![]),
        (format!("/connect/deny/{pending}"), vec![]),
        (format!("/connect/remove/{id}"), vec![]),
        ("/block".into(), vec![("username", "walt")]),
        ("/unblock".into(), vec![("member", &blocked)]),
        (format!("/chat/{id}"), vec![("message", "forged")]),
        (
            "/chat/send".into(),
            vec![("receiver_id", &walt_id), ("message", "forged")],
        ),
    ];
    for (path, fields) in &posts {
        for token in [None, Some("wrong"), Some(foreign.as_str())] {
            let mut f = fields.clone();
            if let Some(t) = token {
                f.push(("csrf", t));
            }
            let r = vera.post_form(path, &f).await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{path} with {token:?}");
            assert!(r.text().contains("Form expired"), "{path}");
        }
    }
    // JSON: the token must come in the X-CSRF-Token header.
    for token in [None, Some("wrong"), Some(foreign.as_str())] {
        let body = format!(r#"{{"receiver_id":"{walt_id}","message":"forged"}}"#);
        let mut req = hyper::Request::builder()
            .method("POST")
            .uri("/chat/send")
            .header("content-type", "application/json");
        if let Some(t) = token {
            req = req.header("x-csrf-token", t);
        }
        let r = vera
            .send(
                req.body(http_body_util::Full::new(bytes::Bytes::from(body)))
                    .unwrap(),
            )
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "json with {token:?}");
        assert_eq!(
            r.header("content-type"),
            Some("application/json; charset=utf-8")
        );
    }
    assert_eq!(snapshot(&store), before, "nothing changed");
    assert_eq!(messages(&walt.get(&format!("/chat/{id}")).await).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_requests_and_searches_are_rate_limited_per_member() {
    let server = TestServer::start_with(|c| {
        c.rate_limits.connection_requests_per_minute = 2;
        c.rate_limits.searches_per_minute = 3;
    })
    .await;
    let mut m = members(&server, &["zara", "abel", "beth", "cody"]).await;
    let store = server.state().store.clone();
    let zara = &mut m[0];
    for name in ["abel", "beth"] {
        let r = zara
            .submit("/connections", "/connect", &[("username", name)])
            .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER);
    }
    let r = zara
        .submit("/connections", "/connect", &[("username", "cody")])
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(rows(&store, CONNECTIONS), 2);
    // Another member is not affected.
    let cody = &mut m[3];
    let r = cody
        .submit("/connections", "/connect", &[("username", "abel")])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    // Searches, whether the name exists or not.
    for q in ["abel", "nobody", "beth"] {
        assert_eq!(
            cody.get(&format!("/search?q={q}")).await.status,
            StatusCode::OK
        );
    }
    assert_eq!(
        cody.get("/search?q=abel").await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    // An empty search is just the form, and costs nothing.
    assert_eq!(cody.get("/search").await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefix_search_is_a_configuration_option() {
    let exact = TestServer::start_with(roomy).await;
    let mut m = members(&exact, &["dana", "danaa", "danb"]).await;
    assert!(
        m[2].get("/search?q=dan")
            .await
            .text()
            .contains("No member found")
    );
    assert_eq!(
        m[2].get("/search?q=dana").await.texts("ul.people .name"),
        vec!["dana"]
    );

    let prefix = TestServer::start_with(|c| {
        roomy(c);
        c.connections.search_prefix = true;
    })
    .await;
    let mut m = members(&prefix, &["dana", "danaa", "danb", "eli"]).await;
    let found = m[3].get("/search?q=DAN").await;
    assert_eq!(
        found.texts("ul.people .name"),
        vec!["dana", "danaa", "danb"]
    );
    assert!(
        m[3].get("/search?q=da")
            .await
            .text()
            .contains("No member found"),
        "3 characters at least"
    );
    // Hidden members are left out of prefix results too.
    m[0].submit("/connections", "/connect", &[("username", "danb")])
        .await;
    let (first, rest) = m.split_at_mut(2);
    let danb = &mut rest[0];
    let deny = form_action(&danb.get("/connections").await, "/connect/deny/");
    danb.submit("/connections", &deny, &[]).await;
    assert_eq!(
        first[0].get("/search?q=dan").await.texts("ul.people .name"),
        vec!["dana", "danaa"]
    );
}
