//! Firefox ESR as Tor Browser (`support::torbrowser`) over the private Tor network, at the
//! Safest level and then at Standard: two members make every journey (`journey`) on the
//! real `ghostcache serve` with its default configuration (`__Host-` cookies on the
//! onion door), through the Tor client's SOCKS port only.
//!
//! At each level, when the second member first opens a chat page, the browser window
//! itself is read (the chrome context): how long the tab shows the page as loading while
//! its live frame streams, and which icon the tab shows.
//!
//! Screenshots of every page (Safest) go to `target/tmp/browser-onion/safest/screenshots/`.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::journey::{self, Options};
use super::observe::Screenshots;
use super::page::{Member, Nobody, Shared};
use crate::support::process::Serve;
use crate::support::torbrowser::{self, Level};
use crate::support::webdriver::{self, Browser};
use crate::tornet::TorNet;

/// Seconds one level's journey may take (measured: see the README); a journey starts
/// only when that much is left of the onion-service time period (see shared/TORNET.md:
/// arti is unreachable for up to a minute after each change).
const JOURNEY_BUDGET_SECS: u64 = 150;

#[test]
fn every_journey_in_firefox_as_tor_browser_over_the_onion_service() {
    // Fail at once, and clearly, without Firefox or geckodriver.
    let probe = torbrowser::config(Level::Safest, None, Path::new("/"));
    probe.check_installed().unwrap_or_else(|e| panic!("{e}"));

    let out = webdriver::artifacts_dir("browser-onion");
    let (net, _turn) = crate::tornet::shared();
    let site = start_site(net, &out);
    let address = site.onion.clone().unwrap();
    // Each browser its own SOCKS port, hence its own circuits: the members are four
    // people with four Tor Browsers, not four tabs of one.
    let socks = net.isolated_socks_addrs(4).unwrap();
    wait_for_time(net, &address);
    // Both levels at once, so that one window of the time period holds them.
    let started = Instant::now();
    std::thread::scope(|s| {
        for (level, socks) in [Level::Safest, Level::Standard]
            .into_iter()
            .zip(socks.chunks(2))
        {
            let (out, address) = (&out, &address);
            s.spawn(move || journey_at(level, socks, out, address));
        }
    });
    eprintln!(
        "browser onion: both levels done in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(site.stop().success());
}

/// Two members in Firefox at `level`, with a SOCKS port each, make every journey.
fn journey_at(level: Level, socks: &[SocketAddr], out: &Path, address: &str) {
    let started = Instant::now();
    let dir = out.join(level.name());
    std::fs::create_dir_all(&dir).unwrap();
    let observer: Shared = match level {
        Level::Safest => Rc::new(RefCell::new(Screenshots::new(dir.join("screenshots")))),
        Level::Standard => Rc::new(RefCell::new(Nobody)),
    };
    let member = |name: &str, socks: SocketAddr| {
        let downloads = dir.join(format!("downloads-{name}"));
        std::fs::create_dir_all(&downloads).unwrap();
        let cfg = torbrowser::config(level, Some(socks), &downloads);
        let b = Browser::launch(&cfg).unwrap_or_else(|e| panic!("Firefox: {e}"));
        assert_eq!(b.javascript, level == Level::Standard);
        Member::new(
            &format!("{name}_{}", level.name()),
            b,
            &format!("http://{address}"),
            &downloads,
            observer.clone(),
        )
    };
    let mut a = member("ada", socks[0]);
    let mut b = member("bea", socks[1]);
    let figures = journey::run(
        &mut a,
        &mut b,
        &Options {
            work: &dir,
            run: level.name(),
            on_chat_page: &|m, chat| what_the_tab_shows(m, chat, level),
        },
    );
    eprintln!(
        "browser onion {}: journey in {:.1} s; deliveries {:?}; the 30 s message hidden after {:.1} s",
        level.name(),
        started.elapsed().as_secs_f64(),
        figures
            .deliveries
            .iter()
            .map(|(what, d)| format!("{what} {:.2} s", d.as_secs_f64()))
            .collect::<Vec<_>>(),
        figures.vanished_after.as_secs_f64()
    );
    if level == Level::Safest {
        report_screenshots(&dir.join("screenshots"));
    }
    a.b.quit().unwrap();
    b.b.quit().unwrap();
}

/// `ghostcache serve` on the private network with its default configuration, except a
/// smaller RSA key (speed) and no introduction rate limit (tests reconnect often).
fn start_site(net: &TorNet, out: &Path) -> Serve {
    let config = crate::support::process::onion_config(net, out, "ghostcache.toml", "", "");
    let site = Serve::start(
        &["--config", config.to_str().unwrap()],
        &out.join("ghostcache.stderr"),
        None,
    );
    reachable(net, site.onion.as_deref().unwrap());
    eprintln!(
        "browser onion: the onion service answers {:.1} s after serve started",
        site.started.elapsed().as_secs_f64()
    );
    site
}

fn reachable(net: &TorNet, address: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(crate::onion::wait_reachable(net, address));
}

/// Start a journey only when it fits in what is left of the time period.
fn wait_for_time(net: &TorNet, address: &str) {
    let left = net.secs_until_time_period_change();
    if left < JOURNEY_BUDGET_SECS {
        eprintln!("browser onion: {left} s left in this time period; waiting for the next one");
        std::thread::sleep(Duration::from_secs(left + 45));
        reachable(net, address);
    }
}

/// What Tor Browser's window shows on a chat page, read from the browser window itself:
/// the tab stops showing the page as loading once the live frame's first document is in
/// (not for the stream's lifetime), stays so while the frame streams, and shows the
/// site's icon.
fn what_the_tab_shows(m: &Member, chat: &str, level: Level) {
    let url = format!("{}{chat}", m.origin);
    let old = m.document();
    let started = Instant::now();
    // Navigate without WebDriver's own wait for the load, to watch the tab meanwhile.
    m.b.execute("window.location.assign(arguments[0])", &[json!(url)])
        .unwrap();
    m.b.wait_stale(&old, Duration::from_secs(90)).unwrap();
    let mut was_busy = false;
    let loaded_after = loop {
        let (busy, _) = tab_state(&m.b);
        was_busy |= busy;
        if !busy && m.b.execute("return document.readyState", &[]).ok() == Some(json!("complete")) {
            break started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "the chat page still shows as loading after 90 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    // Then, for 10 s while the frame streams: never busy, no status text shown.
    let mut samples = 0;
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_secs(10) {
        let (busy, status_shown) = tab_state(&m.b);
        assert!(!busy, "the tab shows loading again while the frame streams");
        assert!(
            !status_shown,
            "the status panel shows while the frame streams"
        );
        samples += 1;
        std::thread::sleep(Duration::from_millis(250));
    }
    let frame = m.in_frame(|f| {
        f.execute(
            "return [document.location.search, document.readyState]",
            &[],
        )
        .unwrap()
    });
    // A new connection's page shows no message yet: the stream goes on from 0, and its
    // document is still being received.
    assert_eq!(
        frame,
        json!(["?after=0", "loading"]),
        "the frame holds the stream open"
    );
    // The tab's icon: loaded (Firefox draws the SVG icon in the tab even with
    // `svg.disabled`, as the browser's own chrome draws it; the PNG is there for others).
    let icon =
        m.b.chrome(|b| {
            b.execute(
                "const t = gBrowser.selectedTab; const i = t.querySelector('.tab-icon-image');\
                 return [t.getAttribute('image') || '', i ? i.naturalWidth : 0];",
                &[],
            )
        })
        .unwrap();
    let image = icon[0].as_str().unwrap_or("");
    assert!(
        !image.is_empty() && icon[1].as_u64().unwrap_or(0) > 0,
        "the tab shows the site's icon: {icon}"
    );
    eprintln!(
        "browser onion {}: chat page: tab loading for {:.2} s (busy seen: {was_busy}); then \
         {samples} samples over 10 s while the frame streams: never loading, no status text; \
         tab icon {}",
        level.name(),
        loaded_after.as_secs_f64(),
        if image.contains("svg") { "SVG" } else { "PNG" }
    );
}

/// (the tab shows the page as loading, the status panel shows text) — Tor Browser's
/// window as the member sees it.
fn tab_state(b: &Browser) -> (bool, bool) {
    let v = b
        .chrome(|b| {
            b.execute(
                "const p = document.getElementById('statuspanel');\
                 return [gBrowser.selectedTab.hasAttribute('busy'),\
                         !!p && p.getAttribute('inactive') !== 'true' && !p.hidden];",
                &[],
            )
        })
        .unwrap();
    (
        v[0].as_bool().unwrap_or(true),
        v[1].as_bool().unwrap_or(true),
    )
}

/// List the screenshots written.
fn report_screenshots(dir: &Path) {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    eprintln!(
        "browser onion: {} screenshots in {}",
        names.len(),
        dir.display()
    );
    for n in &names {
        let png = std::fs::read(dir.join(n)).unwrap();
        let (w, h) = webdriver::png_size(&png).unwrap();
        eprintln!("  {n} {w}x{h}");
    }
}
