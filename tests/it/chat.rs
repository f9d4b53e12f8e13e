//! Chat over HTTP: the live stream (held open and read as it arrives), online status,
//! hostile messages, the JSON endpoints, signatures, and what is left in the file at rest.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, StatusCode};

use crate::connections::member_id;
use crate::support::chat::{LiveStream, connect, messages, rows, say};
use crate::support::{Client, PW, TestServer};
use ghostcache::config::Config;
use ghostcache::store::tables::{MESSAGES, UNDELIVERED};

pub(crate) fn roomy(c: &mut Config) {
    c.rate_limits.connection_requests_per_minute = 1000;
    c.rate_limits.searches_per_minute = 1000;
    c.rate_limits.messages_per_minute = 1000;
}

/// Two connected members and their connection id.
pub(crate) async fn pair(server: &TestServer, a: &str, b: &str) -> (Client, Client, String) {
    let mut ca = server.client();
    ca.member(a).await;
    let mut cb = server.client();
    cb.member(b).await;
    let id = connect(&mut ca, &mut cb, b).await;
    (ca, cb, id)
}

/// The iframe address on a chat page.
fn live_src(page: &crate::support::Resp) -> String {
    let sel = scraper::Selector::parse("iframe.live-frame").unwrap();
    page.html()
        .select(&sel)
        .next()
        .unwrap_or_else(|| panic!("no live frame in {}", page.text()))
        .value()
        .attr("src")
        .unwrap()
        .to_owned()
}

async fn online_names(c: &mut Client) -> Vec<String> {
    let req = Request::builder()
        .method(Method::GET)
        .uri("/users/online")
        .header("accept", "application/json")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let r = c.send(req).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    v["online"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["username"].as_str().unwrap().to_owned())
        .collect()
}

