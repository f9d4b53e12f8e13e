//! Bad input to the end-to-end routes and the WebSocket: refused or closed with a clear
//! error, nothing stored, nothing delivered. And: scripts only where they are used.

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use hyper::StatusCode;
use serde_json::{Value, json};
use sha2::Digest as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{members, roomy};
use crate::support::chat::rows as table_rows;
use crate::support::{Client, TestServer};
use ghostcache::store::tables::{E2E_CONVERSATIONS, E2E_MEMBER_KEYS, E2E_MESSAGES};

/// Rows of the end-to-end message table.
pub fn rows(store: &ghostcache::store::Store) -> u64 {
    table_rows(store, E2E_MESSAGES)
}

/// A minimal WebSocket client (text frames, masked as browsers send them).
pub struct Ws {
    stream: TcpStream,
    buf: Vec<u8>,
}

/// What the server answered a handshake: its status line, or a socket.
pub enum Opened {
    Refused(String),
    Socket(Ws),
}

impl Ws {
    /// Open `/e2e/ws` with the session cookie and (if `origin`) this site's Origin.
    pub async fn open(addr: SocketAddr, session: &str, origin: bool) -> Result<Ws, String> {
        let origin = if origin {
            format!("Origin: http://{addr}\r\n")
        } else {
            String::new()
        };
        match Self::handshake(addr, session, &origin).await {
            Opened::Socket(ws) => Ok(ws),
            Opened::Refused(s) => Err(s),
        }
    }

