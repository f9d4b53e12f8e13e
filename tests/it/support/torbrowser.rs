//! Firefox ESR set up as Tor Browser: its preferences at the "Safest" and "Standard"
//! security levels, its proxy through a Tor client's SOCKS port, and what the harness
//! itself needs (downloads into a known directory, the browser window readable through
//! the chrome context).
//!
//! Tor Browser is Firefox ESR with Tor's patches, preferences and NoScript. We cannot run
//! it here, so we run the Gecko it is built on with the preferences that matter to a site,
//! each with its source:
//! - "profile": Tor Browser's default preferences (tor-browser repository,
//!   gitlab.torproject.org/tpo/applications/tor-browser, `browser/app/profile/`
//!   `000-tor-browser.js` and `001-base-profile.js`);
//! - "kSecuritySettings": the table of preferences each security level sets
//!   (`toolkit/components/securitylevel/SecurityLevel.sys.mjs`), whose Safest column we
//!   copy;
//! - "NoScript at Safest": the capabilities the Safest level's NoScript policy denies to
//!   every site ("script", "font", "webgl", "media", "object"), which we deny with the
//!   equivalent Firefox preferences since NoScript is not installed here; the manual says
//!   the same (tb-manual.torproject.org/security-settings): "Safest: JavaScript is
//!   disabled by default on all sites. Some fonts, icons, math symbols, and images are
//!   disabled. Audio and video (HTML5 media) are click-to-play."

use std::net::SocketAddr;
use std::path::Path;

use serde_json::{Map, Value, json};

use super::webdriver::Config;

/// A Tor Browser security level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// Everything on (JavaScript included).
    Standard,
    /// JavaScript, SVG, MathML, WebGL, web fonts, JIT and WebAssembly off.
    Safest,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Standard => "standard",
            Level::Safest => "safest",
        }
    }
}

/// Tor Browser's preferences at `level`, reaching the network only through the SOCKS proxy
/// at `socks` (`None`: no proxy, for loopback pages), with downloads saved to `downloads`.
pub fn prefs(level: Level, socks: Option<SocketAddr>, downloads: &Path) -> Map<String, Value> {
    let mut p = Map::new();
    let mut set = |k: &str, v: Value| {
        p.insert(k.to_owned(), v);
    };

    // ---- Every level ---------------------------------------------------------------
    // Always in private browsing mode: nothing of a session is written to disk (profile).
    set("browser.privatebrowsing.autostart", json!(true));
    // Fingerprinting resistance, with letterboxing: the page area is rounded down to
    // common sizes, with margins around it (profile).
    set("privacy.resistFingerprinting", json!(true));
    set("privacy.resistFingerprinting.letterboxing", json!(true));
    // .onion is a secure context, so `Secure` and `__Host-` cookies are kept on
    // http://*.onion (profile; Firefox's preference comes from Tor Browser).
    set("dom.securecontext.allowlist_onions", json!(true));
    // No speculative connections: none opened before the member asks for a page
    // (profile: "network.http.speculative-parallel-limit", 0).
    set("network.http.speculative-parallel-limit", json!(0));
    // No service workers: Tor Browser's windows are always private, and Firefox ESR
    // offers none there; off outright, so that no page could rely on one.
    set("dom.serviceWorkers.enabled", json!(false));
    if let Some(socks) = socks {
        // Everything through Tor's SOCKS port, host names resolved by Tor (profile: a
        // manual SOCKS 5 proxy with "network.proxy.socks_remote_dns"; Tor Browser's own
        // port is 9150, here the private network's client).
        set("network.proxy.type", json!(1));
        set("network.proxy.socks", json!(socks.ip().to_string()));
        set("network.proxy.socks_port", json!(socks.port()));
        set("network.proxy.socks_version", json!(5));
        set("network.proxy.socks_remote_dns", json!(true));
        set("network.proxy.no_proxies_on", json!(""));
        // No DNS lookup by the browser at all: one outside Tor would tell the local
        // network which site is visited (profile: "network.dns.disabled").
        set("network.dns.disabled", json!(true));
    }

    // ---- The security level --------------------------------------------------------
    let safest = level == Level::Safest;
    // JavaScript (NoScript at Safest: no "script").
    set("javascript.enabled", json!(!safest));
    // kSecuritySettings (Safest column): SVG off at Safest only; MathML, the JITs (Ion,
    // Baseline, native regular expressions), asm.js and WebAssembly, Graphite fonts and
    // SVG-in-OpenType glyphs off at Safer and Safest; at Standard, Firefox's defaults.
    if safest {
        set("svg.disabled", json!(true));
        set("mathml.disabled", json!(true));
        set("javascript.options.ion", json!(false));
        set("javascript.options.baselinejit", json!(false));
        set("javascript.options.native_regexp", json!(false));
        set("javascript.options.asmjs", json!(false));
        set("javascript.options.wasm", json!(false));
        set("gfx.font_rendering.graphite.enabled", json!(false));
        set("gfx.font_rendering.opentype_svg.enabled", json!(false));
        // NoScript at Safest: no "webgl", no "font" (downloadable web fonts).
        set("webgl.disabled", json!(true));
        set("gfx.downloadable_fonts.enabled", json!(false));
    }

    // ---- Firefox ESR where it differs from Tor Browser -----------------------------
    // Firefox ESR (140 and 153 alike, measured) treats an http onion page as a secure
    // context (above) and then upgrades the page's icon request to https: a stream to
    // port 443, which onion services that serve port 80 only answer as C tor does by
    // default, by closing the whole rendezvous circuit with every request on it. Tor
    // Browser keeps http onion sites working; we turn Firefox's upgrade of images on
    // secure pages off to behave the same.
    set(
        "security.mixed_content.upgrade_display_content",
        json!(false),
    );

    // ---- The harness, not Tor Browser ---------------------------------------------
    // No background requests of Firefox's own: geckodriver turns off most services, and
    // this the remote-settings updates (which it honours because the driver runs
    // Firefox with MOZ_DISABLE_NONLOCAL_CONNECTIONS). Tor Browser has its own settings
    // for these; here they would only knock on the private network's exits.
    set(
        "services.settings.server",
        json!("data:,#remote-settings-dummy/v1"),
    );
    // Downloads go to `downloads` without asking.
    set("browser.download.folderList", json!(2));
    set(
        "browser.download.dir",
        json!(downloads.display().to_string()),
    );
    set("browser.download.useDownloadDir", json!(true));
    set(
        "browser.download.always_ask_before_handling_new_types",
        json!(false),
    );
    set("browser.download.start_downloads_in_tmp_dir", json!(false));
    set("browser.download.alwaysOpenPanel", json!(false));
    p
}

/// Headless Firefox as Tor Browser at `level` (see [`prefs`]), its browser window
/// readable through the chrome context (the tab's loading indicator and icon).
pub fn config(level: Level, socks: Option<SocketAddr>, downloads: &Path) -> Config {
    let mut cfg = Config::firefox(prefs(level, socks, downloads));
    cfg.chrome_access = true;
    cfg.page_load_timeout_ms = 120_000;
    cfg
}
