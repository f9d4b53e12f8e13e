//! The decoy that takes the place of a member who used the destruction password: every
//! answer that anyone else can obtain — registering the name, the profile, search, a
//! connection request, a group invitation, sharing a file, the online list, logging in —
//! is exactly that of a live account they are not connected to and that is offline; and
//! the sweeper frees the name on the ordinary schedule.

use std::time::{Duration, Instant};

use hyper::StatusCode;

use crate::files::{file_path, key_of};
use crate::support::chat::{connect, create_group, group_with, say};
use crate::support::{Client, DPW, PW, Resp, TestServer};
use ghostcache::config::Config;

const DAY: i64 = 86_400;

fn roomy(c: &mut Config) {
    c.rate_limits.connection_requests_per_minute = 10_000;
    c.rate_limits.searches_per_minute = 10_000;
    c.rate_limits.messages_per_minute = 10_000;
}

/// A page as text, with what legitimately differs between two accounts taken out: CSRF
/// values, the name itself, and ids made for this request (22 characters of base64url).
fn normalized(r: &Resp, name: &str) -> String {
    format!(
        "{} {:?}\n{}",
        r.status,
        r.header("location").map(|l| l.replace(name, "NAME")),
        normalized_html(&r.text(), name)
    )
}

fn normalized_html(html: &str, name: &str) -> String {
    let mut text = html.to_owned();
    let sel = scraper::Selector::parse("input[name=csrf]").unwrap();
    let doc = scraper::Html::parse_document(html);
    for input in doc.select(&sel) {
        let value = input.value().attr("value").unwrap();
        if !value.is_empty() {
            text = text.replace(value, "CSRF");
        }
    }
    let text = text.replace(name, "NAME");
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    let id_char = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    for c in text.chars().chain(std::iter::once(' ')) {
        if id_char(c) {
            run.push(c);
            continue;
        }
        if run.len() == 22 {
            out.push_str("ID");
        } else {
            out.push_str(&run);
        }
        run.clear();
        out.push(c);
    }
    out.pop();
    out
}

/// The list item that names `name` in the part of `page` matched by `scope`.
fn item_naming(page: &Resp, scope: &str, name: &str) -> String {
    let sel = scraper::Selector::parse(&format!("{scope} li")).unwrap();
    let doc = page.html();
    let li = doc
        .select(&sel)
        .find(|li| li.text().any(|t| t.contains(name)))
        .unwrap_or_else(|| panic!("no item naming {name} in {scope}: {}", page.text()));
    li.html()
}

/// Everything `viewer` can learn about `name` through the pages, in order; `group` is a
/// group page of the viewer's (they created it), `file` a file page of theirs.
async fn answers(
    server: &TestServer,
    viewer: &mut Client,
    name: &str,
    group: &str,
    file: &str,
    passwords: [&str; 2],
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut note = |what: &str, text: String| out.push((what.to_owned(), text));
    let r = viewer.get(&format!("/u/{name}")).await;
    note("profile", normalized(&r, name));
    let r = viewer.get(&format!("/search?q={name}")).await;
    note("search", normalized(&r, name));
    let r = viewer
        .submit("/connections", "/connect", &[("username", name)])
        .await;
    note("connection request", normalized(&r, name));
    let page = viewer.get("/connections").await;
    let item = item_naming(&page, "section[aria-labelledby=sent]", name);
    note("request in the list", normalized_html(&item, name));
    let r = viewer
        .submit("/connections", "/connect", &[("username", name)])
        .await;
    note("second request", normalized(&r, name));
    let id = group.strip_prefix("/chat/group/").unwrap();
    // (The page offers no invitation form when none of the creator's connections can be
    // invited; the form is posted with the page's token, as a browser could.)
    let csrf = viewer.get(group).await.form_csrf("/chat/leave");
    let r = viewer
        .post_form(
            "/chat/invite",
            &[("csrf", &csrf), ("group", id), ("username", name)],
        )
        .await;
    note("group invitation", normalized(&r, name));
    let r = viewer
        .submit(file, &format!("{file}/share"), &[("username", name)])
        .await;
    note("file share", normalized(&r, name));
    let page = viewer.get(file).await;
    let item = item_naming(&page, "ul.grantees", name);
    note("share in the list", normalized_html(&item, name));
    let r = viewer.get("/users/online").await;
    note("online list", normalized(&r, name));
    let r = viewer.get(&format!("/u/{name}")).await;
    note("profile after sharing", normalized(&r, name));
    // Anonymous: registering the name, and logging in with two passwords (for the decoy,
    // the departed member's own two; for the live account, two wrong ones).
    let mut anon = server.client();
    let r = anon
        .submit(
            "/register",
            "/register",
            &[("username", name), ("password", PW), ("d_pass", DPW)],
        )
        .await;
    note("registering the name", normalized(&r, name));
    for (i, password) in passwords.into_iter().enumerate() {
        let r = anon.login(name, password).await;
        note(&format!("login {i}"), normalized(&r, name));
    }
    out
}

