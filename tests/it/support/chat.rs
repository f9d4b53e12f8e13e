//! Helpers for connections and chat: connecting two members through the pages, sending
//! messages through the form, holding a live stream open and reading it as it arrives,
//! and counting rows.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use redb::{ReadableDatabase, ReadableTableMetadata, TableDefinition};

use super::{Client, Resp};

/// The connection id in a `/chat/<id>` location (which may say what just happened in
/// its query string).
pub fn chat_id(location: &str) -> String {
    let path = location.split_once('?').map_or(location, |(p, _)| p);
    path.strip_prefix("/chat/")
        .unwrap_or_else(|| panic!("not a chat location: {location}"))
        .to_owned()
}

/// `from` asks `to_name`, `to` accepts, through the pages. Returns the connection id.
pub async fn connect(from: &mut Client, to: &mut Client, to_name: &str) -> String {
    let r = from
        .submit("/connections", "/connect", &[("username", to_name)])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "request: {}", r.text());
    let page = to.get("/connections").await;
    let action = accept_action(&page);
    let r = to.submit("/connections", &action, &[]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "accept: {}", r.text());
    chat_id(r.header("location").unwrap())
}

/// The action of the (first) accept form on a connections page.
pub fn accept_action(page: &Resp) -> String {
    form_action(page, "/connect/accept/")
}

/// The action of the first form whose action starts with `prefix`.
pub fn form_action(page: &Resp, prefix: &str) -> String {
    let sel = scraper::Selector::parse(&format!("form[action^=\"{prefix}\"]")).unwrap();
    let doc = page.html();
    doc.select(&sel)
        .next()
        .unwrap_or_else(|| panic!("no form posting to {prefix}… in {}", page.text()))
        .value()
        .attr("action")
        .unwrap()
        .to_owned()
}

/// Send a message through the chat page's form.
pub async fn say(c: &mut Client, id: &str, text: &str) -> Resp {
    let path = format!("/chat/{id}");
    c.submit(&path, &path, &[("message", text)]).await
}

/// The messages on a chat page: (sender, text, status), newest first as shown.
pub fn messages(page: &Resp) -> Vec<(String, String, String)> {
    let doc = page.html();
    let msg = scraper::Selector::parse("section.history article.msg").unwrap();
    let sender = scraper::Selector::parse(".sender").unwrap();
    let text = scraper::Selector::parse(".text").unwrap();
    doc.select(&msg)
        .map(|m| {
            (
                m.select(&sender).next().unwrap().text().collect(),
                m.select(&text)
                    .next()
                    .map(|t| t.text().collect())
                    .unwrap_or_default(),
                m.value().attr("data-status").unwrap().to_owned(),
            )
        })
        .collect()
}

/// Rows in a table of the running server's store.
pub fn rows<K: redb::Key + 'static, V: redb::Value + 'static>(
    store: &ghostcache::store::Store,
    table: TableDefinition<K, V>,
) -> u64 {
    let txn = store.database().begin_read().unwrap();
    txn.open_table(table).unwrap().len().unwrap()
}

/// A page's live frame, as a browser loads it: `src` (`…/live?after=<seq>&first=1`) is a
/// short complete document that says what will appear in it and refreshes at once into
/// the stream. Checks that document; returns the stream's address.
pub async fn frame_stream(c: &mut Client, src: &str) -> String {
    assert!(src.ends_with("&first=1"), "{src}");
    let first = c.get(src).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    assert!(first.header("transfer-encoding").is_none(), "not streamed");
    assert_eq!(first.header("x-frame-options"), Some("SAMEORIGIN"));
    let text = first.text();
    assert!(
        text.contains("New messages will appear here as they arrive"),
        "{text}"
    );
    let stream = src.strip_suffix("&first=1").unwrap().to_owned();
    assert!(
        text.contains(&format!(
            "<meta http-equiv=\"refresh\" content=\"0; url={stream}\">"
        )),
        "{text}"
    );
    assert!(text.ends_with("</html>\n"), "a complete document");
    stream
}

