//! The live frame's first document (`…/live?after=<seq>&first=1`), over HTTP: it is
//! complete at once (so that the page around it finishes loading and the browser stops
//! showing it as loading), says what will appear in the frame, and refreshes into the
//! stream; it answers everyone else exactly as the stream does, and opens no stream.

use hyper::StatusCode;

use crate::groups::{add, create_group};
use crate::support::chat::{connect, frame_stream};
use crate::support::{Client, TestServer};

async fn member(server: &TestServer, name: &str) -> Client {
    let mut c = server.client();
    c.member(name).await;
    c
}

/// A group of `creator` with `invitee` in it; its id.
async fn group_of_two(creator: &mut Client, invitee: &mut Client, name: &str) -> String {
    let id = create_group(creator, "Frame").await;
    add(creator, &id, invitee, name).await;
    id
}

/// The `src` of the live frame on the page at `path`.
async fn frame_src(c: &mut Client, path: &str) -> String {
    let page = c.get(path).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text());
    let sel = scraper::Selector::parse("iframe.live-frame").unwrap();
    page.html()
        .select(&sel)
        .next()
        .unwrap_or_else(|| panic!("no live frame on {path}"))
        .value()
        .attr("src")
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_frames_first_document_ends_at_once_and_opens_the_stream() {
    let server = TestServer::start().await;
    let mut ann = member(&server, "ann").await;
    let mut bo = member(&server, "bob").await;
    let chat = connect(&mut ann, &mut bo, "bob").await;
    let group = group_of_two(&mut ann, &mut bo, "bob").await;

    for page in [format!("/chat/{chat}"), format!("/chat/group/{group}")] {
        let src = frame_src(&mut bo, &page).await;
        let after = src
            .strip_prefix(&format!("{page}/live?after="))
            .and_then(|rest| rest.strip_suffix("&first=1"))
            .unwrap_or_else(|| panic!("{src}"));
        assert!(after.parse::<u64>().is_ok(), "{src}");
        // Complete, not streamed; refreshes into the stream at once.
        let stream = frame_stream(&mut bo, &src).await;
        assert_eq!(stream, format!("{page}/live?after={after}"));
        // It holds no stream open (the stream's own count).
        let bo_id = ghostcache::crypto::b64url_decode_exact(&crate::connections::member_id(
            &server.state().store,
            "bob",
        ))
        .unwrap();
        assert_eq!(server.state().hub.open_streams(&bo_id), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_frames_first_document_answers_others_as_the_stream_does() {
    let server = TestServer::start().await;
    let mut ann = member(&server, "ann").await;
    let mut bo = member(&server, "bob").await;
    let mut cy = member(&server, "cyd").await;
    let chat = connect(&mut ann, &mut bo, "bob").await;
    let group = group_of_two(&mut ann, &mut bo, "bob").await;

    for page in [format!("/chat/{chat}"), format!("/chat/group/{group}")] {
        let first = format!("{page}/live?after=0&first=1");
        let stream = format!("{page}/live?after=0");
        // A member who is not in the conversation: the stream's not-found document.
        let a = cy.get(&first).await;
        let b = cy.get(&stream).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND);
        assert_eq!((a.status, a.text()), (b.status, b.text()));
        assert_eq!(a.header("x-frame-options"), Some("SAMEORIGIN"));
        // Not logged in: the framable "log in" document, as the stream's.
        let mut anon = server.client();
        let a = anon.get(&first).await;
        let b = anon.get(&stream).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN);
        assert_eq!((a.status, a.text()), (b.status, b.text()));
        // A malformed address: 400, framable.
        for bad in [
            format!("{page}/live?after=0&first=2"),
            format!("{page}/live?after=0&first="),
            format!("{page}/live?after=x&first=1"),
        ] {
            let r = bo.get(&bad).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
            assert_eq!(r.header("x-frame-options"), Some("SAMEORIGIN"), "{bad}");
            assert!(!r.text().contains("http-equiv=\"refresh\""), "{bad}");
        }
    }
    // A group id that does not exist, for a member: the same not-found.
    let unknown = format!("/chat/group/{}/live?after=0&first=1", "A".repeat(22));
    assert_eq!(bo.get(&unknown).await.status, StatusCode::NOT_FOUND);
}
