//! The project's own W3C WebDriver client, for headless Firefox (through geckodriver) and
//! headless Chromium (through chromedriver). No Selenium: `std`, `serde_json` and a
//! hand-written HTTP/1.1 client ([`http`]).
//!
//! One [`Browser`] is one session with its own driver process, profile and windows;
//! a test drives as many at once as it has members. [`Browser::launch`] starts the
//! driver, waits for it to be ready and creates the session; `Drop` (which also runs
//! while a panic unwinds) deletes the session and kills what is left by PID.
//!
//! Navigation is where browser tests go flaky: a click on a submit button returns
//! before the new document is there, and the next lookup finds an element of the page
//! being replaced. Every command here that causes a navigation waits for it: the old
//! document is gone, the new one is ready (`document.readyState`), and its URL is the
//! expected one ([`Browser::navigating`]).

mod driver;
pub mod http;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub use driver::{Config, Engine};

/// W3C web element identifier key.
pub const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// WebDriver key codes for [`Browser::keys`] and [`Browser::send_keys`].
pub const KEY_TAB: &str = "\u{E004}";
pub const KEY_ENTER: &str = "\u{E007}";

/// How long a navigation may take (over Tor, on a loaded machine) before a step fails.
pub const NAVIGATION_TIMEOUT: Duration = Duration::from_secs(90);

#[derive(Debug)]
pub enum Error {
    Io(std::io::Error),
    /// A browser or driver is not installed.
    Missing(String),
    /// Malformed HTTP or JSON from the driver.
    Protocol(String),
    /// A WebDriver error response (`{"value":{"error":..,"message":..}}`).
    WebDriver {
        status: u16,
        error: String,
        message: String,
    },
    Timeout(String),
}

impl Error {
    /// The element or document went away under us (the page was replaced).
    pub fn is_stale(&self) -> bool {
        match self {
            Error::WebDriver { error, message, .. } => {
                error == "stale element reference"
                    || error == "no such element"
                    || error == "detached shadow root"
                    || message.contains("does not belong to the document")
                    || message.contains("is not attached to the DOM")
            }
            _ => false,
        }
    }

    /// A script could not run because the document is being replaced.
    fn is_transient(&self) -> bool {
        match self {
            Error::WebDriver { error, message, .. } => {
                self.is_stale()
                    || error == "no such window"
                    || error == "no such frame"
                    || error == "javascript error" && message.contains("unloaded")
                    || message.contains("Inspected target navigated or closed")
                    || message.contains("Execution context was destroyed")
                    || message.contains("Document was unloaded")
                    || message.contains("cannot determine loading status")
            }
            _ => false,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "io: {e}"),
            Error::Missing(m) => write!(f, "missing: {m}"),
            Error::Protocol(m) => write!(f, "protocol: {m}"),
            Error::WebDriver {
                status,
                error,
                message,
            } => {
                let first = message.lines().next().unwrap_or("");
                write!(f, "webdriver {status} {error}: {first}")
            }
            Error::Timeout(m) => write!(f, "timeout: {m}"),
        }
    }
}
impl std::error::Error for Error {}
impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e)
    }
}
pub type Result<T> = std::result::Result<T, Error>;

/// A cookie as returned by `GET /session/{id}/cookie`.
#[derive(Clone, Debug, PartialEq)]
pub struct Cookie {
    pub name: String,
    pub value: String,
    pub domain: String,
    pub path: String,
    pub secure: bool,
    pub http_only: bool,
    pub same_site: String,
}

/// A web element reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Element(pub String);

impl Element {
    /// As a script argument.
    pub fn arg(&self) -> Value {
        json!({ ELEMENT_KEY: self.0 })
    }
}

/// A running browser session. Cleaned up on drop.
pub struct Browser {
    session: Option<String>,
    driver: driver::Driver,
    pub engine: Engine,
    /// Whether pages run JavaScript.
    pub javascript: bool,
    /// "eager": a document is ready once parsed (`interactive`), not only once loaded.
    eager: bool,
    /// Milliseconds spent in `launch` (driver start, session creation).
    pub launch_ms: (u128, u128),
}