/// A streamed response held open and read as it arrives.
pub struct LiveStream {
    pub status: StatusCode,
    pub headers: HeaderMap,
    body: Incoming,
    /// Everything received so far.
    pub text: String,
    pub ended: bool,
}

impl LiveStream {
    /// GET `path` with `client`'s cookies and keep the response open.
    pub async fn open(addr: SocketAddr, client: &Client, path: &str) -> Self {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let mut req = Request::builder()
            .method(Method::GET)
            .uri(path)
            .header("host", HeaderValue::from_str(&client.host).unwrap())
            .body(Full::new(Bytes::new()))
            .unwrap();
        if !client.jar.is_empty() {
            let cookie: Vec<String> = client.jar.iter().map(|(k, v)| format!("{k}={v}")).collect();
            req.headers_mut()
                .insert("cookie", HeaderValue::from_str(&cookie.join("; ")).unwrap());
        }
        let resp = sender.send_request(req).await.unwrap();
        let (parts, body) = resp.into_parts();
        Self {
            status: parts.status,
            headers: parts.headers,
            body,
            text: String::new(),
            ended: false,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Read until the text contains `needle`, the body ends, or `timeout` passes. Returns
    /// how long it took when `needle` arrived.
    pub async fn wait_for(&mut self, needle: &str, timeout: Duration) -> Option<Duration> {
        let start = Instant::now();
        loop {
            if self.text.contains(needle) {
                return Some(start.elapsed());
            }
            if self.ended {
                return None;
            }
            let left = timeout.checked_sub(start.elapsed())?;
            match tokio::time::timeout(left, self.body.frame()).await {
                Err(_) => return None,
                Ok(None) => self.ended = true,
                Ok(Some(Err(_))) => self.ended = true,
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        self.text.push_str(&String::from_utf8_lossy(&data));
                    }
                }
            }
        }
    }

    /// Read until the body ends or `timeout` passes; whether it ended.
    pub async fn wait_end(&mut self, timeout: Duration) -> bool {
        let _ = self.wait_for("\u{0}never\u{0}", timeout).await;
        self.ended
    }
}

/// Every row of a table of the running server's store, as bytes: to check that a
/// refused request changed nothing at all (not only the number of rows).
pub fn dump<K: redb::Key + 'static, V: redb::Value + 'static>(
    store: &ghostcache::store::Store,
    table: TableDefinition<K, V>,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    use redb::ReadableTable;
    let txn = store.database().begin_read().unwrap();
    let t = txn.open_table(table).unwrap();
    t.iter()
        .unwrap()
        .map(|r| {
            let (k, v) = r.unwrap();
            (
                K::as_bytes(&k.value()).as_ref().to_vec(),
                V::as_bytes(&v.value()).as_ref().to_vec(),
            )
        })
        .collect()
}

/// Create a group through the list page's form; the group's page (without the notice).
pub async fn create_group(c: &mut Client, name: &str) -> String {
    let r = c
        .submit("/chat/groups", "/chat/create", &[("name", name)])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "create: {}", r.text());
    let location = r.header("location").unwrap();
    location.split('?').next().unwrap().to_owned()
}

/// `creator` makes a group named `name` and `member` (named `member_name`, one of the
/// creator's connections) joins it. Returns the group's page.
pub async fn group_with(
    creator: &mut Client,
    name: &str,
    member: &mut Client,
    member_name: &str,
) -> String {
    let group = create_group(creator, name).await;
    let id = group.strip_prefix("/chat/group/").unwrap().to_owned();
    let r = creator
        .submit(
            &group,
            "/chat/invite",
            &[("group", &id), ("username", member_name)],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "invite: {}", r.text());
    let r = member
        .submit("/chat/groups", "/chat/accept", &[("group", &id)])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "join: {}", r.text());
    group
}
