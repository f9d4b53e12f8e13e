//! A real browser for the few things only a browser can show (CSS animations): headless
//! Chromium driven through chromedriver's WebDriver protocol over loopback. The pages
//! under test run no script; WebDriver's own script only reads computed styles.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

/// A chromedriver process and one browser session in it. Both end on drop.
pub struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: String,
}

async fn call(addr: SocketAddr, method: Method, path: &str, body: Option<Value>) -> Value {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string())
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap_or(Value::Null)
}

impl Browser {
    /// Start chromedriver on a free loopback port and open a headless session.
    pub async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian: chromium-driver; scripts/test.sh installs it)");
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let caps = json!({"capabilities": {"alwaysMatch": {"goog:chromeOptions": {
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
        }}}});
        let v = call(addr, Method::POST, "/session", Some(caps)).await;
        let session = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {v}"))
            .to_owned();
        Self {
            driver,
            addr,
            session,
        }
    }

    pub async fn goto(&self, url: &str) {
        let path = format!("/session/{}/url", self.session);
        call(self.addr, Method::POST, &path, Some(json!({ "url": url }))).await;
    }

    /// Set a cookie for the current page's origin.
    pub async fn cookie(&self, name: &str, value: &str) {
        let path = format!("/session/{}/cookie", self.session);
        let cookie =
            json!({"cookie": {"name": name, "value": value, "path": "/", "httpOnly": true}});
        call(self.addr, Method::POST, &path, Some(cookie)).await;
    }

    /// Run a WebDriver script in the page and return its value.
    pub async fn eval(&self, script: &str) -> Value {
        let path = format!("/session/{}/execute/sync", self.session);
        let v = call(
            self.addr,
            Method::POST,
            &path,
            Some(json!({ "script": script, "args": [] })),
        )
        .await;
        v["value"].clone()
    }
}

impl Browser {
    /// End the session (the browser quits), then the driver.
    pub async fn close(self) {
        let path = format!("/session/{}", self.session);
        call(self.addr, Method::DELETE, &path, None).await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The session's browser goes with its driver.
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
