//! What the chat and group benchmarks share: settings from the environment, an HTTP/1.1
//! client on fresh loopback connections, logging in through the pages, and reading a live
//! stream for bench markers. Included by each benchmark with `mod common;`.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;

/// The password of every bench member.
pub const PASSWORD: &str = "bench password 0001";

/// The content type of a form post.
pub const FORM: &str = "application/x-www-form-urlencoded";

/// A number from the environment, or `default`.
pub fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One HTTP/1.1 request on a fresh connection.
pub async fn request(
    addr: SocketAddr,
    method: Method,
    path: &str,
    cookies: &str,
    extra: &[(&str, &str)],
    body: Option<(&str, String)>,
) -> (StatusCode, hyper::HeaderMap, Incoming) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    if !cookies.is_empty() {
        req = req.header("cookie", cookies);
    }
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let req = match body {
        Some((content_type, b)) => req
            .header("content-type", content_type)
            .body(Full::new(Bytes::from(b))),
        None => req.body(Full::new(Bytes::new())),
    }
    .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    (parts.status, parts.headers, body)
}

pub async fn text(body: Incoming) -> String {
    String::from_utf8_lossy(&body.collect().await.unwrap().to_bytes()).into_owned()
}

pub fn set_cookie(headers: &hyper::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            let pair = v.split(';').next()?;
            let (k, value) = pair.split_once('=')?;
            (k == name).then(|| value.to_owned())
        })
}

pub fn csrf_of(html: &str) -> String {
    let start = html.find("name=\"csrf\" value=\"").unwrap() + "name=\"csrf\" value=\"".len();
    let end = html[start..].find('"').unwrap();
    html[start..start + end].to_owned()
}

/// One login attempt through the form: the answer's status and headers, and the time
/// from the POST to the answer.
pub async fn login_attempt(
    addr: SocketAddr,
    name: &str,
    password: &str,
) -> (StatusCode, hyper::HeaderMap, std::time::Duration) {
    login_attempt_with(addr, name, "password", &password.replace(' ', "+")).await
}

/// [`login_attempt`] with the form's password field `field` (`password`, or
/// `password_secret` as a browser with JavaScript sends) set to `value` (form-encoded).
pub async fn login_attempt_with(
    addr: SocketAddr,
    name: &str,
    field: &str,
    value: &str,
) -> (StatusCode, hyper::HeaderMap, std::time::Duration) {
    let (_, headers, body) = request(addr, Method::GET, "/login", "", &[], None).await;
    let pre = set_cookie(&headers, "gc_pre").unwrap();
    let csrf = csrf_of(&text(body).await);
    let form = format!("csrf={csrf}&username={name}&{field}={value}");
    let started = Instant::now();
    let (status, headers, body) = request(
        addr,
        Method::POST,
        "/login",
        &format!("gc_pre={pre}"),
        &[],
        Some((FORM, form)),
    )
    .await;
    text(body).await;
    (status, headers, started.elapsed())
}

/// Log in through the pages; returns the session cookie and its CSRF token.
pub async fn login(addr: SocketAddr, name: &str) -> (String, String) {
    let (status, headers, _) = login_attempt(addr, name, PASSWORD).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "login of a bench member");
    let session = set_cookie(&headers, "gc_session").unwrap();
    let cookie = format!("gc_session={session}");
    let (_, _, body) = request(addr, Method::GET, "/connections", &cookie, &[], None).await;
    let csrf = csrf_of(&text(body).await);
    (cookie, csrf)
}

/// Read member `member`'s live stream, reporting each bench marker (`bench:<n>:`) as it
/// arrives.
pub async fn read_stream(
    member: usize,
    mut body: Incoming,
    ready: mpsc::UnboundedSender<()>,
    arrivals: mpsc::UnboundedSender<(usize, usize, Instant)>,
) {
    let mut carry = String::new();
    let mut announced = false;
    while let Some(Ok(frame)) = body.frame().await {
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let now = Instant::now();
        carry.push_str(&String::from_utf8_lossy(&data));
        if !announced && carry.contains("<div class=\"live\"") {
            announced = true;
            let _ = ready.send(());
        }
        let mut consumed = 0;
        while let Some(pos) = carry[consumed..].find("bench:") {
            let start = consumed + pos + "bench:".len();
            let Some(end) = carry[start..].find(':') else {
                break;
            };
            if let Ok(n) = carry[start..start + end].parse::<usize>() {
                let _ = arrivals.send((member, n, now));
            }
            consumed = start + end + 1;
        }
        // Keep a tail in case a marker was cut between two chunks.
        let keep_from = carry.len().saturating_sub(32).max(consumed);
        let keep_from = (keep_from..=carry.len())
            .find(|i| carry.is_char_boundary(*i))
            .unwrap_or(carry.len());
        carry.drain(..keep_from);
    }
}