/// `name`'s record once the background erasure after a destruction has finished.
async fn wait_erased(server: &TestServer, name: &str) {
    let store = server.state().store.clone();
    let username = ghostcache::accounts::Username::parse(name).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, record) = ghostcache::accounts::find_user(&store, &username)
            .unwrap()
            .expect("the decoy keeps the name");
        if !record.erasing {
            return;
        }
        assert!(Instant::now() < deadline, "erasure did not finish");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decoy_answers_every_route_exactly_as_a_live_offline_stranger_does() {
    let server = TestServer::start_with(roomy).await;
    let store = server.state().store.clone();
    // A live account nobody is connected to, offline (registered, never logged in).
    let mut live = server.client();
    live.register("livexx", PW, DPW).await;
    // The member who will be destroyed, with data: a connection with a friend, messages,
    // a group with the friend, a file shared with the friend.
    let mut gone = server.client();
    gone.member("gonexx").await;
    let mut friend = server.client();
    friend.member("friend").await;
    let conversation = connect(&mut gone, &mut friend, "friend").await;
    say(&mut gone, &conversation, "a marker message").await;
    let group = group_with(&mut gone, "Gone's group", &mut friend, "friend").await;
    let upload = gone.upload("gone.bin", b"gone's file", "30").await;
    let gone_file = file_path(&upload);
    let r = gone
        .submit(
            &gone_file,
            &format!("{gone_file}/share"),
            &[("username", "friend")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    // The destruction password, typed by someone else, elsewhere.
    let mut coerced = server.client();
    assert_eq!(
        coerced.login("gonexx", DPW).await.status,
        StatusCode::FORBIDDEN
    );
    wait_erased(&server, "gonexx").await;
    assert_eq!(gone.get("/settings").await.status, StatusCode::SEE_OTHER);

    // Two askers: a stranger, and the friend (a former connection: to them the member
    // removed the connection, deleted their file and their messages and left the group).
    let mut stranger = server.client();
    stranger.member("viewer").await;
    for (who, viewer) in [
        ("stranger", &mut stranger),
        ("former connection", &mut friend),
    ] {
        let group = create_group(viewer, "Viewer's group").await;
        let upload = viewer.upload("viewer.bin", b"viewer's file", "30").await;
        assert_eq!(upload.status, StatusCode::OK);
        let (file, _) = (file_path(&upload), key_of(&upload));
        let wrong = ["not the password 1", "not the password 2"];
        let of_live = answers(&server, viewer, "livexx", &group, &file, wrong).await;
        let of_decoy = answers(&server, viewer, "gonexx", &group, &file, [PW, DPW]).await;
        assert_eq!(of_live.len(), of_decoy.len());
        // Not a comparison of two error pages: the name is there to find.
        assert!(
            of_decoy[0].1.starts_with("200"),
            "{who}: profile {}",
            of_decoy[0].1
        );
        assert!(
            of_decoy[2].1.starts_with("303"),
            "{who}: request {}",
            of_decoy[2].1
        );
        for ((what, a), (_, b)) in of_live.iter().zip(&of_decoy) {
            assert_eq!(
                a, b,
                "{who}: {what} differs between a live account and a decoy"
            );
        }
    }

    // The friend's own views lose the member as if they had removed the connection: the
    // chat is gone, the shared file is gone, and the group goes on without them.
    assert_eq!(
        friend.get(&format!("/chat/{conversation}")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(friend.get(&gone_file).await.status, StatusCode::NOT_FOUND);
    let page = friend.get(&group).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.texts(".members .name"), vec!["friend"]);
    assert!(!page.text().contains("a marker message"));
    drop(store);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweeper_frees_a_decoys_name_when_inactivity_would_have() {
    let server = TestServer::start().await;
    let mut c = server.client();
    c.member("tessa").await;
    server.clock.advance(10 * DAY);
    // Logged in again on day 10, destroyed on day 20.
    assert_eq!(c.login("tessa", PW).await.status, StatusCode::SEE_OTHER);
    server.clock.advance(10 * DAY);
    let mut coerced = server.client();
    assert_eq!(
        coerced.login("tessa", DPW).await.status,
        StatusCode::FORBIDDEN
    );
    wait_erased(&server, "tessa").await;
    // Day 40: 30 days after the last real login, not yet 31 full days: still taken.
    server.clock.advance(20 * DAY);
    let report = ghostcache::sweeper::sweep(server.state()).await.unwrap();
    assert_eq!(report.accounts_deleted, 0);
    let r = c
        .submit(
            "/register",
            "/register",
            &[("username", "tessa"), ("password", PW), ("d_pass", DPW)],
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    // Day 42: gone, and the name is free.
    server.clock.advance(2 * DAY);
    let report = ghostcache::sweeper::sweep(server.state()).await.unwrap();
    assert_eq!(report.accounts_deleted, 1);
    assert_eq!(
        ghostcache::accounts::count_members(&server.state().store).unwrap(),
        0
    );
    c.register("tessa", "a new owner's password", "a new destruction pw")
        .await;
}
