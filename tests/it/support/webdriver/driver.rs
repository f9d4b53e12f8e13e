//! Which browser a session runs, and the driver process behind it.
//!
//! Each [`super::Browser`] has a driver of its own (geckodriver serves one session at a
//! time), listening on a free loopback port, with its profile and logs under one unique
//! temporary directory. On drop the session is deleted (the driver quits the browser),
//! then the driver and any process still naming that directory are killed by PID.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

use super::{Error, Result, http};

/// Flags this machine's Chromium needs (headless as root, closed network).
pub const CHROMIUM_ARGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];

/// The browser engine of a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// Chromium through chromedriver.
    Chromium,
    /// Firefox (ESR, the Gecko of Tor Browser) through geckodriver.
    Firefox,
}

impl Engine {
    fn name(self) -> &'static str {
        match self {
            Engine::Chromium => "Chromium",
            Engine::Firefox => "Firefox",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    pub engine: Engine,
    /// The browser binary.
    pub binary: PathBuf,
    /// chromedriver or geckodriver.
    pub driver: PathBuf,
    /// Chromium: `--window-size`; Firefox: `--width`/`--height` (which Firefox rounds
    /// when `privacy.resistFingerprinting` is on). `None`: the browser's default.
    pub window_size: Option<(u32, u32)>,
    /// Extra browser arguments, e.g. `--proxy-server=socks5://127.0.0.1:9050`.
    pub args: Vec<String>,
    /// Browser preferences: Chromium's `goog:chromeOptions.prefs` (dotted keys), or
    /// Firefox's `moz:firefoxOptions.prefs` (about:config names).
    pub prefs: Map<String, Value>,
    /// Whether pages may run JavaScript. WebDriver's own scripts run either way.
    pub javascript: bool,
    pub page_load_timeout_ms: u64,
    /// W3C `pageLoadStrategy`: "normal" waits for `load`, "eager" for the document only.
    pub page_load_strategy: &'static str,
    /// W3C `acceptInsecureCerts` (self-signed TLS in tests).
    pub accept_insecure_certs: bool,
    /// Firefox: allow [`super::Browser::chrome`] (geckodriver `--allow-system-access`),
    /// to read what the browser window shows (the tab's loading indicator, its icon).
    pub chrome_access: bool,
    /// Keep the profile directory and the driver's log after drop, for debugging.
    pub keep_profile: bool,
    /// Verbose driver log (next to the profile directory).
    pub verbose_driver_log: bool,
}

impl Default for Config {
    /// Headless Chromium with JavaScript off for page content.
    fn default() -> Self {
        Config {
            engine: Engine::Chromium,
            binary: env_path("GC_CHROMIUM", "/usr/bin/chromium"),
            driver: env_path("GC_CHROMEDRIVER", "/usr/bin/chromedriver"),
            window_size: Some((1024, 768)),
            args: Vec::new(),
            prefs: Map::new(),
            javascript: false,
            page_load_timeout_ms: 30_000,
            page_load_strategy: "normal",
            accept_insecure_certs: false,
            chrome_access: false,
            keep_profile: std::env::var_os("GC_KEEP_PROFILE").is_some(),
            verbose_driver_log: false,
        }
    }
}

impl Config {
    /// Headless Firefox with `prefs` and nothing else set: see `support::torbrowser` for
    /// Tor Browser's preferences.
    pub fn firefox(prefs: Map<String, Value>) -> Self {
        let javascript = prefs.get("javascript.enabled") != Some(&Value::Bool(false));
        Config {
            engine: Engine::Firefox,
            binary: firefox_binary(),
            driver: geckodriver(),
            window_size: None,
            prefs,
            javascript,
            ..Config::default()
        }
    }

