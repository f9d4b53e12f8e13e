//! The home page as a member's overview, and the counts beside Connections and Groups in
//! the navigation: what waits appears, links where to act, and goes once acted upon.

use hyper::StatusCode;

use crate::groups::{create_group, gsay, invite, join, members, roomy};
use crate::support::chat::{accept_action, connect, say};
use crate::support::{Resp, TestServer};

/// The count beside a navigation link, if any.
pub(crate) fn nav_count(page: &Resp, href: &str) -> Option<String> {
    page.texts(&format!("header.site nav a[href=\"{href}\"] .count"))
        .into_iter()
        .next()
}

/// The items of one section of the overview (`unread`, `requests`, `invitations`,
/// `expiring`), as text.
fn items(page: &Resp, section: &str) -> Vec<String> {
    page.texts(&format!("section[aria-labelledby=\"{section}\"] li"))
}

/// The links in one section of the overview.
fn links(page: &Resp, section: &str) -> Vec<String> {
    let sel =
        scraper::Selector::parse(&format!("section[aria-labelledby=\"{section}\"] li a")).unwrap();
    page.html()
        .select(&sel)
        .map(|a| a.value().attr("href").unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_shows_what_waits_links_where_to_act_and_forgets_what_was_done() {
    let server = TestServer::start_with(roomy).await;
    let mut cs = members(&server, &["alice", "bob", "carol"]).await;
    let (a, rest) = cs.split_first_mut().unwrap();
    let (b, rest) = rest.split_first_mut().unwrap();
    let c = &mut rest[0];
    let ab = connect(b, a, "alice").await;

    let home = a.get("/").await;
    assert_eq!(home.status, StatusCode::OK);
    assert!(
        home.text().contains("Nothing waits for you."),
        "{}",
        home.text()
    );
    assert_eq!(nav_count(&home, "/connections"), None);
    assert_eq!(nav_count(&home, "/chat/groups"), None);

    // bob writes twice, carol asks to connect, bob invites alice to a group, and alice
    // has a file that expires in three days (and one in a year).
    say(b, &ab, "one").await;
    say(b, &ab, "two").await;
    let r = c
        .submit("/connections", "/connect", &[("username", "alice")])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let g = create_group(b, "Book <club>").await;
    assert_eq!(invite(b, &g, "alice").await.status, StatusCode::SEE_OTHER);
    assert_eq!(
        a.upload("soon.txt", b"soon", "3").await.status,
        StatusCode::OK
    );
    assert_eq!(
        a.upload("later.txt", b"later", "365").await.status,
        StatusCode::OK
    );

    let home = a.get("/").await;
    assert!(!home.text().contains("Nothing waits"));
    let unread = items(&home, "unread");
    assert_eq!(unread.len(), 1, "{unread:?}");
    assert!(
        unread[0].starts_with("bob") && unread[0].contains("2 unread"),
        "{unread:?}"
    );
    assert_eq!(links(&home, "unread"), vec![format!("/chat/{ab}")]);
    let requests = items(&home, "requests");
    assert_eq!(requests.len(), 1);
    assert!(requests[0].contains("carol asked to connect"));
    assert_eq!(links(&home, "requests"), vec!["/connections"]);
    let invitations = items(&home, "invitations");
    assert_eq!(invitations.len(), 1);
    assert!(
        invitations[0].contains("Book <club>") && invitations[0].contains("from bob"),
        "{invitations:?}"
    );
    assert_eq!(links(&home, "invitations"), vec!["/chat/groups"]);
    let expiring = items(&home, "expiring");
    assert_eq!(
        expiring.len(),
        1,
        "only the file that expires within 7 days"
    );
    assert!(expiring[0].contains("soon.txt"), "{expiring:?}");
    assert!(links(&home, "expiring")[0].starts_with("/file/"));
    let file_page = a.get(&links(&home, "expiring")[0]).await;
    assert_eq!(file_page.status, StatusCode::OK);
    // Two unread messages and a request; an invitation.
    assert_eq!(nav_count(&home, "/connections").as_deref(), Some("3"));
    assert_eq!(nav_count(&home, "/chat/groups").as_deref(), Some("1"));
    // Every page carries the counts, read out with what they mean.
    let files = a.get("/files").await;
    assert_eq!(nav_count(&files, "/connections").as_deref(), Some("3"));
    assert!(
        files
            .texts("header.site nav a[href=\"/chat/groups\"]")
            .concat()
            .contains("Groups 1 waiting")
    );

    // Reading the chat: its page already counts without those two.
    let chat = a.get(&format!("/chat/{ab}")).await;
    assert_eq!(nav_count(&chat, "/connections").as_deref(), Some("1"));
    // Accepting carol, joining the group.
    let page = a.get("/connections").await;
    let r = a.submit("/connections", &accept_action(&page), &[]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let chat = a.get(r.header("location").unwrap()).await;
    assert!(
        chat.texts("p.notice[role=status]")
            .concat()
            .starts_with("You are now connected")
    );
    join(a, &g).await;
    let joined = a.get(&format!("/chat/group/{g}?joined=1")).await;
    assert!(
        joined
            .texts("p.notice[role=status]")
            .concat()
            .starts_with("You joined the group")
    );
    let home = a.get("/").await;
    assert!(items(&home, "unread").is_empty());
    assert!(items(&home, "requests").is_empty());
    assert!(items(&home, "invitations").is_empty());
    assert_eq!(nav_count(&home, "/connections"), None);
    assert_eq!(nav_count(&home, "/chat/groups"), None);

    // A group message waits, and goes when read.
    gsay(b, &g, "hello group", "").await;
    let home = a.get("/").await;
    let unread = items(&home, "unread");
    assert_eq!(unread.len(), 1);
    assert!(
        unread[0].contains("Group Book <club>") && unread[0].contains("1 unread"),
        "{unread:?}"
    );
    assert_eq!(links(&home, "unread"), vec![format!("/chat/group/{g}")]);
    assert_eq!(nav_count(&home, "/chat/groups").as_deref(), Some("1"));
    a.get(&format!("/chat/group/{g}")).await;
    let home = a.get("/").await;
    assert!(items(&home, "unread").is_empty());
    assert!(home.text().contains("No unread messages."));
    assert_eq!(nav_count(&home, "/chat/groups"), None);
    assert_eq!(items(&home, "expiring").len(), 1, "the file still expires");

    // Logged out, the start page is the public one.
    let mut anon = server.client();
    let home = anon.get("/").await;
    assert_eq!(home.status, StatusCode::OK);
    assert_eq!(
        home.texts("a[href='/register']"),
        vec!["Register", "Create an account"]
    );
    assert!(
        home.text()
            .contains("nobody logs into for 30 days are deleted automatically"),
        "the configured inactivity period"
    );
    assert_eq!(nav_count(&home, "/connections"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_reads_but_stores_nothing() {
    use crate::support::chat::dump;
    use ghostcache::store::tables::{
        CONNECTIONS, FILES, GROUP_INVITES, GROUPS, MESSAGES, UNDELIVERED, USERS,
    };
    let server = TestServer::start_with(roomy).await;
    let mut cs = members(&server, &["alice", "bob"]).await;
    let (a, rest) = cs.split_first_mut().unwrap();
    let b = &mut rest[0];
    let ab = connect(b, a, "alice").await;
    say(b, &ab, "unread").await;
    let g = create_group(b, "Group").await;
    invite(b, &g, "alice").await;
    a.upload("soon.txt", b"soon", "1").await;
    // The first look re-seals the invitation's name key under alice's data key (one RSA
    // operation, once); from then on a look reads and changes nothing.
    a.get("/").await;
    let store = &server.state().store;
    let state = |store: &ghostcache::store::Store| {
        (
            dump(store, USERS),
            dump(store, CONNECTIONS),
            dump(store, MESSAGES),
            dump(store, UNDELIVERED),
            dump(store, GROUPS),
            dump(store, GROUP_INVITES),
            dump(store, FILES),
        )
    };
    let before = state(store);
    for _ in 0..3 {
        let home = a.get("/").await;
        assert_eq!(items(&home, "unread").len(), 1);
        assert_eq!(items(&home, "invitations").len(), 1);
    }
    assert!(state(store) == before, "looking changed a row");
}