/// Poll `check` until it holds or `secs` pass.
async fn eventually<F, Fut>(secs: u64, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if check().await {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_reaches_an_open_live_stream_within_a_second() {
    let server = TestServer::start_with(roomy).await;
    let (mut alice, mut bob, id) = pair(&server, "alice", "bob").await;
    say(&mut alice, &id, "already there").await;

    // The chat page frames the stream, under a CSP that allows exactly that.
    let page = bob.get(&format!("/chat/{id}")).await;
    assert_eq!(page.status, StatusCode::OK);
    let csp = page.header("content-security-policy").unwrap();
    assert!(csp.contains("frame-src 'self'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(!csp.contains("script-src"), "{csp}");
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    let src = live_src(&page);
    assert_eq!(src, format!("/chat/{id}/live?after=1&first=1"));
    let src = crate::support::chat::frame_stream(&mut bob, &src).await;
    assert_eq!(src, format!("/chat/{id}/live?after=1"));
    // Other pages keep the strict policy.
    let other = bob.get("/connections").await;
    assert!(
        !other
            .header("content-security-policy")
            .unwrap()
            .contains("frame-src")
    );

    let mut live = LiveStream::open(server.addr, &bob, &src).await;
    assert_eq!(live.status, StatusCode::OK);
    assert_eq!(live.header("transfer-encoding"), Some("chunked"));
    assert_eq!(
        live.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(live.header("x-frame-options"), Some("SAMEORIGIN"));
    let csp = live.header("content-security-policy").unwrap().to_owned();
    assert!(csp.contains("frame-ancestors 'self'"), "{csp}");
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert_eq!(live.header("cache-control"), Some("no-store"));
    assert!(
        live.wait_for("<div class=\"live\"", Duration::from_secs(5))
            .await
            .is_some()
    );
    assert!(
        !live.text.contains("already there"),
        "the page already shows it"
    );

    // Now alice sends while bob's stream is open.
    let started = std::time::Instant::now();
    let r = say(&mut alice, &id, "live marker 4711 <b>bold</b>").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let arrived = live
        .wait_for("live marker 4711", Duration::from_secs(5))
        .await
        .expect("message arrived in the stream");
    let total = started.elapsed();
    eprintln!("live stream: send → arrival {total:?} (in the stream after {arrived:?})");
    assert!(
        total < Duration::from_secs(1),
        "send → arrival took {total:?} (stream waited {arrived:?})"
    );
    assert!(
        live.text
            .contains("live marker 4711 &lt;b&gt;bold&lt;/b&gt;")
    );
    assert!(live.text.contains("data-status=\"verified\""));
    assert!(!live.text.contains("<b>bold"));
    // Bob's own messages from elsewhere (another tab, JSON) appear too.
    say(&mut bob, &id, "from bob's other tab").await;
    assert!(
        live.wait_for("from bob", Duration::from_secs(1))
            .await
            .is_some()
    );
    // Shown in the stream means delivered.
    assert!(
        eventually(2, || async {
            rows(&server.state().store, UNDELIVERED) == 1
        })
        .await,
        "stream delivery marks messages delivered (left: bob's, unread by alice)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_keeps_alive_and_reloads_itself_at_the_end_of_its_lifetime() {
    let server = TestServer::start_with(|c| {
        roomy(c);
        c.chat.stream_keepalive_secs = 1;
        c.chat.stream_lifetime_secs = 10;
    })
    .await;
    let (mut alice, bob, id) = pair(&server, "carl", "dora").await;
    let src = format!("/chat/{id}/live?after=0");
    let mut live = LiveStream::open(server.addr, &bob, &src).await;
    assert!(
        live.wait_for("<!-- keep-alive -->", Duration::from_secs(3))
            .await
            .is_some()
    );
    say(&mut alice, &id, "during the first life").await;
    assert!(
        live.wait_for("during the first life", Duration::from_secs(2))
            .await
            .is_some()
    );
    assert!(
        live.wait_end(Duration::from_secs(15)).await,
        "the stream ends"
    );
    assert!(
        live.text
            .trim_end()
            .ends_with("<meta http-equiv=\"refresh\" content=\"0\"></body></html>"),
        "{}",
        &live.text[live.text.len().saturating_sub(200)..]
    );
    // The reload starts from the same point, so nothing shown disappears.
    let mut again = LiveStream::open(server.addr, &bob, &src).await;
    assert!(
        again
            .wait_for("during the first life", Duration::from_secs(2))
            .await
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_status_follows_login_logout_and_stream_close() {
    let server = TestServer::start_with(|c| {
        roomy(c);
        c.chat.stream_keepalive_secs = 1;
    })
    .await;
    let (mut alice, mut bob, id) = pair(&server, "erik", "fay").await;
    let mut outsider = server.client();
    outsider.member("gus").await;

    // Logged in (the login itself counts): online, for connections only.
    assert_eq!(online_names(&mut alice).await, vec!["fay"]);
    assert_eq!(online_names(&mut bob).await, vec!["erik"]);
    assert!(online_names(&mut outsider).await.is_empty());
    let page = alice.get("/connections").await;
    assert!(page.text().contains("badge online"));

    // Logout: offline at once.
    bob.submit("/", "/logout", &[]).await;
    assert!(online_names(&mut alice).await.is_empty());
    // Login: online again.
    assert_eq!(bob.login("fay", PW).await.status, StatusCode::SEE_OTHER);
    assert_eq!(online_names(&mut alice).await, vec!["fay"]);

    // An open live stream keeps a member online past the page-load window...
    let live = LiveStream::open(server.addr, &bob, &format!("/chat/{id}/live")).await;
    assert_eq!(live.status, StatusCode::OK);
    server.clock.advance(300);
    assert_eq!(online_names(&mut alice).await, vec!["fay"]);
    assert_eq!(server.state().hub.open_streams(&hub_id(&server, "fay")), 1);
    // ...and closing the last one makes them offline.
    drop(live);
    assert!(
        online_becomes(&mut alice, &[], 5).await,
        "offline after the stream closed"
    );
    assert_eq!(server.state().hub.open_streams(&hub_id(&server, "fay")), 0);
    // A page load brings them back.
    bob.get("/connections").await;
    assert_eq!(online_names(&mut alice).await, vec!["fay"]);

    // An open chat shows the other member's changes as they happen.
    let mut watching = LiveStream::open(server.addr, &alice, &format!("/chat/{id}/live")).await;
    bob.submit("/", "/logout", &[]).await;
    assert!(
        watching
            .wait_for("fay is now offline.", Duration::from_secs(3))
            .await
            .is_some(),
        "{}",
        watching.text
    );
}

/// Poll the online list until it is `expected` or `secs` pass.
async fn online_becomes(c: &mut Client, expected: &[&str], secs: u64) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if online_names(c).await == expected {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn hub_id(server: &TestServer, name: &str) -> ghostcache::store::Id {
    ghostcache::crypto::b64url_decode_exact(&member_id(&server.state().store, name)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_ends_with_its_session_or_its_connection() {
    let server = TestServer::start_with(|c| {
        roomy(c);
        c.chat.stream_keepalive_secs = 1;
    })
    .await;
    let (mut alice, mut bob, id) = pair(&server, "hana", "ivo").await;
    let src = format!("/chat/{id}/live");

    // Logout.
    let mut live = LiveStream::open(server.addr, &bob, &src).await;
    assert!(
        live.wait_for("<div class=\"live\"", Duration::from_secs(2))
            .await
            .is_some()
    );
    bob.submit("/", "/logout", &[]).await;
    assert!(live.wait_end(Duration::from_secs(2)).await);
    assert!(live.text.contains("Your session has ended."));
    assert!(
        !live.text.contains("http-equiv=\"refresh\""),
        "no reload loop"
    );

    // Idle expiry: the stream does not keep the session alive.
    assert_eq!(bob.login("ivo", PW).await.status, StatusCode::SEE_OTHER);
    let mut live = LiveStream::open(server.addr, &bob, &src).await;
    assert!(
        live.wait_for("<!-- keep-alive -->", Duration::from_secs(3))
            .await
            .is_some()
    );
    server.clock.advance(15 * 60);
    assert!(live.wait_end(Duration::from_secs(3)).await);
    assert!(live.text.contains("Your session has ended."));
    assert_eq!(
        bob.get("/connections").await.status,
        StatusCode::SEE_OTHER,
        "logged out"
    );
    assert_eq!(alice.login("hana", PW).await.status, StatusCode::SEE_OTHER);

    // The connection removed by the other side.
    let mut live = LiveStream::open(server.addr, &alice, &src).await;
    assert!(
        live.wait_for("<div class=\"live\"", Duration::from_secs(2))
            .await
            .is_some()
    );
    assert_eq!(bob.login("ivo", PW).await.status, StatusCode::SEE_OTHER);
    let r = bob
        .submit("/connections", &format!("/connect/remove/{id}"), &[])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(live.wait_end(Duration::from_secs(2)).await);
    assert!(live.text.contains("This connection no longer exists."));

    // Not logged in: a framable "log in" document, not a stream.
    let mut anon = server.client();
    let r = anon.get(&src).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.header("x-frame-options"), Some("SAMEORIGIN"));
    assert!(r.text().contains("target=\"_top\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_streams_per_member_are_bounded() {
    let server = TestServer::start_with(|c| {
        roomy(c);
        c.chat.max_streams_per_member = 2;
    })
    .await;
    let (_alice, bob, id) = pair(&server, "jan", "kim").await;
    let src = format!("/chat/{id}/live");
    let one = LiveStream::open(server.addr, &bob, &src).await;
    let two = LiveStream::open(server.addr, &bob, &src).await;
    assert_eq!((one.status, two.status), (StatusCode::OK, StatusCode::OK));
    let mut three = LiveStream::open(server.addr, &bob, &src).await;
    assert_eq!(three.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(three.wait_end(Duration::from_secs(2)).await);
    assert!(three.text.contains("Too many open chat windows"));
    drop(one);
    let kim = hub_id(&server, "kim");
    assert!(
        eventually(5, || async { server.state().hub.open_streams(&kim) == 1 }).await,
        "a closed stream frees its slot"
    );
    let four = LiveStream::open(server.addr, &bob, &src).await;
    assert_eq!(four.status, StatusCode::OK);
    // Bad `after`: a clear error.
    let mut bob2 = server.client();
    bob2.jar = bob.jar.clone();
    let r = bob2.get(&format!("{src}?after=-1")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.header("x-frame-options"), Some("SAMEORIGIN"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_of_a_conversation_is_readable_at_rest() {
    use ghostcache::connections::keys::{SigningKey, open_side};
    let server = TestServer::start_with(roomy).await;
    let (mut alice, mut bob, id) = pair(&server, "lena", "max").await;
    let markers = [
        "Marker-Plain-8c1f2e",
        "Marker-Reply-77a0d3",
        "Zeichen-äöü-マーカー",
    ];
    say(&mut alice, &id, markers[0]).await;
    say(&mut bob, &id, markers[1]).await;
    say(&mut alice, &id, markers[2]).await;
    // Bob has not read the last one: it waits, still sealed.
    let store = server.state().store.clone();
    let conn = ghostcache::crypto::b64url_decode_exact::<16>(&id).unwrap();
    let now = server.clock.now();
    let mut secrets_bytes: Vec<Vec<u8>> = Vec::new();
    for (c, name) in [(&alice, "lena"), (&bob, "max")] {
        let session = server
            .state()
            .sessions
            .get(c.session().unwrap(), now)
            .unwrap();
        let me = hub_id(&server, name);
        let record = ghostcache::connections::side_of(&store, &conn, &me)
            .unwrap()
            .unwrap()
            .record;
        let side = open_side(&store, &conn, &me, &session.data_key, &record)
            .unwrap()
            .unwrap();
        secrets_bytes.push(side.chat_key.expose().to_vec());
        secrets_bytes.push(side.chat_key.to_base64().as_bytes().to_vec());
        let SigningKey::RsaPss(k) = side.signing_key().unwrap() else {
            panic!("RSA-PSS is the default scheme");
        };
        let der = k.to_der().unwrap().to_vec();
        // Slices of the private parts (the first ~300 bytes hold the public modulus).
        let mid = der.len() / 2;
        secrets_bytes.push(der[mid..mid + 32].to_vec());
        secrets_bytes.push(der[der.len() - 64..der.len() - 32].to_vec());
        let user = ghostcache::accounts::load_user(&store, &me)
            .unwrap()
            .unwrap();
        let delivery = session
            .data_key
            .open(&user.delivery_private_sealed)
            .unwrap();
        let mid = delivery.len() / 2;
        secrets_bytes.push(delivery[mid..mid + 32].to_vec());
        secrets_bytes.push(session.data_key.expose().to_vec());
    }
    assert_eq!(rows(&store, MESSAGES), 3);
    drop(store);
    let dir = server.stop().await;
    let bytes = std::fs::read(dir.path().join(ghostcache::store::DB_FILE)).unwrap();
    let contains = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    for m in markers {
        assert!(!contains(m.as_bytes()), "message text at rest");
        assert!(
            !contains(&m.as_bytes()[..12]),
            "part of a message text at rest"
        );
    }
    for (i, s) in secrets_bytes.iter().enumerate() {
        assert!(!contains(s), "secret #{i} at rest");
    }
    assert!(contains(b"lena"), "sanity: the scan sees the file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_messages_are_refused_or_escaped() {
    let server = TestServer::start_with(roomy).await;
    let (mut alice, mut bob, id) = pair(&server, "nils", "olga").await;
    let store = server.state().store.clone();
    let path = format!("/chat/{id}");

    // HTML is text: stored, shown escaped, never markup.
    let html = "<script>alert('x')</script><img src=x onerror=alert(1)> & \"' \u{202e}evil";
    assert_eq!(
        say(&mut alice, &id, html).await.status,
        StatusCode::SEE_OTHER
    );
    let page = bob.get(&path).await;
    assert!(!page.text().contains("<script>alert"));
    assert!(!page.text().contains("<img src=x"));
    assert!(
        page.text()
            .contains("&lt;script&gt;alert('x')&lt;/script&gt;")
    );
    assert_eq!(messages(&page)[0].1, html, "the text round-trips exactly");
    assert_eq!(rows(&store, MESSAGES), 1);

    let csrf = alice.get(&path).await.form_csrf(&path);
    // 1 MB: refused before it is read (413), nothing stored.
    let big = "x".repeat(1024 * 1024);
    let r = alice
        .post_form(&path, &[("csrf", &csrf), ("message", &big)])
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    // Over the message limit but within the form limit: the page says why.
    let long = "y".repeat(5000);
    let r = alice
        .post_form(&path, &[("csrf", &csrf), ("message", &long)])
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(r.text().contains("longer than 4096 bytes"));
    assert!(!r.text().contains(&long), "not echoed");
    // Empty, blank and control characters.
    for (text, why) in [
        ("", "empty"),
        ("   \r\n\t ", "empty"),
        ("nul\u{0}byte", "control characters"),
        ("bell\u{7}", "control characters"),
    ] {
        let r = alice
            .post_form(&path, &[("csrf", &csrf), ("message", text)])
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{why}");
        assert!(r.text().contains(why), "{why}: {}", r.text());
    }
    // Invalid UTF-8, percent-encoded and raw.
    for body in [
        format!("csrf={csrf}&message=%FF%FEabc").into_bytes(),
        [format!("csrf={csrf}&message=").as_bytes(), b"\xff\xfe"].concat(),
    ] {
        let req = Request::builder()
            .method(Method::POST)
            .uri(&path)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        assert_eq!(alice.send(req).await.status, StatusCode::BAD_REQUEST);
    }
    // The same through JSON.
    let bob_id = member_id(&store, "olga");
    for body in [
        [
            br#"{"receiver_id":""#.as_slice(),
            bob_id.as_bytes(),
            b"\",\"message\":\"\xff\xfe\"}",
        ]
        .concat(),
        format!(r#"{{"receiver_id":"{bob_id}","message":""}}"#).into_bytes(),
        format!(
            r#"{{"receiver_id":"{bob_id}","message":"{}"}}"#,
            "z".repeat(5000)
        )
        .into_bytes(),
        format!(r#"{{"receiver_id":"{bob_id}","message":"hi","extra":1}}"#).into_bytes(),
        b"not json".to_vec(),
        b"[]".to_vec(),
    ] {
        let req = Request::builder()
            .method(Method::POST)
            .uri("/chat/send")
            .header("content-type", "application/json")
            .header("x-csrf-token", &csrf)
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let r = alice.send(req).await;
        assert!(
            r.status == StatusCode::BAD_REQUEST || r.status == StatusCode::PAYLOAD_TOO_LARGE,
            "{}",
            r.status
        );
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert!(v["error"].is_string());
    }
    assert_eq!(
        rows(&store, MESSAGES),
        1,
        "only the HTML message was stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_send_poll_and_online() {
    let server = TestServer::start_with(roomy).await;
    let (mut alice, mut bob, id) = pair(&server, "pam", "quentin").await;
    let mut carol = server.client();
    carol.member("ruth").await;
    let store = server.state().store.clone();
    let bob_id = member_id(&store, "quentin");
    let alice_id = member_id(&store, "pam");
    let csrf = alice.get("/connections").await.form_csrf("/connect");
    let send = |to: &str, text: &str, ct: &str| {
        Request::builder()
            .method(Method::POST)
            .uri("/chat/send")
            .header("content-type", ct)
            .header("x-csrf-token", &csrf)
            .body(Full::new(Bytes::from(format!(
                r#"{{"receiver_id":"{to}","message":"{text}"}}"#
            ))))
            .unwrap()
    };
    let r = alice
        .send(send(&bob_id, "json hello", "application/json"))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["connection_id"], id.as_str());
    assert_eq!(v["seq"], 1);
    // Media type and receiver checks.
    let r = alice.send(send(&bob_id, "x", "text/plain")).await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let carol_id = member_id(&store, "ruth");
    for to in [
        carol_id.as_str(),
        "AAAAAAAAAAAAAAAAAAAAAA",
        "nonsense",
        alice_id.as_str(),
    ] {
        let r = alice.send(send(to, "x", "application/json")).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{to}");
        assert_eq!(
            r.header("content-type"),
            Some("application/json; charset=utf-8")
        );
    }
    // The form variant of /chat/send goes back to the chat page.
    let r = alice
        .post_form(
            "/chat/send",
            &[
                ("csrf", &csrf),
                ("receiver_id", &bob_id),
                ("message", "form hello"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(
        r.header("location"),
        Some(format!("/chat/{id}?sent=1").as_str())
    );

    // Poll: undelivered messages, once.
    let r = bob.get("/chat/poll").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let list = v["messages"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["text"], "json hello");
    assert_eq!(list[0]["signature"], "verified");
    assert_eq!(list[0]["sender"], "pam");
    assert_eq!(list[0]["sender_id"], alice_id.as_str());
    assert_eq!(list[0]["connection_id"], id.as_str());
    assert_eq!(list[1]["text"], "form hello");
    assert_eq!(v["more"], false);
    let v: serde_json::Value = serde_json::from_slice(&bob.get("/chat/poll").await.body).unwrap();
    assert!(
        v["messages"].as_array().unwrap().is_empty(),
        "marked delivered"
    );
    // Reading the chat page also delivers; a HEAD, whose answer has no body, must not,
    // so HEAD is refused wherever reading has that effect.
    say(&mut alice, &id, "seen on the page").await;
    let undelivered = rows(&store, UNDELIVERED);
    assert!(undelivered >= 1);
    for path in [
        "/chat/poll".to_owned(),
        format!("/chat/{id}"),
        format!("/chat/{id}/live"),
    ] {
        let head = Request::builder()
            .method(Method::HEAD)
            .uri(&path)
            .body(Full::new(Bytes::new()))
            .unwrap();
        let r = bob.send(head).await;
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "HEAD {path}");
        assert!(r.header("allow").unwrap().starts_with("GET"), "{path}");
        assert!(!r.header("allow").unwrap().contains("HEAD"), "{path}");
    }
    assert_eq!(
        rows(&store, UNDELIVERED),
        undelivered,
        "the HEADs delivered nothing"
    );
    bob.get(&format!("/chat/{id}")).await;
    let v: serde_json::Value = serde_json::from_slice(&bob.get("/chat/poll").await.body).unwrap();
    assert!(v["messages"].as_array().unwrap().is_empty());
    // Alice's own messages are not hers to poll.
    let v: serde_json::Value = serde_json::from_slice(&alice.get("/chat/poll").await.body).unwrap();
    assert!(v["messages"].as_array().unwrap().is_empty());

    // Online list, HTML and JSON.
    assert_eq!(online_names(&mut alice).await, vec!["quentin"]);
    let page = alice.get("/users/online").await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.texts("ul.people .name"), vec!["quentin"]);
    // Not logged in.
    let mut anon = server.client();
    let r = anon.get("/chat/poll").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert!(v["error"].as_str().unwrap().contains("Log in"));
    assert_eq!(
        anon.get("/users/online").await.status,
        StatusCode::SEE_OTHER
    );
    // Wrong methods.
    assert_eq!(
        alice.get("/chat/send").await.status,
        StatusCode::METHOD_NOT_ALLOWED
    );
    let r = alice.post_form("/chat/poll", &[("csrf", &csrf)]).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.header("allow"), Some("GET"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_or_replayed_message_is_never_shown_as_verified() {
    use ghostcache::chat::MessageRecord;
    use ghostcache::connections::keys::Signature;
    use ghostcache::store::Record;
    let server = TestServer::start_with(roomy).await;
    let (mut alice, mut bob, id) = pair(&server, "sara", "tom").await;
    let mut carol = server.client();
    carol.member("ulla").await;
    let other = connect(&mut alice, &mut carol, "ulla").await;
    for text in ["first words", "second words", "third words"] {
        say(&mut alice, &id, text).await;
    }
    let store = server.state().store.clone();
    let conn = ghostcache::crypto::b64url_decode_exact::<16>(&id).unwrap();
    let other_conn = ghostcache::crypto::b64url_decode_exact::<16>(&other).unwrap();
    let load = |seq: u64| {
        let txn = store.read().unwrap();
        let t = txn.open_table(MESSAGES).unwrap();
        MessageRecord::decode(t.get((conn, seq)).unwrap().unwrap().value()).unwrap()
    };
    let (mut first, mut second, third) = (load(1), load(2), load(3));
    // 1: a flipped signature bit.
    let Signature::RsaPss(sig) = &mut first.signature else {
        panic!("RSA-PSS is the default scheme");
    };
    sig[10] ^= 1;
    // 2: the ciphertext of another message under the same key.
    second.ciphertext = third.ciphertext.clone();
    {
        let txn = store.write().unwrap();
        {
            let mut t = txn.open_table(MESSAGES).unwrap();
            t.insert((conn, 1), first.encode().unwrap().as_slice())
                .unwrap();
            t.insert((conn, 2), second.encode().unwrap().as_slice())
                .unwrap();
            // 3: replayed, intact, into another conversation.
            t.insert((other_conn, 99), third.encode().unwrap().as_slice())
                .unwrap();
        }
        txn.commit().unwrap();
    }
    let page = bob.get(&format!("/chat/{id}")).await;
    let shown = messages(&page);
    assert_eq!(
        shown,
        vec![
            ("sara".into(), "third words".into(), "verified".into()),
            ("sara".into(), String::new(), "bad-signature".into()),
            ("sara".into(), String::new(), "bad-signature".into()),
        ]
    );
    assert!(!page.text().contains("first words"));
    assert!(!page.text().contains("second words"));
    assert!(page.text().contains("signature did not verify"));
    let replayed = carol.get(&format!("/chat/{other}")).await;
    assert_eq!(
        messages(&replayed),
        vec![("sara".to_owned(), String::new(), "bad-signature".to_owned())]
    );
}