    /// Fail with a message that says what is missing and how to get it.
    pub fn check_installed(&self) -> Result<()> {
        let how = "./scripts/test.sh installs it";
        if !is_executable(&self.binary) {
            return Err(Error::Missing(format!(
                "{} not found at {} ({how}; or set {})",
                self.engine.name(),
                self.binary.display(),
                match self.engine {
                    Engine::Firefox => "GC_FIREFOX: Debian's firefox-esr",
                    Engine::Chromium => "GC_CHROMIUM: Debian's chromium",
                }
            )));
        }
        if !is_executable(&self.driver) {
            return Err(Error::Missing(format!(
                "{} not found at {} ({how}; or set {})",
                match self.engine {
                    Engine::Firefox => "geckodriver",
                    Engine::Chromium => "chromedriver",
                },
                self.driver.display(),
                match self.engine {
                    Engine::Firefox => "GC_GECKODRIVER: `cargo install geckodriver --locked`",
                    Engine::Chromium => "GC_CHROMEDRIVER: Debian's chromium-driver",
                }
            )));
        }
        Ok(())
    }

    /// The full `POST /session` body.
    pub fn capabilities(&self, dir: &Path) -> Value {
        let mut always = json!({
            "pageLoadStrategy": self.page_load_strategy,
            "acceptInsecureCerts": self.accept_insecure_certs,
            "timeouts": { "pageLoad": self.page_load_timeout_ms, "script": 30_000, "implicit": 0 },
        });
        match self.engine {
            Engine::Chromium => {
                let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|s| s.to_string()).collect();
                args.push(format!("--user-data-dir={}", dir.join("profile").display()));
                if let Some((w, h)) = self.window_size {
                    args.push(format!("--window-size={w},{h}"));
                }
                let mut prefs = self.prefs.clone();
                if !self.javascript {
                    // JavaScript off for page content, twice over: Blink's setting and the
                    // content setting (WebDriver's scripts still run, through DevTools).
                    args.push("--blink-settings=scriptEnabled=false".into());
                    prefs.insert(
                        "profile.managed_default_content_settings.javascript".into(),
                        json!(2),
                    );
                }
                args.extend(self.args.iter().cloned());
                let mut opts = json!({ "binary": self.binary.to_string_lossy(), "args": args });
                if !prefs.is_empty() {
                    opts["prefs"] = Value::Object(prefs);
                }
                always["goog:chromeOptions"] = opts;
            }
            Engine::Firefox => {
                let mut args = vec!["-headless".to_string()];
                if let Some((w, h)) = self.window_size {
                    args.push(format!("--width={w}"));
                    args.push(format!("--height={h}"));
                }
                args.extend(self.args.iter().cloned());
                let mut prefs = self.prefs.clone();
                prefs.insert("javascript.enabled".into(), json!(self.javascript));
                always["browserName"] = json!("firefox");
                always["moz:firefoxOptions"] = json!({
                    "binary": self.binary.to_string_lossy(),
                    "args": args,
                    "prefs": prefs,
                    "log": { "level": if self.verbose_driver_log { "debug" } else { "warn" } },
                });
            }
        }
        json!({ "capabilities": { "alwaysMatch": always } })
    }
}

/// A running driver process, its port, and the directory that holds everything of it.
pub struct Driver {
    child: Option<Child>,
    pub port: u16,
    pub dir: PathBuf,
    keep: bool,
}

