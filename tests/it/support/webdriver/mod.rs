//! Minimal W3C WebDriver client for headless Chromium through chromedriver.
//!
//! Only `std` + `serde_json`. The HTTP/1.1 client is hand-written over
//! `std::net::TcpStream` (one request per connection, `Connection: close`;
//! understands `Content-Length`, `chunked` and read-to-EOF bodies).
//!
//! Lifecycle: [`Browser::launch`] spawns `chromedriver --port=<free port>`,
//! waits for `/status` to be ready, then creates a session whose
//! `goog:chromeOptions` point at `/usr/bin/chromium` with a fresh
//! `--user-data-dir`. `Drop` (which also runs while a panic unwinds) deletes
//! the session (chromedriver then quits Chromium), kills chromedriver by its
//! PID, kills by PID any process still carrying our unique `--user-data-dir`,
//! and removes the profile directory.
//!
//! JavaScript is disabled for page content with the content-settings
//! preference `profile.managed_default_content_settings.javascript = 2` and
//! `--blink-settings=scriptEnabled=false`. WebDriver commands keep
//! working (chromedriver runs its atoms through DevTools, which neither blocks).

use serde_json::{Value, json};
use std::fmt;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// W3C web element identifier key.
pub const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Flags this machine's Chromium needs (headless as root, closed network).
pub const BASE_ARGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];

#[derive(Debug)]
pub enum Error {
    Io(std::io::Error),
    /// Malformed HTTP or JSON from chromedriver.
    Protocol(String),
    /// A WebDriver error response (`{"value":{"error":..,"message":..}}`).
    WebDriver {
        status: u16,
        error: String,
        message: String,
    },
    Timeout(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "io: {e}"),
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

#[derive(Clone, Debug)]
pub struct Config {
    pub chromium: PathBuf,
    pub chromedriver: PathBuf,
    pub window_size: (u32, u32),
    /// Extra Chromium switches, e.g. `--proxy-server=socks5://127.0.0.1:9050`.
    pub extra_args: Vec<String>,
    /// Extra Chromium preferences merged into `goog:chromeOptions.prefs`
    /// (dotted keys, e.g. `"credentials_enable_service": false`).
    pub extra_prefs: serde_json::Map<String, Value>,
    pub page_load_timeout_ms: u64,
    /// W3C `pageLoadStrategy`: "normal" waits for `load`, which a page with a live
    /// stream frame never reaches; "eager" waits for the document only.
    pub page_load_strategy: &'static str,
    /// W3C `acceptInsecureCerts` (self-signed TLS in tests).
    pub accept_insecure_certs: bool,
    /// Keep the profile dir (and chromedriver log) after drop, for debugging.
    pub keep_profile: bool,
    /// Pass `--verbose` to chromedriver (log goes next to the profile dir).
    pub verbose_driver_log: bool,
    /// Let pages run JavaScript (off by default: Tor Browser at "Safest").
    pub javascript: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            chromium: std::env::var_os("GC_CHROMIUM")
                .map(PathBuf::from)
                .unwrap_or_else(|| "/usr/bin/chromium".into()),
            chromedriver: std::env::var_os("GC_CHROMEDRIVER")
                .map(PathBuf::from)
                .unwrap_or_else(|| "/usr/bin/chromedriver".into()),
            window_size: (1024, 768),
            extra_args: Vec::new(),
            extra_prefs: serde_json::Map::new(),
            page_load_timeout_ms: 30_000,
            page_load_strategy: "normal",
            accept_insecure_certs: false,
            keep_profile: std::env::var_os("GC_KEEP_PROFILE").is_some(),
            verbose_driver_log: false,
            javascript: false,
        }
    }
}

impl Config {
    /// The full `POST /session` body.
    pub fn capabilities(&self, profile_dir: &Path) -> Value {
        let mut args: Vec<String> = BASE_ARGS.iter().map(|s| s.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile_dir.display()));
        args.push(format!(
            "--window-size={},{}",
            self.window_size.0, self.window_size.1
        ));
        // JavaScript off for page content, twice over: Blink's setting and the content
        // setting (WebDriver commands still work; they run through DevTools).
        if !self.javascript {
            args.push("--blink-settings=scriptEnabled=false".into());
        }
        args.extend(self.extra_args.iter().cloned());
        let mut opts = json!({ "binary": self.chromium.to_string_lossy(), "args": args });
        let mut prefs = self.extra_prefs.clone();
        if !self.javascript {
            prefs.insert(
                "profile.managed_default_content_settings.javascript".into(),
                json!(2),
            );
        }
        if !prefs.is_empty() {
            opts["prefs"] = Value::Object(prefs);
        }
        json!({
            "capabilities": {
                "alwaysMatch": {
                    "pageLoadStrategy": self.page_load_strategy,
                    "acceptInsecureCerts": self.accept_insecure_certs,
                    "timeouts": { "pageLoad": self.page_load_timeout_ms, "script": 10_000, "implicit": 0 },
                    "goog:chromeOptions": opts
                }
            }
        })
    }
}

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