    pub async fn handshake(addr: SocketAddr, session: &str, extra: &str) -> Opened {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let req = format!(
            "GET /e2e/ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Cookie: gc_session={session}\r\n{extra}\r\n"
        );
        stream.write_all(req.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "closed during the handshake");
            buf.extend_from_slice(&chunk[..n]);
            if let Some(i) = crate::support::record::find(&buf, b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let status = head.lines().next().unwrap().to_owned();
        if !status.contains(" 101 ") {
            return Opened::Refused(status);
        }
        let accept = base64::engine::general_purpose::STANDARD.encode(sha1::Sha1::digest(
            b"dGhlIHNhbXBsZSBub25jZQ==258EAFA5-E914-47DA-95CA-C5AB0DC85B11",
        ));
        assert!(head.contains(&accept), "Sec-WebSocket-Accept: {head}");
        assert!(
            head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
            "RFC 6455 example"
        );
        Opened::Socket(Ws {
            stream,
            buf: buf[head_end..].to_vec(),
        })
    }

    pub async fn send_text(&mut self, text: &str) {
        self.send_frame(0x1, text.as_bytes()).await;
    }

    pub async fn send_frame(&mut self, opcode: u8, payload: &[u8]) {
        let mut f = vec![0x80 | opcode];
        let len = payload.len();
        if len < 126 {
            f.push(0x80 | len as u8);
        } else if len < 65536 {
            f.push(0x80 | 126);
            f.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            f.push(0x80 | 127);
            f.extend_from_slice(&(len as u64).to_be_bytes());
        }
        let mask = [1u8, 2, 3, 4];
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        // The server may close before reading it all: that is an answer too.
        let _ = self.stream.write_all(&f).await;
    }

    /// The next frame: (opcode, payload); `None` when the connection ended.
    pub async fn next(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            if self.buf.len() >= 2 {
                let op = self.buf[0] & 0x0f;
                let mut len = usize::from(self.buf[1] & 0x7f);
                let mut at = 2;
                if len == 126 && self.buf.len() >= 4 {
                    len = usize::from(u16::from_be_bytes([self.buf[2], self.buf[3]]));
                    at = 4;
                }
                if self.buf.len() >= at + len && !(len == 126 && at == 2) {
                    let payload = self.buf[at..at + len].to_vec();
                    self.buf.drain(..at + len);
                    return Some((op, payload));
                }
            }
            let mut chunk = [0u8; 4096];
            let n =
                match tokio::time::timeout(Duration::from_secs(20), self.stream.read(&mut chunk))
                    .await
                {
                    Ok(Ok(n)) => n,
                    _ => return None,
                };
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// The next JSON text frame whose `t` is `kind` (skipping others, pings included).
    pub async fn next_json_of(&mut self, kind: &str) -> Value {
        loop {
            let (op, payload) = self.next().await.expect("socket ended");
            if op == 0x1 {
                let v: Value = serde_json::from_slice(&payload).unwrap();
                if v["t"] == kind {
                    return v;
                }
            }
            assert_ne!(op, 0x8, "closed: {:?}", close_of(&payload));
        }
    }

    /// Read until the close frame: its code and reason.
    pub async fn closed(&mut self) -> (u16, String) {
        loop {
            match self.next().await {
                Some((0x8, payload)) => return close_of(&payload),
                Some(_) => continue,
                None => panic!("ended without a close frame"),
            }
        }
    }
}

fn close_of(payload: &[u8]) -> (u16, String) {
    let code = u16::from_be_bytes([payload[0], payload[1]]);
    (code, String::from_utf8_lossy(&payload[2..]).into_owned())
}

fn send_frame_json(conv: &str) -> String {
    json!({
        "t": "send", "ref": 1, "conv": conv, "generation": 1, "epoch": 1, "client_seq": 1,
        "sent_at": 0, "expires_at": null, "iv": "AAAAAAAAAAAAAAAA", "ct": "AAAAAAAAAAAAAAAAAAAAAA",
        "sig": "AAAA"
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_websocket_checks_origin_session_and_frames() {
    let server = TestServer::start_with(roomy).await;
    let mut cs = members(&server, &["alice"]).await;
    let a = &mut cs[0];
    let session = a.session().unwrap().to_owned();

    // Missing or foreign Origin, no session: refused before any upgrade.
    for (who, extra) in [
        (session.as_str(), String::new()),
        (
            session.as_str(),
            "Origin: http://evil.example\r\n".to_owned(),
        ),
        (session.as_str(), "Origin: null\r\n".to_owned()),
        ("nobody", format!("Origin: http://{}\r\n", server.addr)),
    ] {
        match Ws::handshake(server.addr, who, &extra).await {
            Opened::Refused(status) => assert!(status.contains(" 403 "), "{status}"),
            Opened::Socket(_) => panic!("upgraded with {extra:?}"),
        }
    }

    // Malformed: closed with 1007.
    let mut ws = Ws::open(server.addr, &session, true).await.unwrap();
    let hello = ws.next_json_of("hello").await;
    assert!(hello["now"].is_i64());
    ws.send_text("{not json").await;
    assert_eq!(ws.closed().await, (1007, "malformed frame".into()));
    // Binary: 1003.
    let mut ws = Ws::open(server.addr, &session, true).await.unwrap();
    ws.send_frame(0x2, b"\x00\x01").await;
    assert_eq!(ws.closed().await.0, 1003);
    // Oversized: 1009.
    let mut ws = Ws::open(server.addr, &session, true).await.unwrap();
    ws.send_text(&"x".repeat(40 * 1024)).await;
    assert_eq!(ws.closed().await, (1009, "frame too large".into()));
    // An unknown conversation: a clear error, the socket stays; too frequent: 1008.
    let mut ws = Ws::open(server.addr, &session, true).await.unwrap();
    ws.send_text(&send_frame_json("AAAAAAAAAAAAAAAAAAAAAA"))
        .await;
    let e = ws.next_json_of("error").await;
    assert_eq!(e["ref"], 1);
    assert!(!e["error"].as_str().unwrap().is_empty());
    for _ in 0..40 {
        ws.send_text(&send_frame_json("AAAAAAAAAAAAAAAAAAAAAA"))
            .await;
    }
    assert_eq!(ws.closed().await, (1008, "too many frames".into()));
    assert_eq!(rows(&server.state().store), 0, "nothing stored");

    // Logout closes an open socket at once.
    let mut ws = Ws::open(server.addr, &session, true).await.unwrap();
    ws.next_json_of("hello").await;
    let r = a.submit("/settings", "/logout", &[]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(ws.closed().await, (1000, "session ended".into()));
}

pub async fn post_json(
    c: &mut Client,
    path: &str,
    body: &str,
    csrf: Option<&str>,
    ctype: &str,
) -> (StatusCode, Value) {
    let mut req = hyper::Request::post(path)
        .header("content-type", ctype)
        .body(http_body_util::Full::new(bytes::Bytes::from(
            body.to_owned(),
        )))
        .unwrap();
    if let Some(t) = csrf {
        req.headers_mut().insert("x-csrf-token", t.parse().unwrap());
    }
    let r = c.send(req).await;
    let v = serde_json::from_str(&r.text()).unwrap_or(Value::Null);
    (r.status, v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_to_end_routes_refuse_bad_input_and_change_nothing() {
    let server = TestServer::start_with(roomy).await;
    let mut cs = members(&server, &["alice"]).await;
    let a = &mut cs[0];
    let csrf = super::csrf(a).await;
    let keys = r#"{"generation":1,"scheme":"rsa-pss","enc_public":"AAAA","sign_public":"AAAA","proof":"AAAA","ring":"v1.a.b"}"#;
    let (s, _) = post_json(a, "/e2e/api/keys", keys, None, "application/json").await;
    assert_eq!(s, StatusCode::FORBIDDEN, "no CSRF token");
    let (s, _) = post_json(a, "/e2e/api/keys", keys, Some(&csrf), "text/plain").await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (s, v) = post_json(
        a,
        "/e2e/api/keys",
        "{\"generation\":",
        Some(&csrf),
        "application/json",
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v["error"].is_string());
    let (s, v) = post_json(a, "/e2e/api/keys", keys, Some(&csrf), "application/json").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "not a key: {v}");
    assert!(v["error"].as_str().unwrap().contains("3072"), "{v}");
    let big = format!(
        "{{\"generation\":1,\"ring\":\"{}\"}}",
        "a".repeat(300 * 1024)
    );
    let (s, _) = post_json(a, "/e2e/api/keys", &big, Some(&csrf), "application/json").await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    let (s, v) = post_json(
        a,
        "/e2e/api/propose",
        "{\"connection\":\"AAAAAAAAAAAAAAAAAAAAAA\"}",
        Some(&csrf),
        "application/json",
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    let (s, _) = post_json(
        a,
        "/e2e/api/group/create",
        "{}",
        Some(&csrf),
        "application/json",
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "a group needs end-to-end keys");
    for path in [
        "/e2e/api/conv/AAAAAAAAAAAAAAAAAAAAAA",
        "/e2e/c/AAAAAAAAAAAAAAAAAAAAAA",
        "/e2e/c/not-an-id",
    ] {
        assert_eq!(a.get(path).await.status, StatusCode::NOT_FOUND, "{path}");
    }
    for t in [E2E_MEMBER_KEYS, E2E_CONVERSATIONS] {
        assert_eq!(table_rows(&server.state().store, t), 0, "nothing stored");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_only_on_end_to_end_pages_with_integrity_and_their_policy() {
    let server = TestServer::start_with(roomy).await;
    let mut cs = members(&server, &["alice"]).await;
    let a = &mut cs[0];
    let mut anon = server.client();
    // (The password forms — login, registration, settings — carry the login-secret
    // script: `login_secret::the_password_forms_carry_the_derivation_script_and_its_policy`.)
    for (member, path) in [
        (false, "/"),
        (true, "/"),
        (true, "/connections"),
        (true, "/files"),
        (true, "/chat/groups"),
        (true, "/settings/signature"),
    ] {
        let c: &mut Client = if member { &mut *a } else { &mut anon };
        let r = c.get(path).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert!(!r.text().contains("<script"), "{path} serves a script");
        let csp = r.header("content-security-policy").unwrap();
        assert!(
            !csp.contains("script-src") && !csp.contains("connect-src"),
            "{path}: {csp}"
        );
    }
    for path in ["/e2e", "/e2e/setup"] {
        let r = a.get(path).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(
            r.header("content-security-policy").unwrap(),
            ghostcache::web::response::CSP_WITH_SCRIPTS
        );
        assert!(
            ghostcache::web::response::CSP_WITH_SCRIPTS
                .ends_with("script-src 'self'; connect-src 'self'")
        );
        let html = r.html();
        let sel = scraper::Selector::parse("script").unwrap();
        let scripts: Vec<_> = html.select(&sel).collect();
        assert_eq!(scripts.len(), 2, "{path}");
        for s in scripts {
            assert!(s.inner_html().is_empty(), "no inline script");
            let src = s.value().attr("src").unwrap().to_owned();
            let integrity = s.value().attr("integrity").unwrap().to_owned();
            assert!(src.starts_with("/static/js/"), "{src}");
            let body = anon.get(&src).await;
            assert_eq!(body.status, StatusCode::OK);
            assert_eq!(
                body.header("content-type"),
                Some("text/javascript; charset=utf-8")
            );
            let digest = base64::engine::general_purpose::STANDARD
                .encode(sha2::Sha384::digest(body.text().as_bytes()));
            assert_eq!(integrity, format!("sha384-{digest}"));
            assert!(!body.text().contains("eval("), "no eval");
        }
        // Without JavaScript the page says what it needs, and shows no ciphertext.
        let notice = r.texts("#e2e-needs-js h2");
        assert_eq!(notice, vec!["This page needs JavaScript".to_owned()]);
    }
}

#[test]
fn the_readme_publishes_the_hashes_of_the_scripts_served() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for s in ghostcache::web::assets::scripts() {
        let line = format!("| `{}` | `{}` |", s.asset.path, s.sha256_hex);
        assert!(
            readme.contains(&line),
            "README lacks {line}: run `ghostcache script-hashes`"
        );
    }
}