impl Driver {
    /// Start the driver of `cfg` and wait until it reports ready.
    pub fn start(cfg: &Config) -> Result<Driver> {
        cfg.check_installed()?;
        let dir = unique_temp_dir("gc-wd")?;
        let port = free_port()?;
        let log = std::fs::File::create(dir.join("driver.log"))?;
        let mut cmd = Command::new(&cfg.driver);
        cmd.arg(format!("--port={port}"));
        match cfg.engine {
            Engine::Chromium => {
                // Chromium's crashpad handler daemonizes (not our descendant) and keeps
                // its database under $XDG_CONFIG_HOME/chromium; point that into our
                // directory so it is ours alone and findable by path on cleanup.
                cmd.env("XDG_CONFIG_HOME", dir.join("xdg/config"))
                    .env("XDG_CACHE_HOME", dir.join("xdg/cache"))
                    .arg(format!(
                        "--log-path={}",
                        dir.join("chromedriver.log").display()
                    ));
                if cfg.verbose_driver_log {
                    cmd.arg("--verbose");
                }
            }
            Engine::Firefox => {
                cmd.arg("--profile-root").arg(&dir);
                // Firefox's own caches, never the user's.
                cmd.env("HOME", dir.join("home"))
                    .env("XDG_CACHE_HOME", dir.join("xdg/cache"))
                    .env("XDG_CONFIG_HOME", dir.join("xdg/config"))
                    .env("MOZ_CRASHREPORTER_DISABLE", "1")
                    // Firefox aborts rather than open a connection to anything but
                    // loopback (our pages, or the SOCKS port of a Tor client); this also
                    // lets the test preferences turn off its remote-settings updates.
                    .env("MOZ_DISABLE_NONLOCAL_CONNECTIONS", "1");
                if cfg.chrome_access {
                    cmd.arg("--allow-system-access");
                }
            }
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()?;
        let mut d = Driver {
            child: Some(child),
            port,
            dir,
            keep: cfg.keep_profile,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok((200, body)) =
                http::request(port, "GET", "/status", None, Duration::from_secs(2))
            {
                let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                if v["value"]["ready"] == Value::Bool(true) {
                    return Ok(d);
                }
            }
            if let Some(st) = d.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                return Err(Error::Protocol(format!(
                    "{} exited early ({st}); log: {}",
                    cfg.driver.display(),
                    d.dir.join("driver.log").display()
                )));
            }
            if Instant::now() > deadline {
                return Err(Error::Timeout(format!(
                    "{} not ready in 30 s",
                    cfg.driver.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // Never panic in here: this also runs while a panic unwinds. Snapshot the process
        // tree first: the driver's descendants and anything else naming our directory.
        let driver_pid = self.child.as_ref().map(Child::id);
        let mut roots = pids_naming(&self.dir);
        roots.extend(driver_pid);
        let mut leftovers: Vec<u32> = with_descendants(&roots)
            .into_iter()
            .filter(|p| Some(*p) != driver_pid)
            .collect();
        if let Some(mut c) = self.child.take() {
            let _ = c.kill(); // SIGKILL by PID
            let _ = c.wait();
        }
        // A browser survives a killed driver; kill what is left by PID.
        leftovers.extend(pids_naming(&self.dir));
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
        if !self.keep {
            // The browser may still be writing for a moment after it exits.
            for _ in 0..10 {
                if std::fs::remove_dir_all(&self.dir).is_ok() || !self.dir.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn env_path(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| default.into())
}

/// `GC_FIREFOX`, else Debian's `firefox-esr`.
pub fn firefox_binary() -> PathBuf {
    env_path("GC_FIREFOX", "/usr/bin/firefox-esr")
}

/// `GC_GECKODRIVER`, else `geckodriver` on the `PATH`, else cargo's bin directory (where
/// `cargo install geckodriver` puts it).
pub fn geckodriver() -> PathBuf {
    if let Some(p) = std::env::var_os("GC_GECKODRIVER") {
        return p.into();
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("geckodriver"))
            .find(|p| is_executable(p))
    });
    on_path.unwrap_or_else(|| {
        let cargo_home = std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
            .unwrap_or_default();
        cargo_home.join("bin/geckodriver")
    })
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Ask the kernel for a free loopback port (tiny race until the driver binds).
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
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

/// PIDs with an argument that mentions `dir` (our unique temp dir): the browser's
/// processes (`--user-data-dir=<dir>/profile`, `-profile <dir>/rust_mozprofile…`) and
/// Chromium's crashpad handlers (`--database=<dir>/xdg/config/chromium/Crash Reports`).
pub fn pids_naming(dir: &Path) -> Vec<u32> {
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
