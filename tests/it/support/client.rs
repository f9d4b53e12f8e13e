use std::collections::BTreeMap;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderMap, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;

/// A browser-like client: keeps cookies, sends forms, reads pages.
pub struct Client {
    addr: SocketAddr,
    pub jar: BTreeMap<String, String>,
    /// The Host header to send (a `.onion` name in the onion tests).
    pub host: String,
    /// Reach `host` port 80 through this SOCKS5 proxy (a Tor client) instead of `addr`.
    pub socks: Option<SocketAddr>,
}

/// A whole response.
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Client {
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            jar: BTreeMap::new(),
            host: addr.to_string(),
            socks: None,
        }
    }

    /// A client that reaches `onion_host` through a Tor client's SOCKS port.
    pub fn via_tor(socks: SocketAddr, onion_host: &str) -> Self {
        Self {
            addr: socks,
            jar: BTreeMap::new(),
            host: onion_host.to_owned(),
            socks: Some(socks),
        }
    }

    /// Send a request on a new connection and read the whole response.
    pub async fn send(&mut self, mut req: Request<Full<Bytes>>) -> Resp {
        let stream = match self.socks {
            Some(socks) => super::socks::connect(socks, &self.host, 80).await.unwrap(),
            None => tokio::net::TcpStream::connect(self.addr).await.unwrap(),
        };
        self.send_on(TokioIo::new(stream), &mut req).await
    }

    /// Send over any byte stream (a SOCKS tunnel in the onion tests).
    pub async fn send_on<I>(&mut self, io: I, req: &mut Request<Full<Bytes>>) -> Resp
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let headers = req.headers_mut();
        headers.insert("host", HeaderValue::from_str(&self.host).unwrap());
        if !self.jar.is_empty() {
            let cookie: Vec<String> = self.jar.iter().map(|(k, v)| format!("{k}={v}")).collect();
            headers.insert("cookie", HeaderValue::from_str(&cookie.join("; ")).unwrap());
        }
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(conn);
        let req = std::mem::replace(req, Request::new(Full::new(Bytes::new())));
        let resp = sender.send_request(req).await.unwrap();
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        for v in parts.headers.get_all("set-cookie") {
            let v = v.to_str().unwrap();
            let (pair, attrs) = v.split_once(';').unwrap_or((v, ""));
            let (name, value) = pair.split_once('=').unwrap();
            if attrs.contains("Max-Age=0") {
                self.jar.remove(name);
            } else {
                self.jar.insert(name.to_owned(), value.to_owned());
            }
        }
        Resp {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    pub async fn get(&mut self, path: &str) -> Resp {
        let req = Request::builder()
            .method(Method::GET)
            .uri(path)
            .body(Full::new(Bytes::new()))
            .unwrap();
        self.send(req).await
    }

    /// POST an urlencoded form.
    pub async fn post_form(&mut self, path: &str, fields: &[(&str, &str)]) -> Resp {
        let body = encode_form(fields);
        let req = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        self.send(req).await
    }

    /// GET a page, take the CSRF token from its form that posts to `action`, and POST
    /// `fields` with it, as a browser submitting that form would.
    pub async fn submit(&mut self, page: &str, action: &str, fields: &[(&str, &str)]) -> Resp {
        let csrf = self.get(page).await.form_csrf(action);
        let mut all = vec![("csrf", csrf.as_str())];
        all.extend_from_slice(fields);
        self.post_form(action, &all).await
    }

    /// Register through the form; panics unless it succeeds.
    pub async fn register(&mut self, name: &str, password: &str, destruction: &str) {
        let r = self
            .submit(
                "/register",
                "/register",
                &[
                    ("username", name),
                    ("password", password),
                    ("d_pass", destruction),
                ],
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::SEE_OTHER,
            "register failed: {}",
            r.text()
        );
    }

    /// Log in through the form; returns the response.
    pub async fn login(&mut self, name: &str, password: &str) -> Resp {
        self.submit(
            "/login",
            "/login",
            &[("username", name), ("password", password)],
        )
        .await
    }

    /// Register and log in.
    pub async fn member(&mut self, name: &str) {
        self.register(name, super::PW, super::DPW).await;
        let r = self.login(name, super::PW).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "login failed");
    }

    /// The session cookie value, if any (with or without the `__Host-` prefix).
    pub fn session(&self) -> Option<&str> {
        self.jar
            .get("gc_session")
            .or_else(|| self.jar.get("__Host-gc_session"))
            .map(String::as_str)
    }
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn html(&self) -> scraper::Html {
        scraper::Html::parse_document(&self.text())
    }

    /// Values of the elements matching `selector` (their text).
    pub fn texts(&self, selector: &str) -> Vec<String> {
        let sel = scraper::Selector::parse(selector).unwrap();
        self.html()
            .select(&sel)
            .map(|e| e.text().collect::<String>())
            .collect()
    }

    /// The CSRF token of the form that posts to `action`.
    pub fn form_csrf(&self, action: &str) -> String {
        let sel = scraper::Selector::parse(&format!("form[action=\"{action}\"] input[name=csrf]"))
            .unwrap();
        let doc = self.html();
        let input = doc
            .select(&sel)
            .next()
            .unwrap_or_else(|| panic!("no form posting to {action} in {}", self.text()));
        input.value().attr("value").unwrap().to_owned()
    }

    /// The CSRF token of the first form on the page.
    pub fn csrf(&self) -> String {
        let sel = scraper::Selector::parse("input[name=csrf]").unwrap();
        let doc = self.html();
        let input = doc
            .select(&sel)
            .next()
            .unwrap_or_else(|| panic!("no csrf field in {}", self.text()));
        input.value().attr("value").unwrap().to_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body with the CSRF token value blanked, to compare two pages.
    pub fn text_without_csrf(&self) -> String {
        let text = self.text();
        match self
            .html()
            .select(&scraper::Selector::parse("input[name=csrf]").unwrap())
            .next()
        {
            Some(e) => text.replace(e.value().attr("value").unwrap(), "CSRF"),
            None => text,
        }
    }
}