impl Browser {
    pub fn launch(cfg: &Config) -> Result<Browser> {
        let t0 = Instant::now();
        let driver = driver::Driver::start(cfg)?;
        let t1 = Instant::now();
        let caps = cfg.capabilities(&driver.dir);
        let mut b = Browser {
            session: None,
            driver,
            engine: cfg.engine,
            javascript: cfg.javascript,
            eager: cfg.page_load_strategy == "eager",
            launch_ms: (0, 0),
        };
        let v = b.raw("POST", "/session", Some(&caps), Duration::from_secs(120))?;
        let sid = v["sessionId"]
            .as_str()
            .ok_or_else(|| Error::Protocol(format!("no sessionId in {v}")))?;
        b.session = Some(sid.to_string());
        b.launch_ms = ((t1 - t0).as_millis(), t1.elapsed().as_millis());
        Ok(b)
    }

    // ---- raw protocol -------------------------------------------------

    fn raw(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        timeout: Duration,
    ) -> Result<Value> {
        let (status, bytes) = http::request(self.driver.port, method, path, body, timeout)?;
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| {
            let head = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
            Error::Protocol(format!("bad JSON ({e}) status {status}: {head}"))
        })?;
        let value = v.get("value").cloned().unwrap_or(Value::Null);
        if status != 200 {
            return Err(Error::WebDriver {
                status,
                error: value["error"]
                    .as_str()
                    .unwrap_or("unknown error")
                    .to_string(),
                message: value["message"].as_str().unwrap_or("").to_string(),
            });
        }
        Ok(value)
    }

    /// Send a session command, e.g. `cmd("GET", "/url", None)`.
    pub fn cmd(&self, method: &str, suffix: &str, body: Option<&Value>) -> Result<Value> {
        let sid = self
            .session
            .as_deref()
            .ok_or_else(|| Error::Protocol("no session".into()))?;
        self.raw(
            method,
            &format!("/session/{sid}{suffix}"),
            body,
            Duration::from_secs(180),
        )
    }

    // ---- navigation ---------------------------------------------------

    /// Load `url` and wait until its document is ready at that address.
    pub fn navigate(&self, url: &str) -> Result<()> {
        self.navigating(
            |u| u == url,
            |b| {
                b.cmd("POST", "/url", Some(&json!({ "url": url })))
                    .map(|_| ())
            },
        )
    }
    pub fn current_url(&self) -> Result<String> {
        as_string(self.cmd("GET", "/url", None)?)
    }
    pub fn title(&self) -> Result<String> {
        as_string(self.cmd("GET", "/title", None)?)
    }
    pub fn page_source(&self) -> Result<String> {
        as_string(self.cmd("GET", "/source", None)?)
    }

    /// Run `action`, which makes the current document navigate, and wait (up to
    /// [`NAVIGATION_TIMEOUT`]) until the document it showed is gone, a new one is ready
    /// (`readyState` is `complete`, or `interactive` under the "eager" strategy) and its
    /// URL satisfies `expect`. Only then may the next step touch the page.
    pub fn navigating(
        &self,
        expect: impl Fn(&str) -> bool,
        action: impl FnOnce(&Browser) -> Result<()>,
    ) -> Result<()> {
        let old = self.find("html").ok();
        action(self)?;
        let deadline = Instant::now() + NAVIGATION_TIMEOUT;
        if let Some(old) = old {
            self.wait_stale(&old, NAVIGATION_TIMEOUT)
                .map_err(|e| match e {
                    Error::Timeout(_) => Error::Timeout(format!(
                        "the page did not change in {NAVIGATION_TIMEOUT:?} ({})",
                        self.describe()
                    )),
                    e => e,
                })?;
        }
        self.wait_ready(deadline.saturating_duration_since(Instant::now()))?;
        let mut url = self.current_url()?;
        while !expect(&url) {
            if Instant::now() > deadline {
                return Err(Error::Timeout(format!(
                    "navigation ended at {url} ({}), not at the expected address",
                    self.describe()
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
            self.wait_ready(deadline.saturating_duration_since(Instant::now()))?;
            url = self.current_url()?;
        }
        Ok(())
    }

    /// Wait until the current document's `readyState` says it is loaded (`complete`;
    /// under the "eager" strategy `interactive` will do).
    pub fn wait_ready(&self, timeout: Duration) -> Result<()> {
        self.wait_until(timeout, |b| {
            match b.execute("return document.readyState", &[]) {
                Ok(Value::String(s)) => Ok(s == "complete" || b.eager && s == "interactive"),
                Ok(other) => Err(Error::Protocol(format!("readyState {other}"))),
                Err(e) if e.is_transient() => Ok(false),
                Err(e) => Err(e),
            }
        })
        .map_err(|e| match e {
            Error::Timeout(_) => Error::Timeout(format!(
                "document not ready in {timeout:?} ({})",
                self.describe()
            )),
            e => e,
        })
    }

    /// The current URL, title and first error message, for failure messages.
    pub fn describe(&self) -> String {
        let doc = self
            .execute("return document.documentURI", &[])
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        if doc.starts_with("about:neterror") || doc.starts_with("chrome-error:") {
            // The browser's own error page: its address says why.
            return format!(
                "on the browser's error page {}",
                doc.split('&').next().unwrap_or("")
            );
        }
        let url = self.current_url().unwrap_or_default();
        let title = self.title().unwrap_or_default();
        let error = self
            .find(".error")
            .and_then(|e| self.text(&e))
            .unwrap_or_default();
        format!("at {url}, title {title:?}, error {error:?}")
    }

    // ---- elements -----------------------------------------------------

    /// The first element matching a locator (`using`: "css selector", "xpath",
    /// "link text", …).
    pub fn find_by(&self, using: &str, value: &str) -> Result<Element> {
        let v = self.cmd(
            "POST",
            "/element",
            Some(&json!({ "using": using, "value": value })),
        )?;
        to_element(&v)
    }
    pub fn find(&self, css: &str) -> Result<Element> {
        self.find_by("css selector", css)
    }
    pub fn find_all(&self, css: &str) -> Result<Vec<Element>> {
        let v = self.cmd(
            "POST",
            "/elements",
            Some(&json!({ "using": "css selector", "value": css })),
        )?;
        v.as_array()
            .ok_or_else(|| Error::Protocol(format!("not an array: {v}")))?
            .iter()
            .map(to_element)
            .collect()
    }
    pub fn find_in(&self, parent: &Element, css: &str) -> Result<Element> {
        let by = json!({ "using": "css selector", "value": css });
        to_element(&self.on("POST", parent, "element", Some(&by))?)
    }
    /// The focused element.
    pub fn active_element(&self) -> Result<Element> {
        to_element(&self.cmd("GET", "/element/active", None)?)
    }
    /// An element command: `what` is the part of the address after `/element/<id>/`.
    fn on(&self, method: &str, el: &Element, what: &str, body: Option<&Value>) -> Result<Value> {
        self.cmd(method, &format!("/element/{}/{what}", el.0), body)
    }
    pub fn text(&self, el: &Element) -> Result<String> {
        as_string(self.on("GET", el, "text", None)?)
    }
    pub fn tag_name(&self, el: &Element) -> Result<String> {
        as_string(self.on("GET", el, "name", None)?)
    }
    pub fn attribute(&self, el: &Element, name: &str) -> Result<Option<String>> {
        match self.on("GET", el, &format!("attribute/{name}"), None)? {
            Value::Null => Ok(None),
            v => as_string(v).map(Some),
        }
    }
    pub fn property(&self, el: &Element, name: &str) -> Result<Value> {
        self.on("GET", el, &format!("property/{name}"), None)
    }
    /// The computed value of a CSS property.
    pub fn css(&self, el: &Element, property: &str) -> Result<String> {
        as_string(self.on("GET", el, &format!("css/{property}"), None)?)
    }
    pub fn is_displayed(&self, el: &Element) -> Result<bool> {
        let v = self.on("GET", el, "displayed", None)?;
        v.as_bool()
            .ok_or_else(|| Error::Protocol(format!("not a bool: {v}")))
    }
    /// Type text into an element (use [`KEY_ENTER`] etc. for special keys).
    pub fn send_keys(&self, el: &Element, text: &str) -> Result<()> {
        let text = json!({ "text": text });
        self.on("POST", el, "value", Some(&text)).map(|_| ())
    }
    pub fn clear(&self, el: &Element) -> Result<()> {
        self.on("POST", el, "clear", Some(&json!({}))).map(|_| ())
    }
    pub fn click(&self, el: &Element) -> Result<()> {
        self.on("POST", el, "click", Some(&json!({}))).map(|_| ())
    }
    /// Find by CSS, clear, then type.
    pub fn fill(&self, css: &str, text: &str) -> Result<Element> {
        let el = self.find(css)?;
        self.clear(&el)?;
        self.send_keys(&el, text)?;
        Ok(el)
    }
    /// Click the form's submit control and wait for the navigation to an address that
    /// satisfies `expect`.
    pub fn submit(&self, form: &Element, expect: impl Fn(&str) -> bool) -> Result<()> {
        let btn = self.find_in(
            form,
            "button[type=submit], input[type=submit], button:not([type])",
        )?;
        self.navigating(expect, |b| b.click(&btn))
    }

    /// Press keys on whatever has the focus, as a person at the keyboard does: one key
    /// down and up per character (W3C actions).
    pub fn keys(&self, text: &str) -> Result<()> {
        let mut actions = Vec::new();
        for c in text.chars() {
            actions.push(json!({ "type": "keyDown", "value": c.to_string() }));
            actions.push(json!({ "type": "keyUp", "value": c.to_string() }));
        }
        self.cmd(
            "POST",
            "/actions",
            Some(&json!({ "actions": [{ "type": "key", "id": "keyboard", "actions": actions }] })),
        )?;
        self.cmd("DELETE", "/actions", None).map(|_| ())
    }

    /// Wait until `el` belongs to a document that is no longer current.
    pub fn wait_stale(&self, el: &Element, timeout: Duration) -> Result<()> {
        self.wait_until(timeout, |b| match b.on("GET", el, "name", None) {
            Ok(_) => Ok(false),
            Err(e) if e.is_stale() => Ok(true),
            Err(e) => Err(e),
        })
    }
    /// Poll `f` every 100 ms until it returns true or `timeout` passes.
    pub fn wait_until(
        &self,
        timeout: Duration,
        mut f: impl FnMut(&Browser) -> Result<bool>,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if f(self)? {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::Timeout(format!("condition not met in {timeout:?}")));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    // ---- scripts ------------------------------------------------------

    /// Run a script (WebDriver's, not the page's: it runs with page scripts off too).
    pub fn execute(&self, script: &str, args: &[Value]) -> Result<Value> {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(&json!({ "script": script, "args": args })),
        )
    }
    /// Add a cookie to the current document's site.
    pub fn add_cookie(&self, name: &str, value: &str) -> Result<()> {
        self.cmd(
            "POST",
            "/cookie",
            Some(&json!({"cookie": {"name": name, "value": value, "path": "/", "httpOnly": true}})),
        )
        .map(|_| ())
    }

    /// Run a script that calls its last argument with the result.
    pub fn execute_async(&self, script: &str, args: &[Value]) -> Result<Value> {
        self.cmd(
            "POST",
            "/execute/async",
            Some(&json!({ "script": script, "args": args })),
        )
    }
    /// Firefox only, with `chrome_access`: run `f` in the browser window's privileged
    /// context (the tab strip, the status panel, preferences), then return to the page.
    pub fn chrome<T>(&self, f: impl FnOnce(&Browser) -> Result<T>) -> Result<T> {
        if self.engine != Engine::Firefox {
            return Err(Error::Protocol("the chrome context is Firefox's".into()));
        }
        self.cmd(
            "POST",
            "/moz/context",
            Some(&json!({ "context": "chrome" })),
        )?;
        let out = f(self);
        self.cmd(
            "POST",
            "/moz/context",
            Some(&json!({ "context": "content" })),
        )?;
        out
    }

    // ---- frames and windows -------------------------------------------

    /// Make the document of this `<iframe>` the one commands act on.
    pub fn enter_frame(&self, frame: &Element) -> Result<()> {
        self.cmd("POST", "/frame", Some(&json!({ "id": frame.arg() })))
            .map(|_| ())
    }
    /// Back to the top-level document.
    pub fn leave_frames(&self) -> Result<()> {
        self.cmd("POST", "/frame", Some(&json!({ "id": null })))
            .map(|_| ())
    }
    pub fn window_handle(&self) -> Result<String> {
        as_string(self.cmd("GET", "/window", None)?)
    }
    /// Open a new tab and return its handle (the current one stays current).
    pub fn new_tab(&self) -> Result<String> {
        let v = self.cmd("POST", "/window/new", Some(&json!({ "type": "tab" })))?;
        v["handle"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| Error::Protocol(format!("no handle in {v}")))
    }
    pub fn switch_to_window(&self, handle: &str) -> Result<()> {
        self.cmd("POST", "/window", Some(&json!({ "handle": handle })))
            .map(|_| ())
    }
    /// Close the current tab (then switch to another before the next command).
    pub fn close_tab(&self) -> Result<()> {
        self.cmd("DELETE", "/window", None).map(|_| ())
    }
    /// The outer window's size.
    pub fn window_size(&self) -> Result<(u32, u32)> {
        let v = self.cmd("GET", "/window/rect", None)?;
        Ok((as_u32(&v["width"])?, as_u32(&v["height"])?))
    }
    /// Resize the outer window; returns the size the browser chose.
    pub fn set_window_size(&self, width: u32, height: u32) -> Result<(u32, u32)> {
        let v = self.cmd(
            "POST",
            "/window/rect",
            Some(&json!({ "width": width, "height": height })),
        )?;
        Ok((as_u32(&v["width"])?, as_u32(&v["height"])?))
    }

    // ---- cookies ------------------------------------------------------

    /// Cookies visible to the current document's URL (HttpOnly included).
    pub fn cookies(&self) -> Result<Vec<Cookie>> {
        to_cookies(&self.cmd("GET", "/cookie", None)?)
    }

    /// Firefox only, with `chrome_access`: the cookies of `host` in private browsing
    /// (where Tor Browser keeps everything, and which WebDriver's cookie commands do not
    /// read).
    pub fn private_cookies(&self, host: &str) -> Result<Vec<Cookie>> {
        let v = self.chrome(|b| {
            b.execute(
                "const [host] = arguments;\
                 return Services.cookies\
                   .getCookiesWithOriginAttributes(JSON.stringify({ privateBrowsingId: 1 }), host)\
                   .map(c => ({ name: c.name, value: c.value, domain: c.host, path: c.path,\
                                secure: c.isSecure, httpOnly: c.isHttpOnly,\
                                sameSite: ['None', 'Lax', 'Strict'][c.sameSite] }));",
                &[json!(host)],
            )
        })?;
        to_cookies(&v)
    }

    // ---- screenshots --------------------------------------------------

    /// Viewport screenshot as PNG bytes.
    pub fn screenshot_png(&self) -> Result<Vec<u8>> {
        let b64 = as_string(self.cmd("GET", "/screenshot", None)?)?;
        let png = http::base64_decode(&b64).map_err(Error::Protocol)?;
        if !png.starts_with(b"\x89PNG\r\n\x1a\n") {
            return Err(Error::Protocol("screenshot is not a PNG".into()));
        }
        Ok(png)
    }
    /// Save a viewport screenshot; returns its size in pixels.
    pub fn save_screenshot(&self, path: impl AsRef<Path>) -> Result<(u32, u32)> {
        let png = self.screenshot_png()?;
        std::fs::write(path, &png)?;
        png_size(&png).ok_or_else(|| Error::Protocol("PNG without a header".into()))
    }

    /// Delete the session explicitly (drop does the rest).
    pub fn quit(mut self) -> Result<()> {
        self.delete_session()
    }

    fn delete_session(&mut self) -> Result<()> {
        if let Some(sid) = self.session.take() {
            self.raw(
                "DELETE",
                &format!("/session/{sid}"),
                None,
                Duration::from_secs(30),
            )?;
        }
        Ok(())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The driver quits the browser gracefully; `driver` then kills what is left.
        let _ = self.delete_session();
    }
}

/// Width and height from a PNG's IHDR chunk.
pub fn png_size(png: &[u8]) -> Option<(u32, u32)> {
    let w = png.get(16..20)?;
    let h = png.get(20..24)?;
    Some((
        u32::from_be_bytes(w.try_into().ok()?),
        u32::from_be_bytes(h.try_into().ok()?),
    ))
}

/// A directory for test artifacts under the target directory (created, emptied).
pub fn artifacts_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("artifacts directory");
    dir
}

fn as_string(v: Value) -> Result<String> {
    match v {
        Value::String(s) => Ok(s),
        other => Err(Error::Protocol(format!("expected string, got {other}"))),
    }
}

fn as_u32(v: &Value) -> Result<u32> {
    v.as_f64()
        .map(|f| f.round() as u32)
        .ok_or_else(|| Error::Protocol(format!("expected a number, got {v}")))
}

/// Cookies in WebDriver's JSON form.
fn to_cookies(v: &Value) -> Result<Vec<Cookie>> {
    let arr = v
        .as_array()
        .ok_or_else(|| Error::Protocol(format!("not an array: {v}")))?;
    Ok(arr
        .iter()
        .map(|c| Cookie {
            name: c["name"].as_str().unwrap_or("").into(),
            value: c["value"].as_str().unwrap_or("").into(),
            domain: c["domain"].as_str().unwrap_or("").into(),
            path: c["path"].as_str().unwrap_or("").into(),
            secure: c["secure"].as_bool().unwrap_or(false),
            http_only: c["httpOnly"].as_bool().unwrap_or(false),
            same_site: c["sameSite"].as_str().unwrap_or("").into(),
        })
        .collect())
}

fn to_element(v: &Value) -> Result<Element> {
    v[ELEMENT_KEY]
        .as_str()
        .map(|s| Element(s.to_string()))
        .ok_or_else(|| Error::Protocol(format!("not an element: {v}")))
}