/// A running chromedriver + Chromium session. Cleaned up on drop.
pub struct Browser {
    driver: Option<Child>,
    port: u16,
    session: Option<String>,
    profile_dir: PathBuf,
    log_path: PathBuf,
    keep_profile: bool,
    /// Milliseconds spent in `launch` (chromedriver start, session creation).
    pub launch_ms: (u128, u128),
}

impl Browser {
    pub fn launch(cfg: &Config) -> Result<Browser> {
        let profile_dir = unique_temp_dir("gc-wd-profile")?;
        let log_path = profile_dir.with_extension("chromedriver.log");
        let port = free_port()?;
        let t0 = Instant::now();
        let mut cmd = Command::new(&cfg.chromedriver);
        // Chromium's crashpad handler daemonizes (not our descendant) and keeps
        // its database under $XDG_CONFIG_HOME/chromium; point that into our
        // temp dir so it is ours alone and findable by path on cleanup.
        let xdg = profile_dir.join("xdg");
        cmd.env("XDG_CONFIG_HOME", xdg.join("config"))
            .env("XDG_CACHE_HOME", xdg.join("cache"))
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log_path.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if cfg.verbose_driver_log {
            cmd.arg("--verbose");
        }
        let child = cmd.spawn()?;
        let mut b = Browser {
            driver: Some(child),
            port,
            session: None,
            profile_dir,
            log_path,
            keep_profile: cfg.keep_profile,
            launch_ms: (0, 0),
        };
        // Wait for chromedriver to listen and report ready.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok((200, body)) = http(port, "GET", "/status", None, Duration::from_secs(2)) {
                let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                if v["value"]["ready"] == Value::Bool(true) {
                    break;
                }
            }
            if let Some(st) = b.driver.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                return Err(Error::Protocol(format!("chromedriver exited early: {st}")));
            }
            if Instant::now() > deadline {
                return Err(Error::Timeout(
                    "chromedriver /status not ready in 20s".into(),
                ));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let t1 = Instant::now();
        let caps = cfg.capabilities(&b.profile_dir);
        let v = b.raw("POST", "/session", Some(&caps), Duration::from_secs(90))?;
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
        let (status, bytes) = http(self.port, method, path, body, timeout)?;
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
            Duration::from_secs(120),
        )
    }

    // ---- navigation ---------------------------------------------------

    pub fn navigate(&self, url: &str) -> Result<()> {
        self.cmd("POST", "/url", Some(&json!({ "url": url })))
            .map(|_| ())
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

    // ---- elements -----------------------------------------------------

    pub fn find(&self, css: &str) -> Result<Element> {
        let v = self.cmd(
            "POST",
            "/element",
            Some(&json!({ "using": "css selector", "value": css })),
        )?;
        to_element(&v)
    }
    pub fn find_in(&self, parent: &Element, css: &str) -> Result<Element> {
        let v = self.cmd(
            "POST",
            &format!("/element/{}/element", parent.0),
            Some(&json!({ "using": "css selector", "value": css })),
        )?;
        to_element(&v)
    }
    /// Type text (use [`KEY_ENTER`] etc. for special keys).
    pub fn send_keys(&self, el: &Element, text: &str) -> Result<()> {
        self.cmd(
            "POST",
            &format!("/element/{}/value", el.0),
            Some(&json!({ "text": text })),
        )
        .map(|_| ())
    }
    pub fn clear(&self, el: &Element) -> Result<()> {
        self.cmd(
            "POST",
            &format!("/element/{}/clear", el.0),
            Some(&json!({})),
        )
        .map(|_| ())
    }
    pub fn click(&self, el: &Element) -> Result<()> {
        self.cmd(
            "POST",
            &format!("/element/{}/click", el.0),
            Some(&json!({})),
        )
        .map(|_| ())
    }
    /// W3C has no "submit" command: click the form's submit control and
    /// wait until the new document has replaced the old one.
    pub fn submit(&self, form: &Element) -> Result<()> {
        let btn = self.find_in(
            form,
            "button[type=submit], input[type=submit], button:not([type])",
        )?;
        self.expect_navigation(|b| b.click(&btn))
    }
    /// Run `action`, then wait (30 s max) until the current `<html>` element
    /// goes stale. chromedriver's click / send_keys can return before a form
    /// submission's navigation commits, so reading the URL straight after a
    /// click may still show the old page.
    pub fn expect_navigation(&self, action: impl FnOnce(&Browser) -> Result<()>) -> Result<()> {
        let html = self.find("html")?;
        action(self)?;
        self.wait_stale(&html, Duration::from_secs(30))
    }
    /// Wait until `el` belongs to a document that is no longer current.
    pub fn wait_stale(&self, el: &Element, timeout: Duration) -> Result<()> {
        let path = format!("/element/{}/name", el.0);
        self.wait_until(timeout, |b| match b.cmd("GET", &path, None) {
            Ok(_) => Ok(false),
            Err(Error::WebDriver { error, .. })
                if error == "stale element reference" || error == "no such element" =>
            {
                Ok(true)
            }
            Err(e) => Err(e),
        })
    }
    /// Find by CSS, clear, then type.
    pub fn fill(&self, css: &str, text: &str) -> Result<Element> {
        let el = self.find(css)?;
        self.clear(&el)?;
        self.send_keys(&el, text)?;
        Ok(el)
    }
    /// Poll `f` every 50 ms until it returns true or `timeout` passes.
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
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Run `script` in the page (`/execute/sync`) and return its value.
    pub fn execute(&self, script: &str, args: Value) -> Result<Value> {
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

    // ---- cookies ------------------------------------------------------

    /// Cookies visible to the current document's URL (HttpOnly included).
    pub fn cookies(&self) -> Result<Vec<Cookie>> {
        let v = self.cmd("GET", "/cookie", None)?;
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
    // ---- screenshots --------------------------------------------------

    /// Viewport screenshot as PNG bytes.
    pub fn screenshot_png(&self) -> Result<Vec<u8>> {
        let b64 = as_string(self.cmd("GET", "/screenshot", None)?)?;
        let png = base64_decode(&b64).map_err(Error::Protocol)?;
        if !png.starts_with(b"\x89PNG\r\n\x1a\n") {
            return Err(Error::Protocol("screenshot is not a PNG".into()));
        }
        Ok(png)
    }
    pub fn save_screenshot(&self, path: impl AsRef<Path>) -> Result<usize> {
        let png = self.screenshot_png()?;
        std::fs::write(path, &png)?;
        Ok(png.len())
    }

    /// Delete the session explicitly (drop does the rest).
    pub fn quit(mut self) -> Result<()> {
        let r = self.delete_session();
        drop(self);
        r
    }

    fn delete_session(&mut self) -> Result<()> {
        if let Some(sid) = self.session.take() {
            self.raw(
                "DELETE",
                &format!("/session/{sid}"),
                None,
                Duration::from_secs(15),
            )?;
        }
        Ok(())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Never panic in here: this also runs while a panic unwinds.
        let _ = self.delete_session(); // chromedriver quits Chromium gracefully
        // Snapshot the process tree before killing anything: chromedriver's
        // descendants and anything else started with our profile dir.
        let driver_pid = self.driver.as_ref().map(|c| c.id());
        let mut roots = pids_with_profile(&self.profile_dir);
        roots.extend(driver_pid);
        let tree: Vec<u32> = with_descendants(&roots)
            .into_iter()
            .filter(|p| Some(*p) != driver_pid)
            .collect();
        if let Some(mut c) = self.driver.take() {
            let _ = c.kill(); // SIGKILL by PID
            let _ = c.wait();
        }
        // Chromium survives a killed chromedriver; kill leftovers by PID.
        let mut leftovers = tree;
        leftovers.extend(pids_with_profile(&self.profile_dir));
        leftovers.sort_unstable();
        leftovers.dedup();
        for pid in leftovers {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        if !self.keep_profile {
            // Chromium may still be writing for a moment after it exits.
            for _ in 0..10 {
                if std::fs::remove_dir_all(&self.profile_dir).is_ok() || !self.profile_dir.exists()
                {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = std::fs::remove_file(&self.log_path);
        }
    }
}

// ---- helpers ------------------------------------------------------------

fn as_string(v: Value) -> Result<String> {
    match v {
        Value::String(s) => Ok(s),
        other => Err(Error::Protocol(format!("expected string, got {other}"))),
    }
}

fn to_element(v: &Value) -> Result<Element> {
    v[ELEMENT_KEY]
        .as_str()
        .map(|s| Element(s.to_string()))
        .ok_or_else(|| Error::Protocol(format!("not an element: {v}")))
}

/// Ask the kernel for a free loopback port (tiny race until chromedriver binds).
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn unique_temp_dir(prefix: &str) -> std::io::Result<PathBuf> {
    static N: AtomicU64 = AtomicU64::new(0);
    #[allow(clippy::disallowed_methods, reason = "a unique name, not a time")]
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "{prefix}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// PIDs with an argument that mentions `dir` (our unique temp dir):
/// Chromium's processes (`--user-data-dir=<dir>`) and crashpad handlers
/// (`--database=<dir>/xdg/config/chromium/Crash Reports`).
pub fn pids_with_profile(dir: &Path) -> Vec<u32> {
    let needle = dir.display().to_string();
    let me = std::process::id();
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        if let Ok(cmdline) = std::fs::read(e.path().join("cmdline"))
            && cmdline
                .split(|b| *b == 0)
                .any(|a| a.windows(needle.len()).any(|w| w == needle.as_bytes()))
        {
            out.push(pid);
        }
    }
    out
}

/// `roots` plus all their live descendants (from /proc/*/stat parent PIDs).
pub fn with_descendants(roots: &[u32]) -> Vec<u32> {
    let mut parent_of = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) {
                // "pid (comm) state ppid ..."; comm may contain spaces/parens.
                let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
                if let Some(ppid) = rest
                    .split_whitespace()
                    .nth(1)
                    .and_then(|x| x.parse::<u32>().ok())
                {
                    parent_of.push((pid, ppid));
                }
            }
        }
    }
    let mut out: Vec<u32> = roots.to_vec();
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        for &(c, pp) in &parent_of {
            if pp == p && !out.contains(&c) {
                out.push(c);
            }
        }
        i += 1;
    }
    out
}

/// One HTTP/1.1 request to chromedriver on 127.0.0.1:`port`.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&Value>,
    timeout: Duration,
) -> Result<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let payload = match body {
        Some(b) => serde_json::to_vec(b).map_err(|e| Error::Protocol(e.to_string()))?,
        None => Vec::new(),
    };
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: application/json\r\nConnection: close\r\nContent-Length: {}\r\n",
        payload.len()
    );
    if body.is_some() {
        req.push_str("Content-Type: application/json; charset=utf-8\r\n");
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    s.write_all(&payload)?;
    s.flush()?;

    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|x| x.parse().ok())
        .ok_or_else(|| Error::Protocol(format!("bad status line {line:?}")))?;
    let mut content_length: Option<usize> = None;
    let mut chunked = false;
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Err(Error::Protocol("EOF in headers".into()));
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            let k = k.trim().to_ascii_lowercase();
            if k == "content-length" {
                content_length = v.trim().parse().ok();
            } else if k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked") {
                chunked = true;
            }
        }
    }
    let mut out = Vec::new();
    if chunked {
        loop {
            line.clear();
            r.read_line(&mut line)?;
            let size_hex = line.trim().split(';').next().unwrap_or("");
            let size = usize::from_str_radix(size_hex, 16)
                .map_err(|_| Error::Protocol(format!("bad chunk size {line:?}")))?;
            if size == 0 {
                loop {
                    line.clear();
                    if r.read_line(&mut line)? == 0 || line.trim().is_empty() {
                        break;
                    }
                }
                break;
            }
            let start = out.len();
            out.resize(start + size, 0);
            r.read_exact(&mut out[start..])?;
            let mut crlf = [0u8; 2];
            r.read_exact(&mut crlf)?;
        }
    } else if let Some(n) = content_length {
        out.resize(n, 0);
        r.read_exact(&mut out)?;
    } else {
        r.read_to_end(&mut out)?;
    }
    Ok((status, out))
}

/// Standard base64 (RFC 4648) decoder; ignores whitespace, accepts padding.
pub fn base64_decode(s: &str) -> std::result::Result<Vec<u8>, String> {
    fn val(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        } as u32)
    }
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in s.as_bytes() {
        if c == b'=' {
            break;
        }
        if c.is_ascii_whitespace() {
            continue;
        }
        let v = val(c).ok_or_else(|| format!("invalid base64 byte {c:#x}"))?;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::base64_decode;
    #[test]
    fn b64() {
        assert_eq!(base64_decode("").unwrap(), b"");
        assert_eq!(base64_decode("Zg==").unwrap(), b"f");
        assert_eq!(base64_decode("Zm8=").unwrap(), b"fo");
        assert_eq!(base64_decode("Zm9v").unwrap(), b"foo");
        assert_eq!(base64_decode("Zm9vYmFy").unwrap(), b"foobar");
        assert_eq!(base64_decode("iVBORw0KGgo=").unwrap(), b"\x89PNG\r\n\x1a\n");
        assert!(base64_decode("Zm9v!").is_err());
    }
}