/// `application/x-www-form-urlencoded`.
pub fn encode_form(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Write raw bytes to the server and read until it closes or `timeout` passes.
pub async fn raw(addr: SocketAddr, request: &[u8], timeout: std::time::Duration) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(timeout, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

// ---------------------------------------------------------------------------------------
// Multipart and streaming, for file uploads and downloads.

/// A request body of any kind (whole or streamed).
pub type AnyBody = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

/// One part of a `multipart/form-data` body.
pub enum Part {
    Text(String, String),
    File {
        name: String,
        /// The raw `filename` parameter, exactly as it goes between the quotes.
        filename: String,
        content_type: String,
        bytes: Vec<u8>,
    },
}

/// The boundary every helper here uses.
pub const BOUNDARY: &str = "----ghostcache-test-boundary-7d1c";

/// The header block of one part.
pub fn part_head(name: &str, filename: Option<&str>, content_type: Option<&str>) -> Vec<u8> {
    let mut head = format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"");
    if let Some(f) = filename {
        head.push_str("; filename=\"");
        head.push_str(f);
        head.push('"');
    }
    head.push_str("\r\n");
    if let Some(ct) = content_type {
        head.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    head.push_str("\r\n");
    head.into_bytes()
}

/// A whole multipart body.
pub fn multipart(parts: &[Part]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        match p {
            Part::Text(name, value) => {
                out.extend(part_head(name, None, None));
                out.extend_from_slice(value.as_bytes());
            }
            Part::File {
                name,
                filename,
                content_type,
                bytes,
            } => {
                out.extend(part_head(name, Some(filename), Some(content_type)));
                out.extend_from_slice(bytes);
            }
        }
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    out
}

/// A response whose body has not been read yet.
pub struct StreamingResp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: hyper::body::Incoming,
}

impl Client {
    fn prepare<B>(&self, req: &mut Request<B>) {
        let headers = req.headers_mut();
        headers.insert("host", HeaderValue::from_str(&self.host).unwrap());
        if !self.jar.is_empty() {
            let cookie: Vec<String> = self.jar.iter().map(|(k, v)| format!("{k}={v}")).collect();
            headers.insert("cookie", HeaderValue::from_str(&cookie.join("; ")).unwrap());
        }
    }

    /// Send any body; hand back the response with its body unread.
    pub async fn send_streaming(&mut self, mut req: Request<AnyBody>) -> StreamingResp {
        self.prepare(&mut req);
        let stream = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let resp = sender.send_request(req).await.unwrap();
        let (parts, body) = resp.into_parts();
        StreamingResp {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    /// Send any body and read the whole response.
    pub async fn send_any(&mut self, req: Request<AnyBody>) -> Resp {
        let r = self.send_streaming(req).await;
        let body = r.body.collect().await.unwrap().to_bytes();
        Resp {
            status: r.status,
            headers: r.headers,
            body,
        }
    }

    /// POST a multipart body as is.
    pub async fn post_multipart(&mut self, path: &str, body: Vec<u8>) -> Resp {
        let req = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(
                "content-type",
                format!("multipart/form-data; boundary={BOUNDARY}"),
            )
            .body(whole(body))
            .unwrap();
        self.send_any(req).await
    }

    /// Upload a file through the upload form, as a browser does: `csrf`, `expiry_days`,
    /// then `file`.
    pub async fn upload(&mut self, filename: &str, bytes: &[u8], expiry_days: &str) -> Resp {
        let csrf = self.get("/file/upload").await.form_csrf("/file/upload");
        let body = multipart(&[
            Part::Text("csrf".into(), csrf),
            Part::Text("expiry_days".into(), expiry_days.into()),
            Part::File {
                name: "file".into(),
                filename: filename.into(),
                content_type: "application/octet-stream".into(),
                bytes: bytes.to_vec(),
            },
        ]);
        self.post_multipart("/file/upload", body).await
    }
}

/// A whole body as [`AnyBody`].
pub fn whole(bytes: Vec<u8>) -> AnyBody {
    Full::new(Bytes::from(bytes))
        .map_err(|never| match never {})
        .boxed()
}

/// A streamed body: `head`, then `size` bytes produced by `fill(offset, buf)` in pieces of
/// 64 KiB, then `tail`. Nothing is held beyond one piece.
pub fn generated(
    head: Vec<u8>,
    size: u64,
    fill: impl Fn(u64, &mut [u8]) + Send + Sync + 'static,
    tail: Vec<u8>,
) -> AnyBody {
    use futures_util::StreamExt;
    const PIECE: u64 = 64 * 1024;
    let pieces = futures_util::stream::iter(0..size.div_ceil(PIECE)).map(move |i| {
        let offset = i * PIECE;
        let len = PIECE.min(size - offset) as usize;
        let mut buf = vec![0u8; len];
        fill(offset, &mut buf);
        Ok::<_, std::io::Error>(Bytes::from(buf))
    });
    let all = futures_util::stream::iter([Ok(Bytes::from(head))])
        .chain(pieces)
        .chain(futures_util::stream::iter([Ok(Bytes::from(tail))]))
        .map(|r| r.map(hyper::body::Frame::data));
    BodyExt::boxed(http_body_util::StreamBody::new(all))
}
