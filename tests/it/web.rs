//! The web layer: exact security headers on every kind of response, and hostile input
//! that must get a clear error and change nothing.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, StatusCode};

use crate::support::client::raw;
use crate::support::{DPW, PW, Resp, TestServer};

const EXPECTED: [(&str, &str); 7] = [
    (
        "content-security-policy",
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("cache-control", "no-store"),
    ("x-frame-options", "DENY"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
];

/// Every security header with its exact value, and no header beyond the ones a response
/// of this kind needs.
fn assert_exact_headers(r: &Resp, extra_allowed: &[&str]) {
    assert_exact_headers_csp(r, extra_allowed, EXPECTED[0].1);
}

/// [`assert_exact_headers`] with another content security policy (a page with scripts).
fn assert_exact_headers_csp(r: &Resp, extra_allowed: &[&str], csp: &str) {
    for (name, value) in EXPECTED {
        let value = if name == "content-security-policy" {
            csp
        } else {
            value
        };
        let got: Vec<&str> = r
            .headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(got, vec![value], "header {name} on a {}", r.status);
    }
    let names: BTreeSet<&str> = r.headers.keys().map(|k| k.as_str()).collect();
    let mut allowed: BTreeSet<&str> = EXPECTED.iter().map(|(n, _)| *n).collect();
    allowed.extend(["content-type", "content-length"]);
    allowed.extend(extra_allowed);
    assert!(
        names.is_subset(&allowed),
        "unexpected headers {:?} on a {}",
        names.difference(&allowed).collect::<Vec<_>>(),
        r.status
    );
    assert!(!names.contains("server"));
    assert!(!names.contains("date"));
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_security_headers_on_200_404_405_413() {
    let server = TestServer::start().await;
    let mut c = server.client();

    let ok = c.get("/").await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_exact_headers(&ok, &[]);

    let missing = c.get("/no/such/page").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_exact_headers(&missing, &[]);
    assert_eq!(missing.texts("h1"), vec!["Not found"]);

    let req = Request::builder()
        .method(Method::PUT)
        .uri("/")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let put = c.send(req).await;
    assert_eq!(put.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_exact_headers(&put, &["allow"]);
    assert_eq!(put.header("allow"), Some("GET, HEAD, POST"));
    let get_logout = c.get("/logout").await;
    assert_eq!(get_logout.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(get_logout.header("allow"), Some("POST"));

    let big = "a=".to_owned() + &"x".repeat(70 * 1024);
    let req = Request::builder()
        .method(Method::POST)
        .uri("/login")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(big)))
        .unwrap();
    let too_large = c.send(req).await;
    assert_eq!(too_large.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_exact_headers(&too_large, &[]);

    // Every page (and this error) renders in the one layout with the LAN banner.
    for r in [&ok, &missing, &put, &too_large] {
        assert!(r.text().contains("Not anonymous: served without Tor"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_form_page_sets_only_the_pre_session_cookie() {
    let server = TestServer::start().await;
    let mut c = server.client();
    let r = c.get("/login").await;
    // The login page carries the login-secret script (`login_secret`), hence its policy.
    assert_exact_headers_csp(
        &r,
        &["set-cookie"],
        ghostcache::web::response::CSP_WITH_SCRIPTS,
    );
    let cookies: Vec<&str> = r
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(cookies.len(), 1);
    assert!(cookies[0].starts_with("gc_pre="));
    assert!(cookies[0].ends_with("; Path=/; HttpOnly; SameSite=Strict"));
    // A plain page sets no cookie at all.
    let mut fresh = server.client();
    assert!(fresh.get("/").await.headers.get("set-cookie").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_assets_are_content_hashed_and_cacheable() {
    let server = TestServer::start().await;
    let mut c = server.client();
    let page = c.get("/").await;
    let href = page
        .html()
        .select(&scraper::Selector::parse("link[rel=stylesheet]").unwrap())
        .next()
        .unwrap()
        .value()
        .attr("href")
        .unwrap()
        .to_owned();
    assert!(href.starts_with("/static/style.") && href.ends_with(".css"));
    let css = c.get(&href).await;
    assert_eq!(css.status, StatusCode::OK);
    assert_eq!(css.header("content-type"), Some("text/css; charset=utf-8"));
    assert_eq!(
        css.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    assert_eq!(css.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(
        c.get("/static/style.0000000000000000.css").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_headers_get_a_rendered_431() {
    let server = TestServer::start().await;
    let mut req = String::from("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for i in 0..100 {
        req.push_str(&format!("X-Filler-{i}: y\r\n"));
    }
    req.push_str("Connection: close\r\n\r\n");
    let resp = raw(server.addr, req.as_bytes(), Duration::from_secs(5)).await;
    assert!(resp.starts_with("HTTP/1.1 431 "), "{resp}");
    assert!(resp.contains("Too many headers"));
    assert!(resp.contains("content-security-policy: default-src 'none'"));
    // 100 headers in all is fine.
    let mut req = String::from("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for i in 0..98 {
        req.push_str(&format!("X-Filler-{i}: y\r\n"));
    }
    req.push_str("Connection: close\r\n\r\n");
    let resp = raw(server.addr, req.as_bytes(), Duration::from_secs(5)).await;
    assert!(resp.starts_with("HTTP/1.1 200 "), "{resp}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_are_refused_with_and_without_content_length() {
    let server = TestServer::start().await;
    // Declared too large: refused before reading.
    let req = "POST /register HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100000000\r\nConnection: close\r\n\r\nabc";
    let resp = raw(server.addr, req.as_bytes(), Duration::from_secs(5)).await;
    assert!(resp.starts_with("HTTP/1.1 413 "), "{resp}");
    // Chunked, growing past the limit.
    let chunk = "x".repeat(16 * 1024);
    let mut req = String::from(
        "POST /register HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
    );
    for _ in 0..8 {
        req.push_str(&format!("{:x}\r\n{chunk}\r\n", chunk.len()));
    }
    req.push_str("0\r\n\r\n");
    let resp = raw(server.addr, req.as_bytes(), Duration::from_secs(5)).await;
    assert!(resp.starts_with("HTTP/1.1 413 "), "{resp}");
    assert_eq!(
        ghostcache::accounts::count_members(&server.state().store).unwrap(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_forms_bad_utf8_and_wrong_content_types() {
    let server = TestServer::start().await;
    let mut c = server.client();
    let csrf = c.get("/register").await.csrf();
    let post_raw = |body: Vec<u8>, ctype: &'static str| {
        Request::builder()
            .method(Method::POST)
            .uri("/register")
            .header("content-type", ctype)
            .body(Full::new(Bytes::from(body)))
            .unwrap()
    };
    let form = "application/x-www-form-urlencoded";
    let bad_escape = format!(
        "csrf={csrf}&username=%ZZbob&password={}&d_pass={}",
        "p".repeat(12),
        "d".repeat(12)
    );
    let r = c.send(post_raw(bad_escape.into_bytes(), form)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.text().contains("not correctly encoded"));

    let mut bad_utf8 = format!("csrf={csrf}&username=bob%FF&password=").into_bytes();
    bad_utf8.extend_from_slice(b"\xff\xfe\xfdpassword1234&d_pass=destroy12345");
    let r = c.send(post_raw(bad_utf8, form)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    let r = c
        .send(post_raw(
            b"{\"username\":\"bob\"}".to_vec(),
            "application/json",
        ))
        .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let r = c
        .send(post_raw(
            b"garbage".to_vec(),
            "multipart/form-data; boundary=x",
        ))
        .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // Bad UTF-8 in the query string of a page.
    let r = c.get("/login?registered=%FF").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    // Nothing was created, and the server still answers normally.
    assert_eq!(
        ghostcache::accounts::count_members(&server.state().store).unwrap(),
        0
    );
    c.register("bob", PW, DPW).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_sending_headers_slowly_is_cut_off() {
    let server = TestServer::start_with(|c| c.server.header_read_timeout_secs = 2).await;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let request =
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let started = Instant::now();
    let mut cut_off = false;
    // One byte per second; bounded by the request length (about a minute at most).
    for &b in request.iter() {
        if s.write_all(&[b]).await.is_err() {
            cut_off = true;
            break;
        }
        let mut buf = [0u8; 512];
        match tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                cut_off = true;
                break;
            }
            Ok(Ok(_)) => {
                // Hyper may answer 408 before closing; keep reading until close.
                let _ =
                    tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut Vec::new()))
                        .await;
                cut_off = true;
                break;
            }
            Err(_) => {}
        }
    }
    let elapsed = started.elapsed();
    assert!(cut_off, "the connection was never closed");
    assert!(
        elapsed < Duration::from_secs(request.len() as u64 - 10),
        "cut off only after {elapsed:?}"
    );
    // The server is still fine.
    assert_eq!(server.client().get("/").await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_requests_get_headers_only() {
    let server = TestServer::start().await;
    let req = "HEAD / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    let resp = raw(server.addr, req.as_bytes(), Duration::from_secs(5)).await;
    assert!(resp.starts_with("HTTP/1.1 200 "), "{resp}");
    assert!(!resp.contains("<html"), "no body for HEAD");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_strings_are_escaped_on_the_page() {
    let server = TestServer::start().await;
    let mut c = server.client();
    let hostile = "\"<script>\" & ' \u{202e}";
    let r = c
        .submit(
            "/register",
            "/register",
            &[("username", hostile), ("password", PW), ("d_pass", DPW)],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let text = r.text();
    assert!(!text.contains("<script>"), "raw tag echoed");
    // It is echoed back as the value of the field, escaped, and parses back to itself.
    let value = r
        .html()
        .select(&scraper::Selector::parse("input[name=username]").unwrap())
        .next()
        .unwrap()
        .value()
        .attr("value")
        .unwrap()
        .to_owned();
    assert_eq!(value, hostile);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_cookies_and_paths_change_nothing() {
    let server = TestServer::start().await;
    let mut c = server.client();
    c.jar.insert("gc_session".into(), "A".repeat(4000));
    c.jar.insert("gc_pre".into(), "%%%".into());
    assert_eq!(c.get("/settings").await.status, StatusCode::SEE_OTHER);
    for path in [
        "/../../etc/passwd",
        "//",
        "/settings/",
        "/static/../Cargo.toml",
        "/%00",
        "/register%2F",
    ] {
        let r = c.get(path).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
    }
    let r = c
        .post_form("/login", &[("username", "x"), ("password", "y")])
        .await;
    assert_eq!(
        r.status,
        StatusCode::FORBIDDEN,
        "no valid pre-session: CSRF failure"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plain_http_door_refuses_foreign_host_names() {
    let server = TestServer::start().await;
    for host in ["evil.example", "evil.example:8080", "127.0.0.1.nip.io"] {
        let req = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        let resp = raw(server.addr, req.as_bytes(), Duration::from_secs(5)).await;
        assert!(resp.starts_with("HTTP/1.1 421 "), "{host}: {resp}");
        assert!(resp.contains("does not answer to that name"));
    }
    for host in ["localhost", "127.0.0.1:1", "[::1]:80"] {
        let req = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        let resp = raw(server.addr, req.as_bytes(), Duration::from_secs(5)).await;
        assert!(resp.starts_with("HTTP/1.1 200 "), "{host}: {resp}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetching_the_stylesheet_does_not_keep_a_session_alive() {
    let server = TestServer::start().await;
    let mut c = server.client();
    c.member("stylish").await;
    let page = c.get("/settings").await;
    let href = page
        .html()
        .select(&scraper::Selector::parse("link[rel=stylesheet]").unwrap())
        .next()
        .unwrap()
        .value()
        .attr("href")
        .unwrap()
        .to_owned();
    server.clock.advance(10 * 60);
    assert_eq!(c.get(&href).await.status, StatusCode::OK);
    server.clock.advance(6 * 60);
    // 16 minutes since the last page: the stylesheet request did not count as activity.
    assert_eq!(c.get("/settings").await.status, StatusCode::SEE_OTHER);
}
